//! trove-cli: the `trove` command-line tool.
//!
//! [`run`] parses arguments ([`args`]), dispatches to one file per
//! subcommand ([`commands`]) and maps the outcome to an exit code in one
//! place: 0 ok, 1 a step failed, 2 bad input, an unusable store, or a lock
//! held while `--no-wait` is given. A closed stdout (`trove log | head`) is
//! not an error. The pipeline file becomes a job in [`pipeline`] (pure
//! parsing in [`mod@pipeline::parse`]); user commands run through the one door
//! [`command`]; human text goes to stderr and `--json` to stdout through
//! [`render`].

pub mod args;
pub mod command;
pub mod commands;
pub mod pipeline;
pub mod render;
pub mod uptodate;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

/// The exit code of a successful command.
pub const EXIT_OK: u8 = 0;
/// The exit code of a run in which a step failed.
pub const EXIT_STEP_FAILED: u8 = 1;
/// The exit code of bad input, an unusable store or a held lock.
pub const EXIT_ERROR: u8 = 2;
/// The exit code of a run stopped with Ctrl-C (the shell convention).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs trove with these arguments (the first is the program name) and
/// returns the process exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match commands::exec(cli) {
        Ok(code) => code,
        Err(e) => ExitCode::from(report_error(&e)),
    }
}

/// Prints an error on stderr and returns its exit code.
fn report_error(e: &anyhow::Error) -> u8 {
    if is_broken_pipe(e) {
        return EXIT_OK;
    }
    render::human::error(e);
    EXIT_ERROR
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
