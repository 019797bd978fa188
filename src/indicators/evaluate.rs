//! The catalog's functions over windows of buckets: per sensor, then combined per district and
//! city. Pure: a sensor's buckets (and its registry entry) in, values with their completeness out.
//! Each rule that makes a value invalid is written where it applies, with its source.

use crate::indicators::aqi::{self, Pm25Table, Pollutant, SubIndex};
use crate::indicators::catalog::{Catalog, Function, IndicatorDef};
use crate::indicators::value::{Completeness, Detail};
use crate::indicators::window::{Bucket, SensorState, HOUR_NS};
use crate::indicators::{eaqi, kz, traffic, utilities};
use crate::model::Kind;
use crate::registry::{Role, SensorInfo};

/// A window being evaluated: hours [first_hour, first_hour + hours).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub first_hour: i64,
    pub hours: i64,
}

impl Span {
    pub fn end_hour(&self) -> i64 {
        self.first_hour + self.hours
    }
    pub fn start_ns(&self) -> i64 {
        self.first_hour * HOUR_NS
    }
    pub fn end_ns(&self) -> i64 {
        self.end_hour() * HOUR_NS
    }
}

/// One value before it gets its place (sensor, district, city) and window.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub component: String,
    pub value: Option<f64>,
    pub level: Option<String>,
    pub completeness: Completeness,
    pub details: Vec<(String, Detail)>,
    /// What combining needs beyond the value (weights, sums), per function.
    pub aux: [f64; 3],
}

impl Out {
    pub fn new(component: &str, value: Option<f64>, completeness: Completeness) -> Out {
        Out {
            component: component.to_owned(),
            value,
            level: None,
            completeness,
            details: Vec::new(),
            aux: [0.0; 3],
        }
    }

    fn detail(mut self, name: &str, d: Detail) -> Out {
        self.details.push((name.to_owned(), d));
        self
    }

    fn num(self, name: &str, v: f64) -> Out {
        self.detail(name, Detail::Number(v))
    }

    fn text(self, name: &str, v: &str) -> Out {
        self.detail(name, Detail::Text(v.to_owned()))
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        self.details.iter().find_map(|(n, d)| match d {
            Detail::Number(v) if n == name => Some(*v),
            _ => None,
        })
    }
}

/// What evaluation reads besides the buckets.
pub struct Ctx<'a> {
    pub catalog: &'a Catalog,
    /// The engine's metric slots: (kind, metric).
    pub slots: &'a [(Kind, String)],
}

impl Ctx<'_> {
    pub fn slot(&self, kind: Kind, metric: &str) -> Option<u8> {
        self.slots
            .iter()
            .position(|(k, m)| *k == kind && m == metric)
            .map(|i| i as u8)
    }
}

/// Readings a device is expected to send per hour (1 when unknown or slower than hourly).
pub fn expected_per_hour(info: Option<&SensorInfo>) -> u32 {
    info.map_or(1, |i| {
        let s = i.expected_interval.as_secs().max(1);
        (3600 / s).max(1) as u32
    })
}

/// An hourly mean is valid with 75 % of the readings expected in the hour (at least one).
pub fn hour_mean(b: Option<&Bucket>, slot: u8, per_hour: u32) -> Option<f64> {
    let m = b?.metric(slot)?;
    let need = (f64::from(per_hour) * 0.75).ceil().max(1.0) as u32;
    (m.n >= need).then(|| m.mean()).flatten()
}

/// The unit of a value whose component is a meter kind (`water` → `m³`), for the consumption
/// functions; per capita: per person per day. None: the catalog's unit stands.
pub fn component_unit(f: Function, component: &str) -> Option<String> {
    let kind: Kind = component.parse().ok()?;
    let metric = crate::normalize::catalog::lookup(kind, register_metric(kind))?;
    match f {
        Function::Consumption | Function::DistrictLosses => Some(metric.unit.to_owned()),
        Function::ConsumptionPerCapita => Some(format!("{}/person/day", metric.unit)),
        _ => None,
    }
}

/// The register metric of a meter kind.
pub fn register_metric(kind: Kind) -> &'static str {
    match kind {
        Kind::Heat | Kind::Power => "energy",
        _ => "volume",
    }
}

/// Hourly means of a slot over the span, in hour order.
fn hourly_means(s: &SensorState, slot: u8, span: Span, per_hour: u32) -> Vec<Option<f64>> {
    (span.first_hour..span.end_hour())
        .map(|h| hour_mean(s.bucket(h), slot, per_hour))
        .collect()
}

fn mean_of(v: &[Option<f64>]) -> Option<f64> {
    let vals: Vec<f64> = v.iter().flatten().copied().collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// Count of Some.
fn have(v: &[Option<f64>]) -> u32 {
    v.iter().filter(|x| x.is_some()).count() as u32
}

/// Daily means need 18 of 24 hourly means (EPA; also used for ПДК с.с. and ИЗА).
const DAY_HOURS_NEEDED: u32 = 18;

fn day_mean(s: &SensorState, slot: u8, span: Span, per_hour: u32) -> (Option<f64>, u32) {
    let hm = hourly_means(s, slot, span, per_hour);
    let n = have(&hm);
    ((n >= DAY_HOURS_NEEDED).then(|| mean_of(&hm)).flatten(), n)
}

/// Largest running 8-hour mean over windows starting at local hours `starts` within the span,
/// each needing 6 of 8 hourly means (EPA).
fn max_8h(
    s: &SensorState,
    slot: u8,
    span: Span,
    per_hour: u32,
    starts: std::ops::RangeInclusive<i64>,
) -> Option<f64> {
    starts
        .filter_map(|off| {
            let from = span.first_hour + off;
            let hm: Vec<Option<f64>> = (from..from + 8)
                .map(|h| hour_mean(s.bucket(h), slot, per_hour))
                .collect();
            (have(&hm) >= 6).then(|| mean_of(&hm)).flatten()
        })
        .max_by(f64::total_cmp)
}

fn sub_label(s: SubIndex) -> Detail {
    match s {
        SubIndex::Index(i) => Detail::Number(f64::from(i)),
        SubIndex::Beyond => Detail::Text("beyond_aqi".into()),
        SubIndex::Undefined => Detail::Text("undefined".into()),
        SubIndex::Invalid => Detail::Text("invalid".into()),
    }
}

/// The AQI of sub-indices: value, category, dominant pollutant; "beyond the AQI" counts as 501.
fn aqi_out(subs: &[(Pollutant, SubIndex)], completeness: Completeness) -> Out {
    let mut out = Out::new("", None, completeness);
    for (p, s) in subs {
        out = out.detail(&format!("sub_{}", p.key()), sub_label(*s));
    }
    if let Some((p, s)) = aqi::overall(subs) {
        out.value = Some(match s {
            SubIndex::Index(i) => f64::from(i),
            _ => 501.0,
        });
        out.level = aqi::Category::of(s).map(|c| c.key().to_owned());
        out = out.text("dominant", p.key());
    }
    out
}

/// Evaluates `def` for one sensor over `span`. Empty: the sensor has nothing for this function.
pub fn sensor(
    ctx: &Ctx,
    def: &IndicatorDef,
    s: &SensorState,
    info: Option<&SensorInfo>,
    span: Span,
) -> Vec<Out> {
    let per_hour = expected_per_hour(info);
    let pm25_table = def.params.pm25_table.unwrap_or(Pm25Table::Epa2024);
    let day = span.hours == 24;
    let hours_c = |n: u32| Completeness::new(n, span.hours as u32, "h");
    match def.function {
        Function::UsAqiNowcast => {
            // The NowCast at the hour: the 12 hours ending with it, newest first.
            let mut subs = Vec::new();
            let mut n_max = 0;
            let mut out_details = Vec::new();
            for (metric, p) in [("pm2_5", Pollutant::Pm25), ("pm10", Pollutant::Pm10)] {
                if !def.inputs.metrics.iter().any(|m| m == metric) {
                    continue;
                }
                let Some(slot) = ctx.slot(Kind::Air, metric) else {
                    continue;
                };
                let mut hours = [None; 12];
                for (i, h) in hours.iter_mut().enumerate() {
                    *h = hour_mean(s.bucket(span.end_hour() - 1 - i as i64), slot, per_hour);
                }
                let n = hours.iter().filter(|h| h.is_some()).count() as u32;
                if n == 0 {
                    continue;
                }
                n_max = n_max.max(n);
                match aqi::nowcast(&hours, p) {
                    Some(c) => {
                        out_details.push((format!("nowcast_{metric}"), Detail::Number(c)));
                        subs.push((p, aqi::sub_index(p, c, pm25_table)));
                    }
                    None => subs.push((p, SubIndex::Invalid)),
                }
            }
            if subs.is_empty() {
                return Vec::new();
            }
            let mut out = aqi_out(&subs, Completeness::new(n_max, 12, "h"));
            out.details.extend(out_details);
            vec![out]
        }
        Function::UsAqiDaily => {
            let mut subs = Vec::new();
            let mut n_max = 0;
            let mut conc = Vec::new();
            let slot = |m: &str| {
                def.inputs
                    .metrics
                    .iter()
                    .any(|x| x == m)
                    .then(|| ctx.slot(Kind::Air, m))
                    .flatten()
            };
            for (metric, p) in [("pm2_5", Pollutant::Pm25), ("pm10", Pollutant::Pm10)] {
                if let Some(sl) = slot(metric) {
                    let (mean, n) = day_mean(s, sl, span, per_hour);
                    n_max = n_max.max(n);
                    if let Some(c) = mean {
                        conc.push((format!("mean_{metric}"), c));
                        subs.push((p, aqi::sub_index(p, c, pm25_table)));
                    }
                }
            }
            // O3 and CO: the largest running 8-hour mean of windows lying within the local day
            // (EPA takes windows starting 07:00–23:00; those past midnight are left out so the
            // day closes at midnight). ppm = µg/m³ × 24.45 / M / 1000.
            if let Some(sl) = slot("o3") {
                n_max = n_max.max(have(&hourly_means(s, sl, span, per_hour)));
                if let Some(c) = max_8h(s, sl, span, per_hour, 7..=16) {
                    let ppm = aqi::ugm3_to_ppb(c, 48.00) / 1000.0;
                    conc.push(("max8h_o3_ppm".into(), ppm));
                    subs.push((
                        Pollutant::O3_8h,
                        aqi::sub_index(Pollutant::O3_8h, ppm, pm25_table),
                    ));
                }
            }
            if let Some(sl) = slot("co") {
                n_max = n_max.max(have(&hourly_means(s, sl, span, per_hour)));
                if let Some(c) = max_8h(s, sl, span, per_hour, 0..=16) {
                    let ppm = aqi::ugm3_to_ppb(c, 28.01) / 1000.0;
                    conc.push(("max8h_co_ppm".into(), ppm));
                    subs.push((
                        Pollutant::Co8h,
                        aqi::sub_index(Pollutant::Co8h, ppm, pm25_table),
                    ));
                }
            }
            for (metric, p, m) in [
                ("so2", Pollutant::So2_1h, 64.07),
                ("no2", Pollutant::No2_1h, 46.01),
            ] {
                if let Some(sl) = slot(metric) {
                    let hm = hourly_means(s, sl, span, per_hour);
                    let n = have(&hm);
                    n_max = n_max.max(n);
                    if n >= DAY_HOURS_NEEDED {
                        if let Some(c) = hm.iter().flatten().copied().max_by(f64::total_cmp) {
                            let ppb = aqi::ugm3_to_ppb(c, m);
                            conc.push((format!("max1h_{metric}_ppb"), ppb));
                            subs.push((p, aqi::sub_index(p, ppb, pm25_table)));
                        }
                    }
                }
            }
            if n_max == 0 {
                return Vec::new();
            }
            let mut out = aqi_out(&subs, hours_c(n_max));
            for (k, v) in conc {
                out = out.num(&k, v);
            }
            vec![out]
        }
        Function::PdkMultiple => {
            let mut outs = Vec::new();
            for metric in &def.inputs.metrics {
                let (Some(sl), Some(norm)) = (ctx.slot(Kind::Air, metric), ctx.catalog.pdk(metric))
                else {
                    continue;
                };
                if day {
                    // Daily mean / ПДК с.с.
                    let Some(daily) = norm.daily else { continue };
                    let (mean, n) = day_mean(s, sl, span, per_hour);
                    if n == 0 {
                        continue;
                    }
                    let v = mean.map(|c| kz::multiple(c, daily));
                    let mut o = Out::new(metric, v, hours_c(n));
                    if let Some(c) = mean {
                        o = o.num("mean_ugm3", c).num("pdk_mg", daily);
                    }
                    outs.push(o);
                } else {
                    // The hour's largest one-off value / ПДК м.р.
                    let Some(m) = s.bucket(span.first_hour).and_then(|b| b.metric(sl)) else {
                        continue;
                    };
                    outs.push(
                        Out::new(
                            metric,
                            Some(kz::multiple(m.max, norm.one_off)),
                            Completeness::new(1, 1, "h"),
                        )
                        .num("max_ugm3", m.max)
                        .num("pdk_mg", norm.one_off)
                        .num("samples", f64::from(m.n)),
                    );
                }
            }
            outs
        }
        Function::PdkExceedances | Function::KzSi | Function::KzNp => {
            // Per pollutant over the day's one-off values (each reading is one sample).
            let mut per: Vec<(String, u32, [u32; 4], f64, u32)> = Vec::new();
            for metric in &def.inputs.metrics {
                let (Some(sl), Some(norm)) = (ctx.slot(Kind::Air, metric), ctx.catalog.pdk(metric))
                else {
                    continue;
                };
                let mut n = 0u32;
                let mut above = [0u32; 4];
                let mut max = f64::NEG_INFINITY;
                let mut hours = 0u32;
                for b in s.range(span.first_hour, span.end_hour()) {
                    if let Some(m) = b.metric(sl) {
                        hours += 1;
                        n += m.n;
                        for (a, x) in above.iter_mut().zip(m.above) {
                            *a += u32::from(x);
                        }
                        max = max.max(m.max);
                    }
                }
                if n > 0 {
                    per.push((
                        metric.clone(),
                        n,
                        above,
                        kz::multiple(max, norm.one_off),
                        hours,
                    ));
                }
            }
            if per.is_empty() {
                return Vec::new();
            }
            let n_hours = per.iter().map(|p| p.4).max().unwrap_or(0);
            let complete = n_hours >= DAY_HOURS_NEEDED;
            match def.function {
                Function::PdkExceedances => per
                    .into_iter()
                    .map(|(m, n, a, _, h)| {
                        let mut o = Out::new(
                            &m,
                            (h >= DAY_HOURS_NEEDED).then_some(f64::from(a[0])),
                            hours_c(h),
                        )
                        .num("above_1", f64::from(a[0]))
                        .num("above_5", f64::from(a[1]))
                        .num("above_10", f64::from(a[2]))
                        .num("above_20", f64::from(a[3]))
                        .num("samples", f64::from(n));
                        o.aux = [f64::from(a[1]), f64::from(a[2]), f64::from(a[3])];
                        o
                    })
                    .collect(),
                Function::KzSi => {
                    let (m, si) = per
                        .iter()
                        .map(|p| (p.0.as_str(), p.3))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap_or(("", 0.0));
                    let mut o =
                        Out::new("", complete.then_some(si), hours_c(n_hours)).text("pollutant", m);
                    o.level = complete.then(|| kz::Level::by_si(si).key().to_owned());
                    vec![o]
                }
                _ => {
                    let (m, np) = per
                        .iter()
                        .map(|p| (p.0.as_str(), 100.0 * f64::from(p.2[0]) / f64::from(p.1)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap_or(("", 0.0));
                    let mut o =
                        Out::new("", complete.then_some(np), hours_c(n_hours)).text("pollutant", m);
                    o.level = complete.then(|| kz::Level::by_np(np).key().to_owned());
                    vec![o]
                }
            }
        }
        Function::KzIza5 | Function::KzPollutionLevel => {
            let mut means = Vec::new();
            let mut n_max = 0;
            for metric in &def.inputs.metrics {
                let (Some(sl), Some(norm)) = (ctx.slot(Kind::Air, metric), ctx.catalog.pdk(metric))
                else {
                    continue;
                };
                let (mean, n) = day_mean(s, sl, span, per_hour);
                n_max = n_max.max(n);
                if let (Some(c), Some(_)) = (mean, norm.daily) {
                    means.push((metric.clone(), c));
                }
            }
            if n_max == 0 {
                return Vec::new();
            }
            if def.function == Function::KzIza5 {
                let mut o = iza_of(
                    ctx.catalog,
                    &means,
                    hours_c(n_max),
                    n_max >= DAY_HOURS_NEEDED,
                );
                for (m, c) in &means {
                    o = o.num(&format!("mean_{m}"), *c);
                }
                return vec![o];
            }
            // The level: СИ and НП over the day's one-off values, the higher grade (DOMAIN.md §3);
            // ИЗА₅'s grade is shown beside it.
            let (mut si, mut np, mut n_hours) = (None::<f64>, None::<f64>, 0);
            for metric in &def.inputs.metrics {
                let (Some(sl), Some(norm)) = (ctx.slot(Kind::Air, metric), ctx.catalog.pdk(metric))
                else {
                    continue;
                };
                let (mut n, mut a1, mut max, mut hours) = (0u32, 0u32, f64::NEG_INFINITY, 0u32);
                for b in s.range(span.first_hour, span.end_hour()) {
                    if let Some(m) = b.metric(sl) {
                        hours += 1;
                        n += m.n;
                        a1 += u32::from(m.above[0]);
                        max = max.max(m.max);
                    }
                }
                if n > 0 {
                    n_hours = n_hours.max(hours);
                    let m = kz::multiple(max, norm.one_off);
                    si = Some(si.map_or(m, |x| x.max(m)));
                    let share = 100.0 * f64::from(a1) / f64::from(n);
                    np = Some(np.map_or(share, |x| x.max(share)));
                }
            }
            vec![level_out(
                ctx.catalog,
                si,
                np,
                &means,
                hours_c(n_hours.max(n_max)),
            )]
        }
        Function::EaqiLevel => {
            let mut vals = Vec::new();
            for metric in &def.inputs.metrics {
                if let Some(sl) = ctx.slot(Kind::Air, metric) {
                    if let Some(c) = hour_mean(s.bucket(span.first_hour), sl, per_hour) {
                        vals.push((metric.as_str(), c));
                    }
                }
            }
            if s.bucket(span.first_hour)
                .is_none_or(|b| b.metrics.is_empty())
            {
                return Vec::new();
            }
            let n = u32::from(!vals.is_empty());
            let mut o = Out::new("", None, Completeness::new(n, 1, "h"));
            if let Some((m, band)) = eaqi::index(&vals) {
                o.value = Some(band as u8 as f64 + 1.0);
                o.level = Some(band.key().to_owned());
                o = o.text("dominant", m);
            }
            for (m, c) in vals {
                o = o.num(&format!("mean_{m}"), c);
            }
            vec![o]
        }
        Function::TrafficFlow
        | Function::TrafficSpeed
        | Function::CongestionLevel
        | Function::TravelTimeIndex
        | Function::LevelOfService => traffic_sensor(def, s, info, span),
        Function::Consumption => {
            let (v, c, flags) = consumption(s, info, span);
            if c.have == 0 && v.is_none() {
                return Vec::new();
            }
            let mut o = Out::new(s.kind.as_str(), v, c).text("metric", register_metric(s.kind));
            for f in flags {
                o = o.text("flag", f);
            }
            vec![o]
        }
        Function::NightFlowMin => {
            let (mnf, points) = night_flow(s, span);
            // A meter that reported but too seldom for quarter-hour flows gets an invalid value
            // that says so (e.g. 0/96 points for an hourly meter).
            if points == 0
                && s.range(span.first_hour, span.end_hour())
                    .all(|b| b.meter.is_none())
            {
                return Vec::new();
            }
            let legit = def.params.legit_night_use.unwrap_or(0.0);
            let v = mnf.map(|m| m * (1.0 - legit));
            let mut o = Out::new("", v, Completeness::new(points, 96, "points"));
            if let Some(m) = mnf {
                o = o.num("mnf_measured", m);
            }
            vec![o]
        }
        Function::LeakSuspected => {
            let (mnf, points) = night_flow(s, span);
            let alarm = s
                .range(span.first_hour, span.end_hour())
                .any(|b| b.meter.as_ref().is_some_and(|m| m.alarm));
            if points == 0 && !alarm {
                return Vec::new();
            }
            let day = span.first_hour.div_euclid(24);
            let rule = leak_rule(def, &s.night_flows, day, mnf);
            let value = if alarm {
                Some(1.0)
            } else {
                rule.map(|l| f64::from(u8::from(l)))
            };
            let mut o = Out::new("", value, Completeness::new(points, 96, "points"));
            o.level = value.and_then(|v| def.level_of(v));
            if alarm {
                o = o.text("cause", "leak_alarm");
            } else if rule == Some(true) {
                o = o.text("cause", "night_flow_rise");
            }
            if let Some(m) = mnf {
                o = o.num("mnf", m);
            }
            vec![o]
        }
        Function::Mean | Function::Max | Function::Min => {
            let Some(metric) = def.inputs.metrics.first() else {
                return Vec::new();
            };
            let Some(sl) = ctx.slot(s.kind, metric) else {
                return Vec::new();
            };
            let need = def.params.min_completeness.unwrap_or(0.75);
            let mut n_hours = 0u32;
            let mut means = Vec::new();
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for h in span.first_hour..span.end_hour() {
                let b = s.bucket(h);
                if let Some(m) = b.and_then(|b| b.metric(sl)) {
                    lo = lo.min(m.min);
                    hi = hi.max(m.max);
                }
                if let Some(m) = hour_mean(b, sl, per_hour) {
                    n_hours += 1;
                    means.push(m);
                }
            }
            if n_hours == 0 {
                return Vec::new();
            }
            let c = hours_c(n_hours);
            let ok = c.ratio() >= need;
            let v = match def.function {
                Function::Mean => means.iter().sum::<f64>() / means.len() as f64,
                Function::Max => hi,
                _ => lo,
            };
            vec![Out::new("", ok.then_some(v), c)]
        }
        // District and city functions have no sensor values.
        Function::ConsumptionPerCapita
        | Function::DistrictLosses
        | Function::ReportingCoverage
        | Function::DeviceCoverage
        | Function::DataCompleteness => Vec::new(),
    }
}

/// ИЗА₅ of daily means (µg/m³) with the catalog's norms.
fn iza_of(catalog: &Catalog, means: &[(String, f64)], c: Completeness, complete: bool) -> Out {
    let subs: Vec<(f64, f64, u8)> = means
        .iter()
        .filter_map(|(m, c)| {
            let p = catalog.pdk(m)?;
            Some((*c, p.daily?, p.hazard_class))
        })
        .collect();
    let valid = complete && !subs.is_empty();
    let v = kz::iza5(&subs);
    let mut o = Out::new("", valid.then_some(v), c);
    o.level = valid.then(|| kz::Level::by_iza(v).key().to_owned());
    o
}

fn grade(l: kz::Level) -> f64 {
    l as u8 as f64 + 1.0
}

fn level_out(
    catalog: &Catalog,
    si: Option<f64>,
    np: Option<f64>,
    means: &[(String, f64)],
    c: Completeness,
) -> Out {
    let complete = c.have >= DAY_HOURS_NEEDED;
    let mut o = Out::new("", None, c.clone());
    if let (Some(si), Some(np), true) = (si, np, complete) {
        let l = kz::Level::by_si_np(si, np);
        o.value = Some(grade(l));
        o.level = Some(l.key().to_owned());
        o = o.num("si", si).num("np", np);
    }
    let iza = iza_of(catalog, means, c, complete);
    if let Some(v) = iza.value {
        o = o.num("iza5", v);
        if let Some(l) = iza.level {
            o = o.text("level_by_iza5", &l);
        }
    }
    o
}

/// Consumption over the span from the register: the last reading in the span minus the last
/// reading before it, through every bucket between (so resets and rollovers inside are seen).
/// Valid when the span's ends are bracketed (a reading before it within one expected interval,
/// at least an hour, of its start, and one within the same of its end) and no reset lies in it
/// (a rollover of a register of known size is exact; a reset is flagged and leaves it unknown).
pub fn consumption(
    s: &SensorState,
    info: Option<&SensorInfo>,
    span: Span,
) -> (Option<f64>, Completeness, Vec<&'static str>) {
    let top = info.and_then(|i| i.register_max);
    let slack = info.map_or(HOUR_NS, |i| {
        (i.expected_interval.as_nanos() as i64).max(HOUR_NS)
    }) + HOUR_NS / 60;
    let expected = (span.hours as u32 * expected_per_hour(info)).max(1);
    let mut prev = s
        .register_before(span.first_hour)
        .map(|m| (m.last_t, m.last_v));
    let bracket_start = prev.is_some_and(|(t, _)| t >= span.start_ns() - slack);
    let mut total = 0.0;
    let mut flags = Vec::new();
    let mut readings = 0u32;
    let mut last_t = i64::MIN;
    for b in s.range(span.first_hour, span.end_hour()) {
        let Some(m) = b.meter.as_ref().filter(|m| m.last_t != i64::MIN) else {
            continue;
        };
        readings += b.count.min(expected_per_hour(info));
        let mut step = |from: f64, to: f64| {
            let (c, r) = utilities::consumption(from, to, top);
            match r {
                utilities::Register::Normal => {}
                utilities::Register::Rollover => flags.push("rollover"),
                utilities::Register::Reset => flags.push("reset"),
            }
            c
        };
        if let Some((_, pv)) = prev {
            total += step(pv, m.first_v);
        }
        total += step(m.first_v, m.last_v);
        prev = Some((m.last_t, m.last_v));
        last_t = m.last_t;
    }
    let bracket_end = last_t >= span.end_ns() - slack;
    let c = Completeness::new(readings.min(expected), expected, "readings");
    // Across a reset (a register that went down, not a rollover) the consumption is unknown:
    // what the old register counted after its last reading is gone. Flagged, and invalid.
    let valid = bracket_start && bracket_end && !flags.contains(&"reset");
    (valid.then_some(total), c, flags)
}

/// Minimum night flow (m³/h) of a local day from the water register's quarter-hour ends, and how
/// many of the 96 fifteen-minute flows exist. A flow needs the register at both ends of its
/// quarter (the first needs the last one before the day).
pub fn night_flow(s: &SensorState, span: Span) -> (Option<f64>, u32) {
    let mut regs: Vec<Option<f64>> = Vec::with_capacity(97);
    regs.push(s.register_before(span.first_hour).and_then(|m| {
        let q = m.quarters?;
        // The last quarter of the previous hour, only if it is that hour's.
        (m.last_t >= span.start_ns() - HOUR_NS / 4)
            .then_some(q[3])
            .filter(|v| !v.is_nan())
    }));
    for h in span.first_hour..span.end_hour() {
        let q = s
            .bucket(h)
            .and_then(|b| b.meter.as_ref())
            .and_then(|m| m.quarters);
        for i in 0..4 {
            regs.push(q.map(|q| q[i]).filter(|v| !v.is_nan()));
        }
    }
    let mut points = [None; 96];
    for (i, p) in points.iter_mut().enumerate() {
        if let (Some(a), Some(b)) = (regs[i], regs[i + 1]) {
            // m³ per quarter → m³/h; a drop is a reset: no flow for that quarter.
            *p = (b >= a).then_some((b - a) * 4.0);
        }
    }
    let n = points.iter().filter(|p| p.is_some()).count() as u32;
    (utilities::minimum_night_flow(&points), n)
}

/// The leak rule on the minimum night flow of `day`: above `threshold` (m³/h), or above the
/// median of the previous 7 nights by `rise` on `nights` consecutive nights ending with this one.
/// None when the night's flow is unknown.
pub fn leak_rule(
    def: &IndicatorDef,
    history: &[(i64, f64)],
    day: i64,
    mnf: Option<f64>,
) -> Option<bool> {
    let mnf = mnf?;
    if def.params.threshold.is_some_and(|t| mnf > t) {
        return Some(true);
    }
    let rise = def.params.rise.unwrap_or(0.5);
    let nights = i64::from(def.params.nights.unwrap_or(3));
    let flow_on = |d: i64| {
        if d == day {
            Some(mnf)
        } else {
            history.iter().find(|(x, _)| *x == d).map(|(_, v)| *v)
        }
    };
    let high = |d: i64| -> Option<bool> {
        let v = flow_on(d)?;
        let mut before: Vec<f64> = (d - 7..d).filter_map(flow_on).collect();
        if before.len() < 3 {
            return None;
        }
        before.sort_by(f64::total_cmp);
        let median = before[before.len() / 2];
        Some(v > median * (1.0 + rise) && v > 0.0)
    };
    let mut known = false;
    for d in (day - nights + 1)..=day {
        match high(d) {
            Some(false) => return Some(false),
            Some(true) => known = true,
            None => {
                return if known {
                    None
                } else {
                    high(day).map(|_| false)
                }
            }
        }
    }
    Some(known)
}

/// Traffic over the span for one lane: flow, speed, TTI, congestion, density.
fn traffic_sensor(
    def: &IndicatorDef,
    s: &SensorState,
    info: Option<&SensorInfo>,
    span: Span,
) -> Vec<Out> {
    let mut a = crate::indicators::window::TrafficAgg::default();
    let mut hours = 0u32;
    for b in s.range(span.first_hour, span.end_hour()) {
        if let Some(t) = b.traffic {
            hours += 1;
            a.veh += t.veh;
            a.secs += t.secs;
            a.veh_speed += t.veh_speed;
            a.veh_with_speed += t.veh_with_speed;
        }
    }
    if hours == 0 {
        return Vec::new();
    }
    // Counting time covered, in minutes; flows need 75 % of the span counted.
    let span_min = (span.hours * 60) as u32;
    let covered = ((a.secs / 60.0).round() as u32).min(span_min);
    let c = Completeness::new(covered, span_min, "min");
    let ok = c.ratio() >= 0.75;
    let flow = traffic::flow_veh_h(a.veh, a.secs).filter(|_| ok);
    let speed = (a.veh_with_speed > 0.0).then(|| a.veh_speed / a.veh_with_speed);
    let mut o = Out::new("", None, c);
    o.aux = [a.veh, a.veh_speed, a.veh_with_speed];
    match def.function {
        Function::TrafficFlow => {
            o.value = flow;
            o = o.num("vehicles", a.veh);
        }
        Function::TrafficSpeed => {
            o.value = speed.filter(|_| ok);
        }
        Function::CongestionLevel | Function::TravelTimeIndex => {
            // Only these need the free-flow speed (learning it sorts the night speeds).
            let free = free_flow(def, s, info);
            let (Some(v), Some((vf, source))) = (speed.filter(|_| ok), free) else {
                let o = o.text(
                    "free_flow",
                    if free.is_none() { "unknown" } else { "known" },
                );
                return vec![o];
            };
            let tti = traffic::travel_time_index(v, vf);
            o.value = if def.function == Function::TravelTimeIndex {
                tti
            } else {
                traffic::congestion_pct(v, vf)
            };
            // Combining weighs TTI by vehicles.
            o.aux[2] = tti.unwrap_or(1.0);
            o = o
                .num("free_flow_speed", vf)
                .text("free_flow_source", source)
                .num("speed", v);
        }
        Function::LevelOfService => {
            if let (Some(q), Some(v)) = (flow, speed) {
                if v > 0.0 {
                    o.value = Some(q / v);
                    o.level = traffic::level_of_service(q, v).map(|c| c.to_string());
                }
            }
        }
        _ => {}
    }
    if o.level.is_none() {
        o.level = o.value.and_then(|v| def.level_of(v));
    }
    vec![o]
}

/// The free-flow speed of a lane and where it came from: the registry, else learned (the 85th
/// percentile of ≥ 30 night interval speeds), else the catalog's parameter.
fn free_flow(
    def: &IndicatorDef,
    s: &SensorState,
    info: Option<&SensorInfo>,
) -> Option<(f64, &'static str)> {
    if let Some(v) = info.and_then(|i| i.free_flow_speed) {
        return Some((v, "registry"));
    }
    if s.night_speeds.len() >= 30 {
        let v: Vec<f64> = s.night_speeds.iter().map(|x| f64::from(*x)).collect();
        if let Some(f) = traffic::free_flow_speed(&v) {
            return Some((f, "learned"));
        }
    }
    def.params.free_flow_speed.map(|v| (v, "configured"))
}

/// Combines sensors' values of one component into a district's or the city's.
/// `members`: the sensors' outputs with their registry roles; `expected`: sensors expected
/// (registered of the kinds read, else those seen).
pub fn combine(
    catalog: &Catalog,
    def: &IndicatorDef,
    members: &[(&Out, Role)],
    expected: u32,
) -> Option<Out> {
    let component = members.first()?.0.component.clone();
    // Consumption sums the consumers (a district's input meter is its own series).
    let pool: Vec<&Out> = members
        .iter()
        .filter(|(_, r)| def.function != Function::Consumption || *r == Role::Consumer)
        .map(|(o, _)| *o)
        .collect();
    let valid: Vec<&Out> = pool.iter().copied().filter(|o| o.value.is_some()).collect();
    let expected = expected.max(pool.len() as u32);
    let c = Completeness::new(valid.len() as u32, expected, "sensors");
    let mut out = Out::new(&component, None, c.clone());
    let values = || valid.iter().filter_map(|o| o.value);
    let max_member = || {
        valid
            .iter()
            .max_by(|a, b| a.value.unwrap_or(0.0).total_cmp(&b.value.unwrap_or(0.0)))
            .copied()
    };
    match def.function {
        // The worst station (AirNow's reporting-area AQI), with its details.
        Function::UsAqiNowcast
        | Function::UsAqiDaily
        | Function::PdkMultiple
        | Function::KzSi
        | Function::KzNp
        | Function::EaqiLevel
        | Function::KzPollutionLevel
        | Function::Max => {
            if let Some(m) = max_member() {
                out.value = m.value;
                out.level = m.level.clone();
                out.details = m.details.clone();
            }
        }
        Function::Min => {
            out.value = values().min_by(f64::total_cmp);
        }
        Function::Mean => {
            let v: Vec<f64> = values().collect();
            out.value = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        }
        // Counts over the posts with data.
        Function::PdkExceedances => {
            if !valid.is_empty() {
                out.value = Some(values().sum());
                for (i, k) in ["above_5", "above_10", "above_20"].iter().enumerate() {
                    out = out.num(k, valid.iter().map(|o| o.aux[i]).sum());
                }
            }
        }
        // ИЗА₅ of the mean of the posts' daily means (each post's own 18/24 h rule held).
        Function::KzIza5 => {
            let mut keys: Vec<&str> = Vec::new();
            for o in &valid {
                for (k, _) in &o.details {
                    if let Some(m) = k.strip_prefix("mean_") {
                        if !keys.contains(&m) {
                            keys.push(m);
                        }
                    }
                }
            }
            let means: Vec<(String, f64)> = keys
                .iter()
                .filter_map(|m| {
                    let v: Vec<f64> = valid
                        .iter()
                        .filter_map(|o| o.number(&format!("mean_{m}")))
                        .collect();
                    (!v.is_empty())
                        .then(|| ((*m).to_owned(), v.iter().sum::<f64>() / v.len() as f64))
                })
                .collect();
            let mut o = iza_of(catalog, &means, c.clone(), !valid.is_empty());
            for (m, v) in &means {
                o = o.num(&format!("mean_{m}"), *v);
            }
            out = o;
        }
        // Lanes' flows add up; sums need 90 % of the sensors (else they understate).
        Function::TrafficFlow | Function::Consumption => {
            if c.ratio() >= 0.9 && !valid.is_empty() {
                out.value = Some(values().sum());
            }
        }
        Function::TrafficSpeed => {
            let (nv, n) = valid
                .iter()
                .fold((0.0, 0.0), |(a, b), o| (a + o.aux[1], b + o.aux[2]));
            out.value = (n > 0.0).then(|| nv / n);
        }
        Function::CongestionLevel | Function::TravelTimeIndex => {
            let (wt, w) = valid.iter().fold((0.0, 0.0), |(a, b), o| {
                (a + o.aux[0] * o.aux[2], b + o.aux[0])
            });
            if w > 0.0 {
                let tti = wt / w;
                out.value = Some(if def.function == Function::TravelTimeIndex {
                    tti
                } else {
                    100.0 * (tti - 1.0)
                });
            }
        }
        Function::LevelOfService => {
            // Volume-weighted density of the lanes.
            let (wk, w) = valid.iter().fold((0.0, 0.0), |(a, b), o| {
                (a + o.aux[0] * o.value.unwrap_or(0.0), b + o.aux[0])
            });
            if w > 0.0 {
                let k = wk / w;
                out.value = Some(k);
                // level_of_service takes flow and speed; density k = q / v with v = 1.
                out.level = traffic::level_of_service(k, 1.0).map(|c| c.to_string());
            }
        }
        Function::NightFlowMin => {
            // A district metered area's minimum night flow is its input meter's.
            let inputs: Vec<&Out> = members
                .iter()
                .filter(|(_, r)| *r == Role::DistrictInput)
                .map(|(o, _)| *o)
                .collect();
            let n_valid = inputs.iter().filter(|o| o.value.is_some()).count();
            out.completeness =
                Completeness::new(n_valid as u32, inputs.len() as u32, "input meters");
            if !inputs.is_empty() && n_valid == inputs.len() {
                out.value = Some(inputs.iter().filter_map(|o| o.value).sum());
            }
        }
        Function::LeakSuspected => {
            if !valid.is_empty() {
                out.value = Some(values().filter(|v| *v > 0.0).count() as f64);
                out = out.num("meters_checked", valid.len() as f64);
            }
        }
        Function::ConsumptionPerCapita
        | Function::DistrictLosses
        | Function::ReportingCoverage
        | Function::DeviceCoverage
        | Function::DataCompleteness => return None,
    }
    if out.level.is_none() {
        out.level = out.value.and_then(|v| def.level_of(v));
    }
    Some(out)
}
