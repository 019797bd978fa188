//! The InfluxDB v2 sink: line protocol through the `influxdb2` crate's raw write
//! (`POST /api/v2/write?org=&bucket=&precision=ns`), one pooled HTTP client, rustls.
//!
//! What the crate cannot do: its error keeps the status and body but not the headers, so a
//! `Retry-After` cannot be honoured through it (backoff with jitter applies instead).

use std::sync::Arc;
use std::time::Duration;

use influxdb2::RequestError;

use super::{line_protocol, ErrorClass, Sink, SinkError};
use crate::config::InfluxSettings;
use crate::model::DeadLetter;
use crate::pipeline::Batch;

pub struct InfluxSink {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    batch_size: usize,
    linger: Duration,
    /// Average line length seen, to size the next body.
    line_len: usize,
}

impl InfluxSink {
    pub fn new(settings: &InfluxSettings) -> Result<InfluxSink, SinkError> {
        let http = reqwest::ClientBuilder::new()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true);
        let token = settings.token.clone().unwrap_or_default();
        let client = influxdb2::ClientBuilder::with_builder(
            http,
            settings.url.trim_end_matches('/'),
            &settings.org,
            token,
        )
        .build()
        .map_err(|e| {
            SinkError::new(
                ErrorClass::Config,
                format!("cannot build the InfluxDB client for {}: {e}", settings.url),
            )
        })?;
        Ok(InfluxSink {
            client,
            org: settings.org.clone(),
            bucket: settings.bucket.clone(),
            batch_size: settings.batch_size,
            linger: settings.flush_interval,
            line_len: 128,
        })
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

    async fn write(&mut self, batches: &[Arc<Batch>]) -> Result<Vec<DeadLetter>, SinkError> {
        let lines: usize = batches.iter().map(|b| b.readings.len()).sum();
        if lines == 0 {
            return Ok(Vec::new());
        }
        let mut body = String::with_capacity(lines * (self.line_len + 16));
        for r in batches.iter().flat_map(|b| b.readings.iter()) {
            line_protocol::encode(&mut body, r);
        }
        self.line_len = body.len() / lines;
        self.client
            .write_line_protocol(&self.org, &self.bucket, body)
            .await
            .map_err(classify)?;
        Ok(Vec::new())
    }
}

/// Sorts a failed write by what should happen next.
pub fn classify(e: RequestError) -> SinkError {
    match e {
        RequestError::Http { status, text } => {
            let code = status.as_u16();
            let class = match code {
                408 | 429 | 500..=599 => ErrorClass::Transient,
                401 | 403 | 404 => ErrorClass::Config,
                _ => ErrorClass::Rejected,
            };
            SinkError::new(
                class,
                format!("InfluxDB answered {status}: {}", text.trim()),
            )
        }
        other => SinkError::transient(format!("InfluxDB write failed: {other}")),
    }
}
