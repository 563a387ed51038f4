//! The content-addressed blob store: bytes named by their blake3.
//!
//! Layout: `blobs/ab/cd/abcd…` (two-level fan-out keeps directories small),
//! `tmp/` for blobs being written, `quarantine/` for blobs that failed
//! verification. A blob is written to a temp name, fsynced, renamed into
//! place and its directory fsynced, so a blob that exists under its name is
//! complete and durable (invariant 3); a crash leaves at most a stray temp
//! file, which the next writer removes. Identical content is stored once.
//! Large files are streamed (the kernel copies, then the copy is hashed from
//! the page cache), never read whole into memory.
//!
//! Directories are stored as a [`Manifest`]: the sorted list of their
//! entries with each file's blob, encoded canonically; the directory's data
//! version is the blake3 of that encoding (a Merkle listing).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use trove_engine::Digest;

use crate::error::StoreError;
use crate::fs::Fs;
use crate::lock::now_ms;

const CHUNK: usize = 1 << 20;
const MANIFEST_MAGIC: &[u8] = b"trove-manifest\x001\n";

/// One entry of a directory manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// The kind of a manifest entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file stored as a blob.
    File {
        /// Size in bytes.
        size: u64,
        /// Whether it is executable.
        exec: bool,
        /// Its blob (= data version).
        blob: Digest,
    },
    /// A (possibly empty) directory.
    Dir,
    /// A symbolic link, kept as a link.
    Symlink {
        /// Its target text.
        target: String,
    },
}

/// A directory listing: entries sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The entries, sorted by path.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The canonical encoding (what the data version hashes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MANIFEST_MAGIC.to_vec();
        if let Ok(body) = postcard::to_allocvec(self) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// Decodes a manifest (the bytes were already verified by hash).
    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        let body = bytes.strip_prefix(MANIFEST_MAGIC)?;
        postcard::from_bytes(body).ok()
    }

    /// Sum of file sizes.
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// The blobs of its files.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.entries.iter().filter_map(|e| match e.kind {
            EntryKind::File { blob, .. } => Some(blob),
            _ => None,
        })
    }
}

/// What went wrong reading a blob.
#[derive(Debug)]
pub(crate) enum BlobReadError {
    /// No blob of that name.
    Missing,
    /// Its bytes hash to something else; it was quarantined (to this path,
    /// if the move worked).
    Corrupt { found: Digest, quarantined: Option<PathBuf> },
    /// Any other IO failure.
    Io(StoreError),
}

impl From<StoreError> for BlobReadError {
    fn from(e: StoreError) -> Self {
        BlobReadError::Io(e)
    }
}

/// Streams `reader` through blake3; returns the digest and length.
/// `size_hint` (the file's size when known, else `u64::MAX`) bounds the read
/// buffer: a small file is hashed without zeroing a whole [`CHUNK`].
pub(crate) fn hash_reader(reader: impl Read, size_hint: u64) -> io::Result<(Digest, u64)> {
    thread_local! {
        /// One read buffer per thread, grown to what the files it hashes
        /// need: zeroing (and faulting in) a fresh 1 MiB buffer cost more
        /// than hashing the small file it was for.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // One byte more than the file, so the read that finds its end needs no
    // second pass through a full buffer.
    let wanted = usize::try_from(size_hint.saturating_add(1).min(CHUNK as u64))
        .unwrap_or(CHUNK)
        .next_multiple_of(4096)
        .clamp(8192, CHUNK);
    BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < wanted {
                buf.resize(wanted, 0);
            }
            hash_with(reader, &mut buf)
        }
        Err(_) => hash_with(reader, &mut vec![0u8; wanted]),
    })
}

fn hash_with(mut reader: impl Read, buf: &mut [u8]) -> io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    loop {
        match reader.read(buf) {
            Ok(0) => break,
            Ok(k) => {
                hasher.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((Digest(*hasher.finalize().as_bytes()), n))
}

/// The blob store of one store directory.
#[derive(Debug)]
pub(crate) struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    fs: Fs,
    counter: AtomicU64,
}

impl BlobStore {
    /// The filesystem seam its writes go through.
    pub(crate) fn fs(&self) -> &Fs {
        &self.fs
    }

    pub(crate) fn new(dir: &Path, fs: Fs) -> BlobStore {
        BlobStore {
            root: dir.join("blobs"),
            tmp: dir.join("tmp"),
            quarantine: dir.join("quarantine"),
            fs,
            counter: AtomicU64::new(0),
        }
    }

    /// Creates the directories and removes temp files a crash left behind
    /// (only a writer holding the lock may call it).
    pub(crate) fn prepare(&self) -> Result<(), StoreError> {
        for d in [&self.root, &self.tmp, &self.quarantine] {
            self.fs.create_dir_all(d).map_err(|e| StoreError::io("creating", d, e))?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    pub(crate) fn path(&self, blob: &Digest) -> PathBuf {
        let hex = blob.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}", std::process::id()))
    }

    /// Moves a fresh, fsynced temp file into place under `blob`, unless an
    /// intact copy is already there; fsyncs the directories it changed.
    fn install(&self, tmp: &Path, blob: &Digest, size: u64) -> Result<bool, StoreError> {
        let dest = self.path(blob);
        if let Ok(meta) = std::fs::metadata(&dest)
            && meta.len() == size
        {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
        let leaf = dest.parent().unwrap_or(&self.root).to_path_buf();
        let mut created = Vec::new();
        if !leaf.is_dir() {
            let mid = leaf.parent().unwrap_or(&self.root).to_path_buf();
            if !mid.is_dir() {
                created.push(self.root.clone());
            }
            created.push(mid);
            self.fs.create_dir_all(&leaf).map_err(|e| StoreError::io("creating", &leaf, e))?;
        }
        self.fs.rename(tmp, &dest).map_err(|e| StoreError::io("renaming blob into", &dest, e))?;
        self.fs.sync_dir(&leaf).map_err(|e| StoreError::io("syncing", &leaf, e))?;
        for d in created {
            self.fs.sync_dir(&d).map_err(|e| StoreError::io("syncing", &d, e))?;
        }
        Ok(true)
    }

    /// Stores bytes; returns their blob name and whether it was new.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, bool), StoreError> {
        let blob = Digest::of_bytes(bytes);
        let dest = self.path(&blob);
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok((blob, false));
        }
        let tmp = self.temp_path();
        let res = (|| {
            let mut f =
                self.fs.create_new(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
            for chunk in bytes.chunks(CHUNK) {
                self.fs
                    .write_all(&mut f, &tmp, chunk)
                    .map_err(|e| StoreError::io("writing", &tmp, e))?;
            }
            self.fs.sync(&f, &tmp).map_err(|e| StoreError::io("syncing", &tmp, e))?;
            self.install(&tmp, &blob, bytes.len() as u64)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map(|new| (blob, new))
    }

    /// Stores a file by streaming it; returns (blob, size, new).
    pub(crate) fn put_file(&self, src: &Path) -> Result<(Digest, u64, bool), StoreError> {
        let tmp = self.temp_path();
        let res = (|| {
            let mut from = File::open(src).map_err(|e| StoreError::io("reading", src, e))?;
            let mut to =
                self.fs.create_new(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
            let size = self
                .fs
                .copy_into(&mut from, &mut to, &tmp)
                .map_err(|e| StoreError::io("copying into the store", src, e))?;
            let (blob, hashed) = hash_reader(
                File::open(&tmp).map_err(|e| StoreError::io("reading", &tmp, e))?,
                size,
            )
            .map_err(|e| StoreError::io("hashing", &tmp, e))?;
            if hashed != size {
                return Err(StoreError::Internal(format!(
                    "copied {size} bytes of {} but read back {hashed}",
                    src.display()
                )));
            }
            self.fs.sync(&to, &tmp).map_err(|e| StoreError::io("syncing", &tmp, e))?;
            drop(to);
            let new = self.install(&tmp, &blob, size)?;
            Ok((blob, size, new))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Reads a whole blob (values and manifests only), verified.
    pub(crate) fn read_verified(&self, blob: &Digest) -> Result<Vec<u8>, BlobReadError> {
        let path = self.path(blob);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobReadError::Missing),
            Err(e) => return Err(BlobReadError::Io(StoreError::io("reading", &path, e))),
        };
        let found = Digest::of_bytes(&bytes);
        if found != *blob {
            let quarantined = self.quarantine(blob).ok();
            return Err(BlobReadError::Corrupt { found, quarantined });
        }
        Ok(bytes)
    }

    /// Copies a blob to `dest` (a workspace path), verifying it on the way:
    /// the bytes go to a temp file beside `dest`, which replaces `dest` only
    /// if it hashes to `blob`. A mismatch quarantines the blob.
    pub(crate) fn restore_to(
        &self,
        blob: &Digest,
        dest: &Path,
        mode: u32,
    ) -> Result<(), BlobReadError> {
        let src = self.path(blob);
        let mut from = match File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobReadError::Missing),
            Err(e) => return Err(BlobReadError::Io(StoreError::io("reading", &src, e))),
        };
        self.place_at(dest, mode, |tmp| {
            let io = |action, path: &Path, e| BlobReadError::Io(StoreError::io(action, path, e));
            let mut to = self.fs.create_new(tmp).map_err(|e| io("creating", tmp, e))?;
            let copied =
                self.fs.copy_into(&mut from, &mut to, tmp).map_err(|e| io("restoring", dest, e))?;
            drop(to);
            let (found, _) =
                hash_reader(File::open(tmp).map_err(|e| io("reading", tmp, e))?, copied)
                    .map_err(|e| io("hashing", tmp, e))?;
            if found != *blob {
                let quarantined = self.quarantine(blob).ok();
                return Err(BlobReadError::Corrupt { found, quarantined });
            }
            Ok(())
        })
    }

    /// Writes `bytes` to the workspace file `dest` the way [`Self::restore_to`]
    /// restores a blob: a temp file beside it, renamed over it.
    pub(crate) fn write_to(&self, bytes: &[u8], dest: &Path, mode: u32) -> Result<(), StoreError> {
        self.place_at(dest, mode, |tmp| {
            let mut to = self.fs.create_new(tmp).map_err(|e| StoreError::io("creating", tmp, e))?;
            self.fs.write_all(&mut to, tmp, bytes).map_err(|e| StoreError::io("writing", tmp, e))
        })
    }

    /// Puts a workspace file at `dest` with `mode`: `fill` writes (and may
    /// check) it under a temp name beside `dest`, which is then renamed over
    /// `dest` (a directory there is removed first), so `dest` is never seen
    /// half written. On failure the temp file is removed.
    fn place_at<E: From<StoreError>>(
        &self,
        dest: &Path,
        mode: u32,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(), E> {
        let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        if !parent.as_os_str().is_empty() {
            self.fs.create_dir_all(&parent).map_err(|e| StoreError::io("creating", &parent, e))?;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = dest.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".{name}.trove-{}-{n}", std::process::id()));
        let res = (|| {
            fill(&tmp)?;
            set_mode(&tmp, mode);
            if dest.is_dir() && !dest.is_symlink() {
                std::fs::remove_dir_all(dest).map_err(|e| StoreError::io("replacing", dest, e))?;
            }
            self.fs.rename(&tmp, dest).map_err(|e| StoreError::io("restoring", dest, e))?;
            Ok(())
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Moves a bad blob out of the way, keeping it for inspection.
    pub(crate) fn quarantine(&self, blob: &Digest) -> Result<PathBuf, StoreError> {
        let src = self.path(blob);
        let _ = self.fs.create_dir_all(&self.quarantine);
        let dest = self.quarantine.join(format!("{}.{}", blob.to_hex(), now_ms()));
        self.fs.rename(&src, &dest).map_err(|e| StoreError::io("quarantining", &src, e))?;
        Ok(dest)
    }

    /// Removes a blob (garbage collection).
    pub(crate) fn remove(&self, blob: &Digest) -> Result<(), StoreError> {
        let path = self.path(blob);
        match self.fs.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("removing", &path, e)),
        }
    }

    /// Every blob file: (name, size); files whose name is not a digest are
    /// reported as `None`.
    pub(crate) fn list(&self) -> Vec<(Option<Digest>, PathBuf, u64)> {
        let mut out = Vec::new();
        let Ok(level1) = std::fs::read_dir(&self.root) else { return out };
        for a in level1.flatten() {
            let Ok(level2) = std::fs::read_dir(a.path()) else { continue };
            for b in level2.flatten() {
                let Ok(files) = std::fs::read_dir(b.path()) else { continue };
                for f in files.flatten() {
                    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    let name = f.file_name().to_string_lossy().into_owned();
                    out.push((Digest::from_hex(&name), f.path(), size));
                }
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if mode != 0 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777));
    }
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_encoding_is_pinned() {
        let m = Manifest {
            entries: vec![
                ManifestEntry {
                    path: "a.txt".into(),
                    kind: EntryKind::File { size: 1, exec: false, blob: Digest::of_bytes(b"a") },
                },
                ManifestEntry { path: "sub".into(), kind: EntryKind::Dir },
            ],
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Some(m));
        assert_eq!(
            Digest::of_bytes(&bytes).to_hex(),
            "1765fdc950089f773cfa723f603a14f73b93abb08442f3ee6533784bd73d9754",
        );
    }
}
