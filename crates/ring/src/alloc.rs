//! Token allocation: how a ring changes when members join, leave or change
//! weight.
//!
//! `hashed` derives every token from `(member id, i)`. `balanced` edits the
//! current layout greedily, always moving the least data that restores
//! balance:
//!
//! * a **joining** member takes its share in `tokens_per_member × weight`
//!   pieces. Each piece is cut from the largest range of the member that is
//!   most over its target: a new token `p` inside `(prev, t]` hands
//!   `(prev, p]` to the joiner, and the size of the cut is chosen exactly, so
//!   the joiner ends at its target. A donor that carries surplus tokens (left
//!   to it by an earlier leave) hands over a whole token instead when one has
//!   about the right size, which keeps the token count from growing.
//! * a **leaving** member's ranges, largest first, each go whole to the member
//!   most under its target, by handing over the token (no new token, nothing
//!   moves but the leaver's data). When the range's clockwise neighbour can
//!   absorb it without going over target, the token is simply dropped.
//! * a member whose **weight** changes acts as a joiner for the extra share,
//!   or sheds whole ranges (and one exact cut) to the least loaded.
//!
//! Joins, leaves and weight changes given together are done together: joiners
//! enter first with nothing, so a leaver's ranges go straight to them (a pod
//! replaced by another moves its data once, not twice).
//!
//! Everything iterates in a fixed order (member ids, tokens), so the same ring
//! and the same change always give the same new ring: a restarted coordinator
//! computes what it computed before.

use crate::token_map::TokenMap;
use crate::{
    MemberId, MemberSpec, Replication, Ring, RingConfig, RingError, Strategy, TOKEN_SPACE, Token,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The balance (load / target, one replica) the `balanced` allocator's
/// polish stops at: `1 + max(0.6 / tokens per member, 0.01)`. With `T`
/// tokens per member a nominal range is `1/T` of a member's share and the
/// allocator's cuts are half of one, so a bound tighter than a fraction of
/// `1/T` would cost more movement than it saves: 1.15 at 4 tokens, 1.075 at
/// 8, 1.0375 at 16, 1.01 from 60 tokens on. The coordinator holds every
/// one-replica target it plans to it.
pub fn one_replica_balance_bound(tokens_per_member: u32) -> f64 {
    1.0 + (0.6 / f64::from(tokens_per_member.max(1))).max(0.01)
}

/// A change of membership: who joins, who leaves, whose weight or zone
/// changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Members to add.
    pub join: Vec<MemberSpec>,
    /// Ids of members to remove.
    pub leave: Vec<MemberId>,
    /// Members that stay but whose weight or zone changes (the spec holds the
    /// new values).
    pub update: Vec<MemberSpec>,
}

impl MembershipChange {
    /// Whether the change does nothing.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.leave.is_empty() && self.update.is_empty()
    }

    /// The change that takes `ring` to exactly the `desired` member set.
    pub fn between(ring: &Ring, desired: &[MemberSpec]) -> Result<Self, RingError> {
        let mut seen = HashSet::new();
        for spec in desired {
            if !seen.insert(spec.id.as_str()) {
                return Err(RingError::DuplicateMember(spec.id.clone()));
            }
        }
        let mut change = MembershipChange::default();
        for spec in desired {
            match ring.member(spec.id.as_str()) {
                None => change.join.push(spec.clone()),
                Some(current) if current != spec => change.update.push(spec.clone()),
                Some(_) => {}
            }
        }
        for m in ring.members() {
            if !seen.contains(m.id.as_str()) {
                change.leave.push(m.id.clone());
            }
        }
        Ok(change)
    }
}

impl Ring {
    /// The ring after `change`, for keys with one replica. The ring itself
    /// is left as it is.
    pub fn apply(&self, change: &MembershipChange) -> Result<Ring, RingError> {
        self.apply_for(change, &Replication::SINGLE)
    }

    /// The ring after `change`, for keys replicated as `replication` says.
    ///
    /// `balanced` keeps DESIGN §4's balance (load / target in replica
    /// units) even: with one replica by editing primary ownership; zone-aware
    /// with at least as many replicas as zones zone by zone (each zone's
    /// tokens are a ring of their own then); otherwise with the
    /// replication-aware allocator, which follows every edit's effect on the
    /// replica walks around it.
    pub fn apply_for(
        &self,
        change: &MembershipChange,
        replication: &Replication,
    ) -> Result<Ring, RingError> {
        let change = self.validate(change)?;
        if change.is_empty() {
            return Ok(self.clone());
        }
        match self.0.config.strategy {
            Strategy::Hashed => Ok(apply_hashed(self, &change)),
            Strategy::Balanced => Ok(apply_for_replication(self, &change, replication)),
        }
    }

    /// The ring with exactly the `desired` members (joins, leaves and updates
    /// worked out from the current members), for one replica.
    pub fn rebalance_to(&self, desired: &[MemberSpec]) -> Result<Ring, RingError> {
        self.apply(&MembershipChange::between(self, desired)?)
    }

    /// [`Ring::rebalance_to`] for keys replicated as `replication` says (see
    /// [`Ring::apply_for`]).
    pub fn rebalance_to_for(
        &self,
        desired: &[MemberSpec],
        replication: &Replication,
    ) -> Result<Ring, RingError> {
        self.apply_for(&MembershipChange::between(self, desired)?, replication)
    }

    /// The ring with one more member.
    pub fn join(&self, spec: MemberSpec) -> Result<Ring, RingError> {
        self.apply(&MembershipChange {
            join: vec![spec],
            ..Default::default()
        })
    }

    /// The ring without one member.
    pub fn leave(&self, id: &str) -> Result<Ring, RingError> {
        self.apply(&MembershipChange {
            leave: vec![id.into()],
            ..Default::default()
        })
    }

    /// Checks a change and returns it in canonical order (sorted by id).
    fn validate(&self, change: &MembershipChange) -> Result<MembershipChange, RingError> {
        let mut touched: HashSet<&str> = HashSet::new();
        for spec in change.join.iter().chain(&change.update) {
            if spec.id.as_str().is_empty() {
                return Err(RingError::EmptyMemberId);
            }
            self.0.config.tokens_for(spec)?;
            if !touched.insert(spec.id.as_str()) {
                return Err(RingError::DuplicateMember(spec.id.clone()));
            }
        }
        for spec in &change.join {
            if self.member(spec.id.as_str()).is_some() {
                return Err(RingError::AlreadyMember(spec.id.clone()));
            }
        }
        for spec in &change.update {
            if self.member(spec.id.as_str()).is_none() {
                return Err(RingError::UnknownMember(spec.id.clone()));
            }
        }
        for id in &change.leave {
            if self.member(id.as_str()).is_none() {
                return Err(RingError::UnknownMember(id.clone()));
            }
            if !touched.insert(id.as_str()) {
                return Err(RingError::DuplicateMember(id.clone()));
            }
        }
        let mut canonical = change.clone();
        canonical.join.sort_by(|a, b| a.id.cmp(&b.id));
        canonical.update.sort_by(|a, b| a.id.cmp(&b.id));
        canonical.leave.sort();
        // Updates that change nothing are dropped.
        canonical
            .update
            .retain(|spec| self.member(spec.id.as_str()) != Some(spec));
        Ok(canonical)
    }
}

/// The `i`-th hashed token of a member, before collision handling.
pub(crate) fn hashed_token(id: &MemberId, i: u32, attempt: u32) -> Token {
    let mut buf = Vec::with_capacity(id.as_str().len() + 9);
    buf.extend_from_slice(id.as_str().as_bytes());
    buf.push(0xff); // not valid UTF-8: no id can collide with another's prefix
    buf.extend_from_slice(&i.to_le_bytes());
    buf.extend_from_slice(&attempt.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// What polishing may move, as a share of the change's ideal: DESIGN §8
/// allows moved/ideal 1.05 for one replica, and the greedy steps before it
/// already move a little more than the ideal at times.
const POLISH_SHARE: f64 = 0.045;

/// Above this load/target polishing ignores its budget.
const POLISH_FORCED: f64 = 1.045;

/// A bijective 64-bit mix (splitmix64's finalizer): spreads nearby tokens
/// apart for tie-breaking.
fn scramble(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn apply_hashed(ring: &Ring, change: &MembershipChange) -> Ring {
    let config = ring.0.config;
    let mut specs: BTreeMap<MemberId, MemberSpec> = ring
        .0
        .members
        .iter()
        .map(|m| (m.id.clone(), m.clone()))
        .collect();
    for id in &change.leave {
        specs.remove(id);
    }
    for spec in change.update.iter().chain(&change.join) {
        specs.insert(spec.id.clone(), spec.clone());
    }
    // Rebuild from scratch: tokens depend only on (id, i), so this is the
    // same as editing, and simpler. Members in id order make the (2^-64
    // rare) collision handling deterministic.
    let members: Vec<MemberSpec> = specs.into_values().collect();
    let mut taken: BTreeMap<Token, u32> = BTreeMap::new();
    for (index, spec) in members.iter().enumerate() {
        let count = config.tokens_for(spec).expect("validated");
        for i in 0..count {
            let mut attempt = 0;
            loop {
                let token = hashed_token(&spec.id, i, attempt);
                if let std::collections::btree_map::Entry::Vacant(e) = taken.entry(token) {
                    e.insert(index as u32);
                    break;
                }
                attempt += 1;
            }
        }
    }
    let (tokens, owners) = taken.into_iter().unzip();
    Ring::from_sorted_parts(config, members, tokens, owners)
}

/// `v` as the nearest `f64`, as `v as f64` rounds it: through `u64` when it
/// fits (one instruction; the `u128` conversion is a library call, and the
/// allocator's searches convert every member's load for every piece they
/// place, a tenth of an edit at 1,000 members).
#[inline]
fn float(v: u128) -> f64 {
    match u64::try_from(v) {
        Ok(v) => v as f64,
        Err(_) => v as f64,
    }
}

/// One member while a balanced layout is being edited.
struct Slot {
    spec: MemberSpec,
    /// Still a member after the change.
    active: bool,
    /// Tokens it owns, as primary.
    load: u128,
    /// Its ranges as `(length, end token)`, so the largest is last.
    ranges: Ranges,
}

/// A member's ranges as `(length, end token)`, largest last, sorted only
/// once an edit needs them so. A layout starts with each member's ranges as
/// an unsorted list and the widest of them (all most searches read); ranges
/// come and go from an unsorted list with its widest kept, and a list is
/// sorted only when an edit looks among its ranges by length
/// ([`Ranges::between`]): one change touches a few hundred of 1,000
/// members, and sorting all of them into B-tree sets was a quarter of a
/// change at 256,000 tokens. Once sorted, the list stays a sorted `Vec` (a
/// member has a few hundred ranges: inserting into one moves a few KiB,
/// cheaper than a B-tree's nodes to allocate, walk and free).
///
/// Before any edit touches a member its list is not even built: the layout
/// knows only its count and widest range, and where its tokens are in the
/// ring the edit started from ([`Layout::build_ranges`] builds the list from
/// there). Building all 1,000 lists of 256 ranges was a tenth of a change.
struct Ranges {
    list: Vec<(u128, Token)>,
    sorted: bool,
    /// The largest range while `list` is unsorted or not built.
    widest: Option<(u128, Token)>,
    /// Not built yet: the ranges are those the ring the edit started from
    /// gives the tokens at `Layout::positions[start..end]`.
    unbuilt: Option<(u32, u32)>,
}

impl Ranges {
    fn new() -> Self {
        Self {
            list: Vec::new(),
            sorted: true,
            widest: None,
            unbuilt: None,
        }
    }

    /// The ranges at `positions[start..end]` of the ring an edit starts
    /// from, the widest of them `widest`, not built yet.
    fn unbuilt(start: u32, end: u32, widest: Option<(u128, Token)>) -> Self {
        Self {
            list: Vec::new(),
            sorted: false,
            widest,
            unbuilt: Some((start, end)),
        }
    }

    fn len(&self) -> usize {
        match self.unbuilt {
            Some((start, end)) => (end - start) as usize,
            None => self.list.len(),
        }
    }

    /// The largest range.
    fn last(&self) -> Option<(u128, Token)> {
        if self.sorted {
            self.list.last().copied()
        } else {
            self.widest
        }
    }

    /// The ranges, sorted.
    fn sorted(&mut self) -> &[(u128, Token)] {
        debug_assert!(self.unbuilt.is_none(), "Layout::build_ranges first");
        if !self.sorted {
            self.list.sort_unstable();
            self.sorted = true;
            self.widest = None;
        }
        &self.list
    }

    /// Adds `range` (if not there yet). An unsorted list stays unsorted,
    /// its widest range kept: a join cuts one range from each of hundreds
    /// of members and touches each once or twice, and sorting every one of
    /// their lists for that was a tenth of an edit at 1,000 × 256.
    fn insert(&mut self, range: (u128, Token)) {
        debug_assert!(self.unbuilt.is_none(), "Layout::build_ranges first");
        if !self.sorted {
            if !self.list.contains(&range) {
                self.list.push(range);
                self.widest = self.widest.max(Some(range));
            }
            return;
        }
        if let Err(at) = self.list.binary_search(&range) {
            self.list.insert(at, range);
        }
    }

    /// Drops `range` (if there). An unsorted list stays unsorted, its
    /// widest range found again when that was the one dropped.
    fn remove(&mut self, range: &(u128, Token)) {
        debug_assert!(self.unbuilt.is_none(), "Layout::build_ranges first");
        if !self.sorted {
            if let Some(at) = self.list.iter().position(|r| r == range) {
                self.list.swap_remove(at);
                if self.widest == Some(*range) {
                    self.widest = self.list.iter().copied().max();
                }
            }
            return;
        }
        if let Ok(at) = self.list.binary_search(range) {
            self.list.remove(at);
        }
    }

    /// The ranges from `low` on (in `(length, end)` order), in no
    /// particular order: without sorting an unsorted list.
    fn at_least(&self, low: (u128, Token)) -> impl Iterator<Item = &(u128, Token)> {
        debug_assert!(self.unbuilt.is_none(), "Layout::build_ranges first");
        let start = if self.sorted {
            self.list.partition_point(|r| *r < low)
        } else {
            0
        };
        self.list[start..].iter().filter(move |r| **r >= low)
    }

    /// The ranges from `low` to `high` (both included), ascending.
    fn between(&mut self, low: (u128, Token), high: (u128, Token)) -> &[(u128, Token)] {
        let list = self.sorted();
        let start = list.partition_point(|r| *r < low);
        let end = list.partition_point(|r| *r <= high).max(start);
        &list[start..end]
    }
}

/// A ring being edited: the ring's sorted tokens with the edits beside
/// them (crate::token_map), so inserts and removals are cheap.
struct Layout<'a> {
    config: RingConfig,
    tokens: TokenMap<'a>,
    slots: Vec<Slot>,
    total_weight: u64,
    /// Members joining in this change: they get leavers' data first.
    joiners: Vec<usize>,
    /// The ring the edit started from, and its token positions grouped by
    /// owner: where the ranges of members not touched yet are.
    base: &'a Ring,
    positions: Vec<u32>,
}

impl<'a> Layout<'a> {
    fn from_ring(ring: &'a Ring) -> Self {
        let mut layout = Layout {
            config: ring.0.config,
            tokens: TokenMap::from_sorted(&ring.0.tokens, &ring.0.owners),
            slots: ring
                .0
                .members
                .iter()
                .map(|spec| Slot {
                    spec: spec.clone(),
                    active: true,
                    load: 0,
                    ranges: Ranges::new(),
                })
                .collect(),
            total_weight: ring.0.members.iter().map(|m| u64::from(m.weight)).sum(),
            joiners: Vec::new(),
            base: ring,
            positions: Vec::new(),
        };
        // One pass for each member's load and widest range, and the token
        // positions grouped by owner (a counting sort): the range lists
        // themselves are built only for members an edit touches.
        let members = layout.slots.len();
        let mut starts = vec![0u32; members + 1];
        let mut widest: Vec<Option<(u128, Token)>> = vec![None; members];
        let (tokens, owners) = (&ring.0.tokens, &ring.0.owners);
        if tokens.len() < 2 {
            for position in 0..tokens.len() {
                let slot = owners[position] as usize;
                let range = (ring.range_at(position).len(), tokens[position]);
                layout.slots[slot].load += range.0;
                widest[slot] = widest[slot].max(Some(range));
                starts[slot + 1] += 1;
            }
        } else {
            // With two tokens or more every range is shorter than the
            // space, so lengths fit a u64: the pass keeps loads and widest
            // ranges in flat u64 arrays (a range is never empty, so a
            // length of 0 means none yet) and reads each token once. It is
            // a pass over every token of every change (256,000 at 1,000 ×
            // 256); u128 loads inside the slots and `Option` maxima made it
            // a quarter of an edit.
            let mut loads = vec![0u128; members];
            let mut widest_len = vec![0u64; members];
            let mut widest_end = vec![0u64; members];
            let mut previous = tokens[tokens.len() - 1];
            for (&token, &owner) in tokens.iter().zip(owners) {
                let slot = owner as usize;
                let len = token.wrapping_sub(previous);
                previous = token;
                loads[slot] += u128::from(len);
                if (len, token) > (widest_len[slot], widest_end[slot]) {
                    widest_len[slot] = len;
                    widest_end[slot] = token;
                }
                starts[slot + 1] += 1;
            }
            for slot in 0..members {
                layout.slots[slot].load = loads[slot];
                if widest_len[slot] > 0 {
                    widest[slot] = Some((u128::from(widest_len[slot]), widest_end[slot]));
                }
            }
        }
        for slot in 0..members {
            starts[slot + 1] += starts[slot];
        }
        let mut next = starts.clone();
        layout.positions = vec![0; ring.0.tokens.len()];
        for (position, &owner) in ring.0.owners.iter().enumerate() {
            let at = &mut next[owner as usize];
            layout.positions[*at as usize] = position as u32;
            *at += 1;
        }
        for (slot, s) in layout.slots.iter_mut().enumerate() {
            s.ranges = Ranges::unbuilt(starts[slot], starts[slot + 1], widest[slot]);
        }
        layout
    }

    /// Builds the range list of `slot` if no edit touched it yet: every
    /// change to a member's ranges goes through its list, so until then
    /// they are the ones of the ring the edit started from.
    fn build_ranges(&mut self, slot: usize) -> &mut Ranges {
        let ranges = &mut self.slots[slot].ranges;
        if let Some((start, end)) = ranges.unbuilt.take() {
            let base = &self.base;
            ranges.list = self.positions[start as usize..end as usize]
                .iter()
                .map(|&p| (base.range_at(p as usize).len(), base.0.tokens[p as usize]))
                .collect();
        }
        ranges
    }

    fn target(&self, slot: usize) -> f64 {
        if !self.slots[slot].active || self.total_weight == 0 {
            return 0.0;
        }
        TOKEN_SPACE as f64 * f64::from(self.slots[slot].spec.weight) / self.total_weight as f64
    }

    /// Load over target; infinite for a member with no target.
    fn pressure(&self, slot: usize) -> f64 {
        float(self.slots[slot].load) / self.target(slot)
    }

    fn predecessor(&self, token: Token) -> Token {
        self.tokens
            .before(token)
            .or_else(|| self.tokens.last())
            .expect("layout is not empty")
    }

    fn successor(&self, token: Token) -> Token {
        self.tokens
            .after(token)
            .or_else(|| self.tokens.first())
            .expect("layout is not empty")
    }

    /// Length of the range ending at `token`, which must be in the layout.
    fn range_len(&self, token: Token) -> u128 {
        let prev = self.predecessor(token);
        if prev == token {
            TOKEN_SPACE
        } else {
            token.wrapping_sub(prev) as u128
        }
    }

    fn set_range(&mut self, slot: usize, token: Token, old: u128, new: u128) {
        let ranges = self.build_ranges(slot);
        ranges.remove(&(old, token));
        ranges.insert((new, token));
        let s = &mut self.slots[slot];
        s.load = s.load - old + new;
    }

    /// Adds token `p` (not yet present) owned by `owner`; it takes
    /// `(predecessor, p]` from the owner of its successor.
    fn insert(&mut self, p: Token, owner: usize) {
        if self.tokens.is_empty() {
            self.tokens.insert(p, owner);
            self.slots[owner].load += TOKEN_SPACE;
            self.build_ranges(owner).insert((TOKEN_SPACE, p));
            return;
        }
        let next = self.successor(p);
        let prev = self.predecessor(p);
        let next_len = self.range_len(next);
        let taken = p.wrapping_sub(prev) as u128;
        let next_owner = self.tokens.owner(next);
        self.set_range(next_owner, next, next_len, next_len - taken);
        self.tokens.insert(p, owner);
        self.slots[owner].load += taken;
        self.build_ranges(owner).insert((taken, p));
    }

    /// Drops token `t`; its range goes to the owner of its successor.
    fn remove(&mut self, t: Token) {
        let owner = self.tokens.owner(t);
        let len = self.range_len(t);
        let next = self.successor(t);
        let next_len = self.range_len(next);
        self.build_ranges(owner).remove(&(len, t));
        self.slots[owner].load -= len;
        self.tokens.remove(t);
        if next != t {
            let next_owner = self.tokens.owner(next);
            self.set_range(next_owner, next, next_len, next_len + len);
        }
    }

    /// Hands token `t` and its range to `owner`.
    fn reassign(&mut self, t: Token, owner: usize) {
        let from = self.tokens.owner(t);
        let len = self.range_len(t);
        self.build_ranges(from).remove(&(len, t));
        self.slots[from].load -= len;
        self.build_ranges(owner).insert((len, t));
        self.slots[owner].load += len;
        self.tokens.insert(t, owner);
    }

    fn token_count(&self, slot: usize) -> usize {
        self.slots[slot].ranges.len()
    }

    fn surplus(&self, slot: usize) -> usize {
        let wanted = self
            .config
            .tokens_for(&self.slots[slot].spec)
            .expect("validated") as usize;
        self.token_count(slot).saturating_sub(wanted)
    }

    /// The active member most over its target that has a range to cut.
    fn most_loaded(&self, except: usize) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for slot in 0..self.slots.len() {
            if slot == except || !self.slots[slot].active {
                continue;
            }
            match self.slots[slot].ranges.last() {
                Some((len, _)) if len >= 2 => {}
                _ => continue,
            }
            let pressure = self.pressure(slot);
            if best.is_none_or(|(b, _)| pressure > b) {
                best = Some((pressure, slot));
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// The range of `slot` a joiner cuts: one of its widest (within 1/64 of
    /// the widest), picked by a hash of the range's end and `salt`. Ranges
    /// of an even layout are all as wide, and always taking the last of
    /// them sent every joiner's cuts to the top of the token space (500 →
    /// 510 members: all 160 cuts between 0.88 and 1.0), so that one region
    /// streamed everything.
    fn range_to_cut(&mut self, slot: usize, salt: u64) -> Option<(u128, Token)> {
        let (widest, _) = self.slots[slot].ranges.last()?;
        let floor = widest.saturating_sub(2);
        // The ends are distinct and `scramble` is a bijection: one minimum,
        // whatever the order the ranges are read in.
        self.build_ranges(slot)
            .at_least((floor, 0))
            .min_by_key(|&&(_, t)| scramble(t ^ salt))
            .copied()
    }

    /// The active member most under its target.
    fn least_loaded(&self, except: usize) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for slot in 0..self.slots.len() {
            if slot == except || !self.slots[slot].active {
                continue;
            }
            let pressure = self.pressure(slot);
            if best.is_none_or(|(b, _)| pressure < b) {
                best = Some((pressure, slot));
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// Who gets a piece `slot` gives away: a joiner still under target
    /// first (so a replaced member's data moves once, straight to its
    /// replacement), else the member most under target.
    fn receiver_for(&self, slot: usize) -> Option<usize> {
        self.joiners
            .iter()
            .copied()
            .filter(|&j| j != slot && self.pressure(j) < 1.0)
            .min_by(|&a, &b| {
                self.pressure(a)
                    .total_cmp(&self.pressure(b))
                    .then(a.cmp(&b))
            })
            .or_else(|| self.least_loaded(slot))
    }

    /// Lays out `slots` on an empty ring: evenly spaced tokens, each round of
    /// the circle visiting every member once per unit of weight in an order
    /// scrambled per round, so every member's ranges are spread around the
    /// circle and have the same size.
    fn lay_out_fresh(&mut self, members: &[usize]) {
        let rounds = self.config.tokens_per_member;
        let mut sequence: Vec<usize> = Vec::new();
        for round in 0..rounds {
            let mut entries: Vec<(Token, usize)> = Vec::new();
            for &slot in members {
                for unit in 0..self.slots[slot].spec.weight {
                    let key = hashed_token(&self.slots[slot].spec.id, round, unit);
                    entries.push((key, slot));
                }
            }
            entries.sort_unstable();
            sequence.extend(entries.into_iter().map(|(_, slot)| slot));
        }
        let count = sequence.len() as u128;
        for (k, slot) in sequence.into_iter().enumerate() {
            // Spread over the whole circle; the last token is u64::MAX.
            let token = ((k as u128 + 1) * TOKEN_SPACE / count - 1) as Token;
            self.insert(token, slot);
        }
    }

    /// Gives `slot` its target share in `pieces` cuts (or whole surplus
    /// tokens), more when that many members would end up over target: with
    /// few members each join raises everyone's relative load by 1/N, so all
    /// of them must give a little.
    fn fill(&mut self, slot: usize, pieces: usize) {
        let target = self.target(slot);
        let mut remaining = (target - float(self.slots[slot].load)).max(0.0) as u128;
        let crowded = 1.0 + 0.5 / f64::from(self.config.tokens_per_member);
        let over = (0..self.slots.len())
            .filter(|&s| s != slot && self.slots[s].active && self.pressure(s) > crowded)
            .count();
        let pieces = pieces.max(over.min(4 * pieces));
        // Slivers below 1/64 of a nominal range are not worth a token.
        let sliver = (self.piece_size(slot) / 32).max(1);
        for k in 0..pieces {
            if remaining < sliver || crate::cancel::cancelled() {
                break;
            }
            let desired = (remaining / (pieces - k) as u128).max(1);
            let Some(donor) = self.most_loaded(slot) else {
                break;
            };
            if self.surplus(donor) > 0 {
                // A whole token of about the right size: no new token needed.
                let low = desired / 3;
                // Never more than still needed: overshooting would push
                // data on to someone else.
                let high = (desired + desired / 2).min(remaining);
                let near = self
                    .build_ranges(donor)
                    .between((low, 0), (high, Token::MAX))
                    .iter()
                    .min_by_key(|&&(len, _)| len.abs_diff(desired))
                    .copied();
                if let Some((len, t)) = near {
                    self.reassign(t, slot);
                    remaining = remaining.saturating_sub(len);
                    continue;
                }
            }
            // Salted by the joiner alone, not the piece: a replan that
            // adds another joiner then cuts the same ranges again, so moves
            // already under way keep their ids.
            let salt = hashed_token(&self.slots[slot].spec.id, 0, 0xc075);
            let Some((len, t)) = self.range_to_cut(donor, salt) else {
                break;
            };
            // When the pieces left can reach every member over target, take
            // exactly each one's excess: everyone ends on target and nothing
            // needs polishing (which would move data between members that
            // stay). Otherwise equal pieces from the most loaded.
            let donors = (0..self.slots.len())
                .filter(|&s| s != slot && self.slots[s].active && self.pressure(s) > 1.0)
                .count();
            let excess = (float(self.slots[donor].load) - self.target(donor)).max(0.0) as u128;
            let amount = if donors <= pieces - k && excess >= sliver {
                excess.min(remaining)
            } else {
                desired
            }
            .min(len - 1);
            // The new token p cuts (prev, t] into (prev, p], to the joiner,
            // and (p, t], kept by the donor: p = prev + amount.
            let p = t.wrapping_sub((len - amount) as u64);
            self.insert(p, slot);
            remaining = remaining.saturating_sub(amount);
        }
    }

    /// Hands the ranges of a member that no longer exists to others.
    fn evacuate(&mut self, slot: usize) {
        let piece = self.piece_size(slot);
        while let Some((len, t)) = self.slots[slot].ranges.last() {
            if crate::cancel::cancelled() {
                return;
            }
            self.hand_off(slot, t, len, piece, u128::MAX);
        }
    }

    /// Sheds ranges, in pieces, until `slot` is down to its target.
    fn shed(&mut self, slot: usize) {
        let piece = self.piece_size(slot);
        loop {
            if crate::cancel::cancelled() {
                return;
            }
            let excess = (float(self.slots[slot].load) - self.target(slot)).max(0.0) as u128;
            if excess == 0 || self.slots[slot].ranges.len() <= 1 && excess < 2 {
                return;
            }
            let (len, t) = self.slots[slot].ranges.last().expect("has ranges");
            if !self.hand_off(slot, t, len, piece.min(excess), excess) {
                return;
            }
        }
    }

    /// Half of a nominal range (a member of weight 1's fair share over its
    /// tokens): the size of the pieces a member gives away. Pieces smaller
    /// than a range let several members share a leaver's data, so none
    /// overshoots its target by a whole range; a fixed size (rather than a
    /// fraction of the giver's ranges) keeps pieces from shrinking, and the
    /// token count from growing, over many changes.
    fn piece_size(&self, _slot: usize) -> u128 {
        let weight = self.total_weight.max(1) as u128;
        (TOKEN_SPACE / weight / (2 * u128::from(self.config.tokens_per_member))).max(1)
    }

    /// Gives (part of) range `(prev, t]` of `slot`, of length `len`, away:
    /// whole to the clockwise neighbour if it has room for it, else `piece`
    /// (or the whole range when it is about that size, and never much more
    /// than `limit`) to the least loaded member. Returns whether anything
    /// moved.
    fn hand_off(&mut self, slot: usize, t: Token, len: u128, piece: u128, limit: u128) -> bool {
        let next = self.successor(t);
        let neighbour = self.tokens.owner(next);
        let receiver = self.receiver_for(slot);
        // Nobody is starving: a joiner still far below target should get the
        // data instead, or it would have to take it from someone else later
        // and the data would move twice.
        let nobody_starving = receiver.is_none_or(|r| self.pressure(r) >= 0.95);
        if neighbour != slot
            && self.slots[neighbour].active
            && len <= limit
            && nobody_starving
            && (self.slots[neighbour].load + len) as f64 <= self.target(neighbour)
        {
            // Dropping the token: the neighbour absorbs the range, and the
            // ring gets one token smaller.
            self.remove(t);
            return true;
        }
        let Some(receiver) = receiver else {
            if !self.slots[slot].active {
                self.remove(t);
                return true;
            }
            return false;
        };
        if len < 2 || (len <= piece + piece / 2 && len <= limit) {
            self.reassign(t, receiver);
        } else {
            let amount = piece.min(len - 1);
            self.insert(t.wrapping_sub((len - amount) as u64), receiver);
        }
        true
    }

    /// The last resort when greedy steps left a member too far over target
    /// (several joins and leaves at once among few members): cut a piece from
    /// the most loaded member to the least loaded, a few times at most. This
    /// moves a little data between members that stay, so it is bounded: by
    /// a pass's few cuts, and by `budget` (a share of the change's ideal).
    fn polish(&mut self, mut budget: u128) {
        let ceiling = one_replica_balance_bound(self.config.tokens_per_member);
        for _ in 0..self.config.tokens_per_member {
            let Some(high) = self.most_loaded(usize::MAX) else {
                return;
            };
            if self.pressure(high) <= ceiling {
                return;
            }
            let Some(low) = self.least_loaded(high) else {
                return;
            };
            let over = float(self.slots[high].load) - self.target(high);
            let under = self.target(low) - float(self.slots[low].load);
            let amount = over.min(under).min(self.piece_size(high) as f64) as u128;
            let (len, t) = self.slots[high].ranges.last().expect("has ranges");
            if amount < 1 || len < 2 {
                return;
            }
            // Past the budget only for a member near DESIGN §8's bound:
            // balance comes first.
            let amount = if self.pressure(high) > POLISH_FORCED {
                amount.min(len - 1)
            } else {
                amount.min(len - 1).min(budget)
            };
            if amount < 1 {
                return;
            }
            budget = budget.saturating_sub(amount);
            self.insert(t.wrapping_sub((len - amount) as u64), low);
        }
    }

    /// The ring, after dropping tokens whose successor has the same owner
    /// as long as that owner carries more tokens than it is meant to.
    /// Ownership (and every replica set) stays exactly the same.
    ///
    /// The last step of an edit, done on the sorted array the ring is made
    /// of rather than in the B-trees (three searches per token there were a
    /// fifth of a change at 256,000 tokens): visiting tokens in order, a
    /// token's successor is the next one (those after it are not visited
    /// yet, so none was dropped), or for the last token the first one still
    /// kept. Only members with a surplus lose tokens and no surplus grows,
    /// so visiting every token drops exactly the tokens of a visit of just
    /// theirs.
    fn into_ring_merging_surplus(mut self) -> Ring {
        let (mut tokens, mut owners) = std::mem::take(&mut self.tokens).into_parts();
        let mut count: Vec<usize> = self.slots.iter().map(|s| s.ranges.len()).collect();
        let wanted: Vec<usize> = self
            .slots
            .iter()
            .map(|s| self.config.tokens_for(&s.spec).expect("validated") as usize)
            .collect();
        let n = tokens.len();
        let mut kept = vec![true; n];
        let mut live = n;
        for i in 0..n {
            if live < 2 {
                break;
            }
            let owner = owners[i] as usize;
            if count[owner] <= wanted[owner] {
                continue;
            }
            let next = if i + 1 < n {
                i + 1
            } else {
                kept.iter().position(|&k| k).expect("two tokens left")
            };
            if owners[next] as usize == owner {
                kept[i] = false;
                count[owner] -= 1;
                live -= 1;
            }
        }
        if live < n {
            let mut at = 0;
            for i in 0..n {
                if kept[i] {
                    tokens[at] = tokens[i];
                    owners[at] = owners[i];
                    at += 1;
                }
            }
            tokens.truncate(at);
            owners.truncate(at);
        }
        self.ring_of(tokens, owners)
    }

    fn into_ring(mut self) -> Ring {
        let (tokens, owners) = std::mem::take(&mut self.tokens).into_parts();
        self.ring_of(tokens, owners)
    }

    /// The ring of the active slots with these tokens (sorted) and their
    /// owners' slots.
    fn ring_of(self, tokens: Vec<Token>, mut owners: Vec<u32>) -> Ring {
        // Members sorted by id; slot numbers remapped to member indices.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].active)
            .collect();
        order.sort_by(|&a, &b| self.slots[a].spec.id.cmp(&self.slots[b].spec.id));
        let mut remap = vec![u32::MAX; self.slots.len()];
        for (index, &slot) in order.iter().enumerate() {
            remap[slot] = index as u32;
        }
        for owner in &mut owners {
            *owner = remap[*owner as usize];
        }
        let members = order
            .into_iter()
            .map(|slot| self.slots[slot].spec.clone())
            .collect();
        Ring::from_sorted_parts(self.config, members, tokens, owners)
    }
}

/// How `balanced` edits a ring for a replication, decided by the members
/// after the change.
fn apply_for_replication(
    ring: &Ring,
    change: &MembershipChange,
    replication: &Replication,
) -> Ring {
    let mut after: BTreeMap<&MemberId, &MemberSpec> =
        ring.members().iter().map(|m| (&m.id, m)).collect();
    for id in &change.leave {
        after.remove(id);
    }
    for spec in change.update.iter().chain(&change.join) {
        after.insert(&spec.id, spec);
    }
    let zones: BTreeSet<Option<&str>> = after.values().map(|m| m.zone.as_deref()).collect();
    let factor = replication.factor.min(after.len()).max(1);
    if factor == 1 || after.is_empty() {
        return apply_balanced(ring, change);
    }
    if replication.zone_aware && zones.len() > 1 && factor == zones.len() {
        // Each key's replica in zone z is the first token of zone z after
        // it: every zone is a ring of its own. (With more replicas than
        // zones the walk fills the rest with distinct members, which ties
        // the zones' rings together: the replication-aware allocator below
        // follows that walk.)
        return apply_zoned(ring, &after);
    }
    if factor >= after.len() || ring.len() <= replication.factor {
        // A fresh layout. When every member holds everything afterwards, or
        // held everything before (no more members than replicas), any
        // layout moves the same data: only newcomers receive, exactly their
        // share. So the ring is laid out anew, ready for the members to come.
        let members: Vec<MemberSpec> = after.values().map(|m| (*m).clone()).collect();
        return crate::replicated::fresh_balanced(ring.0.config, members, replication);
    }
    crate::replicated::apply(ring, change, replication)
}

/// `balanced` zone by zone: each zone's tokens, a ring of their own, are
/// edited with the one-replica allocator for the zone's part of the change.
/// A member that changes zone leaves one zone's ring and joins another's.
///
/// Only the zones the change touches are split out and edited; the others'
/// tokens are read once from the ring, in order, while the edited zones'
/// runs are merged in (a change at 1,000 × 256 touches one zone of three,
/// and copying the others run by run was a third of the allocator's time
/// on the way from a member change to its plan).
fn apply_zoned(ring: &Ring, after: &BTreeMap<&MemberId, &MemberSpec>) -> Ring {
    let config = ring.0.config;
    let zones: Vec<Option<&str>> = after
        .values()
        .map(|m| m.zone.as_deref())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let zone_count = zones.len() as u64;
    let regrouped = ring.zone_count() < zones.len();
    let members: Vec<MemberSpec> = after.values().map(|m| (*m).clone()).collect();
    let global_index = |id: &MemberId| -> u32 {
        members
            .binary_search_by(|g| g.id.cmp(id))
            .expect("a member after the change") as u32
    };
    // Each zone's members before and after the change (sorted by id); a
    // zone is left as it is when they are the same and no zone comes back.
    let zone_members: Vec<Vec<MemberSpec>> = zones
        .iter()
        .map(|&zone| {
            ring.members()
                .iter()
                .filter(|m| m.zone.as_deref() == zone)
                .cloned()
                .collect()
        })
        .collect();
    let desired: Vec<Vec<MemberSpec>> = zones
        .iter()
        .map(|&zone| {
            after
                .values()
                .filter(|m| m.zone.as_deref() == zone)
                .map(|m| (*m).clone())
                .collect()
        })
        .collect();
    let unchanged: Vec<bool> = (0..zones.len())
        .map(|rank| zone_members[rank] == desired[rank] && !regrouped)
        .collect();
    // Per member of the ring: its zone's rank and its index among that
    // zone's members (both sorted by id), so splitting the tokens by zone
    // compares numbers, not strings; and, for a member of an unchanged
    // zone, its index after the change (`u32::MAX` for the others).
    let zone_rank: BTreeMap<Option<&str>, usize> =
        zones.iter().enumerate().map(|(r, &z)| (z, r)).collect();
    let mut in_zone = vec![0u32; zones.len()];
    let mut place_of: Vec<(usize, u32)> = Vec::with_capacity(ring.len());
    let mut kept_as: Vec<u32> = Vec::with_capacity(ring.len());
    for m in ring.members() {
        // A zone of the ring that no member has after the change: its
        // tokens go with its members.
        let rank = zone_rank
            .get(&m.zone.as_deref())
            .copied()
            .unwrap_or(usize::MAX);
        let local = match in_zone.get_mut(rank) {
            Some(n) => {
                *n += 1;
                *n - 1
            }
            None => 0,
        };
        place_of.push((rank, local));
        kept_as.push(if unchanged.get(rank) == Some(&true) {
            global_index(&m.id)
        } else {
            u32::MAX
        });
    }
    // The edited zones' current rings, in one pass: their members' tokens,
    // with owners as indices among the zone's members. (A zone no member
    // has after the change, rank `usize::MAX`, is dropped with its members.)
    let mut zone_tokens: Vec<Vec<Token>> = vec![Vec::new(); zones.len()];
    let mut zone_owners: Vec<Vec<u32>> = vec![Vec::new(); zones.len()];
    if unchanged.iter().any(|&u| !u) {
        for (&t, &o) in ring.tokens().iter().zip(ring.owner_indices()) {
            let (rank, local) = place_of[o as usize];
            if unchanged.get(rank) == Some(&false) {
                zone_tokens[rank].push(t);
                zone_owners[rank].push(local);
            }
        }
    }
    // Each edited zone's tokens after the change, owners as indices into
    // `members`, by zone rank.
    let mut edited: Vec<(usize, Vec<(Token, u32)>)> = Vec::new();
    for (rank, zone_members) in zone_members.into_iter().enumerate() {
        if unchanged[rank] {
            continue;
        }
        let tokens = std::mem::take(&mut zone_tokens[rank]);
        let owners = std::mem::take(&mut zone_owners[rank]);
        let fresh = tokens.is_empty();
        let sub = Ring::from_sorted_parts(config, zone_members, tokens, owners);
        let sub_change = MembershipChange::between(&sub, &desired[rank]).expect("distinct ids");
        // A ring that had fewer zones than replicas was laid out for the
        // two-pass walk, which balances members' whole loads, not their
        // share of their zone's copy: once every zone holds a copy again,
        // unchanged zones are polished too (the zone that comes back brings
        // a whole copy to move, so the polish is a small part of the step).
        let next = if sub_change.is_empty() && !regrouped {
            sub
        } else {
            apply_balanced(&sub, &sub_change)
        };
        // Cancelled (crate::cancel): the zone's ring came back unedited and
        // may still hold members that are gone; the result is dropped.
        if crate::cancel::cancelled() {
            return ring.clone();
        }
        // A fresh zone's even layout is turned by a fraction of a spacing so
        // that zones interleave instead of landing on the same points.
        let phase = if fresh && !next.tokens().is_empty() {
            let spacing = TOKEN_SPACE / next.tokens().len() as u128;
            (spacing * rank as u128 / u128::from(zone_count)) as u64
        } else {
            0
        };
        let global: Vec<u32> = next.members().iter().map(|m| global_index(&m.id)).collect();
        edited.push((
            rank,
            next.tokens()
                .iter()
                .zip(next.owner_indices())
                .map(|(&t, &o)| (t.wrapping_add(phase), global[o as usize]))
                .collect(),
        ));
    }
    if crate::cancel::cancelled() {
        return ring.clone();
    }
    let (tokens, owners) = match merge_into_kept(ring, &kept_as, &edited) {
        Some(parts) => parts,
        None => {
            // A fresh zone's turn wrapped past the top, or two zones share
            // a point: every zone's run, in zone order, the slow way.
            let mut runs: Vec<Vec<(Token, u32)>> = vec![Vec::new(); zones.len()];
            for (&t, &o) in ring.tokens().iter().zip(ring.owner_indices()) {
                let kept = kept_as[o as usize];
                if kept != u32::MAX {
                    runs[place_of[o as usize].0].push((t, kept));
                }
            }
            for (rank, run) in edited {
                runs[rank] = run;
            }
            merge_zone_runs(runs).into_iter().unzip()
        }
    };
    Ring::from_sorted_parts(config, members, tokens, owners)
}

/// The ring's tokens of unchanged zones (owners `kept_as`, `u32::MAX`
/// dropped) merged with the edited zones' runs, in one pass into the
/// ring's parts; `None` when a run is not sorted or two zones share a
/// point ([`merge_zone_runs`] then takes the next free one, zone by zone).
fn merge_into_kept(
    ring: &Ring,
    kept_as: &[u32],
    edited: &[(usize, Vec<(Token, u32)>)],
) -> Option<(Vec<Token>, Vec<u32>)> {
    if edited
        .iter()
        .any(|(_, run)| run.windows(2).any(|w| w[0].0 >= w[1].0))
    {
        return None;
    }
    // The edited runs as one (usually there is only one).
    let mut runs = edited.iter().map(|(_, run)| run.as_slice());
    let first = runs.next().unwrap_or(&[]);
    let mut new: std::borrow::Cow<'_, [(Token, u32)]> = std::borrow::Cow::Borrowed(first);
    for run in runs {
        let mut merged = Vec::with_capacity(new.len() + run.len());
        let (mut i, mut j) = (0, 0);
        while i < new.len() && j < run.len() {
            match new[i].0.cmp(&run[j].0) {
                std::cmp::Ordering::Less => {
                    merged.push(new[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    merged.push(run[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => return None,
            }
        }
        merged.extend_from_slice(&new[i..]);
        merged.extend_from_slice(&run[j..]);
        new = std::borrow::Cow::Owned(merged);
    }
    let capacity = ring.tokens().len() + new.len();
    let mut tokens = Vec::with_capacity(capacity);
    let mut owners = Vec::with_capacity(capacity);
    let mut j = 0;
    for (&t, &o) in ring.tokens().iter().zip(ring.owner_indices()) {
        let kept = kept_as[o as usize];
        if kept == u32::MAX {
            continue;
        }
        while j < new.len() && new[j].0 < t {
            tokens.push(new[j].0);
            owners.push(new[j].1);
            j += 1;
        }
        if j < new.len() && new[j].0 == t {
            return None;
        }
        tokens.push(t);
        owners.push(kept);
    }
    for &(t, o) in &new[j..] {
        tokens.push(t);
        owners.push(o);
    }
    Some((tokens, owners))
}

/// The zones' tokens (each zone's run in zone order) as one sorted list.
/// Runs are sorted unless a fresh zone's turn wrapped past the top; when
/// they are and no two zones share a point, they are merged in linear time.
/// Otherwise they are sorted, and where two zones share a point the next
/// free one is taken, zone by zone in order.
fn merge_zone_runs(runs: Vec<Vec<(Token, u32)>>) -> Vec<(Token, u32)> {
    let sorted_runs = runs.iter().all(|r| r.windows(2).all(|w| w[0].0 < w[1].0));
    if sorted_runs {
        let mut merged: Vec<(Token, u32)> = Vec::new();
        let mut clash = false;
        for run in &runs {
            let mut next = Vec::with_capacity(merged.len() + run.len());
            let (mut i, mut j) = (0, 0);
            while i < merged.len() && j < run.len() {
                if merged[i].0 < run[j].0 {
                    next.push(merged[i]);
                    i += 1;
                } else if merged[i].0 > run[j].0 {
                    next.push(run[j]);
                    j += 1;
                } else {
                    clash = true;
                    break;
                }
            }
            if clash {
                break;
            }
            next.extend_from_slice(&merged[i..]);
            next.extend_from_slice(&run[j..]);
            merged = next;
        }
        if !clash {
            return merged;
        }
    }
    let merged: Vec<(Token, u32)> = runs.into_iter().flatten().collect();
    let mut sorted = merged.clone();
    sorted.sort_unstable_by_key(|&(t, _)| t);
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        // Tokens are distinct within a zone; another zone may hold the same
        // point, then the next free one is taken, zone by zone in order.
        // (Only then: a set of every token is most of this function's time.)
        let mut taken: BTreeSet<Token> = BTreeSet::new();
        sorted = merged
            .into_iter()
            .map(|(mut t, o)| {
                while !taken.insert(t) {
                    t = t.wrapping_add(1);
                }
                (t, o)
            })
            .collect();
        sorted.sort_unstable_by_key(|&(t, _)| t);
    }
    sorted
}

fn apply_balanced(ring: &Ring, change: &MembershipChange) -> Ring {
    let mut layout = Layout::from_ring(ring);
    let slot_of: HashMap<MemberId, usize> = layout
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.spec.id.clone(), i))
        .collect();

    // Weight and zone updates first: they set the targets everything else
    // aims at.
    let mut grown = Vec::new();
    let mut shrunk = Vec::new();
    for spec in &change.update {
        let slot = slot_of[&spec.id];
        let old = layout.slots[slot].spec.weight;
        layout.total_weight = layout.total_weight - u64::from(old) + u64::from(spec.weight);
        layout.slots[slot].spec = spec.clone();
        match spec.weight.cmp(&old) {
            std::cmp::Ordering::Greater => grown.push(slot),
            std::cmp::Ordering::Less => shrunk.push(slot),
            std::cmp::Ordering::Equal => {}
        }
    }
    // Joiners enter with nothing, so leavers' ranges can go straight to them.
    let mut joiners = Vec::new();
    for spec in &change.join {
        layout.total_weight += u64::from(spec.weight);
        layout.slots.push(Slot {
            spec: spec.clone(),
            active: true,
            load: 0,
            ranges: Ranges::new(),
        });
        joiners.push(layout.slots.len() - 1);
    }
    layout.joiners = joiners.clone();
    for id in &change.leave {
        let slot = slot_of[id];
        layout.slots[slot].active = false;
        layout.total_weight -= u64::from(layout.slots[slot].spec.weight);
    }

    if layout.tokens.is_empty() {
        layout.lay_out_fresh(&joiners);
        return layout.into_ring();
    }
    // DESIGN §4's ideal for this change: what the staying members lack.
    let ideal: f64 = (0..layout.slots.len())
        .filter(|&s| layout.slots[s].active)
        .map(|s| (layout.target(s) - float(layout.slots[s].load)).max(0.0))
        .sum();
    for id in &change.leave {
        layout.evacuate(slot_of[id]);
    }
    // Cancelled (crate::cancel): the steps above may have stopped half way;
    // the result is dropped anyway, so the ring is handed back as it was.
    if crate::cancel::cancelled() {
        return ring.clone();
    }
    if layout.tokens.is_empty() {
        // Everyone left; joiners (if any) start a fresh circle.
        layout.lay_out_fresh(&joiners);
        return layout.into_ring();
    }
    for &slot in &shrunk {
        layout.shed(slot);
    }
    for &slot in grown.iter().chain(&joiners) {
        // As many pieces as nominal ranges are missing: a fresh joiner gets
        // `tokens_per_member × weight`, one that already received a leaver's
        // ranges fewer.
        let missing = (layout.target(slot) - float(layout.slots[slot].load)).max(0.0);
        let nominal = 2.0 * layout.piece_size(slot) as f64;
        let pieces = (missing / nominal).ceil().max(1.0) as usize;
        layout.fill(slot, pieces);
    }
    if crate::cancel::cancelled() {
        return ring.clone();
    }
    layout.polish((POLISH_SHARE * ideal) as u128);
    layout.into_ring_merging_surplus()
}
