//! The OpenStack backend: Nova tells which server a node runs on and whether it is fenced;
//! Cinder tells which volumes it still holds; Nova releases them (`server remove volume`), or
//! Cinder for stale attachments of servers that no longer exist.
//!
//! API economy: for a dead node with k stuck volumes, one server read, then per volume one read
//! and one release (plus the Keystone token), and no call that lists every server or volume.

use std::collections::{BTreeMap, BTreeSet};

use osauth::Session;

use super::{Backend, ChangedServer, Error, Release, ReleaseState, Whereabouts};
use crate::bounded::bounded;
use crate::openstack::cinder::{Cinder, Volume};
use crate::openstack::error::{ApiError, ErrorKind};
use crate::openstack::nova::{Nova, Server};
use fencing::model::{
    AttachmentId, BackendVolume, CinderAttachment, CinderVolumeView, Driver, HostView, MatchRoute,
    NodeView, ServerId, ServerView, StorageView, VolumeId,
};
use fencing::plan::ReleaseVia;

/// Nova and Cinder through one authenticated session, in one region.
#[derive(Debug, Clone)]
pub struct OpenStack {
    nova: Nova,
    cinder: Cinder,
    region: Option<String>,
}

impl OpenStack {
    /// The backend over `session`, whose endpoints are those of `region` (the configured
    /// `region_name`; `None` when none is configured).
    #[must_use]
    pub fn new(session: &Session, region: Option<&str>) -> Self {
        Self {
            nova: Nova::new(session.clone()),
            cinder: Cinder::new(session.clone()),
            region: region.map(str::to_owned),
        }
    }

    /// Times every Nova and Cinder request into `metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: &std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            nova: self.nova.with_metrics(std::sync::Arc::clone(metrics)),
            cinder: self.cinder.with_metrics(std::sync::Arc::clone(metrics)),
            region: self.region,
        }
    }

    async fn find_server(&self, node: &NodeView) -> Result<StorageView, ApiError> {
        if let Some(id) = node.provider_server_id() {
            return Ok(match self.nova.server(id.as_str()).await? {
                Some(server) => {
                    StorageView::OpenStack(self.server_view(server, MatchRoute::ProviderId).await?)
                }
                None => StorageView::ServerGone { id },
            });
        }
        let mut named = self.nova.servers_named(node.name.as_str()).await?;
        if named.len() > 1 {
            return Ok(ambiguous(named));
        }
        // Every route is taken: a server named like the node and another owning its address
        // make the match ambiguous (a leftover server of that name, the real VM renamed).
        let mut by_address: BTreeMap<String, Server> = BTreeMap::new();
        for address in &node.addresses {
            for server in self.nova.servers_with_ip(address).await? {
                by_address.insert(server.id.clone(), server);
            }
        }
        if let Some(server) = named.pop() {
            if by_address.keys().any(|id| *id != server.id) {
                by_address.insert(server.id.clone(), server);
                return Ok(ambiguous(by_address.into_values().collect()));
            }
            return Ok(StorageView::OpenStack(
                self.server_view(server, MatchRoute::Name).await?,
            ));
        }
        if by_address.len() > 1 {
            return Ok(ambiguous(by_address.into_values().collect()));
        }
        match by_address.into_values().next() {
            Some(server) => Ok(StorageView::OpenStack(
                self.server_view(server, MatchRoute::Address).await?,
            )),
            None => Ok(StorageView::NoMatch),
        }
    }

    /// The server as the fence verdict needs it. The compute service is read where it can
    /// change the verdict or its explanation: an `ACTIVE` server whose host Nova does not show
    /// `UP` (`MAINTENANCE` is a disabled service, whose liveness Nova does not say).
    async fn server_view(
        &self,
        server: Server,
        matched_by: MatchRoute,
    ) -> Result<ServerView, ApiError> {
        let mut host_state = match server.host_status.as_deref() {
            Some("UP") => Some(HostView {
                up: true,
                forced_down: false,
            }),
            _ => None,
        };
        let mut host_hidden = server.host_hidden;
        // Any status: a compute host that is not up refuses every detach, from a shut-off
        // server too, and only its service tells down from forced down.
        if host_state.is_none()
            && let Some(host) = &server.host
        {
            match self.nova.compute_service(host).await {
                Ok(service) => {
                    host_state = service.map(|service| HostView {
                        up: service.state == "up",
                        forced_down: service.forced_down,
                    });
                }
                // A policy that shows the host but not its service: not known, not an error.
                Err(err) if matches!(err.kind, ErrorKind::Denied(_)) => host_hidden = true,
                Err(err) => return Err(err),
            }
        }
        Ok(ServerView {
            id: ServerId::new(server.id),
            name: server.name,
            matched_by,
            addresses: Some(server.addresses),
            status: server.status,
            power_state: server.power_state,
            task_state: server.task_state,
            vm_state: server.vm_state,
            host: server.host,
            host_state,
            host_hidden,
        })
    }
}

fn ambiguous(servers: Vec<Server>) -> StorageView {
    let mut candidates: Vec<ServerId> = servers.into_iter().map(|s| ServerId::new(s.id)).collect();
    candidates.sort();
    StorageView::Ambiguous { candidates }
}

fn volume_view(volume: Volume) -> BackendVolume {
    let detaching = volume.status == "detaching";
    BackendVolume::Cinder(CinderVolumeView {
        status: volume.status,
        multiattach: volume.multiattach,
        bootable: volume.bootable,
        availability_zone: volume.availability_zone,
        attachments: volume
            .attachments
            .into_iter()
            .map(|attachment| CinderAttachment {
                server: ServerId::new(attachment.server_id),
                attachment_id: attachment.attachment_id.map(AttachmentId::new),
                detaching,
            })
            .collect(),
    })
}

/// Above this many volumes, one paged list of the project's volumes costs fewer requests than
/// reading each.
const LIST_ABOVE: usize = 50;

impl OpenStack {
    async fn observe_volume(&self, volume: &VolumeId) -> Result<BackendVolume, Error> {
        Ok(match self.cinder.volume(volume.as_str()).await? {
            Some(found) => volume_view(found),
            None => BackendVolume::NotFound,
        })
    }
}

impl Backend for OpenStack {
    fn manages(&self, driver: &Driver) -> bool {
        matches!(driver, Driver::CinderCsi | Driver::InTreeCinder)
    }

    async fn observe_node(&self, node: &NodeView) -> StorageView {
        match self.find_server(node).await {
            Ok(view) => view,
            Err(err) => StorageView::Error {
                message: err.to_string(),
            },
        }
    }

    fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    async fn observe_volumes(
        &self,
        volumes: &[(Driver, VolumeId)],
    ) -> Vec<Result<BackendVolume, Error>> {
        let volumes: Vec<&VolumeId> = volumes.iter().map(|(_, id)| id).collect();
        let mut listed: BTreeMap<String, BackendVolume> = BTreeMap::new();
        if volumes.len() > LIST_ABOVE {
            match self.cinder.volumes().await {
                Ok(all) => {
                    let wanted: BTreeSet<&str> = volumes.iter().map(|id| id.as_str()).collect();
                    listed = all
                        .into_iter()
                        .filter(|volume| wanted.contains(volume.id.as_str()))
                        .map(|volume| (volume.id.clone(), volume_view(volume)))
                        .collect();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Could not list the volumes; reading each");
                }
            }
        }
        // Anything the list did not show is read on its own: only Cinder's answer for that id
        // says whether it exists.
        let reads = bounded(
            volumes
                .iter()
                .filter(|volume| !listed.contains_key(volume.as_str()))
                .map(|volume| self.observe_volume(volume))
                .collect(),
        )
        .await;
        let mut reads = reads.into_iter();
        volumes
            .iter()
            .map(|volume| match listed.remove(volume.as_str()) {
                Some(view) => Ok(view),
                None => reads.next().unwrap_or(Ok(BackendVolume::NotFound)),
            })
            .collect()
    }

    async fn server_gone(&self, server: &ServerId) -> Result<bool, Error> {
        Ok(self.nova.server(server.as_str()).await?.is_none())
    }

    async fn stop(&self, server: &ServerId) -> Result<(), Error> {
        Ok(self.nova.stop_server(server.as_str()).await?)
    }

    async fn stopped(&self, server: &ServerId) -> Result<bool, Error> {
        Ok(match self.nova.server(server.as_str()).await? {
            None => true,
            Some(server) => server.status == "SHUTOFF" && server.task_state.is_none(),
        })
    }

    async fn delete_server(&self, server: &ServerId) -> Result<(), Error> {
        Ok(self.nova.delete_server(server.as_str()).await?)
    }

    async fn evacuate(&self, server: &ServerId) -> Result<(), Error> {
        Ok(self.nova.evacuate_server(server.as_str()).await?)
    }

    async fn whereabouts(&self, server: &ServerId) -> Result<Option<Whereabouts>, Error> {
        Ok(self
            .nova
            .server(server.as_str())
            .await?
            .map(|server| Whereabouts {
                status: server.status,
                task_state: server.task_state,
                host: server.host,
            }))
    }

    async fn changed_servers(&self, since: jiff::Timestamp) -> Result<Vec<ChangedServer>, Error> {
        Ok(self
            .nova
            .servers_changed_since(since)
            .await?
            .into_iter()
            .map(|changed| ChangedServer {
                view: ServerView {
                    id: ServerId::new(changed.server.id),
                    name: changed.server.name,
                    matched_by: MatchRoute::ProviderId,
                    addresses: Some(changed.server.addresses),
                    status: changed.server.status,
                    power_state: changed.server.power_state,
                    task_state: changed.server.task_state,
                    vm_state: changed.server.vm_state,
                    host: changed.server.host,
                    host_state: None,
                    host_hidden: changed.server.host_hidden,
                },
                updated: changed.updated,
            })
            .collect())
    }

    async fn release(&self, release: &Release) -> Result<(), Error> {
        match release.via {
            ReleaseVia::Nova => Ok(self
                .nova
                .detach_volume(release.server.as_str(), release.volume.as_str())
                .await?),
            ReleaseVia::CinderStaleAttachment => {
                let Some(attachment) = &release.attachment_id else {
                    return Err(Error::Unsupported(format!(
                        "Cinder gives no attachment id for volume {} on server {}: release it \
                         as an admin with `cinder reset-state --attach-status detached {}`",
                        release.volume, release.server, release.volume
                    )));
                };
                Ok(self.cinder.delete_attachment(attachment.as_str()).await?)
            }
        }
    }

    async fn release_state(&self, release: &Release) -> Result<ReleaseState, Error> {
        let Some(volume) = self.cinder.volume(release.volume.as_str()).await? else {
            return Ok(ReleaseState::Pending(
                "not shown: Cinder answers 404 for the volume".to_owned(),
            ));
        };
        // Released: no attachment to the server, and the very attachment released (when its
        // id is known) gone too.
        let held = volume.attachments.iter().any(|attachment| {
            attachment.server_id == release.server.as_str()
                || release
                    .attachment_id
                    .as_ref()
                    .is_some_and(|id| attachment.attachment_id.as_deref() == Some(id.as_str()))
        });
        Ok(if held {
            ReleaseState::Pending(volume.status)
        } else {
            ReleaseState::Released
        })
    }
}
