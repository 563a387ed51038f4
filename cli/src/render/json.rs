//! `--json` documents: DTOs with a `"schema": 1` field, built from engine and
//! store types here so those types need no output format of their own.

use serde::Serialize;
use trove_engine::{Plan, RerunReason, RunCounts, RunReport, RunStatus, StepOutcome, StepPlan};

use super::human;

/// The schema version of every JSON document.
pub const SCHEMA: u32 = 1;

/// A reason: a stable kind, the plain words, and the whole structured
/// reason (values in `text` are cut to one line; here they are whole).
#[derive(Debug, Serialize)]
pub struct ReasonJson {
    /// Machine name (`config_changed`, `no_previous_run`, ...).
    pub kind: &'static str,
    /// The plain words `trove plan` prints.
    pub text: String,
    /// The engine's reason, every field whole.
    pub detail: RerunReason,
}

/// Reasons as DTOs.
pub fn reasons(list: &[RerunReason]) -> Vec<ReasonJson> {
    list.iter()
        .map(|r| ReasonJson {
            kind: human::reason_kind(r),
            text: human::reason(r),
            detail: r.clone(),
        })
        .collect()
}

/// Outcome counts.
#[derive(Debug, Serialize)]
pub struct CountsJson {
    ran: usize,
    memoized: usize,
    cut_off: usize,
    failed: usize,
    skipped: usize,
    not_run: usize,
    restored: usize,
}

impl From<&RunCounts> for CountsJson {
    fn from(c: &RunCounts) -> Self {
        CountsJson {
            ran: c.ran,
            memoized: c.hit,
            cut_off: c.cut_off,
            failed: c.failed,
            skipped: c.skipped,
            not_run: c.not_run,
            restored: c.restored,
        }
    }
}

/// One step of a run.
#[derive(Debug, Serialize)]
pub struct StepJson {
    step: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<ReasonJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    restored: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_upstream: Option<String>,
}

/// A step outcome as a DTO.
pub fn step(step: &str, outcome: &StepOutcome) -> StepJson {
    let mut s = StepJson {
        step: step.to_owned(),
        outcome: "not_run",
        reasons: Vec::new(),
        duration_ms: None,
        message: None,
        exit_code: None,
        restored: Vec::new(),
        failed_upstream: None,
    };
    match outcome {
        StepOutcome::Hit { restored } => {
            s.outcome = "memoized";
            s.restored = restored.clone();
        }
        StepOutcome::CutOff { restored } => {
            s.outcome = "cut_off";
            s.restored = restored.clone();
        }
        StepOutcome::Ran { reasons: r, duration_ns } => {
            s.outcome = "ran";
            s.reasons = reasons(r);
            s.duration_ms = Some(duration_ns / 1_000_000);
        }
        StepOutcome::Failed { message, exit_code } => {
            s.outcome = "failed";
            s.message = Some(message.clone());
            s.exit_code = *exit_code;
        }
        StepOutcome::Skipped { failed_upstream } => {
            s.outcome = "skipped";
            s.failed_upstream = Some(failed_upstream.clone());
        }
        _ => {}
    }
    s
}

/// A run status as a word.
pub fn status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// `trove run --json`.
#[derive(Debug, Serialize)]
pub struct RunJson {
    schema: u32,
    run_id: String,
    job: String,
    status: &'static str,
    counts: CountsJson,
    duration_ms: u64,
    /// Answered by the up-to-date stamp (nothing changed since the last
    /// complete run), not by deriving every version.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stamp: bool,
    steps: Vec<StepJson>,
}

/// The run report as a DTO.
pub fn run(job: &str, report: &RunReport, stamp: bool) -> RunJson {
    RunJson {
        stamp,
        schema: SCHEMA,
        run_id: report.run_id.clone(),
        job: job.to_owned(),
        status: status(report.status),
        counts: (&report.counts).into(),
        duration_ms: report.duration_ns / 1_000_000,
        steps: report.steps.iter().map(|s| step(&s.step, &s.outcome)).collect(),
    }
}

/// One planned step.
#[derive(Debug, Serialize)]
pub struct PlannedJson {
    step: String,
    action: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<ReasonJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    waiting_on: Vec<String>,
}

fn planned(step: &str, plan: &StepPlan) -> PlannedJson {
    let (action, r, on) = match plan {
        StepPlan::Hit { .. } => ("memoized", Vec::new(), Vec::new()),
        StepPlan::Run(r) => ("run", reasons(r), Vec::new()),
        StepPlan::Waiting { on } => ("waiting", Vec::new(), on.clone()),
    };
    PlannedJson { step: step.to_owned(), action, reasons: r, waiting_on: on }
}

/// `trove plan --json`.
#[derive(Debug, Serialize)]
pub struct PlanJson {
    schema: u32,
    job: String,
    steps: Vec<PlannedJson>,
}

/// A plan as a DTO; `after`: for steps that run, the upstream steps that
/// run (or wait) before them (as `waiting_on`).
pub fn plan(
    job: &str,
    plan: &Plan,
    after: &std::collections::HashMap<String, Vec<String>>,
) -> PlanJson {
    let steps = plan
        .steps
        .iter()
        .map(|s| {
            let mut p = planned(&s.step, &s.plan);
            if let Some(first) = after.get(s.step.as_str()) {
                p.waiting_on.clone_from(first);
            }
            p
        })
        .collect();
    PlanJson { schema: SCHEMA, job: job.to_owned(), steps }
}

/// `trove why --json`.
#[derive(Debug, Serialize)]
pub struct WhyJson {
    schema: u32,
    #[serde(flatten)]
    step: PlannedJson,
    /// The upstream steps that cause a wait, nearest first.
    upstream: Vec<PlannedJson>,
    last_run: Option<String>,
}

/// The explanation of one step as a DTO.
pub fn why(plan: &Plan, step: &str, last_run: Option<String>) -> Option<WhyJson> {
    let planned_step = plan.step(step)?;
    Some(WhyJson {
        schema: SCHEMA,
        step: planned(step, &planned_step.plan),
        upstream: plan.causes(step).into_iter().map(|c| planned(&c.step, &c.plan)).collect(),
        last_run,
    })
}

/// One past run.
#[derive(Debug, Serialize)]
pub struct RunRecordJson {
    run_id: String,
    job: String,
    status: String,
    started_at_ms: u64,
    ended_at_ms: Option<u64>,
    duration_ms: u64,
    memoized: bool,
    tags: std::collections::BTreeMap<String, String>,
    command: String,
    counts: CountsJson,
}

/// A run record as a DTO.
pub fn run_record(r: &trove_store::RunRecord) -> RunRecordJson {
    RunRecordJson {
        run_id: r.run_id.clone(),
        job: r.job.clone(),
        status: human::run_state(r.status).to_owned(),
        started_at_ms: r.started_at_ms,
        ended_at_ms: r.ended_at_ms,
        duration_ms: r.duration_ns / 1_000_000,
        memoized: r.memoized,
        tags: r.tags.clone(),
        command: r.command.clone(),
        counts: (&r.counts).into(),
    }
}

/// `trove log --json`.
#[derive(Debug, Serialize)]
pub struct RunsJson {
    schema: u32,
    runs: Vec<RunRecordJson>,
}

/// Past runs as a DTO.
pub fn runs(list: &[trove_store::RunRecord]) -> RunsJson {
    RunsJson { schema: SCHEMA, runs: list.iter().map(run_record).collect() }
}

/// `trove show --json`.
#[derive(Debug, Serialize)]
pub struct ShowJson {
    schema: u32,
    run: RunRecordJson,
    steps: Vec<StepJson>,
}

/// One run step by step as a DTO.
pub fn show(detail: &trove_store::RunDetail) -> ShowJson {
    ShowJson {
        schema: SCHEMA,
        run: run_record(&detail.record),
        steps: detail.steps.iter().map(|s| step(&s.step, &s.outcome)).collect(),
    }
}

/// `trove log --step NAME --json`.
#[derive(Debug, Serialize)]
pub struct StepLogJson {
    schema: u32,
    step: String,
    run_id: String,
    failure: Option<String>,
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
    at_ms: u64,
}

/// A step's last log as a DTO.
pub fn step_log(log: &trove_store::StepLogRecord) -> StepLogJson {
    StepLogJson {
        schema: SCHEMA,
        step: log.step.clone(),
        run_id: log.run_id.clone(),
        failure: log.failure.clone(),
        exit_code: log.exit_code,
        stdout: String::from_utf8_lossy(&log.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&log.stderr).into_owned(),
        at_ms: log.at_ms,
    }
}

/// `trove gc --json`.
#[derive(Debug, Serialize)]
pub struct GcJson {
    schema: u32,
    #[serde(flatten)]
    report: trove_store::GcReport,
}

/// A gc report as a DTO.
pub fn gc(report: &trove_store::GcReport) -> GcJson {
    GcJson { schema: SCHEMA, report: report.clone() }
}

/// `trove verify --json`.
#[derive(Debug, Serialize)]
pub struct VerifyJson {
    schema: u32,
    clean: bool,
    #[serde(flatten)]
    report: trove_store::VerifyReport,
}

/// A verify report as a DTO.
pub fn verify(report: &trove_store::VerifyReport) -> VerifyJson {
    VerifyJson { schema: SCHEMA, clean: report.is_clean(), report: report.clone() }
}
