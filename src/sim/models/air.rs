//! Air-quality stations: PM2.5, PM10, NO2, SO2, CO, O3 (µg/m³), temperature (°C) and relative
//! humidity (%RH), Almaty-like.
//!
//! A concentration is a sum of sources times a dispersion factor:
//! `C = (background + traffic × exposure × traffic profile + heating × heating demand × heating
//! profile) × dispersion × district × station`, where
//! - the **traffic profile** is the detectors' demand profile ([`traffic::demand_shape`]): NO2 and
//!   CO follow the double rush hours;
//! - the **heating demand** is on in the heating season (15 Oct – 15 Apr) and grows as the day's
//!   mean temperature falls below +18 °C (coal-fired CHP plants and private-house stoves, the
//!   largest winter source of PM2.5, SO2 and CO in Almaty: Kerimray et al. 2020, AAQR 20:1340),
//!   with evening and morning stoking peaks;
//! - **dispersion** is the boundary layer's daily cycle (shallow at night, mixed in the
//!   afternoon) × a city-wide synoptic field (days) × a district field (hours) × **smog
//!   episodes**: winter temperature inversions (Nov 15 – Mar 5, most likely Dec–Feb) that build
//!   over a day or two, hold 3–8 days at 2.2–4 × the usual dispersion and clear with a front.
//!   Almaty's measured winter PM2.5 mean is 94 µg/m³ (Tursumbayeva et al. 2022, AAQR 22:210294)
//!   and the press reports evening values of 270–310 µg/m³ in districts during an episode; the
//!   model gives December–February means of ≈ 65–95 µg/m³ (summer ≈ 12), episode days at
//!   3–6 × the daily ПДК of 35 µg/m³, hourly values above 375 µg/m³ about 1 % of winter hours.
//!   Concentrations are capped at 1,000 µg/m³ (PM), where monitors saturate;
//! - O3 is photochemical: a summer-high background, an afternoon peak near 15:00, titrated by
//!   traffic NO at rush hours and suppressed under inversions.
//!
//! Stations of one district share its weather, dispersion field and episode intensity; a station
//! adds its siting (traffic exposure), a calibration bias and an hourly noise of its own. All of it
//! is counter-based hashing of (seed, district, station, time): `report(t)` depends on nothing
//! else.

use std::f64::consts::PI;

use super::clock::{bump, days_from_civil, monthly, Local};
use super::noise::{gauss, gauss_fast, hash2, hash3, lognormal, smooth, tag, Stream};
use super::traffic::{demand_shape, WEEKDAY_MEAN};
use super::Value;

/// Almaty monthly mean air temperature (°C), mid-month values: January −4.7, July 23.8 and the
/// annual ≈ 10 °C are the city's climate normals as commonly quoted; the other months are an
/// approximation consistent with them. To verify against Kazhydromet's table before calibrating
/// heat consumption on it.
pub const TEMPERATURE_MONTHLY: [f64; 12] = [
    -4.7, -3.0, 3.6, 11.4, 16.4, 21.4, 23.8, 22.8, 17.3, 9.9, 2.4, -2.7,
];
/// Half the mean daily temperature range (°C) by month: Almaty's range is ≈ 9–10 °C in winter
/// and ≈ 12–13 °C in summer (minimum near 05:00–06:00, maximum near 15:00).
const HALF_RANGE_MONTHLY: [f64; 12] = [4.5, 4.5, 5.0, 6.0, 6.0, 6.5, 6.5, 6.5, 6.5, 6.0, 5.0, 4.5];
/// Standard deviation of the synoptic (multi-day) temperature anomaly by month (°C): cold waves
/// and thaws are larger in winter.
const SYNOPTIC_SIGMA_MONTHLY: [f64; 12] =
    [4.5, 4.5, 3.5, 3.0, 2.5, 2.2, 2.0, 2.0, 2.5, 3.0, 3.5, 4.5];
/// Monthly mean relative humidity (%RH): humid, foggy winters (≈ 75–80 %), dry summers (≈ 45–50 %).
const HUMIDITY_MONTHLY: [f64; 12] = [
    78.0, 77.0, 71.0, 60.0, 57.0, 50.0, 47.0, 45.0, 48.0, 60.0, 72.0, 78.0,
];
/// Change of relative humidity per °C above the day's mean temperature (%RH/°C): RH peaks at
/// dawn and bottoms in the afternoon, as the saturation pressure rises ≈ 6–7 %/°C.
const HUMIDITY_PER_DEGREE: f64 = -2.8;

/// O3 background by month (µg/m³, multiplied by the daily shape below): photochemistry makes
/// summer afternoons reach ≈ 110–130 µg/m³ and winter ones ≈ 40.
const O3_MONTHLY: [f64; 12] = [
    48.0, 58.0, 77.0, 96.0, 112.0, 125.0, 128.0, 122.0, 99.0, 74.0, 54.0, 46.0,
];

/// Heating-stoves' daily shape: stoked in the evening (peak near 20:30) and in the morning.
fn heating_profile(hour: f64) -> f64 {
    const NORM: f64 = 1.0 + (0.6 * 2.5 + 0.25 * 1.5) * 0.104_444; // √(2π)/24 = 0.104444
    (1.0 + 0.6 * bump(hour, 20.5, 2.5) + 0.25 * bump(hour, 8.0, 1.5)) / NORM
}

/// Boundary-layer dispersion, mean one: highest concentrations near 02:00, lowest near 14:00,
/// the swing larger in winter (`amplitude` 0.35) than in summer (0.25).
fn mixing(hour: f64, amplitude: f64) -> f64 {
    1.0 + amplitude * (2.0 * PI * (hour - 2.0) / 24.0).cos()
}

/// The daily temperature shape: −1 at 06:00, +1 at 15:00, a half cosine up and one down.
fn diurnal_temperature(hour: f64) -> f64 {
    if (6.0..15.0).contains(&hour) {
        -(PI * (hour - 6.0) / 9.0).cos()
    } else {
        (PI * (hour - 15.0).rem_euclid(24.0) / 15.0).cos()
    }
}

const T_CITY: u64 = tag("air.city");
const T_SYNOPTIC: u64 = tag("air.synoptic");
const T_SYNOPTIC_FAST: u64 = tag("air.synoptic.fast");
const T_DISPERSION: u64 = tag("air.dispersion");
const T_DISTRICT: u64 = tag("air.district");
const T_EPISODE: u64 = tag("air.episode");
const T_STATION: u64 = tag("air.station");
const T_HUMIDITY: u64 = tag("air.humidity");

/// Winter smog episodes are drawn in 10-day blocks from 15 November: 11 blocks to 5 March.
const EPISODE_BLOCK_DAYS: f64 = 10.0;
const EPISODE_BLOCKS: i64 = 11;
/// Probability of an episode starting in a block centred in December–February, and in the
/// shoulders (late November, early March).
const EPISODE_P_CORE: f64 = 0.6;
const EPISODE_P_SHOULDER: f64 = 0.3;
/// Surface cooling under an inversion at its height (°C), and the damped daily range.
const EPISODE_COLD: f64 = 2.5;

/// A city-wide winter smog episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// Local days since 1970-01-01 (fractional) of its start and end.
    pub start_day: f64,
    pub end_day: f64,
    /// Peak dispersion multiplier (2.2–4) before the district's own modulation.
    pub peak: f64,
    /// An identifier (for the districts' modulation).
    pub key: u64,
}

impl Episode {
    /// 0 outside, rising over the first 35 % (accumulation under the inversion), 1 on the
    /// plateau, falling over the last 10 % (a front clears it).
    pub fn shape(&self, days: f64) -> f64 {
        let tau = (days - self.start_day) / (self.end_day - self.start_day);
        let smoothstep = |x: f64| {
            let x = x.clamp(0.0, 1.0);
            x * x * (3.0 - 2.0 * x)
        };
        if !(0.0..1.0).contains(&tau) {
            0.0
        } else if tau < 0.35 {
            smoothstep(tau / 0.35)
        } else if tau < 0.9 {
            1.0
        } else {
            1.0 - smoothstep((tau - 0.9) / 0.1)
        }
    }
}

fn city_key(seed: u64) -> u64 {
    hash2(seed, T_CITY)
}

/// The smog episode of block `block` of the winter starting in `winter` (its November), if any.
fn episode_of_block(city: u64, winter: i32, block: i64) -> Option<Episode> {
    if !(0..EPISODE_BLOCKS).contains(&block) {
        return None;
    }
    let key = hash3(city ^ T_EPISODE, winter as u64, block as u64);
    let first = days_from_civil(winter, 11, 15) as f64 + block as f64 * EPISODE_BLOCK_DAYS;
    // Block centres from 1 December (day 16 after 15 Nov) to 1 March (day 106) are the core.
    let centre = block as f64 * EPISODE_BLOCK_DAYS + EPISODE_BLOCK_DAYS / 2.0;
    let p = if (16.0..=106.0).contains(&centre) {
        EPISODE_P_CORE
    } else {
        EPISODE_P_SHOULDER
    };
    let mut s = Stream::new(key);
    if s.unit() >= p {
        return None;
    }
    let start_day = first + EPISODE_BLOCK_DAYS * s.unit();
    let length = 3.0 + 5.0 * s.unit();
    Some(Episode {
        start_day,
        end_day: start_day + length,
        peak: 2.2 + 1.8 * s.unit(),
        key,
    })
}

/// The winter smog episode in force at a local time, if any (ground truth for tests and the
/// audit). Episodes are city-wide; [`Station`]s modulate their intensity per district.
pub fn episode_at(seed: u64, local: &Local) -> Option<Episode> {
    let winter = if local.month >= 7 {
        local.year
    } else {
        local.year - 1
    };
    let days = local.days();
    let since = days - days_from_civil(winter, 11, 15) as f64;
    let block = (since / EPISODE_BLOCK_DAYS).floor() as i64;
    let city = city_key(seed);
    [block, block - 1]
        .into_iter()
        .filter_map(|b| episode_of_block(city, winter, b))
        .filter(|e| e.shape(days) > 0.0)
        .max_by(|a, b| a.shape(days).total_cmp(&b.shape(days)))
}

/// The city's daily mean outdoor temperature (°C) around a local time, without the daily cycle:
/// climatology + the synoptic anomaly (2.5-day knots) + the cooling of a smog episode. Meters
/// use it for heating demand, so heat and gas follow the same weather as the stations.
pub fn daily_mean_temperature(seed: u64, local: &Local) -> f64 {
    let shape = episode_at(seed, local).map_or(0.0, |e| e.shape(local.days()));
    daily_mean_temperature_in(city_key(seed), local, shape)
}

/// [`daily_mean_temperature`] with the city's key and the episode's shape already known.
fn daily_mean_temperature_in(city: u64, local: &Local, episode_shape: f64) -> f64 {
    let pos = local.month_pos();
    let anomaly =
        monthly(&SYNOPTIC_SIGMA_MONTHLY, pos) * smooth(city ^ T_SYNOPTIC, local.days() / 2.5);
    monthly(&TEMPERATURE_MONTHLY, pos) + anomaly - EPISODE_COLD * episode_shape
}

/// Heating demand, 0 outside the heating season, else (18 − T_day)/18 within 0.2 (the CHP
/// plants run and the stoves are lit however mild the day) and 1.5 (−9 °C: colder days burn
/// longer, not more stoves).
pub fn heating_demand(local: &Local, daily_mean_temperature: f64) -> f64 {
    if local.heating_season() {
        ((18.0 - daily_mean_temperature) / 18.0).clamp(0.2, 1.5)
    } else {
        0.0
    }
}

/// An air-quality station.
#[derive(Debug, Clone)]
pub struct Station {
    seed: u64,
    city: u64,
    district_key: u64,
    station_key: u64,
    /// District-wide pollution level (low-lying northern districts with private-house stoves
    /// are dirtier than the foothills), log-normal σ 0.25.
    district_level: f64,
    /// District temperature offset (°C, altitude 600–1,200 m and heat island), σ 1 °C.
    district_temperature: f64,
    /// Station siting: the weight of traffic sources, 0.6 (background) .. 1.6 (kerbside).
    traffic_exposure: f64,
    /// Calibration bias of the station's instruments (log-normal σ 0.08).
    bias: f64,
    temperature_offset: f64,
}

impl Station {
    /// `district`: index of the district in the city (stations of a district share its weather
    /// and pollution episodes); `id`: a stable per-station number.
    pub fn new(seed: u64, district: u32, id: u64) -> Station {
        let district_key = hash3(seed, T_DISTRICT, district as u64);
        let station_key = hash3(district_key, T_STATION, id);
        let mut s = Stream::new(station_key);
        Station {
            seed,
            city: city_key(seed),
            district_key,
            station_key,
            district_level: lognormal(0.25, gauss(hash2(district_key, 1))),
            district_temperature: gauss(hash2(district_key, 2)),
            traffic_exposure: 0.6 + s.unit(),
            bias: lognormal(0.08, s.gauss()),
            temperature_offset: 0.3 * s.gauss(),
        }
    }

    /// pm2_5, pm10, no2, so2, co, o3 (all µg/m³), temperature (°C), humidity (%RH) at `t_ns`.
    pub fn report(&mut self, t_ns: i64) -> Vec<Value> {
        let local = Local::at(t_ns);
        let pos = local.month_pos();
        let days = local.days();
        let hours = days * 24.0;
        let h = local.hour;

        // Weather: the city's daily mean, the district's offset, the daily cycle (damped under
        // an inversion), a fast anomaly (fronts within a day).
        let episode = episode_at(self.seed, &local);
        let ep_shape = episode.map_or(0.0, |e| e.shape(days));
        let t_day = daily_mean_temperature_in(self.city, &local, ep_shape);
        let fast = smooth(self.city ^ T_SYNOPTIC_FAST, hours / 12.0);
        let half_range = monthly(&HALF_RANGE_MONTHLY, pos) * (1.0 - 0.4 * ep_shape);
        let cycle = half_range * diurnal_temperature(h);
        let mut noise = Stream::new(hash2(self.station_key, t_ns as u64));
        let temperature = t_day
            + self.district_temperature
            + cycle
            + fast
            + self.temperature_offset
            + 0.15 * noise.gauss();
        let humidity = monthly(&HUMIDITY_MONTHLY, pos)
            + HUMIDITY_PER_DEGREE * (cycle + fast)
            + 8.0 * smooth(self.district_key ^ T_HUMIDITY, hours / 24.0)
            + 10.0 * ep_shape
            + 1.0 * noise.gauss();

        // Dispersion: daily mixing × city synoptic (1.5-day knots, log-normal σ 0.2) × district
        // (3-hour knots, σ 0.2) × the episode, its excess modulated by the district (σ 0.2).
        let heating = heating_demand(&local, t_day);
        let winterness = if local.heating_season() { 1.0 } else { 0.0 };
        let episode_factor = episode.map_or(1.0, |e| {
            let district = lognormal(0.2, gauss(hash2(self.district_key, e.key)));
            1.0 + (e.peak - 1.0) * district * ep_shape
        });
        // In logarithms: each pollutant takes its own power of it, and its own noise, in one exp.
        let ln_dispersion =
            (mixing(h, 0.25 + 0.1 * winterness) * episode_factor * self.district_level).ln()
                + 0.2 * smooth(self.city ^ T_DISPERSION, days / 1.5)
                + 0.2 * smooth(self.district_key ^ T_DISPERSION, hours / 3.0)
                - 0.04;
        let traffic = demand_shape(&local) / WEEKDAY_MEAN * self.traffic_exposure;
        let stoves = heating * heating_profile(h);
        // Station noise: an hourly field of its own (PM shared by both fractions) and a
        // per-reading instrument noise.
        // `own(a, σ, k)`: dispersion^a × the station's field k (σ) × instrument noise (σ 0.03).
        let mut own = |power: f64, sigma: f64, k: u64| {
            (power * ln_dispersion + sigma * smooth(self.station_key ^ k, hours)
                - 0.5 * sigma * sigma
                + 0.03 * gauss_fast(noise.next_u64()))
            .exp()
        };

        // Sources at unit dispersion (µg/m³).
        let pm2_5 = (8.0 + 5.0 * traffic + 36.0 * stoves) * own(1.0, 0.12, 1) * self.bias;
        // Coarse dust: road and soil dust, dry summers, less trapped by inversions.
        let dry = monthly(
            &[0.6, 0.6, 0.8, 1.1, 1.3, 1.5, 1.6, 1.6, 1.4, 1.1, 0.8, 0.6],
            pos,
        );
        let coarse = (14.0 * dry * (0.5 + 0.5 * traffic)) * own(0.5, 0.2, 2);
        let pm10 = pm2_5 + coarse;
        let no2 = (14.0 + 26.0 * traffic + 10.0 * stoves) * own(0.7, 0.15, 3);
        let so2 = (6.0 + 28.0 * stoves) * own(0.8, 0.2, 4);
        let co = (300.0 + 450.0 * traffic + 900.0 * stoves) * own(1.0, 0.15, 5);
        let sun = 0.3 + 1.1 * bump(h, 15.0, 3.0);
        let o3 = monthly(&O3_MONTHLY, pos) * sun * (1.0 - 0.2 * traffic.min(2.0))
            / episode_factor.sqrt()
            * own(0.0, 0.15, 6);

        let pm2_5 = round(pm2_5.min(1000.0), 1);
        vec![
            ("pm2_5", pm2_5),
            ("pm10", round(pm10.min(2000.0), 1).max(pm2_5)),
            ("no2", round(no2.min(2000.0), 1)),
            ("so2", round(so2.min(2000.0), 1)),
            ("co", round(co.min(50_000.0), 0)),
            ("o3", round(o3.clamp(0.0, 1000.0), 1)),
            ("temperature", round(temperature.clamp(-60.0, 60.0), 1)),
            ("humidity", round(humidity.clamp(5.0, 100.0), 1)),
        ]
    }
}

/// Rounds to the resolution devices report with.
fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::super::clock::{local_ns, NS_PER_DAY, NS_PER_HOUR};
    use super::*;
    use crate::model::Kind;
    use crate::normalize::catalog;

    const SEED: u64 = 2026;

    fn get(rec: &[Value], name: &str) -> f64 {
        rec.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap()
    }

    /// Hourly values of `metric` from local midnight of a date, for `hours`.
    fn hourly_series(s: &mut Station, start: i64, hours: i64, metric: &str) -> Vec<f64> {
        (0..hours)
            .map(|i| get(&s.report(start + i * NS_PER_HOUR), metric))
            .collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let (ma, mb) = (mean(a), mean(b));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            sab += (x - ma) * (y - mb);
            saa += (x - ma) * (x - ma);
            sbb += (y - mb) * (y - mb);
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn the_same_seed_gives_the_same_values_and_another_station_others() {
        let t = local_ns(2026, 1, 20, 19.0);
        let mut a = Station::new(SEED, 2, 10);
        let mut b = Station::new(SEED, 2, 10);
        let mut c = Station::new(SEED, 2, 11);
        let va: Vec<_> = (0..48).map(|i| a.report(t + i * NS_PER_HOUR)).collect();
        let vb: Vec<_> = (0..48).map(|i| b.report(t + i * NS_PER_HOUR)).collect();
        let vc: Vec<_> = (0..48).map(|i| c.report(t + i * NS_PER_HOUR)).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert_eq!(
            a.report(t + 5 * NS_PER_HOUR),
            va[5],
            "a function of time alone"
        );
        assert_ne!(Station::new(SEED + 1, 2, 10).report(t), va[0]);
    }

    #[test]
    fn every_value_is_within_the_catalog_over_a_year() {
        for (district, id) in [(0, 1), (3, 7), (6, 2)] {
            let mut s = Station::new(SEED, district, id);
            let start = local_ns(2025, 7, 1, 0.0);
            for i in 0..(365 * 24 * 3) {
                let rec = s.report(start + i * 20 * 60 * 1_000_000_000);
                assert_eq!(rec.len(), 8);
                for (name, v) in &rec {
                    let def = catalog::lookup(Kind::Air, name).expect("a catalog metric");
                    assert!(
                        v.is_finite() && *v >= def.min && *v <= def.max,
                        "{name} = {v} outside {}..{}",
                        def.min,
                        def.max
                    );
                }
                assert!(get(&rec, "pm10") >= get(&rec, "pm2_5"));
            }
        }
    }

    #[test]
    fn the_heating_season_is_dirtier_than_the_summer() {
        let mut s = Station::new(SEED, 1, 1);
        let winter = hourly_series(&mut s, local_ns(2025, 12, 1, 0.0), 90 * 24, "pm2_5");
        let summer = hourly_series(&mut s, local_ns(2026, 6, 1, 0.0), 90 * 24, "pm2_5");
        let (w, su) = (mean(&winter), mean(&summer));
        assert!(w > 3.0 * su, "winter {w} summer {su}");
        // Near Almaty's measured winter mean (94 µg/m³) and a clean-ish summer.
        assert!((55.0..150.0).contains(&w), "winter {w}");
        assert!((6.0..30.0).contains(&su), "summer {su}");
        let so2_w = mean(&hourly_series(
            &mut s,
            local_ns(2026, 1, 1, 0.0),
            30 * 24,
            "so2",
        ));
        let so2_s = mean(&hourly_series(
            &mut s,
            local_ns(2026, 7, 1, 0.0),
            30 * 24,
            "so2",
        ));
        assert!(so2_w > 2.0 * so2_s, "so2 {so2_w} {so2_s}");
    }

    #[test]
    fn every_winter_has_a_smog_episode_of_days_above_three_times_the_daily_limit() {
        // ПДК с.с. for PM2.5 is 35 µg/m³ (DOMAIN.md §3); daily means are local-midnight days.
        for seed in [SEED, 1, 2, 3] {
            for winter in [2025, 2026] {
                let mut s = Station::new(seed, 4, 1);
                let start = local_ns(winter, 11, 15, 0.0);
                let mut run = 0;
                let mut longest = 0;
                for day in 0..110 {
                    let pm = hourly_series(&mut s, start + day * NS_PER_DAY, 24, "pm2_5");
                    if mean(&pm) > 3.0 * 35.0 {
                        run += 1;
                        longest = longest.max(run);
                    } else {
                        run = 0;
                    }
                }
                assert!(longest >= 2, "seed {seed} winter {winter}: {longest} days");
            }
        }
    }

    #[test]
    fn smog_episodes_are_city_wide_winter_events_that_cool_the_surface() {
        let mut n = 0;
        for day in 0..365 {
            let local = Local::at(local_ns(2026, 1, 1, 12.0) + day * NS_PER_DAY);
            if let Some(e) = episode_at(SEED, &local) {
                n += 1;
                assert!(matches!(local.month, 11 | 12 | 1 | 2 | 3), "{local:?}");
                assert!((3.0..=8.0).contains(&(e.end_day - e.start_day)));
            }
        }
        assert!((15..=70).contains(&n), "{n} episode days in 2026");
    }

    #[test]
    fn stations_of_a_district_correlate_more_than_stations_of_different_districts() {
        let start = local_ns(2026, 1, 1, 0.0);
        let hours = 31 * 24;
        let a1 = hourly_series(&mut Station::new(SEED, 0, 1), start, hours, "pm2_5");
        let a2 = hourly_series(&mut Station::new(SEED, 0, 2), start, hours, "pm2_5");
        let b1 = hourly_series(&mut Station::new(SEED, 5, 3), start, hours, "pm2_5");
        let same = pearson(&a1, &a2);
        let other = pearson(&a1, &b1).max(pearson(&a2, &b1));
        assert!(same > 0.7, "same district r = {same}");
        assert!(same > other + 0.05, "same {same} other {other}");
    }

    #[test]
    fn no2_and_co_follow_the_rush_hours_and_o3_the_afternoon() {
        let mut s = Station::new(SEED, 2, 4);
        let (mut rush, mut night, mut o3_pm, mut o3_am) = (0.0, 0.0, 0.0, 0.0);
        // Weekdays of May 2026 away from the holidays.
        for day in 11..=29u8 {
            if Local::at(local_ns(2026, 5, day, 12.0)).day_off() {
                continue;
            }
            let at = |s: &mut Station, h: f64| s.report(local_ns(2026, 5, day, h));
            rush += get(&at(&mut s, 18.5), "no2");
            night += get(&at(&mut s, 4.0), "no2");
            o3_pm += get(&at(&mut s, 15.0), "o3");
            o3_am += get(&at(&mut s, 6.0), "o3");
        }
        assert!(rush > 1.5 * night, "no2 rush {rush} night {night}");
        assert!(o3_pm > 2.0 * o3_am, "o3 15:00 {o3_pm} 06:00 {o3_am}");
    }

    #[test]
    fn temperature_and_humidity_follow_almatys_seasons_and_days() {
        let mut s = Station::new(SEED, 3, 1);
        let jan = hourly_series(&mut s, local_ns(2026, 1, 1, 0.0), 31 * 24, "temperature");
        let jul = hourly_series(&mut s, local_ns(2026, 7, 1, 0.0), 31 * 24, "temperature");
        assert!((-12.0..3.0).contains(&mean(&jan)), "January {}", mean(&jan));
        assert!((18.0..30.0).contains(&mean(&jul)), "July {}", mean(&jul));
        let at = |h: usize| jul.iter().skip(h).step_by(24).sum::<f64>() / 31.0;
        assert!(
            at(15) > at(6) + 8.0,
            "July 15:00 {} 06:00 {}",
            at(15),
            at(6)
        );
        let rh = hourly_series(&mut s, local_ns(2026, 7, 1, 0.0), 31 * 24, "humidity");
        let rh_at = |h: usize| rh.iter().skip(h).step_by(24).sum::<f64>() / 31.0;
        assert!(rh_at(6) > rh_at(15) + 15.0);
    }

    /// Monthly means, for calibration: `cargo test --lib air::tests::print -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_monthly_means() {
        let mut s = Station::new(SEED, 0, 1);
        let names = [
            "pm2_5",
            "pm10",
            "no2",
            "so2",
            "co",
            "o3",
            "temperature",
            "humidity",
        ];
        println!("month {names:?} max_pm2_5");
        for m in 1..=12u8 {
            let start = local_ns(2026, m, 1, 0.0);
            let mut sums = [0.0; 8];
            let mut max = 0.0f64;
            for i in 0..(28 * 24) {
                let rec = s.report(start + i * NS_PER_HOUR);
                for (k, n) in names.iter().enumerate() {
                    sums[k] += get(&rec, n) / (28.0 * 24.0);
                }
                max = max.max(get(&rec, "pm2_5"));
            }
            let rounded: Vec<_> = sums.iter().map(|v| (v * 10.0).round() / 10.0).collect();
            println!("{m:2} {rounded:?} {max:.0}");
        }
        let start = local_ns(2026, 1, 1, 0.0);
        for district in 0..4 {
            let a1 = hourly_series(&mut Station::new(SEED, district, 1), start, 744, "pm2_5");
            let a2 = hourly_series(&mut Station::new(SEED, district, 2), start, 744, "pm2_5");
            let b = hourly_series(
                &mut Station::new(SEED, district + 4, 3),
                start,
                744,
                "pm2_5",
            );
            println!(
                "district {district}: same r {:.3}, other r {:.3}",
                pearson(&a1, &a2),
                pearson(&a1, &b)
            );
        }
        let mut all: Vec<f64> = Vec::new();
        for d in 0..8 {
            all.extend(hourly_series(
                &mut Station::new(SEED, d, 1),
                local_ns(2025, 11, 1, 0.0),
                150 * 24,
                "pm2_5",
            ));
        }
        all.sort_by(f64::total_cmp);
        let q = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
        println!(
            "winter pm2_5 hourly p50 {} p90 {} p99 {} p99.9 {} max {}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
}
