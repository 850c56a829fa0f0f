//! Validated settings from the command line: the remediation policy and the Kubernetes
//! connection (the OpenStack connection is [`crate::openstack::config`]). The command line is
//! checked for syntax by clap; here it is checked for meaning, and every problem is a one-line
//! usage error (exit code 2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use fencing::plan::{DeadHost, FenceMode, Policy, Strategy, Threshold};

/// A setting that makes no sense: printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses a storm-guard threshold: `40%` (a share of all nodes) or `3` (a node count).
///
/// # Errors
/// Anything else, with what to write instead.
pub fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let text = text.trim();
    let wrong = || format!("{text:?} is neither a share like 40% nor a node count like 3");
    if let Some(percent) = text.strip_suffix('%') {
        let percent: u8 = percent.trim().parse().map_err(|_| wrong())?;
        if percent > 100 {
            return Err(format!("{text:?}: a share is at most 100%"));
        }
        Ok(Threshold {
            percent,
            count: None,
        })
    } else {
        let count: usize = text.parse().map_err(|_| wrong())?;
        Ok(Threshold {
            percent: 100,
            count: Some(count),
        })
    }
}

/// Policy settings as given: every one optional, so that a lower layer (a scenario's
/// `remediator:` block, for `demo`) or the default can fill the gaps.
#[derive(Debug, Clone, Default)]
pub struct PolicyFlags {
    /// `--grace`.
    pub grace: Option<Duration>,
    /// `--strategy`.
    pub strategy: Option<Strategy>,
    /// `--max-unhealthy`.
    pub max_unhealthy: Option<String>,
    /// Whether to kick waiting pods (`--no-kick` gives `Some(false)`).
    pub kick: Option<bool>,
    /// `--fence`.
    pub fence: Option<FenceMode>,
    /// `--trust-forced-down` (given: `Some(true)`).
    pub trust_forced_down: Option<bool>,
    /// `--dead-host`.
    pub dead_host: Option<DeadHost>,
    /// `--evacuate-wait`.
    pub evacuate_wait: Option<Duration>,
    /// `--only-labelled-pods` (given: `Some(true)`).
    pub only_labelled_pods: Option<bool>,
}

/// Parses a dead-host action as flags and scenario files spell it.
///
/// # Errors
/// Anything but `report`, `delete-server` or `evacuate`.
pub fn parse_dead_host(text: &str) -> Result<DeadHost, String> {
    match text {
        "report" => Ok(DeadHost::Report),
        "delete-server" => Ok(DeadHost::DeleteServer),
        "evacuate" => Ok(DeadHost::Evacuate),
        _ => Err("expected `report`, `delete-server` or `evacuate`".to_owned()),
    }
}

/// Parses a Kubernetes-side strategy as flags and scenario files spell it.
///
/// # Errors
/// Anything but `delete` or `out-of-service-taint`.
pub fn parse_strategy(text: &str) -> Result<Strategy, String> {
    match text {
        "delete" => Ok(Strategy::Delete),
        "out-of-service-taint" => Ok(Strategy::OutOfServiceTaint),
        _ => Err("expected `delete` or `out-of-service-taint`".to_owned()),
    }
}

/// Parses a fence mode as flags and scenario files spell it.
///
/// # Errors
/// Anything but `observe` or `stop`.
pub fn parse_fence(text: &str) -> Result<FenceMode, String> {
    match text {
        "observe" => Ok(FenceMode::Observe),
        "stop" => Ok(FenceMode::Stop),
        _ => Err("expected `observe` or `stop`".to_owned()),
    }
}

/// The policy the flags ask for, over the scenario's settings (for `demo`), over the defaults.
///
/// # Errors
/// A malformed `--max-unhealthy`, naming where it came from.
pub fn policy(flags: &PolicyFlags, scenario: Option<&PolicyFlags>) -> Result<Policy, UsageError> {
    let defaults = Policy::default();
    let from_scenario = scenario.cloned().unwrap_or_default();
    let max_unhealthy = match (&flags.max_unhealthy, &from_scenario.max_unhealthy) {
        (Some(text), _) => {
            parse_threshold(text).map_err(|err| UsageError(format!("--max-unhealthy: {err}")))?
        }
        (None, Some(text)) => parse_threshold(text)
            .map_err(|err| UsageError(format!("scenario remediator.max_unhealthy: {err}")))?,
        (None, None) => defaults.max_unhealthy,
    };
    Ok(Policy {
        grace: flags
            .grace
            .or(from_scenario.grace)
            .unwrap_or(defaults.grace),
        strategy: flags
            .strategy
            .or(from_scenario.strategy)
            .unwrap_or(defaults.strategy),
        max_unhealthy,
        kick: flags.kick.or(from_scenario.kick).unwrap_or(defaults.kick),
        fence: flags
            .fence
            .or(from_scenario.fence)
            .unwrap_or(defaults.fence),
        trust_forced_down: flags
            .trust_forced_down
            .or(from_scenario.trust_forced_down)
            .unwrap_or(defaults.trust_forced_down),
        dead_host: flags
            .dead_host
            .or(from_scenario.dead_host)
            .unwrap_or(defaults.dead_host),
        evacuate_wait: flags
            .evacuate_wait
            .or(from_scenario.evacuate_wait)
            .unwrap_or(defaults.evacuate_wait),
        only_labelled_pods: flags
            .only_labelled_pods
            .or(from_scenario.only_labelled_pods)
            .unwrap_or(defaults.only_labelled_pods),
        managed_drivers: defaults.managed_drivers,
    })
}

/// A Kubernetes client from `--kubeconfig`/`KUBECONFIG` and `--context`, else the in-cluster
/// service account or `~/.kube/config`.
///
/// # Errors
/// A kubeconfig that cannot be read or used, naming the file and what to do.
pub async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, UsageError> {
    let config = match kubeconfig {
        Some(path) => {
            // Read here, not by kube, whose error quotes the path a second time.
            let unusable = |why: String| {
                UsageError(format!(
                    "kubeconfig {}: {why}; check the file or pass another with --kubeconfig",
                    path.display()
                ))
            };
            let text = std::fs::read_to_string(path).map_err(|err| unusable(err.to_string()))?;
            let file = Kubeconfig::from_yaml(&text).map_err(|err| unusable(first_lines(&err)))?;
            let options = KubeConfigOptions {
                context: context.map(str::to_owned),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|err| {
                    UsageError(format!(
                        "kubeconfig {}: {}; check --context and the file",
                        path.display(),
                        one_line(&err)
                    ))
                })?
        }
        None => {
            let options = KubeConfigOptions {
                context: context.map(str::to_owned),
                ..KubeConfigOptions::default()
            };
            match kube::Config::incluster() {
                Ok(config) if context.is_none() => config,
                _ => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|err| {
                        UsageError(format!(
                            "no Kubernetes configuration: {}; run in a pod, or pass --kubeconfig \
                         (or set KUBECONFIG)",
                            one_line(&err)
                        ))
                    })?,
            }
        }
    };
    // kube's default retry of 429/503/504 backs off up to 15 times, growing to 1000 s: an API
    // server that answers 503 would hold a one-shot command for many minutes. Fail at once
    // instead (exit 1); the operator, or the controller's own backoff, tries again.
    let mut config = config;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|err| {
        UsageError(format!(
            "cannot build a Kubernetes client: {}",
            one_line(&err)
        ))
    })
}

/// An error and its causes on one line.
#[must_use]
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// An error and its causes on one line, each cut at its first line break. A YAML parser's
/// message goes on with a snippet of the file around the error, which can quote a token or a
/// key from a kubeconfig (S9); its first line names the line and column, which is enough.
#[must_use]
pub fn first_lines(err: &dyn std::error::Error) -> String {
    let first = |text: String| {
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    };
    let mut text = first(err.to_string());
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = first(cause.to_string());
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Where the OpenStack settings come from, as the flags say.
#[derive(Debug, Clone, Default)]
pub struct OpenStackFlags {
    /// `--cloud-config`: the cloud provider's cloud.conf.
    pub cloud_config: Option<PathBuf>,
    /// `--os-cloud`/`OS_CLOUD`: a clouds.yaml entry.
    pub os_cloud: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{PolicyFlags, parse_threshold, policy};
    use fencing::plan::Strategy;
    use std::time::Duration;

    #[test]
    fn thresholds_are_a_share_or_a_count() {
        assert_eq!(parse_threshold("40%").unwrap().percent, 40);
        assert_eq!(parse_threshold("3").unwrap().count, Some(3));
        assert!(parse_threshold("140%").is_err());
        assert!(parse_threshold("many").unwrap_err().contains("\"many\""));
    }

    #[test]
    fn flags_override_the_scenario_which_overrides_the_defaults() {
        let scenario = PolicyFlags {
            grace: Some(Duration::from_secs(5)),
            strategy: Some(Strategy::OutOfServiceTaint),
            kick: Some(false),
            ..PolicyFlags::default()
        };
        let flags = PolicyFlags {
            grace: Some(Duration::from_secs(1)),
            ..PolicyFlags::default()
        };
        let merged = policy(&flags, Some(&scenario)).unwrap();
        assert_eq!(merged.grace, Duration::from_secs(1));
        assert_eq!(merged.strategy, Strategy::OutOfServiceTaint);
        assert!(
            !merged.kick,
            "the scenario's kick: false holds when no flag says otherwise"
        );
        assert_eq!(
            policy(&PolicyFlags::default(), None).unwrap().grace,
            Duration::from_secs(30)
        );
        let bad = PolicyFlags {
            max_unhealthy: Some("lots".into()),
            ..PolicyFlags::default()
        };
        assert!(
            policy(&bad, None)
                .unwrap_err()
                .0
                .starts_with("--max-unhealthy: ")
        );
    }
}
