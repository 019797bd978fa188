//! The default JSON object: `{"ts": <RFC 3339 | epoch ms>, "<metric>": <number>, ...,
//! "units": {"<metric>": "<unit>"}}`. Decoded with a borrowing visitor: no intermediate tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{json_rejection, RawData, RawPoint, RawTime, RawValue, Text};
use crate::model::{Reason, Rejection};

/// Decodes one JSON object into one point.
pub fn decode_object(payload: &[u8]) -> Result<RawPoint<'_>, Rejection> {
    let obj: Object<'_> =
        serde_json::from_slice(payload).map_err(|e| json_rejection(e, "JSON object"))?;
    let time = match obj.ts {
        None => RawTime::Absent,
        Some(field) => RawTime::UnixNs(parse_ts(field)?),
    };
    if let Some(refused) = obj.refused {
        return Err(refused);
    }
    let mut values = obj.values;
    // Units named before their metric; usually none (units come last).
    for (name, unit) in obj.pending_units {
        match values.iter_mut().find(|v| v.name == name) {
            Some(v) => v.unit = Some(unit),
            None => {
                return Err(Rejection::new(
                    Reason::BadShape,
                    format!("units names {name}, which the object does not carry"),
                ))
            }
        }
    }
    Ok(RawPoint::new(time, values))
}

/// One metric member → its raw value, or why it is refused. `earlier` are the metrics before it.
fn metric_value<'a>(
    name: Cow<'a, str>,
    field: Field<'a>,
    earlier: &[RawValue<'a>],
) -> Result<RawValue<'a>, Rejection> {
    // Numbers, and booleans for flags (the normaliser knows which metric takes which).
    let value = match field {
        Field::Number(v) => RawData::Number(v),
        Field::Bool(b) => RawData::Bool(b),
        other => {
            return Err(Rejection::new(
                Reason::BadValue,
                format!(
                    "{name} is {}, expected a number (or a boolean, for a flag)",
                    other.describe()
                ),
            ))
        }
    };
    if earlier.iter().any(|v| v.name == name) {
        return Err(Rejection::new(
            Reason::BadShape,
            format!("{name} is given twice"),
        ));
    }
    Ok(RawValue {
        name,
        unit: None,
        value,
    })
}

/// `ts` as RFC 3339 or epoch milliseconds → ns since the epoch.
fn parse_ts(field: Field<'_>) -> Result<i64, Rejection> {
    match field {
        Field::Number(ms) => epoch_ms_to_ns(ms),
        Field::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| {
                Rejection::new(
                    Reason::BadTimestamp,
                    format!("ts {s:?} is not RFC 3339 ({e})"),
                )
            })?
            .timestamp_nanos_opt()
            .ok_or_else(|| {
                Rejection::new(Reason::BadTimestamp, format!("ts {s:?} is out of range"))
            }),
        other => Err(Rejection::new(
            Reason::BadTimestamp,
            format!(
                "ts is {}, expected RFC 3339 text or epoch milliseconds",
                other.describe()
            ),
        )),
    }
}

/// Epoch milliseconds (integer or fractional) → ns, refusing what cannot be a time.
pub fn epoch_ms_to_ns(ms: f64) -> Result<i64, Rejection> {
    let refuse = || {
        Rejection::new(
            Reason::BadTimestamp,
            format!("ts {ms} is not a time in epoch milliseconds (1970 to 2262)"),
        )
    };
    // i64 nanoseconds reach 2262-04-11 (9.22e12 ms); refuse anything past that or before 1970.
    if !ms.is_finite() || !(0.0..9.2e12).contains(&ms) {
        return Err(refuse());
    }
    // Whole milliseconds are exact in f64 up to 2^53; only the fraction is rounded (to the ns).
    let whole = ms.trunc();
    (whole as i64)
        .checked_mul(1_000_000)
        .and_then(|ns| ns.checked_add(((ms - whole) * 1.0e6).round() as i64))
        .ok_or_else(refuse)
}

/// A top-level value, as far as the decoder cares.
enum Field<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl Field<'_> {
    fn describe(&self) -> String {
        match self {
            Field::Number(v) => format!("the number {v}"),
            Field::Text(s) => format!("the text {s:?}"),
            Field::Bool(_) => "a boolean".into(),
            Field::Null => "null".into(),
            Field::Object => "an object".into(),
            Field::Array => "an array".into(),
        }
    }
}

/// The object as read: the checks that need the whole object (a valid `ts`, every unit naming
/// a metric) are made after it parsed, so that a syntax error anywhere is reported as such.
struct Object<'a> {
    ts: Option<Field<'a>>,
    /// The metrics in order, up to the first refused one.
    values: Vec<RawValue<'a>>,
    /// The first metric refused (not a number, or given twice).
    refused: Option<Rejection>,
    /// Units read before the metric they name.
    pending_units: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of metrics")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut obj = Object {
                    ts: None,
                    values: Vec::with_capacity(8),
                    refused: None,
                    pending_units: Vec::new(),
                };
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match key.as_ref() {
                        "ts" => {
                            if obj.ts.is_some() {
                                return Err(de::Error::custom("ts is given twice"));
                            }
                            obj.ts = Some(map.next_value()?);
                        }
                        "units" => {
                            // A later `units` replaces an earlier one.
                            for v in &mut obj.values {
                                v.unit = None;
                            }
                            obj.pending_units.clear();
                            map.next_value_seed(Units {
                                values: &mut obj.values,
                                pending: &mut obj.pending_units,
                            })?;
                        }
                        _ => {
                            let f: Field<'de> = map.next_value()?;
                            if obj.refused.is_none() {
                                match metric_value(key, f, &obj.values) {
                                    Ok(v) => obj.values.push(v),
                                    Err(e) => obj.refused = Some(e),
                                }
                            }
                        }
                    }
                }
                Ok(obj)
            }
        }
        d.deserialize_map(V)
    }
}

/// `units`: each unit goes to its metric if it was read already, else waits in `pending`.
struct Units<'o, 'a> {
    values: &'o mut Vec<RawValue<'a>>,
    pending: &'o mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'de> DeserializeSeed<'de> for Units<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Units<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("units as an object of metric → unit text")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((Text(name), Text(unit))) = map.next_entry::<Text<'de>, Text<'de>>()? {
            match self.values.iter_mut().find(|v| v.name == name) {
                Some(v) => v.unit = Some(unit),
                None => self.pending.push((name, unit)),
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v as f64))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Field<'de>, E> {
                Ok(Field::Bool(b))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Array)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::RawData;

    fn names(p: &RawPoint<'_>) -> Vec<(String, Option<String>, f64)> {
        p.values
            .iter()
            .map(|v| {
                (
                    v.name.to_string(),
                    v.unit.as_ref().map(|u| u.to_string()),
                    match v.value {
                        RawData::Number(x) => x,
                        ref other => panic!("not a number: {other:?}"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn object_with_rfc3339_time_and_units() {
        let p = decode_object(
            br#"{"ts":"2026-01-15T08:00:00+05:00","pm2_5":0.0123,"pm10":20,"units":{"pm2_5":"mg/m3"}}"#,
        )
        .expect("decodes");
        // 08:00 at UTC+5 is 03:00 UTC
        assert_eq!(p.time, RawTime::UnixNs(1_768_446_000_000_000_000));
        assert_eq!(
            names(&p),
            vec![
                ("pm2_5".into(), Some("mg/m3".into()), 0.0123),
                ("pm10".into(), None, 20.0)
            ]
        );
    }

    #[test]
    fn units_may_come_anywhere_and_a_later_units_replaces_an_earlier_one() {
        let p = decode_object(br#"{"units":{"no2":"ppb"},"no2":5,"pm10":1,"ts":1700000000000}"#)
            .expect("decodes");
        assert_eq!(
            names(&p),
            vec![
                ("no2".into(), Some("ppb".into()), 5.0),
                ("pm10".into(), None, 1.0)
            ]
        );
        let p = decode_object(
            br#"{"no2":5,"units":{"no2":"ppb","pm10":"mg/m3"},"pm10":1,"units":{"pm10":"ug/m3"}}"#,
        )
        .expect("decodes");
        assert_eq!(
            names(&p),
            vec![
                ("no2".into(), None, 5.0),
                ("pm10".into(), Some("ug/m3".into()), 1.0)
            ]
        );
        // Escaped names are unescaped, as before.
        let p = decode_object(br#"{"pm2\u005f5":1,"units":{"pm2_5":"mg/m3"}}"#).expect("decodes");
        assert_eq!(names(&p), vec![("pm2_5".into(), Some("mg/m3".into()), 1.0)]);
        // A bad timestamp is reported before a bad metric, a bad metric before a bad unit name,
        // and bad JSON before all of them.
        let e = decode_object(br#"{"units":{"x":"K"},"pm2_5":"1","ts":true}"#).unwrap_err();
        assert_eq!(e.reason, Reason::BadTimestamp);
        let e = decode_object(br#"{"units":{"x":"K"},"pm2_5":"1","pm2_5":1}"#).unwrap_err();
        assert_eq!(e.reason, Reason::BadValue);
        let e = decode_object(br#"{"pm2_5":1,"pm2_5":"1"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::BadValue, "{e}");
        let e = decode_object(br#"{"pm2_5":1,"pm2_5":2,"x":"1"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::BadShape, "{e}");
        let e = decode_object(br#"{"units":{"x":"K"},"pm2_5":"1","ts":true,}"#).unwrap_err();
        assert_eq!(e.reason, Reason::NotJson);
    }

    #[test]
    fn object_with_epoch_ms() {
        let p = decode_object(br#"{"volume": 12.5, "ts": 1700000000123}"#).expect("decodes");
        assert_eq!(p.time, RawTime::UnixNs(1_700_000_000_123_000_000));
        let p = decode_object(br#"{"volume": 1}"#).expect("decodes");
        assert_eq!(p.time, RawTime::Absent);
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let cases: &[(&[u8], Reason, &str)] = &[
            (
                br#"{"pm2_5":"12"}"#,
                Reason::BadValue,
                "pm2_5 is the text \"12\", expected a number",
            ),
            (br#"{"pm2_5":null}"#, Reason::BadValue, "pm2_5 is null"),
            (
                br#"{"pm2_5":{"v":1}}"#,
                Reason::BadValue,
                "pm2_5 is an object",
            ),
            (
                br#"{"ts":"yesterday","pm2_5":1}"#,
                Reason::BadTimestamp,
                "ts \"yesterday\" is not RFC 3339",
            ),
            (
                br#"{"ts":true,"pm2_5":1}"#,
                Reason::BadTimestamp,
                "ts is a boolean",
            ),
            (
                br#"{"ts":-5,"pm2_5":1}"#,
                Reason::BadTimestamp,
                "ts -5 is not a time",
            ),
            (
                // Microseconds sent as milliseconds: year 5138, still short of i64 ns overflow.
                br#"{"ts":100000000000000,"pm2_5":1}"#,
                Reason::BadTimestamp,
                "ts 100000000000000 is not a time",
            ),
            (
                br#"{"ts":9.3e15,"pm2_5":1}"#,
                Reason::BadTimestamp,
                "is not a time in epoch milliseconds",
            ),
            (
                br#"{"pm2_5":1,"units":{"pm10":"ug/m3"}}"#,
                Reason::BadShape,
                "units names pm10",
            ),
            (
                br#"{"pm2_5":1,"units":"ug/m3"}"#,
                Reason::BadShape,
                "units as an object",
            ),
            (
                br#"{"pm2_5":1,"pm2_5":2}"#,
                Reason::BadShape,
                "pm2_5 is given twice",
            ),
            (br#"{"pm2_5":1"#, Reason::NotJson, "not valid JSON"),
            (br#"{"pm2_5":NaN}"#, Reason::NotJson, "not valid JSON"),
        ];
        for (payload, reason, needle) in cases {
            let e = decode_object(payload).expect_err(std::str::from_utf8(payload).unwrap_or("?"));
            assert_eq!(e.reason, *reason, "{e}");
            assert!(
                e.message.contains(needle),
                "{:?} lacks {needle:?}",
                e.message
            );
        }
    }

    #[test]
    fn huge_exponent_is_not_taken_as_a_number() {
        // serde_json refuses numbers beyond f64; the message says so.
        let e = decode_object(br#"{"pm2_5":1e999}"#).expect_err("out of range");
        assert_eq!(e.reason, Reason::NotJson);
    }
}
