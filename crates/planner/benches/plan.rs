//! Planning one join and one leave on rings of 10 / 100 / 1,000 members ×
//! 16 / 256 tokens, replication factor 1 and 3 (zone-aware, three zones).
//!
//! `cargo bench -p ringleader-planner --bench plan`
//!
//! Rings are built before the timed loop; the figure is `plan(from, to)`
//! alone: replica sets of both rings, the diff, source choice, merging.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringleader_planner::{Placement, PlanOptions, plan};
use ringleader_ring::{MemberSpec, Replication, Ring, RingConfig, Strategy};
use std::hint::black_box;
use std::time::Duration;

fn member(i: usize) -> MemberSpec {
    MemberSpec::new(format!("db-{i}")).with_zone(format!("zone-{}", i % 3))
}

fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for &members in &[10usize, 100, 1000] {
        for &tokens in &[16u32, 256] {
            let ring = Ring::with_members(
                RingConfig::new(Strategy::Balanced, tokens),
                (0..members).map(member),
            )
            .expect("valid ring");
            let joined = ring.join(member(members)).expect("join");
            let left = ring.leave(&format!("db-{}", members / 2)).expect("leave");
            for (rf_name, replication) in [
                ("rf1", Replication::new(1, false)),
                ("rf3", Replication::new(3, true)),
            ] {
                let from = Placement::new(ring.clone(), replication).expect("placement");
                let after_join = Placement::new(joined.clone(), replication).expect("placement");
                let after_leave = Placement::new(left.clone(), replication).expect("placement");
                let label = format!("{members}x{tokens}/{rf_name}");
                group.bench_function(BenchmarkId::new("join", &label), |b| {
                    b.iter(|| {
                        black_box(plan(&from, &after_join, &PlanOptions::default()).expect("plan"))
                    })
                });
                group.bench_function(BenchmarkId::new("leave", &label), |b| {
                    b.iter(|| {
                        black_box(plan(&from, &after_leave, &PlanOptions::default()).expect("plan"))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
