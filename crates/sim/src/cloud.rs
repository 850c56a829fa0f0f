//! The emulated OpenStack cloud's state: projects, compute hosts, servers, volumes and their
//! attachments, and the rules Nova and Cinder apply to them. Keystone, Nova and Cinder routers
//! read and change it; they only render what this module decides.
//!
//! Time is counted in milliseconds since the start of the run (`now_ms`). Compute-side work (a
//! volume detach, a stop, a start) takes `behaviour.detach_seconds` and is done by the compute
//! host: on a dead host (state `down`) it waits until the host reports again, so it never
//! completes while the host is dead, as with the real Nova. Forced down changes only whether
//! Nova counts the service as up, not whether a live nova-compute does its work.
//!
//! Whether Nova counts a nova-compute service as *up* (`servicegroup.API.service_is_up`): not
//! forced down, and its last heartbeat at most `behaviour.service_down_time` old. A host that is
//! `down` in the scenario stopped reporting long before the run; one that goes down on the
//! timeline at `t` still counts as up until `t + service_down_time`. Everything Nova derives from
//! it follows: `os-services` `state`, `host_status`, the detach check
//! (`check_instance_host(check_is_up=True)`), whether a server delete is a *local delete* (Nova
//! frees the volumes itself, at once) or the compute host's work, and whether an evacuate is
//! refused because the source service is still in use.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::scenario::{self, AttachStatus, HostState, Role, ServerStatus, ServerStatusChange};

/// Namespace of the stable ids derived from names (project, user, services).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0e47_93c4_4f7e_b2a5_3c1e_58d0_c0de);

/// How long ago the scenario's servers, volumes and attachments were created.
const AGE: SignedDuration = SignedDuration::from_hours(24 * 9);

/// Cinder volume statuses `os-reset_status` accepts.
const VOLUME_STATUSES: [&str; 16] = [
    "available",
    "in-use",
    "attaching",
    "detaching",
    "reserved",
    "error",
    "error_attaching",
    "error_detaching",
    "error_deleting",
    "error_extending",
    "creating",
    "deleting",
    "maintenance",
    "extending",
    "downloading",
    "uploading",
];

/// Nova `vm_state`s from which a volume may be detached (`check_instance_state` of
/// `compute.api.API.detach_volume`).
const DETACH_VM_STATES: [&str; 7] = [
    "active",
    "paused",
    "stopped",
    "resized",
    "soft-delete",
    "shelved",
    "shelved_offloaded",
];

/// How long before the run a host that is `down` in the scenario sent its last heartbeat,
/// beyond `service_down_time`: long enough that Nova counts it as down from the start.
const DOWN_BEFORE_START_MS: i64 = 3_600_000;

/// Nova's `ServiceUnavailable`, which the detach API answers with 409 when the instance's
/// nova-compute service is not up.
pub const SERVICE_UNAVAILABLE: &str = "Service is unavailable at this time.";

/// A stable id derived from a name, as 32 hex digits (Keystone's id format).
#[must_use]
pub fn derived_id(kind: &str, name: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}/{name}").as_bytes())
        .simple()
        .to_string()
}

/// Why Nova or Cinder refuses a request: the status and the service's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 404: the thing does not exist (or is not attached where the request says).
    #[error("{0}")]
    NotFound(String),
    /// 400: the request does not make sense for this thing.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the caller's role does not allow it (the service's policy message).
    #[error("{0}")]
    Forbidden(String),
    /// 409: the thing is in a state that forbids the request.
    #[error("{0}")]
    Conflict(String),
}

impl Refusal {
    /// The 403 of Nova's and Cinder's policy enforcement for a rule the caller fails.
    #[must_use]
    pub fn policy(rule: &str) -> Self {
        Self::Forbidden(format!("Policy doesn't allow {rule} to be performed."))
    }

    /// The HTTP status the service answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
        }
    }
}

/// An API microversion (`2.53`, `3.27`): the OpenStack-wide negotiation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u16, pub u16);

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl Microversion {
    /// Picks the version a request asks for: none means `min`, `latest` means `max`; a malformed
    /// version is a 400, one outside `min..=max` a 406, with the services' messages.
    ///
    /// # Errors
    /// The status and message to answer with.
    pub fn negotiate(
        requested: Option<&str>,
        min: Self,
        max: Self,
    ) -> Result<Self, (StatusCode, String)> {
        let Some(requested) = requested.map(str::trim) else {
            return Ok(min);
        };
        if requested.eq_ignore_ascii_case("latest") {
            return Ok(max);
        }
        let parsed = requested.split_once('.').and_then(|(major, minor)| {
            let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (valid(major) && valid(minor) && (minor == "0" || !minor.starts_with('0')))
                .then(|| Some(Self(major.parse().ok()?, minor.parse().ok()?)))
                .flatten()
        });
        let Some(version) = parsed else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "API Version String {requested} is of invalid format. Must be of format \
                     MajorNum.MinorNum."
                ),
            ));
        };
        if version < min || version > max {
            return Err((
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {version} is not supported by the API. Minimum is {min} and \
                     maximum is {max}."
                ),
            ));
        }
        Ok(version)
    }
}

/// One page of a marker/limit listing, the way Cinder pages: the items after the one with id
/// `marker`, at most `limit` of them, and the query of the next page when the page is full (a
/// client reads on until it gets an empty page). None when the marker is unknown. (Nova's server
/// lists page in `nova::list`.)
pub fn page<'a, T>(
    items: Vec<&'a T>,
    id: impl Fn(&T) -> &str,
    query: &HashMap<String, String>,
    limit: usize,
) -> Option<(Vec<&'a T>, Option<String>)> {
    let start = match query.get("marker") {
        None => 0,
        Some(marker) => items.iter().position(|item| id(item) == marker)? + 1,
    };
    let page: Vec<&T> = items.into_iter().skip(start).take(limit).collect();
    let next = match page.last() {
        Some(last) if page.len() == limit => {
            let mut pairs: Vec<(&str, &str)> = query
                .iter()
                .filter(|(key, _)| key.as_str() != "marker")
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            pairs.sort_unstable();
            pairs.push(("marker", id(last)));
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
                .collect();
            Some(pairs.join("&"))
        }
        _ => None,
    };
    Some((page, next))
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// How a Keystone token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `password`.
    Password,
    /// `application_credential`.
    ApplicationCredential,
}

impl AuthMethod {
    /// The method as Keystone names it in `token.methods`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::ApplicationCredential => "application_credential",
        }
    }
}

/// An issued Keystone token.
#[derive(Debug, Clone)]
pub struct Token {
    /// How it was obtained.
    pub method: AuthMethod,
    /// Whether it is scoped to the project (else unscoped, with an empty catalog).
    pub project_scoped: bool,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The audit id Keystone shows in `audit_ids`.
    pub audit_id: String,
}

/// A nova-compute service on a compute host.
#[derive(Debug, Clone)]
pub struct ComputeHost {
    /// Host name.
    pub name: String,
    /// Whether the service is alive: it reports in and does the work sent to it.
    pub state: HostState,
    /// Whether an operator (or a fencing agent) forced the service down.
    pub forced_down: bool,
    /// Availability zone.
    pub zone: String,
    /// Whether an operator disabled the service (no new servers scheduled there).
    pub disabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Service UUID (the `id` from microversion 2.53).
    pub uuid: String,
    /// Service number (the `id` before 2.53).
    pub number: u32,
    /// When the service last reported in, in milliseconds since the start of the run (negative:
    /// before it), while it is `down`; a host that is up reports all the time.
    pub last_heartbeat_ms: i64,
}

impl ComputeHost {
    /// Whether the compute service does the work sent to it: it is alive. Forced down or not
    /// does not matter: that flag is only what Nova is told.
    #[must_use]
    pub fn alive(&self) -> bool {
        self.state == HostState::Up
    }
}

/// A compute operation sent to the host, done when the host gets to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// `os-stop`: task `powering-off`, then `SHUTOFF`.
    Stop,
    /// `os-start`: task `powering-on`, then `ACTIVE`.
    Start,
    /// `DELETE /servers/{id}` on a host Nova counts as up: task `deleting`, then the server's
    /// volumes are detached and it is gone.
    Delete,
    /// `evacuate`: task `rebuilding` until the destination host (a position in the hosts) has
    /// rebuilt the server there, `SHUTOFF` when `stopped`, else `ACTIVE`.
    Evacuate {
        /// The destination host's position.
        to: usize,
        /// Whether the server ends up stopped.
        stopped: bool,
    },
}

/// A Nova server.
#[derive(Debug, Clone)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Nova status.
    pub status: ServerStatus,
    /// `OS-EXT-STS:power_state`.
    pub power_state: u8,
    /// `OS-EXT-STS:task_state`.
    pub task_state: Option<String>,
    /// Compute host.
    pub host: Option<String>,
    /// Availability zone.
    pub zone: String,
    /// Fixed addresses.
    pub addresses: Vec<String>,
    /// When it was deleted (Nova's soft delete: `deleted_at`, and `terminated_at`, set in the
    /// same request): Nova answers 404 for it and lists it only to a `changes-since` or
    /// `changes-before` query (or an admin's `deleted`), with status `DELETED`; Cinder may still
    /// hold attachments to it.
    pub deleted_at: Option<Timestamp>,
    /// `OS-EXT-SRV-ATTR:instance_name`.
    pub instance_name: String,
    /// Creation time (`created_at`).
    pub created: Timestamp,
    /// Last change (`updated_at`), whole seconds as the database keeps it: every
    /// `instance.save()` that changes a column sets it (the `TimestampMixin`'s `onupdate`), and
    /// a soft delete keeps it. Nova saves no instance to attach or detach a volume.
    pub updated: Timestamp,
    /// A power action the compute host has not done yet, and since when.
    pub pending: Option<(PowerAction, u64)>,
    /// When Nova last brought it up (`os-start` or an evacuate done, `ACTIVE`): its kubelet
    /// starts then; taken by the emulated kubelet once it registered.
    pub booted_ms: Option<u64>,
}

impl Server {
    /// Whether it is deleted.
    #[must_use]
    pub fn deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// `OS-EXT-STS:vm_state`: `deleted` once deleted (`_delete_instance` and `_do_delete` set
    /// `vm_states.DELETED` before `instance.destroy()`).
    #[must_use]
    pub fn vm_state(&self) -> &'static str {
        if self.deleted() {
            "deleted"
        } else {
            self.status.vm_state()
        }
    }

    /// The `status` Nova shows: `DELETED` for a deleted server (`_get_vm_status`); its state
    /// map gives `REBUILD` for the task `rebuilding` in every `vm_state` an evacuate starts
    /// from; other tasks this emulator sets (`deleting`, `powering-off`, `powering-on`) leave
    /// the status of the `vm_state`.
    #[must_use]
    pub fn status_str(&self) -> &'static str {
        if self.deleted() {
            "DELETED"
        } else if self.task_state.as_deref() == Some("rebuilding") {
            "REBUILD"
        } else {
            self.status.as_str()
        }
    }
}

/// What Nova says about the host of a server (`host_status`, microversion 2.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    /// The service reports in.
    Up,
    /// The service is forced down.
    Down,
    /// The service is disabled.
    Maintenance,
    /// The service stopped reporting (the host may still run its servers).
    Unknown,
    /// The server has no host.
    None,
}

impl HostStatus {
    /// As Nova spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Maintenance => "MAINTENANCE",
            Self::Unknown => "UNKNOWN",
            Self::None => "",
        }
    }
}

/// One attachment of a Cinder volume to a server (Nova's block device mapping and Cinder's
/// attachment record in one).
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Cinder attachment UUID.
    pub id: String,
    /// The server.
    pub server_id: String,
    /// Device in the guest.
    pub device: String,
    /// Cinder's `attach_status`; a Nova detach in progress leaves it `attached` (only the
    /// volume is `detaching`).
    pub status: AttachStatus,
    /// When it was attached (or created, while not yet `attached`).
    pub attached_at: Timestamp,
    /// Nova's block device mapping UUID.
    pub bdm_uuid: String,
    /// When Nova was asked to detach it, if it was.
    pub detach_requested_ms: Option<u64>,
}

/// A Cinder volume.
#[derive(Debug, Clone)]
pub struct Volume {
    /// UUID.
    pub id: String,
    /// Name; Cinder allows none.
    pub name: Option<String>,
    /// Size in GiB.
    pub size: u64,
    /// Availability zone.
    pub zone: String,
    /// Whether it may be attached to several servers.
    pub multiattach: bool,
    /// Whether it is a boot volume.
    pub bootable: bool,
    /// Cinder status (`available`, `in-use`, `detaching`...).
    pub status: String,
    /// `migration_status`.
    pub migration_status: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// A detach never completes.
    pub detach_stuck: bool,
    /// Creation time.
    pub created: Timestamp,
    /// Last change.
    pub updated: Timestamp,
}

impl Volume {
    /// Whether the attachment is the server's root disk (Nova's `bdm.is_root`).
    #[must_use]
    pub fn is_root(&self, attachment: &Attachment) -> bool {
        self.bootable && matches!(attachment.device.as_str(), "/dev/vda" | "/dev/sda")
    }

    /// Sets the status from the attachments as Cinder's `volume_detached` does: the
    /// attachment status that takes precedence decides, none means `available`.
    fn settle(&mut self, now: Timestamp) {
        self.status = self
            .attachments
            .iter()
            .map(|attachment| attachment.status)
            .min()
            .map_or("available", AttachStatus::volume_status)
            .to_owned();
        self.updated = now;
    }
}

/// A Cinder admin action on a volume (`POST /volumes/{id}/action`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// `os-force_detach`.
    ForceDetach {
        /// The attachment; may be left out when the volume has one.
        attachment_id: Option<String>,
    },
    /// `os-detach`.
    Detach {
        /// The attachment; may be left out when the volume has one.
        attachment_id: Option<String>,
    },
    /// `os-reset_status`.
    ResetStatus {
        /// New status.
        status: Option<String>,
        /// `attached` or `detached`; `detached` drops the attachments.
        attach_status: Option<String>,
        /// New migration status.
        migration_status: Option<String>,
    },
}

/// The OpenStack side of the world.
#[derive(Debug, Clone)]
pub struct Cloud {
    region: String,
    project: String,
    project_id: String,
    user_id: String,
    started: Timestamp,
    action_ms: u64,
    service_down_ms: u64,
    max_limit: usize,
    role: Role,
    attachment_guard: bool,
    hosts: Vec<ComputeHost>,
    servers: Vec<Server>,
    volumes: Vec<Volume>,
    tokens: HashMap<String, Token>,
    index: Index,
    /// Volumes (positions) with a detach the compute host has not done yet.
    detaching: BTreeSet<usize>,
    /// Servers (positions) with a power action the compute host has not done yet.
    powering: BTreeSet<usize>,
    /// Servers with `booted_ms` set: their kubelet is yet to register.
    booting: BTreeSet<usize>,
    /// Attaches the compute host has not done yet: (volume position, attachment id, since).
    attaching: Vec<(usize, String, u64)>,
}

/// Where to find things by id. Servers, volumes and attachments are only ever created from the
/// scenario, so positions never move; an attachment that has gone leaves a stale entry, which a
/// lookup skips.
#[derive(Debug, Clone, Default)]
struct Index {
    hosts: HashMap<String, usize>,
    /// Every server, deleted ones included.
    servers: HashMap<String, usize>,
    volumes: HashMap<String, usize>,
    /// Attachment id to the position of its volume.
    attachments: HashMap<String, usize>,
    /// Server id to the positions of the volumes attached to it, in volume order.
    server_volumes: HashMap<String, Vec<usize>>,
}

/// Each id with its position.
fn positions<'a>(ids: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    ids.cloned().zip(0..).collect()
}

impl Index {
    fn new(hosts: &[ComputeHost], servers: &[Server], volumes: &[Volume]) -> Self {
        let mut index = Self {
            hosts: positions(hosts.iter().map(|host| &host.name)),
            servers: positions(servers.iter().map(|server| &server.id)),
            volumes: positions(volumes.iter().map(|volume| &volume.id)),
            ..Self::default()
        };
        for (position, volume) in volumes.iter().enumerate() {
            for attachment in &volume.attachments {
                index.attachments.insert(attachment.id.clone(), position);
                let on_server = index
                    .server_volumes
                    .entry(attachment.server_id.clone())
                    .or_default();
                if on_server.last() != Some(&position) {
                    on_server.push(position);
                }
            }
        }
        index
    }
}

impl Cloud {
    /// The cloud a scenario describes.
    #[must_use]
    pub fn new(scenario: &scenario::OpenStack) -> Self {
        let started = Timestamp::now();
        let created = started.checked_sub(AGE).unwrap_or(started);
        let service_down_ms = millis(scenario.behaviour.service_down_time);
        let down_ms_signed = i64::try_from(service_down_ms).unwrap_or(i64::MAX / 2);
        let hosts: Vec<ComputeHost> = scenario
            .compute_hosts
            .iter()
            .zip(1..)
            .map(|(host, number)| ComputeHost {
                name: host.name.clone(),
                state: host.state,
                forced_down: host.forced_down,
                zone: host.zone.clone(),
                disabled: false,
                disabled_reason: None,
                uuid: Uuid::new_v5(&ID_NAMESPACE, format!("service/{}", host.name).as_bytes())
                    .to_string(),
                number,
                last_heartbeat_ms: match host.state {
                    HostState::Up => 0,
                    HostState::Down => -(down_ms_signed + DOWN_BEFORE_START_MS),
                },
            })
            .collect();
        let server_created = db_time(created);
        let servers: Vec<Server> = scenario
            .servers
            .iter()
            .zip(1u32..)
            .map(|(server, number)| Server {
                id: server.id.clone(),
                name: server.name.clone(),
                status: server.status,
                power_state: server
                    .power_state
                    .unwrap_or_else(|| server.status.default_power_state()),
                task_state: server.task_state.clone(),
                host: server.host.as_ref().map(|host| host.value.clone()),
                zone: server.availability_zone.clone(),
                addresses: server.addresses.clone(),
                deleted_at: server.deleted.then_some(server_created),
                instance_name: format!("instance-{number:08x}"),
                created: server_created,
                updated: server_created,
                pending: None,
                booted_ms: None,
            })
            .collect();
        let volumes: Vec<Volume> = scenario
            .volumes
            .iter()
            .map(|volume| {
                let attachments: Vec<Attachment> = volume
                    .attachments
                    .iter()
                    .map(|attachment| Attachment {
                        id: Uuid::new_v4().to_string(),
                        server_id: attachment.server.value.clone(),
                        device: attachment.device.clone(),
                        status: attachment.attach_status(),
                        attached_at: created,
                        bdm_uuid: Uuid::new_v4().to_string(),
                        detach_requested_ms: None,
                    })
                    .collect();
                let mut volume = Volume {
                    id: volume.id.clone(),
                    name: volume.name.clone(),
                    size: volume.size,
                    zone: volume.availability_zone.clone(),
                    multiattach: volume.multiattach,
                    bootable: volume.bootable,
                    status: String::new(),
                    migration_status: None,
                    attachments,
                    detach_stuck: volume.detach_stuck,
                    created,
                    updated: created,
                };
                volume.settle(created);
                volume
            })
            .collect();
        let index = Index::new(&hosts, &servers, &volumes);
        Self {
            region: scenario.region.clone(),
            project: scenario.project.clone(),
            project_id: derived_id("project", &scenario.project),
            user_id: derived_id("user", "kube-remediator"),
            started,
            action_ms: millis(scenario.behaviour.detach_seconds),
            service_down_ms,
            max_limit: scenario.behaviour.nova_max_limit,
            role: scenario.role,
            attachment_guard: scenario.behaviour.cinder_attachment_guard,
            hosts,
            servers,
            volumes,
            tokens: HashMap::new(),
            index,
            detaching: BTreeSet::new(),
            powering: BTreeSet::new(),
            booting: BTreeSet::new(),
            attaching: Vec::new(),
        }
    }

    /// The region every endpoint is published in.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The project (tenant) name.
    #[must_use]
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The project id every token is scoped to and Cinder's URLs carry.
    #[must_use]
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The id of the one user.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The role the user holds in the project.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the user is an admin (Nova's and Cinder's `context.is_admin`).
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The wall-clock time `now_ms` into the run.
    #[must_use]
    pub fn timestamp(&self, now_ms: u64) -> Timestamp {
        let offset = SignedDuration::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        self.started.checked_add(offset).unwrap_or(self.started)
    }

    /// Nova's `[api] max_limit`: the most servers one list answer holds.
    #[must_use]
    pub fn max_limit(&self) -> usize {
        self.max_limit
    }

    // ----- Keystone -------------------------------------------------------------------------

    /// Issues a token and returns its id (the `X-Subject-Token`).
    pub fn issue_token(&mut self, method: AuthMethod, project_scoped: bool, now_ms: u64) -> String {
        let id = format!("gAAAAA{}", Uuid::new_v4().simple());
        let issued_at = self.timestamp(now_ms);
        let token = Token {
            method,
            project_scoped,
            issued_at,
            expires_at: issued_at
                .checked_add(SignedDuration::from_hours(1))
                .unwrap_or(issued_at),
            audit_id: Uuid::new_v4().simple().to_string()[..22].to_owned(),
        };
        self.tokens.insert(id.clone(), token);
        id
    }

    /// Revokes every token, as Keystone does for a user whose password changes or whose role
    /// is removed: services answer 401 to them from now on, before they expire.
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }

    /// A token that is known and not expired at `now_ms`.
    #[must_use]
    pub fn token(&self, id: &str, now_ms: u64) -> Option<&Token> {
        let now = self.timestamp(now_ms);
        self.tokens.get(id).filter(|token| token.expires_at > now)
    }

    // ----- Nova -----------------------------------------------------------------------------

    /// The compute hosts, in scenario order.
    #[must_use]
    pub fn hosts(&self) -> &[ComputeHost] {
        &self.hosts
    }

    /// A compute host by name.
    #[must_use]
    pub fn host(&self, name: &str) -> Option<&ComputeHost> {
        self.index
            .hosts
            .get(name)
            .map(|&position| &self.hosts[position])
    }

    /// Whether Nova counts the service as up at `now_ms` (`servicegroup.API.service_is_up`): not
    /// forced down, and its last heartbeat at most `service_down_time` old.
    #[must_use]
    pub fn service_is_up(&self, host: &ComputeHost, now_ms: u64) -> bool {
        if host.forced_down {
            return false;
        }
        if host.alive() {
            return true;
        }
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let down_ms = i64::try_from(self.service_down_ms).unwrap_or(i64::MAX);
        now.saturating_sub(host.last_heartbeat_ms) <= down_ms
    }

    /// When the service last reported in, as `os-services` shows it (`updated_at`): now for a
    /// live host.
    #[must_use]
    pub fn last_heartbeat(&self, host: &ComputeHost, now_ms: u64) -> Timestamp {
        if host.alive() {
            return self.timestamp(now_ms);
        }
        let offset = SignedDuration::from_millis(host.last_heartbeat_ms);
        self.started.checked_add(offset).unwrap_or(self.started)
    }

    /// Changes a nova-compute service (`PUT /os-services`), found by UUID or host name: forces
    /// it down (or lets it report again) and enables or disables it. Returns the changed host,
    /// or none when no compute service has that UUID or host name.
    pub fn update_service(
        &mut self,
        uuid_or_host: &str,
        forced_down: Option<bool>,
        disabled: Option<(bool, Option<String>)>,
    ) -> Option<&ComputeHost> {
        let host = self
            .hosts
            .iter_mut()
            .find(|host| host.uuid == uuid_or_host || host.name == uuid_or_host)?;
        if let Some(forced_down) = forced_down {
            host.forced_down = forced_down;
        }
        if let Some((disabled, reason)) = disabled {
            host.disabled = disabled;
            host.disabled_reason = reason.filter(|_| disabled);
        }
        Some(host)
    }

    /// Servers that are not deleted, in scenario order.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|server| !server.deleted())
    }

    /// Every server, deleted ones included, in the order Nova lists servers by default: the
    /// newest `created_at` first, then the highest database `id` (`get_sort_params` defaults to
    /// `created_at` `desc`, and `process_sort_params` adds `id` in the same direction). The
    /// scenario's servers were all created at once, their ids given in scenario order, so the
    /// last one comes first.
    pub fn servers_as_listed(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().rev()
    }

    /// A server that is not deleted.
    #[must_use]
    pub fn server(&self, id: &str) -> Option<&Server> {
        self.any_server(id).filter(|server| !server.deleted())
    }

    /// A server, deleted or not.
    fn any_server(&self, id: &str) -> Option<&Server> {
        self.index
            .servers
            .get(id)
            .map(|&position| &self.servers[position])
    }

    /// The `host_status` of a server at `now_ms`, in Nova's precedence
    /// (`get_instance_host_status`): forced down, then disabled, then whether the service is up.
    #[must_use]
    pub fn host_status(&self, server: &Server, now_ms: u64) -> HostStatus {
        match server.host.as_deref().and_then(|name| self.host(name)) {
            None => HostStatus::None,
            Some(host) if host.forced_down => HostStatus::Down,
            Some(host) if host.disabled => HostStatus::Maintenance,
            Some(host) if self.service_is_up(host, now_ms) => HostStatus::Up,
            Some(_) => HostStatus::Unknown,
        }
    }

    /// The volumes attached to a server with their attachment, in volume order.
    pub fn server_attachments<'a>(
        &'a self,
        server_id: &'a str,
    ) -> impl Iterator<Item = (&'a Volume, &'a Attachment)> + 'a {
        let positions = self.index.server_volumes.get(server_id);
        positions.into_iter().flatten().flat_map(move |&position| {
            let volume = &self.volumes[position];
            volume
                .attachments
                .iter()
                .filter(move |attachment| attachment.server_id == server_id)
                .map(move |attachment| (volume, attachment))
        })
    }

    /// Whether the server boots from a volume (has a root volume attached).
    #[must_use]
    pub fn boots_from_volume(&self, server_id: &str) -> bool {
        self.server_attachments(server_id)
            .any(|(volume, attachment)| volume.is_root(attachment))
    }

    /// Nova's `DELETE /servers/{server}/os-volume_attachments/{volume}`: checks Nova's and
    /// Cinder's rules in Nova's order, then begins the detach (the volume is `detaching` until
    /// the compute host has done it).
    ///
    /// # Errors
    /// 404 for an unknown or deleted server, an unknown volume or one not attached to the
    /// server; 400 for a root volume or a volume that is not `in-use`; 409 when the server's
    /// state or a task in progress forbids it, or when Nova does not count the server's
    /// nova-compute service as up (`check_instance_host(check_is_up=True)`, checked after the
    /// instance state and before anything changes in Cinder).
    pub fn detach(&mut self, server_id: &str, volume_id: &str, now_ms: u64) -> Result<(), Refusal> {
        let server = self.server(server_id).ok_or_else(|| {
            Refusal::NotFound(format!("Instance {server_id} could not be found."))
        })?;
        let (vm_state, task_state) = (server.vm_state(), server.task_state.clone());
        // A server the scenario gives no host is served by a compute host nobody names, which
        // is up.
        let host_up = server
            .host
            .as_deref()
            .and_then(|name| self.host(name))
            .is_none_or(|host| self.service_is_up(host, now_ms));
        let now = self.timestamp(now_ms);
        let position =
            *self.index.volumes.get(volume_id).ok_or_else(|| {
                Refusal::NotFound(format!("Volume {volume_id} could not be found."))
            })?;
        let volume = &mut self.volumes[position];
        let Some(index) = volume
            .attachments
            .iter()
            .position(|attachment| attachment.server_id == server_id)
        else {
            return Err(Refusal::NotFound(format!(
                "Volume {volume_id} is not attached to the instance {server_id}"
            )));
        };
        if volume.is_root(&volume.attachments[index]) {
            return Err(Refusal::BadRequest(
                "Cannot detach a root device volume".to_owned(),
            ));
        }
        if !DETACH_VM_STATES.contains(&vm_state) {
            return Err(invalid_state(
                "detach_volume",
                server_id,
                "vm_state",
                vm_state,
            ));
        }
        if let Some(task) = task_state {
            return Err(invalid_state(
                "detach_volume",
                server_id,
                "task_state",
                &task,
            ));
        }
        if !host_up {
            return Err(Refusal::Conflict(SERVICE_UNAVAILABLE.to_owned()));
        }
        if volume.status != "in-use" {
            return Err(Refusal::BadRequest(
                "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and \
                 attach_status must be 'attached' to detach."
                    .to_owned(),
            ));
        }
        volume.status = "detaching".to_owned();
        volume.updated = now;
        volume.attachments[index].detach_requested_ms = Some(now_ms);
        if !volume.detach_stuck {
            self.detaching.insert(position);
        }
        Ok(())
    }

    /// Nova's `os-stop`: the server must be `ACTIVE` or in `ERROR` with no task in progress
    /// (`check_instance_state`); Nova checks only that it has a host, not that the host is up
    /// (`check_instance_host()`), so on a dead host the task stays `powering-off` (and the
    /// status `ACTIVE`) until the host reports again.
    ///
    /// # Errors
    /// 404 for an unknown server, 409 for a state that forbids it.
    pub fn stop(&mut self, server_id: &str, now_ms: u64) -> Result<(), Refusal> {
        self.power(server_id, PowerAction::Stop, now_ms)
    }

    /// Nova's `os-start`: the server must be `SHUTOFF` with no task in progress; the task is
    /// `powering-on` until the compute host has started it.
    ///
    /// # Errors
    /// 404 for an unknown server, 409 for a state that forbids it.
    pub fn start(&mut self, server_id: &str, now_ms: u64) -> Result<(), Refusal> {
        self.power(server_id, PowerAction::Start, now_ms)
    }

    fn power(&mut self, server_id: &str, action: PowerAction, now_ms: u64) -> Result<(), Refusal> {
        let now = self.saved_at(now_ms);
        let position = self.live_position(server_id)?;
        let server = &mut self.servers[position];
        let (name, allowed, task): (_, &[&str], _) = if action == PowerAction::Start {
            ("start", &["stopped"], "powering-on")
        } else {
            ("stop", &["active", "error"], "powering-off")
        };
        let vm_state = server.vm_state();
        if !allowed.contains(&vm_state) {
            return Err(invalid_state(name, server_id, "vm_state", vm_state));
        }
        if let Some(current) = &server.task_state {
            return Err(invalid_state(name, server_id, "task_state", current));
        }
        server.task_state = Some(task.to_owned());
        server.pending = Some((action, now_ms));
        server.updated = now;
        self.powering.insert(position);
        Ok(())
    }

    /// Nova's `DELETE /servers/{id}` (`compute.api.API._delete`), allowed in any state and to
    /// any role of the project (locks are not modelled). When Nova does not count the server's
    /// nova-compute service as up (`service_is_up`, as for the detach), or its host is unknown,
    /// it is a *local delete*: Nova removes the server's Cinder attachments itself, with its
    /// service token so Cinder's attachment guard lets it (`_local_cleanup_bdm_volumes`), and
    /// the server is gone at once. Otherwise the task is `deleting` and the compute host
    /// detaches the volumes and deletes it after `behaviour.detach_seconds`, when it answers:
    /// on a dead host Nova still counts as up the task stays `deleting`. Boot volumes are kept
    /// (`delete_on_termination` is not modelled) and become `available` like the others.
    ///
    /// # Errors
    /// 404 for an unknown or deleted server.
    pub fn delete_server(&mut self, server_id: &str, now_ms: u64) -> Result<(), Refusal> {
        let position = self.live_position(server_id)?;
        let server = &self.servers[position];
        let local = server.host.as_deref().is_some_and(|name| {
            self.host(name)
                .is_none_or(|host| !self.service_is_up(host, now_ms))
        });
        let now = self.saved_at(now_ms);
        if local {
            // `_do_delete(local=True)`: vm_state `deleted`, no task, `terminated_at`, saved; then
            // `instance.destroy()`, whose soft delete sets `deleted_at` and keeps `updated_at`.
            // The power state is left as it was.
            self.release_attachments(server_id, self.timestamp(now_ms));
            let server = &mut self.servers[position];
            server.deleted_at = Some(now);
            server.task_state = None;
            server.pending = None;
            server.updated = now;
            self.powering.remove(&position);
        } else {
            let server = &mut self.servers[position];
            server.task_state = Some("deleting".to_owned());
            server.pending = Some((PowerAction::Delete, now_ms));
            server.updated = now;
            self.powering.insert(position);
        }
        Ok(())
    }

    /// Nova's `evacuate` server action (`api/openstack/compute/evacuate.py`, then
    /// `compute.api.API.evacuate`), in Nova's order: the policy `os_compute_api:os-evacuate`
    /// (admin); the target host, if given, must exist and differ from the source; `vm_state`
    /// active, stopped or error (the task is not checked); the source service must not be up
    /// (`ComputeServiceInUse`, a 400). Then the conductor picks the destination: the given host
    /// as is before 2.29 or with `force`, else the scheduler's choice among the services that
    /// are up and enabled in the server's zone (the given host only, if one is given). No
    /// valid host is found after the 200: the server goes to `ERROR`, no task. Otherwise the
    /// task is `rebuilding` until the destination host, when it answers, has rebuilt the
    /// server after `behaviour.detach_seconds`: on that host, its volumes kept with new
    /// attachment ids, `SHUTOFF` when `stopped` (microversion 2.95) or the server was stopped,
    /// else `ACTIVE`.
    ///
    /// # Errors
    /// 404 for an unknown server or target host, 403 for a non-admin, 400 for the source as
    /// target or a source service that is up, 409 for a `vm_state` that forbids it.
    pub fn evacuate(
        &mut self,
        server_id: &str,
        target: Option<&str>,
        scheduled: bool,
        stopped: bool,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let position = self.live_position(server_id)?;
        if !self.is_admin() {
            return Err(Refusal::policy("os_compute_api:os-evacuate"));
        }
        let server = &self.servers[position];
        let target =
            match target {
                Some(name) => {
                    Some(*self.index.hosts.get(name).ok_or_else(|| {
                        Refusal::NotFound(format!("Compute host {name} not found."))
                    })?)
                }
                None => None,
            };
        let source = server.host.clone();
        if let Some(to) = target
            && source.as_deref() == Some(self.hosts[to].name.as_str())
        {
            return Err(Refusal::BadRequest(
                "The target host can't be the same one.".to_owned(),
            ));
        }
        let vm_state = server.vm_state();
        if !["active", "stopped", "error"].contains(&vm_state) {
            return Err(invalid_state("evacuate", server_id, "vm_state", vm_state));
        }
        if let Some(name) = &source
            && self
                .host(name)
                .is_some_and(|host| self.service_is_up(host, now_ms))
        {
            return Err(Refusal::BadRequest(format!(
                "Compute service of {name} is still in use."
            )));
        }
        let zone = server.zone.clone();
        let stopped = stopped || vm_state == "stopped";
        let destination = match target {
            Some(to) if !scheduled => Some(to),
            _ => self
                .hosts
                .iter()
                .enumerate()
                .find(|&(at, host)| {
                    target.is_none_or(|to| to == at)
                        && Some(&host.name) != source.as_ref()
                        && host.zone == zone
                        && !host.disabled
                        && self.service_is_up(host, now_ms)
                })
                .map(|(at, _)| at),
        };
        let now = self.saved_at(now_ms);
        let server = &mut self.servers[position];
        server.updated = now;
        match destination {
            Some(to) => {
                server.task_state = Some("rebuilding".to_owned());
                server.pending = Some((PowerAction::Evacuate { to, stopped }, now_ms));
                self.powering.insert(position);
            }
            None => {
                server.status = ServerStatus::Error;
                server.power_state = ServerStatus::Error.default_power_state();
                server.task_state = None;
                server.pending = None;
                self.powering.remove(&position);
            }
        }
        Ok(())
    }

    /// The position of a server that is not deleted.
    fn live_position(&self, server_id: &str) -> Result<usize, Refusal> {
        self.index
            .servers
            .get(server_id)
            .copied()
            .filter(|&position| !self.servers[position].deleted())
            .ok_or_else(|| Refusal::NotFound(format!("Instance {server_id} could not be found.")))
    }

    /// The positions of the volumes attached to the server.
    fn volume_positions(&self, server_id: &str) -> Vec<usize> {
        self.index
            .server_volumes
            .get(server_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Removes every Cinder attachment of the server (Nova's own cleanup, with its service
    /// token): each volume settles, `available` when nothing else holds it.
    fn release_attachments(&mut self, server_id: &str, now: Timestamp) {
        for position in self.volume_positions(server_id) {
            let volume = &mut self.volumes[position];
            let before = volume.attachments.len();
            volume
                .attachments
                .retain(|attachment| attachment.server_id != server_id);
            if volume.attachments.len() != before {
                volume.settle(now);
            }
        }
    }

    /// Gives every attachment of the server a new Cinder id, as the destination host of an
    /// evacuate does (a new attachment first, then the old one deleted): the volumes stay
    /// with the server and never become `available`.
    fn renew_attachments(&mut self, server_id: &str, now: Timestamp) {
        for position in self.volume_positions(server_id) {
            let volume = &mut self.volumes[position];
            for attachment in &mut volume.attachments {
                if attachment.server_id == server_id {
                    attachment.id = Uuid::new_v4().to_string();
                    attachment.attached_at = now;
                    self.index
                        .attachments
                        .insert(attachment.id.clone(), position);
                }
            }
            volume.updated = now;
        }
    }

    // ----- Cinder ---------------------------------------------------------------------------

    /// The volumes, in scenario order.
    #[must_use]
    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    /// A volume by id.
    #[must_use]
    pub fn volume(&self, id: &str) -> Option<&Volume> {
        self.index
            .volumes
            .get(id)
            .map(|&position| &self.volumes[position])
    }

    fn volume_mut(&mut self, id: &str) -> Option<&mut Volume> {
        let position = *self.index.volumes.get(id)?;
        Some(&mut self.volumes[position])
    }

    /// An attachment by its Cinder id, with its volume.
    #[must_use]
    pub fn attachment(&self, attachment_id: &str) -> Option<(&Volume, &Attachment)> {
        let volume = &self.volumes[*self.index.attachments.get(attachment_id)?];
        volume
            .attachments
            .iter()
            .find(|attachment| attachment.id == attachment_id)
            .map(|attachment| (volume, attachment))
    }

    /// The compute host name Cinder records for an attachment (`host_name`).
    #[must_use]
    pub fn attachment_host(&self, attachment: &Attachment) -> Option<&str> {
        self.any_server(&attachment.server_id)
            .and_then(|server| server.host.as_deref())
    }

    /// Cinder's `DELETE /attachments/{id}` by a user: refused while Nova still holds the
    /// attachment (the server exists) and the guard is on, else the attachment is gone at once.
    ///
    /// # Errors
    /// 404 for an unknown attachment, 409 while the server exists and the guard is on.
    pub fn delete_attachment(&mut self, attachment_id: &str, now_ms: u64) -> Result<(), Refusal> {
        let Some((volume, attachment)) = self.attachment(attachment_id) else {
            return Err(Refusal::NotFound(format!(
                "Volume attachment could not be found with filter: attachment_id = \
                 {attachment_id}."
            )));
        };
        let volume_id = volume.id.clone();
        self.check_nova_released(attachment)?;
        self.drop_attachment(&volume_id, attachment_id, now_ms);
        Ok(())
    }

    /// Cinder's admin volume actions (`POST /volumes/{id}/action`).
    ///
    /// # Errors
    /// 404 for an unknown volume or attachment; 400 for a bad status or a missing attachment
    /// id on a volume with several; 409 for a force-detach or detach while the server exists
    /// and holds the attachment and the guard is on.
    pub fn volume_action(
        &mut self,
        volume_id: &str,
        action: &VolumeAction,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let volume = self
            .volume(volume_id)
            .ok_or_else(|| Refusal::NotFound(format!("Volume {volume_id} could not be found.")))?;
        match action {
            VolumeAction::ForceDetach { attachment_id }
            | VolumeAction::Detach { attachment_id } => {
                let attachment_id = match attachment_id {
                    Some(id) => volume
                        .attachments
                        .iter()
                        .find(|attachment| &attachment.id == id)
                        .map(|attachment| attachment.id.clone())
                        .ok_or_else(|| {
                            Refusal::NotFound(format!(
                                "Volume attachment could not be found with filter: \
                                 attachment_id = {id}."
                            ))
                        })?,
                    None => match volume.attachments.as_slice() {
                        [only] => only.id.clone(),
                        [] => {
                            return Err(Refusal::BadRequest(format!(
                                "Invalid volume: Volume {volume_id} is not attached."
                            )));
                        }
                        _ => {
                            return Err(Refusal::BadRequest(
                                "Invalid volume: Detach volume failed: More than one \
                                 attachment, but no attachment_id provided."
                                    .to_owned(),
                            ));
                        }
                    },
                };
                if let Some(attachment) = volume
                    .attachments
                    .iter()
                    .find(|attachment| attachment.id == attachment_id)
                {
                    self.check_nova_released(attachment)?;
                }
                self.drop_attachment(volume_id, &attachment_id, now_ms);
                Ok(())
            }
            VolumeAction::ResetStatus {
                status,
                attach_status,
                migration_status,
            } => {
                if let Some(status) = status
                    && !VOLUME_STATUSES.contains(&status.as_str())
                {
                    return Err(Refusal::BadRequest(format!(
                        "Invalid input for field/attribute status. Value: {status}. '{status}' \
                         is not one of {VOLUME_STATUSES:?}"
                    )));
                }
                if let Some(attach) = attach_status
                    && !matches!(attach.as_str(), "attached" | "detached")
                {
                    return Err(Refusal::BadRequest(format!(
                        "Must specify a valid attach status: {attach}"
                    )));
                }
                let now = self.timestamp(now_ms);
                let Some(volume) = self.volume_mut(volume_id) else {
                    return Ok(());
                };
                if attach_status.as_deref() == Some("detached") {
                    volume.attachments.clear();
                }
                if let Some(status) = status {
                    status.clone_into(&mut volume.status);
                }
                if migration_status.is_some() {
                    volume.migration_status.clone_from(migration_status);
                }
                volume.updated = now;
                Ok(())
            }
        }
    }

    /// Cinder's check (OSSN-0092, `attachment_deletion_allowed`) before a user removes an
    /// attachment: Nova must no longer hold it, that is the server is gone. A `reserved`
    /// attachment has no connection info (no host uses the volume), so it may go. An unpatched
    /// Cinder (guard off) does not check: the attachment goes although the host may still use
    /// the volume.
    fn check_nova_released(&self, attachment: &Attachment) -> Result<(), Refusal> {
        let server_id = &attachment.server_id;
        let connected = attachment.status != AttachStatus::Reserved;
        match self.server(server_id) {
            Some(_) if self.attachment_guard && connected => Err(Refusal::Conflict(format!(
                "Detach volume from instance {server_id} using the Compute API"
            ))),
            _ => Ok(()),
        }
    }

    fn drop_attachment(&mut self, volume_id: &str, attachment_id: &str, now_ms: u64) {
        let now = self.timestamp(now_ms);
        if let Some(volume) = self.volume_mut(volume_id) {
            volume
                .attachments
                .retain(|attachment| attachment.id != attachment_id);
            volume.settle(now);
        }
    }

    // ----- Time and the timeline -----------------------------------------------------------

    /// Completes the detaches and power actions that are due at `now_ms`, on hosts that are
    /// alive (forced down or not).
    pub fn advance(&mut self, now_ms: u64) {
        let due = |since: Option<u64>| {
            since.is_some_and(|since| since.saturating_add(self.action_ms) <= now_ms)
        };
        // What is done is decided first, then changed: per volume in progress, which of its
        // attachments are gone; the servers whose power action is done.
        let detached: Vec<(usize, Vec<bool>)> = self
            .detaching
            .iter()
            .map(|&position| {
                let done = self.volumes[position]
                    .attachments
                    .iter()
                    .map(|attachment| {
                        due(attachment.detach_requested_ms) && self.answers(&attachment.server_id)
                    })
                    .collect();
                (position, done)
            })
            .collect();
        let powered: Vec<usize> = self
            .powering
            .iter()
            .copied()
            .filter(|&position| {
                let server = &self.servers[position];
                let answers = match server.pending {
                    Some((PowerAction::Evacuate { to, .. }, _)) => self.hosts[to].alive(),
                    _ => self.answers(&server.id),
                };
                due(server.pending.map(|(_, since)| since)) && answers
            })
            .collect();
        let now = self.timestamp(now_ms);
        let saved = self.saved_at(now_ms);
        for (position, done) in detached {
            let volume = &mut self.volumes[position];
            if done.contains(&true) {
                let mut done = done.into_iter();
                volume
                    .attachments
                    .retain(|_| !done.next().unwrap_or_default());
                volume.settle(now);
            }
            let in_progress = volume
                .attachments
                .iter()
                .any(|attachment| attachment.detach_requested_ms.is_some());
            if !in_progress {
                self.detaching.remove(&position);
            }
        }
        for position in powered {
            let Some((action, _)) = self.servers[position].pending.take() else {
                continue;
            };
            self.powering.remove(&position);
            let server_id = self.servers[position].id.clone();
            let status = match action {
                PowerAction::Stop => ServerStatus::Shutoff,
                PowerAction::Start => ServerStatus::Active,
                PowerAction::Delete => {
                    // `_delete_instance`: vm_state `deleted`, no task, power state NOSTATE,
                    // `terminated_at`, saved; then `instance.destroy()` (`deleted_at`).
                    self.release_attachments(&server_id, now);
                    let server = &mut self.servers[position];
                    server.deleted_at = Some(saved);
                    server.task_state = None;
                    server.power_state = 0;
                    server.updated = saved;
                    continue;
                }
                PowerAction::Evacuate { to, stopped } => {
                    self.renew_attachments(&server_id, now);
                    self.servers[position].host = Some(self.hosts[to].name.clone());
                    if stopped {
                        ServerStatus::Shutoff
                    } else {
                        ServerStatus::Active
                    }
                }
            };
            let server = &mut self.servers[position];
            server.status = status;
            server.power_state = status.default_power_state();
            server.task_state = None;
            server.updated = saved;
            if status == ServerStatus::Active {
                server.booted_ms = Some(now_ms);
                self.booting.insert(position);
            }
        }
        self.complete_attaches(now_ms);
    }

    /// The servers Nova brought up (started, or rebuilt by an evacuate) at least `boot_ms`
    /// ago, forgotten once returned; and when the next one is due.
    pub fn take_booted(&mut self, boot_ms: u64, now_ms: u64) -> (Vec<String>, u64) {
        let mut due = u64::MAX;
        let mut booted = Vec::new();
        for &position in &self.booting {
            let server = &mut self.servers[position];
            if let Some(at) = server.booted_ms {
                let ready = at.saturating_add(boot_ms);
                if ready <= now_ms {
                    server.booted_ms = None;
                    booted.push(server.id.clone());
                } else {
                    due = due.min(ready);
                }
            }
        }
        self.booting
            .retain(|&position| self.servers[position].booted_ms.is_some());
        (booted, due)
    }

    /// Whether a server Nova brought up still waits for its kubelet to register.
    #[must_use]
    pub fn booting(&self) -> bool {
        !self.booting.is_empty()
    }

    /// Whether the compute host of a server (deleted or not) does the work sent to it: the
    /// server has no host, or its host is alive.
    fn answers(&self, server_id: &str) -> bool {
        self.any_server(server_id).is_some_and(|server| {
            server
                .host
                .as_deref()
                .is_none_or(|name| self.host(name).is_some_and(ComputeHost::alive))
        })
    }

    /// Applies a timeline server status change (and drops a power action in progress).
    /// A change Nova saves (as `_sync_power_states` or a compute host's report does), so its
    /// `updated_at` moves when a column changes; a deleted server is gone from Nova's reach.
    pub fn set_server_status(&mut self, change: &ServerStatusChange, now_ms: u64) {
        let saved = self.saved_at(now_ms);
        let Ok(position) = self.live_position(&change.server.value) else {
            return;
        };
        let server = &mut self.servers[position];
        let power_state = change
            .power_state
            .unwrap_or_else(|| change.status.default_power_state());
        if (server.status, server.power_state, &server.task_state)
            != (change.status, power_state, &change.task_state)
        {
            server.status = change.status;
            server.power_state = power_state;
            server.task_state.clone_from(&change.task_state);
            server.updated = saved;
        }
        server.pending = None;
        self.powering.remove(&position);
    }

    /// The `updated_at` a server saved at `now_ms` gets: the time as the database keeps it.
    fn saved_at(&self, now_ms: u64) -> Timestamp {
        db_time(self.timestamp(now_ms))
    }

    /// Applies a timeline compute host state change: a host that goes down sent its last
    /// heartbeat now, so Nova counts it as up for `service_down_time` more.
    pub fn set_host_state(
        &mut self,
        host: &str,
        state: Option<HostState>,
        forced_down: Option<bool>,
        now_ms: u64,
    ) {
        if let Some(&position) = self.index.hosts.get(host) {
            let host = &mut self.hosts[position];
            if let Some(state) = state {
                if host.state == HostState::Up {
                    host.last_heartbeat_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
                }
                host.state = state;
            }
            if let Some(forced_down) = forced_down {
                host.forced_down = forced_down;
            }
        }
    }

    // ----- The emulated CSI external-attacher -----------------------------------------------

    /// The server a Kubernetes node runs on, as the Cinder CSI driver finds it: the id in the
    /// providerID (`openstack:///ID` or `openstack://REGION/ID`), else the server with the node's
    /// name.
    #[must_use]
    pub fn server_for_node(&self, provider_id: Option<&str>, node_name: &str) -> Option<String> {
        let from_provider = provider_id
            .and_then(|id| id.strip_prefix("openstack://"))
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(_, id)| id)
            .filter(|id| !id.is_empty());
        match from_provider {
            Some(id) => Some(id.to_owned()),
            None => self
                .servers()
                .find(|server| server.name == node_name)
                .map(|server| server.id.clone()),
        }
    }

    /// What the CSI external-attacher's ControllerUnpublishVolume does: a Nova detach of the
    /// volume from the server. A server that is gone, or a volume already detached or
    /// `detaching`, counts as success; a refusal by Nova is the error message. Also returns the
    /// status of the Nova call it made, if it made one (none for a volume no longer attached to
    /// the server or already `detaching`).
    pub fn attacher_detach(
        &mut self,
        server_id: &str,
        volume_id: &str,
        now_ms: u64,
    ) -> (Option<u16>, Result<(), String>) {
        // cinder-csi reads the volume first: nothing to do unless it is attached to the server
        // and not already detaching (`DetachVolume` in openstack_volumes.go).
        let pending = self.volume(volume_id).and_then(|volume| {
            volume
                .attachments
                .iter()
                .find(|attachment| attachment.server_id == server_id)
                .map(|attachment| attachment.detach_requested_ms.is_some())
        });
        if pending != Some(false) {
            return (None, Ok(()));
        }
        match self.detach(server_id, volume_id, now_ms) {
            Ok(()) => (Some(202), Ok(())),
            Err(refusal @ Refusal::NotFound(_)) => (Some(refusal.status().as_u16()), Ok(())),
            Err(refusal) => (Some(refusal.status().as_u16()), Err(refusal.to_string())),
        }
    }

    /// Whether Cinder still has an attachment of the volume to the server, in any status (also
    /// while the volume is `detaching`).
    #[must_use]
    pub fn is_attached(&self, volume_id: &str, server_id: &str) -> bool {
        self.volume(volume_id).is_some_and(|volume| {
            volume
                .attachments
                .iter()
                .any(|attachment| attachment.server_id == server_id)
        })
    }

    /// Nova's `POST /servers/{server}/os-volume_attachments`: checks Nova's and Cinder's rules
    /// in Nova's order (the server, its `vm_state` and task, the volume, an attachment to the same
    /// server, Cinder's reservation: `available`, or `in-use` for a multiattach volume), then
    /// reserves the volume (`attaching`, an attachment in `attaching`); the compute host completes
    /// it (`in-use`) after `behaviour.detach_seconds`, only when it answers. Returns the device.
    ///
    /// # Errors
    /// 404 for an unknown or deleted server or an unknown volume; 409 when the server's state or
    /// a task in progress forbids it; 400 when the volume is already attached to the server or
    /// Cinder cannot reserve it.
    pub fn attach(
        &mut self,
        server_id: &str,
        volume_id: &str,
        now_ms: u64,
    ) -> Result<String, Refusal> {
        let server = self.server(server_id).ok_or_else(|| {
            Refusal::NotFound(format!("Instance {server_id} could not be found."))
        })?;
        let (vm_state, task_state) = (server.vm_state(), server.task_state.clone());
        if !DETACH_VM_STATES.contains(&vm_state) {
            return Err(invalid_state(
                "attach_volume",
                server_id,
                "vm_state",
                vm_state,
            ));
        }
        if let Some(task) = task_state {
            return Err(invalid_state(
                "attach_volume",
                server_id,
                "task_state",
                &task,
            ));
        }
        let position =
            *self.index.volumes.get(volume_id).ok_or_else(|| {
                Refusal::NotFound(format!("Volume {volume_id} could not be found."))
            })?;
        let used: Vec<String> = self
            .server_attachments(server_id)
            .map(|(_, attachment)| attachment.device.clone())
            .collect();
        let now = self.timestamp(now_ms);
        let volume = &mut self.volumes[position];
        if volume.attachments.iter().any(|a| a.server_id == server_id) {
            return Err(Refusal::BadRequest(format!(
                "Invalid volume: volume {volume_id} already attached"
            )));
        }
        let reservable =
            volume.status == "available" || (volume.multiattach && volume.status == "in-use");
        if !reservable {
            return Err(Refusal::BadRequest(format!(
                "Invalid volume: Volume {volume_id} status must be available or downloading to \
                 reserve, but the current status is {}.",
                volume.status
            )));
        }
        let device = (b'b'..=b'z')
            .map(|letter| format!("/dev/vd{}", char::from(letter)))
            .find(|device| !used.contains(device))
            .unwrap_or_else(|| "/dev/vdz".to_owned());
        let id = Uuid::new_v4().to_string();
        volume.attachments.push(Attachment {
            id: id.clone(),
            server_id: server_id.to_owned(),
            device: device.clone(),
            status: AttachStatus::Attaching,
            attached_at: now,
            bdm_uuid: Uuid::new_v4().to_string(),
            detach_requested_ms: None,
        });
        volume.settle(now);
        self.index.attachments.insert(id.clone(), position);
        let volumes = self
            .index
            .server_volumes
            .entry(server_id.to_owned())
            .or_default();
        if let Err(at) = volumes.binary_search(&position) {
            volumes.insert(at, position);
        }
        self.attaching.push((position, id, now_ms));
        Ok(device)
    }

    /// Completes the attaches that are due at `now_ms` on hosts that answer (Cinder's
    /// `attachment_complete`: the attachment `attached`, the volume `in-use`).
    fn complete_attaches(&mut self, now_ms: u64) {
        if self.attaching.is_empty() {
            return;
        }
        let now = self.timestamp(now_ms);
        let pending = std::mem::take(&mut self.attaching);
        for (position, id, since) in pending {
            let Some(server_id) = self.volumes[position]
                .attachments
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.server_id.clone())
            else {
                continue;
            };
            if since.saturating_add(self.action_ms) > now_ms || !self.answers(&server_id) {
                self.attaching.push((position, id, since));
                continue;
            }
            let volume = &mut self.volumes[position];
            if let Some(attachment) = volume.attachments.iter_mut().find(|a| a.id == id) {
                attachment.status = AttachStatus::Attached;
                attachment.attached_at = now;
            }
            volume.settle(now);
        }
    }

    /// Whether Cinder shows the volume attached (`attached`, not only reserved or attaching) to
    /// the server.
    #[must_use]
    pub fn is_attached_complete(&self, volume_id: &str, server_id: &str) -> bool {
        self.volume(volume_id).is_some_and(|volume| {
            volume
                .attachments
                .iter()
                .any(|a| a.server_id == server_id && a.status == AttachStatus::Attached)
        })
    }
}

/// A time as Nova's database keeps it in a `DateTime` column (`created_at`, `updated_at`,
/// `deleted_at`, `terminated_at`: `sa.DateTime` in the initial migration
/// `8f2f1571d55b_initial_version.py`, a MySQL `DATETIME` without fractional seconds), to which
/// MySQL rounds a time with a fraction ("Fractional Seconds in Time Values", MySQL reference
/// manual).
fn db_time(time: Timestamp) -> Timestamp {
    let micros = time.as_microsecond();
    let seconds = micros.saturating_add(500_000).div_euclid(1_000_000);
    Timestamp::from_second(seconds).unwrap_or(time)
}

/// Rounded milliseconds of a small, non-negative number of seconds (the scenario checks the
/// range).
fn millis(seconds: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    ms
}

/// Nova's 409 for an action the instance's state forbids
/// (`raise_http_conflict_for_instance_invalid_state`).
fn invalid_state(action: &str, server_id: &str, attr: &str, state: &str) -> Refusal {
    Refusal::Conflict(format!(
        "Cannot '{action}' instance {server_id} while it is in {attr} {state}"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Cloud, Microversion, Refusal, StatusCode, VolumeAction};
    use crate::scenario::{HostState, Scenario, ServerStatus};

    const SERVER: &str = "11111111-1111-4111-8111-111111111111";
    const VOLUME: &str = "aaaaaaaa-0000-4000-8000-00000000000b";

    /// One live server with one volume attached, the attachment's keys and `behaviour` as
    /// given.
    fn cloud(attachment: &str, behaviour: &str) -> Cloud {
        let text = format!(
            "name: t
openstack:
  compute_hosts: [{{name: compute-1}}]
  servers: [{{id: {SERVER}, name: node-a, status: ACTIVE, host: compute-1}}]
  volumes:
    - {{id: {VOLUME}, attachments: [{{server: {SERVER}{attachment}}}]}}
  behaviour: {{{behaviour}}}
"
        );
        let scenario = Scenario::parse(&text, Path::new("t.yaml")).unwrap();
        Cloud::new(&scenario.openstack)
    }

    fn attachment_id(cloud: &Cloud) -> String {
        cloud.volume(VOLUME).unwrap().attachments[0].id.clone()
    }

    #[test]
    fn the_attachment_guard_refuses_user_removal_while_the_server_exists() {
        let mut guarded = cloud("", "");
        let id = attachment_id(&guarded);
        let refused = guarded.delete_attachment(&id, 0).unwrap_err();
        assert!(matches!(refused, Refusal::Conflict(_)), "{refused:?}");
        let detach = VolumeAction::Detach {
            attachment_id: Some(id),
        };
        let refused = guarded.volume_action(VOLUME, &detach, 0).unwrap_err();
        assert!(matches!(refused, Refusal::Conflict(_)), "{refused:?}");
        assert_eq!(guarded.volume(VOLUME).unwrap().status, "in-use");
    }

    #[test]
    fn without_the_attachment_guard_cinder_removes_a_live_servers_attachment() {
        let mut unpatched = cloud("", "cinder_attachment_guard: false");
        let id = attachment_id(&unpatched);
        unpatched.delete_attachment(&id, 0).unwrap();
        let volume = unpatched.volume(VOLUME).unwrap();
        assert_eq!(volume.status, "available");
        assert!(volume.attachments.is_empty());
        let mut unpatched = cloud("", "cinder_attachment_guard: false");
        let detach = VolumeAction::Detach {
            attachment_id: None,
        };
        unpatched.volume_action(VOLUME, &detach, 0).unwrap();
        assert!(!unpatched.is_attached(VOLUME, SERVER));
    }

    #[test]
    fn microversion_negotiation() {
        let (min, max) = (Microversion(2, 1), Microversion(2, 96));
        assert_eq!(Microversion::negotiate(None, min, max), Ok(min));
        assert_eq!(Microversion::negotiate(Some("latest"), min, max), Ok(max));
        assert_eq!(
            Microversion::negotiate(Some("2.53"), min, max),
            Ok(Microversion(2, 53))
        );
        let too_new = Microversion::negotiate(Some("2.200"), min, max);
        assert_eq!(too_new.map_err(|e| e.0), Err(StatusCode::NOT_ACCEPTABLE));
        let bad = Microversion::negotiate(Some("2.x"), min, max);
        assert_eq!(bad.map_err(|e| e.0), Err(StatusCode::BAD_REQUEST));
        let leading_zero = Microversion::negotiate(Some("2.01"), min, max);
        assert_eq!(leading_zero.map_err(|e| e.0), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn the_volume_status_follows_the_attachment_that_takes_precedence() {
        let status =
            |attachment: &str| cloud(attachment, "").volume(VOLUME).unwrap().status.clone();
        assert_eq!(status(""), "in-use");
        assert_eq!(status(", status: attached"), "in-use");
        assert_eq!(status(", status: attaching"), "attaching");
        assert_eq!(status(", status: reserved"), "reserved");
        let text = format!(
            "name: t
openstack:
  servers:
    - {{id: {SERVER}, name: node-a, status: ACTIVE}}
    - {{id: 22222222-2222-4222-8222-222222222222, name: node-b, status: ACTIVE}}
  volumes:
    - id: {VOLUME}
      multiattach: true
      attachments:
        - {{server: 22222222-2222-4222-8222-222222222222, status: reserved}}
        - {{server: {SERVER}, status: attached}}
"
        );
        let scenario = Scenario::parse(&text, Path::new("t.yaml")).unwrap();
        let mut cloud = Cloud::new(&scenario.openstack);
        assert_eq!(cloud.volume(VOLUME).unwrap().status, "in-use");
        // Once the attached one is gone, the reserved one decides.
        let attached = cloud.volume(VOLUME).unwrap().attachments[1].id.clone();
        cloud.drop_attachment(VOLUME, &attached, 0);
        assert_eq!(cloud.volume(VOLUME).unwrap().status, "reserved");
    }

    #[test]
    fn the_attachment_guard_lets_a_reserved_attachment_go() {
        let mut guarded = cloud(", status: reserved", "");
        let id = attachment_id(&guarded);
        guarded.delete_attachment(&id, 0).unwrap();
        assert_eq!(guarded.volume(VOLUME).unwrap().status, "available");
        let mut guarded = cloud(", status: attaching", "");
        let id = attachment_id(&guarded);
        let refused = guarded.delete_attachment(&id, 0).unwrap_err();
        assert!(matches!(refused, Refusal::Conflict(_)), "{refused:?}");
    }

    #[test]
    fn detaches_and_power_actions_complete_when_due_on_a_host_that_answers() {
        let mut slow = cloud("", "detach_seconds: 2");
        slow.detach(SERVER, VOLUME, 0).unwrap();
        slow.stop(SERVER, 0).unwrap();
        slow.set_host_state("compute-1", Some(HostState::Down), None, 500);
        slow.advance(1999);
        assert_eq!(slow.volume(VOLUME).unwrap().status, "detaching");
        slow.advance(5000);
        assert_eq!(
            slow.volume(VOLUME).unwrap().status,
            "detaching",
            "the host is down"
        );
        assert_eq!(
            slow.server(SERVER).unwrap().task_state.as_deref(),
            Some("powering-off")
        );
        slow.set_host_state("compute-1", Some(HostState::Up), None, 6000);
        slow.advance(6000);
        assert_eq!(slow.volume(VOLUME).unwrap().status, "available");
        assert!(slow.server_attachments(SERVER).next().is_none());
        let server = slow.server(SERVER).unwrap();
        assert_eq!(
            (server.status, server.task_state.as_deref()),
            (ServerStatus::Shutoff, None)
        );
        assert!(slow.detaching.is_empty() && slow.powering.is_empty());

        let mut instant = cloud("", "detach_seconds: 0");
        let id = attachment_id(&instant);
        assert!(instant.attachment(&id).is_some());
        instant.detach(SERVER, VOLUME, 0).unwrap();
        instant.advance(0);
        assert!(
            instant.attachment(&id).is_none(),
            "a gone attachment is not found by id"
        );
    }
}
