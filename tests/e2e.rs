//! End to end against the emulators, through the production code paths: the `kube` client,
//! the OpenStack settings and Keystone session, the Nova/Cinder backend, the planner and the
//! executor. Each test proves a safety rule or an acceptance criterion from the request log and
//! the emulated world.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cinder_remediator::backend::openstack::OpenStack;
use cinder_remediator::cluster::{Breadth, Cluster};
use cinder_remediator::oneshot::{self, Mode, Output};
use cinder_remediator::openstack::config::load;
use cinder_remediator::openstack::session::{ConnectOptions, connect_with};
use cinder_remediator::{demo, execute};
use fencing::model::NodeName;
use fencing::plan::{Action, DeadHost, FenceMode, Policy, Strategy};
use sim::scenario::{Fault, Service};
use sim::{self, RequestRecord, Running, Scenario};

struct Setup {
    running: Running,
    client: kube::Client,
    cluster: Cluster,
    backend: OpenStack,
}

async fn start(scenario: &Scenario) -> Setup {
    start_with(scenario, ConnectOptions::default()).await
}

async fn start_with(scenario: &Scenario, options: ConnectOptions) -> Setup {
    let running = sim::serve(scenario).await.unwrap();
    let client = demo::admin_client(&running).unwrap();
    let remediator = demo::service_account_client(&running).await.unwrap();
    let source = demo::openstack_source(&running);
    let settings = load(&source).unwrap();
    let session = connect_with(&settings, &options).await.unwrap();
    Setup {
        cluster: Cluster::new(remediator, "e2e"),
        client,
        backend: OpenStack::new(&session, settings.region()),
        running,
    }
}

/// The seed story with a detach that never completes (the volume stays `detaching`).
fn stuck_seed() -> Scenario {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-node-shutdown.yaml"),
    )
    .unwrap()
    .replacen(
        "      size: 3\n",
        "      size: 3\n      detach_stuck: true\n",
        1,
    );
    Scenario::parse(&text, Path::new("stuck.yaml")).unwrap()
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name),
    )
    .unwrap()
}

fn fast() -> execute::Options {
    execute::Options {
        verify_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(100),
        attacher_grace: Duration::from_secs(3),
    }
}

const YES: Mode = Mode {
    dry_run: false,
    yes: true,
    orphans: false,
};

async fn remediate(setup: &Setup, policy: &Policy, options: execute::Options) -> bool {
    remediate_in(setup, policy, YES, options).await
}

async fn remediate_in(
    setup: &Setup,
    policy: &Policy,
    mode: Mode,
    options: execute::Options,
) -> bool {
    oneshot::remediate(
        &setup.cluster,
        &setup.backend,
        policy,
        &BTreeSet::new(),
        mode,
        Output::Json,
        options,
    )
    .await
    .unwrap()
}

/// Observes and plans once, as `remediate` does (and `diagnose`, but for its advice).
async fn plan_now(
    setup: &Setup,
    policy: &Policy,
    orphans: bool,
) -> (fencing::model::Observation, fencing::plan::Plan) {
    oneshot::observe_and_plan(
        &setup.cluster,
        &setup.backend,
        policy,
        &BTreeSet::new(),
        orphans,
        Breadth::Planning,
    )
    .await
    .unwrap()
}

/// Runs a plan through the executor.
async fn run_plan(
    setup: &Setup,
    policy: &Policy,
    options: execute::Options,
    observation: &fencing::model::Observation,
    plan: &fencing::plan::Plan,
) -> execute::Report {
    execute::Executor::new(&setup.cluster, &setup.backend, policy, options)
        .run(plan, observation, |_| {})
        .await
}

/// Nova answers the next volume detach with `status`.
fn fail_next_detach(setup: &Setup, status: u16) {
    setup.running.world.lock().inject(Fault {
        service: Some(Service::Nova),
        method: "DELETE".into(),
        path: "/servers/*/os-volume_attachments/*".into(),
        status: Some(status),
        delay_ms: 0,
        times: Some(1),
    });
}

/// Runs `remediate` once more: whether it succeeded, and the writes it sent to `services`.
async fn another_run(
    setup: &Setup,
    policy: &Policy,
    options: execute::Options,
    services: &[Service],
) -> (bool, Vec<String>) {
    let before = setup.running.requests().len();
    let done = remediate(setup, policy, options).await;
    (
        done,
        mutating(&setup.running.requests()[before..], services),
    )
}

fn mutating(log: &[RequestRecord], services: &[Service]) -> Vec<String> {
    log.iter()
        .filter(|r| services.contains(&r.service) && r.is_mutating() && !by_admin(r))
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

const CLOUD: [Service; 2] = [Service::Nova, Service::Cinder];
const EVERYTHING: [Service; 4] = [
    Service::Nova,
    Service::Cinder,
    Service::Kubernetes,
    Service::Linstor,
];

const SEED_VOLUME: &str = "4e41d530-cb5f-49a9-9c6f-a591abdb6f11";
const SEED_SERVER: &str = "9454752c-f0e2-4447-9b7f-16434c49f7ac";

fn volume_status(setup: &Setup, id: &str) -> String {
    setup
        .running
        .world
        .lock()
        .cloud
        .volume(id)
        .unwrap()
        .status
        .clone()
}

fn attached_to(setup: &Setup, volume: &str, server: &str) -> bool {
    let state = setup.running.world.lock();
    state
        .cloud
        .volume(volume)
        .unwrap()
        .attachments
        .iter()
        .any(|a| a.server_id == server)
}

fn node_object(setup: &Setup, name: &str) -> serde_json::Value {
    let state = setup.running.world.lock();
    state.kube.get("nodes", None, name).cloned().unwrap()
}

fn pod_exists(setup: &Setup, namespace: &str, name: &str) -> bool {
    setup
        .running
        .world
        .lock()
        .kube
        .get("pods", Some(namespace), name)
        .is_some()
}

#[tokio::test]
async fn the_seed_story_diagnose_dry_run_remediate_then_nothing_more() {
    let setup = start(&Scenario::seed()).await;
    let policy = Policy::default();

    // S8: diagnose and the dry run make no mutating call, anywhere.
    oneshot::diagnose(
        &setup.cluster,
        &setup.backend,
        &policy,
        &BTreeSet::new(),
        Output::Json,
    )
    .await
    .unwrap();
    let dry = Mode {
        dry_run: true,
        yes: false,
        orphans: true,
    };
    let done = oneshot::remediate(
        &setup.cluster,
        &setup.backend,
        &policy,
        &BTreeSet::new(),
        dry,
        Output::Json,
        fast(),
    )
    .await
    .unwrap();
    assert!(done);
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    assert_eq!(volume_status(&setup, SEED_VOLUME), "in-use");

    // The fix, verified.
    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(volume_status(&setup, SEED_VOLUME), "available");
    assert!(!pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    assert!(!pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-9vdsj"
    ));
    assert!(
        setup
            .running
            .world
            .lock()
            .kube
            .list("volumeattachments")
            .is_empty()
    );
    let cloud_calls = mutating(&setup.running.requests(), &CLOUD);
    assert_eq!(
        cloud_calls,
        [format!(
            "nova DELETE /v2.1/servers/{SEED_SERVER}/os-volume_attachments/{SEED_VOLUME}"
        )]
    );
    // The progress record is on the node (S7).
    let node = node_object(&setup, "node-4-nude");
    let progress = node["metadata"]["annotations"]["cinder-remediator.io/progress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(progress.contains(SEED_VOLUME), "{progress}");
    // Events on the objects touched.
    let events = setup.running.world.lock().kube.list("events").len();
    assert!(
        events >= 2 + 3,
        "expected the scenario's 2 events and ours, got {events}"
    );

    // S7: a second run plans nothing and calls nothing mutating.
    let before = setup.running.requests().len();
    assert!(remediate(&setup, &policy, fast()).await);
    let after = setup.running.requests();
    assert_eq!(
        mutating(&after[before..], &EVERYTHING),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn api_economy_is_at_most_5_plus_2k_requests_and_never_lists_the_project() {
    // A dead node with k = 3 stuck volumes.
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-node-shutdown.yaml"),
    )
    .unwrap();
    let extra_volumes = "
    - id: 11111111-0000-4000-8000-000000000001
      attachments: [{server: 9454752c-f0e2-4447-9b7f-16434c49f7ac, device: /dev/vdc}]
    - id: 11111111-0000-4000-8000-000000000002
      attachments: [{server: 9454752c-f0e2-4447-9b7f-16434c49f7ac, device: /dev/vdd}]
  behaviour:";
    text = text.replacen("\n  behaviour:", extra_volumes, 1);
    let extra_pvs = "
    - name: pv-extra-1
      csi: {driver: cinder.csi.openstack.org, volume_handle: 11111111-0000-4000-8000-000000000001}
      claim: default/extra-1
    - name: pv-extra-2
      csi: {driver: cinder.csi.openstack.org, volume_handle: 11111111-0000-4000-8000-000000000002}
      claim: default/extra-2
  pods:";
    text = text.replacen("\n  pods:", extra_pvs, 1);
    text = text.replace(
        "claims: [test-cinder-volume]\n      owner: {kind: ReplicaSet, name: test-cinder-56bdb546dd}\n      labels: {app: test-cinder}\n    - name: test-cinder-56bdb546dd-9vdsj",
        "claims: [test-cinder-volume, extra-1, extra-2]\n      owner: {kind: ReplicaSet, name: test-cinder-56bdb546dd}\n      labels: {app: test-cinder}\n    - name: test-cinder-56bdb546dd-9vdsj",
    );
    let scenario = Scenario::parse(&text, Path::new("economy.yaml")).unwrap();
    let setup = start(&scenario).await;
    assert!(remediate(&setup, &Policy::default(), fast()).await);
    for volume in [
        SEED_VOLUME,
        "11111111-0000-4000-8000-000000000001",
        "11111111-0000-4000-8000-000000000002",
    ] {
        assert_eq!(volume_status(&setup, volume), "available", "{volume}");
    }

    let log = setup.running.requests();
    let openstack: Vec<&RequestRecord> = log
        .iter()
        .filter(|r| {
            matches!(
                r.service,
                Service::Keystone | Service::Nova | Service::Cinder
            )
        })
        .collect();
    // Status polls are repeated reads of the same volume: count each volume read once.
    let mut seen_volume_reads = BTreeSet::new();
    let counted = openstack
        .iter()
        .filter(|r| {
            !(r.method == "GET" && r.path.contains("/volumes/"))
                || seen_volume_reads.insert(r.path.clone())
        })
        .count();
    // Issue 3's budget, 3 + 2k (a token, a server read, per volume a read and a release), plus
    // issue 7's re-verification: the server read again once before the node's releases (sent
    // together) and once before the Kubernetes side.
    let k = 3;
    assert!(
        counted <= 3 + 2 * k + 2,
        "{counted} OpenStack requests besides status polls for k = {k}: {:#?}",
        openstack
            .iter()
            .map(|r| format!("{} {} {}", r.service.as_str(), r.method, r.path))
            .collect::<Vec<_>>()
    );
    for record in &openstack {
        let unfiltered_list = record.query.is_none()
            && (record.path.ends_with("/servers")
                || record.path.ends_with("/servers/detail")
                || record.path.ends_with("/volumes")
                || record.path.ends_with("/volumes/detail"));
        assert!(
            !unfiltered_list,
            "lists the whole project: {} {}",
            record.method, record.path
        );
    }
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_failed_detach_is_reported_touches_nothing_after_it_and_converges_on_retry() {
    let setup = start(&Scenario::seed()).await;
    fail_next_detach(&setup, 500);
    let policy = Policy::default();
    assert!(
        !remediate(&setup, &policy, fast()).await,
        "a 500 must fail the run"
    );
    // Nothing on the Kubernetes side was touched without a verified release.
    assert!(pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    assert!(pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-9vdsj"
    ));
    assert_eq!(
        setup
            .running
            .world
            .lock()
            .kube
            .list("volumeattachments")
            .len(),
        1
    );
    assert!(attached_to(&setup, SEED_VOLUME, SEED_SERVER));

    // The fault is gone: the next run converges.
    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(volume_status(&setup, SEED_VOLUME), "available");
    assert!(!pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_detach_that_never_finishes_fails_with_a_next_step_and_cleans_nothing() {
    let setup = start(&stuck_seed()).await;
    let options = execute::Options {
        verify_timeout: Duration::from_secs(1),
        ..fast()
    };
    let observation_policy = Policy::default();
    let (observation, plan) = plan_now(&setup, &observation_policy, false).await;
    let report = run_plan(&setup, &observation_policy, options, &observation, &plan).await;
    assert!(!report.succeeded());
    let failure = report
        .steps
        .iter()
        .find_map(|s| match &s.outcome {
            execute::Outcome::Failed {
                error, next_step, ..
            } => Some((error.clone(), next_step.clone())),
            _ => None,
        })
        .unwrap();
    assert!(failure.0.contains("detaching"), "{failure:?}");
    assert!(failure.1.contains("openstack volume show"), "{failure:?}");
    assert!(
        report
            .steps
            .iter()
            .skip(1)
            .all(|s| matches!(s.outcome, execute::Outcome::NotAttempted { .. }))
    );
    assert!(pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    assert_eq!(
        setup
            .running
            .world
            .lock()
            .kube
            .list("volumeattachments")
            .len(),
        1
    );

    // A second run sees the volume detaching and does not ask again.
    let (_, writes) = another_run(&setup, &Policy::default(), options, &CLOUD).await;
    assert_eq!(writes, Vec::<String>::new());
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_timeout_reading_nova_means_no_action_then_convergence() {
    let setup = start_with(
        &Scenario::seed(),
        ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_millis(700),
        },
    )
    .await;
    setup.running.world.lock().inject(Fault {
        service: Some(Service::Nova),
        method: "GET".into(),
        path: "/servers/*".into(),
        status: None,
        delay_ms: 2_000,
        times: Some(1),
    });
    let policy = Policy::default();
    let (_, plan) = plan_now(&setup, &policy, false).await;
    assert!(
        plan.steps.is_empty(),
        "acted on a node it could not read: {plan}"
    );
    let skip = plan
        .skipped
        .iter()
        .find(|s| s.node.as_str() == "node-4-nude")
        .unwrap();
    assert!(skip.skip.to_string().contains("nova"), "{}", skip.skip);
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );

    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(volume_status(&setup, SEED_VOLUME), "available");
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_live_server_is_never_released_s1() {
    for name in [
        "network-partition.yaml",
        "hypervisor-down.yaml",
        "storm.yaml",
    ] {
        let setup = start(&scenario(name)).await;
        assert!(
            remediate(&setup, &Policy::default(), fast()).await,
            "{name}"
        );
        assert_eq!(
            mutating(&setup.running.requests(), &EVERYTHING),
            Vec::<String>::new(),
            "{name} must see no mutating call"
        );
        setup.running.shutdown().await;
    }
}

#[tokio::test]
async fn nothing_happens_within_the_grace_period_s3() {
    let setup = start(&Scenario::seed()).await;
    let policy = Policy {
        grace: Duration::from_secs(3600),
        ..Policy::default()
    };
    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    // Within grace, the backend is not even read.
    assert!(
        !setup
            .running
            .requests()
            .iter()
            .any(|r| r.service == Service::Nova),
        "read Nova for a node within grace"
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn the_out_of_service_strategy_taints_instead_of_deleting_attachments() {
    let setup = start(&Scenario::seed()).await;
    let policy = Policy {
        strategy: Strategy::OutOfServiceTaint,
        kick: false,
        ..Policy::default()
    };
    assert!(remediate(&setup, &policy, fast()).await);
    assert!(!attached_to(&setup, SEED_VOLUME, SEED_SERVER));
    let node = node_object(&setup, "node-4-nude");
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service"
                && t["value"] == "nodeshutdown"
                && t["effect"] == "NoExecute"),
        "{taints:?}"
    );
    // The node's pod on the freed volume is force-deleted at once (pod GC would take up to
    // 20 s); the VolumeAttachment is left to Kubernetes, which detaches for a node with the
    // taint; no kick with --no-kick.
    assert!(!pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    assert!(pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-9vdsj"
    ));
    let deleted_attachments: Vec<String> = mutating(&setup.running.requests(), &EVERYTHING)
        .into_iter()
        .filter(|r| r.contains("volumeattachments"))
        .collect();
    assert_eq!(deleted_attachments, Vec::<String>::new());

    // Recovery: the node is Ready again, our taint goes, and only ours.
    setup
        .running
        .world
        .lock()
        .kube
        .set_node_ready("node-4-nude", sim::scenario::Readiness::True);
    assert!(remediate(&setup, &policy, fast()).await);
    let node = node_object(&setup, "node-4-nude");
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service"),
        "{taints:?}"
    );
    assert!(node["metadata"]["annotations"]["cinder-remediator.io/progress"].is_null());
    setup.running.shutdown().await;
}

#[tokio::test]
async fn stop_fencing_stops_the_server_then_releases_in_a_later_round() {
    let setup = start(&scenario("network-partition.yaml")).await;
    let policy = Policy {
        fence: FenceMode::Stop,
        ..Policy::default()
    };
    let (_, plan) = plan_now(&setup, &policy, false).await;
    assert!(
        matches!(plan.steps.as_slice(), [step] if matches!(step.action, Action::StopServer { .. })),
        "{plan}"
    );
    assert!(remediate(&setup, &policy, fast()).await);
    let server = "2c9b0a4e-8d1f-4b6a-9e7c-5f3d2a1b0002";
    assert_eq!(
        setup
            .running
            .world
            .lock()
            .cloud
            .server(server)
            .unwrap()
            .status
            .as_str(),
        "SHUTOFF"
    );
    assert!(
        attached_to(&setup, "91d2e3f4-5a6b-4c7d-8e9f-0a1b2c3d0001", server),
        "released in the same round as the stop"
    );
    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(
        volume_status(&setup, "91d2e3f4-5a6b-4c7d-8e9f-0a1b2c3d0001"),
        "available"
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn only_the_named_node_is_remediated() {
    let setup = start(&scenario("multiattach-rwx.yaml")).await;
    let nodes: BTreeSet<NodeName> = [NodeName::new("master1")].into_iter().collect();
    oneshot::remediate(
        &setup.cluster,
        &setup.backend,
        &Policy::default(),
        &nodes,
        YES,
        Output::Json,
        fast(),
    )
    .await
    .unwrap();
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    let unknown: BTreeSet<NodeName> = [NodeName::new("no-such-node")].into_iter().collect();
    let err = oneshot::remediate(
        &setup.cluster,
        &setup.backend,
        &Policy::default(),
        &unknown,
        YES,
        Output::Json,
        fast(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, oneshot::Error::Usage(_)));
    assert!(err.to_string().contains("no-such-node"));
    setup.running.shutdown().await;
}

const ORPHAN_SCENARIO: &str = r#"
name: orphan
openstack:
  compute_hosts: [{name: compute-1}]
  servers:
    - {id: s-live, name: node-1, status: ACTIVE, host: compute-1, addresses: [10.0.0.1]}
    - {id: s-gone, name: old-node, status: ACTIVE, host: compute-1, deleted: true}
    - {id: s-other, name: bastion, status: ACTIVE, host: compute-1}
  volumes:
    - {id: v-stale, availability_zone: az-2, attachments: [{server: s-gone}]}
    - {id: v-bastion, attachments: [{server: s-other}]}
kubernetes:
  nodes:
    - {name: node-1, provider_id: "openstack:///s-live", labels: {topology.kubernetes.io/zone: az-1}}
  persistent_volumes:
    - {name: pv-stale, csi: {driver: cinder.csi.openstack.org, volume_handle: v-stale}, claim: default/stale}
    - {name: pv-bastion, csi: {driver: cinder.csi.openstack.org, volume_handle: v-bastion}, claim: default/bastion}
"#;

#[tokio::test]
async fn stale_attachments_of_deleted_servers_are_diagnosed_and_released_only_on_request() {
    let scenario = Scenario::parse(ORPHAN_SCENARIO, Path::new("orphan.yaml")).unwrap();
    let setup = start(&scenario).await;
    let policy = Policy::default();
    let (observation, plan) = plan_now(&setup, &policy, true).await;
    let diagnosis = cinder_remediator::report::diagnose(&observation, &plan, &policy);
    let text = diagnosis.to_string();
    assert!(
        text.contains(
            "ORPHAN volume v-stale (PV pv-stale) attached to server s-gone: the server is gone"
        ),
        "{text}"
    );
    assert!(
        text.contains("ORPHAN volume v-bastion (PV pv-bastion) attached to server s-other: the server is no Kubernetes node: left alone"),
        "{text}"
    );
    assert!(
        text.contains(
            "WARNING volume v-stale is in availability zone az-2, which has no Ready node"
        ),
        "{text}"
    );

    // Without --orphans, remediate does not even read them.
    assert!(remediate(&setup, &policy, fast()).await);
    assert!(attached_to(&setup, "v-stale", "s-gone"));

    let mode = Mode {
        orphans: true,
        ..YES
    };
    let done = remediate_in(&setup, &policy, mode, fast()).await;
    assert!(done);
    assert_eq!(volume_status(&setup, "v-stale"), "available");
    assert!(
        attached_to(&setup, "v-bastion", "s-other"),
        "a live server's attachment was touched"
    );
    let cloud_calls = mutating(&setup.running.requests(), &CLOUD);
    assert_eq!(cloud_calls.len(), 1, "{cloud_calls:?}");
    assert!(
        cloud_calls[0].starts_with("cinder DELETE "),
        "{cloud_calls:?}"
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn diagnose_reads_many_volumes_as_one_paged_list_and_unlisted_ones_on_their_own() {
    // 60 more managed PVs, and one whose volume Cinder does not have: diagnose's scan of every
    // PV lists the project's volumes instead of reading 63 one by one, and reads on its own
    // only the volume the list did not show (only Cinder's answer for that id says "none").
    let mut text = ORPHAN_SCENARIO.to_owned();
    let mut volumes = String::new();
    let mut pvs = String::new();
    for i in 0..60 {
        volumes.push_str(&format!(
            "    - {{id: v-{i}, attachments: [{{server: s-live}}], multiattach: true}}\n"
        ));
        pvs.push_str(&format!(
            "    - {{name: pv-{i}, csi: {{driver: cinder.csi.openstack.org, volume_handle: v-{i}}}}}\n"
        ));
    }
    pvs.push_str(
        "    - {name: pv-missing, csi: {driver: cinder.csi.openstack.org, volume_handle: v-missing}}\n",
    );
    text = text.replace("kubernetes:\n", &format!("{volumes}kubernetes:\n"));
    text.push_str(&pvs);
    let setup = start(&Scenario::parse(&text, Path::new("orphan.yaml")).unwrap()).await;
    let policy = Policy::default();
    let (observation, plan) = plan_now(&setup, &policy, true).await;
    let diagnosis = cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string();
    assert!(
        diagnosis.contains(
            "ORPHAN volume v-stale (PV pv-stale) attached to server s-gone: the server is gone"
        ),
        "{diagnosis}"
    );
    let reads: Vec<String> = setup
        .running
        .requests()
        .iter()
        .filter(|r| r.service == Service::Cinder && r.method == "GET")
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reads, ["detail", "v-missing"], "{reads:?}");
    let missing = observation
        .persistent_volumes
        .iter()
        .find(|pv| pv.name.as_str() == "pv-missing")
        .unwrap();
    assert_eq!(
        missing.backend,
        Some(fencing::model::BackendVolume::NotFound)
    );
    setup.running.shutdown().await;
}

/// `diagnose`'s text, with the default policy.
async fn diagnosis(setup: &Setup, orphans: bool) -> String {
    let policy = Policy::default();
    let (observation, plan) = plan_now(setup, &policy, orphans).await;
    cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string()
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn diagnose_shows_what_is_stuck_and_the_next_step_on_a_node_it_will_not_touch() {
    let setup = start(&scenario("hypervisor-down.yaml")).await;
    let text = diagnosis(&setup, true).await;
    assert_lines(
        &text,
        &[
            "verdict   NOT FENCED: server 5d7f4c0e-1b7a-4f43-9a53-0c1f1f6e0002 is ACTIVE (power state 1 RUNNING) on compute host compute-2, which is down (not forced down)",
            "volume    7a1c9e52-3f0b-4f5e-8d0e-2b6c7d8e0001 (PV pvc-0b7e1a52-6c44-4c1e-9f5e-4a2f3c9d0001, cinder.csi.openstack.org): in-use, attached to 5d7f4c0e-1b7a-4f43-9a53-0c1f1f6e0002",
            "pod       db/postgres-0 (Running)",
            "attached  csi-",
            "next step once the compute host is fenced (powered off), mark it: `openstack compute service set --down compute-2 nova-compute` and run with --trust-forced-down",
        ],
    );
    assert!(!text.contains("$ openstack server remove volume"), "{text}");
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn stop_fencing_never_stops_a_server_whose_host_is_not_up_and_says_why() {
    let setup = start(&scenario("hypervisor-down.yaml")).await;
    let policy = Policy {
        fence: FenceMode::Stop,
        ..Policy::default()
    };
    let (observation, plan) = plan_now(&setup, &policy, false).await;
    assert!(plan.steps.is_empty(), "{plan}");
    let text = cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string();
    assert_lines(
        &text,
        &["next step not stopped: its compute host is not up, so a stop would never run"],
    );
    assert!(remediate(&setup, &policy, fast()).await);
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;
}

/// A catalogue scenario seen through a plain project member's credentials.
fn as_member(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "openstack:\n",
        "openstack:\n  role: member\n",
        1,
    );
    Scenario::parse(&text, &path).unwrap()
}

#[tokio::test]
async fn member_credentials_prove_a_shut_off_server_and_say_what_a_hidden_host_needs() {
    // A member sees no host: a dead hypervisor is "not proven", with the rights that would
    // allow more, and nothing errors or is touched.
    let setup = start(&as_member("hypervisor-down.yaml")).await;
    for policy in [
        Policy::default(),
        Policy {
            trust_forced_down: true,
            fence: FenceMode::Stop,
            ..Policy::default()
        },
    ] {
        let (observation, plan) = plan_now(&setup, &policy, false).await;
        assert!(plan.steps.is_empty(), "{plan}");
        let text = cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string();
        assert_lines(
            &text,
            &[
                "compute host hidden from these credentials",
                "Nova does not show these credentials its compute host",
                "os_compute_api:servers:show:host_status",
            ],
        );
        assert!(remediate(&setup, &policy, fast()).await);
    }
    let services = setup
        .running
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/os-services"))
        .count();
    assert_eq!(services, 0, "a member never asks for os-services");
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;

    // A policy that shows the host but refuses os-services counts the same, not as an error.
    let setup = start(&scenario("hypervisor-down.yaml")).await;
    setup.running.world.lock().inject(Fault {
        service: Some(Service::Nova),
        method: "GET".into(),
        path: "/os-services".into(),
        status: Some(403),
        delay_ms: 0,
        times: None,
    });
    let policy = Policy::default();
    let (observation, plan) = plan_now(&setup, &policy, false).await;
    let text = cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string();
    assert_lines(
        &text,
        &[
            "on compute host compute-2 (state unknown)",
            "os_compute_api:os-services:list",
        ],
    );
    setup.running.shutdown().await;

    // What a member sees still proves a shut-off server: the seed story is remediated.
    let setup = start(&as_member("seed-node-shutdown.yaml")).await;
    assert!(remediate(&setup, &Policy::default(), fast()).await);
    assert_eq!(volume_status(&setup, SEED_VOLUME), "available");
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_refused_detach_says_why_and_what_to_do() {
    let setup = start(&Scenario::seed()).await;
    fail_next_detach(&setup, 409);
    let policy = Policy::default();
    let (observation, plan) = plan_now(&setup, &policy, false).await;
    let report = run_plan(&setup, &policy, fast(), &observation, &plan).await;
    let execute::Outcome::Failed {
        error, next_step, ..
    } = &report.steps[0].outcome
    else {
        panic!("the release did not fail: {report:?}");
    };
    assert!(error.contains("conflict (409)"), "{error}");
    assert!(next_step.contains("task in progress"), "{next_step}");
    assert!(next_step.contains(&format!(
        "openstack server remove volume {SEED_SERVER} {SEED_VOLUME}"
    )));
    assert!(pod_exists(
        &setup,
        "default",
        "test-cinder-56bdb546dd-56mct"
    ));
    // The operator sees it on the Node: a Warning with the error and the next step.
    let failed: Vec<serde_json::Value> = setup
        .running
        .world
        .lock()
        .kube
        .list("events")
        .into_iter()
        .filter(|e| e["reason"] == "RemediationFailed")
        .cloned()
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["type"], "Warning");
    assert_eq!(failed[0]["involvedObject"]["kind"], "Node");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message.contains("conflict (409)") && message.contains("next: "),
        "{message}"
    );
    setup.running.shutdown().await;
}

/// How the world changes between planning and running (issue 7).
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Someone starts the node's server again (`os-start`).
    ServerRestarted,
    /// The kubelet reports again.
    NodeReady,
    /// The Node is deleted and re-created under its name (another UID).
    NodeRecreated,
    /// Someone else adds the out-of-service taint.
    TaintAdded,
}

async fn change_world(setup: &Setup, change: Change) {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    let nodes = Api::<Node>::all(setup.client.clone());
    match change {
        Change::ServerRestarted => {
            let now = setup.running.world.now_ms();
            setup
                .running
                .world
                .lock()
                .cloud
                .start(SEED_SERVER, now)
                .unwrap();
        }
        Change::NodeReady => setup
            .running
            .world
            .lock()
            .kube
            .set_node_ready(SEED_NODE, sim::scenario::Readiness::True),
        Change::NodeRecreated => {
            let mut node = nodes.get(SEED_NODE).await.unwrap();
            nodes
                .delete(SEED_NODE, &DeleteParams::default())
                .await
                .unwrap();
            node.metadata.uid = None;
            node.metadata.resource_version = None;
            node.metadata.creation_timestamp = None;
            nodes.create(&PostParams::default(), &node).await.unwrap();
        }
        Change::TaintAdded => {
            let patch = serde_json::json!({"spec": {"taints": [
                {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}
            ]}});
            nodes
                .patch(SEED_NODE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
}

const SEED_NODE: &str = "node-4-nude";

#[tokio::test]
async fn a_world_changed_between_planning_and_acting_stops_the_node() {
    for change in [
        Change::ServerRestarted,
        Change::NodeReady,
        Change::NodeRecreated,
        Change::TaintAdded,
    ] {
        let setup = start(&Scenario::seed()).await;
        let policy = Policy::default();
        let (observation, plan) = plan_now(&setup, &policy, false).await;
        assert!(
            plan.steps
                .iter()
                .any(|s| matches!(s.action, Action::ReleaseVolume { .. })),
            "{change:?}: {plan}"
        );
        change_world(&setup, change).await;
        let before = setup.running.requests().len();
        let report = run_plan(&setup, &policy, fast(), &observation, &plan).await;
        let after = &setup.running.requests()[before..];
        assert!(!report.succeeded(), "{change:?}");
        let execute::Outcome::Stale { why, .. } = &report.steps[0].outcome else {
            panic!("{change:?}: the first step was not stopped: {report:?}");
        };
        assert!(why.contains("evidence changed"), "{change:?}: {why}");
        assert!(
            report.steps[1..]
                .iter()
                .all(|s| matches!(s.outcome, execute::Outcome::NotAttempted { .. })),
            "{change:?}"
        );
        // Nothing for the node: no Nova or Cinder write, no Kubernetes write but the Event.
        assert_eq!(mutating(after, &CLOUD), Vec::<String>::new(), "{change:?}");
        let kube_writes: Vec<String> = mutating(after, &[Service::Kubernetes])
            .into_iter()
            .filter(|w| !w.contains("/events"))
            .collect();
        assert_eq!(kube_writes, Vec::<String>::new(), "{change:?}");
        // (A kubelet back finishes its terminating pod; a deleted Node lets Kubernetes' pod
        // garbage collector remove its pods: neither is ours, as the writes above show.)
        if matches!(change, Change::ServerRestarted | Change::TaintAdded) {
            assert!(
                pod_exists(&setup, "default", "test-cinder-56bdb546dd-56mct"),
                "{change:?}"
            );
        }
        assert!(
            attached_to(&setup, SEED_VOLUME, SEED_SERVER),
            "{change:?}: the volume was released"
        );
        setup.running.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_mapped_to_no_server_blocks_the_release_of_stale_attachments() {
    // node-2 (Ready) has no providerID, and no server has its name or address: the gone server
    // s-gone may have been its own, so its stale attachment is listed, never released.
    let text = ORPHAN_SCENARIO.replace(
        "    - {name: node-1, provider_id: \"openstack:///s-live\", labels: {topology.kubernetes.io/zone: az-1}}\n",
        "    - {name: node-1, provider_id: \"openstack:///s-live\", labels: {topology.kubernetes.io/zone: az-1}}\n    - {name: node-2, addresses: [10.0.0.2]}\n",
    );
    let setup = start(&Scenario::parse(&text, Path::new("orphan.yaml")).unwrap()).await;
    let policy = Policy::default();
    let (_, plan) = plan_now(&setup, &policy, true).await;
    assert!(plan.orphans.iter().any(|o| o.server_gone), "{plan}");
    assert!(plan.steps.is_empty(), "{plan}");
    assert!(
        plan.warnings
            .contains(&fencing::plan::Warning::OrphansNotReleased {
                nodes: vec![NodeName::new("node-2")],
            }),
        "{plan}"
    );
    let mode = Mode {
        orphans: true,
        ..YES
    };
    remediate_in(&setup, &policy, mode, fast()).await;
    assert!(attached_to(&setup, "v-stale", "s-gone"));
    assert_eq!(
        mutating(&setup.running.requests(), &CLOUD),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;

    // The same node matched (by name and address) to a live server: s-gone is no node's, and
    // its stale attachment alone is released.
    let text = text.replace(
        "{id: s-other, name: bastion, status: ACTIVE, host: compute-1}",
        "{id: s-other, name: node-2, status: ACTIVE, host: compute-1, addresses: [10.0.0.2]}",
    );
    let setup = start(&Scenario::parse(&text, Path::new("orphan.yaml")).unwrap()).await;
    remediate_in(&setup, &policy, mode, fast()).await;
    assert_eq!(volume_status(&setup, "v-stale"), "available");
    assert!(attached_to(&setup, "v-bastion", "s-other"));
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_maintenance_host_is_not_taken_for_an_up_one() {
    // Nova's host_status MAINTENANCE means a disabled service, whose liveness it does not say:
    // here compute-2 is disabled *and* stopped reporting. Stop fencing must not take it for up
    // (an os-stop to a host that cannot do it): the client reads os-services instead.
    let text = r#"
name: maintenance
openstack:
  compute_hosts: [{name: compute-1}, {name: compute-2, state: down}]
  servers:
    - {id: s-1, name: node-1, status: ACTIVE, host: compute-1, addresses: [10.0.0.1]}
    - {id: s-2, name: node-2, status: ACTIVE, host: compute-2, addresses: [10.0.0.2]}
    - {id: s-3, name: node-3, status: ACTIVE, host: compute-1, addresses: [10.0.0.3]}
  volumes:
    - {id: v-2, attachments: [{server: s-2}]}
kubernetes:
  nodes:
    - {name: node-1, provider_id: "openstack:///s-1", addresses: [10.0.0.1]}
    - {name: node-2, provider_id: "openstack:///s-2", ready: Unknown, ready_since: 5m, addresses: [10.0.0.2]}
    - {name: node-3, provider_id: "openstack:///s-3", addresses: [10.0.0.3]}
  persistent_volumes:
    - {name: pv-2, csi: {driver: cinder.csi.openstack.org, volume_handle: v-2}, claim: default/data}
  pods:
    - {name: db-0, node: node-2, claims: [data], owner: {kind: StatefulSet, name: db}}
"#;
    let setup = start(&Scenario::parse(text, Path::new("maintenance.yaml")).unwrap()).await;
    setup.running.world.lock().cloud.update_service(
        "compute-2",
        None,
        Some((true, Some("drain".into()))),
    );
    let policy = Policy {
        fence: FenceMode::Stop,
        ..Policy::default()
    };
    let (observation, plan) = plan_now(&setup, &policy, false).await;
    let node = observation
        .nodes
        .iter()
        .find(|n| n.name.as_str() == "node-2")
        .unwrap();
    let fencing::model::StorageView::OpenStack(server) = &node.storage else {
        panic!("{:?}", node.storage);
    };
    assert_eq!(
        server.host_state,
        Some(fencing::model::HostView {
            up: false,
            forced_down: false
        })
    );
    assert!(plan.steps.is_empty(), "{plan}");
    assert_eq!(
        mutating(&setup.running.requests(), &CLOUD),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn the_attacher_finalizer_stays_while_cinder_shows_the_attachment() {
    // A VolumeAttachment deleted while Cinder still shows its volume on the node's server (a
    // detach that never completes): the executor re-reads Cinder before it removes the
    // attacher's finalizer, and keeps it.
    let setup = start(&stuck_seed()).await;
    let policy = Policy::default();
    let (observation, mut plan) = plan_now(&setup, &policy, false).await;
    // As if an earlier run had recorded the release: only the Kubernetes side is left.
    plan.steps
        .retain(|s| matches!(s.action, Action::DeleteVolumeAttachment { .. }));
    for step in &mut plan.steps {
        step.after.clear();
    }
    assert_eq!(plan.steps.len(), 1, "{plan}");
    let report = run_plan(&setup, &policy, fast(), &observation, &plan).await;
    let execute::Outcome::Failed { error, .. } = &report.steps[0].outcome else {
        panic!("{report:?}");
    };
    assert!(error.contains("Cinder still shows"), "{error}");
    {
        let state = setup.running.world.lock();
        let va = state.kube.list("volumeattachments");
        assert_eq!(va.len(), 1);
        assert!(
            va[0]["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{:?}",
            va[0]["metadata"]
        );
    }
    setup.running.shutdown().await;
}

#[tokio::test]
async fn node_writes_carry_the_observed_uid_and_a_taint_is_ours_only_when_we_added_it() {
    use fencing::model::{NodeUid, Progress, Taint};
    let setup = start(&Scenario::seed()).await;
    let before = setup.running.requests().len();
    let stale = NodeUid::new("uid-of-the-node-before-it-was-re-created");
    let taint = Taint::out_of_service();
    let err = setup
        .cluster
        .set_progress(SEED_NODE, &stale, Some(&Progress::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("re-created"), "{err}");
    assert!(
        setup
            .cluster
            .add_taint(SEED_NODE, &stale, &taint)
            .await
            .is_err()
    );
    assert!(
        setup
            .cluster
            .remove_taint(SEED_NODE, &stale, &taint)
            .await
            .is_err()
    );
    let writes = mutating(&setup.running.requests()[before..], &[Service::Kubernetes]);
    assert_eq!(writes, Vec::<String>::new());

    let uid = setup
        .cluster
        .node(SEED_NODE)
        .await
        .unwrap()
        .unwrap()
        .uid
        .unwrap();
    assert!(
        setup
            .cluster
            .add_taint(SEED_NODE, &uid, &taint)
            .await
            .unwrap()
    );
    // Already there (someone else's, or ours from before): this write did not add it.
    assert!(
        !setup
            .cluster
            .add_taint(SEED_NODE, &uid, &taint)
            .await
            .unwrap()
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_progress_annotation_is_reported_and_its_node_left_alone() {
    let setup = start(&scenario("evidence-stale-progress-record.yaml")).await;
    // node-4 is remediated, node-5 (unreadable annotation) is not: the run says so (exit 1).
    assert!(!remediate(&setup, &Policy::default(), fast()).await);
    assert!(pod_exists(&setup, "default", "kafka-1"));
    assert!(!pod_exists(&setup, "default", "kafka-0"));
    let warned = setup
        .running
        .world
        .lock()
        .kube
        .list("events")
        .into_iter()
        .any(|event| {
            event["reason"] == "ProgressUnreadable"
                && event["type"] == "Warning"
                && (event["involvedObject"]["name"] == "node-5"
                    || event["regarding"]["name"] == "node-5")
        });
    assert!(warned, "no ProgressUnreadable Event on node-5");
    setup.running.shutdown().await;
}

#[tokio::test]
async fn diagnose_says_why_invisible_evidence_is_no_proof_and_what_to_do() {
    let setup = start(&scenario("evidence-404-not-proof.yaml")).await;
    let text = diagnosis(&setup, false).await;
    assert_lines(
        &text,
        &[
            "the providerID names region RegionTwo, the session reaches RegionOne: no match",
            "next step run with credentials for region RegionTwo",
            "nor its volumes: wrong region, project or credentials?",
            "next step check the credentials' project and region: `openstack server show 5f1e9d8c-7b6a-4c5d-9e4f-3a2b1c0d0005`",
        ],
    );
    assert!(!text.contains("FENCED"), "{text}");
    assert_eq!(
        mutating(&setup.running.requests(), &EVERYTHING),
        Vec::<String>::new()
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_detach_denied_by_policy_is_marked_refused_not_transient() {
    // A 403 is no state to wait out: the report says so (the controller then does not retry
    // it in quick succession), unlike a 409.
    for (status, refused) in [(403, true), (409, false)] {
        let setup = start(&Scenario::seed()).await;
        fail_next_detach(&setup, status);
        let policy = Policy::default();
        let (observation, plan) = plan_now(&setup, &policy, false).await;
        let report = run_plan(&setup, &policy, fast(), &observation, &plan).await;
        let execute::Outcome::Failed {
            refused: marked, ..
        } = &report.steps[0].outcome
        else {
            panic!("{status}: the release did not fail: {report:?}");
        };
        assert_eq!(*marked, refused, "{status}");
        setup.running.shutdown().await;
    }
}

#[tokio::test]
async fn diagnose_tells_the_failure_kinds_apart_with_what_each_needs() {
    for (file, lines) in [
        (
            "seed-node-shutdown.yaml",
            &[
                "failure   VM down",
                "remediator frees its volumes once the grace is over",
            ][..],
        ),
        (
            "network-partition.yaml",
            &[
                "failure   VM hung (or cut off)",
                "remediator nothing: a VM that runs may still write",
                "to do more if the node is truly lost: `remediate --fence stop`",
            ][..],
        ),
        (
            "hypervisor-down.yaml",
            &[
                "failure   hypervisor dead",
                "remediator nothing: Nova refuses every detach while the compute service is down",
                "to do more fence the host (power it off), mark it `openstack compute service set --down compute-2 nova-compute`, and run with --trust-forced-down --dead-host delete-server|evacuate",
            ][..],
        ),
        (
            "dead-host-member.yaml",
            &[
                "failure   VM hung or hypervisor dead (host state not visible)",
                "to do more credentials allowed os_compute_api:os-extended-server-attributes",
            ][..],
        ),
    ] {
        let setup = start(&scenario(file)).await;
        let text = diagnosis(&setup, false).await;
        assert_lines(&text, lines);
        setup.running.shutdown().await;
    }
}

fn server_exists(setup: &Setup, id: &str) -> bool {
    setup.running.world.lock().cloud.server(id).is_some()
}

const DEAD_SERVER: &str = "6b1f0c2e-3d4a-4e5b-9c6d-7e8f9a0b0002";
const DEAD_VOLUME: &str = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e0001";

/// `dead-host-delete-server.yaml` (or its evacuate twin) with compute-2 forced down already.
async fn forced_down(file: &str) -> Setup {
    let setup = start(&scenario(file)).await;
    mark_forced_down(&setup, true);
    setup
}

/// An operator marks compute-2 forced down (`openstack compute service set --down`), or lifts it.
fn mark_forced_down(setup: &Setup, forced: bool) {
    let now = setup.running.world.now_ms();
    setup
        .running
        .world
        .lock()
        .cloud
        .set_host_state("compute-2", None, Some(forced), now);
}

fn dead_host(choice: DeadHost) -> Policy {
    Policy {
        trust_forced_down: true,
        dead_host: choice,
        ..Policy::default()
    }
}

#[tokio::test]
async fn a_forced_down_hosts_server_is_deleted_its_volume_freed_its_node_gone_once() {
    let setup = forced_down("dead-host-delete-server.yaml").await;
    assert!(remediate(&setup, &dead_host(DeadHost::DeleteServer), fast()).await);
    assert_eq!(
        mutating(&setup.running.requests(), &CLOUD),
        [format!("nova DELETE /v2.1/servers/{DEAD_SERVER}")]
    );
    assert_eq!(volume_status(&setup, DEAD_VOLUME), "available");
    assert!(!server_exists(&setup, DEAD_SERVER));
    assert!(
        setup.cluster.node("node-2").await.unwrap().is_none(),
        "the Node of the deleted server goes"
    );
    assert!(!pod_exists(&setup, "shop", "orders-7c9d8b6f5-k2m4p"));
    // Nothing is left to do: a second run sends nothing.
    let (done, writes) = another_run(
        &setup,
        &dead_host(DeadHost::DeleteServer),
        fast(),
        &EVERYTHING,
    )
    .await;
    assert!(done);
    assert_eq!(writes, Vec::<String>::new());
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_host_no_longer_forced_down_at_the_moment_of_acting_keeps_its_server() {
    for choice in [DeadHost::DeleteServer, DeadHost::Evacuate] {
        let setup = forced_down("dead-host-delete-server.yaml").await;
        let policy = dead_host(choice);
        let (observation, plan) = plan_now(&setup, &policy, false).await;
        assert!(
            matches!(
                plan.steps[0].action,
                Action::DeleteServer { .. } | Action::EvacuateServer { .. }
            ),
            "{plan}"
        );
        // The operator lifts the mark (the host may not be fenced after all).
        mark_forced_down(&setup, false);
        let before = setup.running.requests().len();
        let report = run_plan(&setup, &policy, fast(), &observation, &plan).await;
        assert!(
            matches!(report.steps[0].outcome, execute::Outcome::Stale { .. }),
            "{choice:?}: {report:?}"
        );
        assert_eq!(
            mutating(&setup.running.requests()[before..], &CLOUD),
            Vec::<String>::new(),
            "{choice:?}"
        );
        assert!(server_exists(&setup, DEAD_SERVER));
        setup.running.shutdown().await;
    }
}

#[tokio::test]
async fn an_evacuated_node_is_waited_for_then_recovered_and_never_evacuated_twice() {
    let setup = forced_down("dead-host-evacuate.yaml").await;
    let policy = Policy {
        evacuate_wait: Duration::from_secs(30),
        ..dead_host(DeadHost::Evacuate)
    };
    assert!(remediate(&setup, &policy, fast()).await);
    let log = setup.running.requests();
    assert_eq!(
        mutating(&log, &CLOUD),
        [format!("nova POST /v2.1/servers/{DEAD_SERVER}/action")]
    );
    let node = setup.cluster.node("node-2").await.unwrap().unwrap();
    assert!(node.ready.is_ready(), "remediate returns once it is back");
    assert!(
        node.progress.is_none(),
        "its record is cleared: the recovery (kicks, then the record) ran"
    );
    // The evacuate was recorded before it was sent, and is never sent again.
    let (done, writes) = another_run(&setup, &policy, fast(), &CLOUD).await;
    assert!(done);
    assert_eq!(writes, Vec::<String>::new());
    setup.running.shutdown().await;
}

/// Nova answers the next server action with `status`.
fn fail_next_action(setup: &Setup, status: u16) {
    setup.running.world.lock().inject(Fault {
        service: Some(Service::Nova),
        method: "POST".into(),
        path: "/servers/*/action".into(),
        status: Some(status),
        delay_ms: 0,
        times: Some(1),
    });
}

#[tokio::test]
async fn a_refused_evacuate_may_be_asked_again_one_that_may_have_reached_nova_never() {
    let policy = dead_host(DeadHost::Evacuate);
    let evacuates = |setup: &Setup| {
        mutating(&setup.running.requests(), &CLOUD)
            .into_iter()
            .filter(|w| w.ends_with("/action"))
            .count()
    };
    // Refused (Nova did nothing): the record is cleared, the next run asks again.
    let setup = forced_down("dead-host-evacuate.yaml").await;
    fail_next_action(&setup, 409);
    let fast_wait = Policy {
        evacuate_wait: Duration::from_secs(30),
        ..policy.clone()
    };
    assert!(!remediate(&setup, &fast_wait, fast()).await);
    let node = setup.cluster.node("node-2").await.unwrap().unwrap();
    assert!(
        node.progress.is_none_or(|p| p.host_action.is_none()),
        "a refused request leaves no record"
    );
    assert!(remediate(&setup, &fast_wait, fast()).await);
    assert_eq!(evacuates(&setup), 2);
    setup.running.shutdown().await;

    // A 503 may have reached Nova: recorded, never asked again.
    let setup = forced_down("dead-host-evacuate.yaml").await;
    fail_next_action(&setup, 503);
    assert!(!remediate(&setup, &fast_wait, fast()).await);
    let node = setup.cluster.node("node-2").await.unwrap().unwrap();
    assert!(node.progress.is_some_and(|p| p.host_action.is_some()));
    assert!(!remediate(&setup, &fast_wait, fast()).await);
    assert_eq!(evacuates(&setup), 1, "never sent twice");
    setup.running.shutdown().await;
}
