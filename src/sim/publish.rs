//! The simulator's MQTT side: one rumqttc connection per group of sensors, publishes counted as
//! the broker acknowledges them (PUBACK for QoS 1), reconnect storms on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::task::JoinHandle;

/// Counters shared with a connection's event-loop task.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub published: AtomicU64,
    pub published_qos1: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
}

struct Conn {
    client: AsyncClient,
    task: JoinHandle<()>,
}

/// Every connection of a simulation run.
pub struct Publisher {
    host: String,
    port: u16,
    prefix: String,
    conns: Vec<Conn>,
    pub stats: Arc<ConnStats>,
}

/// Why publishing could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("--broker {0}: expected mqtt://host:port")]
    Url(String),
    #[error("publishing to the broker failed: {0}")]
    Client(String),
}

/// `mqtt://host:port` → (host, port).
pub fn broker_addr(url: &str) -> Result<(String, u16), PublishError> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| PublishError::Url(url.to_owned()))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| PublishError::Url(url.to_owned()))?;
    let port: u16 = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| PublishError::Url(url.to_owned()))?;
    if host.is_empty() {
        return Err(PublishError::Url(url.to_owned()));
    }
    Ok((host.to_owned(), port))
}

impl Publisher {
    /// Opens `n` connections (client ids `{prefix}-{i}`).
    pub fn connect(url: &str, n: usize, prefix: &str) -> Result<Publisher, PublishError> {
        let (host, port) = broker_addr(url)?;
        let stats = Arc::new(ConnStats::default());
        let mut p = Publisher {
            host,
            port,
            prefix: prefix.to_owned(),
            conns: Vec::with_capacity(n),
            stats,
        };
        for i in 0..n {
            let c = p.open(i);
            p.conns.push(c);
        }
        Ok(p)
    }

    fn open(&self, i: usize) -> Conn {
        let mut opts = MqttOptions::new(format!("{}-{i}", self.prefix), &self.host, self.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_inflight(100);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let stats = self.stats.clone();
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(Event::Incoming(Packet::ConnAck(_))) => failures = 0,
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        if failures == 1 || failures.is_multiple_of(20) {
                            tracing::warn!(error = %e, failures, "simulator connection failed; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_millis(
                            100 * u64::from(failures.min(20)),
                        ))
                        .await;
                    }
                }
            }
        });
        Conn { client, task }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Publishes on connection `conn` (waits when its request queue is full: backpressure).
    pub async fn publish(
        &self,
        conn: usize,
        topic: String,
        payload: Vec<u8>,
        qos: u8,
    ) -> Result<(), PublishError> {
        let c = &self.conns[conn % self.conns.len()];
        let q = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        c.client
            .publish(topic, q, false, payload)
            .await
            .map_err(|e| PublishError::Client(e.to_string()))?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        if qos > 0 {
            self.stats.published_qos1.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A reconnect storm: every connection disconnects (after what it has queued) and connects
    /// again at once.
    pub async fn storm(&mut self) {
        // What is in flight is acked first: the storm tests the gateway, not the count.
        self.wait_acked(Duration::from_secs(10)).await;
        let old: Vec<Conn> = std::mem::take(&mut self.conns);
        let n = old.len();
        for c in &old {
            let _ = c.client.disconnect().await;
        }
        for c in old {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.task).await;
        }
        for i in 0..n {
            let c = self.open(i);
            self.conns.push(c);
        }
    }

    /// Waits until the broker has acknowledged every QoS-1 publish so far, or `timeout`.
    pub async fn wait_acked(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = &self.stats;
            if s.acked.load(Ordering::Relaxed) >= s.published_qos1.load(Ordering::Relaxed) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the broker has acknowledged every QoS-1 publish (or `timeout`), then
    /// disconnects every connection.
    pub async fn finish(self, timeout: Duration) -> bool {
        let all = self.wait_acked(timeout).await;
        for c in &self.conns {
            let _ = c.client.disconnect().await;
        }
        for c in self.conns {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.task).await;
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_are_checked() {
        assert_eq!(
            broker_addr("mqtt://127.0.0.1:1883").ok(),
            Some(("127.0.0.1".into(), 1883))
        );
        assert!(broker_addr("tcp://x:1").is_err());
        assert!(broker_addr("mqtt://x").is_err());
        assert!(broker_addr("mqtt://:1883").is_err());
    }
}
