//! Per-sensor window state: one bucket per event-time hour holding exactly what the indicator
//! functions need (running sums, extremes, exceedance counts, traffic totals, register ends), so
//! any window — the hour, the local day, the running 8 hours, the NowCast's 12 hours — is a fold
//! over a few buckets. Pure: readings in, aggregates out; no clock, no I/O.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::model::Kind;

pub const HOUR_NS: i64 = 3_600_000_000_000;
pub const DAY_NS: i64 = 24 * HOUR_NS;
const QUARTER_NS: i64 = HOUR_NS / 4;

/// The hour number (hours since the epoch) of an instant.
pub fn hour_of(t_ns: i64) -> i64 {
    t_ns.div_euclid(HOUR_NS)
}

/// One metric's aggregate within an hour. (Fields are renamed to one or two letters in the
/// engine's snapshot: there are millions of them.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAgg {
    /// Index into the engine's metric slots.
    #[serde(rename = "s")]
    pub slot: u8,
    #[serde(rename = "n")]
    pub n: u32,
    #[serde(rename = "u")]
    pub sum: f64,
    #[serde(rename = "l")]
    pub min: f64,
    #[serde(rename = "h")]
    pub max: f64,
    /// One-off values above 1, 5, 10, 20 × ПДК м.р. (air metrics with a norm).
    #[serde(rename = "a")]
    pub above: [u16; 4],
}

impl MetricAgg {
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
}

/// Detector totals within an hour (each sensor is one lane).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TrafficAgg {
    /// Vehicles counted.
    #[serde(rename = "v")]
    pub veh: f64,
    /// Seconds of counting covered by the intervals received.
    #[serde(rename = "t")]
    pub secs: f64,
    /// Σ vehicles × interval speed, over intervals that carry a speed...
    #[serde(rename = "s")]
    pub veh_speed: f64,
    /// ...and their vehicles.
    #[serde(rename = "w")]
    pub veh_with_speed: f64,
}

/// A cumulative register within an hour: its first and last reading by device time, a leak
/// alarm, and (water) the last register of each quarter hour for the minimum night flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterAgg {
    #[serde(rename = "ft")]
    pub first_t: i64,
    #[serde(rename = "fv")]
    pub first_v: f64,
    #[serde(rename = "lt")]
    pub last_t: i64,
    #[serde(rename = "lv")]
    pub last_v: f64,
    #[serde(rename = "a", default, skip_serializing_if = "std::ops::Not::not")]
    pub alarm: bool,
    /// Last register in each quarter (NaN: none); water only.
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub quarters: Option<[f64; 4]>,
    /// Device time of each quarter's last register (so out-of-order readings keep the latest).
    #[serde(rename = "qt", default, skip_serializing_if = "Option::is_none")]
    pub quarter_t: Option<[i64; 4]>,
}

/// What a sensor sent in one event-time hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    #[serde(rename = "h")]
    pub hour: i64,
    /// Readings (points) received for the hour.
    #[serde(rename = "c")]
    pub count: u32,
    /// Latest device time in the hour.
    #[serde(rename = "t")]
    pub max_t: i64,
    #[serde(rename = "m")]
    pub metrics: Vec<MetricAgg>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficAgg>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterAgg>,
}

impl Bucket {
    fn new(hour: i64) -> Bucket {
        Bucket {
            hour,
            count: 0,
            max_t: i64::MIN,
            metrics: Vec::new(),
            traffic: None,
            meter: None,
        }
    }

    pub fn metric(&self, slot: u8) -> Option<&MetricAgg> {
        self.metrics.iter().find(|m| m.slot == slot)
    }
}

/// One value of a reading, resolved to what the state keeps.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    /// A tracked metric (slot), with its ПДК м.р. in µg/m³ where it has one.
    Metric {
        slot: u8,
        value: f64,
        one_off_ugm3: Option<f64>,
    },
    /// A traffic interval: vehicles, seconds, mean speed.
    Traffic {
        veh: f64,
        secs: f64,
        speed: Option<f64>,
    },
    /// A cumulative register's value.
    Register(f64),
    /// A leak alarm flag set.
    Alarm,
}

/// A sensor's state: its place, kind, last report and hourly buckets in hour order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensorState {
    pub sensor_id: String,
    pub city: String,
    pub district: String,
    pub kind: Kind,
    /// Newest device time seen (also beyond the buckets kept).
    pub last_seen_ns: i64,
    pub buckets: VecDeque<Bucket>,
    /// Speeds of night intervals with traffic (km/h), newest last, for the free-flow speed.
    pub night_speeds: VecDeque<f32>,
    /// Minimum night flow of recent local days (day number, m³/h), for the leak rule.
    pub night_flows: Vec<(i64, f64)>,
}

/// How many night speeds a detector keeps to learn its free-flow speed.
pub const NIGHT_SPEEDS: usize = 256;

impl SensorState {
    pub fn new(sensor_id: &str, city: &str, district: &str, kind: Kind) -> SensorState {
        SensorState {
            sensor_id: sensor_id.to_owned(),
            city: city.to_owned(),
            district: district.to_owned(),
            kind,
            last_seen_ns: i64::MIN,
            buckets: VecDeque::new(),
            night_speeds: VecDeque::new(),
            night_flows: Vec::new(),
        }
    }

    /// The bucket of `hour`, created in order when missing.
    fn bucket_mut(&mut self, hour: i64) -> &mut Bucket {
        let at = match self.find(hour) {
            Ok(i) => i,
            Err(i) => {
                self.buckets.insert(i, Bucket::new(hour));
                i
            }
        };
        &mut self.buckets[at]
    }

    pub fn bucket(&self, hour: i64) -> Option<&Bucket> {
        self.find(hour).ok().map(|i| &self.buckets[i])
    }

    /// Where `hour`'s bucket is (Ok) or goes (Err). Readings and windows are mostly the newest
    /// hour: the last bucket is looked at first, which spares a binary search's cache misses.
    fn find(&self, hour: i64) -> Result<usize, usize> {
        let n = self.buckets.len();
        match self.buckets.back() {
            Some(b) if b.hour == hour => Ok(n - 1),
            Some(b) if b.hour < hour => Err(n),
            _ => self.buckets.binary_search_by_key(&hour, |b| b.hour),
        }
    }

    /// Buckets of hours [from, to), in order.
    pub fn range(&self, from: i64, to: i64) -> impl Iterator<Item = &Bucket> {
        let start = self.buckets.partition_point(|b| b.hour < from);
        self.buckets.range(start..).take_while(move |b| b.hour < to)
    }

    /// The newest bucket before hour `before` that has a register reading.
    pub fn register_before(&self, before: i64) -> Option<&MeterAgg> {
        let end = self.buckets.partition_point(|b| b.hour < before);
        self.buckets
            .range(..end)
            .rev()
            .find_map(|b| b.meter.as_ref())
    }

    /// Records one reading at `t_ns` (its values already resolved).
    pub fn add(&mut self, t_ns: i64, inputs: &[Input], night: bool) {
        self.last_seen_ns = self.last_seen_ns.max(t_ns);
        let quarter = (t_ns.rem_euclid(HOUR_NS) / QUARTER_NS) as usize;
        let water = self.kind == Kind::Water;
        let mut night_speed = None;
        let b = self.bucket_mut(hour_of(t_ns));
        b.count += 1;
        b.max_t = b.max_t.max(t_ns);
        for input in inputs {
            match *input {
                Input::Metric {
                    slot,
                    value,
                    one_off_ugm3,
                } => {
                    let m = match b.metrics.iter().position(|m| m.slot == slot) {
                        Some(i) => &mut b.metrics[i],
                        None => {
                            b.metrics.push(MetricAgg {
                                slot,
                                n: 0,
                                sum: 0.0,
                                min: f64::INFINITY,
                                max: f64::NEG_INFINITY,
                                above: [0; 4],
                            });
                            let last = b.metrics.len() - 1;
                            &mut b.metrics[last]
                        }
                    };
                    m.n += 1;
                    m.sum += value;
                    m.min = m.min.min(value);
                    m.max = m.max.max(value);
                    if let Some(norm) = one_off_ugm3 {
                        for (i, k) in [1.0, 5.0, 10.0, 20.0].into_iter().enumerate() {
                            if value > k * norm {
                                m.above[i] = m.above[i].saturating_add(1);
                            }
                        }
                    }
                }
                Input::Traffic { veh, secs, speed } => {
                    let a = b.traffic.get_or_insert_with(TrafficAgg::default);
                    a.veh += veh;
                    a.secs += secs;
                    if let Some(v) = speed.filter(|_| veh > 0.0) {
                        a.veh_speed += veh * v;
                        a.veh_with_speed += veh;
                        if night {
                            night_speed = Some(v);
                        }
                    }
                }
                Input::Register(v) => match &mut b.meter {
                    Some(m) => {
                        if t_ns < m.first_t {
                            m.first_t = t_ns;
                            m.first_v = v;
                        }
                        if t_ns >= m.last_t {
                            m.last_t = t_ns;
                            m.last_v = v;
                        }
                        if let (Some(q), Some(qt)) = (&mut m.quarters, &mut m.quarter_t) {
                            if t_ns >= qt[quarter] {
                                qt[quarter] = t_ns;
                                q[quarter] = v;
                            }
                        }
                    }
                    None => {
                        let (quarters, quarter_t) = if water {
                            let mut q = [f64::NAN; 4];
                            let mut qt = [i64::MIN; 4];
                            q[quarter] = v;
                            qt[quarter] = t_ns;
                            (Some(q), Some(qt))
                        } else {
                            (None, None)
                        };
                        b.meter = Some(MeterAgg {
                            first_t: t_ns,
                            first_v: v,
                            last_t: t_ns,
                            last_v: v,
                            alarm: false,
                            quarters,
                            quarter_t,
                        });
                    }
                },
                Input::Alarm => {
                    if let Some(m) = &mut b.meter {
                        m.alarm = true;
                    } else {
                        b.meter = Some(MeterAgg {
                            first_t: i64::MAX,
                            first_v: f64::NAN,
                            last_t: i64::MIN,
                            last_v: f64::NAN,
                            alarm: true,
                            quarters: None,
                            quarter_t: None,
                        });
                    }
                }
            }
        }
        if let Some(v) = night_speed {
            if self.night_speeds.len() == NIGHT_SPEEDS {
                self.night_speeds.pop_front();
            }
            self.night_speeds.push_back(v as f32);
        }
    }

    /// Drops buckets before hour `keep_from`, keeping the newest one with a register reading
    /// (the baseline of the consumption of the first bucket kept).
    pub fn prune(&mut self, keep_from: i64) {
        let cut = self.buckets.partition_point(|b| b.hour < keep_from);
        if cut == 0 {
            return;
        }
        let baseline = self
            .buckets
            .range(..cut)
            .rev()
            .find(|b| b.meter.as_ref().is_some_and(|m| m.last_t != i64::MIN))
            .cloned();
        self.buckets.drain(..cut);
        if let Some(mut b) = baseline {
            // Only the register's end matters for a baseline.
            b.metrics.clear();
            b.traffic = None;
            self.buckets.push_front(b);
        }
        self.night_flows.retain(|(d, _)| *d >= keep_from / 24 - 10);
    }

    /// Rough heap bytes held (for the bench's memory per sensor).
    pub fn heap_bytes(&self) -> usize {
        let b: usize = self
            .buckets
            .iter()
            .map(|b| {
                std::mem::size_of::<Bucket>()
                    + b.metrics.capacity() * std::mem::size_of::<MetricAgg>()
            })
            .sum();
        b + self.sensor_id.capacity()
            + self.city.capacity()
            + self.district.capacity()
            + self.night_speeds.capacity() * 4
            + self.night_flows.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_NS;

    #[test]
    fn buckets_fold_metrics_exceedances_and_registers_in_time_order() {
        let mut s = SensorState::new("a", "c", "d", Kind::Water);
        // Out of order: 10:50 then 10:05 then 10:20 (register 5.0, 3.0, 4.0).
        s.add(10 * H + 50 * 60_000_000_000, &[Input::Register(5.0)], false);
        s.add(10 * H + 5 * 60_000_000_000, &[Input::Register(3.0)], false);
        s.add(10 * H + 20 * 60_000_000_000, &[Input::Register(4.0)], false);
        let b = s.bucket(10).map(|b| b.meter.clone());
        let m = b.flatten().map(|m| (m.first_v, m.last_v, m.quarters));
        let (first, last, q) = m.unwrap_or((0.0, 0.0, None));
        assert_eq!((first, last), (3.0, 5.0));
        // Quarters: 10:05 → q0 = 3, 10:20 → q1 = 4, 10:50 → q3 = 5, q2 empty.
        let q = q.unwrap_or([0.0; 4]);
        assert_eq!((q[0], q[1], q[3]), (3.0, 4.0, 5.0));
        assert!(q[2].is_nan());

        let mut air = SensorState::new("s", "c", "d", Kind::Air);
        // ПДК м.р. of PM2.5 = 160 µg/m³: 100 (below), 900 (> 5×), 3300 (> 20×).
        for v in [100.0, 900.0, 3300.0] {
            air.add(
                5 * H + 1,
                &[Input::Metric {
                    slot: 0,
                    value: v,
                    one_off_ugm3: Some(160.0),
                }],
                false,
            );
        }
        let m = air.bucket(5).and_then(|b| b.metric(0)).cloned();
        let m = m.unwrap_or_else(|| panic!("no bucket"));
        assert_eq!((m.n, m.sum, m.min, m.max), (3, 4300.0, 100.0, 3300.0));
        assert_eq!(m.above, [2, 2, 1, 1]);
        assert_eq!(air.bucket(5).map(|b| b.count), Some(3));
    }

    #[test]
    fn pruning_keeps_the_register_baseline() {
        let mut s = SensorState::new("a", "c", "d", Kind::Gas);
        s.add(H, &[Input::Register(1.0)], false);
        s.add(2 * H, &[Input::Register(2.0)], false);
        s.prune(10);
        assert_eq!(s.buckets.len(), 1);
        assert_eq!(s.register_before(11).map(|m| m.last_v), Some(2.0));
        s.add(12 * H, &[Input::Register(3.0)], false);
        s.add(13 * H, &[Input::Register(4.0)], false);
        s.prune(13);
        // Hour 12 stays as the baseline of hour 13.
        assert_eq!(
            s.buckets.iter().map(|b| b.hour).collect::<Vec<_>>(),
            vec![12, 13]
        );
    }
}
