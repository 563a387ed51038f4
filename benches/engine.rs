//! Engine benchmarks (`cargo bench --bench engine`): versions through salsa
//! against a plain blake3 loop, re-versioning after edits, a no-op plan, and
//! the scheduler's per-step overhead. Prints the markdown table kept in
//! `BENCHMARKS.md` (section "Engine benchmarks"); every figure is a ratio against a baseline
//! measured in the same run. Nothing here is asserted: the execution counts
//! behind these timings are asserted in `tests/it/incremental.rs`.
//!
//! The graph is layered: width ≈ sqrt(N), each op reading 2 outputs of the
//! layer above, one output each, a config and an explicit code version.
//! `TROVE_BENCH_SIZES=1000,10000` overrides the sizes; `TROVE_BENCH_REPS`
//! the repetitions (best reported); `TROVE_BENCH_ONLY=d` runs only (d),
//! `TROVE_BENCH_ONLY=e` only (e) and the floor of (a), and
//! `TROVE_BENCH_JOBS=1` only its `jobs=1` rows (for profiling).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use trove::version::config_digest;
use trove::version::encode::{
    InputContribution, compute_env_digest, compute_explicit_code_version, compute_op_version,
    compute_output_version, compute_outputs_digest,
};
use trove::{
    DataVersion, Engine, InputFrom, Job, JobBuilder, MemoryIoManager, MemoryTraceStore, Op,
    OpContext, OpFailure, OutputVersion, RunOptions, VersionMode,
};

struct Graph {
    n: usize,
    width: usize,
}

impl Graph {
    fn new(n: usize) -> Graph {
        let width = ((n as f64).sqrt().round() as usize).max(1);
        Graph { n, width }
    }
    /// The upstream steps of step `i` (the layer above, 2 of them).
    fn inputs(&self, i: usize) -> Vec<usize> {
        if i < self.width {
            return Vec::new();
        }
        let layer_start = (i / self.width) * self.width;
        let above = layer_start - self.width;
        let col = i - layer_start;
        let mut ups = vec![above + col % self.width, above + (col + 1) % self.width];
        ups.dedup();
        ups
    }
}

fn name(i: usize) -> String {
    format!("op{i}")
}

fn trivial(ctx: &mut OpContext<'_>) -> Result<(), OpFailure> {
    let mut acc = [0u8; 8];
    for input in ["in0", "in1"] {
        if let Ok(bytes) = ctx.input_bytes(input) {
            for (a, b) in acc.iter_mut().zip(bytes) {
                *a = a.wrapping_add(*b);
            }
        }
    }
    acc[0] = acc[0].wrapping_add(1);
    let mut bytes = acc.to_vec();
    bytes.extend_from_slice(ctx.step().as_bytes());
    ctx.set_output_bytes("out", bytes)
}

fn job(graph: &Graph, mode: VersionMode) -> Job {
    builder(graph, mode).build().unwrap()
}

/// The bench job's ops, not yet validated.
fn builder(graph: &Graph, mode: VersionMode) -> JobBuilder {
    let mut builder = Job::builder("bench").mode(mode);
    for i in 0..graph.n {
        let mut op = Op::new(name(i))
            .output("out")
            .config(json!({"k": i % 7}))
            .code_version("1")
            .compute(trivial);
        for (k, up) in graph.inputs(i).into_iter().enumerate() {
            op = op.input(format!("in{k}"), InputFrom::output(name(up), "out"));
        }
        builder = builder.op(op);
    }
    builder
}

/// The floor: the same hashing as the version graph (config digests, code
/// versions, env and output-list digests, op and output versions, lineage
/// inputs), in a plain topological loop.
fn floor_versions(graph: &Graph, configs: &[serde_json::Value]) -> Vec<OutputVersion> {
    let mut out: Vec<OutputVersion> = Vec::with_capacity(graph.n);
    let env = compute_env_digest(&[]);
    let names = ["in0", "in1"];
    for (i, config) in configs.iter().enumerate().take(graph.n) {
        let outputs = compute_outputs_digest(&name(i), &[("out", None)]);
        let code = compute_explicit_code_version("op", "1");
        let config = config_digest(config);
        let ups = graph.inputs(i);
        let inputs: Vec<(&str, Option<&str>, InputContribution)> = ups
            .iter()
            .enumerate()
            .map(|(k, &u)| (names[k], None, InputContribution::Lineage(out[u])))
            .collect();
        let op = compute_op_version(code, config, env, outputs, &[], &inputs);
        out.push(compute_output_version(op, "out"));
    }
    out
}

fn all_versions(engine: &Engine, names: &[String]) -> usize {
    let mut known = 0;
    for n in names {
        if engine.output_versions(n).unwrap().is_some() {
            known += 1;
        }
    }
    known
}

/// CPU time of the calling thread so far (the machine is shared, so wall
/// time includes waiting for a core; everything measured here except
/// `jobs=2` runs on the calling thread).
fn thread_cpu() -> Duration {
    // The kernel brings a running thread's count up to date when it is
    // switched out: yield first, or the figure lags by up to a tick.
    std::thread::yield_now();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse().ok()))
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// The best of `reps` runs: (wall time, CPU time of this thread).
fn time<T, R>(
    reps: usize,
    mut setup: impl FnMut() -> T,
    mut f: impl FnMut(T) -> R,
) -> (Duration, Duration) {
    let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
    for _ in 0..reps {
        let input = setup();
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        let out = f(input);
        let (w, c) = (start.elapsed(), thread_cpu().saturating_sub(start_cpu));
        drop(out);
        wall = wall.min(w);
        cpu = cpu.min(c);
    }
    (wall, cpu)
}

fn us_per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

struct Row {
    n: usize,
    what: &'static str,
    /// (wall, thread CPU).
    time: (Duration, Duration),
    baseline: &'static str,
    /// Against the baseline, by CPU time (by wall time for `jobs=2`).
    ratio: f64,
    target: &'static str,
}

fn ratio(a: (Duration, Duration), b: (Duration, Duration)) -> f64 {
    a.1.as_secs_f64() / b.1.as_secs_f64()
}

fn bench(n: usize, reps: usize, only: &str, rows: &mut Vec<Row>) {
    let graph = Graph::new(n);
    let lineage = job(&graph, VersionMode::Lineage);
    let early = job(&graph, VersionMode::EarlyCutoff);
    if only == "d" {
        return scheduler(n, reps, &graph, &early, rows);
    }
    let names: Vec<String> = (0..n).map(name).collect();
    let configs: Vec<serde_json::Value> = (0..n).map(|i| json!({"k": i % 7})).collect();

    // (a) cold versions: salsa (load the job, query every output version in
    // topological order) against the plain loop doing the same hashing.
    let floor = time(reps, || (), |_| floor_versions(&graph, &configs));
    if only == "e" {
        return loading(n, reps, &graph, &lineage, floor, rows);
    }
    let cold = time(
        reps,
        || lineage.clone(),
        |job| {
            let engine = Engine::new(job);
            assert_eq!(all_versions(&engine, &names), n);
            engine
        },
    );
    {
        // Same values, or the comparison means nothing.
        let engine = Engine::new(lineage.clone());
        let floor = floor_versions(&graph, &configs);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(engine.output_versions(n).unwrap().unwrap()[0], floor[i]);
        }
    }
    rows.push(Row {
        n,
        what: "(a) cold versions through salsa (lineage)",
        time: cold,
        baseline: "plain blake3 loop",
        ratio: ratio(cold, floor),
        target: "≤ 3x",
    });
    rows.push(Row {
        n,
        what: "(a) plain topological blake3 loop",
        time: floor,
        baseline: "—",
        ratio: 1.0,
        target: "floor",
    });

    // (b) re-versioning every output after one config edit, long-lived engine.
    let mut engine = Engine::new(lineage.clone());
    all_versions(&engine, &names);
    let mut flip = 0;
    let leaf = time(
        reps,
        || (),
        |_| {
            flip += 1;
            engine.set_config(&names[n - 1], json!({"k": 100 + flip})).unwrap();
            assert_eq!(all_versions(&engine, &names), n);
        },
    );
    let root = time(
        reps,
        || (),
        |_| {
            flip += 1;
            engine.set_config(&names[0], json!({"k": 100 + flip})).unwrap();
            assert_eq!(all_versions(&engine, &names), n);
        },
    );
    rows.push(Row {
        n,
        what: "(b) re-version all after a leaf config edit",
        time: leaf,
        baseline: "(a) salsa cold",
        ratio: ratio(leaf, cold),
        target: "≤ 0.2x",
    });
    rows.push(Row {
        n,
        what: "(b) re-version all after a root config edit",
        time: root,
        baseline: "(a) salsa cold",
        ratio: ratio(root, cold),
        target: "—",
    });
    drop(engine);

    // (c) no-op plans with the in-memory IO manager, after a full run.
    for (lineage_mode, job) in [(false, &early), (true, &lineage)] {
        let io = MemoryIoManager::new();
        let traces = MemoryTraceStore::new();
        let opts = RunOptions { jobs: 1, ..RunOptions::default() };
        Engine::new(job.clone()).run(&io, &traces, &opts, &mut |_| {}).unwrap();
        let fresh = time(
            reps,
            || job.clone(),
            |job| {
                let mut engine = Engine::new(job);
                let plan = engine.plan(&io, &traces, &opts).unwrap();
                assert_eq!(plan.counts(), (n, 0, 0));
                (engine, plan)
            },
        );
        let mut engine = Engine::new(job.clone());
        engine.plan(&io, &traces, &opts).unwrap();
        let warm = time(
            reps,
            || (),
            |_| {
                let plan = engine.plan(&io, &traces, &opts).unwrap();
                assert_eq!(plan.counts(), (n, 0, 0));
                plan
            },
        );
        rows.push(Row {
            n,
            what: if lineage_mode {
                "(c) no-op plan, new engine (lineage)"
            } else {
                "(c) no-op plan, new engine (early cutoff)"
            },
            time: fresh,
            baseline: "(a) salsa cold",
            ratio: ratio(fresh, cold),
            target: "≤ 1.5x",
        });
        rows.push(Row {
            n,
            what: if lineage_mode {
                "(c) no-op plan, long-lived engine (lineage)"
            } else {
                "(c) no-op plan, long-lived engine (early cutoff)"
            },
            time: warm,
            baseline: "(a) salsa cold",
            ratio: ratio(warm, cold),
            target: "—",
        });
    }
    scheduler(n, reps, &graph, &early, rows);
    loading(n, reps, &graph, &lineage, floor, rows);
}

/// (e) what a new process pays before the first version: validating the
/// job's ops (`JobBuilder::build`: names, wiring, order) and loading the
/// job into a new engine (`Engine::new`: salsa inputs, config digests, code
/// versions), each against (a)'s plain loop.
fn loading(
    n: usize,
    reps: usize,
    graph: &Graph,
    lineage: &Job,
    floor: (Duration, Duration),
    rows: &mut Vec<Row>,
) {
    let build = time(reps, || builder(graph, VersionMode::Lineage), |b| b.build().unwrap());
    rows.push(Row {
        n,
        what: "(e) validate the job (JobBuilder::build)",
        time: build,
        baseline: "plain blake3 loop",
        ratio: ratio(build, floor),
        target: "—",
    });
    let load = time(reps, || lineage.clone(), Engine::new);
    rows.push(Row {
        n,
        what: "(e) load the job into a new engine (Engine::new)",
        time: load,
        baseline: "plain blake3 loop",
        ratio: ratio(load, floor),
        target: "—",
    });
}

/// (d) scheduler overhead: a cold run of trivial ops (engine already
/// loaded, empty stores) against a loop doing the same op work (read 2
/// inputs, compute, hash the output) sequentially.
fn scheduler(n: usize, reps: usize, graph: &Graph, early: &Job, rows: &mut Vec<Row>) {
    let seq = time(
        reps,
        || (),
        |_| {
            let mut outputs: Vec<Vec<u8>> = Vec::with_capacity(n);
            for i in 0..n {
                let mut acc = [0u8; 8];
                for up in graph.inputs(i) {
                    for (a, b) in acc.iter_mut().zip(&outputs[up]) {
                        *a = a.wrapping_add(*b);
                    }
                }
                acc[0] = acc[0].wrapping_add(1);
                let mut bytes = acc.to_vec();
                bytes.extend_from_slice(name(i).as_bytes());
                black_box(DataVersion::of_bytes(&bytes));
                outputs.push(bytes);
            }
            outputs
        },
    );
    let jobs_list: Vec<usize> = std::env::var("TROVE_BENCH_JOBS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    for jobs in jobs_list {
        let run = time(
            reps,
            || (Engine::new(early.clone()), MemoryIoManager::new(), MemoryTraceStore::new()),
            |(mut engine, io, traces)| {
                let opts = RunOptions { jobs, ..RunOptions::default() };
                let report = engine.run(&io, &traces, &opts, &mut |_| {}).unwrap();
                assert_eq!(report.counts.ran, n);
                (engine, io, traces, report)
            },
        );
        // With 2 workers the ops run on other threads: compare wall times.
        let (overhead, ratio_seq) = if jobs == 1 {
            (run.1.saturating_sub(seq.1), ratio(run, seq))
        } else {
            (run.0.saturating_sub(seq.0), run.0.as_secs_f64() / seq.0.as_secs_f64())
        };
        rows.push(Row {
            n,
            what: if jobs == 1 {
                "(d) cold run of trivial ops, jobs=1"
            } else {
                "(d) cold run of trivial ops, jobs=2 (wall)"
            },
            time: run,
            baseline: "sequential loop",
            ratio: ratio_seq,
            target: "",
        });
        rows.push(Row {
            n,
            what: if jobs == 1 {
                "(d) engine overhead per step, jobs=1"
            } else {
                "(d) engine overhead per step, jobs=2 (wall)"
            },
            time: (overhead, overhead),
            baseline: "µs/step",
            ratio: us_per_op(overhead, n),
            target: "< 2 µs",
        });
    }
    rows.push(Row {
        n,
        what: "(d) sequential loop",
        time: seq,
        baseline: "—",
        ratio: 1.0,
        target: "floor",
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("TROVE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let reps: usize =
        std::env::var("TROVE_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let only = std::env::var("TROVE_BENCH_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    for n in sizes {
        bench(n, reps, &only, &mut rows);
    }
    println!(
        "Best of {reps}; CPU = CPU time of the calling thread; ratios by CPU time unless marked (wall)."
    );
    println!();
    println!("| N | measurement | wall | CPU | CPU per op | vs | ratio | target |");
    println!("| ---: | --- | ---: | ---: | ---: | --- | ---: | --- |");
    for r in rows {
        let ratio = if r.baseline == "µs/step" {
            format!("{:.2} µs", r.ratio)
        } else {
            format!("{:.2}x", r.ratio)
        };
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.3} µs | {} | {} | {} |",
            r.n,
            r.what,
            r.time.0.as_secs_f64() * 1e3,
            r.time.1.as_secs_f64() * 1e3,
            us_per_op(r.time.1, r.n),
            r.baseline,
            ratio,
            r.target
        );
    }
}
