//! Resource kinds the test server serves.
//!
//! A kind is a small value: its API group and version, the plural name used
//! in URLs, the `kind` written into objects and whether it lives in
//! namespaces. Serving a new kind is one [`ResourceKind`] handed to
//! [`TestApiServerBuilder::resource`](crate::TestApiServerBuilder::resource);
//! the generic routes do the rest.

use std::any::TypeId;

/// One kind of object the test API server stores and serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group, empty for the core group (`v1` ConfigMaps, Pods).
    pub group: String,
    /// API version inside the group, such as `v1`.
    pub version: String,
    /// Plural resource name as it appears in URLs, such as `endpointslices`.
    pub plural: String,
    /// The `kind` field of one object, such as `EndpointSlice`.
    pub kind: String,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

impl ResourceKind {
    /// A namespaced kind.
    pub fn namespaced(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced: true,
        }
    }

    /// A cluster-scoped kind.
    pub fn cluster_scoped(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            namespaced: false,
            ..Self::namespaced(group, version, plural, kind)
        }
    }

    /// The kind of a k8s-openapi resource type, e.g.
    /// `ResourceKind::of::<EndpointSlice>()`.
    pub fn of<K>() -> Self
    where
        K: k8s_openapi::Resource,
        K::Scope: 'static,
    {
        Self {
            group: K::GROUP.to_owned(),
            version: K::VERSION.to_owned(),
            plural: K::URL_PATH_SEGMENT.to_owned(),
            kind: K::KIND.to_owned(),
            namespaced: TypeId::of::<K::Scope>()
                == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
        }
    }

    /// The `apiVersion` written into objects: `group/version`, or only the
    /// version for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The `kind` of a list of these objects (`EndpointSliceList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `plural.group` as the API server names a resource in messages
    /// (`endpointslices.discovery.k8s.io`, or `configmaps` for the core group).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kinds every server registers: EndpointSlices, Leases,
    /// ConfigMaps and Services (whose weights annotation the membership
    /// source reads).
    pub fn defaults() -> Vec<Self> {
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::core::v1::{ConfigMap, Service};
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        vec![
            Self::of::<EndpointSlice>(),
            Self::of::<Lease>(),
            Self::of::<ConfigMap>(),
            Self::of::<Service>(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_kinds_match_their_urls() {
        let kinds = ResourceKind::defaults();
        assert_eq!(
            kinds[0],
            ResourceKind::namespaced("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
        );
        assert_eq!(kinds[1].qualified_name(), "leases.coordination.k8s.io");
        assert_eq!(kinds[2].api_version(), "v1");
        assert_eq!(kinds[2].qualified_name(), "configmaps");
        assert_eq!(
            kinds[3],
            ResourceKind::namespaced("", "v1", "services", "Service")
        );
        assert!(kinds.iter().all(|k| k.namespaced));
    }
}
