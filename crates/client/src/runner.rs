//! A shard's side of a plan: follow one member's work, carry out each move,
//! report it done.
//!
//! The coordinator paces a plan (DESIGN §4): each member has a few moves
//! `ready` at a time, listed by `GET /v1/members/{id}/work` with their
//! sources' addresses. A [`Runner`] follows that list for one member:
//!
//! - it fetches the list with `If-None-Match` (a `304` costs nothing) when
//!   the watch stream says something changed, after each move it finishes,
//!   and every [`RunnerOptions::poll`] in case an event was missed;
//! - for each move newly listed it calls the shard's own function (stream
//!   that range from that source) in a task of its own, retrying failures
//!   with exponential backoff;
//! - once the function succeeds it reports the move done
//!   (`POST /v1/plan/moves/{id}/done`, retried until the coordinator
//!   answers), which frees the move's slots: the next moves become ready;
//! - a move that leaves the list while it runs — cancelled by a replan, or
//!   its plan replaced — is stopped: its task is aborted, so the function's
//!   future is dropped at its next `.await`;
//! - every step is reported to an optional callback ([`Progress`]) and
//!   logged with `tracing`.
//!
//! ```no_run
//! use ringleader_client::{Client, Runner, RunnerOptions};
//!
//! # async fn example() -> Result<(), ringleader_client::Error> {
//! let client = Client::new("http://ringleader.db.svc:8080")?.with_token("s3cret");
//! let runner = Runner::new(client, "db-3", RunnerOptions::default())
//!     .on_progress(|p| eprintln!("{p:?}"));
//! runner
//!     .run(
//!         |work| async move {
//!             // Stream work.r#move.range from work.source_addresses here.
//!             let _range = work.r#move.range;
//!             Ok::<(), std::io::Error>(())
//!         },
//!         std::future::pending::<()>(),
//!     )
//!     .await;
//! # Ok(())
//! # }
//! ```

use crate::api::WorkMove;
use crate::client::Client;
use crate::error::Error;
use crate::local::Backoff;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How a [`Runner`] paces itself.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Fetch the work at least this often, even without a watch event.
    pub poll: Duration,
    /// Follow `GET /v1/watch` to learn of new work at once (else poll only).
    pub watch: bool,
    /// First delay after a failure (of a move, an ack, a fetch); it doubles
    /// with every failure in a row, with jitter.
    pub retry_min: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(5),
            watch: true,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What a [`Runner`] did, as its progress callback hears it.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A move's function was called (`attempt` counts from 1).
    Started {
        /// The move.
        r#move: WorkMove,
        /// Which attempt.
        attempt: u32,
    },
    /// A move's function failed; it is called again after `retry_in`.
    Failed {
        /// The move.
        r#move: WorkMove,
        /// Which attempt failed.
        attempt: u32,
        /// What the function said.
        error: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// A move was carried out and the coordinator took the report.
    Done {
        /// The move.
        r#move: WorkMove,
        /// Moves still open in the plan.
        remaining: usize,
        /// Whether this report committed the plan.
        committed: bool,
    },
    /// A move was stopped before it was reported done.
    Stopped {
        /// The move's id.
        id: String,
        /// Why.
        reason: StopReason,
    },
}

/// Why a move was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It left this member's work list while it ran: cancelled by a replan,
    /// or its plan replaced or committed.
    NoLongerListed,
    /// The coordinator refused its report (the move was cancelled, or is
    /// in no plan any more); the message says why.
    ReportRefused(String),
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Follows one member's work and carries it out; see the [module
/// docs](self).
pub struct Runner {
    client: Client,
    member: String,
    options: RunnerOptions,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("member", &self.member)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner of `member`'s work, talking to the coordinator through
    /// `client` (which needs a token that may write).
    pub fn new(client: Client, member: impl Into<String>, options: RunnerOptions) -> Self {
        Self {
            client,
            member: member.into(),
            options,
            progress: None,
        }
    }

    /// Calls `progress` at every step (from the runner's tasks: keep it
    /// quick).
    #[must_use]
    pub fn on_progress(mut self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Runs until `shutdown` completes: every move listed as this member's
    /// work goes through `transfer` (retried until it succeeds or the move
    /// leaves the list), then is reported done. Moves still running at
    /// shutdown are aborted, not reported.
    pub async fn run<F, Fut, E>(self, transfer: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn(WorkMove) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let transfer = Arc::new(transfer);
        let wake = Arc::new(Notify::new());
        let watcher = self.options.watch.then(|| {
            tokio::spawn(follow_watch(
                self.client.clone(),
                wake.clone(),
                self.options.clone(),
            ))
        });
        // Ids of moves whose task ended: reported done, or the report
        // refused. Either way they are not started again in this plan.
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<String>();
        let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
        // Moves of the current plan not to start again.
        let mut finished: HashSet<String> = HashSet::new();
        let mut plan: Option<String> = None;
        let mut etag: Option<String> = None;
        let mut backoff = Backoff::between(self.options.retry_min, self.options.retry_max, None);
        let mut next_fetch = Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(id) = finished_rx.recv() => {
                    running.remove(&id);
                    finished.insert(id);
                    // Its slots are free: there may be more work already.
                    next_fetch = Instant::now();
                }
                () = wake.notified() => next_fetch = Instant::now(),
                () = tokio::time::sleep_until(next_fetch) => {
                    match self.client.member_work_since(&self.member, etag.as_deref()).await {
                        Ok(Some((work, tag))) => {
                            etag = tag;
                            backoff.reset();
                            if work.plan != plan {
                                finished.clear();
                                plan.clone_from(&work.plan);
                            }
                            let listed: HashSet<&str> =
                                work.moves.iter().map(|m| m.r#move.id.as_str()).collect();
                            running.retain(|id, task| {
                                if listed.contains(id.as_str()) {
                                    return true;
                                }
                                task.abort();
                                tracing::info!(member = %self.member, r#move = %id, "move no longer listed: stopped");
                                self.report(&Progress::Stopped {
                                    id: id.clone(),
                                    reason: StopReason::NoLongerListed,
                                });
                                false
                            });
                            for m in work.moves {
                                let id = m.r#move.id.clone();
                                if running.contains_key(&id) || finished.contains(&id) {
                                    continue;
                                }
                                let task = tokio::spawn(run_move(
                                    self.client.clone(),
                                    m,
                                    transfer.clone(),
                                    self.options.clone(),
                                    self.progress.clone(),
                                    finished_tx.clone(),
                                ));
                                running.insert(id, task);
                            }
                            next_fetch = Instant::now() + self.options.poll;
                        }
                        Ok(None) => {
                            backoff.reset();
                            next_fetch = Instant::now() + self.options.poll;
                        }
                        Err(Error::Api { status: 404, .. }) => {
                            // Not a member (yet): it will be once ready and
                            // planned in; the watch stream wakes us then.
                            tracing::debug!(member = %self.member, "not a member of the ring or the plan yet");
                            next_fetch = Instant::now() + self.options.poll;
                        }
                        Err(error) => {
                            let delay = backoff.next_delay().unwrap_or(self.options.retry_max);
                            tracing::warn!(member = %self.member, %error, ?delay, "fetching this member's work failed; retrying");
                            next_fetch = Instant::now() + delay;
                        }
                    }
                }
            }
        }
        for (_, task) in running {
            task.abort();
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
    }

    fn report(&self, progress: &Progress) {
        if let Some(f) = &self.progress {
            f(progress);
        }
    }
}

/// Wakes the runner at every event of the watch stream, reconnecting with
/// backoff.
async fn follow_watch(client: Client, wake: Arc<Notify>, options: RunnerOptions) {
    let mut backoff = Backoff::between(options.retry_min, options.retry_max, None);
    loop {
        let mut events = std::pin::pin!(client.watch(None));
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    backoff.reset();
                    wake.notify_one();
                }
                Err(error) => {
                    tracing::debug!(%error, "the watch stream failed; reconnecting");
                    break;
                }
            }
        }
        let delay = backoff.next_delay().unwrap_or(options.retry_max);
        tokio::time::sleep(delay).await;
    }
}

/// One move: the transfer until it succeeds, then the report until the
/// coordinator answers it.
async fn run_move<F, Fut, E>(
    client: Client,
    work: WorkMove,
    transfer: Arc<F>,
    options: RunnerOptions,
    progress: Option<ProgressFn>,
    finished: mpsc::UnboundedSender<String>,
) where
    F: Fn(WorkMove) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let report = |p: Progress| {
        if let Some(f) = &progress {
            f(&p);
        }
    };
    let id = work.r#move.id.clone();
    let mut backoff = Backoff::between(options.retry_min, options.retry_max, None);
    loop {
        let attempt = backoff.failures() + 1;
        tracing::info!(r#move = %id, from = %work.r#move.from, to = %work.r#move.to, attempt, "move started");
        report(Progress::Started {
            r#move: work.clone(),
            attempt,
        });
        match transfer(work.clone()).await {
            Ok(()) => break,
            Err(error) => {
                let retry_in = backoff.next_delay().unwrap_or(options.retry_max);
                tracing::warn!(r#move = %id, attempt, %error, ?retry_in, "move failed; retrying");
                report(Progress::Failed {
                    r#move: work.clone(),
                    attempt,
                    error: error.to_string(),
                    retry_in,
                });
                tokio::time::sleep(retry_in).await;
            }
        }
    }
    backoff.reset();
    loop {
        match client.move_done(&id).await {
            Ok(answer) => {
                tracing::info!(r#move = %id, remaining = answer.remaining, committed = answer.committed, "move done");
                report(Progress::Done {
                    r#move: work.clone(),
                    remaining: answer.remaining,
                    committed: answer.committed,
                });
                break;
            }
            // The move is in no plan, or was cancelled: nothing to report.
            Err(Error::Api {
                status: 404 | 409,
                message,
                ..
            }) => {
                tracing::info!(r#move = %id, reason = %message, "the coordinator refused the report; move stopped");
                report(Progress::Stopped {
                    id: id.clone(),
                    reason: StopReason::ReportRefused(message),
                });
                break;
            }
            Err(error) => {
                let delay = backoff.next_delay().unwrap_or(options.retry_max);
                tracing::warn!(r#move = %id, %error, ?delay, "reporting the move done failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
    let _ = finished.send(id);
}
