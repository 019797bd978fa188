//! Devices that report only their health — safety cameras, street lights, school sensors, panic
//! buttons —: battery (%), received signal strength (dBm), uptime (s) and an online flag, in the
//! canonical units of `normalize::catalog::STATUS`.
//!
//! - **battery**: a backup battery kept charged by the mains, 80–100 %, drifting over days (a
//!   field smooth over about two days);
//! - **rssi**: the device's siting gives a level between −95 and −60 dBm; fading adds a normal
//!   noise of 2 dB per report;
//! - **uptime**: seconds since the last boot, which is 0–30 days before the first report; it
//!   only grows;
//! - **online**: 1 — a device that reports is online (what coverage counts is whether it reports).
//!
//! Counter-based like the air stations: a value is a function of (seed, device, time) and the boot
//! time, nothing else.

use super::noise::{gauss, hash2, hash3, smooth, tag, unit};
use super::Value;

const T_HEALTH: u64 = tag("health");
const T_BATTERY: u64 = tag("battery");
const T_RSSI: u64 = tag("rssi");
const T_BOOT: u64 = tag("boot");

/// One health-reporting device.
#[derive(Debug, Clone)]
pub struct Health {
    key: u64,
    /// The device's own level of signal, dBm.
    rssi_dbm: f64,
    /// When it last booted (sim ns); set at the first report.
    boot_ns: Option<i64>,
}

impl Health {
    pub fn new(seed: u64, id: u64) -> Health {
        let key = hash3(seed, T_HEALTH, id);
        Health {
            key,
            rssi_dbm: -95.0 + 35.0 * unit(hash2(key, T_RSSI)),
            boot_ns: None,
        }
    }

    /// The report at sim time `t_ns`.
    pub fn report(&mut self, t_ns: i64) -> Vec<Value> {
        const DAY_NS: f64 = 86_400e9;
        let boot = *self
            .boot_ns
            .get_or_insert_with(|| t_ns - (unit(hash2(self.key, T_BOOT)) * 30.0 * DAY_NS) as i64);
        let days = t_ns as f64 / DAY_NS;
        let battery =
            (90.0 + 5.0 * smooth(hash2(self.key, T_BATTERY), days / 2.0)).clamp(80.0, 100.0);
        let knot = t_ns as u64;
        let rssi = (self.rssi_dbm + 2.0 * gauss(hash3(self.key, T_RSSI, knot))).clamp(-140.0, 0.0);
        let uptime = ((t_ns - boot).max(0) / 1_000_000_000) as f64;
        vec![
            ("battery", (battery * 10.0).round() / 10.0),
            ("rssi", (rssi * 10.0).round() / 10.0),
            ("uptime", uptime),
            ("online", 1.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::normalize::catalog;

    #[test]
    fn health_stays_in_the_catalog_ranges_and_uptime_grows_by_the_interval() {
        let mut h = Health::new(7, 42);
        let t0 = 1_767_225_600_000_000_000i64; // 2026-01-01T00:00:00Z
        let mut last_uptime = None;
        for i in 0..2_000i64 {
            let t = t0 + i * 900_000_000_000; // every 15 min, ~3 weeks
            let values = h.report(t);
            assert_eq!(values.len(), 4);
            for (name, v) in &values {
                let def = catalog::lookup(Kind::Status, name).expect("a status metric");
                assert!((def.min..=def.max).contains(v), "{name} = {v}");
            }
            let battery = values[0].1;
            assert!((80.0..=100.0).contains(&battery), "battery {battery}");
            let rssi = values[1].1;
            assert!((-140.0..=0.0).contains(&rssi), "rssi {rssi}");
            assert_eq!(values[3], ("online", 1.0));
            if let Some(prev) = last_uptime {
                // 15 minutes later: 900 s more uptime.
                assert_eq!(values[2].1 - prev, 900.0);
            }
            last_uptime = Some(values[2].1);
        }
        // Same seed and device: same values.
        let mut again = Health::new(7, 42);
        assert_eq!(again.report(t0), Health::new(7, 42).report(t0));
    }
}
