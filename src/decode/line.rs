//! InfluxDB line protocol input, parsed by InfluxData's own parser (`influxdb-line-protocol`).
//! Each line is one point: the measurement may name the kind, tags name the sensor, fields are
//! the metrics, the timestamp is in the route's precision.

use std::borrow::Cow;

use influxdb_line_protocol::{parse_lines, FieldValue};

use super::{RawData, RawIdent, RawPoint, RawTime, RawValue};
use crate::model::{Reason, Rejection};
use serde::{Deserialize, Serialize};

/// Timestamp precision of line protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn ns(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

/// `[routes.line]`: how line protocol names its sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineOptions {
    /// Unit of the line's timestamp.
    pub precision: Precision,
    /// The measurement is the kind (`air`, `water`, ...). Off: the kind comes from the topic or
    /// the route, and the measurement is ignored.
    pub measurement_is_kind: bool,
    /// Tags that name the sensor, its city and its district (absent tags: topic or route).
    pub sensor_tag: String,
    pub city_tag: String,
    pub district_tag: String,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions {
            precision: Precision::Ns,
            measurement_is_kind: true,
            sensor_tag: "sensor_id".into(),
            city_tag: "city".into(),
            district_tag: "district".into(),
        }
    }
}

/// Parses every line of `payload` (blank lines and `#` comments are skipped).
pub fn decode<'a>(payload: &'a [u8], opts: &LineOptions) -> Result<Vec<RawPoint<'a>>, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            Reason::NotUtf8,
            format!(
                "line protocol must be UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    let mut points = Vec::new();
    for (i, line) in parse_lines(text).enumerate() {
        let line = line.map_err(|e| {
            Rejection::new(
                Reason::BadShape,
                format!("line protocol, line {}: {e}", i + 1),
            )
        })?;
        let time = match line.timestamp {
            None => RawTime::Absent,
            Some(t) => RawTime::UnixNs(t.checked_mul(opts.precision.ns()).ok_or_else(|| {
                Rejection::new(
                    Reason::BadTimestamp,
                    format!(
                        "line protocol, line {}: timestamp {t} in {:?} overflows",
                        i + 1,
                        opts.precision
                    ),
                )
            })?),
        };
        let tag = |key: &str| -> Option<Cow<'a, str>> {
            line.series.tag_set.as_ref().and_then(|tags| {
                tags.iter()
                    .find(|(k, _)| k.as_str() == key)
                    .map(|(_, v)| Cow::Owned(v.to_string()))
            })
        };
        let ident = RawIdent {
            kind: opts
                .measurement_is_kind
                .then(|| Cow::Owned(line.series.measurement.to_string())),
            city: tag(&opts.city_tag),
            district: tag(&opts.district_tag),
            sensor_id: tag(&opts.sensor_tag),
        };
        let values = line
            .field_set
            .iter()
            .map(|(name, value)| RawValue {
                name: Cow::Owned(name.to_string()),
                unit: None,
                value: match value {
                    FieldValue::F64(v) => RawData::Number(*v),
                    FieldValue::I64(v) => RawData::Number(*v as f64),
                    FieldValue::U64(v) => RawData::Number(*v as f64),
                    FieldValue::Boolean(b) => RawData::Bool(*b),
                    FieldValue::String(s) => RawData::Text(Cow::Owned(s.to_string())),
                },
            })
            .collect();
        points.push(RawPoint {
            time,
            ident,
            values,
        });
    }
    if points.is_empty() {
        return Err(Rejection::new(
            Reason::EmptyPayload,
            "the payload has no line-protocol lines",
        ));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_points_with_tags_as_identity() {
        let payload = b"air,city=almaty,district=almaly,sensor_id=st-1 pm2_5=12.5,pm10=20i 1795140000000000000\n\
                        # a comment\n\
                        \n\
                        water,sensor_id=m-2 volume=10u,leak=true,status=\"ok\"\n";
        let pts = decode(payload, &LineOptions::default()).expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].time, RawTime::UnixNs(1_795_140_000_000_000_000));
        assert_eq!(pts[0].ident.kind.as_deref(), Some("air"));
        assert_eq!(pts[0].ident.city.as_deref(), Some("almaty"));
        assert_eq!(pts[0].ident.sensor_id.as_deref(), Some("st-1"));
        assert_eq!(pts[0].values[1].value, RawData::Number(20.0));
        assert_eq!(pts[1].time, RawTime::Absent);
        assert_eq!(pts[1].ident.district, None);
        assert_eq!(pts[1].values[1].value, RawData::Bool(true));
        assert_eq!(pts[1].values[2].value, RawData::Text("ok".into()));
    }

    #[test]
    fn precision_scales_and_tag_names_are_configurable() {
        let opts = LineOptions {
            precision: Precision::S,
            measurement_is_kind: false,
            sensor_tag: "host".into(),
            ..LineOptions::default()
        };
        let pts = decode(b"meter,host=m-9 volume=1.5 1795140000", &opts).expect("valid");
        assert_eq!(pts[0].time, RawTime::UnixNs(1_795_140_000_000_000_000));
        assert_eq!(pts[0].ident.kind, None);
        assert_eq!(pts[0].ident.sensor_id.as_deref(), Some("m-9"));
        let e = decode(b"m v=1 9223372036854775807", &opts).unwrap_err();
        assert_eq!(e.reason, Reason::BadTimestamp);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = decode(b"air pm2_5=1\nair pm2_5=", &LineOptions::default()).unwrap_err();
        assert_eq!(e.reason, Reason::BadShape);
        assert!(
            e.message.starts_with("line protocol, line 2:"),
            "{}",
            e.message
        );
        assert_eq!(
            decode(b"\n# only a comment\n", &LineOptions::default())
                .unwrap_err()
                .reason,
            Reason::EmptyPayload
        );
        assert_eq!(
            decode(b"air v=1 \xff", &LineOptions::default())
                .unwrap_err()
                .reason,
            Reason::NotUtf8
        );
    }
}
