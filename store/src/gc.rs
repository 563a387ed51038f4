//! Garbage collection and verification of the whole store.
//!
//! `gc` removes traces, outputs and runs by age, by number of runs kept and
//! by a size budget (least recently used outputs first), then every blob no
//! remaining output references (including blobs a crash orphaned). It never
//! removes what the latest trace of a step references unless asked
//! (`include_latest`). Records are removed in one transaction *before* their
//! blobs, so no record ever points at a removed blob; a crash in between
//! leaves only orphan blobs, which the next gc collects.
//!
//! `verify` re-hashes every blob (quarantining the bad), checks redb's page
//! checksums, decodes every record and follows every reference (trace →
//! output → blob → manifest members). Unreadable records and outputs whose
//! content is gone are removed, so their steps simply run again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trove_engine::{Digest, OutputVersion};

use crate::blob::{Manifest, hash_reader};
use crate::error::StoreError;
use crate::lock::now_ms;
use crate::record::{
    BlobMeta, LatestRecord, Location, OutputRecord, RecordKind, RunRecord, RunState, TraceRecord,
    decode,
};
use crate::trace_db::{
    self, BLOBS, Db, LATEST, LOGS, OUTPUTS, RUN_STEPS, RUNS, Rows, STAT, TRACES, Table, db_err,
};
use crate::{Store, all_rows};

/// What `gc` may remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPolicy {
    /// Keep the traces of the newest N runs (and their run records).
    pub keep_runs: Option<usize>,
    /// Remove traces and runs older than this.
    pub older_than: Option<Duration>,
    /// Then evict least recently used outputs until blobs fit this many bytes.
    pub max_size: Option<u64>,
    /// Also remove what the latest trace of a step references.
    pub include_latest: bool,
    /// Report only; remove nothing.
    pub dry_run: bool,
}

/// What `gc` freed (or would free, with `dry_run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Run records removed.
    pub runs_removed: usize,
    /// Traces removed.
    pub traces_removed: usize,
    /// Stored outputs removed.
    pub outputs_removed: usize,
    /// Blob files removed.
    pub blobs_removed: usize,
    /// Bytes of blobs removed.
    pub bytes_freed: u64,
    /// Blobs kept.
    pub blobs_kept: usize,
    /// Bytes of blobs kept.
    pub bytes_kept: u64,
    /// Nothing was removed.
    pub dry_run: bool,
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What is bad (a blob, a record).
    pub what: String,
    /// How, and what was done about it.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Blob files re-hashed.
    pub blobs_checked: usize,
    /// Their bytes.
    pub bytes_checked: u64,
    /// Records decoded.
    pub records_checked: usize,
    /// Traces whose references were followed.
    pub traces_checked: usize,
    /// Blobs no record references (left by an interrupted batch; `gc`
    /// removes them). Not a problem.
    pub orphan_blobs: usize,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// Paths of blobs moved to quarantine.
    pub quarantined: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn decode_rows<T: serde::de::DeserializeOwned>(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    kind: RecordKind,
) -> Vec<(Vec<u8>, T)> {
    rows.into_iter().filter_map(|(k, v)| decode::<T>(kind, &v).ok().map(|t| (k, t))).collect()
}

fn digest_key(k: &[u8]) -> Option<Digest> {
    k.try_into().ok().map(Digest)
}

/// The blobs an output needs: its own and, for a directory, its members'.
fn output_blobs(store: &Store, rec: &OutputRecord) -> Vec<Digest> {
    match rec.location {
        Location::Inline(_) | Location::InlineFile { .. } => Vec::new(),
        Location::Blob | Location::File { .. } => vec![rec.data_version.0],
        Location::Dir { .. } => {
            let mut v = vec![rec.data_version.0];
            if let Ok(bytes) = store.blob_store().read_verified(&rec.data_version.0)
                && let Some(m) = Manifest::decode(&bytes)
            {
                v.extend(m.blobs());
            }
            v
        }
    }
}

fn remove_keys(
    txn: &redb::WriteTransaction,
    path: &std::path::Path,
    table: Table,
    keys: &[Vec<u8>],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let e = db_err(path);
    {
        let mut t = txn.open_table(table).map_err(|x| e(&x))?;
        for k in keys {
            t.remove(k.as_slice()).map_err(|x| e(&x))?;
        }
    }
    // A stamp vouches that every output is stored: after any removal it may
    // no longer hold, so no stamp written before answers any more.
    crate::stamp::invalidate_all(txn, path)
}

pub(crate) fn gc(store: &Store, policy: &GcPolicy) -> Result<GcReport, StoreError> {
    if store.is_read_only() {
        return Err(StoreError::ReadOnly { dir: store.dir().to_path_buf() });
    }
    store.flush_all()?;
    let now = now_ms();
    let traces: Vec<(Vec<u8>, TraceRecord)> =
        decode_rows(all_rows(store, TRACES)?, RecordKind::Trace);
    let outputs: Vec<(Vec<u8>, OutputRecord)> =
        decode_rows(all_rows(store, OUTPUTS)?, RecordKind::Output);
    let latest: Vec<(Vec<u8>, LatestRecord)> =
        decode_rows(all_rows(store, LATEST)?, RecordKind::Latest);
    let mut runs: Vec<(Vec<u8>, RunRecord)> = decode_rows(all_rows(store, RUNS)?, RecordKind::Run);
    let metas: HashMap<Digest, BlobMeta> = decode_rows(all_rows(store, BLOBS)?, RecordKind::Blob)
        .into_iter()
        .filter_map(|(k, m)| digest_key(&k).map(|d| (d, m)))
        .collect();
    runs.sort_by(|a, b| b.0.cmp(&a.0));

    let protected: HashSet<Digest> = if policy.include_latest {
        HashSet::new()
    } else {
        latest.iter().map(|(_, l)| l.op_version).collect()
    };
    let cutoff = policy.older_than.map(|d| now.saturating_sub(d.as_millis() as u64));
    let mut kept_runs: HashSet<String> = HashSet::new();
    let mut removed_runs = Vec::new();
    for (i, (k, r)) in runs.iter().enumerate() {
        let by_count = policy.keep_runs.is_some_and(|n| i >= n);
        let by_age = cutoff.is_some_and(|c| r.ended_at_ms.unwrap_or(r.started_at_ms) < c);
        if (by_count || by_age) && r.status != RunState::Running {
            removed_runs.push(k.clone());
        } else {
            kept_runs.insert(r.run_id.clone());
        }
    }
    let mut removed_traces: HashSet<Digest> = HashSet::new();
    if policy.keep_runs.is_some() || cutoff.is_some() {
        for (_, t) in &traces {
            let op = t.trace.op_version;
            if protected.contains(&op) {
                continue;
            }
            let by_runs =
                policy.keep_runs.is_some() && !kept_runs.contains(t.trace.run_id.as_str());
            let by_age = cutoff.is_some_and(|c| t.committed_ms < c);
            if by_runs || by_age {
                removed_traces.insert(op);
            }
        }
    }
    let known_traces: HashSet<Digest> = traces.iter().map(|(_, t)| t.trace.op_version).collect();
    // Outputs of removed traces go; so do outputs whose trace is gone.
    let mut live: BTreeMap<Vec<u8>, (OutputRecord, Vec<Digest>, bool)> = BTreeMap::new();
    let mut removed_outputs = Vec::new();
    for (k, rec) in outputs {
        let gone =
            removed_traces.contains(&rec.op_version) || !known_traces.contains(&rec.op_version);
        if gone && !protected.contains(&rec.op_version) {
            removed_outputs.push(k);
        } else {
            let blobs = output_blobs(store, &rec);
            let prot = protected.contains(&rec.op_version);
            live.insert(k, (rec, blobs, prot));
        }
    }
    // Size budget: evict least recently used unprotected outputs.
    let on_disk = store.blob_store().list();
    let sizes: HashMap<Digest, u64> =
        on_disk.iter().filter_map(|(d, _, s)| d.map(|d| (d, *s))).collect();
    let mut refs: HashMap<Digest, usize> = HashMap::new();
    for (_, blobs, _) in live.values() {
        for b in blobs {
            *refs.entry(*b).or_default() += 1;
        }
    }
    if let Some(budget) = policy.max_size {
        let mut total: u64 = refs.keys().map(|b| sizes.get(b).copied().unwrap_or(0)).sum();
        if total > budget {
            let mut candidates: Vec<(u64, Vec<u8>)> = live
                .iter()
                .filter(|(_, (_, _, prot))| !prot)
                .map(|(k, (rec, blobs, _))| {
                    let used = blobs
                        .iter()
                        .filter_map(|b| metas.get(b).map(|m| m.last_used_ms))
                        .max()
                        .unwrap_or(rec.created_ms);
                    (used, k.clone())
                })
                .collect();
            candidates.sort();
            for (_, k) in candidates {
                if total <= budget {
                    break;
                }
                if let Some((rec, blobs, _)) = live.remove(&k) {
                    removed_traces.insert(rec.op_version);
                    for b in blobs {
                        if let Some(n) = refs.get_mut(&b) {
                            *n -= 1;
                            if *n == 0 {
                                refs.remove(&b);
                                total = total.saturating_sub(sizes.get(&b).copied().unwrap_or(0));
                            }
                        }
                    }
                    removed_outputs.push(k);
                }
            }
            // A trace goes only once none of its outputs is left.
            let still: HashSet<Digest> = live.values().map(|(r, _, _)| r.op_version).collect();
            removed_traces.retain(|op| !still.contains(op));
        }
    }
    let mut report = GcReport { dry_run: policy.dry_run, ..GcReport::default() };
    let mut doomed = Vec::new();
    for (d, path, size) in &on_disk {
        match d {
            Some(d) if refs.contains_key(d) => {
                report.blobs_kept += 1;
                report.bytes_kept += size;
            }
            _ => {
                report.blobs_removed += 1;
                report.bytes_freed += size;
                doomed.push((*d, path.clone()));
            }
        }
    }
    let trace_keys: Vec<Vec<u8>> = removed_traces.iter().map(|d| d.0.to_vec()).collect();
    let latest_keys: Vec<Vec<u8>> = latest
        .iter()
        .filter(|(_, l)| removed_traces.contains(&l.op_version))
        .map(|(k, _)| k.clone())
        .collect();
    let meta_keys: Vec<Vec<u8>> =
        doomed.iter().filter_map(|(d, _)| d.map(|d| d.0.to_vec())).collect();
    report.runs_removed = removed_runs.len();
    report.traces_removed = trace_keys
        .iter()
        .filter(|k| digest_key(k).is_some_and(|d| known_traces.contains(&d)))
        .count();
    report.outputs_removed = removed_outputs.len();
    if policy.dry_run {
        return Ok(report);
    }
    store.write_txn(|txn, path| {
        remove_keys(txn, path, TRACES, &trace_keys)?;
        remove_keys(txn, path, OUTPUTS, &removed_outputs)?;
        remove_keys(txn, path, LATEST, &latest_keys)?;
        remove_keys(txn, path, RUNS, &removed_runs)?;
        remove_keys(txn, path, RUN_STEPS, &removed_runs)?;
        remove_keys(txn, path, BLOBS, &meta_keys)
    })?;
    for (d, path) in doomed {
        match d {
            Some(d) => store.blob_store().remove(&d)?,
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing", &path, e)),
            },
        }
    }
    Ok(report)
}

pub(crate) fn verify(store: &Store) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    store.flush_all()?;
    // 1. redb's own page checksums.
    if !store.is_read_only() {
        let mut db =
            store.db.write().map_err(|_| StoreError::Internal("database lock poisoned".into()))?;
        if let Db::Rw(db) = &mut *db {
            use crate::trace_db::RedbError as _;
            let checked = crate::trace_db::quietly(|| {
                db.check_integrity().map_err(|e| (e.damage(), e.to_string()))
            })
            .unwrap_or_else(|panic| Err((true, crate::pages_failed(panic.as_ref()))));
            match checked {
                Ok(true) => {}
                Ok(false) => report.problems.push(Problem {
                    what: store.db_path().display().to_string(),
                    detail: "database pages were damaged and have been repaired".into(),
                }),
                Err((false, e)) => report.problems.push(Problem {
                    what: store.db_path().display().to_string(),
                    detail: format!("integrity check failed: {e}"),
                }),
                Err((true, e)) => {
                    // Unsound: it is set aside as the store closes, and the
                    // next run starts a fresh one.
                    crate::trace_db::note_damage(store.db_path(), &e);
                    report.problems.push(Problem {
                        what: store.db_path().display().to_string(),
                        detail: format!(
                            "integrity check failed: {e}; the database is moved to the store's \
                             quarantine/ and the next run starts a fresh one (every step runs again)"
                        ),
                    });
                    return Ok(report);
                }
            }
        }
    }
    // 2. Every blob, re-hashed.
    let mut good: HashSet<Digest> = HashSet::new();
    for (name, path, _) in store.blob_store().list() {
        report.blobs_checked += 1;
        let Some(name) = name else {
            report.problems.push(Problem {
                what: path.display().to_string(),
                detail: "a file in the blob store whose name is not a blake3 digest".into(),
            });
            continue;
        };
        let res = std::fs::File::open(&path).and_then(|f| hash_reader(f, u64::MAX));
        match res {
            Ok((found, n)) if found == name => {
                report.bytes_checked += n;
                good.insert(name);
            }
            Ok((found, _)) => {
                let moved = if store.is_read_only() {
                    None
                } else {
                    store.blob_store().quarantine(&name).ok()
                };
                report.problems.push(Problem {
                    what: format!("blob {}", name.to_hex()),
                    detail: format!(
                        "content hashes to {}{}",
                        found.to_hex(),
                        if moved.is_some() { "; quarantined" } else { "" }
                    ),
                });
                if let Some(p) = moved {
                    report.quarantined.push(p.display().to_string());
                }
            }
            Err(e) => report.problems.push(Problem {
                what: format!("blob {}", name.to_hex()),
                detail: format!("unreadable: {e}"),
            }),
        }
    }
    // 3. Every record decodes.
    let mut bad: BTreeMap<&'static str, (Table, Vec<Vec<u8>>)> = BTreeMap::new();
    let mut check_table = |table: Table,
                           name: &'static str,
                           kind: RecordKind,
                           report: &mut VerifyReport|
     -> Result<Rows, StoreError> {
        let rows = match all_rows(store, table) {
            Ok(rows) => rows,
            Err(e) => {
                report
                    .problems
                    .push(Problem { what: format!("table {name}"), detail: e.to_string() });
                return Ok(Vec::new());
            }
        };
        let mut ok = Vec::new();
        for (k, v) in rows {
            report.records_checked += 1;
            let res = match kind {
                RecordKind::Trace => decode::<TraceRecord>(kind, &v).map(|_| ()),
                RecordKind::Output => decode::<OutputRecord>(kind, &v).map(|_| ()),
                RecordKind::Run => decode::<RunRecord>(kind, &v).map(|_| ()),
                RecordKind::RunSteps => {
                    decode::<Vec<trove_engine::StepReport>>(kind, &v).map(|_| ())
                }
                RecordKind::Log => decode::<crate::record::StepLogRecord>(kind, &v).map(|_| ()),
                RecordKind::Stat => decode::<crate::record::StatEntry>(kind, &v).map(|_| ()),
                RecordKind::Blob => decode::<BlobMeta>(kind, &v).map(|_| ()),
                RecordKind::Latest => decode::<LatestRecord>(kind, &v).map(|_| ()),
                // Stamps are files now; nothing checks this table.
                RecordKind::Stamp => Ok(()),
                // The parse cache is files now; nothing checks this table.
                RecordKind::Cache => Ok(()),
            };
            match res {
                Ok(()) => ok.push((k, v)),
                Err(e) => {
                    report.problems.push(Problem {
                        what: format!("record {name}[{}]", trace_db::show_key(&k)),
                        detail: format!("{e}; removed"),
                    });
                    bad.entry(name).or_insert_with(|| (table, Vec::new())).1.push(k);
                }
            }
        }
        Ok(ok)
    };
    let traces = check_table(TRACES, "traces", RecordKind::Trace, &mut report)?;
    let outputs = check_table(OUTPUTS, "outputs", RecordKind::Output, &mut report)?;
    let latest = check_table(LATEST, "latest", RecordKind::Latest, &mut report)?;
    check_table(RUNS, "runs", RecordKind::Run, &mut report)?;
    check_table(RUN_STEPS, "run_steps", RecordKind::RunSteps, &mut report)?;
    check_table(LOGS, "logs", RecordKind::Log, &mut report)?;
    check_table(STAT, "stat", RecordKind::Stat, &mut report)?;
    check_table(BLOBS, "blobs", RecordKind::Blob, &mut report)?;
    // 4. References: output → blob (→ manifest members).
    let mut referenced: HashSet<Digest> = HashSet::new();
    let mut outputs_by_version: HashMap<OutputVersion, OutputRecord> = HashMap::new();
    let mut bad_outputs = Vec::new();
    for (k, v) in outputs {
        let Ok(rec) = decode::<OutputRecord>(RecordKind::Output, &v) else { continue };
        let mut problem = None;
        match &rec.location {
            Location::Inline(bytes) | Location::InlineFile { bytes, .. } => {
                if Digest::of_bytes(bytes) != rec.data_version.0 {
                    problem = Some("inline value does not match its data version".to_owned());
                }
            }
            Location::Blob | Location::File { .. } => {
                referenced.insert(rec.data_version.0);
                if !good.contains(&rec.data_version.0) {
                    problem =
                        Some(format!("blob {} is missing or corrupt", rec.data_version.short(16)));
                }
            }
            Location::Dir { .. } => {
                referenced.insert(rec.data_version.0);
                match store
                    .blob_store()
                    .read_verified(&rec.data_version.0)
                    .ok()
                    .and_then(|b| Manifest::decode(&b))
                {
                    None => {
                        problem = Some(format!(
                            "manifest {} is missing or corrupt",
                            rec.data_version.short(16)
                        ))
                    }
                    Some(m) => {
                        for b in m.blobs() {
                            referenced.insert(b);
                            if !good.contains(&b) && problem.is_none() {
                                problem = Some(format!(
                                    "member blob {} is missing or corrupt",
                                    b.short(16)
                                ));
                            }
                        }
                    }
                }
            }
        }
        match (problem, digest_key(&k)) {
            (Some(p), _) => {
                report.problems.push(Problem {
                    what: format!(
                        "output {}.{} ({})",
                        rec.step,
                        rec.output,
                        trace_db::show_key(&k)
                    ),
                    detail: format!("{p}; removed, the step runs again"),
                });
                bad_outputs.push(k);
            }
            (None, Some(d)) => {
                outputs_by_version.insert(OutputVersion(d), rec);
            }
            (None, None) => {}
        }
    }
    // 5. Traces: every output they name is stored, with the same data. A
    // trace whose output is gone is removed with it (its step simply runs
    // again at that version), so the same problem is not found again.
    let mut dead_traces = Vec::new();
    for (k, v) in &traces {
        let Ok(rec) = decode::<TraceRecord>(RecordKind::Trace, v) else { continue };
        report.traces_checked += 1;
        let missing =
            rec.trace.outputs.iter().find(|out| !outputs_by_version.contains_key(&out.version));
        if let Some(out) = missing {
            report.problems.push(Problem {
                what: format!("trace of step `{}` (run {})", rec.trace.step, rec.trace.run_id),
                detail: format!(
                    "output `{}` is not stored; removed, the step runs again",
                    out.name
                ),
            });
            dead_traces.push(k.clone());
        }
    }
    let dead: HashSet<&[u8]> = dead_traces.iter().map(Vec::as_slice).collect();
    let stored_traces: HashSet<&[u8]> =
        traces.iter().map(|(k, _)| k.as_slice()).filter(|k| !dead.contains(k)).collect();
    let mut dead_latest = Vec::new();
    for (k, v) in &latest {
        let Ok(l) = decode::<LatestRecord>(RecordKind::Latest, v) else { continue };
        if !stored_traces.contains(l.op_version.0.as_slice()) {
            // Left by a trace removed just now, or a problem of its own.
            if !dead.contains(l.op_version.0.as_slice()) {
                report.problems.push(Problem {
                    what: format!("latest trace pointer (run {})", l.run_id),
                    detail: "points at a trace that is not stored; removed".into(),
                });
            }
            dead_latest.push(k.clone());
        }
    }
    report.orphan_blobs = good.iter().filter(|d| !referenced.contains(d)).count();
    let repairs = !bad.is_empty()
        || !bad_outputs.is_empty()
        || !dead_traces.is_empty()
        || !dead_latest.is_empty();
    if !store.is_read_only() && repairs {
        store.write_txn(|txn, path| {
            for (table, keys) in bad.values() {
                remove_keys(txn, path, *table, keys)?;
            }
            remove_keys(txn, path, OUTPUTS, &bad_outputs)?;
            remove_keys(txn, path, TRACES, &dead_traces)?;
            remove_keys(txn, path, LATEST, &dead_latest)
        })?;
    }
    Ok(report)
}
