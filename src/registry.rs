//! The device registry: what the city says it has installed. Each registered device has a sphere
//! of the standard, a district, an expected reporting interval and, where it matters, a role
//! (a district's input meter), the population it serves and a configured free-flow speed. The
//! indicator engine reads it for coverage, completeness, per-capita figures and district
//! balances; `GET /api/v1/sensors` shows it with last seen and staleness.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Sphere;

/// What a device is for, where the indicators need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An ordinary device (a consumer's meter, a station, a detector, a camera).
    #[default]
    Consumer,
    /// A district's input meter: the district balance is this minus its consumers.
    DistrictInput,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::DistrictInput => "district_input",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "" | "consumer" => Some(Role::Consumer),
            "district_input" | "input" => Some(Role::DistrictInput),
            _ => None,
        }
    }
}

/// One registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// The id in its topic (`sensor_id`), unique in the deployment.
    pub sensor_id: String,
    /// The kind as registered: one of the reading kinds (`air`, `water`, ...) or `status` for
    /// devices that only report their health (cameras, street lights, ...).
    pub kind: String,
    pub city: String,
    pub district: String,
    pub sphere: Sphere,
    /// The device reports at least this often; staleness and coverage are measured against it.
    #[serde(with = "humantime_serde_secs")]
    pub expected_interval: Duration,
    /// People served (a district input meter, a building's meter), for per-capita figures.
    pub population: Option<u32>,
    pub role: Role,
    /// Configured free-flow speed (km/h) of a traffic detector; else learned from night speeds.
    pub free_flow_speed: Option<f64>,
    /// The meter's register size in its canonical unit (e.g. 100000 m³ for five digits), to
    /// tell a rollover from a reset.
    pub register_max: Option<f64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// Durations as whole seconds in JSON (the API and the spool's snapshot).
mod humantime_serde_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The registry as loaded: by sensor id. Cheap to share (`Arc`); a new import builds a new one.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<SensorInfo>>,
}

impl Registry {
    pub fn new(sensors: impl IntoIterator<Item = SensorInfo>) -> Registry {
        Registry {
            by_id: sensors
                .into_iter()
                .map(|s| (s.sensor_id.clone(), Arc::new(s)))
                .collect(),
        }
    }

    pub fn get(&self, sensor_id: &str) -> Option<&Arc<SensorInfo>> {
        self.by_id.get(sensor_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<SensorInfo>> {
        self.by_id.values()
    }
}
