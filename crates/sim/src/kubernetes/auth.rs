//! Authentication, as an API server with a static token and ServiceAccount tokens and without
//! anonymous access: the kubeconfig's token ([`ADMIN_TOKEN`]) is the cluster's admin, a member
//! of `system:masters`; a token from the TokenRequest API (`POST
//! /api/v1/namespaces/NS/serviceaccounts/NAME/token`, as `kubectl create token` sends it) is
//! `system:serviceaccount:NS:NAME`, in the groups `system:serviceaccounts`,
//! `system:serviceaccounts:NS` and `system:authenticated`. A request without a bearer token, with
//! an unknown or expired one, one for another audience, or one whose ServiceAccount is gone or was
//! re-created, is answered 401 `Unauthorized`.
//!
//! ServiceAccount tokens are JWTs with Kubernetes' claims (`iss`, `sub`, `aud`, `exp`, `iat`,
//! `nbf`, `jti`, `kubernetes.io`), signed with HS256 under a key of the run (the real API server
//! signs RS256 with its service account key): nothing about them is kept but the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use ring::hmac;
use serde::Serialize;
use serde_json::{Value, json};

use super::resource::Resource;
use super::store::{ApiError, Store, str_at, time};

/// The bearer token of the cluster admin, as the kubeconfig of `sim` carries it.
pub const ADMIN_TOKEN: &str = "sim-kubernetes-token";

/// The admin's user name.
const ADMIN: &str = "kubernetes-admin";

/// The group every request is allowed to do anything in (the API server's privileged group).
pub const MASTERS: &str = "system:masters";

/// The API server's audience and its tokens' issuer (kubeadm's `--api-audiences` and
/// `--service-account-issuer`).
const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// A token's lifetime when the TokenRequest names none, and the shortest one it may name.
const DEFAULT_SECONDS: i64 = 3600;
const MIN_SECONDS: i64 = 600;
/// The longest lifetime a TokenRequest may name (2^32 seconds).
const MAX_SECONDS: i64 = 1 << 32;

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The user name (`system:serviceaccount:NS:NAME` for a ServiceAccount).
    pub name: String,
    /// The groups the user is in.
    pub groups: Vec<String>,
}

impl User {
    fn admin() -> Self {
        Self {
            name: ADMIN.to_owned(),
            groups: vec![MASTERS.to_owned(), "system:authenticated".to_owned()],
        }
    }

    fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// Whether the user is in the privileged group, which no authorizer can refuse.
    #[must_use]
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|group| group == MASTERS)
    }
}

/// The key ServiceAccount tokens are signed with, new for each run.
#[derive(Debug)]
pub(super) struct Issuer {
    key: hmac::Key,
}

impl Issuer {
    pub(super) fn new() -> Self {
        let secret = [
            uuid::Uuid::new_v4().into_bytes(),
            uuid::Uuid::new_v4().into_bytes(),
        ]
        .concat();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signed.as_bytes()));
        format!("{signed}.{signature}")
    }

    /// The claims of a token this issuer signed.
    fn verify(&self, token: &str) -> Option<Value> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (_, payload) = signed.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        hmac::verify(&self.key, signed.as_bytes(), &signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The user an `Authorization` header names at `now`, or `None` (401).
pub(super) fn authenticate(store: &Store, header: Option<&str>, now: Timestamp) -> Option<User> {
    let mut parts = header?.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next().filter(|token| !token.is_empty())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    if token == ADMIN_TOKEN {
        return Some(User::admin());
    }
    let claims = store.issuer.verify(token)?;
    let seconds = |claim: &str| claims.get(claim).and_then(Value::as_i64);
    let at = now.as_second();
    let valid = seconds("exp").is_some_and(|exp| at < exp)
        && seconds("nbf").is_some_and(|nbf| nbf <= at)
        && claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|audiences| audiences.iter().any(|a| a == AUDIENCE));
    if !valid {
        return None;
    }
    let namespace = str_at(&claims, &["kubernetes.io", "namespace"])?;
    let name = str_at(&claims, &["kubernetes.io", "serviceaccount", "name"])?;
    let uid = str_at(&claims, &["kubernetes.io", "serviceaccount", "uid"])?;
    let account = store.get("serviceaccounts", Some(namespace), name)?;
    (str_at(account, &["metadata", "uid"]) == Some(uid))
        .then(|| User::service_account(namespace, name))
}

/// A TokenRequest for the ServiceAccount `namespace`/`name` (`resource` is serviceaccounts), as
/// the API server answers it: the request with its defaults (the API server's audience, an
/// hour) and, in `status`, the token and when it expires.
pub(super) fn token_request(
    store: &Store,
    resource: &Resource,
    namespace: &str,
    name: &str,
    mut request: Value,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let invalid = |name: &str, field: &str, value: &Value, why: &str| {
        ApiError::invalid(format!(
            "TokenRequest.authentication.k8s.io \"{name}\" is invalid: {field}: Invalid value: {value}: {why}"
        ))
    };
    for (field, url, why) in [
        (
            "name",
            name,
            "must match the service account name if specified",
        ),
        (
            "namespace",
            namespace,
            "must match the service account namespace if specified",
        ),
    ] {
        if let Some(given) = str_at(&request, &["metadata", field]).filter(|g| !g.is_empty())
            && given != url
        {
            let field = format!("metadata.{field}");
            return Err(invalid(name, &field, &json!(given), why));
        }
    }
    let account = store
        .get("serviceaccounts", Some(namespace), name)
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_SECONDS);
    if seconds < MIN_SECONDS {
        let why = "may not specify a duration less than 10 minutes";
        return Err(invalid("", "spec.expirationSeconds", &json!(seconds), why));
    }
    if seconds > MAX_SECONDS {
        let why = "may not specify a duration larger than 2^32 seconds";
        return Err(invalid("", "spec.expirationSeconds", &json!(seconds), why));
    }
    let audiences = match request.pointer("/spec/audiences") {
        Some(Value::Array(given)) if !given.is_empty() => given.clone(),
        _ => vec![AUDIENCE.into()],
    };
    let issued = now.as_second();
    let expires = issued + seconds;
    let claims = json!({
        "aud": audiences,
        "exp": expires,
        "iat": issued,
        "iss": AUDIENCE,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": str_at(account, &["metadata", "uid"])},
        },
        "nbf": issued,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    let expiration = Timestamp::from_second(expires).unwrap_or(now);
    let bound = request.pointer("/spec/boundObjectRef").cloned();
    request["apiVersion"] = "authentication.k8s.io/v1".into();
    request["kind"] = "TokenRequest".into();
    request["metadata"] =
        json!({"name": name, "namespace": namespace, "creationTimestamp": time(now)});
    request["spec"] = json!({
        "audiences": audiences,
        "expirationSeconds": seconds,
        "boundObjectRef": bound.unwrap_or(Value::Null),
    });
    request["status"] = json!({
        "token": store.issuer.sign(&claims),
        "expirationTimestamp": time(expiration),
    });
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::{SignedDuration, Timestamp};
    use serde_json::json;

    use super::{ADMIN_TOKEN, authenticate, token_request};
    use crate::kubernetes::resource::find;
    use crate::kubernetes::store::Store;
    use crate::scenario::Scenario;

    #[test]
    fn a_token_is_valid_from_its_issue_until_it_expires() {
        let scenario = Scenario::parse("name: t\n", Path::new("t.yaml")).unwrap();
        let mut store = Store::new(&scenario, Timestamp::now());
        let accounts = find("", "v1", "serviceaccounts").unwrap();
        let account = json!({"metadata": {"name": "robot"}});
        store
            .create(accounts, Some("default"), account, Timestamp::now())
            .unwrap();
        let issued = Timestamp::now();
        let answer = token_request(
            &store,
            accounts,
            "default",
            "robot",
            json!({"spec": {"expirationSeconds": 600}}),
            issued,
        )
        .unwrap();
        let header = format!("Bearer {}", answer["status"]["token"].as_str().unwrap());
        let at = |seconds: i64| issued + SignedDuration::from_secs(seconds);
        let user = authenticate(&store, Some(&header), at(599)).expect("valid");
        assert_eq!(user.name, "system:serviceaccount:default:robot");
        assert_eq!(authenticate(&store, Some(&header), at(600)), None);
        assert_eq!(authenticate(&store, Some(&header), at(-1)), None);
        let admin = format!("bearer {ADMIN_TOKEN}");
        assert!(
            authenticate(&store, Some(&admin), at(0))
                .unwrap()
                .is_master()
        );
        assert_eq!(authenticate(&store, Some("Basic a"), at(0)), None);
    }
}
