//! A small fleet of plausible sensors of all seven kinds (status devices report their health), deterministic for a seed: daily shapes in
//! local time (UTC+5), cumulative registers that only grow, payloads in JSON objects and SenML
//! packs with the units devices really use (so conversions are exercised), and a known share of
//! deliberately malformed messages so that dead-lettering shows.

use std::f64::consts::PI;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::Kind;

/// The districts of Almaty.
pub const ALMATY_DISTRICTS: [&str; 8] = [
    "alatau",
    "almaly",
    "auezov",
    "bostandyk",
    "zhetysu",
    "medeu",
    "nauryzbay",
    "turksib",
];

/// Kazakhstan's single time zone since 1 March 2024 (DOMAIN.md §2a).
const UTC_OFFSET_S: i64 = 5 * 3600;

/// One simulated device.
#[derive(Debug, Clone)]
pub struct SimSensor {
    pub kind: Kind,
    pub district: &'static str,
    pub id: String,
    /// Cumulative register (m³ or kWh), for meters.
    register: f64,
    last_ns: Option<i64>,
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct SimMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
    /// False for the deliberately malformed ones (they must be dead-lettered).
    pub valid: bool,
}

/// Sensors in round-robin.
pub struct Fleet {
    pub city: String,
    sensors: Vec<SimSensor>,
    rng: SmallRng,
    next: usize,
    sent: u64,
    /// Every `bad_every`-th message is malformed (0: never).
    bad_every: u64,
}

impl Fleet {
    /// `per_kind` sensors of each kind spread over the districts.
    pub fn new(city: &str, per_kind: usize, seed: u64, bad_every: u64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut sensors = Vec::new();
        for kind in Kind::ALL {
            for i in 0..per_kind {
                let district = ALMATY_DISTRICTS[(i + kind as usize) % ALMATY_DISTRICTS.len()];
                sensors.push(SimSensor {
                    kind,
                    district,
                    id: format!("{}-{:03}", kind.as_str(), i + 1),
                    register: rng.random_range(100.0..5_000.0),
                    last_ns: None,
                });
            }
        }
        Fleet {
            city: city.to_owned(),
            sensors,
            rng,
            next: 0,
            sent: 0,
            bad_every,
        }
    }

    pub fn sensors(&self) -> &[SimSensor] {
        &self.sensors
    }

    /// The next message, stamped `now_ns`.
    pub fn next_message(&mut self, now_ns: i64) -> SimMessage {
        let idx = self.next % self.sensors.len();
        self.next += 1;
        self.sent += 1;
        let malformed = self.bad_every > 0 && self.sent.is_multiple_of(self.bad_every);
        let city = self.city.clone();
        let rng = &mut self.rng;
        let s = &mut self.sensors[idx];
        let topic = format!("city/{city}/{}/{}/{}", s.district, s.kind.as_str(), s.id);
        let payload = if malformed {
            malformed_payload(self.sent / self.bad_every.max(1), now_ns)
        } else {
            reading_payload(s, rng, now_ns)
        };
        SimMessage {
            topic,
            payload: payload.into_bytes(),
            kind: s.kind,
            valid: !malformed,
        }
    }
}

/// Local hour of day, fractional.
fn local_hour(now_ns: i64) -> f64 {
    let s = now_ns.div_euclid(1_000_000_000) + UTC_OFFSET_S;
    s.rem_euclid(86_400) as f64 / 3600.0
}

fn bump(h: f64, centre: f64, width: f64) -> f64 {
    (-(h - centre).powi(2) / (2.0 * width * width)).exp()
}

/// Traffic and pollution share the rush hours: 08:00 and 18:30.
fn rush(h: f64) -> f64 {
    0.25 + 0.9 * bump(h, 8.0, 1.3) + 1.0 * bump(h, 18.5, 1.8) + 0.35 * bump(h, 13.0, 3.0)
}

/// Household consumption: morning and evening peaks, low at night.
fn consumption_profile(h: f64) -> f64 {
    0.15 + 0.8 * bump(h, 7.5, 1.2) + 1.0 * bump(h, 20.5, 2.0) + 0.3 * bump(h, 13.0, 2.5)
}

fn noise(rng: &mut SmallRng, spread: f64) -> f64 {
    1.0 + rng.random_range(-spread..spread)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn reading_payload(s: &mut SimSensor, rng: &mut SmallRng, now_ns: i64) -> String {
    let h = local_hour(now_ns);
    let ms = now_ns / 1_000_000;
    let secs = ms as f64 / 1000.0;
    let dt_h = s
        .last_ns
        .map(|t| ((now_ns - t) as f64 / 3.6e12).max(0.0))
        .unwrap_or(0.0);
    s.last_ns = Some(now_ns);
    match s.kind {
        Kind::Air => {
            let r = rush(h);
            let pm25 = round(8.0 + 22.0 * r * noise(rng, 0.15), 1);
            let pm10 = round(pm25 * 1.7 * noise(rng, 0.1), 1);
            let no2_ppb = round(6.0 + 18.0 * r * noise(rng, 0.2), 1);
            let co_mg = round(0.3 + 0.6 * r * noise(rng, 0.2), 3);
            let so2 = round(5.0 + 6.0 * r * noise(rng, 0.2), 1);
            let o3 = round(20.0 + 50.0 * bump(h, 15.0, 3.0) * noise(rng, 0.1), 1);
            let temp = round(4.0 + 7.0 * ((h - 9.0) / 24.0 * 2.0 * PI).sin(), 1);
            let hum = round(
                (68.0 - 18.0 * ((h - 9.0) / 24.0 * 2.0 * PI).sin()).clamp(5.0, 100.0),
                1,
            );
            format!(
                r#"[{{"bn":"urn:dev:qala:{id}:","bt":{secs:.3},"n":"pm2_5","u":"ug/m3","v":{pm25}}},{{"n":"pm10","u":"ug/m3","v":{pm10}}},{{"n":"no2","u":"ppb","v":{no2_ppb}}},{{"n":"co","u":"mg/m3","v":{co_mg}}},{{"n":"so2","u":"ug/m3","v":{so2}}},{{"n":"o3","u":"ug/m3","v":{o3}}},{{"n":"temperature","u":"Cel","v":{temp}}},{{"n":"humidity","u":"%RH","v":{hum}}}]"#,
                id = s.id
            )
        }
        Kind::Traffic => {
            let capacity = 30.0; // vehicles per lane-minute
            let load = (rush(h) / 1.6).min(1.0);
            let volume = (capacity * load * noise(rng, 0.2)).round().max(0.0);
            let ratio = (volume / capacity).min(1.0);
            let speed = round(62.0 * (1.0 - 0.65 * ratio * ratio) * noise(rng, 0.08), 1);
            let occupancy = round((ratio * 0.45 * noise(rng, 0.1)).min(1.0), 3);
            format!(
                r#"{{"ts":{ms},"volume":{volume},"interval":60,"speed":{speed},"occupancy":{occupancy},"units":{{"occupancy":"/","speed":"km/h"}}}}"#
            )
        }
        Kind::Water => {
            let flow_m3h = 0.05 + 0.6 * consumption_profile(h) * noise(rng, 0.2);
            s.register += flow_m3h * dt_h;
            let litres = round(s.register * 1000.0, 1);
            format!(
                r#"{{"ts":{ms},"volume":{litres},"flow":{flow},"units":{{"volume":"l","flow":"m3/h"}}}}"#,
                flow = round(flow_m3h, 4)
            )
        }
        Kind::Heat => {
            let kw = 20.0 + 35.0 * consumption_profile(h) * noise(rng, 0.1);
            s.register += kw * dt_h;
            let gcal = round(s.register / 1163.0, 6);
            format!(
                r#"[{{"bn":"urn:dev:qala:{id}:","bt":{secs:.3},"n":"energy","u":"Gcal","v":{gcal}}},{{"n":"power","u":"kW","v":{kw}}},{{"n":"supply_temperature","u":"Cel","v":{st}}},{{"n":"return_temperature","u":"Cel","v":{rt}}}]"#,
                id = s.id,
                kw = round(kw, 2),
                st = round(85.0 + 5.0 * noise(rng, 0.05), 1),
                rt = round(55.0 + 5.0 * noise(rng, 0.05), 1)
            )
        }
        Kind::Power => {
            let kw = 0.3 + 2.2 * consumption_profile(h) * noise(rng, 0.15);
            s.register += kw * dt_h;
            format!(
                r#"{{"ts":{ms},"energy":{wh},"power":{w},"voltage":{v},"units":{{"energy":"Wh","power":"W"}}}}"#,
                wh = round(s.register * 1000.0, 1),
                w = round(kw * 1000.0, 1),
                v = round(230.0 * noise(rng, 0.03), 1)
            )
        }
        Kind::Gas => {
            let m3h = 0.02 + 0.4 * consumption_profile(h) * noise(rng, 0.2);
            s.register += m3h * dt_h;
            format!(
                r#"[{{"bn":"urn:dev:qala:{id}:","bt":{secs:.3},"n":"volume","u":"m3","v":{vol}}},{{"n":"flow","u":"m3/h","v":{flow}}}]"#,
                id = s.id,
                vol = round(s.register, 4),
                flow = round(m3h, 4)
            )
        }
        Kind::Status => {
            // The register counts the device's uptime in seconds; the battery drains by day and
            // recharges (a solar street light) by night.
            s.register += dt_h * 3600.0;
            let battery = round(
                (55.0 + 40.0 * (1.0 - consumption_profile(h))).clamp(0.0, 100.0),
                1,
            );
            let rssi = round(-75.0 + 8.0 * (noise(rng, 0.5) - 1.0), 1);
            format!(
                r#"{{"ts":{ms},"battery":{battery},"rssi":{rssi},"uptime":{up},"online":true,"units":{{"rssi":"dBm"}}}}"#,
                up = s.register.round()
            )
        }
    }
}

/// The malformed payloads a real fleet produces, in rotation.
fn malformed_payload(n: u64, now_ns: i64) -> String {
    let ms = now_ns / 1_000_000;
    match n % 4 {
        0 => format!(r#"{{"ts":{ms},"volume":"ERR"}}"#),
        1 => r#"{"ts":"01/02/2026 10:00","volume":1}"#.to_owned(),
        2 => "\u{0}\u{1}garbage".to_owned(),
        _ => format!(r#"{{"ts":{ms},"volume":-7,"flow":1}}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{process, Policy};

    #[test]
    fn every_valid_message_normalises_and_every_bad_one_is_refused() {
        let now = 1_768_446_000_000_000_000;
        let mut fleet = Fleet::new("almaty", 3, 42, 7);
        let mut ok = 0;
        let mut bad = 0;
        for i in 0..500 {
            let t = now + i * 1_000_000_000;
            let m = fleet.next_message(t);
            let r = process(&m.topic, &m.payload, t, &Policy::default());
            match (m.valid, r) {
                (true, Ok(readings)) => {
                    assert_eq!(readings.len(), 1);
                    assert_eq!(readings[0].sensor.kind, m.kind);
                    ok += 1;
                }
                (false, Err(_)) => bad += 1,
                (valid, r) => panic!(
                    "{} valid={valid}: {r:?}",
                    String::from_utf8_lossy(&m.payload)
                ),
            }
        }
        assert_eq!((ok, bad), (500 - 500 / 7, 500 / 7));
    }

    #[test]
    fn registers_only_grow_and_the_fleet_is_deterministic() {
        let a: Vec<_> = {
            let mut f = Fleet::new("almaty", 2, 7, 0);
            (0..48)
                .map(|i| f.next_message(i * 600_000_000_000).payload)
                .collect()
        };
        let b: Vec<_> = {
            let mut f = Fleet::new("almaty", 2, 7, 0);
            (0..48)
                .map(|i| f.next_message(i * 600_000_000_000).payload)
                .collect()
        };
        assert_eq!(a, b);
        let mut f = Fleet::new("almaty", 1, 7, 0);
        let mut last = f64::MIN;
        for i in 0..200 {
            let t = 1_768_446_000_000_000_000 + i * 900_000_000_000;
            let m = f.next_message(t);
            if m.kind == Kind::Gas {
                let r = process(&m.topic, &m.payload, t, &Policy::default()).expect("valid");
                let v = r[0]
                    .values
                    .iter()
                    .find(|(d, _)| d.name == "volume")
                    .map(|(_, v)| *v)
                    .expect("volume");
                assert!(v >= last, "register went down: {v} < {last}");
                last = v;
            }
        }
    }
}
