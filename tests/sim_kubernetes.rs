//! The emulated Kubernetes API server, driven by the real `kube` client and checked through the
//! `k8s-openapi` types: what it seeds, how it watches, patches, deletes and selects, and the
//! emulated Cinder CSI external-attacher.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event as CoreEvent, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    Service,
};
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use sim::kubernetes::{CINDER_DRIVER, attachment_name, uid};
use sim::scenario::Readiness;
use sim::{self, Running, Scenario};
use tokio::time::timeout;

const NODE_DEAD: &str = "node-4-nude";
const NODE_LIVE: &str = "node-3-nude";
const SERVER_DEAD: &str = "9454752c-f0e2-4447-9b7f-16434c49f7ac";
const VOLUME: &str = "4e41d530-cb5f-49a9-9c6f-a591abdb6f11";
const PV: &str = "pvc-12ff0316-53bd-11e8-8b74-fa163e141d50";
const POD_TERMINATING: &str = "test-cinder-56bdb546dd-56mct";
const POD_CREATING: &str = "test-cinder-56bdb546dd-9vdsj";
const WAIT: Duration = Duration::from_secs(10);

async fn start(scenario: &Scenario) -> (Running, Client) {
    let running = sim::serve(scenario).await.expect("emulators start");
    let client = cinder_remediator::demo::admin_client(&running).expect("a client");
    (running, client)
}

/// A plain HTTP client of the emulated API server, as its admin.
fn http(running: &Running) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", sim::kubernetes::ADMIN_TOKEN);
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    let ca = reqwest::Certificate::from_der(&running.kubernetes_ca).expect("the CA");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .default_headers(headers)
        .build()
        .expect("a client")
}

async fn finish(running: Running) {
    running.world.lock().kube.stop_watches();
    timeout(WAIT, running.shutdown())
        .await
        .expect("the emulators stop");
}

/// Polls `check` until it holds, for at most [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn api_code(result: Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn scenario(yaml: &str) -> Scenario {
    Scenario::parse(yaml, Path::new("inline.yaml")).expect("a valid scenario")
}

/// The scenario with Kubernetes' own controllers switched off: the cluster stays as seeded
/// (tests that count seeded objects and Events).
fn still(mut scenario: Scenario) -> Scenario {
    for name in sim::scenario::CONTROLLERS {
        scenario
            .kubernetes
            .controllers
            .insert(name.to_owned(), false);
    }
    scenario
}

fn pod_on(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": "yes"}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "pause"}]},
    }))
    .expect("a pod")
}

#[tokio::test]
async fn every_kind_lists_and_gets_into_the_openapi_types() {
    let (running, client) = start(&still(Scenario::seed())).await;

    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, [NODE_LIVE, NODE_DEAD]);
    let dead = nodes.get(NODE_DEAD).await.expect("the dead node");
    let spec = dead.spec.clone().expect("spec");
    assert_eq!(
        spec.provider_id.as_deref(),
        Some("openstack:///9454752c-f0e2-4447-9b7f-16434c49f7ac")
    );
    let taints = spec.taints.expect("taints");
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable"
                && t.effect == "NoExecute"
                && t.time_added.is_some())
    );
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.cloudprovider.kubernetes.io/shutdown")
    );
    let status = dead.status.clone().expect("status");
    let ready = status
        .conditions
        .expect("conditions")
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready.status, "Unknown");
    assert!(ready.last_transition_time.is_some());
    assert_eq!(
        status.node_info.expect("node info").kubelet_version,
        "v1.33.4"
    );
    assert_eq!(
        dead.annotations()
            .get("csi.volume.kubernetes.io/nodeid")
            .map(String::as_str),
        Some(r#"{"cinder.csi.openstack.org":"9454752c-f0e2-4447-9b7f-16434c49f7ac"}"#)
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        pods.list(&ListParams::default())
            .await
            .expect("pods")
            .items
            .len(),
        2
    );
    let stuck = pods.get(POD_TERMINATING).await.expect("the stuck pod");
    assert!(stuck.metadata.deletion_timestamp.is_some());
    assert_eq!(stuck.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(
        stuck.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE_DEAD)
    );
    let owner = &stuck.owner_references()[0];
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        owner.uid,
        uid("ReplicaSet", "default", "test-cinder-56bdb546dd")
    );
    let creating = pods.get(POD_CREATING).await.expect("the new pod");
    let waiting = creating
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .expect("container statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    assert_eq!(waiting.as_deref(), Some("ContainerCreating"));

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvc = pvcs.get("test-cinder-volume").await.expect("the claim");
    assert_eq!(
        pvc.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Bound")
    );
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some(PV)
    );

    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    assert_eq!(
        pvs.list(&ListParams::default())
            .await
            .expect("PVs")
            .items
            .len(),
        1
    );
    let pv = pvs.get(PV).await.expect("the PV");
    let pv_spec = pv.spec.expect("spec");
    let csi = pv_spec.csi.expect("a CSI source");
    assert_eq!(
        (csi.driver.as_str(), csi.volume_handle.as_str()),
        (CINDER_DRIVER, VOLUME)
    );
    let claim = pv_spec.claim_ref.expect("a claim ref");
    assert_eq!(claim.name.as_deref(), Some("test-cinder-volume"));
    assert_eq!(claim.uid, pvc.metadata.uid);
    assert_eq!(
        pv_spec.capacity.expect("capacity")["storage"].0,
        "3Gi",
        "the size of the Cinder volume"
    );

    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let list = vas.list(&ListParams::default()).await.expect("VAs");
    assert_eq!(list.items.len(), 1);
    let va = &list.items[0];
    assert_eq!(
        va.name_any(),
        attachment_name(VOLUME, CINDER_DRIVER, NODE_DEAD)
    );
    assert_eq!(
        va.finalizers(),
        ["external-attacher/cinder-csi-openstack-org"]
    );
    assert_eq!(va.spec.attacher, CINDER_DRIVER);
    assert_eq!(va.spec.node_name, NODE_DEAD);
    assert_eq!(va.spec.source.persistent_volume_name.as_deref(), Some(PV));
    assert_eq!(va.status.as_ref().map(|s| s.attached), Some(true));
    vas.get(&va.name_any()).await.expect("get by name");

    let csinodes: Api<CSINode> = Api::all(client.clone());
    let csinode = csinodes.get(NODE_DEAD).await.expect("a CSINode");
    assert_eq!(csinode.spec.drivers[0].node_id, SERVER_DEAD);
    assert_eq!(
        csinodes
            .list(&ListParams::default())
            .await
            .expect("CSINodes")
            .items
            .len(),
        2
    );

    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("events");
    let multi = list
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedAttachVolume"))
        .expect("the Multi-Attach event");
    assert!(
        multi
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Multi-Attach error"))
    );
    assert_eq!(multi.involved_object.uid, creating.metadata.uid);
    events.get(&multi.name_any()).await.expect("get an event");
    let v1: Api<EventsV1> = Api::namespaced(client.clone(), "default");
    let same = v1
        .get(&multi.name_any())
        .await
        .expect("the same event in events.k8s.io");
    assert_eq!(
        same.regarding.and_then(|r| r.name).as_deref(),
        Some(POD_CREATING)
    );
    assert_eq!(
        v1.list(&ListParams::default())
            .await
            .expect("events")
            .items
            .len(),
        2
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get(NODE_DEAD).await.expect("the node's lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(NODE_DEAD)
    );
    assert_eq!(
        leases
            .list(&ListParams::default())
            .await
            .expect("leases")
            .items
            .len(),
        2
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: BTreeSet<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("namespaces")
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(names.contains("default") && names.contains("kube-system"));
    namespaces.get("default").await.expect("get a namespace");
    assert_eq!(api_code(pods.get("nope").await), 404);

    finish(running).await;
}

#[tokio::test]
async fn pod_watcher_sees_create_update_and_delete() {
    let (running, client) = start(&Scenario::seed()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(pods.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if sender.send(event).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        timeout(WAIT, events.recv())
            .await
            .expect("a watch event in time")
            .expect("the watcher runs")
            .expect("no watch error")
    };
    while !matches!(next().await, watcher::Event::InitDone) {}

    pods.create(&PostParams::default(), &pod_on("watched", NODE_LIVE))
        .await
        .expect("create");
    match next().await {
        watcher::Event::Apply(pod) => assert_eq!(pod.name_any(), "watched"),
        other => panic!("expected the created pod, got {other:?}"),
    }
    pods.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"step": "two"}}})),
    )
    .await
    .expect("patch");
    // The emulated kubelet of the live node may update the pod's status in between.
    loop {
        match next().await {
            watcher::Event::Apply(pod) if pod.labels().get("step").is_some() => {
                assert_eq!(pod.labels()["step"], "two");
                break;
            }
            watcher::Event::Apply(pod) => assert_eq!(pod.name_any(), "watched"),
            other => panic!("expected the updated pod, got {other:?}"),
        }
    }
    pods.delete("watched", &DeleteParams::default())
        .await
        .expect("delete");
    loop {
        match next().await {
            watcher::Event::Delete(pod) => {
                assert_eq!(pod.name_any(), "watched");
                break;
            }
            watcher::Event::Apply(pod) => assert_eq!(pod.name_any(), "watched"),
            other => panic!("expected the deletion, got {other:?}"),
        }
    }
    task.abort();
    finish(running).await;
}

fn emulator_nodes(running: &Running) -> BTreeSet<(String, String)> {
    running
        .world
        .lock()
        .kube
        .list("nodes")
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let version = n["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, version)
        })
        .collect()
}

/// How many times `path` was listed (watches left out).
fn lists(running: &Running, path: &str) -> usize {
    running
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == path
                && !r
                    .query
                    .as_deref()
                    .unwrap_or_default()
                    .contains("watch=true")
        })
        .count()
}

fn node_lists(running: &Running) -> usize {
    lists(running, "/api/v1/nodes")
}

#[tokio::test]
async fn node_reflector_stays_in_sync_through_changes_and_a_forced_relist() {
    let (running, client) = start(&Scenario::seed()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(nodes.clone(), watcher::Config::default()));
    let task = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    timeout(WAIT, reader.wait_until_ready())
        .await
        .expect("the reflector syncs in time")
        .expect("the reflector syncs");
    let in_sync = |reader: &reflector::Store<Node>| {
        let seen: BTreeSet<(String, String)> = reader
            .state()
            .iter()
            .map(|n| (n.name_any(), n.resource_version().unwrap_or_default()))
            .collect();
        seen == emulator_nodes(&running)
    };
    eventually("initial sync", || in_sync(&reader)).await;

    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "node-5"}})).expect("a node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create");
    eventually("create", || in_sync(&reader) && reader.state().len() == 3).await;
    nodes
        .patch(
            "node-5",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("patch");
    eventually("update", || in_sync(&reader)).await;
    running
        .world
        .lock()
        .kube
        .set_node_ready(NODE_DEAD, Readiness::True);
    eventually("a timeline step", || in_sync(&reader)).await;
    let revived = reader
        .state()
        .into_iter()
        .find(|n| n.name_any() == NODE_DEAD)
        .expect("the revived node");
    let conditions = revived
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    nodes
        .delete("node-5", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("delete", || in_sync(&reader) && reader.state().len() == 2).await;

    let lists_before = node_lists(&running);
    running.world.lock().kube.compact();
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "node-6"}})).expect("a node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create after compaction");
    eventually("relist after 410 Gone", || {
        in_sync(&reader) && reader.state().len() == 3 && node_lists(&running) > lists_before
    })
    .await;

    task.abort();
    finish(running).await;
}

#[tokio::test]
async fn watches_give_bookmarks_time_out_and_answer_410_for_compacted_history() {
    let (running, client) = start(&Scenario::seed()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = running.world.lock().kube.revision().to_string();

    let params = WatchParams::default().timeout(3);
    let mut stream = pods.watch(&params, &start).await.expect("watch").boxed();
    let first = timeout(WAIT, stream.try_next())
        .await
        .expect("an event in time");
    assert!(
        matches!(first, Ok(Some(WatchEvent::Bookmark(_)))),
        "a bookmark, got {first:?}"
    );
    let ended = timeout(WAIT, async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ends after timeoutSeconds");

    pods.patch(
        POD_CREATING,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .expect("patch");
    running.world.lock().kube.compact();
    let mut stream = pods
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();
    match timeout(WAIT, stream.try_next())
        .await
        .expect("an event in time")
    {
        Ok(Some(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    finish(running).await;
}

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().map(|t| t.key.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn merge_strategic_json_and_apply_patches_change_taints_and_annotations() {
    let (running, client) = start(&Scenario::seed()).await;
    let nodes: Api<Node> = Api::all(client.clone());

    let node = nodes
        .patch(
            NODE_DEAD,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"merge": "1"}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(node.annotations()["merge"], "1");
    assert!(
        node.annotations()
            .contains_key("csi.volume.kubernetes.io/nodeid")
    );

    let mut taints: Vec<Value> =
        serde_json::to_value(node.spec.as_ref().and_then(|s| s.taints.clone()))
            .expect("taints")
            .as_array()
            .cloned()
            .unwrap_or_default();
    taints.push(json!({"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}));
    let node = nodes
        .patch(
            NODE_DEAD,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"taints": taints}, "metadata": {"annotations": {"strategic": "2"}}})),
        )
        .await
        .expect("strategic merge patch");
    assert_eq!(taint_keys(&node).len(), 4);
    assert!(taint_keys(&node).contains(&"node.kubernetes.io/out-of-service".to_owned()));
    let node = nodes
        .patch(
            NODE_DEAD,
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"taints": [{"key": "only", "effect": "NoSchedule"}]}}),
            ),
        )
        .await
        .expect("strategic merge patch");
    assert_eq!(
        taint_keys(&node),
        ["only"],
        "taints are replaced, not merged"
    );
    assert_eq!(node.annotations()["strategic"], "2");

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/taints/-", "value": {"key": "json", "effect": "NoExecute"}},
        {"op": "remove", "path": "/metadata/annotations/merge"},
    ]))
    .expect("a JSON patch");
    let node = nodes
        .patch(NODE_DEAD, &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("JSON patch");
    assert_eq!(taint_keys(&node), ["only", "json"]);
    assert!(!node.annotations().contains_key("merge"));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}]))
            .expect("a JSON patch");
    assert_eq!(
        api_code(
            nodes
                .patch(
                    NODE_DEAD,
                    &PatchParams::default(),
                    &Patch::Json::<()>(failing)
                )
                .await
        ),
        422
    );

    let applied = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_DEAD, "annotations": {"applied": "3"}},
        "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]},
    });
    let node = nodes
        .patch(
            NODE_DEAD,
            &PatchParams::apply("sim-test").force(),
            &Patch::Apply(&applied),
        )
        .await
        .expect("server-side apply");
    assert_eq!(taint_keys(&node), ["node.kubernetes.io/out-of-service"]);
    assert_eq!(node.annotations()["applied"], "3");
    assert_eq!(node.annotations()["strategic"], "2");
    let stored = running
        .world
        .lock()
        .kube
        .get("nodes", None, NODE_DEAD)
        .cloned()
        .expect("stored");
    assert_eq!(stored["metadata"]["annotations"]["applied"], "3");
    assert_eq!(
        stored["status"]["conditions"][3]["status"], "Unknown",
        "the main resource leaves status alone"
    );
    let node = nodes
        .patch_status(
            NODE_DEAD,
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .expect("status patch");
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    assert_eq!(conditions.len(), 4, "conditions merge by type");
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    finish(running).await;
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_the_last_one_is_removed() {
    let (running, client) = start(&Scenario::seed()).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["example.com/a", "example.com/b"]},
        "spec": {"holderIdentity": "me"},
    }))
    .expect("a lease");
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    assert!(created.uid().is_some() && created.resource_version().is_some());
    assert_eq!(
        api_code(leases.create(&PostParams::default(), &lease).await),
        409,
        "AlreadyExists"
    );

    let generated: Lease =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).expect("a lease");
    let generated = leases
        .create(&PostParams::default(), &generated)
        .await
        .expect("create with generateName");
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    assert_eq!(
        generated.namespace().as_deref(),
        Some("default"),
        "from the path"
    );

    leases
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = leases.get("held").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        api_code(
            leases
                .patch(
                    "held",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/a", "example.com/b", "example.com/c"]}})),
                )
                .await
        ),
        422,
        "no new finalizers while deleting"
    );
    leases
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
            ),
        )
        .await
        .expect("remove one finalizer");
    assert_eq!(
        leases.get("held").await.expect("still there").finalizers(),
        ["example.com/b"]
    );
    leases
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the last finalizer");
    assert_eq!(api_code(leases.get("held").await), 404);
    finish(running).await;
}

#[tokio::test]
async fn preconditions_and_stale_replaces_conflict() {
    let (running, client) = start(&Scenario::seed()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(api_code(pods.delete(POD_TERMINATING, &wrong).await), 409);
    let pod = pods.get(POD_TERMINATING).await.expect("kept");
    let stale_version = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_code(pods.delete(POD_TERMINATING, &stale_version).await),
        409
    );
    let right = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    pods.delete(POD_TERMINATING, &right).await.expect("delete");
    assert_eq!(api_code(pods.get(POD_TERMINATING).await), 404);

    let nodes: Api<Node> = Api::all(client.clone());
    let old = nodes.get(NODE_LIVE).await.expect("node");
    nodes
        .patch(
            NODE_LIVE,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"changed": "yes"}}})),
        )
        .await
        .expect("a change in between");
    assert_eq!(
        api_code(nodes.replace(NODE_LIVE, &PostParams::default(), &old).await),
        409
    );
    let mut fresh = nodes.get(NODE_LIVE).await.expect("node");
    fresh.labels_mut().insert("replaced".into(), "yes".into());
    let replaced = nodes
        .replace(NODE_LIVE, &PostParams::default(), &fresh)
        .await
        .expect("replace with the current resourceVersion");
    assert_eq!(replaced.labels()["replaced"], "yes");
    assert_ne!(replaced.resource_version(), fresh.resource_version());
    finish(running).await;
}

#[tokio::test]
async fn pods_on_a_dead_node_stay_terminating_until_forced() {
    let (running, client) = start(&Scenario::seed()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod_on("on-dead", NODE_DEAD))
        .await
        .expect("create");
    pods.create(&PostParams::default(), &pod_on("on-live", NODE_LIVE))
        .await
        .expect("create");

    pods.delete("on-dead", &DeleteParams::default())
        .await
        .expect("graceful delete");
    let terminating = pods
        .get("on-dead")
        .await
        .expect("a dead kubelet never confirms");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("on-live", &DeleteParams::default())
        .await
        .expect("graceful delete");
    assert_eq!(
        api_code(pods.get("on-live").await),
        404,
        "a live kubelet confirms at once"
    );

    pods.delete("on-dead", &DeleteParams::default().grace_period(0))
        .await
        .expect("force delete");
    assert_eq!(api_code(pods.get("on-dead").await), 404);

    running
        .world
        .lock()
        .kube
        .set_node_ready(NODE_DEAD, Readiness::True);
    assert_eq!(
        api_code(pods.get(POD_TERMINATING).await),
        404,
        "the kubelet of a node that is back finishes its terminating pods"
    );
    finish(running).await;
}

#[tokio::test]
async fn field_and_label_selectors_filter_lists() {
    let (running, client) = start(&still(Scenario::seed())).await;
    let pods: Api<Pod> = Api::all(client.clone());
    let names = async |params: ListParams| -> Vec<String> {
        pods.list(&params)
            .await
            .expect("list")
            .iter()
            .map(ResourceExt::name_any)
            .collect()
    };
    assert_eq!(
        names(ListParams::default().fields(&format!("spec.nodeName={NODE_DEAD}"))).await,
        [POD_TERMINATING]
    );
    assert_eq!(
        names(ListParams::default().fields(&format!(
            "spec.nodeName!={NODE_DEAD},metadata.namespace=default"
        )))
        .await,
        [POD_CREATING]
    );
    assert_eq!(
        names(ListParams::default().fields(&format!("metadata.name={POD_CREATING}"))).await,
        [POD_CREATING]
    );
    assert_eq!(
        names(ListParams::default().labels("app=test-cinder"))
            .await
            .len(),
        2
    );
    assert_eq!(
        names(ListParams::default().labels("app in (web, test-cinder)"))
            .await
            .len(),
        2
    );
    assert!(
        names(ListParams::default().labels("app notin (test-cinder)"))
            .await
            .is_empty()
    );
    assert!(
        names(ListParams::default().labels("app!=test-cinder"))
            .await
            .is_empty()
    );
    assert!(names(ListParams::default().labels("!app")).await.is_empty());
    assert_eq!(
        names(ListParams::default().labels("app,!missing"))
            .await
            .len(),
        2
    );

    let events: Api<CoreEvent> = Api::all(client.clone());
    let pod_uid = uid("Pod", "default", POD_CREATING);
    let about = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={POD_CREATING},involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid={pod_uid}"
        )))
        .await
        .expect("events of the pod");
    assert_eq!(about.items.len(), 2);
    assert_eq!(
        api_code(pods.list(&ListParams::default().labels("app in web")).await),
        400
    );
    finish(running).await;
}

#[tokio::test]
async fn recorder_events_are_created_and_list_back_in_both_event_apis() {
    let (running, client) = start(&Scenario::seed()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.get(POD_TERMINATING).await.expect("pod");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "cinder-remediator".into(),
            instance: Some("test".into()),
        },
    );
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "ReleasedVolume".into(),
        note: Some("detached from the dead server".into()),
        action: "Detach".into(),
        secondary: None,
    };
    let reference = pod.object_ref(&());
    recorder.publish(&event, &reference).await.expect("publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("publish again (a series)");

    let v1: Api<EventsV1> = Api::namespaced(client.clone(), "default");
    let mine: Vec<EventsV1> = v1
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ReleasedVolume"))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].regarding.as_ref().and_then(|r| r.uid.clone()),
        pod.uid()
    );
    assert_eq!(mine[0].series.as_ref().map(|s| s.count), Some(2));
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=test-cinder-56bdb546dd-56mct"))
        .await
        .expect("core events");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("detached from the dead server")
    );
    assert_eq!(
        listed.items[0].reporting_component.as_deref(),
        Some("cinder-remediator")
    );
    finish(running).await;
}

#[tokio::test]
async fn kubectl_gets_tables_with_the_columns_it_prints() {
    let (running, _client) = start(&Scenario::seed()).await;
    let http = http(&running);
    let table = async |path: &str| -> Value {
        http.get(format!("{}{path}", running.endpoints.kubernetes))
            .header(
                "Accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            )
            .send()
            .await
            .expect("a response")
            .json()
            .await
            .expect("JSON")
    };
    let pods = table("/api/v1/pods").await;
    assert_eq!(pods["kind"], "Table");
    assert_eq!(pods["apiVersion"], "meta.k8s.io/v1");
    let columns: Vec<(&str, u64)> = pods["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["priority"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
    );
    let rows = pods["rows"].as_array().expect("rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["cells"][0] == name)
            .map(|r| r["cells"].clone())
            .expect("a row")
    };
    assert_eq!(row(POD_TERMINATING)[2], "Terminating");
    assert_eq!(row(POD_TERMINATING)[6], NODE_DEAD);
    assert_eq!(row(POD_CREATING)[2], "ContainerCreating");
    assert_eq!(row(POD_CREATING)[1], "0/1");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["metadata"]["namespace"], "default");

    let nodes = table("/api/v1/nodes").await;
    let dead = nodes["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == NODE_DEAD)
        .expect("row")
        .clone();
    assert_eq!(dead["cells"][1], "NotReady");
    assert_eq!(dead["cells"][4], "v1.33.4");
    assert_eq!(dead["cells"][5], "10.0.0.14");
    let vas = table("/apis/storage.k8s.io/v1/volumeattachments").await;
    assert_eq!(vas["rows"][0]["cells"][1], CINDER_DRIVER);
    assert_eq!(vas["rows"][0]["cells"][2], PV);
    assert_eq!(vas["rows"][0]["cells"][3], NODE_DEAD);
    assert_eq!(vas["rows"][0]["cells"][4], true);
    let events = table("/api/v1/events").await;
    let event_row = events["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][2] == "FailedAttachVolume")
        .expect("row")
        .clone();
    assert_eq!(event_row["cells"][3], format!("pod/{POD_CREATING}"));
    let one = table(&format!("/api/v1/namespaces/default/pods/{POD_CREATING}")).await;
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
    finish(running).await;
}

#[tokio::test]
async fn malformed_requests_get_status_errors() {
    let (running, _client) = start(&Scenario::seed()).await;
    let http = http(&running);
    let base = &running.endpoints.kubernetes;
    let send = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a Status body"))
    };
    let (code, body) = send(
        http.post(format!("{base}/api/v1/namespaces/default/pods"))
            .header("Content-Type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!((code, body["kind"].as_str()), (400, Some("Status")));
    let (code, _) = send(
        http.patch(format!("{base}/api/v1/nodes/{NODE_DEAD}"))
            .header("Content-Type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(code, 415);
    let (code, _) = send(
        http.patch(format!("{base}/api/v1/nodes/{NODE_DEAD}"))
            .header("Content-Type", "application/apply-patch+yaml")
            .body("metadata: {}"),
    )
    .await;
    assert_eq!(code, 422, "apply needs a fieldManager");
    let (code, _) = send(
        http.put(format!("{base}/api/v1/nodes/{NODE_DEAD}"))
            .header("Content-Type", "application/json")
            .body(r#"{"metadata": {"name": "other"}}"#),
    )
    .await;
    assert_eq!(code, 400);
    let (code, body) = send(http.get(format!("{base}/api/v1/widgets"))).await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, _) = send(
        http.post(format!("{base}/api/v1/namespaces/nowhere/pods"))
            .header("Content-Type", "application/json")
            .body(r#"{"metadata": {"name": "p"}}"#),
    )
    .await;
    assert_eq!(code, 404, "the namespace must exist");
    let (code, _) =
        send(http.get(format!("{base}/api/v1/pods?watch=true&resourceVersion=abc"))).await;
    assert_eq!(code, 400);
    let (code, body) = send(http.get(format!("{base}/apis"))).await;
    assert_eq!((code, body["kind"].as_str()), (200, Some("APIGroupList")));
    finish(running).await;
}

#[tokio::test]
async fn deleting_the_seed_attachment_detaches_the_volume_then_releases_it() {
    // Needs the OpenStack side of the world (`Cloud::attacher_detach`, `is_attached`): fails
    // against its stubs, passes once the cloud emulator is merged.
    let (running, client) = start(&Scenario::seed()).await;
    assert!(
        running.world.lock().cloud.is_attached(VOLUME, SERVER_DEAD),
        "the seed volume starts attached to the dead server"
    );
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let name = attachment_name(VOLUME, CINDER_DRIVER, NODE_DEAD);
    let marked = vas
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("the object, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.finalizers(),
        ["external-attacher/cinder-csi-openstack-org"]
    );
    assert!(
        vas.get(&name).await.is_ok(),
        "kept while the cloud detaches"
    );
    let mut gone = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if api_code_or_ok(vas.get(&name).await) == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the attacher releases the VolumeAttachment");
    assert!(!running.world.lock().cloud.is_attached(VOLUME, SERVER_DEAD));
    finish(running).await;
}

#[tokio::test]
async fn an_attacher_that_is_down_leaves_a_deleted_attachment_with_its_finalizer() {
    let mut seed = Scenario::seed();
    seed.kubernetes
        .controllers
        .insert("csi-attacher".to_owned(), false);
    let (running, client) = start(&seed).await;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let name = attachment_name(VOLUME, CINDER_DRIVER, NODE_DEAD);
    vas.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kept = vas.get(&name).await.expect("still there");
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert_eq!(
        kept.finalizers(),
        ["external-attacher/cinder-csi-openstack-org"]
    );
    assert!(running.world.lock().cloud.is_attached(VOLUME, SERVER_DEAD));
    let attacher_calls: Vec<_> = running
        .requests()
        .into_iter()
        .filter(|r| r.by == Some("csi-attacher"))
        .collect();
    assert!(
        attacher_calls.is_empty(),
        "nothing asked the cloud to detach: {attacher_calls:?}"
    );
    finish(running).await;
}

#[tokio::test]
async fn secrets_and_services_get_the_api_servers_defaults() {
    let (running, client) = start(&Scenario::seed()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cloud-config"},
        "stringData": {"cloud.conf": "[Global]\n"},
    }))
    .expect("a Secret");
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("created");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(created.string_data.is_none(), "stringData is never stored");
    let data = created.data.expect("data");
    assert_eq!(data["cloud.conf"].0, b"[Global]\n");

    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let service = |name: &str| -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "admin", "port": 8080}]},
        }))
        .expect("a Service")
    };
    let first = services
        .create(&PostParams::default(), &service("metrics"))
        .await
        .expect("created");
    let spec = first.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.2"));
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.2".to_owned()]));
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    let second = services
        .create(&PostParams::default(), &service("other"))
        .await
        .expect("created");
    assert_eq!(
        second.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("10.96.0.3")
    );
    // A replace without the address keeps it.
    let mut replaced = service("metrics");
    replaced.metadata.resource_version = first.metadata.resource_version;
    let kept = services
        .replace("metrics", &PostParams::default(), &replaced)
        .await
        .expect("replaced");
    assert_eq!(
        kept.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("10.96.0.2")
    );
    finish(running).await;
}

fn api_code_or_ok<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(_) => 0,
    }
}

#[tokio::test]
async fn the_attacher_leaves_other_drivers_alone() {
    let (running, client) = start(&scenario(
        "
name: other-driver
kubernetes:
  nodes:
    - {name: n1, ready: \"True\"}
  persistent_volumes:
    - name: pv-other
      csi: {driver: other.csi.example.com, volume_handle: vol-1}
  volume_attachments:
    - {pv: pv-other, node: n1}
",
    ))
    .await;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let name = attachment_name("vol-1", "other.csi.example.com", "n1");
    let va = vas.get(&name).await.expect("the VA");
    assert_eq!(va.finalizers(), ["external-attacher/other-csi-example-com"]);
    vas.delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kept = vas.get(&name).await.expect("still there");
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert!(kept.status.and_then(|s| s.detach_error).is_none());
    finish(running).await;
}

#[tokio::test]
async fn the_attacher_reports_a_detach_it_cannot_do_and_keeps_trying() {
    let (running, client) = start(&Scenario::seed()).await;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let va: VolumeAttachment = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "finalizers": ["external-attacher/cinder-csi-openstack-org"]},
        "spec": {"attacher": CINDER_DRIVER, "nodeName": NODE_LIVE,
                 "source": {"persistentVolumeName": "no-such-pv"}},
    }))
    .expect("a VA");
    vas.create(&PostParams::default(), &va)
        .await
        .expect("create");
    vas.delete("orphan", &DeleteParams::default())
        .await
        .expect("delete");
    let mut first_error_time = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let current = vas
            .get("orphan")
            .await
            .expect("kept while the detach fails");
        let error = current.status.and_then(|s| s.detach_error);
        match (&first_error_time, error.and_then(|e| e.time)) {
            (None, Some(time)) => first_error_time = Some(time),
            (Some(first), Some(time)) if time != *first => break,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a detachError, rewritten on a retry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(running).await;
}

/// Twelve pods over two nodes and two namespaces; the ones on `node-a` are `tier: db`.
fn twelve_pods() -> Scenario {
    let mut yaml = String::from(
        "name: paging\nkubernetes:\n  nodes: [{name: node-a}, {name: node-b}]\n  pods:\n",
    );
    for i in 0..12 {
        let namespace = if i < 8 { "default" } else { "team" };
        let (node, tier) = if i % 3 == 0 {
            ("node-a", "db")
        } else {
            ("node-b", "web")
        };
        yaml.push_str(&format!(
            "    - {{name: pod-{i:02}, namespace: {namespace}, node: {node}, labels: {{tier: {tier}}}}}\n"
        ));
    }
    scenario(&yaml)
}

/// Reads every page of a list over HTTP, `limit` at a time: the names, in order, and each
/// page's metadata.
async fn pages(http: &reqwest::Client, url: &str, limit: usize) -> (Vec<String>, Vec<Value>) {
    let mut names = Vec::new();
    let mut metadata = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(token.take().map(|token| ("continue", token)));
        let page: Value = http
            .get(url)
            .query(&query)
            .send()
            .await
            .expect("a response")
            .json()
            .await
            .expect("a list");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit, "{page}");
        names.extend(items.iter().map(|item| {
            item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }));
        token = page["metadata"]["continue"].as_str().map(str::to_owned);
        metadata.push(page["metadata"].clone());
        if token.is_none() {
            return (names, metadata);
        }
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_as_the_api_server_does() {
    let (running, client) = start(&twelve_pods()).await;
    let http = http(&running);
    let base = running.endpoints.kubernetes.clone();
    let all = |url: &str| {
        let url = url.to_owned();
        let http = http.clone();
        async move {
            let list: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
            assert!(list["metadata"].get("continue").is_none(), "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };

    // Without selectors: pages of 5, 5 and 2, with the count of what remains, every page at
    // the resourceVersion of the first.
    let url = format!("{base}/api/v1/pods");
    let (names, metadata) = pages(&http, &url, 5).await;
    assert_eq!(names, all(&url).await);
    assert_eq!(names.len(), 12);
    let remaining: Vec<Option<u64>> = metadata
        .iter()
        .map(|m| m["remainingItemCount"].as_u64())
        .collect();
    assert_eq!(remaining, [Some(7), Some(2), None]);
    assert!(
        metadata
            .iter()
            .all(|m| m["resourceVersion"] == metadata[0]["resourceVersion"])
    );
    // A page that ends exactly at the end has no continue.
    let (_, metadata) = pages(&http, &url, 6).await;
    assert_eq!(metadata.len(), 2);
    let (names, metadata) = pages(&http, &format!("{base}/api/v1/namespaces/team/pods"), 3).await;
    assert_eq!(names, ["pod-08", "pod-09", "pod-10", "pod-11"]);
    assert_eq!(metadata[0]["remainingItemCount"], 1);

    // With selectors the limit counts matching objects, and what remains is not counted.
    for selector in [
        "fieldSelector=spec.nodeName%3Dnode-a",
        "labelSelector=tier%3Ddb",
    ] {
        let url = format!("{base}/api/v1/pods?{selector}");
        let (names, metadata) = pages(&http, &url, 2).await;
        assert_eq!(
            names,
            ["pod-00", "pod-03", "pod-06", "pod-09"],
            "{selector}"
        );
        assert_eq!(names, all(&url).await);
        assert_eq!(metadata.len(), 2, "{selector}");
        assert!(
            metadata
                .iter()
                .all(|m| m.get("remainingItemCount").is_none())
        );
    }

    // Later pages are served from the present: a pod created after the cursor shows up.
    let first: Value = http
        .get(format!("{url}?limit=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    pods.create(&PostParams::default(), &pod_on("pod-99", "node-a"))
        .await
        .expect("create");
    let rest: Value = http
        .get(&url)
        .query(&[("limit", "100"), ("continue", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(rest.len(), 10);
    assert_eq!(rest.last(), Some(&"pod-99"));

    // kubectl's chunked Table lists carry the token too.
    let table: Value = http
        .get(format!("{url}?limit=4"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(4));
    assert!(table["metadata"]["continue"].is_string());
    assert_eq!(table["metadata"]["remainingItemCount"], 9);
    finish(running).await;
}

#[tokio::test]
async fn a_continue_token_the_server_did_not_write_is_a_bad_request() {
    let (running, _client) = start(&twelve_pods()).await;
    let http = http(&running);
    let url = format!("{}/api/v1/pods", running.endpoints.kubernetes);
    let get = async |query: &[(&str, &str)]| -> (u16, Value) {
        let response = http
            .get(&url)
            .query(query)
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    };
    for token in ["not base64!", "bm90IGpzb24", "e30"] {
        let (code, body) = get(&[("limit", "5"), ("continue", token)]).await;
        assert_eq!(
            (code, body["reason"].as_str()),
            (400, Some("BadRequest")),
            "{token}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("invalid continue token: continue key is not valid"),
            "{message}"
        );
    }
    let (_, first) = get(&[("limit", "5")]).await;
    let token = first["metadata"]["continue"].as_str().expect("a token");
    let (code, body) = get(&[
        ("limit", "5"),
        ("continue", token),
        ("resourceVersion", "3"),
    ])
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "specifying resource version is not allowed when using continue"
    );
    let (code, _) = get(&[("limit", "many")]).await;
    assert_eq!(code, 400);
    finish(running).await;
}

#[tokio::test]
async fn the_kube_client_and_watcher_page_through_lists() {
    let (running, client) = start(&twelve_pods()).await;
    let pods: Api<Pod> = Api::all(client.clone());
    let first = pods
        .list(&ListParams::default().limit(5))
        .await
        .expect("a first page");
    assert_eq!(first.items.len(), 5);
    assert_eq!(first.metadata.remaining_item_count, Some(7));
    let token = first.metadata.continue_.expect("a continue token");
    let second = pods
        .list(&ListParams::default().limit(5).continue_token(&token))
        .await
        .expect("a second page");
    assert_eq!(second.items[0].name_any(), "pod-05");
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );

    let lists_before = pod_lists(&running);
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().page_size(3);
    let stream = reflector(writer, watcher(pods.clone(), config));
    let task = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    timeout(WAIT, reader.wait_until_ready())
        .await
        .expect("the reflector syncs in time")
        .expect("the reflector syncs");
    assert_eq!(reader.state().len(), 12);
    assert_eq!(
        pod_lists(&running) - lists_before,
        4,
        "twelve pods, three a page"
    );
    task.abort();
    finish(running).await;
}

fn pod_lists(running: &Running) -> usize {
    lists(running, "/api/v1/pods")
}
