//! The no-op shortcut of `trove run`: when nothing the last complete run
//! read has changed, answer "every step is memoized" from an up-to-date
//! stamp ([`trove_store::Stamp`]) without parsing, hashing or planning.
//!
//! Why it is sound: a plain run (whole job, memoized, nothing forced) is a
//! function of the pipeline text, the workspace root, this trove's version
//! and version scheme, the declared environment, the resources'
//! `version_cmd` outputs, the content of every source and code file, the
//! workspace copies of outputs, and the store's records. After such a run
//! succeeded, [`stamp_after`] records all of it (files through their
//! stat-cache entries, which the store accepts only if they still describe
//! what the run hashed); [`check`] compares each again — re-running the
//! probes, re-stating the files — and only an exact match lets the run be
//! reported as all hits. Records only disappear through `gc` and `verify`,
//! which drop every stamp. `--full-check` skips the shortcut.
//!
//! When only source and code files differ ([`Answer::Changed`]), the same
//! argument covers every step those files do not reach: its inputs,
//! definition and outputs are the stamped run's, so it is a hit. The run
//! then builds the job of the reached steps alone (decoded alone from the
//! parse cache: [`crate::pipeline::Reached`], `build_cut`), reading their
//! upstream outputs from outside it (`InputFrom::Outside`, which versions
//! them exactly as the whole job does under early cutoff), and reports the
//! rest as hits ([`with_untouched_hits`]). A one-file edit then costs the
//! stamp check plus the steps it reaches, not a build of the whole job.

use std::path::Path;

use trove_engine::{Digest, RunReport, RunStatus};
pub use trove_store::StampInputs;
use trove_store::{LockedStore, StampCheck, StampUpdate, Store};

use crate::pipeline::Workspace;

/// Bump when what a stamp key covers changes.
const STAMP_SCHEME: u32 = 1;

/// The stamp slot of a workspace: its pipeline file.
pub fn slot(ws: &Workspace) -> String {
    ws.file.to_string_lossy().into_owned()
}

/// Everything a plain run depends on that is neither a file nor the
/// environment: the pipeline text, the workspace root and the versions of
/// trove, of its version scheme and of this key.
pub fn key(ws: &Workspace) -> Digest {
    *ws.key.get_or_init(|| key_of(ws))
}

fn key_of(ws: &Workspace) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("trove 2026 up-to-date stamp key");
    for field in [
        STAMP_SCHEME.to_le_bytes().as_slice(),
        trove_engine::SCHEME_VERSION.to_le_bytes().as_slice(),
        env!("CARGO_PKG_VERSION").as_bytes(),
        ws.root.as_os_str().as_encoded_bytes(),
        ws.text.as_bytes(),
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    Digest(*h.finalize().as_bytes())
}

/// What the stamp says of a plain run.
#[derive(Debug)]
pub enum Answer {
    /// Nothing changed since the stamped run: the job name and its steps in
    /// report order, every one a hit.
    UpToDate(String, Vec<String>),
    /// Only these files changed (sorted); everything else the stamped run
    /// read — the pipeline text, the environment, the probes — is the same,
    /// so only the steps these files reach can differ from that run.
    Changed(Box<StampInputs>, Vec<String>),
    /// No stamp, or something other than files changed: the full path.
    Full,
}

/// Checks the stamp of the workspace and opens the store with `open`. The
/// stamp is read before the database, so re-stating the files (and running
/// the probes) overlaps the open, which waits on the disk. The files are
/// checked even when something else changed: those found unchanged are then
/// not statted again by the full run.
pub fn check(
    ws: &Workspace,
    locked: LockedStore,
    open: impl FnOnce(LockedStore) -> anyhow::Result<Store>,
) -> anyhow::Result<(Store, Answer)> {
    let slot = slot(ws);
    let Some(mut stamp) = locked.stamp(&slot) else {
        return Ok((open(locked)?, Answer::Full));
    };
    // Probes run commands: only while nothing else has differed.
    let same_text = stamp.inputs.key == key(ws)
        && stamp.inputs.env.iter().all(|(name, value)| crate::command::env_var(name) == *value);
    let probes = if same_text { stamp.inputs.probes.clone() } else { Vec::new() };
    let (store, checked, probes_same) = std::thread::scope(|threads| {
        let probing = (!probes.is_empty()).then(|| {
            threads.spawn(|| {
                probes.iter().all(|(cmd, printed)| {
                    crate::command::version_of(&ws.root, cmd).ok().as_ref() == Some(printed)
                })
            })
        });
        let root = &ws.root;
        let stamp = &mut stamp;
        let statting = threads.spawn(move || trove_store::check_files(root, stamp));
        let store = open(locked);
        let checked = statting.join();
        let probes_same = probing.map_or(Ok(true), |p| p.join());
        (store, checked, probes_same)
    });
    let store = store?;
    let bug = || anyhow::anyhow!("the up-to-date check stopped: this is a bug in trove");
    let checked = checked.map_err(|_| bug())?;
    let same = same_text && probes_same.map_err(|_| bug())?;
    match store.accept_check(&mut stamp, checked) {
        StampCheck::UpToDate { refreshed } if same => {
            // Keeping the re-hashed entries only spares the next check
            // their hashing: a failure to write them costs nothing else.
            if refreshed {
                let _ = store.refresh_stamp(&slot, &stamp.inputs);
            }
            Ok((store, Answer::UpToDate(stamp.inputs.job, stamp.inputs.steps)))
        }
        StampCheck::Changed(files) if same => {
            Ok((store, Answer::Changed(Box::new(stamp.inputs), files)))
        }
        _ => Ok((store, Answer::Full)),
    }
}

/// After a cut ran: its report completed with the stamped run's other steps
/// as hits ([`with_untouched_hits`]), and the material of the next stamp
/// given the stamped run's environment and probes, which the stamp check
/// found unchanged (the cut declared only its own steps').
pub fn complete_cut(
    report: RunReport,
    stamped: &StampInputs,
    material: &mut StampMaterial,
) -> RunReport {
    material.env.clone_from(&stamped.env);
    material.probes.clone_from(&stamped.probes);
    with_untouched_hits(report, &stamped.steps)
}

/// The report of a run of the steps a change reaches (`cut`), completed
/// with the other steps of the stamped run (`steps`, in its report order)
/// as hits: their inputs, definitions and outputs are all as that run left
/// them, which the stamp check just proved.
pub fn with_untouched_hits(mut cut: RunReport, steps: &[String]) -> RunReport {
    let mut ran: std::collections::HashMap<String, trove_engine::StepReport> =
        cut.steps.drain(..).map(|s| (s.step.to_string(), s)).collect();
    let mut untouched = 0;
    cut.steps = steps
        .iter()
        .map(|step| {
            ran.remove(step).unwrap_or_else(|| {
                untouched += 1;
                trove_engine::StepReport {
                    step: step.as_str().into(),
                    outcome: trove_engine::StepOutcome::Hit { restored: Vec::new() },
                }
            })
        })
        .collect();
    // Every step of the cut is a step of the stamped run (the pipeline text
    // is the same); should one not be, it is still reported.
    cut.steps.extend(ran.into_values());
    cut.counts.hit += untouched;
    cut
}

/// After a run: its stamp if it was a plain run of the whole job that
/// succeeded; otherwise the removal of the stamp it may have invalidated.
/// The caller commits it with the run's end
/// ([`Store::finish_run_stamped`]).
pub fn stamp_after(
    ws: &Workspace,
    store: &Store,
    job: &str,
    built: &StampMaterial,
    report: &RunReport,
    plain: bool,
) -> StampUpdate {
    let slot = slot(ws);
    if !plain || report.status != RunStatus::Succeeded {
        return StampUpdate::Remove { slot };
    }
    let inputs = StampInputs {
        key: key(ws),
        job: job.to_owned(),
        env: built.env.clone(),
        probes: built.probes.clone(),
        steps: report.steps.iter().map(|s| s.step.to_string()).collect(),
    };
    store.stamp_update(&slot, &ws.root, inputs, built.files.as_deref())
}

/// What [`stamp_after`] needs of a [`crate::pipeline::Built`] job.
#[derive(Debug, Clone, Default)]
pub struct StampMaterial {
    /// Declared environment variables and their values.
    pub env: Vec<(String, Option<String>)>,
    /// `version_cmd`s and their outputs.
    pub probes: Vec<(String, String)>,
    /// Every file the job reads or writes; `None`: those of the stamp the
    /// run was checked against (a cut of the same pipeline text).
    pub files: Option<Vec<String>>,
}

/// The report of a run answered by the stamp: every step a hit.
pub fn all_hits(
    run_id: String,
    steps: Vec<String>,
    tags: std::collections::BTreeMap<String, String>,
) -> RunReport {
    let n = steps.len();
    RunReport {
        run_id,
        status: RunStatus::Succeeded,
        counts: trove_engine::RunCounts { hit: n, ..Default::default() },
        steps: steps
            .into_iter()
            .map(|step| trove_engine::StepReport {
                step: step.into(),
                outcome: trove_engine::StepOutcome::Hit { restored: Vec::new() },
            })
            .collect(),
        tags,
        duration_ns: 0,
    }
}

/// Whether a store directory holds a database (the shortcut never creates
/// one).
pub fn store_exists(dir: &Path) -> bool {
    dir.join("trove.redb").is_file()
}
