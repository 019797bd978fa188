//! Where indicator values go: appended to the spool by a reader (as the engine does), stored by
//! the SQLite sink and, as line protocol, by a real VictoriaMetrics (read back through its export
//! API); refused by a server one by one like readings; and published retained on a real
//! Mosquitto, read back with Debian's `mosquitto_sub`, across a broker restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use qala::config::{InfluxSettings, MqttSettings, SqliteSettings, SqliteSync};
use qala::indicators::publish::{self, Publisher};
use qala::indicators::{Completeness, Detail, IndicatorValue, Scope};
use qala::model::{Reason, Sphere};
use qala::pipeline::Batch;
use qala::sink::influx::InfluxSink;
use qala::sink::sqlite::SqliteSink;
use qala::sink::{self, Sink, SinkProgress};
use qala::spool::{Spool, SpoolSettings};

/// 2026-11-19T19:00:00Z: local midnight in Almaty, 5 days before the tests were written (inside
/// VictoriaMetrics' retention and never in its future).
const DAY0_NS: i64 = 1_795_114_800_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// A district's hourly NowCast AQI, hour `h` of day 0, with the details the engine attaches.
fn aqi(district: &str, h: i64, value: Option<f64>) -> IndicatorValue {
    IndicatorValue {
        indicator: "us_aqi_nowcast".into(),
        sphere: Sphere::Ecology,
        scope: Scope::District,
        city: "almaty".into(),
        district: district.into(),
        sensor_id: String::new(),
        component: String::new(),
        window: "nowcast".into(),
        window_start_ns: DAY0_NS + h * HOUR_NS,
        window_end_ns: DAY0_NS + (h + 1) * HOUR_NS,
        value,
        unit: "AQI".into(),
        level: value.map(|_| "moderate".to_string()),
        completeness: Completeness::new(if value.is_some() { 3 } else { 1 }, 3, "h"),
        reference: "US EPA AQI, TAD May 2024; NowCast".into(),
        details: vec![
            ("pm2_5".into(), Detail::Number(value.unwrap_or(0.0) - 1.5)),
            ("dominant".into(), Detail::Text("pm2_5".into())),
        ],
        computed_ns: DAY0_NS + (h + 1) * HOUR_NS + 1_000_000_000,
    }
}

/// A sensor's PM2.5 ПДК multiple (a value with a component, of the sensor scope).
fn pdk(sensor: &str, h: i64, value: f64) -> IndicatorValue {
    IndicatorValue {
        indicator: "pdk_multiple".into(),
        scope: Scope::Sensor,
        sensor_id: sensor.into(),
        component: "pm2_5".into(),
        window: "1h".into(),
        unit: "ПДК".into(),
        level: None,
        reference: "Приказ № ҚР ДСМ-32 (2022), ПДК м.р.".into(),
        details: Vec::new(),
        ..aqi("medeu", h, Some(value))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// The sinks, through the spool
// ---------------------------------------------------------------------------------------------

#[test]
fn values_appended_to_the_spool_reach_sqlite_and_victoria_metrics() {
    let metrics = qala::telemetry::metrics_handle();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("q.sqlite");
    let rt = runtime();
    // Hours 0..3 of two districts and one sensor; hour 3 of medeu is invalid (1/3 h).
    let mut first = Vec::new();
    for h in 0..3 {
        first.push(aqi("medeu", h, Some(50.0 + h as f64)));
        first.push(aqi("almaly", h, Some(70.0 + h as f64)));
        first.push(pdk("st-1", h, 1.25 * (h + 1) as f64));
    }
    let invalid = aqi("medeu", 3, None);
    // Late data: hour 1 of medeu is computed again and replaces its row.
    let mut late = aqi("medeu", 1, Some(61.0));
    late.computed_ns += HOUR_NS;

    let (sqlite_done, influx_done) = rt.block_on(async {
        let settings = SpoolSettings {
            dir: dir.path().join("spool"),
            ..SpoolSettings::default()
        };
        let spool = Spool::open(&settings, &["sqlite", "influxdb", "engine"]).expect("spool");
        let (batches_tx, batches_rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let (acks_tx, _acks_rx) = tokio::sync::mpsc::channel(4);
        let progress: Vec<Arc<SinkProgress>> = ["sqlite", "influxdb", "engine"]
            .into_iter()
            .map(|n| SinkProgress::starting_at(n, 0))
            .collect();
        let (handle, writer) = spool.start(batches_rx, acks_tx, progress.clone());
        let writer = tokio::spawn(writer);
        let (_abort_tx, abort) = tokio::sync::watch::channel(false);
        let sqlite = SqliteSink::start(&SqliteSettings {
            enabled: true,
            path: db.clone(),
            synchronous: SqliteSync::Normal,
            batch_size: 1000,
        })
        .expect("sqlite sink");
        let influx = InfluxSink::new(&InfluxSettings {
            enabled: true,
            url: vm.url(),
            org: "o".into(),
            bucket: "b".into(),
            ..InfluxSettings::default()
        })
        .expect("influx sink");
        let sqlite_task = tokio::spawn(sink::run(
            sqlite,
            handle.reader("sqlite", 0),
            progress[0].clone(),
            abort.clone(),
        ));
        let influx_task = tokio::spawn(sink::run(
            influx,
            handle.reader("influxdb", 0),
            progress[1].clone(),
            abort.clone(),
        ));
        // The engine: a reader of its own that appends what it derives.
        let engine = handle.reader("engine", 0);
        let a = engine
            .append(Batch {
                indicators: first.clone(),
                ..Batch::default()
            })
            .await
            .expect("appended");
        let b = engine
            .append(Batch {
                indicators: vec![invalid.clone(), late.clone()],
                ..Batch::default()
            })
            .await
            .expect("appended");
        assert_eq!((a, b), (1, 2), "each append durable, in order");
        // Ingest ends; the sinks write everything and finish.
        drop(batches_tx);
        drop(engine);
        drop(handle);
        for t in [sqlite_task, influx_task] {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("the sink finishes")
                .expect("no panic");
        }
        writer.await.expect("the writer ends");
        (
            progress[0]
                .committed
                .load(std::sync::atomic::Ordering::Acquire),
            progress[1]
                .committed
                .load(std::sync::atomic::Ordering::Acquire),
        )
    });
    assert_eq!(
        (sqlite_done, influx_done),
        (2, 2),
        "both sinks committed both batches"
    );
    let text = metrics.render();
    for sink in ["sqlite", "influxdb"] {
        assert_eq!(
            prom_value(
                &text,
                "qala_indicator_values_stored_total",
                &[("sink", sink)]
            ),
            Some(11.0),
            "{sink}"
        );
    }

    // SQLite: one row per series and hour; the late value replaced hour 1 of medeu.
    let conn = sqlite_open_readonly(&db);
    type Row = (String, i64, Option<f64>, Option<String>, String);
    let rows: Vec<Row> = conn
        .prepare(
            "SELECT district, (window_start - ?1) / ?2, value, level, completeness FROM indicators_view
             WHERE city = 'almaty' AND sphere = 'ecology' AND indicator = 'us_aqi_nowcast'
             AND district = 'medeu' ORDER BY window_start",
        )
        .expect("prepare")
        .query_map([DAY0_NS, HOUR_NS], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let m = |h: i64, v: Option<f64>, level: Option<&str>, c: &str| {
        (
            "medeu".to_string(),
            h,
            v,
            level.map(str::to_owned),
            c.to_string(),
        )
    };
    assert_eq!(
        rows,
        vec![
            m(0, Some(50.0), Some("moderate"), "3/3 h"),
            m(1, Some(61.0), Some("moderate"), "3/3 h"),
            m(2, Some(52.0), Some("moderate"), "3/3 h"),
            m(3, None, None, "1/3 h"),
        ]
    );
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM indicators"), 10);
    let (details, component, unit): (String, String, String) = conn
        .query_row(
            "SELECT details, component, unit FROM indicators WHERE sensor_id = 'st-1' AND window_start = ?1",
            [DAY0_NS + 2 * HOUR_NS],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the sensor's row");
    assert_eq!(
        (details.as_str(), component.as_str(), unit.as_str()),
        ("{}", "pm2_5", "ПДК")
    );

    // VictoriaMetrics: one series per field, tags as labels, the window start as the time.
    let values = vm.wait_for_samples(
        r#"{__name__="indicator_value",indicator="us_aqi_nowcast"}"#,
        6,
        Duration::from_secs(30),
    );
    let medeu = values
        .iter()
        .find(|s| s.labels.get("district").map(String::as_str) == Some("medeu"))
        .expect("medeu's series");
    let labels: Vec<(&str, &str)> = medeu
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("__name__", "indicator_value"),
            ("city", "almaty"),
            ("district", "medeu"),
            ("indicator", "us_aqi_nowcast"),
            ("scope", "district"),
            ("sphere", "ecology"),
            ("window", "nowcast"),
        ]
    );
    let day0_ms = DAY0_NS / 1_000_000;
    let hour_ms = HOUR_NS / 1_000_000;
    // Hour 1 twice (VictoriaMetrics keeps both writes of a point; InfluxDB keeps the last);
    // no point for the invalid hour 3.
    let mut points: Vec<(i64, f64)> = medeu
        .timestamps
        .iter()
        .map(|t| (t - day0_ms) / hour_ms)
        .zip(medeu.values.iter().copied())
        .collect();
    points.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(points, vec![(0, 50.0), (1, 51.0), (1, 61.0), (2, 52.0)]);
    let valid = vm.wait_for_samples(
        r#"{__name__="indicator_valid",district="medeu",indicator="us_aqi_nowcast"}"#,
        4,
        Duration::from_secs(30),
    );
    let at_hour3: Vec<f64> = valid[0]
        .timestamps
        .iter()
        .zip(&valid[0].values)
        .filter(|(t, _)| **t == day0_ms + 3 * hour_ms)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(
        at_hour3,
        vec![0.0],
        "the invalid hour: valid=false, no value"
    );
    let ratio = vm.wait_for_samples(
        r#"{__name__="indicator_completeness",district="medeu",indicator="us_aqi_nowcast"}"#,
        4,
        Duration::from_secs(30),
    );
    let mut ratios = ratio[0].values.clone();
    ratios.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert!((ratios[0] - 1.0 / 3.0).abs() < 1e-12 && ratios[1..].iter().all(|r| *r == 1.0));
    let have = vm.wait_for_samples(
        r#"{__name__="indicator_completeness_expected",district="almaly"}"#,
        3,
        Duration::from_secs(30),
    );
    assert!(have[0].values.iter().all(|v| *v == 3.0));
    let detail = vm.wait_for_samples(
        r#"{__name__="indicator_d_pm2_5",district="almaly"}"#,
        3,
        Duration::from_secs(30),
    );
    let mut d: Vec<f64> = detail[0].values.clone();
    d.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(d, vec![68.5, 69.5, 70.5]);
    // The sensor-scope value carries sensor_id and component tags.
    let sensor = vm.wait_for_samples(
        r#"{__name__="indicator_value",indicator="pdk_multiple"}"#,
        3,
        Duration::from_secs(30),
    );
    assert_eq!(sensor.len(), 1);
    let l = &sensor[0].labels;
    assert_eq!(
        (
            l.get("sensor_id").map(String::as_str),
            l.get("component").map(String::as_str),
            l.get("scope").map(String::as_str)
        ),
        (Some("st-1"), Some("pm2_5"), Some("sensor"))
    );
    let mut v = sensor[0].values.clone();
    v.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(v, vec![1.25, 2.5, 3.75]);
}

/// A server that refuses (400) every write holding a line of `indicator=bad_one`, else 204.
async fn refusing_server() -> String {
    use axum::http::StatusCode;
    async fn write(body: String) -> (StatusCode, &'static str) {
        if body.contains("indicator=bad_one") {
            (StatusCode::BAD_REQUEST, "field type conflict")
        } else {
            (StatusCode::NO_CONTENT, "")
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/api/v2/write", axum::routing::post(write));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[test]
fn a_value_the_server_refuses_is_isolated_and_dead_lettered_like_a_reading() {
    let rt = runtime();
    rt.block_on(async {
        let url = refusing_server().await;
        let mut sink = InfluxSink::new(&InfluxSettings {
            enabled: true,
            url,
            ..InfluxSettings::default()
        })
        .expect("sink");
        let mut bad = aqi("medeu", 4, Some(1.0));
        bad.indicator = "bad_one".into();
        let batches = vec![Arc::new(Batch {
            seq: 1,
            indicators: vec![
                aqi("medeu", 0, Some(1.0)),
                aqi("medeu", 1, None),
                bad.clone(),
                aqi("medeu", 2, Some(3.0)),
            ],
            ..Batch::default()
        })];
        let dead = sink.write(&batches).await.expect("the write");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].rejection.reason, Reason::SinkRejected);
        assert_eq!(
            dead[0].rejection.message,
            "InfluxDB answered 400: field type conflict"
        );
        assert_eq!(
            dead[0].topic,
            "influxdb:indicator/almaty/ecology/bad_one/district/medeu///nowcast"
        );
        let mut line = String::new();
        qala::sink::line_protocol::encode_indicator(&mut line, &bad);
        assert_eq!(dead[0].payload, line.trim_end().as_bytes());
    });
}

// ---------------------------------------------------------------------------------------------
// Retained MQTT
// ---------------------------------------------------------------------------------------------

fn mqtt_settings(mosq: &Mosquitto) -> MqttSettings {
    MqttSettings {
        url: mosq.url(),
        client_id: format!("qala-test-{}", std::process::id()),
        reconnect_max_delay: Duration::from_millis(500),
        ..MqttSettings::default()
    }
}

/// A publisher on `mosq`, driven by `rt`, once connected.
fn connected_publisher(
    rt: &tokio::runtime::Runtime,
    mosq: &Mosquitto,
) -> (Publisher, tokio::task::JoinHandle<()>) {
    let _guard = rt.enter();
    let (publisher, task) = publish::spawn(&mqtt_settings(mosq)).expect("publisher");
    wait_until("the publisher connects", Duration::from_secs(15), || {
        publisher.is_connected()
    });
    (publisher, task)
}

/// Waits until the broker has acknowledged everything offered.
fn wait_published(publisher: &Publisher, what: &str) {
    wait_until(what, Duration::from_secs(30), || publisher.waiting() == 0);
}

/// The retained messages under `filter`, as (topic, JSON), sorted by topic.
fn retained(port: u16, filter: &str, n: usize) -> Vec<(String, serde_json::Value)> {
    let mut got: Vec<(String, serde_json::Value)> =
        mosquitto_sub_collect(port, filter, n, Duration::from_secs(15))
            .into_iter()
            .map(|(t, p)| {
                let json = serde_json::from_slice(&p).unwrap_or_else(|e| {
                    panic!("{t}: not JSON ({e}): {:?}", String::from_utf8_lossy(&p))
                });
                (t, json)
            })
            .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

#[test]
fn values_are_published_retained_and_a_late_subscriber_reads_the_latest() {
    let mosq = Mosquitto::start();
    let rt = runtime();
    let (publisher, task) = connected_publisher(&rt, &mosq);
    // Hour 0 and then hour 1 of medeu on one topic (the latest must win), almaly, a sensor.
    publisher.offer(&[aqi("medeu", 0, Some(50.0)), aqi("almaly", 0, Some(70.0))]);
    publisher.offer(&[aqi("medeu", 1, None), pdk("st-1", 1, 2.5)]);
    // An alert on the same session, to a live subscriber (not retained).
    let alerts = MosquittoSub::start(mosq.port, "qala/alerts/#");
    publisher.publish(
        "qala/alerts/almaty/ecology/us_aqi_nowcast".into(),
        br#"{"rule":"aqi_high"}"#.to_vec(),
        false,
    );
    wait_published(&publisher, "the broker acknowledges everything");
    assert!(
        alerts.wait_for(1, Duration::from_secs(10)),
        "the alert arrives"
    );
    assert_eq!(
        alerts.stop(),
        vec![(
            "qala/alerts/almaty/ecology/us_aqi_nowcast".to_string(),
            br#"{"rule":"aqi_high"}"#.to_vec()
        )]
    );

    let got = retained(mosq.port, "qala/indicators/#", 3);
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        vec![
            "qala/indicators/almaty/ecology/pdk_multiple/sensor/medeu/st-1/pm2_5/1h",
            "qala/indicators/almaty/ecology/us_aqi_nowcast/district/almaly/nowcast",
            "qala/indicators/almaty/ecology/us_aqi_nowcast/district/medeu/nowcast",
        ]
    );
    // Medeu's topic holds hour 1, invalid: value null, never a number.
    let medeu = &got[2].1;
    assert_eq!(medeu, &aqi("medeu", 1, None).to_json());
    assert_eq!(medeu["value"], serde_json::Value::Null);
    assert_eq!(medeu["valid"], false);
    assert_eq!(medeu["window_start"], "2026-11-19T20:00:00Z");
    assert_eq!(medeu["window_end"], "2026-11-19T21:00:00Z");
    assert_eq!(medeu["completeness"]["text"], "1/3 h");
    let almaly = &got[1].1;
    assert_eq!(almaly["value"], 70.0);
    assert_eq!(almaly["level"], "moderate");
    assert_eq!(almaly["completeness"]["ratio"], 1.0);
    assert_eq!(almaly["details"]["pm2_5"], 68.5);
    assert_eq!(almaly["details"]["dominant"], "pm2_5");
    assert_eq!(almaly["reference"], "US EPA AQI, TAD May 2024; NowCast");
    let sensor = &got[0].1;
    assert_eq!(
        (&sensor["sensor_id"], &sensor["component"], &sensor["unit"]),
        (
            &serde_json::json!("st-1"),
            &serde_json::json!("pm2_5"),
            &serde_json::json!("ПДК")
        )
    );

    // A clean close: nothing left, the task ends, the session is gone from the broker.
    let left = rt.block_on(publisher.close(Duration::from_secs(5)));
    assert_eq!(left, 0);
    rt.block_on(task).expect("the publisher task ends");
    // Closed: what comes after is refused, not queued.
    publisher.offer(&[aqi("medeu", 2, Some(1.0))]);
    assert_eq!(publisher.waiting(), 0);
}

#[test]
fn a_broker_restart_loses_no_retained_state() {
    let mut mosq = Mosquitto::start();
    let rt = runtime();
    let (publisher, task) = connected_publisher(&rt, &mosq);
    publisher.offer(&[aqi("medeu", 0, Some(50.0)), aqi("almaly", 0, Some(70.0))]);
    wait_published(&publisher, "the first values are acknowledged");

    // The broker goes away (its persistence keeps what it had); values keep coming meanwhile.
    mosq.stop();
    wait_until(
        "the publisher sees the broker gone",
        Duration::from_secs(15),
        || !publisher.is_connected(),
    );
    publisher.offer(&[aqi("medeu", 1, Some(51.0)), pdk("st-1", 1, 2.5)]);
    publisher.offer(&[aqi("medeu", 2, Some(52.0))]);
    assert_eq!(
        publisher.waiting(),
        2,
        "medeu's two values coalesced into one, plus the sensor's"
    );
    mosq.start_again();
    wait_published(
        &publisher,
        "the values offered during the outage are acknowledged",
    );

    let got = retained(mosq.port, "qala/indicators/#", 3);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].1, pdk("st-1", 1, 2.5).to_json());
    assert_eq!(
        got[1].1,
        aqi("almaly", 0, Some(70.0)).to_json(),
        "kept by the broker"
    );
    assert_eq!(
        got[2].1,
        aqi("medeu", 2, Some(52.0)).to_json(),
        "the latest"
    );

    // With the broker down for good, close gives up at its deadline and says what was left.
    mosq.stop();
    wait_until(
        "the publisher sees the broker gone",
        Duration::from_secs(15),
        || !publisher.is_connected(),
    );
    publisher.offer(&[aqi("medeu", 3, Some(53.0))]);
    let left = rt.block_on(publisher.close(Duration::from_millis(300)));
    assert_eq!(left, 1);
    rt.block_on(task).expect("the publisher task ends");
}
