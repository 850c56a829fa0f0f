//! `meta.k8s.io/v1` Table output, as `kubectl get` asks for it: the columns and cells the real
//! API server's printers produce (priority 1 columns are the ones `-o wide` adds).

use std::borrow::Borrow;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::convert;
use super::resource::Resource;
use super::store::str_at;

/// What a Table row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// The whole object.
    Object,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// Nothing.
    None,
}

impl Include {
    /// The `includeObject` query value.
    #[must_use]
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Object") => Self::Object,
            Some("None") => Self::None,
            _ => Self::Metadata,
        }
    }
}

/// A Table of `objects` (each in the form `resource` serves), with the list's `metadata`.
#[must_use]
pub fn table(
    resource: &Resource,
    objects: &[impl Borrow<Value>],
    metadata: Value,
    include: Include,
    api_version: &str,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let object = object.borrow();
            let mut row = json!({"cells": cells(resource, object, now)});
            match include {
                Include::Object => row["object"] = object.clone(),
                Include::Metadata => row["object"] = partial_metadata(object, api_version),
                Include::None => {}
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": columns(resource),
        "rows": rows,
    })
}

/// The object's metadata as a `PartialObjectMetadata`.
#[must_use]
pub fn partial_metadata(object: &Value, api_version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn column(name: &str, kind: &str, priority: u8, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

const NAME: &str = "Name must be unique within a namespace.";
const AGE: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";

fn columns(resource: &Resource) -> Vec<Value> {
    let s =
        |name: &str, priority: u8, description: &str| column(name, "string", priority, description);
    let name = column("Name", "string", 0, NAME);
    let age = s("Age", 0, AGE);
    match resource.storage {
        "nodes" => vec![
            name,
            s("Status", 0, "The status of the node"),
            s("Roles", 0, "The roles of the node"),
            age,
            s("Version", 0, "Kubelet Version reported by the node."),
            s("Internal-IP", 1, "List of addresses reachable to the node."),
            s("External-IP", 1, "List of addresses reachable to the node."),
            s(
                "OS-Image",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            s(
                "Kernel-Version",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            s(
                "Container-Runtime",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "pods" => vec![
            name,
            s(
                "Ready",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            s(
                "Status",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            s(
                "Restarts",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age,
            s(
                "IP",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            s(
                "Node",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            s(
                "Nominated Node",
                1,
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            s(
                "Readiness Gates",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "persistentvolumes" => vec![
            name,
            s(
                "Capacity",
                0,
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            s(
                "Access Modes",
                0,
                "accessModes contains all ways the volume can be mounted.",
            ),
            s(
                "Reclaim Policy",
                0,
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            s(
                "Status",
                0,
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            s(
                "Claim",
                0,
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            s(
                "StorageClass",
                0,
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            s(
                "VolumeAttributesClass",
                0,
                "Name of VolumeAttributesClass to which this persistent volume belongs.",
            ),
            s(
                "Reason",
                0,
                "reason is a brief CamelCase string that describes any failure.",
            ),
            age,
            s(
                "VolumeMode",
                1,
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        "persistentvolumeclaims" => vec![
            name,
            s(
                "Status",
                0,
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            s(
                "Volume",
                0,
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            s(
                "Capacity",
                0,
                "capacity represents the actual resources of the underlying volume.",
            ),
            s(
                "Access Modes",
                0,
                "accessModes contains the desired access modes the volume should have.",
            ),
            s(
                "StorageClass",
                0,
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            s(
                "VolumeAttributesClass",
                0,
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            age,
            s(
                "VolumeMode",
                1,
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        "volumeattachments" => vec![
            name,
            s(
                "Attacher",
                0,
                "attacher indicates the name of the volume driver that MUST handle this request.",
            ),
            s("PV", 0, "Name of the persistent volume to attach."),
            s(
                "Node",
                0,
                "nodeName represents the node that the volume should be attached to.",
            ),
            column(
                "Attached",
                "boolean",
                0,
                "attached indicates the volume is successfully attached.",
            ),
            age,
        ],
        "events" => vec![
            s("Last Seen", 0, "The last time the event was seen"),
            s(
                "Type",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            s(
                "Reason",
                0,
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            s("Object", 0, "The object that this event is about."),
            s(
                "Subobject",
                1,
                "The subobject (field path) that this event is about.",
            ),
            s("Source", 1, "The component reporting this event."),
            s(
                "Message",
                0,
                "A human-readable description of the status of this operation.",
            ),
            s(
                "First Seen",
                1,
                "The time at which the event was first recorded.",
            ),
            column(
                "Count",
                "integer",
                1,
                "The number of times this event has occurred.",
            ),
            s("Name", 1, NAME),
        ],
        "deployments" => vec![
            name,
            s("Ready", 0, "Number of the pod with ready state"),
            column(
                "Up-to-date",
                "integer",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            column(
                "Available",
                "integer",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age,
            s("Containers", 1, "Names of each container in the template."),
            s(
                "Images",
                1,
                "Images referenced by each container in the template.",
            ),
            s(
                "Selector",
                1,
                "Label selector for pods. Existing pods that match this selector will be part of this deployment.",
            ),
        ],
        "namespaces" => vec![name, s("Status", 0, "The status of the namespace"), age],
        "serviceaccounts" => vec![
            name,
            s(
                "Secrets",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age,
        ],
        "secrets" => vec![
            name,
            s(
                "Type",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            s(
                "Data",
                0,
                "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
            ),
            age,
        ],
        "configmaps" => vec![
            name,
            s("Data", 0, "Data contains the configuration data."),
            age,
        ],
        "services" => vec![
            name,
            s("Type", 0, "type determines how the Service is exposed."),
            s(
                "Cluster-IP",
                0,
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            s(
                "External-IP",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            s(
                "Port(s)",
                0,
                "The list of ports that are exposed by this service.",
            ),
            age,
            s(
                "Selector",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "poddisruptionbudgets" => vec![
            name,
            s(
                "Min Available",
                0,
                "The minimum number of pods that must be available.",
            ),
            s(
                "Max Unavailable",
                0,
                "The maximum number of pods that may be unavailable.",
            ),
            column(
                "Allowed Disruptions",
                "integer",
                0,
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age,
        ],
        // Roles have no printer of their own: the API server's default table convertor.
        "clusterroles" | "roles" => vec![name, column("Created At", "date", 0, AGE)],
        "clusterrolebindings" | "rolebindings" => vec![
            name,
            s(
                "Role",
                0,
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            age,
            s("Users", 1, "Users in the roleBinding"),
            s("Groups", 1, "Groups in the roleBinding"),
            s("ServiceAccounts", 1, "ServiceAccounts in the roleBinding"),
        ],
        "leases" => vec![name, s("Holder", 0, "The holder of the lease."), age],
        "csinodes" => vec![
            name,
            column(
                "Drivers",
                "integer",
                0,
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            age,
        ],
        _ => vec![name, age],
    }
}

fn text<'a>(object: &'a Value, path: &[&str]) -> &'a str {
    str_at(object, path).unwrap_or_default()
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_owned()
    } else {
        value.to_owned()
    }
}

fn age(object: &Value, path: &[&str], now: Timestamp) -> String {
    match str_at(object, path).and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(at) => human_duration(now.duration_since(at).as_secs()),
        None => "<unknown>".to_owned(),
    }
}

fn cells(resource: &Resource, object: &Value, now: Timestamp) -> Vec<Value> {
    let name = text(object, &["metadata", "name"]);
    let created = age(object, &["metadata", "creationTimestamp"], now);
    match resource.storage {
        "nodes" => node_cells(object, name, created),
        "pods" => pod_cells(object, name, created),
        "persistentvolumes" => {
            let claim = match (
                str_at(object, &["spec", "claimRef", "namespace"]),
                str_at(object, &["spec", "claimRef", "name"]),
            ) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                _ => String::new(),
            };
            vec![
                name.into(),
                text(object, &["spec", "capacity", "storage"]).into(),
                access_modes(object.pointer("/spec/accessModes")).into(),
                text(object, &["spec", "persistentVolumeReclaimPolicy"]).into(),
                text(object, &["status", "phase"]).into(),
                claim.into(),
                text(object, &["spec", "storageClassName"]).into(),
                unset(text(object, &["spec", "volumeAttributesClassName"])).into(),
                text(object, &["status", "reason"]).into(),
                created.into(),
                or_none(text(object, &["spec", "volumeMode"])).into(),
            ]
        }
        "persistentvolumeclaims" => vec![
            name.into(),
            text(object, &["status", "phase"]).into(),
            text(object, &["spec", "volumeName"]).into(),
            text(object, &["status", "capacity", "storage"]).into(),
            access_modes(object.pointer("/status/accessModes")).into(),
            text(object, &["spec", "storageClassName"]).into(),
            unset(text(object, &["spec", "volumeAttributesClassName"])).into(),
            created.into(),
            or_none(text(object, &["spec", "volumeMode"])).into(),
        ],
        "volumeattachments" => vec![
            name.into(),
            text(object, &["spec", "attacher"]).into(),
            text(object, &["spec", "source", "persistentVolumeName"]).into(),
            text(object, &["spec", "nodeName"]).into(),
            object
                .pointer("/status/attached")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            created.into(),
        ],
        "events" => event_cells(&convert::to_storage(resource, object.clone()), now),
        "deployments" => deployment_cells(object, name, created),
        "namespaces" => vec![
            name.into(),
            text(object, &["status", "phase"]).into(),
            created.into(),
        ],
        "leases" => vec![
            name.into(),
            text(object, &["spec", "holderIdentity"]).into(),
            created.into(),
        ],
        "serviceaccounts" => vec![
            name.into(),
            count(object, &["secrets"]).into(),
            created.into(),
        ],
        "secrets" => vec![
            name.into(),
            text(object, &["type"]).into(),
            count(object, &["data"]).into(),
            created.into(),
        ],
        "configmaps" => vec![
            name.into(),
            (count(object, &["data"]) + count(object, &["binaryData"])).into(),
            created.into(),
        ],
        "services" => service_cells(object, name, created),
        "poddisruptionbudgets" => {
            let bound = |field: &str| match object.pointer(&format!("/spec/{field}")) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Number(number)) => number.to_string(),
                _ => "N/A".to_owned(),
            };
            vec![
                name.into(),
                bound("minAvailable").into(),
                bound("maxUnavailable").into(),
                object
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .into(),
                created.into(),
            ]
        }
        "clusterroles" | "roles" => vec![
            name.into(),
            text(object, &["metadata", "creationTimestamp"]).into(),
        ],
        "clusterrolebindings" | "rolebindings" => binding_cells(object, name, created),
        "csinodes" => vec![
            name.into(),
            object
                .pointer("/spec/drivers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .into(),
            created.into(),
        ],
        _ => vec![name.into(), created.into()],
    }
}

fn deployment_cells(object: &Value, name: &str, created: String) -> Vec<Value> {
    let count = |path: &str| object.pointer(path).and_then(Value::as_i64).unwrap_or(0);
    let containers: Vec<&Value> = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|list| list.iter().collect())
        .unwrap_or_default();
    let each = |key: &str| {
        containers
            .iter()
            .map(|c| text(c, &[key]))
            .collect::<Vec<_>>()
            .join(",")
    };
    let selector: Vec<String> = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name.into(),
        format!(
            "{}/{}",
            count("/status/readyReplicas"),
            object
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )
        .into(),
        count("/status/updatedReplicas").into(),
        count("/status/availableReplicas").into(),
        created.into(),
        each("name").into(),
        each("image").into(),
        selector.join(",").into(),
    ]
}

/// How many entries a list or map has (0 when absent).
fn count(object: &Value, path: &[&str]) -> usize {
    let mut value = object;
    for part in path {
        match value.get(part) {
            Some(next) => value = next,
            None => return 0,
        }
    }
    match value {
        Value::Array(items) => items.len(),
        Value::Object(fields) => fields.len(),
        _ => 0,
    }
}

fn service_cells(object: &Value, name: &str, created: String) -> Vec<Value> {
    let list = |path: &str| -> Vec<&Value> {
        object
            .pointer(path)
            .and_then(Value::as_array)
            .map(|items| items.iter().collect())
            .unwrap_or_default()
    };
    let cluster_ip = list("/spec/clusterIPs")
        .first()
        .and_then(|ip| ip.as_str())
        .unwrap_or("<none>")
        .to_owned();
    let external: Vec<&str> = list("/spec/externalIPs")
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    let ports: Vec<String> = list("/spec/ports")
        .into_iter()
        .map(|port| {
            let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = str_at(port, &["protocol"]).unwrap_or("TCP");
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port != 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    let selector: Vec<String> = object
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name.into(),
        text(object, &["spec", "type"]).into(),
        cluster_ip.into(),
        or_none(&external.join(",")).into(),
        or_none(&ports.join(",")).into(),
        created.into(),
        or_none(&selector.join(",")).into(),
    ]
}

/// A binding's role and subjects, as `rbac.SubjectsStrings` groups them (service accounts as
/// `namespace/name`).
fn binding_cells(object: &Value, name: &str, created: String) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(object, &["roleRef", "kind"]),
        text(object, &["roleRef", "name"])
    );
    let subjects: Vec<&Value> = object
        .get("subjects")
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let of_kind = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| text(s, &["kind"]) == kind)
            .map(|s| {
                if kind == "ServiceAccount" {
                    format!("{}/{}", text(s, &["namespace"]), text(s, &["name"]))
                } else {
                    text(s, &["name"]).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name.into(),
        role.into(),
        created.into(),
        of_kind("User").into(),
        of_kind("Group").into(),
        of_kind("ServiceAccount").into(),
    ]
}

fn unset(value: &str) -> &str {
    if value.is_empty() { "<unset>" } else { value }
}

fn access_modes(modes: Option<&Value>) -> String {
    modes
        .and_then(Value::as_array)
        .map(|modes| {
            modes
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn node_cells(object: &Value, name: &str, created: String) -> Vec<Value> {
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut status: Vec<&str> = Vec::new();
    if let Some(ready) = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    {
        status.push(
            if ready.get("status").and_then(Value::as_str) == Some("True") {
                "Ready"
            } else {
                "NotReady"
            },
        );
    } else {
        status.push("Unknown");
    }
    if object
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        == Some(true)
    {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_owned())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_owned)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let address = |kind: &str| {
        object
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| x.get("type").and_then(Value::as_str) == Some(kind))
            })
            .and_then(|x| x.get("address"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    vec![
        name.into(),
        status.join(",").into(),
        or_none(&roles.join(",")).into(),
        created.into(),
        text(object, &["status", "nodeInfo", "kubeletVersion"]).into(),
        or_none(&address("InternalIP")).into(),
        or_none(&address("ExternalIP")).into(),
        or_none(text(object, &["status", "nodeInfo", "osImage"])).into(),
        or_none(text(object, &["status", "nodeInfo", "kernelVersion"])).into(),
        or_none(text(
            object,
            &["status", "nodeInfo", "containerRuntimeVersion"],
        ))
        .into(),
    ]
}

fn pod_cells(object: &Value, name: &str, created: String) -> Vec<Value> {
    let containers = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum();
    let mut reason = str_at(object, &["status", "reason"])
        .or_else(|| str_at(object, &["status", "phase"]))
        .unwrap_or_default()
        .to_owned();
    for status in statuses.iter().rev() {
        if let Some(waiting) =
            str_at(status, &["state", "waiting", "reason"]).filter(|r| !r.is_empty())
        {
            reason = waiting.to_owned();
        } else if let Some(terminated) =
            str_at(status, &["state", "terminated", "reason"]).filter(|r| !r.is_empty())
        {
            reason = terminated.to_owned();
        }
    }
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if str_at(object, &["status", "reason"]) == Some("NodeLost") {
            "Unknown".to_owned()
        } else {
            "Terminating".to_owned()
        };
    }
    vec![
        name.into(),
        format!("{ready}/{containers}").into(),
        reason.into(),
        restarts.to_string().into(),
        created.into(),
        or_none(text(object, &["status", "podIP"])).into(),
        or_none(text(object, &["spec", "nodeName"])).into(),
        or_none(text(object, &["status", "nominatedNodeName"])).into(),
        "<none>".into(),
    ]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = if str_at(event, &["firstTimestamp"]).is_some() {
        age(event, &["firstTimestamp"], now)
    } else {
        age(event, &["eventTime"], now)
    };
    let mut last = if str_at(event, &["lastTimestamp"]).is_some() {
        age(event, &["lastTimestamp"], now)
    } else {
        first.clone()
    };
    let mut count = event.get("count").and_then(Value::as_i64).unwrap_or(0);
    if event.get("series").is_some_and(Value::is_object) {
        last = age(event, &["series", "lastObservedTime"], now);
        count = event
            .pointer("/series/count")
            .and_then(Value::as_i64)
            .unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(event, &["involvedObject", "kind"]).to_lowercase();
    let target = match str_at(event, &["involvedObject", "name"]).filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let component = str_at(event, &["source", "component"])
        .filter(|c| !c.is_empty())
        .or_else(|| str_at(event, &["reportingComponent"]))
        .unwrap_or_default();
    let host = text(event, &["source", "host"]);
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last.into(),
        text(event, &["type"]).into(),
        text(event, &["reason"]).into(),
        target.into(),
        text(event, &["involvedObject", "fieldPath"]).into(),
        source.into(),
        text(event, &["message"]).trim().into(),
        first.into(),
        count.into(),
        text(event, &["metadata", "name"]).into(),
    ]
}

/// A duration as kubectl prints ages (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
#[must_use]
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn ages_print_as_kubectl_prints_them() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(162), "2m42s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(9 * 3600 + 60), "9h");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
    }
}
