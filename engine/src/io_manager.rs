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
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use serde::Serialize;

use crate::chunked::ChunkedVec;
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
    /// [`IoError::is_miss`] makes the step run again; any other fails the
    /// step (the workspace cannot take the output back) and the run goes on.
    fn restore(&self, ctx: &OutputContext<'_>, stored: &StoredOutput) -> Result<Restore, IoError> {
        let _ = (ctx, stored);
        Ok(Restore::Present)
    }

    /// After a step ran, before its outputs are stored: whether the source
    /// or code file at the workspace-relative `path` still holds `expected`,
    /// the data version the step's version was computed from. A file edited
    /// while its step ran would otherwise have the step's outputs stored
    /// under a version they do not match, and served as hits from then on;
    /// `false` fails the step instead. The default, for IO managers that keep
    /// no workspace files, says yes.
    fn source_unchanged(&self, path: &str, expected: DataVersion) -> Result<bool, IoError> {
        let _ = (path, expected);
        Ok(true)
    }
}

/// One stored output: whose it is, what is on record about it, and its bytes.
#[derive(Debug)]
struct MemoryEntry {
    /// The step's name followed by the output's name.
    names: Names,
    /// Where the step's name ends in `names`.
    step_len: usize,
    stored: StoredOutput,
    bytes: Vec<u8>,
    /// Whether `bytes` are exactly the bytes `stored.data_version` was
    /// computed from in [`IoManager::handle_output`]. Entries are never
    /// mutated in place except by [`MemoryIoManager::overwrite`], which
    /// clears this; while it holds, `stored.data_version == blake3(bytes)` by
    /// construction, and verification compares data versions instead of
    /// hashing the bytes again (see [`MemoryIoManager::verified_bytes`]).
    pristine: bool,
}

/// Up to 30 bytes of names are kept in the entry itself: checking an entry's
/// names then reads no other memory (at 100k outputs, following a pointer
/// per lookup was a cache miss each).
const INLINE_NAMES: usize = 30;

/// A step name followed by an output name.
#[derive(Debug)]
enum Names {
    Inline { len: u8, bytes: [u8; INLINE_NAMES] },
    Heap(Box<str>),
}

impl Names {
    fn new(step: &str, output: &str) -> Names {
        let len = step.len() + output.len();
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_NAMES => {
                let mut bytes = [0u8; INLINE_NAMES];
                bytes[..step.len()].copy_from_slice(step.as_bytes());
                bytes[step.len()..len].copy_from_slice(output.as_bytes());
                Names::Inline { len: short, bytes }
            }
            _ => {
                let mut names = String::with_capacity(len);
                names.push_str(step);
                names.push_str(output);
                Names::Heap(names.into_boxed_str())
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Names::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Names::Heap(names) => names.as_bytes(),
        }
    }
}

impl MemoryEntry {
    fn new(ctx: &OutputContext<'_>, stored: StoredOutput, bytes: Vec<u8>) -> MemoryEntry {
        MemoryEntry {
            names: Names::new(ctx.step, ctx.output),
            step_len: ctx.step.len(),
            stored,
            bytes,
            pristine: true,
        }
    }

    fn step(&self) -> &[u8] {
        &self.names.as_bytes()[..self.step_len]
    }

    fn output(&self) -> &[u8] {
        &self.names.as_bytes()[self.step_len..]
    }

    fn is(&self, step: &str, output: &str) -> bool {
        self.step_len == step.len()
            && self.step() == step.as_bytes()
            && self.output() == output.as_bytes()
    }
}

/// The outputs stored at one version: one, unless a caller reuses a version
/// for another output (then the others follow, and names tell them apart).
#[derive(Debug)]
struct VersionSlot {
    version: OutputVersion,
    first: MemoryEntry,
    others: Vec<MemoryEntry>,
}

impl VersionSlot {
    fn iter(&self) -> impl Iterator<Item = &MemoryEntry> {
        std::iter::once(&self.first).chain(&self.others)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut MemoryEntry> {
        std::iter::once(&mut self.first).chain(&mut self.others)
    }
}

/// Outputs by version. The version of an output covers its step's name and
/// the output's name, so different outputs at one version do not happen in a
/// job; the step and output names are still compared, so a caller that
/// reuses a version for another output never reads the wrong bytes.
///
/// The slots live in a chunked list and the map holds their positions: a map
/// of the slots themselves moved every one of them each time it grew.
#[derive(Debug, Default)]
struct MemoryOutputs {
    slots: ChunkedVec<VersionSlot>,
    index: HashMap<OutputVersion, usize, BuildHasherDefault<DigestHasher>>,
}

impl MemoryOutputs {
    fn get(&self, version: &OutputVersion) -> Option<&VersionSlot> {
        self.index.get(version).map(|&i| &self.slots[i])
    }

    fn get_mut(&mut self, version: &OutputVersion) -> Option<&mut VersionSlot> {
        self.index.get(version).map(|&i| &mut self.slots[i])
    }

    fn remove(&mut self, version: &OutputVersion) {
        if let Some(i) = self.index.remove(version) {
            self.slots.swap_remove(i);
            if let Some(moved) = self.slots.get(i) {
                self.index.insert(moved.version, i);
            }
        }
    }
}

/// A hasher for keys that are digests: folds the bytes it is given.
/// Versions are blake3 digests, already uniformly distributed.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

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
    outputs.get(version)?.iter().find(|e| e.is(step, output))
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
            .map(|m| m.slots.iter().map(|slot| 1 + slot.others.len()).sum())
            .unwrap_or(0)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes stored at a version (by any step; the first step by name if
    /// several share it).
    pub fn get(&self, version: &OutputVersion) -> Option<Vec<u8>> {
        let outputs = self.outputs.lock().ok()?;
        outputs
            .get(version)?
            .iter()
            .min_by(|a, b| (a.step(), a.output()).cmp(&(b.step(), b.output())))
            .map(|e| e.bytes.clone())
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
            for entry in m.get_mut(&version).into_iter().flat_map(VersionSlot::iter_mut) {
                entry.bytes.clone_from(&bytes);
                entry.pristine = false;
            }
        }
    }

    /// Forgets a stored output.
    pub fn remove(&self, version: &OutputVersion) {
        if let Ok(mut m) = self.outputs.lock() {
            m.remove(version);
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryOutputs>, IoError> {
        self.outputs.lock().map_err(|_| IoError::Other {
            context: "memory io manager".into(),
            message: "a thread panicked while holding the lock".into(),
        })
    }

    /// The entry's bytes if they match the data version the caller expects,
    /// [`IoError::Corrupt`] otherwise (invariant 4: never served).
    ///
    /// A pristine entry's bytes are the ones its data version was computed
    /// from when they were stored, and nothing has written them since, so
    /// comparing the recorded data version with the expected one is the
    /// same check as hashing the bytes again, without the hash. An entry
    /// written by [`MemoryIoManager::overwrite`] is hashed again. (The file
    /// IO manager of the store crate always hashes what it reads: files
    /// can change behind its back; these bytes cannot.)
    fn verified_bytes<'e>(
        ctx: &OutputContext<'_>,
        entry: &'e MemoryEntry,
        stored: &StoredOutput,
    ) -> Result<&'e [u8], IoError> {
        let found = if entry.pristine {
            entry.stored.data_version
        } else {
            DataVersion::of_bytes(&entry.bytes)
        };
        if found != stored.data_version {
            return Err(IoError::Corrupt {
                identifier: ctx.identifier(),
                expected: stored.data_version.to_hex(),
                found: found.to_hex(),
            });
        }
        Ok(&entry.bytes)
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
        let mut guard = self.lock()?;
        let outputs = &mut *guard;
        match outputs.index.entry(ctx.version) {
            Entry::Vacant(vacant) => {
                vacant.insert(outputs.slots.len());
                outputs.slots.push(VersionSlot {
                    version: ctx.version,
                    first: MemoryEntry::new(ctx, stored, bytes),
                    others: Vec::new(),
                });
            }
            Entry::Occupied(occupied) => {
                let slot = &mut outputs.slots[*occupied.get()];
                if let Some(entry) = slot.iter_mut().find(|e| e.is(ctx.step, ctx.output)) {
                    entry.stored = stored;
                    entry.bytes = bytes;
                    entry.pristine = true;
                } else {
                    slot.others.push(MemoryEntry::new(ctx, stored, bytes));
                }
            }
        }
        Ok(stored)
    }

    fn load_input(
        &self,
        ctx: &OutputContext<'_>,
        stored: &StoredOutput,
    ) -> Result<OutputValue, IoError> {
        let outputs = self.lock()?;
        let entry = find(&outputs, ctx.step, ctx.output, &ctx.version)
            .ok_or_else(|| IoError::Missing { identifier: ctx.identifier() })?;
        Ok(OutputValue::Bytes(Self::verified_bytes(ctx, entry, stored)?.to_vec()))
    }

    /// On a hit: the bytes are checked against their data version, so a
    /// corrupt output is never served as a hit; its step runs again.
    fn restore(&self, ctx: &OutputContext<'_>, stored: &StoredOutput) -> Result<Restore, IoError> {
        let outputs = self.lock()?;
        let entry = find(&outputs, ctx.step, ctx.output, &ctx.version)
            .ok_or_else(|| IoError::Missing { identifier: ctx.identifier() })?;
        Self::verified_bytes(ctx, entry, stored)?;
        Ok(Restore::Present)
    }
}

#[cfg(test)]
mod tests {
    use super::{IoError, IoManager, MemoryIoManager, OutputContext, OutputValue};
    use crate::version::{DataVersion, Digest, OutputVersion};

    fn ctx(step: &'static str, output: &'static str) -> OutputContext<'static> {
        let version = OutputVersion(Digest([7; 32]));
        OutputContext { step, output, version, path: None, run_id: "r" }
    }

    #[test]
    fn loads_are_checked_against_the_expected_data_version() {
        let io = MemoryIoManager::new();
        let a = ctx("a", "out");
        let stored = io.handle_output(&a, OutputValue::Bytes(b"good".to_vec())).unwrap();
        assert_eq!(stored.data_version, DataVersion::of_bytes(b"good"));
        assert_eq!(io.load_input(&a, &stored).unwrap(), OutputValue::Bytes(b"good".to_vec()));
        // A caller expecting other bytes is refused, pristine or not.
        let mut stale = stored;
        stale.data_version = DataVersion::of_bytes(b"other");
        assert!(matches!(io.load_input(&a, &stale), Err(IoError::Corrupt { .. })));
        assert!(matches!(io.restore(&a, &stale), Err(IoError::Corrupt { .. })));
        // Overwritten bytes are hashed again and refused.
        io.overwrite(a.version, b"evil".to_vec());
        assert!(matches!(io.load_input(&a, &stored), Err(IoError::Corrupt { .. })));
        assert!(matches!(io.restore(&a, &stored), Err(IoError::Corrupt { .. })));
        // Overwriting with the same bytes is not corruption.
        io.overwrite(a.version, b"good".to_vec());
        assert!(io.load_input(&a, &stored).is_ok());
        // Storing again makes the entry pristine.
        let again = io.handle_output(&a, OutputValue::Bytes(b"new".to_vec())).unwrap();
        assert!(io.load_input(&a, &again).is_ok());
        assert!(matches!(io.load_input(&a, &stored), Err(IoError::Corrupt { .. })));
    }

    #[test]
    fn removing_an_output_keeps_the_others_reachable() {
        let io = MemoryIoManager::new();
        let at = |i: u8| OutputContext {
            step: "s",
            output: "out",
            version: OutputVersion(Digest([i; 32])),
            path: None,
            run_id: "r",
        };
        let stored: Vec<_> = (0..5)
            .map(|i| io.handle_output(&at(i), OutputValue::Bytes(vec![i])).unwrap())
            .collect();
        io.remove(&at(1).version);
        io.remove(&at(4).version);
        assert_eq!(io.len(), 3);
        for i in [0, 2, 3] {
            let value = io.load_input(&at(i), &stored[usize::from(i)]).unwrap();
            assert_eq!(value, OutputValue::Bytes(vec![i]));
        }
        assert_eq!(io.has_output(&at(1)).unwrap(), None);
        assert_eq!(io.has_output(&at(4)).unwrap(), None);
    }

    #[test]
    fn outputs_sharing_a_version_stay_apart() {
        let io = MemoryIoManager::new();
        let (a, b) = (ctx("a", "out"), ctx("b", "out"));
        let sa = io.handle_output(&a, OutputValue::Bytes(b"A".to_vec())).unwrap();
        let sb = io.handle_output(&b, OutputValue::Bytes(b"B".to_vec())).unwrap();
        assert_eq!(io.len(), 2);
        assert_eq!(io.load_input(&a, &sa).unwrap(), OutputValue::Bytes(b"A".to_vec()));
        assert_eq!(io.load_input(&b, &sb).unwrap(), OutputValue::Bytes(b"B".to_vec()));
        assert!(matches!(io.load_input(&a, &sb), Err(IoError::Corrupt { .. })));
        assert_eq!(io.get(&a.version), Some(b"A".to_vec()));
        assert_eq!(io.has_output(&ctx("c", "out")).unwrap(), None);
        // Names are kept apart where they meet: `ab`+`c` is not `a`+`bc`.
        let (abc, a_bc) = (ctx("ab", "c"), ctx("a", "bc"));
        let s1 = io.handle_output(&abc, OutputValue::Bytes(b"1".to_vec())).unwrap();
        assert_eq!(io.has_output(&a_bc).unwrap(), None);
        let s2 = io.handle_output(&a_bc, OutputValue::Bytes(b"2".to_vec())).unwrap();
        assert_eq!(io.load_input(&abc, &s1).unwrap(), OutputValue::Bytes(b"1".to_vec()));
        assert_eq!(io.load_input(&a_bc, &s2).unwrap(), OutputValue::Bytes(b"2".to_vec()));
        assert_eq!(io.len(), 4);
        // Names too long to keep inline are kept apart the same way.
        let long = "a-step-name-longer-than-thirty-bytes";
        let (l1, l2) = (ctx(long, "x"), ctx(long, "xy"));
        let s3 = io.handle_output(&l1, OutputValue::Bytes(b"3".to_vec())).unwrap();
        assert_eq!(io.has_output(&l2).unwrap(), None);
        assert_eq!(io.load_input(&l1, &s3).unwrap(), OutputValue::Bytes(b"3".to_vec()));
        assert_eq!(io.len(), 5);
    }
}
