//! `trove verify`: checks every stored output against its data version.
//! Corrupt blobs are quarantined (the steps that need them run again);
//! problems make the exit code 1.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::VerifyArgs;
use crate::commands::Ctx;
use crate::render::{self, human, json};

/// Runs `trove verify`.
pub fn exec(args: VerifyArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let ws = ctx.workspace()?;
    let store = ctx.open_store(&ctx.store_dir(&ws), false)?;
    let report = store.verify().context("verifying the store")?;
    if args.json {
        render::out_json(&json::verify(&report))?;
    } else {
        render::out(&human::verify(&report))?;
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_STEP_FAILED) })
}
