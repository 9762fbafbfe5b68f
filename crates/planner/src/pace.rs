//! Pace: when moves run, never which moves exist.
//!
//! A plan that moves 500 ranges at once has every shard streaming while it
//! serves traffic. The pace bounds that: at most
//! [`Pace::max_moves_per_member`] moves are in progress per member (as
//! source or as target) and at most [`Pace::max_moves`] in all. A move
//! waits as `pending` until its turn, runs as `ready`, and frees its slots
//! the moment it is `done` (or `cancelled`).
//!
//! [`pace`] is a pure function of the plan, the limits and who is leaving,
//! so a restarted coordinator (or a replica) that paces the same plan gets
//! the same answer. It is *sticky*: a `ready` move stays ready (its target
//! may be streaming it), and pending moves fill the free slots in a fixed
//! order ([`turn_order`]):
//!
//! 1. moves out of members that are leaving the cluster (they go away, so
//!    their data must get out first);
//! 2. then the largest range first (the long transfers start early);
//! 3. then the move id (any fixed tie-break will do).
//!
//! The fill is work-conserving: a move whose members are busy is skipped,
//! and a later one whose members are free runs. Nobody starves: between
//! replans the set of open moves only shrinks, every `done` frees slots, and
//! the first pending move in the order whose members both have a free slot
//! is admitted, so every pending move is reached once the moves ahead of it
//! on its members have finished.
//!
//! A move whose source or target is *unavailable* (down within its grace:
//! it keeps its ranges, but cannot stream now) waits as `pending` and takes
//! no slot, so the others run in its place; once the member is back, the
//! next pace gives its moves their turn. A move already `ready` stays ready
//! when one of its members goes down: its target may be mid-stream and
//! retries, a move never goes back from ready to pending (what a shard was
//! told to run stays told), and it keeps its slots, so the limits hold the
//! moment the member is back.
//!
//! Pacing never adds, removes or changes a move: ids, ranges, sources and
//! targets (and so minimality) are the planner's alone.

use crate::plan::{MoveId, MoveState, Plan};
use ringleader_ring::MemberId;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;

/// How many moves may be in progress at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pace {
    /// At most this many moves in progress per member, counting the moves
    /// it sends and those it receives; `None`: no limit.
    #[serde(default = "default_per_member")]
    pub max_moves_per_member: Option<NonZeroU32>,
    /// At most this many moves in progress in the whole cluster; `None`:
    /// no limit.
    #[serde(default)]
    pub max_moves: Option<NonZeroU32>,
}

/// The default limit per member: 2.
pub const DEFAULT_MAX_MOVES_PER_MEMBER: NonZeroU32 = NonZeroU32::new(2).expect("2 is not 0");

fn default_per_member() -> Option<NonZeroU32> {
    Some(DEFAULT_MAX_MOVES_PER_MEMBER)
}

impl Default for Pace {
    /// Two moves per member, no cluster-wide limit.
    fn default() -> Self {
        Self {
            max_moves_per_member: default_per_member(),
            max_moves: None,
        }
    }
}

impl Pace {
    /// No limits: every move is ready at once.
    pub const UNLIMITED: Pace = Pace {
        max_moves_per_member: None,
        max_moves: None,
    };

    /// A pace with the given limits (`None` or 0: no limit).
    pub fn new(per_member: Option<u32>, total: Option<u32>) -> Self {
        Self {
            max_moves_per_member: per_member.and_then(NonZeroU32::new),
            max_moves: total.and_then(NonZeroU32::new),
        }
    }

    fn per_member(&self) -> usize {
        self.max_moves_per_member
            .map_or(usize::MAX, |n| n.get() as usize)
    }

    fn total(&self) -> usize {
        self.max_moves.map_or(usize::MAX, |n| n.get() as usize)
    }
}

/// The plan's pending moves (indices into `plan.moves`) in the order they
/// get their turn: leaving sources first, then the largest range, then the
/// id.
pub fn turn_order(plan: &Plan, leaving: impl Fn(&MemberId) -> bool) -> Vec<usize> {
    let mut pending: Vec<usize> = (0..plan.moves.len())
        .filter(|&i| plan.moves[i].state == MoveState::Pending)
        .collect();
    pending.sort_unstable_by_key(|&i| {
        let m = &plan.moves[i];
        (!leaving(&m.from), Reverse(m.range.len()), m.id.as_str())
    });
    pending
}

/// Moves in progress (`ready`) per member, as source or target.
pub fn in_progress(plan: &Plan) -> BTreeMap<MemberId, usize> {
    let mut counts = BTreeMap::new();
    for m in plan.moves.iter().filter(|m| m.state == MoveState::Ready) {
        *counts.entry(m.from.clone()).or_insert(0) += 1;
        *counts.entry(m.to.clone()).or_insert(0) += 1;
    }
    counts
}

/// Makes pending moves `ready` in their turn order as far as `pace`
/// allows; moves already ready stay so. Returns the ids of the moves it
/// made ready (empty: nothing changed). `leaving` says which members leave
/// the cluster with this plan; `unavailable` which cannot stream now (down
/// within their grace): a pending move from or to one of them stays
/// pending and holds no slot.
pub fn pace(
    plan: &mut Plan,
    pace: Pace,
    leaving: impl Fn(&MemberId) -> bool,
    unavailable: impl Fn(&MemberId) -> bool,
) -> Vec<MoveId> {
    let (per_member, total) = (pace.per_member(), pace.total());
    let mut busy: HashMap<&MemberId, usize> = HashMap::new();
    let mut running = 0usize;
    for m in plan.moves.iter().filter(|m| m.state == MoveState::Ready) {
        *busy.entry(&m.from).or_insert(0) += 1;
        *busy.entry(&m.to).or_insert(0) += 1;
        running += 1;
    }
    if running >= total {
        return Vec::new();
    }
    // Slots only fill up during a pass, so a move whose members are busy
    // now cannot run in it: only the others need ordering (after an ack,
    // that is the few moves of the two members it freed).
    let free = |busy: &HashMap<&MemberId, usize>, id: &MemberId| {
        busy.get(id).copied().unwrap_or(0) < per_member
    };
    let mut candidates: Vec<usize> = (0..plan.moves.len())
        .filter(|&i| {
            let m = &plan.moves[i];
            m.state == MoveState::Pending
                && free(&busy, &m.from)
                && free(&busy, &m.to)
                && !unavailable(&m.from)
                && !unavailable(&m.to)
        })
        .collect();
    candidates.sort_unstable_by_key(|&i| {
        let m = &plan.moves[i];
        (!leaving(&m.from), Reverse(m.range.len()), m.id.as_str())
    });
    let mut admitted = Vec::new();
    for i in candidates {
        if running >= total {
            break;
        }
        let m = &plan.moves[i];
        if free(&busy, &m.from) && free(&busy, &m.to) {
            *busy.entry(&m.from).or_insert(0) += 1;
            *busy.entry(&m.to).or_insert(0) += 1;
            running += 1;
            admitted.push(i);
        }
    }
    admitted
        .into_iter()
        .map(|i| {
            plan.moves[i].state = MoveState::Ready;
            plan.moves[i].id.clone()
        })
        .collect()
}

/// How many waves the plan's remaining moves take at `pace`, if every move
/// took the same time: a simulation that runs the moves ready now and those
/// [`pace`] admits, finishes them all at once, and repeats. Moves whose
/// source is lost are not counted (they cannot run until a holder appears).
/// 0 when nothing is left to run.
pub fn waves<'p>(plan: &'p Plan, pace_: Pace, leaving: impl Fn(&MemberId) -> bool) -> usize {
    // The runnable moves, with members as small indices, in turn order
    // (ready ones first: they run in the first wave).
    let mut ids: HashMap<&MemberId, u32> = HashMap::new();
    let mut index = |id: &'p MemberId| -> u32 {
        let next = ids.len() as u32;
        *ids.entry(id).or_insert(next)
    };
    let mut ready: Vec<(u32, u32)> = Vec::new();
    for m in plan.moves.iter().filter(|m| m.state == MoveState::Ready) {
        ready.push((index(&m.from), index(&m.to)));
    }
    let mut waiting: Vec<(u32, u32)> = turn_order(plan, leaving)
        .into_iter()
        .map(|i| (index(&plan.moves[i].from), index(&plan.moves[i].to)))
        .collect();
    let members = ids.len();
    let (per_member, total) = (pace_.per_member(), pace_.total());
    let mut busy = vec![0usize; members];
    let mut count = 0;
    while !ready.is_empty() || !waiting.is_empty() {
        busy.iter_mut().for_each(|b| *b = 0);
        for &(from, to) in &ready {
            busy[from as usize] += 1;
            busy[to as usize] += 1;
        }
        let mut running = ready.len();
        waiting.retain(|&(from, to)| {
            let fits = running < total
                && busy[from as usize] < per_member
                && busy[to as usize] < per_member;
            if fits {
                busy[from as usize] += 1;
                busy[to as usize] += 1;
                running += 1;
            }
            !fits
        });
        // Everything running now finishes at the end of this wave; with
        // nothing running, the first waiting move always fits, so every
        // wave makes progress.
        ready.clear();
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Move, Summary};
    use ringleader_ring::TokenRange;

    /// A move of `len` tokens starting at `start`, from `from` to `to`.
    fn mv(start: u64, len: u64, from: &str, to: &str) -> Move {
        let range = TokenRange::new(start, start + len);
        let (from, to) = (MemberId::new(from), MemberId::new(to));
        Move {
            id: MoveId::derive(crate::Lineage(1), range, &from, &to),
            range,
            from,
            to,
            state: MoveState::Pending,
        }
    }

    fn plan_of(moves: Vec<Move>) -> Plan {
        Plan {
            moves,
            cleanups: Vec::new(),
            summary: Summary {
                moves: 0,
                moved_fraction: 0.0,
                ideal_fraction: 0.0,
                members: BTreeMap::new(),
                waves: None,
            },
        }
    }

    fn states(plan: &Plan) -> Vec<MoveState> {
        plan.moves.iter().map(|m| m.state).collect()
    }

    fn nobody_leaves(_: &MemberId) -> bool {
        false
    }

    fn nobody_down(_: &MemberId) -> bool {
        false
    }

    fn per_member(n: u32) -> Pace {
        Pace::new(Some(n), None)
    }

    #[test]
    fn no_member_runs_more_moves_than_its_limit() {
        // a sends three, d receives two.
        let mut plan = plan_of(vec![
            mv(0, 10, "a", "d"),
            mv(100, 10, "a", "e"),
            mv(200, 10, "a", "f"),
            mv(300, 10, "b", "d"),
            mv(400, 10, "c", "g"),
        ]);
        let made = pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(made.len(), 3, "{:?}", states(&plan));
        assert!(in_progress(&plan).values().all(|&n| n <= 1));
        // One of a's moves, b → d blocked only if a → d won; c → g runs.
        assert_eq!(plan.moves[4].state, MoveState::Ready);
    }

    #[test]
    fn moves_out_of_leaving_members_go_first_then_the_largest() {
        let mut plan = plan_of(vec![
            mv(0, 10, "a", "x"),
            mv(100, 50, "b", "x"),
            mv(200, 5, "gone", "x"),
        ]);
        pace(
            &mut plan,
            per_member(1),
            |id: &MemberId| id.as_str() == "gone",
            nobody_down,
        );
        assert_eq!(
            states(&plan),
            [MoveState::Pending, MoveState::Pending, MoveState::Ready]
        );
        let mut plan = plan_of(vec![mv(0, 10, "a", "x"), mv(100, 50, "b", "x")]);
        pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(states(&plan), [MoveState::Pending, MoveState::Ready]);
    }

    #[test]
    fn a_done_move_frees_its_slots_for_the_next_at_once() {
        let mut plan = plan_of(vec![mv(0, 50, "a", "x"), mv(100, 10, "b", "x")]);
        pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(states(&plan), [MoveState::Ready, MoveState::Pending]);
        plan.mark_done(plan.moves[0].id.clone().as_str()).unwrap();
        let made = pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(made, vec![plan.moves[1].id.clone()]);
        assert_eq!(states(&plan), [MoveState::Done, MoveState::Ready]);
    }

    #[test]
    fn a_ready_move_stays_ready_when_an_earlier_one_could_take_its_slot() {
        // Limit 1: a → b runs, so b → c waits and c → d runs. When a → b is
        // done, b → c comes first in the order but c is busy with c → d,
        // which keeps its slot (its target may be streaming it).
        let mut plan = plan_of(vec![
            mv(0, 100, "a", "b"),
            mv(1000, 50, "b", "c"),
            mv(2000, 10, "c", "d"),
        ]);
        pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(
            states(&plan),
            [MoveState::Ready, MoveState::Pending, MoveState::Ready]
        );
        plan.moves[0].state = MoveState::Done;
        assert!(pace(&mut plan, per_member(1), nobody_leaves, nobody_down).is_empty());
        assert_eq!(
            states(&plan),
            [MoveState::Done, MoveState::Pending, MoveState::Ready]
        );
    }

    #[test]
    fn the_cluster_wide_limit_holds_whatever_the_members() {
        let mut plan = plan_of(
            (0..10)
                .map(|i| mv(i * 100, 10, &format!("s{i}"), &format!("t{i}")))
                .collect(),
        );
        pace(
            &mut plan,
            Pace::new(None, Some(3)),
            nobody_leaves,
            nobody_down,
        );
        assert_eq!(
            plan.moves
                .iter()
                .filter(|m| m.state == MoveState::Ready)
                .count(),
            3
        );
        assert_eq!(waves(&plan, Pace::new(None, Some(3)), nobody_leaves), 4);
    }

    #[test]
    fn unlimited_pace_makes_everything_ready_in_one_wave() {
        let mut plan = plan_of(vec![
            mv(0, 10, "a", "x"),
            mv(100, 10, "a", "x"),
            mv(200, 10, "b", "y"),
        ]);
        assert_eq!(waves(&plan, Pace::UNLIMITED, nobody_leaves), 1);
        pace(&mut plan, Pace::UNLIMITED, nobody_leaves, nobody_down);
        assert!(plan.moves.iter().all(|m| m.state == MoveState::Ready));
    }

    #[test]
    fn waves_count_the_busiest_member_at_one_move_each() {
        let plan = plan_of(
            (0..5)
                .map(|i| mv(i * 100, 10, &format!("s{i}"), "new"))
                .collect(),
        );
        assert_eq!(waves(&plan, per_member(1), nobody_leaves), 5);
        assert_eq!(waves(&plan, per_member(2), nobody_leaves), 3);
        assert_eq!(waves(&plan_of(Vec::new()), per_member(1), nobody_leaves), 0);
    }

    #[test]
    fn pacing_changes_no_move_but_its_state() {
        let moves: Vec<Move> = (0..20)
            .map(|i| {
                mv(
                    i * 100,
                    10 + i,
                    &format!("s{}", i % 3),
                    &format!("t{}", i % 4),
                )
            })
            .collect();
        let mut plan = plan_of(moves.clone());
        pace(&mut plan, per_member(2), nobody_leaves, nobody_down);
        for (before, after) in moves.iter().zip(&plan.moves) {
            assert_eq!(
                (&before.id, before.range, &before.from, &before.to),
                (&after.id, after.range, &after.from, &after.to)
            );
        }
    }

    #[test]
    fn a_move_from_or_to_a_down_member_waits_and_holds_no_slot() {
        // Limit 1. down → x comes first (largest) but its source is down:
        // it waits, and a → x takes x's slot. b → down waits too (a down
        // target cannot receive), so c → y runs.
        let mut plan = plan_of(vec![
            mv(0, 100, "down", "x"),
            mv(1000, 10, "a", "x"),
            mv(2000, 50, "b", "down"),
            mv(3000, 5, "c", "y"),
        ]);
        let down = |id: &MemberId| id.as_str() == "down";
        pace(&mut plan, per_member(1), nobody_leaves, down);
        assert_eq!(
            states(&plan),
            [
                MoveState::Pending,
                MoveState::Ready,
                MoveState::Pending,
                MoveState::Ready
            ]
        );
        assert_eq!(in_progress(&plan).get(&MemberId::new("down")), None);
        // Back up: its moves get their turn as soon as slots are free; b's
        // are free now, x's once a → x is done.
        let made = pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(made, vec![plan.moves[2].id.clone()]);
        plan.mark_done(plan.moves[1].id.clone().as_str()).unwrap();
        plan.mark_done(plan.moves[2].id.clone().as_str()).unwrap();
        let made = pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(made, vec![plan.moves[0].id.clone()]);
    }

    #[test]
    fn a_ready_move_stays_ready_and_keeps_its_slots_when_its_source_goes_down() {
        let mut plan = plan_of(vec![mv(0, 100, "a", "x"), mv(1000, 10, "b", "x")]);
        pace(&mut plan, per_member(1), nobody_leaves, nobody_down);
        assert_eq!(states(&plan), [MoveState::Ready, MoveState::Pending]);
        // a goes down while x may be streaming from it: nothing changes,
        // and b → x still waits for x's slot (the limit holds when a is
        // back and x resumes).
        let a_down = |id: &MemberId| id.as_str() == "a";
        assert!(pace(&mut plan, per_member(1), nobody_leaves, a_down).is_empty());
        assert_eq!(states(&plan), [MoveState::Ready, MoveState::Pending]);
    }

    #[test]
    fn moves_of_a_member_down_for_the_whole_plan_all_run_once_it_is_back() {
        // Every move touches "d"; while it is down nothing runs, and after
        // it is back finishing ready moves reaches every move.
        let mut plan = plan_of(
            (0..6)
                .map(|i| {
                    if i % 2 == 0 {
                        mv(i * 100, 10 + i, "d", &format!("t{i}"))
                    } else {
                        mv(i * 100, 10 + i, &format!("s{i}"), "d")
                    }
                })
                .collect(),
        );
        let d_down = |id: &MemberId| id.as_str() == "d";
        assert!(pace(&mut plan, per_member(2), nobody_leaves, d_down).is_empty());
        let mut done = 0;
        while !pace(&mut plan, per_member(2), nobody_leaves, nobody_down).is_empty()
            || plan.moves.iter().any(|m| m.state == MoveState::Ready)
        {
            assert!(in_progress(&plan).values().all(|&n| n <= 2));
            let ready = plan
                .moves
                .iter()
                .position(|m| m.state == MoveState::Ready)
                .expect("a ready move");
            plan.moves[ready].state = MoveState::Done;
            done += 1;
        }
        assert_eq!(done, 6);
    }

    /// The obviously right pace: every pending move in turn order, each
    /// admitted if its members (and the cluster) have a free slot then.
    fn pace_by_the_book(plan: &mut Plan, pace: Pace, leaving: impl Fn(&MemberId) -> bool) {
        for i in turn_order(plan, leaving) {
            let counts = in_progress(plan);
            let running = plan
                .moves
                .iter()
                .filter(|m| m.state == MoveState::Ready)
                .count();
            let m = &plan.moves[i];
            let fits = |id: &MemberId| counts.get(id).copied().unwrap_or(0) < pace.per_member();
            if running < pace.total() && fits(&m.from) && fits(&m.to) {
                plan.moves[i].state = MoveState::Ready;
            }
        }
    }

    #[test]
    fn finishing_ready_moves_reaches_every_move_within_the_limits() {
        // A deterministic mix of sources and targets; finish one ready move
        // at a time (in a scrambled order) and pace again: every move runs,
        // no member is ever over its limit, pacing twice changes nothing.
        for seed in 0..20u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let moves: Vec<Move> = (0..40)
                .map(|i| {
                    let from = next(6);
                    let to = (from + 1 + next(5)) % 6;
                    mv(
                        i * 1000,
                        1 + next(500),
                        &format!("m{from}"),
                        &format!("m{to}"),
                    )
                })
                .collect();
            let mut plan = plan_of(moves);
            let limit = 1 + (seed % 3) as u32;
            let leaving = |id: &MemberId| id.as_str() == "m0";
            let mut steps = 0;
            loop {
                let mut reference = plan.clone();
                pace_by_the_book(&mut reference, per_member(limit), leaving);
                pace(&mut plan, per_member(limit), leaving, nobody_down);
                assert_eq!(states(&plan), states(&reference), "seed {seed}");
                let mut again = plan.clone();
                assert!(pace(&mut again, per_member(limit), leaving, nobody_down).is_empty());
                assert!(in_progress(&plan).values().all(|&n| n <= limit as usize));
                let ready: Vec<usize> = (0..plan.moves.len())
                    .filter(|&i| plan.moves[i].state == MoveState::Ready)
                    .collect();
                if ready.is_empty() {
                    break;
                }
                let pick = ready[next(ready.len() as u64) as usize];
                plan.moves[pick].state = MoveState::Done;
                steps += 1;
            }
            assert_eq!(steps, 40, "seed {seed}");
            assert!(plan.moves.iter().all(|m| m.state == MoveState::Done));
        }
    }
}
