//! Ingest: MQTT subscriber sessions, and routes from topics to sensors and formats.

pub mod mqtt;
pub mod route;

pub use mqtt::{AckToken, Delivery};
