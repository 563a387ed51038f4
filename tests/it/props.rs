//! Property tests of invariants 1 (*Sound*) and 2 (*Minimal*) on random
//! jobs and random edit sequences.
//!
//! A case is a random DAG of up to 40 steps (several outputs each, inputs
//! from earlier steps' outputs and from sources, resources with nested
//! dependencies, declared environment, some unversioned steps and some that
//! clamp their config so their bytes often stay identical) and a sequence of
//! edits. After every edit three sessions run:
//!
//! - the oracle: a fresh engine and fresh stores with memoization off;
//! - `fresh`: a new engine built from the edited job, over the same stores
//!   for the whole sequence (a new process per run);
//! - `live`: one long-lived engine that applies each edit through the edit
//!   API, over its own stores.
//!
//! *Sound*: both memoized sessions learn byte-identical outputs (equal data
//! versions, and the stored bytes hash to them) and the same versions as the
//! oracle. *Minimal*: a step runs if and only if it is unversioned or its
//! outputs' versions were never produced before (so were not stored); and
//! every step that ran had a changed version since the previous run.
//!
//! `PROPTEST_CASES` raises the case count for soak runs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;
use trove::{
    DataVersion, Engine, InputFrom, Job, MemoryIoManager, MemoryTraceStore, Op, OpContext,
    OpFailure, OutputVersion, Resource, RunEvent, RunOptions, RunStatus, VersionMode,
};

const ENV: [&str; 2] = ["E0", "E1"];

/// One resource: code version, config, dependencies (earlier resources).
#[derive(Clone)]
struct ResSpec {
    code: u8,
    config: i64,
    deps: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Outputs hash everything the step sees.
    Hash,
    /// Outputs depend only on `min(config, 2)` and the parity of the first
    /// input byte: edits often reproduce identical bytes.
    Clamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    /// Output `output` of step `step` (an earlier step).
    Step {
        step: usize,
        output: usize,
    },
    Source(usize),
}

#[derive(Clone)]
struct StepSpec {
    kind: Kind,
    /// `None`: unversioned.
    code: Option<u8>,
    config: i64,
    outputs: usize,
    inputs: Vec<In>,
    resources: Vec<usize>,
    env: Vec<usize>,
}

#[derive(Clone)]
struct Spec {
    lineage: bool,
    resources: Vec<ResSpec>,
    /// Source bytes, by index (`src0`, `src1`, ...).
    sources: Vec<u8>,
    steps: Vec<StepSpec>,
    env: [Option<u8>; 2],
}

#[derive(Clone)]
enum Edit {
    Config { step: usize, value: i64 },
    Code { step: usize, value: Option<u8> },
    ResourceConfig { resource: usize, value: i64 },
    ResourceCode { resource: usize, value: u8 },
    Env { var: usize, value: Option<u8> },
    Source { source: usize, value: u8 },
}

#[derive(Clone)]
struct Case {
    spec: Spec,
    edits: Vec<Edit>,
}

// ---- Debug: a failing case prints as a Rust literal ---------------------
//
// Paste it into `check_case(&...)` to make a regression test (see
// `clamped_upstream_cuts_off_its_downstream`).

/// Prints a slice as `vec![...]`.
struct VecLit<'a, T>(&'a [T]);

impl<T: fmt::Debug> fmt::Debug for VecLit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("vec!")?;
        f.debug_list().entries(self.0).finish()
    }
}

impl fmt::Debug for ResSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResSpec")
            .field("code", &self.code)
            .field("config", &self.config)
            .field("deps", &VecLit(&self.deps))
            .finish()
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Hash => "Kind::Hash",
            Kind::Clamp => "Kind::Clamp",
        })
    }
}

impl fmt::Debug for In {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            In::Step { step, output } => write!(f, "In::Step {{ step: {step}, output: {output} }}"),
            In::Source(s) => write!(f, "In::Source({s})"),
        }
    }
}

impl fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepSpec")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("config", &self.config)
            .field("outputs", &self.outputs)
            .field("inputs", &VecLit(&self.inputs))
            .field("resources", &VecLit(&self.resources))
            .field("env", &VecLit(&self.env))
            .finish()
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("lineage", &self.lineage)
            .field("resources", &VecLit(&self.resources))
            .field("sources", &VecLit(&self.sources))
            .field("steps", &VecLit(&self.steps))
            .field("env", &self.env)
            .finish()
    }
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Config { step, value } => {
                write!(f, "Edit::Config {{ step: {step}, value: {value} }}")
            }
            Edit::Code { step, value } => {
                write!(f, "Edit::Code {{ step: {step}, value: {value:?} }}")
            }
            Edit::ResourceConfig { resource, value } => {
                write!(f, "Edit::ResourceConfig {{ resource: {resource}, value: {value} }}")
            }
            Edit::ResourceCode { resource, value } => {
                write!(f, "Edit::ResourceCode {{ resource: {resource}, value: {value} }}")
            }
            Edit::Env { var, value } => write!(f, "Edit::Env {{ var: {var}, value: {value:?} }}"),
            Edit::Source { source, value } => {
                write!(f, "Edit::Source {{ source: {source}, value: {value} }}")
            }
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("spec", &self.spec)
            .field("edits", &VecLit(&self.edits))
            .finish()
    }
}

// ---- Strategies -------------------------------------------------------

/// A step before its indices are resolved: clamp?, code, config, outputs,
/// inputs `(upstream, output, from a source?)`, resources, env.
type RawStep = (bool, Option<u8>, i64, usize, Vec<(Index, Index, bool)>, Vec<Index>, Vec<Index>);

fn raw_step() -> impl Strategy<Value = RawStep> {
    (
        prop::bool::weighted(0.3),
        prop::option::weighted(0.9, 0u8..3),
        0i64..4,
        1usize..=3,
        prop::collection::vec((any::<Index>(), any::<Index>(), prop::bool::weighted(0.15)), 0..=3),
        prop::collection::vec(any::<Index>(), 0..=2),
        prop::collection::vec(any::<Index>(), 0..=1),
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop::collection::vec(
            (0u8..3, 0i64..3, prop::collection::vec(any::<Index>(), 0..=2)),
            0..=4,
        ),
        prop::collection::vec(0u8..3, 0..=2),
        prop::collection::vec(raw_step(), 1..=40),
        [prop::option::of(0u8..2), prop::option::of(0u8..2)],
    )
        .prop_map(|(lineage, raw_res, sources, raw_steps, env)| {
            let resources: Vec<ResSpec> = raw_res
                .into_iter()
                .enumerate()
                .map(|(i, (code, config, deps))| {
                    let mut deps: Vec<usize> =
                        if i == 0 { Vec::new() } else { deps.iter().map(|d| d.index(i)).collect() };
                    deps.sort_unstable();
                    deps.dedup();
                    ResSpec { code, config, deps }
                })
                .collect();
            let mut steps: Vec<StepSpec> = Vec::new();
            for (i, (clamp, code, config, outputs, inputs, res, env)) in
                raw_steps.into_iter().enumerate()
            {
                let mut ins = Vec::new();
                for (up, out, from_source) in inputs {
                    if (from_source || i == 0) && !sources.is_empty() {
                        ins.push(In::Source(up.index(sources.len())));
                    } else if i > 0 {
                        let step = up.index(i);
                        ins.push(In::Step { step, output: out.index(steps[step].outputs) });
                    }
                }
                let mut resources: Vec<usize> = if resources.is_empty() {
                    Vec::new()
                } else {
                    res.iter().map(|r| r.index(resources.len())).collect()
                };
                resources.sort_unstable();
                resources.dedup();
                let env = env.iter().map(|e| e.index(ENV.len())).collect();
                steps.push(StepSpec {
                    kind: if clamp { Kind::Clamp } else { Kind::Hash },
                    code,
                    config,
                    outputs,
                    inputs: ins,
                    resources,
                    env,
                });
            }
            Spec { lineage, resources, sources, steps, env }
        })
}

fn edit() -> impl Strategy<Value = (u8, Index, i64, Option<u8>)> {
    (0u8..6, any::<Index>(), 0i64..5, prop::option::weighted(0.85, 0u8..4))
}

fn case() -> impl Strategy<Value = Case> {
    (spec(), prop::collection::vec(edit(), 1..=8)).prop_map(|(spec, raw)| {
        let mut edits = Vec::new();
        for (kind, target, value, opt) in raw {
            let n_res = spec.resources.len();
            let n_src = spec.sources.len();
            let byte = opt.unwrap_or(0);
            edits.push(match kind {
                2 if n_res > 0 => Edit::ResourceConfig { resource: target.index(n_res), value },
                3 if n_res > 0 => Edit::ResourceCode { resource: target.index(n_res), value: byte },
                4 => Edit::Env { var: target.index(ENV.len()), value: opt },
                5 if n_src > 0 => Edit::Source { source: target.index(n_src), value: byte },
                1 => Edit::Code { step: target.index(spec.steps.len()), value: opt },
                _ => Edit::Config { step: target.index(spec.steps.len()), value },
            });
        }
        Case { spec, edits }
    })
}

// ---- The job a spec describes -----------------------------------------

fn step_name(i: usize) -> String {
    format!("s{i:02}")
}

/// Source bytes shared by the ops of every session (the "workspace").
type Workspace = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

fn source_bytes(value: u8) -> Vec<u8> {
    format!("source data {value}").into_bytes()
}

fn compute(
    kind: Kind,
    workspace: Workspace,
) -> impl Fn(&mut OpContext<'_>) -> Result<(), OpFailure> + Send + Sync {
    move |ctx| {
        let op = ctx.op().clone();
        let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
        for input in op.inputs() {
            let bytes = match &input.from {
                InputFrom::Source(name) | InputFrom::Outside { name, .. } => workspace
                    .lock()
                    .unwrap()
                    .get(name)
                    .cloned()
                    .ok_or_else(|| OpFailure::new(format!("no source {name}")))?,
                InputFrom::Output { .. } => ctx.input_bytes(&input.name)?.to_vec(),
            };
            inputs.push((input.name.to_string(), bytes));
        }
        inputs.sort();
        for (out_idx, output) in op.outputs().iter().enumerate() {
            let bytes = match kind {
                Kind::Clamp => {
                    let clamped = ctx.config().as_i64().unwrap_or(0).min(2);
                    let parity = inputs.first().and_then(|(_, b)| b.first()).map_or(0, |b| b % 2);
                    format!("clamp {clamped} {parity} {out_idx}").into_bytes()
                }
                Kind::Hash => {
                    let mut h = blake3::Hasher::new();
                    h.update(ctx.step().as_bytes());
                    h.update(output.name.as_bytes());
                    h.update(format!("{:?}", op.code().explicit).as_bytes());
                    h.update(ctx.config().to_string().as_bytes());
                    for name in op.env_names() {
                        h.update(format!("{name}={:?};", ctx.env(name)).as_bytes());
                    }
                    for name in op.resources() {
                        h.update(format!("{name}={:?};", ctx.resource_config(name)).as_bytes());
                    }
                    for (name, bytes) in &inputs {
                        h.update(name.as_bytes());
                        h.update(&(bytes.len() as u64).to_le_bytes());
                        h.update(bytes);
                    }
                    h.finalize().as_bytes()[..8].to_vec()
                }
            };
            ctx.set_output_bytes(&output.name, bytes)?;
        }
        Ok(())
    }
}

fn build(spec: &Spec, workspace: &Workspace) -> Job {
    let mut builder = Job::builder("props").mode(if spec.lineage {
        VersionMode::Lineage
    } else {
        VersionMode::EarlyCutoff
    });
    for (i, res) in spec.resources.iter().enumerate() {
        let mut r = Resource::new(format!("r{i}"))
            .code_version(res.code.to_string())
            .config(json!(res.config));
        for d in &res.deps {
            r = r.depends_on(format!("r{d}"));
        }
        builder = builder.resource(r);
    }
    for (i, step) in spec.steps.iter().enumerate() {
        let mut op = Op::new(step_name(i)).config(json!(step.config));
        if let Some(code) = step.code {
            op = op.code_version(code.to_string());
        }
        for o in 0..step.outputs {
            op = op.output(format!("o{o}"));
        }
        for (k, input) in step.inputs.iter().enumerate() {
            let from = match *input {
                In::Step { step, output } => {
                    InputFrom::output(step_name(step), format!("o{output}"))
                }
                In::Source(s) => InputFrom::source(format!("src{s}")),
            };
            op = op.input(format!("i{k}"), from);
        }
        for r in &step.resources {
            op = op.resource(format!("r{r}"));
        }
        for e in &step.env {
            op = op.env(ENV[*e]);
        }
        op = op.compute(compute(step.kind, Arc::clone(workspace)));
        builder = builder.op(op);
    }
    builder.build().unwrap()
}

fn env_value(v: Option<u8>) -> Option<String> {
    v.map(|v| format!("value{v}"))
}

/// Supplies the spec's sources and environment to an engine.
fn supply(engine: &mut Engine, spec: &Spec) {
    for (s, value) in spec.sources.iter().enumerate() {
        let name = format!("src{s}");
        if engine.job().sources().contains(&name) {
            engine.set_source(&name, DataVersion::of_bytes(&source_bytes(*value))).unwrap();
        }
    }
    for (e, value) in spec.env.iter().enumerate() {
        engine.set_env(ENV[e], env_value(*value));
    }
}

fn apply(spec: &mut Spec, workspace: &Workspace, edit: &Edit) {
    match *edit {
        Edit::Config { step, value } => spec.steps[step].config = value,
        Edit::Code { step, value } => spec.steps[step].code = value,
        Edit::ResourceConfig { resource, value } => spec.resources[resource].config = value,
        Edit::ResourceCode { resource, value } => spec.resources[resource].code = value,
        Edit::Env { var, value } => spec.env[var] = value,
        Edit::Source { source, value } => {
            spec.sources[source] = value;
            workspace.lock().unwrap().insert(format!("src{source}"), source_bytes(value));
        }
    }
}

fn apply_live(engine: &mut Engine, spec: &Spec, edit: &Edit) {
    match *edit {
        Edit::Config { step, value } => engine.set_config(&step_name(step), json!(value)).unwrap(),
        Edit::Code { step, value } => {
            engine.set_code_version(&step_name(step), value.map(|v| v.to_string())).unwrap()
        }
        Edit::ResourceConfig { resource, value } => {
            engine.set_resource_config(&format!("r{resource}"), json!(value)).unwrap()
        }
        Edit::ResourceCode { resource, value } => engine
            .set_resource_code_version(&format!("r{resource}"), Some(value.to_string()))
            .unwrap(),
        Edit::Env { var, value } => engine.set_env(ENV[var], env_value(value)),
        Edit::Source { source, .. } => {
            let name = format!("src{source}");
            if engine.job().sources().contains(&name) {
                let bytes = source_bytes(spec.sources[source]);
                engine.set_source(&name, DataVersion::of_bytes(&bytes)).unwrap();
            }
        }
    }
}

// ---- Sessions -------------------------------------------------------------

/// What one run learnt: per step, its outputs' data versions and versions.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Learnt {
    data: Vec<Vec<Option<DataVersion>>>,
    versions: Vec<Option<Vec<OutputVersion>>>,
    ran: BTreeSet<usize>,
}

fn run(
    engine: &mut Engine,
    io: &MemoryIoManager,
    traces: &MemoryTraceStore,
    memoize: bool,
) -> Learnt {
    let opts = RunOptions { memoize, jobs: 2, ..RunOptions::default() };
    let mut ran = BTreeSet::new();
    let job = engine.job().clone();
    let report = engine
        .run(io, traces, &opts, &mut |e| {
            if let RunEvent::Started { step, .. } = e {
                ran.insert(job.step_index(step).unwrap());
            }
        })
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let n = job.len();
    let mut data = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    for i in 0..n {
        let name = step_name(i);
        data.push(engine.output_data(&name).unwrap());
        let v = engine.output_versions(&name).unwrap();
        // Stored bytes hash to their data version.
        if let Some(v) = &v {
            for (o, version) in v.iter().enumerate() {
                let bytes = io.get_output(&name, &format!("o{o}"), version).unwrap();
                assert_eq!(Some(DataVersion::of_bytes(&bytes)), data[i][o], "{name}.o{o}");
            }
        }
        versions.push(v);
    }
    Learnt { data, versions, ran }
}

/// A memoized session and what it has produced so far.
struct Memo {
    io: MemoryIoManager,
    traces: MemoryTraceStore,
    seen: HashSet<(usize, Vec<OutputVersion>)>,
    last: Option<Learnt>,
}

impl Memo {
    fn new() -> Memo {
        Memo {
            io: MemoryIoManager::new(),
            traces: MemoryTraceStore::new(),
            seen: HashSet::new(),
            last: None,
        }
    }

    /// Runs and checks soundness against the oracle and minimality.
    fn check(
        &mut self,
        engine: &mut Engine,
        oracle: &Learnt,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let learnt = run(engine, &self.io, &self.traces, true);
        prop_assert_eq!(&learnt.data, &oracle.data, "{}: outputs differ from the oracle's", what);
        prop_assert_eq!(&learnt.versions, &oracle.versions, "{}: versions differ", what);
        for (i, versions) in learnt.versions.iter().enumerate() {
            let expected = match versions {
                None => true,
                Some(v) => !self.seen.contains(&(i, v.clone())),
            };
            prop_assert_eq!(
                learnt.ran.contains(&i),
                expected,
                "{}: step {} ran={} but unversioned-or-new={}",
                what,
                step_name(i),
                learnt.ran.contains(&i),
                expected
            );
            if let (Some(last), true) = (&self.last, learnt.ran.contains(&i)) {
                prop_assert!(
                    versions.is_none() || last.versions[i] != *versions,
                    "{}: step {} ran with an unchanged version",
                    what,
                    step_name(i)
                );
            }
            if let Some(v) = versions {
                self.seen.insert((i, v.clone()));
            }
        }
        self.last = Some(learnt);
        Ok(())
    }
}

fn oracle(spec: &Spec, workspace: &Workspace) -> Learnt {
    let mut engine = Engine::new(build(spec, workspace));
    supply(&mut engine, spec);
    run(&mut engine, &MemoryIoManager::new(), &MemoryTraceStore::new(), false)
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let mut spec = case.spec.clone();
    let workspace: Workspace = Arc::new(Mutex::new(
        spec.sources
            .iter()
            .enumerate()
            .map(|(s, v)| (format!("src{s}"), source_bytes(*v)))
            .collect(),
    ));
    let mut fresh = Memo::new();
    let mut live = Memo::new();
    let mut live_engine = Engine::new(build(&spec, &workspace));
    supply(&mut live_engine, &spec);

    let expected = oracle(&spec, &workspace);
    let mut engine = Engine::new(build(&spec, &workspace));
    supply(&mut engine, &spec);
    fresh.check(&mut engine, &expected, "first run (fresh)")?;
    live.check(&mut live_engine, &expected, "first run (live)")?;

    for (n, edit) in case.edits.iter().enumerate() {
        apply(&mut spec, &workspace, edit);
        apply_live(&mut live_engine, &spec, edit);
        let expected = oracle(&spec, &workspace);
        let mut engine = Engine::new(build(&spec, &workspace));
        supply(&mut engine, &spec);
        fresh.check(&mut engine, &expected, &format!("edit {n} {edit:?} (fresh engine)"))?;
        live.check(&mut live_engine, &expected, &format!("edit {n} {edit:?} (long-lived engine)"))?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, max_shrink_iters: 2000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn memoized_runs_are_sound_and_minimal(case in case()) {
        check_case(&case)?;
    }
}

/// Lineage mode and early cutoff on the same edit sequences, forced.
#[test]
fn memoized_runs_are_sound_and_minimal_in_both_modes() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: config().cases / 2 + 1,
        ..config()
    });
    runner
        .run(&case(), |mut case| {
            for lineage in [false, true] {
                case.spec.lineage = lineage;
                check_case(&case)?;
            }
            Ok(())
        })
        .unwrap();
}

/// A hand-written case: an upstream that clamps its config, so an edit
/// reproduces identical bytes, with a resource chain and an unversioned step.
#[test]
fn clamped_upstream_cuts_off_its_downstream() {
    let spec = Spec {
        lineage: false,
        resources: vec![
            ResSpec { code: 0, config: 0, deps: vec![] },
            ResSpec { code: 0, config: 0, deps: vec![0] },
        ],
        sources: vec![1],
        steps: vec![
            StepSpec {
                kind: Kind::Clamp,
                code: Some(0),
                config: 3,
                outputs: 1,
                inputs: vec![In::Source(0)],
                resources: vec![1],
                env: vec![],
            },
            StepSpec {
                kind: Kind::Hash,
                code: Some(0),
                config: 0,
                outputs: 2,
                inputs: vec![In::Step { step: 0, output: 0 }],
                resources: vec![],
                env: vec![0],
            },
            StepSpec {
                kind: Kind::Hash,
                code: None,
                config: 0,
                outputs: 1,
                inputs: vec![In::Step { step: 1, output: 1 }],
                resources: vec![],
                env: vec![],
            },
            StepSpec {
                kind: Kind::Hash,
                code: Some(1),
                config: 0,
                outputs: 1,
                inputs: vec![In::Step { step: 2, output: 0 }],
                resources: vec![],
                env: vec![],
            },
        ],
        env: [Some(0), None],
    };
    let edits = vec![
        Edit::Config { step: 0, value: 4 },
        Edit::ResourceConfig { resource: 0, value: 1 },
        Edit::Source { source: 0, value: 3 },
        Edit::Env { var: 0, value: None },
        Edit::Code { step: 2, value: Some(1) },
        Edit::Code { step: 2, value: None },
    ];
    for lineage in [false, true] {
        let case = Case { spec: Spec { lineage, ..spec.clone() }, edits: edits.clone() };
        check_case(&case).unwrap();
    }
}

/// The `Debug` of a case is the Rust literal that builds it.
#[test]
fn a_case_prints_as_a_rust_literal() {
    let case = Case {
        spec: Spec {
            lineage: false,
            resources: vec![ResSpec { code: 0, config: 1, deps: vec![] }],
            sources: vec![2],
            steps: vec![StepSpec {
                kind: Kind::Clamp,
                code: None,
                config: 0,
                outputs: 1,
                inputs: vec![In::Source(0)],
                resources: vec![0],
                env: vec![],
            }],
            env: [Some(1), None],
        },
        edits: vec![Edit::Code { step: 0, value: Some(1) }, Edit::Env { var: 1, value: None }],
    };
    assert_eq!(
        format!("{case:?}"),
        "Case { spec: Spec { lineage: false, resources: vec![ResSpec { code: 0, config: 1, deps: vec![] }], \
         sources: vec![2], steps: vec![StepSpec { kind: Kind::Clamp, code: None, config: 0, outputs: 1, \
         inputs: vec![In::Source(0)], resources: vec![0], env: vec![] }], env: [Some(1), None] }, \
         edits: vec![Edit::Code { step: 0, value: Some(1) }, Edit::Env { var: 1, value: None }] }"
    );
    check_case(&case).unwrap();
}
