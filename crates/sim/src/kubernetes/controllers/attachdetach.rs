//! The attach/detach controller (`pkg/controller/volume/attachdetach`), for CSI volumes.
//!
//! - Desired state: every volume of a scheduled pod that is not terminated (`IsPodTerminated`:
//!   finished, or marked for deletion with no container running; a pod Terminating on a dead
//!   node still shows its container running, so its volume stays desired there).
//! - Actual state: seeded from the VolumeAttachments that are attached; a volume is added when
//!   its VolumeAttachment reports `attached`, removed when its detach is done. Every
//!   `attach-detach-reconcile-sync-period` (1 min) it asks the attacher (`VolumesAreAttached`:
//!   for CSI, the VolumeAttachment exists and is attached) and forgets what is no longer
//!   attached.
//! - Detach (a volume attached but no longer desired on a node): skipped while the node reports
//!   it in use (`status.volumesInUse`), unless the node has the out-of-service taint or the node
//!   is unhealthy and `maxWaitForUnmountDuration` (6 min) has passed since the detach was first
//!   wanted; then the VolumeAttachment is deleted and the volume is forgotten when it is gone.
//! - Attach (desired, not attached): refused with the `Multi-Attach error` Event
//!   (`FailedAttachVolume`, once per pod and node while it waits) when the volume is exclusive
//!   (no RWX/ROX access mode) and attached to another node; else the VolumeAttachment
//!   `csi-<sha256(handle+driver+node)>` is created, `SuccessfulAttachVolume` told once it is
//!   attached, and `FailedAttachVolume` with the attacher's error while it is not (with
//!   exponential backoff, 0.5 s up to 2 min 2 s, as the operation executor).
//! - The node's `status.volumesAttached` lists the actual state.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::eviction::OUT_OF_SERVICE;
use super::{
    Involved, PodVolume, has_taint, name, namespace, node_name, nodes, pod_volumes, pods_where,
    ready, record, terminated, volume_attachments,
};
use crate::kubernetes::store::{DeleteOptions, Key, Part, Store, set_path, str_at};
use crate::world::State;

/// `attach-detach-reconcile-sync-period`.
pub(super) const SYNC_MS: u64 = 60_000;
/// `maxWaitForUnmountDuration`.
pub(super) const MAX_WAIT_FOR_UNMOUNT_MS: u64 = 6 * 60_000;
/// The operation executor's first and longest backoff after a failed attach.
const BACKOFF_FIRST_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 122_000;

/// A (PV, node) pair.
type Pair = (String, String);

/// What the controller knows between passes.
#[derive(Debug, Default)]
pub(super) struct Adc {
    started: bool,
    next_sync_ms: u64,
    /// Actual state: attached (PV, node) pairs, each with when its detach was first wanted.
    attached: BTreeMap<Pair, Option<u64>>,
    /// Desired pairs whose Multi-Attach error was told.
    multi_attach_told: BTreeSet<Pair>,
    /// Failed attaches: (next report, backoff).
    backoff: BTreeMap<Pair, (u64, u64)>,
}

/// One reconciliation; returns when a timer is next due.
pub(super) fn reconcile(state: &mut State, now: Timestamp, now_ms: u64) -> u64 {
    let store = &mut state.kube;
    let adc = &mut state.controllers.adc;
    if !adc.started {
        adc.started = true;
        adc.next_sync_ms = now_ms + SYNC_MS;
        for (_, va) in store.objects_of("volumeattachments", None) {
            if va.pointer("/status/attached").and_then(Value::as_bool) == Some(true) {
                adc.attached.insert(pair_of(va), None);
            }
        }
    }
    // Desired state: (PV, node) -> the volume and the pods that want it there.
    let mut desired: BTreeMap<Pair, (PodVolume, Vec<Value>)> = BTreeMap::new();
    let claiming = pods_where(store, |pod| {
        node_name(pod).is_some()
            && !terminated(pod)
            && pod
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|v| v.get("persistentVolumeClaim").is_some()))
    });
    for pod in claiming {
        let Some(node) = node_name(&pod) else {
            continue;
        };
        if store.object(&Key::new("nodes", None, node)).is_none() {
            continue;
        }
        for volume in pod_volumes(store, &pod).unwrap_or_default() {
            if !volume.attachable() {
                continue;
            }
            let entry = desired
                .entry((volume.pv.clone(), node.to_owned()))
                .or_insert_with(|| (volume, Vec::new()));
            entry.1.push(pod.clone());
        }
    }
    adc.multi_attach_told
        .retain(|pair| desired.contains_key(pair));
    adc.backoff.retain(|pair, _| desired.contains_key(pair));

    if now_ms >= adc.next_sync_ms {
        adc.next_sync_ms = now_ms + SYNC_MS;
        adc.attached
            .retain(|pair, _| attachment(store, pair).is_some_and(is_attached));
    }
    let mut due = adc.next_sync_ms;

    // Detaches.
    let wanted_gone: Vec<Pair> = adc
        .attached
        .keys()
        .filter(|pair| !desired.contains_key(*pair))
        .cloned()
        .collect();
    for pair in wanted_gone {
        let since = match adc.attached.get_mut(&pair) {
            Some(since) => *since.get_or_insert(now_ms),
            None => now_ms,
        };
        let node = store.object(&Key::new("nodes", None, &pair.1)).cloned();
        let healthy = node.as_ref().is_some_and(ready);
        let out_of_service = node.as_ref().is_some_and(|n| has_taint(n, OUT_OF_SERVICE));
        let timed_out = now_ms >= since + MAX_WAIT_FOR_UNMOUNT_MS;
        let mounted = node.as_ref().is_some_and(|n| in_use(store, n, &pair));
        if mounted && !(out_of_service || (!healthy && timed_out)) {
            if !healthy {
                due = due.min(since + MAX_WAIT_FOR_UNMOUNT_MS);
            }
            continue;
        }
        report_attached(store, &pair.1, &pair.0, false);
        match attachment(store, &pair).cloned() {
            None => {
                adc.attached.remove(&pair);
            }
            Some(va) if va.pointer("/metadata/deletionTimestamp").is_none() => {
                let _ = store.delete(
                    volume_attachments(),
                    None,
                    name(&va),
                    &DeleteOptions::default(),
                    now,
                );
                if attachment(store, &pair).is_none() {
                    adc.attached.remove(&pair);
                }
            }
            Some(_) => {}
        }
    }

    // Attaches.
    for (pair, (volume, pods)) in &desired {
        if adc.attached.contains_key(pair) {
            continue;
        }
        let elsewhere: Vec<&str> = adc
            .attached
            .keys()
            .filter(|(pv, node)| *pv == pair.0 && *node != pair.1)
            .map(|(_, node)| node.as_str())
            .collect();
        if volume.exclusive && !elsewhere.is_empty() {
            if adc.multi_attach_told.insert(pair.clone()) {
                let users: Vec<&Value> = desired
                    .iter()
                    .filter(|((pv, node), _)| *pv == pair.0 && elsewhere.contains(&node.as_str()))
                    .flat_map(|(_, (_, pods))| pods)
                    .collect();
                for pod in pods {
                    let message = multi_attach_message(&pair.0, pod, &users);
                    record(
                        store,
                        &Involved::pod(pod),
                        "Warning",
                        "FailedAttachVolume",
                        &message,
                        "attachdetach-controller",
                        None,
                        now,
                    );
                }
            }
            continue;
        }
        if let Some(va) = attachment(store, pair).cloned() {
            if va.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            if is_attached(&va) {
                adc.attached.insert(pair.clone(), None);
                adc.backoff.remove(pair);
                report_attached(store, &pair.1, &pair.0, true);
                let message = format!("AttachVolume.Attach succeeded for volume \"{}\"", pair.0);
                tell_pods(
                    store,
                    pods,
                    "Normal",
                    "SuccessfulAttachVolume",
                    &message,
                    now,
                );
                continue;
            }
            if let Some(error) = str_at(&va, &["status", "attachError", "message"]) {
                let (next, backoff) = adc
                    .backoff
                    .get(pair)
                    .copied()
                    .unwrap_or((now_ms, BACKOFF_FIRST_MS));
                if now_ms >= next {
                    let message = format!(
                        "AttachVolume.Attach failed for volume \"{}\" : {error}",
                        pair.0
                    );
                    tell_pods(store, pods, "Warning", "FailedAttachVolume", &message, now);
                    adc.backoff.insert(
                        pair.clone(),
                        (now_ms + backoff, (backoff * 2).min(BACKOFF_MAX_MS)),
                    );
                }
                due = due.min(adc.backoff.get(pair).map_or(u64::MAX, |b| b.0));
            }
            continue;
        }
        let va = json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "VolumeAttachment",
            "metadata": {"name": volume.attachment(&pair.1)},
            "spec": {"attacher": volume.driver, "nodeName": pair.1,
                     "source": {"persistentVolumeName": pair.0}},
            "status": {"attached": false},
        });
        let _ = store.create(volume_attachments(), None, va, now);
    }
    due
}

/// `reportMultiAttachError`: the pods on the other nodes when the desired state has some (only
/// those of the pod's namespace by name), else "exclusively attached".
fn multi_attach_message(pv: &str, pod: &Value, users: &[&Value]) -> String {
    let suffix = if users.is_empty() {
        "Volume is already exclusively attached to one node and can't be attached to another"
            .to_owned()
    } else {
        let local: Vec<&str> = users
            .iter()
            .filter(|u| namespace(u) == namespace(pod))
            .map(|u| name(u))
            .collect();
        let other = users.len() - local.len();
        match (local.is_empty(), other) {
            (false, 0) => format!("Volume is already used by pod(s) {}", local.join(", ")),
            (false, n) => format!(
                "Volume is already used by pod(s) {} and {n} pod(s) in different namespaces",
                local.join(", ")
            ),
            (true, n) => format!("Volume is already used by {n} pod(s) in different namespaces"),
        }
    };
    format!("Multi-Attach error for volume \"{pv}\" {suffix}")
}

fn pair_of(va: &Value) -> Pair {
    (
        str_at(va, &["spec", "source", "persistentVolumeName"])
            .unwrap_or_default()
            .to_owned(),
        str_at(va, &["spec", "nodeName"])
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The VolumeAttachment of a pair, found by its spec (its name depends on the volume handle).
fn attachment<'a>(store: &'a Store, pair: &Pair) -> Option<&'a Value> {
    let pv = store.get("persistentvolumes", None, &pair.0)?;
    let spec = pv.get("spec")?;
    let (driver, handle) = match (
        str_at(spec, &["csi", "driver"]),
        str_at(spec, &["cinder", "volumeID"]),
    ) {
        (Some(driver), _) => (driver, str_at(spec, &["csi", "volumeHandle"])?),
        (None, Some(id)) => (super::CINDER_DRIVER, id),
        (None, None) => return None,
    };
    let name = crate::kubernetes::seed::attachment_name(handle, driver, &pair.1);
    store.get("volumeattachments", None, &name)
}

fn is_attached(va: &Value) -> bool {
    va.pointer("/status/attached").and_then(Value::as_bool) == Some(true)
}

/// The node's unique name for the pair's volume.
fn unique_name(store: &Store, pair: &Pair) -> Option<String> {
    let pv = store.get("persistentvolumes", None, &pair.0)?;
    let spec = pv.get("spec")?;
    match (
        str_at(spec, &["csi", "driver"]),
        str_at(spec, &["cinder", "volumeID"]),
    ) {
        (Some(driver), _) => Some(format!(
            "kubernetes.io/csi/{driver}^{}",
            str_at(spec, &["csi", "volumeHandle"])?
        )),
        (None, Some(id)) => Some(format!("kubernetes.io/csi/{}^{id}", super::CINDER_DRIVER)),
        (None, None) => None,
    }
}

/// Whether the node reports the volume mounted (`status.volumesInUse`).
fn in_use(store: &Store, node: &Value, pair: &Pair) -> bool {
    let Some(unique) = unique_name(store, pair) else {
        return false;
    };
    node.pointer("/status/volumesInUse")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(unique.as_str())))
}

/// Adds the volume to, or removes it from, the node's `status.volumesAttached` (the node status
/// updater).
fn report_attached(store: &mut Store, node: &str, pv: &str, attached: bool) {
    let Some(unique) = unique_name(store, &(pv.to_owned(), node.to_owned())) else {
        return;
    };
    let Some(mut object) = store.object(&Key::new("nodes", None, node)).cloned() else {
        return;
    };
    let mut list = object
        .pointer("/status/volumesAttached")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let present = list
        .iter()
        .any(|v| v.get("name").and_then(Value::as_str) == Some(unique.as_str()));
    if present == attached {
        return;
    }
    if attached {
        list.push(json!({"name": unique, "devicePath": ""}));
    } else {
        list.retain(|v| v.get("name").and_then(Value::as_str) != Some(unique.as_str()));
    }
    set_path(
        &mut object,
        &["status", "volumesAttached"],
        Value::Array(list),
    );
    super::write(store, nodes(), object, Part::Status);
}

/// An Event from the attach/detach controller on each of the pods.
fn tell_pods(
    store: &mut Store,
    pods: &[Value],
    kind: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    for pod in pods {
        record(
            store,
            &Involved::pod(pod),
            kind,
            reason,
            message,
            "attachdetach-controller",
            None,
            now,
        );
    }
}
