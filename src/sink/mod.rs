//! Sinks: where readings (and the indicator engine's values) are stored. Each sink runs in its own task, reads committed batches from
//! the spool after its cursor, coalesces them into one write, retries failures with backoff until
//! they succeed (or the drain deadline passes), and moves its cursor.

pub mod influx;
pub mod line_protocol;
pub mod retry;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::model::{DeadLetter, Kind, Reason};
use crate::pipeline::Batch;
use crate::spool::SpoolReader;

/// A server's `Retry-After` is honoured up to this long (a bogus "retry in a week" must not
/// stall a sink for good).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

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
    /// Whether this sink stores the indicator values of the batches it reads (counted in
    /// `qala_indicator_values_stored_total`). A sink that does not skips them.
    fn stores_indicators(&self) -> bool {
        false
    }
    /// Writes every reading (and dead letter, where kept, and indicator value, where stored) of
    /// `batches`; `Ok` means durable. `Ok` carries the points the server refused one by one (after the sink isolated them,
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
    /// Spool seq of the last batch committed (0: none yet; seqs start at 1).
    pub committed: AtomicU64,
    /// The last write succeeded (or none failed yet).
    pub healthy: AtomicBool,
    /// When the spool wrote the oldest batch the sink holds and has not committed (ns since the
    /// epoch; 0: caught up). `/metrics` turns it into `qala_sink_lag_seconds`.
    pub pending_since_ns: AtomicI64,
    /// The task has ended: its input closed and everything committed, or the drain was cut.
    pub finished: AtomicBool,
    /// Last error, for `/ready`.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl SinkProgress {
    /// A sink that has committed everything up to `seq` (its spool cursor).
    pub fn starting_at(name: &'static str, seq: u64) -> Arc<Self> {
        Arc::new(SinkProgress {
            name,
            committed: AtomicU64::new(seq),
            pending_since_ns: AtomicI64::new(0),
            healthy: AtomicBool::new(true),
            finished: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
        })
    }
}

/// Runs one sink: reads committed batches from the spool after its cursor, writes them
/// (coalesced up to the sink's group size), retries failures until they succeed, hands refused
/// points back to the spool as dead letters, and moves its cursor. Ends when the spool is closed
/// and everything is written, or at `abort` (what is left stays in the spool for the next
/// start).
pub async fn run<S: Sink>(
    mut sink: S,
    mut spool: SpoolReader,
    progress: Arc<SinkProgress>,
    mut abort: watch::Receiver<bool>,
) {
    let name = sink.name();
    let retries = metrics::counter!("qala_sink_retries_total", "sink" => name);
    let mut read_failures: u32 = 0;
    'groups: loop {
        let next = tokio::select! {
            g = spool.next_group(sink.max_readings(), sink.linger()) => g,
            _ = abort.wait_for(|a| *a) => break,
        };
        let group = match next {
            Ok(Some(g)) => g,
            Ok(None) => break,
            Err(e) => {
                read_failures += 1;
                progress.healthy.store(false, Ordering::Relaxed);
                set_error(&progress, Some(format!("cannot read the spool: {e}")));
                tracing::error!(sink = name, error = %e, "cannot read the spool; retrying");
                let delay = retry::backoff(read_failures, rand::random::<f64>());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = abort.wait_for(|a| *a) => break,
                }
            }
        };
        read_failures = 0;
        if group.is_empty() {
            continue;
        }
        let last = group.last().map_or(0, |b| b.seq);
        progress
            .pending_since_ns
            .store(spool.group_written_ns(), Ordering::Release);
        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::select! {
                r = sink.write(&group) => r,
                _ = abort.wait_for(|a| *a) => break 'groups,
            };
            match outcome {
                Ok(refused) => {
                    if attempt > 0 {
                        tracing::info!(
                            sink = name,
                            attempts = attempt + 1,
                            "sink write succeeded after retries"
                        );
                        set_error(&progress, None::<String>);
                    }
                    progress.healthy.store(true, Ordering::Relaxed);
                    let refused_count = refused.len();
                    let by_measurement = refused_by_measurement(&refused);
                    if !refused.is_empty() {
                        tracing::error!(
                            sink = name, points = refused_count,
                            first = %refused[0].rejection.message,
                            "the sink refused points; dead-lettered (reason sink_rejected)"
                        );
                        metrics::counter!("qala_messages_rejected_total", "reason" => Reason::SinkRejected.as_str())
                            .increment(refused_count as u64);
                        let back = Batch {
                            dead_letters: refused,
                            ..Batch::default()
                        };
                        // Durable before the cursor moves past the readings they came from.
                        let stored = tokio::select! {
                            r = spool.append(back) => r,
                            _ = abort.wait_for(|a| *a) => break 'groups,
                        };
                        if let Err(e) = stored {
                            tracing::error!(sink = name, error = %e, "refused points could not be spooled; the group stays unconfirmed and is written again at the next start");
                            break 'groups;
                        }
                    }
                    count_stored(&sink, &group, &by_measurement);
                    progress.committed.store(last, Ordering::Release);
                    if let Err(e) = spool.commit_cursor(last, false).await {
                        tracing::warn!(sink = name, error = %e, "cannot write the sink's spool cursor; it is retried with the next write (a restart would write a few batches again)");
                    }
                    if spool.caught_up(last) {
                        progress.pending_since_ns.store(0, Ordering::Release);
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    retries.increment(1);
                    progress.healthy.store(false, Ordering::Relaxed);
                    set_error(&progress, Some(e.message.clone()));
                    let delay = retry::wait(
                        attempt,
                        rand::random::<f64>(),
                        e.retry_after.map(|ra| ra.min(MAX_RETRY_AFTER)),
                    );
                    match e.class {
                        ErrorClass::Transient => tracing::warn!(
                            sink = name, attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                            "sink write failed; retrying (the spool keeps the data meanwhile)"
                        ),
                        ErrorClass::Rejected | ErrorClass::Config => tracing::error!(
                            sink = name, attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                            "sink refused the write; operator action needed, retrying (the spool keeps the data)"
                        ),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = abort.wait_for(|a| *a) => break 'groups,
                    }
                }
            }
        }
    }
    let done = progress.committed.load(Ordering::Acquire);
    if let Err(e) = spool.commit_cursor(done, true).await {
        tracing::warn!(sink = name, error = %e, "cannot write the sink's spool cursor at the end; the next start writes a few batches again");
    }
    progress.finished.store(true, Ordering::Release);
}

fn set_error(progress: &SinkProgress, error: Option<impl Into<String>>) {
    if let Ok(mut last) = progress.last_error.lock() {
        *last = error.map(Into::into);
    }
}

/// Refused points by the measurement of their line.
#[derive(Debug, Default)]
struct RefusedCounts {
    /// Readings, per kind.
    by_kind: BTreeMap<Kind, u64>,
    /// Indicator values.
    indicators: u64,
}

fn refused_by_measurement(refused: &[DeadLetter]) -> RefusedCounts {
    let mut out = RefusedCounts::default();
    for d in refused {
        let head = d
            .payload
            .split(|b| *b == b',' || *b == b' ')
            .next()
            .unwrap_or(&[]);
        let Ok(head) = std::str::from_utf8(head) else {
            continue;
        };
        if head == line_protocol::INDICATOR_MEASUREMENT {
            out.indicators += 1;
        } else if let Ok(k) = head.parse::<Kind>() {
            *out.by_kind.entry(k).or_default() += 1;
        }
    }
    out
}

/// `qala_readings_stored_total{sink, kind}`: once per kind per write, not per reading; and
/// `qala_indicator_values_stored_total{sink}`; minus what the sink refused.
fn count_stored<S: Sink>(sink: &S, group: &[Arc<Batch>], refused: &RefusedCounts) {
    if sink.stores_indicators() {
        let n: usize = group.iter().map(|b| b.indicators.len()).sum();
        if n > 0 {
            metrics::counter!("qala_indicator_values_stored_total", "sink" => sink.name())
                .increment((n as u64).saturating_sub(refused.indicators));
        }
    }
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
        let n = n.saturating_sub(refused.by_kind.get(&kind).copied().unwrap_or(0));
        metrics::counter!("qala_readings_stored_total", "sink" => sink.name(), "kind" => kind.as_str())
            .increment(n);
    }
}
