//! SenML (RFC 8428) JSON packs: records resolved per §4.6 (base name, time, unit, value and sum
//! carried forward; relative times against the receive time; names checked), then mapped to
//! points: the metric is the last segment of the name (after `:` or `/`), records of one instant
//! become one point.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{json_rejection, RawPoint, RawTime, RawValue};
use crate::model::{Reason, Rejection};

/// Times below 2^28 s are relative to now (RFC 8428 §4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;
/// The SenML version this reader implements.
pub const VERSION: i64 = 10;

/// A record's value, as given.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    Data(Cow<'a, str>),
}

/// A resolved record (RFC 8428 §4.6): full name, absolute time, unit, and value and/or sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub unit: Option<Cow<'a, str>>,
    pub value: Option<Value<'a>>,
    pub sum: Option<f64>,
}

/// Decodes a JSON pack and maps it to points.
pub fn decode_json(payload: &[u8], received_ns: i64) -> Result<Vec<RawPoint<'_>>, Rejection> {
    let pack: Vec<Record<'_>> =
        serde_json::from_slice(payload).map_err(|e| json_rejection(e, "SenML pack"))?;
    let records = resolve(pack, received_ns as f64 / 1.0e9)?;
    to_points(records)
}

/// Resolves records per RFC 8428 §4.6, sorted by time (stable for equal times).
pub fn resolve(pack: Vec<Record<'_>>, now_s: f64) -> Result<Vec<Resolved<'_>>, Rejection> {
    if pack.is_empty() {
        return Err(bad("the pack has no records"));
    }
    let mut bn: Option<Cow<'_, str>> = None;
    let mut bt = 0.0;
    let mut bu: Option<Cow<'_, str>> = None;
    let mut bv = 0.0;
    let mut bs = 0.0;
    let mut out = Vec::with_capacity(pack.len());
    for (i, r) in pack.into_iter().enumerate() {
        if let Some(ver) = r.bver {
            if ver > VERSION {
                return Err(bad(format!(
                    "record {i} needs SenML version {ver}; this reader implements {VERSION}"
                )));
            }
        }
        if let Some(x) = r.bn {
            bn = Some(x);
        }
        if let Some(x) = r.bt {
            bt = x;
        }
        if let Some(x) = r.bu {
            bu = Some(x);
        }
        if let Some(x) = r.bv {
            bv = x;
        }
        if let Some(x) = r.bs {
            bs = x;
        }
        let value_fields = [
            r.v.is_some(),
            r.vs.is_some(),
            r.vb.is_some(),
            r.vd.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if value_fields == 0 && r.s.is_none() {
            if r.n.is_none() && r.u.is_none() && r.t.is_none() {
                continue; // a record of base fields only
            }
            return Err(bad(format!("record {i} has neither a value nor a sum")));
        }
        if value_fields > 1 {
            return Err(bad(format!(
                "record {i} has {value_fields} values (v, vs, vb, vd); at most one is allowed"
            )));
        }
        let name = match (&bn, &r.n) {
            (Some(b), Some(n)) => format!("{b}{n}"),
            (Some(b), None) => b.to_string(),
            (None, Some(n)) => n.to_string(),
            (None, None) => return Err(bad(format!("record {i} has no name"))),
        };
        check_name(&name).map_err(|why| bad(format!("record {i}: name {name:?} {why}")))?;
        let mut time = bt + r.t.unwrap_or(0.0);
        if !time.is_finite() {
            return Err(bad(format!("record {i} has a time that is not finite")));
        }
        if time < RELATIVE_TIME_LIMIT {
            time += now_s;
        }
        let value = if let Some(v) = r.v {
            Some(Value::Number(bv + v))
        } else if let Some(s) = r.vs {
            Some(Value::Text(s))
        } else if let Some(b) = r.vb {
            Some(Value::Bool(b))
        } else {
            r.vd.map(Value::Data)
        };
        out.push(Resolved {
            name,
            time,
            unit: r.u.or_else(|| bu.clone()),
            value,
            sum: r.s.map(|s| bs + s),
        });
    }
    if out.is_empty() {
        return Err(bad("the pack has only base fields and no records"));
    }
    out.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(out)
}

/// RFC 8428 §4.5.1: `A-Z a-z 0-9 - : . / _`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => return Err("must start with a letter or digit"),
        _ => {}
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '/' | '_')) {
        Ok(())
    } else {
        Err("has characters outside A-Z a-z 0-9 - : . / _")
    }
}

/// The metric named by a record: the text after the last `:` or `/` of its name.
pub fn metric_of(name: &str) -> &str {
    name.rsplit([':', '/']).next().unwrap_or(name)
}

/// Groups resolved numeric records by time into points; the metric is the name's last segment.
fn to_points(records: Vec<Resolved<'_>>) -> Result<Vec<RawPoint<'_>>, Rejection> {
    let mut points: Vec<RawPoint<'_>> = Vec::new();
    let mut last_time = f64::NAN;
    for r in records {
        if r.sum.is_some() {
            // A sum is integrated over time: its unit is the record's unit × seconds (RFC 8428
            // §4.2), so it is a different quantity from the value. Storing it as the value would
            // be wrong; it waits for the unit table that knows rate → quantity.
            return Err(bad(format!(
                "{} carries a sum (s), which is not stored yet; send the meter register as a value (v)",
                r.name
            )));
        }
        let value = match &r.value {
            Some(Value::Number(v)) => *v,
            Some(other) => {
                let kind = match other {
                    Value::Text(_) => "a string value (vs)",
                    Value::Bool(_) => "a boolean value (vb)",
                    _ => "a data value (vd)",
                };
                return Err(Rejection::new(
                    Reason::BadValue,
                    format!("{} has {kind}; only numeric values are stored", r.name),
                ));
            }
            None => unreachable!("resolve() refuses records without value or sum"),
        };
        let metric = metric_of(&r.name);
        if metric.is_empty() {
            return Err(bad(format!(
                "{:?} names no metric after its last ':' or '/'",
                r.name
            )));
        }
        let time_ns = seconds_to_ns(r.time)?;
        if r.time != last_time || points.is_empty() {
            points.push(RawPoint::new(RawTime::UnixNs(time_ns), Vec::new()));
            last_time = r.time;
        }
        let point = points.last_mut().expect("pushed above");
        if point.values.iter().any(|v| v.name == metric) {
            return Err(bad(format!("{metric} is given twice for the same time")));
        }
        point
            .values
            .push(RawValue::number(metric.to_owned(), r.unit, value));
    }
    Ok(points)
}

fn seconds_to_ns(t: f64) -> Result<i64, Rejection> {
    if !(0.0..9.2e9).contains(&t) {
        return Err(Rejection::new(
            Reason::BadTimestamp,
            format!("SenML time {t} s is not a time after 1970"),
        ));
    }
    // f64 seconds near 1.7e9 resolve about 0.24 µs: keep whole seconds exact and round the
    // fraction to the microsecond rather than invent nanoseconds.
    let whole = t.trunc();
    Ok(whole as i64 * 1_000_000_000 + ((t - whole) * 1.0e6).round() as i64 * 1_000)
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(Reason::BadSenml, message)
}

/// One record as written in the pack (RFC 8428 §4.1, JSON labels).
#[derive(Debug, Default)]
pub struct Record<'a> {
    pub bn: Option<Cow<'a, str>>,
    pub bt: Option<f64>,
    pub bu: Option<Cow<'a, str>>,
    pub bv: Option<f64>,
    pub bs: Option<f64>,
    pub bver: Option<i64>,
    pub n: Option<Cow<'a, str>>,
    pub u: Option<Cow<'a, str>>,
    pub v: Option<f64>,
    pub vs: Option<Cow<'a, str>>,
    pub vb: Option<bool>,
    pub vd: Option<Cow<'a, str>>,
    pub s: Option<f64>,
    pub t: Option<f64>,
    pub ut: Option<f64>,
}

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SenML record (an object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
                let mut r = Record::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    macro_rules! set {
                        ($field:ident) => {{
                            if r.$field.is_some() {
                                return Err(de::Error::custom(concat!(
                                    "label ",
                                    stringify!($field),
                                    " appears twice in one record"
                                )));
                            }
                            r.$field = Some(map.next_value()?);
                        }};
                    }
                    match key.as_ref() {
                        "bn" => set!(bn),
                        "bt" => set!(bt),
                        "bu" => set!(bu),
                        "bv" => set!(bv),
                        "bs" => set!(bs),
                        "bver" => set!(bver),
                        "n" => set!(n),
                        "u" => set!(u),
                        "v" => set!(v),
                        "vs" => set!(vs),
                        "vb" => set!(vb),
                        "vd" => set!(vd),
                        "s" => set!(s),
                        "t" => set!(t),
                        "ut" => set!(ut),
                        other if other.ends_with('_') => {
                            return Err(de::Error::custom(format!(
                                "unknown label {other:?} ends in '_', which makes the pack invalid"
                            )))
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(r)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Record<'de>, A::Error> {
                Err(de::Error::custom(
                    "a SenML record must be an object, not an array",
                ))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::RawData;

    const NOW: f64 = 1_700_000_000.0;

    fn resolve_str(s: &str) -> Result<Vec<Resolved<'_>>, Rejection> {
        let pack: Vec<Record<'_>> =
            serde_json::from_str(s).map_err(|e| json_rejection(e, "SenML"))?;
        resolve(pack, NOW)
    }

    #[test]
    fn rfc8428_example_from_domain_md_resolves_to_two_records() {
        let r = resolve_str(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]"#,
        )
        .expect("valid");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "urn:dev:ow:10e2073a01080063:voltage");
        assert_eq!(r[0].unit.as_deref(), Some("V"));
        assert_eq!(r[0].value, Some(Value::Number(120.1)));
        assert_eq!(r[1].name, "urn:dev:ow:10e2073a01080063:current");
        assert_eq!(r[1].value, Some(Value::Number(1.2)));
        // no time given: relative 0 → now
        assert_eq!(r[0].time, NOW);
    }

    #[test]
    fn base_values_carry_forward_and_relative_times_resolve() {
        let r = resolve_str(
            r#"[{"bn":"s1/","bt":1.276020076001e9,"bu":"A","bver":5,"n":"c","v":1.2},
                {"n":"c","t":10,"v":1.3,"bv":1},{"n":"v","u":"V","t":-5,"v":2}]"#,
        )
        .expect("valid");
        // sorted by time: -5, 0, +10
        assert_eq!(
            r.iter().map(|x| x.time).collect::<Vec<_>>(),
            vec![1.276020071001e9, 1.276020076001e9, 1.276020086001e9]
        );
        assert_eq!(r[0].unit.as_deref(), Some("V"));
        assert_eq!(
            r[0].value,
            Some(Value::Number(3.0)),
            "bv = 1 applies to later records"
        );
        assert_eq!(r[2].value, Some(Value::Number(2.3)));
        assert_eq!(r[2].unit.as_deref(), Some("A"));

        let rel = resolve_str(r#"[{"n":"x","t":-60,"v":1}]"#).expect("valid");
        assert_eq!(rel[0].time, NOW - 60.0);
    }

    #[test]
    fn invalid_packs_are_refused_with_reasons() {
        let cases = [
            (r#"[]"#, "no records"),
            (r#"[{"n":"x","v":1,"foo_":2}]"#, "ends in '_'"),
            (r#"[{"n":"x","v":1,"vs":"a"}]"#, "at most one"),
            (r#"[{"n":"x"}]"#, "neither a value nor a sum"),
            (r#"[{"v":1}]"#, "no name"),
            (r#"[{"n":"-x","v":1}]"#, "start with a letter"),
            (r#"[{"n":"a b","v":1}]"#, "characters outside"),
            (r#"[{"bver":11,"n":"x","v":1}]"#, "version 11"),
            (r#"[{"n":"x","v":1,"v":2}]"#, "appears twice"),
        ];
        for (pack, needle) in cases {
            let e = resolve_str(pack).expect_err(pack);
            assert!(
                e.message.contains(needle),
                "{pack}: {:?} lacks {needle:?}",
                e.message
            );
        }
        // unknown labels without '_' are ignored
        assert!(resolve_str(r#"[{"n":"x","v":1,"foo":{"a":[1]}}]"#).is_ok());
    }

    #[test]
    fn records_group_into_points_by_time_with_metric_from_name() {
        let pts = decode_json(
            br#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1700000000,"n":"pm2_5","u":"ug/m3","v":12},
                 {"n":"pm10","u":"ug/m3","v":20},
                 {"n":"pm2_5","t":60,"v":13}]"#,
            0,
        )
        .expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].time, RawTime::UnixNs(1_700_000_000_000_000_000));
        assert_eq!(pts[0].values.len(), 2);
        assert_eq!(pts[0].values[0].name, "pm2_5");
        assert_eq!(pts[0].values[1].name, "pm10");
        assert_eq!(pts[1].time, RawTime::UnixNs(1_700_000_060_000_000_000));
        assert_eq!(pts[1].values[0].value, RawData::Number(13.0));
        // `u` does not carry forward (only `bu` does): no unit means canonical
        assert_eq!(pts[1].values[0].unit, None);
    }

    #[test]
    fn fractional_times_keep_milliseconds_exact() {
        let pts = decode_json(br#"[{"n":"x","t":1700000000.123,"v":1}]"#, 0).expect("valid");
        assert_eq!(pts[0].time, RawTime::UnixNs(1_700_000_000_123_000_000));
    }

    #[test]
    fn sums_and_strings_are_refused_not_mistaken_for_values() {
        // A sum of m3 is m3·s (RFC 8428 §4.2): not a volume. Refused, with the record named.
        let e = decode_json(
            br#"[{"n":"meter/volume","u":"m3","s":1234.5,"t":1700000000}]"#,
            0,
        )
        .expect_err("sum");
        assert_eq!(e.reason, Reason::BadSenml);
        assert!(
            e.message.contains("meter/volume carries a sum"),
            "{}",
            e.message
        );
        let e = decode_json(br#"[{"n":"flow","v":2,"s":10,"t":1700000000}]"#, 0).expect_err("both");
        assert_eq!(e.reason, Reason::BadSenml);
        let e =
            decode_json(br#"[{"n":"status","vs":"ok","t":1700000000}]"#, 0).expect_err("string");
        assert_eq!(e.reason, Reason::BadValue);
        assert!(
            e.message.contains("status has a string value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn metric_is_the_last_segment() {
        assert_eq!(metric_of("urn:dev:ow:10e2073a01080063:voltage"), "voltage");
        assert_eq!(metric_of("station-1/pm10"), "pm10");
        assert_eq!(metric_of("pm10"), "pm10");
    }
}
