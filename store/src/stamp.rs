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
//! and [`check_files`] re-stats those files in parallel. Equal stats mean
//! equal content under exactly the rule of the stat cache
//! ([`stat_cache`](crate::stat_cache)): an entry written within the racy
//! window of the file's mtime is re-hashed, never trusted.
//!
//! # Where a stamp lives, and why that is sound
//!
//! A stamp is a file of its own, `stamps/<slot digest>` in the store
//! directory, not a redb record: it can then be read before the database is
//! open, so re-stating the workspace overlaps opening it (the open waits on
//! an fsync), and a run that rewrites its stamp does not rewrite a large
//! record in the commit it waits for. It is written after the commit that
//! records the run's end (rewritten in place, no fsync: a lost or torn stamp
//! only costs the next run the full path, and a checksum rejects a torn one).
//!
//! A stamp vouches for a state of the workspace: every file at the stat it
//! records. Whenever the workspace is in that state again, every output the
//! stamped run made is what it made, and the store still holds what that run
//! stored — the store only gains records, except where a commit takes one
//! back: `gc` and `verify` remove records; a forced or unmemoized re-run
//! (perhaps from another checkout sharing the store) replaces an output
//! with other bytes at the same version; a step without outputs, done
//! exactly when its latest trace is at its version, gets a latest trace at
//! another version (another pipeline's step of the same name). Each of
//! those replaces the database's *stamp epoch* (a random value in its
//! `meta` table) in the transaction that takes the record back, and a stamp
//! answers only while its epoch is the database's ([`Store::accept_check`]);
//! a fresh database has a fresh epoch. So a stamp left behind by a crash between a
//! commit and the stamp's rewrite, or one that a later partial run did not
//! manage to remove, is still a true statement: the check compares every
//! file, and any file that differs takes the run off the shortcut.
//!
//! **Invariant:** a stamp only ever vouches for what a run actually used.
//! [`Store::stamp_update`] accepts a file only if its stat now equals the
//! stat-cache entry the run hashed it through; a file changed during the run
//! (or a directory, whose stat says nothing of its content) means no stamp.
//!
//! # File format
//!
//! ```text
//! offset  size      field
//! 0       8         magic "trvstamp"
//! 8       4         format version, u32 LE (FORMAT)
//! 12      16        the database's stamp epoch
//! 28      4         n = length of the inputs, u32 LE
//! 32      n         StampInputs, postcard
//! .       4         files, u32 LE
//! .       4         p = length of the paths, u32 LE
//! .       p         the paths, UTF-8, sorted, back to back
//! .       4*files   where each path ends, u32 LE
//! .       105*files each file's stat-cache entry (ENTRY bytes, fixed layout)
//! .       32        blake3 of everything before
//! ```
//!
//! Fixed-size entries and one string of paths decode without an allocation
//! per file (a stamp of 100k files is read on every no-op run). A file that
//! does not decode — cut short, flipped, another format — is no stamp.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use trove_engine::{DataVersion, Digest};

use crate::record::{StatEntry, StatKind};
use crate::stat_cache::{RootDir, hash_against, is_fresh, same_stat};
use redb::ReadableTable as _;

use crate::trace_db::{CACHE, META, STAMPS, db_err};
use crate::{Fs, Store, StoreError, check_rel};

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

/// Workspace files and their stat-cache entries, sorted by path, the paths
/// in one string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StampFiles {
    paths: String,
    ends: Vec<u32>,
    entries: Vec<StatEntry>,
}

impl StampFiles {
    /// From `(path, entry)` pairs sorted by path, without duplicates.
    fn from_sorted<'a>(files: impl IntoIterator<Item = (&'a str, StatEntry)>) -> StampFiles {
        let mut out = StampFiles::default();
        for (path, entry) in files {
            out.paths.push_str(path);
            out.ends.push(u32::try_from(out.paths.len()).unwrap_or(u32::MAX));
            out.entries.push(entry);
        }
        out
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The path of file `i`.
    fn path(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.paths[start..self.ends[i] as usize]
    }

    /// Where `rel` is.
    fn find(&self, rel: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path(mid).cmp(rel) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// A stamp: [`StampInputs`] plus the stat-cache entry of each file, and the
/// stamp epoch of the database it was written for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// What the run read besides its files.
    pub inputs: StampInputs,
    files: StampFiles,
    epoch: Epoch,
}

/// A database's stamp epoch ([`Store::accept_check`]).
pub(crate) type Epoch = [u8; 16];

impl Stamp {
    /// A stamp of `inputs` and these stat-cache entries (any order).
    #[cfg(test)]
    pub(crate) fn from_parts(inputs: StampInputs, mut files: Vec<(String, StatEntry)>) -> Stamp {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let files = StampFiles::from_sorted(files.iter().map(|(p, e)| (p.as_str(), e.clone())));
        Stamp { inputs, files, epoch: [0; 16] }
    }

    /// The files it vouches for.
    pub fn files(&self) -> &StampFiles {
        &self.files
    }
}

/// A change to the stamp of a slot, made with the run's end
/// ([`Store::finish_run_stamped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StampUpdate {
    /// Store this stamp.
    Put {
        /// The slot (the pipeline file's path).
        slot: String,
        /// The stamp.
        stamp: Box<Stamp>,
    },
    /// Remove the slot's stamp: the run may have changed what it vouched for.
    Remove {
        /// The slot.
        slot: String,
    },
}

/// What [`check_files`] found: per file, unchanged (`Some(refreshed)`) or
/// changed (`None`).
#[derive(Debug)]
pub struct FilesChecked(Vec<Option<bool>>);

/// The answer of [`Store::accept_check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StampCheck {
    /// Every file is as the run left it. `refreshed`: racy entries were
    /// re-hashed and updated; [`Store::refresh_stamp`] keeps that work for
    /// the next check.
    UpToDate {
        /// Whether the stamp changed.
        refreshed: bool,
    },
    /// These files changed, are missing, or could not be read (sorted).
    Changed(Vec<String>),
    /// The stamp was written for a database that has since lost records
    /// (`gc`, `verify`) or been replaced: it answers nothing.
    Stale,
}

/// Re-stats every file of `stamp` under `root`, in parallel. A file whose
/// entry was racy when stamped is hashed again, and its entry refreshed in
/// `stamp` if the content is the same. Needs no store, so it can run while
/// the store opens; [`Store::accept_check`] then decides.
pub fn check_files(root: &Path, stamp: &mut Stamp) -> FilesChecked {
    let dir = RootDir::open(root);
    let files = &mut stamp.files;
    let (paths, ends) = (&files.paths, &files.ends);
    let check = |(i, entry): (usize, &mut StatEntry)| {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        still_fresh(&dir, &paths[start..ends[i] as usize], entry)
    };
    // In parallel even for a few thousand files, while the caller opens the
    // database: 2,000 stats took 1.2 ms this way against 3.7 ms on this
    // thread alone (edit-leaf of the 1k chain, medians of 40).
    FilesChecked(files.entries.par_iter_mut().enumerate().with_min_len(64).map(check).collect())
}

/// Whether the file still matches its stamped entry (`None`: it does not);
/// a racy entry is re-hashed and, if the content is the same, refreshed in
/// place (`Some(true)`).
fn still_fresh(dir: &RootDir, rel: &str, entry: &mut StatEntry) -> Option<bool> {
    let stat = dir.stat(rel).ok()?;
    if is_fresh(entry, &stat) {
        return Some(false);
    }
    if !same_stat(entry, &stat) || stat.kind != StatKind::File {
        return None;
    }
    // Racy: the stat cannot tell a same-tick rewrite apart, the content can.
    let file = std::fs::File::open(dir.path().join(rel)).ok()?;
    let hashed = hash_against(file, stat).ok()?;
    if hashed.data_version != entry.data_version || hashed.bytes != stat.size {
        return None;
    }
    if let Some(fresh) = hashed.entry {
        *entry = fresh;
    }
    Some(true)
}

/// Workspace files an up-to-date check of this process found unchanged
/// ([`Store::accept_check`]): the checked stamp's files, each still
/// trusted until this process writes or re-hashes it.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    files: StampFiles,
    trusted: Vec<bool>,
}

impl Verified {
    /// The entry of `rel`, if it was found unchanged and not touched since.
    pub(crate) fn entry(&self, rel: &str) -> Option<&StatEntry> {
        let i = self.files.find(rel)?;
        self.trusted[i].then(|| &self.files.entries[i])
    }

    /// `rel` was written or re-hashed: its checked entry no longer stands.
    pub(crate) fn supersede(&mut self, rel: &str) {
        if let Some(i) = self.files.find(rel) {
            self.trusted[i] = false;
        }
    }
}

/// The stamp file of `slot` in the store directory `dir`.
fn stamp_path(dir: &Path, slot: &str) -> PathBuf {
    let digest = blake3::hash(slot.as_bytes()).to_hex();
    dir.join("stamps").join(&digest[..16])
}

/// Reads the stamp of `slot` from the store directory `dir`; `None` if
/// there is none or it does not decode.
pub(crate) fn read(dir: &Path, slot: &str) -> Option<Stamp> {
    decode(&std::fs::read(stamp_path(dir, slot)).ok()?)
}

/// Writes the stamp of `slot` over the old one, in place. Not fsynced and
/// not atomic (see the module docs): a crash during the write leaves a
/// file whose checksum fails, which is no stamp. Only processes holding the
/// writer lock read stamps, so nobody reads one half written. (A temp file
/// and a rename cost a new inode and freeing the old one's blocks: 0.7 ms
/// of a 12 ms edit here, where the disk discards freed blocks at once.)
fn write(dir: &Path, fs: &Fs, slot: &str, stamp: &Stamp) -> std::io::Result<()> {
    fs.create_dir_all(&dir.join("stamps"))?;
    fs.rewrite(&stamp_path(dir, slot), &encode(stamp))
}

/// Removes the stamp of `slot`, if any.
fn remove(dir: &Path, fs: &Fs, slot: &str) -> std::io::Result<()> {
    match fs.remove_file(&stamp_path(dir, slot)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

const MAGIC: &[u8; 8] = b"trvstamp";
/// Bump when the layout of a stamp file changes (an old file is then no
/// stamp: one full run).
const FORMAT: u32 = 1;
/// The bytes of one file's entry.
const ENTRY: usize = 1 + 8 + 16 + 16 + 8 + 8 + 32 + 16;
const SUM: usize = 32;

fn encode(stamp: &Stamp) -> Vec<u8> {
    let inputs = postcard::to_allocvec(&stamp.inputs).unwrap_or_default();
    let files = &stamp.files;
    let mut out =
        Vec::with_capacity(48 + inputs.len() + files.paths.len() + files.len() * (4 + ENTRY) + SUM);
    let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&stamp.epoch);
    out.extend_from_slice(&u32_of(inputs.len()));
    out.extend_from_slice(&inputs);
    out.extend_from_slice(&u32_of(files.len()));
    out.extend_from_slice(&u32_of(files.paths.len()));
    out.extend_from_slice(files.paths.as_bytes());
    for end in &files.ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    for e in &files.entries {
        out.push(match e.kind {
            StatKind::File => 0,
            StatKind::Dir => 1,
        });
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&e.dev.to_le_bytes());
        out.extend_from_slice(&e.data_version.0.0);
        out.extend_from_slice(&e.hashed_at_ns.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Reads fixed-size fields off the front of a byte string.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.array()?)).ok()
    }
}

fn decode(bytes: &[u8]) -> Option<Stamp> {
    let body = bytes.get(..bytes.len().checked_sub(SUM)?)?;
    if blake3::hash(body).as_bytes() != &bytes[body.len()..] {
        return None;
    }
    let mut c = Cursor(body);
    if c.take(MAGIC.len())? != MAGIC || u32::from_le_bytes(c.array()?) != FORMAT {
        return None;
    }
    let epoch = c.array()?;
    let n_inputs = c.u32()?;
    let inputs: StampInputs = postcard::from_bytes(c.take(n_inputs)?).ok()?;
    let n = c.u32()?;
    let n_paths = c.u32()?;
    let paths = std::str::from_utf8(c.take(n_paths)?).ok()?.to_owned();
    let mut ends = Vec::with_capacity(n.min(body.len() / 4));
    let mut last = 0usize;
    for _ in 0..n {
        let end = c.u32()?;
        if end < last || end > paths.len() || !paths.is_char_boundary(end) {
            return None;
        }
        ends.push(u32::try_from(end).ok()?);
        last = end;
    }
    if c.0.len() != n.checked_mul(ENTRY)? {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = match c.take(1)?[0] {
            0 => StatKind::File,
            1 => StatKind::Dir,
            _ => return None,
        };
        entries.push(StatEntry {
            kind,
            size: u64::from_le_bytes(c.array()?),
            mtime_ns: i128::from_le_bytes(c.array()?),
            ctime_ns: i128::from_le_bytes(c.array()?),
            ino: u64::from_le_bytes(c.array()?),
            dev: u64::from_le_bytes(c.array()?),
            data_version: DataVersion(Digest(c.array()?)),
            hashed_at_ns: i128::from_le_bytes(c.array()?),
        });
    }
    let files = StampFiles { paths, ends, entries };
    // Lookups are binary searches: the paths must be strictly sorted.
    if (1..files.len()).any(|i| files.path(i - 1) >= files.path(i)) {
        return None;
    }
    Some(Stamp { inputs, files, epoch })
}

/// A fresh stamp epoch: no stamp written before it answers.
fn new_epoch() -> Epoch {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = blake3::Hasher::new_derive_key("trove 2026 stamp epoch");
    h.update(&std::process::id().to_le_bytes());
    h.update(&crate::stat_cache::now_ns().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    let mut epoch = [0u8; 16];
    epoch.copy_from_slice(&h.finalize().as_bytes()[..16]);
    epoch
}

/// In a transaction that takes records back (removes one, or replaces what
/// a stamped run found): no stamp written before answers
/// any more (a new epoch), and the stamps and parse cache trove once kept
/// in the database go too.
pub(crate) fn invalidate_all(txn: &redb::WriteTransaction, path: &Path) -> Result<(), StoreError> {
    let e = db_err(path);
    txn.open_table(META)
        .map_err(|x| e(&x))?
        .insert(b"stamp_epoch".as_slice(), new_epoch().as_slice())
        .map_err(|x| e(&x))?;
    for legacy in [STAMPS, CACHE] {
        txn.open_table(legacy).map_err(|x| e(&x))?.retain(|_, _| false).map_err(|x| e(&x))?;
    }
    Ok(())
}

/// In the transaction that records a run's end with a new stamp: the
/// database's epoch, made if it has none yet.
pub(crate) fn epoch_for_put(
    txn: &redb::WriteTransaction,
    path: &Path,
) -> Result<Epoch, StoreError> {
    let e = db_err(path);
    let mut meta = txn.open_table(META).map_err(|x| e(&x))?;
    let found: Option<Epoch> = meta
        .get(b"stamp_epoch".as_slice())
        .map_err(|x| e(&x))?
        .and_then(|v| v.value().try_into().ok());
    match found {
        Some(epoch) => Ok(epoch),
        None => {
            let epoch = new_epoch();
            meta.insert(b"stamp_epoch".as_slice(), epoch.as_slice()).map_err(|x| e(&x))?;
            Ok(epoch)
        }
    }
}

impl Store {
    /// The stamp of `slot` (the pipeline file's path), if there is one that
    /// decodes. Whether it still answers is [`Store::accept_check`]'s to say.
    pub fn stamp(&self, slot: &str) -> Option<Stamp> {
        read(self.dir(), slot)
    }

    /// Re-stats every file of `stamp` ([`check_files`]) and decides
    /// ([`Store::accept_check`]).
    pub fn check_stamp(&self, root: &Path, stamp: &mut Stamp) -> StampCheck {
        let checked = check_files(root, stamp);
        self.accept_check(stamp, checked)
    }

    /// What a stamp check found, given the stat half of it ([`check_files`]):
    /// up to date, these files changed, or stale (its epoch is not this
    /// database's).
    ///
    /// Every file found unchanged is remembered as verified for the rest of
    /// this process, whatever the answer (its content is what the entry
    /// says): if the run goes on the full way, sources and workspace outputs
    /// that this check just proved unchanged are not statted and looked up
    /// one by one again. The stamp's files move into the store for that;
    /// [`Store::stamp_update`] and [`Store::refresh_stamp`] take them from
    /// there.
    pub fn accept_check(&self, stamp: &mut Stamp, checked: FilesChecked) -> StampCheck {
        let files = std::mem::take(&mut stamp.files);
        let mut changed = Vec::new();
        let mut refreshed = false;
        let mut trusted = Vec::with_capacity(files.len());
        for (i, result) in checked.0.iter().enumerate() {
            match result {
                Some(r) => {
                    refreshed |= r;
                    if *r {
                        self.stage_stat(files.path(i), files.entries[i].clone());
                    }
                    trusted.push(true);
                }
                None => {
                    changed.push(files.path(i).to_owned());
                    trusted.push(false);
                }
            }
        }
        trusted.resize(files.len(), false);
        self.set_verified(Verified { files, trusted });
        if self.stamp_epoch() != Some(stamp.epoch) {
            StampCheck::Stale
        } else if changed.is_empty() {
            StampCheck::UpToDate { refreshed }
        } else {
            StampCheck::Changed(changed)
        }
    }

    /// The database's stamp epoch, if it has one.
    fn stamp_epoch(&self) -> Option<Epoch> {
        self.cached_get(META, b"stamp_epoch").ok()??.try_into().ok()
    }

    /// The stamp of a complete, successful run under `slot`, for the files
    /// `paths` (workspace-relative; `None`: the files of the stamp this
    /// process checked, which a run of the same pipeline text reads and
    /// writes), for [`Store::finish_run_stamped`] to make with the run's
    /// end; or the removal of the slot's stamp when a file is a directory or
    /// changed since the run hashed it.
    pub fn stamp_update(
        &self,
        slot: &str,
        root: &Path,
        inputs: StampInputs,
        paths: Option<&[String]>,
    ) -> StampUpdate {
        let verified = self.verified.read().ok();
        let verified = verified.as_deref();
        let dir = self.root_dir(root);
        // The run's view of a file is the entry it hashed it through: only a
        // file whose stat has not moved since is vouched for.
        let fresh = |rel: &str| -> Option<StatEntry> {
            check_rel(rel).ok()?;
            let stat = dir.stat(rel).ok()?;
            let entry = self.stat_entry(rel)?;
            (stat.kind == StatKind::File && same_stat(&entry, &stat)).then_some(entry)
        };
        let files = match (paths, verified) {
            // The checked stamp's files, in its order. Verified unchanged
            // at the start of this run and not written since, an entry
            // stands (should the file have changed after all, the next
            // check sees a different stat: a stale entry can only cost a
            // full run, never a wrong hit); the others are taken afresh.
            (None, Some(v)) => (0..v.files.len())
                .map(|i| {
                    if v.trusted[i] {
                        Some(v.files.entries[i].clone())
                    } else {
                        fresh(v.files.path(i))
                    }
                })
                .collect::<Option<Vec<StatEntry>>>()
                .map(|entries| StampFiles {
                    paths: v.files.paths.clone(),
                    ends: v.files.ends.clone(),
                    entries,
                }),
            // No stamp was checked: nothing to vouch for.
            (None, None) => None,
            (Some(paths), verified) => {
                let entry_of = |rel: &str| match verified.and_then(|v| v.entry(rel)) {
                    Some(entry) => Some(entry.clone()),
                    None => fresh(rel),
                };
                let mut sorted: Vec<&str> = paths.iter().map(String::as_str).collect();
                if !sorted.is_sorted() {
                    sorted.sort_unstable();
                }
                sorted.dedup();
                let entries: Option<Vec<StatEntry>> = if sorted.len() > 256 {
                    sorted.par_iter().with_min_len(64).map(|rel| entry_of(rel)).collect()
                } else {
                    sorted.iter().map(|rel| entry_of(rel)).collect()
                };
                entries.map(|entries| StampFiles::from_sorted(sorted.into_iter().zip(entries)))
            }
        };
        match files {
            Some(files) => StampUpdate::Put {
                slot: slot.to_owned(),
                stamp: Box::new(Stamp { inputs, files, epoch: [0; 16] }),
            },
            None => StampUpdate::Remove { slot: slot.to_owned() },
        }
    }

    /// Writes back the stamp an up-to-date check answered from, with the
    /// entries it re-hashed (racy ones), so the next check trusts their stat.
    pub fn refresh_stamp(&self, slot: &str, inputs: &StampInputs) -> Result<(), StoreError> {
        let Some(epoch) = self.stamp_epoch() else { return Ok(()) };
        let files = match self.verified.read() {
            Ok(v) => v.files.clone(),
            Err(_) => return Ok(()),
        };
        let stamp = Stamp { inputs: inputs.clone(), files, epoch };
        write(self.dir(), self.fs(), slot, &stamp)
            .map_err(|e| StoreError::io("writing", stamp_path(self.dir(), slot), e))
    }

    /// After the commit that recorded a run's end: its stamp, written with
    /// the database's epoch, or the slot's stamp removed. Failures are not
    /// errors: a missing stamp costs the next run the full path, and a stamp
    /// left in place is still a true statement (see the module docs).
    pub(crate) fn apply_stamp(&self, update: StampUpdate, epoch: Option<Epoch>) {
        match update {
            StampUpdate::Put { slot, mut stamp } => match epoch {
                Some(epoch) => {
                    stamp.epoch = epoch;
                    if write(self.dir(), self.fs(), &slot, &stamp).is_err() {
                        let _ = remove(self.dir(), self.fs(), &slot);
                    }
                }
                None => {
                    let _ = remove(self.dir(), self.fs(), &slot);
                }
            },
            StampUpdate::Remove { slot } => {
                let _ = remove(self.dir(), self.fs(), &slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stat_cache::FileStat;
    use trove_engine::DataVersion;

    fn store(dir: &Path) -> Store {
        Store::open(&dir.join(".trove"), &crate::OpenOptions::default(), &mut |_| {})
            .expect("store")
    }

    fn inputs() -> StampInputs {
        StampInputs {
            key: Digest([0; 32]),
            job: "j".into(),
            env: vec![("HOME".into(), None)],
            probes: vec![("cc --version".into(), "cc 1".into())],
            steps: vec!["s".into()],
        }
    }

    /// A stamp of this store's epoch.
    fn current(store: &Store, mut stamp: Stamp) -> Stamp {
        stamp.epoch = store
            .stamp_epoch()
            .unwrap_or_else(|| store.write_txn(epoch_for_put).expect("an epoch"));
        stamp
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
        let stamp = Stamp::from_parts(inputs(), vec![entry("a", b"aaa"), entry("b", b"bbb")]);
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(dir.path().join("b"), "BBBB").expect("rewrite");
        let store = store(dir.path());
        let mut stamp = current(&store, stamp);
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
        Stamp::from_parts(inputs(), vec![(rel.to_owned(), stat.entry(data, hashed_at_ns))])
    }

    #[test]
    fn a_racy_entry_is_checked_by_content_and_refreshed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"abc").expect("write");
        let stat = FileStat::of(&dir.path().join("f")).expect("stat");
        // Hashed in the same instant as the write: the stat proves nothing.
        let racy_at = stat.mtime_ns;
        let store = store(dir.path());
        let mut wrong =
            current(&store, stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abd"), racy_at));
        assert_eq!(
            store.check_stamp(dir.path(), &mut wrong),
            StampCheck::Changed(vec!["f".into()])
        );
        let mut right =
            current(&store, stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abc"), racy_at));
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
        let store = store(dir.path());
        // The stat cache's rule: a settled entry is not re-hashed.
        let stamp =
            current(&store, stamp_of(dir.path(), "f", DataVersion::of_bytes(b"abc"), settled_at));
        let mut first = stamp.clone();
        assert_eq!(
            store.check_stamp(dir.path(), &mut first),
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
        let mut gone = stamp.clone();
        assert_eq!(store.check_stamp(dir.path(), &mut gone), StampCheck::Changed(vec!["f".into()]));
    }

    #[test]
    fn a_stamp_of_another_epoch_answers_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"abc").expect("write");
        let stat = FileStat::of(&dir.path().join("f")).expect("stat");
        let store = store(dir.path());
        let mut stamp = current(
            &store,
            stamp_of(
                dir.path(),
                "f",
                DataVersion::of_bytes(b"abc"),
                stat.mtime_ns + 10_000_000_000,
            ),
        );
        stamp.epoch[0] ^= 1;
        assert_eq!(store.check_stamp(dir.path(), &mut stamp), StampCheck::Stale);
        // What it found of the files is still true.
        assert_eq!(store.verified("f"), Some(DataVersion::of_bytes(b"abc")));
    }

    fn sample() -> Stamp {
        let stat = StatEntry {
            kind: StatKind::File,
            size: 3,
            mtime_ns: -5,
            ctime_ns: 1_700_000_000_123_456_789,
            ino: 42,
            dev: 7,
            data_version: DataVersion::of_bytes(b"abc"),
            hashed_at_ns: i128::MAX,
        };
        let dir = StatEntry { kind: StatKind::Dir, ..stat.clone() };
        let mut stamp = Stamp::from_parts(
            inputs(),
            vec![("src/é.txt".into(), stat.clone()), ("out/a".into(), dir), ("b".into(), stat)],
        );
        stamp.epoch = [9; 16];
        stamp
    }

    #[test]
    fn a_stamp_file_round_trips_and_every_truncation_and_flip_is_no_stamp() {
        let stamp = sample();
        let bytes = encode(&stamp);
        assert_eq!(decode(&bytes), Some(stamp.clone()));
        assert_eq!(stamp.files.find("b"), Some(0));
        assert_eq!(stamp.files.find("out/a"), Some(1));
        assert_eq!(stamp.files.find("src/é.txt"), Some(2));
        assert_eq!(stamp.files.find("c"), None);
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "cut at {len}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert_eq!(decode(&flipped), None, "flip at {i}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_stamp_decoder(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let _ = decode(&bytes);
        }

        #[test]
        fn a_valid_checksum_over_garbage_is_no_stamp_and_no_panic(
            cut in 0usize..400,
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            // A well-formed prefix, then garbage, under a correct checksum.
            let good = encode(&sample());
            let mut body = good[..cut.min(good.len() - SUM)].to_vec();
            body.extend_from_slice(&noise);
            let sum = blake3::hash(&body);
            body.extend_from_slice(sum.as_bytes());
            let _ = decode(&body);
        }
    }
}
