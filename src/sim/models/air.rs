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
//!   over a day or two, hold 3–8 days at 2.5–5 × the usual dispersion and clear with a front.
//!   Almaty's measured winter PM2.5 mean is 94 µg/m³ (Tursumbayeva et al. 2022, AAQR 22:210294),
//!   with evening peaks near 300 µg/m³ in episodes: the model's heating-season mean lands near it,
//!   episode days at 3–6 × the daily ПДК of 35 µg/m³;
//! - O3 is photochemical: a summer-high background, an afternoon peak near 15:00, titrated by
//!   traffic NO at rush hours and suppressed under inversions.
//!
//! Stations of one district share its weather, dispersion field and episode intensity; a station
//! adds its siting (traffic exposure), a calibration bias and an hourly noise of its own. All of it
//! is counter-based hashing of (seed, district, station, time): `report(t)` depends on nothing
//! else.

use std::f64::consts::PI;

use super::clock::{bump, days_from_civil, monthly, Local};
use super::noise::{gauss, hash2, hash3, lognormal, smooth, tag, Stream};
use super::traffic::{demand_shape, WEEKDAY_MEAN};
use super::Value;

/// Almaty monthly mean air temperature (°C), mid-month values: January −4.7 and July 23.8 as in
/// the climate normals quoted for the city (annual ≈ 10 °C); the other months interpolated from
/// the same normals, rounded. To verify against Kazhydromet's table before calibrating heat.
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
    30.0, 36.0, 48.0, 60.0, 70.0, 78.0, 80.0, 76.0, 62.0, 46.0, 34.0, 29.0,
];

/// Heating-stoves' daily shape: stoked in the evening (peak near 20:30) and in the morning.
fn heating_profile(hour: f64) -> f64 {
    const NORM: f64 = 1.0 + (0.6 * 2.5 + 0.25 * 1.5) * 0.104_444; // √(2π)/24 = 0.104444
    (1.0 + 0.6 * bump(hour, 20.5, 2.5) + 0.25 * bump(hour, 8.0, 1.5)) / NORM
}

/// Boundary-layer dispersion, mean one: highest concentrations near 02:00, lowest near 14:00,
/// the swing larger in winter (`amplitude` 0.4) than in summer (0.25).
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
    /// Peak dispersion multiplier (2.5–5) before the district's own modulation.
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
        peak: 2.5 + 2.5 * s.unit(),
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
    let pos = local.month_pos();
    let days = local.days();
    let city = city_key(seed);
    let anomaly = monthly(&SYNOPTIC_SIGMA_MONTHLY, pos) * smooth(city ^ T_SYNOPTIC, days / 2.5);
    let cold = episode_at(seed, local).map_or(0.0, |e| EPISODE_COLD * e.shape(days));
    monthly(&TEMPERATURE_MONTHLY, pos) + anomaly - cold
}

/// Heating demand, 0 outside the heating season, else (18 − T_day)/18 but at least 0.2 (the
/// CHP plants run and the stoves are lit however mild the day).
pub fn heating_demand(local: &Local, daily_mean_temperature: f64) -> f64 {
    if local.heating_season() {
        ((18.0 - daily_mean_temperature) / 18.0).max(0.2)
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
        let t_day = daily_mean_temperature(self.seed, &local);
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

        // Dispersion: daily mixing × city synoptic (1.5-day knots) × district (3-hour knots) ×
        // the episode, modulated by the district (log-normal σ 0.3 of its excess).
        let heating = heating_demand(&local, t_day);
        let winterness = if local.heating_season() { 1.0 } else { 0.0 };
        let episode_factor = episode.map_or(1.0, |e| {
            let district = lognormal(0.3, gauss(hash2(self.district_key, e.key)));
            1.0 + (e.peak - 1.0) * district * ep_shape
        });
        let dispersion = mixing(h, 0.25 + 0.15 * winterness)
            * lognormal(0.3, smooth(self.city ^ T_DISPERSION, days / 1.5))
            * lognormal(0.3, smooth(self.district_key ^ T_DISPERSION, hours / 3.0))
            * episode_factor
            * self.district_level;
        let traffic = demand_shape(&local) / WEEKDAY_MEAN * self.traffic_exposure;
        let stoves = heating * heating_profile(h);
        // Station noise: an hourly field of its own (PM shared by both fractions) and a
        // per-reading instrument noise.
        let station_pm = lognormal(0.12, smooth(self.station_key ^ 1, hours)) * self.bias;
        let mut own = |sigma: f64, k: u64| {
            lognormal(sigma, smooth(self.station_key ^ k, hours)) * lognormal(0.03, noise.gauss())
        };

        // Sources at unit dispersion (µg/m³).
        let pm2_5 = (8.0 + 5.0 * traffic + 30.0 * stoves) * dispersion * station_pm;
        // Coarse dust: road and soil dust, dry summers, less trapped by inversions.
        let dry = monthly(
            &[0.6, 0.6, 0.8, 1.1, 1.3, 1.5, 1.6, 1.6, 1.4, 1.1, 0.8, 0.6],
            pos,
        );
        let coarse = (9.0 * dry * (0.5 + 0.5 * traffic)) * dispersion.sqrt() * own(0.2, 2);
        let pm10 = pm2_5 + coarse;
        let no2 = (14.0 + 26.0 * traffic + 10.0 * stoves) * dispersion.powf(0.7) * own(0.15, 3);
        let so2 = (6.0 + 28.0 * stoves) * dispersion.powf(0.8) * own(0.2, 4);
        let co = (300.0 + 450.0 * traffic + 900.0 * stoves) * dispersion * own(0.15, 5);
        let sun = 0.3 + 1.1 * bump(h, 15.0, 3.0);
        let o3 = monthly(&O3_MONTHLY, pos) * sun * (1.0 - 0.2 * traffic.min(2.0))
            / episode_factor.sqrt()
            * own(0.15, 6);

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
