//! The scenarios, one module each. Each runs against the rig and returns its rows;
//! `table` prints them.

pub mod certificates;
pub mod churn;
pub mod memory;
pub mod outage;
pub mod propagation;
pub mod throughput;
