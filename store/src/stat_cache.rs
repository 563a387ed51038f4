//! The stat cache: do not re-hash what has not changed.
//!
//! A file whose size, mtime (ns), ctime (ns), inode and device match the
//! entry recorded when it was last hashed keeps that entry's data version.
//! One exception, the "racy" case git handles: a file modified within the
//! timestamp granularity of the moment it was hashed could have been
//! changed again in the same tick without its stat changing, so such an
//! entry is not trusted and the file is hashed again. The granularity is
//! taken from the timestamp itself: whole-second mtimes (ext3, HFS+, some
//! network filesystems) get a 2 s window, others the kernel's coarse clock
//! tick, bounded by 50 ms. Nothing here enters a version: stat data only
//! decides whether to hash.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use trove_engine::DataVersion;

use crate::blob::hash_reader;
use crate::record::{StatEntry, StatKind};

/// The stat fields the cache compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) kind: StatKind,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
    pub(crate) mode: u32,
}

const COARSE_WINDOW_NS: i128 = 2_000_000_000;
const FINE_WINDOW_NS: i128 = 50_000_000;

fn system_ns(t: io::Result<SystemTime>) -> i128 {
    match t {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        },
        Err(_) => 0,
    }
}

/// Now, in ns since the epoch.
pub(crate) fn now_ns() -> i128 {
    system_ns(Ok(SystemTime::now()))
}

impl FileStat {
    pub(crate) fn from_metadata(meta: &Metadata) -> FileStat {
        let kind = if meta.is_dir() { StatKind::Dir } else { StatKind::File };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileStat {
                kind,
                size: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                ino: meta.ino(),
                dev: meta.dev(),
                mode: meta.mode(),
            }
        }
        #[cfg(not(unix))]
        {
            FileStat {
                kind,
                size: meta.len(),
                mtime_ns: system_ns(meta.modified()),
                ctime_ns: system_ns(meta.created()),
                ino: 0,
                dev: 0,
                mode: 0,
            }
        }
    }

    /// `stat` (following symlinks).
    pub(crate) fn of(path: &Path) -> io::Result<FileStat> {
        std::fs::metadata(path).map(|m| FileStat::from_metadata(&m))
    }

    /// The cache entry for this stat and the data version just computed.
    pub(crate) fn entry(
        &self,
        data_version: trove_engine::DataVersion,
        hashed_at_ns: i128,
    ) -> StatEntry {
        StatEntry {
            kind: self.kind,
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
            data_version,
            hashed_at_ns,
        }
    }
}

/// A workspace root opened once, so that each file is statted by its
/// workspace-relative path from it: the kernel then walks the two or three
/// components of that path instead of every component of an absolute one,
/// which halved the cost of a stat here (ninja stats relative to its
/// working directory too). Elsewhere than on Linux, or if the root cannot
/// be opened, it stats absolute paths.
#[derive(Debug)]
pub(crate) struct RootDir {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl RootDir {
    pub(crate) fn open(path: &Path) -> RootDir {
        let path = path.to_path_buf();
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(&path, flags, Mode::empty()).ok();
            RootDir { path, fd }
        }
        #[cfg(not(target_os = "linux"))]
        RootDir { path }
    }

    /// The root's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `stat` of the workspace-relative `rel` (following symlinks), the same
    /// fields as [`FileStat::of`] gives for the absolute path.
    pub(crate) fn stat(&self, rel: &str) -> io::Result<FileStat> {
        self.stat_at(rel, true)
    }

    /// `lstat` of `rel`: a symlink is described, not followed.
    pub(crate) fn lstat(&self, rel: &str) -> io::Result<FileStat> {
        self.stat_at(rel, false)
    }

    fn stat_at(&self, rel: &str, follow: bool) -> io::Result<FileStat> {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            use rustix::fs::{AtFlags, StatxFlags};
            let flags = if follow { AtFlags::empty() } else { AtFlags::SYMLINK_NOFOLLOW };
            match rustix::fs::statx(fd, rel, flags, StatxFlags::BASIC_STATS) {
                Ok(st) => {
                    let ns = |t: rustix::fs::StatxTimestamp| {
                        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
                    };
                    let mode = u32::from(st.stx_mode);
                    let is_dir = mode & 0o170_000 == 0o040_000;
                    return Ok(FileStat {
                        kind: if is_dir { StatKind::Dir } else { StatKind::File },
                        size: st.stx_size,
                        mtime_ns: ns(st.stx_mtime),
                        ctime_ns: ns(st.stx_ctime),
                        ino: st.stx_ino,
                        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
                        mode,
                    });
                }
                Err(rustix::io::Errno::NOSYS) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let full = self.path.join(rel);
        let meta = if follow { std::fs::metadata(full) } else { std::fs::symlink_metadata(full) };
        meta.map(|m| FileStat::from_metadata(&m))
    }
}

/// Whether a stat's mode is a regular file's.
pub(crate) fn is_regular(stat: &FileStat) -> bool {
    stat.mode & 0o170_000 == 0o100_000
}

/// A file hashed against the stat taken just before opening it.
pub(crate) struct Hashed {
    /// The data version of what was read.
    pub(crate) data_version: DataVersion,
    /// How many bytes were read.
    pub(crate) bytes: u64,
    /// The entry to record: `None` if the file changed while it was read
    /// (its stat after the read differs, or it was not `stat.size` long).
    pub(crate) entry: Option<StatEntry>,
}

/// Hashes an opened file whose stat was `stat`; the entry it returns is
/// stamped with the time the read began (the racy check's reference).
///
/// The stat after the read is the open file's (`fstat`): the same file the
/// path named when it was opened, so a rewrite during the read, or a file
/// put in its place between the stat and the open, means no entry.
pub(crate) fn hash_against(file: std::fs::File, stat: FileStat) -> io::Result<Hashed> {
    let started = now_ns();
    let (digest, bytes) = hash_reader(&file, stat.size)?;
    let data_version = DataVersion(digest);
    let held = bytes == stat.size
        && file.metadata().ok().map(|m| FileStat::from_metadata(&m)) == Some(stat);
    Ok(Hashed { data_version, bytes, entry: held.then(|| stat.entry(data_version, started)) })
}

/// Whether the entry was recorded so close to the file's modification that
/// a same-tick change could hide behind an unchanged stat.
pub fn is_racy(entry: &StatEntry) -> bool {
    let window = if entry.mtime_ns.rem_euclid(1_000_000_000) == 0 {
        COARSE_WINDOW_NS
    } else {
        FINE_WINDOW_NS
    };
    entry.mtime_ns + window > entry.hashed_at_ns
}

/// Whether `entry` was recorded for a file with exactly stat `stat`.
pub(crate) fn same_stat(entry: &StatEntry, stat: &FileStat) -> bool {
    entry.kind == stat.kind
        && entry.size == stat.size
        && entry.mtime_ns == stat.mtime_ns
        && entry.ctime_ns == stat.ctime_ns
        && entry.ino == stat.ino
        && entry.dev == stat.dev
}

/// Whether `entry` still describes the file with stat `stat`.
pub(crate) fn is_fresh(entry: &StatEntry, stat: &FileStat) -> bool {
    same_stat(entry, stat) && !is_racy(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::DataVersion;

    fn check(stat_mtime: i128, hashed_at: i128, expect_fresh: bool) {
        let stat = FileStat {
            kind: StatKind::File,
            size: 3,
            mtime_ns: stat_mtime,
            ctime_ns: stat_mtime,
            ino: 7,
            dev: 1,
            mode: 0o644,
        };
        let entry = stat.entry(DataVersion::of_bytes(b"abc"), hashed_at);
        assert_eq!(is_fresh(&entry, &stat), expect_fresh, "mtime {stat_mtime} hashed {hashed_at}");
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let s = 1_700_000_000_000_000_000i128;
        // Fine timestamps: hashed 1 ms after the write is racy, 1 s after is not.
        check(s + 123, s + 123 + 1_000_000, false);
        check(s + 123, s + 123 + 1_000_000_000, true);
        // Whole-second timestamps: within 2 s is racy.
        check(s, s + 1_500_000_000, false);
        check(s, s + 3_000_000_000, true);
    }

    #[test]
    fn a_stat_from_the_root_is_the_stat_of_the_absolute_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("d/e")).expect("dirs");
        std::fs::write(dir.path().join("d/f.txt"), b"abc").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink("f.txt", dir.path().join("d/link")).expect("symlink");
        let root = RootDir::open(dir.path());
        for rel in ["d", "d/e", "d/f.txt", "d/link"] {
            let full = dir.path().join(rel);
            if !full.exists() {
                continue;
            }
            assert_eq!(root.stat(rel).expect(rel), FileStat::of(&full).expect(rel), "{rel}");
        }
        let missing = root.stat("d/missing").expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn any_changed_field_is_stale() {
        let stat = FileStat {
            kind: StatKind::File,
            size: 3,
            mtime_ns: 5,
            ctime_ns: 5,
            ino: 7,
            dev: 1,
            mode: 0,
        };
        let entry = stat.entry(DataVersion::of_bytes(b"abc"), 10_000_000_000);
        assert!(is_fresh(&entry, &stat));
        for changed in [
            FileStat { size: 4, ..stat },
            FileStat { mtime_ns: 6, ..stat },
            FileStat { ctime_ns: 6, ..stat },
            FileStat { ino: 8, ..stat },
            FileStat { dev: 2, ..stat },
            FileStat { kind: StatKind::Dir, ..stat },
        ] {
            assert!(!is_fresh(&entry, &changed), "{changed:?}");
        }
    }
}
