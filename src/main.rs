//! The `trove` binary. Everything is in `trove_cli`; the binary lives in the
//! root package so `cargo run` works from the repository root and the
//! integration tests get `CARGO_BIN_EXE_trove`.
fn main() -> std::process::ExitCode {
    trove_cli::run(std::env::args_os())
}
