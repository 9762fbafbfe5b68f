//! The runtime against its rules: readiness, durability before
//! visibility, no older state after losing the lead, bounded calls.

use super::*;
use crate::settings::Timing;
use crate::state::{ConfigMapStore, FileStore, StoreError};
use crate::testing::{Running, channel_source, pods, wait_for};
use futures::StreamExt;
use ringleader_watch::{SourceEvent, SourceHealth};
use std::time::Duration;

fn timing(settle: Duration) -> Timing {
    Timing {
        settle,
        settle_max: settle * 4,
        down_grace: Duration::from_secs(60),
    }
}

/// Regression (issue 10, item 4): for the first `--settle` after start,
/// `/readyz` said 200 while lookups answered 503 "the ring has no members
/// yet".
#[tokio::test]
async fn not_ready_until_lookups_answer() {
    let c = Running::idle(RingSettings::default(), timing(Duration::from_millis(600)));
    c.send(SourceEvent::Members(pods(3)));
    let settling = c.wait_for("the member set", |v| v.members.len() == 3).await;
    assert!(settling.ring.is_empty());
    let reason = settling
        .readiness()
        .expect_err("lookups cannot be answered yet");
    assert!(reason.contains("not been committed"), "{reason}");
    let ready = c.wait_for("readiness", |v| v.readiness().is_ok()).await;
    assert_eq!(
        (ready.epoch, ready.ring.len()),
        (1, 3),
        "ready ⇒ lookups answer"
    );
    c.shut_down().await;
}

/// Regression (issue 10, item 5): the runtime published a new epoch, then
/// saved and ignored a failed save: `/v1/ring` showed epoch 2 and `/readyz`
/// 200 while the store held epoch 1 (and a restart came back at epoch 1).
#[tokio::test]
async fn a_failed_save_keeps_the_previous_state_shown_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // The state's directory is a plain file: every save fails.
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "not a directory").unwrap();
    let path = blocker.join("state.json");
    let settings = RingSettings::default();
    let (tx, stream) = channel_source();
    let (driver, handle) = Driver::new(
        State::fresh(settings).unwrap(),
        settings,
        timing(Duration::from_millis(100)),
        FileStore::new(&path),
        stream,
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(driver.run(stopped));
    tx.send(SourceEvent::Members(pods(3))).unwrap();
    let failing = wait_for(&handle, "a failed save", |v| {
        v.unready
            .as_deref()
            .is_some_and(|r| r.contains("save failed"))
    })
    .await;
    assert_eq!(failing.epoch, 0, "epoch 1 is not shown before it is stored");
    assert!(failing.ring.is_empty());
    assert!(failing.readiness().is_err());
    // The disk is back: the retry stores epoch 1, and only then is it shown.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    let stored = wait_for(&handle, "the retried save", |v| v.epoch == 1).await;
    assert!(stored.readiness().is_ok(), "{:?}", stored.readiness());
    let on_disk = FileStore::new(&path).load().unwrap().expect("stored");
    assert_eq!(on_disk.epoch, 1);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Regression (issue 10, item 7): a replica that lost the lease went back
/// to showing the state it had read before it led: an epoch going
/// backwards on the watch stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_lease_never_shows_an_older_state() {
    let kit = ringleader_testkit::TestApiServer::start().await.unwrap();
    let store: Store = ConfigMapStore::new(kit.client(), "default", "state").into();
    let settings = RingSettings::default();
    let (lead_tx, leadership) =
        watch::channel(crate::lease::Leadership::Following { leader: None });
    let coordinator = crate::coordinator::Coordinator::new(
        State::fresh(settings).unwrap(),
        settings,
        timing(Duration::from_millis(50)),
    );
    let (outlets, handle) = Outlets::new(&coordinator);
    let (tx, stream) = channel_source();
    let stream = std::sync::Mutex::new(Some(stream));
    let replica = Replica {
        store,
        settings,
        timing: timing(Duration::from_millis(50)),
        reconfigure: false,
        lead: Lead {
            leadership,
            identity: "a".into(),
        },
        open_source: move || {
            let s = stream.lock().unwrap().take();
            async move { Ok(s.unwrap_or_else(|| futures::stream::pending().boxed())) }
        },
        resync: Duration::from_secs(3600),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(replica.run(outlets, stopped));
    wait_for(&handle, "the first read", |v| v.state_loaded && v.follower).await;
    // Lead, commit epoch 1, lose the lead.
    lead_tx
        .send(crate::lease::Leadership::Leading {
            until: tokio::time::Instant::now() + Duration::from_secs(3600),
        })
        .unwrap();
    tx.send(SourceEvent::Members(pods(3))).unwrap();
    wait_for(&handle, "epoch 1", |v| v.epoch == 1).await;
    let mut views = handle.view.clone();
    views.borrow_and_update();
    lead_tx
        .send(crate::lease::Leadership::Following {
            leader: Some("b".into()),
        })
        .unwrap();
    wait_for(&handle, "following again", |v| v.follower).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::timeout_at(deadline, views.changed())
        .await
        .is_ok()
    {
        let epoch = views.borrow_and_update().epoch;
        assert!(epoch >= 1, "showed epoch {epoch} after epoch 1");
    }
    assert_eq!(handle.view.borrow().epoch, 1);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    kit.shutdown().await;
}

/// Regression (issue 10, item 8): ConfigMap calls had no time limit; one
/// hung call stalled the loop, and `/healthz` never noticed.
#[tokio::test]
async fn a_hung_configmap_call_times_out() {
    // An API server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let store =
        ConfigMapStore::new(client, "default", "state").with_timeout(Duration::from_millis(300));
    let state = State::fresh(RingSettings::default()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), store.save(&state))
        .await
        .expect("the save gives up on its own");
    assert!(
        matches!(outcome, Err(StoreError::Timeout { .. })),
        "{outcome:?}"
    );
    let read = tokio::time::timeout(Duration::from_secs(5), store.load())
        .await
        .expect("the read gives up on its own");
    assert!(matches!(read, Err(StoreError::Timeout { .. })), "{read:?}");
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_says_when_the_loop_stalls() {
    let heartbeat = Heartbeat::default();
    heartbeat.beat();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(heartbeat.stalled(), None);
    tokio::time::advance(STALL_LIMIT).await;
    let reason = heartbeat.stalled().expect("stalled");
    assert!(reason.contains("has not turned"), "{reason}");
    heartbeat.beat();
    assert_eq!(heartbeat.stalled(), None);
}

/// Regression (issue 12): "member set changed members=5" while only 4 could
/// take part; the log names both counts.
#[tokio::test]
async fn a_member_set_change_logs_total_and_eligible_counts() {
    let logs = crate::test_logs::LogCapture::start();
    let c = Running::idle(RingSettings::default(), timing(Duration::from_millis(600)));
    let mut members = pods(5);
    let mut unprobed = members.get("db-4").unwrap().clone();
    unprobed.serving = false;
    members.insert(unprobed);
    c.send(SourceEvent::Members(members));
    c.wait_for("the member set", |v| v.members.len() == 4).await;
    c.shut_down().await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("member set changed"))
        .unwrap_or_else(|| panic!("no member set line in {text}"));
    assert!(
        line.contains("members=5") && line.contains("eligible=4"),
        "{line}"
    );
}

/// Issue 10 (b): a source's warning (a malformed weights annotation) is
/// shown next to its health and survives health changes; it changes neither
/// readiness nor the ring; `None` clears it.
#[tokio::test]
async fn a_source_warning_is_shown_until_cleared_and_changes_nothing_else() {
    let c = Running::idle(RingSettings::default(), timing(Duration::from_millis(50)));
    c.send(SourceEvent::Health(SourceHealth::Synced));
    c.send(SourceEvent::Members(pods(3)));
    let ready = c.wait_for("readiness", |v| v.readiness().is_ok()).await;
    let warning = "annotation ringleader.io/weights on Service default/db: entry 1 (\"db-1=0\"): weight 0 is below 1";
    c.send(SourceEvent::Warning(Some(warning.to_owned())));
    let warned = c
        .wait_for("the warning", |v| {
            v.source.warning.as_deref() == Some(warning)
        })
        .await;
    assert!(warned.readiness().is_ok(), "a warning is not a failure");
    assert_eq!(warned.epoch, ready.epoch);
    // `ringleader status` shows it on the source line.
    let shown = crate::api::status::status(
        &warned,
        None,
        std::time::Instant::now(),
        std::time::SystemTime::now(),
    );
    assert_eq!(shown.source_detail.as_deref(), Some(warning));
    c.send(SourceEvent::Health(SourceHealth::Resyncing {
        reason: "re-listing EndpointSlices".to_owned(),
    }));
    let resyncing = c
        .wait_for("re-syncing", |v| {
            v.source.state == ringleader_client::api::SourceState::Resyncing
        })
        .await;
    assert_eq!(resyncing.source.warning.as_deref(), Some(warning));
    c.send(SourceEvent::Health(SourceHealth::Synced));
    let resynced = c
        .wait_for("synced again", |v| {
            v.source.state == ringleader_client::api::SourceState::Synced
        })
        .await;
    assert_eq!(
        resynced.source.warning.as_deref(),
        Some(warning),
        "kept across health changes"
    );
    c.send(SourceEvent::Warning(None));
    c.wait_for("the warning cleared", |v| v.source.warning.is_none())
        .await;
    c.shut_down().await;
}
