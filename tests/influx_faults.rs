//! The InfluxDB sink against a scripted HTTP server that answers what each test tells it to:
//! refused points (400/422) are isolated and dead-lettered while the rest is stored exactly once,
//! bodies too large (413) are split, 408/429/5xx and network failures are transient (with the
//! server's `Retry-After`), 401/403/404 name the configuration to fix, and gzip bodies carry the
//! right lines. VictoriaMetrics answers 204 to nearly everything, so these paths need a script.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use qala::config::InfluxSettings;
use qala::model::{DeadLetter, Kind, Reading, Reason, SensorRef, TimeSource};
use qala::normalize::catalog;
use qala::pipeline::Batch;
use qala::sink::influx::{InfluxSink, GZIP_MIN_BYTES};
use qala::sink::{line_protocol, ErrorClass, Sink, SinkError};

// ---------------------------------------------------------------------------------------------
// The scripted server
// ---------------------------------------------------------------------------------------------

/// What the server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Wait this long before answering.
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// One write the server saw.
#[derive(Debug, Clone)]
struct Seen {
    query: String,
    authorization: Option<String>,
    content_encoding: Option<String>,
    /// The body's lines (gunzipped when it was gzip), without their newlines.
    lines: Vec<String>,
    /// What it answered.
    status: u16,
}

type Script = dyn Fn(usize, &[String]) -> Reply + Send + Sync;

#[derive(Clone)]
struct Scripted {
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves `POST /api/v2/write` on 127.0.0.1 with `script(request number, body lines)`.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(script: impl Fn(usize, &[String]) -> Reply + Send + Sync + 'static) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Scripted {
            script: Arc::new(script),
            seen: seen.clone(),
        };
        let app = Router::new()
            .route("/api/v2/write", post(write))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every line of the writes answered 2xx, in arrival order.
    fn stored_lines(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| (200..300).contains(&s.status))
            .flat_map(|s| s.lines)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn write(
    State(state): State<Scripted>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_encoding = header("content-encoding");
    let text = if content_encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text) {
            return (StatusCode::BAD_REQUEST, format!("bad gzip: {e}")).into_response();
        }
        text
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = state.seen.lock().unwrap_or_else(|e| e.into_inner()).len();
    let reply = (state.script)(n, &lines);
    state
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Seen {
            query: query.unwrap_or_default(),
            authorization: header("authorization"),
            content_encoding,
            lines,
            status: reply.status,
        });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).expect("a valid status in the script"),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("a valid header value in the script"),
        );
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Readings and the sink
// ---------------------------------------------------------------------------------------------

const T0_NS: i64 = 1_795_143_600_000_000_000;

fn reading(sensor_id: &str, i: usize) -> Reading {
    Reading {
        sensor: SensorRef {
            city: "almaty".into(),
            district: "almaly".into(),
            kind: Kind::Air,
            sensor_id: sensor_id.into(),
        },
        time_ns: T0_NS + i as i64 * 1_000_000_000,
        time_source: TimeSource::Device,
        values: vec![
            (
                catalog::lookup(Kind::Air, "pm2_5").expect("pm2_5"),
                i as f64 + 0.5,
            ),
            (catalog::lookup(Kind::Air, "pm10").expect("pm10"), 20.0),
        ],
    }
}

/// `n` readings of sensors `s-0`, `s-1`, ... with the sensor ids in `bad` put at their index.
fn readings(n: usize, bad: &[(usize, &str)]) -> Vec<Reading> {
    (0..n)
        .map(|i| match bad.iter().find(|(at, _)| *at == i) {
            Some((_, id)) => reading(id, i),
            None => reading(&format!("s-{i}"), i),
        })
        .collect()
}

/// The readings as batches of `per_batch` (the runner hands the sink several at once).
fn batches(readings: &[Reading], per_batch: usize) -> Vec<Arc<Batch>> {
    readings
        .chunks(per_batch)
        .enumerate()
        .map(|(i, chunk)| {
            Arc::new(Batch {
                seq: i as u64 + 1,
                readings: chunk.to_vec(),
                ..Batch::default()
            })
        })
        .collect()
}

/// The line each reading becomes, without its newline.
fn line(r: &Reading) -> String {
    let mut s = String::new();
    line_protocol::encode(&mut s, r);
    s.trim_end_matches('\n').to_owned()
}

fn settings(url: &str) -> InfluxSettings {
    InfluxSettings {
        enabled: true,
        url: url.to_owned(),
        org: "qala-org".into(),
        bucket: "city bucket".into(),
        token: Some("secret-token".into()),
        timeout: Duration::from_secs(5),
        ..InfluxSettings::default()
    }
}

fn sink(url: &str) -> InfluxSink {
    InfluxSink::new(&settings(url)).expect("the sink")
}

async fn write_err(sink: &mut InfluxSink, readings: &[Reading]) -> SinkError {
    match sink.write(&batches(readings, 10)).await {
        Ok(dead) => panic!("the write succeeded (dead letters: {dead:?}); an error was expected"),
        Err(e) => e,
    }
}

/// Sorted copies, to compare as multisets.
fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn assert_refused(dead: &DeadLetter, r: &Reading, status: u16, message: &str) {
    assert_eq!(dead.rejection.reason, Reason::SinkRejected);
    assert_eq!(
        dead.topic,
        format!("influxdb:air/almaty/almaly/{}", r.sensor.sensor_id)
    );
    assert_eq!(dead.payload, line(r).into_bytes());
    assert_eq!(
        dead.rejection.message,
        format!("InfluxDB answered {status}: {message}")
    );
    assert!(dead.received_ns > T0_NS - 10 * 365 * 86_400 * 1_000_000_000);
}

// ---------------------------------------------------------------------------------------------
// Refused points: 400 / 422 / other 4xx
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_point_answered_422_is_isolated_and_every_other_point_is_stored_exactly_once() {
    let message = "failure writing points to database: partial write: points beyond retention policy dropped=1";
    let server = Server::start(move |_, lines| {
        if lines.iter().any(|l| l.contains("sensor_id=bad")) {
            Reply::status(422).body(&format!(
                r#"{{"code":"unprocessable entity","message":"{message}"}}"#
            ))
        } else {
            Reply::status(204)
        }
    })
    .await;
    let all = readings(37, &[(23, "bad")]);
    let dead = sink(&server.url)
        .write(&batches(&all, 5))
        .await
        .expect("the write");

    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_refused(&dead[0], &all[23], 422, message);
    let good: Vec<String> = all
        .iter()
        .filter(|r| r.sensor.sensor_id != "bad")
        .map(line)
        .collect();
    let stored = server.stored_lines();
    assert_eq!(stored.len(), 36, "each good line once: {stored:#?}");
    assert_eq!(sorted(stored), sorted(good));
    // Bisection: about two requests per level of a tree of depth ⌈log2 37⌉ = 6.
    let requests = server.seen().len();
    assert!(requests <= 2 * 6 + 1, "{requests} requests");
}

#[tokio::test]
async fn several_points_answered_400_across_batches_are_each_dead_lettered() {
    let server =
        Server::start(
            |_, lines| match lines.iter().find(|l| l.contains("sensor_id=broken")) {
                Some(l) => Reply::status(400).body(&format!("cannot parse line {l:?}\n")),
                None => Reply::status(204),
            },
        )
        .await;
    let all = readings(20, &[(0, "broken-a"), (7, "broken-b"), (19, "broken-c")]);
    let dead = sink(&server.url)
        .write(&batches(&all, 3))
        .await
        .expect("the write");

    assert_eq!(dead.len(), 3, "{dead:?}");
    for (d, i) in dead.iter().zip([0, 7, 19]) {
        let msg = format!("cannot parse line {:?}", line(&all[i]));
        assert_refused(d, &all[i], 400, &msg);
    }
    let good: Vec<String> = all
        .iter()
        .filter(|r| !r.sensor.sensor_id.starts_with("broken"))
        .map(line)
        .collect();
    assert_eq!(sorted(server.stored_lines()), sorted(good));
}

#[tokio::test]
async fn another_4xx_is_split_like_a_400() {
    let server = Server::start(|_, lines| {
        if lines.iter().any(|l| l.contains("sensor_id=odd")) {
            Reply::status(409).body("conflict")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let all = readings(6, &[(4, "odd")]);
    let dead = sink(&server.url)
        .write(&batches(&all, 6))
        .await
        .expect("the write");
    assert_eq!(dead.len(), 1);
    assert_refused(&dead[0], &all[4], 409, "conflict");
    assert_eq!(server.stored_lines().len(), 5);
}

#[tokio::test]
async fn a_transient_answer_during_the_bisection_fails_the_whole_write() {
    // First the whole body is refused; then the server is overloaded.
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(422).body(r#"{"message":"bad point"}"#)
        } else {
            Reply::status(429).header("retry-after", "7")
        }
    })
    .await;
    let e = write_err(&mut sink(&server.url), &readings(8, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_config_answer_during_the_bisection_fails_the_whole_write() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(400).body("bad point")
        } else {
            Reply::status(401).body(r#"{"code":"unauthorized","message":"unauthorized access"}"#)
        }
    })
    .await;
    let e = write_err(&mut sink(&server.url), &readings(8, &[])).await;
    assert_eq!(e.class, ErrorClass::Config);
}

// ---------------------------------------------------------------------------------------------
// 413: too large
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_answered_413_are_split_until_they_fit() {
    const MAX_LINES: usize = 8;
    let server = Server::start(|_, lines| {
        if lines.len() > MAX_LINES {
            Reply::status(413).body(r#"{"code":"request too large","message":"unable to read data: request entity too large"}"#)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let all = readings(50, &[]);
    let dead = sink(&server.url)
        .write(&batches(&all, 7))
        .await
        .expect("the write");

    assert!(dead.is_empty(), "{dead:?}");
    let seen = server.seen();
    assert!(seen
        .iter()
        .filter(|s| s.status == 204)
        .all(|s| s.lines.len() <= MAX_LINES));
    assert!(seen.iter().filter(|s| s.status == 204).count() >= 50 / MAX_LINES);
    assert_eq!(
        server.stored_lines(),
        all.iter().map(line).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_single_line_still_413_is_a_refused_point() {
    let server = Server::start(|_, lines| {
        if lines.len() > 4 || lines.iter().any(|l| l.contains("sensor_id=huge")) {
            Reply::status(413).body("request entity too large")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let all = readings(12, &[(5, "huge")]);
    let dead = sink(&server.url)
        .write(&batches(&all, 12))
        .await
        .expect("the write");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_refused(&dead[0], &all[5], 413, "request entity too large");
    assert_eq!(server.stored_lines().len(), 11);
}

// ---------------------------------------------------------------------------------------------
// Transient: 408, 429, 5xx, network
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_429_is_transient_with_the_servers_retry_after_in_seconds() {
    let server = Server::start(|_, _| {
        Reply::status(429)
            .header("retry-after", "2")
            .body("slow down")
    })
    .await;
    let e = write_err(&mut sink(&server.url), &readings(3, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert!(
        e.message.contains("429") && e.message.contains("slow down"),
        "{e}"
    );
    assert_eq!(server.seen().len(), 1, "no split on 429");
}

#[tokio::test]
async fn a_503_is_transient_with_the_servers_retry_after_as_an_http_date() {
    let at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let server = Server::start(move |_, _| {
        Reply::status(503)
            .header("retry-after", date.clone())
            .body(r#"{"code":"unavailable","message":"service unavailable"}"#)
    })
    .await;
    let e = write_err(&mut sink(&server.url), &readings(3, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    let wait = e.retry_after.expect("a retry_after");
    assert!(
        wait >= Duration::from_secs(27) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(e.message, "InfluxDB answered 503: service unavailable");
}

#[tokio::test]
async fn other_transient_answers_carry_no_retry_after() {
    for status in [408, 500, 502, 504] {
        // A Retry-After on other statuses is not taken (only 429 and 503 define it here).
        let server = Server::start(move |_, _| {
            Reply::status(status)
                .header("retry-after", "9")
                .body("busy")
        })
        .await;
        let e = write_err(&mut sink(&server.url), &readings(3, &[])).await;
        assert_eq!(e.class, ErrorClass::Transient, "{status}");
        assert_eq!(e.retry_after, None, "{status}");
        assert_eq!(server.seen().len(), 1, "{status}: no split");
    }
    // A 503 with an unreadable Retry-After: transient, and the runner's own backoff applies.
    let server =
        Server::start(|_, _| Reply::status(503).header("retry-after", "soon, promise")).await;
    let e = write_err(&mut sink(&server.url), &readings(1, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, None);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let e = write_err(&mut sink(&format!("http://{addr}")), &readings(3, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, None);
    assert!(e.message.contains("cannot connect"), "{e}");
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_transient() {
    let server = Server::start(|_, _| Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(204)
    })
    .await;
    let mut s = InfluxSink::new(&InfluxSettings {
        timeout: Duration::from_millis(300),
        ..settings(&server.url)
    })
    .expect("the sink");
    let e = write_err(&mut s, &readings(3, &[])).await;
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("timed out after 300ms"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Config: 401 / 403 / 404 / redirects
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_and_missing_bucket_answers_name_the_setting_to_fix() {
    for (status, keys) in [
        (401, &["influxdb.token"][..]),
        (
            403,
            &["influxdb.token", "influxdb.bucket", "influxdb.org"][..],
        ),
        (
            404,
            &["influxdb.org", "influxdb.bucket", "influxdb.url"][..],
        ),
    ] {
        let server = Server::start(move |_, _| {
            Reply::status(status).body(r#"{"code":"x","message":"the server's reason"}"#)
        })
        .await;
        let e = write_err(&mut sink(&server.url), &readings(5, &[])).await;
        assert_eq!(e.class, ErrorClass::Config, "{status}");
        assert_eq!(e.retry_after, None);
        assert!(
            e.message.starts_with(&format!(
                "InfluxDB answered {status}: the server's reason; "
            )),
            "{e}"
        );
        for key in keys {
            assert!(e.message.contains(key), "{status}: {e} should name {key}");
        }
        assert_eq!(server.seen().len(), 1, "{status}: no split");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_reported() {
    let server = Server::start(|_, _| {
        Reply::status(301).header("location", "https://influx.example/api/v2/write")
    })
    .await;
    let e = write_err(&mut sink(&server.url), &readings(2, &[])).await;
    assert_eq!(e.class, ErrorClass::Config);
    assert!(
        e.message.contains("influxdb.url") && e.message.contains("https://influx.example"),
        "{e}"
    );
    assert_eq!(server.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The request itself
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn large_bodies_are_gzipped_small_ones_are_not_and_both_carry_the_right_lines() {
    let server = Server::start(|_, _| Reply::status(204)).await;
    let mut s = sink(&server.url);
    let large = readings(400, &[]);
    let body_len: usize = large.iter().map(|r| line(r).len() + 1).sum();
    assert!(body_len >= GZIP_MIN_BYTES, "{body_len}");
    let small = readings(3, &[]);

    assert!(s
        .write(&batches(&large, 64))
        .await
        .expect("large")
        .is_empty());
    assert!(s
        .write(&batches(&small, 64))
        .await
        .expect("small")
        .is_empty());
    assert!(s.write(&[]).await.expect("nothing").is_empty());
    let mut s = s.with_gzip(Some(0));
    assert!(s
        .write(&batches(&small, 64))
        .await
        .expect("small")
        .is_empty());
    let mut s = s.with_gzip(None);
    assert!(s
        .write(&batches(&large, 64))
        .await
        .expect("large")
        .is_empty());

    let seen = server.seen();
    assert_eq!(seen.len(), 4, "an empty write sends nothing");
    let encodings: Vec<Option<&str>> = seen.iter().map(|s| s.content_encoding.as_deref()).collect();
    assert_eq!(encodings, [Some("gzip"), None, Some("gzip"), None]);
    let large_lines: Vec<String> = large.iter().map(line).collect();
    let small_lines: Vec<String> = small.iter().map(line).collect();
    assert_eq!(seen[0].lines, large_lines);
    assert_eq!(seen[1].lines, small_lines);
    assert_eq!(seen[2].lines, small_lines);
    assert_eq!(seen[3].lines, large_lines);
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some("Token secret-token"));
        assert_eq!(s.query, "org=qala-org&bucket=city+bucket&precision=ns");
    }
}

#[tokio::test]
async fn no_token_means_no_authorization_header() {
    let server = Server::start(|_, _| Reply::status(204)).await;
    let mut s = InfluxSink::new(&InfluxSettings {
        token: None,
        ..settings(&format!("{}/", server.url))
    })
    .expect("the sink");
    assert!(s
        .write(&batches(&readings(2, &[]), 2))
        .await
        .expect("write")
        .is_empty());
    assert_eq!(server.seen()[0].authorization, None);
}

// ---------------------------------------------------------------------------------------------
// The whole gateway: a refused point reaches the dead letter through the spool
// ---------------------------------------------------------------------------------------------

/// (e) of the fault tests: InfluxDB answers 422 for one point of a batch. Through the whole
/// gateway (embedded broker, spool, both sinks), that point alone lands in SQLite's dead letters
/// with reason `sink_rejected` and the server's message; every other point is stored once in
/// InfluxDB; SQLite, which accepts the point, stores all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_influxdb_refuses_is_dead_lettered_through_the_spool_and_the_rest_is_stored() {
    const GOOD: usize = 60;
    let server = Server::start(|_, lines| {
        if lines.iter().any(|l| l.contains("sensor_id=m-bad")) {
            Reply::status(422).body(r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"volume\" on measurement \"water\" is type float, already exists as type string dropped=1"}"#)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let mut settings = qala::config::Settings::default();
    settings.broker.embedded = true;
    settings.broker.listen = format!("127.0.0.1:{port}");
    settings.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    settings.sqlite.path = dir.path().join("qala.sqlite");
    settings.spool.dir = dir.path().join("spool");
    settings.http.listen = "127.0.0.1:0".into();
    settings.influxdb.enabled = true;
    settings.influxdb.url = server.url.clone();
    settings.influxdb.org = "qala".into();
    settings.influxdb.bucket = "qala".into();
    settings.influxdb.token = Some("t".into());
    settings.validate().expect("config");
    let db = settings.sqlite.path.clone();
    let gateway = qala::gateway::Gateway::start(settings)
        .await
        .expect("gateway starts");
    assert!(gateway.wait_taking_messages(Duration::from_secs(15)).await);

    tokio::task::spawn_blocking(move || {
        let lines: Vec<String> = (0..GOOD)
            .map(|i| format!(r#"{{"ts":{},"volume":{i}.5}}"#, 1_795_143_600_000i64 + i as i64 * 1000))
            .collect();
        common::mosquitto_pub(port, "city/refuse/d1/water/m-bad", br#"{"ts":1795143600000,"volume":7.5}"#, 1);
        let dbc = db.clone();
        common::mosquitto_pub_lines(port, "city/refuse/d1/water/m-1", &lines, 1, move || {
            common::sqlite_i64(&dbc, "SELECT count(*) FROM readings_view WHERE city = 'refuse'") > GOOD as i64
        }, Duration::from_secs(60));
        common::wait_until("the refused point in the dead letters", Duration::from_secs(30), || {
            common::sqlite_i64(&db, "SELECT count(*) FROM dead_letters WHERE reason = 'sink_rejected'") >= 1
        });
        let conn = common::sqlite_open_readonly(&db);
        let (topic, message, payload): (String, String, Vec<u8>) = conn
            .query_row("SELECT topic, message, payload FROM dead_letters WHERE reason = 'sink_rejected'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("the dead letter");
        assert_eq!(topic, "influxdb:water/refuse/d1/m-bad");
        assert!(message.starts_with("InfluxDB answered 422"), "{message}");
        assert!(message.contains("field type conflict"), "{message}");
        let line = String::from_utf8(payload).expect("line protocol");
        assert!(line.starts_with("water,city=refuse,district=d1,sensor_id=m-bad,sphere=housing_utilities volume=7.5 "), "{line}");
        assert_eq!(common::sqlite_i64(&db, "SELECT count(*) FROM dead_letters"), 1, "only the refused point is a dead letter");
        assert_eq!(common::sqlite_i64(&db, "SELECT count(*) FROM readings_view WHERE city = 'refuse'"), GOOD as i64 + 1);
    })
    .await
    .expect("checks");
    let stored = server.stored_lines();
    let good: std::collections::BTreeSet<&String> = stored
        .iter()
        .filter(|l| l.contains("sensor_id=m-1,"))
        .collect();
    assert_eq!(good.len(), GOOD, "every good point stored in InfluxDB");
    assert_eq!(
        stored.len(),
        GOOD,
        "each good point stored once, the refused one never"
    );
    let m = qala::telemetry::metrics_handle().render();
    assert!(
        m.contains("qala_messages_rejected_total{reason=\"sink_rejected\"} 1"),
        "{m}"
    );
    gateway.shutdown().await;
}
