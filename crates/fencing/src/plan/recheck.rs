//! Re-verification at the moment of acting: a node's steps were planned on one reading; right
//! before acting, the executor reads the Node and its server again, and [`recheck`] says whether
//! the evidence still holds. Anything changed means the plan is stale for that node.

use jiff::Timestamp;

use super::{Detection, Evidence, Policy, Skip, Verdict, cloud_proof, detection, evidence};
use crate::model::NodeView;

/// What the step about to run needs to stay true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A release or a Kubernetes-side step of a failed node: still the same Node, still past
    /// the grace (not Ready, or reported dead from the cloud side with the kubelet silent), and
    /// the same server (or satellite) still proven fenced.
    Fenced,
    /// Stop fencing: the same Node, still not Ready past the grace, the same server still
    /// stoppable (`ACTIVE`, no task, on a host that is up).
    Stop,
    /// A recovery step: the same Node, still Ready.
    Recover,
}

/// Whether the evidence `observed` gave still holds in `fresh` (the same Node read again, with
/// its storage view read again) at `now`. `Err` says what changed, for a human.
///
/// # Errors
/// When anything the plan relied on changed: the Node's UID (deleted and re-created), its
/// readiness or the time it turned not Ready, its providerID, addresses or taints, its progress
/// annotation turned unreadable, the matched server, or the fence verdict.
pub fn recheck(
    observed: &NodeView,
    fresh: &NodeView,
    region: Option<&str>,
    now: Timestamp,
    policy: &Policy,
    purpose: Purpose,
) -> Result<(), String> {
    let name = &observed.name;
    if fresh.uid != observed.uid {
        return Err(format!(
            "node {name} was deleted and re-created (UID {} now {})",
            show(observed.uid.as_ref().map(|u| u.as_str())),
            show(fresh.uid.as_ref().map(|u| u.as_str()))
        ));
    }
    if purpose == Purpose::Recover {
        return if fresh.ready.is_ready() {
            Ok(())
        } else {
            Err(format!("node {name} is no longer Ready"))
        };
    }
    if !observed.ready.is_ready() && fresh.ready.is_ready() {
        return Err(format!("node {name} is Ready again"));
    }
    // Planned not Ready: the same condition. Planned Ready (from the cloud side): its heartbeat
    // may have expired since, which agrees, but it may not have turned Ready anew.
    if fresh.ready_since != observed.ready_since
        && (fresh.ready.is_ready() || !observed.ready.is_ready())
    {
        return Err(format!(
            "node {name}'s Ready condition changed at {} (observed since {})",
            fresh.ready_since, observed.ready_since
        ));
    }
    let detected = match detection(fresh, now, policy.grace) {
        Ok(detected) => detected,
        Err(Skip::WithinGrace { .. }) => {
            return Err(format!("node {name} is not past its grace period"));
        }
        Err(skip) => return Err(format!("node {name}, read again: {skip}")),
    };
    if fresh.provider_id != observed.provider_id {
        return Err(format!("node {name}'s providerID changed"));
    }
    if sorted(&fresh.addresses) != sorted(&observed.addresses) {
        return Err(format!("node {name}'s addresses changed"));
    }
    if sorted(&fresh.taints) != sorted(&observed.taints) {
        return Err(format!("node {name}'s taints changed"));
    }
    if let Some(detail) = &fresh.progress_error {
        return Err(format!(
            "node {name}'s progress annotation is unreadable: {detail}"
        ));
    }
    let before = evidence(observed, region, policy)
        .map_err(|skip| format!("node {name} had no fence evidence: {skip}"))?;
    let now_seen = evidence(fresh, region, policy)
        .map_err(|skip| format!("node {name}, read again: {skip}"))?;
    let (before_holder, _) = holder(&before);
    let (now_holder, verdict) = holder(&now_seen);
    if before_holder != now_holder {
        return Err(format!(
            "node {name} now matches {now_holder}, not {before_holder}"
        ));
    }
    match (purpose, verdict) {
        (Purpose::Fenced, Verdict::Fenced { .. }) if detected == Detection::Cloud => {
            cloud_proof(fresh, region, policy)
                .map_err(|skip| format!("node {name}, read again: {skip}"))
        }
        (Purpose::Stop, Verdict::Stoppable { .. }) if detected == Detection::Cloud => Err(format!(
            "node {name} is detected from the cloud side only: no stop before it is not Ready"
        )),
        (Purpose::Fenced, Verdict::Fenced { .. }) | (Purpose::Stop, Verdict::Stoppable { .. }) => {
            Ok(())
        }
        (
            _,
            Verdict::Fenced { detail, .. }
            | Verdict::Stoppable { detail }
            | Verdict::NotFenced { detail }
            | Verdict::Unknown { detail },
        ) => Err(format!("node {name}, read again: {detail}")),
    }
}

/// The server or satellite an evidence is about, and its verdict.
fn holder<'e>(evidence: &'e Evidence<'_>) -> (String, &'e Verdict) {
    match evidence {
        Evidence::Server { id, verdict, .. } => (format!("server {id}"), verdict),
        Evidence::Satellite { verdict, .. } => ("its LINSTOR satellite".to_owned(), verdict),
    }
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items
}

fn show(uid: Option<&str>) -> &str {
    uid.unwrap_or("(none)")
}
