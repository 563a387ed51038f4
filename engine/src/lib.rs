//! trove's engine: versioned, memoized execution of job graphs.
//!
//! A [`Job`] is a validated DAG of [`Op`]s (steps) and [`Resource`]s. An
//! [`Engine`] loads it into a salsa database where every output gets a
//! version ([`db::op_version`], [`db::resource_version`]) computed from the
//! op's code version (decided by a [`VersionStrategy`]), its config, the
//! versions of its resources, its declared environment and its inputs'
//! versions. [`Engine::plan`] says, per step, whether the [`IoManager`]
//! already holds its outputs at those versions ([`StepPlan::Hit`]) or why it
//! must run ([`RerunReason`]); [`Engine::run`] runs the stale steps on rayon,
//! stores outputs through the IO manager and commits [`Trace`]s through a
//! [`TraceStore`]. With early cutoff (the default) an upstream re-run that
//! reproduces identical bytes stops invalidation there.
//!
//! The engine does no file, environment, clock or database IO of its own:
//! the caller supplies source data versions and environment values, and the
//! store crate implements the IO manager and trace store on disk.
//!
//! ```
//! use trove_engine::{Engine, InputFrom, Job, MemoryIoManager, MemoryTraceStore, Op, RunOptions};
//!
//! let job = Job::builder("demo")
//!     .op(Op::new("hello").output("text").code_version("1")
//!         .compute(|ctx| ctx.set_output_bytes("text", b"hello".to_vec())))
//!     .op(Op::new("shout").input("text", InputFrom::output("hello", "text")).output("loud")
//!         .code_version("1")
//!         .compute(|ctx| { let t = ctx.input_bytes("text")?.to_ascii_uppercase(); ctx.set_output_bytes("loud", t) }))
//!     .build()?;
//! let (io, traces) = (MemoryIoManager::new(), MemoryTraceStore::new());
//! let mut engine = Engine::new(job);
//! let first = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {})?;
//! assert_eq!(first.ran(), ["hello", "shout"]);
//! let second = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {})?;
//! assert!(second.ran().is_empty()); // memoized
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunked;
pub mod db;
mod engine;
pub mod error;
pub mod event;
pub mod io_manager;
pub mod job;
pub mod name;
pub mod plan;
mod schedule;
pub mod trace;
pub mod version;

pub use db::{OpVersion, VersionDb};
pub use engine::Engine;
pub use error::PlanError;
pub use event::{
    RunCounts, RunEvent, RunOptions, RunReport, RunStatus, Selection, StepOutcome, StepReport,
};
pub use io_manager::{
    IoError, IoManager, MemoryIoManager, OutputContext, OutputValue, Restore, StoredOutput,
};
pub use job::{
    CodeSpec, InputEdge, InputFrom, InputSpec, Job, JobBuilder, JobError, Op, OpContext, OpFailure,
    OpFn, OutputSpec, Resource, SourceFn, SourceText, StepIdx, VersionMode,
};
pub use name::Name;
pub use plan::{
    FileChange, Plan, PlannedStep, RerunReason, ResourceCause, StepPlan, compute_reasons,
};
pub use trace::{
    CodeComponent, InputComponent, MemoryTraceStore, ResourceComponent, StepFailure, StepLog,
    Trace, TraceError, TraceOutput, TraceStore, VersionComponents,
};
pub use version::{
    CodeVersion, DataVersion, DefaultStrategy, Digest, ExplicitVersions, OutputVersion,
    ResourceVersion, SCHEME_VERSION, SourceHash, VersionStrategy,
};
