//! Incrementality: which steps ran after each edit of a small pipeline
//! (invariant 2, *Minimal*, and early cutoff), and which version queries
//! salsa re-executed (salsa's `hello_world.rs` style: the log of executed
//! tracked functions is the evidence).

use std::fmt::Write as _;

use expect_test::{Expect, expect};
use serde_json::json;
use trove::{
    DataVersion, Engine, InputFrom, Job, MemoryIoManager, MemoryTraceStore, Op, Resource, RunEvent,
    RunOptions, StepOutcome, VersionDb, VersionMode,
};

/// `raw.csv -> clean -> features -> train`, `clean -> report`, plus an
/// independent `docs`. `clean` clamps its `limit` config to at most 10, so
/// raising the limit above 10 reproduces identical bytes.
fn pipeline(mode: VersionMode) -> Job {
    let hash_inputs = |name: &'static str| {
        move |ctx: &mut trove::OpContext<'_>| {
            let mut bytes = format!("{name} {} ", ctx.config()).into_bytes();
            let inputs: Vec<String> =
                ctx.op().inputs().iter().map(|i| i.name.to_string()).collect();
            for input in inputs {
                if let Ok(b) = ctx.input_bytes(&input) {
                    bytes.extend_from_slice(b);
                }
            }
            if let Some(lang) = ctx.env("LANG") {
                bytes.extend_from_slice(lang.as_bytes());
            }
            ctx.set_output_bytes("out", bytes)
        }
    };
    Job::builder("pipeline")
        .mode(mode)
        .resource(Resource::new("libc").code_version("2.39"))
        .resource(Resource::new("python").code_version("3.11").depends_on("libc"))
        .op(Op::new("clean")
            .input_at("raw", InputFrom::source("raw.csv"), "raw.csv")
            .output("out")
            .config(json!({"limit": 5}))
            .code_version("1")
            .compute(|ctx| {
                let limit = ctx.config()["limit"].as_i64().unwrap_or(0).min(10);
                ctx.set_output_bytes("out", format!("clean {limit}").into_bytes())
            }))
        .op(Op::new("features")
            .input("clean", InputFrom::output("clean", "out"))
            .output("out")
            .code_version("1")
            .compute(hash_inputs("features")))
        .op(Op::new("train")
            .input("features", InputFrom::output("features", "out"))
            .output("out")
            .config(json!({"lr": 0.1}))
            .resource("python")
            .env("LANG")
            .code_version("1")
            .compute(hash_inputs("train")))
        .op(Op::new("report")
            .input("clean", InputFrom::output("clean", "out"))
            .output("out")
            .code_version("1")
            .compute(hash_inputs("report")))
        .op(Op::new("docs").output("out").code_version("1").compute(hash_inputs("docs")))
        .build()
        .unwrap()
}

struct Session {
    engine: Engine,
    io: MemoryIoManager,
    traces: MemoryTraceStore,
}

impl Session {
    fn new(mode: VersionMode) -> Session {
        let mut engine = Engine::new(pipeline(mode));
        engine.set_source("raw.csv", DataVersion::of_bytes(b"1,2,3")).unwrap();
        engine.set_env("LANG", Some("C".into()));
        Session { engine, io: MemoryIoManager::new(), traces: MemoryTraceStore::new() }
    }

    /// Runs and describes what happened: each step that ran (with why) or
    /// was cut off; hits are left out.
    fn run_with(&mut self, opts: &RunOptions) -> String {
        let mut started = Vec::new();
        let report = self
            .engine
            .run(&self.io, &self.traces, opts, &mut |e| {
                if let RunEvent::Started { step, reasons } = e {
                    started.push((step.clone(), reasons.clone()));
                }
            })
            .unwrap();
        let mut out = String::new();
        for step in &report.steps {
            match &step.outcome {
                StepOutcome::Ran { reasons, .. } => {
                    writeln!(out, "ran {}: {reasons:?}", step.step).unwrap();
                }
                StepOutcome::CutOff { .. } => writeln!(out, "cut off {}", step.step).unwrap(),
                StepOutcome::Hit { .. } => {}
                other => writeln!(out, "{} {other:?}", step.step).unwrap(),
            }
        }
        out
    }

    fn run(&mut self) -> String {
        self.run_with(&RunOptions::default())
    }

    fn check(&mut self, expect: Expect) {
        expect.assert_eq(&self.run());
    }
}

#[test]
fn each_edit_runs_exactly_what_it_changes() {
    let mut s = Session::new(VersionMode::EarlyCutoff);
    s.check(expect![[r#"
        ran clean: [NoPreviousTrace]
        ran features: [NoPreviousTrace]
        ran train: [NoPreviousTrace]
        ran report: [NoPreviousTrace]
        ran docs: [NoPreviousTrace]
    "#]]);
    s.check(expect![""]);

    // A leaf config: only the leaf.
    s.engine.set_config("train", json!({"lr": 0.2})).unwrap();
    s.check(expect![[r#"
        ran train: [ConfigChanged { key: "lr", old: Some("0.1"), new: Some("0.2") }]
    "#]]);

    // Early cutoff: `clean` clamps 20 to 10; its bytes change once (5 -> 10)...
    s.engine.set_config("clean", json!({"limit": 20})).unwrap();
    s.check(expect![[r#"
        ran clean: [ConfigChanged { key: "limit", old: Some("5"), new: Some("20") }]
        ran features: [InputChanged { input: "clean", from: "clean.out", path: None }]
        ran train: [InputChanged { input: "features", from: "features.out", path: None }]
        ran report: [InputChanged { input: "clean", from: "clean.out", path: None }]
    "#]]);
    // ...but not again (20 -> 30 reproduces identical bytes): the rest is cut off.
    s.engine.set_config("clean", json!({"limit": 30})).unwrap();
    s.check(expect![[r#"
        ran clean: [ConfigChanged { key: "limit", old: Some("20"), new: Some("30") }]
        cut off features
        cut off train
        cut off report
    "#]]);

    // An env var only its declaring step sees.
    s.engine.set_env("LANG", Some("en_US".into()));
    s.check(expect![[r#"
        ran train: [EnvChanged { name: "LANG", old: Some("C"), new: Some("en_US") }]
    "#]]);

    // A nested resource: `train` requires python, which depends on libc.
    s.engine.set_resource_code_version("libc", Some("2.40".into())).unwrap();
    s.check(expect![[r#"
        ran train: [ResourceChanged { resource: "python", cause: Dependency { dependency: "libc" } }]
    "#]]);

    // A source's data: `clean` ignores it (bytes identical), so the rest is cut off.
    s.engine.set_source("raw.csv", DataVersion::of_bytes(b"1,2,3,4")).unwrap();
    s.check(expect![[r#"
        ran clean: [InputChanged { input: "raw", from: "source raw.csv", path: Some("raw.csv") }]
        cut off features
        cut off train
        cut off report
    "#]]);

    // Reverting an edit finds the old outputs stored: nothing runs.
    s.engine.set_config("train", json!({"lr": 0.1})).unwrap();
    s.engine.set_config("train", json!({"lr": 0.2})).unwrap();
    s.check(expect![""]);

    // Memoization off runs everything, and leaves the store as it was.
    let opts = RunOptions { memoize: false, ..RunOptions::default() };
    expect![[r#"
        ran clean: [MemoDisabled]
        ran features: [MemoDisabled]
        ran train: [MemoDisabled]
        ran report: [MemoDisabled]
        ran docs: [MemoDisabled]
    "#]]
    .assert_eq(&s.run_with(&opts));
    s.check(expect![""]);
}

#[test]
fn lineage_mode_knows_the_whole_plan_before_anything_runs() {
    let mut s = Session::new(VersionMode::Lineage);
    s.run();
    s.engine.set_config("clean", json!({"limit": 20})).unwrap();
    s.run();
    s.engine.set_config("clean", json!({"limit": 30})).unwrap();
    let plan = s.engine.plan(&s.io, &s.traces, &RunOptions::default()).unwrap();
    // No step waits: every downstream version is known (and changed).
    assert_eq!(plan.counts(), (1, 4, 0));
    // Without early cutoff, identical bytes do not stop invalidation.
    s.check(expect![[r#"
        ran clean: [ConfigChanged { key: "limit", old: Some("20"), new: Some("30") }]
        ran features: [InputChanged { input: "clean", from: "clean.out", path: None }]
        ran train: [InputChanged { input: "features", from: "features.out", path: None }]
        ran report: [InputChanged { input: "clean", from: "clean.out", path: None }]
    "#]]);
}

/// A chain `s0 -> s1 -> ... -> s{n-1}`, each step with a config `{"k": 0}`.
fn chain(n: usize, mode: VersionMode) -> Job {
    let mut builder = Job::builder("chain").mode(mode);
    for i in 0..n {
        let mut op = Op::new(format!("s{i}"))
            .output("out")
            .config(json!({"k": 0}))
            .code_version("1")
            .compute(|ctx| {
                let mut bytes = ctx.config().to_string().into_bytes();
                if let Ok(b) = ctx.input_bytes("up") {
                    bytes.extend_from_slice(b);
                }
                ctx.set_output_bytes("out", bytes)
            });
        if i > 0 {
            op = op.input("up", InputFrom::output(format!("s{}", i - 1), "out"));
        }
        builder = builder.op(op);
    }
    builder.build().unwrap()
}

fn count(log: &[String], query: &str) -> usize {
    log.iter().filter(|entry| entry.starts_with(query)).count()
}

fn query_all(engine: &Engine, n: usize) {
    for i in 0..n {
        engine.output_versions(&format!("s{i}")).unwrap();
    }
}

#[test]
fn salsa_reexecutes_only_the_versions_an_edit_affects() {
    let n = 20;
    // Lineage mode: an op version depends on its upstream op versions, so a
    // config edit of s{k} re-executes exactly s{k} and its n-k-1 downstream.
    let mut engine =
        Engine::with_db(chain(n, VersionMode::Lineage), VersionDb::with_execution_log());
    query_all(&engine, n);
    assert_eq!(count(&engine.db().take_log(), "op_version"), n);
    query_all(&engine, n);
    assert_eq!(engine.db().take_log(), Vec::<String>::new());
    for k in [n - 1, 12, 0] {
        engine.set_config(&format!("s{k}"), json!({"k": k + 1})).unwrap();
        query_all(&engine, n);
        let log = engine.db().take_log();
        assert_eq!(count(&log, "op_version"), n - k, "edit of s{k}: {log:?}");
        assert_eq!(count(&log, "resource_version"), 0);
    }
}

#[test]
fn salsa_reexecutes_one_version_for_a_leaf_edit_when_planning() {
    let n = 20;
    let mut engine =
        Engine::with_db(chain(n, VersionMode::EarlyCutoff), VersionDb::with_execution_log());
    let io = MemoryIoManager::new();
    let traces = MemoryTraceStore::new();
    engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(count(&engine.db().take_log(), "op_version"), n);
    // A no-op plan re-executes nothing.
    engine.plan(&io, &traces, &RunOptions::default()).unwrap();
    assert_eq!(engine.db().take_log(), Vec::<String>::new());
    // Early cutoff: a mid-chain edit re-executes that op's version only; the
    // steps below wait for its new bytes.
    engine.set_config("s7", json!({"k": 7})).unwrap();
    let plan = engine.plan(&io, &traces, &RunOptions::default()).unwrap();
    assert_eq!(plan.counts(), (7, 1, n - 8));
    assert_eq!(count(&engine.db().take_log(), "op_version"), 1);
    // Running it changes s7's bytes, so each of the n-8 steps below
    // re-executes once (s7's own version is still memoized from the plan).
    engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(count(&engine.db().take_log(), "op_version"), n - 8);
}

#[test]
fn salsa_log_names_the_queries() {
    let engine = Engine::with_db(
        Job::builder("j")
            .resource(Resource::new("r").code_version("1"))
            .op(Op::new("a").output("out").code_version("1").resource("r"))
            .build()
            .unwrap(),
        VersionDb::with_execution_log(),
    );
    engine.output_versions("a").unwrap();
    let log = engine.db().take_log();
    assert_eq!(count(&log, "op_version"), 1, "{log:?}");
    assert_eq!(count(&log, "resource_version"), 1, "{log:?}");
}

/// The benchmark's graph, small: `width` ops per layer, each reading two
/// outputs of the layer above.
fn layered(n: usize, width: usize) -> Job {
    let mut builder = Job::builder("layered").mode(VersionMode::Lineage);
    for i in 0..n {
        let mut op =
            Op::new(format!("op{i}")).output("out").config(json!({"k": i % 7})).code_version("1");
        if i >= width {
            let above = (i / width - 1) * width;
            let col = i % width;
            op = op
                .input("in0", InputFrom::output(format!("op{}", above + col), "out"))
                .input("in1", InputFrom::output(format!("op{}", above + (col + 1) % width), "out"));
        }
        builder = builder.op(op);
    }
    builder.build().unwrap()
}

/// The step and everything downstream of it.
fn closure(job: &Job, step: usize) -> usize {
    let mut seen = vec![false; job.len()];
    let mut stack = vec![step];
    while let Some(s) = stack.pop() {
        if !std::mem::replace(&mut seen[s], true) {
            stack.extend_from_slice(job.downstream(s));
        }
    }
    seen.iter().filter(|&&s| s).count()
}

#[test]
fn on_the_benchmark_graph_an_edit_reexecutes_exactly_its_downstream_versions() {
    let (n, width) = (100, 10);
    let job = layered(n, width);
    let names: Vec<String> = (0..n).map(|i| format!("op{i}")).collect();
    let mut engine = Engine::with_db(job.clone(), VersionDb::with_execution_log());
    let query = |engine: &Engine| {
        for name in &names {
            assert!(engine.output_versions(name).unwrap().is_some());
        }
    };
    query(&engine);
    assert_eq!(count(&engine.db().take_log(), "op_version"), n);
    // A leaf edit: one re-execution (the others are only re-verified).
    engine.set_config("op99", json!({"k": "leaf"})).unwrap();
    query(&engine);
    assert_eq!(count(&engine.db().take_log(), "op_version"), 1);
    // A root edit: the root and everything below it.
    engine.set_config("op0", json!({"k": "root"})).unwrap();
    query(&engine);
    let expected = closure(&job, 0);
    assert!(expected > n / 2, "{expected}");
    assert_eq!(count(&engine.db().take_log(), "op_version"), expected);
    // A mid-graph edit.
    engine.set_config("op55", json!({"k": "mid"})).unwrap();
    query(&engine);
    assert_eq!(count(&engine.db().take_log(), "op_version"), closure(&job, 55));
}
