//! Key → owner lookups: this ring against a plain sorted array with binary
//! search and against peer crates, with the same members and the same keys,
//! in one run.
//!
//! `cargo bench -p ringleader-ring --bench lookup`
//!
//! Keys are 16 bytes and generated before the timed loop; each iteration
//! looks up the next key of a 64 Ki-key table, hashing included, so the
//! figure is the latency of one lookup with the ring mostly out of L1.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringleader_ring::{MemberSpec, Replication, Ring, RingConfig, Strategy, hash_key};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const KEYS: usize = 1 << 16;

fn keys() -> Vec<[u8; 16]> {
    (0..KEYS)
        .map(|i| {
            let mut key = [0u8; 16];
            key.copy_from_slice(format!("user:{i:011}").as_bytes());
            key
        })
        .collect()
}

fn member_name(i: usize) -> String {
    format!("db-{i}")
}

/// The obvious baseline: sorted tokens, `partition_point`, owner array.
struct SortedArray {
    tokens: Vec<u64>,
    owners: Vec<u32>,
}

impl SortedArray {
    fn from_ring(ring: &Ring) -> Self {
        Self {
            tokens: ring.tokens().to_vec(),
            owners: ring.owner_indices().to_vec(),
        }
    }

    #[inline]
    fn owner(&self, key: &[u8]) -> u32 {
        let hash = hash_key(key);
        let p = self.tokens.partition_point(|&t| t < hash);
        self.owners[if p == self.tokens.len() { 0 } else { p }]
    }
}

/// A virtual node for the `hashring` crate, which hashes node values.
#[derive(Hash, Clone, PartialEq, Debug)]
struct VNode {
    member: u32,
    replica: u32,
}

#[derive(Clone, Debug)]
struct ConNode(String);

impl conhash::Node for ConNode {
    fn name(&self) -> String {
        self.0.clone()
    }
}

fn bench_lookup(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("lookup");
    for &members in &[10usize, 100, 1000] {
        for &tokens in &[16u32, 256] {
            let label = format!("{members}x{tokens}");
            let ring = Ring::with_members(
                RingConfig::new(Strategy::Balanced, tokens),
                (0..members)
                    .map(|i| MemberSpec::new(member_name(i)).with_zone(format!("z{}", i % 3))),
            )
            .expect("valid ring");

            group.bench_function(BenchmarkId::new("ringleader", &label), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(ring.owner(black_box(&keys[i])).ok())
                })
            });

            let sorted = SortedArray::from_ring(&ring);
            group.bench_function(BenchmarkId::new("sorted_vec", &label), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(sorted.owner(black_box(&keys[i])))
                })
            });

            let mut hashring = hashring::HashRing::new();
            for m in 0..members as u32 {
                for replica in 0..tokens {
                    hashring.add(VNode { member: m, replica });
                }
            }
            group.bench_function(BenchmarkId::new("hashring", &label), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(hashring.get(black_box(&keys[i])).map(|v| v.member))
                })
            });

            let mut con = conhash::ConsistentHash::new();
            for m in 0..members {
                con.add(&ConNode(member_name(m)), tokens as usize);
            }
            group.bench_function(BenchmarkId::new("conhash", &label), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(con.get(black_box(&keys[i])).map(|n| n.0.len()))
                })
            });

            // pingora-ketama places 160 points per unit of weight (nginx's
            // constant): weight 1 stands in for 16 tokens (10× more points),
            // weight 2 (320 points) for 256.
            let weight = if tokens <= 16 { 1 } else { 2 };
            let buckets: Vec<_> = (0..members)
                .map(|m| {
                    let addr = SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(10, 0, (m / 250) as u8, (m % 250) as u8)),
                        7000,
                    );
                    pingora_ketama::Bucket::new(addr, weight)
                })
                .collect();
            let ketama = pingora_ketama::Continuum::new(&buckets);
            group.bench_function(BenchmarkId::new("pingora_ketama", &label), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (KEYS - 1);
                    black_box(ketama.node_idx(black_box(&keys[i])))
                })
            });
        }
    }
    group.finish();
}

fn bench_replicas(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("replicas");
    for &(members, tokens) in &[(100usize, 16u32), (1000, 16), (1000, 256)] {
        let label = format!("{members}x{tokens}");
        let ring = Ring::with_members(
            RingConfig::new(Strategy::Balanced, tokens),
            (0..members).map(|i| MemberSpec::new(member_name(i)).with_zone(format!("z{}", i % 3))),
        )
        .expect("valid ring");
        for (name, replication) in [
            ("rf3", Replication::new(3, false)),
            ("rf3_zones", Replication::new(3, true)),
        ] {
            group.bench_function(
                BenchmarkId::new(format!("ringleader_{name}"), &label),
                |b| {
                    let mut out = Vec::with_capacity(3);
                    let mut i = 0;
                    b.iter(|| {
                        i = (i + 1) & (KEYS - 1);
                        ring.replica_indices(black_box(&keys[i]), &replication, &mut out)
                            .ok();
                        black_box(out.len())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_replicas);
criterion_main!(benches);
