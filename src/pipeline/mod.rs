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

use crate::ingest::mqtt::{now_ns, Phase, SessionHandle};
use crate::ingest::{AckToken, Delivery};
use crate::model::{DeadLetter, Reading, Reason};
use crate::normalize::{self, Policy};
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
    policy: Policy,
    batch_size: usize,
    sinks: Vec<mpsc::Sender<Arc<Batch>>>,
    acker: mpsc::Sender<Arc<Batch>>,
    mut phase: watch::Receiver<Phase>,
) {
    let received = metrics::counter!("qala_messages_received_total");
    let mut seq = 0u64;
    let mut draining = false;
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
        let mut n = 1u64;
        add(&mut batch, first, &policy, &mut rejected);
        while (n as usize) < batch_size {
            match input.try_recv() {
                Ok(d) => {
                    n += 1;
                    add(&mut batch, d, &policy, &mut rejected);
                }
                Err(_) => break,
            }
        }
        received.increment(n);
        for (reason, count) in rejected {
            metrics::counter!("qala_messages_rejected_total", "reason" => reason.as_str())
                .increment(count);
        }
        let batch = Arc::new(batch);
        for s in &sinks {
            if s.send(batch.clone()).await.is_err() {
                tracing::error!(seq, "a sink stopped; its batches will not be acked");
            }
        }
        if acker.send(batch).await.is_err() {
            tracing::error!(seq, "the acker stopped; messages will be redelivered");
        }
    }
    tracing::debug!(batches = seq, "batcher finished");
}

fn add(batch: &mut Batch, d: Delivery, policy: &Policy, rejected: &mut BTreeMap<Reason, u64>) {
    match normalize::process(&d.topic, &d.payload, d.received_ns, policy) {
        Ok(readings) => batch.readings.extend(readings),
        Err(rejection) => {
            tracing::warn!(
                topic = %d.topic, reason = rejection.reason.as_str(), bytes = d.payload.len(),
                "{}; dead-lettered", rejection.message
            );
            *rejected.entry(rejection.reason).or_default() += 1;
            batch.dead_letters.push(DeadLetter {
                received_ns: d.received_ns,
                topic: d.topic,
                payload: d.payload,
                rejection,
            });
        }
    }
    if let Some(a) = d.ack {
        batch.acks.push(a);
    }
}

/// Acks batches, in order, once every sink has committed them; records the ingest lag
/// (sensor time → committed). Ends when its input has closed and everything is acked, or when
/// every sink has finished and what is left can never be committed (it stays unacked).
pub async fn run_acker(
    mut input: mpsc::Receiver<Arc<Batch>>,
    sinks: Vec<Arc<SinkProgress>>,
    wake: Arc<Notify>,
    sessions: Vec<SessionHandle>,
) {
    let lag = metrics::histogram!("qala_ingest_lag_seconds");
    let stale = metrics::counter!("qala_acks_skipped_total");
    let mut queue: VecDeque<Arc<Batch>> = VecDeque::new();
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
            for t in &b.acks {
                let sent = match sessions.get(t.session) {
                    Some(s) => s.ack(*t).await,
                    None => false,
                };
                if !sent {
                    stale.increment(1);
                }
            }
        }
        if !input_open && (queue.is_empty() || all_finished) {
            if !queue.is_empty() {
                let left: usize = queue.iter().map(|b| b.acks.len()).sum();
                tracing::warn!(
                    messages = left,
                    "drain cut short: these stay unacked and will be redelivered"
                );
            }
            break;
        }
        tokio::select! {
            b = input.recv(), if input_open => match b {
                Some(b) => queue.push_back(b),
                None => input_open = false,
            },
            _ = wake.notified() => {}
        }
    }
}
