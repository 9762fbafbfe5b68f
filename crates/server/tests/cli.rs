//! `ringleader serve` as an operator meets it: what it refuses, and what it
//! logs, on the real binary (issue 12's findings about flags, the token and
//! the logs). Each run ends on its own in well under a second: the port it
//! is given is already taken, so it stops right after logging its settings.

use std::net::TcpListener;
use std::process::{Command, Output};

fn ringleader(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringleader"));
    command.args(args).env_remove("NO_COLOR");
    for (key, value) in envs {
        command.env(key, value);
    }
    // Never let the developer's RINGLEADER_* settings leak into a test.
    for (key, _) in std::env::vars() {
        if key.starts_with("RINGLEADER_") {
            command.env_remove(key);
        }
    }
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `serve` that gets as far as binding its port (taken, so it exits).
fn serve_on_a_taken_port(extra: &[&str], envs: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let listen = taken.local_addr().expect("an address").to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let members = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/db-3.yaml");
    let state = format!("file:{}", dir.path().join("state.json").display());
    let source = format!("file:{members}");
    let mut args = vec![
        "serve", "--source", &source, "--state", &state, "--listen", &listen,
    ];
    args.extend_from_slice(extra);
    let output = ringleader(&args, envs);
    drop(taken);
    (output, dir)
}

#[test]
fn a_missing_token_file_says_how_to_create_the_secret() {
    let output = ringleader(
        &[
            "serve",
            "--source",
            "file:x.yaml",
            "--auth-token-file",
            "/nonexistent/ringleader/token",
        ],
        &[],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains("kubectl create secret generic ringleader-token"),
        "{err}"
    );
}

#[test]
fn the_old_placeholder_token_is_refused() {
    // deploy/kubernetes/secret.yaml shipped this value, and it was accepted.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let token = dir.path().join("token");
    std::fs::write(&token, "REPLACE-ME-placeholder-not-a-secret").expect("write");
    let output = ringleader(
        &[
            "serve",
            "--source",
            "file:x.yaml",
            "--auth-token-file",
            token.to_str().expect("UTF-8"),
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("placeholder"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn listen_that_is_not_an_address_is_a_flag_error_not_a_busy_port() {
    // `--listen localhost` said "is another process using it?".
    let output = ringleader(
        &["serve", "--source", "file:x.yaml", "--listen", "localhost"],
        &[],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("not an IP address and port"), "{err}");
    assert!(!err.contains("another process"), "{err}");
}

#[test]
fn typed_flags_reject_bad_values_before_anything_runs() {
    for (flag, value) in [
        ("--mode", "fast"),
        ("--auth", "maybe"),
        ("--settle", "5 parsecs"),
        ("--strategy", "random"),
        ("--log-format", "xml"),
    ] {
        let output = ringleader(&["serve", "--source", "file:x.yaml", flag, value], &[]);
        assert!(!output.status.success(), "{flag} {value}");
        assert!(
            stderr(&output).contains(value),
            "{flag} {value}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn text_logs_have_no_colour_when_not_on_a_terminal() {
    // `kubectl logs` showed ANSI escape codes.
    let (output, _dir) = serve_on_a_taken_port(&[], &[]);
    let err = stderr(&output);
    assert!(err.contains("effective settings"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI codes in: {err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (output, _dir) = serve_on_a_taken_port(&["--log-format", "json"], &[]);
    let err = stderr(&output);
    let mut logged = 0;
    for line in err.lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
        logged += 1;
    }
    assert!(logged >= 2, "{err}");
}

#[test]
fn effective_settings_and_disabled_writes_are_logged_at_startup() {
    // `--auth token` without a token file silently disabled writes.
    let (output, _dir) = serve_on_a_taken_port(&["--log-format", "json"], &[]);
    let err = stderr(&output);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let settings = lines
        .iter()
        .find(|l| l["message"] == "effective settings")
        .unwrap_or_else(|| panic!("no settings line in {err}"));
    assert_eq!(settings["mode"], "ack");
    assert!(
        settings["auth"]
            .as_str()
            .is_some_and(|a| a.contains("disabled")),
        "{settings}"
    );
    let warning = lines
        .iter()
        .find(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("writes are disabled"))
        })
        .unwrap_or_else(|| panic!("no WARN about disabled writes in {err}"));
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("no plan can ever commit")),
        "{warning}"
    );
}

#[test]
fn auth_none_on_a_public_address_is_warned_about() {
    let taken = TcpListener::bind("0.0.0.0:0").expect("a port");
    let port = taken.local_addr().expect("an address").port();
    let listen = format!("0.0.0.0:{port}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = format!("file:{}", dir.path().join("state.json").display());
    let output = ringleader(
        &[
            "serve",
            "--source",
            "file:x.yaml",
            "--state",
            &state,
            "--listen",
            &listen,
            "--auth",
            "none",
        ],
        &[],
    );
    drop(taken);
    let err = stderr(&output);
    assert!(
        err.contains("--auth none on a non-loopback address"),
        "{err}"
    );
}

#[test]
fn auth_reads_needs_something_to_check_reads_with() {
    let output = ringleader(
        &[
            "serve",
            "--source",
            "file:x.yaml",
            "--auth",
            "none",
            "--auth-reads",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--auth-reads needs"),
        "{}",
        stderr(&output)
    );
}
