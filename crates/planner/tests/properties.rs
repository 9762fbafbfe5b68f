//! Property tests of plans: correctness (applying a plan gives the target),
//! minimality (only changed ranges move, only to members new to them),
//! merging, and replanning mid-flight.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use ringleader_planner::{
    Holdings, Move, MoveState, Placement, Plan, PlanError, PlanOptions, apply, plan, replan,
};
use ringleader_ring::{
    MemberId, MemberSpec, MembershipChange, Replication, Ring, RingConfig,
    Strategy as TokenStrategy, Token,
};
use std::collections::{BTreeSet, HashSet};

fn arb_member(name: String) -> impl Strategy<Value = MemberSpec> {
    (prop::option::of(0u8..3), 1u32..3).prop_map(move |(zone, weight)| MemberSpec {
        id: MemberId::new(name.clone()),
        zone: zone.map(|z| format!("zone-{z}")),
        weight,
    })
}

fn arb_replication() -> impl Strategy<Value = Replication> {
    (1usize..4, any::<bool>()).prop_map(|(rf, zone_aware)| Replication::new(rf, zone_aware))
}

fn arb_ring() -> impl Strategy<Value = Ring> {
    (
        prop_oneof![Just(TokenStrategy::Balanced), Just(TokenStrategy::Hashed)],
        1u32..12,
        1usize..9,
    )
        .prop_flat_map(|(strategy, tokens, n)| {
            let members: Vec<_> = (0..n).map(|i| arb_member(format!("m{i}"))).collect();
            (Just(RingConfig::new(strategy, tokens)), members)
        })
        .prop_map(|(config, members)| Ring::with_members(config, members).unwrap())
}

fn arb_change(
    ring: &Ring,
    prefix: &'static str,
) -> impl Strategy<Value = MembershipChange> + use<> {
    let specs = ring.members().to_vec();
    let n = specs.len();
    (
        prop::collection::vec(0u8..5, n),
        prop::collection::vec(arb_member(String::new()), 0..4),
    )
        .prop_map(move |(fate, joins)| {
            let mut change = MembershipChange::default();
            for (spec, f) in specs.iter().zip(fate) {
                match f {
                    0 => change.leave.push(spec.id.clone()),
                    1 => change
                        .update
                        .push(spec.clone().with_weight(spec.weight % 2 + 1)),
                    _ => {}
                }
            }
            for (k, mut spec) in joins.into_iter().enumerate() {
                spec.id = MemberId::new(format!("{prefix}{k}"));
                change.join.push(spec);
            }
            // Keep at least one member.
            if change.join.is_empty() && change.leave.len() == n {
                change.leave.pop();
            }
            change
        })
}

fn arb_transition() -> impl Strategy<Value = (Placement, Placement)> {
    (arb_ring(), arb_replication(), arb_replication())
        .prop_flat_map(|(ring, rf_from, rf_to)| {
            let change = arb_change(&ring, "j");
            (
                Just(ring),
                Just(rf_from),
                prop_oneof![3 => Just(rf_from), 1 => Just(rf_to)],
                change,
            )
        })
        .prop_map(|(ring, rf_from, rf_to, change)| {
            let next = ring.apply(&change).unwrap();
            (
                Placement::new(ring, rf_from).unwrap(),
                Placement::new(next, rf_to).unwrap(),
            )
        })
}

/// Probe points: every token of both rings, their neighbours, and extremes.
fn probes(a: &Placement, b: &Placement) -> Vec<Token> {
    let mut out: Vec<Token> = vec![0, 1, u64::MAX];
    for &t in a.ring().tokens().iter().chain(b.ring().tokens()) {
        out.extend([t, t.wrapping_add(1), t.wrapping_sub(1)]);
    }
    out
}

fn holder_set(h: &Holdings, t: Token) -> BTreeSet<MemberId> {
    h.holders_of(t).into_iter().cloned().collect()
}

fn check_plan(from: &Placement, to: &Placement, plan: &Plan) -> Result<(), TestCaseError> {
    // Correctness: carrying the plan out gives the target.
    prop_assert_eq!(apply(from, plan).canonical(), Holdings::of(to).canonical());
    let before = Holdings::of(from);
    let after = Holdings::of(to);
    // Minimality: at every probe, the moves covering it go exactly to the
    // members new to it, once each, from a member that held it.
    for t in probes(from, to) {
        let old = holder_set(&before, t);
        let new = holder_set(&after, t);
        let mut receivers: Vec<MemberId> = Vec::new();
        for m in plan
            .moves
            .iter()
            .filter(|m| m.state != MoveState::Cancelled && m.range.contains(t))
        {
            prop_assert!(
                old.contains(&m.from),
                "move {:?} source does not hold {t}",
                m
            );
            receivers.push(m.to.clone());
        }
        let expected: Vec<MemberId> = if old.is_empty() {
            Vec::new()
        } else {
            new.difference(&old).cloned().collect()
        };
        receivers.sort();
        prop_assert_eq!(receivers, expected, "receivers of token {}", t);
    }
    // Merging: no two moves with the same source and target touch.
    for a in &plan.moves {
        for b in &plan.moves {
            if a.id != b.id && a.from == b.from && a.to == b.to && a.state == b.state {
                prop_assert_ne!(
                    a.range.end,
                    b.range.start,
                    "{:?} and {:?} should be one move",
                    a,
                    b
                );
            }
        }
    }
    let ids: HashSet<_> = plan.moves.iter().map(|m| &m.id).collect();
    prop_assert_eq!(ids.len(), plan.moves.len(), "move ids are unique");
    Ok(())
}

fn mark_some_done(plan: &mut Plan, mask: &[bool]) {
    for (m, &done) in plan.moves.iter_mut().zip(mask.iter().cycle()) {
        if done {
            m.state = MoveState::Done;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn applying_a_plan_gives_the_target_and_moves_only_what_changed((from, to) in arb_transition()) {
        let plan = plan(&from, &to, &PlanOptions::default()).unwrap();
        check_plan(&from, &to, &plan)?;
        // Planning is deterministic.
        prop_assert_eq!(ringleader_planner::plan(&from, &to, &PlanOptions::default()).unwrap(), plan);
    }

    #[test]
    fn unavailable_sources_are_avoided_or_flagged((from, to) in arb_transition(), down in 0usize..3) {
        let down: BTreeSet<MemberId> = from.ring().members().iter().take(down).map(|m| m.id.clone()).collect();
        let options = PlanOptions { unavailable: down.clone(), ..PlanOptions::default() };
        let plan = plan(&from, &to, &options).unwrap();
        check_plan(&from, &to, &plan)?;
        let before = Holdings::of(&from);
        for m in &plan.moves {
            let holders = holder_set(&before, m.range.end);
            let alive = holders.iter().any(|h| !down.contains(h));
            if alive {
                prop_assert!(!down.contains(&m.from), "{:?} streams from a down member", m);
                prop_assert_eq!(m.state, MoveState::Pending);
            } else {
                prop_assert_eq!(m.state, MoveState::SourceLost);
            }
        }
    }

    #[test]
    fn replan_keeps_ids_and_reaches_the_new_target(
        (from, middle) in arb_transition(),
        mask in prop::collection::vec(any::<bool>(), 1..6),
        seed in any::<u64>(),
    ) {
        let first = plan(&from, &middle, &PlanOptions::default()).unwrap();
        let mut progressed = first.clone();
        mark_some_done(&mut progressed, &mask);

        // Replanning to the same target keeps every open move as it was.
        let same = replan(&from, &progressed, &middle, &PlanOptions::default()).unwrap();
        let open_before: BTreeSet<_> = progressed.moves.iter().filter(|m| m.state.is_open()).map(|m| (m.id.clone(), m.state)).collect();
        let open_after: BTreeSet<_> = same.moves.iter().filter(|m| m.state.is_open()).map(|m| (m.id.clone(), m.state)).collect();
        prop_assert_eq!(open_before, open_after);
        prop_assert_eq!(apply(&from, &same).canonical(), Holdings::of(&middle).canonical());

        // Replanning to a new target: ids of moves still needed survive,
        // the rest are cancelled, done ones stay done, and carrying it out
        // gives the new target.
        let change_strategy = arb_change(middle.ring(), "k");
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes(seed)),
        );
        let change = change_strategy.new_tree(&mut runner).unwrap().current();
        let target = Placement::new(middle.ring().apply(&change).unwrap(), middle.replication()).unwrap();
        let again = replan(&from, &progressed, &target, &PlanOptions::default()).unwrap();
        prop_assert_eq!(apply(&from, &again).canonical(), Holdings::of(&target).canonical());
        for old in &progressed.moves {
            let now: Vec<&Move> = again.moves.iter().filter(|m| m.id == old.id).collect();
            prop_assert_eq!(now.len(), 1, "move {:?} must still be listed", old);
            match old.state {
                MoveState::Done => prop_assert_eq!(now[0].state, MoveState::Done),
                _ => prop_assert!(now[0].state == old.state || now[0].state == MoveState::Cancelled),
            }
        }
        // Open moves in the new plan are exactly what is still missing.
        let now = Holdings::of(&from).overlay(progressed.moves.iter().filter(|m| m.state == MoveState::Done).map(|m| (m.range, &m.to)), []);
        let after = Holdings::of(&target);
        for t in probes(&from, &target) {
            let have = holder_set(&now, t);
            let want = holder_set(&after, t);
            let mut receivers: Vec<MemberId> = again.moves.iter().filter(|m| m.state.is_open() && m.range.contains(t)).map(|m| m.to.clone()).collect();
            receivers.sort();
            let expected: Vec<MemberId> = want.difference(&have).cloned().collect();
            prop_assert_eq!(receivers, expected);
        }
    }
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.wrapping_add(i as u64)).to_le_bytes());
    }
    bytes
}

#[test]
fn an_empty_target_is_an_error() {
    let ring = Ring::with_members(RingConfig::default(), ["a", "b"].map(MemberSpec::new)).unwrap();
    let from = Placement::new(ring.clone(), Replication::SINGLE).unwrap();
    let to = Placement::new(
        Ring::new(RingConfig::default()).unwrap(),
        Replication::SINGLE,
    )
    .unwrap();
    let err = plan(&from, &to, &PlanOptions::default()).unwrap_err();
    assert_eq!(err, PlanError::EmptyTarget);
    assert!(err.to_string().contains("keep at least one member"));
    assert_eq!(
        Placement::new(ring, Replication::new(0, false)).unwrap_err(),
        PlanError::ZeroReplicationFactor
    );
}

#[test]
fn a_fresh_ring_moves_nothing() {
    let ring = Ring::with_members(RingConfig::default(), ["a", "b"].map(MemberSpec::new)).unwrap();
    let from = Placement::new(
        Ring::new(RingConfig::default()).unwrap(),
        Replication::SINGLE,
    )
    .unwrap();
    let to = Placement::new(ring, Replication::SINGLE).unwrap();
    let plan = plan(&from, &to, &PlanOptions::default()).unwrap();
    assert!(plan.moves.is_empty());
    assert_eq!(plan.summary.ideal_fraction, 0.0);
}

#[test]
fn one_join_moves_its_share_from_others_only() {
    for (n, rf, zones) in [
        (10, 1, false),
        (10, 3, false),
        (30, 3, true),
        (100, 1, false),
    ] {
        let members =
            (0..n).map(|i| MemberSpec::new(format!("m{i}")).with_zone(format!("z{}", i % 3)));
        let replication = Replication::new(rf, zones);
        let ring = Ring::new(RingConfig::default())
            .unwrap()
            .apply_for(
                &MembershipChange {
                    join: members.collect(),
                    ..Default::default()
                },
                &replication,
            )
            .unwrap();
        let from = Placement::new(ring.clone(), replication).unwrap();
        let joined = ring
            .apply_for(
                &MembershipChange {
                    join: vec![MemberSpec::new("new").with_zone("z0")],
                    ..Default::default()
                },
                &replication,
            )
            .unwrap();
        let to = Placement::new(joined, replication).unwrap();
        let plan = plan(&from, &to, &PlanOptions::default()).unwrap();
        assert!(
            plan.moves.iter().all(|m| m.to.as_str() == "new"),
            "n={n} rf={rf}"
        );
        // The joiner's share of all replicas (zone-aware: a third of its
        // zone's copy, 1/(n/3 + 1)), plus whatever members under target lack.
        let share = if zones {
            1.0 / (n as f64 + 3.0)
        } else {
            1.0 / (n as f64 + 1.0)
        };
        if rf == 1 {
            assert!((plan.summary.ideal_fraction - share).abs() < 1e-9);
        } else {
            assert!(plan.summary.ideal_fraction >= share - 1e-9, "n={n} rf={rf}");
        }
        let ratio = plan.summary.moved_fraction / plan.summary.ideal_fraction;
        assert!(
            ratio <= 1.05 + 1e-9,
            "n={n} rf={rf}: moved {ratio:.4} × ideal"
        );
    }
}

#[test]
fn marking_moves_done_is_idempotent_and_checked() {
    let ring =
        Ring::with_members(RingConfig::default(), ["a", "b", "c"].map(MemberSpec::new)).unwrap();
    let from = Placement::new(ring.clone(), Replication::SINGLE).unwrap();
    let to = Placement::new(
        ring.join(MemberSpec::new("d")).unwrap(),
        Replication::SINGLE,
    )
    .unwrap();
    let mut plan = plan(&from, &to, &PlanOptions::default()).unwrap();
    let id = plan.moves[0].id.clone();
    plan.mark_done(id.as_str()).unwrap();
    plan.mark_done(id.as_str()).unwrap();
    assert_eq!(plan.get(id.as_str()).unwrap().state, MoveState::Done);
    assert_eq!(
        plan.mark_done("nope").unwrap_err(),
        PlanError::UnknownMove("nope".into())
    );
    for m in plan.moves.clone() {
        plan.mark_done(m.id.as_str()).unwrap();
    }
    assert!(plan.is_complete());
}

/// Regression (issue 10, item 3): a second replan dropped the moves the
/// first had cancelled, so they vanished from `/v1/plan` and the watch
/// stream within milliseconds and a shard streaming one never learned to
/// stop. They stay listed, cancelled, for as long as the plan runs.
#[test]
fn cancelled_moves_stay_listed_across_replans() {
    let config = RingConfig::default();
    let ids = |n: usize| {
        (0..n)
            .map(|i| MemberSpec::new(format!("m{i}")))
            .collect::<Vec<_>>()
    };
    let three = Ring::with_members(config, ids(3)).unwrap();
    let place = |ring: Ring| Placement::new(ring, Replication::SINGLE).unwrap();
    let from = place(three.clone());
    let five = place(three.rebalance_to(&ids(5)).unwrap());
    let first = plan(&from, &five, &PlanOptions::default()).unwrap();
    // m4 is not wanted any more: its moves are cancelled.
    let four = place(three.rebalance_to(&ids(4)).unwrap());
    let second = replan(&from, &first, &four, &PlanOptions::default()).unwrap();
    let cancelled: Vec<&Move> = second
        .moves
        .iter()
        .filter(|m| m.state == MoveState::Cancelled)
        .collect();
    assert!(!cancelled.is_empty(), "m4's moves are cancelled");
    // Another revision (to the same target, or a further one) lists them still.
    for again in [
        replan(&from, &second, &four, &PlanOptions::default()).unwrap(),
        replan(
            &from,
            &second,
            &place(three.rebalance_to(&ids(6)).unwrap()),
            &PlanOptions::default(),
        )
        .unwrap(),
    ] {
        for m in &cancelled {
            let listed = again.moves.iter().find(|n| n.id == m.id);
            assert!(listed.is_some(), "cancelled move {} vanished", m.id);
        }
    }
}
