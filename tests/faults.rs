//! Nothing lost: fault tests of the spool and ack-after-durable, on real servers (Mosquitto with
//! persistence, VictoriaMetrics, SQLite) over loopback. Each prints what was lost and duplicated.
//!
//! (a) VictoriaMetrics down for 30 s mid-stream; (b) the gateway SIGKILLed three times mid-stream;
//! (c) Mosquitto restarted mid-stream; (d) a tiny spool with the sink down: ingestion pauses and
//! resumes, memory bounded; (f) a torn spool tail on start. (e), a sink refusing one point, is in
//! tests/influx_faults.rs against a scripted server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// 2026-11-20T00:00:00Z; one reading per second from there.
const T0_MS: i64 = 1_795_132_800_000;

fn stream(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"ts":{},"volume":{i}.25}}"#, T0_MS + i as i64 * 1000))
        .collect()
}

fn selector(city: &str) -> String {
    format!(r#"{{__name__="water_volume",city="{city}"}}"#)
}

fn sqlite_rows(db: &Path, city: &str) -> i64 {
    sqlite_i64(
        db,
        &format!("SELECT count(*) FROM readings_view WHERE city = '{city}' AND metric = 'volume'"),
    )
}

/// Checks that every one of `n` readings is in VictoriaMetrics and SQLite exactly once, with
/// its value; prints lost and duplicated counts. Returns (lost, duplicated) in VictoriaMetrics.
fn audit(vm: &VictoriaMetrics, db: &Path, city: &str, n: usize, case: &str) -> (usize, usize) {
    let series = vm.wait_for_samples(&selector(city), n, Duration::from_secs(60));
    let distinct = distinct_points(&series);
    let samples: usize = series.iter().map(|s| s.timestamps.len()).sum();
    let rows = sqlite_rows(db, city) as usize;
    let value_sum = sqlite_f64(
        db,
        &format!(
            "SELECT sum(value) FROM readings_view WHERE city = '{city}' AND metric = 'volume'"
        ),
    );
    let lost = n.saturating_sub(distinct);
    let duplicated = samples - distinct;
    println!(
        "{case}: sent {n}; VictoriaMetrics {distinct} distinct points ({samples} samples): lost {lost}, duplicated {duplicated}; SQLite {rows} rows: lost {}",
        n.saturating_sub(rows)
    );
    assert_eq!(distinct, n, "{case}: points lost in VictoriaMetrics");
    assert_eq!(rows, n, "{case}: SQLite holds each reading once");
    // Σ (i + 0.25) for i < n: every value, not only every time, arrived.
    let want = (n * (n - 1)) as f64 / 2.0 + 0.25 * n as f64;
    assert!(
        (value_sum - want).abs() < 1e-6 * want,
        "{case}: SQLite values sum {value_sum}, want {want}"
    );
    // Each VictoriaMetrics point carries the value of its time.
    for s in &series {
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let i = (t - T0_MS) / 1000;
            assert_eq!(*v, i as f64 + 0.25, "{case}: value at {t}");
        }
    }
    (lost, duplicated)
}

fn stored(gw: &Gateway, sink: &str) -> f64 {
    prom_sum(
        &gw.metrics(),
        "qala_readings_stored_total",
        &[("sink", sink)],
    )
}

fn received(gw: &Gateway) -> f64 {
    prom_value(&gw.metrics(), "qala_messages_received_total", &[]).unwrap_or(0.0)
}

#[test]
fn a_victoria_metrics_outage_of_30_s_mid_stream_loses_nothing() {
    const N: usize = 20_000;
    let mosq = Mosquitto::start();
    let mut vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));

    // 20,000 messages over ~25 s; VictoriaMetrics goes away after the first 3,000.
    let publisher = PacedPublisher::start(mosq.port, "city/outage/d1/water/m-1", stream(N), 1, 800);
    wait_until("3,000 messages in", Duration::from_secs(30), || {
        received(&gw) >= 3000.0
    });
    vm.stop();
    let down = Instant::now();
    wait_until(
        "the InfluxDB sink retrying",
        Duration::from_secs(20),
        || {
            prom_value(
                &gw.metrics(),
                "qala_sink_retries_total",
                &[("sink", "influxdb")],
            )
            .unwrap_or(0.0)
                >= 2.0
        },
    );
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    // Meanwhile SQLite kept up, and every message was acked (the publisher's stream flowed on).
    let m = gw.metrics();
    let lag = prom_value(&m, "qala_sink_lag_seconds", &[("sink", "influxdb")]).unwrap_or(0.0);
    let spool = prom_value(&m, "qala_spool_bytes", &[]).unwrap_or(0.0);
    println!(
        "after 30 s down: InfluxDB sink lag {lag:.1} s, spool {spool} bytes, received {}",
        received(&gw)
    );
    assert!(lag >= 20.0, "the outage shows as sink lag: {lag}");
    assert!(
        stored(&gw, "sqlite") >= 3000.0 + 10_000.0,
        "SQLite was held up by the outage"
    );
    vm.start_again();

    publisher.finish(
        N as u64,
        || received(&gw) >= N as f64,
        Duration::from_secs(120),
    );
    wait_until(
        "both sinks storing everything",
        Duration::from_secs(90),
        || stored(&gw, "influxdb") >= N as f64 && stored(&gw, "sqlite") >= N as f64,
    );
    audit(
        &vm,
        &cfg.sqlite_path(),
        "outage",
        N,
        "(a) VictoriaMetrics down 30 s",
    );
    assert_eq!(
        received(&gw),
        N as f64,
        "nothing was redelivered: acks went out after the spool commit"
    );
}

#[test]
fn the_gateway_killed_three_times_mid_stream_loses_nothing() {
    const N: usize = 20_000;
    let mosq = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    let before = mosq.subscription_count("city/#");
    let gw_dir = dir.path().join("gw");
    let mut gw = Gateway::start(&cfg.toml(), http, gw_dir.clone());
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));

    let publisher = PacedPublisher::start(mosq.port, "city/crash/d1/water/m-1", stream(N), 1, 1500);
    for k in 1..=3u64 {
        wait_until("the stream to go on", Duration::from_secs(60), || {
            publisher.sent() >= k * 4000
        });
        // A crash: no drain, no flush; spool records half written, acks half sent.
        gw.kill9();
        println!(
            "killed the gateway with SIGKILL at {} messages sent",
            publisher.sent()
        );
        std::thread::sleep(Duration::from_millis(200 * k));
        gw = Gateway::start(&cfg.toml(), http, gw_dir.clone());
    }
    let db = cfg.sqlite_path();
    publisher.finish(
        N as u64,
        || sqlite_rows(&db, "crash") >= N as i64,
        Duration::from_secs(120),
    );
    audit(&vm, &db, "crash", N, "(b) SIGKILL ×3");
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert_eq!(
        log.matches("spool opened").count(),
        4,
        "four starts on the same spool"
    );
}

#[test]
fn mosquitto_restarted_mid_stream_loses_nothing() {
    const N: usize = 20_000;
    let mut mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 200,
        ..MosquittoOptions::default()
    });
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    let before = mosq.subscription_count("city/#");
    let mut gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let lines = stream(N);
    let (first, second) = lines.split_at(N / 2);

    // The first half waits in the broker for the gateway's session (the gateway is stopped, its
    // session persistent); a subscriber of our own tells when the broker has all of it.
    gw.stop();
    let sub = MosquittoSub::start(mosq.port, "city/restart/#");
    mosquitto_pub_lines(
        mosq.port,
        "city/restart/d1/water/m-1",
        first,
        1,
        || sub.received() >= N / 2,
        Duration::from_secs(60),
    );
    drop(sub);
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw2"));
    // Mid-backlog, the broker goes down (SIGTERM: it writes its persistence db) and comes back.
    wait_until("the backlog flowing", Duration::from_secs(30), || {
        received(&gw) >= 2000.0
    });
    let at = received(&gw);
    mosq.restart();
    println!("restarted Mosquitto at {at} of {} received", N / 2);
    assert!(
        at < (N / 2) as f64,
        "the backlog was drained before the restart ({at})"
    );
    wait_until(
        "the gateway back on the broker",
        Duration::from_secs(60),
        || prom_value(&gw.metrics(), "qala_mqtt_connected", &[]) == Some(1.0),
    );
    let db = cfg.sqlite_path();
    mosquitto_pub_lines(
        mosq.port,
        "city/restart/d1/water/m-1",
        second,
        1,
        || sqlite_rows(&db, "restart") >= N as i64,
        Duration::from_secs(90),
    );
    wait_until(
        "InfluxDB storing everything",
        Duration::from_secs(60),
        || stored(&gw, "influxdb") >= N as f64,
    );
    audit(&vm, &db, "restart", N, "(c) Mosquitto restarted");
}

#[test]
fn a_full_spool_pauses_ingestion_until_the_sink_returns_and_loses_nothing() {
    const N: usize = 40_000;
    let mosq = Mosquitto::start_with(MosquittoOptions {
        max_inflight_messages: 200,
        ..MosquittoOptions::default()
    });
    let mut vm = VictoriaMetrics::start();
    vm.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    const MAX_BYTES: u64 = 1 << 20;
    cfg.spool_extra = format!("max_bytes = {MAX_BYTES}\nsegment_bytes = 65536\n");
    // The shortest keep-alive: the pause below outlasts 1.5 × of it, and the session must
    // stay connected through it (it keeps polling while the pipeline is full).
    let toml = cfg
        .toml()
        .replace("qos = 1\n", "qos = 1\nkeep_alive = \"5s\"\n");
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&toml, http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let pid = gw.pid().expect("pid");

    let publisher =
        PacedPublisher::start(mosq.port, "city/full/d1/water/m-1", stream(N), 1, 10_000);
    wait_until("the spool to fill", Duration::from_secs(60), || {
        prom_value(&gw.metrics(), "qala_spool_full_total", &[]).unwrap_or(0.0) >= 1.0
    });
    wait_until(
        "every message with the broker",
        Duration::from_secs(30),
        || publisher.sent() >= N as u64,
    );
    // Paused: nothing more comes in while the sink is down, and the broker holds the rest.
    std::thread::sleep(Duration::from_secs(1));
    let held_at = received(&gw);
    let mut rss_max = 0;
    for _ in 0..90 {
        rss_max = rss_max.max(rss_bytes(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = gw.metrics();
    let spool = prom_value(&m, "qala_spool_bytes", &[]).unwrap_or(0.0);
    println!(
        "(d) paused at {held_at} of {N} received; spool {spool} bytes (max {MAX_BYTES}); RSS max {:.1} MiB",
        rss_max as f64 / 1048576.0
    );
    assert_eq!(
        received(&gw),
        held_at,
        "ingestion went on while the spool was full"
    );
    assert!(
        held_at < N as f64,
        "the broker was never made to hold anything"
    );
    assert!(
        spool <= (MAX_BYTES + 64 * 1024) as f64,
        "spool {spool} bytes is over its bound"
    );
    assert!(
        rss_max < 96 << 20,
        "RSS {rss_max} bytes is over the 96 MiB bound"
    );

    vm.start_again();
    publisher.finish(
        N as u64,
        || received(&gw) >= N as f64,
        Duration::from_secs(120),
    );
    wait_until(
        "both sinks storing everything",
        Duration::from_secs(90),
        || stored(&gw, "influxdb") >= N as f64 && stored(&gw, "sqlite") >= N as f64,
    );
    audit(&vm, &cfg.sqlite_path(), "full", N, "(d) spool full");
    assert_eq!(
        received(&gw),
        N as f64,
        "a message came twice: the session was dropped during the pause"
    );
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert!(
        !log.contains("MQTT connection lost"),
        "the session lost its connection while paused: {}",
        gw.log_tail(40)
    );
    assert!(
        log.contains("spool full: ingestion paused"),
        "{}",
        gw.log_tail(40)
    );
    assert!(log.contains("spool has room again"), "{}", gw.log_tail(40));
}

#[test]
fn a_torn_spool_tail_is_cut_on_start_and_every_intact_record_is_delivered() {
    const N: usize = 3_000;
    let mosq = Mosquitto::start();
    let mut vm = VictoriaMetrics::start();
    vm.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    let before = mosq.subscription_count("city/#");
    let mut gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let db = cfg.sqlite_path();
    mosquitto_pub_lines(
        mosq.port,
        "city/torn/d1/water/m-1",
        &stream(N),
        1,
        || sqlite_rows(&db, "torn") >= N as i64,
        Duration::from_secs(60),
    );
    // Everything is in SQLite and (acked) in the spool, waiting for InfluxDB. A crash in the
    // middle of the next append leaves half a record at the end of the newest segment.
    gw.kill9();
    let newest = std::fs::read_dir(cfg.spool_dir())
        .expect("spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "seg")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        })
        .max()
        .expect("a spool segment with records");
    let torn: Vec<u8> = [&4000u32.to_le_bytes()[..], &[0xAB; 37][..]].concat();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("open segment");
    std::io::Write::write_all(&mut f, &torn).expect("tear the tail");
    drop(f);

    vm.start_again();
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw2"));
    wait_until(
        "InfluxDB storing the spooled readings",
        Duration::from_secs(60),
        || stored(&gw, "influxdb") >= N as f64,
    );
    let (lost, _) = audit(&vm, &db, "torn", N, "(f) torn spool tail");
    assert_eq!(lost, 0);
    let log = std::fs::read_to_string(&gw.log_path).expect("log");
    assert!(log.contains("spool segment damaged"), "{}", gw.log_tail(40));
    assert_eq!(received(&gw), 0.0, "the broker redelivered acked messages");
}
