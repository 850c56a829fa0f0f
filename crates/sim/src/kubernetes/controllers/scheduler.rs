//! The default scheduler, for pods without a node: it binds a pod to a Ready, schedulable
//! node whose NoSchedule and NoExecute taints the pod tolerates and which stands in the zone of
//! the pod's Cinder volumes (the node's `topology.kubernetes.io/zone` label against the volume's
//! availability zone, when both are known), preferring the node with the fewest pods. Event
//! `Scheduled`; a pod no node fits gets `FailedScheduling` (again at most once a minute while
//! nothing changes, as the scheduler's unschedulable queue retries).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    Involved, name, namespace, node_name, nodes_where, object_uid, pod_volumes, pods, pods_where,
    ready, record, same_pod, taints, terminating, toleration_for, write,
};
use crate::kubernetes::store::{Part, set_path, time};
use crate::world::State;

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How often an unschedulable pod's failure is told again while it stays the same.
const REPORT_MS: u64 = 60_000;

/// The last `FailedScheduling` message per pod uid and when it was told.
#[derive(Debug, Default)]
pub(super) struct Scheduler {
    reported: BTreeMap<String, (String, u64)>,
}

/// Binds the pods waiting for a node; returns when an unschedulable pod is told again.
pub(super) fn schedule(state: &mut State, now: Timestamp, now_ms: u64) -> u64 {
    let waiting: Vec<Value> = pods_where(&state.kube, |p| {
        node_name(p).is_none()
            && !terminating(p)
            && !super::terminal(p)
            && p.pointer("/spec/schedulerName")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "default-scheduler")
    });
    let mut due = u64::MAX;
    if waiting.is_empty() {
        state.controllers.scheduler.reported.clear();
        return due;
    }
    let nodes = nodes_where(&state.kube, |_| true);
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for (_, pod) in state.kube.objects_of("pods", None) {
        if let Some(node) = node_name(pod) {
            *load.entry(node.to_owned()).or_default() += 1;
        }
    }
    for pod in waiting {
        let zones: Vec<String> = pod_volumes(&state.kube, &pod)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| state.cloud.volume(&v.handle).map(|v| v.zone.clone()))
            .collect();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, String)> = None;
        for node in &nodes {
            if let Some(reason) = unfit(&pod, node, &zones) {
                *reasons.entry(reason).or_default() += 1;
                continue;
            }
            let count = load.get(name(node)).copied().unwrap_or_default();
            if best.as_ref().is_none_or(|(c, _)| count < *c) {
                best = Some((count, name(node).to_owned()));
            }
        }
        let Some((_, node)) = best else {
            let total = nodes.len();
            let parts: Vec<String> = reasons
                .iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect();
            let message = format!(
                "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: \
                 {total} Preemption is not helpful for scheduling.",
                parts.join(", ")
            );
            let uid = object_uid(&pod).to_owned();
            let told = state.controllers.scheduler.reported.get(&uid);
            let again = told.is_none_or(|(m, at)| *m != message || now_ms >= at + REPORT_MS);
            if again {
                record(
                    &mut state.kube,
                    &Involved::pod(&pod),
                    "Warning",
                    "FailedScheduling",
                    &message,
                    "default-scheduler",
                    None,
                    now,
                );
                state
                    .controllers
                    .scheduler
                    .reported
                    .insert(uid.clone(), (message, now_ms));
            }
            let at = state.controllers.scheduler.reported[&uid].1;
            due = due.min(at + REPORT_MS);
            continue;
        };
        state
            .controllers
            .scheduler
            .reported
            .remove(object_uid(&pod));
        bind(state, &pod, &node, now);
        *load.entry(node).or_default() += 1;
    }
    due
}

/// Why a node does not fit the pod, as the scheduler's filter plugins say it, or `None`.
fn unfit(pod: &Value, node: &Value, zones: &[String]) -> Option<String> {
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        return Some("node(s) were unschedulable".to_owned());
    }
    for taint in taints(node) {
        let effect = taint
            .get("effect")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(effect, "NoSchedule" | "NoExecute") {
            continue;
        }
        if toleration_for(pod, &taint).is_none() {
            let key = taint.get("key").and_then(Value::as_str).unwrap_or_default();
            let value = taint
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Some(format!("node(s) had untolerated taint {{{key}: {value}}}"));
        }
    }
    if !ready(node) {
        return Some("node(s) were not ready".to_owned());
    }
    let zone = node
        .pointer("/metadata/labels")
        .and_then(|l| l.get(ZONE_LABEL))
        .and_then(Value::as_str);
    if let Some(zone) = zone
        && zones.iter().any(|z| z != zone)
    {
        return Some("node(s) had volume node affinity conflict".to_owned());
    }
    None
}

/// The binding: `spec.nodeName`, the `PodScheduled` condition, the `Scheduled` Event.
fn bind(state: &mut State, pod: &Value, node: &str, now: Timestamp) {
    let Some(mut bound) = same_pod(&state.kube, pod).cloned() else {
        return;
    };
    set_path(&mut bound, &["spec", "nodeName"], node.into());
    write(&mut state.kube, pods(), bound, Part::Main);
    let Some(mut status) = same_pod(&state.kube, pod).cloned() else {
        return;
    };
    let mut conditions = status
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    conditions
        .push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": time(now)}));
    set_path(
        &mut status,
        &["status", "conditions"],
        Value::Array(conditions),
    );
    write(&mut state.kube, pods(), status, Part::Status);
    let message = format!(
        "Successfully assigned {}/{} to {node}",
        namespace(pod),
        name(pod)
    );
    record(
        &mut state.kube,
        &Involved::pod(pod),
        "Normal",
        "Scheduled",
        &message,
        "default-scheduler",
        None,
        now,
    );
}
