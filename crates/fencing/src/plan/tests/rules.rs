//! Safety rules S2 (uncertainty), S3 (Ready, grace), S4 (storm guard), S5 (only managed,
//! non-boot volumes, only the dead server's attachment), S7 (progress record), and the
//! diagnose lists (orphans, zone warnings).

use jiff::SignedDuration;

use super::apply::apply;
use super::builder::*;
use super::{commands, plan_default, releases, skip_of};
use crate::model::{
    AttachmentId, Driver, NodeName, Progress, Readiness, ReleasedVolume, ServerId, StorageView,
    VolumeId,
};
use crate::plan::{
    Action, FenceMode, HeldVolume, Hold, Orphan, Policy, Reason, ReleaseVia, Skip, StormGuard,
    Threshold, Warning, plan,
};

// ---- S2: no action on uncertainty -------------------------------------------------------

#[test]
fn s2_uncertain_storage_view_means_no_action_on_that_node() {
    let rows = [
        (
            StorageView::Error {
                message: "nova: timeout".to_owned(),
            },
            Skip::StorageError {
                detail: "nova: timeout".to_owned(),
            },
        ),
        (
            StorageView::Ambiguous {
                candidates: vec![ServerId::new("b"), ServerId::new("a")],
            },
            Skip::Ambiguous {
                candidates: vec![ServerId::new("a"), ServerId::new("b")],
            },
        ),
        (StorageView::NoMatch, Skip::NoMatch),
        (
            StorageView::Unobserved,
            Skip::Unknown {
                detail: "the storage backend was not read for this node".to_owned(),
            },
        ),
    ];
    for (storage, expected) in rows {
        let observation = ObservationBuilder::seed()
            .node(NODE4, |n| n.storage = storage.clone())
            .build();
        let plan = plan_default(&observation);
        assert!(plan.is_empty(), "{storage:?}: {plan}");
        assert_eq!(skip_of(&plan, NODE4), Some(&expected), "{storage:?}");
    }
}

#[test]
fn s2_an_unread_volume_blocks_the_whole_node() {
    // Two volumes on the dead node; one could not be read.
    let observation = ObservationBuilder::seed()
        .add_pv(cinder_pv("pvc-b", "vol-b", "claim-b", &[SERVER4]))
        .add_claim(claim("claim-b", "pvc-b"))
        .add_pod(pod("other", NODE4, "claim-b"))
        .pv("pvc-b", |pv| pv.backend = None)
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(
        skip_of(&plan, NODE4),
        Some(&Skip::VolumeUnread {
            pv: crate::model::PvName::new("pvc-b")
        })
    );
}

// ---- S3: not Ready for longer than the grace period --------------------------------------

#[test]
fn s3_ready_node_is_never_acted_on() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| n.ready = Readiness::True)
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.skipped.is_empty(), "Ready nodes are not listed");
}

#[test]
fn s3_grace_period_boundary() {
    let rows: [(i64, Option<i64>); 6] = [
        (0, Some(30)),
        (10, Some(20)),
        (29, Some(1)),
        (30, Some(0)), // exactly the grace period: not yet ("longer than")
        (31, None),
        (-60, Some(90)), // clock skew: a transition in the future
    ];
    for (not_ready_for, remaining) in rows {
        for readiness in [Readiness::False, Readiness::Unknown] {
            let observation = ObservationBuilder::seed()
                .node(NODE4, |n| {
                    n.ready = readiness;
                    n.ready_since = ago(not_ready_for);
                })
                .build();
            let plan = plan_default(&observation);
            match remaining {
                Some(secs) => {
                    assert!(plan.is_empty(), "{not_ready_for}s: {plan}");
                    assert_eq!(
                        skip_of(&plan, NODE4),
                        Some(&Skip::WithinGrace {
                            remaining: SignedDuration::from_secs(secs)
                        }),
                        "{not_ready_for}s"
                    );
                }
                None => assert_eq!(releases(&plan).len(), 1, "{not_ready_for}s"),
            }
        }
    }
}

// ---- S4: storm guard ---------------------------------------------------------------------

/// The seed plus `extra` more nodes, `extra_dead` of them dead (SHUTOFF, past grace).
fn cluster(extra: usize, extra_dead: usize) -> crate::model::Observation {
    let mut builder = ObservationBuilder::seed();
    for i in 0..extra {
        let name = format!("node-x{i}");
        let id = format!("srv-x{i}");
        builder = builder.add_node(if i < extra_dead {
            dead_node(&name, server(&id, &name, "SHUTOFF", 4))
        } else {
            ready_node(&name, &id)
        });
    }
    builder.build()
}

#[test]
fn s4_storm_guard_holds_every_action_and_says_so() {
    // 3 of 5 not Ready, 40 % of 5 is 2.
    let plan = plan_default(&cluster(3, 2));
    assert!(plan.is_empty(), "{plan}");
    let storm = StormGuard {
        unhealthy: 3,
        total: 5,
        limit: 2,
    };
    assert_eq!(plan.storm, Some(storm));
    assert_eq!(plan.skipped.len(), 3);
    for skipped in &plan.skipped {
        assert_eq!(
            skipped.skip,
            Skip::StormGuard {
                unhealthy: 3,
                total: 5,
                limit: 2
            }
        );
    }
    assert!(
        plan.to_string()
            .starts_with("STORM GUARD: 3 of 5 nodes are not Ready (limit 2)")
    );
}

#[test]
fn s4_at_the_limit_still_acts() {
    // 2 of 5 not Ready: exactly the limit.
    let plan = plan_default(&cluster(3, 1));
    assert!(plan.storm.is_none());
    assert_eq!(releases(&plan).len(), 1);
}

#[test]
fn s4_one_of_two_unhealthy_still_acts() {
    let plan = plan_default(&ObservationBuilder::seed().build());
    assert!(plan.storm.is_none());
    assert!(!plan.is_empty());
}

#[test]
fn s4_count_threshold() {
    let by_count = Policy {
        max_unhealthy: Threshold {
            percent: 100,
            count: Some(1),
        },
        ..Policy::default()
    };
    // 2 of 10 not Ready: 20 % is fine, but the count says 1.
    let observation = cluster(8, 1);
    assert!(!plan_default(&observation).is_empty());
    let plan = plan(&observation, &by_count);
    assert!(plan.is_empty());
    assert_eq!(
        plan.storm,
        Some(StormGuard {
            unhealthy: 2,
            total: 10,
            limit: 1
        })
    );
}

#[test]
fn s4_threshold_limit_rows() {
    let percent = |p| Threshold {
        percent: p,
        count: None,
    };
    assert_eq!(percent(40).limit(0), 1);
    assert_eq!(percent(40).limit(1), 1);
    assert_eq!(percent(40).limit(2), 1);
    assert_eq!(percent(40).limit(5), 2);
    assert_eq!(percent(40).limit(10), 4);
    assert_eq!(percent(0).limit(10), 1, "one node is always allowed");
    assert_eq!(percent(255).limit(10), 10, "percent is capped at 100");
    let both = Threshold {
        percent: 40,
        count: Some(3),
    };
    assert_eq!(both.limit(100), 3);
    assert_eq!(both.limit(5), 2);
}

// ---- S5: only managed volumes, never boot disks, only the dead server's attachment --------

#[test]
fn s5_volume_without_a_pv_is_never_touched() {
    let observation = ObservationBuilder::seed().build();
    let mut without_pv = observation.clone();
    without_pv.persistent_volumes.clear();
    let plan = plan_default(&without_pv);
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(skip_of(&plan, NODE4), Some(&Skip::NothingStuck));
}

#[test]
fn s5_unmanaged_driver_is_never_touched() {
    let observation = ObservationBuilder::seed()
        .pv(PV, |pv| {
            pv.driver = Driver::Other("nfs.csi.k8s.io".to_owned())
        })
        .build();
    let unmanaged = plan_default(&observation);
    assert!(unmanaged.is_empty(), "{unmanaged}");

    let cinder_csi_only = Policy {
        managed_drivers: [Driver::CinderCsi].into_iter().collect(),
        ..Policy::default()
    };
    let in_tree = ObservationBuilder::seed()
        .pv(PV, |pv| pv.driver = Driver::InTreeCinder)
        .build();
    assert_eq!(releases(&plan_default(&in_tree)).len(), 1);
    assert!(plan(&in_tree, &cinder_csi_only).is_empty());
}

#[test]
fn s5_bootable_volume_is_held_and_untouched() {
    let observation = ObservationBuilder::seed()
        .volume(PV, |v| v.bootable = true)
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(
        plan.held,
        [HeldVolume {
            node: NodeName::new(NODE4),
            pv: crate::model::PvName::new(PV),
            volume: VolumeId::new(VOLUME),
            hold: Hold::Bootable,
        }]
    );
    assert_eq!(skip_of(&plan, NODE4), Some(&Skip::AllHeld));
}

#[test]
fn s5_multiattach_releases_only_the_dead_servers_attachment() {
    let observation = ObservationBuilder::seed()
        .volume(PV, |v| {
            v.multiattach = true;
            v.attachments.insert(0, attachment(SERVER3));
            v.attachments.push(attachment("zzz-other-node-server"));
        })
        .add_node(ready_node("node-z", "zzz-other-node-server"))
        .build();
    let plan = plan_default(&observation);
    assert_eq!(releases(&plan), [(SERVER4.to_owned(), VOLUME.to_owned())]);
    let Action::ReleaseVolume { attachment_id, .. } = &plan.steps[0].action else {
        panic!("{plan}");
    };
    assert_eq!(
        attachment_id.as_ref().map(|a| a.as_str()),
        Some(format!("att-{SERVER4}").as_str())
    );
}

#[test]
fn s5_attachment_of_another_server_only_is_not_released() {
    // The dead node's pod uses the volume, but Cinder shows it attached elsewhere only.
    // Its VolumeAttachment says not attached (the attach never completed): the dead node's
    // Kubernetes side is still cleaned (the node is fenced).
    let mut observation = ObservationBuilder::seed()
        .volume(PV, |v| v.attachments = vec![attachment(SERVER3)])
        .build();
    observation.volume_attachments[0].attached = false;
    let plan = plan_default(&observation);
    assert!(releases(&plan).is_empty(), "{plan}");
    assert!(commands(&plan).contains(&format!("kubectl delete volumeattachment {VA}")));
}

#[test]
fn s5_detaching_or_odd_status_is_held() {
    type Change = fn(&mut crate::model::CinderVolumeView);
    let rows: [(Change, Hold); 3] = [
        (|v| v.attachments[0].detaching = true, Hold::Detaching),
        (|v| "detaching".clone_into(&mut v.status), Hold::Detaching),
        (
            |v| "error_detaching".clone_into(&mut v.status),
            Hold::VolumeStatus {
                status: "error_detaching".to_owned(),
            },
        ),
    ];
    for (change, hold) in rows {
        let observation = ObservationBuilder::seed().volume(PV, change).build();
        let plan = plan_default(&observation);
        assert!(plan.is_empty(), "{hold:?}: {plan}");
        assert_eq!(plan.held.len(), 1);
        assert_eq!(plan.held[0].hold, hold);
    }
}

#[test]
fn s5_pod_using_a_held_volume_is_not_force_deleted() {
    let observation = ObservationBuilder::seed()
        .add_pv(cinder_pv("pvc-boot", "vol-boot", "claim-boot", &[SERVER4]))
        .add_claim(claim("claim-boot", "pvc-boot"))
        .volume("pvc-boot", |v| v.bootable = true)
        .pod(OLD_POD, |p| {
            p.claims.push(crate::model::ClaimName::new("claim-boot"))
        })
        .build();
    let plan = plan_default(&observation);
    assert_eq!(releases(&plan), [(SERVER4.to_owned(), VOLUME.to_owned())]);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::ForceDeletePod { .. })),
        "{plan}"
    );
}

// ---- S7: progress record, idempotence -----------------------------------------------------

#[test]
fn s7_a_verified_release_is_never_planned_again() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.progress = Some(Progress {
                released: vec![ReleasedVolume {
                    volume: VolumeId::new(VOLUME),
                    server: ServerId::new(SERVER4),
                    attachment_id: Some(AttachmentId::new(format!("att-{SERVER4}"))),
                }],
                out_of_service_taint: false,
                host_action: None,
            });
        })
        .build();
    let plan = plan_default(&observation);
    assert!(releases(&plan).is_empty(), "{plan}");
    // The Kubernetes side resumes, without waiting for a release.
    assert_eq!(
        commands(&plan),
        [
            format!("kubectl delete volumeattachment {VA}"),
            format!("kubectl delete pod -n default {OLD_POD} --grace-period=0 --force"),
            format!("kubectl delete pod -n default {NEW_POD}"),
        ]
    );
    assert!(plan.steps.iter().all(|s| s.after.is_empty()));
    assert_eq!(
        plan.warnings,
        [Warning::StillAttachedAfterRelease {
            node: NodeName::new(NODE4),
            volume: VolumeId::new(VOLUME),
            server: ServerId::new(SERVER4),
        }]
    );
}

#[test]
fn s7_a_record_of_an_earlier_attachment_suppresses_nothing() {
    // Same volume, same server, but the record is of an earlier incident's attachment (or of
    // a record without attachment id): the attachment Cinder shows now is released.
    for earlier in [Some(AttachmentId::new("att-of-last-month")), None] {
        let observation = ObservationBuilder::seed()
            .node(NODE4, |n| {
                n.progress = Some(Progress {
                    released: vec![ReleasedVolume {
                        volume: VolumeId::new(VOLUME),
                        server: ServerId::new(SERVER4),
                        attachment_id: earlier.clone(),
                    }],
                    out_of_service_taint: false,
                    host_action: None,
                });
            })
            .build();
        let plan = plan_default(&observation);
        assert_eq!(
            releases(&plan),
            [(SERVER4.to_owned(), VOLUME.to_owned())],
            "{plan}"
        );
        assert!(plan.warnings.is_empty(), "{plan}");
    }
}

#[test]
fn s7_crash_after_release_resumes_with_the_kubernetes_side() {
    let observation = ObservationBuilder::seed().build();
    let full = plan_default(&observation);
    // Only the release ran before the crash.
    let mut partial = full.clone();
    partial.steps.truncate(1);
    let resumed = plan_default(&apply(&observation, &partial));
    assert_eq!(
        resumed.steps,
        full.steps[1..]
            .iter()
            .cloned()
            .map(|mut s| {
                s.after.clear();
                // The attachment is gone from Cinder now: the VolumeAttachment's finalizer
                // waits for no attachment of the volume to the server at all.
                if let Action::DeleteVolumeAttachment { attachment_id, .. } = &mut s.action {
                    *attachment_id = None;
                }
                s
            })
            .collect::<Vec<_>>()
    );
    let done = plan_default(&apply(&apply(&observation, &partial), &resumed));
    assert!(done.is_empty(), "{done}");
}

// ---- diagnose lists -----------------------------------------------------------------------

#[test]
fn orphans_are_listed_and_only_gone_servers_released() {
    let observation = ObservationBuilder::seed()
        .add_pv(cinder_pv(
            "pvc-o",
            "vol-o",
            "claim-o",
            &["gone-server", "unknown-server"],
        ))
        .gone_server("gone-server")
        .build();
    let plan = plan_default(&observation);
    assert_eq!(
        plan.orphans,
        [
            Orphan {
                volume: VolumeId::new("vol-o"),
                pv: crate::model::PvName::new("pvc-o"),
                server: ServerId::new("gone-server"),
                attachment_id: Some(crate::model::AttachmentId::new("att-gone-server")),
                server_gone: true,
            },
            Orphan {
                volume: VolumeId::new("vol-o"),
                pv: crate::model::PvName::new("pvc-o"),
                server: ServerId::new("unknown-server"),
                attachment_id: Some(crate::model::AttachmentId::new("att-unknown-server")),
                server_gone: false,
            },
        ]
    );
    let last = plan.steps.last().unwrap();
    assert_eq!(last.node, None);
    assert_eq!(last.reason, Reason::ServerGone);
    assert!(matches!(
        &last.action,
        Action::ReleaseVolume { server, via: ReleaseVia::CinderStaleAttachment, .. } if server.as_str() == "gone-server"
    ));
    assert_eq!(plan.steps.len(), 5, "{plan}");
}

#[test]
fn freed_volume_in_a_zone_without_ready_node_warns() {
    let observation = ObservationBuilder::seed()
        .volume(PV, |v| v.availability_zone = Some("az-1a".to_owned()))
        .build();
    let plan = plan_default(&observation);
    assert_eq!(
        plan.warnings,
        [Warning::NoReadyNodeInZone {
            volume: VolumeId::new(VOLUME),
            zone: "az-1a".to_owned(),
        }]
    );
    assert!(
        plan_default(&ObservationBuilder::seed().build())
            .warnings
            .is_empty()
    );
}

#[test]
fn duplicate_node_names_are_skipped() {
    let observation = ObservationBuilder::seed()
        .add_node(dead_node(NODE4, server("another", NODE4, "SHUTOFF", 4)))
        .ready_nodes(4)
        .build();
    let plan = plan_default(&observation);
    assert!(plan.is_empty());
    assert_eq!(skip_of(&plan, NODE4), Some(&Skip::DuplicateNode));
}

#[test]
fn reasons_name_themselves_for_events_and_metrics() {
    use Reason::*;
    for reason in [
        ServerGone,
        ServerStopped,
        ServerCrashed,
        HostForcedDown,
        ReplicasFenced,
        StopToFence,
        ReplacementWaiting,
        NodeRecovered,
    ] {
        let event = reason.as_event_reason();
        let label = reason.metric_label();
        assert!(event.chars().next().unwrap().is_ascii_uppercase() && !event.contains('_'));
        assert_eq!(
            label,
            event
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                    sep.into_iter()
                        .chain(std::iter::once(c.to_ascii_lowercase()))
                })
                .collect::<String>()
        );
        assert_eq!(serde_json::to_value(reason).unwrap(), event);
    }
}

#[test]
fn observation_and_progress_record_round_trip_as_json() {
    let observation = ObservationBuilder::seed()
        .node(NODE4, |n| {
            n.progress = Some(Progress {
                released: vec![ReleasedVolume {
                    volume: VolumeId::new(VOLUME),
                    server: ServerId::new(SERVER4),
                    attachment_id: Some(AttachmentId::new(format!("att-{SERVER4}"))),
                }],
                out_of_service_taint: true,
                host_action: None,
            });
        })
        .build();
    let json = serde_json::to_string(&observation).unwrap();
    let back: crate::model::Observation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, observation);

    // The annotation's shape; an empty object reads as an empty record.
    let progress = observation.nodes[1].progress.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(progress).unwrap(),
        serde_json::json!({
            "released": [{ "volume": VOLUME, "server": SERVER4, "attachment_id": format!("att-{SERVER4}") }],
            "out_of_service_taint": true,
        })
    );
    assert_eq!(
        serde_json::from_str::<Progress>("{}").unwrap(),
        Progress::default()
    );
    let value = serde_json::to_value(&observation).unwrap();
    assert_eq!(value["nodes"][1]["storage"]["kind"], "openstack");
    assert_eq!(
        value["persistent_volumes"][0]["driver"],
        "cinder.csi.openstack.org"
    );
    assert_eq!(value["persistent_volumes"][0]["backend"]["kind"], "cinder");
}

#[test]
fn the_grace_left_is_said_in_whole_seconds_rounded_up() {
    let said = |remaining: SignedDuration| Skip::WithinGrace { remaining }.to_string();
    assert_eq!(
        said(SignedDuration::new(2995, 273_638_022)),
        "within the grace period (49m 56s left)"
    );
    assert_eq!(
        said(SignedDuration::from_millis(300)),
        "within the grace period (1s left)"
    );
    assert_eq!(
        said(SignedDuration::from_secs(5)),
        "within the grace period (5s left)"
    );
}

#[test]
fn stop_fencing_waits_until_a_host_that_died_with_the_node_would_show_down() {
    let policy = Policy {
        fence: FenceMode::Stop,
        grace: std::time::Duration::from_secs(5),
        ..Policy::default()
    };
    let with_age = |secs: i64| {
        ObservationBuilder::seed()
            .server(NODE4, |s| {
                s.status = "ACTIVE".to_owned();
                s.power_state = Some(1);
            })
            .node(NODE4, |n| n.ready_since = ago(secs))
            .build()
    };
    let early = plan(&with_age(20), &policy);
    assert!(early.steps.is_empty(), "{early}");
    match skip_of(&early, NODE4) {
        Some(Skip::NotFenced { detail }) => {
            assert!(detail.contains("service_down_time"), "{detail}");
            assert!(detail.contains("40s left"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let later = plan(&with_age(61), &policy);
    assert!(
        matches!(later.steps.as_slice(), [step] if matches!(step.action, Action::StopServer { .. })),
        "{later}"
    );
}

#[test]
fn a_pod_no_controller_owns_or_an_operator_keeps_is_never_force_deleted() {
    let old = "test-cinder-56bdb546dd-56mct";
    for (label, change) in [
        (
            "unowned",
            Box::new(|p: &mut crate::model::PodView| p.owner = None)
                as Box<dyn Fn(&mut crate::model::PodView)>,
        ),
        (
            "owner not controller",
            Box::new(|p: &mut crate::model::PodView| {
                if let Some(owner) = &mut p.owner {
                    owner.controller = false;
                }
            }),
        ),
        (
            "kept",
            Box::new(|p: &mut crate::model::PodView| p.keep = true),
        ),
    ] {
        let observation = ObservationBuilder::seed().pod(old, |p| change(p)).build();
        let plan = crate::plan::plan(&observation, &crate::plan::Policy::default());
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| matches!(&s.action, crate::plan::Action::ForceDeletePod { name, .. } if name.as_str() == old)),
            "{label}: {plan}"
        );
        assert!(
            plan.warnings.iter().any(
                |w| matches!(w, crate::plan::Warning::PodLeft { pod, .. } if pod.ends_with(old))
            ),
            "{label}: {:?}",
            plan.warnings
        );
        // The volume is released all the same.
        assert_eq!(super::releases(&plan).len(), 1, "{label}");
    }
}

#[test]
fn with_only_labelled_pods_an_unlabelled_pod_is_left() {
    let old = "test-cinder-56bdb546dd-56mct";
    let policy = crate::plan::Policy {
        only_labelled_pods: true,
        ..crate::plan::Policy::default()
    };
    let force_deleted = |plan: &crate::plan::Plan| {
        plan.steps.iter().any(
            |s| matches!(&s.action, crate::plan::Action::ForceDeletePod { name, .. } if name.as_str() == old),
        )
    };
    let unlabelled = crate::plan::plan(&ObservationBuilder::seed().build(), &policy);
    assert!(!force_deleted(&unlabelled), "{unlabelled}");
    let labelled = crate::plan::plan(
        &ObservationBuilder::seed()
            .pod(old, |p| p.piraeus_remove = true)
            .build(),
        &policy,
    );
    assert!(force_deleted(&labelled), "{labelled}");
}
