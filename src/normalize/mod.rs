//! Normalise: raw points → readings in canonical metrics and units, checked against physics and
//! the timestamp policy. Pure: no I/O, no clock (the receive time is an argument).

pub mod catalog;
pub mod dedup;
pub mod units;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::decode::{self, Points, RawIdent, RawTime};
use crate::ingest::route::{Captures, Route, Routes};
use crate::model::{Kind, Reading, Reason, Rejection, SensorRef, TimeSource};

/// What to do with a reading that carries no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTimestamp {
    /// Dead-letter the message (reason `missing_timestamp`).
    Reject,
    /// Use the gateway's receive time, flagged as such.
    ReceiveTime,
}

/// Validation rules that come from config.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest accepted payload, bytes.
    pub max_payload_bytes: usize,
    /// How far ahead of the receive time a device clock may be, ns.
    pub max_future_skew_ns: i64,
    /// How far behind the receive time a reading may be, ns.
    pub max_age_ns: i64,
    pub missing_timestamp: MissingTimestamp,
    /// Physical ranges that replace the catalog's, per (kind, metric).
    pub ranges: BTreeMap<(Kind, &'static str), (f64, f64)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_payload_bytes: 1 << 20,
            max_future_skew_ns: 300 * 1_000_000_000,
            max_age_ns: 3650 * 86_400 * 1_000_000_000,
            missing_timestamp: MissingTimestamp::Reject,
            ranges: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// The accepted range of a metric of a kind: configured, else the catalog's.
    pub fn range(&self, kind: Kind, def: &catalog::MetricDef) -> (f64, f64) {
        self.ranges
            .get(&(kind, def.name))
            .copied()
            .unwrap_or((def.min, def.max))
    }
}

/// The normalise stage as the pipeline runs it: routes and policy, and the memory of recent
/// values that drops exact repeats.
#[derive(Debug)]
pub struct Normaliser {
    routes: Routes,
    policy: Policy,
    dedup: dedup::Dedup,
}

impl Normaliser {
    pub fn new(routes: Routes, policy: Policy, dedup_capacity: usize) -> Normaliser {
        Normaliser {
            routes,
            policy,
            dedup: dedup::Dedup::new(dedup_capacity),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One message → its readings (repeats removed, counted in `duplicates`), or the reason it
    /// is refused.
    pub fn process(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_ns: i64,
        duplicates: &mut u64,
    ) -> Result<Vec<Reading>, Rejection> {
        let mut readings = process_routed(&self.routes, topic, payload, received_ns, &self.policy)?;
        *duplicates += self.dedup.filter(&mut readings);
        Ok(readings)
    }
}

/// The whole pure path for one message of the default layout (see [`process_routed`]).
pub fn process(
    topic_name: &str,
    payload: &[u8],
    received_ns: i64,
    policy: &Policy,
) -> Result<Vec<Reading>, Rejection> {
    static DEFAULT: OnceLock<Routes> = OnceLock::new();
    let routes = DEFAULT.get_or_init(Routes::default_layout);
    process_routed(routes, topic_name, payload, received_ns, policy)
}

/// The whole pure path for one message: topic → route → captures, payload → points, points →
/// readings. The message is the unit of acceptance: any refusal refuses all of it.
pub fn process_routed(
    routes: &Routes,
    topic_name: &str,
    payload: &[u8],
    received_ns: i64,
    policy: &Policy,
) -> Result<Vec<Reading>, Rejection> {
    if payload.len() > policy.max_payload_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!(
                "the payload has {} bytes; mqtt.max_packet_size allows {}",
                payload.len(),
                policy.max_payload_bytes
            ),
        ));
    }
    let route = routes.find(topic_name)?;
    let caps = route.captures(topic_name)?;
    let metric = caps.metric.or(route.fixed.metric.as_deref());
    let points = decode::decode(
        payload,
        route,
        metric,
        route.fixed.unit.as_deref(),
        received_ns,
    )?;
    let missing = route.missing_timestamp.unwrap_or(policy.missing_timestamp);
    normalise(route, &caps, points, received_ns, policy, missing)
}

/// Raw points → readings: identity from payload, topic and route (in that order), times by the
/// policy, values in canonical units within their ranges.
pub fn normalise(
    route: &Route,
    caps: &Captures<'_>,
    points: Points<'_>,
    received_ns: i64,
    policy: &Policy,
    missing: MissingTimestamp,
) -> Result<Vec<Reading>, Rejection> {
    let mut readings = Vec::with_capacity(points.len());
    // Most messages name one sensor, by the topic: build it once, and clone it only when another
    // point of the message needs it too.
    let single = points.len() == 1;
    let mut topic_sensor: Option<SensorRef> = None;
    for point in points {
        let sensor = if point.ident != RawIdent::default() || single {
            identify(&point.ident, caps, route)?
        } else {
            match &topic_sensor {
                Some(s) => s.clone(),
                None => {
                    let s = identify(&point.ident, caps, route)?;
                    topic_sensor = Some(s.clone());
                    s
                }
            }
        };
        let (time_ns, time_source) = resolve_time(point.time, received_ns, policy, missing)?;
        if point.values.is_empty() {
            return Err(Rejection::new(
                Reason::BadShape,
                "the message carries no metrics",
            ));
        }
        // The interval first: counts per hour convert through it.
        let interval_s = match point.values.iter().find(|v| v.name == "interval") {
            Some(iv) => Some(canonical_value(&sensor, iv, policy)?),
            None => None,
        };
        let ctx = units::Context { interval_s };
        let mut values = Vec::with_capacity(point.values.len());
        for raw in &point.values {
            let def = catalog::lookup(sensor.kind, &raw.name).ok_or_else(|| {
                let known: Vec<&str> = catalog::metrics_of(sensor.kind)
                    .iter()
                    .map(|d| d.name)
                    .collect();
                Rejection::new(
                    Reason::UnknownMetric,
                    format!(
                        "{} is not a metric of {} sensors (known: {})",
                        raw.name,
                        sensor.kind,
                        known.join(", ")
                    ),
                )
            })?;
            if values
                .iter()
                .any(|(d, _): &(&catalog::MetricDef, f64)| d.name == def.name)
            {
                return Err(Rejection::new(
                    Reason::BadShape,
                    format!("{} is given twice for the same sensor and time", def.name),
                ));
            }
            let number = number_of(raw, def)?;
            let v = units::to_canonical(number, raw.unit.as_deref(), def, ctx)
                .map_err(|e| Rejection::new(Reason::BadUnit, e.0))?;
            check_range(sensor.kind, def, v, policy)?;
            values.push((def, v));
        }
        readings.push(Reading {
            sensor,
            time_ns,
            time_source,
            values,
        });
    }
    Ok(readings)
}

/// Who a point belongs to: what the payload says, else the topic's levels, else the route's
/// fixed values. Each of kind, city, district and sensor id must come from somewhere.
fn identify(
    ident: &RawIdent<'_>,
    caps: &Captures<'_>,
    route: &Route,
) -> Result<SensorRef, Rejection> {
    let pick = |what: &str,
                payload: &Option<std::borrow::Cow<'_, str>>,
                topic: Option<&str>,
                fixed: &Option<String>| {
        let v = payload
            .as_deref()
            .or(topic)
            .or(fixed.as_deref())
            .ok_or_else(|| {
                Rejection::new(
                    Reason::BadTopic,
                    format!(
                        "route {:?} names no {what}: not the payload, not the topic (template), not the route ({what} = \"...\")",
                        route.name
                    ),
                )
            })?;
        if v.is_empty() || crate::ingest::route::has_control(v) {
            return Err(Rejection::new(
                Reason::BadShape,
                format!("{what} {v:?} must be non-empty text without control characters"),
            ));
        }
        Ok(v.to_owned())
    };
    let kind = match ident.kind.as_deref().or(caps.kind) {
        Some(k) => k.parse::<Kind>().map_err(|()| {
            Rejection::new(
                Reason::UnknownKind,
                format!("unknown kind {k:?} (known: {})", Kind::known_list()),
            )
        })?,
        None => route.fixed.kind.ok_or_else(|| {
            Rejection::new(
                Reason::UnknownKind,
                format!(
                    "route {:?} names no kind: not the payload, not the topic (template), not the route (kind = \"...\")",
                    route.name
                ),
            )
        })?,
    };
    Ok(SensorRef {
        city: pick("city", &ident.city, caps.city, &route.fixed.city)?,
        district: pick(
            "district",
            &ident.district,
            caps.district,
            &route.fixed.district,
        )?,
        kind,
        sensor_id: pick(
            "sensor_id",
            &ident.sensor_id,
            caps.sensor_id,
            &route.fixed.sensor_id,
        )?,
    })
}

fn canonical_value(
    sensor: &SensorRef,
    raw: &decode::RawValue<'_>,
    policy: &Policy,
) -> Result<f64, Rejection> {
    let def = catalog::lookup(sensor.kind, &raw.name).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownMetric,
            format!("{} is not a metric of {} sensors", raw.name, sensor.kind),
        )
    })?;
    let v = units::to_canonical(
        number_of(raw, def)?,
        raw.unit.as_deref(),
        def,
        units::Context::default(),
    )
    .map_err(|e| Rejection::new(Reason::BadUnit, e.0))?;
    check_range(sensor.kind, def, v, policy)?;
    Ok(v)
}

/// The number a value stands for: a finite number, or for a flag a boolean (1 or 0). Text and
/// opaque data fit no metric of the catalog and are refused, naming what arrived.
fn number_of(raw: &decode::RawValue<'_>, def: &catalog::MetricDef) -> Result<f64, Rejection> {
    match &raw.value {
        decode::RawData::Number(v) if v.is_finite() => Ok(*v),
        decode::RawData::Number(v) => Err(Rejection::new(
            Reason::BadValue,
            format!("{} is {v}, not a finite number", raw.name),
        )),
        decode::RawData::Bool(b) if def.quantity == units::Quantity::Flag => {
            Ok(if *b { 1.0 } else { 0.0 })
        }
        other => Err(Rejection::new(
            Reason::BadValue,
            format!(
                "{} is {}; it must be {}",
                raw.name,
                other.describe(),
                if def.quantity == units::Quantity::Flag {
                    "a boolean (or 0/1)"
                } else {
                    "a number"
                }
            ),
        )),
    }
}

fn check_range(
    kind: Kind,
    def: &catalog::MetricDef,
    v: f64,
    policy: &Policy,
) -> Result<(), Rejection> {
    let (min, max) = policy.range(kind, def);
    if !v.is_finite() || v < min || v > max {
        return Err(Rejection::new(
            Reason::OutOfRange,
            format!(
                "{} = {} {} is outside its physical range {} to {} {}",
                def.name, v, def.unit, min, max, def.unit
            ),
        ));
    }
    Ok(())
}

fn resolve_time(
    time: RawTime,
    received_ns: i64,
    policy: &Policy,
    missing: MissingTimestamp,
) -> Result<(i64, TimeSource), Rejection> {
    let t = match time {
        RawTime::UnixNs(t) => t,
        RawTime::Absent => match missing {
            MissingTimestamp::ReceiveTime => return Ok((received_ns, TimeSource::Receive)),
            MissingTimestamp::Reject => return Err(Rejection::new(
                Reason::MissingTimestamp,
                "the message has no timestamp (ts) and validation.missing_timestamp = \"reject\"",
            )),
        },
    };
    if t > received_ns.saturating_add(policy.max_future_skew_ns) {
        return Err(Rejection::new(
            Reason::FutureTimestamp,
            format!(
                "timestamp {} is {} ahead of the receive time; validation.max_future_skew allows {}",
                fmt_ns(t),
                fmt_duration_ns(t - received_ns),
                fmt_duration_ns(policy.max_future_skew_ns)
            ),
        ));
    }
    if t < received_ns.saturating_sub(policy.max_age_ns) {
        let hint = if t < 100_000_000_000_000_000 {
            " (epoch milliseconds expected; was it sent in seconds?)"
        } else {
            ""
        };
        return Err(Rejection::new(
            Reason::TooOld,
            format!(
                "timestamp {} is older than validation.max_age ({}){hint}",
                fmt_ns(t),
                fmt_duration_ns(policy.max_age_ns)
            ),
        ));
    }
    Ok((t, TimeSource::Device))
}

/// RFC 3339 text of a ns timestamp, for messages.
pub fn fmt_ns(t: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(t).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn fmt_duration_ns(d: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(
        d.unsigned_abs() / 1_000_000_000,
    ))
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    const NOW: i64 = 1_768_446_000_000_000_000; // 2026-01-15T03:00:00Z

    fn ok(topic: &str, payload: &str) -> Vec<Reading> {
        process(topic, payload.as_bytes(), NOW, &Policy::default())
            .unwrap_or_else(|e| panic!("{payload}: {e}"))
    }

    fn refused(topic: &str, payload: &[u8]) -> Rejection {
        process(topic, payload, NOW, &Policy::default()).expect_err("must be refused")
    }

    fn value(r: &Reading, name: &str) -> f64 {
        r.values
            .iter()
            .find(|(d, _)| d.name == name)
            .map(|(_, v)| *v)
            .expect(name)
    }

    #[test]
    fn json_object_becomes_a_canonical_reading() {
        let r = ok(
            "city/almaty/almaly/air/st-1",
            r#"{"ts":"2026-01-15T07:59:00+05:00","pm2_5":0.035,"no2":100,"temperature":263.15,"units":{"pm2_5":"mg/m3","no2":"ppb","temperature":"K"}}"#,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].sensor.kind, Kind::Air);
        assert_eq!(r[0].sensor.sensor_id, "st-1");
        assert_eq!(r[0].time_ns, NOW - 60_000_000_000);
        assert_eq!(r[0].time_source, TimeSource::Device);
        assert!((value(&r[0], "pm2_5") - 35.0).abs() < 1e-9);
        assert!((value(&r[0], "no2") - 188.1799591002045).abs() < 1e-9);
        assert!((value(&r[0], "temperature") + 10.0).abs() < 1e-9);
    }

    #[test]
    fn senml_pack_becomes_readings_per_instant() {
        let r = ok(
            "city/almaty/medeu/heat/h-7",
            r#"[{"bn":"urn:dev:h-7:","bt":1768445940,"n":"energy","u":"Gcal","v":2},{"n":"flow","u":"l/s","v":1}]"#,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(value(&r[0], "energy"), 2326.0);
        assert!((value(&r[0], "flow") - 3.6).abs() < 1e-12);
        assert_eq!(r[0].time_ns, 1_768_445_940_000_000_000);
    }

    #[test]
    fn traffic_volume_per_hour_converts_through_the_interval() {
        let r = ok(
            "city/almaty/auezov/traffic/det-1",
            r#"{"ts":1768446000000,"volume":1800,"interval":1,"speed":12.5,"occupancy":0.3,"units":{"volume":"veh/h","interval":"min","speed":"m/s","occupancy":"/"}}"#,
        );
        assert_eq!(value(&r[0], "volume"), 30.0);
        assert_eq!(value(&r[0], "interval"), 60.0);
        assert_eq!(value(&r[0], "speed"), 45.0);
        assert!((value(&r[0], "occupancy") - 30.0).abs() < 1e-9);
    }

    #[test]
    fn bad_inputs_are_refused_with_their_reason() {
        let t = "city/almaty/almaly/air/st-1";
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            (t, b"".to_vec(), Reason::EmptyPayload),
            (t, b"hello".to_vec(), Reason::NotJson),
            (
                t,
                br#"{"pm2_5":"n/a","ts":1768446000000}"#.to_vec(),
                Reason::BadValue,
            ),
            (t, br#"{"pm2_5":1}"#.to_vec(), Reason::MissingTimestamp),
            (
                t,
                br#"{"pm2_5":1,"ts":"soon"}"#.to_vec(),
                Reason::BadTimestamp,
            ),
            (
                t,
                br#"{"pm2_5":1,"ts":1768449600000}"#.to_vec(),
                Reason::FutureTimestamp,
            ),
            (
                t,
                br#"{"pm2_5":1,"ts":1768446000}"#.to_vec(),
                Reason::TooOld,
            ),
            (
                t,
                br#"{"pm2_5":-3,"ts":1768446000000}"#.to_vec(),
                Reason::OutOfRange,
            ),
            (
                t,
                br#"{"humidity":140,"ts":1768446000000}"#.to_vec(),
                Reason::OutOfRange,
            ),
            (
                t,
                br#"{"noise":40,"ts":1768446000000}"#.to_vec(),
                Reason::UnknownMetric,
            ),
            (
                t,
                br#"{"pm2_5":4,"ts":1768446000000,"units":{"pm2_5":"km/h"}}"#.to_vec(),
                Reason::BadUnit,
            ),
            (t, br#"{"ts":1768446000000}"#.to_vec(), Reason::BadShape),
            (t, br#"[1,2]"#.to_vec(), Reason::BadShape),
            (
                "city/almaty/almaly/noise/x",
                br#"{"pm2_5":1}"#.to_vec(),
                Reason::UnknownKind,
            ),
            ("sensors/x", br#"{"pm2_5":1}"#.to_vec(), Reason::NoRoute),
            (
                "city/almaty/air/st-1",
                br#"{"pm2_5":1}"#.to_vec(),
                Reason::BadTopic,
            ),
            (t, vec![b' '; (1 << 20) + 1], Reason::TooLarge),
        ];
        for (topic, payload, reason) in cases {
            let e = refused(topic, &payload);
            assert_eq!(
                e.reason,
                reason,
                "{}: {e}",
                String::from_utf8_lossy(&payload[..payload.len().min(60)])
            );
        }
    }

    #[test]
    fn too_old_hints_at_seconds() {
        let e = refused("city/a/b/water/m", br#"{"volume":1,"ts":1768446000}"#);
        assert!(
            e.message.contains("was it sent in seconds?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn flags_take_booleans_and_other_metrics_refuse_them() {
        let r = ok(
            "city/almaty/medeu/water/m-1",
            r#"{"ts":"2026-01-15T07:59:00+05:00","volume":12.5,"leak_alarm":true,"tamper_alarm":0}"#,
        );
        assert_eq!(value(&r[0], "leak_alarm"), 1.0);
        assert_eq!(value(&r[0], "tamper_alarm"), 0.0);
        let e = refused(
            "city/almaty/medeu/water/m-1",
            br#"{"ts":"2026-01-15T07:59:00+05:00","volume":true}"#,
        );
        assert_eq!(e.reason, Reason::BadValue);
        assert_eq!(e.message, "volume is a boolean; it must be a number");
        let e = refused(
            "city/almaty/medeu/water/m-1",
            br#"{"ts":"2026-01-15T07:59:00+05:00","leak_alarm":"yes"}"#,
        );
        assert_eq!(
            e.message,
            "leak_alarm is the text \"yes\", expected a number (or a boolean, for a flag)"
        );
        let e = refused(
            "city/almaty/medeu/water/m-1",
            br#"{"ts":"2026-01-15T07:59:00+05:00","leak_alarm":2}"#,
        );
        assert_eq!(e.reason, Reason::OutOfRange);
    }

    #[test]
    fn receive_time_policy_flags_the_reading() {
        let policy = Policy {
            missing_timestamp: MissingTimestamp::ReceiveTime,
            ..Policy::default()
        };
        let r = process("city/a/b/water/m", br#"{"volume":1}"#, NOW, &policy).expect("accepted");
        assert_eq!(r[0].time_ns, NOW);
        assert_eq!(r[0].time_source, TimeSource::Receive);
    }
}
