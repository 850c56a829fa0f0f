//! Scenario files: every file of the catalogue loads, and every broken file gives the documented
//! one-line error naming the file, the line and the key (the `# expect:` comment on its first
//! line).

use std::path::{Path, PathBuf};

use sim::Scenario;

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_catalogue_scenario_loads_with_an_expect_block_and_a_comment() {
    let files = yaml_files(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")));
    assert!(files.len() >= 11, "the catalogue lost scenarios: {files:?}");
    for file in files {
        let scenario = Scenario::load(&file).unwrap_or_else(|err| panic!("{err}"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with('#'),
            "{} must open with a comment saying which real situation it reproduces",
            file.display()
        );
        assert!(
            scenario.expect.is_some(),
            "{} has no expect block",
            file.display()
        );
        let stem = file.file_stem().unwrap().to_string_lossy();
        assert_eq!(scenario.name, stem, "name and file name differ");
    }
}

#[test]
fn the_built_in_seed_is_the_catalogue_file() {
    let seed = Scenario::seed();
    assert_eq!(seed.name, "seed-node-shutdown");
    let server = &seed.openstack.servers[1];
    assert_eq!(server.id, "9454752c-f0e2-4447-9b7f-16434c49f7ac");
    assert_eq!(
        seed.openstack.volumes[0].id,
        "4e41d530-cb5f-49a9-9c6f-a591abdb6f11"
    );
    assert_eq!(
        seed.openstack.volumes[0].attachments[0].server.value,
        server.id
    );
}

#[test]
fn broken_scenarios_give_the_documented_error() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/broken-scenarios"
    ));
    let files = yaml_files(dir);
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let wanted = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks its # expect: line", file.display()));
        let name = file.file_name().unwrap();
        let err = Scenario::parse(&text, Path::new(name)).expect_err(&file.display().to_string());
        let message = err.to_string();
        assert!(
            message.contains(wanted.trim_end()),
            "{}:\n  wanted: {wanted}\n  got:    {message}",
            file.display()
        );
        assert!(!message.contains('\n'), "not one line: {message}");
        assert!(message.starts_with(&format!("scenario {}", name.to_string_lossy())));
    }
}

#[test]
fn ready_accepts_yaml_booleans_and_strings() {
    let text = "name: r\nkubernetes:\n  nodes:\n    - {name: a, ready: true}\n    - {name: b, ready: \"False\"}\n    - {name: c, ready: Unknown}\n    - {name: d, ready: false}\n";
    let scenario = Scenario::parse(text, Path::new("r.yaml")).unwrap();
    let ready: Vec<&str> = scenario
        .kubernetes
        .nodes
        .iter()
        .map(|n| n.ready.as_str())
        .collect();
    assert_eq!(ready, ["True", "False", "Unknown", "False"]);
}

#[test]
fn defaults_are_the_documented_ones() {
    let scenario = Scenario::parse("name: d\n", Path::new("d.yaml")).unwrap();
    assert_eq!(scenario.openstack.region, "RegionOne");
    assert_eq!(scenario.openstack.project, "kube");
    assert!((scenario.openstack.behaviour.detach_seconds - 2.0).abs() < f64::EPSILON);
    assert!(scenario.openstack.behaviour.cinder_attachment_guard);
    assert!((scenario.openstack.behaviour.service_down_time - 60.0).abs() < f64::EPSILON);
    assert_eq!(scenario.openstack.role, sim::scenario::Role::Admin);
    assert!(scenario.timeline.is_empty() && scenario.expect.is_none());
}

#[test]
fn a_cluster_of_thousands_of_nodes_loads() {
    // 1,000 nodes with 32 pods each: about 290,000 YAML nodes (9 a pod), past the YAML reader's
    // default limit of 250,000.
    let mut text = String::from("name: big\nkubernetes:\n  nodes:\n");
    for node in 0..1000 {
        text.push_str(&format!("    - {{name: node-{node}}}\n"));
    }
    text.push_str("  pods:\n");
    for node in 0..1000 {
        for pod in 0..32 {
            text.push_str(&format!(
                "    - {{name: web-{node}-{pod}, node: node-{node}, labels: {{app: web}}}}\n"
            ));
        }
    }
    let scenario = Scenario::parse(&text, Path::new("big.yaml")).unwrap();
    assert_eq!(scenario.kubernetes.pods.len(), 32_000);
}
