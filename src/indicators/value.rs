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
    /// Valid: the completeness rule held and there is a number (a finite one: NaN and
    /// infinities are not values and no output carries them).
    pub fn is_valid(&self) -> bool {
        self.number().is_some()
    }

    /// The value the outputs carry: `value` when valid, else None.
    pub fn number(&self) -> Option<f64> {
        self.value.filter(|v| v.is_finite())
    }

    /// The details as a JSON object (keys sorted): numbers (null when not finite) and texts.
    pub fn details_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::with_capacity(self.details.len());
        for (name, d) in &self.details {
            let v = match d {
                Detail::Number(x) => serde_json::Number::from_f64(*x)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Detail::Text(t) => serde_json::Value::String(t.clone()),
            };
            m.insert(name.clone(), v);
        }
        serde_json::Value::Object(m)
    }

    /// The value as JSON, the one shape the HTTP API and the retained MQTT topics share
    /// (README "Indicator values as JSON"):
    ///
    /// ```json
    /// {"sphere":"ecology","indicator":"us_aqi_daily","scope":"district","city":"almaty",
    ///  "district":"medeu","sensor_id":"","component":"","window":"24h",
    ///  "window_start":"2026-11-24T19:00:00Z","window_end":"2026-11-25T19:00:00Z",
    ///  "value":153.0,"valid":true,"unit":"AQI","level":"unhealthy",
    ///  "completeness":{"have":18,"expected":24,"unit":"h","ratio":0.75,"text":"18/24 h"},
    ///  "reference":"US EPA AQI, TAD May 2024","details":{"pm2_5":153.0,"dominant":"pm2_5"},
    ///  "computed_at":"2026-11-25T19:01:00.000000001Z"}
    /// ```
    /// Ids that do not apply (`district` of the city scope, `sensor_id` unless the scope is a
    /// sensor, `component` of an indicator without parts) are empty strings; `value` and
    /// `level` are null when absent. Times are RFC 3339 in UTC with `Z`, with as many
    /// fractional digits as they need (none on the hour).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sphere": self.sphere.as_str(),
            "indicator": self.indicator,
            "scope": self.scope.as_str(),
            "city": self.city,
            "district": self.district,
            "sensor_id": self.sensor_id,
            "component": self.component,
            "window": self.window,
            "window_start": rfc3339(self.window_start_ns),
            "window_end": rfc3339(self.window_end_ns),
            "value": self.number(),
            "valid": self.is_valid(),
            "unit": self.unit,
            "level": self.level,
            "completeness": {
                "have": self.completeness.have,
                "expected": self.completeness.expected,
                "unit": self.completeness.unit,
                "ratio": self.completeness.ratio(),
                "text": self.completeness.to_string(),
            },
            "reference": self.reference,
            "details": self.details_json(),
            "computed_at": rfc3339(self.computed_ns),
        })
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

/// `ns` since the epoch as RFC 3339 in UTC (`2026-11-24T19:00:00Z`, fractions only when there
/// are any).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2026-11-24T19:00:00Z, local midnight in Almaty (UTC+5).
    const DAY_START: i64 = 1_795_546_800_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    /// A district's daily AQI, valid, with a level and details of both kinds (for the tests of
    /// every output).
    pub(crate) fn aqi_daily() -> IndicatorValue {
        IndicatorValue {
            indicator: "us_aqi_daily".into(),
            sphere: Sphere::Ecology,
            scope: Scope::District,
            city: "almaty".into(),
            district: "medeu".into(),
            sensor_id: String::new(),
            component: String::new(),
            window: "24h".into(),
            window_start_ns: DAY_START,
            window_end_ns: DAY_START + 24 * HOUR,
            value: Some(153.0),
            unit: "AQI".into(),
            level: Some("unhealthy".into()),
            completeness: Completeness::new(18, 24, "h"),
            reference: "US EPA AQI, TAD May 2024".into(),
            details: vec![
                ("pm2_5".into(), Detail::Number(153.0)),
                ("dominant".into(), Detail::Text("pm2_5".into())),
            ],
            computed_ns: DAY_START + 24 * HOUR + 60_000_000_001,
        }
    }

    #[test]
    fn json_carries_every_field_with_utc_times() {
        let v = aqi_daily();
        assert_eq!(
            v.to_json().to_string(),
            r#"{"city":"almaty","completeness":{"expected":24,"have":18,"ratio":0.75,"text":"18/24 h","unit":"h"},"component":"","computed_at":"2026-11-25T19:01:00.000000001Z","details":{"dominant":"pm2_5","pm2_5":153.0},"district":"medeu","indicator":"us_aqi_daily","level":"unhealthy","reference":"US EPA AQI, TAD May 2024","scope":"district","sensor_id":"","sphere":"ecology","unit":"AQI","valid":true,"value":153.0,"window":"24h","window_end":"2026-11-25T19:00:00Z","window_start":"2026-11-24T19:00:00Z"}"#
        );
    }

    #[test]
    fn an_invalid_value_is_null_in_json_never_a_number() {
        let mut v = aqi_daily();
        v.value = None;
        v.level = None;
        v.completeness = Completeness::new(5, 24, "h");
        let j = v.to_json();
        assert_eq!(j["value"], serde_json::Value::Null);
        assert_eq!(j["valid"], false);
        assert_eq!(j["level"], serde_json::Value::Null);
        assert_eq!(j["completeness"]["text"], "5/24 h");
        // NaN and infinities are not values either.
        for x in [f64::NAN, f64::INFINITY] {
            v.value = Some(x);
            assert!(!v.is_valid());
            assert_eq!(v.to_json()["value"], serde_json::Value::Null);
        }
        v.details = vec![("ratio".into(), Detail::Number(f64::NAN))];
        assert_eq!(v.details_json().to_string(), r#"{"ratio":null}"#);
    }

    #[test]
    fn topics_name_the_series() {
        let mut v = aqi_daily();
        assert_eq!(
            v.topic(),
            "qala/indicators/almaty/ecology/us_aqi_daily/district/medeu/24h"
        );
        v.scope = Scope::Sensor;
        v.sensor_id = "st-1".into();
        v.component = "pm2_5".into();
        assert_eq!(
            v.topic(),
            "qala/indicators/almaty/ecology/us_aqi_daily/sensor/medeu/st-1/pm2_5/24h"
        );
    }
}
