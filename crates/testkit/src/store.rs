//! The object store: every object of every kind, one global resourceVersion
//! counter (as etcd's revision), and the retained history of changes that
//! watches replay.
//!
//! Objects are `serde_json::Value`s; the store owns the server-set metadata
//! (`resourceVersion`, `uid`, `creationTimestamp`, `generation`). History
//! holds every event with a resourceVersion above `compacted`, together with
//! the object as it was before, so the state at any retained resourceVersion
//! can be rebuilt (consistent paged lists, `resourceVersionMatch=Exact`).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value, json};

use crate::ResourceKind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiStatus;

/// Index of a registered kind in [`Store::kinds`].
pub(crate) type KindId = usize;

/// Where an object lives: kind, namespace (empty when cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub(crate) kind: KindId,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as retained for watches.
#[derive(Clone, Debug)]
pub(crate) struct HistoryEvent {
    pub(crate) rv: u64,
    pub(crate) key: ObjectKey,
    pub(crate) event_type: EventType,
    /// The object after the change (for a delete: the last state, stamped
    /// with the delete's resourceVersion, as the real server sends it).
    pub(crate) object: Value,
    /// The object before the change, `None` for a create.
    pub(crate) previous: Option<Value>,
}

/// Which objects a list or watch is about.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Filter {
    pub(crate) fn matches(&self, key: &ObjectKey, object: &Value) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == key.namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// What a watch gets from the history since its cursor.
pub(crate) enum Since<'a> {
    /// Events after the cursor (possibly none).
    Events(Vec<&'a HistoryEvent>),
    /// The cursor is older than the retained history.
    Expired { compacted: u64 },
}

/// The whole state of the fake API server.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) kinds: Vec<ResourceKind>,
    rv: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<HistoryEvent>,
    /// Every event with a resourceVersion above this is in `history`.
    compacted: u64,
    /// History beyond this many events is compacted automatically.
    history_limit: usize,
    next_uid: u64,
    /// Incremented by each restart; part of uids so they stay unique.
    incarnation: u64,
}

impl Store {
    pub(crate) fn new(kinds: Vec<ResourceKind>, history_limit: usize) -> Self {
        Self {
            kinds,
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            history_limit: history_limit.max(1),
            next_uid: 1,
            incarnation: 0,
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    #[cfg(test)]
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn kind(&self, id: KindId) -> &ResourceKind {
        &self.kinds[id]
    }

    pub(crate) fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.plural == plural)
    }

    pub(crate) fn find_kind_by_type(&self, api_version: &str, kind: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.api_version() == api_version && k.kind == kind)
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Result<Value, ApiStatus> {
        self.objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiStatus::not_found(self.kind(key.kind), &key.name))
    }

    /// Creates an object; `generateName` is honoured when `name` is empty.
    pub(crate) fn create(
        &mut self,
        kind: KindId,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiStatus> {
        self.check_type(kind, &mut object)?;
        let mut name = str_at(&object, "/metadata/name").to_owned();
        if name.is_empty() {
            let prefix = str_at(&object, "/metadata/generateName").to_owned();
            if prefix.is_empty() {
                return Err(ApiStatus::with_reason(
                    422,
                    "Invalid",
                    format!(
                        "{} is invalid: metadata.name: Required value: name or generateName is required",
                        self.kind(kind).kind
                    ),
                ));
            }
            name = format!("{prefix}{}", self.uid_suffix());
        }
        let key = self.key_for(kind, namespace, &name, &object)?;
        if self.objects.contains_key(&key) {
            return Err(ApiStatus::already_exists(self.kind(kind), &name));
        }
        let rv = self.rv + 1;
        let uid = self.new_uid();
        let metadata = metadata_mut(&mut object);
        metadata.insert("name".into(), json!(name));
        if !key.namespace.is_empty() {
            metadata.insert("namespace".into(), json!(key.namespace));
        }
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.insert("generation".into(), json!(1));
        self.commit(key, EventType::Added, object.clone(), None, rv);
        Ok(object)
    }

    /// Replaces an object. A non-empty `metadata.resourceVersion` in the body
    /// is a precondition (409 Conflict when it is not the current one). An
    /// update that changes nothing is not written and sends no event, as
    /// on the real server.
    pub(crate) fn update(
        &mut self,
        kind: KindId,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, ApiStatus> {
        self.check_type(kind, &mut object)?;
        let body_name = str_at(&object, "/metadata/name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiStatus::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = self.key_for(kind, namespace, name, &object)?;
        let Some(current) = self.objects.get(&key) else {
            return Err(ApiStatus::not_found(self.kind(kind), name));
        };
        let precondition = str_at(&object, "/metadata/resourceVersion");
        let current_rv = str_at(current, "/metadata/resourceVersion");
        if !precondition.is_empty() && precondition != current_rv {
            return Err(ApiStatus::conflict(self.kind(kind), name));
        }
        let current = current.clone();
        let mut generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if without_metadata_and_status(&current) != without_metadata_and_status(&object) {
            generation += 1;
        }
        let metadata = metadata_mut(&mut object);
        metadata.insert("name".into(), json!(name));
        if !key.namespace.is_empty() {
            metadata.insert("namespace".into(), json!(key.namespace));
        }
        for field in ["uid", "creationTimestamp"] {
            if let Some(value) = current.pointer(&format!("/metadata/{field}")) {
                metadata.insert(field.into(), value.clone());
            }
        }
        metadata.insert("generation".into(), json!(generation));
        metadata.insert("resourceVersion".into(), json!(current_rv));
        if object == current {
            return Ok(current);
        }
        let rv = self.rv + 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        self.commit(key, EventType::Modified, object.clone(), Some(current), rv);
        Ok(object)
    }

    /// Deletes an object, with optional `resourceVersion` and `uid`
    /// preconditions. Returns the deleted object.
    pub(crate) fn delete(
        &mut self,
        key: &ObjectKey,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
    ) -> Result<Value, ApiStatus> {
        let Some(current) = self.objects.get(key) else {
            return Err(ApiStatus::not_found(self.kind(key.kind), &key.name));
        };
        if let Some(rv) = precondition_rv.filter(|rv| !rv.is_empty())
            && rv != str_at(current, "/metadata/resourceVersion")
        {
            return Err(ApiStatus::with_reason(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    self.kind(key.kind).qualified_name(),
                    key.name,
                    str_at(current, "/metadata/resourceVersion")
                ),
            ));
        }
        if let Some(uid) = precondition_uid.filter(|uid| !uid.is_empty())
            && uid != str_at(current, "/metadata/uid")
        {
            return Err(ApiStatus::with_reason(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    self.kind(key.kind).qualified_name(),
                    key.name,
                    str_at(current, "/metadata/uid")
                ),
            ));
        }
        let previous = current.clone();
        let rv = self.rv + 1;
        let mut object = previous.clone();
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        self.commit(
            key.clone(),
            EventType::Deleted,
            object.clone(),
            Some(previous),
            rv,
        );
        Ok(object)
    }

    /// Objects of `kind` matching `filter` at resourceVersion `at` (the
    /// current state when `at` is `None`), in key order.
    pub(crate) fn snapshot(
        &self,
        kind: KindId,
        filter: &Filter,
        at: Option<u64>,
    ) -> Result<Vec<(ObjectKey, Value)>, ApiStatus> {
        let in_kind = |key: &ObjectKey| key.kind == kind;
        let mut objects: BTreeMap<ObjectKey, Value> = self
            .objects
            .iter()
            .filter(|(key, _)| in_kind(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(at) = at {
            if at < self.compacted {
                return Err(ApiStatus::expired(format!(
                    "too old resource version: {at} ({})",
                    self.compacted
                )));
            }
            for event in self.history.iter().rev().take_while(|e| e.rv > at) {
                if !in_kind(&event.key) {
                    continue;
                }
                match &event.previous {
                    Some(previous) => objects.insert(event.key.clone(), previous.clone()),
                    None => objects.remove(&event.key),
                };
            }
        }
        Ok(objects
            .into_iter()
            .filter(|(key, object)| filter.matches(key, object))
            .collect())
    }

    /// History events after `cursor`, or `Expired` when some were compacted.
    pub(crate) fn since(&self, cursor: u64) -> Since<'_> {
        if cursor < self.compacted {
            return Since::Expired {
                compacted: self.compacted,
            };
        }
        let start = self.history.partition_point(|e| e.rv <= cursor);
        Since::Events(self.history.range(start..).collect())
    }

    /// Drops all history: a watch or a paged list from any older
    /// resourceVersion now gets 410 Expired.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Simulates an API server brought back on a fresh etcd restored from a
    /// backup: the same objects, restamped with resourceVersions from a new
    /// low counter, and no history.
    pub(crate) fn restart_with_new_history(&mut self) {
        self.incarnation += 1;
        let mut rv = 1;
        for object in self.objects.values_mut() {
            rv += 1;
            metadata_mut(object).insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.rv = rv;
        self.history.clear();
        self.compacted = rv;
    }

    fn commit(
        &mut self,
        key: ObjectKey,
        event_type: EventType,
        object: Value,
        previous: Option<Value>,
        rv: u64,
    ) {
        self.rv = rv;
        if event_type == EventType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push_back(HistoryEvent {
            rv,
            key,
            event_type,
            object,
            previous,
        });
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    /// Fills in or checks `apiVersion` and `kind`.
    fn check_type(&self, kind: KindId, object: &mut Value) -> Result<(), ApiStatus> {
        let resource = self.kind(kind);
        let Some(map) = object.as_object_mut() else {
            return Err(ApiStatus::bad_request("the body must be a JSON object"));
        };
        let api_version = resource.api_version();
        for (field, expected) in [("apiVersion", &api_version), ("kind", &resource.kind)] {
            match map.get(field).and_then(Value::as_str) {
                None | Some("") => {
                    map.insert(field.to_owned(), json!(expected));
                }
                Some(actual) if actual == expected => {}
                Some(actual) => {
                    return Err(ApiStatus::bad_request(format!(
                        "the API version in the data ({actual}) does not match the expected {field} ({expected})"
                    )));
                }
            }
        }
        if !map.get("metadata").is_none_or(Value::is_object) {
            return Err(ApiStatus::bad_request("metadata must be an object"));
        }
        if resource.kind == "ConfigMap" {
            check_configmap_size(map)?;
        }
        Ok(())
    }

    fn key_for(
        &self,
        kind: KindId,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<ObjectKey, ApiStatus> {
        let resource = self.kind(kind);
        let body_namespace = str_at(object, "/metadata/namespace");
        if resource.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
            return Err(ApiStatus::bad_request(format!(
                "the namespace of the provided object ({body_namespace}) does not match the namespace sent on the request ({namespace})"
            )));
        }
        Ok(ObjectKey {
            kind,
            namespace: if resource.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        })
    }

    fn new_uid(&mut self) -> String {
        let n = self.next_uid;
        self.next_uid += 1;
        format!(
            "00000000-0000-4000-{:04x}-{:012x}",
            self.incarnation & 0xffff,
            n
        )
    }

    fn uid_suffix(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next_uid * 7919 + self.rv;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }
}

/// A string at a JSON pointer, or "".
pub(crate) fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object)
        && let Some(map) = object.as_object_mut()
    {
        map.insert("metadata".to_owned(), json!({}));
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        _ => unreachable!("check_type ensured the object and its metadata are JSON objects"),
    }
}

fn without_metadata_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The current time as Kubernetes writes timestamps (`2026-11-25T10:30:00Z`).
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The real API server refuses a ConfigMap whose `data` and `binaryData`
/// (keys and values, binary values counted decoded) exceed 1 MiB.
fn check_configmap_size(map: &serde_json::Map<String, Value>) -> Result<(), ApiStatus> {
    const LIMIT: usize = 1 << 20;
    let mut size = 0;
    for (field, base64) in [("data", false), ("binaryData", true)] {
        for (key, value) in map
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let text = value.as_str().unwrap_or_default();
            let len = if base64 {
                let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
                (text.len() / 4 * 3).saturating_sub(padding)
            } else {
                text.len()
            };
            size += key.len() + len;
        }
    }
    if size > LIMIT {
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(ApiStatus::with_reason(
            422,
            "Invalid",
            format!(
                "ConfigMap \"{name}\" is invalid: []: Too long: must have at most {LIMIT} bytes"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(ResourceKind::defaults(), 1000)
    }

    fn config_map(name: &str, value: &str) -> Value {
        json!({"metadata": {"name": name}, "data": {"k": value}})
    }

    const CM: KindId = 2;

    #[test]
    fn create_stamps_server_metadata() {
        let mut store = store();
        let object = store.create(CM, "ns", config_map("a", "1")).unwrap();
        assert_eq!(object["kind"], "ConfigMap");
        assert_eq!(object["apiVersion"], "v1");
        assert_eq!(object["metadata"]["namespace"], "ns");
        assert_eq!(object["metadata"]["resourceVersion"], "2");
        assert_eq!(object["metadata"]["generation"], 1);
        assert!(!str_at(&object, "/metadata/uid").is_empty());
        assert!(str_at(&object, "/metadata/creationTimestamp").ends_with('Z'));
        assert_eq!(
            store
                .create(CM, "ns", config_map("a", "1"))
                .unwrap_err()
                .code,
            409
        );
    }

    #[test]
    fn update_checks_the_resource_version_precondition() {
        let mut store = store();
        store.create(CM, "ns", config_map("a", "1")).unwrap();
        let mut stale = config_map("a", "2");
        stale["metadata"]["resourceVersion"] = json!("1");
        let conflict = store.update(CM, "ns", "a", stale).unwrap_err();
        assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
        let mut fresh = config_map("a", "2");
        fresh["metadata"]["resourceVersion"] = json!("2");
        let updated = store.update(CM, "ns", "a", fresh).unwrap();
        assert_eq!(updated["metadata"]["resourceVersion"], "3");
        assert_eq!(updated["metadata"]["generation"], 2);
    }

    #[test]
    fn a_no_op_update_writes_nothing() {
        let mut store = store();
        store.create(CM, "ns", config_map("a", "1")).unwrap();
        let same = store.update(CM, "ns", "a", config_map("a", "1")).unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], "2");
        assert_eq!(store.resource_version(), 2);
    }

    #[test]
    fn snapshots_rebuild_old_states_until_compaction() {
        let mut store = store();
        store.create(CM, "ns", config_map("a", "1")).unwrap();
        store.create(CM, "ns", config_map("b", "1")).unwrap();
        store.update(CM, "ns", "a", config_map("a", "2")).unwrap();
        let key = ObjectKey {
            kind: CM,
            namespace: "ns".into(),
            name: "b".into(),
        };
        store.delete(&key, None, None).unwrap();
        let at = |rv| {
            store
                .snapshot(CM, &Filter::default(), Some(rv))
                .unwrap()
                .into_iter()
                .map(|(k, v)| format!("{}={}", k.name, v["data"]["k"].as_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(2), ["a=1"]);
        assert_eq!(at(3), ["a=1", "b=1"]);
        assert_eq!(at(4), ["a=2", "b=1"]);
        assert_eq!(at(5), ["a=2"]);
        store.compact();
        assert_eq!(
            store
                .snapshot(CM, &Filter::default(), Some(4))
                .unwrap_err()
                .code,
            410
        );
        assert!(matches!(store.since(4), Since::Expired { compacted: 5 }));
        assert!(matches!(store.since(5), Since::Events(e) if e.is_empty()));
    }

    #[test]
    fn restart_restamps_objects_from_a_low_counter() {
        let mut store = store();
        for i in 0..5 {
            store
                .create(CM, "ns", config_map(&format!("c{i}"), "1"))
                .unwrap();
        }
        store.update(CM, "ns", "c0", config_map("c0", "2")).unwrap();
        assert_eq!(store.resource_version(), 7);
        store.restart_with_new_history();
        assert_eq!(store.resource_version(), 6);
        assert!(matches!(store.since(2), Since::Expired { .. }));
    }

    #[test]
    fn history_limit_compacts_automatically() {
        let mut store = Store::new(ResourceKind::defaults(), 2);
        for i in 0..4 {
            store
                .create(CM, "ns", config_map(&format!("c{i}"), "1"))
                .unwrap();
        }
        assert_eq!(store.compacted(), 3);
        assert!(matches!(store.since(3), Since::Events(e) if e.len() == 2));
    }
}
