//! Running in a cluster: leader election on a Lease, the state in a
//! ConfigMap, writers checked with TokenReviews — against the testkit's
//! in-memory API server, with coordinators run in process
//! (`ringleader::serve::run` on their own listeners) and 2 s leases.

use k8s_openapi::api::coordination::v1::Lease;
use ringleader::api::WriteAuth;
use ringleader::lease::{Elector, Leadership, LeaseConfig};
use ringleader::runtime::{SourceSpec, StoreSpec};
use ringleader::serve::{AuthSpec, KubeClient, ServeOptions, run};
use ringleader::settings::{Mode, RingSettings, Timing};
use ringleader::state::{ConfigMapStore, State};
use ringleader_client::Client;
use ringleader_client::Error as ClientError;
use ringleader_testkit::{TestApiServer, Verb};
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const NS: &str = "default";
const STATE: &str = "ringleader-state";
const LEASE: &str = "ringleader-leader";
const LEASE_DURATION: Duration = Duration::from_secs(2);
const WRITER: &str = "system:serviceaccount:default:db";
/// Followers read the whole state this seldom: in these tests, what they
/// show comes from their watch of the ConfigMap.
const FOLLOWER_RESYNC: Duration = Duration::from_secs(120);

/// EndpointSlices with `n` ready pods `db-0…`, as a file source reads them.
fn slices(n: usize) -> String {
    let mut out = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata:\n  name: db-a\n  namespace: default\n  labels:\n    kubernetes.io/service-name: db\nendpoints:\n",
    );
    for i in 0..n {
        let _ = write!(
            out,
            "- addresses: [\"10.0.0.{}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n  targetRef: {{kind: Pod, name: db-{i}, namespace: default}}\n",
            i + 10
        );
    }
    out
}

fn write_members(path: &Path, n: usize) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, slices(n)).expect("write slices");
    std::fs::rename(&tmp, path).expect("rename slices");
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One coordinator running in this process.
struct Replica {
    name: String,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(name: &str, kit: &TestApiServer, members: &Path, auth: AuthSpec) -> Self {
        let mut options = Self::options(name, kit, members, FOLLOWER_RESYNC);
        options.auth = auth;
        Self::spawn(name, options).await
    }

    /// Ack mode, a file source on `members`, the state in the ConfigMap,
    /// leader election on the Lease, writes open.
    fn options(name: &str, kit: &TestApiServer, members: &Path, resync: Duration) -> ServeOptions {
        let settings = RingSettings {
            rf: 1,
            mode: Mode::Ack,
            ..RingSettings::default()
        };
        let mut options = ServeOptions::new(
            SourceSpec::File(members.to_path_buf()),
            StoreSpec::ConfigMap {
                namespace: NS.into(),
                name: STATE.into(),
            },
            settings,
        );
        options.timing = Timing {
            settle: Duration::from_millis(100),
            settle_max: Duration::from_millis(500),
            down_grace: Duration::from_secs(60),
        };
        options.auth = AuthSpec::Ready(WriteAuth::Open);
        options.leader_election = Some(LeaseConfig {
            namespace: NS.into(),
            name: LEASE.into(),
            identity: name.into(),
            duration: LEASE_DURATION,
        });
        options.follower_resync = resync;
        options.kube = Some(KubeClient(kit.client()));
        options
    }

    async fn spawn(name: &str, options: ServeOptions) -> Self {
        Self::spawn_advertising(name, options, false).await
    }

    /// [`Replica::spawn`]; with `advertise`, its URL goes on the Lease while
    /// it leads (`--advertise-url`).
    async fn spawn_advertising(name: &str, mut options: ServeOptions, advertise: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        if advertise {
            options.advertise_url = Some(url.clone());
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(options, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            name: name.into(),
            client: Client::new(&url).expect("client"),
            stop: Some(stop),
            task,
        }
    }

    /// Who this replica says leads.
    async fn leader(&self) -> Option<String> {
        self.client.ring(false).await.ok().and_then(|r| r.leader)
    }

    /// A crash: the task is dropped, nothing is released or saved.
    fn crash(self) {
        self.task.abort();
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let outcome = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops within 10 s")
            .expect("task not panicked");
        outcome.expect("serve ended cleanly");
    }
}

fn lease_holder(kit: &TestApiServer) -> (Option<String>, i32) {
    let lease: Lease = kit.get(NS, LEASE).expect("get lease").expect("a lease");
    let spec = lease.spec.expect("spec");
    (spec.holder_identity, spec.lease_transitions.unwrap_or(0))
}

async fn stored_state(kit: &TestApiServer) -> State {
    ConfigMapStore::new(kit.client(), NS, STATE)
        .load()
        .await
        .expect("readable state")
        .expect("a stored state")
}

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match result {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn move_ids(plan: &ringleader_client::api::PlanView) -> Vec<String> {
    let mut ids: Vec<String> = plan.moves.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_follower_takes_over_a_crash_with_the_same_moves() {
    // Exactly one leads, and both say which; the first ring is committed
    // and the follower serves it from the ConfigMap.
    let Pair {
        kit,
        _dir,
        members,
        leading,
        following,
    } = Pair::start(FOLLOWER_RESYNC).await;
    let leader = leading.name.clone();
    assert!(leader == "a" || leader == "b", "{leader}");
    assert_eq!(lease_holder(&kit).0.as_deref(), Some(leader.as_str()));
    let ready = following.client.ready().await.expect("readyz");
    assert!(
        ready.is_ok(),
        "a follower that read the state is ready: {ready:?}"
    );
    assert_eq!(ready.leader.as_deref(), Some(leader.as_str()));
    assert_eq!(ready.source, ringleader_client::api::SourceState::Standby);

    // A scale-up: the leader plans; the follower shows the same plan.
    let plan = scaled_plan(&leading, &members, 5, 3).await;
    eventually(
        "the same plan on the follower",
        Duration::from_secs(5),
        || async {
            let seen = following.client.plan().await.ok()?.plan?;
            (seen.id == plan.id && move_ids(&seen) == move_ids(&plan)).then_some(())
        },
    )
    .await;

    // An ack at the leader is applied; one at the follower is refused,
    // naming the leader.
    let first = plan.moves[0].id.clone();
    let done = leading
        .client
        .move_done(&first)
        .await
        .expect("ack at the leader");
    assert!(!done.committed);
    let (status, code, message) = api_error(following.client.move_done(&plan.moves[1].id).await);
    assert_eq!((status, code.as_str()), (503, "not_leader"), "{message}");
    assert!(
        message.contains(&format!("only the leader, {leader},")),
        "{message}"
    );

    // The leader crashes (nothing released); the follower takes over within
    // the lease duration plus a margin, from the stored state.
    let survivor_name = following.name.clone();
    eventually(
        "the follower to see the ack",
        Duration::from_secs(5),
        || async {
            let p = following.client.plan().await.ok()?.plan?;
            p.moves
                .iter()
                .any(|m| m.id == first && m.state == "done")
                .then_some(())
        },
    )
    .await;
    let crashed_at = tokio::time::Instant::now();
    leading.crash();
    eventually("the follower to lead", LEASE_DURATION * 3, || async {
        (following.leader().await.as_deref() == Some(survivor_name.as_str())).then_some(())
    })
    .await;
    let took = crashed_at.elapsed();
    eprintln!("the follower led {took:?} after the crash (lease {LEASE_DURATION:?})");
    assert!(
        took <= LEASE_DURATION + Duration::from_millis(1500),
        "took over after {took:?} (lease duration {LEASE_DURATION:?})"
    );
    let (holder, transitions) = lease_holder(&kit);
    assert_eq!(holder.as_deref(), Some(survivor_name.as_str()));
    assert!(transitions >= 1);

    // It continues the same plan: same id, same moves, the ack kept.
    let continued = following
        .client
        .plan()
        .await
        .expect("plan")
        .plan
        .expect("still in flight");
    assert_eq!(continued.id, plan.id);
    assert_eq!(move_ids(&continued), move_ids(&plan));
    assert!(
        continued
            .moves
            .iter()
            .any(|m| m.id == first && m.state == "done")
    );
    // …and commits it with the remaining acks.
    let mut committed = false;
    for m in continued
        .moves
        .iter()
        .filter(|m| m.state == "pending" || m.state == "ready")
    {
        committed = following
            .client
            .move_done(&m.id)
            .await
            .expect("ack at the new leader")
            .committed;
    }
    assert!(committed, "the last ack commits");
    // The move acked at the crashed leader, acked again after the commit at
    // its successor: answered as done (issue 12: 409 "no plan" before).
    let again = following
        .client
        .move_done(&first)
        .await
        .expect("a repeated ack after failover and commit");
    assert!(again.committed && again.remaining == 0);
    let ring = following.client.ring(false).await.expect("ring");
    assert_eq!((ring.epoch, ring.members.len()), (2, 5));
    assert_eq!(
        stored_state(&kit).await.epoch,
        2,
        "committed in the ConfigMap"
    );

    // A clean stop releases the lease.
    following.stop().await;
    assert_eq!(lease_holder(&kit).0, None, "released on shutdown");
    kit.shutdown().await;
}

/// `a` and `b` as (leader, follower), once they agree on a leader and both
/// show epoch 1.
async fn agreed(a: Replica, b: Replica) -> (Replica, Replica) {
    let leader = eventually(
        "both replicas to agree on a leader",
        Duration::from_secs(10),
        || async {
            let (la, lb) = (a.leader().await, b.leader().await);
            let epochs = (
                a.client.ring(false).await.ok()?.epoch,
                b.client.ring(false).await.ok()?.epoch,
            );
            (la.is_some() && la == lb && epochs == (1, 1)).then_some(la?)
        },
    )
    .await;
    if leader == a.name { (a, b) } else { (b, a) }
}

/// A testkit, and two replicas on 3 pods once they agree on a leader and
/// both show epoch 1.
struct Pair {
    kit: TestApiServer,
    _dir: tempfile::TempDir,
    members: PathBuf,
    leading: Replica,
    following: Replica,
}

impl Pair {
    /// Followers read the whole state every `resync`.
    async fn start(resync: Duration) -> Self {
        let kit = TestApiServer::start().await.expect("testkit");
        let dir = tempfile::tempdir().expect("tempdir");
        let members = dir.path().join("slices.yaml");
        write_members(&members, 3);
        let a = Replica::spawn("a", Replica::options("a", &kit, &members, resync)).await;
        let b = Replica::spawn("b", Replica::options("b", &kit, &members, resync)).await;
        let (leading, following) = agreed(a, b).await;
        Self {
            kit,
            _dir: dir,
            members,
            leading,
            following,
        }
    }

    /// Waits until the follower shows `epoch`.
    async fn follower_shows(&self, epoch: u64, within: Duration) {
        eventually("the follower to show the epoch", within, || async {
            (self.following.client.ring(false).await.ok()?.epoch == epoch).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.kit.clear_faults();
        self.following.stop().await;
        self.leading.stop().await;
        self.kit.shutdown().await;
    }
}

/// Requests of `verb` for the state ConfigMap (by its path, or by a
/// fieldSelector on its name).
fn state_requests(kit: &TestApiServer, verb: Verb) -> Vec<String> {
    kit.requests()
        .into_iter()
        .filter(|r| r.verb == verb)
        .map(|r| r.path)
        .filter(|p| {
            p.starts_with(&format!("/api/v1/namespaces/{NS}/configmaps/{STATE}"))
                || p.starts_with(&format!("/api/v1/namespaces/{NS}/configmaps?"))
                    && p.contains(&format!("fieldSelector=metadata.name%3D{STATE}"))
        })
        .collect()
}

/// Scales to `n` pods; returns the plan `replica` shows once it has at
/// least `moves` moves.
async fn scaled_plan(
    replica: &Replica,
    members: &Path,
    n: usize,
    moves: usize,
) -> ringleader_client::api::PlanView {
    write_members(members, n);
    eventually(
        &format!("a plan on {}", replica.name),
        Duration::from_secs(10),
        || async { (replica.client.plan().await.ok()?.plan).filter(|p| p.moves.len() >= moves) },
    )
    .await
}

/// Scales to `n` pods and acks the leader's plan until it commits; returns
/// the committed epoch.
async fn scale_and_commit(leading: &Replica, members: &Path, n: usize) -> u64 {
    let plan = scaled_plan(leading, members, n, 1).await;
    let mut epoch = 0;
    for m in &plan.moves {
        let done = leading.client.move_done(&m.id).await.expect("an ack");
        epoch = done.epoch;
    }
    epoch
}

/// Issue 12: followers read the whole ConfigMap every second. Now they
/// watch that one object (list + watch by `fieldSelector=metadata.name`,
/// what the Role's `resourceNames` allows): the leader's new epoch shows on
/// the follower at once, with the full re-read far off (FOLLOWER_RESYNC)
/// and no GET of the ConfigMap at all meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_the_leaders_new_epoch_through_its_watch_without_reading() {
    let pair = Pair::start(FOLLOWER_RESYNC).await;
    let watches = state_requests(&pair.kit, Verb::Watch);
    assert!(
        !watches.is_empty(),
        "the follower watches the state ConfigMap by name: {:?}",
        pair.kit.requests()
    );
    let reads_before = state_requests(&pair.kit, Verb::Get).len();

    let epoch = scale_and_commit(&pair.leading, &pair.members, 4).await;
    assert_eq!(epoch, 2);
    let started = tokio::time::Instant::now();
    pair.follower_shows(2, Duration::from_secs(5)).await;
    eprintln!(
        "the follower showed epoch 2 {:?} after the commit",
        started.elapsed()
    );
    assert_eq!(
        state_requests(&pair.kit, Verb::Get).len(),
        reads_before,
        "nobody read the ConfigMap: the follower's new state came from its watch"
    );
    pair.stop().await;
}

/// The follower's watch fails (its stream ends, re-watches are refused with
/// 500s meanwhile the leader commits, then history is compacted so the
/// resume gets 410 Expired): the
/// watcher backs off, re-lists, and the follower converges on the epoch
/// the leader committed meanwhile — still without its periodic full read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_converges_after_its_state_watch_fails() {
    let pair = Pair::start(FOLLOWER_RESYNC).await;
    let kit = &pair.kit;
    let lists_before = state_requests(kit, Verb::List).len();
    // Every re-watch is refused with a 500 until the leader has committed
    // and history is compacted; the resume then gets 410 Expired.
    kit.fail_next_verb(Verb::Watch, 1_000, 500);
    kit.close_all_watches();
    let epoch = scale_and_commit(&pair.leading, &pair.members, 4).await;
    kit.compact();
    kit.clear_faults();
    pair.follower_shows(epoch, Duration::from_secs(20)).await;
    assert!(
        state_requests(kit, Verb::List).len() > lists_before,
        "the follower's watcher listed again after the 410"
    );
    pair.stop().await;
}

/// A wedged watch (open, silent) is what the periodic full read is for:
/// with it every second here, the follower converges while its watch
/// stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_wedged_watch_converges_by_its_full_read() {
    let pair = Pair::start(Duration::from_secs(1)).await;
    pair.kit.stall_watches(Duration::from_secs(60));
    let reads_before = state_requests(&pair.kit, Verb::Get).len();
    let epoch = scale_and_commit(&pair.leading, &pair.members, 4).await;
    pair.follower_shows(epoch, Duration::from_secs(5)).await;
    assert!(state_requests(&pair.kit, Verb::Get).len() > reads_before);
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_written_behind_the_leaders_back_is_not_overwritten() {
    let kit = TestApiServer::start().await.expect("testkit");
    let dir = tempfile::tempdir().expect("tempdir");
    let members = dir.path().join("slices.yaml");
    write_members(&members, 3);
    let leader = Replica::start("solo", &kit, &members, AuthSpec::Ready(WriteAuth::Open)).await;
    eventually("the first epoch", Duration::from_secs(10), || async {
        (leader.client.ring(false).await.ok()?.epoch == 1).then_some(())
    })
    .await;
    let plan = scaled_plan(&leader, &members, 5, 3).await;
    eventually("the plan stored", Duration::from_secs(5), || async {
        let s = stored_state(&kit).await;
        s.plan.filter(|p| p.id == plan.id).map(|_| ())
    })
    .await;

    // Someone else (an operator's tool, a stale replica) marks move 0 done
    // in the ConfigMap, behind the leader's back.
    let (m0, m1) = (plan.moves[0].id.clone(), plan.moves[1].id.clone());
    let other = ConfigMapStore::new(kit.client(), NS, STATE);
    let mut state = other.load().await.expect("load").expect("state");
    state
        .plan
        .as_mut()
        .expect("plan")
        .plan
        .mark_done(&m0)
        .expect("move 0 open");
    state.revision += 1;
    other.save(&state).await.expect("the outside write");
    let updates_before = kit.request_count(Verb::Update);

    // The leader's next write conflicts: it re-reads, finds a state as new
    // as its own but different, does not overwrite it, takes it over, and
    // asks the writer to retry.
    let (status, code, message) = api_error(leader.client.move_done(&m1).await);
    assert_eq!(status, 503, "{code}: {message}");
    assert!(message.contains("not overwritten"), "{message}");
    assert_eq!(
        kit.request_count(Verb::Update),
        updates_before + 1,
        "one refused update, no blind retry"
    );
    // The retry applies on top of the outside write: no update is lost.
    let done = leader.client.move_done(&m1).await.expect("retried ack");
    assert_eq!(done.move_.id, m1);
    let stored = stored_state(&kit).await;
    let stored_plan = stored.plan.expect("plan");
    for id in [&m0, &m1] {
        assert_eq!(
            stored_plan.plan.get(id).expect("move").state.to_string(),
            "done",
            "move {id} done in the ConfigMap"
        );
    }
    let shown = leader
        .client
        .plan()
        .await
        .expect("plan")
        .plan
        .expect("in flight");
    assert!(
        shown.moves.iter().any(|m| m.id == m0 && m.state == "done"),
        "the leader took the outside write over"
    );
    leader.stop().await;
    kit.shutdown().await;
}

/// Regression (issue 10, item 6): on a 409 the ConfigMap store overwrote
/// the stored state whenever its (epoch, revision) was lower than the
/// writer's own. Positions of two diverged histories cannot be compared: a
/// deposed leader's delayed write, at a higher position, erased its
/// successor's acknowledged move. A conflicting write is never forced now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_write_never_overwrites_its_successors_state() {
    use ringleader::state::StoreError;
    let kit = TestApiServer::start().await.expect("testkit");
    let (a, b) = (
        ConfigMapStore::new(kit.client(), NS, STATE),
        ConfigMapStore::new(kit.client(), NS, STATE),
    );
    let mut state = State::fresh(RingSettings::default()).expect("state");
    state.epoch = 1;
    a.save(&state).await.expect("created");
    assert_eq!(b.load().await.expect("load"), Some(state.clone()));
    // b takes over and stores an acknowledged move: (1, 1).
    let mut successor = state.clone();
    successor.revision = 1;
    b.save(&successor).await.expect("b's write");
    // a, deposed but not knowing it yet, had gone further in its own
    // history, (1, 5): its write conflicts and must not land.
    let mut deposed = state.clone();
    deposed.revision = 5;
    match a.save(&deposed).await {
        Err(StoreError::Conflict { stored, ours, .. }) => {
            assert_eq!((stored.epoch, stored.revision, ours), (1, 1, (1, 5)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        stored_state(&kit).await.revision,
        1,
        "the successor's state is not overwritten"
    );
    // Not even at a later epoch: only what was read can be written over.
    let mut later = state.clone();
    later.epoch = 2;
    let b2 = ConfigMapStore::new(kit.client(), NS, STATE);
    b2.load().await.expect("load");
    let mut newest = successor.clone();
    newest.revision = 2;
    b.save(&newest).await.expect("b goes on");
    assert!(matches!(
        b2.save(&later).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(stored_state(&kit).await.position(), (1, 2));
    // a, behind again, writes the very state stored (as after a lost
    // answer): the conflict resolves to "already there".
    let updates = kit.request_count(Verb::Update);
    a.save(&newest).await.expect("same state");
    assert_eq!(
        kit.request_count(Verb::Update),
        updates + 1,
        "one refused update, no rewrite"
    );
    kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electors_agree_on_one_leader_and_a_release_hands_over_at_once() {
    let kit = TestApiServer::start().await.expect("testkit");
    let config = |identity: &str| LeaseConfig {
        namespace: NS.into(),
        name: LEASE.into(),
        identity: identity.into(),
        duration: LEASE_DURATION,
    };
    let (stop_a, stopped_a) = watch::channel(false);
    let (stop_b, stopped_b) = watch::channel(false);
    let (ea, la) = Elector::new(kit.client(), config("a"));
    let (eb, lb) = Elector::new(kit.client(), config("b"));
    let ta = tokio::spawn(ea.run(stopped_a));
    let tb = tokio::spawn(eb.run(stopped_b));
    let winner = eventually("a leader", Duration::from_secs(5), || async {
        let (a, b) = (la.borrow().clone(), lb.borrow().clone());
        match (a.is_leading(), b.is_leading()) {
            (true, false)
                if b == (Leadership::Following {
                    leader: Some("a".into()),
                }) =>
            {
                Some("a")
            }
            (false, true)
                if a == (Leadership::Following {
                    leader: Some("b".into()),
                }) =>
            {
                Some("b")
            }
            (true, true) => panic!("two leaders"),
            _ => None,
        }
    })
    .await;
    // It keeps leading across several renewals, alone.
    for _ in 0..10 {
        tokio::time::sleep(LEASE_DURATION / 4).await;
        assert_ne!(
            la.borrow().is_leading(),
            lb.borrow().is_leading(),
            "exactly one leads"
        );
    }
    assert_eq!(lease_holder(&kit), (Some(winner.to_owned()), 0));
    // The winner stops and releases: the other leads well before the lease
    // would have expired.
    let (stop_winner, task_winner, other) = if winner == "a" {
        (stop_a, ta, lb.clone())
    } else {
        (stop_b, tb, la.clone())
    };
    let released_at = tokio::time::Instant::now();
    stop_winner.send(true).expect("elector running");
    task_winner.await.expect("elector stopped");
    eventually("the other to lead", LEASE_DURATION, || async {
        other.borrow().is_leading().then_some(())
    })
    .await;
    assert!(
        released_at.elapsed() < LEASE_DURATION,
        "handed over at the next read, not at expiry"
    );
    assert_eq!(lease_holder(&kit).1, 1, "one transition");
    kit.shutdown().await;
}

async fn token_review_replica(kit: &TestApiServer, dir: &Path) -> (Replica, PathBuf) {
    let members = dir.join("slices.yaml");
    write_members(&members, 3);
    let mut options = ServeOptions::new(
        SourceSpec::File(members.clone()),
        StoreSpec::File(dir.join("state.json")),
        RingSettings::default(),
    );
    options.auth = AuthSpec::TokenReview(ringleader::api::ReviewPolicy {
        writers: [WRITER.to_owned()].into(),
        ..Default::default()
    });
    options.kube = Some(KubeClient(kit.client()));
    (Replica::spawn("solo", options).await, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_checked_with_token_reviews_and_refused_when_they_cannot_be() {
    let kit = TestApiServer::start().await.expect("testkit");
    kit.add_token("db-token-0123456789", WRITER);
    kit.add_token("web-token-0123456789", "system:serviceaccount:default:web");
    let dir = tempfile::tempdir().expect("tempdir");
    let (replica, _) = token_review_replica(&kit, dir.path()).await;
    let as_user = |token: &str| replica.client.clone().with_token(token);

    // No plan is in flight, so a write that passes authentication gets 409
    // ("nothing to report done"); one that does not gets 401/403/503.
    let (status, code, message) = api_error(replica.client.move_done("m1").await);
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    let (status, _, message) = api_error(as_user("not-a-known-token").move_done("m1").await);
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("did not authenticate"), "{message}");
    let (status, code, message) = api_error(as_user("web-token-0123456789").move_done("m1").await);
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    assert!(
        message.contains("system:serviceaccount:default:web may not write"),
        "{message}"
    );
    assert!(message.contains(WRITER), "{message}");
    let reviews = kit.request_count(Verb::Create);
    let (status, code, _) = api_error(as_user("db-token-0123456789").move_done("m1").await);
    assert_eq!(
        (status, code.as_str()),
        (409, "conflict"),
        "allowed through to the coordinator"
    );
    assert_eq!(kit.request_count(Verb::Create), reviews + 1);
    // A positive review is cached: no second TokenReview.
    let (status, _, _) = api_error(as_user("db-token-0123456789").move_done("m1").await);
    assert_eq!(status, 409);
    assert_eq!(kit.request_count(Verb::Create), reviews + 1, "cached");

    // The authenticator fails: fail closed, never open.
    kit.add_token("db-token-fresh-0123456789", WRITER);
    kit.fail_token_reviews(Some(500));
    let (status, code, message) =
        api_error(as_user("db-token-fresh-0123456789").move_done("m1").await);
    assert_eq!(
        (status, code.as_str()),
        (503, "auth_unavailable"),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    kit.fail_token_reviews(None);
    let (status, _, _) = api_error(as_user("db-token-fresh-0123456789").move_done("m1").await);
    assert_eq!(status, 409, "works again once the API server answers");

    // The API server is gone altogether: still closed.
    kit.shutdown().await;
    let (status, code, message) =
        api_error(as_user("a-token-never-reviewed").move_done("m1").await);
    assert_eq!(
        (status, code.as_str()),
        (503, "auth_unavailable"),
        "{message}"
    );
    replica.stop().await;
}

// ---------------------------------------------------------------------------
// Writes through a Service in front of every replica (issue 12): a follower
// forwards them to the URL the leader advertises on the Lease.

impl Replica {
    /// As [`Replica::start`], advertising its own URL (`--advertise-url`).
    async fn start_advertised(name: &str, kit: &TestApiServer, members: &Path) -> Self {
        let mut options = Replica::options(name, kit, members, FOLLOWER_RESYNC);
        options.auth = AuthSpec::Ready(WriteAuth::Token(FORWARD_TOKEN.into()));
        Self::spawn_advertising(name, options, true).await
    }
}

const FORWARD_TOKEN: &str = "forwarded-write-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_writes_to_the_leader() {
    let kit = TestApiServer::start().await.expect("testkit");
    let dir = tempfile::tempdir().expect("tempdir");
    let members = dir.path().join("slices.yaml");
    write_members(&members, 3);
    let a = Replica::start_advertised("a", &kit, &members).await;
    let b = Replica::start_advertised("b", &kit, &members).await;
    let (leading, following) = agreed(a, b).await;
    // The advertised URL is on the Lease.
    let lease: Lease = kit.get(NS, LEASE).expect("get").expect("a lease");
    let advertised = lease
        .metadata
        .annotations
        .unwrap_or_default()
        .get(ringleader::lease::LEADER_URL_ANNOTATION)
        .cloned()
        .expect("the leader advertises its URL");
    assert_eq!(
        advertised,
        leading.client.base_url().as_str().trim_end_matches('/')
    );

    let plan = scaled_plan(&following, &members, 5, 2).await;
    // Without the token the leader refuses it (the follower passes the
    // answer on); with it, the ack sent to the follower is applied.
    let (status, code, message) = api_error(following.client.move_done(&plan.moves[0].id).await);
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    let done = following
        .client
        .clone()
        .with_token(FORWARD_TOKEN)
        .move_done(&plan.moves[0].id)
        .await
        .expect("a write sent to the follower is applied by the leader");
    assert_eq!(done.move_.id, plan.moves[0].id);
    let at_leader = leading
        .client
        .plan()
        .await
        .expect("plan")
        .plan
        .expect("a plan");
    assert!(
        at_leader
            .moves
            .iter()
            .any(|m| m.id == plan.moves[0].id && m.state == "done"),
        "the leader applied it"
    );
    leading.stop().await;
    following.stop().await;
}
