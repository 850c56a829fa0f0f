//! The LINSTOR controller REST subset the LINSTOR backend and linstor-csi read: `GET /v1/nodes`,
//! `GET /v1/nodes/{node}` and `GET /v1/view/resources`, shaped after LINSTOR's OpenAPI
//! description (`Node`, `ResourceWithVolumes` with `layer_object.drbd`, `state` and volume
//! states), plus what linstor-csi's ControllerPublishVolume and ControllerUnpublishVolume do to
//! the replicas (for the emulated external-attacher).
//!
//! What is modelled, after the LINSTOR controller's own serializer (`Json.java`,
//! `apiToResourceWithVolumes`) and its event handler (`ResourceStateEventHandler.java`):
//!
//! - A replica on a satellite that is not `ONLINE` reports nothing fresh: no `state`, no
//!   `layer_object.drbd.connections`, `may_promote` or `promotion_score`, no volume `state`
//!   (the controller only knows what its satellites tell it).
//! - DRBD connections: a replica lists every peer replica (two diskless ones do not connect);
//!   a connection is up when both nodes are reachable by DRBD (by default while their satellite
//!   is `ONLINE`, see `drbd_connected`) and the scenario does not say it is down.
//! - `may_promote`, unless the scenario fixes it: the replica is not Primary itself, no
//!   connected peer is Primary, it reaches UpToDate data (its own disk, or a connected diskful
//!   peer's), and it has quorum: a strict majority of the voters (diskful and tie-breaker
//!   replicas) counting itself and its connected peers. `promotion_score`: 10102 when it may
//!   promote, else 0, unless the scenario fixes it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::fault;
use super::scenario::{self, ReplicaKind};
use super::world::World;

/// The storage pool of diskful replicas.
const POOL: &str = "lvm-thin";
/// The storage pool LINSTOR gives diskless replicas.
const DISKLESS_POOL: &str = "DfltDisklessStorPool";
/// The promotion score of a replica that may promote, when the scenario gives none.
const PROMOTION_SCORE: u32 = 10102;
/// The size of every emulated volume.
const SIZE_KIB: u64 = 1_048_576;

/// A LINSTOR satellite as the controller sees it.
#[derive(Debug, Clone)]
struct Satellite {
    name: String,
    kind: String,
    connection_status: String,
    /// Whether DRBD peers reach the node (independent of the controller's view).
    drbd_connected: bool,
}

/// One replica of a resource.
#[derive(Debug, Clone)]
struct Replica {
    name: String,
    node: String,
    kind: ReplicaKind,
    in_use: bool,
    may_promote: Option<bool>,
    promotion_score: Option<u32>,
    disk_state: Option<String>,
    connections: BTreeMap<String, bool>,
    /// Deleted while its satellite was unreachable: LINSTOR keeps it, flagged `DELETE`, until
    /// the satellite is back.
    deleting: bool,
}

impl Replica {
    fn is_voter(&self) -> bool {
        self.kind != ReplicaKind::Diskless
    }

    fn is_diskless(&self) -> bool {
        self.kind != ReplicaKind::Diskful
    }

    fn disk_state(&self) -> &str {
        match &self.disk_state {
            Some(state) => state,
            None if self.is_diskless() => "Diskless",
            None => "UpToDate",
        }
    }

    fn up_to_date(&self) -> bool {
        !self.is_diskless() && self.disk_state() == "UpToDate"
    }
}

/// The LINSTOR controller's view of its satellites and replicas.
#[derive(Debug, Clone)]
pub struct Linstor {
    nodes: Vec<Satellite>,
    replicas: Vec<Replica>,
    controller_down: bool,
    backup_controller: bool,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Linstor {
    /// The LINSTOR cluster a scenario describes.
    #[must_use]
    pub fn new(scenario: &scenario::Linstor) -> Self {
        let nodes = scenario
            .nodes
            .iter()
            .map(|n| Satellite {
                name: n.name.clone(),
                kind: n.kind.clone(),
                connection_status: n.connection_status.clone(),
                drbd_connected: n.drbd_connected.unwrap_or(n.connection_status == "ONLINE"),
            })
            .collect();
        let mut replicas: Vec<Replica> = scenario
            .resources
            .iter()
            .map(|r| Replica {
                name: r.name.clone(),
                node: r.node.value.clone(),
                kind: r.kind,
                in_use: r.in_use,
                may_promote: r.may_promote,
                promotion_score: r.promotion_score,
                disk_state: r.disk_state.clone(),
                connections: r.connections.clone(),
                deleting: false,
            })
            .collect();
        sort(&mut replicas);
        Self {
            nodes,
            replicas,
            controller_down: scenario.controller_down,
            backup_controller: scenario.backup_controller,
        }
    }

    /// Whether some controller endpoint answers (the first is up, or a backup serves).
    #[must_use]
    pub fn controller_reachable(&self) -> bool {
        !self.controller_down || self.backup_controller
    }

    /// Makes the controller unreachable for linstor-csi (the emulated external-attacher), or
    /// reachable again; the REST listeners are left as they are (tests break those with faults).
    pub fn set_controller_down(&mut self, down: bool) {
        self.controller_down = down;
        self.backup_controller &= !down;
    }

    /// Changes a satellite's connection status, and whether DRBD peers reach it (left out:
    /// whether it is `ONLINE`). A satellite back `ONLINE` carries out deletions it missed.
    pub fn set_node_status(&mut self, node: &str, status: &str, drbd_connected: Option<bool>) {
        let online = status == "ONLINE";
        for entry in self.nodes.iter_mut().filter(|n| same(&n.name, node)) {
            status.clone_into(&mut entry.connection_status);
            entry.drbd_connected = drbd_connected.unwrap_or(online);
        }
        if online {
            self.replicas
                .retain(|r| !(r.deleting && same(&r.node, node)));
        }
    }

    fn satellite(&self, node: &str) -> Option<&Satellite> {
        self.nodes.iter().find(|n| same(&n.name, node))
    }

    /// Whether the node's satellite is `ONLINE`.
    #[must_use]
    pub fn is_online(&self, node: &str) -> bool {
        self.satellite(node)
            .is_some_and(|n| n.connection_status == "ONLINE")
    }

    fn drbd_reachable(&self, node: &str) -> bool {
        self.satellite(node).is_some_and(|n| n.drbd_connected)
    }

    /// Whether a replica of `resource` stands on `node` (diskful or diskless, not being deleted).
    #[must_use]
    pub fn has_replica(&self, resource: &str, node: &str) -> bool {
        self.replicas
            .iter()
            .any(|r| same(&r.name, resource) && same(&r.node, node) && !r.deleting)
    }

    fn peers<'a>(&'a self, replica: &'a Replica) -> impl Iterator<Item = &'a Replica> + 'a {
        self.replicas.iter().filter(move |p| {
            same(&p.name, &replica.name)
                && !same(&p.node, &replica.node)
                && !(p.is_diskless() && replica.is_diskless())
        })
    }

    /// Whether DRBD connects `replica` to its peer `peer`.
    fn connected(&self, replica: &Replica, peer: &Replica) -> bool {
        let wanted = |from: &Replica, to: &str| {
            from.connections
                .iter()
                .find(|(name, _)| same(name, to))
                .is_none_or(|(_, up)| *up)
        };
        self.drbd_reachable(&replica.node)
            && self.drbd_reachable(&peer.node)
            && wanted(replica, &peer.node)
            && wanted(peer, &replica.node)
    }

    fn may_promote(&self, replica: &Replica) -> bool {
        if let Some(given) = replica.may_promote {
            return given;
        }
        let connected: Vec<&Replica> = self
            .peers(replica)
            .filter(|p| self.connected(replica, p))
            .collect();
        let voters = self
            .replicas
            .iter()
            .filter(|r| same(&r.name, &replica.name) && r.is_voter())
            .count();
        let reached =
            usize::from(replica.is_voter()) + connected.iter().filter(|p| p.is_voter()).count();
        let quorum = reached * 2 > voters;
        let data = replica.up_to_date() || connected.iter().any(|p| p.up_to_date());
        !replica.in_use && !connected.iter().any(|p| p.in_use) && quorum && data
    }

    fn node_json(node: &Satellite) -> Value {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, node.name.as_bytes());
        json!({
            "name": node.name,
            "type": node.kind,
            "props": { "CurStltConnName": "default", "NodeUname": node.name },
            "net_interfaces": [{
                "name": "default",
                "address": "127.0.0.1",
                "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN",
                "is_active": true,
                "uuid": uuid::Uuid::new_v5(&id, b"default"),
            }],
            "connection_status": node.connection_status,
            "uuid": id,
            "storage_providers": ["DISKLESS", "LVM", "LVM_THIN", "FILE", "FILE_THIN"],
            "resource_layers": ["DRBD", "LUKS", "STORAGE", "CACHE", "WRITECACHE"],
        })
    }

    /// The resource definition's place among all (its port and minor follow from it).
    fn definition_index(&self, resource: &str) -> u32 {
        let mut names: Vec<String> = self
            .replicas
            .iter()
            .map(|r| r.name.to_ascii_lowercase())
            .collect();
        names.dedup();
        let at = names
            .iter()
            .position(|n| *n == resource.to_ascii_lowercase())
            .unwrap_or(0);
        u32::try_from(at).unwrap_or(0)
    }

    fn replica_json(&self, replica: &Replica) -> Value {
        let index = self.definition_index(&replica.name);
        let port = 7000 + index;
        let minor = 1000 + index;
        let node_id = self
            .replicas
            .iter()
            .filter(|r| same(&r.name, &replica.name))
            .position(|r| same(&r.node, &replica.node))
            .unwrap_or(0);
        let online = self.is_online(&replica.node);
        let drbd_device = format!("/dev/drbd{minor}");
        let (pool, provider) = if replica.is_diskless() {
            (DISKLESS_POOL, "DISKLESS")
        } else {
            (POOL, "LVM_THIN")
        };
        let allocated = if replica.is_diskless() { 0 } else { SIZE_KIB };

        let mut storage_volume = json!({
            "volume_number": 0,
            "allocated_size_kib": allocated,
            "usable_size_kib": allocated,
        });
        let mut drbd_volume = json!({
            "drbd_volume_definition": { "volume_number": 0, "minor_number": minor },
            "device_path": drbd_device,
            "allocated_size_kib": allocated,
            "usable_size_kib": allocated,
        });
        if !replica.is_diskless() {
            let backing = format!("/dev/linstor_thinpool/{}_00000", replica.name);
            storage_volume["device_path"] = backing.clone().into();
            drbd_volume["backing_device"] = backing.into();
        }

        let mut drbd = json!({
            "drbd_resource_definition": {
                "peer_slots": 7,
                "al_stripes": 1,
                "al_stripe_size_kib": 32,
                "port": port,
                "transport_type": "IP",
                "down": false,
            },
            "node_id": node_id,
            "tcp_ports": [port],
            "peer_slots": 7,
            "al_stripes": 1,
            "al_size": 32,
            "drbd_volumes": [drbd_volume.clone()],
        });
        let mut flags = Vec::new();
        if replica.deleting {
            flags.push("DELETE");
        }
        if replica.is_diskless() {
            flags.extend(["DISKLESS", "DRBD_DISKLESS"]);
        }
        if replica.kind == ReplicaKind::TieBreaker {
            flags.push("TIE_BREAKER");
        }

        let mut volume = json!({
            "volume_number": 0,
            "storage_pool_name": pool,
            "provider_kind": provider,
            "device_path": drbd_device,
            "allocated_size_kib": allocated,
            "uuid": uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}/{}/0", replica.name, replica.node).as_bytes(),
            ),
            "layer_data_list": [
                { "type": "DRBD", "data": drbd_volume },
                { "type": "STORAGE", "data": storage_volume.clone() },
            ],
        });
        let mut object = json!({
            "name": replica.name,
            "node_name": replica.node,
            "props": { "StorPoolName": pool },
            "layer_object": {
                "children": [{
                    "type": "STORAGE",
                    "storage": { "storage_volumes": [storage_volume] },
                }],
                "type": "DRBD",
            },
            "uuid": uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}/{}", replica.name, replica.node).as_bytes(),
            ),
        });
        if !flags.is_empty() {
            object["flags"] = json!(flags);
        }
        if online {
            // Fresh only from a connected satellite (`apiToResourceWithVolumes`).
            let connections: Map<String, Value> = self
                .peers(replica)
                .map(|peer| {
                    let up = self.connected(replica, peer);
                    let message = if up { "Connected" } else { "Connecting" };
                    (
                        peer.node.clone(),
                        json!({ "connected": up, "message": message }),
                    )
                })
                .collect();
            let may_promote = self.may_promote(replica);
            let score =
                replica
                    .promotion_score
                    .unwrap_or(if may_promote { PROMOTION_SCORE } else { 0 });
            if !connections.is_empty() {
                drbd["connections"] = Value::Object(connections);
            }
            drbd["promotion_score"] = score.into();
            drbd["may_promote"] = may_promote.into();
            object["state"] = json!({ "in_use": replica.in_use });
            volume["state"] = json!({ "disk_state": replica.disk_state() });
        }
        object["layer_object"]["drbd"] = drbd;
        object["volumes"] = json!([volume]);
        object
    }

    /// linstor-csi's ControllerPublishVolume for `resource` on `node`: the DRBD device path, or
    /// the error the external-attacher writes into `status.attachError`. Creates a diskless
    /// replica where the node has none (`Resources.MakeAvailable` with `Diskful: false`).
    ///
    /// # Errors
    /// As linstor-csi answers: no replica anywhere, the node's satellite not `ONLINE`, two other
    /// replicas Primary.
    pub fn publish(&mut self, resource: &str, node: &str) -> Result<String, String> {
        // pkg/driver/driver.go:824-833: FindByID, NotFound when LINSTOR has no such volume.
        if !self.replicas.iter().any(|r| same(&r.name, resource)) {
            return Err(format!(
                "rpc error: code = NotFound desc = ControllerPublishVolume failed for \
                 {resource}: volume not present in storage backend"
            ));
        }
        // driver.go:847 NodeAvailable (pkg/client/linstor.go:2541): the satellite must be ONLINE.
        match self.satellite(node) {
            None => {
                return Err(format!(
                    "rpc error: code = NotFound desc = ControllerPublishVolume failed for \
                     {resource} on node {node}: node {node} not found"
                ));
            }
            Some(n) if n.connection_status != "ONLINE" => {
                return Err(format!(
                    "rpc error: code = NotFound desc = ControllerPublishVolume failed for \
                     {resource} on node {node}: node {}",
                    n.connection_status
                ));
            }
            Some(_) => {}
        }
        // linstor.go:859-867: refused when two other replicas are in use.
        let in_use_elsewhere = self
            .replicas
            .iter()
            .filter(|r| same(&r.name, resource) && !same(&r.node, node) && r.in_use)
            .filter(|r| self.is_online(&r.node))
            .count();
        if in_use_elsewhere >= 2 {
            return Err(format!(
                "rpc error: code = Internal desc = ControllerPublishVolume failed for \
                 {resource}: two other resources already InUse"
            ));
        }
        // linstor.go:880: make it available on the node, diskless where it has no replica.
        if let Some(pending) = self
            .replicas
            .iter_mut()
            .find(|r| same(&r.name, resource) && same(&r.node, node))
        {
            pending.deleting = false;
        } else {
            self.replicas.push(Replica {
                name: resource.to_owned(),
                node: node.to_owned(),
                kind: ReplicaKind::Diskless,
                in_use: false,
                may_promote: None,
                promotion_score: None,
                disk_state: None,
                connections: BTreeMap::new(),
                deleting: false,
            });
            sort(&mut self.replicas);
        }
        Ok(format!(
            "/dev/drbd{}",
            1000 + self.definition_index(resource)
        ))
    }

    /// linstor-csi's ControllerUnpublishVolume for `resource` on `node`.
    ///
    /// What linstor-csi does (piraeusdatastore/linstor-csi 1.12.0): `ControllerUnpublishVolume`
    /// (pkg/driver/driver.go:911) calls `Linstor.Detach` (pkg/client/linstor.go:919), which only
    /// talks to the LINSTOR controller, never to the node: no replica on the node is success
    /// (linstor.go:949-952, `nil404`); a diskful replica is left alone and is success
    /// (linstor.go:954-957, "resource not a diskless, not deleting"); a diskless one is deleted
    /// with `KeepTiebreaker` (linstor.go:963), and LINSTOR's `FailInUse` refusal counts as
    /// success (linstor.go:964-967). For a node whose satellite is OFFLINE the controller stores
    /// the deletion and answers with the warning "No active connection to satellite"
    /// (linstor-server ResponseUtils.java:209, `WARN_NOT_CONNECTED`, no error bit), so Detach
    /// succeeds too and the finalizer goes: the replica stays listed, flagged `DELETE`, until
    /// the satellite is back. Only a controller that cannot be reached fails it (the caller's
    /// concern).
    pub fn unpublish(&mut self, resource: &str, node: &str) {
        let online = self.is_online(node);
        let Some(at) = self
            .replicas
            .iter()
            .position(|r| same(&r.name, resource) && same(&r.node, node))
        else {
            return;
        };
        let replica = &mut self.replicas[at];
        if replica.kind != ReplicaKind::Diskless || (online && replica.in_use) {
            // Diskful or tie-breaker kept; a diskless one its satellite reports in use is
            // refused with FailInUse.
            return;
        }
        if online {
            self.replicas.remove(at);
        } else {
            replica.deleting = true;
        }
    }
}

/// LINSTOR lists resource definitions by name, each one's replicas by node.
fn sort(replicas: &mut [Replica]) {
    replicas.sort_by_key(|r| (r.name.to_ascii_lowercase(), r.node.to_ascii_lowercase()));
}

/// The list parameters LINSTOR's list endpoints take; repeated keys (`nodes=a&nodes=b`) make a
/// list, as JAX-RS reads them.
#[derive(Debug, Default)]
struct ListQuery {
    nodes: Vec<String>,
    resources: Vec<String>,
    storage_pools: Vec<String>,
    limit: i64,
    offset: i64,
}

/// Why LINSTOR refuses a list request.
#[derive(Debug)]
enum Refusal {
    /// An `int` parameter that does not parse: JAX-RS answers 404 with no body.
    BadNumber,
    /// LINSTOR's own refusal (an invalid name, a negative offset): 500 and its message.
    Invalid(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::BadNumber => StatusCode::NOT_FOUND.into_response(),
            Self::Invalid(message) => fault::linstor(StatusCode::INTERNAL_SERVER_ERROR, &message),
        }
    }
}

impl ListQuery {
    /// Reads the pairs; `Err` is why LINSTOR refuses them.
    fn parse(pairs: &[(String, String)]) -> Result<Self, Refusal> {
        let mut query = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "nodes" => query.nodes.push(value.clone()),
                "resources" => query.resources.push(value.clone()),
                "storage_pools" => query.storage_pools.push(value.clone()),
                "limit" | "offset" => {
                    // JAX-RS answers 404 when an `int` query parameter does not parse.
                    let Ok(number) = value.trim().parse::<i32>() else {
                        return Err(Refusal::BadNumber);
                    };
                    if key == "limit" {
                        query.limit = number.into();
                    } else {
                        query.offset = number.into();
                    }
                }
                _ => {}
            }
        }
        for node in &query.nodes {
            if !scenario::is_linstor_node_name(node) {
                return Err(Refusal::Invalid(format!(
                    "The given node name '{node}' is invalid."
                )));
            }
        }
        for resource in &query.resources {
            if !scenario::is_linstor_resource_name(resource) {
                return Err(Refusal::Invalid(format!(
                    "The given resource name '{resource}' is invalid."
                )));
            }
        }
        Ok(query)
    }

    fn wants(list: &[String], name: &str) -> bool {
        list.is_empty() || list.iter().any(|item| same(item, name))
    }

    /// `skip(offset).limit(limit)` when `limit` is positive, else everything.
    fn page(&self, items: Vec<Value>) -> Result<Vec<Value>, Refusal> {
        if self.limit <= 0 {
            return Ok(items);
        }
        let (Ok(offset), Ok(limit)) = (usize::try_from(self.offset), usize::try_from(self.limit))
        else {
            // Java's Stream.skip refuses a negative count.
            return Err(Refusal::Invalid(format!("negative offset {}", self.offset)));
        };
        Ok(items.into_iter().skip(offset).take(limit).collect())
    }
}

/// The LINSTOR REST router.
pub fn router(world: World) -> Router {
    Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{node}", get(node))
        .route("/v1/view/resources", get(resources))
        .with_state(world)
}

fn no_cluster() -> Response {
    fault::linstor(
        StatusCode::NOT_FOUND,
        "this scenario has no LINSTOR cluster",
    )
}

async fn nodes(
    AxumState(world): AxumState<World>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let query = match ListQuery::parse(&pairs) {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    let state = world.lock();
    let Some(linstor) = state.linstor.as_ref() else {
        return no_cluster();
    };
    let mut list: Vec<&Satellite> = linstor
        .nodes
        .iter()
        .filter(|n| ListQuery::wants(&query.nodes, &n.name))
        .collect();
    list.sort_by_key(|n| n.name.to_ascii_lowercase());
    match query.page(list.into_iter().map(Linstor::node_json).collect()) {
        Ok(page) => Json(page).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn node(AxumState(world): AxumState<World>, Path(name): Path<String>) -> Response {
    let state = world.lock();
    let Some(linstor) = state.linstor.as_ref() else {
        return no_cluster();
    };
    match linstor.satellite(&name) {
        Some(node) => Json(Linstor::node_json(node)).into_response(),
        None => fault::linstor(StatusCode::NOT_FOUND, &format!("Node '{name}' not found.")),
    }
}

async fn resources(
    AxumState(world): AxumState<World>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let query = match ListQuery::parse(&pairs) {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    let state = world.lock();
    let Some(linstor) = state.linstor.as_ref() else {
        return no_cluster();
    };
    let list: Vec<Value> = linstor
        .replicas
        .iter()
        .filter(|r| ListQuery::wants(&query.nodes, &r.node))
        .filter(|r| ListQuery::wants(&query.resources, &r.name))
        .filter(|r| {
            let pool = if r.is_diskless() { DISKLESS_POOL } else { POOL };
            ListQuery::wants(&query.storage_pools, pool)
        })
        .map(|r| linstor.replica_json(r))
        .collect();
    match query.page(list) {
        Ok(page) => Json(page).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
