//! Runs a plan step by step: re-verify, act, verify by reading back (never by trusting a 202),
//! record progress on the Node so a restart resumes without repeating a verified release (S7),
//! record an Event on every object touched, and stop a node's sequence at its first failure.
//!
//! Re-verification at the moment of acting: right before each release or stop, and before the
//! first Kubernetes-side step of a node, the Node and its server are read again and
//! [`fencing::plan::recheck`] must accept them (same UID, still not Ready past the grace, the
//! same server still proven fenced). A plan may be minutes old (an operator's "y", a slow read):
//! anything changed stops that node's remaining steps. Every write carries a precondition (the
//! Node's or VolumeAttachment's UID, the resourceVersion read).
//!
//! The executor never decides: every step comes from [`fencing::plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use jiff::Timestamp;

use crate::backend::{self, Backend, Release, ReleaseState, Whereabouts};
use crate::cluster::{Cluster, Target};
use crate::config::one_line;
use fencing::model::{
    HostAction, HostActionKind, NodeName, NodeUid, NodeView, Observation, Progress, ReleasedVolume,
    ServerId, Taint, VolumeId,
};
use fencing::plan::{Action, Plan, Policy, Purpose, ReleaseVia, Step, recheck};

/// How patient the executor is.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a release (or a stop) may take to show done before it counts as failed.
    pub verify_timeout: Duration,
    /// How often the backend is read back while waiting.
    pub poll_interval: Duration,
    /// How long a deleted VolumeAttachment may keep its attacher's finalizer before the
    /// executor removes it (the volume is already released by then).
    pub attacher_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            verify_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
            attacher_grace: Duration::from_secs(10),
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Done and verified.
    Done {
        /// How long it took, including verification.
        millis: u64,
    },
    /// It failed; nothing later for its node was attempted.
    Failed {
        /// What went wrong.
        error: String,
        /// What the operator can do next.
        next_step: String,
        /// The API refused these credentials the right (401/403): a retry will not help until
        /// an operator grants it.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        refused: bool,
    },
    /// Not done: what it relied on changed since planning (re-verification at the moment of
    /// acting); nothing more for its node this run.
    Stale {
        /// What changed.
        why: String,
        /// What follows.
        next_step: String,
    },
    /// Not attempted because an earlier step of its node failed.
    NotAttempted {
        /// Which earlier failure.
        because: String,
    },
}

/// A step and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step.
    pub step: Step,
    /// How it ended.
    pub outcome: Outcome,
}

/// What happened while a plan ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every step, in order.
    pub steps: Vec<StepReport>,
}

impl Report {
    /// Whether every step was done.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Done { .. }))
    }
}

/// What the executor is doing, for a progress display.
#[derive(Debug, Clone)]
pub enum Progressing<'a> {
    /// A step starts.
    Started(&'a Step),
    /// Still waiting for a step to show done; what the backend shows now.
    Waiting(&'a Step, &'a str),
    /// A step ended.
    Ended(&'a StepReport),
}

/// Runs plans against a cluster and a backend.
pub struct Executor<'a, B> {
    cluster: &'a Cluster,
    backend: &'a B,
    policy: &'a Policy,
    options: Options,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

struct Failure {
    error: String,
    next_step: String,
    /// The API refused these credentials the right (401/403): retrying will not help.
    refused: bool,
}

/// What a run knows of one node: its observed view, and whether its Kubernetes side was
/// re-verified already this run.
struct NodeState<'o> {
    observed: &'o NodeView,
    progress: Progress,
    kubernetes_verified: bool,
    /// Releases already sent together (after one re-verification), by volume, with how the
    /// request ended; their steps only verify.
    sent: BTreeMap<VolumeId, Result<(), Failure>>,
}

impl<'a, B: Backend> Executor<'a, B> {
    /// An executor over `cluster` and `backend`, re-verifying with the `policy` the plan was
    /// made with.
    #[must_use]
    pub fn new(cluster: &'a Cluster, backend: &'a B, policy: &'a Policy, options: Options) -> Self {
        Self {
            cluster,
            backend,
            policy,
            options,
            gate: None,
        }
    }

    /// Starts no step while `gate` says `false` (the controller's leadership, or a shutdown):
    /// the step in flight finishes, the later ones are not attempted.
    #[must_use]
    pub fn with_gate(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Runs every step of `plan` (made from `observation`), in order.
    pub async fn run(
        &self,
        plan: &Plan,
        observation: &Observation,
        mut on_progress: impl FnMut(Progressing<'_>),
    ) -> Report {
        let mut nodes: BTreeMap<NodeName, NodeState<'_>> = BTreeMap::new();
        for node in &observation.nodes {
            nodes.insert(
                node.name.clone(),
                NodeState {
                    observed: node,
                    progress: node.progress.clone().unwrap_or_default(),
                    kubernetes_verified: false,
                    sent: BTreeMap::new(),
                },
            );
        }
        let mut failed_nodes: BTreeMap<NodeName, String> = BTreeMap::new();
        let mut failed_volumes: BTreeSet<VolumeId> = BTreeSet::new();
        let mut report = Report::default();
        for (index, step) in plan.steps.iter().enumerate() {
            // A release already sent with its node's others is seen through: verified,
            // recorded and reported, whatever happened to the others.
            let sent = match (&step.node, &step.action) {
                (Some(node), Action::ReleaseVolume { volume, .. }) => nodes
                    .get(node)
                    .is_some_and(|state| state.sent.contains_key(volume)),
                _ => false,
            };
            let blocked = (!sent)
                .then(|| {
                    step.node
                        .as_ref()
                        .and_then(|node| failed_nodes.get(node).cloned())
                        .or_else(|| {
                            step.after
                                .iter()
                                .find(|volume| failed_volumes.contains(*volume))
                                .map(|volume| format!("the release of volume {volume} failed"))
                        })
                        .or_else(|| {
                            self.gate
                                .as_ref()
                                .is_some_and(|gate| !*gate.borrow())
                                .then(|| {
                                    "this replica may no longer act (not the leader, or stopping)"
                                        .to_owned()
                                })
                        })
                })
                .flatten();
            let outcome = if let Some(because) = blocked {
                Outcome::NotAttempted { because }
            } else {
                on_progress(Progressing::Started(step));
                let started = Instant::now();
                let result = match self.reverify(step, observation, &mut nodes).await {
                    Ok(()) => {
                        self.send_releases(&plan.steps[index..], &mut nodes).await;
                        self.perform(step, &mut nodes, &mut on_progress).await
                    }
                    Err(why) => Err(Failure {
                        next_step: self.stale(step, &why).await,
                        error: why,
                        refused: false,
                    }),
                };
                let stale = matches!(&result, Err(failure) if failure.error.starts_with(STALE));
                match result {
                    Ok(()) => Outcome::Done {
                        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    },
                    Err(failure) => {
                        if let Some(node) = &step.node {
                            let because = if stale {
                                "the evidence changed since planning".to_owned()
                            } else {
                                format!("{} failed", step.action.metric_label())
                            };
                            failed_nodes.insert(node.clone(), because);
                        }
                        if let Action::ReleaseVolume { volume, .. } = &step.action {
                            failed_volumes.insert(volume.clone());
                        }
                        if stale {
                            Outcome::Stale {
                                why: failure.error,
                                next_step: failure.next_step,
                            }
                        } else {
                            if let Some(node) = &step.node {
                                let note = format!(
                                    "{} failed: {}; next: {}",
                                    step.action, failure.error, failure.next_step
                                );
                                self.node_event(node, true, "RemediationFailed", "Remediate", note)
                                    .await;
                            }
                            Outcome::Failed {
                                error: failure.error,
                                next_step: failure.next_step,
                                refused: failure.refused,
                            }
                        }
                    }
                }
            };
            let entry = StepReport {
                step: step.clone(),
                outcome,
            };
            on_progress(Progressing::Ended(&entry));
            report.steps.push(entry);
        }
        report
    }

    /// Re-reads what the step relies on and checks the evidence still holds (see the module
    /// documentation). An orphan's release needs its server still gone.
    async fn reverify(
        &self,
        step: &Step,
        observation: &Observation,
        nodes: &mut BTreeMap<NodeName, NodeState<'_>>,
    ) -> Result<(), String> {
        let Some(name) = &step.node else {
            if let Action::ReleaseVolume { server, .. } = &step.action {
                return match self.backend.server_gone(server).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(changed(format!("server {server} exists again"))),
                    Err(err) => Err(changed(format!(
                        "server {server} could not be read again: {}",
                        one_line(&err)
                    ))),
                };
            }
            return Ok(());
        };
        let Some(state) = nodes.get_mut(name) else {
            return Err(changed(format!("node {name} was not observed")));
        };
        if let Action::ReleaseVolume { volume, .. } = &step.action
            && state.sent.contains_key(volume)
        {
            return Ok(()); // re-verified right before it was sent with the others
        }
        let purpose = match &step.action {
            // Back after an evacuate: its waiting replacements are kicked while it stays Ready.
            Action::KickPod { .. } if state.observed.ready.is_ready() => Purpose::Recover,
            Action::StopServer { .. } => Purpose::Stop,
            Action::ReleaseVolume { .. }
            | Action::DeleteServer { .. }
            | Action::EvacuateServer { .. }
            | Action::DeleteNode { .. } => Purpose::Fenced,
            Action::RemoveTaint { .. } | Action::ClearProgress { .. } => Purpose::Recover,
            Action::DeleteVolumeAttachment { .. }
            | Action::ForceDeletePod { .. }
            | Action::TaintNode { .. }
            | Action::KickPod { .. } => Purpose::Fenced,
        };
        let kubernetes_side = !step.action.is_cloud_action();
        if kubernetes_side && state.kubernetes_verified {
            return Ok(());
        }
        let fresh = match self.cluster.node(name.as_str()).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return Err(changed(format!("node {name} was deleted"))),
            Err(err) => {
                return Err(changed(format!(
                    "node {name} could not be read again: {}",
                    one_line(&err)
                )));
            }
        };
        let mut fresh = fresh;
        if purpose != Purpose::Recover {
            fresh.storage = self.backend.observe_node(&fresh).await;
        }
        // A node reported dead from the cloud side: the report holds, and its kubelet's Lease
        // is read again (a kubelet that renewed since contradicts it).
        if let Some(death) = &state.observed.cloud_death {
            fresh.cloud_death = Some(death.clone());
            fresh.kubelet_renewed = self
                .cluster
                .kubelet_renewed(name.as_str())
                .await
                .ok()
                .flatten();
        }
        recheck(
            state.observed,
            &fresh,
            observation.region.as_deref(),
            Timestamp::now(),
            self.policy,
            purpose,
        )
        .map_err(changed)?;
        if kubernetes_side {
            state.kubernetes_verified = true;
        }
        Ok(())
    }

    /// Says why a step is not done (a Warning Event on its node) and what follows.
    async fn stale(&self, step: &Step, why: &str) -> String {
        if let Some(node) = &step.node {
            self.node_event(
                node,
                true,
                "EvidenceChanged",
                "Reverify",
                format!("{why}; nothing more is done for this node in this run"),
            )
            .await;
        }
        let subject = step
            .node
            .as_ref()
            .map_or_else(|| "this volume".to_owned(), |node| format!("node {node}"));
        format!(
            "nothing more is done for {subject} in this run; the next run reads it again and plans afresh"
        )
    }

    async fn perform(
        &self,
        step: &Step,
        nodes: &mut BTreeMap<NodeName, NodeState<'_>>,
        on_progress: &mut impl FnMut(Progressing<'_>),
    ) -> Result<(), Failure> {
        let reason = step.reason.as_event_reason();
        match &step.action {
            Action::StopServer { node, server } => {
                self.backend
                    .stop(server)
                    .await
                    .map_err(|err| backend_failure(&err, step))?;
                self.wait(step, on_progress, || async {
                    match self.backend.stopped(server).await {
                        Ok(true) => Ok(None),
                        Ok(false) => Ok(Some("not SHUTOFF yet".to_owned())),
                        Err(err) => Err(err),
                    }
                })
                .await?;
                let note = format!(
                    "Stopped server {server} to fence the node ({})",
                    step.detail
                );
                self.node_event(node, true, reason, "StopServer", note)
                    .await;
            }
            Action::DeleteServer {
                node,
                server,
                host,
                volumes,
            } => {
                self.request_host_action(nodes, step, HostActionKind::DeleteServer, host, volumes)
                    .await?;
                self.wait(step, on_progress, || {
                    self.deleted_with_volumes(server, volumes)
                })
                .await?;
                let list: Vec<&str> = volumes.iter().map(VolumeId::as_str).collect();
                let note = format!(
                    "Deleted server {server} on forced-down compute host {}: Nova's local delete \
                     released volume(s) {} ({})",
                    host.as_deref().unwrap_or("(unknown)"),
                    list.join(", "),
                    step.detail
                );
                self.node_event(node, true, reason, "DeleteServer", note)
                    .await;
            }
            Action::EvacuateServer {
                node,
                server,
                host,
                volumes,
            } => {
                self.request_host_action(nodes, step, HostActionKind::Evacuate, host, volumes)
                    .await?;
                // Accepted: a rebuild in progress, or already done elsewhere (or no host found).
                let moved = |now: &Whereabouts| {
                    now.status == "ERROR"
                        || now.task_state.as_deref() == Some("rebuilding")
                        || now.host != *host
                };
                self.wait(step, on_progress, || async {
                    Ok(match self.backend.whereabouts(server).await? {
                        Some(now) if moved(&now) => None,
                        Some(now) => Some(format!("{} on {}", now.status, show(&now.host))),
                        None => Some("gone".to_owned()),
                    })
                })
                .await?;
                if let Ok(Some(now)) = self.backend.whereabouts(server).await
                    && now.status == "ERROR"
                {
                    return Err(Failure {
                        error: format!(
                            "Nova found no host to rebuild server {server} on: it is ERROR"
                        ),
                        next_step: format!(
                            "free capacity in its availability zone or name a host (`openstack \
                             server evacuate --host HOST {server}`); the remediator does not ask \
                             again while its record is on node {node}"
                        ),
                        refused: false,
                    });
                }
                let note = format!(
                    "Evacuating server {server} from forced-down compute host {}: Nova rebuilds \
                     it on another host with its volumes; the node should come back Ready ({})",
                    show(host),
                    step.detail
                );
                self.node_event(node, true, reason, "EvacuateServer", note)
                    .await;
            }
            Action::DeleteNode { node, uid } => {
                let Some(uid) = uid else {
                    return Err(Failure {
                        error: format!("node {node} was observed without a UID"),
                        next_step: format!("check it by hand: {}", step.action.manual_command()),
                        refused: false,
                    });
                };
                let note = format!("Deleting node {node}: {}", step.detail);
                self.node_event(node, true, reason, "DeleteNode", note)
                    .await;
                self.cluster
                    .delete_node(node.as_str(), uid)
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
            }
            Action::ReleaseVolume {
                node,
                server,
                volume,
                pv,
                attachment_id,
                via,
            } => {
                let release = Release {
                    server: server.clone(),
                    volume: volume.clone(),
                    attachment_id: attachment_id.clone(),
                    via: *via,
                };
                let sent = node
                    .as_ref()
                    .and_then(|node| nodes.get_mut(node))
                    .and_then(|state| state.sent.remove(volume));
                match sent {
                    Some(sent) => sent?,
                    None => self.send_release(&release, step).await?,
                }
                self.wait(step, on_progress, || async {
                    match self.backend.release_state(&release).await {
                        Ok(ReleaseState::Released) => Ok(None),
                        Ok(ReleaseState::Pending(status)) => Ok(Some(status)),
                        Err(err) => Err(err),
                    }
                })
                .await?;
                if let Some(node) = node {
                    let state = node_state(nodes, node, step)?;
                    let released = ReleasedVolume {
                        volume: volume.clone(),
                        server: server.clone(),
                        attachment_id: attachment_id.clone(),
                    };
                    if !state.progress.released.contains(&released) {
                        state.progress.released.push(released);
                    }
                    let uid = node_uid(state.observed, step)?;
                    self.save_progress(node, &uid, &state.progress).await?;
                    let note = format!(
                        "Released volume {volume} (PV {pv}) from server {server}: {}",
                        step.detail
                    );
                    self.node_event(node, false, reason, "ReleaseVolume", note)
                        .await;
                }
            }
            Action::DeleteVolumeAttachment {
                name,
                uid,
                node,
                pv,
                volume,
                server,
                attachment_id,
            } => {
                let Some(uid) = uid else {
                    return Err(Failure {
                        error: format!("VolumeAttachment {name} was observed without a UID"),
                        next_step: format!("check it by hand: {}", step.action.manual_command()),
                        refused: false,
                    });
                };
                let note = format!(
                    "Deleting VolumeAttachment of PV {pv} on fenced node {node}: its volume is released"
                );
                self.cluster
                    .event(
                        &Target::VolumeAttachment(name.clone()),
                        false,
                        reason,
                        "DeleteVolumeAttachment",
                        note,
                    )
                    .await;
                self.cluster
                    .delete_volume_attachment(name.as_str(), uid)
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
                let release = server.as_ref().map(|server| Release {
                    server: server.clone(),
                    volume: volume.clone(),
                    attachment_id: attachment_id.clone(),
                    via: ReleaseVia::Nova,
                });
                self.finish_volume_attachment(
                    step,
                    name.as_str(),
                    uid,
                    release.as_ref(),
                    on_progress,
                )
                .await?;
            }
            Action::ForceDeletePod {
                namespace,
                name,
                uid,
                node,
            } => {
                let note = format!(
                    "Force-deleting pod stuck on fenced node {node}: {}",
                    step.detail
                );
                let target = Target::Pod {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: Some(uid.to_string()),
                };
                self.cluster
                    .event(&target, true, reason, "ForceDeletePod", note)
                    .await;
                self.cluster
                    .delete_pod(namespace.as_str(), name.as_str(), uid.as_str(), Some(0))
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
            }
            Action::KickPod {
                namespace,
                name,
                uid,
                volume,
                ..
            } => {
                let note = format!(
                    "Deleting pod so its controller recreates it at once: volume {volume} it waits for is released"
                );
                let target = Target::Pod {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: Some(uid.to_string()),
                };
                self.cluster
                    .event(&target, false, reason, "KickPod", note)
                    .await;
                self.cluster
                    .delete_pod(namespace.as_str(), name.as_str(), uid.as_str(), None)
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
            }
            Action::TaintNode { node } => {
                let state = node_state(nodes, node, step)?;
                let uid = node_uid(state.observed, step)?;
                let added = self
                    .cluster
                    .add_taint(node.as_str(), &uid, &Taint::out_of_service())
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
                if added {
                    // Ours only when our write added it: one someone else added stays theirs.
                    state.progress.out_of_service_taint = true;
                    self.save_progress(node, &uid, &state.progress).await?;
                }
                let note = format!("Added the out-of-service taint: {}", step.detail);
                self.node_event(node, true, reason, "TaintNode", note).await;
            }
            Action::RemoveTaint { node } => {
                let uid = node_uid(node_state(nodes, node, step)?.observed, step)?;
                self.cluster
                    .remove_taint(node.as_str(), &uid, &Taint::out_of_service())
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
                let note = "Removed the out-of-service taint cinder-remediator added: the node is Ready again".to_owned();
                self.node_event(node, false, reason, "RemoveTaint", note)
                    .await;
            }
            Action::ClearProgress { node } => {
                let state = node_state(nodes, node, step)?;
                let uid = node_uid(state.observed, step)?;
                self.cluster
                    .set_progress(node.as_str(), &uid, None)
                    .await
                    .map_err(|err| cluster_failure(&err, step))?;
                state.progress = Progress::default();
            }
        }
        Ok(())
    }

    /// Sends at once the releases of `steps` that follow the first (just re-verified) one for
    /// the same node, up to the first step of anything else: a node's volumes then detach
    /// together, after one re-verification, instead of one after the other. Each step still
    /// verifies its own release, records it and reports it.
    async fn send_releases(&self, steps: &[Step], nodes: &mut BTreeMap<NodeName, NodeState<'_>>) {
        let Some(Step {
            node: Some(node), ..
        }) = steps.first()
        else {
            return;
        };
        let Some(state) = nodes.get_mut(node) else {
            return;
        };
        let group: Vec<(&Step, Release)> = steps
            .iter()
            .map_while(|step| match &step.action {
                Action::ReleaseVolume {
                    server,
                    volume,
                    attachment_id,
                    via,
                    ..
                } if step.node.as_ref() == Some(node) && step.after.is_empty() => Some((
                    step,
                    Release {
                        server: server.clone(),
                        volume: volume.clone(),
                        attachment_id: attachment_id.clone(),
                        via: *via,
                    },
                )),
                _ => None,
            })
            .filter(|(_, release)| !state.sent.contains_key(&release.volume))
            .collect();
        let results = futures::future::join_all(
            group
                .iter()
                .map(|(step, release)| self.send_release(release, step)),
        )
        .await;
        for ((_, release), result) in group.into_iter().zip(results) {
            state.sent.insert(release.volume, result);
        }
    }

    /// Sends one release. A release that raced with another (or a retry after a crash) finds
    /// the attachment already gone: that is success, as the read-back shows.
    async fn send_release(&self, release: &Release, step: &Step) -> Result<(), Failure> {
        if let Err(err) = self.backend.release(release).await {
            let done = matches!(
                self.backend.release_state(release).await,
                Ok(ReleaseState::Released)
            );
            if !done {
                return Err(backend_failure(&err, step));
            }
        }
        Ok(())
    }

    /// Records an Event on a node.
    async fn node_event(
        &self,
        node: &NodeName,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.cluster
            .event(&Target::Node(node.clone()), warning, reason, action, note)
            .await;
    }

    /// Asks Nova to delete or evacuate a server, its intent first written into the node's
    /// progress record: a crash after it never sends it twice (S7); not recorded, not sent. A
    /// refusal (4xx: Nova did nothing) clears the record again, so that a later run may ask;
    /// a failure that may have reached Nova (a timeout, a 5xx) keeps it. A delete that finds the
    /// server gone is done.
    async fn request_host_action(
        &self,
        nodes: &mut BTreeMap<NodeName, NodeState<'_>>,
        step: &Step,
        kind: HostActionKind,
        host: &Option<String>,
        volumes: &[VolumeId],
    ) -> Result<(), Failure> {
        let Some(server) = self
            .record_host_action(nodes, step, kind, host, volumes)
            .await?
        else {
            return Ok(());
        };
        let sent = match kind {
            HostActionKind::DeleteServer => self.backend.delete_server(&server).await,
            HostActionKind::Evacuate => self.backend.evacuate(&server).await,
        };
        let Err(err) = sent else {
            return Ok(());
        };
        if kind == HostActionKind::DeleteServer
            && matches!(self.backend.server_gone(&server).await, Ok(true))
        {
            return Ok(());
        }
        let mut failure = backend_failure(&err, step);
        if let (false, Some(node)) = (err.is_transient(), &step.node) {
            let state = node_state(nodes, node, step)?;
            state.progress.host_action = None;
            let uid = node_uid(state.observed, step)?;
            self.save_progress(node, &uid, &state.progress).await?;
        } else {
            failure.next_step = format!(
                "the request may have reached Nova, so it is not sent again: check `openstack \
                 server show {server}`; to allow another attempt, remove the record (`kubectl \
                 annotate node {} {}-`)",
                step.node.as_ref().map_or("NODE", NodeName::as_str),
                fencing::model::PROGRESS_ANNOTATION
            );
        }
        Err(failure)
    }

    /// Writes the intent of a delete or evacuate into the node's progress record before the
    /// request is sent; returns the server.
    async fn record_host_action(
        &self,
        nodes: &mut BTreeMap<NodeName, NodeState<'_>>,
        step: &Step,
        kind: HostActionKind,
        host: &Option<String>,
        volumes: &[VolumeId],
    ) -> Result<Option<ServerId>, Failure> {
        let (
            Some(node),
            Action::DeleteServer { server, .. } | Action::EvacuateServer { server, .. },
        ) = (&step.node, &step.action)
        else {
            return Ok(None);
        };
        let state = node_state(nodes, node, step)?;
        let uid = node_uid(state.observed, step)?;
        state.progress.host_action = Some(HostAction {
            kind,
            server: server.clone(),
            host: host.clone(),
            at: Timestamp::now(),
            volumes: volumes.to_vec(),
        });
        self.cluster
            .set_progress(node.as_str(), &uid, Some(&state.progress))
            .await
            .map_err(|err| Failure {
                error: one_line(&err),
                next_step: format!(
                    "nothing was sent: the intent could not be recorded on node {node} first; \
                     the next run tries again"
                ),
                refused: false,
            })?;
        Ok(Some(server.clone()))
    }

    /// Whether a deleted server is gone and Cinder shows none of `volumes` on it.
    async fn deleted_with_volumes(
        &self,
        server: &ServerId,
        volumes: &[VolumeId],
    ) -> Result<Option<String>, backend::Error> {
        if !self.backend.server_gone(server).await? {
            return Ok(Some(format!("server {server} not gone yet")));
        }
        for volume in volumes {
            let release = Release {
                server: server.clone(),
                volume: volume.clone(),
                attachment_id: None,
                via: ReleaseVia::Nova,
            };
            if let ReleaseState::Pending(status) = self.backend.release_state(&release).await? {
                return Ok(Some(format!("volume {volume} still {status} on it")));
            }
        }
        Ok(None)
    }

    async fn save_progress(
        &self,
        node: &NodeName,
        uid: &NodeUid,
        record: &Progress,
    ) -> Result<(), Failure> {
        self.cluster
            .set_progress(node.as_str(), uid, Some(record))
            .await
            .map_err(|err| Failure {
                error: one_line(&err),
                next_step: format!(
                    "the action was done but not recorded on node {node}; a later run reads the \
                     backend again and does not repeat it"
                ),
                refused: false,
            })
    }

    /// Waits for a deleted VolumeAttachment to go; when the attacher of the dead node does not
    /// drop its finalizer within the grace, removes it, but only once Cinder, read again at
    /// that moment, shows the volume's attachment to the node's server gone (`release`; none
    /// for LINSTOR, whose survivors took over).
    async fn finish_volume_attachment(
        &self,
        step: &Step,
        name: &str,
        uid: &fencing::model::VaUid,
        release: Option<&Release>,
        on_progress: &mut impl FnMut(Progressing<'_>),
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + self.options.attacher_grace;
        loop {
            let finalizers = self
                .cluster
                .volume_attachment_finalizers(name)
                .await
                .map_err(|err| cluster_failure(&err, step))?;
            let Some(finalizers) = finalizers else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                if let Some(release) = release {
                    match self.backend.release_state(release).await {
                        Ok(ReleaseState::Released) => {}
                        Ok(ReleaseState::Pending(status)) => {
                            return Err(Failure {
                                error: format!(
                                    "Cinder still shows volume {} on server {} ({status}): the \
                                     attacher's finalizer is kept",
                                    release.volume, release.server
                                ),
                                next_step: stuck_next_step(step),
                                refused: false,
                            });
                        }
                        Err(err) => return Err(backend_failure(&err, step)),
                    }
                }
                return self
                    .cluster
                    .remove_attacher_finalizer(name, uid)
                    .await
                    .map_err(|err| cluster_failure(&err, step));
            }
            on_progress(Progressing::Waiting(step, &finalizers.join(",")));
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Polls `check` until it says done (`None`), or fails after the verify timeout.
    async fn wait<F, Fut>(
        &self,
        step: &Step,
        on_progress: &mut impl FnMut(Progressing<'_>),
        check: F,
    ) -> Result<(), Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, backend::Error>>,
    {
        let deadline = Instant::now() + self.options.verify_timeout;
        loop {
            let last = match check().await {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => status,
                Err(err) if err.is_transient() => format!("read-back failed: {err}"),
                Err(err) => return Err(backend_failure(&err, step)),
            };
            if Instant::now() >= deadline {
                return Err(Failure {
                    error: format!(
                        "not done after {}: still {last}",
                        humantime::format_duration(self.options.verify_timeout)
                    ),
                    next_step: stuck_next_step(step),
                    refused: false,
                });
            }
            on_progress(Progressing::Waiting(step, &last));
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }
}

fn show(host: &Option<String>) -> &str {
    host.as_deref().unwrap_or("(unknown)")
}

/// How a stale step's reason begins.
const STALE: &str = "not done, the evidence changed since planning";

/// The evidence a step relied on no longer holds.
fn changed(why: String) -> String {
    format!("{STALE}: {why}")
}

fn node_state<'s, 'o>(
    nodes: &'s mut BTreeMap<NodeName, NodeState<'o>>,
    node: &NodeName,
    step: &Step,
) -> Result<&'s mut NodeState<'o>, Failure> {
    nodes.get_mut(node).ok_or_else(|| Failure {
        error: format!("node {node} was not observed"),
        next_step: format!("check it by hand: {}", step.action.manual_command()),
        refused: false,
    })
}

fn node_uid(node: &NodeView, step: &Step) -> Result<NodeUid, Failure> {
    node.uid.clone().ok_or_else(|| Failure {
        error: format!("node {} was observed without a UID", node.name),
        next_step: format!("check it by hand: {}", step.action.manual_command()),
        refused: false,
    })
}

fn backend_failure(err: &backend::Error, step: &Step) -> Failure {
    use crate::openstack::error::ErrorKind;
    let manual = step.action.manual_command();
    let next_step = match err {
        _ if err.is_transient() => {
            format!("a transient failure: the next run retries it (by hand: {manual})")
        }
        backend::Error::OpenStack(api) => match &api.kind {
            ErrorKind::Conflict(message) => conflict_next_step(message, &manual),
            ErrorKind::BadRequest(_) => format!(
                "the volume is not detachable as it stands (a root disk, or not in-use): check \
                 `openstack volume show` before doing anything by hand ({manual})"
            ),
            ErrorKind::Unauthorized(_) => format!(
                "Keystone refuses the credentials: fix them in cloud.conf (the cloud provider's \
                 Secret), then restart ({manual})"
            ),
            ErrorKind::Denied(_) => format!(
                "the OpenStack user lacks the right: grant it, or do it as an admin ({manual})"
            ),
            ErrorKind::NotFound | ErrorKind::Invalid(_) | ErrorKind::Unavailable(_) => {
                format!("check by hand: {manual}")
            }
        },
        backend::Error::Linstor(_) => format!(
            "check the LINSTOR controller (`linstor node list`, `linstor resource list`), then \
             by hand: {manual}"
        ),
        backend::Error::Unsupported(_) => format!("do it by hand: {manual}"),
    };
    Failure {
        error: one_line(err),
        next_step,
        refused: matches!(
            err,
            backend::Error::OpenStack(api)
                if matches!(api.kind, ErrorKind::Denied(_) | ErrorKind::Unauthorized(_))
        ),
    }
}

fn cluster_failure(err: &crate::cluster::Error, step: &Step) -> Failure {
    Failure {
        error: one_line(err),
        next_step: format!("retry, or by hand: {}", step.action.manual_command()),
        refused: matches!(err.code, Some(401 | 403)),
    }
}

/// What to do about Nova's 409, from its message: a compute service that is down refuses every
/// detach until it is back (or the server is deleted or evacuated); a task left by a stop that
/// never ran blocks it until reset.
fn conflict_next_step(message: &str, manual: &str) -> String {
    if message.contains("Service is unavailable") {
        format!(
            "Nova refuses every detach while the server's compute service is down: the volume is \
             freed only when the host is back, or once the host is fenced and forced down by \
             deleting or evacuating the server (see `diagnose`); do not retry by hand ({manual})"
        )
    } else if message.contains("powering-off") {
        "a stop that the compute host never carried out left the task `powering-off`, which \
         blocks every detach: fence the host, then clear it with `openstack server set --state \
         active SERVER` (admin) and run again"
            .to_owned()
    } else {
        format!(
            "Nova refuses while the server has a task in progress or is in a state that forbids \
             it: check `openstack server show` and run again once the task is done \
             (by hand: {manual})"
        )
    }
}

fn stuck_next_step(step: &Step) -> String {
    match &step.action {
        Action::ReleaseVolume { server, volume, .. } => format!(
            "the detach does not complete: the compute host of server {server} may have died \
             after Nova accepted it (Nova counts a host up until its last heartbeat is \
             service_down_time old). It is not sent again (a detaching volume is held); once \
             the host is fenced, mark it `openstack compute service set --down HOST \
             nova-compute` and run with --trust-forced-down --dead-host delete-server|evacuate \
             (check `openstack volume show {volume}`)"
        ),
        Action::StopServer { server, .. } => format!(
            "server {server} does not stop (its compute host may be dead) and its task \
             `powering-off` now blocks every detach: fence the host (`openstack compute service \
             set --down HOST nova-compute`), then clear the task with `openstack server set \
             --state active {server}` (admin)"
        ),
        other => format!("check by hand: {}", other.manual_command()),
    }
}
