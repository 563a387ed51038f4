//! `trove show RUN`: one run, step by step.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::ShowArgs;
use crate::commands::Ctx;
use crate::render::{self, human, json};

/// Runs `trove show`.
pub fn exec(args: ShowArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let ws = ctx.workspace()?;
    let store = ctx.open_store(&ctx.store_dir(&ws), true)?;
    let detail = store
        .run(&args.run)
        .with_context(|| format!("reading run {}", args.run))?
        .ok_or_else(|| anyhow::anyhow!("no run `{}`: `trove log` lists the runs", args.run))?;
    if args.json {
        render::out_json(&json::show(&detail))?;
    } else {
        render::out(&human::show(&detail))?;
    }
    Ok(ExitCode::SUCCESS)
}
