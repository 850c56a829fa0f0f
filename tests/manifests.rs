//! The manifests grant exactly the Kubernetes permissions the code uses: no more (least
//! privilege), no less (a missing verb would fail in production, not in the emulator).

use std::collections::BTreeSet;
use std::path::Path;

use cinder_remediator::cluster::PERMISSIONS;
use serde::Deserialize;

#[derive(Deserialize)]
struct Document {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

#[test]
fn the_cluster_role_grants_exactly_what_the_code_uses() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rbac.yaml"))
            .unwrap();
    let documents: Vec<Document> = serde_saphyr::from_multiple(&text).unwrap();
    let kinds: Vec<&str> = documents.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    );
    let granted: BTreeSet<(String, String, String)> = documents
        .iter()
        .flat_map(|d| &d.rules)
        .flat_map(|rule| {
            rule.api_groups.iter().flat_map(move |group| {
                rule.resources.iter().flat_map(move |resource| {
                    rule.verbs
                        .iter()
                        .map(move |verb| (group.clone(), resource.clone(), verb.clone()))
                })
            })
        })
        .collect();
    let used: BTreeSet<(String, String, String)> = PERMISSIONS
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
        .collect();
    assert_eq!(granted, used);
}

#[derive(Deserialize)]
struct Workload {
    spec: WorkloadSpec,
}

#[derive(Deserialize)]
struct WorkloadSpec {
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    service_account_name: String,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    args: Vec<String>,
    volume_mounts: Vec<Mount>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    liveness_probe: Option<Probe>,
    #[serde(default)]
    readiness_probe: Option<Probe>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value_from: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
}

#[derive(Deserialize)]
struct HttpGet {
    path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    name: String,
    mount_path: String,
}

#[derive(Deserialize)]
struct Volume {
    name: String,
}

#[test]
fn the_job_runs_a_command_line_the_binary_accepts_with_the_mounted_cloud_conf() {
    use clap::Parser;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/remediate-job.yaml"),
    )
    .unwrap();
    let job: Workload = serde_saphyr::from_str(&text).unwrap();
    let pod = job.spec.template.spec;
    assert_eq!(pod.service_account_name, "cinder-remediator");
    let container = &pod.containers[0];
    let argv =
        std::iter::once("cinder-remediator".to_owned()).chain(container.args.iter().cloned());
    let cli = cinder_remediator::cli::Cli::try_parse_from(argv).unwrap();
    let cinder_remediator::cli::Command::Remediate(args) = cli.command else {
        panic!("the Job does not run remediate");
    };
    assert!(args.all && args.yes && !args.dry_run);
    let cloud_conf = args.openstack.cloud_config.unwrap();
    let mount = &container.volume_mounts[0];
    assert!(
        cloud_conf.starts_with(&mount.mount_path),
        "{cloud_conf:?} is not under {}",
        mount.mount_path
    );
    assert!(pod.volumes.iter().any(|v| v.name == mount.name));
}

#[test]
fn the_controller_deployment_runs_run_with_its_identity_probes_and_cloud_conf() {
    use clap::Parser;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/controller.yaml"),
    )
    .unwrap();
    let deployment: Workload = serde_saphyr::from_str(&text).unwrap();
    let pod = deployment.spec.template.spec;
    assert_eq!(pod.service_account_name, "cinder-remediator");
    let container = &pod.containers[0];
    let argv =
        std::iter::once("cinder-remediator".to_owned()).chain(container.args.iter().cloned());
    let cli = cinder_remediator::cli::Cli::try_parse_from(argv).unwrap();
    let cinder_remediator::cli::Command::Run(args) = cli.command else {
        panic!("the Deployment does not run `run`");
    };
    assert!(!args.dry_run && !args.no_leader_election);
    // The Lease identity and namespace come from the downward API.
    for name in ["POD_NAME", "POD_NAMESPACE"] {
        assert!(
            container
                .env
                .iter()
                .any(|e| e.name == name && e.value_from.is_some()),
            "{name} is not set from the downward API"
        );
    }
    assert_eq!(
        container.liveness_probe.as_ref().unwrap().http_get.path,
        "/livez"
    );
    assert_eq!(
        container.readiness_probe.as_ref().unwrap().http_get.path,
        "/readyz"
    );
    let cloud_conf = args.openstack.cloud_config.unwrap();
    let mount = &container.volume_mounts[0];
    assert!(cloud_conf.starts_with(&mount.mount_path));
    assert!(pod.volumes.iter().any(|v| v.name == mount.name));
}
