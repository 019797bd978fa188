//! Qala: a telemetry gateway for smart cities. MQTT in; readings normalised to canonical metrics
//! and units; stored in SQLite and/or an InfluxDB v2 API; bad input dead-lettered, never lost.
//!
//! The data path, one module per stage:
//! `ingest` (MQTT sessions) → `decode` (payload formats) → `normalize` (units, validation) →
//! `pipeline` (batches, acks) → `sink` (SQLite, InfluxDB). `api` serves health and metrics,
//! `broker` runs the embedded rumqttd, `sim` plays sensors for the demo.

pub mod api;
pub mod broker;
pub mod config;
pub mod decode;
pub mod demo;
pub mod gateway;
pub mod indicators;
pub mod ingest;
pub mod model;
pub mod normalize;
pub mod pipeline;
pub mod registry;
pub mod sim;
pub mod sink;
pub mod spool;
pub mod telemetry;
