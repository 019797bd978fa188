//! The spool record of one pipeline batch: its readings, dead letters and indicator values in a
//! compact binary form. Metrics are stored by name (not by catalog position), so a record written
//! by one release reads back in the next even if the catalog grew. Pure: bytes in, bytes out.
//!
//! ```text
//! version u8 (1 or 2) | readings u32 | reading* | dead letters u32 | dead letter*
//!                     | (version 2 only) indicators u32 | indicator*
//! reading:     kind u8 | city str16 | district str16 | sensor_id str16 | time_ns i64
//!              | time source u8 (0 device, 1 receive) | values u8 | (metric str8, value f64)*
//! dead letter: received_ns i64 | reason str8 | topic str32 | payload bytes32 | message str32
//! indicator:   indicator str16 | sphere str8 | scope str8 | city str16 | district str16
//!              | sensor_id str16 | component str16 | window str16 | window_start_ns i64
//!              | window_end_ns i64 | value (u8 0 | u8 1, f64) | unit str16
//!              | level (u8 0 | u8 1, str16) | have u32 | expected u32 | completeness unit str16
//!              | reference str16 | computed_ns i64 | details u16
//!              | (name str16, (u8 0, f64) | (u8 1, str32))*
//! ```
//! `str8`, `str16`: u8 / u16 length + UTF-8; `str32`, `bytes32`: u32 length + bytes. Integers
//! little-endian. Spheres and scopes go by name, like metrics and reasons.
//!
//! A batch without indicator values is written as version 1, byte for byte what the release
//! before indicators wrote (so a rollback still reads the spool); version 2 adds the indicator
//! section. Both versions decode.

use crate::indicators::{Completeness, Detail, IndicatorValue, Scope};
use crate::model::{DeadLetter, Kind, Reading, Reason, Rejection, SensorRef, Sphere, TimeSource};
use crate::normalize::catalog;
use crate::pipeline::Batch;

/// Records without indicator values.
const VERSION_READINGS: u8 = 1;
/// Records with an indicator section.
const VERSION_INDICATORS: u8 = 2;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("spool record: {0}")]
pub struct CodecError(pub String);

fn err(what: impl Into<String>) -> CodecError {
    CodecError(what.into())
}

/// Metric names (the catalog's, all short) and reasons.
fn put_str8(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= 255, "{s:?} is longer than a str8");
    let end = s.len().min(255);
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Identities (city, district, sensor id): nothing limits their length but the MQTT topic
/// (65,535 bytes), so they take a 16-bit length and are never cut.
fn put_str16(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the record of `batch` (its seq and acks are not part of it) to `out`.
pub fn encode(batch: &Batch, out: &mut Vec<u8>) {
    let with_indicators = !batch.indicators.is_empty();
    out.push(if with_indicators {
        VERSION_INDICATORS
    } else {
        VERSION_READINGS
    });
    out.extend_from_slice(&(batch.readings.len() as u32).to_le_bytes());
    for r in &batch.readings {
        let s = &r.sensor;
        out.push(kind_code(s.kind));
        put_str16(out, &s.city);
        put_str16(out, &s.district);
        put_str16(out, &s.sensor_id);
        out.extend_from_slice(&r.time_ns.to_le_bytes());
        out.push(match r.time_source {
            TimeSource::Device => 0,
            TimeSource::Receive => 1,
        });
        out.push(r.values.len().min(255) as u8);
        for (def, v) in r.values.iter().take(255) {
            put_str8(out, def.name);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&(batch.dead_letters.len() as u32).to_le_bytes());
    for d in &batch.dead_letters {
        out.extend_from_slice(&d.received_ns.to_le_bytes());
        put_str8(out, d.rejection.reason.as_str());
        put_bytes32(out, d.topic.as_bytes());
        put_bytes32(out, &d.payload);
        put_bytes32(out, d.rejection.message.as_bytes());
    }
    if with_indicators {
        out.extend_from_slice(&(batch.indicators.len() as u32).to_le_bytes());
        for v in &batch.indicators {
            encode_indicator(v, out);
        }
    }
}

fn encode_indicator(v: &IndicatorValue, out: &mut Vec<u8>) {
    put_str16(out, &v.indicator);
    put_str8(out, v.sphere.as_str());
    put_str8(out, v.scope.as_str());
    for s in [&v.city, &v.district, &v.sensor_id, &v.component, &v.window] {
        put_str16(out, s);
    }
    out.extend_from_slice(&v.window_start_ns.to_le_bytes());
    out.extend_from_slice(&v.window_end_ns.to_le_bytes());
    match v.value {
        Some(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        None => out.push(0),
    }
    put_str16(out, &v.unit);
    match &v.level {
        Some(l) => {
            out.push(1);
            put_str16(out, l);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&v.completeness.have.to_le_bytes());
    out.extend_from_slice(&v.completeness.expected.to_le_bytes());
    put_str16(out, &v.completeness.unit);
    put_str16(out, &v.reference);
    out.extend_from_slice(&v.computed_ns.to_le_bytes());
    let n = v.details.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    for (name, d) in v.details.iter().take(n) {
        put_str16(out, name);
        match d {
            Detail::Number(x) => {
                out.push(0);
                out.extend_from_slice(&x.to_le_bytes());
            }
            Detail::Text(t) => {
                out.push(1);
                put_bytes32(out, t.as_bytes());
            }
        }
    }
}

fn kind_code(k: Kind) -> u8 {
    Kind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u8
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| err(format!("cut short in {what}")))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, CodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str16(&mut self, what: &str) -> Result<&'a str, CodecError> {
        let n = self.u16(what)? as usize;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| err(format!("{what} is not UTF-8")))
    }
    fn str8(&mut self, what: &str) -> Result<&'a str, CodecError> {
        let n = self.u8(what)? as usize;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| err(format!("{what} is not UTF-8")))
    }
    fn bytes32(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    fn str32(&mut self, what: &str) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes32(what)?).map_err(|_| err(format!("{what} is not UTF-8")))
    }
    /// A presence flag: 0 absent, 1 present.
    fn flag(&mut self, what: &str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(err(format!("{what}: flag {x} is neither 0 nor 1"))),
        }
    }
}

/// Decodes a record into a batch with sequence number `seq` (no acks: they belonged to the
/// connection that delivered the messages, and were sent when the record was committed).
pub fn decode(seq: u64, bytes: &[u8]) -> Result<Batch, CodecError> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.u8("the version")?;
    if version != VERSION_READINGS && version != VERSION_INDICATORS {
        return Err(err(format!(
            "version {version}; this Qala reads versions {VERSION_READINGS} and {VERSION_INDICATORS}"
        )));
    }
    let n = c.u32("the reading count")? as usize;
    // Each reading takes at least 15 bytes: a count beyond that is damage, not a reason to
    // reserve gigabytes.
    let mut readings = Vec::with_capacity(n.min(bytes.len() / 15));
    for _ in 0..n {
        let code = c.u8("a kind")? as usize;
        let kind = *Kind::ALL
            .get(code)
            .ok_or_else(|| err(format!("unknown kind code {code}")))?;
        let city = c.str16("a city")?;
        let district = c.str16("a district")?;
        let sensor_id = c.str16("a sensor id")?;
        let time_ns = c.u64("a time")? as i64;
        let time_source = match c.u8("a time source")? {
            0 => TimeSource::Device,
            1 => TimeSource::Receive,
            x => return Err(err(format!("unknown time source {x}"))),
        };
        let nv = c.u8("a value count")? as usize;
        let mut values = Vec::with_capacity(nv);
        for _ in 0..nv {
            let name = c.str8("a metric")?;
            let v = f64::from_bits(c.u64("a value")?);
            let def = catalog::lookup(kind, name)
                .ok_or_else(|| err(format!("{name} is not a metric of {kind} sensors")))?;
            values.push((def, v));
        }
        readings.push(Reading {
            sensor: SensorRef {
                city: city.into(),
                district: district.into(),
                kind,
                sensor_id: sensor_id.into(),
            },
            time_ns,
            time_source,
            values,
        });
    }
    let n = c.u32("the dead letter count")? as usize;
    let mut dead_letters = Vec::with_capacity(n.min(bytes.len() / 21));
    for _ in 0..n {
        let received_ns = c.u64("a receive time")? as i64;
        let reason_text = c.str8("a reason")?;
        let reason = Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == reason_text)
            .ok_or_else(|| err(format!("unknown reason {reason_text:?}")))?;
        let topic = String::from_utf8_lossy(c.bytes32("a topic")?).into_owned();
        let payload = bytes::Bytes::copy_from_slice(c.bytes32("a payload")?);
        let message = String::from_utf8_lossy(c.bytes32("a message")?).into_owned();
        dead_letters.push(DeadLetter {
            received_ns,
            topic,
            payload,
            rejection: Rejection::new(reason, message),
        });
    }
    let mut indicators = Vec::new();
    if version == VERSION_INDICATORS {
        let n = c.u32("the indicator count")? as usize;
        // Each value takes at least 56 bytes (see the layout).
        indicators.reserve(n.min(bytes.len() / 56));
        for _ in 0..n {
            indicators.push(decode_indicator(&mut c)?);
        }
    }
    if c.at != bytes.len() {
        return Err(err(format!(
            "{} bytes left over after the last section",
            bytes.len() - c.at
        )));
    }
    Ok(Batch {
        seq,
        readings,
        dead_letters,
        indicators,
        acks: Vec::new(),
    })
}

fn decode_indicator(c: &mut Cursor<'_>) -> Result<IndicatorValue, CodecError> {
    let indicator = c.str16("an indicator id")?.to_owned();
    let sphere_text = c.str8("a sphere")?;
    let sphere = Sphere::ALL
        .into_iter()
        .find(|s| s.as_str() == sphere_text)
        .ok_or_else(|| err(format!("unknown sphere {sphere_text:?}")))?;
    let scope_text = c.str8("a scope")?;
    let scope =
        Scope::parse(scope_text).ok_or_else(|| err(format!("unknown scope {scope_text:?}")))?;
    let city = c.str16("a city")?.to_owned();
    let district = c.str16("a district")?.to_owned();
    let sensor_id = c.str16("a sensor id")?.to_owned();
    let component = c.str16("a component")?.to_owned();
    let window = c.str16("a window")?.to_owned();
    let window_start_ns = c.u64("a window start")? as i64;
    let window_end_ns = c.u64("a window end")? as i64;
    let value = if c.flag("the value flag")? {
        Some(f64::from_bits(c.u64("a value")?))
    } else {
        None
    };
    let unit = c.str16("a unit")?.to_owned();
    let level = if c.flag("the level flag")? {
        Some(c.str16("a level")?.to_owned())
    } else {
        None
    };
    let have = c.u32("completeness (have)")?;
    let expected = c.u32("completeness (expected)")?;
    let completeness = Completeness::new(have, expected, c.str16("a completeness unit")?);
    let reference = c.str16("a reference")?.to_owned();
    let computed_ns = c.u64("a computed time")? as i64;
    let n = c.u16("the detail count")? as usize;
    let mut details = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.str16("a detail name")?.to_owned();
        let detail = match c.u8("a detail type")? {
            0 => Detail::Number(f64::from_bits(c.u64("a detail number")?)),
            1 => Detail::Text(c.str32("a detail text")?.to_owned()),
            x => return Err(err(format!("unknown detail type {x}"))),
        };
        details.push((name, detail));
    }
    Ok(IndicatorValue {
        indicator,
        sphere,
        scope,
        city,
        district,
        sensor_id,
        component,
        window,
        window_start_ns,
        window_end_ns,
        value,
        unit,
        level,
        completeness,
        reference,
        details,
        computed_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let def = |k, n| catalog::lookup(k, n).expect("metric");
        Batch {
            seq: 0,
            readings: vec![
                Reading {
                    sensor: SensorRef {
                        city: "almaty".into(),
                        district: "medeu".into(),
                        kind: Kind::Air,
                        sensor_id: "st-001 ü".into(),
                    },
                    time_ns: 1_795_168_800_123_456_789,
                    time_source: TimeSource::Device,
                    values: vec![
                        (def(Kind::Air, "pm2_5"), 12.5),
                        (def(Kind::Air, "no2"), -0.0),
                    ],
                },
                Reading {
                    sensor: SensorRef {
                        city: "astana".into(),
                        district: "esil".into(),
                        kind: Kind::Water,
                        sensor_id: "m-1".into(),
                    },
                    time_ns: -5,
                    time_source: TimeSource::Receive,
                    values: vec![(def(Kind::Water, "volume"), 1e300)],
                },
            ],
            dead_letters: vec![DeadLetter {
                received_ns: 42,
                topic: "city/x/y/air/z".into(),
                payload: bytes::Bytes::from_static(b"\xff\x00not json"),
                rejection: Rejection::new(Reason::NotJson, "expected a JSON object"),
            }],
            ..Batch::default()
        }
    }

    /// Values as the engine emits them: valid with a level and details of both types (a
    /// negative zero among them), invalid (no value, no level), unicode everywhere a string goes.
    fn indicators() -> Vec<IndicatorValue> {
        let mut aqi = crate::indicators::value::tests::aqi_daily();
        aqi.details.insert(1, ("pm10".into(), Detail::Number(-0.0)));
        let invalid = IndicatorValue {
            indicator: "pdk_multiple".into(),
            sphere: Sphere::Ecology,
            scope: Scope::Sensor,
            city: "Алматы".into(),
            district: "Медеу ауданы".into(),
            sensor_id: "станция-1 ü".into(),
            component: "pm2_5".into(),
            window: "1h".into(),
            window_start_ns: -3_600_000_000_000,
            window_end_ns: 0,
            value: None,
            unit: "ПДК".into(),
            level: None,
            completeness: Completeness::new(1, 4, "points"),
            reference: "Приказ № ҚР ДСМ-32, 2022 — ПДК м.р.".into(),
            details: vec![("примечание".into(), Detail::Text("мало данных 🙁".into()))],
            computed_ns: 7,
        };
        vec![aqi, invalid]
    }
    #[test]
    fn indicator_values_round_trip_exactly() {
        let mut b = sample();
        b.indicators = indicators();
        let mut out = Vec::new();
        encode(&b, &mut out);
        assert_eq!(out[0], 2, "a record with indicator values is version 2");
        let back = decode(9, &out).expect("decodes");
        assert_eq!(back.readings, b.readings);
        assert_eq!(back.dead_letters, b.dead_letters);
        assert_eq!(back.indicators, b.indicators);
        assert_eq!(back.indicators[1].value, None);
        assert_eq!(back.indicators[1].level, None);
        match &back.indicators[0].details[1].1 {
            Detail::Number(x) => assert!(x.is_sign_negative()),
            other => panic!("{other:?}"),
        }
        // Only indicator values, as the engine appends them.
        let only = Batch {
            indicators: indicators(),
            ..Batch::default()
        };
        out.clear();
        encode(&only, &mut out);
        let back = decode(1, &out).expect("decodes");
        assert!(back.readings.is_empty() && back.dead_letters.is_empty());
        assert_eq!(back.indicators, only.indicators);
    }

    #[test]
    fn every_cut_of_an_indicator_record_is_refused_not_misread() {
        let b = Batch {
            indicators: indicators(),
            ..Batch::default()
        };
        let mut out = Vec::new();
        encode(&b, &mut out);
        for cut in 0..out.len() {
            assert!(decode(1, &out[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(decode(1, &longer).is_err());
    }

    #[test]
    fn bad_flags_spheres_and_detail_types_are_refused_by_name() {
        let v = IndicatorValue {
            indicator: "x".into(),
            sphere: Sphere::Safety,
            scope: Scope::City,
            city: "c".into(),
            district: String::new(),
            sensor_id: String::new(),
            component: String::new(),
            window: "1h".into(),
            window_start_ns: 0,
            window_end_ns: 0,
            value: None,
            unit: String::new(),
            level: None,
            completeness: Completeness::new(0, 0, "devices"),
            reference: String::new(),
            details: vec![("d".into(), Detail::Number(1.0))],
            computed_ns: 0,
        };
        let encoded = |v: &IndicatorValue| {
            let mut out = Vec::new();
            encode(
                &Batch {
                    indicators: vec![v.clone()],
                    ..Batch::default()
                },
                &mut out,
            );
            out
        };
        let out = encoded(&v);
        // version, 2 counts, indicator count, "x", then the sphere "safety" as a str8.
        let sphere_at = 1 + 4 + 4 + 4 + 3;
        assert_eq!(&out[sphere_at..sphere_at + 7], b"\x06safety");
        // The error of `out` with byte `at` set to `to`.
        let refusal = |at: usize, to: u8| {
            let mut bad = out.clone();
            bad[at] = to;
            decode(1, &bad).err().map(|e| e.0)
        };
        assert_eq!(
            refusal(sphere_at + 1, b'S'),
            Some("unknown sphere \"Safety\"".into())
        );
        // The scope "city" (str8), then city "c", district, sensor id, component, window "1h"
        // (str16 each) and the two window times.
        let value_flag = sphere_at + 7 + 5 + 3 + 2 + 2 + 2 + 4 + 16;
        assert_eq!(out[value_flag], 0);
        assert_eq!(
            refusal(value_flag, 2),
            Some("the value flag: flag 2 is neither 0 nor 1".into())
        );
        let detail_type = out.len() - 9;
        assert_eq!(out[detail_type], 0);
        assert_eq!(
            refusal(detail_type, 5),
            Some("unknown detail type 5".into())
        );
    }

    /// A record as the release before indicator values wrote it (version 1): one air reading
    /// and no dead letters. It must read back, with no indicator values.
    #[test]
    fn a_stored_version_1_record_still_decodes() {
        #[rustfmt::skip]
        let v1: &[u8] = &[
            1,                      // version
            1, 0, 0, 0,             // one reading
            0,                      // kind: air
            1, 0, b'a',             // city "a"
            1, 0, b'b',             // district "b"
            2, 0, b's', b'1',       // sensor id "s1"
            0x00, 0x00, 0xbb, 0x3e, 0xc5, 0xd3, 0x2c, 0x18, // 1_742_000_000_000_000_000 ns
            0,                      // device time
            1,                      // one value
            5, b'p', b'm', b'2', b'_', b'5',
            0, 0, 0, 0, 0, 0, 0x29, 0x40, // 12.5
            0, 0, 0, 0,             // no dead letters
        ];
        let b = decode(4, v1).expect("a version 1 record decodes");
        assert_eq!(b.seq, 4);
        assert!(b.indicators.is_empty() && b.dead_letters.is_empty());
        assert_eq!(b.readings.len(), 1);
        let r = &b.readings[0];
        assert_eq!(
            (
                r.sensor.kind,
                r.sensor.city.as_str(),
                r.sensor.district.as_str(),
                r.sensor.sensor_id.as_str()
            ),
            (Kind::Air, "a", "b", "s1")
        );
        assert_eq!(r.time_ns, 1_742_000_000_000_000_000);
        assert_eq!(r.values.len(), 1);
        assert_eq!((r.values[0].0.name, r.values[0].1), ("pm2_5", 12.5));
        // And this release writes the same bytes for the same batch.
        let mut out = Vec::new();
        encode(&b, &mut out);
        assert_eq!(out, v1);
    }

    #[test]
    fn a_batch_round_trips_exactly() {
        let b = sample();
        let mut out = Vec::new();
        encode(&b, &mut out);
        let back = decode(7, &out).expect("decodes");
        assert_eq!(back.seq, 7);
        assert_eq!(back.readings, b.readings);
        assert_eq!(back.dead_letters, b.dead_letters);
        // -0.0 keeps its sign bit; the comparison above would not tell.
        assert!(back.readings[0].values[1].1.is_sign_negative());
    }

    #[test]
    fn every_cut_of_a_record_is_refused_not_misread() {
        let mut out = Vec::new();
        encode(&sample(), &mut out);
        for cut in 0..out.len() {
            assert!(decode(1, &out[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(decode(1, &longer).is_err());
        let mut other = out.clone();
        other[0] = 9;
        assert_eq!(
            decode(1, &other).err().map(|e| e.0),
            Some("version 9; this Qala reads versions 1 and 2".into())
        );
    }

    #[test]
    fn long_identities_are_kept_whole() {
        let mut b = sample();
        b.readings[0].sensor.sensor_id = "s".repeat(4000).as_str().into();
        b.readings[0].sensor.city = "ü".repeat(300).as_str().into();
        let mut out = Vec::new();
        encode(&b, &mut out);
        let back = decode(1, &out).expect("decodes");
        assert_eq!(back.readings, b.readings);
    }

    #[test]
    fn an_empty_batch_is_nine_bytes() {
        let mut out = Vec::new();
        encode(&Batch::default(), &mut out);
        assert_eq!(out, vec![1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let b = decode(3, &out).expect("decodes");
        assert!(b.readings.is_empty() && b.dead_letters.is_empty());
    }
}
