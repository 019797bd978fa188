//! The indicator catalog (`config/indicators.toml`): data, not code. Each entry names a built-in
//! function, its inputs, scopes, windows, unit, levels and parameters, and its names in Russian,
//! Kazakh and English. Loading validates every entry and names the one at fault; an indicator
//! that reuses an existing function (a `mean` of humidity, a `pdk_multiple` with other norms) is
//! a catalog change, not a release.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::indicators::aqi::Pm25Table;
use crate::indicators::kz;
use crate::indicators::value::Scope;
use crate::model::{Kind, Sphere};
use crate::normalize::catalog::metrics_of;

/// Why a catalog was refused: the entry (`indicator[3] (kz_si)`) and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("indicator catalog {path}: {message}")]
    Read { path: String, message: String },
    #[error("indicator catalog: {at}: {message}")]
    Entry { at: String, message: String },
}

/// The built-in functions an entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    UsAqiNowcast,
    UsAqiDaily,
    PdkMultiple,
    PdkExceedances,
    KzSi,
    KzNp,
    KzIza5,
    KzPollutionLevel,
    EaqiLevel,
    TrafficFlow,
    TrafficSpeed,
    CongestionLevel,
    TravelTimeIndex,
    LevelOfService,
    Consumption,
    ConsumptionPerCapita,
    NightFlowMin,
    LeakSuspected,
    DistrictLosses,
    ReportingCoverage,
    DeviceCoverage,
    DataCompleteness,
    /// Generic: the mean of one metric's hourly means (daily: of the day's hourly means).
    Mean,
    /// Generic: the largest reading of one metric in the window.
    Max,
    /// Generic: the smallest reading of one metric in the window.
    Min,
}

/// Windows an indicator can be computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Window {
    /// Tumbling hour, aligned to the hour.
    #[serde(rename = "1h")]
    Hour,
    /// Tumbling local day, midnight to midnight in the city's time zone.
    #[serde(rename = "24h")]
    Day,
    /// The hourly NowCast over the 12 most recent hours.
    #[serde(rename = "nowcast")]
    Nowcast,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Nowcast => "nowcast",
        }
    }
}

impl Function {
    /// The windows the function is defined over.
    pub fn windows(self) -> &'static [Window] {
        use Function::*;
        match self {
            UsAqiNowcast => &[Window::Nowcast],
            UsAqiDaily | PdkExceedances | KzSi | KzNp | KzIza5 | KzPollutionLevel => &[Window::Day],
            PdkMultiple => &[Window::Hour, Window::Day],
            EaqiLevel => &[Window::Hour],
            TrafficFlow | TrafficSpeed | CongestionLevel | TravelTimeIndex | LevelOfService => {
                &[Window::Hour, Window::Day]
            }
            Consumption => &[Window::Hour, Window::Day],
            ConsumptionPerCapita | NightFlowMin | LeakSuspected | DistrictLosses
            | ReportingCoverage => &[Window::Day],
            DeviceCoverage | DataCompleteness => &[Window::Hour, Window::Day],
            Mean | Max | Min => &[Window::Hour, Window::Day],
        }
    }

    /// The scopes the function is defined for.
    pub fn scopes(self) -> &'static [Scope] {
        use Function::*;
        match self {
            ConsumptionPerCapita | DistrictLosses | ReportingCoverage | DeviceCoverage
            | DataCompleteness => &[Scope::District, Scope::City],
            _ => &Scope::ALL,
        }
    }

    /// The kinds of sensors it reads; empty: every kind (coverage, completeness).
    pub fn kinds(self) -> &'static [Kind] {
        use Function::*;
        match self {
            UsAqiNowcast | UsAqiDaily | PdkMultiple | PdkExceedances | KzSi | KzNp | KzIza5
            | KzPollutionLevel | EaqiLevel => &[Kind::Air],
            TrafficFlow | TrafficSpeed | CongestionLevel | TravelTimeIndex | LevelOfService => {
                &[Kind::Traffic]
            }
            Consumption | ConsumptionPerCapita | DistrictLosses | ReportingCoverage => {
                &[Kind::Water, Kind::Heat, Kind::Power, Kind::Gas]
            }
            NightFlowMin | LeakSuspected => &[Kind::Water],
            DeviceCoverage | DataCompleteness => &[],
            Mean | Max | Min => &[
                Kind::Air,
                Kind::Traffic,
                Kind::Water,
                Kind::Heat,
                Kind::Power,
                Kind::Gas,
            ],
        }
    }

    /// The parameters it accepts (others are refused, naming the key).
    fn params(self) -> &'static [&'static str] {
        use Function::*;
        match self {
            UsAqiNowcast | UsAqiDaily => &["pm25_table"],
            PdkMultiple | PdkExceedances | KzSi | KzNp | KzIza5 | KzPollutionLevel | EaqiLevel => {
                &[]
            }
            TrafficFlow | TrafficSpeed | LevelOfService => &[],
            CongestionLevel | TravelTimeIndex => &["free_flow_speed", "night_hours"],
            Consumption | DistrictLosses => &[],
            ConsumptionPerCapita => &["factor"],
            NightFlowMin => &["legit_night_use"],
            LeakSuspected => &["rise", "nights", "threshold"],
            ReportingCoverage | DataCompleteness => &[],
            DeviceCoverage => &["tolerance"],
            Mean | Max | Min => &["min_completeness"],
        }
    }

    /// Whether `inputs.metrics` must name exactly one metric.
    fn one_metric(self) -> bool {
        matches!(self, Function::Mean | Function::Max | Function::Min)
    }
}

/// An indicator's names in the three languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Names {
    pub ru: String,
    pub kk: String,
    pub en: String,
}

/// A level: values up to `max` (inclusive; the last level has none) carry this key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelDef {
    pub key: String,
    pub max: Option<f64>,
    #[serde(default)]
    pub names: Option<Names>,
}

/// What an indicator reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inputs {
    /// Sensor kinds; empty: the function's own.
    pub kinds: Vec<Kind>,
    /// Metrics of those kinds; empty: the function's own.
    pub metrics: Vec<String>,
}

/// Parameters as written; checked against the function's list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub pm25_table: Option<Pm25Table>,
    /// km/h, used where a detector has none in the registry and none could be learned.
    pub free_flow_speed: Option<f64>,
    /// Local hours [from, to) whose speeds teach the free-flow speed.
    pub night_hours: Option<[u8; 2]>,
    /// Multiplier applied to per-capita figures (1000: m³ → litres).
    pub factor: Option<f64>,
    /// Share of the minimum night flow taken as legitimate night use (0..1).
    pub legit_night_use: Option<f64>,
    /// Leak: the minimum night flow above the median of earlier nights by this share...
    pub rise: Option<f64>,
    /// ...on this many consecutive nights...
    pub nights: Option<u32>,
    /// ...or above this absolute flow (m³/h).
    pub threshold: Option<f64>,
    /// Device coverage: a device reports if its last reading is within tolerance × its interval.
    pub tolerance: Option<f64>,
    /// Generic functions: the share of expected hours needed for a valid value (0..1).
    pub min_completeness: Option<f64>,
}

impl Params {
    fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |present: bool, name: &'static str| {
            if present {
                v.push(name);
            }
        };
        add(self.pm25_table.is_some(), "pm25_table");
        add(self.free_flow_speed.is_some(), "free_flow_speed");
        add(self.night_hours.is_some(), "night_hours");
        add(self.factor.is_some(), "factor");
        add(self.legit_night_use.is_some(), "legit_night_use");
        add(self.rise.is_some(), "rise");
        add(self.nights.is_some(), "nights");
        add(self.threshold.is_some(), "threshold");
        add(self.tolerance.is_some(), "tolerance");
        add(self.min_completeness.is_some(), "min_completeness");
        v
    }
}

/// One catalog entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorDef {
    pub id: String,
    pub sphere: Sphere,
    pub function: Function,
    #[serde(default)]
    pub inputs: Inputs,
    /// Default: every scope the function defines.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Default: every window the function defines.
    #[serde(default)]
    pub windows: Vec<Window>,
    pub unit: String,
    /// Levels by value; none: the function's own (AQI categories, LOS letters) or no level.
    #[serde(default)]
    pub levels: Vec<LevelDef>,
    #[serde(default)]
    pub params: Params,
    pub names: Names,
    /// The table or method, shown with every value.
    pub reference: String,
}

impl IndicatorDef {
    /// The level key of `value` by the entry's levels (None without levels).
    pub fn level_of(&self, value: f64) -> Option<String> {
        if self.levels.is_empty() {
            return None;
        }
        self.levels
            .iter()
            .find(|l| l.max.is_none_or(|m| value <= m))
            .map(|l| l.key.clone())
    }

    /// Every level key a value can carry: the entry's levels, else the function's own.
    pub fn level_keys(&self) -> Vec<String> {
        if !self.levels.is_empty() {
            return self.levels.iter().map(|l| l.key.clone()).collect();
        }
        let own: &[&str] = match self.function {
            Function::UsAqiNowcast | Function::UsAqiDaily => &[
                "good",
                "moderate",
                "unhealthy_for_sensitive_groups",
                "unhealthy",
                "very_unhealthy",
                "hazardous",
                "beyond_aqi",
            ],
            Function::KzSi | Function::KzNp | Function::KzIza5 | Function::KzPollutionLevel => {
                &["low", "elevated", "high", "very_high"]
            }
            Function::EaqiLevel => &[
                "good",
                "fair",
                "moderate",
                "poor",
                "very_poor",
                "extremely_poor",
            ],
            Function::LevelOfService => &["A", "B", "C", "D", "E", "F"],
            _ => &[],
        };
        own.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The metrics read (the entry's, else the function's defaults for its kinds).
    pub fn metrics(&self) -> &[String] {
        &self.inputs.metrics
    }
}

/// A substance's norms as configured (mg/m³).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdkDef {
    pub metric: String,
    pub one_off: f64,
    pub daily: Option<f64>,
    pub hazard_class: u8,
}

/// The file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: String,
    /// `[[pdk]]`: the ПДК table; absent: the built-in default (DOMAIN.md §3, to verify).
    #[serde(default)]
    pdk: Vec<PdkDef>,
    #[serde(default)]
    pdk_source: Option<String>,
    #[serde(rename = "indicator")]
    indicators: Vec<IndicatorDef>,
}

/// A validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: String,
    pub pdk: Vec<PdkDef>,
    /// Where the ПДК table comes from (shown in `reference`).
    pub pdk_source: String,
    pub indicators: Vec<IndicatorDef>,
}

/// The catalog compiled into the binary, used when no file is configured.
pub const BUILTIN: &str = include_str!("../../config/indicators.toml");

impl Catalog {
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Catalog::parse(&text).map_err(|e| match e {
            CatalogError::Entry { at, message } => CatalogError::Read {
                path: path.display().to_string(),
                message: format!("{at}: {message}"),
            },
            other => other,
        })
    }

    pub fn builtin() -> Catalog {
        // The built-in catalog is tested (`the_builtin_catalog_is_valid`); failing here is a
        // build defect, not an input error.
        Catalog::parse(BUILTIN).expect("the built-in indicator catalog is valid")
    }

    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Entry {
            at: "toml".into(),
            message: e.to_string(),
        })?;
        let pdk = if file.pdk.is_empty() {
            kz::DEFAULT_PDK
                .iter()
                .map(|p| PdkDef {
                    metric: p.metric.to_owned(),
                    one_off: p.one_off_mg,
                    daily: p.daily_mg,
                    hazard_class: p.hazard_class,
                })
                .collect()
        } else {
            file.pdk
        };
        for (i, p) in pdk.iter().enumerate() {
            let at = format!("pdk[{i}] ({})", p.metric);
            if !metrics_of(Kind::Air).iter().any(|m| m.name == p.metric) {
                return Err(entry(&at, format!("`{}` is not an air metric", p.metric)));
            }
            if p.one_off.is_nan()
                || p.one_off <= 0.0
                || p.daily.is_some_and(|d| d.is_nan() || d <= 0.0)
            {
                return Err(entry(&at, "norms must be positive (mg/m³)"));
            }
            if !(1..=4).contains(&p.hazard_class) {
                return Err(entry(&at, "hazard_class must be 1..4"));
            }
        }
        let mut indicators = file.indicators;
        let mut ids = BTreeSet::new();
        for (i, d) in indicators.iter_mut().enumerate() {
            let at = format!("indicator[{i}] ({})", d.id);
            validate(d, &at)?;
            if !ids.insert(d.id.clone()) {
                return Err(entry(&at, "duplicate id"));
            }
        }
        if file.version.trim().is_empty() {
            return Err(entry("version", "must name the catalog's version"));
        }
        Ok(Catalog {
            version: file.version,
            pdk,
            pdk_source: file.pdk_source.unwrap_or_else(|| {
                "ПДК: default table of DOMAIN.md §3 (to verify against ҚР ДСМ-70, 2 Aug 2022)"
                    .into()
            }),
            indicators,
        })
    }

    pub fn get(&self, id: &str) -> Option<&IndicatorDef> {
        self.indicators.iter().find(|d| d.id == id)
    }

    /// The norms of `metric`.
    pub fn pdk(&self, metric: &str) -> Option<&PdkDef> {
        self.pdk.iter().find(|p| p.metric == metric)
    }

    /// Every metric an entry reads, per kind (so the engine keeps only what it needs).
    pub fn metrics_by_kind(&self) -> BTreeMap<Kind, BTreeSet<String>> {
        let mut out: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
        for d in &self.indicators {
            for k in &d.inputs.kinds {
                out.entry(*k)
                    .or_default()
                    .extend(d.inputs.metrics.iter().cloned());
            }
        }
        out
    }
}

fn entry(at: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Entry {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// The metrics a function reads by default, for a kind.
fn default_metrics(f: Function, kind: Kind) -> Vec<String> {
    use Function::*;
    let names: &[&str] = match (f, kind) {
        (UsAqiNowcast, _) => &["pm2_5", "pm10"],
        (UsAqiDaily, _) => &["pm2_5", "pm10", "o3", "co", "so2", "no2"],
        (PdkMultiple | PdkExceedances | KzSi | KzNp | KzIza5 | KzPollutionLevel, _) => {
            &["pm2_5", "pm10", "no2", "so2", "co", "o3", "h2s"]
        }
        (EaqiLevel, _) => &["pm2_5", "pm10", "no2", "o3", "so2"],
        (TrafficFlow | TrafficSpeed | CongestionLevel | TravelTimeIndex | LevelOfService, _) => {
            &["volume", "interval", "speed"]
        }
        (Consumption | ConsumptionPerCapita | DistrictLosses, Kind::Heat | Kind::Power) => {
            &["energy"]
        }
        (Consumption | ConsumptionPerCapita | DistrictLosses, _) => &["volume"],
        (NightFlowMin | LeakSuspected, _) => &["volume", "leak_alarm"],
        _ => &[],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn validate(d: &mut IndicatorDef, at: &str) -> Result<(), CatalogError> {
    let f = d.function;
    if d.id.is_empty()
        || !d
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(entry(
            at,
            "id: use a-z, 0-9 and _ (it is a tag and a topic level)",
        ));
    }
    for (lang, name) in [
        ("ru", &d.names.ru),
        ("kk", &d.names.kk),
        ("en", &d.names.en),
    ] {
        if name.trim().is_empty() {
            return Err(entry(at, format!("names.{lang} is empty")));
        }
    }
    if d.reference.trim().is_empty() {
        return Err(entry(at, "reference: name the table or method"));
    }
    if d.unit.contains(['\n', '"']) {
        return Err(entry(at, "unit: one line, no quotes"));
    }
    // Kinds: the function's, or a subset of them.
    let allowed = f.kinds();
    if d.inputs.kinds.is_empty() {
        d.inputs.kinds = allowed.to_vec();
    } else if let Some(k) = d.inputs.kinds.iter().find(|k| !allowed.contains(k)) {
        let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
        return Err(entry(
            at,
            format!(
                "inputs.kinds: `{}` is not read by function {:?} (it reads: {})",
                k.as_str(),
                f,
                if names.is_empty() {
                    "every kind, leave it empty".into()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    // Metrics: must exist for every kind listed.
    if d.inputs.metrics.is_empty() {
        let mut all = BTreeSet::new();
        for k in &d.inputs.kinds {
            all.extend(default_metrics(f, *k));
        }
        d.inputs.metrics = all.into_iter().collect();
    }
    if f.one_metric() && d.inputs.metrics.len() != 1 {
        return Err(entry(
            at,
            "inputs.metrics: name exactly one metric for this function",
        ));
    }
    for m in &d.inputs.metrics {
        if !d
            .inputs
            .kinds
            .iter()
            .any(|k| metrics_of(*k).iter().any(|def| def.name == m))
        {
            return Err(entry(
                at,
                format!("inputs.metrics: `{m}` is not a metric of the kinds read"),
            ));
        }
    }
    // Scopes and windows.
    if d.scopes.is_empty() {
        d.scopes = f.scopes().to_vec();
    }
    if let Some(s) = d.scopes.iter().find(|s| !f.scopes().contains(s)) {
        return Err(entry(
            at,
            format!("scopes: `{s}` is not defined for function {f:?}"),
        ));
    }
    if d.windows.is_empty() {
        d.windows = f.windows().to_vec();
    }
    if let Some(w) = d.windows.iter().find(|w| !f.windows().contains(w)) {
        return Err(entry(
            at,
            format!(
                "windows: `{}` is not defined for function {f:?} (it has: {})",
                w.as_str(),
                f.windows()
                    .iter()
                    .map(|w| w.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    // Levels: ascending bounds, only the last open.
    let mut prev = f64::NEG_INFINITY;
    for (i, l) in d.levels.iter().enumerate() {
        let last = i + 1 == d.levels.len();
        match l.max {
            Some(m) if !m.is_finite() || m <= prev => {
                return Err(entry(
                    at,
                    format!(
                        "levels[{i}] ({}): max must be finite and above the previous",
                        l.key
                    ),
                ))
            }
            Some(m) => prev = m,
            None if !last => {
                return Err(entry(
                    at,
                    format!("levels[{i}] ({}): only the last level may be open", l.key),
                ))
            }
            None => {}
        }
        if l.key.is_empty() {
            return Err(entry(at, format!("levels[{i}]: key is empty")));
        }
    }
    // Parameters.
    let known = f.params();
    if let Some(p) = d.params.given().into_iter().find(|p| !known.contains(p)) {
        return Err(entry(
            at,
            format!(
                "params.{p} is not a parameter of {f:?} (it takes: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let p = &d.params;
    let share = |v: Option<f64>, key: &str, lo: f64, hi: f64| match v {
        Some(x) if !(x >= lo && x <= hi) => Err(entry(
            at,
            format!("params.{key} = {x}: must be within {lo}..={hi}"),
        )),
        _ => Ok(()),
    };
    share(p.legit_night_use, "legit_night_use", 0.0, 0.9)?;
    share(p.min_completeness, "min_completeness", 0.0, 1.0)?;
    share(p.rise, "rise", 0.0, 100.0)?;
    share(p.tolerance, "tolerance", 1.0, 10.0)?;
    share(p.free_flow_speed, "free_flow_speed", 5.0, 200.0)?;
    share(p.factor, "factor", 1e-9, 1e9)?;
    share(p.threshold, "threshold", 0.0, 1e6)?;
    if let Some([a, b]) = p.night_hours {
        if a > 23 || b > 24 || a == b {
            return Err(entry(
                at,
                "params.night_hours: [from, to) local hours, e.g. [0, 5]",
            ));
        }
    }
    if p.nights == Some(0) {
        return Err(entry(at, "params.nights: at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_is_valid_and_has_every_required_id() {
        let c = Catalog::parse(BUILTIN).unwrap_or_else(|e| panic!("{e}"));
        for id in [
            "us_aqi_nowcast",
            "us_aqi_daily",
            "pdk_multiple",
            "pdk_exceedances",
            "kz_si",
            "kz_np",
            "kz_iza5",
            "kz_pollution_level",
            "eaqi_level",
            "traffic_flow",
            "traffic_speed",
            "congestion_level",
            "travel_time_index",
            "level_of_service",
            "consumption",
            "consumption_per_capita",
            "night_flow_min",
            "leak_suspected",
            "district_losses",
            "reporting_coverage",
            "device_coverage",
            "data_completeness",
        ] {
            assert!(c.get(id).is_some(), "{id} missing");
        }
        assert_eq!(c.pdk.len(), 7);
    }

    fn one(entry_toml: &str) -> Result<Catalog, CatalogError> {
        Catalog::parse(&format!("version = \"t\"\n[[indicator]]\n{entry_toml}"))
    }

    const NAMES: &str = "names = { ru = \"р\", kk = \"қ\", en = \"e\" }\nreference = \"r\"\n";

    #[test]
    fn a_new_indicator_from_an_existing_function_is_data() {
        let c = one(&format!(
            "id = \"humidity_mean\"\nsphere = \"ecology\"\nfunction = \"mean\"\nunit = \"%RH\"\n\
             inputs = {{ kinds = [\"air\"], metrics = [\"humidity\"] }}\n{NAMES}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let d = &c.indicators[0];
        assert_eq!(d.windows, vec![Window::Hour, Window::Day]);
        assert_eq!(d.scopes, Scope::ALL.to_vec());
    }

    #[test]
    fn errors_name_the_entry_and_key() {
        let cases = [
            (
                format!("id = \"x\"\nsphere = \"ecology\"\nfunction = \"mean\"\nunit = \"u\"\ninputs = {{ kinds = [\"air\"], metrics = [\"speed\"] }}\n{NAMES}"),
                "indicator[0] (x): inputs.metrics: `speed` is not a metric of the kinds read",
            ),
            (
                format!("id = \"x\"\nsphere = \"ecology\"\nfunction = \"kz_si\"\nunit = \"u\"\nwindows = [\"1h\"]\n{NAMES}"),
                "indicator[0] (x): windows: `1h` is not defined for function KzSi (it has: 24h)",
            ),
            (
                format!("id = \"x\"\nsphere = \"ecology\"\nfunction = \"kz_si\"\nunit = \"u\"\nparams = {{ factor = 2.0 }}\n{NAMES}"),
                "indicator[0] (x): params.factor is not a parameter of KzSi (it takes: none)",
            ),
            (
                format!("id = \"X-1\"\nsphere = \"ecology\"\nfunction = \"kz_si\"\nunit = \"u\"\n{NAMES}"),
                "indicator[0] (X-1): id: use a-z, 0-9 and _",
            ),
            (
                format!("id = \"x\"\nsphere = \"transport\"\nfunction = \"travel_time_index\"\nunit = \"\"\nlevels = [{{ key = \"good\", max = 1.5 }}, {{ key = \"poor\" }}, {{ key = \"worse\", max = 3.0 }}]\n{NAMES}"),
                "indicator[0] (x): levels[1] (poor): only the last level may be open",
            ),
            (
                format!("id = \"x\"\nsphere = \"transport\"\nfunction = \"device_coverage\"\nunit = \"%\"\nscopes = [\"sensor\"]\n{NAMES}"),
                "indicator[0] (x): scopes: `sensor` is not defined for function DeviceCoverage",
            ),
            (
                format!("id = \"x\"\nsphere = \"transport\"\nfunction = \"traffic_flow\"\nunit = \"veh/h\"\ninputs = {{ kinds = [\"air\"] }}\n{NAMES}"),
                "indicator[0] (x): inputs.kinds: `air` is not read by function TrafficFlow (it reads: traffic)",
            ),
        ];
        for (text, want) in cases {
            let got = one(&text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(got.contains(want), "got {got:?}, want {want:?}");
        }
        let dup = format!(
            "id = \"x\"\nsphere = \"ecology\"\nfunction = \"kz_si\"\nunit = \"u\"\n{NAMES}[[indicator]]\nid = \"x\"\nsphere = \"ecology\"\nfunction = \"kz_np\"\nunit = \"u\"\n{NAMES}"
        );
        let got = one(&dup).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(got.contains("indicator[1] (x): duplicate id"), "{got}");
        let unknown = format!("id = \"x\"\nsphere = \"ecology\"\nfunction = \"kz_si\"\nunit = \"u\"\nwindow = \"1h\"\n{NAMES}");
        let got = one(&unknown)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(got.contains("unknown field `window`"), "{got}");
    }

    #[test]
    fn levels_are_inclusive_upper_bounds() {
        let c = one(&format!(
            "id = \"tti\"\nsphere = \"transport\"\nfunction = \"travel_time_index\"\nunit = \"\"\n\
             levels = [{{ key = \"good\", max = 1.5 }}, {{ key = \"acceptable\", max = 2.5 }}, {{ key = \"poor\" }}]\n{NAMES}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let d = &c.indicators[0];
        assert_eq!(d.level_of(1.5).as_deref(), Some("good"));
        assert_eq!(d.level_of(1.51).as_deref(), Some("acceptable"));
        assert_eq!(d.level_of(2.5).as_deref(), Some("acceptable"));
        assert_eq!(d.level_of(9.0).as_deref(), Some("poor"));
    }
}
