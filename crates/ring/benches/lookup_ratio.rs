//! Key → owner (and key → replicas) lookups, ringleader against a plain
//! reference, interleaved in one process, reported as ratios of pairs.
//!
//! `cargo bench -p ringleader-ring --bench lookup_ratio`
//!
//! On a shared, noisy machine absolute nanoseconds drift by 2× from one
//! minute to the next, so ringleader and the reference are timed back to
//! back over the same chunk of 16 Ki keys (alternating which goes first),
//! and each round of the whole key set keeps the median of its chunks' pair
//! ratios (a chunk that lost the CPU to another process counts once, not by
//! its length). The report is, per size, the median of the rounds' ratios
//! with their min and max, and the median ns per key of each side. DESIGN §8 wants the owner ratio ≤ 1.0 at every size and ≤ 0.5 at
//! 1,000 × 256.
//!
//! - owner: the reference is xxh3-64 + a sorted `Vec<u64>` +
//!   `partition_point` + an owner `Vec<u32>`; ringleader is [`Ring::owner`].
//! - replicas (rf 3, zone-aware over 3 zones): the reference is the same
//!   binary search followed by the obvious clockwise walk over the owner
//!   array; ringleader is [`Ring::replica_indices`].
//!
//! Keys are 16 random bytes, generated before the timed loops; hashing is
//! included on both sides. Environment: `RATIO_ROUNDS` (default 11, at
//! least 7), `RATIO_KEYS` (default 1,048,576), `RATIO_SIZES` (e.g.
//! `10x16,1000x256`; default all five).
#![allow(missing_docs)]

use ringleader_ring::{MemberSpec, Replication, Ring, RingConfig, Strategy, hash_key};
use std::hint::black_box;
use std::time::Instant;

const SIZES: [(usize, u32); 5] = [(10, 16), (100, 16), (1000, 16), (100, 256), (1000, 256)];

/// splitmix64: a fixed seed, so every run looks up the same keys.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn random_keys(count: usize) -> Vec<[u8; 16]> {
    let mut rng = SplitMix(0x5eed);
    (0..count)
        .map(|_| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&rng.next().to_le_bytes());
            key[8..].copy_from_slice(&rng.next().to_le_bytes());
            key
        })
        .collect()
}

/// The plain reference: sorted tokens, `partition_point`, owner array, and
/// for replicas a clockwise walk that checks zones and duplicates as it goes.
struct Reference {
    tokens: Vec<u64>,
    owners: Vec<u32>,
    zone_of: Vec<u32>,
}

impl Reference {
    fn from_ring(ring: &Ring) -> Self {
        Self {
            tokens: ring.tokens().to_vec(),
            owners: ring.owner_indices().to_vec(),
            zone_of: (0..ring.len()).map(|m| ring.zone_index(m)).collect(),
        }
    }

    #[inline]
    fn position(&self, key: &[u8]) -> usize {
        let hash = hash_key(key);
        let p = self.tokens.partition_point(|&t| t < hash);
        if p == self.tokens.len() { 0 } else { p }
    }

    #[inline]
    fn owner(&self, key: &[u8]) -> u32 {
        self.owners[self.position(key)]
    }

    /// Zone-aware replicas when there are at least `rf` zones (the bench's
    /// rings have three zones and ask for three replicas).
    #[inline]
    fn replicas(&self, key: &[u8], rf: usize, out: &mut Vec<u32>) {
        out.clear();
        let n = self.tokens.len();
        let mut at = self.position(key);
        let mut zones_seen = 0u64;
        for _ in 0..n {
            if out.len() == rf {
                break;
            }
            let member = self.owners[at];
            let zone = self.zone_of[member as usize];
            if zones_seen & (1 << zone) == 0 {
                zones_seen |= 1 << zone;
                out.push(member);
            }
            at = if at + 1 == n { 0 } else { at + 1 };
        }
    }
}

/// Seconds to run `f` over every key, each result kept alive.
fn time<T>(keys: &[[u8; 16]], mut f: impl FnMut(&[u8; 16]) -> T) -> f64 {
    let start = Instant::now();
    for key in keys {
        black_box(f(black_box(key)));
    }
    start.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Keys per timed chunk: short enough that most chunks run without being
/// preempted on a loaded machine, long enough that reading the clock costs
/// nothing (about 0.1–1 ms).
const CHUNK: usize = 16 * 1024;

/// Per round: the median over chunks of the ratio of ringleader's time to
/// the reference's on the same chunk, and the median ns per key of each.
struct Pairs {
    ratios: Vec<f64>,
    ours_ns: Vec<f64>,
    reference_ns: Vec<f64>,
}

impl Pairs {
    /// Runs `rounds` rounds over `keys`; in each, every chunk of keys is
    /// timed with both implementations back to back, the one going first
    /// alternating from chunk to chunk and from round to round.
    fn run(
        keys: &[[u8; 16]],
        rounds: usize,
        mut ours: impl FnMut(&[[u8; 16]]) -> f64,
        mut reference: impl FnMut(&[[u8; 16]]) -> f64,
    ) -> Self {
        // One untimed pass each, so that neither pays for the first touch.
        ours(keys);
        reference(keys);
        let mut pairs = Pairs {
            ratios: Vec::new(),
            ours_ns: Vec::new(),
            reference_ns: Vec::new(),
        };
        for round in 0..rounds {
            let mut ratios = Vec::new();
            let mut ours_ns = Vec::new();
            let mut reference_ns = Vec::new();
            for (c, chunk) in keys.chunks(CHUNK).enumerate() {
                let (a, b) = if (c + round) % 2 == 0 {
                    let a = ours(chunk);
                    (a, reference(chunk))
                } else {
                    let b = reference(chunk);
                    (ours(chunk), b)
                };
                let per_op = 1e9 / chunk.len() as f64;
                ratios.push(a / b);
                ours_ns.push(a * per_op);
                reference_ns.push(b * per_op);
            }
            pairs.ratios.push(median(&mut ratios));
            pairs.ours_ns.push(median(&mut ours_ns));
            pairs.reference_ns.push(median(&mut reference_ns));
        }
        pairs
    }

    fn row(mut self, label: &str) -> String {
        let (min, max) = self
            .ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        format!(
            "| {label} | {:.2} | {min:.2}–{max:.2} | {:.1} | {:.1} |",
            median(&mut self.ratios),
            median(&mut self.ours_ns),
            median(&mut self.reference_ns),
        )
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sizes() -> Vec<(usize, u32)> {
    let Ok(list) = std::env::var("RATIO_SIZES") else {
        return SIZES.to_vec();
    };
    list.split(',')
        .filter_map(|s| {
            let (m, t) = s.trim().split_once('x')?;
            Some((m.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and only wants to know the bench runs: one tiny round then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick {
        1
    } else {
        env_usize("RATIO_ROUNDS", 11).max(7)
    };
    let keys = random_keys(if quick {
        1 << 10
    } else {
        env_usize("RATIO_KEYS", 1 << 20).max(1)
    });
    let replication = Replication::new(3, true);

    let mut owner_rows = Vec::new();
    let mut replica_rows = Vec::new();
    for (members, tokens) in sizes() {
        let label = format!("{members} × {tokens}");
        let ring = Ring::with_members(
            RingConfig::new(Strategy::Balanced, tokens),
            (0..members)
                .map(|i| MemberSpec::new(format!("db-{i}")).with_zone(format!("z{}", i % 3))),
        )
        .expect("valid ring");
        let reference = Reference::from_ring(&ring);

        let owners = Pairs::run(
            &keys,
            rounds,
            |keys| time(keys, |k| ring.owner(k).ok()),
            |keys| time(keys, |k| reference.owner(k)),
        );
        owner_rows.push(owners.row(&label));
        eprintln!("{}", owner_rows.last().map_or("", String::as_str));

        let mut ours_out = Vec::with_capacity(3);
        let mut reference_out = Vec::with_capacity(3);
        let replicas = Pairs::run(
            &keys,
            rounds,
            |keys| {
                time(keys, |k| {
                    ring.replica_indices(k, &replication, &mut ours_out).ok();
                    ours_out.len()
                })
            },
            |keys| {
                time(keys, |k| {
                    reference.replicas(k, 3, &mut reference_out);
                    reference_out.len()
                })
            },
        );
        replica_rows.push(replicas.row(&label));
        eprintln!("{}", replica_rows.last().map_or("", String::as_str));
    }

    println!(
        "\nkey → owner: {rounds} interleaved rounds of {} random 16-byte keys\n",
        keys.len()
    );
    println!(
        "| members × tokens | ringleader / sorted array (median) | min–max | ringleader ns | sorted array ns |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in &owner_rows {
        println!("{row}");
    }
    println!("\nkey → 3 replicas, zone-aware (3 zones): same rounds\n");
    println!(
        "| members × tokens | ringleader / sorted array + walk (median) | min–max | ringleader ns | reference ns |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in &replica_rows {
        println!("{row}");
    }
}
