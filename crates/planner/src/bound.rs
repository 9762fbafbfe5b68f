//! A lower bound of movement that also counts zone coverage.
//!
//! DESIGN §4's ideal ([`ideal_from`]) is Σ over members of what they lack,
//! `max(0, target − load now)`. It ignores that, zone-aware with fewer
//! replicas than zones, the targets fix more than each member's amount: with
//! `rf = zones − 1` every key misses exactly one zone, so zone `z`'s total
//! `Z_z` (the sum of its members' targets) says how much of the key space
//! must miss it: `D_z = 2^64 − Z_z`. A change that leaves zone `a` smaller and
//! zone `b` bigger has to re-pair keys, and no plan can do that by moving
//! only what members lack (docs/benchmarks.md works an example through).
//!
//! The bound: split the token space by which zones hold each piece now
//! (`X`, counting only members that stay; a zone either holds a piece or
//! not). A plan ends with each piece held by the zones `Y = all − {z}` for
//! some `z`, the pieces missing `z` measuring `D_z`. At least `rf − |X ∩ Y|`
//! copies of a piece must be made (kept copies need a holder that already
//! has it, one per zone). So
//!
//! `moved ≥ rf·2^64 − max Σ |X ∩ Y|` over ways to give every piece its `Y`
//! with the measures `D_z`.
//!
//! `|X ∩ (all − {z})| = |X| − [z ∈ X]`, so the maximum is
//! `Σ |X|·q_X − (2^64 − F)`, where `F` is the most of the key space that can
//! be sent to a missing zone it does not hold now: a transport problem
//! (pieces of class `X` to zones `z ∉ X`, zone `z` taking at most `D_z`) whose
//! maximum flow is its minimum cut, `min over zone sets B` of
//! `Σ_{z ∈ B} D_z + Σ { q_X : some zone outside X is outside B }`. With a
//! handful of zones every `B` is tried.
//!
//! Both this and DESIGN's ideal are lower bounds of the same quantity, so
//! their maximum is one too: [`zone_ideal_from`] returns it. For other
//! replications (rf 1, rf ≥ zones where every zone holds a copy, or rf <
//! zones − 1 where the zone pairs are not fixed by the totals) it is
//! DESIGN's ideal.

use crate::{Holdings, Placement, ideal_from};
use ringleader_ring::TOKEN_SPACE;
use std::collections::HashMap;

/// Zones above this are not enumerated (2^zones cuts): the bound falls back
/// to DESIGN §4's ideal.
const MAX_ZONES: usize = 12;

/// [`zone_ideal_from`] from the committed placement `from`.
pub fn zone_ideal_fraction(from: &Placement, to: &Placement) -> f64 {
    zone_ideal_from(&Holdings::of(from), to)
}

/// The least data any plan must move from holdings `now` to placement `to`,
/// counting zone coverage as well as each member's target (see the module
/// docs), as a fraction of all replicas of `to`. Never below
/// [`ideal_from`].
pub fn zone_ideal_from(now: &Holdings, to: &Placement) -> f64 {
    let ideal = ideal_from(now, to);
    let ring = to.ring();
    if now.is_empty() || ring.is_empty() {
        return ideal;
    }
    let replication = to.effective_replication();
    let zones = ring.zone_count();
    if !replication.zone_aware
        || !(2..=MAX_ZONES).contains(&zones)
        || replication.factor + 1 != zones
    {
        return ideal;
    }
    let space = TOKEN_SPACE as f64;
    let rf = replication.factor as f64;
    // Zone totals of the targets, and what must miss each zone.
    let targets = ring.replica_targets(&replication);
    let mut missing = vec![space; zones];
    for (i, target) in targets.iter().enumerate() {
        missing[ring.zone_index(i) as usize] -= target;
    }
    // Members of `now` by zone in `to` (absent: leaving, holds nothing that
    // can be kept).
    let zone_of: HashMap<&str, u32> = ring
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), ring.zone_index(i)))
        .collect();
    let roster_zone: Vec<Option<u32>> = now
        .roster()
        .iter()
        .map(|id| zone_of.get(id.as_str()).copied())
        .collect();
    // q[X]: measure of the pieces held by exactly the zones X.
    let mut by_class = vec![0.0f64; 1 << zones];
    for i in 0..now.ends.len() {
        let len = now.range(i).len() as f64;
        let mut class = 0usize;
        for &m in now.segment(i) {
            if let Some(z) = roster_zone[m as usize] {
                class |= 1 << z;
            }
        }
        by_class[class] += len;
    }
    let all = (1usize << zones) - 1;
    let held: f64 = by_class
        .iter()
        .enumerate()
        .map(|(class, q)| q * class.count_ones() as f64)
        .sum();
    // Maximum flow = minimum cut over the zone sets B.
    let flow = (0..=all)
        .map(|b| {
            let zones_in: f64 = (0..zones)
                .filter(|z| b & (1 << z) != 0)
                .map(|z| missing[z].max(0.0))
                .sum();
            let classes: f64 = by_class
                .iter()
                .enumerate()
                .filter(|&(class, _)| (all & !class) & !b != 0)
                .map(|(_, q)| q)
                .sum();
            zones_in + classes
        })
        .fold(f64::INFINITY, f64::min);
    let kept = held - (space - flow);
    let bound = ((rf * space - kept) / (rf * space)).max(0.0);
    bound.max(ideal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PlanOptions, plan};
    use ringleader_ring::{MemberSpec, MembershipChange, Replication, Ring, RingConfig};

    fn ring_of(members: &[(&str, &str)], replication: &Replication) -> Ring {
        Ring::new(RingConfig::default())
            .unwrap()
            .apply_for(
                &MembershipChange {
                    join: members
                        .iter()
                        .map(|&(id, zone)| MemberSpec::new(id).with_zone(zone))
                        .collect(),
                    ..Default::default()
                },
                replication,
            )
            .unwrap()
    }

    #[test]
    fn a_leave_in_one_zone_with_a_join_in_another_costs_half_again_the_ideal() {
        // docs/benchmarks.md's worked example: two members per zone, rf 2;
        // a1 leaves, b3 joins. DESIGN's ideal is b3's third; zone b must
        // also gain coverage of keys a1 did not hold.
        let replication = Replication::new(2, true);
        let six = [
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("b2", "b"),
            ("c1", "c"),
            ("c2", "c"),
        ];
        let from = ring_of(&six, &replication);
        let to = from
            .apply_for(
                &MembershipChange {
                    join: vec![MemberSpec::new("b3").with_zone("b")],
                    leave: vec!["a1".into()],
                    ..Default::default()
                },
                &replication,
            )
            .unwrap();
        let from = Placement::new(from, replication).unwrap();
        let to = Placement::new(to, replication).unwrap();
        let ideal = crate::ideal_fraction(&from, &to);
        let bound = zone_ideal_fraction(&from, &to);
        let moved = plan(&from, &to, &PlanOptions::default())
            .unwrap()
            .summary
            .moved_fraction;
        assert!(bound > ideal * 1.2, "bound {bound} ideal {ideal}");
        // The bound holds for plans that reach the targets exactly. Since
        // leavers' ranges go to joiners across zones first the allocator
        // moves less here (0.96 × the bound) and leaves zone b a little
        // short (b2 and b3 at 0.94 of their targets, balance 1.04, within
        // DESIGN §8's 1.10): either it moves at least the bound, or some
        // member is short.
        let shares = to.ring().load_shares(&replication);
        let short = shares.iter().any(|o| o.fraction < o.target * (1.0 - 1e-9));
        assert!(
            moved >= bound * (1.0 - 1e-9) || short,
            "moved {moved} below the bound {bound} with every target met"
        );
        assert!(to.ring().replica_balance(&replication) <= 1.10);
    }

    #[test]
    fn without_zone_pairs_the_bound_is_the_ideal() {
        for replication in [Replication::new(1, false), Replication::new(3, true)] {
            let members = [("a", "x"), ("b", "y"), ("c", "z"), ("d", "x")];
            let from = ring_of(&members, &replication);
            let to = from
                .apply_for(
                    &MembershipChange {
                        join: vec![MemberSpec::new("e").with_zone("y")],
                        ..Default::default()
                    },
                    &replication,
                )
                .unwrap();
            let from = Placement::new(from, replication).unwrap();
            let to = Placement::new(to, replication).unwrap();
            assert_eq!(
                zone_ideal_fraction(&from, &to),
                crate::ideal_fraction(&from, &to)
            );
        }
    }
}
