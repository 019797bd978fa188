//! The alert state machine: pure, no I/O, no clock. It is fed the engine's values
//! ([`Alerts::on_value`]) and, periodically, the registered sensors with their last reading
//! ([`Alerts::on_staleness`]); it answers with the [`AlertEvent`]s to send.
//!
//! Per (rule, series) it keeps a small [`Track`]: whether the alert is raised, the level last
//! confirmed, and how many consecutive valid values back a change (`for`). Thresholds have a
//! band (`above` raises, only `clear_below` clears), so a value flapping around the threshold
//! raises once. An invalid value (below the completeness rule) changes nothing. A re-emission of
//! the window last seen (same start, later `computed_ns`, after late data) replaces that
//! window's value: the track as it was before the window is restored and the new value applied,
//! so it never counts twice. A window older than the last one seen changes nothing (the state
//! follows the newest window).
//!
//! Memory: a threshold track is dropped once it is back to normal (not raised, nothing pending),
//! a stale track once the sensor reports again; so the state is as large as what is raised or
//! pending. A `level_change` rule without `levels` must remember the level of every series it
//! watches (one short string per series).

use std::collections::HashMap;

use super::config::{Condition, Rule};
use super::event::{AlertEvent, AlertState, STALE_INDICATOR};
use crate::indicators::value::{IndicatorValue, Scope};
use crate::registry::SensorInfo;

/// Where one alert stands.
#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    /// Threshold rules: the alert is raised.
    raised: bool,
    /// Level rules: the level confirmed (with `levels`: one of them, or None when outside).
    level: Option<String>,
    /// Level rules: the level waiting for `for` consecutive values (`Some(None)`: leaving the
    /// listed levels).
    candidate: Option<Option<String>>,
    /// Consecutive valid values backing the pending change.
    streak: u32,
}

impl Track {
    fn is_idle(&self) -> bool {
        *self == Track::default()
    }
}

/// A series' track, and the track as it was before its newest window (for re-emissions).
#[derive(Debug, Clone)]
struct SeriesState {
    window_start_ns: i64,
    computed_ns: i64,
    before: Track,
    now: Track,
}

/// A stale rule's state for one sensor.
#[derive(Debug, Clone)]
struct StaleState {
    /// The sensor as registered when its alert was raised (None: not raised), to clear the
    /// same topic should the sensor leave the registry.
    raised: Option<Box<SensorInfo>>,
    /// When the sensor was first checked (stands in for a last reading it never sent).
    watched_since_ns: i64,
    /// The last check that saw it registered.
    checked_ns: i64,
}

/// The state of every rule.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Vec<Rule>,
    /// Indicator id → indices of the rules that watch it.
    by_indicator: HashMap<String, Vec<usize>>,
    /// Indices of the stale rules.
    stale_rules: Vec<usize>,
    series: HashMap<(usize, String), SeriesState>,
    stale: HashMap<(usize, String), StaleState>,
}

impl Alerts {
    pub fn new(rules: Vec<Rule>) -> Alerts {
        let mut by_indicator: HashMap<String, Vec<usize>> = HashMap::new();
        let mut stale_rules = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if matches!(r.condition, Condition::Stale(_)) {
                stale_rules.push(i);
            } else {
                by_indicator.entry(r.indicator.clone()).or_default().push(i);
            }
        }
        Alerts {
            rules,
            by_indicator,
            stale_rules,
            series: HashMap::new(),
            stale: HashMap::new(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule needs [`Alerts::on_staleness`] calls.
    pub fn has_stale_rules(&self) -> bool {
        !self.stale_rules.is_empty()
    }

    /// Tracks held (series with a raised or pending alert, known levels, stale sensors).
    pub fn tracked(&self) -> usize {
        self.series.len() + self.stale.len()
    }

    /// Feeds one value of the engine; returns the alerts it raises, clears or changes.
    pub fn on_value(&mut self, v: &IndicatorValue) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let Some(value) = v.value else {
            return events; // invalid: neither raises nor clears
        };
        let Some(indices) = self.by_indicator.get(&v.indicator) else {
            return events;
        };
        let mut series_key = None;
        for &i in indices {
            let rule = &self.rules[i];
            if !rule.matches_value(v) {
                continue;
            }
            let key = (i, series_key.get_or_insert_with(|| v.series_key()).clone());
            let old = match self.series.get(&key) {
                None => SeriesState {
                    window_start_ns: v.window_start_ns,
                    computed_ns: v.computed_ns,
                    before: Track::default(),
                    now: Track::default(),
                },
                Some(s) if v.window_start_ns > s.window_start_ns => SeriesState {
                    window_start_ns: v.window_start_ns,
                    computed_ns: v.computed_ns,
                    before: s.now.clone(),
                    now: s.now.clone(),
                },
                // A re-emission of the newest window: replay it from the track before it.
                Some(s)
                    if v.window_start_ns == s.window_start_ns && v.computed_ns > s.computed_ns =>
                {
                    SeriesState {
                        window_start_ns: s.window_start_ns,
                        computed_ns: v.computed_ns,
                        before: s.before.clone(),
                        now: s.now.clone(),
                    }
                }
                // An older window, or the same emission again.
                Some(_) => continue,
            };
            let mut next = old.before.clone();
            step(rule, &mut next, value, v.level.as_deref());
            if let Some(e) = transition(rule, &old.now, &next, v, value) {
                events.push(e);
            }
            let state = SeriesState { now: next, ..old };
            if state.now.is_idle() && state.before.is_idle() {
                self.series.remove(&key);
            } else {
                self.series.insert(key, state);
            }
        }
        events
    }

    /// Checks the registered sensors against the stale rules: `sensors` is every registered
    /// sensor with the time of its last reading (None: never heard from, measured from the
    /// first check that saw it). Raises for a sensor silent longer than its limit, clears when
    /// it reports again or leaves the registry.
    pub fn on_staleness<'a>(
        &mut self,
        sensors: impl Iterator<Item = (&'a SensorInfo, Option<i64>)>,
        now_ns: i64,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        if self.stale_rules.is_empty() {
            return events;
        }
        for (sensor, last_seen) in sensors {
            for &i in &self.stale_rules {
                let rule = &self.rules[i];
                let Condition::Stale(after) = rule.condition else {
                    continue;
                };
                if !rule.matches_sensor(sensor) {
                    continue;
                }
                let Some(limit) = after.limit(sensor) else {
                    continue;
                };
                let limit_ns = i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX);
                let key = (i, sensor.sensor_id.clone());
                let state = self.stale.get(&key);
                let raised = state.is_some_and(|s| s.raised.is_some());
                let since = match (last_seen, state) {
                    (Some(t), _) => t,
                    (None, Some(s)) => s.watched_since_ns,
                    (None, None) => now_ns,
                };
                let age_ns = now_ns.saturating_sub(since);
                let is_stale = age_ns > limit_ns;
                if is_stale != raised {
                    let state = if is_stale {
                        AlertState::Raised
                    } else {
                        AlertState::Cleared
                    };
                    events.push(stale_event(
                        rule, sensor, state, since, now_ns, age_ns, limit_ns,
                    ));
                }
                if is_stale || last_seen.is_none() {
                    let watched_since_ns = state.map_or(now_ns, |s| s.watched_since_ns);
                    self.stale.insert(
                        key,
                        StaleState {
                            raised: is_stale.then(|| Box::new(sensor.clone())),
                            watched_since_ns,
                            checked_ns: now_ns,
                        },
                    );
                } else {
                    self.stale.remove(&key);
                }
            }
        }
        // Sensors this check did not see have left the registry: clear what they raised.
        let gone: Vec<(usize, String)> = self
            .stale
            .iter()
            .filter(|(_, s)| s.checked_ns != now_ns)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            let Some(state) = self.stale.remove(&key) else {
                continue;
            };
            if let Some(sensor) = state.raised {
                let rule = &self.rules[key.0];
                let mut e = stale_event(rule, &sensor, AlertState::Cleared, now_ns, now_ns, 0, 0);
                e.value = None;
                e.threshold = None;
                e.message = format!(
                    "{} is no longer registered: alert {} cleared",
                    place(
                        Scope::Sensor,
                        &sensor.city,
                        &sensor.district,
                        &sensor.sensor_id
                    ),
                    rule.name
                );
                events.push(e);
            }
        }
        events
    }
}

/// Applies one valid value to `t`.
fn step(rule: &Rule, t: &mut Track, value: f64, level: Option<&str>) {
    match &rule.condition {
        Condition::Above { above, clear_below } => {
            threshold_step(rule, t, value > *above, value < *clear_below)
        }
        Condition::Below { below, clear_above } => {
            threshold_step(rule, t, value < *below, value > *clear_above)
        }
        Condition::LevelChange { levels } => {
            let Some(level) = level else {
                return; // an indicator value without a level says nothing of it
            };
            let effective = match levels {
                Some(list) if !list.iter().any(|l| l == level) => None,
                _ => Some(level.to_owned()),
            };
            if t.level == effective {
                t.candidate = None;
                t.streak = 0;
                return;
            }
            if levels.is_none() && t.level.is_none() {
                t.level = effective; // the first level seen: the baseline, no event
                return;
            }
            if t.candidate.as_ref() == Some(&effective) {
                t.streak += 1;
            } else {
                t.candidate = Some(effective);
                t.streak = 1;
            }
            if t.streak >= rule.for_values {
                t.level = t.candidate.take().flatten();
                t.streak = 0;
            }
        }
        Condition::Stale(_) => {}
    }
}

fn threshold_step(rule: &Rule, t: &mut Track, raises: bool, clears: bool) {
    if t.raised {
        if clears {
            t.raised = false;
        }
        return;
    }
    if raises {
        t.streak += 1;
        if t.streak >= rule.for_values {
            t.raised = true;
            t.streak = 0;
        }
    } else {
        t.streak = 0;
    }
}

/// The event for a track going from `old` to `new` on value `v`, if its visible state changed.
fn transition(
    rule: &Rule,
    old: &Track,
    new: &Track,
    v: &IndicatorValue,
    value: f64,
) -> Option<AlertEvent> {
    let place = place(v.scope, &v.city, &v.district, &v.sensor_id);
    let what = if v.component.is_empty() {
        v.indicator.clone()
    } else {
        format!("{} ({})", v.indicator, v.component)
    };
    let unit = if v.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", v.unit)
    };
    let window = format!("{} window from {}", v.window, utc(v.window_start_ns));
    let (state, threshold, message) = match &rule.condition {
        Condition::Above { above, clear_below }
        | Condition::Below {
            below: above,
            clear_above: clear_below,
        } => {
            let (rises, falls) = match rule.condition {
                Condition::Above { .. } => ("above", "below"),
                _ => ("below", "above"),
            };
            match (old.raised, new.raised) {
                (false, true) => (
                    AlertState::Raised,
                    *above,
                    format!("{what} = {value}{unit} is {rises} {above} in {place} ({window})"),
                ),
                (true, false) => (
                    AlertState::Cleared,
                    *clear_below,
                    format!("{what} = {value}{unit} is back {falls} {clear_below} in {place} ({window})"),
                ),
                _ => return None,
            }
        }
        Condition::LevelChange { levels } => {
            let (state, message) = match (&old.level, &new.level) {
                (None, None) => return None,
                (a, b) if a == b => return None,
                (None, Some(b)) if levels.is_some() => (
                    AlertState::Raised,
                    format!("{what} level is {b} in {place} ({window})"),
                ),
                (None, Some(_)) => return None, // the baseline
                (Some(a), Some(b)) => (
                    AlertState::Changed,
                    format!("{what} level changed from {a} to {b} in {place} ({window})"),
                ),
                (Some(a), None) => (
                    AlertState::Cleared,
                    format!(
                        "{what} level left {a} (now {}) in {place} ({window})",
                        v.level.as_deref().unwrap_or("none")
                    ),
                ),
            };
            return Some(AlertEvent {
                previous_level: old.level.clone(),
                ..value_event(rule, v, state, None, message)
            });
        }
        Condition::Stale(_) => return None,
    };
    Some(value_event(rule, v, state, Some(threshold), message))
}

fn value_event(
    rule: &Rule,
    v: &IndicatorValue,
    state: AlertState,
    threshold: Option<f64>,
    message: String,
) -> AlertEvent {
    AlertEvent {
        rule: rule.name.clone(),
        severity: rule.severity,
        state,
        indicator: v.indicator.clone(),
        sphere: v.sphere,
        scope: v.scope,
        city: v.city.clone(),
        district: v.district.clone(),
        sensor_id: v.sensor_id.clone(),
        component: v.component.clone(),
        window: v.window.clone(),
        window_start_ns: v.window_start_ns,
        window_end_ns: v.window_end_ns,
        value: v.value,
        unit: v.unit.clone(),
        level: v.level.clone(),
        previous_level: None,
        threshold,
        message,
        at_ns: v.computed_ns,
    }
}

fn stale_event(
    rule: &Rule,
    sensor: &SensorInfo,
    state: AlertState,
    since_ns: i64,
    now_ns: i64,
    age_ns: i64,
    limit_ns: i64,
) -> AlertEvent {
    let secs = |ns: i64| ns as f64 / 1e9;
    let age = humantime::format_duration(std::time::Duration::from_secs(
        u64::try_from(age_ns / 1_000_000_000).unwrap_or(0),
    ));
    let limit = humantime::format_duration(std::time::Duration::from_secs(
        u64::try_from(limit_ns / 1_000_000_000).unwrap_or(0),
    ));
    let place = place(
        Scope::Sensor,
        &sensor.city,
        &sensor.district,
        &sensor.sensor_id,
    );
    let message = match state {
        AlertState::Raised => format!("{place} has not reported for {age}, longer than {limit}"),
        _ => format!("{place} reports again (last reading {age} ago, limit {limit})"),
    };
    AlertEvent {
        rule: rule.name.clone(),
        severity: rule.severity,
        state,
        indicator: STALE_INDICATOR.to_owned(),
        sphere: sensor.sphere,
        scope: Scope::Sensor,
        city: sensor.city.clone(),
        district: sensor.district.clone(),
        sensor_id: sensor.sensor_id.clone(),
        component: String::new(),
        window: String::new(),
        window_start_ns: since_ns,
        window_end_ns: now_ns,
        value: Some(secs(age_ns)),
        unit: "s".to_owned(),
        level: None,
        previous_level: None,
        threshold: Some(secs(limit_ns)),
        message,
        at_ns: now_ns,
    }
}

/// `sensor st-01 (almaty/medeu)`, `district almaty/medeu`, `city almaty`.
fn place(scope: Scope, city: &str, district: &str, sensor_id: &str) -> String {
    match scope {
        Scope::Sensor => format!("sensor {sensor_id} ({city}/{district})"),
        Scope::District => format!("district {city}/{district}"),
        Scope::City => format!("city {city}"),
    }
}

/// `2026-11-24 10:00 UTC`.
fn utc(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::indicators::alerts::config::{Severity, StaleAfter};
    use crate::indicators::value::Completeness;
    use crate::model::Sphere;
    use crate::registry::Role;

    const HOUR: i64 = 3_600_000_000_000;
    const MIN: i64 = 60_000_000_000;
    /// 2026-11-24 00:00 UTC.
    const T0: i64 = 1_795_478_400_000_000_000;

    fn rule(name: &str, condition: Condition, for_values: u32) -> Rule {
        Rule {
            name: name.into(),
            indicator: "us_aqi_nowcast".into(),
            sphere: None,
            scope: None,
            city: None,
            district: None,
            sensor_id: None,
            component: None,
            window: None,
            condition,
            for_values,
            severity: Severity::Warning,
        }
    }

    fn above(x: f64, clear_below: f64, for_values: u32) -> Alerts {
        Alerts::new(vec![rule(
            "aqi_high",
            Condition::Above {
                above: x,
                clear_below,
            },
            for_values,
        )])
    }

    /// The value of hour `hour` of the district `medeu`, computed at the end of its window.
    fn value(hour: i64, x: Option<f64>) -> IndicatorValue {
        IndicatorValue {
            indicator: "us_aqi_nowcast".into(),
            sphere: Sphere::Ecology,
            scope: Scope::District,
            city: "almaty".into(),
            district: "medeu".into(),
            sensor_id: String::new(),
            component: String::new(),
            window: "nowcast".into(),
            window_start_ns: T0 + hour * HOUR,
            window_end_ns: T0 + (hour + 1) * HOUR,
            value: x,
            unit: "AQI".into(),
            level: None,
            completeness: Completeness::new(12, 12, "h"),
            reference: "US EPA AQI, TAD May 2024; NowCast".into(),
            details: Vec::new(),
            computed_ns: T0 + (hour + 1) * HOUR,
        }
    }

    fn leveled(hour: i64, level: &str) -> IndicatorValue {
        IndicatorValue {
            level: Some(level.into()),
            ..value(hour, Some(1.0))
        }
    }

    fn states(events: &[AlertEvent]) -> Vec<AlertState> {
        events.iter().map(|e| e.state).collect()
    }

    /// Feeds hourly values from hour `from`; every event, in order.
    fn feed(alerts: &mut Alerts, from: i64, xs: &[Option<f64>]) -> Vec<AlertEvent> {
        xs.iter()
            .zip(from..)
            .flat_map(|(x, h)| alerts.on_value(&value(h, *x)))
            .collect()
    }

    #[test]
    fn a_value_flapping_around_the_threshold_raises_once() {
        let mut a = above(100.0, 90.0, 1);
        let flapping: Vec<Option<f64>> = (0..40)
            .map(|i| Some(if i % 2 == 0 { 101.0 } else { 99.0 }))
            .collect();
        let events = feed(&mut a, 0, &flapping);
        assert_eq!(
            states(&events),
            [AlertState::Raised],
            "20 crossings, one alert"
        );
        let e = &events[0];
        assert_eq!(
            (e.rule.as_str(), e.value, e.threshold),
            ("aqi_high", Some(101.0), Some(100.0))
        );
        assert_eq!(e.window_start_ns, T0);
        assert_eq!(e.at_ns, T0 + HOUR);
        assert_eq!(
            e.topic(),
            "qala/alerts/almaty/ecology/us_aqi_nowcast/aqi_high/medeu/nowcast"
        );
        assert_eq!(
            e.message,
            "us_aqi_nowcast = 101 AQI is above 100 in district almaty/medeu (nowcast window from 2026-11-24 00:00 UTC)"
        );
        let events = feed(&mut a, 40, &[Some(89.0)]);
        assert_eq!(states(&events), [AlertState::Cleared]);
        assert_eq!(
            (events[0].value, events[0].threshold),
            (Some(89.0), Some(90.0))
        );
        assert_eq!(
            a.tracked(),
            1,
            "kept for a re-emission of the clearing window"
        );
        assert!(feed(&mut a, 41, &[Some(80.0)]).is_empty());
        assert_eq!(a.tracked(), 0, "a cleared series keeps no state");
    }

    #[test]
    fn clears_only_below_clear_below() {
        let mut a = above(100.0, 90.0, 1);
        assert_eq!(
            states(&feed(&mut a, 0, &[Some(120.0)])),
            [AlertState::Raised]
        );
        assert!(feed(
            &mut a,
            1,
            &[Some(95.0), Some(90.0), Some(100.0), Some(90.0)]
        )
        .is_empty());
        assert_eq!(
            states(&feed(&mut a, 5, &[Some(89.9)])),
            [AlertState::Cleared]
        );
        // Back in the band: not above 100, so nothing.
        assert!(feed(&mut a, 6, &[Some(95.0), Some(100.0)]).is_empty());
        assert_eq!(
            states(&feed(&mut a, 8, &[Some(100.5)])),
            [AlertState::Raised]
        );
    }

    #[test]
    fn clear_below_defaults_to_the_threshold() {
        let mut a = above(100.0, 100.0, 1);
        let events = feed(
            &mut a,
            0,
            &[Some(101.0), Some(100.0), Some(99.0), Some(100.0)],
        );
        assert_eq!(states(&events), [AlertState::Raised, AlertState::Cleared]);
        assert_eq!(
            events[1].value,
            Some(99.0),
            "exactly 100 neither raises nor clears"
        );
    }

    #[test]
    fn below_rules_mirror_above_rules() {
        let mut a = Alerts::new(vec![rule(
            "aqi_low",
            Condition::Below {
                below: 20.0,
                clear_above: 25.0,
            },
            1,
        )]);
        let events = feed(
            &mut a,
            0,
            &[Some(30.0), Some(19.0), Some(21.0), Some(25.0), Some(26.0)],
        );
        assert_eq!(states(&events), [AlertState::Raised, AlertState::Cleared]);
        assert_eq!(
            (events[0].value, events[0].threshold),
            (Some(19.0), Some(20.0))
        );
        assert_eq!(
            (events[1].value, events[1].threshold),
            (Some(26.0), Some(25.0))
        );
        assert!(
            events[1].message.contains("is back above 25"),
            "{}",
            events[1].message
        );
    }

    #[test]
    fn for_3_needs_three_consecutive_values() {
        let mut a = above(100.0, 100.0, 3);
        // Two above, one below: the streak restarts.
        assert!(feed(
            &mut a,
            0,
            &[
                Some(101.0),
                Some(102.0),
                Some(99.0),
                Some(101.0),
                Some(101.0)
            ]
        )
        .is_empty());
        let events = feed(&mut a, 5, &[Some(103.0)]);
        assert_eq!(states(&events), [AlertState::Raised]);
        assert_eq!(
            events[0].window_start_ns,
            T0 + 5 * HOUR,
            "raised by the third in a row"
        );
        assert_eq!(events[0].value, Some(103.0));
        // Clearing is at once (the band is the hysteresis): one value below.
        assert_eq!(
            states(&feed(&mut a, 6, &[Some(99.0)])),
            [AlertState::Cleared]
        );
    }

    #[test]
    fn a_reemitted_window_replaces_its_value_instead_of_counting_again() {
        let mut a = above(100.0, 100.0, 2);
        let mut v = value(0, Some(101.0));
        assert!(a.on_value(&v).is_empty());
        // Late data: hour 0 again, twice. Still one value above.
        for (x, later) in [(102.0, 1), (103.0, 2)] {
            v.value = Some(x);
            v.computed_ns = T0 + HOUR + later * MIN;
            assert!(
                a.on_value(&v).is_empty(),
                "re-emission {later} must not count"
            );
        }
        // The same emission again: nothing.
        assert!(a.on_value(&v).is_empty());
        // Hour 1 is the second in a row.
        let mut w = value(1, Some(101.0));
        assert_eq!(states(&a.on_value(&w)), [AlertState::Raised]);
        // Hour 1 re-emitted below: the alert it raised is taken back...
        w.value = Some(80.0);
        w.computed_ns += MIN;
        let events = a.on_value(&w);
        assert_eq!(states(&events), [AlertState::Cleared]);
        assert_eq!(events[0].value, Some(80.0));
        // ...and re-emitted above again: hour 0 still backs it, so it is raised again.
        w.value = Some(110.0);
        w.computed_ns += MIN;
        assert_eq!(states(&a.on_value(&w)), [AlertState::Raised]);
        // An older window changes nothing.
        let mut old = value(0, Some(10.0));
        old.computed_ns = T0 + 5 * HOUR;
        assert!(a.on_value(&old).is_empty());
    }

    #[test]
    fn invalid_values_neither_raise_nor_clear_nor_break_a_streak() {
        let mut a = above(100.0, 90.0, 2);
        assert!(feed(&mut a, 0, &[Some(150.0), None, None]).is_empty());
        assert_eq!(
            states(&feed(&mut a, 3, &[Some(150.0)])),
            [AlertState::Raised]
        );
        assert!(feed(&mut a, 4, &[None, None, None]).is_empty());
        assert_eq!(
            states(&feed(&mut a, 7, &[Some(10.0)])),
            [AlertState::Cleared]
        );
        assert!(feed(&mut a, 8, &[Some(10.0)]).is_empty());
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn filters_pick_the_series() {
        let mut r = rule(
            "sensor_only",
            Condition::Above {
                above: 1.0,
                clear_below: 1.0,
            },
            1,
        );
        r.scope = Some(Scope::Sensor);
        let mut d = rule(
            "medeu_only",
            Condition::Above {
                above: 1.0,
                clear_below: 1.0,
            },
            1,
        );
        d.district = Some("medeu".into());
        d.window = Some("nowcast".into());
        let mut other = rule(
            "other_city",
            Condition::Above {
                above: 1.0,
                clear_below: 1.0,
            },
            1,
        );
        other.city = Some("astana".into());
        let mut a = Alerts::new(vec![r, d, other]);
        let events = feed(&mut a, 0, &[Some(5.0)]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].rule, "medeu_only");
        let mut pdk = value(1, Some(5.0));
        pdk.indicator = "pdk_multiple".into();
        assert!(a.on_value(&pdk).is_empty(), "another indicator");
    }

    #[test]
    fn each_series_has_its_own_state() {
        let mut a = above(100.0, 100.0, 1);
        let mut e = a.on_value(&value(0, Some(150.0)));
        let mut sensor = value(0, Some(150.0));
        sensor.scope = Scope::Sensor;
        sensor.sensor_id = "st-01".into();
        e.extend(a.on_value(&sensor));
        assert_eq!(states(&e), [AlertState::Raised, AlertState::Raised]);
        assert_eq!(
            e[1].topic(),
            "qala/alerts/almaty/ecology/us_aqi_nowcast/aqi_high/medeu/st-01/nowcast"
        );
        let mut city = value(0, Some(150.0));
        city.scope = Scope::City;
        city.district.clear();
        city.component = "pm2_5".into();
        assert_eq!(
            a.on_value(&city)[0].topic(),
            "qala/alerts/almaty/ecology/us_aqi_nowcast/aqi_high/pm2_5/nowcast"
        );
        assert_eq!(a.tracked(), 3);
    }

    #[test]
    fn level_change_reports_every_change_after_the_first_level() {
        let mut a = Alerts::new(vec![rule(
            "aqi_level",
            Condition::LevelChange { levels: None },
            1,
        )]);
        assert!(
            a.on_value(&leveled(0, "good")).is_empty(),
            "the first level is the baseline"
        );
        assert!(a.on_value(&leveled(1, "good")).is_empty());
        let e = a.on_value(&leveled(2, "moderate"));
        assert_eq!(states(&e), [AlertState::Changed]);
        assert_eq!(e[0].previous_level.as_deref(), Some("good"));
        assert_eq!(e[0].level.as_deref(), Some("moderate"));
        assert_eq!(e[0].threshold, None);
        assert_eq!(
            e[0].message,
            "us_aqi_nowcast level changed from good to moderate in district almaty/medeu (nowcast window from 2026-11-24 02:00 UTC)"
        );
        let mut invalid = leveled(3, "good");
        invalid.value = None;
        assert!(a.on_value(&invalid).is_empty());
        assert!(
            a.on_value(&value(4, Some(3.0))).is_empty(),
            "no level: nothing to compare"
        );
        assert_eq!(a.tracked(), 1, "the level is remembered");
    }

    #[test]
    fn level_change_with_for_ignores_a_one_off_level() {
        let mut a = Alerts::new(vec![rule(
            "aqi_level",
            Condition::LevelChange { levels: None },
            2,
        )]);
        let levels = [
            "good", "moderate", "good", "moderate", "moderate", "moderate",
        ];
        let events: Vec<AlertEvent> = levels
            .iter()
            .zip(0..)
            .flat_map(|(l, h)| a.on_value(&leveled(h, l)))
            .collect();
        assert_eq!(states(&events), [AlertState::Changed]);
        assert_eq!(
            events[0].window_start_ns,
            T0 + 4 * HOUR,
            "the second moderate in a row"
        );
    }

    #[test]
    fn level_change_into_listed_levels_raises_moves_and_clears() {
        let levels = Some(vec!["high".to_owned(), "very_high".to_owned()]);
        let mut a = Alerts::new(vec![rule("kz_high", Condition::LevelChange { levels }, 1)]);
        let seq = [
            "low",
            "elevated",
            "high",
            "high",
            "very_high",
            "high",
            "elevated",
            "low",
        ];
        let events: Vec<AlertEvent> = seq
            .iter()
            .zip(0..)
            .flat_map(|(l, h)| a.on_value(&leveled(h, l)))
            .collect();
        assert_eq!(
            states(&events),
            [
                AlertState::Raised,
                AlertState::Changed,
                AlertState::Changed,
                AlertState::Cleared
            ]
        );
        let pairs: Vec<(Option<&str>, Option<&str>)> = events
            .iter()
            .map(|e| (e.previous_level.as_deref(), e.level.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                (None, Some("high")),
                (Some("high"), Some("very_high")),
                (Some("very_high"), Some("high")),
                (Some("high"), Some("elevated")),
            ]
        );
        assert_eq!(a.tracked(), 0, "outside the listed levels nothing is kept");
    }

    fn sensor(id: &str, interval_min: u64) -> SensorInfo {
        SensorInfo {
            sensor_id: id.into(),
            kind: "water".into(),
            city: "almaty".into(),
            district: "medeu".into(),
            sphere: Sphere::HousingUtilities,
            expected_interval: Duration::from_secs(interval_min * 60),
            population: None,
            role: Role::Consumer,
            free_flow_speed: None,
            register_max: None,
            latitude: None,
            longitude: None,
        }
    }

    fn stale_rule(after: StaleAfter) -> Rule {
        Rule {
            indicator: String::new(),
            ..rule("meter_silent", Condition::Stale(after), 1)
        }
    }

    #[test]
    fn stale_with_the_expected_interval_is_twice_it() {
        let mut a = Alerts::new(vec![stale_rule(StaleAfter::Expected)]);
        let m = sensor("wm-1", 15); // stale after 30 min
        let now = T0 + 10 * HOUR;
        assert!(
            a.on_staleness([(&m, Some(now - 30 * MIN))].into_iter(), now)
                .is_empty(),
            "30 min is not older than 30 min"
        );
        let e = a.on_staleness([(&m, Some(now - 30 * MIN))].into_iter(), now + MIN);
        assert_eq!(states(&e), [AlertState::Raised]);
        assert_eq!(
            (e[0].value, e[0].threshold, e[0].unit.as_str()),
            (Some(1860.0), Some(1800.0), "s")
        );
        assert_eq!(
            e[0].topic(),
            "qala/alerts/almaty/housing_utilities/sensor_stale/meter_silent/medeu/wm-1"
        );
        assert_eq!(
            e[0].message,
            "sensor wm-1 (almaty/medeu) has not reported for 31m, longer than 30m"
        );
        assert_eq!(e[0].window_start_ns, now - 30 * MIN);
        assert!(
            a.on_staleness([(&m, Some(now - 30 * MIN))].into_iter(), now + 2 * MIN)
                .is_empty(),
            "raised once"
        );
        let e = a.on_staleness([(&m, Some(now + 3 * MIN))].into_iter(), now + 4 * MIN);
        assert_eq!(states(&e), [AlertState::Cleared]);
        assert_eq!(e[0].value, Some(60.0));
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn a_sensor_never_heard_from_is_stale_once_watched_longer_than_the_limit() {
        let mut a = Alerts::new(vec![stale_rule(StaleAfter::Fixed(Duration::from_secs(
            7200,
        )))]);
        let m = sensor("wm-2", 15);
        let other = SensorInfo {
            city: "astana".into(),
            ..sensor("wm-3", 15)
        };
        let mut r = stale_rule(StaleAfter::Fixed(Duration::from_secs(7200)));
        r.city = Some("almaty".into());
        r.name = "almaty_silent".into();
        a = Alerts::new(vec![a.rules()[0].clone(), r]);
        let now = T0;
        assert!(a
            .on_staleness([(&m, None), (&other, None)].into_iter(), now)
            .is_empty());
        assert!(a
            .on_staleness([(&m, None), (&other, None)].into_iter(), now + 2 * HOUR)
            .is_empty());
        let e = a.on_staleness([(&m, None), (&other, None)].into_iter(), now + 2 * HOUR + 1);
        let mut raised: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.rule.as_str(), e.sensor_id.as_str()))
            .collect();
        raised.sort();
        assert_eq!(
            raised,
            [
                ("almaty_silent", "wm-2"),
                ("meter_silent", "wm-2"),
                ("meter_silent", "wm-3")
            ],
            "the city filter keeps wm-3 (astana) out of almaty_silent"
        );
        // wm-2 leaves the registry: its alerts clear on the same topics.
        let e = a.on_staleness([(&other, None)].into_iter(), now + 3 * HOUR);
        assert_eq!(states(&e), [AlertState::Cleared, AlertState::Cleared]);
        assert!(e
            .iter()
            .all(|e| e.sensor_id == "wm-2" && e.message.contains("no longer registered")));
        assert_eq!(a.tracked(), 1, "only wm-3 is still watched");
    }

    #[test]
    fn stale_rules_skip_sensors_without_an_expected_interval() {
        let mut a = Alerts::new(vec![stale_rule(StaleAfter::Expected)]);
        let m = sensor("cam-1", 0);
        assert!(a.on_staleness([(&m, Some(0))].into_iter(), T0).is_empty());
        assert_eq!(a.tracked(), 0);
    }
}
