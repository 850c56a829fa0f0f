//! Kubernetes' own controllers, emulated in process: the node lifecycle controller's taints,
//! taint eviction, pod garbage collection, ReplicaSets and StatefulSets, the scheduler, the
//! attach/detach controller and the kubelet. Each can be switched off per scenario
//! (`kubernetes.controllers: {name: false}`); all run by default, as in a real cluster.
//!
//! They run when the world is brought up to the present, at most once per
//! [`LOOP_MS`] (the attach/detach reconciler's loop period), and only when an object changed
//! or one of their timers is due, so an idle world costs one comparison.

mod attachdetach;
mod eviction;
mod kubelet;
mod scheduler;
#[cfg(test)]
mod tests;
mod workload;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::resource::{self, Resource};
use super::seed::{CINDER_DRIVER, LINSTOR_DRIVER, uid};
use super::store::{Key, Part, Store, str_at, time};
use crate::scenario::Scenario;
use crate::world::State;

/// The shortest time between two passes: the attach/detach controller's
/// `reconcilerLoopPeriod` (100 ms).
const LOOP_MS: u64 = 100;

/// What the controllers remember between passes.
#[derive(Debug)]
pub struct Controllers {
    runs: BTreeMap<&'static str, bool>,
    /// `kubernetes.behaviour.start_seconds`, in milliseconds.
    start_ms: u64,
    /// `kubernetes.behaviour.boot_seconds`, in milliseconds.
    boot_ms: u64,
    workloads: workload::Workloads,
    adc: attachdetach::Adc,
    kubelet: kubelet::Kubelet,
    scheduler: scheduler::Scheduler,
    podgc: eviction::PodGc,
    /// The store revision after the last pass.
    revision: u64,
    /// When a timer of some controller is next due.
    due_ms: u64,
    /// When the last pass ran.
    last_ms: Option<u64>,
}

impl Controllers {
    /// The controllers of a scenario, none run yet.
    #[must_use]
    pub fn new(scenario: &Scenario) -> Self {
        let k8s = &scenario.kubernetes;
        let runs = crate::scenario::CONTROLLERS
            .iter()
            .map(|&name| (name, k8s.runs(name)))
            .collect();
        // Rounded milliseconds of a small, non-negative number of seconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = |seconds: f64| (seconds.max(0.0) * 1000.0).round() as u64;
        Self {
            runs,
            start_ms: ms(k8s.behaviour.start_seconds),
            boot_ms: ms(k8s.behaviour.boot_seconds),
            workloads: workload::Workloads::new(scenario),
            adc: attachdetach::Adc::default(),
            kubelet: kubelet::Kubelet::default(),
            scheduler: scheduler::Scheduler::default(),
            podgc: eviction::PodGc::default(),
            revision: 0,
            due_ms: 0,
            last_ms: None,
        }
    }

    /// Whether the controller `name` (of [`crate::scenario::CONTROLLERS`]) runs.
    pub(crate) fn runs(&self, name: &str) -> bool {
        self.runs.get(name).copied().unwrap_or(true)
    }
}

/// One pass of every controller that runs, when something changed or a timer is due.
pub fn reconcile(state: &mut State, now_ms: u64) {
    let c = &state.controllers;
    if c.last_ms.is_some_and(|last| now_ms < last + LOOP_MS) {
        return;
    }
    // A server Nova just brought up is no change of the store: its kubelet's timer starts now.
    if c.last_ms.is_some()
        && state.kube.revision() == c.revision
        && now_ms < c.due_ms
        && !state.cloud.booting()
    {
        return;
    }
    let started = std::time::Instant::now();
    let mut due = u64::MAX;
    let first = c.last_ms.is_none();
    if first {
        state.controllers.workloads.capture(&state.kube);
    }
    let now = Timestamp::now();
    let runs = |state: &State, name: &str| state.controllers.runs(name);
    if runs(state, "nodelifecycle") {
        eviction::taint_nodes(&mut state.kube, now);
    }
    if runs(state, "taint-eviction") {
        due = due.min(eviction::evict(&mut state.kube, now, now_ms));
    }
    if runs(state, "podgc") {
        due = due.min(
            state
                .controllers
                .podgc
                .collect(&mut state.kube, now, now_ms),
        );
    }
    if runs(state, "replicaset") {
        state
            .controllers
            .workloads
            .replicasets(&mut state.kube, now);
    }
    if runs(state, "statefulset") {
        state
            .controllers
            .workloads
            .statefulsets(&mut state.kube, now);
    }
    if runs(state, "scheduler") {
        due = due.min(scheduler::schedule(state, now, now_ms));
    }
    if runs(state, "attachdetach") {
        due = due.min(attachdetach::reconcile(state, now, now_ms));
    }
    if runs(state, "kubelet") {
        due = due.min(kubelet::register(state, now_ms));
        due = due.min(kubelet::sync(state, now, now_ms));
    }
    let c = &mut state.controllers;
    // A pass holds the world's lock: on a large cluster the next one waits ten times as long as
    // this one took, so the controllers never take more than a tenth of the lock.
    let spent = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    c.last_ms = Some(now_ms + spent.saturating_mul(10).saturating_sub(LOOP_MS));
    // A pass that changed something runs again: the next controller in the chain may act.
    if state.kube.revision() != c.revision || first {
        due = due.min(now_ms + LOOP_MS);
    }
    c.revision = state.kube.revision();
    c.due_ms = due;
}

// ----- What several controllers read ------------------------------------------------------

fn res(group: &str, version: &str, plural: &str) -> &'static Resource {
    resource::find(group, version, plural).expect("a served resource")
}

fn pods() -> &'static Resource {
    res("", "v1", "pods")
}

fn nodes() -> &'static Resource {
    res("", "v1", "nodes")
}

fn leases() -> &'static Resource {
    res("coordination.k8s.io", "v1", "leases")
}

fn volume_attachments() -> &'static Resource {
    res("storage.k8s.io", "v1", "volumeattachments")
}

/// The pods `keep` selects, copied (controllers change the store while they walk); only those
/// are copied, so a large cluster costs a walk, not a copy.
fn pods_where(store: &Store, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    store
        .objects_of("pods", None)
        .filter(|(_, pod)| keep(pod))
        .map(|(_, pod)| pod.clone())
        .collect()
}

/// The nodes `keep` selects, copied.
fn nodes_where(store: &Store, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    store
        .objects_of("nodes", None)
        .filter(|(_, node)| keep(node))
        .map(|(_, node)| node.clone())
        .collect()
}

fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"]).unwrap_or_default()
}

fn namespace(object: &Value) -> &str {
    str_at(object, &["metadata", "namespace"]).unwrap_or_default()
}

fn object_uid(object: &Value) -> &str {
    str_at(object, &["metadata", "uid"]).unwrap_or_default()
}

fn node_name(pod: &Value) -> Option<&str> {
    str_at(pod, &["spec", "nodeName"]).filter(|n| !n.is_empty())
}

fn terminating(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

fn phase(pod: &Value) -> &str {
    str_at(pod, &["status", "phase"]).unwrap_or_default()
}

/// `Succeeded` or `Failed`.
fn terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether a pod is terminated as the volume controllers see it (`IsPodTerminated`): terminal,
/// or marked for deletion with no container running.
fn terminated(pod: &Value) -> bool {
    if terminal(pod) {
        return true;
    }
    terminating(pod)
        && !pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|statuses| {
                statuses
                    .iter()
                    .any(|s| s.pointer("/state/running").is_some())
            })
}

/// The Ready condition's status of a node (`Unknown` when it has none).
fn ready_status(node: &Value) -> &str {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("Unknown")
}

fn ready(node: &Value) -> bool {
    ready_status(node) == "True"
}

fn taints(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has_taint(node: &Value, key: &str) -> bool {
    taints(node)
        .iter()
        .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
}

/// Whether one of the pod's tolerations tolerates the taint (`ToleratesTaint`); returns the
/// toleration.
fn toleration_for<'a>(pod: &'a Value, taint: &Value) -> Option<&'a Value> {
    let key = taint.get("key").and_then(Value::as_str).unwrap_or_default();
    let value = taint
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let effect = taint
        .get("effect")
        .and_then(Value::as_str)
        .unwrap_or_default();
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)?
        .iter()
        .find(|t| {
            let t_effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            if !t_effect.is_empty() && t_effect != effect {
                return false;
            }
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            if t_key.is_empty() {
                return operator == "Exists";
            }
            if t_key != key {
                return false;
            }
            match operator {
                "Exists" => true,
                _ => t.get("value").and_then(Value::as_str).unwrap_or_default() == value,
            }
        })
}

/// A volume a pod uses through a claim, as the volume controllers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodVolume {
    /// The PV.
    pv: String,
    /// The CSI driver (in-tree Cinder migrates to Cinder CSI).
    driver: String,
    /// The volume handle (the Cinder volume id).
    handle: String,
    /// No ReadWriteMany or ReadOnlyMany access mode (`isMultiAttachForbidden`).
    exclusive: bool,
}

impl PodVolume {
    /// `kubernetes.io/csi/DRIVER^HANDLE`, as node status lists it.
    fn unique_name(&self) -> String {
        format!("kubernetes.io/csi/{}^{}", self.driver, self.handle)
    }

    /// The VolumeAttachment's name on a node.
    fn attachment(&self, node: &str) -> String {
        super::seed::attachment_name(&self.handle, &self.driver, node)
    }

    /// Whether the emulator attaches it (a Cinder or LINSTOR volume; other drivers need no
    /// attach here).
    fn attachable(&self) -> bool {
        self.driver == CINDER_DRIVER || self.driver == LINSTOR_DRIVER
    }
}

/// The PVs behind a pod's claims; `None` when a claim or its PV is missing (the pod cannot
/// start).
fn pod_volumes(store: &Store, pod: &Value) -> Option<Vec<PodVolume>> {
    let ns = namespace(pod);
    let mut volumes = Vec::new();
    let specs = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for volume in &specs {
        let Some(claim) = volume
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let pvc = store.get("persistentvolumeclaims", Some(ns), claim)?;
        let pv_name = str_at(pvc, &["spec", "volumeName"])?;
        let pv = store.get("persistentvolumes", None, pv_name)?;
        let spec = pv.get("spec")?;
        let (driver, handle) = match (
            str_at(spec, &["csi", "driver"]),
            str_at(spec, &["cinder", "volumeID"]),
        ) {
            (Some(driver), _) => (
                driver,
                str_at(spec, &["csi", "volumeHandle"]).unwrap_or_default(),
            ),
            (None, Some(id)) => (CINDER_DRIVER, id),
            (None, None) => continue,
        };
        let modes: Vec<&str> = spec
            .get("accessModes")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        volumes.push(PodVolume {
            pv: pv_name.to_owned(),
            driver: driver.to_owned(),
            handle: handle.to_owned(),
            exclusive: !modes.is_empty()
                && !modes
                    .iter()
                    .any(|m| matches!(*m, "ReadWriteMany" | "ReadOnlyMany")),
        });
    }
    Some(volumes)
}

/// Writes an object back (main part or status); a refusal means a concurrent change, and the
/// next pass tries again.
fn write(store: &mut Store, resource: &Resource, object: Value, part: Part) {
    let ns = str_at(&object, &["metadata", "namespace"]).map(str::to_owned);
    let name = name(&object).to_owned();
    let _ = store.update(resource, ns.as_deref(), &name, object, part);
}

/// What an Event is about.
struct Involved {
    kind: &'static str,
    api_version: &'static str,
    namespace: String,
    name: String,
    uid: String,
}

impl Involved {
    fn pod(pod: &Value) -> Self {
        Self {
            kind: "Pod",
            api_version: "v1",
            namespace: namespace(pod).to_owned(),
            name: name(pod).to_owned(),
            uid: object_uid(pod).to_owned(),
        }
    }

    fn owner(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            api_version: "apps/v1",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid(kind, namespace, name),
        }
    }
}

/// Records an Event as client-go's recorder does: the same (object, type, reason, message,
/// source) again raises `count` and `lastTimestamp` of the existing Event instead of adding one.
#[allow(clippy::too_many_arguments)] // an Event's fields, as `recorder.Eventf` takes them
fn record(
    store: &mut Store,
    involved: &Involved,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
    host: Option<&str>,
    now: Timestamp,
) {
    let existing = store
        .objects_of("events", Some(&involved.namespace))
        .find(|(_, e)| {
            str_at(e, &["involvedObject", "uid"]) == Some(involved.uid.as_str())
                && str_at(e, &["reason"]) == Some(reason)
                && str_at(e, &["message"]) == Some(message)
                && str_at(e, &["type"]) == Some(kind)
                && str_at(e, &["source", "component"]) == Some(component)
        })
        .map(|(_, e)| e.clone());
    let events = res("", "v1", "events");
    if let Some(mut event) = existing {
        let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
        event["count"] = (count + 1).into();
        event["lastTimestamp"] = time(now).into();
        write(store, events, event, Part::Main);
        return;
    }
    let suffix = format!("{:016x}", uuid::Uuid::new_v4().as_u128() >> 64);
    let mut source = json!({"component": component});
    if let Some(host) = host {
        source["host"] = host.into();
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{suffix}", involved.name), "namespace": involved.namespace},
        "involvedObject": {"apiVersion": involved.api_version, "kind": involved.kind,
                           "name": involved.name, "namespace": involved.namespace,
                           "uid": involved.uid},
        "reason": reason,
        "message": message,
        "type": kind,
        "count": 1,
        "firstTimestamp": time(now),
        "lastTimestamp": time(now),
        "eventTime": null,
        "source": source,
        "reportingComponent": component,
        "reportingInstance": host.unwrap_or_default(),
    });
    let _ = store.create(events, Some(&involved.namespace), event, now);
}

/// A pod by key, if it still exists with the same uid.
fn same_pod<'a>(store: &'a Store, pod: &Value) -> Option<&'a Value> {
    store
        .object(&Key::new("pods", Some(namespace(pod)), name(pod)))
        .filter(|p| object_uid(p) == object_uid(pod))
}
