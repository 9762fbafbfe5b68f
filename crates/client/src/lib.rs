//! Client of the ringleader coordinator, for shards and operator tools.
//!
//! A shard embeds a [`LocalRing`]: a copy of the coordinator's token ring,
//! kept current by following its watch stream, so that "who owns this key?"
//! is answered locally in nanoseconds, exactly as the coordinator would
//! answer it. Tools use the [`Client`] for the rest of the HTTP API (plans,
//! reporting moves done, previews) and [`render`] to print answers as tables.
//!
//! - [`api`]: every request and response body of the HTTP API, shared with
//!   the server so the two cannot drift.
//! - [`Client`]: async calls of every endpoint, `ETag` caching of the ring,
//!   the `GET /v1/watch` Server-Sent Events as a stream ([`sse`] parses them).
//! - [`LocalRing`]: one epoch of the ring for local lookups;
//!   [`LocalRing::sync`] keeps it current, reconnecting with backoff.
//! - [`Runner`]: a shard's side of a plan — follows one member's work
//!   (`GET /v1/members/{id}/work`), runs the shard's transfer function per
//!   move with retries, reports each move done, stops cancelled ones.
//! - [`render`]: the operator CLI's text tables.
//!
//! ```no_run
//! use ringleader_client::{Client, LocalRing, SyncOptions};
//!
//! # async fn example() -> Result<(), ringleader_client::Error> {
//! let client = Client::new("http://ringleader.db.svc:8080")?.with_token("s3cret");
//! let synced = LocalRing::sync(client.clone(), SyncOptions::default()).await?;
//!
//! // Anywhere, any time: the current epoch's ring.
//! let ring = synced.current();
//! println!("epoch {}: user:42 lives on {}", ring.epoch(), ring.owner("user:42")?);
//! let replicas = ring.replicas("user:42")?;
//! # let _ = replicas;
//!
//! // What this shard must receive, and reporting a move done.
//! let mine = client.member_ranges("db-3").await?;
//! for m in &mine.receiving {
//!     // ... stream the range from m.from, then:
//!     client.move_done(&m.id).await?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod api;
mod client;
mod error;
mod local;
pub mod render;
mod runner;
pub mod sse;

pub use client::{Client, DEFAULT_TIMEOUT, TokenForm};
pub use error::{Error, Result};
pub use local::{LocalRing, RingHandle, SyncOptions, SyncState, SyncedRing};
pub use runner::{Progress, Runner, RunnerOptions, StopReason};
