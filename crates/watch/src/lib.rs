//! Membership sources for ringleader: the EndpointSlices of one Service,
//! from Kubernetes or from a file, turned into a stream of member sets.
//!
//! The crate knows nothing of rings. It answers one question — *who are the
//! members of this Service right now?* — and reports how sure it is:
//!
//! * [`members_from_slices`] derives a [`MemberSet`] from EndpointSlices:
//!   identity, conditions, the merge of an endpoint that several slices carry
//!   (see [`membership`] for the rules);
//! * [`parse_endpoint_slices`] reads EndpointSlices as `kubectl get
//!   endpointslices -o yaml|json` prints them, with line and column on error
//!   ([`parse_objects`] also the Service beside them);
//! * [`Weights`] reads member weights from the Service's
//!   `ringleader.io/weights` annotation (see [`weights`]);
//! * [`KubernetesSource`] follows a Service's slices with kube-rs' watcher,
//!   recovering from every API failure; [`FileSource`] follows a file.
//!
//! Both sources produce the same [`MembershipStream`] of [`SourceEvent`]s:
//! a member set (with weights) whenever it differs from the last one
//! emitted, the source's [`SourceHealth`] whenever it changes, and a
//! warning when something short of a failure stands (a malformed weights
//! annotation). Consumers do not care which
//! source they have. The stream never ends on its own; dropping it stops the
//! source.

mod file;
mod kubernetes;
mod member;
pub mod membership;
mod parse;
pub mod weights;

use std::time::SystemTime;

use futures::stream::BoxStream;

pub use file::FileSource;
pub use kubernetes::KubernetesSource;
pub use member::{Member, MemberId, MemberPort, MemberSet};
pub use membership::{
    MembershipError, SERVICE_NAME_LABEL, SliceProblem, member_id, members_from_slices,
};
pub use parse::{
    ItemCache, ParseError, ParsedObjects, parse_endpoint_slices, parse_objects,
    parse_objects_cached,
};
pub use weights::{MAX_WEIGHT, WEIGHTS_ANNOTATION, Weights, WeightsError};

/// Re-exported so callers can name the slice type without a k8s-openapi
/// version of their own.
pub use k8s_openapi::api::discovery::v1::EndpointSlice;

/// What a source emits.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// The full member set; sent only when it differs from the last one sent.
    Members(MemberSet),
    /// The source's health; sent only when it changes.
    Health(SourceHealth),
    /// A problem that leaves the member set current but something in it
    /// stale — the Service's weights annotation is malformed, or the Role
    /// may not read the Service — or `None` once it is gone; sent only when
    /// it changes. For status pages and metrics, next to the health.
    Warning(Option<String>),
}

/// How much a source's last member set can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceHealth {
    /// No member set yet: the first list or read is under way.
    Starting,
    /// The member set reflects the source as of now.
    Synced,
    /// The source is catching up (a re-list after the API server lost our
    /// place); the last member set stands meanwhile.
    Resyncing {
        /// What made it re-sync.
        reason: String,
    },
    /// The source keeps failing; the last member set (if any) stands.
    Failing {
        /// The latest error, with what to do about it when known.
        error: String,
        /// When this run of failures began.
        since: SystemTime,
    },
}

impl SourceHealth {
    /// Whether the last member set reflects the source (for readiness).
    pub fn is_synced(&self) -> bool {
        matches!(self, SourceHealth::Synced)
    }
}

/// The stream every source produces.
pub type MembershipStream = BoxStream<'static, SourceEvent>;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not EndpointSlices.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The EndpointSlices are invalid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The Service's weights annotation is malformed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The text holds several Services and none is singled out.
    #[error(
        "the text holds several Services ({0}); give one Service (or name the one whose weights count)"
    )]
    SeveralServices(String),
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Reads EndpointSlices (and the Service, if there) from text and derives
/// the member set, keeping only the slices of `service` when given (by the
/// `kubernetes.io/service-name` label) and that Service. Weights come from
/// the Service's `ringleader.io/weights` annotation ([`weights`]); with no
/// Service in the text every member has weight 1. What the file source does
/// on every change, and what a preview endpoint can call directly.
///
/// A malformed annotation refuses the whole text, as an invalid slice does.
pub fn members_from_text(text: &str, service: Option<&str>) -> Result<MemberSet, Error> {
    members_from_objects(parse_objects(text)?, service)
}

/// [`members_from_text`] for a text read again as it changes, with the
/// items read before taken from `cache` ([`ItemCache`]): what the file
/// source calls.
pub fn members_from_text_cached(
    text: &str,
    service: Option<&str>,
    cache: &mut ItemCache,
) -> Result<MemberSet, Error> {
    members_from_objects(parse_objects_cached(text, cache)?, service)
}

fn members_from_objects(objects: ParsedObjects, service: Option<&str>) -> Result<MemberSet, Error> {
    let ParsedObjects {
        mut slices,
        mut services,
    } = objects;
    if let Some(service) = service {
        slices.retain(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|name| name == service)
        });
        services.retain(|s| s.metadata.name.as_deref() == Some(service));
    } else if let Some(label) = slices
        .iter()
        .find_map(|s| s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL))
    {
        // The slices say whose they are: only that Service's weights count.
        let label = label.clone();
        services.retain(|s| s.metadata.name.as_deref() == Some(label.as_str()));
    }
    let weights = match services.as_slice() {
        [] => Weights::default(),
        [one] => Weights::of_service(one)?,
        several => {
            let names: Vec<String> = several.iter().map(weights::service_label).collect();
            return Err(Error::SeveralServices(names.join(", ")));
        }
    };
    Ok(weights.apply(members_from_slices(&slices)?))
}
