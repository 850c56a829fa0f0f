//! What the operator reads: the diagnosis of every node that is not Ready (its server, the
//! fence verdict and why, what is stuck, what the plan does, and the commands to do it by hand),
//! as a table-like text or as JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::execute::{Outcome, Report};
use fencing::advice::{self, Advice};
use fencing::model::{
    Driver, LinstorResourceView, NodeName, NodeView, Observation, Readiness, StorageView,
};
use fencing::plan::fence::FailureKind;
use fencing::plan::{self, DeadHost, FenceMode, Plan, Policy, Skip, Verdict};

/// The diagnosis of one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// When it was observed.
    pub observed_at: String,
    /// Nodes not Ready, in name order.
    pub nodes: Vec<NodeDiagnosis>,
    /// Set when the storm guard holds every action.
    pub storm: Option<plan::StormGuard>,
    /// Attachments of managed volumes to servers that are no node.
    pub orphans: Vec<plan::Orphan>,
    /// Things to know.
    pub warnings: Vec<String>,
    /// What to change before the next failure or update, though nothing is stuck now.
    pub advice: Vec<Advice>,
    /// The whole plan, in order.
    pub plan: Plan,
}

/// One node not Ready.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDiagnosis {
    /// Node name.
    pub node: String,
    /// `False` or `Unknown`.
    pub ready: String,
    /// How long it has not been Ready.
    pub not_ready_for: String,
    /// The node's taints, as `key=value:Effect`.
    pub taints: Vec<String>,
    /// The backend's view of it.
    pub storage: StorageView,
    /// LINSTOR's view of it, when it is seen through Nova and LINSTOR knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub satellite: Option<fencing::model::LinstorNodeView>,
    /// The fence verdict: `fenced`, `stoppable`, `not fenced`, `unknown`, or `not checked`.
    pub verdict: String,
    /// Why.
    pub why: String,
    /// Why the node gets no action, when it gets none.
    pub skipped: Option<String>,
    /// What the operator can do when the remediator will not act.
    pub next_step: Option<String>,
    /// Volumes of managed PVs that the node's pods or VolumeAttachments use, with what the
    /// backend shows.
    pub volumes: Vec<String>,
    /// Pods on the node that use PersistentVolumeClaims.
    pub pods: Vec<String>,
    /// VolumeAttachments naming the node.
    pub volume_attachments: Vec<String>,
    /// Volumes of the node held back, with why.
    pub held: Vec<String>,
    /// The node's steps: what, and the command to do it by hand.
    pub steps: Vec<StepLine>,
    /// What kind of failure its server shows, what the remediator does about it with this
    /// policy, what would let it do more, and how long recovery takes.
    pub failure: Option<FailureReport>,
}

/// One failure kind, explained for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    /// `vm_down`, `vm_hung`, `hypervisor_dead`, `host_hidden`.
    pub kind: FailureKind,
    /// The kind, in words.
    pub name: &'static str,
    /// What the remediator does about it, with the policy it runs with.
    pub remediator: String,
    /// What would let it do more (flags, rights), when anything would.
    pub needs: Option<String>,
    /// How long until the volumes are free and a replacement runs.
    pub expect: String,
}

/// A step and the command an operator would type instead.
#[derive(Debug, Clone, Serialize)]
pub struct StepLine {
    /// What the remediator does.
    pub action: String,
    /// Why it is safe.
    pub why: String,
    /// The manual command.
    pub command: String,
}

/// Builds the diagnosis of what was observed and planned.
#[must_use]
pub fn diagnose(observation: &Observation, plan: &Plan, policy: &Policy) -> Diagnosis {
    let mut nodes: Vec<&NodeView> = observation
        .nodes
        .iter()
        .filter(|node| node.ready != Readiness::True)
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let nodes = nodes
        .into_iter()
        .map(|node| node_diagnosis(node, observation, plan, policy))
        .collect();
    Diagnosis {
        observed_at: observation.now.to_string(),
        nodes,
        storm: plan.storm,
        orphans: plan.orphans.clone(),
        warnings: plan.warnings.iter().map(ToString::to_string).collect(),
        advice: advice::advise(observation, policy),
        plan: plan.clone(),
    }
}

fn node_diagnosis(
    node: &NodeView,
    observation: &Observation,
    plan: &Plan,
    policy: &Policy,
) -> NodeDiagnosis {
    let (verdict, why) = match &node.storage {
        StorageView::OpenStack(server) => {
            verdict_words(&plan::fence::openstack(server, policy.trust_forced_down))
        }
        StorageView::ServerGone { id } => verdict_words(&plan::fence::server_gone(id)),
        StorageView::Linstor(satellite) => {
            verdict_words(&plan::fence::linstor_satellite(&node.name, satellite))
        }
        StorageView::Unobserved => (
            "not checked".to_owned(),
            "the backend was not read for this node".to_owned(),
        ),
        StorageView::Error { message } => ("unknown".to_owned(), message.clone()),
        StorageView::Ambiguous { candidates } => (
            "unknown".to_owned(),
            format!(
                "{} servers match the node: {}",
                candidates.len(),
                candidates
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        StorageView::NoMatch => (
            "unknown".to_owned(),
            "no server matches the node's providerID, name or InternalIP".to_owned(),
        ),
    };
    let not_ready_for = observation
        .now
        .duration_since(node.ready_since)
        .unsigned_abs();
    let steps = plan
        .steps
        .iter()
        .filter(|step| step.node.as_ref() == Some(&node.name))
        .map(|step| StepLine {
            action: step.action.to_string(),
            why: step.detail.clone(),
            command: step.action.manual_command(),
        })
        .collect();
    let stuck = stuck_objects(node, observation);
    let skip = plan
        .skipped
        .iter()
        .find(|s| s.node == node.name)
        .map(|s| &s.skip);
    // Evidence the planner refused (issue 7) is no proof, whatever the verdict alone says.
    let (verdict, why) = match skip.and_then(|skip| evidence_step(skip, &node.name)) {
        Some(_) => (
            "unknown".to_owned(),
            skip.map(ToString::to_string).unwrap_or(why),
        ),
        None => (verdict, why),
    };
    NodeDiagnosis {
        next_step: skip
            .and_then(|skip| evidence_step(skip, &node.name))
            .or_else(|| next_step(&node.storage, &verdict, policy)),
        volumes: stuck.volumes,
        pods: stuck.pods,
        volume_attachments: stuck.volume_attachments,
        node: node.name.to_string(),
        ready: format!("{:?}", node.ready),
        not_ready_for: humantime::format_duration(std::time::Duration::from_secs(
            not_ready_for.as_secs(),
        ))
        .to_string(),
        taints: node
            .taints
            .iter()
            .map(|t| match &t.value {
                Some(value) => format!("{}={value}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            })
            .collect(),
        failure: failure(&node.storage, policy),
        storage: node.storage.clone(),
        satellite: node.satellite.clone(),
        verdict,
        why,
        skipped: skip.map(ToString::to_string),
        held: plan
            .held
            .iter()
            .filter(|h| h.node == node.name)
            .map(|h| format!("volume {} (PV {}): {}", h.volume, h.pv, h.hold))
            .collect(),
        steps,
    }
}

/// The failure kind of a node's server, and what follows from it with `policy`.
fn failure(storage: &StorageView, policy: &Policy) -> Option<FailureReport> {
    let grace = humantime::format_duration(policy.grace);
    let freed = format!(
        "about grace ({grace}) + detach and attach (seconds) + the pod's start; Kubernetes alone \
         takes 6 minutes (the attach/detach controller's force detach) or never"
    );
    let (kind, remediator, needs, expect) = match storage {
        StorageView::ServerGone { .. } => (
            FailureKind::VmDown,
            "frees its volumes (the server is deleted: Cinder's stale attachments go), then \
             cleans the Kubernetes side"
                .to_owned(),
            None,
            freed,
        ),
        StorageView::OpenStack(server) => {
            let kind = plan::fence::failure_kind(server);
            let host = server.host.as_deref().unwrap_or("HOST");
            match kind {
                FailureKind::VmDown => (
                    kind,
                    "frees its volumes once the grace is over (detach), then cleans the \
                     Kubernetes side"
                        .to_owned(),
                    None,
                    freed,
                ),
                FailureKind::VmHung if policy.fence == FenceMode::Stop => (
                    kind,
                    "stops the server once the node has been not Ready for 60 s (Nova's \
                     service_down_time), then frees its volumes"
                        .to_owned(),
                    None,
                    format!("about 60 s after NotReady + the stop + {freed}"),
                ),
                FailureKind::VmHung => (
                    kind,
                    "nothing: a VM that runs may still write".to_owned(),
                    Some(
                        "if the node is truly lost: `remediate --fence stop` (stops the server, \
                         then frees its volumes), or stop it by hand"
                            .to_owned(),
                    ),
                    "until someone stops the VM or it recovers".to_owned(),
                ),
                FailureKind::HypervisorDead => {
                    let forced = server.host_state.is_some_and(|h| h.forced_down);
                    let trusted = forced && policy.trust_forced_down;
                    let (remediator, needs) = match policy.dead_host {
                        _ if !forced => (
                            "nothing: Nova refuses every detach while the compute service is \
                             down, and the host is not declared fenced"
                                .to_owned(),
                            Some(format!(
                                "fence the host (power it off), mark it `openstack compute \
                                 service set --down {host} nova-compute`, and run with \
                                 --trust-forced-down --dead-host delete-server|evacuate"
                            )),
                        ),
                        _ if !trusted => (
                            "nothing: the host is forced down but not trusted".to_owned(),
                            Some(
                                "--trust-forced-down --dead-host delete-server|evacuate".to_owned(),
                            ),
                        ),
                        DeadHost::Report => (
                            "nothing but the commands (--dead-host report)".to_owned(),
                            Some("--dead-host delete-server or --dead-host evacuate".to_owned()),
                        ),
                        DeadHost::DeleteServer => (
                            "deletes the server: Nova's local delete frees its volumes at once; \
                             the node is lost and its Node deleted"
                                .to_owned(),
                            None,
                        ),
                        DeadHost::Evacuate => (
                            "evacuates the server: rebuilt on another host with its volumes, \
                             the node comes back (from the image, unless it boots from a \
                             volume)"
                                .to_owned(),
                            None,
                        ),
                    };
                    let expect = match policy.dead_host {
                        DeadHost::Evacuate if trusted => format!(
                            "grace ({grace}) + the rebuild and the boot: minutes (Masakari: 4 to \
                             6 minutes)"
                        ),
                        _ if trusted => format!(
                            "seconds once the host is forced down: grace ({grace}) + the delete \
                             + attach (Cluster API's MachineHealthCheck: 6 to 8 minutes)"
                        ),
                        _ => "until the host is back or the server is deleted or evacuated"
                            .to_owned(),
                    };
                    (kind, remediator, needs, expect)
                }
                FailureKind::HostHidden => (
                    kind,
                    "frees shut-off, crashed and deleted servers' volumes; nothing for an ACTIVE \
                     one"
                    .to_owned(),
                    Some(
                        "credentials allowed os_compute_api:os-extended-server-attributes, \
                         os_compute_api:servers:show:host_status and \
                         os_compute_api:os-services:list (admin by default)"
                            .to_owned(),
                    ),
                    "until the VM is seen off, or the host state is visible".to_owned(),
                ),
                FailureKind::Unclear => return None,
            }
        }
        _ => return None,
    };
    Some(FailureReport {
        kind,
        name: kind.as_str(),
        remediator,
        needs,
        expect,
    })
}

/// What an operator can do about a node whose evidence the planner refused, when it did.
fn evidence_step(skip: &Skip, node: &fencing::model::NodeName) -> Option<String> {
    Some(match skip {
        Skip::OtherRegion { region, .. } => format!(
            "run with credentials for region {region} (cloud.conf `region`, clouds.yaml \
             `region_name`)"
        ),
        Skip::Invisible { server } => format!(
            "check the credentials' project and region: `openstack server show {server}` \
             should find the node's server if it exists"
        ),
        Skip::VolumeNotFound { volume, .. } => {
            format!("check that these credentials see the volume: `openstack volume show {volume}`")
        }
        Skip::Mismatch { .. } => "set the node's spec.providerID to openstack:///SERVER-ID \
             (the cloud controller manager does), so the node names its server itself"
            .to_owned(),
        Skip::Contradiction { .. } => "find which VM is the node and which server holds the \
             volume (`openstack volume show`, `openstack server list --ip`) before anything \
             is detached"
            .to_owned(),
        Skip::ProgressUnreadable { .. } => format!(
            "remove the annotation (`kubectl annotate node {node} {}-`); the next run reads \
             the cloud afresh",
            fencing::model::PROGRESS_ANNOTATION
        ),
        _ => return None,
    })
}

/// What an operator can do about a node the remediator will not touch.
fn next_step(storage: &StorageView, verdict: &str, policy: &Policy) -> Option<String> {
    let StorageView::OpenStack(server) = storage else {
        return match storage {
            StorageView::Ambiguous { .. } | StorageView::NoMatch => Some(
                "set the node's spec.providerID to openstack:///SERVER-ID (the cloud controller \
                 manager does), so the node matches exactly one server"
                    .to_owned(),
            ),
            StorageView::Error { .. } => Some("retry when the cloud answers".to_owned()),
            _ => None,
        };
    };
    match verdict {
        "stoppable" => Some(format!(
            "if the node is truly lost, power the server off (`openstack server stop {}`) or \
             run `remediate --fence stop`; a server that is running may still write",
            server.id
        )),
        "not fenced" if server.task_state.is_some() => {
            Some("wait for the server's task to finish, then run again".to_owned())
        }
        "not fenced" if server.host_hidden && server.status == "ACTIVE" => Some(
            "these credentials cannot see the server's compute host (Nova shows \
             OS-EXT-SRV-ATTR:host, host_status and os-services to admins only): shut-off, \
             crashed and deleted servers are still proven, but a dead hypervisor needs \
             credentials allowed os_compute_api:os-extended-server-attributes, \
             os_compute_api:servers:show:host_status and os_compute_api:os-services:list (admin \
             by default), and the host forced down"
                .to_owned(),
        ),
        // ACTIVE, or a status that says off while the hypervisor last said it runs.
        "not fenced"
            if server.status == "ACTIVE"
                || matches!(
                    server.power_state,
                    Some(
                        plan::fence::POWER_RUNNING
                            | plan::fence::POWER_PAUSED
                            | plan::fence::POWER_SUSPENDED
                    )
                ) =>
        {
            let host = server.host.as_deref().unwrap_or("HOST");
            let trust = match (policy.trust_forced_down, policy.dead_host) {
                (true, DeadHost::DeleteServer | DeadHost::Evacuate) => "",
                (true, DeadHost::Report) => {
                    " and run with --dead-host delete-server|evacuate (Nova refuses every detach \
                     there)"
                }
                (false, _) => {
                    " and run with --trust-forced-down --dead-host delete-server|evacuate (Nova \
                     refuses every detach there)"
                }
            };
            let no_stop = if policy.fence == FenceMode::Stop && server.status == "ACTIVE" {
                "not stopped: its compute host is not up, so a stop would never run and its \
                 `powering-off` task would block every detach; "
            } else {
                ""
            };
            Some(format!(
                "{no_stop}once the compute host is fenced (powered off), mark it: `openstack \
                 compute service set --down {host} nova-compute`{trust}"
            ))
        }
        "not fenced" => Some(format!(
            "make sure server {} is off, then `openstack server stop {}` and run again",
            server.id, server.id
        )),
        _ => None,
    }
}

/// The volumes, pods and VolumeAttachments of a node, as text.
#[derive(Default)]
struct Stuck {
    volumes: Vec<String>,
    pods: Vec<String>,
    volume_attachments: Vec<String>,
}

fn stuck_objects(node: &NodeView, observation: &Observation) -> Stuck {
    let mut stuck = Stuck::default();
    let mut pvs = std::collections::BTreeSet::new();
    for pod in observation
        .pods
        .iter()
        .filter(|pod| pod.node.as_ref() == Some(&node.name) && !pod.claims.is_empty())
    {
        let state = if pod.deleting {
            "Terminating".to_owned()
        } else {
            pod.waiting_reason
                .clone()
                .unwrap_or_else(|| pod.phase.clone())
        };
        stuck
            .pods
            .push(format!("{}/{} ({state})", pod.namespace, pod.name));
        for claim in &pod.claims {
            let bound = observation
                .claims
                .iter()
                .find(|c| c.namespace == pod.namespace && c.name == *claim)
                .and_then(|c| c.volume.clone());
            pvs.extend(bound);
        }
    }
    for va in observation
        .volume_attachments
        .iter()
        .filter(|va| va.node == node.name)
    {
        let pv = va.pv.as_ref().map_or("(inline)", |pv| pv.as_str());
        let deleting = if va.deleting { ", deleting" } else { "" };
        stuck
            .volume_attachments
            .push(format!("{} (PV {pv}{deleting})", va.name));
        pvs.extend(va.pv.clone());
    }
    for pv in observation
        .persistent_volumes
        .iter()
        .filter(|pv| pvs.contains(&pv.name))
    {
        let shown = match &pv.backend {
            Some(fencing::model::BackendVolume::Cinder(volume)) => {
                let holders: Vec<String> = volume
                    .attachments
                    .iter()
                    .map(|a| a.server.to_string())
                    .collect();
                if holders.is_empty() {
                    volume.status.clone()
                } else {
                    format!("{}, attached to {}", volume.status, holders.join(", "))
                }
            }
            Some(fencing::model::BackendVolume::Linstor(resource)) => {
                describe_replicas(&node.name, resource)
            }
            Some(fencing::model::BackendVolume::NotFound) if pv.driver == Driver::Linstor => {
                "LINSTOR shows no such resource".to_owned()
            }
            Some(fencing::model::BackendVolume::NotFound) => {
                "Cinder answers 404: invisible to these credentials".to_owned()
            }
            None => "not read".to_owned(),
        };
        stuck.volumes.push(format!(
            "{} (PV {}, {}): {shown}",
            pv.volume_id, pv.name, pv.driver
        ));
    }
    stuck
}

/// Each replica of a LINSTOR resource as the failed node's fence depends on it: its disk
/// state, whether it is in use and may promote, and its connection to the failed node.
fn describe_replicas(failed: &NodeName, resource: &LinstorResourceView) -> String {
    let known = |value: Option<bool>, yes: &str, no: &str| match value {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => format!("{yes}: unknown"),
    };
    let replicas: Vec<String> = resource
        .replicas
        .iter()
        .map(|replica| {
            let mut facts = vec![
                replica
                    .disk_state
                    .clone()
                    .unwrap_or_else(|| "disk state: unknown".to_owned()),
                known(replica.in_use, "in use", "not in use"),
                known(replica.may_promote, "may promote", "may not promote"),
            ];
            if replica.node != *failed {
                facts.push(match replica.connections.get(failed) {
                    Some(true) => format!("connected to {failed}"),
                    Some(false) => format!("disconnected from {failed}"),
                    None => format!("no connection to {failed} reported"),
                });
            }
            format!("{} [{}]", replica.node, facts.join(", "))
        })
        .collect();
    format!(
        "LINSTOR resource, {} replica(s): {}",
        replicas.len(),
        replicas.join("; ")
    )
}

fn verdict_words(verdict: &Verdict) -> (String, String) {
    match verdict {
        Verdict::Fenced { detail, .. } => ("fenced".to_owned(), detail.clone()),
        Verdict::Stoppable { detail } => ("stoppable".to_owned(), detail.clone()),
        Verdict::NotFenced { detail } => ("not fenced".to_owned(), detail.clone()),
        Verdict::Unknown { detail } => ("unknown".to_owned(), detail.clone()),
    }
}

fn describe_storage(storage: &StorageView) -> String {
    match storage {
        StorageView::OpenStack(server) => {
            let mut text = format!("server {} ({}) {}", server.id, server.name, server.status);
            if let Some(power) = server.power_state {
                let _ = write!(text, ", power state {power}");
            }
            let _ = write!(
                text,
                ", task {}",
                server.task_state.as_deref().unwrap_or("none")
            );
            if let Some(host) = &server.host {
                let state = match server.host_state {
                    Some(h) if h.forced_down => "forced down",
                    Some(h) if h.up => "up",
                    Some(_) => "down",
                    None => "state unknown",
                };
                let _ = write!(text, ", on compute host {host} ({state})");
            } else if server.host_hidden {
                text.push_str(", compute host hidden from these credentials");
            }
            text
        }
        StorageView::ServerGone { id } => format!("server {id}: gone (Nova answers 404)"),
        StorageView::Linstor(satellite) => {
            format!("LINSTOR satellite {}", satellite.connection_status)
        }
        StorageView::Unobserved => "not read".to_owned(),
        StorageView::Error { message } => format!("could not be read: {message}"),
        StorageView::Ambiguous { candidates } => {
            format!("ambiguous: {} servers match", candidates.len())
        }
        StorageView::NoMatch => "no matching server".to_owned(),
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(storm) = &self.storm {
            writeln!(
                f,
                "STORM GUARD: {} of {} nodes are not Ready (limit {}); no action on any node. \
                 This looks like a control-plane or network failure, not node failures.",
                storm.unhealthy, storm.total, storm.limit
            )?;
        }
        if self.nodes.is_empty() {
            writeln!(f, "Every node is Ready.")?;
        }
        for node in &self.nodes {
            writeln!(
                f,
                "NODE {}  Ready={} for {}",
                node.node, node.ready, node.not_ready_for
            )?;
            if !node.taints.is_empty() {
                writeln!(f, "  taints    {}", node.taints.join(", "))?;
            }
            writeln!(f, "  storage   {}", describe_storage(&node.storage))?;
            if let Some(satellite) = &node.satellite {
                writeln!(f, "  linstor   satellite {}", satellite.connection_status)?;
            }
            writeln!(
                f,
                "  verdict   {}: {}",
                node.verdict.to_uppercase(),
                node.why
            )?;
            if let Some(failure) = &node.failure {
                writeln!(f, "  failure   {}", failure.name)?;
                writeln!(f, "    remediator {}", failure.remediator)?;
                if let Some(needs) = &failure.needs {
                    writeln!(f, "    to do more {needs}")?;
                }
                writeln!(f, "    expect     {}", failure.expect)?;
            }
            for volume in &node.volumes {
                writeln!(f, "  volume    {volume}")?;
            }
            for pod in &node.pods {
                writeln!(f, "  pod       {pod}")?;
            }
            for va in &node.volume_attachments {
                writeln!(f, "  attached  {va}")?;
            }
            for held in &node.held {
                writeln!(f, "  held      {held}")?;
            }
            if let Some(skip) = &node.skipped {
                writeln!(f, "  no action {skip}")?;
            }
            if let (Some(next), true) = (&node.next_step, node.steps.is_empty()) {
                writeln!(f, "  next step {next}")?;
            }
            for (number, step) in node.steps.iter().enumerate() {
                writeln!(f, "  {:>2}. {}", number + 1, step.action)?;
                writeln!(f, "      $ {}", step.command)?;
            }
            writeln!(f)?;
        }
        for orphan in &self.orphans {
            let state = if orphan.server_gone {
                "the server is gone: a stale attachment, released by `remediate --all --orphans`"
            } else {
                "the server is no Kubernetes node: left alone"
            };
            writeln!(
                f,
                "ORPHAN volume {} (PV {}) attached to server {}: {state}",
                orphan.volume, orphan.pv, orphan.server
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "WARNING {warning}")?;
        }
        if !self.advice.is_empty() {
            if self.nodes.is_empty() || !self.orphans.is_empty() || !self.warnings.is_empty() {
                writeln!(f)?;
            }
            writeln!(f, "before the next failure:")?;
            for advice in &self.advice {
                writeln!(f, "  {advice}")?;
            }
        }
        Ok(())
    }
}

/// The summary line and any failures of an execution.
#[must_use]
pub fn summary(report: &Report) -> String {
    let done = report
        .steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Done { .. }))
        .count();
    let mut text = format!("{done} of {} step(s) done", report.steps.len());
    for entry in &report.steps {
        match &entry.outcome {
            Outcome::Failed {
                error, next_step, ..
            } => {
                let _ = write!(
                    text,
                    "\nFAILED {}: {error}\n  next step: {next_step}",
                    entry.step.action
                );
            }
            Outcome::Stale { why, next_step } => {
                let _ = write!(
                    text,
                    "\nSTOPPED {}: {why}\n  next step: {next_step}",
                    entry.step.action
                );
            }
            Outcome::NotAttempted { because } => {
                let _ = write!(text, "\nnot attempted {}: {because}", entry.step.action);
            }
            Outcome::Done { .. } => {}
        }
    }
    text
}
