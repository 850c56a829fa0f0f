//! The command line: argument syntax (clap), and the wiring from a parsed command to its work.
//!
//! Exit codes: 0 when everything asked was done (or nothing was needed), 1 when something
//! failed, 2 for a usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::sim::{self, Scenario};

/// Fences dead Kubernetes nodes on OpenStack and releases their Cinder volumes.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info` or `cinder_remediator=debug,warn`.
    #[arg(
        long,
        global = true,
        env = "CINDER_REMEDIATOR_LOG",
        default_value = "cinder_remediator=info,warn"
    )]
    pub log_level: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve an emulated OpenStack + Kubernetes (+ LINSTOR) described by a scenario file.
    Sim(SimArgs),
}

/// Arguments of `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Scenario file (see docs/scenarios.md); the built-in seed story when left out.
    #[arg(long, env = "CINDER_REMEDIATOR_SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Directory to write kubeconfig, clouds.yaml, endpoints.json and ready into.
    #[arg(long, env = "CINDER_REMEDIATOR_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Listen on fixed consecutive loopback ports from this one (Keystone, Nova, Cinder,
    /// Kubernetes, the request log, LINSTOR) instead of ports the system picks.
    #[arg(long, env = "CINDER_REMEDIATOR_PORT_BASE")]
    pub port_base: Option<u16>,
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
        init_logging(&self.log_level);
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("error: cannot start the async runtime: {err}");
                return Outcome::Failed.into();
            }
        };
        let outcome = runtime.block_on(async {
            match self.command {
                Command::Sim(args) => run_sim(&args).await,
            }
        });
        outcome.into()
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("cinder_remediator=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
    let mut line = format!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{line}");
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
