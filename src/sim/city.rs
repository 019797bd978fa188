//! A scenario played out: every device of the city with its model, reporting interval and phase,
//! payload format, clock and faults, and the messages they send in time order. Pure and
//! deterministic for a seed: no sockets, no clock (the caller says which sim time has come).
//!
//! Each valid message is recorded as the readings it must produce — (sensor, device time) — so the
//! audit can check the store afterwards; a device's readings carry consecutive sequence numbers
//! (`seq` in the record), and a gap in what was stored is a lost reading.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::models::meter::{DistrictInput, Meter, MeterFaults, MeterProfile};
use super::models::{air::Station, status::Health, traffic::Detector, Value};
use super::scenario::{PayloadFormat, Scenario};
use crate::model::Kind;
use crate::registry::{Role, SensorInfo};

/// How a message should end up at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Stored: the readings of `device` at `time_ms` (device time).
    Stored,
    /// Broken on purpose: must be dead-lettered.
    Malformed,
    /// A second copy of a message already sent: must not be stored twice.
    Duplicate,
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    /// Which publisher connection sends it.
    pub connection: usize,
    pub kind: Kind,
    pub fate: Fate,
    /// Values in the message (for the report: values per second).
    pub values: usize,
}

/// A reading the store must hold exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expected {
    /// Index into [`City::sensor_ids`].
    pub sensor: u32,
    pub time_ms: i64,
    /// The device's sequence number of this reading (0, 1, 2, ...).
    pub seq: u32,
}

enum Model {
    Detector(Box<Detector>),
    Station(Box<Station>),
    Meter(Box<Meter>),
    Input(Box<DistrictInput>),
    Health(Box<Health>),
}

struct Device {
    kind: Kind,
    /// Index of its fleet in the scenario.
    fleet: usize,
    district: usize,
    /// Sensor index of its first (or only) sensor id; traffic lanes follow in order.
    sensor: u32,
    interval_ns: i64,
    format: PayloadFormat,
    qos: u8,
    skew_ns: i64,
    /// Offline from..to (sim time): messages due then are held and sent at `to`.
    offline: Option<(i64, i64)>,
    connection: usize,
    model: Model,
    seqs: Vec<u32>,
    last_ns: Option<i64>,
}

/// Running totals per kind, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub messages: u64,
    pub readings: u64,
    pub malformed: u64,
    pub duplicates: u64,
    /// Values in the duplicated messages (what the gateway's repeat counter counts).
    pub duplicate_values: u64,
    pub out_of_order: u64,
    pub late: u64,
    pub backlog: u64,
}

/// The city and its clock.
pub struct City {
    pub scenario: Scenario,
    devices: Vec<Device>,
    /// Sensor ids, as they appear in topics.
    pub sensor_ids: Vec<String>,
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    /// Consumer increments since the input meter's last report, per (district, kind).
    accrued: Vec<[f64; KINDS]>,
    rng: SmallRng,
    /// Messages moved in time by faults: (send at sim ns, message).
    held: BinaryHeap<Reverse<(i64, u64)>>,
    held_messages: std::collections::HashMap<u64, Message>,
    held_next: u64,
    /// One message per connection kept back to be sent after the next (out of order).
    swapped: Vec<Option<Message>>,
    pub expected: Vec<Expected>,
    pub counts: [Counts; KINDS],
    pub connections: usize,
}

fn mix(a: u64, b: u64) -> u64 {
    // SplitMix64 of the pair: stable per (seed, id) streams.
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many kinds there are (per-kind tables are indexed by `kind_index`).
const KINDS: usize = Kind::ALL.len();

fn kind_index(k: Kind) -> usize {
    Kind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

impl City {
    /// Builds every device; the first reports fall in [start_ns, start_ns + interval).
    pub fn new(scenario: Scenario, start_ns: i64) -> City {
        let seed = scenario.seed;
        let mut rng = SmallRng::seed_from_u64(mix(seed, 0x5EED));
        let mut devices = Vec::new();
        let mut sensor_ids = Vec::new();
        let faults = scenario.faults.clone();
        let pct = |rng: &mut SmallRng, p: f64| p > 0.0 && rng.random_range(0.0..100.0) < p;
        let mut next_id: u64 = 0;
        for (fi, f) in scenario.fleets.iter().enumerate() {
            for (d, dname) in scenario.districts.iter().enumerate() {
                let n = scenario.sensors_in(f, d);
                let total = n + usize::from(f.input_meter_loss.is_some());
                for i in 0..total {
                    next_id += 1;
                    let id = next_id;
                    let is_input = i == n;
                    let short = match (f.kind, is_input) {
                        (_, true) => format!("{}-{dname}-input", f.kind.as_str()),
                        (Kind::Traffic, _) => format!("det-{dname}-{:04}", i + 1),
                        (Kind::Air, _) => format!("aq-{dname}-{:02}", i + 1),
                        (Kind::Status, _) => {
                            format!("{}-{dname}-{:04}", f.status_prefix(), i + 1)
                        }
                        (k, _) => format!("{}-{dname}-{:05}", &k.as_str()[..1], i + 1),
                    };
                    let model = match f.kind {
                        Kind::Traffic => Model::Detector(Box::new(Detector::new(
                            seed,
                            id,
                            f.lanes,
                            f.capacity,
                            f.free_flow,
                        ))),
                        Kind::Air => Model::Station(Box::new(Station::new(seed, d as u32, id))),
                        Kind::Status => Model::Health(Box::new(Health::new(seed, id))),
                        k if is_input => Model::Input(Box::new(DistrictInput::new(
                            k,
                            f.input_meter_loss.unwrap_or(0.0),
                            rng.random_range(1.0e5..1.0e6),
                        ))),
                        k => {
                            let leaks = k == Kind::Water && pct(&mut rng, faults.leaks);
                            let resets = pct(&mut rng, faults.resets);
                            Model::Meter(Box::new(Meter::new(
                                seed,
                                id,
                                k,
                                MeterProfile::typical(k),
                                MeterFaults {
                                    // A leaking meter starts leaking within about a week.
                                    leak_per_day: if leaks { 0.15 } else { 0.0 },
                                    reset_per_day: if resets { 0.1 } else { 0.0 },
                                },
                            )))
                        }
                    };
                    let lanes = if f.kind == Kind::Traffic { f.lanes } else { 1 };
                    let sensor = sensor_ids.len() as u32;
                    if f.kind == Kind::Traffic {
                        for l in 1..=lanes {
                            sensor_ids.push(format!("{short}-l{l}"));
                        }
                    } else {
                        sensor_ids.push(short);
                    }
                    let format = match f.format {
                        PayloadFormat::Mixed if mix(seed, id).is_multiple_of(2) => {
                            PayloadFormat::Senml
                        }
                        PayloadFormat::Mixed => PayloadFormat::Json,
                        other => other,
                    };
                    let interval_ns = f.interval.as_nanos() as i64;
                    let skew_ns = if pct(&mut rng, faults.clock_skew) {
                        let max = faults.max_skew.as_nanos() as i64;
                        // Whole milliseconds: device clocks tick in ms here.
                        (rng.random_range(-max..=max) / 1_000_000) * 1_000_000
                    } else {
                        0
                    };
                    let offline = if pct(&mut rng, faults.offline) && !faults.offline_for.is_zero()
                    {
                        let from = start_ns + rng.random_range(0..interval_ns.max(1) * 4);
                        Some((from, from + faults.offline_for.as_nanos() as i64))
                    } else {
                        None
                    };
                    devices.push(Device {
                        kind: f.kind,
                        fleet: fi,
                        district: d,
                        sensor,
                        interval_ns,
                        format,
                        qos: f.qos,
                        skew_ns,
                        offline,
                        connection: 0,
                        model,
                        seqs: vec![0; lanes as usize],
                        last_ns: None,
                    });
                }
            }
        }
        // Connections: consecutive devices share one, up to the scenario's maximum.
        let per = scenario.load.sensors_per_connection.max(1);
        let connections = devices
            .len()
            .div_ceil(per)
            .clamp(1, scenario.load.max_connections);
        let mut queue = BinaryHeap::with_capacity(devices.len());
        for (i, dev) in devices.iter_mut().enumerate() {
            dev.connection = (i / per) % connections;
            // Phases spread the fleet over its interval, in whole milliseconds.
            let phase = (mix(seed, i as u64) % dev.interval_ns.max(1) as u64) as i64 / 1_000_000
                * 1_000_000;
            queue.push(Reverse((start_ns + phase, i as u32)));
        }
        let districts = scenario.districts.len();
        City {
            scenario,
            devices,
            sensor_ids,
            queue,
            accrued: vec![[0.0; KINDS]; districts],
            rng,
            held: BinaryHeap::new(),
            held_messages: std::collections::HashMap::new(),
            held_next: 0,
            swapped: vec![None; connections],
            expected: Vec::new(),
            counts: Default::default(),
            connections,
        }
    }

    /// Sim time of the next message (None: nothing left, which never happens: sensors report
    /// forever).
    pub fn next_due(&self) -> Option<i64> {
        let a = self.queue.peek().map(|Reverse((t, _))| *t);
        let b = self.held.peek().map(|Reverse((t, _))| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every message due up to sim time `until_ns` (inclusive), faults applied, in send order.
    pub fn advance(&mut self, until_ns: i64, out: &mut Vec<Message>) {
        loop {
            let next_device = self
                .queue
                .peek()
                .map(|Reverse((t, _))| *t)
                .filter(|t| *t <= until_ns);
            let next_held = self
                .held
                .peek()
                .map(|Reverse((t, _))| *t)
                .filter(|t| *t <= until_ns);
            match (next_device, next_held) {
                (Some(a), Some(b)) if b <= a => self.release_held(out),
                (None, Some(_)) => self.release_held(out),
                (Some(_), _) => {
                    let Some(Reverse((t, i))) = self.queue.pop() else {
                        break;
                    };
                    let dev = &self.devices[i as usize];
                    self.queue.push(Reverse((t + dev.interval_ns, i)));
                    self.report(i as usize, t, out);
                }
                (None, None) => break,
            }
        }
    }

    fn release_held(&mut self, out: &mut Vec<Message>) {
        if let Some(Reverse((_, key))) = self.held.pop() {
            if let Some(m) = self.held_messages.remove(&key) {
                self.emit(m, out);
            }
        }
    }

    fn hold(&mut self, at_ns: i64, m: Message) {
        self.held_next += 1;
        self.held.push(Reverse((at_ns, self.held_next)));
        self.held_messages.insert(self.held_next, m);
    }

    /// Hands a message out, or keeps it back one place (out of order).
    fn emit(&mut self, m: Message, out: &mut Vec<Message>) {
        let c = m.connection;
        if let Some(prev) = self.swapped[c].take() {
            out.push(m);
            out.push(prev);
        } else {
            out.push(m);
        }
    }

    /// One device's report at sim time `t` (its clock may be off).
    fn report(&mut self, i: usize, t: i64, out: &mut Vec<Message>) {
        let city = self.scenario.city.clone();
        let faults = self.scenario.faults.clone();
        let dev = &mut self.devices[i];
        let dt_s = dev
            .last_ns
            .map_or(dev.interval_ns as f64 / 1e9, |l| (t - l) as f64 / 1e9);
        dev.last_ns = Some(t);
        let kidx = kind_index(dev.kind);
        let district = dev.district;
        let lanes: Vec<Vec<Value>> = match &mut dev.model {
            Model::Detector(d) => d.report(t, dev.interval_ns as f64 / 1e9),
            Model::Station(s) => vec![s.report(t)],
            Model::Meter(m) => {
                let v = m.report(t);
                self.accrued[district][kidx] += m.last_increment();
                vec![v]
            }
            Model::Input(inp) => {
                let inc = std::mem::take(&mut self.accrued[district][kidx]);
                vec![inp.report(t, inc, dt_s)]
            }
            Model::Health(h) => vec![h.report(t)],
        };
        let dev = &mut self.devices[i];
        let device_ns = t + dev.skew_ns;
        let time_ms = device_ns.div_euclid(1_000_000);
        let (kind, format, qos, connection, offline) =
            (dev.kind, dev.format, dev.qos, dev.connection, dev.offline);
        let mut made = Vec::with_capacity(lanes.len());
        for (lane, values) in lanes.into_iter().enumerate() {
            if values.is_empty() {
                continue;
            }
            let sensor = dev.sensor + lane as u32;
            let seq = dev.seqs[lane];
            dev.seqs[lane] += 1;
            made.push((sensor, seq, values));
        }
        for (sensor, seq, values) in made {
            let sensor_id = &self.sensor_ids[sensor as usize];
            let dname = &self.scenario.districts[district];
            let topic = format!("city/{city}/{dname}/{}/{sensor_id}", kind.as_str());
            let malformed = roll(&mut self.rng, faults.malformed);
            let payload = if malformed {
                malformed_payload(self.rng.random_range(0..4u32), time_ms)
            } else {
                encode(format, kind, sensor_id, time_ms, &values)
            };
            let c = &mut self.counts[kind_index(kind)];
            c.messages += 1;
            let fate = if malformed {
                c.malformed += 1;
                Fate::Malformed
            } else {
                c.readings += 1;
                self.expected.push(Expected {
                    sensor,
                    time_ms,
                    seq,
                });
                Fate::Stored
            };
            let m = Message {
                topic,
                payload: payload.into_bytes(),
                qos,
                connection,
                kind,
                fate,
                values: values.len(),
            };
            let duplicate = !malformed && roll(&mut self.rng, faults.duplicates);
            let copy = duplicate.then(|| Message {
                fate: Fate::Duplicate,
                ..m.clone()
            });
            let k = kind_index(kind);
            if let Some((_, to)) = offline.filter(|(from, to)| (*from..*to).contains(&t)) {
                // Offline: kept on the device, sent with its backlog when it comes back.
                self.counts[k].backlog += 1;
                self.hold(to, m);
            } else if !malformed && roll(&mut self.rng, faults.late) && !faults.late_by.is_zero() {
                self.counts[k].late += 1;
                self.hold(t + faults.late_by.as_nanos() as i64, m);
            } else if roll(&mut self.rng, faults.out_of_order) && self.swapped[connection].is_none()
            {
                self.counts[k].out_of_order += 1;
                self.swapped[connection] = Some(m);
            } else {
                self.emit(m, out);
            }
            if let Some(copy) = copy {
                self.counts[k].duplicates += 1;
                self.counts[k].duplicate_values += copy.values as u64;
                self.emit(copy, out);
            }
        }
    }

    /// Everything still held back by faults, in order (the end of a run).
    pub fn flush(&mut self, out: &mut Vec<Message>) {
        while !self.held.is_empty() {
            self.release_held(out);
        }
        for s in self.swapped.iter_mut() {
            if let Some(m) = s.take() {
                out.push(m);
            }
        }
    }

    /// The city's device registry, as `qala sensors import` takes it, in device order: every
    /// sensor id with its kind, district, sphere and its fleet's interval as the expected one;
    /// district input meters (role `district_input`) with the population they serve
    /// ([`super::scenario::Scenario::input_population`]), consumer meters with a household
    /// (`household_size`) and their register's size, traffic lanes with the fleet's free-flow
    /// speed.
    pub fn registry(&self) -> Vec<SensorInfo> {
        let s = &self.scenario;
        let mut out = Vec::with_capacity(self.sensor_ids.len());
        for dev in &self.devices {
            let f = &s.fleets[dev.fleet];
            let (role, population, register_max, lanes) = match &dev.model {
                Model::Input(_) => (
                    Role::DistrictInput,
                    Some(s.input_population(f, dev.district)),
                    None,
                    1,
                ),
                Model::Meter(m) => (
                    Role::Consumer,
                    Some(s.household_size),
                    Some(10f64.powi(MeterProfile::typical(m.kind()).digits as i32)),
                    1,
                ),
                Model::Detector(_) => (Role::Consumer, None, None, usize::from(f.lanes)),
                Model::Station(_) | Model::Health(_) => (Role::Consumer, None, None, 1),
            };
            for lane in 0..lanes {
                out.push(SensorInfo {
                    sensor_id: self.sensor_ids[dev.sensor as usize + lane].clone(),
                    kind: dev.kind.as_str().to_owned(),
                    city: s.city.clone(),
                    district: s.districts[dev.district].clone(),
                    sphere: f.sphere(),
                    expected_interval: f.interval,
                    population,
                    role,
                    free_flow_speed: (dev.kind == Kind::Traffic).then_some(f.free_flow),
                    register_max,
                    latitude: None,
                    longitude: None,
                });
            }
        }
        out
    }

    /// Totals over every kind.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in &self.counts {
            t.messages += c.messages;
            t.readings += c.readings;
            t.malformed += c.malformed;
            t.duplicates += c.duplicates;
            t.duplicate_values += c.duplicate_values;
            t.out_of_order += c.out_of_order;
            t.late += c.late;
            t.backlog += c.backlog;
        }
        t
    }
}

fn roll(rng: &mut SmallRng, pct: f64) -> bool {
    pct > 0.0 && rng.random_range(0.0..100.0) < pct
}

/// A payload as devices of the format send it, with the units they use.
fn encode(
    format: PayloadFormat,
    kind: Kind,
    sensor_id: &str,
    time_ms: i64,
    values: &[Value],
) -> String {
    // Device units: what real meters and stations send (the gateway converts them back).
    let device = |metric: &str, v: f64| -> (f64, Option<&'static str>) {
        match (kind, metric) {
            (Kind::Air, "no2" | "so2" | "o3") => (v, Some("ug/m3")),
            (Kind::Air, "co") => (v / 1000.0, Some("mg/m3")),
            (Kind::Heat, "energy") => (v / 1163.0, Some("Gcal")),
            (Kind::Water, "volume") if format == PayloadFormat::Json => (v * 1000.0, Some("l")),
            (Kind::Power, "energy") if format == PayloadFormat::Json => (v * 1000.0, Some("Wh")),
            _ => (v, None),
        }
    };
    let mut s = String::with_capacity(64 + values.len() * 32);
    match format {
        PayloadFormat::Senml => {
            let secs = time_ms.div_euclid(1000);
            let ms = time_ms.rem_euclid(1000);
            s.push('[');
            for (i, (metric, v)) in values.iter().enumerate() {
                let (v, unit) = device(metric, *v);
                if i == 0 {
                    let _ = write!(
                        s,
                        r#"{{"bn":"urn:dev:qala:{sensor_id}:","bt":{secs}.{ms:03},"n":"{metric}""#
                    );
                } else {
                    let _ = write!(s, r#",{{"n":"{metric}""#);
                }
                if let Some(u) = unit {
                    let _ = write!(s, r#","u":"{u}""#);
                }
                let _ = write!(s, r#","v":{}}}"#, fmt_value(v));
            }
            s.push(']');
        }
        PayloadFormat::Json | PayloadFormat::Mixed => {
            let _ = write!(s, r#"{{"ts":{time_ms}"#);
            let mut units = String::new();
            for (metric, v) in values {
                let (v, unit) = device(metric, *v);
                let _ = write!(s, r#","{metric}":{}"#, fmt_value(v));
                if let Some(u) = unit {
                    if !units.is_empty() {
                        units.push(',');
                    }
                    let _ = write!(units, r#""{metric}":"{u}""#);
                }
            }
            if !units.is_empty() {
                let _ = write!(s, r#","units":{{{units}}}"#);
            }
            s.push('}');
        }
    }
    s
}

/// Shortest text that reads back as the same f64 (JSON has no NaN or ∞; models never make them).
fn fmt_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

/// The broken payloads real fleets produce, in rotation.
fn malformed_payload(n: u32, time_ms: i64) -> String {
    match n % 4 {
        0 => format!(r#"{{"ts":{time_ms},"volume":"ERR"}}"#),
        1 => r#"{"ts":"01/02/2026 10:00","volume":1}"#.to_owned(),
        2 => "\u{0}\u{1}garbage".to_owned(),
        _ => format!(r#"{{"ts":{time_ms},"#),
    }
}
