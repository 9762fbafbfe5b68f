//! Shared pieces of the end-to-end tests: EndpointSlice files as a cluster
//! writes them, the real binary as a child process, a small HTTP client.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One pod of the StatefulSet `db`.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub ip: String,
    pub ready: bool,
    pub terminating: bool,
    pub zone: String,
}

impl Pod {
    pub fn new(i: usize) -> Self {
        Self {
            name: format!("db-{i}"),
            ip: format!("10.244.{}.{}", i % 3 + 1, 10 + i),
            ready: true,
            terminating: false,
            zone: format!("eu-west-1{}", ['a', 'b', 'c'][i % 3]),
        }
    }
}

/// `n` ready pods.
pub fn pods(n: usize) -> Vec<Pod> {
    (0..n).map(Pod::new).collect()
}

/// The pods as `kubectl get endpointslices -o yaml` prints them: a `List`
/// of slices of at most `per_slice` endpoints each.
pub fn slices_yaml(pods: &[Pod], per_slice: usize) -> String {
    let mut out =
        String::from("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n");
    for (s, chunk) in pods.chunks(per_slice.max(1)).enumerate() {
        let _ = write!(
            out,
            "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  addressType: IPv4\n  metadata:\n    name: db-slice{s}\n    namespace: default\n    generateName: db-\n    labels:\n      kubernetes.io/service-name: db\n      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n    ownerReferences:\n    - apiVersion: v1\n      kind: Service\n      name: db\n      uid: 0b6f2f4e-0000-4000-8000-000000000001\n      controller: true\n      blockOwnerDeletion: true\n  ports:\n  - name: client\n    port: 9042\n    protocol: TCP\n  endpoints:\n"
        );
        for pod in chunk {
            let _ = write!(
                out,
                "  - addresses:\n    - {ip}\n    conditions:\n      ready: {ready}\n      serving: {ready}\n      terminating: {terminating}\n    hostname: {name}\n    nodeName: node-{name}\n    zone: {zone}\n    targetRef:\n      kind: Pod\n      name: {name}\n      namespace: default\n      uid: 00000000-0000-4000-8000-{uid:012}\n",
                ip = pod.ip,
                ready = pod.ready,
                terminating = pod.terminating,
                name = pod.name,
                zone = pod.zone,
                uid = pod.name.len() * 1000 + pod.ip.len(),
            );
        }
    }
    out
}

/// Replaces a file atomically (write then rename), as editors and
/// ConfigMap volume updates do.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real binary, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `ringleader serve` with `args` (plus `--listen`), logging to
    /// `log`.
    pub fn start(args: &[&str], env: &[(&str, &str)], dir: &Path, log: &str) -> Server {
        let port = free_port();
        let log = dir.join(log);
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringleader"));
        command
            .arg("serve")
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .env("RINGLEADER_LOG", "info,ringleader=debug")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start ringleader");
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET returning status and JSON (or Null).
pub async fn get(url: &str) -> (u16, serde_json::Value) {
    send(reqwest::Client::new().get(url)).await
}

/// Sends a request, returning status and JSON body (Null when empty or not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    match request.timeout(Duration::from_secs(10)).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap_or_default();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Asserts the error shape and returns the code.
pub fn error_code(body: &serde_json::Value) -> String {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty());
    code.to_owned()
}
