//! Builds the objects a scenario describes, shaped as a real cluster running the Cinder CSI
//! driver shows them (the samples in `fixtures/kubernetes`).

use std::collections::{BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::store::{Key, Store, micro_time, str_at, time};
use crate::scenario::{self, Readiness, Scenario};

/// The CSI driver of OpenStack Cinder; in-tree Cinder PVs migrate to it.
pub const CINDER_DRIVER: &str = "cinder.csi.openstack.org";
/// The CSI driver of LINSTOR (Piraeus); its node id is the node name.
pub const LINSTOR_DRIVER: &str = "linstor.csi.linbit.com";
/// The storage class seeded PVs and PVCs name.
const STORAGE_CLASS: &str = "csi-cinder-sc-delete";
/// The kubelet version nodes report.
const KUBELET_VERSION: &str = "v1.33.4";
/// How long before the Ready transition an unreachable node last sent a heartbeat.
const HEARTBEAT_GRACE: SignedDuration = SignedDuration::from_secs(40);
/// How long after a node became unreachable its pods were evicted (the default toleration).
const EVICTION_DELAY: SignedDuration = SignedDuration::from_secs(300);

/// A stable uid for a seeded object, so tests and owner references can name it.
#[must_use]
pub fn uid(kind: &str, namespace: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{kind}/{namespace}/{name}").as_bytes(),
    )
    .to_string()
}

/// The name the attach/detach controller gives the VolumeAttachment of a volume handle on a
/// node: `csi-` and the SHA-256 of handle, driver and node name, in hex.
#[must_use]
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{volume_handle}{driver}{node}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("csi-{hex}")
}

/// The finalizer the CSI external-attacher of `driver` puts on its VolumeAttachments.
#[must_use]
pub fn attacher_finalizer(driver: &str) -> String {
    format!("external-attacher/{}", driver.replace('.', "-"))
}

/// The server id in an OpenStack providerID (`openstack:///ID`, `openstack://REGION/ID`).
#[must_use]
pub fn provider_server(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("openstack://")?;
    let id = rest.rsplit('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// A node's conditions for a Ready status that changed at `transition`.
#[must_use]
pub fn node_conditions(status: Readiness, transition: Timestamp, now: Timestamp) -> Vec<Value> {
    let unknown = status == Readiness::Unknown;
    let heartbeat = if unknown {
        time(
            transition
                .checked_sub(HEARTBEAT_GRACE)
                .unwrap_or(transition),
        )
    } else {
        time(now)
    };
    let since = time(transition);
    let pressure = |kind: &str, reason: &str, message: &str| {
        if unknown {
            json!({"type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
                   "message": "Kubelet stopped posting node status.",
                   "lastHeartbeatTime": heartbeat, "lastTransitionTime": since})
        } else {
            json!({"type": kind, "status": "False", "reason": reason, "message": message,
                   "lastHeartbeatTime": heartbeat, "lastTransitionTime": since})
        }
    };
    let (reason, message) = match status {
        Readiness::True => ("KubeletReady", "kubelet is posting ready status"),
        Readiness::False => (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false",
        ),
        Readiness::Unknown => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    vec![
        pressure(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        pressure(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        pressure(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        json!({"type": "Ready", "status": status.as_str(), "reason": reason, "message": message,
               "lastHeartbeatTime": heartbeat, "lastTransitionTime": since}),
    ]
}

fn ago(now: Timestamp, duration: std::time::Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(now)
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

/// What seeding one scenario needs to remember across kinds.
struct Seeder<'a> {
    scenario: &'a Scenario,
    now: Timestamp,
    /// When the cluster was created: before every node's last Ready transition.
    start: Timestamp,
    store: Store,
    index: Index<'a>,
}

/// The scenario's entries by the names other entries refer to them with.
struct Index<'a> {
    /// Nodes with their position.
    nodes: HashMap<&'a str, (usize, &'a scenario::Node)>,
    pvs: HashMap<&'a str, &'a scenario::PersistentVolume>,
    /// The id of the first server of each name.
    servers: HashMap<&'a str, &'a str>,
    volume_sizes: HashMap<&'a str, u64>,
    /// The attached VolumeAttachments of each node.
    attached: HashMap<&'a str, Vec<&'a scenario::KubeVolumeAttachment>>,
}

impl<'a> Index<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let k8s = &scenario.kubernetes;
        let os = &scenario.openstack;
        let mut servers = HashMap::new();
        for server in &os.servers {
            servers
                .entry(server.name.as_str())
                .or_insert(server.id.as_str());
        }
        let mut attached: HashMap<&str, Vec<_>> = HashMap::new();
        for va in k8s.volume_attachments.iter().filter(|va| va.attached) {
            attached.entry(va.node.value.as_str()).or_default().push(va);
        }
        Self {
            nodes: k8s
                .nodes
                .iter()
                .enumerate()
                .map(|(i, node)| (node.name.as_str(), (i, node)))
                .collect(),
            pvs: k8s
                .persistent_volumes
                .iter()
                .map(|pv| (pv.name.as_str(), pv))
                .collect(),
            servers,
            volume_sizes: os
                .volumes
                .iter()
                .map(|volume| (volume.id.as_str(), volume.size))
                .collect(),
            attached,
        }
    }

    fn node(&self, name: &str) -> Option<&'a scenario::Node> {
        self.nodes.get(name).map(|&(_, node)| node)
    }
}

impl Store {
    /// The objects a scenario describes (its `kubernetes` part; the `openstack` part gives
    /// volume sizes), with times relative to `now`.
    #[must_use]
    pub fn new(scenario: &Scenario, now: Timestamp) -> Self {
        let oldest = scenario
            .kubernetes
            .nodes
            .iter()
            .map(|n| n.ready_since)
            .max()
            .unwrap_or_default();
        let start = ago(now, oldest + std::time::Duration::from_secs(3600));
        let mut seeder = Seeder {
            scenario,
            now,
            start,
            store: Store::empty(),
            index: Index::new(scenario),
        };
        seeder.namespaces();
        seeder.bootstrap_policy();
        seeder.nodes();
        seeder.volumes();
        seeder.pods();
        seeder.deployments();
        seeder.attachments();
        seeder.events();
        let mut store = seeder.store;
        store.forget_history();
        store
    }
}

impl Seeder<'_> {
    fn add(&mut self, storage: &'static str, namespace: Option<&str>, object: Value) {
        let name = str_at(&object, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned();
        self.store.put(Key::new(storage, namespace, &name), object);
    }

    fn meta(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        created: Timestamp,
    ) -> Value {
        let mut meta = json!({
            "name": name,
            "uid": uid(resource, namespace.unwrap_or_default(), name),
            "creationTimestamp": time(created),
        });
        if let (Some(ns), Some(m)) = (namespace, meta.as_object_mut()) {
            m.insert("namespace".into(), ns.into());
        }
        meta
    }

    fn namespaces(&mut self) {
        let k8s = &self.scenario.kubernetes;
        let mut names: BTreeSet<String> = ["default", "kube-system", "kube-node-lease"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.extend(k8s.pods.iter().map(|p| p.namespace.clone()));
        names.extend(k8s.deployments.iter().map(|d| d.namespace.clone()));
        names.extend(
            k8s.persistent_volumes
                .iter()
                .filter_map(|pv| pv.claim.as_ref())
                .filter_map(|c| scenario::split_ref(&c.value).map(|(ns, _)| ns.to_owned())),
        );
        for name in names {
            let mut meta = self.meta("Namespace", None, &name, self.start);
            meta["labels"] = json!({"kubernetes.io/metadata.name": name});
            self.add(
                "namespaces",
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
        }
    }

    /// The bootstrap ClusterRoles and their bindings, as every API server creates them.
    fn bootstrap_policy(&mut self) {
        for (storage, mut object) in super::rbac::bootstrap_policy() {
            let kind = str_at(&object, &["kind"]).unwrap_or_default().to_owned();
            let name = str_at(&object, &["metadata", "name"])
                .unwrap_or_default()
                .to_owned();
            if let Value::Object(meta) = self.meta(&kind, None, &name, self.start) {
                for (field, value) in meta {
                    object["metadata"][field] = value;
                }
            }
            self.add(storage, None, object);
        }
    }

    /// The server id of a scenario node: from its providerID, else the server with its name,
    /// else the server with its address (the CSI node plugin reads the id from the metadata
    /// service, whatever the names).
    /// Whether the scenario's LINSTOR cluster has a satellite of this name.
    fn linstor_node(&self, name: &str) -> bool {
        self.scenario
            .linstor
            .as_ref()
            .is_some_and(|l| l.nodes.iter().any(|n| n.name.eq_ignore_ascii_case(name)))
    }

    fn server_of(&self, node: &scenario::Node) -> Option<String> {
        node.provider_id
            .as_deref()
            .and_then(provider_server)
            .map(str::to_owned)
            .or_else(|| {
                self.index
                    .servers
                    .get(node.name.as_str())
                    .map(|&id| id.to_owned())
            })
            .or_else(|| {
                self.scenario
                    .openstack
                    .servers
                    .iter()
                    .find(|s| node.addresses.iter().any(|a| s.addresses.contains(a)))
                    .map(|s| s.id.clone())
            })
    }

    fn nodes(&mut self) {
        let now = self.now;
        for node in &self.scenario.kubernetes.nodes {
            let transition = ago(now, node.ready_since);
            let mut labels = json!({
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
            });
            for (key, value) in &node.labels {
                labels[key] = value.clone().into();
            }
            let server = self.server_of(node);
            let mut annotations = json!({
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            });
            if let Some(server) = &server {
                annotations["csi.volume.kubernetes.io/nodeid"] =
                    json!({ CINDER_DRIVER: server }).to_string().into();
            }
            for (key, value) in &node.annotations {
                annotations[key] = value.clone().into();
            }
            let mut meta = self.meta("Node", None, &node.name, self.start);
            meta["labels"] = labels;
            meta["annotations"] = annotations;
            let mut spec = json!({});
            if let Some(provider) = &node.provider_id {
                spec["providerID"] = provider.clone().into();
            }
            if !node.taints.is_empty() {
                let taints: Vec<Value> = node
                    .taints
                    .iter()
                    .map(|t| {
                        let mut taint = json!({"key": t.key, "effect": t.effect});
                        if let Some(value) = &t.value {
                            taint["value"] = value.clone().into();
                        }
                        if t.effect == "NoExecute" {
                            taint["timeAdded"] = time(transition).into();
                        }
                        taint
                    })
                    .collect();
                spec["taints"] = taints.into();
            }
            let mut addresses: Vec<Value> = node
                .addresses
                .iter()
                .map(|a| json!({"type": "InternalIP", "address": a}))
                .collect();
            addresses.push(json!({"type": "Hostname", "address": node.name}));
            let resources = json!({"cpu": "4", "ephemeral-storage": "41152812Ki",
                                   "memory": "8141812Ki", "pods": "110"});
            let machine = uid("machine", "", &node.name).replace('-', "");
            let object = json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": meta,
                "spec": spec,
                "status": {
                    "conditions": node_conditions(node.ready, transition, now),
                    "addresses": addresses,
                    "capacity": resources,
                    "allocatable": resources,
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": uid("boot", "", &node.name),
                        "containerRuntimeVersion": "containerd://1.7.27",
                        "kernelVersion": "6.8.0-60-generic",
                        "kubeProxyVersion": KUBELET_VERSION,
                        "kubeletVersion": KUBELET_VERSION,
                        "machineID": machine,
                        "operatingSystem": "linux",
                        "osImage": "Ubuntu 24.04.2 LTS",
                        "systemUUID": server.clone().unwrap_or_else(|| uid("system", "", &node.name)),
                    },
                    "volumesAttached": self.attached_volumes(&node.name),
                },
            });
            let mut object = object;
            let in_use = self.volumes_in_use(&node.name);
            if !in_use.is_empty() {
                object["status"]["volumesInUse"] = in_use.into();
            }
            self.add("nodes", None, object);

            let renewed = if node.ready == Readiness::Unknown {
                transition
                    .checked_sub(HEARTBEAT_GRACE)
                    .unwrap_or(transition)
            } else {
                now
            };
            let mut meta = self.meta("Lease", Some("kube-node-lease"), &node.name, self.start);
            meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                             "uid": uid("Node", "", &node.name)}]);
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40,
                         "renewTime": micro_time(renewed)},
            });
            self.add("leases", Some("kube-node-lease"), lease);

            let mut meta = self.meta("CSINode", None, &node.name, self.start);
            meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                             "uid": uid("Node", "", &node.name)}]);
            let mut drivers = vec![json!({
                "name": CINDER_DRIVER,
                "nodeID": server.unwrap_or_else(|| node.name.clone()),
                "topologyKeys": ["topology.cinder.csi.openstack.org/zone"],
                "allocatable": {"count": 256},
            })];
            if self.linstor_node(&node.name) {
                drivers.push(json!({
                    "name": LINSTOR_DRIVER,
                    "nodeID": node.name,
                    "topologyKeys": ["linbit.com/hostname"],
                }));
            }
            let csinode = json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSINode",
                "metadata": meta,
                "spec": {"drivers": drivers},
            });
            self.add("csinodes", None, csinode);
        }
    }

    fn attached_volumes(&self, node: &str) -> Vec<Value> {
        let attached = self.index.attached.get(node);
        attached
            .into_iter()
            .flatten()
            .filter_map(|va| self.index.pvs.get(va.pv.value.as_str()))
            .map(|pv| {
                let (driver, handle) = pv_source(pv);
                json!({"name": format!("kubernetes.io/csi/{driver}^{handle}"), "devicePath": ""})
            })
            .collect()
    }

    /// The attached volumes a pod on the node uses, which its kubelet reports as mounted (a
    /// dead kubelet's last report stands).
    fn volumes_in_use(&self, node: &str) -> Vec<Value> {
        let k8s = &self.scenario.kubernetes;
        let used: BTreeSet<&str> = k8s
            .pods
            .iter()
            .filter(|pod| pod.node.as_ref().is_some_and(|n| n.value == node))
            .flat_map(|pod| {
                pod.claims
                    .iter()
                    .map(move |claim| format!("{}/{}", pod.namespace, claim.value))
            })
            .filter_map(|claim| {
                k8s.persistent_volumes
                    .iter()
                    .find(|pv| pv.claim.as_ref().is_some_and(|c| c.value == claim))
                    .map(|pv| pv.name.as_str())
            })
            .collect();
        self.index
            .attached
            .get(node)
            .into_iter()
            .flatten()
            .filter(|va| used.contains(va.pv.value.as_str()))
            .filter_map(|va| self.index.pvs.get(va.pv.value.as_str()))
            .map(|pv| {
                let (driver, handle) = pv_source(pv);
                Value::from(format!("kubernetes.io/csi/{driver}^{handle}"))
            })
            .collect()
    }

    fn volumes(&mut self) {
        for pv in &self.scenario.kubernetes.persistent_volumes {
            let (driver, handle) = pv_source(pv);
            let size = pv
                .size
                .or_else(|| self.index.volume_sizes.get(handle).copied());
            let capacity = format!("{}Gi", size.unwrap_or(1));
            let claim = pv
                .claim
                .as_ref()
                .and_then(|c| scenario::split_ref(&c.value));
            let mut meta = self.meta("PersistentVolume", None, &pv.name, self.start);
            meta["finalizers"] = json!(["kubernetes.io/pv-protection"]);
            let mut spec = json!({
                "accessModes": pv.access_modes,
                "capacity": {"storage": capacity},
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
            });
            if pv.csi.is_some() {
                meta["annotations"] = json!({"pv.kubernetes.io/provisioned-by": driver});
                spec["csi"] = json!({"driver": driver, "volumeHandle": handle, "fsType": "ext4",
                    "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-8081-cinder.csi.openstack.org"}});
            } else {
                meta["annotations"] =
                    json!({"pv.kubernetes.io/provisioned-by": "kubernetes.io/cinder"});
                spec["cinder"] = json!({"volumeID": handle, "fsType": "ext4"});
            }
            let phase = if let Some((namespace, name)) = claim {
                spec["claimRef"] = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                    "name": name, "uid": uid("PersistentVolumeClaim", namespace, name),
                });
                "Bound"
            } else {
                "Available"
            };
            self.add(
                "persistentvolumes",
                None,
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec,
                       "status": {"phase": phase, "lastPhaseTransitionTime": time(self.start)}}),
            );
            if let Some((namespace, name)) = claim {
                let mut meta =
                    self.meta("PersistentVolumeClaim", Some(namespace), name, self.start);
                meta["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
                meta["annotations"] = json!({
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                    "volume.beta.kubernetes.io/storage-provisioner": driver,
                    "volume.kubernetes.io/storage-provisioner": driver,
                });
                let pvc = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": {"accessModes": pv.access_modes, "resources": {"requests": {"storage": capacity}},
                             "storageClassName": STORAGE_CLASS, "volumeMode": "Filesystem",
                             "volumeName": pv.name},
                    "status": {"phase": "Bound", "accessModes": pv.access_modes,
                               "capacity": {"storage": capacity}},
                });
                self.add("persistentvolumeclaims", Some(namespace), pvc);
            }
        }
    }

    fn pods(&mut self) {
        let k8s = &self.scenario.kubernetes;
        for (i, pod) in k8s.pods.iter().enumerate() {
            let node = pod.node.as_ref().map(|n| n.value.as_str());
            let scenario_node = node.and_then(|n| self.index.node(n));
            let waiting = pod.waiting_reason.is_some() || pod.phase == "Pending";
            let created = if waiting {
                self.now.checked_sub(minutes(7)).unwrap_or(self.now)
            } else {
                self.start.checked_add(minutes(30)).unwrap_or(self.start)
            };
            let mut meta = self.meta("Pod", Some(&pod.namespace), &pod.name, created);
            if !pod.labels.is_empty() {
                meta["labels"] = json!(pod.labels);
            }
            if let Some(owner) = &pod.owner {
                let api_version = match owner.kind.as_str() {
                    "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
                    "Job" => "batch/v1",
                    _ => "v1",
                };
                meta["ownerReferences"] = json!([{
                    "apiVersion": api_version, "kind": owner.kind, "name": owner.name,
                    "uid": uid(&owner.kind, &pod.namespace, &owner.name),
                    "controller": true, "blockOwnerDeletion": true,
                }]);
                if owner.kind == "ReplicaSet" {
                    meta["generateName"] = format!("{}-", owner.name).into();
                }
            }
            if pod.terminating {
                let since = match scenario_node {
                    Some(n) if n.ready != Readiness::True => ago(self.now, n.ready_since)
                        .checked_add(EVICTION_DELAY)
                        .unwrap_or(self.now)
                        .min(self.now),
                    _ => self.now.checked_sub(minutes(1)).unwrap_or(self.now),
                };
                meta["deletionTimestamp"] = time(since).into();
                meta["deletionGracePeriodSeconds"] = 30.into();
            }
            let host_ip = scenario_node.and_then(|n| n.addresses.first().cloned());
            let running = pod.phase == "Running" && pod.waiting_reason.is_none();
            let state = match &pod.waiting_reason {
                Some(reason) => json!({"waiting": {"reason": reason}}),
                None if running => json!({"running": {"startedAt": time(created)}}),
                None => json!({"waiting": {"reason": "ContainerCreating"}}),
            };
            let ready = if running { "True" } else { "False" };
            let mut conditions = vec![
                json!({"type": "PodReadyToStartContainers", "status": ready, "lastTransitionTime": time(created)}),
                json!({"type": "Initialized", "status": "True", "lastTransitionTime": time(created)}),
                json!({"type": "Ready", "status": ready, "lastTransitionTime": time(created)}),
                json!({"type": "ContainersReady", "status": ready, "lastTransitionTime": time(created)}),
            ];
            if let Some(Value::Object(ready)) = conditions.get_mut(2)
                && !running
            {
                ready.insert("reason".into(), "ContainersNotReady".into());
                ready.insert(
                    "message".into(),
                    "containers with unready status: [app]".into(),
                );
            }
            if node.is_some() {
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": time(created)}));
            }
            let mut status = json!({
                "phase": pod.phase,
                "conditions": conditions,
                "qosClass": "BestEffort",
                "startTime": time(created),
                "containerStatuses": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10", "imageID": "",
                    "ready": running, "started": running, "restartCount": 0, "state": state,
                }],
            });
            if let Some(ip) = &host_ip {
                status["hostIP"] = ip.clone().into();
                status["hostIPs"] = json!([{"ip": ip}]);
            }
            if pod.phase == "Running" {
                let n = node
                    .and_then(|n| self.index.nodes.get(n))
                    .map_or(0, |&(n, _)| n);
                let ip = format!("10.244.{}.{}", n + 1, i + 10);
                status["podIPs"] = json!([{"ip": ip}]);
                status["podIP"] = ip.into();
            }
            let mounts: Vec<Value> = pod
                .claims
                .iter()
                .map(|c| json!({"name": c.value, "mountPath": format!("/data/{}", c.value)}))
                .collect();
            let volumes: Vec<Value> = pod
                .claims
                .iter()
                .map(|c| json!({"name": c.value, "persistentVolumeClaim": {"claimName": c.value}}))
                .collect();
            let mut spec = json!({
                "containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "imagePullPolicy": "IfNotPresent", "resources": {}, "volumeMounts": mounts,
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                }],
                "volumes": volumes,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler",
                "serviceAccountName": "default",
                "enableServiceLinks": true,
                "priority": 0,
                "tolerations": tolerations(&pod.tolerations),
            });
            if let Some(node) = node {
                spec["nodeName"] = node.into();
            }
            let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status});
            self.add("pods", Some(&pod.namespace), object);
        }
    }

    /// Deployments as the API server stores them (`spec.strategy` defaulted: RollingUpdate with
    /// 25% surge and unavailability), their status counting the scenario's pods of a ReplicaSet
    /// named `NAME-…`.
    fn deployments(&mut self) {
        let k8s = &self.scenario.kubernetes;
        for deployment in &k8s.deployments {
            let name = &deployment.name;
            let namespace = deployment.namespace.as_str();
            let mut meta = self.meta("Deployment", Some(namespace), name, self.start);
            meta["generation"] = 1.into();
            meta["labels"] = json!({"app": name});
            meta["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
            let strategy = match deployment.strategy() {
                "Recreate" => json!({"type": "Recreate"}),
                _ => json!({"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            };
            let mounts: Vec<Value> = deployment
                .claims
                .iter()
                .map(|c| json!({"name": c.value, "mountPath": format!("/data/{}", c.value)}))
                .collect();
            let volumes: Vec<Value> = deployment
                .claims
                .iter()
                .map(|c| json!({"name": c.value, "persistentVolumeClaim": {"claimName": c.value}}))
                .collect();
            let prefix = format!("{name}-");
            let pods: Vec<&scenario::Pod> = k8s
                .pods
                .iter()
                .filter(|pod| pod.namespace == namespace && !pod.terminating)
                .filter(|pod| {
                    pod.owner.as_ref().is_some_and(|owner| {
                        owner.kind == "ReplicaSet" && owner.name.starts_with(&prefix)
                    })
                })
                .collect();
            let ready = pods
                .iter()
                .filter(|pod| pod.phase == "Running" && pod.waiting_reason.is_none())
                .count();
            let mut status = json!({"observedGeneration": 1});
            for (key, count) in [
                ("replicas", pods.len()),
                ("updatedReplicas", pods.len()),
                ("readyReplicas", ready),
                ("availableReplicas", ready),
                ("unavailableReplicas", pods.len().saturating_sub(ready)),
            ] {
                if count > 0 {
                    status[key] = count.into();
                }
            }
            let object = json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": deployment.replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "containers": [{
                                "name": "app", "image": "registry.k8s.io/pause:3.10",
                                "imagePullPolicy": "IfNotPresent", "resources": {},
                                "volumeMounts": mounts,
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                            }],
                            "volumes": volumes,
                            "restartPolicy": "Always",
                            "terminationGracePeriodSeconds": 30,
                            "dnsPolicy": "ClusterFirst",
                            "schedulerName": "default-scheduler",
                            "securityContext": {},
                        },
                    },
                    "strategy": strategy,
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                },
                "status": status,
            });
            self.add("deployments", Some(namespace), object);
        }
    }

    fn attachments(&mut self) {
        let k8s = &self.scenario.kubernetes;
        for va in &k8s.volume_attachments {
            let Some(pv) = self.index.pvs.get(va.pv.value.as_str()) else {
                continue;
            };
            let (driver, handle) = pv_source(pv);
            let node = &va.node.value;
            let name = attachment_name(handle, driver, node);
            let mut meta = self.meta("VolumeAttachment", None, &name, self.start);
            meta["finalizers"] = json!([attacher_finalizer(driver)]);
            let scenario_node = self.index.node(node);
            if driver == LINSTOR_DRIVER {
                meta["annotations"] = json!({"csi.alpha.kubernetes.io/node-id": node});
            } else if let Some(server) = scenario_node.and_then(|n| self.server_of(n)) {
                meta["annotations"] = json!({"csi.alpha.kubernetes.io/node-id": server});
            }
            let mut status = json!({"attached": va.attached});
            if va.attached {
                status["attachmentMetadata"] = json!({"DevicePath": "/dev/vdb"});
            }
            self.add(
                "volumeattachments",
                None,
                json!({
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "VolumeAttachment",
                    "metadata": meta,
                    "spec": {"attacher": driver, "nodeName": node,
                             "source": {"persistentVolumeName": pv.name}},
                    "status": status,
                }),
            );
        }
    }

    fn events(&mut self) {
        let now = self.now;
        for (i, event) in self.scenario.kubernetes.events.iter().enumerate() {
            let (kind, namespace, name) = match event.object.value.split_once('/') {
                Some(("pod", rest)) => match scenario::split_ref(rest) {
                    Some((ns, name)) => ("Pod", Some(ns), name),
                    None => continue,
                },
                Some(("node", name)) => ("Node", None, name),
                _ => continue,
            };
            let event_namespace = namespace.unwrap_or("default");
            let event_name = format!(
                "{name}.{}",
                &uid("Event", event_namespace, &format!("{name}/{i}")).replace('-', "")[..16]
            );
            let mut involved = json!({"apiVersion": "v1", "kind": kind, "name": name,
                                      "uid": uid(kind, namespace.unwrap_or_default(), name)});
            if let Some(ns) = namespace {
                involved["namespace"] = ns.into();
            }
            let first = now.checked_sub(minutes(3)).unwrap_or(now);
            let last = now
                .checked_sub(SignedDuration::from_secs(30))
                .unwrap_or(now);
            self.add(
                "events",
                Some(event_namespace),
                json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": self.meta("Event", Some(event_namespace), &event_name, first),
                    "involvedObject": involved,
                    "reason": event.reason,
                    "message": event.message,
                    "type": event.kind,
                    "count": 3,
                    "firstTimestamp": time(first),
                    "lastTimestamp": time(last),
                    "eventTime": null,
                    "source": {"component": "attachdetach-controller"},
                    "reportingComponent": "attachdetach-controller",
                    "reportingInstance": "",
                }),
            );
        }
    }
}

/// A pod's tolerations: the scenario's, and the two DefaultTolerationSeconds adds (`not-ready`
/// and `unreachable`, NoExecute, 300 s) unless the pod has its own for that key.
#[must_use]
pub fn tolerations(own: &[scenario::Toleration]) -> Vec<Value> {
    let mut all: Vec<Value> = own
        .iter()
        .map(|t| {
            let mut toleration = json!({});
            if let Some(key) = &t.key {
                toleration["key"] = key.clone().into();
            }
            toleration["operator"] = t.operator.clone().unwrap_or_else(|| "Equal".into()).into();
            if let Some(value) = &t.value {
                toleration["value"] = value.clone().into();
            }
            if let Some(effect) = &t.effect {
                toleration["effect"] = effect.clone().into();
            }
            if let Some(seconds) = t.toleration_seconds {
                toleration["tolerationSeconds"] = seconds.into();
            }
            toleration
        })
        .collect();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = own.iter().any(|t| {
            t.key.as_deref() == Some(key) && t.effect.as_deref().is_none_or(|e| e == "NoExecute")
        });
        if !covered {
            all.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    all
}

/// The driver and volume handle of a scenario PV (in-tree Cinder migrates to the CSI driver).
fn pv_source(pv: &scenario::PersistentVolume) -> (&str, &str) {
    match (&pv.csi, &pv.cinder) {
        (Some(csi), _) => (csi.driver.as_str(), csi.volume_handle.as_str()),
        (None, Some(cinder)) => (CINDER_DRIVER, cinder.volume_id.as_str()),
        (None, None) => (CINDER_DRIVER, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::{attacher_finalizer, attachment_name, provider_server};

    #[test]
    fn names_as_the_real_controllers_make_them() {
        let name = attachment_name("handle", "cinder.csi.openstack.org", "node");
        assert!(name.starts_with("csi-") && name.len() == 4 + 64);
        assert_eq!(
            attacher_finalizer("cinder.csi.openstack.org"),
            "external-attacher/cinder-csi-openstack-org"
        );
        assert_eq!(provider_server("openstack:///abc"), Some("abc"));
        assert_eq!(provider_server("openstack://RegionOne/abc"), Some("abc"));
        assert_eq!(provider_server("aws:///abc"), None);
    }
}
