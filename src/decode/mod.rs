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

/// Payload formats of the default layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonObject,
    SenmlJson,
}

/// Tells a JSON object from a SenML pack by the first non-blank byte.
pub fn sniff(payload: &[u8]) -> Result<Format, Rejection> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(Rejection::new(Reason::EmptyPayload, "the payload is empty")),
        Some(b'{') => Ok(Format::JsonObject),
        Some(b'[') => Ok(Format::SenmlJson),
        Some(&b) => Err(Rejection::new(
            Reason::NotJson,
            format!(
                "expected a JSON object or a SenML pack, but the payload starts with {}",
                describe_byte(b)
            ),
        )),
    }
}

/// Decodes a payload of the default layout. `received_ns` resolves SenML relative times.
pub fn decode(payload: &[u8], received_ns: i64) -> Result<Vec<RawPoint<'_>>, Rejection> {
    let decoded = sniff(payload).and_then(|format| match format {
        Format::JsonObject => json::decode_object(payload).map(|p| vec![p]),
        Format::SenmlJson => senml::decode_json(payload, received_ns),
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

    #[test]
    fn sniff_tells_formats_apart_by_first_byte() {
        assert_eq!(sniff(b"  {\"a\":1}"), Ok(Format::JsonObject));
        assert_eq!(sniff(b"\n[{}]"), Ok(Format::SenmlJson));
        assert_eq!(sniff(b"   ").unwrap_err().reason, Reason::EmptyPayload);
        assert_eq!(sniff(b"").unwrap_err().reason, Reason::EmptyPayload);
        let e = sniff(b"12.5").unwrap_err();
        assert_eq!(e.reason, Reason::NotJson);
        assert!(e.message.contains("'1'"), "{}", e.message);
        assert!(sniff(b"\xff\xfe").unwrap_err().message.contains("0xff"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_so() {
        let e = decode(b"{\"pm2_5\":1,\"x\xc3\x28\":2}", 0).unwrap_err();
        assert_eq!(e.reason, Reason::NotUtf8);
        assert_eq!(
            e.message,
            "the payload is not UTF-8 text: invalid byte 0xc3 at offset 13"
        );
        assert_eq!(decode(b"\xff\xfe", 0).unwrap_err().reason, Reason::NotUtf8);
        // Valid UTF-8 that is not JSON stays not_json.
        assert_eq!(
            decode("{\"pm2_5\":1,}".as_bytes(), 0).unwrap_err().reason,
            Reason::NotJson
        );
    }
}
