//! Reading a database file that this process may not write.
//!
//! A `trove run` lets go of the database at exit without closing it
//! ([`Store::close_at_exit`](crate::Store::close_at_exit)): the file is left
//! marked as open, and redb's read-only open refuses such a file until a
//! writer has opened it again. Where trove can write, a reader settles the
//! file first (a writable open and a clean close). Where it cannot — a store
//! on read-only media, or one owned by another user — the reader opens the
//! database writable over a [`ScratchBackend`]: reads come from the file,
//! writes (the recovery an open makes: with quick repair, loading the
//! allocator state the last commit recorded, and marking the header) go to
//! memory and are gone when the process ends. The file is never written.
//!
//! Locks keep their meaning: every lock redb asks for is taken *shared* on
//! the file (an exclusive lock cannot be taken through a read-only
//! descriptor), so a real writer is refused while the scratch database is
//! open, exactly as it is while a read-only handle is.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// The granularity of the overlay.
const BLOCK: u64 = 4096;

/// A storage backend over a file it only reads, with every write kept in
/// memory (see the module docs).
#[derive(Debug)]
pub(crate) struct ScratchBackend {
    file: FileBackend,
    overlay: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// The length redb sees.
    len: u64,
    /// Bytes of the file below this offset are the file's; above, zeros
    /// (the file's length, lowered by any truncation).
    file_valid: u64,
    /// Blocks written, by index.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl ScratchBackend {
    /// Over `file`, opened for reading.
    pub(crate) fn new(file: File) -> io::Result<ScratchBackend> {
        let len = file.metadata()?.len();
        Ok(ScratchBackend {
            file: FileBackend::new(file).map_err(io::Error::other)?,
            overlay: Mutex::new(Overlay { len, file_valid: len, blocks: HashMap::new() }),
        })
    }

    fn overlay(&self) -> io::Result<std::sync::MutexGuard<'_, Overlay>> {
        self.overlay.lock().map_err(|_| io::Error::other("scratch overlay lock poisoned"))
    }

    /// Reads `out.len()` bytes at `offset` of the file as redb sees it
    /// without the overlay: the file's bytes below `file_valid`, zeros above.
    fn read_base(&self, file_valid: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let from_file = file_valid.saturating_sub(offset).min(out.len() as u64) as usize;
        if from_file > 0 {
            self.file.read(offset, &mut out[..from_file])?;
        }
        out[from_file..].fill(0);
        Ok(())
    }
}

impl StorageBackend for ScratchBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.overlay()?.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let ov = self.overlay()?;
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&end| end <= ov.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min((end - at) as usize);
            let dst = &mut out[(at - offset) as usize..][..n];
            match ov.blocks.get(&block) {
                Some(bytes) => dst.copy_from_slice(&bytes[within..within + n]),
                None => self.read_base(ov.file_valid, at, dst)?,
            }
            at += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut ov = self.overlay()?;
        if len < ov.len {
            // What lies beyond reads as zeros should the file grow again.
            ov.file_valid = ov.file_valid.min(len);
            ov.blocks.retain(|&block, _| block * BLOCK < len);
            let tail = len % BLOCK;
            if tail != 0
                && let Some(bytes) = ov.blocks.get_mut(&(len / BLOCK))
            {
                bytes[tail as usize..].fill(0);
            }
        }
        ov.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut ov = self.overlay()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min((end - at) as usize);
            if !ov.blocks.contains_key(&block) {
                let mut bytes = vec![0u8; BLOCK as usize].into_boxed_slice();
                self.read_base(ov.file_valid, block * BLOCK, &mut bytes)?;
                ov.blocks.insert(block, bytes);
            }
            if let Some(bytes) = ov.blocks.get_mut(&block) {
                bytes[within..within + n].copy_from_slice(&data[(at - offset) as usize..][..n]);
            }
            at += n as u64;
        }
        ov.len = ov.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(bytes: &[u8]) -> (tempfile::TempDir, ScratchBackend) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).expect("write");
        let file = File::open(&path).expect("open");
        (dir, ScratchBackend::new(file).expect("backend"))
    }

    fn read(b: &ScratchBackend, offset: u64, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        b.read(offset, &mut out).expect("read");
        out
    }

    proptest::proptest! {
        /// Against a plain byte vector: any sequence of writes, resizes and
        /// reads sees what a writable file would, and the file is untouched.
        #[test]
        fn the_overlay_reads_like_a_writable_file_and_never_writes_it(
            initial in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10_000),
            ops in proptest::collection::vec(
                (0u8..3, 0u64..14_000, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5_000)),
                1..20,
            ),
        ) {
            let (dir, b) = backend(&initial);
            let mut model = initial.clone();
            for (kind, at, data) in ops {
                match kind {
                    0 => {
                        b.write(at, &data).expect("write");
                        let end = at as usize + data.len();
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[at as usize..end].copy_from_slice(&data);
                    }
                    1 => {
                        b.set_len(at).expect("set_len");
                        model.resize(at as usize, 0);
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(b.len().expect("len"), model.len() as u64);
                let from = (at as usize).min(model.len());
                let n = data.len().min(model.len() - from);
                proptest::prop_assert_eq!(read(&b, from as u64, n), model[from..from + n].to_vec());
            }
            proptest::prop_assert_eq!(read(&b, 0, model.len()), model.clone());
            let mut past = [0u8; 1];
            proptest::prop_assert!(b.read(model.len() as u64, &mut past).is_err());
            proptest::prop_assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), initial);
        }
    }
}
