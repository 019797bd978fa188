//! Logs (tracing) and metrics (the `metrics` facade, rendered as Prometheus text).

pub mod prom;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::Reason;

/// Bucket bounds of `qala_ingest_lag_seconds` (sensor timestamp → committed), in seconds.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`, brokers' chatter at `warn`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=warn,rumqttc=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("qala_ingest_lag_seconds".into()),
                    LAG_BUCKETS,
                )
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "qala_messages_received_total",
        "MQTT messages taken from the broker"
    );
    describe_counter!(
        "qala_readings_stored_total",
        "Readings (points) committed, by sink and sensor kind"
    );
    describe_counter!(
        "qala_messages_rejected_total",
        "Messages dead-lettered, by reason"
    );
    describe_counter!(
        "qala_readings_duplicate_total",
        "Values dropped before the sinks as exact repeats (same sensor, metric, time and value)"
    );
    describe_counter!(
        "qala_sink_retries_total",
        "Failed sink writes that were retried"
    );
    describe_counter!(
        "qala_acks_skipped_total",
        "PUBACKs not sent because the connection changed (the broker redelivers)"
    );
    describe_histogram!(
        "qala_ingest_lag_seconds",
        Unit::Seconds,
        "Sensor timestamp to committed in every sink"
    );
    describe_counter!(
        "qala_indicator_values_stored_total",
        "Indicator values committed, by sink"
    );
    describe_counter!(
        "qala_publisher_published_total",
        "Retained indicator values and alerts the broker acknowledged, by kind"
    );
    describe_counter!(
        "qala_publisher_coalesced_total",
        "Indicator values replaced by a newer value of their topic before they were sent"
    );
    describe_counter!(
        "qala_publisher_dropped_total",
        "Messages dropped because the publisher's queue was full, by kind"
    );
    describe_counter!(
        "qala_publisher_failed_total",
        "Messages not published: bad topic, too large, offered after close, or left at close"
    );
    describe_gauge!(
        "qala_publisher_pending",
        "Messages the MQTT publisher holds that the broker has not acknowledged"
    );
    describe_gauge!(
        "qala_publisher_connected",
        "1 when the indicator publisher's MQTT session is connected"
    );
    describe_gauge!("qala_mqtt_connected", "MQTT sessions connected");
    describe_gauge!(
        "qala_sink_healthy",
        "1 when the sink's last write succeeded"
    );
    describe_gauge!(
        "qala_sink_lag_seconds",
        "age of the oldest spooled batch the sink has not written (0 when caught up; set on scrape)"
    );
    // Present from the start, at zero.
    metrics::counter!("qala_messages_received_total").absolute(0);
    metrics::counter!("qala_readings_duplicate_total").absolute(0);
    for r in Reason::ALL {
        metrics::counter!("qala_messages_rejected_total", "reason" => r.as_str()).absolute(0);
    }
}
