//! When a node counts as failed (S3): by its Ready condition, once the kubelet's heartbeat has
//! expired and the grace period passed; or from the cloud side (`run --watch-cloud`), once Nova
//! has reported its server dead for longer than the grace period while the kubelet has not
//! renewed its Lease since. The cloud side acts only on a server that is itself dead (shut off,
//! crashed, deleted) on a host that is not down: never on a host's state alone.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::{Evidence, Policy, Reason, Skip, Verdict, evidence, fence, not_fenced};
use crate::model::{NodeView, ServerView, StorageView};

/// How a node came to be judged failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Detection {
    /// Not Ready for longer than the grace period.
    Node,
    /// Its server reported dead by Nova longer than the grace period ago, the kubelet silent
    /// since (the node may still show Ready: its heartbeat has not expired yet).
    Cloud,
}

impl Detection {
    /// As a metric label: `node` or `cloud`.
    #[must_use]
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Cloud => "cloud",
        }
    }
}

/// Whether `node` is past its grace period at `now`, and how it was detected: not Ready for
/// longer than `grace` ([`Detection::Node`]), else reported dead from the cloud side longer than
/// `grace` ago with the kubelet's Lease not renewed since ([`Detection::Cloud`]).
///
/// # Errors
/// The [`Skip`]: within the grace period (the least time left of both detections); a cloud
/// report with the kubelet's Lease unread ([`Skip::Unknown`]) or renewed since
/// ([`Skip::Contradiction`]); a Ready node with no report ([`Skip::NotFenced`]).
pub fn detection(node: &NodeView, now: Timestamp, grace: Duration) -> Result<Detection, Skip> {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    // Time left before `since` is past the grace; `None` once it is.
    let left = |since: Timestamp| {
        let elapsed = now.duration_since(since);
        (elapsed <= grace).then(|| grace.checked_sub(elapsed).unwrap_or(SignedDuration::MAX))
    };
    let node_left = if node.ready.is_ready() {
        None
    } else {
        match left(node.ready_since) {
            None => return Ok(Detection::Node),
            Some(remaining) => Some(remaining),
        }
    };
    let Some(death) = node.reported_dead() else {
        return Err(match node_left {
            Some(remaining) => Skip::WithinGrace { remaining },
            None => Skip::NotFenced {
                detail: format!("node {} is Ready", node.name),
            },
        });
    };
    if let Some(cloud_left) = left(death.at) {
        let remaining = node_left.map_or(cloud_left, |n| n.min(cloud_left));
        return Err(Skip::WithinGrace { remaining });
    }
    match node.kubelet_renewed {
        None => Err(Skip::Unknown {
            detail: format!(
                "Nova reported server {} dead at {}, but the kubelet Lease of node {} was not \
                 read: from the cloud side a node is acted on only while its kubelet is silent",
                death.server, death.at, node.name
            ),
        }),
        Some(renewed) if renewed >= death.at => Err(Skip::Contradiction {
            detail: format!(
                "Nova reported server {} dead at {}, but node {}'s kubelet renewed its Lease at \
                 {renewed}: something runs there",
                death.server, death.at, node.name
            ),
        }),
        Some(_) => Ok(Detection::Cloud),
    }
}

/// The proof a node detected from the cloud side needs, on top of a fenced verdict: the server
/// itself shut off, crashed or gone (its own state, not its host's), on a compute host not
/// shown down. Anything else waits for the node's Ready condition.
///
/// # Errors
/// The [`Skip`] that says why not.
pub fn cloud_proof(node: &NodeView, region: Option<&str>, policy: &Policy) -> Result<(), Skip> {
    let later = |detail: &str| Skip::NotFenced {
        detail: format!(
            "{detail}; from the cloud side only a server that is itself shut off, crashed or \
             deleted, on a host that is up, is acted on before its node is not Ready"
        ),
    };
    match evidence(node, region, policy)? {
        Evidence::Server {
            verdict:
                Verdict::Fenced {
                    reason: Reason::ServerStopped | Reason::ServerCrashed | Reason::ServerGone,
                    detail,
                },
            ..
        } => match &node.storage {
            StorageView::OpenStack(server)
                if server
                    .host_state
                    .is_some_and(|host| !host.up || host.forced_down) =>
            {
                Err(later(&format!("{detail}, but its compute host is not up")))
            }
            _ => Ok(()),
        },
        Evidence::Server {
            verdict: Verdict::Fenced { detail, .. },
            ..
        } => Err(later(&detail)),
        Evidence::Server { verdict, .. } => Err(not_fenced(verdict)),
        Evidence::Satellite { .. } => Err(later(&format!(
            "node {} is judged by its LINSTOR satellite",
            node.name
        ))),
    }
}

/// Whether a server, as a list of changed servers shows it, is dead by its own state: deleted
/// (`DELETED`), or shut off or crashed with no task in progress, as [`fence::openstack`] judges
/// it without any host state. Never a host's state: the list does not read compute services.
#[must_use]
pub fn dead_in_list(server: &ServerView) -> bool {
    server.status == "DELETED"
        || matches!(
            fence::openstack(server, false),
            Verdict::Fenced {
                reason: Reason::ServerStopped | Reason::ServerCrashed,
                ..
            }
        )
}
