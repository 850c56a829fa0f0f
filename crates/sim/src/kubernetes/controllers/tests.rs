//! Contract tests of the emulated Kubernetes controllers: each drives the world's clock and
//! checks one rule of the real controller.

use std::path::Path;

use serde_json::Value;

use super::{name, node_name, phase, pods, terminating, volume_attachments};
use crate::kubernetes::store::{DeleteOptions, Part, set_path};
use crate::kubernetes::{CINDER_DRIVER, attachment_name, uid};
use crate::scenario::Scenario;
use crate::world::{State, World};

const VOLUME: &str = "0d000000-0000-4000-8000-000000000001";
const SERVER_A: &str = "5a000000-0000-4000-8000-00000000000a";
const SERVER_B: &str = "5b000000-0000-4000-8000-00000000000b";
const PV: &str = "pvc-data";

/// Two nodes on two servers: node-a (its state given) holds the volume with `pods_a`; node-b is
/// Ready with `pods_b`.
fn world(node_a_ready: &str, pods: &str, extra: &str) -> World {
    let va = format!("    - {{pv: {PV}, node: node-a}}");
    world_with(node_a_ready, pods, &va, extra)
}

/// As [`world`], with the VolumeAttachments given.
fn world_with(node_a_ready: &str, pods: &str, vas: &str, extra: &str) -> World {
    let yaml = format!(
        r#"
name: t
openstack:
  compute_hosts: [{{name: c1, state: up}}, {{name: c2, state: up}}]
  servers:
    - {{id: {SERVER_A}, name: node-a, status: SHUTOFF, host: c1}}
    - {{id: {SERVER_B}, name: node-b, status: ACTIVE, host: c2}}
  volumes:
    - {{id: {VOLUME}, attachments: [{{server: {SERVER_A}}}]}}
  behaviour: {{detach_seconds: 1}}
kubernetes:
  nodes:
    - {{name: node-a, provider_id: "openstack:///{SERVER_A}", ready: {node_a_ready}, ready_since: 1m}}
    - {{name: node-b, provider_id: "openstack:///{SERVER_B}", ready: "True", ready_since: 1d}}
  persistent_volumes:
    - {{name: {PV}, csi: {{driver: cinder.csi.openstack.org, volume_handle: {VOLUME}}}, claim: default/data}}
  pods:
{pods}
  volume_attachments:
{vas}
{extra}
"#
    );
    World::new(&Scenario::parse(&yaml, Path::new("t.yaml")).expect("a valid scenario"))
}

const OLD_ON_A: &str = "    - {name: web-abc12, node: node-a, terminating: true, claims: [data], owner: {kind: ReplicaSet, name: web}}";

fn pods_of(state: &State) -> Vec<Value> {
    state.kube.list("pods").into_iter().cloned().collect()
}

fn va_on(state: &State, node: &str) -> Option<Value> {
    state
        .kube
        .get(
            "volumeattachments",
            None,
            &attachment_name(VOLUME, CINDER_DRIVER, node),
        )
        .cloned()
}

fn events(state: &State, reason: &str) -> Vec<Value> {
    state
        .kube
        .list("events")
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .cloned()
        .collect()
}

fn force_delete(state: &mut State, pod: &str) {
    let options = DeleteOptions {
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    state
        .kube
        .delete(
            pods(),
            Some("default"),
            pod,
            &options,
            jiff::Timestamp::now(),
        )
        .expect("deleted");
}

/// Steps the clock from `from` to `to` in loop periods, so every controller gets its passes.
fn run(world: &World, from: u64, to: u64) {
    let mut at = from;
    while at <= to {
        drop(world.lock_at(at));
        at += 100;
    }
}

#[test]
fn a_replicaset_replaces_a_pod_marked_for_deletion_once() {
    let world = world("Unknown", OLD_ON_A, "");
    run(&world, 0, 1000);
    let state = world.lock_at(1000);
    let pods = pods_of(&state);
    let new: Vec<&Value> = pods.iter().filter(|p| name(p) != "web-abc12").collect();
    assert_eq!(new.len(), 1, "one replacement: {pods:#?}");
    let new = new[0];
    assert!(name(new).starts_with("web-") && name(new).len() == "web-".len() + 5);
    assert_ne!(new["metadata"]["uid"], uid("Pod", "default", "web-abc12"));
    assert_eq!(new["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(
        new["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data"
    );
    let created = events(&state, "SuccessfulCreate");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["source"]["component"], "replicaset-controller");
}

#[test]
fn a_statefulset_recreates_its_pod_under_the_same_name_only_once_the_old_one_is_gone() {
    let pods = "    - {name: db-0, node: node-a, terminating: true, claims: [data], owner: {kind: StatefulSet, name: db}}";
    let world = world("Unknown", pods, "");
    run(&world, 0, 1000);
    {
        let mut state = world.lock_at(1000);
        assert_eq!(pods_of(&state).len(), 1, "the old pod still stands");
        force_delete(&mut state, "db-0");
    }
    run(&world, 1100, 2000);
    let state = world.lock_at(2000);
    let pod = state
        .kube
        .get("pods", Some("default"), "db-0")
        .expect("db-0 again");
    assert_ne!(pod["metadata"]["uid"], uid("Pod", "default", "db-0"));
    assert_eq!(events(&state, "SuccessfulCreate").len(), 1);
}

#[test]
fn the_scheduler_binds_to_a_ready_untainted_node_of_the_volume_zone() {
    let extra = "\n".to_owned();
    let pods = "    - {name: web-new01, phase: Pending, claims: [data], owner: {kind: ReplicaSet, name: web}}";
    // node-a: not Ready and tainted unreachable; node-b: Ready in the volume's zone (nova).
    let world = world("Unknown", pods, &extra);
    run(&world, 0, 500);
    let state = world.lock_at(500);
    let pod = state
        .kube
        .get("pods", Some("default"), "web-new01")
        .unwrap();
    assert_eq!(node_name(pod), Some("node-b"));
    assert_eq!(events(&state, "Scheduled").len(), 1);
}

#[test]
fn the_scheduler_keeps_a_pod_off_a_node_of_another_zone() {
    let world = world("Unknown", "", "");
    {
        let mut state = world.lock_at(0);
        let mut node = state.kube.get("nodes", None, "node-b").unwrap().clone();
        set_path(
            &mut node,
            &["metadata", "labels", "topology.kubernetes.io/zone"],
            "az-2".into(),
        );
        super::write(&mut state.kube, super::nodes(), node, Part::Main);
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-new01"},
            "spec": {"containers": [{"name": "app", "image": "pause"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        });
        state
            .kube
            .create(pods(), Some("default"), pod, jiff::Timestamp::now())
            .unwrap();
    }
    run(&world, 100, 600);
    let state = world.lock_at(600);
    let pod = state
        .kube
        .get("pods", Some("default"), "web-new01")
        .unwrap();
    assert_eq!(node_name(pod), None);
    let failed = events(&state, "FailedScheduling");
    assert_eq!(failed.len(), 1);
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("0/2 nodes are available:")
            && message.contains("1 node(s) had volume node affinity conflict")
            && message
                .contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        "{message}"
    );
    assert_eq!(failed[0]["count"], 1, "told once, not at every pass");
}

/// The replacement waits on the Multi-Attach error while the controller believes the volume
/// attached to node-a; a VolumeAttachment deleted behind its back counts only at its next
/// sync (1 min); then the volume is attached through Nova and the pod runs.
#[test]
fn multi_attach_holds_until_the_sync_then_the_replacement_attaches_and_runs() {
    let pods = format!(
        "{OLD_ON_A}\n    - {{name: web-new01, node: node-b, phase: Pending, claims: [data], owner: {{kind: ReplicaSet, name: web}}}}"
    );
    let world = world("Unknown", &pods, "");
    run(&world, 0, 2000);
    {
        let state = world.lock_at(2000);
        assert!(va_on(&state, "node-b").is_none());
        let multi = events(&state, "FailedAttachVolume");
        assert_eq!(multi.len(), 1, "{multi:#?}");
        assert_eq!(multi[0]["count"], 1, "told once");
        assert_eq!(
            multi[0]["message"],
            format!(
                "Multi-Attach error for volume \"{PV}\" Volume is already used by pod(s) web-abc12"
            )
        );
    }
    // What the product does: release the volume, delete the VolumeAttachment and the pod.
    {
        let mut state = world.lock_at(2100);
        state.cloud.detach(SERVER_A, VOLUME, 2100).unwrap();
        let va = va_on(&state, "node-a").unwrap();
        state
            .kube
            .delete(
                volume_attachments(),
                None,
                name(&va),
                &DeleteOptions::default(),
                jiff::Timestamp::now(),
            )
            .unwrap();
        force_delete(&mut state, "web-abc12");
    }
    run(&world, 2200, 59_000);
    {
        let state = world.lock_at(59_000);
        assert!(va_on(&state, "node-a").is_none(), "the attacher let it go");
        assert!(
            va_on(&state, "node-b").is_none(),
            "before its sync the controller still sees the volume on node-a"
        );
    }
    run(&world, 59_100, 64_000);
    let state = world.lock_at(64_000);
    let va = va_on(&state, "node-b").expect("attached after the sync");
    assert_eq!(va["status"]["attached"], true);
    assert!(state.cloud.is_attached_complete(VOLUME, SERVER_B));
    let pod = state
        .kube
        .get("pods", Some("default"), "web-new01")
        .unwrap();
    assert_eq!(phase(pod), "Running");
    assert_eq!(events(&state, "SuccessfulAttachVolume").len(), 1);
    let node = state.kube.get("nodes", None, "node-b").unwrap();
    assert_eq!(
        node["status"]["volumesAttached"][0]["name"],
        format!("kubernetes.io/csi/{CINDER_DRIVER}^{VOLUME}")
    );
    // The attacher's Nova calls are in the request log, as its own, not a client's: one attach
    // to node-b's server; no detach of a volume the product had already released.
    let calls: Vec<String> = state
        .requests()
        .iter()
        .filter(|r| r.by == Some("csi-attacher"))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert_eq!(
        calls,
        [format!(
            "POST /v2.1/servers/{SERVER_B}/os-volume_attachments 200"
        )]
    );
    assert!(state.requests().iter().all(|r| !r.is_mutating()));
}

/// With the out-of-service taint, pod GC force-deletes the Terminating pod at its next run (20 s)
/// and the controller deletes the VolumeAttachment at once; without it, only after 6 minutes.
#[test]
fn out_of_service_detaches_at_once_else_after_six_minutes() {
    for tainted in [true, false] {
        let world = world("Unknown", OLD_ON_A, "");
        if tainted {
            let mut state = world.lock_at(0);
            let mut node = state.kube.get("nodes", None, "node-a").unwrap().clone();
            let mut taints = node["spec"]["taints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            taints.push(serde_json::json!({"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}));
            set_path(&mut node, &["spec", "taints"], Value::Array(taints));
            super::write(&mut state.kube, super::nodes(), node, Part::Main);
        } else {
            force_delete(&mut world.lock_at(0), "web-abc12");
        }
        let gone_or_going =
            |at: u64| va_on(&world.lock_at(at), "node-a").is_none_or(|va| terminating(&va));
        run(&world, 100, 25_000);
        assert!(
            world
                .lock_at(25_000)
                .kube
                .get("pods", Some("default"), "web-abc12")
                .is_none(),
            "pod GC (tainted {tainted})"
        );
        assert_eq!(gone_or_going(25_000), tainted, "tainted {tainted}");
        if !tainted {
            run(&world, 25_100, 359_000);
            assert!(!gone_or_going(359_000));
            run(&world, 359_100, 361_000);
            assert!(gone_or_going(361_000));
        }
    }
}

#[test]
fn the_attacher_refuses_a_disk_attached_to_a_different_instance() {
    let pods = "    - {name: web-new01, node: node-b, phase: Pending, claims: [data], owner: {kind: ReplicaSet, name: web}}";
    // No pod on node-a, and no VolumeAttachment there the controller knows of: it attaches to
    // node-b, and the attacher finds the disk on server A.
    let world = world_with("Unknown", pods, "", "");
    run(&world, 0, 3000);
    let state = world.lock_at(3000);
    let va = va_on(&state, "node-b").expect("created");
    assert_eq!(
        va["status"]["attachError"]["message"],
        format!(
            "rpc error: code = Internal desc = [ControllerPublishVolume] Attach Volume failed with error disk {VOLUME} is attached to a different instance ({SERVER_A})"
        )
    );
    let pod = state
        .kube
        .get("pods", Some("default"), "web-new01")
        .unwrap();
    assert_eq!(phase(pod), "Pending");
    let failed = events(&state, "FailedAttachVolume");
    assert!(
        failed.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("AttachVolume.Attach failed")),
        "{failed:#?}"
    );
}

#[test]
fn a_kubelet_on_a_node_that_is_not_ready_changes_nothing() {
    let pods = "    - {name: web-x, node: node-a, phase: Pending, claims: [data], owner: {kind: ReplicaSet, name: web}}";
    let world = world("Unknown", pods, "");
    run(&world, 0, 3000);
    let state = world.lock_at(3000);
    let pod = state.kube.get("pods", Some("default"), "web-x").unwrap();
    assert_eq!(phase(pod), "Pending");
    assert!(pod["status"].get("hostIP").is_none());
}

#[test]
fn taint_eviction_honours_the_tolerations() {
    let pods = "    - {name: short, node: node-a, claims: [data], tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, toleration_seconds: 0}]}\n    - {name: default, node: node-a, claims: [data]}";
    let world = world("Unknown", pods, "");
    run(&world, 0, 500);
    let state = world.lock_at(500);
    let short = state.kube.get("pods", Some("default"), "short").unwrap();
    let default = state.kube.get("pods", Some("default"), "default").unwrap();
    assert!(terminating(short), "tolerated for 0 s: evicted");
    assert!(!terminating(default), "tolerated for 300 s from the taint");
    let evicted = events(&state, "TaintManagerEviction");
    assert_eq!(evicted.len(), 1);
    assert_eq!(
        evicted[0]["message"],
        "Marking for deletion Pod default/short"
    );
}

#[test]
fn switched_off_controllers_do_nothing() {
    let world = world("Unknown", OLD_ON_A, "  controllers: {replicaset: false}");
    run(&world, 0, 1000);
    assert_eq!(pods_of(&world.lock_at(1000)).len(), 1);
}

/// The kubelet of a Ready node whose server runs renews its Lease every 10 s; the kubelet of a
/// node whose server shut off renews nothing, though its node still shows Ready.
#[test]
fn a_kubelet_renews_its_lease_while_its_server_runs() {
    let world = world("\"True\"", "", "");
    let renewed = |world: &World, node: &str| {
        world
            .lock()
            .kube
            .get("leases", Some("kube-node-lease"), node)
            .unwrap()["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    // The first pass (at the start) renewed node-b's Lease.
    run(&world, 0, 100);
    let (a0, b0) = (renewed(&world, "node-a"), renewed(&world, "node-b"));
    run(&world, 200, 9_900);
    assert_eq!(renewed(&world, "node-b"), b0, "not again within 10 s");
    run(&world, 10_000, 10_100);
    assert!(renewed(&world, "node-b") > b0, "again after 10 s");
    // node-a (SHUTOFF, still shown Ready): its kubelet is dead.
    assert_eq!(renewed(&world, "node-a"), a0);
}
