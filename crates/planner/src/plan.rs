//! Plans: the moves that take data from where it is to where it must go.

use crate::holdings::Holdings;
use crate::{Placement, PlanError};
use ringleader_ring::{MemberId, TOKEN_SPACE, Token, TokenRange};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// A plan *lineage*: a plan as first made and every revision of it (a
/// replan while it is in flight keeps the lineage, and the moves still needed
/// keep their ids). A cancel (the members went back to the committed set) or
/// a commit ends the lineage: the next plan made takes the next number.
///
/// Move ids carry their lineage ([`MoveId::derive`]), so a move of a later
/// plan never takes the id of a move of an earlier one, even when it moves
/// the same range between the same members. Without that, a shard's late
/// report of the earlier move (cancelled, its copy dropped by the cancel's
/// cleanups) would mark the later one done, and the data would be lost.
///
/// `Lineage(0)` is *unnumbered*: plans stored by builds before lineages
/// existed, whose move ids carry none. It is also what previews and other
/// plans that nobody acks use.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lineage(pub u64);

impl Lineage {
    /// Plans from builds before lineages, and plans nobody reports on.
    pub const UNNUMBERED: Lineage = Lineage(0);

    /// The lineage of the plan made after this one's cancel or commit.
    pub fn next(self) -> Lineage {
        Lineage(self.0 + 1)
    }

    /// Whether this is [`Lineage::UNNUMBERED`].
    pub fn is_unnumbered(&self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A move's stable id: its plan's [`Lineage`] and a hash of its range,
/// source and target, so a restarted coordinator computes the same ids for
/// the same moves, and a later plan never reuses an earlier one's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MoveId(String);

impl MoveId {
    /// The id of moving `range` from `from` to `to` in a plan of `lineage`:
    /// `<lineage>-<16 hex digits>` (`7-a2e4147a6a9eb6d5`), or the 16 hex
    /// digits alone for [`Lineage::UNNUMBERED`] (the ids of earlier builds,
    /// unchanged).
    pub fn derive(lineage: Lineage, range: TokenRange, from: &MemberId, to: &MemberId) -> Self {
        let mut bytes = Vec::with_capacity(16 + from.as_str().len() + to.as_str().len() + 1);
        bytes.extend_from_slice(&range.start.to_le_bytes());
        bytes.extend_from_slice(&range.end.to_le_bytes());
        bytes.extend_from_slice(from.as_str().as_bytes());
        bytes.push(0xff); // never in UTF-8: separates the two ids unambiguously
        bytes.extend_from_slice(to.as_str().as_bytes());
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        if lineage.is_unnumbered() {
            MoveId(format!("{hash:016x}"))
        } else {
            MoveId(format!("{lineage}-{hash:016x}"))
        }
    }

    /// The lineage this id names, when it has the shape [`MoveId::derive`]
    /// gives: `Some(n)` for `<n>-<16 hex digits>` (n ≥ 1), `Some(0)` for 16
    /// hex digits alone, `None` for anything else (a hand-made id).
    pub fn lineage(&self) -> Option<Lineage> {
        let hex = |h: &str| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit());
        match self.0.split_once('-') {
            None => hex(&self.0).then_some(Lineage::UNNUMBERED),
            Some((n, h)) if hex(h) && !n.starts_with('0') => {
                n.parse().ok().filter(|&n| n > 0).map(Lineage)
            }
            Some(_) => None,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MoveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MoveId {
    fn from(s: &str) -> Self {
        MoveId(s.to_owned())
    }
}

/// Where a move stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    /// Waiting its turn: the pace ([`crate::Pace`]) lets it run once its
    /// members have free slots.
    Pending,
    /// Its turn has come: its target should stream it now. Counts as in
    /// progress for the pace until it is done (or cancelled).
    Ready,
    /// The target reported it has the range.
    Done,
    /// No longer needed: the membership changed again before it was done.
    Cancelled,
    /// Every member that held the range is gone or down: the data must come
    /// from a backup or be given up. Visible so an operator can act.
    SourceLost,
}

impl MoveState {
    /// Whether the move still has to happen (pending, ready or source
    /// lost).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            MoveState::Pending | MoveState::Ready | MoveState::SourceLost
        )
    }

    /// Whether the move has a source and waits for or runs its transfer
    /// (pending or ready).
    pub fn is_runnable(self) -> bool {
        matches!(self, MoveState::Pending | MoveState::Ready)
    }
}

impl fmt::Display for MoveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoveState::Pending => "pending",
            MoveState::Ready => "ready",
            MoveState::Done => "done",
            MoveState::Cancelled => "cancelled",
            MoveState::SourceLost => "source_lost",
        })
    }
}

/// One range to stream from one member to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Stable id.
    pub id: MoveId,
    /// The range `(start, end]`.
    pub range: TokenRange,
    /// A member holding the range now.
    pub from: MemberId,
    /// The member that must receive it.
    pub to: MemberId,
    /// Progress.
    pub state: MoveState,
}

/// A range a member may drop once the plan is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// The member that no longer needs the range.
    pub member: MemberId,
    /// The range.
    pub range: TokenRange,
}

/// Data flowing into and out of one member, as fractions of the token space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Received.
    pub inbound: f64,
    /// Sent.
    pub outbound: f64,
}

/// What a plan amounts to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of moves that are not cancelled.
    pub moves: usize,
    /// Data moved, as a fraction of all replicas (the token space times the
    /// replication factor).
    pub moved_fraction: f64,
    /// The least data any plan could move for this change (see
    /// [`ideal_fraction`]).
    pub ideal_fraction: f64,
    /// Per-member inbound and outbound fractions of the token space.
    pub members: BTreeMap<MemberId, Flow>,
    /// How many waves the moves take at the pace the plan runs with, if
    /// every move took the same time ([`crate::waves`]), as of when it was
    /// made or last replanned; `None` when it is not paced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<usize>,
}

/// A rebalance plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Moves in token order.
    pub moves: Vec<Move>,
    /// What each member may drop when every move is done.
    pub cleanups: Vec<Cleanup>,
    /// The figures.
    pub summary: Summary,
}

impl Plan {
    /// Whether every move is done or cancelled.
    pub fn is_complete(&self) -> bool {
        self.moves.iter().all(|m| !m.state.is_open())
    }

    /// The move with this id.
    pub fn get(&self, id: &str) -> Option<&Move> {
        self.moves.iter().find(|m| m.id.as_str() == id)
    }

    /// Marks a move done. Done again is fine (idempotent); so is a move
    /// still `pending` (its target did the work before its turn: the data
    /// is there, and refusing would only make it stream again). A cancelled
    /// move or an unknown id is an error.
    pub fn mark_done(&mut self, id: &str) -> Result<&Move, PlanError> {
        let m = self
            .moves
            .iter_mut()
            .find(|m| m.id.as_str() == id)
            .ok_or_else(|| PlanError::UnknownMove(id.to_owned()))?;
        match m.state {
            MoveState::Cancelled => Err(PlanError::MoveCancelled(id.to_owned())),
            _ => {
                m.state = MoveState::Done;
                Ok(m)
            }
        }
    }

    /// Count of moves in each state.
    pub fn counts(&self) -> BTreeMap<MoveState, usize> {
        let mut counts = BTreeMap::new();
        for m in &self.moves {
            *counts.entry(m.state).or_insert(0) += 1;
        }
        counts
    }
}

impl PartialOrd for MoveState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MoveState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// Knobs for planning.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Members that cannot stream data now (down, in grace): never chosen as
    /// a source when another holder exists; a range only they hold becomes a
    /// `source_lost` move.
    pub unavailable: BTreeSet<MemberId>,
    /// The lineage the plan belongs to: fresh moves' ids carry it
    /// ([`MoveId::derive`]). A revision ([`replan`]) is given the lineage of
    /// the plan it revises; moves it keeps keep their ids whatever this is.
    pub lineage: Lineage,
}

/// The plan that takes data placed as `from` to placement `to`.
pub fn plan(from: &Placement, to: &Placement, options: &PlanOptions) -> Result<Plan, PlanError> {
    if to.ring().is_empty() {
        return Err(PlanError::EmptyTarget);
    }
    let ctx = Context::new(from, to, options, &[], &[]);
    // Replica sets change only near the tokens that changed: when both
    // placements replicate alike, only those ranges are compared (the same
    // plan as comparing every range, in a fraction of the time at 256,000
    // tokens).
    if let Some(near) = crate::local::diff_near_changes(from, to, &ctx) {
        return Ok(finish(near.moves, near.cleanups, near.ideal, to));
    }
    Ok(plan_in_full(from, to, &ctx))
}

/// [`plan`] comparing the replica sets of every elementary range.
fn plan_in_full(from: &Placement, to: &Placement, ctx: &Context) -> Plan {
    let now = Holdings::of(from);
    let (moves, cleanups) = diff(&now, &Holdings::of(to), ctx);
    let ideal = ideal_from(&now, to);
    finish(moves, cleanups, ideal, to)
}

/// [`plan`] without the shortcut of [`crate::local`]: every range's replica
/// sets are computed and compared. The same plan, slower; for tests that
/// check the shortcut.
#[doc(hidden)]
pub fn plan_comparing_every_range(
    from: &Placement,
    to: &Placement,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    if to.ring().is_empty() {
        return Err(PlanError::EmptyTarget);
    }
    let ctx = Context::new(from, to, options, &[], &[]);
    Ok(plan_in_full(from, to, &ctx))
}

/// Plans again while `current` is in flight: from what is true now (the
/// *holdings*: `from`, the committed placement, plus the moves already done;
/// sources keep their data until the commit's cleanups) to `to`.
///
/// - A move still needed as it is — its target still lacks its whole range
///   and needs it, its source still holds it and has not left
///   (`options.unavailable`) — keeps its id, source and state (`ready` or
///   `pending`; a cancelled one needed again comes back `pending`). A source that
///   is only down (within its grace) is not unavailable: its moves wait.
/// - What else is missing gets fresh moves, with ids of `options.lineage`
///   (the lineage of the plan revised: a revision is the same plan).
/// - Open moves no longer needed come back `cancelled`; moves already
///   cancelled stay listed as cancelled, and done ones as done, so a shard
///   learns that a range it streams is no longer wanted.
pub fn replan(
    from: &Placement,
    current: &Plan,
    to: &Placement,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    if to.ring().is_empty() {
        return Err(PlanError::EmptyTarget);
    }
    let done: Vec<&Move> = current
        .moves
        .iter()
        .filter(|m| m.state == MoveState::Done)
        .collect();
    let now = holdings_with(from, current);
    let target = Holdings::of(to);
    let open: Vec<&Move> = current.moves.iter().filter(|m| m.state.is_open()).collect();
    let known: Vec<&Move> = current.moves.iter().collect();
    let ctx = Context::new(from, to, options, &known, &open);
    // Moves kept as they are (a cancelled one needed again exactly as it
    // was comes back under its id); two moves of one target never overlap
    // in a plan, but a hand-edited state might: the first one wins.
    let mut kept: Vec<&Move> = Vec::new();
    let candidates = open.iter().copied().chain(
        current
            .moves
            .iter()
            .filter(|m| m.state == MoveState::Cancelled),
    );
    for m in candidates {
        let needed = m.state != MoveState::SourceLost
            && !options.unavailable.contains(&m.from)
            && now.holds_all(&m.from, m.range)
            && now.holds_none(&m.to, m.range)
            && target.holds_all(&m.to, m.range);
        let overlaps = kept.iter().any(|k| {
            k.to == m.to
                && (k.range.contains(m.range.end)
                    || m.range.contains(k.range.end)
                    || k.range.is_full()
                    || m.range.is_full())
        });
        if needed && !overlaps {
            kept.push(m);
        }
    }
    let rest = now.overlay(kept.iter().map(|m| (m.range, &m.to)), []);
    let (fresh, cleanups) = diff(&rest, &target, &ctx);
    let mut listed: BTreeSet<MoveId> = BTreeSet::new();
    let mut moves: Vec<Move> = Vec::with_capacity(current.moves.len() + fresh.len());
    for m in done {
        if listed.insert(m.id.clone()) {
            moves.push(m.clone());
        }
    }
    for m in kept.iter().copied() {
        if listed.insert(m.id.clone()) {
            // A ready move may be streaming: it stays ready (the pace never
            // takes a turn back); anything else waits its turn again.
            let state = if m.state == MoveState::Ready {
                MoveState::Ready
            } else {
                MoveState::Pending
            };
            moves.push(Move { state, ..m.clone() });
        }
    }
    for m in fresh {
        if listed.insert(m.id.clone()) {
            moves.push(m);
        }
    }
    // Everything else the plan listed stays listed, cancelled.
    for m in &current.moves {
        if listed.insert(m.id.clone()) {
            moves.push(Move {
                state: MoveState::Cancelled,
                ..m.clone()
            });
        }
    }
    moves.sort_by(|a, b| (a.range.end, &a.to, &a.id).cmp(&(b.range.end, &b.to, &b.id)));
    let ideal = ideal_from(&now, to);
    Ok(finish(moves, cleanups, ideal, to))
}

/// The holdings while `plan` is in flight from `from`: the committed
/// placement plus the targets of the moves already done.
pub fn holdings_with(from: &Placement, plan: &Plan) -> Holdings {
    Holdings::of(from).overlay(
        plan.moves
            .iter()
            .filter(|m| m.state == MoveState::Done)
            .map(|m| (m.range, &m.to)),
        [],
    )
}

/// What holds data after `plan` is carried out on `from`: every move that
/// is not cancelled adds its target, every cleanup removes its member. Equal
/// (in canonical form) to `Holdings::of(to)` for a correct plan.
pub fn apply(from: &Placement, plan: &Plan) -> Holdings {
    Holdings::of(from).overlay(
        plan.moves
            .iter()
            .filter(|m| m.state != MoveState::Cancelled)
            .map(|m| (m.range, &m.to)),
        plan.cleanups.iter().map(|c| (c.range, &c.member)),
    )
}

/// The least data any plan must move to take data placed as `from` to
/// placement `to`, as a fraction of all replicas of `to` (DESIGN §4): the sum
/// over members of what they lack, `max(0, target − load now)`, with loads
/// and targets in replica units ([`Ring::replica_targets`]). A join of one
/// member into N equal ones gives 1/(N+1), a leave from N gives 1/N.
///
/// [`Ring::replica_targets`]: ringleader_ring::Ring::replica_targets
pub fn ideal_fraction(from: &Placement, to: &Placement) -> f64 {
    ideal_from(&Holdings::of(from), to)
}

/// [`ideal_fraction`] from what members hold now (`now`, e.g. a committed
/// placement plus the moves already done). Where holdings overlap (mid-plan:
/// a done move's source keeps its copy), a range counts for at most `rf` of
/// its holders, chosen to keep the most: the sum of what members lack alone
/// would be too low a bound (see the `ideal` module).
pub fn ideal_from(now: &Holdings, to: &Placement) -> f64 {
    crate::ideal::least_moved(now, to)
}

/// The plan with its summary; `ideal`: [`ideal_from`] the holdings planned
/// from.
fn finish(moves: Vec<Move>, cleanups: Vec<Cleanup>, ideal: f64, to: &Placement) -> Plan {
    let rf = to.effective_replication().factor as f64;
    let mut members: BTreeMap<MemberId, Flow> = BTreeMap::new();
    let mut moved: u128 = 0;
    let mut count = 0;
    for m in moves.iter().filter(|m| m.state != MoveState::Cancelled) {
        count += 1;
        let len = m.range.len();
        moved += len;
        let fraction = len as f64 / TOKEN_SPACE as f64;
        members.entry(m.to.clone()).or_default().inbound += fraction;
        members.entry(m.from.clone()).or_default().outbound += fraction;
    }
    Plan {
        moves,
        cleanups,
        summary: Summary {
            moves: count,
            moved_fraction: moved as f64 / (TOKEN_SPACE as f64 * rf),
            ideal_fraction: ideal,
            members,
            waves: None,
        },
    }
}

/// Facts about members that source selection needs, over the union of the
/// two rosters.
pub(crate) struct Context {
    roster: Vec<MemberId>,
    zone: Vec<Option<u32>>,
    /// Not a member of the target: it is leaving the cluster.
    leaving: Vec<bool>,
    unavailable: Vec<bool>,
    /// Open moves of the plan being replaced, by target: `(range, source)`.
    previous: HashMap<u32, Vec<(TokenRange, u32)>>,
    /// What fresh moves' ids carry.
    lineage: Lineage,
}

impl Context {
    /// `known`: moves whose members must be in the roster (they may hold
    /// data though in neither placement); `previous`: open moves whose
    /// sources are preferred.
    fn new(
        from: &Placement,
        to: &Placement,
        options: &PlanOptions,
        known: &[&Move],
        previous: &[&Move],
    ) -> Self {
        let mut zones: BTreeMap<MemberId, Option<String>> = BTreeMap::new();
        for m in from.ring().members().iter().chain(to.ring().members()) {
            zones.insert(m.id.clone(), m.zone.clone());
        }
        for m in known {
            zones.entry(m.from.clone()).or_insert(None);
            zones.entry(m.to.clone()).or_insert(None);
        }
        let zone_names: BTreeSet<&String> = zones.values().flatten().collect();
        let zone_names: Vec<&String> = zone_names.into_iter().collect();
        let roster: Vec<MemberId> = zones.keys().cloned().collect();
        let zone = zones
            .values()
            .map(|z| {
                z.as_ref()
                    .map(|z| zone_names.binary_search(&z).expect("collected") as u32)
            })
            .collect();
        let leaving = roster
            .iter()
            .map(|id| to.ring().member(id.as_str()).is_none())
            .collect();
        let unavailable = roster
            .iter()
            .map(|id| options.unavailable.contains(id))
            .collect();
        let index = |id: &MemberId| roster.binary_search(id).expect("collected") as u32;
        let mut by_target: HashMap<u32, Vec<(TokenRange, u32)>> = HashMap::new();
        for m in previous {
            by_target
                .entry(index(&m.to))
                .or_default()
                .push((m.range, index(&m.from)));
        }
        Self {
            zone,
            leaving,
            unavailable,
            previous: by_target,
            roster,
            lineage: options.lineage,
        }
    }

    pub(crate) fn index(&self, id: &MemberId) -> u32 {
        self.roster
            .binary_search(id)
            .expect("member of a placement") as u32
    }

    /// The source an earlier plan chose for `target` over `range`, if any.
    fn previous_source(&self, target: u32, range: &TokenRange) -> Option<u32> {
        self.previous.get(&target).and_then(|moves| {
            moves
                .iter()
                .find(|(r, _)| {
                    r.contains(range.end) && (r.start == range.start || r.contains(range.start))
                })
                .map(|&(_, source)| source)
        })
    }
}

/// A move being built, with context indices.
struct Building {
    range: TokenRange,
    from: u32,
    to: u32,
    lost: bool,
}

/// The moves and cleanups that take `a` to `b`, comparing the holders of
/// every elementary range.
fn diff(a: &Holdings, b: &Holdings, ctx: &Context) -> (Vec<Move>, Vec<Cleanup>) {
    if a.is_empty() || b.is_empty() {
        // Nothing is held yet (a fresh ring), or nothing will be: no data to
        // stream either way.
        return (Vec::new(), Vec::new());
    }
    let map_a: Vec<u32> = a.roster.iter().map(|id| ctx.index(id)).collect();
    let map_b: Vec<u32> = b.roster.iter().map(|id| ctx.index(id)).collect();
    // Elementary ranges: every boundary of either side.
    let mut bounds: Vec<Token> = Vec::with_capacity(a.ends.len() + b.ends.len());
    {
        let (mut i, mut j) = (0, 0);
        while i < a.ends.len() || j < b.ends.len() {
            let next = match (a.ends.get(i), b.ends.get(j)) {
                (Some(&x), Some(&y)) if x == y => {
                    i += 1;
                    j += 1;
                    x
                }
                (Some(&x), Some(&y)) if x < y => {
                    i += 1;
                    x
                }
                (Some(_), Some(&y)) => {
                    j += 1;
                    y
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (None, Some(&y)) => {
                    j += 1;
                    y
                }
                (None, None) => unreachable!("loop condition"),
            };
            bounds.push(next);
        }
    }
    let n = bounds.len();
    let mut differ = Differ::new(ctx);
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut old: Vec<u32> = Vec::with_capacity(8);
    let mut new: Vec<u32> = Vec::with_capacity(8);
    for k in 0..n {
        let end = bounds[k];
        let range = if n == 1 {
            TokenRange::FULL
        } else {
            TokenRange::new(bounds[(k + n - 1) % n], end)
        };
        while ia < a.ends.len() && a.ends[ia] < end {
            ia += 1;
        }
        while ib < b.ends.len() && b.ends[ib] < end {
            ib += 1;
        }
        let sa = if ia == a.ends.len() { 0 } else { ia };
        let sb = if ib == b.ends.len() { 0 } else { ib };
        old.clear();
        old.extend(a.segment(sa).iter().map(|&m| map_a[m as usize]));
        new.clear();
        new.extend(b.segment(sb).iter().map(|&m| map_b[m as usize]));
        differ.visit(range, &old, &new);
    }
    differ.finish((n > 1).then(|| bounds[n - 1]))
}

/// The moves and cleanups of a diff, built one elementary range at a time
/// in token order. Ranges whose holders stay the same may be skipped (they
/// add nothing): [`diff`] visits every range, [`crate::local`] only those
/// near a changed token, and both give the same result.
pub(crate) struct Differ<'c> {
    ctx: &'c Context,
    building: Vec<Building>,
    /// (from, to) -> index of the move that ends where the next range starts.
    open: HashMap<(u32, u32), usize>,
    last_source: HashMap<u32, u32>,
    cleanups: Vec<(TokenRange, u32)>,
    open_cleanup: HashMap<u32, usize>,
    load: HashMap<u32, u128>,
}

impl<'c> Differ<'c> {
    pub(crate) fn new(ctx: &'c Context) -> Self {
        Self {
            ctx,
            building: Vec::new(),
            open: HashMap::new(),
            last_source: HashMap::new(),
            cleanups: Vec::new(),
            open_cleanup: HashMap::new(),
            load: HashMap::new(),
        }
    }

    /// One elementary range, after the previous one visited: `old` holds it
    /// now, `new` must afterwards (context indices, sorted).
    pub(crate) fn visit(&mut self, range: TokenRange, old: &[u32], new: &[u32]) {
        if old == new {
            return;
        }
        let ctx = self.ctx;
        for &target in new.iter().filter(|m| !old.contains(m)) {
            let source =
                choose_source(ctx, old, new, target, &range, &self.last_source, &self.load);
            *self.load.entry(source).or_insert(0) += range.len();
            self.last_source.insert(target, source);
            let lost = ctx.unavailable[source as usize];
            match self.open.get(&(source, target)) {
                Some(&i)
                    if self.building[i].range.end == range.start
                        && self.building[i].lost == lost =>
                {
                    self.building[i].range.end = range.end;
                }
                _ => {
                    self.open.insert((source, target), self.building.len());
                    self.building.push(Building {
                        range,
                        from: source,
                        to: target,
                        lost,
                    });
                }
            }
        }
        for &gone in old.iter().filter(|m| !new.contains(m)) {
            match self.open_cleanup.get(&gone) {
                Some(&i) if self.cleanups[i].0.end == range.start => {
                    self.cleanups[i].0.end = range.end
                }
                _ => {
                    self.open_cleanup.insert(gone, self.cleanups.len());
                    self.cleanups.push((range, gone));
                }
            }
        }
    }

    /// The moves and cleanups. `seam`: the last boundary of all, where the
    /// first elementary range starts (none when there is only one boundary,
    /// the whole ring one range).
    pub(crate) fn finish(self, seam: Option<Token>) -> (Vec<Move>, Vec<Cleanup>) {
        let ctx = self.ctx;
        let mut building = self.building;
        let mut cleanups = self.cleanups;
        // Join runs that meet across the wrap-around point.
        if let Some(seam) = seam {
            merge_seam(
                &mut building,
                seam,
                |m| (m.from, m.to, m.lost),
                |m| &mut m.range,
            );
            merge_seam(&mut cleanups, seam, |c| c.1, |c| &mut c.0);
        }
        let moves = building
            .into_iter()
            .map(|m| {
                let from = ctx.roster[m.from as usize].clone();
                let to = ctx.roster[m.to as usize].clone();
                Move {
                    id: MoveId::derive(ctx.lineage, m.range, &from, &to),
                    range: m.range,
                    from,
                    to,
                    state: if m.lost {
                        MoveState::SourceLost
                    } else {
                        MoveState::Pending
                    },
                }
            })
            .collect();
        let cleanups = cleanups
            .into_iter()
            .map(|(range, m)| Cleanup {
                member: ctx.roster[m as usize].clone(),
                range,
            })
            .collect();
        (moves, cleanups)
    }
}

/// Merges an item that starts at `seam` (the first elementary range wraps
/// from the last boundary) into an item with the same key that ends there.
fn merge_seam<T, K: PartialEq>(
    items: &mut Vec<T>,
    seam: Token,
    key: impl Fn(&T) -> K,
    range: impl Fn(&mut T) -> &mut TokenRange,
) {
    let mut i = 0;
    while i < items.len() {
        if range(&mut items[i]).start == seam
            && let Some(j) = (0..items.len()).find(|&j| {
                j != i && key(&items[j]) == key(&items[i]) && range(&mut items[j]).end == seam
            })
        {
            let start = range(&mut items[j]).start;
            let end = range(&mut items[i]).end;
            let merged = TokenRange::new(start, end);
            *range(&mut items[i]) = merged;
            items.remove(j);
            continue;
        }
        i += 1;
    }
}

/// Picks who streams `range` to `target` among the members holding it now.
/// In order: an available member; the source an earlier plan chose (so a
/// replan keeps its moves); a member leaving the cluster; a member losing the
/// range; one in the target's zone; the one that fed the target the adjacent
/// range (so moves merge); the least loaded so far; the lowest id.
fn choose_source(
    ctx: &Context,
    holders: &[u32],
    next: &[u32],
    target: u32,
    range: &TokenRange,
    last_source: &HashMap<u32, u32>,
    load: &HashMap<u32, u128>,
) -> u32 {
    let previous = ctx.previous_source(target, range);
    let zone = ctx.zone[target as usize];
    *holders
        .iter()
        .min_by_key(|&&h| {
            (
                ctx.unavailable[h as usize],
                previous != Some(h),
                !ctx.leaving[h as usize],
                next.contains(&h),
                zone.is_none() || ctx.zone[h as usize] != zone,
                last_source.get(&target) != Some(&h),
                load.get(&h).copied().unwrap_or(0),
                h,
            )
        })
        .expect("a changed range has holders")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TokenRange, MemberId, MemberId) {
        (
            TokenRange::new(10, 20),
            MemberId::new("db-0"),
            MemberId::new("db-3"),
        )
    }

    #[test]
    fn unnumbered_ids_are_the_ids_of_earlier_builds() {
        let (range, from, to) = ids();
        // The hash alone, as builds before lineages derived (and stored) it.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&10u64.to_le_bytes());
        bytes.extend_from_slice(&20u64.to_le_bytes());
        bytes.extend_from_slice(b"db-0\xffdb-3");
        let legacy = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        let id = MoveId::derive(Lineage::UNNUMBERED, range, &from, &to);
        assert_eq!(id.as_str(), legacy);
        assert_eq!(id.lineage(), Some(Lineage::UNNUMBERED));
    }

    #[test]
    fn a_move_of_a_later_lineage_never_takes_an_earlier_ones_id() {
        let (range, from, to) = ids();
        let first = MoveId::derive(Lineage(1), range, &from, &to);
        let second = MoveId::derive(Lineage(2), range, &from, &to);
        assert_ne!(first, second);
        assert_eq!(first.lineage(), Some(Lineage(1)));
        assert_eq!(second.lineage(), Some(Lineage(2)));
        assert!(second.as_str().starts_with("2-"), "{second}");
        // The same move in the same lineage: the same id (restarts agree).
        assert_eq!(MoveId::derive(Lineage(2), range, &from, &to), second);
    }

    #[test]
    fn only_derived_shapes_name_a_lineage() {
        for text in [
            "kept from an older plan",
            "0-00000000deadbeef",
            "01-00000000deadbeef",
            "3-deadbeef",
            "-00000000deadbeef",
            "x-00000000deadbeef",
            "00000000deadbee",
        ] {
            assert_eq!(MoveId::from(text).lineage(), None, "{text}");
        }
        assert_eq!(
            MoveId::from("12-00000000deadbeef").lineage(),
            Some(Lineage(12))
        );
    }
}
