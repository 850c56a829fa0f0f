//! Shell completions and man pages, generated from the command-line definition itself, so that
//! they always list the flags, environment variables and defaults the binary has.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell` to `out`.
///
/// # Errors
/// When `out` cannot be written.
pub fn completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    // Into memory first: `generate` panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the top-level man page (section 1) to `out`.
///
/// # Errors
/// When `out` cannot be written.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    let command = Cli::command();
    let title = command.get_name().to_owned();
    render(command, title, out)
}

/// clap_mangen's page, then an ENVIRONMENT section: the variable of each flag that has one.
fn render(command: clap::Command, title: String, out: &mut dyn Write) -> std::io::Result<()> {
    let variables: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            Some((name, arg.get_long()?.to_owned()))
        })
        .collect();
    clap_mangen::Man::new(command).title(title).render(out)?;
    if !variables.is_empty() {
        writeln!(out, ".SH ENVIRONMENT")?;
        for (name, long) in variables {
            let escape = |text: &str| text.replace('-', "\\-");
            writeln!(
                out,
                ".TP\n\\fB{}\\fR\nThe value of \\fB\\-\\-{}\\fR when the flag is not given.",
                escape(&name),
                escape(&long)
            )?;
        }
    }
    Ok(())
}

/// Writes one man page per command into `dir` (`cinder-remediator.1`,
/// `cinder-remediator-run.1` ...) and returns their paths.
///
/// # Errors
/// When `dir` cannot be created or a page cannot be written; the error names the file.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    let mut write = |command: clap::Command, name: String| -> Result<(), String> {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        render(command, name, &mut text)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|err| format!("{}: {err}", path.display()))?;
        pages.push(path);
        Ok(())
    };
    let name = command.get_name().to_owned();
    for subcommand in command.get_subcommands().filter(|c| c.get_name() != "help") {
        write(
            subcommand.clone(),
            format!("{name}-{}", subcommand.get_name()),
        )?;
    }
    write(command, name)?;
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::{Shell, completions, man_page, man_pages};

    #[test]
    fn completions_name_every_subcommand_and_flag() {
        let mut bash = Vec::new();
        completions(Shell::Bash, &mut bash).unwrap();
        let bash = String::from_utf8(bash).unwrap();
        for word in [
            "diagnose",
            "remediate",
            "run",
            "--grace",
            "--dead-host",
            "--dry-run",
        ] {
            assert!(bash.contains(word), "no {word} in the bash completions");
        }
    }

    #[test]
    fn man_pages_show_flags_environment_and_defaults() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        assert!(
            String::from_utf8(page)
                .unwrap()
                .contains(".TH cinder-remediator 1")
        );
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages(dir.path()).unwrap();
        let run = std::fs::read_to_string(dir.path().join("cinder-remediator-run.1")).unwrap();
        for text in [
            "CINDER_REMEDIATOR_RESYNC",
            "[default: 30s]",
            "\\-\\-admin\\-addr",
            ".SH ENVIRONMENT",
        ] {
            assert!(run.contains(text), "no {text} in the run page:\n{run}");
        }
        assert!(pages.len() >= 6, "{pages:?}");
    }

    /// docs/operations.md's configuration reference names every flag and variable.
    #[test]
    fn the_operators_guide_lists_every_setting() {
        use clap::CommandFactory;
        let guide = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
        )
        .unwrap();
        let mut command = crate::cli::Cli::command();
        command.build();
        for sub in command.get_subcommands() {
            for arg in sub.get_arguments() {
                let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                    continue;
                };
                let env = env.to_string_lossy();
                assert!(
                    guide.contains(&format!("`--{long}`")) && guide.contains(&format!("`{env}`")),
                    "docs/operations.md does not list --{long} ({env}) of `{}`",
                    sub.get_name()
                );
            }
        }
    }
}
