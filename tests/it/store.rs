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
