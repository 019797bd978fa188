//! SenML (RFC 8428) packs, JSON representation, and the resolution and mapping that the CBOR
//! representation (`senml_cbor`) shares.
//!
//! Three steps, each its own function:
//! 1. read: payload → [`Record`]s as written (here for JSON with a borrowing serde visitor, in
//!    `senml_cbor` for CBOR);
//! 2. [`resolve`]: records → [`Resolved`] records per RFC 8428 §4.6 (base name, time, unit, value
//!    and sum carried forward; relative times against the receive time; names checked; sorted by
//!    time, stable);
//! 3. [`to_points`]: resolved records → raw points. The metric is the last segment of the name
//!    (after `:` or `/`); with [`SenmlOptions::sensor_from_name`] the rest names the sensor.
//!    Records of one instant and one sensor become one point. Sums become the integrated quantity
//!    (W → J, m3/s → m3, ...); `%`, which SenML defines as a ratio, becomes `/`.
//!
//! Where the RFC leaves a choice, or Qala narrows it:
//! - a record has a sum when it or a base sum in force gives one (§4.5.4), so `bs` gives every
//!   later record a sum; a record with both a value and a sum is refused (one quantity per
//!   record), as is the sum of anything but a rate Qala can integrate;
//! - `bver` must be a positive integer (§4.1), at most 10, the same in every record (§4.4);
//! - a record of base fields only (§5.1.7) is no record; `ut` is read and not used;
//! - times keep whole seconds exact and round the fraction to the microsecond; relative times
//!   (below 2^28 s, §4.5.3) count from the receive time in nanoseconds;
//! - `vd` must be base64url without padding (§4.3); it is passed on as that text;
//! - refusals: `bad_senml` for what breaks RFC 8428 (including an unknown label ending in `_`),
//!   `bad_shape` for JSON of the wrong shape (a label twice, a label of the wrong type),
//!   `bad_value` / `bad_timestamp` for numbers that are not finite or times out of range.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{json_rejection, RawData, RawIdent, RawPoint, RawTime, RawValue, Text};
use crate::model::{Reason, Rejection};

/// Times below 2^28 s are relative to now (RFC 8428 §4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;
/// The SenML version this reader implements (RFC 8428 §4.4).
pub const VERSION: u64 = 10;

/// How a route maps SenML names to sensors (`[routes.senml]`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenmlOptions {
    /// Take the sensor id from the record name: the text before the metric (the last ':' or
    /// '/'-separated segment), minus `strip_prefix`.
    pub sensor_from_name: bool,
    /// e.g. "urn:dev:mac:" so that "urn:dev:mac:0024befffe804ff1:pm2_5" → sensor
    /// "0024befffe804ff1", metric "pm2_5".
    pub strip_prefix: Option<String>,
}

/// Decodes a JSON pack (application/senml+json) and maps it to points.
pub fn decode_json<'a>(
    payload: &'a [u8],
    received_ns: i64,
    opts: &SenmlOptions,
) -> Result<Vec<RawPoint<'a>>, Rejection> {
    // Records are resolved as they are read, each into the same slot, not collected first: a
    // record is large, and moving it around costs more than parsing it.
    let mut resolver = Resolver::new(received_ns);
    let mut refusal = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let read = PackSeed {
        resolver: &mut resolver,
        refusal: &mut refusal,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    read.map_err(|e| json_rejection(e, "SenML pack"))?;
    to_points(resolver.finish()?, opts)
}

/// The labels of RFC 8428 §4.3, Table 1, with their JSON and CBOR (§6, Table 4) spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    BaseVersion,
    BaseName,
    BaseTime,
    BaseUnit,
    BaseValue,
    BaseSum,
    Name,
    Unit,
    Value,
    StringValue,
    BooleanValue,
    Sum,
    Time,
    UpdateTime,
    DataValue,
}

impl Label {
    /// Every label, in CBOR label order.
    pub const ALL: [Label; 15] = [
        Label::BaseSum,
        Label::BaseValue,
        Label::BaseUnit,
        Label::BaseTime,
        Label::BaseName,
        Label::BaseVersion,
        Label::Name,
        Label::Unit,
        Label::Value,
        Label::StringValue,
        Label::BooleanValue,
        Label::Sum,
        Label::Time,
        Label::UpdateTime,
        Label::DataValue,
    ];

    /// The JSON label (RFC 8428 §5, Table 2).
    pub fn json(self) -> &'static str {
        match self {
            Label::BaseVersion => "bver",
            Label::BaseName => "bn",
            Label::BaseTime => "bt",
            Label::BaseUnit => "bu",
            Label::BaseValue => "bv",
            Label::BaseSum => "bs",
            Label::Name => "n",
            Label::Unit => "u",
            Label::Value => "v",
            Label::StringValue => "vs",
            Label::BooleanValue => "vb",
            Label::Sum => "s",
            Label::Time => "t",
            Label::UpdateTime => "ut",
            Label::DataValue => "vd",
        }
    }

    /// The CBOR label (RFC 8428 §6, Table 4).
    pub fn cbor(self) -> i8 {
        match self {
            Label::BaseVersion => -1,
            Label::BaseName => -2,
            Label::BaseTime => -3,
            Label::BaseUnit => -4,
            Label::BaseValue => -5,
            Label::BaseSum => -6,
            Label::Name => 0,
            Label::Unit => 1,
            Label::Value => 2,
            Label::StringValue => 3,
            Label::BooleanValue => 4,
            Label::Sum => 5,
            Label::Time => 6,
            Label::UpdateTime => 7,
            Label::DataValue => 8,
        }
    }

    pub fn from_json(label: &str) -> Option<Label> {
        Some(match label {
            "bver" => Label::BaseVersion,
            "bn" => Label::BaseName,
            "bt" => Label::BaseTime,
            "bu" => Label::BaseUnit,
            "bv" => Label::BaseValue,
            "bs" => Label::BaseSum,
            "n" => Label::Name,
            "u" => Label::Unit,
            "v" => Label::Value,
            "vs" => Label::StringValue,
            "vb" => Label::BooleanValue,
            "s" => Label::Sum,
            "t" => Label::Time,
            "ut" => Label::UpdateTime,
            "vd" => Label::DataValue,
            _ => return None,
        })
    }

    pub fn from_cbor(label: i128) -> Option<Label> {
        Label::ALL
            .into_iter()
            .find(|l| i128::from(l.cbor()) == label)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// One record as written in the pack (RFC 8428 §4.1–4.3), whatever the representation.
/// Numbers are as given; [`resolve`] checks what the representation could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    pub bn: Option<Cow<'a, str>>,
    pub bt: Option<f64>,
    pub bu: Option<Cow<'a, str>>,
    pub bv: Option<f64>,
    pub bs: Option<f64>,
    /// Any JSON number; [`resolve`] requires a positive integer.
    pub bver: Option<f64>,
    pub n: Option<Cow<'a, str>>,
    pub u: Option<Cow<'a, str>>,
    pub v: Option<f64>,
    pub vs: Option<Cow<'a, str>>,
    pub vb: Option<bool>,
    /// base64url without padding (RFC 8428 §4.3): as written in JSON, encoded from the bytes
    /// in CBOR.
    pub vd: Option<Cow<'a, str>>,
    pub s: Option<f64>,
    pub t: Option<f64>,
    pub ut: Option<f64>,
    /// The first label this reader does not know that ends in `_`: such a label must be
    /// understood, so the pack is refused (RFC 8428 §4.4).
    pub unknown_mandatory: Option<Cow<'a, str>>,
}

/// A record's full name, the base name and the name concatenated (RFC 8428 §4.5.1), kept as
/// its two parts so that names, metrics and sensors borrow from the payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Name<'a> {
    base: Cow<'a, str>,
    local: Cow<'a, str>,
}

impl<'a> Name<'a> {
    pub fn new(base: Option<Cow<'a, str>>, local: Option<Cow<'a, str>>) -> Self {
        Name {
            base: base.unwrap_or_default(),
            local: local.unwrap_or_default(),
        }
    }

    pub fn len(&self) -> usize {
        self.base.len() + self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.base.bytes().chain(self.local.bytes())
    }

    /// RFC 8428 §4.5.1: only `A-Z a-z 0-9 - : . / _`, starting with a letter or digit.
    fn check(&self) -> Result<(), &'static str> {
        let mut bytes = self.bytes();
        match bytes.next() {
            None => return Err("is empty"),
            Some(c) if !c.is_ascii_alphanumeric() => {
                return Err("must start with a letter or digit (RFC 8428 §4.5.1)")
            }
            _ => {}
        }
        if bytes.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.' | b'/' | b'_'))
        {
            Ok(())
        } else {
            Err("has characters outside A-Z a-z 0-9 - : . / _ (RFC 8428 §4.5.1)")
        }
    }

    /// Where the last `:` or `/` is.
    fn last_separator(&self) -> Option<usize> {
        let is_sep = |c: char| c == ':' || c == '/';
        match self.local.rfind(is_sep) {
            Some(i) => Some(self.base.len() + i),
            None => self.base.rfind(is_sep),
        }
    }

    fn starts_with(&self, prefix: &str) -> bool {
        let b = self.base.len();
        if prefix.len() <= b {
            self.base.starts_with(prefix)
        } else {
            prefix.len() <= self.len()
                && prefix.as_bytes()[..b] == *self.base.as_bytes()
                && self.local.as_bytes().starts_with(&prefix.as_bytes()[b..])
        }
    }

    /// The bytes `range` of the full name, borrowed when they lie within one part. Names are
    /// ASCII once checked, so any range is on character boundaries.
    fn slice(&self, range: Range<usize>) -> Cow<'a, str> {
        let b = self.base.len();
        if range.start == range.end {
            Cow::Borrowed("")
        } else if range.end <= b {
            sub(&self.base, range)
        } else if range.start >= b {
            sub(&self.local, range.start - b..range.end - b)
        } else {
            Cow::Owned([&self.base[range.start..], &self.local[..range.end - b]].concat())
        }
    }
}

fn sub<'a>(part: &Cow<'a, str>, range: Range<usize>) -> Cow<'a, str> {
    match part {
        Cow::Borrowed(s) => Cow::Borrowed(&s[range]),
        Cow::Owned(s) => Cow::Owned(s[range].to_owned()),
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        f.write_str(&self.local)
    }
}

/// A resolved record (RFC 8428 §4.6): full name, absolute time, unit, and value and/or sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    pub name: Name<'a>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    pub unit: Option<Cow<'a, str>>,
    /// `bv + v`, `vs`, `vb` or `vd`.
    pub value: Option<RawData<'a>>,
    /// `bs + s`: present when either is (RFC 8428 §4.5.4), in unit × seconds (§4.2).
    pub sum: Option<f64>,
    /// Update time, s (§4.2): accepted, not used.
    pub update_time: Option<f64>,
}

/// Resolves records per RFC 8428 §4.6, sorted by time (stable for equal times). Times below
/// 2^28 s are relative to `received_ns`.
pub fn resolve(pack: Vec<Record<'_>>, received_ns: i64) -> Result<Vec<Resolved<'_>>, Rejection> {
    let mut resolver = Resolver::new(received_ns);
    for r in pack {
        resolver.record(r)?;
    }
    resolver.finish()
}

/// [`resolve`] one record at a time, as a pack is read: the base fields in force and the
/// records resolved so far.
#[derive(Debug)]
pub struct Resolver<'a> {
    received_ns: i64,
    /// Records read so far.
    read: usize,
    version: u64,
    bn: Option<Cow<'a, str>>,
    bt: f64,
    bu: Option<Cow<'a, str>>,
    bv: f64,
    bs: Option<f64>,
    out: Vec<Resolved<'a>>,
}

impl<'a> Resolver<'a> {
    pub fn new(received_ns: i64) -> Self {
        Resolver {
            received_ns,
            read: 0,
            version: VERSION,
            bn: None,
            bt: 0.0,
            bu: None,
            bv: 0.0,
            bs: None,
            out: Vec::new(),
        }
    }

    /// [`Resolver::record`] of a record read into a slot, which it leaves empty for the next.
    fn take(&mut self, slot: &mut Record<'a>) -> Result<(), Rejection> {
        self.record(std::mem::take(slot))
    }

    /// Applies the next record of the pack.
    pub fn record(&mut self, r: Record<'a>) -> Result<(), Rejection> {
        let i = self.read;
        self.read += 1;
        if let Some(label) = r.unknown_mandatory {
            return Err(bad(format!(
                "record {i} has the label {label:?}, which this reader does not know; a label \
                 ending in '_' must be understood, so the pack is refused (RFC 8428 §4.4)"
            )));
        }
        if let Some(ver) = r.bver {
            let ver = check_version(i, ver)?;
            if i == 0 {
                self.version = ver;
            } else if ver != self.version {
                return Err(bad(format!(
                    "record {i} has SenML version {ver}, the records before it {}; all \
                     records of a pack must have the same version (RFC 8428 §4.4)",
                    self.version
                )));
            }
        }
        if let Some(x) = r.bn {
            self.bn = Some(x);
        }
        if let Some(x) = r.bt {
            self.bt = x;
        }
        if let Some(x) = r.bu {
            self.bu = Some(x);
        }
        if let Some(x) = r.bv {
            self.bv = x;
        }
        if let Some(x) = r.bs {
            self.bs = Some(x);
        }
        let written = [
            (r.v.is_some(), Label::Value),
            (r.vs.is_some(), Label::StringValue),
            (r.vb.is_some(), Label::BooleanValue),
            (r.vd.is_some(), Label::DataValue),
        ];
        let values = written.iter().filter(|(present, _)| *present).count();
        let regular = values > 0
            || r.n.is_some()
            || r.u.is_some()
            || r.s.is_some()
            || r.t.is_some()
            || r.ut.is_some();
        if !regular {
            return Ok(()); // base fields only (e.g. RFC 8428 §5.1.7)
        }
        if values > 1 {
            let labels: Vec<&str> = written
                .iter()
                .filter(|(present, _)| *present)
                .map(|(_, l)| l.json())
                .collect();
            return Err(bad(format!(
                "record {i} has {values} values ({}); exactly one is allowed (RFC 8428 §4.2)",
                labels.join(", ")
            )));
        }
        let sum = match (self.bs, r.s) {
            (None, None) => None,
            (b, s) => Some(b.unwrap_or(0.0) + s.unwrap_or(0.0)),
        };
        if values == 0 && sum.is_none() {
            return Err(bad(format!(
                "record {i} has neither a value (v, vs, vb, vd) nor a sum (s)"
            )));
        }
        let name = Name::new(self.bn.clone(), r.n);
        if name.is_empty() {
            return Err(bad(format!("record {i} has no name (neither bn nor n)")));
        }
        name.check()
            .map_err(|why| bad(format!("record {i}: the name {:?} {why}", name.to_string())))?;
        let time_ns = time_ns(i, self.bt + r.t.unwrap_or(0.0), self.received_ns)?;
        let value = if let Some(v) = r.v {
            let v = self.bv + v;
            if !v.is_finite() {
                return Err(Rejection::new(
                    Reason::BadValue,
                    format!("{name}: the value {v} is not a finite number"),
                ));
            }
            Some(RawData::Number(v))
        } else if let Some(s) = r.vs {
            Some(RawData::Text(s))
        } else if let Some(b) = r.vb {
            Some(RawData::Bool(b))
        } else if let Some(d) = r.vd {
            if let Err(why) = check_base64url(&d) {
                return Err(bad(format!(
                    "{name}: the data value (vd) is not base64url without padding (RFC 8428 \
                     §4.3): {why}"
                )));
            }
            Some(RawData::Data(d))
        } else {
            None
        };
        if let Some(s) = sum.filter(|s| !s.is_finite()) {
            return Err(Rejection::new(
                Reason::BadValue,
                format!("{name}: the sum {s} is not a finite number"),
            ));
        }
        self.out.push(Resolved {
            name,
            time_ns,
            unit: r.u.or_else(|| self.bu.clone()),
            value,
            sum,
            update_time: r.ut,
        });
        Ok(())
    }

    /// The resolved records, in time order.
    pub fn finish(mut self) -> Result<Vec<Resolved<'a>>, Rejection> {
        if self.read == 0 {
            return Err(bad(
                "the pack has no records (RFC 8428 §11: a pack holds at least one)",
            ));
        }
        if self.out.is_empty() {
            return Err(bad("the pack has only base fields and no records"));
        }
        self.out.sort_by_key(|r| r.time_ns); // stable: records of one instant keep their order
        Ok(self.out)
    }
}

/// `bver` must be a positive integer not above [`VERSION`] (RFC 8428 §4.1, §4.4).
fn check_version(i: usize, ver: f64) -> Result<u64, Rejection> {
    if !(ver >= 1.0 && ver.fract() == 0.0 && ver < 1e15) {
        return Err(bad(format!(
            "record {i}: the SenML version (bver) {ver} is not a positive integer"
        )));
    }
    let ver = ver as u64;
    if ver > VERSION {
        return Err(bad(format!(
            "record {i} needs SenML version {ver}; this reader implements {VERSION}"
        )));
    }
    Ok(ver)
}

/// Base time + time, in seconds: below 2^28 relative to the receive time, else Unix time
/// (RFC 8428 §4.5.3).
fn time_ns(i: usize, t: f64, received_ns: i64) -> Result<i64, Rejection> {
    let refuse = |why: &str| {
        Rejection::new(
            Reason::BadTimestamp,
            format!("record {i}: the time {t} s {why}"),
        )
    };
    if !t.is_finite() {
        Err(refuse("is not a finite number"))
    } else if t < RELATIVE_TIME_LIMIT {
        seconds_to_ns(t)
            .and_then(|offset| received_ns.checked_add(offset))
            .filter(|ns| *ns >= 0)
            .ok_or_else(|| refuse("relative to the receive time falls before 1970"))
    } else {
        seconds_to_ns(t).ok_or_else(|| refuse("is beyond the year 2261"))
    }
}

/// Seconds → nanoseconds. f64 seconds near 1.7e9 resolve about 0.24 µs: keep whole seconds
/// exact and round the fraction to the microsecond rather than invent nanoseconds (so times
/// given to the millisecond stay exact).
fn seconds_to_ns(t: f64) -> Option<i64> {
    if t.is_nan() || t.abs() >= 9.2e9 {
        return None;
    }
    let whole = t.trunc();
    Some(whole as i64 * 1_000_000_000 + ((t - whole) * 1.0e6).round() as i64 * 1_000)
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Bytes → base64url without padding (RFC 4648 §5), as SenML writes data values in JSON.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, b)| n | u32::from(*b) << (16 - 8 * k));
        for k in 0..=chunk.len() {
            out.push(BASE64URL[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

fn check_base64url(text: &str) -> Result<(), String> {
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!("it holds {c:?}"));
    }
    if text.len() % 4 == 1 {
        return Err(format!("{} characters cannot end a group", text.len()));
    }
    Ok(())
}

/// Maps resolved records (in time order) to points: one per instant and sensor. The metric is
/// the name's last segment; with `sensor_from_name` the sensor is the rest.
pub fn to_points<'a>(
    records: Vec<Resolved<'a>>,
    opts: &SenmlOptions,
) -> Result<Vec<RawPoint<'a>>, Rejection> {
    let mut points: Vec<RawPoint<'a>> = Vec::new();
    // Points of the current instant start here.
    let mut instant = 0;
    for r in records {
        let cut = r.name.last_separator();
        let metric = r.name.slice(cut.map_or(0, |c| c + 1)..r.name.len());
        if metric.is_empty() {
            return Err(bad(format!(
                "{:?} names no metric after its last ':' or '/'",
                r.name.to_string()
            )));
        }
        let sensor = match cut {
            Some(cut) if opts.sensor_from_name => {
                let start = match &opts.strip_prefix {
                    Some(p) if r.name.starts_with(p) => p.len().min(cut),
                    _ => 0,
                };
                Some(r.name.slice(start..cut)).filter(|s| !s.is_empty())
            }
            _ => None,
        };
        let (unit, value) = match (r.value, r.sum) {
            (Some(value), None) => (r.unit.map(ratio_unit), value),
            (None, Some(sum)) => integrate(&r.name, r.unit.as_deref(), sum)?,
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "{} has both a value and a sum (s, or a base sum bs in force): they are \
                     different quantities; send the sum as its own record named after what \
                     it measures (e.g. \"volume\" with the flow's unit)",
                    r.name
                )))
            }
            (None, None) => return Err(bad(format!("{} has neither value nor sum", r.name))),
        };
        let time = RawTime::UnixNs(r.time_ns);
        if points.get(instant).is_some_and(|p| p.time != time) {
            instant = points.len();
        }
        let at = match points[instant..]
            .iter()
            .position(|p| p.ident.sensor_id == sensor)
        {
            Some(k) => instant + k,
            None => {
                points.push(RawPoint {
                    time,
                    ident: RawIdent {
                        sensor_id: sensor,
                        ..RawIdent::default()
                    },
                    values: Vec::new(),
                });
                points.len() - 1
            }
        };
        let point = &mut points[at];
        if point.values.iter().any(|v| v.name == metric) {
            let of = match &point.ident.sensor_id {
                Some(s) => format!(" of sensor {s}"),
                None => String::new(),
            };
            return Err(bad(format!(
                "{metric}{of} is given twice for the same time (the second time by {})",
                r.name
            )));
        }
        point.values.push(RawValue {
            name: metric,
            unit,
            value,
        });
    }
    Ok(points)
}

/// SenML's `%` is a ratio (RFC 8428 §12.1, note 2), not a percentage: say so with `/`.
fn ratio_unit(unit: Cow<'_, str>) -> Cow<'_, str> {
    if unit == "%" {
        Cow::Borrowed("/")
    } else {
        unit
    }
}

/// A sum is in the record's unit × seconds (RFC 8428 §4.2): a rate's sum is its quantity.
fn integrate<'a>(
    name: &Name<'_>,
    unit: Option<&str>,
    sum: f64,
) -> Result<(Option<Cow<'a, str>>, RawData<'a>), Rejection> {
    let (quantity, seconds_per_unit_time) = match unit {
        Some("W") => ("J", 1.0),
        Some("kW") => ("kJ", 1.0),
        Some("m3/s") => ("m3", 1.0),
        Some("l/s") => ("l", 1.0),
        Some("m3/h") => ("m3", 3600.0),
        Some("l/min") => ("l", 60.0),
        Some("l/h") => ("l", 3600.0),
        Some(other) => {
            return Err(bad(format!(
                "{name} has a sum (s), which is in its unit × seconds (RFC 8428 §4.2); {other:?} \
                 is not a rate, so its sum has no unit Qala knows"
            )))
        }
        None => {
            return Err(bad(format!(
                "{name} has a sum (s), which is in its unit × seconds (RFC 8428 §4.2), but no \
                 unit (u or bu), so its sum has no unit Qala knows"
            )))
        }
    };
    Ok((
        Some(Cow::Borrowed(quantity)),
        RawData::Number(sum / seconds_per_unit_time),
    ))
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(Reason::BadSenml, message)
}

/// A JSON pack, each record handed to the resolver as soon as it is read. A refusal by the
/// resolver stops the reading and is kept in `refusal`.
struct PackSeed<'r, 'a> {
    resolver: &'r mut Resolver<'a>,
    refusal: &'r mut Option<Rejection>,
}

impl<'de> DeserializeSeed<'de> for PackSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PackSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML pack (an array of records)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut slot = Record::default();
        while let Some(()) = seq.next_element_seed(RecordSeed(&mut slot))? {
            if let Err(refusal) = self.resolver.take(&mut slot) {
                *self.refusal = Some(refusal);
                return Err(de::Error::custom("refused by resolution"));
            }
        }
        Ok(())
    }
}

/// A JSON member name: a SenML label, or one this reader does not know.
enum Key<'a> {
    Known(Label),
    /// Unknown and ending in `_`.
    Mandatory(Cow<'a, str>),
    Ignored,
}

impl<'a> Key<'a> {
    fn of(s: &str, owned: impl FnOnce() -> Cow<'a, str>) -> Self {
        match Label::from_json(s) {
            Some(l) => Key::Known(l),
            None if s.ends_with('_') => Key::Mandatory(owned()),
            None => Key::Ignored,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SenML label")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::of(s, || Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::of(s, || Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut r = Record::default();
        RecordSeed(&mut r).deserialize(d)?;
        Ok(r)
    }
}

/// Reads a record into a slot, saving the moves of a large value.
struct RecordSeed<'r, 'a>(&'r mut Record<'a>);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML record (an object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let r = self.0;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let label = match key {
                Key::Known(label) => label,
                Key::Mandatory(label) => {
                    r.unknown_mandatory.get_or_insert(label);
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Key::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            macro_rules! set {
                ($field:ident, $ty:ty, $conv:expr) => {{
                    if r.$field.is_some() {
                        return Err(de::Error::custom(format!(
                            "label {label} appears twice in one record"
                        )));
                    }
                    r.$field = Some($conv(map.next_value::<$ty>()?));
                }};
            }
            let text = |t: Text<'de>| t.0;
            let same = |x| x;
            match label {
                Label::BaseName => set!(bn, Text<'de>, text),
                Label::BaseTime => set!(bt, f64, same),
                Label::BaseUnit => set!(bu, Text<'de>, text),
                Label::BaseValue => set!(bv, f64, same),
                Label::BaseSum => set!(bs, f64, same),
                Label::BaseVersion => set!(bver, f64, same),
                Label::Name => set!(n, Text<'de>, text),
                Label::Unit => set!(u, Text<'de>, text),
                Label::Value => set!(v, f64, same),
                Label::StringValue => set!(vs, Text<'de>, text),
                Label::BooleanValue => set!(vb, bool, |b| b),
                Label::DataValue => set!(vd, Text<'de>, text),
                Label::Sum => set!(s, f64, same),
                Label::Time => set!(t, f64, same),
                Label::UpdateTime => set!(ut, f64, same),
            }
        }
        Ok(())
    }
}

/// Random packs for property tests, written both as JSON and as CBOR.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::prelude::*;

    /// How a number is written in CBOR (RFC 8428 §6): all must read as the same double.
    #[derive(Debug, Clone, Copy)]
    pub enum Style {
        Float,
        /// An integer when whole, else a float.
        Integer,
        DecimalFraction,
    }

    /// A number written as `mantissa / 10^scale`, so that a decimal fraction carries it exactly.
    #[derive(Debug, Clone, Copy)]
    pub struct Num {
        pub mantissa: i64,
        pub scale: u32,
        pub style: Style,
    }

    impl Num {
        pub fn get(self) -> f64 {
            self.mantissa as f64 / 10f64.powi(self.scale as i32)
        }
    }

    #[derive(Debug, Clone)]
    pub enum Val {
        None,
        V(Num),
        Vs(String),
        Vb(bool),
        Vd(Vec<u8>),
    }

    #[derive(Debug, Clone)]
    pub struct Rec {
        pub bver: Option<u64>,
        pub bn: Option<String>,
        /// Milliseconds (written as seconds with three decimals).
        pub bt_ms: Option<i64>,
        pub bu: Option<String>,
        pub bv: Option<Num>,
        pub bs: Option<Num>,
        pub n: Option<String>,
        pub u: Option<String>,
        pub val: Val,
        pub s: Option<Num>,
        pub t_ms: Option<i64>,
        pub ut: Option<Num>,
        /// An unknown label that must be ignored.
        pub extra: bool,
    }

    fn num() -> impl Strategy<Value = Num> {
        (
            -2_000_000_000i64..2_000_000_000,
            0u32..4,
            prop_oneof![
                Just(Style::Float),
                Just(Style::Integer),
                Just(Style::DecimalFraction)
            ],
        )
            .prop_map(|(mantissa, scale, style)| Num {
                mantissa,
                scale,
                style,
            })
    }

    fn ms(mantissa: i64) -> Num {
        Num {
            mantissa,
            scale: 3,
            style: Style::Float,
        }
    }

    fn time_ms(weight_none: u32) -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            weight_none => Just(None),
            3 => (-3i64..=3).prop_map(|k| Some(k * 1000)),
            2 => (-1_000_000_000i64..1_000_000_000).prop_map(Some),
            2 => (1_600_000_000_000i64..1_900_000_000_000).prop_map(Some),
        ]
    }

    fn opt<T: std::fmt::Debug + Clone + 'static>(
        weight_none: u32,
        s: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Option<T>> {
        prop_oneof![weight_none => Just(None), 1 => s.prop_map(Some)]
    }

    fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(items).prop_map(str::to_owned)
    }

    fn rec() -> impl Strategy<Value = Rec> {
        let bases = (
            opt(30, prop_oneof![Just(10u64), Just(5u64)]),
            opt(
                1,
                pick(&[
                    "urn:dev:mac:0024befffe804ff1:",
                    "urn:dev:mac:",
                    "st-1/",
                    "2001:db8::2/",
                    "dev",
                ]),
            ),
            time_ms(3),
            opt(3, pick(&["W", "m3/s", "%", "Cel"])),
            opt(4, num()),
            opt(40, num()),
        );
        let regular = (
            prop_oneof![
                1 => Just(None),
                12 => pick(&["pm2_5", "pm10", "temperature", "0024befffe804ff2:pm2_5", "x/flow"])
                    .prop_map(Some),
                1 => Just(Some(String::new())),
            ],
            opt(
                2,
                pick(&[
                    "W", "kW", "m3/s", "l/s", "m3/h", "l/min", "l/h", "%", "%RH", "ug/m3",
                ]),
            ),
            prop_oneof![
                1 => Just(Val::None),
                30 => num().prop_map(Val::V),
                1 => pick(&["Machine Room", "ü \"q\" \\ \n", ""]).prop_map(Val::Vs),
                1 => any::<bool>().prop_map(Val::Vb),
                1 => proptest::collection::vec(any::<u8>(), 0..8).prop_map(Val::Vd),
            ],
            opt(5, num()),
            time_ms(12),
            opt(6, num()),
            proptest::bool::weighted(0.1),
        );
        (bases, regular).prop_map(
            |((bver, bn, bt_ms, bu, bv, bs), (n, u, val, s, t_ms, ut, extra))| Rec {
                bver,
                bn,
                bt_ms,
                bu,
                bv,
                bs,
                n,
                u,
                val,
                s,
                t_ms,
                ut,
                extra,
            },
        )
    }

    pub fn pack() -> impl Strategy<Value = Vec<Rec>> {
        proptest::collection::vec(rec(), 1..8)
    }

    /// Straightforward base64url without padding, bit by bit (independent of the decoder's).
    pub fn base64url_bits(bytes: &[u8]) -> String {
        let alphabet: Vec<char> = ('A'..='Z')
            .chain('a'..='z')
            .chain('0'..='9')
            .chain(['-', '_'])
            .collect();
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1))
            .collect();
        bits.chunks(6)
            .map(|six| {
                let v = (0..6).fold(0usize, |v, k| v * 2 + *six.get(k).unwrap_or(&0) as usize);
                alphabet[v]
            })
            .collect()
    }

    pub fn json(pack: &[Rec]) -> Vec<u8> {
        use serde_json::{json, Map, Value};
        let records: Vec<Value> = pack
            .iter()
            .map(|r| {
                let mut m = Map::new();
                let mut put = |k: &str, v: Value| {
                    m.insert(k.to_owned(), v);
                };
                if let Some(x) = r.bver {
                    put("bver", json!(x));
                }
                if let Some(x) = &r.bn {
                    put("bn", json!(x));
                }
                if let Some(x) = r.bt_ms {
                    put("bt", json!(ms(x).get()));
                }
                if let Some(x) = &r.bu {
                    put("bu", json!(x));
                }
                if let Some(x) = r.bv {
                    put("bv", json!(x.get()));
                }
                if let Some(x) = r.bs {
                    put("bs", json!(x.get()));
                }
                if let Some(x) = &r.n {
                    put("n", json!(x));
                }
                if let Some(x) = &r.u {
                    put("u", json!(x));
                }
                match &r.val {
                    Val::None => {}
                    Val::V(x) => put("v", json!(x.get())),
                    Val::Vs(x) => put("vs", json!(x)),
                    Val::Vb(x) => put("vb", json!(x)),
                    Val::Vd(x) => put("vd", json!(base64url_bits(x))),
                }
                if let Some(x) = r.s {
                    put("s", json!(x.get()));
                }
                if let Some(x) = r.t_ms {
                    put("t", json!(ms(x).get()));
                }
                if let Some(x) = r.ut {
                    put("ut", json!(x.get()));
                }
                if r.extra {
                    put("foo", json!({"a": [1, "b"]}));
                }
                Value::Object(m)
            })
            .collect();
        serde_json::to_vec(&records).expect("serialises")
    }

    pub fn cbor(pack: &[Rec]) -> Vec<u8> {
        use ciborium::Value;
        let number = |x: Num| match x.style {
            Style::Float => Value::Float(x.get()),
            Style::Integer if x.get().fract() == 0.0 => Value::Integer((x.get() as i64).into()),
            Style::Integer => Value::Float(x.get()),
            Style::DecimalFraction => Value::Tag(
                4,
                Box::new(Value::Array(vec![
                    Value::Integer((-(x.scale as i64)).into()),
                    Value::Integer(x.mantissa.into()),
                ])),
            ),
        };
        let text = |s: &String| Value::Text(s.clone());
        let records: Vec<Value> = pack
            .iter()
            .map(|r| {
                let mut m: Vec<(Value, Value)> = Vec::new();
                let mut put = |k: i64, v: Value| m.push((Value::Integer(k.into()), v));
                if let Some(x) = r.bver {
                    put(-1, Value::Integer(x.into()));
                }
                if let Some(x) = &r.bn {
                    put(-2, text(x));
                }
                if let Some(x) = r.bt_ms {
                    put(-3, number(ms(x)));
                }
                if let Some(x) = &r.bu {
                    put(-4, text(x));
                }
                if let Some(x) = r.bv {
                    put(-5, number(x));
                }
                if let Some(x) = r.bs {
                    put(-6, number(x));
                }
                if let Some(x) = &r.n {
                    put(0, text(x));
                }
                if let Some(x) = &r.u {
                    put(1, text(x));
                }
                match &r.val {
                    Val::None => {}
                    Val::V(x) => put(2, number(*x)),
                    Val::Vs(x) => put(3, text(x)),
                    Val::Vb(x) => put(4, Value::Bool(*x)),
                    Val::Vd(x) => put(8, Value::Bytes(x.clone())),
                }
                if let Some(x) = r.s {
                    put(5, number(x));
                }
                if let Some(x) = r.t_ms {
                    put(6, number(ms(x)));
                }
                if let Some(x) = r.ut {
                    put(7, number(x));
                }
                if r.extra {
                    m.push((Value::Text("foo".into()), Value::Array(vec![Value::Null])));
                    m.push((Value::Integer(23.into()), Value::Bool(true)));
                }
                Value::Map(m)
            })
            .collect();
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Array(records), &mut out).expect("serialises");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receive time: sub-microsecond, to show relative times keep it exactly.
    const NOW: i64 = 1_700_000_000_123_456_789;

    fn resolve_json(pack: &str) -> Result<Vec<Resolved<'_>>, Rejection> {
        let records: Vec<Record<'_>> =
            serde_json::from_str(pack).map_err(|e| json_rejection(e, "SenML pack"))?;
        resolve(records, NOW)
    }

    /// A resolved record as the RFC lists them: name, time (ns), unit, value.
    type Listed = (
        String,
        i64,
        Option<String>,
        Option<RawData<'static>>,
        Option<f64>,
    );

    fn listed(records: &[Resolved<'_>]) -> Vec<Listed> {
        records
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    r.time_ns,
                    r.unit.as_deref().map(str::to_owned),
                    r.value.clone().map(owned),
                    r.sum,
                )
            })
            .collect()
    }

    fn owned(d: RawData<'_>) -> RawData<'static> {
        match d {
            RawData::Number(x) => RawData::Number(x),
            RawData::Bool(b) => RawData::Bool(b),
            RawData::Text(s) => RawData::Text(Cow::Owned(s.into_owned())),
            RawData::Data(s) => RawData::Data(Cow::Owned(s.into_owned())),
        }
    }

    fn num(name: &str, time_ns: i64, unit: &str, v: f64) -> Listed {
        (
            name.to_owned(),
            time_ns,
            Some(unit.to_owned()).filter(|u| !u.is_empty()),
            Some(RawData::Number(v)),
            None,
        )
    }

    const S: i64 = 1_000_000_000;
    const OW: &str = "urn:dev:ow:10e2073a01080063";

    #[test]
    fn rfc8428_5_1_1_single_data_point_is_now() {
        let r = resolve_json(
            r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]"#,
        )
        .expect("valid");
        assert_eq!(listed(&r), vec![num(OW, NOW, "Cel", 23.1)]);
    }

    #[test]
    fn rfc8428_5_1_2_multiple_data_points() {
        let r = resolve_json(
            r#"[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"#,
        )
        .expect("valid");
        assert_eq!(
            listed(&r),
            vec![
                num("urn:dev:ow:10e2073a01080063:voltage", NOW, "V", 120.1),
                num("urn:dev:ow:10e2073a01080063:current", NOW, "A", 1.2),
            ]
        );

        // Current at Tue Jun 8 18:01:16.001 UTC 2010 and each second of the 5 before; the base
        // name lacks a digit in the RFC itself. Resolved records are in time order (§4.6).
        let r = resolve_json(
            r#"[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#,
        )
        .expect("valid");
        let t0 = 1_276_020_076_001_000_000;
        let current = "urn:dev:ow:10e2073a0108006:current";
        assert_eq!(
            listed(&r),
            vec![
                num(current, t0 - 5 * S, "A", 1.2),
                num(current, t0 - 4 * S, "A", 1.3),
                num(current, t0 - 3 * S, "A", 1.4),
                num(current, t0 - 2 * S, "A", 1.5),
                num(current, t0 - S, "A", 1.6),
                num("urn:dev:ow:10e2073a0108006:voltage", t0, "V", 120.1),
                num(current, t0, "A", 1.7),
            ]
        );
    }

    #[test]
    fn rfc8428_5_1_2_sensml_stream_excerpt() {
        // The RFC shows the first nine records of a stream and then "..."; closed here.
        let r = resolve_json(
            r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":21.2},
     {"t":10,"v":21.3},
     {"t":20,"v":21.4},
     {"t":30,"v":21.4},
     {"t":40,"v":21.5},
     {"t":50,"v":21.5},
     {"t":60,"v":21.5},
     {"t":70,"v":21.6},
     {"t":80,"v":21.7}
   ]"#,
        )
        .expect("valid");
        let values = [21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7];
        let expected: Vec<Listed> = values
            .iter()
            .enumerate()
            .map(|(k, v)| num(OW, 1_320_067_464 * S + 10 * k as i64 * S, "%RH", *v))
            .collect();
        assert_eq!(listed(&r), expected);
    }

    const RFC_5_1_3: &str = r#"[
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

    const RFC_5_1_4: &str = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
      "v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
      "v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
      "v":20.3},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
      "v":24.30622},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
      "v":20.7},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
      "v":24.30623},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
      "v":60.07966},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
      "v":98},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
      "v":21.2},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
      "v":24.30628},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
      "v":60.07967}
   ]"#;

    #[test]
    fn rfc8428_5_1_3_multiple_measurements_resolve_to_the_5_1_4_list() {
        let t = |s: i64| s * S;
        let expected = vec![
            num(OW, t(1_320_067_464), "%RH", 20.0),
            num(OW, t(1_320_067_464), "lon", 24.30621),
            num(OW, t(1_320_067_464), "lat", 60.07965),
            num(OW, t(1_320_067_524), "%RH", 20.3),
            num(OW, t(1_320_067_524), "lon", 24.30622),
            num(OW, t(1_320_067_524), "lat", 60.07965),
            num(OW, t(1_320_067_584), "%RH", 20.7),
            num(OW, t(1_320_067_584), "lon", 24.30623),
            num(OW, t(1_320_067_584), "lat", 60.07966),
            num(OW, t(1_320_067_614), "%EL", 98.0),
            num(OW, t(1_320_067_644), "%RH", 21.2),
            num(OW, t(1_320_067_644), "lon", 24.30628),
            num(OW, t(1_320_067_644), "lat", 60.07967),
        ];
        assert_eq!(listed(&resolve_json(RFC_5_1_3).expect("valid")), expected);
        // Resolved records resolve to themselves.
        assert_eq!(listed(&resolve_json(RFC_5_1_4).expect("valid")), expected);
        // As points, the three quantities share one name and so one metric: Qala refuses
        // rather than keep one of them.
        let e = decode_json(RFC_5_1_3.as_bytes(), NOW, &SenmlOptions::default())
            .expect_err("one metric, three quantities");
        assert_eq!(e.reason, Reason::BadSenml);
        assert!(
            e.message
                .starts_with("10e2073a01080063 is given twice for the same time"),
            "{}",
            e.message
        );
    }

    const RFC_5_1_5: &str = r#"[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"#;

    #[test]
    fn rfc8428_5_1_5_multiple_data_types_keep_their_types() {
        let r = resolve_json(RFC_5_1_5).expect("valid");
        let name = |n: &str| format!("urn:dev:ow:10e2073a01080063:{n}");
        assert_eq!(
            listed(&r),
            vec![
                num(&name("temp"), NOW, "Cel", 23.1),
                (
                    name("label"),
                    NOW,
                    None,
                    Some(RawData::Text("Machine Room".into())),
                    None
                ),
                (name("open"), NOW, None, Some(RawData::Bool(false)), None),
                (
                    name("nfv-reader"),
                    NOW,
                    None,
                    Some(RawData::Data("aGkgCg".into())),
                    None
                ),
            ]
        );
        let pts = decode_json(RFC_5_1_5.as_bytes(), NOW, &SenmlOptions::default()).expect("valid");
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].time, RawTime::UnixNs(NOW));
        let values: Vec<(&str, &RawData<'_>)> = pts[0]
            .values
            .iter()
            .map(|v| (v.name.as_ref(), &v.value))
            .collect();
        assert_eq!(
            values,
            vec![
                ("temp", &RawData::Number(23.1)),
                ("label", &RawData::Text("Machine Room".into())),
                ("open", &RawData::Bool(false)),
                ("nfv-reader", &RawData::Data("aGkgCg".into())),
            ]
        );
    }

    const RFC_5_1_6: &str = r#"[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"#;

    #[test]
    fn rfc8428_5_1_6_collection_of_resources() {
        let t = 1_320_078_429 * S;
        assert_eq!(
            listed(&resolve_json(RFC_5_1_6).expect("valid")),
            vec![
                num("2001:db8::2/temperature", t, "Cel", 25.2),
                num("2001:db8::2/humidity", t, "%RH", 30.0),
                num("2001:db8::1/temperature", t, "Cel", 12.3),
                num("2001:db8::1/humidity", t, "%RH", 67.0),
            ]
        );
        // Two devices at one instant: two points when the name names the sensor ...
        let opts = SenmlOptions {
            sensor_from_name: true,
            strip_prefix: None,
        };
        let pts = decode_json(RFC_5_1_6.as_bytes(), NOW, &opts).expect("valid");
        assert_eq!(pts.len(), 2);
        for (p, (sensor, temp, hum)) in pts
            .iter()
            .zip([("2001:db8::2", 25.2, 30.0), ("2001:db8::1", 12.3, 67.0)])
        {
            assert_eq!(p.time, RawTime::UnixNs(t));
            assert_eq!(p.ident.sensor_id.as_deref(), Some(sensor));
            assert_eq!(
                p.values,
                vec![
                    RawValue::number("temperature", Some("Cel".into()), temp),
                    RawValue::number("humidity", Some("%RH".into()), hum),
                ]
            );
        }
        // ... and a refusal when the route's sensor would get the temperature twice.
        let e =
            decode_json(RFC_5_1_6.as_bytes(), NOW, &SenmlOptions::default()).expect_err("twice");
        assert_eq!(e.reason, Reason::BadSenml);
        assert_eq!(
            e.message,
            "temperature is given twice for the same time (the second time by \
             2001:db8::1/temperature)"
        );
    }

    #[test]
    fn rfc8428_5_1_7_setting_an_actuator() {
        // The first record carries only a base name: it is no record of its own.
        let r = resolve_json(
            r#"[
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}
   ]"#,
        )
        .expect("valid");
        assert_eq!(
            listed(&r),
            vec![
                num("urn:dev:ow:10e2073a01080063:temp", NOW, "Cel", 23.1),
                num("urn:dev:ow:10e2073a01080063:heat", NOW, "/", 1.0),
                num("urn:dev:ow:10e2073a01080063:fan", NOW, "/", 0.0),
            ]
        );
        let t = 1_320_078_429 * S;
        let r = resolve_json(
            r#"[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
     {"n":"2001:db8::4","v":1}
   ]"#,
        )
        .expect("valid");
        assert_eq!(
            listed(&r),
            vec![
                num("2001:db8::3", t, "/", 1.0),
                num("2001:db8::4", t, "/", 1.0)
            ]
        );
        let r = resolve_json(
            r#"[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}
   ]"#,
        )
        .expect("valid");
        let later = t + 100_000_000;
        assert_eq!(
            listed(&r),
            vec![
                num("2001:db8::3", t, "/", 0.5),
                num("2001:db8::4", t, "/", 0.5),
                num("2001:db8::3", later, "/", 0.0),
                num("2001:db8::4", later, "/", 0.0),
            ]
        );
    }

    #[test]
    fn rfc8428_section_2_base_name_alone_names_the_record() {
        let r = resolve_json(
            r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","u":"Cel","t":1.276020076e+09,
      "v":23.5},
     {"u":"Cel","t":1.276020091e+09,
      "v":23.6}
   ]"#,
        )
        .expect("valid");
        assert_eq!(
            listed(&r),
            vec![
                num(OW, 1_276_020_076 * S, "Cel", 23.5),
                num(OW, 1_276_020_091 * S, "Cel", 23.6),
            ]
        );
    }

    #[test]
    fn base_values_carry_forward_and_relative_times_resolve() {
        let r = resolve_json(
            r#"[{"bn":"s1/","bt":1.276020076001e9,"bu":"A","bver":5,"n":"c","v":1.2},
                {"n":"c","t":10,"v":1.3,"bv":1},{"n":"v","u":"V","t":-5,"v":2},
                {"n":"c","t":11,"v":1,"ut":60,"foo":{"a":[1]}}]"#,
        )
        .expect("valid");
        let t0 = 1_276_020_076_001_000_000;
        assert_eq!(
            listed(&r),
            vec![
                num("s1/v", t0 - 5 * S, "V", 3.0), // bv = 1 applies to later records
                num("s1/c", t0, "A", 1.2),
                num("s1/c", t0 + 10 * S, "A", 2.3),
                num("s1/c", t0 + 11 * S, "A", 2.0),
            ]
        );
        assert_eq!(r[3].update_time, Some(60.0), "ut is kept, and ignored");

        let rel = resolve_json(r#"[{"n":"x","t":-60.5,"v":1}]"#).expect("valid");
        assert_eq!(rel[0].time_ns, NOW - 60_500_000_000);
        let rel = resolve_json(r#"[{"bt":-60,"n":"x","t":30,"v":1}]"#).expect("valid");
        assert_eq!(rel[0].time_ns, NOW - 30 * S);
    }

    #[test]
    fn fractional_times_keep_milliseconds_exact() {
        let pts = decode_json(
            br#"[{"n":"x","t":1700000000.123,"v":1},{"n":"x","bt":1.7e9,"t":0.001,"v":2}]"#,
            0,
            &SenmlOptions::default(),
        )
        .expect("valid");
        assert_eq!(pts[0].time, RawTime::UnixNs(1_700_000_000_001_000_000));
        assert_eq!(pts[1].time, RawTime::UnixNs(1_700_000_000_123_000_000));
    }

    fn decode(pack: &str, opts: &SenmlOptions) -> Result<Vec<RawPoint<'static>>, Rejection> {
        let pack: &'static str = Box::leak(pack.to_owned().into_boxed_str());
        decode_json(pack.as_bytes(), NOW, opts)
    }

    fn values(pack: &str) -> Vec<RawValue<'static>> {
        let pts = decode(pack, &SenmlOptions::default()).expect(pack);
        assert_eq!(pts.len(), 1, "{pack}");
        pts.into_iter().next().expect("one").values
    }

    #[test]
    fn sums_become_the_integrated_quantity() {
        let cases = [
            ("W", 7200.0, "J", 7200.0),
            ("kW", 7200.0, "kJ", 7200.0),
            ("m3/s", 1234.5, "m3", 1234.5),
            ("l/s", 90.0, "l", 90.0),
            ("m3/h", 7200.0, "m3", 2.0),
            ("l/min", 90.0, "l", 1.5),
            ("l/h", 5400.0, "l", 1.5),
        ];
        for (unit, s, quantity, expected) in cases {
            let pack = format!(r#"[{{"n":"meter:volume","u":"{unit}","s":{s}}}]"#);
            assert_eq!(
                values(&pack),
                vec![RawValue::number("volume", Some(quantity.into()), expected)],
                "{unit}"
            );
        }
        // A base sum is added to the sum, and gives a sum to records that have none.
        assert_eq!(
            values(
                r#"[{"bn":"m:","bu":"m3/s","bs":1000,"n":"volume","s":0.5},{"n":"energy","u":"W"}]"#
            ),
            vec![
                RawValue::number("volume", Some("m3".into()), 1000.5),
                RawValue::number("energy", Some("J".into()), 1000.0),
            ]
        );
    }

    #[test]
    fn sums_that_are_not_of_a_rate_or_beside_a_value_are_refused() {
        let cases = [
            (
                r#"[{"n":"meter/volume","u":"m3","s":1234.5}]"#,
                "meter/volume has a sum (s), which is in its unit × seconds (RFC 8428 §4.2); \
                 \"m3\" is not a rate, so its sum has no unit Qala knows",
            ),
            (
                r#"[{"n":"meter/volume","s":1234.5}]"#,
                "meter/volume has a sum (s), which is in its unit × seconds (RFC 8428 §4.2), \
                 but no unit (u or bu), so its sum has no unit Qala knows",
            ),
            (
                r#"[{"n":"flow","u":"m3/s","v":2,"s":10}]"#,
                "flow has both a value and a sum (s, or a base sum bs in force): they are \
                 different quantities; send the sum as its own record named after what it \
                 measures (e.g. \"volume\" with the flow's unit)",
            ),
        ];
        for (pack, message) in cases {
            let e = decode(pack, &SenmlOptions::default()).expect_err(pack);
            assert_eq!(e.reason, Reason::BadSenml, "{pack}");
            assert_eq!(e.message, message);
        }
        // A base sum gives every later record a sum (RFC 8428 §4.5.4), values included.
        let e = decode(
            r#"[{"n":"volume","u":"m3/s","bs":0,"s":1},{"n":"flow","u":"m3/s","v":2}]"#,
            &SenmlOptions::default(),
        )
        .expect_err("bs in force");
        assert!(e.message.starts_with("flow has both a value and a sum"));
    }

    #[test]
    fn percent_is_a_ratio_and_becomes_slash() {
        assert_eq!(
            values(
                r#"[{"bu":"%","n":"valve","v":0.5},{"n":"humidity","u":"%RH","v":40},{"n":"battery","u":"%EL","v":98},{"n":"open","u":"%","v":1}]"#
            ),
            vec![
                RawValue::number("valve", Some("/".into()), 0.5),
                RawValue::number("humidity", Some("%RH".into()), 40.0),
                RawValue::number("battery", Some("%EL".into()), 98.0),
                RawValue::number("open", Some("/".into()), 1.0),
            ]
        );
    }

    #[test]
    fn records_group_into_points_by_time_with_metric_from_name() {
        let pts = decode(
            r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1700000000,"n":"pm2_5","u":"ug/m3","v":12},
                 {"n":"pm10","u":"ug/m3","v":20},
                 {"n":"pm2_5","t":60,"v":13}]"#,
            &SenmlOptions::default(),
        )
        .expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].time, RawTime::UnixNs(1_700_000_000 * S));
        assert_eq!(pts[0].ident, RawIdent::default());
        assert_eq!(
            pts[0].values,
            vec![
                RawValue::number("pm2_5", Some("ug/m3".into()), 12.0),
                RawValue::number("pm10", Some("ug/m3".into()), 20.0),
            ]
        );
        assert_eq!(pts[1].time, RawTime::UnixNs(1_700_000_060 * S));
        // `u` does not carry forward (only `bu` does): no unit means canonical
        assert_eq!(pts[1].values, vec![RawValue::number("pm2_5", None, 13.0)]);
    }

    #[test]
    fn sensor_comes_from_the_name_minus_the_prefix() {
        let mac = SenmlOptions {
            sensor_from_name: true,
            strip_prefix: Some("urn:dev:mac:".into()),
        };
        let sensor_and_metric = |pack: &str, opts: &SenmlOptions| {
            let pts = decode(pack, opts).expect(pack);
            pts.iter()
                .flat_map(|p| {
                    p.values.iter().map(|v| {
                        (
                            p.ident.sensor_id.as_deref().map(str::to_owned),
                            v.name.to_string(),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        let s = |x: &str| Some(x.to_owned());
        // The brief's example, with the sensor in the base name or in the name.
        for pack in [
            r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"pm2_5","v":1}]"#,
            r#"[{"bn":"urn:dev:mac:","n":"0024befffe804ff1:pm2_5","v":1}]"#,
            r#"[{"n":"urn:dev:mac:0024befffe804ff1:pm2_5","v":1}]"#,
            r#"[{"bn":"urn:dev:mac:0024befffe8","n":"04ff1:pm2_5","v":1}]"#,
        ] {
            assert_eq!(
                sensor_and_metric(pack, &mac),
                vec![(s("0024befffe804ff1"), "pm2_5".to_owned())],
                "{pack}"
            );
        }
        // Without the prefix option the sensor is the whole rest; '/' separates too.
        let plain = SenmlOptions {
            sensor_from_name: true,
            strip_prefix: None,
        };
        assert_eq!(
            sensor_and_metric(
                r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"pm2_5","v":1}]"#,
                &plain
            ),
            vec![(s("urn:dev:mac:0024befffe804ff1"), "pm2_5".to_owned())]
        );
        assert_eq!(
            sensor_and_metric(r#"[{"bn":"city/st-7/","n":"pm10","v":1}]"#, &mac),
            vec![(s("city/st-7"), "pm10".to_owned())],
            "a prefix that does not match is left alone"
        );
        // No sensor in the name: the route's sensor.
        assert_eq!(
            sensor_and_metric(
                r#"[{"n":"pm10","v":1},{"n":"urn:dev:mac:pm2_5","v":2}]"#,
                &mac
            ),
            vec![(None, "pm10".to_owned()), (None, "pm2_5".to_owned())]
        );
        // Off: the name's rest is ignored and all records are the route's sensor.
        assert_eq!(
            sensor_and_metric(
                r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"pm2_5","v":1}]"#,
                &SenmlOptions::default()
            ),
            vec![(None, "pm2_5".to_owned())]
        );
        // One instant, two sensors, interleaved: one point each, in order of appearance.
        let pts = decode(
            r#"[{"bn":"urn:dev:mac:","bt":1.7e9,"n":"a:pm10","v":1},{"n":"b:pm10","v":2},
                {"n":"a:pm2_5","v":3},{"n":"a:pm10","t":1,"v":4}]"#,
            &mac,
        )
        .expect("valid");
        let summary: Vec<(Option<&str>, usize)> = pts
            .iter()
            .map(|p| (p.ident.sensor_id.as_deref(), p.values.len()))
            .collect();
        assert_eq!(
            summary,
            vec![(Some("a"), 2), (Some("b"), 1), (Some("a"), 1)]
        );
        let e = decode(
            r#"[{"n":"urn:dev:mac:a:pm10","v":1},{"n":"urn:dev:mac:a:pm10","v":2}]"#,
            &mac,
        )
        .expect_err("twice");
        assert_eq!(
            e.message,
            "pm10 of sensor a is given twice for the same time (the second time by \
             urn:dev:mac:a:pm10)"
        );
    }

    #[test]
    fn names_metrics_and_sensors_borrow_from_the_payload() {
        let mac = SenmlOptions {
            sensor_from_name: true,
            strip_prefix: Some("urn:dev:mac:".into()),
        };
        let payload = br#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bu":"ug/m3","n":"pm2_5","v":1}]"#;
        let pts = decode_json(payload, NOW, &mac).expect("valid");
        assert!(matches!(pts[0].ident.sensor_id, Some(Cow::Borrowed(_))));
        assert!(matches!(pts[0].values[0].name, Cow::Borrowed(_)));
        assert!(matches!(pts[0].values[0].unit, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn invalid_packs_are_refused_naming_the_problem() {
        let cases = [
            (r#"[]"#, Reason::BadSenml, "the pack has no records"),
            (r#"[{"bn":"x"}]"#, Reason::BadSenml, "only base fields"),
            (r#"[{"n":"x","v":1,"foo_":2}]"#, Reason::BadSenml, "record 0 has the label \"foo_\", which this reader does not know; a label ending in '_' must be understood"),
            (r#"[{"n":"x","v":1,"vs":"a","vb":true}]"#, Reason::BadSenml, "record 0 has 3 values (v, vs, vb); exactly one is allowed"),
            (r#"[{"n":"x","u":"W"}]"#, Reason::BadSenml, "record 0 has neither a value (v, vs, vb, vd) nor a sum (s)"),
            (r#"[{"v":1}]"#, Reason::BadSenml, "record 0 has no name"),
            (r#"[{"bn":"","n":"","v":1}]"#, Reason::BadSenml, "record 0 has no name"),
            (r#"[{"n":"-x","v":1}]"#, Reason::BadSenml, "record 0: the name \"-x\" must start with a letter or digit"),
            (r#"[{"bn":"a b/","n":"x","v":1}]"#, Reason::BadSenml, "record 0: the name \"a b/x\" has characters outside A-Z a-z 0-9 - : . / _"),
            (r#"[{"n":"tempé","v":1}]"#, Reason::BadSenml, "has characters outside"),
            (r#"[{"bver":11,"n":"x","v":1}]"#, Reason::BadSenml, "record 0 needs SenML version 11; this reader implements 10"),
            (r#"[{"bver":2.5,"n":"x","v":1}]"#, Reason::BadSenml, "the SenML version (bver) 2.5 is not a positive integer"),
            (r#"[{"bver":0,"n":"x","v":1}]"#, Reason::BadSenml, "is not a positive integer"),
            (r#"[{"bver":5,"n":"x","v":1},{"bver":6,"n":"y","v":1}]"#, Reason::BadSenml, "record 1 has SenML version 6, the records before it 5"),
            (r#"[{"n":"x","v":1},{"bver":5,"n":"y","v":1}]"#, Reason::BadSenml, "record 1 has SenML version 5, the records before it 10"),
            (r#"[{"n":"x","vd":"aGk="}]"#, Reason::BadSenml, "x: the data value (vd) is not base64url without padding (RFC 8428 §4.3): it holds '='"),
            (r#"[{"n":"x","vd":"aGkgC"}]"#, Reason::BadSenml, "5 characters cannot end a group"),
            (r#"[{"n":"x/","v":1}]"#, Reason::BadSenml, "\"x/\" names no metric after its last ':' or '/'"),
            (r#"[{"n":"x","v":1e308,"bv":1e308}]"#, Reason::BadValue, "x: the value inf is not a finite number"),
            (r#"[{"n":"x","v":1,"t":1e10}]"#, Reason::BadTimestamp, "record 0: the time 10000000000 s is beyond the year 2261"),
            (r#"[{"n":"x","v":1,"t":-1.8e9}]"#, Reason::BadTimestamp, "record 0: the time -1800000000 s relative to the receive time falls before 1970"),
            // The shape of the JSON itself: bad_shape, as for JSON objects.
            (r#"[{"n":"x","v":1,"v":2}]"#, Reason::BadShape, "label v appears twice in one record"),
            (r#"[{"n":"x","v":"12"}]"#, Reason::BadShape, "invalid type: string \"12\", expected f64"),
            (r#"[[1]]"#, Reason::BadShape, "invalid type: sequence, expected a SenML record (an object)"),
            (r#"{"n":"x"}"#, Reason::BadShape, "not a valid SenML pack"),
            (r#"[{"n":"x","v":1}"#, Reason::NotJson, "not valid JSON"),
        ];
        for (pack, reason, needle) in cases {
            let e = decode(pack, &SenmlOptions::default()).expect_err(pack);
            assert_eq!(e.reason, reason, "{pack}: {}", e.message);
            assert!(
                e.message.contains(needle),
                "{pack}: {:?} lacks {needle:?}",
                e.message
            );
        }
    }

    #[test]
    fn unknown_labels_and_update_time_are_ignored() {
        assert_eq!(
            values(r#"[{"n":"x","v":1,"foo":{"a":[1]},"ut":300,"_x":1,"b_x":null,"bar\u0041":1}]"#)
                .len(),
            1,
        );
        // Escaped labels are still labels: "\u005f" is '_'.
        let e = decode(r#"[{"n":"x","v":1,"a\u005f":1}]"#, &SenmlOptions::default())
            .expect_err("mandatory");
        assert!(e.message.contains("\"a_\""), "{}", e.message);
    }

    #[test]
    fn options_read_from_toml() {
        let o: SenmlOptions =
            toml::from_str("sensor_from_name = true\nstrip_prefix = \"urn:dev:mac:\"\n")
                .expect("valid");
        assert!(o.sensor_from_name);
        assert_eq!(o.strip_prefix.as_deref(), Some("urn:dev:mac:"));
        assert_eq!(
            toml::from_str::<SenmlOptions>("").expect("defaults"),
            SenmlOptions::default()
        );
        let e = toml::from_str::<SenmlOptions>("sensor_from_names = true").expect_err("typo");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn base64url_follows_rfc4648() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (b"hi \n", "aGkgCg"),
            (&[0xfb, 0xff], "-_8"),
        ] {
            assert_eq!(base64url(bytes), text);
            assert_eq!(arbitrary::base64url_bits(bytes), text);
            assert_eq!(check_base64url(text), Ok(()));
        }
    }

    /// What a resolved record should be, computed the plain way: integers for times.
    #[derive(Debug, PartialEq)]
    struct Model {
        name: String,
        time_ns: i64,
        unit: Option<String>,
        value: Option<RawData<'static>>,
        sum: Option<f64>,
    }

    fn model(pack: &[arbitrary::Rec], received_ns: i64) -> Option<Vec<Model>> {
        use arbitrary::Val;
        let pack_version = pack[0].bver.unwrap_or(10);
        let (mut bn, mut bt_ms, mut bu, mut bv, mut bs) = (String::new(), 0i64, None, 0.0, None);
        let mut out: Vec<Model> = Vec::new();
        for r in pack {
            if let Some(ver) = r.bver {
                if ver > 10 || ver != pack_version {
                    return None;
                }
            }
            if let Some(x) = &r.bn {
                bn = x.clone();
            }
            if let Some(x) = r.bt_ms {
                bt_ms = x;
            }
            if let Some(x) = &r.bu {
                bu = Some(x.clone());
            }
            if let Some(x) = r.bv {
                bv = x.get();
            }
            if let Some(x) = r.bs {
                bs = Some(x.get());
            }
            let has_value = !matches!(r.val, Val::None);
            if !(has_value || r.n.is_some() || r.u.is_some() || r.s.is_some())
                && r.t_ms.is_none()
                && r.ut.is_none()
            {
                continue;
            }
            let sum = match (bs, r.s) {
                (None, None) => None,
                (b, s) => Some(b.unwrap_or(0.0) + s.map_or(0.0, |s| s.get())),
            };
            if !has_value && sum.is_none() {
                return None;
            }
            let name = format!("{bn}{}", r.n.as_deref().unwrap_or(""));
            if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return None;
            }
            let ms = bt_ms + r.t_ms.unwrap_or(0);
            let time_ns = if ms < (1 << 28) * 1000 {
                received_ns + ms * 1_000_000
            } else {
                ms * 1_000_000
            };
            let value = match &r.val {
                Val::None => None,
                Val::V(x) => Some(RawData::Number(bv + x.get())),
                Val::Vs(s) => Some(RawData::Text(Cow::Owned(s.clone()))),
                Val::Vb(b) => Some(RawData::Bool(*b)),
                Val::Vd(d) => Some(RawData::Data(Cow::Owned(arbitrary::base64url_bits(d)))),
            };
            out.push(Model {
                name,
                time_ns,
                unit: r.u.clone().or_else(|| bu.clone()),
                value,
                sum,
            });
        }
        // Chronological, records of one instant in pack order: insertion, the plain way.
        let mut sorted: Vec<Model> = Vec::new();
        for m in out {
            let at = sorted
                .iter()
                .rposition(|x| x.time_ns <= m.time_ns)
                .map_or(0, |k| k + 1);
            sorted.insert(at, m);
        }
        (!sorted.is_empty()).then_some(sorted)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1024))]
        #[test]
        fn resolution_matches_the_plain_model(
            pack in arbitrary::pack(),
            received_ns in 1_600_000_000_000_000_000i64..1_900_000_000_000_000_000,
        ) {
            let json = arbitrary::json(&pack);
            let records: Vec<Record<'_>> = serde_json::from_slice(&json).expect("valid JSON");
            let got = resolve(records, received_ns).ok().map(|r| {
                r.into_iter()
                    .map(|r| Model {
                        name: r.name.to_string(),
                        time_ns: r.time_ns,
                        unit: r.unit.map(Cow::into_owned),
                        value: r.value.map(owned),
                        sum: r.sum,
                    })
                    .collect::<Vec<_>>()
            });
            proptest::prop_assert_eq!(&got, &model(&pack, received_ns));
            if let Some(got) = got {
                proptest::prop_assert!(got.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
            }
        }
    }
}
