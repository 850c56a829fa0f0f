//! Plain observation data: what the observer read of one cluster and its storage backend at one
//! instant, handed to the planner ([`crate::plan`]) as an [`Observation`].
//!
//! Nothing here decides anything. "Not read" is always explicit (`Option::None`,
//! [`StorageView::Unobserved`], [`StorageView::Error`]) so that the planner can refuse to act on
//! what it does not know (safety rule S2).

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The Node annotation holding the remediator's [`Progress`] record (JSON).
pub const PROGRESS_ANNOTATION: &str = "cinder-remediator.io/progress";

/// Key of the taint that tells Kubernetes (1.28+) a node is shut down for good.
pub const OUT_OF_SERVICE_TAINT_KEY: &str = "node.kubernetes.io/out-of-service";
/// Value of the out-of-service taint the remediator adds.
pub const OUT_OF_SERVICE_TAINT_VALUE: &str = "nodeshutdown";
/// Effect of the out-of-service taint the remediator adds.
pub const OUT_OF_SERVICE_TAINT_EFFECT: &str = "NoExecute";

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a value.
            #[must_use]
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

id!(
    /// A Kubernetes Node name (also the LINSTOR satellite name).
    NodeName
);
id!(
    /// A Nova server UUID.
    ServerId
);
id!(
    /// A backend volume id: a Cinder volume UUID, or a LINSTOR resource name.
    VolumeId
);
id!(
    /// A PersistentVolume name.
    PvName
);
id!(
    /// A Cinder attachment id (`attachment_id` of a volume's attachment).
    AttachmentId
);
id!(
    /// A Node UID (`metadata.uid`): a Node deleted and re-created under its name has another.
    NodeUid
);
id!(
    /// A VolumeAttachment UID (`metadata.uid`), used as a delete precondition.
    VaUid
);
id!(
    /// A Kubernetes namespace.
    Namespace
);
id!(
    /// A Pod name.
    PodName
);
id!(
    /// A Pod UID (`metadata.uid`), used as a delete precondition.
    PodUid
);
id!(
    /// A PersistentVolumeClaim name (in a pod's namespace).
    ClaimName
);
id!(
    /// A VolumeAttachment name.
    VaName
);

/// Everything the planner knows about one cluster at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the observation was taken; the planner's only clock.
    pub now: Timestamp,
    /// Every Node of the cluster.
    pub nodes: Vec<NodeView>,
    /// Every PersistentVolume, with its backend volume when it was read.
    pub persistent_volumes: Vec<PvView>,
    /// Every PersistentVolumeClaim and the PV it is bound to.
    pub claims: Vec<ClaimView>,
    /// Every Pod.
    pub pods: Vec<PodView>,
    /// Every VolumeAttachment.
    pub volume_attachments: Vec<VaView>,
    /// Servers that hold attachments of managed volumes, are no node's server, and for which
    /// Nova answered 404: their attachments are stale (see [`crate::plan::Orphan`]).
    #[serde(default)]
    pub gone_servers: Vec<ServerId>,
    /// The OpenStack region the backend's session reaches (`region_name`), when configured: a
    /// providerID naming another region is no match, whatever Nova says about its server.
    #[serde(default)]
    pub region: Option<String>,
    /// Every Deployment, when they were read (`diagnose` reads them; `remediate` and `run` do
    /// not, and leave this empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentView>,
    /// Why the Deployments could not be read (the API server refused the list), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments_unread: Option<String>,
}

/// The status of a Node's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Readiness {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`: the kubelet stopped reporting (also: no Ready condition at all).
    Unknown,
}

impl Readiness {
    /// Whether the node is Ready.
    #[must_use]
    pub fn is_ready(self) -> bool {
        self == Self::True
    }
}

/// One Kubernetes Node, with the backend's view of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node name.
    pub name: NodeName,
    /// `metadata.uid`; every write to the Node is guarded by it.
    #[serde(default)]
    pub uid: Option<NodeUid>,
    /// Status of the Ready condition.
    pub ready: Readiness,
    /// `lastTransitionTime` of the Ready condition.
    pub ready_since: Timestamp,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.providerID` (`openstack:///UUID` or `openstack://REGION/UUID`).
    pub provider_id: Option<String>,
    /// InternalIP addresses.
    pub addresses: Vec<String>,
    /// The `topology.kubernetes.io/zone` label, when set.
    pub zone: Option<String>,
    /// The remediator's own record in the [`PROGRESS_ANNOTATION`] annotation, when present.
    pub progress: Option<Progress>,
    /// Why the [`PROGRESS_ANNOTATION`] annotation could not be read, when it is present but not
    /// a progress record: nothing is done on the node until an operator fixes or removes it.
    #[serde(default)]
    pub progress_error: Option<String>,
    /// What the storage backend says about this node.
    pub storage: StorageView,
    /// LINSTOR's view of the node when it is seen through Nova (a node with Cinder and LINSTOR
    /// volumes): its LINSTOR volumes are judged by their replicas, as on a LINSTOR-only node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellite: Option<LinstorNodeView>,
    /// Nova reported the node's server dead before (or without) the kubelet's heartbeat
    /// expiring: the cloud-side watch (`run --watch-cloud`) saw it change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_death: Option<CloudDeath>,
    /// `spec.renewTime` of the node's kubelet Lease (`kube-node-lease`), read when the node has a
    /// [`CloudDeath`]: a kubelet that renewed since contradicts Nova.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_renewed: Option<Timestamp>,
}

/// Nova reported a node's server dead, seen from the cloud side (a `changes-since` list of
/// servers), before the node's Ready condition says anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudDeath {
    /// The server Nova reported; it counts only when the node's providerID names it.
    pub server: ServerId,
    /// When Nova recorded the change: the server's `updated_at`. The grace runs from here.
    pub at: Timestamp,
}

impl NodeView {
    /// The server id in `spec.providerID`, when it is an OpenStack provider id.
    #[must_use]
    pub fn provider_server_id(&self) -> Option<ServerId> {
        let (_region, id) = self.provider_parts()?;
        (!id.is_empty()).then(|| ServerId::new(id))
    }

    /// The region in `spec.providerID` (`openstack://REGION/UUID`), when it names one.
    #[must_use]
    pub fn provider_region(&self) -> Option<&str> {
        let (region, _id) = self.provider_parts()?;
        (!region.is_empty()).then_some(region)
    }

    fn provider_parts(&self) -> Option<(&str, &str)> {
        let rest = self.provider_id.as_deref()?.strip_prefix("openstack://")?;
        rest.rsplit_once('/')
    }

    /// The node's [`CloudDeath`], when it is about the server the node's providerID names (a
    /// report about any other server says nothing about this node).
    #[must_use]
    pub fn reported_dead(&self) -> Option<&CloudDeath> {
        let death = self.cloud_death.as_ref()?;
        (self.provider_server_id().as_ref() == Some(&death.server)).then_some(death)
    }

    /// Whether the node counts as unhealthy (for the storm guard, and not as a place for
    /// replacements): not Ready, or its server reported dead from the cloud side.
    #[must_use]
    pub fn is_unhealthy(&self) -> bool {
        !self.ready.is_ready() || self.reported_dead().is_some()
    }

    /// Whether the node carries the out-of-service taint (any value or effect).
    #[must_use]
    pub fn has_out_of_service_taint(&self) -> bool {
        self.taints
            .iter()
            .any(|t| t.key == OUT_OF_SERVICE_TAINT_KEY)
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value, when set.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`.
    #[must_use]
    pub fn out_of_service() -> Self {
        Self {
            key: OUT_OF_SERVICE_TAINT_KEY.to_owned(),
            value: Some(OUT_OF_SERVICE_TAINT_VALUE.to_owned()),
            effect: OUT_OF_SERVICE_TAINT_EFFECT.to_owned(),
        }
    }
}

/// The remediator's crash-safety record for one node (S7), kept in a Node annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Releases the executor has verified (read back): never planned again.
    #[serde(default)]
    pub released: Vec<ReleasedVolume>,
    /// Whether the remediator added the out-of-service taint (so it may remove it).
    #[serde(default)]
    pub out_of_service_taint: bool,
    /// The delete or evacuate of the node's server the remediator asked Nova for, written
    /// before the request is sent: a record means "never send it again" (S7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_action: Option<HostAction>,
}

impl Progress {
    /// Whether the release of this very attachment (Cinder's attachment id) of `volume` from
    /// `server` is recorded as verified. A record of an earlier attachment (an earlier incident)
    /// does not count; without an attachment id on either side, nothing counts.
    #[must_use]
    pub fn has_released(
        &self,
        volume: &VolumeId,
        server: &ServerId,
        attachment: Option<&AttachmentId>,
    ) -> bool {
        let Some(attachment) = attachment else {
            return false;
        };
        self.released.iter().any(|r| {
            r.volume == *volume
                && r.server == *server
                && r.attachment_id.as_ref() == Some(attachment)
        })
    }
}

/// A dead-host recovery the remediator asked Nova for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAction {
    /// Which.
    pub kind: HostActionKind,
    /// The server.
    pub server: ServerId,
    /// Its compute host when the request was sent (forced down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When the request was about to be sent.
    pub at: Timestamp,
    /// The managed volumes it was to free (delete) or keep with the server (evacuate).
    #[serde(default)]
    pub volumes: Vec<VolumeId>,
}

/// How a server on a fenced, dead compute host is recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostActionKind {
    /// `DELETE /servers/{id}`: Nova's local delete frees the volumes at once; the node is lost.
    DeleteServer,
    /// The `evacuate` action: the server is rebuilt on another host with its volumes; the node
    /// comes back.
    Evacuate,
}

impl HostActionKind {
    /// As flags and records spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeleteServer => "delete-server",
            Self::Evacuate => "evacuate",
        }
    }
}

/// One verified release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReleasedVolume {
    /// The volume.
    pub volume: VolumeId,
    /// The server it was released from.
    pub server: ServerId,
    /// The Cinder attachment that was removed: the record's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<AttachmentId>,
}

/// The storage backend's view of one node: one enum for OpenStack and LINSTOR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StorageView {
    /// Not looked at (the node is Ready or within its grace period).
    Unobserved,
    /// The backend could not be read (API error, timeout).
    Error {
        /// What went wrong.
        message: String,
    },
    /// More than one server matches the node (by name or address).
    Ambiguous {
        /// The matching servers.
        candidates: Vec<ServerId>,
    },
    /// No server matches the node. Not a proof of death.
    NoMatch,
    /// Nova answered 404 for the server named by the node's providerID: the server is gone.
    ServerGone {
        /// The server id from the providerID.
        id: ServerId,
    },
    /// The node's Nova server.
    #[serde(rename = "openstack")]
    OpenStack(ServerView),
    /// The node's LINSTOR satellite.
    Linstor(LinstorNodeView),
}

/// A Nova server, as `GET /servers/{id}` (admin fields included) and `os-services` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Server UUID.
    pub id: ServerId,
    /// Server name.
    pub name: String,
    /// How the node was matched to this server.
    #[serde(default)]
    pub matched_by: MatchRoute,
    /// Every IP address of the server (`addresses`), when Nova showed them.
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// `status`, as Nova spells it (`ACTIVE`, `SHUTOFF`, ...).
    pub status: String,
    /// `OS-EXT-STS:power_state` (0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 6 CRASHED, 7 SUSPENDED).
    pub power_state: Option<u8>,
    /// `OS-EXT-STS:task_state`; `None` when Nova says null.
    pub task_state: Option<String>,
    /// `OS-EXT-STS:vm_state`.
    pub vm_state: Option<String>,
    /// `OS-EXT-SRV-ATTR:host`.
    pub host: Option<String>,
    /// The nova-compute service of that host, when read.
    pub host_state: Option<HostView>,
    /// Nova hides the compute host or its service from these credentials (its default policy
    /// shows `OS-EXT-SRV-ATTR:host`, `host_status` and `os-services` to admins only).
    #[serde(default)]
    pub host_hidden: bool,
}

/// How a node was matched to its Nova server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRoute {
    /// The node's `spec.providerID` names the server.
    #[default]
    ProviderId,
    /// The server has the node's name.
    Name,
    /// The server has one of the node's InternalIP addresses.
    Address,
}

/// A nova-compute service, from `os-services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// `state` is `up`.
    pub up: bool,
    /// `forced_down` is true: an operator or fencing agent declared the host fenced.
    pub forced_down: bool,
}

/// A LINSTOR satellite, from `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinstorNodeView {
    /// `connection_status` (`ONLINE`, `OFFLINE`, ...).
    pub connection_status: String,
}

/// The CSI driver (or in-tree plugin) of a PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Driver {
    /// `cinder.csi.openstack.org`.
    CinderCsi,
    /// The in-tree Cinder plugin (`spec.cinder`), shown as `kubernetes.io/cinder`.
    InTreeCinder,
    /// `linstor.csi.linbit.com`.
    Linstor,
    /// Any other driver.
    Other(String),
}

/// Which backend a volume or node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Nova and Cinder.
    #[serde(rename = "openstack")]
    OpenStack,
    /// LINSTOR / DRBD.
    Linstor,
}

impl Driver {
    /// The driver's name, as Kubernetes spells it.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::CinderCsi => "cinder.csi.openstack.org",
            Self::InTreeCinder => "kubernetes.io/cinder",
            Self::Linstor => "linstor.csi.linbit.com",
            Self::Other(name) => name,
        }
    }

    /// The backend that holds this driver's volumes, when it is one the remediator knows.
    #[must_use]
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Self::CinderCsi | Self::InTreeCinder => Some(Backend::OpenStack),
            Self::Linstor => Some(Backend::Linstor),
            Self::Other(_) => None,
        }
    }
}

impl From<String> for Driver {
    fn from(name: String) -> Self {
        match name.as_str() {
            "cinder.csi.openstack.org" => Self::CinderCsi,
            "kubernetes.io/cinder" => Self::InTreeCinder,
            "linstor.csi.linbit.com" => Self::Linstor,
            _ => Self::Other(name),
        }
    }
}

impl From<Driver> for String {
    fn from(driver: Driver) -> Self {
        driver.name().to_owned()
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PersistentVolume and, when read, its backend volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvView {
    /// PV name.
    pub name: PvName,
    /// Driver.
    pub driver: Driver,
    /// The CSI `volumeHandle` (or in-tree `volumeID`): a Cinder volume id or LINSTOR resource.
    pub volume_id: VolumeId,
    /// `spec.claimRef`, when bound.
    pub claim: Option<ClaimRef>,
    /// `spec.accessModes`.
    pub access_modes: Vec<String>,
    /// The backend volume; `None` when it was not read (no action on it, S2).
    pub backend: Option<BackendVolume>,
}

/// A claim reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClaimRef {
    /// Namespace.
    pub namespace: Namespace,
    /// Claim name.
    pub name: ClaimName,
}

/// The backend's view of one volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendVolume {
    /// A Cinder volume.
    Cinder(CinderVolumeView),
    /// A LINSTOR resource, replica by replica.
    Linstor(LinstorResourceView),
    /// The backend answered that it has no such volume (Cinder's 404). With these credentials,
    /// region and project it is invisible: *unread*, never free.
    NotFound,
}

/// A Cinder volume, from `GET /volumes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CinderVolumeView {
    /// `status` (`in-use`, `available`, `detaching`, `error_detaching`, ...).
    pub status: String,
    /// Whether the volume may be attached to several servers.
    pub multiattach: bool,
    /// Whether the volume is bootable (never released: it may be a root disk).
    pub bootable: bool,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Current attachments.
    pub attachments: Vec<CinderAttachment>,
}

/// One attachment of a Cinder volume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CinderAttachment {
    /// The server holding it.
    pub server: ServerId,
    /// The attachment id, when Cinder gives it.
    pub attachment_id: Option<AttachmentId>,
    /// A detach of this attachment is in progress.
    pub detaching: bool,
}

/// A LINSTOR resource (the PV's `volume_id` is its name), replica by replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinstorResourceView {
    /// Every replica, including the one on the failed node.
    pub replicas: Vec<ReplicaView>,
}

/// One DRBD replica of a LINSTOR resource, from `GET /v1/view/resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The node holding the replica.
    pub node: NodeName,
    /// `state.in_use`; `None` when the controller does not know.
    pub in_use: Option<bool>,
    /// `layer_object.drbd.may_promote`; `None` when unknown.
    pub may_promote: Option<bool>,
    /// `layer_object.drbd.connections`: peer node -> connected.
    pub connections: BTreeMap<NodeName, bool>,
    /// The first volume's `state.disk_state` (`UpToDate`, `Diskless`, `Outdated`, ...), for the
    /// operator; `None` when not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
}

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimView {
    /// Namespace.
    pub namespace: Namespace,
    /// Name.
    pub name: ClaimName,
    /// `spec.volumeName`, when bound.
    pub volume: Option<PvName>,
}

/// A Pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodView {
    /// Namespace.
    pub namespace: Namespace,
    /// Name.
    pub name: PodName,
    /// UID.
    pub uid: PodUid,
    /// `spec.nodeName`, when scheduled.
    pub node: Option<NodeName>,
    /// `status.phase` (`Pending`, `Running`, ...).
    pub phase: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The claims its volumes use (in its namespace).
    pub claims: Vec<ClaimName>,
    /// Its owner reference, when it has one.
    pub owner: Option<OwnerRef>,
    /// Waiting reason of a container (`ContainerCreating`, ...).
    pub waiting_reason: Option<String>,
    /// Volume ids or PV names named by `FailedAttachVolume` / Multi-Attach / `FailedMount`
    /// attach Events about this pod.
    pub attach_failures: Vec<String>,
    /// Annotated [`KEEP_ANNOTATION`]`: keep`: never force-deleted by the remediator.
    #[serde(default)]
    pub keep: bool,
    /// Labelled [`PIRAEUS_LABEL`]`=remove`: opted in, as the Piraeus HA controller reads it.
    #[serde(default)]
    pub piraeus_remove: bool,
}

/// The Piraeus HA controller's opt-in label (value `remove`).
pub const PIRAEUS_LABEL: &str = "linstor.csi.linbit.com/on-storage-lost";

/// The Pod annotation by which an operator opts a pod out of force-deletion (value `keep`).
pub const KEEP_ANNOTATION: &str = "cinder-remediator.io/on-node-lost";

/// A Deployment (`apps/v1`), as far as its pods' volumes and updates go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Namespace.
    pub namespace: Namespace,
    /// Name.
    pub name: String,
    /// `spec.replicas` (1 when absent, as the API server defaults it).
    pub replicas: u32,
    /// `spec.strategy.type` is `RollingUpdate` (also when absent: the API server's default).
    pub rolling_update: bool,
    /// The claims its pod template's volumes name (in its namespace).
    pub claims: Vec<ClaimName>,
}

/// An owner reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    /// Kind (`ReplicaSet`, `StatefulSet`, ...).
    pub kind: String,
    /// Name.
    pub name: String,
    /// `controller: true`: the owner recreates the pod when it is deleted.
    pub controller: bool,
}

/// A VolumeAttachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaView {
    /// Name.
    pub name: VaName,
    /// `metadata.uid`: the delete precondition (a new node's VolumeAttachment has the same name).
    #[serde(default)]
    pub uid: Option<VaUid>,
    /// `spec.nodeName`.
    pub node: NodeName,
    /// `spec.source.persistentVolumeName`; `None` for inline volumes.
    pub pv: Option<PvName>,
    /// `spec.attacher`.
    pub attacher: String,
    /// `status.attached`.
    pub attached: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}
