//! [`FsIoManager`]: the memoizing IO manager over the store.
//!
//! One manager serves both kinds of outputs the engine hands over:
//!
//! - **files and directories** the op wrote in the workspace
//!   (`OutputValue::File`): ingested as blobs after the step succeeds (a
//!   directory as a manifest of its files), or kept inline in the record if
//!   no larger than [`INLINE_MAX`](crate::INLINE_MAX) (a blob costs a temp
//!   file, a rename and three fsyncs, more than a small command); on a hit,
//!   the workspace copy is checked through the stat cache and restored,
//!   verified on the way, if it is missing or differs
//!   ([`Restore::Restored`]);
//! - **in-memory values** of library ops (`OutputValue::Bytes`): inline in
//!   the redb record up to [`INLINE_MAX`](crate::INLINE_MAX) bytes, in a blob
//!   above.
//!
//! `has_output` is one record lookup, never a re-hash. Content that fails
//! verification is never served: the error is [`IoError::Corrupt`] (the
//! engine reports it and runs the step again) and a bad blob is quarantined.

use std::path::{Path, PathBuf};

use trove_engine::{
    DataVersion, Digest, IoError, IoManager, OutputContext, OutputValue, Restore, StoredOutput,
};

use crate::blob::{BlobReadError, EntryKind, Manifest};
use crate::error::StoreError;
use crate::lock::now_ms;
use crate::record::{BlobKind, Location, OutputRecord};
use crate::stat_cache::{FileStat, RootDir, is_regular, now_ns};
use crate::{INLINE_MAX, Store, check_rel};

/// The store's memoizing IO manager for one workspace.
#[derive(Debug)]
pub struct FsIoManager<'a> {
    store: &'a Store,
    root: PathBuf,
    /// The root, opened for stats relative to it.
    dir: std::sync::Arc<RootDir>,
    /// The record the last `has_output` found: the engine asks `restore`
    /// about the same output right after, and nothing writes that record in
    /// between (the step is a hit, so it does not run, and this process
    /// holds the store's writer lock), so that second lookup (a redb read
    /// per memoized step) is not made again.
    last_found: std::sync::Mutex<Option<(trove_engine::OutputVersion, OutputRecord)>>,
}

fn other(ctx: &OutputContext<'_>, e: StoreError) -> IoError {
    match e {
        StoreError::MissingPath { path } => IoError::NotWritten { what: path },
        e => IoError::Other {
            context: match ctx.path {
                Some(path) => format!("storing output {} ({path})", ctx.output),
                None => format!("storing output {}", ctx.output),
            },
            message: e.to_string(),
        },
    }
}

/// A failure to put a stored output back at its workspace path `rel`.
fn restoring(rel: &str, e: StoreError) -> IoError {
    IoError::Other { context: format!("restoring {rel}"), message: e.to_string() }
}

fn read_err(ctx: &OutputContext<'_>, expected: &Digest, e: BlobReadError) -> IoError {
    match e {
        BlobReadError::Missing => IoError::Missing { identifier: ctx.identifier() },
        BlobReadError::Corrupt { found, quarantined } => IoError::Corrupt {
            identifier: ctx.identifier(),
            expected: expected.to_hex(),
            found: match quarantined {
                Some(path) => {
                    format!("{} (the blob was moved to {})", found.to_hex(), path.display())
                }
                None => found.to_hex(),
            },
        },
        BlobReadError::Io(e) => IoError::Other {
            context: format!("loading {}", ctx.identifier()),
            message: e.to_string(),
        },
    }
}

impl<'a> FsIoManager<'a> {
    pub(crate) fn new(store: &'a Store, root: &Path) -> FsIoManager<'a> {
        FsIoManager {
            store,
            root: root.to_path_buf(),
            dir: store.root_dir(root),
            last_found: std::sync::Mutex::new(None),
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn record(
        &self,
        ctx: &OutputContext<'_>,
        stored: &StoredOutput,
    ) -> Result<OutputRecord, IoError> {
        let found = self.last_found.lock().ok().and_then(|mut last| {
            last.take_if(|(version, _)| *version == ctx.version).map(|(_, rec)| rec)
        });
        if let Some(rec) = found
            && rec.data_version == stored.data_version
        {
            return Ok(rec);
        }
        match self.store.lookup_output(&ctx.version) {
            Ok(Some(rec)) if rec.data_version == stored.data_version => Ok(rec),
            Ok(_) => Err(IoError::Missing { identifier: ctx.identifier() }),
            Err(e) => Err(record_err(ctx, e)),
        }
    }

    /// The workspace path of a file or directory output: the one the
    /// engine names, else the one it was stored from.
    fn path_of(&self, ctx: &OutputContext<'_>, rec: &OutputRecord) -> Result<String, IoError> {
        let stored = match &rec.location {
            Location::File { path, .. }
            | Location::Dir { path }
            | Location::InlineFile { path, .. } => Some(path.as_str()),
            Location::Inline(_) | Location::Blob => None,
        };
        let rel = ctx.path.or(stored).ok_or_else(|| IoError::Other {
            context: format!("restoring {}", ctx.identifier()),
            message: "a file output without a path; this is a bug in trove".into(),
        })?;
        check_rel(rel).map_err(|e| other(ctx, e))?;
        Ok(rel.to_owned())
    }

    /// Makes the workspace copy at `rel` match `rec`; says whether it had
    /// to restore anything.
    fn ensure_workspace(
        &self,
        ctx: &OutputContext<'_>,
        rel: &str,
        rec: &OutputRecord,
    ) -> Result<Restore, IoError> {
        let full = self.root.join(rel);
        match &rec.location {
            Location::File { mode, .. } => {
                self.ensure_file(ctx, &full, rel, &rec.data_version.0, *mode)
            }
            Location::Dir { .. } => {
                let blobs = self.store.blob_store();
                let bytes = blobs
                    .read_verified(&rec.data_version.0)
                    .map_err(|e| read_err(ctx, &rec.data_version.0, e))?;
                let manifest = Manifest::decode(&bytes).ok_or_else(|| IoError::Corrupt {
                    identifier: ctx.identifier(),
                    expected: rec.data_version.to_hex(),
                    found: "an undecodable manifest".into(),
                })?;
                // A read-only tree left by the command that made it: its
                // directories are opened up and the restore tried again.
                self.ensure_dir(ctx, &full, rel, &manifest).or_else(|e| {
                    match crate::make_dirs_writable(&full) {
                        Ok(true) => self.ensure_dir(ctx, &full, rel, &manifest),
                        _ => Err(e),
                    }
                })
            }
            Location::InlineFile { mode, bytes, .. } => {
                self.ensure_inline_file(ctx, &full, rel, &rec.data_version, bytes, *mode)
            }
            Location::Inline(_) | Location::Blob => Ok(Restore::Present),
        }
    }

    /// [`Self::ensure_file`] for a file kept inline in its record: the bytes
    /// are checked against the data version before they are written.
    fn ensure_inline_file(
        &self,
        ctx: &OutputContext<'_>,
        full: &Path,
        rel: &str,
        data_version: &DataVersion,
        bytes: &[u8],
        mode: u32,
    ) -> Result<Restore, IoError> {
        if self.workspace_copy_is(full, rel, &data_version.0) {
            return ensure_exec_bit(ctx, full, mode);
        }
        let found = DataVersion::of_bytes(bytes);
        if found != *data_version {
            return Err(IoError::Corrupt {
                identifier: ctx.identifier(),
                expected: data_version.to_hex(),
                found: found.to_hex(),
            });
        }
        let started = now_ns();
        self.store.blob_store().write_to(bytes, full, mode).map_err(|e| restoring(rel, e))?;
        if let Ok(stat) = FileStat::of(full) {
            self.store.stage_stat(rel, stat.entry(*data_version, started));
        }
        Ok(Restore::Restored)
    }

    /// Whether the workspace file at `full` holds the content `blob` (one
    /// `lstat`, which also serves the stat cache, so a no-op run stats
    /// every output once, not twice).
    fn workspace_copy_is(&self, full: &Path, rel: &str, blob: &Digest) -> bool {
        if let Some(dv) = self.store.verified(rel) {
            return dv.0 == *blob;
        }
        self.dir.lstat(rel).is_ok_and(|stat| {
            is_regular(&stat)
                && self
                    .store
                    .hash_file_with_stat(full, rel, stat)
                    .is_ok_and(|(dv, _)| dv.0 == *blob)
        })
    }

    fn ensure_file(
        &self,
        ctx: &OutputContext<'_>,
        full: &Path,
        rel: &str,
        blob: &Digest,
        mode: u32,
    ) -> Result<Restore, IoError> {
        if self.workspace_copy_is(full, rel, blob) {
            return ensure_exec_bit(ctx, full, mode);
        }
        let started = now_ns();
        self.store.blob_store().restore_to(blob, full, mode).map_err(|e| read_err(ctx, blob, e))?;
        if let Ok(stat) = FileStat::of(full) {
            self.store.stage_stat(rel, stat.entry(DataVersion(*blob), started));
        }
        Ok(Restore::Restored)
    }

    fn ensure_dir(
        &self,
        ctx: &OutputContext<'_>,
        full: &Path,
        rel: &str,
        manifest: &Manifest,
    ) -> Result<Restore, IoError> {
        let io = |action: &'static str, p: &Path, e: std::io::Error| {
            restoring(rel, StoreError::io(action, p, e))
        };
        let mut restored = false;
        if !full.is_dir() || full.is_symlink() {
            if std::fs::symlink_metadata(full).is_ok() {
                std::fs::remove_file(full).map_err(|e| io("replacing", full, e))?;
            }
            std::fs::create_dir_all(full).map_err(|e| io("creating", full, e))?;
            restored = true;
        }
        let mut wanted = std::collections::BTreeSet::new();
        for entry in &manifest.entries {
            wanted.insert(entry.path.clone());
            let path = full.join(&entry.path);
            let sub_rel = format!("{rel}/{}", entry.path);
            match &entry.kind {
                EntryKind::Dir => {
                    let meta = std::fs::symlink_metadata(&path);
                    if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                        if meta.is_ok() {
                            std::fs::remove_file(&path).map_err(|e| io("replacing", &path, e))?;
                        }
                        std::fs::create_dir_all(&path).map_err(|e| io("creating", &path, e))?;
                        restored = true;
                    }
                }
                EntryKind::File { blob, exec, .. } => {
                    let mode = if *exec { 0o755 } else { 0o644 };
                    if self.ensure_file(ctx, &path, &sub_rel, blob, mode)? == Restore::Restored {
                        restored = true;
                    }
                }
                EntryKind::Symlink { target } => {
                    let same = std::fs::read_link(&path)
                        .is_ok_and(|t| t.to_string_lossy() == target.as_str());
                    if !same {
                        if let Ok(m) = std::fs::symlink_metadata(&path) {
                            if m.is_dir() {
                                std::fs::remove_dir_all(&path)
                                    .map_err(|e| io("replacing", &path, e))?;
                            } else {
                                std::fs::remove_file(&path)
                                    .map_err(|e| io("replacing", &path, e))?;
                            }
                        }
                        make_symlink(target, &path).map_err(|e| io("restoring link", &path, e))?;
                        restored = true;
                    }
                }
            }
        }
        // Remove what the stored directory did not have, deepest first.
        let mut present = Vec::new();
        crate::walk(full, "", &mut present).map_err(|e| restoring(rel, e))?;
        present.reverse();
        for (sub, meta) in present {
            if wanted.contains(&sub) {
                continue;
            }
            let path = full.join(&sub);
            let res = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            res.map_err(|e| io("removing", &path, e))?;
            restored = true;
        }
        Ok(if restored { Restore::Restored } else { Restore::Present })
    }
}

/// A workspace file with the stored content: its executable bit as stored
/// too (`mode` 0: none recorded). Content is all its data version covers;
/// an exec bit taken away or left behind would still make a different build.
#[cfg(unix)]
fn ensure_exec_bit(ctx: &OutputContext<'_>, full: &Path, mode: u32) -> Result<Restore, IoError> {
    use std::os::unix::fs::PermissionsExt;
    if mode == 0 {
        return Ok(Restore::Present);
    }
    let Ok(meta) = std::fs::symlink_metadata(full) else { return Ok(Restore::Present) };
    if (meta.permissions().mode() & 0o111 != 0) == (mode & 0o111 != 0) {
        return Ok(Restore::Present);
    }
    std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode))
        .map_err(|e| other(ctx, StoreError::io("restoring the mode of", full, e)))?;
    Ok(Restore::Restored)
}

#[cfg(not(unix))]
fn ensure_exec_bit(_: &OutputContext<'_>, _: &Path, _: u32) -> Result<Restore, IoError> {
    Ok(Restore::Present)
}

fn record_err(ctx: &OutputContext<'_>, e: StoreError) -> IoError {
    match e {
        StoreError::CorruptRecord { detail, .. } => IoError::Corrupt {
            identifier: ctx.identifier(),
            expected: "a readable record".into(),
            found: detail,
        },
        e => IoError::Other {
            context: format!("looking up {}", ctx.identifier()),
            message: e.to_string(),
        },
    }
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "symlinks are not supported here"))
}

impl IoManager for FsIoManager<'_> {
    fn has_output(&self, ctx: &OutputContext<'_>) -> Result<Option<StoredOutput>, IoError> {
        match self.store.lookup_output(&ctx.version) {
            Ok(Some(rec)) => {
                let stored = StoredOutput { data_version: rec.data_version, size: rec.size };
                if let Ok(mut last) = self.last_found.lock() {
                    *last = Some((ctx.version, rec));
                }
                Ok(Some(stored))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(record_err(ctx, e)),
        }
    }

    fn handle_output(
        &self,
        ctx: &OutputContext<'_>,
        value: OutputValue,
    ) -> Result<StoredOutput, IoError> {
        if self.store.is_read_only() {
            return Err(other(ctx, StoreError::ReadOnly { dir: self.store.dir().to_path_buf() }));
        }
        let blobs = self.store.blob_store();
        let (data_version, size, location) = match value {
            OutputValue::Bytes(bytes) => {
                let dv = DataVersion::of_bytes(&bytes);
                let size = bytes.len() as u64;
                if bytes.len() <= INLINE_MAX {
                    (dv, size, Location::Inline(bytes))
                } else {
                    let (blob, _) = blobs.put_bytes(&bytes).map_err(|e| other(ctx, e))?;
                    self.store.stage_blob(blob, size, BlobKind::Data);
                    (dv, size, Location::Blob)
                }
            }
            OutputValue::File(rel) => {
                check_rel(&rel).map_err(|e| other(ctx, e))?;
                let full = self.root.join(&rel);
                // `lstat`: a link is not followed. Stored as its target's
                // bytes, it would come back as a regular file.
                let stat = match self.dir.lstat(&rel) {
                    Ok(stat) => stat,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(IoError::NotWritten { what: rel });
                    }
                    Err(e) => return Err(other(ctx, StoreError::io("reading", &full, e))),
                };
                if stat.mode & 0o170_000 == 0o120_000 {
                    return Err(IoError::Other {
                        context: format!("storing declared output {rel}"),
                        message: "it is a symbolic link: trove stores files and directories \
                                  (a link inside an output directory is kept as a link); write \
                                  the file itself, or declare the directory that holds the link"
                            .into(),
                    });
                }
                let mode = stat.mode & 0o7777;
                if stat.kind == crate::record::StatKind::Dir {
                    let manifest = self
                        .store
                        .dir_manifest(&full, &rel, Some(blobs))
                        .map_err(|e| other(ctx, e))?;
                    let bytes = manifest.encode();
                    let (blob, _) = blobs.put_bytes(&bytes).map_err(|e| other(ctx, e))?;
                    self.store.stage_blob(blob, bytes.len() as u64, BlobKind::Manifest);
                    (DataVersion(blob), manifest.size(), Location::Dir { path: rel.clone() })
                } else if !is_regular(&stat) {
                    return Err(other(ctx, crate::not_regular(&full)));
                } else if stat.size <= self.store.inline_file_max()
                    && let Some(bytes) =
                        self.store.read_small_file(&full, &rel, stat).map_err(|e| other(ctx, e))?
                {
                    // Small: kept in the record, committed with it; no blob
                    // file, no temp file, no directory to sync.
                    let dv = DataVersion::of_bytes(&bytes);
                    let size = bytes.len() as u64;
                    (dv, size, Location::InlineFile { mode, path: rel, bytes })
                } else {
                    let (blob, size) =
                        self.store.ingest_file(blobs, &full, &rel).map_err(|e| other(ctx, e))?;
                    (DataVersion(blob), size, Location::File { mode, path: rel.clone() })
                }
            }
        };
        let rec = OutputRecord {
            step: ctx.step.to_owned(),
            output: ctx.output.to_owned(),
            op_version: Digest([0; 32]),
            run_id: ctx.run_id.to_owned(),
            data_version,
            size,
            location,
            created_ms: now_ms(),
        };
        self.store.stage_output(ctx.step, ctx.version, rec).map_err(|e| other(ctx, e))?;
        Ok(StoredOutput { data_version, size })
    }

    fn load_input(
        &self,
        ctx: &OutputContext<'_>,
        stored: &StoredOutput,
    ) -> Result<OutputValue, IoError> {
        let rec = self.record(ctx, stored)?;
        match &rec.location {
            Location::Inline(bytes) => {
                let found = DataVersion::of_bytes(bytes);
                if found != rec.data_version {
                    return Err(IoError::Corrupt {
                        identifier: ctx.identifier(),
                        expected: rec.data_version.to_hex(),
                        found: found.to_hex(),
                    });
                }
                Ok(OutputValue::Bytes(bytes.clone()))
            }
            Location::Blob => {
                let blob = rec.data_version.0;
                let bytes = self
                    .store
                    .blob_store()
                    .read_verified(&blob)
                    .map_err(|e| read_err(ctx, &blob, e))?;
                self.store.stage_blob(blob, rec.size, BlobKind::Data);
                Ok(OutputValue::Bytes(bytes))
            }
            Location::File { .. } | Location::Dir { .. } | Location::InlineFile { .. } => {
                let rel = self.path_of(ctx, &rec)?;
                self.ensure_workspace(ctx, &rel, &rec)?;
                Ok(OutputValue::File(rel))
            }
        }
    }

    /// One stat (the stat cache spares a re-read of a file whose stat did
    /// not change; a directory is walked); a file gone counts as changed.
    fn source_unchanged(&self, path: &str, expected: DataVersion) -> Result<bool, IoError> {
        match self.store.hash_path_now(&self.root, path) {
            Ok(found) => Ok(found == expected),
            Err(StoreError::MissingPath { .. }) => Ok(false),
            Err(e) => {
                Err(IoError::Other { context: format!("checking {path}"), message: e.to_string() })
            }
        }
    }

    fn restore(&self, ctx: &OutputContext<'_>, stored: &StoredOutput) -> Result<Restore, IoError> {
        let rec = self.record(ctx, stored)?;
        match rec.location {
            Location::Inline(_) | Location::Blob => Ok(Restore::Present),
            Location::InlineFile { .. } => {
                let rel = self.path_of(ctx, &rec)?;
                let res = self.ensure_workspace(ctx, &rel, &rec)?;
                if res == Restore::Restored {
                    self.store.stage_latest_at(ctx.step, rec.op_version);
                }
                Ok(res)
            }
            Location::File { .. } | Location::Dir { .. } => {
                let rel = self.path_of(ctx, &rec)?;
                let res = self.ensure_workspace(ctx, &rel, &rec)?;
                if res == Restore::Restored {
                    let kind = match rec.location {
                        Location::Dir { .. } => BlobKind::Manifest,
                        _ => BlobKind::Data,
                    };
                    self.store.stage_blob(rec.data_version.0, rec.size, kind);
                    self.store.stage_latest_at(ctx.step, rec.op_version);
                }
                Ok(res)
            }
        }
    }
}
