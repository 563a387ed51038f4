//! `trove log`: past runs with counts and durations, or (`--step NAME`) a
//! step's last standard output and error.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::LogArgs;
use crate::commands::Ctx;
use crate::render::{self, human, json};

/// Runs `trove log`.
pub fn exec(args: LogArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let ws = ctx.workspace()?;
    let Some(store) = crate::commands::open_existing(ctx, &ctx.store_dir(&ws))? else {
        if args.json {
            render::out_json(&json::runs(&[]))?;
        } else if args.step.is_some() {
            anyhow::bail!("nothing has run here yet: start with `trove run`");
        } else {
            render::out(&human::runs(&[]))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(step) = &args.step {
        let Some(log) =
            store.step_log(step).with_context(|| format!("reading the log of step `{step}`"))?
        else {
            // A step the pipeline does not have is a typo, not a step
            // that has not run yet (a pipeline that does not parse cannot
            // say which).
            if let Ok(pipeline) = ws.parse_cached(&store) {
                crate::commands::check_steps(&pipeline, [step])?;
            }
            anyhow::bail!("step `{step}` has no recorded output yet");
        };
        if args.json {
            render::out_json(&json::step_log(&log))?;
        } else {
            render::out(&human::step_log(&log))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runs = store.runs(args.limit).context("reading the runs")?;
    if args.json {
        render::out_json(&json::runs(&runs))?;
    } else {
        render::out(&human::runs(&runs))?;
    }
    Ok(ExitCode::SUCCESS)
}
