//! A simulated city, as a scenario file (`simulators/*.toml`) says: its districts, its fleets of
//! sensors per kind (how many, how often they report, in which payload format), and the faults to
//! inject. Loading validates everything and names the offending key.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::human_duration;
use crate::model::{Kind, Sphere};

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The city's key in topics (`city/{city}/...`).
    pub city: String,
    /// Same seed, same city, same readings.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub districts: Vec<String>,
    #[serde(rename = "fleet")]
    pub fleets: Vec<Fleet>,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub load: Load,
    /// People per consumer meter (a household), for the registry's `population`.
    #[serde(default = "default_household_size")]
    pub household_size: u32,
    /// People a district's input meters serve. Default: the input meter's consumer meters in the
    /// district × `household_size`.
    #[serde(default)]
    pub population_per_district: Option<u32>,
}

fn default_seed() -> u64 {
    1
}
fn default_household_size() -> u32 {
    3
}

/// The payload a fleet's devices send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// The default JSON object, with device units where devices use them.
    Json,
    /// SenML packs (RFC 8428, JSON).
    Senml,
    /// Half the devices JSON, half SenML.
    Mixed,
}

/// Sensors of one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub kind: Kind,
    /// Sensors in every district (or use `count`).
    #[serde(default)]
    pub per_district: Option<usize>,
    /// Sensors in all, spread over the districts in turn (or use `per_district`).
    #[serde(default)]
    pub count: Option<usize>,
    /// How often each sensor reports.
    #[serde(with = "human_duration")]
    pub interval: Duration,
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// MQTT QoS of its messages (0 or 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Traffic: lanes per detector (each lane reports as its own sensor, `<id>-l<n>`).
    #[serde(default = "default_lanes")]
    pub lanes: u8,
    /// Traffic: capacity per lane, vehicles per hour.
    #[serde(default = "default_capacity")]
    pub capacity: f64,
    /// Traffic: free-flow speed, km/h.
    #[serde(default = "default_free_flow")]
    pub free_flow: f64,
    /// Meters: one district input meter per district whose volume exceeds the sum of the
    /// district's consumer meters by this fraction (the losses), e.g. 0.15.
    #[serde(default)]
    pub input_meter_loss: Option<f64>,
    /// Status devices: the sphere they serve (`safety` for cameras, `social` for school sensors,
    /// `infrastructure` for street lights, ...). Required for `kind = "status"`, refused otherwise.
    #[serde(default)]
    pub sphere: Option<Sphere>,
    /// Status devices: the prefix of their ids (`{name}-{district}-0001`); default the sphere.
    #[serde(default)]
    pub name: Option<String>,
}

impl Fleet {
    /// The sphere its devices are registered under.
    pub fn sphere(&self) -> Sphere {
        self.sphere.unwrap_or(self.kind.sphere())
    }

    /// The prefix of a status fleet's ids.
    pub fn status_prefix(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.sphere().as_str())
    }
}

fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}
fn default_qos() -> u8 {
    1
}
fn default_lanes() -> u8 {
    2
}
fn default_capacity() -> f64 {
    1800.0
}
fn default_free_flow() -> f64 {
    60.0
}

/// Faults to inject, in percent of messages (or of devices, where it says so).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Messages whose payload is broken (they must end in the dead letter).
    pub malformed: f64,
    /// Messages published twice (the gateway must store them once).
    pub duplicates: f64,
    /// Messages sent after the next one of the same connection.
    pub out_of_order: f64,
    /// Messages held back and sent `late_by` later.
    pub late: f64,
    #[serde(with = "human_duration")]
    pub late_by: Duration,
    /// Devices (in %) whose clock is off by up to `max_skew`, either way.
    pub clock_skew: f64,
    #[serde(with = "human_duration")]
    pub max_skew: Duration,
    /// Devices (in %) that go offline once for `offline_for`, then send their backlog at once.
    pub offline: f64,
    #[serde(with = "human_duration")]
    pub offline_for: Duration,
    /// Water meters (in %) that develop a leak at some point; meters (in %) whose register resets.
    pub leaks: f64,
    pub resets: f64,
    /// Every this often (wall clock), every publisher connection drops and reconnects at once
    /// ("0s": never).
    #[serde(with = "human_duration")]
    pub reconnect_storm_every: Duration,
}

/// How the simulator loads the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Load {
    /// Sensors that share one MQTT connection (a gateway or concentrator in the field).
    pub sensors_per_connection: usize,
    /// Most connections, whatever the sensor count.
    pub max_connections: usize,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            sensors_per_connection: 1000,
            max_connections: 64,
        }
    }
}

/// A scenario that cannot be played, with the key to fix.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read it: {e}"),
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and validates scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            file: file.to_owned(),
            key: e
                .span()
                .map(|sp| format!("at byte {}", sp.start))
                .unwrap_or_else(|| "(toml)".into()),
            message: e.message().to_owned(),
        })?;
        s.validate().map_err(|(key, message)| ScenarioError {
            file: file.to_owned(),
            key,
            message,
        })?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_owned(), m));
        let level = |s: &str| {
            !s.is_empty() && !s.contains(['/', '+', '#']) && !s.chars().any(char::is_control)
        };
        if !level(&self.city) {
            return bad("city", format!("{:?} cannot be a topic level", self.city));
        }
        if self.districts.is_empty() {
            return bad("districts", "name at least one district".into());
        }
        for d in &self.districts {
            if !level(d) {
                return bad("districts", format!("{d:?} cannot be a topic level"));
            }
        }
        if self.fleets.is_empty() {
            return bad("fleet", "add at least one [[fleet]]".into());
        }
        for (i, f) in self.fleets.iter().enumerate() {
            let key = |k: &str| format!("fleet[{i}].{k}");
            match (f.per_district, f.count) {
                (Some(_), Some(_)) => {
                    return bad(&key("count"), "give per_district or count, not both".into())
                }
                (None, None) => return bad(&key("count"), "give per_district or count".into()),
                _ => {}
            }
            if f.interval < Duration::from_secs(1) {
                return bad(&key("interval"), "at least 1s".into());
            }
            if f.qos > 1 {
                return bad(&key("qos"), format!("{} is not supported: 0 or 1", f.qos));
            }
            if f.kind == Kind::Traffic {
                if !(1..=6).contains(&f.lanes) {
                    return bad(&key("lanes"), format!("{}: 1 to 6", f.lanes));
                }
                if !(100.0..=3000.0).contains(&f.capacity) {
                    return bad(
                        &key("capacity"),
                        format!("{} veh/h per lane: 100 to 3000", f.capacity),
                    );
                }
                if !(10.0..=130.0).contains(&f.free_flow) {
                    return bad(
                        &key("free_flow"),
                        format!("{} km/h: 10 to 130", f.free_flow),
                    );
                }
            }
            if f.kind == Kind::Status {
                if f.sphere.is_none() {
                    return bad(
                        &key("sphere"),
                        format!(
                            "a status fleet names the sphere its devices serve (one of: {})",
                            Sphere::ALL.map(Sphere::as_str).join(", ")
                        ),
                    );
                }
                if !level(f.status_prefix()) || f.status_prefix().contains(char::is_whitespace) {
                    return bad(
                        &key("name"),
                        format!("{:?} cannot start a sensor id", f.status_prefix()),
                    );
                }
                if let Some(j) = self.fleets[..i]
                    .iter()
                    .position(|o| o.kind == Kind::Status && o.status_prefix() == f.status_prefix())
                {
                    return bad(
                        &key("name"),
                        format!(
                            "fleet[{j}] has the same id prefix {:?}: give one of them another name",
                            f.status_prefix()
                        ),
                    );
                }
            } else if f.sphere.is_some() || f.name.is_some() {
                return bad(
                    &key(if f.sphere.is_some() { "sphere" } else { "name" }),
                    format!(
                        "only status fleets take it ({} sensors belong to {})",
                        f.kind,
                        f.kind.sphere()
                    ),
                );
            }
            if let Some(loss) = f.input_meter_loss {
                if !matches!(f.kind, Kind::Water | Kind::Heat | Kind::Gas | Kind::Power) {
                    return bad(
                        &key("input_meter_loss"),
                        "only meters have district input meters".into(),
                    );
                }
                if !(0.0..1.0).contains(&loss) {
                    return bad(
                        &key("input_meter_loss"),
                        format!("{loss}: a fraction from 0 to below 1"),
                    );
                }
            }
        }
        let f = &self.faults;
        for (k, v) in [
            ("malformed", f.malformed),
            ("duplicates", f.duplicates),
            ("out_of_order", f.out_of_order),
            ("late", f.late),
            ("clock_skew", f.clock_skew),
            ("offline", f.offline),
            ("leaks", f.leaks),
            ("resets", f.resets),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return bad(
                    &format!("faults.{k}"),
                    format!("{v}: a percentage, 0 to 100"),
                );
            }
        }
        if f.max_skew > Duration::from_secs(3600) {
            return bad("faults.max_skew", "at most 1h".into());
        }
        if !(1..=50).contains(&self.household_size) {
            return bad(
                "household_size",
                format!("{}: 1 to 50 people per meter", self.household_size),
            );
        }
        if self.population_per_district == Some(0) {
            return bad("population_per_district", "at least 1".into());
        }
        if self.load.sensors_per_connection == 0 {
            return bad("load.sensors_per_connection", "at least 1".into());
        }
        if self.load.max_connections == 0 || self.load.max_connections > 10_000 {
            return bad("load.max_connections", "1 to 10000".into());
        }
        Ok(())
    }

    /// Sensors of fleet `f` in district `d` (districts take the `count` in turn).
    pub fn sensors_in(&self, f: &Fleet, d: usize) -> usize {
        let n = self.districts.len();
        match (f.per_district, f.count) {
            (Some(p), _) => p,
            (None, Some(c)) => c / n + usize::from(d < c % n),
            (None, None) => 0,
        }
    }

    /// Every device of the scenario (traffic lanes counted one by one, input meters included).
    pub fn device_count(&self) -> usize {
        let mut total = 0;
        for f in &self.fleets {
            for d in 0..self.districts.len() {
                let n = self.sensors_in(f, d);
                total += match f.kind {
                    Kind::Traffic => n * f.lanes as usize,
                    _ => n,
                } + usize::from(f.input_meter_loss.is_some());
            }
        }
        total
    }

    /// People the district input meter of fleet `f` in district `d` serves:
    /// `population_per_district`, else the fleet's consumer meters in the district ×
    /// `household_size` (what the simulated consumers behind the input meter add up to, so that
    /// per-capita figures agree with the simulated volumes).
    pub fn input_population(&self, f: &Fleet, d: usize) -> u32 {
        self.population_per_district.unwrap_or_else(|| {
            u32::try_from(self.sensors_in(f, d))
                .unwrap_or(u32::MAX)
                .saturating_mul(self.household_size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "t"
city = "talgar"
districts = ["a", "b", "c"]
[[fleet]]
kind = "water"
count = 10
interval = "1h"
input_meter_loss = 0.15
[[fleet]]
kind = "traffic"
per_district = 2
interval = "1m"
lanes = 3
[faults]
malformed = 2
"#;

    const CAMERAS: &str = "[[fleet]]\nkind = \"status\"\nsphere = \"safety\"\nname = \"cam\"\ncount = 4\ninterval = \"5m\"\n";

    #[test]
    fn status_fleets_take_a_sphere_and_district_populations_come_from_meters() {
        let s = Scenario::parse(&format!("{OK}{CAMERAS}"), "t.toml").expect("valid");
        assert_eq!(s.fleets[2].sphere(), Sphere::Safety);
        assert_eq!(s.fleets[2].status_prefix(), "cam");
        assert_eq!(s.fleets[0].sphere(), Sphere::HousingUtilities);
        // 10 + 3 + 18, and 4 cameras.
        assert_eq!(s.device_count(), 10 + 3 + 18 + 4);
        // District a has 4 water meters (10 over 3 districts) × 3 people.
        assert_eq!(s.input_population(&s.fleets[0], 0), 12);
        assert_eq!(s.input_population(&s.fleets[0], 2), 9);
        let fixed = Scenario::parse(
            &OK.replace(
                "name = \"t\"",
                "name = \"t\"\npopulation_per_district = 5000",
            ),
            "t.toml",
        )
        .expect("valid");
        assert_eq!(fixed.input_population(&fixed.fleets[0], 1), 5000);
    }

    #[test]
    fn a_scenario_counts_its_devices() {
        let s = Scenario::parse(OK, "t.toml").expect("valid");
        assert_eq!(s.sensors_in(&s.fleets[0], 0), 4);
        assert_eq!(s.sensors_in(&s.fleets[0], 2), 3);
        // water: 10 meters + 3 input meters; traffic: 3 districts × 2 detectors × 3 lanes.
        assert_eq!(s.device_count(), 10 + 3 + 18);
        assert_eq!(s.faults.malformed, 2.0);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (OK.replace("count = 10\n", ""), "fleet[0].count"),
            (OK.replace("lanes = 3", "lanes = 9"), "fleet[1].lanes"),
            (
                OK.replace("malformed = 2", "malformed = 200"),
                "faults.malformed",
            ),
            (
                OK.replace("[\"a\", \"b\", \"c\"]", "[\"a/b\"]"),
                "districts",
            ),
            (
                OK.replace("input_meter_loss = 0.15", "input_meter_loss = 1.5"),
                "fleet[0].input_meter_loss",
            ),
            (
                format!("{OK}[[fleet]]\nkind = \"status\"\ncount = 3\ninterval = \"5m\"\n"),
                "fleet[2].sphere",
            ),
            (
                OK.replace("lanes = 3", "lanes = 3\nsphere = \"safety\""),
                "fleet[1].sphere",
            ),
            (format!("{OK}{CAMERAS}{CAMERAS}"), "fleet[3].name"),
            (
                OK.replace("name = \"t\"", "name = \"t\"\nhousehold_size = 0"),
                "household_size",
            ),
        ];
        for (text, key) in cases {
            let e = Scenario::parse(&text, "t.toml").expect_err(key);
            assert_eq!(e.key, key, "{e}");
        }
        let e = Scenario::parse(
            &OK.replace("kind = \"water\"", "kind = \"steam\""),
            "t.toml",
        )
        .expect_err("unknown kind");
        assert!(
            e.message.contains("steam") || e.message.contains("variant"),
            "{e}"
        );
    }
}
