//! Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`.
//!
//! Only the unaggregated documents are served (APIVersions, APIGroupList, APIResourceList):
//! kubectl asks for aggregated discovery first and falls back to these when the answer's
//! Content-Type is plain `application/json`. OpenAPI v3 (`/openapi/v3` and a document per
//! group-version) lists each kind's PATCH operation and its query parameters, no schema: what
//! `kubectl apply` reads to learn that the server takes `fieldValidation` (it then sends it and
//! validates nothing on the client; the emulator accepts it and validates no field either).
//! `/openapi/v2` is not served (404).

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

/// The group-versions served, as OpenAPI v3 paths: `api/v1`, `apis/{group}/{version}`.
fn group_versions() -> Vec<(&'static str, &'static str, String)> {
    let mut seen = Vec::new();
    for r in RESOURCES {
        let path = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if !seen.iter().any(|(_, _, p)| *p == path) {
            seen.push((r.group, r.version, path));
        }
    }
    seen
}

/// `/openapi/v3`: each group-version and the URL of its document.
#[must_use]
pub fn openapi_root() -> Value {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_iter()
        .map(|(_, _, path)| {
            let url = format!("/openapi/v3/{path}?hash={GIT_VERSION}");
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, when served: each kind's
/// object path with its PATCH operation and the query parameters it takes.
#[must_use]
pub fn openapi_document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for r in served {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let scope = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", r.plural),
            json!({"patch": {
                "operationId": format!("patch{}", r.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
    }))
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
