//! Last seen: per sensor id, the newest device time and the newest receive time of its readings,
//! and where it reported from (kind, city, district), registered or not. The batcher folds each
//! batch in under one lock ([`LastSeen::record`]); the API and the indicator engine read it.
//!
//! Also the policy for unregistered devices, applied per message ([`screen`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Registry, Unregistered};
use crate::model::{Kind, Reading, Reason, Rejection, SensorRef};

/// Unregistered sensor ids remembered at most: a flood of made-up ids must not grow memory
/// without bound. Beyond it new unregistered ids are not listed (counted in
/// `qala_unregistered_untracked_total`); registered ones always are.
pub const MAX_UNREGISTERED: usize = 100_000;

/// What is known of one sensor's latest readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Newest device time of its readings, ns since the Unix epoch (UTC).
    pub device_ns: i64,
    /// Newest time the gateway received one of its messages.
    pub received_ns: i64,
    /// Where its last reading came from.
    pub kind: Kind,
    pub city: Arc<str>,
    pub district: Arc<str>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) by_id: HashMap<Box<str>, Seen>,
    unregistered: usize,
    /// City and district names, shared by every sensor that names them.
    names: HashMap<Box<str>, Arc<str>>,
}

impl Inner {
    fn name(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(Box::from(s), a.clone());
        a
    }
}

/// Last seen of every sensor that reported since the gateway started.
#[derive(Debug, Default)]
pub struct LastSeen {
    inner: Mutex<Inner>,
}

/// A reading's sensor and times, as the batcher collects them for [`LastSeen::record`].
pub struct Sighting<'a> {
    pub sensor: &'a SensorRef,
    pub device_ns: i64,
    pub received_ns: i64,
}

impl LastSeen {
    pub fn new() -> LastSeen {
        LastSeen::default()
    }

    /// The map, locked (the API's listing takes it once for all its lookups).
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Folds one batch in, under one lock. `registry` tells which ids count against the cap on
    /// unregistered ones.
    pub fn record<'a>(
        &self,
        sightings: impl IntoIterator<Item = Sighting<'a>>,
        registry: &Registry,
    ) {
        let mut untracked = 0u64;
        let mut g = self.lock();
        for s in sightings {
            let id = s.sensor.sensor_id.as_str();
            if let Some(e) = g.by_id.get_mut(id) {
                e.device_ns = e.device_ns.max(s.device_ns);
                e.received_ns = e.received_ns.max(s.received_ns);
                if e.kind != s.sensor.kind {
                    e.kind = s.sensor.kind;
                }
                if *e.city != *s.sensor.city || *e.district != *s.sensor.district {
                    let (city, district) = (s.sensor.city.clone(), s.sensor.district.clone());
                    let city = g.name(&city);
                    let district = g.name(&district);
                    if let Some(e) = g.by_id.get_mut(id) {
                        e.city = city;
                        e.district = district;
                    }
                }
                continue;
            }
            let registered = registry.get(id).is_some();
            if !registered {
                if g.unregistered >= MAX_UNREGISTERED {
                    untracked += 1;
                    continue;
                }
                g.unregistered += 1;
            }
            let seen = Seen {
                device_ns: s.device_ns,
                received_ns: s.received_ns,
                kind: s.sensor.kind,
                city: g.name(&s.sensor.city),
                district: g.name(&s.sensor.district),
            };
            g.by_id.insert(Box::from(id), seen);
        }
        drop(g);
        if untracked > 0 {
            metrics::counter!("qala_unregistered_untracked_total").increment(untracked);
        }
    }

    /// One sensor's last seen.
    pub fn get(&self, sensor_id: &str) -> Option<Seen> {
        self.lock().by_id.get(sensor_id).cloned()
    }

    /// Sensors seen.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies the unregistered policy to one message's readings: with `dead_letter`, a message with
/// a reading of a device not in `registry` is refused whole (reason `unregistered`, naming the
/// ids); with `accept`, it passes. Either way `unregistered` counts such readings.
pub fn screen(
    readings: &[Reading],
    registry: &Registry,
    policy: Unregistered,
    unregistered: &mut u64,
) -> Result<(), Rejection> {
    let mut strangers: Vec<&str> = Vec::new();
    for r in readings {
        let id = r.sensor.sensor_id.as_str();
        if registry.get(id).is_none() {
            *unregistered += 1;
            if !strangers.contains(&id) {
                strangers.push(id);
            }
        }
    }
    if strangers.is_empty() || policy == Unregistered::Accept {
        return Ok(());
    }
    let shown: Vec<String> = strangers.iter().take(5).map(|s| format!("{s:?}")).collect();
    let more = strangers.len().saturating_sub(5);
    Err(Rejection::new(
        Reason::Unregistered,
        format!(
            "sensor {}{} is not in the device registry (registry.unregistered = \"dead_letter\"; add it with `qala sensors import`)",
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sphere;
    use crate::model::TimeSource;
    use crate::normalize::catalog;
    use crate::registry::SensorInfo;
    use std::time::Duration;

    fn sensor(id: &str, district: &str) -> SensorRef {
        SensorRef {
            city: "talgar".into(),
            district: district.into(),
            kind: Kind::Water,
            sensor_id: id.into(),
        }
    }

    fn reading(id: &str, t: i64) -> Reading {
        Reading {
            sensor: sensor(id, "north"),
            time_ns: t,
            time_source: TimeSource::Device,
            values: vec![(catalog::lookup(Kind::Water, "volume").expect("volume"), 1.0)],
        }
    }

    fn registry(ids: &[&str]) -> Registry {
        Registry::new(ids.iter().map(|id| {
            SensorInfo::new(
                *id,
                Kind::Water,
                "talgar",
                "north",
                Sphere::HousingUtilities,
                Duration::from_secs(3600),
            )
        }))
    }

    #[test]
    fn last_seen_keeps_the_newest_times_whatever_the_order() {
        let seen = LastSeen::new();
        let reg = registry(&["w-1"]);
        let a = sensor("w-1", "north");
        let b = sensor("w-1", "south");
        seen.record(
            [
                Sighting {
                    sensor: &a,
                    device_ns: 50,
                    received_ns: 100,
                },
                Sighting {
                    sensor: &a,
                    device_ns: 30,
                    received_ns: 120,
                },
            ],
            &reg,
        );
        seen.record(
            [Sighting {
                sensor: &b,
                device_ns: 40,
                received_ns: 110,
            }],
            &reg,
        );
        let s = seen.get("w-1").expect("seen");
        assert_eq!((s.device_ns, s.received_ns), (50, 120));
        // It moved: the latest place is kept.
        assert_eq!(&*s.district, "south");
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn dead_letter_refuses_a_message_naming_the_stranger_and_accept_counts_it() {
        let reg = registry(&["w-1"]);
        let msg = [reading("w-1", 1), reading("w-9", 1), reading("w-9", 2)];
        let mut n = 0;
        assert_eq!(screen(&msg, &reg, Unregistered::Accept, &mut n), Ok(()));
        assert_eq!(n, 2);
        let e = screen(&msg, &reg, Unregistered::DeadLetter, &mut n).expect_err("refused");
        assert_eq!(e.reason, Reason::Unregistered);
        assert!(
            e.message
                .starts_with("sensor \"w-9\" is not in the device registry"),
            "{}",
            e.message
        );
        assert_eq!(n, 4);
        let mut none = 0;
        assert_eq!(
            screen(
                &[reading("w-1", 3)],
                &reg,
                Unregistered::DeadLetter,
                &mut none
            ),
            Ok(())
        );
        assert_eq!(none, 0);
    }
}
