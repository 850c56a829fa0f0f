//! Ambiguous evidence (issue 7): a 404 is no proof unless it is Nova's own, in the providerID's
//! region, with the node's volumes visible; a name or address match is cross-checked; Kubernetes
//! and Cinder must agree; an unreadable progress record stops the node; orphans are released
//! only when every node maps to a server; and [`recheck`] refuses a changed world.

use super::builder::*;
use super::{plan_default, releases, skip_of};
use crate::model::{
    BackendVolume, MatchRoute, NodeName, NodeUid, Progress, Readiness, StorageView, Taint,
};
use crate::plan::{Action, Policy, Purpose, Skip, Warning, plan, recheck};

/// The seed with node-4's server gone (Nova 404) instead of SHUTOFF.
fn gone_seed() -> ObservationBuilder {
    ObservationBuilder::seed().node(NODE4, |n| {
        n.storage = StorageView::ServerGone {
            id: crate::model::ServerId::new(SERVER4),
        };
    })
}

#[test]
fn a_provider_id_of_another_region_is_no_match() {
    let rows = [
        (
            Some("RegionOne"),
            Some(Skip::OtherRegion {
                region: "RegionTwo".into(),
                session: Some("RegionOne".into()),
            }),
        ),
        (
            None,
            Some(Skip::OtherRegion {
                region: "RegionTwo".into(),
                session: None,
            }),
        ),
        (Some("RegionTwo"), None),
    ];
    for (session, expected) in rows {
        for builder in [ObservationBuilder::seed(), gone_seed()] {
            let mut observation = builder
                .node(NODE4, |n| {
                    n.provider_id = Some(format!("openstack://RegionTwo/{SERVER4}"));
                })
                .build();
            observation.region = session.map(str::to_owned);
            let plan = plan_default(&observation);
            match &expected {
                Some(skip) => {
                    assert!(plan.is_empty(), "{session:?}: {plan}");
                    assert_eq!(skip_of(&plan, NODE4), Some(skip));
                    assert!(skip.to_string().contains("RegionTwo"), "{skip}");
                }
                None => assert!(!releases(&plan).is_empty(), "{session:?}: {plan}"),
            }
        }
    }
}

#[test]
fn a_gone_server_whose_volumes_cinder_does_not_know_is_invisible_not_dead() {
    let observation = gone_seed()
        .pv(PV, |pv| pv.backend = Some(BackendVolume::NotFound))
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    let skip = skip_of(&plan, NODE4).unwrap();
    assert!(matches!(skip, Skip::Invisible { .. }), "{skip:?}");
    assert!(
        skip.to_string()
            .contains("wrong region, project or credentials?"),
        "{skip}"
    );
    // The same with the volume visible: the stale attachment is released on the Cinder side.
    let plan = plan_default(&gone_seed().build());
    assert_eq!(releases(&plan), [(SERVER4.to_owned(), VOLUME.to_owned())]);
}

#[test]
fn a_volume_cinder_answers_404_for_is_unread_never_free() {
    // Server visible and SHUTOFF, a second stuck volume invisible: nothing on the node.
    let observation = ObservationBuilder::seed()
        .add_pv(cinder_pv("pvc-2", "vol-2", "claim-2", &[]))
        .add_claim(claim("claim-2", "pvc-2"))
        .pv("pvc-2", |pv| pv.backend = Some(BackendVolume::NotFound))
        .pod(OLD_POD, |p| {
            p.claims.push(crate::model::ClaimName::new("claim-2"))
        })
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(
        skip_of(&plan, NODE4),
        Some(Skip::VolumeNotFound { .. })
    ));
}

#[test]
fn a_name_or_address_match_must_own_the_node_ip() {
    let rows: [(MatchRoute, Option<Vec<&str>>, bool); 7] = [
        (MatchRoute::Name, Some(vec!["10.0.0.99"]), false),
        (MatchRoute::Name, Some(vec![]), false),
        (MatchRoute::Address, Some(vec!["10.0.0.99"]), false),
        (
            MatchRoute::Name,
            Some(vec!["10.0.0.14", "172.16.0.4"]),
            true,
        ),
        (MatchRoute::Name, None, true),
        (MatchRoute::ProviderId, Some(vec!["10.0.0.99"]), true),
        (MatchRoute::Address, Some(vec!["10.0.0.14"]), true),
    ];
    for (route, owned, acts) in rows {
        let observation = ObservationBuilder::seed()
            .node(NODE4, |n| {
                n.addresses = vec!["10.0.0.14".to_owned()];
                if route != MatchRoute::ProviderId {
                    n.provider_id = None;
                }
            })
            .server(NODE4, |s| {
                s.matched_by = route;
                s.addresses = owned
                    .clone()
                    .map(|a| a.into_iter().map(str::to_owned).collect());
            })
            .build();
        let plan = plan_default(&observation);
        assert_eq!(!plan.is_empty(), acts, "{route:?} {owned:?}: {plan}");
        if !acts {
            assert!(matches!(skip_of(&plan, NODE4), Some(Skip::Mismatch { .. })));
        }
    }
}

#[test]
fn two_nodes_naming_one_server_are_both_left_alone() {
    // node-3 (Ready) names node-4's server in its providerID: which node runs on it?
    let observation = ObservationBuilder::seed()
        .node(NODE3, |n| {
            n.provider_id = Some(format!("openstack:///{SERVER4}"))
        })
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(skip_of(&plan, NODE4), Some(Skip::Mismatch { .. })));
}

#[test]
fn a_volume_attachment_contradicting_cinder_holds_the_node() {
    // The VolumeAttachment says attached to node-4, Cinder shows the volume on another server.
    let observation = ObservationBuilder::seed()
        .volume(PV, |v| {
            v.attachments = vec![attachment("real-vm-of-node-4")]
        })
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    let skip = skip_of(&plan, NODE4).unwrap();
    assert!(matches!(skip, Skip::Contradiction { .. }), "{skip:?}");
    assert!(skip.to_string().contains("real-vm-of-node-4"), "{skip}");
}

#[test]
fn an_unreadable_progress_record_stops_the_node_and_its_recovery() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.progress_error = Some("expected value".to_owned())
        })
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert!(matches!(
        skip_of(&plan, NODE4),
        Some(Skip::ProgressUnreadable { .. })
    ));
    // Ready again with our taint: no recovery step, a warning instead.
    let observation = ObservationBuilder::seed()
        .node(NODE3, |n| {
            n.progress = Some(Progress {
                released: Vec::new(),
                out_of_service_taint: true,
                host_action: None,
            });
            n.taints.push(Taint::out_of_service());
            n.progress_error = Some("expected value".to_owned());
        })
        .build();
    let plan = plan_default(&observation);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| s.node.as_ref() == Some(&NodeName::new(NODE3))),
        "{plan}"
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| matches!(w, Warning::ProgressUnreadable { .. }))
    );
}

#[test]
fn orphans_are_released_only_when_every_node_maps_to_a_server() {
    let base = || {
        ObservationBuilder::seed()
            .add_pv(cinder_pv("pvc-o", "vol-o", "claim-o", &["gone-server"]))
            .gone_server("gone-server")
            .node(NODE3, |n| n.provider_id = None)
    };
    let orphan_released = |plan: &crate::plan::Plan| {
        plan.steps.iter().any(|s| {
            s.node.is_none() && matches!(&s.action, Action::ReleaseVolume { server, .. } if server.as_str() == "gone-server")
        })
    };
    // node-3 has no providerID and was not matched: "gone-server" may be its own.
    let plan = plan_default(&base().build());
    assert!(!orphan_released(&plan), "{plan}");
    assert!(plan.warnings.contains(&Warning::OrphansNotReleased {
        nodes: vec![NodeName::new(NODE3)],
    }));
    // Matched by name to a server that exists: the gone server is no node's.
    let plan = plan_default(
        &base()
            .node(NODE3, |n| {
                n.storage = StorageView::OpenStack(server(SERVER3, NODE3, "ACTIVE", 1));
            })
            .build(),
    );
    assert!(orphan_released(&plan), "{plan}");
}

// ---- re-verification at the moment of acting ---------------------------------------------

#[test]
fn recheck_accepts_an_unchanged_node_and_refuses_every_change() {
    let observation = ObservationBuilder::seed().build();
    let observed = observation
        .nodes
        .iter()
        .find(|n| n.name.as_str() == NODE4)
        .unwrap();
    let policy = Policy::default();
    let check = |fresh: &crate::model::NodeView| {
        recheck(observed, fresh, None, now(), &policy, Purpose::Fenced)
    };
    assert_eq!(check(observed), Ok(()));

    type Change = fn(&mut crate::model::NodeView);
    let changes: [(&str, Change); 9] = [
        ("re-created", |n| n.uid = Some(NodeUid::new("another"))),
        ("Ready again", |n| n.ready = Readiness::True),
        ("flapped", |n| n.ready_since = ago(20)),
        ("taint added by someone else", |n| {
            n.taints.push(Taint::out_of_service())
        }),
        ("addresses", |n| n.addresses.push("10.9.9.9".into())),
        ("server restarted", |n| {
            if let StorageView::OpenStack(s) = &mut n.storage {
                s.status = "ACTIVE".into();
                s.power_state = Some(1);
            }
        }),
        ("power-on in progress", |n| {
            if let StorageView::OpenStack(s) = &mut n.storage {
                s.task_state = Some("powering-on".into());
            }
        }),
        ("another server", |n| {
            n.storage = StorageView::OpenStack(server(SERVER3, NODE4, "SHUTOFF", 4));
        }),
        ("unreadable now", |n| {
            n.storage = StorageView::Error {
                message: "timeout".into(),
            }
        }),
    ];
    for (label, change) in changes {
        let mut fresh = observed.clone();
        change(&mut fresh);
        assert!(check(&fresh).is_err(), "{label}: accepted");
    }
    // Past the grace is measured at the moment of acting.
    let too_early = recheck(
        observed,
        observed,
        None,
        ago(600 - 10),
        &policy,
        Purpose::Fenced,
    );
    assert!(too_early.is_err());
    // Stop fencing needs the server still stoppable; recovery needs the same Node still Ready.
    assert!(recheck(observed, observed, None, now(), &policy, Purpose::Stop).is_err());
    let ready = observation
        .nodes
        .iter()
        .find(|n| n.name.as_str() == NODE3)
        .unwrap();
    assert_eq!(
        recheck(ready, ready, None, now(), &policy, Purpose::Recover),
        Ok(())
    );
    let mut not_ready = ready.clone();
    not_ready.ready = Readiness::Unknown;
    assert!(recheck(ready, &not_ready, None, now(), &policy, Purpose::Recover).is_err());
}

#[test]
fn the_plan_of_a_node_is_unchanged_by_the_guards_when_the_evidence_agrees() {
    // The seed with every cross-check satisfied still gives the full remediation.
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| n.addresses = vec!["10.0.0.14".to_owned()])
        .server(NODE4, |s| s.addresses = Some(vec!["10.0.0.14".to_owned()]))
        .build();
    let policy = Policy::default();
    assert_eq!(plan(&observation, &policy).steps.len(), 4);
}
