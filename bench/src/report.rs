//! The benchmark's report: what was measured, on what, and the tables.
//!
//! Markdown for `BENCHMARKS.md` (the command above the table, the machine
//! below it) and JSON (`"schema": 1`) for tools.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::emit::Peer;
use crate::scenario::Scenario;
use crate::stats::{Stats, human};
use crate::{BenchOptions, process};

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub cores: usize,
    /// CPU model, if known.
    pub cpu: Option<String>,
    /// Total memory in GiB, if known.
    pub memory_gib: Option<f64>,
    /// Operating system and kernel.
    pub os: String,
    /// Peer tools and their versions.
    pub tools: Vec<String>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(path)).ok()
}

impl Machine {
    fn detect() -> Machine {
        let cpu = read("/proc/cpuinfo").and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        });
        let memory_gib = read("/proc/meminfo").and_then(|t| {
            let kb: f64 = t.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some((kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        });
        let kernel = read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned());
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu,
            memory_gib,
            os: match kernel {
                Some(k) => {
                    format!("{} {} (kernel {k})", std::env::consts::OS, std::env::consts::ARCH)
                }
                None => format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            },
            tools: Vec::new(),
        }
    }
}

/// `ninja 1.11.1`: a peer and the version it reports.
pub fn tool_version(peer: Peer) -> String {
    #[allow(clippy::disallowed_methods)] // the benchmark asks the tool it measures
    let out = std::process::Command::new(peer.name()).arg("--version").output();
    let version = out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    if version.starts_with(peer.name()) || version.contains("Make") {
        version
    } else {
        format!("{} {version}", peer.name())
    }
}

/// One tool's runs of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ToolResult {
    /// `trove`, `ninja` or `make`.
    pub tool: String,
    /// Timed runs (after the warm-up); `None` if none finished.
    pub stats: Option<Stats>,
    /// Steps run in each run, warm-up included.
    pub ran: Vec<usize>,
    /// Whether every run ran the expected steps (always true for peers,
    /// whose counts are reported, not checked).
    pub ok: bool,
    /// What went wrong, if anything.
    pub failure: Option<String>,
    /// Phase timings (trove's `--json` timings, or the inproc phases).
    pub phases: Vec<(String, Stats)>,
}

impl ToolResult {
    /// `median 3.1 ms, ran 0` or the failure.
    pub fn summary(&self) -> String {
        match (&self.failure, &self.stats) {
            (Some(f), _) => format!("FAILED: {f}"),
            (None, Some(s)) => format!(
                "median {} (min {}, max {}), ran {}",
                human(s.median),
                human(s.min),
                human(s.max),
                self.ran.last().copied().unwrap_or(0)
            ),
            (None, None) => "no timed run".to_owned(),
        }
    }
}

/// The floor of an inproc no-op (see [`crate::inproc::Inproc::floor`]).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FloorResult {
    /// Hash and look up every step.
    pub total: Stats,
    /// The hashing alone.
    pub hash: Stats,
    /// The lookups alone.
    pub lookup: Stats,
}

/// One scenario of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: String,
    /// Steps trove must run.
    pub expected: usize,
    /// trove's runs.
    pub trove: Option<ToolResult>,
    /// The peers' runs.
    pub peers: Vec<ToolResult>,
    /// trove median / peer median, per peer.
    pub ratios: Vec<(String, f64)>,
    /// The no-op floor (inproc no-op only).
    pub floor: Option<FloorResult>,
}

impl ScenarioResult {
    pub(crate) fn new(scenario: Scenario, expected: usize) -> ScenarioResult {
        ScenarioResult {
            scenario: scenario.name().to_owned(),
            expected,
            trove: None,
            peers: Vec::new(),
            ratios: Vec::new(),
            floor: None,
        }
    }

    fn compute_ratios(&mut self) {
        let Some(trove) = self.trove.as_ref().filter(|t| t.ok).and_then(|t| t.stats) else {
            return;
        };
        self.ratios = self
            .peers
            .iter()
            .filter_map(|p| {
                p.stats.filter(|_| p.ok).map(|s| (p.tool.clone(), trove.median / s.median))
            })
            .collect();
    }
}

/// One workload (shape × N × kind).
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// Its shape.
    pub shape: String,
    /// Its step count.
    pub n: usize,
    /// `process` or `inproc`.
    pub kind: String,
    /// Its edges.
    pub edges: usize,
    /// Where it was kept (`--dir`), if not in a temporary directory.
    pub dir: Option<String>,
    /// Its scenarios.
    pub scenarios: Vec<ScenarioResult>,
    /// Every failure: wrong step counts, failed runs.
    pub failures: Vec<String>,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// JSON schema version.
    pub schema: u32,
    /// The command that produced it.
    pub command: String,
    /// Timed repetitions per scenario.
    pub repeat: usize,
    /// Untimed repetitions before them.
    pub warmup: usize,
    /// The machine.
    pub machine: Machine,
    /// Skipped peers and other remarks.
    pub notes: Vec<String>,
    /// The workloads.
    pub workloads: Vec<WorkloadResult>,
    /// Whether every step count was right and every run succeeded.
    pub ok: bool,
}

impl BenchReport {
    pub(crate) fn new(opts: &BenchOptions) -> BenchReport {
        BenchReport {
            schema: 1,
            command: opts.command_line(),
            repeat: opts.repeat,
            warmup: opts.warmup,
            machine: Machine::detect(),
            notes: Vec::new(),
            workloads: Vec::new(),
            ok: true,
        }
    }

    pub(crate) fn finish(&mut self) {
        for w in &mut self.workloads {
            for s in &mut w.scenarios {
                s.compute_ratios();
            }
        }
        self.ok = self.workloads.iter().all(|w| w.failures.is_empty());
    }

    /// Every failure, prefixed with its workload.
    pub fn failures(&self) -> Vec<String> {
        self.workloads
            .iter()
            .flat_map(|w| {
                w.failures.iter().map(move |f| format!("{} N={} {}: {f}", w.shape, w.n, w.kind))
            })
            .collect()
    }

    /// The report as JSON (`"schema": 1`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as markdown tables, the command above them.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Command: `{}`\n", self.command);
        let peers: Vec<String> = {
            let mut p: Vec<String> = Vec::new();
            for w in &self.workloads {
                for s in &w.scenarios {
                    for t in &s.peers {
                        if !p.contains(&t.tool) {
                            p.push(t.tool.clone());
                        }
                    }
                }
            }
            p
        };
        let process: Vec<&WorkloadResult> =
            self.workloads.iter().filter(|w| w.kind == "process").collect();
        let inproc: Vec<&WorkloadResult> =
            self.workloads.iter().filter(|w| w.kind == "inproc").collect();
        if !process.is_empty() {
            out.push_str(
                "| shape | N | scenario | trove ran / expected | trove min / median / max |",
            );
            for p in &peers {
                let _ = write!(out, " {p} median (ran) | trove/{p} |");
            }
            out.push_str("\n|---|---:|---|---:|---|");
            for _ in &peers {
                out.push_str("---:|---:|");
            }
            out.push('\n');
            for w in &process {
                for s in &w.scenarios {
                    let _ = write!(
                        out,
                        "| {} | {} | {} | {} | {} |",
                        w.shape,
                        w.n,
                        s.scenario,
                        ran_cell(s),
                        time_cell(s)
                    );
                    for p in &peers {
                        match s.peers.iter().find(|t| &t.tool == p) {
                            Some(t) => {
                                let cell = match (&t.failure, t.stats) {
                                    (Some(_), _) | (None, None) => "failed".to_owned(),
                                    (None, Some(st)) => format!(
                                        "{} ({})",
                                        human(st.median),
                                        t.ran.last().copied().unwrap_or(0)
                                    ),
                                };
                                let ratio = s
                                    .ratios
                                    .iter()
                                    .find(|(n, _)| n == p)
                                    .map_or("–".to_owned(), |(_, r)| format!("{r:.2}"));
                                let _ = write!(out, " {cell} | {ratio} |");
                            }
                            None => out.push_str(" – | – |"),
                        }
                    }
                    out.push('\n');
                }
            }
        }
        if !inproc.is_empty() {
            if !process.is_empty() {
                out.push('\n');
            }
            out.push_str("| shape | N | scenario | trove ran / expected | min / median / max | median per step | no-op floor (hash + lookup) | median / floor | engine / floor |\n|---|---:|---|---:|---|---:|---:|---:|---:|\n");
            for w in &inproc {
                for s in &w.scenarios {
                    let per_step = s
                        .trove
                        .as_ref()
                        .filter(|t| t.ok)
                        .and_then(|t| t.stats)
                        .map_or("–".to_owned(), |st| {
                            format!("{:.2} µs", st.median * 1e6 / w.n as f64)
                        });
                    let ok = s.trove.as_ref().filter(|t| t.ok);
                    let (floor, ratio, engine_ratio) = match (&s.floor, ok.and_then(|t| t.stats)) {
                        (Some(f), Some(st)) => {
                            // The engine's share: building the job and engine
                            // inputs, then versions, lookups and the run (no
                            // store open, no source stat: the floor has none).
                            let engine: f64 = ok
                                .map(|t| {
                                    t.phases
                                        .iter()
                                        .filter(|(n, _)| ENGINE_PHASES.contains(&n.as_str()))
                                        .map(|(_, p)| p.median)
                                        .sum()
                                })
                                .unwrap_or(0.0);
                            (
                                format!(
                                    "{} ({} + {})",
                                    human(f.total.median),
                                    human(f.hash.median),
                                    human(f.lookup.median)
                                ),
                                format!("{:.2}", st.median / f.total.median),
                                format!("{:.2}", engine / f.total.median),
                            )
                        }
                        _ => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {per_step} | {floor} | {ratio} | {engine_ratio} |",
                        w.shape,
                        w.n,
                        s.scenario,
                        ran_cell(s),
                        time_cell(s)
                    );
                }
            }
        }
        let phased: Vec<(&WorkloadResult, &ScenarioResult, &ToolResult)> = self
            .workloads
            .iter()
            .flat_map(|w| w.scenarios.iter().map(move |s| (w, s)))
            .filter_map(|(w, s)| {
                s.trove.as_ref().filter(|t| !t.phases.is_empty()).map(|t| (w, s, t))
            })
            .filter(|(_, s, _)| s.scenario == "noop" || s.scenario == "cold")
            .collect();
        if !phased.is_empty() {
            out.push_str("\nWhere trove's time goes (medians):\n\n| shape | N | kind | scenario | phase | median | per step |\n|---|---:|---|---|---|---:|---:|\n");
            for (w, s, t) in phased {
                for (name, st) in &t.phases {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {name} | {} | {:.2} µs |",
                        w.shape,
                        w.n,
                        w.kind,
                        s.scenario,
                        human(st.median),
                        st.median * 1e6 / w.n as f64
                    );
                }
            }
        }
        let _ = write!(
            out,
            "\n{} timed run(s) per scenario after {} warm-up run(s); ratios are medians from this one run. Machine: {} cores",
            self.repeat, self.warmup, self.machine.cores
        );
        if let Some(cpu) = &self.machine.cpu {
            let _ = write!(out, ", {cpu}");
        }
        if let Some(mem) = self.machine.memory_gib {
            let _ = write!(out, ", {mem} GiB");
        }
        let _ = write!(out, ", {}", self.machine.os);
        if !self.machine.tools.is_empty() {
            let _ = write!(out, "; {}", self.machine.tools.join(", "));
        }
        out.push_str(".\n");
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}.");
        }
        let failures = self.failures();
        if !failures.is_empty() {
            out.push_str("\n**FAILED** (a wrong step count is a failure, not a figure):\n\n");
            for f in failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        out
    }
}

/// The inproc phases that are the engine's (and the version/lookup work
/// the floor also does), as opposed to opening the store and statting sources.
pub const ENGINE_PHASES: [&str; 2] = ["job + engine inputs", "versions + lookups + run"];

fn ran_cell(s: &ScenarioResult) -> String {
    match &s.trove {
        Some(t) if t.ok => format!("{} / {} ✓", t.ran.last().copied().unwrap_or(0), s.expected),
        Some(t) => {
            let wrong = t.ran.iter().find(|&&r| r != s.expected).or(t.ran.last());
            match wrong {
                Some(r) => format!("{r} / {} ✗", s.expected),
                None => format!("– / {} ✗", s.expected),
            }
        }
        None => format!("– / {}", s.expected),
    }
}

fn time_cell(s: &ScenarioResult) -> String {
    match &s.trove {
        Some(t) if t.ok => match t.stats {
            Some(st) => format!("{} / {} / {}", human(st.min), human(st.median), human(st.max)),
            None => "–".to_owned(),
        },
        Some(_) => "FAIL".to_owned(),
        None => "–".to_owned(),
    }
}

/// Whether `ninja` and the other peers named are installed (for callers
/// that want to say so before running).
pub fn installed(peers: &[Peer]) -> Vec<(Peer, bool)> {
    peers.iter().map(|&p| (p, process::peer_installed(p))).collect()
}
