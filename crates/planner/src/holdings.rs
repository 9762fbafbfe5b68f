//! Holdings: which members hold a copy of each arc of the token space.
//!
//! A placement says where data must be; holdings say where it is. They are
//! the same right after a commit, and differ while a plan is in flight: a
//! move that is done adds its target to its range, and the old holders keep
//! their copy until they clean up. Plans are computed between holdings, so
//! "plan from the committed placement" and "plan again from what is true now"
//! are the same code.

use crate::Placement;
use ringleader_ring::{MemberId, Token, TokenRange};
use std::collections::BTreeSet;

/// A piecewise-constant map from the token space to sets of members.
///
/// Segment `i` is `(ends[i - 1], ends[i]]`, segment 0 wrapping around from
/// the last end. Members are indices into `roster` (sorted ids), and each
/// segment's members are sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holdings {
    pub(crate) roster: Vec<MemberId>,
    pub(crate) ends: Vec<Token>,
    /// `members[offsets[i]..offsets[i + 1]]` hold segment `i`.
    pub(crate) offsets: Vec<u32>,
    pub(crate) members: Vec<u32>,
}

impl Holdings {
    /// Nobody holds anything (the placement of an empty ring).
    pub fn empty() -> Self {
        Self {
            roster: Vec::new(),
            ends: Vec::new(),
            offsets: vec![0],
            members: Vec::new(),
        }
    }

    /// Where a placement puts every range: its replica sets.
    pub fn of(placement: &Placement) -> Self {
        let ring = placement.ring();
        if ring.is_empty() {
            return Self::empty();
        }
        let replication = placement.effective_replication();
        let n = ring.tokens().len();
        if replication.factor == 1 {
            // One replica: the holder of each range is its owner.
            return Self {
                roster: ring.members().iter().map(|m| m.id.clone()).collect(),
                ends: ring.tokens().to_vec(),
                offsets: (0..=n as u32).collect(),
                members: ring.owner_indices().to_vec(),
            };
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut members = Vec::with_capacity(n * replication.factor);
        let mut picked = Vec::with_capacity(replication.factor);
        offsets.push(0);
        for position in 0..n {
            ring.replica_indices_at(position, &replication, &mut picked);
            picked.sort_unstable();
            members.extend_from_slice(&picked);
            offsets.push(members.len() as u32);
        }
        Self {
            roster: ring.members().iter().map(|m| m.id.clone()).collect(),
            ends: ring.tokens().to_vec(),
            offsets,
            members,
        }
    }

    /// What each member of [`Holdings::roster`] holds, in tokens (a range
    /// held by k members counts for each of them).
    pub fn loads(&self) -> Vec<u128> {
        let mut loads = vec![0u128; self.roster.len()];
        for i in 0..self.ends.len() {
            let len = self.range(i).len();
            for &m in self.segment(i) {
                loads[m as usize] += len;
            }
        }
        loads
    }

    /// Whether nobody holds anything.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Members that appear anywhere, sorted.
    pub fn roster(&self) -> &[MemberId] {
        &self.roster
    }

    pub(crate) fn segment(&self, i: usize) -> &[u32] {
        &self.members[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub(crate) fn range(&self, i: usize) -> TokenRange {
        let start = if i == 0 {
            self.ends[self.ends.len() - 1]
        } else {
            self.ends[i - 1]
        };
        TokenRange::new(start, self.ends[i])
    }

    /// Position of the segment holding `token`.
    pub(crate) fn segment_of(&self, token: Token) -> usize {
        let p = self.ends.partition_point(|&e| e < token);
        if p == self.ends.len() { 0 } else { p }
    }

    /// The members holding `token`.
    pub fn holders_of(&self, token: Token) -> Vec<&MemberId> {
        if self.is_empty() {
            return Vec::new();
        }
        self.segment(self.segment_of(token))
            .iter()
            .map(|&m| &self.roster[m as usize])
            .collect()
    }

    /// Whether every arc overlapping `range` satisfies `check`, given its
    /// holders (indices into [`Holdings::roster`]). Over no holdings, `check`
    /// sees one empty set.
    pub(crate) fn all_over(
        &self,
        range: TokenRange,
        mut check: impl FnMut(&[u32]) -> bool,
    ) -> bool {
        if self.is_empty() {
            return check(&[]);
        }
        let n = self.ends.len();
        if range.is_full() {
            return (0..n).all(|i| check(self.segment(i)));
        }
        let first = self.segment_of(range.start.wrapping_add(1));
        let last = self.segment_of(range.end);
        // Both ends in one arc: the range lies inside it, unless it is
        // longer than the arc (then it wraps all the way round).
        if first == last && (n == 1 || range.len() > self.range(first).len()) {
            return (0..n).all(|i| check(self.segment(i)));
        }
        let mut i = first;
        loop {
            if !check(self.segment(i)) {
                return false;
            }
            if i == last {
                return true;
            }
            i = (i + 1) % n;
        }
    }

    /// Whether `member` holds every token of `range`.
    pub fn holds_all(&self, member: &MemberId, range: TokenRange) -> bool {
        let Ok(index) = self.roster.binary_search(member) else {
            return false;
        };
        self.all_over(range, |held| held.contains(&(index as u32)))
    }

    /// Whether `member` holds no token of `range`.
    pub fn holds_none(&self, member: &MemberId, range: TokenRange) -> bool {
        let Ok(index) = self.roster.binary_search(member) else {
            return true;
        };
        self.all_over(range, |held| !held.contains(&(index as u32)))
    }

    /// Every member holding some token of `range`, sorted.
    pub fn holders_over(&self, range: TokenRange) -> Vec<&MemberId> {
        let mut found = BTreeSet::new();
        self.all_over(range, |held| {
            found.extend(held.iter().copied());
            true
        });
        found
            .into_iter()
            .map(|m| &self.roster[m as usize])
            .collect()
    }

    /// Every arc with its holders, adjacent arcs with equal holders merged
    /// (across the wrap-around too): two holdings are equivalent exactly when
    /// their canonical forms are equal.
    pub fn canonical(&self) -> Vec<(TokenRange, Vec<MemberId>)> {
        if self.is_empty() {
            return Vec::new();
        }
        let n = self.ends.len();
        let same = |a: usize, b: usize| self.segment(a) == self.segment(b);
        // Start after a boundary where the holders change, if there is one.
        let Some(first) = (0..n).find(|&i| !same(i, (i + n - 1) % n)) else {
            let ids = self
                .segment(0)
                .iter()
                .map(|&m| self.roster[m as usize].clone())
                .collect();
            return vec![(TokenRange::FULL, ids)];
        };
        let mut out: Vec<(TokenRange, Vec<MemberId>)> = Vec::new();
        let mut i = first;
        let mut count = 0;
        while count < n {
            let start = self.range(i).start;
            let mut end_index = i;
            count += 1;
            while count < n && same((end_index + 1) % n, i) {
                end_index = (end_index + 1) % n;
                count += 1;
            }
            let ids = self
                .segment(i)
                .iter()
                .map(|&m| self.roster[m as usize].clone())
                .collect();
            out.push((TokenRange::new(start, self.ends[end_index]), ids));
            i = (end_index + 1) % n;
        }
        out.sort_by_key(|(r, _)| r.end);
        out
    }

    /// These holdings with `add` ranges gained and `remove` ranges dropped
    /// by the given members (adds first, then removes).
    pub fn overlay<'a>(
        &self,
        add: impl IntoIterator<Item = (TokenRange, &'a MemberId)>,
        remove: impl IntoIterator<Item = (TokenRange, &'a MemberId)>,
    ) -> Holdings {
        let add: Vec<(TokenRange, &MemberId)> = add.into_iter().collect();
        let remove: Vec<(TokenRange, &MemberId)> = remove.into_iter().collect();
        // Boundaries: ours and every edge of every change.
        let mut ends: BTreeSet<Token> = self.ends.iter().copied().collect();
        for (r, _) in add.iter().chain(&remove) {
            ends.insert(r.start);
            ends.insert(r.end);
        }
        let ends: Vec<Token> = ends.into_iter().collect();
        let mut roster: BTreeSet<MemberId> = self.roster.iter().cloned().collect();
        roster.extend(add.iter().map(|(_, m)| (*m).clone()));
        let roster: Vec<MemberId> = roster.into_iter().collect();
        let index_of = |id: &MemberId| roster.binary_search(id).expect("in roster") as u32;
        let remap: Vec<u32> = self.roster.iter().map(index_of).collect();

        let mut sets: Vec<Vec<u32>> = ends
            .iter()
            .map(|&e| {
                if self.is_empty() {
                    Vec::new()
                } else {
                    self.segment(self.segment_of(e))
                        .iter()
                        .map(|&m| remap[m as usize])
                        .collect()
                }
            })
            .collect();
        // The segments inside `r`: its edges are boundaries, so they are the
        // segments after the one ending at `r.start`, up to the one ending at
        // `r.end`, cyclically.
        let covered = |r: &TokenRange| -> Vec<usize> {
            let n = ends.len();
            if r.is_full() {
                return (0..n).collect();
            }
            let position = |t: Token| ends.binary_search(&t).expect("edges are boundaries");
            let (first, last) = ((position(r.start) + 1) % n, position(r.end));
            let mut out = Vec::new();
            let mut i = first;
            loop {
                out.push(i);
                if i == last {
                    return out;
                }
                i = (i + 1) % n;
            }
        };
        for (r, m) in &add {
            let m = index_of(m);
            for i in covered(r) {
                if !sets[i].contains(&m) {
                    sets[i].push(m);
                }
            }
        }
        for (r, m) in &remove {
            let Ok(m) = roster.binary_search(m) else {
                continue;
            };
            for i in covered(r) {
                sets[i].retain(|&x| x != m as u32);
            }
        }
        let mut offsets = Vec::with_capacity(ends.len() + 1);
        let mut members = Vec::new();
        offsets.push(0);
        for mut set in sets {
            set.sort_unstable();
            members.extend(set);
            offsets.push(members.len() as u32);
        }
        Holdings {
            roster,
            ends,
            offsets,
            members,
        }
    }
}
