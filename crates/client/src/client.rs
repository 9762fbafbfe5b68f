//! The HTTP client of the coordinator's API (DESIGN §6).

use crate::api::{
    HealthResponse, LookupBatchRequest, LookupBatchResponse, LookupResponse, MemberRangesResponse,
    MoveDoneResponse, PlanResponse, PreviewRequest, PreviewResponse, RingResponse, StatusResponse,
    WatchEvent, WorkResponse,
};
use crate::error::{Error, Result};
use crate::sse::{SseEvent, SseParser};
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a plain request (not the watch stream) may take, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one coordinator.
///
/// Cheap to clone: clones share the connection pool and the `ETag` cache of
/// [`Client::ring`]. A bearer token set with [`Client::with_token`] is sent
/// on every request: writes always need it, reads when the coordinator
/// authenticates them.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<Arc<str>>,
    timeout: Duration,
    /// The last `GET /v1/ring` answer and its `ETag`, per [`TokenForm`].
    ring_cache: Arc<Mutex<[Option<CachedRing>; 3]>>,
}

/// Which token list to ask `GET /v1/ring` for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenForm {
    /// None (`GET /v1/ring`).
    #[default]
    None,
    /// Every token with its owner as decimal strings (`?tokens=true`).
    Full,
    /// Each member's tokens as base64 of little-endian u64s
    /// (`?tokens=compact`): about a quarter of the size, what
    /// [`LocalRing`](crate::LocalRing) uses.
    Compact,
}

#[derive(Clone)]
struct CachedRing {
    etag: HeaderValue,
    ring: RingResponse,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client of the coordinator at `base_url` (e.g.
    /// `http://ringleader.db.svc:8080`; a path prefix is kept).
    pub fn new(base_url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("not an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| Error::Http {
                url: base_url.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            ring_cache: Arc::default(),
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().trim().into());
        self
    }

    /// Sets how long a request may take (default [`DEFAULT_TIMEOUT`]); the
    /// watch stream has no overall limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The coordinator's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /v1/ring`, with every token when `tokens` is set.
    ///
    /// Sends the `ETag` of the previous answer as `If-None-Match`; on
    /// `304 Not Modified` the previous answer is returned again.
    pub async fn ring(&self, tokens: bool) -> Result<RingResponse> {
        self.ring_with(if tokens {
            TokenForm::Full
        } else {
            TokenForm::None
        })
        .await
    }

    /// `GET /v1/ring` with the token list in the given form (see
    /// [`Client::ring`] for the `ETag` handling).
    pub async fn ring_with(&self, form: TokenForm) -> Result<RingResponse> {
        let mut url = self.url(&["v1", "ring"]);
        match form {
            TokenForm::None => {}
            TokenForm::Full => {
                url.query_pairs_mut().append_pair("tokens", "true");
            }
            TokenForm::Compact => {
                url.query_pairs_mut().append_pair("tokens", "compact");
            }
        }
        let slot = form as usize;
        let cached = self.cache_lock()[slot].clone();
        let mut request = self.request(Method::GET, url.clone()).timeout(self.timeout);
        if let Some(cached) = &cached {
            request = request.header(IF_NONE_MATCH, cached.etag.clone());
        }
        let response = send(request, &url).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return match cached {
                Some(cached) => Ok(cached.ring),
                None => Err(Error::Api {
                    status: 304,
                    code: "not_modified".into(),
                    message: "304 Not Modified to a request without If-None-Match".into(),
                }),
            };
        }
        let etag = response.headers().get(ETAG).cloned();
        let ring: RingResponse = decode(response, &url).await?;
        self.cache_lock()[slot] = etag.map(|etag| CachedRing {
            etag,
            ring: ring.clone(),
        });
        Ok(ring)
    }

    /// `GET /v1/plan`: the pending plan, if any.
    pub async fn plan(&self) -> Result<PlanResponse> {
        self.get(self.url(&["v1", "plan"])).await
    }

    /// `GET /v1/status`: members with states, the endpoints outside the
    /// ring and why, the plan's progress and age.
    pub async fn status(&self) -> Result<StatusResponse> {
        self.get(self.url(&["v1", "status"])).await
    }

    /// `GET /v1/lookup?key=K[&rf=N]`: the owner and replicas of a key.
    pub async fn lookup(&self, key: &str, rf: Option<usize>) -> Result<LookupResponse> {
        let mut url = self.url(&["v1", "lookup"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("key", key);
            if let Some(rf) = rf {
                query.append_pair("rf", &rf.to_string());
            }
        }
        self.get(url).await
    }

    /// `POST /v1/lookup`: the same for many keys at once (at most 10,000).
    pub async fn lookup_batch<I, K>(
        &self,
        keys: I,
        rf: Option<usize>,
    ) -> Result<LookupBatchResponse>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let body = LookupBatchRequest {
            keys: keys.into_iter().map(Into::into).collect(),
            rf,
        };
        self.post(self.url(&["v1", "lookup"]), Some(&body)).await
    }

    /// `GET /v1/members/{id}/ranges`: what a member owns, receives and hands
    /// off.
    pub async fn member_ranges(&self, id: &str) -> Result<MemberRangesResponse> {
        self.get(self.url(&["v1", "members", id, "ranges"])).await
    }

    /// `GET /v1/members/{id}/work`: the moves this member should run now.
    pub async fn member_work(&self, id: &str) -> Result<WorkResponse> {
        self.get(self.url(&["v1", "members", id, "work"])).await
    }

    /// [`Client::member_work`] with `If-None-Match: etag`: `Ok(None)` when
    /// the work is what that `ETag` names (304), else the work and its new
    /// `ETag`. What a runner polls with.
    pub async fn member_work_since(
        &self,
        id: &str,
        etag: Option<&str>,
    ) -> Result<Option<(WorkResponse, Option<String>)>> {
        let url = self.url(&["v1", "members", id, "work"]);
        let mut request = self.request(Method::GET, url.clone()).timeout(self.timeout);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = send(request, &url).await?;
        if response.status() == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(None);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let work: WorkResponse = decode(response, &url).await?;
        Ok(Some((work, etag)))
    }

    /// `POST /v1/plan/moves/{id}/done`: reports a move finished.
    pub async fn move_done(&self, id: &str) -> Result<MoveDoneResponse> {
        self.post::<(), _>(self.url(&["v1", "plan", "moves", id, "done"]), None)
            .await
    }

    /// `POST /v1/preview`: the plan a member set would produce.
    pub async fn preview(&self, request: &PreviewRequest) -> Result<PreviewResponse> {
        self.post(self.url(&["v1", "preview"]), Some(request)).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<HealthResponse> {
        self.get(self.url(&["healthz"])).await
    }

    /// `GET /readyz`. A `503` that carries a [`HealthResponse`] is returned
    /// as `Ok`: its `status` says what is not ready
    /// ([`HealthResponse::is_ok`] tells).
    pub async fn ready(&self) -> Result<HealthResponse> {
        let url = self.url(&["readyz"]);
        let request = self.request(Method::GET, url.clone()).timeout(self.timeout);
        let response = send(request, &url).await?;
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let body = read_body(response, &url).await?;
            return serde_json::from_slice(&body).map_err(|_| Error::from_response(status, &body));
        }
        decode(response, &url).await
    }

    /// `GET /v1/watch`: the coordinator's Server-Sent Events, as
    /// `(event id, event)`, resuming after `last_event_id` when given.
    ///
    /// The stream ends when the server closes it; a failure to connect, a
    /// non-2xx answer or a broken connection is yielded as one error, and
    /// then the stream ends. An event whose data is not a [`WatchEvent`] is
    /// yielded as an error and the stream goes on. Reconnecting is the
    /// caller's choice ([`LocalRing::sync`](crate::LocalRing::sync) does it).
    pub fn watch(
        &self,
        last_event_id: Option<&str>,
    ) -> impl Stream<Item = Result<(String, WatchEvent)>> + Send + 'static {
        self.watch_activity(last_event_id)
            .filter_map(|item| futures::future::ready(item.transpose()))
    }

    /// [`Client::watch`], with an `Ok(None)` for every chunk of the body that
    /// completes no event (keep-alive comments): a sign of life for idle
    /// timeouts.
    pub(crate) fn watch_activity(
        &self,
        last_event_id: Option<&str>,
    ) -> impl Stream<Item = Result<Option<(String, WatchEvent)>>> + Send + 'static {
        let start = WatchState::Connect {
            client: self.clone(),
            last_event_id: last_event_id.map(str::to_owned),
        };
        stream::unfold(start, |state| async move {
            let mut state = state;
            loop {
                let (item, next) = state.step().await;
                match item {
                    Some(item) => return Some((item, next)),
                    None if matches!(next, WatchState::Done) => return None,
                    None => state = next,
                }
            }
        })
    }

    /// The URL of `segments` under the base URL, each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .expect("the base URL was checked to be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        let request = self.request(Method::GET, url.clone()).timeout(self.timeout);
        decode(send(request, &url).await?, &url).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        url: Url,
        body: Option<&B>,
    ) -> Result<T> {
        let mut request = self
            .request(Method::POST, url.clone())
            .timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        decode(send(request, &url).await?, &url).await
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, [Option<CachedRing>; 3]> {
        // A poisoned cache is still a valid cache: entries are replaced whole.
        self.ring_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sends a request; a transport failure becomes [`Error::Http`].
async fn send(request: RequestBuilder, url: &Url) -> Result<Response> {
    request.send().await.map_err(|source| Error::Http {
        url: url.to_string(),
        source,
    })
}

async fn read_body(response: Response, url: &Url) -> Result<Bytes> {
    response.bytes().await.map_err(|source| Error::Http {
        url: url.to_string(),
        source,
    })
}

/// Decodes a 2xx body as `T`; anything else becomes [`Error::Api`].
async fn decode<T: DeserializeOwned>(response: Response, url: &Url) -> Result<T> {
    let status = response.status();
    let body = read_body(response, url).await?;
    if !status.is_success() {
        return Err(Error::from_response(status, &body));
    }
    serde_json::from_slice(&body).map_err(|source| Error::Decode {
        url: url.to_string(),
        source,
    })
}

/// The watch stream's life: connect, then read events until the body ends.
enum WatchState {
    /// Not connected yet: the request goes out on the first poll.
    Connect {
        client: Client,
        last_event_id: Option<String>,
    },
    /// Reading the body. Events parsed from a chunk but not yet handed out
    /// wait in `ready`.
    Streaming {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        parser: SseParser,
        ready: VecDeque<SseEvent>,
        url: Url,
    },
    /// The body ended or failed: nothing more comes.
    Done,
}

impl WatchState {
    /// One step: maybe an item to hand out (`Ok(None)`: a chunk without a
    /// whole event), and the next state.
    async fn step(self) -> (Option<Result<Option<(String, WatchEvent)>>>, WatchState) {
        match self {
            WatchState::Connect {
                client,
                last_event_id,
            } => {
                let url = client.url(&["v1", "watch"]);
                let mut request = client
                    .request(Method::GET, url.clone())
                    .header(ACCEPT, "text/event-stream")
                    .header(CACHE_CONTROL, "no-cache");
                if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
                    request = request.header("Last-Event-ID", id);
                }
                let response = match send(request, &url).await {
                    Ok(response) => response,
                    Err(e) => return (Some(Err(e)), WatchState::Done),
                };
                let status = response.status();
                if !status.is_success() {
                    let error = match read_body(response, &url).await {
                        Ok(body) => Error::from_response(status, &body),
                        Err(e) => e,
                    };
                    return (Some(Err(error)), WatchState::Done);
                }
                let next = WatchState::Streaming {
                    body: response.bytes_stream().boxed(),
                    parser: SseParser::new(),
                    ready: VecDeque::new(),
                    url,
                };
                (None, next)
            }
            WatchState::Streaming {
                mut body,
                mut parser,
                mut ready,
                url,
            } => loop {
                if let Some(event) = ready.pop_front() {
                    let item = serde_json::from_str::<WatchEvent>(&event.data)
                        .map(|parsed| Some((event.id.clone(), parsed)))
                        .map_err(|source| Error::BadEvent {
                            id: event.id,
                            source,
                        });
                    let next = WatchState::Streaming {
                        body,
                        parser,
                        ready,
                        url,
                    };
                    return (Some(item), next);
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        ready.extend(parser.push(&chunk));
                        if ready.is_empty() {
                            let next = WatchState::Streaming {
                                body,
                                parser,
                                ready,
                                url,
                            };
                            return (Some(Ok(None)), next);
                        }
                    }
                    Some(Err(source)) => {
                        let error = Error::Http {
                            url: url.to_string(),
                            source,
                        };
                        return (Some(Err(error)), WatchState::Done);
                    }
                    None => return (None, WatchState::Done),
                }
            },
            WatchState::Done => (None, WatchState::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_escape_segments() {
        let client = Client::new("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!(
            client.url(&["v1", "members", "db 0/x", "ranges"]).as_str(),
            "http://127.0.0.1:8080/prefix/v1/members/db%200%2Fx/ranges"
        );
        let client = Client::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            client.url(&["v1", "ring"]).as_str(),
            "http://127.0.0.1:8080/v1/ring"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(matches!(
            Client::new("127.0.0.1:8080"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            Client::new("ftp://host/"),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client = Client::new("http://h/").unwrap().with_token("s3cret");
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
