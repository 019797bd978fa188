//! Sinks: where readings become durable. Each sink runs in its own task, takes pipeline batches
//! in order, coalesces what is queued into one write, retries failures with backoff until they
//! succeed (or the drain deadline passes), and reports the last batch it committed.

pub mod influx;
pub mod line_protocol;
pub mod retry;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::model::{DeadLetter, Kind};
use crate::pipeline::Batch;

/// How a failed write should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network trouble, timeouts, 408, 429, 5xx: retry, the server will come back.
    Transient,
    /// The server refused the data (400, 413, 422, ...).
    Rejected,
    /// Credentials, permissions or a missing bucket (401, 403, 404): an operator must act.
    Config,
}

/// A failed write.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub class: ErrorClass,
    pub message: String,
    /// The server asked to wait this long before the next attempt (`Retry-After` on 429/503).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        SinkError {
            class,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        SinkError::new(ErrorClass::Transient, message)
    }
}

/// A store of readings (and, for SQLite, of dead letters).
pub trait Sink: Send + 'static {
    /// The `sink` label: `sqlite`, `influxdb`.
    fn name(&self) -> &'static str;
    /// Most readings to coalesce into one write.
    fn max_readings(&self) -> usize;
    /// How long to wait for more batches before writing a partial group.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
    /// Whether this sink stores readings (counted in `qala_readings_stored_total`).
    fn stores_readings(&self) -> bool {
        true
    }
    /// Writes every reading (and dead letter, where kept) of `batches`; `Ok` means durable.
    /// `Ok` carries the readings the server refused one by one (after the sink isolated them,
    /// e.g. by splitting a batch InfluxDB answered 400/422), as dead letters with reason
    /// `sink_rejected` and the server's message: everything else of `batches` is stored.
    fn write(
        &mut self,
        batches: &[Arc<Batch>],
    ) -> impl Future<Output = Result<Vec<DeadLetter>, SinkError>> + Send;
}

/// What a sink task reports to the acker and to `/ready`.
#[derive(Debug)]
pub struct SinkProgress {
    pub name: &'static str,
    /// Sequence number of the last batch committed (0: none yet; batches start at 1).
    pub committed: AtomicU64,
    /// The last write succeeded (or none failed yet).
    pub healthy: AtomicBool,
    /// The task has ended: its input closed and everything committed, or the drain was cut.
    pub finished: AtomicBool,
    /// Last error, for `/ready`.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl SinkProgress {
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(SinkProgress {
            name,
            committed: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            finished: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
        })
    }
}

/// Runs one sink until its input closes (and all is committed) or `abort` turns true.
pub async fn run<S: Sink>(
    mut sink: S,
    mut input: mpsc::Receiver<Arc<Batch>>,
    progress: Arc<SinkProgress>,
    wake: Arc<Notify>,
    mut abort: watch::Receiver<bool>,
) {
    let name = sink.name();
    let retries = metrics::counter!("qala_sink_retries_total", "sink" => name);
    let mut group: Vec<Arc<Batch>> = Vec::new();
    'batches: loop {
        group.clear();
        let first = tokio::select! {
            b = input.recv() => b,
            _ = abort.wait_for(|a| *a) => None,
        };
        let Some(first) = first else { break };
        let mut readings = first.readings.len();
        group.push(first);
        let deadline = Instant::now() + sink.linger();
        while readings < sink.max_readings() {
            let next = match input.try_recv() {
                Ok(b) => Some(b),
                Err(mpsc::error::TryRecvError::Empty) if !sink.linger().is_zero() => {
                    tokio::time::timeout_at(deadline, input.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next {
                Some(b) => {
                    readings += b.readings.len();
                    group.push(b);
                }
                None => break,
            }
        }

        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::select! {
                r = sink.write(&group) => r,
                _ = abort.wait_for(|a| *a) => break 'batches,
            };
            match outcome {
                Ok(rejected) => {
                    if !rejected.is_empty() {
                        tracing::error!(
                            sink = name,
                            points = rejected.len(),
                            "the sink refused points; dead-lettered"
                        );
                    }
                    if attempt > 0 {
                        tracing::info!(
                            sink = name,
                            attempts = attempt + 1,
                            "sink write succeeded after retries"
                        );
                    }
                    progress.healthy.store(true, Ordering::Relaxed);
                    if attempt > 0 {
                        if let Ok(mut last) = progress.last_error.lock() {
                            *last = None;
                        }
                    }
                    count_stored(&sink, &group);
                    let last = group.last().map(|b| b.seq).unwrap_or(0);
                    progress.committed.store(last, Ordering::Release);
                    wake.notify_one();
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    retries.increment(1);
                    progress.healthy.store(false, Ordering::Relaxed);
                    if let Ok(mut last) = progress.last_error.lock() {
                        *last = Some(e.message.clone());
                    }
                    let delay = retry::backoff(attempt, rand::random::<f64>());
                    match e.class {
                        ErrorClass::Transient => tracing::warn!(
                            sink = name, attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                            "sink write failed; retrying (messages stay unacked meanwhile)"
                        ),
                        ErrorClass::Rejected | ErrorClass::Config => tracing::error!(
                            sink = name, attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                            "sink refused the write; operator action needed, retrying"
                        ),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = abort.wait_for(|a| *a) => break 'batches,
                    }
                }
            }
        }
    }
    progress.finished.store(true, Ordering::Release);
    wake.notify_one();
}

/// `qala_readings_stored_total{sink, kind}`: once per kind per write, not per reading.
fn count_stored<S: Sink>(sink: &S, group: &[Arc<Batch>]) {
    if !sink.stores_readings() {
        return;
    }
    let mut per_kind: BTreeMap<Kind, u64> = BTreeMap::new();
    for b in group {
        for r in &b.readings {
            *per_kind.entry(r.sensor.kind).or_default() += 1;
        }
    }
    for (kind, n) in per_kind {
        metrics::counter!("qala_readings_stored_total", "sink" => sink.name(), "kind" => kind.as_str())
            .increment(n);
    }
}
