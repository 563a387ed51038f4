//! Planning and running: resolves each step to hit or run, then runs stale
//! steps on rayon as soon as their inputs are ready.
//!
//! One coordinator (the calling thread) owns the version graph; `jobs`
//! workers on a rayon pool load inputs, run the op and store outputs through
//! the IO manager, then report back over a channel. The coordinator runs a
//! step itself only when no other could run beside it (`jobs == 1`, or one
//! step ready and none running), which saves two thread hand-offs per step
//! of a chain, and while steps are tiny and the pool is idle ([`Pace`]).
//! Ready steps start lowest index first, so one worker runs the job in its
//! topological order. The coordinator learns the new
//! data versions, commits the trace, and re-checks the downstream steps
//! whose inputs are now all known — a downstream whose version is unchanged
//! is *cut off* (a hit after all). Planning is the same resolution without
//! execution: what cannot be known before upstream steps run is `Waiting`.
//!
//! Failure of one step skips only its downstream; independent branches go
//! on (unless fail-fast), and every success stays recorded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use smallvec::SmallVec;

use crate::db::OpVersion;
use crate::engine::Engine;
use crate::error::PlanError;
use crate::event::{
    RunCounts, RunEvent, RunOptions, RunReport, RunStatus, StepOutcome, StepReport,
};
use crate::io_manager::{IoManager, OutputContext, OutputValue, Restore, StoredOutput};
use crate::job::{InputEdge, Job, OpContext, StepIdx, VersionMode};
use crate::name::Name;
use crate::plan::{Plan, PlannedStep, RerunReason, StepPlan, compute_reasons};
use crate::trace::{
    StepFailure, StepLog, Trace, TraceError, TraceOutput, TraceStore, VersionComponents,
};
use crate::version::{DataVersion, Digest, OutputVersion};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unselected,
    /// Version not resolved yet (early cutoff: waiting on upstream data).
    Pending,
    /// Must run; waits until every upstream step is hit or done.
    NeedsRun,
    Queued,
    Running,
    Hit,
    CutOff,
    Done,
    Failed,
    Skipped,
}

impl State {
    fn is_available(self) -> bool {
        matches!(self, State::Hit | State::CutOff | State::Done)
    }
}

/// What a worker sends back.
enum WorkerResult {
    Done {
        idx: StepIdx,
        /// The reasons the step ran with (they travel with its work).
        reasons: Vec<RerunReason>,
        stored: SmallVec<[StoredOutput; 1]>,
        duration: Duration,
        log: StepLog,
    },
    Failed {
        idx: StepIdx,
        message: String,
        exit_code: Option<i32>,
        duration: Duration,
        log: StepLog,
    },
    InputMiss {
        idx: StepIdx,
        upstream: StepIdx,
        output: usize,
        message: String,
    },
}

impl WorkerResult {
    /// A step that failed before its op ran: no exit code, no time, no log.
    fn failed_unrun(idx: StepIdx, message: String) -> WorkerResult {
        WorkerResult::Failed {
            idx,
            message,
            exit_code: None,
            duration: Duration::ZERO,
            log: StepLog::default(),
        }
    }
}

/// Hashes step indices (small integers the runner made, not user data) with
/// one multiplication instead of SipHash.
#[derive(Default)]
struct IdxHasher(u64);

impl Hasher for IdxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Why a step's stored outputs cannot be used.
enum Miss {
    /// A step without outputs has no trace at this version.
    NoTrace,
    /// The output at this index is not stored (its name is copied only if
    /// this becomes the reason shown).
    Missing(usize),
    /// A stored output failed verification.
    Corrupt(RerunReason),
}

/// One input of a step's work, wired to an upstream output.
struct WorkInput {
    /// Its index in `op.inputs()`.
    input: usize,
    upstream: StepIdx,
    output: usize,
    version: OutputVersion,
    stored: StoredOutput,
}

/// What a worker needs to run one step.
struct StepWork {
    idx: StepIdx,
    /// The inputs wired to upstream outputs.
    inputs: SmallVec<[WorkInput; 2]>,
    /// `(index into op.inputs(), data version)` of the source inputs, as
    /// the step's version saw them (those read at a path are checked again
    /// after the step ran).
    sources: SmallVec<[(usize, DataVersion); 1]>,
    /// Output versions, in declaration order.
    outputs: SmallVec<[OutputVersion; 1]>,
    env: BTreeMap<String, Option<String>>,
    /// Why the step runs (moved here at launch, back with its result).
    reasons: Vec<RerunReason>,
}

struct Runner<'a> {
    engine: &'a mut Engine,
    io: &'a dyn IoManager,
    traces: &'a dyn TraceStore,
    opts: &'a RunOptions,
    execute: bool,
    lineage: bool,
    state: Vec<State>,
    op_versions: Vec<Option<(Digest, bool)>>,
    /// Per resolved step: its outputs' versions, in declaration order, all
    /// steps' outputs in one list (indexed like `stored`).
    versions: Vec<OutputVersion>,
    reasons: Vec<Vec<RerunReason>>,
    /// Version components of steps resolved to run and not yet finished
    /// (a map, not a slot per step: a few hundred bytes per step of a large
    /// job would be allocated and zeroed up front for nothing).
    components: HashMap<StepIdx, VersionComponents, BuildHasherDefault<IdxHasher>>,
    /// What the IO manager holds of each output, all steps' outputs in one
    /// list: step `idx`'s outputs start at `first_output[idx]`.
    stored: Vec<Option<StoredOutput>>,
    first_output: Vec<usize>,
    unresolved_up: Vec<u32>,
    ran_upstream: Vec<bool>,
    restored: Vec<Vec<String>>,
    /// Steps re-waiting on an upstream whose stored output turned out bad.
    rewait: BTreeMap<StepIdx, Vec<StepIdx>>,
    rerun_after_hit: Vec<bool>,
    /// Steps whose inputs are known, lowest index (topological order) first.
    to_resolve: BinaryHeap<Reverse<StepIdx>>,
    /// Steps ready to start, lowest index first: with one worker, steps run
    /// in the job's topological order.
    ready: BinaryHeap<Reverse<StepIdx>>,
    outcomes: Vec<Option<StepOutcome>>,
    /// A step failed after the run was cancelled: most likely the same
    /// interruption reached its command (a terminal's Ctrl-C signals the
    /// whole process group), so the run counts as cancelled, not failed.
    failed_while_cancelled: bool,
    /// A step failed before it started (its stored output could not be
    /// restored) and the run is fail-fast: start nothing more.
    stop_requested: bool,
    counts: RunCounts,
    /// The run id, shared by every trace of the run.
    run_id: Name,
}

fn output_ctx<'j>(
    job: &'j Job,
    idx: StepIdx,
    out: usize,
    version: OutputVersion,
    run_id: &'j str,
) -> OutputContext<'j> {
    let spec = &job.step(idx).outputs()[out];
    OutputContext {
        step: job.step(idx).name(),
        output: &spec.name,
        version,
        path: spec.path.as_deref(),
        run_id,
    }
}

impl<'a> Runner<'a> {
    fn new(
        engine: &'a mut Engine,
        io: &'a dyn IoManager,
        traces: &'a dyn TraceStore,
        opts: &'a RunOptions,
        execute: bool,
    ) -> Result<Runner<'a>, PlanError> {
        engine.check_sources()?;
        let job = engine.job.clone();
        let n = job.len();
        let selected = select(&job, opts)?;
        let mut state = vec![State::Unselected; n];
        let mut unresolved_up = vec![0u32; n];
        for idx in 0..n {
            if selected[idx] {
                state[idx] = State::Pending;
                unresolved_up[idx] = job.upstream(idx).len() as u32;
            }
        }
        let lineage = job.mode() == VersionMode::Lineage;
        let first_output = job.output_offsets();
        let n_outputs = first_output[n];
        Ok(Runner {
            engine,
            io,
            traces,
            opts,
            execute,
            lineage,
            state,
            op_versions: vec![None; n],
            versions: vec![OutputVersion(Digest([0; 32])); n_outputs],
            reasons: vec![Vec::new(); n],
            components: HashMap::default(),
            stored: vec![None; n_outputs],
            first_output,
            unresolved_up,
            ran_upstream: vec![false; n],
            restored: vec![Vec::new(); n],
            rewait: BTreeMap::new(),
            rerun_after_hit: vec![false; n],
            to_resolve: BinaryHeap::new(),
            ready: BinaryHeap::new(),
            // Outcomes are for runs (a plan reads only states): a plan of a
            // large job does not allocate and fill one slot per step.
            outcomes: if execute { vec![None; n] } else { Vec::new() },
            failed_while_cancelled: false,
            stop_requested: false,
            counts: RunCounts::default(),
            run_id: Name::from(opts.run_id.as_str()),
        })
    }

    fn job(&self) -> Job {
        self.engine.job.clone()
    }

    /// Resolves what can be resolved before anything runs.
    fn start(&mut self, events: &mut dyn FnMut(&RunEvent)) -> Result<(), PlanError> {
        // Output slots keep the data versions of earlier runs: a step is
        // resolved only once every upstream step is a hit or done in *this*
        // run, and each of those sets its slots first, so no stale slot is
        // ever read; keeping them lets a long-lived engine re-verify versions
        // instead of recomputing them.
        for idx in 0..self.state.len() {
            if self.state[idx] != State::Pending {
                continue;
            }
            if self.lineage || self.unresolved_up[idx] == 0 {
                self.to_resolve.push(Reverse(idx));
                self.drain(events)?;
            }
        }
        Ok(())
    }

    fn drain(&mut self, events: &mut dyn FnMut(&RunEvent)) -> Result<(), PlanError> {
        while let Some(Reverse(idx)) = self.to_resolve.pop() {
            if self.state[idx] == State::Pending {
                self.resolve(idx, events)?;
            }
        }
        Ok(())
    }

    /// What the IO manager holds of a step's outputs, in declaration order.
    fn stored(&self, idx: StepIdx) -> &[Option<StoredOutput>] {
        &self.stored[self.first_output[idx]..self.first_output[idx + 1]]
    }

    fn stored_mut(&mut self, idx: StepIdx) -> &mut [Option<StoredOutput>] {
        &mut self.stored[self.first_output[idx]..self.first_output[idx + 1]]
    }

    /// The output versions of a resolved step (computed once, in `resolve`).
    fn output_versions(&self, idx: StepIdx) -> &[OutputVersion] {
        &self.versions[self.first_output[idx]..self.first_output[idx + 1]]
    }

    fn resolve(
        &mut self,
        idx: StepIdx,
        events: &mut dyn FnMut(&RunEvent),
    ) -> Result<(), PlanError> {
        let job = self.job();
        let name = job.step(idx).name();
        let (op_version, unversioned) = match self.engine.graph.op_version(idx) {
            OpVersion::Versioned(v) => (v, false),
            OpVersion::Unversioned => {
                (self.engine.unversioned_op_version(idx, &self.opts.run_id), true)
            }
            OpVersion::Waiting => {
                return Err(PlanError::Internal(format!(
                    "step `{name}` resolved before its inputs were known"
                )));
            }
        };
        self.op_versions[idx] = Some((op_version, unversioned));
        let versions = &mut self.versions[self.first_output[idx]..self.first_output[idx + 1]];
        if unversioned {
            self.engine.output_versions_of(idx, op_version, versions);
        } else {
            self.engine.cached_output_versions(idx, op_version, versions);
        }
        self.components.remove(&idx);
        let reasons = if unversioned {
            vec![RerunReason::Unversioned]
        } else if self.opts.force.contains(name) {
            vec![RerunReason::Forced]
        } else if !self.opts.memoize {
            vec![RerunReason::MemoDisabled]
        } else {
            let versions: SmallVec<[OutputVersion; 2]> =
                SmallVec::from_slice(self.output_versions(idx));
            // Found outputs go straight into the step's slots (empty until
            // now: a step is resolved only while pending, before it has hit
            // or run in this run); a miss empties them again.
            let base = self.first_output[idx];
            let mut missing = None;
            let mut previous = None;
            if versions.is_empty() {
                // Nothing stored to look up: a step without outputs is done
                // when its last trace is at this version.
                let trace = self
                    .traces
                    .latest_trace(name)
                    .map_err(|source| PlanError::Trace { step: name.to_owned(), source })?;
                if !trace.as_ref().is_some_and(|t| !t.unversioned && t.op_version == op_version) {
                    missing = Some(Miss::NoTrace);
                }
                previous = Some(trace);
            }
            for (out, &version) in versions.iter().enumerate() {
                let ctx = output_ctx(&job, idx, out, version, &self.opts.run_id);
                match self.io.has_output(&ctx) {
                    Ok(Some(s)) => self.stored[base + out] = Some(s),
                    Ok(None) => {
                        missing = Some(Miss::Missing(out));
                        break;
                    }
                    Err(e) if e.is_miss() => {
                        missing = Some(Miss::Corrupt(RerunReason::OutputCorrupt {
                            output: ctx.output.to_owned(),
                            detail: e.to_string(),
                        }));
                        break;
                    }
                    Err(source) => return Err(PlanError::Io { step: name.to_owned(), source }),
                }
            }
            if missing.is_none() && self.execute {
                for (out, &version) in versions.iter().enumerate() {
                    let ctx = output_ctx(&job, idx, out, version, &self.opts.run_id);
                    let Some(stored) = self.stored[base + out] else {
                        return Err(PlanError::Internal(format!(
                            "step `{name}` output {out} found but not recorded"
                        )));
                    };
                    match self.io.restore(&ctx, &stored) {
                        Ok(Restore::Present) => {}
                        Ok(Restore::Restored) => self.restored[idx].push(ctx.output.to_owned()),
                        Err(e) if e.is_miss() => {
                            events(&RunEvent::Warning {
                                step: job.step(idx).shared_name().clone(),
                                message: format!("{e}; the step runs again"),
                            });
                            missing = Some(Miss::Corrupt(RerunReason::OutputCorrupt {
                                output: ctx.output.to_owned(),
                                detail: e.to_string(),
                            }));
                            break;
                        }
                        Err(source) => {
                            // The workspace cannot take the stored output (a
                            // file where its directory must go, no space):
                            // the step fails, like a command that cannot
                            // write it; the rest of the run goes on.
                            let message = format!("output {}: {source}", ctx.output);
                            self.stored_mut(idx).fill(None);
                            let failed = WorkerResult::failed_unrun(idx, message);
                            self.stop_requested |= self.handle(failed, events)?;
                            return Ok(());
                        }
                    }
                }
            }
            match missing {
                None => {
                    self.mark_hit(idx, events);
                    return Ok(());
                }
                Some(missing) => {
                    self.stored_mut(idx).fill(None);
                    let components = self.engine.components(idx);
                    let previous = match previous {
                        Some(trace) => trace,
                        None => self
                            .traces
                            .latest_trace(name)
                            .map_err(|source| PlanError::Trace { step: name.to_owned(), source })?,
                    };
                    let mut reasons = compute_reasons(previous.as_ref(), &components);
                    self.components.insert(idx, components);
                    if let Miss::Corrupt(corrupt) = missing {
                        reasons.push(corrupt);
                    } else if reasons.is_empty() {
                        // The components read the same: either the version is
                        // the traced one and an output is gone, or something
                        // the components do not show changed it.
                        let same_version = previous
                            .as_ref()
                            .is_some_and(|t| !t.unversioned && t.op_version == op_version);
                        reasons.push(match missing {
                            Miss::Missing(out) if same_version => RerunReason::OutputMissing {
                                output: job.step(idx).outputs()[out].name.to_string(),
                            },
                            _ => RerunReason::VersionChanged,
                        });
                    }
                    reasons
                }
            }
        };
        if !self.components.contains_key(&idx) {
            self.components.insert(idx, self.engine.components(idx));
        }
        self.reasons[idx] = reasons;
        self.state[idx] = State::NeedsRun;
        if self.unresolved_up[idx] == 0 {
            self.state[idx] = State::Queued;
            self.ready.push(Reverse(idx));
        }
        Ok(())
    }

    /// A resolved step whose outputs are all stored (recorded in its slots).
    fn mark_hit(&mut self, idx: StepIdx, events: &mut dyn FnMut(&RunEvent)) {
        let restored = std::mem::take(&mut self.restored[idx]);
        self.counts.restored += restored.len();
        let cut_off = self.ran_upstream[idx];
        let base = self.first_output[idx];
        for out in 0..self.first_output[idx + 1] - base {
            let data = self.stored[base + out].map(|s| s.data_version);
            self.engine.graph.set_slot(idx, out, data);
        }
        if cut_off {
            self.state[idx] = State::CutOff;
            self.counts.cut_off += 1;
        } else {
            self.state[idx] = State::Hit;
            self.counts.hit += 1;
        }
        // Events and outcomes are for runs; a plan only needs the states.
        if self.execute {
            let step = self.engine.job.step(idx).shared_name().clone();
            // The restored list goes into the event and on to the outcome.
            let event = if cut_off {
                RunEvent::CutOff { step, restored }
            } else {
                RunEvent::Hit { step, restored }
            };
            events(&event);
            self.outcomes[idx] = Some(match event {
                RunEvent::CutOff { restored, .. } => StepOutcome::CutOff { restored },
                RunEvent::Hit { restored, .. } => StepOutcome::Hit { restored },
                _ => StepOutcome::NotRun,
            });
        }
        // A step that waited on a re-run passes the wait on: its downstream
        // steps are cut off too if they turn out unchanged.
        self.propagate(idx, cut_off);
    }

    /// A step's outputs are available: downstream steps may resolve or start.
    fn propagate(&mut self, idx: StepIdx, ran: bool) {
        let job = self.job();
        let again = std::mem::take(&mut self.rerun_after_hit[idx]);
        let rewaiting;
        let targets: &[StepIdx] = if again {
            rewaiting = self.rewait.remove(&idx).unwrap_or_default();
            &rewaiting
        } else {
            job.downstream(idx)
        };
        for &d in targets {
            if self.state[d] == State::Unselected {
                continue;
            }
            if ran {
                self.ran_upstream[d] = true;
            }
            self.unresolved_up[d] = self.unresolved_up[d].saturating_sub(1);
            if self.unresolved_up[d] == 0 {
                match self.state[d] {
                    State::Pending => self.to_resolve.push(Reverse(d)),
                    State::NeedsRun => {
                        self.state[d] = State::Queued;
                        self.ready.push(Reverse(d));
                    }
                    _ => {}
                }
            }
        }
    }

    /// How many selected steps are hits, must run, and wait (what
    /// `plan().counts()` says, without building the plan).
    fn counts_so_far(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for state in &self.state {
            match state {
                State::Unselected => {}
                State::Hit | State::CutOff => counts.0 += 1,
                State::Pending => counts.2 += 1,
                _ => counts.1 += 1,
            }
        }
        counts
    }

    fn plan(&self) -> Plan {
        let job = &self.engine.job;
        let mut steps = Vec::with_capacity(self.state.len());
        for idx in 0..self.state.len() {
            let plan = match self.state[idx] {
                State::Unselected => continue,
                State::Hit | State::CutOff => {
                    let versions = self.output_versions(idx);
                    StepPlan::Hit {
                        outputs: job
                            .step(idx)
                            .outputs()
                            .iter()
                            .zip(versions.iter().copied())
                            .zip(self.stored(idx))
                            .filter_map(|((o, v), s)| {
                                s.map(|s| (o.name.clone(), v, s.data_version))
                            })
                            .collect(),
                    }
                }
                State::Pending => match self.certain_reasons(idx) {
                    Some(reasons) => StepPlan::Run(reasons),
                    None => StepPlan::Waiting {
                        on: job
                            .upstream(idx)
                            .iter()
                            .filter(|&&u| !self.state[u].is_available())
                            .map(|&u| job.step(u).name().to_owned())
                            .collect(),
                    },
                },
                _ => StepPlan::Run(self.reasons[idx].clone()),
            };
            steps.push(PlannedStep { step: job.step(idx).shared_name().clone(), plan });
        }
        Plan { steps }
    }

    /// For a step waiting on upstream outputs (early cutoff): what already
    /// differs from its last trace whatever those outputs turn out to be
    /// (its config, code, an input whose data is known and changed, no
    /// trace at all), so it runs for certain; `None` if nothing does yet.
    /// Inputs not known yet are left out of the comparison.
    fn certain_reasons(&self, idx: StepIdx) -> Option<Vec<RerunReason>> {
        let name = self.engine.job.step(idx).name();
        let previous = self.traces.latest_trace(name).ok()?;
        let components = self.engine.components(idx);
        let op = self.engine.job.step(idx);
        let mut reasons = compute_reasons(previous.as_ref(), &components);
        reasons.retain(|r| match r {
            RerunReason::InputRemoved { input } => {
                !op.inputs().iter().any(|i| i.name.as_str() == input.as_str())
            }
            _ => true,
        });
        (!reasons.is_empty()).then_some(reasons)
    }

    fn prepare(&self, idx: StepIdx) -> StepWork {
        let job = &self.engine.job;
        let op = job.step(idx);
        let mut inputs = SmallVec::with_capacity(op.inputs().len());
        let mut sources = SmallVec::new();
        for &(input_idx, edge) in job.input_edges(idx) {
            match edge {
                InputEdge::Output(up, out) => {
                    if let Some(stored) = self.stored(up)[out] {
                        inputs.push(WorkInput {
                            input: input_idx,
                            upstream: up,
                            output: out,
                            version: self.output_versions(up)[out],
                            stored,
                        });
                    }
                }
                InputEdge::Source(s) => {
                    if let Some(data) = self.engine.graph.source_data[s] {
                        sources.push((input_idx, data));
                    }
                }
            }
        }
        let env = op
            .env_names()
            .iter()
            .map(|n| (n.clone(), self.engine.env_values.get(n).cloned().flatten()))
            .collect();
        StepWork {
            idx,
            inputs,
            sources,
            outputs: SmallVec::from_slice(self.output_versions(idx)),
            env,
            reasons: Vec::new(),
        }
    }

    fn skip_downstream(&mut self, idx: StepIdx, events: &mut dyn FnMut(&RunEvent)) {
        let job = self.job();
        let failed = job.step(idx).shared_name().clone();
        let mut stack: Vec<StepIdx> = job.downstream(idx).to_vec();
        while let Some(d) = stack.pop() {
            if matches!(self.state[d], State::Pending | State::NeedsRun | State::Queued) {
                self.state[d] = State::Skipped;
                self.counts.skipped += 1;
                events(&RunEvent::Skipped {
                    step: job.step(d).shared_name().clone(),
                    failed_upstream: failed.clone(),
                });
                self.outcomes[d] =
                    Some(StepOutcome::Skipped { failed_upstream: failed.to_string() });
                stack.extend_from_slice(job.downstream(d));
            }
        }
        self.ready.retain(|&Reverse(r)| self.state[r] == State::Queued);
    }

    fn handle(
        &mut self,
        result: WorkerResult,
        events: &mut dyn FnMut(&RunEvent),
    ) -> Result<bool, PlanError> {
        let job = self.job();
        match result {
            WorkerResult::Done { idx, reasons, stored, duration, log } => {
                let op = job.step(idx);
                let (op_version, unversioned) =
                    self.op_versions[idx].unwrap_or((Digest([0; 32]), true));
                let mut outputs = Vec::with_capacity(stored.len());
                let mut data = Vec::with_capacity(stored.len());
                for (out, s) in stored.iter().enumerate() {
                    self.stored_mut(idx)[out] = Some(*s);
                    self.engine.graph.set_slot(idx, out, Some(s.data_version));
                    let spec = &op.outputs()[out];
                    outputs.push(TraceOutput {
                        name: spec.name.clone(),
                        version: self.versions[self.first_output[idx] + out],
                        data_version: s.data_version,
                        size: s.size,
                    });
                    data.push((spec.name.clone(), s.data_version));
                }
                let components = match self.components.remove(&idx) {
                    Some(c) => c,
                    None => self.engine.components(idx),
                };
                let duration_ns = nanos(duration);
                let trace = Trace {
                    step: op.shared_name().clone(),
                    run_id: self.run_id.clone(),
                    op_version,
                    unversioned,
                    components,
                    outputs,
                    duration_ns,
                };
                self.traces
                    .commit_trace(trace, log)
                    .map_err(|source| PlanError::Trace { step: op.name().to_owned(), source })?;
                self.state[idx] = State::Done;
                self.counts.ran += 1;
                self.outcomes[idx] = Some(StepOutcome::Ran { reasons, duration_ns });
                events(&RunEvent::Finished {
                    step: op.shared_name().clone(),
                    duration,
                    outputs: data,
                });
                self.propagate(idx, true);
                Ok(false)
            }
            WorkerResult::Failed { idx, message, exit_code, duration, log } => {
                let name = job.step(idx).shared_name().clone();
                let failure = StepFailure {
                    step: name.clone(),
                    run_id: self.run_id.clone(),
                    message: message.clone(),
                    exit_code,
                    duration_ns: nanos(duration),
                };
                self.traces
                    .record_failure(failure, log)
                    .map_err(|source| PlanError::Trace { step: name.to_string(), source })?;
                self.state[idx] = State::Failed;
                self.counts.failed += 1;
                self.failed_while_cancelled |=
                    self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
                self.outcomes[idx] =
                    Some(StepOutcome::Failed { message: message.clone(), exit_code });
                events(&RunEvent::Failed { step: name, message });
                self.skip_downstream(idx, events);
                Ok(self.opts.fail_fast)
            }
            WorkerResult::InputMiss { idx, upstream, output, message } => {
                let up_name = job.step(upstream).shared_name().clone();
                events(&RunEvent::Warning {
                    step: up_name.clone(),
                    message: format!("{message}; the step runs again"),
                });
                match self.state[upstream] {
                    State::Hit | State::CutOff if self.opts.memoize => {
                        // Produce the upstream output again, then retry.
                        if self.state[upstream] == State::Hit {
                            self.counts.hit -= 1;
                        } else {
                            self.counts.cut_off -= 1;
                        }
                        self.state[upstream] = State::Queued;
                        self.reasons[upstream] = vec![RerunReason::OutputCorrupt {
                            output: job.step(upstream).outputs()[output].name.to_string(),
                            detail: message,
                        }];
                        self.components.insert(upstream, self.engine.components(upstream));
                        self.rerun_after_hit[upstream] = true;
                        self.ready.push(Reverse(upstream));
                        self.rewait.entry(upstream).or_default().push(idx);
                        self.unresolved_up[idx] += 1;
                        // Resolve again once the upstream has run: its new
                        // bytes may differ, and so may this step's version.
                        self.state[idx] = State::Pending;
                    }
                    State::Queued | State::Running if self.rerun_after_hit[upstream] => {
                        self.rewait.entry(upstream).or_default().push(idx);
                        self.unresolved_up[idx] += 1;
                        self.state[idx] = State::Pending;
                    }
                    _ => {
                        let message = format!("cannot load input from step `{up_name}`: {message}");
                        return self.handle(WorkerResult::failed_unrun(idx, message), events);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Marks a queued step running, announces it, and gathers its work.
    fn launch(&mut self, idx: StepIdx, events: &mut dyn FnMut(&RunEvent)) -> StepWork {
        self.state[idx] = State::Running;
        // The reasons go into the event and come back: no copy.
        let started = RunEvent::Started {
            step: self.engine.job.step(idx).shared_name().clone(),
            reasons: std::mem::take(&mut self.reasons[idx]),
        };
        events(&started);
        let mut work = self.prepare(idx);
        if let RunEvent::Started { reasons, .. } = started {
            work.reasons = reasons;
        }
        work
    }

    /// Takes in a worker's result; after an engine error nothing more is
    /// taken in and nothing new starts.
    fn absorb(
        &mut self,
        result: WorkerResult,
        events: &mut dyn FnMut(&RunEvent),
        stop: &mut bool,
        error: &mut Option<PlanError>,
    ) {
        if error.is_some() {
            return;
        }
        match self.handle(result, events).and_then(|s| {
            self.drain(events)?;
            Ok(s)
        }) {
            Ok(s) => *stop |= s || self.stop_requested,
            Err(e) => {
                *error = Some(e);
                *stop = true;
            }
        }
    }

    fn report(mut self, status: RunStatus, started: Instant) -> RunReport {
        let job = self.job();
        let mut steps = Vec::with_capacity(self.state.len());
        for idx in 0..self.state.len() {
            if self.state[idx] == State::Unselected {
                continue;
            }
            let outcome = match self.outcomes[idx].take() {
                Some(o) => o,
                None => {
                    self.counts.not_run += 1;
                    StepOutcome::NotRun
                }
            };
            steps.push(StepReport { step: job.step(idx).shared_name().clone(), outcome });
        }
        RunReport {
            run_id: self.opts.run_id.clone(),
            status,
            counts: self.counts,
            steps,
            tags: self.opts.tags.clone(),
            duration_ns: nanos(started.elapsed()),
        }
    }
}

/// The steps covered by a selection: the named steps (optionally with their
/// downstream) and everything they read.
fn select(job: &Job, opts: &RunOptions) -> Result<Vec<bool>, PlanError> {
    let n = job.len();
    for name in &opts.force {
        if job.step_index(name).is_none() {
            return Err(PlanError::UnknownStep { step: name.clone() });
        }
    }
    if opts.selection.steps.is_empty() {
        return Ok(vec![true; n]);
    }
    let mut selected = vec![false; n];
    let mut stack = Vec::new();
    for name in &opts.selection.steps {
        let idx =
            job.step_index(name).ok_or_else(|| PlanError::UnknownStep { step: name.clone() })?;
        stack.push(idx);
    }
    if opts.selection.downstream {
        let mut seen = vec![false; n];
        let mut down = stack.clone();
        while let Some(idx) = down.pop() {
            if !seen[idx] {
                seen[idx] = true;
                stack.push(idx);
                down.extend_from_slice(job.downstream(idx));
            }
        }
    }
    while let Some(idx) = stack.pop() {
        if !selected[idx] {
            selected[idx] = true;
            stack.extend_from_slice(job.upstream(idx));
        }
    }
    for name in &opts.force {
        if job.step_index(name).is_some_and(|idx| !selected[idx]) {
            return Err(PlanError::ForcedNotSelected { step: name.clone() });
        }
    }
    Ok(selected)
}

/// A duration in whole nanoseconds, saturating (585 years fit).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// The background flusher: a thread of its own that commits the trace
/// store while steps finish, at most once per `interval`. It waits on fsync,
/// not the CPU, so it takes no job slot. A step that finishes after a quiet
/// interval is committed at once (it may precede a long step, and a crash
/// then should not cost it); during a burst, one commit covers every step
/// of the interval, and a finished step only raises a flag, as a wake-up
/// per step cost more than a small step. It ends when the scheduler calls
/// [`Flusher::finish`], which then flushes once more itself.
struct Flusher {
    interval: Option<Duration>,
    /// Steps finished since the last commit.
    dirty: AtomicBool,
    /// The thread is parked with nothing to commit: a request wakes it.
    idle: AtomicBool,
    done: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Flusher {
    fn new(interval: Option<Duration>) -> Flusher {
        Flusher {
            interval,
            dirty: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            done: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        }
    }

    /// Starts the thread (if the store flushes in the background); each
    /// flush's result goes to `results`.
    fn spawn<'scope>(
        &'scope self,
        threads: &'scope std::thread::Scope<'scope, '_>,
        traces: &'scope dyn TraceStore,
        results: mpsc::Sender<Message>,
    ) {
        let Some(interval) = self.interval else { return };
        threads.spawn(move || {
            // Set before the first look at `dirty`: a request that finds no
            // thread to wake is seen by that look.
            let _ = self.thread.set(std::thread::current());
            let mut last: Option<Instant> = None;
            while !self.done.load(Ordering::SeqCst) {
                if !self.dirty.load(Ordering::SeqCst) {
                    // Publish `idle` before the last look at `dirty`, so a
                    // request in between wakes us (`unpark` before `park`
                    // makes `park` return at once).
                    self.idle.store(true, Ordering::SeqCst);
                    if !self.dirty.load(Ordering::SeqCst) && !self.done.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    self.idle.store(false, Ordering::SeqCst);
                    continue;
                }
                let due = last.map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
                if !due.is_zero() {
                    std::thread::park_timeout(due);
                    continue;
                }
                self.dirty.store(false, Ordering::SeqCst);
                last = Some(Instant::now());
                if results.send(Message::Flushed(traces.flush())).is_err() {
                    return;
                }
            }
        });
    }

    /// A step finished: its trace waits in the store's batch. `more`: the
    /// run goes on (steps run or are ready). A step that ends the run is
    /// left to the run's end, which commits it with the run record.
    fn request(&self, more: bool) {
        if more
            && self.interval.is_some()
            && !self.dirty.swap(true, Ordering::SeqCst)
            && self.idle.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Stops the thread without waiting for its interval to pass.
    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// How long steps take, learnt as they finish. A step of a microsecond (a
/// trivial in-process op) costs less than handing it to a worker and
/// booking it back, so while steps are that small the coordinator runs them
/// itself whenever nothing runs on the pool: one step at a time, within
/// `-j`, and no hand-off. One slow step ends that at once.
#[derive(Default)]
struct Pace {
    /// Moving mean of a step's execution time, in ns.
    mean_ns: f64,
    seen: u32,
}

impl Pace {
    /// Below this mean a step is tiny (a hand-off and a wake-up cost a few
    /// microseconds each).
    const TINY_NS: f64 = 20_000.0;

    fn observe(&mut self, took: Duration) {
        let ns = took.as_nanos() as f64;
        self.mean_ns = if self.seen == 0 { ns } else { 0.9 * self.mean_ns + 0.1 * ns };
        self.seen = self.seen.saturating_add(1);
    }

    fn tiny(&self) -> bool {
        self.seen >= 16 && self.mean_ns < Self::TINY_NS
    }
}

/// What the coordinator hears from the pool.
enum Message {
    /// A step finished, and how long it took on its worker.
    Step(WorkerResult, Duration),
    /// A background flush finished.
    Flushed(Result<(), TraceError>),
}

/// After a message: a finished step asks for a flush (unless the run is
/// over, `more` false: its end commits the step); a failed flush stops the
/// run with its error.
fn settle(
    received: Result<bool, TraceError>,
    flusher: &Flusher,
    more: bool,
    stop: &mut bool,
    error: &mut Option<PlanError>,
) {
    match received {
        Ok(true) => flusher.request(more),
        Ok(false) => {}
        Err(source) => {
            error.get_or_insert(PlanError::Trace { step: String::new(), source });
            *stop = true;
        }
    }
}

/// Keeps the first error of the background flushes that ended after the
/// scheduler stopped listening.
fn drain_flushes(rx: &mpsc::Receiver<Message>, error: &mut Option<PlanError>) {
    while let Ok(message) = rx.try_recv() {
        if let Message::Flushed(Err(source)) = message {
            error.get_or_insert(PlanError::Trace { step: String::new(), source });
        }
    }
}

/// Books one message: a finished step goes to `absorb` (`Ok(true)`); a
/// failed background flush is the error.
fn receive(
    message: Message,
    running: &mut usize,
    pace: &mut Pace,
    absorb: &mut dyn FnMut(WorkerResult),
) -> Result<bool, TraceError> {
    match message {
        Message::Step(result, took) => {
            *running -= 1;
            pace.observe(took);
            absorb(result);
            Ok(true)
        }
        Message::Flushed(result) => result.map(|()| false),
    }
}

/// Runs one step (on a worker, or on the coordinator): load inputs,
/// compute, store outputs.
fn execute_step(job: &Job, io: &dyn IoManager, work: StepWork, run_id: &str) -> WorkerResult {
    let idx = work.idx;
    let op = job.step(idx);
    let fail = |message: String, duration: Duration, log: StepLog| WorkerResult::Failed {
        idx,
        message,
        exit_code: None,
        duration,
        log,
    };
    let Some(compute) = op.compute.as_ref() else {
        return fail(
            format!("op `{}` has no computation", op.name()),
            Duration::ZERO,
            StepLog::default(),
        );
    };
    let mut inputs: SmallVec<[(&str, OutputValue); 2]> = SmallVec::with_capacity(op.inputs().len());
    for &WorkInput { input: input_idx, upstream: up, output: out, version, ref stored } in
        &work.inputs
    {
        let name = op.inputs()[input_idx].name.as_str();
        let ctx = output_ctx(job, up, out, version, run_id);
        match io.load_input(&ctx, stored) {
            Ok(value) => inputs.push((name, value)),
            Err(e) if e.is_miss() => {
                return WorkerResult::InputMiss {
                    idx,
                    upstream: up,
                    output: out,
                    message: e.to_string(),
                };
            }
            Err(e) => {
                return fail(
                    format!("loading input `{name}`: {e}"),
                    Duration::ZERO,
                    StepLog::default(),
                );
            }
        }
    }
    for &(input_idx, edge) in job.input_edges(idx) {
        if let InputEdge::Source(s) = edge {
            let spec = &op.inputs()[input_idx];
            let path =
                spec.path.as_ref().map_or_else(|| job.sources()[s].clone(), |p| p.to_string());
            inputs.push((spec.name.as_str(), OutputValue::File(path)));
        }
    }
    // Input names are unique within an op (the job is validated).
    inputs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let resources: BTreeMap<&str, &Value> = job
        .step_resources(idx)
        .iter()
        .map(|&r| (job.resources()[r].name(), job.resources()[r].config_value()))
        .collect();
    let env: BTreeMap<&str, Option<&str>> =
        work.env.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    let mut ctx = OpContext {
        step: op.name(),
        run_id,
        op,
        inputs,
        outputs: SmallVec::new(),
        resources,
        env,
        reasons: &work.reasons,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| compute(&mut ctx)));
    let duration = started.elapsed();
    let mut produced = std::mem::take(&mut ctx.outputs);
    let log = StepLog {
        stdout: std::mem::take(&mut ctx.stdout),
        stderr: std::mem::take(&mut ctx.stderr),
    };
    drop(ctx);
    match result {
        Err(payload) => {
            return fail(
                format!("op panicked: {}", panic_message(payload.as_ref())),
                duration,
                log,
            );
        }
        Ok(Err(failure)) => {
            return WorkerResult::Failed {
                idx,
                message: failure.message,
                exit_code: failure.exit_code,
                duration,
                log,
            };
        }
        Ok(Ok(())) => {}
    }
    if let Some(changed) = changed_source(job, io, &work) {
        return fail(changed, duration, log);
    }
    let mut stored = SmallVec::with_capacity(op.outputs().len());
    for (out, spec) in op.outputs().iter().enumerate() {
        let value = match produced.get_mut(out).and_then(Option::take) {
            Some(v) => v,
            None => match &spec.path {
                Some(path) => OutputValue::File(path.clone()),
                None => {
                    return fail(
                        format!("declared output {} was not written", spec.name),
                        duration,
                        log,
                    );
                }
            },
        };
        let ctx = output_ctx(job, idx, out, work.outputs[out], run_id);
        match io.handle_output(&ctx, value) {
            Ok(s) => stored.push(s),
            Err(e) => return fail(e.to_string(), duration, log),
        }
    }
    WorkerResult::Done { idx, reasons: work.reasons, stored, duration, log }
}

/// After a step ran: the source inputs, code files and upstream outputs read
/// at a path that its version was computed from and that no longer hold
/// those bytes (edited while it ran), as the step's failure; `None` if all
/// still do. Code files count only under
/// the source hash (an explicit code version does not read them).
fn changed_source(job: &Job, io: &dyn IoManager, work: &StepWork) -> Option<String> {
    let op = job.step(work.idx);
    let sources = work
        .sources
        .iter()
        .filter_map(|&(input, data)| op.inputs()[input].path.as_deref().map(|path| (path, data)));
    let code_files = match (&op.code().explicit, &op.code().source) {
        (None, Some(source)) => source.files.as_slice(),
        _ => &[],
    };
    let code = code_files.iter().map(|(path, data)| (path.as_str(), *data));
    // Upstream outputs read at a path too: the step read the workspace
    // copy, which anything outside trove (a command left running by a
    // killed run, another tool) may have rewritten meanwhile. The data
    // version is the whole upstream output's, so that is what is checked,
    // also for an input at a path inside an output directory.
    // Several inputs inside one upstream directory check it once.
    let wired = work.inputs.iter().enumerate().filter_map(|(i, input)| {
        op.inputs()[input.input].path.as_ref()?;
        let same =
            |other: &WorkInput| (other.upstream, other.output) == (input.upstream, input.output);
        if work.inputs[..i]
            .iter()
            .any(|earlier| same(earlier) && op.inputs()[earlier.input].path.is_some())
        {
            return None;
        }
        let output = &job.step(input.upstream).outputs()[input.output];
        output.path.as_deref().map(|path| (path, input.stored.data_version))
    });
    for (path, data) in sources.chain(code).chain(wired) {
        match io.source_unchanged(path, data) {
            Ok(true) => {}
            Ok(false) => {
                return Some(format!(
                    "{path} changed while the step ran: its outputs were not stored, and the \
                     next run runs it again"
                ));
            }
            Err(e) => return Some(format!("checking {path} after the step ran: {e}")),
        }
    }
    None
}

impl Engine {
    /// What a run with these options would do, step by step, without running
    /// anything or touching the workspace.
    pub fn plan(
        &mut self,
        io: &dyn IoManager,
        traces: &dyn TraceStore,
        opts: &RunOptions,
    ) -> Result<Plan, PlanError> {
        let mut runner = Runner::new(self, io, traces, opts, false)?;
        runner.start(&mut |_| {})?;
        Ok(runner.plan())
    }

    /// Runs the job: skips what is stored, runs the rest in parallel, stores
    /// outputs and commits traces. `events` is called on this thread.
    ///
    /// A failing op is not an error: it is a [`StepOutcome::Failed`] in the
    /// report. Errors are failures of the IO manager or the trace store.
    pub fn run(
        &mut self,
        io: &dyn IoManager,
        traces: &dyn TraceStore,
        opts: &RunOptions,
        events: &mut dyn FnMut(&RunEvent),
    ) -> Result<RunReport, PlanError> {
        let started = Instant::now();
        let mut runner = Runner::new(self, io, traces, opts, true)?;
        runner.start(events)?;
        let (hits, to_run, waiting) = runner.counts_so_far();
        events(&RunEvent::Planned { total: hits + to_run + waiting, hits, to_run, waiting });
        let jobs = if opts.jobs == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            opts.jobs
        };
        let job = runner.job();
        let run_id = opts.run_id.as_str();
        let cancel = opts.cancel.clone();
        let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
        let mut stop = runner.stop_requested;
        let mut error = None;
        let background = traces.background_flush();
        let flush_err = |source| PlanError::Trace { step: String::new(), source };
        if jobs == 1 {
            // One worker: run each step on this thread, in topological order.
            // No pool, no thread wake-ups per step (the flusher, if any,
            // looks at a flag once per interval).
            let (tx, rx) = mpsc::channel::<Message>();
            let flusher = Flusher::new(background);
            std::thread::scope(|threads| {
                flusher.spawn(threads, traces, tx.clone());
                loop {
                    while let Ok(Message::Flushed(flushed)) = rx.try_recv() {
                        if let Err(e) = flushed {
                            error.get_or_insert(flush_err(e));
                            stop = true;
                        }
                    }
                    if cancelled() {
                        stop = true;
                    }
                    if stop {
                        break;
                    }
                    let Some(Reverse(idx)) = runner.ready.pop() else { break };
                    if runner.state[idx] != State::Queued {
                        continue;
                    }
                    let work = runner.launch(idx, events);
                    let result = execute_step(&job, io, work, run_id);
                    runner.absorb(result, events, &mut stop, &mut error);
                    flusher.request(!runner.ready.is_empty());
                }
                flusher.finish();
            });
            // A flush that failed after the loop is the run's error (the
            // store may refuse everything after it).
            drain_flushes(&rx, &mut error);
        } else {
            // `jobs` pool workers run the steps; this thread books results
            // and hands out ready steps, so a finished step's successors
            // start without waiting for a step this thread runs. It runs a
            // step itself only when nothing could run beside it, or while
            // steps are tiny and the pool is idle ([`Pace`]).
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(jobs)
                .thread_name(|i| format!("trove-worker-{i}"))
                .build()
                .map_err(|e| PlanError::Internal(format!("cannot start worker threads: {e}")))?;
            // A few steps per worker in flight, so workers never wait for the
            // coordinator and results come back in batches; few enough that
            // cancellation and fail-fast stop promptly. Only `jobs` run at
            // once: the pool has that many threads.
            let max_running = jobs.saturating_mul(4);
            let (tx, rx) = mpsc::channel::<Message>();
            let flusher = Flusher::new(background);
            std::thread::scope(|threads| {
                flusher.spawn(threads, traces, tx.clone());
                pool.in_place_scope(|scope| {
                    let mut running = 0usize;
                    let mut pace = Pace::default();
                    loop {
                        if cancelled() {
                            stop = true;
                        }
                        // Nothing running and one step ready (a chain, the tail
                        // of a graph): only that step can make another ready, so
                        // running it here loses no parallelism and saves two
                        // thread wake-ups, which cost more than a small command.
                        // The same while steps are tiny ([`Pace`]).
                        if !stop
                            && running == 0
                            && (runner.ready.len() == 1
                                || (pace.tiny() && !runner.ready.is_empty()))
                        {
                            if let Some(Reverse(idx)) = runner.ready.pop()
                                && runner.state[idx] == State::Queued
                            {
                                let work = runner.launch(idx, events);
                                let started = Instant::now();
                                let result = execute_step(&job, io, work, run_id);
                                pace.observe(started.elapsed());
                                runner.absorb(result, events, &mut stop, &mut error);
                                flusher.request(!runner.ready.is_empty());
                            }
                            continue;
                        }
                        while !stop && running < max_running {
                            let Some(Reverse(idx)) = runner.ready.pop() else { break };
                            if runner.state[idx] != State::Queued {
                                continue;
                            }
                            let work = runner.launch(idx, events);
                            let tx = tx.clone();
                            let job = &job;
                            scope.spawn(move |_| {
                                let started = Instant::now();
                                let result = execute_step(job, io, work, run_id);
                                let took = started.elapsed();
                                let _ = tx.send(Message::Step(result, took));
                            });
                            running += 1;
                        }
                        while let Ok(message) = rx.try_recv() {
                            let received = receive(message, &mut running, &mut pace, &mut |r| {
                                runner.absorb(r, events, &mut stop, &mut error);
                            });
                            let more = running > 0 || !runner.ready.is_empty();
                            settle(received, &flusher, more, &mut stop, &mut error);
                        }
                        if running == 0 {
                            if stop || runner.ready.is_empty() {
                                break;
                            }
                            continue;
                        }
                        let first = if cancel.is_some() {
                            match rx.recv_timeout(Duration::from_millis(50)) {
                                Ok(r) => r,
                                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                            }
                        } else {
                            match rx.recv() {
                                Ok(r) => r,
                                Err(_) => break,
                            }
                        };
                        let received = receive(first, &mut running, &mut pace, &mut |r| {
                            runner.absorb(r, events, &mut stop, &mut error);
                        });
                        let more = running > 0 || !runner.ready.is_empty();
                        settle(received, &flusher, more, &mut stop, &mut error);
                    }
                });
                flusher.finish();
            });
            drain_flushes(&rx, &mut error);
        }
        let flushed =
            traces.end_run().map_err(|source| PlanError::Trace { step: String::new(), source });
        if let Some(e) = error {
            return Err(e);
        }
        flushed?;
        // Cancelled only if the cancellation left something undone, or a
        // step failed after it (its command was likely interrupted too): a
        // flag raised while the last step finished changes nothing.
        let unfinished = runner
            .state
            .iter()
            .zip(&runner.outcomes)
            .any(|(state, outcome)| *state != State::Unselected && outcome.is_none());
        let status = if cancelled() && (unfinished || runner.failed_while_cancelled) {
            RunStatus::Cancelled
        } else if runner.counts.failed > 0 || (stop && unfinished) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        Ok(runner.report(status, started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_calls_steps_tiny_only_after_enough_of_them_and_one_slow_step_ends_it() {
        let mut pace = Pace::default();
        for _ in 0..15 {
            pace.observe(Duration::from_micros(1));
        }
        assert!(!pace.tiny(), "too few steps seen to judge");
        pace.observe(Duration::from_micros(1));
        assert!(pace.tiny());
        pace.observe(Duration::from_millis(2));
        assert!(!pace.tiny(), "one command-sized step is enough to hand steps out again");
        let mut commands = Pace::default();
        for _ in 0..100 {
            commands.observe(Duration::from_millis(1));
        }
        assert!(!commands.tiny());
    }
}
