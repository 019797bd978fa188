//! The indicator engine at city scale: a registered city of 100,000 sensors over 8 districts
//! (utility meters with district input meters, traffic lanes, air stations) replayed in event-time
//! order through `Engine::add`, with `Engine::advance` called every simulated second as the
//! gateway's tick would, for 26 simulated hours from an hour before a local midnight: every hour
//! closes, and so does the local day. Prints the add-only rate, the cost of each emission (hour
//! closes, the day close), the overall rate with emissions, and memory per sensor (the engine's
//! `heap_bytes` and the process's RSS growth while the windows fill).
//!
//! The engine is pure, so this is one core doing nothing else: the readings are built outside
//! the timed sections (one `Reading` per sensor, its time and values rewritten in place).
//!
//!   cargo bench --bench indicators
//!   cargo bench --bench indicators -- --sensors 10000 --hours 3
//!   cargo bench --bench indicators -- --sensors 3000 --digest   # same values before and after a change?
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use qala::indicators::catalog::Catalog;
use qala::indicators::engine::{Engine, EngineSettings};
use qala::indicators::{Detail, IndicatorValue};
use qala::model::{Kind, Reading, SensorRef, TimeSource};
use qala::normalize::catalog::lookup;
use qala::registry::{Registry, Role, SensorInfo};
use qala::sim::fleet::ALMATY_DISTRICTS as DISTRICTS;
use std::sync::Arc;

const SECOND_NS: i64 = 1_000_000_000;
const HOUR_S: usize = 3600;
/// 2026-11-10T00:00:00+05:00, a local midnight in Kazakhstan.
const DAY0_NS: i64 = 1_762_714_800 * SECOND_NS;
const CITY: &str = "almaty";
/// Consumption by local hour, relative to the day's mean rate.
const USE_PROFILE: [f64; 24] = [
    0.35, 0.25, 0.2, 0.2, 0.25, 0.45, 0.9, 1.6, 1.7, 1.3, 1.1, 1.05, 1.1, 1.05, 1.0, 1.0, 1.1, 1.3,
    1.5, 1.7, 1.6, 1.3, 0.9, 0.55,
];
/// Traffic demand by local hour, as a share of a lane's capacity.
const TRAFFIC_PROFILE: [f64; 24] = [
    0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.45, 0.85, 0.95, 0.75, 0.6, 0.6, 0.65, 0.6, 0.6, 0.65,
    0.75, 0.9, 0.95, 0.8, 0.55, 0.35, 0.2, 0.1,
];

/// One simulated device: what it reports and the state of its registers.
struct Device {
    kind: Kind,
    district: usize,
    interval_s: usize,
    input: bool,
    /// Mean consumption per hour (meters), capacity in veh/h (lanes), PM2.5 base (stations).
    rate: f64,
    /// Constant extra flow of a leaking water meter (m³/h).
    leak: f64,
    register: f64,
    /// Free-flow speed of a lane (km/h).
    free_flow: f64,
}

struct City {
    devices: Vec<Device>,
    readings: Vec<Reading>,
    registry: Vec<SensorInfo>,
    /// Devices due at each second of the hour (every interval divides an hour).
    wheel: Vec<Vec<u32>>,
}

/// The fleet for `n` sensors, in the proportions of a city of 100,000: 91.5 % meters (water a
/// third at 15 minutes, heat, power and gas hourly, one input meter per district and utility),
/// 8 % traffic lanes (1 minute), 0.5 % air stations (20 minutes).
fn fleet(n: usize) -> Vec<(Kind, usize, usize)> {
    let share = |p: f64| ((n as f64) * p).round() as usize;
    let traffic = share(0.08);
    let air = share(0.005).max(1);
    let heat = share(0.12);
    let power = share(0.335);
    let gas = share(0.10);
    let water = n.saturating_sub(traffic + air + heat + power + gas);
    // (kind, count, interval s): a third of the water meters report every 15 minutes.
    vec![
        (Kind::Water, water / 3, 900),
        (Kind::Water, water - water / 3, 3600),
        (Kind::Heat, heat, 3600),
        (Kind::Power, power, 3600),
        (Kind::Gas, gas, 3600),
        (Kind::Traffic, traffic, 60),
        (Kind::Air, air, 1200),
    ]
}

fn metric_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Water | Kind::Gas => &["volume", "flow"],
        Kind::Heat | Kind::Power => &["energy", "power"],
        Kind::Traffic => &["volume", "interval", "speed"],
        Kind::Air => &["pm2_5", "pm10", "no2", "so2", "co", "o3", "temperature"],
        Kind::Status => &["battery", "online"],
    }
}

fn build_city(n: usize, rng: &mut SmallRng) -> City {
    let mut devices = Vec::with_capacity(n);
    let mut registry = Vec::with_capacity(n);
    let mut readings = Vec::with_capacity(n);
    let mut inputs_placed = std::collections::HashSet::new();
    for (kind, count, interval_s) in fleet(n) {
        for k in 0..count {
            let district = devices.len() % DISTRICTS.len();
            let meter = matches!(kind, Kind::Water | Kind::Heat | Kind::Power | Kind::Gas);
            // The first meter of each utility in each district is its input meter (15 min).
            let input = meter && inputs_placed.insert((kind, district));
            let interval_s = if input { 900 } else { interval_s };
            let id = format!("{}-{:06}", kind.as_str(), devices.len());
            let (rate, population) = match kind {
                Kind::Water => (rng.random_range(0.01..0.04), rng.random_range(1..=6)),
                Kind::Heat => (rng.random_range(5.0..30.0), rng.random_range(40..=150)),
                Kind::Power => (rng.random_range(0.2..1.0), rng.random_range(1..=6)),
                Kind::Gas => (rng.random_range(0.05..0.3), rng.random_range(1..=6)),
                Kind::Traffic => (rng.random_range(1400.0..1900.0), 0),
                Kind::Air => (rng.random_range(10.0..45.0), 0),
                Kind::Status => (0.0, 0),
            };
            let leak = if kind == Kind::Water && !input && rng.random_bool(0.01) {
                0.05
            } else {
                0.0
            };
            let free_flow = rng.random_range(50.0..70.0);
            registry.push(SensorInfo {
                sensor_id: id.clone(),
                kind: kind.as_str().into(),
                city: CITY.into(),
                district: DISTRICTS[district].into(),
                sphere: kind.sphere(),
                expected_interval: Duration::from_secs(interval_s as u64),
                population: (meter && !input).then_some(population),
                role: if input {
                    Role::DistrictInput
                } else {
                    Role::Consumer
                },
                // Half the lanes have a configured free-flow speed; the others learn it.
                free_flow_speed: (kind == Kind::Traffic && k % 2 == 0).then_some(free_flow),
                register_max: matches!(kind, Kind::Water | Kind::Gas).then_some(100_000.0),
                latitude: Some(43.2 + rng.random_range(0.0..0.1)),
                longitude: Some(76.8 + rng.random_range(0.0..0.2)),
            });
            readings.push(Reading {
                sensor: SensorRef {
                    city: CITY.into(),
                    district: DISTRICTS[district].into(),
                    kind,
                    sensor_id: id,
                },
                time_ns: 0,
                time_source: TimeSource::Device,
                values: metric_names(kind)
                    .iter()
                    .map(|m| (lookup(kind, m).expect("a canonical metric"), 0.0))
                    .collect(),
            });
            devices.push(Device {
                kind,
                district,
                interval_s,
                input,
                rate,
                leak,
                register: rng.random_range(0.0..5_000.0),
                free_flow,
            });
        }
    }
    // An input meter sees its district's consumers plus 10–15 % losses.
    let mut district_rate = std::collections::HashMap::new();
    for d in devices.iter().filter(|d| !d.input) {
        *district_rate.entry((d.kind, d.district)).or_insert(0.0) += d.rate + d.leak;
    }
    for d in devices.iter_mut().filter(|d| d.input) {
        d.rate = district_rate
            .get(&(d.kind, d.district))
            .copied()
            .unwrap_or(0.0)
            * rng.random_range(1.10..1.15);
    }
    let mut wheel = vec![Vec::new(); HOUR_S];
    for (i, d) in devices.iter().enumerate() {
        let phase = rng.random_range(0..d.interval_s);
        for k in 0..HOUR_S / d.interval_s {
            wheel[phase + k * d.interval_s].push(i as u32);
        }
    }
    City {
        devices,
        readings,
        registry,
        wheel,
    }
}

/// Rewrites a device's reading for device time `t_ns` (outside the timed sections).
fn fill(d: &mut Device, r: &mut Reading, t_ns: i64, rng: &mut SmallRng) {
    let local_hour = ((t_ns / SECOND_NS / 3600 + 5) % 24) as usize;
    let noise = rng.random_range(0.8..1.2);
    r.time_ns = t_ns;
    // The gateway hands the engine a reading it has just decoded, its strings in cache.
    std::hint::black_box((
        r.sensor.city.as_bytes().first(),
        r.sensor.district.as_bytes().first(),
        r.sensor.sensor_id.as_bytes().first(),
    ));
    let v = &mut r.values;
    match d.kind {
        Kind::Water | Kind::Heat | Kind::Power | Kind::Gas => {
            let per_hour = d.rate * USE_PROFILE[local_hour] * noise + d.leak;
            d.register += per_hour * d.interval_s as f64 / 3600.0;
            if d.kind != Kind::Heat && d.kind != Kind::Power {
                // Five-digit water and gas registers roll over.
                d.register %= 100_000.0;
            }
            v[0].1 = d.register;
            v[1].1 = per_hour;
        }
        Kind::Traffic => {
            let load = TRAFFIC_PROFILE[local_hour] * noise;
            v[0].1 = (d.rate * load / 60.0).round();
            v[1].1 = 60.0;
            v[2].1 =
                d.free_flow * (1.0 - 0.55 * load.min(1.0).powi(2)) * rng.random_range(0.95..1.05);
        }
        Kind::Air => {
            let pm25 = d.rate * (0.6 + 0.8 * USE_PROFILE[local_hour] / 1.7) * noise;
            v[0].1 = pm25;
            v[1].1 = pm25 * 1.6;
            v[2].1 = 25.0 + 40.0 * USE_PROFILE[local_hour] * noise;
            v[3].1 = 12.0 * noise;
            v[4].1 = 600.0 + 900.0 * USE_PROFILE[local_hour] * noise;
            v[5].1 = 60.0 - 20.0 * USE_PROFILE[local_hour] * noise;
            v[6].1 = -6.0 + 5.0 * noise;
        }
        Kind::Status => {
            v[0].1 = 80.0;
            v[1].1 = 1.0;
        }
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// RSS after giving freed heap pages back, so that emitted values already dropped do not count.
fn settled_rss_kib() -> Option<u64> {
    // SAFETY: malloc_trim only releases free memory of glibc's heap; no pointers are involved.
    unsafe {
        libc::malloc_trim(0);
    }
    rss_kib()
}

/// One `advance` that emitted values.
struct Emission {
    /// Event time the watermark passed (the hour or day boundary), local "HH:00".
    at_hour: i64,
    took: Duration,
    values: usize,
    day_values: usize,
}

/// A value as text, its numbers to 7 significant digits: sums over the registry (a hash map)
/// differ in their last bits from run to run.
fn digest_line(v: &IndicatorValue) -> String {
    let round = |x: f64| format!("{x:.6e}").parse().unwrap_or(x);
    let mut v = v.clone();
    v.value = v.value.map(round);
    for (_, d) in &mut v.details {
        if let Detail::Number(x) = d {
            *x = round(*x);
        }
    }
    format!("{v:?}")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let (mut sensors, mut hours) = (100_000usize, 26usize);
    let mut digest: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let target = match a.as_str() {
            "--digest" => {
                digest = Some(Vec::new());
                continue;
            }
            "--sensors" => &mut sensors,
            "--hours" => &mut hours,
            // cargo bench passes `--bench`.
            _ => continue,
        };
        *target = match args.next().map(|v| v.parse()) {
            Some(Ok(v)) if v > 0 => v,
            _ => {
                eprintln!("{a} takes a positive whole number");
                std::process::exit(2);
            }
        };
    }

    let mut rng = SmallRng::seed_from_u64(2026);
    let mut city = build_city(sensors, &mut rng);
    let mut per_kind = std::collections::BTreeMap::new();
    for d in &city.devices {
        *per_kind.entry(d.kind.as_str()).or_insert(0usize) += 1;
    }
    let inputs = city.devices.iter().filter(|d| d.input).count();
    let per_hour: usize = city.wheel.iter().map(Vec::len).sum();
    println!(
        "indicator engine: {} sensors in {} districts of one city ({}; {} district input meters), \
         {} readings per simulated hour, {} simulated hours from local 23:00, advance() every \
         simulated second",
        city.devices.len(),
        DISTRICTS.len(),
        per_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        inputs,
        per_hour,
        hours
    );
    let catalog = Arc::new(Catalog::builtin());
    let registry = Arc::new(Registry::new(std::mem::take(&mut city.registry)));
    let mut engine = Engine::new(catalog, EngineSettings::default(), registry);
    let rss_before = settled_rss_kib();

    let t0 = DAY0_NS - 3600 * SECOND_NS;
    let mut readings = 0u64;
    let mut add_time = Duration::ZERO;
    let mut idle_time = Duration::ZERO;
    let mut idle_calls = 0u64;
    let mut emissions: Vec<Emission> = Vec::new();
    let run = Instant::now();
    for s in 0..hours * HOUR_S {
        let t = t0 + s as i64 * SECOND_NS;
        let due = &city.wheel[s % HOUR_S];
        for &i in due {
            let i = i as usize;
            fill(&mut city.devices[i], &mut city.readings[i], t, &mut rng);
        }
        let a = Instant::now();
        for &i in due {
            engine.add(&city.readings[i as usize], t);
        }
        add_time += a.elapsed();
        readings += due.len() as u64;
        let b = Instant::now();
        let out: Vec<IndicatorValue> = engine.advance(t);
        let took = b.elapsed();
        if let Some(lines) = &mut digest {
            lines.extend(out.iter().map(digest_line));
        }
        if out.is_empty() {
            idle_time += took;
            idle_calls += 1;
        } else {
            let day_values = out.iter().filter(|v| v.window == "24h").count();
            emissions.push(Emission {
                at_hour: (t - 120 * SECOND_NS).div_euclid(3600 * SECOND_NS),
                took,
                values: out.len(),
                day_values,
            });
        }
    }
    let wall = run.elapsed();
    let rss_after = settled_rss_kib();

    let n = city.devices.len() as f64;
    let secs = |d: Duration| d.as_secs_f64();
    let hour_closes: Vec<&Emission> = emissions
        .iter()
        .skip(1)
        .filter(|e| e.day_values == 0)
        .collect();
    // The first close also closes the day before the run (one hour of data): not a full day.
    let day_close = emissions.iter().skip(1).find(|e| e.day_values > 0);
    let emit_time: Duration = emissions.iter().map(|e| e.took).sum();
    let mut hour_ms: Vec<f64> = hour_closes.iter().map(|e| secs(e.took) * 1e3).collect();
    hour_ms.sort_by(f64::total_cmp);
    let mut hour_values: Vec<f64> = hour_closes.iter().map(|e| e.values as f64).collect();
    hour_values.sort_by(f64::total_cmp);

    println!("\n| measure | figure |\n|---|---:|");
    println!("| readings added | {readings} |");
    println!(
        "| add only: readings/s | {:.0} ({:.0} ns per reading) |",
        readings as f64 / secs(add_time),
        secs(add_time) * 1e9 / readings as f64
    );
    println!(
        "| advance() without a close: calls, mean | {idle_calls}, {:.1} µs |",
        secs(idle_time) * 1e6 / idle_calls.max(1) as f64
    );
    if !hour_ms.is_empty() {
        println!(
            "| hour close: count, median / p90 / max | {}, {:.0} / {:.0} / {:.0} ms |",
            hour_ms.len(),
            pct(&hour_ms, 0.5),
            pct(&hour_ms, 0.9),
            pct(&hour_ms, 1.0)
        );
        println!(
            "| hour close: values emitted, median (min–max) | {:.0} ({:.0}–{:.0}) |",
            pct(&hour_values, 0.5),
            hour_values[0],
            pct(&hour_values, 1.0)
        );
    }
    match day_close {
        Some(e) => println!(
            "| day close (with hour 23:00's close): time, values (of which 24 h) | {:.0} ms, {} ({}) |",
            secs(e.took) * 1e3,
            e.values,
            e.day_values
        ),
        None => println!("| day close | none in {hours} h (needs 26) |"),
    }
    println!(
        "| with every advance and emission: readings/s | {:.0} |",
        readings as f64 / secs(add_time + idle_time + emit_time)
    );
    println!(
        "| engine time: add / advance idle / emissions | {:.2} / {:.2} / {:.2} s |",
        secs(add_time),
        secs(idle_time),
        secs(emit_time)
    );
    println!(
        "| engine heap_bytes() per sensor after {hours} h | {:.0} B |",
        engine.heap_bytes() as f64 / engine.sensors() as f64
    );
    println!(
        "| size of a bucket (one sensor-hour), of a sensor's state | {} B, {} B |",
        std::mem::size_of::<qala::indicators::window::Bucket>(),
        std::mem::size_of::<qala::indicators::window::SensorState>()
    );
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        println!(
            "| RSS growth per sensor after {hours} h | {:.0} B ({} → {} MiB) |",
            (b.saturating_sub(a) * 1024) as f64 / n,
            a / 1024,
            b / 1024
        );
    }
    // The restart snapshot the engine's task writes every checkpoint_interval (CBOR).
    let t = std::time::Instant::now();
    let mut snap = Vec::new();
    match ciborium::into_writer(&engine.snapshot(), &mut snap) {
        Ok(()) => println!(
            "| restart snapshot (CBOR) after {hours} h: size, time to encode | {:.1} MiB, {:.0} ms |",
            snap.len() as f64 / (1 << 20) as f64,
            secs(t.elapsed()) * 1e3
        ),
        Err(e) => println!("| restart snapshot | failed: {e} |"),
    }
    drop(snap);
    let c = engine.counts();
    println!(
        "| late readings, re-emitted windows | {}, {} |",
        c.late_readings, c.reemitted_windows
    );
    println!(
        "| bench wall time (readings built outside the timings) | {:.1} s |",
        secs(wall)
    );
    if let Some(mut lines) = digest {
        use std::hash::{Hash, Hasher};
        lines.sort();
        let mut h = std::hash::DefaultHasher::new();
        lines.hash(&mut h);
        println!(
            "| digest of the {} values emitted (sorted) | {:016x} |",
            lines.len(),
            h.finish()
        );
    }
    println!("\nemissions (watermark past local hour, ms, values):");
    for e in &emissions {
        print!(
            " {:02}:00 {:.0}/{}",
            (e.at_hour + 5).rem_euclid(24),
            secs(e.took) * 1e3,
            e.values
        );
    }
    println!();
}
