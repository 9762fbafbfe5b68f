//! The ConfigMap store at DESIGN §8's largest size: 1,000 members × 256
//! tokens with a plan in flight, against the testkit's API server (which,
//! like a real one, refuses a ConfigMap over 1 MiB).

use k8s_openapi::api::core::v1::ConfigMap;
use ringleader::settings::RingSettings;
use ringleader::state::{
    ConfigMapStore, MAX_PARTS, PARTS_KEY, PlanRecord, PlanState, PlanTimes, State, StoreError,
    part_names,
};
use ringleader_planner::{MoveState, Placement, PlanOptions};
use ringleader_ring::{MemberSpec, Ring, Strategy};
use ringleader_testkit::TestApiServer;

const NS: &str = "default";
const STATE: &str = "ringleader-state";

fn spec(i: usize) -> MemberSpec {
    MemberSpec::new(format!("db-{i}")).with_zone(format!("zone-{}", i % 3))
}

/// `members` × `tokens` committed at epoch 1, and a plan to epoch 2 in
/// flight that adds `joiners`.
fn state_with_plan(settings: RingSettings, members: usize, joiners: usize) -> State {
    let committed =
        Ring::with_members(settings.ring_config(), (0..members).map(spec)).expect("ring");
    let target = committed
        .rebalance_to(&(0..members + joiners).map(spec).collect::<Vec<_>>())
        .expect("target");
    let from = Placement::new(committed.clone(), settings.replication()).expect("from");
    let to = Placement::new(target.clone(), settings.replication()).expect("to");
    let plan = ringleader_planner::plan(&from, &to, &PlanOptions::default()).expect("plan");
    let mut state = State::fresh(settings).expect("fresh");
    state.committed = committed;
    state.epoch = 1;
    state.plan = Some(PlanRecord {
        id: "e1-test".into(),
        from_epoch: 1,
        to_epoch: 2,
        state: PlanState::InProgress,
        target,
        settings,
        plan,
        times: PlanTimes::default(),
    });
    state
}

/// 1,000 × 256 `hashed` tokens (random, so they compress badly: a state
/// that needs parts) with a one-member join in flight.
fn hashed_thousand_by_256_with_a_plan() -> State {
    let settings = RingSettings {
        tokens_per_member: 256,
        strategy: Strategy::Hashed,
        ..RingSettings::default()
    };
    state_with_plan(settings, 1000, 1)
}

/// Marks the plan's first open move done (a revision, as an ack makes).
fn ack_one(state: &mut State) {
    let plan = state.plan.as_mut().expect("a plan");
    let id = plan
        .plan
        .moves
        .iter()
        .find(|m| m.state == MoveState::Pending)
        .expect("an open move")
        .id
        .as_str()
        .to_owned();
    plan.plan.mark_done(&id).expect("done");
    state.revision += 1;
}

fn manifest(kit: &TestApiServer) -> ConfigMap {
    kit.get::<ConfigMap>(NS, STATE)
        .expect("get")
        .expect("the manifest")
}

/// The part ConfigMaps the manifest names.
fn named_parts(kit: &TestApiServer) -> Vec<String> {
    let map = manifest(kit);
    let Some(index) = map.data.as_ref().and_then(|d| d.get(PARTS_KEY)) else {
        return Vec::new();
    };
    let index: serde_json::Value = serde_json::from_str(index).expect("index JSON");
    index["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn load(kit: &TestApiServer) -> State {
    ConfigMapStore::new(kit.client(), NS, STATE)
        .load()
        .await
        .expect("readable")
        .expect("stored")
}

/// Hashed tokens are as random as tokens get (about 8 bytes each after
/// compression, 2 MB at this size): the state takes several parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_members_by_256_tokens_with_a_plan_is_stored_in_parts_and_reads_back() {
    let kit = TestApiServer::start().await.expect("testkit");
    let settings = RingSettings {
        rf: 3,
        zone_aware: true,
        tokens_per_member: 256,
        strategy: Strategy::Hashed,
        ..RingSettings::default()
    };
    let mut state = state_with_plan(settings, 1000, 1);
    let store = ConfigMapStore::new(kit.client(), NS, STATE);
    store.save(&state).await.expect("saved");
    let first = named_parts(&kit);
    assert!((2..=MAX_PARTS).contains(&first.len()), "parts {first:?}");
    assert!(first.iter().all(|p| part_names(STATE).contains(p)));
    assert_eq!(load(&kit).await, state);

    // An ack: the next save goes to other parts, then the manifest.
    ack_one(&mut state);
    store.save(&state).await.expect("saved again");
    let second = named_parts(&kit);
    assert!(
        second.iter().all(|p| !first.contains(p)),
        "{first:?} then {second:?}"
    );
    assert_eq!(load(&kit).await, state);

    // And back to the first parts (fenced on what the manifest recorded).
    ack_one(&mut state);
    store.save(&state).await.expect("saved a third time");
    assert_eq!(load(&kit).await, state);
    kit.shutdown().await;
}

/// The default strategy lays a fresh ring out evenly, which compresses: a
/// thousand members × 256 tokens with rf 3 over three zones and a join in
/// flight fits the manifest alone, and a larger plan (100 joiners) spills
/// into parts and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_thousand_by_256_state_moves_between_inline_and_parts() {
    let kit = TestApiServer::start().await.expect("testkit");
    let settings = RingSettings {
        rf: 3,
        zone_aware: true,
        tokens_per_member: 256,
        ..RingSettings::default()
    };
    let small = state_with_plan(settings, 1000, 1);
    let store = ConfigMapStore::new(kit.client(), NS, STATE);
    store.save(&small).await.expect("saved");
    assert_eq!(named_parts(&kit), Vec::<String>::new(), "inline");
    assert_eq!(load(&kit).await, small);

    let mut large = state_with_plan(settings, 1000, 100);
    large.revision = 1;
    store.save(&large).await.expect("saved in parts");
    assert!(!named_parts(&kit).is_empty(), "in parts");
    assert_eq!(load(&kit).await, large);

    let mut small = small;
    small.revision = 2;
    store.save(&small).await.expect("inline again");
    assert_eq!(named_parts(&kit), Vec::<String>::new());
    assert_eq!(load(&kit).await, small);
    kit.shutdown().await;
}

/// A deposed writer (it last saw an older manifest) writes its parts into
/// the pool ConfigMaps its successor now uses: the fences refuse them, and
/// the successor's state stays whole and readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_writers_parts_never_land_over_its_successors() {
    let kit = TestApiServer::start().await.expect("testkit");
    let state = hashed_thousand_by_256_with_a_plan();
    let (a, b) = (
        ConfigMapStore::new(kit.client(), NS, STATE),
        ConfigMapStore::new(kit.client(), NS, STATE),
    );
    a.save(&state).await.expect("a writes");
    assert_eq!(b.load().await.expect("b reads"), Some(state.clone()));
    let mut successor = state.clone();
    ack_one(&mut successor);
    b.save(&successor).await.expect("b writes");
    let parts = named_parts(&kit);

    let mut deposed = state.clone();
    deposed.revision = 7;
    match a.save(&deposed).await {
        Err(StoreError::Conflict { stored, ours, .. }) => {
            assert_eq!((*stored, ours), (successor.clone(), (1, 7)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(named_parts(&kit), parts);
    assert_eq!(load(&kit).await, successor);

    // Having taken the stored state over, a writes on from it.
    let mut next = successor.clone();
    ack_one(&mut next);
    a.save(&next).await.expect("a writes on");
    assert_eq!(load(&kit).await, next);
    kit.shutdown().await;
}

/// Someone edits a part the manifest names: the state is refused as
/// corrupt (with the part's name), not read half old, half new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_changed_behind_the_manifest_is_reported_not_read() {
    let kit = TestApiServer::start().await.expect("testkit");
    let state = hashed_thousand_by_256_with_a_plan();
    ConfigMapStore::new(kit.client(), NS, STATE)
        .save(&state)
        .await
        .expect("saved");
    let part = named_parts(&kit)[0].clone();
    let mut map: ConfigMap = kit.get(NS, &part).expect("get").expect("the part");
    map.data
        .get_or_insert_default()
        .insert("edited".into(), "by hand".into());
    kit.replace(&map).expect("edited");
    let err = ConfigMapStore::new(kit.client(), NS, STATE)
        .load()
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::Corrupt { .. }) && message.contains(&part),
        "{message}"
    );
    kit.shutdown().await;
}

/// The Role lets the coordinator read and update every part it may write.
#[test]
fn the_role_names_every_part_of_the_pool() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/rbac.yaml"
    );
    let rbac = std::fs::read_to_string(path).expect("rbac.yaml");
    for name in part_names(STATE) {
        assert!(
            rbac.lines().any(|l| l.trim() == format!("- {name}")),
            "{name} is not in {path}"
        );
    }
}

/// A follower watching the store sees a state kept in parts whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_follower_reads_a_state_kept_in_parts() {
    use futures::StreamExt as _;
    use ringleader::state::Refreshed;
    let kit = TestApiServer::start().await.expect("testkit");
    let state = hashed_thousand_by_256_with_a_plan();
    let mut watch = ConfigMapStore::new(kit.client(), NS, STATE).watch();
    ConfigMapStore::new(kit.client(), NS, STATE)
        .save(&state)
        .await
        .expect("saved");
    assert!(!named_parts(&kit).is_empty(), "in parts");
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match watch.next().await.expect("the watch goes on") {
                Ok(Refreshed::Changed(Some(s))) => return *s,
                Ok(_) => {}
                Err(e) => panic!("watch error: {e}"),
            }
        }
    })
    .await
    .expect("seen within 30 s");
    assert_eq!(seen, state);
    kit.shutdown().await;
}
