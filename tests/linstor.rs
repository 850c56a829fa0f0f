//! The LINSTOR backend end to end against the emulated LINSTOR controller and cluster, through
//! the production paths (the REST client, the backend, the planner, the executor): a satellite
//! lost while the survivors hold quorum is acted on; a kubelet-only failure, a dead controller
//! or one answering 500 never is; a dead first controller is skipped.

use std::collections::BTreeSet;
use std::path::Path;

use cinder_remediator::backend::linstor::Linstor;
use cinder_remediator::backend::storage::Storage;
use cinder_remediator::cluster::{Breadth, Cluster};
use cinder_remediator::execute;
use cinder_remediator::linstor::{Controllers, LinstorSettings};
use cinder_remediator::oneshot::{self, Mode, Output};
use fencing::plan::{Action, Policy, Skip};
use sim::scenario::{Fault, Service};
use sim::{RequestRecord, Running, Scenario};

/// node-b's satellite is lost (OFFLINE): its peers see it disconnected, node-a may promote and
/// none is in use. Its StatefulSet pod hangs Terminating, its VolumeAttachment stays.
const LOST: &str = r"
name: linstor-lost
openstack: {}
kubernetes:
  nodes:
    - {name: node-a, ready: 'True', ready_since: 1d}
    - {name: node-b, ready: Unknown, ready_since: 10m}
    - {name: node-c, ready: 'True', ready_since: 1d}
  persistent_volumes:
    - name: pvc-db
      csi: {driver: linstor.csi.linbit.com, volume_handle: pvc-db}
      claim: default/data-db-0
  pods:
    - {name: db-0, node: node-b, phase: Running, terminating: true, claims: [data-db-0], owner: {kind: StatefulSet, name: db}}
  volume_attachments:
    - {pv: pvc-db, node: node-b}
linstor:
  nodes:
    - {name: node-a}
    - {name: node-b, connection_status: OFFLINE}
    - {name: node-c}
  resources:
    - {name: pvc-db, node: node-a, may_promote: true, connections: {node-b: false, node-c: true}}
    - {name: pvc-db, node: node-b, in_use: true, connections: {node-a: true, node-c: true}}
    - {name: pvc-db, node: node-c, may_promote: true, connections: {node-a: true, node-b: false}}
";

struct Setup {
    running: Running,
    cluster: Cluster,
}

async fn start(text: &str) -> Setup {
    let scenario = Scenario::parse(text, Path::new("linstor.yaml")).unwrap();
    let running = sim::serve(&scenario).await.unwrap();
    let client = cinder_remediator::demo::service_account_client(&running)
        .await
        .unwrap();
    Setup {
        cluster: Cluster::new(client, "e2e"),
        running,
    }
}

/// LINSTOR alone, through `controllers` (the emulated one when `None`).
fn storage(setup: &Setup, controllers: Option<String>) -> Storage {
    let url = setup.running.endpoints.linstor.clone().unwrap();
    Storage::linstor(Linstor::new(
        Controllers::new(&LinstorSettings {
            controllers: controllers.unwrap_or(url),
            ..LinstorSettings::default()
        })
        .unwrap(),
    ))
}

async fn plan(setup: &Setup, backend: &Storage) -> fencing::plan::Plan {
    plan_with(setup, backend, &Policy::default()).await
}

async fn plan_with(setup: &Setup, backend: &Storage, policy: &Policy) -> fencing::plan::Plan {
    oneshot::observe_and_plan(
        &setup.cluster,
        backend,
        policy,
        &BTreeSet::new(),
        false,
        Breadth::Planning,
    )
    .await
    .unwrap()
    .1
}

/// Whether the test's admin client sent it (setting the scene or looking on), not the
/// remediator.
fn by_admin(record: &RequestRecord) -> bool {
    record
        .access
        .as_ref()
        .is_some_and(|access| access.user.is_master())
}

fn kube_writes(setup: &Setup) -> Vec<String> {
    setup
        .running
        .requests()
        .iter()
        .filter(|r| r.service == Service::Kubernetes && r.is_mutating() && !by_admin(r))
        .filter(|r| !r.path.contains("/events"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_lost_satellite_with_quorum_frees_the_kubernetes_side_and_nothing_else() {
    let setup = start(LOST).await;
    let backend = storage(&setup, None);
    let plan = plan(&setup, &backend).await;
    let kinds: Vec<&str> = plan.steps.iter().map(|s| s.action.metric_label()).collect();
    assert_eq!(
        kinds,
        ["delete_volume_attachment", "force_delete_pod"],
        "{plan}"
    );
    let done = oneshot::remediate(
        &setup.cluster,
        &backend,
        &Policy::default(),
        &BTreeSet::new(),
        Mode {
            dry_run: false,
            yes: true,
            orphans: false,
        },
        Output::Json,
        execute::Options::default(),
    )
    .await
    .unwrap();
    assert!(done);
    let writes = kube_writes(&setup);
    assert!(
        writes
            .iter()
            .any(|w| w.starts_with("DELETE") && w.contains("/pods/db-0")),
        "{writes:?}"
    );
    assert!(
        setup
            .running
            .requests()
            .iter()
            .all(|r| !matches!(r.service, Service::Nova | Service::Cinder) || !r.is_mutating()),
        "LINSTOR volumes are never detached in the cloud"
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_kubelet_only_failure_with_drbd_connected_is_left_alone() {
    // The satellite is ONLINE and its peers still see it: the node may still write.
    let text = LOST
        .replace(
            "{name: node-b, connection_status: OFFLINE}",
            "{name: node-b}",
        )
        .replace(
            "{node-b: false, node-c: true}",
            "{node-b: true, node-c: true}",
        )
        .replace(
            "{node-a: true, node-b: false}",
            "{node-a: true, node-b: true}",
        );
    let setup = start(&text).await;
    let plan = plan(&setup, &storage(&setup, None)).await;
    assert!(plan.steps.is_empty(), "{plan}");
    assert!(matches!(plan.skipped[0].skip, Skip::NotFenced { .. }));
    setup.running.shutdown().await;
}

#[tokio::test]
async fn a_controller_that_fails_means_no_action_and_a_dead_first_one_is_skipped() {
    let setup = start(LOST).await;
    // 500 from the only controller: no verdict, no step.
    setup.running.world.lock().inject(Fault {
        service: Some(Service::Linstor),
        method: "GET".into(),
        path: "/v1/*".into(),
        status: Some(500),
        delay_ms: 0,
        times: None,
    });
    let plan_500 = plan(&setup, &storage(&setup, None)).await;
    assert!(plan_500.steps.is_empty(), "{plan_500}");
    assert!(
        matches!(&plan_500.skipped[0].skip, Skip::StorageError { detail } if detail.contains("no LINSTOR controller answered")),
        "{:?}",
        plan_500.skipped
    );
    setup.running.world.lock().clear_faults();
    // A first controller that refuses connections is skipped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let both = format!(
        "{dead_url},{}",
        setup.running.endpoints.linstor.clone().unwrap()
    );
    let plan = plan(&setup, &storage(&setup, Some(both))).await;
    assert!(
        plan.steps
            .iter()
            .any(|s| matches!(s.action, Action::ForceDeletePod { .. })),
        "{plan}"
    );
    setup.running.shutdown().await;
}

/// node-b's server is shut off; it held a Cinder volume and a LINSTOR replica.
const MIXED: &str = r"
name: mixed
openstack:
  compute_hosts: [{name: compute-1}]
  servers:
    - {id: 5e0c7a1b-0000-4000-8000-000000000001, name: node-a, status: ACTIVE, host: compute-1}
    - {id: 5e0c7a1b-0000-4000-8000-000000000002, name: node-b, status: SHUTOFF, host: compute-1}
  volumes:
    - {id: 9c1d2e3f-0000-4000-8000-000000000001, attachments: [{server: 5e0c7a1b-0000-4000-8000-000000000002}]}
kubernetes:
  nodes:
    - {name: node-a, provider_id: 'openstack:///5e0c7a1b-0000-4000-8000-000000000001', ready: 'True', ready_since: 1d}
    - {name: node-b, provider_id: 'openstack:///5e0c7a1b-0000-4000-8000-000000000002', ready: Unknown, ready_since: 10m}
  persistent_volumes:
    - name: pvc-cinder
      csi: {driver: cinder.csi.openstack.org, volume_handle: 9c1d2e3f-0000-4000-8000-000000000001}
      claim: default/data-web-0
    - name: pvc-db
      csi: {driver: linstor.csi.linbit.com, volume_handle: pvc-db}
      claim: default/data-db-0
  pods:
    - {name: web-0, node: node-b, phase: Running, terminating: true, claims: [data-web-0], owner: {kind: StatefulSet, name: web}}
    - {name: db-0, node: node-b, phase: Running, terminating: true, claims: [data-db-0], owner: {kind: StatefulSet, name: db}}
  volume_attachments:
    - {pv: pvc-cinder, node: node-b}
    - {pv: pvc-db, node: node-b}
linstor:
  nodes:
    - {name: node-a}
    - {name: node-b, connection_status: OFFLINE}
    - {name: node-c}
  resources:
    - {name: pvc-db, node: node-a, may_promote: true, connections: {node-b: false, node-c: true}}
    - {name: pvc-db, node: node-b, in_use: true, connections: {node-a: true, node-c: true}}
    - {name: pvc-db, node: node-c, connections: {node-a: true, node-b: false}}
";

#[tokio::test]
async fn a_node_with_a_cinder_and_a_linstor_volume_frees_each_through_its_backend() {
    let setup = start(MIXED).await;
    let source = cinder_remediator::demo::openstack_source(&setup.running);
    let settings = cinder_remediator::openstack::config::load(&source).unwrap();
    let session = cinder_remediator::openstack::session::connect(&settings)
        .await
        .unwrap();
    let both = Storage::openstack(cinder_remediator::backend::openstack::OpenStack::new(
        &session,
        settings.region(),
    ))
    .with_linstor(Some(Linstor::new(
        Controllers::new(&LinstorSettings {
            controllers: setup.running.endpoints.linstor.clone().unwrap(),
            ..LinstorSettings::default()
        })
        .unwrap(),
    )));
    let plan = plan(&setup, &both).await;
    let commands: Vec<String> = plan
        .steps
        .iter()
        .map(|s| s.action.manual_command())
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("openstack server remove volume")),
        "the Cinder volume is released: {plan}"
    );
    for pod in ["web-0", "db-0"] {
        assert!(
            commands
                .iter()
                .any(|c| c.contains(&format!(" {pod} --grace-period=0"))),
            "{pod}: {plan}"
        );
    }
    assert!(plan.held.is_empty(), "{:?}", plan.held);
    setup.running.shutdown().await;
}

#[tokio::test]
async fn diagnose_shows_each_replica_as_the_verdict_reads_it() {
    let setup = start(LOST).await;
    let policy = Policy::default();
    let (observation, plan) = oneshot::observe_and_plan(
        &setup.cluster,
        &storage(&setup, None),
        &policy,
        &BTreeSet::new(),
        false,
        Breadth::Planning,
    )
    .await
    .unwrap();
    let text = cinder_remediator::report::diagnose(&observation, &plan, &policy).to_string();
    for line in [
        "storage   LINSTOR satellite OFFLINE",
        "node-a [UpToDate, not in use, may promote, disconnected from node-b]",
        "node-c [UpToDate, not in use, may promote, disconnected from node-b]",
        "node-b [disk state: unknown, in use: unknown, may promote: unknown]",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    setup.running.shutdown().await;
}

#[tokio::test]
async fn the_piraeus_label_opts_pods_in_and_the_keep_annotation_out() {
    let only_labelled = Policy {
        only_labelled_pods: true,
        ..Policy::default()
    };
    let force_deletes = |plan: &fencing::plan::Plan| {
        plan.steps
            .iter()
            .any(|s| matches!(s.action, Action::ForceDeletePod { .. }))
    };
    let setup = start(LOST).await;
    let backend = storage(&setup, None);
    assert!(!force_deletes(
        &plan_with(&setup, &backend, &only_labelled).await
    ));
    setup.running.shutdown().await;

    let labelled = LOST.replace(
        "owner: {kind: StatefulSet, name: db}}",
        "owner: {kind: StatefulSet, name: db}, labels: {linstor.csi.linbit.com/on-storage-lost: remove}}",
    );
    let setup = start(&labelled).await;
    let backend = storage(&setup, None);
    assert!(force_deletes(
        &plan_with(&setup, &backend, &only_labelled).await
    ));
    // An operator (the cluster's admin) keeps it: never force-deleted, whatever the mode.
    let admin = cinder_remediator::demo::admin_client(&setup.running).unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(admin, "default");
    pods.patch(
        "db-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({
            "metadata": {"annotations": {"cinder-remediator.io/on-node-lost": "keep"}}
        })),
    )
    .await
    .unwrap();
    let plan = plan_with(&setup, &backend, &only_labelled).await;
    assert!(!force_deletes(&plan), "{plan}");
    assert!(
        plan.steps
            .iter()
            .any(|s| matches!(s.action, Action::DeleteVolumeAttachment { .. })),
        "the volume's Kubernetes side is cleaned all the same: {plan}"
    );
    setup.running.shutdown().await;
}

fn tls_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A LINSTOR controller on loopback HTTPS (the test CA's certificate for 127.0.0.1) that asks
/// for a client certificate of the test client CA and lists one satellite, OFFLINE.
async fn https_controller() -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = CertificateDer::pem_file_iter(tls_fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server-key.pem")).unwrap();
    let mut clients = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_fixture("client-ca.pem")).unwrap() {
        clients.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(clients),
        std::sync::Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0_u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let body =
                    r#"[{"name": "node-b", "type": "SATELLITE", "connection_status": "OFFLINE"}]"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_https_controller_is_reached_with_its_ca_and_a_client_certificate() {
    let url = https_controller().await;
    let settings = |ca: bool, client: bool| LinstorSettings {
        controllers: url.clone(),
        ca_file: ca.then(|| tls_fixture("ca.pem")),
        client_cert: client.then(|| tls_fixture("client.pem")),
        client_key: client.then(|| tls_fixture("client-key.pem")),
    };
    let nodes = Controllers::new(&settings(true, true))
        .unwrap()
        .nodes(&["node-b"])
        .await
        .unwrap();
    assert_eq!(nodes[0].connection_status, "OFFLINE");
    // Without the CA the server is not trusted; without the client certificate it refuses us.
    for (ca, client) in [(false, true), (true, false)] {
        let err = Controllers::new(&settings(ca, client))
            .unwrap()
            .nodes(&["node-b"])
            .await
            .unwrap_err();
        assert!(err.is_transient(), "ca {ca}, client {client}: {err}");
    }
}
