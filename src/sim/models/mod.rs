//! Sensor models for the city simulator (issue 5, "Realistic sensors"): pure and deterministic
//! functions of a scenario seed, a device and a time — no I/O, no clock, no global RNG — that give
//! the values a real device would report, in the canonical units of `normalize::catalog`.
//!
//! - [`traffic`]: loop detectors, per lane and interval (demand profiles, Greenshields speed–flow,
//!   occupancy from flow and speed, Poisson counts, incidents).
//! - [`air`]: air-quality stations (Almaty-like seasons, coal heating, winter smog episodes shared
//!   by a district, daily cycles, temperature and humidity).
//! - [`meter`]: water, heat, power and gas meters (cumulative registers, daily profiles, heating
//!   by degree-days, leaks, resets, rollovers) and the district input meters above them.
//! - [`status`]: devices that report only their health (battery, signal, uptime, online).
//!
//! Air and traffic values at a time are functions of (seed, device, time) alone (counter-based
//! hashing, [`noise`]); meters carry their registers and draw from a `SmallRng` seeded by
//! (seed, id), so the same calls give the same values. Local time is UTC+5 ([`clock`]).

pub mod air;
pub mod clock;
pub mod meter;
pub mod noise;
pub mod status;
pub mod traffic;

pub use air::Station;
pub use meter::{DistrictInput, Meter, MeterFaults, MeterProfile};
pub use status::Health;
pub use traffic::Detector;

/// One value a device reports, in the metric's canonical unit (see normalize::catalog).
pub type Value = (&'static str, f64);
