//! `[alerts]`: where alerts go (MQTT, an optional webhook) and `[[alerts.rules]]`, the conditions
//! that raise them. A rule watches one indicator of the catalog (a threshold crossed, a level
//! changed) or the registered sensors (one silent for too long). [`AlertSettings::compile`]
//! validates the rules and turns them into [`Rule`]s for the state machine, naming the key of
//! anything wrong (`alerts.rules[2].clear_below`).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::human_duration;
use crate::indicators::value::{IndicatorValue, Scope};
use crate::model::Sphere;
use crate::registry::SensorInfo;

/// Longest `webhook_timeout`.
const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// Most entries of `queue`.
const MAX_QUEUE: usize = 1_000_000;
/// Most `webhook_max_retries`.
const MAX_RETRIES: u32 = 100;
/// Most consecutive values a rule may ask for (`for`).
const MAX_FOR: u32 = 10_000;

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Publish alert events on MQTT (`qala/alerts/...`, retained).
    pub mqtt: bool,
    /// Events buffered between the engine and the outputs, and again before the webhook. When
    /// a buffer is full the event is dropped and counted (`qala_alerts_dropped_total{output}`):
    /// alerts never hold up the engine.
    pub queue: usize,
    /// `http://` or `https://` URL that receives each event as a JSON POST.
    pub webhook_url: Option<String>,
    /// Per-request timeout of the webhook.
    #[serde(with = "human_duration")]
    pub webhook_timeout: Duration,
    /// Retries of one event after its first attempt (on network errors, 408, 429 and 5xx).
    pub webhook_max_retries: u32,
    /// An event not delivered this long after its first attempt is given up (counted).
    #[serde(with = "human_duration")]
    pub webhook_give_up: Duration,
    /// `[[alerts.rules]]`.
    pub rules: Vec<RuleSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            mqtt: true,
            queue: 1024,
            webhook_url: None,
            webhook_timeout: Duration::from_secs(10),
            webhook_max_retries: 10,
            webhook_give_up: Duration::from_secs(600),
            rules: Vec::new(),
        }
    }
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One `[[alerts.rules]]` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Unique; a level of the alert's MQTT topic and a label of `qala_alerts_total`.
    pub name: String,
    /// The catalog id the rule watches (not for `stale` rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator: Option<String>,
    // Filters: a value (or a sensor) must match every one given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sphere: Option<Sphere>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The window's name as in the catalog (`1h`, `24h`, `nowcast`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    // Conditions: exactly one of above, below, level_change, stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_change: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<String>>,
    /// A duration (`"2h"`) or `"expected"` (twice the sensor's registered expected interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// Consecutive valid values the condition must hold before the alert is raised.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_values: Option<u32>,
    #[serde(default)]
    pub severity: Severity,
}

/// What a compiled rule looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Raised when value > `above`; cleared when value < `clear_below` (≤ `above`).
    Above { above: f64, clear_below: f64 },
    /// Raised when value < `below`; cleared when value > `clear_above` (≥ `below`).
    Below { below: f64, clear_above: f64 },
    /// Every change of the level key (`changed` events), or with `levels` given, entering one
    /// of them (`raised`), moving between them (`changed`) and leaving them (`cleared`).
    LevelChange { levels: Option<Vec<String>> },
    /// A registered sensor whose last reading is older than this.
    Stale(StaleAfter),
}

/// How old a sensor's last reading may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleAfter {
    Fixed(Duration),
    /// Twice the sensor's registered expected interval.
    Expected,
}

impl StaleAfter {
    /// The limit for `sensor`; None when it cannot be told (no expected interval registered).
    pub fn limit(self, sensor: &SensorInfo) -> Option<Duration> {
        match self {
            StaleAfter::Fixed(d) => Some(d),
            StaleAfter::Expected if sensor.expected_interval.is_zero() => None,
            StaleAfter::Expected => Some(sensor.expected_interval.saturating_mul(2)),
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Empty for stale rules.
    pub indicator: String,
    pub sphere: Option<Sphere>,
    pub scope: Option<Scope>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub sensor_id: Option<String>,
    pub component: Option<String>,
    pub window: Option<String>,
    pub condition: Condition,
    /// ≥ 1.
    pub for_values: u32,
    pub severity: Severity,
}

impl Rule {
    /// Whether `v` is one the rule watches (its indicator and every filter given).
    pub fn matches_value(&self, v: &IndicatorValue) -> bool {
        !matches!(self.condition, Condition::Stale(_))
            && self.indicator == v.indicator
            && self.sphere.is_none_or(|s| s == v.sphere)
            && self.scope.is_none_or(|s| s == v.scope)
            && same(&self.city, &v.city)
            && same(&self.district, &v.district)
            && same(&self.sensor_id, &v.sensor_id)
            && same(&self.component, &v.component)
            && same(&self.window, &v.window)
    }

    /// Whether a stale rule watches `sensor`.
    pub fn matches_sensor(&self, sensor: &SensorInfo) -> bool {
        matches!(self.condition, Condition::Stale(_))
            && self.sphere.is_none_or(|s| s == sensor.sphere)
            && same(&self.city, &sensor.city)
            && same(&self.district, &sensor.district)
            && same(&self.sensor_id, &sensor.sensor_id)
    }
}

fn same(filter: &Option<String>, actual: &str) -> bool {
    filter.as_deref().is_none_or(|f| f == actual)
}

/// A config problem: the key and what is wrong with it.
pub type KeyError = (String, String);

impl AlertSettings {
    /// The catalog ids the rules watch, for the engine to check against its catalog at start.
    pub fn indicator_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter_map(|r| r.indicator.as_deref())
    }

    /// Checks the rules against the indicator catalog: `levels_of(id)` is None for an unknown
    /// id, else the level keys the indicator has (empty when it has none). Names the key of
    /// an unknown id, of a `level_change` rule on an indicator without levels and of a level
    /// the indicator does not have.
    pub fn check_catalog(
        &self,
        levels_of: impl Fn(&str) -> Option<Vec<String>>,
    ) -> Result<(), KeyError> {
        for (i, r) in self.rules.iter().enumerate() {
            let Some(id) = r.indicator.as_deref() else {
                continue;
            };
            let Some(known) = levels_of(id) else {
                return Err((
                    format!("alerts.rules[{i}].indicator"),
                    format!("{id:?} is not an indicator of the catalog"),
                ));
            };
            if r.level_change == Some(true) && known.is_empty() {
                return Err((
                    format!("alerts.rules[{i}].level_change"),
                    format!("{id:?} has no levels to change between"),
                ));
            }
            for level in r.levels.iter().flatten() {
                if !known.contains(level) {
                    return Err((
                        format!("alerts.rules[{i}].levels"),
                        format!(
                            "{level:?} is not a level of {id:?} (its levels: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Validates everything and compiles the rules; the error names the key.
    pub fn compile(&self) -> Result<Vec<Rule>, KeyError> {
        let err = |key: &str, why: String| Err((format!("alerts.{key}"), why));
        if !(1..=MAX_QUEUE).contains(&self.queue) {
            return err(
                "queue",
                format!("{} is not between 1 and {MAX_QUEUE}", self.queue),
            );
        }
        if let Some(text) = &self.webhook_url {
            match url::Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                Ok(_) => {
                    return err(
                        "webhook_url",
                        format!("{text:?} must be an http:// or https:// URL with a host"),
                    )
                }
                Err(e) => return err("webhook_url", format!("{text:?} is not a URL ({e})")),
            }
        }
        if self.webhook_timeout.is_zero() || self.webhook_timeout > MAX_WEBHOOK_TIMEOUT {
            return err(
                "webhook_timeout",
                "must be more than 0 and at most 5m".into(),
            );
        }
        if self.webhook_max_retries > MAX_RETRIES {
            return err(
                "webhook_max_retries",
                format!("{} is more than {MAX_RETRIES}", self.webhook_max_retries),
            );
        }
        if self.webhook_give_up < self.webhook_timeout {
            return err(
                "webhook_give_up",
                format!(
                    "{} is shorter than webhook_timeout ({}): not even one attempt would finish",
                    humantime::format_duration(self.webhook_give_up),
                    humantime::format_duration(self.webhook_timeout)
                ),
            );
        }
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let rule =
                compile_rule(r).map_err(|(k, why)| (format!("alerts.rules[{i}].{k}"), why))?;
            if !names.insert(rule.name.clone()) {
                return Err((
                    format!("alerts.rules[{i}].name"),
                    format!(
                        "{:?} is the name of an earlier rule: names must be unique",
                        r.name
                    ),
                ));
            }
            rules.push(rule);
        }
        Ok(rules)
    }

    /// The rules, compiled (validated at load: none when they were not).
    pub fn rules(&self) -> Vec<Rule> {
        self.compile().unwrap_or_default()
    }
}

/// An id used as an MQTT topic level: non-empty, no `/`, `+`, `#`.
fn check_level(key: &str, text: &str) -> Result<(), KeyError> {
    if text.is_empty() || text.contains(['/', '+', '#', '\0']) {
        return Err((
            key.into(),
            format!("{text:?} must be non-empty, without / + # (it is a level of the alert's MQTT topic)"),
        ));
    }
    Ok(())
}

fn finite(key: &str, x: f64) -> Result<f64, KeyError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err((key.into(), format!("{x} is not a finite number")))
    }
}

fn compile_rule(r: &RuleSettings) -> Result<Rule, KeyError> {
    check_level("name", &r.name)?;
    for (key, filter) in [
        ("city", &r.city),
        ("district", &r.district),
        ("sensor_id", &r.sensor_id),
        ("component", &r.component),
        ("window", &r.window),
    ] {
        if let Some(f) = filter {
            check_level(key, f)?;
        }
    }
    let given: Vec<&str> = [
        ("above", r.above.is_some()),
        ("below", r.below.is_some()),
        ("level_change", r.level_change.is_some()),
        ("stale", r.stale.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    let condition = match given.as_slice() {
        [] => {
            return Err((
                "above".into(),
                "the rule has no condition: set one of above, below, level_change, stale".into(),
            ))
        }
        [_] => condition(r)?,
        [_, second, ..] => {
            return Err((
                (*second).into(),
                format!(
                    "set only one condition per rule; this one has {}",
                    given.join(" and ")
                ),
            ))
        }
    };
    let for_values = r.for_values.unwrap_or(1);
    if !(1..=MAX_FOR).contains(&for_values) {
        return Err((
            "for".into(),
            format!("{for_values} is not between 1 and {MAX_FOR}"),
        ));
    }
    let stale = matches!(condition, Condition::Stale(_));
    let indicator = match (&r.indicator, stale) {
        (Some(_), true) => {
            return Err((
                "indicator".into(),
                "a stale rule watches the registered sensors, not an indicator: remove it".into(),
            ))
        }
        (None, true) => String::new(),
        (None, false) => return Err(("indicator".into(), "is required (a catalog id)".into())),
        (Some(id), false) => {
            check_level("indicator", id)?;
            id.clone()
        }
    };
    if stale {
        for (key, set) in [
            ("scope", r.scope.is_some()),
            ("component", r.component.is_some()),
            ("window", r.window.is_some()),
        ] {
            if set {
                return Err((
                    key.into(),
                    "does not apply to a stale rule (it watches sensors)".into(),
                ));
            }
        }
        if for_values > 1 {
            return Err((
                "for".into(),
                "does not apply to a stale rule: the stale duration is its debounce".into(),
            ));
        }
    }
    Ok(Rule {
        name: r.name.clone(),
        indicator,
        sphere: r.sphere,
        scope: r.scope,
        city: r.city.clone(),
        district: r.district.clone(),
        sensor_id: r.sensor_id.clone(),
        component: r.component.clone(),
        window: r.window.clone(),
        condition,
        for_values,
        severity: r.severity,
    })
}

/// The one condition `r` sets, with the keys that go with it (and none that go with another).
fn condition(r: &RuleSettings) -> Result<Condition, KeyError> {
    let only_with = |key: &str, set: bool, cond: &str| -> Result<(), KeyError> {
        if set {
            Err((key.into(), format!("goes only with {cond}")))
        } else {
            Ok(())
        }
    };
    if r.above.is_none() {
        only_with("clear_below", r.clear_below.is_some(), "above")?;
    }
    if r.below.is_none() {
        only_with("clear_above", r.clear_above.is_some(), "below")?;
    }
    if r.level_change.is_none() {
        only_with("levels", r.levels.is_some(), "level_change = true")?;
    }
    if let Some(above) = r.above {
        let above = finite("above", above)?;
        let clear_below = finite("clear_below", r.clear_below.unwrap_or(above))?;
        if clear_below > above {
            return Err((
                "clear_below".into(),
                format!("{clear_below} is above `above` ({above}): the alert would clear while the value still raises it"),
            ));
        }
        return Ok(Condition::Above { above, clear_below });
    }
    if let Some(below) = r.below {
        let below = finite("below", below)?;
        let clear_above = finite("clear_above", r.clear_above.unwrap_or(below))?;
        if clear_above < below {
            return Err((
                "clear_above".into(),
                format!("{clear_above} is below `below` ({below}): the alert would clear while the value still raises it"),
            ));
        }
        return Ok(Condition::Below { below, clear_above });
    }
    if let Some(on) = r.level_change {
        if !on {
            return Err((
                "level_change".into(),
                "only `true` is meaningful; remove the rule to turn it off".into(),
            ));
        }
        if let Some(levels) = &r.levels {
            if levels.is_empty() || levels.iter().any(String::is_empty) {
                return Err((
                    "levels".into(),
                    "must list level keys (e.g. [\"high\", \"very_high\"]); leave it out to alert on every change".into(),
                ));
            }
        }
        return Ok(Condition::LevelChange {
            levels: r.levels.clone(),
        });
    }
    let text = r.stale.as_deref().unwrap_or_default().trim();
    if text == "expected" {
        return Ok(Condition::Stale(StaleAfter::Expected));
    }
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(Condition::Stale(StaleAfter::Fixed(d))),
        Ok(_) => Err(("stale".into(), "must be more than 0".into())),
        Err(e) => Err((
            "stale".into(),
            format!("{text:?} is neither a duration (\"2h\") nor \"expected\" ({e})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::Settings;

    fn load(toml: &str) -> Result<Settings, String> {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(toml.as_bytes()).expect("write");
        Settings::load_from(Some(f.path()), Vec::new()).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[alerts]
webhook_url = "https://hooks.example.kz/qala"
webhook_timeout = "5s"
webhook_max_retries = 3
webhook_give_up = "2m"

[[alerts.rules]]
name = "aqi_unhealthy"
indicator = "us_aqi_nowcast"
scope = "district"
city = "almaty"
above = 150
clear_below = 130
for = 2
severity = "critical"

[[alerts.rules]]
name = "slow_traffic"
indicator = "traffic_speed"
below = 15.5

[[alerts.rules]]
name = "kz_pollution_high"
indicator = "kz_pollution_level"
level_change = true
levels = ["high", "very_high"]

[[alerts.rules]]
name = "meter_silent"
sphere = "housing_utilities"
stale = "expected"

[[alerts.rules]]
name = "station_silent"
stale = "2h"
severity = "info"
"#;

    #[test]
    fn a_full_alerts_section_compiles() {
        let s = load(GOOD).expect("valid");
        let a = &s.alerts;
        assert_eq!(
            a.webhook_url.as_deref(),
            Some("https://hooks.example.kz/qala")
        );
        assert_eq!(
            (a.webhook_timeout, a.webhook_max_retries),
            (Duration::from_secs(5), 3)
        );
        let rules = a.rules();
        let conditions: Vec<&Condition> = rules.iter().map(|r| &r.condition).collect();
        assert_eq!(
            conditions,
            [
                &Condition::Above {
                    above: 150.0,
                    clear_below: 130.0
                },
                &Condition::Below {
                    below: 15.5,
                    clear_above: 15.5
                },
                &Condition::LevelChange {
                    levels: Some(vec!["high".into(), "very_high".into()])
                },
                &Condition::Stale(StaleAfter::Expected),
                &Condition::Stale(StaleAfter::Fixed(Duration::from_secs(7200))),
            ]
        );
        assert_eq!(
            (rules[0].for_values, rules[0].severity),
            (2, Severity::Critical)
        );
        assert_eq!(
            (rules[1].for_values, rules[1].severity),
            (1, Severity::Warning)
        );
        assert_eq!(rules[0].scope, Some(Scope::District));
        assert_eq!(rules[3].sphere, Some(Sphere::HousingUtilities));
        assert_eq!(
            a.indicator_ids().collect::<Vec<_>>(),
            ["us_aqi_nowcast", "traffic_speed", "kz_pollution_level"]
        );
        // It survives `qala check-config`'s rendering and loads back the same.
        let again = load(&s.to_masked_toml()).expect("rendered config loads");
        assert_eq!(again.alerts.rules(), rules);
    }

    /// The `[alerts]` section of `config/default.toml` with its commented example uncommented:
    /// `# key = ...` and `# [[alerts.rules]]` lines lose their `# `.
    #[test]
    fn the_commented_example_in_default_toml_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let text = std::fs::read_to_string(path).expect("config/default.toml");
        let section = &text[text.find("[alerts]").expect("an [alerts] section")..];
        let example: String = section
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[")
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        let s = load(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
        let names: Vec<String> = s.alerts.rules().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "aqi_unhealthy",
                "traffic_jam",
                "kz_pollution_high",
                "meter_silent"
            ]
        );
        assert!(s.alerts.webhook_url.is_some());
        // As shipped (commented): no rules, no webhook.
        let shipped = load(section).expect("the section as shipped");
        assert!(shipped.alerts.rules.is_empty() && shipped.alerts.webhook_url.is_none());
    }

    #[test]
    fn no_alerts_section_means_no_rules() {
        let s = load("").expect("valid");
        assert!(s.alerts.rules.is_empty() && s.alerts.webhook_url.is_none() && s.alerts.mqtt);
        // The environment sets the webhook (and, as text, numbers and durations).
        let env = [
            ("QALA__ALERTS__WEBHOOK_URL", "http://127.0.0.1:9000/hook"),
            ("QALA__ALERTS__QUEUE", "64"),
            ("QALA__ALERTS__WEBHOOK_GIVE_UP", "1h"),
        ];
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = Settings::load_from(None, env).expect("valid");
        assert_eq!(
            s.alerts.webhook_url.as_deref(),
            Some("http://127.0.0.1:9000/hook")
        );
        assert_eq!(
            (s.alerts.queue, s.alerts.webhook_give_up),
            (64, Duration::from_secs(3600))
        );
    }

    #[test]
    fn contradictions_and_bad_values_name_the_key() {
        let rule = |body: &str| {
            format!("[[alerts.rules]]\nname = \"a\"\nindicator = \"x\"\nabove = 1\n\n[[alerts.rules]]\nname = \"b\"\n{body}\n")
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (rule("indicator = \"x\"\nabove = 10\nclear_below = 12"), "`alerts.rules[1].clear_below`", "above `above`"),
            (rule("indicator = \"x\"\nbelow = 10\nclear_above = 8"), "`alerts.rules[1].clear_above`", "below `below`"),
            (rule("indicator = \"x\"\nabove = 10\nbelow = 5"), "`alerts.rules[1].below`", "only one condition"),
            (rule("indicator = \"x\""), "`alerts.rules[1].above`", "no condition"),
            (rule("indicator = \"x\"\nbelow = 5\nclear_below = 4"), "`alerts.rules[1].clear_below`", "goes only with above"),
            (rule("indicator = \"x\"\nabove = 5\nlevels = [\"high\"]"), "`alerts.rules[1].levels`", "level_change"),
            (rule("indicator = \"x\"\nlevel_change = true\nlevels = []"), "`alerts.rules[1].levels`", "must list"),
            (rule("indicator = \"x\"\nlevel_change = false"), "`alerts.rules[1].level_change`", "only `true`"),
            (rule("above = 5"), "`alerts.rules[1].indicator`", "required"),
            (rule("indicator = \"x\"\nstale = \"2h\""), "`alerts.rules[1].indicator`", "stale rule"),
            (rule("stale = \"soon\""), "`alerts.rules[1].stale`", "neither a duration"),
            (rule("stale = \"0s\""), "`alerts.rules[1].stale`", "more than 0"),
            (rule("stale = \"1h\"\nscope = \"district\""), "`alerts.rules[1].scope`", "stale rule"),
            (rule("stale = \"1h\"\nfor = 3"), "`alerts.rules[1].for`", "stale rule"),
            (rule("indicator = \"x\"\nabove = 1\nfor = 0"), "`alerts.rules[1].for`", "between 1"),
            (rule("indicator = \"x/y\"\nabove = 1"), "`alerts.rules[1].indicator`", "without / + #"),
            (rule("indicator = \"x\"\nabove = 1\ndistrict = \"#\""), "`alerts.rules[1].district`", "without / + #"),
            (
                "[[alerts.rules]]\nname = \"a\"\nindicator = \"x\"\nabove = 1\n[[alerts.rules]]\nname = \"a\"\nindicator = \"y\"\nbelow = 1\n".into(),
                "`alerts.rules[1].name`",
                "unique",
            ),
            ("[alerts]\nwebhook_url = \"ftp://h/x\"\n".into(), "`alerts.webhook_url`", "http://"),
            ("[alerts]\nwebhook_url = \"not a url\"\n".into(), "`alerts.webhook_url`", "not a URL"),
            ("[alerts]\nwebhook_timeout = \"0s\"\n".into(), "`alerts.webhook_timeout`", "more than 0"),
            ("[alerts]\nwebhook_give_up = \"1s\"\n".into(), "`alerts.webhook_give_up`", "shorter than webhook_timeout"),
            ("[alerts]\nwebhook_max_retries = 1000\n".into(), "`alerts.webhook_max_retries`", "more than 100"),
            ("[alerts]\nqueue = 0\n".into(), "`alerts.queue`", "between 1"),
            ("[alerts]\nwebhok_url = \"http://x\"\n".into(), "`alerts.webhok_url`", "unknown key"),
        ];
        for (toml, key, why) in cases {
            let e = load(&toml).expect_err(&toml);
            assert!(
                e.contains(key) && e.contains(why),
                "{toml:?}: {e:?} should name {key} and say {why:?}"
            );
        }
        // serde names the field it does not know, or the value it cannot take.
        let e = load("[[alerts.rules]]\nname = \"a\"\nindicator = \"x\"\nabvoe = 1\n")
            .expect_err("typo");
        assert!(e.contains("abvoe"), "{e}");
        let e = load(
            "[[alerts.rules]]\nname = \"a\"\nindicator = \"x\"\nabove = 1\nseverity = \"loud\"\n",
        )
        .expect_err("severity");
        assert!(e.contains("loud") && e.contains("severity"), "{e}");
    }

    #[test]
    fn the_catalog_check_names_unknown_ids_and_levels() {
        let s = load(GOOD).expect("valid");
        let catalog = |id: &str| match id {
            "us_aqi_nowcast" | "traffic_speed" => Some(Vec::new()),
            "kz_pollution_level" => Some(vec![
                "low".into(),
                "elevated".into(),
                "high".into(),
                "very_high".into(),
            ]),
            _ => None,
        };
        assert_eq!(s.alerts.check_catalog(catalog), Ok(()));
        let no_kz = |id: &str| {
            if id == "kz_pollution_level" {
                None
            } else {
                catalog(id)
            }
        };
        let (key, why) = s.alerts.check_catalog(no_kz).expect_err("unknown id");
        assert_eq!(key, "alerts.rules[2].indicator");
        assert!(
            why.contains("\"kz_pollution_level\" is not an indicator"),
            "{why}"
        );
        let fewer = |id: &str| {
            if id == "kz_pollution_level" {
                Some(vec!["high".to_owned()])
            } else {
                catalog(id)
            }
        };
        let (key, why) = s.alerts.check_catalog(fewer).expect_err("unknown level");
        assert_eq!(key, "alerts.rules[2].levels");
        assert!(why.contains("\"very_high\" is not a level"), "{why}");
        let flat = |id: &str| catalog(id).map(|_| Vec::new());
        let (key, _) = s.alerts.check_catalog(flat).expect_err("no levels");
        assert_eq!(key, "alerts.rules[2].level_change");
    }
}
