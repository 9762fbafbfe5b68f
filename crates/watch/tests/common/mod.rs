//! Shared test harness: a collector for a membership stream, a seeded
//! random number generator and a simulated EndpointSlice controller.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ringleader_testkit::TestApiServer;
use ringleader_watch::{
    MemberSet, MembershipStream, SourceEvent, SourceHealth, Weights, members_from_slices,
};

pub const NS: &str = "default";
pub const SERVICE: &str = "db";

/// Everything a stream emitted, in order.
#[derive(Default)]
pub struct Observed {
    pub sets: Vec<MemberSet>,
    pub healths: Vec<SourceHealth>,
    pub warnings: Vec<Option<String>>,
}

/// Drains a membership stream in a task and lets the test wait on it.
pub struct Collector {
    observed: Arc<Mutex<Observed>>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub fn start(mut stream: MembershipStream) -> Self {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let sink = observed.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                {
                    let mut sink = sink.lock().unwrap();
                    match event {
                        SourceEvent::Members(set) => sink.sets.push(set),
                        SourceEvent::Health(health) => sink.healths.push(health),
                        SourceEvent::Warning(warning) => sink.warnings.push(warning),
                    }
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Self {
            observed,
            changed,
            task,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Observed) -> T) -> T {
        f(&self.observed.lock().unwrap())
    }

    pub fn latest(&self) -> Option<MemberSet> {
        self.with(|o| o.sets.last().cloned())
    }

    pub fn health(&self) -> Option<SourceHealth> {
        self.with(|o| o.healths.last().cloned())
    }

    /// Waits until `done` holds for what was observed; panics after `timeout`.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Observed) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.with(&done) {
                return;
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .is_err()
            {
                let (sets, healths) = self.with(|o| (o.sets.len(), o.healths.clone()));
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {sets} sets seen, healths {healths:?}"
                );
            }
        }
    }

    /// Waits until the latest set equals `expected` and health is Synced.
    pub async fn wait_for_synced_set(&mut self, expected: &MemberSet, timeout: Duration) {
        self.wait_until("the expected member set, synced", timeout, |o| {
            o.sets.last() == Some(expected) && o.healths.last() == Some(&SourceHealth::Synced)
        })
        .await;
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// splitmix64: small, seeded, good enough to shuffle a controller around.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn pod_endpoint(index: usize) -> Endpoint {
    Endpoint {
        addresses: vec![format!(
            "10.{}.{}.{}",
            index / 65536,
            (index / 256) % 256,
            index % 256
        )],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        node_name: Some(format!("node-{}", index % 7)),
        zone: Some(format!("zone-{}", index % 3)),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some(format!("db-{index}")),
            namespace: Some(NS.to_owned()),
            uid: Some(format!("uid-{index}")),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

pub fn slice_of(name: &str, pods: &[usize]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NS.to_owned()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/service-name".to_owned(), SERVICE.to_owned()),
                (
                    "endpointslice.kubernetes.io/managed-by".to_owned(),
                    "endpointslice-controller.k8s.io".to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: Some(pods.iter().map(|i| pod_endpoint(*i)).collect()),
        ports: Some(vec![EndpointPort {
            name: Some("grpc".to_owned()),
            port: Some(7000),
            protocol: Some("TCP".to_owned()),
            app_protocol: None,
        }]),
    }
}

/// The Service `name`, with the weights annotation when given.
pub fn service_of(name: &str, weights: Option<&str>) -> k8s_openapi::api::core::v1::Service {
    k8s_openapi::api::core::v1::Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NS.to_owned()),
            annotations: weights.map(|w| {
                BTreeMap::from([(
                    ringleader_watch::WEIGHTS_ANNOTATION.to_owned(),
                    w.to_owned(),
                )])
            }),
            ..ObjectMeta::default()
        },
        ..Default::default()
    }
}

/// Each member's weight in a set, in id order.
pub fn weights_of(set: &MemberSet) -> Vec<(String, Option<u32>)> {
    set.iter().map(|m| (m.id.to_string(), m.weight)).collect()
}

/// A simulated EndpointSlice controller writing to the test server. It
/// keeps at most `max_per_slice` endpoints per slice, splits, merges and
/// moves endpoints in random order, always adding an endpoint to its new
/// slice before removing it from the old one (so duplicates exist in
/// between, as with the real controller). After every write it records the
/// member set the server's slices imply: every set a source emits must be
/// one of these.
pub struct Controller<'a> {
    pub server: &'a TestApiServer,
    pub rng: Rng,
    pub slices: BTreeMap<String, Vec<usize>>,
    pub pods: std::collections::BTreeSet<usize>,
    pub next_pod: usize,
    pub next_slice: usize,
    pub max_per_slice: usize,
    pub valid: Vec<MemberSet>,
}

impl<'a> Controller<'a> {
    pub fn new(server: &'a TestApiServer, seed: u64, max_per_slice: usize) -> Self {
        let mut controller = Self {
            server,
            rng: Rng::new(seed),
            slices: BTreeMap::new(),
            pods: Default::default(),
            next_pod: 0,
            next_slice: 0,
            max_per_slice,
            valid: Vec::new(),
        };
        controller.record();
        controller
    }

    /// The member set the server's slices imply now (no Service on the
    /// server: every member has weight 1).
    pub fn truth(&self) -> MemberSet {
        let slices: Vec<EndpointSlice> = self.server.list(Some(NS)).unwrap();
        Weights::default().apply(members_from_slices(&slices).unwrap())
    }

    fn record(&mut self) {
        let truth = self.truth();
        if self.valid.last() != Some(&truth) {
            self.valid.push(truth);
        }
    }

    fn write(&mut self, name: &str) {
        let pods = self.slices[name].clone();
        self.server.apply(&slice_of(name, &pods)).unwrap();
        self.record();
    }

    fn remove_slice(&mut self, name: &str) {
        self.slices.remove(name);
        self.server.delete::<EndpointSlice>(NS, name).unwrap();
        self.record();
    }

    fn new_slice_name(&mut self) -> String {
        self.next_slice += 1;
        format!("db-{:05x}", self.next_slice * 7919 % 0xfffff)
    }

    /// Starts with `n` pods over `slices` slices.
    pub fn seed(&mut self, n: usize, slices: usize) {
        for s in 0..slices {
            let name = self.new_slice_name();
            let pods: Vec<usize> = (0..n).filter(|p| p % slices == s).collect();
            self.pods.extend(&pods);
            self.slices.insert(name.clone(), pods);
            self.write(&name);
        }
        self.next_pod = n;
    }

    pub fn add_pod(&mut self) {
        let pod = self.next_pod;
        self.next_pod += 1;
        self.pods.insert(pod);
        let roomy: Vec<String> = self
            .slices
            .iter()
            .filter(|(_, p)| p.len() < self.max_per_slice)
            .map(|(n, _)| n.clone())
            .collect();
        let name = if roomy.is_empty() {
            let name = self.new_slice_name();
            self.slices.insert(name.clone(), Vec::new());
            name
        } else {
            roomy[self.rng.below(roomy.len())].clone()
        };
        self.slices.get_mut(&name).unwrap().push(pod);
        self.write(&name);
    }

    pub fn remove_pod(&mut self) {
        if self.pods.is_empty() {
            return;
        }
        let pods: Vec<usize> = self.pods.iter().copied().collect();
        let pod = pods[self.rng.below(pods.len())];
        self.pods.remove(&pod);
        let holders: Vec<String> = self
            .slices
            .iter()
            .filter(|(_, p)| p.contains(&pod))
            .map(|(n, _)| n.clone())
            .collect();
        for name in holders {
            self.slices.get_mut(&name).unwrap().retain(|p| *p != pod);
            if self.slices[&name].is_empty() {
                self.remove_slice(&name);
            } else {
                self.write(&name);
            }
        }
    }

    /// Moves half of a slice into a new slice: create first, then shrink.
    pub fn split(&mut self) {
        let candidates: Vec<String> = self
            .slices
            .iter()
            .filter(|(_, p)| p.len() >= 2)
            .map(|(n, _)| n.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let from = candidates[self.rng.below(candidates.len())].clone();
        let half = self.slices[&from].len() / 2;
        let moved: Vec<usize> = self.slices[&from][..half].to_vec();
        let to = self.new_slice_name();
        self.slices.insert(to.clone(), moved.clone());
        self.write(&to);
        self.slices
            .get_mut(&from)
            .unwrap()
            .retain(|p| !moved.contains(p));
        self.write(&from);
    }

    /// Folds one slice into another: grow the target first, then delete.
    pub fn merge(&mut self) {
        let names: Vec<String> = self.slices.keys().cloned().collect();
        if names.len() < 2 {
            return;
        }
        let a = names[self.rng.below(names.len())].clone();
        let b = names[self.rng.below(names.len())].clone();
        if a == b || self.slices[&a].len() + self.slices[&b].len() > self.max_per_slice {
            return;
        }
        let moved = self.slices[&b].clone();
        self.slices.get_mut(&a).unwrap().extend(moved);
        self.write(&a);
        self.remove_slice(&b);
    }

    /// Moves one endpoint between slices, leaving a duplicate in between.
    pub fn shuffle(&mut self) {
        let names: Vec<String> = self.slices.keys().cloned().collect();
        if names.len() < 2 {
            return;
        }
        let from = names[self.rng.below(names.len())].clone();
        let to = names[self.rng.below(names.len())].clone();
        if from == to
            || self.slices[&from].is_empty()
            || self.slices[&to].len() >= self.max_per_slice
        {
            return;
        }
        let pod = self.slices[&from][0];
        self.slices.get_mut(&to).unwrap().push(pod);
        self.write(&to);
        self.slices.get_mut(&from).unwrap().retain(|p| *p != pod);
        if self.slices[&from].is_empty() {
            self.remove_slice(&from);
        } else {
            self.write(&from);
        }
    }

    /// One random controller action, biased toward growth when `grow`.
    pub fn random_step(&mut self, grow: bool) {
        match self.rng.below(10) {
            0..=4 if grow => self.add_pod(),
            0 | 1 => self.add_pod(),
            2 => self.remove_pod(),
            5 | 6 => self.split(),
            7 | 8 => self.merge(),
            _ => self.shuffle(),
        }
    }

    /// Asserts the final truth is the intended pods, one member each.
    pub fn check_truth(&self) -> MemberSet {
        let truth = self.truth();
        let ids: Vec<String> = truth.ids().map(ToString::to_string).collect();
        let mut expected: Vec<String> = self.pods.iter().map(|p| format!("db-{p}")).collect();
        expected.sort();
        assert_eq!(ids, expected);
        truth
    }

    /// Asserts every emitted set is one the server's slices really implied.
    pub fn check_emitted(&self, emitted: &[MemberSet]) {
        for (i, set) in emitted.iter().enumerate() {
            assert!(
                self.valid.contains(set),
                "emitted set #{i} ({} members) never existed on the server: {:?}",
                set.len(),
                set.ids().collect::<Vec<_>>()
            );
        }
    }
}
