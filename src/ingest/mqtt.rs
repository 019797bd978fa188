//! An MQTT subscriber session (rumqttc, MQTT 3.1.1): persistent session under a stable client
//! id, manual acks, resubscribe after every connect, reconnect with capped backoff and full
//! jitter. The event loop only polls and forwards; acks come back through the client's request
//! channel from the acker, which never waits on it (`try_ack`), so neither side can block the
//! other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

use crate::config::{mqtt_url, ConfigError, MqttSettings};
use crate::sink::retry;

/// Where the gateway is in its life; sessions read it between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forward every publish.
    Running,
    /// Shutting down: forward nothing more (unforwarded messages stay unacked and come back).
    Draining,
    /// All acks sent: disconnect and stop.
    Disconnect,
}

/// What the acker needs to acknowledge one QoS-1 message on the connection that delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    pub session: usize,
    /// Connection generation of the session when the message arrived.
    pub generation: u64,
    pub pkid: u16,
}

/// A message as received, before decoding.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub received_ns: i64,
    /// None for QoS 0 (nothing to acknowledge).
    pub ack: Option<AckToken>,
}

/// The shared face of one session: its client (for acks) and its state.
#[derive(Clone)]
pub struct SessionHandle {
    pub index: usize,
    pub client: AsyncClient,
    /// Incremented at every CONNACK; acks of older generations are dropped.
    pub generation: Arc<AtomicU64>,
    pub connected: Arc<AtomicBool>,
    /// The broker granted every subscription of the current connection.
    pub subscribed: Arc<AtomicBool>,
    /// The session task has ended: nothing will drain its request queue any more.
    pub closed: Arc<AtomicBool>,
}

impl SessionHandle {
    /// Connected and subscribed: messages published now reach Qala.
    pub fn is_taking_messages(&self) -> bool {
        self.connected.load(Ordering::Acquire) && self.subscribed.load(Ordering::Acquire)
    }

    /// Queues the PUBACK for `token` without waiting. A token of an earlier connection is
    /// dropped: the broker redelivers that message and idempotent writes absorb the repeat.
    pub fn try_ack(&self, token: AckToken) -> AckOutcome {
        if token.generation != self.generation.load(Ordering::Acquire) {
            return AckOutcome::Stale;
        }
        let mut p = rumqttc::Publish::new("", QoS::AtLeastOnce, Vec::<u8>::new());
        p.pkid = token.pkid;
        match self.client.try_ack(&p) {
            Ok(()) => AckOutcome::Queued,
            Err(rumqttc::ClientError::TryRequest(_)) if !self.is_closed() => AckOutcome::Full,
            Err(_) => AckOutcome::Stale,
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// What became of an ack handed to [`SessionHandle::try_ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// On its way to the broker.
    Queued,
    /// The session's request queue is full (its event loop is busy): try again shortly.
    Full,
    /// Dropped: the connection it came on is gone, or the session has ended.
    Stale,
}

/// Builds the rumqttc options of a subscriber session from config: the connection (see
/// [`connection_options`]), a persistent session, manual acks.
pub fn options(settings: &MqttSettings, client_id: &str) -> Result<MqttOptions, ConfigError> {
    let mut o = connection_options(settings, client_id)?;
    o.set_clean_session(false);
    o.set_manual_acks(true);
    // Accept any size the broker sends: an oversize payload is dead-lettered by the pipeline
    // (reason too_large) instead of killing the connection and coming back forever.
    o.set_max_packet_size(268_435_455, settings.max_packet_size.max(64 * 1024));
    Ok(o)
}

/// The connection part of the rumqttc options every Qala client shares (the subscriber
/// sessions, the indicator publisher): the broker of `mqtt.url`, keep-alive, credentials and
/// TLS (`mqtt.ca_file`, client certificate), under `client_id`.
pub fn connection_options(
    settings: &MqttSettings,
    client_id: &str,
) -> Result<MqttOptions, ConfigError> {
    let url = mqtt_url(&settings.url)?;
    let mut o = MqttOptions::new(client_id, url.host, url.port);
    o.set_keep_alive(settings.keep_alive);
    if let (Some(user), Some(pass)) = (&settings.username, &settings.password) {
        o.set_credentials(user, pass);
    } else if let Some(user) = &settings.username {
        o.set_credentials(user, "");
    }
    if url.tls {
        let read = |key: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ConfigError::Key {
                key: key.to_owned(),
                message: format!("cannot read {}: {e}", p.display()),
            })
        };
        let transport = match &settings.ca_file {
            Some(ca) => {
                let client_auth = match (&settings.client_cert_file, &settings.client_key_file) {
                    (Some(c), Some(k)) => Some((
                        read("mqtt.client_cert_file", c)?,
                        read("mqtt.client_key_file", k)?,
                    )),
                    _ => None,
                };
                Transport::Tls(TlsConfiguration::Simple {
                    ca: read("mqtt.ca_file", ca)?,
                    alpn: None,
                    client_auth,
                })
            }
            None => Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// Starts session `index`: returns its handle and the task that drives it.
pub fn spawn(
    index: usize,
    settings: &MqttSettings,
    deliveries: mpsc::Sender<Delivery>,
    phase: watch::Receiver<Phase>,
) -> Result<(SessionHandle, tokio::task::JoinHandle<()>), ConfigError> {
    let (client_id, topics) = settings.session(index);
    let opts = options(settings, &client_id)?;
    // The hold between this session and the shared pipeline queue: as many messages as the
    // broker may have unacked, moved on in order by a task of their own.
    let (hold_tx, mut hold_rx) = mpsc::channel::<Delivery>(settings.inflight_window.max(1));
    tokio::spawn(async move {
        while let Some(d) = hold_rx.recv().await {
            if deliveries.send(d).await.is_err() {
                break;
            }
        }
    });
    let deliveries = hold_tx;
    // Room for every ack the broker's window allows, so the acker never waits on this channel.
    let (client, eventloop) = AsyncClient::new(opts, settings.inflight_window + 64);
    let handle = SessionHandle {
        index,
        client,
        generation: Arc::new(AtomicU64::new(0)),
        connected: Arc::new(AtomicBool::new(false)),
        subscribed: Arc::new(AtomicBool::new(false)),
        closed: Arc::new(AtomicBool::new(false)),
    };
    let qos = if settings.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let filters: Vec<SubscribeFilter> = topics
        .into_iter()
        .map(|t| SubscribeFilter::new(t, qos))
        .collect();
    let task = tokio::spawn(drive(
        handle.clone(),
        eventloop,
        filters,
        deliveries,
        phase,
        settings.reconnect_max_delay,
        client_id,
    ));
    Ok((handle, task))
}

async fn drive(
    session: SessionHandle,
    mut eventloop: EventLoop,
    filters: Vec<SubscribeFilter>,
    deliveries: mpsc::Sender<Delivery>,
    mut phase: watch::Receiver<Phase>,
    reconnect_max: Duration,
    client_id: String,
) {
    let mut failures: u32 = 0;
    // SUBSCRIBE is queued without waiting (this task drains the queue it would wait on); when
    // the queue is full it is queued again after the next event, which frees a slot.
    let mut subscribe_pending = false;
    let mut pipeline_gone = false;
    let received = metrics::counter!("qala_messages_received_total");
    let received_here =
        metrics::counter!("qala_session_messages_total", "session" => session.index.to_string());
    loop {
        if subscribe_pending {
            match session.client.try_subscribe_many(filters.clone()) {
                Ok(()) => subscribe_pending = false,
                Err(e) => {
                    tracing::debug!(session = session.index, error = %e, "SUBSCRIBE not queued yet")
                }
            }
        }
        let event = eventloop.poll().await;
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if *phase.borrow() != Phase::Running {
                    continue; // not forwarded, never acked: the broker keeps it for next time
                }
                received.increment(1);
                received_here.increment(1);
                let ack = (p.qos != QoS::AtMostOnce).then(|| AckToken {
                    session: session.index,
                    generation: session.generation.load(Ordering::Acquire),
                    pkid: p.pkid,
                });
                let d = Delivery {
                    topic: p.topic,
                    payload: p.payload,
                    received_ns: now_ns(),
                    ack,
                };
                // Into the session's hold (room for the broker's whole window), so that a paused
                // pipeline does not stop this loop: pings and acks keep flowing. Only a broker
                // that sends past the window (or a QoS 0 flood) fills it; then this waits, the
                // socket is not read, and the broker holds the messages (backpressure).
                let sent = match deliveries.try_send(d) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(d)) => {
                        deliveries.send(d).await.map_err(drop)
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                };
                if sent.is_err() && *phase.borrow() == Phase::Running && !pipeline_gone {
                    pipeline_gone = true;
                    tracing::error!(
                        session = session.index,
                        "the pipeline has stopped: messages are not forwarded (unacked, the broker keeps them)"
                    );
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                let generation = session.generation.fetch_add(1, Ordering::AcqRel) + 1;
                session.subscribed.store(false, Ordering::Release);
                session.connected.store(true, Ordering::Release);
                failures = 0;
                tracing::info!(
                    session = session.index,
                    client_id,
                    generation,
                    session_present = c.session_present,
                    "connected to the MQTT broker"
                );
                subscribe_pending = true;
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                let granted = s
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                session.subscribed.store(granted, Ordering::Release);
                for (code, f) in s.return_codes.iter().zip(&filters) {
                    match code {
                        SubscribeReasonCode::Failure => tracing::error!(
                            session = session.index,
                            filter = f.path,
                            "the broker refused the subscription"
                        ),
                        SubscribeReasonCode::Success(q) => tracing::info!(
                            session = session.index, filter = f.path, qos = ?q, "subscribed"
                        ),
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                session.connected.store(false, Ordering::Release);
                session.subscribed.store(false, Ordering::Release);
                tracing::info!(session = session.index, "disconnected from the MQTT broker");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                subscribe_pending = false;
                session.connected.store(false, Ordering::Release);
                session.subscribed.store(false, Ordering::Release);
                if *phase.borrow() == Phase::Disconnect {
                    break;
                }
                failures = failures.saturating_add(1);
                let delay = retry::backoff_capped(failures, rand::random::<f64>(), reconnect_max)
                    .max(Duration::from_millis(50));
                log_connection_error(session.index, &e, failures, delay);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = phase.wait_for(|p| *p == Phase::Disconnect) => break,
                }
            }
        }
    }
    session.closed.store(true, Ordering::Release);
}

fn log_connection_error(session: usize, e: &ConnectionError, failures: u32, delay: Duration) {
    let delay_ms = delay.as_millis() as u64;
    if failures == 1 {
        tracing::warn!(session, error = %e, retry_in_ms = delay_ms, "MQTT connection lost; reconnecting");
    } else {
        tracing::warn!(session, error = %e, failures, retry_in_ms = delay_ms, "MQTT reconnect failed");
    }
}

/// Wall-clock now, ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
