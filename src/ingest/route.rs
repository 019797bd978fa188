//! Routes: which topics Qala takes, how the levels of a topic name the sensor, and how its payload
//! is read. The first route whose filter matches a message's topic handles it; a message no route
//! matches is dead-lettered (`no_route`). Without configured routes, one route serves the default
//! layout `city/{city}/{district}/{kind}/{sensor_id}`.

use serde::{Deserialize, Serialize};

use crate::decode::line::LineOptions;
use crate::decode::mapped::{Mapping, MappingSettings};
use crate::decode::senml::SenmlOptions;
use crate::model::{Kind, Reason, Rejection};
use crate::normalize::MissingTimestamp;

/// How a route's payloads are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// By the first byte: `{` a JSON object (mapped when the route has `[json]`), `[` a SenML pack
    /// (or a mapped array), a digit or sign a plain value.
    #[default]
    Auto,
    /// A JSON object of the default shape, or mapped by the route's `[json]`.
    Json,
    /// A SenML pack in JSON (RFC 8428 §5).
    Senml,
    /// A SenML pack in CBOR (RFC 8428 §6).
    SenmlCbor,
    /// InfluxDB line protocol, one point per line.
    Line,
    /// One number; the metric comes from the topic (`{metric}`) or the route.
    Value,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Json => "json",
            Format::Senml => "senml",
            Format::SenmlCbor => "senml-cbor",
            Format::Line => "line",
            Format::Value => "value",
        }
    }
}

/// One `[[routes]]` table as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// For logs and messages (default: the filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MQTT filter (`+`, `#`; `$share/<group>/...` is subscribed as written and matched without
    /// its prefix).
    pub filter: String,
    /// Topic levels: `{city}`, `{district}`, `{kind}`, `{sensor_id}`, `{metric}`, `_` (skip),
    /// `{rest}` (any tail, last), or literal text. Absent: the topic names nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Fixed values for what the topic and payload lack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    /// The metric of a plain value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The unit of a plain value (default: the metric's canonical unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Overrides `validation.missing_timestamp` for this route (plain values default to
    /// `receive_time`: they never carry a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_timestamp: Option<MissingTimestamp>,
    #[serde(default)]
    pub senml: SenmlOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<MappingSettings>,
    #[serde(default)]
    pub line: LineOptions,
}

/// What a template level does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(Slot),
    Skip,
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    City,
    District,
    Kind,
    SensorId,
    Metric,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::City => "city",
            Slot::District => "district",
            Slot::Kind => "kind",
            Slot::SensorId => "sensor_id",
            Slot::Metric => "metric",
        }
    }
}

/// The route's fixed values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fixed {
    pub kind: Option<Kind>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub sensor_id: Option<String>,
    pub metric: Option<String>,
    pub unit: Option<String>,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    filter: Vec<String>,
    template: Option<Vec<Level>>,
    template_text: String,
    pub fixed: Fixed,
    pub format: Format,
    pub missing_timestamp: Option<MissingTimestamp>,
    pub senml: SenmlOptions,
    pub json: Option<Mapping>,
    pub line: LineOptions,
}

/// What a topic's levels say, per the route's template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Captures<'t> {
    pub city: Option<&'t str>,
    pub district: Option<&'t str>,
    pub kind: Option<&'t str>,
    pub sensor_id: Option<&'t str>,
    pub metric: Option<&'t str>,
}

/// The routes of a gateway, in match order.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    subscriptions: Vec<String>,
}

/// The layout of the default route.
pub const DEFAULT_TEMPLATE: &str = "city/{city}/{district}/{kind}/{sensor_id}";

impl Routes {
    /// Compiles `settings`; an empty list means the default layout. Errors name the key
    /// (`routes[2].template`) and what is wrong with it.
    pub fn compile(settings: &[RouteSettings]) -> Result<Routes, (String, String)> {
        if settings.is_empty() {
            return Routes::compile(&[RouteSettings::default_layout()]);
        }
        let mut routes = Vec::with_capacity(settings.len());
        let mut subscriptions: Vec<String> = Vec::new();
        for (i, s) in settings.iter().enumerate() {
            let route =
                Route::compile(s).map_err(|(key, why)| (format!("routes[{i}].{key}"), why))?;
            if !subscriptions.contains(&s.filter) {
                subscriptions.push(s.filter.clone());
            }
            routes.push(route);
        }
        Ok(Routes {
            routes,
            subscriptions,
        })
    }

    /// The default layout alone.
    pub fn default_layout() -> Routes {
        Routes::compile(&[]).unwrap_or_else(|(k, e)| unreachable!("default route {k}: {e}"))
    }

    /// Filters to subscribe to, as written (with any `$share/` prefix), without repeats.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route whose filter matches `topic`.
    pub fn find(&self, topic: &str) -> Result<&Route, Rejection> {
        self.routes
            .iter()
            .find(|r| filter_matches(&r.filter, topic))
            .ok_or_else(|| {
                Rejection::new(
                    Reason::NoRoute,
                    format!(
                        "no route matches topic {topic:?} (filters: {})",
                        self.routes
                            .iter()
                            .map(|r| r.filter.join("/"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }
}

impl RouteSettings {
    /// The route of the default layout.
    pub fn default_layout() -> RouteSettings {
        RouteSettings {
            name: Some("default layout".into()),
            filter: "city/#".into(),
            template: Some(DEFAULT_TEMPLATE.into()),
            kind: None,
            city: None,
            district: None,
            sensor_id: None,
            metric: None,
            unit: None,
            format: Format::Auto,
            missing_timestamp: None,
            senml: SenmlOptions::default(),
            json: None,
            line: LineOptions::default(),
        }
    }
}

impl Route {
    fn compile(s: &RouteSettings) -> Result<Route, (String, String)> {
        let err = |key: &str, why: String| (key.to_owned(), why);
        check_filter(&s.filter).map_err(|why| err("filter", format!("{:?} {why}", s.filter)))?;
        let bare = match s.filter.strip_prefix("$share/") {
            Some(rest) => rest.split_once('/').map(|(_, f)| f).unwrap_or(rest),
            None => s.filter.as_str(),
        };
        let filter: Vec<String> = bare.split('/').map(str::to_owned).collect();
        let template = match &s.template {
            Some(t) => {
                Some(parse_template(t).map_err(|why| err("template", format!("{t:?} {why}")))?)
            }
            None => None,
        };
        let kind = match &s.kind {
            Some(k) => Some(k.parse::<Kind>().map_err(|()| {
                err(
                    "kind",
                    format!("{k:?} is not a kind (known: {})", Kind::known_list()),
                )
            })?),
            None => None,
        };
        for (key, v) in [
            ("city", &s.city),
            ("district", &s.district),
            ("sensor_id", &s.sensor_id),
            ("metric", &s.metric),
            ("unit", &s.unit),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.chars().any(char::is_control) {
                    return Err(err(
                        key,
                        format!("{v:?} must be non-empty text without control characters"),
                    ));
                }
            }
        }
        let captures = |slot: Slot| {
            template
                .as_ref()
                .is_some_and(|t| t.contains(&Level::Capture(slot)))
        };
        if s.format == Format::Value && s.metric.is_none() && !captures(Slot::Metric) {
            return Err(err(
                "format",
                "\"value\" needs the metric: put {metric} in the template or set metric".into(),
            ));
        }
        let json = match &s.json {
            Some(m) => {
                Some(Mapping::compile(m).map_err(|(k, why)| err(&format!("json.{k}"), why))?)
            }
            None => None,
        };
        if json.is_some() && !matches!(s.format, Format::Auto | Format::Json) {
            return Err(err(
                "json",
                format!(
                    "a JSON mapping needs format \"json\" or \"auto\", not {:?}",
                    s.format.as_str()
                ),
            ));
        }
        let missing_timestamp = s.missing_timestamp.or(match s.format {
            Format::Value => Some(MissingTimestamp::ReceiveTime),
            _ => None,
        });
        Ok(Route {
            name: s.name.clone().unwrap_or_else(|| s.filter.clone()),
            filter,
            template,
            template_text: s.template.clone().unwrap_or_default(),
            fixed: Fixed {
                kind,
                city: s.city.clone(),
                district: s.district.clone(),
                sensor_id: s.sensor_id.clone(),
                metric: s.metric.clone(),
                unit: s.unit.clone(),
            },
            format: s.format,
            missing_timestamp,
            senml: s.senml.clone(),
            json,
            line: s.line.clone(),
        })
    }

    /// What the topic's levels name, per the template. A topic the template does not fit is
    /// refused (`bad_topic`), naming the route and the template.
    pub fn captures<'t>(&self, topic: &'t str) -> Result<Captures<'t>, Rejection> {
        let Some(template) = &self.template else {
            return Ok(Captures::default());
        };
        // One pass over the levels (this runs for every message): the count is checked first,
        // so the first level that does not fit is only remembered until then.
        let mut caps = Captures::default();
        let mut misfit: Option<Misfit<'_, 't>> = None;
        let mut count = 0;
        for text in levels(topic) {
            if let (None, Some(level)) = (&misfit, template.get(count)) {
                match level {
                    Level::Literal(l) if l == text => {}
                    Level::Literal(l) => misfit = Some(Misfit::Literal(l, text)),
                    Level::Skip | Level::Rest => {}
                    Level::Capture(slot) if text.is_empty() => misfit = Some(Misfit::Empty(*slot)),
                    Level::Capture(slot) if has_control(text) => {
                        misfit = Some(Misfit::Control(*slot))
                    }
                    Level::Capture(slot) => {
                        let field = match slot {
                            Slot::City => &mut caps.city,
                            Slot::District => &mut caps.district,
                            Slot::Kind => &mut caps.kind,
                            Slot::SensorId => &mut caps.sensor_id,
                            Slot::Metric => &mut caps.metric,
                        };
                        *field = Some(text);
                    }
                }
            }
            count += 1;
        }
        let has_rest = template.last() == Some(&Level::Rest);
        let fixed_levels = template.len() - usize::from(has_rest);
        let why = if count < fixed_levels || (!has_rest && count != template.len()) {
            format!("has {count} levels")
        } else {
            match misfit {
                None => return Ok(caps),
                Some(Misfit::Literal(l, text)) => {
                    format!("has {text:?} where the layout has {l:?}")
                }
                Some(Misfit::Empty(slot)) => format!("has an empty {}", slot.name()),
                Some(Misfit::Control(slot)) => {
                    format!("has a control character in its {}", slot.name())
                }
            }
        };
        Err(Rejection::new(
            Reason::BadTopic,
            format!(
                "topic {topic:?} {why} (route {:?}, layout: {})",
                self.name, self.template_text
            ),
        ))
    }
}

/// The first level of a topic that does not fit its template.
enum Misfit<'l, 't> {
    /// The layout's literal, the topic's text.
    Literal(&'l str, &'t str),
    Empty(Slot),
    Control(Slot),
}

/// The levels of a topic, split at `/`. What `str::split('/')` yields, in a fraction of its
/// instructions on short topics: this runs for every message.
fn levels(topic: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(topic);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Whether `s` holds a control character (`char::is_control`), with a fast path for printable
/// ASCII, which is what topics and identities nearly always are.
pub(crate) fn has_control(s: &str) -> bool {
    !s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.chars().any(char::is_control)
}

fn parse_template(t: &str) -> Result<Vec<Level>, String> {
    let mut levels = Vec::new();
    let parts: Vec<&str> = t.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let level = match *part {
            "_" => Level::Skip,
            "{rest}" if i + 1 == parts.len() => Level::Rest,
            "{rest}" => return Err("has {rest} before its last level".into()),
            "{city}" => Level::Capture(Slot::City),
            "{district}" => Level::Capture(Slot::District),
            "{kind}" => Level::Capture(Slot::Kind),
            "{sensor_id}" => Level::Capture(Slot::SensorId),
            "{metric}" => Level::Capture(Slot::Metric),
            p if p.contains(['{', '}']) => {
                return Err(format!(
                    "has {p:?}; levels are {{city}}, {{district}}, {{kind}}, {{sensor_id}}, {{metric}}, _, {{rest}} or literal text"
                ))
            }
            p if p.contains(['+', '#']) => {
                return Err(format!("has {p:?}: wildcards belong in the filter, use _ here"))
            }
            "" => return Err("has an empty level".into()),
            p => Level::Literal(p.to_owned()),
        };
        if let Level::Capture(slot) = level {
            if levels.contains(&level) {
                return Err(format!("has {{{}}} twice", slot.name()));
            }
        }
        levels.push(level);
    }
    Ok(levels)
}

/// MQTT filter syntax: `#` only as the whole last level, `+` only as a whole level, and
/// `$share/<group>/<filter>` for shared subscriptions.
pub fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("is empty");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err("uses '#' other than as the whole last level");
        }
        if level.contains('+') && *level != "+" {
            return Err("uses '+' other than as a whole level");
        }
    }
    if let Some(rest) = filter.strip_prefix("$share/") {
        match rest.split_once('/') {
            Some((group, f)) if !group.is_empty() && !f.is_empty() => {}
            _ => return Err("is not $share/<group>/<filter>"),
        }
    }
    Ok(())
}

/// MQTT 3.1.1 §4.7: `+` matches one level, `#` the rest (including none); topics starting with
/// `$` are not matched by a filter starting with a wildcard.
fn filter_matches(filter: &[String], topic: &str) -> bool {
    if topic.starts_with('$') && filter.first().is_some_and(|f| f == "+" || f == "#") {
        return false;
    }
    let mut levels = levels(topic);
    for f in filter {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(l) if f == "+" || f == l => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(toml_text: &str) -> Result<Routes, (String, String)> {
        #[derive(Deserialize)]
        struct W {
            routes: Vec<RouteSettings>,
        }
        let w: W = toml::from_str(toml_text).expect("toml");
        Routes::compile(&w.routes)
    }

    /// `captures` as it was before it became one pass, to compare against.
    fn captures_before<'t>(route: &Route, topic: &'t str) -> Result<Captures<'t>, Rejection> {
        let Some(template) = &route.template else {
            return Ok(Captures::default());
        };
        let bad = |why: String| {
            Rejection::new(
                Reason::BadTopic,
                format!(
                    "topic {topic:?} {why} (route {:?}, layout: {})",
                    route.name, route.template_text
                ),
            )
        };
        // Counted, not collected: this runs for every message.
        let count = topic.split('/').count();
        let has_rest = template.last() == Some(&Level::Rest);
        let fixed_levels = template.len() - usize::from(has_rest);
        if count < fixed_levels || (!has_rest && count != template.len()) {
            return Err(bad(format!("has {count} levels")));
        }
        let mut caps = Captures::default();
        for (level, text) in template.iter().zip(topic.split('/')) {
            match level {
                Level::Literal(l) if l == text => {}
                Level::Literal(l) => {
                    return Err(bad(format!("has {text:?} where the layout has {l:?}")));
                }
                Level::Skip | Level::Rest => {}
                Level::Capture(slot) => {
                    if text.is_empty() {
                        return Err(bad(format!("has an empty {}", slot.name())));
                    }
                    if text.chars().any(char::is_control) {
                        return Err(bad(format!(
                            "has a control character in its {}",
                            slot.name()
                        )));
                    }
                    let field = match slot {
                        Slot::City => &mut caps.city,
                        Slot::District => &mut caps.district,
                        Slot::Kind => &mut caps.kind,
                        Slot::SensorId => &mut caps.sensor_id,
                        Slot::Metric => &mut caps.metric,
                    };
                    *field = Some(text);
                }
            }
        }
        Ok(caps)
    }

    #[test]
    fn one_pass_captures_agree_with_the_plain_version() {
        let routes = route(
            r#"
            [[routes]]
            filter = "a/#"
            template = "a/{city}/{district}/{kind}/{sensor_id}"
            [[routes]]
            filter = "b/#"
            template = "b/_/x/{sensor_id}/{metric}/{rest}"
            "#,
        )
        .expect("valid");
        let topics = [
            "a/almaty/almaly/air/st-1",
            "a/almaty/almaly/air",
            "a/almaty/almaly/air/st-1/x",
            "a",
            "a/almaty//air/st-1",
            "a/al\u{7}/almaly/air/",
            "a///",
            "a////",
            "b/1/x/m/v",
            "b/1/x/m/v/r/s",
            "b/1/y/m/v",
            "b/1/y//v",
            "b/1/x/m",
            "b/1/x/\u{85}/v",
            "b/1/y/\u{85}/",
            "b//x//",
            "b/1/x/m//",
        ];
        for t in topics {
            for r in routes.routes() {
                assert_eq!(r.captures(t), captures_before(r, t), "{t}");
            }
        }
    }

    #[test]
    fn levels_and_control_checks_agree_with_std() {
        for t in [
            "",
            "/",
            "//",
            "a",
            "a/",
            "/a",
            "city/almaty/almaly/air/st-1",
            "a//b",
            "ş/ü/€",
        ] {
            assert_eq!(
                levels(t).collect::<Vec<_>>(),
                t.split('/').collect::<Vec<_>>()
            );
        }
        for s in [
            "",
            "st-1",
            "a b~",
            "a\tb",
            "\u{7f}",
            "\u{80}",
            "\u{85}",
            "\u{9f}",
            "\u{a0}",
            "é",
            "Алматы",
            "x\u{2028}",
            "\0",
        ] {
            assert_eq!(has_control(s), s.chars().any(char::is_control), "{s:?}");
        }
    }

    #[test]
    fn filters_match_per_mqtt() {
        let f = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert!(filter_matches(&f("city/#"), "city/a/b/c/d"));
        assert!(filter_matches(&f("city/#"), "city"));
        assert!(!filter_matches(&f("city/#"), "town/a"));
        assert!(filter_matches(&f("a/+/c"), "a/b/c"));
        assert!(!filter_matches(&f("a/+/c"), "a/b/c/d"));
        assert!(!filter_matches(&f("a/+"), "a"));
        assert!(filter_matches(&f("+/+"), "a/"));
        assert!(!filter_matches(&f("#"), "$SYS/broker"));
        assert!(filter_matches(&f("$SYS/#"), "$SYS/broker"));
    }

    #[test]
    fn default_layout_captures_the_four_levels() {
        let routes = Routes::default_layout();
        assert_eq!(routes.subscriptions(), ["city/#"]);
        let r = routes.find("city/almaty/almaly/air/st-1").expect("route");
        let c = r.captures("city/almaty/almaly/air/st-1").expect("fits");
        assert_eq!(
            c,
            Captures {
                city: Some("almaty"),
                district: Some("almaly"),
                kind: Some("air"),
                sensor_id: Some("st-1"),
                metric: None
            }
        );
        let e = r.captures("city/almaty/air/st-1").unwrap_err();
        assert_eq!(e.reason, Reason::BadTopic);
        assert!(e.message.contains("has 4 levels"), "{}", e.message);
        let e = r.captures("city/almaty//air/st-1").unwrap_err();
        assert!(e.message.contains("has an empty district"), "{}", e.message);
        let e = routes.find("tele/x/SENSOR").unwrap_err();
        assert_eq!(e.reason, Reason::NoRoute);
        assert!(e.message.contains("city/#"), "{}", e.message);
    }

    #[test]
    fn first_matching_route_wins_and_templates_skip_and_take_the_rest() {
        let routes = route(
            r#"
            [[routes]]
            filter = "$share/qala/application/+/device/+/event/up"
            template = "application/_/device/{sensor_id}/event/up"
            kind = "water"
            city = "almaty"
            district = "medeu"
            [[routes]]
            filter = "meters/#"
            template = "meters/{kind}/{sensor_id}/{metric}/{rest}"
            city = "shymkent"
            format = "value"
            [[routes]]
            filter = "meters/water/#"
            template = "meters/_/{sensor_id}"
            "#,
        )
        .expect("valid");
        assert_eq!(
            routes.subscriptions(),
            [
                "$share/qala/application/+/device/+/event/up",
                "meters/#",
                "meters/water/#"
            ]
        );
        let t = "application/7/device/0101010101010101/event/up";
        let r = routes.find(t).expect("route");
        assert_eq!(r.fixed.kind, Some(Kind::Water));
        assert_eq!(
            r.captures(t).expect("fits").sensor_id,
            Some("0101010101010101")
        );
        let t = "meters/water/m-1/volume/raw/extra";
        let r = routes.find(t).expect("route");
        assert_eq!(r.format, Format::Value);
        assert_eq!(r.missing_timestamp, Some(MissingTimestamp::ReceiveTime));
        let c = r.captures(t).expect("fits");
        assert_eq!(
            (c.kind, c.sensor_id, c.metric),
            (Some("water"), Some("m-1"), Some("volume"))
        );
        // The second route took it: the third never sees meters/water/...
        assert!(routes
            .find("meters/water/m-1")
            .expect("route")
            .captures("meters/water/m-1")
            .is_err());
    }

    #[test]
    fn bad_routes_are_refused_naming_the_key() {
        let cases = [
            (
                r#"[[routes]]
filter = "a/#/b""#,
                "routes[0].filter",
            ),
            (
                r#"[[routes]]
filter = "a/#"
template = "a/{sensor}""#,
                "routes[0].template",
            ),
            (
                r#"[[routes]]
filter = "a/#"
template = "a/{rest}/b""#,
                "routes[0].template",
            ),
            (
                r#"[[routes]]
filter = "a/#"
template = "a/{kind}/{kind}""#,
                "routes[0].template",
            ),
            (
                r#"[[routes]]
filter = "a/#"
template = "a/+""#,
                "routes[0].template",
            ),
            (
                r#"[[routes]]
filter = "a/#"
kind = "weather""#,
                "routes[0].kind",
            ),
            (
                r#"[[routes]]
filter = "a/#"
format = "value""#,
                "routes[0].format",
            ),
        ];
        for (text, key) in cases {
            let (k, why) = route(text).expect_err(text);
            assert_eq!(k, key, "{text}: {why}");
            assert!(!why.is_empty());
        }
    }
}
