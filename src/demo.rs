//! `demo`: serves a scenario (the seed story by default) on loopback and runs the remediation
//! against it in one process, printing a timeline a person can follow (what was seen, decided,
//! done, and how long it took) and the state before and after. With `--check`, the scenario's
//! `expect` block decides the exit code.
//!
//! The remediator talks to the emulators through the same clients and code paths as against a
//! real cloud: `kube` over HTTP, and Keystone, Nova and Cinder through the `osauth` session.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::backend::openstack::OpenStack;
use crate::cluster::Cluster;
use crate::config::PolicyFlags;
use crate::execute::{self, Executor, Report};
use crate::oneshot::{self, Output};
use fencing::plan::{FenceMode, Plan, Policy, Skip, Strategy};
use sim::expect::{self, Check};
use sim::scenario::{FenceName, Remediator, StrategyName};
use sim::{self, Running, Scenario};

/// How long `demo` waits without an `expect` block.
const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
/// Pause between two rounds of observe → plan → execute.
const ROUND_PAUSE: Duration = Duration::from_millis(500);

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The emulators did not start.
    #[error(transparent)]
    Sim(#[from] sim::Error),
    /// A client could not be built or the emulated cluster could not be read.
    #[error("{0}")]
    Client(String),
}

/// One round that did something.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Milliseconds since the start.
    pub at_ms: u64,
    /// The plan.
    pub plan: Plan,
    /// What happened.
    pub report: Report,
}

/// What the demo did, for `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Rounds that had steps.
    pub rounds: Vec<Round>,
    /// The expectations, when the scenario has them.
    pub checks: Vec<Check>,
    /// Requests the emulators served, by service.
    pub requests: BTreeMap<String, usize>,
    /// Whether every step was done and every expectation holds.
    pub passed: bool,
}

/// Runs the demo; returns whether every step succeeded and (with `check`) every expectation
/// holds.
///
/// # Errors
/// When the emulators or the clients cannot start.
pub async fn run(
    scenario: &Scenario,
    policy: &Policy,
    check: bool,
    output: Output,
) -> Result<bool, Error> {
    let running = sim::serve(scenario).await?;
    let result = run_against(&running, scenario, policy, check, output).await;
    running.shutdown().await;
    result
}

async fn run_against(
    running: &Running,
    scenario: &Scenario,
    policy: &Policy,
    check: bool,
    output: Output,
) -> Result<bool, Error> {
    let text = output == Output::Text;
    let started = Instant::now();
    let client = kube_client(running)?;
    let backend = openstack_backend(running).await?;
    let cluster = Cluster::new(client.clone(), "demo");
    let within = scenario
        .expect
        .as_ref()
        .map_or(DEFAULT_WITHIN, |expect| expect.within);

    if text {
        println!("Scenario {}: {}", scenario.name, scenario.description);
        println!(
            "Policy: grace {}, strategy {:?}, storm guard {}%{}, kick {}, fence {:?}\n",
            humantime::format_duration(policy.grace),
            policy.strategy,
            policy.max_unhealthy.percent,
            policy
                .max_unhealthy
                .count
                .map_or_else(String::new, |count| format!(" / {count} nodes")),
            policy.kick,
            policy.fence
        );
        println!("Before:");
        print_state(running, &client).await?;
    }

    let mut rounds = Vec::new();
    let mut said: BTreeMap<String, String> = BTreeMap::new();
    let mut all_done = true;
    loop {
        let (observation, plan) =
            oneshot::observe_and_plan(&cluster, &backend, policy, &Default::default(), false)
                .await
                .map_err(|err| Error::Client(crate::config::one_line(&err)))?;
        if text {
            narrate(&plan, started, &mut said);
        }
        let waiting = plan
            .skipped
            .iter()
            .any(|s| matches!(s.skip, Skip::WithinGrace { .. }))
            || running.world.lock().pending_timeline() > 0;
        if plan.is_empty() && !waiting {
            break;
        }
        if !plan.is_empty() {
            let at_ms = elapsed_ms(started);
            if text {
                println!(
                    "[{:6.1}s] plan: {} step(s)",
                    started.elapsed().as_secs_f64(),
                    plan.steps.len()
                );
            }
            let executor = Executor::new(&cluster, &backend, policy, demo_options());
            let report = executor
                .run(&plan, &observation, |event| {
                    if text {
                        oneshot::print_progress(&event, started, false);
                    }
                })
                .await;
            // A step stopped because the world changed since planning is the remediator doing
            // its job (the next round plans afresh); only a failed step fails the demo.
            all_done &= !report
                .steps
                .iter()
                .any(|s| matches!(s.outcome, execute::Outcome::Failed { .. }));
            if text && !report.succeeded() {
                println!("{}", crate::report::summary(&report));
            }
            rounds.push(Round {
                at_ms,
                plan,
                report,
            });
        }
        if started.elapsed() >= within {
            if text {
                println!(
                    "[{:6.1}s] still not converged after {}: stopping",
                    started.elapsed().as_secs_f64(),
                    humantime::format_duration(within)
                );
            }
            break;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    if text {
        println!(
            "[{:6.1}s] converged: nothing more to do\n",
            started.elapsed().as_secs_f64()
        );
        println!("After:");
        print_state(running, &client).await?;
    }

    let mut checks = Vec::new();
    if let (true, Some(expect)) = (check, scenario.expect.as_ref()) {
        loop {
            checks = expect::evaluate(expect, &running.world);
            if checks.iter().all(|c| c.holds) || started.elapsed() >= within {
                break;
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        if text {
            println!("\nExpectations:");
            for c in &checks {
                let mark = if c.holds { "ok  " } else { "MISS" };
                println!("  {mark} {} ({})", c.expectation, c.found);
            }
        }
    }
    let passed = all_done && checks.iter().all(|c| c.holds);
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for record in running.requests() {
        *requests
            .entry(record.service.as_str().to_owned())
            .or_default() += 1;
    }
    if text {
        let counts: Vec<String> = requests.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "\nRequests served: {} ({})",
            requests.values().sum::<usize>(),
            counts.join(", ")
        );
        println!("Result: {}", if passed { "PASS" } else { "FAIL" });
    } else {
        let outcome = Outcome {
            scenario: scenario.name.clone(),
            rounds,
            checks,
            requests,
            passed,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_else(|_| "{}".to_owned())
        );
    }
    Ok(passed)
}

fn demo_options() -> execute::Options {
    execute::Options {
        verify_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        attacher_grace: Duration::from_secs(5),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Says what changed in the verdicts since the last round.
fn narrate(plan: &Plan, started: Instant, said: &mut BTreeMap<String, String>) {
    let at = started.elapsed().as_secs_f64();
    if let Some(storm) = &plan.storm {
        let line = format!(
            "STORM GUARD: {} of {} nodes not Ready (limit {}): no action on any node",
            storm.unhealthy, storm.total, storm.limit
        );
        if said.insert("(storm)".to_owned(), line.clone()).as_ref() != Some(&line) {
            println!("[{at:6.1}s] {line}");
        }
    }
    for skipped in &plan.skipped {
        let line = match &skipped.skip {
            Skip::WithinGrace { .. } => "not Ready, within the grace period: waiting".to_owned(),
            other => format!("no action: {other}"),
        };
        let key = skipped.node.to_string();
        if said.insert(key, line.clone()).as_ref() != Some(&line) {
            println!("[{at:6.1}s] {}: {line}", skipped.node);
        }
    }
    for step in &plan.steps {
        let verdict = matches!(
            step.action,
            fencing::plan::Action::ReleaseVolume { .. } | fencing::plan::Action::StopServer { .. }
        );
        if let (true, Some(node)) = (verdict, &step.node) {
            let line = format!("fenced: {}", step.detail);
            if said.insert(node.to_string(), line.clone()).as_ref() != Some(&line) {
                println!("[{at:6.1}s] {node}: {line}");
            }
        }
    }
}

fn kube_client(running: &Running) -> Result<kube::Client, Error> {
    let url = running
        .endpoints
        .kubernetes
        .parse()
        .map_err(|err| Error::Client(format!("emulated Kubernetes URL: {err}")))?;
    kube::Client::try_from(kube::Config::new(url))
        .map_err(|err| Error::Client(crate::config::one_line(&err)))
}

/// The OpenStack backend through the production path: settings from `OS_*` variables (a map,
/// never the process environment), then the Keystone login of [`crate::openstack::session`].
async fn openstack_backend(running: &Running) -> Result<OpenStack, Error> {
    let source = openstack_source(running);
    let settings = crate::openstack::config::load(&source)
        .map_err(|err| Error::Client(crate::config::one_line(&err)))?;
    let session = crate::openstack::session::connect(&settings)
        .await
        .map_err(|err| Error::Client(crate::config::one_line(&err)))?;
    Ok(OpenStack::new(&session, settings.region()))
}

/// The emulated cloud's credentials as the `OS_*` variables of the `openstack` CLI (a map,
/// never the process environment), for the production settings loader.
#[must_use]
pub fn openstack_source(running: &Running) -> crate::openstack::config::Source {
    let state = running.world.lock();
    let credentials = &state.credentials;
    crate::openstack::config::Source::from_env([
        ("OS_AUTH_URL", format!("{}/v3", running.endpoints.keystone)),
        ("OS_USERNAME", credentials.username.clone()),
        ("OS_PASSWORD", credentials.password.clone()),
        ("OS_USER_DOMAIN_NAME", credentials.domain.clone()),
        ("OS_PROJECT_NAME", credentials.project.clone()),
        ("OS_PROJECT_DOMAIN_NAME", credentials.domain.clone()),
        ("OS_REGION_NAME", state.cloud.region().to_owned()),
    ])
}

/// The policy settings of a scenario's `remediator:` block, beneath the command's flags.
#[must_use]
pub fn scenario_policy(remediator: &Remediator) -> PolicyFlags {
    PolicyFlags {
        grace: remediator.grace,
        strategy: remediator.strategy.map(|name| match name {
            StrategyName::Delete => Strategy::Delete,
            StrategyName::OutOfServiceTaint => Strategy::OutOfServiceTaint,
        }),
        max_unhealthy: remediator.max_unhealthy.clone(),
        kick: remediator.kick,
        fence: remediator.fence.map(|name| match name {
            FenceName::Observe => FenceMode::Observe,
            FenceName::Stop => FenceMode::Stop,
        }),
        trust_forced_down: remediator.trust_forced_down,
    }
}

async fn print_state(running: &Running, client: &kube::Client) -> Result<(), Error> {
    {
        let state = running.world.lock();
        let names: BTreeMap<String, String> = state
            .cloud
            .servers()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        for volume in state.cloud.volumes() {
            let holders: Vec<String> = volume
                .attachments
                .iter()
                .map(|a| {
                    let name = names
                        .get(&a.server_id)
                        .map_or("deleted server", String::as_str);
                    format!("{name} ({})", short(&a.server_id))
                })
                .collect();
            let attached = if holders.is_empty() {
                String::new()
            } else {
                format!(", attached to {}", holders.join(" and "))
            };
            println!("  volume {} {}{attached}", short(&volume.id), volume.status);
        }
    }
    let failed = |err: kube::Error| Error::Client(crate::config::one_line(&err));
    let all = ListParams::default();
    for node in Api::<Node>::all(client.clone())
        .list(&all)
        .await
        .map_err(failed)?
    {
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
            .map_or_else(|| "Unknown".to_owned(), |c| c.status);
        let taints = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .filter(|t| t.key == "node.kubernetes.io/out-of-service")
            .count();
        let tainted = if taints > 0 { ", out-of-service" } else { "" };
        println!(
            "  node {} Ready={ready}{tainted}",
            node.metadata.name.unwrap_or_default()
        );
    }
    for pod in Api::<Pod>::all(client.clone())
        .list(&all)
        .await
        .map_err(failed)?
    {
        let status = if pod.metadata.deletion_timestamp.is_some() {
            "Terminating".to_owned()
        } else {
            let status = pod.status.unwrap_or_default();
            status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .or(status.phase)
                .unwrap_or_default()
        };
        println!(
            "  pod {}/{} on {} {status}",
            pod.metadata.namespace.unwrap_or_default(),
            pod.metadata.name.unwrap_or_default(),
            pod.spec.and_then(|s| s.node_name).unwrap_or_default()
        );
    }
    let attachments = Api::<VolumeAttachment>::all(client.clone())
        .list(&all)
        .await
        .map_err(failed)?;
    for va in attachments {
        println!(
            "  volumeattachment {} on {}",
            va.spec.source.persistent_volume_name.unwrap_or_default(),
            va.spec.node_name
        );
    }
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
