//! SenML packs in CBOR (application/senml+cbor, RFC 8428 §6): integer labels, numbers as
//! integers, floats or decimal fractions, data values as byte strings. Read into the same
//! [`Record`]s as JSON packs, then resolved and mapped by `senml` exactly like them.
//!
//! Labels: the registered fields have integer labels only (§6, Table 4, "conclusive"); other
//! integer labels are extensions a reader ignores (§4.4; §11 allows any uint/nint label). Text
//! labels are how CBOR writes extension labels (§6, §12.2): ignored, unless they end in `_`
//! (the pack is refused, §4.4). A text label that spells a registered field ("v", "bn", ...) is
//! refused rather than ignored: dropping it would silently change names, times or values.

use std::borrow::Cow;

use ciborium::Value;

use super::senml::{self, base64url, Label, Record, SenmlOptions};
use super::RawPoint;
use crate::model::{Reason, Rejection};

/// Decodes a CBOR pack and maps it to points.
pub fn decode_cbor<'a>(
    payload: &'a [u8],
    received_ns: i64,
    opts: &SenmlOptions,
) -> Result<Vec<RawPoint<'a>>, Rejection> {
    let pack = read_pack(payload)?;
    senml::to_points(senml::resolve(pack, received_ns)?, opts)
}

/// Reads the records of a CBOR pack as written.
pub fn read_pack(payload: &[u8]) -> Result<Vec<Record<'static>>, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(Reason::EmptyPayload, "the payload is empty"));
    }
    let mut rest = payload;
    let pack: Value = ciborium::from_reader(&mut rest).map_err(|e| {
        let why = match e {
            ciborium::de::Error::Io(_) => "the payload ends inside a data item".to_owned(),
            ciborium::de::Error::Syntax(at) => format!("malformed at byte {at}"),
            ciborium::de::Error::Semantic(Some(at), what) => format!("{what} at byte {at}"),
            ciborium::de::Error::Semantic(None, what) => what,
            ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
        };
        bad(format!("not valid CBOR: {why}"))
    })?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "not valid CBOR: {} more byte(s) follow the pack",
            rest.len()
        )));
    }
    // The self-described CBOR tag (RFC 8949 §3.4.6) marks the payload as CBOR and nothing else.
    let pack = match pack {
        Value::Tag(55799, inner) => *inner,
        other => other,
    };
    let Value::Array(items) = pack else {
        return Err(shape(format!(
            "a SenML pack is an array, not {}",
            describe(&pack)
        )));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| read_record(i, item))
        .collect()
}

fn read_record(i: usize, item: Value) -> Result<Record<'static>, Rejection> {
    let Value::Map(entries) = item else {
        return Err(shape(format!(
            "record {i} is {}, not a map",
            describe(&item)
        )));
    };
    let mut r = Record::default();
    for (key, value) in entries {
        let label = match key {
            Value::Integer(n) => match Label::from_cbor(i128::from(n)) {
                Some(label) => label,
                None => continue, // an extension's integer label (§4.4, §11)
            },
            Value::Text(text) => {
                if let Some(label) = Label::from_json(&text) {
                    return Err(bad(format!(
                        "record {i} has the text label {text:?}; in CBOR that field's label is \
                         the integer {} (RFC 8428 §6)",
                        label.cbor()
                    )));
                }
                if text.ends_with('_') && r.unknown_mandatory.is_none() {
                    r.unknown_mandatory = Some(Cow::Owned(text));
                }
                continue;
            }
            other => {
                return Err(shape(format!(
                    "record {i} has a label that is {}; labels are integers or text",
                    describe(&other)
                )))
            }
        };
        let wrong = |value: &Value, expected: &str| {
            shape(format!(
                "record {i}: {label} ({}) must be {expected}, not {}",
                label.cbor(),
                describe(value)
            ))
        };
        macro_rules! set {
            ($field:ident, $read:expr) => {{
                if r.$field.is_some() {
                    return Err(shape(format!(
                        "record {i}: label {label} ({}) appears twice",
                        label.cbor()
                    )));
                }
                r.$field = Some($read);
            }};
        }
        let num = |value: Value| number(&value).ok_or_else(|| wrong(&value, "a number"));
        let text = |value: Value| match value {
            Value::Text(s) => Ok(Cow::Owned(s)),
            other => Err(wrong(&other, "a text string")),
        };
        match label {
            Label::BaseVersion => set!(
                bver,
                match value {
                    Value::Integer(n) if i128::from(n) >= 0 => i128::from(n) as f64,
                    other => {
                        return Err(bad(format!(
                            "record {i}: the SenML version (bver, -1) must be an unsigned \
                             integer in CBOR (RFC 8428 §6), not {}",
                            describe(&other)
                        )));
                    }
                }
            ),
            Label::BaseName => set!(bn, text(value)?),
            Label::BaseTime => set!(bt, num(value)?),
            Label::BaseUnit => set!(bu, text(value)?),
            Label::BaseValue => set!(bv, num(value)?),
            Label::BaseSum => set!(bs, num(value)?),
            Label::Name => set!(n, text(value)?),
            Label::Unit => set!(u, text(value)?),
            Label::Value => set!(v, num(value)?),
            Label::StringValue => set!(vs, text(value)?),
            Label::BooleanValue => set!(
                vb,
                match value {
                    Value::Bool(b) => b,
                    other => return Err(wrong(&other, "a boolean")),
                }
            ),
            Label::DataValue => set!(
                vd,
                match value {
                    Value::Bytes(b) => Cow::Owned(base64url(&b)),
                    other => return Err(wrong(&other, "a byte string")),
                }
            ),
            Label::Sum => set!(s, num(value)?),
            Label::Time => set!(t, num(value)?),
            Label::UpdateTime => set!(ut, num(value)?),
        }
    }
    Ok(r)
}

/// An integer, a float, or a decimal fraction (tag 4: [exponent, mantissa], the mantissa an
/// integer or a bignum), RFC 8428 §6.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(i128::from(*n) as f64),
        Value::Float(x) => Some(*x),
        Value::Tag(4, inner) => match inner.as_ref() {
            Value::Array(parts) if parts.len() == 2 => {
                let Value::Integer(e) = &parts[0] else {
                    return None;
                };
                // Beyond ±400 every double over- or underflows anyway.
                let e = i128::from(*e).clamp(-400, 400) as i32;
                let m = mantissa(&parts[1])?;
                // Dividing by an exact power of ten rounds once, so [-3, 1276020076001] is the
                // same double as the JSON number 1276020076.001.
                Some(if e < 0 {
                    m / 10f64.powi(-e)
                } else {
                    m * 10f64.powi(e)
                })
            }
            _ => None,
        },
        _ => None,
    }
}

fn mantissa(value: &Value) -> Option<f64> {
    let magnitude = |bytes: &[u8]| bytes.iter().fold(0.0, |m, b| m * 256.0 + f64::from(*b));
    match value {
        Value::Integer(n) => Some(i128::from(*n) as f64),
        Value::Tag(2, b) => match b.as_ref() {
            Value::Bytes(bytes) => Some(magnitude(bytes)),
            _ => None,
        },
        Value::Tag(3, b) => match b.as_ref() {
            Value::Bytes(bytes) => Some(-1.0 - magnitude(bytes)),
            _ => None,
        },
        _ => None,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::Float(_) => "a float",
        Value::Text(_) => "a text string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Tag(4, _) => "a malformed decimal fraction",
        Value::Tag(..) => "a tagged item",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unknown CBOR item",
    }
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(Reason::BadSenml, message)
}

fn shape(message: impl Into<String>) -> Rejection {
    Rejection::new(Reason::BadShape, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::senml::{arbitrary, decode_json};
    use crate::decode::{RawData, RawTime};

    const NOW: i64 = 1_700_000_000_123_456_789;

    fn cbor(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).expect("serialises");
        out
    }

    fn int(k: i64) -> Value {
        Value::Integer(k.into())
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn record(fields: &[(i64, Value)]) -> Value {
        Value::Map(fields.iter().map(|(k, v)| (int(*k), v.clone())).collect())
    }

    fn pack(records: &[Value]) -> Vec<u8> {
        cbor(&Value::Array(records.to_vec()))
    }

    fn hex(dump: &str) -> Vec<u8> {
        dump.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    /// RFC 8428 §6: the CBOR of the second example of §5.1.2, byte for byte (offsets dropped).
    const RFC_6_DUMP: &str = "
        87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a
        31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
        22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00
        67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
        66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06
        24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
        72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc
        cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
        f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e
        74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
        74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67
        63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
        33 33 33";

    const RFC_5_1_2_JSON: &str = r#"[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#;

    #[test]
    fn rfc8428_section_6_dump_decodes_like_its_json() {
        let bytes = hex(RFC_6_DUMP);
        assert_eq!(bytes.len(), 0xc3);
        let opts = SenmlOptions::default();
        let from_cbor = decode_cbor(&bytes, NOW, &opts).expect("valid");
        let from_json = decode_json(RFC_5_1_2_JSON.as_bytes(), NOW, &opts).expect("valid");
        assert_eq!(from_cbor, from_json);
        let self_described = [&[0xd9, 0xd9, 0xf7][..], &bytes].concat();
        assert_eq!(
            decode_cbor(&self_described, NOW, &opts),
            Ok(from_json.clone())
        );
        assert_eq!(from_cbor.len(), 6);
        assert_eq!(
            from_cbor[5].time,
            RawTime::UnixNs(1_276_020_076_001_000_000)
        );
        let last: Vec<(&str, &RawData<'_>)> = from_cbor[5]
            .values
            .iter()
            .map(|v| (v.name.as_ref(), &v.value))
            .collect();
        assert_eq!(
            last,
            vec![
                ("voltage", &RawData::Number(120.1)),
                ("current", &RawData::Number(1.7))
            ]
        );
        // 1.5 is a half-precision float in the dump.
        assert_eq!(from_cbor[3].values[0].value, RawData::Number(1.5));
    }

    #[test]
    fn rfc8428_5_1_5_in_cbor_carries_data_as_bytes() {
        let bytes = pack(&[
            record(&[
                (-2, text("urn:dev:ow:10e2073a01080063:")),
                (0, text("temp")),
                (1, text("Cel")),
                (2, Value::Float(23.1)),
            ]),
            record(&[(0, text("label")), (3, text("Machine Room"))]),
            record(&[(0, text("open")), (4, Value::Bool(false))]),
            record(&[
                (0, text("nfv-reader")),
                (8, Value::Bytes(b"hi \n".to_vec())),
            ]),
        ]);
        let json = br#"[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"#;
        let opts = SenmlOptions::default();
        let from_cbor = decode_cbor(&bytes, NOW, &opts).expect("valid");
        assert_eq!(from_cbor, decode_json(json, NOW, &opts).expect("valid"));
        assert_eq!(
            from_cbor[0].values[3].value,
            RawData::Data("aGkgCg".into()),
            "vd: the bytes as base64url without padding, as JSON writes them"
        );
    }

    #[test]
    fn rfc8428_5_1_6_in_cbor_names_two_sensors() {
        let bytes = pack(&[
            record(&[
                (-2, text("2001:db8::2/")),
                (-3, int(1_320_078_429)),
                (0, text("temperature")),
                (1, text("Cel")),
                (2, Value::Float(25.2)),
            ]),
            record(&[(0, text("humidity")), (1, text("%RH")), (2, int(30))]),
            record(&[
                (-2, text("2001:db8::1/")),
                (0, text("temperature")),
                (1, text("Cel")),
                (2, Value::Float(12.3)),
            ]),
            record(&[(0, text("humidity")), (1, text("%RH")), (2, int(67))]),
        ]);
        let json = br#"[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"#;
        let opts = SenmlOptions {
            sensor_from_name: true,
            strip_prefix: None,
        };
        let from_cbor = decode_cbor(&bytes, NOW, &opts).expect("valid");
        assert_eq!(from_cbor, decode_json(json, NOW, &opts).expect("valid"));
        let sensors: Vec<Option<&str>> = from_cbor
            .iter()
            .map(|p| p.ident.sensor_id.as_deref())
            .collect();
        assert_eq!(sensors, vec![Some("2001:db8::2"), Some("2001:db8::1")]);
    }

    #[test]
    fn rfc8428_5_1_3_in_cbor_resolves_like_its_json() {
        let json = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]"#;
        // Records translated label by label; numbers as CBOR writes them most compactly.
        let json_records: Vec<serde_json::Value> = serde_json::from_str(json).expect("JSON");
        let records: Vec<Value> = json_records
            .iter()
            .map(|r| {
                let fields: Vec<(i64, Value)> = r
                    .as_object()
                    .expect("object")
                    .iter()
                    .map(|(k, v)| {
                        let label = Label::from_json(k).expect("label").cbor().into();
                        let v = match v {
                            serde_json::Value::String(s) => text(s),
                            n if n.is_i64() => int(n.as_i64().expect("int")),
                            n => Value::Float(n.as_f64().expect("number")),
                        };
                        (label, v)
                    })
                    .collect();
                record(&fields)
            })
            .collect();
        let from_cbor = senml::resolve(read_pack(&pack(&records)).expect("valid"), NOW);
        let json_pack: Vec<Record<'_>> = serde_json::from_str(json).expect("JSON");
        let from_json = senml::resolve(json_pack, NOW).expect("valid");
        assert_eq!(from_json.len(), 13);
        assert_eq!(from_cbor, Ok(from_json));
    }

    #[test]
    fn numbers_may_be_integers_floats_or_decimal_fractions() {
        let decfrac = |e: i64, m: Value| Value::Tag(4, Box::new(Value::Array(vec![int(e), m])));
        let bytes = pack(&[
            record(&[
                (-2, text("m:")),
                (-3, decfrac(-3, int(1_276_020_076_001))),
                (0, text("a")),
                (2, decfrac(2, int(-15))),
            ]),
            record(&[
                (0, text("b")),
                (
                    2,
                    decfrac(-1, Value::Tag(2, Box::new(Value::Bytes(vec![1, 0])))),
                ),
            ]),
            record(&[
                (0, text("c")),
                (
                    2,
                    decfrac(0, Value::Tag(3, Box::new(Value::Bytes(vec![9])))),
                ),
            ]),
            record(&[(0, text("d")), (2, int(u64::MAX as i64 & 0xffff))]),
            record(&[(0, text("e")), (2, decfrac(i64::MIN, int(7)))]),
        ]);
        let pts = decode_cbor(&bytes, NOW, &SenmlOptions::default()).expect("valid");
        assert_eq!(pts[0].time, RawTime::UnixNs(1_276_020_076_001_000_000));
        let values: Vec<&RawData<'_>> = pts[0].values.iter().map(|v| &v.value).collect();
        assert_eq!(
            values,
            vec![
                &RawData::Number(-1500.0),
                &RawData::Number(25.6),
                &RawData::Number(-10.0),
                &RawData::Number(65535.0),
                &RawData::Number(0.0),
            ]
        );
        // The JSON number and the decimal fraction are the same double.
        assert_eq!(
            number(&decfrac(-3, int(1_276_020_076_001))),
            Some(1.276020076001e+09)
        );
    }

    #[test]
    fn extension_labels_are_ignored_unless_they_end_in_underscore() {
        let ok = cbor(&Value::Array(vec![Value::Map(vec![
            (int(0), text("x")),
            (int(2), int(1)),
            (int(7), int(60)),
            (int(9), text("integer label of an extension")),
            (int(-7), Value::Null),
            (text("foo"), Value::Array(vec![])),
        ])]));
        let pts = decode_cbor(&ok, NOW, &SenmlOptions::default()).expect("valid");
        assert_eq!(pts[0].values.len(), 1);
        let mandatory = cbor(&Value::Array(vec![Value::Map(vec![
            (int(0), text("x")),
            (int(2), int(1)),
            (text("foo_"), int(1)),
        ])]));
        let e = decode_cbor(&mandatory, NOW, &SenmlOptions::default()).expect_err("foo_");
        assert_eq!(e.reason, Reason::BadSenml);
        assert!(e.message.contains("\"foo_\""), "{}", e.message);
    }

    #[test]
    fn invalid_cbor_packs_are_refused_naming_the_problem() {
        let map = |entries: Vec<(Value, Value)>| cbor(&Value::Array(vec![Value::Map(entries)]));
        let x = || (int(0), text("x"));
        let mut trailing = pack(&[record(&[(0, text("x")), (2, int(1))])]);
        trailing.push(0x00);
        let cases: Vec<(Vec<u8>, Reason, &str)> = vec![
            (vec![], Reason::EmptyPayload, "the payload is empty"),
            (vec![0x82, 0x01], Reason::BadSenml, "not valid CBOR: the payload ends inside a data item"),
            (vec![0x1c], Reason::BadSenml, "not valid CBOR"),
            (trailing, Reason::BadSenml, "not valid CBOR: 1 more byte(s) follow the pack"),
            (cbor(&Value::Map(vec![])), Reason::BadShape, "a SenML pack is an array, not a map"),
            (cbor(&Value::Array(vec![])), Reason::BadSenml, "the pack has no records"),
            (cbor(&Value::Array(vec![int(1)])), Reason::BadShape, "record 0 is an integer, not a map"),
            (map(vec![x(), (text("v"), int(1))]), Reason::BadSenml, "record 0 has the text label \"v\"; in CBOR that field's label is the integer 2 (RFC 8428 §6)"),
            (map(vec![x(), (text("bn"), text("a:"))]), Reason::BadSenml, "the integer -2"),
            (map(vec![x(), (Value::Float(2.0), int(1))]), Reason::BadShape, "record 0 has a label that is a float; labels are integers or text"),
            (map(vec![x(), (int(2), int(1)), (int(2), int(2))]), Reason::BadShape, "record 0: label v (2) appears twice"),
            (map(vec![x(), (int(2), text("1"))]), Reason::BadShape, "record 0: v (2) must be a number, not a text string"),
            (map(vec![x(), (int(2), Value::Tag(4, Box::new(int(1))))]), Reason::BadShape, "must be a number, not a malformed decimal fraction"),
            (map(vec![x(), (int(2), Value::Tag(1, Box::new(int(1))))]), Reason::BadShape, "must be a number, not a tagged item"),
            (map(vec![x(), (int(4), int(1))]), Reason::BadShape, "record 0: vb (4) must be a boolean, not an integer"),
            (map(vec![x(), (int(8), text("aGkgCg"))]), Reason::BadShape, "record 0: vd (8) must be a byte string, not a text string"),
            (map(vec![(int(0), int(5)), (int(2), int(1))]), Reason::BadShape, "record 0: n (0) must be a text string, not an integer"),
            (map(vec![x(), (int(2), int(1)), (int(-1), Value::Float(5.0))]), Reason::BadSenml, "the SenML version (bver, -1) must be an unsigned integer in CBOR (RFC 8428 §6), not a float"),
            (map(vec![x(), (int(2), int(1)), (int(-1), int(-5))]), Reason::BadSenml, "must be an unsigned integer"),
            (map(vec![x(), (int(2), int(1)), (int(-1), int(11))]), Reason::BadSenml, "record 0 needs SenML version 11"),
            (map(vec![x(), (int(2), Value::Float(f64::NAN))]), Reason::BadValue, "x: the value NaN is not a finite number"),
            (map(vec![x(), (int(2), int(1)), (int(6), Value::Float(f64::INFINITY))]), Reason::BadTimestamp, "record 0: the time inf s is not a finite number"),
        ];
        for (bytes, reason, needle) in cases {
            let e = decode_cbor(&bytes, NOW, &SenmlOptions::default()).expect_err(needle);
            assert_eq!(e.reason, reason, "{needle}: {}", e.message);
            assert!(
                e.message.contains(needle),
                "{:?} lacks {needle:?}",
                e.message
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1024))]
        #[test]
        fn json_and_cbor_of_one_pack_decode_identically(
            pack in arbitrary::pack(),
            received_ns in 1_600_000_000_000_000_000i64..1_900_000_000_000_000_000,
            sensor_from_name in proptest::bool::ANY,
            strip in proptest::bool::ANY,
        ) {
            let opts = SenmlOptions {
                sensor_from_name,
                strip_prefix: strip.then(|| "urn:dev:mac:".to_owned()),
            };
            let json = arbitrary::json(&pack);
            let cbor = arbitrary::cbor(&pack);
            let from_json = decode_json(&json, received_ns, &opts);
            let from_cbor = decode_cbor(&cbor, received_ns, &opts);
            proptest::prop_assert_eq!(&from_json, &from_cbor);
            if let Ok(points) = from_json {
                let times: Vec<RawTime> = points.iter().map(|p| p.time).collect();
                let ordered = times.windows(2).all(|w| match (w[0], w[1]) {
                    (RawTime::UnixNs(a), RawTime::UnixNs(b)) => a <= b,
                    _ => false,
                });
                proptest::prop_assert!(ordered, "times out of order: {:?}", times);
            }
        }
    }
}
