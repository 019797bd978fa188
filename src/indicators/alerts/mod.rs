//! Alerts: `[[alerts.rules]]` watch the engine's indicator values (a threshold crossed, a level
//! changed) and the registered sensors (one silent too long). [`Alerts`] is the pure state
//! machine (hysteresis, debounce, re-emissions); [`AlertOutputs`] sends its [`AlertEvent`]s to
//! the log, MQTT (`qala/alerts/...`, retained) and an optional webhook.

pub mod config;
pub mod event;
pub mod outputs;
pub mod state;
pub mod webhook;

pub use config::{AlertSettings, Condition, Rule, RuleSettings, Severity, StaleAfter};
pub use event::{AlertEvent, AlertState, STALE_INDICATOR};
pub use outputs::{AlertError, AlertHandle, AlertOutputs, AlertReport, AlertSender, PublishFn};
pub use state::Alerts;
