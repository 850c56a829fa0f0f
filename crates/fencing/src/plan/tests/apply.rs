//! A pure model of the executor: applies a plan's steps to an observation as if each succeeded
//! and was verified (releases recorded in the progress record, S7).

use crate::model::{
    BackendVolume, HostAction, HostActionKind, HostView, NodeView, Observation, ReleasedVolume,
    StorageView, Taint,
};
use crate::plan::{Action, Plan};

fn node_mut<'o>(
    observation: &'o mut Observation,
    name: &crate::model::NodeName,
) -> Vec<&'o mut NodeView> {
    observation
        .nodes
        .iter_mut()
        .filter(|n| n.name == *name)
        .collect()
}

pub fn apply(observation: &Observation, plan: &Plan) -> Observation {
    let mut next = observation.clone();
    for step in &plan.steps {
        match &step.action {
            Action::StopServer { node, .. } => {
                // What the next read shows right after os-stop: the stop is in progress.
                for node in node_mut(&mut next, node) {
                    if let StorageView::OpenStack(server) = &mut node.storage {
                        server.task_state = Some("powering-off".to_owned());
                    }
                }
            }
            Action::DeleteServer {
                node,
                server,
                host,
                volumes,
            } => {
                // Nova's local delete: gone, every attachment of the server removed.
                for pv in &mut next.persistent_volumes {
                    if let Some(BackendVolume::Cinder(cinder)) = &mut pv.backend {
                        cinder.attachments.retain(|a| a.server != *server);
                        if cinder.attachments.is_empty() {
                            "available".clone_into(&mut cinder.status);
                        }
                    }
                }
                for node in node_mut(&mut next, node) {
                    node.storage = StorageView::ServerGone { id: server.clone() };
                    node.progress.get_or_insert_default().host_action =
                        Some(record(HostActionKind::DeleteServer, server, host, volumes));
                }
            }
            Action::EvacuateServer {
                node,
                server,
                host,
                volumes,
            } => {
                // Rebuilt on another host, which is up; the node is not Ready yet.
                for node in node_mut(&mut next, node) {
                    if let StorageView::OpenStack(view) = &mut node.storage {
                        view.host = Some("compute-9".to_owned());
                        view.host_state = Some(HostView {
                            up: true,
                            forced_down: false,
                        });
                        "ACTIVE".clone_into(&mut view.status);
                        view.power_state = Some(1);
                    }
                    node.progress.get_or_insert_default().host_action =
                        Some(record(HostActionKind::Evacuate, server, host, volumes));
                }
            }
            Action::DeleteNode { node, .. } => {
                next.nodes.retain(|n| n.name != *node);
            }
            Action::ReleaseVolume {
                node,
                server,
                volume,
                attachment_id,
                ..
            } => {
                for pv in next
                    .persistent_volumes
                    .iter_mut()
                    .filter(|p| p.volume_id == *volume)
                {
                    if let Some(BackendVolume::Cinder(cinder)) = &mut pv.backend {
                        cinder.attachments.retain(|a| a.server != *server);
                        if cinder.attachments.is_empty() {
                            "available".clone_into(&mut cinder.status);
                        }
                    }
                }
                if let Some(node) = node {
                    for node in node_mut(&mut next, node) {
                        node.progress
                            .get_or_insert_default()
                            .released
                            .push(ReleasedVolume {
                                volume: volume.clone(),
                                server: server.clone(),
                                attachment_id: attachment_id.clone(),
                            });
                    }
                }
            }
            Action::DeleteVolumeAttachment { name, .. } => {
                next.volume_attachments.retain(|va| va.name != *name);
            }
            Action::ForceDeletePod { uid, .. } | Action::KickPod { uid, .. } => {
                next.pods.retain(|p| p.uid != *uid);
            }
            Action::TaintNode { node } => {
                for node in node_mut(&mut next, node) {
                    node.taints.push(Taint::out_of_service());
                    node.progress.get_or_insert_default().out_of_service_taint = true;
                }
            }
            Action::RemoveTaint { node } => {
                for node in node_mut(&mut next, node) {
                    node.taints
                        .retain(|t| t.key != crate::model::OUT_OF_SERVICE_TAINT_KEY);
                }
            }
            Action::ClearProgress { node } => {
                for node in node_mut(&mut next, node) {
                    node.progress = None;
                }
            }
        }
    }
    next
}

fn record(
    kind: HostActionKind,
    server: &crate::model::ServerId,
    host: &Option<String>,
    volumes: &[crate::model::VolumeId],
) -> HostAction {
    HostAction {
        kind,
        server: server.clone(),
        host: host.clone(),
        at: super::builder::now(),
        volumes: volumes.to_vec(),
    }
}
