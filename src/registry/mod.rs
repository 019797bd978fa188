//! The device registry: what the city says it has installed. Each registered device has a sphere
//! of the standard, a district, an expected reporting interval and, where it matters, a role
//! (a district's input meter), the population it serves and a configured free-flow speed. The
//! indicator engine reads it for coverage, completeness, per-capita figures and district
//! balances; `GET /api/v1/sensors` shows it with last seen and staleness.
//!
//! - [`import`]: the CSV a city keeps its devices in, read and validated (`qala sensors import`);
//! - [`store`]: the `registry` table in the gateway's SQLite database, a generation counter that
//!   triggers bump on every change, and [`Registry::load`];
//! - [`RegistryHandle`]: the loaded registry shared by the pipeline, the API and the indicator
//!   engine, swapped whole when the table changes ([`store::run_reloader`]);
//! - [`seen`]: the newest device and receive time of every sensor that reported, registered or
//!   not, and the policy for readings of unregistered devices;
//! - [`listing`]: what `GET /api/v1/sensors` answers.

pub mod import;
pub mod listing;
pub mod seen;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Sphere;

pub use seen::{LastSeen, Seen};
pub use store::RegistryError;

/// What to do with readings of devices that are not in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unregistered {
    /// Store them, count them (`qala_unregistered_readings_total`) and list them flagged in
    /// `/api/v1/sensors`.
    #[default]
    Accept,
    /// Dead-letter their messages with reason `unregistered`.
    DeadLetter,
}

/// `[registry]`: the device registry (imported with `qala sensors import`, kept in the SQLite
/// database at `sqlite.path`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// `accept` (default) or `dead_letter`.
    pub unregistered: Unregistered,
    /// How often the gateway checks whether the registry changed (one small query).
    #[serde(with = "crate::config::human_duration")]
    pub reload_interval: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            unregistered: Unregistered::Accept,
            reload_interval: Duration::from_secs(2),
        }
    }
}

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

impl SensorInfo {
    /// A device with the required fields; the optional ones empty (role consumer).
    pub fn new(
        sensor_id: impl Into<String>,
        kind: crate::model::Kind,
        city: impl Into<String>,
        district: impl Into<String>,
        sphere: Sphere,
        expected_interval: Duration,
    ) -> SensorInfo {
        SensorInfo {
            sensor_id: sensor_id.into(),
            kind: kind.as_str().to_owned(),
            city: city.into(),
            district: district.into(),
            sphere,
            expected_interval,
            population: None,
            role: Role::Consumer,
            free_flow_speed: None,
            register_max: None,
            latitude: None,
            longitude: None,
        }
    }
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
    /// The same devices sorted by id (what the API lists).
    sorted: Vec<Arc<SensorInfo>>,
    /// The table's generation this was loaded at (0: not from a database).
    generation: i64,
}

impl Registry {
    /// A registry of these devices; a repeated id keeps the last.
    pub fn new(sensors: impl IntoIterator<Item = SensorInfo>) -> Registry {
        let by_id: HashMap<String, Arc<SensorInfo>> = sensors
            .into_iter()
            .map(|s| (s.sensor_id.clone(), Arc::new(s)))
            .collect();
        let mut sorted: Vec<Arc<SensorInfo>> = by_id.values().cloned().collect();
        sorted.sort_unstable_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
        Registry {
            by_id,
            sorted,
            generation: 0,
        }
    }

    /// Loads the registry from the SQLite database at `path` (the gateway's `sqlite.path`),
    /// creating the table if it is missing (an empty registry).
    pub fn load(path: &std::path::Path) -> Result<Registry, RegistryError> {
        let conn = store::open_read(path)?;
        store::load(&conn)
    }

    /// The table's generation this registry was loaded at.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Every device, sorted by id.
    pub fn sorted(&self) -> &[Arc<SensorInfo>] {
        &self.sorted
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

    /// Devices per sphere, every sphere listed (for summaries).
    pub fn count_by_sphere(&self) -> Vec<(Sphere, usize)> {
        Sphere::ALL
            .iter()
            .map(|sp| (*sp, self.sorted.iter().filter(|s| s.sphere == *sp).count()))
            .collect()
    }
}

/// What the pipeline's batcher needs of the registry: the one in force, where to note last seen,
/// and the policy for readings of unregistered devices.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    pub registry: RegistryHandle,
    pub seen: Arc<LastSeen>,
    pub policy: Unregistered,
}

/// The registry in force, shared: the pipeline, the API and the indicator engine each hold a
/// clone. [`RegistryHandle::current`] is a read lock held for one `Arc` clone; a reload builds
/// the new registry aside and swaps it in whole, so readers never see half of an import.
#[derive(Debug, Clone, Default)]
pub struct RegistryHandle {
    current: Arc<RwLock<Arc<Registry>>>,
}

impl RegistryHandle {
    pub fn new(registry: Registry) -> RegistryHandle {
        RegistryHandle {
            current: Arc::new(RwLock::new(Arc::new(registry))),
        }
    }

    /// The registry in force now. Keep the `Arc` for a batch, not for ever: a reload does not
    /// change what you hold.
    pub fn current(&self) -> Arc<Registry> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a newly loaded registry in force.
    pub fn replace(&self, registry: Registry) {
        let new = Arc::new(registry);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
