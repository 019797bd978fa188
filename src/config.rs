//! Configuration: built-in defaults < TOML file (`--config`, default `config/default.toml`) <
//! environment (`QALA__SECTION__KEY`). Loading refuses unknown keys, missing required values and
//! bad values, naming the key. Secrets may come from a file (`*_file`) and are masked when shown.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ingest::route::{check_filter, RouteSettings, Routes};
use crate::model::Kind;
use crate::normalize::{catalog, MissingTimestamp, Policy};

/// The default config file, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/default.toml";

/// A config problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("config: {0}")]
    Load(String),
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Everything Qala reads from config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub mqtt: MqttSettings,
    pub broker: BrokerSettings,
    pub sqlite: SqliteSettings,
    pub influxdb: InfluxSettings,
    pub http: HttpSettings,
    pub validation: ValidationSettings,
    pub pipeline: PipelineSettings,
    pub spool: crate::spool::SpoolSettings,
    pub indicators: IndicatorSettings,
    /// `[alerts]` and `[[alerts.rules]]`.
    pub alerts: crate::indicators::alerts::AlertSettings,
    pub registry: crate::registry::RegistrySettings,
    /// `[[routes]]`, in match order; none: the default layout `city/{city}/{district}/{kind}/{sensor_id}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSettings>,
}

/// `[mqtt]`: the broker Qala subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS with rustls).
    pub url: String,
    /// Stable client id: the broker keeps the persistent session under it.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Subscription filters (`+`, `#`, `$share/<group>/...`). Empty (the default): every route's
    /// filter. In the environment: one comma-separated string (`QALA__MQTT__TOPICS=a/#,b/#`).
    #[serde(deserialize_with = "string_or_list")]
    pub topics: Vec<String>,
    /// 0 or 1. QoS 1 with manual acks is the delivery guarantee; 0 gives it up.
    pub qos: u8,
    #[serde(with = "human_duration")]
    pub keep_alive: Duration,
    /// Largest payload accepted, bytes; larger ones are dead-lettered (`too_large`).
    pub max_packet_size: usize,
    /// PEM file of CA certificates for `mqtts://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Upper bound of unacknowledged QoS-1 messages the broker may hand Qala at once (its
    /// window: Mosquitto `max_inflight_messages`, EMQX `max_inflight`). Must be ≥ the broker's.
    pub inflight_window: usize,
    /// Longest wait between reconnect attempts (backoff doubles up to it, with jitter).
    #[serde(with = "human_duration")]
    pub reconnect_max_delay: Duration,
    /// Parallel subscriber sessions in this process. Above 1, each subscribes to every topic
    /// as `$share/{share_group}/{topic}` under client id `{client_id}-{n}`: the broker splits
    /// the messages between them, and each brings its own window of unacked messages.
    pub sessions: usize,
    /// The shared-subscription group of the sessions (when `sessions` > 1).
    pub share_group: String,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "qala-gateway".into(),
            username: None,
            password: None,
            password_file: None,
            topics: Vec::new(),
            qos: 1,
            keep_alive: Duration::from_secs(30),
            max_packet_size: 1 << 20,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            inflight_window: 1024,
            reconnect_max_delay: Duration::from_secs(30),
            sessions: 1,
            share_group: "qala".into(),
        }
    }
}

/// `[broker]`: the embedded rumqttd broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    pub embedded: bool,
    pub listen: String,
    /// Unacked QoS-1 messages per connection the embedded broker allows.
    pub max_inflight: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            embedded: false,
            listen: "127.0.0.1:1883".into(),
            max_inflight: 100,
        }
    }
}

/// How hard SQLite syncs each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    /// fsync the WAL at every commit: an acked message survives power loss.
    Full,
    /// fsync at checkpoints only: survives a crash of Qala, not of the machine.
    Normal,
}

/// `[sqlite]`: the embedded store. Dead letters always go to `path`; readings when `enabled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteSettings {
    pub enabled: bool,
    pub path: PathBuf,
    pub synchronous: SqliteSync,
    /// Most readings written in one transaction.
    pub batch_size: usize,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        SqliteSettings {
            enabled: true,
            path: PathBuf::from("./data/qala.sqlite"),
            synchronous: SqliteSync::Full,
            batch_size: 10_000,
        }
    }
}

/// `[influxdb]`: an InfluxDB v2 write API (InfluxDB 2/3, Cloud, VictoriaMetrics, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxSettings {
    pub enabled: bool,
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Most points in one write.
    pub batch_size: usize,
    /// Longest a reading waits for a batch to fill before it is written (0: write as soon as
    /// the pipeline has nothing more to give). Acks wait for the write, so keep it short.
    #[serde(with = "human_duration")]
    pub flush_interval: Duration,
    /// Per-request timeout.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
}

impl Default for InfluxSettings {
    fn default() -> Self {
        InfluxSettings {
            enabled: false,
            url: String::new(),
            org: String::new(),
            bucket: String::new(),
            token: None,
            token_file: None,
            batch_size: 5_000,
            flush_interval: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[http]`: health, readiness and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// `[validation]`: the timestamp policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    #[serde(with = "human_duration")]
    pub max_future_skew: Duration,
    #[serde(with = "human_duration")]
    pub max_age: Duration,
    pub missing_timestamp: MissingTimestamp,
    /// Physical ranges replacing the catalog's: `"kind.metric" = [min, max]` in canonical units.
    pub ranges: std::collections::BTreeMap<String, [f64; 2]>,
    /// How many recent (sensor, metric, time, value) keys are remembered to drop repeats before
    /// the sinks; 0 turns it off.
    pub dedup_capacity: usize,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        ValidationSettings {
            max_future_skew: Duration::from_secs(300),
            max_age: Duration::from_secs(3650 * 86_400),
            missing_timestamp: MissingTimestamp::Reject,
            ranges: std::collections::BTreeMap::new(),
            dedup_capacity: 100_000,
        }
    }
}

/// `[pipeline]`: batching between ingest and the sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Most messages in one pipeline batch.
    pub batch_size: usize,
    /// Messages buffered between ingest and the batcher (bounded: backpressure beyond it).
    pub queue: usize,
    /// On SIGINT/SIGTERM, how long the sinks may take to flush what was received.
    #[serde(with = "human_duration")]
    pub drain_timeout: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            batch_size: 1_000,
            queue: 4_096,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// `[indicators]`: the engine that turns readings into the standard's indicators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndicatorSettings {
    pub enabled: bool,
    /// The catalog file; unset: the catalog built into the binary (config/indicators.toml).
    pub catalog: Option<PathBuf>,
    /// The cities' offset from UTC, whole hours (`+05:00`: all of Kazakhstan since 1 March 2024).
    pub utc_offset: String,
    /// The watermark trails the newest device time by this much.
    #[serde(with = "human_duration")]
    pub watermark_delay: Duration,
    /// Late data within this of the watermark updates its window, which is emitted again.
    #[serde(with = "human_duration")]
    pub allowed_lateness: Duration,
    /// A city silent this long has its watermark carried on by the wall clock.
    #[serde(with = "human_duration")]
    pub idle_timeout: Duration,
    /// How often the engine's state is saved (and its spool cursor moved).
    #[serde(with = "human_duration")]
    pub checkpoint_interval: Duration,
    /// Publish every value retained at `qala/indicators/...` on the broker.
    pub publish_mqtt: bool,
}

impl Default for IndicatorSettings {
    fn default() -> Self {
        IndicatorSettings {
            enabled: true,
            catalog: None,
            utc_offset: "+05:00".into(),
            watermark_delay: Duration::from_secs(120),
            allowed_lateness: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
            checkpoint_interval: Duration::from_secs(60),
            publish_mqtt: true,
        }
    }
}

impl IndicatorSettings {
    /// The catalog, loaded and validated.
    pub fn load_catalog(&self) -> Result<crate::indicators::catalog::Catalog, ConfigError> {
        use crate::indicators::catalog::Catalog;
        match &self.catalog {
            Some(p) => Catalog::load(p).map_err(|e| key_err("indicators.catalog", e.to_string())),
            None => Catalog::parse(crate::indicators::catalog::BUILTIN)
                .map_err(|e| key_err("indicators.catalog", e.to_string())),
        }
    }

    /// `utc_offset` in whole hours.
    pub fn offset_hours(&self) -> Result<i64, ConfigError> {
        let t = self.utc_offset.trim();
        let bad = || {
            key_err(
                "indicators.utc_offset",
                format!("{t:?}: write it as +HH:MM in whole hours, e.g. \"+05:00\""),
            )
        };
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        if m != "00" || !(0..=14).contains(&h) {
            return Err(bad());
        }
        Ok(sign * h)
    }

    /// The engine's settings.
    pub fn engine(&self) -> crate::indicators::engine::EngineSettings {
        crate::indicators::engine::EngineSettings {
            utc_offset_hours: self.offset_hours().unwrap_or(5),
            watermark_delay: self.watermark_delay,
            allowed_lateness: self.allowed_lateness,
            idle_timeout: self.idle_timeout,
        }
    }
}

impl MqttSettings {
    /// Client id and filters of session `n` (0-based): with one session, as configured; with
    /// several, `{client_id}-{n}` and every filter shared (`$share/{group}/...`) unless it is
    /// already.
    pub fn session(&self, n: usize) -> (String, Vec<String>) {
        if self.sessions <= 1 {
            return (self.client_id.clone(), self.topics.clone());
        }
        let topics = self
            .topics
            .iter()
            .map(|t| {
                if t.starts_with("$share/") {
                    t.clone()
                } else {
                    format!("$share/{}/{t}", self.share_group)
                }
            })
            .collect();
        (format!("{}-{n}", self.client_id), topics)
    }
}

/// A list, or one string of comma-separated items (how a list arrives from the environment).
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(list) => list,
    })
}

/// Durations as humantime text (`"250ms"`, `"30s"`, `"10d"`).
pub mod human_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write it with its unit, e.g. \"250ms\", \"30s\", \"7d\""
            ))
        })
    }
}

impl Settings {
    /// Loads and validates: defaults < file < environment. `path` None means the default file
    /// if it exists.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env = std::env::vars().filter(|(k, _)| k.starts_with("QALA__"));
        Self::load_from(path, env.collect())
    }

    /// As [`Settings::load`], with the environment given (for tests).
    pub fn load_from(
        path: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Load(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                builder = builder.add_source(
                    config::File::from(p)
                        .format(config::FileFormat::Toml)
                        .required(true),
                );
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name(DEFAULT_PATH)
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        let env_map: config::Map<String, String> = env.into_iter().collect();
        builder = builder.add_source(
            config::Environment::with_prefix("QALA")
                .prefix_separator("__")
                .separator("__")
                // Values stay text: a password "007" must not become the number 7. Numbers
                // and booleans are parsed from the text by the fields that expect them.
                .try_parsing(false)
                .source(Some(env_map)),
        );
        let cfg = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        check_known_keys(&cfg)?;
        let mut settings: Settings = cfg.try_deserialize().map_err(map_config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values and resolves secret files. Idempotent.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let m = &mut self.mqtt;
        let url = mqtt_url(&m.url)?;
        if m.client_id.trim().is_empty() {
            return Err(key_err(
                "mqtt.client_id",
                "must not be empty: the broker keeps the session under it",
            ));
        }
        let sp = &self.spool;
        if sp.dir.as_os_str().is_empty() {
            return Err(key_err("spool.dir", "must name a directory"));
        }
        if sp.max_bytes < 1 << 20 {
            return Err(key_err(
                "spool.max_bytes",
                format!("{} is too small: at least 1048576 (1 MiB)", sp.max_bytes),
            ));
        }
        if sp.segment_bytes < 64 << 10 {
            return Err(key_err(
                "spool.segment_bytes",
                format!("{} is too small: at least 65536", sp.segment_bytes),
            ));
        }
        if sp.commit_delay > Duration::from_millis(100) {
            return Err(key_err(
                "spool.commit_delay",
                format!(
                    "{} would hold every ack that long: at most 100ms (default 0)",
                    humantime::format_duration(sp.commit_delay)
                ),
            ));
        }
        let routes = Routes::compile(&self.routes).map_err(|(key, why)| key_err(&key, why))?;
        let m = &mut self.mqtt;
        if m.topics.is_empty() {
            m.topics = routes.subscriptions().to_vec();
        }
        for t in &m.topics {
            check_filter(t).map_err(|why| key_err("mqtt.topics", format!("{t:?} {why}")))?;
        }
        if m.sessions == 0 || m.sessions > 64 {
            return Err(key_err(
                "mqtt.sessions",
                format!("{} is not a session count: 1 to 64", m.sessions),
            ));
        }
        if m.sessions > 1 && (m.share_group.is_empty() || m.share_group.contains(['/', '+', '#'])) {
            return Err(key_err(
                "mqtt.share_group",
                format!(
                    "{:?} cannot name a shared subscription group: non-empty, without / + #",
                    m.share_group
                ),
            ));
        }
        if m.qos > 1 {
            return Err(key_err(
                "mqtt.qos",
                format!(
                    "{} is not supported: use 1 (at-least-once with idempotent writes) or 0",
                    m.qos
                ),
            ));
        }
        if !m.keep_alive.is_zero()
            && (m.keep_alive < Duration::from_secs(5) || m.keep_alive.as_secs() > 65_535)
        {
            return Err(key_err(
                "mqtt.keep_alive",
                "must be 0 (off) or between 5s and 65535s (the protocol's limit)",
            ));
        }
        if !(1024..=268_435_455).contains(&m.max_packet_size) {
            return Err(key_err(
                "mqtt.max_packet_size",
                "must be between 1024 and 268435455 bytes",
            ));
        }
        if !(1..=65_000).contains(&m.inflight_window) {
            return Err(key_err(
                "mqtt.inflight_window",
                "must be between 1 and 65000 (packet ids are 16-bit)",
            ));
        }
        if m.reconnect_max_delay < Duration::from_millis(100) {
            return Err(key_err(
                "mqtt.reconnect_max_delay",
                "must be at least 100ms",
            ));
        }
        resolve_secret(
            &mut m.password,
            &m.password_file,
            "mqtt.password",
            "mqtt.password_file",
        )?;
        if m.password.is_some() && m.username.is_none() {
            return Err(key_err(
                "mqtt.username",
                "is required when a password is set",
            ));
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            return Err(key_err(
                "mqtt.client_key_file",
                "mqtt.client_cert_file and mqtt.client_key_file go together",
            ));
        }
        if m.client_cert_file.is_some() && m.ca_file.is_none() {
            return Err(key_err(
                "mqtt.ca_file",
                "is required with a client certificate: name the CA that signed the broker's certificate",
            ));
        }
        if (m.ca_file.is_some() || m.client_cert_file.is_some()) && !url.tls {
            return Err(key_err(
                "mqtt.url",
                "TLS files are set but the url is mqtt://; use mqtts:// (or remove the files)",
            ));
        }
        for (key, f) in [
            ("mqtt.ca_file", &m.ca_file),
            ("mqtt.client_cert_file", &m.client_cert_file),
            ("mqtt.client_key_file", &m.client_key_file),
        ] {
            if let Some(p) = f {
                if !url.tls {
                    return Err(key_err(key, "is set but mqtt.url is not mqtts://"));
                }
                if !p.is_file() {
                    return Err(key_err(
                        key,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }

        if self.broker.embedded {
            let broker_addr = parse_addr("broker.listen", &self.broker.listen)?;
            let local = matches!(
                url.host.as_str(),
                "127.0.0.1" | "localhost" | "::1" | "[::1]"
            ) || url.host == broker_addr.ip().to_string();
            if url.port != broker_addr.port() || url.tls || !local {
                return Err(key_err(
                    "mqtt.url",
                    format!(
                        "must be mqtt://127.0.0.1:{} when broker.embedded = true (broker.listen = {})",
                        broker_addr.port(),
                        self.broker.listen
                    ),
                ));
            }
            if self.broker.max_inflight == 0 {
                return Err(key_err("broker.max_inflight", "must be at least 1"));
            }
            if self.broker.max_inflight > self.mqtt.inflight_window {
                return Err(key_err(
                    "broker.max_inflight",
                    format!(
                        "{} is more than mqtt.inflight_window ({}): the broker could hand Qala more unacked messages than it makes room for",
                        self.broker.max_inflight, self.mqtt.inflight_window
                    ),
                ));
            }
        }

        if self.sqlite.path.as_os_str().is_empty() {
            return Err(key_err(
                "sqlite.path",
                "must not be empty (dead letters are kept there)",
            ));
        }
        if self.sqlite.batch_size == 0 {
            return Err(key_err("sqlite.batch_size", "must be at least 1"));
        }

        let i = &mut self.influxdb;
        if i.enabled {
            let u = url::Url::parse(&i.url)
                .map_err(|e| key_err("influxdb.url", format!("{:?} is not a URL ({e})", i.url)))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(key_err(
                    "influxdb.url",
                    format!("{:?} must be http:// or https://", i.url),
                ));
            }
            if i.org.is_empty() {
                return Err(key_err(
                    "influxdb.org",
                    "is required when influxdb.enabled = true",
                ));
            }
            if i.bucket.is_empty() {
                return Err(key_err(
                    "influxdb.bucket",
                    "is required when influxdb.enabled = true",
                ));
            }
            resolve_secret(
                &mut i.token,
                &i.token_file,
                "influxdb.token",
                "influxdb.token_file",
            )?;
            if i.token.is_none() {
                return Err(key_err(
                    "influxdb.token",
                    "is required when influxdb.enabled = true (or set influxdb.token_file, or QALA__INFLUXDB__TOKEN)",
                ));
            }
        }
        if i.batch_size == 0 {
            return Err(key_err("influxdb.batch_size", "must be at least 1"));
        }
        if i.timeout.is_zero() {
            return Err(key_err("influxdb.timeout", "must be more than 0"));
        }
        if !self.sqlite.enabled && !self.influxdb.enabled {
            return Err(key_err(
                "sqlite.enabled",
                "no sink would store readings: enable sqlite.enabled or influxdb.enabled",
            ));
        }

        parse_addr("http.listen", &self.http.listen)?;

        if self.pipeline.batch_size == 0 {
            return Err(key_err("pipeline.batch_size", "must be at least 1"));
        }
        for (key, [min, max]) in &self.validation.ranges {
            let full = format!("validation.ranges.{key}");
            range_key(key).map_err(|why| key_err(&full, why))?;
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(key_err(
                    &full,
                    format!(
                        "[{min}, {max}] must be two finite numbers, the first below the second"
                    ),
                ));
            }
        }
        if self.pipeline.queue == 0 {
            return Err(key_err("pipeline.queue", "must be at least 1"));
        }
        self.alerts
            .compile()
            .map_err(|(key, why)| key_err(&key, why))?;
        let ind = &self.indicators;
        ind.offset_hours()?;
        if ind.enabled {
            let catalog = ind.load_catalog()?;
            // Alert rules name indicators (and levels) of the catalog.
            self.alerts
                .check_catalog(|id| catalog.get(id).map(|d| d.level_keys()))
                .map_err(|(key, why)| key_err(&key, why))?;
        }
        if ind.allowed_lateness > Duration::from_secs(7 * 86_400) {
            return Err(key_err(
                "indicators.allowed_lateness",
                "at most 7d: windows stay in memory that long",
            ));
        }
        if ind.checkpoint_interval < Duration::from_secs(1) {
            return Err(key_err("indicators.checkpoint_interval", "at least 1s"));
        }
        if ind.watermark_delay > Duration::from_secs(86_400) {
            return Err(key_err("indicators.watermark_delay", "at most 1d"));
        }
        let every = self.registry.reload_interval;
        if every < Duration::from_millis(100) || every > Duration::from_secs(3600) {
            return Err(key_err(
                "registry.reload_interval",
                format!(
                    "{} is out of range: 100ms to 1h",
                    humantime::format_duration(every)
                ),
            ));
        }
        Ok(())
    }

    /// The validation policy the normaliser applies.
    pub fn policy(&self) -> Policy {
        Policy {
            max_payload_bytes: self.mqtt.max_packet_size,
            max_future_skew_ns: duration_ns(self.validation.max_future_skew),
            max_age_ns: duration_ns(self.validation.max_age),
            missing_timestamp: self.validation.missing_timestamp,
            ranges: self
                .validation
                .ranges
                .iter()
                .filter_map(|(key, [min, max])| {
                    let (kind, def) = range_key(key).ok()?;
                    Some(((kind, def.name), (*min, *max)))
                })
                .collect(),
        }
    }

    /// The routes, compiled (validated at load).
    pub fn routes(&self) -> Routes {
        Routes::compile(&self.routes).unwrap_or_else(|_| Routes::default_layout())
    }

    /// The effective config as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut s = self.clone();
        let mask = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("********".into());
            }
        };
        mask(&mut s.mqtt.password);
        mask(&mut s.influxdb.token);
        // A webhook URL often carries its secret in the path or query: show the origin only.
        if let Some(u) = &mut s.alerts.webhook_url {
            *u = match url::Url::parse(u) {
                Ok(parsed) => format!("{}/********", parsed.origin().ascii_serialization()),
                Err(_) => "********".into(),
            };
        }
        toml::to_string_pretty(&s).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A parsed `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Parses `mqtt://host:port` / `mqtts://host:port`.
pub fn mqtt_url(text: &str) -> Result<MqttUrl, ConfigError> {
    let u = url::Url::parse(text)
        .map_err(|e| key_err("mqtt.url", format!("{text:?} is not a URL ({e})")))?;
    let tls = match u.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => {
            return Err(key_err(
                "mqtt.url",
                format!("scheme {other:?} is not supported (use mqtt:// or mqtts://)"),
            ))
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| key_err("mqtt.url", format!("{text:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if u.path() != "" && u.path() != "/" {
        return Err(key_err(
            "mqtt.url",
            format!("{text:?}: a path is not allowed; put filters in mqtt.topics"),
        ));
    }
    Ok(MqttUrl {
        host,
        port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
    })
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|e| {
        key_err(
            key,
            format!("{text:?} is not an address like 127.0.0.1:8080 ({e})"),
        )
    })
}

/// MQTT 3.1.1 §4.7: `#` last and alone in its level, `+` alone in its level.
/// `"air.pm2_5"` → the kind and the catalog's metric.
fn range_key(key: &str) -> Result<(Kind, &'static catalog::MetricDef), String> {
    let (kind, metric) = key
        .split_once('.')
        .ok_or_else(|| format!("{key:?} is not \"kind.metric\" (e.g. \"air.pm2_5\")"))?;
    let kind: Kind = kind
        .parse()
        .map_err(|()| format!("{kind:?} is not a kind (known: {})", Kind::known_list()))?;
    let def = catalog::lookup(kind, metric).ok_or_else(|| {
        let known: Vec<&str> = catalog::metrics_of(kind).iter().map(|d| d.name).collect();
        format!(
            "{metric:?} is not a metric of {kind} (known: {})",
            known.join(", ")
        )
    })?;
    Ok((kind, def))
}

fn resolve_secret(
    value: &mut Option<String>,
    file: &Option<PathBuf>,
    key: &str,
    file_key: &str,
) -> Result<(), ConfigError> {
    match (value.as_ref(), file) {
        (Some(_), Some(_)) => Err(key_err(
            file_key,
            format!("set only one of {key} and {file_key}"),
        )),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| key_err(file_key, format!("cannot read {}: {e}", p.display())))?;
            let secret = text.trim_end_matches(['\n', '\r']).to_owned();
            if secret.is_empty() {
                return Err(key_err(file_key, format!("{} is empty", p.display())));
            }
            *value = Some(secret);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Refuses keys the schema does not have, naming the full path (serde's own message names only
/// the field, not its section).
fn check_known_keys(cfg: &config::Config) -> Result<(), ConfigError> {
    let schema = serde_json::to_value(Settings::default())
        .map_err(|e| ConfigError::Load(format!("schema: {e}")))?;
    let given: config::Map<String, config::Value> = cfg
        .clone()
        .try_deserialize()
        .map_err(|e| ConfigError::Load(e.to_string()))?;
    for (section, value) in given {
        if section == "routes" {
            // An array of tables: serde refuses unknown keys in each route, naming the key.
            continue;
        }
        let Some(section_schema) = schema.get(&section) else {
            let known: BTreeSet<&str> = schema
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(key_err(
                &section,
                format!(
                    "unknown section (known: {})",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let Ok(table) = value.clone().into_table() else {
            return Err(key_err(&section, "must be a table ([section])"));
        };
        let known: BTreeSet<&str> = section_schema
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for key in table.keys() {
            if !known.contains(key.as_str()) {
                return Err(key_err(
                    &format!("{section}.{key}"),
                    format!(
                        "unknown key (known in [{section}]: {})",
                        known.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The config crate names the key in most of its errors; keep its words.
fn map_config_error(e: config::ConfigError) -> ConfigError {
    match &e {
        config::ConfigError::At {
            key: Some(key),
            error,
            ..
        } => key_err(key, error.to_string()),
        config::ConfigError::Type { key: Some(key), .. } => key_err(key, e.to_string()),
        _ => ConfigError::Load(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(toml.as_bytes()).expect("write");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(Some(f.path()), env)
    }

    #[test]
    fn indicator_settings_are_checked_naming_the_key() {
        let s = load_str("", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.indicators.offset_hours().ok(), Some(5));
        assert!(s.indicators.enabled);
        let cases = [
            (
                "[indicators]\nutc_offset = \"+05:30\"\n",
                "indicators.utc_offset",
            ),
            (
                "[indicators]\nutc_offset = \"UTC+5\"\n",
                "indicators.utc_offset",
            ),
            (
                "[indicators]\nallowed_lateness = \"8d\"\n",
                "indicators.allowed_lateness",
            ),
            (
                "[indicators]\ncheckpoint_interval = \"10ms\"\n",
                "indicators.checkpoint_interval",
            ),
            (
                "[indicators]\ncatalog = \"/nonexistent/ind.toml\"\n",
                "indicators.catalog",
            ),
            ("[indicators]\nwindow = \"1h\"\n", "indicators.window"),
            (
                "[[alerts.rules]]\nname = \"x\"\nindicator = \"no_such\"\nabove = 1.0\n",
                "alerts.rules[0].indicator",
            ),
        ];
        for (toml, key) in cases {
            let e = load_str(toml, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(&format!("`{key}`")), "{toml}: {e}");
        }
        let west = load_str("[indicators]\nutc_offset = \"-03:00\"\n", &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(west.indicators.engine().utc_offset_hours, -3);
    }

    fn err_of(toml: &str, env: &[(&str, &str)]) -> String {
        load_str(toml, env)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn defaults_validate() {
        let s = load_str("", &[]).expect("defaults are valid");
        assert_eq!(s.mqtt.topics, vec!["city/#"]);
        assert_eq!(s.mqtt.qos, 1);
        assert!(s.sqlite.enabled);
    }

    #[test]
    fn registry_section_takes_the_policy_and_names_bad_keys() {
        use crate::registry::Unregistered;
        assert_eq!(
            load_str("", &[]).expect("defaults").registry.unregistered,
            Unregistered::Accept
        );
        let s = load_str(
            "[registry]\nunregistered = \"dead_letter\"\nreload_interval = \"500ms\"\n",
            &[],
        )
        .expect("valid");
        assert_eq!(s.registry.unregistered, Unregistered::DeadLetter);
        assert_eq!(s.registry.reload_interval, Duration::from_millis(500));
        let s = load_str("", &[("QALA__REGISTRY__UNREGISTERED", "dead_letter")]).expect("env");
        assert_eq!(s.registry.unregistered, Unregistered::DeadLetter);
        let e = err_of("[registry]\nunregistered = \"drop\"\n", &[]);
        assert!(
            e.contains("registry.unregistered") || e.contains("unregistered"),
            "{e}"
        );
        let e = err_of("[registry]\nreload_interval = \"10ms\"\n", &[]);
        assert!(e.contains("registry.reload_interval"), "{e}");
        let e = err_of("[registry]\npolicy = \"accept\"\n", &[]);
        assert!(e.contains("registry.policy"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load_str(
            "[influxdb]\nenabled = true\nurl = \"http://db:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"from-file\"\n",
            &[
                ("QALA__INFLUXDB__URL", "http://other:8086"),
                ("QALA__INFLUXDB__TOKEN", "from-env"),
                ("QALA__MQTT__TOPICS", "city/#,tele/+/SENSOR"),
                ("QALA__INFLUXDB__BATCH_SIZE", "250"),
                ("QALA__INFLUXDB__FLUSH_INTERVAL", "50ms"),
            ],
        )
        .expect("valid");
        assert_eq!(s.influxdb.url, "http://other:8086");
        assert_eq!(s.influxdb.token.as_deref(), Some("from-env"));
        assert_eq!(s.influxdb.batch_size, 250);
        assert_eq!(s.influxdb.flush_interval, Duration::from_millis(50));
        assert_eq!(s.mqtt.topics, vec!["city/#", "tele/+/SENSOR"]);
    }

    #[test]
    fn environment_text_stays_text_and_numbers_still_parse() {
        let s = load_str(
            "",
            &[
                ("QALA__MQTT__USERNAME", "0042"),
                ("QALA__MQTT__PASSWORD", "007"),
                ("QALA__MQTT__QOS", "0"),
                ("QALA__MQTT__TOPICS", "meters/#"),
                ("QALA__BROKER__EMBEDDED", "false"),
            ],
        )
        .expect("valid");
        assert_eq!(s.mqtt.username.as_deref(), Some("0042"));
        assert_eq!(s.mqtt.password.as_deref(), Some("007"));
        assert_eq!(s.mqtt.qos, 0);
        assert_eq!(s.mqtt.topics, vec!["meters/#"]);
        assert!(!s.broker.embedded);
        let e = err_of("", &[("QALA__MQTT__QOS", "one")]);
        assert!(e.contains("mqtt.qos"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_by_full_path() {
        let e = err_of("[mqtt]\npasword = \"x\"\n", &[]);
        assert!(
            e.contains("`mqtt.pasword`") && e.contains("unknown key"),
            "{e}"
        );
        let e = err_of("[mqqt]\nurl = \"x\"\n", &[]);
        assert!(e.contains("`mqqt`") && e.contains("unknown section"), "{e}");
        let e = err_of("", &[("QALA__HTTP__LISTNE", "127.0.0.1:1")]);
        assert!(e.contains("`http.listne`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("[mqtt]\nqos = 2\n", "`mqtt.qos`"),
            ("[mqtt]\nqos = \"high\"\n", "mqtt.qos"),
            ("[mqtt]\nurl = \"http://x\"\n", "`mqtt.url`"),
            ("[mqtt]\ntopics = [\"a/#/b\"]\n", "`mqtt.topics`"),
            ("[mqtt]\nkeep_alive = \"2s\"\n", "`mqtt.keep_alive`"),
            ("[mqtt]\nkeep_alive = \"70000s\"\n", "`mqtt.keep_alive`"),
            ("[mqtt]\ninflight_window = 10\n[broker]\nembedded = true\n", "`broker.max_inflight`"),
            ("[mqtt]\nurl = \"mqtt://10.0.0.1:1883\"\n[broker]\nembedded = true\n", "`mqtt.url`"),
            ("[mqtt]\nkeep_alive = \"soon\"\n", "mqtt.keep_alive"),
            ("[http]\nlisten = \"localhost\"\n", "`http.listen`"),
            ("[influxdb]\nenabled = true\nurl = \"http://x:8086\"\norg = \"o\"\nbucket = \"b\"\n", "`influxdb.token`"),
            ("[influxdb]\nenabled = true\nurl = \"http://x:8086\"\nbucket = \"b\"\ntoken = \"t\"\n", "`influxdb.org`"),
            ("[sqlite]\nenabled = false\n", "`sqlite.enabled`"),
            ("[sqlite]\nsynchronous = \"sometimes\"\n", "sqlite.synchronous"),
            ("[mqtt]\npassword = \"p\"\n", "`mqtt.username`"),
            ("[broker]\nembedded = true\nlisten = \"127.0.0.1:1999\"\n", "`mqtt.url`"),
        ];
        for (toml, key) in cases {
            let e = err_of(toml, &[]);
            assert!(e.contains(key), "{toml:?}: {e:?} does not name {key}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_are_masked() {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        writeln!(f, "s3cret").expect("write");
        let toml = format!(
            "[influxdb]\nenabled = true\nurl = \"http://x:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = {:?}\n",
            f.path()
        );
        let s = load_str(&toml, &[]).expect("valid");
        assert_eq!(s.influxdb.token.as_deref(), Some("s3cret"));
        let shown = s.to_masked_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("token = \"********\""), "{shown}");
        let hook = load_str(
            "[alerts]\nwebhook_url = \"https://hooks.example.kz/services/T0/B0/s3cretpath?key=k3y\"\n",
            &[],
        )
        .expect("valid");
        let shown_hook = hook.to_masked_toml();
        assert!(
            !shown_hook.contains("s3cret") && !shown_hook.contains("k3y"),
            "{shown_hook}"
        );
        assert!(
            shown_hook.contains("webhook_url = \"https://hooks.example.kz/********\""),
            "{shown_hook}"
        );
        let e = err_of(&format!("{toml}token = \"t\"\n"), &[]);
        assert!(
            e.contains("set only one of influxdb.token and influxdb.token_file"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Settings::load_from(Some(Path::new("/nonexistent/q.toml")), vec![])
            .expect_err("missing");
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let s = Settings::load_from(Some(&root.join("config/default.toml")), vec![])
            .expect("default.toml");
        assert!(s.broker.embedded && s.sqlite.enabled && !s.influxdb.enabled);
        assert_eq!(s.http.listen, "127.0.0.1:8080");

        // The production example points at secret files; stand in for them.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text =
            std::fs::read_to_string(root.join("config/production.example.toml")).expect("read");
        for (path, content) in [
            ("/run/secrets/qala_mqtt_password", "pw"),
            ("/run/secrets/qala_influx_token", "tok"),
            ("/etc/qala/ca.pem", "-----BEGIN CERTIFICATE-----"),
        ] {
            let stand_in = dir.path().join(path.rsplit('/').next().unwrap_or("f"));
            std::fs::write(&stand_in, content).expect("write");
            text = text.replace(path, &stand_in.display().to_string());
        }
        let prod = dir.path().join("prod.toml");
        std::fs::write(&prod, text).expect("write");
        let s = Settings::load_from(Some(&prod), vec![]).expect("production.example.toml");
        assert_eq!(s.mqtt.password.as_deref(), Some("pw"));
        assert_eq!(s.influxdb.token.as_deref(), Some("tok"));
        assert!(mqtt_url(&s.mqtt.url).expect("url").tls);

        // The routes example loads on its own; its filters become the subscriptions.
        let s = Settings::load_from(Some(&root.join("config/routes.example.toml")), vec![])
            .expect("routes.example.toml");
        assert_eq!(s.routes.len(), 6);
        assert_eq!(
            s.mqtt.topics,
            [
                "city/#",
                "application/+/device/+/event/up",
                "tele/+/SENSOR",
                "v1/devices/+/telemetry",
                "lp/+",
                "plain/#"
            ]
        );
    }

    #[test]
    fn route_errors_name_the_route_and_key() {
        let e = err_of(
            "[[routes]]\nfilter = \"a/#\"\ntemplate = \"a/{nope}\"\n",
            &[],
        );
        assert!(e.contains("`routes[0].template`"), "{e}");
        let e = err_of(
            "[[routes]]\nfilter = \"a/#\"\nkind = \"air\"\nfromat = \"json\"\n",
            &[],
        );
        assert!(e.contains("fromat"), "{e}");
        let e = err_of("[validation.ranges]\n\"air.pm25\" = [0, 10]\n", &[]);
        assert!(
            e.contains("`validation.ranges.air.pm25`") && e.contains("pm2_5"),
            "{e}"
        );
        let e = err_of("[validation.ranges]\n\"air.pm2_5\" = [10, 0]\n", &[]);
        assert!(e.contains("validation.ranges.air.pm2_5"), "{e}");
        let s = load_str("[validation.ranges]\n\"air.pm2_5\" = [0, 500]\n", &[]).expect("valid");
        let p = s.policy();
        let def = catalog::lookup(Kind::Air, "pm2_5").expect("pm2_5");
        assert_eq!(p.range(Kind::Air, def), (0.0, 500.0));
    }

    #[test]
    fn filters_follow_mqtt_rules() {
        for ok in ["city/#", "#", "city/+/+/air/+", "$share/qala/city/#"] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/#/b", "a/b#", "a/+b", "$share//x", "$share/g"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
