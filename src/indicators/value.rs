//! What the engine emits: one value of one indicator, for one scope and one window, with the
//! completeness that backs it and the table or method that produced it. The same record goes to
//! the sinks (measurement `indicator`), the HTTP API, retained MQTT topics and the alert rules.

use serde::{Deserialize, Serialize};

use crate::model::Sphere;

/// Whose value it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Sensor,
    District,
    City,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Sensor, Scope::District, Scope::City];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Sensor => "sensor",
            Scope::District => "district",
            Scope::City => "city",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much data stands behind a value: `have` of `expected` units (hours of a day, points of a
/// night, devices of a sphere, ...). The unit is named so "18/24 h" reads as it should.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    pub have: u32,
    pub expected: u32,
    /// `h`, `points`, `devices`, `readings`, `sensors`.
    pub unit: String,
}

impl Completeness {
    pub fn new(have: u32, expected: u32, unit: &str) -> Self {
        Completeness {
            have,
            expected,
            unit: unit.to_owned(),
        }
    }

    /// have / expected in 0..=1 (1 when nothing is expected).
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            f64::from(self.have.min(self.expected)) / f64::from(self.expected)
        }
    }
}

impl std::fmt::Display for Completeness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.have, self.expected, self.unit)
    }
}

/// Extra facts about a value: sub-indices, the dominant pollutant, counts, flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Number(f64),
    Text(String),
}

/// One value of one indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorValue {
    /// The catalog id: `us_aqi_nowcast`, `device_coverage`, ...
    pub indicator: String,
    pub sphere: Sphere,
    pub scope: Scope,
    pub city: String,
    /// Empty for the city scope.
    pub district: String,
    /// Empty unless the scope is a sensor.
    pub sensor_id: String,
    /// What within the indicator the value is about, where it has parts: the pollutant of
    /// `pdk_multiple` (`pm2_5`), the metric of `consumption` (`volume`, `energy`); else empty.
    pub component: String,
    /// The window's name as in the catalog: `1h`, `24h`, `8h`, `nowcast`, `15m`, `now`.
    pub window: String,
    /// [start, end), ns since the Unix epoch (UTC). Daily windows run local midnight to midnight.
    pub window_start_ns: i64,
    pub window_end_ns: i64,
    /// None when the value is invalid: below the completeness rule, or no data. Never a number
    /// that only looks right.
    pub value: Option<f64>,
    pub unit: String,
    /// The level or category key (`moderate`, `high`, `C`, ...), when the indicator has levels.
    pub level: Option<String>,
    pub completeness: Completeness,
    /// The table or method used (e.g. `US EPA AQI, TAD May 2024; NowCast`).
    pub reference: String,
    /// Sub-indices, dominant pollutant, flags (`reset`, `rollover`), ... in a stable order.
    pub details: Vec<(String, Detail)>,
    /// When the engine computed it (ns since the epoch); a re-emission after late data has a
    /// later one.
    pub computed_ns: i64,
}

impl IndicatorValue {
    /// Valid: the completeness rule held and there is a number.
    pub fn is_valid(&self) -> bool {
        self.value.is_some()
    }

    /// The retained MQTT topic of the value's series:
    /// `qala/indicators/{city}/{sphere}/{indicator}/{scope}`, then `/{district}` (district scope)
    /// or `/{district}/{sensor_id}` (sensor scope), then `/{component}` when the indicator has
    /// parts, then `/{window}`. `qala/indicators/{city}/{sphere}/{indicator}/{scope}/#` takes
    /// them all. Topic levels are the ids as given (MQTT wildcards `+`/`#` cannot occur: the
    /// topic router refuses them in ids).
    pub fn topic(&self) -> String {
        let mut t = format!(
            "qala/indicators/{}/{}/{}/{}",
            self.city,
            self.sphere.as_str(),
            self.indicator,
            self.scope.as_str()
        );
        if self.scope != Scope::City {
            t.push('/');
            t.push_str(&self.district);
        }
        if self.scope == Scope::Sensor {
            t.push('/');
            t.push_str(&self.sensor_id);
        }
        if !self.component.is_empty() {
            t.push('/');
            t.push_str(&self.component);
        }
        t.push('/');
        t.push_str(&self.window);
        t
    }

    /// The identity of the series the value belongs to (same identity and window start:
    /// a re-emission that replaces the earlier value).
    pub fn series_key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}/{}/{}/{}",
            self.city,
            self.sphere.as_str(),
            self.indicator,
            self.scope.as_str(),
            self.district,
            self.sensor_id,
            self.component,
            self.window
        )
    }
}
