//! A radix index over the sorted token array: the lookup hot path.
//!
//! A plain binary search over 256,000 tokens touches ~18 cache lines that are
//! mostly cold. Instead we split the token space into `2^bits` equal buckets
//! by the top bits of a token and remember, for each bucket, the position of
//! the first token that falls in it or after it. A lookup reads one entry of
//! that table and then scans the handful of tokens of one bucket (about one on
//! average, as we size the table to the token count): two dependent memory
//! reads instead of eighteen.

use crate::Token;

/// A token and its owner side by side, so a lookup that finds the token
/// has the owner in the same cache line.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    token: Token,
    owner: u32,
}

/// Positions of the first token at or after each bucket of the token space.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenIndex {
    /// `64 - bits`: a token's bucket is `token >> shift`.
    shift: u32,
    /// `starts[b]` is the position in the token array of the first token whose
    /// bucket is `>= b`; `starts[buckets] == tokens.len()`.
    starts: Vec<u32>,
    /// Tokens with their owners, in token order.
    entries: Vec<Entry>,
}

impl TokenIndex {
    /// Builds the index for `tokens`, which must be sorted, owned by
    /// `owners`.
    pub(crate) fn build(tokens: &[Token], owners: &[u32]) -> Self {
        // About one token per bucket, between 2^4 and 2^22 buckets (16 MiB at
        // most for 4 M tokens, which is beyond any ring we expect).
        let bits = (usize::BITS - tokens.len().max(1).leading_zeros()).clamp(4, 22);
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut position = 0usize;
        for bucket in 0..buckets {
            while position < tokens.len() && ((tokens[position] >> shift) as usize) < bucket {
                position += 1;
            }
            starts.push(position as u32);
        }
        starts.push(tokens.len() as u32);
        let entries = tokens
            .iter()
            .zip(owners)
            .map(|(&token, &owner)| Entry { token, owner })
            .collect();
        Self {
            shift,
            starts,
            entries,
        }
    }

    /// The position of the first token `>= hash` (wrapping to 0 past the
    /// end) and its owner. The index must not be empty.
    #[inline]
    pub(crate) fn lookup(&self, hash: Token) -> (usize, u32) {
        let bucket = (hash >> self.shift) as usize;
        let start = self.starts[bucket] as usize;
        let end = self.starts[bucket + 1] as usize;
        // Tokens of this bucket; when none is >= hash, the answer is the first
        // token of a later bucket, which is `end` (or wraps to 0).
        let mut position = end;
        for (offset, entry) in self.entries[start..end].iter().enumerate() {
            if entry.token >= hash {
                position = start + offset;
                break;
            }
        }
        if position == self.entries.len() {
            position = 0;
        }
        (position, self.entries[position].owner)
    }

    /// The owner of the token at `position`, read from the same cache lines
    /// a lookup just touched (replica walks start there).
    #[inline]
    pub(crate) fn owner_at(&self, position: usize) -> u32 {
        self.entries[position].owner
    }

    /// The position of the first token `>= hash`, wrapping to 0.
    #[inline]
    pub(crate) fn successor(&self, hash: Token) -> usize {
        self.lookup(hash).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(tokens: &[Token], hash: Token) -> usize {
        let p = tokens.partition_point(|&t| t < hash);
        if p == tokens.len() { 0 } else { p }
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
        let owners: Vec<u32> = (0..tokens.len() as u32).collect();
        let index = TokenIndex::build(&tokens, &owners);
        for &probe in &[
            0,
            1,
            2,
            5,
            6,
            u64::MAX / 2,
            u64::MAX / 2 + 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let expected = reference(&tokens, probe);
            assert_eq!(index.lookup(probe), (expected, expected as u32), "{probe}");
        }
    }

    #[test]
    fn single_token_always_wins() {
        let index = TokenIndex::build(&[42], &[7]);
        for probe in [0, 41, 42, 43, u64::MAX] {
            assert_eq!(index.lookup(probe), (0, 7));
        }
    }
}
