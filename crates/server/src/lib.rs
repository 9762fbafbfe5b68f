//! The ringleader coordinator, as a library for the binary and its tests.
//!
//! Data flows one way: a membership source (ringleader-watch) feeds the
//! [`coordinator`] (flap damping, settling, planning with ringleader-ring
//! and ringleader-planner), whose state goes to the [`state`] store and, as
//! a read-only view, to the HTTP API.

pub mod api;
pub mod coordinator;
mod held_target;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod plan_times;
mod rebalance;
pub mod runtime;
pub mod serve;
pub mod settings;
#[cfg(test)]
mod sim;
pub mod simulate;
pub mod state;
#[cfg(test)]
mod test_logs;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod view;
