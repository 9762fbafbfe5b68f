//! `plan` compares replica sets only near the tokens that changed
//! (crates/planner/src/local.rs); these tests check that it gives exactly
//! the plan of comparing every range (`plan_comparing_every_range`), move
//! for move and to the last bit of the summary, on random rings with and
//! without zones, rf 1, 2 and 3, after joins, leaves, weight and zone
//! changes.

use proptest::prelude::*;
use ringleader_planner::{
    Holdings, Lineage, Placement, PlanOptions, apply, plan, plan_comparing_every_range,
};
use ringleader_ring::{
    MemberId, MemberSpec, MembershipChange, Replication, Ring, RingConfig,
    Strategy as TokenStrategy,
};
use std::collections::BTreeSet;

fn spec(i: usize, zones: usize, zone_seed: usize, weight: u32) -> MemberSpec {
    let spec = MemberSpec::new(format!("m{i:03}")).with_weight(weight);
    if zones == 0 {
        spec
    } else {
        spec.with_zone(format!("z{}", (i + zone_seed) % zones))
    }
}

/// A change: each member leaves (fate 0), changes weight (1) or zone (2),
/// or stays; `joins` new members join.
fn change_of(
    ring: &Ring,
    fates: &[u8],
    joins: usize,
    zones: usize,
    first_new: usize,
) -> MembershipChange {
    let mut change = MembershipChange::default();
    for (m, &fate) in ring.members().iter().zip(fates) {
        match fate {
            0 => change.leave.push(m.id.clone()),
            1 => change.update.push(m.clone().with_weight(m.weight % 2 + 1)),
            2 if zones > 1 => {
                let zone = m.zone.as_deref().unwrap_or("z0");
                let next = if zone == "z0" { "z1" } else { "z0" };
                change.update.push(m.clone().with_zone(next));
            }
            _ => {}
        }
    }
    for k in 0..joins {
        change
            .join
            .push(spec(first_new + k, zones, k, 1 + (k % 2) as u32));
    }
    if change.join.is_empty() && change.leave.len() == ring.len() {
        change.leave.pop();
    }
    change
}

fn check(from: &Placement, to: &Placement, unavailable: BTreeSet<MemberId>) {
    let options = PlanOptions {
        unavailable,
        lineage: Lineage(1),
    };
    let fast = plan(from, to, &options).expect("plan");
    let full = plan_comparing_every_range(from, to, &options).expect("plan");
    assert_eq!(fast, full, "the shortcut changed the plan");
    assert_eq!(
        fast.summary.ideal_fraction.to_bits(),
        full.summary.ideal_fraction.to_bits()
    );
    assert_eq!(
        apply(from, &fast).canonical(),
        Holdings::of(to).canonical(),
        "the plan does not reach the target"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn planning_near_the_changes_gives_the_plan_of_comparing_every_range(
        hashed in any::<bool>(),
        tokens in 1u32..24,
        n in 1usize..40,
        zones in prop::sample::select(vec![0usize, 1, 2, 3, 5]),
        zone_seed in 0usize..5,
        rf in 1usize..4,
        zone_aware in any::<bool>(),
        allocate_for_rf in any::<bool>(),
        fates in prop::collection::vec(0u8..12, 40),
        joins in 0usize..3,
        down in 0usize..3,
    ) {
        let strategy = if hashed { TokenStrategy::Hashed } else { TokenStrategy::Balanced };
        let replication = Replication::new(rf, zone_aware);
        let allocation = if allocate_for_rf { replication } else { Replication::SINGLE };
        let ring = Ring::new(RingConfig::new(strategy, tokens))
            .unwrap()
            .apply_for(
                &MembershipChange {
                    join: (0..n).map(|i| spec(i, zones, zone_seed, 1 + (i % 3 == 0) as u32)).collect(),
                    ..Default::default()
                },
                &allocation,
            )
            .unwrap();
        let change = change_of(&ring, &fates, joins, zones, 100);
        let next = ring.apply_for(&change, &allocation).unwrap();
        let unavailable: BTreeSet<MemberId> =
            ring.members().iter().take(down).map(|m| m.id.clone()).collect();
        let from = Placement::new(ring, replication).unwrap();
        let to = Placement::new(next, replication).unwrap();
        check(&from, &to, unavailable);
        // And back again (joins become leaves).
        check(&to, &from, BTreeSet::new());
    }
}

/// The bench's case, one join into 100 × 256 over three zones, rf 1 and 3:
/// long stretches of unchanged tokens between the joiner's.
#[test]
fn a_join_into_a_large_ring_plans_the_same_near_the_changes_only() {
    let member = |i: usize| MemberSpec::new(format!("db-{i}")).with_zone(format!("zone-{}", i % 3));
    let ring = Ring::with_members(
        RingConfig::new(TokenStrategy::Balanced, 256),
        (0..100).map(member),
    )
    .unwrap();
    let joined = ring.join(member(100)).unwrap();
    let left = ring.leave("db-50").unwrap();
    for replication in [
        Replication::new(1, false),
        Replication::new(2, true),
        Replication::new(3, true),
        Replication::new(3, false),
    ] {
        let from = Placement::new(ring.clone(), replication).unwrap();
        for next in [&joined, &left] {
            let to = Placement::new(next.clone(), replication).unwrap();
            check(&from, &to, BTreeSet::new());
        }
    }
}
