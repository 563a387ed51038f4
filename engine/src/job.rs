//! Jobs: validated DAGs of steps.
//!
//! A [`Job`] is built from [`Op`]s and [`Resource`]s with [`Job::builder`];
//! `build` validates everything a run relies on (unique names, known
//! references, no cycles) so the rest of the engine can index without
//! checking. Steps are stored in a topological order; a step is an op placed
//! in the job, addressed by its name or by its index in that order.

pub mod op;
pub mod resource;
mod validate;

pub use validate::{find_cycle, is_valid_name};

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

pub use op::{
    CodeSpec, InputFrom, InputSpec, Op, OpContext, OpFailure, OpFn, OutputSpec, SourceFn,
    SourceText,
};
pub use resource::Resource;

use crate::name::{FxHasher, Name};
use crate::version::{DefaultStrategy, VersionStrategy};

/// How inputs contribute to downstream versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VersionMode {
    /// An input contributes the *data version* of the upstream output, so a
    /// re-run that reproduces identical bytes stops invalidation (default).
    #[default]
    EarlyCutoff,
    /// Dagster's semantics: an input contributes the upstream *output
    /// version*, so the whole plan is known before anything runs.
    Lineage,
}

/// Errors found while validating a job. Each names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A name is empty or contains characters trove reserves.
    #[error(
        "{kind} name `{name}` is invalid: names are non-empty and contain no `/`, `\\n` or NUL"
    )]
    InvalidName {
        /// "op", "resource", "input" or "output".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A name is read both as a source and as an output from outside the
    /// job ([`InputFrom::Outside`]).
    #[error("`{name}` is read both as a source and as an output from outside the job")]
    SourceAndOutside {
        /// The name.
        name: String,
    },
    /// A lineage-mode job reads an output from outside the job.
    #[error(
        "step `{step}` reads `{name}` from outside the job, which only early cutoff can version (the job is in lineage mode)"
    )]
    OutsideInLineage {
        /// The step.
        step: String,
        /// The name it reads.
        name: String,
    },
    /// Two ops share a name.
    #[error("duplicate op `{op}`")]
    DuplicateOp {
        /// The name.
        op: String,
    },
    /// Two resources share a name.
    #[error("duplicate resource `{resource}`")]
    DuplicateResource {
        /// The name.
        resource: String,
    },
    /// An op declares two inputs with one name.
    #[error("step `{step}` declares input `{input}` twice")]
    DuplicateInput {
        /// The step.
        step: String,
        /// The input.
        input: String,
    },
    /// An op declares two outputs with one name.
    #[error("step `{step}` declares output `{output}` twice")]
    DuplicateOutput {
        /// The step.
        step: String,
        /// The output.
        output: String,
    },
    /// An input names a step that does not exist.
    #[error("step `{step}` input `{input}` reads unknown step `{upstream}`")]
    UnknownStep {
        /// The reading step.
        step: String,
        /// Its input.
        input: String,
        /// The unknown step.
        upstream: String,
    },
    /// An input names an output its upstream does not declare.
    #[error("step `{step}` input `{input}` reads unknown output `{output}` of step `{upstream}`")]
    UnknownOutput {
        /// The reading step.
        step: String,
        /// Its input.
        input: String,
        /// The upstream step.
        upstream: String,
        /// The unknown output.
        output: String,
    },
    /// An op requires a resource that does not exist.
    #[error("step `{step}` requires unknown resource `{resource}`")]
    UnknownResource {
        /// The step.
        step: String,
        /// The unknown resource.
        resource: String,
    },
    /// A resource depends on a resource that does not exist.
    #[error("resource `{resource}` depends on unknown resource `{dependency}`")]
    UnknownDependency {
        /// The resource.
        resource: String,
        /// The unknown dependency.
        dependency: String,
    },
    /// The steps form a cycle.
    #[error("steps form a cycle: {}", path.join(" -> "))]
    Cycle {
        /// The steps of the cycle, first repeated at the end.
        path: Vec<String>,
    },
    /// The resources form a cycle.
    #[error("resources form a cycle: {}", path.join(" -> "))]
    ResourceCycle {
        /// The resources of the cycle, first repeated at the end.
        path: Vec<String>,
    },
}

/// Index of a step in a job's topological order.
pub type StepIdx = usize;

/// Where a step's input is wired, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEdge {
    /// Index into [`Job::sources`].
    Source(usize),
    /// A step and the index of one of its outputs.
    Output(StepIdx, usize),
}

/// One list per step (or source, or resource) in a single allocation: a
/// job of 100k steps held a `Vec` per step for each of its wirings, each an
/// allocation to make and a pointer to follow.
#[derive(Clone, Debug)]
pub(crate) struct Lists<T> {
    items: Vec<T>,
    /// Where each list ends in `items`.
    ends: Vec<usize>,
}

impl<T> Default for Lists<T> {
    fn default() -> Lists<T> {
        Lists { items: Vec::new(), ends: Vec::new() }
    }
}

impl<T> Lists<T> {
    pub(crate) fn with_capacity(lists: usize, items: usize) -> Lists<T> {
        Lists { items: Vec::with_capacity(items), ends: Vec::with_capacity(lists) }
    }

    /// List `i`.
    pub(crate) fn get(&self, i: usize) -> &[T] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.items[start..self.ends[i]]
    }

    /// The list being built (the items pushed since the last [`Lists::close`]).
    pub(crate) fn open_mut(&mut self) -> &mut [T] {
        let start = self.ends.last().copied().unwrap_or(0);
        &mut self.items[start..]
    }

    /// Adds an item to the list being built.
    pub(crate) fn push(&mut self, item: T) {
        self.items.push(item);
    }

    /// Ends the list being built: it becomes the next list.
    pub(crate) fn close(&mut self) {
        self.ends.push(self.items.len());
    }
}

impl<T: Copy> Lists<T> {
    /// `lists` lists where list `k` holds every `item` of a `(k, item)`
    /// pair, in the pairs' order.
    pub(crate) fn from_pairs(lists: usize, pairs: &[(usize, T)]) -> Lists<T> {
        let mut ends = vec![0usize; lists];
        for &(k, _) in pairs {
            ends[k] += 1;
        }
        let mut next = Vec::with_capacity(lists);
        let mut total = 0;
        for end in &mut ends {
            next.push(total);
            total += *end;
            *end = total;
        }
        let mut items: Vec<Option<T>> = vec![None; total];
        for &(k, item) in pairs {
            items[next[k]] = Some(item);
            next[k] += 1;
        }
        Lists { items: items.into_iter().flatten().collect(), ends }
    }
}

/// Step names to step indices, for every lookup by name (the engine's public
/// calls take names). The names sit back to back in one string and the map
/// holds only each name's FxHash: a lookup probes the map and compares a few
/// bytes that neighbouring steps share, instead of following a pointer to a
/// separate allocation per name (at 100k steps that cache miss was most of a
/// re-version after an edit). Two names with one hash, which a job is
/// unlikely ever to have, go to a plain map.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepIndex {
    names: String,
    /// Where each step's name ends in `names`.
    ends: Vec<usize>,
    by_hash: HashMap<u64, StepIdx, BuildHasherDefault<HashedKey>>,
    collided: HashMap<String, StepIdx>,
}

impl StepIndex {
    /// Indexes names given in step order (they are unique: validated).
    pub(crate) fn new<'n>(names: impl Iterator<Item = &'n str>) -> StepIndex {
        let mut index = StepIndex::default();
        for name in names {
            // A repeated name keeps its first index.
            let _ = index.push(name);
        }
        index
    }

    /// Adds `name` as the next index and returns it, or returns the index
    /// it already has (then nothing is added).
    pub(crate) fn push(&mut self, name: &str) -> Result<StepIdx, StepIdx> {
        let idx = self.ends.len();
        match self.by_hash.entry(FxHasher::hash_str(name)) {
            Entry::Vacant(slot) => {
                slot.insert(idx);
            }
            Entry::Occupied(slot) => {
                let first = *slot.get();
                if self.name(first) == name {
                    return Err(first);
                }
                if let Some(&other) = self.collided.get(name) {
                    return Err(other);
                }
                self.collided.insert(name.to_owned(), idx);
            }
        }
        self.names.push_str(name);
        self.ends.push(self.names.len());
        Ok(idx)
    }

    fn name(&self, idx: StepIdx) -> &str {
        let start = if idx == 0 { 0 } else { self.ends[idx - 1] };
        &self.names[start..self.ends[idx]]
    }

    /// The index of the step named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<StepIdx> {
        if let Some(&idx) = self.by_hash.get(&FxHasher::hash_str(name))
            && self.name(idx) == name
        {
            return Some(idx);
        }
        if self.collided.is_empty() { None } else { self.collided.get(name).copied() }
    }
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct HashedKey(u64);

impl Hasher for HashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A validated job. Cheap to clone (shared).
#[derive(Clone)]
pub struct Job {
    pub(crate) inner: Arc<JobInner>,
}

#[derive(Clone)]
pub(crate) struct JobInner {
    pub(crate) name: String,
    pub(crate) mode: VersionMode,
    /// Steps in topological order.
    pub(crate) steps: Vec<Op>,
    /// Per step, per input (sorted by input name): the wiring.
    pub(crate) edges: Lists<(usize, InputEdge)>,
    /// Per step, per input (in `edges` order): where it reads, as traces
    /// and reasons name it (`source NAME` or `STEP.OUTPUT`), made once per
    /// step when first asked for rather than for every trace (a format and
    /// an allocation per input: a third of building a job that only hits).
    pub(crate) origins: Vec<std::sync::OnceLock<Box<[Name]>>>,
    /// Per step: the steps that read one of its outputs (deduplicated).
    pub(crate) downstream: Lists<StepIdx>,
    /// Per step: the steps it reads (deduplicated).
    pub(crate) upstream: Lists<StepIdx>,
    pub(crate) step_index: StepIndex,
    /// Resources in topological order (dependencies first).
    pub(crate) resources: Vec<Resource>,
    pub(crate) resource_index: HashMap<String, usize>,
    /// Per resource: indices of its direct dependencies, sorted by name.
    pub(crate) resource_deps: Vec<Vec<usize>>,
    /// Per step: indices of required resources, sorted by name.
    pub(crate) step_resources: Lists<usize>,
    /// Source names, sorted (outputs read from outside the job among them).
    pub(crate) sources: Vec<String>,
    /// Per source: whether it is an output from outside the job
    /// ([`InputFrom::Outside`]).
    pub(crate) outside: Vec<bool>,
    pub(crate) source_index: StepIndex,
    pub(crate) strategy: Arc<dyn VersionStrategy>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("steps", &self.inner.steps)
            .field("resources", &self.inner.resources)
            .finish()
    }
}

impl Job {
    /// Starts building a job named `name`.
    pub fn builder(name: impl Into<String>) -> JobBuilder {
        JobBuilder {
            name: name.into(),
            ops: Vec::new(),
            resources: Vec::new(),
            mode: VersionMode::EarlyCutoff,
            strategy: Arc::new(DefaultStrategy),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// How inputs contribute to versions.
    pub fn mode(&self) -> VersionMode {
        self.inner.mode
    }
    /// The steps, in topological order.
    pub fn steps(&self) -> &[Op] {
        &self.inner.steps
    }
    /// Where each step's outputs start in a list of all steps' outputs in
    /// step order: step `idx`'s are `offsets[idx]..offsets[idx + 1]`.
    pub(crate) fn output_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.len() + 1);
        let mut n = 0;
        for op in self.steps() {
            offsets.push(n);
            n += op.outputs().len();
        }
        offsets.push(n);
        offsets
    }
    /// The number of steps.
    pub fn len(&self) -> usize {
        self.inner.steps.len()
    }
    /// Whether the job has no steps.
    pub fn is_empty(&self) -> bool {
        self.inner.steps.is_empty()
    }
    /// The index of a step by name.
    pub fn step_index(&self, name: &str) -> Option<StepIdx> {
        self.inner.step_index.get(name)
    }
    /// A step by index.
    pub fn step(&self, idx: StepIdx) -> &Op {
        &self.inner.steps[idx]
    }
    /// The wiring of a step's inputs: `(index into op.inputs(), edge)`,
    /// sorted by input name.
    pub fn input_edges(&self, idx: StepIdx) -> &[(usize, InputEdge)] {
        self.inner.edges.get(idx)
    }
    /// Where each input of a step reads, in [`Job::input_edges`] order:
    /// `source NAME` or `STEP.OUTPUT`.
    pub fn input_origins(&self, idx: StepIdx) -> &[Name] {
        self.inner.origins[idx].get_or_init(|| validate::input_origins(&self.inner, idx))
    }
    /// The steps that read outputs of `idx`.
    pub fn downstream(&self, idx: StepIdx) -> &[StepIdx] {
        self.inner.downstream.get(idx)
    }
    /// The steps whose outputs `idx` reads.
    pub fn upstream(&self, idx: StepIdx) -> &[StepIdx] {
        self.inner.upstream.get(idx)
    }
    /// The resources, dependencies first.
    pub fn resources(&self) -> &[Resource] {
        &self.inner.resources
    }
    /// The index of a resource by name.
    pub fn resource_index(&self, name: &str) -> Option<usize> {
        self.inner.resource_index.get(name).copied()
    }
    /// The source names read by the job, sorted.
    pub fn sources(&self) -> &[String] {
        &self.inner.sources
    }

    /// Whether source `s` (an index into [`Job::sources`]) is an output from
    /// outside the job ([`InputFrom::Outside`]).
    pub fn is_outside(&self, s: usize) -> bool {
        self.inner.outside[s]
    }
    /// The version strategy the job was built with.
    pub fn strategy(&self) -> &dyn VersionStrategy {
        self.inner.strategy.as_ref()
    }
    /// The indices of the resources a step requires directly, sorted by name.
    pub fn step_resources(&self, idx: StepIdx) -> &[usize] {
        self.inner.step_resources.get(idx)
    }
    /// The direct dependencies of a resource, sorted by name.
    pub fn resource_dependencies(&self, idx: usize) -> &[usize] {
        &self.inner.resource_deps[idx]
    }
}

/// Builds a [`Job`]; see [`Job::builder`].
pub struct JobBuilder {
    name: String,
    ops: Vec<Op>,
    resources: Vec<Resource>,
    mode: VersionMode,
    strategy: Arc<dyn VersionStrategy>,
}

impl JobBuilder {
    /// Adds an op.
    pub fn op(mut self, op: Op) -> JobBuilder {
        self.ops.push(op);
        self
    }
    /// Adds a resource.
    pub fn resource(mut self, resource: Resource) -> JobBuilder {
        self.resources.push(resource);
        self
    }
    /// Sets how inputs contribute to versions (default: early cutoff).
    pub fn mode(mut self, mode: VersionMode) -> JobBuilder {
        self.mode = mode;
        self
    }
    /// Sets the version strategy (default: [`DefaultStrategy`]).
    pub fn strategy(mut self, strategy: impl VersionStrategy + 'static) -> JobBuilder {
        self.strategy = Arc::new(strategy);
        self
    }
    /// Sets a shared version strategy.
    pub fn strategy_shared(mut self, strategy: Arc<dyn VersionStrategy>) -> JobBuilder {
        self.strategy = strategy;
        self
    }
    /// Validates and builds the job.
    pub fn build(self) -> Result<Job, JobError> {
        validate::build(self.name, self.ops, self.resources, self.mode, self.strategy)
            .map(|inner| Job { inner: Arc::new(inner) })
    }
}

#[cfg(test)]
mod tests;
