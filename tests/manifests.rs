//! The shipped manifests (`manifests/`, a kustomize base and its overlays) grant exactly the
//! Kubernetes permissions the code uses: no more (least privilege), no less (a missing verb would
//! fail in production). Their workloads run command lines and environments the binary accepts,
//! hardened as the operator's guide promises.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cinder_remediator::cli::{Cli, Command};
use clap::{CommandFactory, Parser};
use common::{Grant, grants};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The base's objects: every file its kustomization lists (the base has no patches, so this is
/// what `kubectl kustomize manifests/` renders, but for the common labels).
fn base() -> Vec<Value> {
    let dir = root().join("base");
    let kustomization = &documents(&dir.join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|file| documents(&dir.join(file.as_str().unwrap())))
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the base");
    found[0]
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the base"))
}

fn declared(permissions: &[(&str, &str, &[&str])]) -> BTreeSet<Grant> {
    permissions
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(move |verb| {
                (
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn the_roles_grant_exactly_what_the_code_uses_and_no_wildcard() {
    let objects = base();
    let cluster_role = object(&objects, "ClusterRole");
    assert_eq!(
        grants(&cluster_role["rules"]),
        declared(cinder_remediator::cluster::PERMISSIONS)
    );
    let role = named(&objects, "Role", "cinder-remediator-leader-election");
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    assert_eq!(
        grants(&role["rules"]),
        declared(&[cinder_remediator::controller::lease::PERMISSIONS])
    );
    let node_leases = named(&objects, "Role", "cinder-remediator-node-leases");
    assert_eq!(
        node_leases["metadata"]["namespace"],
        cinder_remediator::cluster::NODE_LEASE_NAMESPACE
    );
    assert_eq!(
        grants(&node_leases["rules"]),
        declared(&[cinder_remediator::cluster::NODE_LEASE_PERMISSIONS])
    );
    let roles = [cluster_role, role, node_leases];
    for (group, resource, verb) in roles.iter().flat_map(|role| grants(&role["rules"])) {
        assert!(
            ![&group, &resource, &verb].iter().any(|s| s.contains('*')),
            "a wildcard in {group}/{resource}/{verb}"
        );
    }
    // Each binding gives its role, in the role's namespace, to the controller's ServiceAccount.
    let account = object(&objects, "ServiceAccount");
    let bindings = [
        ("ClusterRoleBinding", "cinder-remediator"),
        ("RoleBinding", "cinder-remediator-leader-election"),
        ("RoleBinding", "cinder-remediator-node-leases"),
    ];
    for ((kind, name), role) in bindings.into_iter().zip(roles) {
        let binding = named(&objects, kind, name);
        assert_eq!(
            binding["metadata"]["namespace"],
            role["metadata"]["namespace"]
        );
        assert_eq!(binding["roleRef"]["kind"], role["kind"]);
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }])
        );
    }
}

#[test]
fn the_demo_and_the_tests_run_under_every_rbac_object_of_the_base() {
    // demo::service_account_client applies these (built in); they must be what the base lists.
    let rbac_kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let listed: Vec<Value> = base()
        .into_iter()
        .filter(|o| rbac_kinds.iter().any(|kind| o["kind"] == *kind))
        .collect();
    assert_eq!(cinder_remediator::demo::base_rbac().unwrap(), listed);
}

#[test]
fn the_observe_only_role_is_the_base_role_read_only_but_for_events() {
    let patch = &documents(&root().join("overlays/observe-only/read-only-role.yaml"))[0];
    let read_only = grants(&patch[0]["value"]);
    let expected: BTreeSet<Grant> = declared(cinder_remediator::cluster::PERMISSIONS)
        .into_iter()
        .filter(|(group, _, verb)| {
            ["get", "list", "watch"].contains(&verb.as_str()) || group == "events.k8s.io"
        })
        .collect();
    assert_eq!(read_only, expected);
    assert!(
        !read_only
            .iter()
            .any(|(_, resource, verb)| resource != "events"
                && !["get", "list", "watch"].contains(&verb.as_str())),
        "observe-only may write nothing but Events"
    );
}

/// The command line a container runs: its args, then each environment variable the CLI reads
/// turned into its flag (so clap checks the value as it would from the environment). A
/// variable the CLI does not know fails the test: a misspelt setting would be ignored.
fn argv(container: &Value, extra_env: &[(String, String)]) -> Vec<String> {
    let mut argv = vec!["cinder-remediator".to_owned()];
    argv.extend(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let mut command = Cli::command();
    command.build();
    let subcommand = command
        .find_subcommand(&argv[1])
        .unwrap_or_else(|| panic!("no subcommand {}", argv[1]));
    let mut env: Vec<(String, String)> = container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_owned(),
                        e["value"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    for (name, value) in env {
        let arg = subcommand
            .get_arguments()
            .chain(command.get_arguments())
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("`{name}` is no setting of `{}`", argv[1]));
        let flag = format!("--{}", arg.get_long().unwrap());
        if arg.get_action().takes_values() {
            argv.extend([flag, value]);
        } else {
            assert_eq!(value, "true", "{name} is a switch: \"true\" or absent");
            argv.push(flag);
        }
    }
    argv
}

fn patch_env(path: &str) -> Vec<(String, String)> {
    let patch = &documents(&root().join(path))[0];
    patch["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_deployment_runs_the_controller_hardened_with_its_identity_probes_and_cloud_conf() {
    let objects = base();
    let deployment = object(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas, one Lease");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cinder-remediator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        assert!(
            container["resources"][kind]["memory"].is_string(),
            "no memory {kind}"
        );
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The Lease identity and namespace come from the downward API.
    for name in ["POD_NAME", "POD_NAMESPACE"] {
        assert!(
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"].is_object()),
            "{name} is not set from the downward API"
        );
    }
    let variables: Vec<(String, String)> = Vec::new();
    let cli = Cli::try_parse_from(argv(container, &variables)).unwrap();
    let Command::Run(args) = cli.command else {
        panic!("the Deployment does not run `run`");
    };
    assert!(!args.dry_run && !args.no_leader_election);
    let cloud_conf = args.openstack.cloud_config.expect("--cloud-config");
    let mount = &container["volumeMounts"][0];
    assert!(cloud_conf.starts_with(mount["mountPath"].as_str().unwrap()));
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], "cloud-config");
    // The overlays' settings are settings the controller has.
    let dry_run = Cli::try_parse_from(argv(
        container,
        &patch_env("overlays/observe-only/dry-run.yaml"),
    ))
    .unwrap();
    assert!(matches!(dry_run.command, Command::Run(args) if args.dry_run));
    let linstor = Cli::try_parse_from(argv(
        container,
        &patch_env("overlays/linstor/linstor-controllers.yaml"),
    ))
    .unwrap();
    assert!(
        matches!(linstor.command, Command::Run(args) if args.linstor.linstor_controllers.is_some())
    );
}

#[test]
fn the_job_runs_a_command_line_the_binary_accepts_with_the_mounted_cloud_conf() {
    let job = &documents(&root().join("jobs/remediate.yaml"))[0];
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cinder-remediator");
    let container = &pod["containers"][0];
    let cli = Cli::try_parse_from(argv(container, &[])).unwrap();
    let Command::Remediate(args) = cli.command else {
        panic!("the Job does not run remediate");
    };
    assert!(args.all && args.yes && !args.dry_run);
    let cloud_conf = args.openstack.cloud_config.unwrap();
    let mount = &container["volumeMounts"][0];
    assert!(cloud_conf.starts_with(mount["mountPath"].as_str().unwrap()));
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == mount["name"])
    );
}
