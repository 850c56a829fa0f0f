//! The emulated LINSTOR controller and the emulated external-attacher of
//! `linstor.csi.linbit.com`, driven over HTTP with reqwest and the `kube` client: the JSON
//! shapes LINSTOR's REST API gives, its list filters and paging, a satellite lost on the
//! timeline, a controller that fails (500, a hung endpoint, a refused connection with a backup
//! endpoint), a LINSTOR volume attached end to end by Kubernetes' emulated controllers, and the
//! attacher's finalizer life-cycle.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use reqwest::StatusCode;
use serde_json::Value;
use sim::kubernetes::{LINSTOR_DRIVER, attachment_name};
use sim::scenario::{Fault, Service};
use sim::{self, Running, Scenario};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const FINALIZER: &str = "external-attacher/linstor-csi-linbit-com";

/// Two diskful replicas and a tie-breaker; the Primary is on `n1`; `n1` goes OFFLINE at 0.4 s.
const QUORUM: &str = r"
name: linstor-quorum
linstor:
  nodes:
    - {name: n1}
    - {name: n2}
    - {name: n3}
    - {name: n4, connection_status: OFFLINE}
  resources:
    - {name: pvc-data, node: n1, in_use: true}
    - {name: pvc-data, node: n2}
    - {name: pvc-data, node: n3, kind: tie-breaker}
    - {name: pvc-other, node: n2, promotion_score: 42}
    - {name: pvc-other, node: n4}
timeline:
  - {at: 400ms, linstor_node: {node: n1, connection_status: OFFLINE}}
";

fn scenario(yaml: &str) -> Scenario {
    Scenario::parse(yaml, Path::new("inline.yaml")).expect("a valid scenario")
}

async fn finish(running: Running) {
    timeout(WAIT, running.shutdown())
        .await
        .expect("the emulators stop");
}

fn linstor(running: &Running) -> String {
    running
        .endpoints
        .linstor
        .clone()
        .expect("a LINSTOR endpoint")
}

async fn get(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.expect("LINSTOR answers");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn replica<'a>(list: &'a Value, name: &str, node: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|r| r["name"] == name && r["node_name"] == node)
        .unwrap_or_else(|| panic!("no replica of {name} on {node} in {list}"))
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Polls `check` until it holds, for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nodes_and_resources_have_the_shapes_linstor_gives() {
    let running = sim::serve(&scenario(QUORUM))
        .await
        .expect("emulators start");
    let base = linstor(&running);

    let (status, nodes) = get(&format!("{base}/v1/nodes")).await;
    assert_eq!(status, StatusCode::OK);
    let n1 = &nodes[0];
    for key in [
        "name",
        "type",
        "props",
        "net_interfaces",
        "connection_status",
        "uuid",
        "storage_providers",
        "resource_layers",
    ] {
        assert!(n1.get(key).is_some(), "a node has {key}: {n1}");
    }
    assert_eq!(n1["type"], "SATELLITE");
    assert_eq!(n1["connection_status"], "ONLINE");
    assert_eq!(nodes[3]["connection_status"], "OFFLINE");
    assert!(n1.get("flags").is_none(), "empty lists are left out");
    let (status, one) = get(&format!("{base}/v1/nodes/N2")).await;
    assert_eq!((status, &one["name"]), (StatusCode::OK, &"n2".into()));
    let (status, missing) = get(&format!("{base}/v1/nodes/n9")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing[0]["ret_code"].as_i64().is_some_and(|c| c < 0));

    let (status, list) = get(&format!("{base}/v1/view/resources")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<(&str, &str)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["node_name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("pvc-data", "n1"),
            ("pvc-data", "n2"),
            ("pvc-data", "n3"),
            ("pvc-other", "n2"),
            ("pvc-other", "n4"),
        ],
        "by resource, then node"
    );
    let primary = replica(&list, "pvc-data", "n1");
    for key in [
        "name",
        "node_name",
        "props",
        "layer_object",
        "state",
        "uuid",
        "volumes",
    ] {
        assert!(primary.get(key).is_some(), "a replica has {key}: {primary}");
    }
    assert_eq!(primary["state"]["in_use"], true);
    let layer = &primary["layer_object"];
    assert_eq!(layer["type"], "DRBD");
    assert_eq!(layer["children"][0]["type"], "STORAGE");
    let drbd = &layer["drbd"];
    assert_eq!(
        keys(&drbd["connections"]),
        ["n2", "n3"],
        "every peer replica is a DRBD connection"
    );
    assert_eq!(drbd["connections"]["n2"]["connected"], true);
    assert_eq!(drbd["connections"]["n2"]["message"], "Connected");
    assert_eq!(drbd["may_promote"], false, "it is Primary already");
    assert_eq!(drbd["promotion_score"], 0);
    let volume = &primary["volumes"][0];
    assert_eq!(volume["state"]["disk_state"], "UpToDate");
    assert_eq!(volume["provider_kind"], "LVM_THIN");
    assert_eq!(volume["layer_data_list"][0]["type"], "DRBD");

    let secondary = replica(&list, "pvc-data", "n2");
    assert_eq!(secondary["state"]["in_use"], false);
    assert_eq!(
        secondary["layer_object"]["drbd"]["may_promote"], false,
        "a connected peer is Primary"
    );
    let tie = replica(&list, "pvc-data", "n3");
    assert_eq!(
        tie["flags"],
        serde_json::json!(["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"])
    );
    assert_eq!(tie["volumes"][0]["provider_kind"], "DISKLESS");
    assert_eq!(tie["volumes"][0]["state"]["disk_state"], "Diskless");
    let fixed = replica(&list, "pvc-other", "n2");
    assert_eq!(fixed["layer_object"]["drbd"]["promotion_score"], 42);
    assert_eq!(
        fixed["layer_object"]["drbd"]["connections"]["n4"]["connected"], false,
        "a peer on an OFFLINE satellite is not connected"
    );
    let offline = replica(&list, "pvc-other", "n4");
    assert!(offline.get("state").is_none(), "nothing fresh: {offline}");
    finish(running).await;
}

#[tokio::test]
async fn filters_and_paging_as_linstor_reads_them() {
    let running = sim::serve(&scenario(QUORUM))
        .await
        .expect("emulators start");
    let base = linstor(&running);
    let pairs = |list: &Value| -> Vec<String> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r["name"].as_str().unwrap_or_default(),
                    r["node_name"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };

    let (_, list) = get(&format!("{base}/v1/view/resources?nodes=n2&nodes=N4")).await;
    assert_eq!(
        pairs(&list),
        ["pvc-data@n2", "pvc-other@n2", "pvc-other@n4"]
    );
    let (_, list) = get(&format!(
        "{base}/v1/view/resources?resources=PVC-OTHER&nodes=n2"
    ))
    .await;
    assert_eq!(pairs(&list), ["pvc-other@n2"]);
    let (_, list) = get(&format!(
        "{base}/v1/view/resources?storage_pools=DfltDisklessStorPool"
    ))
    .await;
    assert_eq!(pairs(&list), ["pvc-data@n3"]);
    let (_, list) = get(&format!("{base}/v1/view/resources?limit=2&offset=1")).await;
    assert_eq!(pairs(&list), ["pvc-data@n2", "pvc-data@n3"]);
    let (_, list) = get(&format!("{base}/v1/view/resources?offset=3")).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(5),
        "offset alone is ignored"
    );
    let (_, nodes) = get(&format!("{base}/v1/nodes?limit=1&offset=2")).await;
    assert_eq!(nodes[0]["name"], "n3");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));

    // A comma-joined list is one (invalid) name to LINSTOR, not two.
    let (status, body) = get(&format!("{base}/v1/view/resources?nodes=n1,n2")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'n1,n2' is invalid"))
    );
    let (status, _) = get(&format!("{base}/v1/view/resources?limit=ten")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "JAX-RS answers 404 to a bad int"
    );
    finish(running).await;
}

#[tokio::test]
async fn a_satellite_lost_on_the_timeline() {
    let running = sim::serve(&scenario(QUORUM))
        .await
        .expect("emulators start");
    let base = linstor(&running);
    let url = format!("{base}/v1/view/resources?resources=pvc-data");
    eventually("n1 goes OFFLINE", || async {
        get(&format!("{base}/v1/nodes/n1")).await.1["connection_status"] == "OFFLINE"
    })
    .await;
    let (_, list) = get(&url).await;
    let lost = replica(&list, "pvc-data", "n1");
    assert!(lost.get("state").is_none(), "no fresh state: {lost}");
    let drbd = &lost["layer_object"]["drbd"];
    for key in ["connections", "may_promote", "promotion_score"] {
        assert!(drbd.get(key).is_none(), "no fresh {key}: {drbd}");
    }
    assert!(lost["volumes"][0].get("state").is_none());
    let survivor = replica(&list, "pvc-data", "n2");
    let drbd = &survivor["layer_object"]["drbd"];
    assert_eq!(drbd["connections"]["n1"]["connected"], false);
    assert_eq!(drbd["connections"]["n1"]["message"], "Connecting");
    assert_eq!(drbd["connections"]["n3"]["connected"], true);
    assert_eq!(drbd["may_promote"], true, "two of three voters: quorum");
    assert_eq!(drbd["promotion_score"], 10102);
    finish(running).await;

    // Without the tie-breaker the survivor is one voter of two: no quorum.
    let two = QUORUM.replace("    - {name: pvc-data, node: n3, kind: tie-breaker}\n", "");
    let running = sim::serve(&scenario(&two)).await.expect("emulators start");
    let base = linstor(&running);
    eventually("n1 goes OFFLINE", || async {
        get(&format!("{base}/v1/nodes/n1")).await.1["connection_status"] == "OFFLINE"
    })
    .await;
    let (_, list) = get(&format!("{base}/v1/view/resources?resources=pvc-data")).await;
    let drbd = &replica(&list, "pvc-data", "n2")["layer_object"]["drbd"];
    assert_eq!(drbd["may_promote"], false, "one voter of two has no quorum");
    finish(running).await;

    // Lost to the controller only: DRBD still connects the nodes.
    let partition = QUORUM.replace(
        "connection_status: OFFLINE}}",
        "connection_status: OFFLINE, drbd_connected: true}}",
    );
    let running = sim::serve(&scenario(&partition))
        .await
        .expect("emulators start");
    let base = linstor(&running);
    eventually("n1 goes OFFLINE", || async {
        get(&format!("{base}/v1/nodes/n1")).await.1["connection_status"] == "OFFLINE"
    })
    .await;
    let (_, list) = get(&format!("{base}/v1/view/resources?resources=pvc-data")).await;
    let drbd = &replica(&list, "pvc-data", "n2")["layer_object"]["drbd"];
    assert_eq!(drbd["connections"]["n1"]["connected"], true);
    assert_eq!(drbd["may_promote"], false, "the Primary still reaches it");
    finish(running).await;
}

#[tokio::test]
async fn a_failing_controller_answers_500_hangs_or_refuses() {
    let running = sim::serve(&scenario(QUORUM))
        .await
        .expect("emulators start");
    let base = linstor(&running);
    running.world.lock().inject(Fault {
        service: Some(Service::Linstor),
        method: "GET".into(),
        path: "/v1/**".into(),
        status: Some(500),
        delay_ms: 0,
        times: Some(1),
    });
    let (status, body) = get(&format!("{base}/v1/view/resources")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body[0]["ret_code"].as_i64().is_some_and(|c| c < 0),
        "a LINSTOR ApiCallRc list with the error bit: {body}"
    );
    assert_eq!(
        get(&format!("{base}/v1/view/resources")).await.0,
        StatusCode::OK
    );

    running.world.lock().inject(Fault {
        service: Some(Service::Linstor),
        method: "*".into(),
        path: "/v1/nodes".into(),
        status: None,
        delay_ms: 5_000,
        times: Some(1),
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("a client");
    let hung = client.get(format!("{base}/v1/nodes")).send().await;
    assert!(
        hung.is_err_and(|e| e.is_timeout()),
        "a hung controller times out"
    );
    finish(running).await;

    // Scenario keys: the first endpoint refuses, the backup serves the same cluster.
    let down = QUORUM.replace(
        "    - {name: n4, connection_status: OFFLINE}\n",
        "    - {name: n4, connection_status: OFFLINE}\n  controller_down: true\n  backup_controller: true\n",
    );
    let running = sim::serve(&scenario(&down)).await.expect("emulators start");
    let first = linstor(&running);
    let refused = reqwest::get(format!("{first}/v1/nodes")).await;
    assert!(refused.is_err_and(|e| e.is_connect()), "connection refused");
    let backup = running.endpoints.linstor_backup.clone().expect("a backup");
    let (status, nodes) = get(&format!("{backup}/v1/nodes")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes.as_array().map(Vec::len), Some(4));
    finish(running).await;
}

/// A StatefulSet pod on `n2` whose LINSTOR volume has replicas on `n1` and `n3` only.
const ATTACH: &str = r"
name: linstor-attach
kubernetes:
  nodes:
    - {name: n1}
    - {name: n2}
  persistent_volumes:
    - {name: pv-data, csi: {driver: linstor.csi.linbit.com, volume_handle: pvc-data}, claim: default/data}
  pods:
    - {name: app-0, node: n2, phase: Pending, waiting_reason: ContainerCreating, claims: [data], owner: {kind: StatefulSet, name: app}}
linstor:
  nodes:
    - {name: n1}
    - {name: n2}
    - {name: n3}
  resources:
    - {name: pvc-data, node: n1}
    - {name: pvc-data, node: n3}
";

async fn kube(running: &Running) -> Client {
    cinder_remediator::demo::admin_client(running).expect("a client")
}

#[tokio::test]
async fn a_linstor_volume_is_attached_and_its_pod_runs() {
    let running = sim::serve(&scenario(ATTACH))
        .await
        .expect("emulators start");
    let client = kube(&running).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    eventually("app-0 runs", || async {
        pods.get("app-0")
            .await
            .ok()
            .and_then(|p| p.status?.phase)
            .as_deref()
            == Some("Running")
    })
    .await;
    let vas: Api<VolumeAttachment> = Api::all(client);
    let name = attachment_name("pvc-data", LINSTOR_DRIVER, "n2");
    let va = vas
        .get(&name)
        .await
        .expect("the attach/detach controller made it");
    assert_eq!(va.spec.attacher, LINSTOR_DRIVER);
    assert!(va.finalizers().contains(&FINALIZER.to_owned()));
    assert_eq!(va.status.map(|s| s.attached), Some(true));
    let (_, list) = get(&format!("{}/v1/view/resources?nodes=n2", linstor(&running))).await;
    let diskless = replica(&list, "pvc-data", "n2");
    assert_eq!(
        diskless["flags"],
        serde_json::json!(["DISKLESS", "DRBD_DISKLESS"]),
        "ControllerPublishVolume made a diskless replica"
    );
    finish(running).await;

    // A node whose satellite is OFFLINE: publishing is refused into attachError.
    let offline = ATTACH.replace(
        "    - {name: n2}
    - {name: n3}",
        "    - {name: n2, connection_status: OFFLINE}
    - {name: n3}",
    );
    let running = sim::serve(&scenario(&offline))
        .await
        .expect("emulators start");
    let vas: Api<VolumeAttachment> = Api::all(kube(&running).await);
    eventually("an attach error", || async {
        vas.get(&name)
            .await
            .ok()
            .and_then(|va| va.status?.attach_error?.message)
            .is_some_and(|m| m.contains("node OFFLINE"))
    })
    .await;
    let va = vas.get(&name).await.expect("the VolumeAttachment");
    assert_eq!(va.status.map(|s| s.attached), Some(false));
    finish(running).await;
}

/// A VolumeAttachment for `n2` waiting to be attached, and no attach/detach controller to
/// make another.
const FINALIZE: &str = r"
name: linstor-finalizer
kubernetes:
  nodes:
    - {name: n1}
    - {name: n2}
  persistent_volumes:
    - {name: pv-data, csi: {driver: linstor.csi.linbit.com, volume_handle: pvc-data}}
  volume_attachments:
    - {pv: pv-data, node: n2, attached: false}
  controllers: {attachdetach: false}
linstor:
  nodes:
    - {name: n1}
    - {name: n2}
    - {name: n3}
  resources:
    - {name: pvc-data, node: n1}
    - {name: pvc-data, node: n3}
";

#[tokio::test]
async fn the_attacher_finalizer_goes_once_linstor_allows() {
    let running = sim::serve(&scenario(FINALIZE))
        .await
        .expect("emulators start");
    let client = kube(&running).await;
    let vas: Api<VolumeAttachment> = Api::all(client);
    let name = attachment_name("pvc-data", LINSTOR_DRIVER, "n2");
    let base = linstor(&running);
    eventually("attached", || async {
        vas.get(&name)
            .await
            .ok()
            .and_then(|va| va.status)
            .is_some_and(|s| s.attached)
    })
    .await;

    // The controller cannot be reached: the finalizer stays, with the error.
    running
        .world
        .lock()
        .linstor
        .as_mut()
        .expect("LINSTOR")
        .set_controller_down(true);
    vas.delete(&name, &DeleteParams::default())
        .await
        .expect("marked for deletion");
    eventually("a detach error", || async {
        vas.get(&name)
            .await
            .ok()
            .and_then(|va| va.status?.detach_error?.message)
            .is_some_and(|m| m.contains("connection refused"))
    })
    .await;
    let va = vas.get(&name).await.expect("still there");
    assert!(va.finalizers().contains(&FINALIZER.to_owned()));

    // n2's satellite OFFLINE: LINSTOR stores the deletion; the finalizer goes.
    {
        let mut state = running.world.lock();
        let linstor = state.linstor.as_mut().expect("LINSTOR");
        linstor.set_node_status("n2", "OFFLINE", None);
        linstor.set_controller_down(false);
    }
    eventually("the VolumeAttachment is gone", || async {
        vas.get_opt(&name).await.ok().flatten().is_none()
    })
    .await;
    let (_, list) = get(&format!("{base}/v1/view/resources?nodes=n2")).await;
    assert_eq!(
        replica(&list, "pvc-data", "n2")["flags"],
        serde_json::json!(["DELETE", "DISKLESS", "DRBD_DISKLESS"])
    );
    running
        .world
        .lock()
        .linstor
        .as_mut()
        .expect("LINSTOR")
        .set_node_status("n2", "ONLINE", None);
    let (_, list) = get(&format!("{base}/v1/view/resources?nodes=n2")).await;
    assert_eq!(
        list,
        serde_json::json!([]),
        "the satellite carried out the deletion"
    );

    finish(running).await;
}

#[tokio::test]
async fn the_linstor_scenarios_load_and_serve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the catalogue")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("linstor-"))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "one file per situation of issue 11");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        assert!(
            text.starts_with("# "),
            "{} opens with a comment",
            file.display()
        );
        let loaded = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loaded.expect.is_some(),
            "{} has an expect block",
            file.display()
        );
        let running = sim::serve(&loaded).await.expect("emulators start");
        let (status, list) = get(&format!("{}/v1/view/resources", linstor(&running))).await;
        assert_eq!(status, StatusCode::OK, "{}", file.display());
        assert!(
            list.as_array().is_some_and(|l| !l.is_empty()),
            "{}",
            file.display()
        );
        let nodes = Api::<Node>::all(kube(&running).await)
            .list(&ListParams::default())
            .await;
        assert!(nodes.is_ok(), "{}: {nodes:?}", file.display());
        finish(running).await;
    }
}

#[test]
fn bad_linstor_keys_are_refused_naming_the_key() {
    let cases = [
        (
            "linstor: {nodes: [{name: n1, connection_status: GONE}]}",
            "linstor.nodes[0].connection_status: \"GONE\" is not one of OFFLINE",
        ),
        (
            "linstor: {nodes: [{name: n1, type: WORKER}]}",
            "linstor.nodes[0].type: \"WORKER\" is not one of SATELLITE",
        ),
        (
            "linstor: {nodes: [{name: n1}], resources: [{name: r1, node: n1, connections: {n9: true}}]}",
            "linstor.resources[0].connections: \"n9\" is not another entry of linstor.nodes",
        ),
        (
            "linstor: {nodes: [{name: n1}], resources: [{name: r1, node: n1}, {name: R1, node: n1}]}",
            "linstor.resources[1].node: resource R1 has two replicas on n1",
        ),
        (
            "linstor: {nodes: [{name: n1}], resources: [{name: 1r, node: n1}]}",
            "linstor.resources[0].name: \"1r\" is not a LINSTOR name",
        ),
        (
            "linstor: {nodes: [{name: n1}], resources: [{name: r1, node: n1, kind: diskless, disk_state: UpToDate}]}",
            "linstor.resources[0].disk_state: a diskless or tie-breaker replica",
        ),
        (
            "linstor: {nodes: [{name: n1}]}\ntimeline: [{at: 1s, linstor_node: {node: n1, connection_status: offline}}]",
            "timeline[0].linstor_node.connection_status: \"offline\" is not one of",
        ),
    ];
    for (yaml, wanted) in cases {
        let text = format!("name: bad\n{yaml}\n");
        let error = Scenario::parse(&text, Path::new("bad.yaml"))
            .expect_err("refused")
            .to_string();
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(error.contains(wanted), "{error:?} should say {wanted:?}");
    }
}
