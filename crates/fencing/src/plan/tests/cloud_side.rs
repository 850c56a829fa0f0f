//! Detection from the cloud side (`run --watch-cloud`): a node still Ready whose server Nova
//! reported dead is acted on once the grace has passed since the report, only while its kubelet
//! has been silent since, only for the server its providerID names, only on the server's own
//! state (never its host's), and counted by the storm guard.

use super::builder::{
    FORCED_DOWN, NODE4, ObservationBuilder, SERVER3, SERVER4, VOLUME, ago, now, ready_node, server,
};
use super::{plan_default, releases, skip_of};
use crate::model::{CloudDeath, NodeView, Observation, Readiness, ServerId};
use crate::plan::{
    DeadHost, Detection, Policy, Purpose, Skip, Threshold, dead_in_list, detection, plan, recheck,
};

/// The seed story, but node-4 still Ready (its heartbeat has not expired): Nova reported its
/// server dead `reported` seconds ago; its kubelet last renewed `renewed` seconds ago.
fn reported(reported: i64, renewed: Option<i64>) -> ObservationBuilder {
    ObservationBuilder::seed().node(NODE4, |n| {
        n.ready = Readiness::True;
        n.ready_since = ago(9 * 3600);
        n.taints.clear();
        n.cloud_death = Some(CloudDeath {
            server: ServerId::new(SERVER4),
            at: ago(reported),
        });
        n.kubelet_renewed = renewed.map(ago);
    })
}

fn node4(observation: &Observation) -> &NodeView {
    observation
        .nodes
        .iter()
        .find(|n| n.name.as_str() == NODE4)
        .unwrap()
}

#[test]
fn a_ready_node_reported_dead_past_the_grace_with_a_silent_kubelet_is_remediated() {
    let observation = reported(31, Some(35)).build();
    let node = node4(&observation);
    assert_eq!(
        detection(node, now(), Policy::default().grace),
        Ok(Detection::Cloud)
    );
    let plan = plan_default(&observation);
    assert_eq!(
        releases(&plan),
        [(SERVER4.to_owned(), VOLUME.to_owned())],
        "{plan}"
    );
}

#[test]
fn within_the_grace_of_the_report_nothing_happens() {
    let plan = plan_default(&reported(10, Some(15)).build());
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(
        skip_of(&plan, NODE4),
        Some(Skip::WithinGrace { remaining }) if remaining.as_secs() == 20
    ));
}

#[test]
fn a_kubelet_that_renewed_after_the_report_contradicts_nova() {
    let plan = plan_default(&reported(60, Some(5)).build());
    assert!(plan.is_empty(), "{plan}");
    assert!(
        matches!(skip_of(&plan, NODE4), Some(Skip::Contradiction { detail }) if detail.contains("renewed its Lease")),
        "{plan}"
    );
}

#[test]
fn an_unread_kubelet_lease_is_no_proof() {
    let plan = plan_default(&reported(60, None).build());
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(skip_of(&plan, NODE4), Some(Skip::Unknown { .. })));
}

#[test]
fn a_report_about_another_server_says_nothing_about_the_node() {
    let observation = reported(60, Some(65))
        .node(NODE4, |n| {
            n.cloud_death = Some(CloudDeath {
                server: ServerId::new(SERVER3),
                at: ago(60),
            });
        })
        .build();
    assert!(!node4(&observation).is_unhealthy());
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(skip_of(&plan, NODE4), None, "a healthy node is not judged");
}

#[test]
fn a_server_alive_again_when_read_is_not_acted_on() {
    let observation = reported(60, Some(65))
        .server(NODE4, |s| {
            "ACTIVE".clone_into(&mut s.status);
            s.power_state = Some(crate::plan::fence::POWER_RUNNING);
        })
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(
        skip_of(&plan, NODE4),
        Some(Skip::NotFenced { .. })
    ));
}

#[test]
fn never_on_a_host_state_alone_nor_a_dead_host_action() {
    // The server ACTIVE on a forced-down host: fenced for the node path with consent, never
    // from the cloud side; and a shut-off server on a down host gets no delete either.
    let policy = Policy {
        trust_forced_down: true,
        dead_host: DeadHost::DeleteServer,
        ..Policy::default()
    };
    for observation in [
        reported(60, Some(65))
            .server(NODE4, |s| {
                "ACTIVE".clone_into(&mut s.status);
                s.power_state = Some(crate::plan::fence::POWER_RUNNING);
                s.host_state = FORCED_DOWN;
            })
            .build(),
        reported(60, Some(65))
            .server(NODE4, |s| s.host_state = FORCED_DOWN)
            .build(),
    ] {
        let plan = plan(&observation, &policy);
        assert!(plan.is_empty(), "{plan}");
        assert!(
            matches!(skip_of(&plan, NODE4), Some(Skip::NotFenced { detail }) if detail.contains("from the cloud side")),
            "{plan}"
        );
    }
}

#[test]
fn nodes_reported_dead_count_for_the_storm_guard() {
    // Four Ready nodes, three of them reported dead: 3 of 4 > 40 %.
    let mut builder = ObservationBuilder::empty();
    for i in 0..4 {
        let server = format!("s-{i}");
        let mut node = ready_node(&format!("n-{i}"), &server);
        if i > 0 {
            node.cloud_death = Some(CloudDeath {
                server: ServerId::new(&server),
                at: ago(60),
            });
            node.kubelet_renewed = Some(ago(65));
        }
        builder = builder.add_node(node);
    }
    let observation = builder.build();
    let held = plan(&observation, &Policy::default());
    let storm = held.storm.expect("the storm guard holds");
    assert_eq!((storm.unhealthy, storm.total), (3, 4));
    let lenient = Policy {
        max_unhealthy: Threshold {
            percent: 100,
            count: None,
        },
        ..Policy::default()
    };
    assert!(plan(&observation, &lenient).storm.is_none());
}

#[test]
fn at_acting_time_the_kubelet_is_read_again_and_an_expired_heartbeat_agrees() {
    let policy = Policy::default();
    let observation = reported(60, Some(65)).build();
    let observed = node4(&observation);
    assert_eq!(
        recheck(observed, observed, None, now(), &policy, Purpose::Fenced),
        Ok(())
    );
    // The kubelet renewed its Lease since: something runs there.
    let mut renewed = observed.clone();
    renewed.kubelet_renewed = Some(ago(1));
    assert!(recheck(observed, &renewed, None, now(), &policy, Purpose::Fenced).is_err());
    // Its heartbeat expired meanwhile: the node turned Unknown, which agrees.
    let mut expired = observed.clone();
    expired.ready = Readiness::Unknown;
    expired.ready_since = ago(2);
    assert_eq!(
        recheck(observed, &expired, None, now(), &policy, Purpose::Fenced),
        Ok(())
    );
    // It flapped: not Ready and Ready again since planning.
    let mut flapped = observed.clone();
    flapped.ready_since = ago(2);
    assert!(recheck(observed, &flapped, None, now(), &policy, Purpose::Fenced).is_err());
    // The server runs again.
    let mut alive = observed.clone();
    if let crate::model::StorageView::OpenStack(server) = &mut alive.storage {
        "ACTIVE".clone_into(&mut server.status);
        server.power_state = Some(crate::plan::fence::POWER_RUNNING);
    }
    assert!(recheck(observed, &alive, None, now(), &policy, Purpose::Fenced).is_err());
    // The report was not carried over: a Ready node is never acted on without it.
    let mut unreported = observed.clone();
    unreported.cloud_death = None;
    assert!(recheck(observed, &unreported, None, now(), &policy, Purpose::Fenced).is_err());
}

#[test]
fn a_changed_server_is_dead_by_its_own_state_only() {
    use crate::plan::fence::{POWER_CRASHED, POWER_RUNNING, POWER_SHUTDOWN};
    let listed = |status: &str, power: u8, task: Option<&str>| {
        let mut view = server(SERVER4, NODE4, status, power);
        view.host_state = None;
        view.task_state = task.map(str::to_owned);
        view
    };
    assert!(dead_in_list(&listed("SHUTOFF", POWER_SHUTDOWN, None)));
    assert!(dead_in_list(&listed("ERROR", POWER_CRASHED, None)));
    assert!(dead_in_list(&listed("DELETED", 0, None)));
    // Rebooting, a contradiction, running, a task: not dead.
    assert!(!dead_in_list(&listed(
        "REBOOT",
        POWER_RUNNING,
        Some("reboot_started")
    )));
    assert!(!dead_in_list(&listed("SHUTOFF", POWER_RUNNING, None)));
    assert!(!dead_in_list(&listed("ACTIVE", POWER_RUNNING, None)));
    assert!(!dead_in_list(&listed(
        "SHUTOFF",
        POWER_SHUTDOWN,
        Some("powering-on")
    )));
    // A host's state is not the server's: ACTIVE on a forced-down host is not dead here.
    let mut forced = listed("ACTIVE", POWER_RUNNING, None);
    forced.host_state = FORCED_DOWN;
    assert!(!dead_in_list(&forced));
}
