//! A cache of derived data: bytes a caller computed from an input it names
//! by digest (the CLI keeps its parsed pipeline here, keyed by the digest of
//! the file's text). One entry per slot: a new input replaces the old entry,
//! so the table stays as small as the number of pipelines.
//!
//! Nothing here is trusted beyond its checksum: an entry whose digest is not
//! the one asked for, or that does not decode, is a miss and the caller
//! derives the data again.

use serde::{Deserialize, Serialize};
use trove_engine::Digest;

use crate::record::{RecordKind, decode, encode};
use crate::trace_db::{CACHE, get_in};
use crate::{Store, StoreError};

/// One cached entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    /// The digest of the input the bytes were derived from.
    pub(crate) key: Digest,
    /// The derived bytes.
    pub(crate) bytes: Vec<u8>,
}

impl Store {
    /// The bytes cached under `slot` if they were derived from `key`.
    pub fn cached(&self, slot: &str, key: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read_txn()?;
        let Some(raw) = get_in(self.db_path(), &txn, CACHE, slot.as_bytes())? else {
            return Ok(None);
        };
        Ok(decode::<CacheRecord>(RecordKind::Cache, &raw)
            .ok()
            .filter(|rec| rec.key == *key)
            .map(|rec| rec.bytes))
    }

    /// Caches `bytes`, derived from `key`, under `slot` (replacing what was
    /// there).
    pub fn put_cached(&self, slot: &str, key: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let value = encode(RecordKind::Cache, &CacheRecord { key: *key, bytes: bytes.to_vec() });
        self.put_one(CACHE, slot.as_bytes(), &value)
    }
}
