//! The Kubernetes manifests in `deploy/` render, and every object in them is
//! valid against the Kubernetes API types, field by field.
//!
//! Each kustomization is rendered with `kubectl kustomize` (kubectl has
//! kustomize 5 built in; no cluster is needed), the YAML stream is split into
//! documents, and each document is deserialized into its k8s-openapi type,
//! chosen by `apiVersion` and `kind`. k8s-openapi ignores unknown fields, so
//! each typed object is serialized back to JSON and compared with the
//! original: a key that did not survive the round trip is a field the API
//! server would drop (or, with strict field validation, refuse), usually a
//! typo, and the test names its path
//! (`spec.template.spec.containers[0].imagePullPolic`). The ServiceMonitor
//! (a CRD, no k8s-openapi type) is checked by hand against the fields it may
//! have.
//!
//! On top of that: the security settings of the pods, the exact RBAC rules,
//! the coordinator's command line, and that the objects refer to each other
//! correctly (selectors, Service ports, volumes, ServiceAccounts, bindings).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, PodTemplateSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

// ---------------------------------------------------------------------------
// What the manifests must say.

/// The coordinator's command line in the base (DESIGN §7 flags).
const BASE_ARGS: &[&str] = &[
    "serve",
    "--source",
    "kubernetes",
    "--namespace",
    "$(POD_NAMESPACE)",
    "--service",
    "db",
    "--listen",
    "0.0.0.0:8080",
    "--state",
    "configmap:ringleader-state",
    "--leader-election",
    "--auth-token-file",
    "/var/run/ringleader/token",
    "--rf",
    "3",
    "--zone-aware",
    "--mode",
    "ack",
    "--log-format",
    "json",
];

/// What `components/tokenreview` puts in place of `--auth-token-file PATH`.
const TOKENREVIEW_ARGS: &[&str] = &[
    "--auth",
    "tokenreview",
    "--allow-writer",
    "system:serviceaccount:default:db",
    "--token-audience",
    "ringleader",
];

/// The namespaced Role: (API group, resource, resource name or `*`) →
/// verbs, exactly. Everything that can be pinned to one object is: only
/// `create` (whose name is in the body) and the selector-based EndpointSlice
/// reads are namespace-wide.
const ROLE_RULES: &[(&str, &str, &str, &[&str])] = &[
    (
        "discovery.k8s.io",
        "endpointslices",
        "*",
        &["list", "watch"],
    ),
    // The watched Service itself (`--service db`), for its weights annotation.
    ("", "services", "db", &["get", "list", "watch"]),
    (
        "coordination.k8s.io",
        "leases",
        "ringleader-leader",
        &["get", "update"],
    ),
    ("coordination.k8s.io", "leases", "*", &["create"]),
    (
        "",
        "configmaps",
        "ringleader-state",
        &["get", "list", "watch", "update"],
    ),
    // The parts of a state larger than one ConfigMap holds (the server's
    // `state::part_names`).
    ("", "configmaps", "ringleader-state-0", &["get", "update"]),
    ("", "configmaps", "ringleader-state-1", &["get", "update"]),
    ("", "configmaps", "ringleader-state-2", &["get", "update"]),
    ("", "configmaps", "ringleader-state-3", &["get", "update"]),
    ("", "configmaps", "ringleader-state-4", &["get", "update"]),
    ("", "configmaps", "ringleader-state-5", &["get", "update"]),
    ("", "configmaps", "ringleader-state-6", &["get", "update"]),
    ("", "configmaps", "ringleader-state-7", &["get", "update"]),
    ("", "configmaps", "ringleader-state-8", &["get", "update"]),
    ("", "configmaps", "ringleader-state-9", &["get", "update"]),
    ("", "configmaps", "ringleader-state-10", &["get", "update"]),
    ("", "configmaps", "ringleader-state-11", &["get", "update"]),
    ("", "configmaps", "ringleader-state-12", &["get", "update"]),
    ("", "configmaps", "ringleader-state-13", &["get", "update"]),
    ("", "configmaps", "ringleader-state-14", &["get", "update"]),
    ("", "configmaps", "ringleader-state-15", &["get", "update"]),
    ("", "configmaps", "*", &["create"]),
];

/// The ClusterRole of `components/tokenreview`, exactly.
const TOKENREVIEW_RULES: &[(&str, &str, &str, &[&str])] =
    &[("authentication.k8s.io", "tokenreviews", "*", &["create"])];

const IMAGE: &str = "ghcr.io/ringleader/ringleader:0.1.0";
const TOKEN_DIR: &str = "/var/run/ringleader";

// ---------------------------------------------------------------------------
// Rendering.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn deploy_dir(rel: &str) -> PathBuf {
    repo_root().join("deploy").join(rel)
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// `kubectl kustomize DIR`, or a panic that says what went wrong.
fn kustomize(dir: &Path) -> String {
    let kubectl = kubectl();
    let output = match Command::new(&kubectl).arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{kubectl}` was not found on PATH.\n\
             The manifest tests render deploy/ with `kubectl kustomize` (kubectl 1.27 or \
             later, which has kustomize 5 built in; no cluster is needed). kubectl is part \
             of the machine image, so CI does not install it: install the `kubectl` package \
             (Debian/Ubuntu: `apt-get install kubectl` from the Kubernetes apt repository), \
             or point the KUBECTL environment variable at a kubectl binary."
        ),
        Err(e) => panic!("could not run `{kubectl} kustomize {}`: {e}", dir.display()),
    };
    assert!(
        output.status.success(),
        "`{kubectl} kustomize {}` failed ({}):\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kustomize prints UTF-8")
}

/// `to` relative to `from` (both absolute and canonical). kustomize refuses
/// absolute paths to other kustomizations ("new root cannot be absolute"),
/// even with `--load-restrictor LoadRestrictionsNone`, but follows relative
/// ones anywhere.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

/// The base plus `components`, rendered through a throwaway kustomization
/// (in a temporary directory) that refers to them by relative paths.
fn render_with(components: &[&str], namespace: Option<&str>) -> Rendered {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().canonicalize().expect("the temporary directory");
    let path_to = |rel: &str| {
        let target = deploy_dir(rel);
        serde_json::to_string(&relative(&root, &target).to_string_lossy()).expect("a path")
    };
    let mut text =
        String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    if let Some(ns) = namespace {
        text.push_str(&format!("namespace: {ns}\n"));
    }
    text.push_str(&format!("resources:\n  - {}\n", path_to("kubernetes")));
    if !components.is_empty() {
        text.push_str("components:\n");
        for component in components {
            text.push_str(&format!(
                "  - {}\n",
                path_to(&format!("kubernetes/components/{component}"))
            ));
        }
    }
    std::fs::write(root.join("kustomization.yaml"), text).expect("write kustomization.yaml");
    Rendered::new(&format!("base + {components:?}"), &kustomize(&root))
}

fn render(rel: &str) -> Rendered {
    Rendered::new(rel, &kustomize(&deploy_dir(rel)))
}

/// Splits a YAML stream into its documents, as JSON; empty documents go.
fn split_yaml(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .enumerate()
        .map(|(i, document)| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("YAML document {i} does not parse: {e}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

// ---------------------------------------------------------------------------
// Field-by-field validation.

/// Where `back` (the typed round trip) lost or changed something of
/// `original`: the path of the first such field and what happened to it.
fn first_difference(original: &Value, back: &Value, path: &str) -> Option<(String, String)> {
    match (original, back) {
        (Value::Object(original), Value::Object(back)) => {
            for (key, value) in original {
                let path = join_key(path, key);
                match back.get(key) {
                    None => {
                        return Some((
                            path,
                            "unknown field: the API type has no such field".to_owned(),
                        ));
                    }
                    Some(survivor) => {
                        if let Some(difference) = first_difference(value, survivor, &path) {
                            return Some(difference);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(original), Value::Array(back)) => {
            if original.len() != back.len() {
                return Some((
                    path.to_owned(),
                    format!("{} items became {}", original.len(), back.len()),
                ));
            }
            original
                .iter()
                .zip(back)
                .enumerate()
                .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        (a, b) => Some((path.to_owned(), format!("{a} became {b}"))),
    }
}

fn join_key(path: &str, key: &str) -> String {
    let key = if key.contains(['.', '/', '[', ']', ' ']) {
        format!("[{key:?}]")
    } else {
        key.to_owned()
    };
    match (path.is_empty(), key.starts_with('[')) {
        (true, _) => key,
        (false, true) => format!("{path}{key}"),
        (false, false) => format!("{path}.{key}"),
    }
}

fn round_trip<T: Resource + DeserializeOwned + Serialize>(document: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(document.clone())
        .map_err(|e| format!("is not a valid {} {}: {e}", T::API_VERSION, T::KIND))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    match first_difference(document, &back, "") {
        None => Ok(()),
        Some((path, what)) => Err(format!("{path}: {what}")),
    }
}

/// Checks one rendered document against its API type.
fn validate(document: &Value) -> Result<(), String> {
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    let kind = document["kind"].as_str().unwrap_or_default();
    if api_version == "monitoring.coreos.com/v1" && kind == "ServiceMonitor" {
        return validate_service_monitor(document);
    }
    macro_rules! typed {
        ($($t:ty),* $(,)?) => {
            $(
                if api_version == <$t as Resource>::API_VERSION && kind == <$t as Resource>::KIND {
                    return round_trip::<$t>(document);
                }
            )*
        };
    }
    typed!(
        Namespace,
        ServiceAccount,
        Secret,
        Service,
        Role,
        RoleBinding,
        ClusterRole,
        ClusterRoleBinding,
        Deployment,
        StatefulSet,
        PodDisruptionBudget,
        NetworkPolicy,
    );
    Err(format!(
        "no check for apiVersion {api_version:?} kind {kind:?}: add its k8s-openapi type to \
         `validate` in {}",
        file!()
    ))
}

/// A ServiceMonitor (monitoring.coreos.com/v1, a CRD) by hand: the required
/// fields, and no key outside those the CRD defines (the ones listed here;
/// extend the lists when the manifest uses more).
fn validate_service_monitor(document: &Value) -> Result<(), String> {
    fn only(value: &Value, path: &str, allowed: &[&str]) -> Result<(), String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("{path}: must be an object"))?;
        match object.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(format!(
                "{}: unknown field: a ServiceMonitor has no such field",
                join_key(path, key)
            )),
            None => Ok(()),
        }
    }
    fn string(value: &Value, path: &str) -> Result<(), String> {
        match value.as_str() {
            Some(s) if !s.is_empty() => Ok(()),
            _ => Err(format!("{path}: must be a non-empty string")),
        }
    }
    only(document, "", &["apiVersion", "kind", "metadata", "spec"])?;
    // The metadata is plain ObjectMeta: check it with its type.
    let metadata = &document["metadata"];
    let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
        serde_json::from_value(metadata.clone()).map_err(|e| format!("metadata: {e}"))?;
    if let Some((path, what)) =
        first_difference(metadata, &serde_json::to_value(&typed).unwrap(), "metadata")
    {
        return Err(format!("{path}: {what}"));
    }
    string(&metadata["name"], "metadata.name")?;
    let spec = &document["spec"];
    only(
        spec,
        "spec",
        &[
            "selector",
            "endpoints",
            "namespaceSelector",
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "sampleLimit",
            "targetLimit",
            "labelLimit",
            "labelNameLengthLimit",
            "labelValueLengthLimit",
            "attachMetadata",
            "scrapeProtocols",
            "scrapeClass",
            "bodySizeLimit",
            "keepDroppedTargets",
            "fallbackScrapeProtocol",
        ],
    )?;
    // spec.selector is required, and is a LabelSelector.
    let selector = spec
        .get("selector")
        .ok_or("spec.selector: required (an empty selector {} selects every Service)")?;
    let typed: LabelSelector =
        serde_json::from_value(selector.clone()).map_err(|e| format!("spec.selector: {e}"))?;
    if let Some((path, what)) = first_difference(
        selector,
        &serde_json::to_value(&typed).unwrap(),
        "spec.selector",
    ) {
        return Err(format!("{path}: {what}"));
    }
    let endpoints = spec["endpoints"]
        .as_array()
        .filter(|endpoints| !endpoints.is_empty())
        .ok_or("spec.endpoints: required, at least one")?;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        only(
            endpoint,
            &path,
            &[
                "port",
                "targetPort",
                "path",
                "scheme",
                "params",
                "interval",
                "scrapeTimeout",
                "honorLabels",
                "honorTimestamps",
                "trackTimestampsStaleness",
                "relabelings",
                "metricRelabelings",
                "bearerTokenSecret",
                "authorization",
                "basicAuth",
                "oauth2",
                "tlsConfig",
                "followRedirects",
                "enableHttp2",
                "filterRunning",
                "proxyUrl",
            ],
        )?;
        if endpoint.get("port").is_none() && endpoint.get("targetPort").is_none() {
            return Err(format!("{path}: needs `port` (a Service port name)"));
        }
        for key in ["port", "path", "scheme", "interval", "scrapeTimeout"] {
            if let Some(value) = endpoint.get(key) {
                string(value, &format!("{path}.{key}"))?;
            }
        }
        if let Some(scheme) = endpoint.get("scheme").and_then(Value::as_str)
            && !matches!(scheme, "http" | "https" | "HTTP" | "HTTPS")
        {
            return Err(format!("{path}.scheme: {scheme:?} is not http or https"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A rendered kustomization.

struct Rendered {
    what: String,
    documents: Vec<Value>,
}

impl Rendered {
    /// Splits and validates every document (all problems at once), then
    /// checks that the objects refer to each other correctly.
    fn new(what: &str, yaml: &str) -> Self {
        let documents = split_yaml(yaml);
        assert!(!documents.is_empty(), "{what}: renders no object");
        let problems: Vec<String> = documents
            .iter()
            .filter_map(|document| {
                validate(document).err().map(|e| {
                    format!(
                        "{}/{}: {e}",
                        document["kind"].as_str().unwrap_or("?"),
                        document["metadata"]["name"].as_str().unwrap_or("?")
                    )
                })
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{what}: invalid objects:\n  {}",
            problems.join("\n  ")
        );
        let rendered = Rendered {
            what: what.to_owned(),
            documents,
        };
        rendered.check_references();
        rendered
    }

    fn kinds(&self) -> BTreeSet<(String, String)> {
        self.documents
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap_or_default().to_owned(),
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    fn find<T: Resource + DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.documents
            .iter()
            .find(|d| {
                d["apiVersion"] == T::API_VERSION
                    && d["kind"] == T::KIND
                    && d["metadata"]["name"] == name
            })
            .map(|d| serde_json::from_value(d.clone()).expect("validated"))
    }

    fn get<T: Resource + DeserializeOwned>(&self, name: &str) -> T {
        self.find(name)
            .unwrap_or_else(|| panic!("{}: no {} named {name}", self.what, T::KIND))
    }

    fn all<T: Resource + DeserializeOwned>(&self) -> Vec<T> {
        self.documents
            .iter()
            .filter(|d| d["apiVersion"] == T::API_VERSION && d["kind"] == T::KIND)
            .map(|d| serde_json::from_value(d.clone()).expect("validated"))
            .collect()
    }

    fn raw(&self, kind: &str, name: &str) -> &Value {
        self.documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} named {name}", self.what))
    }

    fn has(&self, kind: &str, name: &str) -> bool {
        self.kinds().contains(&(kind.to_owned(), name.to_owned()))
    }

    /// Selectors select their pod templates, volume mounts name volumes,
    /// Secret volumes and ServiceAccounts exist, bindings name roles and
    /// accounts that exist, Services reach a named container port.
    fn check_references(&self) {
        let what = &self.what;
        let mut pods: Vec<(String, PodTemplateSpec, Vec<String>)> = Vec::new();
        for deployment in self.all::<Deployment>() {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let spec = deployment.spec;
            assert_selects(what, &name, &spec.selector, &spec.template);
            pods.push((name, spec.template, Vec::new()));
        }
        for set in self.all::<StatefulSet>() {
            let name = set.metadata.name.clone().unwrap_or_default();
            let spec = set.spec;
            assert_selects(what, &name, &spec.selector, &spec.template);
            let claims = spec
                .volume_claim_templates
                .unwrap_or_default()
                .into_iter()
                .filter_map(|claim| claim.metadata.name)
                .collect();
            pods.push((name, spec.template, claims));
        }
        for (owner, template, claims) in &pods {
            let spec = template.spec.as_ref().expect("pod spec");
            let volumes: BTreeSet<&str> = spec
                .volumes
                .iter()
                .flatten()
                .map(|volume| volume.name.as_str())
                .chain(claims.iter().map(String::as_str))
                .collect();
            for container in &spec.containers {
                for mount in container.volume_mounts.iter().flatten() {
                    assert!(
                        volumes.contains(mount.name.as_str()),
                        "{what}: {owner}: container {} mounts volume {:?}, which the pod does \
                         not have",
                        container.name,
                        mount.name
                    );
                }
            }
            for volume in spec.volumes.iter().flatten() {
                // An optional Secret is created outside the manifests (the
                // write token: docs/deploy.md, step 1).
                if let Some(secret) = volume.secret.as_ref().filter(|s| s.optional != Some(true)) {
                    let name = secret.secret_name.as_deref().unwrap_or_default();
                    assert!(
                        self.has("Secret", name),
                        "{what}: {owner}: volume {} needs Secret {name:?}, which is not rendered",
                        volume.name
                    );
                }
            }
            let account = spec.service_account_name.as_deref().unwrap_or("default");
            assert!(
                account == "default" || self.has("ServiceAccount", account),
                "{what}: {owner}: runs as ServiceAccount {account:?}, which is not rendered"
            );
        }
        for service in self.all::<Service>() {
            let name = service.metadata.name.clone().unwrap_or_default();
            let spec = service.spec.expect("Service.spec");
            let selector = spec.selector.unwrap_or_default();
            let backends: Vec<&PodTemplateSpec> = pods
                .iter()
                .filter(|(_, template, _)| labels_match(&selector, template))
                .map(|(_, template, _)| template)
                .collect();
            assert!(
                !backends.is_empty(),
                "{what}: Service {name} selects no rendered pod template ({selector:?})"
            );
            for port in spec.ports.unwrap_or_default() {
                if let Some(IntOrString::String(target)) = &port.target_port {
                    for template in &backends {
                        let pod = template.spec.as_ref().expect("pod spec");
                        assert!(
                            pod.containers.iter().any(|c| c
                                .ports
                                .iter()
                                .flatten()
                                .any(|p| p.name.as_deref() == Some(target.as_str()))),
                            "{what}: Service {name} targets port {target:?}, which no container \
                             names"
                        );
                    }
                }
            }
        }
        let namespace_of =
            |value: &Value| value["metadata"]["namespace"].as_str().map(str::to_owned);
        for binding in self.all::<RoleBinding>() {
            let name = binding.metadata.name.clone().unwrap_or_default();
            assert!(
                self.has(&binding.role_ref.kind, &binding.role_ref.name),
                "{what}: RoleBinding {name} refers to {} {}, which is not rendered",
                binding.role_ref.kind,
                binding.role_ref.name
            );
            self.check_subjects(
                &format!("RoleBinding {name}"),
                binding.subjects.unwrap_or_default(),
                binding.metadata.namespace,
            );
        }
        for binding in self.all::<ClusterRoleBinding>() {
            let name = binding.metadata.name.clone().unwrap_or_default();
            assert!(
                binding.role_ref.kind == "ClusterRole"
                    && self.has("ClusterRole", &binding.role_ref.name),
                "{what}: ClusterRoleBinding {name} refers to {} {}, which is not rendered",
                binding.role_ref.kind,
                binding.role_ref.name
            );
            // Its ServiceAccount subjects live where the ServiceAccount is.
            let account_namespace = self
                .documents
                .iter()
                .find(|d| d["kind"] == "ServiceAccount")
                .and_then(namespace_of);
            self.check_subjects(
                &format!("ClusterRoleBinding {name}"),
                binding.subjects.unwrap_or_default(),
                account_namespace,
            );
        }
    }

    fn check_subjects(
        &self,
        binding: &str,
        subjects: Vec<k8s_openapi::api::rbac::v1::Subject>,
        namespace: Option<String>,
    ) {
        let what = &self.what;
        assert!(!subjects.is_empty(), "{what}: {binding} has no subject");
        for subject in subjects {
            assert_eq!(subject.kind, "ServiceAccount", "{what}: {binding}");
            assert!(
                self.has("ServiceAccount", &subject.name),
                "{what}: {binding} binds ServiceAccount {}, which is not rendered",
                subject.name
            );
            // A namespace-less rendering is applied to the namespace of
            // kubectl's context, while the subject keeps what it says: it
            // must then be `default`, the namespace kubectl falls back to.
            let expected = namespace.clone().unwrap_or_else(|| "default".to_owned());
            assert_eq!(
                subject.namespace.as_deref(),
                Some(expected.as_str()),
                "{what}: {binding}: subject {} is in the wrong namespace",
                subject.name
            );
        }
    }
}

fn labels_match(selector: &BTreeMap<String, String>, template: &PodTemplateSpec) -> bool {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|labels| labels.get(k)) == Some(v))
}

fn assert_selects(what: &str, owner: &str, selector: &LabelSelector, template: &PodTemplateSpec) {
    assert!(
        selector.match_expressions.is_none(),
        "{what}: {owner}: use matchLabels"
    );
    let labels = selector.match_labels.clone().unwrap_or_default();
    assert!(
        labels_match(&labels, template),
        "{what}: {owner}: the selector {labels:?} does not select its own pod template"
    );
}

// ---------------------------------------------------------------------------
// Helpers for the assertions.

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().expect("pod spec")
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(container: &Container) -> Vec<&str> {
    container
        .args
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Grants keyed by (group, resource, resource name or `*`).
type Grants = BTreeMap<(String, String, String), Vec<String>>;

/// The rules as (group, resource, name) → sorted verbs; panics on anything
/// that is not a plain grant (wildcards, nonResourceURLs).
fn grants(what: &str, rules: &[PolicyRule]) -> Grants {
    let mut grants: Grants = BTreeMap::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "{what}: unexpected rule {rule:?}"
        );
        let names: Vec<String> = match &rule.resource_names {
            Some(names) => {
                assert!(!names.is_empty(), "{what}: empty resourceNames in {rule:?}");
                names.clone()
            }
            None => vec!["*".to_owned()],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for name in &names {
                    for verb in &rule.verbs {
                        assert!(
                            group != "*" && resource != "*" && verb != "*",
                            "{what}: wildcard in {rule:?}"
                        );
                        grants
                            .entry((group.clone(), resource.clone(), name.clone()))
                            .or_default()
                            .push(verb.clone());
                    }
                }
            }
        }
    }
    for verbs in grants.values_mut() {
        verbs.sort();
        let before = verbs.len();
        verbs.dedup();
        assert_eq!(before, verbs.len(), "{what}: a verb granted twice");
    }
    grants
}

fn expected_grants(rules: &[(&str, &str, &str, &[&str])]) -> Grants {
    rules
        .iter()
        .map(|(group, resource, name, verbs)| {
            let mut verbs: Vec<String> = verbs.iter().map(|v| (*v).to_owned()).collect();
            verbs.sort();
            (
                (
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*name).to_owned(),
                ),
                verbs,
            )
        })
        .collect()
}

/// The pod's effective security settings: the container's, else the pod's.
fn assert_locked_down(what: &str, pod: &PodSpec, container: &Container) {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_else(|| {
        panic!(
            "{what}: container {} has no securityContext",
            container.name
        )
    });
    assert_eq!(
        sc.run_as_non_root.or(pod_sc.run_as_non_root),
        Some(true),
        "{what}: runAsNonRoot"
    );
    assert_eq!(
        sc.run_as_user.or(pod_sc.run_as_user),
        Some(65532),
        "{what}: runAsUser"
    );
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "{what}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "{what}: allowPrivilegeEscalation"
    );
    assert_ne!(sc.privileged, Some(true), "{what}: privileged");
    let capabilities = sc.capabilities.clone().unwrap_or_default();
    assert_eq!(
        capabilities.drop,
        Some(vec!["ALL".to_owned()]),
        "{what}: capabilities.drop"
    );
    assert!(
        capabilities.add.unwrap_or_default().is_empty(),
        "{what}: capabilities.add"
    );
    let seccomp = sc
        .seccomp_profile
        .or(pod_sc.seccomp_profile)
        .map(|profile| profile.type_);
    assert_eq!(
        seccomp.as_deref(),
        Some("RuntimeDefault"),
        "{what}: seccompProfile"
    );
    assert_ne!(pod.host_network, Some(true), "{what}: hostNetwork");
    assert_ne!(pod.host_pid, Some(true), "{what}: hostPID");
}

fn http_probe(probe: Option<&k8s_openapi::api::core::v1::Probe>) -> (String, IntOrString) {
    let get = probe
        .and_then(|probe| probe.http_get.clone())
        .expect("an HTTP GET probe");
    (get.path.unwrap_or_default(), get.port)
}

// ---------------------------------------------------------------------------
// The checker itself.

#[test]
fn round_trip_names_the_path_of_an_unknown_field() {
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          imagePullPolic: Always
"#;
    let documents = split_yaml(yaml);
    assert_eq!(
        validate(&documents[0]),
        Err(
            "spec.template.spec.containers[0].imagePullPolic: unknown field: the API type has \
             no such field"
                .to_owned()
        )
    );

    let mut fixed = documents[0].clone();
    let container = &mut fixed["spec"]["template"]["spec"]["containers"][0];
    let policy = container.as_object_mut().unwrap().remove("imagePullPolic");
    container["imagePullPolicy"] = policy.unwrap();
    assert_eq!(validate(&fixed), Ok(()));

    // Wrong types fail in the typed step; an unknown kind is refused.
    let wrong = split_yaml("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: 80}");
    assert!(validate(&wrong[0]).unwrap_err().contains("v1 Service"));
    let unknown = split_yaml("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}");
    assert!(validate(&unknown[0]).unwrap_err().contains("no check"));
    // Keys with dots are quoted in paths.
    let annotated = split_yaml(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, annotations: {a.b/c: d}}\n\
         automountServiceAccountTokn: true",
    );
    assert_eq!(
        validate(&annotated[0]),
        Err("automountServiceAccountTokn: unknown field: the API type has no such field".into())
    );
}

#[test]
fn service_monitor_is_checked_by_hand() {
    let good = r#"
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: m}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: http, path: /metrics}]
"#;
    assert_eq!(validate(&split_yaml(good)[0]), Ok(()));
    for (mistake, replacement, expected) in [
        (
            "path: /metrics",
            "pth: /metrics",
            "spec.endpoints[0].pth: unknown field",
        ),
        (
            "endpoints: [{port: http, path: /metrics}]",
            "endpoints: []",
            "spec.endpoints: required",
        ),
        (
            "selector: {matchLabels: {a: b}}",
            "selectr: {}",
            "spec.selectr: unknown field",
        ),
        (
            "{matchLabels: {a: b}}",
            "{matchLabel: {a: b}}",
            "spec.selector.matchLabel: unknown field",
        ),
        (
            "metadata: {name: m}",
            "metadata: {nme: m}",
            "metadata.nme: unknown field",
        ),
        (
            "port: http",
            "port: 8080",
            "spec.endpoints[0].port: must be a non-empty string",
        ),
    ] {
        let bad = good.replace(mistake, replacement);
        assert_ne!(bad, good);
        let error = validate(&split_yaml(&bad)[0]).unwrap_err();
        assert!(error.starts_with(expected), "{bad}\n→ {error}");
    }
}

#[test]
fn relative_paths_climb_to_the_common_ancestor() {
    assert_eq!(
        relative(Path::new("/tmp/x/y"), Path::new("/work/main/deploy")),
        PathBuf::from("../../../work/main/deploy")
    );
    assert_eq!(
        relative(Path::new("/a/b"), Path::new("/a/b/c")),
        PathBuf::from("c")
    );
}

// ---------------------------------------------------------------------------
// deploy/kubernetes, the base.

#[test]
fn base_renders_exactly_its_objects() {
    let base = render("kubernetes");
    let expected: BTreeSet<(String, String)> = [
        ("ServiceAccount", "ringleader"),
        ("Role", "ringleader"),
        ("RoleBinding", "ringleader"),
        ("Deployment", "ringleader"),
        ("Service", "ringleader"),
        ("PodDisruptionBudget", "ringleader"),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(base.kinds(), expected);
    // The base leaves the namespace to the overlay (or kubectl's context).
    for document in &base.documents {
        assert!(
            document["metadata"].get("namespace").is_none(),
            "{}: the base sets a namespace",
            document["metadata"]["name"]
        );
    }
}

/// Issue 12: `deploy/kubernetes/secret.yaml` carried a token the binary
/// accepted, so `kubectl apply -k` gave anyone who read the repository the
/// right to ack moves. No Secret (and no value for one) is rendered by any
/// kustomization; the Deployment mounts one created by hand, optionally, so
/// that ringleader itself says what is missing.
#[test]
fn no_secret_value_ships_in_the_manifests() {
    for rendered in [
        render("kubernetes"),
        render("examples/overlay"),
        render_with(&["servicemonitor", "networkpolicy"], None),
    ] {
        assert!(
            rendered.all::<Secret>().is_empty(),
            "{}: renders a Secret",
            rendered.what
        );
    }
    let base = render("kubernetes");
    let deployment: Deployment = base.get("ringleader");
    let token = pod(&deployment)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "token")
        .and_then(|v| v.secret.clone())
        .expect("the token volume is a Secret");
    assert_eq!(token.secret_name.as_deref(), Some("ringleader-token"));
    assert_eq!(token.optional, Some(true));
    // Nor anywhere in deploy/ as text.
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("deploy/ is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("deploy"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("stringData") && !text.contains("REPLACE-ME"),
            "{} carries a secret value",
            file.display()
        );
    }
}

#[test]
fn networkpolicy_component_lets_in_the_namespace_and_out_to_dns_and_the_api_server() {
    let rendered = render_with(&["networkpolicy"], Some("prod"));
    rendered.check_references();
    let policy: NetworkPolicy = rendered.get("ringleader");
    let spec = policy.spec.expect("spec");
    let deployment: Deployment = rendered.get("ringleader");
    assert_selects(
        "networkpolicy",
        "ringleader",
        &spec.pod_selector.clone().unwrap_or_default(),
        &deployment.spec.template,
    );
    let types = spec.policy_types.clone().unwrap_or_default();
    assert_eq!(types, ["Ingress", "Egress"]);
    let ingress = spec.ingress.clone().unwrap_or_default();
    assert_eq!(ingress.len(), 1);
    let port = ingress[0].ports.clone().unwrap_or_default()[0]
        .port
        .clone()
        .expect("a port");
    assert_eq!(port, IntOrString::String("http".into()));
    let container = container(pod(&deployment), "ringleader");
    assert!(
        container
            .ports
            .iter()
            .flatten()
            .any(|p| p.name.as_deref() == Some("http")),
        "the policy's port name is the container's"
    );
    let egress_ports: BTreeSet<i32> = spec
        .egress
        .clone()
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| match p.port {
            Some(IntOrString::Int(n)) => Some(n),
            _ => None,
        })
        .collect();
    for needed in [53, 443, 6443, 8080] {
        assert!(egress_ports.contains(&needed), "egress to port {needed}");
    }
}

#[test]
fn base_deployment_runs_the_coordinator_as_specified() {
    let base = render("kubernetes");
    let deployment: Deployment = base.get("ringleader");
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let annotations = template_meta.annotations.unwrap_or_default();
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "8080"),
        ("prometheus.io/path", "/metrics"),
    ] {
        assert_eq!(
            annotations.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }

    let pod = pod(&deployment);
    assert_eq!(pod.service_account_name.as_deref(), Some("ringleader"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    let c = container(pod, "ringleader");
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(args(c), BASE_ARGS);

    let env: BTreeMap<&str, &k8s_openapi::api::core::v1::EnvVar> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    for (name, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let from = env
            .get(name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .unwrap_or_else(|| panic!("env {name} from the downward API"));
        assert_eq!(from.field_path, field, "{name}");
    }
    assert_eq!(
        env.get("RINGLEADER_LEASE_NAME")
            .and_then(|e| e.value.as_deref()),
        Some("ringleader-leader")
    );
    // $(POD_NAMESPACE) in args is only expanded if the variable is defined.
    assert!(args(c).contains(&"$(POD_NAMESPACE)"));

    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a container port named http");
    assert_eq!(port.container_port, 8080);
    let http = IntOrString::String("http".to_owned());
    assert_eq!(
        http_probe(c.liveness_probe.as_ref()),
        ("/healthz".to_owned(), http.clone())
    );
    assert_eq!(
        http_probe(c.readiness_probe.as_ref()),
        ("/readyz".to_owned(), http)
    );

    let resources = c.resources.clone().expect("resources");
    let quantity =
        |map: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
         key: &str| { map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone()) };
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("50m"));
    assert_eq!(
        quantity(&resources.requests, "memory").as_deref(),
        Some("64Mi")
    );
    assert_eq!(
        quantity(&resources.limits, "memory").as_deref(),
        Some("128Mi")
    );
    assert_eq!(
        quantity(&resources.limits, "cpu"),
        None,
        "no CPU limit (throttling)"
    );

    // The token: a Secret volume, mounted read-only at TOKEN_DIR, where
    // --auth-token-file looks.
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == TOKEN_DIR)
        .expect("the token mount");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the token volume");
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("ringleader-token")
    );
    let token_file = BASE_ARGS[BASE_ARGS
        .iter()
        .position(|a| *a == "--auth-token-file")
        .unwrap()
        + 1];
    assert_eq!(token_file, format!("{TOKEN_DIR}/token"));

    // Spread over nodes: a topology spread on the hostname, or anti-affinity.
    let spreads = pod
        .topology_spread_constraints
        .iter()
        .flatten()
        .any(|t| t.topology_key == "kubernetes.io/hostname");
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .is_some();
    assert!(spreads || anti, "replicas are not spread over nodes");
    // Service links would put RINGLEADER_SERVICE_HOST & co. into the env.
    assert_eq!(pod.enable_service_links, Some(false));
}

#[test]
fn base_pod_is_locked_down() {
    let base = render("kubernetes");
    let deployment: Deployment = base.get("ringleader");
    let pod = pod(&deployment);
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        assert_locked_down("Deployment ringleader", pod, c);
    }
}

#[test]
fn base_role_grants_exactly_what_the_coordinator_uses() {
    let base = render("kubernetes");
    let role: Role = base.get("ringleader");
    assert_eq!(
        grants("Role ringleader", role.rules.as_deref().unwrap_or_default()),
        expected_grants(ROLE_RULES)
    );
    let binding: RoleBinding = base.get("ringleader");
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "ringleader")
    );
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("ServiceAccount", "ringleader")
    );
    assert!(
        base.all::<ClusterRole>().is_empty(),
        "the base needs no ClusterRole"
    );
}

#[test]
fn base_service_reaches_the_http_port() {
    let base = render("kubernetes");
    let service: Service = base.get("ringleader");
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref().unwrap_or("ClusterIP"), "ClusterIP");
    let ports = spec.ports.unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 80);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    assert_eq!(
        ports[0].target_port,
        Some(IntOrString::String("http".to_owned()))
    );
    let pdb: PodDisruptionBudget = base.get("ringleader");
    assert_eq!(
        pdb.spec.and_then(|s| s.min_available),
        Some(IntOrString::Int(1))
    );
}

// ---------------------------------------------------------------------------
// The components.

#[test]
fn servicemonitor_component_scrapes_the_service() {
    let rendered = render_with(&["servicemonitor"], None);
    let monitor = rendered.raw("ServiceMonitor", "ringleader");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service: Service = rendered.get("ringleader");
    let labels = service.metadata.labels.clone().unwrap_or_default();
    let selector: LabelSelector =
        serde_json::from_value(monitor["spec"]["selector"].clone()).unwrap();
    let wanted = selector.match_labels.unwrap_or_default();
    assert!(
        !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the ServiceMonitor selector {wanted:?} does not select the Service ({labels:?})"
    );
    let port_names: BTreeSet<String> = service
        .spec
        .unwrap()
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    for endpoint in endpoints {
        let port = endpoint["port"].as_str().unwrap_or_default();
        assert!(port_names.contains(port), "no Service port named {port:?}");
        assert_eq!(endpoint["path"], "/metrics");
    }
    // Not scraped twice: the annotation scrape is off with the component.
    let deployment: Deployment = rendered.get("ringleader");
    let annotations = deployment
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("false")
    );
}

#[test]
fn tokenreview_component_switches_auth_and_drops_the_token() {
    let rendered = render_with(&["tokenreview"], Some("ns-under-test"));
    let role: ClusterRole = rendered.get("ringleader-tokenreview");
    assert_eq!(
        grants(
            "ClusterRole ringleader-tokenreview",
            role.rules.as_deref().unwrap_or_default()
        ),
        expected_grants(TOKENREVIEW_RULES)
    );
    let binding: ClusterRoleBinding = rendered.get("ringleader-tokenreview");
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].name, "ringleader");
    assert_eq!(subjects[0].namespace.as_deref(), Some("ns-under-test"));

    // The command line: the base's, with the token file replaced.
    let at = BASE_ARGS
        .iter()
        .position(|a| *a == "--auth-token-file")
        .unwrap();
    let mut expected: Vec<&str> = BASE_ARGS[..at].to_vec();
    expected.extend_from_slice(TOKENREVIEW_ARGS);
    expected.extend_from_slice(&BASE_ARGS[at + 2..]);
    let deployment: Deployment = rendered.get("ringleader");
    let pod = pod(&deployment);
    let c = container(pod, "ringleader");
    assert_eq!(args(c), expected);
    assert!(
        !c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == TOKEN_DIR),
        "the token is still mounted"
    );
    assert!(
        !pod.volumes.iter().flatten().any(|v| v.secret.is_some()),
        "a Secret volume is left"
    );
    assert!(!rendered.has("Secret", "ringleader-token"));
    // TokenReview needs the pod's own token to call the API server.
    assert_eq!(pod.automount_service_account_token, Some(true));
    // The rest is untouched.
    assert_locked_down("Deployment ringleader", pod, c);
    let role: Role = rendered.get("ringleader");
    assert_eq!(
        grants("Role ringleader", role.rules.as_deref().unwrap_or_default()),
        expected_grants(ROLE_RULES)
    );
}

#[test]
fn both_components_together() {
    let rendered = render_with(
        &["servicemonitor", "tokenreview"],
        Some("monitoring-and-auth"),
    );
    for kind in [
        "ServiceMonitor",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        assert!(rendered.kinds().iter().any(|(k, _)| k == kind), "no {kind}");
    }
    for document in &rendered.documents {
        let cluster_scoped = matches!(
            document["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "Namespace")
        );
        assert_eq!(
            document["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some("monitoring-and-auth"),
            "{}",
            document["metadata"]["name"]
        );
    }
}

// ---------------------------------------------------------------------------
// deploy/examples.

#[test]
fn example_db_is_a_statefulset_behind_a_headless_service() {
    let rendered = render("examples/db");
    let set: StatefulSet = rendered.get("db");
    let spec = &set.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("db"));
    let claims = spec.volume_claim_templates.clone().unwrap_or_default();
    assert!(!claims.is_empty(), "no volumeClaimTemplates");
    let pod = spec.template.spec.as_ref().unwrap();
    for c in &pod.containers {
        assert!(
            c.readiness_probe.is_some(),
            "container {} has no readiness probe",
            c.name
        );
        for claim in &claims {
            let name = claim.metadata.name.as_deref().unwrap();
            assert!(
                c.volume_mounts.iter().flatten().any(|m| m.name == name),
                "claim {name} is not mounted"
            );
        }
    }
    let service: Service = rendered.get("db");
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(service_spec.publish_not_ready_addresses, Some(false));
}

#[test]
fn example_overlay_brings_up_db_and_ringleader_in_one_namespace() {
    let rendered = render("examples/overlay");
    let namespace: Namespace = rendered.get("ringleader-demo");
    let ns = namespace.metadata.name.unwrap();
    for document in &rendered.documents {
        if document["kind"] != "Namespace" {
            assert_eq!(
                document["metadata"]["namespace"].as_str(),
                Some(ns.as_str()),
                "{} {}",
                document["kind"],
                document["metadata"]["name"]
            );
        }
    }
    // Everything of the base and of the example is there.
    let base = render("kubernetes");
    let db = render("examples/db");
    for object in base.kinds().iter().chain(db.kinds().iter()) {
        assert!(rendered.kinds().contains(object), "{object:?} is missing");
    }
    // ringleader watches the headless Service that fronts the StatefulSet.
    let deployment: Deployment = rendered.get("ringleader");
    let a = args(container(pod(&deployment), "ringleader"));
    let at = a.iter().position(|a| *a == "--service").expect("--service");
    let watched = a[at + 1];
    let service: Service = rendered
        .find(watched)
        .unwrap_or_else(|| panic!("--service {watched}: no such Service in the overlay"));
    let spec = service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    let set: StatefulSet = rendered.get("db");
    let set_spec = set.spec;
    assert_eq!(set_spec.service_name.as_deref(), Some(watched));
    assert!(labels_match(
        &spec.selector.unwrap_or_default(),
        &set_spec.template
    ));
    assert_eq!(args(container(pod(&deployment), "ringleader")), BASE_ARGS);
    assert_role_reads_the_watched_service(&rendered, watched);
}

/// The Role lets ringleader read the Service it watches (for the weights
/// annotation), pinned to that name: an overlay that changes `--service`
/// but not the Role would run with weight 1 for all.
fn assert_role_reads_the_watched_service(rendered: &Rendered, watched: &str) {
    let role: Role = rendered.get("ringleader");
    let rules = role.rules.unwrap_or_default();
    let names: Vec<String> = rules
        .iter()
        .filter(|r| r.resources.iter().flatten().any(|r| r == "services"))
        .flat_map(|r| r.resource_names.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, [watched], "the Role's services rule names --service");
}

#[test]
fn base_role_reads_the_watched_service_for_its_weights() {
    let base = render("kubernetes");
    let deployment: Deployment = base.get("ringleader");
    let a = args(container(pod(&deployment), "ringleader"));
    let at = a.iter().position(|a| *a == "--service").expect("--service");
    assert_role_reads_the_watched_service(&base, a[at + 1]);
}
