//! Shutdown with a sink that cannot write: the drain deadline holds, nothing unwritten is acked,
//! and the broker hands every such message back to the next run.

mod common;

use std::time::Duration;

use common::*;

const MESSAGES: i64 = 600;
const T0_MS: i64 = 1_795_143_600_000;

#[test]
fn a_stuck_sink_cannot_hold_up_shutdown_and_what_it_did_not_write_comes_back() {
    // A wide broker window and one message per batch: the gateway holds hundreds of messages,
    // the sink queues fill, and the batcher is blocked handing a batch to the stuck sink when
    // the signal comes — the case that used to hang.
    let mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 1000,
        ..MosquittoOptions::default()
    });
    let mut vm = VictoriaMetrics::start();
    vm.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    cfg.extra = "[pipeline]\nbatch_size = 1\ndrain_timeout = \"1s\"\n".into();
    let before = mosq.subscription_count("city/#");
    let mut gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw1"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));

    let lines: Vec<String> = (0..MESSAGES)
        .map(|i| format!(r#"{{"ts":{},"volume":{i}.5}}"#, T0_MS + i * 1000))
        .collect();
    let received = |gw: &Gateway| {
        prom_value(&gw.metrics(), "qala_messages_received_total", &[]).unwrap_or(0.0)
    };
    // Every message reached the gateway. InfluxDB wrote none; SQLite got only the batches the
    // batcher handed out before the stuck sink's queue filled and held it (backpressure).
    mosquitto_pub_lines(
        mosq.port,
        "city/drain/d1/water/m-1",
        &lines,
        1,
        || received(&gw) >= MESSAGES as f64,
        Duration::from_secs(60),
    );
    wait_until("the InfluxDB sink failing", Duration::from_secs(30), || {
        prom_value(
            &gw.metrics(),
            "qala_sink_retries_total",
            &[("sink", "influxdb")],
        )
        .unwrap_or(0.0)
            >= 2.0
    });
    let m = gw.metrics();
    assert_eq!(
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "influxdb")]),
        0.0
    );
    let sqlite_before = prom_sum(&m, "qala_readings_stored_total", &[("sink", "sqlite")]);
    assert!(
        sqlite_before < MESSAGES as f64,
        "the batcher handed out everything ({sqlite_before}): it was never held by the stuck sink"
    );

    // SIGTERM: the drain deadline (1 s) passes, the gateway exits cleanly without acking.
    let status = gw.stop();
    assert!(status.success(), "qala exited with {status}");
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert!(log.contains("drain timeout"), "{}", gw.log_tail(40));
    assert!(log.contains("stopped"), "{}", gw.log_tail(40));

    // InfluxDB is back; the same client id resumes the broker's session, which still holds
    // every message: all of them reach VictoriaMetrics, and SQLite overwrites its copies.
    vm.start_again();
    let mut gw2 = Gateway::start(&cfg.toml(), http, dir.path().join("gw2"));
    wait_until(
        "every held message written to InfluxDB after the restart",
        Duration::from_secs(60),
        || {
            prom_sum(
                &gw2.metrics(),
                "qala_readings_stored_total",
                &[("sink", "influxdb")],
            ) >= MESSAGES as f64
        },
    );
    let series = vm.wait_for_samples(
        r#"{__name__="water_volume",city="drain"}"#,
        MESSAGES as usize,
        Duration::from_secs(30),
    );
    let distinct = distinct_points(&series);
    let rows = sqlite_i64(
        &cfg.sqlite_path(),
        "SELECT count(*) FROM readings_view WHERE city = 'drain' AND metric = 'volume'",
    );
    let redelivered =
        prom_value(&gw2.metrics(), "qala_messages_received_total", &[]).unwrap_or(0.0);
    println!(
        "SQLite before the stop: {sqlite_before}; held back and redelivered: {redelivered}; VictoriaMetrics distinct points {distinct}; SQLite rows {rows}"
    );
    assert_eq!(
        distinct, MESSAGES as usize,
        "lost or extra points in VictoriaMetrics"
    );
    assert_eq!(rows, MESSAGES, "SQLite holds each reading once");
    assert_eq!(
        redelivered, MESSAGES as f64,
        "the broker redelivered exactly the unacked messages"
    );
    let status = gw2.stop();
    assert!(status.success(), "qala exited with {status}");
}
