//! The `Runner` against a mock coordinator: a small axum server on
//! 127.0.0.1:0 whose work list the test edits, recording the reports.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ringleader_client::api::{MoveDoneResponse, MoveView, RangeView, WorkMove, WorkResponse};
use ringleader_client::{Client, Progress, Runner, RunnerOptions, StopReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Mock {
    /// The moves `GET /v1/members/db-3/work` lists.
    work: Mutex<Vec<WorkMove>>,
    /// Ids reported done, in order.
    reports: Mutex<Vec<String>>,
}

fn work_move(id: &str) -> WorkMove {
    WorkMove {
        r#move: MoveView {
            id: id.into(),
            range: RangeView {
                start: "0".into(),
                end: "100".into(),
            },
            from: "db-0".into(),
            to: "db-3".into(),
            state: "ready".into(),
        },
        source_addresses: vec!["127.0.0.1".into()],
    }
}

async fn work(State(mock): State<Arc<Mock>>, Path(member): Path<String>) -> Response {
    if member != "db-3" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let moves = mock.work.lock().unwrap().clone();
    Json(WorkResponse {
        epoch: 1,
        member,
        plan: Some("e1-test".into()),
        moves,
        cancelled: Vec::new(),
        waiting: 0,
    })
    .into_response()
}

async fn done(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    mock.reports.lock().unwrap().push(id.clone());
    // The move leaves the work list with its report.
    mock.work.lock().unwrap().retain(|m| m.r#move.id != id);
    Json(MoveDoneResponse {
        move_: MoveView {
            state: "done".into(),
            ..work_move(&id).r#move
        },
        remaining: 1,
        epoch: 1,
        committed: false,
    })
    .into_response()
}

async fn serve(mock: Arc<Mock>) -> String {
    let app = Router::new()
        .route("/v1/members/{id}/work", get(work))
        .route("/v1/plan/moves/{id}/done", post(done))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Sets a flag when dropped: a transfer's future was dropped (aborted).
struct DropFlag(Arc<AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + TEST_LIMIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_runner_reports_finished_moves_retries_failures_and_stops_cancelled_ones() {
    let mock = Arc::new(Mock::default());
    *mock.work.lock().unwrap() = vec![work_move("quick"), work_move("flaky"), work_move("slow")];
    let url = serve(mock.clone()).await;
    let progress: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let seen = progress.clone();
    let runner = Runner::new(
        Client::new(&url).unwrap(),
        "db-3",
        RunnerOptions {
            poll: Duration::from_millis(20),
            watch: false,
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
        },
    )
    .on_progress(move |p| seen.lock().unwrap().push(p.clone()));
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let slow_dropped = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = {
        let attempts = attempts.clone();
        let slow_dropped = slow_dropped.clone();
        tokio::spawn(runner.run(
            move |work: WorkMove| {
                let attempts = attempts.clone();
                let slow_dropped = slow_dropped.clone();
                async move {
                    let id = work.r#move.id.clone();
                    let attempt = {
                        let mut a = attempts.lock().unwrap();
                        let n = a.entry(id.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    match id.as_str() {
                        "flaky" if attempt < 3 => Err(format!("attempt {attempt} failed")),
                        "slow" => {
                            let _flag = DropFlag(slow_dropped);
                            std::future::pending::<()>().await;
                            Ok(())
                        }
                        _ => Ok(()),
                    }
                }
            },
            async move {
                let _ = stopped.await;
            },
        ))
    };
    tokio::time::timeout(TEST_LIMIT, async {
        until("quick and flaky reported", || {
            mock.reports.lock().unwrap().len() == 2
        })
        .await;
        // A replan cancels the slow move: it leaves the list.
        mock.work.lock().unwrap().retain(|m| m.r#move.id != "slow");
        until("the slow move aborted", || {
            slow_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    })
    .await
    .expect("within the time limit");
    let _ = stop.send(());
    run.await.unwrap();

    let mut reports = mock.reports.lock().unwrap().clone();
    reports.sort();
    assert_eq!(
        reports,
        ["flaky", "quick"],
        "each finished move reported once"
    );
    assert_eq!(
        attempts.lock().unwrap()["flaky"],
        3,
        "retried until it worked"
    );
    let progress = progress.lock().unwrap();
    let failures = progress
        .iter()
        .filter(|p| matches!(p, Progress::Failed { r#move, .. } if r#move.r#move.id == "flaky"))
        .count();
    assert_eq!(failures, 2);
    assert!(progress.iter().any(|p| matches!(
        p,
        Progress::Stopped { id, reason: StopReason::NoLongerListed } if id == "slow"
    )));
    assert_eq!(attempts.lock().unwrap()["slow"], 1, "never started twice");
}
