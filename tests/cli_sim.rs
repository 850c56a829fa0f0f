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
        assert!(
            url.starts_with("http://127.0.0.1:"),
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
    for name in ["ready", "endpoints.json", "kubeconfig", "clouds.yaml"] {
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
