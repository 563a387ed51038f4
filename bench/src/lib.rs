//! trove-bench: the rebuild-latency benchmark behind `trove bench`.
//!
//! It generates a synthetic [`Workload`] of one of four [`Shape`]s in a
//! temporary workspace, then times each [`Scenario`] (cold, no-op, touch,
//! leaf and root edits, a config edit, an edit that early cutoff stops),
//! repeated after a warm-up, as min / median / max. Every run is checked
//! against the answer key ([`Scenario::expected_runs`]): a wrong count of
//! executed steps is a failure of the run, never a figure in the table.
//!
//! Steps are either real commands run by the `trove` binary ([`Kind::Process`];
//! the same workload is written as `build.ninja` and a `Makefile` by [`emit`]
//! and run by those tools in the same run for a ratio) or library ops driven
//! through the engine ([`Kind::Inproc`], with the no-op [floor](inproc::Inproc::floor)).
//!
//! The CLI's `trove bench` turns its arguments into [`BenchOptions`] and
//! calls [`run`]; [`BenchReport::to_markdown`] and [`BenchReport::to_json`]
//! render the result.

pub mod emit;
pub mod inproc;
pub mod process;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod workload;
pub mod workspace;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use emit::Peer;
pub use report::{BenchReport, FloorResult, ScenarioResult, ToolResult, WorkloadResult};
pub use scenario::Scenario;
pub use stats::Stats;
pub use workload::{Kind, Shape, Workload};

use crate::inproc::{Inproc, MemoryBackend};
use crate::process::RunSample;
use crate::workspace::{Tool, Workspace};

/// Where `--emit` keeps the workspaces when no `--dir` is given.
pub const DEFAULT_EMIT_DIR: &str = "trove-bench-workload";

/// Where `inproc` outputs and traces are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InprocStore {
    /// trove's on-disk store (`.trove/`: redb, blobs, stat cache).
    #[default]
    Disk,
    /// In memory: the engine alone.
    Memory,
}

/// What to benchmark; the library side of `trove bench`'s arguments.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Graph shapes.
    pub shapes: Vec<Shape>,
    /// Step counts.
    pub sizes: Vec<usize>,
    /// Real commands or in-process ops.
    pub kind: Kind,
    /// Scenarios, in the order they run.
    pub scenarios: Vec<Scenario>,
    /// Timed repetitions of each scenario.
    pub repeat: usize,
    /// Untimed (but checked) repetitions before them.
    pub warmup: usize,
    /// Also write the workload as these peers' build files.
    pub emit: Vec<Peer>,
    /// Run these peers on the same workload (process kind; skipped when not
    /// installed).
    pub compare: Vec<Peer>,
    /// The caller wants JSON (recorded in the report's command line).
    pub json: bool,
    /// The `trove` binary to run for the process kind.
    pub trove_exe: PathBuf,
    /// Parallel jobs for every tool (0: one per core).
    pub jobs: usize,
    /// Keep the workspaces in this directory instead of a temporary one.
    pub dir: Option<PathBuf>,
    /// Show progress on stderr.
    pub progress: bool,
    /// Where `inproc` keeps outputs and traces.
    pub inproc_store: InprocStore,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            shapes: vec![Shape::Chain],
            sizes: vec![1000],
            kind: Kind::Process,
            scenarios: Scenario::ALL.to_vec(),
            repeat: 5,
            warmup: 1,
            emit: Vec::new(),
            compare: Vec::new(),
            json: false,
            trove_exe: PathBuf::from("trove"),
            jobs: 0,
            dir: None,
            progress: true,
            inproc_store: InprocStore::default(),
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

impl BenchOptions {
    /// The `trove bench` command line that asks for these options.
    pub fn command_line(&self) -> String {
        let mut cmd = format!(
            "trove bench --shapes {} --sizes {} --kind {} --scenarios {} --repeat {} --warmup {}",
            join(&self.shapes),
            join(&self.sizes),
            self.kind,
            join(&self.scenarios),
            self.repeat,
            self.warmup
        );
        if self.jobs != 0 {
            cmd.push_str(&format!(" -j {}", self.jobs));
        }
        if !self.compare.is_empty() {
            cmd.push_str(&format!(" --compare {}", join(&self.compare)));
        }
        if !self.emit.is_empty() {
            cmd.push_str(&format!(" --emit {}", join(&self.emit)));
        }
        if self.kind == Kind::Inproc && self.inproc_store == InprocStore::Memory {
            cmd.push_str(" --memory");
        }
        if self.json {
            cmd.push_str(" --json");
        }
        cmd
    }

    fn jobs(&self) -> usize {
        if self.jobs == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.jobs
        }
    }
}

/// Parses a step count: `1000`, `10_000`, `10k`, `1m`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim().replace('_', "").to_ascii_lowercase();
    let (digits, scale) = match t.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match t.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (t.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}` is not a step count (like 1000, 10_000 or 10k)"))
}

fn parse_list<T: std::str::FromStr<Err = String>>(text: &str) -> Result<Vec<T>, String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::parse).collect()
}

impl BenchOptions {
    /// Applies `trove bench`-style arguments to `self` (for the
    /// `harness = false` bench and the example; the CLI uses clap):
    /// `--shapes chain,layered --sizes 1000,10_000 --kind process --scenarios
    /// noop,touch --repeat 5 --warmup 1 --compare ninja,make --emit ninja -j 2
    /// --dir DIR --memory --json --quiet`. `--bench` (passed by
    /// `cargo bench`) is ignored.
    pub fn parse_args(mut self, args: &[String]) -> Result<BenchOptions, String> {
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--bench" => continue,
                "--json" => {
                    self.json = true;
                    continue;
                }
                "--quiet" | "-q" => {
                    self.progress = false;
                    continue;
                }
                "--memory" => {
                    self.inproc_store = InprocStore::Memory;
                    continue;
                }
                _ => {}
            }
            let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--shapes" => self.shapes = parse_list(value)?,
                "--sizes" => {
                    self.sizes = value.split(',').map(parse_size).collect::<Result<_, _>>()?;
                }
                "--kind" => self.kind = value.parse()?,
                "--scenarios" => self.scenarios = parse_list(value)?,
                "--repeat" => self.repeat = value.parse().map_err(|e| format!("--repeat: {e}"))?,
                "--warmup" => self.warmup = value.parse().map_err(|e| format!("--warmup: {e}"))?,
                "--compare" => self.compare = parse_list(value)?,
                "--emit" => self.emit = parse_list(value)?,
                "-j" | "--jobs" => self.jobs = value.parse().map_err(|e| format!("-j: {e}"))?,
                "--dir" => self.dir = Some(PathBuf::from(value)),
                "--trove" => self.trove_exe = PathBuf::from(value),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(self)
    }
}

/// Errors that stop the benchmark before it measures anything. A wrong step
/// count or a failing tool run is not one: it is a failure in the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options make no sense.
    #[error("{0}")]
    Options(String),
    /// Setting up a workspace failed.
    #[error("setting up {path}: {source}")]
    Setup {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

struct Progress {
    on: bool,
    tty: bool,
}

impl Progress {
    fn show(&self, line: &str, last: bool) {
        if !self.on {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            if last {
                let _ = writeln!(err);
            }
        } else if last {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// One tool measured in one workload.
enum Runner {
    Process { ws: Workspace, exe: PathBuf },
    Inproc(Box<Inproc>),
}

impl Runner {
    fn tool(&self) -> Tool {
        match self {
            Runner::Process { ws, .. } => ws.tool,
            Runner::Inproc(_) => Tool::Trove,
        }
    }
    fn ws(&mut self) -> &mut Workspace {
        match self {
            Runner::Process { ws, .. } => ws,
            Runner::Inproc(inproc) => &mut inproc.ws,
        }
    }
    fn run(&mut self, jobs: usize) -> Result<RunSample, String> {
        match self {
            Runner::Process { ws, exe } => process::run_once(ws, exe, jobs),
            Runner::Inproc(inproc) => inproc.run_once(),
        }
    }
    fn apply(&mut self, edit: &scenario::Edit) -> Result<(), String> {
        if let (Runner::Inproc(inproc), scenario::Edit::Wipe) = (&mut *self, edit) {
            return inproc.wipe();
        }
        let ws = self.ws();
        ws.apply(edit).map_err(|e| format!("editing {}: {e}", ws.root.display()))
    }
    fn restore(&mut self, edit: &scenario::Edit) -> Result<(), String> {
        let ws = self.ws();
        ws.restore(edit).map_err(|e| format!("restoring {}: {e}", ws.root.display()))
    }
}

/// Checks a trove run against the answer key; the message says what is wrong.
/// One tool's runs of one scenario, gathered run by run.
#[derive(Default)]
struct Series {
    samples: Vec<Duration>,
    ran: Vec<usize>,
    phases: Vec<(String, Vec<Duration>)>,
    failure: Option<String>,
    last_edit: scenario::Edit,
}

fn check_trove(sample: &RunSample, expected: usize, what: &str) -> Result<(), String> {
    if sample.ran != expected {
        return Err(format!("{what}: trove ran {} steps, expected {expected}", sample.ran));
    }
    if sample.logged != sample.ran {
        return Err(format!(
            "{what}: trove reported {} steps run but {} step commands ran",
            sample.ran, sample.logged
        ));
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.repeat == 0 {
        return Err(BenchError::Options("--repeat must be at least 1".into()));
    }
    if opts.shapes.is_empty() || opts.sizes.is_empty() || opts.scenarios.is_empty() {
        return Err(BenchError::Options("nothing to run: no shape, size or scenario".into()));
    }
    for &n in &opts.sizes {
        if !(workload::MIN_STEPS..=workload::MAX_STEPS).contains(&n) {
            return Err(BenchError::Options(format!(
                "N must be between {} and {}, not {n}",
                workload::MIN_STEPS,
                workload::MAX_STEPS
            )));
        }
    }
    let temp;
    let base: PathBuf = match &opts.dir {
        Some(dir) => dir.clone(),
        // Emitted build files are for people to read and run: keep them.
        None if !opts.emit.is_empty() => PathBuf::from(DEFAULT_EMIT_DIR),
        None => {
            temp = tempfile::Builder::new()
                .prefix("trove-bench-")
                .tempdir()
                .map_err(|source| BenchError::Setup { path: std::env::temp_dir(), source })?;
            temp.path().to_path_buf()
        }
    };
    let progress = Progress { on: opts.progress, tty: std::io::stderr().is_terminal() };
    let mut report = BenchReport::new(opts);
    if !opts.emit.is_empty() {
        report.notes.push(format!(
            "workspaces with {} kept in {}/<shape>-<N>-<kind>/trove",
            opts.emit.iter().map(|p| p.file_name()).collect::<Vec<_>>().join(" and "),
            base.display()
        ));
    }
    let mut peers = Vec::new();
    for &peer in &opts.compare {
        if opts.kind != Kind::Process {
            report.notes.push(format!("{peer} skipped: peers run only on process workloads"));
        } else if !process::peer_installed(peer) {
            report.notes.push(format!("{peer} not installed, skipped"));
            progress.show(&format!("trove bench: {peer} not installed, skipped"), true);
        } else {
            report.machine.tools.push(report::tool_version(peer));
            peers.push(peer);
        }
    }
    let jobs = opts.jobs();
    for &shape in &opts.shapes {
        for &n in &opts.sizes {
            let workload = Workload::generate(shape, n).map_err(BenchError::Options)?;
            let dir = base.join(format!("{shape}-{n}-{}", opts.kind));
            let result = bench_workload(opts, &workload, &dir, &peers, jobs, &progress)?;
            report.workloads.push(result);
        }
    }
    report.finish();
    Ok(report)
}

fn setup_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Setup { path: path.to_path_buf(), source }
}

fn bench_workload(
    opts: &BenchOptions,
    workload: &Workload,
    dir: &Path,
    peers: &[Peer],
    jobs: usize,
    progress: &Progress,
) -> Result<WorkloadResult, BenchError> {
    let label = format!("{} N={} {}", workload.shape, workload.len(), opts.kind);
    progress.show(&format!("trove bench: {label}: writing the workload"), false);
    let trove_dir = dir.join("trove");
    let trove_ws = Workspace::create(&trove_dir, workload, Tool::Trove, opts.kind == Kind::Process)
        .map_err(setup_err(&trove_dir))?;
    for &peer in &opts.emit {
        trove_ws.write_peer_file(peer).map_err(setup_err(&trove_dir))?;
    }
    let mut runners = Vec::new();
    let mut result = WorkloadResult {
        shape: workload.shape.name().to_owned(),
        n: workload.len(),
        kind: opts.kind.name().to_owned(),
        edges: workload.edges(),
        dir: opts.dir.as_ref().map(|_| trove_dir.display().to_string()),
        scenarios: Vec::new(),
        failures: Vec::new(),
    };
    match opts.kind {
        Kind::Process => {
            runners.push(Runner::Process { ws: trove_ws, exe: opts.trove_exe.clone() });
            for &peer in peers {
                let peer_dir = dir.join(peer.name());
                let ws = Workspace::create(&peer_dir, workload, Tool::Peer(peer), true)
                    .map_err(setup_err(&peer_dir))?;
                runners.push(Runner::Process { ws, exe: opts.trove_exe.clone() });
            }
        }
        Kind::Inproc => {
            let backend: Box<dyn inproc::Backend> = match opts.inproc_store {
                InprocStore::Memory => Box::<MemoryBackend>::default(),
                InprocStore::Disk => {
                    Box::new(inproc::StoreBackend::new(trove_dir.join(workspace::STORE_DIR)))
                }
            };
            runners.push(Runner::Inproc(Box::new(Inproc::new(trove_ws, backend, jobs))));
        }
    }
    // The first build: every tool starts the scenarios from an up-to-date build.
    for runner in &mut runners {
        let tool = runner.tool();
        progress.show(&format!("trove bench: {label}: first build with {}", tool.name()), false);
        match runner.run(jobs) {
            Ok(sample) if tool == Tool::Trove => {
                if let Err(e) = check_trove(&sample, workload.len(), "first build") {
                    result.failures.push(e);
                }
            }
            Ok(_) => {}
            Err(e) => result.failures.push(format!("first build with {}: {e}", tool.name())),
        }
    }
    let total = opts.warmup + opts.repeat;
    for &scenario in &opts.scenarios {
        let expected = scenario.expected_runs(workload);
        let mut sr = ScenarioResult::new(scenario, expected);
        // The tools take turns run by run (trove's k-th, then each peer's
        // k-th), each in its own workspace: a slow spell of the shared
        // machine falls on all of them, not on one tool's whole series.
        let mut acc: Vec<Series> = runners.iter().map(|_| Series::default()).collect();
        for k in 0..total {
            for (runner, series) in runners.iter_mut().zip(&mut acc) {
                if series.failure.is_some() {
                    continue;
                }
                let tool = runner.tool();
                progress.show(
                    &format!(
                        "trove bench: {label}: {scenario} with {} {}/{total}",
                        tool.name(),
                        k + 1
                    ),
                    false,
                );
                let edit = scenario.edit(workload, k);
                if let Err(e) = runner.apply(&edit) {
                    series.failure = Some(e);
                    continue;
                }
                series.last_edit = edit;
                let sample = match runner.run(jobs) {
                    Ok(s) => s,
                    Err(e) => {
                        series.failure = Some(format!("{scenario} with {}: {e}", tool.name()));
                        continue;
                    }
                };
                series.ran.push(sample.ran);
                if tool == Tool::Trove
                    && let Err(e) =
                        check_trove(&sample, expected, &format!("{scenario} run {}", k + 1))
                {
                    series.failure = Some(e);
                }
                if k >= opts.warmup {
                    series.samples.push(sample.wall);
                    for (name, secs) in &sample.phases {
                        let secs = Duration::from_secs_f64(*secs);
                        match series.phases.iter_mut().find(|(n, _)| n == name) {
                            Some((_, v)) => v.push(secs),
                            None => series.phases.push((name.clone(), vec![secs])),
                        }
                    }
                }
            }
        }
        for (runner, series) in runners.iter_mut().zip(acc) {
            let tool = runner.tool();
            let Series { samples, ran, phases, mut failure, last_edit } = series;
            // The floor of a no-op, right after the no-op runs (inproc only).
            if let (Runner::Inproc(inproc), Scenario::Noop, None) =
                (&mut *runner, scenario, &failure)
            {
                let mut floors = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..opts.repeat {
                    match inproc.floor() {
                        Ok((both, hash, lookup)) => {
                            floors.0.push(both);
                            floors.1.push(hash);
                            floors.2.push(lookup);
                        }
                        Err(e) => {
                            failure = Some(format!("floor: {e}"));
                            break;
                        }
                    }
                }
                if let (Some(total), Some(hash), Some(lookup)) =
                    (Stats::of(&floors.0), Stats::of(&floors.1), Stats::of(&floors.2))
                {
                    sr.floor = Some(FloorResult { total, hash, lookup });
                }
            }
            // Back to the original workload, and up to date (untimed). trove
            // still holds the original versions, so it must run nothing.
            if let Err(e) = runner.restore(&last_edit) {
                failure.get_or_insert(e);
            }
            match runner.run(jobs) {
                Ok(sample) if tool == Tool::Trove && failure.is_none() => {
                    let restored = scenario != Scenario::Cold && scenario != Scenario::Noop;
                    if restored
                        && let Err(e) =
                            check_trove(&sample, 0, &format!("rebuild after undoing {scenario}"))
                    {
                        failure = Some(e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failure.get_or_insert(format!(
                        "rebuild after {scenario} with {}: {e}",
                        tool.name()
                    ));
                }
            }
            let tr = ToolResult {
                tool: tool.name().to_owned(),
                stats: Stats::of(&samples),
                ran,
                ok: failure.is_none(),
                failure: failure.clone(),
                phases: phases
                    .iter()
                    .filter_map(|(name, v)| Stats::of(v).map(|s| (name.clone(), s)))
                    .collect(),
            };
            if let Some(f) = failure {
                result.failures.push(f);
            }
            progress.show(
                &format!("trove bench: {label}: {scenario} with {}: {}", tool.name(), tr.summary()),
                true,
            );
            if tool == Tool::Trove {
                sr.trove = Some(tr);
            } else {
                sr.peers.push(tr);
            }
        }
        result.scenarios.push(sr);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(kind: Kind, shapes: Vec<Shape>, n: usize) -> BenchOptions {
        BenchOptions {
            shapes,
            sizes: vec![n],
            kind,
            repeat: 1,
            warmup: 1,
            progress: false,
            ..BenchOptions::default()
        }
    }

    #[test]
    fn sizes_parse_with_separators_and_suffixes() {
        assert_eq!(parse_size("10_000"), Ok(10_000));
        assert_eq!(parse_size("100k"), Ok(100_000));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn inproc_step_counts_hold_for_every_shape_and_scenario() {
        let report = run(&small(Kind::Inproc, Shape::ALL.to_vec(), 12)).unwrap();
        assert!(report.ok, "{}", report.to_markdown());
        let noop = &report.workloads[0].scenarios[1];
        assert_eq!(noop.scenario, "noop");
        assert!(noop.floor.is_some());
        let md = report.to_markdown();
        assert!(md.contains("| chain | 12 | cutoff | 1 / 1 ✓ |"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["schema"], 1);
    }

    #[test]
    fn make_runs_the_emitted_makefile_like_the_answer_key_says_a_mtime_tool_would() {
        if !process::peer_installed(Peer::Make) {
            return; // make is not installed here; the ninja/make path is optional
        }
        // A bogus trove binary: trove's runs fail, make's are still measured.
        let opts = BenchOptions {
            compare: vec![Peer::Make],
            trove_exe: PathBuf::from("/nonexistent/trove"),
            scenarios: vec![Scenario::Cold, Scenario::Noop, Scenario::Touch, Scenario::Cutoff],
            ..small(Kind::Process, vec![Shape::Chain], 10)
        };
        let report = run(&opts).unwrap();
        assert!(!report.ok, "a trove that cannot start is a failure");
        let make_ran: Vec<usize> =
            report.workloads[0].scenarios.iter().map(|s| *s.peers[0].ran.last().unwrap()).collect();
        // cold: all; noop: none; touch of the middle source: half the chain;
        // cutoff: make has no early cutoff, so the whole chain.
        assert_eq!(make_ran, [10, 0, 5, 10]);
    }

    #[test]
    fn ninja_runs_the_emitted_build_file_when_installed() {
        if !process::peer_installed(Peer::Ninja) {
            return; // ninja is optional: `trove bench` says "ninja not installed, skipped"
        }
        let opts = BenchOptions {
            compare: vec![Peer::Ninja],
            trove_exe: PathBuf::from("/nonexistent/trove"),
            ..small(Kind::Process, vec![Shape::Wide, Shape::Layered], 10)
        };
        let report = run(&opts).unwrap();
        for w in &report.workloads {
            let ran: Vec<usize> =
                w.scenarios.iter().map(|s| *s.peers[0].ran.last().unwrap()).collect();
            // cold, noop, touch (middle), edit-leaf, edit-root, config (the
            // command changes; no early cutoff below it), cutoff.
            let middle = Workload::generate(w.shape.parse().unwrap(), 10).unwrap().closure(5);
            assert_eq!(ran, [10, 0, middle, 1, 10, middle, 10], "{}", w.shape);
        }
    }
}
