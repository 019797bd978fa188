//! The simulator: sensors that behave like a city's. For now the small fleet the demo plays;
//! the scenario-driven city simulator grows here.

pub mod audit;
pub mod city;
pub mod fleet;
pub mod models;
pub mod publish;
pub mod run;
pub mod scenario;
