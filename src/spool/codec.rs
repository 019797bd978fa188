//! The spool record of one pipeline batch: its readings and dead letters in a compact binary
//! form. Metrics are stored by name (not by catalog position), so a record written by one
//! release reads back in the next even if the catalog grew. Pure: bytes in, bytes out.
//!
//! ```text
//! version u8 (1) | readings u32 | reading* | dead letters u32 | dead letter*
//! reading:     kind u8 | city str16 | district str16 | sensor_id str16 | time_ns i64
//!              | time source u8 (0 device, 1 receive) | values u8 | (metric str8, value f64)*
//! dead letter: received_ns i64 | reason str8 | topic str32 | payload bytes32 | message str32
//! ```
//! `str8`, `str16`: u8 / u16 length + UTF-8; `str32`, `bytes32`: u32 length + bytes. Integers
//! little-endian.

use crate::model::{DeadLetter, Kind, Reading, Reason, Rejection, SensorRef, TimeSource};
use crate::normalize::catalog;
use crate::pipeline::Batch;

const VERSION: u8 = 1;

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
    out.push(VERSION);
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
        let b = self.take(2, what)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
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
}

/// Decodes a record into a batch with sequence number `seq` (no acks: they belonged to the
/// connection that delivered the messages, and were sent when the record was committed).
pub fn decode(seq: u64, bytes: &[u8]) -> Result<Batch, CodecError> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.u8("the version")?;
    if version != VERSION {
        return Err(err(format!(
            "version {version}; this Qala reads version {VERSION}"
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
    if c.at != bytes.len() {
        return Err(err(format!(
            "{} bytes left over after the last dead letter",
            bytes.len() - c.at
        )));
    }
    Ok(Batch {
        seq,
        readings,
        dead_letters,
        acks: Vec::new(),
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
            acks: Vec::new(),
        }
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
            Some("version 9; this Qala reads version 1".into())
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
