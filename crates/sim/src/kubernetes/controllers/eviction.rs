//! The node lifecycle controller's taints, the taint eviction controller and the pod garbage
//! collector.
//!
//! - A node whose Ready condition is `Unknown` or `False` carries `node.kubernetes.io/unreachable`
//!   or `not-ready` (NoSchedule and NoExecute; timeline changes set them in
//!   `Store::set_node_ready`, this adds them to seeded nodes that lack them, as added when the
//!   condition changed).
//! - Taint eviction (`pkg/controller/tainteviction`): a pod on a node with NoExecute taints it
//!   does not tolerate is deleted at once; one it tolerates for `tolerationSeconds` is deleted
//!   that long after the taint was added (300 s by the DefaultTolerationSeconds admission). The
//!   deletion is graceful, so on a dead node the pod stays Terminating. Event
//!   `TaintManagerEviction`.
//! - Pod GC (`pkg/controller/podgc`, every 20 s): a Terminating pod on a node that is not Ready
//!   and has the `node.kubernetes.io/out-of-service` taint is marked Failed and force-deleted
//!   (`gcTerminating`); a pod bound to a node that does not exist is, after 40 s of quarantine
//!   (`gcOrphaned`).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{
    Involved, has_taint, name, namespace, node_name, nodes, nodes_where, object_uid, pods,
    pods_where, ready, ready_status, record, same_pod, taints, terminal, terminating,
    toleration_for, write,
};
use crate::kubernetes::store::{DeleteOptions, Key, Part, Store, set_path, str_at, time};

/// The taint the product (or an operator) adds to a node that is known to be down.
pub(super) const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Pod GC's `gcCheckPeriod`.
const GC_PERIOD_MS: u64 = 20_000;
/// Pod GC's `quarantineTime` for pods of a node that does not exist.
const QUARANTINE_MS: u64 = 40_000;

/// Adds the lifecycle taints to nodes that are not Ready and lack them.
pub(super) fn taint_nodes(store: &mut Store, now: Timestamp) {
    let lacking = nodes_where(store, |node| match ready_status(node) {
        "True" => false,
        "False" => !has_taint(node, "node.kubernetes.io/not-ready"),
        _ => !has_taint(node, "node.kubernetes.io/unreachable"),
    });
    for mut node in lacking {
        let key = match ready_status(&node) {
            "True" => continue,
            "False" => "node.kubernetes.io/not-ready",
            _ => "node.kubernetes.io/unreachable",
        };
        if has_taint(&node, key) {
            continue;
        }
        let since = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .and_then(|c| str_at(c, &["lastTransitionTime"]))
            .map_or_else(|| time(now), str::to_owned);
        let mut list = taints(&node);
        list.push(json!({"key": key, "effect": "NoSchedule"}));
        list.push(json!({"key": key, "effect": "NoExecute", "timeAdded": since}));
        set_path(&mut node, &["spec", "taints"], Value::Array(list));
        write(store, nodes(), node, Part::Main);
    }
}

/// When a pod must go because of the node's NoExecute taints: `Some(now)` for an untolerated
/// one, the earliest `timeAdded + tolerationSeconds` otherwise, `None` when every taint is
/// tolerated for ever.
fn eviction_time(pod: &Value, node: &Value, now: Timestamp) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints(node) {
        if taint.get("effect").and_then(Value::as_str) != Some("NoExecute") {
            continue;
        }
        let at = match toleration_for(pod, &taint) {
            None => now,
            Some(toleration) => match toleration.get("tolerationSeconds").and_then(Value::as_i64) {
                None => continue,
                Some(seconds) => {
                    let added = str_at(&taint, &["timeAdded"])
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .unwrap_or(now);
                    added
                        .checked_add(SignedDuration::from_secs(seconds.max(0)))
                        .unwrap_or(now)
                }
            },
        };
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

/// Deletes the pods whose time on a NoExecute-tainted node is up; returns when the next is due.
pub(super) fn evict(store: &mut Store, now: Timestamp, now_ms: u64) -> u64 {
    let mut due = u64::MAX;
    let nodes: BTreeMap<String, Value> = nodes_where(store, |n| !taints(n).is_empty())
        .into_iter()
        .map(|n| (name(&n).to_owned(), n))
        .collect();
    if nodes.is_empty() {
        return due;
    }
    let exposed = pods_where(store, |pod| {
        !terminating(pod) && !terminal(pod) && node_name(pod).is_some_and(|n| nodes.contains_key(n))
    });
    for pod in exposed {
        let Some(node) = node_name(&pod).and_then(|n| nodes.get(n)) else {
            continue;
        };
        let Some(at) = eviction_time(&pod, node, now) else {
            continue;
        };
        if at > now {
            let wait = now.duration_until(at).as_millis();
            due = due.min(now_ms.saturating_add(u64::try_from(wait).unwrap_or(u64::MAX)));
            continue;
        }
        let mut marked = pod.clone();
        let mut conditions = marked
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("DisruptionTarget"));
        conditions.push(json!({"type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": time(now)}));
        set_path(
            &mut marked,
            &["status", "conditions"],
            Value::Array(conditions),
        );
        write(store, pods(), marked, Part::Status);
        let _ = store.delete(
            pods(),
            Some(namespace(&pod)),
            name(&pod),
            &DeleteOptions::default(),
            now,
        );
        let message = format!(
            "Marking for deletion Pod {}/{}",
            namespace(&pod),
            name(&pod)
        );
        record(
            store,
            &Involved::pod(&pod),
            "Normal",
            "TaintManagerEviction",
            &message,
            "taint-eviction-controller",
            None,
            now,
        );
    }
    due
}

/// What pod GC remembers: when it last ran, and since when each pod has had no node.
#[derive(Debug, Default)]
pub(super) struct PodGc {
    next_ms: u64,
    orphaned_since: BTreeMap<String, u64>,
}

impl PodGc {
    /// One garbage collection when its period is up; returns when the next is due.
    pub(super) fn collect(&mut self, store: &mut Store, now: Timestamp, now_ms: u64) -> u64 {
        if now_ms < self.next_ms {
            return self.next_ms;
        }
        self.next_ms = now_ms + GC_PERIOD_MS;
        let mut orphaned = BTreeMap::new();
        let candidates = pods_where(store, |pod| {
            node_name(pod).is_some_and(|node| {
                terminating(pod) || store.object(&Key::new("nodes", None, node)).is_none()
            })
        });
        for pod in candidates {
            let Some(node_name) = node_name(&pod) else {
                continue;
            };
            let node = store.object(&Key::new("nodes", None, node_name)).cloned();
            let collect = match &node {
                None => {
                    let since = self
                        .orphaned_since
                        .get(object_uid(&pod))
                        .copied()
                        .unwrap_or(now_ms);
                    orphaned.insert(object_uid(&pod).to_owned(), since);
                    now_ms >= since + QUARANTINE_MS
                }
                Some(node) => {
                    terminating(&pod)
                        && !terminal(&pod)
                        && !ready(node)
                        && has_taint(node, OUT_OF_SERVICE)
                }
            };
            if collect {
                force_delete(store, &pod, now);
            }
        }
        self.orphaned_since = orphaned;
        self.next_ms
    }
}

/// `markFailedAndDeletePod`: the phase `Failed`, then a deletion with grace 0.
fn force_delete(store: &mut Store, pod: &Value, now: Timestamp) {
    if let Some(mut failed) = same_pod(store, pod).cloned() {
        set_path(&mut failed, &["status", "phase"], "Failed".into());
        write(store, pods(), failed, Part::Status);
    }
    let options = DeleteOptions {
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    let _ = store.delete(pods(), Some(namespace(pod)), name(pod), &options, now);
}
