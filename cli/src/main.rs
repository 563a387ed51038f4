//! The `trove` binary: everything is in the library, so tests can run it
//! in-process.
fn main() -> std::process::ExitCode {
    trove_cli::run(std::env::args_os())
}
