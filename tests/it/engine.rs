//! Integration tests: the engine's run semantics (unversioned ops, memo off,
//! forcing, selection, failures, cancellation, corruption, events) and the
//! plan's rerun reasons for each kind of change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use trove::{
    CodeVersion, DataVersion, Engine, InputFrom, IoError, IoManager, Job, JobBuilder,
    MemoryIoManager, MemoryTraceStore, Op, OpContext, OpFailure, OutputContext, Plan, RerunReason,
    Resource, ResourceCause, RunEvent, RunOptions, RunReport, RunStatus, Selection, StepOutcome,
    StepPlan, VersionStrategy,
};

/// An op whose single output `out` is its config and inputs, concatenated.
fn op(name: &str, inputs: &[&str]) -> Op {
    let mut op = Op::new(name).output("out").code_version("1").compute(|ctx| {
        let mut bytes = ctx.config().to_string().into_bytes();
        let names: Vec<String> = ctx.op().inputs().iter().map(|i| i.name.to_string()).collect();
        for name in names {
            bytes.extend_from_slice(b"|");
            bytes.extend_from_slice(ctx.input_bytes(&name)?);
        }
        ctx.set_output_bytes("out", bytes)
    });
    for up in inputs {
        op = op.input(*up, InputFrom::output(*up, "out"));
    }
    op
}

/// A diamond with an independent branch: `a -> b -> d`, `a -> c -> d`, `x`.
fn diamond() -> JobBuilder {
    Job::builder("diamond")
        .op(op("a", &[]))
        .op(op("b", &["a"]).config(json!("b")))
        .op(op("c", &["a"]).config(json!("c")))
        .op(op("d", &["b", "c"]))
        .op(op("x", &[]).config(json!("x")))
}

struct World {
    io: MemoryIoManager,
    traces: MemoryTraceStore,
}

impl World {
    fn new() -> World {
        World { io: MemoryIoManager::new(), traces: MemoryTraceStore::new() }
    }

    fn run(&self, engine: &mut Engine, opts: &RunOptions) -> (RunReport, Vec<RunEvent>) {
        let mut events = Vec::new();
        let report =
            engine.run(&self.io, &self.traces, opts, &mut |e| events.push(e.clone())).unwrap();
        (report, events)
    }

    fn run_default(&self, engine: &mut Engine) -> RunReport {
        self.run(engine, &RunOptions::default()).0
    }

    fn plan(&self, engine: &mut Engine) -> Plan {
        engine.plan(&self.io, &self.traces, &RunOptions::default()).unwrap()
    }
}

fn reasons(plan: &Plan, step: &str) -> Vec<RerunReason> {
    match &plan.step(step).unwrap().plan {
        StepPlan::Run(reasons) => reasons.clone(),
        other => panic!("step {step} does not run: {other:?}"),
    }
}

fn started(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Started { step, .. } => Some(step.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_second_run_is_all_hits() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    assert_eq!(world.run_default(&mut engine).ran(), ["a", "b", "c", "d", "x"]);
    let report = world.run_default(&mut engine);
    assert!(report.ran().is_empty());
    assert_eq!(report.counts.hit, 5);
    // A new engine (a new process) sees the same.
    let mut engine = Engine::new(diamond().build().unwrap());
    assert!(world.run_default(&mut engine).ran().is_empty());
}

/// An op sees why it runs: the reasons its `Started` event carries, and
/// after the run the report has them too.
#[test]
fn an_op_sees_the_reasons_it_runs_for() {
    type Seen = std::sync::Mutex<Vec<(String, Vec<RerunReason>)>>;
    let seen: Arc<Seen> = Arc::default();
    let record = |name: &str| {
        let seen = Arc::clone(&seen);
        let name = name.to_owned();
        Op::new(&name).output("out").code_version("1").compute(move |ctx| {
            seen.lock().unwrap().push((name.clone(), ctx.reasons().to_vec()));
            let bytes = ctx.config().to_string().into_bytes();
            ctx.set_output_bytes("out", bytes)
        })
    };
    let job = || {
        Job::builder("why").op(record("a").config(json!({"k": 1}))).op(record("b")).build().unwrap()
    };
    let world = World::new();
    let mut engine = Engine::new(job());
    // One worker: the ops record in the job's order.
    let opts = RunOptions { jobs: 1, ..RunOptions::default() };
    world.run(&mut engine, &opts);
    engine.set_config("a", json!({"k": 2})).unwrap();
    let (report, events) = world.run(&mut engine, &opts);
    let seen = seen.lock().unwrap().clone();
    let config_changed = RerunReason::ConfigChanged {
        key: "k".to_owned(),
        old: Some("1".to_owned()),
        new: Some("2".to_owned()),
    };
    assert_eq!(
        seen,
        [
            ("a".to_owned(), vec![RerunReason::NoPreviousTrace]),
            ("b".to_owned(), vec![RerunReason::NoPreviousTrace]),
            ("a".to_owned(), vec![config_changed.clone()]),
        ]
    );
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::Started { step, reasons } if step == "a" && reasons == std::slice::from_ref(&config_changed))
    ));
    assert!(
        matches!(report.outcome("a"), Some(StepOutcome::Ran { reasons, .. }) if reasons == &[config_changed])
    );
}

#[test]
fn unversioned_ops_always_run_and_early_cutoff_protects_their_downstream() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let job = Job::builder("j")
        .op(Op::new("clock").output("out").compute(move |ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            ctx.set_output_bytes("out", b"same bytes".to_vec())
        }))
        .op(op("use", &["clock"]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    assert_eq!(engine.output_versions("clock").unwrap(), None);
    assert_eq!(world.run_default(&mut engine).ran(), ["clock", "use"]);
    let (report, events) = world.run(&mut engine, &RunOptions::default());
    assert_eq!(report.ran(), ["clock"]);
    assert!(matches!(report.outcome("use"), Some(StepOutcome::CutOff { .. })));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::Started { step, reasons } if step == "clock" && reasons == &[RerunReason::Unversioned])
    ));
}

#[test]
fn unversioned_in_lineage_mode_runs_its_downstream_too() {
    let job = Job::builder("j")
        .mode(trove::VersionMode::Lineage)
        .op(Op::new("clock").output("out").compute(|ctx| ctx.set_output_bytes("out", vec![1])))
        .op(op("use", &["clock"]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    world.run_default(&mut engine);
    assert_eq!(world.run_default(&mut engine).ran(), ["clock", "use"]);
}

#[test]
fn memoization_disabled_runs_every_step_and_keeps_memoizing_afterwards() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    let opts = RunOptions { memoize: false, ..RunOptions::default() };
    let (report, events) = world.run(&mut engine, &opts);
    assert_eq!(report.ran(), ["a", "b", "c", "d", "x"]);
    assert!(events.iter().all(|e| match e {
        RunEvent::Started { reasons, .. } => reasons == &[RerunReason::MemoDisabled],
        _ => true,
    }));
    assert!(world.run_default(&mut engine).ran().is_empty());
}

#[test]
fn a_forced_step_runs_and_its_unchanged_downstream_is_cut_off() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    let opts = RunOptions { force: ["a".to_owned()].into(), ..RunOptions::default() };
    let (report, events) = world.run(&mut engine, &opts);
    assert_eq!(report.ran(), ["a"]);
    assert_eq!(report.counts.cut_off, 3);
    assert!(matches!(report.outcome("x"), Some(StepOutcome::Hit { .. })));
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::Started { step, reasons } if step == "a" && reasons == &[RerunReason::Forced])
    ));
    let opts = RunOptions { force: ["nope".to_owned()].into(), ..RunOptions::default() };
    let err = engine.run(&world.io, &world.traces, &opts, &mut |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "unknown step `nope`");
    // Forcing a step the selection leaves out would silently not run it.
    let opts = RunOptions {
        force: ["x".to_owned()].into(),
        selection: Selection { steps: vec!["b".into()], downstream: false },
        ..RunOptions::default()
    };
    let err = engine.run(&world.io, &world.traces, &opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, trove::PlanError::ForcedNotSelected { ref step } if step == "x"),
        "{err}"
    );
}

#[test]
fn selection_covers_a_step_and_its_upstream() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    let opts = RunOptions {
        selection: Selection { steps: vec!["b".into()], downstream: false },
        ..RunOptions::default()
    };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.ran(), ["a", "b"]);
    assert_eq!(report.steps.len(), 2);
    // `c` and `x` never ran, nor did `d`, which comes after `c`.
    let plan = world.plan(&mut engine);
    assert_eq!(plan.counts(), (2, 3, 0));
}

#[test]
fn selection_with_downstream_covers_what_reads_it_and_what_that_reads() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    let opts = RunOptions {
        selection: Selection { steps: vec!["b".into()], downstream: true },
        ..RunOptions::default()
    };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.ran(), ["a", "b", "c", "d"]);
    let opts = RunOptions {
        selection: Selection { steps: vec!["zz".into()], downstream: true },
        ..RunOptions::default()
    };
    assert!(engine.plan(&world.io, &world.traces, &opts).is_err());
}

fn failing_diamond(fail: Arc<AtomicBool>) -> Job {
    let b = Op::new("b").input("a", InputFrom::output("a", "out")).output("out").code_version("1");
    let b = b.compute(move |ctx| {
        if fail.load(Ordering::SeqCst) {
            return Err(OpFailure { message: "boom".into(), exit_code: Some(3) });
        }
        let bytes = ctx.input_bytes("a")?.to_vec();
        ctx.set_output_bytes("out", bytes)
    });
    Job::builder("j")
        .op(op("a", &[]))
        .op(b)
        .op(op("c", &["a"]))
        .op(op("d", &["b", "c"]))
        .op(op("e", &["d"]))
        .op(op("x", &[]))
        .build()
        .unwrap()
}

#[test]
fn a_failure_skips_its_downstream_while_independent_branches_complete() {
    let fail = Arc::new(AtomicBool::new(true));
    let world = World::new();
    let mut engine = Engine::new(failing_diamond(Arc::clone(&fail)));
    let opts = RunOptions { jobs: 1, ..RunOptions::default() };
    let (report, events) = world.run(&mut engine, &opts);
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.ran(), ["a", "c", "x"]);
    assert_eq!(
        report.outcome("b"),
        Some(&StepOutcome::Failed { message: "boom".into(), exit_code: Some(3) })
    );
    assert_eq!(report.outcome("d"), Some(&StepOutcome::Skipped { failed_upstream: "b".into() }));
    assert_eq!(report.outcome("e"), Some(&StepOutcome::Skipped { failed_upstream: "b".into() }));
    assert!(!started(&events).contains(&"d".to_owned()));
    assert_eq!(world.traces.failures().len(), 1);
    // Successes are recorded: the next run only runs the failed part.
    fail.store(false, Ordering::SeqCst);
    let report = world.run_default(&mut engine);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.ran(), ["b", "d", "e"]);
}

#[test]
fn fail_fast_starts_nothing_after_the_first_failure() {
    let fail = Arc::new(AtomicBool::new(true));
    let world = World::new();
    let mut engine = Engine::new(failing_diamond(fail));
    let opts = RunOptions { jobs: 1, fail_fast: true, ..RunOptions::default() };
    let (report, events) = world.run(&mut engine, &opts);
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(started(&events), ["a", "b"]);
    assert_eq!(report.outcome("c"), Some(&StepOutcome::NotRun));
    assert_eq!(report.outcome("x"), Some(&StepOutcome::NotRun));
    assert_eq!(report.outcome("d"), Some(&StepOutcome::Skipped { failed_upstream: "b".into() }));
    assert_eq!(report.counts.not_run, 2);
}

#[test]
fn cancellation_stops_cleanly_and_keeps_what_finished() {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let job = Job::builder("j")
        .op(Op::new("a").output("out").code_version("1").compute(move |ctx| {
            flag.store(true, Ordering::SeqCst);
            ctx.set_output_bytes("out", vec![1])
        }))
        .op(op("b", &["a"]))
        .op(op("c", &["b"]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    let opts = RunOptions { cancel: Some(Arc::clone(&cancel)), jobs: 1, ..RunOptions::default() };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.ran(), ["a"]);
    assert_eq!(report.outcome("b"), Some(&StepOutcome::NotRun));
    assert_eq!(report.counts.not_run, 2);
    cancel.store(false, Ordering::SeqCst);
    let report = world.run(&mut engine, &opts).0;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.ran(), ["b", "c"]);
}

/// An op with one output that reads `a`'s, its computation still to give.
fn reading_a(name: &str) -> Op {
    Op::new(name).input("a", InputFrom::output("a", "out")).output("out").code_version("1")
}

#[test]
fn a_step_failing_after_a_cancellation_leaves_the_run_cancelled_not_failed() {
    // A terminal's Ctrl-C reaches trove and the running command alike: the
    // command dies of the signal after the flag is raised. The run was
    // interrupted, not broken.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let job = Job::builder("j")
        .op(op("a", &[]))
        .op(reading_a("b").compute(move |_| {
            flag.store(true, Ordering::SeqCst);
            Err(OpFailure::new("command was killed by signal 2"))
        }))
        .op(op("c", &["b"]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    let opts = RunOptions { cancel: Some(Arc::clone(&cancel)), jobs: 1, ..RunOptions::default() };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.ran(), ["a"]);
    assert_eq!(report.counts.failed, 1);
    // Without a cancellation the same failure fails the run.
    cancel.store(false, Ordering::SeqCst);
    let job = Job::builder("j")
        .op(op("a", &[]))
        .op(reading_a("b").compute(|_| Err(OpFailure::new("exit 1"))))
        .build()
        .unwrap();
    let report = world.run(&mut Engine::new(job), &opts).0;
    assert_eq!(report.status, RunStatus::Failed);
}

/// An IO manager whose restore of one step's outputs fails (the
/// workspace cannot take them back).
struct RestoreFails {
    inner: MemoryIoManager,
    step: &'static str,
}

impl IoManager for RestoreFails {
    fn has_output(&self, ctx: &OutputContext<'_>) -> Result<Option<trove::StoredOutput>, IoError> {
        self.inner.has_output(ctx)
    }
    fn handle_output(
        &self,
        ctx: &OutputContext<'_>,
        value: trove::OutputValue,
    ) -> Result<trove::StoredOutput, IoError> {
        self.inner.handle_output(ctx, value)
    }
    fn load_input(
        &self,
        ctx: &OutputContext<'_>,
        stored: &trove::StoredOutput,
    ) -> Result<trove::OutputValue, IoError> {
        self.inner.load_input(ctx, stored)
    }
    fn restore(
        &self,
        ctx: &OutputContext<'_>,
        _: &trove::StoredOutput,
    ) -> Result<trove::Restore, IoError> {
        if ctx.step == self.step {
            return Err(IoError::Other { context: "restoring".into(), message: "no space".into() });
        }
        Ok(trove::Restore::Present)
    }
}

/// A hit whose outputs cannot be restored fails its step: its downstream is
/// skipped, independent steps go on (nothing more starts with fail-fast),
/// and the run is not an error.
#[test]
fn a_step_whose_outputs_cannot_be_restored_fails_and_the_run_goes_on() {
    let io = RestoreFails { inner: MemoryIoManager::new(), step: "b" };
    let traces = MemoryTraceStore::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    engine.run(&io.inner, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    let mut engine = Engine::new(diamond().build().unwrap());
    engine.set_config("c", json!("c2")).unwrap();
    engine.set_config("x", json!("x2")).unwrap();
    let report = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(matches!(
        report.outcome("b"),
        Some(StepOutcome::Failed { message, .. }) if message == "output out: restoring: no space"
    ));
    assert!(matches!(report.outcome("d"), Some(StepOutcome::Skipped { .. })));
    assert_eq!(report.ran(), ["c", "x"]);
    // Fail-fast: nothing starts after it.
    let mut engine = Engine::new(diamond().build().unwrap());
    engine.set_config("x", json!("x3")).unwrap();
    let opts = RunOptions { fail_fast: true, jobs: 1, ..RunOptions::default() };
    let report = engine.run(&io, &traces, &opts, &mut |_| {}).unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.ran().is_empty(), "{:?}", report.ran());
}

#[test]
fn a_corrupt_stored_output_is_never_served_and_its_step_runs_again() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    let a = engine.output_versions("a").unwrap().unwrap()[0];
    let good = world.io.get_output("a", "out", &a).unwrap();
    // The stored bytes are checked when they are loaded.
    world.io.overwrite(a, b"evil".to_vec());
    let ctx = OutputContext { step: "a", output: "out", version: a, path: None, run_id: "r" };
    let stored = world.io.has_output(&ctx).unwrap().unwrap();
    assert!(matches!(world.io.load_input(&ctx, &stored), Err(IoError::Corrupt { .. })));
    // Downstream steps must run to read it: force `b`.
    let opts = RunOptions { force: ["b".into()].into(), jobs: 1, ..RunOptions::default() };
    let (report, events) = world.run(&mut engine, &opts);
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(report.ran().contains(&"a"));
    assert!(report.ran().contains(&"b"));
    assert!(events.iter().any(|e| matches!(e, RunEvent::Warning { step, .. } if step == "a")));
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Started { step, reasons } if step == "a"
            && matches!(reasons.as_slice(), [RerunReason::OutputCorrupt { output, .. }] if output == "out")
    )));
    assert_eq!(world.io.get_output("a", "out", &a).unwrap(), good);
    // The bytes b read are the good ones.
    let b = engine.output_versions("b").unwrap().unwrap()[0];
    let mut expected = b"\"b\"|".to_vec();
    expected.extend_from_slice(&good);
    assert_eq!(world.io.get_output("b", "out", &b).unwrap(), expected);
}

#[test]
fn a_missing_stored_output_runs_its_step_again() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    let c = engine.output_versions("c").unwrap().unwrap()[0];
    world.io.remove(&c);
    let plan = world.plan(&mut engine);
    assert_eq!(reasons(&plan, "c"), [RerunReason::OutputMissing { output: "out".into() }]);
    assert_eq!(plan.step("d").unwrap().plan, StepPlan::Waiting { on: vec!["c".into()] });
    let report = world.run_default(&mut engine);
    assert_eq!(report.ran(), ["c"]);
    assert!(matches!(report.outcome("d"), Some(StepOutcome::CutOff { .. })));
}

#[test]
fn events_come_in_order() {
    let world = World::new();
    let mut engine =
        Engine::new(Job::builder("j").op(op("a", &[])).op(op("b", &["a"])).build().unwrap());
    let (_, events) = world.run(&mut engine, &RunOptions::default());
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            RunEvent::Planned { total, hits, to_run, waiting } => {
                format!("planned {total} {hits} {to_run} {waiting}")
            }
            RunEvent::Started { step, .. } => format!("started {step}"),
            RunEvent::Finished { step, outputs, .. } => {
                assert_eq!(outputs.len(), 1);
                format!("finished {step}")
            }
            RunEvent::Hit { step, .. } => format!("hit {step}"),
            RunEvent::CutOff { step, .. } => format!("cut off {step}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["planned 2 0 1 1", "started a", "finished a", "started b", "finished b"]);
    let opts = RunOptions { force: ["a".into()].into(), ..RunOptions::default() };
    let (_, events) = world.run(&mut engine, &opts);
    let finished_a = events
        .iter()
        .find_map(|e| match e {
            RunEvent::Finished { step, outputs, .. } if step == "a" => Some(outputs.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(finished_a, [("out".into(), DataVersion::of_bytes(b"null"))]);
    assert!(matches!(events.last(), Some(RunEvent::CutOff { step, .. }) if step == "b"));
    assert!(matches!(events[0], RunEvent::Planned { total: 2, hits: 0, to_run: 1, waiting: 1 }));
}

#[test]
fn a_failed_op_event_carries_its_cause() {
    let world = World::new();
    let job = Job::builder("j")
        .op(Op::new("p").output("out").code_version("1").compute(|_| panic!("kaput")))
        .op(Op::new("n").output("out").code_version("1"))
        .build()
        .unwrap();
    let mut engine = Engine::new(job);
    let (report, events) = world.run(&mut engine, &RunOptions::default());
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::Failed { step, message } if step == "p" && message.contains("kaput"))
    ));
    assert_eq!(
        report.outcome("n"),
        Some(&StepOutcome::Failed { message: "op `n` has no computation".into(), exit_code: None })
    );
}

// ---- Plan reasons ------------------------------------------------------

#[test]
fn plan_says_no_previous_trace() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    let plan = world.plan(&mut engine);
    assert_eq!(reasons(&plan, "a"), [RerunReason::NoPreviousTrace]);
    // `d` waits on `b` and `c`, but runs whatever they write: it never ran.
    assert_eq!(reasons(&plan, "d"), [RerunReason::NoPreviousTrace]);
    assert_eq!(plan.counts(), (0, 5, 0));
}

/// A step waiting on an upstream that must run first, whose other input
/// already changed, runs for certain: the plan says so, and why.
#[test]
fn a_waiting_step_with_a_changed_input_is_planned_to_run() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    // `d` reads `b` and `c`; `c` is re-run alone with a new config (its
    // output changes), then `b`'s config changes too.
    engine.set_config("c", json!("c2")).unwrap();
    let opts = RunOptions {
        selection: Selection { steps: vec!["c".into()], downstream: false },
        ..RunOptions::default()
    };
    world.run(&mut engine, &opts);
    engine.set_config("b", json!("b2")).unwrap();
    let plan = world.plan(&mut engine);
    assert!(matches!(plan.step("b").unwrap().plan, StepPlan::Run(_)));
    assert_eq!(
        reasons(&plan, "d"),
        [RerunReason::InputChanged { input: "c".into(), from: "c.out".into(), path: None }]
    );
    let report = world.run_default(&mut engine);
    assert_eq!(report.ran(), ["b", "d"]);
}

#[test]
fn plan_names_the_config_key_with_old_and_new_values() {
    let world = World::new();
    let job = |config: Value| {
        Job::builder("j").op(op("a", &[]).config(config)).op(op("b", &["a"])).build().unwrap()
    };
    world.run_default(&mut Engine::new(job(json!({"lr": 1, "opt": {"name": "sgd"}}))));
    let mut engine = Engine::new(job(json!({"lr": 1.0, "opt": {"name": "adam"}})));
    let plan = world.plan(&mut engine);
    assert_eq!(
        reasons(&plan, "a"),
        [
            RerunReason::ConfigChanged {
                key: "lr".into(),
                old: Some("1".into()),
                new: Some("1.0".into())
            },
            RerunReason::ConfigChanged {
                key: "opt.name".into(),
                old: Some("\"sgd\"".into()),
                new: Some("\"adam\"".into())
            },
        ]
    );
    // The same through the edit API of a long-lived engine.
    world.run_default(&mut engine);
    engine.set_config("a", json!({"lr": 1.0, "opt": {"name": "adam"}, "new": true})).unwrap();
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::ConfigChanged { key: "new".into(), old: None, new: Some("true".into()) }]
    );
}

#[test]
fn plan_names_a_resource_changed_through_a_dependency() {
    let world = World::new();
    let job = |libc: &str| {
        Job::builder("j")
            .resource(Resource::new("libc").code_version(libc))
            .resource(
                Resource::new("python")
                    .code_version("3.11")
                    .config(json!({"opt": 1}))
                    .depends_on("libc"),
            )
            .op(op("a", &[]).resource("python"))
            .build()
            .unwrap()
    };
    world.run_default(&mut Engine::new(job("2.39")));
    let mut engine = Engine::new(job("2.40"));
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::ResourceChanged {
            resource: "python".into(),
            cause: ResourceCause::Dependency { dependency: "libc".into() }
        }]
    );
    world.run_default(&mut engine);
    engine.set_resource_config("python", json!({"opt": 2})).unwrap();
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::ResourceChanged {
            resource: "python".into(),
            cause: ResourceCause::Config {
                key: "opt".into(),
                old: Some("1".into()),
                new: Some("2".into())
            }
        }]
    );
    world.run_default(&mut engine);
    engine.set_resource_code_version("libc", Some("2.41".into())).unwrap();
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::ResourceChanged {
            resource: "python".into(),
            cause: ResourceCause::Dependency { dependency: "libc".into() }
        }]
    );
    world.run_default(&mut engine);
    engine.set_resource_code_version("python", Some("3.12".into())).unwrap();
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::ResourceChanged {
            resource: "python".into(),
            cause: ResourceCause::Code { old: Some("3.11".into()), new: Some("3.12".into()) }
        }]
    );
}

#[test]
fn plan_names_the_env_var() {
    let world = World::new();
    let job = Job::builder("j").op(op("a", &[]).env("LANG")).op(op("b", &[])).build().unwrap();
    let mut engine = Engine::new(job);
    engine.set_env("LANG", Some("C".into()));
    world.run_default(&mut engine);
    engine.set_env("LANG", Some("en_US".into()));
    let plan = world.plan(&mut engine);
    assert_eq!(
        reasons(&plan, "a"),
        [RerunReason::EnvChanged {
            name: "LANG".into(),
            old: Some("C".into()),
            new: Some("en_US".into())
        }]
    );
    assert!(matches!(plan.step("b").unwrap().plan, StepPlan::Hit { .. }));
    engine.set_env("LANG", None);
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::EnvChanged { name: "LANG".into(), old: Some("C".into()), new: None }]
    );
}

#[test]
fn plan_names_the_changed_input() {
    let world = World::new();
    let job = Job::builder("j")
        .op(Op::new("read")
            .input_at("raw", InputFrom::source("data.csv"), "data.csv")
            .output("out")
            .code_version("1")
            .compute(|ctx| {
                ctx.set_output_bytes("out", ctx.input_path("raw").unwrap_or("").as_bytes().to_vec())
            }))
        .build()
        .unwrap();
    let mut engine = Engine::new(job);
    engine.set_source("data.csv", DataVersion::of_bytes(b"1,2")).unwrap();
    world.run_default(&mut engine);
    engine.set_source("data.csv", DataVersion::of_bytes(b"1,3")).unwrap();
    assert_eq!(
        reasons(&world.plan(&mut engine), "read"),
        [RerunReason::InputChanged {
            input: "raw".into(),
            from: "source data.csv".into(),
            path: Some("data.csv".into())
        }]
    );
    assert!(engine.set_source("nope", DataVersion::of_bytes(b"")).is_err());
}

#[test]
fn plan_without_a_source_version_is_a_clear_error() {
    let world = World::new();
    let job =
        Job::builder("j").op(op("a", &[]).input("raw", InputFrom::source("s"))).build().unwrap();
    let mut engine = Engine::new(job);
    let err = engine.plan(&world.io, &world.traces, &RunOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "missing input: source `s` (read by step `a`) has no data version");
}

#[test]
fn plan_names_the_changed_upstream_output_after_it_ran() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    engine.set_config("a", json!(2)).unwrap();
    let (report, events) = world.run(&mut engine, &RunOptions::default());
    assert_eq!(report.ran(), ["a", "b", "c", "d"]);
    let b_reasons = events.iter().find_map(|e| match e {
        RunEvent::Started { step, reasons } if step == "b" => Some(reasons.clone()),
        _ => None,
    });
    assert_eq!(
        b_reasons.unwrap(),
        [RerunReason::InputChanged { input: "a".into(), from: "a.out".into(), path: None }]
    );
}

#[test]
fn plan_names_the_code_version_and_code_file() {
    let world = World::new();
    let job = |code: &str| Job::builder("j").op(op("a", &[]).code_version(code)).build().unwrap();
    world.run_default(&mut Engine::new(job("1")));
    let mut engine = Engine::new(job("2"));
    assert_eq!(
        reasons(&world.plan(&mut engine), "a"),
        [RerunReason::CodeVersionChanged { old: Some("1".into()), new: Some("2".into()) }]
    );
    let scripted = |script: &[u8]| {
        Job::builder("j")
            .op(Op::new("s")
                .output("out")
                .source_text("python train.py")
                .code_file("train.py", DataVersion::of_bytes(script))
                .compute(|ctx| ctx.set_output_bytes("out", vec![])))
            .build()
            .unwrap()
    };
    world.run_default(&mut Engine::new(scripted(b"v1")));
    let mut engine = Engine::new(scripted(b"v2"));
    assert_eq!(
        reasons(&world.plan(&mut engine), "s"),
        [RerunReason::CodeFileChanged {
            path: "train.py".into(),
            change: trove::FileChange::Modified
        }]
    );
}

// ---- Version strategies ------------------------------------------------

fn source_fn_job(variant: u8) -> Job {
    let op = Op::new("f").output("out");
    let op = if variant == 0 {
        op.source_fn(trove::source_fn!(
            |ctx: &mut OpContext<'_>| ctx.set_output_bytes("out", vec![1])
        ))
    } else {
        op.source_fn(trove::source_fn!(
            |ctx: &mut OpContext<'_>| ctx.set_output_bytes("out", vec![2])
        ))
    };
    Job::builder("j").op(op).build().unwrap()
}

#[test]
fn editing_a_source_fn_body_changes_its_version() {
    let v0 = Engine::new(source_fn_job(0)).output_versions("f").unwrap().unwrap();
    let again = Engine::new(source_fn_job(0)).output_versions("f").unwrap().unwrap();
    let v1 = Engine::new(source_fn_job(1)).output_versions("f").unwrap().unwrap();
    assert_eq!(v0, again);
    assert_ne!(v0, v1);
    let world = World::new();
    world.run_default(&mut Engine::new(source_fn_job(0)));
    assert_eq!(
        reasons(&world.plan(&mut Engine::new(source_fn_job(1))), "f"),
        [RerunReason::SourceTextChanged]
    );
}

/// A user strategy: the code version is the op's `rev` config key, and ops
/// without it are unversioned.
struct RevStrategy;

impl VersionStrategy for RevStrategy {
    fn op_code_version(&self, op: &Op) -> Option<CodeVersion> {
        let rev = op.config_value().get("rev")?.as_str()?;
        Some(CodeVersion(trove::Digest::of_bytes(rev.as_bytes())))
    }
    fn resource_code_version(&self, _: &Resource) -> Option<CodeVersion> {
        Some(CodeVersion(trove::Digest::of_bytes(b"resource")))
    }
}

#[test]
fn a_user_strategy_decides_versions_and_none_means_unversioned() {
    let job = Job::builder("j")
        .strategy(RevStrategy)
        .op(op("a", &[]).config(json!({"rev": "r1"})))
        .op(op("b", &[]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    assert!(engine.output_versions("a").unwrap().is_some());
    assert_eq!(engine.output_versions("b").unwrap(), None);
    world.run_default(&mut engine);
    assert_eq!(world.run_default(&mut engine).ran(), ["b"]);
}

#[test]
fn swapping_two_inputs_versions_changes_the_version() {
    let job = |x: &str, y: &str| {
        Job::builder("j")
            .op(Op::new("f")
                .input("left", InputFrom::source(x))
                .input("right", InputFrom::source(y))
                .output("out")
                .code_version("1"))
            .build()
            .unwrap()
    };
    let version = |x: &str, y: &str| {
        let mut engine = Engine::new(job(x, y));
        engine.set_source("p", DataVersion::of_bytes(b"p")).unwrap();
        engine.set_source("q", DataVersion::of_bytes(b"q")).unwrap();
        engine.output_versions("f").unwrap().unwrap()
    };
    assert_ne!(version("p", "q"), version("q", "p"));
}

#[test]
fn two_steps_with_equal_versions_never_serve_each_others_bytes() {
    // Same code version string, config and (no) inputs, different code.
    let job = Job::builder("j")
        .op(Op::new("one")
            .output("out")
            .code_version("1")
            .compute(|ctx| ctx.set_output_bytes("out", vec![1])))
        .op(Op::new("two")
            .output("out")
            .code_version("1")
            .compute(|ctx| ctx.set_output_bytes("out", vec![2])))
        .op(op("both", &["one", "two"]))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job.clone());
    world.run_default(&mut engine);
    let mut fresh = Engine::new(job);
    assert!(world.run_default(&mut fresh).ran().is_empty());
    let both = fresh.output_versions("both").unwrap().unwrap()[0];
    assert_eq!(world.io.get_output("both", "out", &both).unwrap(), b"null|\x01|\x02");
    // The step name is part of the version (scheme 2), so a store keyed by
    // version alone cannot mix the two up either.
    assert_ne!(
        fresh.output_versions("one").unwrap().unwrap(),
        fresh.output_versions("two").unwrap().unwrap()
    );
}

#[test]
fn a_step_without_outputs_runs_once_per_version() {
    let runs = Arc::new(AtomicUsize::new(0));
    let job = |config: Value, runs: Arc<AtomicUsize>| {
        Job::builder("j")
            .op(Op::new("notify").config(config).code_version("1").compute(move |_| {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }))
            .build()
            .unwrap()
    };
    let world = World::new();
    let plan = world.plan(&mut Engine::new(job(json!(1), Arc::clone(&runs))));
    assert_eq!(reasons(&plan, "notify"), [RerunReason::NoPreviousTrace]);
    world.run_default(&mut Engine::new(job(json!(1), Arc::clone(&runs))));
    world.run_default(&mut Engine::new(job(json!(1), Arc::clone(&runs))));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    world.run_default(&mut Engine::new(job(json!(2), Arc::clone(&runs))));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn a_corrupt_hit_is_detected_on_restore_and_its_step_runs_again() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    let a = engine.output_versions("a").unwrap().unwrap()[0];
    let good = world.io.get_output("a", "out", &a).unwrap();
    world.io.overwrite(a, b"evil".to_vec());
    let (report, events) = world.run(&mut engine, &RunOptions::default());
    assert_eq!(report.ran(), ["a"]);
    assert_eq!(report.counts.cut_off, 3);
    assert!(events.iter().any(|e| matches!(e, RunEvent::Warning { step, .. } if step == "a")));
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Started { step, reasons } if step == "a"
            && matches!(reasons.as_slice(), [RerunReason::OutputCorrupt { output, .. }] if output == "out")
    )));
    assert_eq!(world.io.get_output("a", "out", &a).unwrap(), good);
    assert!(world.run_default(&mut engine).ran().is_empty());
}

#[test]
fn run_tags_are_reported() {
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    let opts = RunOptions {
        tags: [("ci".to_owned(), "true".to_owned())].into(),
        run_id: "r1".into(),
        ..RunOptions::default()
    };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.tags, opts.tags);
    assert_eq!(report.run_id, "r1");
}

#[test]
fn several_workers_give_the_same_outcomes() {
    for jobs in [2, 3, 8] {
        let fail = Arc::new(AtomicBool::new(true));
        let world = World::new();
        let mut engine = Engine::new(failing_diamond(Arc::clone(&fail)));
        let opts = RunOptions { jobs, ..RunOptions::default() };
        let (report, events) = world.run(&mut engine, &opts);
        assert_eq!(report.status, RunStatus::Failed);
        assert_eq!(report.ran(), ["a", "c", "x"], "jobs={jobs}");
        assert_eq!(
            report.outcome("e"),
            Some(&StepOutcome::Skipped { failed_upstream: "b".into() })
        );
        assert_eq!(started(&events).len(), 4);
        fail.store(false, Ordering::SeqCst);
        assert_eq!(world.run(&mut engine, &opts).0.ran(), ["b", "d", "e"]);
    }
    // A wide job: many ready steps at once, more than the workers take.
    let mut builder = Job::builder("wide").op(op("root", &[]));
    for i in 0..64 {
        builder = builder.op(op(&format!("w{i}"), &["root"]).config(json!(i)));
    }
    let world = World::new();
    let mut engine = Engine::new(builder.build().unwrap());
    let opts = RunOptions { jobs: 2, ..RunOptions::default() };
    assert_eq!(world.run(&mut engine, &opts).0.counts.ran, 65);
    assert_eq!(world.run(&mut engine, &opts).0.counts.hit, 65);
}

#[test]
fn a_cancellation_raised_by_the_last_step_leaves_the_run_succeeded() {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let job = Job::builder("j")
        .op(op("a", &[]))
        .op(reading_a("last").compute(move |ctx| {
            flag.store(true, Ordering::SeqCst);
            ctx.set_output_bytes("out", vec![1])
        }))
        .build()
        .unwrap();
    let world = World::new();
    let mut engine = Engine::new(job);
    let opts = RunOptions { cancel: Some(cancel), jobs: 1, ..RunOptions::default() };
    let (report, _) = world.run(&mut engine, &opts);
    assert_eq!(report.ran(), ["a", "last"]);
    assert_eq!(report.status, RunStatus::Succeeded);
}

#[test]
fn plan_names_structural_changes() {
    let world = World::new();
    let before = Job::builder("j")
        .resource(Resource::new("gpu").code_version("1"))
        .op(op("a", &[]))
        .op(op("b", &[]))
        .op(op("c", &["a"]))
        .build()
        .unwrap();
    world.run_default(&mut Engine::new(before));
    let after = Job::builder("j")
        .resource(Resource::new("gpu").code_version("1"))
        .op(op("a", &[]))
        .op(op("b", &[]))
        // `c` now reads `b` under the same input name, requires `gpu`, and
        // has a second output.
        .op(Op::new("c")
            .input("a", InputFrom::output("b", "out"))
            .output("out")
            .output("extra")
            .resource("gpu")
            .code_version("1"))
        .build()
        .unwrap();
    let plan = world.plan(&mut Engine::new(after));
    assert_eq!(
        reasons(&plan, "c"),
        [
            RerunReason::ResourceAdded { resource: "gpu".into() },
            RerunReason::InputRewired {
                input: "a".into(),
                old: "a.out".into(),
                new: "b.out".into()
            },
            RerunReason::OutputsChanged {
                old: vec!["out".into()],
                new: vec!["extra".into(), "out".into()]
            },
        ]
    );
}

#[test]
fn plan_names_a_scheme_change() {
    use trove::TraceStore as _;
    let world = World::new();
    let mut engine = Engine::new(diamond().build().unwrap());
    world.run_default(&mut engine);
    // A trace written by an older trove: other scheme, other version.
    let mut old = world.traces.latest_trace("x").unwrap().unwrap();
    old.components.scheme = 0;
    old.op_version = trove::Digest::of_bytes(b"old");
    world.traces.commit_trace(old, Default::default()).unwrap();
    let x = engine.output_versions("x").unwrap().unwrap()[0];
    world.io.remove(&x);
    assert_eq!(
        reasons(&world.plan(&mut engine), "x"),
        [RerunReason::SchemeChanged { old: 0, new: trove::SCHEME_VERSION }]
    );
}

#[test]
fn engines_and_stores_move_between_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Engine>();
    send::<Job>();
    sync::<Job>();
    sync::<MemoryIoManager>();
    sync::<MemoryTraceStore>();
    let mut engine = Engine::new(diamond().build().unwrap());
    let report = std::thread::spawn(move || {
        let world = World::new();
        world.run_default(&mut engine)
    })
    .join()
    .unwrap();
    assert_eq!(report.counts.ran, 5);
}

/// Versions everything with one fixed code version, whatever the op says.
struct Fixed;

impl VersionStrategy for Fixed {
    fn op_code_version(&self, _: &Op) -> Option<CodeVersion> {
        Some(CodeVersion(trove::Digest::of_bytes(b"fixed")))
    }
    fn resource_code_version(&self, _: &Resource) -> Option<CodeVersion> {
        Some(CodeVersion(trove::Digest::of_bytes(b"fixed")))
    }
}

#[test]
fn a_version_change_no_component_shows_is_reported_as_such() {
    let world = World::new();
    world.run_default(&mut Engine::new(Job::builder("j").op(op("a", &[])).build().unwrap()));
    // Same op, same explicit string; another strategy decides the code version.
    let mut engine =
        Engine::new(Job::builder("j").strategy(Fixed).op(op("a", &[])).build().unwrap());
    assert_eq!(reasons(&world.plan(&mut engine), "a"), [RerunReason::VersionChanged]);
}

/// The steps downstream of an edit, cut out of the job with their upstream
/// outputs read from outside (`InputFrom::Outside`), get exactly the versions
/// the whole job gives them: so their stored outputs are hits, and what the
/// cut runs is stored where the whole job looks.
#[test]
fn a_job_cut_out_of_a_larger_one_versions_its_steps_as_the_whole_job_does() {
    use trove::TraceStore;
    let world = World::new();
    let mut whole = Engine::new(diamond().build().unwrap());
    world.run_default(&mut whole);
    let data =
        |step: &str| world.traces.latest_trace(step).unwrap().unwrap().outputs[0].data_version;
    let cut_d = || {
        op("d", &[])
            .input("b", InputFrom::outside("b.out", "b", "out"))
            .input("c", InputFrom::outside("c.out", "c", "out"))
    };
    let mut cut = Engine::new(Job::builder("diamond").op(cut_d()).build().unwrap());
    cut.set_source("b.out", data("b")).unwrap();
    cut.set_source("c.out", data("c")).unwrap();
    assert_eq!(cut.op_version("d").unwrap(), whole.op_version("d").unwrap());
    assert_eq!(cut.output_versions("d").unwrap(), whole.output_versions("d").unwrap());
    // As a source (not an output) the same data is another version.
    let as_sources =
        op("d", &[]).input("b", InputFrom::source("b.out")).input("c", InputFrom::source("c.out"));
    let mut sourced = Engine::new(Job::builder("diamond").op(as_sources).build().unwrap());
    sourced.set_source("b.out", data("b")).unwrap();
    sourced.set_source("c.out", data("c")).unwrap();
    assert_ne!(sourced.op_version("d").unwrap(), whole.op_version("d").unwrap());
    // Other upstream bytes, another version.
    cut.set_source("b.out", DataVersion::of_bytes(b"other")).unwrap();
    assert_ne!(cut.op_version("d").unwrap(), whole.op_version("d").unwrap());

    // Lineage mode cannot version such an input; one name cannot be both.
    let lineage = Job::builder("diamond").mode(trove::VersionMode::Lineage).op(cut_d()).build();
    let err = lineage.unwrap_err().to_string();
    assert!(err.contains("step `d` reads `b.out` from outside the job"), "{err}");
    let both = Job::builder("j")
        .op(op("d", &[]).input("b", InputFrom::outside("x", "b", "out")))
        .op(op("e", &[]).input("b", InputFrom::source("x")))
        .build();
    let err = both.unwrap_err().to_string();
    assert_eq!(err, "`x` is read both as a source and as an output from outside the job");
}

/// However the scheduler hands steps out (to workers, or running tiny ones
/// itself), no more than `jobs` run at once, and every step runs.
#[test]
fn no_more_than_jobs_steps_run_at_once() {
    for (jobs, micros) in [(2usize, 0u64), (2, 300), (3, 50)] {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut builder = Job::builder("wide");
        for i in 0..200 {
            let (running, peak) = (running.clone(), peak.clone());
            builder = builder.op(Op::new(format!("s{i}")).output("out").code_version("1").compute(
                move |ctx| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_micros(micros));
                    running.fetch_sub(1, Ordering::SeqCst);
                    ctx.set_output_bytes("out", b"x".to_vec())
                },
            ));
        }
        let world = World::new();
        let mut engine = Engine::new(builder.build().unwrap());
        let opts = RunOptions { jobs, ..RunOptions::default() };
        let (report, _) = world.run(&mut engine, &opts);
        assert_eq!(report.counts.ran, 200);
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= jobs, "{peak} steps ran at once with -j {jobs}");
    }
}
