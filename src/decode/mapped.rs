//! Mapped JSON: vendor payloads (ChirpStack uplinks, Tasmota telemetry, ThingsBoard arrays) read
//! through a route's map of JSON Pointers (RFC 6901) to the time, the sensor and the metrics.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json::epoch_ms_to_ns, json_rejection, RawData, RawIdent, RawPoint, RawTime, RawValue};
use crate::model::{Reason, Rejection};

/// How the time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 text; without an offset, `utc_offset` applies.
    #[default]
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
}

/// Where a pointer's value goes: a metric name, or a metric with the unit it is sent in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldTarget {
    Metric(String),
    WithUnit {
        metric: String,
        #[serde(default)]
        unit: Option<String>,
    },
}

/// `[routes.json]` as written in the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingSettings {
    /// Pointer to an array of records (`""`: the payload is the array). Absent: the payload is
    /// one record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// Pointer, in each record, to the time. Absent: the receive-time policy applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub time_format: TimeFormat,
    /// For RFC 3339 texts without an offset (Tasmota sends local time), e.g. `"+05:00"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
    /// Pointers, in the message (not the record), to who sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Pointer (in each record) → metric, or → `{ metric, unit }`.
    pub fields: BTreeMap<String, FieldTarget>,
    /// Pointer, in each record, to an object whose members are metric → value (ThingsBoard's
    /// `values`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Units of the metrics found under `values`.
    pub units: BTreeMap<String, String>,
}

/// A checked mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    settings: MappingSettings,
    offset: Option<FixedOffset>,
}

impl Mapping {
    /// Checks pointers and the offset; errors name the key under `json.`.
    pub fn compile(s: &MappingSettings) -> Result<Mapping, (String, String)> {
        let pointer = |key: &str, p: &Option<String>| match p {
            Some(p) if !p.is_empty() && !p.starts_with('/') => Err((
                key.to_owned(),
                format!("{p:?} is not a JSON Pointer: it must be \"\" or start with '/'"),
            )),
            _ => Ok(()),
        };
        pointer("records", &s.records)?;
        pointer("time", &s.time)?;
        pointer("sensor_id", &s.sensor_id)?;
        pointer("city", &s.city)?;
        pointer("district", &s.district)?;
        pointer("kind", &s.kind)?;
        pointer("values", &s.values)?;
        for (p, target) in &s.fields {
            pointer("fields", &Some(p.clone()))?;
            let metric = match target {
                FieldTarget::Metric(m) | FieldTarget::WithUnit { metric: m, .. } => m,
            };
            if metric.is_empty() {
                return Err((
                    "fields".into(),
                    format!("{p:?} maps to an empty metric name"),
                ));
            }
        }
        if s.fields.is_empty() && s.values.is_none() {
            return Err((
                "fields".into(),
                "the mapping names no metric: set fields (pointer → metric) or values".into(),
            ));
        }
        let offset = match &s.utc_offset {
            Some(o) => Some(parse_offset(o).ok_or_else(|| {
                (
                    "utc_offset".to_owned(),
                    format!("{o:?} is not an offset like \"+05:00\" or \"Z\""),
                )
            })?),
            None => None,
        };
        Ok(Mapping {
            settings: s.clone(),
            offset,
        })
    }

    /// Reads a payload: one point per record.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<Vec<RawPoint<'a>>, Rejection> {
        let s = &self.settings;
        let root: Value =
            serde_json::from_slice(payload).map_err(|e| json_rejection(e, "JSON document"))?;
        let ident = RawIdent {
            kind: self.label(&root, "kind", &s.kind)?,
            city: self.label(&root, "city", &s.city)?,
            district: self.label(&root, "district", &s.district)?,
            sensor_id: self.label(&root, "sensor_id", &s.sensor_id)?,
        };
        let records: Vec<&Value> = match &s.records {
            None => vec![&root],
            Some(p) => match root.pointer(p) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(other) => {
                    return Err(shape(format!(
                        "records at {p:?} is {}, expected an array",
                        describe(other)
                    )))
                }
                None => return Err(shape(format!("no records at {p:?}"))),
            },
        };
        if records.is_empty() {
            return Err(shape("the payload has no records".into()));
        }
        let mut points = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let at = |what: String| {
                if s.records.is_some() {
                    format!("record {i}: {what}")
                } else {
                    what
                }
            };
            let time = match &s.time {
                None => RawTime::Absent,
                Some(p) => match record.pointer(p) {
                    None | Some(Value::Null) => RawTime::Absent,
                    Some(v) => RawTime::UnixNs(self.time_of(v).map_err(|why| {
                        Rejection::new(Reason::BadTimestamp, at(format!("time at {p:?} {why}")))
                    })?),
                },
            };
            let mut values: Vec<RawValue<'a>> = Vec::new();
            for (p, target) in &s.fields {
                let (metric, unit) = match target {
                    FieldTarget::Metric(m) => (m, None),
                    FieldTarget::WithUnit { metric, unit } => (metric, unit.as_ref()),
                };
                match record.pointer(p) {
                    None | Some(Value::Null) => {}
                    Some(v) => values.push(RawValue {
                        name: Cow::Owned(metric.clone()),
                        unit: unit.map(|u| Cow::Owned(u.clone())),
                        value: data_of(v).ok_or_else(|| {
                            Rejection::new(
                                Reason::BadValue,
                                at(format!("{metric} (at {p:?}) is {}", describe(v))),
                            )
                        })?,
                    }),
                }
            }
            if let Some(p) = &s.values {
                match record.pointer(p) {
                    Some(Value::Object(members)) => {
                        for (metric, v) in members {
                            if v.is_null() {
                                continue;
                            }
                            if values.iter().any(|x| x.name == metric.as_str()) {
                                return Err(shape(at(format!("{metric} is given twice"))));
                            }
                            values.push(RawValue {
                                name: Cow::Owned(metric.clone()),
                                unit: s.units.get(metric).map(|u| Cow::Owned(u.clone())),
                                value: data_of(v).ok_or_else(|| {
                                    Rejection::new(
                                        Reason::BadValue,
                                        at(format!("{metric} is {}", describe(v))),
                                    )
                                })?,
                            });
                        }
                    }
                    Some(other) => {
                        return Err(shape(at(format!(
                            "values at {p:?} is {}, expected an object",
                            describe(other)
                        ))))
                    }
                    None => {}
                }
            }
            if values.is_empty() {
                return Err(shape(at(
                    "none of the mapped fields is in the payload".into()
                )));
            }
            points.push(RawPoint {
                time,
                ident: ident.clone(),
                values,
            });
        }
        Ok(points)
    }

    fn label<'a>(
        &self,
        root: &Value,
        what: &str,
        pointer: &Option<String>,
    ) -> Result<Option<Cow<'a, str>>, Rejection> {
        let Some(p) = pointer else { return Ok(None) };
        match root.pointer(p) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(Cow::Owned(s.clone()))),
            Some(Value::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
            Some(other) => Err(shape(format!(
                "{what} at {p:?} is {}, expected text",
                describe(other)
            ))),
        }
    }

    fn time_of(&self, v: &Value) -> Result<i64, String> {
        let s = &self.settings;
        let number = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(t) if s.time_format != TimeFormat::Rfc3339 => {
                t.trim().parse::<f64>().ok()
            }
            _ => None,
        };
        let ms = match (s.time_format, number) {
            (TimeFormat::Rfc3339, _) => {
                let Value::String(text) = v else {
                    return Err(format!("is {}, expected RFC 3339 text", describe(v)));
                };
                return self.rfc3339(text);
            }
            (_, None) => return Err(format!("is {}, expected a number", describe(v))),
            (TimeFormat::EpochS, Some(x)) => x * 1.0e3,
            (TimeFormat::EpochMs, Some(x)) => x,
            (TimeFormat::EpochUs, Some(x)) => x / 1.0e3,
            (TimeFormat::EpochNs, Some(x)) => x / 1.0e6,
        };
        epoch_ms_to_ns(ms).map_err(|e| e.message)
    }

    fn rfc3339(&self, text: &str) -> Result<i64, String> {
        let parsed = match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t,
            Err(e) => {
                // No offset: local time at the route's offset.
                let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .map_err(|_| format!("{text:?} is not RFC 3339 ({e})"))?;
                let Some(offset) = self.offset else {
                    return Err(format!(
                        "{text:?} has no UTC offset; set json.utc_offset for this route (e.g. \"+05:00\")"
                    ));
                };
                offset
                    .from_local_datetime(&naive)
                    .single()
                    .ok_or_else(|| format!("{text:?} is not a valid local time"))?
            }
        };
        parsed
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("{text:?} is out of range"))
    }
}

fn parse_offset(o: &str) -> Option<FixedOffset> {
    if o == "Z" || o == "z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match o.as_bytes().first()? {
        b'+' => (1, &o[1..]),
        b'-' => (-1, &o[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=18).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn data_of(v: &Value) -> Option<RawData<'static>> {
    match v {
        Value::Number(n) => n.as_f64().map(RawData::Number),
        Value::Bool(b) => Some(RawData::Bool(*b)),
        Value::String(s) => Some(RawData::Text(Cow::Owned(s.clone()))),
        _ => None,
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shape(message: String) -> Rejection {
    Rejection::new(Reason::BadShape, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml_text: &str) -> Mapping {
        let s: MappingSettings = toml::from_str(toml_text).expect("toml");
        Mapping::compile(&s).expect("valid mapping")
    }

    fn numbers(p: &RawPoint<'_>) -> Vec<(String, Option<String>, f64)> {
        p.values
            .iter()
            .map(|v| match v.value {
                RawData::Number(x) => (v.name.to_string(), v.unit.as_deref().map(str::to_owned), x),
                ref other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn chirpstack_v4_uplink() {
        let m = mapping(
            r#"
            time = "/time"
            sensor_id = "/deviceInfo/devEui"
            district = "/deviceInfo/tags/district"
            [fields]
            "/object/volume" = { metric = "volume", unit = "l" }
            "/object/flow" = { metric = "flow", unit = "l/s" }
            "/object/battery" = "battery"
            "#,
        );
        let payload = br#"{"deduplicationId":"3ac7e3c4","time":"2026-11-20T10:00:00.250+00:00",
            "deviceInfo":{"tenantId":"52f14cd4","applicationName":"water","deviceName":"m-17",
              "devEui":"0101010101010101","tags":{"district":"medeu"}},
            "devAddr":"00189440","fPort":1,"data":"AQID","object":{"volume":12345.5,"flow":0.25},
            "rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-57,"snr":10}]}"#;
        let pts = m.decode(payload).expect("valid");
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].time, RawTime::UnixNs(1_795_168_800_250_000_000));
        assert_eq!(pts[0].ident.sensor_id.as_deref(), Some("0101010101010101"));
        assert_eq!(pts[0].ident.district.as_deref(), Some("medeu"));
        // battery is absent from object: skipped, not an error.
        assert_eq!(
            numbers(&pts[0]),
            vec![
                ("flow".into(), Some("l/s".into()), 0.25),
                ("volume".into(), Some("l".into()), 12345.5)
            ]
        );
    }

    #[test]
    fn tasmota_local_time_takes_the_route_offset() {
        let m = mapping(
            r#"
            time = "/Time"
            utc_offset = "+05:00"
            [fields]
            "/ENERGY/Total" = { metric = "energy", unit = "kWh" }
            "/ENERGY/Power" = { metric = "power", unit = "W" }
            "/ENERGY/Voltage" = "voltage"
            "#,
        );
        let pts = m
            .decode(br#"{"Time":"2026-11-20T15:00:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":123.456,"Yesterday":1.2,"Today":0.4,"Power":45,"Voltage":229,"Current":0.2}}"#)
            .expect("valid");
        // 15:00 at +05:00 is 10:00 UTC.
        assert_eq!(pts[0].time, RawTime::UnixNs(1_795_168_800_000_000_000));
        assert_eq!(numbers(&pts[0]).len(), 3);
        let no_offset = mapping("time = \"/Time\"\n[fields]\n\"/v\" = \"voltage\"\n");
        let e = no_offset
            .decode(br#"{"Time":"2026-11-20T15:00:00","v":1}"#)
            .unwrap_err();
        assert_eq!(e.reason, Reason::BadTimestamp);
        assert!(e.message.contains("json.utc_offset"), "{}", e.message);
    }

    #[test]
    fn thingsboard_array_expands_into_points() {
        let m = mapping(
            r#"
            records = ""
            time = "/ts"
            time_format = "epoch_ms"
            values = "/values"
            units = { temperature = "Cel" }
            "#,
        );
        let pts = m
            .decode(
                br#"[{"ts":1795140000000,"values":{"temperature":21.5,"humidity":40}},
                         {"ts":1795140060000,"values":{"temperature":21.7}}]"#,
            )
            .expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].time, RawTime::UnixNs(1_795_140_060_000_000_000));
        assert_eq!(
            numbers(&pts[0]),
            vec![
                ("humidity".into(), None, 40.0),
                ("temperature".into(), Some("Cel".into()), 21.5)
            ]
        );
    }

    #[test]
    fn epoch_formats_scale_to_nanoseconds() {
        for (format, value, expect) in [
            ("epoch_s", "1795140000.5", 1_795_140_000_500_000_000i64),
            ("epoch_ms", "1795140000500", 1_795_140_000_500_000_000),
            ("epoch_us", "1795140000500000", 1_795_140_000_500_000_000),
            (
                "epoch_ns",
                "\"1795140000500000000\"",
                1_795_140_000_500_000_000,
            ),
        ] {
            let m = mapping(&format!(
                "time = \"/t\"\ntime_format = \"{format}\"\n[fields]\n\"/v\" = \"pm2_5\"\n"
            ));
            let payload = format!(r#"{{"t":{value},"v":1}}"#);
            let pts = m.decode(payload.as_bytes()).expect(format);
            assert_eq!(pts[0].time, RawTime::UnixNs(expect), "{format}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let m = mapping("records = \"/data\"\ntime = \"/t\"\n[fields]\n\"/v\" = \"pm2_5\"\n");
        for (payload, reason, words) in [
            (
                &br#"{"data":{}}"#[..],
                Reason::BadShape,
                "records at \"/data\" is an object",
            ),
            (br#"{"x":[]}"#, Reason::BadShape, "no records at \"/data\""),
            (br#"{"data":[]}"#, Reason::BadShape, "no records"),
            (
                br#"{"data":[{"t":"soon","v":1}]}"#,
                Reason::BadTimestamp,
                "record 0: time at \"/t\"",
            ),
            (
                br#"{"data":[{"w":1}]}"#,
                Reason::BadShape,
                "record 0: none of the mapped fields",
            ),
            (
                br#"{"data":[{"v":[1]}]}"#,
                Reason::BadValue,
                "pm2_5 (at \"/v\") is an array",
            ),
            (br#"{"data":"#, Reason::NotJson, "not valid JSON"),
        ] {
            let e = m.decode(payload).unwrap_err();
            assert_eq!(e.reason, reason, "{}", e.message);
            assert!(e.message.contains(words), "{}", e.message);
        }
    }

    #[test]
    fn bad_mappings_are_refused() {
        let bad = |t: &str| {
            let s: MappingSettings = toml::from_str(t).expect("toml");
            Mapping::compile(&s).unwrap_err().0
        };
        assert_eq!(bad("time = \"t\"\n[fields]\n\"/v\" = \"x\"\n"), "time");
        assert_eq!(bad("time = \"/t\"\n"), "fields");
        assert_eq!(
            bad("utc_offset = \"+5\"\n[fields]\n\"/v\" = \"x\"\n"),
            "utc_offset"
        );
        assert_eq!(bad("[fields]\n\"v\" = \"x\"\n"), "fields");
    }
}
