//! The memoizing IO manager: where outputs live between steps and runs.
//!
//! Dagster's memoizable IO manager, in Rust. The engine asks
//! [`IoManager::has_output`] whether an output is already stored at a
//! version (a lookup, never a re-hash), hands every produced output to
//! [`IoManager::handle_output`], loads inputs with [`IoManager::load_input`]
//! and, on a hit, lets the manager [`IoManager::restore`] a workspace copy.
//! The output identifier includes the version, so outputs of different
//! versions never overwrite each other.
//!
//! Values: an output is either bytes (serde values are encoded as JSON with
//! `serde_json`, see [`OutputValue::from_serde`]) or a file or directory the
//! op wrote at its declared workspace path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use serde::Serialize;

use crate::version::{DataVersion, OutputVersion};

/// An output's value as it passes between the op and the IO manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputValue {
    /// In-memory bytes.
    Bytes(Vec<u8>),
    /// A file or directory at this workspace-relative path.
    File(String),
}

impl OutputValue {
    /// Encodes a serde value with the JSON codec.
    pub fn from_serde<T: Serialize>(value: &T) -> Result<OutputValue, serde_json::Error> {
        serde_json::to_vec(value).map(OutputValue::Bytes)
    }
}

/// What the IO manager knows about a stored output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredOutput {
    /// blake3 of the stored bytes (for a directory, of its manifest).
    pub data_version: DataVersion,
    /// Size in bytes (for a directory, the sum of its files).
    pub size: u64,
}

/// Identifies one output at one version.
#[derive(Clone, Copy, Debug)]
pub struct OutputContext<'a> {
    /// The step that produces it.
    pub step: &'a str,
    /// The output name.
    pub output: &'a str,
    /// Its version.
    pub version: OutputVersion,
    /// The workspace-relative path of a file output.
    pub path: Option<&'a str>,
    /// The run asking.
    pub run_id: &'a str,
}

impl OutputContext<'_> {
    /// `step/output/version-hex`: unique per version.
    pub fn identifier(&self) -> String {
        format!("{}/{}/{}", self.step, self.output, self.version.to_hex())
    }
}

/// What a restore did to the workspace copy of a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The workspace copy was already right (or there is none to keep).
    Present,
    /// The workspace copy was missing or differed and was restored.
    Restored,
}

/// Errors of an IO manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The stored output is missing.
    #[error("output {identifier} is not stored")]
    Missing {
        /// The output identifier.
        identifier: String,
    },
    /// Stored bytes do not match their data version; never served.
    #[error("output {identifier} is corrupt: expected data version {expected}, found {found}")]
    Corrupt {
        /// The output identifier.
        identifier: String,
        /// The data version on record.
        expected: String,
        /// The data version of the bytes found.
        found: String,
    },
    /// The op did not produce an output it declared.
    #[error("declared output {what} was not written")]
    NotWritten {
        /// The path or output name.
        what: String,
    },
    /// Any other failure, with its cause.
    #[error("{context}: {message}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        message: String,
    },
}

impl IoError {
    /// Whether the error means "treat as a miss and run again".
    pub fn is_miss(&self) -> bool {
        matches!(self, IoError::Missing { .. } | IoError::Corrupt { .. })
    }
}

/// Stores and loads outputs by version. Implementations must be usable from
/// several worker threads at once.
pub trait IoManager: Send + Sync {
    /// The stored output at `ctx.version`, if any. A lookup: it must not
    /// re-hash content.
    fn has_output(&self, ctx: &OutputContext<'_>) -> Result<Option<StoredOutput>, IoError>;

    /// Stores a produced output durably and returns its data version. Must
    /// return only once the bytes are durable (the trace commits after).
    fn handle_output(
        &self,
        ctx: &OutputContext<'_>,
        value: OutputValue,
    ) -> Result<StoredOutput, IoError>;

    /// Loads an upstream output for a downstream step, verified against its
    /// data version ([`IoError::Corrupt`] otherwise).
    fn load_input(
        &self,
        ctx: &OutputContext<'_>,
        stored: &StoredOutput,
    ) -> Result<OutputValue, IoError>;

    /// On a hit: makes sure the workspace holds the stored output (for file
    /// outputs), restoring it if it is missing or differs. An error that
    /// [`IoError::is_miss`] makes the step run again.
    fn restore(&self, ctx: &OutputContext<'_>, stored: &StoredOutput) -> Result<Restore, IoError> {
        let _ = (ctx, stored);
        Ok(Restore::Present)
    }
}

/// One stored output: its name, what is on record about it, and its bytes.
#[derive(Debug)]
struct MemoryEntry {
    output: Box<str>,
    stored: StoredOutput,
    bytes: Vec<u8>,
}

/// Outputs by step, then version, then output name. A version can be shared
/// by outputs of different steps (two ops with the same code version string,
/// config and inputs), so the step is part of the identifier, like
/// [`OutputContext::identifier`].
type MemoryOutputs = HashMap<String, ByVersion>;

/// Outputs of one step by version. Versions are blake3 digests, already
/// uniformly distributed: their first bytes are the hash.
type ByVersion = HashMap<OutputVersion, Vec<MemoryEntry>, BuildHasherDefault<DigestHasher>>;

/// A hasher for keys that are digests: folds the bytes it is given.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
        }
    }
}

/// An in-memory IO manager for tests and embedding: bytes only. Outputs are
/// identified by step, output name and version, so two steps never serve
/// each other's bytes.
#[derive(Debug, Default)]
pub struct MemoryIoManager {
    outputs: Mutex<MemoryOutputs>,
}

fn find<'m>(
    outputs: &'m MemoryOutputs,
    step: &str,
    output: &str,
    version: &OutputVersion,
) -> Option<&'m MemoryEntry> {
    outputs.get(step)?.get(version)?.iter().find(|e| &*e.output == output)
}

impl MemoryIoManager {
    /// An empty manager.
    pub fn new() -> MemoryIoManager {
        MemoryIoManager::default()
    }

    /// The number of stored outputs.
    pub fn len(&self) -> usize {
        self.outputs
            .lock()
            .map(|m| m.values().flat_map(|v| v.values()).map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes stored at a version (by any step).
    pub fn get(&self, version: &OutputVersion) -> Option<Vec<u8>> {
        let outputs = self.outputs.lock().ok()?;
        let mut steps: Vec<&String> = outputs.keys().collect();
        steps.sort();
        steps.into_iter().find_map(|step| {
            outputs[step].get(version).and_then(|e| e.first()).map(|e| e.bytes.clone())
        })
    }

    /// The bytes of one step's output stored at a version.
    pub fn get_output(&self, step: &str, output: &str, version: &OutputVersion) -> Option<Vec<u8>> {
        let outputs = self.outputs.lock().ok()?;
        find(&outputs, step, output, version).map(|e| e.bytes.clone())
    }

    /// Replaces stored bytes but keeps the record of their data version
    /// (tests use it to simulate corruption).
    pub fn overwrite(&self, version: OutputVersion, bytes: Vec<u8>) {
        if let Ok(mut m) = self.outputs.lock() {
            for versions in m.values_mut() {
                for entry in versions.get_mut(&version).into_iter().flatten() {
                    entry.bytes.clone_from(&bytes);
                }
            }
        }
    }

    /// Forgets a stored output.
    pub fn remove(&self, version: &OutputVersion) {
        if let Ok(mut m) = self.outputs.lock() {
            for versions in m.values_mut() {
                versions.remove(version);
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryOutputs>, IoError> {
        self.outputs.lock().map_err(|_| IoError::Other {
            context: "memory io manager".into(),
            message: "a thread panicked while holding the lock".into(),
        })
    }
}

impl IoManager for MemoryIoManager {
    fn has_output(&self, ctx: &OutputContext<'_>) -> Result<Option<StoredOutput>, IoError> {
        Ok(find(&*self.lock()?, ctx.step, ctx.output, &ctx.version).map(|e| e.stored))
    }

    fn handle_output(
        &self,
        ctx: &OutputContext<'_>,
        value: OutputValue,
    ) -> Result<StoredOutput, IoError> {
        let bytes = match value {
            OutputValue::Bytes(bytes) => bytes,
            OutputValue::File(path) => {
                return Err(IoError::Other {
                    context: format!("storing {}", ctx.identifier()),
                    message: format!("the memory io manager does not store files ({path})"),
                });
            }
        };
        let stored =
            StoredOutput { data_version: DataVersion::of_bytes(&bytes), size: bytes.len() as u64 };
        let mut outputs = self.lock()?;
        let versions = match outputs.get_mut(ctx.step) {
            Some(versions) => versions,
            None => outputs.entry(ctx.step.to_owned()).or_default(),
        };
        let entries = versions.entry(ctx.version).or_default();
        match entries.iter_mut().find(|e| &*e.output == ctx.output) {
            Some(entry) => {
                entry.stored = stored;
                entry.bytes = bytes;
            }
            None => entries.push(MemoryEntry { output: ctx.output.into(), stored, bytes }),
        }
        Ok(stored)
    }

    fn load_input(
        &self,
        ctx: &OutputContext<'_>,
        stored: &StoredOutput,
    ) -> Result<OutputValue, IoError> {
        let bytes = find(&*self.lock()?, ctx.step, ctx.output, &ctx.version)
            .map(|e| e.bytes.clone())
            .ok_or_else(|| IoError::Missing { identifier: ctx.identifier() })?;
        let found = DataVersion::of_bytes(&bytes);
        if found != stored.data_version {
            return Err(IoError::Corrupt {
                identifier: ctx.identifier(),
                expected: stored.data_version.to_hex(),
                found: found.to_hex(),
            });
        }
        Ok(OutputValue::Bytes(bytes))
    }

    /// On a hit: the bytes are checked against their data version, so a
    /// corrupt output is never served as a hit; its step runs again.
    fn restore(&self, ctx: &OutputContext<'_>, stored: &StoredOutput) -> Result<Restore, IoError> {
        let outputs = self.lock()?;
        let entry = find(&outputs, ctx.step, ctx.output, &ctx.version)
            .ok_or_else(|| IoError::Missing { identifier: ctx.identifier() })?;
        let found = DataVersion::of_bytes(&entry.bytes);
        if found != stored.data_version {
            return Err(IoError::Corrupt {
                identifier: ctx.identifier(),
                expected: stored.data_version.to_hex(),
                found: found.to_hex(),
            });
        }
        Ok(Restore::Present)
    }
}
