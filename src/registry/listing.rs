//! What `GET /api/v1/sensors` answers: every registered device with its fields, when it was last
//! seen and whether it is stale, and the unregistered devices that have reported (flagged
//! `registered: false`), sorted by id, filtered by the query.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use super::seen::{LastSeen, Seen};
use super::store::parse_sphere;
use super::{Registry, SensorInfo};
use crate::model::{Kind, Sphere};

/// The query's filters. Each given one must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub city: Option<String>,
    pub district: Option<String>,
    pub sphere: Option<Sphere>,
    pub kind: Option<Kind>,
    pub stale: Option<bool>,
    pub registered: Option<bool>,
}

impl Filter {
    /// From the query's pairs; an unknown key or a bad value is named.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Filter, String> {
        let mut f = Filter::default();
        let flag = |k: &str, v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{k}={v:?}: true or false")),
        };
        for (k, v) in query {
            match k.as_str() {
                "city" => f.city = Some(v.clone()),
                "district" => f.district = Some(v.clone()),
                "sphere" => {
                    f.sphere = Some(parse_sphere(v).ok_or_else(|| {
                        format!(
                            "sphere={v:?} is not a sphere (known: {})",
                            Sphere::ALL.map(Sphere::as_str).join(", ")
                        )
                    })?)
                }
                "kind" => {
                    f.kind = Some(v.parse::<Kind>().map_err(|()| {
                        format!("kind={v:?} is not a kind (known: {})", Kind::known_list())
                    })?)
                }
                "stale" => f.stale = Some(flag(k, v)?),
                "registered" => f.registered = Some(flag(k, v)?),
                other => {
                    return Err(format!(
                        "unknown filter {other:?} (known: city, district, sphere, kind, stale, registered)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// One device as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SensorView<'a> {
    pub sensor_id: &'a str,
    pub registered: bool,
    pub kind: Cow<'a, str>,
    pub city: Cow<'a, str>,
    pub district: Cow<'a, str>,
    pub sphere: Sphere,
    /// Registered devices only (as are the fields down to `longitude`).
    pub expected_interval_s: Option<u64>,
    pub population: Option<u32>,
    pub role: Option<&'static str>,
    pub free_flow_speed: Option<f64>,
    pub register_max: Option<f64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Newest device time of its readings, RFC 3339 UTC; null: never since the gateway started.
    pub last_seen: Option<String>,
    /// Newest time the gateway received one of its messages.
    pub last_received: Option<String>,
    /// Seconds from `last_seen` to now (0 if the device's clock is ahead).
    pub staleness_s: Option<f64>,
    /// No reading within 2 × the expected interval, or never. Null for unregistered devices,
    /// which have no expected interval.
    pub stale: Option<bool>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Listing<'a> {
    /// When the staleness was measured (RFC 3339 UTC).
    pub now: String,
    /// The registry table's generation the listing was made from.
    pub registry_generation: i64,
    /// Devices listed (after the filters), and of them registered, stale and unregistered.
    pub count: usize,
    pub registered: usize,
    pub stale: usize,
    pub unregistered: usize,
    pub sensors: Vec<SensorView<'a>>,
}

/// RFC 3339 in UTC with as many fractional digits as the time has (0, 3, 6 or 9), as chrono's
/// `to_rfc3339_opts(AutoSi, true)` writes it, at a third of its cost (a listing writes two per
/// device).
pub fn rfc3339(ns: i64) -> String {
    use std::fmt::Write;
    let (secs, sub) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::sim::models::clock::civil_from_days(days);
    let mut s = String::with_capacity(30);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    let _ = match sub {
        0 => Ok(()),
        x if x % 1_000_000 == 0 => write!(s, ".{:03}", x / 1_000_000),
        x if x % 1000 == 0 => write!(s, ".{:06}", x / 1000),
        x => write!(s, ".{x:09}"),
    };
    s.push('Z');
    s
}

/// Unregistered devices' last seen, copied out of the lock (few, normally).
pub struct Strangers(Vec<(Box<str>, Seen)>);

/// Lists the devices: one lock on `seen` for all lookups, then building without it.
pub fn list<'a>(
    registry: &'a Registry,
    seen: &LastSeen,
    strangers: &'a mut Strangers,
    filter: &Filter,
    now_ns: i64,
) -> Listing<'a> {
    let wanted_registered = |s: &SensorInfo| {
        filter.city.as_deref().is_none_or(|c| c == s.city)
            && filter.district.as_deref().is_none_or(|d| d == s.district)
            && filter.sphere.is_none_or(|sp| sp == s.sphere)
            && filter.kind.is_none_or(|k| k.as_str() == s.kind)
    };
    let wanted_seen = |s: &Seen| {
        filter.city.as_deref().is_none_or(|c| c == &*s.city)
            && filter.district.as_deref().is_none_or(|d| d == &*s.district)
            && filter.sphere.is_none_or(|sp| sp == s.kind.sphere())
            && filter.kind.is_none_or(|k| k == s.kind)
    };
    // Under the lock: the registered devices' times, and copies of the strangers.
    let mut times: Vec<(&'a SensorInfo, Option<(i64, i64)>)> = Vec::new();
    {
        let g = seen.lock();
        if filter.registered != Some(false) {
            times.reserve(registry.len());
            for s in registry.sorted() {
                if wanted_registered(s) {
                    let t = g
                        .by_id
                        .get(s.sensor_id.as_str())
                        .map(|x| (x.device_ns, x.received_ns));
                    times.push((s, t));
                }
            }
        }
        if filter.registered != Some(true) && filter.stale.is_none() {
            strangers.0 = g
                .by_id
                .iter()
                .filter(|(id, s)| registry.get(id).is_none() && wanted_seen(s))
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect();
        }
    }
    strangers.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let mut registered = Vec::with_capacity(times.len());
    let mut stale_count = 0;
    for (s, t) in times {
        let staleness_ns = t.map(|(d, _)| (now_ns - d).max(0));
        let limit = 2 * i64::try_from(s.expected_interval.as_nanos()).unwrap_or(i64::MAX / 2);
        let stale = staleness_ns.is_none_or(|x| x > limit);
        if filter.stale.is_some_and(|want| want != stale) {
            continue;
        }
        stale_count += usize::from(stale);
        registered.push(SensorView {
            sensor_id: &s.sensor_id,
            registered: true,
            kind: Cow::Borrowed(&s.kind),
            city: Cow::Borrowed(&s.city),
            district: Cow::Borrowed(&s.district),
            sphere: s.sphere,
            expected_interval_s: Some(s.expected_interval.as_secs()),
            population: s.population,
            role: Some(s.role.as_str()),
            free_flow_speed: s.free_flow_speed,
            register_max: s.register_max,
            latitude: s.latitude,
            longitude: s.longitude,
            last_seen: t.map(|(d, _)| rfc3339(d)),
            last_received: t.map(|(_, r)| rfc3339(r)),
            staleness_s: staleness_ns.map(|x| x as f64 / 1e9),
            stale: Some(stale),
        });
    }
    let unregistered: Vec<SensorView<'a>> = strangers
        .0
        .iter()
        .map(|(id, s)| SensorView {
            sensor_id: id,
            registered: false,
            kind: Cow::Borrowed(s.kind.as_str()),
            city: Cow::Owned(s.city.to_string()),
            district: Cow::Owned(s.district.to_string()),
            sphere: s.kind.sphere(),
            expected_interval_s: None,
            population: None,
            role: None,
            free_flow_speed: None,
            register_max: None,
            latitude: None,
            longitude: None,
            last_seen: Some(rfc3339(s.device_ns)),
            last_received: Some(rfc3339(s.received_ns)),
            staleness_s: Some((now_ns - s.device_ns).max(0) as f64 / 1e9),
            stale: None,
        })
        .collect();

    // Both lists are sorted by id; merge them.
    let (n_reg, n_unreg) = (registered.len(), unregistered.len());
    let mut sensors = Vec::with_capacity(n_reg + n_unreg);
    let mut a = registered.into_iter().peekable();
    let mut b = unregistered.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.sensor_id <= y.sensor_id,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        sensors.extend(next);
    }
    Listing {
        now: rfc3339(now_ns),
        registry_generation: registry.generation(),
        count: sensors.len(),
        registered: n_reg,
        stale: stale_count,
        unregistered: n_unreg,
        sensors,
    }
}

impl Strangers {
    pub fn new() -> Strangers {
        Strangers(Vec::new())
    }
}

impl Default for Strangers {
    fn default() -> Self {
        Strangers::new()
    }
}

/// The listing as JSON bytes (what the API sends).
pub fn to_json(
    registry: &Registry,
    seen: &LastSeen,
    filter: &Filter,
    now_ns: i64,
) -> serde_json::Result<Vec<u8>> {
    let mut strangers = Strangers::new();
    let listing = list(registry, seen, &mut strangers, filter, now_ns);
    serde_json::to_vec(&listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SensorRef;
    use crate::registry::import::parse_csv;
    use crate::registry::seen::Sighting;

    const S: i64 = 1_000_000_000;
    /// 2026-11-24T12:00:00Z
    const NOON: i64 = 1_795_521_600 * S;

    fn fixture() -> (Registry, LastSeen) {
        let reg = Registry::new(
            parse_csv(
                "id,kind,city,district,sphere,expected_interval\n\
                 w-2,water,talgar,north,housing_utilities,1h\n\
                 cam-1,status,talgar,south,safety,10m\n\
                 w-1,water,talgar,south,housing_utilities,1h\n"
                    .as_bytes(),
            )
            .expect("valid"),
        );
        let seen = LastSeen::new();
        let r = |id: &str, kind: Kind, district: &str| SensorRef {
            city: "talgar".into(),
            district: district.into(),
            kind,
            sensor_id: id.into(),
        };
        let (w1, cam, x) = (
            r("w-1", Kind::Water, "south"),
            r("cam-1", Kind::Status, "south"),
            r("w-15", Kind::Gas, "north"),
        );
        seen.record(
            [
                // w-1: 90 minutes ago, within 2 × 1 h: fresh.
                Sighting {
                    sensor: &w1,
                    device_ns: NOON - 5400 * S,
                    received_ns: NOON - 5399 * S,
                },
                // cam-1: 25 minutes ago, beyond 2 × 10 min: stale.
                Sighting {
                    sensor: &cam,
                    device_ns: NOON - 1500 * S,
                    received_ns: NOON - 1500 * S,
                },
                // An unregistered gas meter, 1 s ago.
                Sighting {
                    sensor: &x,
                    device_ns: NOON - S + 250_000_000,
                    received_ns: NOON,
                },
            ],
            &reg,
        );
        (reg, seen)
    }

    fn ids(filter: &Filter) -> Vec<(String, Option<bool>)> {
        let (reg, seen) = fixture();
        let mut st = Strangers::new();
        list(&reg, &seen, &mut st, filter, NOON)
            .sensors
            .iter()
            .map(|s| (s.sensor_id.to_owned(), s.stale))
            .collect()
    }

    #[test]
    fn every_device_sorted_with_staleness_and_strangers_flagged() {
        let (reg, seen) = fixture();
        let mut st = Strangers::new();
        let l = list(&reg, &seen, &mut st, &Filter::default(), NOON);
        assert_eq!(
            (l.count, l.registered, l.stale, l.unregistered),
            (4, 3, 2, 1)
        );
        let got: Vec<(&str, bool, Option<bool>)> = l
            .sensors
            .iter()
            .map(|s| (s.sensor_id, s.registered, s.stale))
            .collect();
        assert_eq!(
            got,
            [
                ("cam-1", true, Some(true)),
                ("w-1", true, Some(false)),
                ("w-15", false, None),
                ("w-2", true, Some(true)),
            ]
        );
        let w1 = &l.sensors[1];
        assert_eq!(w1.last_seen.as_deref(), Some("2026-11-24T10:30:00Z"));
        assert_eq!(w1.last_received.as_deref(), Some("2026-11-24T10:30:01Z"));
        assert_eq!(w1.staleness_s, Some(5400.0));
        assert_eq!(w1.expected_interval_s, Some(3600));
        let x = &l.sensors[2];
        assert_eq!(x.last_seen.as_deref(), Some("2026-11-24T11:59:59.250Z"));
        assert_eq!(
            (x.kind.as_ref(), x.sphere),
            ("gas", Sphere::HousingUtilities)
        );
        // w-2 never reported.
        assert_eq!(
            (l.sensors[3].last_seen.as_deref(), l.sensors[3].staleness_s),
            (None, None)
        );
        assert_eq!(l.now, "2026-11-24T12:00:00Z");
    }

    #[test]
    fn rfc3339_writes_what_chrono_writes() {
        use chrono::{DateTime, SecondsFormat, Utc};
        let mut t: i64 = 0;
        let mut i: i64 = 0;
        while t < i64::MAX / 2 {
            // Whole seconds, ms, µs and ns in turn, over 1970–2116.
            let ns = t - t % [1_000_000_000, 1_000_000, 1000, 1][(i % 4) as usize];
            let want = DateTime::<Utc>::from_timestamp_nanos(ns)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(rfc3339(ns), want);
            t += 1_234_567_890_123_457;
            i += 1;
        }
        assert_eq!(rfc3339(NOON + 500_000_000), "2026-11-24T12:00:00.500Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn filters_narrow_the_list() {
        let q = |pairs: &[(&str, &str)]| {
            Filter::from_query(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .expect("valid filter")
        };
        let names = |f: &Filter| ids(f).into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(names(&q(&[("stale", "true")])), ["cam-1", "w-2"]);
        assert_eq!(names(&q(&[("stale", "false")])), ["w-1"]);
        assert_eq!(names(&q(&[("district", "north")])), ["w-15", "w-2"]);
        assert_eq!(names(&q(&[("sphere", "safety")])), ["cam-1"]);
        assert_eq!(names(&q(&[("kind", "gas")])), ["w-15"]);
        assert_eq!(names(&q(&[("registered", "false")])), ["w-15"]);
        assert_eq!(names(&q(&[("city", "almaty")])), Vec::<String>::new());
        for (k, v, want) in [
            ("sphere", "space", "sphere=\"space\" is not a sphere"),
            ("kind", "steam", "kind=\"steam\" is not a kind"),
            ("stale", "yes", "stale=\"yes\": true or false"),
            ("colour", "red", "unknown filter \"colour\""),
        ] {
            let e = Filter::from_query(&[(k.to_string(), v.to_string())].into_iter().collect())
                .expect_err(k);
            assert!(e.starts_with(want), "{e}");
        }
    }
}
