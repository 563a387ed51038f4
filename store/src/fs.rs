//! The filesystem seam: every write the store makes goes through [`Fs`].
//!
//! Why: crash and disk-full behaviour must be testable at *every* write, as
//! redb's crash-consistency tests do. Each write step (create a temp file,
//! write a chunk, fsync, rename, fsync a directory, remove, and redb's own
//! writes, resizes and syncs through `HookedBackend`) first asks the
//! optional [`FsHook`], which may fail it, and tells it afterwards what
//! succeeded. [`FailAt`] fails the n-th step with "no space left on
//! device", so a test can walk the failure point across an ingest and a
//! commit and check the store stays consistent; the power-loss test builds a
//! simulated disk on `after`/`renamed` (a file is durable once fsynced, a
//! rename once its directory is fsynced, the database is its image at the
//! last completed sync) and checks every committed trace survives intact.
//! Production code uses [`Fs::real`], whose hook is absent.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::ops::Bound;

use redb::{BackendError, StorageBackend};

/// One kind of write step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// Creating a file or directory.
    Create,
    /// Writing bytes.
    Write,
    /// `fsync` of a file.
    Sync,
    /// Renaming a file into place.
    Rename,
    /// `fsync` of a directory.
    SyncDir,
    /// Removing a file.
    Remove,
    /// redb writing a page.
    DbWrite,
    /// redb resizing its file.
    DbSetLen,
    /// redb syncing its file.
    DbSync,
}

/// Decides whether a write step fails, and watches the ones that worked.
/// Tests implement it: a fault injector fails steps, a simulated disk
/// records what a completed sync made durable.
pub trait FsHook: Send + Sync {
    /// Called before each write step; an error fails the step.
    fn before(&self, op: FsOp, path: &Path) -> io::Result<()>;

    /// Called after a write step succeeded.
    fn after(&self, op: FsOp, path: &Path) {
        let _ = (op, path);
    }

    /// Called after a successful rename of `from` to `to`.
    fn renamed(&self, from: &Path, to: &Path) {
        let _ = (from, to);
    }
}

/// Fails the n-th write step (counting from 1) and every later one, with
/// `StorageFull`, like a disk that filled up.
#[derive(Debug, Default)]
pub struct FailAt {
    fail_at: AtomicU64,
    seen: AtomicU64,
}

impl FailAt {
    /// A hook that fails step `n` and later (0: never fails).
    pub fn new(n: u64) -> FailAt {
        FailAt { fail_at: AtomicU64::new(n), seen: AtomicU64::new(0) }
    }

    /// How many write steps were attempted.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Re-arms the hook: fail step `n` from now on (0: never).
    pub fn reset(&self, n: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }
}

impl FsHook for FailAt {
    fn before(&self, _op: FsOp, _path: &Path) -> io::Result<()> {
        let seen = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        let n = self.fail_at.load(Ordering::SeqCst);
        if n != 0 && seen >= n {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        Ok(())
    }
}

/// The store's door to the filesystem for writes.
#[derive(Clone, Default)]
pub struct Fs {
    hook: Option<Arc<dyn FsHook>>,
}

impl fmt::Debug for Fs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fs").field("hooked", &self.hook.is_some()).finish()
    }
}

impl Fs {
    /// The real filesystem, no faults.
    pub fn real() -> Fs {
        Fs { hook: None }
    }

    /// The real filesystem with a fault hook.
    pub fn with_hook(hook: Arc<dyn FsHook>) -> Fs {
        Fs { hook: Some(hook) }
    }

    pub(crate) fn check(&self, op: FsOp, path: &Path) -> io::Result<()> {
        match &self.hook {
            Some(h) => h.before(op, path),
            None => Ok(()),
        }
    }

    /// Runs one write step between the hook's `before` and `after`.
    fn step<T>(&self, op: FsOp, path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.check(op, path)?;
        let res = f()?;
        if let Some(h) = &self.hook {
            h.after(op, path);
        }
        Ok(res)
    }

    pub(crate) fn create_new(&self, path: &Path) -> io::Result<File> {
        self.step(FsOp::Create, path, || File::options().write(true).create_new(true).open(path))
    }

    /// Opens (creating) a file for reading and writing, keeping its bytes.
    pub(crate) fn open_rw(&self, path: &Path) -> io::Result<File> {
        self.step(FsOp::Create, path, || {
            File::options().read(true).write(true).create(true).truncate(false).open(path)
        })
    }

    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        self.step(FsOp::Create, path, || std::fs::create_dir_all(path))
    }

    pub(crate) fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
        self.step(FsOp::Write, path, || file.write_all(buf))
    }

    pub(crate) fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        self.step(FsOp::Sync, path, || file.sync_all())
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(FsOp::Rename, to, || std::fs::rename(from, to))?;
        if let Some(h) = &self.hook {
            h.renamed(from, to);
        }
        Ok(())
    }

    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(FsOp::SyncDir, dir, || File::open(dir)?.sync_all())
    }

    /// Writes `bytes` over the file at `path` (made if missing), in place:
    /// no new inode and no rename, and only a shorter file's tail is freed.
    /// Not atomic: for files whose reader rejects a torn one (a checksum).
    pub(crate) fn rewrite(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.step(FsOp::Create, path, || {
            File::options().write(true).create(true).truncate(false).open(path)
        })?;
        self.write_all(&mut file, path, bytes)?;
        self.step(FsOp::Write, path, || file.set_len(bytes.len() as u64))
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step(FsOp::Remove, path, || std::fs::remove_file(path))
    }

    /// Copies `from` into the new file `to_file` (created by the caller),
    /// streaming, and returns the number of bytes. With no hook the kernel
    /// copies (`copy_file_range`); with one, 1 MiB chunks pass the hook.
    pub(crate) fn copy_into(
        &self,
        from: &mut File,
        to_file: &mut File,
        to: &Path,
    ) -> io::Result<u64> {
        if self.hook.is_none() {
            return io::copy(from, to_file);
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = match from.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write_all(to_file, to, &buf[..k])?;
            n += k as u64;
        }
    }
}

/// A redb storage backend whose writes pass the [`Fs`] hook.
#[derive(Debug)]
pub(crate) struct HookedBackend {
    /// Shared with the store, which releases the file's locks itself when
    /// it lets go of the database without closing it
    /// ([`crate::Store::close_at_exit`]).
    inner: Arc<redb::backends::FileBackend>,
    fs: Fs,
    path: std::path::PathBuf,
}

impl HookedBackend {
    pub(crate) fn new(
        file: File,
        fs: Fs,
        path: &Path,
    ) -> Result<HookedBackend, redb::DatabaseError> {
        Ok(HookedBackend {
            inner: Arc::new(redb::backends::FileBackend::new(file)?),
            fs,
            path: path.to_path_buf(),
        })
    }

    /// The file backend, for releasing its locks after the database is let
    /// go of.
    pub(crate) fn file(&self) -> Arc<redb::backends::FileBackend> {
        Arc::clone(&self.inner)
    }
}

impl StorageBackend for HookedBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.fs.step(FsOp::DbSetLen, &self.path, || self.inner.set_len(len))
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.fs.step(FsOp::DbSync, &self.path, || self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.fs.step(FsOp::DbWrite, &self.path, || self.inner.write(offset, data))
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
