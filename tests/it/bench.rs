//! The rebuild benchmark's step-count checks on small N, for every shape
//! and scenario: `trove bench` fails a run whose count of executed steps
//! differs from the answer key, so a memoization bug (a step that re-runs
//! when nothing it reads changed, or one that does not when it must) fails
//! here even though no timing is ever asserted.
//!
//! `process` workloads run the built `trove` binary (`trove run --json`)
//! and count both the report and the commands that actually ran; `inproc`
//! workloads drive the engine over the real store through the library.

use std::path::PathBuf;

use trove_bench::{BenchOptions, BenchReport, InprocStore, Kind, Scenario, Shape};

/// The `trove` binary built with this test (trove-cli's bin).
fn trove_exe() -> PathBuf {
    if let Some(exe) = option_env!("CARGO_BIN_EXE_trove") {
        return PathBuf::from(exe);
    }
    // target/debug/deps/it-HASH -> target/debug/trove
    let exe = std::env::current_exe().unwrap();
    let candidate = exe.parent().unwrap().parent().unwrap().join("trove");
    assert!(
        candidate.is_file(),
        "the `trove` binary is not built at {}: run `cargo build -p trove-cli` (or `cargo test --workspace`)",
        candidate.display()
    );
    candidate
}

fn options(kind: Kind, shape: Shape, n: usize) -> BenchOptions {
    BenchOptions {
        shapes: vec![shape],
        sizes: vec![n],
        kind,
        scenarios: Scenario::ALL.to_vec(),
        repeat: 1,
        warmup: 1,
        trove_exe: trove_exe(),
        jobs: 2,
        progress: false,
        ..BenchOptions::default()
    }
}

fn check(report: &BenchReport) {
    assert!(report.ok, "step counts are wrong:\n{}", report.to_markdown());
    let w = &report.workloads[0];
    assert_eq!(w.scenarios.len(), Scenario::ALL.len());
    for s in &w.scenarios {
        let trove = s.trove.as_ref().unwrap();
        // warm-up and timed run both checked
        assert_eq!(trove.ran, [s.expected, s.expected], "{} {}", w.shape, s.scenario);
    }
}

#[test]
fn process_step_counts_match_the_answer_key_for_every_shape_and_scenario() {
    for (shape, n) in
        [(Shape::Chain, 12), (Shape::Wide, 10), (Shape::Layered, 20), (Shape::Diamond, 11)]
    {
        check(&trove_bench::run(&options(Kind::Process, shape, n)).unwrap());
    }
}

#[test]
fn inproc_step_counts_match_the_answer_key_on_the_real_store() {
    for shape in Shape::ALL {
        let opts =
            BenchOptions { inproc_store: InprocStore::Disk, ..options(Kind::Inproc, shape, 200) };
        let report = trove_bench::run(&opts).unwrap();
        check(&report);
        let noop = report.workloads[0].scenarios.iter().find(|s| s.scenario == "noop").unwrap();
        assert!(noop.floor.is_some(), "the no-op floor is measured in the same run");
    }
}

#[test]
fn a_wrong_count_is_a_failure_not_a_figure() {
    // `true` as the trove binary: it runs nothing and prints no report.
    let opts = BenchOptions {
        scenarios: vec![Scenario::Noop],
        trove_exe: PathBuf::from("true"),
        ..options(Kind::Process, Shape::Chain, 10)
    };
    let report = trove_bench::run(&opts).unwrap();
    assert!(!report.ok);
    let md = report.to_markdown();
    assert!(md.contains("FAIL"), "{md}");
    assert!(!report.failures().is_empty());
}
