//! The file source and the pure parsing path, on real-world fixtures and
//! on files that change, break, move and vanish.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Collector, Rng, slice_of};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use ringleader_watch::{
    FileSource, MemberSet, SourceHealth, Weights, members_from_slices, members_from_text,
    parse_endpoint_slices,
};

const CONVERGE: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn fixture_members(name: &str) -> MemberSet {
    weighted(&parse_endpoint_slices(&fixture(name)).unwrap())
}

/// The member set of these slices as a source emits it: with no Service,
/// every member has weight 1.
fn weighted(slices: &[EndpointSlice]) -> MemberSet {
    Weights::default().apply(members_from_slices(slices).unwrap())
}

fn ids(set: &MemberSet) -> Vec<String> {
    set.ids().map(ToString::to_string).collect()
}

#[test]
fn a_three_pod_statefulset() {
    let set = fixture_members("db-3.yaml");
    assert_eq!(ids(&set), ["db-0", "db-1", "db-2"]);
    let db1 = set.get("db-1").unwrap();
    assert_eq!(db1.addresses, ["10.244.2.7"]);
    assert_eq!(db1.zone.as_deref(), Some("eu-west-1b"));
    assert_eq!(db1.node_name.as_deref(), Some("worker-b1"));
    assert!(db1.ready && db1.serving && !db1.terminating);
    let ports: Vec<_> = db1
        .ports
        .iter()
        .map(|p| (p.name.as_deref(), p.port, p.app_protocol.as_deref()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("grpc"), Some(7000), None),
            (Some("metrics"), Some(9090), Some("http"))
        ]
    );
}

#[test]
fn a_five_pod_statefulset_over_two_slices_mid_rolling_update() {
    let set = fixture_members("db-5.yaml");
    assert_eq!(ids(&set), ["db-0", "db-1", "db-2", "db-3", "db-4"]);
    let db4 = set.get("db-4").unwrap();
    assert!(!db4.ready && db4.serving && db4.terminating);
    assert!(
        set.iter()
            .filter(|m| m.id.as_str() != "db-4")
            .all(|m| m.ready)
    );
}

#[test]
fn dual_stack_pods_are_one_member_with_both_addresses() {
    let set = fixture_members("dual-stack.json");
    assert_eq!(ids(&set), ["cache-0", "cache-1"]);
    assert_eq!(
        set.get("cache-0").unwrap().addresses,
        ["10.96.4.11", "fd00:10:96::4:b"]
    );
    assert_eq!(
        set.get("cache-1").unwrap().addresses,
        ["10.96.5.12", "fd00:10:96::5:c"]
    );
}

#[test]
fn ipv6_fqdn_missing_conditions_and_a_lingering_old_pod() {
    let set = fixture_members("mixed.yaml");
    assert_eq!(
        ids(&set),
        ["kv-0", "kv-1", "kv-2.Example.com", "kv-3.example.com"]
    );
    // The terminating copy of the previous kv-0 pod (another uid) is dropped.
    let kv0 = set.get("kv-0").unwrap();
    assert_eq!(kv0.addresses, ["fd00::a"]);
    assert!(kv0.ready && kv0.serving && !kv0.terminating);
    // No conditions at all: ready, serving, not terminating.
    let kv1 = set.get("kv-1").unwrap();
    assert!(kv1.ready && kv1.serving && !kv1.terminating);
    assert_eq!(kv1.ports[0].protocol, "TCP");
    assert!(!set.get("kv-3.example.com").unwrap().ready);
}

#[test]
fn the_example_files_match_the_fixtures() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for name in ["db-3.yaml", "db-5.yaml"] {
        let path = examples.join(name);
        if path.exists() {
            assert_eq!(std::fs::read_to_string(path).unwrap(), fixture(name));
        }
    }
}

#[test]
fn the_service_filter_keeps_one_service() {
    let text = format!("{}---\n{}", fixture("db-3.yaml"), fixture("mixed.yaml"));
    assert!(
        members_from_text(&text, None).is_err(),
        "two Services are refused unfiltered"
    );
    assert_eq!(members_from_text(&text, Some("db")).unwrap().len(), 3);
    assert_eq!(members_from_text(&text, Some("kv")).unwrap().len(), 4);
}

fn list_yaml(slices: &[EndpointSlice]) -> String {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": slices});
    serde_yaml_ng::to_string(&list).unwrap()
}

/// Replaces the file atomically, as editors and ConfigMap mounts do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn source(path: &Path) -> FileSource {
    FileSource::new(path).poll_interval(Duration::from_millis(100))
}

fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpointslices.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn churn_in_a_file_replaced_by_rename_converges() {
    let mut rng = Rng::new(11);
    let mut slices = vec![vec![0usize], vec![1], vec![2]];
    let render = |slices: &Vec<Vec<usize>>| -> Vec<EndpointSlice> {
        slices
            .iter()
            .enumerate()
            .map(|(i, pods)| slice_of(&format!("db-{i:02}"), pods))
            .collect()
    };
    let (_dir, path) = setup(&list_yaml(&render(&slices)));
    let mut members = Collector::start(source(&path).stream());
    let mut valid = vec![weighted(&render(&slices))];
    members.wait_for_synced_set(&valid[0], CONVERGE).await;
    let mut next = 3;
    for step in 0..60 {
        match rng.below(4) {
            0 | 1 => {
                let i = rng.below(slices.len());
                slices[i].push(next);
                next += 1;
            }
            2 => {
                // A duplicate: the endpoint appears in a second slice.
                let (a, b) = (rng.below(slices.len()), rng.below(slices.len()));
                if let Some(&pod) = slices[a].first() {
                    slices[b].push(pod);
                }
            }
            _ => {
                let i = rng.below(slices.len());
                if slices[i].len() > 1 {
                    slices[i].remove(0);
                }
            }
        }
        let rendered = render(&slices);
        valid.push(weighted(&rendered));
        replace(&path, &list_yaml(&rendered));
        if step % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    members
        .wait_for_synced_set(valid.last().unwrap(), CONVERGE)
        .await;
    members.with(|o| {
        for set in &o.sets {
            assert!(valid.contains(set), "a set that no version of the file had");
        }
    });
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_set_and_says_where() {
    let good = list_yaml(&[slice_of("db-a", &[0, 1, 2])]);
    let (_dir, path) = setup(&good);
    let mut members = Collector::start(source(&path).stream());
    let first = members_from_text(&good, None).unwrap();
    members.wait_for_synced_set(&first, CONVERGE).await;

    let broken = good.replacen("ready: true", "ready: perhaps", 1);
    let line = broken.lines().position(|l| l.contains("perhaps")).unwrap() + 1;
    replace(&path, &broken);
    members
        .wait_until("a Failing health", CONVERGE, |o| {
            matches!(o.healths.last(), Some(SourceHealth::Failing { .. }))
        })
        .await;
    let Some(SourceHealth::Failing { error, .. }) = members.health() else {
        unreachable!()
    };
    assert!(
        error.contains(&format!("endpointslices.yaml:{line}:")),
        "{error}"
    );
    assert!(error.contains("invalid type"), "{error}");
    assert_eq!(
        members.with(|o| o.sets.len()),
        1,
        "the last good set stands"
    );

    // Valid YAML, invalid slices: also refused as a whole.
    replace(&path, &good.replace("10.0.0.1", "not-an-ip"));
    members
        .wait_until("the validation error", CONVERGE, |o| {
            matches!(o.healths.last(), Some(SourceHealth::Failing { error, .. }) if error.contains("not an IPv4 address"))
        })
        .await;
    assert_eq!(members.with(|o| o.sets.len()), 1);

    let fixed = list_yaml(&[slice_of("db-a", &[0, 1, 2, 3])]);
    replace(&path, &fixed);
    members
        .wait_for_synced_set(&members_from_text(&fixed, None).unwrap(), CONVERGE)
        .await;
}

#[tokio::test]
async fn a_deleted_file_keeps_the_last_set_until_it_returns() {
    let good = list_yaml(&[slice_of("db-a", &[0, 1])]);
    let (_dir, path) = setup(&good);
    let mut members = Collector::start(source(&path).stream());
    members
        .wait_for_synced_set(&members_from_text(&good, None).unwrap(), CONVERGE)
        .await;

    std::fs::remove_file(&path).unwrap();
    members
        .wait_until("Failing: deleted", CONVERGE, |o| {
            matches!(o.healths.last(), Some(SourceHealth::Failing { error, .. }) if error.contains("does not exist"))
        })
        .await;
    assert_eq!(members.with(|o| o.sets.len()), 1);

    let back = list_yaml(&[slice_of("db-a", &[0, 1, 2])]);
    std::fs::write(&path, &back).unwrap();
    members
        .wait_for_synced_set(&members_from_text(&back, None).unwrap(), CONVERGE)
        .await;
}

#[tokio::test]
async fn a_missing_file_at_start_reports_failing_without_members() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-yet.yaml");
    let mut members = Collector::start(source(&path).stream());
    members
        .wait_until("Failing", CONVERGE, |o| {
            matches!(o.healths.last(), Some(SourceHealth::Failing { .. }))
        })
        .await;
    assert!(members.latest().is_none());
    let text = fixture("db-3.yaml");
    replace(&path, &text);
    members
        .wait_for_synced_set(&members_from_text(&text, None).unwrap(), CONVERGE)
        .await;
}

#[tokio::test]
async fn an_in_place_rewrite_is_picked_up() {
    let (_dir, path) = setup(&fixture("db-3.yaml"));
    let mut members = Collector::start(source(&path).stream());
    members
        .wait_for_synced_set(&fixture_members("db-3.yaml"), CONVERGE)
        .await;
    std::fs::write(&path, fixture("db-5.yaml")).unwrap();
    members
        .wait_for_synced_set(&fixture_members("db-5.yaml"), CONVERGE)
        .await;
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn weights_of(set: &MemberSet) -> Vec<(String, Option<u32>)> {
    set.iter().map(|m| (m.id.to_string(), m.weight)).collect()
}

#[test]
fn the_weighted_example_gives_db_2_weight_two() {
    let set = members_from_text(&example("db-3-weighted.yaml"), None).unwrap();
    let expected = [("db-0", 1), ("db-1", 1), ("db-2", 2)].map(|(id, w)| (id.to_owned(), Some(w)));
    assert_eq!(weights_of(&set), expected);
    // The same slices as db-3.yaml, weights aside.
    let plain = members_from_text(&example("db-3.yaml"), None).unwrap();
    assert!(plain.iter().all(|m| m.weight == Some(1)));
    assert_eq!(ids(&set), ids(&plain));
}

#[test]
fn a_service_of_another_name_gives_no_weights_and_several_services_are_refused() {
    let weighted = example("db-3-weighted.yaml");
    let other = weighted.replace(
        "    name: db\n    namespace: default\n  spec:",
        "    name: web\n    namespace: default\n  spec:",
    );
    assert_ne!(other, weighted);
    let set = members_from_text(&other, None).unwrap();
    assert!(
        set.iter().all(|m| m.weight == Some(1)),
        "web's weights are not db's"
    );
    assert_eq!(members_from_text(&other, Some("web")).unwrap().len(), 0);
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n";
    let twice = format!("{service}---\n{service}---\n{}", fixture("db-3.yaml"));
    let error = members_from_text(&twice, None).unwrap_err().to_string();
    assert!(error.contains("several Services (db, db)"), "{error}");
}

#[tokio::test]
async fn weights_in_the_file_change_and_a_malformed_annotation_keeps_the_last_set() {
    let weighted = example("db-3-weighted.yaml");
    let (_dir, path) = setup(&weighted);
    let mut members = Collector::start(source(&path).stream());
    let with = |pairs: &[(&str, u32)]| -> Vec<(String, Option<u32>)> {
        pairs
            .iter()
            .map(|(id, w)| (id.to_string(), Some(*w)))
            .collect()
    };
    let expect = |o: &common::Observed, pairs: &[(String, Option<u32>)]| {
        o.sets.last().map(weights_of).as_deref() == Some(pairs)
            && o.healths.last() == Some(&SourceHealth::Synced)
    };
    let first = with(&[("db-0", 1), ("db-1", 1), ("db-2", 2)]);
    members
        .wait_until("db-2 at weight 2", CONVERGE, |o| expect(o, &first))
        .await;
    let doubled = weighted.replace(
        "ringleader.io/weights: db-2=2",
        "ringleader.io/weights: db-0=2,db-2=4",
    );
    replace(&path, &doubled);
    let second = with(&[("db-0", 2), ("db-1", 1), ("db-2", 4)]);
    members
        .wait_until("the new weights", CONVERGE, |o| expect(o, &second))
        .await;
    let broken = weighted.replace(
        "ringleader.io/weights: db-2=2",
        "ringleader.io/weights: db-2=65",
    );
    replace(&path, &broken);
    members
        .wait_until("Failing, naming the bound", CONVERGE, |o| {
            matches!(o.healths.last(), Some(SourceHealth::Failing { error, .. })
                if error.contains("weight 65 is above the largest, 64") && error.contains("Service default/db"))
        })
        .await;
    assert_eq!(
        members.latest().map(|s| weights_of(&s)),
        Some(second.clone()),
        "the last set stands"
    );
    replace(&path, &weighted);
    members
        .wait_until("back to db-2 at weight 2", CONVERGE, |o| expect(o, &first))
        .await;
}
