//! `trove why STEP`: the full explanation for one step, including the
//! upstream chain that makes it wait or run.

use std::process::ExitCode;

use trove_engine::{RunOptions, Selection, TraceStore as _};

use crate::args::WhyArgs;
use crate::commands::{Ctx, check_steps, load};
use crate::render::{self, human, json};

/// Runs `trove why`.
pub fn exec(args: WhyArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let mut loaded = load(ctx, true)?;
    check_steps(&loaded.pipeline, [&args.step])?;
    let opts = RunOptions {
        selection: Selection { steps: vec![args.step.clone()], downstream: false },
        ..RunOptions::default()
    };
    let io = loaded.store.io_manager(&loaded.ws.root);
    let plan = loaded.engine.plan(&io, &loaded.store, &opts)?;
    let last_run = loaded.store.latest_trace(&args.step)?.map(|t| t.run_id.to_string());
    if args.json {
        let doc = json::why(&plan, &args.step, last_run)
            .ok_or_else(|| anyhow::anyhow!("step `{}` is not in the plan", args.step))?;
        render::out_json(&doc)?;
    } else {
        let mut text = human::why(&plan, &args.step, last_run.as_deref());
        // A step that never succeeded but did run says how its last run ended.
        if last_run.is_none()
            && let Some(log) = loaded.store.step_log(&args.step)?
            && let Some(failure) = &log.failure
        {
            let first = failure.lines().next().unwrap_or_default();
            text.push_str(&format!("  (its last run, {}, failed: {first})\n", log.run_id));
        }
        render::out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
