//! The Kubernetes side: reads the cluster into the observation's plain views, applies the
//! Kubernetes actions of a plan, and records an Event on every object it touches.
//!
//! Only this module talks to the Kubernetes API (through `kube` and `k8s-openapi`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Event as CoreEvent, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::bounded::bounded;

use fencing::model::{
    ClaimName, ClaimRef, ClaimView, DeploymentView, Driver, KEEP_ANNOTATION, NodeName, NodeUid,
    NodeView, OwnerRef, PIRAEUS_LABEL, PROGRESS_ANNOTATION, PodView, Progress, PvName, PvView,
    Readiness, StorageView, Taint, VaName, VaUid, VaView, VolumeId,
};

/// The name the remediator reports Events and field ownership under.
pub const FIELD_MANAGER: &str = "cinder-remediator";

/// The cluster-wide Kubernetes permissions the remediator uses, as (API group, resource,
/// verbs): the ClusterRole of `manifests/base/clusterrole.yaml` grants exactly these (a test
/// keeps the two in step; the end-to-end tests run under that role, enforced by the emulator).
/// `run` adds its Lease, in its own namespace ([`crate::controller::lease::PERMISSIONS`]).
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    ("", "events", &["list"]),
    ("", "nodes", &["delete", "get", "list", "update", "watch"]),
    ("", "persistentvolumeclaims", &["get", "list"]),
    ("", "persistentvolumes", &["get", "list"]),
    ("", "pods", &["delete", "list"]),
    ("apps", "deployments", &["list"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "storage.k8s.io",
        "volumeattachments",
        &["delete", "get", "list", "update", "watch"],
    ),
];

/// An Event note within the API's limit (events.k8s.io/v1 `note`: 1 kB), cut at a character
/// boundary with an ellipsis.
fn event_note(note: String) -> String {
    const LIMIT: usize = 1024;
    if note.len() <= LIMIT {
        return note;
    }
    let mut end = LIMIT - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// Where each kubelet keeps its Lease, named after its node.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The permissions on the kubelets' Leases, in [`NODE_LEASE_NAMESPACE`], for `run
/// --watch-cloud`: the Role of `manifests/base/role-node-leases.yaml` grants exactly these.
pub const NODE_LEASE_PERMISSIONS: (&str, &str, &[&str]) =
    ("coordination.k8s.io", "leases", &["get"]);

/// Objects per page of a list (kubectl's default chunk size).
const PAGE: u32 = 500;

/// Up to this many nodes not Ready, their pods are read with one field-selected list each;
/// beyond, one paged list of every pod costs fewer requests.
const PER_NODE_POD_LISTS: usize = 100;

/// How many times an update that lost a resourceVersion race is retried.
const CONFLICT_RETRIES: usize = 3;

/// A failed Kubernetes call: what was attempted and what the API server (or the connection)
/// said, on one line.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes: failed to {operation}: {detail}")]
pub struct Error {
    /// What was attempted.
    pub operation: String,
    /// What went wrong: `CODE Reason: message` for an API answer, else the client's error.
    pub detail: String,
    /// The HTTP status of an API answer.
    pub code: Option<u16>,
}

impl Error {
    fn new(operation: impl Into<String>, source: kube::Error) -> Self {
        let detail = match &source {
            kube::Error::Api(status) => {
                format!("{} {}: {}", status.code, status.reason, status.message)
            }
            other => crate::config::one_line(other),
        };
        Self {
            operation: operation.into(),
            detail,
            code: status_code(&source),
        }
    }

    /// Whether a retry later may succeed (server errors, conflicts, connection problems).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.code
            .is_none_or(|code| code >= 500 || code == 409 || code == 429)
    }
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// What the cluster side holds, read at one instant (the storage views are filled in later by
/// the backend).
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Every node, with `storage: Unobserved`.
    pub nodes: Vec<NodeView>,
    /// Every PV, with `backend: None`.
    pub persistent_volumes: Vec<PvView>,
    /// Every PVC.
    pub claims: Vec<ClaimView>,
    /// Every pod, with the attach failures its Events report.
    pub pods: Vec<PodView>,
    /// Every VolumeAttachment.
    pub volume_attachments: Vec<VaView>,
    /// Every Deployment, when read ([`Breadth::Advice`]).
    pub deployments: Vec<DeploymentView>,
    /// Why the Deployments could not be read, when the API server refused the list.
    pub deployments_unread: Option<String>,
}

/// How much of the cluster [`Cluster::observe`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Breadth {
    /// What the planner needs: the pods of nodes not Ready and the Pending pods; no Deployment.
    #[default]
    Planning,
    /// Also every pod and every Deployment, for `diagnose`'s advice
    /// ([`fencing::advice::advise`]). A 403 or 404 on the Deployments is no failure: they are
    /// left unread, with why.
    Advice,
}

/// What the controller's watches hold, as views: every node and every VolumeAttachment.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Every node, with `storage: Unobserved`.
    pub nodes: BTreeMap<NodeName, NodeView>,
    /// Every VolumeAttachment.
    pub attachments: BTreeMap<VaName, VaView>,
}

/// The Kubernetes API, as the remediator uses it.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    recorder: Recorder,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// An object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node.
    Node(NodeName),
    /// A pod.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// UID, when known.
        uid: Option<String>,
    },
    /// A VolumeAttachment.
    VolumeAttachment(VaName),
}

impl Cluster {
    /// The cluster behind `client`; Events are reported as `instance` of cinder-remediator.
    #[must_use]
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics: None,
        }
    }

    /// Times every list, read, write and delete into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs `call`, timing it as `verb` on `resource`.
    async fn timed<T>(
        &self,
        verb: &'static str,
        resource: &'static str,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        if let Some(metrics) = &self.metrics {
            metrics.kubernetes_request(verb, resource, started.elapsed().as_secs_f64());
        }
        result
    }

    /// Lists every object of a kind (cluster-wide) that `params` selects, page by page
    /// ([`PAGE`] objects at a time, as kubectl does), keeping of each page only what `view`
    /// takes from it: memory grows with the views, never with a whole list of full objects.
    async fn list<K, V>(
        &self,
        resource: &'static str,
        params: &ListParams,
        what: &str,
        mut view: impl FnMut(&K) -> Option<V>,
    ) -> Result<Vec<V>, Error>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api = Api::<K>::all(self.client.clone());
        let mut params = params.clone().limit(PAGE);
        let mut views = Vec::new();
        loop {
            let page = self
                .timed("list", resource, api.list(&params))
                .await
                .map_err(|e| Error::new(what, e))?;
            views.extend(page.items.iter().filter_map(&mut view));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(views),
            }
        }
    }

    /// Reads one object by name, `None` when it does not exist.
    async fn get<K>(
        &self,
        api: Api<K>,
        resource: &'static str,
        name: &str,
        what: &str,
    ) -> Result<Option<K>, Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.timed("get", resource, api.get_opt(name))
            .await
            .map_err(|e| Error::new(format!("read {what} {name}"), e))
    }

    /// Reads each named object (a few at a time), keeping what `view` takes of those that
    /// exist.
    async fn read_each<'n, K, V>(
        &self,
        objects: impl Iterator<Item = (Api<K>, &'n str)>,
        resource: &'static str,
        what: &str,
        view: impl Fn(&K) -> Option<V>,
    ) -> Result<Vec<V>, Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let reads = bounded(
            objects
                .map(|(api, name)| self.get(api, resource, name, what))
                .collect(),
        )
        .await;
        let mut views = Vec::new();
        for read in reads {
            views.extend(read?.as_ref().and_then(&view));
        }
        Ok(views)
    }

    /// The Kubernetes client, for watches and the Lease.
    #[must_use]
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Reads nodes, pods (those of nodes not Ready and the pending ones, or every pod when more
    /// than [`PER_NODE_POD_LISTS`] nodes are not Ready or for [`Breadth::Advice`]), PVs, PVCs,
    /// VolumeAttachments, the attach-failure Events and, for [`Breadth::Advice`], Deployments,
    /// every list page by page.
    ///
    /// # Errors
    /// When a list fails (but for the Deployments' 403 or 404).
    pub async fn observe(&self, breadth: Breadth) -> Result<ClusterState, Error> {
        let all = ListParams::default();
        let nodes = self
            .list("nodes", &all, "list nodes", |node| Some(node_view(node)))
            .await?;
        // Only the pods of nodes not Ready and the pending ones matter; a field selector per
        // such node beats reading every pod of the cluster while they are few.
        let not_ready: BTreeSet<NodeName> = nodes
            .iter()
            .filter(|node: &&NodeView| !node.ready.is_ready())
            .map(|node| node.name.clone())
            .collect();
        let pods = if not_ready.len() <= PER_NODE_POD_LISTS && breadth == Breadth::Planning {
            self.pods_of(&not_ready).await?
        } else {
            self.list("pods", &all, "list pods", |pod| Some(pod_view(pod)))
                .await?
        };
        let persistent_volumes = self
            .list(
                "persistentvolumes",
                &all,
                "list persistent volumes",
                pv_view,
            )
            .await?;
        let claims = self
            .list(
                "persistentvolumeclaims",
                &all,
                "list persistent volume claims",
                |pvc| Some(claim_view(pvc)),
            )
            .await?;
        let volume_attachments = self
            .list("volumeattachments", &all, "list volume attachments", |va| {
                Some(va_view(va))
            })
            .await?;
        let (deployments, deployments_unread) = match breadth {
            Breadth::Planning => (Vec::new(), None),
            Breadth::Advice => self.deployments().await?,
        };
        let mut state = ClusterState {
            nodes,
            persistent_volumes,
            claims,
            pods,
            volume_attachments,
            deployments,
            deployments_unread,
        };
        self.read_attach_failures(&mut state.pods).await?;
        Ok(state)
    }

    /// Every Deployment; none, with why, when the API server refuses the list (403: no RBAC
    /// for it; 404: no `apps/v1` served).
    async fn deployments(&self) -> Result<(Vec<DeploymentView>, Option<String>), Error> {
        let all = ListParams::default();
        match self
            .list("deployments", &all, "list deployments", |deployment| {
                Some(deployment_view(deployment))
            })
            .await
        {
            Ok(deployments) => Ok((deployments, None)),
            Err(err) if matches!(err.code, Some(403 | 404)) => {
                tracing::warn!(error = %err, "Could not list Deployments; not checking them");
                Ok((Vec::new(), Some(err.detail)))
            }
            Err(err) => Err(err),
        }
    }

    /// What [`Cluster::observe`] reads, for the `due` nodes only and the cheap way, as the
    /// controller needs it: each due node read afresh; its pods (`spec.nodeName` field
    /// selector) and the `Pending` pods anywhere (the replacements that may wait on its
    /// volumes), never every pod of the cluster; the claims, PVs and VolumeAttachments those
    /// pods and nodes use, each read afresh by name; the attach-failure Events only when some
    /// pod is Pending. `watched` names the VolumeAttachments to read (VolumeAttachments have no
    /// field selector for their node); it is locked only for a moment, never across a read.
    /// The state holds the due nodes only: the caller adds the others as its watch shows them
    /// when it plans (the storm guard and the one-server-one-node check need them all), so that
    /// looks in flight never each hold a copy of every node.
    ///
    /// # Errors
    /// When a read fails.
    pub async fn observe_due(
        &self,
        watched: &std::sync::Mutex<Watched>,
        due: &BTreeSet<NodeName>,
    ) -> Result<ClusterState, Error> {
        let fresh = bounded(due.iter().map(|name| self.node(name.as_str())).collect()).await;
        let mut nodes = Vec::new();
        for read in fresh {
            nodes.extend(read?);
        }
        let vas_where = |keep: &dyn Fn(&VaView) -> bool| -> Vec<VaView> {
            watched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .attachments
                .values()
                .filter(|va| keep(va))
                .cloned()
                .collect()
        };

        let pods = self.pods_of(due).await?;

        let wanted_claims: BTreeSet<(String, ClaimName)> = pods
            .iter()
            .flat_map(|pod| {
                pod.claims
                    .iter()
                    .map(|claim| (pod.namespace.to_string(), claim.clone()))
            })
            .collect();
        let claims: Vec<ClaimView> = self
            .read_each(
                wanted_claims.iter().map(|(namespace, name)| {
                    let api =
                        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace);
                    (api, name.as_str())
                }),
                "persistentvolumeclaims",
                "claim",
                |pvc| Some(claim_view(pvc)),
            )
            .await?;

        let attachments = vas_where(&|va| due.contains(&va.node));
        let wanted_pvs: BTreeSet<PvName> = claims
            .iter()
            .filter_map(|claim| claim.volume.clone())
            .chain(attachments.iter().filter_map(|va| va.pv.clone()))
            .collect();
        let persistent_volumes: Vec<PvView> = self
            .read_each(
                wanted_pvs
                    .iter()
                    .map(|name| (Api::all(self.client.clone()), name.as_str())),
                "persistentvolumes",
                "persistent volume",
                pv_view,
            )
            .await?;

        // The due nodes' VolumeAttachments, and every other one of the same PVs (a replacement
        // node's), each read afresh.
        let wanted_vas: BTreeSet<VaName> = vas_where(&|va| {
            due.contains(&va.node) || va.pv.as_ref().is_some_and(|pv| wanted_pvs.contains(pv))
        })
        .into_iter()
        .map(|va| va.name)
        .collect();
        let volume_attachments: Vec<VaView> = self
            .read_each(
                wanted_vas
                    .iter()
                    .map(|name| (Api::all(self.client.clone()), name.as_str())),
                "volumeattachments",
                "volume attachment",
                |va| Some(va_view(va)),
            )
            .await?;

        let mut state = ClusterState {
            nodes,
            persistent_volumes,
            claims,
            pods,
            volume_attachments,
            deployments: Vec::new(),
            deployments_unread: None,
        };
        if state.pods.iter().any(|pod| pod.phase == "Pending") {
            self.read_attach_failures(&mut state.pods).await?;
        }
        Ok(state)
    }

    /// The pods of `nodes` (a `spec.nodeName` field selector each) and the `Pending` pods
    /// anywhere (the replacements that may wait on their volumes).
    async fn pods_of(&self, nodes: &BTreeSet<NodeName>) -> Result<Vec<PodView>, Error> {
        let on_nodes = bounded(
            nodes
                .iter()
                .map(|node| {
                    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
                    async move {
                        self.list(
                            "pods",
                            &params,
                            &format!("list the pods of node {node}"),
                            |pod| Some(pod_view(pod)),
                        )
                        .await
                    }
                })
                .collect(),
        )
        .await;
        let mut pods: Vec<PodView> = Vec::new();
        for listed in on_nodes {
            pods.extend(listed?);
        }
        let pending = ListParams::default().fields("status.phase=Pending");
        pods.extend(
            self.list("pods", &pending, "list pending pods", |pod| {
                Some(pod_view(pod))
            })
            .await?
            .into_iter()
            .filter(|pod| !pod.node.as_ref().is_some_and(|node| nodes.contains(node))),
        );
        Ok(pods)
    }

    /// Fills each pod's attach failures from the Warning Events about pods.
    async fn read_attach_failures(&self, pods: &mut [PodView]) -> Result<(), Error> {
        let warnings = ListParams::default().fields("type=Warning,involvedObject.kind=Pod");
        let mut failures: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (key, names) in self
            .list("events", &warnings, "list events", attach_failure)
            .await?
        {
            let known = failures.entry(key).or_default();
            for name in names {
                if !known.contains(&name) {
                    known.push(name);
                }
            }
        }
        for pod in pods {
            if let Some(names) = failures.get(&(pod.namespace.to_string(), pod.name.to_string())) {
                pod.attach_failures.clone_from(names);
            }
        }
        Ok(())
    }

    /// Deletes a pod with a UID precondition: grace 0 forces it (the dead kubelet never
    /// confirms), `None` uses the pod's own grace period. A pod already gone is success.
    ///
    /// # Errors
    /// When the delete fails (a UID mismatch is a 409: the pod was replaced, not ours to touch).
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        grace_seconds: Option<u32>,
    ) -> Result<(), Error> {
        let params = DeleteParams {
            grace_period_seconds: grace_seconds,
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        match self
            .timed("delete", "pods", api.delete(name, &params))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => Err(Error::new(format!("delete pod {namespace}/{name}"), err)),
        }
    }

    /// Deletes a VolumeAttachment with a UID precondition (its external-attacher then detaches
    /// and drops its finalizer). One already gone is success.
    ///
    /// # Errors
    /// When the delete fails (a UID mismatch is a 409: another node's VolumeAttachment now has
    /// that name, not ours to touch).
    pub async fn delete_volume_attachment(&self, name: &str, uid: &VaUid) -> Result<(), Error> {
        let api = Api::<VolumeAttachment>::all(self.client.clone());
        self.delete_with_uid(&api, "volumeattachments", name, uid.as_str())
            .await
            .map_err(|err| Error::new(format!("delete volume attachment {name}"), err))
    }

    /// Deletes a Node, with a UID precondition (a re-created Node of that name is left alone).
    /// Already gone counts as done.
    ///
    /// # Errors
    /// When the delete fails or the precondition does not hold.
    pub async fn delete_node(&self, name: &str, uid: &NodeUid) -> Result<(), Error> {
        let api = Api::<Node>::all(self.client.clone());
        self.delete_with_uid(&api, "nodes", name, uid.as_str())
            .await
            .map_err(|err| Error::new(format!("delete node {name}"), err))
    }

    /// Deletes an object with a UID precondition; one already gone (404) is done.
    async fn delete_with_uid<K>(
        &self,
        api: &Api<K>,
        resource: &'static str,
        name: &str,
        uid: &str,
    ) -> Result<(), kube::Error>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .timed("delete", resource, api.delete(name, &params))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The finalizers of a VolumeAttachment; `None` when it is gone.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn volume_attachment_finalizers(
        &self,
        name: &str,
    ) -> Result<Option<Vec<String>>, Error> {
        let api = Api::<VolumeAttachment>::all(self.client.clone());
        api.get_opt(name)
            .await
            .map(|va| va.map(|va| va.metadata.finalizers.unwrap_or_default()))
            .map_err(|e| Error::new(format!("read volume attachment {name}"), e))
    }

    /// Removes the external-attacher finalizer of a VolumeAttachment whose volume the backend
    /// shows released, when the attacher of the dead node does not. Other finalizers stay.
    ///
    /// # Errors
    /// When the update fails.
    pub async fn remove_attacher_finalizer(&self, name: &str, uid: &VaUid) -> Result<(), Error> {
        let api = Api::<VolumeAttachment>::all(self.client.clone());
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut va) = api
                .get_opt(name)
                .await
                .map_err(|e| Error::new(format!("read volume attachment {name}"), e))?
            else {
                return Ok(());
            };
            if va.metadata.uid.as_deref() != Some(uid.as_str()) {
                return Ok(()); // ours is gone; this one is another node's
            }
            let finalizers = va.metadata.finalizers.take().unwrap_or_default();
            let kept: Vec<String> = finalizers
                .iter()
                .filter(|f| !f.starts_with("external-attacher/"))
                .cloned()
                .collect();
            if kept.len() == finalizers.len() {
                return Ok(());
            }
            va.metadata.finalizers = Some(kept);
            match api.replace(name, &PostParams::default(), &va).await {
                Ok(_) => return Ok(()),
                Err(err) if status_code(&err) == Some(409) => continue,
                Err(err) if status_code(&err) == Some(404) => return Ok(()),
                Err(err) => {
                    return Err(Error::new(format!("remove the finalizer of {name}"), err));
                }
            }
        }
        Err(Error::new(
            format!("remove the finalizer of {name}"),
            conflict_error(),
        ))
    }

    /// Adds `taint` to the node of that UID unless it has it; optimistic concurrency (the
    /// replace carries the resourceVersion read), retried on conflict. `true` when this write
    /// added it: only then is the taint ours.
    ///
    /// # Errors
    /// When the node is gone or re-created (another UID), or the update fails.
    pub async fn add_taint(&self, node: &str, uid: &NodeUid, taint: &Taint) -> Result<bool, Error> {
        self.update_node(node, uid, "add the out-of-service taint", |object| {
            let spec = object.spec.get_or_insert_with(Default::default);
            let taints = spec.taints.get_or_insert_with(Vec::new);
            if taints.iter().any(|t| same_taint(t, taint)) {
                false
            } else {
                taints.push(k8s_taint(taint));
                true
            }
        })
        .await
    }

    /// Removes `taint` (matched on key, value and effect) from the node of that UID.
    ///
    /// # Errors
    /// When the node is gone or re-created, or the update fails.
    pub async fn remove_taint(
        &self,
        node: &str,
        uid: &NodeUid,
        taint: &Taint,
    ) -> Result<(), Error> {
        self.update_node(node, uid, "remove the out-of-service taint", |object| {
            let Some(taints) = object.spec.as_mut().and_then(|spec| spec.taints.as_mut()) else {
                return false;
            };
            let before = taints.len();
            taints.retain(|t| !same_taint(t, taint));
            taints.len() != before
        })
        .await
        .map(drop)
    }

    /// Writes (or, with `None`, removes) the remediator's progress record on the node of that
    /// UID.
    ///
    /// # Errors
    /// When the node is gone or re-created, or the update fails.
    pub async fn set_progress(
        &self,
        node: &str,
        uid: &NodeUid,
        progress: Option<&Progress>,
    ) -> Result<(), Error> {
        let value = progress.map(|p| serde_json::to_string(p).unwrap_or_else(|_| "{}".to_owned()));
        self.update_node(node, uid, "record progress", |object| {
            let annotations = object
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new);
            match &value {
                Some(text) => {
                    annotations
                        .insert(PROGRESS_ANNOTATION.to_owned(), text.clone())
                        .as_ref()
                        != Some(text)
                }
                None => annotations.remove(PROGRESS_ANNOTATION).is_some(),
            }
        })
        .await
        .map(drop)
    }

    /// The node of that name as the planner sees it (storage unobserved), `None` when gone.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn node(&self, name: &str) -> Result<Option<NodeView>, Error> {
        self.timed(
            "get",
            "nodes",
            Api::<Node>::all(self.client.clone()).get_opt(name),
        )
        .await
        .map(|node| node.as_ref().map(node_view))
        .map_err(|e| Error::new(format!("read node {name}"), e))
    }

    /// `spec.renewTime` of a node's kubelet Lease (`kube-node-lease/NAME`): when its kubelet
    /// last reported; `None` when there is no such Lease or it has no time.
    ///
    /// # Errors
    /// When the API server cannot be read.
    pub async fn kubelet_renewed(&self, node: &str) -> Result<Option<Timestamp>, Error> {
        let api = Api::<Lease>::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        self.timed("get", "leases", api.get_opt(node))
            .await
            .map(|lease| {
                lease
                    .and_then(|lease| lease.spec)
                    .and_then(|spec| spec.renew_time)
                    .map(|time| time.0)
            })
            .map_err(|e| Error::new(format!("read the kubelet Lease of node {node}"), e))
    }

    /// Read, check the UID, change, replace (with the resourceVersion read); retried on
    /// conflict. `true` when `change` changed something and it was written.
    async fn update_node(
        &self,
        node: &str,
        uid: &NodeUid,
        what: &str,
        change: impl Fn(&mut Node) -> bool,
    ) -> Result<bool, Error> {
        let api = Api::<Node>::all(self.client.clone());
        for _ in 0..CONFLICT_RETRIES {
            let mut object = self
                .timed("get", "nodes", api.get(node))
                .await
                .map_err(|e| Error::new(format!("read node {node}"), e))?;
            if object.metadata.uid.as_deref() != Some(uid.as_str()) {
                return Err(Error::new(
                    format!("{what} on node {node}"),
                    precondition_error(&format!(
                        "node {node} was re-created (UID {} is not the observed {uid})",
                        object.metadata.uid.as_deref().unwrap_or("(none)")
                    )),
                ));
            }
            if !change(&mut object) {
                return Ok(false);
            }
            match self
                .timed(
                    "update",
                    "nodes",
                    api.replace(node, &PostParams::default(), &object),
                )
                .await
            {
                Ok(_) => return Ok(true),
                Err(err) if status_code(&err) == Some(409) => continue,
                Err(err) => return Err(Error::new(format!("{what} on node {node}"), err)),
            }
        }
        Err(Error::new(
            format!("{what} on node {node}"),
            conflict_error(),
        ))
    }

    /// Records an Event about `target`. Failing to record is logged, never fatal: the action it
    /// reports has happened.
    pub async fn event(
        &self,
        target: &Target,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = object_reference(target);
        let note = event_note(note);
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, reason, "Could not record an Event");
        }
    }
}

fn precondition_error(message: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(message, "Conflict")
            .with_code(409)
            .boxed(),
    )
}

fn conflict_error() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("the object kept changing under us", "Conflict")
            .with_code(409)
            .boxed(),
    )
}

fn object_reference(target: &Target) -> ObjectReference {
    match target {
        Target::Node(name) => ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(name.to_string()),
            ..ObjectReference::default()
        },
        Target::Pod {
            namespace,
            name,
            uid,
        } => ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
            uid: uid.clone(),
            ..ObjectReference::default()
        },
        Target::VolumeAttachment(name) => ObjectReference {
            api_version: Some("storage.k8s.io/v1".to_owned()),
            kind: Some("VolumeAttachment".to_owned()),
            name: Some(name.to_string()),
            ..ObjectReference::default()
        },
    }
}

fn same_taint(existing: &k8s_openapi::api::core::v1::Taint, taint: &Taint) -> bool {
    existing.key == taint.key
        && existing.effect == taint.effect
        && existing.value.as_deref().unwrap_or_default()
            == taint.value.as_deref().unwrap_or_default()
}

fn k8s_taint(taint: &Taint) -> k8s_openapi::api::core::v1::Taint {
    k8s_openapi::api::core::v1::Taint {
        key: taint.key.clone(),
        value: taint.value.clone(),
        effect: taint.effect.clone(),
        time_added: (taint.effect == "NoExecute")
            .then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())),
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// A node as the planner sees it (`storage` is filled in by the backend).
pub fn node_view(node: &Node) -> NodeView {
    let ready_condition = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    let ready = match ready_condition.map(|c| c.status.as_str()) {
        Some("True") => Readiness::True,
        Some("False") => Readiness::False,
        _ => Readiness::Unknown,
    };
    let ready_since = ready_condition
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|time| time.0)
        .or_else(|| node.metadata.creation_timestamp.as_ref().map(|time| time.0))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let spec = node.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let (progress, progress_error) = match node
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(PROGRESS_ANNOTATION))
        .map(|text| serde_json::from_str::<Progress>(text))
    {
        None => (None, None),
        Some(Ok(progress)) => (Some(progress), None),
        Some(Err(err)) => (None, Some(err.to_string())),
    };
    NodeView {
        name: NodeName::new(name_of(&node.metadata)),
        uid: node.metadata.uid.clone().map(NodeUid::new),
        ready,
        ready_since,
        taints: spec
            .taints
            .unwrap_or_default()
            .into_iter()
            .map(|t| Taint {
                key: t.key,
                value: t.value.filter(|v| !v.is_empty()),
                effect: t.effect,
            })
            .collect(),
        provider_id: spec.provider_id.filter(|id| !id.is_empty()),
        addresses: node
            .status
            .as_ref()
            .and_then(|status| status.addresses.as_ref())
            .map(|addresses| {
                addresses
                    .iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .collect()
            })
            .unwrap_or_default(),
        zone: labels
            .get("topology.kubernetes.io/zone")
            .or_else(|| labels.get("failure-domain.beta.kubernetes.io/zone"))
            .cloned(),
        progress,
        progress_error,
        storage: StorageView::Unobserved,
        satellite: None,
        cloud_death: None,
        kubelet_renewed: None,
    }
}

/// A PV of a CSI driver or of the in-tree Cinder plugin; other sources are no business of ours.
fn pv_view(pv: &PersistentVolume) -> Option<PvView> {
    let spec = pv.spec.as_ref()?;
    let (driver, volume_id) = if let Some(csi) = &spec.csi {
        (Driver::from(csi.driver.clone()), csi.volume_handle.clone())
    } else if let Some(cinder) = &spec.cinder {
        (Driver::InTreeCinder, cinder.volume_id.clone())
    } else {
        return None;
    };
    let claim = spec.claim_ref.as_ref().and_then(|claim| {
        Some(ClaimRef {
            namespace: claim.namespace.clone()?.into(),
            name: ClaimName::new(claim.name.clone()?),
        })
    });
    Some(PvView {
        name: PvName::new(name_of(&pv.metadata)),
        driver,
        volume_id: VolumeId::new(volume_id),
        claim,
        access_modes: spec.access_modes.clone().unwrap_or_default(),
        backend: None,
    })
}

fn claim_view(pvc: &PersistentVolumeClaim) -> ClaimView {
    ClaimView {
        namespace: pvc.metadata.namespace.clone().unwrap_or_default().into(),
        name: ClaimName::new(name_of(&pvc.metadata)),
        volume: pvc
            .spec
            .as_ref()
            .and_then(|spec| spec.volume_name.clone())
            .filter(|name| !name.is_empty())
            .map(PvName::new),
    }
}

fn pod_view(pod: &Pod) -> PodView {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = name_of(&pod.metadata);
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.controller == Some(true))
                .or_else(|| owners.first())
        })
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
            controller: o.controller == Some(true),
        });
    let waiting_reason = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    PodView {
        namespace: namespace.into(),
        name: name.into(),
        uid: pod.metadata.uid.clone().unwrap_or_default().into(),
        node: spec.node_name.filter(|n| !n.is_empty()).map(NodeName::new),
        phase: status.phase.unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        claims: spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|claim| ClaimName::new(claim.claim_name.clone()))
            .collect(),
        owner,
        waiting_reason,
        attach_failures: Vec::new(),
        keep: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(KEEP_ANNOTATION))
            .is_some_and(|value| value == "keep"),
        piraeus_remove: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PIRAEUS_LABEL))
            .is_some_and(|value| value == "remove"),
    }
}

/// A Deployment as the advice sees it: its replicas, its update strategy (as the API server
/// defaults an absent one: RollingUpdate) and the claims its pod template names.
fn deployment_view(deployment: &Deployment) -> DeploymentView {
    let spec = deployment.spec.as_ref();
    DeploymentView {
        namespace: deployment
            .metadata
            .namespace
            .clone()
            .unwrap_or_default()
            .into(),
        name: name_of(&deployment.metadata),
        replicas: spec
            .and_then(|spec| spec.replicas)
            .map_or(1, |replicas| u32::try_from(replicas).unwrap_or(0)),
        rolling_update: spec
            .and_then(|spec| spec.strategy.as_ref())
            .and_then(|strategy| strategy.type_.as_deref())
            .is_none_or(|kind| kind == "RollingUpdate"),
        claims: spec
            .and_then(|spec| spec.template.spec.as_ref())
            .and_then(|pod| pod.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|volume| volume.persistent_volume_claim.as_ref())
            .map(|claim| ClaimName::new(claim.claim_name.clone()))
            .collect(),
    }
}

/// A VolumeAttachment as the planner sees it.
pub fn va_view(va: &VolumeAttachment) -> VaView {
    VaView {
        name: VaName::new(name_of(&va.metadata)),
        uid: va.metadata.uid.clone().map(VaUid::new),
        node: NodeName::new(va.spec.node_name.clone()),
        pv: va
            .spec
            .source
            .persistent_volume_name
            .clone()
            .map(PvName::new),
        attacher: va.spec.attacher.clone(),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
        deleting: va.metadata.deletion_timestamp.is_some(),
        finalizers: va.metadata.finalizers.clone().unwrap_or_default(),
    }
}

/// The pod (namespace, name) and the PV names (in double quotes) and Cinder volume ids (after
/// `disk `) that a Warning Event about a failed attach names; `None` for any other Event.
fn attach_failure(event: &CoreEvent) -> Option<((String, String), Vec<String>)> {
    let reason = event.reason.as_deref().unwrap_or_default();
    let message = event.message.as_deref().unwrap_or_default();
    let about_attach = reason == "FailedAttachVolume"
        || (reason == "FailedMount" && message.contains("AttachVolume"))
        || message.contains("Multi-Attach");
    let object = &event.involved_object;
    if !about_attach || object.kind.as_deref() != Some("Pod") {
        return None;
    }
    let key = (
        object.namespace.clone().unwrap_or_default(),
        object.name.clone().unwrap_or_default(),
    );
    Some((key, volumes_named_in(message)))
}

/// `Multi-Attach error for volume "pvc-…"` and `disk 4e41d530-… is attached to a different
/// instance` both name the volume: return the quoted names and the word after `disk `.
fn volumes_named_in(message: &str) -> Vec<String> {
    let mut names: Vec<String> = message
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let mut words = message.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word == "disk"
            && let Some(id) = words.peek()
        {
            let id = id.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
            names.push(id.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_notes_are_cut_to_the_api_limit_at_a_character() {
        assert_eq!(super::event_note("short".to_owned()), "short");
        let long = "é".repeat(600);
        let cut = super::event_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with("é…"));
    }

    use super::{deployment_view, volumes_named_in};

    #[test]
    fn a_deployment_without_strategy_or_replicas_is_read_as_the_api_server_defaults_it() {
        let deployment = |spec: serde_json::Value| {
            deployment_view(
                &serde_json::from_value(serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "shop"},
                    "spec": spec,
                }))
                .unwrap(),
            )
        };
        let template = serde_json::json!({"spec": {"containers": [{"name": "app"}], "volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "b", "emptyDir": {}},
        ]}});
        let bare = deployment(serde_json::json!({"selector": {}, "template": template}));
        assert_eq!(
            (
                bare.namespace.as_str(),
                bare.name.as_str(),
                bare.replicas,
                bare.rolling_update
            ),
            ("shop", "web", 1, true)
        );
        assert_eq!(bare.claims, [fencing::model::ClaimName::new("data")]);
        let recreate = deployment(serde_json::json!({"selector": {}, "template": template,
            "replicas": 3, "strategy": {"type": "Recreate"}}));
        assert_eq!((recreate.replicas, recreate.rolling_update), (3, false));
        let rolling = deployment(serde_json::json!({"selector": {}, "template": template,
            "replicas": 0, "strategy": {"type": "RollingUpdate"}}));
        assert_eq!((rolling.replicas, rolling.rolling_update), (0, true));
    }

    #[test]
    fn attach_failure_messages_name_their_volumes() {
        let multi = "Multi-Attach error for volume \"pvc-12ff0316-53bd-11e8-8b74-fa163e141d50\" Volume is already exclusively attached to one node and can't be attached to another";
        assert_eq!(
            volumes_named_in(multi),
            ["pvc-12ff0316-53bd-11e8-8b74-fa163e141d50"]
        );
        let attach = "AttachVolume.Attach failed for volume \"pvc-12ff\" : disk 4e41d530-cb5f-49a9-9c6f-a591abdb6f11 is attached to a different instance (9454752c-f0e2-4447-9b7f-16434c49f7ac)";
        assert_eq!(
            volumes_named_in(attach),
            ["pvc-12ff", "4e41d530-cb5f-49a9-9c6f-a591abdb6f11"]
        );
        assert!(volumes_named_in("timed out waiting for the condition").is_empty());
    }
}
