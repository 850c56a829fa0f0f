//! Storage backends: one trait, implemented for OpenStack (Nova + Cinder) and LINSTOR, and by
//! [`storage::Storage`], the cluster's configured backends as one.
//!
//! A backend reads (a node's storage side, a volume) and acts (stop a server, release a volume,
//! read back whether that worked). It never decides: the fence verdict and the plan come from
//! the pure [`fencing::plan`] over what it read.

pub mod linstor;
pub mod openstack;
pub mod storage;

use std::future::Future;

use fencing::model::{
    AttachmentId, BackendVolume, Driver, LinstorNodeView, NodeView, ServerId, ServerView,
    StorageView, VolumeId,
};
use fencing::plan::ReleaseVia;
use jiff::Timestamp;

/// A failed backend call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Nova or Cinder call failed.
    #[error(transparent)]
    OpenStack(#[from] crate::openstack::error::ApiError),
    /// A LINSTOR controller call failed.
    #[error("{0}")]
    Linstor(crate::openstack::error::ApiError),
    /// The action does not apply to this backend, or lacks what it needs.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Whether a retry later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::OpenStack(err) | Self::Linstor(err) => err.is_transient(),
            Self::Unsupported(_) => false,
        }
    }

    /// A bounded label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::OpenStack(err) | Self::Linstor(err) => err.metric_label(),
            Self::Unsupported(_) => "unsupported",
        }
    }
}

/// One release to perform or check: the fields of a `ReleaseVolume` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The server (or node) holding the attachment.
    pub server: ServerId,
    /// The volume.
    pub volume: VolumeId,
    /// The attachment, when known.
    pub attachment_id: Option<AttachmentId>,
    /// Through which API.
    pub via: ReleaseVia,
}

/// Whether a release is done, as read back from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseState {
    /// The holder's attachment is gone.
    Released,
    /// Still attached or detaching; the status the backend shows.
    Pending(String),
}

/// Where a server is, as Nova shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whereabouts {
    /// Nova status (`ACTIVE`, `REBUILD`, `ERROR` ...).
    pub status: String,
    /// The task in progress, if any.
    pub task_state: Option<String>,
    /// Its compute host, when shown.
    pub host: Option<String>,
}

/// A server the cloud changed, from the cloud-side watch: as a list shows it (no compute
/// service read), and when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedServer {
    /// The server; status `DELETED` for a deleted one.
    pub view: ServerView,
    /// When the cloud last changed it.
    pub updated: Timestamp,
}

/// A storage backend.
pub trait Backend: Send + Sync {
    /// Whether PVs of this driver live in this backend.
    fn manages(&self, driver: &Driver) -> bool;

    /// The backend's view of a node: its server (matched by providerID, name or address) or
    /// why none could be read. Never fails: an error is a view ([`StorageView::Error`]).
    fn observe_node(&self, node: &NodeView) -> impl Future<Output = StorageView> + Send;

    /// LINSTOR's view of a node that is seen through another backend (Nova), when LINSTOR is
    /// configured and shows it as a satellite.
    fn observe_satellite(
        &self,
        _node: &NodeView,
    ) -> impl Future<Output = Option<LinstorNodeView>> + Send {
        std::future::ready(None)
    }

    /// The region the backend's session reaches, when configured (OpenStack).
    fn region(&self) -> Option<&str>;

    /// Volumes with their attachments, in the order asked; [`BackendVolume::NotFound`] for one
    /// the backend answers it has none of (unread, never free). A few are read one by one; many
    /// (`diagnose`'s scan of every PV) may be read as one paged list.
    fn observe_volumes(
        &self,
        volumes: &[(Driver, VolumeId)],
    ) -> impl Future<Output = Vec<Result<BackendVolume, Error>>> + Send;

    /// Whether a server no longer exists (for stale attachments of servers that are no node).
    fn server_gone(&self, server: &ServerId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Asks a server to power off (stop fencing).
    fn stop(&self, server: &ServerId) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether a server shows stopped (`SHUTOFF`, no task) or gone.
    fn stopped(&self, server: &ServerId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Asks Nova to delete a server whose compute host is forced down (dead-host recovery).
    fn delete_server(&self, server: &ServerId) -> impl Future<Output = Result<(), Error>> + Send;

    /// Asks Nova to evacuate a server whose compute host is forced down (dead-host recovery).
    fn evacuate(&self, server: &ServerId) -> impl Future<Output = Result<(), Error>> + Send;

    /// Where a server is now (`None`: gone).
    fn whereabouts(
        &self,
        server: &ServerId,
    ) -> impl Future<Output = Result<Option<Whereabouts>, Error>> + Send;

    /// Every server the cloud changed at or after `since`, deleted ones included: one paged
    /// list for the whole project (`run --watch-cloud`).
    fn changed_servers(
        &self,
        _since: Timestamp,
    ) -> impl Future<Output = Result<Vec<ChangedServer>, Error>> + Send {
        std::future::ready(Err(Error::Unsupported(
            "this backend lists no changed servers".to_owned(),
        )))
    }

    /// Releases a volume from its holder.
    fn release(&self, release: &Release) -> impl Future<Output = Result<(), Error>> + Send;

    /// Reads back whether a release is done.
    fn release_state(
        &self,
        release: &Release,
    ) -> impl Future<Output = Result<ReleaseState, Error>> + Send;
}
