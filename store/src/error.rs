//! [`StoreError`]: every way opening, reading or writing the store can fail.
//!
//! Variants carry the culprit (store directory, path, step, run) so the CLI
//! prints one clear line; messages are lowercase with no trailing period.
//! Corrupt *records* are not errors on the read paths the engine uses (they
//! count as misses); they surface here only from commands that must report
//! them (`verify`) or when nothing sensible can be served.

use std::io;
use std::path::PathBuf;

use crate::lock::LockHolder;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the write lock (and `--no-wait` was asked).
    #[error("store {} is locked by {holder}", dir.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// Who holds the lock.
        holder: LockHolder,
    },
    /// A read-only open found no store.
    #[error("no store at {}: nothing has run here yet", dir.display())]
    NotFound {
        /// The store directory.
        dir: PathBuf,
    },
    /// The store was written by a newer trove.
    #[error(
        "store {} has schema version {found}, newer than the {supported} this trove understands; upgrade trove or remove the store",
        dir.display()
    )]
    NewerSchema {
        /// The store directory.
        dir: PathBuf,
        /// The schema version on disk.
        found: u32,
        /// The newest schema this build reads.
        supported: u32,
    },
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing`, `renaming`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A workspace path the caller named does not exist.
    #[error("{path} does not exist in the workspace")]
    MissingPath {
        /// The workspace-relative path.
        path: String,
    },
    /// A workspace path is not inside the workspace (absolute, `..`).
    #[error("{path} is not a path inside the workspace")]
    OutsideWorkspace {
        /// The offending path.
        path: String,
    },
    /// The trace database failed.
    #[error("trace database {}: {message}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// redb's message.
        message: String,
    },
    /// The trace database's bytes are damaged; a writer sets it aside (in
    /// the quarantine) and the next open starts afresh.
    #[error(
        "trace database {} is damaged ({message}); it is set aside in the store's quarantine/ by the next `trove run` (or now, if this command was writing), and a fresh one starts: every step runs again",
        path.display()
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// redb's message.
        message: String,
    },
    /// A stored record failed its checksum or did not decode.
    #[error("corrupt record {what}: {detail}")]
    CorruptRecord {
        /// Which record (table and key).
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A blob did not match its name or its data version.
    #[error("blob {blob} is corrupt: found {found}; it was quarantined")]
    CorruptBlob {
        /// The blob's name (blake3 hex).
        blob: String,
        /// The digest of the bytes found.
        found: String,
    },
    /// A run id (or prefix) matched several runs.
    #[error("run id `{prefix}` is ambiguous: it matches {candidates:?}")]
    AmbiguousRun {
        /// The prefix given.
        prefix: String,
        /// Some of the matching ids.
        candidates: Vec<String>,
    },
    /// The store was opened read-only and asked to write.
    #[error("store {} was opened read-only", dir.display())]
    ReadOnly {
        /// The store directory.
        dir: PathBuf,
    },
    /// A bug in trove.
    #[error("internal error: {0}; this is a bug in trove")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io { action, path: path.into(), source }
    }

    /// Whether the error is a full disk (ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}
