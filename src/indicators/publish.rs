//! The retained MQTT publisher: every indicator value goes out as JSON
//! ([`IndicatorValue::to_json`]) on its series' topic ([`IndicatorValue::topic`]), QoS 1,
//! retained, so a dashboard that subscribes later gets the latest value of every series at once.
//! Alerts use the same session (QoS 1, retained or not, as the caller says).
//!
//! ```text
//! engine ─offer(values)─▶ latest payload per topic ──┐ (coalesced: a newer value of a topic
//!                          (bounded map, FIFO)        │  not yet sent replaces the older)
//! alerts ─publish(..)───▶ queue (bounded) ───────────┤ alerts first
//!                                                     ▼
//!                    handed to rumqttc (≤ IN_FLIGHT_MAX unacked) ─PUBLISH─▶ broker ─PUBACK─▶ done
//! ```
//! Neither `offer` nor `publish` ever waits: they take a lock held for microseconds, queue, and
//! hand to the client what the connection window allows. A full queue is counted and logged,
//! never waited on.
//!
//! Its own session (`{mqtt.client_id}-publisher`, clean), on the broker, credentials and TLS of
//! the subscriber ([`crate::ingest::mqtt::connection_options`]). Each connection gets a fresh
//! rumqttc client: when one fails, what was handed to it and not acknowledged goes back into the
//! queue (behind any newer value of the same topic) and is published again on the next
//! connection, so a broker restart loses no retained state. `close` flushes within a deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::watch;

use crate::config::{ConfigError, MqttSettings};
use crate::indicators::IndicatorValue;
use crate::ingest::mqtt::connection_options;
use crate::pipeline::LogLimit;
use crate::sink::retry;

/// Most topics waiting with a value not yet handed to the broker (one per series: a newer value
/// replaces the older). A value of a new topic beyond it is dropped, counted and logged.
pub const PENDING_TOPICS_MAX: usize = 200_000;
/// Most alerts waiting; beyond it an alert is dropped, counted and logged.
pub const ALERTS_MAX: usize = 1_000;
/// Most messages handed to the broker and not yet acknowledged (the session's window).
pub const IN_FLIGHT_MAX: usize = 100;
/// Largest payload published; a larger one is refused (counted as failed) rather than sent
/// to break the connection.
pub const PAYLOAD_MAX: usize = 256 * 1024;

/// Warnings of the same kind logged one by one per window; the rest are summed up.
const WARNINGS_PER_WINDOW: u32 = 5;
const WARNING_WINDOW: Duration = Duration::from_secs(60);

/// The publisher's handle: cheap to clone, safe to call from any task or thread.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Open, flushing for a close, or stopping now.
    close: watch::Sender<Close>,
    /// Set by the driver when it has ended.
    done: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Open,
    /// Publish what is waiting, then disconnect.
    Flush,
    /// The deadline passed: disconnect now.
    Now,
}

/// What `publish` and `offer` queue.
#[derive(Debug)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    /// An indicator value (coalesced by topic) or an alert (queued in order).
    alert: bool,
}

impl Message {
    fn kind(&self) -> &'static str {
        if self.alert {
            "alert"
        } else {
            "indicator"
        }
    }
}

#[derive(Default)]
struct State {
    /// The current connection's client, once connected (CONNACK seen).
    client: Option<AsyncClient>,
    /// Latest payload per topic of indicator values not yet handed to the client.
    retained: HashMap<String, Vec<u8>>,
    /// The topics of `retained`, oldest first.
    order: VecDeque<String>,
    alerts: VecDeque<Message>,
    /// Handed to the client, waiting for their PUBLISH to be written (in order).
    queued: VecDeque<Message>,
    /// Written, waiting for the PUBACK, by packet id.
    inflight: HashMap<u16, Message>,
    closing: bool,
    warnings: Option<LogLimit>,
}

impl State {
    fn waiting(&self) -> usize {
        self.retained.len() + self.alerts.len() + self.queued.len() + self.inflight.len()
    }

    /// Hands waiting messages (alerts first) to the client while the window has room.
    fn fill(&mut self) {
        let Some(client) = self.client.clone() else {
            return;
        };
        while self.queued.len() + self.inflight.len() < IN_FLIGHT_MAX {
            let Some(m) = self.next_message() else {
                break;
            };
            let request = client.try_publish(
                m.topic.clone(),
                QoS::AtLeastOnce,
                m.retain,
                m.payload.clone(),
            );
            match request {
                Ok(()) => self.queued.push_back(m),
                Err(_) => {
                    // The connection is going away; the driver requeues and reconnects.
                    self.put_back(m);
                    break;
                }
            }
        }
        metrics::gauge!("qala_publisher_pending").set(self.waiting() as f64);
    }

    fn next_message(&mut self) -> Option<Message> {
        if let Some(a) = self.alerts.pop_front() {
            return Some(a);
        }
        while let Some(topic) = self.order.pop_front() {
            if let Some(payload) = self.retained.remove(&topic) {
                return Some(Message {
                    topic,
                    payload,
                    retain: true,
                    alert: false,
                });
            }
        }
        None
    }

    /// A message not (or no longer known to be) delivered goes back to the front of its queue;
    /// an indicator value only if no newer value of its topic is waiting.
    fn put_back(&mut self, m: Message) {
        if m.alert {
            self.alerts.push_front(m);
        } else if self.retained.contains_key(&m.topic) {
            metrics::counter!("qala_publisher_coalesced_total").increment(1);
        } else {
            self.order.push_front(m.topic.clone());
            self.retained.insert(m.topic, m.payload);
        }
    }

    /// The connection is gone: everything handed to it and not acknowledged waits again.
    fn requeue_unacknowledged(&mut self) {
        self.client = None;
        let mut back: Vec<Message> = self.queued.drain(..).collect();
        let mut inflight: Vec<(u16, Message)> = self.inflight.drain().collect();
        inflight.sort_by_key(|(pkid, _)| *pkid);
        back.splice(0..0, inflight.into_iter().map(|(_, m)| m));
        // Pushed to the front one by one: the oldest last, so it ends up first.
        for m in back.into_iter().rev() {
            self.put_back(m);
        }
    }

    fn warn(&mut self, what: &str, topic: &str, kind: &'static str) {
        let limit = self
            .warnings
            .get_or_insert_with(|| LogLimit::new(WARNINGS_PER_WINDOW, WARNING_WINDOW));
        let (log, suppressed) = limit.allow(std::time::Instant::now());
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                "more MQTT publisher warnings were not logged (see qala_publisher_dropped_total and qala_publisher_failed_total)"
            );
        }
        if log {
            tracing::warn!(topic, kind, "{what}");
        }
    }
}

/// Starts the publisher's session: returns its handle and the task that drives it (it ends
/// after [`Publisher::close`]). Fails only on bad configuration, naming the key.
pub fn spawn(
    settings: &MqttSettings,
) -> Result<(Publisher, tokio::task::JoinHandle<()>), ConfigError> {
    let client_id = format!("{}-publisher", settings.client_id);
    let mut options = connection_options(settings, &client_id)?;
    options.set_clean_session(true);
    options.set_inflight(IN_FLIGHT_MAX as u16);
    options.set_max_packet_size(
        settings.max_packet_size.max(64 * 1024),
        PAYLOAD_MAX + 64 * 1024,
    );
    let (close, close_rx) = watch::channel(Close::Open);
    let (done, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        close,
        done,
    });
    let task = tokio::spawn(drive(
        shared.clone(),
        options,
        close_rx,
        settings.reconnect_max_delay,
        client_id,
    ));
    Ok((Publisher { shared }, task))
}

impl Publisher {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the values for their retained topics and returns at once. A value whose topic
    /// already waits replaces the waiting one (`qala_publisher_coalesced_total`): only the
    /// latest state of a series matters to a retained topic.
    pub fn offer(&self, values: &[IndicatorValue]) {
        let messages: Vec<(String, Vec<u8>)> = values
            .iter()
            .map(|v| (v.topic(), v.to_json().to_string().into_bytes()))
            .collect();
        let mut st = self.state();
        let mut coalesced = 0u64;
        for (topic, payload) in messages {
            if !admit(&mut st, &topic, payload.len(), "indicator") {
                continue;
            }
            if let Some(old) = st.retained.get_mut(&topic) {
                *old = payload;
                coalesced += 1;
            } else if st.retained.len() >= PENDING_TOPICS_MAX {
                metrics::counter!("qala_publisher_dropped_total", "kind" => "indicator")
                    .increment(1);
                st.warn(
                    "too many indicator topics waiting for the broker; value dropped (its next value is published)",
                    &topic,
                    "indicator",
                );
            } else {
                st.order.push_back(topic.clone());
                st.retained.insert(topic, payload);
            }
        }
        if coalesced > 0 {
            metrics::counter!("qala_publisher_coalesced_total").increment(coalesced);
        }
        st.fill();
    }

    /// Queues one message (an alert) and returns at once; when [`ALERTS_MAX`] wait already, it
    /// is dropped, counted (`qala_publisher_dropped_total{kind="alert"}`) and logged.
    pub fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let mut st = self.state();
        if !admit(&mut st, &topic, payload.len(), "alert") {
            return;
        }
        if st.alerts.len() >= ALERTS_MAX {
            metrics::counter!("qala_publisher_dropped_total", "kind" => "alert").increment(1);
            st.warn(
                "alert queue full (the broker is slow or unreachable); alert dropped",
                &topic,
                "alert",
            );
        } else {
            st.alerts.push_back(Message {
                topic,
                payload,
                retain,
                alert: true,
            });
            st.fill();
        }
    }

    /// Messages not yet acknowledged by the broker (waiting, or on their way).
    pub fn waiting(&self) -> usize {
        self.state().waiting()
    }

    /// Whether the session is connected now.
    pub fn is_connected(&self) -> bool {
        self.state().client.is_some()
    }

    /// Stops taking messages, publishes what waits (until the broker acknowledges it) within
    /// `deadline`, disconnects, and returns how many messages were left unpublished (counted
    /// in `qala_publisher_failed_total`). The driver task ends with it.
    pub async fn close(&self, deadline: Duration) -> usize {
        let mut done = self.shared.done.subscribe();
        {
            let mut st = self.state();
            st.closing = true;
            if st.waiting() == 0 {
                if let Some(c) = &st.client {
                    let _ = c.try_disconnect();
                }
            }
        }
        self.shared.close.send_replace(Close::Flush);
        let flushed = tokio::time::timeout(deadline, done.wait_for(|d| *d))
            .await
            .is_ok();
        if !flushed {
            self.shared.close.send_replace(Close::Now);
            let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
        }
        let mut st = self.state();
        let left = st.waiting();
        if left > 0 {
            for (kind, n) in [
                ("indicator", st.retained.len() + count(&st, false)),
                ("alert", st.alerts.len() + count(&st, true)),
            ] {
                metrics::counter!("qala_publisher_failed_total", "kind" => kind)
                    .increment(n as u64);
            }
            tracing::warn!(
                messages = left,
                ?deadline,
                "MQTT publisher closed before the broker took everything; these were not published"
            );
            st.retained.clear();
            st.order.clear();
            st.alerts.clear();
            st.queued.clear();
            st.inflight.clear();
        }
        metrics::gauge!("qala_publisher_pending").set(0.0);
        left
    }
}

/// Handed to the client (or on its way) and of the kind given.
fn count(st: &State, alert: bool) -> usize {
    st.queued.iter().filter(|m| m.alert == alert).count()
        + st.inflight.values().filter(|m| m.alert == alert).count()
}

/// Whether a message may be queued: the publisher is open, the topic is one MQTT can publish
/// to (no wildcards, 1 to 65,535 bytes) and the payload within [`PAYLOAD_MAX`]. Else the
/// message is counted as failed and logged.
fn admit(st: &mut State, topic: &str, payload_bytes: usize, kind: &'static str) -> bool {
    let why = if st.closing {
        "the MQTT publisher is closed; not published"
    } else if topic.is_empty() || topic.len() > 65_535 || !rumqttc::valid_topic(topic) {
        "not a topic MQTT can publish to (empty, too long, or with + or #); not published"
    } else if payload_bytes > PAYLOAD_MAX {
        "payload larger than the publisher's limit; not published"
    } else {
        return true;
    };
    metrics::counter!("qala_publisher_failed_total", "kind" => kind).increment(1);
    st.warn(why, topic, kind);
    false
}

/// Connects, publishes, reconnects with capped backoff and jitter, until closed.
async fn drive(
    shared: Arc<Shared>,
    options: rumqttc::MqttOptions,
    mut close: watch::Receiver<Close>,
    reconnect_max: Duration,
    client_id: String,
) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let connected = metrics::gauge!("qala_publisher_connected");
    let mut failures: u32 = 0;
    'connections: loop {
        // A fresh client per connection: requests queued to a failed one die with it, and the
        // messages they carried are requeued from our own books.
        let (client, mut eventloop) = AsyncClient::new(options.clone(), IN_FLIGHT_MAX + 16);
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = close.wait_for(|c| *c == Close::Now) => break 'connections,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    connected.set(1.0);
                    let mut st = lock();
                    tracing::info!(
                        client_id,
                        waiting = st.waiting(),
                        "MQTT publisher connected"
                    );
                    st.client = Some(client.clone());
                    st.fill();
                    if st.closing && st.waiting() == 0 {
                        let _ = client.try_disconnect();
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let mut st = lock();
                    if let Some(m) = st.queued.pop_front() {
                        st.inflight.insert(pkid, m);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let mut st = lock();
                    if let Some(m) = st.inflight.remove(&ack.pkid) {
                        metrics::counter!("qala_publisher_published_total", "kind" => m.kind())
                            .increment(1);
                    }
                    st.fill();
                    if st.closing && st.waiting() == 0 {
                        let _ = client.try_disconnect();
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    lock().client = None;
                    tracing::info!(client_id, "MQTT publisher disconnected");
                    break 'connections;
                }
                Ok(_) => {}
                Err(e) => {
                    connected.set(0.0);
                    let waiting = {
                        let mut st = lock();
                        st.requeue_unacknowledged();
                        st.waiting()
                    };
                    if *close.borrow() != Close::Open && waiting == 0 {
                        break 'connections;
                    }
                    failures = failures.saturating_add(1);
                    let delay =
                        retry::backoff_capped(failures, rand::random::<f64>(), reconnect_max)
                            .max(Duration::from_millis(50));
                    if failures == 1 {
                        tracing::warn!(client_id, error = %e, waiting, retry_in_ms = delay.as_millis() as u64, "MQTT publisher connection lost; reconnecting (waiting messages are kept)");
                    } else {
                        tracing::debug!(client_id, error = %e, failures, waiting, "MQTT publisher reconnect failed");
                    }
                    let stop = tokio::select! {
                        _ = tokio::time::sleep(delay) => false,
                        // Closing: stop now, or once nothing waits any more.
                        _ = close.changed() => {
                            let c = *close.borrow();
                            c == Close::Now || (c == Close::Flush && lock().waiting() == 0)
                        }
                    };
                    if stop {
                        break 'connections;
                    }
                    continue 'connections;
                }
            }
        }
    }
    connected.set(0.0);
    lock().client = None;
    shared.done.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(topic: &str, payload: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            retain: true,
            alert: false,
        }
    }

    fn alert(payload: &str) -> Message {
        Message {
            alert: true,
            retain: false,
            ..value("qala/alerts/a", payload)
        }
    }

    /// Drains what would be handed to the broker next, as (topic, payload).
    fn next_all(st: &mut State) -> Vec<(String, String)> {
        std::iter::from_fn(|| st.next_message())
            .map(|m| (m.topic, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect()
    }

    #[test]
    fn unacknowledged_messages_wait_again_oldest_first_after_a_lost_connection() {
        let mut st = State::default();
        // In flight: packet ids 2 and 1 (1 was written first); queued behind them: 3 messages.
        st.inflight.insert(2, value("t/b", "b1"));
        st.inflight.insert(1, value("t/a", "a1"));
        st.queued.push_back(alert("x"));
        st.queued.push_back(value("t/c", "c1"));
        st.queued.push_back(alert("y"));
        // Offered while they were on their way: a newer value of t/c, and a new topic.
        st.order.push_back("t/c".into());
        st.retained.insert("t/c".into(), b"c2".to_vec());
        st.order.push_back("t/d".into());
        st.retained.insert("t/d".into(), b"d1".to_vec());
        st.requeue_unacknowledged();
        assert!(st.queued.is_empty() && st.inflight.is_empty() && st.client.is_none());
        assert_eq!(st.waiting(), 6);
        assert_eq!(
            next_all(&mut st),
            vec![
                // Alerts first, in their order.
                ("qala/alerts/a".into(), "x".into()),
                ("qala/alerts/a".into(), "y".into()),
                // Then the values in flight, oldest first; t/c1 gave way to the newer t/c2.
                ("t/a".into(), "a1".into()),
                ("t/b".into(), "b1".into()),
                ("t/c".into(), "c2".into()),
                ("t/d".into(), "d1".into()),
            ]
        );
    }

    #[test]
    fn without_a_connection_nothing_is_handed_out_and_everything_waits() {
        let mut st = State::default();
        st.order.push_back("t/a".into());
        st.retained.insert("t/a".into(), b"a".to_vec());
        st.fill();
        assert!(st.queued.is_empty());
        assert_eq!(st.waiting(), 1);
    }

    #[test]
    fn bad_topics_and_closed_publishers_are_refused_by_name() {
        let mut st = State::default();
        assert!(admit(&mut st, "qala/indicators/a/b", 10, "indicator"));
        assert!(!admit(&mut st, "qala/indicators/+/b", 10, "indicator"));
        assert!(!admit(&mut st, "qala/#", 10, "alert"));
        assert!(!admit(&mut st, "", 10, "alert"));
        assert!(!admit(&mut st, "qala/x", PAYLOAD_MAX + 1, "alert"));
        st.closing = true;
        assert!(!admit(&mut st, "qala/indicators/a/b", 10, "indicator"));
    }
}
