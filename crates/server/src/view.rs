//! The read model: an immutable snapshot of the coordinator that the HTTP
//! API answers from.
//!
//! A view shows the coordinator's *stored* state ([`Coordinator::shown`]):
//! nothing is visible before the store holds it.
//!
//! The runtime builds a new [`View`] after every change and publishes it
//! through a `tokio::sync::watch` channel; handlers read the latest one
//! without ever waiting for the coordinator. Everything a request needs that
//! is costly to compute (ownership, the plan's JSON shape, ETags) is computed
//! once per view.

use crate::coordinator::{Coordinator, MemberStatus, Outside};
use crate::plan_times::{rfc3339, unix_ms};
use crate::settings::RingSettings;
use crate::state::{PlanRecord, PlanState};
use ringleader_client::api::{
    CleanupView, FlowView, MemberState, MemberView, MoveView, PlanView, ProgressView, RangeView,
    SettingsView, SourceState, SummaryView, TokenView,
};
use ringleader_planner::{Move, MoveState, Placement, Plan};
use ringleader_ring::{MemberId, Ownership, Replication, Ring, TokenRange, balance_of};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

/// How the membership source is doing, for readiness and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    /// Its state (`standby` on a follower).
    pub state: SourceState,
    /// The last error or re-sync reason.
    pub detail: Option<String>,
    /// Whether a member set has ever arrived.
    pub ever_synced: bool,
    /// A standing warning of the source that leaves it synced (a malformed
    /// weights annotation, a Role that may not read the Service).
    pub warning: Option<String>,
}

impl Default for SourceStatus {
    fn default() -> Self {
        Self {
            state: SourceState::Starting,
            detail: None,
            ever_synced: false,
            warning: None,
        }
    }
}

/// Ownership figures of one committed ring, computed once per epoch.
#[derive(Debug)]
pub struct RingFigures {
    /// Primary ownership per member (ring order).
    pub ownership: Vec<Ownership>,
    /// Load (what a member holds as any replica) and target per member, as
    /// fractions of all replicas (ring order): DESIGN §4's measures.
    pub replica_ownership: Vec<Ownership>,
    /// DESIGN §4's balance: the largest load / target.
    pub balance: f64,
    /// Tokens per member (ring order).
    pub token_counts: Vec<usize>,
}

/// Figures computed ahead for a ring about to be shown (while the store
/// writes it: the runtime's save), for [`View::build_with`] to take instead
/// of computing them on the way to showing it.
#[derive(Clone, Debug)]
pub struct FiguresAhead {
    /// The ring (the very one, [`Ring::is_same`]) they are of.
    pub ring: Ring,
    /// The replication they were computed for.
    pub replication: Replication,
    /// The figures.
    pub figures: Arc<RingFigures>,
}

impl FiguresAhead {
    /// The figures of `ring` under `replication`.
    pub fn of(ring: &Ring, replication: Replication) -> Self {
        Self {
            ring: ring.clone(),
            replication,
            figures: Arc::new(RingFigures::of(ring, replication)),
        }
    }

    /// Whether these are the figures of `ring` under `replication`.
    pub fn matches(&self, ring: &Ring, replication: Replication) -> bool {
        self.ring.is_same(ring) && self.replication == replication
    }
}

impl RingFigures {
    /// Computes the figures of a placement.
    pub fn of(ring: &Ring, replication: Replication) -> Self {
        let ownership = ring.ownership();
        let effective = Replication::new(
            replication.factor.min(ring.len()).max(1),
            replication.zone_aware,
        );
        let replica_ownership = if ring.is_empty() {
            Vec::new()
        } else {
            ring.replica_ownership(&effective)
                .unwrap_or_else(|_| ownership.clone())
        };
        let mut token_counts = vec![0; ring.len()];
        for &owner in ring.owner_indices() {
            if let Some(n) = token_counts.get_mut(owner as usize) {
                *n += 1;
            }
        }
        Self {
            balance: if replica_ownership.is_empty() {
                balance_of(&ownership)
            } else {
                balance_of(&replica_ownership)
            },
            ownership,
            replica_ownership,
            token_counts,
        }
    }
}

/// A snapshot of everything the API shows.
#[derive(Debug)]
pub struct View {
    /// Coordinator version this view was built from.
    pub version: u64,
    /// Committed epoch.
    pub epoch: u64,
    /// Plan revision within the epoch.
    pub revision: u64,
    /// Settings of the committed placement.
    pub settings: RingSettings,
    /// The committed ring.
    pub ring: Arc<Ring>,
    /// Figures of the committed ring.
    pub figures: Arc<RingFigures>,
    /// Members with states.
    pub members: Vec<MemberStatus>,
    /// The current plan (in flight, or last committed in auto mode).
    pub plan: Option<Arc<PlanRecord>>,
    /// The membership source.
    pub source: SourceStatus,
    /// Whether the state store was read.
    pub state_loaded: bool,
    /// Who leads, when leader election is on.
    pub leader: Option<String>,
    /// Whether this instance is a follower (leader election on, another
    /// instance leads): it serves the stored state and refuses writes.
    pub follower: bool,
    /// Why this instance is not ready to serve lookups, if it is not (the
    /// source has not synced, the last save failed, no ring committed yet).
    pub unready: Option<String>,
    /// Endpoints the source sees that the committed ring does not have.
    pub outside: Vec<Outside>,
    /// When the grace of each `down` member ends, on both clocks: the
    /// monotonic one for time left, the wall one to show.
    pub grace_ends: BTreeMap<MemberId, (Instant, SystemTime)>,
    /// When the change waiting for the settle window is planned.
    pub settle_ends: Option<Instant>,
    /// The plan as JSON shape, built on first use.
    plan_view: OnceLock<Option<PlanView>>,
    /// Every token as JSON shape, built on first use.
    token_views: OnceLock<Vec<TokenView>>,
}

impl View {
    /// The view of a coordinator. `figures` are reused when the epoch has
    /// not changed (they only depend on the committed ring).
    pub fn build(
        coordinator: &Coordinator,
        previous: Option<&View>,
        source: SourceStatus,
        state_loaded: bool,
        leader: Option<String>,
    ) -> Self {
        Self::build_with(coordinator, previous, source, state_loaded, leader, None)
    }

    /// [`View::build`], taking the committed ring's figures from `ahead`
    /// where they are of that ring.
    pub fn build_with(
        coordinator: &Coordinator,
        previous: Option<&View>,
        source: SourceStatus,
        state_loaded: bool,
        leader: Option<String>,
        ahead: Option<&FiguresAhead>,
    ) -> Self {
        let state = &**coordinator.shown();
        let replication = state.settings.replication();
        let (ring, figures) = match previous {
            Some(p)
                if p.epoch == state.epoch
                    && p.settings == state.settings
                    && p.state_loaded == state_loaded =>
            {
                (p.ring.clone(), p.figures.clone())
            }
            _ => (
                Arc::new(state.committed.clone()),
                match ahead.filter(|a| a.matches(&state.committed, replication)) {
                    Some(ahead) => ahead.figures.clone(),
                    None => Arc::new(RingFigures::of(&state.committed, replication)),
                },
            ),
        };
        let plan = match previous {
            Some(p)
                if p.epoch == state.epoch
                    && p.revision == state.revision
                    && p.plan.as_deref() == state.plan.as_ref() =>
            {
                p.plan.clone()
            }
            _ => state.plan.clone().map(Arc::new),
        };
        // The read model shows deadlines on the wall clock too; the
        // coordinator itself reads no clock.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let members = coordinator.members();
        let grace_ends = members
            .iter()
            .filter_map(|m| {
                let ends = coordinator.grace_ends(&m.id, now)?;
                Some((
                    m.id.clone(),
                    (ends, wall + ends.saturating_duration_since(now)),
                ))
            })
            .collect();
        Self {
            outside: coordinator.outside_ring(),
            grace_ends,
            settle_ends: coordinator.settle_ends(),
            version: coordinator.version(),
            epoch: state.epoch,
            revision: state.revision,
            settings: state.settings,
            ring,
            figures,
            members,
            plan,
            source,
            state_loaded,
            leader,
            follower: false,
            unready: coordinator.readiness().err(),
            plan_view: OnceLock::new(),
            token_views: OnceLock::new(),
        }
    }

    /// The plan if one is in progress.
    pub fn plan_in_progress(&self) -> Option<&PlanRecord> {
        self.plan
            .as_deref()
            .filter(|p| p.state == PlanState::InProgress)
    }

    /// Whether `/readyz` says ready: the state is loaded and, on the leader
    /// (or alone), lookups answer and the last save succeeded; `Err` says
    /// why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.state_loaded {
            return Err(if self.follower {
                "following: the stored state has not been read yet".into()
            } else {
                "state not loaded".into()
            });
        }
        if self.follower {
            // A follower serves reads from the stored state: ready once read.
            return Ok(());
        }
        match &self.unready {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// The ring the next plan (or a preview) starts from.
    pub fn target_ring(&self) -> &Ring {
        self.plan_in_progress().map_or(&self.ring, |p| &p.target)
    }

    /// The committed placement.
    pub fn placement(&self) -> Placement {
        Placement::new((*self.ring).clone(), self.settings.replication())
            .expect("validated settings")
    }

    /// Settings as shown.
    pub fn settings_view(&self) -> SettingsView {
        settings_view(&self.settings)
    }

    /// Members with ownership, as `GET /v1/ring` lists them.
    pub fn member_views(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|m| {
                let index = self.ring.member_index(m.id.as_str());
                let share = |list: &[Ownership]| {
                    index.and_then(|i| list.get(i)).map_or(0.0, |o| o.fraction)
                };
                let grace_ends_at = self
                    .grace_ends
                    .get(&m.id)
                    .map(|&(_, wall)| rfc3339(unix_ms(wall)));
                MemberView {
                    id: m.id.to_string(),
                    state: m.state,
                    zone: m.zone.clone(),
                    addresses: m.addresses.clone(),
                    weight: m.weight,
                    ownership: share(&self.figures.ownership),
                    replica_ownership: share(&self.figures.replica_ownership),
                    tokens: index
                        .and_then(|i| self.figures.token_counts.get(i))
                        .copied()
                        .unwrap_or(0),
                    grace_ends_at,
                }
            })
            .collect()
    }

    /// The state of one member.
    pub fn member_state(&self, id: &str) -> Option<MemberState> {
        self.members
            .iter()
            .find(|m| m.id.as_str() == id)
            .map(|m| m.state)
    }

    /// Every token with its owner.
    pub fn token_views(&self) -> &[TokenView] {
        self.token_views.get_or_init(|| {
            self.ring
                .token_owners()
                .map(|(t, m)| TokenView {
                    token: t.to_string(),
                    member: m.to_string(),
                })
                .collect()
        })
    }

    /// The plan as `GET /v1/plan` shows it.
    pub fn plan_view(&self) -> Option<&PlanView> {
        self.plan_view
            .get_or_init(|| self.plan.as_deref().map(plan_view))
            .as_ref()
    }

    /// The id of the latest watch event: `epoch.revision`.
    pub fn event_id(&self) -> String {
        format!("{}.{}", self.epoch, self.revision)
    }
}

/// Settings as the API shows them.
pub fn settings_view(s: &RingSettings) -> SettingsView {
    SettingsView {
        rf: s.rf,
        strategy: s.strategy.to_string(),
        tokens_per_member: s.tokens_per_member,
        zone_aware: s.zone_aware,
        mode: s.mode.to_string(),
        max_moves_per_member: s.pace.max_moves_per_member.map(|n| n.get()),
        max_moves: s.pace.max_moves.map(|n| n.get()),
    }
}

/// A range as decimal strings.
pub fn range_view(r: &TokenRange) -> RangeView {
    RangeView {
        start: r.start.to_string(),
        end: r.end.to_string(),
    }
}

/// A move as shown.
pub fn move_view(m: &Move) -> MoveView {
    MoveView {
        id: m.id.to_string(),
        range: range_view(&m.range),
        from: m.from.to_string(),
        to: m.to.to_string(),
        state: m.state.to_string(),
    }
}

/// A plan's figures as shown.
pub fn summary_view(plan: &Plan) -> SummaryView {
    let s = &plan.summary;
    SummaryView {
        moved_fraction: s.moved_fraction,
        ideal_fraction: s.ideal_fraction,
        moves: s.moves,
        states: plan
            .counts()
            .into_iter()
            .map(|(state, n)| (state.to_string(), n))
            .collect::<BTreeMap<_, _>>(),
        members: s
            .members
            .iter()
            .map(|(id, f)| {
                (
                    id.to_string(),
                    FlowView {
                        inbound: f.inbound,
                        outbound: f.outbound,
                    },
                )
            })
            .collect(),
        waves: s.waves,
    }
}

/// How far a plan has come.
pub fn progress_view(plan: &Plan) -> ProgressView {
    let mut progress = ProgressView::default();
    for m in &plan.moves {
        match m.state {
            MoveState::Done => progress.done += 1,
            MoveState::Ready => progress.in_progress += 1,
            MoveState::Pending => progress.waiting += 1,
            MoveState::SourceLost => progress.source_lost += 1,
            MoveState::Cancelled => {}
        }
    }
    progress
}

/// A plan record as shown.
pub fn plan_view(p: &PlanRecord) -> PlanView {
    PlanView {
        id: p.id.clone(),
        from_epoch: p.from_epoch,
        to_epoch: p.to_epoch,
        state: p.state.as_str().to_owned(),
        moves: p.plan.moves.iter().map(move_view).collect(),
        summary: summary_view(&p.plan),
        cleanups: p
            .plan
            .cleanups
            .iter()
            .map(|c| CleanupView {
                member: c.member.to_string(),
                range: range_view(&c.range),
            })
            .collect(),
        members: p
            .target
            .members()
            .iter()
            .map(|m| m.id.to_string())
            .collect(),
        created_at: p.times.created_ms.map(rfc3339),
        changed_at: p.times.changed_ms.map(rfc3339),
        progress: progress_view(&p.plan),
    }
}
