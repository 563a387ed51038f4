//! Crash atomicity with real processes (invariant 3, "Atomic").
//!
//! A child process (this test binary, re-run on one test with a marker
//! environment variable) runs a job of many in-process steps through the
//! engine and the store: chained values, some inline and some large enough
//! for blobs, workspace files and directories. The parent kills it with
//! SIGKILL (`Child::kill`) after a random delay, then checks what a user
//! relies on: the store opens, `verify` is clean, every latest trace's
//! outputs are stored and intact, and a re-run completes with exactly the
//! outputs a fresh run produces. Iterations: a few dozen by default (under
//! ~60 s of CI), `TROVE_SOAK=N` for N; `TROVE_CRASH_SEED` replays a seed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use trove::store::{OpenOptions, Store};
use trove::{Engine, InputFrom, Job, Op, RunOptions, TraceStore};

const CHILD_DIR: &str = "TROVE_CRASH_CHILD_DIR";
const CHILD_SALT: &str = "TROVE_CRASH_CHILD_SALT";
/// Set: the child commits in batches inside `commit_trace` (`set_batch`);
/// unset: with the store's defaults (background flushes from the scheduler).
const CHILD_BATCH: &str = "TROVE_CRASH_CHILD_BATCH";
const CHILD_TEST: &str = "crash::crash_child_job_runs_to_completion";
const N_STEPS: usize = 240;

/// The value step `i` computes from its upstream value.
fn step_value(salt: &str, i: usize, prev: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(format!("{salt}/{i}").as_bytes());
    let head = h.finalize().to_hex().to_string().into_bytes();
    if i % 10 == 3 {
        // Large: goes to a blob, not inline.
        head.iter().cycle().take(40_000).copied().collect()
    } else {
        head
    }
}

fn expected_values(salt: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(N_STEPS);
    for i in 0..N_STEPS {
        let prev = if i == 0 { Vec::new() } else { out[i - 1].clone() };
        out.push(step_value(salt, i, &prev));
    }
    out
}

fn crash_job(root: &Path, salt: &str, pause: Duration) -> Job {
    let mut b = Job::builder("crash");
    for i in 0..N_STEPS {
        let root = root.to_path_buf();
        let salt = salt.to_owned();
        let mut op = Op::new(format!("s{i:03}"))
            .output("value")
            .output_at("file", format!("out/s{i:03}.txt"))
            .config(serde_json::json!({ "salt": salt }))
            .code_version("1");
        if i % 40 == 7 {
            op = op.output_at("dir", format!("out/d{i:03}"));
        }
        if i > 0 {
            op = op.input("prev", InputFrom::output(format!("s{:03}", i - 1), "value"));
        }
        b = b.op(op.compute(move |ctx| {
            let prev = if i == 0 { Vec::new() } else { ctx.input_bytes("prev")?.to_vec() };
            let value = step_value(&salt, i, &prev);
            let write = |rel: &str, bytes: &[u8]| {
                let path = root.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            };
            write(&format!("out/s{i:03}.txt"), &value);
            if i % 40 == 7 {
                let _ = std::fs::remove_dir_all(root.join(format!("out/d{i:03}")));
                write(&format!("out/d{i:03}/a.txt"), &value[..8]);
                write(&format!("out/d{i:03}/sub/b.txt"), &value);
            }
            std::thread::sleep(pause);
            ctx.set_output_bytes("value", value)
        }));
    }
    b.build().unwrap()
}

fn open_store(dir: &Path) -> Store {
    Store::open(
        dir,
        &OpenOptions { command: "crash test".into(), ..Default::default() },
        &mut |_| {},
    )
    .unwrap()
}

/// Runs the crash job; `batch`: commits in batches of 16 steps inside
/// `commit_trace`, else with the store's defaults (background flushes).
fn run_job(root: &Path, salt: &str, pause: Duration, batch: bool) -> trove::RunReport {
    let store = open_store(&root.join(".trove"));
    if batch {
        store.set_batch(16, Duration::from_millis(20));
    }
    let io = store.io_manager(root);
    let opts = RunOptions { jobs: 2, ..RunOptions::default() };
    Engine::new(crash_job(root, salt, pause)).run(&io, &store, &opts, &mut |_| {}).unwrap()
}

/// Checks the workspace holds exactly what a fresh run with `salt` makes.
fn assert_outputs(root: &Path, salt: &str) {
    for (i, value) in expected_values(salt).iter().enumerate() {
        let got = std::fs::read(root.join(format!("out/s{i:03}.txt"))).unwrap();
        assert!(got == *value, "out/s{i:03}.txt differs from a fresh run");
        if i % 40 == 7 {
            let d = root.join(format!("out/d{i:03}"));
            assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), value[..8]);
            assert_eq!(std::fs::read(d.join("sub/b.txt")).unwrap(), *value);
        }
    }
}

/// In the parent: the store is consistent and every latest trace is intact.
fn assert_store_sound(store_dir: &Path, context: &str) {
    let store = open_store(store_dir);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{context}: verify found {:#?}", report.problems);
    for i in 0..N_STEPS {
        let Some(trace) = store.latest_trace(&format!("s{i:03}")).unwrap() else { continue };
        for out in &trace.outputs {
            let found = store.io_manager(store_dir).has_output(&trove::OutputContext {
                step: &trace.step,
                output: &out.name,
                version: out.version,
                path: None,
                run_id: "check",
            });
            let stored = found.unwrap().unwrap_or_else(|| {
                panic!(
                    "{context}: trace of {} names output {} that is not stored",
                    trace.step, out.name
                )
            });
            assert_eq!(stored.data_version, out.data_version, "{context}");
            let rec = store.lookup_output(&out.version).unwrap().unwrap();
            match &rec.location {
                trove::store::Location::Inline(bytes)
                | trove::store::Location::InlineFile { bytes, .. } => {
                    assert_eq!(trove::Digest::of_bytes(bytes), out.data_version.0, "{context}");
                }
                _ => {
                    let blob =
                        std::fs::read(store.blob_path(&out.data_version.0)).unwrap_or_else(|e| {
                            panic!("{context}: blob of {}.{} is missing: {e}", trace.step, out.name)
                        });
                    assert_eq!(trove::Digest::of_bytes(&blob), out.data_version.0, "{context}");
                }
            }
        }
    }
}

use trove::IoManager;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A private copy of this test binary: other builds sharing the target
/// directory may relink the original while the test runs.
fn child_exe(dir: &Path) -> PathBuf {
    let exe = dir.join("trove-crash-child");
    // `/proc/self/exe` is the running binary even if its path was replaced.
    if std::fs::copy("/proc/self/exe", &exe).is_err() {
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    }
    exe
}

#[allow(clippy::disallowed_methods)] // the child is this test binary, not a user command
fn spawn_child(exe: &Path, root: &Path, salt: &str, batch: bool) -> std::process::Child {
    let mut command = Command::new(exe);
    command
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, root)
        .env(CHILD_SALT, salt);
    if batch {
        command.env(CHILD_BATCH, "1");
    }
    command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// The child's entry point. Run directly (no marker variable), it runs the
/// same job in-process in a temp dir and checks its outputs.
#[test]
fn crash_child_job_runs_to_completion() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let salt = std::env::var(CHILD_SALT).unwrap_or_default();
        let batch = std::env::var_os(CHILD_BATCH).is_some();
        let report = run_job(Path::new(&dir), &salt, Duration::from_millis(1), batch);
        assert_eq!(report.status, trove::RunStatus::Succeeded);
        return;
    }
    for batch in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let report = run_job(tmp.path(), "x", Duration::ZERO, batch);
        assert_eq!(report.ran().len(), N_STEPS);
        assert_outputs(tmp.path(), "x");
        assert!(run_job(tmp.path(), "x", Duration::ZERO, batch).ran().is_empty());
    }
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_bad_store() {
    let iterations: usize =
        std::env::var("TROVE_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let seed: u64 =
        std::env::var("TROVE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7);
            nanos ^ (u64::from(std::process::id()) << 32) | 1
        });
    eprintln!(
        "crash test seed {seed} (TROVE_CRASH_SEED={seed} replays it), {iterations} iterations"
    );
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let exe = child_exe(tmp.path());
    let store_dir = root.join(".trove");
    let salts = ["a", "b", "c"];
    // Calibrate: how long does a whole child run take on this machine right
    // now? Kill delays are drawn below that, so kills land mid-run whether
    // the machine is idle or loaded.
    let calibration_root = tmp.path().join("calibration");
    std::fs::create_dir_all(&calibration_root).unwrap();
    let started = std::time::Instant::now();
    let calibration = spawn_child(&exe, &calibration_root, "a", true).wait().unwrap();
    assert!(calibration.success(), "the child failed on its own: {calibration}");
    let full_run_ms = (started.elapsed().as_millis() as u64).max(2);
    eprintln!("a whole child run takes {full_run_ms} ms here");
    let mut killed_mid_run = 0;
    let mut it = 0;
    // Count only kills that land mid-run, with a cap on attempts.
    while killed_mid_run < iterations && it < iterations * 3 {
        it += 1;
        // Mostly a salt never seen before (every step runs, writing blobs
        // and traces), sometimes a memoized one (hits restore outputs).
        let fresh = format!("n{it}");
        let salt = match rng.next() % 3 {
            0 => salts[(rng.next() % 3) as usize],
            _ => fresh.as_str(),
        };
        let delay = Duration::from_millis(rng.next() % full_run_ms);
        // Half the children commit in batches, half with the store's
        // defaults (background flushes), which a library user gets.
        let batch = rng.next().is_multiple_of(2);
        let mut child = spawn_child(&exe, &root, salt, batch);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        if !finished {
            killed_mid_run += 1;
        } else {
            assert!(status.success(), "iteration {it}: the child failed on its own: {status}");
        }
        let context = format!(
            "seed {seed} iteration {it} (salt {salt}, batch {batch}, kill after {delay:?})"
        );
        assert_store_sound(&store_dir, &context);
        // A re-run completes with exactly the fresh-run outputs.
        let rerun_salt = salts[(rng.next() % 3) as usize];
        let report = run_job(&root, rerun_salt, Duration::ZERO, !batch);
        assert_eq!(report.status, trove::RunStatus::Succeeded, "{context}");
        assert_outputs(&root, rerun_salt);
    }
    eprintln!("{killed_mid_run} of {it} kills landed mid-run");
    assert!(killed_mid_run * 2 >= iterations, "only {killed_mid_run} of {it} kills landed mid-run");
}

#[test]
fn two_processes_writing_at_once_take_turns_and_both_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = child_exe(tmp.path());
    let root = &tmp.path().join("ws");
    std::fs::create_dir_all(root).unwrap();
    let mut a = spawn_child(&exe, root, "a", true);
    let mut b = spawn_child(&exe, root, "b", false);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_store_sound(&root.join(".trove"), "after two writers");
    // Both runs' traces are stored: re-running either salt is all hits.
    for salt in ["a", "b"] {
        let report = run_job(root, salt, Duration::ZERO, false);
        assert!(report.ran().is_empty(), "salt {salt} re-ran {:?}", report.ran());
        assert_outputs(root, salt);
    }
}

#[test]
fn a_reader_process_follows_a_running_writer_without_waiting_or_harm() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = child_exe(tmp.path());
    let root = tmp.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let store_dir = root.join(".trove");
    let mut child = spawn_child(&exe, &root, "r", false);
    // Wait until the writer has created the store, then read while it runs.
    while !store_dir.join("trove.redb").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the writer exited early");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ro = OpenOptions { read_only: true, ..OpenOptions::default() };
    let mut seen_traces = 0;
    let mut reads = 0;
    while child.try_wait().unwrap().is_none() {
        let reader =
            Store::open(&store_dir, &ro, &mut |h| panic!("a reader waited for {h}")).unwrap();
        let latest = (0..N_STEPS)
            .filter(|i| reader.latest_trace(&format!("s{i:03}")).unwrap().is_some())
            .count();
        assert!(latest >= seen_traces, "a reader saw traces disappear");
        seen_traces = latest;
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    assert!(reads > 1, "the writer finished before a read");
    assert_store_sound(&store_dir, "after a reader followed the writer");
    let reader = Store::open(&store_dir, &ro, &mut |_| {}).unwrap();
    let all = (0..N_STEPS)
        .filter(|i| reader.latest_trace(&format!("s{i:03}")).unwrap().is_some())
        .count();
    assert_eq!(all, N_STEPS);
}
