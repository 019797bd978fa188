//! The city load test: the simulator plays a scenario at stepped offered rates against the
//! gateway (a `qala run` process) through a broker — the embedded one, and Mosquitto — and after
//! each step audits the store. One table row per step: offered rate, achieved and stored rates,
//! lag p50/p99 (device time = wall clock: each device's interval is shortened so that the fleet
//! falls due at the offered rate), how long the store took to catch up, the gateway's CPU and
//! peak RSS, lost readings.
//!
//!   cargo bench --bench city
//!   cargo bench --bench city -- --scenario simulators/almaty.toml --rates 5000,10000,20000 --seconds 15
//!   cargo bench --bench city -- --only mosquitto
//!
//! Servers are started like the tests start them (tests/common): free loopback ports, temp dirs,
//! stopped by PID. Needs mosquitto (scripts/test.sh installs it).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use qala::sim::audit::AuditTarget;
use qala::sim::run::{simulate, Clock, SimulateOptions};
use qala::sim::scenario::Scenario;
use qala::telemetry::prom;

struct Row {
    broker: String,
    offered: f64,
    achieved: f64,
    stored_rate: f64,
    readings: u64,
    lost: u64,
    lag_p50: Option<f64>,
    lag_p99: Option<f64>,
    /// How long after the last publish the store held every reading (the audit's wait).
    caught_up_s: f64,
    cpu: f64,
    rss_mib: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let scenario_path = arg("--scenario").unwrap_or_else(|| "simulators/oblast-centre.toml".into());
    let rates: Vec<f64> = arg("--rates")
        .unwrap_or_else(|| "2000,5000,10000,20000,40000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds: f64 = arg("--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let only = arg("--only");
    let base = Scenario::load(std::path::Path::new(&scenario_path)).expect("scenario");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "scenario {} ({} devices), {seconds} s per step, QoS 1, gateway: SQLite (synchronous=full), acks after the spool commit\n",
        base.name,
        base.device_count()
    );
    println!("| broker | offered msg/s | achieved msg/s | stored readings/s | readings | lost | lag p50 | lag p99 | caught up after | gateway CPU | gateway RSS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for broker in ["embedded", "mosquitto"] {
        if only.as_deref().is_some_and(|o| o != broker) {
            continue;
        }
        let mosq = (broker == "mosquitto").then(|| {
            common::Mosquitto::start_with(common::MosquittoOptions {
                max_inflight_messages: 1000,
                ..Default::default()
            })
        });
        let port = mosq.as_ref().map_or_else(common::free_port, |m| m.port);
        let http = common::free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = common::QalaConfig::new(port, http, dir.path());
        cfg.embedded = mosq.is_none();
        let sessions = if mosq.is_some() { 4 } else { 1 };
        let toml = cfg
            .toml()
            .replace("qos = 1\n", &format!("qos = 1\nsessions = {sessions}\n"))
            .replace(
                "[broker]\nembedded = true\n",
                "[broker]\nembedded = true\nmax_inflight = 1000\n",
            );
        let gw = common::Gateway::start(&toml, http, dir.path().join("gw"));
        std::thread::sleep(Duration::from_millis(500));
        let pid = gw.pid().expect("gateway pid");
        for (step, &rate) in rates.iter().enumerate() {
            let mut scenario = base.clone();
            scenario.city = format!("{}-{broker}-{step}", base.city);
            scenario.faults = Default::default();
            // Real time (device time = wall clock, so the gateway's lag is the true publish →
            // durable lag), with every device's interval shortened so that the fleet falls due
            // at the offered rate (a bit above it: the bucket holds the rate).
            let factor = due_rate(&scenario) / (rate * 1.05);
            for f in &mut scenario.fleets {
                f.interval = f.interval.mul_f64(factor);
            }
            let before = prom::parse(&gw.metrics());
            let cpu0 = cpu_seconds(pid);
            let rss = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = {
                let (rss, stop) = (rss.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = common::rss_bytes(pid).unwrap_or(0);
                        rss.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            };
            let t0 = Instant::now();
            let report = rt
                .block_on(simulate(
                    scenario,
                    SimulateOptions {
                        broker: format!("mqtt://127.0.0.1:{port}"),
                        clock: Clock::Live { speed: 1.0 },
                        duration: Some(Duration::from_secs_f64(seconds)),
                        rate: Some(rate),
                        qos: Some(1),
                        verify: Some(AuditTarget::Sqlite {
                            path: cfg.sqlite_path(),
                            gateway: None,
                        }),
                        progress: false,
                    },
                ))
                .expect("simulate");
            let wall = t0.elapsed().as_secs_f64();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = sampler.join();
            let cpu = (cpu_seconds(pid) - cpu0) / wall;
            let after = prom::parse(&gw.metrics());
            let lag =
                |q| prom::histogram_quantile_between(&before, &after, "qala_ingest_lag_seconds", q);
            let (lag_p50, lag_p99) = (lag(0.5), lag(0.99));
            let audit = report.audit.clone().unwrap_or_default();
            // Stored rate: readings stored over the time until the store had all of them.
            let until_stored = report.wall_seconds + audit.waited_s;
            let row = Row {
                broker: if mosq.is_some() {
                    "Mosquitto (window 1000), 4 sessions".into()
                } else {
                    "embedded (window 1000)".into()
                },
                offered: rate,
                achieved: report.messages_per_second,
                stored_rate: audit.stored as f64 / until_stored,
                readings: audit.stored,
                lost: audit.lost,
                lag_p50,
                lag_p99,
                caught_up_s: audit.waited_s,
                cpu,
                rss_mib: rss.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0,
            };
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} s | {:.0} % | {:.0} MiB |",
                row.broker,
                row.offered,
                row.achieved,
                row.stored_rate,
                row.readings,
                row.lost,
                ms(row.lag_p50),
                ms(row.lag_p99),
                row.caught_up_s,
                row.cpu * 100.0,
                row.rss_mib
            );
            let received = prom::sum(&after, "qala_messages_received_total", &[])
                - prom::sum(&before, "qala_messages_received_total", &[]);
            assert_eq!(
                row.lost, 0,
                "readings lost at {rate} msg/s through {broker}: published {}, received by the gateway {received}, audit {:?}",
                report.published, report.audit
            );
        }
        drop(gw);
        drop(mosq);
    }
}

/// Messages per second the scenario's devices fall due at speed 1.
fn due_rate(s: &Scenario) -> f64 {
    let mut r = 0.0;
    for f in &s.fleets {
        for d in 0..s.districts.len() {
            let n = s.sensors_in(f, d) as f64 + f64::from(u8::from(f.input_meter_loss.is_some()));
            let lanes = if f.kind == qala::model::Kind::Traffic {
                f64::from(f.lanes)
            } else {
                1.0
            };
            r += n * lanes / f.interval.as_secs_f64();
        }
    }
    r.max(1e-9)
}

/// utime + stime of a process, seconds (from /proc/PID/stat; clock ticks of 100 Hz).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(v: Option<f64>) -> String {
    v.map(|s| format!("{:.1} ms", s * 1000.0))
        .unwrap_or_else(|| "–".into())
}
