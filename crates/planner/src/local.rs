//! Planning near the changes only.
//!
//! A range's replica set is decided by the walk clockwise from its end
//! token, which reads a few tokens and stops once it has its replicas
//! (`rf` distinct members; zone-aware, also one member in each of
//! `min(rf, zones)` zones). Between two rings that replicate alike, the
//! replica sets of a range can only differ if its walk reads a *changed*
//! token: a token of one ring only, or of both with a different owner (or
//! the same owner in another zone). If the walk over one ring stops before
//! the next changed token, the other ring has exactly the same tokens with
//! the same owners there, so its walk reads the same owners and stops at the
//! same place with the same members.
//!
//! So [`diff_near_changes`] merges the two token arrays once (comparing
//! integers), then for each changed token walks backwards over the
//! elementary ranges before it until the tokens between such a range and
//! the changed one already complete a walk; only those ranges' replica sets
//! are computed and compared. A walk completes within a stretch of tokens
//! exactly when the stretch holds `rf` distinct members (and the wanted
//! number of zones), a condition that only gets truer as the stretch grows
//! backwards: the first range found unaffected ends the search, and so
//! does reaching the changed token before (whose own search goes on from
//! there). A join of one member into 1,000 × 256 at rf 3 over three zones
//! compares a few thousand ranges instead of 512,000.
//!
//! The ranges are fed in token order to the same [`Differ`] the full
//! comparison uses, which does nothing for ranges whose holders stay the
//! same, so the plan is the same one, move for move
//! (`crate::plan_comparing_every_range` is the full comparison, kept for
//! the tests that check this).

use crate::Placement;
use crate::plan::{Cleanup, Context, Differ, Move};
use ringleader_ring::{Replication, Ring, Token, TokenRange};

/// What [`diff_near_changes`] found.
pub(crate) struct NearChanges {
    pub(crate) moves: Vec<Move>,
    pub(crate) cleanups: Vec<Cleanup>,
    /// [`crate::ideal_from`] the holdings of `from`.
    pub(crate) ideal: f64,
}

/// No member: the marker in member maps.
const NONE: u32 = u32::MAX;

/// The moves and cleanups from `from` to `to` (as the full diff of their
/// holdings gives them) and the ideal, computing replica sets only near the
/// changed tokens. `None` when the shortcut does not apply: an empty ring,
/// replication in force that differs (another factor, or zone-aware walks
/// over another number of zones), or more than 64 zones.
pub(crate) fn diff_near_changes(
    from: &Placement,
    to: &Placement,
    ctx: &Context,
) -> Option<NearChanges> {
    let (a, b) = (from.ring(), to.ring());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let replication = from.effective_replication();
    if replication != to.effective_replication() {
        return None;
    }
    // Zone-aware walks look for `min(rf, zones)` zones: the rings must have
    // as many (and few enough for a bit set).
    let zone_walk = replication.factor > 1 && replication.zone_aware && a.zone_count() > 1;
    if replication.factor > 1
        && replication.zone_aware
        && (a.zone_count() != b.zone_count() || a.zone_count() > 64)
    {
        return None;
    }
    let merged = Merged::new(a, b);
    let candidates = merged.candidates(a, &replication, zone_walk);

    // Member indices of each ring → the context's.
    let map_a: Vec<u32> = a.members().iter().map(|m| ctx.index(&m.id)).collect();
    let map_b: Vec<u32> = b.members().iter().map(|m| ctx.index(&m.id)).collect();
    let mut differ = Differ::new(ctx);
    let mut picked: Vec<u32> = Vec::with_capacity(replication.factor);
    let mut old: Vec<u32> = Vec::with_capacity(replication.factor);
    let mut new: Vec<u32> = Vec::with_capacity(replication.factor);
    let mut replicas = |ring: &Ring, position: usize, map: &[u32], out: &mut Vec<u32>| {
        ring.replica_indices_at(position, &replication, &mut picked);
        // Sorted by member index, which maps to context indices in the same
        // (id) order: sorted as the holdings' segments are.
        picked.sort_unstable();
        out.clear();
        out.extend(picked.iter().map(|&m| map[m as usize]));
    };
    for &at in &candidates {
        let range = if merged.count == 1 {
            TokenRange::FULL
        } else {
            TokenRange::new(merged.token(merged.back(at)), merged.token(at))
        };
        replicas(a, wrap(at.0, merged.a.len()), &map_a, &mut old);
        replicas(b, wrap(at.1, merged.b.len()), &map_b, &mut new);
        differ.visit(range, &old, &new);
    }
    let seam = (merged.count > 1).then(|| merged.last_token());
    let (moves, cleanups) = differ.finish(seam);

    // The ideal: every range of `from` has exactly `rf` holders, so nothing
    // is contested and it is what `to`'s members lack against their load in
    // `from`.
    let loads = a.replica_loads(&replication);
    let held: Vec<u128> = b
        .members()
        .iter()
        .map(|m| a.member_index(m.id.as_str()).map_or(0, |i| loads[i]))
        .collect();
    let ideal = crate::ideal::least_moved_uncontested(&held, to);
    Some(NearChanges {
        moves,
        cleanups,
        ideal,
    })
}

fn wrap(position: usize, len: usize) -> usize {
    if position == len { 0 } else { position }
}

/// A place in the merged sequence of both rings' tokens: `(i, j)`, the
/// position of the first token of `a` and of `b` at or after it (their
/// array lengths when there is none). Its token is the smaller of the two.
/// Ordered as the sequence is.
type At = (usize, usize);

/// The two rings' tokens merged, and which of them changed.
struct Merged<'r> {
    a: &'r [Token],
    b: &'r [Token],
    /// Distinct tokens of both rings.
    count: usize,
    /// Places of the changed tokens, in order.
    changed: Vec<At>,
}

impl<'r> Merged<'r> {
    fn new(ring_a: &'r Ring, ring_b: &'r Ring) -> Self {
        let (a, b) = (ring_a.tokens(), ring_b.tokens());
        let (owners_a, owners_b) = (ring_a.owner_indices(), ring_b.owner_indices());
        // A member of `a` → the same member in `b`, if it is there in the
        // same zone (a token owned by it in both rings is unchanged).
        let same: Vec<u32> = ring_a
            .members()
            .iter()
            .map(|m| match ring_b.member_index(m.id.as_str()) {
                Some(i) if ring_b.members()[i].zone == m.zone => i as u32,
                _ => NONE,
            })
            .collect();
        let mut changed = Vec::new();
        let (mut i, mut j, mut count) = (0, 0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            if x == y {
                if same[owners_a[i] as usize] != owners_b[j] {
                    changed.push((i, j));
                }
                i += 1;
                j += 1;
            } else if x < y {
                changed.push((i, j));
                i += 1;
            } else {
                changed.push((i, j));
                j += 1;
            }
            count += 1;
        }
        changed.extend((i..a.len()).map(|i| (i, b.len())));
        changed.extend((j..b.len()).map(|j| (a.len(), j)));
        count += (a.len() - i) + (b.len() - j);
        Self {
            a,
            b,
            count,
            changed,
        }
    }

    fn token(&self, (i, j): At) -> Token {
        match (self.a.get(i), self.b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("a place holds a token"),
        }
    }

    fn last_token(&self) -> Token {
        match (self.a.last(), self.b.last()) {
            (Some(&x), Some(&y)) => x.max(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("rings are not empty"),
        }
    }

    /// Whether `a` has a token at `at`.
    fn in_a(&self, (i, j): At) -> bool {
        i < self.a.len() && self.b.get(j).is_none_or(|&y| self.a[i] <= y)
    }

    /// The place before `at`, wrapping from the first to the last.
    fn back(&self, (i, j): At) -> At {
        let (i, j) = if (i, j) == (0, 0) {
            (self.a.len(), self.b.len())
        } else {
            (i, j)
        };
        let x = i.checked_sub(1).map(|p| self.a[p]);
        let y = j.checked_sub(1).map(|p| self.b[p]);
        let t = x.max(y);
        (
            if x == t && x.is_some() { i - 1 } else { i },
            if y == t && y.is_some() { j - 1 } else { j },
        )
    }

    /// The places whose ranges' walks over `ring` (ring `a`) may read a
    /// changed token, in order.
    fn candidates(&self, ring: &Ring, replication: &Replication, zone_walk: bool) -> Vec<At> {
        let owners = ring.owner_indices();
        let rf = replication.factor;
        let zones_wanted = rf.min(ring.zone_count());
        // Members and zones of `a` seen in the stretch searched, for the
        // search of changed token `stamp` (no clearing between searches).
        let mut seen_in: Vec<usize> = vec![usize::MAX; ring.len()];
        let mut out: Vec<At> = Vec::new();
        for (stamp, &changed) in self.changed.iter().enumerate() {
            let mut at = changed;
            let (mut members, mut zones) = (0usize, 0u64);
            // At most once around the ring.
            for _ in 0..self.count {
                out.push(at);
                at = self.back(at);
                if self.changed.binary_search(&at).is_ok() {
                    // Its own search goes on from here.
                    break;
                }
                if self.in_a(at) {
                    let member = owners[at.0] as usize;
                    if seen_in[member] != stamp {
                        seen_in[member] = stamp;
                        members += 1;
                    }
                    if zone_walk {
                        zones |= 1u64 << ring.zone_index(member);
                    }
                }
                // The tokens of `a` from `at` up to the changed one complete
                // a walk from `at`: its replicas are decided before the
                // change, and so for every range before it.
                if members >= rf && (!zone_walk || zones.count_ones() as usize >= zones_wanted) {
                    break;
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
