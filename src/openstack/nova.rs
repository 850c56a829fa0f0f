//! Nova calls the remediator makes: read a server (by id, exact name or IP), list the servers
//! changed since a time (the cloud-side watch), read its compute service, detach a volume from
//! it (`openstack server remove volume`), stop it.
//!
//! Raw calls over the `osauth` session with tolerant types of our own: the `openstack` crate's
//! server type lacks `OS-EXT-SRV-ATTR:host`, `task_state` and `vm_state`, and rejects status
//! values it does not know.

use std::collections::BTreeMap;

use osauth::services::{ServiceType, VersionedService};
use osauth::{ApiVersion, Session};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorKind};

/// The compute microversion every call asks for: 2.16 adds `host_status`, and older clouds
/// than that (Mitaka) are not supported.
pub const MICROVERSION: ApiVersion = ApiVersion(2, 16);

/// Nova as a catalog service. Version discovery is off: the catalog URL is used as published,
/// which saves a request per session.
#[derive(Debug, Clone, Copy)]
pub struct Compute;

impl ServiceType for Compute {
    fn catalog_type(&self) -> &'static str {
        "compute"
    }

    fn major_version_supported(&self, version: ApiVersion) -> bool {
        version.0 == 2
    }

    fn version_discovery_supported(&self) -> bool {
        false
    }
}

impl VersionedService for Compute {
    fn get_version_header(&self, version: ApiVersion) -> (HeaderName, HeaderValue) {
        let value = HeaderValue::from_str(&format!("{}.{}", version.0, version.1))
            .unwrap_or_else(|_| HeaderValue::from_static("2.16"));
        (
            HeaderName::from_static("x-openstack-nova-api-version"),
            value,
        )
    }
}

/// A Nova server, as far as fencing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `status`, e.g. `ACTIVE`, `SHUTOFF`, kept as Nova spells it.
    pub status: String,
    /// `OS-EXT-STS:power_state` (1 running, 4 shutdown, 6 crashed, ...).
    pub power_state: Option<u8>,
    /// `OS-EXT-STS:task_state`; none when no task is in progress.
    pub task_state: Option<String>,
    /// `OS-EXT-STS:vm_state`.
    pub vm_state: Option<String>,
    /// `OS-EXT-SRV-ATTR:host` (visible to admins by default).
    pub host: Option<String>,
    /// Nova left `OS-EXT-SRV-ATTR:host` out: its policy hides the host from these credentials.
    pub host_hidden: bool,
    /// `host_status` (2.16+): `UP`, `DOWN`, `MAINTENANCE`, `UNKNOWN`; none when not shown.
    pub host_status: Option<String>,
    /// `OS-EXT-AZ:availability_zone`.
    pub availability_zone: Option<String>,
    /// Every address of every network.
    pub addresses: Vec<String>,
}

#[derive(Deserialize)]
struct ServerRoot {
    server: RawServer,
}

#[derive(Deserialize)]
struct ServersRoot {
    servers: Vec<RawServer>,
}

/// A page of `changes-since`: each server with its `updated` time, and the next page's link.
#[derive(Deserialize)]
struct ChangedRoot {
    servers: Vec<ChangedRaw>,
    #[serde(default)]
    servers_links: Vec<RawLink>,
}

#[derive(Deserialize)]
struct ChangedRaw {
    #[serde(flatten)]
    server: RawServer,
    #[serde(default)]
    updated: Option<String>,
}

#[derive(Deserialize)]
struct RawLink {
    rel: String,
    href: String,
}

/// A server in a `changes-since` list: as [`Server`], and when Nova last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedServer {
    /// The server (status `DELETED` for a deleted one).
    pub server: Server,
    /// Its `updated` time (Nova's `updated_at`).
    pub updated: jiff::Timestamp,
}

/// The most pages one `changes-since` read follows: a thousand servers each (Nova's default
/// `max_limit`), a cloud of a million changes in one interval.
const MAX_PAGES: usize = 1000;

#[derive(Deserialize)]
struct RawServer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(rename = "OS-EXT-STS:power_state", default)]
    power_state: Option<u8>,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    vm_state: Option<String>,
    #[serde(rename = "OS-EXT-SRV-ATTR:host", default, deserialize_with = "present")]
    host: Option<Option<String>>,
    #[serde(default)]
    host_status: Option<String>,
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    availability_zone: Option<String>,
    #[serde(default)]
    addresses: BTreeMap<String, Vec<RawAddress>>,
}

#[derive(Deserialize)]
struct RawAddress {
    addr: String,
}

/// A field that Nova may leave out (`None`) or send as null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

impl From<RawServer> for Server {
    fn from(raw: RawServer) -> Self {
        Self {
            id: raw.id,
            name: raw.name,
            status: raw.status,
            power_state: raw.power_state,
            task_state: non_empty(raw.task_state),
            vm_state: non_empty(raw.vm_state),
            host_hidden: raw.host.is_none(),
            host: non_empty(raw.host.flatten()),
            host_status: non_empty(raw.host_status),
            availability_zone: non_empty(raw.availability_zone),
            addresses: raw
                .addresses
                .into_values()
                .flatten()
                .map(|address| address.addr)
                .collect(),
        }
    }
}

/// A nova-compute service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeService {
    /// Host name.
    pub host: String,
    /// `up` or `down`: whether the service reports in.
    pub state: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Whether an operator or a fencing agent marked it forced down.
    pub forced_down: bool,
}

#[derive(Deserialize)]
struct ServicesRoot {
    services: Vec<RawService>,
}

#[derive(Deserialize)]
struct RawService {
    host: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    forced_down: bool,
}

/// Nova over an authenticated session.
#[derive(Debug, Clone)]
pub struct Nova {
    session: Session,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Nova {
    /// Nova through `session`.
    #[must_use]
    pub fn new(session: Session) -> Self {
        Self {
            session,
            metrics: None,
        }
    }

    /// Times every request into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads a server; `None` when Nova says it does not exist (404).
    ///
    /// # Errors
    /// Any other failure.
    pub async fn server(&self, id: &str) -> Result<Option<Server>, ApiError> {
        let operation = format!("GET server {id}");
        match self
            .call::<ServerRoot>(Method::GET, &["servers", id], &[], None, &operation)
            .await
        {
            Ok(root) => Ok(Some(root.server.into())),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The servers whose name is exactly `name` (Nova's `name` filter is a regular expression:
    /// it is anchored and escaped, and the answer filtered again here).
    ///
    /// # Errors
    /// When Nova fails.
    pub async fn servers_named(&self, name: &str) -> Result<Vec<Server>, ApiError> {
        self.servers_where("name", name, |server| server.name == name)
            .await
    }

    /// The servers that own the fixed address `ip`. Sent anchored and escaped (a regular
    /// expression to Nova without Neutron; with Neutron, Nova strips `^`, `$` and `\.` and
    /// Neutron matches the address as a substring, so 10.0.0.1 finds 10.0.0.13 too): the answer
    /// is filtered again here, to the exact address.
    ///
    /// # Errors
    /// When Nova fails.
    pub async fn servers_with_ip(&self, ip: &str) -> Result<Vec<Server>, ApiError> {
        self.servers_where("ip", ip, |server| server.addresses.iter().any(|a| a == ip))
            .await
    }

    /// `GET /servers/detail?FILTER=^VALUE$`, keeping the servers `keep` accepts.
    async fn servers_where(
        &self,
        filter: &str,
        value: &str,
        keep: impl Fn(&Server) -> bool,
    ) -> Result<Vec<Server>, ApiError> {
        let pattern = format!("^{}$", regex_escape(value));
        let operation = format!("GET servers with {filter} {value}");
        let root: ServersRoot = self
            .call(
                Method::GET,
                &["servers", "detail"],
                &[(filter, pattern.as_str())],
                None,
                &operation,
            )
            .await?;
        Ok(root
            .servers
            .into_iter()
            .map(Server::from)
            .filter(|server| keep(server))
            .collect())
    }

    /// Every server Nova changed at or after `since` (`GET /servers/detail?changes-since=`),
    /// deleted ones included (status `DELETED`), following the next links page by page.
    ///
    /// # Errors
    /// When Nova fails, a server has no readable `updated` time, or the pages do not end.
    pub async fn servers_changed_since(
        &self,
        since: jiff::Timestamp,
    ) -> Result<Vec<ChangedServer>, ApiError> {
        let since = since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let operation = format!("GET servers changed since {since}");
        let invalid = |detail: String| ApiError {
            service: "nova",
            operation: operation.clone(),
            kind: ErrorKind::Invalid(detail),
        };
        let mut changed = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("changes-since", since.as_str())];
            if let Some(marker) = &marker {
                query.push(("marker", marker.as_str()));
            }
            let root: ChangedRoot = self
                .call(
                    Method::GET,
                    &["servers", "detail"],
                    &query,
                    None,
                    &operation,
                )
                .await?;
            for raw in root.servers {
                let updated = raw
                    .updated
                    .as_deref()
                    .and_then(|text| text.parse::<jiff::Timestamp>().ok())
                    .ok_or_else(|| {
                        invalid(format!(
                            "server {} has no readable `updated` time",
                            raw.server.id
                        ))
                    })?;
                changed.push(ChangedServer {
                    server: raw.server.into(),
                    updated,
                });
            }
            let next = root.servers_links.iter().find(|link| link.rel == "next");
            match next.and_then(|link| query_value(&link.href, "marker")) {
                Some(next) => marker = Some(next),
                None => return Ok(changed),
            }
        }
        Err(invalid(format!("more than {MAX_PAGES} pages")))
    }

    /// The nova-compute service of a host; `None` when Nova lists none.
    ///
    /// # Errors
    /// When Nova fails.
    pub async fn compute_service(&self, host: &str) -> Result<Option<ComputeService>, ApiError> {
        let operation = format!("GET compute service of {host}");
        let root: ServicesRoot = self
            .call(
                Method::GET,
                &["os-services"],
                &[("host", host), ("binary", "nova-compute")],
                None,
                &operation,
            )
            .await?;
        Ok(root
            .services
            .into_iter()
            .find(|service| service.host == host)
            .map(|raw| ComputeService {
                host: raw.host,
                state: raw.state,
                status: raw.status,
                forced_down: raw.forced_down,
            }))
    }

    /// Detaches a volume from a server (`openstack server remove volume SERVER VOLUME`). Nova
    /// answers 202 and detaches asynchronously: read Cinder to see it done.
    ///
    /// # Errors
    /// Nova's refusal (400, 404, 409) or failure.
    pub async fn detach_volume(&self, server: &str, volume: &str) -> Result<(), ApiError> {
        let operation = format!("DELETE volume attachment {volume} of server {server}");
        self.call_empty(
            Method::DELETE,
            &["servers", server, "os-volume_attachments", volume],
            None,
            &operation,
        )
        .await
    }

    /// Powers a server off (`os-stop`). Nova answers 202; read the server to see it SHUTOFF.
    ///
    /// # Errors
    /// Nova's refusal (409 when the server is not ACTIVE) or failure.
    pub async fn stop_server(&self, server: &str) -> Result<(), ApiError> {
        self.action(server, "os-stop", serde_json::Value::Null)
            .await
    }

    /// Deletes a server (`openstack server delete SERVER`). On a compute host that is not up
    /// Nova deletes it locally at once and removes its Cinder attachments itself; read it back
    /// to see it gone.
    ///
    /// # Errors
    /// Nova's refusal (404, 409 for a locked server) or failure.
    pub async fn delete_server(&self, server: &str) -> Result<(), ApiError> {
        let operation = format!("DELETE server {server}");
        self.call_empty(Method::DELETE, &["servers", server], None, &operation)
            .await
    }

    /// Evacuates a server (`openstack server evacuate SERVER`): Nova rebuilds it on a host its
    /// scheduler picks, with its volumes. Asked at this client's microversion (below 2.95), the
    /// server comes back in the state it had (`ACTIVE`), not stopped: the source host is
    /// forced down, fenced by the operator.
    ///
    /// # Errors
    /// Nova's refusal (400 while the source compute service is up, 403 without the admin
    /// right, 409 for a state that forbids it) or failure.
    pub async fn evacuate_server(&self, server: &str) -> Result<(), ApiError> {
        self.action(server, "evacuate", serde_json::json!({})).await
    }

    /// `POST /servers/{id}/action {NAME: ARGUMENT}`.
    async fn action(
        &self,
        server: &str,
        name: &str,
        argument: serde_json::Value,
    ) -> Result<(), ApiError> {
        let operation = format!("POST {name} to server {server}");
        let body = serde_json::json!({ name: argument });
        self.call_empty(
            Method::POST,
            &["servers", server, "action"],
            Some(&body),
            &operation,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<T, ApiError> {
        let text = self.send(method, path, query, body, operation).await?;
        serde_json::from_str(&text).map_err(|err| ApiError {
            service: "nova",
            operation: operation.to_owned(),
            kind: ErrorKind::Invalid(err.to_string()),
        })
    }

    async fn call_empty(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<(), ApiError> {
        self.send(method, path, &[], body, operation)
            .await
            .map(drop)
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<String, ApiError> {
        let route = self.metrics.is_some().then(|| super::route(&method, path));
        let build = |session: &Session| {
            super::request(session, Compute, MICROVERSION, (&method, path), query, body)
        };
        let timing = self.metrics.as_deref().zip(route);
        super::send(&self.session, build, "nova", operation, timing).await
    }
}

/// The value of `key` in the query of a link (`...?changes-since=...&marker=ID`), decoded.
fn query_value(href: &str, key: &str) -> Option<String> {
    let url = reqwest::Url::parse(href).ok()?;
    url.query_pairs()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// Escapes the characters that mean something in a (Python) regular expression.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::{RawServer, Server, regex_escape};

    #[test]
    fn names_and_addresses_are_escaped_for_novas_regex_filters() {
        assert_eq!(regex_escape("10.0.0.14"), "10\\.0\\.0\\.14");
        assert_eq!(regex_escape("node-4(a)+"), "node-4\\(a\\)\\+");
    }

    #[test]
    fn empty_strings_from_nova_mean_absent() {
        let raw: RawServer = serde_json::from_str(
            r#"{"id": "s", "name": "n", "status": "SHUTDOWN_NEW_VALUE", "host_status": "",
                "OS-EXT-STS:task_state": null, "OS-EXT-SRV-ATTR:host": "",
                "addresses": {"private": [{"addr": "10.0.0.14", "version": 4}]}}"#,
        )
        .unwrap();
        let server = Server::from(raw);
        assert_eq!(
            server.status, "SHUTDOWN_NEW_VALUE",
            "unknown statuses are kept"
        );
        assert_eq!(server.host, None);
        assert!(!server.host_hidden, "an empty host is shown, not hidden");
        assert_eq!(server.host_status, None);
        assert_eq!(server.addresses, ["10.0.0.14"]);
    }

    #[test]
    fn a_host_left_out_is_hidden_by_policy_and_null_is_not() {
        let parse = |body: &str| Server::from(serde_json::from_str::<RawServer>(body).unwrap());
        let member = parse(r#"{"id": "s", "status": "ACTIVE"}"#);
        assert!(member.host_hidden);
        let admin = parse(r#"{"id": "s", "status": "ERROR", "OS-EXT-SRV-ATTR:host": null}"#);
        assert!(!admin.host_hidden);
        assert_eq!(admin.host, None);
    }
}
