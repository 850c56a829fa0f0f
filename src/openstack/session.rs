//! The authenticated OpenStack session: an `osauth::Session` over our own Keystone v3
//! authentication.
//!
//! `osauth::identity::Password` only takes a user and domain by name, so [`KeystoneAuth`]
//! implements `osauth::AuthType` itself for every identity [`OpenStackConfig`] can hold (user by id
//! or by name, application credential by id or by name plus user, project scope by id or by name).
//! It posts to `{auth_url}/auth/tokens`, keeps the `X-Subject-Token` and its catalog until shortly
//! before `expires_at`, and re-authenticates then or on `refresh`.
//!
//! Catalog lookups accept the block-storage aliases: asking for `block-storage` also finds a
//! `volumev3` or `volume` entry (real clouds publish `block-storage`, `volumev3` or both).
//!
//! No `Debug`, `Display` or error here shows a password, secret or token.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use osauth::{EndpointFilters, ErrorKind, InterfaceType};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use super::config::{
    ApplicationCredentialRef, IdOrName, Identity, Interface, OpenStackConfig, ProjectScope, UserRef,
};

/// A token is renewed this long before it expires (or at half its lifetime, if shorter).
const RENEW_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// Longest Keystone error text kept in an error message.
const MAX_MESSAGE: usize = 200;

/// HTTP settings of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Time allowed to open a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, response included.
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    /// 10 s to connect, 30 s per request.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why no session could be made, or a token could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Keystone answered 401.
    #[error(
        "Keystone at {url} refused the credentials (401): check the username/password or the application credential id/secret, and that the user has a role on the project"
    )]
    Unauthorized {
        /// The token URL.
        url: Url,
    },
    /// Keystone could not be reached (connection refused, DNS, TLS, timeout).
    #[error(
        "cannot reach Keystone at {url}: {reason}; check the auth URL, the network and the CA file"
    )]
    Unreachable {
        /// The token URL.
        url: Url,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// Keystone answered an error other than 401.
    #[error("Keystone at {url} answered {status}: {message}")]
    Keystone {
        /// The token URL.
        url: Url,
        /// The HTTP status.
        status: StatusCode,
        /// Keystone's message, one line, shortened, with any secret removed.
        message: String,
    },
    /// Keystone answered 2xx but not with a usable token.
    #[error("Keystone at {url} sent an unusable token response: {reason}")]
    InvalidResponse {
        /// The token URL.
        url: Url,
        /// What is wrong.
        reason: String,
    },
    /// The CA file cannot be used.
    #[error("cannot use CA file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {reason}")]
    Client {
        /// What is wrong.
        reason: String,
    },
    /// `osauth` refused to make the session.
    #[error("cannot set up the OpenStack session")]
    Session(#[source] osauth::Error),
}

impl SessionError {
    /// Whether retrying later may help (Keystone unreachable, 5xx, 429, 408).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Keystone { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::Session(err) => matches!(
                err.kind(),
                ErrorKind::ProtocolError
                    | ErrorKind::InternalServerError
                    | ErrorKind::OperationTimedOut
            ),
            Self::Unauthorized { .. }
            | Self::InvalidResponse { .. }
            | Self::CaFile { .. }
            | Self::Client { .. } => false,
        }
    }

    /// A bounded label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Unreachable { .. } => "unreachable",
            Self::Keystone { .. } => "keystone_error",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::CaFile { .. } => "ca_file",
            Self::Client { .. } => "client",
            Self::Session(_) => "session",
        }
    }
}

impl From<SessionError> for osauth::Error {
    fn from(err: SessionError) -> Self {
        let (kind, status) = match &err {
            SessionError::Unauthorized { .. } => (
                ErrorKind::AuthenticationFailed,
                Some(StatusCode::UNAUTHORIZED),
            ),
            SessionError::Unreachable { .. } => (ErrorKind::ProtocolError, None),
            SessionError::Keystone { status, .. } => (ErrorKind::from(*status), Some(*status)),
            SessionError::InvalidResponse { .. } => (ErrorKind::InvalidResponse, None),
            SessionError::CaFile { .. } | SessionError::Client { .. } => {
                (ErrorKind::InvalidConfig, None)
            }
            SessionError::Session(inner) => return inner.clone(),
        };
        let converted = osauth::Error::new(kind, err.to_string());
        match status {
            Some(status) => converted.with_status(status),
            None => converted,
        }
    }
}

/// Authenticates and returns a session with the config's region and interface filters, using
/// the default [`ConnectOptions`].
///
/// # Errors
/// [`SessionError::Unauthorized`] on a 401, [`SessionError::Unreachable`] (transient) when
/// Keystone cannot be reached, and the other [`SessionError`]s.
pub async fn connect(config: &OpenStackConfig) -> Result<osauth::Session, SessionError> {
    connect_with(config, &ConnectOptions::default()).await
}

/// [`connect`] with explicit HTTP settings.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(
    config: &OpenStackConfig,
    options: &ConnectOptions,
) -> Result<osauth::Session, SessionError> {
    let client = http_client(config, options)?;
    let auth = KeystoneAuth::new(config);
    auth.login(&client).await?;
    let mut session = osauth::Session::new_with_client(client, auth)
        .await
        .map_err(SessionError::Session)?;
    session.set_endpoint_interface(match config.interface() {
        Interface::Public => InterfaceType::Public,
        Interface::Internal => InterfaceType::Internal,
        Interface::Admin => InterfaceType::Admin,
    });
    if let Some(region) = config.region() {
        session.set_region(region);
    }
    Ok(session)
}

fn http_client(config: &OpenStackConfig, options: &ConnectOptions) -> Result<Client, SessionError> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .user_agent(concat!("cinder-remediator/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = config.ca_file() {
        let ca_error = |reason: String| SessionError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|err| ca_error(format!("{err}: fix the path")))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|err| ca_error(format!("not PEM certificates ({err})")))?;
        if certificates.is_empty() {
            return Err(ca_error(
                "no PEM certificate in it: give the CA certificate(s) in PEM form".into(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|err| SessionError::Client {
        reason: innermost(&err),
    })
}

/// Keystone v3 authentication for `osauth`, for every identity of [`OpenStackConfig`].
///
/// Clones share the token cache. `Debug` shows the token URL and the kind of identity only.
#[derive(Clone)]
pub struct KeystoneAuth {
    inner: Arc<Inner>,
}

struct Inner {
    token_url: Url,
    identity: Identity,
    scope: Option<ProjectScope>,
    token: RwLock<Option<Token>>,
    /// Set by [`connect_with`] after its own login, so that the `refresh` `osauth` makes while
    /// building the session uses that fresh token instead of asking for a second one.
    just_logged_in: AtomicBool,
}

struct Token {
    value: SecretString,
    expires_at: Timestamp,
    /// Renew when less than this is left.
    margin: SignedDuration,
    catalog: Vec<CatalogEntry>,
}

impl Token {
    fn is_fresh(&self, now: Timestamp) -> bool {
        self.expires_at.duration_since(now) > self.margin
    }
}

impl fmt::Debug for KeystoneAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner.identity {
            Identity::Password { .. } => "password",
            Identity::ApplicationCredential { .. } => "application_credential",
        };
        f.debug_struct("KeystoneAuth")
            .field("token_url", &self.inner.token_url.as_str())
            .field("method", &kind)
            .finish_non_exhaustive()
    }
}

impl KeystoneAuth {
    /// Authentication for the given settings; nothing is sent until a token is needed.
    #[must_use]
    pub fn new(config: &OpenStackConfig) -> Self {
        let mut token_url = config.auth_url().clone();
        if let Ok(mut segments) = token_url.path_segments_mut() {
            segments.pop_if_empty().extend(["auth", "tokens"]);
        }
        Self {
            inner: Arc::new(Inner {
                token_url,
                identity: config.identity().clone(),
                scope: config.scope().cloned(),
                token: RwLock::new(None),
                just_logged_in: AtomicBool::new(false),
            }),
        }
    }

    /// The URL tokens are requested from: `{auth_url}/auth/tokens`.
    #[must_use]
    pub fn token_url(&self) -> &Url {
        &self.inner.token_url
    }

    /// Gets a new token now (used by [`connect_with`] to report precise errors).
    async fn login(&self, client: &Client) -> Result<(), SessionError> {
        let mut slot = self.inner.token.write().await;
        *slot = Some(self.inner.fetch(client).await?);
        self.inner.just_logged_in.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` on a fresh token, authenticating first if there is none or it is about to expire.
    async fn with_token<R>(
        &self,
        client: &Client,
        f: impl FnOnce(&Token) -> R,
    ) -> Result<R, SessionError> {
        {
            let slot = self.inner.token.read().await;
            if let Some(token) = slot.as_ref()
                && token.is_fresh(Timestamp::now())
            {
                return Ok(f(token));
            }
        }
        let mut slot = self.inner.token.write().await;
        // Another task may have renewed it while this one waited for the lock.
        if let Some(token) = slot.as_ref()
            && token.is_fresh(Timestamp::now())
        {
            return Ok(f(token));
        }
        let token = self.inner.fetch(client).await?;
        let result = f(&token);
        *slot = Some(token);
        Ok(result)
    }
}

#[async_trait]
impl osauth::AuthType for KeystoneAuth {
    /// Adds `X-Auth-Token`, authenticating first when needed.
    async fn authenticate(
        &self,
        client: &Client,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, osauth::Error> {
        let token = self.with_token(client, |token| token.value.clone()).await?;
        let mut value =
            reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                osauth::Error::new(
                    ErrorKind::InvalidResponse,
                    "Keystone sent a token that is not a valid header value",
                )
            })?;
        value.set_sensitive(true);
        Ok(request.header("X-Auth-Token", value))
    }

    /// Looks the service up in the token's catalog (with the block-storage aliases).
    async fn get_endpoint(
        &self,
        client: &Client,
        service_type: &str,
        filters: &EndpointFilters,
    ) -> Result<Url, osauth::Error> {
        self.with_token(client, |token| {
            find_endpoint(&token.catalog, service_type, filters)
        })
        .await?
    }

    /// Re-authenticates.
    async fn refresh(&self, client: &Client) -> Result<(), osauth::Error> {
        if self.inner.just_logged_in.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let mut slot = self.inner.token.write().await;
        *slot = Some(self.inner.fetch(client).await?);
        Ok(())
    }
}

impl Inner {
    /// Posts the credentials and reads the token.
    async fn fetch(&self, client: &Client) -> Result<Token, SessionError> {
        let url = self.token_url.clone();
        let body = token_request(&self.identity, self.scope.as_ref());
        let sent = Timestamp::now();
        let response = client
            .post(url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|err| SessionError::Unreachable {
                url: url.clone(),
                reason: innermost(&err),
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(SessionError::Unauthorized { url });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(SessionError::Keystone {
                message: self.scrub(&keystone_message(&text, status)),
                url,
                status,
            });
        }
        let invalid = |reason: String| SessionError::InvalidResponse {
            url: url.clone(),
            reason,
        };
        let value = response
            .headers()
            .get("x-subject-token")
            .ok_or_else(|| invalid("no X-Subject-Token header".into()))?
            .to_str()
            .map_err(|_| invalid("the X-Subject-Token header is not text".into()))?
            .to_owned();
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|err| invalid(format!("not a token document ({})", innermost(&err))))?;
        let expires_at: Timestamp = body
            .token
            .expires_at
            .parse()
            .map_err(|err| invalid(format!("bad expires_at ({err})")))?;
        let lifetime = expires_at.duration_since(sent);
        let margin = if lifetime.is_positive() {
            RENEW_MARGIN.min(lifetime / 2)
        } else {
            SignedDuration::ZERO
        };
        tracing::debug!(url = %url, %expires_at, "Got a Keystone token");
        Ok(Token {
            value: SecretString::from(value),
            expires_at,
            margin,
            catalog: body.token.catalog,
        })
    }

    /// Removes the password or secret from a text Keystone sent back.
    fn scrub(&self, text: &str) -> String {
        let secret = match &self.identity {
            Identity::Password { password, .. } => password.expose_secret(),
            Identity::ApplicationCredential { secret, .. } => secret.expose_secret(),
        };
        if secret.is_empty() {
            text.to_owned()
        } else {
            text.replace(secret, "[REDACTED]")
        }
    }
}

/// Keystone's `{"error": {"message": ..}}`, else the body; one line, shortened.
fn keystone_message(text: &str, status: StatusCode) -> String {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.to_owned());
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return status.canonical_reason().unwrap_or("error").to_owned();
    }
    match one_line.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The innermost cause of an error, e.g. `Connection refused (os error 111)`.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn id_or_name(value: &IdOrName) -> Value {
    match value {
        IdOrName::Id(id) => json!({ "id": id }),
        IdOrName::Name(name) => json!({ "name": name }),
    }
}

fn user(user: &UserRef) -> Value {
    match user {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain } => json!({ "name": name, "domain": id_or_name(domain) }),
    }
}

/// The v3 `POST /auth/tokens` body (it holds the secret: never log it).
fn token_request(identity: &Identity, scope: Option<&ProjectScope>) -> Value {
    let identity = match identity {
        Identity::Password {
            user: who,
            password,
        } => {
            let mut user = user(who);
            user["password"] = json!(password.expose_secret());
            json!({ "methods": ["password"], "password": { "user": user } })
        }
        Identity::ApplicationCredential { credential, secret } => {
            let mut body = match credential {
                ApplicationCredentialRef::Id(id) => json!({ "id": id }),
                ApplicationCredentialRef::Name { name, user: owner } => {
                    json!({ "name": name, "user": user(owner) })
                }
            };
            body["secret"] = json!(secret.expose_secret());
            json!({ "methods": ["application_credential"], "application_credential": body })
        }
    };
    let mut auth = json!({ "identity": identity });
    if let Some(scope) = scope {
        auth["scope"] = match scope {
            ProjectScope::Id(id) => json!({ "project": { "id": id } }),
            ProjectScope::Name { name, domain } => {
                json!({ "project": { "name": name, "domain": id_or_name(domain) } })
            }
        };
    }
    json!({ "auth": auth })
}

/// The block-storage service types clouds publish, in the order they are tried.
const BLOCK_STORAGE_TYPES: [&str; 3] = ["block-storage", "volumev3", "volume"];

/// The catalog types to try for a service type, in order: the type asked for, then (for block
/// storage) its aliases.
fn catalog_types(service_type: &str) -> Vec<&str> {
    let mut types = vec![service_type];
    if BLOCK_STORAGE_TYPES.contains(&service_type) {
        types.extend(BLOCK_STORAGE_TYPES.iter().filter(|t| **t != service_type));
    }
    types
}

/// Finds the endpoint of a service in the catalog: the first catalog type (see
/// [`catalog_types`]) with an endpoint in the region whose interface the filters accept, the
/// filters' first interface preferred.
fn find_endpoint(
    catalog: &[CatalogEntry],
    service_type: &str,
    filters: &EndpointFilters,
) -> Result<Url, osauth::Error> {
    let types = catalog_types(service_type);
    for wanted in &types {
        let best = catalog
            .iter()
            .filter(|entry| entry.service_type == *wanted)
            .flat_map(|entry| &entry.endpoints)
            .filter(|endpoint| match &filters.region {
                Some(region) => {
                    endpoint.region_id.as_deref() == Some(region.as_str())
                        || endpoint.region.as_deref() == Some(region.as_str())
                }
                None => true,
            })
            .filter_map(|endpoint| {
                filters
                    .interfaces
                    .iter()
                    .position(|interface| *interface == endpoint.interface)
                    .map(|rank| (rank, endpoint))
            })
            .min_by_key(|(rank, _)| *rank);
        if let Some((_, endpoint)) = best {
            return Url::parse(&endpoint.url).map_err(|err| {
                osauth::Error::new(
                    ErrorKind::InvalidResponse,
                    format!(
                        "the catalog's {wanted} endpoint is not a URL ({err}): ask the cloud operator to fix the catalog"
                    ),
                )
            });
        }
    }
    let interfaces: Vec<String> = filters.interfaces.iter().map(ToString::to_string).collect();
    let published: Vec<&str> = catalog.iter().map(|e| e.service_type.as_str()).collect();
    Err(osauth::Error::new(
        ErrorKind::EndpointNotFound,
        format!(
            "no {} endpoint with interface {} in region {} in the token's catalog (it lists: {}); check the region and interface settings",
            types.join(" or "),
            interfaces.join("/"),
            filters.region.as_deref().unwrap_or("(any)"),
            if published.is_empty() {
                "nothing: is the token scoped to a project?".to_owned()
            } else {
                published.join(", ")
            }
        ),
    ))
}

#[derive(Deserialize)]
struct TokenResponse {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Debug, Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service_type: &str, endpoints: &[(&str, &str, &str)]) -> CatalogEntry {
        CatalogEntry {
            service_type: service_type.into(),
            endpoints: endpoints
                .iter()
                .map(|(interface, region, url)| Endpoint {
                    interface: (*interface).into(),
                    region: Some((*region).into()),
                    region_id: Some((*region).into()),
                    url: (*url).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn block_storage_aliases_and_priority() {
        let catalog = vec![
            entry("volume", &[("public", "R1", "http://v1/")]),
            entry("volumev3", &[("public", "R1", "http://v3/")]),
        ];
        let filters = EndpointFilters::default();
        let url = find_endpoint(&catalog, "block-storage", &filters).unwrap();
        assert_eq!(url.as_str(), "http://v3/");
        let catalog = vec![entry("volume", &[("public", "R1", "http://v1/")])];
        assert_eq!(
            find_endpoint(&catalog, "block-storage", &filters)
                .unwrap()
                .as_str(),
            "http://v1/"
        );
        let err = find_endpoint(&catalog, "compute", &filters).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::EndpointNotFound);
        assert!(err.to_string().contains("volume"), "{err}");
    }

    #[test]
    fn interface_preference_follows_filters() {
        let catalog = vec![entry(
            "compute",
            &[
                ("public", "R1", "http://public/"),
                ("internal", "R1", "http://internal/"),
            ],
        )];
        let filters = EndpointFilters::default()
            .with_interfaces(vec![InterfaceType::Internal, InterfaceType::Public]);
        assert_eq!(
            find_endpoint(&catalog, "compute", &filters)
                .unwrap()
                .as_str(),
            "http://internal/"
        );
    }

    #[test]
    fn keystone_messages_are_one_short_line() {
        let long = format!(
            "{{\"error\": {{\"message\": \"bad\\nthing {}\", \"code\": 400}}}}",
            "x".repeat(500)
        );
        let message = keystone_message(&long, StatusCode::BAD_REQUEST);
        assert!(!message.contains('\n'));
        assert!(message.starts_with("bad thing x"));
        assert!(message.chars().count() <= MAX_MESSAGE + 1);
        assert_eq!(keystone_message("", StatusCode::BAD_GATEWAY), "Bad Gateway");
    }
}
