//! InfluxDB line protocol encoder: one line per reading, measurement = kind, tags `city`,
//! `district`, `sensor_id`, `sphere` (sorted by key, as InfluxDB prefers), canonical metrics as
//! float fields (plus `receive_time=true` when the gateway's receive time stood in for a missing
//! device time), nanosecond timestamp. Indicator values are lines of measurement `indicator`
//! (see [`encode_indicator`]). Pure: appends to a buffer.

use std::fmt::Write;

use crate::indicators::{Detail, IndicatorValue};
use crate::model::{Reading, TimeSource};
use crate::normalize::units::Quantity;

/// Appends `reading` as one line (with its trailing newline).
pub fn encode(buf: &mut String, reading: &Reading) {
    let s = &reading.sensor;
    escape(buf, s.kind.as_str(), Ctx::Measurement);
    for (key, value) in [
        ("city", s.city.as_str()),
        ("district", s.district.as_str()),
        ("sensor_id", s.sensor_id.as_str()),
        ("sphere", s.kind.sphere().as_str()),
    ] {
        buf.push(',');
        buf.push_str(key);
        buf.push('=');
        escape(buf, value, Ctx::Tag);
    }
    for (i, (def, v)) in reading.values.iter().enumerate() {
        buf.push(if i == 0 { ' ' } else { ',' });
        escape(buf, def.name, Ctx::Tag);
        if def.quantity == Quantity::Flag {
            buf.push_str(if *v != 0.0 { "=true" } else { "=false" });
        } else {
            // f64 Display is the shortest round-trip text, never in exponent form.
            let _ = write!(buf, "={v}");
        }
    }
    if reading.time_source == TimeSource::Receive {
        // The device sent no time; the gateway's receive time stands in, and says so.
        buf.push_str(",receive_time=true");
    }
    let _ = writeln!(buf, " {}", reading.time_ns);
}

/// The measurement of indicator values.
pub const INDICATOR_MEASUREMENT: &str = "indicator";

/// Appends `v` as one line (with its trailing newline) of measurement `indicator`:
/// - tags (sorted by key) `city`, `component`, `district`, `indicator`, `scope`, `sensor_id`,
///   `sphere`, `window`; `component`, `district` and `sensor_id` only when not empty (line
///   protocol has no empty tag values);
/// - fields `value` (float; omitted when invalid), `valid` (bool), `completeness` (have /
///   expected, 0..1), `completeness_have` and `completeness_expected` (integers), `unit`
///   (string, when not empty), `level` (string, when present), `reference` (string), and per
///   detail `d_<name>`: a float for numbers (omitted when not finite), a string for texts;
/// - the timestamp is the window start (ns), so a re-emission of the window overwrites its
///   point (same series, same time).
pub fn encode_indicator(buf: &mut String, v: &IndicatorValue) {
    buf.push_str(INDICATOR_MEASUREMENT);
    for (key, value) in [
        ("city", v.city.as_str()),
        ("component", v.component.as_str()),
        ("district", v.district.as_str()),
        ("indicator", v.indicator.as_str()),
        ("scope", v.scope.as_str()),
        ("sensor_id", v.sensor_id.as_str()),
        ("sphere", v.sphere.as_str()),
        ("window", v.window.as_str()),
    ] {
        if value.is_empty() {
            continue;
        }
        buf.push(',');
        buf.push_str(key);
        buf.push('=');
        escape(buf, value, Ctx::Tag);
    }
    buf.push(' ');
    if let Some(x) = v.number() {
        let _ = write!(buf, "value={x},");
    }
    let _ = write!(
        buf,
        "valid={},completeness={},completeness_have={}i,completeness_expected={}i",
        v.is_valid(),
        v.completeness.ratio(),
        v.completeness.have,
        v.completeness.expected
    );
    if !v.unit.is_empty() {
        string_field(buf, "unit", &v.unit);
    }
    if let Some(level) = &v.level {
        string_field(buf, "level", level);
    }
    string_field(buf, "reference", &v.reference);
    for (name, d) in &v.details {
        match d {
            Detail::Number(x) if x.is_finite() => {
                buf.push_str(",d_");
                escape(buf, name, Ctx::Tag);
                let _ = write!(buf, "={x}");
            }
            Detail::Number(_) => {}
            Detail::Text(t) => {
                buf.push_str(",d_");
                escape(buf, name, Ctx::Tag);
                buf.push('=');
                quote(buf, t);
            }
        }
    }
    let _ = writeln!(buf, " {}", v.window_start_ns);
}

/// `,key="text"`.
fn string_field(buf: &mut String, key: &str, text: &str) {
    buf.push(',');
    buf.push_str(key);
    buf.push('=');
    quote(buf, text);
}

/// A string field value: in double quotes, `"` and `\` escaped; control characters (a newline
/// would end the line) become spaces.
fn quote(buf: &mut String, text: &str) {
    buf.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                buf.push('\\');
                buf.push(c);
            }
            c if c.is_control() => buf.push(' '),
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[derive(Clone, Copy)]
enum Ctx {
    Measurement,
    Tag,
}

/// Line protocol escaping: measurements escape `,` and space; tag keys, tag values and field keys
/// also `=`; a backslash before those is escaped too. Newlines cannot be escaped and never reach
/// here (identities with control characters are refused when normalised; the indicator
/// catalog's ids are plain).
fn escape(buf: &mut String, text: &str, ctx: Ctx) {
    if !text.contains([',', ' ', '=', '\\']) {
        buf.push_str(text);
        return;
    }
    for c in text.chars() {
        match (c, ctx) {
            (',' | ' ' | '\\', _) | ('=', Ctx::Tag) => {
                buf.push('\\');
                buf.push(c);
            }
            _ => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, SensorRef, TimeSource};
    use crate::normalize::catalog::lookup;

    fn reading(city: &str, district: &str, id: &str) -> Reading {
        Reading {
            sensor: SensorRef {
                city: city.into(),
                district: district.into(),
                kind: Kind::Air,
                sensor_id: id.into(),
            },
            time_ns: 1_700_000_000_000_000_000,
            time_source: TimeSource::Device,
            values: vec![
                (lookup(Kind::Air, "pm2_5").expect("pm2_5"), 12.5),
                (lookup(Kind::Air, "pm10").expect("pm10"), 20.0),
                (lookup(Kind::Air, "co").expect("co"), 0.000_000_1),
            ],
        }
    }

    #[test]
    fn encodes_tags_fields_and_time() {
        let mut buf = String::new();
        encode(&mut buf, &reading("almaty", "almaly", "st-1"));
        assert_eq!(
            buf,
            "air,city=almaty,district=almaly,sensor_id=st-1,sphere=ecology pm2_5=12.5,pm10=20,co=0.0000001 1700000000000000000\n"
        );
        let mut received = reading("almaty", "almaly", "st-1");
        received.time_source = TimeSource::Receive;
        buf.clear();
        encode(&mut buf, &received);
        assert!(
            buf.ends_with(",co=0.0000001,receive_time=true 1700000000000000000\n"),
            "{buf}"
        );
    }

    #[test]
    fn flags_are_boolean_fields() {
        let mut r = reading("almaty", "medeu", "m-1");
        r.sensor.kind = Kind::Water;
        r.values = vec![
            (
                crate::normalize::catalog::lookup(Kind::Water, "volume").expect("volume"),
                5.0,
            ),
            (
                crate::normalize::catalog::lookup(Kind::Water, "leak_alarm").expect("leak"),
                1.0,
            ),
            (
                crate::normalize::catalog::lookup(Kind::Water, "tamper_alarm").expect("tamper"),
                0.0,
            ),
        ];
        let mut buf = String::new();
        encode(&mut buf, &r);
        assert!(
            buf.contains(" volume=5,leak_alarm=true,tamper_alarm=false "),
            "{buf}"
        );
    }

    #[test]
    fn an_indicator_value_is_one_line_of_measurement_indicator_at_its_window_start() {
        let v = crate::indicators::value::tests::aqi_daily();
        let mut buf = String::new();
        encode_indicator(&mut buf, &v);
        assert_eq!(
            buf,
            "indicator,city=almaty,district=medeu,indicator=us_aqi_daily,scope=district,sphere=ecology,window=24h \
             value=153,valid=true,completeness=0.75,completeness_have=18i,completeness_expected=24i,\
             unit=\"AQI\",level=\"unhealthy\",reference=\"US EPA AQI, TAD May 2024\",d_pm2_5=153,d_dominant=\"pm2_5\" \
             1795546800000000000\n"
        );
        // The line parses as line protocol, with the types meant.
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(buf.trim_end())
            .collect::<Result<_, _>>()
            .expect("valid line protocol");
        let fields: Vec<String> = parsed[0]
            .field_set
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        assert_eq!(fields[0], "value=F64(153.0)");
        assert_eq!(fields[1], "valid=Boolean(true)");
        assert_eq!(fields[3], "completeness_have=I64(18)");
    }

    #[test]
    fn an_invalid_value_has_no_value_field_and_strings_are_escaped() {
        let mut v = crate::indicators::value::tests::aqi_daily();
        v.value = None;
        v.level = None;
        v.scope = crate::indicators::Scope::Sensor;
        v.sensor_id = "st 1,a=b".into();
        v.component = "pm2_5".into();
        v.reference = "Приказ \"ҚР ДСМ-32\"\\2022\nп.1".into();
        v.details = vec![
            ("note x".into(), Detail::Text("a\"b".into())),
            ("nan".into(), Detail::Number(f64::NAN)),
        ];
        let mut buf = String::new();
        encode_indicator(&mut buf, &v);
        assert_eq!(
            buf,
            "indicator,city=almaty,component=pm2_5,district=medeu,indicator=us_aqi_daily,scope=sensor,\
             sensor_id=st\\ 1\\,a\\=b,sphere=ecology,window=24h \
             valid=false,completeness=0.75,completeness_have=18i,completeness_expected=24i,unit=\"AQI\",\
             reference=\"Приказ \\\"ҚР ДСМ-32\\\"\\\\2022 п.1\",d_note\\ x=\"a\\\"b\" 1795546800000000000\n"
        );
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(buf.trim_end())
            .collect::<Result<_, _>>()
            .expect("valid line protocol");
        let tags = parsed[0].series.tag_set.as_ref().expect("tags");
        let sensor = tags
            .iter()
            .find(|(k, _)| k.as_str() == "sensor_id")
            .expect("sensor_id");
        assert_eq!(sensor.1.as_str(), "st 1,a=b");
        match parsed[0].field_value("reference") {
            Some(influxdb_line_protocol::FieldValue::String(r)) => {
                assert_eq!(r.to_string(), "Приказ \"ҚР ДСМ-32\"\\2022 п.1")
            }
            other => panic!("reference: {other:?}"),
        }
        assert!(parsed[0].field_value("value").is_none());
        assert!(parsed[0].field_value("d_nan").is_none());
    }

    #[test]
    fn escapes_commas_spaces_equals_and_backslashes_in_tags() {
        let mut buf = String::new();
        encode(&mut buf, &reading("nur sultan", "a,b", "x=1\\y"));
        assert!(
            buf.starts_with(
                r"air,city=nur\ sultan,district=a\,b,sensor_id=x\=1\\y,sphere=ecology "
            ),
            "{buf}"
        );
    }
}
