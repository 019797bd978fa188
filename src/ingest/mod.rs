//! Ingest: MQTT subscriber sessions and the topic layout.

pub mod mqtt;
pub mod topic;

pub use mqtt::{AckToken, Delivery};
