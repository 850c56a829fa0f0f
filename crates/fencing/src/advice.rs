//! What will hurt at the next node failure or update, though nothing is stuck now (seed 001):
//! [`advise`] turns an [`Observation`] into [`Advice`], each with the fix an operator applies.
//!
//! Pure, total and deterministic like the planner: no I/O, sorted output, doubtful input (a claim
//! not bound, a PV not read, access modes not shown) gives no advice rather than a wrong one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::model::{ClaimName, Driver, Namespace, Observation, OwnerRef, PodName, PvName, PvView};
use crate::plan::Policy;

/// The access modes that let one node at a time use a volume.
const EXCLUSIVE_MODES: [&str; 2] = ["ReadWriteOnce", "ReadWriteOncePod"];

/// Something to change before the next failure or update; no action follows from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Advice {
    /// A Deployment updated by `RollingUpdate` whose pods use a volume one node at a time: the
    /// new pod starts before the old one is gone and waits on Multi-Attach, at every update and
    /// after every node failure.
    RollingUpdateOnExclusiveVolume {
        /// Namespace.
        namespace: Namespace,
        /// The Deployment.
        deployment: String,
        /// `spec.replicas`.
        replicas: u32,
        /// Its claims bound to such volumes.
        claims: Vec<ClaimName>,
        /// The drivers of those volumes.
        drivers: Vec<Driver>,
    },
    /// A pod that uses managed volumes and that no controller owns: once force-deleted after a
    /// node failure, nothing recreates it.
    UncontrolledPod {
        /// Namespace.
        namespace: Namespace,
        /// The pod.
        pod: PodName,
        /// Its claims bound to managed volumes.
        claims: Vec<ClaimName>,
        /// Its owner reference when it has one that is not its controller.
        owner: Option<String>,
    },
    /// The Deployments could not be read, so the first check was not made.
    DeploymentsUnread {
        /// What the API server answered.
        why: String,
    },
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RollingUpdateOnExclusiveVolume {
                namespace,
                deployment,
                replicas,
                claims,
                drivers,
            } => write!(
                f,
                "Deployment {namespace}/{deployment} ({replicas} replica(s)) updates by \
                 RollingUpdate and claim(s) {} are ReadWriteOnce volumes of {}: its new pod \
                 waits on Multi-Attach at every update and after every node failure; use \
                 strategy Recreate: kubectl patch deployment -n {namespace} {deployment} -p \
                 '{{\"spec\":{{\"strategy\":{{\"type\":\"Recreate\",\"rollingUpdate\":null}}}}}}'",
                join(claims),
                join(drivers),
            ),
            Self::UncontrolledPod {
                namespace,
                pod,
                claims,
                owner,
            } => {
                let owned = match owner {
                    Some(owner) => format!("its owner {owner} is not its controller"),
                    None => "no controller owns it".to_owned(),
                };
                write!(
                    f,
                    "pod {namespace}/{pod} uses managed volume(s) through claim(s) {} and {owned}: \
                     after a force-delete on a failed node nothing recreates it; run it under a \
                     StatefulSet (or a Deployment with strategy Recreate)",
                    join(claims),
                )
            }
            Self::DeploymentsUnread { why } => write!(
                f,
                "Deployments not checked for RollingUpdate on ReadWriteOnce volumes: {why}; grant \
                 `list` on `deployments` in API group `apps` (manifests/base/clusterrole.yaml)"
            ),
        }
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The advice for one observation, sorted.
#[must_use]
pub fn advise(observation: &Observation, policy: &Policy) -> Vec<Advice> {
    let pvs: BTreeMap<&PvName, &PvView> = observation
        .persistent_volumes
        .iter()
        .map(|pv| (&pv.name, pv))
        .collect();
    let bound: BTreeMap<(&Namespace, &ClaimName), &PvView> = observation
        .claims
        .iter()
        .filter_map(|claim| {
            let pv = pvs.get(claim.volume.as_ref()?)?;
            Some(((&claim.namespace, &claim.name), *pv))
        })
        .collect();
    let managed = |namespace: &Namespace, claim: &ClaimName| -> Option<&PvView> {
        bound.get(&(namespace, claim)).copied().filter(|pv| {
            policy.managed_drivers.contains(&pv.driver) && pv.driver.backend().is_some()
        })
    };

    let mut advice = Vec::new();
    for deployment in observation.deployments.iter().filter(|d| d.rolling_update) {
        let exclusive: Vec<(&ClaimName, &PvView)> = unique(&deployment.claims)
            .into_iter()
            .filter_map(|claim| Some((claim, managed(&deployment.namespace, claim)?)))
            .filter(|(_, pv)| is_exclusive(&pv.access_modes))
            .collect();
        if exclusive.is_empty() {
            continue;
        }
        let drivers: BTreeSet<&Driver> = exclusive.iter().map(|(_, pv)| &pv.driver).collect();
        advice.push(Advice::RollingUpdateOnExclusiveVolume {
            namespace: deployment.namespace.clone(),
            deployment: deployment.name.clone(),
            replicas: deployment.replicas,
            claims: exclusive
                .iter()
                .map(|(claim, _)| (*claim).clone())
                .collect(),
            drivers: drivers.into_iter().cloned().collect(),
        });
    }
    for pod in &observation.pods {
        if pod.owner.as_ref().is_some_and(|owner| owner.controller) {
            continue;
        }
        let claims: Vec<ClaimName> = unique(&pod.claims)
            .into_iter()
            .filter(|claim| managed(&pod.namespace, claim).is_some())
            .cloned()
            .collect();
        if claims.is_empty() {
            continue;
        }
        advice.push(Advice::UncontrolledPod {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            claims,
            owner: pod
                .owner
                .as_ref()
                .map(|OwnerRef { kind, name, .. }| format!("{kind}/{name}")),
        });
    }
    if let Some(why) = &observation.deployments_unread {
        advice.push(Advice::DeploymentsUnread { why: why.clone() });
    }
    advice.sort();
    advice.dedup();
    advice
}

/// The claims in name order, each once.
fn unique(claims: &[ClaimName]) -> BTreeSet<&ClaimName> {
    claims.iter().collect()
}

/// Whether the access modes let one node at a time use the volume: some, and only RWO/RWOP.
fn is_exclusive(modes: &[String]) -> bool {
    !modes.is_empty()
        && modes
            .iter()
            .all(|mode| EXCLUSIVE_MODES.contains(&mode.as_str()))
}

#[cfg(test)]
mod tests {
    use super::{Advice, advise};
    use crate::model::{
        ClaimName, ClaimRef, ClaimView, DeploymentView, Driver, Namespace, Observation, OwnerRef,
        PodName, PodUid, PodView, PvName, PvView, VolumeId,
    };
    use crate::plan::Policy;

    const NS: &str = "default";

    fn pv(name: &str, driver: Driver, modes: &[&str], claim: &str) -> PvView {
        PvView {
            name: PvName::new(name),
            driver,
            volume_id: VolumeId::new(format!("vol-{name}")),
            claim: Some(ClaimRef {
                namespace: Namespace::new(NS),
                name: ClaimName::new(claim),
            }),
            access_modes: modes.iter().map(|m| (*m).to_owned()).collect(),
            backend: None,
        }
    }

    fn claim(name: &str, pv: Option<&str>) -> ClaimView {
        ClaimView {
            namespace: Namespace::new(NS),
            name: ClaimName::new(name),
            volume: pv.map(PvName::new),
        }
    }

    fn deployment(
        name: &str,
        replicas: u32,
        rolling_update: bool,
        claims: &[&str],
    ) -> DeploymentView {
        DeploymentView {
            namespace: Namespace::new(NS),
            name: name.to_owned(),
            replicas,
            rolling_update,
            claims: claims.iter().map(|c| ClaimName::new(*c)).collect(),
        }
    }

    fn pod(name: &str, owner: Option<(&str, bool)>, claims: &[&str]) -> PodView {
        PodView {
            namespace: Namespace::new(NS),
            name: PodName::new(name),
            uid: PodUid::new(format!("uid-{name}")),
            node: Some("node-a".into()),
            phase: "Running".to_owned(),
            deleting: false,
            claims: claims.iter().map(|c| ClaimName::new(*c)).collect(),
            owner: owner.map(|(kind, controller)| OwnerRef {
                kind: kind.to_owned(),
                name: format!("{name}-owner"),
                controller,
            }),
            waiting_reason: None,
            attach_failures: Vec::new(),
            keep: false,
            piraeus_remove: false,
        }
    }

    /// Claims: `rwo` (Cinder CSI, RWO), `rwop` (in-tree Cinder, RWOP), `rwx` (Cinder CSI, RWX),
    /// `mixed` (Cinder CSI, RWO and ROX), `nfs` (another driver, RWO), `nomodes` (Cinder CSI,
    /// no access modes shown), `unbound` (no PV), `dangling` (bound to a PV not listed).
    fn observation(deployments: Vec<DeploymentView>, pods: Vec<PodView>) -> Observation {
        let cinder = Driver::CinderCsi;
        Observation {
            now: jiff::Timestamp::UNIX_EPOCH,
            nodes: Vec::new(),
            persistent_volumes: vec![
                pv("pv-rwo", cinder.clone(), &["ReadWriteOnce"], "rwo"),
                pv(
                    "pv-rwop",
                    Driver::InTreeCinder,
                    &["ReadWriteOncePod"],
                    "rwop",
                ),
                pv("pv-rwx", cinder.clone(), &["ReadWriteMany"], "rwx"),
                pv(
                    "pv-mixed",
                    cinder.clone(),
                    &["ReadWriteOnce", "ReadOnlyMany"],
                    "mixed",
                ),
                pv(
                    "pv-nfs",
                    Driver::Other("nfs.csi.k8s.io".to_owned()),
                    &["ReadWriteOnce"],
                    "nfs",
                ),
                pv("pv-nomodes", cinder, &[], "nomodes"),
            ],
            claims: vec![
                claim("rwo", Some("pv-rwo")),
                claim("rwop", Some("pv-rwop")),
                claim("rwx", Some("pv-rwx")),
                claim("mixed", Some("pv-mixed")),
                claim("nfs", Some("pv-nfs")),
                claim("nomodes", Some("pv-nomodes")),
                claim("unbound", None),
                claim("dangling", Some("pv-gone")),
            ],
            pods,
            volume_attachments: Vec::new(),
            gone_servers: Vec::new(),
            region: None,
            deployments,
            deployments_unread: None,
        }
    }

    /// The Deployments advised to use Recreate, with their claims.
    fn rolling(observation: &Observation, policy: &Policy) -> Vec<(String, u32, Vec<String>)> {
        advise(observation, policy)
            .into_iter()
            .filter_map(|advice| match advice {
                Advice::RollingUpdateOnExclusiveVolume {
                    deployment,
                    replicas,
                    claims,
                    ..
                } => Some((
                    deployment,
                    replicas,
                    claims.iter().map(ToString::to_string).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rolling_update_on_an_exclusive_managed_volume_is_advised_recreate() {
        // (rolling_update, replicas, claims, advised claims)
        let rows: &[(bool, u32, &[&str], &[&str])] = &[
            (true, 1, &["rwo"], &["rwo"]),
            (true, 3, &["rwo"], &["rwo"]),
            (true, 0, &["rwo"], &["rwo"]),
            (true, 1, &["rwop"], &["rwop"]),
            (true, 1, &["rwx", "rwo", "rwo"], &["rwo"]),
            (false, 1, &["rwo"], &[]),
            (true, 1, &["rwx"], &[]),
            (true, 1, &["mixed"], &[]),
            (true, 1, &["nfs"], &[]),
            (true, 1, &["nomodes"], &[]),
            (true, 1, &["unbound"], &[]),
            (true, 1, &["dangling"], &[]),
            (true, 1, &["undeclared"], &[]),
            (true, 1, &[], &[]),
        ];
        for &(rolling_update, replicas, claims, advised) in rows {
            let observation = observation(
                vec![deployment("web", replicas, rolling_update, claims)],
                Vec::new(),
            );
            let got = rolling(&observation, &Policy::default());
            let want: Vec<(String, u32, Vec<String>)> = if advised.is_empty() {
                Vec::new()
            } else {
                vec![(
                    "web".to_owned(),
                    replicas,
                    advised.iter().map(|c| (*c).to_owned()).collect(),
                )]
            };
            assert_eq!(
                got, want,
                "rolling_update {rolling_update}, replicas {replicas}, claims {claims:?}"
            );
        }
    }

    #[test]
    fn only_the_policys_managed_drivers_count() {
        let observation = observation(
            vec![deployment("web", 1, true, &["rwo"])],
            vec![pod("bare", None, &["rwo"])],
        );
        let policy = Policy {
            managed_drivers: [Driver::Linstor].into_iter().collect(),
            ..Policy::default()
        };
        assert_eq!(advise(&observation, &policy), []);
    }

    #[test]
    fn a_pod_no_controller_owns_is_advised_a_controller() {
        // (owner, claims, advised claims)
        type Row<'a> = (Option<(&'a str, bool)>, &'a [&'a str], &'a [&'a str]);
        let rows: &[Row<'_>] = &[
            (None, &["rwo"], &["rwo"]),
            (None, &["rwx"], &["rwx"]),
            (None, &["rwo", "nfs", "unbound"], &["rwo"]),
            (Some(("ReplicaSet", false)), &["rwo"], &["rwo"]),
            (Some(("ReplicaSet", true)), &["rwo"], &[]),
            (Some(("StatefulSet", true)), &["rwx"], &[]),
            (None, &["nfs"], &[]),
            (None, &["unbound", "dangling"], &[]),
            (None, &[], &[]),
        ];
        for &(owner, claims, advised) in rows {
            let observation = observation(Vec::new(), vec![pod("db", owner, claims)]);
            let got: Vec<Vec<String>> = advise(&observation, &Policy::default())
                .into_iter()
                .filter_map(|advice| match advice {
                    Advice::UncontrolledPod { claims, .. } => {
                        Some(claims.iter().map(ToString::to_string).collect())
                    }
                    _ => None,
                })
                .collect();
            let want: Vec<Vec<String>> = if advised.is_empty() {
                Vec::new()
            } else {
                vec![advised.iter().map(|c| (*c).to_owned()).collect()]
            };
            assert_eq!(got, want, "owner {owner:?}, claims {claims:?}");
        }
    }

    #[test]
    fn advice_is_sorted_and_independent_of_input_order() {
        let deployments = vec![
            deployment("web-b", 2, true, &["rwo"]),
            deployment("web-a", 1, true, &["rwop"]),
        ];
        let pods = vec![pod("z", None, &["rwo"]), pod("a", None, &["rwx"])];
        let mut forward = observation(deployments.clone(), pods.clone());
        forward.deployments_unread = Some("403 Forbidden".to_owned());
        let mut backward = observation(
            deployments.into_iter().rev().collect(),
            pods.into_iter().rev().collect(),
        );
        backward.deployments_unread = forward.deployments_unread.clone();
        let advice = advise(&forward, &Policy::default());
        assert_eq!(advice, advise(&backward, &Policy::default()));
        let lines: Vec<String> = advice.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("Deployment default/web-a (1 replica(s))"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("Deployment default/web-b (2 replica(s))"),
            "{lines:#?}"
        );
        assert!(lines[2].starts_with("pod default/a "), "{lines:#?}");
        assert!(lines[3].starts_with("pod default/z "), "{lines:#?}");
        assert!(lines[4].contains("403 Forbidden"), "{lines:#?}");
    }

    #[test]
    fn each_advice_is_one_line_with_its_fix() {
        let observation = observation(
            vec![deployment("web", 1, true, &["rwo"])],
            vec![pod("db", Some(("Job", false)), &["rwo"])],
        );
        let lines: Vec<String> = advise(&observation, &Policy::default())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "Deployment default/web (1 replica(s)) updates by RollingUpdate and claim(s) rwo \
                 are ReadWriteOnce volumes of cinder.csi.openstack.org: its new pod waits on \
                 Multi-Attach at every update and after every node failure; use strategy \
                 Recreate: kubectl patch deployment -n default web -p \
                 '{\"spec\":{\"strategy\":{\"type\":\"Recreate\",\"rollingUpdate\":null}}}'",
                "pod default/db uses managed volume(s) through claim(s) rwo and its owner \
                 Job/db-owner is not its controller: after a force-delete on a failed node \
                 nothing recreates it; run it under a StatefulSet (or a Deployment with strategy \
                 Recreate)",
            ]
        );
        let json = serde_json::to_value(advise(&observation, &Policy::default())).unwrap();
        assert_eq!(json[0]["kind"], "rolling_update_on_exclusive_volume");
        assert_eq!(json[0]["drivers"][0], "cinder.csi.openstack.org");
        assert_eq!(json[1]["kind"], "uncontrolled_pod");
    }

    #[test]
    fn observations_without_deployments_still_parse() {
        let observation = observation(Vec::new(), Vec::new());
        let json = serde_json::to_value(&observation).unwrap();
        assert!(json.get("deployments").is_none(), "{json}");
        assert!(json.get("deployments_unread").is_none(), "{json}");
        let parsed: Observation = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, observation);
    }
}
