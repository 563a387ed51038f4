//! Store micro benchmarks (`cargo bench --bench store`): prints the markdown
//! table of `store/BENCHMARKS-store.md`, each figure as a ratio against a
//! baseline measured in the same run.
//!
//! 1. existence checks of 100k output versions in one read transaction,
//!    against `has_output` called per output (what the engine does; a
//!    writer reuses its read transaction between commits) and an in-memory
//!    `HashMap` floor;
//! 2. committing 100k traces in batches of 1,000 and 10,000 against one
//!    durable transaction per trace (measured on 10k, reported per trace);
//! 3. ingesting a 1 GiB file (copy, hash, fsync, rename) against `cp` of the
//!    same file, and `cp` + fsync;
//! 4. a no-op pass over 10k unchanged source files with the stat cache
//!    against re-hashing them.
//!
//! `TROVE_BENCH_INGEST_MB` (default 1024) and `TROVE_BENCH_N` (default
//! 100000) shrink the workloads for a quick look. Timings are medians of 3.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use trove::store::{OpenOptions, Store};
use trove::{
    CodeComponent, DataVersion, Digest, IoManager, OutputContext, OutputValue, OutputVersion,
    StepLog, Trace, TraceOutput, TraceStore, VersionComponents,
};

fn open(dir: &Path) -> Store {
    Store::open(dir, &OpenOptions::default(), &mut |_| {}).expect("open store")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// Writes back all dirty pages, so a measurement does not pay for the
/// writeback of an earlier one (ext4 ordered mode flushes them on fsync).
#[allow(clippy::disallowed_methods)] // `sync` is the tool for it
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn version(i: usize) -> OutputVersion {
    OutputVersion(Digest::of_bytes(format!("output {i}").as_bytes()))
}

fn trace(i: usize) -> Trace {
    Trace {
        step: format!("step{i}").into(),
        run_id: "bench".into(),
        op_version: Digest::of_bytes(format!("op {i}").as_bytes()),
        unversioned: false,
        components: VersionComponents {
            scheme: 1,
            code: CodeComponent { explicit: Some("1".into()), ..CodeComponent::default() },
            config: "{}".into(),
            resources: vec![],
            env: vec![],
            inputs: vec![],
            outputs: vec![("out".into(), None)],
        },
        outputs: vec![TraceOutput {
            name: "out".into(),
            version: version(i),
            data_version: DataVersion::of_bytes(format!("value {i}").as_bytes()),
            size: 8,
        }],
        duration_ns: 1000,
    }
}

/// Stores and traces steps `range` (tiny inline values).
fn commit_steps(store: &Store, range: std::ops::Range<usize>) {
    let io = store.io_manager(Path::new("."));
    for i in range {
        let step = format!("step{i}");
        let ctx = OutputContext {
            step: &step,
            output: "out",
            version: version(i),
            path: None,
            run_id: "bench",
        };
        io.handle_output(&ctx, OutputValue::Bytes(format!("value {i}").into_bytes()))
            .expect("store output");
        store.commit_trace(trace(i), StepLog::default()).expect("commit trace");
    }
    store.flush().expect("flush");
}

struct Row {
    what: String,
    trove: String,
    baseline: String,
    ratio: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let n = env_usize("TROVE_BENCH_N", 100_000);
    let n_single = (n / 10).max(1);
    let ingest_mb = env_usize("TROVE_BENCH_INGEST_MB", 1024);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();

    // 2. Commits: batches against one transaction per trace.
    let single = median(
        (0..3)
            .map(|r| {
                let store = open(&tmp.path().join(format!("single{r}")));
                store.set_batch(1, Duration::ZERO);
                time(|| commit_steps(&store, 0..n_single)).0
            })
            .collect(),
    );
    let per_single = single.as_secs_f64() / n_single as f64;
    for batch in [1000, 10_000] {
        let batched = median(
            (0..3)
                .map(|r| {
                    let store = open(&tmp.path().join(format!("batched{batch}-{r}")));
                    store.set_batch(batch, Duration::from_secs(3600));
                    time(|| commit_steps(&store, 0..n)).0
                })
                .collect(),
        );
        let per_batched = batched.as_secs_f64() / n as f64;
        rows.push(Row {
            what: format!(
                "commit {n} traces in batches of {batch} (vs one durable txn per trace, {n_single} measured)"
            ),
            trove: format!("{} ({:.1} µs/trace)", ms(batched), per_batched * 1e6),
            baseline: format!("{:.0} µs/trace ({} for {n_single})", per_single * 1e6, ms(single)),
            ratio: format!("{:.0}x faster", per_single / per_batched),
        });
    }

    // 1. Existence checks, on the batched store.
    let store = open(&tmp.path().join("batched1000-0"));
    let versions: Vec<OutputVersion> = (0..n).map(version).collect();
    let one_txn = median(
        (0..3)
            .map(|_| {
                let (d, found) = time(|| store.lookup_outputs(&versions).expect("lookup"));
                assert!(found.iter().all(Option::is_some));
                d
            })
            .collect(),
    );
    let io = store.io_manager(Path::new("."));
    let per_call = median(
        (0..3)
            .map(|_| {
                time(|| {
                    for (i, v) in versions.iter().enumerate() {
                        let step = format!("step{i}");
                        let ctx = OutputContext {
                            step: &step,
                            output: "out",
                            version: *v,
                            path: None,
                            run_id: "bench",
                        };
                        assert!(io.has_output(&ctx).expect("has_output").is_some());
                    }
                })
                .0
            })
            .collect(),
    );
    let map: HashMap<OutputVersion, usize> =
        versions.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let in_memory = median(
        (0..3)
            .map(|_| {
                time(|| assert_eq!(versions.iter().filter(|v| map.contains_key(v)).count(), n)).0
            })
            .collect(),
    );
    rows.push(Row {
        what: format!("{n} existence checks, one read transaction (vs `has_output` per call)"),
        trove: format!("{} ({:.2} µs each)", ms(one_txn), one_txn.as_secs_f64() * 1e6 / n as f64),
        baseline: ms(per_call),
        ratio: format!("{:.1}x faster", per_call.as_secs_f64() / one_txn.as_secs_f64()),
    });
    rows.push(Row {
        what: format!("{n} existence checks, one read transaction (vs an in-memory HashMap)"),
        trove: ms(one_txn),
        baseline: ms(in_memory),
        ratio: format!("{:.1}x slower", one_txn.as_secs_f64() / in_memory.as_secs_f64()),
    });
    drop(io);
    drop(store);

    // 4. No-op pass over 10k unchanged source files.
    let ws = tmp.path().join("ws");
    let n_files = 10_000;
    for i in 0..n_files {
        let p = ws.join(format!("src/{}/{i}.txt", i % 100));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, format!("source file {i}\n").repeat(64)).expect("write source");
        let f = std::fs::File::options().write(true).open(&p).expect("open source");
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60)).expect("mtime");
    }
    let rels: Vec<String> = (0..n_files).map(|i| format!("src/{}/{i}.txt", i % 100)).collect();
    {
        let store = open(&ws.join(".trove"));
        for r in &rels {
            store.hash_path(&ws, r).expect("hash");
        }
    }
    let store = open(&ws.join(".trove"));
    let cached = median(
        (0..3)
            .map(|_| {
                time(|| {
                    for r in &rels {
                        store.hash_path(&ws, r).expect("hash");
                    }
                })
                .0
            })
            .collect(),
    );
    assert_eq!(store.stats().files_hashed, 0, "the stat cache must serve every unchanged file");
    let rehash = median(
        (0..3)
            .map(|_| {
                time(|| {
                    for r in &rels {
                        let bytes = std::fs::read(ws.join(r)).expect("read");
                        std::hint::black_box(blake3::hash(&bytes));
                    }
                })
                .0
            })
            .collect(),
    );
    rows.push(Row {
        what: format!(
            "no-op pass over {n_files} unchanged 1.2 KiB sources, stat cache (vs re-hashing)"
        ),
        trove: ms(cached),
        baseline: ms(rehash),
        ratio: format!("{:.1}x faster", rehash.as_secs_f64() / cached.as_secs_f64()),
    });
    drop(store);

    // 3. Ingest a large file against cp.
    let big = ws.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).expect("create big"));
        let mut block = vec![0u8; 1 << 20];
        for i in 0..ingest_mb {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
            }
            f.write_all(&block).expect("write big");
        }
        f.flush().expect("flush big");
    }
    settle();
    let cp_dst = tmp.path().join("cp.bin");
    let mut cp_times = Vec::new();
    let mut cp_sync_times = Vec::new();
    let mut ingest_times = Vec::new();
    for r in 0..3 {
        let _ = std::fs::remove_file(&cp_dst);
        settle();
        #[allow(clippy::disallowed_methods)] // the baseline is the real `cp`
        let (d, status) = time(|| std::process::Command::new("cp").arg(&big).arg(&cp_dst).status());
        assert!(status.expect("run cp").success());
        cp_times.push(d);
        let _ = std::fs::remove_file(&cp_dst);
        settle();
        #[allow(clippy::disallowed_methods)]
        let (d, _) = time(|| {
            let ok = std::process::Command::new("cp").arg(&big).arg(&cp_dst).status();
            std::fs::File::open(&cp_dst).and_then(|f| f.sync_all()).expect("sync copy");
            ok
        });
        cp_sync_times.push(d);
        let _ = std::fs::remove_file(&cp_dst);
        let store = open(&tmp.path().join(format!("ingest{r}")));
        settle();
        let io = store.io_manager(&ws);
        let ctx = OutputContext {
            step: "big",
            output: "file",
            version: version(r),
            path: Some("big.bin"),
            run_id: "bench",
        };
        let (d, stored) = time(|| io.handle_output(&ctx, OutputValue::File("big.bin".into())));
        assert_eq!(stored.expect("ingest").size, (ingest_mb as u64) << 20);
        ingest_times.push(d);
    }
    let _ = std::fs::remove_file(&cp_dst);
    let (cp, cp_sync, ingest) = (median(cp_times), median(cp_sync_times), median(ingest_times));
    rows.push(Row {
        what: format!("ingest a {ingest_mb} MiB file: copy + blake3 + fsync + rename (vs `cp`)"),
        trove: ms(ingest),
        baseline: ms(cp),
        ratio: format!("{:.2}x", ingest.as_secs_f64() / cp.as_secs_f64()),
    });
    rows.push(Row {
        what: format!("ingest a {ingest_mb} MiB file (vs `cp` + fsync of the copy)"),
        trove: ms(ingest),
        baseline: ms(cp_sync),
        ratio: format!("{:.2}x", ingest.as_secs_f64() / cp_sync.as_secs_f64()),
    });

    println!("| measurement | trove-store | baseline (same run) | ratio |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.trove, r.baseline, r.ratio);
    }
}
