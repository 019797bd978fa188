//! Decoders: payload bytes → raw points (names, values, units and times as the device gave them).
//! Nothing here knows canonical metrics or ranges; that is `normalize`'s job.
//!
//! The default topic layout carries a JSON object or a SenML pack, told apart by the first byte.

pub mod json;
pub mod line;
pub mod mapped;
pub mod senml;
pub mod senml_cbor;

use std::borrow::Cow;

use crate::ingest::route::{Format, Route};
use crate::model::{Reason, Rejection};

/// When a point was measured, as far as the payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTime {
    /// The payload gave no time.
    Absent,
    /// Nanoseconds since the Unix epoch, UTC.
    UnixNs(i64),
}

/// A value as the payload gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawData<'a> {
    Number(f64),
    Bool(bool),
    Text(Cow<'a, str>),
    /// Opaque data (SenML `vd`, base64 text as given).
    Data(Cow<'a, str>),
}

impl RawData<'_> {
    /// What kind of value this is, for messages: "a number", "a boolean", ...
    pub fn describe(&self) -> &'static str {
        match self {
            RawData::Number(_) => "a number",
            RawData::Bool(_) => "a boolean",
            RawData::Text(_) => "text",
            RawData::Data(_) => "opaque data",
        }
    }
}

/// One named value with the unit the device used (None: canonical).
#[derive(Debug, Clone, PartialEq)]
pub struct RawValue<'a> {
    pub name: Cow<'a, str>,
    pub unit: Option<Cow<'a, str>>,
    pub value: RawData<'a>,
}

impl<'a> RawValue<'a> {
    /// A number in the canonical unit or in `unit`.
    pub fn number(name: impl Into<Cow<'a, str>>, unit: Option<Cow<'a, str>>, v: f64) -> Self {
        RawValue {
            name: name.into(),
            unit,
            value: RawData::Number(v),
        }
    }
}

/// Whose values these are, as far as the payload says. Each `None` is taken from the route's
/// topic template or its fixed values instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawIdent<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    pub district: Option<Cow<'a, str>>,
    pub sensor_id: Option<Cow<'a, str>>,
}

/// The values a device reported for one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPoint<'a> {
    pub time: RawTime,
    pub ident: RawIdent<'a>,
    pub values: Vec<RawValue<'a>>,
}

impl<'a> RawPoint<'a> {
    /// A point of the topic's sensor.
    pub fn new(time: RawTime, values: Vec<RawValue<'a>>) -> Self {
        RawPoint {
            time,
            ident: RawIdent::default(),
            values,
        }
    }
}

/// The points of one message. Most messages carry one: it stays inline, without a `Vec`.
#[derive(Debug, Clone, PartialEq)]
pub enum Points<'a> {
    One(RawPoint<'a>),
    Many(Vec<RawPoint<'a>>),
}

impl<'a> Points<'a> {
    pub fn len(&self) -> usize {
        match self {
            Points::One(_) => 1,
            Points::Many(points) => points.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> IntoIterator for Points<'a> {
    type Item = RawPoint<'a>;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<RawPoint<'a>>, std::vec::IntoIter<RawPoint<'a>>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            // An empty Vec does not allocate.
            Points::One(point) => Some(point).into_iter().chain(Vec::new()),
            Points::Many(points) => None.into_iter().chain(points),
        }
    }
}

/// What `auto` takes a payload for, by its first non-blank byte: `{` a JSON object (mapped when
/// the route maps JSON), `[` a SenML pack (or a mapped array), a digit, sign or `.` a plain value
/// when the route knows the metric.
pub fn sniff(payload: &[u8], route: &Route, metric_known: bool) -> Result<Format, Rejection> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(Rejection::new(Reason::EmptyPayload, "the payload is empty")),
        Some(b'{') => Ok(Format::Json),
        Some(b'[') if route.json.is_some() => Ok(Format::Json),
        Some(b'[') => Ok(Format::Senml),
        Some(b'0'..=b'9' | b'-' | b'+' | b'.') if metric_known => Ok(Format::Value),
        Some(&b) => Err(Rejection::new(
            Reason::NotJson,
            format!(
                "expected a JSON object or a SenML pack, but the payload starts with {}",
                describe_byte(b)
            ),
        )),
    }
}

/// Decodes a payload the way its route says. `received_ns` resolves SenML relative times;
/// `metric` and `unit` are a plain value's (from the topic or the route).
pub fn decode<'a>(
    payload: &'a [u8],
    route: &Route,
    metric: Option<&'a str>,
    unit: Option<&'a str>,
    received_ns: i64,
) -> Result<Points<'a>, Rejection> {
    let format = match route.format {
        Format::Auto => sniff(payload, route, metric.is_some()),
        f => Ok(f),
    };
    let decoded = format.and_then(|format| match format {
        Format::Json => match &route.json {
            Some(mapping) => mapping.decode(payload).map(Points::Many),
            None => json::decode_object(payload).map(Points::One),
        },
        Format::Senml => senml::decode_json(payload, received_ns, &route.senml).map(Points::Many),
        Format::SenmlCbor => {
            senml_cbor::decode_cbor(payload, received_ns, &route.senml).map(Points::Many)
        }
        Format::Line => line::decode(payload, &route.line).map(Points::Many),
        Format::Value => plain_value(payload, metric, unit).map(Points::One),
        Format::Auto => unreachable!("sniff decides"),
    });
    // JSON is UTF-8: when the text is not, say that rather than "not JSON". Checked only on
    // failure, so valid traffic pays nothing for it.
    decoded.map_err(|e| match (e.reason, std::str::from_utf8(payload)) {
        (Reason::NotJson, Err(bad)) => Rejection::new(
            Reason::NotUtf8,
            format!(
                "the payload is not UTF-8 text: invalid byte 0x{:02x} at offset {}",
                payload[bad.valid_up_to()],
                bad.valid_up_to()
            ),
        ),
        _ => e,
    })
}

/// A payload that is one number (surrounding blanks allowed), named by the topic or the route.
pub fn plain_value<'a>(
    payload: &'a [u8],
    metric: Option<&'a str>,
    unit: Option<&'a str>,
) -> Result<RawPoint<'a>, Rejection> {
    let Some(metric) = metric else {
        return Err(Rejection::new(
            Reason::BadShape,
            "a plain value needs its metric: {metric} in the route's template, or metric in the route",
        ));
    };
    let text = std::str::from_utf8(payload)
        .map_err(|e| {
            Rejection::new(
                Reason::NotUtf8,
                format!(
                    "a plain value must be UTF-8 text: invalid byte at offset {}",
                    e.valid_up_to()
                ),
            )
        })?
        .trim();
    if text.is_empty() {
        return Err(Rejection::new(Reason::EmptyPayload, "the payload is empty"));
    }
    let shown: String = text.chars().take(40).collect();
    let v: f64 = text.parse().map_err(|_| {
        Rejection::new(
            Reason::BadValue,
            format!("{metric}: {shown:?} is not a number"),
        )
    })?;
    if !v.is_finite() {
        return Err(Rejection::new(
            Reason::BadValue,
            format!("{metric}: {shown:?} is not a finite number"),
        ));
    }
    Ok(RawPoint::new(
        RawTime::Absent,
        vec![RawValue::number(metric, unit.map(Cow::Borrowed), v)],
    ))
}

/// A JSON string, borrowed from the payload unless it has escapes. (serde's own `Cow<str>`
/// always allocates.)
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Turns a serde_json error into a rejection: syntax errors are `not_json`, the rest `bad_shape`.
pub(crate) fn json_rejection(e: serde_json::Error, what: &str) -> Rejection {
    use serde_json::error::Category;
    let reason = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => Reason::NotJson,
        Category::Data => Reason::BadShape,
    };
    let message = match reason {
        Reason::NotJson => format!("not valid JSON: {e}"),
        _ => format!("not a valid {what}: {e}"),
    };
    Rejection::new(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_route() -> Route {
        crate::ingest::route::Routes::default_layout().routes()[0].clone()
    }

    fn dec(payload: &[u8]) -> Result<Points<'_>, Rejection> {
        decode(payload, &default_route(), None, None, 0)
    }

    #[test]
    fn sniff_tells_formats_apart_by_first_byte() {
        let r = default_route();
        assert_eq!(sniff(b"  {\"a\":1}", &r, false), Ok(Format::Json));
        assert_eq!(sniff(b"\n[{}]", &r, false), Ok(Format::Senml));
        assert_eq!(
            sniff(b"   ", &r, false).unwrap_err().reason,
            Reason::EmptyPayload
        );
        assert_eq!(
            sniff(b"", &r, false).unwrap_err().reason,
            Reason::EmptyPayload
        );
        let e = sniff(b"12.5", &r, false).unwrap_err();
        assert_eq!(e.reason, Reason::NotJson);
        assert!(e.message.contains("'1'"), "{}", e.message);
        // With a metric from the topic or route, a number is a plain value.
        assert_eq!(sniff(b" -12.5", &r, true), Ok(Format::Value));
        assert!(sniff(b"\xff\xfe", &r, false)
            .unwrap_err()
            .message
            .contains("0xff"));
    }

    #[test]
    fn plain_values_are_one_finite_number() {
        let pt = plain_value(b" 21.5\n", Some("temperature"), Some("Cel")).expect("valid");
        assert_eq!(pt.time, RawTime::Absent);
        assert_eq!(
            pt.values,
            vec![RawValue::number("temperature", Some("Cel".into()), 21.5)]
        );
        for (payload, reason) in [
            (&b"abc"[..], Reason::BadValue),
            (b"NaN", Reason::BadValue),
            (b"inf", Reason::BadValue),
            (b"1 2", Reason::BadValue),
            (b"  ", Reason::EmptyPayload),
            (b"\xff", Reason::NotUtf8),
        ] {
            assert_eq!(
                plain_value(payload, Some("v"), None).unwrap_err().reason,
                reason
            );
        }
        assert_eq!(
            plain_value(b"1", None, None).unwrap_err().reason,
            Reason::BadShape
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_so() {
        let e = dec(b"{\"pm2_5\":1,\"x\xc3\x28\":2}").unwrap_err();
        assert_eq!(e.reason, Reason::NotUtf8);
        assert_eq!(
            e.message,
            "the payload is not UTF-8 text: invalid byte 0xc3 at offset 13"
        );
        assert_eq!(dec(b"\xff\xfe").unwrap_err().reason, Reason::NotUtf8);
        // Valid UTF-8 that is not JSON stays not_json.
        assert_eq!(
            dec("{\"pm2_5\":1,}".as_bytes()).unwrap_err().reason,
            Reason::NotJson
        );
    }
}
