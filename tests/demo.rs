//! `demo --check` passes for every scenario of the catalogue, and the default `demo` shows the
//! controller remediating a node that dies, with its timeline: the binary as a person runs it.

use std::path::PathBuf;
use std::process::Command;
use std::thread;

fn demo(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cinder-remediator"))
        .arg("demo")
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("OS_CLOUD")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The scenario files of the catalogue, sorted.
fn catalogue() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_catalogue_scenario_passes_its_expectations() {
    every_scenario_passes(&[]);
}

/// Both strategies reach the same end state: every scenario's expectations (replacements
/// Running elsewhere included) hold with the out-of-service taint too, not only with the
/// strategy the scenario chose (`delete` but for the demo's own story).
#[test]
fn every_catalogue_scenario_passes_with_the_out_of_service_taint() {
    every_scenario_passes(&["--strategy", "out-of-service-taint"]);
}

fn every_scenario_passes(extra: &'static [&'static str]) {
    let files = catalogue();
    assert!(files.len() >= 16);
    let runs: Vec<_> = files
        .into_iter()
        .map(|file| {
            thread::spawn(move || {
                let path = file.to_string_lossy().into_owned();
                let mut args = vec!["--check", "--output", "json", "--scenario", &path];
                args.extend_from_slice(extra);
                let (code, stdout, stderr) = demo(&args);
                (path, code, stdout, stderr)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (path, code, stdout, stderr) = run.join().unwrap();
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("{path}: not JSON ({err}): {stdout}\n{stderr}"));
        let checks = report["checks"].as_array().cloned().unwrap_or_default();
        if code != Some(0) || report["passed"] != true || checks.is_empty() {
            failures.push(format!("{path}: exit {code:?}, {report:#}\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The time in seconds of the first timeline line containing `text`, and its line index.
fn at(stdout: &str, text: &str) -> (usize, f64) {
    let (index, line) = stdout
        .lines()
        .enumerate()
        .find(|(_, line)| line.starts_with('[') && line.contains(text))
        .unwrap_or_else(|| panic!("no timeline line with {text:?} in:\n{stdout}"));
    let seconds = line[1..line.find("s]").unwrap()].trim().parse().unwrap();
    (index, seconds)
}

#[test]
fn the_default_demo_shows_the_controller_remediating_a_node_that_dies() {
    let (code, stdout, stderr) = demo(&["--check"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for line in [
        "Scenario controller-node-dies",
        "node node-4-nude Ready=True",
        "pod default/test-cinder-56bdb546dd-56mct on node-4-nude Running",
        "volume 4e41d530 in-use, attached to node-3-nude (3901d974)",
        "node node-4-nude Ready=Unknown, out-of-service",
        "node-4-nude: NotReady -> volume 4e41d530 released in ",
        "(ReplicaSet/test-cinder-56bdb546dd): Running on node-3-nude with its volumes attached there, ",
        "mutating OpenStack requests: 1 (nova DELETE /v2.1/servers/9454752c-f0e2-4447-9b7f-16434c49f7ac/os-volume_attachments/4e41d530-cb5f-49a9-9c6f-a591abdb6f11 at ",
        "Result: PASS",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The timeline, in order: the scenario powers the server off and the node turns NotReady;
    // the controller waits out the grace (5 s, counted from the Ready condition's
    // lastTransitionTime, which Kubernetes keeps to the second), gives its verdict, releases and
    // verifies, then cleans up the Kubernetes side; Kubernetes then recreates the pod, attaches
    // the volume on node-3-nude and starts it.
    let timeline = [
        "scenario: server 9454752c SHUTOFF",
        "node-4-nude: NotReady (Ready=Unknown), as the controller's Node watch shows it",
        "node-4-nude: grace 5s over",
        "node-4-nude: fenced: server 9454752c-f0e2-4447-9b7f-16434c49f7ac is SHUTOFF",
        "-> release volume 4e41d530-cb5f-49a9-9c6f-a591abdb6f11",
        "-> taint node node-4-nude node.kubernetes.io/out-of-service",
        "-> force-delete pod default/test-cinder-56bdb546dd-56mct on node-4-nude",
        "created by ReplicaSet/test-cinder-56bdb546dd (Kubernetes)",
        "converged: nothing more to do",
        "its volumes attached on node-3-nude (Kubernetes)",
        ": Running on node-3-nude",
    ];
    let found: Vec<(usize, f64)> = timeline.iter().map(|text| at(&stdout, text)).collect();
    assert!(
        found.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "out of order:\n{stdout}"
    );
    let (not_ready, grace_over) = (found[1].1, found[2].1);
    assert!(
        grace_over - not_ready >= 4.0,
        "acted before the grace ran out:\n{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let release = found[4].0;
    assert!(
        lines[release + 1].contains("done (") && lines[release + 1].ends_with("s, verified)"),
        "the release is not verified:\n{stdout}"
    );
}

#[test]
fn the_seed_story_under_the_controller() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-node-shutdown.yaml");
    let (code, stdout, stderr) = demo(&["--check", "--scenario", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for line in [
        "Scenario seed-node-shutdown",
        "volume 4e41d530 in-use, attached to node-4-nude (9454752c)",
        "node-4-nude: not Ready (Ready=Unknown) since 10m before the start",
        "fenced: server 9454752c-f0e2-4447-9b7f-16434c49f7ac is SHUTOFF",
        "-> release volume 4e41d530-cb5f-49a9-9c6f-a591abdb6f11",
        "-> force-delete pod default/test-cinder-56bdb546dd-56mct on node-4-nude",
        "-> delete waiting pod default/test-cinder-56bdb546dd-9vdsj on node-3-nude",
        "volume 4e41d530 in-use, attached to node-3-nude (3901d974)",
        "node-4-nude: NotReady before the start -> volume 4e41d530 released at ",
        "(ReplicaSet/test-cinder-56bdb546dd): Running on node-3-nude with its volumes attached there, ",
        "Result: PASS",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn a_missed_expectation_fails_the_check() {
    // The network-partition scenario, with an expectation no correct remediator meets.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/network-partition.yaml"),
    )
    .unwrap()
    .replace(
        "within: 10s",
        "volumes_available: [91d2e3f4-5a6b-4c7d-8e9f-0a1b2c3d0001]\n  within: 2s",
    );
    let file = dir.path().join("impossible.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, stdout, _) = demo(&["--check", "--scenario", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("MISS volume 91d2e3f4-5a6b-4c7d-8e9f-0a1b2c3d0001 available (in-use)"),
        "{stdout}"
    );
    assert!(stdout.contains("Result: FAIL"));
}

/// The Cinder path on unpatched clouds too (issue 7): against a Cinder without the
/// OSSA-2023-003 guard, which would let a user remove a live server's attachment, every scenario
/// still passes: the remediator's own rules are the only safety net there.
#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_passes_against_a_cinder_without_the_attachment_guard() {
    use cinder_remediator::config::{PolicyFlags, policy};
    use cinder_remediator::demo;
    use cinder_remediator::oneshot::Output;
    let runs = catalogue().into_iter().map(|file| async move {
        let mut scenario = sim::Scenario::load(&file).unwrap();
        scenario.openstack.behaviour.cinder_attachment_guard = false;
        let flags = demo::scenario_policy(&scenario.remediator);
        let policy = policy(&PolicyFlags::default(), Some(&flags)).unwrap();
        let passed = demo::run(&scenario, &policy, true, Output::Json)
            .await
            .unwrap();
        (file, passed)
    });
    let failed: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .filter(|(_, passed)| !passed)
        .map(|(file, _)| file.display().to_string())
        .collect();
    assert!(failed.is_empty(), "failed without the guard: {failed:?}");
}
