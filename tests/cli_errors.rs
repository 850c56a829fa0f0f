//! The binary against bad input, end to end: every malformed or missing setting, wrong
//! credential, unknown node and bad flag ends with exit code 2 and ONE line on stderr that names
//! the file, key, flag or variable and says what to do; never a panic, never a mutating request
//! (S8), and never a password, application-credential secret or token in stdout, stderr or a
//! Kubernetes Event (S9). A Keystone that answers 503 is a transient failure (exit 1), not a
//! usage error, and nothing is changed.
//!
//! Each test starts `cinder-remediator sim` as a child process (killed on drop), waits for its
//! `ready` file, and runs the binary with `KUBECONFIG`, `OS_CLIENT_CONFIG_FILE` and `OS_CLOUD`
//! pointing at it, set on the child only. Every wait is bounded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the sim may take to write its `ready` file.
const SIM_START: Duration = Duration::from_secs(20);
/// How long one command of the binary may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cinder-remediator"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad-config")
        .join(name)
}

/// Removes every inherited variable that could point the binary at another cluster or cloud.
fn isolate(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("OS_") || key == "KUBECONFIG" || key.starts_with("CINDER_REMEDIATOR_") {
            command.env_remove(key);
        }
    }
}

/// A running `cinder-remediator sim`, killed when dropped.
struct Sim {
    child: Child,
    dir: tempfile::TempDir,
    endpoints: Value,
    /// The password, the application-credential secret and the Kubernetes token it serves.
    secrets: Vec<String>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    /// The built-in seed scenario.
    fn start() -> Self {
        Self::start_scenario(None)
    }

    fn start_scenario(scenario: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = binary();
        isolate(&mut command);
        command.arg("sim").arg("--state-dir").arg(dir.path());
        if let Some(scenario) = scenario {
            command.arg("--scenario").arg(scenario);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut sim = Self {
            child,
            dir,
            endpoints: Value::Null,
            secrets: Vec::new(),
        };
        let start = Instant::now();
        while !sim.dir.path().join("ready").exists() {
            if let Some(exit) = sim.child.try_wait().unwrap() {
                panic!("sim exited before it was ready: {exit:?}");
            }
            assert!(
                start.elapsed() < SIM_START,
                "sim never wrote its ready file"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sim.endpoints = serde_json::from_str(&sim.read("endpoints.json")).unwrap();
        let clouds = sim.read("clouds.yaml");
        let kubeconfig = sim.read("kubeconfig");
        for (text, key) in [
            (&clouds, "password:"),
            (&clouds, "application_credential_secret:"),
            (&kubeconfig, "token:"),
        ] {
            let value = yaml_value(text, key).unwrap_or_else(|| panic!("no {key} in {text}"));
            assert!(
                value.len() >= 8,
                "{key} {value:?} is too short to search for"
            );
            sim.secrets.push(value);
        }
        sim
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    fn endpoint(&self, service: &str) -> &str {
        self.endpoints[service].as_str().unwrap()
    }

    /// The binary with this sim's kubeconfig and clouds.yaml (cloud `sim`) on the child only.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = binary();
        isolate(&mut command);
        command
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("OS_CLIENT_CONFIG_FILE", self.path("clouds.yaml"))
            .env("OS_CLOUD", "sim")
            .args(args);
        command
    }

    /// Runs `command` and checks that neither this sim's secrets nor `extra_secrets` show.
    fn run(&self, command: Command, extra_secrets: &[&str]) -> Run {
        let mut secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        secrets.extend_from_slice(extra_secrets);
        run(command, &secrets)
    }

    /// [`Sim::run`] without extra secrets, for a prepared command.
    fn run_prepared(&self, command: Command) -> Run {
        self.run(command, &[])
    }

    /// `self.run(self.command(args), &[])`.
    fn run_args(&self, args: &[&str]) -> Run {
        self.run(self.command(args), &[])
    }

    /// Every request the sim served, oldest first.
    fn requests(&self) -> Vec<Value> {
        let log = get_json(self.endpoint("requests"), None);
        log.as_array()
            .unwrap_or_else(|| panic!("request log is not a list: {log}"))
            .clone()
    }

    /// The requests that change something (a Keystone token request changes nothing).
    fn mutating_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|request| {
                let method = request["method"].as_str().unwrap_or_default();
                let path = request["path"].as_str().unwrap_or_default();
                let token = request["service"] == "keystone" && path.ends_with("/auth/tokens");
                !matches!(method, "GET" | "HEAD" | "OPTIONS") && !token
            })
            .collect()
    }

    fn assert_nothing_mutated(&self, when: &str) {
        let mutating = self.mutating_requests();
        assert!(
            mutating.is_empty(),
            "{when}: mutating requests were made: {mutating:?}"
        );
    }

    /// Every Event the emulated Kubernetes API holds, in both Event APIs.
    fn events(&self) -> Vec<Value> {
        let token = yaml_value(&self.read("kubeconfig"), "token:").expect("a token");
        let ca = self.endpoint("kubernetes_ca");
        let base = self.endpoint("kubernetes");
        let mut events = Vec::new();
        for path in ["/api/v1/events", "/apis/events.k8s.io/v1/events"] {
            let list = get_json(&format!("{base}{path}"), Some((&token, ca)));
            let items = list["items"].as_array().expect("a list of Events");
            events.extend(items.iter().cloned());
        }
        events
    }
}

/// The value of the first `key: value` line (quotes removed), for the sim's own simple files.
fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(key)?.trim();
        Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
    })
}

/// GETs `url`; with `kubernetes` (a bearer token and the CA, PEM), as a client of the emulated
/// API server.
fn get_json(url: &str, kubernetes: Option<(&str, &str)>) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some((_, ca)) = kubernetes {
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        let client = builder.build().unwrap();
        let mut request = client.get(url);
        if let Some((token, _)) = kubernetes {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        if !response.status().is_success() {
            return Value::Null;
        }
        response.json().await.unwrap()
    })
}

/// What a finished command left.
#[derive(Debug)]
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exit 2 and exactly one line on stderr, `error: ...`, containing every one of `needles`.
    fn assert_usage(&self, needles: &[&str]) -> &Self {
        self.assert_one_line_error(2, needles)
    }

    fn assert_one_line_error(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "stderr lacks {needle:?}: {}",
                lines[0]
            );
        }
        self
    }
}

/// Runs a command with stdin closed, bounded by [`COMMAND_LIMIT`]; checks that it did not
/// panic and that no secret shows in its output.
fn run(mut command: Command, secrets: &[&str]) -> Run {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran longer than {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        what,
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
        "{run:#?}"
    );
    for secret in secrets {
        assert!(!secret.is_empty());
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(
                !text.contains(secret),
                "a secret ({} chars) shows on {stream} of {}",
                secret.len(),
                run.what
            );
        }
    }
    run
}

/// The secret a broken fixture holds (its `password` value), to check it never shows.
fn fixture_secret(name: &str) -> String {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let secret = text
        .lines()
        .find_map(|line| line.split_once("BadConfig-").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("{name} has no BadConfig- secret"));
    let secret: String = secret
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("BadConfig-{secret}")
}

#[test]
fn broken_openstack_settings_are_refused_with_exit_2_and_one_line() {
    let sim = Sim::start();
    let missing = sim.path("no-such-cloud.conf");
    let missing_text = missing.to_str().unwrap();

    let mut command = sim.command(&["diagnose", "--cloud-config", missing_text]);
    command.env_remove("OS_CLOUD");
    sim.run(command, &[]).assert_usage(&[
        missing_text,
        "No such file or directory",
        "check the path given to --cloud-config",
    ]);

    // (fixture, what the line must name and say)
    let cases: [(&str, &[&str]); 4] = [
        (
            "unknown-key.conf",
            &[
                "unknown-key.conf:6",
                "`regoin`",
                "[Global]",
                "did you mean `region`",
            ],
        ),
        (
            "missing-password.conf",
            &[
                "missing-password.conf:2",
                "no password",
                "set the user's password",
            ],
        ),
        (
            "unterminated-quote.conf",
            &[
                "unterminated-quote.conf:5",
                "unterminated",
                "add the closing",
            ],
        ),
        (
            "bad-auth-url.conf",
            &[
                "bad-auth-url.conf:3",
                "auth-url",
                "must start with https://",
            ],
        ),
    ];
    for (name, needles) in cases {
        let path = fixture(name);
        let secret = if name == "missing-password.conf" {
            None
        } else {
            Some(fixture_secret(name))
        };
        for subcommand in [&["diagnose"][..], &["remediate", "--all", "--yes"]] {
            let mut command = sim.command(subcommand);
            command.arg("--cloud-config").arg(&path);
            let extra: Vec<&str> = secret.iter().map(String::as_str).collect();
            sim.run(command, &extra).assert_usage(needles);
        }
    }

    // clouds.yaml with a YAML syntax error: file and line, and the password never echoed.
    let broken = fixture("syntax-error.clouds.yaml");
    let mut command = sim.command(&["diagnose"]);
    command.env("OS_CLIENT_CONFIG_FILE", &broken);
    sim.run(command, &[&fixture_secret("syntax-error.clouds.yaml")])
        .assert_usage(&["syntax-error.clouds.yaml:8", "fix the YAML"]);

    // OS_CLOUD naming a cloud the file lacks: the known ones are listed.
    let mut command = sim.command(&["remediate", "--all", "--yes"]);
    command.env("OS_CLOUD", "prod");
    sim.run(command, &[]).assert_usage(&[
        "clouds.yaml",
        "no cloud named `prod`",
        "sim, sim-appcred",
        "--os-cloud or OS_CLOUD",
    ]);

    sim.assert_nothing_mutated("broken OpenStack settings");
}

#[test]
fn broken_kubeconfig_is_refused_with_exit_2_and_one_line() {
    let sim = Sim::start();
    let missing = sim.path("no-such-kubeconfig");
    let missing_text = missing.to_str().unwrap();
    sim.run_args(&["diagnose", "--kubeconfig", missing_text])
        .assert_usage(&[missing_text, "No such file or directory", "--kubeconfig"]);

    // Not YAML, with the error on a line that holds a token: the line is named, the token is
    // not echoed (a YAML parser's source snippet would show it).
    let broken = fixture("not-yaml.kubeconfig");
    let token = fixture_secret("not-yaml.kubeconfig");
    let mut command = sim.command(&["remediate", "--all", "--yes", "--kubeconfig"]);
    command.arg(&broken);
    sim.run(command, &[&token]).assert_usage(&[
        "not-yaml.kubeconfig",
        "line 6",
        "check the file or pass another with --kubeconfig",
    ]);

    sim.run_args(&["diagnose", "--context", "no-such-context"])
        .assert_usage(&["kubeconfig", "no-such-context", "check --context"]);

    sim.assert_nothing_mutated("broken kubeconfig");
}

#[test]
fn wrong_credentials_are_refused_with_exit_2_and_never_shown() {
    let sim = Sim::start();
    let clouds = sim.read("clouds.yaml");
    let password = yaml_value(&clouds, "password:").unwrap();
    let secret = yaml_value(&clouds, "application_credential_secret:").unwrap();
    let wrong_password = "Wrong-Password-7f3a9c";
    let wrong_secret = "Wrong-AppCred-Secret-41bd0e";
    let wrong = sim.path("wrong-clouds.yaml");
    std::fs::write(
        &wrong,
        clouds
            .replace(&password, wrong_password)
            .replace(&secret, wrong_secret),
    )
    .unwrap();

    let keystone = sim.endpoint("keystone").to_owned();
    for cloud in ["sim", "sim-appcred"] {
        for args in [
            &["diagnose"][..],
            &["--log-level", "trace", "diagnose"],
            &["remediate", "--all", "--yes"],
        ] {
            let mut command = sim.command(args);
            command
                .env("OS_CLIENT_CONFIG_FILE", &wrong)
                .env("OS_CLOUD", cloud);
            let run = sim.run(command, &[wrong_password, wrong_secret]);
            if args[0] == "--log-level" {
                // Every log line goes to stderr too; the last one is the error.
                assert_eq!(run.code, Some(2), "{run:#?}");
                assert!(run.stderr.contains("TRACE"), "nothing at trace: {run:#?}");
                continue;
            }
            run.assert_usage(&[&keystone, "refused the credentials (401)", "check the"]);
        }
    }
    let refused = sim
        .requests()
        .iter()
        .filter(|request| request["service"] == "keystone" && request["status"] == 401)
        .count();
    assert!(refused >= 6, "Keystone never refused: {:?}", sim.requests());
    sim.assert_nothing_mutated("wrong credentials");
}

#[test]
fn unknown_nodes_and_bad_flags_are_refused_with_exit_2_and_one_line() {
    let sim = Sim::start();
    sim.run_args(&["remediate", "--node", "no-such-node", "--yes"])
        .assert_usage(&["--node no-such-node", "no such node", "kubectl get nodes"]);
    sim.run_args(&["diagnose", "--node", "no-such-node"])
        .assert_usage(&["--node no-such-node", "no such node"]);

    sim.run_args(&["remediate"])
        .assert_usage(&["--node", "--all", "--help"]);
    sim.run_args(&["remediate", "--all", "--yes", "--strategy", "bogus"])
        .assert_usage(&["--strategy", "bogus", "`delete` or `out-of-service-taint`"]);
    sim.run_args(&["remediate", "--all", "--yes", "--max-unhealthy", "lots"])
        .assert_usage(&["--max-unhealthy", "lots", "40%"]);
    sim.run_args(&["remediate", "--all", "--yes", "--grace", "forever"])
        .assert_usage(&["--grace", "forever", "30s"]);
    sim.run_args(&["remediate", "--all", "--yes", "--grace", "-5s"])
        .assert_usage(&["'-5s'", "--grace", "cannot be negative"]);
    let missing = sim.run_args(&["diagnose", "--kubeconfig", "/nonexistent/kubeconfig"]);
    missing.assert_usage(&["kubeconfig /nonexistent/kubeconfig: No such file"]);
    assert_eq!(
        missing.stderr.matches("/nonexistent/kubeconfig").count(),
        1,
        "the path is said once: {missing:#?}"
    );

    // `run`: a bad flag, and an admin address already taken.
    sim.run_args(&["run", "--resync", "often"])
        .assert_usage(&["--resync", "often", "30s"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    sim.run_args(&["run", "--admin-addr", &address])
        .assert_usage(&["--admin-addr", &address, "pick a free address"]);

    // Asking on a pipe cannot work: refuse, and say how to go on.
    let refused = sim.run_args(&["remediate", "--all"]);
    refused.assert_usage(&["stdin is not a terminal", "--yes", "--dry-run"]);
    assert!(!refused.stdout.contains("done"), "{refused:#?}");

    sim.assert_nothing_mutated("unknown nodes and bad flags");
}

/// A Ready node asked for by name gets no step and no skip from the planner: the command says
/// why instead of a bare "Nothing to do.".
#[test]
fn a_ready_node_asked_for_by_name_is_said_ready() {
    let sim = Sim::start();
    let run = sim.run_args(&["remediate", "--node", "node-3-nude", "--yes"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.contains("node-3-nude: Ready since")
            && run
                .stdout
                .contains("not Ready for longer than the grace period"),
        "{run:#?}"
    );
    sim.assert_nothing_mutated("a Ready node");
}

#[test]
fn no_secret_shows_in_output_logs_or_events() {
    let sim = Sim::start();
    for args in [
        &["diagnose"][..],
        &["diagnose", "--output", "json"],
        &["remediate", "--all", "--dry-run"],
        &["remediate", "--all", "--dry-run", "--output", "json"],
    ] {
        let run = sim.run_args(args);
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(!run.stdout.is_empty(), "{run:#?}");
    }
    sim.assert_nothing_mutated("diagnose and dry runs");

    let appcred = sim.run_prepared({
        let mut command = sim.command(&["diagnose", "--output", "json"]);
        command.env("OS_CLOUD", "sim-appcred");
        command
    });
    assert_eq!(appcred.code, Some(0), "{appcred:#?}");

    let acted = sim.run_args(&["--log-level", "debug", "remediate", "--all", "--yes"]);
    assert_eq!(acted.code, Some(0), "{acted:#?}");
    assert!(acted.stdout.contains("4 of 4 step(s) done"), "{acted:#?}");
    assert!(
        acted.stderr.contains("DEBUG"),
        "--log-level debug logged nothing at debug: {acted:#?}"
    );
    assert!(
        !sim.mutating_requests().is_empty(),
        "remediate --yes changed nothing"
    );

    let events = sim.events();
    assert!(
        events
            .iter()
            .any(|event| event["reportingComponent"] == "cinder-remediator"),
        "the remediator wrote no Event: {events:?}"
    );
    for event in &events {
        let text = event.to_string();
        for secret in &sim.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret shows in Event {}",
                event["metadata"]["name"]
            );
        }
    }
}

/// The seed scenario with every request to `service` answered 503, written into `dir`.
fn seed_with_service_down(dir: &Path, service: &str) -> PathBuf {
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-node-shutdown.yaml"),
    )
    .unwrap();
    let faulty = seed.replacen(
        "\n  behaviour:\n",
        &format!(
            "\n  behaviour:\n    faults: [{{service: {service}, path: \"**\", status: 503}}]\n"
        ),
        1,
    );
    assert_ne!(faulty, seed, "the seed scenario has no openstack.behaviour");
    let scenario = dir.join(format!("{service}-down.yaml"));
    std::fs::write(&scenario, faulty).unwrap();
    scenario
}

#[test]
fn keystone_down_is_a_transient_failure_that_changes_nothing() {
    let scenario_dir = tempfile::tempdir().unwrap();
    let scenario = seed_with_service_down(scenario_dir.path(), "keystone");
    let sim = Sim::start_scenario(Some(&scenario));
    let keystone = sim.endpoint("keystone").to_owned();
    for args in [&["diagnose"][..], &["remediate", "--all", "--yes"]] {
        sim.run_prepared(sim.command(args))
            .assert_one_line_error(1, &[&keystone, "503", "nothing was changed", "retry"]);
    }
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .any(|request| request["service"] == "keystone" && request["status"] == 503),
        "the fault never applied: {requests:?}"
    );
    let touched: Vec<&Value> = requests
        .iter()
        .filter(|request| request["service"] != "keystone")
        .filter(|request| !matches!(request["method"].as_str(), Some("GET" | "HEAD")))
        .collect();
    assert!(
        touched.is_empty(),
        "mutating requests with Keystone down: {touched:?}"
    );
}

/// A cloud.conf value that wrapped onto a line of its own is reported as an unknown key,
/// quoting the line: the password. The parser is `src/openstack/config/cloud_conf.rs`.
#[test]
fn wrapped_password_is_not_echoed() {
    let sim = Sim::start();
    let mut command = sim.command(&["diagnose", "--cloud-config"]);
    command.arg(fixture("wrapped-password.conf"));
    sim.run(command, &[&fixture_secret("wrapped-password.conf")])
        .assert_usage(&["wrapped-password.conf:7"]);
}

/// The Kubernetes API answering 503: a transient failure (exit 1) at once, not minutes of
/// retries, and nothing changed.
#[test]
fn kubernetes_down_fails_fast_with_exit_1() {
    let scenario_dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_scenario(Some(&seed_with_service_down(
        scenario_dir.path(),
        "kubernetes",
    )));
    for args in [&["diagnose"][..], &["remediate", "--all", "--yes"]] {
        let start = Instant::now();
        let run = sim.run_args(args);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{args:?} took {:?}",
            start.elapsed()
        );
        run.assert_one_line_error(
            1,
            &[
                "error: kubernetes: failed to list nodes: 503 ",
                "nothing was changed",
            ],
        );
        assert!(
            !run.stderr.contains("Status {"),
            "a raw client error: {run:#?}"
        );
    }
    sim.assert_nothing_mutated("Kubernetes down");
}

/// Nova answering 503: no action on the node (S2), and `remediate` does not claim success.
#[test]
fn nova_down_is_no_success() {
    let scenario_dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_scenario(Some(&seed_with_service_down(scenario_dir.path(), "nova")));
    for args in [
        &["remediate", "--all", "--yes"][..],
        &["remediate", "--all", "--dry-run"],
    ] {
        let run = sim.run_args(args);
        assert_eq!(run.code, Some(1), "{run:#?}");
        assert!(
            run.stdout.contains("could not be read") || args.contains(&"--dry-run"),
            "{run:#?}"
        );
    }
    sim.assert_nothing_mutated("Nova down");
}

/// Keystone down for one request: the first run fails (exit 1) and changes nothing; once
/// Keystone answers again, the next run converges.
#[test]
fn after_keystone_comes_back_the_next_run_converges() {
    let scenario_dir = tempfile::tempdir().unwrap();
    let once = seed_with_service_down(scenario_dir.path(), "keystone");
    let text = std::fs::read_to_string(&once)
        .unwrap()
        .replace("status: 503}", "status: 503, times: 1}");
    std::fs::write(&once, text).unwrap();
    let sim = Sim::start_scenario(Some(&once));
    let first = sim.run_args(&["remediate", "--all", "--yes"]);
    first.assert_one_line_error(1, &["Keystone", "503", "nothing was changed"]);
    sim.assert_nothing_mutated("Keystone down");

    let second = sim.run_args(&["remediate", "--all", "--yes"]);
    assert_eq!(second.code, Some(0), "{second:#?}");
    assert!(second.stdout.contains("4 of 4 step(s) done"), "{second:#?}");
    let released = sim.requests().iter().any(|r| {
        r["service"] == "nova"
            && r["method"] == "DELETE"
            && r["path"].as_str().unwrap_or_default().ends_with(
                "/servers/9454752c-f0e2-4447-9b7f-16434c49f7ac/os-volume_attachments/4e41d530-cb5f-49a9-9c6f-a591abdb6f11",
            )
            && r["status"] == 202
    });
    assert!(
        released,
        "the volume was not released once Keystone answered"
    );
    let third = sim.run_args(&["remediate", "--all", "--yes"]);
    assert_eq!(third.code, Some(0), "{third:#?}");
    assert!(third.stdout.contains("Nothing to do."), "{third:#?}");
}
