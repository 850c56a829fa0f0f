//! `cinder-remediator sim` as an operator runs it: it writes its state directory, serves the
//! request log, stops cleanly on SIGTERM, and refuses bad input with a one-line error and exit 2.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cinder-remediator"))
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sim_writes_its_state_dir_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary()
        .args(["sim", "--state-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = wait_for(&dir.path().join("ready"), Duration::from_secs(20));
    if !ready {
        child.kill().unwrap();
    }
    assert!(ready, "sim never wrote its ready file");

    let endpoints: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("endpoints.json")).unwrap())
            .unwrap();
    for key in ["kubernetes", "keystone", "nova", "cinder", "requests"] {
        let url = endpoints[key].as_str().unwrap();
        // The Kubernetes API server speaks HTTPS only, as a real one does.
        let scheme = if key == "kubernetes" { "https" } else { "http" };
        assert!(
            url.starts_with(&format!("{scheme}://127.0.0.1:")),
            "{key} is not on loopback: {url}"
        );
    }
    assert!(
        endpoints["linstor"].is_null(),
        "the seed scenario has no LINSTOR"
    );

    let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
    assert!(kubeconfig.contains(endpoints["kubernetes"].as_str().unwrap()));
    let clouds = std::fs::read_to_string(dir.path().join("clouds.yaml")).unwrap();
    assert!(clouds.contains("  sim:"));
    assert!(clouds.contains(&format!("{}/v3", endpoints["keystone"].as_str().unwrap())));
    let cloud_conf = std::fs::read_to_string(dir.path().join("cloud.conf")).unwrap();
    assert!(cloud_conf.contains(&format!(
        "auth-url = {}/v3",
        endpoints["keystone"].as_str().unwrap()
    )));

    let log = get_json(endpoints["requests"].as_str().unwrap());
    assert!(log.is_array(), "request log is not a list: {log}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sim ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "sim exited with {exit:?} on SIGTERM");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("Serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log: {log:?}"
    );
    for name in [
        "ready",
        "endpoints.json",
        "kubeconfig",
        "clouds.yaml",
        "cloud.conf",
    ] {
        assert!(
            !dir.path().join(name).exists(),
            "{name} left behind by a stopped sim"
        );
    }
}

fn get_json(url: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

#[test]
fn sim_reports_a_busy_port_with_exit_2() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["sim", "--port-base", &port.to_string(), "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the emulated keystone"
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("ready").exists());
}

#[test]
fn sim_refuses_a_missing_state_dir_with_exit_2() {
    let output = binary()
        .args(["sim", "--state-dir", "/nonexistent/cinder-remediator-state"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--state-dir /nonexistent/cinder-remediator-state"));
}

#[test]
fn sim_refuses_a_broken_scenario_with_exit_2_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "name: b\nkubernetes:\n  nodes:\n    - {name: n, colour: blue}\n",
    )
    .unwrap();
    let output = binary()
        .args(["sim", "--scenario"])
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("broken.yaml:4:17: unknown field `colour`"),
        "{stderr}"
    );
    assert!(!dir.path().join("ready").exists());
}

#[test]
fn sim_refuses_a_missing_scenario_file_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["sim", "--scenario", "no-such-scenario.yaml", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: cannot read scenario no-such-scenario.yaml: No such file or directory (os error 2)"
    );
}

/// A `sim` serving `scenario` in its own state directory, killed when dropped.
struct Served {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(scenario: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = binary()
            .arg("sim")
            .arg("--scenario")
            .arg(scenario)
            .arg("--state-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let served = Self { child, dir };
        assert!(
            wait_for(&served.dir.path().join("ready"), Duration::from_secs(20)),
            "sim never wrote its ready file"
        );
        served
    }

    /// Runs `diagnose` with `args` against this sim; its exit code and stdout.
    fn diagnose(&self, args: &[&str]) -> (Option<i32>, String) {
        self.run(&[&["diagnose"], args].concat())
    }

    /// Runs the binary with `args` against this sim; its exit code and stdout.
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let output = binary()
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("OS_CLIENT_CONFIG_FILE", self.dir.path().join("clouds.yaml"))
            .env("OS_CLOUD", "sim")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    }

    /// How many lists of Deployments the sim served.
    fn deployment_lists(&self) -> usize {
        let endpoints: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("endpoints.json")).unwrap(),
        )
        .unwrap();
        let log = get_json(endpoints["requests"].as_str().unwrap());
        log.as_array()
            .unwrap()
            .iter()
            .filter(|request| request["path"] == "/apis/apps/v1/deployments")
            .count()
    }
}

fn catalogue(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// The advice lines of `diagnose`'s text: those under its `before the next failure:` heading.
fn advice_lines(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|line| *line != "before the next failure:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(str::trim)
        .collect()
}

#[test]
fn diagnose_warns_of_a_rolling_update_on_rwo_and_of_a_bare_pod_before_any_failure() {
    let sim = Served::start(&catalogue("deployment-rolling-update.yaml"));
    let (code, text) = sim.diagnose(&[]);
    assert_eq!(code, Some(0), "{text}");
    let advice = advice_lines(&text);
    assert_eq!(advice.len(), 2, "{text}");
    assert!(
        advice[0].starts_with("Deployment default/web (1 replica(s)) updates by RollingUpdate")
            && advice[0].ends_with(
                "kubectl patch deployment -n default web -p \
                 '{\"spec\":{\"strategy\":{\"type\":\"Recreate\",\"rollingUpdate\":null}}}'"
            ),
        "{text}"
    );
    assert!(
        advice[1].starts_with("pod default/backup uses managed volume(s) through claim(s) backup-data and no controller owns it"),
        "{text}"
    );
    // Neither the Recreate Deployment nor the pods a ReplicaSet owns.
    for quiet in ["default/db", "web-6d4cf56db6", "db-7b9f8c6d5"] {
        assert!(!advice.iter().any(|line| line.contains(quiet)), "{text}");
    }

    let (code, json) = sim.diagnose(&["--output", "json"]);
    assert_eq!(code, Some(0), "{json}");
    let diagnosis: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kinds: Vec<(&str, &str)> = diagnosis["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|advice| {
            let name = advice["deployment"]
                .as_str()
                .or(advice["pod"].as_str())
                .unwrap_or_default();
            (advice["kind"].as_str().unwrap_or_default(), name)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("rolling_update_on_exclusive_volume", "web"),
            ("uncontrolled_pod", "backup")
        ]
    );

    // Only `diagnose` pays for the Deployments: `remediate` never lists them.
    let listed = sim.deployment_lists();
    assert_eq!(listed, 2, "one list per diagnose");
    let (code, plan) = sim.run(&["remediate", "--all", "--dry-run"]);
    assert_eq!(code, Some(0), "{plan}");
    assert_eq!(
        sim.deployment_lists(),
        listed,
        "remediate listed Deployments"
    );
}

#[test]
fn diagnose_says_it_could_not_check_deployments_it_may_not_list() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(catalogue("deployment-rolling-update.yaml")).unwrap();
    let forbidden = text.replacen(
        "\n    detach_seconds: 1\n",
        "\n    detach_seconds: 1\n    faults: [{service: kubernetes, path: /apis/apps/v1/deployments, status: 403}]\n",
        1,
    );
    assert_ne!(forbidden, text, "the scenario has no detach_seconds: 1");
    let scenario = dir.path().join("forbidden.yaml");
    std::fs::write(&scenario, forbidden).unwrap();
    let sim = Served::start(&scenario);
    let (code, text) = sim.diagnose(&[]);
    assert_eq!(code, Some(0), "{text}");
    let advice = advice_lines(&text);
    assert_eq!(advice.len(), 2, "{text}");
    assert!(advice[0].starts_with("pod default/backup "), "{text}");
    assert!(
        advice[1].starts_with("Deployments not checked")
            && advice[1].contains("403 Forbidden")
            && advice[1].contains("grant `list` on `deployments` in API group `apps`"),
        "{text}"
    );
}
