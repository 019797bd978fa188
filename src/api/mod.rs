//! HTTP: `/health` (the process answers), `/ready` (connected, subscribed, every sink writable),
//! `/metrics` (Prometheus text rendered from the `metrics` recorder), `/api/v1/sensors` (the
//! device registry with last seen and staleness, see `registry::listing`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::indicators::catalog::Catalog;
use crate::indicators::run::LatestStore;
use crate::indicators::{IndicatorValue, Scope};
use crate::model::Sphere;

use crate::ingest::mqtt::SessionHandle;
use crate::registry::{listing, LastSeen, RegistryHandle};
use crate::sink::SinkProgress;

/// What the routes read.
#[derive(Clone)]
pub struct ApiState {
    pub prom: PrometheusHandle,
    pub sessions: Vec<SessionHandle>,
    pub sinks: Vec<Arc<SinkProgress>>,
    /// False once a pipeline task (batcher, acker, a sink) died while running.
    pub pipeline_alive: Arc<std::sync::atomic::AtomicBool>,
    /// The latest indicator values, per series.
    pub indicators: Arc<LatestStore>,
    /// The indicator catalog in use (None: the engine is off).
    pub catalog: Option<Arc<Catalog>>,
    /// The device registry in force, and last seen per sensor (for `/api/v1/sensors`).
    pub registry: RegistryHandle,
    pub last_seen: Arc<LastSeen>,
}

/// `GET /api/v1/indicators` filters; each given one must match exactly.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorQuery {
    pub sphere: Option<String>,
    pub indicator: Option<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub scope: Option<String>,
    pub sensor_id: Option<String>,
    pub component: Option<String>,
    pub window: Option<String>,
    /// true: only valid values; false: only invalid ones.
    pub valid: Option<bool>,
}

impl IndicatorQuery {
    fn accepts(&self, v: &IndicatorValue) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.sphere, v.sphere.as_str())
            && is(&self.indicator, &v.indicator)
            && is(&self.city, &v.city)
            && is(&self.district, &v.district)
            && is(&self.scope, v.scope.as_str())
            && is(&self.sensor_id, &v.sensor_id)
            && is(&self.component, &v.component)
            && is(&self.window, &v.window)
            && self.valid.is_none_or(|want| want == v.is_valid())
    }
}

/// The catalog in use: every indicator's id, sphere, function, inputs, scopes, windows, unit,
/// levels, parameters, names (ru, kk, en) and reference, and the ПДК table with its source.
async fn catalog(State(s): State<ApiState>) -> impl IntoResponse {
    match &s.catalog {
        Some(c) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "version": c.version,
                "pdk_source": c.pdk_source,
                "pdk": c.pdk,
                "indicators": c.indicators,
            })),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({ "error": "the indicator engine is off (indicators.enabled = false)" }),
            ),
        ),
    }
}

/// The latest value of every series the filters accept, as JSON (the same document the retained
/// MQTT topics carry). A filter naming an unknown sphere or scope is refused with 400.
async fn indicators(
    State(s): State<ApiState>,
    query: Result<Query<IndicatorQuery>, axum::extract::rejection::QueryRejection>,
) -> impl IntoResponse {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": e.body_text() })),
            )
        }
    };
    if let Some(sp) = &q.sphere {
        if !Sphere::ALL.iter().any(|x| x.as_str() == sp) {
            let known: Vec<&str> = Sphere::ALL.iter().map(|x| x.as_str()).collect();
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    serde_json::json!({ "error": format!("sphere {sp:?} is not one of: {}", known.join(", ")) }),
                ),
            );
        }
    }
    if let Some(sc) = &q.scope {
        if Scope::parse(sc).is_none() {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    serde_json::json!({ "error": format!("scope {sc:?} is not one of: sensor, district, city") }),
                ),
            );
        }
    }
    let values: Vec<serde_json::Value> = s
        .indicators
        .select(|v| q.accepts(v))
        .iter()
        .map(IndicatorValue::to_json)
        .collect();
    (
        StatusCode::OK,
        Json(serde_json::json!({ "count": values.len(), "values": values })),
    )
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    broker_connected: bool,
    subscribed: bool,
    pipeline_running: bool,
    sinks: Vec<SinkState>,
}

#[derive(Serialize)]
struct SinkState {
    name: &'static str,
    writable: bool,
    last_error: Option<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/indicators", get(indicators))
        .route("/api/v1/indicators/catalog", get(catalog))
        .route("/api/v1/sensors", get(sensors))
        .with_state(state)
}

async fn ready(State(s): State<ApiState>) -> impl IntoResponse {
    let broker_connected = s
        .sessions
        .iter()
        .all(|x| x.connected.load(Ordering::Acquire));
    let subscribed = s.sessions.iter().all(|x| x.is_taking_messages());
    let sinks: Vec<SinkState> = s
        .sinks
        .iter()
        .map(|p| SinkState {
            name: p.name,
            writable: p.healthy.load(Ordering::Relaxed),
            last_error: p.last_error.lock().ok().and_then(|e| e.clone()),
        })
        .collect();
    let pipeline_running = s.pipeline_alive.load(Ordering::Acquire);
    let ready = subscribed && pipeline_running && sinks.iter().all(|x| x.writable);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            broker_connected,
            subscribed,
            pipeline_running,
            sinks,
        }),
    )
}

/// The registered devices with last seen and staleness, and the unregistered ones that reported;
/// filters `city`, `district`, `sphere`, `kind`, `stale`, `registered`. Built on a blocking
/// thread: at 100,000 devices it is tens of milliseconds of work.
async fn sensors(
    State(s): State<ApiState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let filter = match listing::Filter::from_query(&query) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": e })),
            )
                .into_response()
        }
    };
    let registry = s.registry.current();
    let seen = s.last_seen.clone();
    let now = crate::ingest::mqtt::now_ns();
    match tokio::task::spawn_blocking(move || listing::to_json(&registry, &seen, &filter, now))
        .await
    {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot render /api/v1/sensors");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "the /api/v1/sensors task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn render_metrics(State(s): State<ApiState>) -> impl IntoResponse {
    let connected = s
        .sessions
        .iter()
        .filter(|x| x.connected.load(Ordering::Acquire))
        .count();
    metrics::gauge!("qala_mqtt_connected").set(connected as f64);
    for p in &s.sinks {
        let v = if p.healthy.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("qala_sink_healthy", "sink" => p.name).set(v);
        let since = p
            .pending_since_ns
            .load(std::sync::atomic::Ordering::Acquire);
        let lag = if since > 0 {
            ((crate::ingest::mqtt::now_ns() - since) as f64 / 1.0e9).max(0.0)
        } else {
            0.0
        };
        metrics::gauge!("qala_sink_lag_seconds", "sink" => p.name).set(lag);
    }
    s.prom.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prom.render(),
    )
}

/// Binds `addr` (port 0 picks a free one) and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((bound, task))
}
