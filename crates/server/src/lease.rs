//! Leader election on a `coordination.k8s.io/v1` Lease, with only the verbs
//! the Role grants: `get`, `create` and `update`.
//!
//! (kube-lease-manager renews with PATCH, which the Role does not grant; this
//! module is small enough to own.)
//!
//! The protocol is client-go's:
//!
//! - a candidate reads the Lease; if there is none it creates it naming
//!   itself; if it is free (no holder), held by itself, or has not changed for
//!   its `leaseDurationSeconds` *as measured on the candidate's own clock*
//!   since the candidate first saw it, the candidate takes it over with an
//!   update carrying the `resourceVersion` it read (so of two candidates only
//!   one wins; the other gets 409 and reads again);
//! - the holder renews (`renewTime`) every third of the duration, with the
//!   same optimistic concurrency; a 409 re-reads: still ours → renew again,
//!   someone else's → lost;
//! - a holder that could not renew for two thirds of the duration stops
//!   leading at once, before anyone else can take over (which takes a whole
//!   duration of silence). [`Leadership::Leading`] carries that deadline, so
//!   whoever writes can check it even if the elector task were late;
//! - on shutdown the holder releases the Lease (no holder, duration 1 s), so a
//!   follower takes over at its next read instead of after a full duration.
//!
//! Wall-clock times are written for people and other tools (`acquireTime`,
//! `renewTime`), but expiry is judged on local monotonic time from the
//! moment a change was *observed*, so clock skew between pods does not matter.
//!
//! [`Candidate`] is the pure state machine (time passed in); [`Elector`] runs
//! it against the API server and publishes [`Leadership`] on a `watch`
//! channel.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// What to elect on and who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This instance's identity (the pod name), written as `holderIdentity`.
    pub identity: String,
    /// How long a silent holder keeps the Lease (`leaseDurationSeconds`).
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the holder renews: a third of the duration.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// How long the holder may go without a successful renewal before it
    /// stops leading: two thirds of the duration (the others wait a whole
    /// duration of silence before taking over).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often a follower reads the Lease, and a failed call is retried.
    pub fn retry_every(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(50))
    }

    fn duration_seconds(&self) -> i32 {
        let secs = self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// Who leads, as this instance knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This instance does not lead.
    Following {
        /// Who holds the Lease, if anyone holds an unexpired one.
        leader: Option<String>,
    },
    /// This instance leads, until `until` unless it renews first.
    Leading {
        /// When it stops leading if no renewal succeeds meanwhile.
        until: Instant,
    },
}

impl Leadership {
    /// Whether this instance leads at `now` (false once the deadline passed,
    /// even if the elector has not said so yet).
    pub fn is_leading_at(&self, now: Instant) -> bool {
        matches!(self, Leadership::Leading { until } if now < *until)
    }

    /// Whether this instance leads now.
    pub fn is_leading(&self) -> bool {
        self.is_leading_at(Instant::now())
    }

    /// The leader's identity; `me` when this instance leads.
    pub fn leader(&self, me: &str) -> Option<String> {
        match self {
            Leadership::Leading { .. } => Some(me.to_owned()),
            Leadership::Following { leader } => leader.clone(),
        }
    }
}

/// The Lease as read, with the fields the election looks at.
#[derive(Clone, Debug)]
pub struct LeaseRecord {
    /// `holderIdentity` (an empty string counts as none).
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Option<Duration>,
    /// `leaseTransitions`.
    pub transitions: i32,
    /// The object as read (its `resourceVersion` is the precondition of the
    /// next update; fields we do not know are kept).
    pub object: Lease,
}

impl LeaseRecord {
    /// Parses a Lease.
    pub fn from_lease(object: Lease) -> Self {
        let spec = object.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            transitions: spec.lease_transitions.unwrap_or(0),
            object,
        }
    }

    /// What changes when a holder renews or another takes over.
    fn fingerprint(
        &self,
    ) -> (
        Option<&str>,
        Option<Duration>,
        i32,
        Option<&MicroTime>,
        Option<&MicroTime>,
    ) {
        let spec = self.object.spec.as_ref();
        (
            self.holder.as_deref(),
            self.duration,
            self.transitions,
            spec.and_then(|s| s.acquire_time.as_ref()),
            spec.and_then(|s| s.renew_time.as_ref()),
        )
    }
}

/// The candidate's state.
#[derive(Clone, Debug)]
pub enum CandidateState {
    /// Nothing read yet. Left at the first read.
    Unknown,
    /// The Lease does not exist: create it. Left when created (or when a
    /// read finds it).
    Absent,
    /// Someone else holds the Lease, or nobody does. `since` is when this
    /// instance first saw the record as it is (local clock); it expires at
    /// `since + duration`. Left when the record changes, or by taking it over.
    Observing {
        /// The Lease as last read.
        record: LeaseRecord,
        /// When that record was first seen.
        since: Instant,
    },
    /// This instance holds the Lease. `renewed` is when the last successful
    /// write was *sent*. Left when a renewal finds another holder, or when
    /// `renewed + renew_deadline` passes without a renewal.
    Leading {
        /// The Lease as last written.
        record: LeaseRecord,
        /// When the last successful write was sent.
        renewed: Instant,
    },
}

/// What the candidate should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the Lease.
    Read,
    /// Create the Lease naming this instance.
    Create,
    /// Take the Lease over (or back, if it names this instance).
    Acquire,
    /// Renew the Lease this instance holds.
    Renew,
    /// Nothing to do until then (then read, or renew).
    WaitUntil(Instant),
}

/// The election's pure state machine: time is passed in.
#[derive(Clone, Debug)]
pub struct Candidate {
    config: LeaseConfig,
    state: CandidateState,
    /// This instance's API URL, written on the Lease while it leads (see
    /// [`LEADER_URL_ANNOTATION`]).
    advertise: Option<String>,
}

impl Candidate {
    /// A candidate that has read nothing yet.
    pub fn new(config: LeaseConfig) -> Self {
        Self {
            config,
            state: CandidateState::Unknown,
            advertise: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Its state.
    pub fn state(&self) -> &CandidateState {
        &self.state
    }

    fn expiry_of(&self, record: &LeaseRecord, since: Instant) -> Instant {
        since + record.duration.unwrap_or(self.config.duration)
    }

    /// The Lease as just read (`None`: it does not exist). While leading,
    /// a record naming this instance keeps it leading; any other ends it.
    pub fn observe(&mut self, lease: Option<Lease>, now: Instant) {
        let Some(lease) = lease else {
            self.state = CandidateState::Absent;
            return;
        };
        let record = LeaseRecord::from_lease(lease);
        self.state = match std::mem::replace(&mut self.state, CandidateState::Unknown) {
            CandidateState::Leading { renewed, .. }
                if record.holder.as_deref() == Some(self.config.identity.as_str()) =>
            {
                CandidateState::Leading { record, renewed }
            }
            CandidateState::Observing { record: old, since }
                if old.fingerprint() == record.fingerprint() =>
            {
                CandidateState::Observing { record, since }
            }
            _ => CandidateState::Observing { record, since: now },
        };
    }

    /// A create or take-over sent at `sent` succeeded with `lease`.
    pub fn acquired(&mut self, lease: Lease, sent: Instant) {
        self.state = CandidateState::Leading {
            record: LeaseRecord::from_lease(lease),
            renewed: sent,
        };
    }

    /// A write was refused (409): read again before anything else.
    pub fn conflicted(&mut self) {
        if !matches!(self.state, CandidateState::Leading { .. }) {
            self.state = CandidateState::Unknown;
        }
    }

    /// What to do at `now`.
    pub fn next(&self, now: Instant) -> Step {
        let me = self.config.identity.as_str();
        match &self.state {
            CandidateState::Unknown => Step::Read,
            CandidateState::Absent => Step::Create,
            CandidateState::Observing { record, since } => {
                let free = record.holder.is_none();
                let mine = record.holder.as_deref() == Some(me);
                let expiry = self.expiry_of(record, *since);
                if free || mine || now >= expiry {
                    Step::Acquire
                } else {
                    let next_read = now + self.config.retry_every();
                    Step::WaitUntil(next_read.min(expiry))
                }
            }
            CandidateState::Leading { renewed, .. } => {
                let due = *renewed + self.config.renew_every();
                if now >= due {
                    Step::Renew
                } else {
                    Step::WaitUntil(due)
                }
            }
        }
    }

    /// Whether the deadline to renew passed: then stop leading at once.
    pub fn step_down_if_late(&mut self, now: Instant) -> bool {
        if let CandidateState::Leading { record, renewed } = &self.state
            && now >= *renewed + self.config.renew_deadline()
        {
            // Treat our own last record as observed then: it is ours, so the
            // next read may take it back if nobody else did meanwhile.
            self.state = CandidateState::Observing {
                record: record.clone(),
                since: *renewed,
            };
            return true;
        }
        false
    }

    /// Who leads, as published.
    pub fn leadership(&self, now: Instant) -> Leadership {
        match &self.state {
            CandidateState::Leading { renewed, .. } => Leadership::Leading {
                until: *renewed + self.config.renew_deadline(),
            },
            CandidateState::Observing { record, since } => Leadership::Following {
                leader: record
                    .holder
                    .clone()
                    .filter(|h| h != &self.config.identity)
                    .filter(|_| now < self.expiry_of(record, *since)),
            },
            CandidateState::Unknown | CandidateState::Absent => {
                Leadership::Following { leader: None }
            }
        }
    }

    /// The Lease to create.
    pub fn lease_to_create(&self, now: MicroTime) -> Lease {
        self.with_url(Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(
                    [("app.kubernetes.io/name".to_owned(), "ringleader".to_owned())].into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        })
    }

    /// The update that takes the observed Lease over (or back).
    pub fn lease_to_acquire(&self, now: MicroTime) -> Option<Lease> {
        let CandidateState::Observing { record, .. } = &self.state else {
            return None;
        };
        let mine = record.holder.as_deref() == Some(self.config.identity.as_str());
        let mut lease = record.object.clone();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.duration_seconds());
        spec.renew_time = Some(now.clone());
        if !mine {
            spec.acquire_time = Some(now);
            spec.lease_transitions = Some(record.transitions.saturating_add(1));
        }
        Some(self.with_url(lease))
    }

    /// The update that renews the Lease this instance holds.
    pub fn lease_to_renew(&self, now: MicroTime) -> Option<Lease> {
        let CandidateState::Leading { record, .. } = &self.state else {
            return None;
        };
        let mut lease = record.object.clone();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.config.duration_seconds());
        Some(self.with_url(lease))
    }

    /// The update that releases the Lease on shutdown: no holder, a
    /// duration of 1 s.
    pub fn lease_to_release(&self, now: MicroTime) -> Option<Lease> {
        let CandidateState::Leading { record, .. } = &self.state else {
            return None;
        };
        let mut lease = record.object.clone();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now);
        Some(lease)
    }
}

// ---------------------------------------------------------------------------
// The leader's address, for followers that forward writes (issue 12). Kept
// apart from the election itself: an annotation on the Lease, written by the
// holder with every create, take-over and renewal, read by everyone with
// the Lease they read anyway. The election never looks at it.

/// The annotation holding the leader's API URL (`http://10.0.0.5:8080`).
pub const LEADER_URL_ANNOTATION: &str = "ringleader.io/leader-url";

impl Candidate {
    /// Writes `url` on the Lease while this instance leads.
    pub fn set_advertise(&mut self, url: Option<String>) {
        self.advertise = url;
    }

    /// The API URL the current holder advertises, if it leads and says.
    pub fn leader_url(&self) -> Option<String> {
        let record = match &self.state {
            CandidateState::Observing { record, .. } | CandidateState::Leading { record, .. } => {
                record
            }
            _ => return None,
        };
        record.holder.as_ref()?;
        record
            .object
            .metadata
            .annotations
            .as_ref()?
            .get(LEADER_URL_ANNOTATION)
            .filter(|u| !u.is_empty())
            .cloned()
    }

    fn with_url(&self, mut lease: Lease) -> Lease {
        let annotations = lease.metadata.annotations.get_or_insert_default();
        match &self.advertise {
            Some(url) => {
                annotations.insert(LEADER_URL_ANNOTATION.to_owned(), url.clone());
            }
            None => {
                annotations.remove(LEADER_URL_ANNOTATION);
            }
        }
        if annotations.is_empty() {
            lease.metadata.annotations = None;
        }
        lease
    }
}

impl Elector {
    /// Advertises `url` (this instance's API) on the Lease while leading.
    #[must_use]
    pub fn advertise(mut self, url: Option<String>) -> Self {
        self.candidate.set_advertise(url);
        self
    }

    /// The current leader's advertised API URL, as last read.
    pub fn leader_urls(&self) -> watch::Receiver<Option<String>> {
        self.url_tx.subscribe()
    }

    fn publish_url(&self) {
        let url = self.candidate.leader_url();
        self.url_tx.send_if_modified(|current| {
            if *current == url {
                return false;
            }
            *current = url;
            true
        });
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => {
            " (the Role needs get, create and update on leases.coordination.k8s.io; see deploy/kubernetes/rbac.yaml)"
        }
        _ => "",
    }
}

/// Runs a [`Candidate`] against the API server.
pub struct Elector {
    api: Api<Lease>,
    candidate: Candidate,
    tx: watch::Sender<Leadership>,
    url_tx: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("candidate", &self.candidate)
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// An elector and the channel it publishes leadership on.
    pub fn new(client: kube::Client, config: LeaseConfig) -> (Self, watch::Receiver<Leadership>) {
        let (tx, rx) = watch::channel(Leadership::Following { leader: None });
        let elector = Self {
            api: Api::namespaced(client, &config.namespace),
            candidate: Candidate::new(config),
            tx,
            url_tx: watch::channel(None).0,
        };
        (elector, rx)
    }

    fn publish(&self) {
        self.publish_url();
        let leadership = self.candidate.leadership(Instant::now());
        self.tx.send_if_modified(|current| {
            if *current == leadership {
                return false;
            }
            match (&*current, &leadership) {
                (Leadership::Leading { .. }, Leadership::Leading { .. }) => {}
                (_, Leadership::Leading { .. }) => info!(
                    lease = %self.candidate.config.name,
                    identity = %self.candidate.config.identity,
                    "acquired the lease: leading"
                ),
                (Leadership::Leading { .. }, Leadership::Following { leader }) => warn!(
                    lease = %self.candidate.config.name,
                    leader = leader.as_deref().unwrap_or("none"),
                    "no longer leading"
                ),
                (_, Leadership::Following { leader }) => info!(
                    lease = %self.candidate.config.name,
                    leader = leader.as_deref().unwrap_or("none"),
                    "following"
                ),
            }
            *current = leadership;
            true
        });
    }

    /// A call to the API server, bounded by a third of the duration (at
    /// least a second) and, while leading, by the renewal deadline (so a hung
    /// request cannot keep a stale leader leading).
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, String> {
        let config = &self.candidate.config;
        let limit = config.renew_every().max(Duration::from_secs(1));
        let deadline = match self.candidate.leadership(Instant::now()) {
            Leadership::Leading { until } => until.min(Instant::now() + limit),
            Leadership::Following { .. } => Instant::now() + limit,
        };
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{e}{}", hint(&e))),
            Err(_) => Err("the API server did not answer in time".to_owned()),
        }
    }

    async fn read(&mut self) -> Result<(), String> {
        let lease = self
            .bounded(self.api.get_opt(&self.candidate.config.name))
            .await?;
        self.candidate.observe(lease, Instant::now());
        Ok(())
    }

    /// One step of the election; returns when to come back.
    async fn step(&mut self) -> Instant {
        let now = Instant::now();
        let retry = now + self.candidate.config.retry_every();
        let params = PostParams {
            field_manager: Some("ringleader".to_owned()),
            ..PostParams::default()
        };
        let name = self.candidate.config.name.clone();
        let result = match self.candidate.next(now) {
            Step::WaitUntil(at) => return at,
            Step::Read => self.read().await.map(|()| now),
            Step::Create => {
                let lease = self.candidate.lease_to_create(micro_now());
                match self.bounded(self.api.create(&params, &lease)).await {
                    Ok(created) => {
                        self.candidate.acquired(created, now);
                        Ok(now)
                    }
                    Err(e) => {
                        // Someone else created it first (409), or a failure:
                        // read again either way.
                        debug!(error = %e, "creating the lease failed; reading it");
                        self.candidate.conflicted();
                        Err(e)
                    }
                }
            }
            Step::Acquire => {
                let Some(lease) = self.candidate.lease_to_acquire(micro_now()) else {
                    return now;
                };
                let limit = self
                    .candidate
                    .config
                    .renew_every()
                    .max(Duration::from_secs(1));
                match tokio::time::timeout(limit, self.api.replace(&name, &params, &lease)).await {
                    Ok(Ok(updated)) => {
                        self.candidate.acquired(updated, now);
                        Ok(now)
                    }
                    Ok(Err(kube::Error::Api(s))) if s.is_conflict() || s.is_not_found() => {
                        debug!("another candidate changed the lease first; reading it again");
                        self.candidate.conflicted();
                        Ok(now)
                    }
                    Ok(Err(e)) => {
                        self.candidate.conflicted();
                        Err(format!("{e}{}", hint(&e)))
                    }
                    Err(_) => {
                        self.candidate.conflicted();
                        Err("the API server did not answer in time".to_owned())
                    }
                }
            }
            Step::Renew => {
                let Some(lease) = self.candidate.lease_to_renew(micro_now()) else {
                    return now;
                };
                match self.bounded(self.api.replace(&name, &params, &lease)).await {
                    Ok(updated) => {
                        self.candidate.acquired(updated, now);
                        Ok(now)
                    }
                    Err(e) => {
                        // 409: someone wrote it; read to see whether it is
                        // still ours (observe keeps us leading if so).
                        warn!(error = %e, "renewing the lease failed; reading it");
                        match self.read().await {
                            Ok(()) => Ok(now),
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        };
        match result {
            Ok(at) => at,
            Err(error) => {
                warn!(lease = %name, %error, "leader election: call to the API server failed; retrying");
                retry
            }
        }
    }

    /// Runs until `shutdown` turns true, then releases the Lease if held.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let mut at = self.step().await;
            if self.candidate.step_down_if_late(Instant::now()) {
                warn!(
                    lease = %self.candidate.config.name,
                    "could not renew the lease in time: stopping to lead now"
                );
            }
            self.publish();
            // Wake up for the step-down deadline too.
            if let Leadership::Leading { until } = self.candidate.leadership(Instant::now()) {
                at = at.min(until);
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(at) => {}
            }
        }
        self.release().await;
    }

    async fn release(&mut self) {
        let Some(lease) = self.candidate.lease_to_release(micro_now()) else {
            return;
        };
        let _ = self.tx.send(Leadership::Following { leader: None });
        let name = self.candidate.config.name.clone();
        match self
            .bounded(self.api.replace(&name, &PostParams::default(), &lease))
            .await
        {
            Ok(_) => info!(lease = %name, "released the lease"),
            Err(error) => {
                warn!(lease = %name, %error, "could not release the lease; the others take over when it expires")
            }
        }
        self.candidate.state = CandidateState::Unknown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "default".into(),
            name: "ringleader-leader".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        }
    }

    fn lease(holder: Option<&str>, renew_second: i64, transitions: i32, rv: &str) -> Lease {
        let at = |s: i64| {
            MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
        };
        Lease {
            metadata: ObjectMeta {
                name: Some("ringleader-leader".into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                acquire_time: Some(at(0)),
                renew_time: Some(at(renew_second)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_missing_lease_is_created_with_this_instance_as_holder() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("a"));
        assert_eq!(c.next(t0), Step::Read);
        c.observe(None, t0);
        assert_eq!(c.next(t0), Step::Create);
        let lease = c.lease_to_create(micro_now());
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
        c.acquired(lease, t0);
        assert!(c.leadership(t0).is_leading_at(t0));
    }

    #[test]
    fn a_held_lease_is_taken_over_only_after_a_whole_duration_of_silence() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("b"));
        c.observe(Some(lease(Some("a"), 0, 0, "5")), t0);
        assert_eq!(
            c.next(t0),
            Step::WaitUntil(t0 + 3 * SECOND),
            "reads again every duration/5"
        );
        assert_eq!(
            c.leadership(t0),
            Leadership::Following {
                leader: Some("a".into())
            }
        );
        // Read again 10 s later, unchanged: still a's until t0 + 15 s.
        c.observe(Some(lease(Some("a"), 0, 0, "5")), t0 + 10 * SECOND);
        assert_eq!(c.next(t0 + 14 * SECOND), Step::WaitUntil(t0 + 15 * SECOND));
        assert_eq!(c.next(t0 + 15 * SECOND), Step::Acquire);
        let taken = c.lease_to_acquire(micro_now()).unwrap();
        let spec = taken.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(
            spec.lease_transitions,
            Some(1),
            "a new holder is a transition"
        );
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("5"),
            "the update is conditional on what was read"
        );
        assert_eq!(
            c.leadership(t0 + 15 * SECOND),
            Leadership::Following { leader: None },
            "expired"
        );
    }

    #[test]
    fn a_renewal_restarts_the_count() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("b"));
        c.observe(Some(lease(Some("a"), 0, 0, "5")), t0);
        // a renewed at second 5; seen at t0 + 12 s: the count starts again.
        c.observe(Some(lease(Some("a"), 5, 0, "6")), t0 + 12 * SECOND);
        assert!(matches!(c.next(t0 + 20 * SECOND), Step::WaitUntil(_)));
        assert_eq!(c.next(t0 + 27 * SECOND), Step::Acquire);
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_our_own_is_taken_back() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("b"));
        c.observe(Some(lease(None, 0, 3, "7")), t0);
        assert_eq!(c.next(t0), Step::Acquire);
        assert_eq!(
            c.lease_to_acquire(micro_now())
                .unwrap()
                .spec
                .unwrap()
                .lease_transitions,
            Some(4)
        );
        // After a restart under the same name (a pod's container restarted):
        let mut c = Candidate::new(config("a"));
        c.observe(Some(lease(Some("a"), 0, 3, "7")), t0);
        assert_eq!(c.next(t0), Step::Acquire);
        assert_eq!(
            c.lease_to_acquire(micro_now())
                .unwrap()
                .spec
                .unwrap()
                .lease_transitions,
            Some(3),
            "taking back our own lease is no transition"
        );
    }

    #[test]
    fn the_holder_renews_every_third_and_steps_down_when_it_cannot() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("a"));
        c.observe(None, t0);
        c.acquired(lease(Some("a"), 0, 0, "1"), t0);
        assert_eq!(c.next(t0), Step::WaitUntil(t0 + 5 * SECOND));
        assert_eq!(c.next(t0 + 5 * SECOND), Step::Renew);
        assert_eq!(
            c.leadership(t0),
            Leadership::Leading {
                until: t0 + 10 * SECOND
            }
        );
        // Renewals fail for 10 s (two thirds of the duration): not leading,
        // even before the elector steps down.
        assert!(!c.leadership(t0).is_leading_at(t0 + 10 * SECOND));
        assert!(!c.step_down_if_late(t0 + 9 * SECOND));
        assert!(c.step_down_if_late(t0 + 10 * SECOND));
        assert!(
            !c.leadership(t0 + 10 * SECOND)
                .is_leading_at(t0 + 10 * SECOND)
        );
        // It may take its own lease back if nobody else did.
        assert_eq!(c.next(t0 + 10 * SECOND), Step::Acquire);
    }

    #[test]
    fn a_renewal_that_finds_another_holder_loses_the_lead() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("a"));
        c.observe(None, t0);
        c.acquired(lease(Some("a"), 0, 0, "1"), t0);
        // A 409, re-read: still ours (someone touched a label) → renew again.
        c.conflicted();
        c.observe(Some(lease(Some("a"), 0, 0, "2")), t0 + 5 * SECOND);
        assert!(c.leadership(t0 + 5 * SECOND).is_leading_at(t0 + 5 * SECOND));
        assert_eq!(
            c.lease_to_renew(micro_now())
                .unwrap()
                .metadata
                .resource_version
                .as_deref(),
            Some("2")
        );
        // Re-read: b holds it.
        c.observe(Some(lease(Some("b"), 6, 1, "3")), t0 + 6 * SECOND);
        assert_eq!(
            c.leadership(t0 + 6 * SECOND),
            Leadership::Following {
                leader: Some("b".into())
            }
        );
    }

    #[test]
    fn a_release_clears_the_holder() {
        let t0 = Instant::now();
        let mut c = Candidate::new(config("a"));
        assert!(
            c.lease_to_release(micro_now()).is_none(),
            "nothing to release when not leading"
        );
        c.observe(None, t0);
        c.acquired(lease(Some("a"), 0, 0, "1"), t0);
        let released = c.lease_to_release(micro_now()).unwrap();
        let spec = released.spec.unwrap();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
    }
}
