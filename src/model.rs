//! The domain vocabulary every stage shares: sensor kinds, the spheres of the national standard,
//! a normalised [`Reading`], and a [`DeadLetter`] for what could not become one.
//!
//! A reading is one point: one sensor, one instant, one or more canonical metrics. Decoders produce
//! raw values; `normalize` turns them into readings; sinks store readings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::normalize::catalog::MetricDef;

/// The eight spheres of the smart-city reference standard (DOMAIN.md §1), with their stable keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sphere {
    CityManagement,
    Safety,
    Transport,
    Social,
    Ecology,
    HousingUtilities,
    Economy,
    Infrastructure,
}

impl Sphere {
    pub const ALL: [Sphere; 8] = [
        Sphere::CityManagement,
        Sphere::Safety,
        Sphere::Transport,
        Sphere::Social,
        Sphere::Ecology,
        Sphere::HousingUtilities,
        Sphere::Economy,
        Sphere::Infrastructure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sphere::CityManagement => "city_management",
            Sphere::Safety => "safety",
            Sphere::Transport => "transport",
            Sphere::Social => "social",
            Sphere::Ecology => "ecology",
            Sphere::HousingUtilities => "housing_utilities",
            Sphere::Economy => "economy",
            Sphere::Infrastructure => "infrastructure",
        }
    }
}

impl fmt::Display for Sphere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a sensor measures. The kind is the measurement name in the time-series store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Air,
    Traffic,
    Water,
    Heat,
    Power,
    Gas,
    /// A device that reports only its health (battery, signal, uptime, online): a camera, a
    /// street light, a school's sensor, a panic button. Its sphere is the registry's.
    Status,
}

impl Kind {
    /// Every kind. The spool stores a kind by its index here: append, never reorder.
    pub const ALL: [Kind; 7] = [
        Kind::Air,
        Kind::Traffic,
        Kind::Water,
        Kind::Heat,
        Kind::Power,
        Kind::Gas,
        Kind::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Air => "air",
            Kind::Traffic => "traffic",
            Kind::Water => "water",
            Kind::Heat => "heat",
            Kind::Power => "power",
            Kind::Gas => "gas",
            Kind::Status => "status",
        }
    }

    /// The sphere of the standard a kind of sensor reports to (DOMAIN.md §2). A `status`
    /// device's sphere is what the registry says; this is its default when unregistered.
    pub fn sphere(self) -> Sphere {
        match self {
            Kind::Air => Sphere::Ecology,
            Kind::Traffic => Sphere::Transport,
            Kind::Water | Kind::Heat | Kind::Power | Kind::Gas => Sphere::HousingUtilities,
            Kind::Status => Sphere::CityManagement,
        }
    }

    /// The kinds' names joined for messages: "air, traffic, ..., status".
    pub fn known_list() -> String {
        Kind::ALL.map(Kind::as_str).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// Where a reading's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The device said when it measured.
    Device,
    /// The device said nothing; the gateway's receive time stands in (flagged).
    Receive,
}

/// Which sensor a reading belongs to; taken from the topic (or a route, later).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorRef {
    pub city: String,
    pub district: String,
    pub kind: Kind,
    pub sensor_id: String,
}

/// One normalised point: a sensor, an instant (UTC, ns since the Unix epoch) and canonical values.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor: SensorRef,
    pub time_ns: i64,
    pub time_source: TimeSource,
    /// Canonical metric → value in the metric's canonical unit. Never empty, every value finite.
    pub values: Vec<(&'static MetricDef, f64)>,
}

/// Why a message was refused. The string form is the `reason` label and the dead-letter column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    EmptyPayload,
    TooLarge,
    NotUtf8,
    NotJson,
    BadShape,
    BadTopic,
    UnknownKind,
    UnknownMetric,
    MissingTimestamp,
    BadTimestamp,
    FutureTimestamp,
    TooOld,
    BadValue,
    OutOfRange,
    BadUnit,
    BadSenml,
    NoRoute,
    /// A sink refused a reading the pipeline accepted (e.g. InfluxDB 400/422 for one point).
    SinkRejected,
    /// The device is not in the registry and `registry.unregistered = "dead_letter"`.
    Unregistered,
}

impl Reason {
    pub const ALL: [Reason; 19] = [
        Reason::EmptyPayload,
        Reason::TooLarge,
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::BadShape,
        Reason::BadTopic,
        Reason::UnknownKind,
        Reason::UnknownMetric,
        Reason::MissingTimestamp,
        Reason::BadTimestamp,
        Reason::FutureTimestamp,
        Reason::TooOld,
        Reason::BadValue,
        Reason::OutOfRange,
        Reason::BadUnit,
        Reason::BadSenml,
        Reason::NoRoute,
        Reason::SinkRejected,
        Reason::Unregistered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyPayload => "empty_payload",
            Reason::TooLarge => "too_large",
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::BadShape => "bad_shape",
            Reason::BadTopic => "bad_topic",
            Reason::UnknownKind => "unknown_kind",
            Reason::UnknownMetric => "unknown_metric",
            Reason::MissingTimestamp => "missing_timestamp",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::TooOld => "too_old",
            Reason::BadValue => "bad_value",
            Reason::OutOfRange => "out_of_range",
            Reason::BadUnit => "bad_unit",
            Reason::BadSenml => "bad_senml",
            Reason::NoRoute => "no_route",
            Reason::SinkRejected => "sink_rejected",
            Reason::Unregistered => "unregistered",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A machine-readable reason and a human message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// A message that could not become readings, kept whole with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub received_ns: i64,
    pub topic: String,
    pub payload: bytes::Bytes,
    pub rejection: Rejection,
}
