//! The coordinator's core: from member sets to committed placements.
//!
//! Pure and synchronous: time is passed in (`now`), nothing is read from a
//! clock, nothing is written anywhere. The runtime feeds it member sets from
//! the source, ticks at [`Coordinator::next_deadline`], and move reports from
//! the API; after each call it persists [`Coordinator::state`] if
//! [`Coordinator::persisted_version`] moved, and publishes a new view if
//! [`Coordinator::version`] moved.
//!
//! Restarts and rolling updates are normal on Kubernetes and must not
//! shuffle data, so membership goes through three filters before it reaches
//! the planner:
//!
//! - **down-grace**: a ring member that turns not-ready, terminating, or
//!   vanishes stays in the ring as `down` until the grace ends; back in time,
//!   nothing is planned;
//! - **readiness**: a new member joins only once it is ready;
//! - **settle**: a change is planned once the wanted member set has been
//!   quiet for `settle` (or `settle_max` after the first change), so a
//!   scale-up from 3 to 10 pods is one plan, not seven.
//!
//! Plans then go `in_progress` (mode `ack`: shards report each move done,
//! the target commits with the last one) or commit at once (mode `auto`). A
//! change mid-plan replans from what is true now, keeping move ids.

use crate::settings::{Mode, RingSettings, Timing};
use crate::state::{PlanRecord, PlanState, PlanTimes, State};
use ringleader_client::api::{MemberState, OutsideReason};
use ringleader_planner::{Move, MoveState, Placement, PlanError, PlanOptions, plan, replan};
use ringleader_ring::{MemberId, MemberSpec, Ring, RingError};
use ringleader_watch::{Member, MemberSet};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Errors of the coordinator's operations.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No plan is in flight.
    #[error("no plan is in progress; there is nothing to report done")]
    NoPlan,
    /// A planner error (unknown or cancelled move, empty target…).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A ring error (bad member set in a preview…).
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// A member set waiting for the settle window.
#[derive(Clone, Debug)]
struct Pending {
    first: Instant,
    last: Instant,
    desired: Vec<MemberSpec>,
}

/// One member as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberStatus {
    /// Id.
    pub id: MemberId,
    /// State.
    pub state: MemberState,
    /// Zone.
    pub zone: Option<String>,
    /// Addresses, from the source.
    pub addresses: Vec<String>,
    /// Weight.
    pub weight: u32,
}

/// What a move report did.
#[derive(Clone, Debug)]
pub struct MoveReport {
    /// The move, now done.
    pub done: Move,
    /// Moves still open.
    pub remaining: usize,
    /// Whether it committed the plan.
    pub committed: bool,
}

/// The coordinator's state machine.
#[derive(Debug)]
pub struct Coordinator {
    state: State,
    /// The settings asked for on the command line; they differ from
    /// `state.settings` only while a `--reconfigure` is pending or running.
    settings: RingSettings,
    timing: Timing,
    /// The last member set from the source; `None` until it first synced.
    observed: Option<MemberSet>,
    down_since: BTreeMap<MemberId, Instant>,
    pending: Option<Pending>,
    /// Members that cannot stream, as the current plan was made with.
    unavailable: BTreeSet<MemberId>,
    version: u64,
    persisted_version: u64,
    last_plan_seconds: f64,
    plans_made: u64,
}

fn eligible(member: &Member) -> bool {
    member.ready && !member.terminating
}

/// The ring for `desired` members, starting from `base`: the same ring
/// edited, or — after a change of strategy or token count — a fresh ring,
/// planned like any other change. Shared by planning and previews.
pub fn next_ring(
    base: &Ring,
    settings: &RingSettings,
    desired: &[MemberSpec],
) -> Result<Ring, RingError> {
    let config = settings.ring_config();
    if base.config() == config {
        base.rebalance_to_for(desired, &settings.replication())
    } else {
        Ring::with_members(config, desired.iter().cloned())
    }
}

fn plan_id(epoch: u64, ring: &Ring) -> String {
    let mut bytes = Vec::with_capacity(ring.tokens().len() * 12);
    for (token, owner) in ring.token_owners() {
        bytes.extend_from_slice(&token.to_le_bytes());
        bytes.extend_from_slice(owner.as_str().as_bytes());
        bytes.push(0xff);
    }
    format!("e{epoch}-{:012x}", xxhash_rust::xxh3::xxh3_64(&bytes) >> 16)
}

impl Coordinator {
    /// A coordinator over a loaded (or fresh) state. `settings` are the ones
    /// asked for; when they differ from the state's, the caller has checked
    /// that `--reconfigure` was given, and the change is planned at the next
    /// opportunity.
    pub fn new(state: State, settings: RingSettings, timing: Timing) -> Self {
        Self {
            state,
            settings,
            timing,
            observed: None,
            down_since: BTreeMap::new(),
            pending: None,
            unavailable: BTreeSet::new(),
            version: 1,
            persisted_version: 0,
            last_plan_seconds: 0.0,
            plans_made: 0,
        }
    }

    /// The durable state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The settings in force for new plans.
    pub fn settings(&self) -> RingSettings {
        self.settings
    }

    /// Bumped on every change visible through the API.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Bumped on every change that must be persisted.
    pub fn persisted_version(&self) -> u64 {
        self.persisted_version
    }

    /// Whether the source has delivered a member set yet.
    pub fn has_members(&self) -> bool {
        self.observed.is_some()
    }

    fn touch(&mut self, persist: bool) {
        self.version += 1;
        if persist {
            self.persisted_version += 1;
        }
    }

    /// The committed placement.
    pub fn committed(&self) -> Placement {
        Placement::new(
            self.state.committed.clone(),
            self.state.settings.replication(),
        )
        .expect("validated settings have rf >= 1")
    }

    /// The ring the next plan starts from: the in-flight target, else the
    /// committed ring.
    fn target_ring(&self) -> &Ring {
        match &self.state.plan {
            Some(p) if p.state == PlanState::InProgress => &p.target,
            _ => &self.state.committed,
        }
    }

    fn plan_in_progress(&self) -> Option<&PlanRecord> {
        self.state
            .plan
            .as_ref()
            .filter(|p| p.state == PlanState::InProgress)
    }

    /// A new member set from the source.
    pub fn observe(&mut self, members: MemberSet, now: Instant) {
        if self.observed.as_ref() == Some(&members) {
            return;
        }
        self.observed = Some(members);
        self.touch(false);
        self.reconsider(now);
    }

    /// Time passed: grace periods and settle windows may have ended.
    pub fn tick(&mut self, now: Instant) {
        self.reconsider(now);
    }

    /// When the coordinator next needs a [`Coordinator::tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        let grace = self
            .down_since
            .values()
            .map(|&since| since + self.timing.down_grace);
        let settle = self
            .pending
            .iter()
            .map(|p| (p.last + self.timing.settle).min(p.first + self.timing.settle_max));
        grace.chain(settle).min()
    }

    /// The members the ring should have now.
    fn desired(&self, now: Instant) -> Vec<MemberSpec> {
        let Some(observed) = &self.observed else {
            return self.target_ring().members().to_vec();
        };
        let target = self.target_ring();
        let mut desired: BTreeMap<MemberId, MemberSpec> = BTreeMap::new();
        for spec in target.members() {
            match observed.get(spec.id.as_str()) {
                Some(m) if eligible(m) => {
                    let mut spec = spec.clone();
                    if m.zone.is_some() {
                        spec.zone = m.zone.clone();
                    }
                    desired.insert(spec.id.clone(), spec);
                }
                _ => {
                    let within_grace = self
                        .down_since
                        .get(&spec.id)
                        .is_some_and(|&since| now < since + self.timing.down_grace);
                    if within_grace {
                        desired.insert(spec.id.clone(), spec.clone());
                    }
                }
            }
        }
        for m in observed.iter().filter(|m| eligible(m)) {
            let id = MemberId::new(m.id.as_str());
            desired.entry(id.clone()).or_insert_with(|| MemberSpec {
                id,
                zone: m.zone.clone(),
                weight: 1,
            });
        }
        desired.into_values().collect()
    }

    /// Members of either ring that cannot stream now.
    fn currently_unavailable(&self) -> BTreeSet<MemberId> {
        let Some(observed) = &self.observed else {
            return BTreeSet::new();
        };
        self.state
            .committed
            .members()
            .iter()
            .chain(self.target_ring().members())
            .filter(|spec| !observed.get(spec.id.as_str()).is_some_and(eligible))
            .map(|spec| spec.id.clone())
            .collect()
    }

    fn reconsider(&mut self, now: Instant) {
        let Some(observed) = &self.observed else {
            return;
        };
        // Down tracking for members of the rings.
        let mut down = BTreeMap::new();
        for spec in self
            .state
            .committed
            .members()
            .iter()
            .chain(self.target_ring().members())
        {
            if !observed.get(spec.id.as_str()).is_some_and(eligible) {
                let since = self.down_since.get(&spec.id).copied().unwrap_or(now);
                down.insert(spec.id.clone(), since);
            }
        }
        if down != self.down_since {
            for id in down.keys().filter(|id| !self.down_since.contains_key(*id)) {
                info!(member = %id, grace = ?self.timing.down_grace, "member down; it keeps its ranges until the grace ends");
            }
            for id in self.down_since.keys().filter(|id| !down.contains_key(*id)) {
                info!(member = %id, "member back up");
            }
            self.down_since = down;
            self.touch(false);
        }

        // A source that went down (or came back) mid-plan changes who can
        // stream: plan again to the same target.
        let unavailable = self.currently_unavailable();
        if unavailable != self.unavailable {
            self.unavailable = unavailable;
            if self.plan_in_progress().is_some() {
                self.replan_same_target();
            }
        }

        let desired = self.desired(now);
        let reconfiguring = self.settings != self.state.settings
            && self
                .state
                .plan
                .as_ref()
                .is_none_or(|p| p.settings != self.settings);
        if desired.as_slice() == self.target_ring().members() && !reconfiguring {
            if self.pending.take().is_some() {
                self.touch(false);
            }
            return;
        }
        match &mut self.pending {
            Some(p) if p.desired == desired => {}
            Some(p) => {
                p.desired = desired;
                p.last = now;
                self.version += 1;
            }
            None => {
                self.pending = Some(Pending {
                    first: now,
                    last: now,
                    desired,
                });
                self.version += 1;
            }
        }
        let p = self.pending.as_ref().expect("set above");
        let quiet = now >= p.last + self.timing.settle;
        let waited_long = now >= p.first + self.timing.settle_max;
        if quiet || waited_long {
            let desired = p.desired.clone();
            if desired.is_empty() {
                warn!("every member is gone; keeping the last ring until members return");
                return;
            }
            match self.make_plan(&desired, now) {
                Ok(()) => self.pending = None,
                Err(e) => warn!(error = %e, "could not plan the membership change; will retry"),
            }
        }
    }

    fn replan_same_target(&mut self) {
        let from = self.committed();
        let options = PlanOptions {
            unavailable: self.unavailable.clone(),
        };
        let Some(record) = self
            .state
            .plan
            .as_ref()
            .filter(|p| p.state == PlanState::InProgress)
        else {
            return;
        };
        let to = Placement::new(record.target.clone(), record.settings.replication())
            .expect("validated settings");
        match replan(&from, &record.plan, &to, &options) {
            Ok(new) if new != record.plan => {
                let lost = new
                    .moves
                    .iter()
                    .filter(|m| m.state == MoveState::SourceLost)
                    .count();
                info!(plan = %record.id, source_lost = lost, "sources changed; plan revised");
                self.state.plan.as_mut().expect("checked").plan = new;
                self.state.revision += 1;
                self.touch(true);
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not revise the plan"),
        }
    }

    fn make_plan(&mut self, desired: &[MemberSpec], now: Instant) -> Result<(), CoordinatorError> {
        let _ = now;
        let target = next_ring(self.target_ring(), &self.settings, desired)?;
        let from = self.committed();
        let to = Placement::new(target.clone(), self.settings.replication())?;
        let options = PlanOptions {
            unavailable: self.unavailable.clone(),
        };
        let started = std::time::Instant::now();
        let new_plan = match self.plan_in_progress() {
            Some(current) => replan(&from, &current.plan, &to, &options)?,
            None => plan(&from, &to, &options)?,
        };
        let elapsed = started.elapsed();
        let record = PlanRecord {
            id: plan_id(self.state.epoch, &target),
            from_epoch: self.state.epoch,
            to_epoch: self.state.epoch + 1,
            state: PlanState::InProgress,
            target,
            settings: self.settings,
            plan: new_plan,
            // Stamped by the runtime (crate::plan_times), which reads the clock.
            times: PlanTimes::default(),
        };
        let s = &record.plan.summary;
        info!(
            plan = %record.id,
            from_epoch = record.from_epoch,
            to_epoch = record.to_epoch,
            members = record.target.len(),
            moves = s.moves,
            moved_fraction = format_args!("{:.4}", s.moved_fraction),
            ideal_fraction = format_args!("{:.4}", s.ideal_fraction),
            planned_in = ?elapsed,
            "plan made"
        );
        self.last_plan_seconds = elapsed.as_secs_f64();
        self.plans_made += 1;
        let commit_now = self.settings.mode == Mode::Auto || record.plan.is_complete();
        self.state.plan = Some(record);
        self.state.revision += 1;
        if commit_now {
            self.commit();
        }
        self.touch(true);
        Ok(())
    }

    fn commit(&mut self) {
        let mut record = self.state.plan.take().expect("a plan to commit");
        self.state.committed = record.target.clone();
        self.state.settings = record.settings;
        self.state.epoch = record.to_epoch;
        self.state.revision = 0;
        info!(plan = %record.id, epoch = self.state.epoch, members = self.state.committed.len(), "plan committed");
        if self.settings.mode == Mode::Auto {
            record.state = PlanState::Committed;
            self.state.plan = Some(record);
        }
        self.touch(true);
    }

    /// A shard reports a move done. Reporting a done move again is fine.
    pub fn move_done(&mut self, id: &str) -> Result<MoveReport, CoordinatorError> {
        let record = self
            .state
            .plan
            .as_mut()
            .filter(|p| p.state == PlanState::InProgress)
            .ok_or(CoordinatorError::NoPlan)?;
        let was_done = record
            .plan
            .get(id)
            .is_some_and(|m| m.state == MoveState::Done);
        let done = record.plan.mark_done(id)?.clone();
        let remaining = record
            .plan
            .moves
            .iter()
            .filter(|m| m.state.is_open())
            .count();
        if was_done {
            return Ok(MoveReport {
                done,
                remaining,
                committed: false,
            });
        }
        info!(plan = %record.id, r#move = %done.id, from = %done.from, to = %done.to, remaining, "move done");
        self.state.revision += 1;
        let committed = remaining == 0;
        if committed {
            self.commit();
        }
        self.touch(true);
        Ok(MoveReport {
            done,
            remaining,
            committed,
        })
    }

    /// Every member of the committed ring, the in-flight target and the
    /// pending change, with its state.
    pub fn members(&self) -> Vec<MemberStatus> {
        let mut specs: BTreeMap<&MemberId, &MemberSpec> = BTreeMap::new();
        for spec in self
            .state
            .committed
            .members()
            .iter()
            .chain(self.target_ring().members())
        {
            specs.insert(&spec.id, spec);
        }
        if let Some(p) = &self.pending {
            for spec in &p.desired {
                specs.entry(&spec.id).or_insert(spec);
            }
        }
        let in_progress = self.plan_in_progress();
        specs
            .into_values()
            .map(|spec| {
                let observed = self.observed.as_ref().and_then(|o| o.get(spec.id.as_str()));
                let in_committed = self.state.committed.member(spec.id.as_str()).is_some();
                let state = if self.down_since.contains_key(&spec.id) {
                    MemberState::Down
                } else if !in_committed {
                    MemberState::Joining
                } else if in_progress.is_some_and(|p| p.target.member(spec.id.as_str()).is_none()) {
                    MemberState::Leaving
                } else {
                    MemberState::Up
                };
                MemberStatus {
                    id: spec.id.clone(),
                    state,
                    zone: observed
                        .and_then(|m| m.zone.clone())
                        .or_else(|| spec.zone.clone()),
                    addresses: observed.map(|m| m.addresses.clone()).unwrap_or_default(),
                    weight: spec.weight,
                }
            })
            .collect()
    }

    /// How long the last plan took to compute, in seconds.
    pub fn last_plan_seconds(&self) -> f64 {
        self.last_plan_seconds
    }

    /// Plans made since start.
    pub fn plans_made(&self) -> u64 {
        self.plans_made
    }

    /// Seconds until the pending change is planned, if one is waiting.
    pub fn pending_for(&self, now: Instant) -> Option<Duration> {
        self.pending.as_ref().map(|p| {
            (p.last + self.timing.settle)
                .min(p.first + self.timing.settle_max)
                .saturating_duration_since(now)
        })
    }
}

/// An endpoint the source sees that the committed ring does not have.
#[derive(Clone, Debug, PartialEq)]
pub struct Outside {
    /// Id.
    pub id: MemberId,
    /// Why it is not in the ring.
    pub reason: OutsideReason,
    /// Zone.
    pub zone: Option<String>,
    /// Addresses, from the source.
    pub addresses: Vec<String>,
}

/// What operators see of the coordinator beyond the ring and the plan: the
/// endpoints outside the ring, and when grace periods and the settle
/// window end. Read-only; kept apart from the state machine above.
impl Coordinator {
    /// The endpoints the source sees that the committed ring does not have,
    /// and why, in id order.
    pub fn outside_ring(&self) -> Vec<Outside> {
        let Some(observed) = &self.observed else {
            return Vec::new();
        };
        let in_plan = self.plan_in_progress();
        observed
            .iter()
            .filter(|m| self.state.committed.member(m.id.as_str()).is_none())
            .map(|m| {
                let id = MemberId::new(m.id.as_str());
                let reason = if m.terminating {
                    OutsideReason::Terminating
                } else if !m.ready {
                    OutsideReason::NotReady
                } else if in_plan.is_some_and(|p| p.target.member(id.as_str()).is_some()) {
                    OutsideReason::Joining
                } else if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.desired.iter().any(|s| s.id == id))
                {
                    OutsideReason::Settling
                } else {
                    OutsideReason::Waiting
                };
                Outside {
                    id,
                    reason,
                    zone: m.zone.clone(),
                    addresses: m.addresses.clone(),
                }
            })
            .collect()
    }

    /// When the grace of a `down` member ends (it then leaves the ring).
    pub fn grace_ends(&self, id: &MemberId) -> Option<Instant> {
        self.down_since
            .get(id)
            .map(|&since| since + self.timing.down_grace)
    }

    /// When the change waiting for the settle window is planned, at the
    /// latest.
    pub fn settle_ends(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|p| (p.last + self.timing.settle).min(p.first + self.timing.settle_max))
    }

    /// Stamps the plan's wall-clock times if it changed since `clock` last
    /// looked (the core reads no clock; the runtime calls this before each
    /// save, so the stamps are saved with the change they date).
    pub fn stamp_plan(&mut self, clock: &mut crate::plan_times::PlanClock, now_ms: u64) {
        clock.stamp(&mut self.state, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringleader_watch::MemberId as WatchId;

    fn member(id: &str, ready: bool) -> Member {
        Member {
            id: WatchId::new(id),
            addresses: vec![format!("10.0.0.{}", id.len())],
            zone: None,
            node_name: None,
            ports: Vec::new(),
            ready,
            serving: ready,
            terminating: false,
        }
    }

    fn set(members: &[(&str, bool)]) -> MemberSet {
        members
            .iter()
            .map(|&(id, ready)| member(id, ready))
            .collect()
    }

    fn pods(n: usize) -> MemberSet {
        (0..n).map(|i| member(&format!("db-{i}"), true)).collect()
    }

    fn coordinator(mode: Mode) -> Coordinator {
        let settings = RingSettings {
            mode,
            ..RingSettings::default()
        };
        Coordinator::new(State::fresh(settings).unwrap(), settings, Timing::default())
    }

    const SETTLE: Duration = Duration::from_secs(5);

    #[test]
    fn first_members_commit_after_settle_without_moves() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Ack);
        c.observe(pods(3), t0);
        assert_eq!(c.state().epoch, 0, "waits for the settle window");
        assert_eq!(c.next_deadline(), Some(t0 + SETTLE));
        c.tick(t0 + SETTLE);
        assert_eq!(c.state().epoch, 1);
        assert!(c.state().plan.is_none());
        assert_eq!(c.state().committed.len(), 3);
    }

    #[test]
    fn scale_up_is_one_plan_and_commits_with_the_last_ack() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Ack);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        // Pods 3..10 arrive one second apart: one plan at the end.
        for n in 4..=10 {
            c.observe(pods(n), t0 + SETTLE + Duration::from_secs(n as u64));
            assert!(
                c.state().plan.is_none(),
                "no plan while members keep arriving"
            );
        }
        let quiet = t0 + SETTLE + Duration::from_secs(10) + SETTLE;
        c.tick(quiet);
        let record = c.state().plan.clone().expect("a plan");
        assert_eq!(record.target.len(), 10);
        let old = ["db-0", "db-1", "db-2"];
        assert!(!record.plan.moves.is_empty());
        assert!(
            record
                .plan
                .moves
                .iter()
                .all(|m| !old.contains(&m.to.as_str())),
            "moves only to new members"
        );
        let ratio = record.plan.summary.moved_fraction / record.plan.summary.ideal_fraction;
        assert!(ratio <= 1.05, "moved/ideal {ratio}");
        let ids: Vec<String> = record.plan.moves.iter().map(|m| m.id.to_string()).collect();
        for (i, id) in ids.iter().enumerate() {
            let report = c.move_done(id).unwrap();
            assert_eq!(report.committed, i + 1 == ids.len());
        }
        assert_eq!(c.state().epoch, 2);
        assert!(c.state().plan.is_none());
        assert!(matches!(
            c.move_done(&ids[0]),
            Err(CoordinatorError::NoPlan)
        ));
    }

    #[test]
    fn pod_restart_within_grace_moves_nothing() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Ack);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        let before = c.state().clone();
        c.observe(
            set(&[("db-0", true), ("db-1", false), ("db-2", true)]),
            t0 + Duration::from_secs(10),
        );
        assert_eq!(
            c.members()
                .iter()
                .find(|m| m.id.as_str() == "db-1")
                .unwrap()
                .state,
            MemberState::Down
        );
        c.tick(t0 + Duration::from_secs(30));
        // Back with a new address, before the 60 s grace ends.
        let mut back = pods(3);
        let mut db1 = member("db-1", true);
        db1.addresses = vec!["10.9.9.9".into()];
        back.insert(db1);
        c.observe(back, t0 + Duration::from_secs(40));
        c.tick(t0 + Duration::from_secs(200));
        assert_eq!(c.state(), &before);
        assert!(c.members().iter().all(|m| m.state == MemberState::Up));
    }

    #[test]
    fn a_member_gone_past_its_grace_leaves() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Auto);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(3), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(69));
        assert_eq!(c.state().epoch, 1, "still within grace");
        c.tick(t0 + Duration::from_secs(70));
        // Grace over: the change waits for settle, then commits (auto).
        assert_eq!(c.state().epoch, 1);
        c.tick(t0 + Duration::from_secs(75));
        assert_eq!(c.state().epoch, 2);
        assert_eq!(c.state().committed.len(), 3);
        let record = c
            .state()
            .plan
            .as_ref()
            .expect("auto keeps the plan for reading");
        assert_eq!(record.state, PlanState::Committed);
        assert!(record.plan.moves.iter().all(|m| m.from.as_str() == "db-3"));
        assert!(
            record
                .plan
                .moves
                .iter()
                .all(|m| m.state == MoveState::SourceLost),
            "db-3 is gone"
        );
    }

    #[test]
    fn a_change_mid_plan_replans_and_keeps_move_ids() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Ack);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(6), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(15));
        let first = c.state().plan.clone().unwrap();
        let done_id = first.plan.moves[0].id.to_string();
        c.move_done(&done_id).unwrap();
        c.observe(pods(7), t0 + Duration::from_secs(20));
        c.tick(t0 + Duration::from_secs(25));
        let second = c.state().plan.clone().unwrap();
        assert_eq!(second.target.len(), 7);
        assert_eq!(second.from_epoch, first.from_epoch);
        assert_eq!(second.plan.get(&done_id).unwrap().state, MoveState::Done);
        // Moves of db-4 and db-5 not disturbed by db-6 keep their ids.
        let kept = first
            .plan
            .moves
            .iter()
            .filter(|m| {
                second
                    .plan
                    .get(m.id.as_str())
                    .is_some_and(|n| n.state != MoveState::Cancelled)
            })
            .count();
        assert!(
            kept > first.plan.moves.len() / 2,
            "kept {kept} of {}",
            first.plan.moves.len()
        );
    }

    #[test]
    fn not_ready_pods_do_not_join() {
        let t0 = Instant::now();
        let mut c = coordinator(Mode::Ack);
        c.observe(set(&[("db-0", true), ("db-1", false)]), t0);
        c.tick(t0 + SETTLE);
        assert_eq!(c.state().committed.len(), 1);
    }
}
