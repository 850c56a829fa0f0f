//! The shared state of every emulator: the cloud, the cluster, LINSTOR, the request log, the
//! injected faults and the clock.
//!
//! One `World` is shared by every router. Time moves lazily: each lock first applies what is due
//! (timeline steps, finished detaches, the emulated CSI attacher), so every request sees a
//! consistent present; a ticker in [`super::serve`] takes the lock regularly so watchers see
//! changes even when nobody asks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cloud::Cloud;
use super::kubernetes::{self, Access, Store};
use super::linstor::Linstor;
use super::scenario::{Fault, Scenario, Service, Step};

/// Credentials the emulated Keystone accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password; random per run so tests can prove it never leaks.
    pub password: String,
    /// Domain of the user and the project.
    pub domain: String,
    /// Project name.
    pub project: String,
    /// Application credential id.
    pub application_credential_id: String,
    /// Application credential secret.
    pub application_credential_secret: String,
}

impl Credentials {
    fn generate(project: &str) -> Self {
        Self {
            username: "kube-remediator".to_owned(),
            password: format!("sim-pw-{}", uuid::Uuid::new_v4().simple()),
            domain: "Default".to_owned(),
            project: project.to_owned(),
            application_credential_id: uuid::Uuid::new_v4().simple().to_string(),
            application_credential_secret: format!("sim-ac-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// Base URLs of the emulators, as written to `endpoints.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Endpoints {
    /// Kubernetes API server (HTTPS).
    pub kubernetes: String,
    /// The CA the Kubernetes API server's certificate chains to, PEM.
    pub kubernetes_ca: String,
    /// Keystone root (the auth URL is this plus `/v3`).
    pub keystone: String,
    /// Nova root (the catalog URL is this plus `/v2.1`).
    pub nova: String,
    /// Cinder root (the catalog URL is this plus `/v3/{project_id}`).
    pub cinder: String,
    /// LINSTOR controller, for LINSTOR scenarios (a closed port with `linstor.controller_down`).
    pub linstor: Option<String>,
    /// A second LINSTOR controller endpoint serving the same cluster, with
    /// `linstor.backup_controller`.
    pub linstor_backup: Option<String>,
    /// The request log.
    pub requests: String,
    /// When the run started (the log's `at_ms` 0, the timeline's `at` 0), wall clock.
    pub started_at: String,
}

/// One served request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Which emulator served it.
    pub service: Service,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query string, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Response status.
    pub status: u16,
    /// Milliseconds since the start of the run, when the request arrived.
    pub at_ms: u64,
    /// The response body's size in bytes, when it is known before it is sent (not a watch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The emulated cluster's own component that sent it (`csi-attacher`); none for a client
    /// over HTTP (the remediator, the `openstack` CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'static str>,
    /// For an authenticated Kubernetes request: its user, what RBAC saw it ask, and whether it
    /// was allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

impl RequestRecord {
    /// Whether a client's request could change something (anything but GET, HEAD and
    /// OPTIONS); the cluster's own components' calls (`by`) are not the client's doing.
    #[must_use]
    pub fn is_mutating(&self) -> bool {
        self.by.is_none() && !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

/// An injected fault and how many more requests it applies to.
#[derive(Debug, Clone)]
struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
}

/// What the fault middleware does with one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interference {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer with this status instead of serving the request.
    pub status: Option<u16>,
}

/// Everything the emulators share.
pub struct State {
    /// Keystone, Nova and Cinder.
    pub cloud: Cloud,
    /// The Kubernetes objects.
    pub kube: Store,
    /// The LINSTOR controller's view.
    pub linstor: Option<Linstor>,
    /// Kubernetes' own controllers (scheduler, attach/detach, kubelets ...).
    pub controllers: kubernetes::Controllers,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Where each emulator listens.
    pub endpoints: Endpoints,
    log: Vec<RequestRecord>,
    faults: Vec<ActiveFault>,
    latency: Duration,
    timeline: VecDeque<Step>,
}

impl State {
    /// Applies everything due at `now_ms`: timeline steps, finished detaches, the CSI attacher,
    /// Kubernetes' controllers.
    fn advance(&mut self, now_ms: u64) {
        while let Some(step) = self.timeline.front() {
            if duration_ms(step.at) > now_ms {
                break;
            }
            let Some(step) = self.timeline.pop_front() else {
                break;
            };
            self.apply(&step, now_ms);
        }
        self.cloud.advance(now_ms);
        kubernetes::attacher::reconcile(self, now_ms);
        kubernetes::controllers::reconcile(self, now_ms);
    }

    fn apply(&mut self, step: &Step, now_ms: u64) {
        if let Some(change) = &step.server_status {
            self.cloud.set_server_status(change, now_ms);
        }
        if let Some(change) = &step.node_ready {
            self.kube.set_node_ready(&change.node.value, change.status);
        }
        if let Some(change) = &step.host_state {
            self.cloud
                .set_host_state(&change.host.value, change.state, change.forced_down, now_ms);
        }
        if let (Some(change), Some(linstor)) = (&step.linstor_node, self.linstor.as_mut()) {
            linstor.set_node_status(
                &change.node.value,
                &change.connection_status,
                change.drbd_connected,
            );
        }
    }

    /// Records a call the emulated cluster's own component `by` made to a cloud service, as a
    /// real one would show in the service's log.
    pub fn record_component(
        &mut self,
        by: &'static str,
        service: Service,
        method: &str,
        path: String,
        status: u16,
        now_ms: u64,
    ) {
        self.log.push(RequestRecord {
            service,
            method: method.to_owned(),
            path,
            query: None,
            status,
            at_ms: now_ms,
            bytes: None,
            by: Some(by),
            access: None,
        });
    }

    /// How many timeline steps are still to come.
    #[must_use]
    pub fn pending_timeline(&self) -> usize {
        self.timeline.len()
    }

    /// The request log, oldest first.
    #[must_use]
    pub fn requests(&self) -> &[RequestRecord] {
        &self.log
    }

    /// Decides whether an injected fault or latency applies to a request, and counts it.
    pub fn interference(&mut self, service: Service, method: &str, path: &str) -> Interference {
        let mut result = Interference::default();
        if matches!(service, Service::Keystone | Service::Nova | Service::Cinder) {
            result.delay = self.latency;
        }
        if let Some(active) = self.faults.iter_mut().find(|active| {
            active.remaining != Some(0)
                && active.fault.service.is_none_or(|s| s == service)
                && (active.fault.method == "*" || active.fault.method.eq_ignore_ascii_case(method))
                && path_matches(&active.fault.path, path)
        }) {
            if let Some(remaining) = active.remaining.as_mut() {
                *remaining -= 1;
            }
            result.delay += Duration::from_millis(active.fault.delay_ms);
            result.status = active.fault.status;
        }
        result
    }

    /// Adds a fault at run time (tests use this to break and heal endpoints).
    pub fn inject(&mut self, fault: Fault) {
        let remaining = fault.times;
        self.faults.push(ActiveFault { fault, remaining });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }
}

/// Matches a path against a fault pattern: `*` is one segment, a trailing `**` any rest. The
/// pattern matches the end of the path, so `/servers/*` matches `/v2.1/servers/abc` and a pattern
/// need not spell the version prefix (`/v2.1`, `/v3/{project_id}`).
#[must_use]
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    (0..path.len()).any(|start| segments_match(&pattern, &path[start..]))
}

fn segments_match(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (Some((&"**", _)), _) => true,
        (Some((p, pattern_rest)), Some((s, path_rest))) if *p == "*" || p == s => {
            segments_match(pattern_rest, path_rest)
        }
        (None, None) => true,
        _ => false,
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The handle every emulator holds.
#[derive(Clone)]
pub struct World {
    state: Arc<Mutex<State>>,
    started: Instant,
    started_at: jiff::Timestamp,
}

impl World {
    /// Builds the world a scenario describes, at time zero.
    #[must_use]
    pub fn new(scenario: &Scenario) -> Self {
        let credentials = Credentials::generate(&scenario.openstack.project);
        let state = State {
            cloud: Cloud::new(&scenario.openstack),
            kube: Store::new(scenario, jiff::Timestamp::now()),
            linstor: scenario.linstor.as_ref().map(Linstor::new),
            controllers: kubernetes::Controllers::new(scenario),
            credentials,
            endpoints: Endpoints::default(),
            log: Vec::new(),
            faults: scenario
                .openstack
                .behaviour
                .faults
                .iter()
                .map(|fault| ActiveFault {
                    fault: fault.clone(),
                    remaining: fault.times,
                })
                .collect(),
            latency: Duration::from_millis(scenario.openstack.behaviour.latency_ms),
            timeline: {
                let mut steps = scenario.timeline.clone();
                steps.sort_by_key(|step| step.at);
                steps.into()
            },
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
        }
    }

    /// When the run started, wall clock.
    #[must_use]
    pub fn started_at(&self) -> jiff::Timestamp {
        self.started_at
    }

    /// Milliseconds since the start of the run.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        duration_ms(self.started.elapsed())
    }

    /// Locks the state after bringing it up to the present.
    ///
    /// # Panics
    /// When a previous holder panicked (an emulator bug; the test that caused it fails).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        let now = self.now_ms();
        let mut state = self.state.lock().expect("world lock poisoned");
        state.advance(now);
        state
    }

    /// Locks the state after bringing it to `now_ms` instead of the present: tests drive the
    /// run's clock (timers of minutes pass at once). Times only move forward.
    #[cfg(test)]
    pub(crate) fn lock_at(&self, now_ms: u64) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().expect("world lock poisoned");
        state.advance(now_ms);
        state
    }

    /// Records a served request (its `at_ms` is when it arrived).
    pub fn record(&self, record: RequestRecord) {
        self.state
            .lock()
            .expect("world lock poisoned")
            .log
            .push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn path_patterns() {
        let detach = "/v2.1/servers/a/os-volume_attachments/b";
        assert!(path_matches("/servers/*/os-volume_attachments/*", detach));
        assert!(path_matches(
            "/v2.1/servers/*/os-volume_attachments/*",
            detach
        ));
        assert!(!path_matches("/servers/*/os-volume_attachments", detach));
        assert!(!path_matches("/volumes/*", detach));
        assert!(path_matches("/v3/**", "/v3/auth/tokens"));
        assert!(!path_matches("/v3/*", "/v3/auth/tokens"));
        assert!(path_matches("**", "/anything"));
    }
}
