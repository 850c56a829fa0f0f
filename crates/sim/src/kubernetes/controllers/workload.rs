//! The ReplicaSet and StatefulSet controllers, for the workloads the scenario's pods name as
//! their owner.
//!
//! A ReplicaSet keeps `replicas` active (not terminating, not finished) pods: its replicas are
//! the scenario's non-terminating pods of that owner, at least one. A pod marked for deletion no
//! longer counts, so its replacement is created at once (`<rs>-<5 random characters>`). A
//! StatefulSet recreates each of its pods under the same name, but only once the old object is
//! gone. New pods copy the template (the first scenario pod of the owner): labels, claims,
//! tolerations, owner, with a fresh name or uid, unscheduled and `Pending`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Involved, pods, record, terminal, terminating};
use crate::kubernetes::seed::uid;
use crate::kubernetes::store::{Key, Store};
use crate::scenario::Scenario;

/// One workload the scenario's pods belong to.
#[derive(Debug)]
struct Workload {
    kind: &'static str,
    namespace: String,
    name: String,
    /// ReplicaSet: how many active pods it keeps.
    replicas: usize,
    /// StatefulSet: the names of its pods.
    members: Vec<String>,
    /// A pod of the scenario to copy, and its template once captured from the store.
    template_pod: String,
    template: Option<Value>,
}

/// The workloads of a scenario.
#[derive(Debug, Default)]
pub(super) struct Workloads {
    list: Vec<Workload>,
}

impl Workloads {
    pub(super) fn new(scenario: &Scenario) -> Self {
        let mut by_owner: BTreeMap<(String, &'static str, String), Workload> = BTreeMap::new();
        for pod in &scenario.kubernetes.pods {
            let Some(owner) = &pod.owner else { continue };
            let kind = match owner.kind.as_str() {
                "ReplicaSet" => "ReplicaSet",
                "StatefulSet" => "StatefulSet",
                _ => continue,
            };
            let workload = by_owner
                .entry((pod.namespace.clone(), kind, owner.name.clone()))
                .or_insert_with(|| Workload {
                    kind,
                    namespace: pod.namespace.clone(),
                    name: owner.name.clone(),
                    replicas: 0,
                    members: Vec::new(),
                    template_pod: pod.name.clone(),
                    template: None,
                });
            if !pod.terminating {
                workload.replicas += 1;
            }
            workload.members.push(pod.name.clone());
        }
        let mut list: Vec<Workload> = by_owner.into_values().collect();
        for workload in &mut list {
            workload.replicas = workload.replicas.max(1);
        }
        Self { list }
    }

    /// Takes each workload's pod template from its seeded pod.
    pub(super) fn capture(&mut self, store: &Store) {
        for workload in &mut self.list {
            let key = Key::new("pods", Some(&workload.namespace), &workload.template_pod);
            let Some(pod) = store.object(&key) else {
                continue;
            };
            let mut meta = json!({});
            for field in ["labels", "ownerReferences", "generateName"] {
                if let Some(value) = pod.pointer(&format!("/metadata/{field}")) {
                    meta[field] = value.clone();
                }
            }
            let mut spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("nodeName");
            }
            workload.template = Some(json!({"metadata": meta, "spec": spec}));
        }
    }

    /// Each ReplicaSet creates pods while it has fewer active ones than its replicas.
    pub(super) fn replicasets(&self, store: &mut Store, now: Timestamp) {
        if !self.list.iter().any(|w| w.kind == "ReplicaSet") {
            return;
        }
        // Active pods per controlling owner, in one walk.
        let mut active_of: BTreeMap<String, usize> = BTreeMap::new();
        for (_, pod) in store.objects_of("pods", None) {
            if terminating(pod) || terminal(pod) {
                continue;
            }
            if let Some(owner) = controller_uid(pod) {
                *active_of.entry(owner.to_owned()).or_default() += 1;
            }
        }
        for workload in self.list.iter().filter(|w| w.kind == "ReplicaSet") {
            let owner_uid = uid("ReplicaSet", &workload.namespace, &workload.name);
            let active = active_of.get(&owner_uid).copied().unwrap_or_default();
            for _ in active..workload.replicas {
                let Some(pod) = new_pod(workload, None) else {
                    break;
                };
                let Ok(created) = store.create(pods(), Some(&workload.namespace), pod, now) else {
                    break;
                };
                let message = format!("Created pod: {}", super::name(&created));
                record(
                    store,
                    &Involved::owner("ReplicaSet", &workload.namespace, &workload.name),
                    "Normal",
                    "SuccessfulCreate",
                    &message,
                    "replicaset-controller",
                    None,
                    now,
                );
            }
        }
    }

    /// Each StatefulSet creates its pods that do not exist, under their own names.
    pub(super) fn statefulsets(&self, store: &mut Store, now: Timestamp) {
        for workload in self.list.iter().filter(|w| w.kind == "StatefulSet") {
            for member in &workload.members {
                let key = Key::new("pods", Some(&workload.namespace), member);
                if store.object(&key).is_some() {
                    continue;
                }
                let Some(pod) = new_pod(workload, Some(member)) else {
                    break;
                };
                if store
                    .create(pods(), Some(&workload.namespace), pod, now)
                    .is_err()
                {
                    continue;
                }
                let message = format!(
                    "create Pod {member} in StatefulSet {} successful",
                    workload.name
                );
                record(
                    store,
                    &Involved::owner("StatefulSet", &workload.namespace, &workload.name),
                    "Normal",
                    "SuccessfulCreate",
                    &message,
                    "statefulset-controller",
                    None,
                    now,
                );
            }
        }
    }
}

/// The uid of the pod's controlling owner.
fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid").and_then(Value::as_str))
}

/// A new pod from the workload's template: named, or generated from `generateName`.
fn new_pod(workload: &Workload, name: Option<&str>) -> Option<Value> {
    let template = workload.template.as_ref()?;
    let mut meta = template["metadata"].clone();
    meta["namespace"] = workload.namespace.clone().into();
    match name {
        Some(name) => {
            meta["name"] = name.into();
            if let Some(m) = meta.as_object_mut() {
                m.remove("generateName");
            }
        }
        None => {
            meta["generateName"] = format!("{}-", workload.name).into();
        }
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template["spec"].clone(),
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }))
}
