//! The coordinator's HTTP API as Rust types: every request and response body.
//!
//! The server serializes these and the client deserializes them, so the two
//! cannot drift. Field names are the contract of DESIGN §6: fields may be
//! added, never renamed. Tokens travel as decimal strings, since JSON numbers
//! lose `u64` precision in many clients.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The ring's settings, as the coordinator runs with them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SettingsView {
    /// Replication factor.
    pub rf: usize,
    /// Token allocation: `balanced` or `hashed`.
    pub strategy: String,
    /// Tokens per unit of weight.
    pub tokens_per_member: u32,
    /// One replica per zone first.
    pub zone_aware: bool,
    /// `ack` (shards report moves done) or `auto` (plans commit at once).
    pub mode: String,
    /// At most this many moves in progress per member, sending or
    /// receiving (`--max-moves-per-member`); `null`: no limit.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_moves_per_member: Option<u32>,
    /// At most this many moves in progress in the cluster (`--max-moves`);
    /// `null`: no limit.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_moves: Option<u32>,
}

/// A member's state as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// In the ring and ready.
    Up,
    /// In the ring, but not ready, terminating or gone; its down-grace is
    /// running. It keeps its ranges until the grace ends.
    Down,
    /// Ready and about to join: waiting for the settle window, or receiving
    /// its ranges in an in-flight plan.
    Joining,
    /// Handing its ranges off in an in-flight plan.
    Leaving,
}

impl MemberState {
    /// The state's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Down => "down",
            MemberState::Joining => "joining",
            MemberState::Leaving => "leaving",
        }
    }
}

/// How the membership source is doing, as `/healthz`, `/readyz` and
/// `/v1/status` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// No member set yet.
    Starting,
    /// The member set is current.
    Synced,
    /// Re-listing after the watch expired or reconnected; the last member
    /// set stands meanwhile.
    Resyncing,
    /// Failing (see the detail); the last member set stands meanwhile.
    Failing,
    /// A follower: the source runs on the leader only.
    Standby,
}

impl SourceState {
    /// The state's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::Synced => "synced",
            SourceState::Resyncing => "resyncing",
            SourceState::Failing => "failing",
            SourceState::Standby => "standby",
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member in `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MemberView {
    /// Stable id (the pod name).
    pub id: String,
    /// State.
    pub state: MemberState,
    /// Zone, if known.
    pub zone: Option<String>,
    /// Addresses from the EndpointSlices.
    pub addresses: Vec<String>,
    /// Relative capacity.
    pub weight: u32,
    /// Fraction of the token space it owns as primary in the committed ring.
    pub ownership: f64,
    /// Fraction of all replicas it holds (equals `ownership` for rf 1).
    pub replica_ownership: f64,
    /// Tokens it has in the committed ring (0 while joining).
    #[serde(default)]
    pub tokens: usize,
    /// When a `down` member's grace ends and it leaves the ring, RFC 3339
    /// (UTC). Absent for members that are not down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ends_at: Option<String>,
}

/// A token and its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenView {
    /// The token, as a decimal string.
    pub token: String,
    /// Its owner.
    pub member: String,
}

/// One member's tokens in `GET /v1/ring?tokens=compact`: base64 (standard
/// alphabet, padded) of its tokens as little-endian `u64`s, ascending. A
/// quarter of the size of the decimal form, and parsed without any
/// number formatting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CompactTokens {
    /// The member.
    pub member: String,
    /// Base64 of 8 bytes (little-endian) per token.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub tokens: String,
}

impl CompactTokens {
    /// The tokens, or `None` when the text is not base64 of whole `u64`s.
    pub fn decode(&self) -> Option<Vec<u64>> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.tokens.as_bytes())
            .ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(c);
                    u64::from_le_bytes(word)
                })
                .collect(),
        )
    }

    /// Encodes a member's tokens.
    pub fn encode(member: impl Into<String>, tokens: &[u64]) -> Self {
        use base64::Engine as _;
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        Self {
            member: member.into(),
            tokens: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RingResponse {
    /// The committed placement's epoch.
    pub epoch: u64,
    /// Settings.
    pub settings: SettingsView,
    /// Members of the committed ring, and those joining.
    pub members: Vec<MemberView>,
    /// DESIGN §4 balance: the largest load / target in replica units (1.0
    /// is perfect).
    pub balance: f64,
    /// Every token, sorted, with `?tokens=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
    /// Each member's tokens, compactly, with `?tokens=compact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_tokens: Option<Vec<CompactTokens>>,
    /// Whether a plan is in flight.
    pub plan_in_flight: bool,
    /// The coordinator instance that leads (writes and plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// A token range `(start, end]`, decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RangeView {
    /// Exclusive start.
    pub start: String,
    /// Inclusive end.
    pub end: String,
}

/// `GET /v1/lookup?key=K[&rf=N]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LookupResponse {
    /// Epoch of the ring that answered.
    pub epoch: u64,
    /// The key as given.
    pub key: String,
    /// Its xxh3-64 token, decimal.
    pub token: String,
    /// The member owning it.
    pub owner: String,
    /// Its replicas, owner first.
    pub replicas: Vec<String>,
    /// The owning token's range.
    pub range: RangeView,
}

/// `POST /v1/lookup` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LookupBatchRequest {
    /// Keys to look up (at most 10,000).
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub keys: Vec<String>,
    /// Replicas wanted; defaults to the configured factor. More than the
    /// ring has members is a 409.
    #[serde(default, deserialize_with = "integral::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub rf: Option<usize>,
}

/// Integers that may arrive as JSON numbers with a zero fraction (`3.0` is
/// an integer to JSON Schema, and to many JSON encoders).
mod integral {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u64),
        Float(f64),
    }

    /// An optional integer of type `T`.
    pub(super) fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        use serde::de::Error as _;
        let Some(number) = Option::<Number>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let value = match number {
            Number::Int(n) => n,
            Number::Float(f)
                if f.fract() == 0.0 && (0.0..=9.007_199_254_740_992e15).contains(&f) =>
            {
                // Exact: integral and within f64's exact integer range.
                f as u64
            }
            Number::Float(f) => {
                return Err(D::Error::custom(format!(
                    "expected a non-negative integer, got {f}"
                )));
            }
        };
        T::try_from(value)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{value} is out of range")))
    }
}

/// `POST /v1/lookup` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LookupBatchResponse {
    /// Epoch of the ring that answered.
    pub epoch: u64,
    /// One result per key, in order.
    pub results: Vec<LookupResponse>,
}

/// A move as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MoveView {
    /// Stable id.
    pub id: String,
    /// The range.
    pub range: RangeView,
    /// Source member.
    pub from: String,
    /// Target member.
    pub to: String,
    /// `pending` (waiting its turn), `ready` (its target should stream it
    /// now), `done`, `cancelled` or `source_lost`.
    pub state: String,
}

/// A range a member may drop once the plan is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CleanupView {
    /// The member.
    pub member: String,
    /// The range.
    pub range: RangeView,
}

/// Data in and out of a member, fractions of the token space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FlowView {
    /// Received.
    pub inbound: f64,
    /// Sent.
    pub outbound: f64,
}

/// A plan's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SummaryView {
    /// Fraction of all replicas moved.
    pub moved_fraction: f64,
    /// The least any plan could move for this change.
    pub ideal_fraction: f64,
    /// Moves (not cancelled).
    pub moves: usize,
    /// Moves by state.
    pub states: BTreeMap<String, usize>,
    /// Per-member inbound and outbound.
    pub members: BTreeMap<String, FlowView>,
    /// How many waves the moves take at the pace (`--max-moves-per-member`,
    /// `--max-moves`) if every move took the same time — a simulation, as
    /// of when the plan was made or last replanned. Absent in `auto` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<usize>,
}

/// How far a plan has come: its moves that are not cancelled, by where they
/// stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProgressView {
    /// Moves done.
    pub done: usize,
    /// Moves in progress (`ready`: their targets stream them now).
    pub in_progress: usize,
    /// Moves waiting their turn (`pending`).
    pub waiting: usize,
    /// Moves whose every holder is gone (`source_lost`).
    pub source_lost: usize,
}

/// A plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PlanView {
    /// Plan id.
    pub id: String,
    /// Epoch it starts from.
    pub from_epoch: u64,
    /// Epoch it commits as.
    pub to_epoch: u64,
    /// `in_progress` or `committed`.
    pub state: String,
    /// Moves in token order.
    pub moves: Vec<MoveView>,
    /// Figures.
    pub summary: SummaryView,
    /// What members may drop once the plan is committed.
    pub cleanups: Vec<CleanupView>,
    /// Members after the plan, and their states.
    pub members: Vec<String>,
    /// When the plan from `from_epoch` was first made, RFC 3339 (UTC); kept
    /// across replans. Absent for plans stored by older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the plan last changed (made, revised, a move reported done),
    /// RFC 3339 (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// Moves done, in progress and waiting.
    #[serde(default)]
    pub progress: ProgressView,
}

/// `GET /v1/plan`: `{"plan": null}` when nothing is pending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PlanResponse {
    /// The plan, if any.
    pub plan: Option<PlanView>,
}

/// `GET /v1/members/{id}/ranges`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MemberRangesResponse {
    /// Committed epoch.
    pub epoch: u64,
    /// The member.
    pub member: String,
    /// Its state.
    pub state: MemberState,
    /// Ranges it owns as primary in the committed ring.
    pub owns: Vec<RangeView>,
    /// Ranges it holds a replica of (owner or not) in the committed ring.
    pub replicates: Vec<RangeView>,
    /// Moves in flight towards it.
    pub receiving: Vec<MoveView>,
    /// Moves in flight from it.
    pub handing_off: Vec<MoveView>,
    /// Ranges it may drop once the plan commits.
    pub cleanups: Vec<RangeView>,
}

/// A move a member should run now, with where to stream it from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkMove {
    /// The move (state `ready`).
    #[serde(flatten)]
    pub r#move: MoveView,
    /// The source's addresses, as its EndpointSlices give them (empty when
    /// the coordinator does not see it right now: retry later).
    pub source_addresses: Vec<String>,
}

/// `GET /v1/members/{id}/work`: the moves this member should run now, as
/// their target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkResponse {
    /// Committed epoch.
    pub epoch: u64,
    /// The member.
    pub member: String,
    /// The plan in progress, if any.
    pub plan: Option<String>,
    /// Moves to run now (`ready`, towards this member), in token order.
    /// A move that was listed and is no longer was done or cancelled:
    /// stop streaming it.
    pub moves: Vec<WorkMove>,
    /// Ids of the plan's moves towards this member that were cancelled (a
    /// replan no longer needs them, or the whole plan was cancelled): stop
    /// them if they run.
    pub cancelled: Vec<String>,
    /// Moves towards this member still waiting their turn (`pending`).
    pub waiting: usize,
}

/// `POST /v1/plan/moves/{id}/done` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MoveDoneResponse {
    /// The move, now done.
    #[serde(rename = "move")]
    pub move_: MoveView,
    /// Moves still open in the plan.
    pub remaining: usize,
    /// The committed epoch after this report (one more when it was the last).
    pub epoch: u64,
    /// Whether this report committed the plan.
    pub committed: bool,
}

/// A member in a preview request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PreviewMember {
    /// Id (unique in the request).
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub id: String,
    /// Zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Weight, default 1 (at most `--max-preview-weight`, 16 by default).
    #[serde(default, deserialize_with = "integral::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub weight: Option<u32>,
}

/// `POST /v1/preview` body: the member set to try, either as members or as
/// EndpointSlices (YAML or JSON text, as `kubectl get endpointslices -o yaml`
/// prints them). Exactly one of the two (the other absent or `null`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Members.
    #[serde(default)]
    pub members: Option<Vec<PreviewMember>>,
    /// EndpointSlices as text; only ready, non-terminating endpoints count.
    #[serde(default)]
    pub endpoint_slices: Option<String>,
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PreviewRequest {
    // Hand-written: "exactly one of" is a `oneOf`, which the derive cannot
    // say, and a tester generating bodies from the schema must not be told
    // that `{}` or both at once are valid.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
        };
        use utoipa::openapi::{Ref, RefOr, Schema};
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let members = ArrayBuilder::new()
            .items(Ref::from_schema_name("PreviewMember"))
            .min_items(Some(1))
            .max_items(Some(1024))
            .description(Some(
                "The members to try (ids unique; at most --max-preview-members, 1,024 by default; \
                 members × weight × tokens per member at most --max-preview-tokens)",
            ));
        let slices = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "EndpointSlices as YAML or JSON text; only ready, non-terminating endpoints count",
            ));
        let by_members = ObjectBuilder::new()
            .property("members", members)
            .property("endpoint_slices", null())
            .required("members")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        let by_slices = ObjectBuilder::new()
            .property("endpoint_slices", slices)
            .property("members", null())
            .required("endpoint_slices")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(by_members)
                .item(by_slices)
                .description(Some(
                    "The member set to try: `members`, or `endpoint_slices`; exactly one",
                ))
                .build(),
        ))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PreviewRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "PreviewMember".to_owned(),
            <PreviewMember as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// `POST /v1/preview` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PreviewResponse {
    /// The epoch the preview starts from.
    pub from_epoch: u64,
    /// Members of the resulting ring with their ownership.
    pub members: Vec<MemberView>,
    /// Balance of the resulting ring.
    pub balance: f64,
    /// The moves it would take and their figures.
    pub moves: Vec<MoveView>,
    /// Figures.
    pub summary: SummaryView,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HealthResponse {
    /// `ok`, or what is not ready.
    pub status: String,
    /// The membership source's state.
    pub source: SourceState,
    /// The source's last error, if failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_error: Option<String>,
    /// Whether the state store was read.
    pub state_loaded: bool,
    /// Committed epoch.
    pub epoch: u64,
    /// Who leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// Every error: `{"error": {"code": ..., "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `not_found`, `bad_request`.
    pub code: String,
    /// What happened and what to do about it.
    pub message: String,
}

/// A Server-Sent Event of `GET /v1/watch` (the `data` field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WatchEvent {
    /// `epoch` (a new committed epoch) or `plan` (the plan changed), or
    /// `state` (the current state, sent first and on resume), or `members`
    /// (member states or the endpoints outside the ring changed, no new
    /// epoch or plan; sent without an event id).
    pub kind: String,
    /// Committed epoch.
    pub epoch: u64,
    /// Plan revision: counts every change to the plan within the epoch.
    pub revision: u64,
    /// The plan, if one is pending (or was just committed in auto mode).
    pub plan: Option<PlanView>,
    /// Ids of the moves that became `ready` with this change: their
    /// targets should start them (`GET /v1/members/{id}/work` lists them
    /// with their sources' addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready: Vec<String>,
}

/// Why an endpoint the source sees is not (yet) a member of the committed
/// ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutsideReason {
    /// Not ready: it joins once it turns ready.
    NotReady,
    /// Terminating: it is on its way out and will not join.
    Terminating,
    /// Ready, waiting for the membership to be quiet for `--settle` before
    /// a plan takes it in.
    Settling,
    /// Ready and in the in-flight plan: receiving its ranges; it is in the
    /// ring once the plan commits.
    Joining,
    /// Ready, but no plan takes it in yet (planning failed, or every member
    /// was gone); see the coordinator's log.
    Waiting,
}

impl OutsideReason {
    /// The reason's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OutsideReason::NotReady => "not_ready",
            OutsideReason::Terminating => "terminating",
            OutsideReason::Settling => "settling",
            OutsideReason::Joining => "joining",
            OutsideReason::Waiting => "waiting",
        }
    }
}

/// An endpoint of the Service that the committed ring does not have.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutsideEndpoint {
    /// Stable id (the pod name).
    pub id: String,
    /// Why it is not in the ring.
    pub reason: OutsideReason,
    /// Zone, if known.
    pub zone: Option<String>,
    /// Addresses from the EndpointSlices.
    pub addresses: Vec<String>,
    /// With `settling`: seconds until the change is planned (at the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_in_seconds: Option<f64>,
}

/// A member in `GET /v1/status`: the `GET /v1/ring` fields and the time
/// left of a down member's grace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusMember {
    /// The member as `GET /v1/ring` shows it.
    #[serde(flatten)]
    pub member: MemberView,
    /// With `down`: seconds until its grace ends and it leaves the ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_left_seconds: Option<f64>,
}

/// The in-flight (or, in auto mode, last committed) plan in `GET /v1/status`:
/// its figures and progress, without the moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusPlan {
    /// Plan id.
    pub id: String,
    /// Epoch it starts from.
    pub from_epoch: u64,
    /// Epoch it commits as.
    pub to_epoch: u64,
    /// `in_progress` or `committed`.
    pub state: String,
    /// Figures and moves by state.
    pub summary: SummaryView,
    /// Moves done, of those not cancelled.
    pub done: usize,
    /// When it was made, RFC 3339 (UTC), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it last changed, RFC 3339 (UTC), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// Seconds since it was made, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// Seconds since it last changed, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<f64>,
}

/// `GET /v1/status`: one screen for operators, as `ringleader status`
/// prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusResponse {
    /// The committed placement's epoch.
    pub epoch: u64,
    /// Settings.
    pub settings: SettingsView,
    /// DESIGN §4 balance of the committed ring: the largest load / target
    /// in replica units (1.0 is perfect).
    pub balance: f64,
    /// Members of the committed ring, the in-flight plan and the pending
    /// change, with their states.
    pub members: Vec<StatusMember>,
    /// Endpoints the source sees that the committed ring does not have, and
    /// why.
    pub outside: Vec<OutsideEndpoint>,
    /// The plan, if any.
    pub plan: Option<StatusPlan>,
    /// With a change waiting for the settle window: seconds until it is
    /// planned (at the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_in_seconds: Option<f64>,
    /// The membership source's state (`standby` on a follower).
    pub source: SourceState,
    /// The source's last error or re-sync reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_detail: Option<String>,
    /// The coordinator instance that leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The coordinator's clock when it answered, RFC 3339 (UTC).
    pub now: String,
}

impl HealthResponse {
    /// Whether the coordinator says it is fine (`status` is `ok`).
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

impl RangeView {
    /// The range with its bounds parsed, or `None` when a bound is not a
    /// decimal `u64`.
    pub fn parse(&self) -> Option<(u64, u64)> {
        Some((self.start.parse().ok()?, self.end.parse().ok()?))
    }
}
