//! The pipeline between ingest and the spool.
//!
//! ```text
//! sessions ─Delivery─▶ batcher ─Batch─▶ spool writer ─(fdatasync)─▶ segments ─▶ sinks
//!   ▲ (bounded)        decode, normalise,     │
//!   │                  dead letters            ▼ acks of each committed batch, in order
//!   └──────────────── PUBACK ◀──────────── acker
//! ```
//! Every channel is bounded. A message is acked once its batch is durable in the spool, not
//! later; rejected messages ride in the same batch as dead letters, so their acks keep receive
//! order too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::indicators::IndicatorValue;
use crate::ingest::mqtt::{AckOutcome, Phase, SessionHandle};
use crate::ingest::{AckToken, Delivery};
use crate::model::{DeadLetter, Reading, Reason, SensorRef};
use crate::normalize::Normaliser;
use crate::registry::seen::{screen, Sighting};
use crate::registry::{Intake, Registry, Unregistered};

/// Messages decoded together, spooled together, acked together.
#[derive(Debug, Default)]
pub struct Batch {
    /// The spool record's seq: 1, 2, 3, ... (0 until the spool has written it).
    pub seq: u64,
    pub readings: Vec<Reading>,
    pub dead_letters: Vec<DeadLetter>,
    /// Indicator values the engine derived, written back into the spool so the sinks store
    /// them like readings (durable, retried, idempotent). A batch holds either messages from
    /// ingest or the engine's values, never both.
    pub indicators: Vec<IndicatorValue>,
    /// Acks of every QoS-1 message in the batch, in receive order (empty when read back from
    /// the spool: acks belong to the connection that delivered the messages).
    pub acks: Vec<AckToken>,
}

/// One batch's dealings with the registry: the registry in force for the whole batch, each
/// accepted reading's receive time (parallel to `Batch::readings`), the readings dead-lettered
/// as unregistered (seen all the same), and how many readings came from unregistered devices.
struct Screening {
    registry: Arc<Registry>,
    policy: Unregistered,
    received: Vec<i64>,
    refused: Vec<(SensorRef, i64, i64)>,
    unregistered: u64,
}

impl Screening {
    fn new(intake: &Intake) -> Screening {
        Screening {
            registry: intake.registry.current(),
            policy: intake.policy,
            received: Vec::new(),
            refused: Vec::new(),
            unregistered: 0,
        }
    }

    /// Notes last seen for the batch (one lock) and counts unregistered readings.
    fn finish(self, batch: &Batch, intake: &Intake) {
        let accepted = batch
            .readings
            .iter()
            .zip(&self.received)
            .map(|(r, &received_ns)| Sighting {
                sensor: &r.sensor,
                device_ns: r.time_ns,
                received_ns,
            });
        let refused = self
            .refused
            .iter()
            .map(|(sensor, t, received_ns)| Sighting {
                sensor,
                device_ns: *t,
                received_ns: *received_ns,
            });
        intake.seen.record(accepted.chain(refused), &self.registry);
        if self.unregistered > 0 {
            metrics::counter!("qala_unregistered_readings_total").increment(self.unregistered);
        }
    }
}

/// Decodes and normalises deliveries into batches and hands each to the spool. Takes what is
/// queued (up to `batch_size` messages) without waiting: batches grow with load. Readings of
/// devices not in the registry are accepted or dead-lettered as `intake.policy` says; every
/// batch updates last seen.
pub async fn run_batcher(
    mut input: mpsc::Receiver<Delivery>,
    mut normaliser: Normaliser,
    batch_size: usize,
    spool: mpsc::Sender<Batch>,
    mut phase: watch::Receiver<Phase>,
    mut abort: watch::Receiver<bool>,
    intake: Intake,
) {
    let mut batches = 0u64;
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
        batches += 1;
        let mut batch = Batch::default();
        let mut rejected: BTreeMap<Reason, u64> = BTreeMap::new();
        let mut duplicates = 0u64;
        let mut n = 1u64;
        let mut screening = Screening::new(&intake);
        add(
            &mut batch,
            first,
            &mut normaliser,
            &mut rejected,
            &mut log_limit,
            &mut duplicates,
            &mut screening,
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
                        &mut screening,
                    );
                }
                Err(_) => break,
            }
        }
        screening.finish(&batch, &intake);
        for (reason, count) in rejected {
            metrics::counter!("qala_messages_rejected_total", "reason" => reason.as_str())
                .increment(count);
        }
        if duplicates > 0 {
            metrics::counter!("qala_readings_duplicate_total").increment(duplicates);
        }
        // A full spool queue waits (backpressure) unless the drain deadline passes meanwhile.
        tokio::select! {
            sent = spool.send(batch) => if sent.is_err() {
                tracing::error!("the spool writer has stopped; this batch will not be acked and comes back from the broker");
            },
            _ = abort.wait_for(|a| *a) => {
                tracing::debug!("drain cut short while handing a batch to the spool");
                return;
            }
        }
    }
    tracing::debug!(batches, "batcher finished");
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

impl Batch {
    /// What the batch weighs for a sink's group size: its readings, dead letters and indicator
    /// values, and at least 1, so that a reader fills its groups (and stops) whatever the
    /// batches hold.
    pub fn weight(&self) -> usize {
        (self.readings.len() + self.dead_letters.len() + self.indicators.len()).max(1)
    }
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
    screening: &mut Screening,
) {
    let outcome = normaliser
        .process(&d.topic, &d.payload, d.received_ns, duplicates)
        .and_then(|readings| {
            match screen(
                &readings,
                &screening.registry,
                screening.policy,
                &mut screening.unregistered,
            ) {
                Ok(()) => Ok(readings),
                Err(rejection) => {
                    screening.refused.extend(
                        readings
                            .into_iter()
                            .map(|r| (r.sensor, r.time_ns, d.received_ns)),
                    );
                    Err(rejection)
                }
            }
        });
    match outcome {
        Ok(readings) => {
            screening
                .received
                .extend(std::iter::repeat_n(d.received_ns, readings.len()));
            batch.readings.extend(readings)
        }
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

/// Acks committed batches, in the order the spool committed them (receive order). Ends when
/// its input has closed and every ack is queued, or at `abort`; whatever is left stays unacked
/// and the broker redelivers it (it is in the spool already: stored twice, written once).
pub async fn run_acker(
    mut input: mpsc::Receiver<Vec<AckToken>>,
    sessions: Vec<SessionHandle>,
    mut abort: watch::Receiver<bool>,
) {
    let mut acks = AckQueue::default();
    let mut input_open = true;
    loop {
        acks.flush(&sessions);
        if !input_open && acks.waiting.is_empty() {
            break;
        }
        // A full session queue is retried after a short pause; it drains as its event loop runs.
        let retry = !acks.waiting.is_empty();
        tokio::select! {
            a = input.recv(), if input_open => match a {
                Some(a) => acks.waiting.extend(a),
                None => input_open = false,
            },
            _ = tokio::time::sleep(std::time::Duration::from_millis(2)), if retry => {}
            _ = abort.wait_for(|a| *a) => {
                tracing::warn!(messages = acks.waiting.len(), "drain deadline passed: these stay unacked and will be redelivered");
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
