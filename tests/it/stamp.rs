//! The up-to-date stamp of `trove run` (`cli/src/uptodate.rs`): a no-op
//! run is answered from file stats, and every kind of change the full path
//! would see — a source, a code file, the pipeline text, a declared
//! variable, a `version_cmd`, a deleted or edited output, records removed by
//! `gc` — makes the run take the full path and do exactly what a
//! `--full-check` run does.

use crate::support::{Outcome, TestWorkspace};

/// `tool` (a resource versioned by a command) is required by `compile`;
/// `greet` declares `GREETING`; `compile` names a code file.
const PIPELINE: &str = r#"
[job]
name = "stamped"

[resources.tool]
version_cmd = "cat tool-version.txt"

[ops.compile]
cmd = "sh build.sh {in.src} > {out.obj}"
in = { src = "src/main.txt" }
out = { obj = "build/main.o" }
code = ["build.sh"]
resources = ["tool"]

[ops.link]
cmd = "cat {in.obj} {in.lib} > {out.bin}"
in = { obj = "build/main.o", lib = "src/lib.txt" }
out = { bin = "build/app" }

[ops.greet]
cmd = "echo \"$GREETING\" > {out.msg}"
out = { msg = "build/greeting.txt" }
env = ["GREETING"]
"#;

fn workspace() -> TestWorkspace {
    TestWorkspace::new()
        .file("trove.toml", PIPELINE)
        .file("tool-version.txt", "tool 1.0\n")
        .file("build.sh", "tr a-z A-Z < \"$1\"\n")
        .file("src/main.txt", "main\n")
        .file("src/lib.txt", "lib\n")
}

/// `trove run --json` with `GREETING` set.
fn run(ws: &TestWorkspace, greeting: &str, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(extra);
    let outcome =
        Outcome::of(ws.command(args).env("GREETING", greeting).output().expect("run trove"));
    outcome.ok();
    outcome
}

fn stamped(out: &Outcome) -> bool {
    out.json()["stamp"].as_bool() == Some(true)
}

/// Runs until the stamp answers (the run after a change re-hashes what it
/// wrote; the stamp is written by the first complete run after it).
#[track_caller]
fn settle(ws: &TestWorkspace, greeting: &str) {
    let again = run(ws, greeting, &[]);
    assert_eq!(again.outcomes(), "compile:memoized link:memoized greet:memoized");
    let answered = run(ws, greeting, &[]);
    assert!(stamped(&answered), "{}", answered.stdout);
    assert_eq!(answered.outcomes(), "compile:memoized link:memoized greet:memoized");
}

#[test]
fn a_no_op_run_is_answered_by_the_stamp_and_recorded_like_any_run() {
    let ws = workspace();
    let cold = run(&ws, "hi", &[]);
    assert!(!stamped(&cold));
    assert_eq!(cold.outcomes(), "compile:ran link:ran greet:ran");
    settle(&ws, "hi");
    let answered = run(&ws, "hi", &[]);
    assert!(stamped(&answered));
    assert_eq!(answered.json()["job"], "stamped");
    assert_eq!(answered.json()["counts"]["memoized"], 3);
    // `trove log` shows it like any other run.
    let log = ws.run(["log", "--json"]);
    log.ok();
    let runs = log.json()["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["counts"]["memoized"], 3);
    // Human output: one line, no step listed.
    let human = ws.command(["run"]).env("GREETING", "hi").output().expect("run trove");
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(stderr.contains("0 ran, 3 memoized") && stderr.contains("(up to date)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // --full-check takes the full path and agrees.
    let full = run(&ws, "hi", &["--full-check"]);
    assert!(!stamped(&full));
    assert_eq!(full.outcomes(), "compile:memoized link:memoized greet:memoized");
}

#[test]
fn every_kind_of_change_takes_the_full_path() {
    let ws = workspace();
    run(&ws, "hi", &[]);
    settle(&ws, "hi");

    // A source, same size, different bytes.
    ws.write("src/lib.txt", "LIB\n");
    let out = run(&ws, "hi", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.outcomes(), "compile:memoized link:ran greet:memoized");
    assert_eq!(ws.read("build/app"), "MAIN\nLIB\n");
    settle(&ws, "hi");

    // A code file.
    ws.write("build.sh", "tr a-z A-Z < \"$1\"; echo v2\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "compile:ran link:ran greet:memoized");
    settle(&ws, "hi");

    // What a resource's version_cmd prints.
    ws.write("tool-version.txt", "tool 2.0\n");
    let out = run(&ws, "hi", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.outcomes(), "compile:ran link:cut_off greet:memoized");
    settle(&ws, "hi");

    // A declared environment variable.
    let out = run(&ws, "hello", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:ran");
    assert_eq!(ws.read("build/greeting.txt"), "hello\n");
    settle(&ws, "hello");

    // The pipeline text (a comment changes no version: all memoized, but
    // the full path decides it).
    ws.edit("trove.toml", "[job]", "# a comment\n[job]");
    let out = run(&ws, "hello", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
    settle(&ws, "hello");

    // A deleted output is restored; an edited one too.
    std::fs::remove_file(ws.root().join("build/app")).expect("remove");
    let out = run(&ws, "hello", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.json()["counts"]["restored"], 1);
    assert_eq!(ws.read("build/app"), "MAIN\nv2\nLIB\n");
    settle(&ws, "hello");
    ws.write("build/greeting.txt", "tampered\n");
    let out = run(&ws, "hello", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.json()["counts"]["restored"], 1);
    assert_eq!(ws.read("build/greeting.txt"), "hello\n");
    settle(&ws, "hello");

    // gc removing records drops every stamp.
    ws.run(["gc", "--keep-runs", "1"]).ok();
    let out = run(&ws, "hello", &[]);
    assert!(!stamped(&out));
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
}

#[test]
fn partial_forced_and_failed_runs_are_never_stamped() {
    let ws = workspace();
    run(&ws, "hi", &[]);
    settle(&ws, "hi");
    // A forced run re-runs `compile`; the stamp it leaves must not claim
    // anything the next plain run would not find.
    let forced = run(&ws, "hi", &["--force", "compile"]);
    assert!(!stamped(&forced));
    assert!(forced.outcomes().contains("compile:ran"));
    let next = run(&ws, "hi", &[]);
    assert!(!stamped(&next), "a forced run leaves no stamp");
    settle(&ws, "hi");
    // A selection runs part of the job: no stamp either.
    let part = run(&ws, "hi", &["greet"]);
    assert!(!stamped(&part));
    let next = run(&ws, "hi", &[]);
    assert!(!stamped(&next), "a partial run leaves no stamp");
    settle(&ws, "hi");
    // A failed run removes the stamp; fixing the failure runs what failed.
    ws.write("build.sh", "exit 3\n");
    let failed = ws.command(["run", "--json"]).env("GREETING", "hi").output().expect("run");
    assert_ne!(failed.status.code(), Some(0));
    ws.write("build.sh", "tr a-z A-Z < \"$1\"\n");
    let fixed = run(&ws, "hi", &[]);
    assert!(!stamped(&fixed));
    assert_eq!(fixed.outcomes(), "compile:memoized link:memoized greet:memoized");
}
