//! The InfluxDB v2 sink: line protocol over one pooled `reqwest` client (rustls),
//! `POST {url}/api/v2/write?org=&bucket=&precision=ns` with `Authorization: Token <token>`.
//! Readings and indicator values (measurement `indicator`) go the same way: a value the server
//! refuses is isolated and dead-lettered like a reading (topic `influxdb:indicator/<series>`).
//!
//! Plain `reqwest` rather than the `influxdb2` crate: the crate's `RequestError` keeps the status
//! and body of a refused write but drops the headers, so `Retry-After` could not be honoured.
//!
//! Bodies of [`GZIP_MIN_BYTES`] or more are gzipped (`Content-Encoding: gzip`, fastest level);
//! smaller ones go plain, where compressing costs more than it saves. Every InfluxDB v2 write API
//! (InfluxDB 2/3, Cloud, VictoriaMetrics) accepts both.
//!
//! What each answer leads to:
//!
//! | answer                                  | `write` returns                        | the runner          |
//! |-----------------------------------------|----------------------------------------|---------------------|
//! | 2xx                                     | `Ok(refused points)` (empty when all stored) | commits       |
//! | 400, 422, other 4xx not listed here     | the group is bisected: halves that pass are stored, failing halves are split again down to single lines; each single refused line is a dead letter (`sink_rejected`, "InfluxDB answered 422: ...") in `Ok` | commits |
//! | 413 Payload Too Large                   | as 400: split in halves until they fit; a single line still 413 is a refused point | commits |
//! | 408, 429, 5xx, network error, timeout   | `Err(Transient)`, with `retry_after` from `Retry-After` (seconds or HTTP-date) on 429 and 503 | retries the group |
//! | 401, 403, 404                           | `Err(Config)`, naming `influxdb.token` / `influxdb.org` / `influxdb.bucket` / `influxdb.url` | retries with backoff; the data stays |
//! | 3xx (redirects are not followed)        | `Err(Config)`, naming `influxdb.url` and where the server points | as above |
//! | anything else (1xx, ≥ 600)              | `Err(Transient)`                       | retries             |
//!
//! A transient or configuration error in the middle of a bisection ends the write with that
//! error: the runner retries the whole group, and the points already written are written again,
//! which InfluxDB treats as an overwrite of the same point (idempotent).
//!
//! `Retry-After` is capped at [`MAX_RETRY_AFTER`]; a date in the past means "now".

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION};

use super::{line_protocol, retry, ErrorClass, Sink, SinkError};
use crate::config::InfluxSettings;
use crate::ingest::mqtt::now_ns;
use crate::model::{DeadLetter, Reading, Reason, Rejection};
use crate::pipeline::Batch;

/// Bodies at least this long are gzipped (≈ 100 points).
pub const GZIP_MIN_BYTES: usize = 16 * 1024;
/// Longest `Retry-After` honoured: a server asking for more is asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Most bytes of an error answer read (the rest is dropped with the connection).
const ERROR_BODY_MAX: usize = 8 * 1024;
/// Most characters of the server's message kept in errors and dead letters.
const MESSAGE_MAX_CHARS: usize = 500;

pub struct InfluxSink {
    client: reqwest::Client,
    /// `{url}/api/v2/write?org=..&bucket=..&precision=ns`.
    write_url: reqwest::Url,
    /// `Token <token>`, marked sensitive; none when no token is configured.
    auth: Option<HeaderValue>,
    /// `influxdb.url` as configured, for messages.
    url: String,
    timeout: Duration,
    batch_size: usize,
    linger: Duration,
    gzip_min_bytes: Option<usize>,
    /// The line protocol of the group being written; kept between writes to reuse its capacity.
    body: String,
    /// Byte offset just past each line of `body` (its `\n`).
    ends: Vec<usize>,
    /// How many lines of `body` are readings; indicator values follow them.
    reading_lines: usize,
}

impl InfluxSink {
    pub fn new(settings: &InfluxSettings) -> Result<InfluxSink, SinkError> {
        let config_error = |what: String| SinkError::new(ErrorClass::Config, what);
        let base = settings.url.trim_end_matches('/');
        let mut write_url = reqwest::Url::parse(&format!("{base}/api/v2/write")).map_err(|e| {
            config_error(format!(
                "influxdb.url = {:?} is not a usable URL: {e}",
                settings.url
            ))
        })?;
        write_url
            .query_pairs_mut()
            .append_pair("org", &settings.org)
            .append_pair("bucket", &settings.bucket)
            .append_pair("precision", "ns");
        let auth = match settings.token.as_deref() {
            Some(token) if !token.is_empty() => {
                let mut v = HeaderValue::from_str(&format!("Token {token}")).map_err(|_| {
                    config_error(
                        "influxdb.token holds characters an HTTP header cannot carry".into(),
                    )
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        let client = reqwest::ClientBuilder::new()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            // A followed 301/302 turns the POST into a GET without a body, whose 200 would pass
            // for a stored write: redirects are reported instead (see `answer`).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                config_error(format!(
                    "cannot build the InfluxDB client for {}: {e}",
                    settings.url
                ))
            })?;
        Ok(InfluxSink {
            client,
            write_url,
            auth,
            url: settings.url.clone(),
            timeout: settings.timeout,
            batch_size: settings.batch_size,
            linger: settings.flush_interval,
            gzip_min_bytes: Some(GZIP_MIN_BYTES),
            body: String::new(),
            ends: Vec::new(),
            reading_lines: 0,
        })
    }

    /// Gzips bodies of at least `min_bytes` (`Some(0)`: every body), or none (`None`).
    pub fn with_gzip(mut self, min_bytes: Option<usize>) -> InfluxSink {
        self.gzip_min_bytes = min_bytes;
        self
    }

    /// The bytes of lines `lo..hi` of `body`.
    fn lines(&self, lo: usize, hi: usize) -> &[u8] {
        let start = if lo == 0 { 0 } else { self.ends[lo - 1] };
        &self.body.as_bytes()[start..self.ends[hi - 1]]
    }

    /// One POST of lines `lo..hi`.
    async fn post(&self, lo: usize, hi: usize) -> Answer {
        let text = self.lines(lo, hi);
        let mut request = self
            .client
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request = match self.gzip_min_bytes {
            Some(min) if text.len() >= min => match gzip(text) {
                Ok(compressed) => request.header(CONTENT_ENCODING, "gzip").body(compressed),
                Err(_) => request.body(Bytes::copy_from_slice(text)),
            },
            _ => request.body(Bytes::copy_from_slice(text)),
        };
        match request.send().await {
            Ok(response) => self.answer(response).await,
            Err(e) => Answer::Failed(self.network_error(&e)),
        }
    }

    /// Sorts a response by what should happen next.
    async fn answer(&self, mut response: reqwest::Response) -> Answer {
        let code = response.status().as_u16();
        let treatment = treatment(code);
        let retry_after = retry::retry_after(&response);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read (a bounded part of) the body: the message, and a reusable connection.
        let body = retry::read_body(&mut response, ERROR_BODY_MAX).await;
        if treatment == Treatment::Stored {
            return Answer::Stored;
        }
        let answered = format!("InfluxDB answered {code}: {}", server_message(&body));
        match treatment {
            Treatment::Stored => Answer::Stored,
            Treatment::Split => Answer::Split(answered),
            Treatment::Retry => Answer::Failed(SinkError {
                class: ErrorClass::Transient,
                message: answered,
                retry_after,
            }),
            Treatment::Config => {
                let hint = match code {
                    401 => "check influxdb.token (or influxdb.token_file)".to_owned(),
                    403 => "check that influxdb.token may write to influxdb.bucket of influxdb.org"
                        .to_owned(),
                    404 => format!(
                        "check that influxdb.org and influxdb.bucket exist and that influxdb.url \
                         ({}) is the server (the write API is {})",
                        self.url,
                        self.write_url.path()
                    ),
                    _ => format!(
                        "check influxdb.url ({}): the server redirects to {}",
                        self.url,
                        location.as_deref().unwrap_or("(no Location)")
                    ),
                };
                Answer::Failed(SinkError::new(
                    ErrorClass::Config,
                    format!("{answered}; {hint}"),
                ))
            }
        }
    }

    fn network_error(&self, e: &reqwest::Error) -> SinkError {
        let what = if e.is_timeout() {
            format!("timed out after {:?}", self.timeout)
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            "failed".to_owned()
        };
        SinkError::transient(format!(
            "InfluxDB write to {} {what}: {}",
            self.url,
            error_chain(e)
        ))
    }

    /// The dead letter for line `i`, refused with `answered`.
    fn dead_letter(&self, batches: &[Arc<Batch>], i: usize, answered: String) -> DeadLetter {
        let line = self.lines(i, i + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let topic = if i < self.reading_lines {
            match reading_at(batches, i) {
                Some(r) => format!(
                    "influxdb:{}/{}/{}/{}",
                    r.sensor.kind, r.sensor.city, r.sensor.district, r.sensor.sensor_id
                ),
                None => "influxdb:unknown".to_owned(),
            }
        } else {
            match batches
                .iter()
                .flat_map(|b| b.indicators.iter())
                .nth(i - self.reading_lines)
            {
                Some(v) => format!(
                    "influxdb:{}/{}",
                    line_protocol::INDICATOR_MEASUREMENT,
                    v.series_key()
                ),
                None => "influxdb:unknown".to_owned(),
            }
        };
        DeadLetter {
            received_ns: now_ns(),
            topic,
            payload: Bytes::copy_from_slice(line),
            rejection: Rejection::new(Reason::SinkRejected, answered),
        }
    }
}

impl Sink for InfluxSink {
    fn name(&self) -> &'static str {
        "influxdb"
    }

    fn max_readings(&self) -> usize {
        self.batch_size
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn stores_indicators(&self) -> bool {
        true
    }

    async fn write(&mut self, batches: &[Arc<Batch>]) -> Result<Vec<DeadLetter>, SinkError> {
        self.body.clear();
        self.ends.clear();
        for r in batches.iter().flat_map(|b| b.readings.iter()) {
            line_protocol::encode(&mut self.body, r);
            self.ends.push(self.body.len());
        }
        self.reading_lines = self.ends.len();
        for v in batches.iter().flat_map(|b| b.indicators.iter()) {
            line_protocol::encode_indicator(&mut self.body, v);
            self.ends.push(self.body.len());
        }
        let lines = self.ends.len();
        if lines == 0 {
            return Ok(Vec::new());
        }
        let this = &*self;
        let mut refused = Vec::new();
        // Ranges of lines still to write, the next on top.
        let mut todo = vec![(0, lines)];
        while let Some((lo, hi)) = todo.pop() {
            match this.post(lo, hi).await {
                Answer::Stored => {}
                Answer::Failed(e) => return Err(e),
                Answer::Split(answered) if hi - lo == 1 => {
                    refused.push(this.dead_letter(batches, lo, answered));
                }
                Answer::Split(answered) => {
                    if hi - lo == lines {
                        tracing::warn!(
                            sink = "influxdb", lines, error = %answered,
                            "InfluxDB refused the write; splitting it to find the points it refuses"
                        );
                    }
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
            }
        }
        Ok(refused)
    }
}

/// What one POST came to.
enum Answer {
    Stored,
    /// Refused as a whole (400, 413, 422, ...): write it in smaller parts.
    Split(String),
    Failed(SinkError),
}

/// What an HTTP status asks of the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// 2xx.
    Stored,
    /// 400, 413, 422 and other 4xx: split the body to isolate what the server refuses.
    Split,
    /// 408, 429, 5xx, and anything unexpected: retry the same write later.
    Retry,
    /// 401, 403, 404, 3xx: an operator must fix the configuration.
    Config,
}

fn treatment(code: u16) -> Treatment {
    match code {
        200..=299 => Treatment::Stored,
        401 | 403 | 404 | 300..=399 => Treatment::Config,
        408 | 429 => Treatment::Retry,
        400..=499 => Treatment::Split,
        _ => Treatment::Retry,
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3: delta-seconds or an HTTP-date) as a wait from `now`,
/// capped at [`MAX_RETRY_AFTER`]; a date already past is zero. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only an overflow can fail, and that is "very long".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// An HTTP-date in any of its three forms (RFC 9110 §5.6.7): IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
/// asctime (`Sun Nov  6 08:49:37 1994`).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    const FORMS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ];
    FORMS
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| SystemTime::from(t.and_utc()))
}

/// The server's message from an error body: InfluxDB 2's `{"code","message"}`, InfluxDB 3's
/// `{"error"}`, or the text itself (VictoriaMetrics); on one line, at most
/// [`MESSAGE_MAX_CHARS`] characters.
fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let json = serde_json::from_str::<serde_json::Value>(text).ok();
    let text = json
        .as_ref()
        .and_then(|v| {
            ["message", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()))
        })
        .unwrap_or(text);
    let mut out = String::with_capacity(text.len().min(MESSAGE_MAX_CHARS));
    for (i, c) in text.chars().enumerate() {
        if i == MESSAGE_MAX_CHARS {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    if out.is_empty() {
        out.push_str("(no message)");
    }
    out
}

/// `e` and its sources, each once.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 8 + 64), Compression::fast());
    encoder.write_all(text)?;
    encoder.finish()
}

/// The `i`-th reading of `batches`, in write order.
fn reading_at(batches: &[Arc<Batch>], mut i: usize) -> Option<&Reading> {
    for b in batches {
        if i < b.readings.len() {
            return b.readings.get(i);
        }
        i -= b.readings.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Sun, 06 Nov 1994 08:49:37 GMT.
    const NOV_6_1994: u64 = 784_111_777;

    #[test]
    fn retry_after_in_seconds() {
        let now = at(NOV_6_1994);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_as_an_http_date_in_all_three_forms() {
        let now = at(NOV_6_1994 - 30);
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            thirty
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            thirty
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), thirty);
    }

    #[test]
    fn retry_after_a_date_already_past_is_now() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(NOV_6_1994 + 10)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_far_ahead_is_capped() {
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", at(NOV_6_1994)),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = at(NOV_6_1994);
        for v in [
            "",
            " ",
            "-1",
            "1.5",
            "soon",
            "2 s",
            "Sun, 06 Nov 1994",
            "0x10",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }

    #[test]
    fn statuses_are_sorted_by_what_they_ask() {
        for code in [200, 204, 299] {
            assert_eq!(treatment(code), Treatment::Stored, "{code}");
        }
        for code in [400, 405, 409, 410, 411, 413, 415, 422, 431, 451, 499] {
            assert_eq!(treatment(code), Treatment::Split, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504, 599, 100, 600, 0] {
            assert_eq!(treatment(code), Treatment::Retry, "{code}");
        }
        for code in [401, 403, 404, 301, 302, 307, 308] {
            assert_eq!(treatment(code), Treatment::Config, "{code}");
        }
    }

    #[test]
    fn server_messages_come_from_json_or_text() {
        assert_eq!(
            server_message(
                br#"{"code":"invalid","message":"unable to parse 'x': missing fields"}"#
            ),
            "unable to parse 'x': missing fields"
        );
        assert_eq!(
            server_message(br#"{"error":"partial write of line protocol occurred"}"#),
            "partial write of line protocol occurred"
        );
        assert_eq!(
            server_message(b"cannot parse line\nsecond line\n"),
            "cannot parse line second line"
        );
        assert_eq!(server_message(b""), "(no message)");
        assert_eq!(server_message(br#"{"code":"x"}"#), r#"{"code":"x"}"#);
        let long = "é".repeat(2 * MESSAGE_MAX_CHARS);
        let m = server_message(long.as_bytes());
        assert_eq!(m.chars().count(), MESSAGE_MAX_CHARS + 1);
        assert!(m.ends_with('…'));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let text = b"air,city=a v=1 1\n".repeat(100);
        let packed = gzip(&text).expect("gzip");
        assert!(packed.len() < text.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, text);
    }

    #[test]
    fn the_write_url_carries_org_bucket_and_precision() {
        let sink = InfluxSink::new(&InfluxSettings {
            url: "http://127.0.0.1:8086/".into(),
            org: "my org".into(),
            bucket: "b&1".into(),
            token: Some("t".into()),
            ..InfluxSettings::default()
        })
        .expect("sink");
        assert_eq!(
            sink.write_url.as_str(),
            "http://127.0.0.1:8086/api/v2/write?org=my+org&bucket=b%261&precision=ns"
        );
        let bad = InfluxSink::new(&InfluxSettings {
            url: "not a url".into(),
            ..InfluxSettings::default()
        });
        assert!(
            matches!(bad, Err(e) if e.class == ErrorClass::Config && e.message.contains("influxdb.url"))
        );
    }
}
