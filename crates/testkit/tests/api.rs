//! The test API server driven by a real `kube::Client`: the wire protocol
//! kube speaks must work unchanged against it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use ringleader_testkit::{TestApiServer, Verb};

const NS: &str = "default";

fn slice(name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NS.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: Some(
            ips.iter()
                .map(|ip| Endpoint {
                    addresses: vec![(*ip).to_owned()],
                    ..Endpoint::default()
                })
                .collect(),
        ),
        ports: None,
    }
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), value.to_owned())])),
        ..ConfigMap::default()
    }
}

async fn next_event<S, K>(stream: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a watch event within 5 s")
        .expect("the watch stream is still open")
        .expect("a well-formed watch event")
}

#[tokio::test]
async fn create_get_replace_with_conflict_and_delete() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);

    let created = api
        .create(&PostParams::default(), &config_map("state", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(api.get("state").await.unwrap().data, created.data);

    let mut update = created.clone();
    update.data = Some(BTreeMap::from([("k".to_owned(), "2".to_owned())]));
    let updated = api
        .replace("state", &PostParams::default(), &update)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );

    // Writing again from the stale resourceVersion is a 409 Conflict Status.
    let kube::Error::Api(status) = api
        .replace("state", &PostParams::default(), &update)
        .await
        .unwrap_err()
    else {
        panic!("expected an API error");
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let exists = api
        .create(&PostParams::default(), &config_map("state", "1"))
        .await
        .unwrap_err();
    assert!(matches!(exists, kube::Error::Api(s) if s.reason == "AlreadyExists"));

    api.delete("state", &DeleteParams::default()).await.unwrap();
    let gone = api.get("state").await.unwrap_err();
    assert!(matches!(gone, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));
    assert_eq!(server.request_count(Verb::Create), 2);
    assert_eq!(server.request_count(Verb::Update), 2);
}

#[tokio::test]
async fn list_pages_come_from_one_snapshot() {
    let server = TestApiServer::start().await.unwrap();
    for i in 0..7 {
        server
            .create(&slice(&format!("db-{i}"), "db", &["10.0.0.1"]))
            .unwrap();
    }
    server
        .create(&slice("web-0", "web", &["10.0.1.1"]))
        .unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);

    let params = ListParams::default()
        .labels("kubernetes.io/service-name=db")
        .limit(3);
    let first = api.list(&params).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    let snapshot_rv = first.metadata.resource_version.clone().unwrap();

    // A write between pages does not leak into the paged list.
    server.delete::<EndpointSlice>(NS, "db-5").unwrap();
    let second = api
        .list(&params.clone().continue_token(&token))
        .await
        .unwrap();
    let third = api
        .list(
            &params
                .clone()
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert!(third.metadata.continue_.is_none());
    assert_eq!(
        second.metadata.resource_version.as_deref(),
        Some(snapshot_rv.as_str())
    );
    let names: Vec<String> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, (0..7).map(|i| format!("db-{i}")).collect::<Vec<_>>());

    // Once history is compacted the continue token is 410 Expired.
    server.compact();
    let expired = api.list(&params.continue_token(&token)).await.unwrap_err();
    assert!(matches!(expired, kube::Error::Api(s) if s.code == 410));

    let fresh = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(fresh.items.len(), 7);
    assert_eq!(
        fresh.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_changes() {
    let server = TestApiServer::start().await.unwrap();
    let first = server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    let from = first.metadata.resource_version.unwrap();
    server.apply(&slice("db-a", "db", &["10.0.0.2"])).unwrap();
    server
        .create(&slice("web-a", "web", &["10.0.1.1"]))
        .unwrap();

    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let params = WatchParams::default()
        .labels("kubernetes.io/service-name=db")
        .disable_bookmarks();
    let mut stream = api.watch(&params, &from).await.unwrap().boxed();
    let WatchEvent::Modified(modified) = next_event(&mut stream).await else {
        panic!("expected the retained MODIFIED event first");
    };
    assert_eq!(modified.endpoints.unwrap()[0].addresses, ["10.0.0.2"]);

    server.delete::<EndpointSlice>(NS, "db-a").unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Deleted(s) if s.metadata.name.as_deref() == Some("db-a"))
    );

    // A label change moving a slice into the selection is an ADDED event.
    let mut moved = slice("web-a", "db", &["10.0.1.1"]);
    moved.metadata.resource_version = None;
    server.apply(&moved).unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Added(s) if s.metadata.name.as_deref() == Some("web-a"))
    );
}

/// How a follower watches one ConfigMap (and what RBAC's `resourceNames`
/// allows for list and watch): `fieldSelector=metadata.name=NAME` on the
/// collection; other ConfigMaps' changes never show.
#[tokio::test]
async fn a_list_and_watch_by_name_see_only_that_object() {
    let server = TestApiServer::start().await.unwrap();
    server.create(&config_map("other", "1")).unwrap();
    let first = server.create(&config_map("state", "1")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let listed = api
        .list(&ListParams::default().fields("metadata.name=state"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|m| m.metadata.name.as_deref())
            .collect::<Vec<_>>(),
        [Some("state")]
    );
    let params = WatchParams::default()
        .fields("metadata.name=state")
        .disable_bookmarks();
    let from = first.metadata.resource_version.unwrap();
    let mut stream = api.watch(&params, &from).await.unwrap().boxed();
    server.apply(&config_map("other", "2")).unwrap();
    server.apply(&config_map("state", "2")).unwrap();
    let WatchEvent::Modified(modified) = next_event(&mut stream).await else {
        panic!("expected the state ConfigMap's MODIFIED event first");
    };
    assert_eq!(modified.metadata.name.as_deref(), Some("state"));
    assert_eq!(modified.data.unwrap()["k"], "2");
    server.delete::<ConfigMap>(NS, "other").unwrap();
    server.delete::<ConfigMap>(NS, "state").unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Deleted(m) if m.metadata.name.as_deref() == Some("state"))
    );
}

#[tokio::test]
async fn watch_from_compacted_history_gets_410_expired() {
    let server = TestApiServer::start().await.unwrap();
    let first = server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    server.apply(&slice("db-a", "db", &["10.0.0.2"])).unwrap();
    server.compact();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let mut stream = api
        .watch(
            &WatchParams::default(),
            first.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Error(status) = next_event(&mut stream).await else {
        panic!("expected an ERROR event");
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(status.message.contains("too old resource version"));
}

#[tokio::test]
async fn bookmarks_and_streaming_lists() {
    let server = TestApiServer::builder()
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    server.create(&slice("db-b", "db", &["10.0.0.2"])).unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);

    let mut stream = api
        .watch(&WatchParams::streaming_lists(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    let WatchEvent::Bookmark(end) = next_event(&mut stream).await else {
        panic!("expected the initial-events-end bookmark");
    };
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        end.metadata.resource_version,
        server.resource_version().to_string()
    );

    // Periodic bookmarks carry the current resourceVersion.
    server.create(&slice("db-c", "db", &["10.0.0.3"])).unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    let WatchEvent::Bookmark(periodic) = next_event(&mut stream).await else {
        panic!("expected a periodic bookmark");
    };
    assert_eq!(
        periodic.metadata.resource_version,
        server.resource_version().to_string()
    );
}

#[tokio::test]
async fn watch_timeout_is_honoured() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let started = std::time::Instant::now();
    let stream = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "1")
        .await
        .unwrap();
    let events: Vec<_> =
        tokio::time::timeout(Duration::from_secs(5), stream.try_collect::<Vec<_>>())
            .await
            .unwrap()
            .unwrap();
    assert!(events.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn injected_failures_reach_the_client_as_status_objects() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    for code in [500, 403, 429, 410] {
        server.fail_next(1, code);
        let kube::Error::Api(status) = api.list(&ListParams::default()).await.unwrap_err() else {
            panic!("expected an API error for {code}");
        };
        assert_eq!(status.code, code);
        if code == 403 {
            assert!(status.message.contains("cannot list resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"default\""));
        }
    }
    assert!(api.list(&ListParams::default()).await.is_ok());
    server.fail_next_verb(Verb::Watch, 1, 500);
    assert!(api.list(&ListParams::default()).await.is_ok());
    assert!(api.watch(&WatchParams::default(), "1").await.is_err());
    assert_eq!(server.request_count(Verb::List), 6);
}

#[tokio::test]
async fn truncated_watch_ends_without_a_valid_event() {
    let server = TestApiServer::start().await.unwrap();
    server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    server.truncate_next_watch();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let stream = api.watch(&WatchParams::default(), "1").await.unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Ok(WatchEvent::Added(_)))),
        "{events:?}"
    );
    // The next watch is whole.
    let mut stream = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
}

#[tokio::test]
async fn stalled_watches_deliver_late_and_closed_watches_end() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let mut stream = api
        .watch(&WatchParams::default().disable_bookmarks(), "1")
        .await
        .unwrap()
        .boxed();
    server.stall_watches(Duration::from_millis(600));
    let started = std::time::Instant::now();
    server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    assert!(started.elapsed() >= Duration::from_millis(500));

    server.close_all_watches();
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rest.is_empty());
    assert!(server.wait_for_watches(0, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn restart_with_new_history_rejects_newer_resource_versions() {
    let server = TestApiServer::start().await.unwrap();
    for i in 0..3 {
        server
            .create(&slice(&format!("db-{i}"), "db", &["10.0.0.1"]))
            .unwrap();
        server
            .apply(&slice(&format!("db-{i}"), "db", &["10.0.0.2"]))
            .unwrap();
    }
    let old_rv = server.resource_version();
    server.restart_with_new_history();
    assert!(server.resource_version() < old_rv);
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv.to_string())
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Error(status) = next_event(&mut stream).await else {
        panic!("expected an ERROR event");
    };
    assert_eq!(status.code, 504);
    assert!(status.message.starts_with("Too large resource version"));
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
}

#[tokio::test]
async fn kube_watcher_relists_after_compaction() {
    let server = TestApiServer::start().await.unwrap();
    server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let config = watcher::Config::default().labels("kubernetes.io/service-name=db");
    // The watcher only makes requests while polled: drain it from a task.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = watcher(api, config).boxed();
    let forward = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a watcher event within 5 s")
            .expect("the watcher never ends")
    };
    assert!(matches!(next().await, Ok(watcher::Event::Init)));
    assert!(matches!(next().await, Ok(watcher::Event::InitApply(_))));
    assert!(matches!(next().await, Ok(watcher::Event::InitDone)));
    assert!(server.wait_for_watches(1, Duration::from_secs(5)).await);
    assert_eq!(server.request_count(Verb::List), 1);

    // Writes the watcher has not seen, then compaction and a dropped
    // connection: the resumed watch gets 410 and the watcher re-lists.
    server.stall_watches(Duration::from_millis(300));
    server.create(&slice("db-b", "db", &["10.0.0.2"])).unwrap();
    server.compact();
    server.close_all_watches();
    assert!(matches!(next().await, Err(watcher::Error::WatchError(s)) if s.code == 410));
    assert!(matches!(next().await, Ok(watcher::Event::Init)));
    assert!(matches!(next().await, Ok(watcher::Event::InitApply(_))));
    assert!(matches!(next().await, Ok(watcher::Event::InitApply(_))));
    assert!(matches!(next().await, Ok(watcher::Event::InitDone)));
    assert_eq!(server.request_count(Verb::List), 2);
    forward.abort();
}

#[tokio::test]
async fn kube_watcher_runs_on_streaming_lists() {
    let server = TestApiServer::start().await.unwrap();
    server.create(&slice("db-a", "db", &["10.0.0.1"])).unwrap();
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), NS);
    let mut events = watcher(api, watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    assert!(matches!(
        seen[..],
        [
            watcher::Event::Init,
            watcher::Event::InitApply(_),
            watcher::Event::InitDone
        ]
    ));
    assert_eq!(server.request_count(Verb::List), 0);
    server.create(&slice("db-b", "db", &["10.0.0.2"])).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, watcher::Event::Apply(s) if s.metadata.name.as_deref() == Some("db-b"))
    );
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let stream = api.watch(&WatchParams::default(), "1").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rest.iter().all(Result::is_ok));
}

#[tokio::test]
async fn a_forbidden_resource_and_faults_aimed_at_one_resource_leave_the_others_alone() {
    use k8s_openapi::api::core::v1::Service;
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(client, NS);
    server.forbid("services", true);
    let error = services.list(&ListParams::default()).await.unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("not an API error: {error}");
    };
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains(
            "cannot list resource \"services\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        status.message
    );
    assert!(slices.list(&ListParams::default()).await.is_ok());
    server.forbid("services", false);
    assert!(services.list(&ListParams::default()).await.is_ok());

    // A failure aimed at ConfigMaps skips the slices' requests.
    server.fail_next_of("configmaps", Some(Verb::List), 1, 500);
    assert!(slices.list(&ListParams::default()).await.is_ok());
    assert!(maps.list(&ListParams::default()).await.is_err());
    assert!(maps.list(&ListParams::default()).await.is_ok());
    assert_eq!(server.request_count_of("services", Verb::List), 2);
    assert_eq!(server.request_count_of("endpointslices", Verb::List), 2);
    assert_eq!(server.request_count_of("configmaps", Verb::List), 2);
    assert_eq!(server.request_count(Verb::List), 6);
}
