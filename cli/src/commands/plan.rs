//! `trove plan`: what a run would do, step by step, with the engine's
//! reasons in plain words. Runs nothing and touches no workspace file.

use std::process::ExitCode;

use trove_engine::{RunOptions, Selection, StepPlan, TraceStore as _};

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
    // A waiting step that never ran will run whatever its upstream writes.
    let mut untraced = Vec::new();
    for s in &plan.steps {
        if matches!(s.plan, StepPlan::Waiting { .. })
            && loaded.store.latest_trace(&s.step)?.is_none()
        {
            untraced.push(s.step.to_string());
        }
    }
    if args.json {
        render::out_json(&json::plan(&loaded.pipeline.name, &plan, &untraced))?;
    } else {
        render::out(&human::plan(&plan, &untraced))?;
    }
    Ok(ExitCode::SUCCESS)
}
