//! Command-line arguments (clap derive). Only parsing here: each subcommand's
//! work is in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// trove: incremental, memoized pipelines of commands.
#[derive(Debug, Parser)]
#[command(
    name = "trove",
    version,
    term_width = 100,
    about = "trove: incremental, memoized pipelines of commands",
    long_about = "trove runs the ops of a pipeline (trove.toml), gives every output a version \
derived from everything that can change it, and skips any step whose outputs are already \
stored at those versions.",
    after_help = "Examples:\n  trove init                 write an example pipeline here\n  trove run                  run it (memoized on the second run)\n  trove plan                 what would run, and why\n  trove -C examples/sales run -j 2"
)]
pub struct Cli {
    /// Options of every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// The pipeline file [default: trove.toml in the current directory]
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The store directory [default: .trove next to the pipeline file]
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Fail (exit code 2) instead of waiting when another trove holds the store's lock
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Run as if trove was started in DIR
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the job, or the named steps and their upstream
    #[command(
        after_help = "Examples:\n  trove run\n  trove run report -j 4\n  trove run --force clean --tag owner=ana\n  trove run --no-memo --json"
    )]
    Run(RunArgs),
    /// Show what a run would do, step by step, and why
    #[command(after_help = "Examples:\n  trove plan\n  trove plan report --json")]
    Plan(PlanArgs),
    /// Explain why one step would run, including the upstream chain that causes it
    #[command(after_help = "Examples:\n  trove why report")]
    Why(WhyArgs),
    /// List past runs, or show a step's last output with --step
    #[command(after_help = "Examples:\n  trove log -n 5\n  trove log --step clean")]
    Log(LogArgs),
    /// Show one run step by step
    #[command(
        after_help = "Examples:\n  trove show 01a252fd0d79928b0d18    # a run id from `trove log`\n  trove show 01a252fd --json         # a unique prefix is enough"
    )]
    Show(ShowArgs),
    /// Remove old runs and the stored outputs no kept run needs
    #[command(
        after_help = "Examples:\n  trove gc --keep-runs 10 --dry-run\n  trove gc --older-than 30d --max-size 10G"
    )]
    Gc(GcArgs),
    /// Check every stored output against its data version
    #[command(after_help = "Examples:\n  trove verify\n  trove verify --json")]
    Verify(VerifyArgs),
    /// Print the job graph
    #[command(
        after_help = "Examples:\n  trove graph | dot -Tsvg > graph.svg\n  trove graph --format mermaid"
    )]
    Graph(GraphArgs),
    /// Write a small working example pipeline into an empty directory
    #[command(after_help = "Examples:\n  mkdir demo && cd demo && trove init && trove run")]
    Init(InitArgs),
    /// Benchmark rebuild latency on a generated workload, against ninja and make
    #[command(
        after_help = "Examples:\n  trove bench --shapes chain --sizes 1000 --compare ninja,make\n  trove bench --kind inproc --shapes layered --sizes 100000 --scenarios cold,noop\n  trove bench --sizes 200 --emit ninja,make --dir bench-workload --json"
    )]
    Bench(crate::commands::bench::BenchArgs),
}

/// `trove run`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Steps to run, with their upstream [default: the whole job]
    #[arg(value_name = "STEP")]
    pub steps: Vec<String>,
    /// Run at most N steps at once [default: one per core]
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Run every selected step, ignoring stored outputs (tag memoized=false)
    #[arg(long)]
    pub no_memo: bool,
    /// Run STEP even if its outputs are stored (repeatable)
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    /// Tag the run (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tag: Vec<(String, String)>,
    /// Go on with independent steps after a failure (default)
    #[arg(long, conflicts_with = "fail_fast")]
    pub keep_going: bool,
    /// Start no new step after the first failure
    #[arg(long)]
    pub fail_fast: bool,
    /// Check every step the full way (parse, hash, derive versions, look up)
    /// even when file stats show nothing changed since the last complete run
    #[arg(long)]
    pub full_check: bool,
    /// Print the run report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanArgs {
    /// Steps to plan, with their upstream [default: the whole job]
    #[arg(value_name = "STEP")]
    pub steps: Vec<String>,
    /// Print the plan as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove why`.
#[derive(Debug, Args, Clone, Default)]
pub struct WhyArgs {
    /// The step to explain
    pub step: String,
    /// Print the explanation as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove log`.
#[derive(Debug, Args, Clone, Default)]
pub struct LogArgs {
    /// How many runs to list (at least 1)
    #[arg(short = 'n', value_name = "N", default_value_t = 20, value_parser = at_least_one)]
    pub limit: usize,
    /// Show this step's last standard output and error instead
    #[arg(long, value_name = "NAME")]
    pub step: Option<String>,
    /// Print as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove show`.
#[derive(Debug, Args, Clone, Default)]
pub struct ShowArgs {
    /// The run id (a unique prefix is enough)
    pub run: String,
    /// Print as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove gc`.
#[derive(Debug, Args, Clone, Default)]
pub struct GcArgs {
    /// Keep the N most recent runs
    #[arg(long, value_name = "N")]
    pub keep_runs: Option<usize>,
    /// Remove runs older than this (e.g. 30d, 12h, 90m)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<u64>,
    /// Remove the least recently used outputs until the stored output files fit (e.g. 10G,
    /// 500M; every step's latest outputs are kept, and the trace database is not counted)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `trove verify`.
#[derive(Debug, Args, Clone, Default)]
pub struct VerifyArgs {
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Graph formats.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz dot
    #[default]
    Dot,
    /// Mermaid flowchart
    Mermaid,
}

/// `trove graph`.
#[derive(Debug, Args, Clone, Default)]
pub struct GraphArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// `trove init`.
#[derive(Debug, Args, Clone, Default)]
pub struct InitArgs {}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{s}`")),
    }
}

/// `30d`, `12h`, `90m`, `45s` → milliseconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("expected an age like 30d, found `{s}`"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("unknown unit in `{s}`: use s, m, h, d or w")),
    };
    Ok(n.saturating_mul(secs).saturating_mul(1000))
}

/// `10G`, `500M`, `64K`, `1024` → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("expected a size like 10G, found `{s}`"))?;
    let mult: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in `{s}`: use K, M, G or T")),
    };
    Ok(n.saturating_mul(mult))
}

/// A count of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_at_one() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-1").is_err());
    }

    #[test]
    fn ages_and_sizes_parse() {
        assert_eq!(parse_age("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_age("90m"), Ok(90 * 60_000));
        assert!(parse_age("3y").is_err());
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
