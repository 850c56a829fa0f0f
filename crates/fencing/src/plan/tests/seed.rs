//! The seed story end to end, the two strategies, kicks, recovery and stop fencing.

use super::apply::apply;
use super::builder::*;
use super::{commands, plan_default, releases, skip_of};
use crate::model::{NodeName, OwnerRef, Progress, Readiness, Taint, VolumeId};
use crate::plan::{
    Action, FenceMode, Policy, Reason, ReleaseVia, Skip, Strategy, action::OUT_OF_SERVICE_TAINT,
    plan,
};

#[test]
fn seed_story_plan_is_the_operators_manual_fix() {
    let observation = ObservationBuilder::seed().build();
    let plan = plan_default(&observation);

    assert_eq!(
        commands(&plan),
        [
            format!("openstack server remove volume {SERVER4} {VOLUME}"),
            format!("kubectl delete volumeattachment {VA}"),
            format!("kubectl delete pod -n default {OLD_POD} --grace-period=0 --force"),
            format!("kubectl delete pod -n default {NEW_POD}"),
        ]
    );
    let node4 = Some(NodeName::new(NODE4));
    assert!(plan.steps.iter().all(|s| s.node == node4));
    let Action::ReleaseVolume {
        via, attachment_id, ..
    } = &plan.steps[0].action
    else {
        panic!("first step is not a release: {:?}", plan.steps[0]);
    };
    assert_eq!(*via, ReleaseVia::Nova);
    assert_eq!(
        attachment_id.as_ref().map(|a| a.as_str()),
        Some("att-9454752c-f0e2-4447-9b7f-16434c49f7ac")
    );
    assert_eq!(plan.steps[0].reason, Reason::ServerStopped);
    assert_eq!(
        plan.steps[0].detail,
        format!("server {SERVER4} is SHUTOFF (power state 4 SHUTDOWN, no task)")
    );
    assert!(plan.steps[0].after.is_empty());
    // Every Kubernetes-side step waits for the verified release.
    for step in &plan.steps[1..] {
        assert_eq!(step.after, [VolumeId::new(VOLUME)], "{step}");
    }
    assert_eq!(plan.steps[3].reason, Reason::ReplacementWaiting);
    assert!(plan.skipped.is_empty() && plan.held.is_empty() && plan.orphans.is_empty());
    assert!(plan.warnings.is_empty() && plan.storm.is_none());
}

#[test]
fn seed_story_dry_run_text_and_json() {
    let plan = plan_default(&ObservationBuilder::seed().build());
    let text = plan.to_string();
    assert!(
        text.starts_with("plan at 2026-03-01T12:00:00Z: 4 action(s)\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "  1. release volume {VOLUME} ({PV}) from server {SERVER4} via Nova  [ServerStopped: server {SERVER4} is SHUTOFF"
    )));
    assert!(text.contains(&format!(
        "     $ openstack server remove volume {SERVER4} {VOLUME}\n"
    )));

    let json = serde_json::to_value(&plan).unwrap();
    let first = &json["steps"][0];
    assert_eq!(first["action"]["kind"], "release_volume");
    assert_eq!(first["action"]["via"], "nova");
    assert_eq!(first["action"]["volume"], VOLUME);
    assert_eq!(first["reason"], "ServerStopped");
    assert_eq!(json["steps"][2]["action"]["kind"], "force_delete_pod");
    assert_eq!(json["steps"][2]["action"]["uid"], format!("uid-{OLD_POD}"));
}

#[test]
fn seed_story_applied_then_replanned_is_empty() {
    let observation = ObservationBuilder::seed().build();
    for strategy in [Strategy::Delete, Strategy::OutOfServiceTaint] {
        let policy = Policy {
            strategy,
            ..Policy::default()
        };
        let first = plan(&observation, &policy);
        assert!(!first.is_empty());
        let second = plan(&apply(&observation, &first), &policy);
        assert!(second.is_empty(), "{strategy:?}: {second}");
        assert_eq!(skip_of(&second, NODE4), Some(&Skip::NothingStuck));
    }
}

#[test]
fn out_of_service_taint_strategy_taints_instead_of_deleting_attachments() {
    // Kubernetes detaches for a node with the taint once its pods are gone; the remediator
    // force-deletes them itself rather than wait for pod GC's next pass.
    let policy = Policy {
        strategy: Strategy::OutOfServiceTaint,
        ..Policy::default()
    };
    let plan = plan(&ObservationBuilder::seed().build(), &policy);
    assert_eq!(
        commands(&plan),
        [
            format!("openstack server remove volume {SERVER4} {VOLUME}"),
            format!(
                "kubectl taint nodes {NODE4} node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
            ),
            format!("kubectl delete pod -n default {OLD_POD} --grace-period=0 --force"),
            format!("kubectl delete pod -n default {NEW_POD}"),
        ]
    );
    assert_eq!(plan.steps[1].after, [VolumeId::new(VOLUME)]);
    assert_eq!(plan.steps[2].after, [VolumeId::new(VOLUME)]);
}

#[test]
fn out_of_service_taint_is_not_added_twice() {
    let policy = Policy {
        strategy: Strategy::OutOfServiceTaint,
        ..Policy::default()
    };
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| n.taints.push(Taint::out_of_service()))
        .build();
    let plan = plan(&observation, &policy);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::TaintNode { .. }))
    );
    assert_eq!(releases(&plan).len(), 1);
}

#[test]
fn out_of_service_taint_spec_matches_its_parts() {
    assert_eq!(
        OUT_OF_SERVICE_TAINT,
        format!(
            "{}={}:{}",
            crate::model::OUT_OF_SERVICE_TAINT_KEY,
            crate::model::OUT_OF_SERVICE_TAINT_VALUE,
            crate::model::OUT_OF_SERVICE_TAINT_EFFECT
        )
    );
}

fn kicks(plan: &crate::plan::Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::KickPod { name, .. } => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn kick_only_controller_owned_waiting_pods_on_ready_nodes() {
    type Change = fn(ObservationBuilder) -> ObservationBuilder;
    let rows: [(&str, Change, bool); 8] = [
        (
            "seed: owned, pending, Multi-Attach on the volume",
            |b| b,
            true,
        ),
        ("no owner", |b| b.pod(NEW_POD, |p| p.owner = None), false),
        (
            "owner is not a controller",
            |b| {
                b.pod(NEW_POD, |p| {
                    p.owner = Some(OwnerRef {
                        kind: "ReplicaSet".to_owned(),
                        name: "x".to_owned(),
                        controller: false,
                    });
                })
            },
            false,
        ),
        (
            "waits on another volume",
            |b| {
                b.pod(NEW_POD, |p| {
                    p.attach_failures = vec!["other-volume".to_owned()]
                })
            },
            false,
        ),
        (
            "already running (stale events)",
            |b| b.pod(NEW_POD, |p| "Running".clone_into(&mut p.phase)),
            false,
        ),
        (
            "already being deleted",
            |b| b.pod(NEW_POD, |p| p.deleting = true),
            false,
        ),
        (
            "its node is not Ready",
            |b| b.ready_nodes(3).node(NODE3, |n| n.ready = Readiness::False),
            false,
        ),
        (
            "failure names the volume id only",
            |b| b.pod(NEW_POD, |p| p.attach_failures = vec![VOLUME.to_owned()]),
            true,
        ),
    ];
    for (label, change, kicked) in rows {
        let plan = plan_default(&change(ObservationBuilder::seed()).build());
        let expected: Vec<String> = if kicked {
            vec![NEW_POD.to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(kicks(&plan), expected, "{label}");
        assert_eq!(
            releases(&plan).len(),
            1,
            "{label}: the release itself still happens"
        );
    }
}

#[test]
fn no_kick_policy_kicks_nothing() {
    let policy = Policy {
        kick: false,
        ..Policy::default()
    };
    let plan = plan(&ObservationBuilder::seed().build(), &policy);
    assert!(kicks(&plan).is_empty());
    assert_eq!(commands(&plan).len(), 3);
}

#[test]
fn recovery_removes_only_our_taint_and_clears_progress() {
    let recovered = |progress: Option<Progress>, tainted: bool| {
        ObservationBuilder::seed()
            .node(NODE4, |n| {
                n.ready = Readiness::True;
                n.progress = progress;
                if tainted {
                    n.taints.push(Taint::out_of_service());
                }
            })
            .build()
    };
    let plan_ours = plan_default(&recovered(Some(ours()), true));
    assert_eq!(
        commands(&plan_ours),
        [
            format!("kubectl taint nodes {NODE4} {OUT_OF_SERVICE_TAINT}-"),
            format!("kubectl annotate node {NODE4} cinder-remediator.io/progress-"),
        ]
    );
    assert!(
        plan_ours
            .steps
            .iter()
            .all(|s| s.reason == Reason::NodeRecovered)
    );
    let again = plan_default(&apply(&recovered(Some(ours()), true), &plan_ours));
    assert!(again.is_empty(), "{again}");

    // A taint someone else added is never removed.
    let theirs = plan_default(&recovered(None, true));
    assert!(theirs.is_empty(), "{theirs}");
    let not_ours = plan_default(&recovered(Some(Progress::default()), true));
    assert_eq!(
        commands(&not_ours),
        [format!(
            "kubectl annotate node {NODE4} cinder-remediator.io/progress-"
        )]
    );
}

/// A progress record saying the remediator added the out-of-service taint.
fn ours() -> Progress {
    Progress {
        released: Vec::new(),
        out_of_service_taint: true,
        host_action: None,
    }
}

#[test]
fn stop_fencing_stops_first_and_releases_next_round() {
    let policy = Policy {
        fence: FenceMode::Stop,
        ..Policy::default()
    };
    let active = ObservationBuilder::seed()
        .server(NODE4, |s| {
            "ACTIVE".clone_into(&mut s.status);
            s.power_state = Some(1);
        })
        .build();
    let first = plan(&active, &policy);
    assert_eq!(
        commands(&first),
        [format!("openstack server stop {SERVER4}")]
    );
    assert_eq!(first.steps[0].reason, Reason::StopToFence);

    // Right after os-stop: powering-off, not fenced yet, nothing to do.
    let stopping = apply(&active, &first);
    let second = plan(&stopping, &policy);
    assert!(second.is_empty(), "{second}");
    assert!(matches!(
        skip_of(&second, NODE4),
        Some(Skip::NotFenced { .. })
    ));

    // SHUTOFF read back: now the release.
    let stopped = ObservationBuilder::seed().build();
    let third = plan(&stopped, &policy);
    assert_eq!(releases(&third), [(SERVER4.to_owned(), VOLUME.to_owned())]);
}

#[test]
fn stop_fencing_is_opt_in_and_only_for_an_up_host() {
    let active = |up: bool| {
        ObservationBuilder::seed()
            .server(NODE4, |s| {
                "ACTIVE".clone_into(&mut s.status);
                s.power_state = Some(1);
                s.host_state = Some(crate::model::HostView {
                    up,
                    forced_down: false,
                });
            })
            .build()
    };
    let observe = plan_default(&active(true));
    assert!(observe.is_empty());
    assert!(matches!(
        skip_of(&observe, NODE4),
        Some(Skip::NotFenced { .. })
    ));

    let stop = Policy {
        fence: FenceMode::Stop,
        ..Policy::default()
    };
    let down = plan(&active(false), &stop);
    assert!(
        down.is_empty(),
        "no stop through a dead nova-compute: {down}"
    );
}
