//! The allocator's output, pinned: a digest of every ring of a fixed set of
//! histories (joins, leaves, weight and zone changes; one replica, zone by
//! zone, replication-aware and hashed; 3 to 1,000 members) is compared with
//! the list in `allocator_output.txt`.
//!
//! Changes that only make the allocator faster (its data structures, what
//! it caches) must keep every ring bit for bit: this test is how that is
//! checked. A change that means to place tokens differently changes some
//! digests; then look at which histories changed (the failure lists them),
//! check the new placements with the simulator and the placement property
//! tests, and write the new list with
//! `RINGLEADER_BLESS=1 cargo test -p ringleader-ring --test allocator_output`.

use ringleader_ring::{MemberSpec, MembershipChange, Replication, Ring, RingConfig, Strategy};
use std::fmt::Write as _;

/// A digest of everything a ring holds: members (id, zone, weight), tokens
/// and owners.
fn digest(ring: &Ring) -> u64 {
    let mut bytes = Vec::with_capacity(ring.tokens().len() * 12 + ring.len() * 16);
    for m in ring.members() {
        bytes.extend_from_slice(m.id.as_str().as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(m.zone.as_deref().unwrap_or("").as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(&m.weight.to_le_bytes());
    }
    for (&t, &o) in ring.tokens().iter().zip(ring.owner_indices()) {
        bytes.extend_from_slice(&t.to_le_bytes());
        bytes.extend_from_slice(&o.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn member(i: usize, zones: usize) -> MemberSpec {
    let spec = MemberSpec::new(format!("m{i:04}"));
    if zones == 0 {
        spec
    } else {
        spec.with_zone(format!("zone-{}", i % zones))
    }
}

/// One history: a ring of `n` members, then six changes. Returns a line per
/// ring.
fn history(
    name: &str,
    strategy: Strategy,
    tokens: u32,
    n: usize,
    zones: usize,
    replication: Replication,
    out: &mut Vec<String>,
) {
    let config = RingConfig::new(strategy, tokens);
    let mut ring = Ring::new(config)
        .unwrap()
        .apply_for(
            &MembershipChange {
                join: (0..n).map(|i| member(i, zones)).collect(),
                ..Default::default()
            },
            &replication,
        )
        .unwrap();
    out.push(format!("{name} start {:016x}", digest(&ring)));
    let id = |i: usize| member(i, zones).id;
    let steps: Vec<(&str, MembershipChange)> = vec![
        (
            "join",
            MembershipChange {
                join: vec![member(n, zones)],
                ..Default::default()
            },
        ),
        (
            "leave",
            MembershipChange {
                leave: vec![id(n / 2)],
                ..Default::default()
            },
        ),
        (
            "join2+leave",
            MembershipChange {
                join: vec![member(n + 1, zones), member(n + 2, zones)],
                leave: vec![id(0)],
                ..Default::default()
            },
        ),
        (
            "weight",
            MembershipChange {
                update: vec![member(1, zones).with_weight(3)],
                ..Default::default()
            },
        ),
        (
            "zone",
            MembershipChange {
                update: vec![if zones > 1 {
                    member(n - 1, zones).with_zone("zone-0")
                } else {
                    member(n - 1, zones).with_weight(2)
                }],
                ..Default::default()
            },
        ),
        (
            "leave-newest",
            MembershipChange {
                leave: vec![id(n)],
                ..Default::default()
            },
        ),
    ];
    for (step, change) in steps {
        ring = ring.apply_for(&change, &replication).unwrap();
        out.push(format!("{name} {step} {:016x}", digest(&ring)));
    }
}

fn all_rings() -> Vec<String> {
    let mut out = Vec::new();
    let settings = [
        (
            "rf1",
            Strategy::Balanced,
            0usize,
            Replication::new(1, false),
        ),
        (
            "rf1-zones",
            Strategy::Balanced,
            3,
            Replication::new(1, true),
        ),
        (
            "rf3-3zones",
            Strategy::Balanced,
            3,
            Replication::new(3, true),
        ),
        (
            "rf2-2zones",
            Strategy::Balanced,
            2,
            Replication::new(2, true),
        ),
        (
            "rf3-nozones",
            Strategy::Balanced,
            0,
            Replication::new(3, false),
        ),
        ("hashed-rf3", Strategy::Hashed, 3, Replication::new(3, true)),
    ];
    for (label, strategy, zones, replication) in settings {
        for (n, tokens) in [(4usize, 16u32), (30, 16), (200, 64)] {
            history(
                &format!("{label}/{n}x{tokens}"),
                strategy,
                tokens,
                n,
                zones,
                replication,
                &mut out,
            );
        }
    }
    // The largest size, for the two allocators the coordinator runs there.
    for (label, zones, replication) in [
        ("rf1", 0usize, Replication::new(1, false)),
        ("rf3-3zones", 3, Replication::new(3, true)),
    ] {
        history(
            &format!("{label}/1000x256"),
            Strategy::Balanced,
            256,
            1000,
            zones,
            replication,
            &mut out,
        );
    }
    out
}

#[test]
fn the_allocator_places_every_ring_as_before() {
    let rings = all_rings();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/allocator_output.txt");
    if std::env::var_os("RINGLEADER_BLESS").is_some() {
        let mut text = String::new();
        for line in &rings {
            writeln!(text, "{line}").unwrap();
        }
        std::fs::write(path, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).expect("tests/allocator_output.txt");
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), rings.len(), "a different set of histories");
    let changed: Vec<String> = rings
        .iter()
        .zip(&expected)
        .filter(|(got, want)| got.as_str() != **want)
        .map(|(got, want)| format!("{want} → {got}"))
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {} rings are placed differently:\n{}",
        changed.len(),
        rings.len(),
        changed.join("\n")
    );
}
