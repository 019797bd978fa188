//! `qala demo`: one process with the embedded broker on a free port, the gateway, and a small
//! fleet publishing for a while; a live progress line, then a summary of what was published,
//! stored and dead-lettered, the ingest lag, and where the data is.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::broker;
use crate::config::Settings;
use crate::gateway::{Gateway, StartError};
use crate::ingest::mqtt::now_ns;
use crate::model::Kind;
use crate::sim::fleet::Fleet;
use crate::telemetry::{metrics_handle, prom};

/// What the demo plays.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub data_dir: PathBuf,
    /// Messages per second, all sensors together.
    pub rate: u32,
    pub sensors_per_kind: usize,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("demo: {0}")]
    Other(String),
}

/// Per kind: messages published (acked by the broker), malformed among them, readings stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct KindTally {
    pub published: u64,
    pub malformed: u64,
    pub stored: u64,
}

/// The outcome, printed by [`DemoSummary::print`].
#[derive(Debug)]
pub struct DemoSummary {
    pub per_kind: BTreeMap<Kind, KindTally>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub lag_p50_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    pub elapsed: Duration,
    pub sqlite_path: PathBuf,
    pub complete: bool,
}

pub async fn run(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let broker_addr =
        broker::free_loopback_addr().map_err(|e| DemoError::Other(format!("no free port: {e}")))?;
    let mut settings = Settings::default();
    settings.broker.embedded = true;
    settings.broker.listen = broker_addr.to_string();
    settings.mqtt.url = format!("mqtt://{broker_addr}");
    settings.mqtt.client_id = "qala-demo-gateway".into();
    settings.sqlite.path = opts.data_dir.join("demo.sqlite");
    settings.spool.dir = opts.data_dir.join("demo.spool");
    settings.sqlite.synchronous = crate::config::SqliteSync::Normal;
    settings.http.listen = "127.0.0.1:0".into();
    settings.validate().map_err(StartError::from)?;

    let gateway = Gateway::start(settings).await?;
    // Publish only once the gateway is subscribed: the broker keeps no messages for a
    // subscription that does not exist yet, and the summary must add up.
    if !gateway.wait_taking_messages(Duration::from_secs(10)).await {
        gateway.shutdown().await;
        return Err(DemoError::Other(
            "the gateway did not subscribe to the embedded broker within 10 s".into(),
        ));
    }
    let http = gateway.http_addr();
    let sqlite_path = gateway.sqlite_path().to_path_buf();
    eprintln!(
        "qala demo: broker mqtt://{broker_addr}  http://{http}/metrics  data {}",
        sqlite_path.display()
    );

    // The publisher: one MQTT connection, QoS 1; what the broker acked counts as published.
    let mut opts_mqtt = MqttOptions::new(
        "qala-demo-fleet",
        broker_addr.ip().to_string(),
        broker_addr.port(),
    );
    opts_mqtt.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(opts_mqtt, 1024);
    let acked = Arc::new(AtomicU64::new(0));
    let acked_poll = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_poll.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "demo publisher connection error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let mut fleet = Fleet::new("almaty", opts.sensors_per_kind.max(1), opts.seed, 100);
    let mut per_kind: BTreeMap<Kind, KindTally> = Kind::ALL
        .iter()
        .map(|k| (*k, KindTally::default()))
        .collect();
    let start = Instant::now();
    let tick = Duration::from_millis(20);
    let per_tick = (f64::from(opts.rate) * tick.as_secs_f64()).max(1.0);
    let mut owed = 0.0;
    let mut ticker = tokio::time::interval(tick);
    let mut last_progress = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut sent = 0u64;
    while start.elapsed() < opts.duration {
        ticker.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let m = fleet.next_message(now_ns());
            let t = per_kind.entry(m.kind).or_default();
            t.published += 1;
            if !m.valid {
                t.malformed += 1;
            }
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await
                .map_err(|e| DemoError::Other(format!("publish: {e}")))?;
            sent += 1;
        }
        if last_progress.elapsed() >= Duration::from_secs(if tty { 1 } else { 5 }) {
            last_progress = Instant::now();
            progress_line(
                start.elapsed(),
                opts.duration,
                acked.load(Ordering::Relaxed),
                tty,
            );
        }
    }

    // Wait for the broker's acks, then for the gateway to store or dead-letter everything.
    let settle = Instant::now() + Duration::from_secs(30);
    let mut complete = false;
    while Instant::now() < settle {
        let samples = prom::parse(&metrics_handle().render());
        let handled = prom::sum(
            &samples,
            "qala_readings_stored_total",
            &[("sink", "sqlite")],
        ) + prom::sum(&samples, "qala_messages_rejected_total", &[]);
        if acked.load(Ordering::Relaxed) >= sent && handled as u64 >= sent {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress_line(
        start.elapsed(),
        opts.duration,
        acked.load(Ordering::Relaxed),
        tty,
    );
    if tty {
        eprintln!();
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;

    let samples = prom::parse(&metrics_handle().render());
    for (kind, t) in per_kind.iter_mut() {
        t.stored = prom::sum(
            &samples,
            "qala_readings_stored_total",
            &[("sink", "sqlite"), ("kind", kind.as_str())],
        ) as u64;
    }
    let rejected_by_reason = samples
        .iter()
        .filter(|s| s.name == "qala_messages_rejected_total" && s.value > 0.0)
        .filter_map(|s| Some((s.label("reason")?.to_owned(), s.value as u64)))
        .collect();
    let summary = DemoSummary {
        per_kind,
        rejected_by_reason,
        lag_p50_s: prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.5),
        lag_p99_s: prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.99),
        elapsed: start.elapsed(),
        sqlite_path,
        complete,
    };
    gateway.shutdown().await;
    Ok(summary)
}

fn progress_line(elapsed: Duration, total: Duration, published: u64, tty: bool) {
    let samples = prom::parse(&metrics_handle().render());
    let stored = prom::sum(
        &samples,
        "qala_readings_stored_total",
        &[("sink", "sqlite")],
    );
    let rejected = prom::sum(&samples, "qala_messages_rejected_total", &[]);
    let p50 = prom::histogram_quantile(&samples, "qala_ingest_lag_seconds", 0.5);
    let line = format!(
        "[{:>4.0}s/{:.0}s] published {published}  stored {stored:.0}  dead-lettered {rejected:.0}  lag p50 {}",
        elapsed.as_secs_f64(),
        total.as_secs_f64(),
        fmt_secs(p50)
    );
    let mut err = std::io::stderr();
    if tty {
        let _ = write!(err, "\r{line:<100}");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

fn fmt_secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => "–".into(),
    }
}

impl DemoSummary {
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "\nQala demo summary ({:.1} s)",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            out,
            "  {:<8} {:>10} {:>10} {:>14}",
            "kind", "published", "stored", "malformed sent"
        )?;
        let mut total = KindTally::default();
        for (kind, t) in &self.per_kind {
            writeln!(
                out,
                "  {:<8} {:>10} {:>10} {:>14}",
                kind.as_str(),
                t.published,
                t.stored,
                t.malformed
            )?;
            total.published += t.published;
            total.stored += t.stored;
            total.malformed += t.malformed;
        }
        writeln!(
            out,
            "  {:<8} {:>10} {:>10} {:>14}",
            "total", total.published, total.stored, total.malformed
        )?;
        let dead: u64 = self.rejected_by_reason.values().sum();
        let reasons: Vec<String> = self
            .rejected_by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        writeln!(
            out,
            "  dead-lettered by the gateway: {dead} ({})",
            reasons.join(", ")
        )?;
        writeln!(
            out,
            "  ingest lag (sensor time → stored): p50 {}, p99 {}",
            fmt_secs(self.lag_p50_s),
            fmt_secs(self.lag_p99_s)
        )?;
        if !self.complete {
            writeln!(
                out,
                "  WARNING: not everything published was stored or dead-lettered within 30 s"
            )?;
        }
        let db = self.sqlite_path.display();
        writeln!(out, "\nThe data is in {db} (SQLite). Try:")?;
        writeln!(
            out,
            "  sqlite3 {db} \"SELECT kind, count(*), min(time_utc), max(time_utc) FROM readings_view GROUP BY kind\""
        )?;
        writeln!(
            out,
            "  sqlite3 {db} \"SELECT time_utc, district, sensor_id, value, unit FROM readings_view WHERE metric = 'pm2_5' ORDER BY time_ns DESC LIMIT 10\""
        )?;
        writeln!(out, "  sqlite3 {db} \"SELECT reason, topic, message FROM dead_letters ORDER BY id DESC LIMIT 10\"")?;
        Ok(())
    }
}
