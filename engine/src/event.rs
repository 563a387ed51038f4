//! Run options, the stream of run events, and the run report.
//!
//! Events feed progress bars, JSON output and run records; they are
//! delivered on the thread that called [`Engine::run`](crate::Engine::run),
//! in the order things happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::name::Name;
use crate::plan::RerunReason;
use crate::version::DataVersion;

/// Which steps a run or plan covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The named steps (empty: the whole job).
    pub steps: Vec<String>,
    /// Also their downstream steps (and what those read).
    pub downstream: bool,
}

/// Options of one run (or plan).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run's id (passed to ops and recorded in traces).
    pub run_id: String,
    /// Memoization on (default) or off for this run: off runs every step
    /// (Dagster's `MEMOIZED_RUN_TAG=false`).
    pub memoize: bool,
    /// Steps that run even if memoized.
    pub force: BTreeSet<String>,
    /// Which steps to cover.
    pub selection: Selection,
    /// Worker threads (0: one per core).
    pub jobs: usize,
    /// Stop launching steps after the first failure (default: keep going
    /// with independent branches).
    pub fail_fast: bool,
    /// Run tags, recorded with the run.
    pub tags: BTreeMap<String, String>,
    /// Set to stop cleanly: running steps finish, nothing new starts.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: String::from("run"),
            memoize: true,
            force: BTreeSet::new(),
            selection: Selection::default(),
            jobs: 0,
            fail_fast: false,
            tags: BTreeMap::new(),
            cancel: None,
        }
    }
}

/// Something that happened during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The plan is known: so many steps selected, hits known up front, steps
    /// that must run, and steps waiting on upstream results.
    Planned {
        /// Selected steps.
        total: usize,
        /// Hits known before anything runs.
        hits: usize,
        /// Steps known to run.
        to_run: usize,
        /// Steps waiting on upstream results (early cutoff).
        waiting: usize,
    },
    /// A step's outputs are stored at its version: skipped.
    Hit {
        /// The step.
        step: Name,
        /// Outputs whose workspace copy was restored.
        restored: Vec<String>,
    },
    /// A waiting step turned out unchanged after its upstream re-ran.
    CutOff {
        /// The step.
        step: Name,
        /// Outputs whose workspace copy was restored.
        restored: Vec<String>,
    },
    /// A step started.
    Started {
        /// The step.
        step: Name,
        /// Why it runs.
        reasons: Vec<RerunReason>,
    },
    /// A step finished and its outputs are stored.
    Finished {
        /// The step.
        step: Name,
        /// How long it ran.
        duration: Duration,
        /// Its outputs' data versions.
        outputs: Vec<(Name, DataVersion)>,
    },
    /// A step failed.
    Failed {
        /// The step.
        step: Name,
        /// Why.
        message: String,
    },
    /// A step was not run because an upstream step failed.
    Skipped {
        /// The step.
        step: Name,
        /// The failed upstream step.
        failed_upstream: Name,
    },
    /// A stored output was unusable (corrupt or missing) and will be
    /// produced again.
    Warning {
        /// The step.
        step: Name,
        /// What happened.
        message: String,
    },
}

/// How a step ended in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutcome {
    /// Skipped: outputs were stored at its version.
    Hit {
        /// Outputs whose workspace copy was restored.
        restored: Vec<String>,
    },
    /// Waited on an upstream re-run, then turned out unchanged.
    CutOff {
        /// Outputs whose workspace copy was restored.
        restored: Vec<String>,
    },
    /// Ran and succeeded.
    Ran {
        /// Why it ran.
        reasons: Vec<RerunReason>,
        /// How long it ran, in nanoseconds.
        duration_ns: u64,
    },
    /// Ran and failed.
    Failed {
        /// Why.
        message: String,
        /// The exit code of a failed command.
        exit_code: Option<i32>,
    },
    /// Not run: an upstream step failed.
    Skipped {
        /// The failed upstream step.
        failed_upstream: String,
    },
    /// Not run: the run was cancelled or stopped after a failure.
    NotRun,
}

/// One step of a run report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step.
    pub step: Name,
    /// How it ended.
    pub outcome: StepOutcome,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Every selected step is a hit or ran.
    Succeeded,
    /// At least one step failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// Counts of step outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Hits known up front.
    pub hit: usize,
    /// Steps that ran and succeeded.
    pub ran: usize,
    /// Steps cut off after an upstream re-ran.
    pub cut_off: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps skipped because of a failure.
    pub skipped: usize,
    /// Steps not run (cancelled, fail-fast).
    pub not_run: usize,
    /// Outputs restored into the workspace.
    pub restored: usize,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// Outcome counts.
    pub counts: RunCounts,
    /// Each selected step, in topological order.
    pub steps: Vec<StepReport>,
    /// The run's tags, from [`RunOptions::tags`].
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Wall time of the run, in nanoseconds.
    pub duration_ns: u64,
}

impl RunReport {
    /// The steps that ran (succeeded), in order.
    pub fn ran(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, StepOutcome::Ran { .. }))
            .map(|s| s.step.as_str())
            .collect()
    }

    /// The outcome of one step.
    pub fn outcome(&self, step: &str) -> Option<&StepOutcome> {
        self.steps.iter().find(|s| s.step == step).map(|s| &s.outcome)
    }
}
