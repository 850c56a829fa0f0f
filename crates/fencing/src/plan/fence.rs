//! Fence verdicts: is a node *proven* unable to write to its volumes (DESIGN.md step 3, rule S1)?
//!
//! Each function reads one backend's facts and answers with a [`Verdict`] carrying a sentence a
//! human can check. Anything not listed as a proof is not one.

use serde::Serialize;

use crate::model::{LinstorNodeView, LinstorResourceView, NodeName, ServerId, ServerView};

use super::action::Reason;

/// Nova power state `RUNNING`.
pub const POWER_RUNNING: u8 = 1;
/// Nova power state `PAUSED`.
pub const POWER_PAUSED: u8 = 3;
/// Nova power state `SUSPENDED`.
pub const POWER_SUSPENDED: u8 = 7;
/// Nova power state `SHUTDOWN`.
pub const POWER_SHUTDOWN: u8 = 4;
/// Nova power state `CRASHED`.
pub const POWER_CRASHED: u8 = 6;

/// Whether a node (or one of its LINSTOR resources) is proven fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Proven unable to write: its volumes may be released.
    Fenced {
        /// The proof, as a category.
        reason: Reason,
        /// The proof, for a human.
        detail: String,
    },
    /// Not proven fenced, but stopping the server (`os-stop`) would fence it: `ACTIVE`, no task,
    /// on a host that is up. Acted on only with opt-in stop fencing.
    Stoppable {
        /// Why it is not fenced yet.
        detail: String,
    },
    /// Not proven fenced: the server may still write.
    NotFenced {
        /// Why.
        detail: String,
    },
    /// The facts needed to decide are missing.
    Unknown {
        /// What is missing.
        detail: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Fenced`].
    #[must_use]
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// Nova answered 404 for the server: it no longer exists.
#[must_use]
pub fn server_gone(id: &ServerId) -> Verdict {
    Verdict::Fenced {
        reason: Reason::ServerGone,
        detail: format!("server {id} no longer exists (Nova answered 404)"),
    }
}

/// The OpenStack verdict for a node's Nova server.
///
/// Fenced: `SHUTOFF` or `SHELVED_OFFLOADED` with a power state that does not contradict it
/// (`RUNNING`, `PAUSED` or `SUSPENDED` veto it: the hypervisor last said the guest runs), or power
/// state `SHUTDOWN`/`CRASHED`, always with no task in progress; or, when `trust_forced_down`, a compute host forced down. Everything else
/// is not fenced: `ACTIVE` on a host that is up (partition, dead kubelet), down or unknown
/// (nova-compute can die while the VM runs), any task in progress, any other state.
#[must_use]
pub fn openstack(server: &ServerView, trust_forced_down: bool) -> Verdict {
    let id = &server.id;
    let status = server.status.as_str();
    if let Some(task) = &server.task_state {
        return Verdict::NotFenced {
            detail: format!("server {id} is {status} with task {task} in progress"),
        };
    }
    let power = describe_power(server.power_state);
    if let Some(POWER_RUNNING | POWER_PAUSED | POWER_SUSPENDED) = server.power_state {
        if matches!(status, "SHUTOFF" | "SHELVED_OFFLOADED") {
            return Verdict::NotFenced {
                detail: format!(
                    "server {id} is {status} but reports {power}: the states contradict each other (a host that stopped reporting?), not a proof"
                ),
            };
        }
    } else if matches!(status, "SHUTOFF" | "SHELVED_OFFLOADED") {
        return Verdict::Fenced {
            reason: Reason::ServerStopped,
            detail: format!("server {id} is {status} ({power}, no task)"),
        };
    }
    match server.power_state {
        Some(POWER_SHUTDOWN) => {
            return Verdict::Fenced {
                reason: Reason::ServerStopped,
                detail: format!("server {id} is {status} with {power}, no task"),
            };
        }
        Some(POWER_CRASHED) => {
            return Verdict::Fenced {
                reason: Reason::ServerCrashed,
                detail: format!("server {id} is {status} with {power}, no task"),
            };
        }
        _ => {}
    }
    let host = server.host.as_deref().unwrap_or("(unknown)");
    match server.host_state {
        Some(state) if state.forced_down && trust_forced_down => Verdict::Fenced {
            reason: Reason::HostForcedDown,
            detail: format!(
                "server {id} is {status} on compute host {host}, which is forced down (trusted by policy)"
            ),
        },
        Some(state) if state.up && !state.forced_down && status == "ACTIVE" => Verdict::Stoppable {
            detail: format!(
                "server {id} is ACTIVE ({power}) on compute host {host}, which is up: it may still write"
            ),
        },
        Some(state) if status == "ACTIVE" => Verdict::NotFenced {
            detail: format!(
                "server {id} is ACTIVE ({power}) on compute host {host}, which is {}: the VM may still run",
                describe_host(state.up, state.forced_down)
            ),
        },
        None if status == "ACTIVE" && server.host_hidden => Verdict::NotFenced {
            detail: format!(
                "server {id} is ACTIVE ({power}); Nova does not show these credentials its compute \
                 host or the host's service (admin-only by default), so a dead hypervisor cannot \
                 be told from a live VM"
            ),
        },
        None if status == "ACTIVE" => Verdict::NotFenced {
            detail: format!(
                "server {id} is ACTIVE ({power}) on compute host {host}, whose state is unknown"
            ),
        },
        _ => Verdict::NotFenced {
            detail: format!("server {id} is {status} ({power}): not a state that proves it off"),
        },
    }
}

/// The kind of failure a node's server shows, for an operator deciding what to do: each kind
/// has its own remedy and its own time to recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The VM is off, crashed or deleted, on a host that works: its volumes can be detached.
    VmDown,
    /// The VM is `ACTIVE` on a host that is up: a hung guest, a dead kubelet or a network cut;
    /// it may still write.
    VmHung,
    /// The server's compute host is down or forced down: Nova refuses every detach there.
    HypervisorDead,
    /// `ACTIVE`, and these credentials may not see the compute host's state: a hung VM cannot
    /// be told from a dead hypervisor.
    HostHidden,
    /// Anything else: a task in progress, an error or build state, states that contradict.
    Unclear,
}

impl FailureKind {
    /// As an operator reads it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VmDown => "VM down",
            Self::VmHung => "VM hung (or cut off)",
            Self::HypervisorDead => "hypervisor dead",
            Self::HostHidden => "VM hung or hypervisor dead (host state not visible)",
            Self::Unclear => "unclear",
        }
    }
}

/// The failure kind of a node's server. A host that is not up comes first (whatever the
/// VM's state, Nova refuses its detaches); then the VM's own state.
#[must_use]
pub fn failure_kind(server: &ServerView) -> FailureKind {
    if server
        .host_state
        .is_some_and(|host| !host.up || host.forced_down)
    {
        return FailureKind::HypervisorDead;
    }
    if server.task_state.is_none() {
        match openstack(server, false) {
            Verdict::Fenced { .. } => return FailureKind::VmDown,
            Verdict::Stoppable { .. } => return FailureKind::VmHung,
            _ => {}
        }
        if server.status == "ACTIVE" && server.host_state.is_none() && server.host_hidden {
            return FailureKind::HostHidden;
        }
    }
    FailureKind::Unclear
}

fn describe_power(power_state: Option<u8>) -> String {
    let name = match power_state {
        None => return "power state unknown".to_owned(),
        Some(0) => "NOSTATE",
        Some(POWER_RUNNING) => "RUNNING",
        Some(POWER_PAUSED) => "PAUSED",
        Some(POWER_SHUTDOWN) => "SHUTDOWN",
        Some(POWER_CRASHED) => "CRASHED",
        Some(POWER_SUSPENDED) => "SUSPENDED",
        Some(_) => "unknown",
    };
    format!("power state {} {name}", power_state.unwrap_or_default())
}

fn describe_host(up: bool, forced_down: bool) -> &'static str {
    match (up, forced_down) {
        (_, true) => "forced down (not trusted by policy)",
        (true, false) => "up",
        (false, false) => "down (not forced down)",
    }
}

/// The LINSTOR node-level gate: the satellite is not `ONLINE` in the LINSTOR controller.
///
/// Necessary, not sufficient: each resource still needs [`linstor_resource`].
#[must_use]
pub fn linstor_satellite(node: &NodeName, satellite: &LinstorNodeView) -> Verdict {
    let status = &satellite.connection_status;
    if status == "ONLINE" {
        Verdict::NotFenced {
            detail: format!("satellite {node} is ONLINE in the LINSTOR controller"),
        }
    } else {
        Verdict::Fenced {
            reason: Reason::ReplicasFenced,
            detail: format!("satellite {node} is {status} in the LINSTOR controller"),
        }
    }
}

/// The LINSTOR verdict for one resource of a node: the satellite is not `ONLINE`, the volume was
/// in use on the node (its replica there last reported Primary, or a pod of the node that uses
/// it ran), every surviving replica reports its connection to that node down, at least one
/// survivor may promote, and no survivor is in use.
#[must_use]
pub fn linstor_resource(
    node: &NodeName,
    satellite: &LinstorNodeView,
    resource_name: &str,
    resource: &LinstorResourceView,
    run_on_node: bool,
) -> Verdict {
    let gate = linstor_satellite(node, satellite);
    if !gate.is_fenced() {
        return gate;
    }
    // A volume never used on the node (its replica there not last seen Primary, and no pod of
    // the node that uses it ever ran: a new volume) has nothing to fail over; acting on it is
    // the Piraeus HA controller's eviction loop. A lost satellite's own state is not reported,
    // so the pod's phase says whether the device was ever opened there.
    let primary_here = resource
        .replicas
        .iter()
        .any(|r| r.node == *node && r.in_use == Some(true));
    if !primary_here && !run_on_node {
        return Verdict::NotFenced {
            detail: format!(
                "resource {resource_name} was never Primary on {node} and no pod using it ran \
                 there (a new volume?): nothing to fail over"
            ),
        };
    }
    let mut survivors: Vec<_> = resource
        .replicas
        .iter()
        .filter(|r| r.node != *node)
        .collect();
    survivors.sort_by(|a, b| a.node.cmp(&b.node));
    if survivors.is_empty() {
        return Verdict::NotFenced {
            detail: format!("resource {resource_name} has no replica besides {node}"),
        };
    }
    for survivor in &survivors {
        let peer = &survivor.node;
        match survivor.connections.get(node) {
            Some(false) => {}
            Some(true) => {
                return Verdict::NotFenced {
                    detail: format!(
                        "resource {resource_name}: the replica on {peer} is still connected to {node}"
                    ),
                };
            }
            None => {
                return Verdict::Unknown {
                    detail: format!(
                        "resource {resource_name}: the replica on {peer} reports no connection to {node}"
                    ),
                };
            }
        }
        match survivor.in_use {
            Some(false) => {}
            Some(true) => {
                return Verdict::NotFenced {
                    detail: format!("resource {resource_name} is in use on {peer}"),
                };
            }
            None => {
                return Verdict::Unknown {
                    detail: format!(
                        "resource {resource_name}: whether the replica on {peer} is in use is unknown"
                    ),
                };
            }
        }
    }
    let promotable: Vec<&str> = survivors
        .iter()
        .filter(|r| r.may_promote == Some(true))
        .map(|r| r.node.as_str())
        .collect();
    if promotable.is_empty() {
        return Verdict::NotFenced {
            detail: format!("resource {resource_name}: no surviving replica may promote"),
        };
    }
    Verdict::Fenced {
        reason: Reason::ReplicasFenced,
        detail: format!(
            "satellite {node} is {}; every surviving replica of {resource_name} reports its connection down, {} may promote, none is in use",
            satellite.connection_status,
            promotable.join(", ")
        ),
    }
}
