//! Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`.
//!
//! Only the unaggregated documents are served (APIVersions, APIGroupList, APIResourceList):
//! kubectl asks for aggregated discovery first and falls back to these when the answer's
//! Content-Type is plain `application/json`. `/openapi/*` is not served (404); kubectl copes.

use serde_json::{Value, json};

use super::resource::{self, RESOURCES, Resource};

/// A subresource besides `status`, as discovery lists it.
struct Subresource {
    /// The resource it belongs to.
    resource: &'static str,
    name: &'static str,
    /// Group, version and kind of what it takes and answers.
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
}

/// Every subresource besides `status`.
const SUBRESOURCES: [Subresource; 1] = [Subresource {
    resource: "serviceaccounts",
    name: "token",
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    verbs: &["create"],
}];

/// The Kubernetes version the emulator reports.
const MINOR: &str = "33";
const GIT_VERSION: &str = "v1.33.4";

/// `/version`.
#[must_use]
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "74cdb426e2ee7aa8ac0ac79d98c2b6eb1b5e9e27",
        "gitTreeState": "clean",
        "buildDate": "2025-08-12T00:00:00Z",
        "goVersion": "go1.24.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
#[must_use]
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

fn group_document(group: &str) -> Value {
    let version = RESOURCES
        .iter()
        .find(|r| r.group == group)
        .map_or("v1", |r| r.version);
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

/// `/apis`.
#[must_use]
pub fn groups() -> Value {
    let groups: Vec<Value> = resource::groups().into_iter().map(group_document).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, when the group is served.
#[must_use]
pub fn group(name: &str) -> Option<Value> {
    resource::groups().contains(&name).then(|| {
        let mut document = group_document(name);
        document["kind"] = "APIGroup".into();
        document["apiVersion"] = "v1".into();
        document
    })
}

/// `/api/v1` or `/apis/{group}/{version}`, when served.
#[must_use]
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut list = Vec::new();
    for r in &served {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if r.plural == "pods" {
            entry["categories"] = json!(["all"]);
        }
        list.push(entry);
        if r.has_status {
            list.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        for sub in SUBRESOURCES.iter().filter(|sub| sub.resource == r.plural) {
            list.push(json!({
                "name": format!("{}/{}", sub.resource, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": sub.group,
                "version": sub.version,
                "kind": sub.kind,
                "verbs": sub.verbs,
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}
