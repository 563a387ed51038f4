//! `trove gc`: removes old runs and the stored outputs no kept run needs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::args::GcArgs;
use crate::commands::Ctx;
use crate::render::{self, human, json};

/// Runs `trove gc`.
pub fn exec(args: GcArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let ws = ctx.workspace()?;
    let store = ctx.open_store(&ctx.store_dir(&ws), false)?;
    let policy = trove_store::GcPolicy {
        keep_runs: args.keep_runs,
        older_than: args.older_than.map(Duration::from_millis),
        max_size: args.max_size,
        include_latest: false,
        dry_run: args.dry_run,
    };
    let report = store.gc(&policy).context("collecting garbage")?;
    if args.json {
        render::out_json(&json::gc(&report))?;
    } else {
        render::out(&human::gc(&report))?;
        if let Some(budget) = args.max_size
            && report.bytes_kept > budget
        {
            human::note(&format!(
                "note: the {} kept exceed --max-size {}: they are every step's latest outputs, \
                 which gc keeps so the next run stays memoized",
                human::bytes(report.bytes_kept),
                human::bytes(budget)
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
