//! What an alert rule emits: one [`AlertEvent`] per change of an alert's state, with everything a
//! receiver needs to act on it without looking anything up. The same JSON goes to MQTT, the
//! webhook and (as its `message`) the log.

use serde::{Deserialize, Serialize};

use super::config::Severity;
use crate::indicators::value::Scope;
use crate::model::Sphere;

/// The pseudo-indicator of stale-sensor alerts (a topic level and the `indicator` field).
pub const STALE_INDICATOR: &str = "sensor_stale";

/// What happened to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition now holds.
    Raised,
    /// It held and no longer does.
    Cleared,
    /// A level rule: the level moved (between any levels, or between the listed ones).
    Changed,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [AlertState::Raised, AlertState::Cleared, AlertState::Changed];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Cleared => "cleared",
            AlertState::Changed => "changed",
        }
    }
}

/// One change of one alert: a rule, for one series (or one sensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    /// The catalog id, or [`STALE_INDICATOR`].
    pub indicator: String,
    pub sphere: Sphere,
    pub scope: Scope,
    pub city: String,
    /// Empty for the city scope.
    pub district: String,
    /// Empty unless the scope is a sensor.
    pub sensor_id: String,
    /// The part of the indicator (`pm2_5` of `pdk_multiple`), else empty.
    pub component: String,
    /// The window's name (`1h`, `nowcast`, ...); empty for stale alerts.
    pub window: String,
    /// The value's window [start, end), ns since the epoch. Stale alerts: the last reading
    /// (or, for a sensor never heard from, when it started being watched) and the check.
    pub window_start_ns: i64,
    pub window_end_ns: i64,
    /// The indicator's value; stale alerts: the age of the last reading in seconds.
    pub value: Option<f64>,
    pub unit: String,
    pub level: Option<String>,
    pub previous_level: Option<String>,
    /// The threshold crossed: `above`/`below` when raised, the clear threshold when cleared,
    /// the stale limit in seconds; none for level rules.
    pub threshold: Option<f64>,
    /// One human line.
    pub message: String,
    /// When it happened (the value's `computed_ns`; the staleness check's `now_ns`).
    pub at_ns: i64,
}

impl AlertEvent {
    /// `qala/alerts/{city}/{sphere}/{indicator}/{rule}`, then `/{district}` (district and
    /// sensor scopes), `/{sensor_id}` (sensor scope), `/{component}` and `/{window}` when not
    /// empty: one topic per alert, so its retained message is its current state.
    pub fn topic(&self) -> String {
        let mut t = format!(
            "qala/alerts/{}/{}/{}/{}",
            self.city,
            self.sphere.as_str(),
            self.indicator,
            self.rule
        );
        let mut level = |s: &str| {
            t.push('/');
            t.push_str(s);
        };
        if self.scope != Scope::City {
            level(&self.district);
        }
        if self.scope == Scope::Sensor {
            level(&self.sensor_id);
        }
        if !self.component.is_empty() {
            level(&self.component);
        }
        if !self.window.is_empty() {
            level(&self.window);
        }
        t
    }

    /// The JSON the outputs send.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain fields (strings, numbers, enums) cannot fail; a non-finite value
        // would be written as null by serde_json.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
