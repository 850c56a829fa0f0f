//! The `cinder-remediator` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    cinder_remediator::cli::Cli::parse().run()
}
