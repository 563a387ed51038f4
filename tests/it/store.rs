//! Integration tests: the store (`trove-store`) under the engine.
//!
//! What the user relies on: memoized outputs survive the process, workspace
//! copies are restored and verified, corrupt content is reported and never
//! served, a full disk leaves a consistent store, one writer at a time with
//! a clear message, the stat cache skips unchanged files but never misses a
//! change, and gc / verify do what they say.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use trove::store::{OpenOptions, Store};
use trove::{Engine, InputFrom, Job, Op, RunOptions, RunReport};

pub(crate) fn open(dir: &Path) -> Store {
    Store::open(dir, &OpenOptions::default(), &mut |_| {}).unwrap()
}

/// A store that keeps every file output in a blob, however small (the
/// tests of blobs: corruption, quarantine, gc).
fn open_blobs(dir: &Path) -> Store {
    let store = open(dir);
    store.set_inline_file_max(0);
    store
}

/// A job of `n` chained steps: each writes a workspace file `out/sN.txt`
/// and a bytes output; step i reads step i-1's bytes.
pub(crate) fn chain_job(root: &Path, n: usize, salt: &str, runs: Arc<AtomicUsize>) -> Job {
    let mut b = Job::builder("chain");
    for i in 0..n {
        let root = root.to_path_buf();
        let salt = salt.to_owned();
        let runs = Arc::clone(&runs);
        let mut op = Op::new(format!("s{i}"))
            .output("value")
            .output_at("file", format!("out/s{i}.txt"))
            .config(serde_json::json!({ "salt": salt }))
            .code_version("1");
        if i > 0 {
            op = op.input("prev", InputFrom::output(format!("s{}", i - 1), "value"));
        }
        b = b.op(op.compute(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let prev = if ctx.op().inputs().is_empty() {
                Vec::new()
            } else {
                ctx.input_bytes("prev")?.to_vec()
            };
            let mut value = prev.clone();
            value.extend_from_slice(format!("{salt}{i};").as_bytes());
            let path = root.join(ctx.output_path("file").unwrap_or_default());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &value).unwrap();
            ctx.set_output_bytes("value", value)
        }));
    }
    b.build().unwrap()
}

pub(crate) fn run(store: &Store, root: &Path, job: Job) -> RunReport {
    let io = store.io_manager(root);
    let mut engine = Engine::new(job);
    engine.run(&io, store, &RunOptions::default(), &mut |_| {}).unwrap()
}

pub(crate) fn expected_file(n_upto: usize, salt: &str) -> Vec<u8> {
    (0..=n_upto).map(|i| format!("{salt}{i};")).collect::<String>().into_bytes()
}

struct Ws {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store_dir: PathBuf,
}

fn ws() -> Ws {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let store_dir = root.join(".trove");
    Ws { _tmp: tmp, root, store_dir }
}

#[test]
fn memoized_outputs_survive_the_process_and_a_rerun_is_all_hits() {
    let w = ws();
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let store = open(&w.store_dir);
        let report = run(&store, &w.root, chain_job(&w.root, 5, "a", runs.clone()));
        assert_eq!(report.ran().len(), 5);
    }
    let store = open(&w.store_dir);
    let report = run(&store, &w.root, chain_job(&w.root, 5, "a", runs.clone()));
    assert!(report.ran().is_empty(), "{report:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    assert_eq!(std::fs::read(w.root.join("out/s4.txt")).unwrap(), expected_file(4, "a"));
}

fn one_step_job(name: &str, root: &Path, out: &str, body: &'static [u8]) -> Job {
    let root = root.to_path_buf();
    Job::builder("one")
        .op(Op::new(name).output_at("file", out).output("value").code_version("1").compute(
            move |ctx| {
                let path = root.join(ctx.output_path("file").unwrap_or_default());
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, body).unwrap();
                ctx.set_output_bytes("value", body.to_vec())
            },
        ))
        .build()
        .unwrap()
}

fn file_blob(store: &Store, step: &str) -> trove::Digest {
    use trove::TraceStore;
    let trace = store.latest_trace(step).unwrap().unwrap();
    trace.outputs.iter().find(|o| o.name == "file").unwrap().data_version.0
}

#[test]
fn a_deleted_or_edited_workspace_output_is_restored_and_reported() {
    let w = ws();
    let runs = Arc::new(AtomicUsize::new(0));
    let store = open(&w.store_dir);
    run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
    std::fs::remove_file(w.root.join("out/s1.txt")).unwrap();
    std::fs::write(w.root.join("out/s2.txt"), b"edited by hand").unwrap();
    let report = run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
    assert!(report.ran().is_empty());
    assert_eq!(report.counts.restored, 2, "{report:?}");
    assert_eq!(
        report.outcome("s1"),
        Some(&trove::StepOutcome::Hit { restored: vec!["file".into()] })
    );
    assert_eq!(std::fs::read(w.root.join("out/s1.txt")).unwrap(), expected_file(1, "a"));
    assert_eq!(std::fs::read(w.root.join("out/s2.txt")).unwrap(), expected_file(2, "a"));
}

#[test]
fn a_directory_output_is_stored_as_a_manifest_and_restored_exactly() {
    let w = ws();
    let root = w.root.clone();
    let job = || {
        let root = root.clone();
        Job::builder("dir")
            .op(Op::new("mk").output_at("dir", "out/d").code_version("1").compute(move |_| {
                let d = root.join("out/d");
                std::fs::create_dir_all(d.join("sub/empty")).unwrap();
                std::fs::write(d.join("a.txt"), b"alpha").unwrap();
                std::fs::write(d.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
                Ok(())
            }))
            .build()
            .unwrap()
    };
    let store = open(&w.store_dir);
    assert_eq!(run(&store, &w.root, job()).ran(), ["mk"]);
    let d = w.root.join("out/d");
    std::fs::write(d.join("a.txt"), b"changed").unwrap();
    std::fs::remove_file(d.join("sub/b.bin")).unwrap();
    std::fs::write(d.join("extra.txt"), b"not ours").unwrap();
    let report = run(&store, &w.root, job());
    assert!(report.ran().is_empty());
    assert_eq!(report.counts.restored, 1);
    assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(d.join("sub/b.bin")).unwrap(), vec![7u8; 100_000]);
    assert!(d.join("sub/empty").is_dir());
    assert!(!d.join("extra.txt").exists());
    // The directory's data version is the same whether hashed as a source.
    use trove::TraceStore;
    let trace = store.latest_trace("mk").unwrap().unwrap();
    assert_eq!(store.hash_path(&w.root, "out/d").unwrap(), trace.outputs[0].data_version);
}

#[test]
fn a_corrupt_blob_is_detected_quarantined_never_served_and_the_step_runs_again() {
    let w = ws();
    let store = open_blobs(&w.store_dir);
    let job = || one_step_job("make", &w.root, "out/f.txt", b"the right bytes");
    run(&store, &w.root, job());
    let blob = file_blob(&store, "make");
    std::fs::write(store.blob_path(&blob), b"the wrong bytes").unwrap();
    std::fs::remove_file(w.root.join("out/f.txt")).unwrap();
    let mut warnings = Vec::new();
    let io = store.io_manager(&w.root);
    let report = Engine::new(job())
        .run(&io, &store, &RunOptions::default(), &mut |e| {
            if let trove::RunEvent::Warning { message, .. } = e {
                warnings.push(message.clone());
            }
        })
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("is corrupt"), "{warnings:?}");
    assert!(warnings[0].contains("quarantine"), "{warnings:?}");
    assert_eq!(report.ran(), ["make"], "{report:?}");
    assert_eq!(std::fs::read(w.root.join("out/f.txt")).unwrap(), b"the right bytes");
    let quarantined: Vec<_> = std::fs::read_dir(w.store_dir.join("quarantine")).unwrap().collect();
    assert_eq!(quarantined.len(), 1);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn verify_reports_and_quarantines_a_flipped_blob_byte() {
    let w = ws();
    let store = open_blobs(&w.store_dir);
    run(&store, &w.root, one_step_job("make", &w.root, "out/f.txt", b"some bytes here"));
    let blob = file_blob(&store, "make");
    let path = store.blob_path(&blob);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let report = store.verify().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert!(report.problems.iter().any(|p| p.what.contains(&blob.to_hex())), "{report:?}");
    // The output whose blob is gone is now a miss: the step runs again.
    let report =
        run(&store, &w.root, one_step_job("make", &w.root, "out/f.txt", b"some bytes here"));
    assert_eq!(report.ran(), ["make"]);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn flipped_bytes_in_stored_records_are_misses_not_panics() {
    let w = ws();
    let job = || one_step_job("zqmarkerstep", &w.root, "out/f.txt", b"payload");
    {
        let store = open(&w.store_dir);
        run(&store, &w.root, job());
    }
    let db = w.store_dir.join("trove.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let marker = b"zqmarkerstep";
    let mut flipped = 0;
    for i in 0..bytes.len().saturating_sub(marker.len()) {
        if &bytes[i..i + marker.len()] == marker {
            bytes[i + 2] ^= 0x20;
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    std::fs::write(&db, bytes).unwrap();
    let store = open(&w.store_dir);
    let report = run(&store, &w.root, job());
    assert_eq!(report.ran(), ["zqmarkerstep"], "{report:?}");
    // Reported: the step says why it ran again.
    let Some(trove::StepOutcome::Ran { reasons, .. }) = report.outcome("zqmarkerstep") else {
        panic!("{report:?}")
    };
    assert!(
        reasons.iter().any(|r| matches!(r, trove::RerunReason::OutputCorrupt { detail, .. }
            if detail.contains("checksum"))),
        "{reasons:?}"
    );
    assert_eq!(std::fs::read(w.root.join("out/f.txt")).unwrap(), b"payload");
    // The re-run rewrote the records; what verify still finds it reports.
    let verify = store.verify().unwrap();
    assert!(verify.records_checked > 0);
    assert!(run(&store, &w.root, job()).ran().is_empty());
}

#[test]
fn a_full_disk_at_any_write_gives_a_clear_error_and_a_consistent_store() {
    full_disk_at_any_write(false);
}

/// The same with the commits the CLI makes: from a worker thread, while the
/// next steps run.
#[test]
fn a_full_disk_during_a_background_flush_is_the_run_error_and_harms_nothing() {
    full_disk_at_any_write(true);
}

fn full_disk_at_any_write(background: bool) {
    use trove::store::{FailAt, Fs};
    let mut failures = 0;
    for n in 1..400u64 {
        let w = ws();
        let hook = Arc::new(FailAt::new(n));
        let runs = Arc::new(AtomicUsize::new(0));
        let outcome = Store::open_with_fs(
            &w.store_dir,
            &OpenOptions::default(),
            &mut |_| {},
            Fs::with_hook(hook.clone()),
        )
        .map_err(|e| e.to_string())
        .and_then(|store| {
            store.set_background_flush(background.then_some(std::time::Duration::ZERO));
            let io = store.io_manager(&w.root);
            let mut engine = Engine::new(chain_job(&w.root, 3, "a", runs.clone()));
            let opts = RunOptions { jobs: if background { 2 } else { 0 }, ..Default::default() };
            let res = engine.run(&io, &store, &opts, &mut |_| {});
            res.map(|_| ()).map_err(|e| e.to_string())
        });
        let hit = hook.seen() >= n;
        if let Err(msg) = &outcome {
            assert!(hit, "failed without an injected fault: {msg}");
            assert!(msg.contains("no space left on device"), "unclear error at step {n}: {msg}");
            failures += 1;
        }
        // Whatever happened, the store opens, verifies clean and a re-run
        // produces the right outputs.
        let store = open(&w.store_dir);
        let verify = store.verify().unwrap();
        assert!(verify.is_clean(), "after a fault at write {n}: {verify:?}");
        let report = run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
        assert_eq!(report.status, trove::RunStatus::Succeeded);
        for i in 0..3 {
            let got = std::fs::read(w.root.join(format!("out/s{i}.txt"))).unwrap();
            assert_eq!(got, expected_file(i, "a"));
        }
        if !hit {
            assert!(failures > 10, "only {failures} fault points were exercised");
            return;
        }
    }
    panic!("the job never completed without a fault");
}

#[test]
fn a_second_writer_with_no_wait_fails_at_once_naming_the_holder() {
    let w = ws();
    let opts = OpenOptions { command: "trove run".into(), ..OpenOptions::default() };
    let _first = Store::open(&w.store_dir, &opts, &mut |_| {}).unwrap();
    let no_wait = OpenOptions { wait: false, ..OpenOptions::default() };
    let err = Store::open(&w.store_dir, &no_wait, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("store "), "{msg}");
    assert!(
        msg.contains(&format!("is locked by pid {} (`trove run`) since ", std::process::id())),
        "{msg}"
    );
    assert!(msg.ends_with(" UTC"), "{msg}");
}

#[test]
fn a_second_writer_waits_for_the_first_and_both_finish() {
    let w = ws();
    let first = open(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    run(&first, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = w.store_dir.clone();
    let root = w.root.clone();
    let runs2 = runs.clone();
    let second = std::thread::spawn(move || {
        let store = Store::open(&dir, &OpenOptions::default(), &mut |holder| {
            tx.send(holder.pid).unwrap();
        })
        .unwrap();
        run(&store, &root, chain_job(&root, 3, "b", runs2)).ran().len()
    });
    assert_eq!(rx.recv().unwrap(), std::process::id());
    drop(first);
    assert_eq!(second.join().unwrap(), 3);
    let store = open(&w.store_dir);
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(std::fs::read(w.root.join("out/s2.txt")).unwrap(), expected_file(2, "b"));
}

#[test]
fn a_read_only_open_reads_while_a_writer_holds_the_store() {
    let w = ws();
    let writer = open(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    let run_id = Store::new_run_id();
    writer
        .begin_run(&trove::store::RunInfo {
            run_id: run_id.clone(),
            job: "chain".into(),
            command: "trove run".into(),
            memoized: true,
            ..Default::default()
        })
        .unwrap();
    run(&writer, &w.root, chain_job(&w.root, 2, "a", runs));
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let reader = Store::open(&w.store_dir, &ro, &mut |_| panic!("a reader must not wait")).unwrap();
    let runs = reader.runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, run_id);
    assert_eq!(runs[0].status, trove::store::RunState::Running);
}

#[test]
fn a_read_only_open_of_a_missing_store_is_a_clear_error() {
    let w = ws();
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let err = Store::open(&w.store_dir, &ro, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("no store at"), "{err}");
    assert!(!w.store_dir.exists());
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago))
        .unwrap();
}

#[test]
fn the_stat_cache_skips_unchanged_files_and_rehashes_touched_ones() {
    let w = ws();
    let src = w.root.join("src.txt");
    std::fs::write(&src, b"source text").unwrap();
    set_mtime(&src, 100);
    let dv = {
        let store = open(&w.store_dir);
        let dv = store.hash_path(&w.root, "src.txt").unwrap();
        assert_eq!(dv, trove::DataVersion::of_bytes(b"source text"));
        assert_eq!(store.stats().files_hashed, 1);
        dv
    };
    // A new process: the cache persisted; the unchanged file is not re-hashed.
    let store = open(&w.store_dir);
    assert_eq!(store.hash_path(&w.root, "src.txt").unwrap(), dv);
    assert_eq!(store.stats().files_hashed, 0);
    assert_eq!(store.stats().stat_hits, 1);
    // Touched without a change: hashed once more, same data version, then cached.
    set_mtime(&src, 50);
    assert_eq!(store.hash_path(&w.root, "src.txt").unwrap(), dv);
    assert_eq!(store.hash_path(&w.root, "src.txt").unwrap(), dv);
    assert_eq!(store.stats().files_hashed, 1);
}

#[test]
fn a_change_within_the_same_mtime_tick_is_detected() {
    let w = ws();
    let src = w.root.join("src.txt");
    std::fs::write(&src, b"aaaa").unwrap();
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    let store = open(&w.store_dir);
    assert_eq!(store.hash_path(&w.root, "src.txt").unwrap(), trove::DataVersion::of_bytes(b"aaaa"));
    // Same size, and the same mtime as when it was hashed.
    std::fs::write(&src, b"bbbb").unwrap();
    std::fs::File::options().write(true).open(&src).unwrap().set_modified(mtime).unwrap();
    assert_eq!(store.hash_path(&w.root, "src.txt").unwrap(), trove::DataVersion::of_bytes(b"bbbb"));
}

#[test]
fn hash_path_names_a_missing_path_and_refuses_paths_outside_the_workspace() {
    let w = ws();
    let store = open(&w.store_dir);
    let err = store.hash_path(&w.root, "data/missing.csv").unwrap_err();
    assert_eq!(err.to_string(), "data/missing.csv does not exist in the workspace");
    let err = store.hash_path(&w.root, "../etc/passwd").unwrap_err();
    assert!(err.to_string().contains("not a path inside the workspace"), "{err}");
}

fn recorded_run(store: &Store, root: &Path, job: Job) -> (String, RunReport) {
    let run_id = Store::new_run_id();
    store
        .begin_run(&trove::store::RunInfo {
            run_id: run_id.clone(),
            job: job.name().to_owned(),
            tags: [("who".to_owned(), "test".to_owned())].into(),
            started_at_ms: 1,
            command: "trove run".into(),
            memoized: true,
        })
        .unwrap();
    let io = store.io_manager(root);
    let opts = RunOptions { run_id: run_id.clone(), ..RunOptions::default() };
    let report = Engine::new(job).run(&io, store, &opts, &mut |_| {}).unwrap();
    store.finish_run(&report).unwrap();
    (run_id, report)
}

#[test]
fn runs_are_listed_newest_first_found_by_prefix_and_keep_step_logs() {
    let w = ws();
    let store = open(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    let (first, _) = recorded_run(&store, &w.root, chain_job(&w.root, 2, "a", runs.clone()));
    let failing = Job::builder("fails")
        .op(Op::new("bad").output("x").code_version("1").compute(|ctx| {
            ctx.log_stderr(b"boom happened\n");
            Err(trove::OpFailure::new("exit status 3"))
        }))
        .build()
        .unwrap();
    let (second, report) = recorded_run(&store, &w.root, failing);
    assert_eq!(report.status, trove::RunStatus::Failed);
    let listed = store.runs(10).unwrap();
    assert_eq!(
        listed.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        [second.clone(), first.clone()]
    );
    assert_eq!(listed[0].status, trove::store::RunState::Failed);
    assert_eq!(listed[1].counts.ran, 2);
    assert_eq!(listed[1].tags.get("who").map(String::as_str), Some("test"));
    let detail = store.run(&second[..14]).unwrap().unwrap();
    assert_eq!(detail.record.run_id, second);
    assert_eq!(detail.steps.len(), 1);
    assert!(store.run("zzzz").unwrap().is_none());
    let log = store.step_log("bad").unwrap().unwrap();
    assert_eq!(log.run_id, second);
    assert_eq!(log.stderr, b"boom happened\n");
    assert!(log.failure.unwrap().contains("exit status 3"));
    let ok = store.step_log("s1").unwrap().unwrap();
    assert_eq!(ok.run_id, first);
    assert!(ok.failure.is_none());
}

#[test]
fn gc_keeps_latest_traces_by_default_and_frees_what_older_runs_held() {
    let w = ws();
    let store = open_blobs(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    recorded_run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
    recorded_run(&store, &w.root, chain_job(&w.root, 3, "b", runs.clone()));
    let policy = trove::store::GcPolicy { keep_runs: Some(1), dry_run: true, ..Default::default() };
    let dry = store.gc(&policy).unwrap();
    assert_eq!(dry.traces_removed, 3, "{dry:?}");
    assert_eq!(dry.runs_removed, 1);
    assert_eq!(dry.blobs_removed, 3);
    let report = store.gc(&trove::store::GcPolicy { dry_run: false, ..policy }).unwrap();
    assert_eq!(report.blobs_removed, 3);
    assert!(report.bytes_freed > 0);
    assert_eq!(store.runs(10).unwrap().len(), 1);
    assert!(store.verify().unwrap().is_clean());
    // What the latest traces reference is still memoized; the rest is gone.
    let before = runs.load(Ordering::SeqCst);
    assert!(run(&store, &w.root, chain_job(&w.root, 3, "b", runs.clone())).ran().is_empty());
    assert_eq!(run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone())).ran().len(), 3);
    assert_eq!(runs.load(Ordering::SeqCst), before + 3);
}

#[test]
fn gc_by_size_evicts_only_unprotected_outputs_unless_asked() {
    let w = ws();
    let store = open_blobs(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    recorded_run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone()));
    let budget = trove::store::GcPolicy { max_size: Some(0), ..Default::default() };
    let report = store.gc(&budget).unwrap();
    assert_eq!(report.blobs_removed, 0, "latest traces are protected: {report:?}");
    let all = trove::store::GcPolicy { include_latest: true, ..budget };
    let report = store.gc(&all).unwrap();
    assert_eq!(report.blobs_removed, 3);
    assert_eq!(report.bytes_kept, 0);
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(run(&store, &w.root, chain_job(&w.root, 3, "a", runs.clone())).ran().len(), 3);
}

#[test]
fn gc_by_age_removes_old_runs_but_never_what_a_latest_trace_needs() {
    let w = ws();
    let store = open(&w.store_dir);
    let runs = Arc::new(AtomicUsize::new(0));
    recorded_run(&store, &w.root, chain_job(&w.root, 2, "a", runs.clone()));
    recorded_run(&store, &w.root, chain_job(&w.root, 2, "b", runs.clone()));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let policy = trove::store::GcPolicy {
        older_than: Some(std::time::Duration::ZERO),
        ..Default::default()
    };
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed, 2);
    assert_eq!(report.traces_removed, 2, "only the superseded traces go: {report:?}");
    assert!(store.verify().unwrap().is_clean());
    assert!(run(&store, &w.root, chain_job(&w.root, 2, "b", runs.clone())).ran().is_empty());
}

#[test]
fn a_corrupt_large_value_is_never_served_downstream_and_its_producer_runs_again() {
    let w = ws();
    let produced = Arc::new(AtomicUsize::new(0));
    let job = |consumer_version: &str| {
        let produced = produced.clone();
        Job::builder("values")
            .op(Op::new("big").output("blob").code_version("1").compute(move |ctx| {
                produced.fetch_add(1, Ordering::SeqCst);
                ctx.set_output_bytes("blob", vec![42u8; 100_000])
            }))
            .op(Op::new("use")
                .input("blob", InputFrom::output("big", "blob"))
                .output("sum")
                .code_version(consumer_version)
                .compute(|ctx| {
                    let bytes = ctx.input_bytes("blob")?;
                    assert!(bytes.iter().all(|&b| b == 42), "a corrupt value was served");
                    ctx.set_output_value("sum", &bytes.iter().map(|&b| u64::from(b)).sum::<u64>())
                }))
            .build()
            .unwrap()
    };
    let store = open(&w.store_dir);
    run(&store, &w.root, job("1"));
    use trove::TraceStore;
    let dv = store.latest_trace("big").unwrap().unwrap().outputs[0].data_version;
    let path = store.blob_path(&dv.0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50_000] = 0;
    std::fs::write(&path, bytes).unwrap();
    // The consumer must run; its producer is a hit whose stored value is bad.
    let report = run(&store, &w.root, job("2"));
    assert_eq!(report.status, trove::RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.ran(), ["big", "use"]);
    assert_eq!(produced.load(Ordering::SeqCst), 2);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn a_read_only_store_plans_but_refuses_to_store_outputs() {
    let w = ws();
    let runs = Arc::new(AtomicUsize::new(0));
    drop(open(&w.store_dir));
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let store = Store::open(&w.store_dir, &ro, &mut |_| {}).unwrap();
    let io = store.io_manager(&w.root);
    let mut engine = Engine::new(chain_job(&w.root, 2, "a", runs.clone()));
    let plan = engine.plan(&io, &store, &RunOptions::default()).unwrap();
    assert_eq!(plan.counts().1, 2, "s0 must run, and s1 after it: neither ever ran");
    let report = engine.run(&io, &store, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.status, trove::RunStatus::Failed);
    let trove::StepOutcome::Failed { message, .. } = report.outcome("s0").unwrap() else {
        panic!("{report:?}")
    };
    assert!(message.contains("was opened read-only"), "{message}");
    assert!(store.blob_path(&trove::Digest([0; 32])).parent().is_some_and(|p| !p.exists()));
}

#[test]
fn a_file_output_without_a_declared_path_is_restored_from_where_it_was_stored() {
    let w = ws();
    let root = w.root.clone();
    let job = || {
        let root = root.clone();
        Job::builder("undeclared")
            .op(Op::new("w").output("f").code_version("1").compute(move |ctx| {
                std::fs::create_dir_all(root.join("gen")).unwrap();
                std::fs::write(root.join("gen/x.txt"), b"generated").unwrap();
                ctx.set_output("f", trove::OutputValue::File("gen/x.txt".into()))
            }))
            .build()
            .unwrap()
    };
    let store = open(&w.store_dir);
    assert_eq!(run(&store, &w.root, job()).ran(), ["w"]);
    std::fs::remove_file(w.root.join("gen/x.txt")).unwrap();
    let report = run(&store, &w.root, job());
    assert!(report.ran().is_empty(), "{report:?}");
    assert_eq!(report.counts.restored, 1);
    assert_eq!(std::fs::read(w.root.join("gen/x.txt")).unwrap(), b"generated");
}

/// A simulated disk for power loss (redb's live/durable idea): a file's
/// content is durable once fsynced, a rename once its directory is fsynced
/// after it, and the database is what it was at its last completed sync.
/// At write `fail_at` the power goes: that write and every later one fail.
struct PowerLoss {
    fail_at: u64,
    seen: std::sync::atomic::AtomicU64,
    state: std::sync::Mutex<PowerState>,
}

#[derive(Default)]
struct PowerState {
    synced: std::collections::HashSet<PathBuf>,
    renamed: Vec<PathBuf>,
    durable: std::collections::HashSet<PathBuf>,
    db_image: Option<Vec<u8>>,
}

impl trove::store::FsHook for PowerLoss {
    fn before(&self, _op: trove::store::FsOp, _path: &Path) -> std::io::Result<()> {
        let seen = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if seen >= self.fail_at {
            return Err(std::io::Error::other("power lost"));
        }
        Ok(())
    }

    fn after(&self, op: trove::store::FsOp, path: &Path) {
        use trove::store::FsOp;
        let mut st = self.state.lock().unwrap();
        match op {
            FsOp::Sync => {
                st.synced.insert(path.to_path_buf());
            }
            FsOp::SyncDir => {
                let (now, later): (Vec<PathBuf>, Vec<PathBuf>) =
                    st.renamed.drain(..).partition(|p| p.parent() == Some(path));
                st.renamed = later;
                st.durable.extend(now);
            }
            FsOp::DbSync => st.db_image = Some(std::fs::read(path).unwrap()),
            _ => {}
        }
    }

    fn renamed(&self, from: &Path, to: &Path) {
        let mut st = self.state.lock().unwrap();
        // Content that was never fsynced is lost with the power, whatever
        // its name.
        if st.synced.contains(from) {
            st.renamed.push(to.to_path_buf());
        }
    }
}

#[test]
fn power_loss_at_any_write_keeps_every_committed_trace_complete() {
    for n in 1..2000u64 {
        let w = ws();
        let runs = Arc::new(AtomicUsize::new(0));
        drop(open(&w.store_dir));
        let db = w.store_dir.join("trove.redb");
        let hook = Arc::new(PowerLoss {
            fail_at: n,
            seen: Default::default(),
            state: std::sync::Mutex::new(PowerState {
                db_image: Some(std::fs::read(&db).unwrap()),
                ..PowerState::default()
            }),
        });
        let fs = trove::store::Fs::with_hook(hook.clone());
        if let Ok(store) =
            Store::open_with_fs(&w.store_dir, &OpenOptions::default(), &mut |_| {}, fs)
        {
            store.set_batch(2, std::time::Duration::from_secs(60));
            let io = store.io_manager(&w.root);
            let mut engine = Engine::new(chain_job(&w.root, 6, "a", runs.clone()));
            let _ = engine.run(&io, &store, &RunOptions::default(), &mut |_| {});
        }
        let completed = hook.seen.load(Ordering::SeqCst) < n;
        // The power goes: only what was durable survives.
        let st = hook.state.lock().unwrap();
        std::fs::write(&db, st.db_image.as_ref().unwrap()).unwrap();
        let mut files = Vec::new();
        let mut stack = vec![w.store_dir.join("blobs")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() { stack.push(e.path()) } else { files.push(e.path()) }
            }
        }
        for f in files {
            if !st.durable.contains(&f) {
                std::fs::remove_file(&f).unwrap();
            }
        }
        drop(st);
        let store = open(&w.store_dir);
        let verify = store.verify().unwrap();
        assert!(verify.is_clean(), "power lost at write {n}: {:#?}", verify.problems);
        let report = run(&store, &w.root, chain_job(&w.root, 6, "a", runs.clone()));
        assert_eq!(report.status, trove::RunStatus::Succeeded);
        for i in 0..6 {
            assert_eq!(
                std::fs::read(w.root.join(format!("out/s{i}.txt"))).unwrap(),
                expected_file(i, "a")
            );
        }
        if completed {
            assert!(n > 20, "only {} power-loss points", n - 1);
            return;
        }
    }
    panic!("the job never completed");
}

/// A trace database damaged beyond opening (redb refuses it, panics on it,
/// or finds it cut short) is set aside in `quarantine/`, never deleted, and
/// a fresh one takes its place: the next run re-runs everything and is
/// correct, the one after is memoized again. Nothing is served from the
/// damaged file.
#[test]
fn a_trace_database_damaged_beyond_opening_is_set_aside_and_runs_start_afresh() {
    type Damage = (&'static str, fn(&mut Vec<u8>));
    let damages: [Damage; 3] = [
        ("overwritten after the header", |bytes| {
            for b in bytes.iter_mut().skip(4096) {
                *b = 0xA5;
            }
        }),
        ("cut to 100 bytes", |bytes| bytes.truncate(100)),
        ("cut to 4000 bytes", |bytes| bytes.truncate(4000)),
    ];
    for (what, damage) in damages {
        let w = ws();
        let runs = Arc::new(AtomicUsize::new(0));
        {
            let store = open(&w.store_dir);
            let report = run(&store, &w.root, chain_job(&w.root, 4, "a", runs.clone()));
            assert_eq!(report.ran().len(), 4);
            assert!(store.recovered_from().is_none());
        }
        let db = w.store_dir.join("trove.redb");
        let mut bytes = std::fs::read(&db).unwrap();
        damage(&mut bytes);
        std::fs::write(&db, &bytes).unwrap();

        // A reader never panics on it: it reads what checksums vouch for, or
        // says the file is damaged and who repairs it.
        let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
        match Store::open(&w.store_dir, &ro, &mut |_| {}) {
            Ok(_) | Err(trove::store::StoreError::Damaged { .. }) => {}
            Err(e) => panic!("{what}: a read-only open failed otherwise: {e}"),
        }
        let store = open(&w.store_dir);
        let (aside, _detail) =
            store.recovered_from().unwrap_or_else(|| panic!("{what}: not set aside"));
        assert!(aside.starts_with(w.store_dir.join("quarantine")), "{what}: {}", aside.display());
        assert_eq!(std::fs::read(aside).unwrap(), bytes, "{what}: the damaged file is kept");
        let report = run(&store, &w.root, chain_job(&w.root, 4, "a", runs.clone()));
        assert_eq!(report.ran().len(), 4, "{what}: a fresh database knows no traces");
        assert_eq!(std::fs::read(w.root.join("out/s3.txt")).unwrap(), expected_file(3, "a"));
        assert!(run(&store, &w.root, chain_job(&w.root, 4, "a", runs)).ran().is_empty(), "{what}");
        assert!(store.verify().unwrap().problems.is_empty(), "{what}");
    }
}

#[test]
fn a_small_file_output_lives_in_its_record_and_is_restored_from_it() {
    let w = ws();
    let store = open(&w.store_dir);
    let job = || one_step_job("make", &w.root, "out/f.txt", b"small bytes");
    run(&store, &w.root, job());
    let data = file_blob(&store, "make");
    assert!(!store.blob_path(&data).exists(), "no blob file for a small output");
    std::fs::remove_file(w.root.join("out/f.txt")).unwrap();
    let report = run(&store, &w.root, job());
    assert!(report.ran().is_empty(), "{report:?}");
    assert_eq!(report.counts.restored, 1);
    assert_eq!(std::fs::read(w.root.join("out/f.txt")).unwrap(), b"small bytes");
    std::fs::write(w.root.join("out/f.txt"), b"edited bytes").unwrap();
    let report = run(&store, &w.root, job());
    assert!(report.ran().is_empty(), "{report:?}");
    assert_eq!(report.counts.restored, 1);
    assert_eq!(std::fs::read(w.root.join("out/f.txt")).unwrap(), b"small bytes");
    assert!(store.verify().unwrap().is_clean());
    // Only files above the limit become blobs.
    store.set_inline_file_max(4);
    let big = || one_step_job("big", &w.root, "out/g.txt", b"more than four bytes");
    run(&store, &w.root, big());
    assert!(store.blob_path(&file_blob(&store, "big")).exists());
}

#[test]
fn background_flushes_commit_every_finished_step() {
    for jobs in [1, 2, 3] {
        let w = ws();
        let runs = Arc::new(AtomicUsize::new(0));
        {
            let store = open(&w.store_dir);
            store.set_background_flush(Some(std::time::Duration::from_millis(if jobs == 3 {
                5
            } else {
                0
            })));
            let io = store.io_manager(&w.root);
            let mut engine = Engine::new(chain_job(&w.root, 20, "a", runs.clone()));
            let opts = RunOptions { jobs, ..Default::default() };
            let report = engine.run(&io, &store, &opts, &mut |_| {}).unwrap();
            assert_eq!(report.ran().len(), 20);
            // Nothing is left to commit when the run returns.
            let before = store.stats().batches;
            store.flush_all().unwrap();
            assert_eq!(store.stats().batches, before, "jobs = {jobs}");
        }
        let store = open(&w.store_dir);
        let report = run(&store, &w.root, chain_job(&w.root, 20, "a", runs.clone()));
        assert!(report.ran().is_empty(), "jobs = {jobs}: {report:?}");
    }
}

/// What `trove run` does with the store: a run begun, background flushes,
/// the engine's end left to the run's end record.
fn cli_like_run(store: &Store, root: &Path, job: Job, jobs: usize) -> RunReport {
    let run_id = Store::new_run_id();
    let info = trove::store::RunInfo {
        run_id: run_id.clone(),
        job: job.name().to_owned(),
        command: "trove run".into(),
        memoized: true,
        ..Default::default()
    };
    store.begin_run(&info).unwrap();
    store.set_background_flush(Some(std::time::Duration::from_millis(20)));
    store.set_end_with_finish_run(true);
    let io = store.io_manager(root);
    let opts = RunOptions { run_id, jobs, ..RunOptions::default() };
    let report = Engine::new(job).run(&io, store, &opts, &mut |_| {}).unwrap();
    store.finish_run(&report).unwrap();
    report
}

#[test]
fn a_one_step_run_costs_one_commit_its_end() {
    for jobs in [1, 2] {
        let w = ws();
        let store = open(&w.store_dir);
        let job = one_step_job("only", &w.root, "out/only.txt", b"only");
        let report = cli_like_run(&store, &w.root, job, jobs);
        assert_eq!(report.ran().len(), 1);
        // The run's start, its step and its end: one durable commit.
        assert_eq!(store.stats().batches, 1, "jobs = {jobs}");
        assert_eq!(store.runs(10).unwrap()[0].status, trove::store::RunState::Succeeded);
        drop(store);
        let store = open(&w.store_dir);
        let again = run(&store, &w.root, one_step_job("only", &w.root, "out/only.txt", b"only"));
        assert!(again.ran().is_empty(), "jobs = {jobs}: the step was committed: {again:?}");
    }
}

/// A workspace whose store holds a 5-step chain run that `close_at_exit`
/// let go of, as `trove run` leaves it; with the chain's run counter.
fn chain_run_let_go_at_exit() -> (Ws, Arc<AtomicUsize>) {
    let w = ws();
    let runs = Arc::new(AtomicUsize::new(0));
    let store = open(&w.store_dir);
    cli_like_run(&store, &w.root, chain_job(&w.root, 5, "a", runs.clone()), 2);
    store.close_at_exit().unwrap();
    (w, runs)
}

#[test]
fn a_store_let_go_at_exit_opens_for_reading_and_writing_and_loses_nothing() {
    let (w, runs) = chain_run_let_go_at_exit();
    // A reader first: the file was left without redb's shutdown, which a
    // read-only open refuses until a writer has opened it; the store does.
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let reader = Store::open(&w.store_dir, &ro, &mut |_| panic!("nobody holds the store")).unwrap();
    assert_eq!(reader.runs(10).unwrap()[0].status, trove::store::RunState::Succeeded);
    drop(reader);
    let store = open(&w.store_dir);
    assert!(run(&store, &w.root, chain_job(&w.root, 5, "a", runs.clone())).ran().is_empty());
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}

#[test]
fn a_run_let_go_of_before_its_end_reads_as_interrupted() {
    let w = ws();
    let store = open(&w.store_dir);
    let run_id = Store::new_run_id();
    store
        .begin_run(&trove::store::RunInfo {
            run_id: run_id.clone(),
            job: "chain".into(),
            command: "trove run".into(),
            memoized: true,
            ..Default::default()
        })
        .unwrap();
    // The begin record waits for the run's first commit.
    assert!(store.runs(10).unwrap().is_empty());
    let runs = Arc::new(AtomicUsize::new(0));
    run(&store, &w.root, chain_job(&w.root, 2, "a", runs));
    // The process ends without `finish_run` (as a killed one would).
    store.close_at_exit().unwrap();
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let reader = Store::open(&w.store_dir, &ro, &mut |_| {}).unwrap();
    let listed = reader.runs(10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run_id, run_id);
    assert_eq!(listed[0].status, trove::store::RunState::Interrupted);
}

/// A filesystem this process may read but not write (read-only media,
/// another user's store): every write step fails as `EROFS` would.
struct ReadOnlyMedia;

impl trove::store::FsHook for ReadOnlyMedia {
    fn before(&self, _op: trove::store::FsOp, _path: &Path) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }
}

/// A store let go at exit sits on media this process cannot write: the
/// reader cannot settle the file, so it reads it through a scratch overlay
/// instead, sees every record, and leaves the file's bytes as they were.
#[test]
fn a_store_let_go_at_exit_reads_where_it_cannot_be_written() {
    let (w, runs) = chain_run_let_go_at_exit();
    let db = w.store_dir.join("trove.redb");
    let before = std::fs::read(&db).unwrap();
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let fs = trove::store::Fs::with_hook(Arc::new(ReadOnlyMedia));
    let reader =
        Store::open_with_fs(&w.store_dir, &ro, &mut |_| panic!("nobody holds the store"), fs)
            .unwrap();
    assert_eq!(reader.runs(10).unwrap()[0].status, trove::store::RunState::Succeeded);
    let report = run(&reader, &w.root, chain_job(&w.root, 5, "a", runs.clone()));
    assert!(report.ran().is_empty(), "every step is known from the traces: {report:?}");
    drop(reader);
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was written");
    // The next writer opens it as it would have.
    let store = open(&w.store_dir);
    assert!(run(&store, &w.root, chain_job(&w.root, 5, "a", runs.clone())).ran().is_empty());
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}
