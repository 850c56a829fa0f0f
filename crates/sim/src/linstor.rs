//! The LINSTOR controller REST subset the LINSTOR backend reads: `GET /v1/nodes` and
//! `GET /v1/view/resources`, shaped after LINSTOR's OpenAPI description (`Node`, `Resource`
//! with `layer_object.drbd` and `state`).

use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fault;
use super::scenario::{self, Service};
use super::world::World;

/// The LINSTOR controller's view of its satellites and replicas.
#[derive(Debug, Clone)]
pub struct Linstor {
    nodes: Vec<scenario::LinstorNode>,
    resources: Vec<scenario::LinstorResource>,
}

impl Linstor {
    /// The LINSTOR cluster a scenario describes.
    #[must_use]
    pub fn new(scenario: &scenario::Linstor) -> Self {
        Self {
            nodes: scenario.nodes.clone(),
            resources: scenario.resources.clone(),
        }
    }

    /// Changes a satellite's connection status; replicas elsewhere lose their connection to it
    /// when it is not `ONLINE`, as DRBD peers do.
    pub fn set_node_status(&mut self, node: &str, status: &str) {
        for entry in self.nodes.iter_mut().filter(|n| n.name == node) {
            status.clone_into(&mut entry.connection_status);
        }
        let online = status == "ONLINE";
        for resource in &mut self.resources {
            if let Some(connected) = resource.connections.get_mut(node) {
                *connected = online;
            }
        }
    }

    fn node_json(node: &scenario::LinstorNode) -> Value {
        json!({
            "name": node.name,
            "type": "SATELLITE",
            "flags": [],
            "props": {},
            "net_interfaces": [{
                "name": "default",
                "address": "127.0.0.1",
                "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN",
                "is_active": true,
            }],
            "connection_status": node.connection_status,
            "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, node.name.as_bytes()),
            "storage_providers": ["LVM_THIN", "DISKLESS"],
            "resource_layers": ["DRBD", "STORAGE"],
        })
    }

    fn resource_json(&self, resource: &scenario::LinstorResource) -> Value {
        let node_online = self
            .nodes
            .iter()
            .any(|n| n.name == resource.node.value && n.connection_status == "ONLINE");
        let connections: serde_json::Map<String, Value> = resource
            .connections
            .iter()
            .map(|(peer, up)| {
                let message = if *up { "Connected" } else { "Connecting" };
                (peer.clone(), json!({ "connected": up, "message": message }))
            })
            .collect();
        let mut state = json!({ "in_use": resource.in_use });
        if !node_online {
            // The controller cannot ask an offline satellite: the state is unknown.
            state = json!({});
        }
        json!({
            "name": resource.name,
            "node_name": resource.node.value,
            "props": {},
            "flags": [],
            "layer_object": {
                "children": [],
                "type": "DRBD",
                "drbd": {
                    "drbd_resource_definition": { "resource_name_suffix": "", "port": 7000 },
                    "node_id": 0,
                    "peer_slots": 7,
                    "al_stripes": 1,
                    "al_size": 32,
                    "flags": [],
                    "drbd_volumes": [],
                    "connections": connections,
                    "promotion_score": if resource.may_promote { 10102 } else { 0 },
                    "may_promote": resource.may_promote,
                },
            },
            "state": state,
            "uuid": uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}/{}", resource.name, resource.node.value).as_bytes(),
            ),
            "volumes": [{
                "volume_number": 0,
                "storage_pool_name": "lvm-thin",
                "provider_kind": "LVM_THIN",
                "device_path": "/dev/drbd1000",
                "allocated_size_kib": 1_048_576,
                "state": { "disk_state": resource.disk_state },
                "layer_data_list": [{ "type": "DRBD", "data": {} }],
            }],
        })
    }
}

#[derive(Debug, Deserialize)]
struct Filter {
    #[serde(default)]
    nodes: Option<String>,
    #[serde(default)]
    resources: Option<String>,
}

fn listed(filter: Option<&String>, name: &str) -> bool {
    filter.is_none_or(|list| list.split(',').any(|item| item.eq_ignore_ascii_case(name)))
}

/// The LINSTOR REST router.
pub fn router(world: World) -> Router {
    Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/view/resources", get(resources))
        .with_state(world)
}

async fn nodes(AxumState(world): AxumState<World>, Query(filter): Query<Filter>) -> Response {
    let state = world.lock();
    let Some(linstor) = state.linstor.as_ref() else {
        return fault::linstor(
            StatusCode::NOT_FOUND,
            "this scenario has no LINSTOR cluster",
        );
    };
    let nodes: Vec<Value> = linstor
        .nodes
        .iter()
        .filter(|n| listed(filter.nodes.as_ref(), &n.name))
        .map(Linstor::node_json)
        .collect();
    Json(nodes).into_response()
}

async fn resources(AxumState(world): AxumState<World>, Query(filter): Query<Filter>) -> Response {
    let state = world.lock();
    let Some(linstor) = state.linstor.as_ref() else {
        return fault::error(
            Service::Linstor,
            StatusCode::NOT_FOUND,
            "this scenario has no LINSTOR cluster",
        );
    };
    let resources: Vec<Value> = linstor
        .resources
        .iter()
        .filter(|r| listed(filter.nodes.as_ref(), &r.node.value))
        .filter(|r| listed(filter.resources.as_ref(), &r.name))
        .map(|r| linstor.resource_json(r))
        .collect();
    Json(resources).into_response()
}
