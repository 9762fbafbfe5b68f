//! The token → owner map the balanced allocator edits (crate::alloc).
//!
//! An edit starts from a ring's sorted tokens and changes a few hundred of
//! them (a join at 256 tokens a member cuts about 256 ranges). The map was
//! a `BTreeMap` of every token: building it, walking it back into a sorted
//! array and freeing it was a tenth of a change at 256,000 tokens. Here the
//! ring's sorted array is kept as it is (owners copied, so they can be
//! reassigned), tokens dropped from it are marked, and tokens added go to a
//! small `BTreeMap` beside it. Neighbour searches are a binary search of the
//! array plus a search of the small map, and the result is a merge of the
//! two.
//!
//! Dropped positions are skipped through union-find links (path halving),
//! so a search costs about the same however many neighbours were dropped
//! (a change where everyone leaves drops all of them).

use crate::Token;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Marks a position of `base` whose token was dropped.
const DROPPED: u32 = u32::MAX;

#[derive(Default)]
pub(crate) struct TokenMap<'a> {
    /// The tokens the edit started from, sorted (the ring's own array,
    /// borrowed: a copy was 2 MB more at the peak of a change).
    base: &'a [Token],
    /// Owner (slot) of each `base` token, or `DROPPED`.
    owners: Vec<u32>,
    /// `left[j + 1]` leads to the last kept position at or before `j`
    /// (`left[0]` is the "none" root); `right[j]` to the first kept one at
    /// or after `j` (`right[base.len()]` is the "none" root). Empty until a
    /// token of `base` is dropped.
    left: Vec<Cell<u32>>,
    right: Vec<Cell<u32>>,
    /// Tokens not in `base` (or dropped from it and added again).
    added: BTreeMap<Token, usize>,
    /// How many tokens the map holds.
    len: usize,
}

impl<'a> TokenMap<'a> {
    /// A map of `tokens` (sorted, distinct) to `owners`.
    pub(crate) fn from_sorted(tokens: &'a [Token], owners: &[u32]) -> Self {
        debug_assert!(tokens.windows(2).all(|w| w[0] < w[1]));
        debug_assert_eq!(tokens.len(), owners.len());
        Self {
            base: tokens,
            owners: owners.to_vec(),
            left: Vec::new(),
            right: Vec::new(),
            added: BTreeMap::new(),
            len: tokens.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position of `t` in `base`, if it is there and kept.
    fn kept_position(&self, t: Token) -> Option<usize> {
        let at = self.base.binary_search(&t).ok()?;
        (self.owners[at] != DROPPED).then_some(at)
    }

    /// The owner of `t`, which must be in the map.
    pub(crate) fn owner(&self, t: Token) -> usize {
        match self.kept_position(t) {
            Some(at) => self.owners[at] as usize,
            None => self.added[&t],
        }
    }

    /// Sets the owner of `t`, adding it if it is not in the map.
    pub(crate) fn insert(&mut self, t: Token, owner: usize) {
        let slot = u32::try_from(owner).expect("fewer than 2^32 - 1 slots");
        assert_ne!(slot, DROPPED, "fewer than 2^32 - 1 slots");
        match self.kept_position(t) {
            Some(at) => self.owners[at] = slot,
            None => {
                if self.added.insert(t, owner).is_none() {
                    self.len += 1;
                }
            }
        }
    }

    /// Drops `t` (nothing if it is not in the map).
    pub(crate) fn remove(&mut self, t: Token) {
        if let Some(at) = self.kept_position(t) {
            if self.left.is_empty() {
                let n = self.base.len();
                self.left = (0..=n as u32).map(Cell::new).collect();
                self.right = (0..=n as u32).map(Cell::new).collect();
            }
            self.owners[at] = DROPPED;
            self.left[at + 1].set(at as u32);
            self.right[at].set(at as u32 + 1);
            self.len -= 1;
        } else if self.added.remove(&t).is_some() {
            self.len -= 1;
        }
    }

    /// The last kept position of `base` at or before `j`.
    fn kept_at_or_before(&self, j: usize) -> Option<usize> {
        if self.left.is_empty() {
            return Some(j);
        }
        let mut k = j + 1;
        loop {
            let parent = self.left[k].get() as usize;
            if parent == k {
                break;
            }
            let grand = self.left[parent].get();
            self.left[k].set(grand);
            k = grand as usize;
        }
        k.checked_sub(1)
    }

    /// The first kept position of `base` at or after `j`.
    fn kept_at_or_after(&self, j: usize) -> Option<usize> {
        let n = self.base.len();
        if self.left.is_empty() {
            return (j < n).then_some(j);
        }
        let mut k = j;
        loop {
            let parent = self.right[k].get() as usize;
            if parent == k {
                break;
            }
            let grand = self.right[parent].get();
            self.right[k].set(grand);
            k = grand as usize;
        }
        (k < n).then_some(k)
    }

    /// The largest token below `t`.
    pub(crate) fn before(&self, t: Token) -> Option<Token> {
        let end = self.base.partition_point(|&b| b < t);
        let kept = end
            .checked_sub(1)
            .and_then(|j| self.kept_at_or_before(j))
            .map(|j| self.base[j]);
        let added = self.added.range(..t).next_back().map(|(&a, _)| a);
        kept.max(added)
    }

    /// The smallest token above `t`.
    pub(crate) fn after(&self, t: Token) -> Option<Token> {
        let start = self.base.partition_point(|&b| b <= t);
        let kept = self.kept_at_or_after(start).map(|j| self.base[j]);
        let added = self
            .added
            .range((Bound::Excluded(t), Bound::Unbounded))
            .next()
            .map(|(&a, _)| a);
        match (kept, added) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The largest token.
    pub(crate) fn last(&self) -> Option<Token> {
        let kept = self
            .base
            .len()
            .checked_sub(1)
            .and_then(|j| self.kept_at_or_before(j))
            .map(|j| self.base[j]);
        kept.max(self.added.last_key_value().map(|(&a, _)| a))
    }

    /// The smallest token.
    pub(crate) fn first(&self) -> Option<Token> {
        let kept = self.kept_at_or_after(0).map(|j| self.base[j]);
        let added = self.added.first_key_value().map(|(&a, _)| a);
        match (kept, added) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every token, sorted, and its owner beside it: the parts of a ring,
    /// with no array of pairs between (at 256,000 tokens that was 4 MB
    /// more to fault in, fill and split on every change).
    pub(crate) fn into_parts(self) -> (Vec<Token>, Vec<u32>) {
        let mut tokens = Vec::with_capacity(self.len);
        let mut owners = Vec::with_capacity(self.len);
        let mut added = self.added.into_iter().peekable();
        for (&t, &owner) in self.base.iter().zip(&self.owners) {
            if owner == DROPPED {
                continue;
            }
            while let Some((a, o)) = added.next_if(|&(a, _)| a < t) {
                tokens.push(a);
                owners.push(o as u32);
            }
            tokens.push(t);
            owners.push(owner);
        }
        for (a, o) in added {
            tokens.push(a);
            owners.push(o as u32);
        }
        (tokens, owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map against a `BTreeMap` doing the same edits: random inserts,
    /// reassignments and drops (runs of them, and all of them), with every
    /// query after each.
    #[test]
    fn matches_a_btree_map_under_random_edits() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..40 {
            let n = [0usize, 1, 2, 7, 300][round % 5];
            // Small tokens so that edits hit existing and dropped ones.
            let mut tokens: Vec<Token> = (0..n).map(|_| next() % 1000).collect();
            tokens.sort_unstable();
            tokens.dedup();
            let owners: Vec<u32> = tokens.iter().map(|_| (next() % 5) as u32).collect();
            let mut map = TokenMap::from_sorted(&tokens, &owners);
            let mut reference: BTreeMap<Token, usize> = tokens
                .iter()
                .zip(&owners)
                .map(|(&t, &o)| (t, o as usize))
                .collect();
            for step in 0..600 {
                let t = next() % 1000;
                match next() % 4 {
                    0 => {
                        let owner = (next() % 7) as usize;
                        map.insert(t, owner);
                        reference.insert(t, owner);
                    }
                    1 if round % 2 == 0 && step > 300 => {
                        // Drop the smallest: long runs of dropped positions.
                        if let Some((&first, _)) = reference.first_key_value() {
                            map.remove(first);
                            reference.remove(&first);
                        }
                    }
                    _ => {
                        map.remove(t);
                        reference.remove(&t);
                    }
                }
                assert_eq!(map.is_empty(), reference.is_empty());
                assert_eq!(map.len, reference.len());
                let q = next() % 1000;
                assert_eq!(
                    map.before(q),
                    reference.range(..q).next_back().map(|(&k, _)| k)
                );
                assert_eq!(
                    map.after(q),
                    reference
                        .range((Bound::Excluded(q), Bound::Unbounded))
                        .next()
                        .map(|(&k, _)| k)
                );
                assert_eq!(map.first(), reference.keys().next().copied());
                assert_eq!(map.last(), reference.keys().next_back().copied());
                if let Some(&owner) = reference.get(&q) {
                    assert_eq!(map.owner(q), owner);
                }
            }
            let expected: Vec<(Token, usize)> = reference.into_iter().collect();
            let (tokens, owners) = map.into_parts();
            let entries: Vec<(Token, usize)> = tokens
                .into_iter()
                .zip(owners.into_iter().map(|o| o as usize))
                .collect();
            assert_eq!(entries, expected);
        }
    }
}
