//! `run`, the controller, end to end against the emulators: a node that dies mid-run is
//! remediated within grace + detach + 1 s; a flapping node is left alone; a storm is held back
//! with an Event and the metric; of two replicas exactly one acts, and the other takes over when
//! the leader dies; a controller killed mid-remediation and restarted never releases a verified
//! attachment twice; a node Ready again loses exactly our taint; a dry run acts on nothing and
//! says what it would do in Events; /metrics and /readyz.

use std::path::Path;
use std::time::{Duration, Instant};

use cinder_remediator::backend::openstack::OpenStack;
use cinder_remediator::cluster::Cluster;
use cinder_remediator::controller::{Settings, lease, service::Service};
use cinder_remediator::execute;
use cinder_remediator::openstack::config::load;
use cinder_remediator::openstack::session::{ConnectOptions, connect_with};
use fencing::plan::{Policy, Strategy};
use sim::scenario::Service as Emulator;
use sim::{RequestRecord, Running, Scenario};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SERVER_2: &str = "6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c0002";
const VOLUME_2: &str = "7c2d3e4f-5a6b-4c7d-9e8f-0a1b2c3d0002";
const VOLUME_3: &str = "7c2d3e4f-5a6b-4c7d-9e8f-0a1b2c3d0003";

/// Five nodes, all Ready; node-2 and node-3 each hold a volume. `timeline` is appended as is.
fn cluster(timeline: &str) -> Scenario {
    let mut servers = String::new();
    let mut nodes = String::new();
    for i in 1..=5 {
        servers.push_str(&format!(
            "    - {{id: 6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c000{i}, name: node-{i}, status: ACTIVE, host: compute-1, addresses: [10.1.0.1{i}]}}\n"
        ));
        nodes.push_str(&format!(
            "    - {{name: node-{i}, provider_id: \"openstack:///6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c000{i}\", ready: \"True\", ready_since: 2d, addresses: [10.1.0.1{i}]}}\n"
        ));
    }
    let text = format!(
        r#"
name: controller
openstack:
  compute_hosts: [{{name: compute-1}}]
  servers:
{servers}  volumes:
    - {{id: {VOLUME_2}, name: pvc-data-2, attachments: [{{server: {SERVER_2}}}]}}
    - {{id: {VOLUME_3}, name: pvc-data-3, attachments: [{{server: 6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c0003}}]}}
  behaviour: {{detach_seconds: 1}}
kubernetes:
  nodes:
{nodes}  persistent_volumes:
    - {{name: pvc-data-2, csi: {{driver: cinder.csi.openstack.org, volume_handle: {VOLUME_2}}}, claim: default/data-2}}
    - {{name: pvc-data-3, csi: {{driver: cinder.csi.openstack.org, volume_handle: {VOLUME_3}}}, claim: default/data-3}}
  pods:
    - {{name: db-2, node: node-2, claims: [data-2], owner: {{kind: StatefulSet, name: db}}}}
    - {{name: db-3, node: node-3, claims: [data-3], owner: {{kind: StatefulSet, name: db}}}}
  volume_attachments:
    - {{pv: pvc-data-2, node: node-2}}
    - {{pv: pvc-data-3, node: node-3}}
timeline:
{timeline}"#
    );
    Scenario::parse(&text, Path::new("controller.yaml")).unwrap()
}

/// node-2's server powers off and its node turns NotReady at `at`.
fn node_2_dies(at: &str) -> String {
    format!(
        "  - {{at: {at}, server_status: {{server: {SERVER_2}, status: SHUTOFF}}}}\n  - {{at: {at}, node_ready: {{node: node-2, status: Unknown}}}}\n"
    )
}

/// node-2's server powers off at 1 s; its node stays Ready (the scenario does not change it).
fn server_2_shuts_off() -> String {
    format!("  - {{at: 1s, server_status: {{server: {SERVER_2}, status: SHUTOFF}}}}\n")
}

fn policy() -> Policy {
    Policy {
        grace: Duration::from_secs(2),
        ..Policy::default()
    }
}

/// A controller replica running in the background.
struct Replica {
    admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Replica {
    async fn start(running: &Running, policy: Policy, identity: Option<&str>) -> Self {
        Self::start_with(running, policy, identity, false, None).await
    }

    /// A replica watching the cloud too (`--watch-cloud 1s`).
    async fn watching_the_cloud(running: &Running) -> Self {
        Self::start_with(running, policy(), None, false, Some(Duration::from_secs(1))).await
    }

    async fn start_with(
        running: &Running,
        policy: Policy,
        identity: Option<&str>,
        dry_run: bool,
        watch_cloud: Option<Duration>,
    ) -> Self {
        let client = cinder_remediator::demo::service_account_client(running)
            .await
            .unwrap();
        let settings = load(&cinder_remediator::demo::openstack_source(running)).unwrap();
        let session = connect_with(&settings, &ConnectOptions::default())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let metrics = std::sync::Arc::new(cinder_remediator::metrics::Metrics::new());
        let service = Service {
            cluster: Cluster::new(client, identity.unwrap_or("solo"))
                .with_metrics(std::sync::Arc::clone(&metrics)),
            backend: OpenStack::new(&session, settings.region()).with_metrics(&metrics),
            metrics,
            settings: Settings {
                policy,
                dry_run,
                execute: execute::Options {
                    verify_timeout: Duration::from_secs(10),
                    poll_interval: Duration::from_millis(100),
                    attacher_grace: Duration::from_secs(2),
                },
                resync: Duration::from_secs(2),
                watch_cloud,
                observer: None,
            },
            lease: identity.map(|identity| lease::Settings {
                namespace: "kube-system".to_owned(),
                name: "cinder-remediator".to_owned(),
                identity: identity.to_owned(),
                duration: Duration::from_secs(2),
            }),
            shutdown_timeout: Duration::from_secs(10),
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            service
                .run(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// SIGTERM: the round in flight finishes, the Lease is released.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }

    /// SIGKILL: gone at once, the Lease left to expire.
    fn kill(self) {
        self.task.abort();
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// Whether a request is a page of the cloud-side watch (`changes-since`).
fn cloud_poll(record: &RequestRecord) -> bool {
    record.service == Emulator::Nova
        && record
            .query
            .as_deref()
            .is_some_and(|q| q.contains("changes-since"))
}

/// Whether the exposition has this sample line, exactly.
fn has_sample(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

fn cloud_writes(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .filter(|r| matches!(r.service, Emulator::Nova | Emulator::Cinder) && r.is_mutating())
        .map(|r| format!("{} {} {}", r.service.as_str(), r.method, r.path))
        .collect()
}

/// Whether the test's admin client sent it (setting the scene or looking on), not the
/// remediator.
fn by_admin(record: &RequestRecord) -> bool {
    record
        .access
        .as_ref()
        .is_some_and(|access| access.user.is_master())
}

fn kube_writes(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .filter(|r| r.service == Emulator::Kubernetes && r.is_mutating() && !by_admin(r))
        .filter(|r| !r.path.contains("/events") && !r.path.contains("/leases"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn volume_status(running: &Running, id: &str) -> String {
    running
        .world
        .lock()
        .cloud
        .volume(id)
        .unwrap()
        .status
        .clone()
}

/// Waits until `done` holds, or fails after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the scenario's pod (its object, by uid) still exists: its StatefulSet recreates it
/// under the same name once it is gone.
fn pod_exists(running: &Running, name: &str) -> bool {
    let original = sim::kubernetes::uid("Pod", "default", name);
    running
        .world
        .lock()
        .kube
        .get("pods", Some("default"), name)
        .is_some_and(|pod| pod["metadata"]["uid"] == original.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_dies_mid_run_is_remediated_within_grace_detach_and_a_second() {
    let running = sim::serve(&cluster(&node_2_dies("2s"))).await.unwrap();
    let replica = Replica::start(&running, policy(), None).await;
    // grace 2 s + detach 1 s + 1 s, counted from the death at 2 s.
    wait_for(Duration::from_secs(12), "volume available", || {
        volume_status(&running, VOLUME_2) == "available"
    })
    .await;
    let available_at = running.world.now_ms();
    assert!(
        available_at <= 2_000 + 2_000 + 1_000 + 1_000 + 1_000,
        "{available_at} ms"
    );
    wait_for(Duration::from_secs(5), "pod deleted", || {
        !pod_exists(&running, "db-2")
    })
    .await;
    let log = running.requests();
    let release = log
        .iter()
        .find(|r| r.service == Emulator::Nova && r.method == "DELETE")
        .unwrap();
    // Not before the grace ran out (S3: counted from the Ready condition's lastTransitionTime,
    // which Kubernetes keeps to the second), and within a second of it.
    assert!(release.at_ms >= 3_000, "released at {} ms", release.at_ms);
    assert!(release.at_ms <= 5_500, "released at {} ms", release.at_ms);
    assert_eq!(cloud_writes(&log).len(), 1, "{:?}", cloud_writes(&log));
    // /readyz, /metrics: the counters moved.
    assert_eq!(replica.get("/readyz").await.0, 200);
    let (status, metrics) = replica.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(
        metrics.contains(
            "cinder_remediator_actions_total{action=\"release_volume\",outcome=\"done\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        has_sample(&metrics, "cinder_remediator_is_leader 1"),
        "{metrics}"
    );
    replica.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_node_is_left_alone() {
    let timeline = "  - {at: 1s, node_ready: {node: node-2, status: Unknown}}\n  - {at: 2s, node_ready: {node: node-2, status: \"True\"}}\n";
    let running = sim::serve(&cluster(timeline)).await.unwrap();
    let replica = Replica::start(&running, policy(), None).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = running.requests();
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    // Not even a read of the node's server: the grace never ran out.
    assert!(
        !log.iter()
            .any(|r| r.service == Emulator::Nova && r.path.contains(SERVER_2)),
        "the flapping node's server was read"
    );
    replica.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_is_held_back_with_an_event_and_the_metric() {
    let mut timeline = node_2_dies("1s");
    for node in ["node-3", "node-4"] {
        timeline.push_str(&format!(
            "  - {{at: 1s, node_ready: {{node: {node}, status: Unknown}}}}\n"
        ));
    }
    let running = sim::serve(&cluster(&timeline)).await.unwrap();
    let replica = Replica::start(&running, policy(), None).await;
    wait_for(Duration::from_secs(10), "a StormGuard Event", || {
        running
            .world
            .lock()
            .kube
            .list("events")
            .iter()
            .any(|e| e["reason"] == "StormGuard")
    })
    .await;
    // Three nodes due, looked at again after each resync: still one Event, never repeated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let storm_events: Vec<serde_json::Value> = running
        .world
        .lock()
        .kube
        .list("events")
        .into_iter()
        .filter(|e| e["reason"] == "StormGuard")
        .cloned()
        .collect();
    assert_eq!(storm_events.len(), 1, "{storm_events:#?}");
    assert!(storm_events[0]["series"].is_null(), "{storm_events:#?}");
    let (_, metrics) = replica.get("/metrics").await;
    assert!(
        has_sample(&metrics, "cinder_remediator_storm_guard_active 1"),
        "{metrics}"
    );
    let log = running.requests();
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    // While the storm guard holds, the dead nodes' servers are not even read.
    assert!(
        !log.iter()
            .any(|r| matches!(r.service, Emulator::Nova | Emulator::Cinder)
                && r.path.contains("6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c000")),
        "a server was read during the storm"
    );
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    replica.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_exactly_one_acts_and_the_other_takes_over_when_it_dies() {
    // node-2 dies at 2 s; later node-3's server powers off and its node dies too.
    let mut timeline = node_2_dies("2s");
    timeline.push_str(
        "  - {at: 9s, server_status: {server: 6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c0003, status: SHUTOFF}}\n  - {at: 9s, node_ready: {node: node-3, status: Unknown}}\n",
    );
    let running = sim::serve(&cluster(&timeline)).await.unwrap();
    let a = Replica::start(&running, policy(), Some("replica-a")).await;
    let b = Replica::start(&running, policy(), Some("replica-b")).await;
    wait_for(Duration::from_secs(12), "node-2's volume released", || {
        volume_status(&running, VOLUME_2) == "available"
    })
    .await;
    wait_for(Duration::from_secs(5), "pod deleted", || {
        !pod_exists(&running, "db-2")
    })
    .await;
    assert_eq!(cloud_writes(&running.requests()).len(), 1);
    let leader_metrics = (a.get("/metrics").await.1, b.get("/metrics").await.1);
    let a_leads = has_sample(&leader_metrics.0, "cinder_remediator_is_leader 1");
    let b_leads = has_sample(&leader_metrics.1, "cinder_remediator_is_leader 1");
    assert!(a_leads != b_leads, "{leader_metrics:?}");
    // Every Event of the remediation came from the leader (the cluster's own controllers
    // report theirs too).
    let leader = if a_leads { "replica-a" } else { "replica-b" };
    let reporters: std::collections::BTreeSet<String> = running
        .world
        .lock()
        .kube
        .list("events")
        .iter()
        .filter(|e| e["reportingComponent"] == "cinder-remediator")
        .filter_map(|e| e["reportingInstance"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        reporters.into_iter().collect::<Vec<_>>(),
        [leader.to_owned()]
    );
    // The leader dies (SIGKILL: the Lease is not released); node-3 dies; the other finishes.
    let survivor = if a_leads {
        a.kill();
        b
    } else {
        b.kill();
        a
    };
    wait_for(
        Duration::from_secs(15),
        "node-3 remediated by the survivor",
        || volume_status(&running, VOLUME_3) == "available" && !pod_exists(&running, "db-3"),
    )
    .await;
    assert_eq!(cloud_writes(&running.requests()).len(), 2);
    let (_, metrics) = survivor.get("/metrics").await;
    assert!(
        has_sample(&metrics, "cinder_remediator_is_leader 1"),
        "{metrics}"
    );
    // SIGTERM: the leader releases the Lease (empty holder) for a follower to take at once.
    survivor.stop().await;
    let holder = running
        .world
        .lock()
        .kube
        .get("leases", Some("kube-system"), "cinder-remediator")
        .and_then(|lease| lease.pointer("/spec/holderIdentity").cloned());
    assert_eq!(holder, None, "the Lease was not released");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_remediation_and_restarted_never_releases_twice() {
    // A full run first, to count its writes; then one run per write, killed right after it.
    let full = {
        let running = sim::serve(&cluster(&node_2_dies("1s"))).await.unwrap();
        let replica = Replica::start(&running, policy(), None).await;
        wait_for(Duration::from_secs(12), "converged", || {
            volume_status(&running, VOLUME_2) == "available" && !pod_exists(&running, "db-2")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        replica.stop().await;
        let writes =
            kube_writes(&running.requests()).len() + cloud_writes(&running.requests()).len();
        running.shutdown().await;
        writes
    };
    assert!(full >= 3, "{full} writes");
    for kill_after in 1..=full {
        let running = sim::serve(&cluster(&node_2_dies("1s"))).await.unwrap();
        let first = Replica::start(&running, policy(), None).await;
        wait_for(Duration::from_secs(12), "the write to kill after", || {
            let log = running.requests();
            kube_writes(&log).len() + cloud_writes(&log).len() >= kill_after
        })
        .await;
        first.kill();
        let second = Replica::start(&running, policy(), None).await;
        wait_for(
            Duration::from_secs(15),
            "converged after the restart",
            || volume_status(&running, VOLUME_2) == "available" && !pod_exists(&running, "db-2"),
        )
        .await;
        let releases = cloud_writes(&running.requests());
        assert_eq!(
            releases.len(),
            1,
            "killed after write {kill_after}: {releases:?}"
        );
        second.stop().await;
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_ready_again_loses_exactly_our_taint() {
    let mut timeline = node_2_dies("1s");
    timeline.push_str(&format!(
        "  - {{at: 8s, server_status: {{server: {SERVER_2}, status: ACTIVE}}}}\n  - {{at: 8s, node_ready: {{node: node-2, status: \"True\"}}}}\n"
    ));
    let running = sim::serve(&cluster(&timeline)).await.unwrap();
    let replica = Replica::start(
        &running,
        Policy {
            strategy: Strategy::OutOfServiceTaint,
            ..policy()
        },
        None,
    )
    .await;
    let taints = |running: &Running| -> Vec<String> {
        running
            .world
            .lock()
            .kube
            .get("nodes", None, "node-2")
            .and_then(|n| n.pointer("/spec/taints").cloned())
            .and_then(|t| t.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|t| t["key"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    wait_for(Duration::from_secs(8), "our taint", || {
        taints(&running).contains(&"node.kubernetes.io/out-of-service".to_owned())
    })
    .await;
    wait_for(
        Duration::from_secs(12),
        "our taint removed after recovery",
        || {
            running.world.now_ms() > 8_000
                && !taints(&running).contains(&"node.kubernetes.io/out-of-service".to_owned())
        },
    )
    .await;
    let progress = |running: &Running| {
        running
            .world
            .lock()
            .kube
            .get("nodes", None, "node-2")
            .and_then(|n| {
                n.pointer("/metadata/annotations/cinder-remediator.io~1progress")
                    .cloned()
            })
    };
    wait_for(
        Duration::from_secs(5),
        "the progress record cleared",
        || progress(&running).is_none(),
    )
    .await;
    assert!(!taints(&running).contains(&"node.kubernetes.io/out-of-service".to_owned()));
    replica.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_controller_plans_and_never_acts() {
    let running = sim::serve(&cluster(&node_2_dies("1s"))).await.unwrap();
    let replica = Replica::start_with(&running, policy(), None, true, None).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = running.requests();
    // It looked (the server was read after the grace) ...
    assert!(
        log.iter()
            .any(|r| r.service == Emulator::Nova && r.path.contains(SERVER_2)),
        "the dead node was never looked at"
    );
    // ... changed nothing ...
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    assert_eq!(volume_status(&running, VOLUME_2), "in-use");
    // ... and said on the Node what it would do (the observe-only deployment's output).
    let events: Vec<serde_json::Value> = running
        .world
        .lock()
        .kube
        .list("events")
        .into_iter()
        .cloned()
        .collect();
    let would: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["reason"] == "WouldRemediate" && e["involvedObject"]["name"] == "node-2")
        .collect();
    assert_eq!(would.len(), 1, "{events:#?}");
    let note = would[0]["message"].as_str().unwrap();
    assert!(
        note.starts_with("Dry run: would ") && note.contains(&format!("release volume {VOLUME_2}")),
        "{note}"
    );
    replica.stop().await;
    running.shutdown().await;
}

/// `--watch-cloud`: node-2's server shuts off at 1 s while its node stays Ready (its kubelet's
/// heartbeat has not expired): released within interval + grace + detach, the node still
/// Ready, counted as detected from the cloud side.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_shut_off_while_its_node_stays_ready_is_remediated_from_the_cloud_side() {
    let running = sim::serve(&cluster(&server_2_shuts_off())).await.unwrap();
    let replica = Replica::watching_the_cloud(&running).await;
    // Nova's change at 1 s (kept to the second), the next poll within 1 s, grace 2 s, detach 1 s.
    wait_for(Duration::from_secs(12), "volume available", || {
        volume_status(&running, VOLUME_2) == "available"
    })
    .await;
    let log = running.requests();
    let release = log
        .iter()
        .find(|r| r.service == Emulator::Nova && r.method == "DELETE")
        .unwrap();
    assert!(
        (3_000..=4_600).contains(&release.at_ms),
        "released at {} ms",
        release.at_ms
    );
    // Its node never left Ready: the scenario does not change it.
    let ready = running
        .world
        .lock()
        .kube
        .get("nodes", None, "node-2")
        .unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "node-2 is still Ready");
    // One list per interval, not one read per server.
    let polls = log.iter().filter(|r| cloud_poll(r)).count();
    assert!((2..=12).contains(&polls), "{polls} polls");
    // Counted once the look has ended (its Kubernetes-side steps follow the release).
    let counted = "cinder_remediator_remediations_total{outcome=\"done\",source=\"cloud\"} 1";
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = replica.get("/metrics").await.1;
        if has_sample(&metrics, counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(has_sample(&metrics, counted), "{metrics}");
    replica.stop().await;
    running.shutdown().await;
}

/// No proof from the cloud side: a host that stops reporting (its servers ACTIVE on it), and a
/// server rebooting (a task), leave Ready nodes alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_down_or_a_reboot_is_no_proof_from_the_cloud_side() {
    let timeline = "  - {at: 1s, host_state: {host: compute-1, state: down}}\n  - {at: 1s, server_status: {server: 6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c0003, status: REBOOT, task_state: reboot_started}}\n";
    let running = sim::serve(&cluster(timeline)).await.unwrap();
    let replica = Replica::watching_the_cloud(&running).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = running.requests();
    assert!(log.iter().any(cloud_poll), "the cloud was not watched");
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    assert_eq!(volume_status(&running, VOLUME_3), "in-use");
    replica.stop().await;
    running.shutdown().await;
}

/// A kubelet that renews its Lease after Nova says its server shut off contradicts Nova: no
/// action from the cloud side.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_kubelet_contradicts_a_shut_off_server() {
    let running = sim::serve(&cluster(&server_2_shuts_off())).await.unwrap();
    // node-2's kubelet is alive, whatever Nova says: this test, as the kubelet does, renews
    // its Lease through the API every 300 ms.
    let kubelet = {
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(
            cinder_remediator::demo::admin_client(&running).unwrap(),
            "kube-node-lease",
        );
        tokio::spawn(async move {
            loop {
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string();
                let patch = serde_json::json!({"spec": {"renewTime": now}});
                leases
                    .patch(
                        "node-2",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let replica = Replica::watching_the_cloud(&running).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    kubelet.abort();
    let log = running.requests();
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    assert_eq!(volume_status(&running, VOLUME_2), "in-use");
    replica.stop().await;
    running.shutdown().await;
}

/// A flood: a thousand servers shut off at once (a rack's power, an operator's mistake). The
/// cloud-side watch reads them in pages (Nova's max limit, 200 here) and the storm guard holds
/// every action: a thousand reports at once are a cloud event, not a thousand dead nodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_changes_is_read_in_pages_and_held_by_the_storm_guard() {
    const COUNT: usize = 1000;
    let id = |i: usize| format!("6b1c2d3e-4f5a-4b6c-8d7e-{i:012}");
    let (mut servers, mut nodes, mut timeline) = (String::new(), String::new(), String::new());
    for i in 0..COUNT {
        let server = id(i);
        servers.push_str(&format!(
            "    - {{id: {server}, name: n{i}, status: ACTIVE, host: compute-1}}\n"
        ));
        nodes.push_str(&format!(
            "    - {{name: n{i}, provider_id: \"openstack:///{server}\", ready: \"True\", ready_since: 2d}}\n"
        ));
        timeline.push_str(&format!(
            "  - {{at: 1s, server_status: {{server: {server}, status: SHUTOFF}}}}\n"
        ));
    }
    let text = format!(
        "name: flood\nopenstack:\n  compute_hosts: [{{name: compute-1}}]\n  servers:\n{servers}  behaviour: {{nova_max_limit: 200}}\nkubernetes:\n  nodes:\n{nodes}timeline:\n{timeline}"
    );
    let scenario = Scenario::parse(&text, Path::new("flood.yaml")).unwrap();
    let running = sim::serve(&scenario).await.unwrap();
    let replica = Replica::watching_the_cloud(&running).await;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = replica.get("/metrics").await.1;
        if has_sample(&metrics, "cinder_remediator_storm_guard_active 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        has_sample(&metrics, "cinder_remediator_storm_guard_active 1"),
        "{metrics}"
    );
    // Past every grace: still nothing done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = running.requests();
    let pages = log
        .iter()
        .filter(|r| cloud_poll(r) && r.query.as_deref().is_some_and(|q| q.contains("marker=")))
        .count();
    assert!(pages >= COUNT / 200 - 1, "{pages} follow-up pages");
    assert_eq!(cloud_writes(&log), Vec::<String>::new());
    assert_eq!(kube_writes(&log), Vec::<String>::new());
    let storm_events = running
        .world
        .lock()
        .kube
        .list("events")
        .into_iter()
        .filter(|e| e["reason"] == "StormGuard")
        .count();
    assert_eq!(storm_events, 1);
    replica.stop().await;
    running.shutdown().await;
}

/// Of two replicas watching the cloud, only the leader asks Nova: about one `changes-since`
/// list per interval in all, not one per replica.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_watches_the_cloud() {
    let running = sim::serve(&cluster("")).await.unwrap();
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b"] {
        replicas.push(
            Replica::start_with(
                &running,
                policy(),
                Some(identity),
                false,
                Some(Duration::from_millis(500)),
            )
            .await,
        );
    }
    // Leadership settles within the 2 s lease; then 4 s of polls every 0.5 s: about 8 from the
    // leader, 16 if both asked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = running.world.now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = running
        .requests()
        .iter()
        .filter(|r| r.at_ms >= from && cloud_poll(r))
        .count();
    assert!((5..=11).contains(&polls), "{polls} polls in 4 s");
    for replica in replicas {
        replica.stop().await;
    }
    running.shutdown().await;
}
