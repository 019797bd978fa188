//! Alerts end to end: the webhook against a scripted HTTP server on 127.0.0.1 (retries on 503
//! with Retry-After, no retry on 400, giving up, a full queue), and MQTT through a real
//! Mosquitto read back with `mosquitto_sub` (retained state after a clear).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use qala::config::Settings;
use qala::indicators::alerts::{
    AlertEvent, AlertHandle, AlertOutputs, AlertReport, AlertSettings, AlertState, Alerts,
    PublishFn, Severity,
};
use qala::indicators::{Completeness, IndicatorValue, Scope};
use qala::model::Sphere;

use common::*;

const HOUR: i64 = 3_600_000_000_000;
/// 2026-11-24 00:00 UTC.
const T0: i64 = 1_795_478_400_000_000_000;

/// A scripted webhook receiver: answers the n-th request with `script[n]` (the last entry
/// repeats), after `delay`; records arrival time and body of every request.
type Requests = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

#[derive(Clone)]
struct Receiver {
    script: Arc<Vec<(u16, Option<&'static str>)>>,
    delay: Duration,
    seen: Requests,
}

impl Receiver {
    fn requests(&self) -> Vec<(Instant, Vec<u8>)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn hook(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    assert_eq!(
        headers.get("content-type").map(HeaderValue::as_bytes),
        Some(&b"application/json"[..])
    );
    let n = {
        let mut seen = r.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push((Instant::now(), body.to_vec()));
        seen.len() - 1
    };
    tokio::time::sleep(r.delay).await;
    let (code, retry_after) = r.script[n.min(r.script.len() - 1)];
    let status = StatusCode::from_u16(code).expect("status");
    match retry_after {
        Some(v) => (status, [("retry-after", v)], "busy").into_response(),
        None => (status, format!("answer {n}")).into_response(),
    }
}

/// Starts a receiver on a free port of 127.0.0.1; returns it and its URL.
async fn receiver(script: Vec<(u16, Option<&'static str>)>, delay: Duration) -> (Receiver, String) {
    let r = Receiver {
        script: Arc::new(script),
        delay,
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

fn webhook_settings(url: &str, queue: usize, max_retries: u32) -> AlertSettings {
    AlertSettings {
        webhook_url: Some(url.to_owned()),
        webhook_timeout: Duration::from_secs(5),
        webhook_max_retries: max_retries,
        webhook_give_up: Duration::from_secs(60),
        queue,
        ..AlertSettings::default()
    }
}

fn event(rule: &str, n: i64) -> AlertEvent {
    AlertEvent {
        rule: rule.into(),
        severity: Severity::Critical,
        state: AlertState::Raised,
        indicator: "us_aqi_nowcast".into(),
        sphere: Sphere::Ecology,
        scope: Scope::District,
        city: "almaty".into(),
        district: "medeu".into(),
        sensor_id: String::new(),
        component: String::new(),
        window: "nowcast".into(),
        window_start_ns: T0 + n * HOUR,
        window_end_ns: T0 + (n + 1) * HOUR,
        value: Some(162.0),
        unit: "AQI".into(),
        level: Some("unhealthy".into()),
        previous_level: None,
        threshold: Some(150.0),
        message: format!("event {n}"),
        at_ns: T0 + (n + 1) * HOUR,
    }
}

async fn wait_report(h: &AlertHandle, what: &str, f: impl Fn(&AlertReport) -> bool) -> AlertReport {
    let start = Instant::now();
    loop {
        let r = h.report();
        if f(&r) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("the webhook body is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_503_honouring_retry_after_and_delivers_exactly_once() {
    let (r, url) = receiver(
        vec![(503, Some("1")), (503, None), (200, None)],
        Duration::ZERO,
    )
    .await;
    let outputs = AlertOutputs::new(&webhook_settings(&url, 16, 5), None).expect("outputs");
    let h = outputs.start();
    let sent = event("aqi_503", 0);
    assert!(h.sender().send(sent.clone()));
    wait_report(&h, "delivery", |r| r.webhook_delivered == 1).await;
    let report = h.close(Duration::from_secs(5)).await;
    let requests = r.requests();
    println!(
        "webhook 503,503,200: {report:?}; requests at +{:?}, +{:?}",
        requests[1].0 - requests[0].0,
        requests[2].0 - requests[0].0
    );
    assert_eq!(requests.len(), 3, "two 503s, then the one accepted");
    assert_eq!(
        report,
        AlertReport {
            handled: 1,
            published: 0,
            webhook_delivered: 1,
            webhook_failed: 0,
            webhook_retries: 2,
            dropped_all: 0,
            dropped_webhook: 0
        }
    );
    assert!(
        requests[1].0 - requests[0].0 >= Duration::from_secs(1),
        "Retry-After: 1 is honoured"
    );
    for (_, body) in &requests {
        assert_eq!(
            body,
            &sent.to_json(),
            "every attempt carries the same event"
        );
    }
    let body = json(&requests[2].1);
    assert_eq!(body["rule"], "aqi_503");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["indicator"], "us_aqi_nowcast");
    assert_eq!(body["sphere"], "ecology");
    assert_eq!(body["scope"], "district");
    assert_eq!(body["city"], "almaty");
    assert_eq!(body["district"], "medeu");
    assert_eq!(body["value"], 162.0);
    assert_eq!(body["threshold"], 150.0);
    assert_eq!(body["level"], "unhealthy");
    assert_eq!(body["window_start_ns"], T0);
    assert_eq!(body["at_ns"], T0 + HOUR);
    let back: AlertEvent =
        serde_json::from_value(body).expect("the body reads back as an AlertEvent");
    assert_eq!(back, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_400_is_not_retried_and_is_counted() {
    let handle = qala::telemetry::metrics_handle();
    let (r, url) = receiver(vec![(400, None)], Duration::ZERO).await;
    let h = AlertOutputs::new(&webhook_settings(&url, 16, 5), None)
        .expect("outputs")
        .start();
    let tx = h.sender();
    assert!(tx.send(event("aqi_400", 0)));
    wait_report(&h, "the refusal", |r| r.webhook_failed == 1).await;
    assert_eq!(r.requests().len(), 1, "a 400 is not retried");
    // The next event is tried on its own (and refused on its own).
    assert!(tx.send(event("aqi_400", 1)));
    wait_report(&h, "the second refusal", |r| r.webhook_failed == 2).await;
    drop(tx);
    let report = h.close(Duration::from_secs(5)).await;
    println!("webhook 400: {report:?}");
    assert_eq!(r.requests().len(), 2);
    assert_eq!(
        (
            report.webhook_delivered,
            report.webhook_failed,
            report.webhook_retries
        ),
        (0, 2, 0)
    );
    let metrics = handle.render();
    assert_eq!(
        prom_value(
            &metrics,
            "qala_alerts_total",
            &[("rule", "aqi_400"), ("state", "raised")]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        prom_value(&metrics, "qala_alert_webhook_failures_total", &[]).is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
}

/// Sends one event to `url` with `webhook_max_retries = 2`; waits until it is given up and
/// checks it was tried three times.
async fn given_up_after_two_retries(url: &str, what: &str) {
    let h = AlertOutputs::new(&webhook_settings(url, 16, 2), None)
        .expect("outputs")
        .start();
    assert!(h.sender().send(event("aqi_given_up", 0)));
    wait_report(&h, "giving up", |r| r.webhook_failed == 1).await;
    let report = h.close(Duration::from_secs(5)).await;
    println!("webhook {what}: {report:?}");
    assert_eq!((report.webhook_delivered, report.webhook_retries), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gives_up_after_max_retries() {
    let (r, url) = receiver(vec![(500, None)], Duration::ZERO).await;
    given_up_after_two_retries(&url, "500 ×3").await;
    assert_eq!(r.requests().len(), 3, "the first attempt and 2 retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_network_errors_are_retried_then_given_up() {
    // A port nobody listens on: every attempt is refused by the kernel.
    let url = format!("http://127.0.0.1:{}/hook", free_port());
    given_up_after_two_retries(&url, "unreachable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_drop_and_count_instead_of_blocking() {
    // A receiver that takes 5 s an answer: the webhook holds one event in flight and 2 queued.
    let (r, url) = receiver(vec![(200, None)], Duration::from_secs(5)).await;
    let h = AlertOutputs::new(&webhook_settings(&url, 2, 0), None)
        .expect("outputs")
        .start();
    let tx = h.sender();
    // 1. A burst larger than the outputs' queue: the rest is dropped before every output.
    let start = Instant::now();
    let accepted = (0..50).filter(|n| tx.send(event("aqi_flood", *n))).count() as u64;
    let took = start.elapsed();
    let report = wait_report(&h, "the burst to be handled", |r| r.handled == accepted).await;
    assert!(took < Duration::from_secs(1), "send never waits ({took:?})");
    assert!(accepted >= 2, "the queue holds 2: {accepted}");
    assert_eq!(
        report.dropped_all,
        50 - accepted,
        "every event is queued or counted"
    );
    // 2. One at a time, each taken by the outputs: the webhook's queue is full, they are
    //    logged (and would be published) but dropped before the webhook.
    for n in 0..10 {
        assert!(tx.send(event("aqi_flood", 100 + n)));
        let want = accepted + n as u64 + 1;
        wait_report(&h, "the outputs to take it", |r| r.handled == want).await;
    }
    drop(tx);
    let report = h.report();
    let closed = h.close(Duration::from_millis(100)).await;
    println!("50-event burst then 10 one by one, queue 2, slow webhook: burst sent in {took:?}; {closed:?}");
    assert_eq!(report.handled, accepted + 10);
    assert!(
        report.dropped_webhook >= accepted + 10 - 3,
        "at most 1 in flight and 2 queued reach the webhook: {report:?}"
    );
    assert!(r.requests().len() <= 1, "one request in flight");
    assert_eq!(
        closed.dropped_webhook, report.handled,
        "what the webhook held at the deadline (in flight and queued) is counted as dropped too"
    );
}

/// Values of hour `h` of `district` with `x`.
fn value(district: &str, h: i64, x: f64) -> IndicatorValue {
    IndicatorValue {
        indicator: "us_aqi_nowcast".into(),
        sphere: Sphere::Ecology,
        scope: Scope::District,
        city: "almaty".into(),
        district: district.into(),
        sensor_id: String::new(),
        component: String::new(),
        window: "nowcast".into(),
        window_start_ns: T0 + h * HOUR,
        window_end_ns: T0 + (h + 1) * HOUR,
        value: Some(x),
        unit: "AQI".into(),
        level: None,
        completeness: Completeness::new(12, 12, "h"),
        reference: "US EPA AQI, TAD May 2024; NowCast".into(),
        details: Vec::new(),
        computed_ns: T0 + (h + 1) * HOUR,
    }
}

#[test]
fn mqtt_alerts_are_retained_and_a_late_subscriber_sees_the_current_state() {
    let mosq = Mosquitto::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alerts.toml");
    std::fs::write(
        &config,
        "[[alerts.rules]]\nname = \"aqi_unhealthy\"\nindicator = \"us_aqi_nowcast\"\nscope = \"district\"\nabove = 150\nclear_below = 130\nfor = 2\nseverity = \"critical\"\n",
    )
    .expect("write config");
    let settings = Settings::load_from(Some(&config), Vec::new()).expect("config loads");
    let live = MosquittoSub::start(mosq.port, "qala/alerts/#");

    // The gateway's publisher stands in as a rumqttc client.
    let (events, report) = rt.block_on(async {
        let mut opts = rumqttc::MqttOptions::new("qala-alerts-test", "127.0.0.1", mosq.port);
        opts.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let publish: PublishFn = Arc::new(move |topic, payload, retain| {
            client
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .expect("the MQTT client's queue has room");
        });
        let h = AlertOutputs::new(&settings.alerts, Some(publish))
            .expect("outputs")
            .start();
        let tx = h.sender();
        let mut alerts = Alerts::new(settings.alerts.rules());
        let mut all = Vec::new();
        // medeu: 160, 140 (in the band), 170, 175 (raised: two in a row), 140, 120 (cleared).
        // alatau: 155, 190 (raised), then never below 130: stays raised.
        for (h, (m, a)) in [
            (160.0, 155.0),
            (140.0, 190.0),
            (170.0, 180.0),
            (175.0, 140.0),
            (140.0, 135.0),
            (120.0, 160.0),
        ]
        .into_iter()
        .enumerate()
        {
            let h = h as i64;
            for v in [value("medeu", h, m), value("alatau", h, a)] {
                let events = alerts.on_value(&v);
                all.extend(events.iter().cloned());
                tx.send_all(events);
            }
        }
        drop(tx);
        let report = h.close(Duration::from_secs(5)).await;
        (all, report)
    });
    let states: Vec<(&str, AlertState)> = events
        .iter()
        .map(|e| (e.district.as_str(), e.state))
        .collect();
    assert_eq!(
        states,
        [
            ("alatau", AlertState::Raised),
            ("medeu", AlertState::Raised),
            ("medeu", AlertState::Cleared)
        ]
    );
    assert_eq!((report.handled, report.published), (3, 3));

    assert!(
        live.wait_for(3, Duration::from_secs(10)),
        "3 alert messages"
    );
    let got = live.stop();
    let medeu = "qala/alerts/almaty/ecology/us_aqi_nowcast/aqi_unhealthy/medeu/nowcast";
    let alatau = "qala/alerts/almaty/ecology/us_aqi_nowcast/aqi_unhealthy/alatau/nowcast";
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, [alatau, medeu, medeu]);
    for ((_, payload), e) in got.iter().zip(&events) {
        assert_eq!(payload, &e.to_json());
    }

    // A subscriber arriving later gets the retained state: medeu cleared, alatau raised.
    let late = mosquitto_sub_collect(mosq.port, "qala/alerts/#", 2, Duration::from_secs(10));
    let mut retained: Vec<(String, String, f64)> = late
        .iter()
        .map(|(t, p)| {
            let v = json(p);
            (
                t.clone(),
                v["state"].as_str().unwrap_or_default().to_owned(),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    retained.sort_by(|a, b| a.0.cmp(&b.0));
    println!("retained after the run: {retained:?}");
    assert_eq!(
        retained,
        [
            (alatau.to_owned(), "raised".to_owned(), 190.0),
            (medeu.to_owned(), "cleared".to_owned(), 120.0)
        ]
    );
}
