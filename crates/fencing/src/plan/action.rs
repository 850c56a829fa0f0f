//! What a plan says: [`Action`]s (imperative verb + target) in [`Step`]s with their [`Reason`],
//! and why a node ([`Skip`]) or a volume ([`Hold`]) is left alone.

use std::fmt;

use jiff::SignedDuration;
use serde::Serialize;

use crate::model::{
    AttachmentId, Namespace, NodeName, NodeUid, PodName, PodUid, PvName, ServerId, VaName, VaUid,
    VolumeId,
};

/// One action, in the order the executor runs it, with why it is safe and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The node whose sequence this step belongs to (the executor stops a node's sequence at
    /// the first failure); `None` for stale attachments of servers that are no node.
    pub node: Option<NodeName>,
    /// What to do.
    pub action: Action,
    /// Why, as a bounded category (Event reason, metric label).
    pub reason: Reason,
    /// Why, for a human: the fence verdict or the observed fact.
    pub detail: String,
    /// Volumes released earlier in this plan that must be verified released first.
    pub after: Vec<VolumeId>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  [{}: {}]", self.action, self.reason, self.detail)
    }
}

/// How a volume is released from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseVia {
    /// `DELETE /servers/{server}/os-volume_attachments/{volume}` (the server exists).
    Nova,
    /// Delete the attachment on the Cinder side: only for servers that no longer exist.
    CinderStaleAttachment,
}

/// A mutating action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Stop a server (`os-stop`), to fence it (opt-in `fence: stop`).
    StopServer {
        /// The node the server runs.
        node: NodeName,
        /// The server.
        server: ServerId,
    },
    /// Delete the server of a node whose compute host is forced down (opt-in `dead-host:
    /// delete-server`): Nova's local delete removes its Cinder attachments, the volumes become
    /// `available`. Verified when Nova answers 404 and Cinder shows none of `volumes` on it.
    DeleteServer {
        /// The node the server ran.
        node: NodeName,
        /// The server.
        server: ServerId,
        /// Its forced-down compute host.
        host: Option<String>,
        /// The managed volumes it frees.
        volumes: Vec<VolumeId>,
    },
    /// Evacuate the server of a node whose compute host is forced down (opt-in `dead-host:
    /// evacuate`): Nova rebuilds it on another host with its volumes, and the node comes back.
    /// Verified when Nova shows it rebuilding or rebuilt elsewhere.
    EvacuateServer {
        /// The node the server runs.
        node: NodeName,
        /// The server.
        server: ServerId,
        /// Its forced-down compute host.
        host: Option<String>,
        /// The managed volumes that stay with it.
        volumes: Vec<VolumeId>,
    },
    /// Delete the Node of a server the remediator deleted (UID precondition), as the cloud
    /// provider would.
    DeleteNode {
        /// The node.
        node: NodeName,
        /// UID precondition, when observed.
        uid: Option<NodeUid>,
    },
    /// Release a volume from a fenced (or gone) server.
    ReleaseVolume {
        /// The node the server ran (for a stale attachment of a gone server: none).
        node: Option<NodeName>,
        /// The server holding the attachment.
        server: ServerId,
        /// The volume.
        volume: VolumeId,
        /// The PV it backs.
        pv: PvName,
        /// The attachment to remove, when Cinder gave its id.
        attachment_id: Option<AttachmentId>,
        /// Through which API.
        via: ReleaseVia,
    },
    /// Delete a VolumeAttachment of the fenced node (UID precondition). Its external-attacher
    /// finalizer is removed only once the backend, read again at that moment, shows the
    /// volume's attachment to the node's server gone.
    DeleteVolumeAttachment {
        /// The VolumeAttachment.
        name: VaName,
        /// UID precondition, when observed.
        uid: Option<VaUid>,
        /// Its node.
        node: NodeName,
        /// Its PV.
        pv: PvName,
        /// The PV's backend volume.
        volume: VolumeId,
        /// The node's Nova server (OpenStack); `None` for LINSTOR.
        server: Option<ServerId>,
        /// The Cinder attachment released for it, when this plan or an earlier run released one.
        attachment_id: Option<AttachmentId>,
    },
    /// Force-delete a pod of the fenced node (grace period 0, UID precondition).
    ForceDeletePod {
        /// Namespace.
        namespace: Namespace,
        /// Name.
        name: PodName,
        /// UID precondition.
        uid: PodUid,
        /// The fenced node it ran on.
        node: NodeName,
    },
    /// Add `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`.
    TaintNode {
        /// The fenced node.
        node: NodeName,
    },
    /// Delete a replacement pod waiting on a freed volume so that its controller recreates it
    /// at once (UID precondition, normal grace period).
    KickPod {
        /// Namespace.
        namespace: Namespace,
        /// Name.
        name: PodName,
        /// UID precondition.
        uid: PodUid,
        /// The (Ready) node it waits on.
        node: NodeName,
        /// The freed volume it waits for.
        volume: VolumeId,
    },
    /// Remove the out-of-service taint the remediator added, from a node Ready again.
    RemoveTaint {
        /// The recovered node.
        node: NodeName,
    },
    /// Remove the remediator's progress record from a node Ready again.
    ClearProgress {
        /// The recovered node.
        node: NodeName,
    },
}

/// The out-of-service taint as `kubectl taint` spells it (`KEY=VALUE:EFFECT`); a test checks it
/// against the parts in [`crate::model`].
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute";

impl Action {
    /// The command an operator would type to do the same by hand.
    #[must_use]
    pub fn manual_command(&self) -> String {
        match self {
            Self::StopServer { server, .. } => format!("openstack server stop {server}"),
            Self::DeleteServer { server, .. } => format!("openstack server delete {server}"),
            Self::EvacuateServer { server, .. } => format!("openstack server evacuate {server}"),
            Self::DeleteNode { node, .. } => format!("kubectl delete node {node}"),
            Self::ReleaseVolume {
                server,
                volume,
                via: ReleaseVia::Nova,
                ..
            } => format!("openstack server remove volume {server} {volume}"),
            Self::ReleaseVolume {
                attachment_id: Some(attachment),
                via: ReleaseVia::CinderStaleAttachment,
                ..
            } => format!("cinder --os-volume-api-version 3.27 attachment-delete {attachment}"),
            Self::ReleaseVolume {
                volume,
                attachment_id: None,
                via: ReleaseVia::CinderStaleAttachment,
                ..
            } => format!("openstack volume set --detached --state available {volume}"),
            Self::DeleteVolumeAttachment { name, .. } => {
                format!("kubectl delete volumeattachment {name}")
            }
            Self::ForceDeletePod {
                namespace, name, ..
            } => format!("kubectl delete pod -n {namespace} {name} --grace-period=0 --force"),
            Self::TaintNode { node } => {
                format!("kubectl taint nodes {node} {OUT_OF_SERVICE_TAINT}")
            }
            Self::KickPod {
                namespace, name, ..
            } => format!("kubectl delete pod -n {namespace} {name}"),
            Self::RemoveTaint { node } => {
                format!("kubectl taint nodes {node} {OUT_OF_SERVICE_TAINT}-")
            }
            Self::ClearProgress { node } => format!(
                "kubectl annotate node {node} {}-",
                crate::model::PROGRESS_ANNOTATION
            ),
        }
    }

    /// Bounded label for metrics (`action="release_volume"`).
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::StopServer { .. } => "stop_server",
            Self::DeleteServer { .. } => "delete_server",
            Self::EvacuateServer { .. } => "evacuate_server",
            Self::DeleteNode { .. } => "delete_node",
            Self::ReleaseVolume { .. } => "release_volume",
            Self::DeleteVolumeAttachment { .. } => "delete_volume_attachment",
            Self::ForceDeletePod { .. } => "force_delete_pod",
            Self::TaintNode { .. } => "taint_node",
            Self::KickPod { .. } => "kick_pod",
            Self::RemoveTaint { .. } => "remove_taint",
            Self::ClearProgress { .. } => "clear_progress",
        }
    }

    /// Whether the action mutates the cloud (Nova/Cinder) rather than Kubernetes.
    #[must_use]
    pub fn is_cloud_action(&self) -> bool {
        matches!(
            self,
            Self::StopServer { .. }
                | Self::DeleteServer { .. }
                | Self::EvacuateServer { .. }
                | Self::ReleaseVolume { .. }
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StopServer { node, server } => write!(f, "stop server {server} of node {node}"),
            Self::DeleteServer {
                node,
                server,
                host,
                volumes,
            } => write!(
                f,
                "delete server {server} of node {node} on forced-down host {} (frees {} volume(s))",
                host.as_deref().unwrap_or("(unknown)"),
                volumes.len()
            ),
            Self::EvacuateServer {
                node, server, host, ..
            } => write!(
                f,
                "evacuate server {server} of node {node} from forced-down host {}",
                host.as_deref().unwrap_or("(unknown)")
            ),
            Self::DeleteNode { node, .. } => {
                write!(f, "delete node {node} (its server is deleted)")
            }
            Self::ReleaseVolume {
                server,
                volume,
                pv,
                via,
                ..
            } => {
                let via = match via {
                    ReleaseVia::Nova => "Nova",
                    ReleaseVia::CinderStaleAttachment => "Cinder (stale attachment)",
                };
                write!(
                    f,
                    "release volume {volume} ({pv}) from server {server} via {via}"
                )
            }
            Self::DeleteVolumeAttachment { name, node, pv, .. } => {
                write!(f, "delete VolumeAttachment {name} ({pv} on {node})")
            }
            Self::ForceDeletePod {
                namespace,
                name,
                node,
                ..
            } => write!(f, "force-delete pod {namespace}/{name} on {node}"),
            Self::TaintNode { node } => write!(f, "taint node {node} {OUT_OF_SERVICE_TAINT}"),
            Self::KickPod {
                namespace,
                name,
                node,
                volume,
                ..
            } => write!(
                f,
                "delete waiting pod {namespace}/{name} on {node} so it retries volume {volume}"
            ),
            Self::RemoveTaint { node } => write!(f, "remove out-of-service taint from {node}"),
            Self::ClearProgress { node } => write!(f, "clear progress record of {node}"),
        }
    }
}

/// Why an action is taken: a bounded category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// Nova answered 404 for the server: nothing can write through its attachments.
    ServerGone,
    /// The server is `SHUTOFF` / `SHELVED_OFFLOADED` or powered off, with no task in progress.
    ServerStopped,
    /// The server's power state is `CRASHED`, with no task in progress.
    ServerCrashed,
    /// The server's compute host is forced down (trusted by policy).
    HostForcedDown,
    /// The LINSTOR satellite is lost and the surviving replicas may take over.
    ReplicasFenced,
    /// The server is stopped to fence it (opt-in stop fencing).
    StopToFence,
    /// A replacement pod waits on a volume this plan frees.
    ReplacementWaiting,
    /// The node is Ready again.
    NodeRecovered,
}

impl Reason {
    /// PascalCase, for a Kubernetes Event's `reason`.
    #[must_use]
    pub fn as_event_reason(self) -> &'static str {
        match self {
            Self::ServerGone => "ServerGone",
            Self::ServerStopped => "ServerStopped",
            Self::ServerCrashed => "ServerCrashed",
            Self::HostForcedDown => "HostForcedDown",
            Self::ReplicasFenced => "ReplicasFenced",
            Self::StopToFence => "StopToFence",
            Self::ReplacementWaiting => "ReplacementWaiting",
            Self::NodeRecovered => "NodeRecovered",
        }
    }

    /// snake_case, for a metric label.
    #[must_use]
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::ServerGone => "server_gone",
            Self::ServerStopped => "server_stopped",
            Self::ServerCrashed => "server_crashed",
            Self::HostForcedDown => "host_forced_down",
            Self::ReplicasFenced => "replicas_fenced",
            Self::StopToFence => "stop_to_fence",
            Self::ReplacementWaiting => "replacement_waiting",
            Self::NodeRecovered => "node_recovered",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_event_reason())
    }
}

/// Why a node that is not Ready gets no action this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Skip {
    /// Not Ready for less than (or exactly) the grace period (S3).
    WithinGrace {
        /// Time left.
        remaining: SignedDuration,
    },
    /// The backend does not prove the node dead (S1).
    NotFenced {
        /// The verdict.
        detail: String,
    },
    /// The backend state is not known well enough to decide (S2).
    Unknown {
        /// What is unknown.
        detail: String,
    },
    /// The backend could not be read (S2).
    StorageError {
        /// The error.
        detail: String,
    },
    /// Several servers match the node (S2).
    Ambiguous {
        /// The matching servers.
        candidates: Vec<ServerId>,
    },
    /// No server matches the node: not a proof of death (S2).
    NoMatch,
    /// A volume the node may hold was not read (S2).
    VolumeUnread {
        /// Its PV.
        pv: PvName,
    },
    /// The backend has no such volume for these credentials (Cinder's 404): unread, not free.
    VolumeNotFound {
        /// Its PV.
        pv: PvName,
        /// The volume.
        volume: VolumeId,
    },
    /// The providerID names another region than the session's: Nova's answer says nothing.
    OtherRegion {
        /// The providerID's region.
        region: String,
        /// The session's region, when configured.
        session: Option<String>,
    },
    /// The server matched by name or address does not own the node's InternalIP.
    Mismatch {
        /// The matched server.
        server: ServerId,
        /// What disagrees.
        detail: String,
    },
    /// Nova says the server is gone and Cinder knows none of the node's volumes: these
    /// credentials see nothing of the node, which proves nothing.
    Invisible {
        /// The server of the providerID.
        server: ServerId,
    },
    /// Kubernetes and the backend disagree about where a volume is attached (S2).
    Contradiction {
        /// What disagrees.
        detail: String,
    },
    /// The node's progress annotation is present but unreadable.
    ProgressUnreadable {
        /// Why.
        detail: String,
    },
    /// Too many nodes are unhealthy at once: no action on any node (S4).
    StormGuard {
        /// Nodes not Ready.
        unhealthy: usize,
        /// All nodes.
        total: usize,
        /// The most that may be unhealthy for the remediator to act.
        limit: usize,
    },
    /// Two nodes of the observation have this name.
    DuplicateNode,
    /// Fenced, but the server's compute host is not up, so Nova refuses every detach: only a
    /// delete or an evacuate of the server frees its volumes, and the policy does not allow
    /// one (or the node does not qualify); what would.
    DeadHost {
        /// Why, and what to do.
        detail: String,
    },
    /// The remediator asked Nova to delete or evacuate the node's server (its progress record
    /// says so), and it is not asked again; or an evacuated node has not come back in time.
    HostActionRequested {
        /// What was asked, when, and what to check.
        detail: String,
    },
    /// The node's server was evacuated: waiting for the node to come back Ready.
    AwaitingReturn {
        /// Since when, where it is now, how long is left.
        detail: String,
    },
    /// Fenced, but every stuck volume is held (see the plan's `held` list).
    AllHeld,
    /// Fenced, but nothing of a managed driver is stuck on it (or all is done).
    NothingStuck,
}

impl Skip {
    /// Bounded label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::WithinGrace { .. } => "within_grace",
            Self::NotFenced { .. } => "not_fenced",
            Self::Unknown { .. } => "unknown",
            Self::StorageError { .. } => "storage_error",
            Self::Ambiguous { .. } => "ambiguous",
            Self::NoMatch => "no_match",
            Self::VolumeUnread { .. } => "volume_unread",
            Self::VolumeNotFound { .. } => "volume_not_found",
            Self::OtherRegion { .. } => "other_region",
            Self::Mismatch { .. } => "mismatch",
            Self::Invisible { .. } => "invisible",
            Self::Contradiction { .. } => "contradiction",
            Self::ProgressUnreadable { .. } => "progress_unreadable",
            Self::StormGuard { .. } => "storm_guard",
            Self::DuplicateNode => "duplicate_node",
            Self::DeadHost { .. } => "dead_host",
            Self::HostActionRequested { .. } => "host_action_requested",
            Self::AwaitingReturn { .. } => "awaiting_return",
            Self::AllHeld => "all_held",
            Self::NothingStuck => "nothing_stuck",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WithinGrace { remaining } => {
                // Whole seconds, rounded up: "1s left" until the grace is over, never "0s".
                let whole = remaining.as_secs() + i64::from(remaining.subsec_nanos() > 0);
                let left = SignedDuration::from_secs(whole);
                write!(f, "within the grace period ({left:#} left)")
            }
            Self::NotFenced { detail } => write!(f, "not fenced: {detail}"),
            Self::Unknown { detail } => write!(f, "unknown: {detail}"),
            Self::StorageError { detail } => write!(f, "backend error: {detail}"),
            Self::Ambiguous { candidates } => {
                let list: Vec<&str> = candidates.iter().map(ServerId::as_str).collect();
                write!(f, "ambiguous match: servers {}", list.join(", "))
            }
            Self::NoMatch => write!(
                f,
                "no server matches the node (by providerID, name or address): not a proof of death"
            ),
            Self::VolumeUnread { pv } => write!(f, "the volume of {pv} could not be read"),
            Self::VolumeNotFound { pv, volume } => write!(
                f,
                "Cinder answers 404 for volume {volume} of {pv}: invisible to these credentials (wrong region or project?), not a proof it is free"
            ),
            Self::OtherRegion {
                region,
                session: Some(session),
            } => write!(
                f,
                "the providerID names region {region}, the session reaches {session}: no match (use credentials for {region})"
            ),
            Self::OtherRegion {
                region,
                session: None,
            } => write!(
                f,
                "the providerID names region {region} and no region is configured: no match (configure region {region}: cloud.conf `region`, clouds.yaml `region_name`, or OS_REGION_NAME)"
            ),
            Self::Mismatch { detail, .. } => write!(f, "match not confirmed: {detail}"),
            Self::Invisible { server } => write!(
                f,
                "cannot see this node's server {server} nor its volumes: wrong region, project or credentials?"
            ),
            Self::Contradiction { detail } => write!(f, "contradiction: {detail}"),
            Self::ProgressUnreadable { detail } => write!(
                f,
                "the progress annotation is unreadable ({detail}): fix or remove it (`kubectl annotate node NODE {}-`)",
                crate::model::PROGRESS_ANNOTATION
            ),
            Self::StormGuard {
                unhealthy,
                total,
                limit,
            } => write!(
                f,
                "storm guard: {unhealthy} of {total} nodes are not Ready (limit {limit}): no action on any node"
            ),
            Self::DuplicateNode => write!(f, "two nodes of this name were observed"),
            Self::DeadHost { detail }
            | Self::HostActionRequested { detail }
            | Self::AwaitingReturn { detail } => f.write_str(detail),
            Self::AllHeld => write!(f, "fenced, but every stuck volume is held"),
            Self::NothingStuck => write!(f, "fenced, nothing left to release or clean"),
        }
    }
}

/// Why a stuck volume of a fenced node is left alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// The volume is bootable: it may be a root disk, never released (S5).
    Bootable,
    /// A detach is already in progress; the executor waits (on a dead compute host it never
    /// finishes: the operator resets the volume's state).
    Detaching,
    /// The volume's status is not `in-use` (e.g. `error_detaching`, `maintenance`).
    VolumeStatus {
        /// The status.
        status: String,
    },
    /// LINSTOR: the replicas do not prove the failed node cut off.
    ReplicaNotFenced {
        /// The verdict.
        detail: String,
    },
    /// A LINSTOR volume on a node seen through Nova, and LINSTOR does not show the node (or
    /// could not be read): its replicas cannot be judged.
    SatelliteUnread,
    /// The PV's driver belongs to another backend than the one the node was matched in.
    BackendMismatch {
        /// The PV's driver.
        driver: String,
    },
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bootable => write!(f, "bootable volume: never released"),
            Self::Detaching => write!(
                f,
                "a detach is already in progress: waiting (if it never ends, reset the volume state)"
            ),
            Self::VolumeStatus { status } => {
                write!(f, "volume status is {status}, not in-use: check it by hand")
            }
            Self::ReplicaNotFenced { detail } => write!(f, "not fenced: {detail}"),
            Self::SatelliteUnread => write!(
                f,
                "LINSTOR does not show the node as a satellite (or could not be read): its replicas cannot be judged"
            ),
            Self::BackendMismatch { driver } => {
                write!(f, "driver {driver} does not belong to the node's backend")
            }
        }
    }
}
