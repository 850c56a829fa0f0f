//! The emulated Keystone v3: version documents, password and application-credential tokens
//! with a service catalog, token validation, and the token check Nova and Cinder run on every
//! request (what `keystonemiddleware` does in front of the real services).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::cloud::{AuthMethod, Token, derived_id};
use super::fault;
use super::scenario::Role;
use super::world::{State, World};

/// The name of the one application credential.
const APPLICATION_CREDENTIAL_NAME: &str = "cinder-remediator";

/// Keystone's message for any failed authentication.
const UNAUTHORIZED: &str = "The request you have made requires authentication.";

/// The Keystone router.
pub fn router(world: World) -> Router {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route("/v3/auth/tokens", get(validate).post(issue))
        .with_state(world)
}

/// Rejects a request without a valid `X-Auth-Token` with the 401 keystonemiddleware sends.
pub async fn require_token(
    AxumState(world): AxumState<World>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let token = header(request.headers(), "x-auth-token");
    let (valid, keystone) = {
        let state = world.lock();
        let valid = token.is_some_and(|t| state.cloud.token(t, world.now_ms()).is_some());
        (valid, state.endpoints.keystone.clone())
    };
    if valid {
        return next.run(request).await;
    }
    let mut response = fault::keystone(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    if let Ok(value) = HeaderValue::from_str(&format!("Keystone uri=\"{keystone}/v3\"")) {
        response.headers_mut().insert("www-authenticate", value);
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn version_body(keystone: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{keystone}/v3/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

async fn versions(AxumState(world): AxumState<World>) -> Response {
    let keystone = world.lock().endpoints.keystone.clone();
    let body = json!({ "versions": { "values": [version_body(&keystone)] } });
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

async fn version(AxumState(world): AxumState<World>) -> Response {
    let keystone = world.lock().endpoints.keystone.clone();
    Json(json!({ "version": version_body(&keystone) })).into_response()
}

/// Why a token request is refused.
enum Rejection {
    /// 400: the body is not a token request.
    Invalid(String),
    /// 401: the credentials are wrong.
    Unauthorized,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(message) => fault::keystone(StatusCode::BAD_REQUEST, &message),
            Self::Unauthorized => fault::keystone(StatusCode::UNAUTHORIZED, UNAUTHORIZED),
        }
    }
}

async fn issue(AxumState(world): AxumState<World>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Rejection::Invalid("Malformed request body: expected JSON".to_owned())
            .into_response();
    };
    let now_ms = world.now_ms();
    let mut state = world.lock();
    match authenticate(&state, &request) {
        Ok((method, project_scoped)) => {
            let id = state.cloud.issue_token(method, project_scoped, now_ms);
            let Some(token) = state.cloud.token(&id, now_ms) else {
                return Rejection::Unauthorized.into_response();
            };
            let body = token_body(&state, token);
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-subject-token", value);
            }
            response
                .headers_mut()
                .insert("vary", HeaderValue::from_static("X-Auth-Token"));
            response
        }
        Err(rejection) => rejection.into_response(),
    }
}

async fn validate(AxumState(world): AxumState<World>, headers: HeaderMap) -> Response {
    let now_ms = world.now_ms();
    let state = world.lock();
    let caller = header(&headers, "x-auth-token").and_then(|t| state.cloud.token(t, now_ms));
    if caller.is_none() {
        return Rejection::Unauthorized.into_response();
    }
    let subject = header(&headers, "x-subject-token").unwrap_or_default();
    match state.cloud.token(subject, now_ms) {
        Some(token) => {
            let mut response = Json(token_body(&state, token)).into_response();
            if let Ok(value) = HeaderValue::from_str(subject) {
                response.headers_mut().insert("x-subject-token", value);
            }
            response
        }
        None => fault::keystone(
            StatusCode::NOT_FOUND,
            &format!("Could not find token: {subject}."),
        ),
    }
}

/// Checks a token request against the accepted credentials: the method, and whether the token
/// is scoped to the project.
fn authenticate(state: &State, request: &Value) -> Result<(AuthMethod, bool), Rejection> {
    let identity = request
        .pointer("/auth/identity")
        .and_then(Value::as_object)
        .ok_or_else(|| Rejection::Invalid("'identity' is a required property".to_owned()))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|methods| methods.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let credentials = &state.credentials;
    let cloud = &state.cloud;
    match methods.as_slice() {
        ["password"] => {
            let user = identity
                .get("password")
                .and_then(|password| password.get("user"))
                .ok_or_else(|| Rejection::Invalid("'user' is a required property".to_owned()))?;
            let password = user.get("password").and_then(Value::as_str);
            if !is_user(state, user) || password != Some(credentials.password.as_str()) {
                return Err(Rejection::Unauthorized);
            }
            match request.pointer("/auth/scope") {
                None => Ok((AuthMethod::Password, false)),
                Some(scope) => {
                    let project = scope.get("project").ok_or(Rejection::Unauthorized)?;
                    let by_id =
                        project.get("id").and_then(Value::as_str) == Some(cloud.project_id());
                    let by_name = project.get("name").and_then(Value::as_str)
                        == Some(cloud.project())
                        && project.get("domain").is_some_and(is_domain);
                    if by_id || by_name {
                        Ok((AuthMethod::Password, true))
                    } else {
                        Err(Rejection::Unauthorized)
                    }
                }
            }
        }
        ["application_credential"] => {
            let credential = identity.get("application_credential").ok_or_else(|| {
                Rejection::Invalid("'application_credential' is a required property".to_owned())
            })?;
            let secret = credential.get("secret").and_then(Value::as_str);
            let by_id = credential.get("id").and_then(Value::as_str)
                == Some(credentials.application_credential_id.as_str());
            let by_name = credential.get("name").and_then(Value::as_str)
                == Some(APPLICATION_CREDENTIAL_NAME)
                && credential
                    .get("user")
                    .is_some_and(|user| is_user(state, user));
            if (by_id || by_name)
                && secret == Some(credentials.application_credential_secret.as_str())
            {
                Ok((AuthMethod::ApplicationCredential, true))
            } else {
                Err(Rejection::Unauthorized)
            }
        }
        [] => Err(Rejection::Invalid(
            "'methods' is a required property".to_owned(),
        )),
        _ => Err(Rejection::Unauthorized),
    }
}

/// Whether a `user` object names the one user: by id, or by name and domain.
fn is_user(state: &State, user: &Value) -> bool {
    let by_id = user.get("id").and_then(Value::as_str) == Some(state.cloud.user_id());
    let by_name = user.get("name").and_then(Value::as_str)
        == Some(state.credentials.username.as_str())
        && user.get("domain").is_some_and(is_domain);
    by_id || by_name
}

/// Whether a `domain` object names the default domain, by id or name.
fn is_domain(domain: &Value) -> bool {
    domain.get("id").and_then(Value::as_str) == Some("default")
        || domain.get("name").and_then(Value::as_str) == Some("Default")
}

fn keystone_time(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

fn token_body(state: &State, token: &Token) -> Value {
    let cloud = &state.cloud;
    let domain = json!({"id": "default", "name": "Default"});
    let mut body = json!({
        "methods": [token.method.as_str()],
        "user": {
            "id": cloud.user_id(),
            "name": state.credentials.username,
            "domain": domain,
            "password_expires_at": null
        },
        "audit_ids": [token.audit_id],
        "issued_at": keystone_time(token.issued_at),
        "expires_at": keystone_time(token.expires_at),
    });
    if token.project_scoped {
        body["project"] =
            json!({"id": cloud.project_id(), "name": cloud.project(), "domain": domain});
        body["is_domain"] = json!(false);
        // Keystone lists the implied roles too: admin implies member, member implies reader.
        let names: &[&str] = match cloud.role() {
            Role::Admin => &["admin", "member", "reader"],
            Role::Member => &["member", "reader"],
        };
        let roles: Vec<Value> = names
            .iter()
            .map(|name| json!({"id": derived_id("role", name), "name": name}))
            .collect();
        body["roles"] = Value::Array(roles);
        body["catalog"] = catalog(state);
    }
    if token.method == AuthMethod::ApplicationCredential {
        body["application_credential"] = json!({
            "id": state.credentials.application_credential_id,
            "name": APPLICATION_CREDENTIAL_NAME,
            "restricted": true
        });
    }
    json!({ "token": body })
}

/// The service catalog: identity, compute, and block storage under both of its types.
fn catalog(state: &State) -> Value {
    let endpoints = &state.endpoints;
    let project_id = state.cloud.project_id();
    let cinder = format!("{}/v3/{project_id}", endpoints.cinder);
    let services = [
        ("identity", "keystone", format!("{}/v3", endpoints.keystone)),
        ("compute", "nova", format!("{}/v2.1", endpoints.nova)),
        ("block-storage", "cinder", cinder.clone()),
        ("volumev3", "cinderv3", cinder),
    ];
    let region = state.cloud.region();
    let entries: Vec<Value> = services
        .iter()
        .map(|(kind, name, url)| {
            let endpoints: Vec<Value> = ["public", "internal"]
                .iter()
                .map(|interface| {
                    json!({
                        "id": derived_id("endpoint", &format!("{kind}/{interface}")),
                        "interface": interface,
                        "region_id": region,
                        "region": region,
                        "url": url,
                    })
                })
                .collect();
            json!({
                "id": derived_id("service", kind),
                "type": kind,
                "name": name,
                "endpoints": endpoints,
            })
        })
        .collect();
    Value::Array(entries)
}
