//! The trace database: redb tables, the schema check, and reads that
//! survive corrupt pages.
//!
//! Tables (all values are [`record`](crate::record) envelopes):
//!
//! | table     | key                 | value            |
//! | --------- | ------------------- | ---------------- |
//! | `meta`    | name                | raw bytes (`schema` = u32 LE, `current_run` = id, `stamp_epoch` = 16 B) |
//! | `traces`  | op version (32 B)   | [`TraceRecord`](crate::record::TraceRecord) |
//! | `outputs` | output version (32 B) | [`OutputRecord`](crate::record::OutputRecord) (points at its trace) |
//! | `latest`  | step name           | [`LatestRecord`](crate::record::LatestRecord) |
//! | `runs`    | run id (sorts by time) | [`RunRecord`](crate::record::RunRecord) |
//! | `run_steps` | run id            | per-step outcomes |
//! | `logs`    | step name           | [`StepLogRecord`](crate::record::StepLogRecord) |
//! | `stat`    | workspace path      | [`StatEntry`](crate::record::StatEntry) |
//! | `blobs`   | blob name (32 B)    | [`BlobMeta`](crate::record::BlobMeta) |
//! | `stamps`  | (no longer written: stamps are files, [`crate::stamp`]) | |
//! | `cache`   | (no longer written: the parse cache is files, `cache.rs`) | |
//!
//! Every process opens redb in `SingleWriter` mode: the writer (holding
//! trove's own lock) and any number of read-only processes (`log`, `show`,
//! `plan`) share the file, and readers see the writer's commits without
//! blocking it. redb may panic on a corrupt page (facts.md), so reads run
//! under `catch_unwind` and a panic becomes a corrupt-record error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::{ReadableDatabase, TableDefinition};

use crate::error::StoreError;

/// Raw `(key, value)` rows of a table.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const META: Table = TableDefinition::new("meta");
pub(crate) const TRACES: Table = TableDefinition::new("traces");
pub(crate) const OUTPUTS: Table = TableDefinition::new("outputs");
pub(crate) const LATEST: Table = TableDefinition::new("latest");
pub(crate) const RUNS: Table = TableDefinition::new("runs");
pub(crate) const RUN_STEPS: Table = TableDefinition::new("run_steps");
pub(crate) const LOGS: Table = TableDefinition::new("logs");
pub(crate) const STAT: Table = TableDefinition::new("stat");
pub(crate) const BLOBS: Table = TableDefinition::new("blobs");
pub(crate) const STAMPS: Table = TableDefinition::new("stamps");
pub(crate) const CACHE: Table = TableDefinition::new("cache");

pub(crate) const ALL_TABLES: [Table; 11] =
    [META, TRACES, OUTPUTS, LATEST, RUNS, RUN_STEPS, LOGS, STAT, BLOBS, STAMPS, CACHE];

/// The open redb database: read-write or read-only; `Left` once
/// [`Store::close_at_exit`](crate::Store::close_at_exit) has let go of it.
pub(crate) enum Db {
    Rw(redb::Database),
    Ro(redb::ReadOnlyDatabase),
    /// A file this process may not write, opened over a scratch backend
    /// (see [`crate::scratch`]): read-only to trove.
    Scratch(redb::Database),
    Left,
}

impl Db {
    /// A read transaction; `None` once the database was left.
    pub(crate) fn begin_read(
        &self,
    ) -> Option<Result<redb::ReadTransaction, redb::TransactionError>> {
        match self {
            Db::Rw(db) => Some(db.begin_read()),
            Db::Ro(db) => Some(db.begin_read()),
            Db::Scratch(db) => Some(db.begin_read()),
            Db::Left => None,
        }
    }
}

/// Maps any redb error to a [`StoreError`] naming the file:
/// [`StoreError::Damaged`] when it says the file's bytes are damaged,
/// [`StoreError::Database`] otherwise.
pub(crate) fn db_err(path: &Path) -> impl Fn(&dyn RedbError) -> StoreError + '_ {
    move |e| {
        if e.damage() {
            note_damage(path, &e.to_string());
            StoreError::Damaged { path: path.to_path_buf(), message: e.to_string() }
        } else {
            StoreError::Database { path: path.to_path_buf(), message: e.to_string() }
        }
    }
}

/// Database files found damaged in this process, with what was found: the
/// writer that holds one sets it aside when it closes (see
/// `Store::set_aside_if_damaged`), wherever the damage showed (a lookup
/// deep in a run, a commit), so the next open starts afresh instead of
/// failing on the same pages for good.
fn damaged() -> std::sync::MutexGuard<'static, Vec<(std::path::PathBuf, String)>> {
    static DAMAGED: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    DAMAGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records that the database file at `path` is damaged.
pub(crate) fn note_damage(path: &Path, message: &str) {
    let mut found = damaged();
    if !found.iter().any(|(p, _)| p == path) {
        found.push((path.to_path_buf(), message.to_owned()));
    }
}

/// What was found damaged in the database file at `path`, if anything
/// (and forgets it: the file is about to be set aside).
pub(crate) fn take_damage(path: &Path) -> Option<String> {
    let mut found = damaged();
    let at = found.iter().position(|(p, _)| p == path)?;
    Some(found.swap_remove(at).1)
}

/// A redb error, and whether it means damaged bytes: corruption redb
/// detects, or a page that points past the end of the file.
pub(crate) trait RedbError: std::fmt::Display {
    /// Whether the file's bytes are damaged.
    fn damage(&self) -> bool;
}

/// Whether a storage error means damaged bytes.
pub(crate) fn storage_damage(e: &redb::StorageError) -> bool {
    match e {
        redb::StorageError::Corrupted(_) => true,
        redb::StorageError::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData)
        }
        _ => false,
    }
}

impl RedbError for redb::StorageError {
    fn damage(&self) -> bool {
        storage_damage(self)
    }
}

impl RedbError for redb::Error {
    fn damage(&self) -> bool {
        match self {
            redb::Error::Corrupted(_) => true,
            redb::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ),
            _ => false,
        }
    }
}

macro_rules! storage_wrapper {
    ($($t:ty),*) => {$(
        impl RedbError for $t {
            fn damage(&self) -> bool {
                match self {
                    Self::Storage(e) => storage_damage(e),
                    _ => false,
                }
            }
        }
    )*};
}

storage_wrapper!(
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::CompactionError
);

impl RedbError for redb::SetDurabilityError {
    fn damage(&self) -> bool {
        false
    }
}

impl RedbError for std::io::Error {
    fn damage(&self) -> bool {
        false
    }
}

thread_local! {
    /// Set while this thread runs a redb call whose panic trove catches.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic, without letting the panic hook print it:
/// redb panics (`unreachable!`) on some corrupt pages, and trove reports
/// those as corruption with its own words. Panics anywhere else, or on
/// other threads, still reach the previous hook.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let res = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    res
}

/// Runs a read that may panic on a corrupt page; a panic is reported as a
/// corrupt record of `what`.
pub(crate) fn guarded<T>(
    what: impl FnOnce() -> String,
    read: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match quietly(read) {
        Ok(res) => res,
        Err(_) => Err(StoreError::CorruptRecord {
            what: what(),
            detail: "the database page holding it is corrupt (run `trove verify`)".into(),
        }),
    }
}

/// Reads one value in an existing read transaction.
pub(crate) fn get_in(
    path: &Path,
    txn: &redb::ReadTransaction,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    guarded(
        || format!("{}[{}]", table_name(table), show_key(key)),
        || {
            let t = match txn.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(path)(&e)),
            };
            Ok(t.get(key).map_err(|e| db_err(path)(&e))?.map(|v| v.value().to_vec()))
        },
    )
}

/// All `(key, value)` pairs of a table whose key starts with `prefix`, in
/// key order (reversed if asked), at most `limit`.
pub(crate) fn scan_in(
    path: &Path,
    txn: &redb::ReadTransaction,
    table: Table,
    prefix: &[u8],
    reverse: bool,
    limit: usize,
) -> Result<Rows, StoreError> {
    guarded(
        || format!("{} (scan)", table_name(table)),
        || {
            let t = match txn.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(db_err(path)(&e)),
            };
            let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let iter = t.range::<&[u8]>(prefix..).map_err(|e| db_err(path)(&e))?;
            let items: Box<dyn Iterator<Item = _>> =
                if reverse { Box::new(iter.rev()) } else { Box::new(iter) };
            for item in items {
                let (k, v) = item.map_err(|e| db_err(path)(&e))?;
                if k.value().starts_with(prefix) {
                    out.push((k.value().to_vec(), v.value().to_vec()));
                    if out.len() >= limit {
                        break;
                    }
                } else if !reverse || !out.is_empty() {
                    break;
                }
            }
            Ok(out)
        },
    )
}

pub(crate) fn table_name(table: Table) -> String {
    use redb::TableHandle;
    table.name().to_owned()
}

pub(crate) fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if key.len() != 32 => s.to_owned(),
        _ => key.iter().take(8).map(|b| format!("{b:02x}")).collect(),
    }
}
