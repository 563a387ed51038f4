//! One writer at a time: the store's own lock, and who holds it.
//!
//! redb's file lock fails at once when another process has the database open
//! (facts.md), so trove keeps a lock of its own: `lock` in the store
//! directory, held with [`std::fs::File::lock`] (an `flock` on Unix, released
//! by the kernel when the holder dies, even by `kill -9`). Beside it,
//! `lock.info` names the holder (pid, command, since when) so a waiter can
//! say who it waits for. The info file is written atomically (temp + rename)
//! and read leniently: a garbled one shows as an unknown holder.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Who holds the store's write lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id (0: unknown).
    pub pid: u32,
    /// The command the holder runs (for example `trove run`).
    pub command: String,
    /// When it took the lock, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            return f.write_str("another process");
        }
        write!(f, "pid {} (`{}`) since {}", self.pid, self.command, format_utc(self.since_ms))
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Formats epoch milliseconds as `2026-11-25 13:20:01 UTC`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The held write lock; released on drop.
#[derive(Debug)]
pub(crate) struct WriteLock {
    file: File,
    info: PathBuf,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info);
        let _ = self.file.unlock();
    }
}

fn read_holder(info: &Path) -> LockHolder {
    std::fs::read(info)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(LockHolder { pid: 0, command: String::new(), since_ms: 0 })
}

/// Takes the write lock of the store in `dir`, waiting (after telling
/// `on_wait` who holds it) unless `wait` is false.
pub(crate) fn acquire(
    dir: &Path,
    command: &str,
    wait: bool,
    on_wait: &mut dyn FnMut(&LockHolder),
    fs: &crate::Fs,
) -> Result<WriteLock, StoreError> {
    let path = dir.join("lock");
    let info = dir.join("lock.info");
    let file = fs.open_rw(&path).map_err(|e| StoreError::io("opening lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = read_holder(&info);
            if !wait {
                return Err(StoreError::Locked { dir: dir.to_path_buf(), holder });
            }
            on_wait(&holder);
            file.lock().map_err(|e| StoreError::io("locking", &path, e))?;
        }
        Err(TryLockError::Error(e)) => return Err(StoreError::io("locking", &path, e)),
    }
    let holder =
        LockHolder { pid: std::process::id(), command: command.to_owned(), since_ms: now_ms() };
    // Best effort: the lock works without the info file, waiters then see
    // "another process".
    let tmp = dir.join(format!("lock.info.{}", std::process::id()));
    if let Ok(text) = serde_json::to_vec(&holder)
        && let Ok(mut f) = File::create(&tmp)
        && f.write_all(&text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &info);
    }
    Ok(WriteLock { file, info })
}

/// Who holds the write lock right now, if anyone.
pub(crate) fn current_holder(dir: &Path) -> Option<LockHolder> {
    let file = File::open(dir.join("lock")).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => Some(read_holder(&dir.join("lock.info"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_612_801_000), "2026-11-25 13:20:01 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn holder_message_names_pid_command_and_time() {
        let h = LockHolder { pid: 4242, command: "trove run".into(), since_ms: 1_795_612_801_000 };
        assert_eq!(h.to_string(), "pid 4242 (`trove run`) since 2026-11-25 13:20:01 UTC");
    }
}
