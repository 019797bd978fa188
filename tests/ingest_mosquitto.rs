//! Ingest through a real Mosquitto, published with Debian's `mosquitto_pub`, stored in a real
//! VictoriaMetrics (InfluxDB v2 write API) and SQLite.

mod common;

use std::time::Duration;

use common::*;

/// 2026-11-20T08:00:00+05:00 = 03:00 UTC, in ms.
const T0_MS: i64 = 1_795_143_600_000;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

struct Rig {
    mosq: Mosquitto,
    vm: VictoriaMetrics,
    gw: Gateway,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn rig(max_packet_size: usize) -> Rig {
    let mosq = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let mut cfg = QalaConfig::new(mosq.port, http, dir.path());
    cfg.influx_url = Some(vm.url());
    cfg.max_packet_size = max_packet_size;
    let before = mosq.subscription_count("city/#");
    let gw = Gateway::start(&cfg.toml(), http, dir.path().join("gw"));
    mosq.wait_for_subscription("city/#", before, Duration::from_secs(10));
    let db = cfg.sqlite_path();
    Rig {
        mosq,
        vm,
        gw,
        db,
        _dir: dir,
    }
}

#[test]
fn json_object_and_senml_pack_land_in_victoria_metrics_and_sqlite_converted() {
    let r = rig(1 << 20);
    // JSON object: RFC 3339 time at UTC+5, PM2.5 in mg/m³, NO2 in ppb, temperature in K.
    mosquitto_pub(
        r.mosq.port,
        "city/almaty/almaly/air/st-1",
        br#"{"ts":"2026-11-20T08:00:00+05:00","pm2_5":0.0355,"no2":100,"temperature":263.15,"units":{"pm2_5":"mg/m3","no2":"ppb","temperature":"K"}}"#,
        1,
    );
    // SenML pack: heat energy in Gcal, flow in l/s, base time in seconds (+60 s).
    mosquitto_pub(
        r.mosq.port,
        "city/almaty/medeu/heat/h-7",
        format!(
            r#"[{{"bn":"urn:dev:h-7:","bt":{},"n":"energy","u":"Gcal","v":2.5}},{{"n":"flow","u":"l/s","v":1.5}}]"#,
            T0_MS / 1000 + 60
        )
        .as_bytes(),
        1,
    );

    let pm = r.vm.wait_for_samples(
        r#"{__name__="air_pm2_5",sensor_id="st-1"}"#,
        1,
        Duration::from_secs(20),
    );
    assert_eq!(pm.len(), 1, "{pm:?}");
    assert_eq!(pm[0].timestamps, vec![T0_MS]);
    assert!(close(pm[0].values[0], 35.5), "{:?}", pm[0].values);
    let labels = &pm[0].labels;
    assert_eq!(labels.get("city").map(String::as_str), Some("almaty"));
    assert_eq!(labels.get("district").map(String::as_str), Some("almaly"));
    assert_eq!(labels.get("sphere").map(String::as_str), Some("ecology"));
    let no2 = r.vm.wait_for_samples(
        r#"{__name__="air_no2",sensor_id="st-1"}"#,
        1,
        Duration::from_secs(20),
    );
    assert!(
        close(no2[0].values[0], 100.0 * 46.01 / 24.45),
        "{:?}",
        no2[0].values
    );
    let temp = r.vm.wait_for_samples(
        r#"{__name__="air_temperature",sensor_id="st-1"}"#,
        1,
        Duration::from_secs(20),
    );
    assert!(close(temp[0].values[0], -10.0), "{:?}", temp[0].values);

    let energy = r.vm.wait_for_samples(
        r#"{__name__="heat_energy",sensor_id="h-7"}"#,
        1,
        Duration::from_secs(20),
    );
    assert_eq!(energy[0].timestamps, vec![T0_MS + 60_000]);
    assert!(
        close(energy[0].values[0], 2907.5),
        "2.5 Gcal = 2907.5 kWh: {:?}",
        energy[0].values
    );
    assert_eq!(
        energy[0].labels.get("sphere").map(String::as_str),
        Some("housing_utilities")
    );
    let flow = r.vm.wait_for_samples(
        r#"{__name__="heat_flow",sensor_id="h-7"}"#,
        1,
        Duration::from_secs(20),
    );
    assert!(
        close(flow[0].values[0], 5.4),
        "1.5 l/s = 5.4 m³/h: {:?}",
        flow[0].values
    );

    // SQLite has the same, in canonical units, with ns timestamps.
    wait_until("both readings in SQLite", Duration::from_secs(10), || {
        sqlite_reading(&r.db, "h-7", "flow").is_some()
            && sqlite_reading(&r.db, "st-1", "pm2_5").is_some()
    });
    let (v, unit, t) = sqlite_reading(&r.db, "st-1", "pm2_5").expect("pm2_5");
    assert!(close(v, 35.5));
    assert_eq!((unit.as_str(), t), ("µg/m³", T0_MS * 1_000_000));
    let (v, unit, _) = sqlite_reading(&r.db, "st-1", "no2").expect("no2");
    assert!(close(v, 188.179_959_100_204_5), "{v}");
    assert_eq!(unit, "µg/m³");
    let (v, unit, t) = sqlite_reading(&r.db, "h-7", "energy").expect("energy");
    assert_eq!(
        (v, unit.as_str(), t),
        (2907.5, "kWh", (T0_MS + 60_000) * 1_000_000)
    );
    let district = sqlite_i64(&r.db, "SELECT count(*) FROM sensors WHERE sensor_id = 'h-7' AND district = 'medeu' AND city = 'almaty' AND kind = 'heat'");
    assert_eq!(district, 1);

    let m = r.gw.metrics();
    assert_eq!(
        prom_value(&m, "qala_messages_received_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "sqlite")]),
        2.0
    );
    assert_eq!(
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "influxdb")]),
        2.0
    );
}

#[test]
fn ten_thousand_qos1_messages_are_stored_exactly_once_in_each_sink() {
    let r = rig(1 << 20);
    const SENSORS: i64 = 10;
    const PER_SENSOR: i64 = 1_000;
    let received = |gw: &Gateway| {
        prom_value(&gw.metrics(), "qala_messages_received_total", &[]).unwrap_or(0.0)
    };
    for s in 0..SENSORS {
        let lines: Vec<String> = (0..PER_SENSOR)
            .map(|i| {
                format!(
                    r#"{{"ts":{},"volume":{}.5,"flow":0.25}}"#,
                    T0_MS + i * 1000,
                    s * 10_000 + i
                )
            })
            .collect();
        let target = ((s + 1) * PER_SENSOR) as f64;
        let gw = &r.gw;
        mosquitto_pub_lines(
            r.mosq.port,
            &format!("city/bulk/d{}/water/m-{s}", s % 3),
            &lines,
            1,
            || received(gw) >= target,
            Duration::from_secs(120),
        );
    }
    let total = (SENSORS * PER_SENSOR) as f64;
    wait_until(
        "10,000 readings in both sinks",
        Duration::from_secs(60),
        || {
            let m = r.gw.metrics();
            prom_sum(&m, "qala_readings_stored_total", &[("sink", "sqlite")]) >= total
                && prom_sum(&m, "qala_readings_stored_total", &[("sink", "influxdb")]) >= total
        },
    );
    let m = r.gw.metrics();
    println!(
        "{}",
        m.lines()
            .filter(|l| l.starts_with("qala_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        prom_value(&m, "qala_messages_received_total", &[]),
        Some(total)
    );
    assert_eq!(
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "sqlite")]),
        total
    );
    assert_eq!(
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "influxdb")]),
        total
    );
    assert_eq!(prom_sum(&m, "qala_messages_rejected_total", &[]), 0.0);

    // Exactly once: 10,000 distinct (sensor, time) points, each with both metrics.
    let rows = sqlite_i64(
        &r.db,
        "SELECT count(*) FROM readings_view WHERE city = 'bulk' AND metric = 'volume'",
    );
    let flows = sqlite_i64(
        &r.db,
        "SELECT count(*) FROM readings_view WHERE city = 'bulk' AND metric = 'flow'",
    );
    assert_eq!((rows, flows), (10_000, 10_000));
    let sum = sqlite_i64(&r.db, "SELECT CAST(sum(value - 0.5) AS INTEGER) FROM readings_view WHERE city = 'bulk' AND metric = 'volume'");
    let expected: i64 = (0..SENSORS)
        .map(|s| (0..PER_SENSOR).map(|i| s * 10_000 + i).sum::<i64>())
        .sum();
    assert_eq!(sum, expected, "every value arrived intact");
    let series = r.vm.wait_for_samples(
        r#"{__name__="water_volume",city="bulk"}"#,
        10_000,
        Duration::from_secs(30),
    );
    assert_eq!(series.len(), SENSORS as usize);
    assert_eq!(distinct_points(&series), 10_000);
    let samples: usize = series.iter().map(|s| s.values.len()).sum();
    println!(
        "VictoriaMetrics: {samples} samples, {} distinct points",
        distinct_points(&series)
    );
}

#[test]
fn bad_inputs_are_dead_lettered_with_their_reason_while_valid_traffic_flows() {
    let r = rig(2048);
    let port = r.mosq.port;
    let valid = |i: i64| format!(r#"{{"ts":{},"pm2_5":{i}.5}}"#, T0_MS + i * 60_000);
    let future_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + 86_400_000;
    let big = format!(r#"{{"ts":{T0_MS},"pm2_5":1,"pad":"{}"}}"#, "x".repeat(4000));
    let air = "city/almaty/almaly/air/bad-src";
    let bad: Vec<(&str, String, Vec<u8>)> = vec![
        ("not_json", air.into(), b"hello, not json".to_vec()),
        ("bad_shape", air.into(), b"[1,2,3]".to_vec()),
        (
            "unknown_kind",
            "city/almaty/almaly/noise/n-1".into(),
            valid(0).into_bytes(),
        ),
        ("bad_topic", "city/almaty/air".into(), valid(0).into_bytes()),
        ("missing_timestamp", air.into(), br#"{"pm2_5":3}"#.to_vec()),
        (
            "bad_timestamp",
            air.into(),
            br#"{"ts":"yesterday","pm2_5":3}"#.to_vec(),
        ),
        (
            "future_timestamp",
            air.into(),
            format!(r#"{{"ts":{future_ms},"pm2_5":3}}"#).into_bytes(),
        ),
        (
            "bad_value",
            air.into(),
            format!(r#"{{"ts":{T0_MS},"pm2_5":"NaN"}}"#).into_bytes(),
        ),
        (
            "not_json",
            air.into(),
            format!(r#"{{"ts":{T0_MS},"pm2_5":1e999}}"#).into_bytes(),
        ),
        ("empty_payload", air.into(), Vec::new()),
        ("too_large", air.into(), big.into_bytes()),
        (
            "out_of_range",
            air.into(),
            format!(r#"{{"ts":{T0_MS},"humidity":140}}"#).into_bytes(),
        ),
        (
            "bad_unit",
            air.into(),
            format!(r#"{{"ts":{T0_MS},"pm2_5":1,"units":{{"pm2_5":"km/h"}}}}"#).into_bytes(),
        ),
    ];
    for (i, (_, topic, payload)) in bad.iter().enumerate() {
        mosquitto_pub(
            port,
            "city/almaty/almaly/air/good-1",
            valid(i as i64).as_bytes(),
            1,
        );
        mosquitto_pub(port, topic, payload, 1);
    }
    mosquitto_pub(
        port,
        "city/almaty/almaly/air/good-1",
        valid(99).as_bytes(),
        1,
    );
    let n_valid = bad.len() as i64 + 1;

    wait_until("every message handled", Duration::from_secs(30), || {
        let m = r.gw.metrics();
        prom_sum(&m, "qala_readings_stored_total", &[("sink", "sqlite")]) >= n_valid as f64
            && prom_sum(&m, "qala_messages_rejected_total", &[]) >= bad.len() as f64
    });
    let stored = sqlite_i64(
        &r.db,
        "SELECT count(*) FROM readings_view WHERE sensor_id = 'good-1'",
    );
    assert_eq!(
        stored, n_valid,
        "every valid message around the bad ones was stored"
    );
    let conn = sqlite_open_readonly(&r.db);
    let mut rows: Vec<(String, String, Vec<u8>, String)> = conn
        .prepare("SELECT reason, topic, payload, message FROM dead_letters ORDER BY id")
        .expect("prepare")
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), bad.len(), "{rows:?}");
    for ((reason, topic, payload), (got_reason, got_topic, got_payload, message)) in
        bad.iter().map(|(r, t, p)| (r, t, p)).zip(rows.drain(..))
    {
        assert_eq!(&got_reason, reason, "{message}");
        assert_eq!(&got_topic, topic);
        if *reason == "too_large" {
            // The head is kept (up to mqtt.max_packet_size), and the message says so.
            assert_eq!(got_payload.len(), 2048, "{message}");
            assert_eq!(&got_payload[..], &payload[..2048]);
            let said = format!("has {} bytes", payload.len());
            assert!(
                message.contains(&said) && message.contains("the first 2048 bytes are kept"),
                "{message}"
            );
        } else {
            assert_eq!(&got_payload, payload, "raw bytes kept for {reason}");
        }
        assert!(!message.is_empty());
    }
    let m = r.gw.metrics();
    for reason in [
        "bad_shape",
        "unknown_kind",
        "bad_topic",
        "missing_timestamp",
        "bad_timestamp",
        "future_timestamp",
        "bad_value",
        "empty_payload",
        "too_large",
        "out_of_range",
        "bad_unit",
    ] {
        assert_eq!(
            prom_value(&m, "qala_messages_rejected_total", &[("reason", reason)]),
            Some(1.0),
            "{reason}"
        );
    }
    assert_eq!(
        prom_value(
            &m,
            "qala_messages_rejected_total",
            &[("reason", "not_json")]
        ),
        Some(2.0)
    );
    assert_eq!(
        prom_value(&m, "qala_messages_received_total", &[]),
        Some((n_valid as usize + bad.len()) as f64)
    );
    // The bad ones never reached VictoriaMetrics; the good ones did.
    let good = r.vm.wait_for_samples(
        r#"{__name__="air_pm2_5",sensor_id="good-1"}"#,
        n_valid as usize,
        Duration::from_secs(20),
    );
    assert_eq!(distinct_points(&good), n_valid as usize);
    assert!(r
        .vm
        .export(r#"{__name__="air_pm2_5",sensor_id="bad-src"}"#)
        .is_empty());
}

#[test]
fn four_shared_sessions_split_the_stream_and_store_every_message_once() {
    const N: usize = 8_000;
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let cfg = QalaConfig::new(mosq.port, http, dir.path());
    let toml = cfg.toml().replace(
        "qos = 1\n",
        "qos = 1\nsessions = 4\nshare_group = \"ingest\"\n",
    );
    let before = mosq.subscription_count("$share/ingest/city/#");
    let gw = Gateway::start(&toml, http, dir.path().join("gw"));
    wait_until("four shared subscriptions", Duration::from_secs(10), || {
        mosq.subscription_count("$share/ingest/city/#") >= before + 4
    });
    let lines: Vec<String> = (0..N)
        .map(|i| format!(r#"{{"ts":{},"volume":{i}.5}}"#, T0_MS + i as i64 * 1000))
        .collect();
    let db = cfg.sqlite_path();
    let rows = || {
        sqlite_i64(
            &db,
            "SELECT count(*) FROM readings_view WHERE city = 'shared' AND metric = 'volume'",
        )
    };
    mosquitto_pub_lines(
        mosq.port,
        "city/shared/d1/water/m-1",
        &lines,
        1,
        || rows() >= N as i64,
        Duration::from_secs(60),
    );
    let m = gw.metrics();
    let per_session: Vec<f64> = (0..4)
        .map(|s| {
            prom_value(
                &m,
                "qala_session_messages_total",
                &[("session", &s.to_string())],
            )
            .unwrap_or(0.0)
        })
        .collect();
    println!("messages per session: {per_session:?}");
    assert_eq!(rows(), N as i64);
    assert_eq!(
        per_session.iter().sum::<f64>(),
        N as f64,
        "each message came once"
    );
    assert!(
        per_session.iter().all(|n| *n > 0.0),
        "the broker split the stream between all four sessions: {per_session:?}"
    );
}
