//! The gateway assembled: embedded broker (optional), sinks, acker, batcher, MQTT session and
//! HTTP, started in that order and stopped in reverse by a designed drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::broker::{self, BrokerError, EmbeddedBroker};
use crate::config::{ConfigError, Settings};
use crate::ingest::mqtt::{self, Phase, SessionHandle};
use crate::normalize::Normaliser;
use crate::pipeline::{self, Batch};
use crate::sink::influx::InfluxSink;
use crate::sink::sqlite::SqliteSink;
use crate::sink::{self, SinkError, SinkProgress};
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
    #[error("http.listen {addr}: {source}")]
    Http {
        addr: String,
        source: std::io::Error,
    },
}

/// Batches queued per sink before the batcher waits (backpressure).
const SINK_QUEUE: usize = 8;

/// A running gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    sqlite_path: std::path::PathBuf,
    phase: watch::Sender<Phase>,
    abort: watch::Sender<bool>,
    sessions: Vec<SessionHandle>,
    session_tasks: Vec<JoinHandle<()>>,
    batcher: JoinHandle<()>,
    acker: JoinHandle<()>,
    sink_tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    upkeep: JoinHandle<()>,
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
        let wake = Arc::new(Notify::new());
        let pipeline_alive = Arc::new(AtomicBool::new(true));

        // Sinks: SQLite always (dead letters; readings when enabled), InfluxDB when enabled.
        let mut sink_inputs = Vec::new();
        let mut progress = Vec::new();
        let mut sink_tasks = Vec::new();
        let sqlite = SqliteSink::start(&settings.sqlite)?;
        let sqlite_path = sqlite.path().to_path_buf();
        {
            let (tx, rx) = mpsc::channel::<Arc<Batch>>(SINK_QUEUE);
            let p = SinkProgress::new("sqlite");
            sink_tasks.push(supervise(
                "sqlite sink",
                sink::run(sqlite, rx, p.clone(), wake.clone(), abort_rx.clone()),
                phase_rx.clone(),
                pipeline_alive.clone(),
            ));
            sink_inputs.push(tx);
            progress.push(p);
        }
        if settings.influxdb.enabled {
            let influx = InfluxSink::new(&settings.influxdb)?;
            let (tx, rx) = mpsc::channel::<Arc<Batch>>(SINK_QUEUE);
            let p = SinkProgress::new("influxdb");
            sink_tasks.push(supervise(
                "influxdb sink",
                sink::run(influx, rx, p.clone(), wake.clone(), abort_rx.clone()),
                phase_rx.clone(),
                pipeline_alive.clone(),
            ));
            sink_inputs.push(tx);
            progress.push(p);
        }

        let (deliveries_tx, deliveries_rx) = mpsc::channel(settings.pipeline.queue);
        let (session, session_task) = mqtt::spawn(
            0,
            &settings.mqtt,
            settings.mqtt.client_id.clone(),
            deliveries_tx,
            phase_rx.clone(),
        )?;
        let sessions = vec![session];

        let (acker_tx, acker_rx) = mpsc::channel::<Arc<Batch>>(SINK_QUEUE * 4);
        let acker = supervise(
            "acker",
            pipeline::run_acker(
                acker_rx,
                progress.clone(),
                wake.clone(),
                sessions.clone(),
                abort_rx.clone(),
            ),
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
                sink_inputs,
                acker_tx,
                phase_rx.clone(),
                abort_rx.clone(),
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
        };
        let (http_addr, http) = api::serve(http_addr, state, async {
            let _ = stop_rx.await;
        })
        .await
        .map_err(|source| StartError::Http {
            addr: settings.http.listen.clone(),
            source,
        })?;
        tracing::info!(%http_addr, mqtt = %settings.mqtt.url, topics = ?settings.mqtt.topics, "qala gateway started");

        Ok(Gateway {
            http_addr,
            sqlite_path,
            phase: phase_tx,
            abort: abort_tx,
            sessions,
            session_tasks: vec![session_task],
            batcher,
            acker,
            sink_tasks,
            http,
            http_stop: Some(stop_tx),
            upkeep,
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

    /// The SQLite database (dead letters, and readings when enabled).
    pub fn sqlite_path(&self) -> &std::path::Path {
        &self.sqlite_path
    }

    /// Drains: stop taking messages, write what was received and ack what was written, all
    /// within the drain timeout; then disconnect. Whatever was not written by then stays
    /// unacked and the broker redelivers it.
    pub async fn shutdown(mut self) {
        tracing::info!(timeout = ?self.drain_timeout, "draining");
        let _ = self.phase.send(Phase::Draining);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            let _ = (&mut self.batcher).await;
            let _ = (&mut self.acker).await;
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!("drain timeout: sinks did not finish; unwritten messages stay unacked");
            let _ = self.abort.send(true);
            let _ = (&mut self.batcher).await;
            let _ = (&mut self.acker).await;
        }
        // The batcher has closed their inputs; after an abort they stop at once.
        let _ = self.abort.send(true);
        for t in self.sink_tasks.drain(..) {
            let _ = t.await;
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
        tracing::info!("stopped");
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
