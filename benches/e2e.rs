//! End-to-end throughput: QoS-1 messages published by N MQTT connections through a broker
//! (embedded rumqttd, or Mosquitto) into the gateway and committed in its sinks (SQLite,
//! SQLite + VictoriaMetrics). Reports readings/s from the first publish to the last commit,
//! and the ingest lag p50/p99 of that run (from the gateway's own histogram).
//!
//!   cargo bench --bench e2e                    # 50,000 messages per scenario
//!   cargo bench --bench e2e -- --messages 200000 --only embedded
//!   cargo bench --bench e2e -- --indicators off   # without the indicator engine
//!
//! Servers are started like the tests start them (tests/common): free loopback ports, temp
//! dirs, stopped by PID. Needs mosquitto and victoria-metrics (scripts/test.sh installs them).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qala::config::{Settings, SqliteSync};
use qala::gateway::Gateway;
use qala::telemetry::{metrics_handle, prom};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

struct Scenario {
    name: &'static str,
    broker: Broker,
    victoria: bool,
    sync: SqliteSync,
    /// Gateway subscriber sessions (a shared subscription when > 1).
    sessions: usize,
    /// Readings per message: 1 (a JSON object) or a SenML pack of this many records.
    pack: usize,
}

#[derive(Clone, Copy)]
enum Broker {
    Embedded,
    Mosquitto { window: u32 },
}

struct Outcome {
    messages: u64,
    seconds: f64,
    stored: u64,
    lag_p50: Option<f64>,
    lag_p99: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let messages: u64 = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let publishers: usize = arg("--publishers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let only = arg("--only");
    // `--indicators off`: the gateway without its indicator engine (to measure what it costs).
    let indicators = arg("--indicators").as_deref() != Some("off");
    let sc = |name, broker, victoria, sessions, pack| Scenario {
        name,
        broker,
        victoria,
        sync: SqliteSync::Full,
        sessions,
        pack,
    };
    let w20 = Broker::Mosquitto { window: 20 };
    let w1000 = Broker::Mosquitto { window: 1000 };
    let scenarios = [
        sc("embedded → SQLite", Broker::Embedded, false, 1, 1),
        sc(
            "embedded → SQLite + VictoriaMetrics",
            Broker::Embedded,
            true,
            1,
            1,
        ),
        sc(
            "Mosquitto (window 20), 1 session → SQLite",
            w20,
            false,
            1,
            1,
        ),
        sc(
            "Mosquitto (window 20), 4 sessions → SQLite",
            w20,
            false,
            4,
            1,
        ),
        sc(
            "Mosquitto (window 1000), 4 sessions → SQLite + VictoriaMetrics",
            w1000,
            true,
            4,
            1,
        ),
        sc(
            "Mosquitto (window 1000), 4 sessions, SenML packs of 10 → SQLite",
            w1000,
            false,
            4,
            10,
        ),
        sc(
            "Mosquitto (window 1000), 4 sessions, SenML packs of 10 → SQLite + VictoriaMetrics",
            w1000,
            true,
            4,
            10,
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("{messages} messages per scenario, {publishers} publisher connections, QoS 1, acked after the spool commit; a reading = one sensor at one instant (2 metrics); one per message unless packed\n");
    println!("| scenario | readings/s | messages/s | time (s) | stored | lag p50 | lag p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for s in scenarios.iter().filter(|s| {
        only.as_deref()
            .is_none_or(|o| s.name.to_lowercase().contains(&o.to_lowercase()))
    }) {
        let out = rt.block_on(run(s, messages, publishers, indicators));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} |",
            s.name,
            out.stored as f64 / out.seconds,
            out.stored as f64 / s.pack as f64 / out.seconds,
            out.seconds,
            out.stored,
            ms(out.lag_p50),
            ms(out.lag_p99)
        );
        assert_eq!(out.stored, out.messages, "{}: lost readings", s.name);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|s| format!("{:.1} ms", s * 1000.0))
        .unwrap_or_else(|| "–".into())
}

async fn run(s: &Scenario, messages: u64, publishers: usize, indicators: bool) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let mosquitto = match s.broker {
        Broker::Mosquitto { window } => {
            Some(common::Mosquitto::start_with(common::MosquittoOptions {
                max_inflight_messages: window,
                ..Default::default()
            }))
        }
        Broker::Embedded => None,
    };
    let victoria = s.victoria.then(common::VictoriaMetrics::start);
    let port = mosquitto
        .as_ref()
        .map(|m| m.port)
        .unwrap_or_else(common::free_port);

    let mut settings = Settings::default();
    settings.broker.embedded = mosquitto.is_none();
    settings.broker.listen = format!("127.0.0.1:{port}");
    settings.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    settings.mqtt.client_id = format!("qala-bench-{port}");
    settings.mqtt.sessions = s.sessions;
    settings.sqlite.path = dir.path().join("bench.sqlite");
    settings.spool.dir = dir.path().join("spool");
    settings.sqlite.synchronous = s.sync;
    settings.http.listen = "127.0.0.1:0".into();
    settings.indicators.enabled = indicators;
    if let Some(vm) = &victoria {
        settings.influxdb.enabled = true;
        settings.influxdb.url = vm.url();
        settings.influxdb.org = "bench".into();
        settings.influxdb.bucket = "bench".into();
        settings.influxdb.token = Some("bench".into());
    }
    settings.validate().expect("bench config");
    let gateway = Gateway::start(settings).await.expect("gateway starts");
    assert!(
        gateway.wait_taking_messages(Duration::from_secs(15)).await,
        "gateway subscribed"
    );

    let before = prom::parse(&metrics_handle().render());
    let stored_before = prom::sum(&before, "qala_readings_stored_total", &[("sink", "sqlite")]);
    let start = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let per = messages / publishers as u64;
    let total = per * publishers as u64 * s.pack as u64;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let acked = acked.clone();
        tasks.push(tokio::spawn(publish(port, p, per, s.pack, acked)));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut stored = 0u64;
    while Instant::now() < deadline {
        let now = prom::parse(&metrics_handle().render());
        stored = (prom::sum(&now, "qala_readings_stored_total", &[("sink", "sqlite")])
            - stored_before) as u64;
        if stored >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let after = prom::parse(&metrics_handle().render());
    let (lag_p50, lag_p99) = lag_delta(&before, &after);
    gateway.shutdown().await;
    drop(victoria);
    drop(mosquitto);
    Outcome {
        messages: total,
        seconds,
        stored,
        lag_p50,
        lag_p99,
    }
}

/// The lag p50 and p99 observed between two scrapes.
fn lag_delta(before: &[prom::Sample], after: &[prom::Sample]) -> (Option<f64>, Option<f64>) {
    let q = |q| prom::histogram_quantile_between(before, after, "qala_ingest_lag_seconds", q);
    (q(0.5), q(0.99))
}

const SENSORS_PER_PUBLISHER: usize = 50;

async fn publish(port: u16, index: usize, count: u64, pack: usize, acked: Arc<AtomicU64>) {
    let mut opts = MqttOptions::new(format!("bench-pub-{port}-{index}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let poll_acked = acked.clone();
    let poller = tokio::spawn(async move {
        let mut mine = 0;
        while mine < count {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    mine += 1;
                    poll_acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher {index}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    // Sensor time is the wall clock, so the lag histogram measures publish → commit. A sensor
    // never repeats a millisecond (the key is sensor, metric, time): a repeat would overwrite
    // and the count would come up short, so it steps one millisecond past its last reading.
    let mut last_ms = [0i64; SENSORS_PER_PUBLISHER];
    for i in 0..count as i64 {
        let sensor = (i as usize) % SENSORS_PER_PUBLISHER;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let ts = now_ms.max(last_ms[sensor] + 1);
        last_ms[sensor] = ts + pack as i64 - 1;
        let payload = if pack <= 1 {
            format!(r#"{{"ts":{ts},"volume":{i}.25,"flow":1.5}}"#)
        } else {
            // A SenML pack: one record per millisecond from ts, two metrics each.
            let mut p = format!(
                r#"[{{"bt":{}.{:03},"n":"volume","v":{i}.25}},{{"n":"flow","v":1.5}}"#,
                ts / 1000,
                ts % 1000
            );
            for k in 1..pack {
                p.push_str(&format!(r#",{{"n":"volume","t":0.{k:03},"v":{i}.25}},{{"n":"flow","t":0.{k:03},"v":1.5}}"#));
            }
            p.push(']');
            p
        };
        client
            .publish(
                format!("city/bench/d{index}/water/m-{index}-{sensor}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
    }
    let _ = poller.await;
    let _ = client.disconnect().await;
}
