//! A cache of derived data: bytes a caller computed from an input it names
//! by digest (the CLI keeps its parsed pipeline here, keyed by the digest of
//! the file's text). One entry per slot: a new input replaces the old entry.
//!
//! An entry is a file of its own, `cache/<slot digest>` in the store
//! directory, not a redb record: it is a pure function of its key, so it
//! needs none of the database's guarantees, and reading one large value out
//! of redb in a fresh process cost a millisecond per 340 KB (the parsed
//! 1,000-step benchmark pipeline), against a tenth of that for the file.
//!
//! Nothing here is trusted beyond its checksum: an entry whose digest is not
//! the one asked for, or that does not decode (a torn rewrite, a flipped
//! byte, another format), is a miss and the caller derives the data again.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "trvcache"
//! 8       4     format version, u32 LE (FORMAT)
//! 12      32    the digest of the input
//! 44      n     the derived bytes
//! 44+n    32    blake3 of everything before
//! ```

use std::path::{Path, PathBuf};

use trove_engine::Digest;

use crate::{Store, StoreError};

const MAGIC: &[u8; 8] = b"trvcache";
/// Bump when the layout changes (an old entry is then a miss).
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 32;
const SUM: usize = 32;

fn entry_path(dir: &Path, slot: &str) -> PathBuf {
    let digest = blake3::hash(slot.as_bytes()).to_hex();
    dir.join("cache").join(&digest[..16])
}

fn encode(key: &Digest, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + bytes.len() + SUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(bytes);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The derived bytes of an entry file, if it is whole and derived from `key`.
fn decode(mut file: Vec<u8>, key: &Digest) -> Option<Vec<u8>> {
    let body = file.len().checked_sub(SUM).filter(|&n| n >= HEADER)?;
    if blake3::hash(&file[..body]).as_bytes() != &file[body..]
        || &file[..8] != MAGIC
        || file[8..12] != FORMAT.to_le_bytes()
        || file[12..HEADER] != key.0
    {
        return None;
    }
    file.truncate(body);
    file.drain(..HEADER);
    Some(file)
}

impl Store {
    /// The bytes cached under `slot` if they were derived from `key`.
    pub fn cached(&self, slot: &str, key: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let path = entry_path(self.dir(), slot);
        match std::fs::read(&path) {
            Ok(file) => Ok(decode(file, key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading", &path, e)),
        }
    }

    /// Caches `bytes`, derived from `key`, under `slot` (replacing what was
    /// there), in place: a reader that catches it half written finds a bad
    /// checksum, a miss.
    pub fn put_cached(&self, slot: &str, key: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.is_read_only() {
            return Err(StoreError::ReadOnly { dir: self.dir().to_path_buf() });
        }
        let path = entry_path(self.dir(), slot);
        let parent = self.dir().join("cache");
        self.fs().create_dir_all(&parent).map_err(|e| StoreError::io("creating", &parent, e))?;
        self.fs()
            .rewrite(&path, &encode(key, bytes))
            .map_err(|e| StoreError::io("writing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_every_truncation_flip_or_other_key_is_a_miss() {
        let key = Digest([7; 32]);
        let file = encode(&key, b"derived bytes");
        assert_eq!(decode(file.clone(), &key).as_deref(), Some(&b"derived bytes"[..]));
        assert_eq!(decode(file.clone(), &Digest([8; 32])), None);
        for len in 0..file.len() {
            assert_eq!(decode(file[..len].to_vec(), &key), None, "cut at {len}");
        }
        for i in 0..file.len() {
            let mut flipped = file.clone();
            flipped[i] ^= 1;
            assert_eq!(decode(flipped, &key), None, "flip at {i}");
        }
        assert_eq!(decode(encode(&key, b""), &key).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_store_keeps_one_entry_per_slot_and_a_read_only_one_writes_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store_dir = dir.path().join(".trove");
        let store =
            Store::open(&store_dir, &crate::OpenOptions::default(), &mut |_| {}).expect("store");
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        assert_eq!(store.cached("s", &a).expect("read"), None);
        store.put_cached("s", &a, b"long first entry").expect("put");
        store.put_cached("s", &b, b"second").expect("put");
        assert_eq!(store.cached("s", &a).expect("read"), None);
        assert_eq!(store.cached("s", &b).expect("read").as_deref(), Some(&b"second"[..]));
        drop(store);
        let ro = crate::OpenOptions { read_only: true, ..Default::default() };
        let store = Store::open(&store_dir, &ro, &mut |_| {}).expect("read-only store");
        assert_eq!(store.cached("s", &b).expect("read").as_deref(), Some(&b"second"[..]));
        assert!(store.put_cached("s", &a, b"x").is_err());
    }
}
