//! Cinder calls the remediator makes: read a volume with its attachments (or list them all, page
//! by page, for `diagnose`'s scan of every PV), and release a stale attachment of a server that
//! no longer exists (attachment delete, or `os-force_detach`).
//!
//! Raw calls with tolerant types of our own: the `openstack` crate's volume list fails on real
//! Cinder responses (`"name": null`), and it sends no volume microversion.

use osauth::services::{ServiceType, VersionedService};
use osauth::{ApiVersion, Session};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use super::error::{ApiError, ErrorKind};

/// The volume microversion every call asks for: 3.27 brings the attachments API.
pub const MICROVERSION: ApiVersion = ApiVersion(3, 27);

/// Cinder as a catalog service (`block-storage`, also published as `volumev3`). Version
/// discovery is off: the catalog URL is used as published, which saves a request per session.
#[derive(Debug, Clone, Copy)]
pub struct BlockStorage;

impl ServiceType for BlockStorage {
    fn catalog_type(&self) -> &'static str {
        "block-storage"
    }

    fn major_version_supported(&self, version: ApiVersion) -> bool {
        version.0 == 3
    }

    fn version_discovery_supported(&self) -> bool {
        false
    }
}

impl VersionedService for BlockStorage {
    fn get_version_header(&self, version: ApiVersion) -> (HeaderName, HeaderValue) {
        let value = HeaderValue::from_str(&format!("volume {}.{}", version.0, version.1))
            .unwrap_or_else(|_| HeaderValue::from_static("volume 3.27"));
        (HeaderName::from_static("openstack-api-version"), value)
    }
}

/// A Cinder volume, as far as releasing it needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Volume {
    /// UUID.
    pub id: String,
    /// Name; Cinder allows none.
    #[serde(default)]
    pub name: Option<String>,
    /// `available`, `in-use`, `detaching`, ... kept as Cinder spells it.
    #[serde(default)]
    pub status: String,
    /// Whether it may be attached to several servers.
    #[serde(default)]
    pub multiattach: bool,
    /// Whether it is a boot volume (Cinder sends the string `"true"`/`"false"`).
    #[serde(default, deserialize_with = "loose_bool")]
    pub bootable: bool,
    /// Availability zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Current attachments.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// One attachment of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// The server it is attached to.
    pub server_id: String,
    /// The attachment's id (the attachments API's id).
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// Device in the guest.
    #[serde(default)]
    pub device: Option<String>,
    /// Compute host of the attachment.
    #[serde(default)]
    pub host_name: Option<String>,
}

fn loose_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Text(String),
    }
    match Option::<Loose>::deserialize(deserializer)? {
        None => Ok(false),
        Some(Loose::Bool(value)) => Ok(value),
        Some(Loose::Text(text)) => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(de::Error::custom(format!(
                "bootable: {other:?} is not a boolean"
            ))),
        },
    }
}

#[derive(Deserialize)]
struct VolumeRoot {
    volume: Volume,
}

#[derive(Deserialize)]
struct VolumesPage {
    volumes: Vec<Volume>,
    #[serde(default)]
    volumes_links: Vec<serde_json::Value>,
}

/// Volumes per page of a list (Cinder's default `osapi_max_limit`; a smaller limit on the
/// server just means more pages).
const PAGE: usize = 1000;

/// Cinder over an authenticated session.
#[derive(Debug, Clone)]
pub struct Cinder {
    session: Session,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Cinder {
    /// Cinder through `session`.
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

    /// Reads a volume; `None` when Cinder says it does not exist (404).
    ///
    /// # Errors
    /// Any other failure.
    pub async fn volume(&self, id: &str) -> Result<Option<Volume>, ApiError> {
        let operation = format!("GET volume {id}");
        match self
            .call::<VolumeRoot>(Method::GET, &["volumes", id], None, &operation)
            .await
        {
            Ok(root) => Ok(Some(root.volume)),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every volume of the project, with its attachments, page by page (`limit` and `marker`,
    /// following Cinder's `next` link).
    ///
    /// # Errors
    /// Any failure of a page.
    pub async fn volumes(&self) -> Result<Vec<Volume>, ApiError> {
        let mut volumes: Vec<Volume> = Vec::new();
        loop {
            let mut query = vec![("limit", PAGE.to_string())];
            if let Some(last) = volumes.last() {
                query.push(("marker", last.id.clone()));
            }
            let page: VolumesPage = self
                .call_with(
                    Method::GET,
                    &["volumes", "detail"],
                    &query,
                    None,
                    "list volumes",
                )
                .await?;
            let more = !page.volumes.is_empty()
                && page
                    .volumes_links
                    .iter()
                    .any(|link| link.get("rel").and_then(|r| r.as_str()) == Some("next"));
            volumes.extend(page.volumes);
            if !more {
                return Ok(volumes);
            }
        }
    }

    /// Deletes an attachment (the attachments API, 3.27+). Cinder refuses (409) while the
    /// server exists and holds it; it is for stale attachments of deleted servers.
    ///
    /// # Errors
    /// Cinder's refusal or failure.
    pub async fn delete_attachment(&self, attachment_id: &str) -> Result<(), ApiError> {
        let operation = format!("DELETE attachment {attachment_id}");
        self.send(
            Method::DELETE,
            &["attachments", attachment_id],
            &[],
            None,
            &operation,
        )
        .await
        .map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<T, ApiError> {
        self.call_with(method, path, &[], body, operation).await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<T, ApiError> {
        let text = self.send(method, path, query, body, operation).await?;
        serde_json::from_str(&text).map_err(|err| ApiError {
            service: "cinder",
            operation: operation.to_owned(),
            kind: ErrorKind::Invalid(err.to_string()),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        operation: &str,
    ) -> Result<String, ApiError> {
        let route = self.metrics.is_some().then(|| super::route(&method, path));
        let build = |session: &Session| {
            super::request(
                session,
                BlockStorage,
                MICROVERSION,
                (&method, path),
                query,
                body,
            )
        };
        let timing = self.metrics.as_deref().zip(route);
        super::send(&self.session, build, "cinder", operation, timing).await
    }
}

#[cfg(test)]
mod tests {
    use super::Volume;

    #[test]
    fn bootable_is_read_as_cinder_sends_it_and_name_may_be_null() {
        let volume: Volume = serde_json::from_str(
            r#"{"id": "v", "name": null, "status": "in-use", "bootable": "true",
                "multiattach": false, "attachments": [{"server_id": "s", "attachment_id": "a",
                "volume_id": "v", "id": "v", "device": "/dev/vdb", "attached_at": "2024"}]}"#,
        )
        .unwrap();
        assert!(volume.bootable);
        assert_eq!(volume.name, None);
        assert_eq!(volume.attachments[0].attachment_id.as_deref(), Some("a"));
        let bad = serde_json::from_str::<Volume>(r#"{"id": "v", "bootable": "maybe"}"#);
        assert!(bad.is_err());
    }
}
