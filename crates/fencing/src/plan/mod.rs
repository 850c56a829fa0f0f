//! The fencing core: [`plan`] turns an [`Observation`] of one cluster and a [`Policy`] into a
//! [`Plan`]: ordered [`Step`]s, each with its [`Reason`], and the nodes and volumes it leaves
//! alone, with why.
//!
//! Pure and synchronous: no I/O, no clock (`now` is in the observation), no randomness. Total:
//! doubtful input gives a [`Skip`] or a [`Hold`], never a panic or an error. Deterministic: every
//! list is sorted, so the same observation in any order gives the same plan.
//!
//! Per node, in name order:
//! 1. Ready, and its server not reported dead from the cloud side: recovery only
//!    ([`Action::RemoveTaint`] of our own taint, [`Action::ClearProgress`]).
//! 2. Past the grace period neither as not Ready nor as reported dead ([`detection`]):
//!    [`Skip::WithinGrace`] (S3). A node detected from the cloud side only ([`Detection::Cloud`])
//!    also needs its kubelet silent since, and its server itself dead ([`cloud_proof`]).
//! 3. Backend view: error, ambiguous, no match, unobserved: skip (S2). Otherwise a fence
//!    [`Verdict`] ([`fence`]); anything but fenced: skip (S1), or [`Action::StopServer`] alone
//!    with opt-in stop fencing.
//! 4. Stuck volumes (S5): managed PVs used by the node's pods or VolumeAttachments, or whose
//!    Cinder volume is attached to the node's server. An unread one blocks the node (S2).
//!    Each is released (its attachment to this server only), already free, or held ([`Hold`]).
//!    A release recorded as verified in the node's progress record is never planned again (S7).
//! 5. Kubernetes side for the freed volumes, by [`Strategy`], then [`Action::KickPod`] for
//!    controller-owned replacement pods on Ready nodes that wait on a freed volume.
//!
//! Over all of it, the storm guard (S4): more unhealthy nodes than [`Threshold::limit`] means no
//! step at all.

pub mod action;
pub mod detect;
pub mod fence;
pub mod recheck;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::model::{
    AttachmentId, Backend, BackendVolume, CinderVolumeView, ClaimName, Driver, HostAction,
    HostActionKind, HostView, LinstorNodeView, LinstorResourceView, MatchRoute, Namespace,
    NodeName, NodeView, Observation, PodUid, PodView, Progress, PvName, PvView, ServerId,
    ServerView, StorageView, VaView, VolumeId,
};

pub use action::{Action, Hold, Reason, ReleaseVia, Skip, Step};
pub use detect::{Detection, cloud_proof, dead_in_list, detection};
pub use fence::Verdict;
pub use recheck::{Purpose, recheck};

/// How the remediator is allowed to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// How long a node must have been not Ready before it is considered (default 30 s, on top of
    /// the node lifecycle controller's own delay before it marks a node not Ready).
    pub grace: Duration,
    /// How the Kubernetes side is cleaned.
    pub strategy: Strategy,
    /// The storm guard.
    pub max_unhealthy: Threshold,
    /// Delete controller-owned replacement pods waiting on a freed volume (default on).
    pub kick: bool,
    /// Whether the remediator may stop servers itself to fence them.
    pub fence: FenceMode,
    /// Accept a compute host that is forced down as proof (default off).
    pub trust_forced_down: bool,
    /// What frees the volumes of a node whose server sits on a compute host that is down, where
    /// Nova refuses every detach (default: report only).
    pub dead_host: DeadHost,
    /// How long an evacuated server's node may take to come back Ready before the remediator
    /// reports that it did not (default 10 minutes).
    pub evacuate_wait: Duration,
    /// Force-delete only pods labelled `linstor.csi.linbit.com/on-storage-lost=remove`, as the
    /// Piraeus HA controller does (default off: every controller-owned pod).
    pub only_labelled_pods: bool,
    /// The drivers whose volumes may be touched (default: Cinder CSI, in-tree Cinder, LINSTOR).
    pub managed_drivers: BTreeSet<Driver>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            strategy: Strategy::Delete,
            max_unhealthy: Threshold::default(),
            kick: true,
            fence: FenceMode::Observe,
            trust_forced_down: false,
            dead_host: DeadHost::Report,
            evacuate_wait: Duration::from_secs(600),
            only_labelled_pods: false,
            managed_drivers: [Driver::CinderCsi, Driver::InTreeCinder, Driver::Linstor]
                .into_iter()
                .collect(),
        }
    }
}

/// How long a node must have been not Ready before stop fencing may stop its server: Nova's
/// default `service_down_time`, after which a compute host that died with the node no longer
/// shows up.
pub const STOP_AFTER_NOT_READY: SignedDuration = SignedDuration::from_secs(60);

/// How the Kubernetes side of a fenced node is cleaned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Delete the node's VolumeAttachments of freed volumes and force-delete its pods that use
    /// them (works on every Kubernetes version).
    #[default]
    Delete,
    /// Add the out-of-service taint; Kubernetes 1.28+ does the rest.
    OutOfServiceTaint,
}

/// Whether the remediator only reads fence state or may also stop servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceMode {
    /// Act only on servers the cloud already shows fenced.
    #[default]
    Observe,
    /// Stop (`os-stop`) an `ACTIVE` server on an up host; release in a later round.
    Stop,
}

/// What the remediator does for a fenced node whose server's compute host is down: Nova refuses
/// every detach there (409 while the compute service is not up), so only a delete or an
/// evacuate of the server frees its volumes. Either needs the host forced down and
/// `trust_forced_down`, and a node that names the server by providerID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadHost {
    /// Nothing: say which commands would free the volumes.
    #[default]
    Report,
    /// Delete the server: Nova's local delete frees its volumes at once; the node is lost and
    /// its Node deleted.
    DeleteServer,
    /// Evacuate the server: rebuilt on another host with its volumes; the node comes back.
    Evacuate,
}

impl DeadHost {
    /// The action to ask Nova for, if any.
    #[must_use]
    pub fn action(self) -> Option<HostActionKind> {
        match self {
            Self::Report => None,
            Self::DeleteServer => Some(HostActionKind::DeleteServer),
            Self::Evacuate => Some(HostActionKind::Evacuate),
        }
    }
}

/// The storm guard threshold (S4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Threshold {
    /// Share of all nodes, in percent (default 40).
    pub percent: u8,
    /// An absolute count, when set; the smaller limit wins.
    pub count: Option<usize>,
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            percent: 40,
            count: None,
        }
    }
}

impl Threshold {
    /// The most nodes that may be unhealthy at once for the remediator to act, out of `total`:
    /// `percent` of `total` rounded down, capped by `count`, and never less than one (one failed
    /// node is always handled, even in a two-node cluster).
    #[must_use]
    pub fn limit(&self, total: usize) -> usize {
        let by_share = total.saturating_mul(usize::from(self.percent.min(100))) / 100;
        let limit = match self.count {
            Some(count) => by_share.min(count),
            None => by_share,
        };
        limit.max(1)
    }
}

/// The outcome of planning: what to do, in order, and what is left alone and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The observation's `now`.
    pub now: Timestamp,
    /// Set when the storm guard held every action (S4): say so loudly.
    pub storm: Option<StormGuard>,
    /// The actions, in order.
    pub steps: Vec<Step>,
    /// Nodes not Ready that get no action, with why (sorted by node).
    pub skipped: Vec<SkippedNode>,
    /// Stuck volumes of fenced nodes that are left alone, with why.
    pub held: Vec<HeldVolume>,
    /// Attachments of managed volumes to servers that are no node.
    pub orphans: Vec<Orphan>,
    /// Things an operator should know.
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// Whether the plan has no action.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The storm guard tripped: too many nodes unhealthy at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StormGuard {
    /// Nodes not Ready.
    pub unhealthy: usize,
    /// All nodes.
    pub total: usize,
    /// The most that may be unhealthy for the remediator to act.
    pub limit: usize,
}

/// A node not acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedNode {
    /// The node.
    pub node: NodeName,
    /// Why.
    pub skip: Skip,
}

/// A stuck volume of a fenced node left alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct HeldVolume {
    /// The node.
    pub node: NodeName,
    /// The PV.
    pub pv: PvName,
    /// Its volume.
    pub volume: VolumeId,
    /// Why.
    pub hold: Hold,
}

/// An attachment of a managed volume to a server that is no Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Orphan {
    /// The volume.
    pub volume: VolumeId,
    /// The PV it backs.
    pub pv: PvName,
    /// The server holding it.
    pub server: ServerId,
    /// The attachment id, when known.
    pub attachment_id: Option<AttachmentId>,
    /// Nova answered 404 for the server: the attachment is stale and is released.
    pub server_gone: bool,
}

/// Something an operator should know; no action follows from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// A volume freed by this plan lives in an availability zone with no Ready node: no pod
    /// can use it until one comes back (seed 000's caveat).
    NoReadyNodeInZone {
        /// The volume.
        volume: VolumeId,
        /// Its zone.
        zone: String,
    },
    /// A node's progress annotation is present but unreadable: it is left alone.
    ProgressUnreadable {
        /// The node.
        node: NodeName,
        /// Why.
        detail: String,
    },
    /// Stale attachments of gone servers are listed but not released: these nodes map to no
    /// server by any route, so a gone server may be one of theirs.
    OrphansNotReleased {
        /// The unresolved nodes.
        nodes: Vec<NodeName>,
    },
    /// A pod of a fenced node on freed volumes that is not force-deleted: delete it by hand
    /// when it should go.
    PodLeft {
        /// The node.
        node: NodeName,
        /// `namespace/name`.
        pod: String,
        /// Why it is left.
        why: String,
    },
    /// The progress record says this release was verified, yet the observation still shows the
    /// attachment (a stale read): it is not released again.
    StillAttachedAfterRelease {
        /// The node.
        node: NodeName,
        /// The volume.
        volume: VolumeId,
        /// The server.
        server: ServerId,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProgressUnreadable { node, detail } => write!(
                f,
                "{node}: the progress annotation is unreadable ({detail}): no recovery step until it is fixed or removed"
            ),
            Self::OrphansNotReleased { nodes } => {
                let list: Vec<&str> = nodes.iter().map(NodeName::as_str).collect();
                write!(
                    f,
                    "stale attachments are not released: node(s) {} map to no known server (no providerID, no match by name or address), so a gone server may be theirs",
                    list.join(", ")
                )
            }
            Self::PodLeft { node, pod, why } => write!(
                f,
                "{node}: pod {pod} is not force-deleted ({why}); its volume is free: delete it by hand (`kubectl delete pod --grace-period=0 --force -n {}`) if it should go",
                pod.replacen('/', " ", 1)
            ),
            Self::NoReadyNodeInZone { volume, zone } => write!(
                f,
                "volume {volume} is in availability zone {zone}, which has no Ready node"
            ),
            Self::StillAttachedAfterRelease {
                node,
                volume,
                server,
            } => write!(
                f,
                "{node}: volume {volume} still shows attached to {server} after a verified release; not released again"
            ),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(storm) = &self.storm {
            writeln!(
                f,
                "STORM GUARD: {} of {} nodes are not Ready (limit {}): no action on any node",
                storm.unhealthy, storm.total, storm.limit
            )?;
        }
        writeln!(f, "plan at {}: {} action(s)", self.now, self.steps.len())?;
        for (number, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {step}", number + 1)?;
            writeln!(f, "     $ {}", step.action.manual_command())?;
        }
        for skipped in &self.skipped {
            writeln!(f, "skip {}: {}", skipped.node, skipped.skip)?;
        }
        for held in &self.held {
            writeln!(
                f,
                "hold {} ({}) on {}: {}",
                held.volume, held.pv, held.node, held.hold
            )?;
        }
        for orphan in &self.orphans {
            let state = if orphan.server_gone {
                "gone: stale attachment"
            } else {
                "no node's server"
            };
            writeln!(
                f,
                "orphan: volume {} ({}) attached to server {} ({state})",
                orphan.volume, orphan.pv, orphan.server
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// The storm guard (S4) over `nodes`: `Some` when more of them are not Ready than `threshold`
/// allows.
pub fn storm_guard<'a>(
    nodes: impl IntoIterator<Item = &'a NodeView>,
    threshold: &Threshold,
) -> Option<StormGuard> {
    let (mut total, mut unhealthy) = (0, 0);
    for node in nodes {
        total += 1;
        unhealthy += usize::from(node.is_unhealthy());
    }
    let limit = threshold.limit(total);
    (unhealthy > limit).then_some(StormGuard {
        unhealthy,
        total,
        limit,
    })
}

/// Plans the remediation of one cluster. Pure, total and deterministic.
#[must_use]
pub fn plan(observation: &Observation, policy: &Policy) -> Plan {
    let index = Index::new(observation, policy);
    let mut plan = Plan {
        now: observation.now,
        storm: None,
        steps: Vec::new(),
        skipped: Vec::new(),
        held: Vec::new(),
        orphans: index.orphans(),
        warnings: Vec::new(),
    };

    if let Some(storm) = storm_guard(&observation.nodes, &policy.max_unhealthy) {
        let StormGuard {
            unhealthy,
            total,
            limit,
        } = storm;
        plan.skipped = index
            .nodes
            .iter()
            .filter(|(_, views)| views.iter().any(|n| n.is_unhealthy()))
            .map(|(name, _)| SkippedNode {
                node: (*name).clone(),
                skip: Skip::StormGuard {
                    unhealthy,
                    total,
                    limit,
                },
            })
            .collect();
        plan.storm = Some(storm);
        return plan;
    }

    let mut kicked = BTreeSet::new();
    for (name, views) in &index.nodes {
        let [node] = views.as_slice() else {
            plan.skipped.push(SkippedNode {
                node: (*name).clone(),
                skip: Skip::DuplicateNode,
            });
            continue;
        };
        if !node.is_unhealthy() {
            match &node.progress_error {
                Some(detail) => plan.warnings.push(Warning::ProgressUnreadable {
                    node: node.name.clone(),
                    detail: detail.clone(),
                }),
                None => plan.steps.extend(index.recover(node, &mut kicked)),
            }
            continue;
        }
        let outcome = index.plan_failed_node(node, &mut kicked);
        plan.steps.extend(outcome.steps);
        plan.held.extend(outcome.held);
        plan.warnings.extend(outcome.warnings);
        if let Some(skip) = outcome.skip {
            plan.skipped.push(SkippedNode {
                node: node.name.clone(),
                skip,
            });
        }
    }
    let unresolved = index.unresolved_nodes();
    if unresolved.is_empty() {
        plan.steps.extend(index.release_orphans(&plan.orphans));
    } else if plan.orphans.iter().any(|o| o.server_gone) {
        plan.warnings
            .push(Warning::OrphansNotReleased { nodes: unresolved });
    }
    plan.warnings.extend(index.zone_warnings(&plan.steps));
    plan.held.sort();
    plan.warnings.sort();
    plan.warnings.dedup();
    plan
}

/// Why a node's volumes may be released: its fence proof and how it is matched.
enum Fenced<'a> {
    /// A Nova server (present and fenced, or gone).
    Server {
        id: &'a ServerId,
        via: ReleaseVia,
        reason: Reason,
        detail: String,
        /// Its compute host is down: the server is deleted or evacuated instead of detached
        /// from (or, gone, was deleted by the remediator: its Node goes too).
        host_action: Option<HostActionKind>,
    },
    /// A LINSTOR satellite not ONLINE; each resource is judged on its own.
    Satellite(&'a LinstorNodeView),
}

/// The proof a freed volume carries into the Kubernetes-side steps.
#[derive(Clone)]
struct Proof {
    reason: Reason,
    detail: String,
}

/// What becomes of one stuck volume of a fenced node, as far as its backend volume goes.
enum Disposition<'a> {
    /// Release the node's server's attachment.
    Release(Option<&'a AttachmentId>),
    /// Nothing holds it on the backend any more: only the Kubernetes side is left.
    Free,
    /// Released and verified earlier (progress record of this attachment), though still shown
    /// attached.
    FreedEarlier(&'a AttachmentId),
    /// Left alone.
    Held(Hold),
}

/// Volumes of `pvs` released in this plan: what a Kubernetes-side step must wait for.
fn released_among<'p>(
    pvs: impl IntoIterator<Item = &'p PvView>,
    released_now: &BTreeSet<&VolumeId>,
) -> Vec<VolumeId> {
    let volumes: BTreeSet<&VolumeId> = pvs
        .into_iter()
        .map(|pv| &pv.volume_id)
        .filter(|volume| released_now.contains(volume))
        .collect();
    volumes.into_iter().cloned().collect()
}

/// What planning one failed node gives.
#[derive(Default)]
struct NodeOutcome {
    steps: Vec<Step>,
    held: Vec<HeldVolume>,
    warnings: Vec<Warning>,
    skip: Option<Skip>,
}

impl NodeOutcome {
    fn skipped(skip: Skip) -> Self {
        Self {
            skip: Some(skip),
            ..Self::default()
        }
    }
}

/// The observation, indexed and sorted; every lookup is order-independent.
struct Index<'a> {
    observation: &'a Observation,
    policy: &'a Policy,
    /// Nodes by name; more than one view means a duplicate name.
    nodes: BTreeMap<&'a NodeName, Vec<&'a NodeView>>,
    /// PVs by name (names observed twice are dropped: never touched).
    pvs: BTreeMap<&'a PvName, &'a PvView>,
    /// Bound claims (claims observed twice are dropped).
    claims: BTreeMap<(&'a Namespace, &'a ClaimName), &'a PvName>,
    /// Pods sorted by namespace, name, UID.
    pods: Vec<&'a PodView>,
    /// VolumeAttachments sorted by name.
    volume_attachments: Vec<&'a VaView>,
    /// Which nodes name each server (by providerID or by the backend's match).
    server_claims: BTreeMap<ServerId, BTreeSet<&'a NodeName>>,
}

/// Keeps the keys seen exactly once.
fn unique<K: Ord, V>(items: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut grouped: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (key, value) in items {
        grouped.entry(key).or_default().push(value);
    }
    grouped
        .into_iter()
        .filter_map(|(key, mut values)| (values.len() == 1).then(|| (key, values.remove(0))))
        .collect()
}

impl<'a> Index<'a> {
    fn new(observation: &'a Observation, policy: &'a Policy) -> Self {
        let mut nodes: BTreeMap<&NodeName, Vec<&NodeView>> = BTreeMap::new();
        for node in &observation.nodes {
            nodes.entry(&node.name).or_default().push(node);
        }
        let mut pods: Vec<&PodView> = observation.pods.iter().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        let mut volume_attachments: Vec<&VaView> = observation.volume_attachments.iter().collect();
        volume_attachments
            .sort_by(|a, b| (&a.name, &a.node, &a.pv).cmp(&(&b.name, &b.node, &b.pv)));
        let mut server_claims: BTreeMap<ServerId, BTreeSet<&NodeName>> = BTreeMap::new();
        for node in &observation.nodes {
            let matched = match &node.storage {
                StorageView::OpenStack(server) => Some(server.id.clone()),
                StorageView::ServerGone { id } => Some(id.clone()),
                _ => None,
            };
            for id in matched.into_iter().chain(node.provider_server_id()) {
                server_claims.entry(id).or_default().insert(&node.name);
            }
        }
        Self {
            observation,
            policy,
            server_claims,
            nodes,
            pvs: unique(
                observation
                    .persistent_volumes
                    .iter()
                    .map(|pv| (&pv.name, pv)),
            ),
            claims: unique(
                observation
                    .claims
                    .iter()
                    .map(|c| ((&c.namespace, &c.name), c.volume.as_ref())),
            )
            .into_iter()
            .filter_map(|(key, volume)| Some((key, volume?)))
            .collect(),
            pods,
            volume_attachments,
        }
    }

    /// The PV, if it is one of a managed driver the remediator knows how to handle.
    fn managed_pv(&self, name: &PvName) -> Option<&'a PvView> {
        let pv = *self.pvs.get(name)?;
        (self.policy.managed_drivers.contains(&pv.driver) && pv.driver.backend().is_some())
            .then_some(pv)
    }

    /// The PVs a pod's claims are bound to.
    fn pod_pvs(&self, pod: &PodView) -> BTreeSet<&'a PvName> {
        pod.claims
            .iter()
            .filter_map(|claim| self.claims.get(&(&pod.namespace, claim)).copied())
            .collect()
    }

    fn is_ready(&self, node: &NodeName) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|views| matches!(views.as_slice(), [n] if !n.is_unhealthy()))
    }

    /// Recovery of a node Ready again: remove the taint only if we added it; after an
    /// evacuate, kick the replacement pods that wait on the volumes the server kept; then
    /// forget.
    fn recover(&self, node: &'a NodeView, kicked: &mut BTreeSet<&'a PodUid>) -> Vec<Step> {
        let Some(progress) = &node.progress else {
            return Vec::new();
        };
        let detail = format!("node {} is Ready again", node.name);
        let step = |action| Step {
            node: Some(node.name.clone()),
            action,
            reason: Reason::NodeRecovered,
            detail: detail.clone(),
            after: Vec::new(),
        };
        let mut steps = Vec::new();
        if progress.out_of_service_taint && node.has_out_of_service_taint() {
            steps.push(step(Action::RemoveTaint {
                node: node.name.clone(),
            }));
        }
        if self.policy.kick
            && let Some(record) = &progress.host_action
            && record.kind == HostActionKind::Evacuate
        {
            let proof = Proof {
                reason: Reason::NodeRecovered,
                detail: format!(
                    "node {} is Ready again after server {} was evacuated: the volumes it kept \
                     are let go as its old pods end",
                    node.name, record.server
                ),
            };
            let kept: BTreeMap<&PvName, Proof> = self
                .pvs
                .values()
                .filter(|pv| record.volumes.contains(&pv.volume_id))
                .map(|pv| (&pv.name, proof.clone()))
                .collect();
            steps.extend(self.kicks(node, &kept, &BTreeSet::new(), kicked));
        }
        steps.push(step(Action::ClearProgress {
            node: node.name.clone(),
        }));
        steps
    }

    fn plan_failed_node(
        &self,
        node: &'a NodeView,
        kicked: &mut BTreeSet<&'a PodUid>,
    ) -> NodeOutcome {
        // S3: not before the grace period has passed.
        let detected = match detection(node, self.observation.now, self.policy.grace) {
            Ok(detected) => detected,
            Err(skip) => return NodeOutcome::skipped(skip),
        };
        if let Some(detail) = &node.progress_error {
            return NodeOutcome::skipped(Skip::ProgressUnreadable {
                detail: detail.clone(),
            });
        }
        if detected == Detection::Cloud
            && let Err(skip) = cloud_proof(node, self.observation.region.as_deref(), self.policy)
        {
            return NodeOutcome::skipped(skip);
        }
        // S1, S2: only a proven fence lets anything through.
        let fenced = match self.fence(node) {
            Ok(fenced) => fenced,
            Err(outcome) => return *outcome,
        };
        self.release_and_clean(node, &fenced, kicked)
    }

    /// The node's fence proof, or the outcome that replaces acting on it.
    fn fence(&self, node: &'a NodeView) -> Result<Fenced<'a>, Box<NodeOutcome>> {
        let evidence = evidence(node, self.observation.region.as_deref(), self.policy)
            .map_err(|skip| Box::new(NodeOutcome::skipped(skip)))?;
        let (id, via, verdict) = match evidence {
            Evidence::Satellite { satellite, verdict } => {
                return match verdict {
                    Verdict::Fenced { .. } => Ok(Fenced::Satellite(satellite)),
                    other => Err(Box::new(NodeOutcome::skipped(not_fenced(other)))),
                };
            }
            Evidence::Server { id, via, verdict } => (id, via, verdict),
        };
        if let Some(other) = self
            .server_claims
            .get(id)
            .and_then(|names| names.iter().find(|name| ***name != node.name))
        {
            return Err(Box::new(NodeOutcome::skipped(Skip::Mismatch {
                server: id.clone(),
                detail: format!(
                    "server {id} is also node {other}'s server: at most one of them runs on it"
                ),
            })));
        }
        let server = match &node.storage {
            StorageView::OpenStack(server) => Some(server),
            _ => None,
        };
        let record = node
            .progress
            .as_ref()
            .and_then(|p| p.host_action.as_ref())
            .filter(|record| record.server == *id);
        if let Some(record) = record {
            let fenced = matches!(verdict, Verdict::Fenced { .. });
            match (record.kind, server) {
                // Asked to delete, yet Nova still shows it: never asked again.
                (HostActionKind::DeleteServer, Some(server)) => {
                    return Err(skipped(Skip::HostActionRequested {
                        detail: requested(&node.name, record, server, "it still exists, as"),
                    }));
                }
                (HostActionKind::Evacuate, Some(server)) if !fenced => {
                    return Err(skipped(self.awaiting_return(node, record, server)));
                }
                _ => {}
            }
        }
        match verdict {
            Verdict::Fenced { reason, detail } => {
                let host_action = match (server, record) {
                    (Some(server), _) => match server
                        .host_state
                        .filter(|host| !host.up || host.forced_down)
                    {
                        Some(host) => Some(self.dead_host(node, server, host, &detail, record)?),
                        None => None,
                    },
                    // Gone after the remediator deleted it: the Node goes too.
                    (None, Some(record)) => Some(record.kind),
                    (None, None) => None,
                };
                Ok(Fenced::Server {
                    id,
                    via,
                    reason,
                    detail,
                    host_action,
                })
            }
            Verdict::Stoppable { detail } if self.policy.fence == FenceMode::Stop => {
                // Nova calls a host up until its last heartbeat is `service_down_time` old: a
                // host that died with the node may still show up, accept the stop and never
                // carry it out (its `powering-off` task then blocks every detach). Wait until
                // it would show down.
                let not_ready_for = self.observation.now.duration_since(node.ready_since);
                if not_ready_for < STOP_AFTER_NOT_READY {
                    let left = STOP_AFTER_NOT_READY - not_ready_for;
                    return Err(Box::new(NodeOutcome::skipped(Skip::NotFenced {
                        detail: format!(
                            "{detail}; a stop waits until the node has been not Ready for {:#} \
                             (Nova's service_down_time), so that a host that died with it shows \
                             down first ({}s left)",
                            STOP_AFTER_NOT_READY,
                            left.as_secs() + i64::from(left.subsec_nanos() > 0)
                        ),
                    })));
                }
                Err(Box::new(NodeOutcome {
                    steps: vec![Step {
                        node: Some(node.name.clone()),
                        action: Action::StopServer {
                            node: node.name.clone(),
                            server: id.clone(),
                        },
                        reason: Reason::StopToFence,
                        detail,
                        after: Vec::new(),
                    }],
                    ..NodeOutcome::default()
                }))
            }
            other => Err(Box::new(NodeOutcome::skipped(not_fenced(other)))),
        }
    }

    /// The action that frees the volumes of a fenced server whose compute host is down (Nova
    /// refuses every detach there), or why there is none: the host must be forced down and
    /// trusted, the policy must name an action, the node must name the server by providerID,
    /// and no earlier request may be on record.
    fn dead_host(
        &self,
        node: &NodeView,
        server: &ServerView,
        host: HostView,
        detail: &str,
        record: Option<&HostAction>,
    ) -> Result<HostActionKind, Box<NodeOutcome>> {
        let id = &server.id;
        let name = server.host.as_deref().unwrap_or("HOST");
        if let Some(record) = record {
            return Err(skipped(Skip::HostActionRequested {
                detail: requested(
                    &node.name,
                    record,
                    server,
                    "its host is down again, and it is",
                ),
            }));
        }
        let refused = format!(
            "{detail}; Nova refuses every detach while the compute service of {name} is not up \
             ({}), so only deleting or evacuating the server frees its volumes",
            if host.forced_down {
                "forced down"
            } else {
                "down"
            }
        );
        let commands = format!(
            "`openstack server delete {id}` (the node is lost; Nova's local delete frees the \
             volumes at once) or `openstack server evacuate {id}` (rebuilt on another host with \
             its volumes; the node comes back)"
        );
        if !host.forced_down || !self.policy.trust_forced_down {
            let mark = if host.forced_down {
                String::new()
            } else {
                format!(
                    "once the host is fenced (powered off), mark it `openstack compute service \
                     set --down {name} nova-compute`, then "
                )
            };
            let trust = if self.policy.trust_forced_down {
                ""
            } else {
                "--trust-forced-down "
            };
            return Err(skipped(Skip::DeadHost {
                detail: format!(
                    "{refused}; {mark}run with {trust}--dead-host delete-server|evacuate, or by \
                     hand: {commands}"
                ),
            }));
        }
        let Some(kind) = self.policy.dead_host.action() else {
            return Err(skipped(Skip::DeadHost {
                detail: format!(
                    "{refused}; --dead-host report: nothing is done. By hand: {commands}; or run \
                     with --dead-host delete-server|evacuate"
                ),
            }));
        };
        if node.provider_server_id().as_ref() != Some(id) {
            return Err(skipped(Skip::DeadHost {
                detail: format!(
                    "{refused}; the node does not name server {id} in its providerID (matched \
                     by {}), and only a server a node names is deleted or evacuated: check \
                     it is the node's, then by hand: {commands}",
                    match server.matched_by {
                        MatchRoute::Address => "address",
                        _ => "name",
                    }
                ),
            }));
        }
        Ok(kind)
    }

    /// Why an evacuated server's node gets nothing while it comes back, or after it did not.
    fn awaiting_return(&self, node: &NodeView, record: &HostAction, server: &ServerView) -> Skip {
        let since = self.observation.now.duration_since(record.at);
        let wait =
            SignedDuration::try_from(self.policy.evacuate_wait).unwrap_or(SignedDuration::MAX);
        let now_on = format!(
            "now {} on host {}",
            server.status,
            server.host.as_deref().unwrap_or("(unknown)")
        );
        if since <= wait {
            let left = wait - since;
            let detail = format!(
                "server {} was evacuated from host {} {}s ago ({now_on}): waiting for node {} to \
                 come back Ready ({}s left); nothing else is done meanwhile",
                record.server,
                record.host.as_deref().unwrap_or("(unknown)"),
                since.as_secs(),
                node.name,
                left.as_secs()
            );
            Skip::AwaitingReturn { detail }
        } else {
            let detail = format!(
                "server {} was evacuated from host {} {}s ago ({now_on}) and node {} has not come \
                 back Ready within {:#}: check the server (`openstack server show {}`, \
                 `openstack console log show {}`); nothing more is done for it",
                record.server,
                record.host.as_deref().unwrap_or("(unknown)"),
                since.as_secs(),
                node.name,
                wait,
                record.server,
                record.server
            );
            Skip::HostActionRequested { detail }
        }
    }

    /// The managed PVs stuck on a fenced node (S5): used by its pods, named by its
    /// VolumeAttachments, or (OpenStack) attached to its server.
    fn stuck_pvs(&self, node: &NodeName, fenced: &Fenced<'_>) -> BTreeSet<&'a PvName> {
        let mut names: BTreeSet<&PvName> = BTreeSet::new();
        for pod in self.pods.iter().filter(|p| p.node.as_ref() == Some(node)) {
            names.extend(self.pod_pvs(pod));
        }
        for va in self.volume_attachments.iter().filter(|va| va.node == *node) {
            names.extend(va.pv.as_ref());
        }
        if let Fenced::Server { id, .. } = fenced {
            for (name, pv) in &self.pvs {
                if pv.driver.backend() == Some(Backend::OpenStack)
                    && let Some(BackendVolume::Cinder(volume)) = &pv.backend
                    && volume.attachments.iter().any(|a| a.server == **id)
                {
                    names.insert(name);
                }
            }
        }
        names.retain(|name| self.managed_pv(name).is_some());
        names
    }

    fn release_and_clean(
        &self,
        node: &'a NodeView,
        fenced: &Fenced<'a>,
        kicked: &mut BTreeSet<&'a PodUid>,
    ) -> NodeOutcome {
        let stuck: Vec<&PvView> = self
            .stuck_pvs(&node.name, fenced)
            .into_iter()
            .filter_map(|name| self.managed_pv(name))
            .collect();
        // S2: every volume the node may hold must have been read, and be visible.
        if let Some(unread) = stuck.iter().find(|pv| pv.backend.is_none()) {
            return NodeOutcome::skipped(Skip::VolumeUnread {
                pv: unread.name.clone(),
            });
        }
        let invisible = |pv: &PvView| matches!(pv.backend, Some(BackendVolume::NotFound));
        if let Fenced::Server {
            id,
            via: ReleaseVia::CinderStaleAttachment,
            ..
        } = fenced
            && !stuck.is_empty()
            && stuck.iter().all(|pv| invisible(pv))
        {
            return NodeOutcome::skipped(Skip::Invisible {
                server: (*id).clone(),
            });
        }
        if let Some(missing) = stuck.iter().find(|pv| invisible(pv)) {
            return NodeOutcome::skipped(Skip::VolumeNotFound {
                pv: missing.name.clone(),
                volume: missing.volume_id.clone(),
            });
        }
        if let Some(contradiction) = self.contradiction(node, fenced) {
            return NodeOutcome::skipped(Skip::Contradiction {
                detail: contradiction,
            });
        }

        let mut outcome = NodeOutcome::default();
        let mut releases: BTreeMap<&VolumeId, (&PvView, Option<&AttachmentId>, Proof)> =
            BTreeMap::new();
        let mut freed: BTreeMap<&PvName, Proof> = BTreeMap::new();
        let mut released_attachment: BTreeMap<&PvName, &AttachmentId> = BTreeMap::new();
        let mut held: BTreeSet<&PvName> = BTreeSet::new();
        for pv in stuck {
            let ran = self.pods.iter().any(|pod| {
                pod.node.as_ref() == Some(&node.name)
                    && pod.phase == "Running"
                    && self.pod_pvs(pod).contains(&pv.name)
            });
            let (disposition, proof) = dispose(node, fenced, pv, ran);
            match disposition {
                Disposition::Release(attachment) => {
                    releases
                        .entry(&pv.volume_id)
                        .or_insert((pv, attachment, proof.clone()));
                    released_attachment.extend(attachment.map(|a| (&pv.name, a)));
                    freed.insert(&pv.name, proof);
                }
                Disposition::Free => {
                    freed.insert(&pv.name, proof);
                }
                Disposition::FreedEarlier(attachment) => {
                    released_attachment.insert(&pv.name, attachment);
                    if let Fenced::Server { id, .. } = fenced {
                        outcome.warnings.push(Warning::StillAttachedAfterRelease {
                            node: node.name.clone(),
                            volume: pv.volume_id.clone(),
                            server: (*id).clone(),
                        });
                    }
                    freed.insert(&pv.name, proof);
                }
                Disposition::Held(hold) => {
                    held.insert(&pv.name);
                    outcome.held.push(HeldVolume {
                        node: node.name.clone(),
                        pv: pv.name.clone(),
                        volume: pv.volume_id.clone(),
                        hold,
                    });
                }
            }
        }

        let released_now: BTreeSet<&VolumeId> = releases.keys().copied().collect();
        let after = |names: &mut dyn Iterator<Item = &PvName>| {
            released_among(
                names.filter_map(|name| self.pvs.get(name).copied()),
                &released_now,
            )
        };
        let step = |action, proof: &Proof, after: Vec<VolumeId>| Step {
            node: Some(node.name.clone()),
            action,
            reason: proof.reason,
            detail: proof.detail.clone(),
            after,
        };

        // A compute host that is down: one server-wide action instead of the detaches Nova
        // would refuse, and only when it touches nothing held back.
        let mut deleting_server = false;
        if let Fenced::Server {
            id,
            via: ReleaseVia::Nova,
            host_action: Some(kind),
            reason,
            detail,
        } = fenced
            && !releases.is_empty()
        {
            // A held volume the server holds would go with it (or stay stuck with it).
            let blocking: BTreeSet<&str> = held
                .iter()
                .filter_map(|name| self.pvs.get(*name))
                .filter(|pv| {
                    matches!(&pv.backend, Some(BackendVolume::Cinder(volume))
                        if volume.attachments.iter().any(|a| a.server == **id))
                })
                .map(|pv| pv.volume_id.as_str())
                .collect();
            if !blocking.is_empty() {
                outcome.skip = Some(Skip::DeadHost {
                    detail: format!(
                        "{detail}; its compute host is down, but server {id} also holds \
                         volume(s) {} that are held back (see below): the server is neither \
                         deleted nor evacuated while it holds any of them",
                        blocking.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                });
                return outcome;
            }
            let server = match &node.storage {
                StorageView::OpenStack(server) => server.host.clone(),
                _ => None,
            };
            let volumes: Vec<VolumeId> = releases.keys().map(|v| (*v).clone()).collect();
            let action = match kind {
                HostActionKind::DeleteServer => Action::DeleteServer {
                    node: node.name.clone(),
                    server: (*id).clone(),
                    host: server,
                    volumes,
                },
                HostActionKind::Evacuate => Action::EvacuateServer {
                    node: node.name.clone(),
                    server: (*id).clone(),
                    host: server,
                    volumes,
                },
            };
            let proof = Proof {
                reason: *reason,
                detail: detail.clone(),
            };
            outcome.steps.push(step(action, &proof, Vec::new()));
            deleting_server = *kind == HostActionKind::DeleteServer;
            if *kind == HostActionKind::Evacuate {
                // The volumes stay with the server and the node comes back: nothing more until
                // it is Ready again (then its waiting replacements are kicked).
                return outcome;
            }
        } else if let Fenced::Server { id, via, .. } = fenced {
            for (volume, (pv, attachment, proof)) in &releases {
                let action = Action::ReleaseVolume {
                    node: Some(node.name.clone()),
                    server: (*id).clone(),
                    volume: (*volume).clone(),
                    pv: pv.name.clone(),
                    attachment_id: attachment.cloned(),
                    via: *via,
                };
                outcome.steps.push(step(action, proof, Vec::new()));
            }
        }

        match self.policy.strategy {
            Strategy::Delete => {
                for va in self
                    .volume_attachments
                    .iter()
                    .filter(|va| va.node == node.name)
                {
                    let Some((pv, proof)) = va.pv.as_ref().and_then(|pv| freed.get_key_value(pv))
                    else {
                        continue;
                    };
                    if va.deleting && va.finalizers.is_empty() {
                        continue; // already going away on its own
                    }
                    let Some(volume) = self.pvs.get(*pv).map(|pv| pv.volume_id.clone()) else {
                        continue;
                    };
                    let action = Action::DeleteVolumeAttachment {
                        name: va.name.clone(),
                        uid: va.uid.clone(),
                        node: node.name.clone(),
                        pv: (*pv).clone(),
                        volume,
                        server: match fenced {
                            Fenced::Server { id, .. } => Some((*id).clone()),
                            Fenced::Satellite(_) => None,
                        },
                        attachment_id: released_attachment.get(*pv).map(|a| (*a).clone()),
                    };
                    let after = after(&mut std::iter::once(*pv));
                    outcome.steps.push(step(action, proof, after));
                }
            }
            Strategy::OutOfServiceTaint => {
                if let Some(proof) = freed.values().next()
                    && held.is_empty()
                    && !node.has_out_of_service_taint()
                {
                    let action = Action::TaintNode {
                        node: node.name.clone(),
                    };
                    let after = after(&mut freed.keys().copied());
                    outcome.steps.push(step(action, proof, after));
                }
            }
        }
        // Both strategies force-delete the node's pods that use freed volumes: with the taint,
        // Kubernetes would too, but only at pod GC's next pass (up to 20 s); the attach/detach
        // controller lets the volume go once they are gone.
        if self.policy.strategy == Strategy::Delete || held.is_empty() {
            for pod in self
                .pods
                .iter()
                .filter(|p| p.node.as_ref() == Some(&node.name))
            {
                let uses = self.pod_pvs(pod);
                let Some(proof) = uses.iter().find_map(|pv| freed.get(pv)) else {
                    continue;
                };
                if uses.iter().any(|pv| held.contains(pv)) {
                    continue; // a volume it uses is not proven safe to take over
                }
                // Nothing would recreate a pod no controller owns, and an operator may keep one:
                // left for an operator, said once.
                let left = if pod.keep {
                    Some(format!("annotated {}: keep", crate::model::KEEP_ANNOTATION))
                } else if !pod.owner.as_ref().is_some_and(|o| o.controller) {
                    Some("no controller owns it: nothing would recreate it".to_owned())
                } else if self.policy.only_labelled_pods && !pod.piraeus_remove {
                    Some(format!(
                        "not labelled {}=remove, and only labelled pods are force-deleted",
                        crate::model::PIRAEUS_LABEL
                    ))
                } else {
                    None
                };
                if let Some(why) = left {
                    outcome.warnings.push(Warning::PodLeft {
                        node: node.name.clone(),
                        pod: format!("{}/{}", pod.namespace, pod.name),
                        why,
                    });
                    continue;
                }
                let action = Action::ForceDeletePod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    node: node.name.clone(),
                };
                let after = after(&mut uses.iter().copied());
                outcome.steps.push(step(action, proof, after));
            }
        }

        if self.policy.kick {
            outcome
                .steps
                .extend(self.kicks(node, &freed, &released_now, kicked));
        }
        // The Node goes once its server is: deleted by this plan, or gone after the
        // remediator's recorded delete.
        if let Fenced::Server {
            host_action: Some(HostActionKind::DeleteServer),
            via,
            reason,
            ..
        } = fenced
            && (deleting_server || *via == ReleaseVia::CinderStaleAttachment)
            && outcome.held.is_empty()
        {
            let deleted = Proof {
                reason: *reason,
                detail: "the remediator deleted the node's server on its forced-down host: the \
                         node is gone for good, as the cloud provider would find"
                    .to_owned(),
            };
            let action = Action::DeleteNode {
                node: node.name.clone(),
                uid: node.uid.clone(),
            };
            let after = released_now.iter().map(|v| (*v).clone()).collect();
            outcome.steps.push(step(action, &deleted, after));
        }

        if outcome.steps.is_empty() {
            outcome.skip = Some(if outcome.held.is_empty() {
                Skip::NothingStuck
            } else {
                Skip::AllHeld
            });
        }
        outcome
    }

    /// A VolumeAttachment of the node that says attached while Cinder shows its PV's volume
    /// attached only to other servers than the node's: which server the node runs is in doubt.
    fn contradiction(&self, node: &NodeView, fenced: &Fenced<'_>) -> Option<String> {
        let Fenced::Server { id, .. } = fenced else {
            return None;
        };
        self.volume_attachments
            .iter()
            .filter(|va| va.node == node.name && va.attached)
            .find_map(|va| {
                let pv = self.managed_pv(va.pv.as_ref()?)?;
                let Some(BackendVolume::Cinder(volume)) = &pv.backend else {
                    return None;
                };
                let holders: BTreeSet<&str> =
                    volume.attachments.iter().map(|a| a.server.as_str()).collect();
                (!holders.is_empty() && !holders.contains(id.as_str())).then(|| {
                    format!(
                        "VolumeAttachment {} says {} is attached to node {}, but Cinder shows volume {} attached to server {}, not to the node's server {id}",
                        va.name,
                        pv.name,
                        node.name,
                        pv.volume_id,
                        holders.into_iter().collect::<Vec<_>>().join(", ")
                    )
                })
            })
    }

    /// Replacement pods on other, Ready nodes, owned by a controller, pending, whose attach
    /// failures name a volume this plan frees and which use that volume.
    fn kicks(
        &self,
        node: &NodeView,
        freed: &BTreeMap<&PvName, Proof>,
        released_now: &BTreeSet<&VolumeId>,
        kicked: &mut BTreeSet<&'a PodUid>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for pod in &self.pods {
            let Some(pod_node) = &pod.node else { continue };
            if *pod_node == node.name
                || !self.is_ready(pod_node)
                || !pod.owner.as_ref().is_some_and(|o| o.controller)
                || pod.deleting
                || pod.phase != "Pending"
                || kicked.contains(&pod.uid)
            {
                continue;
            }
            let uses = self.pod_pvs(pod);
            let waits_on = freed
                .keys()
                .filter(|name| uses.contains(*name))
                .find_map(|name| {
                    let pv = self.pvs.get(name)?;
                    pod.attach_failures
                        .iter()
                        .any(|f| *f == pv.volume_id.as_str() || *f == pv.name.as_str())
                        .then_some(pv)
                });
            let Some(pv) = waits_on else { continue };
            kicked.insert(&pod.uid);
            let after = if released_now.contains(&pv.volume_id) {
                vec![pv.volume_id.clone()]
            } else {
                Vec::new()
            };
            steps.push(Step {
                node: Some(node.name.clone()),
                action: Action::KickPod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    node: pod_node.clone(),
                    volume: pv.volume_id.clone(),
                },
                reason: Reason::ReplacementWaiting,
                detail: format!(
                    "waits on a failed attach of volume {} ({}), freed from node {}",
                    pv.volume_id, pv.name, node.name
                ),
                after,
            });
        }
        steps
    }

    /// The servers that are (or were) some node's: by providerID or by the backend match.
    fn node_servers(&self) -> BTreeSet<&'a ServerId> {
        let mut servers = BTreeSet::new();
        for node in &self.observation.nodes {
            match &node.storage {
                StorageView::OpenStack(server) => {
                    servers.insert(&server.id);
                }
                StorageView::ServerGone { id } => {
                    servers.insert(id);
                }
                StorageView::Ambiguous { candidates } => servers.extend(candidates),
                _ => {}
            }
        }
        servers
    }

    /// Nodes that map to no Nova server by any route: no providerID and no server matched by
    /// name or address (LINSTOR satellites are not Nova servers and do not count).
    fn unresolved_nodes(&self) -> Vec<NodeName> {
        let mut nodes: Vec<NodeName> = self
            .observation
            .nodes
            .iter()
            .filter(|node| node.provider_server_id().is_none())
            .filter(|node| {
                !matches!(
                    node.storage,
                    StorageView::OpenStack(_)
                        | StorageView::ServerGone { .. }
                        | StorageView::Ambiguous { .. }
                        | StorageView::Linstor(_)
                )
            })
            .map(|node| node.name.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Attachments of managed Cinder volumes to servers that are no node's server.
    fn orphans(&self) -> Vec<Orphan> {
        let node_servers = self.node_servers();
        let provider_servers: BTreeSet<ServerId> = self
            .observation
            .nodes
            .iter()
            .filter_map(NodeView::provider_server_id)
            .collect();
        let gone: BTreeSet<&ServerId> = self.observation.gone_servers.iter().collect();
        let mut orphans = BTreeSet::new();
        for pv in self.pvs.values() {
            let Some(pv) = self.managed_pv(&pv.name) else {
                continue;
            };
            let Some(BackendVolume::Cinder(volume)) = &pv.backend else {
                continue;
            };
            if pv.driver.backend() != Some(Backend::OpenStack) {
                continue;
            }
            for attachment in &volume.attachments {
                if node_servers.contains(&attachment.server)
                    || provider_servers.contains(&attachment.server)
                {
                    continue;
                }
                orphans.insert(Orphan {
                    volume: pv.volume_id.clone(),
                    pv: pv.name.clone(),
                    server: attachment.server.clone(),
                    attachment_id: attachment.attachment_id.clone(),
                    server_gone: gone.contains(&attachment.server),
                });
            }
        }
        orphans.into_iter().collect()
    }

    /// Stale attachments of gone servers are released on the Cinder side: nothing can write
    /// through them. Never for a bootable volume or one already detaching.
    fn release_orphans(&self, orphans: &[Orphan]) -> Vec<Step> {
        let mut done = BTreeSet::new();
        let mut steps = Vec::new();
        for orphan in orphans.iter().filter(|o| o.server_gone) {
            let Some(BackendVolume::Cinder(volume)) =
                self.pvs.get(&orphan.pv).and_then(|pv| pv.backend.as_ref())
            else {
                continue;
            };
            let detaching = volume.status == "detaching"
                || volume
                    .attachments
                    .iter()
                    .any(|a| a.server == orphan.server && a.detaching);
            if volume.bootable || detaching || !done.insert((&orphan.volume, &orphan.server)) {
                continue;
            }
            steps.push(Step {
                node: None,
                action: Action::ReleaseVolume {
                    node: None,
                    server: orphan.server.clone(),
                    volume: orphan.volume.clone(),
                    pv: orphan.pv.clone(),
                    attachment_id: orphan.attachment_id.clone(),
                    via: ReleaseVia::CinderStaleAttachment,
                },
                reason: Reason::ServerGone,
                detail: format!(
                    "server {} no longer exists (Nova answered 404) and is no node's server",
                    orphan.server
                ),
                after: Vec::new(),
            });
        }
        steps
    }

    /// Volumes released by this plan whose zone has no Ready node (only when zones are known).
    fn zone_warnings(&self, steps: &[Step]) -> Vec<Warning> {
        let nodes = &self.observation.nodes;
        if nodes.iter().all(|n| n.zone.is_none()) {
            return Vec::new();
        }
        let ready_zones: BTreeSet<&str> = nodes
            .iter()
            .filter(|n| !n.is_unhealthy())
            .filter_map(|n| n.zone.as_deref())
            .collect();
        let mut warnings = Vec::new();
        for step in steps {
            let Action::ReleaseVolume { pv, volume, .. } = &step.action else {
                continue;
            };
            let zone = self.pvs.get(pv).and_then(|pv| match &pv.backend {
                Some(BackendVolume::Cinder(v)) => v.availability_zone.as_deref(),
                _ => None,
            });
            if let Some(zone) = zone
                && !ready_zones.contains(zone)
            {
                warnings.push(Warning::NoReadyNodeInZone {
                    volume: volume.clone(),
                    zone: zone.to_owned(),
                });
            }
        }
        warnings
    }
}

/// What the backend shows of a node, judged: its server (or satellite) and the fence verdict.
pub(crate) enum Evidence<'a> {
    /// A Nova server, present or gone.
    Server {
        id: &'a ServerId,
        via: ReleaseVia,
        verdict: Verdict,
    },
    /// A LINSTOR satellite.
    Satellite {
        satellite: &'a LinstorNodeView,
        verdict: Verdict,
    },
}

/// The node's fence evidence, or why there is none (S1, S2). `region` is the region the
/// backend's session reaches. A match is cross-checked before it counts:
/// - a providerID naming another region than the session's is no match, whatever Nova says;
/// - a server matched by name or address must own one of the node's InternalIPs, when both are
///   known.
pub(crate) fn evidence<'a>(
    node: &'a NodeView,
    region: Option<&str>,
    policy: &Policy,
) -> Result<Evidence<'a>, Skip> {
    if let Some(theirs) = node.provider_region()
        && matches!(
            node.storage,
            StorageView::OpenStack(_) | StorageView::ServerGone { .. }
        )
        && region != Some(theirs)
    {
        return Err(Skip::OtherRegion {
            region: theirs.to_owned(),
            session: region.map(str::to_owned),
        });
    }
    match &node.storage {
        StorageView::Unobserved => Err(Skip::Unknown {
            detail: "the storage backend was not read for this node".to_owned(),
        }),
        StorageView::Error { message } => Err(Skip::StorageError {
            detail: message.clone(),
        }),
        StorageView::Ambiguous { candidates } => {
            let mut candidates = candidates.clone();
            candidates.sort();
            candidates.dedup();
            Err(Skip::Ambiguous { candidates })
        }
        StorageView::NoMatch => Err(Skip::NoMatch),
        StorageView::Linstor(satellite) => Ok(Evidence::Satellite {
            satellite,
            verdict: fence::linstor_satellite(&node.name, satellite),
        }),
        StorageView::ServerGone { id } => Ok(Evidence::Server {
            id,
            via: ReleaseVia::CinderStaleAttachment,
            verdict: fence::server_gone(id),
        }),
        StorageView::OpenStack(server) => {
            if server.matched_by != MatchRoute::ProviderId
                && !node.addresses.is_empty()
                && let Some(owned) = &server.addresses
                && !node.addresses.iter().any(|ip| owned.contains(ip))
            {
                return Err(Skip::Mismatch {
                    server: server.id.clone(),
                    detail: format!(
                        "server {} ({}) matches by {} but does not own the node's InternalIP {} (it has {})",
                        server.id,
                        server.name,
                        match server.matched_by {
                            MatchRoute::Address => "address",
                            _ => "name",
                        },
                        node.addresses.join(", "),
                        if owned.is_empty() {
                            "no address".to_owned()
                        } else {
                            owned.join(", ")
                        }
                    ),
                });
            }
            Ok(Evidence::Server {
                id: &server.id,
                via: ReleaseVia::Nova,
                verdict: fence::openstack(server, policy.trust_forced_down),
            })
        }
    }
}

/// What becomes of one stuck PV of a fenced node, and the proof that lets it go (for a held
/// PV, the proof is that of the node and is not used).
fn dispose<'a>(
    node: &NodeView,
    fenced: &Fenced<'_>,
    pv: &'a PvView,
    ran: bool,
) -> (Disposition<'a>, Proof) {
    match (fenced, &pv.backend) {
        (
            Fenced::Server {
                id,
                reason,
                detail,
                host_action,
                ..
            },
            Some(BackendVolume::Cinder(volume)),
        ) if pv.driver.backend() == Some(Backend::OpenStack) => (
            dispose_cinder(
                &pv.volume_id,
                volume,
                id,
                node.progress.as_ref(),
                *host_action == Some(HostActionKind::DeleteServer),
            ),
            Proof {
                reason: *reason,
                detail: detail.clone(),
            },
        ),
        (Fenced::Satellite(satellite), Some(BackendVolume::Linstor(resource)))
            if pv.driver.backend() == Some(Backend::Linstor) =>
        {
            dispose_linstor(&node.name, satellite, &pv.volume_id, resource, ran)
        }
        // A node with Cinder and LINSTOR volumes, its server fenced: each LINSTOR volume is
        // judged by its replicas, as on a LINSTOR-only node.
        (Fenced::Server { reason, detail, .. }, Some(BackendVolume::Linstor(resource)))
            if pv.driver.backend() == Some(Backend::Linstor) =>
        {
            match &node.satellite {
                Some(satellite) => {
                    dispose_linstor(&node.name, satellite, &pv.volume_id, resource, ran)
                }
                None => (
                    Disposition::Held(Hold::SatelliteUnread),
                    Proof {
                        reason: *reason,
                        detail: detail.clone(),
                    },
                ),
            }
        }
        (Fenced::Server { reason, detail, .. }, _) => (
            Disposition::Held(Hold::BackendMismatch {
                driver: pv.driver.name().to_owned(),
            }),
            Proof {
                reason: *reason,
                detail: detail.clone(),
            },
        ),
        (Fenced::Satellite(_), _) => (
            Disposition::Held(Hold::BackendMismatch {
                driver: pv.driver.name().to_owned(),
            }),
            Proof {
                reason: Reason::ReplicasFenced,
                detail: String::new(),
            },
        ),
    }
}

/// A node outcome that is only a skip.
fn skipped(skip: Skip) -> Box<NodeOutcome> {
    Box::new(NodeOutcome::skipped(skip))
}

/// A recorded dead-host request that blocks another one.
fn requested(node: &NodeName, record: &HostAction, server: &ServerView, now: &str) -> String {
    format!(
        "the remediator asked Nova to {} server {} at {} (its progress record says so); {now} \
         {}{}: it is never asked twice. Check `openstack server show {}`; to allow another \
         attempt, remove the record: `kubectl annotate node {node} {}-`",
        match record.kind {
            HostActionKind::DeleteServer => "delete",
            HostActionKind::Evacuate => "evacuate",
        },
        record.server,
        record.at,
        server.status,
        server
            .task_state
            .as_deref()
            .map(|task| format!(" with task {task}"))
            .unwrap_or_default(),
        record.server,
        crate::model::PROGRESS_ANNOTATION
    )
}

/// A verdict that is not "fenced", as a skip.
fn not_fenced(verdict: Verdict) -> Skip {
    match verdict {
        Verdict::Unknown { detail } => Skip::Unknown { detail },
        Verdict::Fenced { detail, .. }
        | Verdict::Stoppable { detail }
        | Verdict::NotFenced { detail } => Skip::NotFenced { detail },
    }
}

/// S5 for Cinder: release only this server's attachment, never a bootable volume, never one
/// already detaching (unless the server is to be deleted: a detach that a dead host accepted
/// never ends, and Nova's local delete removes the attachment all the same) or in an
/// unexpected state, never one whose release is recorded (S7).
fn dispose_cinder<'a>(
    volume_id: &VolumeId,
    volume: &'a CinderVolumeView,
    server: &ServerId,
    progress: Option<&Progress>,
    deleting_server: bool,
) -> Disposition<'a> {
    if volume.bootable {
        return Disposition::Held(Hold::Bootable);
    }
    let mut ours: Vec<_> = volume
        .attachments
        .iter()
        .filter(|a| a.server == *server)
        .collect();
    ours.sort();
    let Some(first) = ours.first() else {
        return Disposition::Free;
    };
    if let Some(attachment) = &first.attachment_id
        && progress.is_some_and(|p| p.has_released(volume_id, server, Some(attachment)))
    {
        return Disposition::FreedEarlier(attachment);
    }
    let detaching = volume.status == "detaching" || ours.iter().any(|a| a.detaching);
    if detaching && !deleting_server {
        return Disposition::Held(Hold::Detaching);
    }
    if volume.status != "in-use" && !detaching {
        return Disposition::Held(Hold::VolumeStatus {
            status: volume.status.clone(),
        });
    }
    Disposition::Release(first.attachment_id.as_ref())
}

/// LINSTOR: nothing to release on the backend (the survivors take over); the per-resource
/// verdict decides whether the Kubernetes side may be cleaned.
fn dispose_linstor<'a>(
    node: &NodeName,
    satellite: &LinstorNodeView,
    resource_name: &VolumeId,
    resource: &LinstorResourceView,
    ran: bool,
) -> (Disposition<'a>, Proof) {
    match fence::linstor_resource(node, satellite, resource_name.as_str(), resource, ran) {
        Verdict::Fenced { reason, detail } => (Disposition::Free, Proof { reason, detail }),
        Verdict::Stoppable { detail }
        | Verdict::NotFenced { detail }
        | Verdict::Unknown { detail } => (
            Disposition::Held(Hold::ReplicaNotFenced {
                detail: detail.clone(),
            }),
            Proof {
                reason: Reason::ReplicasFenced,
                detail,
            },
        ),
    }
}
