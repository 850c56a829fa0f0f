//! The resource table: every kind the emulated API server serves, and how its URL looks.
//!
//! The store, discovery, the handlers and the table printer are generic over this table; a kind
//! is added by adding a row.

/// One served resource (a group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural name, as in the URL.
    pub plural: &'static str,
    /// Singular name, as discovery lists it.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`no`, `po`, `pv` ...).
    pub short_names: &'static [&'static str],
    /// Whether the resource has a `status` subresource (the main resource then ignores status
    /// changes, and `/status` changes only status).
    pub has_status: bool,
    /// The storage the objects are kept in: two resources with the same storage are two views
    /// of one set of objects (core/v1 and events.k8s.io/v1 Events).
    pub storage: &'static str,
}

impl Resource {
    /// `apiVersion` of the objects: `v1` or `group/version`.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this is the events.k8s.io view of Events.
    #[must_use]
    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io"
    }
}

const fn row(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    has_status: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        has_status,
        storage: plural,
    }
}

/// Every served resource, core group first (kubectl prefers the first group that has a name).
pub const RESOURCES: &[Resource] = &[
    row(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        true,
    ),
    row("", "nodes", "node", "Node", false, &["no"], true),
    row("", "pods", "pod", "Pod", true, &["po"], true),
    row(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        true,
    ),
    row(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    row("", "events", "event", "Event", true, &["ev"], false),
    row(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    row("", "secrets", "secret", "Secret", true, &[], false),
    row(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
    ),
    row("", "services", "service", "Service", true, &["svc"], true),
    row(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    row(
        "storage.k8s.io",
        "volumeattachments",
        "volumeattachment",
        "VolumeAttachment",
        false,
        &[],
        true,
    ),
    row(
        "storage.k8s.io",
        "csinodes",
        "csinode",
        "CSINode",
        false,
        &[],
        false,
    ),
    row(
        "events.k8s.io",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        false,
    ),
    row(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
    ),
    row(
        "policy",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    row(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
    ),
];

/// The resource served at `group`/`version`/`plural`.
#[must_use]
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The storage resource (the view objects are kept in) of a plural name.
#[must_use]
pub fn storage(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

/// The API groups other than core, in discovery order.
#[must_use]
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for resource in RESOURCES {
        if !resource.group.is_empty() && !groups.contains(&resource.group) {
            groups.push(resource.group);
        }
    }
    groups
}
