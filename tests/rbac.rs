//! RBAC proven by use. The remediator runs as its ServiceAccount under the roles of
//! `manifests/base`, and the emulated API server enforces them as a real one does. Every path
//! that needs a grant runs here (`diagnose`, `remediate` with both strategies and the recovery
//! after, a dead host's server deleted, the controller with its Lease and watches, an attacher
//! that is down, an Event repeated), and the ServiceAccount must have used every (API group,
//! resource, verb) the ClusterRole and the Role grant, with no request refused: the roles grant
//! exactly what the code uses. The observe-only overlay's read-only ClusterRole is enough for
//! `run --dry-run`, and a verb taken from the role fails the step that needs it, with the API
//! server's refusal in the request log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_remediator::backend::openstack::OpenStack;
use cinder_remediator::cluster::{Breadth, Cluster};
use cinder_remediator::controller::{Settings, lease, service::Service};
use cinder_remediator::metrics::Metrics;
use cinder_remediator::oneshot::{self, Mode, Output};
use cinder_remediator::openstack::config::load;
use cinder_remediator::openstack::session::{ConnectOptions, connect_with};
use cinder_remediator::{demo, execute};
use common::{Grant, grants};
use fencing::plan::{Action, DeadHost, Policy, Strategy};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sim::scenario::{Readiness, Service as Emulator};
use sim::{RequestRecord, Running, Scenario};

/// The remediator's user name, as the API server authenticates its ServiceAccount.
const USER: &str = "system:serviceaccount:kube-system:cinder-remediator";
const SEED_NODE: &str = "node-4-nude";
const SEED_VOLUME: &str = "4e41d530-cb5f-49a9-9c6f-a591abdb6f11";

struct Setup {
    running: Running,
    /// The cluster's admin, setting the scene.
    admin: kube::Client,
    /// The remediator's client: its ServiceAccount.
    remediator: kube::Client,
    cluster: Cluster,
    backend: OpenStack,
}

async fn start(scenario: &Scenario) -> Setup {
    let running = sim::serve(scenario).await.unwrap();
    let admin = demo::admin_client(&running).unwrap();
    let remediator = demo::service_account_client(&running).await.unwrap();
    let settings = load(&demo::openstack_source(&running)).unwrap();
    let session = connect_with(&settings, &ConnectOptions::default())
        .await
        .unwrap();
    Setup {
        cluster: Cluster::new(remediator.clone(), "rbac"),
        backend: OpenStack::new(&session, settings.region()),
        admin,
        remediator,
        running,
    }
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name),
    )
    .unwrap()
}

/// The executor's patience, short: an attacher that has not removed its finalizer within
/// 300 ms is taken as down.
fn fast() -> execute::Options {
    execute::Options {
        verify_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(100),
        attacher_grace: Duration::from_millis(300),
    }
}

/// `remediate --all --yes`: whether everything planned was done.
async fn remediate(setup: &Setup, policy: &Policy) -> bool {
    let mode = Mode {
        dry_run: false,
        yes: true,
        orphans: false,
    };
    oneshot::remediate(
        &setup.cluster,
        &setup.backend,
        policy,
        &BTreeSet::new(),
        mode,
        Output::Json,
        fast(),
    )
    .await
    .unwrap()
}

/// The shipped roles of `kind` (as the demo and these tests apply them).
fn shipped(kind: &str) -> Vec<Value> {
    let roles: Vec<Value> = demo::base_rbac()
        .unwrap()
        .into_iter()
        .filter(|object| object["kind"] == kind)
        .collect();
    assert!(!roles.is_empty(), "no {kind} in manifests/base");
    roles
}

/// What the ServiceAccount did, as the request log shows it.
#[derive(Default)]
struct Used {
    /// Requests in a Role's namespace that the Role grants, by Role name.
    namespaced: BTreeMap<String, BTreeSet<Grant>>,
    /// Every other request (the ClusterRole's).
    cluster: BTreeSet<Grant>,
    /// Requests refused (401 or 403), as `METHOD path -> status`.
    refused: Vec<String>,
}

impl Used {
    fn add(&mut self, log: &[RequestRecord]) {
        let roles: Vec<(String, String, BTreeSet<Grant>)> = shipped("Role")
            .iter()
            .map(|role| {
                (
                    role["metadata"]["name"].as_str().unwrap().to_owned(),
                    role["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    grants(&role["rules"]),
                )
            })
            .collect();
        for record in log.iter().filter(|r| r.service == Emulator::Kubernetes) {
            let Some(access) = record.access.as_ref() else {
                // Unauthenticated: no client of these tests sends such a request.
                self.refused.push(format!(
                    "{} {} -> {}",
                    record.method, record.path, record.status
                ));
                continue;
            };
            if access.user.name != USER {
                continue;
            }
            if !access.allowed {
                self.refused.push(format!(
                    "{} {} -> {}",
                    record.method, record.path, record.status
                ));
            }
            let Some(resource) = &access.attributes.resource else {
                continue;
            };
            let grant = (
                resource.group.clone(),
                resource.rule_resource(),
                access.attributes.verb.clone(),
            );
            let role = roles.iter().find(|(_, namespace, granted)| {
                resource.namespace == *namespace && granted.contains(&grant)
            });
            match role {
                Some((name, ..)) => {
                    self.namespaced
                        .entry(name.clone())
                        .or_default()
                        .insert(grant);
                }
                None => {
                    self.cluster.insert(grant);
                }
            }
        }
    }
}

/// Runs the controller as `run` does (the Lease in kube-system, 2 s), until `done` holds
/// (at most 30 s) and then `linger` more, then stops it (SIGTERM).
async fn run_controller(
    setup: &Setup,
    policy: Policy,
    dry_run: bool,
    watch_cloud: Option<Duration>,
    linger: Duration,
    done: impl Fn(&Running) -> bool,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let service = Service {
        cluster: Cluster::new(setup.remediator.clone(), "rbac-1")
            .with_metrics(Arc::clone(&metrics)),
        backend: setup.backend.clone(),
        metrics,
        settings: Settings {
            policy,
            dry_run,
            execute: fast(),
            resync: Duration::from_secs(1),
            watch_cloud,
            observer: None,
        },
        lease: Some(lease::Settings {
            namespace: "kube-system".to_owned(),
            name: "cinder-remediator".to_owned(),
            identity: "rbac-1".to_owned(),
            duration: Duration::from_secs(2),
        }),
        shutdown_timeout: Duration::from_secs(10),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        service
            .run(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let started = Instant::now();
    while !done(&setup.running) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the controller did not get there within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(linger).await;
    let _ = stop.send(());
    task.await.unwrap();
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

/// The seed story's node dies at 1 s while the controller watches.
fn node_dies() -> Scenario {
    scenario("controller-node-dies.yaml")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_roles_grant_exactly_what_the_remediator_uses() {
    let mut used = Used::default();

    // `diagnose` (every pod, the Deployments, Warning Events), then `remediate` and, once the
    // node is Ready again, the recovery (its taint and progress record removed). With `delete`
    // the CSI attacher is down, so the executor removes its finalizer (update).
    for strategy in [Strategy::Delete, Strategy::OutOfServiceTaint] {
        let mut seed = Scenario::seed();
        if strategy == Strategy::Delete {
            seed.kubernetes
                .controllers
                .insert("csi-attacher".to_owned(), false);
        }
        let setup = start(&seed).await;
        let policy = Policy {
            strategy,
            ..Policy::default()
        };
        oneshot::observe_and_plan(
            &setup.cluster,
            &setup.backend,
            &policy,
            &BTreeSet::new(),
            true,
            Breadth::Advice,
        )
        .await
        .unwrap();
        assert!(remediate(&setup, &policy).await, "{strategy:?}");
        setup
            .running
            .world
            .lock()
            .kube
            .set_node_ready(SEED_NODE, Readiness::True);
        assert!(remediate(&setup, &policy).await, "{strategy:?}: recovery");
        used.add(&setup.running.requests());
        setup.running.shutdown().await;
    }

    // A dead hypervisor's server deleted: its Node goes too.
    let setup = start(&scenario("dead-host-delete-server.yaml")).await;
    let now = setup.running.world.now_ms();
    setup
        .running
        .world
        .lock()
        .cloud
        .set_host_state("compute-2", None, Some(true), now);
    let policy = Policy {
        trust_forced_down: true,
        dead_host: DeadHost::DeleteServer,
        ..Policy::default()
    };
    assert!(remediate(&setup, &policy).await);
    used.add(&setup.running.requests());
    setup.running.shutdown().await;

    // An unreadable progress record, reported at each run: the recorder counts the repeat into
    // the same Event (a patch).
    let setup = start(&scenario("evidence-stale-progress-record.yaml")).await;
    for _ in 0..2 {
        remediate(&setup, &Policy::default()).await;
    }
    used.add(&setup.running.requests());
    setup.running.shutdown().await;

    // The controller: its Lease, its Node and VolumeAttachment watches, a dying node read
    // afresh (claims and PVs by name) and remediated; watching the cloud too, it reads the
    // dead server's kubelet Lease.
    let setup = start(&node_dies()).await;
    let policy = Policy {
        grace: Duration::from_secs(2),
        ..Policy::default()
    };
    let watch_cloud = Some(Duration::from_secs(1));
    run_controller(
        &setup,
        policy,
        false,
        watch_cloud,
        Duration::from_secs(2),
        |running| volume_status(running, SEED_VOLUME) == "available",
    )
    .await;
    used.add(&setup.running.requests());
    setup.running.shutdown().await;

    assert_eq!(used.refused, Vec::<String>::new(), "refused requests");
    let nothing = BTreeSet::new();
    let mut checks = vec![(
        "ClusterRole".to_owned(),
        grants(&shipped("ClusterRole")[0]["rules"]),
        &used.cluster,
    )];
    for role in shipped("Role") {
        let name = role["metadata"]["name"].as_str().unwrap().to_owned();
        let got = used.namespaced.get(&name).unwrap_or(&nothing);
        checks.push((format!("Role {name}"), grants(&role["rules"]), got));
    }
    for (kind, granted, got) in checks {
        let unused: Vec<&Grant> = granted.difference(got).collect();
        assert!(
            unused.is_empty(),
            "{kind} grants what no path used: {unused:?}"
        );
        let ungranted: Vec<&Grant> = got.difference(&granted).collect();
        assert!(
            ungranted.is_empty(),
            "{kind}: used without a grant (and not refused?): {ungranted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_observe_only_role_is_enough_for_a_dry_run_controller() {
    let setup = start(&node_dies()).await;
    // manifests/overlays/observe-only: the ClusterRole's rules replaced (its one JSON6902 op).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/overlays/observe-only/read-only-role.yaml");
    let patch: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(patch[0]["op"], "replace");
    assert_eq!(patch[0]["path"], "/rules");
    Api::<ClusterRole>::all(setup.admin.clone())
        .patch(
            "cinder-remediator",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": patch[0]["value"]})),
        )
        .await
        .unwrap();
    let policy = Policy {
        grace: Duration::from_secs(2),
        ..Policy::default()
    };
    // The node dies at 1 s; its grace is over at 3 s: a few looks after that.
    let since = Instant::now();
    run_controller(&setup, policy, true, None, Duration::ZERO, |_| {
        since.elapsed() >= Duration::from_secs(7)
    })
    .await;

    let mut used = Used::default();
    let log = setup.running.requests();
    used.add(&log);
    assert_eq!(used.refused, Vec::<String>::new(), "refused requests");
    let writes: Vec<String> = log
        .iter()
        .filter(|r| r.is_mutating())
        .filter(|r| r.access.as_ref().is_some_and(|a| a.user.name == USER))
        .filter(|r| !r.path.contains("/events") && !r.path.contains("/leases"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "a dry run writes only Events and its Lease"
    );
    assert!(
        used.cluster.contains(&(
            String::new(),
            "persistentvolumes".to_owned(),
            "get".to_owned()
        )),
        "the dead node was never read afresh"
    );
    assert_eq!(volume_status(&setup.running, SEED_VOLUME), "in-use");
    setup.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verb_taken_from_the_role_fails_the_step_that_needs_it() {
    let setup = start(&Scenario::seed()).await;
    // The ClusterRole without `delete` on pods.
    let mut role = shipped("ClusterRole").remove(0);
    for rule in role["rules"].as_array_mut().unwrap() {
        if rule["resources"] == json!(["pods"]) {
            rule["verbs"] = json!(["list"]);
        }
    }
    Api::<ClusterRole>::all(setup.admin.clone())
        .patch(
            "cinder-remediator",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": role["rules"]})),
        )
        .await
        .unwrap();

    let policy = Policy::default();
    let (observation, plan) = oneshot::observe_and_plan(
        &setup.cluster,
        &setup.backend,
        &policy,
        &BTreeSet::new(),
        false,
        Breadth::Planning,
    )
    .await
    .unwrap();
    let report = execute::Executor::new(&setup.cluster, &setup.backend, &policy, fast())
        .run(&plan, &observation, |_| {})
        .await;
    assert!(!report.succeeded(), "{report:?}");
    let failed = report
        .steps
        .iter()
        .find(|s| matches!(s.step.action, Action::ForceDeletePod { .. }))
        .expect("a pod force-delete was planned");
    let execute::Outcome::Failed { error, refused, .. } = &failed.outcome else {
        panic!("the force-delete did not fail: {failed:?}");
    };
    assert!(refused, "a 403 is a refusal: {error}");
    let pod = "test-cinder-56bdb546dd-56mct";
    let message = format!(
        "pods \"{pod}\" is forbidden: User \"{USER}\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert!(error.contains(&message), "{error}");

    let log = setup.running.requests();
    let refusals: Vec<&RequestRecord> = log
        .iter()
        .filter(|r| r.access.as_ref().is_some_and(|a| !a.allowed))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let refusal = refusals[0];
    assert_eq!(
        (refusal.method.as_str(), refusal.status),
        ("DELETE", 403),
        "{refusal:?}"
    );
    assert_eq!(
        refusal.path,
        format!("/api/v1/namespaces/default/pods/{pod}")
    );
    // Nothing of the pod changed: it is still there for an operator to see.
    assert!(
        setup
            .running
            .world
            .lock()
            .kube
            .get("pods", Some("default"), pod)
            .is_some()
    );
    setup.running.shutdown().await;
}
