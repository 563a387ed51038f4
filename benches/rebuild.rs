//! The rebuild-latency benchmark (`cargo bench --bench rebuild`): runs
//! `trove_bench` and prints the markdown table pasted into `BENCHMARKS.md`,
//! with the command that produced it.
//!
//! Without arguments it runs the in-process workloads (engine and store, no
//! processes) at N = 10,000, and, when a release `trove` binary is found
//! next to this benchmark (`cargo build --release -p trove-cli` first) or
//! named by `TROVE_EXE`, the process workloads at N = 1,000 against ninja and
//! make. Arguments after `--` override: `--shapes chain,layered --sizes
//! 1000,10000 --kind process --scenarios noop,touch --repeat 5 --warmup 1
//! --compare ninja,make -j 2 --dir DIR --memory --json`.

use std::path::PathBuf;
use std::process::ExitCode;

use trove_bench::{BenchOptions, Kind, Peer, Shape};

fn trove_exe() -> Option<PathBuf> {
    if let Some(exe) = std::env::var_os("TROVE_EXE") {
        return Some(PathBuf::from(exe));
    }
    // target/release/deps/rebuild-HASH -> target/release/trove
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("trove");
    candidate.is_file().then_some(candidate)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exe = trove_exe();
    let mut runs = Vec::new();
    let explicit = args.iter().any(|a| a != "--bench");
    let base = BenchOptions {
        trove_exe: exe.clone().unwrap_or_else(|| PathBuf::from("trove")),
        ..BenchOptions::default()
    };
    if explicit {
        match base.parse_args(&args) {
            Ok(opts) => runs.push(opts),
            Err(e) => {
                eprintln!("rebuild: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        runs.push(BenchOptions {
            shapes: vec![Shape::Chain, Shape::Layered],
            sizes: vec![10_000],
            kind: Kind::Inproc,
            ..base.clone()
        });
        if exe.is_some() {
            runs.push(BenchOptions {
                shapes: vec![Shape::Chain],
                sizes: vec![1_000],
                kind: Kind::Process,
                compare: vec![Peer::Ninja, Peer::Make],
                ..base
            });
        } else {
            eprintln!(
                "rebuild: no trove binary next to the benchmark and no TROVE_EXE; process workloads skipped"
            );
        }
    }
    let mut ok = true;
    for opts in runs {
        match trove_bench::run(&opts) {
            Ok(report) => {
                ok &= report.ok;
                let text = if opts.json { report.to_json() } else { report.to_markdown() };
                println!("{text}");
            }
            Err(e) => {
                eprintln!("rebuild: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
