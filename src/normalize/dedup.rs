//! Repeats dropped before the sinks: a value already seen for the same sensor, metric and time
//! (a device resending, a bridge duplicating) costs a write and, in stores that keep duplicates
//! (VictoriaMetrics), a second sample. The memory is bounded: the oldest keys are forgotten first.
//!
//! Only exact repeats are dropped: the same key with a different value is a correction and goes
//! through (the sinks overwrite). A redelivered message whose first copy is still in the pipeline
//! is safe to drop: batches commit in order, so the first copy is durable before the repeat's
//! ack goes out.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher};

use crate::model::Reading;

/// Recently seen (sensor, metric, time) → value bits.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    seen: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>,
    order: VecDeque<u64>,
    hasher: BuildHasherDefault<DefaultHasher>,
}

impl Dedup {
    /// Remembers up to `capacity` keys; 0 remembers nothing (every value passes).
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity,
            seen: HashMap::with_capacity_and_hasher(capacity.min(1 << 20), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            hasher: Default::default(),
        }
    }

    /// Removes values seen before with the same bits, and readings left with none. Returns how
    /// many values were dropped.
    pub fn filter(&mut self, readings: &mut Vec<Reading>) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let mut dropped = 0;
        for r in readings.iter_mut() {
            let mut h = self.hasher.build_hasher();
            r.sensor.hash(&mut h);
            r.time_ns.hash(&mut h);
            let base = h.finish();
            r.values.retain(|(def, v)| {
                let mut h = self.hasher.build_hasher();
                base.hash(&mut h);
                def.name.hash(&mut h);
                let key = h.finish();
                let bits = v.to_bits();
                match self.seen.entry(key) {
                    Entry::Occupied(mut e) => {
                        if *e.get() == bits {
                            dropped += 1;
                            return false;
                        }
                        e.insert(bits);
                    }
                    Entry::Vacant(e) => {
                        e.insert(bits);
                        self.order.push_back(key);
                        if self.order.len() > self.capacity {
                            if let Some(old) = self.order.pop_front() {
                                self.seen.remove(&old);
                            }
                        }
                    }
                }
                true
            });
        }
        readings.retain(|r| !r.values.is_empty());
        dropped
    }
}

/// The keys are already hashes.
#[derive(Debug, Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, SensorRef, TimeSource};
    use crate::normalize::catalog;

    fn reading(sensor: &str, t: i64, volume: f64, flow: f64) -> Reading {
        Reading {
            sensor: SensorRef {
                city: "c".into(),
                district: "d".into(),
                kind: Kind::Water,
                sensor_id: sensor.into(),
            },
            time_ns: t,
            time_source: TimeSource::Device,
            values: vec![
                (
                    catalog::lookup(Kind::Water, "volume").expect("volume"),
                    volume,
                ),
                (catalog::lookup(Kind::Water, "flow").expect("flow"), flow),
            ],
        }
    }

    #[test]
    fn exact_repeats_go_corrections_and_others_stay() {
        let mut d = Dedup::new(100);
        let mut first = vec![reading("m1", 1, 10.0, 1.0), reading("m2", 1, 10.0, 1.0)];
        assert_eq!(d.filter(&mut first), 0);
        assert_eq!(first.len(), 2);
        // m1 repeated exactly: gone; m2 with a corrected flow: the flow stays, the volume goes;
        // m1 at a new time: stays.
        let mut again = vec![
            reading("m1", 1, 10.0, 1.0),
            reading("m2", 1, 10.0, 1.5),
            reading("m1", 2, 10.0, 1.0),
        ];
        assert_eq!(d.filter(&mut again), 3);
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].sensor.sensor_id, "m2");
        assert_eq!(again[0].values.len(), 1);
        assert_eq!(again[0].values[0].0.name, "flow");
        assert_eq!(again[1].time_ns, 2);
    }

    #[test]
    fn memory_is_bounded_and_zero_turns_it_off() {
        let mut d = Dedup::new(4);
        // 3 readings × 2 metrics = 6 keys into a memory of 4: the first reading is forgotten.
        let mut rs: Vec<Reading> = (0..3).map(|t| reading("m", t, 1.0, 1.0)).collect();
        assert_eq!(d.filter(&mut rs), 0);
        assert_eq!(d.seen.len(), 4);
        let mut again = vec![reading("m", 0, 1.0, 1.0), reading("m", 2, 1.0, 1.0)];
        assert_eq!(d.filter(&mut again), 2, "t=0 forgotten, t=2 remembered");
        let mut off = Dedup::new(0);
        let mut twice = vec![reading("m", 0, 1.0, 1.0), reading("m", 0, 1.0, 1.0)];
        assert_eq!(off.filter(&mut twice), 0);
        assert_eq!(twice.len(), 2);
    }
}
