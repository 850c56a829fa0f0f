//! The LINSTOR controller's REST API as the LINSTOR backend reads it: `GET /v1/nodes` (each
//! satellite's connection status) and `GET /v1/view/resources` (each replica's DRBD state), from
//! the first controller of `--linstor-controllers` that answers, as golinstor tries its
//! controllers in turn. Read-only: the remediator never changes LINSTOR.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::UsageError;
use crate::openstack::error::{ApiError, ErrorKind};

/// Where the LINSTOR controllers are and how to reach them.
#[derive(Debug, Clone, Default)]
pub struct LinstorSettings {
    /// `--linstor-controllers` / `LS_CONTROLLERS`: comma-separated URLs (a bare host gets
    /// `http://` and LINSTOR's port 3370, as golinstor does).
    pub controllers: String,
    /// A PEM file of CA certificates for `https` controllers, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate, for controllers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// The PEM key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// The LINSTOR controllers of a cluster, asked in turn.
#[derive(Debug, Clone)]
pub struct Controllers {
    http: Client,
    controllers: Vec<Url>,
}

/// A satellite, from `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Node {
    /// Node name (the Kubernetes node's).
    pub name: String,
    /// `ONLINE`, `OFFLINE`, `CONNECTED`, ...
    #[serde(default)]
    pub connection_status: String,
}

/// One replica of a resource, from `GET /v1/view/resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The resource (a linstor-csi PV's volume handle).
    pub resource: String,
    /// The node holding the replica.
    pub node: String,
    /// `state.in_use`, when the controller knows.
    pub in_use: Option<bool>,
    /// `layer_object.drbd.may_promote`, when known.
    pub may_promote: Option<bool>,
    /// `layer_object.drbd.connections`: peer node -> connected.
    pub connections: BTreeMap<String, bool>,
    /// The first volume's `state.disk_state`, when reported.
    pub disk_state: Option<String>,
}

#[derive(Deserialize)]
struct RawResource {
    name: String,
    node_name: String,
    #[serde(default)]
    state: Option<RawState>,
    #[serde(default)]
    layer_object: Option<RawLayer>,
    #[serde(default)]
    volumes: Vec<RawVolume>,
}

#[derive(Deserialize)]
struct RawVolume {
    #[serde(default)]
    state: Option<RawVolumeState>,
}

#[derive(Deserialize)]
struct RawVolumeState {
    #[serde(default)]
    disk_state: Option<String>,
}

#[derive(Deserialize)]
struct RawState {
    #[serde(default)]
    in_use: Option<bool>,
}

#[derive(Deserialize)]
struct RawLayer {
    #[serde(default)]
    drbd: Option<RawDrbd>,
}

#[derive(Deserialize)]
struct RawDrbd {
    #[serde(default)]
    may_promote: Option<bool>,
    #[serde(default)]
    connections: BTreeMap<String, RawConnection>,
}

#[derive(Deserialize)]
struct RawConnection {
    #[serde(default)]
    connected: bool,
}

impl From<RawResource> for Replica {
    fn from(raw: RawResource) -> Self {
        let drbd = raw.layer_object.and_then(|layer| layer.drbd);
        let disk_state = raw
            .volumes
            .into_iter()
            .find_map(|volume| volume.state.and_then(|state| state.disk_state));
        Self {
            disk_state,
            resource: raw.name,
            node: raw.node_name,
            in_use: raw.state.and_then(|state| state.in_use),
            may_promote: drbd.as_ref().and_then(|d| d.may_promote),
            connections: drbd
                .map(|d| {
                    d.connections
                        .into_iter()
                        .map(|(peer, connection)| (peer, connection.connected))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// How long one controller may take to answer before the next is tried.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Controllers {
    /// A client of the controllers `settings` name.
    ///
    /// # Errors
    /// No controller, a URL that does not parse, or an unreadable CA, certificate or key file,
    /// naming the flag and what to do.
    pub fn new(settings: &LinstorSettings) -> Result<Self, UsageError> {
        let controllers = settings
            .controllers
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(controller_url)
            .collect::<Result<Vec<_>, _>>()?;
        if controllers.is_empty() {
            return Err(UsageError(
                "--linstor-controllers: no controller given; write e.g. \
                 http://linstor-controller.piraeus-datastore:3370"
                    .to_owned(),
            ));
        }
        let mut builder = Client::builder()
            .use_rustls_tls()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .user_agent(concat!("cinder-remediator/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = read_pem(path, "--linstor-ca-file")?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| pem_error(path, "--linstor-ca-file", "no PEM certificate in it"))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_pem(cert, "--linstor-client-cert")?;
                pem.extend(read_pem(key, "--linstor-client-key")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                    pem_error(
                        cert,
                        "--linstor-client-cert",
                        "not a PEM certificate with its PEM key (--linstor-client-key)",
                    )
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(UsageError(
                    "--linstor-client-cert and --linstor-client-key go together: give both or \
                     neither"
                        .to_owned(),
                ));
            }
        }
        let http = builder
            .build()
            .map_err(|err| UsageError(format!("LINSTOR client: {err}")))?;
        Ok(Self { http, controllers })
    }

    /// The satellites named `names` (all when empty).
    ///
    /// # Errors
    /// When no controller answers, or the first that answers refuses.
    pub async fn nodes(&self, names: &[&str]) -> Result<Vec<Node>, ApiError> {
        let query: Vec<(&str, &str)> = names.iter().map(|name| ("nodes", *name)).collect();
        self.get("/v1/nodes", &query, "GET nodes").await
    }

    /// Every replica of the resources `names`.
    ///
    /// # Errors
    /// When no controller answers, or the first that answers refuses.
    pub async fn replicas(&self, names: &[&str]) -> Result<Vec<Replica>, ApiError> {
        let query: Vec<(&str, &str)> = names.iter().map(|name| ("resources", *name)).collect();
        let raw: Vec<RawResource> = self
            .get("/v1/view/resources", &query, "GET resources")
            .await?;
        Ok(raw.into_iter().map(Replica::from).collect())
    }

    /// `GET path?query` from each controller in turn until one answers: a controller that
    /// cannot be reached or fails (5xx) is skipped; a refusal (4xx) is the answer.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        operation: &str,
    ) -> Result<T, ApiError> {
        let failed = |kind| ApiError {
            service: "linstor",
            operation: operation.to_owned(),
            kind,
        };
        let mut tried = Vec::new();
        for controller in &self.controllers {
            let Ok(url) = controller.join(path) else {
                continue;
            };
            let response = match self.http.get(url).query(query).send().await {
                Ok(response) => response,
                Err(err) => {
                    tried.push(format!("{controller}: {}", unreachable(&err)));
                    continue;
                }
            };
            let status = response.status();
            let body = match response.text().await {
                Ok(body) => body,
                Err(err) => {
                    tried.push(format!("{controller}: {}", unreachable(&err)));
                    continue;
                }
            };
            if status.is_server_error() {
                tried.push(format!("{controller}: HTTP {}", status.as_u16()));
                continue;
            }
            if !status.is_success() {
                let message = format!("HTTP {} from {controller}", status.as_u16());
                return Err(failed(match status.as_u16() {
                    401 => ErrorKind::Unauthorized(message),
                    403 => ErrorKind::Denied(message),
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict(message),
                    _ => ErrorKind::BadRequest(message),
                }));
            }
            return serde_json::from_str(&body).map_err(|err| {
                failed(ErrorKind::Invalid(format!(
                    "{controller}: not LINSTOR's answer ({err})"
                )))
            });
        }
        Err(failed(ErrorKind::Unavailable(format!(
            "no LINSTOR controller answered ({})",
            tried.join("; ")
        ))))
    }
}

/// A controller entry as golinstor reads `LS_CONTROLLERS`: a URL, or a host (and port) that
/// gets `http://` and port 3370.
fn controller_url(entry: &str) -> Result<Url, UsageError> {
    let text = if entry.contains("://") {
        entry.to_owned()
    } else if entry.contains(':') {
        format!("http://{entry}")
    } else {
        format!("http://{entry}:3370")
    };
    let url = Url::parse(&text).map_err(|err| {
        UsageError(format!(
            "--linstor-controllers: {entry:?} is not a URL ({err}); write e.g. \
             https://linstor-controller:3371"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UsageError(format!(
            "--linstor-controllers: {entry:?}: only http and https controllers are supported"
        )));
    }
    Ok(url)
}

fn read_pem(path: &Path, flag: &str) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|err| pem_error(path, flag, &format!("{err}: fix the path")))
}

fn pem_error(path: &Path, flag: &str, why: &str) -> UsageError {
    UsageError(format!("{flag} {}: {why}", path.display()))
}

/// Why a controller could not be reached, in one line.
fn unreachable(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "no answer in time".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the answer broke off".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::{Controllers, LinstorSettings, Replica, controller_url};

    #[test]
    fn controllers_are_read_as_golinstor_reads_them() {
        assert_eq!(
            controller_url("linstor-controller").unwrap().as_str(),
            "http://linstor-controller:3370/"
        );
        assert_eq!(
            controller_url("10.0.0.5:3371").unwrap().as_str(),
            "http://10.0.0.5:3371/"
        );
        assert_eq!(
            controller_url("https://ctl:3371").unwrap().as_str(),
            "https://ctl:3371/"
        );
        assert!(controller_url("ftp://ctl").is_err());
        let err = Controllers::new(&LinstorSettings {
            controllers: " , ".to_owned(),
            ..LinstorSettings::default()
        })
        .unwrap_err();
        assert!(err.0.contains("--linstor-controllers"), "{err}");
        let err = Controllers::new(&LinstorSettings {
            controllers: "ctl".to_owned(),
            client_cert: Some("/nonexistent".into()),
            ..LinstorSettings::default()
        })
        .unwrap_err();
        assert!(err.0.contains("go together"), "{err}");
    }

    #[test]
    fn a_replica_reads_in_use_may_promote_and_connections() {
        let raw: super::RawResource = serde_json::from_str(
            r#"{"name": "pvc-1", "node_name": "n1", "state": {"in_use": false},
                "layer_object": {"type": "DRBD", "drbd": {"may_promote": true,
                  "connections": {"n2": {"connected": false, "message": "Connecting"}}}},
                "volumes": [{"volume_number": 0, "state": {"disk_state": "UpToDate"}}]}"#,
        )
        .unwrap();
        let replica = Replica::from(raw);
        assert_eq!(replica.in_use, Some(false));
        assert_eq!(replica.may_promote, Some(true));
        assert_eq!(replica.connections.get("n2"), Some(&false));
        assert_eq!(replica.disk_state.as_deref(), Some("UpToDate"));
        let bare: super::RawResource =
            serde_json::from_str(r#"{"name": "pvc-1", "node_name": "n1"}"#).unwrap();
        let replica = Replica::from(bare);
        assert_eq!((replica.in_use, replica.may_promote), (None, None));
    }
}
