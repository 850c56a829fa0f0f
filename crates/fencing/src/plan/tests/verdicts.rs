//! S1: the OpenStack verdict table, row by row, through `fence::openstack` and through the
//! planner (no release unless fenced).

use super::builder::*;
use super::{plan_default, releases, skip_of};
use crate::model::{HostView, ServerId, ServerView, StorageView};
use crate::plan::fence::{self, Verdict};
use crate::plan::{Policy, Reason, Skip, plan};

struct Row {
    label: &'static str,
    status: &'static str,
    power: Option<u8>,
    task: Option<&'static str>,
    host: Option<HostView>,
    /// `Some(reason)` when fenced (without trusting forced-down hosts).
    fenced: Option<Reason>,
}

const ROWS: &[Row] = &[
    Row {
        label: "SHUTOFF, no task",
        status: "SHUTOFF",
        power: Some(4),
        task: None,
        host: UP,
        fenced: Some(Reason::ServerStopped),
    },
    Row {
        label: "SHUTOFF on a down host",
        status: "SHUTOFF",
        power: Some(4),
        task: None,
        host: DOWN,
        fenced: Some(Reason::ServerStopped),
    },
    Row {
        label: "SHUTOFF but power RUNNING (host stopped reporting): contradictory",
        status: "SHUTOFF",
        power: Some(1),
        task: None,
        host: DOWN,
        fenced: None,
    },
    Row {
        label: "SHUTOFF but power PAUSED: contradictory",
        status: "SHUTOFF",
        power: Some(3),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "SHELVED_OFFLOADED but power SUSPENDED: contradictory",
        status: "SHELVED_OFFLOADED",
        power: Some(7),
        task: None,
        host: None,
        fenced: None,
    },
    Row {
        label: "SHELVED_OFFLOADED",
        status: "SHELVED_OFFLOADED",
        power: Some(4),
        task: None,
        host: None,
        fenced: Some(Reason::ServerStopped),
    },
    Row {
        label: "power SHUTDOWN, status not synced yet",
        status: "ACTIVE",
        power: Some(4),
        task: None,
        host: UP,
        fenced: Some(Reason::ServerStopped),
    },
    Row {
        label: "power CRASHED",
        status: "ACTIVE",
        power: Some(6),
        task: None,
        host: UP,
        fenced: Some(Reason::ServerCrashed),
    },
    Row {
        label: "ACTIVE on an up host (partition, dead kubelet)",
        status: "ACTIVE",
        power: Some(1),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "ACTIVE on a down host",
        status: "ACTIVE",
        power: Some(1),
        task: None,
        host: DOWN,
        fenced: None,
    },
    Row {
        label: "ACTIVE on an unknown host",
        status: "ACTIVE",
        power: Some(1),
        task: None,
        host: None,
        fenced: None,
    },
    Row {
        label: "ACTIVE on a forced-down host, not trusted",
        status: "ACTIVE",
        power: Some(1),
        task: None,
        host: FORCED_DOWN,
        fenced: None,
    },
    Row {
        label: "SHUTOFF with task powering-on",
        status: "SHUTOFF",
        power: Some(4),
        task: Some("powering-on"),
        host: UP,
        fenced: None,
    },
    Row {
        label: "ACTIVE with task powering-off",
        status: "ACTIVE",
        power: Some(1),
        task: Some("powering-off"),
        host: UP,
        fenced: None,
    },
    Row {
        label: "CRASHED with task rebooting",
        status: "ACTIVE",
        power: Some(6),
        task: Some("rebooting"),
        host: UP,
        fenced: None,
    },
    Row {
        label: "ERROR",
        status: "ERROR",
        power: Some(1),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "ERROR with no power state",
        status: "ERROR",
        power: None,
        task: None,
        host: DOWN,
        fenced: None,
    },
    Row {
        label: "SUSPENDED",
        status: "SUSPENDED",
        power: Some(7),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "PAUSED",
        status: "PAUSED",
        power: Some(3),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "SHELVED (not offloaded)",
        status: "SHELVED",
        power: Some(1),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "MIGRATING",
        status: "MIGRATING",
        power: Some(1),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "UNKNOWN",
        status: "UNKNOWN",
        power: Some(0),
        task: None,
        host: DOWN,
        fenced: None,
    },
    Row {
        label: "unlisted status spelled oddly",
        status: "shutoff",
        power: Some(1),
        task: None,
        host: UP,
        fenced: None,
    },
    Row {
        label: "empty status",
        status: "",
        power: None,
        task: None,
        host: None,
        fenced: None,
    },
];

fn server_for(row: &Row) -> ServerView {
    ServerView {
        power_state: row.power,
        task_state: row.task.map(str::to_owned),
        host_state: row.host,
        ..server(SERVER4, NODE4, row.status, 0)
    }
}

#[test]
fn openstack_verdict_rows() {
    for row in ROWS {
        let verdict = fence::openstack(&server_for(row), false);
        match (&verdict, row.fenced) {
            (Verdict::Fenced { reason, detail }, Some(expected)) => {
                assert_eq!(*reason, expected, "{}", row.label);
                assert!(detail.contains(SERVER4), "{}: {detail}", row.label);
            }
            (Verdict::NotFenced { .. } | Verdict::Stoppable { .. }, None) => {}
            _ => panic!("{}: {verdict:?}", row.label),
        }
    }
}

#[test]
fn no_release_unless_fenced() {
    for row in ROWS {
        let observation = ObservationBuilder::seed()
            .server(NODE4, |s| *s = server_for(row))
            .build();
        let plan = plan_default(&observation);
        let host_down = row.host.is_some_and(|h| !h.up || h.forced_down);
        if row.fenced.is_some() && host_down {
            // Nova refuses a detach there: advice, no call (see dead_host.rs).
            assert!(plan.is_empty(), "{}: {plan}", row.label);
            assert!(
                matches!(skip_of(&plan, NODE4), Some(Skip::DeadHost { .. })),
                "{}: {:?}",
                row.label,
                plan.skipped
            );
        } else if row.fenced.is_some() {
            assert_eq!(
                releases(&plan),
                [(SERVER4.to_owned(), VOLUME.to_owned())],
                "{}",
                row.label
            );
        } else {
            assert!(plan.is_empty(), "{}: {plan}", row.label);
            assert!(
                matches!(skip_of(&plan, NODE4), Some(Skip::NotFenced { .. })),
                "{}: {:?}",
                row.label,
                plan.skipped
            );
        }
    }
}

#[test]
fn only_active_idle_on_an_up_host_is_stoppable() {
    for row in ROWS {
        let stoppable = matches!(
            fence::openstack(&server_for(row), false),
            Verdict::Stoppable { .. }
        );
        let expected =
            row.status == "ACTIVE" && row.task.is_none() && row.host == UP && row.fenced.is_none();
        assert_eq!(stoppable, expected, "{}", row.label);
    }
}

#[test]
fn forced_down_host_fences_only_when_trusted_and_idle() {
    let forced = |task: Option<&str>| ServerView {
        task_state: task.map(str::to_owned),
        host_state: FORCED_DOWN,
        ..server(SERVER4, NODE4, "ACTIVE", 1)
    };
    assert!(!fence::openstack(&forced(None), false).is_fenced());
    assert!(matches!(
        fence::openstack(&forced(None), true),
        Verdict::Fenced {
            reason: Reason::HostForcedDown,
            ..
        }
    ));
    assert!(!fence::openstack(&forced(Some("deleting")), true).is_fenced());

    let trusting = Policy {
        trust_forced_down: true,
        ..Policy::default()
    };
    let observation = ObservationBuilder::seed()
        .server(NODE4, |s| *s = forced(None))
        .build();
    assert!(plan_default(&observation).is_empty());
    // Trusted, but Nova refuses a detach there: no release; a delete or an evacuate only by
    // choice (dead_host.rs).
    let plan = plan(&observation, &trusting);
    assert!(releases(&plan).is_empty(), "{plan}");
    assert!(matches!(skip_of(&plan, NODE4), Some(Skip::DeadHost { .. })));
}

#[test]
fn verdict_detail_reads_like_the_proof() {
    let detail = |row: usize| match fence::openstack(&server_for(&ROWS[row]), false) {
        Verdict::Fenced { detail, .. }
        | Verdict::NotFenced { detail }
        | Verdict::Stoppable { detail }
        | Verdict::Unknown { detail } => detail,
    };
    assert_eq!(
        detail(0),
        format!("server {SERVER4} is SHUTOFF (power state 4 SHUTDOWN, no task)")
    );
    assert_eq!(
        detail(2),
        format!(
            "server {SERVER4} is SHUTOFF but reports power state 1 RUNNING: the states contradict each other (a host that stopped reporting?), not a proof"
        )
    );
    assert_eq!(
        detail(12),
        format!("server {SERVER4} is SHUTOFF with task powering-on in progress")
    );
    assert_eq!(
        detail(9),
        format!(
            "server {SERVER4} is ACTIVE (power state 1 RUNNING) on compute host compute-2, which is down (not forced down): the VM may still run"
        )
    );
}

#[test]
fn gone_server_is_released_on_the_cinder_side() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.storage = StorageView::ServerGone {
                id: ServerId::new(SERVER4),
            };
        })
        .build();
    let plan = plan_default(&observation);
    assert_eq!(
        super::commands(&plan)[0],
        format!("cinder --os-volume-api-version 3.27 attachment-delete att-{SERVER4}")
    );
    assert_eq!(plan.steps[0].reason, Reason::ServerGone);
    assert_eq!(plan.steps.len(), 4);
}

#[test]
fn a_host_hidden_by_policy_proves_nothing_and_says_why() {
    let hidden = |status: &str, power: u8| ServerView {
        host: None,
        host_state: None,
        host_hidden: true,
        ..server(SERVER4, NODE4, status, power)
    };
    for trust in [false, true] {
        match fence::openstack(&hidden("ACTIVE", 1), trust) {
            Verdict::NotFenced { detail } => {
                assert!(
                    detail.contains("does not show these credentials"),
                    "{detail}"
                );
            }
            other => panic!("an ACTIVE server on a hidden host: {other:?}"),
        }
    }
    // What a member sees still proves a server off.
    assert!(fence::openstack(&hidden("SHUTOFF", 4), false).is_fenced());
}
