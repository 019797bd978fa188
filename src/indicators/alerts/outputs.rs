//! Where alert events go: the [`AlertOutputs`] task takes them from a bounded channel and, for
//! each, writes a log line (WARN when raised, INFO otherwise), counts it
//! (`qala_alerts_total{rule,state}`), publishes its JSON retained on its MQTT topic through the
//! injected publisher, and queues it for the webhook task. Neither queue ever blocks its sender:
//! an event that finds one full is dropped and counted (`qala_alerts_dropped_total{output}`,
//! `output` = `all` before the outputs, `webhook` before the webhook).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::AlertSettings;
use super::event::{AlertEvent, AlertState};
use super::webhook::Webhook;

/// Publishes `(topic, payload, retain)` on MQTT without blocking (the gateway's shared
/// publisher).
pub type PublishFn = Arc<dyn Fn(String, Vec<u8>, bool) + Send + Sync>;

/// A problem starting the outputs.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts: {0}")]
    Webhook(String),
}

/// Counts of what the outputs did, shared by the tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events taken into the outputs' queue.
    pub(super) accepted: AtomicU64,
    pub(super) handled: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) webhook_delivered: AtomicU64,
    pub(super) webhook_failed: AtomicU64,
    pub(super) webhook_retries: AtomicU64,
    pub(super) dropped_all: AtomicU64,
    pub(super) dropped_webhook: AtomicU64,
    /// Events queued for the webhook or being delivered.
    pub(super) webhook_pending: AtomicU64,
}

impl Counters {
    /// Adds one; returns the new count.
    pub(super) fn add(c: &AtomicU64) -> u64 {
        c.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn report(&self) -> AlertReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AlertReport {
            handled: get(&self.handled),
            published: get(&self.published),
            webhook_delivered: get(&self.webhook_delivered),
            webhook_failed: get(&self.webhook_failed),
            webhook_retries: get(&self.webhook_retries),
            dropped_all: get(&self.dropped_all),
            dropped_webhook: get(&self.dropped_webhook),
        }
    }
}

/// What the outputs did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertReport {
    /// Events taken by the outputs task (logged and counted).
    pub handled: u64,
    /// Events handed to the MQTT publisher.
    pub published: u64,
    pub webhook_delivered: u64,
    /// Refused by the webhook (3xx/4xx), or given up after retries.
    pub webhook_failed: u64,
    pub webhook_retries: u64,
    /// Dropped because the outputs' queue was full (reached no output), or abandoned in it at
    /// the shutdown deadline.
    pub dropped_all: u64,
    /// Not sent to the webhook because its queue was full (logged and published all the same),
    /// or abandoned at the shutdown deadline.
    pub dropped_webhook: u64,
}

/// The configured outputs, not yet running.
pub struct AlertOutputs {
    publish: Option<PublishFn>,
    webhook: Option<Webhook>,
    queue: usize,
}

impl AlertOutputs {
    /// `publish` is used when `alerts.mqtt` is on.
    pub fn new(
        settings: &AlertSettings,
        publish: Option<PublishFn>,
    ) -> Result<AlertOutputs, AlertError> {
        describe_metrics();
        Ok(AlertOutputs {
            publish: publish.filter(|_| settings.mqtt),
            webhook: Webhook::new(settings).map_err(AlertError::Webhook)?,
            queue: settings.queue.max(1),
        })
    }

    /// Starts the outputs task (and the webhook's); call inside a Tokio runtime.
    pub fn start(self) -> AlertHandle {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(self.queue);
        let (webhook_tx, webhook_task) = match self.webhook {
            Some(webhook) => {
                let (wtx, wrx) = mpsc::channel(self.queue);
                let task = tokio::spawn(run_webhook(webhook, wrx, Arc::clone(&counters)));
                (Some(wtx), Some(task))
            }
            None => (None, None),
        };
        let outputs = tokio::spawn(run_outputs(
            rx,
            self.publish,
            webhook_tx,
            Arc::clone(&counters),
        ));
        AlertHandle {
            sender: AlertSender {
                tx,
                counters: Arc::clone(&counters),
            },
            outputs,
            webhook: webhook_task,
            counters,
        }
    }
}

/// Hands events to the outputs without ever waiting. Cheap to clone.
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<AlertEvent>,
    counters: Arc<Counters>,
}

impl AlertSender {
    /// Queues `event`; false (logged, counted) when the queue is full or the outputs stopped.
    pub fn send(&self, event: AlertEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                Counters::add(&self.counters.accepted);
                true
            }
            Err(e) => {
                let event = match e {
                    mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => {
                        ev
                    }
                };
                let dropped = Counters::add(&self.counters.dropped_all);
                metrics::counter!("qala_alerts_dropped_total", "output" => "all").increment(1);
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        rule = %event.rule, state = event.state.as_str(), dropped,
                        "alert dropped: the alert outputs' queue is full (alerts.queue); logged at 1, 2, 4, 8, ... drops"
                    );
                }
                false
            }
        }
    }

    /// Queues each of `events` (see [`AlertSender::send`]).
    pub fn send_all(&self, events: Vec<AlertEvent>) {
        for e in events {
            self.send(e);
        }
    }
}

/// The running outputs.
pub struct AlertHandle {
    sender: AlertSender,
    outputs: JoinHandle<()>,
    webhook: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl AlertHandle {
    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    pub fn report(&self) -> AlertReport {
        self.counters.report()
    }

    /// Finishes what is queued, for up to `deadline`: drop every [`AlertSender`] first (the
    /// outputs end when the last one is gone). What is still queued then is abandoned.
    pub async fn close(self, deadline: Duration) -> AlertReport {
        let AlertHandle {
            sender,
            mut outputs,
            webhook,
            counters,
        } = self;
        drop(sender);
        let until = tokio::time::Instant::now() + deadline;
        if tokio::time::timeout_at(until, &mut outputs).await.is_err() {
            outputs.abort();
            let abandoned = counters
                .accepted
                .load(Ordering::Relaxed)
                .saturating_sub(counters.handled.load(Ordering::Relaxed));
            counters.dropped_all.fetch_add(abandoned, Ordering::Relaxed);
            metrics::counter!("qala_alerts_dropped_total", "output" => "all").increment(abandoned);
            tracing::warn!(
                abandoned,
                "alert outputs did not finish within the shutdown deadline"
            );
        }
        if let Some(mut task) = webhook {
            if tokio::time::timeout_at(until, &mut task).await.is_err() {
                task.abort();
                let abandoned = counters.webhook_pending.swap(0, Ordering::Relaxed);
                counters
                    .dropped_webhook
                    .fetch_add(abandoned, Ordering::Relaxed);
                metrics::counter!("qala_alerts_dropped_total", "output" => "webhook")
                    .increment(abandoned);
                tracing::warn!(
                    abandoned,
                    "alert webhook deliveries abandoned at the shutdown deadline"
                );
            }
        }
        counters.report()
    }
}

async fn run_outputs(
    mut rx: mpsc::Receiver<AlertEvent>,
    publish: Option<PublishFn>,
    webhook: Option<mpsc::Sender<(String, Vec<u8>)>>,
    counters: Arc<Counters>,
) {
    while let Some(event) = rx.recv().await {
        Counters::add(&counters.handled);
        log(&event);
        metrics::counter!(
            "qala_alerts_total",
            "rule" => event.rule.clone(),
            "state" => event.state.as_str()
        )
        .increment(1);
        let body = event.to_json();
        if let Some(publish) = &publish {
            publish(event.topic(), body.clone(), true);
            Counters::add(&counters.published);
        }
        if let Some(webhook) = &webhook {
            Counters::add(&counters.webhook_pending);
            if webhook.try_send((event.rule.clone(), body)).is_err() {
                counters.webhook_pending.fetch_sub(1, Ordering::Relaxed);
                let dropped = Counters::add(&counters.dropped_webhook);
                metrics::counter!("qala_alerts_dropped_total", "output" => "webhook").increment(1);
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        rule = %event.rule, state = event.state.as_str(), dropped,
                        "alert not sent to the webhook: its queue is full (alerts.queue); logged at 1, 2, 4, 8, ... drops"
                    );
                }
            }
        }
    }
}

async fn run_webhook(
    webhook: Webhook,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    counters: Arc<Counters>,
) {
    while let Some((rule, body)) = rx.recv().await {
        webhook.deliver(&body, &rule, &counters).await;
        counters.webhook_pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn log(e: &AlertEvent) {
    let topic = e.topic();
    match e.state {
        AlertState::Raised => tracing::warn!(
            rule = %e.rule, severity = e.severity.as_str(), state = "raised", %topic,
            "alert: {}", e.message
        ),
        AlertState::Cleared | AlertState::Changed => tracing::info!(
            rule = %e.rule, severity = e.severity.as_str(), state = e.state.as_str(), %topic,
            "alert: {}", e.message
        ),
    }
}

fn describe_metrics() {
    use metrics::describe_counter;
    describe_counter!(
        "qala_alerts_total",
        "Alert events (raised, cleared, changed) handled by the outputs, by rule"
    );
    describe_counter!(
        "qala_alerts_dropped_total",
        "Alert events dropped because a queue was full: output=all (before every output), webhook"
    );
    describe_counter!(
        "qala_alert_webhook_failures_total",
        "Alert events the webhook refused (3xx/4xx) or that were given up after retries"
    );
    describe_counter!(
        "qala_alert_webhook_retries_total",
        "Failed webhook attempts that were retried"
    );
    // Present from the start, at zero (`increment(0)`: a second start must not reset them).
    for output in ["all", "webhook"] {
        metrics::counter!("qala_alerts_dropped_total", "output" => output).increment(0);
    }
    metrics::counter!("qala_alert_webhook_failures_total").increment(0);
}
