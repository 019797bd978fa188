//! The indicator engine: event-time windows per sensor, district and city. Readings fold into
//! hourly buckets ([`window`]); a watermark per city (the newest device time seen, less a delay,
//! moved on by the wall clock when the city falls silent) closes hours and local days, whose
//! values are evaluated ([`evaluate`]) and emitted. Late data within the allowed lateness updates
//! its window and the window is emitted again; beyond it, the reading is counted and left out.
//! No I/O here: readings in, [`IndicatorValue`]s out.
//!
//! [`window`]: crate::indicators::window
//! [`evaluate`]: crate::indicators::evaluate

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::indicators::catalog::{Catalog, Function, IndicatorDef, Window};
use crate::indicators::evaluate::{self, Ctx, Out, Span};
use crate::indicators::value::{Completeness, Detail, IndicatorValue, Scope};
use crate::indicators::window::{hour_of, Input, SensorState, DAY_NS, HOUR_NS};
use crate::model::{Kind, Reading, Sphere};
use crate::registry::{Registry, Role, SensorInfo};

/// How the engine keeps time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSettings {
    /// The cities' offset from UTC in whole hours (Kazakhstan: +5 since 1 March 2024); local
    /// days run midnight to midnight in it.
    pub utc_offset_hours: i64,
    /// The watermark trails the newest device time by this much.
    pub watermark_delay: Duration,
    /// Data this far behind the watermark still updates its window (which is emitted again).
    pub allowed_lateness: Duration,
    /// A city silent this long (wall clock) has its watermark moved on by the wall clock.
    pub idle_timeout: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            utc_offset_hours: 5,
            watermark_delay: Duration::from_secs(120),
            allowed_lateness: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A city's clock: its watermark and what has been emitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CityClock {
    max_event_ns: i64,
    min_hour: i64,
    watermark_ns: i64,
    /// Wall time of the newest arrival (ns).
    last_arrival_wall_ns: i64,
    /// Event time at the newest arrival (the idle clock's base).
    /// Hours below this are emitted.
    hours_done: Option<i64>,
    /// Local days below this are emitted.
    days_done: Option<i64>,
}

/// Late data is gathered, and the windows it touched emitted again, at most this often (wall
/// clock, ns).
const REEMIT_EVERY_NS: i64 = 10_000_000_000;

/// The engine's state that a restart needs (see [`Engine::snapshot`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    sensors: Vec<SensorState>,
    cities: BTreeMap<String, CityClock>,
    late: u64,
    /// Windows late data touched, not emitted again yet.
    #[serde(default)]
    dirty_hours: BTreeSet<(String, i64)>,
    #[serde(default)]
    dirty_days: BTreeSet<(String, i64)>,
    #[serde(default)]
    dirty_nowcasts: BTreeSet<(String, i64)>,
}

/// The snapshot's fields, borrowed from the engine (written without copying the state).
#[derive(Serialize)]
pub struct SnapshotRef<'a> {
    sensors: &'a [SensorState],
    cities: &'a BTreeMap<String, CityClock>,
    late: u64,
    dirty_hours: &'a BTreeSet<(String, i64)>,
    dirty_days: &'a BTreeSet<(String, i64)>,
    dirty_nowcasts: &'a BTreeSet<(String, i64)>,
}

/// Counters the engine keeps (exported as metrics by its task).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineCounts {
    /// Readings beyond the allowed lateness, left out of every window.
    pub late_readings: u64,
    /// Windows emitted again after late data.
    pub reemitted_windows: u64,
}

/// A city's sensors and registered devices, gathered once per emitted window instead of once per
/// indicator (at 100,000 sensors the passes over the registry cost more than the indicators).
struct Census<'a> {
    city: &'a str,
    /// The city's sensors (indices into `Engine::sensors`, in order) with their registry entry.
    seen: Vec<(usize, Option<&'a SensorInfo>)>,
    /// The city's registered devices: entry, kind (None: not a reading kind), state.
    registered: Vec<(&'a SensorInfo, Option<Kind>, Option<&'a SensorState>)>,
}

/// The engine.
pub struct Engine {
    catalog: Arc<Catalog>,
    settings: EngineSettings,
    registry: Arc<Registry>,
    /// (kind, metric) tracked per bucket; the metric's ПДК м.р. in µg/m³ where it has one.
    slots: Vec<(Kind, String)>,
    one_off: Vec<Option<f64>>,
    sensors: Vec<SensorState>,
    index: HashMap<String, usize>,
    cities: BTreeMap<String, CityClock>,
    dirty_hours: BTreeSet<(String, i64)>,
    dirty_days: BTreeSet<(String, i64)>,
    /// Hours whose NowCast (only) late data changed.
    dirty_nowcasts: BTreeSet<(String, i64)>,
    /// Wall time of the last pass over the dirty windows.
    last_reemit_ns: i64,
    night_hours: [u8; 2],
    counts: EngineCounts,
    inputs: Vec<Input>,
}

impl Engine {
    pub fn new(catalog: Arc<Catalog>, settings: EngineSettings, registry: Arc<Registry>) -> Engine {
        let mut slots = Vec::new();
        for d in &catalog.indicators {
            for k in &d.inputs.kinds {
                for m in &d.inputs.metrics {
                    let known = crate::normalize::catalog::metrics_of(*k)
                        .iter()
                        .any(|def| def.name == m);
                    let register = matches!(k, Kind::Water | Kind::Heat | Kind::Power | Kind::Gas)
                        && (m == evaluate::register_metric(*k) || m == "leak_alarm");
                    let traffic = *k == Kind::Traffic;
                    if known && !register && !traffic && !slots.contains(&(*k, m.clone())) {
                        slots.push((*k, m.clone()));
                    }
                }
            }
        }
        slots.truncate(255);
        let one_off = slots
            .iter()
            .map(|(k, m)| {
                (*k == Kind::Air)
                    .then(|| catalog.pdk(m).map(|p| p.one_off * 1000.0))
                    .flatten()
            })
            .collect();
        let night_hours = catalog
            .indicators
            .iter()
            .find_map(|d| d.params.night_hours)
            .unwrap_or([0, 5]);
        Engine {
            catalog,
            settings,
            registry,
            slots,
            one_off,
            sensors: Vec::new(),
            index: HashMap::new(),
            cities: BTreeMap::new(),
            dirty_hours: BTreeSet::new(),
            dirty_days: BTreeSet::new(),
            dirty_nowcasts: BTreeSet::new(),
            last_reemit_ns: i64::MIN,
            night_hours,
            counts: EngineCounts::default(),
            inputs: Vec::new(),
        }
    }

    pub fn set_registry(&mut self, registry: Arc<Registry>) {
        self.registry = registry;
    }

    pub fn counts(&self) -> EngineCounts {
        self.counts
    }

    /// A sensor's newest device time.
    pub fn last_seen(&self, sensor_id: &str) -> Option<i64> {
        self.index
            .get(sensor_id)
            .map(|&i| self.sensors[i].last_seen_ns)
            .filter(|t| *t != i64::MIN)
    }

    pub fn sensors(&self) -> usize {
        self.sensors.len()
    }

    /// Heap bytes of the windows (approximate: buckets, ids, speeds).
    pub fn heap_bytes(&self) -> usize {
        self.sensors
            .iter()
            .map(SensorState::heap_bytes)
            .sum::<usize>()
            + self.sensors.capacity() * std::mem::size_of::<SensorState>()
            + self.index.capacity() * (std::mem::size_of::<(String, usize)>() + 16)
    }

    fn offset_ns(&self) -> i64 {
        self.settings.utc_offset_hours * HOUR_NS
    }

    /// The local day of an instant.
    pub fn day_of(&self, t_ns: i64) -> i64 {
        (t_ns + self.offset_ns()).div_euclid(DAY_NS)
    }

    fn day_span(&self, day: i64) -> Span {
        Span {
            first_hour: (day * DAY_NS - self.offset_ns()).div_euclid(HOUR_NS),
            hours: 24,
        }
    }

    fn local_hour(&self, hour: i64) -> u8 {
        (hour + self.settings.utc_offset_hours).rem_euclid(24) as u8
    }

    /// Folds a reading into its sensor's windows.
    pub fn add(&mut self, r: &Reading, now_wall_ns: i64) {
        let t = r.time_ns;
        let city = &r.sensor.city;
        let lateness = self.settings.allowed_lateness.as_nanos() as i64;
        let clock = match self.cities.get_mut(city.as_str()) {
            Some(c) => c,
            None => self.cities.entry(city.clone()).or_insert(CityClock {
                max_event_ns: t,
                min_hour: hour_of(t),
                watermark_ns: i64::MIN,
                last_arrival_wall_ns: now_wall_ns,
                hours_done: None,
                days_done: None,
            }),
        };
        clock.last_arrival_wall_ns = now_wall_ns;
        let h = hour_of(t);
        if (h + 1) * HOUR_NS + lateness <= clock.watermark_ns {
            self.counts.late_readings += 1;
            // The device did report: coverage sees it.
            if let Some(&i) = self.index.get(r.sensor.sensor_id.as_str()) {
                self.sensors[i].last_seen_ns = self.sensors[i].last_seen_ns.max(t);
            }
            return;
        }
        clock.max_event_ns = clock.max_event_ns.max(t);
        if clock.hours_done.is_none() {
            clock.min_hour = clock.min_hour.min(h);
        }
        if let Some(done) = clock.hours_done.filter(|done| h < *done) {
            self.dirty_hours.insert((city.clone(), h));
            // The NowCasts of the next 11 hours already emitted include this hour too.
            if r.sensor.kind == Kind::Air {
                for later in h + 1..(h + 12).min(done) {
                    self.dirty_nowcasts.insert((city.clone(), later));
                }
            }
        }
        let day = (t + self.settings.utc_offset_hours * HOUR_NS).div_euclid(DAY_NS);
        if clock.days_done.is_some_and(|done| day < done) {
            self.dirty_days.insert((city.clone(), day));
        }
        let i = match self.index.get(r.sensor.sensor_id.as_str()) {
            Some(&i) => i,
            None => {
                self.sensors.push(SensorState::new(
                    &r.sensor.sensor_id,
                    city,
                    &r.sensor.district,
                    r.sensor.kind,
                ));
                self.index
                    .insert(r.sensor.sensor_id.clone(), self.sensors.len() - 1);
                self.sensors.len() - 1
            }
        };
        // Resolve the values to what the windows keep.
        let mut inputs = std::mem::take(&mut self.inputs);
        inputs.clear();
        let kind = r.sensor.kind;
        match kind {
            Kind::Traffic => {
                let get = |n: &str| r.values.iter().find(|(d, _)| d.name == n).map(|(_, v)| *v);
                if let Some(veh) = get("volume") {
                    let secs = get("interval").or_else(|| {
                        self.registry
                            .get(&r.sensor.sensor_id)
                            .map(|s| s.expected_interval.as_secs_f64())
                    });
                    if let Some(secs) = secs.filter(|s| *s > 0.0) {
                        inputs.push(Input::Traffic {
                            veh,
                            secs,
                            speed: get("speed"),
                        });
                    }
                }
            }
            Kind::Water | Kind::Heat | Kind::Power | Kind::Gas => {
                let reg = evaluate::register_metric(kind);
                for (d, v) in &r.values {
                    if d.name == reg {
                        inputs.push(Input::Register(*v));
                    } else if d.name == "leak_alarm" && *v > 0.0 {
                        inputs.push(Input::Alarm);
                    }
                }
            }
            _ => {}
        }
        for (d, v) in &r.values {
            if let Some(slot) = self
                .slots
                .iter()
                .position(|(k, m)| *k == kind && m == d.name)
            {
                inputs.push(Input::Metric {
                    slot: slot as u8,
                    value: *v,
                    one_off_ugm3: self.one_off[slot],
                });
            }
        }
        let lh = self.local_hour(h);
        let night = lh >= self.night_hours[0] && lh < self.night_hours[1];
        self.sensors[i].add(t, &inputs, night);
        self.inputs = inputs;
    }

    /// Moves every city's watermark and emits what it closed, then what late data reopened.
    pub fn advance(&mut self, now_wall_ns: i64) -> Vec<IndicatorValue> {
        let delay = self.settings.watermark_delay.as_nanos() as i64;
        let idle = self.settings.idle_timeout.as_nanos() as i64;
        let mut out = Vec::new();
        let cities: Vec<String> = self.cities.keys().cloned().collect();
        for city in cities {
            let Some(c) = self.cities.get_mut(&city) else {
                continue;
            };
            let mut wm = c.max_event_ns - delay;
            let silent = now_wall_ns - c.last_arrival_wall_ns;
            if silent > idle {
                // Nothing arrives: let the wall clock carry event time on from the newest
                // device time, never past the wall clock itself.
                wm = wm.max((c.max_event_ns + silent).min(now_wall_ns) - delay);
            }
            c.watermark_ns = c.watermark_ns.max(wm);
            let wm = c.watermark_ns;
            let (min_hour, hours_done, days_done) = (c.min_hour, c.hours_done, c.days_done);
            let mut h = hours_done.unwrap_or(min_hour);
            let mut d = days_done.unwrap_or_else(|| self.day_of(min_hour * HOUR_NS));
            let mut closed_hours = Vec::new();
            while (h + 1) * HOUR_NS <= wm {
                closed_hours.push(h);
                h += 1;
            }
            let mut closed_days = Vec::new();
            while self.day_span(d).end_ns() <= wm {
                closed_days.push(d);
                d += 1;
            }
            if let Some(c) = self.cities.get_mut(&city) {
                c.hours_done = Some(h);
                c.days_done = Some(d);
            }
            let closed = !closed_hours.is_empty();
            for h in closed_hours {
                self.emit_hour(&city, h, now_wall_ns, &mut out, false);
                self.dirty_hours.remove(&(city.clone(), h));
                self.dirty_nowcasts.remove(&(city.clone(), h));
            }
            for d in closed_days {
                self.emit_day(&city, d, now_wall_ns, &mut out);
                self.dirty_days.remove(&(city.clone(), d));
            }
            // Keep what a window still open to late data, the NowCast, the running day and a
            // register's baseline need.
            let keep_from = hour_of(wm - self.settings.allowed_lateness.as_nanos() as i64).min(
                self.day_span(self.day_of(wm - self.settings.allowed_lateness.as_nanos() as i64))
                    .first_hour,
            ) - 12;
            // Once per closed hour: a pass over every sensor on every tick cost more than the
            // readings themselves.
            if closed {
                for s in self.sensors.iter_mut().filter(|s| s.city == city) {
                    s.prune(keep_from);
                }
            }
        }
        // Late data inside the lateness: emit the window again. Each re-emission evaluates the
        // whole city's window (0.65 s for an hour at 100,000 sensors), so late data is gathered
        // and the windows it touched are emitted again at most every REEMIT_EVERY.
        if now_wall_ns.saturating_sub(self.last_reemit_ns) < REEMIT_EVERY_NS {
            return out;
        }
        self.last_reemit_ns = now_wall_ns;
        let hours: Vec<(String, i64)> = std::mem::take(&mut self.dirty_hours).into_iter().collect();
        for (city, h) in &hours {
            self.counts.reemitted_windows += 1;
            self.emit_hour(city, *h, now_wall_ns, &mut out, false);
        }
        let nowcasts: Vec<(String, i64)> = std::mem::take(&mut self.dirty_nowcasts)
            .into_iter()
            .filter(|k| !hours.contains(k))
            .collect();
        for (city, h) in nowcasts {
            self.counts.reemitted_windows += 1;
            self.emit_hour(&city, h, now_wall_ns, &mut out, true);
        }
        let days: Vec<(String, i64)> = std::mem::take(&mut self.dirty_days).into_iter().collect();
        for (city, d) in days {
            self.counts.reemitted_windows += 1;
            self.emit_day(&city, d, now_wall_ns, &mut out);
        }
        out
    }

    /// The hour's values: hourly and NowCast indicators, device coverage and data completeness
    /// (`nowcast_only`: the NowCast indicators alone).
    fn emit_hour(
        &mut self,
        city: &str,
        hour: i64,
        now: i64,
        out: &mut Vec<IndicatorValue>,
        nowcast_only: bool,
    ) {
        let span = Span {
            first_hour: hour,
            hours: 1,
        };
        let catalog = self.catalog.clone();
        let census = self.census(city);
        for def in &catalog.indicators {
            for w in &def.windows {
                let wanted = match w {
                    Window::Nowcast => true,
                    Window::Hour => !nowcast_only,
                    Window::Day => false,
                };
                if wanted {
                    self.evaluate(def, *w, span, now, &census, out);
                }
            }
        }
    }

    fn census<'a>(&'a self, city: &'a str) -> Census<'a> {
        Census {
            city,
            seen: (self.sensors.iter().enumerate())
                .filter(|(_, s)| s.city == city)
                .map(|(i, s)| (i, self.registry.get(&s.sensor_id).map(|a| a.as_ref())))
                .collect(),
            registered: (self.registry.iter())
                .filter(|i| i.city == city)
                .map(|info| {
                    let s = self.index.get(&info.sensor_id).map(|&i| &self.sensors[i]);
                    (info.as_ref(), info.kind.parse::<Kind>().ok(), s)
                })
                .collect(),
        }
    }

    fn emit_day(&mut self, city: &str, day: i64, now: i64, out: &mut Vec<IndicatorValue>) {
        let span = self.day_span(day);
        let catalog = self.catalog.clone();
        let census = self.census(city);
        for def in &catalog.indicators {
            if def.windows.contains(&Window::Day) {
                self.evaluate(def, Window::Day, span, now, &census, out);
            }
        }
        // The leak rule's history: this night's minimum flow, per water meter (replaced when
        // the day is emitted again).
        for s in self
            .sensors
            .iter_mut()
            .filter(|s| s.kind == Kind::Water && s.city == city)
        {
            let (mnf, _) = evaluate::night_flow(s, span);
            let d = span.first_hour.div_euclid(24);
            s.night_flows.retain(|(x, _)| *x != d);
            if let Some(m) = mnf {
                s.night_flows.push((d, m));
            }
        }
    }

    /// One indicator over one window of a city: per sensor, then districts and the city.
    fn evaluate(
        &self,
        def: &IndicatorDef,
        window: Window,
        span: Span,
        now: i64,
        census: &Census,
        out: &mut Vec<IndicatorValue>,
    ) {
        let city = census.city;
        let ctx = Ctx {
            catalog: &self.catalog,
            slots: &self.slots,
        };
        let value =
            |scope: Scope, sphere: Sphere, district: &str, sensor: &str, o: Out| IndicatorValue {
                indicator: def.id.clone(),
                sphere,
                scope,
                city: city.to_owned(),
                district: district.to_owned(),
                sensor_id: sensor.to_owned(),
                unit: evaluate::component_unit(def.function, &o.component)
                    .unwrap_or_else(|| def.unit.clone()),
                component: o.component,
                window: window.as_str().to_owned(),
                window_start_ns: span.start_ns(),
                window_end_ns: span.end_ns(),
                value: o.value.filter(|v| v.is_finite()),
                level: o.level,
                completeness: o.completeness,
                reference: def.reference.clone(),
                details: o.details,
                computed_ns: now,
            };
        match def.function {
            Function::DeviceCoverage | Function::DataCompleteness => {
                for (scope, district, sphere, o) in Self::coverage(def, span, census) {
                    out.push(value(scope, sphere, &district, "", o));
                }
                return;
            }
            Function::ConsumptionPerCapita
            | Function::DistrictLosses
            | Function::ReportingCoverage => {
                for (scope, district, o) in self.utility_balance(def, span, census) {
                    out.push(value(scope, def.sphere, &district, "", o));
                }
                return;
            }
            _ => {}
        }
        // Sensor values, kept for combining: district → component → (out, role).
        let mut by_district: BTreeMap<&str, Vec<(Out, Role)>> = BTreeMap::new();
        let mut expected: BTreeMap<(&str, Kind), u32> = BTreeMap::new();
        for &(i, info) in &census.seen {
            let s = &self.sensors[i];
            if !def.inputs.kinds.contains(&s.kind) {
                continue;
            }
            let outs = evaluate::sensor(&ctx, def, s, info, span);
            let role = info.map_or(Role::Consumer, |i| i.role);
            for o in outs {
                if def.scopes.contains(&Scope::Sensor) {
                    out.push(value(
                        Scope::Sensor,
                        def.sphere,
                        &s.district,
                        &s.sensor_id,
                        o.clone(),
                    ));
                }
                by_district
                    .entry(s.district.as_str())
                    .or_default()
                    .push((o, role));
            }
        }
        // Sensors expected per district and kind: the registered ones of the kinds read.
        for (info, kind, _) in &census.registered {
            // Consumption sums consumers; a district's input meter is its own series.
            let counted = def.function != Function::Consumption || info.role == Role::Consumer;
            if let Some(k) = kind.filter(|k| counted && def.inputs.kinds.contains(k)) {
                *expected.entry((info.district.as_str(), k)).or_default() += 1;
            }
        }
        // A component's expected sensors: consumption's components are meter kinds; the other
        // functions' components (pollutants) are read from every kind they read.
        let expected_for = |district: Option<&str>, component: &str| -> u32 {
            expected
                .iter()
                .filter(|((d, k), _)| {
                    district.is_none_or(|x| x == *d)
                        && (def.function != Function::Consumption || k.as_str() == component)
                })
                .map(|(_, n)| *n)
                .sum()
        };
        let mut city_members: Vec<(Out, Role)> = Vec::new();
        for (district, members) in &by_district {
            let mut components: BTreeMap<&str, Vec<(&Out, Role)>> = BTreeMap::new();
            for (o, r) in members {
                components
                    .entry(o.component.as_str())
                    .or_default()
                    .push((o, *r));
            }
            for (component, group) in &components {
                let exp = expected_for(Some(district), component);
                if let Some(o) = evaluate::combine(&self.catalog, def, group, exp) {
                    if def.scopes.contains(&Scope::District) {
                        out.push(value(Scope::District, def.sphere, district, "", o.clone()));
                    }
                }
            }
            city_members.extend(members.iter().cloned());
        }
        if def.scopes.contains(&Scope::City) {
            let mut components: BTreeMap<&str, Vec<(&Out, Role)>> = BTreeMap::new();
            for (o, r) in &city_members {
                components
                    .entry(o.component.as_str())
                    .or_default()
                    .push((o, *r));
            }
            for (component, group) in &components {
                let exp = expected_for(None, component);
                if let Some(o) = evaluate::combine(&self.catalog, def, group, exp) {
                    out.push(value(Scope::City, def.sphere, "", "", o));
                }
            }
        }
    }

    /// The newest device time of a sensor before `t` (an hour boundary): its last seen when
    /// older, else the newest bucket before `t`.
    fn last_seen_before(s: &SensorState, t: i64) -> Option<i64> {
        if s.last_seen_ns < t && s.last_seen_ns != i64::MIN {
            return Some(s.last_seen_ns);
        }
        s.range(i64::MIN, hour_of(t - 1) + 1)
            .last()
            .map(|b| b.max_t)
            .filter(|t| *t != i64::MIN)
    }

    /// Device coverage and data completeness per sphere, for districts and the city, over the
    /// registered devices (a device not registered is not expected).
    fn coverage(
        def: &IndicatorDef,
        span: Span,
        census: &Census,
    ) -> Vec<(Scope, String, Sphere, Out)> {
        let tolerance = def.params.tolerance.unwrap_or(1.5);
        let end = span.end_ns();
        // (sphere, district) → (have, expected)
        let mut tally: BTreeMap<(Sphere, &str), (u64, u64)> = BTreeMap::new();
        for &(info, _, s) in &census.registered {
            let interval = info.expected_interval.as_nanos().max(1) as i64;
            let (have, expected) = match def.function {
                Function::DeviceCoverage => {
                    let ok = s
                        .and_then(|s| Self::last_seen_before(s, end))
                        .is_some_and(|t| t >= end - (interval as f64 * tolerance) as i64);
                    (u64::from(ok), 1)
                }
                _ => {
                    let window = span.hours * HOUR_NS;
                    if interval > window {
                        continue;
                    }
                    let expected = (window / interval) as u64;
                    let got: u64 = s.map_or(0, |s| {
                        s.range(span.first_hour, span.end_hour())
                            .map(|b| u64::from(b.count))
                            .sum()
                    });
                    (got.min(expected), expected)
                }
            };
            let e = tally.entry((info.sphere, &info.district)).or_default();
            e.0 += have;
            e.1 += expected;
        }
        let unit = if def.function == Function::DeviceCoverage {
            "devices"
        } else {
            "readings"
        };
        let mk = |have: u64, expected: u64| {
            let c = Completeness::new(
                have.min(u64::from(u32::MAX)) as u32,
                expected.min(u64::from(u32::MAX)) as u32,
                unit,
            );
            let v = (expected > 0).then(|| 100.0 * have as f64 / expected as f64);
            let mut o = Out::new("", v, c);
            o.level = v.and_then(|v| def.level_of(v));
            if expected == 0 {
                o.details.push((
                    "note".into(),
                    Detail::Text("no devices of this sphere registered".into()),
                ));
            }
            o
        };
        let mut out = Vec::new();
        let mut per_sphere: BTreeMap<Sphere, (u64, u64)> =
            Sphere::ALL.iter().map(|s| (*s, (0, 0))).collect();
        for ((sphere, district), (have, expected)) in &tally {
            if def.scopes.contains(&Scope::District) {
                out.push((
                    Scope::District,
                    (*district).to_owned(),
                    *sphere,
                    mk(*have, *expected),
                ));
            }
            let e = per_sphere.entry(*sphere).or_default();
            e.0 += have;
            e.1 += expected;
        }
        if def.scopes.contains(&Scope::City) {
            for (sphere, (have, expected)) in per_sphere {
                out.push((Scope::City, String::new(), sphere, mk(have, expected)));
            }
        }
        out
    }

    /// Per-capita consumption, district losses and reporting coverage, per meter kind.
    fn utility_balance(
        &self,
        def: &IndicatorDef,
        span: Span,
        census: &Census,
    ) -> Vec<(Scope, String, Out)> {
        #[derive(Default)]
        struct Tally {
            registered: u32,
            reporting: u32,
            consumers: u32,
            consumers_valid: u32,
            consumed: f64,
            population: f64,
            consumers_with_population: u32,
            input: Option<f64>,
            inputs: u32,
            inputs_valid: u32,
        }
        impl Tally {
            /// Counts one meter: registered or not, its role, whether it reported in the
            /// window, its consumption (None: unknown) and the people it serves.
            fn add(
                &mut self,
                registered: bool,
                role: Role,
                reported: bool,
                consumed: Option<f64>,
                population: Option<u32>,
            ) {
                self.registered += u32::from(registered);
                self.reporting += u32::from(reported);
                match role {
                    Role::Consumer => {
                        self.consumers += 1;
                        if let Some(c) = consumed {
                            self.consumers_valid += 1;
                            self.consumed += c;
                            if let Some(p) = population {
                                self.population += f64::from(p);
                                self.consumers_with_population += 1;
                            }
                        }
                    }
                    Role::DistrictInput => {
                        self.inputs += 1;
                        if let Some(c) = consumed {
                            self.inputs_valid += 1;
                            self.input = Some(self.input.unwrap_or(0.0) + c);
                        }
                    }
                }
            }
        }
        // Per (kind, district), and per kind for the city, counted in the same pass.
        let mut tally: BTreeMap<(Kind, String), Tally> = BTreeMap::new();
        let mut city_t: BTreeMap<Kind, Tally> = BTreeMap::new();
        // Devices: registered ones; where nothing is registered, those seen.
        let mut devices: Vec<(Option<&SensorInfo>, Option<&SensorState>, Kind, &str)> = Vec::new();
        if census.registered.is_empty() {
            for &(i, _) in &census.seen {
                let s = &self.sensors[i];
                devices.push((None, Some(s), s.kind, s.district.as_str()));
            }
        } else {
            for &(info, kind, s) in &census.registered {
                if let Some(k) = kind {
                    devices.push((Some(info), s, k, info.district.as_str()));
                }
            }
        }
        for (info, s, kind, district) in devices {
            if !def.inputs.kinds.contains(&kind) {
                continue;
            }
            let role = info.map_or(Role::Consumer, |i| i.role);
            let reported = s.is_some_and(|s| {
                s.range(span.first_hour, span.end_hour())
                    .any(|b| b.count > 0)
            });
            let consumed = s.and_then(|s| evaluate::consumption(s, info, span).0);
            let population = info.and_then(|i| i.population);
            for t in [
                tally.entry((kind, district.to_owned())).or_default(),
                city_t.entry(kind).or_default(),
            ] {
                t.add(info.is_some(), role, reported, consumed, population);
            }
        }
        let factor = def.params.factor.unwrap_or(1.0);
        let eval = |t: &Tally, kind: Kind| -> Out {
            match def.function {
                Function::ReportingCoverage => {
                    let c = Completeness::new(t.reporting, t.registered, "meters");
                    let v = (t.registered > 0)
                        .then(|| 100.0 * f64::from(t.reporting) / f64::from(t.registered));
                    Out::new(kind.as_str(), v, c)
                }
                Function::ConsumptionPerCapita => {
                    let c = Completeness::new(t.consumers_with_population, t.consumers, "meters");
                    let ok = c.ratio() >= 0.9 && t.population > 0.0;
                    let v = ok.then(|| t.consumed / t.population * factor);
                    let mut o = Out::new(kind.as_str(), v, c);
                    o.details
                        .push(("population".into(), Detail::Number(t.population)));
                    o.details
                        .push(("consumption".into(), Detail::Number(t.consumed)));
                    o
                }
                _ => {
                    // Losses: the inputs minus the consumers, valid with every input meter and
                    // 95 % of the consumer meters (a missing meter would read as a loss).
                    let c = Completeness::new(t.consumers_valid, t.consumers, "meters");
                    let ok = t.inputs > 0 && t.inputs_valid == t.inputs && c.ratio() >= 0.95;
                    let mut o = Out::new(kind.as_str(), None, c);
                    if let (Some(input), true) = (t.input, ok) {
                        if let Some((lost, pct)) =
                            crate::indicators::utilities::district_losses(input, &[t.consumed])
                        {
                            o.value = Some(lost);
                            o.details.push(("share_pct".into(), Detail::Number(pct)));
                            o.details.push(("input".into(), Detail::Number(input)));
                            o.details
                                .push(("consumers".into(), Detail::Number(t.consumed)));
                            if t.consumers > 0 {
                                o.details.push((
                                    "per_connection_per_day".into(),
                                    Detail::Number(
                                        lost / f64::from(t.consumers) * 24.0 / span.hours as f64,
                                    ),
                                ));
                            }
                        }
                    }
                    if t.inputs == 0 {
                        o.details.push((
                            "note".into(),
                            Detail::Text("no district input meter registered".into()),
                        ));
                    }
                    o
                }
            }
        };
        let mut out = Vec::new();
        if def.scopes.contains(&Scope::District) {
            for ((kind, district), t) in &tally {
                let mut o = eval(t, *kind);
                o.level = o.value.and_then(|v| def.level_of(v));
                out.push((Scope::District, district.clone(), o));
            }
        }
        if def.scopes.contains(&Scope::City) {
            for (kind, t) in &city_t {
                let mut o = eval(t, *kind);
                o.level = o.value.and_then(|v| def.level_of(v));
                out.push((Scope::City, String::new(), o));
            }
        }
        out
    }

    /// The state a restart needs, borrowed (serialises like [`Snapshot`]).
    pub fn snapshot(&self) -> SnapshotRef<'_> {
        SnapshotRef {
            sensors: &self.sensors,
            cities: &self.cities,
            late: self.counts.late_readings,
            dirty_hours: &self.dirty_hours,
            dirty_days: &self.dirty_days,
            dirty_nowcasts: &self.dirty_nowcasts,
        }
    }

    pub fn restore(&mut self, s: Snapshot) {
        self.index = s
            .sensors
            .iter()
            .enumerate()
            .map(|(i, s)| (s.sensor_id.clone(), i))
            .collect();
        self.sensors = s.sensors;
        self.cities = s.cities;
        self.counts.late_readings = s.late;
        self.dirty_hours = s.dirty_hours;
        self.dirty_days = s.dirty_days;
        self.dirty_nowcasts = s.dirty_nowcasts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SensorRef, TimeSource};
    use crate::normalize::catalog::lookup;

    const MIN: i64 = 60_000_000_000;
    /// 2026-11-10T00:00:00+05:00 (a local midnight), ns.
    const DAY0: i64 = 1_794_250_800 * 1_000_000_000;

    fn reading(id: &str, district: &str, kind: Kind, t: i64, values: &[(&str, f64)]) -> Reading {
        Reading {
            sensor: SensorRef {
                city: "talgar".into(),
                district: district.into(),
                kind,
                sensor_id: id.into(),
            },
            time_ns: t,
            time_source: TimeSource::Device,
            values: values
                .iter()
                .map(|(n, v)| (lookup(kind, n).unwrap_or_else(|| panic!("{n}")), *v))
                .collect(),
        }
    }

    fn info(id: &str, district: &str, kind: &str, sphere: Sphere, every: u64) -> SensorInfo {
        SensorInfo {
            sensor_id: id.into(),
            kind: kind.into(),
            city: "talgar".into(),
            district: district.into(),
            sphere,
            expected_interval: Duration::from_secs(every),
            population: None,
            role: Role::Consumer,
            free_flow_speed: None,
            register_max: None,
            latitude: None,
            longitude: None,
        }
    }

    fn engine(registry: Vec<SensorInfo>) -> Engine {
        Engine::new(
            Arc::new(Catalog::builtin()),
            EngineSettings::default(),
            Arc::new(Registry::new(registry)),
        )
    }

    fn find<'a>(
        v: &'a [IndicatorValue],
        id: &str,
        scope: Scope,
        component: &str,
        window: &str,
    ) -> Vec<&'a IndicatorValue> {
        v.iter()
            .filter(|x| {
                x.indicator == id
                    && x.scope == scope
                    && x.component == component
                    && x.window == window
            })
            .collect()
    }

    fn one<'a>(
        v: &'a [IndicatorValue],
        id: &str,
        scope: Scope,
        component: &str,
        window: &str,
    ) -> &'a IndicatorValue {
        let f = find(v, id, scope, component, window);
        assert_eq!(f.len(), 1, "{id} {scope} {component} {window}: {f:?}");
        f[0]
    }

    /// Runs the engine's watermark past `until` (event time) with the wall clock far ahead.
    fn close(e: &mut Engine, until: i64) -> Vec<IndicatorValue> {
        // A reading of a sensor elsewhere in the city moves the watermark.
        e.add(
            &reading("clock", "x", Kind::Gas, until + 3 * MIN, &[("volume", 0.0)]),
            0,
        );
        e.advance(0)
    }

    #[test]
    fn an_air_day_gives_the_published_aqi_and_the_kazakh_grades() {
        let mut e = engine(vec![info("st1", "center", "air", Sphere::Ecology, 1200)]);
        // PM2.5 20.0 µg/m³ every 20 minutes for a whole local day.
        for k in 0..72 {
            e.add(
                &reading(
                    "st1",
                    "center",
                    Kind::Air,
                    DAY0 + k * 20 * MIN,
                    &[("pm2_5", 20.0)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        // NowCast of 12 equal hours = 20.0 → AQI 71 (DOMAIN.md §3's published check).
        let nc = find(&v, "us_aqi_nowcast", Scope::Sensor, "", "nowcast");
        assert_eq!(nc.len(), 24);
        let last = nc
            .iter()
            .max_by_key(|x| x.window_start_ns)
            .map(|x| (*x).clone());
        let last = last.unwrap_or_else(|| panic!("no nowcast"));
        assert_eq!(last.value, Some(71.0));
        assert_eq!(last.level.as_deref(), Some("moderate"));
        assert_eq!(last.completeness, Completeness::new(12, 12, "h"));
        // The first hour: 1 of the 3 newest hours → invalid, never a number.
        let first = nc.iter().min_by_key(|x| x.window_start_ns).map(|x| x.value);
        assert_eq!(first, Some(None));
        // Daily: mean 20.0 → 71; ПДК с.с. multiple 20 / 35 = 0.5714...; СИ = 20 / 160 = 0.125;
        // НП = 0 %; ИЗА₅ = (20/35)^1.0 = 0.5714 (PM as class 3); level: low (grade 1).
        let d = one(&v, "us_aqi_daily", Scope::Sensor, "", "24h");
        assert_eq!(
            (d.value, d.window_start_ns, d.window_end_ns),
            (Some(71.0), DAY0, DAY0 + 24 * 60 * MIN)
        );
        assert_eq!(d.completeness, Completeness::new(24, 24, "h"));
        let m = one(&v, "pdk_multiple", Scope::Sensor, "pm2_5", "24h")
            .value
            .unwrap_or(0.0);
        assert!((m - 20.0 / 35.0).abs() < 1e-12, "{m}");
        assert_eq!(
            one(&v, "kz_si", Scope::Sensor, "", "24h").value,
            Some(0.125)
        );
        assert_eq!(one(&v, "kz_np", Scope::Sensor, "", "24h").value, Some(0.0));
        let iza = one(&v, "kz_iza5", Scope::Sensor, "", "24h")
            .value
            .unwrap_or(0.0);
        assert!((iza - 20.0 / 35.0).abs() < 1e-12);
        let lvl = one(&v, "kz_pollution_level", Scope::Sensor, "", "24h");
        assert_eq!((lvl.value, lvl.level.as_deref()), (Some(1.0), Some("low")));
        // Hourly one-off multiple 20 / 160 = 0.125; EAQI: 20 µg/m³ PM2.5 is "moderate" (≤ 50), band 3.
        let h = find(&v, "pdk_multiple", Scope::Sensor, "pm2_5", "1h");
        assert_eq!(h.len(), 24);
        assert!(h.iter().all(|x| x.value == Some(0.125)));
        let eaqi = find(&v, "eaqi_level", Scope::Sensor, "", "1h");
        assert!(eaqi
            .iter()
            .all(|x| x.value == Some(3.0) && x.level.as_deref() == Some("moderate")));
        // District and city: the one station.
        assert_eq!(
            one(&v, "us_aqi_daily", Scope::District, "", "24h").value,
            Some(71.0)
        );
        assert_eq!(
            one(&v, "us_aqi_daily", Scope::City, "", "24h").completeness,
            Completeness::new(1, 1, "sensors")
        );
    }

    #[test]
    fn a_day_below_18_hours_is_invalid_and_says_how_complete_it_was() {
        let mut e = engine(vec![]);
        for k in 0..17 * 3 {
            e.add(
                &reading(
                    "st1",
                    "center",
                    Kind::Air,
                    DAY0 + k * 20 * MIN,
                    &[("pm2_5", 40.0)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        let d = one(&v, "us_aqi_daily", Scope::Sensor, "", "24h");
        assert_eq!(d.value, None);
        assert_eq!(d.completeness.to_string(), "17/24 h");
        assert_eq!(
            one(&v, "pdk_multiple", Scope::Sensor, "pm2_5", "24h").value,
            None
        );
    }

    #[test]
    fn late_data_within_the_lateness_reemits_beyond_it_is_counted() {
        let mut e = engine(vec![]);
        // Hour 10:00–11:00 local: one reading at 10:20, then time moves to 11:05.
        let h10 = DAY0 + 10 * 60 * MIN;
        e.add(
            &reading("st1", "c", Kind::Air, h10 + 20 * MIN, &[("pm2_5", 10.0)]),
            0,
        );
        let v = close(&mut e, h10 + 60 * MIN);
        let first = find(&v, "pdk_multiple", Scope::Sensor, "pm2_5", "1h");
        let first: Vec<_> = first.iter().filter(|x| x.window_start_ns == h10).collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].value, Some(10.0 / 160.0));
        // A late reading for 10:40 (inside the hour of lateness): the hour is emitted again.
        e.add(
            &reading("st1", "c", Kind::Air, h10 + 40 * MIN, &[("pm2_5", 32.0)]),
            0,
        );
        // Late data is gathered: nothing is emitted again within 10 s (wall) of the last pass...
        assert!(e
            .advance(5_000_000_000)
            .iter()
            .all(|x| x.window_start_ns != h10));
        // ...and then the hour is.
        let again = e.advance(20_000_000_000);
        let re: Vec<_> = again
            .iter()
            .filter(|x| {
                x.indicator == "pdk_multiple"
                    && x.window_start_ns == h10
                    && x.scope == Scope::Sensor
            })
            .collect();
        assert_eq!(re.len(), 1);
        assert_eq!(re[0].value, Some(32.0 / 160.0));
        assert_eq!(e.counts().reemitted_windows, 1);
        // Time moves 3 hours on; a reading for 10:50 is now beyond the lateness.
        close(&mut e, h10 + 4 * 60 * MIN);
        e.add(
            &reading("st1", "c", Kind::Air, h10 + 50 * MIN, &[("pm2_5", 500.0)]),
            0,
        );
        let none = e.advance(0);
        assert!(none.iter().all(|x| x.window_start_ns != h10));
        assert_eq!(e.counts().late_readings, 1);
    }

    #[test]
    fn meters_give_consumption_losses_per_capita_and_coverage() {
        // Two consumers (0.5 and 0.25 m³/h, 3 people each) and the district's input meter
        // (0.9 m³/h): losses 0.15 m³/h = 16.7 % of the input.
        let mut input = info("in", "north", "water", Sphere::HousingUtilities, 3600);
        input.role = Role::DistrictInput;
        let mut a = info("a", "north", "water", Sphere::HousingUtilities, 3600);
        a.population = Some(3);
        let mut b = info("b", "north", "water", Sphere::HousingUtilities, 3600);
        b.population = Some(3);
        let cam = info("cam", "north", "status", Sphere::Safety, 600);
        let mut e = engine(vec![input, a, b, cam]);
        // Readings at hh:00 from 23:00 the day before through 23:00 of the day (25 readings).
        for k in -1..24 {
            let t = DAY0 + k * 60 * MIN;
            let x = (k + 1) as f64;
            e.add(
                &reading("a", "north", Kind::Water, t, &[("volume", 100.0 + 0.5 * x)]),
                0,
            );
            e.add(
                &reading("b", "north", Kind::Water, t, &[("volume", 7.0 + 0.25 * x)]),
                0,
            );
            e.add(
                &reading(
                    "in",
                    "north",
                    Kind::Water,
                    t,
                    &[("volume", 1000.0 + 0.9 * x)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        // Hourly: 0.5 m³ for meter a in every hour of the day.
        let ha = find(&v, "consumption", Scope::Sensor, "water", "1h");
        let ha: Vec<_> = ha
            .iter()
            .filter(|x| x.sensor_id == "a" && x.window_start_ns >= DAY0)
            .collect();
        assert_eq!(ha.len(), 24);
        assert!(
            ha.iter()
                .all(|x| x.value.is_some_and(|c| (c - 0.5).abs() < 1e-9)),
            "{ha:?}"
        );
        // The day: a 12.0, b 6.0; district consumers 18.0 (the input meter is not a consumer).
        let v: Vec<IndicatorValue> = v
            .into_iter()
            .filter(|x| x.window_start_ns >= DAY0)
            .collect();
        let day: Vec<_> = find(&v, "consumption", Scope::Sensor, "water", "24h");
        let a_day = day
            .iter()
            .find(|x| x.sensor_id == "a")
            .and_then(|x| x.value)
            .unwrap_or(0.0);
        assert!((a_day - 12.0).abs() < 1e-9, "{a_day}");
        let dist = one(&v, "consumption", Scope::District, "water", "24h")
            .value
            .unwrap_or(0.0);
        assert!((dist - 18.0).abs() < 1e-9, "{dist}");
        // Losses: 21.6 − 18.0 = 3.6 m³ = 16.67 % of the input.
        let l = one(&v, "district_losses", Scope::District, "water", "24h");
        assert!((l.value.unwrap_or(0.0) - 3.6).abs() < 1e-9, "{l:?}");
        let share = l
            .details
            .iter()
            .find(|(k, _)| k == "share_pct")
            .map(|(_, d)| d.clone());
        assert!(matches!(share, Some(Detail::Number(p)) if (p - 100.0 * 3.6 / 21.6).abs() < 1e-9));
        // Per capita: 18.0 m³ / 6 people = 3.0 m³ per person per day.
        let pc = one(
            &v,
            "consumption_per_capita",
            Scope::District,
            "water",
            "24h",
        );
        assert!((pc.value.unwrap_or(0.0) - 3.0).abs() < 1e-9);
        // Reporting coverage: 3 of 3 water meters.
        assert_eq!(
            one(&v, "reporting_coverage", Scope::District, "water", "24h").value,
            Some(100.0)
        );
        // Device coverage, all eight spheres at city scope: housing 3/3 = 100 %, safety 0/1
        // (the camera never reported) = 0 %, the six others: no devices → invalid.
        let dc: Vec<_> = v
            .iter()
            .filter(|x| {
                x.indicator == "device_coverage" && x.scope == Scope::City && x.window == "24h"
            })
            .collect();
        assert_eq!(dc.len(), 8);
        let of = |s: Sphere| dc.iter().find(|x| x.sphere == s).and_then(|x| x.value);
        assert_eq!(of(Sphere::HousingUtilities), Some(100.0));
        assert_eq!(of(Sphere::Safety), Some(0.0));
        assert_eq!(of(Sphere::Economy), None);
        // Data completeness of the day: 24 of 24 readings per meter.
        let comp = v
            .iter()
            .find(|x| {
                x.indicator == "data_completeness"
                    && x.scope == Scope::City
                    && x.window == "24h"
                    && x.sphere == Sphere::HousingUtilities
            })
            .map(|x| (x.value, x.completeness.clone()));
        assert_eq!(
            comp,
            Some((Some(100.0), Completeness::new(72, 72, "readings")))
        );
    }

    #[test]
    fn a_lane_gives_flow_speed_congestion_and_level_of_service() {
        let mut lane = info("d1-l1", "center", "traffic", Sphere::Transport, 60);
        lane.free_flow_speed = Some(60.0);
        let mut e = engine(vec![lane]);
        let h = DAY0 + 8 * 60 * MIN;
        // 30 vehicles a minute at 30 km/h for an hour: q = 1800 veh/h, v = 30 km/h;
        // TTI = 60 / 30 = 2.0 (acceptable), congestion 100 × (2 − 1) = 100 % (heavy);
        // density 1800 / 30 = 60 veh/km/lane → LOS F.
        for k in 0..60 {
            e.add(
                &reading(
                    "d1-l1",
                    "center",
                    Kind::Traffic,
                    h + k * MIN,
                    &[("volume", 30.0), ("interval", 60.0), ("speed", 30.0)],
                ),
                0,
            );
        }
        let v = close(&mut e, h + 60 * MIN);
        let at = |id: &str| {
            v.iter()
                .find(|x| {
                    x.indicator == id
                        && x.scope == Scope::Sensor
                        && x.window_start_ns == h
                        && x.window == "1h"
                })
                .map(|x| (x.value, x.level.clone()))
        };
        assert_eq!(at("traffic_flow"), Some((Some(1800.0), None)));
        assert_eq!(at("traffic_speed"), Some((Some(30.0), None)));
        assert_eq!(
            at("travel_time_index"),
            Some((Some(2.0), Some("acceptable".into())))
        );
        assert_eq!(
            at("congestion_level"),
            Some((Some(100.0), Some("heavy".into())))
        );
        assert_eq!(at("level_of_service"), Some((Some(60.0), Some("F".into()))));
        let city = v
            .iter()
            .find(|x| {
                x.indicator == "travel_time_index"
                    && x.scope == Scope::City
                    && x.window_start_ns == h
            })
            .and_then(|x| x.value);
        assert_eq!(city, Some(2.0));
    }

    #[test]
    fn nowcast_weighs_recent_hours_by_hand() {
        let mut e = engine(vec![info("st1", "c", "air", Sphere::Ecology, 3600)]);
        // Hourly PM2.5 10, 20, 30 (oldest first) at 08:00, 09:00, 10:00 local.
        for (k, c) in [(8, 10.0), (9, 20.0), (10, 30.0)] {
            e.add(
                &reading(
                    "st1",
                    "c",
                    Kind::Air,
                    DAY0 + k * 60 * MIN + 5 * MIN,
                    &[("pm2_5", c)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 11 * 60 * MIN);
        let at10 = v
            .iter()
            .find(|x| {
                x.indicator == "us_aqi_nowcast"
                    && x.scope == Scope::Sensor
                    && x.window_start_ns == DAY0 + 10 * 60 * MIN
            })
            .map(|x| (x.value, x.details.clone()));
        // Newest first c = 30, 20, 10: w* = 1 − (30 − 10)/30 = 0.33 → w = 0.5;
        // NowCast = (30 + 0.5·20 + 0.25·10) / (1 + 0.5 + 0.25) = 42.5 / 1.75 = 24.28 → 24.2;
        // AQI = (100 − 51)/(35.4 − 9.1) × (24.2 − 9.1) + 51 = 79.13 → 79.
        let (value, details) = at10.unwrap_or_else(|| panic!("no NowCast at 10:00"));
        assert_eq!(value, Some(79.0));
        assert!(
            details.contains(&("nowcast_pm2_5".into(), Detail::Number(24.2))),
            "{details:?}"
        );
        assert!(details.contains(&("dominant".into(), Detail::Text("pm2_5".into()))));
    }

    #[test]
    fn exceedances_si_and_np_of_a_day_by_hand() {
        let mut e = engine(vec![info("st1", "c", "air", Sphere::Ecology, 3600)]);
        // NO2 hourly for a day, ПДК м.р. 0.2 mg/m³ = 200 µg/m³: 20 × 100, 2 × 300 (> 1 ПДК),
        // 1 × 1100 (> 5), 1 × 4100 (> 20).
        let mut vals = vec![100.0; 20];
        vals.extend([300.0, 300.0, 1100.0, 4100.0]);
        for (k, c) in vals.iter().enumerate() {
            e.add(
                &reading(
                    "st1",
                    "c",
                    Kind::Air,
                    DAY0 + k as i64 * 60 * MIN + MIN,
                    &[("no2", *c)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        let x = one(&v, "pdk_exceedances", Scope::Sensor, "no2", "24h");
        // Above 1 ПДК: 4; above 5 (1000): 2; above 10 (2000): 1; above 20 (4000): 1.
        assert_eq!(x.value, Some(4.0));
        let num = |k: &str| {
            x.details
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, d)| d.clone())
        };
        assert_eq!(num("above_5"), Some(Detail::Number(2.0)));
        assert_eq!(num("above_10"), Some(Detail::Number(1.0)));
        assert_eq!(num("above_20"), Some(Detail::Number(1.0)));
        // СИ = 4100 / 200 = 20.5 (very high); НП = 4 / 24 = 16.7 % (elevated); the level takes
        // the higher grade: very high (4).
        let si = one(&v, "kz_si", Scope::Sensor, "", "24h");
        assert!(si.value.is_some_and(|x| (x - 20.5).abs() < 1e-9), "{si:?}");
        assert_eq!(si.level.as_deref(), Some("very_high"));
        let np = one(&v, "kz_np", Scope::Sensor, "", "24h")
            .value
            .unwrap_or(0.0);
        assert!((np - 100.0 * 4.0 / 24.0).abs() < 1e-9);
        let lvl = one(&v, "kz_pollution_level", Scope::Sensor, "", "24h");
        assert_eq!(
            (lvl.value, lvl.level.as_deref()),
            (Some(4.0), Some("very_high"))
        );
        // The city's exceedances: the one post's.
        assert_eq!(
            one(&v, "pdk_exceedances", Scope::City, "no2", "24h").value,
            Some(4.0)
        );
    }

    #[test]
    fn minimum_night_flow_of_a_quarter_hourly_meter_by_hand() {
        let mut e = engine(vec![info(
            "w1",
            "c",
            "water",
            Sphere::HousingUtilities,
            900,
        )]);
        // Register every 15 minutes from 23:45 the day before: 0.1 m³ a quarter (0.4 m³/h),
        // except 02:00–04:00 local, 0.025 m³ a quarter (0.1 m³/h).
        let mut reg = 50.0;
        e.add(
            &reading("w1", "c", Kind::Water, DAY0 - 15 * MIN, &[("volume", reg)]),
            0,
        );
        for q in 0..96 {
            let hour = q / 4;
            reg += if (2..4).contains(&hour) { 0.025 } else { 0.1 };
            e.add(
                &reading(
                    "w1",
                    "c",
                    Kind::Water,
                    DAY0 + q * 15 * MIN + 15 * MIN - 1,
                    &[("volume", reg)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN + 15 * MIN);
        let v: Vec<IndicatorValue> = v
            .into_iter()
            .filter(|x| x.window_start_ns == DAY0)
            .collect();
        // The smallest rolling mean of 4 quarter flows lies inside 02:00–04:00: 0.025 × 4 = 0.1 m³/h.
        let m = one(&v, "night_flow_min", Scope::Sensor, "", "24h");
        assert!(m.value.is_some_and(|x| (x - 0.1).abs() < 1e-9), "{m:?}");
        assert_eq!(m.completeness.to_string(), "96/96 points");
        // The day's consumption: 88 × 0.1 + 8 × 0.025 = 9.0 m³.
        let c = one(&v, "consumption", Scope::Sensor, "water", "24h")
            .value
            .unwrap_or(0.0);
        assert!((c - 9.0).abs() < 1e-9, "{c}");
    }

    #[test]
    fn the_leak_rule_by_hand() {
        let c = Catalog::builtin();
        let def = c
            .get("leak_suspected")
            .unwrap_or_else(|| panic!("leak_suspected"));
        // rise 0.5, nights 3. Seven nights at 0.10 m³/h, then 0.20, 0.20 and tonight 0.20: each
        // is above the median of its 7 nights before (0.10 → 0.15 with the rise): suspected.
        let mut h: Vec<(i64, f64)> = (0..7).map(|d| (d, 0.10)).collect();
        h.push((7, 0.20));
        h.push((8, 0.20));
        assert_eq!(evaluate::leak_rule(def, &h, 9, Some(0.20)), Some(true));
        // Only two high nights so far: not yet.
        assert_eq!(
            evaluate::leak_rule(def, &h[..8], 8, Some(0.20)),
            Some(false)
        );
        // Tonight back to normal: no.
        assert_eq!(evaluate::leak_rule(def, &h, 9, Some(0.11)), Some(false));
        // No night flow tonight: unknown.
        assert_eq!(evaluate::leak_rule(def, &h, 9, None), None);
    }

    #[test]
    fn the_generic_mean_needs_its_share_of_hours() {
        let mut e = engine(vec![info("st1", "c", "air", Sphere::Ecology, 3600)]);
        // Temperature −10 °C for 17 hours and −4 °C for 1: 18/24 h = 75 % → mean of hourly
        // means (17 × −10 − 4) / 18 = −9.67 °C.
        for k in 0..18 {
            let t = if k == 17 { -4.0 } else { -10.0 };
            e.add(
                &reading(
                    "st1",
                    "c",
                    Kind::Air,
                    DAY0 + k * 60 * MIN + MIN,
                    &[("temperature", t)],
                ),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        let m = one(&v, "air_temperature_mean", Scope::Sensor, "", "24h")
            .value
            .unwrap_or(0.0);
        assert!((m - (17.0 * -10.0 - 4.0) / 18.0).abs() < 1e-9, "{m}");
    }

    #[test]
    fn a_rollover_is_counted_a_reset_makes_the_window_unknown_and_kinds_are_counted_apart() {
        // Two water meters and a gas meter, one district, hourly from 23:00 the day before.
        // Meter r (five digits: top 100,000 m³) rolls over between 11:00 and 12:00 local.
        // Meter z is replaced: 491.0 → 3.0 at 12:00; its 12:00 hour and its day are unknown.
        let mut r = info("r", "d", "water", Sphere::HousingUtilities, 3600);
        r.register_max = Some(100_000.0);
        let z = info("z", "d", "water", Sphere::HousingUtilities, 3600);
        let g = info("g", "d", "gas", Sphere::HousingUtilities, 3600);
        let mut e = engine(vec![r, z, g]);
        for k in -1..24i64 {
            let t = DAY0 + k * 60 * MIN;
            let rv = if k < 12 {
                99_987.0 + k as f64
            } else {
                (k - 12) as f64 + 0.5
            };
            let zv = if k < 12 {
                480.0 + k as f64
            } else {
                3.0 + (k - 12) as f64
            };
            e.add(&reading("r", "d", Kind::Water, t, &[("volume", rv)]), 0);
            e.add(&reading("z", "d", Kind::Water, t, &[("volume", zv)]), 0);
            e.add(
                &reading("g", "d", Kind::Gas, t, &[("volume", 10.0 + k as f64)]),
                0,
            );
        }
        let v = close(&mut e, DAY0 + 24 * 60 * MIN);
        let v: Vec<IndicatorValue> = v
            .into_iter()
            .filter(|x| x.window_start_ns >= DAY0)
            .collect();
        let hour = |id: &str, h: i64| {
            v.iter()
                .find(|x| {
                    x.indicator == "consumption"
                        && x.sensor_id == id
                        && x.window == "1h"
                        && x.window_start_ns == DAY0 + h * 60 * MIN
                })
                .map(|x| (x.value, x.details.clone()))
        };
        // r at 12:00: from 99,998.0 (11:00) over the top to 0.5 = 2.5 m³, flagged rollover.
        let (rv, rd) = hour("r", 12).unwrap_or((None, Vec::new()));
        assert!(rv.is_some_and(|c| (c - 2.5).abs() < 1e-9), "{rv:?}");
        assert!(rd.contains(&("flag".into(), Detail::Text("rollover".into()))));
        // z at 12:00: 491.0 → 3.0 is a reset: invalid, flagged.
        let (zv, zd) = hour("z", 12).unwrap_or((Some(0.0), Vec::new()));
        assert_eq!(zv, None);
        assert!(zd.contains(&("flag".into(), Detail::Text("reset".into()))));
        let day = |id: &str| {
            v.iter()
                .find(|x| x.indicator == "consumption" && x.sensor_id == id && x.window == "24h")
                .and_then(|x| x.value)
        };
        // The day of r: 99,986 (23:00 the day before) → 99,998 (11:00) = 12, across the top 2.5,
        // then 0.5 → 11.5 (23:00) = 11: 25.5 m³. Of z: unknown.
        assert!(
            day("r").is_some_and(|c| (c - 25.5).abs() < 1e-9),
            "{:?}",
            day("r")
        );
        assert_eq!(day("z"), None);
        // The district's water sum expects the 2 water meters, not the gas meter: 1 of 2 valid
        // (50 %, below 90 %): invalid, and it says 1/2.
        let w = one(&v, "consumption", Scope::District, "water", "24h");
        assert_eq!(
            (w.value, w.completeness.to_string()),
            (None, "1/2 sensors".into())
        );
        let gd = one(&v, "consumption", Scope::District, "gas", "24h");
        assert_eq!(
            (gd.value, gd.completeness.to_string()),
            (Some(24.0), "1/1 sensors".into())
        );
    }

    #[test]
    fn late_air_data_reemits_the_later_nowcasts_that_include_its_hour() {
        let mut e = Engine::new(
            Arc::new(Catalog::builtin()),
            EngineSettings {
                allowed_lateness: Duration::from_secs(6 * 3600),
                ..EngineSettings::default()
            },
            Arc::new(Registry::new(vec![info(
                "st1",
                "c",
                "air",
                Sphere::Ecology,
                3600,
            )])),
        );
        for (k, c) in [(8, 10.0), (9, 20.0), (10, 30.0)] {
            e.add(
                &reading(
                    "st1",
                    "c",
                    Kind::Air,
                    DAY0 + k * 60 * MIN + 5 * MIN,
                    &[("pm2_5", c)],
                ),
                0,
            );
        }
        close(&mut e, DAY0 + 11 * 60 * MIN);
        // A late 100 µg/m³ at 08:30: hour 8's mean becomes (10 + 100) / 2 = 55.
        e.add(
            &reading(
                "st1",
                "c",
                Kind::Air,
                DAY0 + 8 * 60 * MIN + 30 * MIN,
                &[("pm2_5", 100.0)],
            ),
            0,
        );
        let v = e.advance(20_000_000_000);
        let at = |id: &str, h: i64| {
            v.iter()
                .filter(|x| {
                    x.indicator == id
                        && x.scope == Scope::Sensor
                        && x.window_start_ns == DAY0 + h * 60 * MIN
                })
                .map(|x| x.value)
                .collect::<Vec<_>>()
        };
        // NowCast at 10:00, newest first 30, 20, 55: w* = 1 − 35/55 = 0.36 → 0.5;
        // (30 + 0.5·20 + 0.25·55) / 1.75 = 53.75 / 1.75 = 30.71 → 30.7;
        // AQI = 49/26.3 × (30.7 − 9.1) + 51 = 91.24 → 91.
        assert_eq!(at("us_aqi_nowcast", 10), vec![Some(91.0)]);
        // Hour 8 is emitted again whole (its one-off maximum 100 / 160 ПДК)...
        assert_eq!(at("pdk_multiple", 8), vec![Some(100.0 / 160.0)]);
        // ...hours 9 and 10 only for their NowCast.
        assert!(at("pdk_multiple", 9).is_empty() && at("pdk_multiple", 10).is_empty());
        assert_eq!(at("us_aqi_nowcast", 9).len(), 1);
    }

    #[test]
    fn a_snapshot_round_trip_gives_the_same_values() {
        let fill = |e: &mut Engine| {
            for k in 0..36i64 {
                let t = DAY0 + k * 20 * MIN;
                e.add(
                    &reading(
                        "st1",
                        "c",
                        Kind::Air,
                        t,
                        &[("pm2_5", 10.0 + k as f64), ("no2", 40.0)],
                    ),
                    0,
                );
                e.add(
                    &reading(
                        "w1",
                        "c",
                        Kind::Water,
                        t,
                        &[("volume", 5.0 + 0.1 * k as f64)],
                    ),
                    0,
                );
                e.add(
                    &reading(
                        "l1",
                        "c",
                        Kind::Traffic,
                        t,
                        &[("volume", 20.0), ("interval", 1200.0), ("speed", 40.0)],
                    ),
                    0,
                );
            }
        };
        let mut a = engine(vec![]);
        fill(&mut a);
        let mut bytes = Vec::new();
        ciborium::into_writer(&a.snapshot(), &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        let snap: Snapshot =
            ciborium::from_reader(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let mut b = engine(vec![]);
        b.restore(snap);
        let key = |v: Vec<IndicatorValue>| {
            let mut k: Vec<String> = v
                .iter()
                .map(|x| {
                    format!(
                        "{} {} {:?} {}",
                        x.series_key(),
                        x.window_start_ns,
                        x.value,
                        x.completeness
                    )
                })
                .collect();
            k.sort();
            k
        };
        let va = key(close(&mut a, DAY0 + 24 * 60 * MIN));
        let vb = key(close(&mut b, DAY0 + 24 * 60 * MIN));
        assert!(va.len() > 50, "{}", va.len());
        assert_eq!(va, vb);
    }
}
