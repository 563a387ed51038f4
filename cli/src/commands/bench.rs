//! `trove bench`: the rebuild-latency benchmark. Parses its arguments into
//! [`trove_bench::BenchOptions`], calls [`trove_bench::run`], prints the
//! report (markdown, or JSON with `--json`) on stdout; progress goes to
//! stderr. Exit code 1 when a step count was wrong or a run failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::commands::Ctx;
use crate::render;

/// Arguments of `trove bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Graph shapes: chain, wide, layered, diamond (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "chain", value_parser = parse::<trove_bench::Shape>)]
    pub shapes: Vec<trove_bench::Shape>,
    /// Step counts, 4 to 1000000 (comma-separated; 10_000 and 10k allowed)
    #[arg(long, value_delimiter = ',', default_value = "1000", value_parser = trove_bench::parse_size)]
    pub sizes: Vec<usize>,
    /// Step kind: process (a tiny command per step, run by the trove binary) or inproc (library ops)
    #[arg(long, default_value = "process", value_parser = parse::<trove_bench::Kind>)]
    pub kind: trove_bench::Kind,
    /// Scenarios: cold, noop, touch, edit-leaf, edit-root, config, cutoff [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse::<trove_bench::Scenario>)]
    pub scenarios: Vec<trove_bench::Scenario>,
    /// Timed runs of each scenario
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Untimed (but checked) runs before them
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also write the workload as build.ninja / Makefile (ninja, make)
    #[arg(long, value_delimiter = ',', value_parser = parse::<trove_bench::Peer>)]
    pub emit: Vec<trove_bench::Peer>,
    /// Run these tools on the same workload and print trove/peer ratios (ninja, make)
    #[arg(long, value_delimiter = ',', value_parser = parse::<trove_bench::Peer>)]
    pub compare: Vec<trove_bench::Peer>,
    /// Parallel jobs for every tool [default: one per core]
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep the generated workspaces in DIR [default with --emit: trove-bench-workload]
    #[arg(long = "dir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Keep inproc outputs in memory instead of the on-disk store (the engine alone)
    #[arg(long)]
    pub memory: bool,
    /// The trove binary for process workloads [default: this one]
    #[arg(long, value_name = "PATH")]
    pub trove: Option<PathBuf>,
    /// Print the report as JSON (schema 1) instead of markdown tables
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

/// Runs `trove bench`.
pub fn exec(args: BenchArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let trove_exe = match args.trove {
        Some(path) => path,
        None => std::env::current_exe().context("locating the trove binary")?,
    };
    let dir = match args.workdir {
        Some(d) => Some(ctx.dir.join(d)),
        None if !args.emit.is_empty() => Some(ctx.dir.join(trove_bench::DEFAULT_EMIT_DIR)),
        None => None,
    };
    let opts = trove_bench::BenchOptions {
        shapes: args.shapes,
        sizes: args.sizes,
        kind: args.kind,
        scenarios: if args.scenarios.is_empty() {
            trove_bench::Scenario::ALL.to_vec()
        } else {
            args.scenarios
        },
        repeat: args.repeat,
        warmup: args.warmup,
        emit: args.emit,
        compare: args.compare,
        json: args.json,
        trove_exe,
        jobs: args.jobs.unwrap_or(0),
        dir,
        progress: !args.quiet,
        inproc_store: if args.memory {
            trove_bench::InprocStore::Memory
        } else {
            trove_bench::InprocStore::Disk
        },
    };
    let report = trove_bench::run(&opts)?;
    if args.json {
        render::out(&format!("{}\n", report.to_json()))?;
    } else {
        render::out(&report.to_markdown())?;
    }
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in report.failures() {
            render::err(&format!("error: {failure}\n"));
        }
        Ok(ExitCode::from(1))
    }
}
