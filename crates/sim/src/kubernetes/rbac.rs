//! Authorization, as the API server's: a member of `system:masters` may do anything; any other
//! user what the RBAC objects the emulator holds grant, evaluated as Kubernetes' RBAC authorizer
//! does (`plugin/pkg/auth/authorizer/rbac`, `pkg/registry/rbac/validation/rule.go`): the
//! ClusterRoles of the ClusterRoleBindings naming the user, then, for a request in a namespace,
//! the Roles and ClusterRoles of that namespace's RoleBindings naming it (a ServiceAccount
//! subject without a namespace is the binding's). A rule allows a request when its verbs, API
//! groups, resources and resource names match (`*` matches any; `pods/status` names a
//! subresource and `*/status` that subresource of any resource; no `resourceNames` matches any
//! name), or, for a request outside the API (`/version`, discovery), its `nonResourceURLs` (a
//! trailing `*` matches a prefix).
//!
//! A request's attributes come from its path and query as the API server's `RequestInfo`
//! derives them: a GET names `get` with an object name, else `list`, or `watch` with
//! `watch=true`; a `metadata.name` field selector names the object of a list or watch; a DELETE
//! without a name is `deletecollection`. A refusal is the API server's 403: `pods "p" is
//! forbidden: User "U" cannot delete resource "pods" in API group "" in the namespace "n"`
//! (`at the cluster scope` for cluster objects), reason `Forbidden`, details naming the object,
//! and after `: RBAC: ` the bindings whose role is missing.
//!
//! Like every API server the emulated one starts with the bootstrap roles a client meets:
//! `cluster-admin` (bound to `system:masters`), and `system:discovery`, `system:basic-user` and
//! `system:public-info-viewer` (bound to `system:authenticated`), so every user may read
//! discovery and `/version` and ask what it may do (`SelfSubjectAccessReview`, as `kubectl auth
//! can-i` sends it).

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::auth::{MASTERS, User};
use super::selector::Selector;
use super::store::{ApiError, Store, str_at};
use crate::fault;

/// What a request asks to do, as the API server's authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attributes {
    /// The verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection` for a resource request; the method in lower case for any other.
    pub verb: String,
    /// What a resource request names; none for a request outside the API's resources
    /// (discovery, `/version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceAttributes>,
    /// The request's path (what non-resource rules match).
    #[serde(skip)]
    path: String,
}

/// The resource a request names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceAttributes {
    /// API group, empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`, `token`), empty for none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// Namespace, empty for a cluster-wide request.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Object name, empty when the request names none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl ResourceAttributes {
    /// The resource as rules name it: `pods`, or `pods/status` for a subresource.
    #[must_use]
    pub fn rule_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Who sent a request, what it asked, and whether it was allowed: what the request log keeps of
/// each authenticated Kubernetes request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// The authenticated user.
    pub user: User,
    /// What the request asked.
    pub attributes: Attributes,
    /// Whether it was allowed (a refusal is answered 403).
    pub allowed: bool,
}

/// An authorizer's answer: whether allowed, and why (the binding that allowed it, or the
/// bindings that could not be evaluated).
pub(super) struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Attributes {
    /// The attributes of a request, as the API server's `RequestInfo` derives them from the
    /// method, path and query parameters.
    pub(super) fn of(method: &Method, path: &str, query: &[(String, String)]) -> Self {
        let mut attributes = Self {
            verb: method.as_str().to_lowercase(),
            resource: None,
            path: path.to_owned(),
        };
        let trimmed = path.trim_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        let (group, rest) = match parts.as_slice() {
            ["api", rest @ ..] if rest.len() >= 2 => ("", rest),
            ["apis", group, rest @ ..] if rest.len() >= 2 => (*group, rest),
            _ => return attributes,
        };
        let version = rest[0];
        let mut rest = &rest[1..];
        let verb = if matches!(rest[0], "watch" | "proxy") {
            let Some((special, tail)) = rest.split_first().filter(|(_, tail)| !tail.is_empty())
            else {
                return attributes;
            };
            rest = tail;
            (*special).to_owned()
        } else {
            match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_owned()
        };
        let mut namespace = "";
        if rest[0] == "namespaces"
            && let Some(name) = rest.get(1)
        {
            namespace = name;
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        let mut request = ResourceAttributes {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: rest[0].to_owned(),
            subresource: String::new(),
            namespace: namespace.to_owned(),
            name: rest
                .get(1)
                .map(|name| (*name).to_owned())
                .unwrap_or_default(),
        };
        if verb != "proxy" && rest.len() >= 3 {
            request.subresource = rest[2].to_owned();
        }
        attributes.verb = verb;
        if request.name.is_empty() && attributes.verb == "get" {
            let value = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let watch =
                value("watch").is_some_and(|v| !matches!(v.to_lowercase().as_str(), "false" | "0"));
            attributes.verb = if watch { "watch" } else { "list" }.to_owned();
            if let Some(fields) = value("fieldSelector")
                && let Ok(selector) = Selector::parse(None, Some(fields))
                && let Some(name) = selector.equal("metadata.name")
                && !matches!(name, "." | "..")
                && !name.contains(['/', '%'])
            {
                name.clone_into(&mut request.name);
            }
        }
        if request.name.is_empty() && attributes.verb == "delete" {
            "deletecollection".clone_into(&mut attributes.verb);
        }
        attributes.resource = Some(request);
        attributes
    }

    /// The namespace of a resource request, empty for any other.
    fn namespace(&self) -> &str {
        self.resource.as_ref().map_or("", |r| r.namespace.as_str())
    }
}

/// Decides a request: allowed for a member of `system:masters`, else as RBAC allows it.
pub(super) fn authorize(store: &Store, user: &User, attributes: &Attributes) -> Decision {
    if user.is_master() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors: Vec<String> = Vec::new();
    let namespace = attributes.namespace();
    let scopes = [
        ("clusterrolebindings", None),
        ("rolebindings", Some(namespace)),
    ];
    for (storage, scope) in scopes {
        if scope == Some("") {
            continue;
        }
        for (_, binding) in store.objects_of(storage, scope) {
            let Some(subject) = subject_of(user, binding, scope.unwrap_or_default()) else {
                continue;
            };
            match role_rules(store, binding, scope.unwrap_or_default()) {
                Ok(rules) => {
                    if rules.iter().any(|rule| allows(rule, attributes)) {
                        return Decision {
                            allowed: true,
                            reason: format!("RBAC: allowed by {}", describe(binding, subject)),
                        };
                    }
                }
                Err(error) => errors.push(error),
            }
        }
    }
    let reason = if errors.is_empty() {
        String::new()
    } else {
        format!("RBAC: {}", aggregate(&errors))
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// The subject of a binding that names the user, if one does.
fn subject_of<'a>(user: &User, binding: &'a Value, namespace: &str) -> Option<&'a Value> {
    binding.get("subjects")?.as_array()?.iter().find(|subject| {
        let name = str_at(subject, &["name"]).unwrap_or_default();
        match str_at(subject, &["kind"]) {
            Some("User") => user.name == name,
            Some("Group") => user.groups.iter().any(|group| group == name),
            Some("ServiceAccount") => {
                let own = str_at(subject, &["namespace"]).filter(|ns| !ns.is_empty());
                let namespace = own.unwrap_or(namespace);
                !namespace.is_empty()
                    && user.name == format!("system:serviceaccount:{namespace}:{name}")
            }
            _ => false,
        }
    })
}

/// The rules of a binding's role, or why they could not be read (as the API server words it).
fn role_rules<'a>(
    store: &'a Store,
    binding: &Value,
    namespace: &str,
) -> Result<&'a [Value], String> {
    let name = str_at(binding, &["roleRef", "name"]).unwrap_or_default();
    let (plural, singular, scope) = match str_at(binding, &["roleRef", "kind"]) {
        Some("ClusterRole") => ("clusterroles", "clusterrole", None),
        Some("Role") => ("roles", "role", Some(namespace)),
        other => {
            return Err(format!(
                "unsupported role reference kind: \"{}\"",
                other.unwrap_or_default()
            ));
        }
    };
    let role = store.get(plural, scope, name).ok_or_else(|| {
        format!(
            "{singular}.rbac.authorization.k8s.io {} not found",
            quote(name)
        )
    })?;
    Ok(role
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice))
}

/// Whether a rule allows the request (`RuleAllows`).
fn allows(rule: &Value, attributes: &Attributes) -> bool {
    let list = |field: &str| -> Vec<&str> {
        rule.get(field)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let any_or = |field: &str, wanted: &str| list(field).iter().any(|v| *v == "*" || *v == wanted);
    if !any_or("verbs", &attributes.verb) {
        return false;
    }
    let Some(request) = &attributes.resource else {
        return list("nonResourceURLs").iter().any(|url| {
            *url == "*"
                || *url == attributes.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| attributes.path.starts_with(prefix))
        });
    };
    let combined = request.rule_resource();
    let resource_matches = list("resources").iter().any(|resource| {
        *resource == "*"
            || *resource == combined
            || (!request.subresource.is_empty()
                && resource.strip_prefix("*/") == Some(request.subresource.as_str()))
    });
    let names = list("resourceNames");
    any_or("apiGroups", &request.group)
        && resource_matches
        && (names.is_empty() || names.contains(&request.name.as_str()))
}

/// A binding and its subject, as the RBAC authorizer names the source of an allow.
fn describe(binding: &Value, subject: &Value) -> String {
    let text = |value: &Value, path: &[&str]| str_at(value, path).unwrap_or_default().to_owned();
    let namespace = text(binding, &["metadata", "namespace"]);
    let (kind, name) = if namespace.is_empty() {
        ("ClusterRoleBinding", text(binding, &["metadata", "name"]))
    } else {
        (
            "RoleBinding",
            format!("{}/{namespace}", text(binding, &["metadata", "name"])),
        )
    };
    let subject_name = match str_at(subject, &["kind"]) {
        Some("ServiceAccount") => {
            let own = text(subject, &["namespace"]);
            let account_namespace = if own.is_empty() { namespace } else { own };
            format!("{}/{account_namespace}", text(subject, &["name"]))
        }
        _ => text(subject, &["name"]),
    };
    format!(
        "{kind} {} of {} {} to {} {}",
        quote(&name),
        text(binding, &["roleRef", "kind"]),
        quote(&text(binding, &["roleRef", "name"])),
        text(subject, &["kind"]),
        quote(&subject_name),
    )
}

/// Errors as `utilerrors.NewAggregate` prints them: one as it is, several (without repeats) in
/// brackets.
fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for error in errors {
        if !seen.contains(&error.as_str()) {
            seen.push(error);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A string as Go's `%q` writes it (quotes and backslashes escaped, control characters as
/// escapes).
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The API server's 403 for a refused request (`responsewriters.Forbidden`).
pub(super) fn forbidden(user: &User, attributes: &Attributes, reason: &str) -> Response {
    let quoted_user = quote(&user.name);
    let detail = match &attributes.resource {
        None => format!(
            "User {quoted_user} cannot {} path {}",
            attributes.verb,
            quote(&attributes.path)
        ),
        Some(request) => {
            let scope = if request.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {}", quote(&request.namespace))
            };
            format!(
                "User {quoted_user} cannot {} resource {} in API group {} {scope}",
                attributes.verb,
                quote(&request.rule_resource()),
                quote(&request.group),
            )
        }
    };
    // The API server escapes HTML in the message it builds.
    let detail = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let detail = if reason.is_empty() {
        detail
    } else {
        format!("{detail}: {reason}")
    };
    let mut details = json!({});
    let message = match &attributes.resource {
        None => format!("forbidden: {detail}"),
        Some(request) => {
            let qualified = if request.group.is_empty() {
                request.resource.clone()
            } else {
                format!("{}.{}", request.resource, request.group)
            };
            if !request.name.is_empty() {
                details["name"] = request.name.clone().into();
            }
            if !request.group.is_empty() {
                details["group"] = request.group.clone().into();
            }
            details["kind"] = request.resource.clone().into();
            if request.name.is_empty() {
                format!("{qualified} is forbidden: {detail}")
            } else {
                format!(
                    "{qualified} {} is forbidden: {detail}",
                    quote(&request.name)
                )
            }
        }
    };
    let mut body = fault::kubernetes_status(StatusCode::FORBIDDEN, "Forbidden", &message);
    body["details"] = details;
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// A `SelfSubjectAccessReview`: whether `user` may do what its `spec` asks, answered in its
/// `status` (`allowed`, and the reason when there is one).
pub(super) fn review(store: &Store, user: &User, mut review: Value) -> Result<Value, ApiError> {
    let text = |path: &str| {
        review
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let attributes = if review.pointer("/spec/resourceAttributes").is_some() {
        let at = |field: &str| text(&format!("/spec/resourceAttributes/{field}"));
        Attributes {
            verb: at("verb"),
            resource: Some(ResourceAttributes {
                group: at("group"),
                version: at("version"),
                resource: at("resource"),
                subresource: at("subresource"),
                namespace: at("namespace"),
                name: at("name"),
            }),
            path: String::new(),
        }
    } else if review.pointer("/spec/nonResourceAttributes").is_some() {
        Attributes {
            verb: text("/spec/nonResourceAttributes/verb"),
            resource: None,
            path: text("/spec/nonResourceAttributes/path"),
        }
    } else {
        return Err(ApiError::invalid(
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    let decision = authorize(store, user, &attributes);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = decision.reason.into();
    }
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectAccessReview".into();
    review["status"] = status;
    Ok(review)
}

/// The bootstrap ClusterRoles and ClusterRoleBindings a client meets, as (storage, object
/// without uid and creation time).
pub(super) fn bootstrap_policy() -> Vec<(&'static str, Value)> {
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    let get = |urls: &[&str]| json!({"nonResourceURLs": urls, "verbs": ["get"]});
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let roles = [
        (
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
            vec![MASTERS],
        ),
        (
            "system:discovery",
            json!([get(&discovery)]),
            vec!["system:authenticated"],
        ),
        (
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
            vec!["system:authenticated"],
        ),
        (
            "system:public-info-viewer",
            json!([get(&public)]),
            vec!["system:authenticated", "system:unauthenticated"],
        ),
    ];
    let mut objects = Vec::new();
    for (name, rules, groups) in roles {
        objects.push((
            "clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": meta(name), "rules": rules}),
        ));
        let subjects: Vec<Value> = groups
            .into_iter()
            .map(|group| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}))
            .collect();
        objects.push((
            "clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": meta(name),
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                   "subjects": subjects}),
        ));
    }
    objects
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::Attributes;

    fn of(method: &Method, path: &str, query: &[(&str, &str)]) -> (String, String) {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let attributes = Attributes::of(method, path, &query);
        let resource = attributes.resource.map_or_else(String::new, |r| {
            format!(
                "{}|{}|{}|{}",
                r.group,
                r.rule_resource(),
                r.namespace,
                r.name
            )
        });
        (attributes.verb, resource)
    }

    #[test]
    fn attributes_as_request_info_derives_them() {
        let get = Method::GET;
        let pair = |verb: &str, resource: &str| (verb.to_owned(), resource.to_owned());
        assert_eq!(of(&get, "/api/v1/nodes", &[]), pair("list", "|nodes||"));
        assert_eq!(
            of(&get, "/api/v1/nodes", &[("watch", "true")]),
            pair("watch", "|nodes||")
        );
        assert_eq!(
            of(&get, "/api/v1/nodes", &[("watch", "0")]),
            pair("list", "|nodes||")
        );
        assert_eq!(
            of(
                &get,
                "/api/v1/nodes",
                &[("watch", "1"), ("fieldSelector", "metadata.name=n")]
            ),
            pair("watch", "|nodes||n")
        );
        assert_eq!(of(&get, "/api/v1/nodes/n", &[]), pair("get", "|nodes||n"));
        assert_eq!(
            of(&Method::PUT, "/api/v1/nodes/n/status", &[]),
            pair("update", "|nodes/status||n")
        );
        assert_eq!(
            of(&get, "/api/v1/namespaces/default", &[]),
            pair("get", "|namespaces|default|default")
        );
        assert_eq!(
            of(&Method::PATCH, "/api/v1/namespaces/kube-system/status", &[]),
            pair("patch", "|namespaces/status|kube-system|kube-system")
        );
        assert_eq!(
            of(&Method::DELETE, "/api/v1/namespaces/default/pods", &[]),
            pair("deletecollection", "|pods|default|")
        );
        assert_eq!(
            of(
                &Method::POST,
                "/api/v1/namespaces/kube-system/serviceaccounts/sa/token",
                &[]
            ),
            pair("create", "|serviceaccounts/token|kube-system|sa")
        );
        assert_eq!(
            of(&get, "/apis/storage.k8s.io/v1/volumeattachments", &[]),
            pair("list", "storage.k8s.io|volumeattachments||")
        );
        assert_eq!(
            of(&get, "/api/v1/watch/namespaces/default/pods", &[]),
            pair("watch", "|pods|default|")
        );
        assert_eq!(of(&get, "/apis/apps/v1", &[]), pair("get", ""));
        assert_eq!(of(&get, "/api/v1", &[]), pair("get", ""));
        assert_eq!(of(&get, "/version", &[]), pair("get", ""));
        assert_eq!(of(&Method::POST, "/", &[]), pair("post", ""));
    }
}
