//! The emulated Cinder (block storage API v3): version documents, microversion negotiation,
//! volumes (list, detail, show, admin actions) and the attachments API (3.27+), both under
//! `/v3/{project_id}/...` and the project-less `/v3/...`. Responses carry the keys of Cinder's
//! API samples for the negotiated microversion; the rules live in [`super::cloud`].

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::cloud::{Attachment, Cloud, Microversion, Refusal, Volume, VolumeAction, page};
use super::scenario::AttachStatus;
use super::{fault, keystone, world::World};

/// The oldest microversion served.
const MIN_VERSION: Microversion = Microversion(3, 0);
/// The newest microversion served.
const MAX_VERSION: Microversion = Microversion(3, 70);
/// The first microversion with the attachments API.
const ATTACHMENTS_VERSION: Microversion = Microversion(3, 27);
/// Cinder's `osapi_max_limit`: the largest page.
const MAX_LIMIT: usize = 1000;
/// The volume backend every volume lives on.
const BACKEND_HOST: &str = "cinder-volume@lvm#lvm";

/// The Cinder router.
pub fn router(world: World) -> Router {
    let api = || {
        Router::new()
            .route("/volumes", get(list_volumes))
            .route("/volumes/detail", get(list_volumes_detail))
            .route("/volumes/{volume_id}", get(show_volume))
            .route("/volumes/{volume_id}/action", post(volume_action))
            .route("/attachments", get(list_attachments))
            .route("/attachments/detail", get(list_attachments_detail))
            .route(
                "/attachments/{attachment_id}",
                get(show_attachment).delete(delete_attachment),
            )
    };
    let authenticated = Router::new()
        .nest("/v3/{project_id}", api())
        .nest("/v3", api())
        .route_layer(middleware::from_fn_with_state(
            world.clone(),
            keystone::require_token,
        ));
    let versioned = Router::new()
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .merge(authenticated)
        .layer(middleware::from_fn(negotiate));
    Router::new()
        .route("/", get(versions))
        .merge(versioned)
        .with_state(world)
}

/// Negotiates the microversion from `OpenStack-API-Version: volume 3.x` and echoes it.
async fn negotiate(mut request: Request<Body>, next: Next) -> Response {
    let requested = request
        .headers()
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|item| {
            let (service, version) = item.trim().split_once(' ')?;
            service
                .eq_ignore_ascii_case("volume")
                .then(|| version.trim().to_owned())
        });
    let version = match Microversion::negotiate(requested.as_deref(), MIN_VERSION, MAX_VERSION) {
        Ok(version) => version,
        Err((status, message)) => return fault::openstack(status, &message),
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("volume {version}")) {
        headers.insert("openstack-api-version", value);
    }
    headers.insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    response
}

fn version_body(cinder: &str) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": MAX_VERSION.to_string(),
        "min_version": MIN_VERSION.to_string(),
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{cinder}/v3/")}
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.volume+json;version=3"
        }]
    })
}

async fn versions(AxumState(world): AxumState<World>) -> Response {
    let cinder = world.lock().endpoints.cinder.clone();
    let body = json!({ "versions": [version_body(&cinder)] });
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

async fn version(AxumState(world): AxumState<World>) -> Response {
    let cinder = world.lock().endpoints.cinder.clone();
    Json(json!({ "versions": [version_body(&cinder)] })).into_response()
}

fn refuse(refusal: &Refusal) -> Response {
    fault::openstack(refusal.status(), &refusal.to_string())
}

fn volume_not_found(volume_id: &str) -> Response {
    refuse(&Refusal::NotFound(format!(
        "Volume {volume_id} could not be found."
    )))
}

/// Cinder's answer to a path that exists only from a later microversion.
fn not_in_version() -> Response {
    fault::openstack(StatusCode::NOT_FOUND, "The resource could not be found.")
}

fn cinder_time(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S.%6f").to_string()
}

/// The page size a query asks for, at most Cinder's `osapi_max_limit`.
fn limit(query: &HashMap<String, String>) -> Result<usize, Refusal> {
    match query.get("limit") {
        None => Ok(MAX_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .map(|l| l.min(MAX_LIMIT))
            .map_err(|_| {
                Refusal::BadRequest(format!(
                    "Invalid input received: limit must be an integer, not {text}"
                ))
            }),
    }
}

// ----- Volumes ---------------------------------------------------------------------------------

fn volume_links(cinder: &str, project_id: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{cinder}/v3/{project_id}/volumes/{id}")},
        {"rel": "bookmark", "href": format!("{cinder}/{project_id}/volumes/{id}")}
    ])
}

/// One attachment in a volume's view: `host_name` only to an admin (or a service).
fn volume_attachment_body(cloud: &Cloud, volume: &Volume, attachment: &Attachment) -> Value {
    let host_name = cloud
        .attachment_host(attachment)
        .filter(|_| cloud.is_admin());
    json!({
        "id": volume.id,
        "attachment_id": attachment.id,
        "volume_id": volume.id,
        "server_id": attachment.server_id,
        "host_name": host_name,
        "device": attachment.device,
        "attached_at": cinder_time(attachment.attached_at),
    })
}

/// A volume as `GET /volumes/{id}` and `/volumes/detail` show it at `version`. Its
/// `attachments` are only the `attached` ones (`_get_attachments` of Cinder's volume view).
/// A member does not see the backend host (`volume_extension:volume_host_attribute`), the
/// migration status (`volume_extension:volume_mig_status_attribute`, and the view's own
/// `is_admin` checks), `provider_id` or `cluster_name`.
fn volume_body(cloud: &Cloud, cinder: &str, volume: &Volume, version: Microversion) -> Value {
    let at_least = |minor: u16| version >= Microversion(3, minor);
    let admin = cloud.is_admin();
    let attachments: Vec<Value> = volume
        .attachments
        .iter()
        .filter(|attachment| attachment.status == AttachStatus::Attached)
        .map(|attachment| volume_attachment_body(cloud, volume, attachment))
        .collect();
    let mut body = json!({
        "id": volume.id,
        "name": volume.name,
        "description": null,
        "status": volume.status,
        "size": volume.size,
        "availability_zone": volume.zone,
        "bootable": if volume.bootable { "true" } else { "false" },
        "multiattach": volume.multiattach,
        "encrypted": false,
        "attachments": attachments,
        "links": volume_links(cinder, cloud.project_id(), &volume.id),
        "metadata": {},
        "created_at": cinder_time(volume.created),
        "updated_at": cinder_time(volume.updated),
        "volume_type": "__DEFAULT__",
        "snapshot_id": null,
        "source_volid": null,
        "consistencygroup_id": null,
        "replication_status": null,
        "user_id": cloud.user_id(),
        "os-vol-tenant-attr:tenant_id": cloud.project_id(),
    });
    if admin {
        body["migration_status"] = json!(volume.migration_status);
        body["os-vol-host-attr:host"] = json!(BACKEND_HOST);
        body["os-vol-mig-status-attr:migstat"] = json!(volume.migration_status);
        body["os-vol-mig-status-attr:name_id"] = Value::Null;
    }
    if at_least(13) {
        body["group_id"] = Value::Null;
    }
    if at_least(21) && admin {
        body["provider_id"] = Value::Null;
    }
    if at_least(48) {
        body["service_uuid"] = json!(super::cloud::derived_id("service", BACKEND_HOST));
        body["shared_targets"] = json!(false);
    }
    if at_least(61) && admin {
        body["cluster_name"] = Value::Null;
    }
    if at_least(63) {
        body["volume_type_id"] = json!(super::cloud::derived_id("volume-type", "__DEFAULT__"));
    }
    if at_least(65) {
        body["consumes_quota"] = json!(true);
    }
    body
}

async fn list_volumes(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    volume_list(&world, version, &query, false)
}

async fn list_volumes_detail(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    volume_list(&world, version, &query, true)
}

fn volume_list(
    world: &World,
    version: Microversion,
    query: &HashMap<String, String>,
    detail: bool,
) -> Response {
    let limit = match limit(query) {
        Ok(limit) => limit,
        Err(refusal) => return refuse(&refusal),
    };
    let state = world.lock();
    let cloud = &state.cloud;
    let cinder = &state.endpoints.cinder;
    let matching: Vec<&Volume> = cloud
        .volumes()
        .iter()
        .filter(|volume| {
            query
                .get("name")
                .is_none_or(|name| volume.name.as_ref() == Some(name))
        })
        .filter(|volume| query.get("status").is_none_or(|s| &volume.status == s))
        .collect();
    let Some((page, next)) = page(matching, |volume| volume.id.as_str(), query, limit) else {
        let marker = query.get("marker").map(String::as_str).unwrap_or_default();
        return refuse(&Refusal::NotFound(format!(
            "Marker {marker} could not be found."
        )));
    };
    let volumes: Vec<Value> = page
        .into_iter()
        .map(|volume| {
            if detail {
                volume_body(cloud, cinder, volume, version)
            } else {
                json!({
                    "id": volume.id,
                    "name": volume.name,
                    "links": volume_links(cinder, cloud.project_id(), &volume.id),
                })
            }
        })
        .collect();
    let mut body = json!({ "volumes": volumes });
    if let Some(next) = next {
        let path = if detail { "volumes/detail" } else { "volumes" };
        let href = format!("{cinder}/v3/{}/{path}?{next}", cloud.project_id());
        body["volumes_links"] = json!([{"rel": "next", "href": href}]);
    }
    Json(body).into_response()
}

async fn show_volume(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let volume_id = params.get("volume_id").cloned().unwrap_or_default();
    let state = world.lock();
    match state.cloud.volume(&volume_id) {
        Some(volume) => {
            let body = volume_body(&state.cloud, &state.endpoints.cinder, volume, version);
            Json(json!({ "volume": body })).into_response()
        }
        None => volume_not_found(&volume_id),
    }
}

/// Reads one admin action body: `{"os-force_detach": {...}}`, `{"os-detach": {...}}` or
/// `{"os-reset_status": {...}}`.
fn parse_action(body: &[u8]) -> Result<VolumeAction, Refusal> {
    let bad = Refusal::BadRequest;
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("Malformed request body".to_owned()));
    };
    let Some((name, args)) = body.iter().next() else {
        return Err(bad("Malformed request body".to_owned()));
    };
    let empty = Map::new();
    let args = match args {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err(bad(format!("Invalid input for {name}: expected an object"))),
    };
    let text = |key: &str| -> Result<Option<String>, Refusal> {
        match args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(other) => Err(bad(format!(
                "Invalid input for field/attribute {key}. Value: {other}. {other} is not of \
                 type 'string'"
            ))),
        }
    };
    match name.as_str() {
        "os-force_detach" => Ok(VolumeAction::ForceDetach {
            attachment_id: text("attachment_id")?,
        }),
        "os-detach" => Ok(VolumeAction::Detach {
            attachment_id: text("attachment_id")?,
        }),
        "os-reset_status" => {
            let action = VolumeAction::ResetStatus {
                status: text("status")?,
                attach_status: text("attach_status")?,
                migration_status: text("migration_status")?,
            };
            if args.is_empty() {
                return Err(bad(
                    "Must specify 'status', 'attach_status' or 'migration_status' for update."
                        .to_owned(),
                ));
            }
            Ok(action)
        }
        other => Err(bad(format!("There is no such action: {other}"))),
    }
}

async fn volume_action(
    AxumState(world): AxumState<World>,
    Path(params): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let volume_id = params.get("volume_id").cloned().unwrap_or_default();
    let action = match parse_action(&body) {
        Ok(action) => action,
        Err(refusal) => return refuse(&refusal),
    };
    let now_ms = world.now_ms();
    let mut state = world.lock();
    // Cinder finds the volume (404), then checks the policy of an admin action (403).
    let rule = match action {
        VolumeAction::ForceDetach { .. } => Some("force_detach"),
        VolumeAction::ResetStatus { .. } => Some("reset_status"),
        VolumeAction::Detach { .. } => None,
    };
    if let Some(rule) = rule
        && !state.cloud.is_admin()
    {
        if state.cloud.volume(&volume_id).is_none() {
            return volume_not_found(&volume_id);
        }
        return refuse(&Refusal::policy(&format!(
            "volume_extension:volume_admin_actions:{rule}"
        )));
    }
    match state.cloud.volume_action(&volume_id, &action, now_ms) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

// ----- Attachments (3.27+) ---------------------------------------------------------------------

fn attachment_summary(volume: &Volume, attachment: &Attachment) -> Value {
    json!({
        "id": attachment.id,
        "status": attachment.status.as_str(),
        "instance": attachment.server_id,
        "volume_id": volume.id,
    })
}

fn attachment_detail(volume: &Volume, attachment: &Attachment) -> Value {
    let mut body = attachment_summary(volume, attachment);
    // Cinder sets `attach_time` when the attachment completes.
    body["attached_at"] = match attachment.status {
        AttachStatus::Attached => json!(cinder_time(attachment.attached_at)),
        AttachStatus::Attaching | AttachStatus::Reserved => json!(""),
    };
    body["detached_at"] = json!("");
    body["attach_mode"] = json!("rw");
    body["connection_info"] = json!({});
    body
}

async fn list_attachments(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    attachment_list(&world, version, &query, false)
}

async fn list_attachments_detail(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    attachment_list(&world, version, &query, true)
}

fn attachment_list(
    world: &World,
    version: Microversion,
    query: &HashMap<String, String>,
    detail: bool,
) -> Response {
    if version < ATTACHMENTS_VERSION {
        return not_in_version();
    }
    let state = world.lock();
    let attachments: Vec<Value> = state
        .cloud
        .volumes()
        .iter()
        .filter(|volume| query.get("volume_id").is_none_or(|id| id == &volume.id))
        .flat_map(|volume| {
            volume
                .attachments
                .iter()
                .filter(|a| query.get("instance_id").is_none_or(|id| id == &a.server_id))
                .map(move |attachment| {
                    if detail {
                        attachment_detail(volume, attachment)
                    } else {
                        attachment_summary(volume, attachment)
                    }
                })
        })
        .collect();
    Json(json!({ "attachments": attachments })).into_response()
}

async fn show_attachment(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    if version < ATTACHMENTS_VERSION {
        return not_in_version();
    }
    let attachment_id = params.get("attachment_id").cloned().unwrap_or_default();
    let state = world.lock();
    match state.cloud.attachment(&attachment_id) {
        Some((volume, attachment)) => {
            Json(json!({ "attachment": attachment_detail(volume, attachment) })).into_response()
        }
        None => refuse(&Refusal::NotFound(format!(
            "Volume attachment could not be found with filter: attachment_id = {attachment_id}."
        ))),
    }
}

async fn delete_attachment(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    if version < ATTACHMENTS_VERSION {
        return not_in_version();
    }
    let attachment_id = params.get("attachment_id").cloned().unwrap_or_default();
    let now_ms = world.now_ms();
    let mut state = world.lock();
    let volume_id = state
        .cloud
        .attachment(&attachment_id)
        .map(|(volume, _)| volume.id.clone());
    if let Err(refusal) = state.cloud.delete_attachment(&attachment_id, now_ms) {
        return refuse(&refusal);
    }
    // Cinder answers with the attachments the volume still has.
    let remaining: Vec<Value> = volume_id
        .and_then(|id| state.cloud.volume(&id))
        .map(|volume| {
            volume
                .attachments
                .iter()
                .map(|attachment| attachment_summary(volume, attachment))
                .collect()
        })
        .unwrap_or_default();
    Json(json!({ "attachments": remaining })).into_response()
}
