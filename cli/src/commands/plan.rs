//! `trove plan`: what a run would do, step by step, with the engine's
//! reasons in plain words. Runs nothing and touches no workspace file.

use std::process::ExitCode;

use trove_engine::{RerunReason, RunOptions, Selection, StepPlan};

use crate::args::PlanArgs;
use crate::commands::{Ctx, check_steps, load};
use crate::render::{self, human, json};

/// Runs `trove plan`.
pub fn exec(args: PlanArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let mut loaded = load(ctx, true)?;
    check_steps(&loaded.pipeline, &args.steps)?;
    let opts = RunOptions {
        selection: Selection { steps: args.steps.clone(), downstream: false },
        ..RunOptions::default()
    };
    let io = loaded.store.io_manager(&loaded.ws.root);
    let plan = loaded.engine.plan(&io, &loaded.store, &opts)?;
    // A step that runs for certain may still have to wait for upstream
    // steps that run first: named with it.
    let job = loaded.engine.job();
    let mut after = std::collections::HashMap::new();
    for s in &plan.steps {
        let (StepPlan::Run(_), Some(idx)) = (&s.plan, job.step_index(&s.step)) else { continue };
        let first: Vec<String> = job
            .upstream(idx)
            .iter()
            .map(|&u| job.step(u).name())
            .filter(|u| plan.step(u).is_some_and(|p| !matches!(p.plan, StepPlan::Hit { .. })))
            .map(str::to_owned)
            .collect();
        if !first.is_empty() {
            after.insert(s.step.to_string(), first);
        }
    }
    if args.json {
        render::out_json(&json::plan(&loaded.pipeline.name, &plan, &after))?;
    } else {
        // "No previous run" of a step that did run, and failed, says so.
        let mut failed = std::collections::HashSet::new();
        for s in &plan.steps {
            if let StepPlan::Run(r) = &s.plan
                && matches!(r.as_slice(), [RerunReason::NoPreviousTrace])
                && loaded.store.step_log(&s.step)?.is_some_and(|log| log.failure.is_some())
            {
                failed.insert(s.step.to_string());
            }
        }
        render::out(&human::plan(&plan, &after, &failed))?;
    }
    Ok(ExitCode::SUCCESS)
}
