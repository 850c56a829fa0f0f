//! Evaluates a scenario's `expect` block against the emulated cloud and cluster: the volumes,
//! the Kubernetes objects and the request budget, all straight from the world (the client under
//! test never grades itself).

use serde::Serialize;
use serde_json::Value;

use super::World;
use super::scenario::{Expect, PodRunning, Service, split_ref};

/// One expectation and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is expected, e.g. `volume 4e41… available`.
    pub expectation: String,
    /// Whether it holds.
    pub holds: bool,
    /// What was found.
    pub found: String,
}

/// Checks every expectation once, against the world as it is now.
#[must_use]
pub fn evaluate(expect: &Expect, world: &World) -> Vec<Check> {
    let mut checks = Vec::new();
    let state = world.lock();
    for volume in &expect.volumes_available {
        let status = state
            .cloud
            .volume(&volume.value)
            .map_or_else(|| "missing".to_owned(), |v| v.status.clone());
        checks.push(Check {
            expectation: format!("volume {} available", volume.value),
            holds: status == "available",
            found: status,
        });
    }
    for (pair, want) in expect
        .volumes_attached
        .iter()
        .map(|p| (p, true))
        .chain(expect.volumes_detached.iter().map(|p| (p, false)))
    {
        let attached = state.cloud.volume(&pair.volume.value).is_some_and(|v| {
            v.attachments
                .iter()
                .any(|a| a.server_id == pair.server.value)
        });
        let word = if want { "attached to" } else { "released from" };
        checks.push(Check {
            expectation: format!(
                "volume {} {word} server {}",
                pair.volume.value, pair.server.value
            ),
            holds: attached == want,
            found: if attached { "attached" } else { "not attached" }.to_owned(),
        });
    }
    if let Some(limit) = expect.max_mutating_openstack_requests {
        let mutating: Vec<String> = state
            .requests()
            .iter()
            .filter(|r| matches!(r.service, Service::Nova | Service::Cinder))
            .filter(|r| r.is_mutating())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        checks.push(Check {
            expectation: format!("at most {limit} mutating Nova/Cinder request(s)"),
            holds: mutating.len() <= usize::try_from(limit).unwrap_or(usize::MAX),
            found: if mutating.is_empty() {
                "none".to_owned()
            } else {
                format!("{}: {}", mutating.len(), mutating.join(", "))
            },
        });
    }

    for (list, want_gone) in [(&expect.pods_deleted, true), (&expect.pods_kept, false)] {
        for pod in list {
            let Some((namespace, name)) = split_ref(&pod.value) else {
                continue;
            };
            // The scenario's pod is its object (its uid): one recreated under the same name (a
            // StatefulSet's) is another pod.
            let original = crate::kubernetes::uid("Pod", namespace, name);
            let exists = state
                .kube
                .get("pods", Some(namespace), name)
                .is_some_and(|pod| text(pod, "/metadata/uid") == original);
            let word = if want_gone { "deleted" } else { "kept" };
            checks.push(Check {
                expectation: format!("pod {} {word}", pod.value),
                holds: exists != want_gone,
                found: if exists { "exists" } else { "gone" }.to_owned(),
            });
        }
    }

    let attachments = state.kube.list("volumeattachments");
    for (list, want_gone) in [
        (&expect.volume_attachments_deleted, true),
        (&expect.volume_attachments_kept, false),
    ] {
        for wanted in list {
            let present = attachments.iter().any(|va| {
                let pv = text(va, "/spec/source/persistentVolumeName");
                let node = text(va, "/spec/nodeName");
                format!("{pv}@{node}") == wanted.value
            });
            let word = if want_gone { "deleted" } else { "kept" };
            checks.push(Check {
                expectation: format!("VolumeAttachment {} {word}", wanted.value),
                holds: present != want_gone,
                found: if present { "exists" } else { "gone" }.to_owned(),
            });
        }
    }

    for node in &expect.nodes_tainted_out_of_service {
        let tainted = state
            .kube
            .get("nodes", None, &node.value)
            .and_then(|n| n.pointer("/spec/taints"))
            .and_then(Value::as_array)
            .is_some_and(|taints| {
                taints
                    .iter()
                    .any(|t| t["key"] == "node.kubernetes.io/out-of-service")
            });
        checks.push(Check {
            expectation: format!("node {} tainted out-of-service", node.value),
            holds: tainted,
            found: if tainted { "tainted" } else { "not tainted" }.to_owned(),
        });
    }
    for wanted in &expect.pods_running {
        checks.push(pod_running(&state, wanted));
    }
    for server in &expect.servers_deleted {
        let found = match state.cloud.server(&server.value) {
            None => "gone".to_owned(),
            Some(now) => format!("{} on {}", now.status_str(), show(now.host.as_deref())),
        };
        checks.push(Check {
            expectation: format!("server {} deleted", server.value),
            holds: found == "gone",
            found,
        });
    }
    for moved in &expect.servers_moved {
        let now = state.cloud.server(&moved.server.value);
        checks.push(Check {
            expectation: format!(
                "server {} ACTIVE on another host than {}",
                moved.server.value, moved.from.value
            ),
            holds: now.is_some_and(|s| {
                s.status_str() == "ACTIVE" && s.host.as_deref() != Some(moved.from.value.as_str())
            }),
            found: now.map_or_else(
                || "gone".to_owned(),
                |s| format!("{} on {}", s.status_str(), show(s.host.as_deref())),
            ),
        });
    }
    for (list, want) in [
        (&expect.nodes_deleted, None),
        (&expect.nodes_ready, Some(())),
    ] {
        for node in list {
            let object = state.kube.get("nodes", None, &node.value);
            let ready = object.is_some_and(|n| {
                n.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            });
            let found = match (object.is_some(), ready) {
                (false, _) => "gone",
                (true, true) => "Ready",
                (true, false) => "not Ready",
            };
            let (expectation, holds) = match want {
                None => (format!("node {} deleted", node.value), found == "gone"),
                Some(()) => (format!("node {} Ready", node.value), found == "Ready"),
            };
            checks.push(Check {
                expectation,
                holds,
                found: found.to_owned(),
            });
        }
    }
    checks
}

fn show(host: Option<&str>) -> &str {
    host.unwrap_or("no host")
}

/// Whether a pod of the owner runs on another node than `node_not`, with the volume attached
/// (as Cinder shows it) to that node's server.
fn pod_running(state: &crate::world::State, wanted: &PodRunning) -> Check {
    let (kind, owner) = wanted.owner.value.split_once('/').unwrap_or_default();
    let mut found = Vec::new();
    let mut holds = false;
    for pod in state.kube.list("pods") {
        let owned = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["kind"] == kind && r["name"] == owner && r["controller"] == true)
            });
        if !owned {
            continue;
        }
        let name = text(pod, "/metadata/name");
        let node = text(pod, "/spec/nodeName");
        let phase = text(pod, "/status/phase");
        let terminating = pod.pointer("/metadata/deletionTimestamp").is_some();
        let elsewhere = wanted.node_not.as_ref().is_none_or(|n| n.value != node);
        // The node's server as the Cinder CSI driver knows it (its CSINode id), else by
        // providerID or name.
        let server = state
            .kube
            .get("csinodes", None, node)
            .and_then(|n| n.pointer("/spec/drivers/0/nodeID"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                let provider = state
                    .kube
                    .get("nodes", None, node)
                    .map(|n| text(n, "/spec/providerID"))
                    .filter(|p| !p.is_empty());
                state.cloud.server_for_node(provider, node)
            });
        let volume = wanted.volume.as_ref().is_none_or(|v| {
            server
                .as_deref()
                .is_some_and(|s| state.cloud.is_attached_complete(&v.value, s))
        });
        let running = phase == "Running" && !terminating && !node.is_empty();
        found.push(format!(
            "{name} {}{} on {}{}",
            phase,
            if terminating { " (terminating)" } else { "" },
            if node.is_empty() { "no node" } else { node },
            if wanted.volume.is_some() && !volume {
                ", volume not attached there"
            } else {
                ""
            }
        ));
        holds |= running && elsewhere && volume;
    }
    let mut expectation = format!("a pod of {} Running", wanted.owner.value);
    if let Some(node) = &wanted.node_not {
        expectation.push_str(&format!(" on a node other than {}", node.value));
    }
    if let Some(volume) = &wanted.volume {
        expectation.push_str(&format!(" with volume {} attached", volume.value));
    }
    Check {
        expectation,
        holds,
        found: if found.is_empty() {
            "no pod".to_owned()
        } else {
            found.join("; ")
        },
    }
}

/// The string at `pointer` in an object, or empty.
fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
