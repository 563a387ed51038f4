//! Up-to-date stamps: answering "is everything already built?" from stat
//! data alone, the way ninja answers it, without giving up content checks.
//!
//! A full no-op run parses the pipeline, hashes sources through the stat
//! cache, computes every version and looks every output up. When the
//! previous run of the same pipeline ran the whole job and succeeded, all of
//! that has one answer as long as nothing it read has changed: every step is
//! a hit. A [`Stamp`] records what that run read — a key digest the caller
//! derives from the pipeline text and everything else that is not a file, the
//! declared environment, the outputs of version probes, and the stat-cache
//! entry of every file (sources, code files, workspace copies of outputs) —
//! and [`Store::check_stamp`] re-stats those files in parallel. Equal stats
//! mean equal content under exactly the rule of the stat cache
//! ([`stat_cache`](crate::stat_cache)): an entry written within the racy
//! window of the file's mtime is re-hashed, never trusted.
//!
//! **Invariant:** a stamp only ever vouches for what a run actually used.
//! [`Store::stamp_update`] accepts a file only if its stat now equals the
//! stat-cache entry the run hashed it through; a file changed during the run
//! (or a directory, whose stat says nothing of its content) means no stamp.
//! Anything that removes records or blobs (`gc`, `verify`) clears every
//! stamp in the same transaction, so a stamp never outlives the outputs it
//! vouches for.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use trove_engine::Digest;

use crate::record::{RecordKind, StatEntry, StatKind, decode, encode};
use crate::stat_cache::{FileStat, hash_against, is_fresh, same_stat};
use crate::trace_db::{STAMPS, db_err, get_in};
use crate::{Store, StoreError, check_rel};

/// What a complete, successful run of a pipeline read, besides its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampInputs {
    /// The caller's digest of everything else that decides the run (the
    /// pipeline text, the workspace root, the tool and scheme versions).
    pub key: Digest,
    /// The job's name.
    pub job: String,
    /// Declared environment variables and their values.
    pub env: Vec<(String, Option<String>)>,
    /// Version probes (a resource's `version_cmd`) and what they printed.
    pub probes: Vec<(String, String)>,
    /// The steps, in the order of the run's report.
    pub steps: Vec<String>,
}

/// A stored stamp: [`StampInputs`] plus the stat-cache entry of each file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// What the run read besides its files.
    pub inputs: StampInputs,
    files: Vec<(String, StatEntry)>,
}

impl Stamp {
    /// A stamp of `inputs` and these stat-cache entries.
    #[cfg(test)]
    pub(crate) fn from_parts(inputs: StampInputs, files: Vec<(String, StatEntry)>) -> Stamp {
        Stamp { inputs, files }
    }
}

/// A change to the stamp of a slot, committed with the run's end
/// ([`Store::finish_run_stamped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StampUpdate {
    /// Store this stamp.
    Put {
        /// The slot (the pipeline file's path).
        slot: String,
        /// The stamp.
        stamp: Stamp,
    },
    /// Remove the slot's stamp: the run may have changed what it vouched for.
    Remove {
        /// The slot.
        slot: String,
    },
}

/// Writes `update` in `txn`.
pub(crate) fn apply(
    txn: &redb::WriteTransaction,
    path: &Path,
    update: &StampUpdate,
) -> Result<(), StoreError> {
    let e = db_err(path);
    let mut table = txn.open_table(STAMPS).map_err(|x| e(&x))?;
    match update {
        StampUpdate::Put { slot, stamp } => {
            table
                .insert(slot.as_bytes(), encode(RecordKind::Stamp, stamp).as_slice())
                .map_err(|x| e(&x))?;
        }
        StampUpdate::Remove { slot } => {
            table.remove(slot.as_bytes()).map_err(|x| e(&x))?;
        }
    }
    Ok(())
}

/// The answer of [`Store::check_stamp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StampCheck {
    /// Every file is as the run left it. `refreshed`: racy entries were
    /// re-hashed and updated in the stamp; [`Store::refresh_stamp`] keeps
    /// that work for the next check.
    UpToDate {
        /// Whether the stamp changed.
        refreshed: bool,
    },
    /// These files changed, are missing, or could not be read (sorted).
    Changed(Vec<String>),
}

impl Store {
    /// The stamp stored under `slot` (the pipeline file's path). An
    /// unreadable stamp counts as none: the caller does the full run.
    pub fn stamp(&self, slot: &str) -> Result<Option<Stamp>, StoreError> {
        let txn = self.read_txn()?;
        let Some(bytes) = get_in(self.db_path(), &txn, STAMPS, slot.as_bytes())? else {
            return Ok(None);
        };
        Ok(decode::<Stamp>(RecordKind::Stamp, &bytes).ok())
    }

    /// Re-stats every file of `stamp` under `root`, in parallel. A file
    /// whose entry was racy when stamped is hashed again, and its entry
    /// refreshed in `stamp` if the content is the same.
    ///
    /// Every file found unchanged is remembered as verified for the rest of
    /// this process: if the run goes on the full way (some file changed),
    /// sources and workspace outputs that this check just proved unchanged
    /// are not statted and looked up one by one again.
    pub fn check_stamp(&self, root: &Path, stamp: &mut Stamp) -> StampCheck {
        let checked: Vec<Result<bool, String>> = stamp
            .files
            .par_iter_mut()
            .map(|(rel, entry)| still_fresh(root, rel, entry).ok_or_else(|| rel.clone()))
            .collect();
        let mut changed = Vec::new();
        let mut refreshed = false;
        let mut verified = std::collections::HashMap::with_capacity(stamp.files.len());
        for ((rel, entry), result) in stamp.files.iter().zip(checked) {
            match result {
                Ok(r) => {
                    refreshed |= r;
                    if r {
                        self.stage_stat(rel, entry.clone());
                    }
                    verified.insert(rel.clone(), entry.clone());
                }
                Err(rel) => changed.push(rel),
            }
        }
        self.set_verified(verified);
        if changed.is_empty() {
            StampCheck::UpToDate { refreshed }
        } else {
            changed.sort_unstable();
            StampCheck::Changed(changed)
        }
    }

    /// The stamp of a complete, successful run under `slot`, for the files
    /// `paths` (workspace-relative), for [`Store::finish_run_stamped`] to
    /// commit with the run's end; or the removal of the slot's stamp when a
    /// file is a directory or changed since the run hashed it.
    pub fn stamp_update(
        &self,
        slot: &str,
        root: &Path,
        inputs: StampInputs,
        paths: &[String],
    ) -> StampUpdate {
        let files: Option<Vec<(String, StatEntry)>> = paths
            .par_iter()
            .map(|rel| {
                check_rel(rel).ok()?;
                // Verified unchanged at the start of this run and not
                // written since: its entry stands. (Should the file have
                // changed after all, the next check sees a different stat:
                // a stale entry can only cost a full run, never a wrong hit.)
                if let Some(entry) = self.verified_entry(rel) {
                    return Some((rel.clone(), entry));
                }
                let stat = FileStat::of(&root.join(rel)).ok()?;
                let entry = self.stat_entry(rel)?;
                // The run's view of the file is the entry's: only a file
                // whose stat has not moved since is vouched for.
                (stat.kind == StatKind::File && same_stat(&entry, &stat))
                    .then(|| (rel.clone(), entry))
            })
            .collect();
        match files {
            Some(files) => {
                StampUpdate::Put { slot: slot.to_owned(), stamp: Stamp { inputs, files } }
            }
            None => StampUpdate::Remove { slot: slot.to_owned() },
        }
    }

    /// Writes back a stamp whose racy entries [`Store::check_stamp`]
    /// refreshed, so the next check trusts their stat.
    pub fn refresh_stamp(&self, slot: &str, stamp: &Stamp) -> Result<(), StoreError> {
        self.put_stamp(slot, stamp)
    }

    fn put_stamp(&self, slot: &str, stamp: &Stamp) -> Result<(), StoreError> {
        self.put_one(STAMPS, slot.as_bytes(), &encode(RecordKind::Stamp, stamp))
    }
}

/// Whether the file still matches its stamped entry (`None`: it does not);
/// a racy entry is re-hashed and, if the content is the same, refreshed in
/// place (`Some(true)`).
fn still_fresh(root: &Path, rel: &str, entry: &mut StatEntry) -> Option<bool> {
    let full = root.join(rel);
    let stat = FileStat::of(&full).ok()?;
    if is_fresh(entry, &stat) {
        return Some(false);
    }
    if !same_stat(entry, &stat) || stat.kind != StatKind::File {
        return None;
    }
    // Racy: the stat cannot tell a same-tick rewrite apart, the content can.
    let file = std::fs::File::open(&full).ok()?;
    let hashed = hash_against(file, &full, stat).ok()?;
    if hashed.data_version != entry.data_version || hashed.bytes != stat.size {
        return None;
    }
    if let Some(fresh) = hashed.entry {
        *entry = fresh;
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::DataVersion;

    fn store(dir: &Path) -> Store {
        Store::open(&dir.join(".trove"), &crate::OpenOptions::default(), &mut |_| {})
            .expect("store")
    }

    #[test]
    fn files_found_unchanged_are_verified_for_the_rest_of_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (f, text) in [("a", "aaa"), ("b", "bbb")] {
            std::fs::write(dir.path().join(f), text).expect("write");
        }
        let entry = |f: &str, text: &[u8]| {
            let stat = FileStat::of(&dir.path().join(f)).expect("stat");
            (f.to_owned(), stat.entry(DataVersion::of_bytes(text), stat.mtime_ns + 10_000_000_000))
        };
        let inputs = StampInputs {
            key: Digest([0; 32]),
            job: "j".into(),
            env: Vec::new(),
            probes: Vec::new(),
            steps: Vec::new(),
        };
        let mut stamp = Stamp::from_parts(inputs, vec![entry("a", b"aaa"), entry("b", b"bbb")]);
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(dir.path().join("b"), "BBBB").expect("rewrite");
        let store = store(dir.path());
        assert_eq!(
            store.check_stamp(dir.path(), &mut stamp),
            StampCheck::Changed(vec!["b".into()])
        );
        assert_eq!(store.verified("a"), Some(DataVersion::of_bytes(b"aaa")));
        assert_eq!(store.verified("b"), None);
        // The changed file is hashed for real.
        assert_eq!(store.hash_path(dir.path(), "b").expect("hash"), DataVersion::of_bytes(b"BBBB"));
        assert_eq!(store.hash_path(dir.path(), "a").expect("hash"), DataVersion::of_bytes(b"aaa"));
    }

    fn stamp_of(path: &Path, rel: &str, data: DataVersion, hashed_at_ns: i128) -> Stamp {
        let stat = FileStat::of(&path.join(rel)).expect("stat");
        let inputs = StampInputs {
            key: Digest([0; 32]),
            job: "j".into(),
            env: Vec::new(),
            probes: Vec::new(),
            steps: vec!["s".into()],
        };
        Stamp::from_parts(inputs, vec![(rel.to_owned(), stat.entry(data, hashed_at_ns))])
    }

    #[test]
    fn a_racy_entry_is_checked_by_content_and_refreshed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"abc").expect("write");
        let stat = FileStat::of(&dir.path().join("f")).expect("stat");
        // Hashed in the same instant as the write: the stat proves nothing.
        let racy_at = stat.mtime_ns;
        let mut wrong = stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abd"), racy_at);
        let store = store(dir.path());
        assert_eq!(
            store.check_stamp(dir.path(), &mut wrong),
            StampCheck::Changed(vec!["f".into()])
        );
        let mut right = stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abc"), racy_at);
        assert_eq!(
            store.check_stamp(dir.path(), &mut right),
            StampCheck::UpToDate { refreshed: true }
        );
    }

    #[test]
    fn a_settled_entry_is_trusted_by_stat_and_any_stat_change_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"abc").expect("write");
        let stat = FileStat::of(&dir.path().join("f")).expect("stat");
        let settled_at = stat.mtime_ns + 10_000_000_000;
        // The stat cache's rule: a settled entry is not re-hashed.
        let mut stamp = stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abc"), settled_at);
        let store = store(dir.path());
        assert_eq!(
            store.check_stamp(dir.path(), &mut stamp),
            StampCheck::UpToDate { refreshed: false }
        );
        // Same size, a later clock tick (the entry claims to be hashed 10 s
        // after the first write, so a same-tick rewrite is out of scope).
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(dir.path().join("f"), b"xyz").expect("rewrite");
        let mut again = stamp.clone();
        let check = store.check_stamp(dir.path(), &mut again);
        assert_eq!(check, StampCheck::Changed(vec!["f".into()]));
        std::fs::remove_file(dir.path().join("f")).expect("remove");
        assert_eq!(
            store.check_stamp(dir.path(), &mut stamp),
            StampCheck::Changed(vec!["f".into()])
        );
    }
}
