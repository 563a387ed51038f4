//! Runs the rebuild benchmark without the CLI:
//! `cargo run --release -p trove-bench --example bench -- --kind inproc --sizes 100000`
//! (same arguments as `trove bench`; `--trove PATH` names the binary for
//! process workloads).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match trove_bench::BenchOptions::default().parse_args(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    match trove_bench::run(&opts) {
        Ok(report) => {
            println!("{}", if opts.json { report.to_json() } else { report.to_markdown() });
            if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}
