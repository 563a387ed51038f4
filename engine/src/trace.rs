//! Traces: the record of one executed step, kept to explain the next plan.
//!
//! A [`Trace`] holds the step's op version, the [`VersionComponents`] that
//! made it (so `trove plan` and `trove why` can say *what* changed, cargo's
//! `DirtyReason` idea), each output's version and data version, and timing.
//! The engine writes traces through the [`TraceStore`] trait; the store crate
//! persists them in redb, [`MemoryTraceStore`] keeps them in memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chunked::ChunkedVec;
use crate::name::{FxHasher, Name};
use crate::version::{CodeVersion, DataVersion, Digest, OutputVersion, ResourceVersion};

/// The code component of a version, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CodeComponent {
    /// The code version the strategy decided (`None`: unversioned).
    pub version: Option<CodeVersion>,
    /// The explicit version string, if any.
    pub explicit: Option<Name>,
    /// The digest of the source text, if any.
    pub text: Option<Digest>,
    /// Script files named by the code and their data versions.
    pub files: Vec<(String, DataVersion)>,
}

/// One resource in the closure of a step's required resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceComponent {
    /// The resource's name.
    pub name: String,
    /// Whether the step requires it directly (otherwise through a dependency).
    pub direct: bool,
    /// Its version (`None`: unversioned).
    pub version: Option<ResourceVersion>,
    /// Its explicit code version string (for example `Python 3.11.7`).
    pub explicit: Option<Name>,
    /// Its config as canonical JSON text.
    pub config: String,
    /// The resources it depends on.
    pub depends_on: Vec<String>,
}

/// One input, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputComponent {
    /// The input name.
    pub name: Name,
    /// Where it reads: `source NAME` or `STEP.OUTPUT`.
    pub from: Name,
    /// The workspace path it is read at, if any.
    pub path: Option<Name>,
    /// The digest it contributed: a data version (sources, early cutoff) or an
    /// output version (lineage).
    pub version: Digest,
}

/// Everything that went into a step's version, kept for explaining.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionComponents {
    /// The scheme version the op version was computed with.
    pub scheme: u32,
    /// Code.
    pub code: CodeComponent,
    /// Config as canonical JSON text (keys sorted).
    pub config: Name,
    /// The closure of required resources, sorted by name.
    pub resources: Vec<ResourceComponent>,
    /// Declared environment, sorted by name (`None`: unset).
    pub env: Vec<(String, Option<String>)>,
    /// Inputs, sorted by name.
    pub inputs: Vec<InputComponent>,
    /// Outputs `(name, path)`, sorted by name.
    pub outputs: Vec<(Name, Option<String>)>,
}

/// One output of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceOutput {
    /// The output name.
    pub name: Name,
    /// Its version.
    pub version: OutputVersion,
    /// blake3 of its bytes.
    pub data_version: DataVersion,
    /// Its size in bytes.
    pub size: u64,
}

/// The record of one executed step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The step.
    pub step: Name,
    /// The run that executed it.
    pub run_id: Name,
    /// The op version (for an unversioned op, unique to the run).
    pub op_version: Digest,
    /// Whether the op was unversioned.
    pub unversioned: bool,
    /// What made the version.
    pub components: VersionComponents,
    /// Its outputs, in declaration order.
    pub outputs: Vec<TraceOutput>,
    /// How long the op ran, in nanoseconds.
    pub duration_ns: u64,
}

/// Captured standard output and error of a step.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepLog {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// The record of a failed step: not a trace (nothing is memoized), kept so
/// `trove log --step` can show what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step.
    pub step: Name,
    /// The run.
    pub run_id: Name,
    /// What went wrong.
    pub message: String,
    /// The exit code of a failed command.
    pub exit_code: Option<i32>,
    /// How long it ran, in nanoseconds.
    pub duration_ns: u64,
}

/// Errors of a trace store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The store failed; the message says how.
    #[error("trace store: {0}")]
    Store(String),
}

/// Where the engine keeps traces. Implementations may batch commits; a
/// trace must become durable no later than [`TraceStore::flush`] returns,
/// or, at the end of a run, than the commit [`TraceStore::end_run`] leaves
/// it to.
pub trait TraceStore: Send + Sync {
    /// The latest trace of a step, if any (a corrupt record counts as none).
    fn latest_trace(&self, step: &str) -> Result<Option<Trace>, TraceError>;
    /// Records a finished step. Called only after all its outputs are durable.
    fn commit_trace(&self, trace: Trace, log: StepLog) -> Result<(), TraceError>;
    /// Records a failed step.
    fn record_failure(&self, failure: StepFailure, log: StepLog) -> Result<(), TraceError>;
    /// Makes every recorded step durable.
    fn flush(&self) -> Result<(), TraceError>;
    /// The run is over: make every recorded step durable, now or in the
    /// commit that records the run's end, if the store knows one follows
    /// (the store's `finish_run` commits the batch with the run record, so
    /// a run costs one durable commit at its end instead of two). The
    /// default flushes.
    fn end_run(&self) -> Result<(), TraceError> {
        self.flush()
    }

    /// `Some(interval)`: the scheduler commits for this store off the
    /// critical path. [`TraceStore::commit_trace`] only stages, and the
    /// scheduler calls [`TraceStore::flush`] from a thread of its own (not a
    /// job slot) when steps have finished, at most once per `interval`,
    /// while the next steps run (with one worker: after a step, once
    /// `interval` has passed since the last flush). A durable commit then
    /// overlaps the next commands instead of delaying them, and covers every
    /// step that finished since the last one. `None` (the default): the
    /// store commits when it sees fit inside `commit_trace`.
    fn background_flush(&self) -> Option<Duration> {
        None
    }
}

/// An in-memory trace store for tests and embedding.
#[derive(Debug, Default)]
pub struct MemoryTraceStore {
    inner: Mutex<MemoryTraces>,
}

#[derive(Debug, Default)]
struct MemoryTraces {
    /// The latest trace of each step, in first-commit order, and where each
    /// step's is: a trace is a few hundred bytes, and a map of them moves
    /// every one each time it grows (a chunked list never moves them). The
    /// index uses FxHash: SipHash cost more than the rest of a commit, mostly
    /// when the index grows and every name is hashed again.
    latest: ChunkedVec<Trace>,
    latest_index: HashMap<Name, usize, BuildHasherDefault<FxHasher>>,
    failures: Vec<StepFailure>,
    logs: HashMap<Name, StepLog>,
}

impl MemoryTraceStore {
    /// An empty store.
    pub fn new() -> MemoryTraceStore {
        MemoryTraceStore::default()
    }

    /// The failures recorded so far.
    pub fn failures(&self) -> Vec<StepFailure> {
        self.inner.lock().map(|i| i.failures.clone()).unwrap_or_default()
    }

    /// The last log recorded for a step (an empty log when it printed
    /// nothing).
    pub fn log(&self, step: &str) -> Option<StepLog> {
        let inner = self.inner.lock().ok()?;
        match inner.logs.get(step) {
            Some(log) => Some(log.clone()),
            None => inner.latest_index.contains_key(step).then(StepLog::default),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryTraces>, TraceError> {
        self.inner.lock().map_err(|_| TraceError::Store("memory trace store poisoned".into()))
    }
}

impl TraceStore for MemoryTraceStore {
    fn latest_trace(&self, step: &str) -> Result<Option<Trace>, TraceError> {
        let inner = self.lock()?;
        Ok(inner.latest_index.get(step).map(|&i| inner.latest[i].clone()))
    }

    fn commit_trace(&self, trace: Trace, log: StepLog) -> Result<(), TraceError> {
        let mut inner = self.lock()?;
        if log.stdout.is_empty() && log.stderr.is_empty() {
            // An empty log replaces an older one without storing anything.
            if !inner.logs.is_empty() {
                inner.logs.remove(&trace.step);
            }
        } else {
            inner.logs.insert(trace.step.clone(), log);
        }
        let next = inner.latest.len();
        match inner.latest_index.entry(trace.step.clone()) {
            Entry::Occupied(slot) => {
                let i = *slot.get();
                inner.latest[i] = trace;
            }
            Entry::Vacant(slot) => {
                slot.insert(next);
                inner.latest.push(trace);
            }
        }
        Ok(())
    }

    fn record_failure(&self, failure: StepFailure, log: StepLog) -> Result<(), TraceError> {
        let mut inner = self.lock()?;
        inner.logs.insert(failure.step.clone(), log);
        inner.failures.push(failure);
        Ok(())
    }

    fn flush(&self) -> Result<(), TraceError> {
        Ok(())
    }
}
