//! An arbitrary sequence of joins, leaves, weight and zone updates, batched
//! changes and lookups on a small ring, with either token strategy and 1 to
//! 32 tokens per member.
//!
//! After every step the ring must hold its invariants: distinct sorted
//! tokens, every member with a token, `ranges_of` partitioning the token
//! space by owner, owners and replicas agreeing with a linear scan (the
//! slow, obviously right reference), replicas distinct, and the snapshot
//! and `from_assignments` forms reading back to the same ring. A change is
//! refused exactly when it is invalid, and refusal leaves nothing changed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringleader_ring::{
    MemberId, MemberSpec, MembershipChange, Replication, Ring, RingConfig, RingError, RingSnapshot,
    Strategy, TOKEN_SPACE, Token, TokenRange, hash_key,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Spec {
    id: u8,
    zone: Option<u8>,
    weight: u8,
}

impl Spec {
    fn spec(self) -> MemberSpec {
        MemberSpec {
            id: member_id(self.id),
            zone: self.zone.map(|z| format!("z{}", z % 4)),
            // Mostly 1..=3; 0 now and then, which must be refused.
            weight: u32::from(self.weight % 5).min(3),
        }
    }
}

fn member_id(n: u8) -> MemberId {
    MemberId::new(format!("m{}", n % 10))
}

#[derive(Arbitrary, Debug)]
enum Op {
    Join(Spec),
    Leave(u8),
    Update(Spec),
    Change {
        join: Vec<Spec>,
        leave: Vec<u8>,
        update: Vec<Spec>,
    },
    RebalanceTo(Vec<Spec>),
    Lookup {
        key: Vec<u8>,
        rf: u8,
        zone_aware: bool,
    },
    LookupToken(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    hashed: bool,
    tokens: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let strategy = if input.hashed {
        Strategy::Hashed
    } else {
        Strategy::Balanced
    };
    let config = RingConfig::new(strategy, u32::from(input.tokens % 32) + 1);
    let mut ring = Ring::new(config).expect("a valid config");
    for op in input.ops.iter().take(24) {
        step(&mut ring, op);
        check(&ring);
    }
});

/// Whether `change` is valid against the members `current`, as the ring
/// documents it.
fn valid(current: &BTreeMap<MemberId, MemberSpec>, change: &MembershipChange) -> bool {
    let mut touched = BTreeSet::new();
    for spec in change.join.iter().chain(&change.update) {
        if spec.weight == 0 || !touched.insert(spec.id.clone()) {
            return false;
        }
    }
    let mut leaving = BTreeSet::new();
    for id in &change.leave {
        if !current.contains_key(id) || touched.contains(id) || !leaving.insert(id.clone()) {
            return false;
        }
    }
    change.join.iter().all(|s| !current.contains_key(&s.id))
        && change.update.iter().all(|s| current.contains_key(&s.id))
}

fn step(ring: &mut Ring, op: &Op) {
    let current: BTreeMap<MemberId, MemberSpec> = ring
        .members()
        .iter()
        .map(|m| (m.id.clone(), m.clone()))
        .collect();
    let change = match op {
        Op::Join(s) => MembershipChange {
            join: vec![s.spec()],
            ..Default::default()
        },
        Op::Leave(id) => MembershipChange {
            leave: vec![member_id(*id)],
            ..Default::default()
        },
        Op::Update(s) => MembershipChange {
            update: vec![s.spec()],
            ..Default::default()
        },
        Op::Change {
            join,
            leave,
            update,
        } => MembershipChange {
            join: join.iter().take(4).map(|s| s.spec()).collect(),
            leave: leave.iter().take(4).map(|&id| member_id(id)).collect(),
            update: update.iter().take(4).map(|s| s.spec()).collect(),
        },
        Op::RebalanceTo(specs) => {
            let desired: Vec<MemberSpec> = specs.iter().take(10).map(|s| s.spec()).collect();
            let ids: BTreeSet<&MemberId> = desired.iter().map(|s| &s.id).collect();
            let expect_ok = ids.len() == desired.len() && desired.iter().all(|s| s.weight > 0);
            match ring.rebalance_to(&desired) {
                Ok(next) => {
                    assert!(expect_ok, "rebalance_to accepted {desired:?}");
                    let mut want = desired.clone();
                    want.sort_by(|a, b| a.id.cmp(&b.id));
                    assert_eq!(next.members(), &want[..]);
                    *ring = next;
                }
                Err(e) => assert!(!expect_ok, "rebalance_to refused {desired:?}: {e}"),
            }
            return;
        }
        Op::Lookup {
            key,
            rf,
            zone_aware,
        } => {
            lookup(ring, hash_key(key), usize::from(*rf % 4), *zone_aware);
            match ring.owner(key) {
                Ok(owner) => assert_eq!(Some(owner), reference_owner(ring, hash_key(key))),
                Err(e) => assert!(ring.is_empty() && e == RingError::Empty),
            }
            return;
        }
        Op::LookupToken(token) => {
            lookup(ring, *token, 1, false);
            return;
        }
    };
    let expect_ok = valid(&current, &change);
    match ring.apply(&change) {
        Ok(next) => {
            assert!(expect_ok, "an invalid change was accepted: {change:?}");
            let mut want = current.clone();
            for id in &change.leave {
                want.remove(id);
            }
            for spec in change.join.iter().chain(&change.update) {
                want.insert(spec.id.clone(), spec.clone());
            }
            let want: Vec<MemberSpec> = want.into_values().collect();
            assert_eq!(next.members(), &want[..], "after {change:?}");
            // Members that neither joined nor left nor changed keep their
            // weight, zone and id; a `hashed` ring is a function of its
            // members alone.
            if ring.config().strategy == Strategy::Hashed {
                let fresh = Ring::with_members(ring.config(), want.iter().cloned())
                    .expect("the same members build a ring");
                assert_eq!(next, fresh, "hashed ring depends on history");
            }
            *ring = next;
        }
        Err(e) => assert!(!expect_ok, "a valid change was refused: {change:?}: {e}"),
    }
}

/// The first token >= `token`, wrapping: found by a linear scan.
fn reference_position(ring: &Ring, token: Token) -> Option<usize> {
    let tokens = ring.tokens();
    if tokens.is_empty() {
        return None;
    }
    Some(tokens.iter().position(|&t| t >= token).unwrap_or(0))
}

fn reference_owner(ring: &Ring, token: Token) -> Option<&MemberId> {
    reference_position(ring, token).map(|p| &ring.members()[ring.owner_indices()[p] as usize].id)
}

/// Replicas by walking the ring clockwise: one member per zone first when
/// zone-aware (as many zones as the factor allows), then distinct members.
fn reference_replicas(ring: &Ring, token: Token, replication: &Replication) -> Vec<u32> {
    let start = reference_position(ring, token).expect("non-empty ring");
    let n = ring.tokens().len();
    let owners = ring.owner_indices();
    let zone = |m: u32| ring.members()[m as usize].zone.clone();
    let mut out: Vec<u32> = Vec::new();
    let zones: BTreeSet<Option<String>> = ring.members().iter().map(|m| m.zone.clone()).collect();
    if replication.zone_aware && zones.len() > 1 {
        let wanted = replication.factor.min(zones.len());
        let mut seen = BTreeSet::new();
        for i in 0..n {
            if out.len() == wanted {
                break;
            }
            let m = owners[(start + i) % n];
            if seen.insert(zone(m)) {
                out.push(m);
            }
        }
    }
    for i in 0..n {
        if out.len() == replication.factor {
            break;
        }
        let m = owners[(start + i) % n];
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

fn lookup(ring: &Ring, token: Token, rf: usize, zone_aware: bool) {
    let replication = Replication::new(rf, zone_aware);
    let result = ring.replicas_of_token(token, &replication);
    if ring.is_empty() || rf == 0 || rf > ring.len() {
        assert!(result.is_err(), "rf {rf} on {} members", ring.len());
        return;
    }
    let replicas = result.expect("a valid replication");
    let want: Vec<&MemberId> = reference_replicas(ring, token, &replication)
        .into_iter()
        .map(|m| &ring.members()[m as usize].id)
        .collect();
    assert_eq!(
        replicas, want,
        "replicas of {token} rf={rf} zone_aware={zone_aware}"
    );
    let distinct: BTreeSet<&MemberId> = replicas.iter().copied().collect();
    assert_eq!(distinct.len(), rf, "replicas not distinct: {replicas:?}");
    assert_eq!(Some(replicas[0]), reference_owner(ring, token));
    let location = ring.locate(token).expect("non-empty ring");
    assert!(location.range.contains(token));
    assert_eq!(Some(location.owner), reference_owner(ring, token));
}

fn check(ring: &Ring) {
    let tokens = ring.tokens();
    let owners = ring.owner_indices();
    let members = ring.members();
    assert_eq!(tokens.len(), owners.len());
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens are not sorted and distinct"
    );
    assert!(
        members.windows(2).all(|w| w[0].id < w[1].id),
        "members are not sorted by id and distinct"
    );
    let mut count = vec![0usize; members.len()];
    for &o in owners {
        count[o as usize] += 1;
    }
    for (m, &c) in members.iter().zip(&count) {
        assert!(c > 0, "member {} has no token", m.id);
    }
    // Owned tokens sum to the whole space.
    let owned = ring.owned_tokens();
    if !members.is_empty() {
        assert_eq!(owned.iter().sum::<u128>(), TOKEN_SPACE);
    }
    // ranges_of partitions the space: each member's ranges sum to what it
    // owns, and all ranges together chain around the circle with no gap and
    // no overlap.
    let mut all: Vec<(TokenRange, usize)> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let ranges = ring.ranges_of(m.id.as_str()).expect("a member");
        assert_eq!(
            ranges.iter().map(TokenRange::len).sum::<u128>(),
            owned[i],
            "ranges of {} do not add up to its ownership",
            m.id
        );
        for r in &ranges {
            // Every range boundary is a token of the ring (or the full circle).
            assert!(r.is_full() || tokens.binary_search(&r.end).is_ok());
            assert_eq!(reference_owner(ring, r.end), Some(&m.id));
        }
        all.extend(ranges.into_iter().map(|r| (r, i)));
    }
    if members.len() == 1 {
        assert_eq!(all, vec![(TokenRange::FULL, 0)]);
    } else if members.len() > 1 {
        all.sort_by_key(|(r, _)| r.end);
        for k in 0..all.len() {
            let (prev, _) = all[(k + all.len() - 1) % all.len()];
            let (this, owner) = all[k];
            assert_eq!(prev.end, this.start, "gap or overlap before {this}");
            assert!(!this.is_full());
            // Adjacent ranges of one member are merged.
            let (_, prev_owner) = all[(k + all.len() - 1) % all.len()];
            assert_ne!(
                prev_owner, owner,
                "ranges of one member not merged at {this}"
            );
        }
    }
    // Owners agree with a linear scan, around every token.
    if !tokens.is_empty() {
        let mut probes: Vec<Token> = vec![0, 1, u64::MAX];
        for &t in tokens.iter().take(64) {
            probes.extend([t.wrapping_sub(1), t, t.wrapping_add(1)]);
        }
        for &p in &probes {
            assert_eq!(
                ring.owner_of_token(p).ok(),
                reference_owner(ring, p),
                "token {p}"
            );
        }
        for p in probes.iter().step_by(7) {
            for rf in 1..=ring.len().min(3) {
                lookup(ring, *p, rf, true);
                lookup(ring, *p, rf, false);
            }
        }
    }
    // The snapshot reads back to the same ring, as does the JSON form and
    // the explicit assignments a client receives.
    let snapshot = RingSnapshot::from(ring);
    assert_eq!(
        &Ring::try_from(snapshot.clone()).expect("snapshot reads back"),
        ring
    );
    let json = serde_json::to_string(&snapshot).expect("snapshot encodes");
    let back: Ring = serde_json::from_str(&json).expect("snapshot JSON reads back");
    assert_eq!(&back, ring);
    let assigned = Ring::from_assignments(
        ring.config(),
        members.iter().cloned(),
        ring.token_owners().map(|(t, m)| (t, m.clone())),
    )
    .expect("assignments read back");
    assert_eq!(&assigned, ring);
    let balance = ring.balance();
    assert!(
        balance.is_finite() && balance >= 1.0 - 1e-9,
        "balance {balance}"
    );
}
