//! `trove run`: runs the job (or the named steps and their upstream),
//! memoized, with progress, and records the run in the store.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use trove_engine::{RunOptions, RunStatus, Selection};

use crate::args::RunArgs;
use crate::commands::{Ctx, Load, check_steps, load_for_run, load_with};
use crate::render::{self, human, json, progress};
use crate::uptodate;

/// Runs `trove run`.
pub fn exec(args: RunArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let started_at_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut tags: std::collections::BTreeMap<String, String> = args.tag.iter().cloned().collect();
    if args.no_memo {
        tags.insert("memoized".into(), "false".into());
    }
    let memoize = tags.get("memoized").is_none_or(|v| v != "false");
    // A plain run: the whole job, memoized, nothing forced. Only its
    // outcome is stamped, and only it may be answered by the stamp.
    let plain = memoize && args.steps.is_empty() && args.force.is_empty();
    let ws = ctx.workspace()?;
    let dir = ctx.store_dir(&ws);
    let (mut loaded, stamped) = if uptodate::store_exists(&dir) {
        match load_for_run(ctx, ws, &dir, plain && !args.full_check)? {
            Load::UpToDate { store, job, steps } => {
                let times = (started, started_at_ms);
                let code = up_to_date(&args, ctx, &store, (job, steps), tags, times)?;
                store.close_at_exit().context("closing the store")?;
                return Ok(code);
            }
            Load::Run { loaded, stamped } => (*loaded, stamped),
        }
    } else {
        // No store yet: a pipeline error is reported before one is made.
        let pipeline = ws.parse()?;
        let store = ctx.open_store(&dir, false)?;
        (load_with(ws, pipeline, store)?, None)
    };
    check_steps(&loaded.pipeline, args.steps.iter().chain(&args.force))?;
    let run_id = trove_store::Store::new_run_id();
    let opts = RunOptions {
        run_id: run_id.clone(),
        memoize,
        force: args.force.iter().cloned().collect(),
        selection: Selection { steps: args.steps.clone(), downstream: false },
        jobs: args.jobs.unwrap_or(0),
        fail_fast: args.fail_fast,
        tags: tags.clone(),
        cancel: Some(interrupt_flag()),
    };
    let job = loaded.pipeline.name.clone();
    loaded
        .store
        .begin_run(&trove_store::RunInfo {
            run_id: run_id.clone(),
            job: job.clone(),
            tags,
            started_at_ms,
            command: ctx.command_line.clone(),
            memoized: memoize,
        })
        .context("recording the run")?;
    // Commit finished steps from a thread of their own while the next
    // commands run, at most every 20 ms: no command waits for an fsync, a
    // commit covers every step finished meanwhile, and a crash loses only
    // the steps that were running or finished in the last 20 ms (they run
    // again).
    loaded.store.set_background_flush(Some(std::time::Duration::from_millis(20)));
    // The run's last steps commit with its end record, in one commit.
    loaded.store.set_end_with_finish_run(true);
    let paths = loaded
        .pipeline
        .ops
        .iter()
        .flat_map(|op| {
            op.outputs.iter().map(|o| ((op.name.clone(), o.name.clone()), o.path.clone()))
        })
        .collect();
    let mut progress = progress::Progress::new(progress::Mode::detect(args.json)).with_paths(paths);
    let io = loaded.store.io_manager(&loaded.ws.root);
    let result = loaded.engine.run(&io, &loaded.store, &opts, &mut |e| progress.event(e));
    progress.finish();
    let mut report = result.context("running the job")?;
    if let Some(inputs) = &stamped {
        report = uptodate::complete_cut(report, inputs, &mut loaded.stamp);
    }
    let stamp =
        uptodate::stamp_after(&loaded.ws, &loaded.store, &job, &loaded.stamp, &report, plain);
    loaded
        .store
        .finish_run_stamped(&report, Some(stamp))
        .context("recording the end of the run and its up-to-date stamp")?;
    if args.json {
        render::out_json(&json::run(&job, &report, false))?;
    } else {
        render::err(&human::failures(&report));
        if report.status == RunStatus::Cancelled {
            human::note(&format!("cancelled: {}", human::summary(&report)));
        } else {
            human::note(&human::summary(&report));
        }
    }
    // The process ends here: freeing the engine's and the pipeline's many
    // small allocations one by one would cost a tenth of a no-op run, and
    // redb's shutdown commit (four fsyncs) buys nothing the next open needs.
    std::mem::forget(loaded.engine);
    std::mem::forget(loaded.pipeline);
    loaded.store.close_at_exit().context("closing the store")?;
    Ok(match report.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(crate::EXIT_INTERRUPTED),
        _ => ExitCode::from(crate::EXIT_STEP_FAILED),
    })
}

/// A run answered by the up-to-date stamp: recorded like any run, reported
/// as every step memoized.
fn up_to_date(
    args: &RunArgs,
    ctx: &Ctx,
    store: &trove_store::Store,
    (job, steps): (String, Vec<String>),
    tags: std::collections::BTreeMap<String, String>,
    (started, started_at_ms): (std::time::Instant, u64),
) -> anyhow::Result<ExitCode> {
    let run_id = trove_store::Store::new_run_id();
    let info = trove_store::RunInfo {
        run_id: run_id.clone(),
        job: job.clone(),
        tags: tags.clone(),
        started_at_ms,
        command: ctx.command_line.clone(),
        memoized: true,
    };
    let mut report = uptodate::all_hits(run_id, steps, tags);
    report.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    store.record_run(&info, &report).context("recording the run")?;
    if args.json {
        render::out_json(&json::run(&job, &report, true))?;
    } else {
        human::note(&format!("{} (up to date)", human::summary(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's cancellation flag ([`crate::command::interruption`]), set by
/// the first Ctrl-C (or SIGTERM, SIGHUP): running steps finish (or fail,
/// when the terminal interrupted their commands too), nothing new starts,
/// and the run is recorded as cancelled. A second signal kills the running
/// commands and exits at once (see [`Signals`]).
fn interrupt_flag() -> Arc<AtomicBool> {
    static SIGNALS: Signals = Signals::new();
    let flag = crate::command::interruption();
    let handler_flag = Arc::clone(&flag);
    // Fails only if a handler is already set (a second run in one process).
    let _ = ctrlc::set_handler(move || match SIGNALS.heard(std::time::Instant::now()) {
        Heard::First => {
            handler_flag.store(true, Ordering::SeqCst);
            human::note("interrupted: finishing the running steps (Ctrl-C again to stop at once)");
        }
        Heard::Repeat => {}
        Heard::Again => {
            crate::command::kill_running_commands();
            std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
        }
    });
    flag
}

/// What a signal means, given the ones before it.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// The first: cancel the run.
    First,
    /// The first again, within [`SAME_SIGNAL`]: `timeout` signals trove and
    /// then its whole process group, trove included, so one interruption
    /// can arrive twice; no one presses Ctrl-C twice that fast.
    Repeat,
    /// A second one: stop at once.
    Again,
}

/// The time of the first signal of the run.
struct Signals {
    first: std::sync::OnceLock<std::time::Instant>,
}

impl Signals {
    const fn new() -> Signals {
        Signals { first: std::sync::OnceLock::new() }
    }

    fn heard(&self, now: std::time::Instant) -> Heard {
        match self.first.get() {
            None => {
                let _ = self.first.set(now);
                Heard::First
            }
            Some(first) if now.saturating_duration_since(*first) < SAME_SIGNAL => Heard::Repeat,
            Some(_) => Heard::Again,
        }
    }
}

/// How long after a first signal another counts as the same one.
const SAME_SIGNAL: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Heard, Signals};

    #[test]
    fn a_signal_right_after_the_first_is_the_same_and_a_later_one_stops() {
        let signals = Signals::new();
        let t = Instant::now();
        assert_eq!(signals.heard(t), Heard::First);
        assert_eq!(signals.heard(t + Duration::from_millis(1)), Heard::Repeat);
        assert_eq!(signals.heard(t + Duration::from_millis(49)), Heard::Repeat);
        assert_eq!(signals.heard(t + Duration::from_millis(50)), Heard::Again);
        assert_eq!(signals.heard(t + Duration::from_secs(3)), Heard::Again);
    }
}
