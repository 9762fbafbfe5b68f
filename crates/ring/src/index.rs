//! A radix index over the sorted token array: the lookup hot path.
//!
//! A plain binary search over 256,000 tokens touches ~18 cache lines that are
//! mostly cold, and at every size it pays a dependent load per halving.
//! Instead we split the token space into `2^bits` equal buckets by the top
//! bits of a token, with more buckets than tokens, so that most buckets hold
//! no token or one. Each bucket remembers its first token, the position of
//! that token (of the first token after the bucket when it has none) and
//! that token's owner. A key whose bucket holds at most one token is then
//! answered from its bucket and the next one, which share a cache line three
//! times out of four: one dependent memory read and a comparison the
//! compiler turns into a conditional move, no branch to mispredict. Keys in
//! the few buckets that hold two tokens or more count the bucket's tokens
//! below them in the ring's token array (a short, branch-free scan).

use crate::Token;

/// One bucket of the token space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    /// The first token in the bucket, or `Token::MAX` when it holds none
    /// (then every hash of the bucket is at or before it, as it should be:
    /// the answer is the first token after the bucket). A bucket whose only
    /// token is `Token::MAX` is told apart by the positions.
    first: Token,
    /// Position of the first token at or after the start of the bucket,
    /// `tokens.len()` when there is none (the answer then wraps to 0).
    position: u32,
    /// Owner of the token at `position` (wrapped to 0).
    owner: u32,
}

/// Buckets over the token space, for a sorted token array held elsewhere
/// (the ring's), passed to every query.
#[derive(Clone, Debug)]
pub(crate) struct TokenIndex {
    /// `64 - bits`: a token's bucket is `token >> shift`.
    shift: u32,
    /// `2^bits` buckets and a last one standing for "past the end", whose
    /// position is `tokens.len()` and whose owner is the first token's: the
    /// answer for hashes beyond the last token wraps around.
    buckets: Vec<Bucket>,
}

/// How many bits of bucket for `n` tokens (16 bytes a bucket): up to 4,096
/// tokens, four buckets per token or more (at most 256 KiB, which stays in
/// L2, and fewer than one bucket in 30 holds two tokens or more); up to
/// 65,536, two or more (one bucket in 11); beyond, one or more (one in 4;
/// 4 MiB at 256,000 tokens, where a larger table measured no faster for
/// owners and slower for replica walks, whose owner array it pushes out
/// of the cache).
fn bits_for(n: usize) -> u32 {
    let log = usize::BITS - n.max(1).saturating_sub(1).leading_zeros(); // ceil(log2 n)
    let extra = match log {
        0..=12 => 2,
        13..=16 => 1,
        _ => 0,
    };
    (log + extra).clamp(4, 24)
}

impl TokenIndex {
    /// Builds the index for `tokens`, which must be sorted and distinct, owned
    /// by `owners`, and fewer than `u32::MAX`.
    pub(crate) fn build(tokens: &[Token], owners: &[u32]) -> Self {
        debug_assert_eq!(tokens.len(), owners.len());
        debug_assert!(tokens.len() < u32::MAX as usize);
        let bits = bits_for(tokens.len());
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let owner_at = |position: usize| -> u32 {
            if position < owners.len() {
                owners[position]
            } else {
                owners.first().copied().unwrap_or(0)
            }
        };
        let mut table = Vec::with_capacity(buckets + 1);
        let mut position = 0usize;
        for bucket in 0..buckets {
            while position < tokens.len() && ((tokens[position] >> shift) as usize) < bucket {
                position += 1;
            }
            let first = match tokens.get(position) {
                Some(&t) if (t >> shift) as usize == bucket => t,
                _ => Token::MAX,
            };
            table.push(Bucket {
                first,
                position: position as u32,
                owner: owner_at(position),
            });
        }
        table.push(Bucket {
            first: Token::MAX,
            position: tokens.len() as u32,
            owner: owner_at(tokens.len()),
        });
        Self {
            shift,
            buckets: table,
        }
    }

    /// The bucket of `hash` and the one after it.
    #[inline(always)]
    fn pair(&self, hash: Token) -> (Bucket, Bucket) {
        let b = (hash >> self.shift) as usize;
        match self.buckets.get(b..b + 2) {
            Some(&[here, next]) => (here, next),
            // `b < 2^bits` and there are `2^bits + 1` buckets.
            _ => unreachable!("bucket {b} out of the table"),
        }
    }

    /// The owner of the first token `>= hash`, wrapping around. `tokens` and
    /// `owners` are the arrays the index was built from, not empty.
    #[inline]
    pub(crate) fn owner(&self, tokens: &[Token], owners: &[u32], hash: Token) -> u32 {
        let (here, next) = self.pair(hash);
        if next.position - here.position <= 1 {
            // At most one token in the bucket: it is `here.first` (or there
            // is none and `here.first` is `MAX`), and past it comes `next`.
            if hash > here.first {
                next.owner
            } else {
                here.owner
            }
        } else {
            self.dense(tokens, owners, here, next, hash).1
        }
    }

    /// The position of the first token `>= hash` (wrapping to 0 past the end)
    /// and its owner. `tokens` and `owners` are the arrays the index was
    /// built from, not empty.
    #[inline]
    pub(crate) fn lookup(&self, tokens: &[Token], owners: &[u32], hash: Token) -> (usize, u32) {
        let (here, next) = self.pair(hash);
        let (position, owner) = if next.position - here.position <= 1 {
            let after = hash > here.first;
            (
                here.position as usize + usize::from(after),
                if after { next.owner } else { here.owner },
            )
        } else {
            self.dense(tokens, owners, here, next, hash)
        };
        (
            if position == tokens.len() {
                0
            } else {
                position
            },
            owner,
        )
    }

    /// A bucket with two tokens or more: count those below `hash`. The
    /// position is not wrapped yet.
    #[cold]
    #[inline(never)]
    fn dense(
        &self,
        tokens: &[Token],
        owners: &[u32],
        here: Bucket,
        next: Bucket,
        hash: Token,
    ) -> (usize, u32) {
        let start = here.position as usize;
        let end = next.position as usize;
        // No early exit: tokens are sorted, so the ones below `hash` are a
        // prefix, and counting them all is a loop without a data branch.
        let below = tokens[start..end].iter().filter(|&&t| t < hash).count();
        let position = start + below;
        let owner = if position == end {
            next.owner
        } else {
            owners[position]
        };
        (position, owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(tokens: &[Token], hash: Token) -> usize {
        let p = tokens.partition_point(|&t| t < hash);
        if p == tokens.len() { 0 } else { p }
    }

    fn check(tokens: &[Token], probes: impl IntoIterator<Item = Token>) {
        let owners: Vec<u32> = (0..tokens.len() as u32).map(|i| i * 7 + 3).collect();
        let index = TokenIndex::build(tokens, &owners);
        for probe in probes {
            let expected = reference(tokens, probe);
            let want = (expected, owners[expected]);
            assert_eq!(index.lookup(tokens, &owners, probe), want, "{probe}");
            assert_eq!(index.owner(tokens, &owners, probe), want.1, "{probe}");
        }
    }

    /// Every token, its neighbours, and the edges of every bucket.
    fn edges(tokens: &[Token]) -> Vec<Token> {
        let shift = 64 - bits_for(tokens.len());
        let mut probes = vec![0, 1, u64::MAX - 1, u64::MAX];
        for &t in tokens {
            probes.extend([t, t.wrapping_add(1), t.wrapping_sub(1)]);
            let start = (t >> shift) << shift;
            probes.extend([start, start.wrapping_sub(1), start | ((1 << shift) - 1)]);
        }
        probes
    }

    #[test]
    fn agrees_with_partition_point_on_edges() {
        let tokens = vec![
            0,
            1,
            5,
            u64::MAX / 2,
            u64::MAX / 2 + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        check(&tokens, edges(&tokens));
    }

    #[test]
    fn single_token_always_wins() {
        for token in [0, 42, u64::MAX / 2, u64::MAX] {
            check(&[token], edges(&[token]).into_iter().chain([41, 43]));
        }
    }

    #[test]
    fn a_lone_max_token_is_not_mistaken_for_an_empty_bucket() {
        // The last bucket holds only `u64::MAX`, which is also the marker of
        // an empty bucket: hashes in it must still find that token.
        let tokens = [3, u64::MAX];
        check(&tokens, edges(&tokens));
    }

    #[test]
    fn crowded_buckets_and_wrap_around() {
        // Many tokens in one bucket at each end of the space, one lonely in
        // the middle: dense scans, and hashes past the last token wrap.
        let mut tokens: Vec<Token> = (0..40).collect();
        tokens.push(u64::MAX / 3);
        tokens.extend((0..40).map(|i| u64::MAX - 100 + i));
        check(&tokens, edges(&tokens));
    }

    #[test]
    fn random_rings_of_every_size() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [1usize, 2, 3, 15, 16, 17, 160, 1000, 5000, 20_000] {
            let mut tokens: Vec<Token> = (0..n).map(|_| next()).collect();
            tokens.sort_unstable();
            tokens.dedup();
            let probes: Vec<Token> = (0..2000).map(|_| next()).chain(edges(&tokens)).collect();
            check(&tokens, probes);
        }
    }
}
