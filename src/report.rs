//! What the operator reads: the diagnosis of every node that is not Ready (its server, the
//! fence verdict and why, what is stuck, what the plan does, and the commands to do it by hand),
//! as a table-like text or as JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::execute::{Outcome, Report};
use crate::model::{NodeView, Observation, Readiness, StorageView};
use crate::plan::{self, Plan, Policy, Verdict};

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
    /// The fence verdict: `fenced`, `stoppable`, `not fenced`, `unknown`, or `not checked`.
    pub verdict: String,
    /// Why.
    pub why: String,
    /// Why the node gets no action, when it gets none.
    pub skipped: Option<String>,
    /// Volumes of the node held back, with why.
    pub held: Vec<String>,
    /// The node's steps: what, and the command to do it by hand.
    pub steps: Vec<StepLine>,
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
    NodeDiagnosis {
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
        storage: node.storage.clone(),
        verdict,
        why,
        skipped: plan
            .skipped
            .iter()
            .find(|s| s.node == node.name)
            .map(|s| s.skip.to_string()),
        held: plan
            .held
            .iter()
            .filter(|h| h.node == node.name)
            .map(|h| format!("volume {} (PV {}): {}", h.volume, h.pv, h.hold))
            .collect(),
        steps,
    }
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
            writeln!(
                f,
                "  verdict   {}: {}",
                node.verdict.to_uppercase(),
                node.why
            )?;
            for held in &node.held {
                writeln!(f, "  held      {held}")?;
            }
            if let Some(skip) = &node.skipped {
                writeln!(f, "  no action {skip}")?;
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
            Outcome::Failed { error, next_step } => {
                let _ = write!(
                    text,
                    "\nFAILED {}: {error}\n  next step: {next_step}",
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
