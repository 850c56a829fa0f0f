//! The controller's Prometheus metrics (`prometheus-client`), served as OpenMetrics text on
//! `/metrics`. Every label is a bounded enum or a `&'static str` label of the code, never a
//! node, volume or server name.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use fencing::plan::Detection;

/// Bounded label values: an enum whose variants are spelled in snake_case on `/metrics`.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self {
                    $(Self::$variant => $text,)*
                })
            }
        }
    };
}

label_enum!(
    /// How a remediation of one node ended.
    RemediationOutcome {
        /// Every step done.
        Done => "done",
        /// A step failed.
        Failed => "failed",
        /// Stopped: the evidence changed between planning and acting.
        Stopped => "stopped",
        /// Nothing to do, or nothing the remediator may do.
        Skipped => "skipped",
    }
);

label_enum!(
    /// How one action ended.
    ActionOutcome {
        /// Done and verified.
        Done => "done",
        /// Failed.
        Failed => "failed",
        /// Not done: the evidence changed.
        Stopped => "stopped",
        /// Not attempted: an earlier step failed, or this replica may no longer act.
        NotAttempted => "not_attempted",
    }
);

label_enum!(
    /// A fence verdict.
    VerdictLabel {
        /// Proven unable to write.
        Fenced => "fenced",
        /// Not fenced, but stop fencing could fence it.
        Stoppable => "stoppable",
        /// Not fenced.
        NotFenced => "not_fenced",
        /// Not known.
        Unknown => "unknown",
    }
);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemediationLabels {
    outcome: RemediationOutcome,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: ActionOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: VerdictLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenStackLabels {
    service: &'static str,
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    service: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubernetesLabels {
    verb: &'static str,
    resource: &'static str,
}

type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 5 ms to about 41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the controller.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    remediations: Family<RemediationLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    nodes_not_ready: Gauge,
    storm_guard: Gauge,
    leader: Gauge,
    openstack: Durations<OpenStackLabels>,
    openstack_failures: Family<FailureLabels, Counter>,
    kubernetes: Durations<KubernetesLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cinder_remediator");
        let metrics = Self {
            remediations: Family::default(),
            actions: Family::default(),
            verdicts: Family::default(),
            nodes_not_ready: Gauge::default(),
            storm_guard: Gauge::default(),
            leader: Gauge::default(),
            openstack: Family::new_with_constructor(request_histogram),
            openstack_failures: Family::default(),
            kubernetes: Family::new_with_constructor(request_histogram),
            registry: Registry::default(),
        };
        registry.register(
            "remediations",
            "Remediations of a node, by outcome and by what detected the failure (`node`: its \
             Ready condition; `cloud`: Nova, through --watch-cloud)",
            metrics.remediations.clone(),
        );
        registry.register(
            "actions",
            "Actions of the executor, by action and outcome",
            metrics.actions.clone(),
        );
        registry.register(
            "fence_verdicts",
            "Fence verdicts of nodes looked at",
            metrics.verdicts.clone(),
        );
        registry.register(
            "nodes_not_ready",
            "Nodes not Ready, as the Node watch shows",
            metrics.nodes_not_ready.clone(),
        );
        registry.register(
            "storm_guard_active",
            "Whether the storm guard holds every action (1) or not (0)",
            metrics.storm_guard.clone(),
        );
        registry.register(
            "is_leader",
            "Whether this replica holds the Lease and may act (1) or not (0)",
            metrics.leader.clone(),
        );
        registry.register(
            "openstack_request_duration_seconds",
            "Duration of Keystone, Nova and Cinder requests",
            metrics.openstack.clone(),
        );
        registry.register(
            "openstack_request_failures",
            "Failed Nova and Cinder requests, by service and reason (`unauthorized`: Keystone \
             refuses the credentials)",
            metrics.openstack_failures.clone(),
        );
        registry.register(
            "kubernetes_request_duration_seconds",
            "Duration of Kubernetes API requests",
            metrics.kubernetes.clone(),
        );
        // Every outcome and verdict from the start, at 0: a rate over a series that does not
        // exist yet alerts on nothing.
        for outcome in [
            RemediationOutcome::Done,
            RemediationOutcome::Failed,
            RemediationOutcome::Stopped,
            RemediationOutcome::Skipped,
        ] {
            for source in [Detection::Node, Detection::Cloud] {
                drop(metrics.remediations.get_or_create(&RemediationLabels {
                    outcome,
                    source: source.as_label(),
                }));
            }
        }
        for verdict in [
            VerdictLabel::Fenced,
            VerdictLabel::Stoppable,
            VerdictLabel::NotFenced,
            VerdictLabel::Unknown,
        ] {
            drop(metrics.verdicts.get_or_create(&VerdictLabels { verdict }));
        }
        Self {
            registry,
            ..metrics
        }
    }

    /// One remediation of a node ended so.
    pub fn remediation(&self, outcome: RemediationOutcome, source: Detection) {
        self.remediations
            .get_or_create(&RemediationLabels {
                outcome,
                source: source.as_label(),
            })
            .inc();
    }

    /// One action (its `Action::metric_label`) ended so.
    pub fn action(&self, action: &'static str, outcome: ActionOutcome) {
        self.actions
            .get_or_create(&ActionLabels { action, outcome })
            .inc();
    }

    /// A node was judged so.
    pub fn fence_verdict(&self, verdict: VerdictLabel) {
        self.verdicts
            .get_or_create(&VerdictLabels { verdict })
            .inc();
    }

    /// How many nodes are not Ready.
    pub fn set_nodes_not_ready(&self, count: usize) {
        self.nodes_not_ready
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Whether the storm guard holds.
    pub fn set_storm_guard(&self, active: bool) {
        self.storm_guard.set(i64::from(active));
    }

    /// Whether this replica may act.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// An OpenStack request (`service`: nova or cinder; `operation`: its route, e.g.
    /// `GET /servers/{id}`, bounded) took `seconds`.
    pub fn openstack_request(&self, service: &'static str, operation: &str, seconds: f64) {
        self.openstack
            .get_or_create(&OpenStackLabels {
                service,
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }

    /// An OpenStack request failed (`reason`: the error's bounded label).
    pub fn openstack_failure(&self, service: &'static str, reason: &'static str) {
        self.openstack_failures
            .get_or_create(&FailureLabels { service, reason })
            .inc();
    }

    /// A Kubernetes request took `seconds`.
    pub fn kubernetes_request(&self, verb: &'static str, resource: &'static str, seconds: f64) {
        self.kubernetes
            .get_or_create(&KubernetesLabels { verb, resource })
            .observe(seconds);
    }

    /// The OpenMetrics text exposition, ending with `# EOF`.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return "# EOF\n".to_owned();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value`, every family has a `# TYPE`, the text ends
    /// with `# EOF`.
    fn assert_openmetrics(text: &str) {
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let family = name.split('{').next().unwrap();
            let base = family
                .trim_end_matches("_total")
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "no TYPE for {family}:\n{text}"
            );
        }
    }

    #[test]
    fn every_metric_is_exposed_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.remediation(RemediationOutcome::Done, Detection::Cloud);
        metrics.action("release_volume", ActionOutcome::Done);
        metrics.action("release_volume", ActionOutcome::Done);
        metrics.action("force_delete_pod", ActionOutcome::Stopped);
        metrics.fence_verdict(VerdictLabel::NotFenced);
        metrics.set_nodes_not_ready(3);
        metrics.set_storm_guard(true);
        metrics.set_leader(true);
        metrics.openstack_failure("nova", "unauthorized");
        metrics.openstack_request("nova", "GET /servers/{id}", 0.02);
        metrics.kubernetes_request("list", "pods", 0.3);
        let text = metrics.encode();
        assert_openmetrics(&text);
        for line in [
            "cinder_remediator_remediations_total{outcome=\"done\",source=\"cloud\"} 1",
            "cinder_remediator_actions_total{action=\"release_volume\",outcome=\"done\"} 2",
            "cinder_remediator_actions_total{action=\"force_delete_pod\",outcome=\"stopped\"} 1",
            "cinder_remediator_fence_verdicts_total{verdict=\"not_fenced\"} 1",
            "cinder_remediator_nodes_not_ready 3",
            "cinder_remediator_storm_guard_active 1",
            "cinder_remediator_is_leader 1",
            "cinder_remediator_openstack_request_failures_total{service=\"nova\",reason=\"unauthorized\"} 1",
            "cinder_remediator_openstack_request_duration_seconds_count{service=\"nova\",operation=\"GET /servers/{id}\"} 1",
            "cinder_remediator_kubernetes_request_duration_seconds_count{verb=\"list\",resource=\"pods\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(
            text.lines().any(|l| l
                == "cinder_remediator_remediations_total{outcome=\"failed\",source=\"node\"} 0"),
            "{text}"
        );
        metrics.set_storm_guard(false);
        assert!(
            metrics
                .encode()
                .contains("cinder_remediator_storm_guard_active 0")
        );
    }
}
