//! Integration tests of the `trove` binary: the five-minute tour (cold run,
//! memoized run, config edits, early cutoff, lineage mode, `--no-memo`,
//! `--force`, step selection), restored outputs, a relocated workspace,
//! concurrent runs, a SIGKILL mid-run, and every pipeline error as a
//! snapshot (paths, timings and run ids redacted).

use crate::support::{Outcome, TestWorkspace, insta_settings, tags};

/// A chain `prepare → clean → count → report` and an independent `other`.
const PIPELINE: &str = r#"
[job]
name = "tour"

[ops.prepare]
cmd = "cp {in.raw} {out.copy}"
in = { raw = "data/raw.csv" }
out = { copy = "build/raw.csv" }

[ops.clean]
cmd = "awk -F, -v min={config.min} '$2 >= min' {in.raw} > {out.clean}"
in = { raw = "build/raw.csv" }
out = { clean = "build/clean.csv" }
config = { min = 10 }

[ops.count]
cmd = "wc -l < {in.clean} | tr -d ' ' > {out.count}"
in = { clean = "build/clean.csv" }
out = { count = "build/count.txt" }

[ops.report]
cmd = "echo rows: $(cat {in.count}) > {out.report}"
in = { count = "build/count.txt" }
out = { report = "build/report.txt" }

[ops.other]
cmd = "echo independent > {out.o}"
out = { o = "build/other.txt" }
"#;

const RAW: &str = "a,5\nb,11\nc,15\nd,20\n";

fn tour() -> TestWorkspace {
    TestWorkspace::new().file("trove.toml", PIPELINE).file("data/raw.csv", RAW)
}

fn run_json(ws: &TestWorkspace, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(extra);
    ws.run(args)
}

#[track_caller]
fn assert_snapshot(ws: &TestWorkspace, name: &str, text: &str) {
    insta_settings(ws.root()).bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn cold_run_runs_every_step_and_the_second_run_is_memoized() {
    let ws = tour();
    let first = run_json(&ws, &[]);
    first.ok();
    assert_eq!(first.json()["schema"], 1);
    assert_eq!(first.outcomes(), "prepare:ran clean:ran count:ran report:ran other:ran");
    assert_eq!(ws.read("build/report.txt"), "rows: 3\n");
    let second = run_json(&ws, &[]);
    second.ok();
    assert_eq!(
        second.outcomes(),
        "prepare:memoized clean:memoized count:memoized report:memoized other:memoized"
    );
}

#[test]
fn the_human_summary_counts_what_happened() {
    let ws = tour();
    let first = ws.run(["run"]);
    first.ok();
    assert!(first.stderr.contains("5 ran, 0 memoized, 0 cut off, 0 failed"), "{}", first.stderr);
    let second = ws.run(["run"]);
    assert!(second.stderr.contains("0 ran, 5 memoized"), "{}", second.stderr);
    assert_snapshot(&ws, "memoized_run_stderr", &second.stderr);
}

#[test]
fn a_config_edit_reruns_only_the_edited_step_and_its_downstream() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    ws.edit("trove.toml", "config = { min = 10 }", "config = { min = 12 }");
    let plan = ws.run(["plan"]);
    plan.ok();
    assert!(plan.stdout.contains("clean    run: config.min 10 → 12"), "{}", plan.stdout);
    assert_snapshot(&ws, "plan_after_config_edit", &plan.stdout);
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(run.outcomes(), "prepare:memoized clean:ran count:ran report:ran other:memoized");
    assert_eq!(ws.read("build/report.txt"), "rows: 2\n");
}

#[test]
fn early_cutoff_stops_invalidation_at_identical_bytes() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    // A row below the minimum: `clean` re-runs and writes the same bytes.
    ws.write("data/raw.csv", &format!("{RAW}e,1\n"));
    let plan = ws.run(["plan", "--json"]);
    plan.ok();
    let steps = plan.json()["steps"].clone();
    assert_eq!(steps[0]["action"], "run");
    assert_eq!(steps[0]["reasons"][0]["text"], "input raw (data/raw.csv) changed");
    // The structured reason too, every field whole.
    assert_eq!(steps[0]["reasons"][0]["detail"]["InputChanged"]["path"], "data/raw.csv");
    assert_eq!(steps[1]["action"], "waiting");
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(run.outcomes(), "prepare:ran clean:ran count:cut_off report:cut_off other:memoized");
}

#[test]
fn lineage_mode_reruns_everything_downstream_of_a_rerun() {
    let ws = tour();
    ws.edit("trove.toml", "name = \"tour\"", "name = \"tour\"\nearly_cutoff = false");
    run_json(&ws, &[]).ok();
    ws.write("data/raw.csv", &format!("{RAW}e,1\n"));
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(run.outcomes(), "prepare:ran clean:ran count:ran report:ran other:memoized");
}

#[test]
fn no_memo_runs_every_step_and_tags_the_run() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    let run = run_json(&ws, &["--no-memo"]);
    run.ok();
    assert_eq!(run.outcomes(), "prepare:ran clean:ran count:ran report:ran other:ran");
    let log = ws.run(["log", "--json", "-n", "1"]);
    log.ok();
    let last = &log.json()["runs"][0];
    assert_eq!(tags(last).get("memoized").map(String::as_str), Some("false"));
    assert_eq!(last["memoized"], false);
}

#[test]
fn force_reruns_the_named_step_and_cutoff_spares_its_downstream() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    let run = run_json(&ws, &["--force", "clean"]);
    run.ok();
    assert_eq!(
        run.outcomes(),
        "prepare:memoized clean:ran count:cut_off report:cut_off other:memoized"
    );
    let unknown = ws.run(["run", "--force", "claen"]);
    unknown.code(2);
    assert!(
        unknown.stderr.contains("unknown step `claen`: did you mean `clean`?"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn selecting_steps_runs_them_and_their_upstream_only() {
    let ws = tour();
    let run = run_json(&ws, &["count"]);
    run.ok();
    assert_eq!(run.outcomes(), "prepare:ran clean:ran count:ran");
    assert!(!ws.exists("build/report.txt"));
    assert!(!ws.exists("build/other.txt"));
    let rest = run_json(&ws, &[]);
    assert_eq!(
        rest.outcomes(),
        "prepare:memoized clean:memoized count:memoized report:ran other:ran"
    );
}

#[test]
fn deleted_outputs_are_restored_from_the_store() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    let before = ws.read("build/clean.csv");
    std::fs::remove_file(ws.root().join("build/clean.csv")).unwrap();
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(
        run.outcomes(),
        "prepare:memoized clean:memoized count:memoized report:memoized other:memoized"
    );
    assert_eq!(run.json()["counts"]["restored"], 1);
    assert_eq!(ws.read("build/clean.csv"), before);
}

#[test]
fn moving_the_workspace_changes_no_version() {
    let mut ws = tour();
    run_json(&ws, &[]).ok();
    ws.move_to("moved elsewhere");
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(
        run.outcomes(),
        "prepare:memoized clean:memoized count:memoized report:memoized other:memoized"
    );
}

#[test]
fn renaming_an_output_or_repointing_an_input_reruns_the_op() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    ws.edit("trove.toml", "build/other.txt", "build/other2.txt");
    let run = run_json(&ws, &[]);
    assert_eq!(
        run.outcomes(),
        "prepare:memoized clean:memoized count:memoized report:memoized other:ran"
    );
    ws.write("data/raw2.csv", RAW);
    ws.edit("trove.toml", "raw = \"data/raw.csv\"", "raw = \"data/raw2.csv\"");
    let plan = ws.run(["plan"]);
    assert!(plan.stdout.contains("input raw now reads source data/raw2.csv"), "{}", plan.stdout);
    let run = run_json(&ws, &[]);
    // Same bytes under a new path: `prepare` re-runs, the rest is cut off.
    assert_eq!(
        run.outcomes(),
        "prepare:ran clean:cut_off count:cut_off report:cut_off other:memoized"
    );
}

#[test]
fn code_files_resources_and_env_are_part_of_the_version() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[resources.tool]
version = "1.0"
config = { level = 3 }

[ops.a]
cmd = "sh script.sh {resource.tool.level} > {out.o}"
out = { o = "out.txt" }
code = ["script.sh"]
resources = ["tool"]
env = ["TROVE_IT_MODE"]
"#,
        )
        .file("script.sh", "echo level $1\n");
    run_json(&ws, &[]).ok();
    ws.write("script.sh", "echo LEVEL $1\n");
    let plan = ws.run(["plan"]);
    assert!(plan.stdout.contains("run: code: script.sh changed"), "{}", plan.stdout);
    run_json(&ws, &[]).ok();
    ws.edit("trove.toml", "version = \"1.0\"", "version = \"1.1\"");
    let plan = ws.run(["plan"]);
    assert!(plan.stdout.contains("resource tool: version changed (1.0 → 1.1)"), "{}", plan.stdout);
    run_json(&ws, &[]).ok();
    let plan = ws.run(["plan"]).stdout;
    assert!(plan.contains("a  memoized"), "{plan}");
    let with_env = ws.command(["plan"]).env("TROVE_IT_MODE", "fast").output().unwrap();
    let text = String::from_utf8_lossy(&with_env.stdout);
    assert!(text.contains("env TROVE_IT_MODE: (unset) → fast"), "{text}");
}

#[test]
fn why_explains_the_upstream_chain() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    ws.edit("trove.toml", "config = { min = 10 }", "config = { min = 12 }");
    let why = ws.run(["why", "report"]);
    why.ok();
    assert_snapshot(&ws, "why_report_after_config_edit", &why.stdout);
    let json = ws.run(["why", "report", "--json"]).json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["action"], "waiting");
    assert_eq!(json["upstream"][1]["step"], "clean");
}

#[test]
fn plan_on_a_fresh_workspace_says_no_previous_run() {
    let ws = tour();
    let plan = ws.run(["plan"]);
    plan.ok();
    assert_snapshot(&ws, "plan_fresh", &plan.stdout);
}

#[test]
fn a_failing_command_shows_its_exit_code_and_stderr_tail() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.ok]
cmd = "echo fine > {out.o}"
out = { o = "ok.txt" }

[ops.bad]
cmd = "echo working; echo 'something broke' >&2; exit 3"
in = { x = "ok.txt" }
out = { o = "bad.txt" }

[ops.after]
cmd = "cat {in.x} > {out.o}"
in = { x = "bad.txt" }
out = { o = "after.txt" }
"#,
    );
    let run = ws.run(["run"]);
    run.code(1);
    assert_snapshot(&ws, "failing_command_stderr", &run.stderr);
    let json = ws.run(["run", "--json"]);
    json.code(1);
    assert_eq!(json.outcomes(), "ok:memoized bad:failed after:skipped");
    assert_eq!(json.json()["steps"][1]["exit_code"], 3);
    let log = ws.run(["log", "--step", "bad"]);
    log.ok();
    assert!(log.stdout.contains("working\n"), "{}", log.stdout);
    assert!(log.stdout.contains("something broke\n"), "{}", log.stdout);
    // A step the pipeline does not have is named as unknown; one that has
    // not run yet, as such.
    let typo = ws.run(["log", "--step", "badd"]);
    typo.code(2);
    assert!(typo.stderr.contains("unknown step `badd`: did you mean `bad`?"), "{}", typo.stderr);
    let never = ws.run(["log", "--step", "after"]);
    never.code(2);
    assert!(never.stderr.contains("step `after` has no recorded output yet"), "{}", never.stderr);
    ws.run(["log", "-n", "0"]).code(2);
}

#[test]
fn a_declared_output_that_is_not_written_fails_the_step() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.lazy]
cmd = "true"
out = { clean = "build/clean.csv" }
"#,
    );
    let run = ws.run(["run"]);
    run.code(1);
    assert!(
        run.stderr.contains("declared output build/clean.csv was not written"),
        "{}",
        run.stderr
    );
    assert!(ws.exists("build"), "parent directories of outputs are created");
}

/// A stale output of a step that runs because its inputs' data changed is
/// emptied in place before its command runs (a rewrite is cheaper than a
/// new file): the command never sees the old bytes, one that does not write
/// it still fails, writing nothing through `> out` counts, and a link is
/// replaced, never written through.
#[test]
fn a_stale_output_is_emptied_before_its_command_and_must_be_written_again() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.append]
cmd = "cat {out.o} > seen.txt; grep -q skip {in.n} || cat {in.n} >> {out.o}"
in = { n = "n.txt" }
out = { o = "log.txt" }

[ops.empty]
cmd = ": > {out.o}"
in = { n = "n.txt" }
out = { o = "empty.txt" }

[ops.linked]
cmd = "cat {in.n} > {out.o}"
in = { n = "n.txt" }
out = { o = "linked.txt" }
"#,
        )
        .file("n.txt", "1\n")
        .file("target.txt", "precious\n");
    run_json(&ws, &[]).ok();
    assert_eq!(ws.read("log.txt"), "1\n");
    let inode = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(ws.root().join(name)).unwrap().ino()
    };
    let log_inode = inode("log.txt");
    // Stale files in place of two outputs: a symlink to a file that must
    // not be written through, and a hard link shared with another file.
    std::fs::remove_file(ws.root().join("linked.txt")).unwrap();
    std::os::unix::fs::symlink(ws.root().join("target.txt"), ws.root().join("linked.txt")).unwrap();
    std::fs::hard_link(ws.root().join("empty.txt"), ws.root().join("other-name.txt")).unwrap();
    std::fs::write(ws.root().join("other-name.txt"), "shared\n").unwrap();
    ws.write("n.txt", "2\n");
    let second = run_json(&ws, &[]);
    second.ok();
    assert_eq!(second.outcomes(), "append:ran empty:ran linked:ran");
    assert_eq!(ws.read("seen.txt"), "", "the command saw an emptied output");
    assert_eq!(ws.read("log.txt"), "2\n", "an appending command starts from nothing");
    assert_eq!(inode("log.txt"), log_inode, "rewritten in place, not created anew");
    assert_eq!(ws.read("empty.txt"), "");
    assert_eq!(ws.read("other-name.txt"), "shared\n", "a hard link is not emptied");
    assert_eq!(ws.read("target.txt"), "precious\n", "a symlink is not written through");
    assert_eq!(ws.read("linked.txt"), "2\n");
    // A command that exits 0 without writing its emptied output fails.
    ws.write("n.txt", "skip\n");
    let third = run_json(&ws, &[]);
    third.code(1);
    assert_eq!(third.outcomes(), "append:failed empty:ran linked:ran");
    let failed = &third.json()["steps"][0]["message"];
    assert!(failed.to_string().contains("declared output log.txt was not written"), "{failed}");
    // The failed step leaves no emptied placeholder behind.
    assert!(!ws.exists("log.txt"), "an empty placeholder was left where the output was");
}

/// A step that runs for any other reason than its inputs' data (its
/// command, config or code changed; it never ran) starts from what a clean
/// build has: no output at all. An output that changes from a file to a
/// directory (or back) with its command builds on the first run.
#[test]
fn a_step_whose_definition_changed_starts_without_its_stale_outputs() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.make]
cmd = "test -e {out.o} && echo stale > seen.txt; echo {config.n} > {out.o}"
out = { o = "build/o" }
config = { n = 1 }

[ops.read]
cmd = "cat {in.o} > {out.r}"
in = { o = "build/o" }
out = { r = "build/r" }
"#,
    );
    run_json(&ws, &[]).ok();
    let edited = ws.read("trove.toml").replace("n = 1", "n = 2");
    ws.write("trove.toml", &edited);
    let second = run_json(&ws, &[]);
    second.ok();
    assert!(!ws.exists("seen.txt"), "a config change left the stale output for the command");
    assert_eq!(ws.read("build/r"), "2\n");
    // The output becomes a directory: the command that makes it runs at once.
    let to_dir = ws
        .read("trove.toml")
        .replace("echo {config.n} > {out.o}", "mkdir {out.o} && echo {config.n} > {out.o}/f");
    ws.write("trove.toml", &to_dir);
    ws.write(
        "trove.toml",
        &ws.read("trove.toml").replace("cat {in.o} > {out.r}", "cat {in.o}/f > {out.r}"),
    );
    let third = run_json(&ws, &[]);
    third.ok();
    assert_eq!(third.outcomes(), "make:ran read:ran");
    assert_eq!(ws.read("build/o/f"), "2\n");
    assert_eq!(ws.read("build/r"), "2\n");
    // And back to a file: the old file version is restored from the store.
    let back = ws
        .read("trove.toml")
        .replace("mkdir {out.o} && echo {config.n} > {out.o}/f", "echo {config.n} > {out.o}");
    ws.write("trove.toml", &back.replace("cat {in.o}/f > {out.r}", "cat {in.o} > {out.r}"));
    let fourth = run_json(&ws, &[]);
    fourth.ok();
    assert_eq!(fourth.outcomes(), "make:memoized read:memoized");
    assert_eq!(ws.read("build/o"), "2\n");
    assert!(!ws.exists("seen.txt"));
}

/// A stored output the workspace cannot take back (a file where its
/// directory must go) fails its step with the cause; the other steps go on,
/// and once the path is free the next run restores it.
#[test]
fn an_output_that_cannot_be_restored_fails_its_step_not_the_run() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "echo a > {out.x}"
out = { x = "build/sub/x" }

[ops.b]
cmd = "echo b > {out.y}"
out = { y = "build/y" }
"#,
    );
    run_json(&ws, &[]).ok();
    std::fs::remove_dir_all(ws.root().join("build")).unwrap();
    ws.write("build/sub", "in the way\n");
    let blocked = run_json(&ws, &[]);
    blocked.code(1);
    assert_eq!(blocked.outcomes(), "a:failed b:memoized");
    let message = blocked.json()["steps"][0]["message"].to_string();
    assert!(message.contains("output x: restoring build/sub/x"), "{message}");
    assert_eq!(ws.read("build/y"), "b\n", "the other step's output was restored");
    std::fs::remove_file(ws.root().join("build/sub")).unwrap();
    let freed = run_json(&ws, &[]);
    freed.ok();
    assert_eq!(freed.outcomes(), "a:memoized b:memoized");
    assert_eq!(ws.read("build/sub/x"), "a\n");
}

#[test]
fn commands_see_trove_step_and_run_id() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.env]
cmd = "echo $TROVE_STEP $TROVE_RUN_ID > {out.o}"
out = { o = "env.txt" }
"#,
    );
    let run = run_json(&ws, &[]);
    run.ok();
    let run_id = run.json()["run_id"].as_str().unwrap().to_owned();
    assert_eq!(ws.read("env.txt"), format!("env {run_id}\n"));
}

#[test]
fn log_and_show_list_runs_step_by_step() {
    let ws = tour();
    let first = run_json(&ws, &["--tag", "owner=ana"]);
    let run_id = first.json()["run_id"].as_str().unwrap().to_owned();
    run_json(&ws, &[]).ok();
    let log = ws.run(["log"]);
    log.ok();
    assert_eq!(log.stdout.lines().count(), 2, "{}", log.stdout);
    assert!(log.stdout.contains("[owner=ana]"), "{}", log.stdout);
    let show = ws.run(["show", &run_id]);
    show.ok();
    assert_snapshot(&ws, "show_first_run", &show.stdout);
    let json = ws.run(["show", &run_id, "--json"]).json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["steps"].as_array().unwrap().len(), 5);
    ws.run(["show", "nope"]).code(2);
}

#[test]
fn gc_and_verify_report() {
    let ws = tour();
    run_json(&ws, &[]).ok();
    run_json(&ws, &["--no-memo"]).ok();
    let verify = ws.run(["verify", "--json"]);
    verify.ok();
    assert_eq!(verify.json()["schema"], 1);
    assert_eq!(verify.json()["clean"], true);
    let gc = ws.run(["gc", "--keep-runs", "1", "--dry-run", "--json"]);
    gc.ok();
    assert_eq!(gc.json()["dry_run"], true);
    ws.run(["gc", "--keep-runs", "1"]).ok();
    assert_eq!(ws.run(["log", "--json"]).json()["runs"].as_array().unwrap().len(), 1);
    let again = run_json(&ws, &[]);
    again.ok();
    assert!(again.outcomes().contains("report:memoized"), "{}", again.outcomes());
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let ws = tour();
    let dot = ws.run(["graph"]);
    dot.ok();
    assert_snapshot(&ws, "graph_dot", &dot.stdout);
    let mermaid = ws.run(["graph", "--format", "mermaid"]);
    mermaid.ok();
    assert_snapshot(&ws, "graph_mermaid", &mermaid.stdout);
}

#[test]
fn init_writes_a_pipeline_that_runs_and_memoizes() {
    let ws = TestWorkspace::new();
    ws.run(["init"]).ok();
    assert!(ws.exists("trove.toml"));
    assert_eq!(run_json(&ws, &[]).outcomes(), "generate:ran total:ran report:ran");
    assert_eq!(run_json(&ws, &[]).outcomes(), "generate:memoized total:memoized report:memoized");
    let again = ws.run(["init"]);
    again.code(2);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
}

#[test]
fn a_second_run_waits_for_the_first_and_is_then_memoized() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.slow]
cmd = "touch started; while [ ! -e release ]; do sleep 0.02; done; echo done > {out.o}"
out = { o = "slow.txt" }
"#,
    );
    let mut first = ws.command(["run"]).spawn().unwrap();
    ws.wait_for("started");
    // `--no-wait` fails at once with exit code 2.
    let no_wait = ws.run(["--no-wait", "run"]);
    no_wait.code(2);
    assert!(no_wait.stderr.contains("locked by"), "{}", no_wait.stderr);
    // The default waits, says so, and proceeds once the first run is done.
    let mut second = ws.command(["run", "--json"]).spawn().unwrap();
    let stderr = second.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let waiting = line.contains("waiting for the store lock");
            seen.push(line);
            if waiting {
                break;
            }
        }
        seen
    });
    let seen = reader.join().unwrap();
    assert!(seen.last().is_some_and(|l| l.contains("waiting for the store lock")), "{seen:?}");
    ws.write("release", "");
    assert!(first.wait().unwrap().success());
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success());
    let outcome = Outcome {
        code: 0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
    };
    assert_eq!(outcome.outcomes(), "slow:memoized");
}

#[test]
fn a_run_killed_mid_step_leaves_a_store_the_next_run_resumes_from() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.first]
cmd = "sleep 0.05; echo one > {out.o}"
out = { o = "one.txt" }

[ops.second]
cmd = "if [ -e block ]; then touch started; while [ -e block ]; do sleep 0.02; done; cat {in.x} > {out.o}; touch orphan-done; else cat {in.x} > {out.o}; fi"
in = { x = "one.txt" }
out = { o = "two.txt" }
"#,
        )
        .file("block", "");
    let mut run = ws.command(["run", "-j", "1"]).spawn().unwrap();
    ws.wait_for("started");
    // A reader follows the running writer: the run shows once its first
    // commit (`first`, with the run's start) has landed.
    let listed = |ws: &TestWorkspace| {
        let log = ws.run(["log", "--json"]);
        log.ok();
        log.json()["runs"].as_array().cloned().unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed(&ws).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the running run never showed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(listed(&ws)[0]["status"], "running");
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    // The killed run's command lives on as an orphan: end it and let it
    // finish, so it does not write `two.txt` while the next run does.
    std::fs::remove_file(ws.root().join("block")).unwrap();
    ws.wait_for("orphan-done");
    // Read-only commands open the store the killed writer left unclean: the
    // run it had begun (committed with `first`) reads as interrupted.
    let runs = listed(&ws);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "interrupted");
    // It lists and counts the step it finished before it died, and lasted
    // at least until that step was recorded.
    assert_eq!(runs[0]["counts"]["ran"], 1, "{runs:?}");
    assert!(runs[0]["duration_ms"].as_u64().is_some_and(|ms| ms >= 50), "{runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap();
    let show = ws.run(["show", id, "--json"]);
    show.ok();
    let steps = show.json()["steps"].clone();
    assert_eq!(steps.as_array().map(Vec::len), Some(1), "{steps}");
    assert_eq!(steps[0]["step"], "first");
    assert_eq!(steps[0]["outcome"], "ran");
    ws.run(["plan"]).ok();
    let again = run_json(&ws, &[]);
    again.ok();
    assert_eq!(again.outcomes(), "first:memoized second:ran");
    assert_eq!(ws.read("two.txt"), "one\n");
    ws.run(["verify"]).ok();
}

/// Sends `signal` (`INT`, `TERM`) to `target`: a pid, or `-PGID` for a
/// process group.
fn send_signal(ws: &TestWorkspace, signal: &str, target: &str) {
    let out = trove_cli::command::sh(ws.root(), &format!("kill -{signal} {target}"), &[]).unwrap();
    assert!(out.status.success(), "kill -{signal} {target} failed");
}

/// The status `trove log` gives the latest run.
#[track_caller]
fn last_run_status(ws: &TestWorkspace) -> String {
    let log = ws.run(["log", "--json"]);
    log.ok();
    log.json()["runs"][0]["status"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_terminal_ctrl_c_cancels_the_run_and_keeps_what_finished() {
    use std::os::unix::process::CommandExt as _;
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.first]
cmd = "echo one > {out.o}"
out = { o = "one.txt" }

[ops.second]
cmd = "if [ -e started ]; then cat {in.x} > {out.o}; else touch started; sleep 30; fi"
in = { x = "one.txt" }
out = { o = "two.txt" }

[ops.third]
cmd = "cat {in.x} > {out.o}"
in = { x = "two.txt" }
out = { o = "three.txt" }
"#,
    );
    // trove and its commands in a process group of their own, as a shell
    // runs a foreground job: Ctrl-C signals the whole group.
    let mut command = ws.command(["run", "-j", "1"]);
    command.process_group(0);
    let run = command.spawn().unwrap();
    ws.wait_for("started");
    let group = run.id();
    send_signal(&ws, "INT", &format!("-{group}"));
    let out = Outcome::of(run.wait_with_output().unwrap());
    // The command died of the signal: the run is cancelled, not failed.
    out.code(130);
    assert!(out.stderr.contains("cancelled: "), "{}", out.stderr);
    assert_eq!(last_run_status(&ws), "cancelled");
    // What finished stays memoized; the interrupted step runs again.
    let again = run_json(&ws, &[]);
    again.ok();
    assert_eq!(again.outcomes(), "first:memoized second:ran third:ran");
}

#[test]
fn a_command_dying_of_sigint_cancels_the_run_even_before_trove_hears_the_signal() {
    // A terminal signals trove and its command at once, and the command's
    // death may be booked before trove's own handler runs: here only the
    // command gets the signal, the latest trove can hear of it.
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.first]
cmd = "echo $$ > pid; while true; do sleep 0.01; done"
out = { o = "one.txt" }

[ops.second]
cmd = "cat {in.x} > {out.o}"
in = { x = "one.txt" }
out = { o = "two.txt" }
"#,
    );
    let run = ws.command(["run", "-j", "1"]).spawn().unwrap();
    ws.wait_for("pid");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let pid = ws.read("pid");
    send_signal(&ws, "INT", pid.trim());
    let out = Outcome::of(run.wait_with_output().unwrap());
    out.code(130);
    assert_eq!(last_run_status(&ws), "cancelled");
}

#[test]
fn sigterm_lets_the_running_step_finish_and_records_the_run_as_cancelled() {
    // What `timeout` and CI runners send: trove alone gets it, its running
    // command does not, and nothing may outlive trove unrecorded.
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.slow]
cmd = "touch started; while [ ! -e go ]; do sleep 0.01; done; echo done > {out.o}"
out = { o = "slow.txt" }

[ops.after]
cmd = "cat {in.x} > {out.o}"
in = { x = "slow.txt" }
out = { o = "after.txt" }
"#,
    );
    let run = ws.command(["run", "-j", "1"]).spawn().unwrap();
    ws.wait_for("started");
    send_signal(&ws, "TERM", &run.id().to_string());
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::write(ws.root().join("go"), "").unwrap();
    let out = Outcome::of(run.wait_with_output().unwrap());
    out.code(130);
    assert_eq!(ws.read("slow.txt"), "done\n");
    assert!(!ws.exists("after.txt"), "nothing new starts after the signal");
    assert_eq!(last_run_status(&ws), "cancelled");
    let again = run_json(&ws, &[]);
    again.ok();
    assert_eq!(again.outcomes(), "slow:memoized after:ran");
}

/// Whether a process runs (a zombie does not: killed, not yet reaped).
fn process_runs(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[test]
fn a_second_signal_stops_at_once_and_leaves_no_command_running() {
    // Left running, a command would go on writing into the workspace after
    // trove is gone, and clash with the next run.
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.slow]
cmd = "echo $$ > pid; sleep 30 & echo $! > child; wait; echo late > {out.o}"
out = { o = "late.txt" }
"#,
    );
    let run = ws.command(["run", "-j", "1"]).spawn().unwrap();
    ws.wait_for("child");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (pid, child) = (ws.read("pid"), ws.read("child"));
    assert!(process_runs(pid.trim()) && process_runs(child.trim()));
    send_signal(&ws, "TERM", &run.id().to_string());
    std::thread::sleep(std::time::Duration::from_millis(200));
    send_signal(&ws, "TERM", &run.id().to_string());
    let out = Outcome::of(run.wait_with_output().unwrap());
    out.code(130);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while (process_runs(pid.trim()) || process_runs(child.trim()))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!process_runs(pid.trim()), "the command outlived trove");
    assert!(!process_runs(child.trim()), "what the command started outlived trove");
    assert!(!ws.exists("late.txt"));
}

/// `timeout` signals trove and then its whole process group: the run is
/// cancelled and recorded, with the step its signal killed as failed (the
/// signal can arrive twice; see `Signals` in `cli/src/commands/run.rs`).
#[test]
fn timeout_cancels_the_run_and_records_it() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.slow]
cmd = "touch started; sleep 30"
out = { o = "slow.txt" }
"#,
    );
    let mut command = trove_cli::command::program(std::path::Path::new("timeout"), ws.root());
    command.args(["-s", "TERM", "1"]).arg(crate::support::trove_bin()).args(["run", "-j", "1"]);
    let out = Outcome::of(command.output().unwrap());
    assert!(ws.exists("started"));
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert_eq!(last_run_status(&ws), "cancelled", "{}", out.stderr);
    assert!(out.stderr.contains("killed by signal 15"), "{}", out.stderr);
}

#[test]
fn a_symbolic_link_declared_as_an_output_fails_its_step_and_one_inside_a_directory_is_kept() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.link]
cmd = "ln -s target.txt {out.s}"
out = { s = "alink" }

[ops.dir]
cmd = "mkdir -p {out.d} && ln -s ../target.txt {out.d}/link"
out = { d = "d" }
"#,
        )
        .file("target.txt", "hi\n");
    // Stored as its target's bytes, the link would come back as a regular
    // file: the step fails and says why.
    let out = ws.run(["run"]);
    out.code(1);
    assert!(out.stderr.contains("alink: it is a symbolic link"), "{}", out.stderr);
    // A link inside an output directory is restored as the same link.
    std::fs::remove_dir_all(ws.root().join("d")).unwrap();
    ws.run(["run", "dir"]).ok();
    let target = std::fs::read_link(ws.root().join("d/link")).unwrap();
    assert_eq!(target, std::path::Path::new("../target.txt"));
}

#[test]
fn a_source_or_code_file_edited_while_its_step_runs_fails_the_step_and_poisons_nothing() {
    // The step's version is computed from the bytes hashed when the run
    // starts; stored after an edit, its outputs would be served for those
    // bytes from then on.
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.a]
cmd = "touch started; while [ ! -e go ]; do sleep 0.01; done; rm go started; cat {in.i} > {out.o}; sh tool.sh >> {out.o}"
in = { i = "in.txt" }
out = { o = "build/o" }
code = ["tool.sh"]
"#,
        )
        .file("in.txt", "v1\n")
        .file("tool.sh", "echo one\n");
    for (path, edited, original, rerun) in
        [("in.txt", "v2\n", "v1\n", "a:ran"), ("tool.sh", "echo two\n", "echo one\n", "a:memoized")]
    {
        let run = ws.command(["run", "--force", "a"]).spawn().unwrap();
        ws.wait_for("started");
        std::fs::write(ws.root().join(path), edited).unwrap();
        std::fs::write(ws.root().join("go"), "").unwrap();
        let out = Outcome::of(run.wait_with_output().unwrap());
        out.code(1);
        assert!(
            out.stderr.contains(&format!("{path} changed while the step ran")),
            "{}",
            out.stderr
        );
        // Back to the bytes the failed run hashed: nothing was stored for
        // the edited bytes under their version. The first time the step
        // runs; the second time what the first run stored is the hit.
        std::fs::write(ws.root().join(path), original).unwrap();
        std::fs::write(ws.root().join("go"), "").unwrap();
        let again = run_json(&ws, &[]);
        again.ok();
        assert_eq!(again.outcomes(), rerun);
        assert_eq!(ws.read("build/o"), "v1\none\n");
        let _ = std::fs::remove_file(ws.root().join("go"));
    }
}

/// An upstream output rewritten in the workspace while a step that reads it
/// runs (a command left running by a killed run, another tool) fails that
/// step: stored, its outputs would stand for the upstream's recorded bytes
/// and be served from then on.
#[test]
fn an_upstream_output_rewritten_while_its_reader_runs_fails_the_reader() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "echo {config.v} > {out.o}"
out = { o = "build/a.txt" }
config = { v = 1 }

[ops.b]
cmd = "touch started; while [ ! -e go ]; do sleep 0.01; done; rm go started; cat {in.a} > {out.o}"
in = { a = "build/a.txt" }
out = { o = "build/b.txt" }
"#,
    );
    std::fs::write(ws.root().join("go"), "").unwrap();
    run_json(&ws, &[]).ok();
    let run = ws.command(["run", "--force", "b"]).spawn().unwrap();
    ws.wait_for("started");
    std::fs::write(ws.root().join("build/a.txt"), "stray\n").unwrap();
    std::fs::write(ws.root().join("go"), "").unwrap();
    let out = Outcome::of(run.wait_with_output().unwrap());
    out.code(1);
    assert!(out.stderr.contains("build/a.txt changed while the step ran"), "{}", out.stderr);
    // The next run puts a's output back, and b's output at its version is
    // still the one made from a's bytes: the stray bytes were not stored.
    let again = run_json(&ws, &[]);
    again.ok();
    assert_eq!(again.outcomes(), "a:memoized b:memoized");
    assert_eq!(ws.read("build/a.txt"), "1\n");
    assert_eq!(ws.read("build/b.txt"), "1\n");
}

#[test]
fn an_outputs_executable_bit_is_restored_and_never_left_behind() {
    use std::os::unix::fs::PermissionsExt as _;
    let exec = |ws: &TestWorkspace, rel: &str| {
        std::fs::metadata(ws.root().join(rel)).unwrap().permissions().mode() & 0o111 != 0
    };
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.gen]
cmd = "echo 'echo ok' > {out.s}; chmod {config.m} {out.s}"
out = { s = "tool.sh" }
config = { m = "755" }

[ops.plain]
cmd = "echo {config.v} > {out.o}"
out = { o = "plain.txt" }
config = { v = 1 }
"#,
    );
    ws.run(["run"]).ok();
    assert!(exec(&ws, "tool.sh"));
    // Same bytes, another mode, then back: the stored mode comes back.
    ws.write("trove.toml", &ws.read("trove.toml").replace("\"755\"", "\"644\""));
    ws.run(["run"]).ok();
    assert!(!exec(&ws, "tool.sh"));
    ws.write("trove.toml", &ws.read("trove.toml").replace("\"644\"", "\"755\""));
    let back = run_json(&ws, &[]);
    back.ok();
    assert!(exec(&ws, "tool.sh"), "the stored executable bit is restored");
    // A stale executable output is not reused in place: a command that
    // writes it without chmod makes what a clean build makes.
    let plain = ws.root().join("plain.txt");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.write("trove.toml", &ws.read("trove.toml").replace("v = 1", "v = 2"));
    ws.run(["run"]).ok();
    assert!(!exec(&ws, "plain.txt"));
}

#[test]
fn a_corrupt_stored_output_is_a_miss_with_a_warning() {
    // `numbers` writes ~48 KB, kept in a blob; `sum` writes a few bytes,
    // kept inline in its record.
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[job]
name = "big"

[ops.numbers]
cmd = "seq 1 10000 > {out.n}"
out = { n = "build/numbers.txt" }

[ops.sum]
cmd = "awk '{ s += $1 } END { print s }' {in.n} > {out.s}"
in = { n = "build/numbers.txt" }
out = { s = "build/sum.txt" }
"#,
    );
    run_json(&ws, &[]).ok();
    // Flip the bytes of every stored blob, then delete the workspace output
    // so the hit must restore from the store.
    let mut stack = vec![ws.root().join(".trove")];
    let mut flipped = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.components().any(|c| c.as_os_str() == "blobs") {
                let mut bytes = std::fs::read(&path).unwrap();
                if let Some(b) = bytes.first_mut() {
                    *b ^= 0xff;
                }
                std::fs::write(&path, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert_eq!(flipped, 1, "the large output is a blob, the small one inline");
    std::fs::remove_file(ws.root().join("build/numbers.txt")).unwrap();
    std::fs::remove_file(ws.root().join("build/sum.txt")).unwrap();
    let run = ws.run(["run"]);
    run.ok();
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(ws.read("build/numbers.txt").lines().count(), 10000);
    // Restored from its record, since `numbers` re-ran to the same bytes.
    assert_eq!(ws.read("build/sum.txt"), "50005000\n");
    ws.run(["verify"]).ok();
}

/// Each pipeline error: exit code 2 and a message that points at the file.
fn error_case(name: &str, pipeline: &str) {
    let ws = TestWorkspace::new().file("trove.toml", pipeline).file("data/raw.csv", RAW);
    let run = ws.run(["run"]);
    run.code(2);
    assert_snapshot(&ws, &format!("error_{name}"), &run.stderr);
    let plan = ws.run(["plan"]);
    plan.code(2);
}

#[test]
fn error_unknown_key() {
    error_case(
        "unknown_key",
        "[ops.clean]\ncmd = \"true\"\noutput = { clean = \"build/clean.csv\" }\n",
    );
}

#[test]
fn error_unknown_template_name() {
    error_case(
        "unknown_template_name",
        "[ops.clean]\ncmd = \"sort {in.rwa} > {out.clean}\"\nin = { raw = \"data/raw.csv\" }\nout = { clean = \"build/clean.csv\" }\n",
    );
}

#[test]
fn error_duplicate_output() {
    error_case(
        "duplicate_output",
        "[ops.a]\ncmd = \"true\"\nout = { x = \"build/x.csv\" }\n\n[ops.b]\ncmd = \"true\"\nout = { y = \"build/x.csv\" }\n",
    );
}

#[test]
fn error_cycle() {
    error_case(
        "cycle",
        "[ops.a]\ncmd = \"true\"\nin = { x = \"b.txt\" }\nout = { y = \"a.txt\" }\n\n[ops.b]\ncmd = \"true\"\nin = { x = \"a.txt\" }\nout = { y = \"b.txt\" }\n",
    );
}

#[test]
fn error_path_outside_the_workspace() {
    error_case(
        "path_outside",
        "[ops.a]\ncmd = \"true\"\nin = { x = \"../../etc/passwd\" }\nout = { y = \"a.txt\" }\n",
    );
}

#[test]
fn error_absolute_path() {
    error_case("absolute_path", "[ops.a]\ncmd = \"true\"\nout = { y = \"/tmp/a.txt\" }\n");
}

#[test]
fn error_unknown_resource() {
    error_case(
        "unknown_resource",
        "[resources.python]\nversion = \"3\"\n\n[ops.a]\ncmd = \"true\"\nresources = [\"pyhton\"]\n",
    );
}

#[test]
fn error_version_cmd_fails() {
    error_case(
        "version_cmd_fails",
        "[resources.tool]\nversion_cmd = \"echo no such tool >&2; exit 127\"\n\n[ops.a]\ncmd = \"true\"\nresources = [\"tool\"]\n",
    );
}

#[test]
fn error_missing_input() {
    error_case(
        "missing_input",
        "[ops.a]\ncmd = \"cat {in.x} > {out.y}\"\nin = { x = \"data/nope.csv\" }\nout = { y = \"a.txt\" }\n",
    );
}

#[test]
fn error_no_pipeline_file() {
    let ws = TestWorkspace::new();
    let run = ws.run(["run"]);
    run.code(2);
    assert_snapshot(&ws, "error_no_pipeline_file", &run.stderr);
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let ws = TestWorkspace::new();
    for sub in ["run", "plan", "why", "log", "show", "gc", "verify", "graph", "init", "bench"] {
        let help = ws.run([sub, "--help"]);
        help.ok();
        assert!(help.stdout.contains("Examples:"), "{sub}: {}", help.stdout);
        assert_snapshot(&ws, &format!("help_{sub}"), &help.stdout);
    }
    let top = ws.run(["--help"]);
    top.ok();
    assert_snapshot(&ws, "help", &top.stdout);
    ws.run(["run", "--bogus"]).code(2);
}

#[test]
fn the_pipeline_file_can_be_named_and_the_directory_changed() {
    let ws = tour();
    std::fs::rename(ws.root().join("trove.toml"), ws.root().join("pipe.toml")).unwrap();
    ws.run(["run"]).code(2);
    let run = ws.run(["-f", "pipe.toml", "run", "--json"]);
    run.ok();
    let sub = TestWorkspace::new();
    let here = ws.root().to_str().unwrap();
    let from_elsewhere = sub.run(["-C", here, "-f", "pipe.toml", "plan", "--json"]);
    from_elsewhere.ok();
    assert_eq!(from_elsewhere.json()["steps"][0]["action"], "memoized");
}

#[test]
fn keep_going_runs_independent_steps_and_fail_fast_stops() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.bad]
cmd = "exit 1"
out = { o = "bad.txt" }

[ops.good]
cmd = "echo ok > {out.o}"
out = { o = "good.txt" }
"#,
    );
    let fast = run_json(&ws, &["-j", "1", "--fail-fast"]);
    fast.code(1);
    assert_eq!(fast.outcomes(), "bad:failed good:not_run");
    let going = run_json(&ws, &["-j", "1", "--keep-going"]);
    going.code(1);
    assert_eq!(going.outcomes(), "bad:failed good:ran");
    assert_eq!(ws.read("good.txt"), "ok\n");
}

#[test]
fn a_new_interpreter_version_reruns_the_ops_that_require_it() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[resources.python]
version_cmd = "cat pyver.txt"

[ops.a]
cmd = "echo a > {out.o}"
out = { o = "a.txt" }
resources = ["python"]

[ops.b]
cmd = "echo b > {out.o}"
out = { o = "b.txt" }
"#,
        )
        .file("pyver.txt", "Python 3.11.7\n");
    run_json(&ws, &[]).ok();
    ws.write("pyver.txt", "Python 3.12.1\n");
    let plan = ws.run(["plan"]);
    plan.ok();
    assert!(
        plan.stdout.contains("a  run: resource python: version changed (3.11.7 → 3.12.1)"),
        "{}",
        plan.stdout
    );
    assert_eq!(run_json(&ws, &[]).outcomes(), "a:ran b:memoized");
}

/// One flipped byte in the trace database, at the places where redb used to
/// panic, hang or fail on every run (a system or user table's name, a type
/// name in a system table, the table directory's offsets, a table's root,
/// the file's magic number): no command panics or hangs, the damaged file
/// is set aside in the quarantine at the latest by the first run that
/// meets the damage, and from the next run on everything is right and
/// memoized again.
#[test]
fn one_flipped_byte_in_the_trace_database_never_panics_hangs_or_fails_for_good() {
    let cases: [(&str, &[u8], isize); 5] = [
        ("a system table's name", b"allocator_state", 22),
        ("a type name in a system table", b"redb::PageList", 7),
        ("the table directory's offsets", b"blobscachelatest", -33),
        ("a table's root", b"blobscachelatest", 452),
        ("the magic number", b"redb", 5),
    ];
    for (what, pattern, offset) in cases {
        let ws = TestWorkspace::new().file(
            "trove.toml",
            r#"
[ops.a]
cmd = "seq 1 2000 > {out.o}"
out = { o = "build/a.txt" }

[ops.b]
cmd = "tr 1 x < {in.i} > {out.o}"
in = { i = "build/a.txt" }
out = { o = "build/b.txt" }
"#,
        );
        ws.run(["run"]).ok();
        let expected = ws.read("build/b.txt");
        let db = ws.root().join(".trove/trove.redb");
        let mut bytes = std::fs::read(&db).unwrap();
        let hits: Vec<usize> = if pattern == b"redb" {
            vec![0]
        } else {
            bytes
                .windows(pattern.len())
                .enumerate()
                .filter(|(_, w)| w == &pattern)
                .map(|(i, _)| i)
                .collect()
        };
        assert!(!hits.is_empty(), "{what}: {pattern:?} not in the file");
        for at in hits {
            let at = at.checked_add_signed(offset).unwrap();
            bytes[at] ^= 0x10;
        }
        std::fs::write(&db, &bytes).unwrap();
        std::fs::remove_dir_all(ws.root().join("build")).unwrap();
        let trove = |args: &[&str]| {
            let mut command =
                trove_cli::command::program(std::path::Path::new("timeout"), ws.root());
            command.arg("60").arg(crate::support::trove_bin()).args(args);
            let out = Outcome::of(command.output().unwrap());
            assert!(
                out.code != 101 && !out.stderr.contains("panicked at"),
                "{what}: {args:?} panicked:\n{}",
                out.stderr
            );
            assert_ne!(out.code, 124, "{what}: {args:?} hung");
            out
        };
        for args in [&["log"][..], &["run"], &["verify"], &["log"]] {
            trove(args);
        }
        let run = trove(&["run"]);
        assert_eq!(run.code, 0, "{what}: the run after the damage was met failed:\n{}", run.stderr);
        assert_eq!(ws.read("build/b.txt"), expected, "{what}");
        let again = trove(&["run", "--full-check"]);
        assert_eq!(again.code, 0, "{what}: {}", again.stderr);
        assert!(again.stderr.contains("0 ran, 2 memoized"), "{what}: {}", again.stderr);
        let aside = std::fs::read_dir(ws.root().join(".trove/quarantine"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".damaged"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(aside, 1, "{what}: the damaged database is kept in the quarantine");
        assert_eq!(trove(&["verify"]).code, 0, "{what}");
    }
}

/// An edit undone (A → B → A) restores A's outputs from the store: from
/// then on A is the step's latest, so `gc` keeps what the workspace was
/// restored from, and the next plan explains a change against A, not B.
#[test]
fn an_undone_edit_makes_the_restored_version_the_latest_for_gc_and_for_reasons() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.a]
cmd = "cat {in.s} > {out.o}"
in = { s = "src.txt" }
out = { o = "o.txt" }
config = { k = 1 }
"#,
        )
        .file("src.txt", "A\n");
    run_json(&ws, &[]).ok();
    ws.write("src.txt", "B\n");
    run_json(&ws, &[]).ok();
    ws.write("src.txt", "A\n");
    let undone = run_json(&ws, &[]);
    undone.ok();
    assert_eq!(undone.outcomes(), "a:memoized");
    ws.run(["gc", "--keep-runs", "1"]).ok();
    std::fs::remove_file(ws.root().join("o.txt")).unwrap();
    let restored = run_json(&ws, &[]);
    restored.ok();
    assert_eq!(restored.outcomes(), "a:memoized", "gc removed the outputs the workspace held");
    assert_eq!(ws.read("o.txt"), "A\n");
    let edited = ws.read("trove.toml").replace("k = 1", "k = 2");
    ws.write("trove.toml", &edited);
    let plan = ws.run(["plan"]);
    plan.ok();
    assert!(plan.stdout.contains("a  run: config.k 1 → 2\n"), "{}", plan.stdout);
}

/// An output moved under its old path (`out` → `out/x.txt`) builds at
/// once: the op's old output file in the way goes. A file that was never
/// the op's output is not touched, and the failure names it.
#[test]
fn an_output_moved_under_its_old_path_builds_and_a_foreign_file_in_the_way_is_named() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "echo a > {out.o}"
out = { o = "out" }
"#,
    );
    run_json(&ws, &[]).ok();
    ws.write("trove.toml", &ws.read("trove.toml").replace(r#""out""#, r#""out/x.txt""#));
    run_json(&ws, &[]).ok();
    assert_eq!(ws.read("out/x.txt"), "a\n");
    ws.write("trove.toml", &ws.read("trove.toml").replace(r#""out/x.txt""#, r#""mine/x.txt""#));
    ws.write("mine", "precious\n");
    let blocked = ws.run(["run"]);
    blocked.code(1);
    assert!(
        blocked.stderr.contains("cannot create the directory of output mine/x.txt: mine is a file"),
        "{}",
        blocked.stderr
    );
    assert_eq!(ws.read("mine"), "precious\n");
}

/// A corrupt blob only an older trace uses: `verify` quarantines it and
/// removes what referred to it, so the next `verify` finds the store sound.
#[test]
fn verify_repairs_once_and_then_finds_the_store_sound() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "seq 1 {config.n} > {out.o}"
out = { o = "build/a.txt" }
config = { n = 20000 }
"#,
    );
    ws.run(["run"]).ok();
    let blobs = |ws: &TestWorkspace| {
        let mut found = Vec::new();
        let mut stack = vec![ws.root().join(".trove/blobs")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path());
                }
            }
        }
        found
    };
    let old = blobs(&ws);
    assert_eq!(old.len(), 1, "{old:?}");
    ws.write("trove.toml", &ws.read("trove.toml").replace("20000", "30000"));
    ws.run(["run"]).ok();
    let mut bytes = std::fs::read(&old[0]).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&old[0], &bytes).unwrap();
    ws.run(["verify"]).code(1);
    ws.run(["run"]).ok();
    let again = ws.run(["verify"]);
    again.ok();
    assert!(again.stdout.contains("the store is sound"), "{}", again.stdout);
}

/// An input at a path inside an upstream output directory reads the
/// directory's data version: the reader runs, is memoized next time, and a
/// file of the directory rewritten while it runs fails it.
#[test]
fn an_input_inside_an_upstream_output_directory_is_checked_as_that_directory() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.gen]
cmd = "mkdir -p {out.d}/sub && echo hi > {out.d}/sub/x.txt && echo other > {out.d}/y.txt"
out = { d = "build/d" }

[ops.use]
cmd = "touch started; while [ ! -e go ]; do sleep 0.01; done; rm go started; cat {in.x} > {out.o}"
in = { x = "build/d/sub/x.txt" }
out = { o = "out.txt" }
"#,
    );
    std::fs::write(ws.root().join("go"), "").unwrap();
    let first = run_json(&ws, &[]);
    first.ok();
    assert_eq!(first.outcomes(), "gen:ran use:ran");
    assert_eq!(run_json(&ws, &[]).outcomes(), "gen:memoized use:memoized");
    let run = ws.command(["run", "--force", "use"]).spawn().unwrap();
    ws.wait_for("started");
    std::fs::write(ws.root().join("build/d/y.txt"), "stray\n").unwrap();
    std::fs::write(ws.root().join("go"), "").unwrap();
    let out = Outcome::of(run.wait_with_output().unwrap());
    out.code(1);
    assert!(out.stderr.contains("build/d changed while the step ran"), "{}", out.stderr);
}

/// A pipeline file with Windows line ends runs as the same file with `\n`:
/// no `\r` reaches a multi-line command.
#[test]
fn a_pipeline_file_with_crlf_line_ends_runs_like_one_with_lf() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        "[ops.a]\r\ncmd = \"\"\"\r\necho hi |\r\n  tr a-z A-Z > {out.o}\r\n\"\"\"\r\nout = { o = \"o.txt\" }\r\n",
    );
    let run = run_json(&ws, &[]);
    run.ok();
    assert_eq!(ws.read("o.txt"), "HI\n");
    assert!(!ws.exists("o.txt\r"));
}

/// A declared environment variable's value that is not UTF-8 is part of
/// the version byte for byte: two such values never read the same.
#[test]
fn a_non_utf8_environment_value_is_versioned_exactly() {
    use std::os::unix::ffi::OsStrExt as _;
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "printf %s \"$FOO\" > {out.o}"
out = { o = "o" }
env = ["FOO"]
"#,
    );
    for value in [&b"\xff\xfe"[..], b"\xff\xfd"] {
        let out = ws.command(["run"]).env("FOO", std::ffi::OsStr::from_bytes(value)).output();
        Outcome::of(out.unwrap()).ok();
        assert_eq!(std::fs::read(ws.root().join("o")).unwrap(), value);
    }
}

/// A step that ran and failed, and never succeeded, is not "never run":
/// `plan` and `why` say its last run failed.
#[test]
fn plan_and_why_say_a_step_that_only_failed_failed_last_time() {
    let ws = TestWorkspace::new().file(
        "trove.toml",
        r#"
[ops.a]
cmd = "exit 3"
out = { o = "o" }
"#,
    );
    ws.run(["run"]).code(1);
    let plan = ws.run(["plan"]);
    plan.ok();
    assert!(
        plan.stdout.contains("a  run: no successful run yet (the last one failed)"),
        "{}",
        plan.stdout
    );
    let why = ws.run(["why", "a"]);
    why.ok();
    assert!(why.stdout.contains("failed: command failed with exit code 3"), "{}", why.stdout);
}

/// An input that reaches another op's output through a linked directory
/// would be hashed as a source before its writer runs: it is refused, with
/// the path to name instead.
#[test]
fn an_input_reaching_an_output_through_a_linked_directory_is_refused() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[ops.a]
cmd = "cat {in.s} > {out.o}"
in = { s = "src.txt" }
out = { o = "build/a.txt" }

[ops.b]
cmd = "cat {in.x} > {out.o}"
in = { x = "alias/a.txt" }
out = { o = "b.txt" }
"#,
        )
        .file("src.txt", "one\n")
        .file("build/a.txt", "stale\n");
    std::os::unix::fs::symlink("build", ws.root().join("alias")).unwrap();
    let out = ws.run(["run"]);
    out.code(2);
    assert!(
        out.stderr.contains("reads alias/a.txt, which is build/a.txt, written by an op"),
        "{}",
        out.stderr
    );
    // Named as what it is, it is an edge.
    ws.write("trove.toml", &ws.read("trove.toml").replace("alias/a.txt", "build/a.txt"));
    run_json(&ws, &[]).ok();
    assert_eq!(ws.read("b.txt"), "one\n");
}
