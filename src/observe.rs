//! Builds one [`Observation`] from the cluster and the storage backend: the only place that
//! reads. It reads the backend only where the planner may act: nodes not Ready for longer than
//! the grace period, and the volumes of managed PVs that their pods or VolumeAttachments use;
//! for the controller, not at all while the storm guard holds (the planner acts on no node
//! then: thousands of dead nodes cost no backend read). At most
//! [`crate::bounded::CONCURRENT_READS`] backend reads are in flight at once.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::backend::Backend;
use crate::bounded::bounded;
use crate::cluster::{Breadth, Cluster, ClusterState};
use fencing::model::{Driver, NodeName, Observation, PvName, ServerId, StorageView, VolumeId};
use fencing::plan::Policy;

/// What to read beyond the nodes the planner may act on.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only these nodes are candidates (`--node`); every node when empty.
    pub nodes: BTreeSet<NodeName>,
    /// Also read every managed PV's volume to find attachments to servers that are no node
    /// (`diagnose`): one read per PV.
    pub orphans: bool,
    /// Read nothing of the backend while the storm guard holds (the controller); `diagnose`
    /// and `remediate` still show every node's verdict then.
    pub quiet_in_storm: bool,
}

/// Reads the cluster (as far as `breadth` says), then the backend where needed, into an
/// observation taken at `now`.
///
/// # Errors
/// When the cluster cannot be read; backend failures are part of the observation instead (a
/// node's [`StorageView::Error`], a volume left unread) so that the planner refuses to act on
/// them (S2).
pub async fn observe<B: Backend>(
    cluster: &Cluster,
    backend: &B,
    policy: &Policy,
    scope: &Scope,
    breadth: Breadth,
    now: Timestamp,
) -> Result<Observation, crate::cluster::Error> {
    let state = cluster.observe(breadth).await?;
    Ok(complete(state, backend, policy, scope, now).await)
}

/// Fills the backend's views into what the cluster showed.
pub async fn complete<B: Backend>(
    state: ClusterState,
    backend: &B,
    policy: &Policy,
    scope: &Scope,
    now: Timestamp,
) -> Observation {
    let ClusterState {
        mut nodes,
        mut persistent_volumes,
        claims,
        pods,
        volume_attachments,
        deployments,
        deployments_unread,
    } = state;

    let grace = jiff::SignedDuration::try_from(policy.grace).unwrap_or(jiff::SignedDuration::MAX);
    let storm =
        scope.quiet_in_storm && fencing::plan::storm_guard(&nodes, &policy.max_unhealthy).is_some();
    let candidates: BTreeSet<NodeName> = nodes
        .iter()
        .filter(|_| !storm)
        .filter(|node| scope.nodes.is_empty() || scope.nodes.contains(&node.name))
        .filter(|node| {
            let node_past_grace =
                !node.ready.is_ready() && now.duration_since(node.ready_since) >= grace;
            node_past_grace
                || fencing::plan::detection(node, now, policy.grace)
                    == Ok(fencing::plan::Detection::Cloud)
        })
        .map(|node| node.name.clone())
        .collect();
    // For orphans, every node without providerID is matched too: a server no node maps to by
    // any route is the only one whose stale attachments may be released.
    let matched: BTreeSet<NodeName> = nodes
        .iter()
        .filter(|node| {
            candidates.contains(&node.name)
                || (scope.orphans && node.provider_server_id().is_none())
        })
        .map(|node| node.name.clone())
        .collect();

    let views = bounded(
        nodes
            .iter()
            .filter(|node| matched.contains(&node.name))
            .map(|node| async move {
                let storage = backend.observe_node(node).await;
                // Seen through Nova: LINSTOR too, for the node's LINSTOR volumes.
                let satellite = match storage {
                    StorageView::OpenStack(_) | StorageView::ServerGone { .. } => {
                        backend.observe_satellite(node).await
                    }
                    _ => None,
                };
                (storage, satellite)
            })
            .collect(),
    )
    .await;
    let mut views = views.into_iter();
    for node in nodes.iter_mut().filter(|node| matched.contains(&node.name)) {
        (node.storage, node.satellite) = views.next().unwrap_or((StorageView::Unobserved, None));
    }

    // PVs used on candidate nodes: through their pods' claims, or their VolumeAttachments.
    let mut wanted: BTreeSet<PvName> = volume_attachments
        .iter()
        .filter(|va| candidates.contains(&va.node))
        .filter_map(|va| va.pv.clone())
        .collect();
    for pod in pods.iter().filter(|pod| {
        pod.node
            .as_ref()
            .is_some_and(|node| candidates.contains(node))
    }) {
        for claim in &pod.claims {
            let bound = claims
                .iter()
                .find(|c| c.namespace == pod.namespace && c.name == *claim)
                .and_then(|c| c.volume.clone());
            wanted.extend(bound);
        }
    }
    let reads: Vec<usize> = persistent_volumes
        .iter()
        .enumerate()
        .filter(|(_, pv)| backend.manages(&pv.driver))
        .filter(|(_, pv)| scope.orphans || wanted.contains(&pv.name))
        .map(|(index, _)| index)
        .collect();
    let ids: Vec<(Driver, VolumeId)> = reads
        .iter()
        .map(|&index| {
            let pv = &persistent_volumes[index];
            (pv.driver.clone(), pv.volume_id.clone())
        })
        .collect();
    let volumes = backend.observe_volumes(&ids).await;
    for (&index, result) in reads.iter().zip(volumes) {
        match result {
            Ok(volume) => persistent_volumes[index].backend = Some(volume),
            Err(err) => tracing::warn!(
                pv = %persistent_volumes[index].name,
                error = %err,
                "Could not read the volume; no action on it this round"
            ),
        }
    }

    let gone_servers = if scope.orphans {
        stale_servers(&nodes, &persistent_volumes, backend).await
    } else {
        Vec::new()
    };

    Observation {
        now,
        nodes,
        persistent_volumes,
        claims,
        pods,
        volume_attachments,
        gone_servers,
        region: backend.region().map(str::to_owned),
        deployments,
        deployments_unread,
    }
}

/// Servers that hold attachments of managed volumes, are no node's server, and are gone.
async fn stale_servers<B: Backend>(
    nodes: &[fencing::model::NodeView],
    pvs: &[fencing::model::PvView],
    backend: &B,
) -> Vec<ServerId> {
    let known: BTreeSet<ServerId> = nodes
        .iter()
        .flat_map(|node| {
            let matched = match &node.storage {
                StorageView::OpenStack(server) => vec![server.id.clone()],
                StorageView::ServerGone { id } => vec![id.clone()],
                StorageView::Ambiguous { candidates } => candidates.clone(),
                _ => Vec::new(),
            };
            matched.into_iter().chain(node.provider_server_id())
        })
        .collect();
    let holders: BTreeSet<ServerId> = pvs
        .iter()
        .filter_map(|pv| match &pv.backend {
            Some(fencing::model::BackendVolume::Cinder(volume)) => Some(volume),
            _ => None,
        })
        .flat_map(|volume| volume.attachments.iter().map(|a| a.server.clone()))
        .filter(|server| !known.contains(server))
        .collect();
    let answers = bounded(
        holders
            .iter()
            .map(|server| backend.server_gone(server))
            .collect(),
    )
    .await;
    holders
        .into_iter()
        .zip(answers)
        .filter_map(|(server, gone)| matches!(gone, Ok(true)).then_some(server))
        .collect()
}
