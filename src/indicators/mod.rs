//! Indicators of the national standard (DOMAIN.md §1–§5), computed from the stream as a side
//! branch of the data path. The maths is pure functions over numbers and windows, each table a
//! piece of data naming its source; the engine that feeds them windows comes on top.

pub mod alerts;
pub mod aqi;
pub mod catalog;
pub mod eaqi;
pub mod engine;
pub mod evaluate;
pub mod kz;
pub mod publish;
pub mod run;
pub mod traffic;
pub mod utilities;
pub mod value;
pub mod window;

pub use value::{Completeness, Detail, IndicatorValue, Scope};
