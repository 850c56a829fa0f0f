//! The emulated Nova (compute API v2.1): version documents, microversion negotiation, servers
//! (list and detail with Nova's filters, `changes-since` and `changes-before`, paging and next
//! links, in the `list` module; show, delete; the actions `os-stop`, `os-start`, `evacuate`),
//! `os-volume_attachments` (list, show, detach) and `os-services` (list, force-down). Responses
//! carry the keys of Nova's API samples for the negotiated microversion; the rules live in
//! [`super::cloud`].

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::cloud::{Cloud, ComputeHost, Microversion, Refusal, Server, derived_id};
use super::{fault, keystone, world::World};

mod isotime;
mod list;

/// The oldest microversion served.
const MIN_VERSION: Microversion = Microversion(2, 1);
/// The newest microversion served.
const MAX_VERSION: Microversion = Microversion(2, 96);
/// The flavor every server has.
const FLAVOR_ID: &str = "3";
/// Its name.
const FLAVOR_NAME: &str = "m1.medium";
/// The image servers that do not boot from a volume were built from.
const IMAGE_ID: &str = "0b2c6f5b-3c1e-4a7e-9a0e-7d7c1f0f5a11";
/// The statuses in which Nova shows `progress` (`ViewBuilder._progress_statuses`).
const PROGRESS_STATUSES: [&str; 6] = [
    "ACTIVE",
    "BUILD",
    "REBUILD",
    "RESIZE",
    "VERIFY_RESIZE",
    "MIGRATING",
];
/// The network every address is on.
const NETWORK: &str = "private";
/// The services on the controller host, before the compute services.
const CONTROL_SERVICES: [&str; 2] = ["nova-scheduler", "nova-conductor"];
/// The controller host's name.
const CONTROLLER: &str = "controller";

/// The Nova router.
pub fn router(world: World) -> Router {
    let api = Router::new()
        .route("/servers", get(list_servers))
        .route("/servers/detail", get(list_servers_detail))
        .route(
            "/servers/{server_id}",
            get(show_server).delete(delete_server),
        )
        .route("/servers/{server_id}/action", post(server_action))
        .route(
            "/servers/{server_id}/os-volume_attachments",
            get(list_attachments).post(attach),
        )
        .route(
            "/servers/{server_id}/os-volume_attachments/{volume_id}",
            get(show_attachment).delete(detach),
        )
        .route("/os-services", get(list_services))
        .route("/os-services/{service_id}", put(update_service))
        .route("/flavors", get(list_flavors))
        .route("/flavors/detail", get(list_flavors_detail))
        .route("/flavors/{flavor_id}", get(show_flavor))
        .route_layer(middleware::from_fn_with_state(
            world.clone(),
            keystone::require_token,
        ));
    let versioned = Router::new()
        .route("/v2.1", get(version))
        .route("/v2.1/", get(version))
        .nest("/v2.1", api)
        .layer(middleware::from_fn(negotiate));
    Router::new()
        .route("/", get(versions))
        .merge(versioned)
        .with_state(world)
}

/// Negotiates the microversion of a request and echoes it in the response headers.
async fn negotiate(mut request: Request<Body>, next: Next) -> Response {
    let headers = request.headers();
    let from_standard = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|item| {
            let (service, version) = item.trim().split_once(' ')?;
            service
                .eq_ignore_ascii_case("compute")
                .then(|| version.trim().to_owned())
        });
    let legacy = headers
        .get("x-openstack-nova-api-version")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let requested = from_standard.or(legacy);
    let version = match Microversion::negotiate(requested.as_deref(), MIN_VERSION, MAX_VERSION) {
        Ok(version) => version,
        Err((status, message)) => return fault::openstack(status, &message),
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("compute {version}")) {
        headers.insert("openstack-api-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&version.to_string()) {
        headers.insert("x-openstack-nova-api-version", value);
    }
    headers.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

fn version_body(nova: &str, with_media_types: bool) -> Value {
    let mut body = json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_VERSION.to_string(),
        "min_version": MIN_VERSION.to_string(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{nova}/v2.1/")}],
    });
    if with_media_types {
        body["links"] = json!([
            {"rel": "self", "href": format!("{nova}/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
        ]);
        body["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1"
        }]);
    }
    body
}

async fn versions(AxumState(world): AxumState<World>) -> Response {
    let nova = world.lock().endpoints.nova.clone();
    let legacy = json!({
        "id": "v2.0",
        "status": "DEPRECATED",
        "version": "",
        "min_version": "",
        "updated": "2025-07-04T12:00:00Z",
        "links": [{"rel": "self", "href": format!("{nova}/v2/")}],
    });
    Json(json!({ "versions": [legacy, version_body(&nova, false)] })).into_response()
}

async fn version(AxumState(world): AxumState<World>) -> Response {
    let nova = world.lock().endpoints.nova.clone();
    Json(json!({ "version": version_body(&nova, true) })).into_response()
}

fn refuse(refusal: &Refusal) -> Response {
    fault::openstack(refusal.status(), &refusal.to_string())
}

fn not_found(server_id: &str) -> Response {
    fault::openstack(
        StatusCode::NOT_FOUND,
        &format!("Instance {server_id} could not be found."),
    )
}

// ----- Servers ---------------------------------------------------------------------------------

async fn list_servers(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    server_list(&world, version, &query, false)
}

async fn list_servers_detail(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    server_list(&world, version, &query, true)
}

/// `GET /servers` and `GET /servers/detail`: the servers the query selects (see [`list`]), in
/// Nova's order, one page at a time, with a next link when the page is full.
fn server_list(
    world: &World,
    version: Microversion,
    query: &[(String, String)],
    detail: bool,
) -> Response {
    let now_ms = world.now_ms();
    let state = world.lock();
    let context = list::Context {
        version,
        admin: state.cloud.is_admin(),
        detail,
        max_limit: state.cloud.max_limit(),
    };
    let query = match list::ServerQuery::read(query, &context) {
        Ok(list::Checked::List(query)) => query,
        Ok(list::Checked::Nothing) => return Json(json!({ "servers": [] })).into_response(),
        Err(refusal) => return refuse(&refusal),
    };
    let listed: Vec<&Server> = state.cloud.servers_as_listed().collect();
    let (page, next) = match query.page(&listed) {
        Ok(paged) => paged,
        Err(refusal) => return refuse(&refusal),
    };
    let nova = &state.endpoints.nova;
    let servers: Vec<Value> = page
        .into_iter()
        .map(|server| {
            if detail {
                server_body(&state.cloud, nova, server, version, false, now_ms)
            } else {
                let links = links(nova, "servers", &server.id);
                json!({"id": server.id, "name": server.name, "links": links})
            }
        })
        .collect();
    let mut body = json!({ "servers": servers });
    if let Some(next) = next {
        let path = if detail { "servers/detail" } else { "servers" };
        body["servers_links"] =
            json!([{"rel": "next", "href": format!("{nova}/v2.1/{path}?{next}")}]);
    }
    Json(body).into_response()
}

async fn show_server(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Response {
    let now_ms = world.now_ms();
    let state = world.lock();
    match state.cloud.server(&server_id) {
        Some(server) => {
            let nova = &state.endpoints.nova;
            let body = server_body(&state.cloud, nova, server, version, true, now_ms);
            Json(json!({ "server": body })).into_response()
        }
        None => not_found(&server_id),
    }
}

fn links(nova: &str, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{nova}/v2.1/{collection}/{id}")},
        {"rel": "bookmark", "href": format!("{nova}/{collection}/{id}")}
    ])
}

fn nova_time(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The MAC address Neutron would give the port of an address.
fn mac(server_id: &str, addr: &str) -> String {
    let id = derived_id("port", &format!("{server_id}/{addr}"));
    let bytes = id.as_bytes();
    let pair = |i: usize| String::from_utf8_lossy(&bytes[i..i + 2]).into_owned();
    format!("fa:16:3e:{}:{}:{}", pair(0), pair(2), pair(4))
}

/// A server as `GET /servers/{id}` (and, without `server_groups`, `/servers/detail`) shows it
/// at `version` to the cloud's user: the `OS-EXT-SRV-ATTR:*` fields
/// (`os_compute_api:os-extended-server-attributes`) and `host_status`
/// (`os_compute_api:servers:show:host_status`) only to an admin, as Nova's default policy has
/// it; from 2.90 everyone sees `OS-EXT-SRV-ATTR:hostname`. As the view builder has it
/// (`views/servers.py` `show`): `progress` only in a status that has one, `security_groups`
/// only for a server with ports (Neutron's bindings). A deleted server (listed only by a
/// `changes-since` or `changes-before` query, or an admin's `deleted`) has no addresses (Neutron's
/// `deallocate_for_instance` emptied its network cache), no volumes (its block device mappings
/// are soft-deleted), its `terminated_at`, status `DELETED` and vm_state `deleted`.
fn server_body(
    cloud: &Cloud,
    nova: &str,
    server: &Server,
    version: Microversion,
    show: bool,
    now_ms: u64,
) -> Value {
    let admin = cloud.is_admin();
    let at_least = |minor: u16| version >= Microversion(2, minor);
    let addresses: Vec<Value> = server
        .addresses
        .iter()
        .filter(|_| !server.deleted())
        .map(|addr| {
            json!({
                "addr": addr,
                "version": if addr.contains(':') { 6 } else { 4 },
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": mac(&server.id, addr),
            })
        })
        .collect();
    let volumes: Vec<Value> = cloud
        .server_attachments(&server.id)
        .filter(|_| !server.deleted())
        .map(|(volume, _)| {
            if at_least(3) {
                json!({"id": volume.id, "delete_on_termination": false})
            } else {
                json!({"id": volume.id})
            }
        })
        .collect();
    let image = if cloud.boots_from_volume(&server.id) {
        json!("")
    } else {
        let href = format!("{nova}/images/{IMAGE_ID}");
        json!({"id": IMAGE_ID, "links": [{"rel": "bookmark", "href": href}]})
    };
    let flavor = if at_least(47) {
        json!({
            "vcpus": 2, "ram": 4096, "disk": 20, "ephemeral": 0, "swap": 0,
            "original_name": FLAVOR_NAME, "extra_specs": {}
        })
    } else {
        let href = format!("{nova}/flavors/{FLAVOR_ID}");
        json!({"id": FLAVOR_ID, "links": [{"rel": "bookmark", "href": href}]})
    };
    let host = server.host.as_deref();
    let host_id = host
        .map(|host| derived_id("host", &format!("{}/{host}", cloud.project_id())))
        .unwrap_or_default();
    let launched = nova_time(server.created).replace('Z', ".000000");
    let terminated = server
        .deleted_at
        .map(|at| nova_time(at).replace('Z', ".000000"));
    let mut body = json!({
        "id": server.id,
        "name": server.name,
        "status": server.status_str(),
        "tenant_id": cloud.project_id(),
        "user_id": cloud.user_id(),
        "metadata": {},
        "hostId": host_id,
        "image": image,
        "flavor": flavor,
        "created": nova_time(server.created),
        "updated": nova_time(server.updated),
        "addresses": if addresses.is_empty() { json!({}) } else { json!({ NETWORK: addresses }) },
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(nova, "servers", &server.id),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": server.zone,
        "config_drive": "",
        "key_name": null,
        "OS-SRV-USG:launched_at": launched,
        "OS-SRV-USG:terminated_at": terminated,
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:vm_state": server.vm_state(),
        "OS-EXT-STS:power_state": server.power_state,
        "os-extended-volumes:volumes_attached": volumes,
    });
    if PROGRESS_STATUSES.contains(&server.status_str()) {
        body["progress"] = json!(0);
    }
    if !server.deleted() && !server.addresses.is_empty() {
        body["security_groups"] = json!([{"name": "default"}]);
    }
    if admin {
        body["OS-EXT-SRV-ATTR:host"] = json!(host);
        body["OS-EXT-SRV-ATTR:instance_name"] = json!(server.instance_name);
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(host);
    }
    if at_least(3) && admin {
        body["OS-EXT-SRV-ATTR:hostname"] = json!(server.name);
        body["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!(
            "r-{}",
            server.id.chars().take(8).collect::<String>()
        ));
        body["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
        body["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
        body["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
        body["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
        body["OS-EXT-SRV-ATTR:user_data"] = Value::Null;
    }
    if at_least(9) {
        body["locked"] = json!(false);
    }
    if at_least(16) && admin {
        body["host_status"] = json!(cloud.host_status(server, now_ms).as_str());
    }
    if at_least(19) {
        body["description"] = Value::Null;
    }
    if at_least(26) {
        body["tags"] = json!([]);
    }
    if at_least(63) {
        body["trusted_image_certificates"] = Value::Null;
    }
    if at_least(71) && show {
        body["server_groups"] = json!([]);
    }
    if at_least(73) {
        body["locked_reason"] = Value::Null;
    }
    if at_least(90) && !admin {
        body["OS-EXT-SRV-ATTR:hostname"] = json!(server.name);
    }
    if at_least(96) {
        body["pinned_availability_zone"] = Value::Null;
    }
    body
}

/// `DELETE /servers/{id}`: 204, the rules in [`Cloud::delete_server`].
async fn delete_server(
    AxumState(world): AxumState<World>,
    Path(server_id): Path<String>,
) -> Response {
    let now_ms = world.now_ms();
    match world.lock().cloud.delete_server(&server_id, now_ms) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

/// The `evacuate` action's body as Nova's schema for `version` reads it: `host`, and `force`
/// from 2.29 to 2.67 (only with a host). Returns the host and whether the scheduler picks or
/// checks the destination (no host, or a host from 2.29 without `force`).
fn evacuate_request(
    body: &Value,
    version: Microversion,
) -> Result<(Option<String>, bool), Refusal> {
    let invalid = || Refusal::BadRequest("Invalid input for field/attribute evacuate.".to_owned());
    let request = body.as_object().ok_or_else(invalid)?;
    let host = match request.get("host") {
        None => None,
        Some(Value::String(host)) => Some(host.clone()),
        Some(_) => return Err(invalid()),
    };
    let forcible = version >= Microversion(2, 29) && version < Microversion(2, 68);
    let force = match request.get("force") {
        None => false,
        Some(Value::Bool(force)) if forcible => *force,
        Some(_) if forcible => return Err(invalid()),
        Some(_) => {
            return Err(Refusal::BadRequest(
                "Additional properties are not allowed ('force' was unexpected)".to_owned(),
            ));
        }
    };
    if force && host.is_none() {
        return Err(Refusal::BadRequest(
            "Can't force to a non-provided destination".to_owned(),
        ));
    }
    let scheduled = host.is_none() || (version >= Microversion(2, 29) && !force);
    Ok((host, scheduled))
}

async fn server_action(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Response {
    let Some((action, argument)) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .as_object()
                .and_then(|map| map.iter().next().map(|(k, v)| (k.clone(), v.clone())))
        })
    else {
        return fault::openstack(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let now_ms = world.now_ms();
    let mut state = world.lock();
    let result = match action.as_str() {
        "os-stop" => state.cloud.stop(&server_id, now_ms),
        "os-start" => state.cloud.start(&server_id, now_ms),
        "evacuate" => {
            // Nova answers 200: the generated admin password before 2.14, no body from then;
            // from 2.95 the evacuated server is left stopped.
            let result = evacuate_request(&argument, version).and_then(|(host, scheduled)| {
                let stopped = version >= Microversion(2, 95);
                state
                    .cloud
                    .evacuate(&server_id, host.as_deref(), scheduled, stopped, now_ms)
            });
            return match result {
                Ok(()) if version < Microversion(2, 14) => {
                    let password = derived_id("password", &format!("{server_id}/{now_ms}"));
                    Json(json!({ "adminPass": &password[..12] })).into_response()
                }
                Ok(()) => StatusCode::OK.into_response(),
                Err(refusal) => refuse(&refusal),
            };
        }
        other => {
            return fault::openstack(
                StatusCode::BAD_REQUEST,
                &format!("There is no such action: {other}"),
            );
        }
    };
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

// ----- Volume attachments ---------------------------------------------------------------------

fn attachment_body(
    server_id: &str,
    volume_id: &str,
    attachment: &super::cloud::Attachment,
    version: Microversion,
) -> Value {
    let mut body = json!({
        "device": attachment.device,
        "serverId": server_id,
        "volumeId": volume_id,
    });
    if version < Microversion(2, 89) {
        body["id"] = json!(volume_id);
    } else {
        body["attachment_id"] = json!(attachment.id);
        body["bdm_uuid"] = json!(attachment.bdm_uuid);
    }
    if version >= Microversion(2, 70) {
        body["tag"] = Value::Null;
    }
    if version >= Microversion(2, 79) {
        body["delete_on_termination"] = json!(false);
    }
    body
}

async fn list_attachments(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
) -> Response {
    let state = world.lock();
    if state.cloud.server(&server_id).is_none() {
        return not_found(&server_id);
    }
    let attachments: Vec<Value> = state
        .cloud
        .server_attachments(&server_id)
        .map(|(volume, attachment)| attachment_body(&server_id, &volume.id, attachment, version))
        .collect();
    Json(json!({ "volumeAttachments": attachments })).into_response()
}

async fn show_attachment(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Response {
    let state = world.lock();
    if state.cloud.server(&server_id).is_none() {
        return not_found(&server_id);
    }
    match state
        .cloud
        .server_attachments(&server_id)
        .find(|(volume, _)| volume.id == volume_id)
    {
        Some((_, attachment)) => {
            let body = attachment_body(&server_id, &volume_id, attachment, version);
            Json(json!({ "volumeAttachment": body })).into_response()
        }
        None => fault::openstack(
            StatusCode::NOT_FOUND,
            &format!("Volume {volume_id} is not attached to the instance {server_id}"),
        ),
    }
}

async fn detach(
    AxumState(world): AxumState<World>,
    Path((server_id, volume_id)): Path<(String, String)>,
) -> Response {
    let now_ms = world.now_ms();
    match world.lock().cloud.detach(&server_id, &volume_id, now_ms) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

// ----- Services ------------------------------------------------------------------------------

/// One row of `os-services`.
struct ServiceRow<'a> {
    binary: &'static str,
    host: &'a str,
    zone: &'a str,
    up: bool,
    forced_down: bool,
    disabled_reason: Option<&'a str>,
    disabled: bool,
    number: u32,
    uuid: String,
    updated_at: jiff::Timestamp,
}

fn service_rows(cloud: &Cloud, now_ms: u64) -> Vec<ServiceRow<'_>> {
    let now = cloud.timestamp(now_ms);
    let control = CONTROL_SERVICES
        .iter()
        .zip(1..)
        .map(|(binary, number)| ServiceRow {
            binary,
            host: CONTROLLER,
            zone: "internal",
            up: true,
            forced_down: false,
            disabled_reason: None,
            disabled: false,
            number,
            uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, binary.as_bytes()).to_string(),
            updated_at: now,
        });
    let offset = u32::try_from(CONTROL_SERVICES.len()).unwrap_or(0);
    let compute = cloud.hosts().iter().map(|host: &ComputeHost| ServiceRow {
        binary: "nova-compute",
        host: &host.name,
        zone: &host.zone,
        up: cloud.service_is_up(host, now_ms),
        forced_down: host.forced_down,
        disabled_reason: host.disabled_reason.as_deref(),
        disabled: host.disabled,
        number: host.number + offset,
        uuid: host.uuid.clone(),
        updated_at: cloud.last_heartbeat(host, now_ms),
    });
    control.chain(compute).collect()
}

fn service_body(row: &ServiceRow<'_>, version: Microversion) -> Value {
    let mut body = json!({
        "binary": row.binary,
        "host": row.host,
        "zone": row.zone,
        "state": if row.up { "up" } else { "down" },
        "status": if row.disabled { "disabled" } else { "enabled" },
        "disabled_reason": row.disabled_reason,
        "updated_at": row.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%6f").to_string(),
    });
    body["id"] = if version >= Microversion(2, 53) {
        json!(row.uuid)
    } else {
        json!(row.number)
    };
    if version >= Microversion(2, 11) {
        body["forced_down"] = json!(row.forced_down);
    }
    body
}

async fn list_services(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let now_ms = world.now_ms();
    let state = world.lock();
    if !state.cloud.is_admin() {
        return refuse(&Refusal::policy("os_compute_api:os-services:list"));
    }
    let services: Vec<Value> = service_rows(&state.cloud, now_ms)
        .iter()
        .filter(|row| query.get("host").is_none_or(|host| host == row.host))
        .filter(|row| {
            query
                .get("binary")
                .is_none_or(|binary| binary == row.binary)
        })
        .map(|row| service_body(row, version))
        .collect();
    Json(json!({ "services": services })).into_response()
}

async fn update_service(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(service_id): Path<String>,
    body: Bytes,
) -> Response {
    if !world.lock().cloud.is_admin() {
        return refuse(&Refusal::policy("os_compute_api:os-services:update"));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return fault::openstack(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let bad = |message: &str| fault::openstack(StatusCode::BAD_REQUEST, message);
    let forced_down = match body.get("forced_down") {
        None => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(other) => {
            return bad(&format!(
                "Invalid input for field/attribute forced_down. Value: {other}. {other} is not \
                 of type 'boolean'"
            ));
        }
    };
    let now_ms = world.now_ms();
    if version < Microversion(2, 53) {
        // 2.11..2.52: PUT /os-services/force-down with {host, binary, forced_down}.
        if service_id != "force-down" || version < Microversion(2, 11) {
            return fault::openstack(StatusCode::NOT_FOUND, "Unknown action");
        }
        let (Some(host), Some(binary), Some(forced_down)) = (
            body.get("host").and_then(Value::as_str),
            body.get("binary").and_then(Value::as_str),
            forced_down,
        ) else {
            return bad("'host', 'binary' and 'forced_down' are required properties");
        };
        if binary != "nova-compute" {
            return bad(&format!(
                "Updating a {binary} service is not supported. Only nova-compute services can \
                 be updated."
            ));
        }
        let mut state = world.lock();
        return match state.cloud.update_service(host, Some(forced_down), None) {
            Some(_) => Json(
                json!({"service": {"binary": binary, "host": host, "forced_down": forced_down}}),
            )
            .into_response(),
            None => fault::openstack(
                StatusCode::NOT_FOUND,
                &format!("Service {host} could not be found."),
            ),
        };
    }
    if uuid::Uuid::parse_str(&service_id).is_err() {
        return bad(&format!("Invalid uuid {service_id}"));
    }
    let disabled = match body.get("status").and_then(Value::as_str) {
        None => None,
        Some("enabled") => Some((false, None)),
        Some("disabled") => Some((
            true,
            body.get("disabled_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )),
        Some(other) => {
            return bad(&format!(
                "Invalid input for field/attribute status. Value: {other}. '{other}' is not one \
                 of ['enabled', 'disabled']"
            ));
        }
    };
    if forced_down.is_none() && disabled.is_none() {
        return bad("At least one of 'status' or 'forced_down' must be specified.");
    }
    let mut state = world.lock();
    if let Some(row) = service_rows(&state.cloud, now_ms)
        .iter()
        .find(|row| row.uuid == service_id && row.binary != "nova-compute")
    {
        return bad(&format!(
            "Updating a {} service is not supported. Only nova-compute services can be updated.",
            row.binary
        ));
    }
    let Some(host) = state
        .cloud
        .update_service(&service_id, forced_down, disabled)
    else {
        return fault::openstack(
            StatusCode::NOT_FOUND,
            &format!("Service {service_id} could not be found."),
        );
    };
    let host = host.name.clone();
    let rows = service_rows(&state.cloud, now_ms);
    let Some(row) = rows
        .iter()
        .find(|row| row.host == host && row.binary == "nova-compute")
    else {
        return not_found(&service_id);
    };
    Json(json!({ "service": service_body(row, version) })).into_response()
}

// ----- Flavors -------------------------------------------------------------------------------

/// The one flavor every server has, as `GET /flavors/{id}` shows it at `version`.
fn flavor_body(nova: &str, version: Microversion) -> Value {
    let mut body = json!({
        "id": FLAVOR_ID,
        "name": FLAVOR_NAME,
        "vcpus": 2,
        "ram": 4096,
        "disk": 20,
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "swap": 0,
        "os-flavor-access:is_public": true,
        "OS-FLV-DISABLED:disabled": false,
        "rxtx_factor": 1.0,
        "links": links(nova, "flavors", FLAVOR_ID),
    });
    if version >= Microversion(2, 55) {
        body["description"] = Value::Null;
    }
    if version >= Microversion(2, 61) {
        body["extra_specs"] = json!({});
    }
    body
}

async fn list_flavors(AxumState(world): AxumState<World>) -> Response {
    let nova = world.lock().endpoints.nova.clone();
    let flavor =
        json!({"id": FLAVOR_ID, "name": FLAVOR_NAME, "links": links(&nova, "flavors", FLAVOR_ID)});
    Json(json!({ "flavors": [flavor] })).into_response()
}

async fn list_flavors_detail(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
) -> Response {
    let nova = world.lock().endpoints.nova.clone();
    Json(json!({ "flavors": [flavor_body(&nova, version)] })).into_response()
}

async fn show_flavor(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(flavor_id): Path<String>,
) -> Response {
    if flavor_id != FLAVOR_ID {
        return fault::openstack(
            StatusCode::NOT_FOUND,
            &format!("Flavor {flavor_id} could not be found."),
        );
    }
    let nova = world.lock().endpoints.nova.clone();
    Json(json!({ "flavor": flavor_body(&nova, version) })).into_response()
}

/// `POST /servers/{server_id}/os-volume_attachments`: attaches a volume (the rules are
/// [`Cloud::attach`]'s). The body is the api-ref sample's: the device, the volume id as `id`
/// (also from 2.89), `tag` from 2.70 and `delete_on_termination` from 2.79, as asked.
async fn attach(
    AxumState(world): AxumState<World>,
    Extension(version): Extension<Microversion>,
    Path(server_id): Path<String>,
    body: Bytes,
) -> Response {
    let request = serde_json::from_slice::<Value>(&body).ok();
    let Some(wanted) = request
        .as_ref()
        .and_then(|value| value.get("volumeAttachment"))
        .filter(|wanted| wanted.is_object())
    else {
        return fault::openstack(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute volumeAttachment. Value: None. None is not of type 'object'",
        );
    };
    let Some(volume_id) = wanted.get("volumeId").and_then(Value::as_str) else {
        return fault::openstack(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute volumeAttachment. Value: {}. 'volumeId' is a required property",
        );
    };
    let now_ms = world.now_ms();
    let device = match world.lock().cloud.attach(&server_id, volume_id, now_ms) {
        Ok(device) => device,
        Err(refusal) => return refuse(&refusal),
    };
    let mut body = json!({
        "device": device,
        "id": volume_id,
        "serverId": server_id,
        "volumeId": volume_id,
    });
    if version >= Microversion(2, 70) {
        body["tag"] = wanted.get("tag").cloned().unwrap_or(Value::Null);
    }
    if version >= Microversion(2, 79) {
        body["delete_on_termination"] = wanted
            .get("delete_on_termination")
            .cloned()
            .unwrap_or(json!(false));
    }
    Json(json!({ "volumeAttachment": body })).into_response()
}
