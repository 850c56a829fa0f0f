//! The kubelets of the Ready nodes (a node that is not Ready has a dead or cut-off kubelet,
//! which changes nothing), and the kubelet of a server Nova brought up again (`os-start`, an
//! evacuate): `kubernetes.behaviour.boot_seconds` later it reports its node Ready.
//!
//! A live kubelet renews its node's Lease (`kube-node-lease/NODE`) every
//! [`LEASE_RENEW_INTERVAL`], as the kubelet's node lease controller does (a quarter of the 40 s
//! lease): the kubelet of a Ready node whose server runs (power state `RUNNING`, whatever its
//! status says). A kubelet whose server shut off, crashed or is gone renews nothing, while its
//! node still shows Ready until the node lifecycle controller's grace runs out.
//!
//! For each pod bound to its node the kubelet reports the pod's volumes in use
//! (`status.volumesInUse`, which the attach/detach controller reads before it detaches) and
//! drops those no pod of the node uses any more. A `Pending` pod shows `ContainerCreating`
//! until every volume it claims has an attached VolumeAttachment on the node; then, after
//! `kubernetes.behaviour.start_seconds`, its container runs: phase `Running`, Ready, with the
//! kubelet's `Pulled`, `Created` and `Started` Events.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    Involved, leases, name, node_name, nodes, object_uid, phase, pod_volumes, pods, ready, record,
    same_pod, terminated, terminating, write,
};
use crate::kubernetes::store::{Part, Store, micro_time, set_path, str_at, time};
use crate::world::State;

/// Since when each pending pod (by uid) has had all its volumes attached, and when each
/// kubelet last renewed its node's Lease (the emulated clock).
#[derive(Debug, Default)]
pub(super) struct Kubelet {
    volumes_ready_ms: BTreeMap<String, u64>,
    renewed_ms: BTreeMap<String, u64>,
}

/// Nodes whose server Nova brought up `boot_ms` ago turn Ready (the node named by the
/// server's providerID); returns when the next one is due.
pub(super) fn register(state: &mut State, now_ms: u64) -> u64 {
    let (booted, due) = state.cloud.take_booted(state.controllers.boot_ms, now_ms);
    for server in booted {
        let suffix = format!("/{server}");
        let nodes: Vec<String> = state
            .kube
            .objects_of("nodes", None)
            .filter(|(_, n)| {
                !ready(n)
                    && str_at(n, &["spec", "providerID"]).is_some_and(|p| p.ends_with(&suffix))
            })
            .map(|(_, n)| name(n).to_owned())
            .collect();
        for node in nodes {
            state
                .kube
                .set_node_ready(&node, crate::scenario::Readiness::True);
        }
    }
    due
}

/// Nova's power state of a running guest.
const POWER_RUNNING: u8 = 1;

/// How often a kubelet renews its node's Lease (`nodeLeaseDurationSeconds` 40 × 0.25).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The kubelets whose server runs renew their node's Lease every [`LEASE_RENEW_INTERVAL`] of
/// the emulated clock (the first time at once); returns when the next renewal is due.
fn renew_leases(state: &mut State, now: Timestamp, now_ms: u64) -> u64 {
    let interval = u64::try_from(LEASE_RENEW_INTERVAL.as_millis()).unwrap_or(u64::MAX);
    let running = |provider_id: Option<&str>| {
        provider_id
            .and_then(|p| p.rsplit('/').next())
            .and_then(|server| state.cloud.server(server))
            .is_some_and(|server| server.power_state == POWER_RUNNING)
    };
    let renewing: Vec<String> = state
        .kube
        .objects_of("nodes", None)
        .filter(|(_, n)| ready(n) && running(str_at(n, &["spec", "providerID"])))
        .map(|(_, n)| name(n).to_owned())
        .collect();
    let mut next = u64::MAX;
    for node in renewing {
        let last = state.controllers.kubelet.renewed_ms.get(&node).copied();
        let due = last.map_or(now_ms, |last| last.saturating_add(interval));
        if now_ms < due {
            next = next.min(due);
            continue;
        }
        let Some(lease) = state.kube.get("leases", Some("kube-node-lease"), &node) else {
            continue;
        };
        let mut lease = lease.clone();
        set_path(&mut lease, &["spec", "renewTime"], micro_time(now).into());
        write(&mut state.kube, leases(), lease, Part::Main);
        state.controllers.kubelet.renewed_ms.insert(node, now_ms);
        next = next.min(now_ms.saturating_add(interval));
    }
    next
}

/// One sync of every live kubelet; returns when a pod is next due to start or a Lease to be
/// renewed.
pub(super) fn sync(state: &mut State, now: Timestamp, now_ms: u64) -> u64 {
    let mut due = renew_leases(state, now, now_ms);
    let live: BTreeSet<String> = state
        .kube
        .objects_of("nodes", None)
        .filter(|(_, n)| ready(n))
        .map(|(_, n)| name(n).to_owned())
        .collect();
    // What each live kubelet has mounted, and the pods it has yet to start (one walk, copying
    // only those).
    let mut in_use: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = Vec::new();
    for (_, pod) in state.kube.objects_of("pods", None) {
        let Some(node) = node_name(pod).filter(|n| live.contains(*n)) else {
            continue;
        };
        if terminated(pod) {
            continue;
        }
        let used = in_use.entry(node.to_owned()).or_default();
        for volume in pod_volumes(&state.kube, pod).iter().flatten() {
            used.insert(volume.unique_name());
        }
        if !terminating(pod) && phase(pod) == "Pending" {
            pending.push(pod.clone());
        }
    }
    let mut seen = BTreeSet::new();
    for pod in pending {
        let Some(node) = node_name(&pod).map(str::to_owned) else {
            continue;
        };
        let Some(node_object) = state.kube.get("nodes", None, &node).cloned() else {
            continue;
        };
        let uid = object_uid(&pod).to_owned();
        seen.insert(uid.clone());
        if pod.pointer("/status/hostIP").is_none() {
            creating(&mut state.kube, &pod, &node_object, now);
        }
        // `VerifyControllerAttachedVolume`: the attach/detach controller lists the volume in
        // the node's `status.volumesAttached` (its VolumeAttachment is attached).
        let listed: BTreeSet<&str> = node_object
            .pointer("/status/volumesAttached")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|v| str_at(v, &["name"])).collect())
            .unwrap_or_default();
        let attached = pod_volumes(&state.kube, &pod).is_some_and(|volumes| {
            volumes.iter().filter(|v| v.attachable()).all(|v| {
                listed.contains(v.unique_name().as_str())
                    && state
                        .kube
                        .get("volumeattachments", None, &v.attachment(&node))
                        .and_then(|va| va.pointer("/status/attached"))
                        .and_then(Value::as_bool)
                        == Some(true)
            })
        });
        if !attached {
            state.controllers.kubelet.volumes_ready_ms.remove(&uid);
            continue;
        }
        let since = *state
            .controllers
            .kubelet
            .volumes_ready_ms
            .entry(uid.clone())
            .or_insert(now_ms);
        let start_at = since + state.controllers.start_ms;
        if now_ms < start_at {
            due = due.min(start_at);
            continue;
        }
        start(&mut state.kube, &pod, &node, now);
        state.controllers.kubelet.volumes_ready_ms.remove(&uid);
    }
    state
        .controllers
        .kubelet
        .volumes_ready_ms
        .retain(|uid, _| seen.contains(uid));
    for node_name in live {
        let used = in_use.remove(&node_name).unwrap_or_default();
        let Some(node) = state.kube.get("nodes", None, &node_name) else {
            continue;
        };
        let reported: BTreeSet<String> = node
            .pointer("/status/volumesInUse")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if used != reported {
            let mut node = node.clone();
            let list: Vec<Value> = used.into_iter().map(Value::from).collect();
            set_path(&mut node, &["status", "volumesInUse"], Value::Array(list));
            write(&mut state.kube, nodes(), node, Part::Status);
        }
    }
    due
}

fn host_ip(node: &Value) -> Option<String> {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)?
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .and_then(|a| str_at(a, &["address"]))
        .map(str::to_owned)
}

fn container_names(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| {
                    (
                        str_at(c, &["name"]).unwrap_or("app").to_owned(),
                        str_at(c, &["image"]).unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The status a kubelet first writes: host IP, start time, containers `ContainerCreating`.
fn creating(store: &mut Store, pod: &Value, node: &Value, now: Timestamp) {
    let Some(mut object) = same_pod(store, pod).cloned() else {
        return;
    };
    let at = time(now);
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| json!({"name": name, "image": image, "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}))
        .collect();
    let mut status = object.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (kind, value) in [
        ("PodReadyToStartContainers", "False"),
        ("Initialized", "True"),
        ("Ready", "False"),
        ("ContainersReady", "False"),
    ] {
        if !conditions
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        {
            let mut condition = json!({"type": kind, "status": value, "lastTransitionTime": at});
            if matches!(kind, "Ready" | "ContainersReady") {
                condition["reason"] = "ContainersNotReady".into();
                let names: Vec<String> = container_names(pod).into_iter().map(|c| c.0).collect();
                condition["message"] =
                    format!("containers with unready status: [{}]", names.join(" ")).into();
            }
            conditions.push(condition);
        }
    }
    status["conditions"] = Value::Array(conditions);
    status["containerStatuses"] = Value::Array(statuses);
    status["startTime"] = at.into();
    if let Some(ip) = host_ip(node) {
        status["hostIP"] = ip.clone().into();
        status["hostIPs"] = json!([{"ip": ip}]);
    }
    object["status"] = status;
    write(store, pods(), object, Part::Status);
}

/// The containers run: phase `Running`, every condition `True`, the kubelet's Events.
fn start(store: &mut Store, pod: &Value, node: &str, now: Timestamp) {
    let Some(mut object) = same_pod(store, pod).cloned() else {
        return;
    };
    let at = time(now);
    let containers = container_names(pod);
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": "", "ready": true,
            "started": true, "restartCount": 0, "state": {"running": {"startedAt": at}}})
        })
        .collect();
    let mut conditions: Vec<Value> = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for condition in &mut conditions {
        let kind = condition
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if matches!(
            kind,
            "PodReadyToStartContainers" | "Initialized" | "Ready" | "ContainersReady"
        ) && condition.get("status").and_then(Value::as_str) != Some("True")
        {
            *condition = json!({"type": kind, "status": "True", "lastTransitionTime": at});
        }
    }
    let octets = uuid::Uuid::new_v4().into_bytes();
    let ip = format!("10.244.{}.{}", octets[0] % 200 + 1, octets[1] % 250 + 2);
    set_path(&mut object, &["status", "phase"], "Running".into());
    set_path(
        &mut object,
        &["status", "conditions"],
        Value::Array(conditions),
    );
    set_path(
        &mut object,
        &["status", "containerStatuses"],
        Value::Array(statuses),
    );
    set_path(&mut object, &["status", "podIP"], ip.clone().into());
    set_path(&mut object, &["status", "podIPs"], json!([{"ip": ip}]));
    write(store, pods(), object, Part::Status);
    for (container, image) in containers {
        for (reason, message) in [
            (
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            ),
            ("Created", format!("Created container: {container}")),
            ("Started", format!("Started container {container}")),
        ] {
            record(
                store,
                &Involved::pod(pod),
                "Normal",
                reason,
                &message,
                "kubelet",
                Some(node),
                now,
            );
        }
    }
}
