//! The gateway assembled: embedded broker (optional), sinks, acker, batcher, MQTT session and
//! HTTP, started in that order and stopped in reverse by a designed drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::broker::{self, BrokerError, EmbeddedBroker};
use crate::config::{ConfigError, Settings};
use crate::indicators::alerts::{AlertHandle, AlertOutputs, AlertSender, Alerts, PublishFn};
use crate::indicators::publish::Publisher;
use crate::indicators::{
    self,
    run::{LatestStore, Outlet, RunSettings},
};
use crate::ingest::mqtt::{self, Phase, SessionHandle};
use crate::ingest::AckToken;
use crate::normalize::Normaliser;
use crate::pipeline::{self, Batch};
use crate::registry::{self, Intake, LastSeen, Registry, RegistryError, RegistryHandle};
use crate::sink::influx::InfluxSink;
use crate::sink::sqlite::SqliteSink;
use crate::sink::{self, SinkError, SinkProgress};
use crate::spool::Spool;
use crate::telemetry;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("spool.dir {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
    #[error("device registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("http.listen {addr}: {source}")]
    Http {
        addr: String,
        source: std::io::Error,
    },
}

/// The indicator engine's name as a spool reader.
const INDICATORS: &str = "indicators";

/// Batches queued for the spool writer before the batcher waits (backpressure).
const SPOOL_QUEUE: usize = 8;
/// Committed batches' acks queued for the acker.
const ACK_QUEUE: usize = 64;

/// A running gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    sqlite_path: std::path::PathBuf,
    phase: watch::Sender<Phase>,
    abort: watch::Sender<bool>,
    sessions: Vec<SessionHandle>,
    session_tasks: Vec<JoinHandle<()>>,
    batcher: JoinHandle<()>,
    spool_writer: JoinHandle<()>,
    acker: JoinHandle<()>,
    sink_tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    upkeep: JoinHandle<()>,
    alerts: Option<AlertHandle>,
    publisher: Option<(Publisher, JoinHandle<()>)>,
    intake: Intake,
    registry_reloader: JoinHandle<()>,
    drain_timeout: Duration,
    _broker: Option<EmbeddedBroker>,
}

impl Gateway {
    /// Starts everything; returns once the HTTP server listens (the broker may still be
    /// connecting: `/ready` tells).
    pub async fn start(settings: Settings) -> Result<Gateway, StartError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prom = telemetry::metrics_handle();

        let embedded = if settings.broker.embedded {
            let addr: SocketAddr =
                settings
                    .broker
                    .listen
                    .parse()
                    .map_err(|e| ConfigError::Key {
                        key: "broker.listen".into(),
                        message: format!("{e}"),
                    })?;
            let max_payload = settings.mqtt.max_packet_size.saturating_mul(4).max(1 << 20);
            let max_inflight = settings.broker.max_inflight;
            Some(
                tokio::task::spawn_blocking(move || broker::start(addr, max_inflight, max_payload))
                    .await
                    .map_err(|e| BrokerError::Thread(std::io::Error::other(e)))??,
            )
        } else {
            None
        };

        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (abort_tx, abort_rx) = watch::channel(false);
        let pipeline_alive = Arc::new(AtomicBool::new(true));

        // Sinks: SQLite always (dead letters; readings when enabled), InfluxDB when enabled.
        let sqlite = SqliteSink::start(&settings.sqlite)?;
        let sqlite_path = sqlite.path().to_path_buf();
        let influx = if settings.influxdb.enabled {
            Some(InfluxSink::new(&settings.influxdb)?)
        } else {
            None
        };
        // The device registry, from the same database; reloaded when its table changes.
        let intake = Intake {
            registry: RegistryHandle::new(Registry::load(&sqlite_path)?),
            seen: Arc::new(LastSeen::new()),
            policy: settings.registry.unregistered,
        };
        let loaded = intake.registry.current();
        tracing::info!(devices = loaded.len(), policy = ?intake.policy, "device registry loaded");
        metrics::gauge!("qala_registry_devices").set(loaded.len() as f64);
        registry::store::warn_if_refusing_all(&loaded, intake.policy);
        drop(loaded);
        let registry_reloader = tokio::spawn(registry::store::run_reloader(
            sqlite_path.clone(),
            intake.registry.clone(),
            settings.registry.reload_interval,
            intake.policy,
        ));
        let mut names = vec!["sqlite"];
        if influx.is_some() {
            names.push("influxdb");
        }
        // The indicator engine reads the spool like a sink (its own cursor).
        let catalog = if settings.indicators.enabled {
            names.push(INDICATORS);
            Some(Arc::new(settings.indicators.load_catalog()?))
        } else {
            None
        };

        // The spool, with each sink's cursor: sinks resume where they stopped.
        let spool = Spool::open(&settings.spool, &names).map_err(|e| StartError::Spool {
            dir: settings.spool.dir.display().to_string(),
            source: e,
        })?;
        let progress: Vec<Arc<SinkProgress>> = names
            .iter()
            .zip(&spool.cursors)
            .map(|(n, c)| SinkProgress::starting_at(n, *c))
            .collect();
        let (batches_tx, batches_rx) = mpsc::channel::<Batch>(SPOOL_QUEUE);
        let (acks_tx, acks_rx) = mpsc::channel::<Vec<AckToken>>(ACK_QUEUE);
        let (spool, spool_writer) = spool.start(batches_rx, acks_tx, progress.clone());
        let spool_writer = supervise(
            "spool writer",
            spool_writer,
            phase_rx.clone(),
            pipeline_alive.clone(),
        );
        let mut sink_tasks = vec![supervise(
            "sqlite sink",
            sink::run(
                sqlite,
                spool.reader("sqlite", progress[0].committed.load(Ordering::Acquire)),
                progress[0].clone(),
                abort_rx.clone(),
            ),
            phase_rx.clone(),
            pipeline_alive.clone(),
        )];
        if let Some(influx) = influx {
            sink_tasks.push(supervise(
                "influxdb sink",
                sink::run(
                    influx,
                    spool.reader("influxdb", progress[1].committed.load(Ordering::Acquire)),
                    progress[1].clone(),
                    abort_rx.clone(),
                ),
                phase_rx.clone(),
                pipeline_alive.clone(),
            ));
        }
        // Retained values (and alert events) on the broker, through their own session.
        let publisher =
            if catalog.is_some() && (settings.indicators.publish_mqtt || settings.alerts.mqtt) {
                Some(indicators::publish::spawn(&settings.mqtt)?)
            } else {
                None
            };
        let alert_outputs = if catalog.is_some() && !settings.alerts.rules().is_empty() {
            let publish: Option<PublishFn> = publisher
                .as_ref()
                .filter(|_| settings.alerts.mqtt)
                .map(|(p, _)| {
                    let p = p.clone();
                    Arc::new(move |topic, payload, retain| p.publish(topic, payload, retain))
                        as PublishFn
                });
            Some(
                AlertOutputs::new(&settings.alerts, publish)
                    .map_err(|e| ConfigError::Key {
                        key: "alerts".into(),
                        message: e.to_string(),
                    })?
                    .start(),
            )
        } else {
            None
        };
        let latest = Arc::new(LatestStore::default());
        let api_catalog = catalog.clone();
        if let Some(catalog) = catalog {
            let at = names.iter().position(|n| *n == INDICATORS).unwrap_or(0);
            let engine_progress = progress[at].clone();
            let reader = spool.reader(
                INDICATORS,
                engine_progress.committed.load(Ordering::Acquire),
            );
            let outlet = ValueOutlet {
                alerts: Alerts::new(settings.alerts.rules()),
                alert_tx: alert_outputs.as_ref().map(|h| h.sender()),
                publisher: publisher
                    .as_ref()
                    .filter(|_| settings.indicators.publish_mqtt)
                    .map(|(p, _)| p.clone()),
            };
            sink_tasks.push(supervise(
                "indicator engine",
                indicators::run::run(
                    catalog,
                    RunSettings {
                        engine: settings.indicators.engine(),
                        checkpoint_interval: settings.indicators.checkpoint_interval,
                        spool_dir: settings.spool.dir.clone(),
                    },
                    intake.registry.clone(),
                    reader,
                    engine_progress,
                    latest.clone(),
                    outlet,
                    abort_rx.clone(),
                ),
                phase_rx.clone(),
                pipeline_alive.clone(),
            ));
        }
        // The readers hold the way back into the spool; the writer ends once they have ended.
        drop(spool);

        let (deliveries_tx, deliveries_rx) = mpsc::channel(settings.pipeline.queue);
        let mut sessions = Vec::new();
        let mut session_tasks = Vec::new();
        for n in 0..settings.mqtt.sessions {
            let (session, task) =
                mqtt::spawn(n, &settings.mqtt, deliveries_tx.clone(), phase_rx.clone())?;
            sessions.push(session);
            session_tasks.push(task);
        }
        drop(deliveries_tx);

        let acker = supervise(
            "acker",
            pipeline::run_acker(acks_rx, sessions.clone(), abort_rx.clone()),
            phase_rx.clone(),
            pipeline_alive.clone(),
        );
        let batcher = supervise(
            "batcher",
            pipeline::run_batcher(
                deliveries_rx,
                Normaliser::new(
                    settings.routes(),
                    settings.policy(),
                    settings.validation.dedup_capacity,
                ),
                settings.pipeline.batch_size,
                batches_tx,
                phase_rx.clone(),
                abort_rx.clone(),
                intake.clone(),
            ),
            phase_rx.clone(),
            pipeline_alive.clone(),
        );
        // The histogram's summary windows and idle series are trimmed here, not only when
        // somebody scrapes /metrics (unscraped, they would grow without bound).
        let upkeep = {
            let prom = prom.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    prom.run_upkeep();
                }
            })
        };

        let http_addr: SocketAddr = settings.http.listen.parse().map_err(|e| ConfigError::Key {
            key: "http.listen".into(),
            message: format!("{e}"),
        })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = ApiState {
            prom,
            sessions: sessions.clone(),
            sinks: progress,
            pipeline_alive,
            indicators: latest,
            catalog: api_catalog,
            registry: intake.registry.clone(),
            last_seen: intake.seen.clone(),
        };
        let (http_addr, http) = api::serve(http_addr, state, async {
            let _ = stop_rx.await;
        })
        .await
        .map_err(|source| StartError::Http {
            addr: settings.http.listen.clone(),
            source,
        })?;
        tracing::info!(%http_addr, mqtt = %settings.mqtt.url, topics = ?settings.mqtt.topics, sessions = settings.mqtt.sessions, "qala gateway started");

        Ok(Gateway {
            http_addr,
            sqlite_path,
            phase: phase_tx,
            abort: abort_tx,
            sessions,
            session_tasks,
            batcher,
            spool_writer,
            acker,
            sink_tasks,
            http,
            http_stop: Some(stop_tx),
            upkeep,
            alerts: alert_outputs,
            publisher,
            intake,
            registry_reloader,
            drain_timeout: settings.pipeline.drain_timeout,
            _broker: embedded,
        })
    }

    /// Every session is connected and its subscriptions granted.
    pub fn is_taking_messages(&self) -> bool {
        self.sessions.iter().all(SessionHandle::is_taking_messages)
    }

    /// Waits up to `timeout` for [`Gateway::is_taking_messages`].
    pub async fn wait_taking_messages(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_taking_messages() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Where `/health`, `/ready` and `/metrics` answer.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The device registry in force (reloaded when its table changes): for the indicator engine.
    pub fn registry(&self) -> RegistryHandle {
        self.intake.registry.clone()
    }

    /// Last seen of every sensor that reported since the start.
    pub fn last_seen(&self) -> Arc<LastSeen> {
        self.intake.seen.clone()
    }

    /// The SQLite database (dead letters, and readings when enabled).
    pub fn sqlite_path(&self) -> &std::path::Path {
        &self.sqlite_path
    }

    /// Drains: stop taking messages; spool and ack what was received; let the sinks write what
    /// the spool holds, all within the drain timeout; then disconnect. What the sinks did not
    /// write by then stays in the spool for the next start; what was not spooled stays unacked
    /// and the broker redelivers it.
    pub async fn shutdown(mut self) {
        tracing::info!(timeout = ?self.drain_timeout, "draining");
        let _ = self.phase.send(Phase::Draining);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            let _ = (&mut self.batcher).await;
            let _ = (&mut self.acker).await;
            for t in self.sink_tasks.iter_mut() {
                let _ = t.await;
            }
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                "drain timeout: what the sinks did not write stays in the spool for the next start"
            );
        }
        let _ = self.abort.send(true);
        join(&mut self.batcher).await;
        join(&mut self.acker).await;
        for t in self.sink_tasks.iter_mut() {
            join(t).await;
        }
        join(&mut self.spool_writer).await;
        if let Some(alerts) = self.alerts.take() {
            // The engine (and its senders) has ended: deliver what is queued, briefly.
            alerts.close(Duration::from_secs(2)).await;
        }
        if let Some((publisher, task)) = self.publisher.take() {
            let left = publisher.close(Duration::from_secs(2)).await;
            if left > 0 {
                tracing::warn!(
                    left,
                    "retained indicator values not published before stopping"
                );
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let _ = self.phase.send(Phase::Disconnect);
        for s in &self.sessions {
            let _ = s.client.try_disconnect();
        }
        for t in self.session_tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("an MQTT session did not disconnect within 5 s");
            }
        }
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.http).await;
        self.upkeep.abort();
        self.registry_reloader.abort();
        tracing::info!("stopped");
    }
}

/// Where the engine's values go once durable: alert rules (and their outputs).
struct ValueOutlet {
    alerts: Alerts,
    alert_tx: Option<AlertSender>,
    publisher: Option<Publisher>,
}

impl Outlet for ValueOutlet {
    fn values(&mut self, values: &[crate::indicators::IndicatorValue]) {
        if let Some(p) = &self.publisher {
            p.offer(values);
        }
        if let Some(tx) = &self.alert_tx {
            for v in values {
                tx.send_all(self.alerts.on_value(v));
            }
        }
    }

    fn staleness(
        &mut self,
        registry: &Registry,
        last_seen: &dyn Fn(&str) -> Option<i64>,
        now_ns: i64,
    ) {
        if let (Some(tx), true) = (&self.alert_tx, self.alerts.has_stale_rules()) {
            let sensors = registry
                .iter()
                .map(|s| (s.as_ref(), last_seen(&s.sensor_id)));
            tx.send_all(self.alerts.on_staleness(sensors, now_ns));
        }
    }
}

/// Waits for a task unless it has ended (a finished handle may have been awaited already, and
/// must not be polled again).
async fn join(task: &mut JoinHandle<()>) {
    if !task.is_finished() {
        let _ = task.await;
    }
}

/// Spawns a pipeline task. If it ends while the gateway is still running (a panic, or an input
/// closed by another task's end), ingestion has stopped: that is logged as an error and
/// `/ready` turns false, so an orchestrator restarts the process (unacked messages come back).
fn supervise<F>(
    name: &'static str,
    task: F,
    phase: watch::Receiver<Phase>,
    alive: Arc<AtomicBool>,
) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let inner = tokio::spawn(task);
    tokio::spawn(async move {
        let outcome = inner.await;
        let running = *phase.borrow() == Phase::Running;
        match outcome {
            Err(e) if e.is_panic() => {
                alive.store(false, Ordering::Release);
                tracing::error!(
                    task = name,
                    "pipeline task panicked; ingestion has stopped, /ready is false"
                );
            }
            _ if running => {
                alive.store(false, Ordering::Release);
                tracing::error!(
                    task = name,
                    "pipeline task ended while running; ingestion has stopped, /ready is false"
                );
            }
            _ => {}
        }
    })
}
