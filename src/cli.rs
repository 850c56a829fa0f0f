//! The command line: argument syntax (clap), and the wiring from a parsed command to its work.
//!
//! Exit codes: 0 when everything asked was done (or nothing was needed), 1 when something
//! failed, 2 for a usage or configuration error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::backend::linstor::Linstor;
use crate::backend::openstack::OpenStack;
use crate::backend::storage::Storage;
use crate::cluster::Cluster;
use crate::config::{self, PolicyFlags, UsageError, one_line};
use crate::execute;
use crate::linstor::{Controllers, LinstorSettings};
use crate::oneshot::{self, Mode, Output};
use crate::openstack::config::Source;
use crate::openstack::session;
use fencing::model::NodeName;
use fencing::plan::{DeadHost, FenceMode, Strategy};
use sim::{self, Scenario};

/// The default log filter.
const DEFAULT_LOG: &str = "cinder_remediator=info,kube_client=off,warn";
/// The default log filter of `demo`, whose timeline already says what the controller logs.
const DEMO_LOG: &str = "cinder_remediator=warn,kube_client=off,warn";

/// Fences dead Kubernetes nodes on OpenStack and releases their Cinder volumes.
// `Args` is derived and `Parser` written out (below) so that usage errors are one line.
#[derive(Debug, clap::Args)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info` or `cinder_remediator=debug,warn`. `demo` logs warnings only
    /// unless another filter is given: it prints the controller's timeline itself.
    #[arg(
        long,
        global = true,
        env = "CINDER_REMEDIATOR_LOG",
        default_value = DEFAULT_LOG
    )]
    pub log_level: String,

    /// Log lines as `plain` text or `json` objects (one per line).
    #[arg(long, global = true, env = "CINDER_REMEDIATOR_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `#[derive(Parser)]` generates: a command named after the package.
impl CommandFactory for Cli {
    fn command() -> clap::Command {
        <Self as clap::Args>::augment_args(clap::Command::new(env!("CARGO_PKG_NAME")))
    }

    fn command_for_update() -> clap::Command {
        <Self as clap::Args>::augment_args_for_update(clap::Command::new(env!("CARGO_PKG_NAME")))
    }
}

impl Parser for Cli {
    /// Parses the process's arguments. A usage error is printed as ONE line naming the flag and
    /// what is wrong, pointing at `--help`, and the process exits with code 2 (clap's own
    /// message spans several lines: the message, a usage synopsis, a hint); `--help` and
    /// `--version` print as clap does and exit 0.
    fn parse() -> Self {
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(err) if !err.use_stderr() => err.exit(),
            Err(err) => {
                let args: Vec<String> = std::env::args().skip(1).collect();
                eprintln!("error: {}", clap_error_line(&err, &args));
                std::process::exit(2)
            }
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every node that is not Ready: its server, the fence verdict and why, what is stuck,
    /// what `remediate` would do, and the commands to do it by hand. Changes nothing.
    Diagnose(DiagnoseArgs),
    /// Release the volumes of dead (fenced) nodes and clean up their pods and
    /// VolumeAttachments; asks first on a terminal unless --yes.
    Remediate(RemediateArgs),
    /// The controller: watch the Nodes and remediate each dead one as soon as its grace period
    /// runs out; one replica acts (a Lease); /livez, /readyz and /metrics on --admin-addr.
    Run(RunArgs),
    /// See it work without a cloud: serve a scenario (by default, a node dies while the
    /// controller watches) and run the controller against it in one process, with a timeline.
    Demo(DemoArgs),
    /// Serve an emulated OpenStack + Kubernetes (+ LINSTOR) described by a scenario file.
    Sim(SimArgs),
    /// Print the shell completion script (e.g. `cinder-remediator completions bash >
    /// /etc/bash_completion.d/cinder-remediator`).
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into --out-dir.
    Man(ManArgs),
}

/// How to reach Kubernetes.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file; else the in-cluster service account, or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context; the current one when left out.
    #[arg(long, env = "CINDER_REMEDIATOR_CONTEXT")]
    pub context: Option<String>,
}

/// How to reach OpenStack: --cloud-config, else clouds.yaml (--os-cloud), else the `OS_*`
/// variables of the `openstack` CLI.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenStackArgs {
    /// The OpenStack cloud controller manager's cloud.conf (its [Global] section).
    #[arg(long, env = "CINDER_REMEDIATOR_CLOUD_CONFIG")]
    pub cloud_config: Option<PathBuf>,
    /// A clouds.yaml entry (the file from OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/ or
    /// /etc/openstack/).
    #[arg(long, env = "OS_CLOUD")]
    pub os_cloud: Option<String>,
}

/// Where the LINSTOR controllers are, for clusters with LINSTOR (Piraeus) volumes.
#[derive(Debug, Clone, clap::Args)]
pub struct LinstorArgs {
    /// LINSTOR controllers, comma-separated, tried in turn (e.g.
    /// http://linstor-controller.piraeus-datastore:3370); without OpenStack credentials,
    /// LINSTOR alone is used.
    #[arg(long, env = "LS_CONTROLLERS")]
    pub linstor_controllers: Option<String>,
    /// A PEM file of CA certificates for https controllers.
    #[arg(long, env = "LS_ROOT_CA_FILE")]
    pub linstor_ca_file: Option<PathBuf>,
    /// A PEM client certificate for controllers that ask for one.
    #[arg(long, env = "LS_USER_CERTIFICATE_FILE")]
    pub linstor_client_cert: Option<PathBuf>,
    /// The PEM key of --linstor-client-cert.
    #[arg(long, env = "LS_USER_KEY_FILE")]
    pub linstor_client_key: Option<PathBuf>,
}

impl LinstorArgs {
    fn settings(&self) -> Option<LinstorSettings> {
        self.linstor_controllers
            .as_ref()
            .map(|controllers| LinstorSettings {
                controllers: controllers.clone(),
                ca_file: self.linstor_ca_file.clone(),
                client_cert: self.linstor_client_cert.clone(),
                client_key: self.linstor_client_key.clone(),
            })
    }
}

/// How the remediator may act.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// How long a node must have been not Ready before it is considered (e.g. 30s, 2m)
    /// [default: 30s].
    #[arg(
        long,
        env = "CINDER_REMEDIATOR_GRACE",
        value_parser = parse_duration,
        allow_hyphen_values = true
    )]
    pub grace: Option<humantime::Duration>,
    /// How the Kubernetes side is cleaned: `delete` (its VolumeAttachments and pods; any
    /// Kubernetes version) or `out-of-service-taint` (Kubernetes 1.28+ does the rest)
    /// [default: delete].
    #[arg(long, env = "CINDER_REMEDIATOR_STRATEGY", value_parser = config::parse_strategy)]
    pub strategy: Option<Strategy>,
    /// Storm guard: act on no node when more than this many are not Ready at once: a share
    /// (`40%`) or a count (`3`). One node is always allowed [default: 40%].
    #[arg(long, env = "CINDER_REMEDIATOR_MAX_UNHEALTHY")]
    pub max_unhealthy: Option<String>,
    /// Do not delete replacement pods that wait on a freed volume.
    #[arg(long, env = "CINDER_REMEDIATOR_NO_KICK")]
    pub no_kick: bool,
    /// `observe`: act only on servers the cloud shows off; `stop`: also stop (`os-stop`) an
    /// ACTIVE server on an up host, and release once it shows SHUTOFF [default: observe].
    #[arg(long, env = "CINDER_REMEDIATOR_FENCE", value_parser = config::parse_fence)]
    pub fence: Option<FenceMode>,
    /// Accept a compute host marked forced down in Nova as proof that its servers are off.
    #[arg(long, env = "CINDER_REMEDIATOR_TRUST_FORCED_DOWN")]
    pub trust_forced_down: bool,
    /// What frees the volumes of a fenced server whose compute host is down, where Nova
    /// refuses every detach: `report` (the commands, no action), `delete-server` (Nova's local
    /// delete frees them at once; the node is lost and its Node deleted) or `evacuate` (rebuilt
    /// on another host with its volumes; the node comes back). Acts only with
    /// --trust-forced-down, on a host forced down, for a node naming the server by providerID
    /// [default: report].
    #[arg(long, env = "CINDER_REMEDIATOR_DEAD_HOST", value_parser = config::parse_dead_host)]
    pub dead_host: Option<DeadHost>,
    /// How long an evacuated server's node may take to come back Ready before it is reported
    /// as not back [default: 10m].
    #[arg(long, env = "CINDER_REMEDIATOR_EVACUATE_WAIT", value_parser = parse_duration)]
    pub evacuate_wait: Option<humantime::Duration>,
    /// Force-delete only pods labelled linstor.csi.linbit.com/on-storage-lost=remove, as the
    /// Piraeus HA controller does (default: every pod a controller owns).
    #[arg(long, env = "CINDER_REMEDIATOR_ONLY_LABELLED_PODS")]
    pub only_labelled_pods: bool,
}

impl PolicyArgs {
    fn flags(&self) -> PolicyFlags {
        PolicyFlags {
            grace: self.grace.map(Into::into),
            strategy: self.strategy,
            max_unhealthy: self.max_unhealthy.clone(),
            kick: self.no_kick.then_some(false),
            fence: self.fence,
            trust_forced_down: self.trust_forced_down.then_some(true),
            dead_host: self.dead_host,
            evacuate_wait: self.evacuate_wait.map(Into::into),
            only_labelled_pods: self.only_labelled_pods.then_some(true),
        }
    }
}

fn parse_duration(text: &str) -> Result<humantime::Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err("a duration cannot be negative; write e.g. 30s, 2m or 1h".to_owned());
    }
    text.parse()
        .map_err(|err| format!("not a duration ({err}); write e.g. 30s, 2m or 1h"))
}

fn parse_interval(text: &str) -> Result<humantime::Duration, String> {
    let interval = parse_duration(text)?;
    if interval.is_zero() {
        return Err("an interval must be more than 0; write e.g. 2s".to_owned());
    }
    Ok(interval)
}

/// Arguments of `diagnose`.
#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// Only this node (repeatable); every node not Ready when left out.
    #[arg(
        long = "node",
        value_name = "NODE",
        env = "CINDER_REMEDIATOR_NODES",
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// `table` for a person, `json` for tools.
    #[arg(long, default_value = "table", value_parser = parse_output, env = "CINDER_REMEDIATOR_OUTPUT")]
    pub output: Output,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kube: KubeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub openstack: OpenStackArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub linstor: LinstorArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

fn parse_output(text: &str) -> Result<Output, String> {
    match text {
        "table" | "text" => Ok(Output::Text),
        "json" => Ok(Output::Json),
        _ => Err("expected `table` or `json`".to_owned()),
    }
}

/// Arguments of `remediate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["nodes", "all"])))]
pub struct RemediateArgs {
    /// Remediate this node (repeatable).
    #[arg(
        long = "node",
        value_name = "NODE",
        env = "CINDER_REMEDIATOR_NODES",
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// Remediate every node that needs it.
    #[arg(long, env = "CINDER_REMEDIATOR_ALL")]
    pub all: bool,
    /// Print the plan and stop: no mutating call is made.
    #[arg(long, env = "CINDER_REMEDIATOR_DRY_RUN")]
    pub dry_run: bool,
    /// Also release stale attachments of deleted servers that are no node (reads the volume of
    /// every managed PV: one Cinder request each).
    #[arg(long, env = "CINDER_REMEDIATOR_ORPHANS")]
    pub orphans: bool,
    /// Act without asking.
    #[arg(long, short = 'y', env = "CINDER_REMEDIATOR_YES")]
    pub yes: bool,
    /// How long a release may take to show done before it counts as failed.
    #[arg(
        long,
        default_value = "2m",
        env = "CINDER_REMEDIATOR_VERIFY_TIMEOUT",
        value_parser = parse_duration
    )]
    pub verify_timeout: humantime::Duration,
    /// `table` for a person, `json` for tools.
    #[arg(long, default_value = "table", value_parser = parse_output, env = "CINDER_REMEDIATOR_OUTPUT")]
    pub output: Output,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kube: KubeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub openstack: OpenStackArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub linstor: LinstorArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Plan and report, never act (no mutating call).
    #[arg(long, env = "CINDER_REMEDIATOR_DRY_RUN")]
    pub dry_run: bool,
    /// How long a release may take to show done before it counts as failed.
    #[arg(long, default_value = "2m", env = "CINDER_REMEDIATOR_VERIFY_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true)]
    pub verify_timeout: humantime::Duration,
    /// How often a node that is not Ready is looked at again when nothing changed.
    #[arg(long, default_value = "30s", env = "CINDER_REMEDIATOR_RESYNC", value_parser = parse_duration, allow_hyphen_values = true)]
    pub resync: humantime::Duration,
    /// Where /livez, /readyz and /metrics are served.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "CINDER_REMEDIATOR_ADMIN_ADDR"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// Act without a Lease (only when a single replica runs).
    #[arg(long, env = "CINDER_REMEDIATOR_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else kube-system).
    #[arg(long, env = "CINDER_REMEDIATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        default_value = "cinder-remediator",
        env = "CINDER_REMEDIATOR_LEASE_NAME"
    )]
    pub lease_name: String,
    /// How long a silent leader keeps the Lease.
    #[arg(long, default_value = "15s", env = "CINDER_REMEDIATOR_LEASE_DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub lease_duration: humantime::Duration,
    /// How long, on SIGTERM, a step in flight may take to finish.
    #[arg(long, default_value = "60s", env = "CINDER_REMEDIATOR_SHUTDOWN_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true)]
    pub shutdown_timeout: humantime::Duration,
    /// Also watch from the cloud side: every INTERVAL (e.g. 2s) ask Nova for the servers
    /// changed since its last answer; a node's server that shuts off, crashes or is deleted
    /// starts the node's grace at once, before its kubelet's heartbeat expires (off when left
    /// out).
    #[arg(long, value_name = "INTERVAL", env = "CINDER_REMEDIATOR_WATCH_CLOUD", value_parser = parse_interval, allow_hyphen_values = true)]
    pub watch_cloud: Option<humantime::Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kube: KubeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub openstack: OpenStackArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub linstor: LinstorArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Scenario file (see docs/scenarios.md); when left out, the built-in
    /// `scenarios/controller-node-dies.yaml` (a node dies while the controller watches).
    #[arg(long, env = "CINDER_REMEDIATOR_SCENARIO")]
    pub scenario: Option<PathBuf>,
    /// Check the scenario's `expect` block; exit 1 when an expectation is missed.
    #[arg(long, env = "CINDER_REMEDIATOR_CHECK")]
    pub check: bool,
    /// `table` for a person, `json` for tools.
    #[arg(long, default_value = "table", value_parser = parse_output, env = "CINDER_REMEDIATOR_OUTPUT")]
    pub output: Output,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

/// Arguments of `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Scenario file (see docs/scenarios.md); the built-in seed story when left out.
    #[arg(long, env = "CINDER_REMEDIATOR_SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Directory to write kubeconfig, clouds.yaml, cloud.conf, endpoints.json and ready into.
    #[arg(long, env = "CINDER_REMEDIATOR_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Listen on fixed consecutive loopback ports from this one (Keystone, Nova, Cinder,
    /// Kubernetes, the request log, LINSTOR) instead of ports the system picks.
    #[arg(long, env = "CINDER_REMEDIATOR_PORT_BASE")]
    pub port_base: Option<u16>,
}

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `cinder-remediator.1` and one page per subcommand here instead of printing.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done, or nothing was needed.
    Done,
    /// Something failed.
    Failed,
    /// The command line or the configuration is wrong.
    Usage,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => Self::SUCCESS,
            Outcome::Failed => Self::from(1),
            Outcome::Usage => Self::from(2),
        }
    }
}

impl Cli {
    /// Runs the command and returns the process exit code.
    #[must_use]
    pub fn run(self) -> ExitCode {
        let log_level = match self.command {
            Command::Demo(_) if self.log_level == DEFAULT_LOG => DEMO_LOG,
            _ => &self.log_level,
        };
        init_logging(log_level, self.log_format == "json");
        match &self.command {
            Command::Completions(args) => return write_manual(args.shell),
            Command::Man(args) => return write_man(args.out_dir.as_deref()),
            _ => {}
        }
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("error: cannot start the async runtime: {err}");
                return Outcome::Failed.into();
            }
        };
        let outcome = runtime.block_on(async {
            match self.command {
                Command::Diagnose(args) => run_diagnose(&args).await,
                Command::Remediate(args) => run_remediate(&args).await,
                Command::Run(args) => run_controller(&args).await,
                Command::Demo(args) => run_demo(&args).await,
                Command::Sim(args) => run_sim(&args).await,
                Command::Completions(_) | Command::Man(_) => Outcome::Done,
            }
        });
        outcome.into()
    }
}

fn write_manual(shell: clap_complete::Shell) -> ExitCode {
    match crate::manual::completions(shell, &mut std::io::stdout()) {
        Ok(()) => Outcome::Done.into(),
        Err(err) => {
            eprintln!("error: cannot write the completions: {err}");
            Outcome::Failed.into()
        }
    }
}

fn write_man(out_dir: Option<&Path>) -> ExitCode {
    let written = match out_dir {
        None => crate::manual::man_page(&mut std::io::stdout()).map_err(|err| err.to_string()),
        Some(dir) => crate::manual::man_pages(dir).map(|pages| {
            for page in pages {
                println!("{}", page.display());
            }
        }),
    };
    match written {
        Ok(()) => Outcome::Done.into(),
        Err(err) => {
            eprintln!("error: cannot write the man page: {err}");
            Outcome::Failed.into()
        }
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    // Colours only for a person: a log redirected to a file or collected from a pod holds none.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A clap error as one line: its message without the usage synopsis and the generic hint, then
/// where to read the usage (`cinder-remediator remediate --help` when a subcommand was named).
fn clap_error_line(err: &clap::Error, args: &[String]) -> String {
    let command = Cli::command();
    let name = command.get_name().to_owned();
    let message = if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let commands: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|sub| *sub != "help")
            .collect();
        format!("no command given: name one of {}", commands.join(", "))
    } else {
        let rendered = err.render().to_string();
        let mut message = String::new();
        for line in rendered.lines().map(str::trim) {
            if line.is_empty()
                || line.starts_with("Usage:")
                || line.starts_with("For more information")
            {
                continue;
            }
            if !message.is_empty() {
                message.push_str(if message.ends_with(':') { " " } else { "; " });
            }
            message.push_str(line.strip_prefix("error: ").unwrap_or(line));
        }
        message
    };
    let subcommand = args.iter().find(|arg| {
        command
            .get_subcommands()
            .any(|sub| sub.get_name() == arg.as_str())
    });
    match subcommand {
        Some(sub) => format!("{message}; see `{name} {sub} --help`"),
        None => format!("{message}; see `{name} --help`"),
    }
}

/// Loads the scenario named on the command line, or the built-in seed story.
///
/// # Errors
/// A one-line message naming the file, the line and the key.
pub fn load_scenario(path: Option<&Path>) -> Result<Scenario, sim::scenario::Error> {
    match path {
        Some(path) => Scenario::load(path),
        None => Ok(Scenario::seed()),
    }
}

/// Prints an error and its causes on one line.
fn report(err: &dyn std::error::Error) {
    eprintln!("error: {}", one_line(err));
}

/// The cluster and the OpenStack backend, connected as the flags say.
async fn connect(
    kube: &KubeArgs,
    openstack: &OpenStackArgs,
    linstor: &LinstorArgs,
) -> Result<(Cluster, Storage), Outcome> {
    let client = config::kube_client(kube.kubeconfig.as_deref(), kube.context.as_deref())
        .await
        .map_err(|err| usage(&err))?;
    let linstor = linstor
        .settings()
        .map(|settings| Controllers::new(&settings).map(Linstor::new))
        .transpose()
        .map_err(|err| usage(&err))?;
    let source = Source::from_process_env()
        .with_cloud_config(openstack.cloud_config.clone())
        .with_os_cloud(openstack.os_cloud.clone());
    let settings = match crate::openstack::config::load(&source) {
        Ok(settings) => settings,
        // LINSTOR alone: no OpenStack credentials were given at all.
        Err(crate::openstack::config::ConfigError::NoCredentials) if linstor.is_some() => {
            let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".to_owned());
            let storage = linstor.map(Storage::linstor).ok_or(Outcome::Usage)?;
            return Ok((Cluster::new(client, &instance), storage));
        }
        Err(err) => {
            report(&err);
            return Err(if err.is_usage() {
                Outcome::Usage
            } else {
                Outcome::Failed
            });
        }
    };
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let session = session::connect(&settings).await.map_err(|err| {
        if err.is_transient() && matches!(err, session::SessionError::Keystone { .. }) {
            // Keystone's own 5xx message says nothing of what to do.
            eprintln!(
                "error: {}; nothing was changed: retry later",
                one_line(&err)
            );
        } else {
            report(&err);
        }
        if err.is_transient() {
            Outcome::Failed
        } else {
            Outcome::Usage
        }
    })?;
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".to_owned());
    Ok((
        Cluster::new(client, &instance),
        Storage::openstack(OpenStack::new(&session, settings.region())).with_linstor(linstor),
    ))
}

fn usage(err: &UsageError) -> Outcome {
    eprintln!("error: {err}");
    Outcome::Usage
}

fn node_names(nodes: &[String]) -> BTreeSet<NodeName> {
    nodes.iter().map(|n| NodeName::new(n.as_str())).collect()
}

fn oneshot_outcome(err: &oneshot::Error) -> Outcome {
    match err {
        oneshot::Error::Usage(_) => {
            eprintln!("error: {}", one_line(err));
            Outcome::Usage
        }
        oneshot::Error::Cluster(_) => {
            // Only reading the cluster fails this way, before any action.
            eprintln!(
                "error: {}; nothing was changed: check the Kubernetes API server and retry",
                one_line(err)
            );
            Outcome::Failed
        }
    }
}

async fn run_controller(args: &RunArgs) -> Outcome {
    let policy = match config::policy(&args.policy.flags(), None) {
        Ok(policy) => policy,
        Err(err) => return usage(&err),
    };
    let listener = match tokio::net::TcpListener::bind(args.admin_addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "error: cannot listen on --admin-addr {}: {err}: pick a free address",
                args.admin_addr
            );
            return Outcome::Usage;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(admin = %addr, "Serving /livez, /readyz and /metrics");
    }
    let (cluster, backend) = match connect(&args.kube, &args.openstack, &args.linstor).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let settings = crate::controller::Settings {
        policy,
        dry_run: args.dry_run,
        execute: execute::Options {
            verify_timeout: args.verify_timeout.into(),
            ..execute::Options::default()
        },
        resync: args.resync.into(),
        watch_cloud: args.watch_cloud.map(Into::into),
        observer: None,
    };
    let lease = (!args.no_leader_election).then(|| crate::controller::lease::Settings {
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "kube-system".to_owned()),
        name: args.lease_name.clone(),
        identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cinder-remediator".to_owned());
            format!("{host}-{}", std::process::id())
        }),
        duration: args.lease_duration.into(),
    });
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let service = crate::controller::service::Service {
        cluster: cluster.with_metrics(std::sync::Arc::clone(&metrics)),
        backend: backend.with_metrics(&metrics),
        metrics,
        settings,
        lease,
        shutdown_timeout: args.shutdown_timeout.into(),
    };
    match service.run(listener, terminate()).await {
        Ok(()) => Outcome::Done,
        Err(err) => {
            report(&err);
            Outcome::Failed
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn terminate() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run_diagnose(args: &DiagnoseArgs) -> Outcome {
    let policy = match config::policy(&args.policy.flags(), None) {
        Ok(policy) => policy,
        Err(err) => return usage(&err),
    };
    let (cluster, backend) = match connect(&args.kube, &args.openstack, &args.linstor).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    match oneshot::diagnose(
        &cluster,
        &backend,
        &policy,
        &node_names(&args.nodes),
        args.output,
    )
    .await
    {
        Ok(()) => Outcome::Done,
        Err(err) => oneshot_outcome(&err),
    }
}

async fn run_remediate(args: &RemediateArgs) -> Outcome {
    let policy = match config::policy(&args.policy.flags(), None) {
        Ok(policy) => policy,
        Err(err) => return usage(&err),
    };
    let (cluster, backend) = match connect(&args.kube, &args.openstack, &args.linstor).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let mode = Mode {
        dry_run: args.dry_run,
        yes: args.yes,
        orphans: args.orphans,
    };
    let options = execute::Options {
        verify_timeout: args.verify_timeout.into(),
        ..execute::Options::default()
    };
    let nodes = if args.all {
        BTreeSet::new()
    } else {
        node_names(&args.nodes)
    };
    match oneshot::remediate(
        &cluster,
        &backend,
        &policy,
        &nodes,
        mode,
        args.output,
        options,
    )
    .await
    {
        Ok(true) => Outcome::Done,
        Ok(false) => Outcome::Failed,
        Err(err) => oneshot_outcome(&err),
    }
}

async fn run_demo(args: &DemoArgs) -> Outcome {
    let scenario = match args.scenario.as_deref() {
        Some(path) => Scenario::load(path),
        None => crate::demo::default_scenario(),
    };
    let scenario = match scenario {
        Ok(scenario) => scenario,
        Err(err) => {
            report(&err);
            return Outcome::Usage;
        }
    };
    let policy = match config::policy(
        &args.policy.flags(),
        Some(&crate::demo::scenario_policy(&scenario.remediator)),
    ) {
        Ok(policy) => policy,
        Err(err) => return usage(&err),
    };
    match crate::demo::run(&scenario, &policy, args.check, args.output).await {
        Ok(true) => Outcome::Done,
        Ok(false) => Outcome::Failed,
        Err(err) => {
            report(&err);
            Outcome::Failed
        }
    }
}

async fn run_sim(args: &SimArgs) -> Outcome {
    let scenario = match load_scenario(args.scenario.as_deref()) {
        Ok(scenario) => scenario,
        Err(err) => {
            report(&err);
            return Outcome::Usage;
        }
    };
    if !args.state_dir.is_dir() {
        eprintln!(
            "error: --state-dir {}: not a directory; create it first",
            args.state_dir.display()
        );
        return Outcome::Usage;
    }
    let running = match sim::serve_on(&scenario, args.port_base).await {
        Ok(running) => running,
        Err(err) => {
            report(&err);
            return Outcome::Usage;
        }
    };
    if let Err(err) = running.write_state_dir(&args.state_dir) {
        report(&err);
        running.shutdown().await;
        return Outcome::Usage;
    }
    let e = &running.endpoints;
    tracing::info!(
        scenario = %scenario.name,
        kubernetes = %e.kubernetes,
        keystone = %e.keystone,
        nova = %e.nova,
        cinder = %e.cinder,
        requests = %e.requests,
        "Serving"
    );
    eprintln!(
        "sim: serving scenario {} (state in {}); Ctrl-C stops",
        scenario.name,
        args.state_dir.display()
    );
    wait_for_signal().await;
    sim::Running::clear_state_dir(&args.state_dir);
    running.shutdown().await;
    Outcome::Done
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
