//! Scenario files: the YAML description of an emulated cloud and cluster.
//!
//! The keys are a stable, documented interface (`docs/scenarios.md`): keys may be added, never
//! renamed. Unknown keys are an error naming the key and its line; so is a reference to a server,
//! host, persistent volume, claim or node that the scenario does not define.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

/// The seed story (seeds 000/001), built in as the default scenario of `demo`.
pub const SEED_SCENARIO: &str = include_str!("../../../scenarios/seed-node-shutdown.yaml");

/// A scenario that could not be loaded: names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The scenario file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, or a key or value is not one the format knows.
    #[error("scenario {path}{location}: {message}")]
    Syntax {
        /// The scenario file.
        path: PathBuf,
        /// `:LINE:COLUMN` when known.
        location: LineSuffix,
        /// What is wrong, as the YAML reader says it.
        message: String,
    },
    /// The file parses but does not make sense: a dangling reference, a duplicate, a bad value.
    #[error("scenario {path}{location}: {key}: {message}")]
    Invalid {
        /// The scenario file.
        path: PathBuf,
        /// `:LINE:COLUMN` of the offending value, when known.
        location: LineSuffix,
        /// The key path, e.g. `kubernetes.pods[0].node`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// `:LINE:COLUMN`, or nothing when the position is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSuffix(Option<(u64, u64)>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, ":{line}:{column}"),
            None => Ok(()),
        }
    }
}

/// A string value with the line it stands on, for references checked after parsing.
pub type Ref = Spanned<String>;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown by `demo`.
    pub name: String,
    /// What real situation the scenario reproduces.
    #[serde(default)]
    pub description: String,
    /// The emulated OpenStack cloud.
    #[serde(default)]
    pub openstack: OpenStack,
    /// The emulated Kubernetes cluster.
    #[serde(default)]
    pub kubernetes: Kubernetes,
    /// The emulated LINSTOR cluster, for LINSTOR scenarios.
    #[serde(default)]
    pub linstor: Option<Linstor>,
    /// Changes applied at given times after the start.
    #[serde(default)]
    pub timeline: Vec<Step>,
    /// What a correct remediator achieves; checked by `demo --check`.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// How `demo` configures the remediator for this scenario (its flags override).
    #[serde(default)]
    pub remediator: Remediator,
}

/// How `demo` configures the remediator for a scenario; every key is optional and a `demo`
/// flag overrides it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remediator {
    /// Grace period after a node stops being Ready.
    #[serde(default, deserialize_with = "de_optional_duration")]
    pub grace: Option<Duration>,
    /// `delete` or `out-of-service-taint`.
    #[serde(default)]
    pub strategy: Option<StrategyName>,
    /// Storm guard: `40%` or a node count.
    #[serde(default)]
    pub max_unhealthy: Option<String>,
    /// Delete replacement pods waiting on a freed volume.
    #[serde(default)]
    pub kick: Option<bool>,
    /// `observe` or `stop`.
    #[serde(default)]
    pub fence: Option<FenceName>,
    /// Accept a forced-down compute host as proof.
    #[serde(default)]
    pub trust_forced_down: Option<bool>,
    /// `report`, `delete-server` or `evacuate`.
    #[serde(default)]
    pub dead_host: Option<DeadHostName>,
    /// How long an evacuated server's node may take to come back Ready.
    #[serde(default, deserialize_with = "de_optional_duration")]
    pub evacuate_wait: Option<Duration>,
    /// Force-delete only pods labelled `linstor.csi.linbit.com/on-storage-lost=remove`.
    #[serde(default)]
    pub only_labelled_pods: Option<bool>,
    /// The controller's cloud-side watch interval (`run --watch-cloud`); off when left out.
    #[serde(default, deserialize_with = "de_optional_duration")]
    pub watch_cloud: Option<Duration>,
}

/// A dead-host action, as scenario files and flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum DeadHostName {
    Report,
    DeleteServer,
    Evacuate,
}

/// A Kubernetes-side strategy, as scenario files and flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum StrategyName {
    Delete,
    OutOfServiceTaint,
}

/// A fence mode, as scenario files and flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum FenceName {
    Observe,
    Stop,
}

/// The OpenStack side: compute hosts, servers, volumes and how the cloud behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStack {
    /// Region of every endpoint in the catalog.
    #[serde(default = "default_region")]
    pub region: String,
    /// Project (tenant) name the credentials are scoped to.
    #[serde(default = "default_project")]
    pub project: String,
    /// nova-compute services.
    #[serde(default)]
    pub compute_hosts: Vec<ComputeHost>,
    /// Nova servers.
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Cinder volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Timing and injected faults.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// The role the credentials hold in the project, which decides what Nova's and Cinder's
    /// default policies let them see and do.
    #[serde(default)]
    pub role: Role,
}

impl Default for OpenStack {
    fn default() -> Self {
        Self {
            region: default_region(),
            project: default_project(),
            compute_hosts: Vec::new(),
            servers: Vec::new(),
            volumes: Vec::new(),
            behaviour: Behaviour::default(),
            role: Role::default(),
        }
    }
}

/// The Keystone role of the emulated user in its project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `admin` (with `member` and `reader`, as Keystone's implied roles give): every Nova and
    /// Cinder API, every field.
    #[default]
    Admin,
    /// `member` (with `reader`): a project user; Nova hides the host fields and refuses
    /// `os-services`, Cinder refuses its admin actions.
    Member,
}

fn default_region() -> String {
    "RegionOne".to_owned()
}

fn default_project() -> String {
    "kube".to_owned()
}

fn default_zone() -> String {
    "nova".to_owned()
}

/// A nova-compute service on a compute host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeHost {
    /// Host name, referred to by `servers[].host`.
    pub name: String,
    /// Whether the service reports in.
    #[serde(default)]
    pub state: HostState,
    /// Whether an operator (or a fencing agent) marked the service forced down.
    #[serde(default)]
    pub forced_down: bool,
    /// Availability zone of the host.
    #[serde(default = "default_zone")]
    pub zone: String,
}

/// The state of a nova-compute service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Reporting in.
    #[default]
    Up,
    /// Not reporting in.
    Down,
}

/// A Nova server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Server UUID.
    pub id: String,
    /// Server name.
    pub name: String,
    /// Nova status.
    pub status: ServerStatus,
    /// `OS-EXT-STS:power_state`; derived from `status` when left out.
    #[serde(default)]
    pub power_state: Option<u8>,
    /// `OS-EXT-STS:task_state` (e.g. `powering-off`, `deleting`); none when left out.
    #[serde(default)]
    pub task_state: Option<String>,
    /// Compute host (a `compute_hosts` name).
    #[serde(default)]
    pub host: Option<Ref>,
    /// Availability zone.
    #[serde(default = "default_zone")]
    pub availability_zone: String,
    /// Fixed IPv4 addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The server was deleted: Nova answers 404 for it, Cinder may still hold attachments to it.
    #[serde(default)]
    pub deleted: bool,
}

/// A Nova server status, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum ServerStatus {
    Active,
    Build,
    Error,
    HardReboot,
    Migrating,
    Paused,
    Reboot,
    Rescue,
    Resize,
    Shelved,
    ShelvedOffloaded,
    Shutoff,
    Suspended,
    Unknown,
    VerifyResize,
}

impl ServerStatus {
    /// The status as Nova spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Build => "BUILD",
            Self::Error => "ERROR",
            Self::HardReboot => "HARD_REBOOT",
            Self::Migrating => "MIGRATING",
            Self::Paused => "PAUSED",
            Self::Reboot => "REBOOT",
            Self::Rescue => "RESCUE",
            Self::Resize => "RESIZE",
            Self::Shelved => "SHELVED",
            Self::ShelvedOffloaded => "SHELVED_OFFLOADED",
            Self::Shutoff => "SHUTOFF",
            Self::Suspended => "SUSPENDED",
            Self::Unknown => "UNKNOWN",
            Self::VerifyResize => "VERIFY_RESIZE",
        }
    }

    /// The power state Nova reports with this status (0 NOSTATE, 1 RUNNING, 3 PAUSED,
    /// 4 SHUTDOWN, 6 CRASHED, 7 SUSPENDED).
    #[must_use]
    pub fn default_power_state(self) -> u8 {
        match self {
            Self::Active
            | Self::HardReboot
            | Self::Migrating
            | Self::Reboot
            | Self::Rescue
            | Self::Resize
            | Self::VerifyResize => 1,
            Self::Paused => 3,
            Self::Shutoff | Self::Shelved => 4,
            Self::Suspended => 7,
            Self::Build | Self::Error | Self::ShelvedOffloaded | Self::Unknown => 0,
        }
    }

    /// The `OS-EXT-STS:vm_state` Nova reports with this status.
    #[must_use]
    pub fn vm_state(self) -> &'static str {
        match self {
            Self::Active | Self::HardReboot | Self::Reboot | Self::Migrating => "active",
            Self::Build => "building",
            Self::Error | Self::Unknown => "error",
            Self::Paused => "paused",
            Self::Rescue => "rescued",
            Self::Resize | Self::VerifyResize => "resized",
            Self::Shelved => "shelved",
            Self::ShelvedOffloaded => "shelved_offloaded",
            Self::Shutoff => "stopped",
            Self::Suspended => "suspended",
        }
    }
}

/// A Cinder volume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume UUID.
    pub id: String,
    /// Volume name (Cinder allows none).
    #[serde(default)]
    pub name: Option<String>,
    /// Size in GiB.
    #[serde(default = "default_size")]
    pub size: u64,
    /// Availability zone.
    #[serde(default = "default_zone")]
    pub availability_zone: String,
    /// Whether the volume may be attached to several servers at once.
    #[serde(default)]
    pub multiattach: bool,
    /// Whether the volume is a boot volume.
    #[serde(default)]
    pub bootable: bool,
    /// Current attachments. The volume's status follows them as Cinder's: `in-use` with an
    /// `attached` one, else `attaching` with an `attaching` one, else `reserved` with a
    /// `reserved` one, else `available`.
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    /// A detach of this volume never completes (stays `detaching`), like one on a dead host.
    #[serde(default)]
    pub detach_stuck: bool,
}

fn default_size() -> u64 {
    1
}

/// One attachment of a volume to a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeAttachment {
    /// The server (a `servers` id).
    pub server: Ref,
    /// The device name in the guest.
    #[serde(default = "default_device")]
    pub device: String,
    /// Cinder's `attach_status` (`attached`, `attaching` or `reserved`); `attached` when left
    /// out. See [`VolumeAttachment::attach_status`].
    #[serde(default)]
    pub status: Option<Ref>,
}

impl VolumeAttachment {
    /// The attachment's Cinder status; a scenario that parsed has a valid one.
    #[must_use]
    pub fn attach_status(&self) -> AttachStatus {
        self.status
            .as_ref()
            .and_then(|status| AttachStatus::parse(&status.value))
            .unwrap_or_default()
    }
}

/// The `attach_status` of a Cinder attachment, in Cinder's order of precedence for the volume's
/// status (the alphabetical order `_get_statuses_from_attachments` sorts by). A `detached`
/// attachment is deleted in Cinder, so a scenario leaves it out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttachStatus {
    /// `attachment_complete` done: the volume is `in-use`, and lists it.
    #[default]
    Attached,
    /// `attachment_update` done (the host's connector is in), not completed: the volume is
    /// `attaching` and does not list it.
    Attaching,
    /// Created by `attachment_create` without a connector (Nova reserved it): the volume is
    /// `reserved` and does not list it.
    Reserved,
}

impl AttachStatus {
    const ALL: [Self; 3] = [Self::Attached, Self::Attaching, Self::Reserved];

    /// As Cinder spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attached => "attached",
            Self::Attaching => "attaching",
            Self::Reserved => "reserved",
        }
    }

    /// The volume status Cinder derives from this, the attachment that takes precedence.
    #[must_use]
    pub fn volume_status(self) -> &'static str {
        match self {
            Self::Attached => "in-use",
            other => other.as_str(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

fn default_device() -> String {
    "/dev/vdb".to_owned()
}

/// How the emulated cloud behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Seconds a detach spends in `detaching` before the volume is `available`.
    #[serde(default = "default_detach_seconds")]
    pub detach_seconds: f64,
    /// Milliseconds added to every OpenStack API response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Injected failures.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Cinder's OSSA-2023-003 (OSSN-0092, bug 2004555) guard: a user's removal of an attachment
    /// (`DELETE /attachments/{id}`, `os-detach`, `os-force_detach`) is refused with 409 while
    /// Nova still holds it. `false` is an unpatched Cinder (before May 2023), which removes the
    /// attachment anyway; the emulator then drops Nova's side of it too, where real Nova would
    /// keep its block device mapping.
    #[serde(default = "yes")]
    pub cinder_attachment_guard: bool,
    /// Nova's `service_down_time`: seconds after its last heartbeat during which Nova still
    /// counts a nova-compute service as up (Nova's default is 60).
    #[serde(default = "default_service_down_time")]
    pub service_down_time: f64,
    /// Nova's `[api] max_limit` (once `osapi_max_limit`): the most servers one list answer
    /// holds, whatever `limit` asks (Nova's default is 1000).
    #[serde(default = "default_nova_max_limit")]
    pub nova_max_limit: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            detach_seconds: default_detach_seconds(),
            latency_ms: 0,
            faults: Vec::new(),
            cinder_attachment_guard: true,
            service_down_time: default_service_down_time(),
            nova_max_limit: default_nova_max_limit(),
        }
    }
}

fn default_nova_max_limit() -> usize {
    1000
}

fn default_service_down_time() -> f64 {
    60.0
}

fn default_detach_seconds() -> f64 {
    2.0
}

/// An injected failure, matched on service, method and path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Which emulator it applies to; every one when left out.
    #[serde(default)]
    pub service: Option<Service>,
    /// HTTP method, or `*`.
    #[serde(default = "any_method")]
    pub method: String,
    /// Path pattern; `*` matches one path segment, a trailing `**` any rest.
    pub path: String,
    /// The status code to answer with, in the service's error shape.
    #[serde(default)]
    pub status: Option<u16>,
    /// Milliseconds to wait before answering (a slow or hung endpoint).
    #[serde(default)]
    pub delay_ms: u64,
    /// How many requests it applies to; every one when left out.
    #[serde(default)]
    pub times: Option<u32>,
}

fn any_method() -> String {
    "*".to_owned()
}

/// The emulated services.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Service {
    Keystone,
    Nova,
    Cinder,
    Kubernetes,
    Linstor,
}

impl Service {
    /// The name used in the request log and in `endpoints.json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keystone => "keystone",
            Self::Nova => "nova",
            Self::Cinder => "cinder",
            Self::Kubernetes => "kubernetes",
            Self::Linstor => "linstor",
        }
    }
}

/// The Kubernetes side.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// PersistentVolumes (each with its bound claim).
    #[serde(default)]
    pub persistent_volumes: Vec<PersistentVolume>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Deployments (`apps/v1`); their pods are the scenario's `pods` (owned by a ReplicaSet
    /// named after the Deployment), the Deployment itself creates none.
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    /// VolumeAttachments.
    #[serde(default)]
    pub volume_attachments: Vec<KubeVolumeAttachment>,
    /// Pre-existing Events.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Kubernetes' own controllers to switch off (`{name: false}`); every one runs unless
    /// switched off: `nodelifecycle`, `replicaset`, `statefulset`, `scheduler`, `attachdetach`,
    /// `kubelet`, `taint-eviction`, `podgc`, and the CSI drivers' `csi-attacher` (down, as when
    /// its controller pod ran on the dead node).
    #[serde(default)]
    pub controllers: BTreeMap<String, bool>,
    /// How the emulated cluster acts.
    #[serde(default)]
    pub behaviour: KubeBehaviour,
}

/// The names `kubernetes.controllers` accepts.
pub const CONTROLLERS: [&str; 9] = [
    "nodelifecycle",
    "replicaset",
    "statefulset",
    "scheduler",
    "attachdetach",
    "kubelet",
    "taint-eviction",
    "podgc",
    "csi-attacher",
];

impl Kubernetes {
    /// Whether a controller of [`CONTROLLERS`] runs (all do unless switched off).
    #[must_use]
    pub fn runs(&self, controller: &str) -> bool {
        self.controllers.get(controller).copied().unwrap_or(true)
    }
}

/// How the emulated cluster acts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeBehaviour {
    /// Seconds a kubelet takes to start a pod's containers once its volumes are attached.
    #[serde(default = "default_start_seconds")]
    pub start_seconds: f64,
    /// Seconds from Nova bringing a node's server up (`os-start`, an evacuate done) until its
    /// kubelet reports the node Ready again.
    #[serde(default = "default_boot_seconds")]
    pub boot_seconds: f64,
}

impl Default for KubeBehaviour {
    fn default() -> Self {
        Self {
            start_seconds: default_start_seconds(),
            boot_seconds: default_boot_seconds(),
        }
    }
}

fn default_start_seconds() -> f64 {
    1.0
}

fn default_boot_seconds() -> f64 {
    20.0
}

/// A Kubernetes node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// `spec.providerID`.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The Ready condition's status.
    #[serde(default)]
    pub ready: Readiness,
    /// How long ago the Ready condition last changed.
    #[serde(default, deserialize_with = "de_duration")]
    pub ready_since: Duration,
    /// InternalIP addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations, on top of the ones a kubelet sets (e.g. a remediator's progress record).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

/// The status of a Ready condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readiness {
    /// `"True"`.
    #[default]
    True,
    /// `"False"`.
    False,
    /// `Unknown`: the node stopped reporting.
    Unknown,
}

impl Readiness {
    /// The condition status as Kubernetes spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl<'de> Deserialize<'de> for Readiness {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(true) => Ok(Self::True),
            Raw::Bool(false) => Ok(Self::False),
            Raw::Text(text) => match text.as_str() {
                "True" | "true" => Ok(Self::True),
                "False" | "false" => Ok(Self::False),
                "Unknown" | "unknown" => Ok(Self::Unknown),
                other => Err(de::Error::custom(format!(
                    "ready: expected \"True\", \"False\" or Unknown, found {other:?}"
                ))),
            },
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A PersistentVolume and the claim bound to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistentVolume {
    /// PV name.
    pub name: String,
    /// CSI source.
    #[serde(default)]
    pub csi: Option<CsiSource>,
    /// In-tree Cinder source.
    #[serde(default)]
    pub cinder: Option<InTreeCinderSource>,
    /// `namespace/name` of the bound claim; the PVC is created Bound.
    #[serde(default)]
    pub claim: Option<Ref>,
    /// Access modes.
    #[serde(default = "default_access_modes")]
    pub access_modes: Vec<String>,
    /// Capacity in GiB; the volume's size when it names a scenario volume.
    #[serde(default)]
    pub size: Option<u64>,
}

fn default_access_modes() -> Vec<String> {
    vec!["ReadWriteOnce".to_owned()]
}

/// A CSI volume source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiSource {
    /// CSI driver name.
    pub driver: String,
    /// The driver's volume id (a Cinder volume id for `cinder.csi.openstack.org`).
    pub volume_handle: String,
}

/// An in-tree Cinder volume source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InTreeCinderSource {
    /// The Cinder volume id.
    pub volume_id: String,
}

/// A pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// Namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The node it is scheduled on; none while unscheduled.
    #[serde(default)]
    pub node: Option<Ref>,
    /// `status.phase`.
    #[serde(default = "default_phase")]
    pub phase: String,
    /// Waiting reason of its container, e.g. `ContainerCreating`.
    #[serde(default)]
    pub waiting_reason: Option<String>,
    /// Whether it is being deleted (`deletionTimestamp` set).
    #[serde(default)]
    pub terminating: bool,
    /// PVC names in the pod's namespace.
    #[serde(default)]
    pub claims: Vec<Ref>,
    /// The controller that owns it; none for a bare pod.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Tolerations beyond the two DefaultTolerationSeconds adds (`not-ready` and `unreachable`,
    /// NoExecute, 300 s); one with the same key and effect replaces the default.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

/// A Deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `spec.replicas`.
    #[serde(default = "one")]
    pub replicas: u32,
    /// `spec.strategy.type`: `RollingUpdate` (the API server's default) or `Recreate`.
    #[serde(default)]
    pub strategy: Option<Ref>,
    /// PVC names in the Deployment's namespace, the volumes of its pod template.
    #[serde(default)]
    pub claims: Vec<Ref>,
}

/// The update strategies of a Deployment, as the API spells them.
pub const DEPLOYMENT_STRATEGIES: [&str; 2] = ["RollingUpdate", "Recreate"];

impl Deployment {
    /// `spec.strategy.type`; a scenario that parsed has a valid one.
    #[must_use]
    pub fn strategy(&self) -> &str {
        self.strategy
            .as_ref()
            .map_or(DEPLOYMENT_STRATEGIES[0], |strategy| strategy.value.as_str())
    }
}

fn one() -> u32 {
    1
}

/// A pod toleration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// Taint key; none with `operator: Exists` tolerates every taint.
    #[serde(default)]
    pub key: Option<String>,
    /// `Exists` or `Equal` (default `Equal`).
    #[serde(default)]
    pub operator: Option<String>,
    /// Value for `Equal`.
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`; none matches all.
    #[serde(default)]
    pub effect: Option<String>,
    /// For NoExecute: how long the pod stays after the taint is added.
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn default_phase() -> String {
    "Running".to_owned()
}

/// A pod's controlling owner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Kind, e.g. `ReplicaSet` or `StatefulSet`.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// A VolumeAttachment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeVolumeAttachment {
    /// The PV it attaches.
    pub pv: Ref,
    /// The node it attaches to.
    pub node: Ref,
    /// `status.attached`.
    #[serde(default = "yes")]
    pub attached: bool,
}

fn yes() -> bool {
    true
}

/// A pre-existing Event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `pod/NAMESPACE/NAME` or `node/NAME`.
    pub object: Ref,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default = "default_event_type")]
    pub kind: String,
    /// Reason, e.g. `FailedAttachVolume`.
    pub reason: String,
    /// Message.
    pub message: String,
}

fn default_event_type() -> String {
    "Warning".to_owned()
}

/// The LINSTOR side.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linstor {
    /// Satellites.
    #[serde(default)]
    pub nodes: Vec<LinstorNode>,
    /// Replicas, one per (resource, node).
    #[serde(default)]
    pub resources: Vec<LinstorResource>,
    /// The first controller endpoint (`linstor` in `endpoints.json`) refuses connections: its
    /// port is closed.
    #[serde(default)]
    pub controller_down: bool,
    /// A second controller endpoint (`linstor_backup`) serves the same cluster.
    #[serde(default)]
    pub backup_controller: bool,
}

/// The connection statuses LINSTOR's REST API gives a node.
pub const LINSTOR_CONNECTION_STATUSES: [&str; 11] = [
    "OFFLINE",
    "CONNECTED",
    "ONLINE",
    "VERSION_MISMATCH",
    "FULL_SYNC_FAILED",
    "AUTHENTICATION_ERROR",
    "UNKNOWN",
    "HOSTNAME_MISMATCH",
    "OTHER_CONTROLLER",
    "AUTHENTICATED",
    "NO_STLT_CONN",
];

/// The node types a scenario may give a LINSTOR node.
pub const LINSTOR_NODE_TYPES: [&str; 4] = ["SATELLITE", "COMBINED", "CONTROLLER", "AUXILIARY"];

/// A LINSTOR satellite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinstorNode {
    /// Node name.
    pub name: String,
    /// `ONLINE`, `OFFLINE`, ... (the values of LINSTOR's `connection_status`).
    #[serde(default = "online")]
    pub connection_status: String,
    /// `SATELLITE`, `COMBINED`, ...
    #[serde(rename = "type", default = "satellite")]
    pub kind: String,
    /// Whether DRBD peers still reach the node; left out: whether it is `ONLINE`. `true` on an
    /// `OFFLINE` node is a satellite the controller lost while DRBD replication goes on.
    #[serde(default)]
    pub drbd_connected: Option<bool>,
}

fn online() -> String {
    "ONLINE".to_owned()
}

fn satellite() -> String {
    "SATELLITE".to_owned()
}

/// What a replica holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaKind {
    /// A replica with a disk (a quorum voter).
    #[default]
    Diskful,
    /// A DRBD client without a disk (what linstor-csi creates to attach elsewhere).
    Diskless,
    /// A diskless replica LINSTOR keeps for quorum only (a voter).
    TieBreaker,
}

/// One replica of a LINSTOR resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinstorResource {
    /// Resource name.
    pub name: String,
    /// Node holding the replica.
    pub node: Ref,
    /// `diskful`, `diskless` or `tie-breaker`.
    #[serde(default)]
    pub kind: ReplicaKind,
    /// Whether DRBD is Primary (the device is open) here.
    #[serde(default)]
    pub in_use: bool,
    /// Whether this replica may become Primary; left out: as DRBD decides it (see
    /// `docs/scenarios.md`).
    #[serde(default)]
    pub may_promote: Option<bool>,
    /// DRBD's promotion score; left out: 10102 when the replica may promote, else 0.
    #[serde(default)]
    pub promotion_score: Option<u32>,
    /// DRBD disk state, e.g. `UpToDate`; left out: `UpToDate`, `Diskless` for a replica
    /// without a disk.
    #[serde(default)]
    pub disk_state: Option<String>,
    /// Peer node name -> whether the DRBD connection to it is up; a peer left out is connected
    /// while both ends are reachable.
    #[serde(default)]
    pub connections: BTreeMap<String, bool>,
}

/// One timeline entry: at `at`, exactly one change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// When, after the start.
    #[serde(deserialize_with = "de_duration")]
    pub at: Duration,
    /// A server changes status.
    #[serde(default)]
    pub server_status: Option<ServerStatusChange>,
    /// A node's Ready condition changes.
    #[serde(default)]
    pub node_ready: Option<NodeReadyChange>,
    /// A compute host's service state changes.
    #[serde(default)]
    pub host_state: Option<HostStateChange>,
    /// A LINSTOR satellite's connection status changes.
    #[serde(default)]
    pub linstor_node: Option<LinstorNodeChange>,
}

/// A server status change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerStatusChange {
    /// The server id.
    pub server: Ref,
    /// The new status.
    pub status: ServerStatus,
    /// The new power state; derived from the status when left out.
    #[serde(default)]
    pub power_state: Option<u8>,
    /// The new task state.
    #[serde(default)]
    pub task_state: Option<String>,
}

/// A node Ready condition change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReadyChange {
    /// The node name.
    pub node: Ref,
    /// The new status.
    pub status: Readiness,
}

/// A compute host state change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostStateChange {
    /// The host name.
    pub host: Ref,
    /// The new state (left out: unchanged).
    #[serde(default)]
    pub state: Option<HostState>,
    /// An operator or a fencing agent marks the service forced down (`openstack compute
    /// service set --down`), or lifts it (left out: unchanged).
    #[serde(default)]
    pub forced_down: Option<bool>,
}

/// A LINSTOR satellite connection change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinstorNodeChange {
    /// The node name.
    pub node: Ref,
    /// The new connection status.
    pub connection_status: String,
    /// Whether DRBD peers still reach the node; left out: whether it is `ONLINE`.
    #[serde(default)]
    pub drbd_connected: Option<bool>,
}

/// What a correct remediator achieves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Volumes that end `available`.
    #[serde(default)]
    pub volumes_available: Vec<Ref>,
    /// (volume, server) attachments that must still stand.
    #[serde(default)]
    pub volumes_attached: Vec<AttachedPair>,
    /// (volume, server) attachments that must end released, for a multi-attach volume whose
    /// other attachments stay.
    #[serde(default)]
    pub volumes_detached: Vec<AttachedPair>,
    /// `namespace/name` of pods that end deleted.
    #[serde(default)]
    pub pods_deleted: Vec<Ref>,
    /// `namespace/name` of pods that must still exist.
    #[serde(default)]
    pub pods_kept: Vec<Ref>,
    /// `PV@NODE` VolumeAttachments that end deleted.
    #[serde(default)]
    pub volume_attachments_deleted: Vec<Ref>,
    /// `PV@NODE` VolumeAttachments that must still exist.
    #[serde(default)]
    pub volume_attachments_kept: Vec<Ref>,
    /// Nodes that end with the out-of-service taint.
    #[serde(default)]
    pub nodes_tainted_out_of_service: Vec<Ref>,
    /// Workloads that end with a pod Running elsewhere, on its volume.
    #[serde(default)]
    pub pods_running: Vec<PodRunning>,
    /// Servers that end deleted (Nova answers 404).
    #[serde(default)]
    pub servers_deleted: Vec<Ref>,
    /// Servers that end `ACTIVE` on another compute host than the one they were on.
    #[serde(default)]
    pub servers_moved: Vec<ServerMoved>,
    /// Nodes that end deleted.
    #[serde(default)]
    pub nodes_deleted: Vec<Ref>,
    /// Nodes that end Ready.
    #[serde(default)]
    pub nodes_ready: Vec<Ref>,
    /// The most mutating (non-GET) requests to Nova and Cinder allowed.
    #[serde(default)]
    pub max_mutating_openstack_requests: Option<u32>,
    /// How many of the remediator's steps end failed, reported as such (a step that cannot
    /// succeed in this story); any other number fails the run.
    #[serde(default)]
    pub failed_steps: u32,
    /// Everything above holds within this time.
    #[serde(default = "default_within", deserialize_with = "de_duration")]
    pub within: Duration,
}

fn default_within() -> Duration {
    Duration::from_secs(30)
}

/// A server rebuilt elsewhere (an evacuate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerMoved {
    /// The server id.
    pub server: Ref,
    /// The compute host it must have left.
    pub from: Ref,
}

/// A pod of a workload Running on another node than the failed one, with its volume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRunning {
    /// `ReplicaSet/NAME` or `StatefulSet/NAME`, as the scenario's pods name their owner.
    pub owner: Ref,
    /// The pod runs on any node but this one.
    #[serde(default)]
    pub node_not: Option<Ref>,
    /// A Cinder volume id Cinder shows attached to the server of the pod's node.
    #[serde(default)]
    pub volume: Option<Ref>,
}

/// A (volume, server) pair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedPair {
    /// The volume id.
    pub volume: Ref,
    /// The server id.
    pub server: Ref,
}

fn de_optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(deserializer).map(Some)
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|err| {
        de::Error::custom(format!(
            "{text:?} is not a duration ({err}); write e.g. 30s, 2m or 1h"
        ))
    })
}

impl Scenario {
    /// Reads and validates a scenario file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid YAML, has unknown keys or bad values, or refers
    /// to something it does not define.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The built-in seed scenario.
    ///
    /// # Panics
    /// Never: the embedded file is checked by the test suite.
    #[must_use]
    pub fn seed() -> Self {
        Self::parse(
            SEED_SCENARIO,
            Path::new("<built-in seed-node-shutdown.yaml>"),
        )
        .expect("the built-in seed scenario is valid")
    }

    /// Parses and validates scenario text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Scenario::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let scenario: Self =
            serde_saphyr::from_str_with_options(text, options(text)).map_err(|err| {
                let plain = err.without_snippet();
                Error::Syntax {
                    path: path.to_owned(),
                    location: LineSuffix(
                        plain
                            .location()
                            .filter(|loc| loc.line() > 0)
                            .map(|loc| (loc.line(), loc.column())),
                    ),
                    message: strip_location(&plain.to_string()),
                }
            })?;
        scenario.validate().map_err(|problem| Error::Invalid {
            path: path.to_owned(),
            location: LineSuffix(problem.at.map(|at| (at.line(), at.column()))),
            key: problem.key,
            message: problem.message,
        })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), Problem> {
        let os = &self.openstack;
        let hosts = unique(
            os.compute_hosts.iter().map(|h| h.name.as_str()),
            "compute host",
        )?;
        let servers = unique(os.servers.iter().map(|s| s.id.as_str()), "server id")?;
        unique(os.volumes.iter().map(|v| v.id.as_str()), "volume id")?;
        for (i, server) in os.servers.iter().enumerate() {
            if let Some(host) = &server.host {
                known(
                    &hosts,
                    host,
                    &format!("openstack.servers[{i}].host"),
                    "compute_hosts",
                )?;
            }
        }
        for (i, volume) in os.volumes.iter().enumerate() {
            for (j, attachment) in volume.attachments.iter().enumerate() {
                let key = format!("openstack.volumes[{i}].attachments[{j}]");
                known(
                    &servers,
                    &attachment.server,
                    &format!("{key}.server"),
                    "openstack.servers",
                )?;
                if let Some(status) = &attachment.status
                    && AttachStatus::parse(&status.value).is_none()
                {
                    return Err(bad_ref(
                        status,
                        &format!("{key}.status"),
                        "attached, attaching or reserved (a detached attachment is gone in \
                         Cinder: leave it out)",
                    ));
                }
            }
            if volume.attachments.len() > 1 && !volume.multiattach {
                return Err(Problem {
                    at: Some(volume.attachments[1].server.referenced),
                    key: format!("openstack.volumes[{i}].attachments"),
                    message: "a volume without multiattach: true can have one attachment only"
                        .into(),
                });
            }
        }
        for (i, fault) in os.behaviour.faults.iter().enumerate() {
            if fault.status.is_none() && fault.delay_ms == 0 {
                return Err(Problem {
                    at: None,
                    key: format!("openstack.behaviour.faults[{i}]"),
                    message: "a fault needs a status, a delay_ms, or both".into(),
                });
            }
        }
        if !(os.behaviour.detach_seconds.is_finite() && os.behaviour.detach_seconds >= 0.0) {
            return Err(Problem {
                at: None,
                key: "openstack.behaviour.detach_seconds".into(),
                message: "must be a number of seconds, 0 or more".into(),
            });
        }
        let down_time = os.behaviour.service_down_time;
        if !(down_time.is_finite() && (0.0..=86_400.0).contains(&down_time)) {
            return Err(Problem {
                at: None,
                key: "openstack.behaviour.service_down_time".into(),
                message: "must be a number of seconds, 0 to 86400".into(),
            });
        }

        let k8s = &self.kubernetes;
        let nodes = unique(k8s.nodes.iter().map(|n| n.name.as_str()), "node name")?;
        if let Some(name) = k8s
            .controllers
            .keys()
            .find(|name| !CONTROLLERS.contains(&name.as_str()))
        {
            return Err(Problem {
                at: None,
                key: "kubernetes.controllers".to_owned(),
                message: format!("{name:?} is not one of {}", CONTROLLERS.join(", ")),
            });
        }
        let pvs = unique(
            k8s.persistent_volumes.iter().map(|p| p.name.as_str()),
            "PV name",
        )?;
        let mut claims = BTreeSet::new();
        for (i, pv) in k8s.persistent_volumes.iter().enumerate() {
            let key = format!("kubernetes.persistent_volumes[{i}]");
            if pv.csi.is_some() == pv.cinder.is_some() {
                return Err(Problem {
                    at: None,
                    key,
                    message: format!("PV {} needs exactly one of csi or cinder", pv.name),
                });
            }
            if let Some(claim) = &pv.claim {
                if split_ref(&claim.value).is_none() {
                    return Err(bad_ref(claim, &format!("{key}.claim"), "namespace/name"));
                }
                if !claims.insert(claim.value.clone()) {
                    return Err(Problem {
                        at: Some(claim.referenced),
                        key: format!("{key}.claim"),
                        message: format!("claim {} is bound to two PVs", claim.value),
                    });
                }
            }
        }
        let pods = unique(
            k8s.pods
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name)),
            "pod namespace/name",
        )?;
        for (i, pod) in k8s.pods.iter().enumerate() {
            if let Some(node) = &pod.node {
                known(
                    &nodes,
                    node,
                    &format!("kubernetes.pods[{i}].node"),
                    "kubernetes.nodes",
                )?;
            }
            for (j, claim) in pod.claims.iter().enumerate() {
                let full = format!("{}/{}", pod.namespace, claim.value);
                if !claims.contains(&full) {
                    return Err(Problem {
                        at: Some(claim.referenced),
                        key: format!("kubernetes.pods[{i}].claims[{j}]"),
                        message: format!(
                            "no persistent volume has claim {full}; add it as the claim of a \
                             kubernetes.persistent_volumes entry"
                        ),
                    });
                }
            }
        }
        unique(
            k8s.deployments
                .iter()
                .map(|d| format!("{}/{}", d.namespace, d.name)),
            "deployment namespace/name",
        )?;
        for (i, deployment) in k8s.deployments.iter().enumerate() {
            let key = format!("kubernetes.deployments[{i}]");
            if let Some(strategy) = &deployment.strategy
                && !DEPLOYMENT_STRATEGIES.contains(&strategy.value.as_str())
            {
                return Err(bad_ref(
                    strategy,
                    &format!("{key}.strategy"),
                    "RollingUpdate or Recreate",
                ));
            }
            for (j, claim) in deployment.claims.iter().enumerate() {
                let full = format!("{}/{}", deployment.namespace, claim.value);
                if !claims.contains(&full) {
                    return Err(Problem {
                        at: Some(claim.referenced),
                        key: format!("{key}.claims[{j}]"),
                        message: format!(
                            "no persistent volume has claim {full}; add it as the claim of a \
                             kubernetes.persistent_volumes entry"
                        ),
                    });
                }
            }
        }
        for (i, va) in k8s.volume_attachments.iter().enumerate() {
            let key = format!("kubernetes.volume_attachments[{i}]");
            known(
                &pvs,
                &va.pv,
                &format!("{key}.pv"),
                "kubernetes.persistent_volumes",
            )?;
            known(&nodes, &va.node, &format!("{key}.node"), "kubernetes.nodes")?;
        }
        for (i, event) in k8s.events.iter().enumerate() {
            let key = format!("kubernetes.events[{i}].object");
            let value = &event.object.value;
            let found = match value.split_once('/') {
                Some(("pod", rest)) => pods.contains(rest),
                Some(("node", rest)) => nodes.contains(rest),
                _ => false,
            };
            if !found {
                return Err(bad_ref(
                    &event.object,
                    &key,
                    "pod/NAMESPACE/NAME or node/NAME of a pod or node the scenario defines",
                ));
            }
        }

        let linstor_nodes: BTreeSet<&str> = match &self.linstor {
            Some(linstor) => validate_linstor(linstor)?,
            None => BTreeSet::new(),
        };

        for (i, step) in self.timeline.iter().enumerate() {
            let key = format!("timeline[{i}]");
            let count = usize::from(step.server_status.is_some())
                + usize::from(step.node_ready.is_some())
                + usize::from(step.host_state.is_some())
                + usize::from(step.linstor_node.is_some());
            if count != 1 {
                return Err(Problem {
                    at: None,
                    key,
                    message: "each step needs exactly one of server_status, node_ready, \
                              host_state, linstor_node"
                        .into(),
                });
            }
            if let Some(change) = &step.server_status {
                known(
                    &servers,
                    &change.server,
                    &format!("{key}.server_status.server"),
                    "openstack.servers",
                )?;
            }
            if let Some(change) = &step.node_ready {
                known(
                    &nodes,
                    &change.node,
                    &format!("{key}.node_ready.node"),
                    "kubernetes.nodes",
                )?;
            }
            if let Some(change) = &step.host_state {
                known(
                    &hosts,
                    &change.host,
                    &format!("{key}.host_state.host"),
                    "openstack.compute_hosts",
                )?;
            }
            if let Some(change) = &step.linstor_node {
                known(
                    &linstor_nodes,
                    &change.node,
                    &format!("{key}.linstor_node.node"),
                    "linstor.nodes",
                )?;
                connection_status(
                    &change.connection_status,
                    &format!("{key}.linstor_node.connection_status"),
                )?;
            }
        }

        if let Some(expect) = &self.expect {
            let volumes: BTreeSet<&str> = os.volumes.iter().map(|v| v.id.as_str()).collect();
            for (i, volume) in expect.volumes_available.iter().enumerate() {
                known(
                    &volumes,
                    volume,
                    &format!("expect.volumes_available[{i}]"),
                    "openstack.volumes",
                )?;
            }
            for (i, server) in expect.servers_deleted.iter().enumerate() {
                known(
                    &servers,
                    server,
                    &format!("expect.servers_deleted[{i}]"),
                    "openstack.servers",
                )?;
            }
            for (i, moved) in expect.servers_moved.iter().enumerate() {
                let key = format!("expect.servers_moved[{i}]");
                known(
                    &servers,
                    &moved.server,
                    &format!("{key}.server"),
                    "openstack.servers",
                )?;
                known(
                    &hosts,
                    &moved.from,
                    &format!("{key}.from"),
                    "openstack.compute_hosts",
                )?;
            }
            for (i, node) in expect.nodes_deleted.iter().enumerate() {
                let key = format!("expect.nodes_deleted[{i}]");
                known(&nodes, node, &key, "kubernetes.nodes")?;
            }
            for (i, node) in expect.nodes_ready.iter().enumerate() {
                let key = format!("expect.nodes_ready[{i}]");
                known(&nodes, node, &key, "kubernetes.nodes")?;
            }
            for (i, pair) in expect.volumes_attached.iter().enumerate() {
                let key = format!("expect.volumes_attached[{i}]");
                known(
                    &volumes,
                    &pair.volume,
                    &format!("{key}.volume"),
                    "openstack.volumes",
                )?;
                known(
                    &servers,
                    &pair.server,
                    &format!("{key}.server"),
                    "openstack.servers",
                )?;
            }
            for (i, pair) in expect.volumes_detached.iter().enumerate() {
                let key = format!("expect.volumes_detached[{i}]");
                known(
                    &volumes,
                    &pair.volume,
                    &format!("{key}.volume"),
                    "openstack.volumes",
                )?;
                known(
                    &servers,
                    &pair.server,
                    &format!("{key}.server"),
                    "openstack.servers",
                )?;
            }
            let pod_refs: BTreeSet<&str> = pods.iter().map(String::as_str).collect();
            for (i, pod) in expect.pods_deleted.iter().enumerate() {
                known(
                    &pod_refs,
                    pod,
                    &format!("expect.pods_deleted[{i}]"),
                    "kubernetes.pods (as namespace/name)",
                )?;
            }
            for (i, pod) in expect.pods_kept.iter().enumerate() {
                known(
                    &pod_refs,
                    pod,
                    &format!("expect.pods_kept[{i}]"),
                    "kubernetes.pods (as namespace/name)",
                )?;
            }
            let deleted = expect
                .volume_attachments_deleted
                .iter()
                .enumerate()
                .map(|(i, va)| (format!("expect.volume_attachments_deleted[{i}]"), va));
            let kept = expect
                .volume_attachments_kept
                .iter()
                .enumerate()
                .map(|(i, va)| (format!("expect.volume_attachments_kept[{i}]"), va));
            let attachments: BTreeSet<String> = k8s
                .volume_attachments
                .iter()
                .map(|a| format!("{}@{}", a.pv.value, a.node.value))
                .collect();
            for (key, va) in deleted.chain(kept) {
                if !attachments.contains(&va.value) {
                    return Err(bad_ref(
                        va,
                        &key,
                        "PV@NODE of a kubernetes.volume_attachments entry",
                    ));
                }
            }
            let owners: BTreeSet<String> = k8s
                .pods
                .iter()
                .filter_map(|p| p.owner.as_ref())
                .map(|o| format!("{}/{}", o.kind, o.name))
                .collect();
            let volumes: BTreeSet<&str> = os.volumes.iter().map(|v| v.id.as_str()).collect();
            for (i, running) in expect.pods_running.iter().enumerate() {
                let key = format!("expect.pods_running[{i}]");
                if !owners.contains(&running.owner.value) {
                    return Err(bad_ref(
                        &running.owner,
                        &format!("{key}.owner"),
                        "KIND/NAME of an owner of kubernetes.pods",
                    ));
                }
                if let Some(node) = &running.node_not {
                    known(&nodes, node, &format!("{key}.node_not"), "kubernetes.nodes")?;
                }
                if let Some(volume) = &running.volume {
                    known(
                        &volumes,
                        volume,
                        &format!("{key}.volume"),
                        "openstack.volumes",
                    )?;
                }
            }
            for (i, node) in expect.nodes_tainted_out_of_service.iter().enumerate() {
                known(
                    &nodes,
                    node,
                    &format!("expect.nodes_tainted_out_of_service[{i}]"),
                    "kubernetes.nodes",
                )?;
            }
        }
        Ok(())
    }
}

/// Checks the `linstor` block; returns its node names.
fn validate_linstor(linstor: &Linstor) -> Result<BTreeSet<&str>, Problem> {
    let names = unique(
        linstor.nodes.iter().map(|n| n.name.as_str()),
        "LINSTOR node name",
    )?;
    for (i, node) in linstor.nodes.iter().enumerate() {
        let key = format!("linstor.nodes[{i}]");
        linstor_name(&node.name, &format!("{key}.name"), true)?;
        connection_status(&node.connection_status, &format!("{key}.connection_status"))?;
        if !LINSTOR_NODE_TYPES.contains(&node.kind.as_str()) {
            return Err(Problem {
                at: None,
                key: format!("{key}.type"),
                message: format!(
                    "{:?} is not one of {}",
                    node.kind,
                    LINSTOR_NODE_TYPES.join(", ")
                ),
            });
        }
    }
    let mut replicas = BTreeSet::new();
    for (i, resource) in linstor.resources.iter().enumerate() {
        let key = format!("linstor.resources[{i}]");
        linstor_name(&resource.name, &format!("{key}.name"), false)?;
        known(
            &names,
            &resource.node,
            &format!("{key}.node"),
            "linstor.nodes",
        )?;
        if !replicas.insert((resource.name.to_lowercase(), resource.node.value.as_str())) {
            return Err(Problem {
                at: Some(resource.node.referenced),
                key: format!("{key}.node"),
                message: format!(
                    "resource {} has two replicas on {}; LINSTOR keeps one per node",
                    resource.name, resource.node.value
                ),
            });
        }
        for peer in resource.connections.keys() {
            if !names.contains(peer.as_str()) || *peer == resource.node.value {
                return Err(Problem {
                    at: None,
                    key: format!("{key}.connections"),
                    message: format!(
                        "{peer:?} is not another entry of linstor.nodes (a peer of the replica)"
                    ),
                });
            }
        }
        if resource.kind != ReplicaKind::Diskful
            && resource
                .disk_state
                .as_deref()
                .is_some_and(|state| state != "Diskless")
        {
            return Err(Problem {
                at: None,
                key: format!("{key}.disk_state"),
                message: "a diskless or tie-breaker replica has disk_state Diskless (or leave it \
                          out)"
                    .into(),
            });
        }
        if resource
            .promotion_score
            .is_some_and(|score| score > 1_000_000)
        {
            return Err(Problem {
                at: None,
                key: format!("{key}.promotion_score"),
                message: "must be 0 to 1000000 (DRBD gives about 10000 per UpToDate disk)".into(),
            });
        }
    }
    Ok(names)
}

/// A LINSTOR node name: a host name (dot-separated labels of letters, digits and inner `-`),
/// as LINSTOR's `NodeName` checks it; compared without case.
#[must_use]
pub fn is_linstor_node_name(name: &str) -> bool {
    (2..=255).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A LINSTOR resource name: 2 to 48 letters, digits, `_` and inner `-`, starting with a letter
/// or `_`, as LINSTOR's `ResourceName` checks it; compared without case.
#[must_use]
pub fn is_linstor_resource_name(name: &str) -> bool {
    (2..=48).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn linstor_name(name: &str, key: &str, node: bool) -> Result<(), Problem> {
    let (valid, rule) = if node {
        (
            is_linstor_node_name(name),
            "a host name: labels of letters, digits and inner -, joined by .",
        )
    } else {
        (
            is_linstor_resource_name(name),
            "2 to 48 letters, digits, _ and inner -, starting with a letter or _",
        )
    };
    if valid {
        Ok(())
    } else {
        Err(Problem {
            at: None,
            key: key.to_owned(),
            message: format!("{name:?} is not a LINSTOR name ({rule})"),
        })
    }
}

fn connection_status(status: &str, key: &str) -> Result<(), Problem> {
    if LINSTOR_CONNECTION_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(Problem {
            at: None,
            key: key.to_owned(),
            message: format!(
                "{status:?} is not one of {}",
                LINSTOR_CONNECTION_STATUSES.join(", ")
            ),
        })
    }
}

/// The YAML reader's limits, grown with the text: its defaults (250,000 nodes, 1,000,000
/// events, 64 MiB of scalars) refuse a generated cluster of a few thousand nodes. Without
/// aliases every node, event and scalar byte takes at least a byte of the text, so limits of the
/// text's length lift only the cap on plain size; the alias limits, which guard against
/// expansion, stay as they are.
fn options(text: &str) -> serde_saphyr::Options {
    let defaults = serde_saphyr::Budget::default();
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: defaults.max_nodes.max(text.len()),
            max_events: defaults.max_events.max(text.len()),
            max_total_scalar_bytes: defaults.max_total_scalar_bytes.max(text.len()),
        },
    }
}

/// Splits `namespace/name`.
#[must_use]
pub fn split_ref(text: &str) -> Option<(&str, &str)> {
    let (namespace, name) = text.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then_some((namespace, name))
}

struct Problem {
    at: Option<serde_saphyr::Location>,
    key: String,
    message: String,
}

fn unique<'a, T>(items: impl Iterator<Item = T>, what: &str) -> Result<BTreeSet<T>, Problem>
where
    T: Ord + fmt::Display + 'a,
{
    let mut seen = BTreeSet::new();
    for item in items {
        if seen.contains(&item) {
            return Err(Problem {
                at: None,
                key: what.to_owned(),
                message: format!("{item} is defined twice"),
            });
        }
        seen.insert(item);
    }
    Ok(seen)
}

fn known<T: std::borrow::Borrow<str> + Ord>(
    set: &BTreeSet<T>,
    reference: &Ref,
    key: &str,
    list: &str,
) -> Result<(), Problem> {
    if set.contains(reference.value.as_str()) {
        Ok(())
    } else {
        Err(bad_ref(reference, key, &format!("an entry of {list}")))
    }
}

fn bad_ref(reference: &Ref, key: &str, wanted: &str) -> Problem {
    Problem {
        at: Some(reference.referenced),
        key: key.to_owned(),
        message: format!("{:?} is not {wanted}", reference.value),
    }
}

/// serde-saphyr appends ` at line L column C` to plain messages; the location is printed apart.
fn strip_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_owned(),
        None => first.to_owned(),
    }
}
