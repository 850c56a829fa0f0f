//! LINSTOR (seed 004): the same planner, with per-resource verdicts and no backend release.

use std::collections::BTreeMap;

use super::apply::apply;
use super::builder::*;
use super::{commands, plan_default, skip_of};
use crate::model::{
    BackendVolume, Driver, LinstorNodeView, LinstorResourceView, NodeName, ReplicaView, StorageView,
};
use crate::plan::fence::{self, Verdict};
use crate::plan::{Hold, Reason, Skip};

const DEAD: &str = "node03.ha.cluster";
const ALIVE1: &str = "node01.ha.cluster";
const ALIVE2: &str = "node02.ha.cluster";
const RESOURCE: &str = "pvc-9d991a74-0713-448f-ac0c-0b20b842763e";
const APP: &str = "my-stateful-app-with-piraeus-0";

fn replica(
    node: &str,
    connected_to_dead: Option<bool>,
    may_promote: bool,
    in_use: bool,
) -> ReplicaView {
    ReplicaView {
        node: NodeName::new(node),
        in_use: Some(in_use),
        may_promote: Some(may_promote),
        connections: connected_to_dead
            .map(|up| (NodeName::new(DEAD), up))
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        disk_state: None,
    }
}

fn satellite(status: &str) -> StorageView {
    StorageView::Linstor(LinstorNodeView {
        connection_status: status.to_owned(),
    })
}

/// node03 crashed; its replica was primary; node01 and node02 lost their connection to it and
/// node01 may promote. The StatefulSet pod hangs on node03, its VolumeAttachment names node03.
fn piraeus() -> ObservationBuilder {
    let mut dead = ready_node(DEAD, "");
    dead.ready = crate::model::Readiness::Unknown;
    dead.ready_since = ago(600);
    dead.provider_id = None;
    dead.storage = satellite("OFFLINE");
    let mut pv = cinder_pv(RESOURCE, RESOURCE, "data-app-0", &[]);
    pv.driver = Driver::Linstor;
    pv.backend = Some(BackendVolume::Linstor(LinstorResourceView {
        replicas: vec![
            ReplicaView {
                node: NodeName::new(DEAD),
                in_use: None,
                may_promote: None,
                connections: BTreeMap::new(),
                disk_state: None,
            },
            replica(ALIVE2, Some(false), false, false),
            replica(ALIVE1, Some(false), true, false),
        ],
    }));
    let mut app = pod(APP, DEAD, "data-app-0");
    app.deleting = true;
    let mut replacement = waiting_pod(
        "my-stateful-app-replacement",
        ALIVE2,
        "data-app-0",
        &[RESOURCE],
    );
    replacement.owner = Some(crate::model::OwnerRef {
        kind: "StatefulSet".to_owned(),
        name: "my-stateful-app".to_owned(),
        controller: true,
    });
    let mut ready1 = ready_node(ALIVE1, "");
    ready1.storage = satellite("ONLINE");
    let mut ready2 = ready_node(ALIVE2, "");
    ready2.storage = satellite("ONLINE");
    ObservationBuilder::empty()
        .add_node(ready1)
        .add_node(ready2)
        .add_node(dead)
        .add_pv(pv)
        .add_claim(claim("data-app-0", RESOURCE))
        .add_pod(app)
        .add_pod(replacement)
        .add_va(va("csi-d2b994ff", DEAD, RESOURCE))
}

fn set_replicas(builder: ObservationBuilder, replicas: Vec<ReplicaView>) -> ObservationBuilder {
    builder.pv(RESOURCE, |pv| {
        pv.backend = Some(BackendVolume::Linstor(LinstorResourceView { replicas }));
    })
}

#[test]
fn lost_satellite_with_promotable_survivor_frees_the_kubernetes_side() {
    let observation = piraeus().build();
    let plan = plan_default(&observation);
    assert_eq!(
        commands(&plan),
        [
            "kubectl delete volumeattachment csi-d2b994ff".to_owned(),
            format!("kubectl delete pod -n default {APP} --grace-period=0 --force"),
            "kubectl delete pod -n default my-stateful-app-replacement".to_owned(),
        ]
    );
    assert_eq!(plan.steps[0].reason, Reason::ReplicasFenced);
    assert_eq!(
        plan.steps[0].detail,
        format!(
            "satellite {DEAD} is OFFLINE; every surviving replica of {RESOURCE} reports its connection down, {ALIVE1} may promote, none is in use"
        )
    );
    assert!(
        plan.steps.iter().all(|s| s.after.is_empty()),
        "nothing to release first"
    );
    assert!(plan_default(&apply(&observation, &plan)).is_empty());
}

#[test]
fn linstor_rows_that_are_not_fenced_hold_the_resource() {
    let rows: [(&str, Vec<ReplicaView>); 5] = [
        (
            "a survivor is still connected",
            vec![
                replica(ALIVE1, Some(false), true, false),
                replica(ALIVE2, Some(true), false, false),
            ],
        ),
        (
            "a survivor does not report the connection",
            vec![
                replica(ALIVE1, Some(false), true, false),
                replica(ALIVE2, None, false, false),
            ],
        ),
        (
            "no survivor may promote",
            vec![
                replica(ALIVE1, Some(false), false, false),
                replica(ALIVE2, Some(false), false, false),
            ],
        ),
        (
            "a survivor is in use",
            vec![
                replica(ALIVE1, Some(false), true, false),
                replica(ALIVE2, Some(false), false, true),
            ],
        ),
        (
            "no survivor at all",
            vec![replica(DEAD, None, false, false)],
        ),
    ];
    for (label, replicas) in rows {
        let plan = plan_default(&set_replicas(piraeus(), replicas).build());
        assert!(plan.is_empty(), "{label}: {plan}");
        assert_eq!(plan.held.len(), 1, "{label}");
        assert!(
            matches!(plan.held[0].hold, Hold::ReplicaNotFenced { .. }),
            "{label}"
        );
        assert_eq!(skip_of(&plan, DEAD), Some(&Skip::AllHeld), "{label}");
    }
}

#[test]
fn unknown_in_use_state_of_a_survivor_is_not_a_proof() {
    let mut unknown = replica(ALIVE1, Some(false), true, false);
    unknown.in_use = None;
    let resource = LinstorResourceView {
        replicas: vec![unknown],
    };
    let verdict = fence::linstor_resource(
        &NodeName::new(DEAD),
        &LinstorNodeView {
            connection_status: "OFFLINE".to_owned(),
        },
        RESOURCE,
        &resource,
        true,
    );
    assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict:?}");
}

#[test]
fn online_satellite_is_not_fenced() {
    let observation = piraeus()
        .node(DEAD, |n| n.storage = satellite("ONLINE"))
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty());
    assert_eq!(
        skip_of(&plan, DEAD),
        Some(&Skip::NotFenced {
            detail: format!("satellite {DEAD} is ONLINE in the LINSTOR controller")
        })
    );
}

#[test]
fn cinder_pv_on_a_linstor_node_is_held_as_a_mismatch() {
    let observation = piraeus()
        .add_pv(cinder_pv("pvc-c", "vol-c", "claim-c", &[]))
        .add_claim(claim("claim-c", "pvc-c"))
        .add_pod(pod("cinder-user", DEAD, "claim-c"))
        .build();
    let plan = plan_default(&observation);
    assert_eq!(plan.held.len(), 1);
    assert_eq!(
        plan.held[0].hold,
        Hold::BackendMismatch {
            driver: "cinder.csi.openstack.org".to_owned()
        }
    );
    assert!(
        !commands(&plan).iter().any(|c| c.contains("cinder-user")),
        "{plan}"
    );
}

/// The seed story's node-4 (server SHUTOFF, a Cinder volume) runs a LINSTOR replica too: its
/// pod `linstor-app` uses a LINSTOR volume whose survivors `survivors` describe.
fn mixed(satellite_status: Option<&str>, survivors: Vec<ReplicaView>) -> crate::model::Observation {
    let mut pv = cinder_pv("pv-drbd", "pv-drbd", "data-drbd", &[]);
    pv.driver = Driver::Linstor;
    let mut replicas = vec![ReplicaView {
        node: NodeName::new(NODE4),
        in_use: None,
        may_promote: None,
        connections: BTreeMap::new(),
        disk_state: None,
    }];
    replicas.extend(survivors);
    pv.backend = Some(BackendVolume::Linstor(LinstorResourceView { replicas }));
    ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.satellite = satellite_status.map(|status| LinstorNodeView {
                connection_status: status.to_owned(),
            });
        })
        .add_pv(pv)
        .add_claim(claim("data-drbd", "pv-drbd"))
        .add_pod(pod("linstor-app", NODE4, "data-drbd"))
        .add_va(va("va-drbd", NODE4, "pv-drbd"))
        .build()
}

fn survivor(node: &str, connected: bool, may_promote: bool) -> ReplicaView {
    ReplicaView {
        node: NodeName::new(node),
        in_use: Some(false),
        may_promote: Some(may_promote),
        connections: [(NodeName::new(NODE4), connected)].into_iter().collect(),
        disk_state: None,
    }
}

#[test]
fn a_node_with_cinder_and_linstor_volumes_frees_each_by_its_own_backend() {
    // Server SHUTOFF, satellite lost, survivors with quorum: both volumes' Kubernetes sides go.
    let both = mixed(
        Some("OFFLINE"),
        vec![
            survivor(NODE3, false, true),
            survivor("node-5", false, false),
        ],
    );
    let plan = plan_default(&both);
    let all = commands(&plan);
    assert!(
        all.contains(&"kubectl delete volumeattachment va-drbd".to_owned()),
        "{plan}"
    );
    assert!(
        all.contains(
            &"kubectl delete pod -n default linstor-app --grace-period=0 --force".to_owned()
        ),
        "{plan}"
    );
    assert!(
        all.iter()
            .any(|c| c.starts_with("openstack server remove volume")),
        "{plan}"
    );

    // DRBD still connected (the satellite answers): the LINSTOR volume is held, its pod and
    // VolumeAttachment stay; the Cinder volume is released all the same.
    let connected = mixed(
        Some("ONLINE"),
        vec![
            survivor(NODE3, true, false),
            survivor("node-5", true, false),
        ],
    );
    let plan = plan_default(&connected);
    let all = commands(&plan);
    assert!(
        !all.iter()
            .any(|c| c.contains("va-drbd") || c.contains("linstor-app")),
        "{plan}"
    );
    assert!(
        all.iter()
            .any(|c| c.starts_with("openstack server remove volume")),
        "{plan}"
    );
    assert!(
        plan.held
            .iter()
            .any(|h| h.pv.as_str() == "pv-drbd" && matches!(h.hold, Hold::ReplicaNotFenced { .. })),
        "{:?}",
        plan.held
    );

    // LINSTOR not read for the node: held.
    let unread = mixed(None, vec![survivor(NODE3, false, true)]);
    let plan = plan_default(&unread);
    assert!(
        plan.held
            .iter()
            .any(|h| h.pv.as_str() == "pv-drbd" && matches!(h.hold, Hold::SatelliteUnread)),
        "{:?}",
        plan.held
    );
}

#[test]
fn a_new_volume_never_used_on_the_lost_node_is_left_alone() {
    // Never Primary on node03 (its last state unknown) and its pod never ran there: nothing to
    // fail over (the Piraeus HA controller's eviction loop).
    let observation = piraeus().build();
    let mut fresh = observation.clone();
    for pod in &mut fresh.pods {
        "Pending".clone_into(&mut pod.phase);
    }
    let plan = plan_default(&fresh);
    assert!(plan.steps.is_empty(), "{plan}");
    assert!(
        plan.held
            .iter()
            .any(|h| matches!(&h.hold, Hold::ReplicaNotFenced { detail } if detail.contains("never Primary"))),
        "{:?}",
        plan.held
    );
    // Its pod ran there: acted on.
    assert!(!plan_default(&observation).steps.is_empty());
}
