//! The pipeline between ingest and the sinks.
//!
//! ```text
//! sessions ─Delivery─▶ batcher ─Arc<Batch>─┬─▶ sink task (sqlite)   ─committed seq─┐
//!   ▲ (bounded)        decode, normalise,  ├─▶ sink task (influxdb) ─committed seq─┤
//!   │                  dead letters        └─▶ acker ◀─────────────────────────────┘
//!   └────────────── PUBACK, in receive order, once every sink has committed ──────┘
//! ```
//! Every channel is bounded. A batch is acked only when every sink has committed it; rejected
//! messages ride in the same batch as dead letters, so their acks keep receive order too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

use crate::ingest::mqtt::{now_ns, AckOutcome, Phase, SessionHandle};
use crate::ingest::{AckToken, Delivery};
use crate::model::{DeadLetter, Reading, Reason};
use crate::normalize::Normaliser;
use crate::sink::SinkProgress;

/// Messages decoded together, written together, acked together.
#[derive(Debug, Default)]
pub struct Batch {
    /// 1, 2, 3, ... in dispatch order.
    pub seq: u64,
    pub readings: Vec<Reading>,
    pub dead_letters: Vec<DeadLetter>,
    /// Acks of every QoS-1 message in the batch, in receive order.
    pub acks: Vec<AckToken>,
}

/// Decodes and normalises deliveries into batches and hands each to every sink and the acker.
/// Takes what is queued (up to `batch_size` messages) without waiting: batches grow with load.
pub async fn run_batcher(
    mut input: mpsc::Receiver<Delivery>,
    mut normaliser: Normaliser,
    batch_size: usize,
    sinks: Vec<mpsc::Sender<Arc<Batch>>>,
    acker: mpsc::Sender<Arc<Batch>>,
    mut phase: watch::Receiver<Phase>,
    mut abort: watch::Receiver<bool>,
) {
    let mut seq = 0u64;
    let mut draining = false;
    let mut log_limit = LogLimit::new(DEAD_LETTER_LOGS_PER_WINDOW, LOG_WINDOW);
    loop {
        let first = if draining {
            input.try_recv().ok()
        } else {
            tokio::select! {
                biased;
                d = input.recv() => d,
                _ = phase.wait_for(|p| *p != Phase::Running) => {
                    draining = true;
                    input.try_recv().ok()
                }
            }
        };
        let Some(first) = first else { break };
        seq += 1;
        let mut batch = Batch {
            seq,
            ..Batch::default()
        };
        let mut rejected: BTreeMap<Reason, u64> = BTreeMap::new();
        let mut duplicates = 0u64;
        let mut n = 1u64;
        add(
            &mut batch,
            first,
            &mut normaliser,
            &mut rejected,
            &mut log_limit,
            &mut duplicates,
        );
        while (n as usize) < batch_size {
            match input.try_recv() {
                Ok(d) => {
                    n += 1;
                    add(
                        &mut batch,
                        d,
                        &mut normaliser,
                        &mut rejected,
                        &mut log_limit,
                        &mut duplicates,
                    );
                }
                Err(_) => break,
            }
        }
        for (reason, count) in rejected {
            metrics::counter!("qala_messages_rejected_total", "reason" => reason.as_str())
                .increment(count);
        }
        if duplicates > 0 {
            metrics::counter!("qala_readings_duplicate_total").increment(duplicates);
        }
        let batch = Arc::new(batch);
        // A full sink queue waits (backpressure) unless the drain deadline passes meanwhile.
        for (s, to) in sinks
            .iter()
            .map(|s| (s, "a sink"))
            .chain([(&acker, "the acker")])
        {
            tokio::select! {
                sent = s.send(batch.clone()) => if sent.is_err() {
                    tracing::error!(seq, "{to} stopped; this batch will not be acked and comes back from the broker");
                },
                _ = abort.wait_for(|a| *a) => {
                    tracing::debug!(seq, "drain cut short while handing out a batch");
                    return;
                }
            }
        }
    }
    tracing::debug!(batches = seq, "batcher finished");
}

/// Dead letters logged one by one per window; the rest are summed up in one line.
const DEAD_LETTER_LOGS_PER_WINDOW: u32 = 20;
const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// A log-flood guard: `allow` is true for the first `limit` events of each window; the
/// events it suppressed are reported when the next window opens.
pub struct LogLimit {
    limit: u32,
    window: std::time::Duration,
    opened: std::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    pub fn new(limit: u32, window: std::time::Duration) -> Self {
        LogLimit {
            limit,
            window,
            opened: std::time::Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether this event may be logged at `now`; returns as well how many were suppressed in
    /// the window that just closed (0 if none, or if the window is still open).
    pub fn allow(&mut self, now: std::time::Instant) -> (bool, u64) {
        let mut closed = 0;
        if now.duration_since(self.opened) >= self.window {
            closed = std::mem::take(&mut self.suppressed);
            self.opened = now;
            self.logged = 0;
        }
        if self.logged < self.limit {
            self.logged += 1;
            (true, closed)
        } else {
            self.suppressed += 1;
            (false, closed)
        }
    }
}

fn add(
    batch: &mut Batch,
    d: Delivery,
    normaliser: &mut Normaliser,
    rejected: &mut BTreeMap<Reason, u64>,
    log_limit: &mut LogLimit,
    duplicates: &mut u64,
) {
    match normaliser.process(&d.topic, &d.payload, d.received_ns, duplicates) {
        Ok(readings) => batch.readings.extend(readings),
        Err(mut rejection) => {
            let (log, suppressed) = log_limit.allow(std::time::Instant::now());
            if suppressed > 0 {
                tracing::warn!(
                    suppressed,
                    "more dead letters were not logged one by one (see qala_messages_rejected_total and the dead_letters table)"
                );
            }
            if log {
                tracing::warn!(
                    topic = %d.topic, reason = rejection.reason.as_str(), bytes = d.payload.len(),
                    "{}; dead-lettered", rejection.message
                );
            }
            *rejected.entry(rejection.reason).or_default() += 1;
            let mut payload = d.payload;
            if rejection.reason == Reason::TooLarge {
                // Keep the head (copied, so the oversize buffer is freed now), not all of it:
                // dead letters must not become the way to fill the disk.
                let keep = normaliser.policy().max_payload_bytes.min(payload.len());
                payload = bytes::Bytes::copy_from_slice(&payload[..keep]);
                rejection
                    .message
                    .push_str(&format!("; the first {keep} bytes are kept"));
            }
            batch.dead_letters.push(DeadLetter {
                received_ns: d.received_ns,
                topic: d.topic,
                payload,
                rejection,
            });
        }
    }
    if let Some(a) = d.ack {
        batch.acks.push(a);
    }
}

/// Acks batches, in order, once every sink has committed them; records the ingest lag
/// (sensor time → committed). Ends when its input has closed and everything is acked, when
/// every sink has finished and what is left can never be committed, or at `abort`; whatever is
/// left stays unacked and the broker redelivers it.
pub async fn run_acker(
    mut input: mpsc::Receiver<Arc<Batch>>,
    sinks: Vec<Arc<SinkProgress>>,
    wake: Arc<Notify>,
    sessions: Vec<SessionHandle>,
    mut abort: watch::Receiver<bool>,
) {
    let lag = metrics::histogram!("qala_ingest_lag_seconds");
    let mut queue: VecDeque<Arc<Batch>> = VecDeque::new();
    let mut acks = AckQueue::default();
    let mut input_open = true;
    loop {
        let all_finished = sinks.iter().all(|s| s.finished.load(Ordering::Acquire));
        let committed = sinks
            .iter()
            .map(|s| s.committed.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        while queue.front().is_some_and(|b| b.seq <= committed) {
            let Some(b) = queue.pop_front() else { break };
            let now = now_ns();
            for r in &b.readings {
                lag.record((now - r.time_ns) as f64 / 1.0e9);
            }
            acks.waiting.extend(b.acks.iter().copied());
        }
        acks.flush(&sessions);
        if !input_open && acks.waiting.is_empty() && (queue.is_empty() || all_finished) {
            if !queue.is_empty() {
                let left: usize = queue.iter().map(|b| b.acks.len()).sum();
                tracing::warn!(
                    messages = left,
                    "drain cut short: these stay unacked and will be redelivered"
                );
            }
            break;
        }
        // A full session queue is retried after a short pause; it drains as its event loop runs.
        let retry = !acks.waiting.is_empty();
        tokio::select! {
            b = input.recv(), if input_open => match b {
                Some(b) => queue.push_back(b),
                None => input_open = false,
            },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(2)), if retry => {}
            _ = abort.wait_for(|a| *a) => {
                let left: usize =
                    queue.iter().map(|b| b.acks.len()).sum::<usize>() + acks.waiting.len();
                tracing::warn!(messages = left, "drain deadline passed: these stay unacked and will be redelivered");
                break;
            }
        }
    }
}

/// Acks of committed batches, in order, waiting for room in their session's request queue.
#[derive(Default)]
struct AckQueue {
    waiting: VecDeque<AckToken>,
}

impl AckQueue {
    /// Queues acks until a session's queue is full; keeps the rest, in order, for later.
    fn flush(&mut self, sessions: &[SessionHandle]) {
        while let Some(&t) = self.waiting.front() {
            let outcome = match sessions.get(t.session) {
                Some(s) => s.try_ack(t),
                None => AckOutcome::Stale,
            };
            match outcome {
                AckOutcome::Queued => {}
                AckOutcome::Full => return,
                AckOutcome::Stale => metrics::counter!("qala_acks_skipped_total").increment(1),
            }
            self.waiting.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn log_limit_lets_a_few_through_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(2, Duration::from_secs(10));
        assert_eq!(l.allow(t0), (true, 0));
        assert_eq!(l.allow(t0), (true, 0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), (false, 0));
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), (false, 0));
        // The next window opens: the two suppressed are reported, and logging resumes.
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), (true, 2));
        assert_eq!(l.allow(t0 + Duration::from_secs(12)), (true, 0));
        assert_eq!(l.allow(t0 + Duration::from_secs(13)), (false, 0));
    }
}
