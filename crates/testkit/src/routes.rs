//! The HTTP API: one table of routes, generic over registered kinds.
//!
//! ```text
//! /api/{version}[/namespaces/{namespace}]/{plural}[/{name}]
//! /apis/{group}/{version}[/namespaces/{namespace}]/{plural}[/{name}]
//! ```
//!
//! Collections answer GET (list, or watch with `watch=true`) and POST;
//! items answer GET, PUT and DELETE. Every failure is a `Status` object.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, Uri};
use serde_json::{Value, json};

use crate::Verb;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiStatus;
use crate::store::{Filter, KindId, ObjectKey, str_at};
use crate::watch::{WatchRequest, WatchStart, wait_for_resource_version, watch_response};

type AppState = Arc<Shared>;
type Params = HashMap<String, String>;
type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The router, as a table.
pub(crate) fn app(shared: AppState) -> Router {
    let collection = || {
        get(collection_get)
            .post(collection_post)
            .fallback(method_not_allowed)
    };
    let item = || {
        get(item_get)
            .put(item_put)
            .delete(item_delete)
            .fallback(method_not_allowed)
    };
    Router::new()
        // TokenReview is not an object that is stored: it answers a create.
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(token_review).fallback(method_not_allowed),
        )
        .route("/api/{version}/{plural}", collection())
        .route("/api/{version}/{plural}/{name}", item())
        .route(
            "/api/{version}/namespaces/{namespace}/{plural}",
            collection(),
        )
        .route(
            "/api/{version}/namespaces/{namespace}/{plural}/{name}",
            item(),
        )
        .route("/apis/{group}/{version}/{plural}", collection())
        .route("/apis/{group}/{version}/{plural}/{name}", item())
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            collection(),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            item(),
        )
        .fallback(not_found)
        .with_state(shared)
}

/// What a URL names.
struct Target {
    kind: KindId,
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    /// Resolves the target and lets the request through the server's
    /// faults and counters for `verb` (what every single-verb route does
    /// first).
    fn admitted(
        shared: &Shared,
        params: &Params,
        uri: &Uri,
        verb: Verb,
    ) -> Result<Self, ApiStatus> {
        let target = Self::resolve(shared, params)?;
        let kind = shared.kind(target.kind);
        shared.admit(
            verb,
            &path_of(uri),
            Some(&kind),
            target.namespace.as_deref(),
        )?;
        Ok(target)
    }

    fn resolve(shared: &Shared, params: &Params) -> Result<Self, ApiStatus> {
        let param = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let not_found =
            || ApiStatus::from_code(404, "the server could not find the requested resource");
        let kind = shared
            .store()
            .find_kind(param("group"), param("version"), param("plural"))
            .ok_or_else(not_found)?;
        let namespaced = shared.kind(kind).namespaced;
        let namespace = params.get("namespace").cloned();
        let name = params.get("name").cloned();
        // A namespaced kind's items live under a namespace; a cluster-scoped
        // kind has no namespaced URLs. Listing a namespaced kind across all
        // namespaces is fine.
        if (namespaced && namespace.is_none() && name.is_some())
            || (!namespaced && namespace.is_some())
        {
            return Err(not_found());
        }
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }

    fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind,
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
        }
    }
}

fn query_map(query: QueryParams) -> Result<HashMap<String, String>, ApiStatus> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiStatus::bad_request(format!("invalid query: {e}")))
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

fn parse_flag(query: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiStatus> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(ApiStatus::bad_request(format!(
            "invalid value for {name}: {other:?}"
        ))),
    }
}

fn parse_number(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiStatus> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ApiStatus::bad_request(format!("invalid value for {name}: {text:?}"))),
    }
}

fn parse_resource_version(text: &str) -> Result<u64, ApiStatus> {
    text.parse()
        .map_err(|_| ApiStatus::bad_request(format!("invalid resource version: {text:?}")))
}

fn filter_of(target: &Target, query: &HashMap<String, String>) -> Result<Filter, ApiStatus> {
    Ok(Filter {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?,
    })
}

async fn collection_get(
    State(shared): State<AppState>,
    Path(params): Path<Params>,
    uri: Uri,
    query: QueryParams,
) -> Response {
    let result = async {
        let target = Target::resolve(&shared, &params)?;
        let query = query_map(query)?;
        let kind = shared.kind(target.kind);
        let watching = parse_flag(&query, "watch")?.unwrap_or(false);
        let verb = if watching { Verb::Watch } else { Verb::List };
        shared.admit(
            verb,
            &path_of(&uri),
            Some(&kind),
            target.namespace.as_deref(),
        )?;
        if watching {
            let request = watch_request(&shared, &target, &query)?;
            Ok(watch_response(shared.clone(), request))
        } else {
            list(&shared, &target, &query)
                .await
                .map(IntoResponse::into_response)
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A continue token: the snapshot's resourceVersion and the last key sent,
/// hex-encoded JSON (opaque to clients, as the real one is).
fn encode_continue(rv: u64, last: &ObjectKey) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}", last.namespace, last.name)});
    token
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiStatus> {
    let invalid = || ApiStatus::bad_request(format!("continue key is not valid: {token:?}"));
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let decoded: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let rv = decoded
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(invalid)?;
    let start = decoded
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (namespace, name) = start.split_once('/').ok_or_else(invalid)?;
    Ok((rv, namespace.to_owned(), name.to_owned()))
}

/// LIST, with the resourceVersion semantics of the real server:
/// unset = most recent, `0` = any (we serve the most recent), `N` with
/// `NotOlderThan` = at least N (waiting briefly, then 504 if N is in the
/// future), `N` with `Exact` (or with `limit` and no match) = exactly N
/// (410 when compacted). Pages carry a continue token bound to the first
/// page's snapshot.
async fn list(
    shared: &Arc<Shared>,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<axum::Json<Value>, ApiStatus> {
    let filter = filter_of(target, query)?;
    let limit = parse_number(query, "limit")?.unwrap_or(0);
    let continue_token = query.get("continue").filter(|c| !c.is_empty());
    let resource_version = query.get("resourceVersion").filter(|rv| !rv.is_empty());
    let version_match = query
        .get("resourceVersionMatch")
        .map(String::as_str)
        .filter(|m| !m.is_empty());
    if !matches!(version_match, None | Some("NotOlderThan" | "Exact")) {
        return Err(ApiStatus::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {version_match:?}: supported values: \"Exact\", \"NotOlderThan\""
        )));
    }
    if version_match.is_some() && resource_version.is_none() {
        return Err(ApiStatus::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if continue_token.is_some() && resource_version.is_some_and(|rv| rv != "0") {
        return Err(ApiStatus::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }

    let (at, start_after) = if let Some(token) = continue_token {
        let (rv, namespace, name) = decode_continue(token)?;
        (Some(rv), Some((namespace, name)))
    } else {
        match resource_version.map(String::as_str) {
            None | Some("0") => {
                if version_match == Some("Exact") {
                    return Err(ApiStatus::bad_request(
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                (None, None)
            }
            Some(text) => {
                let rv = parse_resource_version(text)?;
                let exact =
                    version_match == Some("Exact") || (version_match.is_none() && limit > 0);
                if !wait_for_resource_version(shared, rv).await {
                    let current = shared.store().resource_version();
                    return Err(ApiStatus::too_large_resource_version(rv, current));
                }
                (exact.then_some(rv), None)
            }
        }
    };

    let store = shared.store();
    let kind = store.kind(target.kind).clone();
    let snapshot_rv = at.unwrap_or_else(|| store.resource_version());
    let objects = store.snapshot(target.kind, &filter, at).map_err(|e| {
        if continue_token.is_some() {
            ApiStatus::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            )
        } else {
            e
        }
    })?;
    drop(store);
    let start = match &start_after {
        Some((namespace, name)) => objects.partition_point(|(key, _)| {
            (key.namespace.as_str(), key.name.as_str()) <= (namespace.as_str(), name.as_str())
        }),
        None => 0,
    };
    let remaining = &objects[start..];
    let page = if limit > 0 {
        &remaining[..remaining
            .len()
            .min(usize::try_from(limit).unwrap_or(usize::MAX))]
    } else {
        remaining
    };
    let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
    if page.len() < remaining.len()
        && let Some((last, _)) = page.last()
    {
        metadata["continue"] = json!(encode_continue(snapshot_rv, last));
        if query.get("labelSelector").is_none_or(String::is_empty)
            && query.get("fieldSelector").is_none_or(String::is_empty)
        {
            metadata["remainingItemCount"] = json!(remaining.len() - page.len());
        }
    }
    let items: Vec<Value> = page
        .iter()
        .map(|(_, object)| {
            // Items of a typed list carry no kind/apiVersion on the wire.
            let mut item = object.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    Ok(axum::Json(json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    })))
}

fn watch_request(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<WatchRequest, ApiStatus> {
    let filter = filter_of(target, query)?;
    let bookmarks = parse_flag(query, "allowWatchBookmarks")?.unwrap_or(false);
    let send_initial_events = parse_flag(query, "sendInitialEvents")?;
    let version_match = query
        .get("resourceVersionMatch")
        .map(String::as_str)
        .filter(|m| !m.is_empty());
    let resource_version = query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|rv| !rv.is_empty());
    let timeout = parse_number(query, "timeoutSeconds")?
        .map_or(shared.settings.default_watch_timeout, Duration::from_secs);
    let start = match send_initial_events {
        Some(send) => {
            if version_match != Some("NotOlderThan") {
                return Err(ApiStatus::with_reason(
                    422,
                    "Invalid",
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if send && !bookmarks {
                return Err(ApiStatus::with_reason(
                    422,
                    "Invalid",
                    "allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is true",
                ));
            }
            let not_older_than = match resource_version {
                None | Some("0") => None,
                Some(text) => Some(parse_resource_version(text)?),
            };
            if send {
                WatchStart::InitialEvents {
                    end_bookmark: true,
                    not_older_than,
                }
            } else {
                WatchStart::FromCurrent { not_older_than }
            }
        }
        None => {
            if version_match.is_some() {
                return Err(ApiStatus::with_reason(
                    422,
                    "Invalid",
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            match resource_version {
                None | Some("0") => WatchStart::InitialEvents {
                    end_bookmark: false,
                    not_older_than: None,
                },
                Some(text) => WatchStart::From(parse_resource_version(text)?),
            }
        }
    };
    Ok(WatchRequest {
        kind: target.kind,
        filter,
        start,
        bookmarks,
        timeout,
    })
}

fn parse_body(body: &Bytes) -> Result<Value, ApiStatus> {
    serde_json::from_slice(body).map_err(|e| {
        ApiStatus::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

async fn collection_post(
    State(shared): State<AppState>,
    Path(params): Path<Params>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = (|| {
        let target = Target::admitted(&shared, &params, &uri, Verb::Create)?;
        let object = parse_body(&body)?;
        let namespace = target.namespace.clone().unwrap_or_default();
        let created = shared.write(|store| store.create(target.kind, &namespace, object))?;
        Ok::<_, ApiStatus>((StatusCode::CREATED, axum::Json(created)).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn item_get(
    State(shared): State<AppState>,
    Path(params): Path<Params>,
    uri: Uri,
) -> Response {
    let result = (|| {
        let target = Target::admitted(&shared, &params, &uri, Verb::Get)?;
        let object = shared.store().get(&target.key())?;
        Ok::<_, ApiStatus>(axum::Json(object).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn item_put(
    State(shared): State<AppState>,
    Path(params): Path<Params>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = (|| {
        let target = Target::admitted(&shared, &params, &uri, Verb::Update)?;
        let object = parse_body(&body)?;
        let key = target.key();
        let updated =
            shared.write(|store| store.update(key.kind, &key.namespace, &key.name, object))?;
        Ok::<_, ApiStatus>(axum::Json(updated).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn item_delete(
    State(shared): State<AppState>,
    Path(params): Path<Params>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = (|| {
        let target = Target::admitted(&shared, &params, &uri, Verb::Delete)?;
        let options = if body.is_empty() {
            Value::Null
        } else {
            parse_body(&body)?
        };
        let precondition_rv = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str);
        let precondition_uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str);
        let key = target.key();
        let kind = shared.kind(target.kind);
        let deleted =
            shared.write(|store| store.delete(&key, precondition_rv, precondition_uid))?;
        Ok::<_, ApiStatus>(
            axum::Json(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": key.name,
                    "group": kind.group,
                    "kind": kind.plural,
                    "uid": str_at(&deleted, "/metadata/uid"),
                },
            }))
            .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: authenticates
/// `spec.token` against the tokens the test registered
/// ([`TestApiServer::add_token`](crate::TestApiServer::add_token)).
async fn token_review(State(shared): State<AppState>, uri: Uri, body: Bytes) -> Response {
    let result = (|| {
        shared.admit(Verb::Create, &path_of(&uri), None, None)?;
        if let Some(code) = shared.reviews().failure {
            return Err(ApiStatus::from_code(
                code,
                "Internal error occurred: the authenticator is unavailable (injected by the test server)",
            ));
        }
        let review = parse_body(&body)?;
        if str_at(&review, "/kind") != "TokenReview" {
            return Err(ApiStatus::bad_request(
                "the body is not an authentication.k8s.io/v1 TokenReview",
            ));
        }
        let token = str_at(&review, "/spec/token").to_owned();
        if token.is_empty() {
            return Err(ApiStatus::with_reason(
                422,
                "Invalid",
                "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
            ));
        }
        let user = shared.reviews().tokens.get(&token).cloned();
        let status = match user {
            Some(user) => json!({
                "authenticated": true,
                "user": {
                    "username": user.username,
                    "uid": format!("uid-{}", user.username.len()),
                    "groups": user.groups,
                },
                "audiences": ["https://kubernetes.default.svc.cluster.local"],
            }),
            None => json!({
                "user": {},
                "error": "[invalid bearer token, service account token is not valid]",
            }),
        };
        Ok::<_, ApiStatus>(
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "kind": "TokenReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "spec": review.get("spec").cloned().unwrap_or(Value::Null),
                    "status": status,
                })),
            )
                .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn method_not_allowed(uri: Uri, method: http::Method) -> Response {
    ApiStatus::from_code(
        405,
        format!(
            "the test server does not support {method} on {}",
            uri.path()
        ),
    )
    .into_response()
}

async fn not_found() -> Response {
    ApiStatus::from_code(404, "the server could not find the requested resource").into_response()
}
