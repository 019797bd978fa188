//! The default JSON object: `{"ts": <RFC 3339 | epoch ms>, "<metric>": <number>, ...,
//! "units": {"<metric>": "<unit>"}}`. Decoded without an intermediate tree: the plain common
//! case by a small reader of its own ([`read_plain`]), anything else by a borrowing serde visitor,
//! which also words the errors. Both read into the same [`Object`], so they cannot disagree on
//! what an object means.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{json_rejection, RawData, RawPoint, RawTime, RawValue, Text};
use crate::model::{Reason, Rejection};

/// Decodes one JSON object into one point.
pub fn decode_object(payload: &[u8]) -> Result<RawPoint<'_>, Rejection> {
    let obj = match read_plain(payload) {
        Some(obj) => obj,
        None => serde_json::from_slice(payload).map_err(|e| json_rejection(e, "JSON object"))?,
    };
    finish(obj)
}

/// The checks that need the whole object, in the order they are reported.
fn finish(obj: Object<'_>) -> Result<RawPoint<'_>, Rejection> {
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

impl<'a> Object<'a> {
    fn new() -> Self {
        Object {
            ts: None,
            values: Vec::with_capacity(8),
            refused: None,
            pending_units: Vec::new(),
        }
    }

    /// A member other than `ts` and `units`.
    fn metric(&mut self, name: Cow<'a, str>, field: Field<'a>) {
        if self.refused.is_none() {
            match metric_value(name, field, &self.values) {
                Ok(v) => self.values.push(v),
                Err(e) => self.refused = Some(e),
            }
        }
    }

    /// `units` begins: a later `units` replaces an earlier one.
    fn units(&mut self) {
        for v in &mut self.values {
            v.unit = None;
        }
        self.pending_units.clear();
    }

    /// One member of `units`: to its metric if that was read already, else it waits.
    fn unit(&mut self, name: Cow<'a, str>, unit: Cow<'a, str>) {
        match self.values.iter_mut().find(|v| v.name == name) {
            Some(v) => v.unit = Some(unit),
            None => self.pending_units.push((name, unit)),
        }
    }
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
                let mut obj = Object::new();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match key.as_ref() {
                        "ts" => {
                            if obj.ts.is_some() {
                                return Err(de::Error::custom("ts is given twice"));
                            }
                            obj.ts = Some(map.next_value()?);
                        }
                        "units" => {
                            obj.units();
                            map.next_value_seed(Units(&mut obj))?;
                        }
                        _ => {
                            let f: Field<'de> = map.next_value()?;
                            obj.metric(key, f);
                        }
                    }
                }
                Ok(obj)
            }
        }
        d.deserialize_map(V)
    }
}

/// The members of `units`, read into the object.
struct Units<'o, 'a>(&'o mut Object<'a>);

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
            self.0.unit(name, unit);
        }
        Ok(())
    }
}

/// Reads the common case of the object without serde: names and texts without escapes, numbers
/// of at most 15 digits without an exponent, booleans, and `units` as an object of texts. For
/// anything else — other values, longer numbers, escapes, invalid JSON — it returns `None` and
/// serde reads the payload (and words the error). What it returns is what serde would read:
/// every number it takes is exact as an integer (< 2^53) divided by an exact power of ten, one
/// correctly rounded division, as serde_json computes it.
fn read_plain(payload: &[u8]) -> Option<Object<'_>> {
    let mut r = Reader {
        text: std::str::from_utf8(payload).ok()?,
        at: 0,
    };
    let mut obj = Object::new();
    r.open(b'{')?;
    if !r.close(b'}') {
        loop {
            let key = r.string()?;
            r.colon()?;
            match key {
                "ts" if obj.ts.is_some() => return None,
                "ts" => {
                    obj.ts = Some(match r.peek()? {
                        b'"' => Field::Text(Cow::Borrowed(r.string()?)),
                        _ => Field::Number(r.number()?),
                    })
                }
                "units" => {
                    obj.units();
                    r.open(b'{')?;
                    if !r.close(b'}') {
                        loop {
                            let name = r.string()?;
                            r.colon()?;
                            let unit = r.string()?;
                            obj.unit(Cow::Borrowed(name), Cow::Borrowed(unit));
                            if !r.next_member()? {
                                break;
                            }
                        }
                    }
                }
                _ => {
                    let field = match r.peek()? {
                        b't' => r.word("true", Field::Bool(true))?,
                        b'f' => r.word("false", Field::Bool(false))?,
                        _ => Field::Number(r.number()?),
                    };
                    obj.metric(Cow::Borrowed(key), field);
                }
            }
            if !r.next_member()? {
                break;
            }
        }
    }
    r.blanks();
    (r.at == r.text.len()).then_some(obj)
}

/// A cursor over the payload for [`read_plain`]; every method returns `None` where the payload
/// leaves the common case.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    /// Exact powers of ten, for numbers of at most 15 digits.
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// JSON's whitespace.
    fn blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `b` (after blanks) and the blanks after it.
    fn open(&mut self, b: u8) -> Option<()> {
        self.blanks();
        (self.peek()? == b).then(|| {
            self.at += 1;
            self.blanks();
        })
    }

    /// Whether `b` comes next (after blanks), taking it if so.
    fn close(&mut self, b: u8) -> bool {
        self.blanks();
        let yes = self.peek() == Some(b);
        self.at += usize::from(yes);
        yes
    }

    fn colon(&mut self) -> Option<()> {
        self.open(b':')
    }

    /// After a member: `,` (another follows) or `}` (the object ends).
    fn next_member(&mut self) -> Option<bool> {
        if self.close(b',') {
            self.blanks();
            Some(true)
        } else {
            self.close(b'}').then_some(false)
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let len = self.text.as_bytes()[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        self.at = start + len;
        if self.peek()? != b'"' {
            return None;
        }
        self.at += 1;
        self.text.get(start..start + len)
    }

    /// `true` or `false`, as JSON spells them.
    fn word(&mut self, word: &str, field: Field<'a>) -> Option<Field<'a>> {
        self.text.get(self.at..)?.starts_with(word).then(|| {
            self.at += word.len();
            field
        })
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?` with at most 15 digits in all, as serde_json computes it:
    /// the digits as an integer, divided by the power of ten of the fraction.
    fn number(&mut self) -> Option<f64> {
        let negative = self.peek()? == b'-';
        self.at += usize::from(negative);
        let mut digits: u64 = 0;
        let mut count = 0;
        let mut take_digits = |r: &mut Self| {
            let start = r.at;
            while let Some(d @ b'0'..=b'9') = r.peek() {
                digits = digits * 10 + u64::from(d - b'0');
                r.at += 1;
                count += 1;
                if count > 15 {
                    return None;
                }
            }
            Some(r.at - start)
        };
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                take_digits(self)?;
            }
            _ => return None,
        }
        let mut fraction = 0;
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = take_digits(self)?;
            if fraction == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            return None;
        }
        let v = if fraction == 0 {
            digits as f64
        } else {
            digits as f64 / Self::POW10[fraction]
        };
        Some(if negative { -v } else { v })
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
    use proptest::prelude::*;

    fn by_serde(payload: &[u8]) -> Result<RawPoint<'_>, Rejection> {
        let obj: Object<'_> =
            serde_json::from_slice(payload).map_err(|e| json_rejection(e, "JSON object"))?;
        finish(obj)
    }

    fn bits(p: &RawPoint<'_>) -> Vec<u64> {
        p.values
            .iter()
            .map(|v| match v.value {
                RawData::Number(x) => x.to_bits(),
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn the_plain_reader_reads_what_serde_reads() {
        let payloads: &[&str] = &[
            r#"{"ts":1795168800000,"pm2_5":12.5,"pm10":20.1,"no2":21,"temperature":265.15,"units":{"no2":"ppb","temperature":"K"}}"#,
            " {\r\n \"ts\" : \"2026-01-15T08:00:00+05:00\" ,\t\"pm2_5\":0.0123 , \"units\" : { } }\n",
            r#"{"units":{"pm2_5":"µg/m³"},"pm2_5":-0,"pm10":-0.0,"co":0.000000000000001,"o3":999999999999999}"#,
            r#"{"leak_alarm":true,"tamper_alarm":false,"volume":-12.50,"flow":0}"#,
            r#"{"Алматы":1,"pm2_5":1,"units":{"pm2_5":"a"},"units":{"pm2_5":"b","pm2_5":"c"}}"#,
            r#"{}"#,
            // Refused after reading, the same way: a bad ts, a metric twice, a unit naming nothing.
            r#"{"ts":"yesterday","pm2_5":1}"#,
            r#"{"ts":-5,"pm2_5":1}"#,
            r#"{"pm2_5":1,"pm2_5":2}"#,
            r#"{"pm2_5":1,"units":{"pm10":"ug/m3"}}"#,
        ];
        for p in payloads {
            let plain = read_plain(p.as_bytes()).unwrap_or_else(|| panic!("not plain: {p}"));
            let (a, b) = (finish(plain), by_serde(p.as_bytes()));
            assert_eq!(a, b, "{p}");
            if let (Ok(a), Ok(b)) = (&a, &b) {
                assert_eq!(bits(a), bits(b), "{p}");
            }
        }
    }

    #[test]
    fn the_plain_reader_leaves_the_rest_to_serde() {
        let payloads: &[&[u8]] = &[
            br#"{"pm2_5":1e3}"#,
            br#"{"pm2_5":1234567890123456}"#,
            br#"{"pm2_5":0.1234567890123456}"#,
            br#"{"pm2_5":012}"#,
            br#"{"pm2_5":1.}"#,
            br#"{"pm2_5":.5}"#,
            br#"{"pm2_5":+1}"#,
            br#"{"pm2_5":-}"#,
            br#"{"pm2_5":null}"#,
            br#"{"pm2_5":"1"}"#,
            br#"{"pm2_5":[1]}"#,
            br#"{"pm2_5":{"v":1}}"#,
            br#"{"pm2_5":truex}"#,
            br#"{"pm2\u005f5":1}"#,
            br#"{"units":{"pm2_5":"mg\/m3"},"pm2_5":1}"#,
            br#"{"units":"K","pm2_5":1}"#,
            br#"{"ts":1,"ts":2,"pm2_5":1}"#,
            br#"{"ts":true,"pm2_5":1}"#,
            br#"{"pm2_5":1,}"#,
            br#"{"pm2_5":1} x"#,
            br#"{"pm2_5":1"#,
            br#"[{"pm2_5":1}]"#,
            b"{\"pm2_5\x01\":1}",
            b"{\"pm2_5\":1,\"x\xc3\x28\":2}",
        ];
        for p in payloads {
            let shown = String::from_utf8_lossy(p);
            assert!(read_plain(p).is_none(), "{shown}");
        }
    }

    proptest! {
        #[test]
        fn plain_numbers_are_serde_json_numbers(
            negative in any::<bool>(),
            int in "0|[1-9][0-9]{0,16}",
            fraction in proptest::option::of("[0-9]{1,17}"),
        ) {
            let number = format!(
                "{}{int}{}",
                if negative { "-" } else { "" },
                fraction.map(|f| format!(".{f}")).unwrap_or_default()
            );
            let payload = format!(r#"{{"pm2_5":{number}}}"#);
            let serde = by_serde(payload.as_bytes()).expect("valid JSON");
            if let Some(plain) = read_plain(payload.as_bytes()) {
                let plain = finish(plain).expect("valid JSON");
                prop_assert_eq!(bits(&plain), bits(&serde), "{}", number);
                // As a time, too (refused or not, with the same words).
                let payload = format!(r#"{{"ts":{number},"pm2_5":1}}"#);
                let plain = read_plain(payload.as_bytes()).map(finish);
                prop_assert_eq!(plain, Some(by_serde(payload.as_bytes())), "{}", number);
            } else {
                let digits = number.bytes().filter(u8::is_ascii_digit).count();
                let plain_digits = if int == "0" { digits - 1 } else { digits };
                prop_assert!(plain_digits > 15, "{} left to serde", number);
            }
        }
    }

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
