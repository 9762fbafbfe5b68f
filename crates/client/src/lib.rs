//! Client of the ringleader coordinator, for shards and tools.
//!
//! - [`api`]: every request and response body of the HTTP API, shared with
//!   the server so the two cannot drift.

pub mod api;
