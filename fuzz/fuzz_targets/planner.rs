//! Arbitrary pairs of placements (rf 1 to 3, zone awareness on or off):
//! the target derived from the source by a membership change, or a ring
//! built afresh (another strategy or token count too).
//!
//! Checks: carrying out `plan(from, to)` on `from` gives exactly the
//! holdings of `to`; every move goes to a member new to its range from one
//! that holds it; after marking some moves done, `replan` to the same target
//! and to a third placement still reaches its target, keeps done moves done
//! and lists every earlier move. Members marked unavailable never break
//! that.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringleader_planner::{
    Holdings, MoveState, Placement, PlanError, PlanOptions, apply, plan, replan,
};
use ringleader_ring::{
    MemberId, MemberSpec, MembershipChange, Replication, Ring, RingConfig, Strategy,
};
use std::collections::BTreeSet;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Spec {
    id: u8,
    zone: Option<u8>,
    weight: u8,
}

impl Spec {
    fn spec(self) -> MemberSpec {
        MemberSpec {
            id: MemberId::new(format!("m{}", self.id % 10)),
            zone: self.zone.map(|z| format!("z{}", z % 3)),
            weight: u32::from(self.weight % 3) + 1,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct RingInput {
    hashed: bool,
    tokens: u8,
    members: Vec<Spec>,
}

impl RingInput {
    fn ring(&self) -> Ring {
        let strategy = if self.hashed {
            Strategy::Hashed
        } else {
            Strategy::Balanced
        };
        let config = RingConfig::new(strategy, u32::from(self.tokens % 12) + 1);
        let mut specs: Vec<MemberSpec> = Vec::new();
        for s in self.members.iter().take(8) {
            let spec = s.spec();
            if specs.iter().all(|o| o.id != spec.id) {
                specs.push(spec);
            }
        }
        Ring::with_members(config, specs).expect("distinct members of positive weight")
    }
}

#[derive(Arbitrary, Debug)]
struct ChangeInput {
    leave: Vec<bool>,
    reweigh: Vec<bool>,
    join: Vec<Spec>,
}

impl ChangeInput {
    fn apply_to(&self, ring: &Ring, prefix: &str) -> Ring {
        let mut change = MembershipChange::default();
        for (i, spec) in ring.members().iter().enumerate() {
            if self.leave.get(i).copied().unwrap_or(false) {
                change.leave.push(spec.id.clone());
            } else if self.reweigh.get(i).copied().unwrap_or(false) {
                change
                    .update
                    .push(spec.clone().with_weight(spec.weight % 3 + 1));
            }
        }
        for (k, s) in self.join.iter().take(3).enumerate() {
            let mut spec = s.spec();
            spec.id = MemberId::new(format!("{prefix}{k}"));
            change.join.push(spec);
        }
        ring.apply(&change).expect("a valid change")
    }
}

#[derive(Arbitrary, Debug)]
enum Target {
    Changed(ChangeInput),
    Fresh(RingInput),
}

#[derive(Arbitrary, Debug)]
struct Input {
    from: RingInput,
    rf_from: u8,
    zones_from: bool,
    target: Target,
    rf_to: u8,
    zones_to: bool,
    unavailable: Vec<u8>,
    done: Vec<bool>,
    next: ChangeInput,
}

fn placement(ring: Ring, rf: u8, zone_aware: bool) -> Placement {
    Placement::new(ring, Replication::new(usize::from(rf % 3) + 1, zone_aware))
        .expect("rf at least 1")
}

fuzz_target!(|input: Input| {
    let from_ring = input.from.ring();
    if from_ring.is_empty() {
        return; // nothing is held anywhere yet: the first commit moves nothing
    }
    let to_ring = match &input.target {
        Target::Changed(change) => change.apply_to(&from_ring, "j"),
        Target::Fresh(fresh) => fresh.ring(),
    };
    let from = placement(from_ring, input.rf_from, input.zones_from);
    let to = placement(to_ring, input.rf_to, input.zones_to);
    let options = PlanOptions {
        unavailable: input
            .unavailable
            .iter()
            .take(3)
            .map(|&n| MemberId::new(format!("m{}", n % 10)))
            .collect(),
        lineage: ringleader_planner::Lineage(1),
    };

    let first = match plan(&from, &to, &options) {
        Ok(p) => p,
        Err(e) => {
            assert!(to.ring().is_empty(), "plan refused: {e}");
            assert_eq!(e, PlanError::EmptyTarget);
            return;
        }
    };
    let target = Holdings::of(&to).canonical();
    assert_eq!(
        apply(&from, &first).canonical(),
        target,
        "plan misses the target"
    );

    // Minimality and sources: each move brings a range to a member that is
    // new to it, from a member that holds it now.
    let before = Holdings::of(&from);
    let after = Holdings::of(&to);
    let mut ids = BTreeSet::new();
    for m in &first.moves {
        assert!(ids.insert(m.id.clone()), "duplicate move id {}", m.id);
        assert_ne!(m.from, m.to, "{m:?}");
        let probe = m.range.end;
        let old = before.holders_of(probe);
        let new = after.holders_of(probe);
        assert!(
            new.contains(&&m.to),
            "{m:?} goes to a member not in the target"
        );
        assert!(
            !old.contains(&&m.to),
            "{m:?} goes to a member that already holds it"
        );
        assert!(
            old.contains(&&m.from),
            "{m:?} comes from a member that does not hold it"
        );
        match m.state {
            MoveState::Pending => {}
            MoveState::SourceLost => {}
            other => panic!("a fresh plan has a move in state {other:?}"),
        }
    }
    if options.unavailable.is_empty() {
        assert!(first.moves.iter().all(|m| m.state == MoveState::Pending));
    }
    assert!(first.summary.moved_fraction.is_finite() && first.summary.moved_fraction >= 0.0);
    assert!(first.summary.ideal_fraction.is_finite() && first.summary.ideal_fraction >= 0.0);

    // Some moves done, then plan again to the same target.
    let mut progressed = first.clone();
    let chosen: Vec<String> = progressed
        .moves
        .iter()
        .zip(input.done.iter().chain(std::iter::repeat(&false)))
        .filter(|&(_, &d)| d)
        .map(|(m, _)| m.id.as_str().to_owned())
        .collect();
    for id in &chosen {
        progressed.mark_done(id).expect("an open move");
    }
    let same = replan(&from, &progressed, &to, &options).expect("the target is not empty");
    assert_eq!(
        apply(&from, &same).canonical(),
        target,
        "replan to the same target"
    );
    for m in &progressed.moves {
        let now: Vec<_> = same.moves.iter().filter(|n| n.id == m.id).collect();
        assert_eq!(now.len(), 1, "move {} listed {} times", m.id, now.len());
        if m.state == MoveState::Done {
            assert_eq!(now[0].state, MoveState::Done);
        }
    }

    // And to a third placement.
    let third = placement(
        input.next.apply_to(to.ring(), "k"),
        input.rf_to,
        input.zones_to,
    );
    match replan(&from, &progressed, &third, &options) {
        Err(e) => assert!(third.ring().is_empty(), "replan refused: {e}"),
        Ok(again) => {
            assert_eq!(
                apply(&from, &again).canonical(),
                Holdings::of(&third).canonical(),
                "replan to a new target"
            );
            for m in &progressed.moves {
                let now: Vec<_> = again.moves.iter().filter(|n| n.id == m.id).collect();
                assert_eq!(now.len(), 1, "move {} listed {} times", m.id, now.len());
                match m.state {
                    MoveState::Done => assert_eq!(now[0].state, MoveState::Done),
                    _ => assert!(
                        now[0].state == m.state || now[0].state == MoveState::Cancelled,
                        "{m:?} became {:?}",
                        now[0]
                    ),
                }
            }
        }
    }
});
