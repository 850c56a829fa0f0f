//! The one-shot operator commands: `diagnose` (read only) and `remediate` (plan, confirm,
//! execute with progress, verify, summarise). Both run observe → plan once; the controller runs
//! the same core in a loop.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use jiff::Timestamp;

use crate::backend::Backend;
use crate::cluster::{Breadth, Cluster, Target};
use crate::config::UsageError;
use crate::execute::{self, Executor, Outcome, Progressing};
use crate::observe::{self, Scope};
use crate::report;
use fencing::model::{NodeName, Observation};
use fencing::plan::{self, Action, Plan, Policy, Skip};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// For a person.
    #[default]
    Text,
    /// One JSON document, for tools.
    Json,
}

/// Why a one-shot command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A usage or configuration error (exit code 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The cluster could not be read (exit code 1).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::Error),
}

/// Reads the cluster (as far as `breadth` says) and the backend, and plans, for the nodes in
/// scope.
///
/// # Errors
/// When a node named in `nodes` does not exist (usage), or the cluster cannot be read.
pub async fn observe_and_plan<B: Backend>(
    cluster: &Cluster,
    backend: &B,
    policy: &Policy,
    nodes: &BTreeSet<NodeName>,
    orphans: bool,
    breadth: Breadth,
) -> Result<(Observation, Plan), Error> {
    let scope = Scope {
        nodes: nodes.clone(),
        orphans,
        quiet_in_storm: false,
    };
    let observation =
        observe::observe(cluster, backend, policy, &scope, breadth, Timestamp::now()).await?;
    for name in nodes {
        if !observation.nodes.iter().any(|node| &node.name == name) {
            return Err(UsageError(format!(
                "--node {name}: no such node in the cluster (`kubectl get nodes` lists them)"
            ))
            .into());
        }
    }
    let mut plan = plan::plan(&observation, policy);
    if !nodes.is_empty() {
        plan.steps
            .retain(|step| step.node.as_ref().is_some_and(|node| nodes.contains(node)));
        plan.skipped.retain(|skipped| nodes.contains(&skipped.node));
    }
    Ok((observation, plan))
}

/// `diagnose`: prints what is stuck and why, what `remediate` would do, and what to change
/// before the next failure (it alone reads every pod and the Deployments for that). Makes no
/// mutating call.
///
/// # Errors
/// As [`observe_and_plan`].
pub async fn diagnose<B: Backend>(
    cluster: &Cluster,
    backend: &B,
    policy: &Policy,
    nodes: &BTreeSet<NodeName>,
    output: Output,
) -> Result<(), Error> {
    let (observation, plan) =
        observe_and_plan(cluster, backend, policy, nodes, true, Breadth::Advice).await?;
    let diagnosis = report::diagnose(&observation, &plan, policy);
    match output {
        Output::Text => print!("{diagnosis}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diagnosis).unwrap_or_else(|_| "{}".to_owned())
        ),
    }
    Ok(())
}

/// How `remediate` may act.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Print the plan and stop: no mutating call.
    pub dry_run: bool,
    /// Act without asking.
    pub yes: bool,
    /// Also read every managed PV's volume, to release stale attachments of deleted servers.
    pub orphans: bool,
}

/// A Warning Event on each node whose progress annotation is unreadable: the node is left
/// alone until an operator fixes or removes it.
pub async fn report_unreadable_progress(cluster: &Cluster, plan: &Plan) {
    let skipped = plan.skipped.iter().filter_map(|s| match &s.skip {
        Skip::ProgressUnreadable { detail } => Some((&s.node, detail)),
        _ => None,
    });
    let warned = plan.warnings.iter().filter_map(|w| match w {
        plan::Warning::ProgressUnreadable { node, detail } => Some((node, detail)),
        _ => None,
    });
    for (node, detail) in skipped.chain(warned) {
        let note = format!(
            "The {} annotation is unreadable ({detail}): nothing is done on this node until it is fixed or removed",
            fencing::model::PROGRESS_ANNOTATION
        );
        cluster
            .event(
                &Target::Node(node.clone()),
                true,
                "ProgressUnreadable",
                "Skip",
                note,
            )
            .await;
    }
}

/// Why the nodes asked for by name got neither a step nor a skip: they are Ready (and carry no
/// progress record), which the planner does not list.
fn ready_requested(
    observation: &Observation,
    plan: &Plan,
    nodes: &BTreeSet<NodeName>,
) -> Vec<String> {
    observation
        .nodes
        .iter()
        .filter(|node| nodes.contains(&node.name) && node.ready.is_ready())
        .filter(|node| {
            !plan.skipped.iter().any(|s| s.node == node.name)
                && !plan
                    .steps
                    .iter()
                    .any(|s| s.node.as_ref() == Some(&node.name))
        })
        .map(|node| {
            format!(
                "  {}: Ready since {}: the remediator acts only on nodes not Ready for longer \
                 than the grace period",
                node.name,
                node.ready_since.strftime("%Y-%m-%d %H:%M:%S UTC")
            )
        })
        .collect()
}

/// `remediate`: plans, asks (on a terminal, unless `--yes`), executes with progress, and
/// prints a summary. Returns whether everything planned was done and every node in scope
/// could be read.
///
/// # Errors
/// As [`observe_and_plan`]; also a usage error when confirmation is needed but stdin is no
/// terminal.
pub async fn remediate<B: Backend>(
    cluster: &Cluster,
    backend: &B,
    policy: &Policy,
    nodes: &BTreeSet<NodeName>,
    mode: Mode,
    output: Output,
    options: execute::Options,
) -> Result<bool, Error> {
    let (observation, plan) = observe_and_plan(
        cluster,
        backend,
        policy,
        nodes,
        mode.orphans,
        Breadth::Planning,
    )
    .await?;
    if output == Output::Text {
        print!("{plan}");
    }
    // A node whose storage could not be read, or whose evidence contradicts itself, is left
    // alone (S2); for this run that is a failure to retry or to look at, not "nothing to do".
    let unread = plan
        .skipped
        .iter()
        .filter(|s| {
            matches!(
                s.skip,
                Skip::StorageError { .. }
                    | Skip::VolumeUnread { .. }
                    | Skip::VolumeNotFound { .. }
                    | Skip::Invisible { .. }
                    | Skip::Contradiction { .. }
                    | Skip::ProgressUnreadable { .. }
                    | Skip::HostActionRequested { .. }
            )
        })
        .count();
    if !mode.dry_run {
        report_unreadable_progress(cluster, &plan).await;
    }
    if plan.is_empty() || mode.dry_run {
        if output == Output::Json {
            print_json(&serde_json::json!({ "plan": plan, "dry_run": mode.dry_run }));
        } else if mode.dry_run {
            println!("Dry run: nothing was changed.");
        } else if unread > 0 {
            println!(
                "Nothing was done: {unread} node(s) could not be read or need an operator (see above); retry later."
            );
        } else {
            println!("Nothing to do.");
            for line in ready_requested(&observation, &plan, nodes) {
                println!("{line}");
            }
        }
        return Ok(unread == 0);
    }
    if !mode.yes && !confirm(plan.steps.len())? {
        println!("Cancelled: nothing was changed.");
        return Ok(true);
    }
    let started = Instant::now();
    let show = output == Output::Text;
    let interactive = std::io::stderr().is_terminal();
    let executor = Executor::new(cluster, backend, policy, options);
    let mut report = executor
        .run(&plan, &observation, |event| {
            if show {
                print_progress(&event, started, interactive);
            }
        })
        .await;
    let back = await_evacuated(cluster, &report, policy, show).await;
    let not_back = back.missing;
    if !back.ready.is_empty() {
        // Back: the replacements waiting on the volumes its server kept are kicked, and its
        // record cleared, as `run` does when the Node watch shows it Ready.
        let (observation, plan) = observe_and_plan(
            cluster,
            backend,
            policy,
            &back.ready,
            false,
            Breadth::Planning,
        )
        .await?;
        if show {
            print!("{plan}");
        }
        let recovery = executor
            .run(&plan, &observation, |event| {
                if show {
                    print_progress(&event, started, interactive);
                }
            })
            .await;
        report.steps.extend(recovery.steps);
    }
    match output {
        Output::Text => println!("{}", report::summary(&report)),
        Output::Json => print_json(&serde_json::json!({ "plan": plan, "report": report })),
    }
    if unread > 0 && output == Output::Text {
        println!(
            "{unread} node(s) could not be read or need an operator, and were left alone (see above)."
        );
    }
    Ok(report.succeeded() && unread == 0 && not_back == 0)
}

/// The evacuated nodes of a run, once waited for.
struct Returned {
    /// Back Ready.
    ready: BTreeSet<NodeName>,
    /// Not back within the policy's `evacuate_wait`.
    missing: usize,
}

/// Waits, up to the policy's `evacuate_wait`, for the nodes whose server this run evacuated to
/// come back Ready.
async fn await_evacuated(
    cluster: &Cluster,
    report: &execute::Report,
    policy: &Policy,
    show: bool,
) -> Returned {
    let mut waiting: BTreeSet<NodeName> = report
        .steps
        .iter()
        .filter(|s| matches!(s.outcome, execute::Outcome::Done { .. }))
        .filter_map(|s| match &s.step.action {
            Action::EvacuateServer { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect();
    let mut ready = BTreeSet::new();
    if waiting.is_empty() {
        return Returned { ready, missing: 0 };
    }
    if show {
        println!(
            "Waiting up to {} for the evacuated node(s) to come back Ready: {}",
            humantime::format_duration(policy.evacuate_wait),
            waiting
                .iter()
                .map(NodeName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let deadline = Instant::now() + policy.evacuate_wait;
    while !waiting.is_empty() && Instant::now() < deadline {
        for name in waiting.clone() {
            if let Ok(Some(node)) = cluster.node(name.as_str()).await
                && node.ready.is_ready()
            {
                if show {
                    println!("{name}: Ready again");
                }
                waiting.remove(&name);
                ready.insert(name);
            }
        }
        if !waiting.is_empty() {
            tokio::time::sleep(EVACUATE_POLL).await;
        }
    }
    for name in &waiting {
        println!(
            "{name}: not Ready again within {}: check its server (`openstack server show`, \
             `openstack console log show`); the next run reports it",
            humantime::format_duration(policy.evacuate_wait)
        );
    }
    Returned {
        ready,
        missing: waiting.len(),
    }
}

/// How often an evacuated node is read while `remediate` waits for it.
const EVACUATE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned())
    );
}

fn confirm(steps: usize) -> Result<bool, UsageError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(
            "remediate asks before it acts, and stdin is not a terminal: pass --yes to act, \
             or --dry-run to only look"
                .to_owned(),
        ));
    }
    print!("Carry out these {steps} step(s)? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Prints one progress event: a line per start and end; while waiting, a spinner that
/// rewrites its own line on a terminal.
pub fn print_progress(event: &Progressing<'_>, started: Instant, interactive: bool) {
    const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
    let at = started.elapsed().as_secs_f64();
    match event {
        Progressing::Started(step) => println!("[{at:6.1}s] -> {}", step.action),
        Progressing::Waiting(_, status) => {
            if interactive {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let frame = SPINNER[(at * 4.0) as usize % SPINNER.len()];
                eprint!("\r[{at:6.1}s] {frame} waiting: {status}        ");
                let _ = std::io::stderr().flush();
            }
        }
        Progressing::Ended(entry) => {
            if interactive {
                eprint!("\r{:60}\r", "");
            }
            match &entry.outcome {
                Outcome::Done { millis } => {
                    println!(
                        "[{at:6.1}s]    done ({:.1}s, verified)",
                        *millis as f64 / 1000.0
                    );
                }
                Outcome::Failed {
                    error, next_step, ..
                } => {
                    println!("[{at:6.1}s]    FAILED: {error}\n            next step: {next_step}");
                }
                Outcome::Stale { why, next_step } => {
                    println!("[{at:6.1}s]    STOPPED: {why}\n            next step: {next_step}");
                }
                Outcome::NotAttempted { because } => {
                    println!("[{at:6.1}s]    not attempted: {because}");
                }
            }
        }
    }
}
