//! Tokens, token ranges and key hashing.
//!
//! The token space is the whole of `u64` and wraps around: after `u64::MAX`
//! comes `0`. A range is written `(start, end]`: it holds every token `t` with
//! `start < t <= end`, walking clockwise from `start`, so a range whose `end`
//! is smaller than its `start` crosses zero. A range with `start == end` is the
//! whole circle (a ring with a single token owns everything).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point of the token space.
pub type Token = u64;

/// The size of the whole token space, 2^64, which does not fit a `u64`.
pub const TOKEN_SPACE: u128 = 1 << 64;

/// Hashes a key into the token space with xxh3-64 (seed 0).
///
/// Every client of the ring must hash the same way; xxh3-64 of the raw key
/// bytes is the contract (DESIGN §3).
#[inline]
pub fn hash_key(key: &[u8]) -> Token {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// A half-open arc `(start, end]` of the token space, clockwise, wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenRange {
    /// Exclusive start.
    pub start: Token,
    /// Inclusive end.
    pub end: Token,
}

impl TokenRange {
    /// The range `(start, end]`.
    pub const fn new(start: Token, end: Token) -> Self {
        Self { start, end }
    }

    /// The whole circle (expressed as `(t, t]` for any `t`; we use 0).
    pub const FULL: TokenRange = TokenRange { start: 0, end: 0 };

    /// Whether this range is the whole circle.
    pub const fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Number of tokens in the range, between 1 and 2^64.
    pub fn len(&self) -> u128 {
        if self.is_full() {
            TOKEN_SPACE
        } else {
            self.end.wrapping_sub(self.start) as u128
        }
    }

    /// A range is never empty: `(t, t]` is the full circle. Provided for
    /// clippy's `len_without_is_empty`, always `false`.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The fraction of the token space this range covers.
    pub fn fraction(&self) -> f64 {
        self.len() as f64 / TOKEN_SPACE as f64
    }

    /// Whether `token` lies in `(start, end]`, wrap-around included.
    pub fn contains(&self, token: Token) -> bool {
        if self.is_full() {
            return true;
        }
        // Shift so that `start` becomes 0: then the range is (0, len].
        let offset = token.wrapping_sub(self.start);
        offset != 0 && offset <= self.end.wrapping_sub(self.start)
    }

    /// Whether the range crosses zero (its end is clockwise past `u64::MAX`).
    pub const fn wraps(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for TokenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_handles_wrap_around() {
        let r = TokenRange::new(u64::MAX - 1, 1);
        assert!(r.contains(u64::MAX));
        assert!(r.contains(0));
        assert!(r.contains(1));
        assert!(!r.contains(u64::MAX - 1));
        assert!(!r.contains(2));
        assert_eq!(r.len(), 3);
        assert!(r.wraps());
    }

    #[test]
    fn equal_bounds_mean_the_full_circle() {
        let r = TokenRange::new(5, 5);
        assert!(r.is_full());
        assert_eq!(r.len(), TOKEN_SPACE);
        assert!(r.contains(5) && r.contains(0) && r.contains(u64::MAX));
    }

    #[test]
    fn hash_is_xxh3_64() {
        // Reference value of xxh3-64("") with seed 0.
        assert_eq!(hash_key(b""), 0x2d06_8005_38d3_94c2);
    }
}
