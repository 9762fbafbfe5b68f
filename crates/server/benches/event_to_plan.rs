//! Member change → new plan readable from the coordinator's API view, with
//! the settle window set to zero (DESIGN §8 excludes it).
//!
//! `cargo bench -p ringleader --bench event_to_plan`
//!
//! The real driver runs on a tokio runtime with a file state store in a
//! temporary directory; the source is a channel. Members are spread over
//! three zones; rf 3 is zone-aware. Each iteration sends a
//! member set with one member more (or less) than the last and waits until
//! the published view shows the new epoch: planning, committing (mode
//! `auto`), saving the state with fsync, and recomputing ownership are all
//! inside the measured time.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use ringleader::runtime::Driver;
use ringleader::settings::{Mode, RingSettings, Timing};
use ringleader::state::{FileStore, State};
use ringleader_ring::Strategy;
use ringleader_watch::{Member, MemberId, MemberSet, SourceEvent};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn members(n: usize, extra: bool) -> MemberSet {
    let mut set: MemberSet = (0..n).map(|i| member(&format!("db-{i:04}"))).collect();
    if extra {
        set.insert(member("db-extra"));
    }
    set
}

fn member(id: &str) -> Member {
    // Three zones, by the id's hash (the joiner lands in one of them too).
    let zone = format!("zone-{}", xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % 3);
    Member {
        id: MemberId::new(id),
        addresses: vec!["10.0.0.1".into()],
        zone: Some(zone),
        node_name: None,
        ports: Vec::new(),
        ready: true,
        serving: true,
        terminating: false,
        weight: Some(1),
    }
}

fn bench_event_to_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_to_plan");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // (members, tokens, rf): rf 3 is zone-aware over three zones.
    for &(n, tokens, rf) in &[
        (100usize, 16u32, 1usize),
        (1000, 16, 1),
        (1000, 256, 1),
        (1000, 256, 3),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = RingSettings {
            rf,
            strategy: Strategy::Balanced,
            tokens_per_member: tokens,
            zone_aware: rf > 1,
            mode: Mode::Auto,
            ..RingSettings::default()
        };
        let timing = Timing {
            settle: Duration::ZERO,
            settle_max: Duration::ZERO,
            // A member that vanishes leaves at once, so every event plans.
            down_grace: Duration::ZERO,
        };
        let (tx, rx) = mpsc::unbounded_channel::<SourceEvent>();
        let source =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
                .boxed();
        let store = FileStore::new(dir.path().join("state.json"));
        let (driver, handle) = Driver::new(
            State::fresh(settings).expect("state"),
            settings,
            timing,
            store,
            source,
        );
        let (_stop_tx, stop_rx) = watch::channel(false);
        runtime.spawn(driver.run(stop_rx));
        let mut view = handle.view.clone();
        // Initial ring.
        tx.send(SourceEvent::Members(members(n, false)))
            .expect("send");
        runtime.block_on(async {
            while view.borrow().epoch < 1 {
                view.changed().await.expect("driver alive");
            }
        });
        let mut extra = false;
        group.bench_function(
            BenchmarkId::from_parameter(format!("{n}x{tokens}-rf{rf}")),
            |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            extra = !extra;
                            let want = view.borrow().epoch + 1;
                            let started = Instant::now();
                            tx.send(SourceEvent::Members(members(n, extra)))
                                .expect("send");
                            while view.borrow().epoch < want {
                                view.changed().await.expect("driver alive");
                            }
                            total += started.elapsed();
                        }
                        total
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_event_to_plan);
criterion_main!(benches);
