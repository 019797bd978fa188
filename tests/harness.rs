//! Self-test of the shared harness in `tests/common`: real Mosquitto and VictoriaMetrics
//! servers, the Debian MQTT clients, and the Prometheus-text and SQLite helpers. The gateway
//! part of the harness is only compiled here; the gateway's own tests exercise it.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

#[test]
fn free_port_never_repeats_within_a_process() {
    let ports: BTreeSet<u16> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
}

#[test]
#[should_panic(expected = "timed out after")]
fn wait_until_panics_naming_what_it_waited_for() {
    wait_until(
        "something that never happens",
        Duration::from_millis(120),
        || false,
    );
}

#[test]
fn mosquitto_delivers_published_messages_to_a_collecting_subscriber() {
    let mosquitto = Mosquitto::start();
    assert_eq!(
        mosquitto.url(),
        format!("mqtt://127.0.0.1:{}", mosquitto.port)
    );
    let port = mosquitto.port;

    let before = mosquitto.subscription_count("t/#");
    let collector =
        thread::spawn(move || mosquitto_sub_collect(port, "t/#", 3, Duration::from_secs(20)));
    mosquitto.wait_for_subscription("t/#", before, Duration::from_secs(15));

    mosquitto_pub(port, "t/1", b"hello", 1);
    mosquitto_pub(port, "t/2", b"", 0);
    mosquitto_pub(port, "t/3", b"line one\nline two", 1);

    let got = collector.join().expect("collector thread");
    let mut got: Vec<(String, String)> = got.into_iter().map(|(t, p)| (t, text(&p))).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("t/1".to_string(), "hello".to_string()),
            ("t/2".to_string(), String::new()),
            ("t/3".to_string(), "line one\nline two".to_string()),
        ],
        "broker log:\n{}",
        mosquitto.log_tail(30)
    );
}

#[test]
fn mosquitto_sub_is_live_when_start_returns_and_keeps_binary_payloads() {
    let mosquitto = Mosquitto::start();
    let sub = MosquittoSub::start(mosquitto.port, "bin/#");
    let payload: Vec<u8> = (0..=255u8).collect();
    mosquitto_pub(mosquitto.port, "bin/all-bytes", &payload, 1);
    assert!(sub.wait_for(1, Duration::from_secs(10)), "nothing arrived");
    let got = sub.stop();
    assert_eq!(got, vec![("bin/all-bytes".to_string(), payload)]);
}

#[test]
fn mosquitto_restart_keeps_a_persistent_qos1_session_and_its_queue() {
    let mut mosquitto = Mosquitto::start();
    let port = mosquitto.port;
    let persistent = SubscribeOptions {
        qos: 1,
        client_id: Some("harness-sub".to_string()),
        clean_session: false,
    };

    // Connect once to create the session with its subscription, then go offline.
    let sub = MosquittoSub::start_with(port, "q/#", &persistent);
    assert!(sub.stop().is_empty());

    mosquitto_pub(port, "q/a", b"first", 1);
    mosquitto_pub(port, "q/b", b"second", 1);

    let pid_before = mosquitto.pid();
    mosquitto.restart();
    assert_eq!(mosquitto.port, port, "restart must keep the port");
    assert_ne!(
        mosquitto.pid(),
        pid_before,
        "restart must start a new process"
    );
    assert!(
        mosquitto.dir().join("mosquitto.db").is_file(),
        "SIGTERM should have written the persistence db"
    );

    let sub = MosquittoSub::start_with(port, "q/#", &persistent);
    assert!(
        sub.wait_for(2, Duration::from_secs(15)),
        "queued messages did not come back after the restart; got {:?}\n{}",
        sub.messages(),
        mosquitto.log_tail(30)
    );
    let got: Vec<(String, String)> = sub.stop().into_iter().map(|(t, p)| (t, text(&p))).collect();
    assert_eq!(
        got,
        vec![
            ("q/a".to_string(), "first".to_string()),
            ("q/b".to_string(), "second".to_string()),
        ]
    );
}

#[test]
fn mosquitto_pub_lines_delivers_60000_qos1_messages() {
    const N: usize = 60_000;
    let mosquitto = Mosquitto::start_with(MosquittoOptions {
        max_queued_messages: 1_000_000,
        ..MosquittoOptions::default()
    });
    let sub = MosquittoSub::start(mosquitto.port, "bulk/x");
    let lines: Vec<String> = (0..N)
        .map(|i| format!("m{i:06} {}", "x".repeat(80)))
        .collect();

    let start = Instant::now();
    mosquitto_pub_lines(
        mosquitto.port,
        "bulk/x",
        &lines,
        1,
        || sub.received() >= N,
        Duration::from_secs(120),
    );
    // Anything still in flight after the publisher exited.
    sub.wait_for(N, Duration::from_secs(10));
    let elapsed = start.elapsed();
    let got = sub.stop();
    let distinct: BTreeSet<&[u8]> = got.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(
        distinct.len(),
        N,
        "{} messages ({} distinct) of {N} arrived in {elapsed:?}\n{}",
        got.len(),
        distinct.len(),
        mosquitto.log_tail(30)
    );
    assert!(got.iter().all(|(t, _)| t == "bulk/x"));
    eprintln!(
        "{N} QoS-1 messages through Mosquitto in {elapsed:.2?} ({:.0} msg/s)",
        N as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn victoria_metrics_stores_influx_lines_and_keeps_them_across_a_restart() {
    let mut vm = VictoriaMetrics::start();
    assert_eq!(vm.url(), format!("http://127.0.0.1:{}", vm.port));

    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building an HTTP client");
    let response = client
        .post(format!(
            "{}/api/v2/write?org=o&bucket=b&precision=ns",
            vm.url()
        ))
        .header("Authorization", "Token t")
        .body("air,city=almaty,sensor_id=s1 pm2_5=12.5 1700000000000000000")
        .send()
        .expect("POST /api/v2/write");
    assert_eq!(response.status().as_u16(), 204, "{}", vm.log_tail(20));

    let selector = "{__name__=\"air_pm2_5\",sensor_id=\"s1\"}";
    let check = |series: &[Series]| {
        assert_eq!(series.len(), 1, "{series:?}");
        let s = &series[0];
        assert_eq!(
            s.labels.get("__name__").map(String::as_str),
            Some("air_pm2_5")
        );
        assert_eq!(s.labels.get("city").map(String::as_str), Some("almaty"));
        assert_eq!(s.labels.get("sensor_id").map(String::as_str), Some("s1"));
        assert_eq!(s.values, vec![12.5]);
        assert_eq!(s.timestamps, vec![1_700_000_000_000]);
        assert_eq!(distinct_points(series), 1);
    };
    check(&vm.wait_for_samples(selector, 1, Duration::from_secs(20)));

    // A point from a sensor whose clock runs an hour ahead is stored, and the export finds it.
    let ahead_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
        + 3_600_000;
    let response = client
        .post(format!("{}/api/v2/write?precision=ms", vm.url()))
        .header("Authorization", "Token t")
        .body(format!("air,city=almaty,sensor_id=s2 pm2_5=7 {ahead_ms}"))
        .send()
        .expect("POST /api/v2/write");
    assert_eq!(response.status().as_u16(), 204);
    let ahead = vm.wait_for_samples("{sensor_id=\"s2\"}", 1, Duration::from_secs(20));
    assert_eq!(ahead[0].timestamps, vec![ahead_ms]);

    vm.stop();
    vm.start_again();
    check(&vm.wait_for_samples(selector, 1, Duration::from_secs(20)));
    check(&vm.export(selector));
    assert_eq!(
        vm.export("air_pm2_5").len(),
        2,
        "both sensors' series by metric name"
    );
}

#[test]
fn distinct_points_ignores_duplicates_that_victoria_metrics_keeps() {
    let series = |sensor: &str, ts: Vec<i64>| Series {
        labels: [("__name__", "air_pm2_5"), ("sensor_id", sensor)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        values: vec![1.0; ts.len()],
        timestamps: ts,
    };
    let all = vec![
        series("a", vec![1, 1, 2]),
        series("b", vec![1]),
        series("a", vec![2, 3]),
    ];
    assert_eq!(distinct_points(&all), 4);
}

const METRICS: &str = r#"# HELP qala_messages_received_total Messages taken from MQTT.
# TYPE qala_messages_received_total counter
qala_messages_received_total{sphere="air"} 120
qala_messages_received_total{sphere="water",source="mqtt"} 30
qala_messages_received_total 7
# HELP qala_spool_bytes Bytes in the spool.
# TYPE qala_spool_bytes gauge
qala_spool_bytes 4096
# HELP qala_sink_write_seconds Time to write one batch.
# TYPE qala_sink_write_seconds histogram
qala_sink_write_seconds_bucket{sink="influx",le="0.1"} 5
qala_sink_write_seconds_bucket{sink="influx",le="+Inf"} 9
qala_sink_write_seconds_bucket{sink="sqlite",le="0.1"} 2
qala_sink_write_seconds_sum{sink="influx"} 1.5e-1
qala_sink_write_seconds_count{sink="influx"} 9
qala_decode_errors_total{reason="bad \"json\", really",topic="a\\b"} 3 1700000000000
"#;

#[test]
fn prom_value_matches_the_exact_label_set_in_any_order() {
    assert_eq!(
        prom_value(
            METRICS,
            "qala_messages_received_total",
            &[("sphere", "air")]
        ),
        Some(120.0)
    );
    assert_eq!(
        prom_value(
            METRICS,
            "qala_messages_received_total",
            &[("source", "mqtt"), ("sphere", "water")]
        ),
        Some(30.0)
    );
    // A subset of the labels is not the line.
    assert_eq!(
        prom_value(
            METRICS,
            "qala_messages_received_total",
            &[("sphere", "water")]
        ),
        None
    );
    assert_eq!(
        prom_value(METRICS, "qala_messages_received_total", &[]),
        Some(7.0)
    );
    assert_eq!(prom_value(METRICS, "qala_spool_bytes", &[]), Some(4096.0));
    assert_eq!(
        prom_value(
            METRICS,
            "qala_sink_write_seconds_bucket",
            &[("le", "0.1"), ("sink", "influx")]
        ),
        Some(5.0)
    );
    assert_eq!(
        prom_value(
            METRICS,
            "qala_sink_write_seconds_bucket",
            &[("sink", "influx"), ("le", "+Inf")]
        ),
        Some(9.0)
    );
    assert_eq!(
        prom_value(
            METRICS,
            "qala_sink_write_seconds_sum",
            &[("sink", "influx")]
        ),
        Some(0.15)
    );
    assert_eq!(
        prom_value(
            METRICS,
            "qala_decode_errors_total",
            &[("reason", "bad \"json\", really"), ("topic", "a\\b")]
        ),
        Some(3.0)
    );
    assert_eq!(prom_value(METRICS, "qala_absent", &[]), None);
    // A name that is a prefix of another is not that other.
    assert_eq!(prom_value(METRICS, "qala_sink_write_seconds", &[]), None);
}

#[test]
fn prom_sum_adds_every_line_whose_labels_include_the_given_ones() {
    assert_eq!(
        prom_sum(METRICS, "qala_messages_received_total", &[]),
        157.0
    );
    assert_eq!(
        prom_sum(
            METRICS,
            "qala_messages_received_total",
            &[("sphere", "water")]
        ),
        30.0
    );
    assert_eq!(
        prom_sum(METRICS, "qala_sink_write_seconds_bucket", &[("le", "0.1")]),
        7.0
    );
    assert_eq!(prom_sum(METRICS, "qala_absent", &[]), 0.0);
}

#[test]
fn sqlite_helpers_read_a_database_another_connection_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("readings.db");
    let db = rusqlite::Connection::open(&path).expect("creating SQLite db");
    db.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE readings (sensor_id TEXT, value REAL);
         INSERT INTO readings VALUES ('s1', 1.0), ('s2', 2.0);",
    )
    .expect("filling SQLite db");
    assert_eq!(sqlite_i64(&path, "SELECT count(*) FROM readings"), 2);
}
