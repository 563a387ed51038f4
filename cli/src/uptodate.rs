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

use std::path::Path;

use trove_engine::{Digest, RunReport, RunStatus};
use trove_store::{StampCheck, StampInputs, Store};

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

/// The job name and its steps in report order, if nothing changed since the
/// stamped run (`None`: the run takes the full path). The files are checked
/// even when something else changed: those found unchanged are then not
/// statted again by the full run.
pub fn check(ws: &Workspace, store: &Store) -> anyhow::Result<Option<(String, Vec<String>)>> {
    let slot = slot(ws);
    let Some(mut stamp) = store.stamp(&slot)? else {
        return Ok(None);
    };
    // Probes run commands: only while nothing else has differed.
    let same = stamp.inputs.key == key(ws)
        && stamp.inputs.env.iter().all(|(name, value)| crate::command::env_var(name) == *value)
        && stamp.inputs.probes.iter().all(|(cmd, printed)| {
            crate::command::version_of(&ws.root, cmd).ok().as_ref() == Some(printed)
        });
    match store.check_stamp(&ws.root, &mut stamp) {
        StampCheck::UpToDate { refreshed } if same => {
            if refreshed {
                store.refresh_stamp(&slot, &stamp)?;
            }
            Ok(Some((stamp.inputs.job, stamp.inputs.steps)))
        }
        _ => Ok(None),
    }
}

/// After a run: stamps it if it was a plain run of the whole job that
/// succeeded; otherwise removes the stamp it may have invalidated.
pub fn stamp_after(
    ws: &Workspace,
    store: &Store,
    job: &str,
    built: &StampMaterial,
    report: &RunReport,
    plain: bool,
) -> anyhow::Result<()> {
    let slot = slot(ws);
    if !plain || report.status != RunStatus::Succeeded {
        store.remove_stamp(&slot)?;
        return Ok(());
    }
    let inputs = StampInputs {
        key: key(ws),
        job: job.to_owned(),
        env: built.env.clone(),
        probes: built.probes.clone(),
        steps: report.steps.iter().map(|s| s.step.to_string()).collect(),
    };
    store.write_stamp(&slot, &ws.root, inputs, &built.files)?;
    Ok(())
}

/// What [`stamp_after`] needs of a [`crate::pipeline::Built`] job.
#[derive(Debug, Clone, Default)]
pub struct StampMaterial {
    /// Declared environment variables and their values.
    pub env: Vec<(String, Option<String>)>,
    /// `version_cmd`s and their outputs.
    pub probes: Vec<(String, String)>,
    /// Every file the job reads or writes.
    pub files: Vec<String>,
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
