//! Errors of planning and running. A failing op is not among them: it is a
//! [`StepOutcome::Failed`](crate::StepOutcome::Failed) in the run report.

use crate::io_manager::IoError;
use crate::trace::TraceError;

/// Errors of [`Engine::plan`](crate::Engine::plan) and
/// [`Engine::run`](crate::Engine::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A step named by the caller does not exist.
    #[error("unknown step `{step}`")]
    UnknownStep {
        /// The name.
        step: String,
    },
    /// A step forced by the caller is not among the selected steps (it
    /// would silently not run).
    #[error(
        "forced step `{step}` is not selected: select it too, or run the whole job, to force it"
    )]
    ForcedNotSelected {
        /// The name.
        step: String,
    },
    /// A resource named by the caller does not exist.
    #[error("unknown resource `{resource}`")]
    UnknownResource {
        /// The name.
        resource: String,
    },
    /// A source named by the caller is not read by the job.
    #[error("unknown source `{source_name}`")]
    UnknownSource {
        /// The name.
        source_name: String,
    },
    /// A source's data version was never supplied.
    #[error("missing input: source `{source_name}` (read by step `{step}`) has no data version")]
    MissingSource {
        /// The source.
        source_name: String,
        /// A step that reads it.
        step: String,
    },
    /// The IO manager failed while checking a step's outputs.
    #[error("step `{step}`: {source}")]
    Io {
        /// The step.
        step: String,
        /// The cause.
        #[source]
        source: IoError,
    },
    /// The trace store failed.
    #[error("step `{step}`: {source}")]
    Trace {
        /// The step (empty when flushing).
        step: String,
        /// The cause.
        #[source]
        source: TraceError,
    },
    /// A bug in trove.
    #[error("internal error (this is a bug in trove): {0}")]
    Internal(String),
}
