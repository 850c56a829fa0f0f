//! Observation builders: the seed story and small pieces to change it.

use jiff::{SignedDuration, Timestamp};

use crate::model::{
    AttachmentId, BackendVolume, CinderAttachment, CinderVolumeView, ClaimName, ClaimRef,
    ClaimView, Driver, HostView, MatchRoute, Namespace, NodeName, NodeUid, NodeView, Observation,
    OwnerRef, PodName, PodUid, PodView, PvName, PvView, Readiness, ServerId, ServerView,
    StorageView, Taint, VaName, VaUid, VaView, VolumeId,
};

pub const UP: Option<HostView> = Some(HostView {
    up: true,
    forced_down: false,
});
pub const DOWN: Option<HostView> = Some(HostView {
    up: false,
    forced_down: false,
});
pub const FORCED_DOWN: Option<HostView> = Some(HostView {
    up: false,
    forced_down: true,
});

pub const NODE3: &str = "node-3-nude";
pub const SERVER3: &str = "3901d974-751e-4ba7-acfa-9cd583c6729d";
pub const NODE4: &str = "node-4-nude";
pub const SERVER4: &str = "9454752c-f0e2-4447-9b7f-16434c49f7ac";
pub const VOLUME: &str = "4e41d530-cb5f-49a9-9c6f-a591abdb6f11";
pub const PV: &str = "pvc-12ff0316-53bd-11e8-8b74-fa163e141d50";
pub const CLAIM: &str = "test-cinder-volume";
pub const OLD_POD: &str = "test-cinder-56bdb546dd-56mct";
pub const NEW_POD: &str = "test-cinder-56bdb546dd-9vdsj";
pub const VA: &str = "csi-d2b994ff19d526ace7059a2d8dea45146552ed078d00ed843ac8a8433c1b5f6f";

pub fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// `secs` seconds before [`now`].
pub fn ago(secs: i64) -> Timestamp {
    now() - SignedDuration::from_secs(secs)
}

pub fn server(id: &str, name: &str, status: &str, power: u8) -> ServerView {
    ServerView {
        id: ServerId::new(id),
        name: name.to_owned(),
        matched_by: MatchRoute::ProviderId,
        addresses: None,
        status: status.to_owned(),
        power_state: Some(power),
        task_state: None,
        vm_state: None,
        host: Some("compute-2".to_owned()),
        host_state: Some(HostView {
            up: true,
            forced_down: false,
        }),
        host_hidden: false,
    }
}

pub fn ready_node(name: &str, server_id: &str) -> NodeView {
    NodeView {
        name: NodeName::new(name),
        uid: Some(NodeUid::new(format!("uid-{name}"))),
        ready: Readiness::True,
        ready_since: ago(9 * 3600),
        taints: Vec::new(),
        provider_id: Some(format!("openstack:///{server_id}")),
        addresses: Vec::new(),
        zone: Some("nova".to_owned()),
        progress: None,
        progress_error: None,
        satellite: None,
        cloud_death: None,
        kubelet_renewed: None,
        storage: StorageView::Unobserved,
    }
}

/// Not Ready (Unknown) for ten minutes, with its server.
pub fn dead_node(name: &str, server: ServerView) -> NodeView {
    NodeView {
        ready: Readiness::Unknown,
        ready_since: ago(600),
        provider_id: Some(format!("openstack:///{}", server.id)),
        taints: vec![Taint {
            key: "node.kubernetes.io/unreachable".to_owned(),
            value: None,
            effect: "NoExecute".to_owned(),
        }],
        storage: StorageView::OpenStack(server),
        ..ready_node(name, "")
    }
}

pub fn attachment(server: &str) -> CinderAttachment {
    CinderAttachment {
        server: ServerId::new(server),
        attachment_id: Some(AttachmentId::new(format!("att-{server}"))),
        detaching: false,
    }
}

pub fn cinder_pv(name: &str, volume: &str, claim: &str, attached_to: &[&str]) -> PvView {
    PvView {
        name: PvName::new(name),
        driver: Driver::CinderCsi,
        volume_id: VolumeId::new(volume),
        claim: Some(ClaimRef {
            namespace: Namespace::new("default"),
            name: ClaimName::new(claim),
        }),
        access_modes: vec!["ReadWriteOnce".to_owned()],
        backend: Some(BackendVolume::Cinder(CinderVolumeView {
            status: if attached_to.is_empty() {
                "available"
            } else {
                "in-use"
            }
            .to_owned(),
            multiattach: attached_to.len() > 1,
            bootable: false,
            availability_zone: Some("nova".to_owned()),
            attachments: attached_to.iter().map(|s| attachment(s)).collect(),
        })),
    }
}

pub fn claim(name: &str, pv: &str) -> ClaimView {
    ClaimView {
        namespace: Namespace::new("default"),
        name: ClaimName::new(name),
        volume: Some(PvName::new(pv)),
    }
}

/// A running pod of a ReplicaSet (controller owner), using `claim`.
pub fn pod(name: &str, node: &str, claim: &str) -> PodView {
    PodView {
        namespace: Namespace::new("default"),
        name: PodName::new(name),
        uid: PodUid::new(format!("uid-{name}")),
        node: Some(NodeName::new(node)),
        phase: "Running".to_owned(),
        deleting: false,
        claims: vec![ClaimName::new(claim)],
        owner: Some(OwnerRef {
            kind: "ReplicaSet".to_owned(),
            name: "test-cinder-56bdb546dd".to_owned(),
            controller: true,
        }),
        waiting_reason: None,
        attach_failures: Vec::new(),
        keep: false,
        piraeus_remove: false,
    }
}

/// A replacement pod stuck in ContainerCreating on a Multi-Attach error for `failed`.
pub fn waiting_pod(name: &str, node: &str, claim: &str, failed: &[&str]) -> PodView {
    PodView {
        phase: "Pending".to_owned(),
        waiting_reason: Some("ContainerCreating".to_owned()),
        attach_failures: failed.iter().map(|f| (*f).to_owned()).collect(),
        ..pod(name, node, claim)
    }
}

pub fn va(name: &str, node: &str, pv: &str) -> VaView {
    VaView {
        name: VaName::new(name),
        uid: Some(VaUid::new(format!("uid-{name}"))),
        node: NodeName::new(node),
        pv: Some(PvName::new(pv)),
        attacher: "cinder.csi.openstack.org".to_owned(),
        attached: true,
        deleting: false,
        finalizers: vec!["external-attacher/cinder-csi-openstack-org".to_owned()],
    }
}

/// Builds observations: the seed story, then changes to it.
pub struct ObservationBuilder(Observation);

impl ObservationBuilder {
    pub fn empty() -> Self {
        Self(Observation {
            now: now(),
            nodes: Vec::new(),
            persistent_volumes: Vec::new(),
            claims: Vec::new(),
            pods: Vec::new(),
            volume_attachments: Vec::new(),
            gone_servers: Vec::new(),
            region: None,
            deployments: Vec::new(),
            deployments_unread: None,
        })
    }

    /// Seeds 000/001: node-4-nude (server 9454752c, SHUTOFF) died holding volume 4e41d530; its
    /// pod 56mct hangs Terminating; the replacement 9vdsj on node-3-nude hangs on Multi-Attach.
    pub fn seed() -> Self {
        let mut old = pod(OLD_POD, NODE4, CLAIM);
        old.deleting = true;
        Self::empty()
            .add_node(ready_node(NODE3, SERVER3))
            .add_node(dead_node(
                NODE4,
                server(
                    SERVER4,
                    NODE4,
                    "SHUTOFF",
                    crate::plan::fence::POWER_SHUTDOWN,
                ),
            ))
            .add_pv(cinder_pv(PV, VOLUME, CLAIM, &[SERVER4]))
            .add_claim(claim(CLAIM, PV))
            .add_pod(old)
            .add_pod(waiting_pod(NEW_POD, NODE3, CLAIM, &[PV, VOLUME]))
            .add_va(va(VA, NODE4, PV))
    }

    pub fn add_node(mut self, node: NodeView) -> Self {
        self.0.nodes.push(node);
        self
    }

    pub fn add_pv(mut self, pv: PvView) -> Self {
        self.0.persistent_volumes.push(pv);
        self
    }

    pub fn add_claim(mut self, claim: ClaimView) -> Self {
        self.0.claims.push(claim);
        self
    }

    pub fn add_pod(mut self, pod: PodView) -> Self {
        self.0.pods.push(pod);
        self
    }

    pub fn add_va(mut self, va: VaView) -> Self {
        self.0.volume_attachments.push(va);
        self
    }

    /// Adds `count` healthy nodes, so that more failures stay under the storm guard.
    pub fn ready_nodes(mut self, count: usize) -> Self {
        for i in 0..count {
            self = self.add_node(ready_node(
                &format!("node-ready-{i}"),
                &format!("srv-ready-{i}"),
            ));
        }
        self
    }

    pub fn gone_server(mut self, id: &str) -> Self {
        self.0.gone_servers.push(ServerId::new(id));
        self
    }

    pub fn node(mut self, name: &str, change: impl FnOnce(&mut NodeView)) -> Self {
        let node = self.0.nodes.iter_mut().find(|n| n.name.as_str() == name);
        change(node.unwrap_or_else(|| panic!("no node {name}")));
        self
    }

    /// Changes the node's Nova server.
    pub fn server(self, node: &str, change: impl FnOnce(&mut ServerView)) -> Self {
        self.node(node, |n| match &mut n.storage {
            StorageView::OpenStack(server) => change(server),
            other => panic!("node {node} has no server: {other:?}"),
        })
    }

    pub fn pv(mut self, name: &str, change: impl FnOnce(&mut PvView)) -> Self {
        let pv = self
            .0
            .persistent_volumes
            .iter_mut()
            .find(|p| p.name.as_str() == name);
        change(pv.unwrap_or_else(|| panic!("no PV {name}")));
        self
    }

    /// Changes the Cinder volume behind a PV.
    pub fn volume(self, pv: &str, change: impl FnOnce(&mut CinderVolumeView)) -> Self {
        self.pv(pv, |p| match &mut p.backend {
            Some(BackendVolume::Cinder(volume)) => change(volume),
            other => panic!("PV {pv} has no Cinder volume: {other:?}"),
        })
    }

    pub fn pod(mut self, name: &str, change: impl FnOnce(&mut PodView)) -> Self {
        let pod = self.0.pods.iter_mut().find(|p| p.name.as_str() == name);
        change(pod.unwrap_or_else(|| panic!("no pod {name}")));
        self
    }

    pub fn build(self) -> Observation {
        self.0
    }
}
