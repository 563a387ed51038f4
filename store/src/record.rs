//! Stored records: what trove keeps in redb, and how each value is encoded.
//!
//! # Constraints
//!
//! - redb does not verify checksums on reads (facts.md: flipped bytes gave
//!   silently wrong values), so every value carries its own checksum and a
//!   flipped byte is *detected*, reported and treated as a miss.
//! - A record written by a newer trove must never be misread: it is a clear
//!   error at open (the `meta` table's schema) or a miss (per record).
//! - Decoding never panics, whatever the bytes: every prefix truncation and
//!   every byte flip decodes to an [`DecodeError`] (pinned by tests).
//! - Compact: 100k traces must commit in a fraction of a second, so payloads
//!   are postcard (serde's compact, non-self-describing binary form).
//!
//! # Layout of one value
//!
//! ```text
//! offset  size  field
//! 0       2     schema version, u16 little-endian (SCHEMA_VERSION)
//! 2       1     record kind (RecordKind as u8): a trace never decodes as a run
//! 3       n     payload: postcard encoding of the record struct
//! 3+n     16    first 16 bytes of blake3(bytes 0 .. 3+n)
//! ```
//!
//! Keys are raw: 32-byte digests (output and op versions, blob names), UTF-8
//! step names, run ids and workspace-relative paths.
//!
//! # Numbers
//!
//! 19 bytes of overhead per record; a typical trace of a small step is
//! ~300–600 bytes.
//!
//! # Compatibility rule
//!
//! Any change to a stored struct or to this layout bumps [`SCHEMA_VERSION`].
//! A record of an *older* schema decodes to [`DecodeError::OlderSchema`]:
//! the read paths count it as a miss (the step runs again and rewrites it).
//! A record of a *newer* schema decodes to [`DecodeError::NewerSchema`], and
//! a store whose `meta` table names a newer schema fails to open with
//! [`StoreError::NewerSchema`](crate::StoreError::NewerSchema). The
//! `schema_bump_*` tests pin both.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use trove_engine::{DataVersion, Digest, RunCounts, StepReport, Trace};

/// The schema of stored records.
pub const SCHEMA_VERSION: u16 = 2;

const HEADER: usize = 3;
const CHECKSUM: usize = 16;

/// Which table a record belongs to; part of the checksummed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// [`TraceRecord`].
    Trace = 1,
    /// [`OutputRecord`].
    Output = 2,
    /// [`RunRecord`].
    Run = 3,
    /// The per-step outcomes of a run.
    RunSteps = 4,
    /// [`StepLogRecord`].
    Log = 5,
    /// [`StatEntry`].
    Stat = 6,
    /// [`BlobMeta`].
    Blob = 7,
    /// A latest-trace pointer ([`LatestRecord`]).
    Latest = 8,
    /// An up-to-date stamp, when trove kept them in the `stamps` table
    /// (they are files now: [`Stamp`](crate::stamp::Stamp)); reserved.
    Stamp = 9,
    /// A cache entry, when trove kept its parse cache in the `cache` table
    /// (files now: [`Store::cached`](crate::Store::cached)); reserved.
    Cache = 10,
}

/// Why a stored value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than header + checksum.
    #[error("record is truncated ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The checksum does not match: a flipped byte or a torn write.
    #[error("record checksum mismatch")]
    Checksum,
    /// Written by a newer trove.
    #[error("record has schema version {found}, newer than {SCHEMA_VERSION}")]
    NewerSchema {
        /// The schema found.
        found: u16,
    },
    /// Written by an older trove; counts as a miss.
    #[error("record has old schema version {found} (current {SCHEMA_VERSION})")]
    OlderSchema {
        /// The schema found.
        found: u16,
    },
    /// A record of another table.
    #[error("record kind {found} where {expected:?} was expected")]
    WrongKind {
        /// The kind expected.
        expected: RecordKind,
        /// The kind byte found.
        found: u8,
    },
    /// The payload did not decode (or had trailing bytes).
    #[error("record payload does not decode: {0}")]
    Payload(String),
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM] {
    let hash = blake3::hash(bytes);
    let mut out = [0u8; CHECKSUM];
    out.copy_from_slice(&hash.as_bytes()[..CHECKSUM]);
    out
}

/// Encodes a record in the envelope.
pub fn encode<T: Serialize>(kind: RecordKind, value: &T) -> Vec<u8> {
    encode_with_schema(SCHEMA_VERSION, kind, value)
}

/// Encodes with an explicit schema (tests simulate other trove versions).
pub fn encode_with_schema<T: Serialize>(schema: u16, kind: RecordKind, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&schema.to_le_bytes());
    out.push(kind as u8);
    // postcard only fails on types it cannot represent, which the stored
    // structs are not; an empty payload then fails to decode, never panics.
    if let Ok(payload) = postcard::to_allocvec(value) {
        out.extend_from_slice(&payload);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    out
}

/// Decodes a record, checking length, checksum, schema and kind first.
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < HEADER + CHECKSUM {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
    if checksum(body) != sum {
        return Err(DecodeError::Checksum);
    }
    let schema = u16::from_le_bytes([body[0], body[1]]);
    if schema > SCHEMA_VERSION {
        return Err(DecodeError::NewerSchema { found: schema });
    }
    if schema < SCHEMA_VERSION {
        return Err(DecodeError::OlderSchema { found: schema });
    }
    if body[2] != kind as u8 {
        return Err(DecodeError::WrongKind { expected: kind, found: body[2] });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(&body[HEADER..])
        .map_err(|e| DecodeError::Payload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Payload(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

/// A committed trace, in the `traces` table keyed by op version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// The engine's trace.
    pub trace: Trace,
    /// When it was committed, in ms since the Unix epoch.
    pub committed_ms: u64,
}

/// The `latest` table: step name → its latest trace's op version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestRecord {
    /// The op version (key of the `traces` table).
    pub op_version: Digest,
    /// The run that wrote it.
    pub run_id: String,
}

/// Where an output's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// Small bytes, inline in the record.
    Inline(Vec<u8>),
    /// Bytes in the blob named by the data version.
    Blob,
    /// A workspace file, in the blob named by the data version.
    File {
        /// Unix permission bits to restore (0: default).
        mode: u32,
        /// The workspace-relative path it was stored from (used when the
        /// engine names no path).
        path: String,
    },
    /// A workspace directory; its manifest is the blob named by the data
    /// version.
    Dir {
        /// The workspace-relative path it was stored from.
        path: String,
    },
    /// A small workspace file (up to [`INLINE_MAX`](crate::INLINE_MAX)
    /// bytes), inline in the record: committed with it, no blob file.
    InlineFile {
        /// Unix permission bits to restore (0: default).
        mode: u32,
        /// The workspace-relative path it was stored from.
        path: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// The `outputs` table: output version → what is stored for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// The step that produced it.
    pub step: String,
    /// The output name.
    pub output: String,
    /// The op version of the trace that owns it.
    pub op_version: Digest,
    /// The run that produced it.
    pub run_id: String,
    /// blake3 of the bytes (of the manifest, for a directory).
    pub data_version: DataVersion,
    /// Size in bytes (sum of files, for a directory).
    pub size: u64,
    /// Where the bytes are.
    pub location: Location,
    /// When it was stored, in ms since the Unix epoch.
    pub created_ms: u64,
}

/// How a run ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Still running (or its process is gone without finishing, until the
    /// next writer marks it interrupted).
    Running,
    /// Every selected step is a hit or ran.
    Succeeded,
    /// A step failed.
    Failed,
    /// Cancelled.
    Cancelled,
    /// The process died mid-run (found by the next writer).
    Interrupted,
}

/// The `runs` table: one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The job name.
    pub job: String,
    /// Run tags.
    pub tags: BTreeMap<String, String>,
    /// The command that started it.
    pub command: String,
    /// Whether memoization was on.
    pub memoized: bool,
    /// Start, in ms since the Unix epoch.
    pub started_at_ms: u64,
    /// End, in ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
    /// How it ended.
    pub status: RunState,
    /// Outcome counts.
    pub counts: RunCounts,
    /// Wall time, in nanoseconds (engine's measure).
    pub duration_ns: u64,
}

/// A run and what each of its steps did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub record: RunRecord,
    /// Each selected step, in topological order (empty until finished).
    pub steps: Vec<StepReport>,
}

/// The `logs` table: the latest captured output of a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLogRecord {
    /// The step.
    pub step: String,
    /// The run.
    pub run_id: String,
    /// `None`: succeeded; otherwise the failure message.
    pub failure: Option<String>,
    /// Exit code of a failed command.
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// When recorded, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// What a stat-cache entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatKind {
    /// A regular file.
    File,
    /// A directory (its entry is only a hint; members are checked).
    Dir,
}

/// The `stat` table: workspace path → the stat it had when hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    /// File or directory.
    pub kind: StatKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// The data version of the content.
    pub data_version: DataVersion,
    /// When the hash finished, ns since the epoch (the racy check).
    pub hashed_at_ns: i128,
}

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    /// Bytes of a file or a value.
    Data,
    /// A directory manifest.
    Manifest,
}

/// The `blobs` table: blob name → metadata for garbage collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Size in bytes.
    pub size: u64,
    /// What it holds.
    pub kind: BlobKind,
    /// When it was first stored, ms since the epoch.
    pub created_ms: u64,
    /// When it was last stored or read, ms since the epoch.
    pub last_used_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::{CodeComponent, TraceOutput, VersionComponents};

    fn trace() -> Trace {
        Trace {
            step: "fit".into(),
            run_id: "r1".into(),
            op_version: Digest::of_bytes(b"op"),
            unversioned: false,
            components: VersionComponents {
                scheme: 1,
                code: CodeComponent {
                    version: None,
                    explicit: Some("1".into()),
                    text: None,
                    files: vec![],
                },
                config: "{\"k\":1}".into(),
                resources: vec![],
                env: vec![("HOME".into(), None)],
                inputs: vec![],
                outputs: vec![("model".into(), Some("out/model.bin".into()))],
            },
            outputs: vec![TraceOutput {
                name: "model".into(),
                version: trove_engine::OutputVersion(Digest::of_bytes(b"v")),
                data_version: DataVersion::of_bytes(b"d"),
                size: 3,
            }],
            duration_ns: 42,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let rec = TraceRecord { trace: trace(), committed_ms: 7 };
        let bytes = encode(RecordKind::Trace, &rec);
        assert_eq!(decode::<TraceRecord>(RecordKind::Trace, &bytes), Ok(rec));
    }

    #[test]
    fn every_prefix_truncation_is_an_error_not_a_panic() {
        let bytes = encode(RecordKind::Trace, &TraceRecord { trace: trace(), committed_ms: 7 });
        for len in 0..bytes.len() {
            assert!(decode::<TraceRecord>(RecordKind::Trace, &bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(RecordKind::Trace, &TraceRecord { trace: trace(), committed_ms: 7 });
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    decode::<TraceRecord>(RecordKind::Trace, &b).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    fn samples() -> Vec<(RecordKind, Vec<u8>)> {
        let output = OutputRecord {
            step: "s".into(),
            output: "o".into(),
            op_version: Digest([1; 32]),
            run_id: "r".into(),
            data_version: DataVersion::of_bytes(b"x"),
            size: 1,
            location: Location::Inline(b"x".to_vec()),
            created_ms: 5,
        };
        let run = RunRecord {
            run_id: "r".into(),
            job: "j".into(),
            tags: [("k".to_owned(), "v".to_owned())].into(),
            command: "trove run".into(),
            memoized: true,
            started_at_ms: 1,
            ended_at_ms: Some(2),
            status: RunState::Succeeded,
            counts: RunCounts::default(),
            duration_ns: 3,
        };
        let log = StepLogRecord {
            step: "s".into(),
            run_id: "r".into(),
            failure: Some("exit 1".into()),
            exit_code: Some(1),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            at_ms: 4,
        };
        let stat = StatEntry {
            kind: StatKind::File,
            size: 3,
            mtime_ns: -5,
            ctime_ns: 6,
            ino: 7,
            dev: 8,
            data_version: DataVersion::of_bytes(b"y"),
            hashed_at_ns: 9,
        };
        let blob = BlobMeta { size: 1, kind: BlobKind::Data, created_ms: 1, last_used_ms: 2 };
        let latest = LatestRecord { op_version: Digest([2; 32]), run_id: "r".into() };
        let steps = vec![StepReport {
            step: "s".into(),
            outcome: trove_engine::StepOutcome::Ran {
                reasons: vec![trove_engine::RerunReason::NoPreviousTrace],
                duration_ns: 1,
            },
        }];
        vec![
            (
                RecordKind::Trace,
                encode(RecordKind::Trace, &TraceRecord { trace: trace(), committed_ms: 7 }),
            ),
            (RecordKind::Output, encode(RecordKind::Output, &output)),
            (RecordKind::Run, encode(RecordKind::Run, &run)),
            (RecordKind::RunSteps, encode(RecordKind::RunSteps, &steps)),
            (RecordKind::Log, encode(RecordKind::Log, &log)),
            (RecordKind::Stat, encode(RecordKind::Stat, &stat)),
            (RecordKind::Blob, encode(RecordKind::Blob, &blob)),
            (RecordKind::Latest, encode(RecordKind::Latest, &latest)),
        ]
    }

    /// Decodes as the record type of `kind`; `Ok(())` if it decodes.
    fn decode_as(kind: RecordKind, bytes: &[u8]) -> Result<(), DecodeError> {
        match kind {
            RecordKind::Trace => decode::<TraceRecord>(kind, bytes).map(drop),
            RecordKind::Output => decode::<OutputRecord>(kind, bytes).map(drop),
            RecordKind::Run => decode::<RunRecord>(kind, bytes).map(drop),
            RecordKind::RunSteps => decode::<Vec<StepReport>>(kind, bytes).map(drop),
            RecordKind::Log => decode::<StepLogRecord>(kind, bytes).map(drop),
            RecordKind::Stat => decode::<StatEntry>(kind, bytes).map(drop),
            RecordKind::Blob => decode::<BlobMeta>(kind, bytes).map(drop),
            RecordKind::Latest => decode::<LatestRecord>(kind, bytes).map(drop),
            RecordKind::Stamp => Err(DecodeError::Payload("no longer a record".into())),
            RecordKind::Cache => Err(DecodeError::Payload("no longer a record".into())),
        }
    }

    #[test]
    fn every_record_type_round_trips_and_every_truncation_is_an_error() {
        for (kind, bytes) in samples() {
            assert_eq!(decode_as(kind, &bytes), Ok(()), "{kind:?}");
            for len in 0..bytes.len() {
                assert!(decode_as(kind, &bytes[..len]).is_err(), "{kind:?} cut at {len}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for (kind, _) in samples() {
                let _ = decode_as(kind, &bytes);
            }
        }

        #[test]
        fn a_valid_checksum_over_garbage_payload_is_still_an_error_not_a_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for (kind, _) in samples() {
                let mut body = SCHEMA_VERSION.to_le_bytes().to_vec();
                body.push(kind as u8);
                body.extend_from_slice(&payload);
                let sum = checksum(&body);
                body.extend_from_slice(&sum);
                let _ = decode_as(kind, &body);
            }
        }
    }

    #[test]
    fn a_record_of_another_table_is_rejected() {
        let bytes = encode(
            RecordKind::Latest,
            &LatestRecord { op_version: Digest::of_bytes(b"x"), run_id: "r".into() },
        );
        assert!(matches!(
            decode::<TraceRecord>(RecordKind::Trace, &bytes),
            Err(DecodeError::WrongKind { .. })
        ));
    }

    #[test]
    fn schema_bump_makes_old_records_misses_and_new_records_errors() {
        let rec = TraceRecord { trace: trace(), committed_ms: 7 };
        let old = encode_with_schema(SCHEMA_VERSION - 1, RecordKind::Trace, &rec);
        assert_eq!(
            decode::<TraceRecord>(RecordKind::Trace, &old),
            Err(DecodeError::OlderSchema { found: SCHEMA_VERSION - 1 })
        );
        let new = encode_with_schema(SCHEMA_VERSION + 1, RecordKind::Trace, &rec);
        assert_eq!(
            decode::<TraceRecord>(RecordKind::Trace, &new),
            Err(DecodeError::NewerSchema { found: SCHEMA_VERSION + 1 })
        );
    }

    #[test]
    fn the_envelope_layout_is_pinned() {
        let bytes = encode(
            RecordKind::Latest,
            &LatestRecord { op_version: Digest([7; 32]), run_id: "r".into() },
        );
        // schema 2, kind 8, 32 digest bytes, len-prefixed "r", 16 checksum bytes.
        assert_eq!(&bytes[..3], &[2, 0, 8]);
        assert_eq!(bytes.len(), 3 + 32 + 2 + 16);
    }
}
