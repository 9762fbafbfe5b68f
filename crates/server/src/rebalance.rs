//! Bringing a one-replica target back within the allocator's balance bound,
//! paying the least movement from where the data is.
//!
//! The coordinator picks a revision's target among several edits (of the
//! in-flight target, of the committed ring, of the rings of the holdings):
//! the one that leaves least to move. That one can be unbalanced — the edit
//! of a ring of the holdings inherits the holdings' unevenness, and the
//! allocator's own polish is bounded by a share of the edit's ideal — and an
//! unbalanced committed ring makes the *next* plan pay to repair it (seed
//! 219,731 of the simulator: a revision committed a four-member ring at
//! balance 1.225; the next join moved 1.094× its ideal). [`polish_towards`]
//! repairs such a target where the repair is cheapest: it hands away first
//! what the over-loaded member does not hold yet (it would have to receive
//! it: giving it to someone else moves the same data) or what the receiver
//! holds already (that moves less), and only then data held, and that only
//! down to the bound.

use ringleader_planner::Holdings;
use ringleader_ring::{MemberId, Ring, TOKEN_SPACE, Token, TokenRange};

pub(crate) use ringleader_ring::one_replica_balance_bound as balance_bound;

/// Balances below the bound by less than this count as within it (float
/// rounding of loads summed in tokens).
const ROUNDING: f64 = 1e-9;

/// Whether [`polish_towards`] has anything to do for `ring`: it has two
/// members or more and one over `bound`. Callers whose holdings cost a pass
/// over the ring to gather ask first (a fresh plan at 1,000 × 256 is within
/// the bound nearly always, and gathering them was a millisecond of it).
pub(crate) fn needs_polish(ring: &Ring, bound: f64) -> bool {
    ring.len() >= 2 && ring.balance() > bound + ROUNDING
}

/// A piece of the ring between two consecutive boundaries (ring tokens and
/// holdings boundaries): one owner in the ring, one set of holders.
struct Piece {
    range: TokenRange,
    owner: usize,
    holders: Vec<usize>,
}

/// `ring` (for one replica) with no member over `bound`, moving the least
/// data beyond what `ring` moves from `held`; `None` when `ring` is within
/// the bound already, or is empty.
///
/// Greedy, in three passes per over-loaded member (most loaded first):
/// 1. pieces a member under target already holds go to it (less to move);
/// 2. pieces the over-loaded member does not hold go to the member furthest
///    under target (the same data moves, to someone who lacks it);
/// 3. only if the member is still over `bound`: pieces it holds, to the
///    member furthest under target, down to `bound` (this is the extra
///    movement balance costs).
///
/// Passes 1 and 2 bring the member down to its target, pass 3 only to the
/// bound. Receivers never go over their target, so no member becomes
/// over-loaded by receiving; a piece larger than what is handed over is cut
/// (one new token).
pub(crate) fn polish_towards(ring: &Ring, held: &Holdings, bound: f64) -> Option<Ring> {
    if !needs_polish(ring, bound) {
        return None;
    }
    let members = ring.members();
    let index_of = |id: &MemberId| members.iter().position(|m| m.id == *id);
    let targets: Vec<f64> = ring
        .targets()
        .iter()
        .map(|t| t * TOKEN_SPACE as f64)
        .collect();

    // Every boundary of the ring and of the holdings.
    let mut ends: Vec<Token> = ring.tokens().to_vec();
    ends.extend(held.canonical().iter().map(|(r, _)| r.end));
    ends.sort_unstable();
    ends.dedup();
    let n = ends.len();
    let mut pieces: Vec<Piece> = (0..n)
        .map(|k| {
            let range = if n == 1 {
                TokenRange::FULL
            } else {
                TokenRange::new(ends[(k + n - 1) % n], ends[k])
            };
            let owner = ring
                .owner_of_token(ends[k])
                .ok()
                .and_then(index_of)
                .expect("the ring owns every token");
            let holders = held
                .holders_of(ends[k])
                .into_iter()
                .filter_map(index_of)
                .collect();
            Piece {
                range,
                owner,
                holders,
            }
        })
        .collect();
    let mut load: Vec<f64> = vec![0.0; members.len()];
    for p in &pieces {
        load[p.owner] += p.range.len() as f64;
    }
    let pressure = |load: &[f64], m: usize| load[m] / targets[m];

    // Each round hands over one piece (or part of one): bounded by the
    // pieces there are, the cuts they may take and the members.
    let mut rounds = 4 * (pieces.len() + members.len());
    while let Some(high) = (0..members.len()).max_by(|&a, &b| {
        pressure(&load, a)
            .total_cmp(&pressure(&load, b))
            .then_with(|| b.cmp(&a))
    }) {
        if pressure(&load, high) <= bound + ROUNDING || rounds == 0 {
            break;
        }
        let mut progressed = false;
        for pass in 1..=3 {
            let goal = if pass == 3 {
                bound * targets[high]
            } else {
                targets[high]
            };
            let mut k = 0;
            while k < pieces.len() && load[high] > goal + 1.0 && rounds > 0 {
                let piece = &pieces[k];
                let receiver = if piece.owner != high {
                    None
                } else {
                    match pass {
                        1 => piece
                            .holders
                            .iter()
                            .copied()
                            .filter(|&m| m != high && load[m] + 1.0 < targets[m])
                            .min_by(|&a, &b| {
                                pressure(&load, a)
                                    .total_cmp(&pressure(&load, b))
                                    .then_with(|| a.cmp(&b))
                            }),
                        2 if piece.holders.contains(&high) => None,
                        _ => (0..members.len())
                            .filter(|&m| m != high && load[m] + 1.0 < targets[m])
                            .min_by(|&a, &b| {
                                pressure(&load, a)
                                    .total_cmp(&pressure(&load, b))
                                    .then_with(|| a.cmp(&b))
                            }),
                    }
                };
                let Some(receiver) = receiver else {
                    k += 1;
                    continue;
                };
                rounds -= 1;
                let (range, holders) = (piece.range, piece.holders.clone());
                let len = range.len();
                let room = (targets[receiver] - load[receiver]).min(load[high] - goal);
                let amount = (room.max(1.0) as u128).min(len);
                if amount == len {
                    pieces[k].owner = receiver;
                } else {
                    // Cut (start, start + amount] off for the receiver: the
                    // rest stays with `high` (its end token is unchanged).
                    let cut = range.start.wrapping_add(amount as u64);
                    pieces[k].range = TokenRange::new(cut, range.end);
                    pieces.insert(
                        k,
                        Piece {
                            range: TokenRange::new(range.start, cut),
                            owner: receiver,
                            holders,
                        },
                    );
                    k += 1;
                }
                load[high] -= amount as f64;
                load[receiver] += amount as f64;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }

    // One token per run of one owner, at the run's end.
    let n = pieces.len();
    let tokens: Vec<(Token, MemberId)> = (0..n)
        .filter(|&k| n == 1 || pieces[k].owner != pieces[(k + 1) % n].owner)
        .map(|k| (pieces[k].range.end, members[pieces[k].owner].id.clone()))
        .collect();
    let tokens = if tokens.is_empty() {
        vec![(
            pieces[n - 1].range.end,
            members[pieces[n - 1].owner].id.clone(),
        )]
    } else {
        tokens
    };
    // A member that gave everything away would leave the ring: keep the
    // original then (the allocator never empties a member either).
    let owning: std::collections::BTreeSet<&MemberId> = tokens.iter().map(|(_, m)| m).collect();
    if owning.len() != members.len() {
        return None;
    }
    Ring::from_assignments(ring.config(), members.iter().cloned(), tokens).ok()
}
