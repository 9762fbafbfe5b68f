//! The coordinator's core: from member sets to committed placements.
//!
//! A pure state machine: time is an input (`now`), nothing is read from a
//! clock, nothing is written anywhere. The runtime feeds it what happens —
//! member sets and the source's health ([`Coordinator::observe`],
//! [`Coordinator::source_synced`]), deadlines ([`Coordinator::tick`] at
//! [`Coordinator::next_deadline`]), move reports ([`Coordinator::move_done`])
//! and the outcome of every save ([`Coordinator::saved`],
//! [`Coordinator::save_failed`], [`Coordinator::adopt`]) — and carries out
//! what it asks for: [`Coordinator::to_save`] is the state to store.
//!
//! **Durability before visibility.** The coordinator keeps two states: the
//! *working* one, where changes happen, and the *stored* one, the last the
//! store confirmed. Everything shown (ring, plan, lookups, watch stream) is
//! built from [`Coordinator::shown`], the stored one, so nothing is visible
//! before it is stored; a failed save keeps the previous state visible and
//! makes [`Coordinator::readiness`] say why.
//!
//! Restarts and rolling updates are normal on Kubernetes and must not
//! shuffle data, so membership goes through three filters before it reaches
//! the planner (each member's [`Lifecycle`]):
//!
//! - **down-grace**: a ring member that turns not-ready, terminating, or
//!   vanishes stays in the ring as `down` until the grace ends; back in time,
//!   nothing is planned and none of its moves change (they wait). The grace
//!   counts only while the source is synced: an API-server outage removes
//!   nobody;
//! - **readiness**: a new member joins only once it is ready;
//! - **settle**: a change is planned once the wanted member set has been
//!   quiet for `settle` (or `settle_max` after the first change), so a
//!   scale-up from 3 to 10 pods is one plan, not seven ([`Phase`]).
//!
//! Plans then go `in_progress` (mode `ack`: shards report each move done,
//! the target commits with the last one) or commit at once (mode `auto`). A
//! change mid-plan replans from the *holdings* (the committed placement plus
//! the moves already done): the new target is the candidate that moves least
//! from there, moves still needed keep their id and state, the others stay
//! listed as `cancelled`. A return to the committed member set cancels the
//! plan and moves nothing (no new epoch).
//!
//! In mode `ack` a plan in progress is *paced* ([`ringleader_planner::pace`])
//! after every change — made, replanned, a move done — so at most
//! `--max-moves-per-member` moves per member and `--max-moves` in all are
//! `ready`; a done move frees its slots in the same saved state. Pacing
//! decides when moves run, never which moves exist.

use crate::settings::{Mode, RingSettings, Timing};
use crate::state::{PlanRecord, PlanState, PlanTimes, State};
use ringleader_client::api::{MemberState, OutsideReason};
use ringleader_planner::{
    Holdings, Lineage, Move, MoveId, MoveState, Pace, Placement, Plan, PlanError, PlanOptions,
    holdings_with, plan, replan,
};
use ringleader_ring::{MemberId, MemberSpec, Ring, RingError};
use ringleader_watch::{Member, MemberSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

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
    /// A cancelled plan is not stored yet: the plan replacing it waits, so
    /// that every shard sees the cancellation first.
    #[error("the cancelled plan is not stored yet; the next plan waits for it")]
    CancelNotStored,
    /// The move belongs to a plan that was cancelled or replaced since: an
    /// earlier lineage than the plan now in flight, or the plan now kept
    /// cancelled. Nothing is marked done: a later plan may move the same
    /// range between the same members, under another id.
    #[error(
        "move {id:?} belongs to plan lineage {lineage}, which is over (cancelled, replaced, or \
         committed without this move; the current lineage is {current}): nothing is marked done, and the copy it made may have \
         been cleaned up already. Drop that work and run the moves listed now: GET \
         /v1/members/{{member}}/work (or GET /v1/plan)"
    )]
    EarlierPlan {
        /// The move reported.
        id: String,
        /// Its lineage, as its id says.
        lineage: Lineage,
        /// The lineage of the newest plan.
        current: Lineage,
    },
}

/// Where the coordinator stands between member sets and plans.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// No member set from the source yet. Left at the first one.
    Starting,
    /// The ring (the in-flight target, else the committed ring) is what the
    /// members call for. Left when the wanted member set changes.
    Steady,
    /// The wanted member set differs from the ring's; planned once it has
    /// been quiet for `settle`, or `settle_max` after `first`. Left by
    /// planning, or when the wanted set is back to the ring's.
    Settling {
        /// When the first change of this batch was seen.
        first: Instant,
        /// When the wanted set last changed.
        last: Instant,
        /// The members the ring should have.
        desired: Vec<MemberSpec>,
    },
}

/// A member's lifecycle as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Ready, not in the ring yet: joins with the next plan.
    Joining,
    /// In the ring and ready.
    Up,
    /// In the ring but not ready, terminating or gone from the slices: it
    /// keeps its ranges (and its moves wait) until the grace ends. `since`
    /// is a reading of the grace clock, which runs only while the source is
    /// synced.
    Down {
        /// When it went down, on the grace clock.
        since: Duration,
    },
    /// Down past its grace: leaves the ring with the next plan.
    Gone,
}

/// Whether the last save succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreHealth {
    /// The state shown is the state stored (or nothing needed storing).
    Saved,
    /// The last save failed; the previous state stays shown until a retry
    /// succeeds.
    Failing {
        /// Why.
        reason: String,
    },
}

/// A state to store, as [`Coordinator::to_save`] hands it out.
#[derive(Clone, Debug)]
pub struct Save {
    /// Which change it is (pass it back to [`Coordinator::saved`]).
    pub change: u64,
    /// The state.
    pub state: State,
}

/// Time that counts for the down-grace: it runs only while the source is
/// synced, so an outage of the source removes nobody.
#[derive(Clone, Copy, Debug, Default)]
struct GraceClock {
    /// Time counted before `running_since`.
    counted: Duration,
    /// Since when it runs (the source is synced), if it does.
    running_since: Option<Instant>,
}

impl GraceClock {
    fn at(&self, now: Instant) -> Duration {
        self.counted
            + self
                .running_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    fn run(&mut self, running: bool, now: Instant) {
        match (self.running_since, running) {
            (None, true) => self.running_since = Some(now),
            (Some(since), false) => {
                self.counted += now.saturating_duration_since(since);
                self.running_since = None;
            }
            _ => {}
        }
    }
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
    /// The settings asked for on the command line; they differ from
    /// `working.settings` only while a `--reconfigure` is pending or running.
    settings: RingSettings,
    timing: Timing,
    /// Where changes happen; ahead of `stored` until saved.
    working: State,
    /// What the store holds: everything shown is built from it.
    stored: Arc<State>,
    /// Counts changes to `working` that must be stored.
    change: u64,
    /// The change `stored` is.
    stored_change: u64,
    store_health: StoreHealth,
    /// The last member set from the source; `None` until it first synced.
    observed: Option<MemberSet>,
    source_synced: bool,
    grace_clock: GraceClock,
    lifecycles: BTreeMap<MemberId, Lifecycle>,
    phase: Phase,
    /// Bumped on every change visible through the API.
    version: u64,
    plans_made: u64,
}

/// Whether a member can take part: serving and not terminating. Not
/// `ready`: with `publishNotReadyAddresses` the EndpointSlice controller
/// forces `ready` true, while `serving` keeps saying whether the pod passes
/// its readiness probe (a missing `serving` means true, as the API says; the
/// watch crate reads it so). See docs/membership.md.
pub(crate) fn eligible(member: &Member) -> bool {
    member.serving && !member.terminating
}

/// A change of a member's lifecycle worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transition {
    /// Newly ready, not in the ring: joins with the next plan.
    Ready,
    /// Was ready to join, is not any more (before it joined).
    NoLongerReady,
    /// Joined the ring (its plan made it a ring member) and is up.
    Joined,
    /// In the ring and down: keeps its ranges until the grace ends.
    Down,
    /// Down, back up within its grace.
    BackUp,
    /// Down past its grace: leaves with the next plan.
    Gone,
    /// Gone past its grace, then back before it left.
    BackAfterGrace,
    /// No longer in any ring (its leaving plan committed).
    Left,
}

impl Transition {
    fn message(self) -> &'static str {
        match self {
            Transition::Ready => "member ready; it joins with the next plan",
            Transition::NoLongerReady => "member no longer ready; it will not join",
            Transition::Joined => "member joined the ring",
            Transition::Down => "member down; it keeps its ranges until the grace ends",
            Transition::BackUp => "member back up",
            Transition::Gone => "member down past its grace: it leaves the ring",
            Transition::BackAfterGrace => {
                "member back after its grace ended; the next plan decides whether it stays"
            }
            Transition::Left => "member left the ring",
        }
    }
}

/// Which log line, if any, a member's lifecycle change calls for (`None`:
/// not tracked).
fn transition(before: Option<Lifecycle>, after: Option<Lifecycle>) -> Option<Transition> {
    use Lifecycle::{Down, Gone, Joining, Up};
    match (before, after) {
        (Some(Down { .. }), Some(Down { .. })) => None,
        (_, Some(Down { .. })) => Some(Transition::Down),
        (Some(Down { .. }), Some(Up)) => Some(Transition::BackUp),
        (Some(Gone), Some(Up | Joining)) => Some(Transition::BackAfterGrace),
        (Some(Joining) | None, Some(Up)) => Some(Transition::Joined),
        (_, Some(Gone)) if before != Some(Gone) => Some(Transition::Gone),
        (None, Some(Joining)) => Some(Transition::Ready),
        (Some(Joining), None) => Some(Transition::NoLongerReady),
        (Some(Up | Down { .. } | Gone), None) => Some(Transition::Left),
        _ => None,
    }
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

/// A ring that says where the data is mid-plan: each range owned as in the
/// in-flight target where the target's replicas hold it already (its moves
/// are done, or it never moved), else as in the committed ring. Edited to
/// the members wanted, it gives a revision that keeps what done moves
/// copied, where editing the in-flight target would move again what is
/// still pending and editing the committed ring would redo what is done.
/// `None` when the two rings differ in settings (a reconfiguration).
fn holdings_ring(
    committed: &Ring,
    target: &Ring,
    replication: &ringleader_ring::Replication,
    held: &Holdings,
) -> Option<Ring> {
    if committed.config() != target.config() || committed.is_empty() || target.is_empty() {
        return None;
    }
    let mut ends: Vec<ringleader_ring::Token> = committed
        .tokens()
        .iter()
        .chain(target.tokens())
        .copied()
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let target_replication = ringleader_ring::Replication {
        factor: replication.factor.min(target.len()).max(1),
        ..*replication
    };
    let n = ends.len();
    let mut owners: Vec<&MemberId> = Vec::with_capacity(n);
    for (k, &end) in ends.iter().enumerate() {
        let range = if n == 1 {
            ringleader_ring::TokenRange::FULL
        } else {
            ringleader_ring::TokenRange::new(ends[(k + n - 1) % n], end)
        };
        let replicas = target.replicas_of_token(end, &target_replication).ok()?;
        let owner = if replicas.iter().all(|m| held.holds_all(m, range)) {
            replicas[0]
        } else {
            committed.owner_of_token(end).ok()?
        };
        owners.push(owner);
    }
    // One token per run of one owner: the ring is as coarse as the data.
    let tokens: Vec<(ringleader_ring::Token, MemberId)> = (0..n)
        .filter(|&k| n == 1 || owners[k] != owners[(k + 1) % n])
        .map(|k| (ends[k], owners[k].clone()))
        .collect();
    let tokens = if tokens.is_empty() {
        vec![(ends[n - 1], owners[n - 1].clone())]
    } else {
        tokens
    };
    let mut specs: BTreeMap<&MemberId, &MemberSpec> = BTreeMap::new();
    for spec in committed.members().iter().chain(target.members()) {
        specs.insert(&spec.id, spec);
    }
    let owning: BTreeSet<MemberId> = tokens.iter().map(|(_, m)| m.clone()).collect();
    let members = specs
        .into_iter()
        .filter(|(id, _)| owning.contains(*id))
        .map(|(_, spec)| spec.clone());
    Ring::from_assignments(committed.config(), members, tokens).ok()
}

/// With one replica, a ring of where the data is, every copy counted: each
/// range a done move copied is owned by one of its holders among the
/// `desired` members — the one furthest below its share so far (ranges
/// largest first, ties to the copy a done move made) — and every other range
/// by its only holder. [`holdings_ring`] keeps a done move's copy only where
/// the in-flight target still wants it there; after a revision moved the
/// target elsewhere, the copy is data held all the same (seed 925 of the
/// simulator: p3 held 2/12 of the ring and needed 1/12 more, but the
/// holdings ring showed it 1/12, and every edit moved 1.5× the ideal).
/// `None` with more replicas (who holds what then follows from the walk),
/// across a reconfiguration, or without members.
fn data_ring(
    committed: &Ring,
    target: &Ring,
    replication: &ringleader_ring::Replication,
    held: &Holdings,
    desired: &[MemberSpec],
) -> Option<Ring> {
    if replication.factor != 1
        || committed.config() != target.config()
        || committed.is_empty()
        || desired.is_empty()
    {
        return None;
    }
    let weights: BTreeMap<&MemberId, f64> = desired
        .iter()
        .map(|s| (&s.id, f64::from(s.weight)))
        .collect();
    let total_weight: f64 = weights.values().sum();
    let share = |id: &MemberId| {
        weights.get(id).map_or(0.0, |w| {
            w / total_weight * ringleader_ring::TOKEN_SPACE as f64
        })
    };
    let ranges = held.canonical();
    let mut owners: Vec<Option<MemberId>> = vec![None; ranges.len()];
    let mut load: BTreeMap<MemberId, f64> = BTreeMap::new();
    let mut contested: Vec<usize> = Vec::new();
    for (k, (range, holders)) in ranges.iter().enumerate() {
        let wanted: Vec<&MemberId> = holders.iter().filter(|h| weights.contains_key(h)).collect();
        match wanted.as_slice() {
            [] => {
                // Nobody wanted holds it (its holders left): as committed;
                // the edit gives it away.
                let owner = committed.owner_of_token(range.end).ok()?.clone();
                *load.entry(owner.clone()).or_default() += range.len() as f64;
                owners[k] = Some(owner);
            }
            [only] => {
                *load.entry((*only).clone()).or_default() += range.len() as f64;
                owners[k] = Some((*only).clone());
            }
            _ => contested.push(k),
        }
    }
    contested.sort_by_key(|&k| std::cmp::Reverse(ranges[k].0.len()));
    for k in contested {
        let (range, holders) = &ranges[k];
        let committed_owner = committed.owner_of_token(range.end).ok()?;
        let owner = holders
            .iter()
            .filter(|h| weights.contains_key(h))
            .max_by(|a, b| {
                let deficit = |m: &MemberId| share(m) - load.get(m).copied().unwrap_or(0.0);
                deficit(a)
                    .total_cmp(&deficit(b))
                    .then_with(|| (*b == committed_owner).cmp(&(*a == committed_owner)))
                    .then_with(|| b.cmp(a))
            })?
            .clone();
        *load.entry(owner.clone()).or_default() += range.len() as f64;
        owners[k] = Some(owner);
    }
    let n = ranges.len();
    // One token per run of one owner, at the run's end.
    let tokens: Vec<(ringleader_ring::Token, MemberId)> = (0..n)
        .filter(|&k| n == 1 || owners[k] != owners[(k + 1) % n])
        .filter_map(|k| Some((ranges[k].0.end, owners[k].clone()?)))
        .collect();
    let tokens = if tokens.is_empty() {
        vec![(ranges[n - 1].0.end, owners[n - 1].clone()?)]
    } else {
        tokens
    };
    let mut specs: BTreeMap<&MemberId, &MemberSpec> = BTreeMap::new();
    for spec in committed
        .members()
        .iter()
        .chain(target.members())
        .chain(desired)
    {
        specs.insert(&spec.id, spec);
    }
    let owning: BTreeSet<MemberId> = tokens.iter().map(|(_, m)| m.clone()).collect();
    let members = specs
        .into_iter()
        .filter(|(id, _)| owning.contains(*id))
        .map(|(_, spec)| spec.clone());
    Ring::from_assignments(committed.config(), members, tokens).ok()
}

/// How many `source_lost` moves the plan's WARN line names (the rest at
/// DEBUG).
const LOST_EXAMPLES: usize = 3;

/// A plan's id: its epoch, and a hash of its target and of the revision it
/// was made at (a plan made again after a cancelled one, to the same
/// target, is another plan: its moves start afresh).
///
/// The hash is of `revision`, of every member's id followed by `0xff` (in
/// id order), then of every token and its owner's index among them, as
/// little-endian u64 and u32: the same facts as the tokens with their
/// owners' ids, in 12 bytes a token. Ids made by builds before 2026-12-04
/// hashed each token followed by its owner's id, 7 MB at 1,000 × 256
/// (3 ms of a change); ids are only ever compared, never recomputed from a
/// stored state, so a state stored then keeps its ids.
fn plan_id(epoch: u64, revision: u64, ring: &Ring) -> String {
    const CHUNK: usize = 4096;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&revision.to_le_bytes());
    for member in ring.members() {
        hasher.update(member.id.as_str().as_bytes());
        hasher.update(&[0xff]);
    }
    let mut bytes = Vec::with_capacity(CHUNK * 12);
    for (tokens, owners) in ring
        .tokens()
        .chunks(CHUNK)
        .zip(ring.owner_indices().chunks(CHUNK))
    {
        bytes.clear();
        for (&token, &owner) in tokens.iter().zip(owners) {
            bytes.extend_from_slice(&token.to_le_bytes());
            bytes.extend_from_slice(&owner.to_le_bytes());
        }
        hasher.update(&bytes);
    }
    format!("e{epoch}-{:012x}", hasher.digest() >> 16)
}

/// A plan within this share of DESIGN §4's ideal (plus
/// [`minimal_tokens`]) is minimal enough (DESIGN §8: ≤ 1.05 × the ideal).
pub(crate) const MINIMAL_SLACK: f64 = 1.05;

/// Tokens of slack on top of [`MINIMAL_SLACK`] for a target of `members`
/// members: what the ideal cannot see. It is a sum of one `f64` term per
/// member (target − held, in tokens of a 2^64 space), each within a few
/// units in the last place of exact: 2,048 tokens near the whole space, so
/// a move of a few hundred tokens that lands a member exactly on its share
/// can sit over an ideal of 0 (simulator seed 552,623: 202 tokens). Layouts
/// that meet in one place move one of them a few tokens on. Either way the
/// slack is 2 × 10^-14 of the data at 100 members.
pub(crate) fn minimal_tokens(members: usize) -> f64 {
    64.0 + 4096.0 * members as f64
}

/// Data still to move in a plan (open moves), in tokens.
fn remaining(plan: &Plan) -> u128 {
    plan.moves
        .iter()
        .filter(|m| m.state.is_open())
        .map(|m| m.range.len())
        .sum()
}

/// The mode and the pace govern how plans progress, not where data is: a
/// state made with others continues with the ones asked for (moves already
/// `ready` stay so, even above a lowered limit: they may be streaming).
fn in_mode(mut state: State, settings: RingSettings) -> State {
    state.settings.mode = settings.mode;
    state.settings.pace = settings.pace;
    if let Some(plan) = &mut state.plan {
        plan.settings.mode = settings.mode;
        plan.settings.pace = settings.pace;
    }
    state
}

/// Paces the state's plan if it is in progress in mode `ack` (in `auto`
/// mode plans commit at once and nothing is paced). Moves from or to an
/// `unavailable` member (down within its grace) wait. Returns the moves
/// made ready.
fn pace_plan(
    state: &mut State,
    unavailable: &BTreeSet<MemberId>,
) -> Vec<ringleader_planner::MoveId> {
    match &mut state.plan {
        Some(record)
            if record.state == PlanState::InProgress && record.settings.mode == Mode::Ack =>
        {
            let target = &record.target;
            ringleader_planner::pace(
                &mut record.plan,
                record.settings.pace,
                |id| target.member(id.as_str()).is_none(),
                |id| unavailable.contains(id),
            )
        }
        _ => Vec::new(),
    }
}

/// Paces a plan just made towards `target` and sets its expected waves
/// (counted as if every member were up: the down ones come back or leave).
fn paced(mut plan: Plan, target: &Ring, pace: Pace, unavailable: &BTreeSet<MemberId>) -> Plan {
    let leaving = |id: &ringleader_ring::MemberId| target.member(id.as_str()).is_none();
    ringleader_planner::pace(&mut plan, pace, leaving, |id| unavailable.contains(id));
    plan.summary.waves = Some(ringleader_planner::waves(&plan, pace, leaving));
    plan
}

impl Coordinator {
    /// A coordinator over the state the store holds (or a fresh one).
    /// `settings` are the ones asked for; when they differ from the state's,
    /// the caller has checked that `--reconfigure` was given, and the change
    /// is planned at the next opportunity.
    pub fn new(state: State, settings: RingSettings, timing: Timing) -> Self {
        let shown = in_mode(state, settings);
        let mut state = shown.clone();
        // A plan stored by a build without pace (every move pending), or
        // with another pace, is paced now: a change to store, shown once
        // stored.
        // Nobody is known to be down yet: that waits for the source.
        let change = if pace_plan(&mut state, &BTreeSet::new()).is_empty() {
            0
        } else {
            state.revision += 1;
            1
        };
        Self {
            settings,
            timing,
            stored: Arc::new(shown),
            working: state,
            change,
            stored_change: 0,
            store_health: StoreHealth::Saved,
            observed: None,
            source_synced: false,
            grace_clock: GraceClock::default(),
            lifecycles: BTreeMap::new(),
            phase: Phase::Starting,
            version: 1,
            plans_made: 0,
        }
    }

    /// The working state (ahead of the store until saved).
    pub fn state(&self) -> &State {
        &self.working
    }

    /// The stored state: what the API shows.
    pub fn shown(&self) -> &Arc<State> {
        &self.stored
    }

    /// The settings in force for new plans.
    pub fn settings(&self) -> RingSettings {
        self.settings
    }

    /// Bumped on every change visible through the API.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Where the coordinator stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Each tracked member's lifecycle.
    pub fn lifecycles(&self) -> &BTreeMap<MemberId, Lifecycle> {
        &self.lifecycles
    }

    /// Whether the last save succeeded.
    pub fn store_health(&self) -> &StoreHealth {
        &self.store_health
    }

    /// Whether the source has delivered a member set yet.
    pub fn has_members(&self) -> bool {
        self.observed.is_some()
    }

    /// The working state, if it has changes the store does not hold yet.
    pub fn to_save(&self) -> Option<Save> {
        (self.change != self.stored_change).then(|| Save {
            change: self.change,
            state: self.working.clone(),
        })
    }

    /// Whether the working state is ahead of the store.
    pub fn has_unsaved(&self) -> bool {
        self.change != self.stored_change
    }

    /// The store holds `save` now: it becomes what is shown.
    pub fn saved(&mut self, save: Save) {
        self.stored_change = save.change;
        self.stored = Arc::new(save.state);
        self.store_health = StoreHealth::Saved;
        self.version += 1;
    }

    /// A save failed: the previous state stays shown; the caller retries.
    pub fn save_failed(&mut self, reason: String) {
        let health = StoreHealth::Failing { reason };
        if self.store_health != health {
            self.store_health = health;
            self.version += 1;
        }
    }

    /// Someone else wrote the store (a save conflicted): their state is
    /// taken over, ours is dropped — never written over theirs.
    pub fn adopt(&mut self, stored: State, now: Instant) {
        let stored = in_mode(stored, self.settings);
        info!(
            epoch = stored.epoch,
            revision = stored.revision,
            "taking over the stored state"
        );
        self.stored = Arc::new(stored.clone());
        self.working = stored;
        self.stored_change = self.change;
        self.store_health = StoreHealth::Saved;
        let unavailable = self.unavailable();
        if !pace_plan(&mut self.working, &unavailable).is_empty() {
            // Taken over with another pace: ours applies, stored as a change.
            self.working.revision += 1;
            self.change += 1;
        }
        if !matches!(self.phase, Phase::Starting) {
            self.phase = Phase::Steady;
        }
        self.version += 1;
        self.reconsider(now);
    }

    fn touch(&mut self, persist: bool) {
        self.version += 1;
        if persist {
            self.change += 1;
        }
    }

    /// The committed placement.
    pub fn committed(&self) -> Placement {
        Placement::new(
            self.working.committed.clone(),
            self.working.settings.replication(),
        )
        .expect("validated settings have rf >= 1")
    }

    /// The ring the members are compared with: the in-flight target, else
    /// the committed ring.
    fn ring(&self) -> &Ring {
        self.working
            .in_flight()
            .map_or(&self.working.committed, |p| &p.target)
    }

    /// The members of the committed ring, then those of the in-flight
    /// target if there is one (with repeats): everyone a plan concerns.
    /// Without a plan in flight the committed ring's alone (reading them
    /// twice was half of the 0.6 ms each member change spent here at 1,000
    /// members).
    fn ring_members(&self) -> impl Iterator<Item = &MemberSpec> {
        let committed = &self.working.committed;
        let target = self.ring();
        let target: &[MemberSpec] = if target.is_same(committed) {
            &[]
        } else {
            target.members()
        };
        committed.members().iter().chain(target)
    }

    /// A new member set from the source.
    pub fn observe(&mut self, members: MemberSet, now: Instant) {
        if self.observed.as_ref() == Some(&members) {
            return;
        }
        self.observed = Some(members);
        if self.phase == Phase::Starting {
            self.phase = Phase::Steady;
        }
        self.touch(false);
        self.reconsider(now);
    }

    /// The source's health: the down-grace counts only while it is synced.
    pub fn source_synced(&mut self, synced: bool, now: Instant) {
        if self.source_synced != synced {
            self.source_synced = synced;
            self.grace_clock.run(synced, now);
            self.touch(false);
        }
        self.reconsider(now);
    }

    /// Time passed: grace periods and settle windows may have ended.
    pub fn tick(&mut self, now: Instant) {
        self.reconsider(now);
    }

    /// When the coordinator next needs a [`Coordinator::tick`].
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let clock = self.grace_clock.at(now);
        let grace = self
            .lifecycles
            .values()
            .filter(|_| self.source_synced)
            .filter_map(|l| match l {
                Lifecycle::Down { since } => {
                    Some(now + (*since + self.timing.down_grace).saturating_sub(clock))
                }
                _ => None,
            });
        let settle = match &self.phase {
            Phase::Settling { first, last, .. } => {
                Some((*last + self.timing.settle).min(*first + self.timing.settle_max))
            }
            _ => None,
        };
        grace.chain(settle).min()
    }

    /// Every member's lifecycle now, from the source's last member set.
    fn lifecycles_at(&self, observed: &MemberSet, now: Instant) -> BTreeMap<MemberId, Lifecycle> {
        let clock = self.grace_clock.at(now);
        let mut out = BTreeMap::new();
        for spec in self.ring_members() {
            let lifecycle = if observed.get(spec.id.as_str()).is_some_and(eligible) {
                Lifecycle::Up
            } else {
                let since = match self.lifecycles.get(&spec.id) {
                    Some(Lifecycle::Down { since }) => *since,
                    Some(Lifecycle::Gone) => Duration::ZERO,
                    _ => clock,
                };
                if clock >= since + self.timing.down_grace
                    || self.lifecycles.get(&spec.id) == Some(&Lifecycle::Gone)
                {
                    Lifecycle::Gone
                } else {
                    Lifecycle::Down { since }
                }
            };
            out.insert(spec.id.clone(), lifecycle);
        }
        for m in observed.iter().filter(|m| eligible(m)) {
            out.entry(MemberId::new(m.id.as_str()))
                .or_insert(Lifecycle::Joining);
        }
        out
    }

    /// The members the ring should have: ring members up or down within
    /// their grace (zones as the source says now), and ready newcomers.
    fn desired(&self) -> Vec<MemberSpec> {
        let observed = self.observed.as_ref();
        let mut specs: BTreeMap<&MemberId, MemberSpec> = BTreeMap::new();
        for spec in self.ring_members() {
            specs.entry(&spec.id).or_insert_with(|| spec.clone());
        }
        let mut desired = Vec::new();
        for (id, lifecycle) in &self.lifecycles {
            match lifecycle {
                Lifecycle::Gone => {}
                Lifecycle::Up | Lifecycle::Down { .. } | Lifecycle::Joining => {
                    let seen = observed
                        .and_then(|o| o.get(id.as_str()))
                        .filter(|m| eligible(m));
                    let mut spec = specs.get(id).cloned().unwrap_or_else(|| MemberSpec {
                        id: id.clone(),
                        zone: None,
                        weight: 1,
                    });
                    if let Some(zone) = seen.and_then(|m| m.zone.clone()) {
                        spec.zone = Some(zone);
                    }
                    // A weight the source names is a membership change like
                    // any other; a source that cannot tell (no weight) keeps
                    // the ring's.
                    if let Some(weight) = seen.and_then(|m| m.weight) {
                        spec.weight = weight;
                    }
                    desired.push(spec);
                }
            }
        }
        desired
    }

    /// Recomputes every member's lifecycle, logging each transition.
    fn refresh_lifecycles(&mut self, now: Instant) {
        let Some(observed) = &self.observed else {
            return;
        };
        let lifecycles = self.lifecycles_at(observed, now);
        if lifecycles != self.lifecycles {
            let ids: BTreeSet<&MemberId> =
                lifecycles.keys().chain(self.lifecycles.keys()).collect();
            for id in ids {
                let before = self.lifecycles.get(id).copied();
                let after = lifecycles.get(id).copied();
                match transition(before, after) {
                    Some(t @ Transition::Down) => {
                        info!(member = %id, grace = ?self.timing.down_grace, "{}", t.message())
                    }
                    Some(t) => info!(member = %id, "{}", t.message()),
                    None => {}
                }
            }
            self.lifecycles = lifecycles;
            // A member down within its grace holds up its moves; one back
            // up lets them run: pace again, stored as a change.
            let unavailable = self.unavailable();
            if pace_plan(&mut self.working, &unavailable).is_empty() {
                self.touch(false);
            } else {
                self.working.revision += 1;
                self.touch(true);
            }
        }
    }

    /// Members that cannot stream now: down (within their grace or past
    /// it, until the next plan drops them). Their pending moves wait.
    pub fn unavailable(&self) -> BTreeSet<MemberId> {
        self.lifecycles
            .iter()
            .filter(|(_, l)| matches!(l, Lifecycle::Down { .. } | Lifecycle::Gone))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn reconsider(&mut self, now: Instant) {
        if self.observed.is_none() {
            return;
        }
        self.refresh_lifecycles(now);

        let desired = self.desired();
        let reconfiguring = self.settings != self.working.settings
            && self
                .working
                .plan
                .as_ref()
                .is_none_or(|p| p.settings != self.settings);
        if desired.as_slice() == self.ring().members() && !reconfiguring {
            if matches!(self.phase, Phase::Settling { .. }) {
                self.phase = Phase::Steady;
                self.touch(false);
            }
            return;
        }
        match &mut self.phase {
            Phase::Settling {
                desired: waiting,
                last,
                ..
            } => {
                if *waiting != desired {
                    *waiting = desired;
                    *last = now;
                    self.version += 1;
                }
            }
            _ => {
                self.phase = Phase::Settling {
                    first: now,
                    last: now,
                    desired,
                };
                self.version += 1;
            }
        }
        let Phase::Settling {
            first,
            last,
            desired,
        } = &self.phase
        else {
            unreachable!("set above")
        };
        let quiet = now >= *last + self.timing.settle;
        let waited_long = now >= *first + self.timing.settle_max;
        if quiet || waited_long {
            let desired = desired.clone();
            let outcome = if desired.is_empty() {
                warn!("every member is gone; keeping the last ring until members return");
                Ok(false)
            } else {
                self.make_plan(&desired).map(|()| true)
            };
            match outcome {
                Ok(true) => {
                    self.phase = Phase::Steady;
                    // Members joined or left the ring (in auto mode, the
                    // plan committed): say so now, not at the next event.
                    self.refresh_lifecycles(now);
                }
                failed => {
                    if let Err(e) = failed {
                        warn!(error = %e, "could not plan the membership change; will retry");
                    }
                    // Try again after another settle window, not at once.
                    if let Phase::Settling { first, last, .. } = &mut self.phase {
                        *first = now;
                        *last = now;
                    }
                }
            }
        }
    }

    /// Members that cannot stream: they left (past their grace). A member
    /// down within its grace is not among them: its moves wait for it.
    fn departed(&self, desired: &[MemberSpec]) -> BTreeSet<MemberId> {
        let wanted: BTreeSet<&MemberId> = desired.iter().map(|s| &s.id).collect();
        let mut all: BTreeSet<MemberId> = BTreeSet::new();
        all.extend(
            self.working
                .committed
                .members()
                .iter()
                .map(|s| s.id.clone()),
        );
        if let Some(p) = self.working.in_flight() {
            all.extend(p.target.members().iter().map(|s| s.id.clone()));
            all.extend(p.plan.moves.iter().map(|m| m.to.clone()));
        }
        all.retain(|id| !wanted.contains(id));
        all
    }

    /// With one replica and `balanced` tokens, the balance every planned
    /// target keeps to ([`crate::rebalance::balance_bound`]); `None`
    /// otherwise (hashed tokens are only as even as their count allows; with
    /// more replicas balance follows the replica walks).
    fn one_replica_bound(&self) -> Option<f64> {
        (self.settings.rf == 1 && self.settings.strategy == ringleader_ring::Strategy::Balanced)
            .then(|| crate::rebalance::balance_bound(self.settings.tokens_per_member))
    }

    /// Whether `plan` (to a ring of the `members` desired members) moves more than
    /// DESIGN §8 allows over the ideal from the holdings it was planned
    /// from, so that the layout from those holdings
    /// ([`Self::held_candidate`]) is worth a try.
    fn over_minimal(&self, plan: &Plan, members: usize) -> bool {
        let replicas = ringleader_ring::TOKEN_SPACE as f64 * self.settings.rf as f64;
        remaining(plan) as f64
            > MINIMAL_SLACK * plan.summary.ideal_fraction * replicas + minimal_tokens(members)
    }

    /// The target laid out from the holdings (crate::held_target), with
    /// `balanced` tokens: for one replica (it moves DESIGN §4's ideal and no
    /// more), or zone-aware with as many zones as replicas (each zone's
    /// tokens a one-replica ring of their own: it moves the ideal zone by
    /// zone; the caller keeps it only if it moves less than the allocator's
    /// edit, which may keep more of the moves in flight). `None` where neither
    /// applies or the layout is not a ring the store can hold. Tried only
    /// for a plan [`Self::over_minimal`]: the layout cuts ranges where the
    /// holdings end, so members get more tokens than their count, and the
    /// allocator's own edits stay the rule (simulator seeds 421,289 and
    /// 473,057: 3 members, 4 tokens, weights changing, 1.10 and 1.19 × the
    /// ideal with them alone; with 2–15 members over 3 zones up to 1.6 ×).
    fn held_candidate(
        &self,
        held: &Holdings,
        desired: &[MemberSpec],
    ) -> Result<Option<(Ring, Placement)>, CoordinatorError> {
        if self.settings.strategy != ringleader_ring::Strategy::Balanced {
            return Ok(None);
        }
        let config = self.settings.ring_config();
        let ring = match self.settings.rf {
            1 => crate::held_target::one_replica_target(held, config, desired),
            rf if self.settings.zone_aware => {
                crate::held_target::zoned_target(held, config, desired, rf)
            }
            _ => None,
        };
        let Some(ring) = ring.filter(|r| r.check().is_ok()) else {
            return Ok(None);
        };
        let placement = Placement::new(ring.clone(), self.settings.replication())?;
        Ok(Some((ring, placement)))
    }

    fn make_plan(&mut self, desired: &[MemberSpec]) -> Result<(), CoordinatorError> {
        let from = self.committed();
        // A revision (or the cancel of a revert) is the same plan: its
        // lineage. A plan made afresh — after a commit, or after a cancel —
        // is a new lineage, so none of its moves takes the id of an earlier
        // plan's move (whose late report must not mark it done).
        let lineage = if self.working.in_flight().is_some() {
            self.working.lineage
        } else {
            self.working.lineage.next()
        };
        let options = PlanOptions {
            unavailable: self.departed(desired),
            lineage,
        };
        let revert =
            desired == self.working.committed.members() && self.settings == self.working.settings;
        let (target, new_plan) = match self.working.in_flight() {
            Some(current) if revert => {
                // Back to the committed member set: nothing needs to move.
                let to = from.clone();
                let cancelled = replan(&from, &current.plan, &to, &options)?;
                (to.ring().clone(), cancelled)
            }
            Some(current) => {
                // The target that moves least from the holdings, among the
                // rings made from the in-flight target, from the committed
                // ring, from the ring of where the data is now, and (one
                // replica) from the ring of every copy held.
                let held = holdings_with(&from, &current.plan);
                let from_holdings = holdings_ring(
                    &self.working.committed,
                    &current.target,
                    &self.settings.replication(),
                    &held,
                );
                // Ties go to the earlier candidate: the in-flight target's
                // edit keeps the moves shards may be streaming. A ring the
                // store could not read back loses to any other (if all are
                // such, the check below refuses it).
                let from_data = data_ring(
                    &self.working.committed,
                    &current.target,
                    &self.settings.replication(),
                    &held,
                    desired,
                );
                let bases = [
                    Some(&current.target),
                    Some(&self.working.committed),
                    from_holdings.as_ref(),
                    from_data.as_ref(),
                ];
                // With one replica each edit also comes polished back
                // within the allocator's bound (crate::rebalance), and a
                // balanced candidate beats an unbalanced one: the least
                // moving edit can inherit the holdings' unevenness, which
                // the next plan would then pay to repair (seed 219,731).
                let bound = self.one_replica_bound();
                let mut rings: Vec<Ring> = Vec::new();
                for base in bases.into_iter().flatten() {
                    let ring = next_ring(base, &self.settings, desired)?;
                    if let Some(polished) =
                        bound.and_then(|b| crate::rebalance::polish_towards(&ring, &held, b))
                    {
                        rings.push(polished);
                    }
                    rings.push(ring);
                }
                // After moves are done, with one replica: the ring laid out
                // from the holdings (crate::held_target), which moves the
                // ideal and nothing more. Last, so that any edit moving as
                // little wins the tie (it keeps more of the moves shards
                // may be streaming); only here, not on every fresh plan
                // (event → plan is a speed target).
                let progressed = current
                    .plan
                    .moves
                    .iter()
                    .any(|m| m.state == MoveState::Done);
                if progressed
                    && bound.is_some()
                    && self.settings.ring_config() == current.target.config()
                    && let Some(ring) = crate::held_target::one_replica_target(
                        &held,
                        self.settings.ring_config(),
                        desired,
                    )
                {
                    rings.push(ring);
                }
                let mut best: Option<((bool, bool), Ring, Plan)> = None;
                for ring in rings {
                    if best.as_ref().is_some_and(|(_, r, _)| *r == ring) {
                        continue;
                    }
                    let storable =
                        Ring::try_from(ringleader_ring::RingSnapshot::from(&ring)).is_ok();
                    let balanced = bound.is_none_or(|b| ring.balance() <= b + 1e-9);
                    let class = (storable, balanced);
                    let to = Placement::new(ring.clone(), self.settings.replication())?;
                    let candidate = replan(&from, &current.plan, &to, &options)?;
                    let better = match &best {
                        None => true,
                        Some((best_class, _, _)) if class != *best_class => class > *best_class,
                        Some((_, _, b)) => remaining(&candidate) < remaining(b),
                    };
                    if better {
                        best = Some((class, ring, candidate));
                    }
                }
                let (class, ring, revised) = best.expect("the in-flight target is a candidate");
                // Still over DESIGN §8's margin: the layout from the
                // holdings, if it moves less.
                let held_candidate = if !class.0 || self.over_minimal(&revised, desired.len()) {
                    self.held_candidate(&held, desired)?
                } else {
                    None
                };
                match held_candidate {
                    Some((laid_out, to)) => {
                        let candidate = replan(&from, &current.plan, &to, &options)?;
                        if remaining(&candidate) < remaining(&revised) || !class.0 {
                            (laid_out, candidate)
                        } else {
                            (ring, revised)
                        }
                    }
                    None => (ring, revised),
                }
            }
            None => {
                if let Some(cancelled) = self
                    .working
                    .plan
                    .as_ref()
                    .filter(|p| p.state == PlanState::Cancelled)
                    && self.stored.plan.as_ref() != Some(cancelled)
                {
                    return Err(CoordinatorError::CancelNotStored);
                }
                let ring = next_ring(&self.working.committed, &self.settings, desired)?;
                // The allocator's polish is bounded by a share of the ideal;
                // past its bound the target is polished from the committed
                // holdings (crate::rebalance), so every committed ring is
                // within it.
                let ring = self
                    .one_replica_bound()
                    .filter(|&b| crate::rebalance::needs_polish(&ring, b))
                    .and_then(|b| crate::rebalance::polish_towards(&ring, &Holdings::of(&from), b))
                    .unwrap_or(ring);
                let to = Placement::new(ring.clone(), self.settings.replication())?;
                let fresh = plan(&from, &to, &options)?;
                // Over DESIGN §8's margin (few tokens, weights changing):
                // the layout from the committed holdings, if it moves less.
                let held_candidate = if self.over_minimal(&fresh, desired.len()) {
                    self.held_candidate(&Holdings::of(&from), desired)?
                } else {
                    None
                };
                match held_candidate {
                    Some((laid_out, to)) => {
                        let candidate = plan(&from, &to, &options)?;
                        if remaining(&candidate) < remaining(&fresh) {
                            (laid_out, candidate)
                        } else {
                            (ring, fresh)
                        }
                    }
                    None => (ring, fresh),
                }
            }
        };
        // A target the store could not read back would make the state
        // unusable after a restart: refuse it (and retry later) rather than
        // store it.
        if let Err(e) = target.check() {
            warn!(error = %e, members = target.len(), "the ring allocator made a ring that cannot be stored; not planning it");
            return Err(CoordinatorError::Ring(e));
        }
        let new_plan = if revert || self.settings.mode == Mode::Auto {
            new_plan
        } else {
            paced(new_plan, &target, self.settings.pace, &self.unavailable())
        };
        let lost: Vec<Move> = new_plan
            .moves
            .iter()
            .filter(|m| m.state == MoveState::SourceLost)
            .cloned()
            .collect();
        // One DEBUG line a move; the plan's WARN below sums them up (a leave
        // with no grace loses one range a token: hundreds of WARN lines a
        // change at 256 tokens, written on the way to the plan).
        for m in &lost {
            debug!(r#move = %m.id, range = %m.range, from = %m.from, to = %m.to, "every member holding this range is gone: the data must come from a backup");
        }
        let record = PlanRecord {
            id: plan_id(self.working.epoch, self.working.revision + 1, &target),
            from_epoch: self.working.epoch,
            to_epoch: self.working.epoch + 1,
            state: if revert {
                PlanState::Cancelled
            } else {
                PlanState::InProgress
            },
            target,
            settings: self.settings,
            plan: new_plan,
            // Stamped by the runtime (crate::plan_times), which reads the clock.
            times: PlanTimes::default(),
        };
        if let Some(current) = &self.working.plan {
            // The same plan again (its expected waves aside, which count
            // from where it stands now): nothing to do.
            let mut same = record.clone();
            same.plan.summary.waves = current.plan.summary.waves;
            if *current == same {
                return Ok(());
            }
        }
        let s = &record.plan.summary;
        if revert {
            info!(plan = %record.id, epoch = record.from_epoch, "members back to the committed set: plan cancelled, nothing moves");
        } else if !lost.is_empty() {
            let lost_from: BTreeSet<&str> = lost.iter().map(|m| m.from.as_str()).collect();
            let lost_from: Vec<&str> = lost_from.into_iter().collect();
            let examples: Vec<String> = lost
                .iter()
                .take(LOST_EXAMPLES)
                .map(|m| format!("{} {} {}->{}", m.id, m.range, m.from, m.to))
                .collect();
            warn!(
                plan = %record.id,
                from_epoch = record.from_epoch,
                to_epoch = record.to_epoch,
                members = record.target.len(),
                moves = s.moves,
                source_lost = lost.len(),
                lost_from = %lost_from.join(","),
                examples = %examples.join("; "),
                "plan made with {} source_lost move(s): every holder of their ranges ({}) is gone, the data must come from a backup",
                lost.len(),
                lost_from.join(", ")
            );
        } else {
            info!(
                plan = %record.id,
                from_epoch = record.from_epoch,
                to_epoch = record.to_epoch,
                members = record.target.len(),
                moves = s.moves,
                moved_fraction = format_args!("{:.4}", s.moved_fraction),
                ideal_fraction = format_args!("{:.4}", s.ideal_fraction),
                source_lost = lost.len(),
                waves = s.waves.map_or_else(|| "-".to_owned(), |w| w.to_string()),
                max_moves_per_member = %self
                    .settings
                    .pace
                    .max_moves_per_member
                    .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
                "plan made"
            );
        }
        self.plans_made += 1;
        let commit_now = !revert && (self.settings.mode == Mode::Auto || record.plan.is_complete());
        self.working.plan = Some(record);
        self.working.lineage = lineage;
        self.working.revision += 1;
        if commit_now {
            self.commit();
        }
        self.touch(true);
        Ok(())
    }

    /// After a move is done, its target holds the range: a `source_lost`
    /// move of that range can stream from it now.
    fn resource_lost_moves(&mut self) {
        let Some(record) = self.working.in_flight() else {
            return;
        };
        if !record
            .plan
            .moves
            .iter()
            .any(|m| m.state == MoveState::SourceLost)
        {
            return;
        }
        let desired = record.target.members().to_vec();
        let options = PlanOptions {
            unavailable: self.departed(&desired),
            lineage: self.working.lineage,
        };
        let Ok(to) = Placement::new(record.target.clone(), record.settings.replication()) else {
            return;
        };
        let revised = replan(&self.committed(), &record.plan, &to, &options).map(|mut p| {
            p.summary.waves = record.plan.summary.waves;
            p
        });
        match revised {
            Ok(mut revised) if revised != record.plan => {
                info!(plan = %record.id, "a range whose holders were all gone is held again: its move has a source now");
                if record.settings.mode == Mode::Ack {
                    revised = paced(
                        revised,
                        &record.target,
                        record.settings.pace,
                        &self.unavailable(),
                    );
                }
                if let Some(p) = self.working.plan.as_mut() {
                    p.plan = revised;
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not revise the plan's lost moves"),
        }
    }

    fn commit(&mut self) {
        let mut record = self.working.plan.take().expect("a plan to commit");
        self.working.committed = record.target.clone();
        self.working.settings = record.settings;
        self.working.epoch = record.to_epoch;
        self.working.revision = 0;
        info!(plan = %record.id, epoch = self.working.epoch, members = self.working.committed.len(), "plan committed");
        self.working.last_committed = record
            .plan
            .moves
            .iter()
            .filter(|m| m.state == MoveState::Done)
            .cloned()
            .collect();
        if self.settings.mode == Mode::Auto {
            record.state = PlanState::Committed;
            self.working.plan = Some(record);
        }
        self.touch(true);
    }

    /// A shard reports a move done. Reporting a done move again is fine,
    /// also once its plan committed, across restarts and leader changes (the
    /// last committed plan's done moves are stored with the state): the
    /// answer is the one that committed it.
    pub fn move_done(&mut self, id: &str) -> Result<MoveReport, CoordinatorError> {
        let in_flight = self
            .working
            .plan
            .as_ref()
            .filter(|p| p.state == PlanState::InProgress);
        let known_in_flight = in_flight.is_some_and(|p| p.plan.get(id).is_some());
        let committed_before = self
            .working
            .last_committed
            .iter()
            .find(|m| m.id.as_str() == id);
        if !known_in_flight && let Some(done) = committed_before {
            return Ok(MoveReport {
                done: done.clone(),
                remaining: 0,
                committed: true,
            });
        }
        // A move of an earlier plan (its id names its lineage): say so,
        // rather than "no plan" or "no such move", so the shard drops it.
        if !known_in_flight
            && let Some(lineage) = MoveId::from(id).lineage()
            && !lineage.is_unnumbered()
            && (lineage < self.working.lineage
                || (lineage == self.working.lineage && in_flight.is_none()))
        {
            return Err(CoordinatorError::EarlierPlan {
                id: id.to_owned(),
                lineage,
                current: self.working.lineage,
            });
        }
        let record = self
            .working
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
        self.working.revision += 1;
        self.resource_lost_moves();
        // Its slots are free: the next moves in line are ready in the same
        // saved state as the ack.
        let unavailable = self.unavailable();
        pace_plan(&mut self.working, &unavailable);
        let remaining = self.working.in_flight().map_or(0, |p| {
            p.plan.moves.iter().filter(|m| m.state.is_open()).count()
        });
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

    /// Every member of the shown rings and of the pending change, with its
    /// state.
    pub fn members(&self) -> Vec<MemberStatus> {
        let shown = &self.stored;
        let in_flight = shown.in_flight();
        let mut specs: BTreeMap<&MemberId, &MemberSpec> = BTreeMap::new();
        for spec in shown
            .committed
            .members()
            .iter()
            .chain(in_flight.iter().flat_map(|p| p.target.members()))
        {
            specs.insert(&spec.id, spec);
        }
        if let Phase::Settling { desired, .. } = &self.phase {
            for spec in desired {
                specs.entry(&spec.id).or_insert(spec);
            }
        }
        specs
            .into_values()
            .map(|spec| {
                let observed = self.observed.as_ref().and_then(|o| o.get(spec.id.as_str()));
                let in_committed = shown.committed.member(spec.id.as_str()).is_some();
                let down = matches!(
                    self.lifecycles.get(&spec.id),
                    Some(Lifecycle::Down { .. } | Lifecycle::Gone)
                );
                let state = if down {
                    MemberState::Down
                } else if !in_committed {
                    MemberState::Joining
                } else if in_flight.is_some_and(|p| p.target.member(spec.id.as_str()).is_none()) {
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

    /// Why lookups should not be routed here yet, if so: `Ok` once the
    /// source has synced, the last save succeeded, and lookups can be
    /// answered (a committed ring with members, or no ready members at all).
    pub fn readiness(&self) -> Result<(), String> {
        let Some(observed) = &self.observed else {
            return Err("waiting for the membership source's first member set".into());
        };
        if let StoreHealth::Failing { reason } = &self.store_health {
            return Err(format!(
                "the last save failed, so the state shown is the last one stored: {reason}"
            ));
        }
        if self.stored.committed.is_empty() && observed.iter().any(eligible) {
            return Err(
                "the first ring has not been committed yet (it is planned once the members have been quiet for --settle); lookups answer from then on"
                    .into(),
            );
        }
        Ok(())
    }

    /// Plans made since start.
    pub fn plans_made(&self) -> u64 {
        self.plans_made
    }

    /// How long until the pending change is planned, if one is waiting.
    pub fn pending_for(&self, now: Instant) -> Option<Duration> {
        match &self.phase {
            Phase::Settling { first, last, .. } => Some(
                (*last + self.timing.settle)
                    .min(*first + self.timing.settle_max)
                    .saturating_duration_since(now),
            ),
            _ => None,
        }
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
        let shown = &self.stored;
        let in_plan = shown.in_flight();
        observed
            .iter()
            .filter(|m| shown.committed.member(m.id.as_str()).is_none())
            .map(|m| {
                let id = MemberId::new(m.id.as_str());
                let reason = if m.terminating {
                    OutsideReason::Terminating
                } else if !m.ready {
                    OutsideReason::NotReady
                } else if in_plan.is_some_and(|p| p.target.member(id.as_str()).is_some()) {
                    OutsideReason::Joining
                } else if matches!(&self.phase, Phase::Settling { desired, .. } if desired.iter().any(|s| s.id == id))
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

    /// When the grace of a `down` member ends (it then leaves the ring), if
    /// the grace is running (it stops while the source is not synced).
    pub fn grace_ends(&self, id: &MemberId, now: Instant) -> Option<Instant> {
        match self.lifecycles.get(id)? {
            Lifecycle::Down { since } if self.source_synced => Some(
                now + (*since + self.timing.down_grace).saturating_sub(self.grace_clock.at(now)),
            ),
            _ => None,
        }
    }

    /// When the change waiting for the settle window is planned, at the
    /// latest.
    pub fn settle_ends(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Settling { first, last, .. } => {
                Some((*last + self.timing.settle).min(*first + self.timing.settle_max))
            }
            _ => None,
        }
    }

    /// Stamps the plan's wall-clock times if it changed since `clock` last
    /// looked (the core reads no clock; the runtime calls this before each
    /// save, so the stamps are saved with the change they date).
    pub fn stamp_plan(&mut self, clock: &mut crate::plan_times::PlanClock, now_ms: u64) {
        if clock.stamp(&mut self.working, now_ms) {
            // Part of the change being saved, not a change of its own.
            self.version += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod as member, pods};

    fn set(members: &[(&str, bool)]) -> MemberSet {
        members
            .iter()
            .map(|&(id, ready)| member(id, ready))
            .collect()
    }

    /// A coordinator whose source is synced from `t0`.
    fn coordinator_at(mode: Mode, t0: Instant) -> Coordinator {
        let settings = RingSettings {
            mode,
            ..RingSettings::default()
        };
        let mut c = Coordinator::new(State::fresh(settings).unwrap(), settings, Timing::default());
        c.source_synced(true, t0);
        c
    }

    const SETTLE: Duration = Duration::from_secs(5);

    /// `plan_id` streams what it hashes; the id is the one of hashing the
    /// whole sequence at once; another ring or revision is another id.
    /// 40 × 256 tokens cross the chunk's size.
    #[test]
    fn plan_id_is_the_hash_of_the_whole_sequence() {
        use ringleader_ring::{RingConfig, Strategy};
        let specs: Vec<MemberSpec> = (0..40)
            .map(|i| MemberSpec::new(format!("member-{i:03}")))
            .collect();
        let ring = Ring::new(RingConfig::new(Strategy::Balanced, 256))
            .unwrap()
            .rebalance_to(&specs)
            .unwrap();
        let mut bytes = 7u64.to_le_bytes().to_vec();
        for m in ring.members() {
            bytes.extend_from_slice(m.id.as_str().as_bytes());
            bytes.push(0xff);
        }
        for (&token, &owner) in ring.tokens().iter().zip(ring.owner_indices()) {
            bytes.extend_from_slice(&token.to_le_bytes());
            bytes.extend_from_slice(&owner.to_le_bytes());
        }
        assert!(ring.tokens().len() > 4096, "{} tokens", ring.tokens().len());
        let whole = format!("e3-{:012x}", xxhash_rust::xxh3::xxh3_64(&bytes) >> 16);
        assert_eq!(plan_id(3, 7, &ring), whole);
        let joined = ring.join(MemberSpec::new("member-040")).unwrap();
        assert_ne!(plan_id(3, 7, &joined), plan_id(3, 7, &ring));
        assert_ne!(plan_id(3, 8, &ring), plan_id(3, 7, &ring));
    }

    /// The store took whatever changed.
    fn store(c: &mut Coordinator) {
        if let Some(save) = c.to_save() {
            c.saved(save);
        }
    }

    #[test]
    fn first_members_commit_after_settle_without_moves() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        assert_eq!(c.state().epoch, 0, "waits for the settle window");
        assert_eq!(c.next_deadline(t0), Some(t0 + SETTLE));
        c.tick(t0 + SETTLE);
        assert_eq!(c.state().epoch, 1);
        assert!(c.state().plan.is_none());
        assert_eq!(c.state().committed.len(), 3);
    }

    #[test]
    fn scale_up_is_one_plan_and_commits_with_the_last_ack() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
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
            c.move_done("0123456789abcdef"),
            Err(CoordinatorError::NoPlan)
        ));
    }

    /// `pods(n)` with these weights (the others 1).
    fn weighted(n: usize, weights: &[(&str, Option<u32>)]) -> MemberSet {
        pods(n)
            .into_iter()
            .map(|mut m| {
                if let Some((_, w)) = weights.iter().find(|(id, _)| *id == m.id.as_str()) {
                    m.weight = *w;
                }
                m
            })
            .collect()
    }

    fn share_of(ring: &Ring, id: &str) -> f64 {
        ring.ownership()
            .iter()
            .find(|o| o.id.as_str() == id)
            .map_or(0.0, |o| o.fraction)
    }

    #[test]
    fn a_weight_change_plans_the_members_new_share_with_minimal_moves() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        store(&mut c);
        let before = share_of(&c.state().committed, "db-3");
        assert!((before - 0.25).abs() < 0.02, "db-3 owns {before}");
        // db-3 goes to weight 2: a target of 2/5 of the ring.
        let t1 = t0 + SETTLE * 2;
        c.observe(weighted(4, &[("db-3", Some(2))]), t1);
        assert!(c.state().plan.is_none(), "a weight change settles first");
        c.tick(t1 + SETTLE);
        let record = c.state().plan.clone().expect("a weight change is planned");
        assert_eq!(record.target.member("db-3").map(|m| m.weight), Some(2));
        let share = share_of(&record.target, "db-3");
        assert!(
            (share - 0.4).abs() < 0.02,
            "db-3's target share is {share}, not 2/5"
        );
        assert!(
            record.plan.moves.iter().all(|m| m.to.as_str() == "db-3"),
            "only db-3 receives"
        );
        let summary = &record.plan.summary;
        assert!(
            (summary.ideal_fraction - 0.15).abs() < 0.02,
            "ideal {}",
            summary.ideal_fraction
        );
        let ratio = summary.moved_fraction / summary.ideal_fraction;
        assert!(ratio <= 1.05, "moved/ideal {ratio}");
        for m in &record.plan.moves {
            c.move_done(m.id.as_str()).unwrap();
        }
        assert_eq!(c.state().epoch, 2);
        assert_eq!(
            c.state().committed.member("db-3").map(|m| m.weight),
            Some(2)
        );
        store(&mut c);
        // A source that cannot tell (no weight) keeps the ring's: nothing planned.
        let t2 = t1 + SETTLE * 3;
        c.observe(weighted(4, &[("db-3", None), ("db-0", None)]), t2);
        c.tick(t2 + SETTLE * 2);
        assert!(c.state().plan.is_none());
        assert_eq!(c.state().epoch, 2);
        // Back to weight 1: db-3 hands its extra share back, to the others only.
        let t3 = t2 + SETTLE * 3;
        c.observe(pods(4), t3);
        c.tick(t3 + SETTLE);
        let record = c.state().plan.clone().expect("a plan back to weight 1");
        assert!(record.plan.moves.iter().all(|m| m.from.as_str() == "db-3"));
        let share = share_of(&record.target, "db-3");
        assert!(
            (share - 0.25).abs() < 0.02,
            "db-3's target share is {share}"
        );
    }

    #[test]
    fn a_weight_put_back_within_the_settle_window_plans_nothing() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        let t1 = t0 + SETTLE * 2;
        c.observe(weighted(4, &[("db-1", Some(3))]), t1);
        c.observe(pods(4), t1 + SETTLE / 2);
        c.tick(t1 + SETTLE * 3);
        assert!(c.state().plan.is_none());
        assert_eq!(c.state().epoch, 1);
    }

    /// A coordinator in ack mode at `pace`, its source synced from `t0`.
    fn paced_at(pace: Pace, t0: Instant) -> Coordinator {
        let settings = RingSettings {
            pace,
            ..RingSettings::default()
        };
        let mut c = Coordinator::new(State::fresh(settings).unwrap(), settings, Timing::default());
        c.source_synced(true, t0);
        c
    }

    /// A paced coordinator with `from` pods committed and a plan made for
    /// `to` (settled at `t0 + 2 × SETTLE`, not yet stored).
    fn scaled_at(pace: Pace, from: usize, to: usize, t0: Instant) -> Coordinator {
        let mut c = paced_at(pace, t0);
        c.observe(pods(from), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(to), t0 + SETTLE);
        c.tick(t0 + SETTLE * 2);
        c
    }

    fn ready(c: &Coordinator) -> Vec<String> {
        c.state()
            .plan
            .iter()
            .flat_map(|p| &p.plan.moves)
            .filter(|m| m.state == MoveState::Ready)
            .map(|m| m.id.to_string())
            .collect()
    }

    #[test]
    fn an_ack_makes_the_next_move_ready_in_the_same_saved_state() {
        let t0 = Instant::now();
        let mut c = scaled_at(Pace::new(Some(1), None), 3, 4, t0);
        store(&mut c);
        let record = c.state().plan.clone().expect("a plan");
        let moves = record.plan.moves.len();
        assert!(moves > 1, "db-3 receives several moves");
        // db-3 receives every move: one at a time.
        assert_eq!(ready(&c).len(), 1);
        assert_eq!(record.plan.summary.waves, Some(moves));
        for left in (0..moves).rev() {
            let running = ready(&c);
            assert_eq!(running.len(), 1, "one move at a time");
            let report = c.move_done(&running[0]).unwrap();
            let save = c.to_save().expect("the ack is a change to save");
            if left > 0 {
                let next: Vec<_> = save
                    .state
                    .plan
                    .iter()
                    .flat_map(|p| &p.plan.moves)
                    .filter(|m| m.state == MoveState::Ready)
                    .collect();
                assert_eq!(next.len(), 1, "the next move is ready in the saved state");
                assert_ne!(next[0].id.as_str(), running[0]);
            } else {
                assert!(report.committed);
            }
            c.saved(save);
            if report.committed {
                break;
            }
        }
        assert_eq!(c.state().epoch, 2);
    }

    #[test]
    fn a_pending_move_reported_done_is_accepted() {
        let t0 = Instant::now();
        let mut c = scaled_at(Pace::new(Some(1), None), 3, 4, t0);
        let waiting = c
            .state()
            .plan
            .iter()
            .flat_map(|p| &p.plan.moves)
            .find(|m| m.state == MoveState::Pending)
            .expect("a move waits its turn")
            .id
            .to_string();
        let running = ready(&c);
        let report = c.move_done(&waiting).unwrap();
        assert_eq!(report.done.state, MoveState::Done);
        assert_eq!(ready(&c), running, "the running move keeps its slot");
    }

    #[test]
    fn auto_mode_paces_nothing() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Auto, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(4), t0 + SETTLE);
        c.tick(t0 + SETTLE * 2);
        let record = c.state().plan.clone().expect("the committed plan, kept");
        assert_eq!(record.state, PlanState::Committed);
        assert!(
            record
                .plan
                .moves
                .iter()
                .all(|m| m.state == MoveState::Pending)
        );
        assert_eq!(record.plan.summary.waves, None);
    }

    /// A plan stored before the pace existed has every move pending: a
    /// coordinator that loads it paces it, and stores that before showing
    /// it.
    #[test]
    fn a_plan_stored_without_pace_is_paced_on_load_and_saved_before_shown() {
        let t0 = Instant::now();
        let mut c = scaled_at(Pace::UNLIMITED, 3, 4, t0);
        store(&mut c);
        let mut old = c.state().clone();
        for m in &mut old.plan.as_mut().expect("a plan").plan.moves {
            m.state = MoveState::Pending;
        }
        let settings = RingSettings {
            pace: Pace::new(Some(1), None),
            ..RingSettings::default()
        };
        let mut c = Coordinator::new(old.clone(), settings, Timing::default());
        assert_eq!(ready(&c).len(), 1);
        assert!(
            c.shown()
                .plan
                .iter()
                .flat_map(|p| &p.plan.moves)
                .all(|m| m.state == MoveState::Pending)
        );
        let save = c.to_save().expect("the paced plan is saved");
        assert!(
            save.state.revision > old.revision,
            "a new revision: announced"
        );
        c.saved(save);
        assert_eq!(
            c.shown().plan.as_ref().map(|p| p.settings.pace),
            Some(settings.pace)
        );
    }

    /// Regression (issue 12): re-acking the last move after the plan
    /// committed answered 409 "no plan is in progress".
    #[test]
    fn an_ack_repeated_after_the_commit_answers_as_the_first() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(4), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(15));
        let ids: Vec<String> = c
            .state()
            .plan
            .as_ref()
            .unwrap()
            .plan
            .moves
            .iter()
            .map(|m| m.id.to_string())
            .collect();
        let mut last = None;
        for id in &ids {
            last = Some(c.move_done(id).unwrap());
        }
        let last = last.unwrap();
        assert!(last.committed);
        store(&mut c);
        let version = c.version();
        let again = c.move_done(ids.last().unwrap()).unwrap();
        assert_eq!(
            (again.done.clone(), again.remaining, again.committed),
            (last.done, 0, true)
        );
        assert!(c.move_done(&ids[0]).unwrap().committed);
        assert!(!c.has_unsaved(), "a repeated ack changes nothing");
        assert_eq!(c.version(), version);
        assert_eq!(c.state().epoch, 2);
        assert!(matches!(
            c.move_done("0123456789abcdef"),
            Err(CoordinatorError::NoPlan)
        ));

        // The next plan in flight: its unknown ids stay unknown (404), the
        // last committed plan's moves still answer.
        c.observe(pods(5), t0 + Duration::from_secs(20));
        c.tick(t0 + Duration::from_secs(25));
        assert!(c.state().in_flight().is_some());
        assert!(matches!(
            c.move_done("0123456789abcdef"),
            Err(CoordinatorError::Plan(PlanError::UnknownMove(_)))
        ));
        assert!(c.move_done(ids.last().unwrap()).unwrap().committed);
    }

    #[test]
    fn pod_restart_within_grace_moves_nothing() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        let before = c.state().clone();
        c.observe(
            set(&[("db-0", true), ("db-1", false), ("db-2", true)]),
            t0 + Duration::from_secs(10),
        );
        store(&mut c);
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
        let mut c = coordinator_at(Mode::Auto, t0);
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
    fn a_change_mid_plan_replans_from_the_holdings_and_keeps_every_move_listed() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
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
        // The revision moves about the least the holdings allow (here the
        // edit of the in-flight target would move 15 % more: its pending
        // moves are replaced); what it lists again keeps its id.
        let (moved, ideal) = moved_and_ideal(&c);
        assert!(moved <= 1.10 * ideal, "moved {moved:e}, ideal {ideal:e}");
        for m in &first.plan.moves {
            let n = second
                .plan
                .get(m.id.as_str())
                .expect("every move stays listed");
            assert_eq!((&n.range, &n.from, &n.to), (&m.range, &m.from, &m.to));
        }
    }

    /// Open moves of the in-flight plan against the least any plan must
    /// move from its holdings to its target, in tokens.
    fn moved_and_ideal(c: &Coordinator) -> (f64, f64) {
        let record = c.state().in_flight().expect("a plan in flight");
        let to = Placement::new(record.target.clone(), record.settings.replication()).unwrap();
        let held = holdings_with(&c.committed(), &record.plan);
        let rf = to.effective_replication().factor as f64;
        let ideal =
            ringleader_planner::ideal_from(&held, &to) * ringleader_ring::TOKEN_SPACE as f64 * rf;
        (remaining(&record.plan) as f64, ideal)
    }

    /// A member leaving mid-plan, most moves done: the revision moves about
    /// the least the holdings (committed + done) allow, at every rf.
    #[test]
    fn a_member_leaving_mid_plan_moves_about_the_least_the_holdings_allow() {
        for rf in 1..=3 {
            let t0 = Instant::now();
            let settings = RingSettings {
                mode: Mode::Ack,
                rf,
                ..RingSettings::default()
            };
            let mut c =
                Coordinator::new(State::fresh(settings).unwrap(), settings, Timing::default());
            c.source_synced(true, t0);
            c.observe(pods(4), t0);
            c.tick(t0 + SETTLE);
            c.observe(pods(5), t0 + Duration::from_secs(10));
            c.tick(t0 + Duration::from_secs(15));
            let first = c.state().plan.clone().expect("a plan to five");
            // Every move but one done: the data is mostly where the plan
            // wants it.
            for m in &first.plan.moves[1..] {
                c.move_done(m.id.as_str()).unwrap();
            }
            // db-2 goes away for good.
            c.observe(
                set(&[
                    ("db-0", true),
                    ("db-1", true),
                    ("db-3", true),
                    ("db-4", true),
                ]),
                t0 + Duration::from_secs(20),
            );
            c.tick(t0 + Duration::from_secs(80));
            c.tick(t0 + Duration::from_secs(85));
            let record = c.state().in_flight().expect("a revision");
            assert!(record.target.member("db-2").is_none(), "rf {rf}");
            let (moved, ideal) = moved_and_ideal(&c);
            assert!(
                moved <= 1.10 * ideal + 1e-6 * ringleader_ring::TOKEN_SPACE as f64,
                "rf {rf}: the revision moves {:.4} of the token space, the least from the holdings is {:.4}",
                moved / ringleader_ring::TOKEN_SPACE as f64,
                ideal / ringleader_ring::TOKEN_SPACE as f64
            );
        }
    }

    #[test]
    fn not_ready_pods_do_not_join() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(set(&[("db-0", true), ("db-1", false)]), t0);
        c.tick(t0 + SETTLE);
        assert_eq!(c.state().committed.len(), 1);
    }

    fn moves(c: &Coordinator) -> Vec<(String, String, String, MoveState)> {
        c.state()
            .plan
            .iter()
            .flat_map(|p| &p.plan.moves)
            .map(|m| {
                (
                    m.id.to_string(),
                    m.from.to_string(),
                    m.to.to_string(),
                    m.state,
                )
            })
            .collect()
    }

    /// Regression (issue 10, item 1): scaling 3 → 5 and back to 3 mid-plan
    /// made a new plan from the in-flight target that moved 12.5 % of the
    /// data among the three pods that never changed.
    #[test]
    fn a_revert_to_the_committed_members_mid_plan_cancels_the_plan_and_moves_nothing() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        let committed = c.state().committed.clone();
        c.observe(pods(5), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(15));
        let first = c.state().plan.clone().expect("a plan to five");
        let done = first.plan.moves[0].id.to_string();
        c.move_done(&done).unwrap();
        // db-3 and db-4 go away again; past their grace and the settle:
        c.observe(pods(3), t0 + Duration::from_secs(20));
        c.tick(t0 + Duration::from_secs(80));
        c.tick(t0 + Duration::from_secs(85));
        let state = c.state();
        assert_eq!(state.epoch, 1, "no new epoch");
        assert_eq!(
            state.committed, committed,
            "the committed ring is untouched"
        );
        let plan = state
            .plan
            .as_ref()
            .expect("the cancelled plan stays listed");
        assert_eq!(plan.state, PlanState::Cancelled);
        assert!(
            plan.plan.moves.iter().all(|m| !m.state.is_open()),
            "nothing moves"
        );
        assert_eq!(
            plan.plan.moves.len(),
            first.plan.moves.len(),
            "every move still listed"
        );
        assert_eq!(plan.plan.get(&done).unwrap().state, MoveState::Done);
        assert!(
            plan.plan
                .cleanups
                .iter()
                .all(|c| c.member.as_str() == first.plan.moves[0].to.as_str()),
            "only what the done move copied is cleaned up"
        );
    }

    /// Regression (issue 10 (a)): move ids were derived from range, source
    /// and target alone, so the plan made again after a cancel (the same
    /// change from the same committed ring) reused the cancelled plan's ids,
    /// and a shard's late report of a cancelled move — whose copy the
    /// cancel's cleanups had dropped — marked the new plan's move done.
    #[test]
    fn a_late_ack_of_a_cancelled_plans_move_marks_nothing_done_in_the_next_plan() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(4), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(15));
        store(&mut c);
        let first = c.state().plan.clone().expect("a plan to four");
        let late = first.plan.moves[0].clone();
        // db-3 goes away past its grace: the plan is cancelled (stored).
        c.observe(pods(3), t0 + Duration::from_secs(20));
        c.tick(t0 + Duration::from_secs(80));
        c.tick(t0 + Duration::from_secs(85));
        assert_eq!(
            c.state().plan.as_ref().map(|p| p.state),
            Some(PlanState::Cancelled)
        );
        store(&mut c);
        // It comes back: the same change from the same ring moves the same
        // ranges between the same members, in a new lineage.
        c.observe(pods(4), t0 + Duration::from_secs(90));
        c.tick(t0 + Duration::from_secs(95));
        store(&mut c);
        let second = c.state().in_flight().cloned().expect("the plan made again");
        let again = second
            .plan
            .moves
            .iter()
            .find(|m| (m.range, &m.from, &m.to) == (late.range, &late.from, &late.to))
            .expect("the same move is needed again");
        assert_ne!(again.id, late.id, "another plan: another id");
        assert_eq!(again.id.lineage(), Some(late.id.lineage().unwrap().next()));
        let version = c.version();
        match c.move_done(late.id.as_str()) {
            Err(e @ CoordinatorError::EarlierPlan { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("cancelled") && message.contains("/work"),
                    "{message}"
                );
            }
            other => panic!("a late ack of the cancelled move answered {other:?}"),
        }
        assert!(
            c.state()
                .plan
                .iter()
                .flat_map(|p| &p.plan.moves)
                .all(|m| m.state != MoveState::Done),
            "nothing is done"
        );
        assert!(
            !c.has_unsaved() && c.version() == version,
            "nothing changed"
        );
        // The new plan's own id is accepted.
        c.move_done(again.id.as_str()).unwrap();
    }

    /// Regression (issue 10, item 2): a source not ready for a second
    /// mid-plan (within the grace) had its moves re-sourced and merged, so
    /// their ids changed and a shard acking the ids it was given got 404.
    #[test]
    fn a_source_down_within_the_grace_changes_no_move() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        c.observe(pods(6), t0 + Duration::from_secs(10));
        c.tick(t0 + Duration::from_secs(15));
        let before = moves(&c);
        let source = before[0].1.clone();
        let mut blip: Vec<(String, bool)> = (0..6).map(|i| (format!("db-{i}"), true)).collect();
        for (id, ready) in &mut blip {
            *ready = *id != source;
        }
        let blip: Vec<(&str, bool)> = blip.iter().map(|(id, r)| (id.as_str(), *r)).collect();
        c.observe(set(&blip), t0 + Duration::from_secs(20));
        c.tick(t0 + Duration::from_secs(21));
        assert_eq!(moves(&c), before, "down within the grace: its moves wait");
        c.observe(pods(6), t0 + Duration::from_secs(22));
        c.tick(t0 + Duration::from_secs(200));
        assert_eq!(moves(&c), before, "back within the grace: nothing changed");
        for (id, ..) in &before {
            c.move_done(id).expect("every id given out is still valid");
        }
        assert_eq!(c.state().epoch, 2);
    }

    /// DESIGN §4: a source never changes while it is down within its
    /// grace, and its moves wait — they are not made ready (a shard would
    /// retry against a dead source) and hold no slot, so the other moves
    /// run; once it is back, its moves get their turn.
    #[test]
    fn moves_of_a_member_down_within_the_grace_wait_and_run_once_it_is_back() {
        let t0 = Instant::now();
        let mut c = scaled_at(Pace::new(Some(1), None), 3, 6, t0);
        store(&mut c);
        assert_eq!(c.state().epoch, 1);
        let all = moves(&c);
        let first = ready(&c);
        let (_, down, ..) = all
            .iter()
            .find(|(id, ..)| *id == first[0])
            .cloned()
            .expect("a ready move");
        let of_down = |m: &(String, String, String, MoveState)| m.1 == down || m.2 == down;
        assert!(
            all.iter().filter(|m| of_down(m)).count() > 1,
            "{down} has moves waiting: {all:?}"
        );
        // Down within its grace.
        let t1 = t0 + SETTLE * 3;
        let blip: Vec<String> = (0..6).map(|i| format!("db-{i}")).collect();
        let blip: Vec<(&str, bool)> = blip.iter().map(|id| (id.as_str(), *id != down)).collect();
        c.observe(set(&blip), t1);
        assert_eq!(c.unavailable(), BTreeSet::from([MemberId::new(&down)]));
        // Its ready move stays ready (its target may be mid-stream) and is
        // acked; the others of its moves wait while everyone else's run.
        c.move_done(&first[0]).unwrap();
        let mut acked = 0;
        while let Some(id) = ready(&c).first().cloned() {
            let m = moves(&c).into_iter().find(|m| m.0 == id).unwrap();
            assert!(
                !of_down(&m),
                "{id} ({} → {}) made ready while {down} is down",
                m.1,
                m.2
            );
            c.move_done(&id).unwrap();
            acked += 1;
        }
        store(&mut c);
        assert!(acked > 0, "the other members' moves ran");
        for m in moves(&c) {
            let expected = if m.0 == first[0] {
                MoveState::Done
            } else if of_down(&m) {
                MoveState::Pending
            } else {
                MoveState::Done
            };
            assert_eq!(m.3, expected, "{m:?}");
        }
        assert_eq!(c.state().epoch, 1, "not committed while moves wait");
        // Back up within its grace: its moves get their turn at once, as a
        // stored change.
        c.observe(pods(6), t1 + Duration::from_secs(10));
        assert!(c.unavailable().is_empty());
        assert_eq!(ready(&c).len(), 1, "one at a time at limit 1");
        assert!(c.to_save().is_some(), "the pace after the return is stored");
        while let Some(id) = ready(&c).first().cloned() {
            c.move_done(&id).unwrap();
        }
        assert_eq!(c.state().epoch, 2, "every move ran, the plan committed");
        // Nothing moved anywhere else: the ids are the plan's from the start.
        let committed: BTreeSet<String> = c
            .state()
            .last_committed
            .iter()
            .map(|m| m.id.to_string())
            .collect();
        let planned: BTreeSet<String> = all.into_iter().map(|m| m.0).collect();
        assert_eq!(committed, planned);
    }

    /// Regression (issue 10, item 9): the down-grace ran while the source
    /// was failing, so an API-server outage longer than the grace planned
    /// out a pod that was only restarting.
    #[test]
    fn the_grace_counts_only_while_the_source_is_synced() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        let s = |n: u64| t0 + Duration::from_secs(n);
        // db-3 restarts; 5 s later the source loses the API server.
        c.observe(
            set(&[
                ("db-0", true),
                ("db-1", true),
                ("db-2", true),
                ("db-3", false),
            ]),
            s(10),
        );
        c.source_synced(false, s(15));
        assert_eq!(
            c.next_deadline(s(15)),
            None,
            "no grace runs out while the source is failing"
        );
        c.tick(s(500));
        assert!(c.state().plan.is_none(), "an outage removes nobody");
        assert_eq!(c.phase(), &Phase::Steady);
        // Back: the 5 s counted before the outage stand; 55 s to go.
        c.source_synced(true, s(500));
        assert_eq!(c.next_deadline(s(500)), Some(s(555)));
        c.observe(pods(4), s(510));
        c.tick(s(1000));
        assert!(c.state().plan.is_none(), "it came back within the grace");
        assert_eq!(c.state().committed.len(), 4);
    }

    /// Everything logged while `f` runs.
    fn logs(f: impl FnOnce()) -> String {
        let capture = crate::test_logs::LogCapture::start();
        f();
        capture.text()
    }

    #[test]
    fn each_lifecycle_transition_has_its_own_message() {
        let down = Some(Lifecycle::Down {
            since: Duration::ZERO,
        });
        let (up, gone, joining) = (
            Some(Lifecycle::Up),
            Some(Lifecycle::Gone),
            Some(Lifecycle::Joining),
        );
        assert_eq!(transition(up, down), Some(Transition::Down));
        assert_eq!(transition(down, down), None);
        assert_eq!(transition(down, up), Some(Transition::BackUp));
        assert_eq!(transition(down, gone), Some(Transition::Gone));
        assert_eq!(transition(gone, gone), None);
        assert_eq!(transition(gone, None), Some(Transition::Left));
        assert_eq!(transition(down, None), Some(Transition::Left));
        assert_eq!(transition(up, None), Some(Transition::Left));
        assert_eq!(transition(None, joining), Some(Transition::Ready));
        assert_eq!(transition(joining, up), Some(Transition::Joined));
        assert_eq!(transition(joining, None), Some(Transition::NoLongerReady));
        assert_eq!(transition(gone, up), Some(Transition::BackAfterGrace));
        assert_eq!(transition(up, up), None);
    }

    /// Regression: "member back up" was logged for a member that left the
    /// ring, and a plan with `source_lost` moves was a plain INFO "plan made".
    #[test]
    fn a_member_removed_logs_that_it_left_and_lost_moves_warn() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Auto, t0);
        c.observe(pods(4), t0);
        c.tick(t0 + SETTLE);
        let text = logs(|| {
            c.observe(pods(3), t0 + Duration::from_secs(10));
            c.tick(t0 + Duration::from_secs(70));
            c.tick(t0 + Duration::from_secs(75));
        });
        assert_eq!(c.state().committed.len(), 3, "{text}");
        assert!(!text.contains("member back up"), "{text}");
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
                .to_owned()
        };
        assert!(line("member down;").contains("db-3"));
        assert!(line("member down past its grace").contains("db-3"));
        let left = line("member left the ring");
        assert!(left.contains("INFO") && left.contains("db-3"), "{left}");
        let plan = line("plan made");
        assert!(plan.contains("WARN"), "{plan}");
        let n = c.state().plan.as_ref().unwrap().plan.moves.len();
        assert!(
            plan.contains(&format!("source_lost={n}")) && plan.contains("lost_from=db-3"),
            "{plan}"
        );
    }

    #[test]
    fn a_plan_without_lost_moves_logs_at_info() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Ack, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + SETTLE);
        let text = logs(|| {
            c.observe(pods(4), t0 + Duration::from_secs(10));
            c.tick(t0 + Duration::from_secs(15));
        });
        let plan = text.lines().find(|l| l.contains("plan made")).unwrap();
        assert!(plan.contains("INFO"), "{plan}");
        assert!(!text.contains("WARN"), "{text}");
    }

    /// Regression: with `publishNotReadyAddresses` the controller forces
    /// `ready` true; eligibility read `ready`, so not-serving pods joined.
    #[test]
    fn a_ready_but_not_serving_member_does_not_join_and_counts_as_down() {
        let t0 = Instant::now();
        let mut c = coordinator_at(Mode::Auto, t0);
        let mut members = pods(3);
        let mut unprobed = member("db-3", true);
        unprobed.serving = false;
        members.insert(unprobed);
        c.observe(members, t0);
        c.tick(t0 + SETTLE);
        assert_eq!(c.state().committed.len(), 3, "db-3 is not serving");
        assert!(c.state().committed.member("db-3").is_none());

        let mut flapping = pods(3);
        let mut db1 = member("db-1", true);
        db1.serving = false;
        flapping.insert(db1);
        c.observe(flapping, t0 + Duration::from_secs(10));
        assert!(matches!(
            c.lifecycles().get(&MemberId::new("db-1")),
            Some(Lifecycle::Down { .. })
        ));

        let mut terminating = pods(3);
        let mut db2 = member("db-2", true);
        db2.terminating = true;
        terminating.insert(db2);
        c.observe(terminating, t0 + Duration::from_secs(20));
        assert!(matches!(
            c.lifecycles().get(&MemberId::new("db-2")),
            Some(Lifecycle::Down { .. })
        ));
    }
}
