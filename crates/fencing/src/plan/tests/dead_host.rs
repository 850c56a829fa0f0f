//! A fenced server on a compute host that is down: Nova refuses every detach there, so only a
//! delete or an evacuate of the server frees its volumes, with the operator's consent
//! (`trust_forced_down` and `dead_host`), for a node that names the server by providerID, with
//! nothing held, and never twice.

use super::builder::{
    DOWN, FORCED_DOWN, NEW_POD, NODE3, NODE4, ObservationBuilder, PV, SERVER4, UP, VA, VOLUME, ago,
    cinder_pv, claim,
};
use super::{commands, plan_default, skip_of};
use crate::model::{
    HostAction, HostActionKind, HostView, MatchRoute, Observation, Progress, ServerId, ServerView,
    StorageView, VolumeId,
};
use crate::plan::{Action, DeadHost, FenceMode, Policy, Reason, Skip, plan};

fn policy(dead_host: DeadHost) -> Policy {
    Policy {
        trust_forced_down: true,
        dead_host,
        ..Policy::default()
    }
}

/// The seed story with node-4's server ACTIVE (the hypervisor died under it) on `host`.
fn hypervisor_died(host: Option<HostView>) -> ObservationBuilder {
    ObservationBuilder::seed().server(NODE4, |s| {
        "ACTIVE".clone_into(&mut s.status);
        s.power_state = Some(crate::plan::fence::POWER_RUNNING);
        s.host_state = host;
    })
}

fn record(kind: HostActionKind, secs_ago: i64) -> Progress {
    Progress {
        host_action: Some(HostAction {
            kind,
            server: ServerId::new(SERVER4),
            host: Some("compute-2".to_owned()),
            at: ago(secs_ago),
            volumes: vec![VolumeId::new(VOLUME)],
        }),
        ..Progress::default()
    }
}

fn dead_host_detail(observation: &Observation, policy: &Policy) -> String {
    let plan = plan(observation, policy);
    assert!(plan.is_empty(), "{plan}");
    match skip_of(&plan, NODE4) {
        Some(Skip::DeadHost { detail }) => detail.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_shut_off_server_on_a_down_host_gets_advice_not_a_refused_detach() {
    let observation = ObservationBuilder::seed()
        .server(NODE4, |s| s.host_state = DOWN)
        .build();
    let detail = dead_host_detail(&observation, &Policy::default());
    assert!(
        detail.contains("openstack compute service set --down compute-2 nova-compute"),
        "{detail}"
    );
    assert!(
        detail.contains("--trust-forced-down --dead-host"),
        "{detail}"
    );
    // Forced down but not trusted: the same, without the marking.
    let observation = ObservationBuilder::seed()
        .server(NODE4, |s| s.host_state = FORCED_DOWN)
        .build();
    let detail = dead_host_detail(&observation, &Policy::default());
    assert!(!detail.contains("service set --down"), "{detail}");
    assert!(detail.contains("--trust-forced-down"), "{detail}");
}

#[test]
fn a_host_down_but_not_forced_is_never_acted_on_whatever_the_policy() {
    for dead_host in [DeadHost::DeleteServer, DeadHost::Evacuate] {
        let active = hypervisor_died(DOWN).build();
        let plan = plan(&active, &policy(dead_host));
        assert!(plan.is_empty(), "{plan}");
        assert!(matches!(
            skip_of(&plan, NODE4),
            Some(Skip::NotFenced { .. })
        ));
        let shut_off = ObservationBuilder::seed()
            .server(NODE4, |s| s.host_state = DOWN)
            .build();
        let detail = dead_host_detail(&shut_off, &policy(dead_host));
        assert!(detail.contains("service set --down compute-2"), "{detail}");
    }
}

#[test]
fn report_names_both_commands_and_does_nothing() {
    let observation = hypervisor_died(FORCED_DOWN).build();
    let detail = dead_host_detail(&observation, &policy(DeadHost::Report));
    assert!(
        detail.contains(&format!("openstack server delete {SERVER4}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("openstack server evacuate {SERVER4}")),
        "{detail}"
    );
    assert!(plan_default(&observation).is_empty());
}

#[test]
fn delete_server_frees_the_volumes_then_cleans_and_deletes_the_node() {
    let observation = hypervisor_died(FORCED_DOWN).build();
    let plan = plan(&observation, &policy(DeadHost::DeleteServer));
    assert_eq!(
        commands(&plan),
        [
            format!("openstack server delete {SERVER4}"),
            format!("kubectl delete volumeattachment {VA}"),
            "kubectl delete pod -n default test-cinder-56bdb546dd-56mct --grace-period=0 --force"
                .to_owned(),
            format!("kubectl delete pod -n default {NEW_POD}"),
            format!("kubectl delete node {NODE4}"),
        ]
    );
    assert!(matches!(
        &plan.steps[0].action,
        Action::DeleteServer { volumes, host: Some(host), .. }
            if *volumes == [VolumeId::new(VOLUME)] && host == "compute-2"
    ));
    assert_eq!(plan.steps[0].reason, Reason::HostForcedDown);
    for step in &plan.steps[1..] {
        assert_eq!(step.after, [VolumeId::new(VOLUME)], "{step}");
    }
}

#[test]
fn a_shut_off_server_on_a_forced_down_host_is_deleted_too() {
    let observation = ObservationBuilder::seed()
        .server(NODE4, |s| s.host_state = FORCED_DOWN)
        .build();
    let plan = plan(&observation, &policy(DeadHost::DeleteServer));
    assert_eq!(
        plan.steps[0].action.manual_command(),
        format!("openstack server delete {SERVER4}")
    );
    assert_eq!(plan.steps[0].reason, Reason::ServerStopped);
}

#[test]
fn evacuate_is_the_only_step() {
    let observation = hypervisor_died(FORCED_DOWN).build();
    let plan = plan(&observation, &policy(DeadHost::Evacuate));
    assert_eq!(
        commands(&plan),
        [format!("openstack server evacuate {SERVER4}")]
    );
}

#[test]
fn only_a_server_the_node_names_by_provider_id_is_deleted_or_evacuated() {
    for dead_host in [DeadHost::DeleteServer, DeadHost::Evacuate] {
        let observation = hypervisor_died(FORCED_DOWN)
            .node(NODE4, |n| n.provider_id = None)
            .server(NODE4, |s| s.matched_by = MatchRoute::Name)
            .build();
        let detail = dead_host_detail(&observation, &policy(dead_host));
        assert!(detail.contains("providerID"), "{detail}");
    }
}

#[test]
fn a_task_in_progress_blocks_both() {
    for dead_host in [DeadHost::DeleteServer, DeadHost::Evacuate] {
        let observation = hypervisor_died(FORCED_DOWN)
            .server(NODE4, |s| s.task_state = Some("rebuilding".to_owned()))
            .build();
        let plan = plan(&observation, &policy(dead_host));
        assert!(plan.is_empty(), "{plan}");
    }
}

#[test]
fn a_held_volume_blocks_the_server_wide_action() {
    for dead_host in [DeadHost::DeleteServer, DeadHost::Evacuate] {
        let observation = hypervisor_died(FORCED_DOWN)
            .add_pv(cinder_pv("pv-boot", "vol-boot", "boot", &[SERVER4]))
            .add_claim(claim("boot", "pv-boot"))
            .volume("pv-boot", |v| v.bootable = true)
            .build();
        let plan = plan(&observation, &policy(dead_host));
        assert!(plan.is_empty(), "{plan}");
        assert!(
            matches!(skip_of(&plan, NODE4), Some(Skip::DeadHost { detail }) if detail.contains("vol-boot")),
            "{:?}",
            plan.skipped
        );
    }
}

#[test]
fn a_request_on_record_is_never_sent_again() {
    for kind in [HostActionKind::DeleteServer, HostActionKind::Evacuate] {
        for dead_host in [DeadHost::DeleteServer, DeadHost::Evacuate] {
            let observation = hypervisor_died(FORCED_DOWN)
                .node(NODE4, |n| n.progress = Some(record(kind, 30)))
                .build();
            let plan = plan(&observation, &policy(dead_host));
            assert!(plan.is_empty(), "{kind:?} {dead_host:?}: {plan}");
            assert!(
                matches!(skip_of(&plan, NODE4), Some(Skip::HostActionRequested { detail })
                    if detail.contains("never asked twice")),
                "{:?}",
                plan.skipped
            );
        }
    }
}

#[test]
fn a_detach_a_dead_host_accepted_is_freed_by_the_delete_only() {
    // The race window: the host died while Nova still counted it up, took the detach (202)
    // and never did it; the volume stays `detaching`.
    let detaching = |host| {
        hypervisor_died(host)
            .volume(PV, |v| {
                "detaching".clone_into(&mut v.status);
                v.attachments[0].detaching = true;
            })
            .build()
    };
    let deleted = plan(&detaching(FORCED_DOWN), &policy(DeadHost::DeleteServer));
    assert!(matches!(
        deleted.steps[0].action,
        Action::DeleteServer { .. }
    ));
    let evacuated = plan(&detaching(FORCED_DOWN), &policy(DeadHost::Evacuate));
    assert!(evacuated.is_empty(), "{evacuated}");
    // Stopped on a host Nova counts up: held, never sent again.
    let observation = ObservationBuilder::seed()
        .volume(PV, |v| "detaching".clone_into(&mut v.status))
        .build();
    let held = plan_default(&observation);
    assert!(super::releases(&held).is_empty(), "{held}");
    assert_eq!(held.held.len(), 1);
}

#[test]
fn an_evacuated_node_is_waited_for_then_reported_never_stopped() {
    let evacuated = |secs_ago| {
        ObservationBuilder::seed()
            .server(NODE4, |s| {
                "ACTIVE".clone_into(&mut s.status);
                s.power_state = Some(crate::plan::fence::POWER_RUNNING);
                s.host = Some("compute-9".to_owned());
            })
            .node(NODE4, |n| {
                n.progress = Some(record(HostActionKind::Evacuate, secs_ago));
            })
            .build()
    };
    let stop = Policy {
        fence: FenceMode::Stop,
        ..policy(DeadHost::Evacuate)
    };
    let plan = plan(&evacuated(60), &stop);
    assert!(plan.is_empty(), "{plan}");
    assert!(
        matches!(skip_of(&plan, NODE4), Some(Skip::AwaitingReturn { detail })
            if detail.contains("waiting for node") && detail.contains("compute-9")),
        "{:?}",
        plan.skipped
    );
    let plan = super::super::plan(&evacuated(900), &stop);
    assert!(plan.is_empty(), "{plan}");
    assert!(
        matches!(skip_of(&plan, NODE4), Some(Skip::HostActionRequested { detail })
            if detail.contains("has not come back") && detail.contains("compute-9")),
        "{:?}",
        plan.skipped
    );
}

#[test]
fn a_server_the_remediator_deleted_takes_its_node_along() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.storage = StorageView::ServerGone {
                id: ServerId::new(SERVER4),
            };
            n.progress = Some(record(HostActionKind::DeleteServer, 30));
        })
        .volume(PV, |v| {
            v.attachments.clear();
            "available".clone_into(&mut v.status);
        })
        .build();
    let plan = plan_default(&observation);
    assert_eq!(
        commands(&plan).last().map(String::as_str),
        Some(format!("kubectl delete node {NODE4}").as_str()),
        "{plan}"
    );
    // Without the record, a gone server's Node stays (the cloud provider's call).
    let observation = Observation {
        nodes: observation
            .nodes
            .iter()
            .cloned()
            .map(|mut n| {
                n.progress = None;
                n
            })
            .collect(),
        ..observation
    };
    assert!(
        !plan_default(&observation)
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::DeleteNode { .. }))
    );
}

#[test]
fn back_after_an_evacuate_kicks_the_waiting_replacement_and_forgets() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.ready = crate::model::Readiness::True;
            n.progress = Some(record(HostActionKind::Evacuate, 120));
        })
        .build();
    let plan = plan_default(&observation);
    assert_eq!(
        commands(&plan),
        [
            format!("kubectl delete pod -n default {NEW_POD}"),
            format!("kubectl annotate node {NODE4} cinder-remediator.io/progress-"),
        ]
    );
    assert!(
        matches!(&plan.steps[0].action, Action::KickPod { node, .. } if node.as_str() == NODE3)
    );
}

#[test]
fn the_failure_kinds_are_told_apart_host_first() {
    use crate::plan::fence::{FailureKind, failure_kind};
    let server = |status: &str, power: u8, host: Option<HostView>, hidden: bool| ServerView {
        host_state: host,
        host_hidden: hidden,
        ..super::builder::server(SERVER4, NODE4, status, power)
    };
    let rows = [
        (server("SHUTOFF", 4, UP, false), FailureKind::VmDown),
        (server("ACTIVE", 6, UP, false), FailureKind::VmDown),
        (server("SHUTOFF", 4, None, false), FailureKind::VmDown),
        (server("ACTIVE", 1, UP, false), FailureKind::VmHung),
        (
            server("ACTIVE", 1, DOWN, false),
            FailureKind::HypervisorDead,
        ),
        (
            server("SHUTOFF", 4, FORCED_DOWN, false),
            FailureKind::HypervisorDead,
        ),
        (server("ACTIVE", 1, None, true), FailureKind::HostHidden),
        (server("ACTIVE", 1, None, false), FailureKind::Unclear),
        (server("ERROR", 0, UP, false), FailureKind::Unclear),
        (
            ServerView {
                task_state: Some("rebuilding".to_owned()),
                ..server("ACTIVE", 1, UP, false)
            },
            FailureKind::Unclear,
        ),
    ];
    for (server, kind) in rows {
        assert_eq!(failure_kind(&server), kind, "{server:?}");
    }
}
