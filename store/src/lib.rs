//! trove's store: everything trove keeps between runs, in one directory.
//!
//! A [`Store`] is one open store directory (`.trove/` at the workspace root
//! by default) holding:
//!
//! - `trove.redb`, the trace database ([`trace_db`]): traces by op version,
//!   outputs by output version, the latest trace of each step, runs, step
//!   logs, the stat cache and blob metadata, each value a checksummed
//!   [`record`] envelope;
//! - `blobs/`, the content-addressed blob store ([`blob`]);
//! - `stamps/`, the up-to-date stamps ([`stamp`]), and `cache/`, derived
//!   data such as parsed pipelines ([`Store::cached`]): files beside the
//!   database, checksummed, each a true statement or no statement;
//! - `lock` and `lock.info`, the one-writer lock ([`lock`]).
//!
//! How they meet: the engine calls the [`FsIoManager`] (from
//! [`Store::io_manager`]) on worker threads to store and restore outputs, and
//! the [`Store`] itself as its [`TraceStore`] on the coordinator thread.
//! `handle_output` makes blobs durable (or, for a small file, reads it into
//! the record) and *stages* the output record; `commit_trace` moves the
//! step's records into the current batch, and a batch commits in one redb
//! write transaction whenever the scheduler flushes from a thread of its own
//! after steps finish (at most once per [`Store::set_background_flush`]
//! interval, 20 ms unless set), so no step waits for an fsync — or, after
//! [`Store::set_batch`], inside `commit_trace` every so many steps or
//! milliseconds, and at `flush`. A trace is thus committed only
//! after its blobs are durable, and a crash loses at most the uncommitted
//! batch, whose steps simply run again.
//!
//! **Architecture Invariant:** a trace commits only after every blob it
//! references is durable (temp file fsynced, renamed, directory fsynced).
//!
//! **Architecture Invariant:** nothing read from disk is served unverified:
//! records carry a checksum, blobs are re-hashed on restore and load; what
//! fails is reported and counts as a miss, never a panic.
//!
//! **Architecture Invariant:** the library never prints; warnings travel
//! through the engine (`IoError::Corrupt`, `Restore::Restored`) and errors
//! through [`StoreError`].
//!
//! ```no_run
//! use trove_store::{OpenOptions, Store};
//! let store = Store::open(".trove".as_ref(), &OpenOptions::default(), &mut |holder| {
//!     eprintln!("waiting for {holder}");
//! })?;
//! let io = store.io_manager(".".as_ref());
//! # let _ = io;
//! # Ok::<(), trove_store::StoreError>(())
//! ```

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod blob;
mod cache;
mod error;
pub mod fs;
mod fs_io_manager;
mod gc;
pub mod lock;
pub mod record;
mod scratch;
pub mod stamp;
pub mod stat_cache;
pub mod trace_db;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{ConcurrencyMode, Durability, ReadableTable, StorageBackend as _};
use trove_engine::{
    DataVersion, Digest, OutputVersion, RunReport, RunStatus, StepFailure, StepLog, StepOutcome,
    StepReport, Trace, TraceError, TraceStore,
};

pub use blob::{EntryKind, Manifest, ManifestEntry};
pub use error::StoreError;
pub use fs::{FailAt, Fs, FsHook, FsOp};
pub use fs_io_manager::FsIoManager;
pub use gc::{GcPolicy, GcReport, Problem, VerifyReport};
pub use lock::{LockHolder, format_utc};
pub use record::{
    BlobMeta, DecodeError, Location, OutputRecord, RunDetail, RunRecord, RunState, SCHEMA_VERSION,
    StatEntry, StepLogRecord, TraceRecord,
};
pub use stamp::{
    FilesChecked, Stamp, StampCheck, StampFiles, StampInputs, StampUpdate, check_files,
};

use crate::blob::BlobStore;
use crate::lock::{WriteLock, now_ms};
use crate::record::{LatestRecord, RecordKind, decode, encode};
use crate::stat_cache::{FileStat, RootDir, hash_against, is_fresh, now_ns};
/// A table opened in a read transaction.
type RoTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Tables opened in one read transaction, by name.
type OpenTables = HashMap<String, Arc<RoTable>>;

use crate::trace_db::{
    ALL_TABLES, BLOBS, Db, LATEST, LOGS, META, OUTPUTS, RUN_STEPS, RUNS, Rows, STAT, TRACES, Table,
    db_err, get_in, scan_in,
};

/// How to open a store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Read only (`log`, `show`, `plan`): no lock, never writes.
    pub read_only: bool,
    /// Wait for another writer (`false`: `--no-wait`, fail at once).
    pub wait: bool,
    /// The command shown to processes that wait for this one.
    pub command: String,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { read_only: false, wait: true, command: "trove".into() }
    }
}

/// A store directory whose writer lock this process holds, its database
/// not open yet ([`Store::lock`]).
#[derive(Debug)]
pub struct LockedStore {
    dir: PathBuf,
    fs: Fs,
    lock: WriteLock,
}

impl LockedStore {
    /// The up-to-date stamp of `slot` ([`Store::stamp`]), read without the
    /// database.
    pub fn stamp(&self, slot: &str) -> Option<Stamp> {
        stamp::read(&self.dir, slot)
    }

    /// Opens the database: the store, as [`Store::open`] gives it.
    pub fn open(self) -> Result<Store, StoreError> {
        self.open_impl(true)
    }

    fn open_impl(self, set_aside: bool) -> Result<Store, StoreError> {
        let LockedStore { dir, fs, lock } = self;
        let db_path = dir.join("trove.redb");
        let builder = builder();
        if !db_path.exists() {
            create_db(&builder, &dir, &db_path, &fs)?;
        }
        let mut recovered = None;
        let opened = open_rw_db(&builder, &db_path, &fs)?.and_then(|(db, file)| {
            match probe(&db) {
                Ok(()) => Ok((db, file)),
                Err(message) => {
                    // Its handle goes before the file is moved aside.
                    drop(trace_db::quietly(move || drop(db)));
                    let _ = file.close();
                    Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(message)))
                }
            }
        });
        let (db, file) = match opened {
            Ok(opened) => opened,
            Err(e) if is_damage(&e) && !set_aside => {
                return Err(StoreError::Damaged { path: db_path, message: e.to_string() });
            }
            Err(e) if is_damage(&e) => {
                let detail = e.to_string();
                // A damaged trace database is set aside, never deleted, and
                // a fresh one takes its place: every step simply runs again
                // (ninja starts over on a bad log the same way). The caller
                // learns it from `recovered_from`.
                let aside = set_aside_db(&dir, &db_path, &fs)?;
                recovered = Some((aside, detail));
                create_db(&builder, &dir, &db_path, &fs)?;
                open_rw_db(&builder, &db_path, &fs)?.map_err(|e| db_err(&db_path)(&e))?
            }
            Err(e) => return Err(db_err(&db_path)(&e)),
        };
        let store = Store::assemble(&dir, Db::Rw(db), fs, Some(Writer { lock, file, recovered }));
        store.blobs.prepare()?;
        store.init_rw()?;
        Ok(store)
    }
}

/// What a writer's store holds besides the database.
struct Writer {
    lock: WriteLock,
    file: Arc<FileBackend>,
    /// Where a damaged database was set aside, and why.
    recovered: Option<(PathBuf, String)>,
}

/// How every process opens the database: shared with readers in other
/// processes, one writer (trove's own lock decides which).
fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder.set_cache_size(256 << 20);
    builder
}

/// What `begin_run` records about a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// The run id ([`Store::new_run_id`]).
    pub run_id: String,
    /// The job name.
    pub job: String,
    /// Run tags.
    pub tags: BTreeMap<String, String>,
    /// Start, in ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The command line.
    pub command: String,
    /// Whether memoization is on.
    pub memoized: bool,
}

impl RunInfo {
    /// The record of the run as it starts.
    fn record(&self) -> RunRecord {
        RunRecord {
            run_id: self.run_id.clone(),
            job: self.job.clone(),
            tags: self.tags.clone(),
            command: self.command.clone(),
            memoized: self.memoized,
            started_at_ms: self.started_at_ms,
            ended_at_ms: None,
            status: RunState::Running,
            counts: Default::default(),
            duration_ns: 0,
        }
    }
}

/// Counters of what the store did in this process (tests and benches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Files hashed (stat cache misses).
    pub files_hashed: u64,
    /// Bytes hashed for them.
    pub bytes_hashed: u64,
    /// Files whose stat matched the cache.
    pub stat_hits: u64,
    /// Records that failed to decode (counted as misses).
    pub corrupt_records: u64,
    /// Batches committed.
    pub batches: u64,
    /// Traces committed.
    pub traces: u64,
}

#[derive(Default)]
struct Counters {
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
    stat_hits: AtomicU64,
    corrupt_records: AtomicU64,
    batches: AtomicU64,
    traces: AtomicU64,
}

/// What a step has stored but not yet traced, and what waits to commit.
#[derive(Default, Clone)]
struct Staged {
    /// handle_output → commit_trace, by step.
    pending: HashMap<String, Vec<(OutputVersion, OutputRecord)>>,
    /// Traced outputs of the current batch.
    outputs: HashMap<OutputVersion, OutputRecord>,
    traces: Vec<TraceRecord>,
    latest: HashMap<String, TraceRecord>,
    logs: HashMap<String, StepLogRecord>,
    stats: HashMap<String, StatEntry>,
    blobs: HashMap<Digest, BlobMeta>,
    /// The record of a run begun and not yet committed: the first commit
    /// writes it (and marks it the current run).
    run_start: Option<RunRecord>,
    steps: usize,
    since: Option<Instant>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.traces.is_empty()
            && self.logs.is_empty()
            && self.stats.is_empty()
            && self.blobs.is_empty()
            && self.outputs.is_empty()
            && self.latest.is_empty()
            && self.run_start.is_none()
    }

    fn clear_committed(&mut self) {
        drop(self.take_committable());
    }

    /// Everything a commit writes, leaving behind the outputs of steps
    /// still running (`pending`).
    fn take_committable(&mut self) -> Staged {
        let pending = std::mem::take(&mut self.pending);
        std::mem::replace(self, Staged { pending, ..Staged::default() })
    }

    /// Puts back a batch whose commit failed, under what was staged since
    /// (newer writes of the same key win; older traces go first).
    fn merge_older(&mut self, older: Staged) {
        let newer_traces = std::mem::replace(&mut self.traces, older.traces);
        self.traces.extend(newer_traces);
        for (k, v) in older.outputs {
            self.outputs.entry(k).or_insert(v);
        }
        for (k, v) in older.latest {
            self.latest.entry(k).or_insert(v);
        }
        for (k, v) in older.logs {
            self.logs.entry(k).or_insert(v);
        }
        for (k, v) in older.stats {
            self.stats.entry(k).or_insert(v);
        }
        for (k, v) in older.blobs {
            self.blobs.entry(k).or_insert(v);
        }
        if self.run_start.is_none() {
            self.run_start = older.run_start;
        }
        self.steps += older.steps;
        self.since = match (self.since, older.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One open store directory.
pub struct Store {
    dir: PathBuf,
    db_path: PathBuf,
    db: RwLock<Db>,
    read_only: bool,
    blobs: BlobStore,
    staged: Mutex<Staged>,
    /// A batch taken out of `staged` whose commit is under way: lookups
    /// see it until redb does, and staging goes on meanwhile (a commit
    /// waits on fsync; holding `staged` through it stalled every step).
    in_flight: Mutex<Option<Arc<Staged>>>,
    /// Held through every commit, so batches land in the order staged.
    /// Taken before `staged` (and `staged` before `in_flight`).
    commit_lock: Mutex<()>,
    batch_max: AtomicUsize,
    batch_delay_ms: AtomicU64,
    /// The scheduler flushes, at most once per this many ms (see
    /// [`Store::set_background_flush`]); `u64::MAX`: it does not.
    background_flush_ms: AtomicU64,
    /// Files up to this size are kept inline in their output record.
    inline_file_max: AtomicU64,
    /// Workspace files an up-to-date check of this process found unchanged,
    /// with their data versions ([`Store::accept_check`]).
    pub(crate) verified: RwLock<stamp::Verified>,
    counters: Counters,
    /// A read transaction reused across lookups in a writer process,
    /// tagged with the commit generation it was opened at.
    read_cache: Mutex<Option<(u64, Arc<redb::ReadTransaction>)>>,
    /// Tables opened in that transaction, by name (opening one is a B-tree
    /// walk of its own, as costly as the lookup it serves).
    table_cache: Mutex<Option<(u64, OpenTables)>>,
    generation: AtomicU64,
    /// Between `begin_run` and `finish_run`.
    run_open: AtomicBool,
    /// The workspace root stats are taken relative to ([`Store::root_dir`]).
    root_dir: Mutex<Option<Arc<RootDir>>>,
    /// The end of an engine run leaves the staged batch to `finish_run`
    /// ([`Store::set_end_with_finish_run`]).
    end_with_finish: AtomicBool,
    /// The database file's backend (read-write stores), whose locks
    /// [`Store::close_at_exit`] releases.
    file: Option<Arc<FileBackend>>,
    _lock: Option<WriteLock>,
    /// Where a damaged trace database was moved at open, and why.
    recovered: Option<(PathBuf, String)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).field("read_only", &self.read_only).finish()
    }
}

/// Values (and, by default, files) up to this size are kept inline in their
/// redb record.
pub const INLINE_MAX: usize = 16 * 1024;
const DEFAULT_BATCH_STEPS: usize = 1000;
const DEFAULT_BATCH_MS: u64 = 200;
/// How often, at most, the scheduler flushes a store in the background
/// unless told otherwise ([`Store::set_background_flush`]).
const DEFAULT_BACKGROUND_FLUSH_MS: u64 = 20;

fn schema_bytes(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn read_schema(bytes: &[u8]) -> Option<u32> {
    bytes.try_into().ok().map(u32::from_le_bytes)
}

/// Checks a workspace-relative path: not empty, not absolute, no `..`.
pub(crate) fn check_rel(rel: &str) -> Result<(), StoreError> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok { Ok(()) } else { Err(StoreError::OutsideWorkspace { path: rel.to_owned() }) }
}

impl Store {
    /// Opens (read-write: creates) the store in `dir`. A writer takes the
    /// store's lock, waiting for another writer after telling `on_wait` who
    /// holds it, or failing at once with [`StoreError::Locked`] when
    /// `opts.wait` is false.
    pub fn open(
        dir: &Path,
        opts: &OpenOptions,
        on_wait: &mut dyn FnMut(&LockHolder),
    ) -> Result<Store, StoreError> {
        Store::open_with_fs(dir, opts, on_wait, Fs::real())
    }

    /// [`Store::open`] with a filesystem seam (fault-injection tests).
    pub fn open_with_fs(
        dir: &Path,
        opts: &OpenOptions,
        on_wait: &mut dyn FnMut(&LockHolder),
        fs: Fs,
    ) -> Result<Store, StoreError> {
        Store::open_impl(dir, opts, on_wait, fs, true)
    }

    /// [`Store::open_with_fs`]; `set_aside`: a damaged database is set aside
    /// for a fresh one (else the open fails with [`StoreError::Damaged`]).
    fn open_impl(
        dir: &Path,
        opts: &OpenOptions,
        on_wait: &mut dyn FnMut(&LockHolder),
        fs: Fs,
        set_aside: bool,
    ) -> Result<Store, StoreError> {
        if !opts.read_only {
            return Store::lock_with(dir, opts, on_wait, fs)?.open_impl(set_aside);
        }
        let db_path = dir.join("trove.redb");
        if !db_path.exists() {
            return Err(StoreError::NotFound { dir: dir.to_path_buf() });
        }
        let builder = builder();
        let mut told = false;
        let mut settled = false;
        let mut settles = 0;
        let db = loop {
            if settled && !db_path.exists() {
                // Making it readable found it damaged, and set it aside.
                return Err(StoreError::Damaged {
                    path: db_path.clone(),
                    message: "found damaged while making it readable".into(),
                });
            }
            match open_quietly(|| builder.open_read_only(&db_path)) {
                Ok(db) => break Db::Ro(db),
                Err(e) if is_damage(&e) => {
                    return Err(StoreError::Damaged {
                        path: db_path.clone(),
                        message: e.to_string(),
                    });
                }
                // Left unclean by a writer that is gone (killed, or let go
                // at exit: `close_at_exit`): a read-only open refuses it
                // until a writer has opened it again.
                Err(redb::DatabaseError::RepairAborted) if !settled => {
                    match settle_unclean(dir, &fs) {
                        // Unclean again and again with no writer about:
                        // closing it cleanly does not take.
                        Ok(true) if settles >= 3 => {
                            return Err(StoreError::Damaged {
                                path: db_path.clone(),
                                message: "it stays unclean after a clean close".into(),
                            });
                        }
                        Ok(true) => {
                            settled = true;
                            settles += 1;
                            continue;
                        }
                        // A writer holds it: wait for it below.
                        Ok(false) => {}
                        // This process may not write the store (read-only
                        // media, another user's store): read it over a
                        // scratch backend instead, leaving the file as is.
                        Err(StoreError::Io { .. }) => break open_scratch(&db_path)?,
                        Err(e) => return Err(e),
                    }
                }
                // Busy, or unclean again after settling (a writer came and
                // went in between): wait, then settle again.
                Err(
                    redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::RepairAborted,
                ) => {}
                Err(e) => return Err(db_err(&db_path)(&e)),
            }
            let holder = lock::current_holder(dir).unwrap_or(LockHolder {
                pid: 0,
                command: String::new(),
                since_ms: 0,
            });
            if !opts.wait {
                return Err(StoreError::Locked { dir: dir.to_path_buf(), holder });
            }
            if !told {
                on_wait(&holder);
                told = true;
            }
            std::thread::sleep(Duration::from_millis(50));
            settled = false;
        };
        let store = Store::assemble(dir, db, fs, None);
        store.check_schema_ro().map_err(|e| match e {
            // Not even the schema record reads: the file is damaged.
            StoreError::CorruptRecord { detail: message, .. }
            | StoreError::Database { message, .. } => {
                StoreError::Damaged { path: store.db_path.clone(), message }
            }
            e => e,
        })?;
        Ok(store)
    }

    /// Takes the writer lock of the store in `dir` (creating the
    /// directory), waiting for another writer as [`Store::open`] does, and
    /// does not open the database yet: what needs only the lock — reading
    /// the up-to-date stamp ([`LockedStore::stamp`]) and re-stating the
    /// workspace — can then go on while [`LockedStore::open`] waits on the
    /// disk.
    pub fn lock(
        dir: &Path,
        opts: &OpenOptions,
        on_wait: &mut dyn FnMut(&LockHolder),
    ) -> Result<LockedStore, StoreError> {
        Store::lock_with(dir, opts, on_wait, Fs::real())
    }

    fn lock_with(
        dir: &Path,
        opts: &OpenOptions,
        on_wait: &mut dyn FnMut(&LockHolder),
        fs: Fs,
    ) -> Result<LockedStore, StoreError> {
        fs.create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        let lock = lock::acquire(dir, &opts.command, opts.wait, on_wait, &fs)?;
        Ok(LockedStore { dir: dir.to_path_buf(), fs, lock })
    }

    /// The store of an open database; `writer`: what a writer holds.
    fn assemble(dir: &Path, db: Db, fs: Fs, writer: Option<Writer>) -> Store {
        let read_only = writer.is_none();
        let (lock, file, recovered) = match writer {
            Some(Writer { lock, file, recovered }) => (Some(lock), Some(file), recovered),
            None => (None, None, None),
        };
        Store {
            dir: dir.to_path_buf(),
            db_path: dir.join("trove.redb"),
            db: RwLock::new(db),
            read_only,
            blobs: BlobStore::new(dir, fs),
            staged: Mutex::new(Staged::default()),
            in_flight: Mutex::new(None),
            commit_lock: Mutex::new(()),
            batch_max: AtomicUsize::new(DEFAULT_BATCH_STEPS),
            batch_delay_ms: AtomicU64::new(DEFAULT_BATCH_MS),
            background_flush_ms: AtomicU64::new(DEFAULT_BACKGROUND_FLUSH_MS),
            inline_file_max: AtomicU64::new(INLINE_MAX as u64),
            verified: RwLock::new(stamp::Verified::default()),
            counters: Counters::default(),
            read_cache: Mutex::new(None),
            table_cache: Mutex::new(None),
            generation: AtomicU64::new(0),
            run_open: AtomicBool::new(false),
            root_dir: Mutex::new(None),
            end_with_finish: AtomicBool::new(false),
            file,
            _lock: lock,
            recovered,
        }
    }

    fn check_schema_ro(&self) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        if let Some(bytes) = get_in(&self.db_path, &txn, META, b"schema")?
            && let Some(found) = read_schema(&bytes)
            && found > u32::from(SCHEMA_VERSION)
        {
            return Err(StoreError::NewerSchema {
                dir: self.dir.clone(),
                found,
                supported: u32::from(SCHEMA_VERSION),
            });
        }
        Ok(())
    }

    /// Whether opening for writing has nothing to write: the schema is this
    /// one and no run was left running. (A write transaction is a durable
    /// commit, the largest fixed cost of a no-op.) Tables need not all
    /// exist: reads treat a missing table as empty, and writes create it.
    fn is_initialized(&self) -> bool {
        let Ok(txn) = self.read_txn() else { return false };
        let Ok(Some(meta)) = trace_db::guarded(
            || "meta (open)".into(),
            || match txn.open_table(META) {
                Ok(t) => Ok(Some(t)),
                Err(_) => Ok(None),
            },
        ) else {
            return false;
        };
        let get = |key: &[u8]| {
            trace_db::guarded(
                || "meta".into(),
                || Ok(meta.get(key).ok().flatten().map(|v| v.value().to_vec())),
            )
            .ok()
            .flatten()
        };
        get(b"schema").and_then(|b| read_schema(&b)) == Some(u32::from(SCHEMA_VERSION))
            && get(b"current_run").is_none()
    }

    fn init_rw(&self) -> Result<(), StoreError> {
        if self.is_initialized() {
            return Ok(());
        }
        let dir = self.dir.clone();
        self.write_txn(|txn, path| {
            for t in ALL_TABLES {
                txn.open_table(t).map_err(|e| db_err(path)(&e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| db_err(path)(&e))?;
            let found = meta
                .get(b"schema".as_slice())
                .map_err(|e| db_err(path)(&e))?
                .and_then(|v| read_schema(v.value()));
            match found {
                Some(found) if found > u32::from(SCHEMA_VERSION) => {
                    return Err(StoreError::NewerSchema {
                        dir,
                        found,
                        supported: u32::from(SCHEMA_VERSION),
                    });
                }
                Some(found) if found == u32::from(SCHEMA_VERSION) => {}
                _ => {
                    meta.insert(
                        b"schema".as_slice(),
                        schema_bytes(u32::from(SCHEMA_VERSION)).as_slice(),
                    )
                    .map_err(|e| db_err(path)(&e))?;
                }
            }
            // A run left "running" by a process that died is interrupted:
            // we hold the lock, so nobody else is running it.
            let current = meta
                .get(b"current_run".as_slice())
                .map_err(|e| db_err(path)(&e))?
                .map(|v| v.value().to_vec());
            if let Some(id) = current {
                meta.remove(b"current_run".as_slice()).map_err(|e| db_err(path)(&e))?;
                let mut runs = txn.open_table(RUNS).map_err(|e| db_err(path)(&e))?;
                let rec = runs
                    .get(id.as_slice())
                    .map_err(|e| db_err(path)(&e))?
                    .and_then(|v| decode::<RunRecord>(RecordKind::Run, v.value()).ok());
                if let Some(mut rec) = rec
                    && rec.status == RunState::Running
                {
                    rec.status = RunState::Interrupted;
                    // What it finished before it died, from the records its
                    // commits left (the run's end, which lists its steps,
                    // never came). A damaged page only costs the list.
                    if let Ok(Some((steps, last_ms))) =
                        trace_db::quietly(|| finished_steps(txn, &rec.run_id).ok())
                    {
                        // It lasted at least until its last recorded step.
                        rec.duration_ns =
                            last_ms.saturating_sub(rec.started_at_ms).saturating_mul(1_000_000);
                        for s in &steps {
                            match s.outcome {
                                StepOutcome::Ran { .. } => rec.counts.ran += 1,
                                _ => rec.counts.failed += 1,
                            }
                        }
                        txn.open_table(RUN_STEPS)
                            .map_err(|e| db_err(path)(&e))?
                            .insert(id.as_slice(), encode(RecordKind::RunSteps, &steps).as_slice())
                            .map_err(|e| db_err(path)(&e))?;
                    }
                    runs.insert(id.as_slice(), encode(RecordKind::Run, &rec).as_slice())
                        .map_err(|e| db_err(path)(&e))?;
                }
            }
            Ok(())
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// If the trace database was damaged beyond opening, where it was set
    /// aside and what redb said; the store then started with a fresh one.
    pub fn recovered_from(&self) -> Option<(&Path, &str)> {
        self.recovered.as_ref().map(|(p, d)| (p.as_path(), d.as_str()))
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Commits finished steps inside `commit_trace`, on the thread that
    /// records them, instead of in the background: a batch commits after
    /// `max_steps` steps or `max_delay` since its first step, whichever comes
    /// first (and at every flush). `max_steps = 1` commits every step on its
    /// own. Turns background flushing off ([`Store::set_background_flush`]
    /// with `None`).
    pub fn set_batch(&self, max_steps: usize, max_delay: Duration) {
        self.batch_max.store(max_steps.max(1), Ordering::SeqCst);
        self.batch_delay_ms.store(max_delay.as_millis() as u64, Ordering::SeqCst);
        self.set_background_flush(None);
    }

    /// `Some(interval)`: leaves commits to the scheduler, which flushes
    /// from a thread of its own while the next steps run, at most once per
    /// `interval` ([`TraceStore::background_flush`]). Every finished step is
    /// still committed durably, at most `interval` (plus a commit) after it
    /// finished, but no step waits for a commit, and a commit covers every
    /// step that finished since the last (each commit rewrites whole B-tree
    /// pages, so fewer, larger commits write less). The default is
    /// `Some(20 ms)`. `None`: the batch policy of [`Store::set_batch`]
    /// applies inside `commit_trace` (1,000 steps or 200 ms unless set).
    pub fn set_background_flush(&self, interval: Option<Duration>) {
        let ms = interval.map_or(u64::MAX, |d| d.as_millis().min(u128::from(u64::MAX - 1)) as u64);
        self.background_flush_ms.store(ms, Ordering::SeqCst);
    }

    /// `true`: between [`Store::begin_run`] and [`Store::finish_run`], the
    /// end of the engine's run ([`TraceStore::end_run`]) commits nothing, and
    /// `finish_run` commits the steps staged since the last commit with the
    /// run's end: one durable commit at the end of a run instead of two. For
    /// a caller that finishes the run right after the engine returns (the
    /// CLI); until then the last steps are not durable (a crash costs only
    /// their re-run). Default `false`: the engine's end flushes.
    pub fn set_end_with_finish_run(&self, on: bool) {
        self.end_with_finish.store(on, Ordering::SeqCst);
    }

    /// Keeps file outputs up to `bytes` inline in their output record
    /// instead of a blob file (default [`INLINE_MAX`]; 0: every file is a
    /// blob). An inline file commits with its record, so it costs no temp
    /// file, rename or fsync of its own.
    pub fn set_inline_file_max(&self, bytes: u64) {
        self.inline_file_max.store(bytes, Ordering::SeqCst);
    }

    pub(crate) fn inline_file_max(&self) -> u64 {
        self.inline_file_max.load(Ordering::Relaxed)
    }

    pub(crate) fn set_verified(&self, files: stamp::Verified) {
        if let Ok(mut v) = self.verified.write() {
            *v = files;
        }
    }

    /// The data version of a workspace file this process's up-to-date check
    /// found unchanged (and that it has not written since).
    pub fn verified(&self, rel: &str) -> Option<DataVersion> {
        self.verified.read().ok()?.entry(rel).map(|e| e.data_version)
    }

    /// The filesystem seam writes go through.
    pub(crate) fn fs(&self) -> &Fs {
        self.blobs.fs()
    }

    /// What the store did in this process.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            files_hashed: c.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: c.bytes_hashed.load(Ordering::Relaxed),
            stat_hits: c.stat_hits.load(Ordering::Relaxed),
            corrupt_records: c.corrupt_records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            traces: c.traces.load(Ordering::Relaxed),
        }
    }

    /// The path of the blob named `blob` (tests corrupt blobs through it).
    pub fn blob_path(&self, blob: &Digest) -> PathBuf {
        self.blobs.path(blob)
    }

    /// The path of the trace database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The memoizing IO manager for a workspace.
    pub fn io_manager(&self, workspace_root: &Path) -> FsIoManager<'_> {
        FsIoManager::new(self, workspace_root)
    }

    /// A time-sortable, unique run id: 12 hex digits of milliseconds since
    /// the epoch (strictly increasing within a process), then 8 random hex
    /// digits.
    pub fn new_run_id() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = blake3::Hasher::new();
        h.update(&std::process::id().to_le_bytes());
        h.update(&now_ns().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let rand = h.finalize();
        // Strictly increasing within a process: a run started in the same
        // millisecond as the previous one takes the next millisecond.
        static LAST_MS: AtomicU64 = AtomicU64::new(0);
        let now = now_ms();
        let prev = LAST_MS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
            .unwrap_or(0);
        let ms = now.max(prev + 1);
        format!("{ms:012x}{}", &rand.to_hex()[..8])
    }

    // ---- transactions -------------------------------------------------

    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Db>, StoreError> {
        self.db.read().map_err(|_| StoreError::Internal("database lock poisoned".into()))
    }

    pub(crate) fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        match self.db()?.begin_read() {
            Some(txn) => txn.map_err(|e| db_err(&self.db_path)(&e)),
            None => Err(StoreError::Internal("the store was closed".into())),
        }
    }

    /// A read transaction that sees every commit of this process. A writer
    /// reuses one until its next commit (lookups cost a B-tree walk, not a
    /// transaction); a read-only store opens a fresh one each time, so it
    /// follows the writing process.
    pub(crate) fn cached_read(&self) -> Result<Arc<redb::ReadTransaction>, StoreError> {
        if self.read_only {
            return Ok(Arc::new(self.read_txn()?));
        }
        let mut cache = self
            .read_cache
            .lock()
            .map_err(|_| StoreError::Internal("read cache lock poisoned".into()))?;
        let current = self.generation.load(Ordering::SeqCst);
        if let Some((g, txn)) = &*cache
            && *g == current
        {
            return Ok(Arc::clone(txn));
        }
        let txn = Arc::new(self.read_txn()?);
        *cache = Some((current, Arc::clone(&txn)));
        Ok(txn)
    }

    /// A value of `table` read through the cached read transaction and a
    /// cached handle of the table (a read-only store reads afresh).
    pub(crate) fn cached_get(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if self.read_only {
            let txn = self.read_txn()?;
            return get_in(&self.db_path, &txn, table, key);
        }
        let name = trace_db::table_name(table);
        let handle = {
            let mut cache = self
                .table_cache
                .lock()
                .map_err(|_| StoreError::Internal("table cache lock poisoned".into()))?;
            let current = self.generation.load(Ordering::SeqCst);
            if cache.as_ref().is_none_or(|(g, _)| *g != current) {
                *cache = Some((current, HashMap::new()));
            }
            let tables = cache.as_mut().map(|(_, t)| t);
            match tables.as_ref().and_then(|t| t.get(&name)) {
                Some(t) => Arc::clone(t),
                None => {
                    let txn = self.cached_read()?;
                    let opened = trace_db::guarded(
                        || format!("{name} (open)"),
                        || match txn.open_table(table) {
                            Ok(t) => Ok(Some(t)),
                            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                            Err(e) => Err(db_err(&self.db_path)(&e)),
                        },
                    )?;
                    let Some(opened) = opened else { return Ok(None) };
                    let t = Arc::new(opened);
                    if let Some(tables) = tables {
                        tables.insert(name.clone(), Arc::clone(&t));
                    }
                    t
                }
            }
        };
        trace_db::guarded(
            || format!("{name}[{}]", trace_db::show_key(key)),
            || {
                Ok(handle
                    .get(key)
                    .map_err(|e| db_err(&self.db_path)(&e))?
                    .map(|v| v.value().to_vec()))
            },
        )
    }

    /// Drops the reused read transaction (after a commit, before
    /// `check_integrity`).
    pub(crate) fn invalidate_reads(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.table_cache.lock() {
            *cache = None;
        }
        if let Ok(mut cache) = self.read_cache.lock() {
            *cache = None;
        }
    }

    /// Runs `f` in one durable write transaction. Every commit records
    /// redb's allocator state (quick repair), so an open after a crash — or
    /// after [`Store::close_at_exit`] — loads it instead of rebuilding it.
    pub(crate) fn write_txn<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction, &Path) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let db = self.db()?;
        let db = match &*db {
            Db::Rw(db) => db,
            Db::Ro(_) | Db::Scratch(_) => {
                return Err(StoreError::ReadOnly { dir: self.dir.clone() });
            }
            Db::Left => return Err(StoreError::Internal("the store was closed".into())),
        };
        let path = self.db_path.as_path();
        // redb panics on some damaged pages (a table its directory names
        // but cannot find): that is damage, not a bug of this process.
        let r = trace_db::quietly(|| {
            let mut txn = db.begin_write().map_err(|e| db_err(path)(&e))?;
            txn.set_durability(Durability::Immediate).map_err(|e| db_err(path)(&e))?;
            txn.set_quick_repair(true);
            let r = f(&txn, path)?;
            txn.commit().map_err(|e| db_err(path)(&e))?;
            Ok(r)
        })
        .unwrap_or_else(|panic| {
            let message = pages_failed(panic.as_ref());
            trace_db::note_damage(path, &message);
            Err(StoreError::Damaged { path: path.to_path_buf(), message })
        })?;
        self.invalidate_reads();
        Ok(r)
    }

    fn staged(&self) -> Result<MutexGuard<'_, Staged>, StoreError> {
        self.staged.lock().map_err(|_| StoreError::Internal("staging lock poisoned".into()))
    }

    /// The batch being committed, if any. Lookups check `staged`, then
    /// this, then redb: a record moves from one to the next while the lock
    /// of the one it leaves is held, so it is always in one of them.
    fn in_flight(&self) -> Option<Arc<Staged>> {
        self.in_flight.lock().ok().and_then(|slot| slot.clone())
    }

    fn in_flight_slot(&self) -> Result<MutexGuard<'_, Option<Arc<Staged>>>, StoreError> {
        self.in_flight.lock().map_err(|_| StoreError::Internal("in-flight lock poisoned".into()))
    }

    /// What `find` finds in the staged batch, else in the batch being
    /// committed: the first two places of every lookup (redb is the third,
    /// see [`Store::in_flight`]).
    fn find_staged<T>(&self, find: impl Fn(&Staged) -> Option<T>) -> Result<Option<T>, StoreError> {
        if let Some(found) = find(&*self.staged()?) {
            return Ok(Some(found));
        }
        Ok(self.in_flight().and_then(|batch| find(&batch)))
    }

    fn commit_guard(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.commit_lock.lock().map_err(|_| StoreError::Internal("commit lock poisoned".into()))
    }

    fn corrupt(&self) {
        self.counters.corrupt_records.fetch_add(1, Ordering::Relaxed);
    }

    /// Commits the staged batch (with `extra` writes) in one transaction;
    /// on failure everything stays staged for the next attempt.
    fn commit_staged(
        &self,
        st: &Staged,
        extra: impl FnOnce(&redb::WriteTransaction, &Path) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let n_traces = st.traces.len() as u64;
        self.write_txn(|txn, path| {
            let e = db_err(path);
            {
                let mut t = txn.open_table(TRACES).map_err(|x| e(&x))?;
                for rec in &st.traces {
                    t.insert(
                        rec.trace.op_version.0.as_slice(),
                        encode(RecordKind::Trace, rec).as_slice(),
                    )
                    .map_err(|x| e(&x))?;
                }
            }
            // Stamps rest on the store only gaining records: a commit that
            // takes back what a stamped run found stored replaces the
            // stamp epoch (see `stamp`), as `gc` does.
            let mut takes_back = false;
            {
                let mut t = txn.open_table(OUTPUTS).map_err(|x| e(&x))?;
                for (v, rec) in &st.outputs {
                    let old = t
                        .insert(v.0.0.as_slice(), encode(RecordKind::Output, rec).as_slice())
                        .map_err(|x| e(&x))?;
                    // A forced or unmemoized re-run that made other bytes at
                    // the same version.
                    takes_back |= old.is_some_and(|old| {
                        decode::<OutputRecord>(RecordKind::Output, old.value())
                            .map_or(true, |old| old.data_version != rec.data_version)
                    });
                }
            }
            // Steps without outputs whose latest trace moved to another op
            // version (another pipeline's step of the same name, say): such
            // a step is done exactly when its latest trace is at its version.
            let mut moved = Vec::new();
            {
                let mut t = txn.open_table(LATEST).map_err(|x| e(&x))?;
                for (step, rec) in &st.latest {
                    let latest = LatestRecord {
                        op_version: rec.trace.op_version,
                        run_id: rec.trace.run_id.to_string(),
                    };
                    let old = t
                        .insert(step.as_bytes(), encode(RecordKind::Latest, &latest).as_slice())
                        .map_err(|x| e(&x))?
                        .map(|old| decode::<LatestRecord>(RecordKind::Latest, old.value()));
                    match old {
                        Some(Ok(old)) if old.op_version != latest.op_version => {
                            if rec.trace.outputs.is_empty() {
                                takes_back = true;
                            } else {
                                moved.push(old.op_version);
                            }
                        }
                        Some(Err(_)) => takes_back = true,
                        _ => {}
                    }
                }
            }
            if !takes_back && !moved.is_empty() {
                let t = txn.open_table(TRACES).map_err(|x| e(&x))?;
                for op_version in &moved {
                    let Some(old) = t.get(op_version.0.as_slice()).map_err(|x| e(&x))? else {
                        continue;
                    };
                    let old = decode::<TraceRecord>(RecordKind::Trace, old.value());
                    if old.map_or(true, |old| old.trace.outputs.is_empty()) {
                        takes_back = true;
                        break;
                    }
                }
            }
            if takes_back {
                stamp::invalidate_all(txn, path)?;
            }
            {
                let mut t = txn.open_table(LOGS).map_err(|x| e(&x))?;
                for (step, rec) in &st.logs {
                    t.insert(step.as_bytes(), encode(RecordKind::Log, rec).as_slice())
                        .map_err(|x| e(&x))?;
                }
            }
            {
                let mut t = txn.open_table(STAT).map_err(|x| e(&x))?;
                for (p, rec) in &st.stats {
                    t.insert(p.as_bytes(), encode(RecordKind::Stat, rec).as_slice())
                        .map_err(|x| e(&x))?;
                }
            }
            {
                let mut t = txn.open_table(BLOBS).map_err(|x| e(&x))?;
                for (d, meta) in &st.blobs {
                    let mut meta = meta.clone();
                    let old = t
                        .get(d.0.as_slice())
                        .map_err(|x| e(&x))?
                        .and_then(|v| decode::<BlobMeta>(RecordKind::Blob, v.value()).ok());
                    if let Some(old) = old {
                        meta.created_ms = meta.created_ms.min(old.created_ms);
                        meta.last_used_ms = meta.last_used_ms.max(old.last_used_ms);
                    }
                    t.insert(d.0.as_slice(), encode(RecordKind::Blob, &meta).as_slice())
                        .map_err(|x| e(&x))?;
                }
            }
            if let Some(run) = &st.run_start {
                txn.open_table(RUNS)
                    .map_err(|x| e(&x))?
                    .insert(run.run_id.as_bytes(), encode(RecordKind::Run, run).as_slice())
                    .map_err(|x| e(&x))?;
                txn.open_table(META)
                    .map_err(|x| e(&x))?
                    .insert(b"current_run".as_slice(), run.run_id.as_bytes())
                    .map_err(|x| e(&x))?;
            }
            extra(txn, path)
        })?;
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.traces.fetch_add(n_traces, Ordering::Relaxed);
        Ok(())
    }

    /// Commits everything staged now. Steps go on staging while the commit
    /// waits on the disk; on failure the batch is staged again.
    pub fn flush_all(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        let _commit = self.commit_guard()?;
        let batch = {
            let mut st = self.staged()?;
            if st.is_empty() {
                return Ok(());
            }
            let batch = Arc::new(st.take_committable());
            *self.in_flight_slot()? = Some(Arc::clone(&batch));
            batch
        };
        let committed = self.commit_staged(&batch, |_, _| Ok(()));
        drop(batch);
        let mut st = self.staged()?;
        let batch = self.in_flight_slot()?.take();
        if committed.is_err()
            && let Some(batch) = batch
        {
            let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
            st.merge_older(batch);
        }
        committed
    }

    // ---- outputs -------------------------------------------------------

    /// The stored output at a version: staged batch first, then redb.
    pub fn lookup_output(
        &self,
        version: &OutputVersion,
    ) -> Result<Option<OutputRecord>, StoreError> {
        if let Some(rec) = self.find_staged(|st| st.outputs.get(version).cloned())? {
            return Ok(Some(rec));
        }
        let Some(bytes) = self.cached_get(OUTPUTS, version.0.0.as_slice())? else {
            return Ok(None);
        };
        self.decode_output(version, &bytes).map(Some)
    }

    fn decode_output(
        &self,
        version: &OutputVersion,
        bytes: &[u8],
    ) -> Result<OutputRecord, StoreError> {
        decode::<OutputRecord>(RecordKind::Output, bytes).map_err(|e| {
            self.corrupt();
            StoreError::CorruptRecord {
                what: format!("outputs[{}]", version.short(12)),
                detail: e.to_string(),
            }
        })
    }

    fn output_in(
        &self,
        txn: &redb::ReadTransaction,
        version: &OutputVersion,
    ) -> Result<Option<OutputRecord>, StoreError> {
        let Some(bytes) = get_in(&self.db_path, txn, OUTPUTS, version.0.0.as_slice())? else {
            return Ok(None);
        };
        match decode::<OutputRecord>(RecordKind::Output, &bytes) {
            Ok(rec) => Ok(Some(rec)),
            Err(e) => {
                self.corrupt();
                Err(StoreError::CorruptRecord {
                    what: format!("outputs[{}]", version.short(12)),
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Existence checks for many output versions in one read transaction
    /// (`None`: not stored or unreadable).
    pub fn lookup_outputs(
        &self,
        versions: &[OutputVersion],
    ) -> Result<Vec<Option<trove_engine::StoredOutput>>, StoreError> {
        // Staged, then in flight, then a transaction opened after both
        // were looked at (see `in_flight`).
        let staged = self.staged()?;
        let flying = self.in_flight();
        let txn = self.read_txn()?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let rec = match staged
                .outputs
                .get(v)
                .or_else(|| flying.as_ref().and_then(|b| b.outputs.get(v)))
            {
                Some(r) => Some(r.clone()),
                None => self.output_in(&txn, v).unwrap_or(None),
            };
            out.push(rec.map(|r| trove_engine::StoredOutput {
                data_version: r.data_version,
                size: r.size,
            }));
        }
        Ok(out)
    }

    pub(crate) fn stage_output(
        &self,
        step: &str,
        version: OutputVersion,
        rec: OutputRecord,
    ) -> Result<(), StoreError> {
        let mut st = self.staged()?;
        let list = st.pending.entry(step.to_owned()).or_default();
        list.retain(|(v, _)| *v != version);
        list.push((version, rec));
        Ok(())
    }

    pub(crate) fn stage_blob(&self, blob: Digest, size: u64, kind: record::BlobKind) {
        if self.read_only {
            return;
        }
        let now = now_ms();
        if let Ok(mut st) = self.staged() {
            st.blobs.insert(blob, BlobMeta { size, kind, created_ms: now, last_used_ms: now });
        }
    }

    pub(crate) fn blob_store(&self) -> &BlobStore {
        &self.blobs
    }

    /// Makes the trace at `op_version` the step's latest again: its outputs
    /// were just restored into the workspace, so that version is the one
    /// the workspace holds. What the next plan explains a change against,
    /// and what `gc` keeps as the step's latest, follow it (an edit undone
    /// would otherwise leave the latest at the undone version, and `gc`
    /// would remove the outputs the workspace was restored from).
    pub(crate) fn stage_latest_at(&self, step: &str, op_version: Digest) {
        if self.read_only {
            return;
        }
        let current = self.latest_trace_record(step).ok().flatten();
        if current.is_some_and(|rec| rec.trace.op_version == op_version) {
            return;
        }
        let Ok(Some(bytes)) = self.cached_get(TRACES, op_version.0.as_slice()) else { return };
        let Ok(rec) = decode::<TraceRecord>(RecordKind::Trace, &bytes) else { return };
        if let Ok(mut st) = self.staged() {
            st.latest.insert(step.to_owned(), rec);
        }
    }

    // ---- stat cache ----------------------------------------------------

    fn stat_entry(&self, rel: &str) -> Option<StatEntry> {
        if let Ok(Some(e)) = self.find_staged(|st| st.stats.get(rel).cloned()) {
            return Some(e);
        }
        let bytes = self.cached_get(STAT, rel.as_bytes()).ok()??;
        match decode::<StatEntry>(RecordKind::Stat, &bytes) {
            Ok(e) => Some(e),
            Err(_) => {
                self.corrupt();
                None
            }
        }
    }

    pub(crate) fn stage_stat(&self, rel: &str, entry: StatEntry) {
        // What was verified of this path is superseded (an output written
        // or restored by this run).
        if let Ok(mut v) = self.verified.write() {
            v.supersede(rel);
        }
        if self.read_only {
            return;
        }
        if let Ok(mut st) = self.staged() {
            st.stats.insert(rel.to_owned(), entry);
        }
    }

    /// Hashes a workspace file whose stat the caller just took, through the
    /// stat cache.
    pub(crate) fn hash_file_with_stat(
        &self,
        full: &Path,
        rel: &str,
        stat: FileStat,
    ) -> Result<(DataVersion, FileStat), StoreError> {
        if let Some(entry) = self.stat_entry(rel)
            && is_fresh(&entry, &stat)
        {
            self.counters.stat_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((entry.data_version, stat));
        }
        let file = std::fs::File::open(full).map_err(|e| missing_or(e, rel, "reading", full))?;
        let hashed = hash_against(file, stat).map_err(|e| StoreError::io("hashing", full, e))?;
        self.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_hashed.fetch_add(hashed.bytes, Ordering::Relaxed);
        if let Some(entry) = hashed.entry {
            self.stage_stat(rel, entry);
        }
        Ok((hashed.data_version, stat))
    }

    /// The data version of a source file or directory in the workspace,
    /// through the stat cache. A missing path is an error naming it.
    pub fn hash_path(&self, workspace_root: &Path, rel: &str) -> Result<DataVersion, StoreError> {
        check_rel(rel)?;
        if let Some(dv) = self.verified(rel) {
            self.counters.stat_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(dv);
        }
        self.hash_checked_path(workspace_root, rel)
    }

    /// [`Store::hash_path`] as the file is now: statted again even if an
    /// up-to-date check of this process found it unchanged (only the stat
    /// cache spares a re-read).
    pub(crate) fn hash_path_now(
        &self,
        workspace_root: &Path,
        rel: &str,
    ) -> Result<DataVersion, StoreError> {
        check_rel(rel)?;
        self.hash_checked_path(workspace_root, rel)
    }

    /// Both of the above, once `rel` is checked.
    fn hash_checked_path(
        &self,
        workspace_root: &Path,
        rel: &str,
    ) -> Result<DataVersion, StoreError> {
        let full = workspace_root.join(rel);
        let stat = self
            .root_dir(workspace_root)
            .stat(rel)
            .map_err(|e| missing_or(e, rel, "reading", &full))?;
        if stat.kind == record::StatKind::Dir {
            let manifest = self.dir_manifest(&full, rel, None)?;
            Ok(DataVersion::of_bytes(&manifest.encode()))
        } else if !stat_cache::is_regular(&stat) {
            Err(not_regular(&full))
        } else {
            Ok(self.hash_file_with_stat(&full, rel, stat)?.0)
        }
    }

    /// The workspace root `root`, opened for stats relative to it (the last
    /// root asked for is kept).
    pub(crate) fn root_dir(&self, root: &Path) -> Arc<RootDir> {
        let mut cached = match self.root_dir.lock() {
            Ok(cached) => cached,
            Err(_) => return Arc::new(RootDir::open(root)),
        };
        match &*cached {
            Some(dir) if dir.path() == root => Arc::clone(dir),
            _ => {
                let dir = Arc::new(RootDir::open(root));
                *cached = Some(Arc::clone(&dir));
                dir
            }
        }
    }

    /// The manifest of a workspace directory. With `ingest`, each file is
    /// also stored as a blob (unless the stat cache and the blob store say
    /// it already is).
    pub(crate) fn dir_manifest(
        &self,
        full: &Path,
        rel: &str,
        ingest: Option<&BlobStore>,
    ) -> Result<Manifest, StoreError> {
        let mut entries = Vec::new();
        walk(full, "", &mut entries)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut manifest = Manifest::default();
        for (sub, meta) in entries {
            let path = full.join(&sub);
            let sub_rel = format!("{rel}/{sub}");
            let kind = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(|e| StoreError::io("reading link", &path, e))?;
                EntryKind::Symlink { target: target.to_string_lossy().into_owned() }
            } else if meta.is_dir() {
                EntryKind::Dir
            } else if !meta.is_file() {
                return Err(not_regular(&path));
            } else {
                let exec = is_exec(&meta);
                let (blob, size) = match ingest {
                    None => {
                        let (dv, stat) = self.hash_file_with_stat(
                            &path,
                            &sub_rel,
                            FileStat::from_metadata(&meta),
                        )?;
                        (dv.0, stat.size)
                    }
                    Some(blobs) => self.ingest_file(blobs, &path, &sub_rel)?,
                };
                EntryKind::File { size, exec, blob }
            };
            manifest.entries.push(ManifestEntry { path: sub, kind });
        }
        Ok(manifest)
    }

    /// Stores a workspace file as a blob; records its stat.
    pub(crate) fn ingest_file(
        &self,
        blobs: &BlobStore,
        path: &Path,
        rel: &str,
    ) -> Result<(Digest, u64), StoreError> {
        let before = FileStat::of(path).map_err(|e| missing_or(e, rel, "reading", path))?;
        if let Some(entry) = self.stat_entry(rel)
            && is_fresh(&entry, &before)
            && std::fs::metadata(blobs.path(&entry.data_version.0))
                .is_ok_and(|m| m.len() == before.size)
        {
            self.counters.stat_hits.fetch_add(1, Ordering::Relaxed);
            self.stage_blob(entry.data_version.0, before.size, record::BlobKind::Data);
            return Ok((entry.data_version.0, before.size));
        }
        let started = now_ns();
        let (blob, size, _) = blobs.put_file(path)?;
        self.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_hashed.fetch_add(size, Ordering::Relaxed);
        self.stage_blob(blob, size, record::BlobKind::Data);
        if FileStat::of(path).ok() == Some(before) && size == before.size {
            self.stage_stat(rel, before.entry(DataVersion(blob), started));
        }
        Ok((blob, size))
    }

    /// Reads a small workspace file whole, recording its stat for the stat
    /// cache; `None` if it changed while being read (the caller falls back
    /// to the blob path, which copies first and hashes the copy).
    /// `before` is the file's stat, taken just before; the stat after the
    /// read is the open file's, as in [`stat_cache::hash_against`].
    pub(crate) fn read_small_file(
        &self,
        path: &Path,
        rel: &str,
        before: FileStat,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::Read as _;
        let started = now_ns();
        let mut file =
            std::fs::File::open(path).map_err(|e| missing_or(e, rel, "reading", path))?;
        let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0) + 1);
        file.read_to_end(&mut bytes).map_err(|e| missing_or(e, rel, "reading", path))?;
        let after = file.metadata().ok().map(|m| FileStat::from_metadata(&m));
        if after != Some(before) || bytes.len() as u64 != before.size {
            return Ok(None);
        }
        self.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_hashed.fetch_add(before.size, Ordering::Relaxed);
        self.stage_stat(rel, before.entry(DataVersion::of_bytes(&bytes), started));
        Ok(Some(bytes))
    }

    // ---- runs ----------------------------------------------------------

    /// Records the start of a run. The record is staged, not committed on
    /// its own: the run's first commit (a batch of finished steps, or its
    /// end) carries it, so a run costs no commit before its first step. A
    /// crash before that loses the record of a run that had recorded
    /// nothing else either; after it, the next open marks the run
    /// interrupted.
    ///
    /// With [`Store::set_end_with_finish_run`], the end of the engine's run
    /// ([`TraceStore::end_run`]) then leaves the staged batch to the commit
    /// of [`Store::finish_run`].
    pub fn begin_run(&self, run: &RunInfo) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly { dir: self.dir.clone() });
        }
        self.staged()?.run_start = Some(run.record());
        self.run_open.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Records how a run ended, with per-step outcomes; commits the staged
    /// batch in the same transaction.
    pub fn finish_run(&self, report: &RunReport) -> Result<(), StoreError> {
        self.finish_run_stamped(report, None)
    }

    /// [`Store::finish_run`], then the stamp of the run written (or the
    /// slot's removed) once that commit is made: a stamp never precedes
    /// the records it vouches for.
    pub fn finish_run_stamped(
        &self,
        report: &RunReport,
        stamp: Option<StampUpdate>,
    ) -> Result<(), StoreError> {
        let _commit = self.commit_guard()?;
        let mut st = self.staged()?;
        // A start still staged commits with the end (which then overwrites
        // it and clears the current run), and stays staged if this fails.
        let existing = match &st.run_start {
            Some(start) if start.run_id == report.run_id => Some(start.clone()),
            _ => self.run_record(&report.run_id)?,
        };
        let now = now_ms();
        let mut rec = existing.unwrap_or_else(|| RunRecord {
            run_id: report.run_id.clone(),
            job: String::new(),
            tags: BTreeMap::new(),
            command: String::new(),
            memoized: true,
            started_at_ms: now.saturating_sub(report.duration_ns / 1_000_000),
            ended_at_ms: None,
            status: RunState::Running,
            counts: Default::default(),
            duration_ns: 0,
        });
        rec.ended_at_ms = Some(now);
        rec.status = run_state(report.status);
        rec.counts = report.counts;
        rec.duration_ns = report.duration_ns;
        self.run_open.store(false, Ordering::SeqCst);
        let mut epoch = None;
        self.commit_staged(&st, |txn, path| {
            put_run(txn, path, &rec, report)?;
            let e = db_err(path);
            {
                let mut meta = txn.open_table(META).map_err(|x| e(&x))?;
                let is_current = meta
                    .get(b"current_run".as_slice())
                    .map_err(|x| e(&x))?
                    .is_some_and(|v| v.value() == rec.run_id.as_bytes());
                if is_current {
                    meta.remove(b"current_run".as_slice()).map_err(|x| e(&x))?;
                }
            }
            if let Some(StampUpdate::Put { slot, .. }) = &stamp {
                epoch = Some(stamp::epoch_for_put(txn, path)?);
                // What trove once kept of this slot in the database.
                txn.open_table(trace_db::STAMPS)
                    .map_err(|x| e(&x))?
                    .remove(slot.as_bytes())
                    .map_err(|x| e(&x))?;
            }
            Ok(())
        })?;
        st.clear_committed();
        drop(st);
        if let Some(update) = stamp {
            self.apply_stamp(update, epoch);
        }
        Ok(())
    }

    /// Records a whole run at once ([`Store::begin_run`] and
    /// [`Store::finish_run`] in one transaction): a run that had nothing to
    /// do (answered by an up-to-date stamp) costs one commit.
    pub fn record_run(&self, run: &RunInfo, report: &RunReport) -> Result<(), StoreError> {
        let rec = RunRecord {
            ended_at_ms: Some(now_ms()),
            status: run_state(report.status),
            counts: report.counts,
            duration_ns: report.duration_ns,
            ..run.record()
        };
        // With whatever is staged (stat entries an up-to-date check
        // re-hashed): still one commit.
        let _commit = self.commit_guard()?;
        let mut st = self.staged()?;
        self.commit_staged(&st, |txn, path| put_run(txn, path, &rec, report))?;
        st.clear_committed();
        Ok(())
    }

    fn run_record(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let txn = self.read_txn()?;
        let Some(bytes) = get_in(&self.db_path, &txn, RUNS, run_id.as_bytes())? else {
            return Ok(None);
        };
        match decode::<RunRecord>(RecordKind::Run, &bytes) {
            Ok(r) => Ok(Some(r)),
            Err(_) => {
                self.corrupt();
                Ok(None)
            }
        }
    }

    /// Runs, newest first (unreadable records are skipped and counted).
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let txn = self.read_txn()?;
        let rows = scan_in(&self.db_path, &txn, RUNS, b"", true, usize::MAX)?;
        let mut out = Vec::new();
        for (_, v) in rows {
            if out.len() >= limit {
                break;
            }
            match decode::<RunRecord>(RecordKind::Run, &v) {
                Ok(r) => out.push(r),
                Err(_) => self.corrupt(),
            }
        }
        Ok(out)
    }

    /// One run with its per-step outcomes; `run_id` may be a unique prefix.
    pub fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        let txn = self.read_txn()?;
        let id = match get_in(&self.db_path, &txn, RUNS, run_id.as_bytes())? {
            Some(_) => run_id.to_owned(),
            None => {
                let rows = scan_in(&self.db_path, &txn, RUNS, run_id.as_bytes(), false, 11)?;
                match rows.len() {
                    0 => return Ok(None),
                    1 => String::from_utf8_lossy(&rows[0].0).into_owned(),
                    _ => {
                        return Err(StoreError::AmbiguousRun {
                            prefix: run_id.to_owned(),
                            candidates: rows
                                .iter()
                                .take(10)
                                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                                .collect(),
                        });
                    }
                }
            }
        };
        let Some(bytes) = get_in(&self.db_path, &txn, RUNS, id.as_bytes())? else {
            return Ok(None);
        };
        let record = decode::<RunRecord>(RecordKind::Run, &bytes).map_err(|e| {
            self.corrupt();
            StoreError::CorruptRecord { what: format!("runs[{id}]"), detail: e.to_string() }
        })?;
        let steps = match get_in(&self.db_path, &txn, RUN_STEPS, id.as_bytes())? {
            Some(bytes) => decode(RecordKind::RunSteps, &bytes).map_err(|e| {
                self.corrupt();
                StoreError::CorruptRecord {
                    what: format!("run_steps[{id}]"),
                    detail: e.to_string(),
                }
            })?,
            None => Vec::new(),
        };
        Ok(Some(RunDetail { record, steps }))
    }

    /// The latest captured output of a step (success or failure).
    pub fn step_log(&self, step: &str) -> Result<Option<StepLogRecord>, StoreError> {
        let log = match self.find_staged(|st| st.logs.get(step).cloned())? {
            Some(l) => Some(l),
            None => {
                let txn = self.read_txn()?;
                match get_in(&self.db_path, &txn, LOGS, step.as_bytes())? {
                    Some(bytes) => match decode::<StepLogRecord>(RecordKind::Log, &bytes) {
                        Ok(l) => Some(l),
                        Err(_) => {
                            self.corrupt();
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        let trace = self.latest_trace_record(step).ok().flatten();
        Ok(match (log, trace) {
            (Some(log), Some(t)) if *t.trace.run_id > *log.run_id => Some(empty_log(&t)),
            (Some(log), _) => Some(log),
            (None, Some(t)) => Some(empty_log(&t)),
            (None, None) => None,
        })
    }

    fn latest_trace_record(&self, step: &str) -> Result<Option<TraceRecord>, StoreError> {
        if let Some(rec) = self.find_staged(|st| st.latest.get(step).cloned())? {
            return Ok(Some(rec));
        }
        let Some(bytes) = self.cached_get(LATEST, step.as_bytes())? else {
            return Ok(None);
        };
        let latest = decode::<LatestRecord>(RecordKind::Latest, &bytes).map_err(|e| {
            StoreError::CorruptRecord { what: format!("latest[{step}]"), detail: e.to_string() }
        })?;
        let Some(bytes) = self.cached_get(TRACES, latest.op_version.0.as_slice())? else {
            return Ok(None);
        };
        let rec = decode::<TraceRecord>(RecordKind::Trace, &bytes).map_err(|e| {
            StoreError::CorruptRecord {
                what: format!("traces[{}]", latest.op_version.short(12)),
                detail: e.to_string(),
            }
        })?;
        Ok(Some(rec))
    }

    /// Commits the staged batch if it is full or old enough (unless the
    /// scheduler flushes in the background). Takes the staging guard so the
    /// commit can take the locks in their order.
    fn maybe_commit(&self, st: MutexGuard<'_, Staged>) -> Result<(), StoreError> {
        if self.background_flush_ms.load(Ordering::Relaxed) != u64::MAX {
            return Ok(());
        }
        let max = self.batch_max.load(Ordering::Relaxed);
        let delay = Duration::from_millis(self.batch_delay_ms.load(Ordering::Relaxed));
        let due = st.steps >= max || st.since.is_some_and(|s| s.elapsed() >= delay);
        drop(st);
        if due { self.flush_all() } else { Ok(()) }
    }

    /// Garbage collection: see [`GcPolicy`].
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport, StoreError> {
        gc::gc(self, policy)
    }

    /// Re-hashes every blob and checks every record and reference; reports
    /// and quarantines what is bad (unreadable records are removed, so the
    /// steps they described run again).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        gc::verify(self)
    }
}

/// How a run that ended with `status` is recorded.
fn run_state(status: RunStatus) -> RunState {
    match status {
        RunStatus::Succeeded => RunState::Succeeded,
        RunStatus::Failed => RunState::Failed,
        RunStatus::Cancelled => RunState::Cancelled,
    }
}

/// The steps a run that died committed, in the order they were committed:
/// those whose latest trace it wrote (ran) and whose latest log records its
/// failure. Read when the run is found interrupted, before any later run
/// could replace those records. Also when the last one was committed (ms
/// since the epoch; 0 if none).
fn finished_steps(
    txn: &redb::WriteTransaction,
    run_id: &str,
) -> Result<(Vec<StepReport>, u64), redb::Error> {
    let mut steps: Vec<(u64, StepReport)> = Vec::new();
    let latest = txn.open_table(LATEST)?;
    let traces = txn.open_table(TRACES)?;
    for row in latest.iter()? {
        let (_, value) = row?;
        let Ok(pointer) = decode::<LatestRecord>(RecordKind::Latest, value.value()) else {
            continue;
        };
        if pointer.run_id != run_id {
            continue;
        }
        let Some(bytes) = traces.get(pointer.op_version.0.as_slice())? else { continue };
        let Ok(rec) = decode::<TraceRecord>(RecordKind::Trace, bytes.value()) else {
            continue;
        };
        let outcome = StepOutcome::Ran { reasons: Vec::new(), duration_ns: rec.trace.duration_ns };
        steps.push((rec.committed_ms, StepReport { step: rec.trace.step, outcome }));
    }
    for row in txn.open_table(LOGS)?.iter()? {
        let (_, value) = row?;
        let Ok(log) = decode::<StepLogRecord>(RecordKind::Log, value.value()) else { continue };
        if log.run_id == run_id
            && let Some(message) = log.failure
        {
            let outcome = StepOutcome::Failed { message, exit_code: log.exit_code };
            steps.push((log.at_ms, StepReport { step: log.step.as_str().into(), outcome }));
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    let last_ms = steps.last().map_or(0, |(at, _)| *at);
    Ok((steps.into_iter().map(|(_, s)| s).collect(), last_ms))
}

/// Writes a run record and its per-step outcomes.
fn put_run(
    txn: &redb::WriteTransaction,
    path: &Path,
    rec: &RunRecord,
    report: &RunReport,
) -> Result<(), StoreError> {
    let e = db_err(path);
    txn.open_table(RUNS)
        .map_err(|x| e(&x))?
        .insert(rec.run_id.as_bytes(), encode(RecordKind::Run, rec).as_slice())
        .map_err(|x| e(&x))?;
    txn.open_table(RUN_STEPS)
        .map_err(|x| e(&x))?
        .insert(rec.run_id.as_bytes(), encode(RecordKind::RunSteps, &report.steps).as_slice())
        .map_err(|x| e(&x))?;
    Ok(())
}

/// Creates the database file atomically: initialized under a temp name,
/// made durable, then renamed into place, so a crash or a full disk during
/// creation never leaves a half-made `trove.redb` that no later open accepts.
/// Opens the database file read-write through the fault-injection seam.
/// The outer error is the file's; the inner one redb's (a panic inside redb
/// on a damaged file counts as corruption).
fn open_rw_db(
    builder: &redb::Builder,
    db_path: &Path,
    fs: &Fs,
) -> Result<Result<(redb::Database, Arc<FileBackend>), redb::DatabaseError>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(db_path)
        .map_err(|e| StoreError::io("opening", db_path, e))?;
    let backend = match fs::HookedBackend::new(file, fs.clone(), db_path) {
        Ok(backend) => backend,
        Err(e) => return Ok(Err(e)),
    };
    let file = backend.file();
    Ok(open_quietly(|| builder.create_with_backend(backend)).map(|db| (db, file)))
}

/// Makes a database file that a writer left unclean readable again, when
/// no writer holds the store: opens the store for writing without waiting
/// (which loads the allocator state the last commit recorded, or repairs,
/// and marks a run left running as interrupted) and closes it cleanly. A
/// damaged file is reported, not set aside: that is left to the next run.
/// `false`: a writer holds the lock, and the file becomes readable once it
/// has opened it.
fn settle_unclean(dir: &Path, fs: &Fs) -> Result<bool, StoreError> {
    let opts = OpenOptions {
        read_only: false,
        wait: false,
        command: "trove (making the store readable)".into(),
    };
    match Store::open_impl(dir, &opts, &mut |_| {}, fs.clone(), false) {
        Ok(store) => {
            // One commit, so damage that only a write meets shows now: the
            // store then sets the file aside as it closes (a file that
            // cannot be closed cleanly would never become readable).
            let committed = store.write_txn(|_, _| Ok(()));
            drop(store);
            committed.map(|()| true)
        }
        Err(StoreError::Locked { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the database file at `path`, which this process may not write,
/// over a scratch backend (see [`scratch`]).
fn open_scratch(path: &Path) -> Result<Db, StoreError> {
    let file = std::fs::File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    let backend =
        scratch::ScratchBackend::new(file).map_err(|e| StoreError::io("reading", path, e))?;
    match open_quietly(|| builder().create_with_backend(backend)) {
        Ok(db) => Ok(Db::Scratch(db)),
        Err(e) if is_damage(&e) => {
            Err(StoreError::Damaged { path: path.to_path_buf(), message: e.to_string() })
        }
        Err(e) => Err(db_err(path)(&e)),
    }
}

/// Opens a database with redb's panics caught (and not printed): a panic
/// while opening means damaged bytes, and is reported as corruption.
fn open_quietly<D>(
    open: impl FnOnce() -> Result<D, redb::DatabaseError>,
) -> Result<D, redb::DatabaseError> {
    trace_db::quietly(open).unwrap_or_else(|_| {
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
            "redb panicked while opening the file".into(),
        )))
    })
}

/// Whether redb refused a database file because its bytes are damaged (as
/// opposed to locked, busy or from a newer format): corruption it detects,
/// a file cut short, or one whose header is not redb's.
fn is_damage(e: &redb::DatabaseError) -> bool {
    trace_db::RedbError::damage(e)
}

/// What a panic of redb's on a damaged file says, with its message.
pub(crate) fn pages_failed(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("redb failed on its pages: {text}")
}

/// Reads the root-to-leaf path of both ends of every table, with redb's
/// panics caught: a damaged table directory or root page shows here, at
/// open, where the database can still be set aside before anything runs.
/// `Err`: what is damaged.
fn probe(db: &redb::Database) -> Result<(), String> {
    // Only damage counts: any other refusal (a busy file, a table of
    // another type) is for the operations that meet it to report.
    fn damage(e: &dyn trace_db::RedbError) -> Result<(), String> {
        if e.damage() { Err(e.to_string()) } else { Ok(()) }
    }
    let read = || -> Result<(), String> {
        let txn = match redb::ReadableDatabase::begin_read(db) {
            Ok(txn) => txn,
            Err(e) => return damage(&e),
        };
        for table in ALL_TABLES {
            let handle = match txn.open_table(table) {
                Ok(handle) => handle,
                Err(e) => {
                    damage(&e)?;
                    continue;
                }
            };
            if let Err(e) = handle.first() {
                damage(&e)?;
            }
            if let Err(e) = handle.last() {
                damage(&e)?;
            }
        }
        Ok(())
    };
    trace_db::quietly(read).unwrap_or_else(|panic| Err(pages_failed(panic.as_ref())))
}

/// Moves a damaged database into the quarantine directory (beside the
/// blobs quarantined there), named by time, through the filesystem seam.
fn set_aside_db(dir: &Path, db_path: &Path, fs: &Fs) -> Result<PathBuf, StoreError> {
    let quarantine = dir.join("quarantine");
    fs.create_dir_all(&quarantine).map_err(|e| StoreError::io("creating", &quarantine, e))?;
    let aside = quarantine.join(format!("trove.redb.{}.damaged", now_ms()));
    fs.rename(db_path, &aside).map_err(|e| StoreError::io("setting aside", db_path, e))?;
    Ok(aside)
}

fn create_db(
    builder: &redb::Builder,
    dir: &Path,
    db_path: &Path,
    fs: &Fs,
) -> Result<(), StoreError> {
    let tmp = dir.join("trove.redb.new");
    let _ = std::fs::remove_file(&tmp);
    let res = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("creating", &tmp, e))?;
        let backend =
            fs::HookedBackend::new(file, fs.clone(), &tmp).map_err(|e| db_err(&tmp)(&e))?;
        let db = builder.create_with_backend(backend).map_err(|e| db_err(&tmp)(&e))?;
        let mut txn = db.begin_write().map_err(|e| db_err(&tmp)(&e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| db_err(&tmp)(&e))?;
        for t in ALL_TABLES {
            txn.open_table(t).map_err(|e| db_err(&tmp)(&e))?;
        }
        txn.open_table(META)
            .map_err(|e| db_err(&tmp)(&e))?
            .insert(b"schema".as_slice(), schema_bytes(u32::from(SCHEMA_VERSION)).as_slice())
            .map_err(|e| db_err(&tmp)(&e))?;
        txn.commit().map_err(|e| db_err(&tmp)(&e))?;
        db.close().map_err(|e| db_err(&tmp)(&e))?;
        fs.rename(&tmp, db_path).map_err(|e| StoreError::io("renaming into place", db_path, e))?;
        fs.sync_dir(dir).map_err(|e| StoreError::io("syncing", dir, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn empty_log(t: &TraceRecord) -> StepLogRecord {
    StepLogRecord {
        step: t.trace.step.to_string(),
        run_id: t.trace.run_id.to_string(),
        failure: None,
        exit_code: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        at_ms: t.committed_ms,
    }
}

pub(crate) fn not_regular(path: &Path) -> StoreError {
    StoreError::io(
        "reading",
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file, directory or symbolic link",
        ),
    )
}

pub(crate) fn missing_or(e: io::Error, rel: &str, action: &'static str, full: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::MissingPath { path: rel.to_owned() }
    } else {
        StoreError::io(action, full, e)
    }
}

#[cfg(unix)]
fn is_exec(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_exec(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Gives the owner full access to `dir` and every directory below it (not
/// following links), so what is inside can be removed or replaced: a
/// command may leave a read-only tree (copied from a read-only cache,
/// `chmod -R a-w`), and only its directories' modes stand in the way.
/// Says whether any mode changed.
#[cfg(unix)]
pub fn make_dirs_writable(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(false);
    }
    let mode = meta.permissions().mode();
    let mut changed = false;
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))?;
        changed = true;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            changed |= make_dirs_writable(&entry.path())?;
        }
    }
    Ok(changed)
}

/// [`make_dirs_writable`] where modes do not stop removal: nothing to do.
#[cfg(not(unix))]
pub fn make_dirs_writable(_dir: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Lists a directory recursively: (`/`-separated relative path, metadata
/// without following links).
pub(crate) fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, std::fs::Metadata)>,
) -> Result<(), StoreError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io("listing", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(StoreError::io(
                "listing",
                entry.path(),
                io::Error::new(io::ErrorKind::InvalidData, "file name is not UTF-8"),
            ));
        };
        if name.starts_with(".trove-") || (name.starts_with('.') && name.contains(".trove-")) {
            continue; // our own restore temp files
        }
        let meta = std::fs::symlink_metadata(entry.path())
            .map_err(|e| StoreError::io("reading", entry.path(), e))?;
        let rel = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        let is_dir = meta.is_dir();
        out.push((rel.clone(), meta));
        if is_dir {
            walk(&entry.path(), &rel, out)?;
        }
    }
    Ok(())
}

impl TraceStore for Store {
    fn latest_trace(&self, step: &str) -> Result<Option<Trace>, TraceError> {
        match self.latest_trace_record(step) {
            Ok(r) => Ok(r.map(|r| r.trace)),
            Err(StoreError::CorruptRecord { .. }) => {
                self.corrupt();
                Ok(None)
            }
            Err(e) => Err(TraceError::Store(e.to_string())),
        }
    }

    fn commit_trace(&self, trace: Trace, log: StepLog) -> Result<(), TraceError> {
        let to_err = |e: StoreError| TraceError::Store(e.to_string());
        let mut st = self.staged().map_err(to_err)?;
        let step = trace.step.to_string();
        let pending = st.pending.remove(&step).unwrap_or_default();
        for out in &trace.outputs {
            if let Some((v, rec)) = pending.iter().find(|(v, _)| *v == out.version) {
                let mut rec = rec.clone();
                rec.op_version = trace.op_version;
                st.outputs.insert(*v, rec);
            }
        }
        let now = now_ms();
        if !log.stdout.is_empty() || !log.stderr.is_empty() || st.logs.contains_key(&step) {
            let rec = StepLogRecord {
                step: step.clone(),
                run_id: trace.run_id.to_string(),
                failure: None,
                exit_code: None,
                stdout: log.stdout,
                stderr: log.stderr,
                at_ms: now,
            };
            st.logs.insert(step.clone(), rec);
        }
        let rec = TraceRecord { trace, committed_ms: now };
        st.latest.insert(step, rec.clone());
        st.traces.push(rec);
        st.steps += 1;
        st.since.get_or_insert_with(Instant::now);
        self.maybe_commit(st).map_err(to_err)
    }

    fn record_failure(&self, failure: StepFailure, log: StepLog) -> Result<(), TraceError> {
        let to_err = |e: StoreError| TraceError::Store(e.to_string());
        let mut st = self.staged().map_err(to_err)?;
        st.pending.remove(failure.step.as_str());
        let rec = StepLogRecord {
            step: failure.step.to_string(),
            run_id: failure.run_id.to_string(),
            failure: Some(failure.message),
            exit_code: failure.exit_code,
            stdout: log.stdout,
            stderr: log.stderr,
            at_ms: now_ms(),
        };
        st.logs.insert(failure.step.to_string(), rec);
        st.steps += 1;
        st.since.get_or_insert_with(Instant::now);
        self.maybe_commit(st).map_err(to_err)
    }

    fn flush(&self) -> Result<(), TraceError> {
        self.flush_all().map_err(|e| TraceError::Store(e.to_string()))
    }

    fn end_run(&self) -> Result<(), TraceError> {
        // A run begun on this store ends with `finish_run`, whose commit
        // takes the staged batch with the run record.
        let deferred =
            self.end_with_finish.load(Ordering::SeqCst) && self.run_open.load(Ordering::SeqCst);
        if deferred { Ok(()) } else { self.flush() }
    }

    fn background_flush(&self) -> Option<Duration> {
        let ms = self.background_flush_ms.load(Ordering::Relaxed);
        (ms != u64::MAX).then(|| Duration::from_millis(ms))
    }
}

impl Store {
    /// Commits what is staged and lets go of the store for a process about
    /// to exit, without redb's shutdown work (a commit recording the
    /// allocator state, then a header write, four fsyncs in all): every
    /// durable commit of trove records the allocator state already (quick
    /// repair), so the next open loads it exactly as after a clean close —
    /// and exactly as after a crash, which the crash tests exercise. The
    /// database file stays open and locked until the process exits, so
    /// nothing in this process may open the store again.
    pub fn close_at_exit(mut self) -> Result<(), StoreError> {
        self.flush_all()?;
        // Reads of this process end first: they hold reader slots of the
        // file.
        self.invalidate_reads();
        let mut db =
            self.db.write().map_err(|_| StoreError::Internal("database lock poisoned".into()))?;
        if let Db::Rw(_) = &*db {
            std::mem::forget(std::mem::replace(&mut *db, Db::Left));
            // The file stays open (redb's handle is gone, not closed), but
            // its locks go now, before trove's own lock: a writer waiting
            // for that one must find the database free.
            if let Some(file) = &self.file {
                file.close().map_err(|e| db_err(&self.db_path)(&e))?;
            }
        }
        drop(db);
        self.set_aside_if_damaged();
        Ok(())
    }

    /// A writer whose database showed damage in this process (a commit or
    /// a read failed on its pages) moves the file to the quarantine as it
    /// closes: the next open starts a fresh one, as for a file damaged
    /// beyond opening, instead of failing on the same pages for good.
    fn set_aside_if_damaged(&mut self) {
        if self.read_only || trace_db::take_damage(&self.db_path).is_none() {
            return;
        }
        // Reads hold the database: they go first, then redb's handle
        // (whose drop may trip on the damage too), then its file locks.
        self.invalidate_reads();
        if let Ok(mut db) = self.db.write() {
            let old = std::mem::replace(&mut *db, Db::Left);
            let _ = trace_db::quietly(move || drop(old));
        }
        if let Some(file) = &self.file {
            let _ = file.close();
        }
        let _ = set_aside_db(&self.dir, &self.db_path, self.blobs.fs());
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush_all();
        if !self.read_only {
            // redb's handle commits as it closes, which can trip on damaged
            // pages no read touched: damage, set aside below.
            self.invalidate_reads();
            if let Ok(mut db) = self.db.write() {
                let old = std::mem::replace(&mut *db, Db::Left);
                if let Err(panic) = trace_db::quietly(move || drop(old)) {
                    let message = pages_failed(panic.as_ref());
                    trace_db::note_damage(&self.db_path, &message);
                }
            }
        }
        self.set_aside_if_damaged();
    }
}

/// Reads the whole `outputs` table (gc and verify).
pub(crate) fn all_rows(store: &Store, table: trace_db::Table) -> Result<Rows, StoreError> {
    let txn = store.read_txn()?;
    scan_in(&store.db_path, &txn, table, b"", false, usize::MAX)
}

const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Store>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn open_rw(dir: &Path) -> Result<Store, StoreError> {
        Store::open(dir, &OpenOptions::default(), &mut |_| {})
    }

    #[cfg(unix)]
    #[test]
    fn make_dirs_writable_opens_up_every_directory_below_and_follows_no_link() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        for dir in [tree.join("a/b"), tree.join("a"), outside.clone()] {
            set(&dir, 0o555);
        }
        assert!(make_dirs_writable(&tree).unwrap());
        assert_eq!(mode(&tree.join("a")), 0o755);
        assert_eq!(mode(&tree.join("a/b")), 0o755);
        assert_eq!(mode(&tree.join("a/b/f")) & 0o200, 0o200, "files are left as they are");
        assert_eq!(mode(&outside), 0o555, "a link is not followed");
        assert!(!make_dirs_writable(&tree).unwrap(), "nothing left to change");
        std::fs::remove_dir_all(&tree).unwrap();
        set(&outside, 0o755);
    }

    #[test]
    fn schema_bump_a_store_from_a_newer_trove_is_a_clear_error_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".trove");
        drop(open_rw(&dir).unwrap());
        {
            let db = redb::Builder::new()
                .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                .open(dir.join("trove.redb"))
                .unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(b"schema".as_slice(), schema_bytes(99).as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        for read_only in [false, true] {
            let opts = OpenOptions { read_only, ..OpenOptions::default() };
            let err = Store::open(&dir, &opts, &mut |_| {}).unwrap_err();
            assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("schema version 99, newer than the 2"), "{msg}");
        }
    }

    #[test]
    fn a_run_left_running_by_a_dead_process_is_marked_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".trove");
        let run_id = Store::new_run_id();
        {
            let store = open_rw(&dir).unwrap();
            store.begin_run(&RunInfo { run_id: run_id.clone(), ..RunInfo::default() }).unwrap();
        }
        let store = open_rw(&dir).unwrap();
        let detail = store.run(&run_id).unwrap().unwrap();
        assert_eq!(detail.record.status, RunState::Interrupted);
    }

    #[test]
    fn run_ids_sort_by_time_and_are_unique() {
        let ids: Vec<String> = (0..1000).map(|_| Store::new_run_id()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "run ids of one process are increasing");
        assert!(ids.iter().all(|id| id.len() == 20));
    }

    /// A traced output of step `i`, as the IO manager and the scheduler
    /// leave it: staged by `handle_output`, then traced.
    fn trace_step(store: &Store, i: usize) -> OutputVersion {
        let step = format!("s{i}");
        let version = OutputVersion(Digest::of_bytes(step.as_bytes()));
        let data_version = DataVersion::of_bytes(&[i as u8]);
        let rec = OutputRecord {
            step: step.clone(),
            output: "o".into(),
            op_version: Digest::of_bytes(b"op"),
            run_id: "r".into(),
            data_version,
            size: 1,
            location: Location::Inline(vec![i as u8]),
            created_ms: 0,
        };
        store.stage_output(&step, version, rec).unwrap();
        let trace = Trace {
            step: step.as_str().into(),
            run_id: "r".into(),
            op_version: Digest::of_bytes(format!("op{i}").as_bytes()),
            unversioned: false,
            components: trove_engine::VersionComponents {
                scheme: 1,
                code: trove_engine::CodeComponent {
                    version: None,
                    explicit: Some("1".into()),
                    text: None,
                    files: vec![],
                },
                config: "{}".into(),
                resources: vec![],
                env: vec![],
                inputs: vec![],
                outputs: vec![],
            },
            outputs: vec![trove_engine::TraceOutput {
                name: "o".into(),
                version,
                data_version,
                size: 1,
            }],
            duration_ns: 0,
        };
        store.commit_trace(trace, StepLog::default()).unwrap();
        version
    }

    /// A batch being committed is out of `staged` and not yet in redb: a
    /// lookup meanwhile must still find it (a false miss re-runs a step).
    #[test]
    fn lookups_find_every_traced_output_while_batches_commit() {
        const STEPS: usize = 300;
        let tmp = tempfile::tempdir().unwrap();
        let store = open_rw(&tmp.path().join(".trove")).unwrap();
        store.set_background_flush(Some(Duration::ZERO)); // only explicit flushes
        let traced = AtomicUsize::new(0);
        let versions: Vec<OutputVersion> = (0..STEPS)
            .map(|i| OutputVersion(Digest::of_bytes(format!("s{i}").as_bytes())))
            .collect();
        std::thread::scope(|threads| {
            threads.spawn(|| {
                while traced.load(Ordering::SeqCst) < STEPS {
                    store.flush_all().unwrap();
                }
            });
            threads.spawn(|| {
                loop {
                    let n = traced.load(Ordering::SeqCst);
                    // The newest steps (in staging or in flight) and a
                    // spread of older ones (committed).
                    for i in (n.saturating_sub(8)..n).chain((0..n).step_by(37)) {
                        let found = store.lookup_output(&versions[i]).unwrap();
                        assert!(found.is_some(), "output of s{i} missed with {n} traced");
                        let all = store.lookup_outputs(&versions[i..=i]).unwrap();
                        assert!(all[0].is_some(), "batch lookup of s{i} missed with {n} traced");
                        let latest = store.latest_trace_record(&format!("s{i}")).unwrap();
                        assert!(latest.is_some(), "trace of s{i} missed with {n} traced");
                    }
                    if n == STEPS {
                        break;
                    }
                }
            });
            for i in 0..STEPS {
                trace_step(&store, i);
                traced.store(i + 1, Ordering::SeqCst);
                if i % 30 == 29 {
                    // Let a commit land before going on, however the
                    // threads are scheduled.
                    let before = store.counters.batches.load(Ordering::SeqCst);
                    while store.counters.batches.load(Ordering::SeqCst) == before {
                        std::thread::yield_now();
                    }
                }
            }
        });
    }

    /// A batch whose commit failed goes back under what was staged since:
    /// its traces first, and the newer record of a key wins.
    #[test]
    fn a_failed_batch_is_staged_again_under_newer_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_rw(&tmp.path().join(".trove")).unwrap();
        store.set_background_flush(Some(Duration::ZERO));
        trace_step(&store, 1);
        trace_step(&store, 2);
        let older = store.staged().unwrap().take_committable();
        trace_step(&store, 2);
        store.staged().unwrap().latest.get_mut("s2").unwrap().committed_ms = u64::MAX;
        trace_step(&store, 3);
        let mut st = store.staged().unwrap();
        st.merge_older(older);
        let order: Vec<&str> = st.traces.iter().map(|t| t.trace.step.as_str()).collect();
        assert_eq!(order, ["s1", "s2", "s2", "s3"]);
        assert_eq!(st.latest["s2"].committed_ms, u64::MAX, "the newer latest record wins");
        assert_eq!(st.latest.len(), 3);
        assert_eq!(st.outputs.len(), 3);
        assert_eq!(st.steps, 4);
    }

    #[test]
    fn store_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Store>();
    }
}
