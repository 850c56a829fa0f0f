//! `cinder-remediator run`: the controller. It watches Nodes only (no cache of every pod), keeps
//! a timer per node ([`schedule`]), and when a node's grace period runs out it observes that
//! node afresh (its own pods by field selector, the pending ones, the volumes it uses), plans
//! with the same core and runs the plan with the same executor as `remediate`, re-verified at the
//! moment of acting. One replica acts: the holder of the Lease ([`lease`]); the others observe
//! and plan, for their metrics and readiness, and never act.

pub mod cloud;
pub mod lease;
pub mod schedule;
pub mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::stream::FuturesUnordered;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::admin::Health;
use crate::backend::{self, Backend, ChangedServer};
use crate::cluster::{Cluster, Target, Watched, node_view, va_view};
use crate::execute::{self, Executor, Outcome, Progressing, StepReport};
use crate::metrics::{ActionOutcome, Metrics, RemediationOutcome, VerdictLabel};
use crate::observe::{self, Scope};
use cloud::CloudWatch;
use fencing::model::{CloudDeath, NodeName, NodeView, ServerId, StorageView, VaName, VaView};
use fencing::plan::{self, Plan, Policy, Skip, Step};
use schedule::{Look, Schedule, Timing};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The policy, as for `remediate`.
    pub policy: Policy,
    /// Plan and report, never act.
    pub dry_run: bool,
    /// The executor's patience.
    pub execute: execute::Options,
    /// How often a node not Ready is looked at again when nothing changed.
    pub resync: Duration,
    /// How often to ask Nova for the servers changed since its last answer (`--watch-cloud`):
    /// a server that turns dead starts its node's grace at once, before the kubelet's
    /// heartbeat expires; `None`: the Node's Ready condition alone.
    pub watch_cloud: Option<Duration>,
    /// Where to tell each [`Moment`], for something following the controller as it works (the
    /// `demo`'s timeline); `None` for `run`. The controller never waits for it to be read.
    pub observer: Option<mpsc::UnboundedSender<Moment>>,
}

/// A moment of the controller's work, told to [`Settings::observer`] as it happens.
#[derive(Debug, Clone)]
pub enum Moment {
    /// The Node watch showed this node (as the schedule takes it in).
    Watched(Box<NodeView>),
    /// The Node watch showed this node deleted.
    Deleted(NodeName),
    /// The cloud-side watch saw this node's server die (`Some`, with when) or run again.
    Reported(NodeName, Option<CloudDeath>),
    /// These nodes are due (their grace ran out, or a look is to be repeated): a look starts
    /// at each.
    Due(Vec<NodeName>),
    /// The look at this node planned this (before acting, if it acts).
    Planned(NodeName, Plan),
    /// The look at this node ended (all its steps done, or why not, told before).
    Looked(NodeName),
    /// The storm guard holds: these due nodes are not looked at.
    Held(plan::StormGuard, Vec<NodeName>),
    /// A step starts.
    Started(Step),
    /// A step ended (done and verified, or why not).
    Ended(StepReport),
}

impl Settings {
    /// Tells the observer, if any, the moment `moment` makes.
    fn tell(&self, moment: impl FnOnce() -> Moment) {
        if let Some(observer) = &self.observer {
            let _ = observer.send(moment());
        }
    }

    /// Tells the observer a step starting or ending.
    fn tell_progress(&self, event: &Progressing<'_>) {
        match event {
            Progressing::Started(step) => self.tell(|| Moment::Started((*step).clone())),
            Progressing::Ended(entry) => self.tell(|| Moment::Ended((*entry).clone())),
            Progressing::Waiting(..) => {}
        }
    }
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Node watch ended.
    #[error("the Node watch ended")]
    WatchEnded,
}

/// The most looks at nodes in flight at once (each reads a handful of objects, then acts).
const CONCURRENT_LOOKS: usize = 64;

/// Runs the controller until `shutdown` completes; the looks in flight then finish first
/// (their steps keep their own timeouts), no new one starts.
///
/// Each node due is looked at on its own, concurrently with the others and with the watches:
/// one slow detach never delays another node. The storm guard is checked over every node
/// before any look starts: thousands of dead nodes cost no read and one Event.
///
/// # Errors
/// When a watch ends for good.
pub async fn run<B: Backend>(
    cluster: &Cluster,
    backend: &B,
    settings: &Settings,
    leader: watch::Receiver<bool>,
    metrics: &Metrics,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut schedule = Schedule::new(Timing {
        grace: settings.policy.grace,
        settle: Duration::from_secs(1),
        resync: settings.resync,
        backoff: Duration::from_secs(1),
    });
    let mut nodes = watcher::watcher(
        Api::<Node>::all(cluster.client()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut attachments = watcher::watcher(
        Api::<VolumeAttachment>::all(cluster.client()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    // Shared with the looks in flight, each locking it only for a moment (never across a read).
    let watched: Mutex<Watched> = Mutex::default();
    let mut nodes_listing: Option<BTreeMap<NodeName, NodeView>> = None;
    let mut attachments_listing: Option<BTreeMap<VaName, VaView>> = None;
    let (mut nodes_synced, mut attachments_synced) = (false, false);
    let mut storm_said = false;
    let mut cloud = settings
        .watch_cloud
        .map(|interval| CloudWatch::new(interval, Timestamp::now()));
    let mut next_poll = cloud.as_ref().map(|_| Timestamp::now());
    let mut poll: Fuse<CloudPoll<'_>> = Fuse::terminated();
    let controller = Controller {
        cluster,
        backend,
        settings,
        leader,
        metrics,
    };
    let mut looks = FuturesUnordered::new();
    tokio::pin!(shutdown);
    loop {
        // No look before both watches have listed: a node's VolumeAttachments are read by the
        // names the watch knows.
        let synced = nodes_synced && attachments_synced;
        let wake = (synced && looks.len() < CONCURRENT_LOOKS)
            .then(|| schedule.next_due().map(instant_of))
            .flatten();
        tokio::select! {
            () = &mut shutdown => break,
            event = nodes.next() => {
                let now = Timestamp::now();
                let event = event.ok_or(Error::WatchEnded)?;
                let mut watched = held(&watched);
                let nodes = &mut watched.nodes;
                match event {
                    Err(err) => tracing::warn!(error = %err, "The Node watch failed; it is retried"),
                    Ok(Event::Init) => nodes_listing = Some(BTreeMap::new()),
                    Ok(Event::InitApply(node)) => {
                        let view = reported(node_view(&node), cloud.as_ref());
                        settings.tell(|| Moment::Watched(Box::new(view.clone())));
                        schedule.observe(&view, now);
                        if let Some(listing) = &mut nodes_listing {
                            listing.insert(view.name.clone(), view);
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(listed) = nodes_listing.take() {
                            for gone in nodes.keys().filter(|name| !listed.contains_key(*name)) {
                                schedule.forget(gone);
                            }
                            *nodes = listed;
                        }
                        nodes_synced = true;
                    }
                    Ok(Event::Apply(node)) => {
                        let view = reported(node_view(&node), cloud.as_ref());
                        settings.tell(|| Moment::Watched(Box::new(view.clone())));
                        schedule.observe(&view, now);
                        nodes.insert(view.name.clone(), view);
                    }
                    Ok(Event::Delete(node)) => {
                        let view = node_view(&node);
                        if let (Some(cloud), Some(server)) = (&mut cloud, view.provider_server_id()) {
                            cloud.forget(&server);
                        }
                        settings.tell(|| Moment::Deleted(view.name.clone()));
                        schedule.forget(&view.name);
                        nodes.remove(&view.name);
                    }
                }
            }
            event = attachments.next() => {
                let event = event.ok_or(Error::WatchEnded)?;
                let mut watched = held(&watched);
                let attachments = &mut watched.attachments;
                match event {
                    Err(err) => tracing::warn!(error = %err, "The VolumeAttachment watch failed; it is retried"),
                    Ok(Event::Init) => attachments_listing = Some(BTreeMap::new()),
                    Ok(Event::InitApply(va)) => {
                        if let Some(listing) = &mut attachments_listing {
                            let view = va_view(&va);
                            listing.insert(view.name.clone(), view);
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(listed) = attachments_listing.take() {
                            *attachments = listed;
                        }
                        attachments_synced = true;
                    }
                    Ok(Event::Apply(va)) => {
                        let view = va_view(&va);
                        attachments.insert(view.name.clone(), view);
                    }
                    Ok(Event::Delete(va)) => {
                        attachments.remove(&va_view(&va).name);
                    }
                }
            }
            Some((node, look)) = looks.next(), if !looks.is_empty() => {
                let node: NodeName = node;
                settings.tell(|| Moment::Looked(node.clone()));
                let now = Timestamp::now();
                schedule.looked(&node, look, now, jitter(&node, now));
            }
            () = sleep_until(next_poll.filter(|_| synced && poll.is_terminated()).map(instant_of)) => {
                let now = Timestamp::now();
                if let Some(cloud) = &mut cloud {
                    // Only the actor asks Nova: the followers' reads would change nothing.
                    if *controller.leader.borrow() {
                        let forgotten = cloud.resume(now);
                        let mut watched = held(&watched);
                        for view in report_deaths(&mut watched.nodes, cloud, &forgotten) {
                            settings.tell(|| Moment::Reported(view.name.clone(), None));
                            schedule.observe(&view, now);
                        }
                        drop(watched);
                        let since = cloud.since();
                        poll = (Box::pin(async move { (now, backend.changed_servers(since).await) })
                            as CloudPoll<'_>)
                            .fuse();
                        next_poll = None;
                    } else {
                        next_poll = Some(now + SignedDuration::try_from(cloud.interval).unwrap_or(SignedDuration::MAX));
                    }
                }
            }
            (sent, answer) = &mut poll => {
                if let Some(cloud) = &mut cloud {
                    next_poll = Some(sent + SignedDuration::try_from(cloud.interval).unwrap_or(SignedDuration::MAX));
                    match answer {
                        Ok(changed) => {
                            let touched = cloud.take(&changed, sent);
                            let now = Timestamp::now();
                            let mut watched = held(&watched);
                            for view in report_deaths(&mut watched.nodes, cloud, &touched) {
                                settings.tell(|| Moment::Reported(view.name.clone(), view.cloud_death.clone()));
                                schedule.observe(&view, now);
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "Could not read the servers changed in the cloud; asking again next interval"),
                    }
                }
            }
            () = sleep_until(wake) => {
                let now = Timestamp::now();
                let due = schedule.due(now);
                let storm = plan::storm_guard(held(&watched).nodes.values(), &settings.policy.max_unhealthy);
                if let Some(storm) = storm {
                    metrics.set_storm_guard(true);
                    if !due.is_empty() {
                        settings.tell(|| Moment::Held(storm, due.clone()));
                    }
                    if !storm_said {
                        storm_said = controller.hold(&storm, &due).await;
                    }
                    for node in &due {
                        schedule.looked(node, Look::Idle, now, 0.0);
                    }
                } else {
                    metrics.set_storm_guard(false);
                    storm_said = false;
                    let starting: Vec<NodeName> =
                        due.into_iter().take(CONCURRENT_LOOKS - looks.len()).collect();
                    if !starting.is_empty() {
                        settings.tell(|| Moment::Due(starting.clone()));
                    }
                    for node in starting {
                        schedule.start(&node);
                        let (controller, watched) = (&controller, &watched);
                        looks.push(async move {
                            let look = controller.look(&node, watched).await;
                            (node, look)
                        });
                    }
                }
            }
        }
        health.set_ready(nodes_synced && attachments_synced);
        metrics.set_nodes_not_ready(schedule.not_ready());
    }
    while looks.next().await.is_some() {}
    Ok(())
}

/// One poll of the cloud-side watch: when it was sent, and Nova's answer.
type CloudPoll<'a> = Pin<
    Box<dyn Future<Output = (Timestamp, Result<Vec<ChangedServer>, backend::Error>)> + Send + 'a>,
>;

/// `view` with the cloud-side watch's report about its server, if any.
fn reported(mut view: NodeView, cloud: Option<&CloudWatch>) -> NodeView {
    view.cloud_death = cloud
        .zip(view.provider_server_id())
        .and_then(|(cloud, server)| cloud.death(&server).cloned());
    view
}

/// Sets the reports about the `touched` servers on the nodes whose providerID names them, and
/// returns those nodes as they are now.
fn report_deaths(
    nodes: &mut BTreeMap<NodeName, NodeView>,
    cloud: &CloudWatch,
    touched: &[ServerId],
) -> Vec<NodeView> {
    if touched.is_empty() {
        return Vec::new();
    }
    let touched: BTreeSet<&ServerId> = touched.iter().collect();
    nodes
        .values_mut()
        .filter(|node| {
            node.provider_server_id()
                .is_some_and(|server| touched.contains(&server))
        })
        .map(|node| {
            node.cloud_death = node
                .provider_server_id()
                .and_then(|server| cloud.death(&server).cloned());
            node.clone()
        })
        .collect()
}

/// What one look at a node needs.
struct Controller<'a, B> {
    cluster: &'a Cluster,
    backend: &'a B,
    settings: &'a Settings,
    leader: watch::Receiver<bool>,
    metrics: &'a Metrics,
}

impl<B: Backend> Controller<'_, B> {
    /// Observes, plans and (as the leader) acts for `node`, from fresh reads (the other nodes
    /// as `watched` shows them at the moment of planning).
    async fn look(&self, node: &NodeName, watched: &Mutex<Watched>) -> Look {
        let names = BTreeSet::from([node.clone()]);
        let span = tracing::info_span!("remediation", node = %node);
        async {
            let mut state = match self.cluster.observe_due(watched, &names).await {
                Ok(state) => state,
                Err(err) => {
                    tracing::warn!(error = %err, "Could not read the cluster; retrying later");
                    return Look::Failed;
                }
            };
            self.carry_reports(&mut state.nodes, watched).await;
            let scope = Scope {
                nodes: names.clone(),
                orphans: false,
                quiet_in_storm: true,
            };
            let policy = &self.settings.policy;
            let mut observation =
                observe::complete(state, self.backend, policy, &scope, Timestamp::now()).await;
            // Every other node as the watch shows it now, for planning only: one copy at a
            // time (planning does not wait), none held while acting.
            let others: Vec<NodeView> = held(watched)
                .nodes
                .values()
                .filter(|other| !names.contains(&other.name))
                .cloned()
                .collect();
            observation.nodes.extend(others);
            let mut plan = plan::plan(&observation, policy);
            observation.nodes.retain(|n| names.contains(&n.name));
            // This look's node only: the other nodes are another look's (or none's) business.
            plan.steps
                .retain(|step| step.node.as_ref().is_some_and(|n| names.contains(n)));
            plan.skipped.retain(|skipped| names.contains(&skipped.node));
            plan.held.retain(|held| names.contains(&held.node));
            for node in observation.nodes.iter().filter(|n| names.contains(&n.name)) {
                if let Some(verdict) = verdict_label(node, &plan, policy) {
                    self.metrics.fence_verdict(verdict);
                }
            }
            self.settings
                .tell(|| Moment::Planned(node.clone(), plan.clone()));
            let leader = *self.leader.borrow();
            self.say(&plan, &names, leader).await;
            if plan.steps.is_empty() {
                return Look::Idle;
            }
            if self.settings.dry_run || !leader {
                tracing::info!(
                    steps = plan.steps.len(),
                    dry_run = self.settings.dry_run,
                    leader,
                    "Planned; not acting\n{plan}"
                );
                return Look::Idle;
            }
            tracing::info!(steps = plan.steps.len(), "Acting\n{plan}");
            let executor = Executor::new(self.cluster, self.backend, policy, self.settings.execute)
                .with_gate(self.leader.clone());
            let report = executor
                .run(&plan, &observation, |event| {
                    self.settings.tell_progress(&event);
                })
                .await;
            tracing::info!("{}", crate::report::summary(&report));
            let source = observation
                .nodes
                .iter()
                .find(|n| n.name == *node)
                .and_then(|n| plan::detection(n, plan.now, policy.grace).ok())
                .unwrap_or(plan::Detection::Node);
            self.count(&report, &names, source)
                .remove(node)
                .unwrap_or(Look::Idle)
        }
        .instrument(span)
        .await
    }

    /// Carries the cloud-side watch's reports (kept on the watched nodes) over to the nodes
    /// read afresh, and reads the kubelet Lease of each node reported dead: a kubelet that
    /// renewed since contradicts the report. An unread Lease stays `None`: no proof.
    async fn carry_reports(&self, nodes: &mut [NodeView], watched: &Mutex<Watched>) {
        for node in nodes.iter_mut() {
            node.cloud_death = held(watched)
                .nodes
                .get(&node.name)
                .and_then(|seen| seen.cloud_death.clone());
            if node.reported_dead().is_some() {
                node.kubelet_renewed = match self.cluster.kubelet_renewed(node.name.as_str()).await
                {
                    Ok(renewed) => renewed,
                    Err(err) => {
                        tracing::warn!(error = %err, "Could not read the kubelet's Lease");
                        None
                    }
                };
            }
        }
    }

    /// The storm guard holds: one Event (on the first node due), as the leader. `true` once
    /// said.
    async fn hold(&self, storm: &plan::StormGuard, due: &[NodeName]) -> bool {
        let Some(node) = due.first() else {
            return false;
        };
        // Said in a dry run too: it is an Event, not an action.
        if !*self.leader.borrow() {
            return false;
        }
        let note = format!(
            "{} of {} nodes are not Ready (limit {}): no action on any node until fewer are",
            storm.unhealthy, storm.total, storm.limit
        );
        tracing::warn!("Storm guard: {note}");
        self.cluster
            .event(
                &Target::Node(node.clone()),
                true,
                "StormGuard",
                "Hold",
                note,
            )
            .await;
        true
    }

    /// Logs and Events for what needs an operator: unreadable progress records, refusals. In a
    /// dry run, the leader also says on each Node what it would do (`WouldRemediate`) or why it
    /// would not (`NoAction`): the observe-only deployment's whole output, beside the metrics.
    async fn say(&self, plan: &Plan, names: &BTreeSet<NodeName>, leader: bool) {
        if !leader {
            return;
        }
        if !self.settings.dry_run {
            crate::oneshot::report_unreadable_progress(self.cluster, plan).await;
        }
        for skipped in plan.skipped.iter().filter(|s| names.contains(&s.node)) {
            if !matches!(
                skipped.skip,
                Skip::WithinGrace { .. } | Skip::StormGuard { .. }
            ) {
                tracing::info!(node = %skipped.node, "No action: {}", skipped.skip);
                if self.settings.dry_run {
                    let note = format!("Dry run: no action: {}", skipped.skip);
                    self.cluster
                        .event(
                            &Target::Node(skipped.node.clone()),
                            false,
                            "NoAction",
                            "DryRun",
                            note,
                        )
                        .await;
                }
            }
        }
        if self.settings.dry_run {
            for node in names {
                let steps: Vec<String> = plan
                    .steps
                    .iter()
                    .filter(|step| step.node.as_ref() == Some(node))
                    .map(|step| step.action.to_string())
                    .collect();
                if steps.is_empty() {
                    continue;
                }
                let note = format!("Dry run: would {}", steps.join("; "));
                self.cluster
                    .event(
                        &Target::Node(node.clone()),
                        false,
                        "WouldRemediate",
                        "DryRun",
                        note,
                    )
                    .await;
            }
        }
    }

    /// Metrics of a report, and how each node's look ended.
    fn count(
        &self,
        report: &execute::Report,
        names: &BTreeSet<NodeName>,
        source: plan::Detection,
    ) -> BTreeMap<NodeName, Look> {
        let mut looks: BTreeMap<NodeName, Look> =
            names.iter().map(|n| (n.clone(), Look::Acted)).collect();
        for entry in &report.steps {
            let outcome = match &entry.outcome {
                Outcome::Done { .. } => ActionOutcome::Done,
                Outcome::Failed { .. } => ActionOutcome::Failed,
                Outcome::Stale { .. } => ActionOutcome::Stopped,
                Outcome::NotAttempted { .. } => ActionOutcome::NotAttempted,
            };
            self.metrics
                .action(entry.step.action.metric_label(), outcome);
            if let Some(node) = &entry.step.node
                && let Some(look) = looks.get_mut(node)
            {
                match &entry.outcome {
                    // Not allowed: no backoff retries; the next resync looks again.
                    Outcome::Failed { refused: true, .. } => *look = Look::Refused,
                    Outcome::Failed { .. } if *look != Look::Refused => *look = Look::Failed,
                    _ => {}
                }
            }
        }
        for (node, look) in &looks {
            let steps: Vec<&execute::StepReport> = report
                .steps
                .iter()
                .filter(|s| s.step.node.as_ref() == Some(node))
                .collect();
            let outcome = if steps.is_empty() {
                RemediationOutcome::Skipped
            } else if matches!(look, Look::Failed | Look::Refused) {
                RemediationOutcome::Failed
            } else if steps
                .iter()
                .all(|s| matches!(s.outcome, Outcome::Done { .. }))
            {
                RemediationOutcome::Done
            } else {
                RemediationOutcome::Stopped
            };
            self.metrics.remediation(outcome, source);
        }
        looks
    }
}

/// The fence verdict of a node as the plan took it, as a metric label: a proof the evidence
/// checks refused (a mismatch, a contradiction, an unread volume ...) counts as `unknown`, never
/// as `fenced`; a node not judged (within its grace, storm guard) counts nothing.
fn verdict_label(
    node: &fencing::model::NodeView,
    plan: &Plan,
    policy: &Policy,
) -> Option<VerdictLabel> {
    match plan
        .skipped
        .iter()
        .find(|skipped| skipped.node == node.name)
        .map(|skipped| &skipped.skip)
    {
        Some(Skip::WithinGrace { .. } | Skip::StormGuard { .. }) => return None,
        Some(Skip::NotFenced { .. }) => return Some(VerdictLabel::NotFenced),
        None | Some(Skip::AllHeld | Skip::NothingStuck) => {}
        Some(_) => return Some(VerdictLabel::Unknown),
    }
    let verdict = match &node.storage {
        StorageView::OpenStack(server) => plan::fence::openstack(server, policy.trust_forced_down),
        StorageView::ServerGone { id } => plan::fence::server_gone(id),
        StorageView::Linstor(satellite) => plan::fence::linstor_satellite(&node.name, satellite),
        StorageView::Unobserved => return None,
        StorageView::Error { .. } | StorageView::Ambiguous { .. } | StorageView::NoMatch => {
            return Some(VerdictLabel::Unknown);
        }
    };
    Some(match verdict {
        plan::Verdict::Fenced { .. } => VerdictLabel::Fenced,
        plan::Verdict::Stoppable { .. } => VerdictLabel::Stoppable,
        plan::Verdict::NotFenced { .. } => VerdictLabel::NotFenced,
        plan::Verdict::Unknown { .. } => VerdictLabel::Unknown,
    })
}

/// The watched views, locked (a panic elsewhere while it was held leaves it usable: each
/// change is one insert or remove).
fn held(watched: &Mutex<Watched>) -> std::sync::MutexGuard<'_, Watched> {
    watched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A deterministic jitter in `0.0..1.0` per node and time, to spread retries.
fn jitter(node: &NodeName, now: Timestamp) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut hasher);
    now.as_nanosecond().hash(&mut hasher);
    (hasher.finish() % 1000) as f64 / 1000.0
}

/// The tokio instant of a wall-clock time (now when it has passed).
fn instant_of(at: Timestamp) -> tokio::time::Instant {
    let wait = at.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencing::model::{MatchRoute, Readiness, ServerId, ServerView};
    use fencing::plan::SkippedNode;

    fn shutoff_node() -> NodeView {
        NodeView {
            name: NodeName::new("n1"),
            uid: None,
            ready: Readiness::Unknown,
            ready_since: Timestamp::UNIX_EPOCH,
            taints: Vec::new(),
            provider_id: None,
            addresses: Vec::new(),
            zone: None,
            progress: None,
            progress_error: None,
            satellite: None,
            cloud_death: None,
            kubelet_renewed: None,
            storage: StorageView::OpenStack(ServerView {
                id: ServerId::new("s1"),
                name: "n1".to_owned(),
                matched_by: MatchRoute::ProviderId,
                addresses: None,
                status: "SHUTOFF".to_owned(),
                power_state: Some(4),
                task_state: None,
                vm_state: None,
                host: None,
                host_state: None,
                host_hidden: false,
            }),
        }
    }

    fn plan_skipping(skip: Option<Skip>) -> Plan {
        Plan {
            now: Timestamp::UNIX_EPOCH,
            storm: None,
            steps: Vec::new(),
            skipped: skip
                .into_iter()
                .map(|skip| SkippedNode {
                    node: NodeName::new("n1"),
                    skip,
                })
                .collect(),
            held: Vec::new(),
            orphans: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_proof_the_evidence_checks_refused_counts_as_unknown_not_fenced() {
        let node = shutoff_node();
        let policy = Policy::default();
        let verdict = |skip| verdict_label(&node, &plan_skipping(skip), &policy);
        assert_eq!(verdict(None), Some(VerdictLabel::Fenced));
        assert_eq!(
            verdict(Some(Skip::NothingStuck)),
            Some(VerdictLabel::Fenced)
        );
        let refused = Skip::Mismatch {
            server: ServerId::new("s1"),
            detail: "10.0.0.9 is not the node's 10.0.0.1".to_owned(),
        };
        assert_eq!(verdict(Some(refused)), Some(VerdictLabel::Unknown));
        assert_eq!(
            verdict(Some(Skip::DuplicateNode)),
            Some(VerdictLabel::Unknown)
        );
        assert_eq!(
            verdict(Some(Skip::WithinGrace {
                remaining: jiff::SignedDuration::from_secs(3)
            })),
            None
        );
    }
}
