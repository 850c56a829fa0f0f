//! `demo`: serves a scenario on loopback (by default a node that dies while the demo watches)
//! and runs the controller of `cinder-remediator run` against it in one process, as operators
//! deploy it, minus the admin server and the Lease (the demo's controller leads from the start).
//! It prints a timeline a person can follow, in seconds since the start: the scenario's own
//! changes, each node turning NotReady as the controller's Node watch saw it, its grace running
//! out, the fence verdict and why, each step and its verification, then the state after and the
//! figures. With `--check`, the scenario's `expect` block decides the exit code.
//!
//! The remediator talks to the emulators through the same clients and code paths as against a
//! real cloud: `kube` over HTTPS as the ServiceAccount of `manifests/base`, under its roles (the
//! emulated API server enforces them), and Keystone, Nova and Cinder through the `osauth`
//! session.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::admin::Health;
use crate::backend::Backend;
use crate::backend::linstor::Linstor;
use crate::backend::openstack::OpenStack;
use crate::backend::storage::Storage;
use crate::cluster::Cluster;
use crate::config::PolicyFlags;
use crate::controller::{self, Moment};
use crate::execute::{self, Progressing, Report, StepReport};
use crate::linstor::{Controllers, LinstorSettings};
use crate::metrics::Metrics;
use crate::oneshot::{self, Output};
use fencing::model::{CloudDeath, NodeName, NodeView, Readiness};
use fencing::plan::{Action, DeadHost, FenceMode, Plan, Policy, Skip, StormGuard, Strategy};
use sim::expect::{self, Check};
use sim::scenario::{DeadHostName, FenceName, Remediator, Service, StrategyName};
use sim::{self, Running, Scenario};

/// The field manager the demo applies the shipped manifests with.
const FIELD_MANAGER: &str = "cinder-remediator-demo";
/// The default scenario: a node dies while the controller watches.
const DEFAULT_SCENARIO: &str = include_str!("../scenarios/controller-node-dies.yaml");
/// How long `demo` waits without an `expect` block.
const DEFAULT_WITHIN: Duration = Duration::from_secs(60);
/// How often the demo looks whether the controller has converged.
const TICK: Duration = Duration::from_millis(100);
/// How long after the scenario's last change the demo waits before calling the controller
/// converged: the time for the Node watch to show that change.
const QUIET: Duration = Duration::from_secs(1);
/// How often the demo's controller looks again at a node not Ready when nothing changed.
const RESYNC: Duration = Duration::from_secs(5);

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The emulators did not start.
    #[error(transparent)]
    Sim(#[from] sim::Error),
    /// A client could not be built or the emulated cluster could not be read.
    #[error("{0}")]
    Client(String),
    /// The controller stopped by itself.
    #[error(transparent)]
    Controller(#[from] controller::Error),
}

/// One look of the controller that had steps.
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
    /// The controller's looks that had steps.
    pub rounds: Vec<Round>,
    /// The expectations, when the scenario has them.
    pub checks: Vec<Check>,
    /// Requests the emulators served, by service.
    pub requests: BTreeMap<String, usize>,
    /// Whether no step failed and every expectation holds.
    pub passed: bool,
}

/// The scenario `demo` runs without `--scenario`: `scenarios/controller-node-dies.yaml`, built
/// in.
///
/// # Errors
/// Never in a tested build (the embedded file is a catalogue scenario); as
/// [`Scenario::parse`].
pub fn default_scenario() -> Result<Scenario, sim::scenario::Error> {
    Scenario::parse(
        DEFAULT_SCENARIO,
        Path::new("<built-in controller-node-dies.yaml>"),
    )
}

/// Runs the demo; returns whether no step failed and (with `check`) every expectation holds.
///
/// # Errors
/// When the emulators or the clients cannot start, or the controller's Node watch ends.
pub async fn run(
    scenario: &Scenario,
    policy: &Policy,
    check: bool,
    output: Output,
) -> Result<bool, Error> {
    let clock = Clock {
        started: Instant::now(),
        started_at: Timestamp::now(),
        text: output == Output::Text,
    };
    let running = sim::serve(scenario).await?;
    let result = run_against(&running, scenario, policy, check, clock).await;
    running.shutdown().await;
    result
}

async fn run_against(
    running: &Running,
    scenario: &Scenario,
    policy: &Policy,
    check: bool,
    clock: Clock,
) -> Result<bool, Error> {
    let client = admin_client(running)?;
    let metrics = Arc::new(Metrics::new());
    let remediator = service_account_client(running).await?;
    let cluster = Cluster::new(remediator, "demo").with_metrics(Arc::clone(&metrics));
    let backend = storage_backend(running).await?.with_metrics(&metrics);
    let within = scenario
        .expect
        .as_ref()
        .map_or(DEFAULT_WITHIN, |expect| expect.within);

    let ids = ShortIds::new(scenario);
    if clock.text {
        println!("Scenario {}: {}", scenario.name, scenario.description);
        println!(
            "Policy: grace {}, strategy {:?}, storm guard {}%{}, kick {}, fence {:?}",
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
        println!(
            "Remediator: the controller (`run`), in this process, leading from the start (no Lease), as the ServiceAccount {}/{} under the roles of manifests/base\n",
            SERVICE_ACCOUNT.0, SERVICE_ACCOUNT.1
        );
        println!("Before:");
        print_state(running, &client, &ids).await?;
        println!();
    }

    let (observer, moments) = mpsc::unbounded_channel();
    let settings = controller::Settings {
        policy: policy.clone(),
        dry_run: false,
        execute: demo_options(),
        resync: RESYNC,
        watch_cloud: scenario.remediator.watch_cloud,
        observer: Some(observer),
    };
    let mut story = Story::new(scenario, running.world.clone(), policy.grace, within, clock);
    let watched = Watched {
        cluster: &cluster,
        backend: &backend,
        settings: &settings,
        metrics: &metrics,
    };
    watched.follow(moments, &mut story).await?;
    // Kubernetes' own controllers carry on: wait, within the scenario's time, for every
    // replacement pod to run (one its controller creates right after the last step too).
    let stopped = Instant::now();
    loop {
        story.poll_replacements();
        let all_running = story.replacements.all_running() && stopped.elapsed() >= QUIET;
        if all_running || clock.started.elapsed() >= within {
            break;
        }
        tokio::time::sleep(TICK).await;
    }

    if clock.text {
        println!("\nAfter:");
        print_state(running, &client, &ids).await?;
    }
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for record in running.requests().iter().filter(|r| r.by.is_none()) {
        *requests
            .entry(record.service.as_str().to_owned())
            .or_default() += 1;
    }
    if clock.text {
        story.print_figures(&requests);
    }

    let mut checks = Vec::new();
    if let (true, Some(expect)) = (check, scenario.expect.as_ref()) {
        loop {
            checks = expect::evaluate(expect, &running.world);
            if checks.iter().all(|c| c.holds) || clock.started.elapsed() >= within {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        if clock.text {
            println!("\nExpectations:");
            for c in &checks {
                let mark = if c.holds { "ok  " } else { "MISS" };
                println!("  {mark} {} ({})", c.expectation, c.found);
            }
        }
    }
    // A step stopped because the world changed since planning is the remediator doing its job
    // (the controller looks again); only a failed step fails the demo, unless the scenario
    // expects that many.
    let failed_allowed = scenario.expect.as_ref().map_or(0, |e| e.failed_steps);
    let passed = story.failed == failed_allowed && checks.iter().all(|c| c.holds);
    if clock.text {
        println!("\nResult: {}", if passed { "PASS" } else { "FAIL" });
    } else {
        let outcome = Outcome {
            scenario: scenario.name.clone(),
            rounds: story.rounds,
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

/// The controller under watch, and what it runs against.
struct Watched<'a, B> {
    cluster: &'a Cluster,
    backend: &'a B,
    settings: &'a controller::Settings,
    metrics: &'a Metrics,
}

impl<B: Backend> Watched<'_, B> {
    /// Runs the controller, as `run` does but leading from the start, until it has converged or
    /// the scenario's time is up; `story` hears every moment.
    async fn follow(
        &self,
        mut moments: mpsc::UnboundedReceiver<Moment>,
        story: &mut Story,
    ) -> Result<(), Error> {
        let health = Health::default();
        let (_leading, leader) = watch::channel(true);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stop = Some(stop);
        let control = controller::run(
            self.cluster,
            self.backend,
            self.settings,
            leader,
            self.metrics,
            &health,
            async {
                let _ = stopped.await;
            },
        );
        tokio::pin!(control);
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                biased;
                Some(moment) = moments.recv() => story.take(moment),
                result = &mut control => {
                    while let Ok(moment) = moments.try_recv() {
                        story.take(moment);
                    }
                    return Ok(result?);
                }
                _ = tick.tick() => {
                    // Moments told while the controller ran in this same poll come first.
                    while let Ok(moment) = moments.try_recv() {
                        story.take(moment);
                    }
                    story.scenario_changed();
                    story.poll_replacements();
                    if stop.is_some() && let Some(why) = story.converged(health.is_ready()) {
                        story.clock.say(&why);
                        if let Some(stop) = stop.take() {
                            let _ = stop.send(());
                        }
                    }
                }
            }
        }
    }
}

/// When the demo started, and whether it prints for a person.
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    started_at: Timestamp,
    text: bool,
}

impl Clock {
    fn now(self) -> Duration {
        self.started.elapsed()
    }

    /// Prints one line of the timeline, at the time it is printed.
    fn say(self, line: &str) {
        if self.text {
            println!("[{:6.1}s] {line}", self.now().as_secs_f64());
        }
    }

    /// A wall-clock time, said relative to the start.
    fn relative(self, at: Timestamp) -> String {
        let offset = Duration::try_from(at.duration_since(self.started_at));
        match offset {
            Ok(after) => format!("{:.1}s", after.as_secs_f64()),
            Err(_) => {
                let before =
                    Duration::try_from(self.started_at.duration_since(at)).unwrap_or_default();
                format!(
                    "{} before the start",
                    humantime::format_duration(Duration::from_secs(before.as_secs()))
                )
            }
        }
    }
}

/// What the demo knows of one node, from the controller's moments.
#[derive(Debug, Clone)]
struct NodeStory {
    /// The Ready condition, as the controller's Node watch last showed it.
    ready: Readiness,
    /// Its `lastTransitionTime`.
    since: Timestamp,
    /// Whether the controller has work with it: not Ready, or Ready with a progress record.
    open: bool,
    /// When the Node watch showed it turn not Ready (`None`: not Ready from the start).
    turned: Option<Duration>,
    /// When the cloud-side watch reported its server dead (`--watch-cloud`).
    reported: Option<Duration>,
    /// When the controller first looked at it in this spell (its grace ran out).
    looked: Option<Duration>,
    /// When the controller's latest look at it started.
    last_look: Option<Duration>,
    /// Whether its last look found nothing (more) to do.
    settled: bool,
}

/// A volume released and verified.
#[derive(Debug, Clone)]
struct Release {
    node: NodeName,
    volume: String,
    at: Duration,
    millis: u64,
}

/// The timeline of one demo: told the controller's moments, it prints them and keeps what the
/// figures and the JSON outcome need.
struct Story {
    clock: Clock,
    grace: Duration,
    within: Duration,
    /// The emulated world, for the scenario's changes as it applies them.
    world: sim::World,
    /// The scenario's changes, in the order the emulator applies them.
    changes: Vec<sim::scenario::Step>,
    /// How many of them were told.
    told: usize,
    /// When the last one told was seen applied.
    last_change: Option<Duration>,
    nodes: BTreeMap<NodeName, NodeStory>,
    /// The nodes whose look has started and not ended.
    looking: BTreeSet<NodeName>,
    /// The last verdict line said per node (and for the storm guard), to say only changes.
    said: BTreeMap<String, String>,
    rounds: Vec<Round>,
    releases: Vec<Release>,
    /// Steps that ended failed.
    failed: u32,
    ids: ShortIds,
    replacements: Replacements,
}

impl Story {
    fn new(
        scenario: &Scenario,
        world: sim::World,
        grace: Duration,
        within: Duration,
        clock: Clock,
    ) -> Self {
        let mut changes = scenario.timeline.clone();
        changes.sort_by_key(|step| step.at);
        let replacements = Replacements::new(&world);
        Self {
            clock,
            grace,
            within,
            world,
            changes,
            told: 0,
            last_change: None,
            nodes: BTreeMap::new(),
            looking: BTreeSet::new(),
            said: BTreeMap::new(),
            rounds: Vec::new(),
            releases: Vec::new(),
            failed: 0,
            ids: ShortIds::new(scenario),
            replacements,
        }
    }

    fn take(&mut self, moment: Moment) {
        // What the scenario changed comes first: the controller can only have seen it after.
        self.scenario_changed();
        match moment {
            Moment::Watched(view) => self.watched(&view),
            Moment::Deleted(name) => {
                self.clock.say(&format!(
                    "{name}: deleted, as the controller's Node watch shows it"
                ));
                self.nodes.remove(&name);
            }
            Moment::Reported(name, death) => self.reported(&name, death.as_ref()),
            Moment::Due(nodes) => self.due(nodes),
            Moment::Planned(node, plan) => self.planned(&node, &plan),
            Moment::Held(storm, nodes) => self.held(&storm, &nodes),
            Moment::Looked(node) => {
                self.looking.remove(&node);
            }
            Moment::Started(step) => {
                if self.clock.text {
                    oneshot::print_progress(
                        &Progressing::Started(&step),
                        self.clock.started,
                        false,
                    );
                }
            }
            Moment::Ended(entry) => self.ended(entry),
        }
    }

    /// Prints the scenario's changes the emulator has applied since the last call, at the time
    /// the scenario gives them.
    fn scenario_changed(&mut self) {
        let pending = self.world.lock().pending_timeline();
        let applied = self.changes.len().saturating_sub(pending);
        while self.told < applied {
            let change = &self.changes[self.told];
            if self.clock.text {
                println!(
                    "[{:6.1}s] scenario: {}",
                    change.at.as_secs_f64(),
                    describe(change, &self.ids)
                );
            }
            self.told += 1;
            self.last_change = Some(self.clock.now());
        }
    }

    /// Why to stop the controller now, if it is time: the scenario's time is up, or the
    /// controller has listed the nodes, the scenario has played out (at least [`QUIET`] ago),
    /// and its last look at every node it has work with found nothing more to do.
    fn converged(&self, listed: bool) -> Option<String> {
        if self.clock.now() >= self.within {
            return Some(format!(
                "still not converged after {}: stopping the controller",
                humantime::format_duration(self.within)
            ));
        }
        let played = self.told == self.changes.len()
            && self
                .last_change
                .is_none_or(|at| self.clock.now() >= at + QUIET);
        // A change of the cloud (a host forced down) is no Node event: a node settled before
        // it is looked at again (the controller's resync) before the story may end.
        let settled = self.nodes.values().all(|node| {
            !node.open
                || (node.looked.is_some()
                    && node.settled
                    && node
                        .last_look
                        .zip(self.last_change)
                        .is_none_or(|(look, change)| look >= change))
        });
        (listed && played && settled && self.looking.is_empty())
            .then(|| "converged: nothing more to do; stopping the controller".to_owned())
    }

    fn watched(&mut self, view: &NodeView) {
        let now = self.clock.now();
        let open = view.is_unhealthy() || view.progress.is_some() || view.progress_error.is_some();
        let previous = self.nodes.get(&view.name);
        let was_ready = previous.map(|p| p.ready.is_ready());
        let new_spell = open
            && previous
                .is_none_or(|p| !p.open || p.ready != view.ready || p.since != view.ready_since);
        let name = &view.name;
        let ready = word(view.ready);
        match (was_ready, view.ready.is_ready()) {
            (Some(true), false) => self.clock.say(&format!(
                "{name}: NotReady (Ready={ready}), as the controller's Node watch shows it"
            )),
            (None, false) => self.clock.say(&format!(
                "{name}: not Ready (Ready={ready}) since {}, as the controller's Node watch lists it",
                self.clock.relative(view.ready_since)
            )),
            (Some(false), true) => self.clock.say(&format!("{name}: Ready again")),
            _ => {}
        }
        let entry = self.nodes.entry(name.clone()).or_insert(NodeStory {
            ready: view.ready,
            since: view.ready_since,
            open,
            turned: None,
            reported: None,
            looked: None,
            last_look: None,
            settled: !open,
        });
        if was_ready == Some(true) && !view.ready.is_ready() {
            entry.turned = Some(now);
        }
        if new_spell {
            entry.looked = None;
            entry.settled = false;
        }
        entry.ready = view.ready;
        entry.since = view.ready_since;
        entry.open = open;
    }

    /// The cloud-side watch reported a node's server dead, or running again.
    fn reported(&mut self, name: &NodeName, death: Option<&CloudDeath>) {
        let now = self.clock.now();
        let line = match death {
            Some(death) => format!(
                "{name}: Nova shows server {} dead (cloud-side watch): its grace runs from {} \
                 (Nova's change, to the second), whatever its Ready condition says",
                self.ids.say(death.server.as_str()),
                self.clock.relative(death.at)
            ),
            None => format!("{name}: no longer reported dead by the cloud-side watch"),
        };
        self.clock.say(&line);
        if let Some(node) = self.nodes.get_mut(name) {
            node.reported = death.map(|_| now);
            node.open = death.is_some() || !node.ready.is_ready();
            node.looked = None;
            node.settled = false;
        }
    }

    /// A look starts at these nodes; the first one of a spell is its grace running out.
    fn due(&mut self, nodes: Vec<NodeName>) {
        let clock = self.clock;
        self.looking.extend(nodes.iter().cloned());
        for name in &nodes {
            let Some(node) = self.nodes.get_mut(name) else {
                continue;
            };
            node.settled = false;
            node.last_look = Some(clock.now());
            if node.looked.is_some() {
                continue;
            }
            node.looked = Some(clock.now());
            if node.reported.is_some() {
                clock.say(&format!(
                    "{name}: grace {} over (counted from Nova's change{}): the controller reads \
                     it afresh",
                    humantime::format_duration(self.grace),
                    if node.ready.is_ready() {
                        "; the node is still Ready: its kubelet's heartbeat has not expired"
                    } else {
                        ""
                    }
                ));
            } else if node.ready.is_ready() {
                clock.say(&format!(
                    "{name}: Ready with the remediator's progress record: the controller reads it"
                ));
            } else {
                clock.say(&format!(
                    "{name}: grace {} over (counted from its Ready condition's \
                     lastTransitionTime, {}): the controller reads it afresh",
                    humantime::format_duration(self.grace),
                    clock.relative(node.since)
                ));
            }
        }
    }

    /// The storm guard holds: said once; the held nodes are settled (nothing may be done).
    fn held(&mut self, storm: &StormGuard, nodes: &[NodeName]) {
        let line = format!(
            "STORM GUARD: {} of {} nodes not Ready (limit {}): no action on any node",
            storm.unhealthy, storm.total, storm.limit
        );
        if self
            .said
            .insert("(storm)".to_owned(), line.clone())
            .as_ref()
            != Some(&line)
        {
            self.clock.say(&line);
        }
        for name in nodes {
            if let Some(node) = self.nodes.get_mut(name) {
                node.settled = true;
            }
        }
    }

    /// What the look at a node planned: its verdict and whether it settled.
    fn planned(&mut self, name: &NodeName, plan: &Plan) {
        let clock = self.clock;
        {
            let Some(node) = self.nodes.get_mut(name) else {
                return;
            };
            let steps: Vec<_> = plan
                .steps
                .iter()
                .filter(|step| step.node.as_ref() == Some(name))
                .collect();
            let mut waiting = false;
            let mut line = None;
            for skipped in plan.skipped.iter().filter(|s| s.node == *name) {
                line = match &skipped.skip {
                    Skip::WithinGrace { .. } => {
                        waiting = true;
                        Some("not Ready, within the grace period: waiting".to_owned())
                    }
                    Skip::AwaitingReturn { detail } => {
                        waiting = true;
                        Some(detail.clone())
                    }
                    // The storm guard's own line says it for every node.
                    Skip::StormGuard { .. } => None,
                    other => Some(format!("no action: {other}")),
                };
            }
            let verdict = steps.iter().find(|step| {
                matches!(
                    step.action,
                    Action::ReleaseVolume { .. }
                        | Action::StopServer { .. }
                        | Action::DeleteServer { .. }
                        | Action::EvacuateServer { .. }
                )
            });
            if let Some(step) = verdict {
                line = Some(format!("fenced: {}", step.detail));
            }
            node.settled = steps.is_empty() && !waiting;
            if let Some(line) = line
                && self.said.insert(name.to_string(), line.clone()).as_ref() != Some(&line)
            {
                clock.say(&format!("{name}: {line}"));
            }
        }
        if !plan.steps.is_empty() {
            clock.say(&format!("plan: {} step(s)", plan.steps.len()));
            self.rounds.push(Round {
                at_ms: u64::try_from(clock.now().as_millis()).unwrap_or(u64::MAX),
                plan: plan.clone(),
                report: Report::default(),
            });
        }
    }

    fn ended(&mut self, entry: StepReport) {
        if self.clock.text {
            oneshot::print_progress(&Progressing::Ended(&entry), self.clock.started, false);
        }
        match (&entry.outcome, &entry.step.action) {
            (execute::Outcome::Failed { .. }, _) => self.failed += 1,
            (
                execute::Outcome::Done { millis },
                Action::ReleaseVolume {
                    node: Some(node),
                    volume,
                    ..
                },
            ) => self.releases.push(Release {
                node: node.clone(),
                volume: volume.to_string(),
                at: self.clock.now(),
                millis: *millis,
            }),
            (execute::Outcome::Done { millis }, Action::DeleteServer { node, volumes, .. }) => {
                for volume in volumes {
                    self.releases.push(Release {
                        node: node.clone(),
                        volume: volume.to_string(),
                        at: self.clock.now(),
                        millis: *millis,
                    });
                }
            }
            _ => {}
        }
        // Looks at several nodes run at once: the step goes to the latest round that planned it.
        if let Some(round) = self
            .rounds
            .iter_mut()
            .rev()
            .find(|round| round.plan.steps.contains(&entry.step))
        {
            round.report.steps.push(entry);
        }
    }

    /// The figures: how long from NotReady to each volume freed, the mutating OpenStack calls
    /// and the requests served.
    fn print_figures(&self, requests: &BTreeMap<String, usize>) {
        println!("\nFigures:");
        let state = self.world.lock();
        for release in &self.releases {
            let status = state
                .cloud
                .volume(&release.volume)
                .map_or("gone", |v| v.status.as_str());
            let freed = if status == "available" {
                "available"
            } else {
                "released"
            };
            let volume = self.ids.say(&release.volume);
            let verified = release.millis as f64 / 1000.0;
            let story = self.nodes.get(&release.node);
            if let Some(reported) = story.and_then(|n| n.reported) {
                let failed = self.changes.first().map_or(reported, |change| change.at);
                let turned = match story.and_then(|n| n.turned) {
                    Some(turned) => format!(
                        "; its Node turned NotReady only at {:.1}s",
                        turned.as_secs_f64()
                    ),
                    None => "; its Node was still Ready".to_owned(),
                };
                println!(
                    "  {}: server dead at {:.1}s, seen by the cloud-side watch at {:.1}s -> volume {volume} {freed} at {:.1}s, {:.1}s after the failure (grace {}, release verified in {verified:.1}s){turned}",
                    release.node,
                    failed.as_secs_f64(),
                    reported.as_secs_f64(),
                    release.at.as_secs_f64(),
                    release.at.saturating_sub(failed).as_secs_f64(),
                    humantime::format_duration(self.grace),
                );
                continue;
            }
            match story.and_then(|n| n.turned) {
                Some(turned) => println!(
                    "  {}: NotReady -> volume {volume} {freed} in {:.1}s (grace {}, release verified in {verified:.1}s)",
                    release.node,
                    release.at.saturating_sub(turned).as_secs_f64(),
                    humantime::format_duration(self.grace),
                ),
                None => println!(
                    "  {}: NotReady before the start -> volume {volume} {freed} at {:.1}s (release verified in {verified:.1}s)",
                    release.node,
                    release.at.as_secs_f64(),
                ),
            }
        }
        self.print_replacements();
        let mutating: Vec<String> = state
            .requests()
            .iter()
            .filter(|r| matches!(r.service, Service::Nova | Service::Cinder) && r.is_mutating())
            .map(|r| {
                format!(
                    "{} {} {} at {:.1}s",
                    r.service.as_str(),
                    r.method,
                    r.path,
                    r.at_ms as f64 / 1000.0
                )
            })
            .collect();
        let listed = if mutating.is_empty() {
            String::new()
        } else {
            format!(" ({})", mutating.join(", "))
        };
        println!("  mutating OpenStack requests: {}{listed}", mutating.len());
        let components: Vec<String> = state
            .requests()
            .iter()
            .filter_map(|r| {
                let by = r.by?;
                Some(format!(
                    "{by} {} {} -> {} at {:.1}s",
                    r.method,
                    r.path,
                    r.status,
                    r.at_ms as f64 / 1000.0
                ))
            })
            .collect();
        if !components.is_empty() {
            println!(
                "  the cluster's own calls to OpenStack: {} ({})",
                components.len(),
                components.join(", ")
            );
        }
        let counts: Vec<String> = requests.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "  requests served: {} ({})",
            requests.values().sum::<usize>(),
            counts.join(", ")
        );
    }
}

/// The pods Kubernetes' own controllers create to replace the ones on dead nodes, and when the
/// demo first saw each of them scheduled, its volumes attached on its node, and Running.
#[derive(Default)]
struct Replacements {
    /// The pods (uids) there at the start: not replacements.
    initial: BTreeSet<String>,
    /// By uid, in the order they were first seen.
    seen: Vec<(String, Replacement)>,
}

/// One replacement pod.
struct Replacement {
    /// `namespace/name`.
    pod: String,
    /// `Kind/name` of its controller.
    owner: String,
    node: Option<String>,
    /// The PVs it mounts.
    pvs: Vec<String>,
    attached: Option<Duration>,
    running: Option<Duration>,
}

impl Replacements {
    fn new(world: &sim::World) -> Self {
        let state = world.lock();
        let initial = state
            .kube
            .list("pods")
            .into_iter()
            .map(|pod| text(pod, "/metadata/uid").to_owned())
            .collect();
        Self {
            initial,
            seen: Vec::new(),
        }
    }

    /// Looks at the world once, at `now`; returns what changed, in words.
    fn poll(&mut self, world: &sim::World, now: Duration) -> Vec<String> {
        let mut said = Vec::new();
        let state = world.lock();
        let attachments = state.kube.list("volumeattachments");
        for pod in state.kube.list("pods") {
            let uid = text(pod, "/metadata/uid");
            let Some(owner) = pod
                .pointer("/metadata/ownerReferences/0")
                .map(|r| format!("{}/{}", text(r, "/kind"), text(r, "/name")))
            else {
                continue;
            };
            if self.initial.contains(uid) {
                continue;
            }
            let index = match self.seen.iter().position(|(seen, _)| seen == uid) {
                Some(index) => index,
                None => {
                    let namespace = text(pod, "/metadata/namespace");
                    let pvs = pod
                        .pointer("/spec/volumes")
                        .and_then(serde_json::Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
                        .filter_map(|claim| {
                            let pvc =
                                state
                                    .kube
                                    .get("persistentvolumeclaims", Some(namespace), claim)?;
                            Some(text(pvc, "/spec/volumeName").to_owned())
                        })
                        .collect();
                    said.push(format!(
                        "pod {namespace}/{} created by {owner} (Kubernetes)",
                        text(pod, "/metadata/name")
                    ));
                    self.seen.push((
                        uid.to_owned(),
                        Replacement {
                            pod: format!("{namespace}/{}", text(pod, "/metadata/name")),
                            owner,
                            node: None,
                            pvs,
                            attached: None,
                            running: None,
                        },
                    ));
                    self.seen.len() - 1
                }
            };
            let replacement = &mut self.seen[index].1;
            let node = text(pod, "/spec/nodeName");
            if !node.is_empty() {
                replacement.node = Some(node.to_owned());
            }
            let attached = !node.is_empty()
                && replacement.pvs.iter().all(|pv| {
                    attachments.iter().any(|va| {
                        text(va, "/spec/source/persistentVolumeName") == pv
                            && text(va, "/spec/nodeName") == node
                            && va.pointer("/status/attached")
                                == Some(&serde_json::Value::Bool(true))
                    })
                });
            if attached && replacement.attached.is_none() {
                replacement.attached = Some(now);
                said.push(format!(
                    "pod {}: its volumes attached on {node} (Kubernetes)",
                    replacement.pod
                ));
            }
            if text(pod, "/status/phase") == "Running" && replacement.running.is_none() {
                replacement.running = Some(now);
                said.push(format!("pod {}: Running on {node}", replacement.pod));
            }
        }
        said
    }

    /// Whether every replacement seen is Running (none seen: nothing to wait for).
    fn all_running(&self) -> bool {
        self.seen.iter().all(|(_, r)| r.running.is_some())
    }
}

/// The string at `pointer` in an object, or empty.
fn text<'a>(object: &'a serde_json::Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

impl Story {
    fn poll_replacements(&mut self) {
        for line in self.replacements.poll(&self.world, self.clock.now()) {
            self.clock.say(&line);
        }
    }

    /// Each replacement pod: where it runs and how long after the failure, split into the
    /// remediator's part (until the release is verified) and Kubernetes' (attach, start).
    fn print_replacements(&self) {
        let failed_at = self.changes.first().map(|change| change.at);
        let freed = self
            .releases
            .iter()
            .map(|r| (r.at.saturating_sub(Duration::from_millis(r.millis)), r.at))
            .reduce(|(sent, verified), (s, v)| (sent.min(s), verified.max(v)));
        for (_, replacement) in &self.replacements.seen {
            let node = replacement.node.as_deref().unwrap_or("no node");
            let Some(running) = replacement.running else {
                println!(
                    "  replacement {} ({}): not Running after {} (on {node}; volumes attached: {})",
                    replacement.pod,
                    replacement.owner,
                    humantime::format_duration(self.within),
                    if replacement.attached.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
                continue;
            };
            let since = match failed_at {
                Some(at) => format!(
                    "{:.1}s after the failure",
                    running.saturating_sub(at).as_secs_f64()
                ),
                None => format!("at {:.1}s", running.as_secs_f64()),
            };
            let mut line = format!(
                "  replacement {} ({}): Running on {node} with its volumes attached there, {since}",
                replacement.pod, replacement.owner
            );
            if let (Some((sent, verified)), Some(attached)) = (freed, replacement.attached) {
                let secs = |d: Duration| d.as_secs_f64();
                let _ = write!(
                    line,
                    " (until the release was sent {:.1}s, detach {:.1}s, attach {:.1}s, start {:.1}s)",
                    secs(sent.saturating_sub(failed_at.unwrap_or_default())),
                    secs(verified.saturating_sub(sent)),
                    secs(attached.saturating_sub(verified)),
                    secs(running.saturating_sub(attached))
                );
            }
            println!("{line}");
        }
    }
}

/// A scenario change, in words.
fn describe(change: &sim::scenario::Step, ids: &ShortIds) -> String {
    if let Some(c) = &change.server_status {
        format!("server {} {}", ids.say(&c.server.value), c.status.as_str())
    } else if let Some(c) = &change.node_ready {
        format!("node {} Ready={}", c.node.value, c.status.as_str())
    } else if let Some(c) = &change.host_state {
        let state = c.state.map(|state| match state {
            sim::scenario::HostState::Up => "up",
            sim::scenario::HostState::Down => "down",
        });
        let forced = c.forced_down.map(|forced| {
            if forced {
                "forced down (`openstack compute service set --down`)"
            } else {
                "no longer forced down"
            }
        });
        let words: Vec<&str> = state.into_iter().chain(forced).collect();
        format!("compute host {} {}", c.host.value, words.join(", "))
    } else if let Some(c) = &change.linstor_node {
        format!("LINSTOR node {} {}", c.node.value, c.connection_status)
    } else {
        "nothing".to_owned()
    }
}

/// The Ready condition's status as Kubernetes spells it.
fn word(ready: Readiness) -> &'static str {
    match ready {
        Readiness::True => "True",
        Readiness::False => "False",
        Readiness::Unknown => "Unknown",
    }
}

/// A client of the emulated cluster that authenticates with `token` and trusts its CA.
fn client_with(running: &Running, token: String) -> Result<kube::Client, Error> {
    let url = running
        .endpoints
        .kubernetes
        .parse()
        .map_err(|err| Error::Client(format!("emulated Kubernetes URL: {err}")))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(vec![running.kubernetes_ca.clone()]);
    config.auth_info.token = Some(token.into());
    kube::Client::try_from(config).map_err(|err| Error::Client(crate::config::one_line(&err)))
}

/// A client of the emulated cluster as its admin (a member of `system:masters`, allowed
/// everything): what sets the scene and looks on.
///
/// # Errors
/// When the client cannot be built.
pub fn admin_client(running: &Running) -> Result<kube::Client, Error> {
    client_with(running, sim::kubernetes::ADMIN_TOKEN.to_owned())
}

/// The namespace and name of the ServiceAccount the shipped manifests run the remediator as.
pub const SERVICE_ACCOUNT: (&str, &str) = ("kube-system", "cinder-remediator");

/// The ServiceAccount, roles and bindings of `manifests/base` (its Deployment and
/// PodDisruptionBudget aside), built in.
const BASE_RBAC: [&str; 6] = [
    include_str!("../manifests/base/serviceaccount.yaml"),
    include_str!("../manifests/base/clusterrole.yaml"),
    include_str!("../manifests/base/clusterrolebinding.yaml"),
    include_str!("../manifests/base/role.yaml"),
    include_str!("../manifests/base/rolebinding.yaml"),
    include_str!("../manifests/base/role-node-leases.yaml"),
];

/// The objects of [`BASE_RBAC`], as JSON.
///
/// # Errors
/// Never in a tested build (the files are the repository's manifests).
pub fn base_rbac() -> Result<Vec<serde_json::Value>, Error> {
    let mut objects = Vec::new();
    for text in BASE_RBAC {
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
            .map_err(|err| Error::Client(format!("manifests/base: {err}")))?;
        objects.extend(documents);
    }
    Ok(objects)
}

/// A client of the emulated cluster as the remediator's ServiceAccount under the shipped roles:
/// applies the ServiceAccount, roles and bindings of `manifests/base` as the admin (server-side
/// apply, as `kubectl apply --server-side` does), asks for a token by TokenRequest (as `kubectl
/// create token` does) and authenticates with it. The emulated API server then allows exactly
/// what those roles grant.
///
/// # Errors
/// When a manifest cannot be applied, or no token issued.
pub async fn service_account_client(running: &Running) -> Result<kube::Client, Error> {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
    use kube::discovery::ApiResource;

    let admin = admin_client(running)?;
    let failed = |err: kube::Error| Error::Client(crate::config::one_line(&err));
    for object in base_rbac()? {
        let text = |field: &str| object.pointer(field).and_then(serde_json::Value::as_str);
        let (Some(api_version), Some(kind), Some(name)) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        else {
            return Err(Error::Client(format!(
                "manifests/base: {object} has no apiVersion, kind or name"
            )));
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let plural = format!("{}s", kind.to_lowercase());
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let api: Api<DynamicObject> = match text("/metadata/namespace") {
            Some(namespace) => Api::namespaced_with(admin.clone(), namespace, &resource),
            None => Api::all_with(admin.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .map_err(failed)?;
    }
    let (namespace, name) = SERVICE_ACCOUNT;
    let issued = Api::<ServiceAccount>::namespaced(admin, namespace)
        .create_token_request(name, &PostParams::default(), &TokenRequest::default())
        .await
        .map_err(failed)?;
    let token = issued
        .status
        .map(|status| status.token)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| Error::Client("the TokenRequest was answered without a token".to_owned()))?;
    client_with(running, token)
}

/// The backends through the production path: OpenStack's settings from `OS_*` variables (a
/// map, never the process environment), then the Keystone login of
/// [`crate::openstack::session`]; LINSTOR's controller when the scenario has one.
async fn storage_backend(running: &Running) -> Result<Storage, Error> {
    let source = openstack_source(running);
    let settings = crate::openstack::config::load(&source)
        .map_err(|err| Error::Client(crate::config::one_line(&err)))?;
    let session = crate::openstack::session::connect(&settings)
        .await
        .map_err(|err| Error::Client(crate::config::one_line(&err)))?;
    let linstor = match &running.endpoints.linstor {
        Some(url) => Some(
            Controllers::new(&LinstorSettings {
                controllers: url.clone(),
                ..LinstorSettings::default()
            })
            .map(Linstor::new)
            .map_err(|err| Error::Client(err.to_string()))?,
        ),
        None => None,
    };
    Ok(Storage::openstack(OpenStack::new(&session, settings.region())).with_linstor(linstor))
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
        dead_host: remediator.dead_host.map(|name| match name {
            DeadHostName::Report => DeadHost::Report,
            DeadHostName::DeleteServer => DeadHost::DeleteServer,
            DeadHostName::Evacuate => DeadHost::Evacuate,
        }),
        evacuate_wait: remediator.evacuate_wait,
        only_labelled_pods: remediator.only_labelled_pods,
    }
}

async fn print_state(
    running: &Running,
    client: &kube::Client,
    ids: &ShortIds,
) -> Result<(), Error> {
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
                    format!("{name} ({})", ids.say(&a.server_id))
                })
                .collect();
            let attached = if holders.is_empty() {
                String::new()
            } else {
                format!(", attached to {}", holders.join(" and "))
            };
            println!(
                "  volume {} {}{attached}",
                ids.say(&volume.id),
                volume.status
            );
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

/// Ids said short: their first 8 characters, and their last 4 too where several ids share those
/// 8 (the scenarios number their ids at the end: `e1f2a3b4…0003`).
struct ShortIds {
    shared: BTreeSet<String>,
}

impl ShortIds {
    fn new(scenario: &Scenario) -> Self {
        let ids = scenario
            .openstack
            .servers
            .iter()
            .map(|server| &server.id)
            .chain(scenario.openstack.volumes.iter().map(|volume| &volume.id));
        let mut seen = BTreeMap::<&str, BTreeSet<&str>>::new();
        for id in ids {
            seen.entry(id.get(..8).unwrap_or(id))
                .or_default()
                .insert(id);
        }
        let shared = seen
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(prefix, _)| prefix.to_owned())
            .collect();
        Self { shared }
    }

    fn say(&self, id: &str) -> String {
        let prefix = id.get(..8).unwrap_or(id);
        match id.get(id.len().saturating_sub(4)..) {
            Some(tail) if self.shared.contains(prefix) && id.len() > 12 => {
                format!("{prefix}…{tail}")
            }
            _ => prefix.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_stay_apart_where_their_first_8_characters_do_not() {
        let scenario =
            Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/storm.yaml"))
                .unwrap();
        let ids = ShortIds::new(&scenario);
        let said: BTreeSet<String> = scenario
            .openstack
            .volumes
            .iter()
            .map(|volume| ids.say(&volume.id))
            .collect();
        assert_eq!(said.len(), scenario.openstack.volumes.len(), "{said:?}");
        assert!(said.contains("e1f2a3b4…0003"), "{said:?}");
        let seed = default_scenario().unwrap();
        assert_eq!(
            ShortIds::new(&seed).say("4e41d530-cb5f-49a9-9c6f-a591abdb6f11"),
            "4e41d530"
        );
    }

    #[test]
    fn the_default_scenario_is_the_catalogue_file() {
        let built_in = default_scenario().unwrap();
        let file = Scenario::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/controller-node-dies.yaml"),
        )
        .unwrap();
        assert_eq!(built_in.name, "controller-node-dies");
        assert_eq!(built_in.name, file.name);
        assert!(!built_in.timeline.is_empty() && built_in.expect.is_some());
    }
}
