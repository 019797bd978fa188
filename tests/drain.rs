//! Shutdown with a sink that cannot write: the drain deadline holds, every message was acked once
//! durable in the spool, the other sink was never held up, and what the stuck sink did not write
//! is written from the spool after the restart (nothing comes back from the broker).

mod common;

use std::time::Duration;

use common::*;

const MESSAGES: i64 = 600;
const T0_MS: i64 = 1_795_143_600_000;

#[test]
fn a_stuck_sink_holds_up_neither_shutdown_nor_the_other_sink_and_writes_its_backlog_after_restart()
{
    // A wide broker window and one message per batch: hundreds of spool records wait for the
    // stuck sink when the signal comes.
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
    // Every message reached the gateway and the spool. InfluxDB wrote none; SQLite, reading the
    // spool at its own pace, wrote all of them: one stuck sink holds up nobody.
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
    wait_until(
        "SQLite storing every message",
        Duration::from_secs(30),
        || {
            prom_sum(
                &gw.metrics(),
                "qala_readings_stored_total",
                &[("sink", "sqlite")],
            ) >= MESSAGES as f64
        },
    );
    let lag = prom_value(
        &gw.metrics(),
        "qala_sink_lag_seconds",
        &[("sink", "influxdb")],
    )
    .unwrap_or(0.0);
    assert!(lag > 0.0, "the stuck sink's lag shows: {lag}");

    // SIGTERM: the drain deadline (1 s) passes with the InfluxDB sink still failing; the gateway
    // exits cleanly, everything acked (it is in the spool).
    let status = gw.stop();
    assert!(status.success(), "qala exited with {status}");
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert!(log.contains("drain timeout"), "{}", gw.log_tail(40));
    assert!(log.contains("stopped"), "{}", gw.log_tail(40));

    // InfluxDB is back; the InfluxDB sink resumes from its spool cursor and writes every
    // reading; the broker has nothing to redeliver.
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
        "redelivered by the broker: {redelivered}; VictoriaMetrics distinct points {distinct}; SQLite rows {rows}"
    );
    assert_eq!(
        distinct, MESSAGES as usize,
        "lost or extra points in VictoriaMetrics"
    );
    assert_eq!(rows, MESSAGES, "SQLite holds each reading once");
    assert_eq!(
        redelivered, 0.0,
        "every message was acked once spooled: the broker redelivers none"
    );
    let status = gw2.stop();
    assert!(status.success(), "qala exited with {status}");
}
