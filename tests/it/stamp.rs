//! The up-to-date stamp of `trove run` (`cli/src/uptodate.rs`): a no-op
//! run is answered from file stats; an edit of sources or code files builds
//! only the steps it reaches; and every other kind of change the full path
//! would see — the pipeline text, a declared variable, a `version_cmd`, a
//! deleted or edited output, records removed by `gc` — makes the run take
//! the full path. Either way the run does exactly what a `--full-check` run
//! does.

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
fn every_kind_of_change_is_seen_and_done_as_the_full_check_would() {
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

/// When only source or code files changed since the stamped run, the job is
/// built of the steps they reach alone (their upstream outputs read from
/// outside it): they get the versions the whole job would give them, the
/// rest is reported memoized, and a `--full-check` run afterwards agrees.
#[test]
fn an_edit_builds_only_the_steps_it_reaches_and_the_full_check_agrees() {
    let ws = workspace();
    run(&ws, "hi", &[]);
    settle(&ws, "hi");
    ws.write("src/lib.txt", "LIB 2\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "compile:memoized link:ran greet:memoized");
    assert_eq!(out.json()["counts"]["memoized"], 2, "{}", out.stdout);
    assert_eq!(ws.read("build/app"), "MAIN\nLIB 2\n");
    let full = run(&ws, "hi", &["--full-check"]);
    assert_eq!(full.outcomes(), "compile:memoized link:memoized greet:memoized");
    // The run after it is answered by the stamp again.
    let again = run(&ws, "hi", &[]);
    assert_eq!(again.outcomes(), "compile:memoized link:memoized greet:memoized");
    // A code file: its op and what reads it.
    ws.write("build.sh", "tr a-z A-Z < \"$1\" | rev\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "compile:ran link:ran greet:memoized");
    assert_eq!(ws.read("build/app"), "NIAM\nLIB 2\n");
    // Traces of a cut name their inputs as the whole job does: `link` read
    // `compile.obj` from outside the last cut and from inside this one.
    let reasons = out.json()["steps"][1]["reasons"].to_string();
    assert!(reasons.contains("obj") && !reasons.contains("now reads"), "{reasons}");
    let full = run(&ws, "hi", &["--full-check"]);
    assert_eq!(full.outcomes(), "compile:memoized link:memoized greet:memoized");
    // Back to a content built before: a hit, restored, nothing runs.
    ws.write("src/lib.txt", "lib\n");
    ws.write("build.sh", "tr a-z A-Z < \"$1\"\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
    assert_eq!(ws.read("build/app"), "MAIN\nlib\n");
}

/// Random pipelines and random edits of their sources and code files: after
/// every edit the outputs are what the commands make of the current files,
/// and a `--full-check` run finds nothing to do — the steps an edit reached
/// were versioned exactly as the whole job versions them.
#[test]
fn random_edits_built_as_cuts_match_the_whole_job() {
    for seed in 1..=3u64 {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        const OPS: usize = 7;
        let mut toml = String::from("[job]\nname = \"random\"\n");
        // Per op: the sources and upstream ops it reads, and its code file.
        let mut reads: Vec<(Vec<usize>, Vec<usize>, Option<usize>)> = Vec::new();
        for i in 0..OPS {
            let sources: Vec<usize> = (0..3).filter(|_| next(3) == 0).collect();
            let ups: Vec<usize> = (0..i).filter(|_| next(3) == 0).collect();
            let code = (next(2) == 0).then(|| next(2) as usize);
            let mut ins = Vec::new();
            for s in &sources {
                ins.push(format!("s{s} = \"src/{s}.txt\""));
            }
            for u in &ups {
                ins.push(format!("u{u} = \"out/{u}.txt\""));
            }
            let cat: Vec<String> = sources
                .iter()
                .map(|s| format!("{{in.s{s}}}"))
                .chain(ups.iter().map(|u| format!("{{in.u{u}}}")))
                .collect();
            let tool = code.map_or("cat".to_owned(), |c| format!("sh tool{c}.sh"));
            toml.push_str(&format!(
                "\n[ops.op{i}]\ncmd = \"(echo op{i}; cat {} /dev/null) | {tool} > {{out.o}}\"\nin = {{ {} }}\nout = {{ o = \"out/{i}.txt\" }}\n",
                cat.join(" "),
                ins.join(", ")
            ));
            if let Some(c) = code {
                toml.push_str(&format!("code = [\"tool{c}.sh\"]\n"));
            }
            reads.push((sources, ups, code));
        }
        let mut ws = TestWorkspace::new().file("trove.toml", &toml);
        let mut files: Vec<(String, String)> = Vec::new();
        for s in 0..3 {
            files.push((format!("src/{s}.txt"), format!("source {s}\n")));
        }
        for c in 0..2 {
            files.push((format!("tool{c}.sh"), "cat\n".to_owned()));
        }
        for (path, text) in &files {
            ws = ws.file(path, text);
        }
        // What the commands make of the current files.
        let expected = |files: &[(String, String)]| -> Vec<String> {
            let get = |p: &str| files.iter().find(|(f, _)| f == p).map(|(_, t)| t.clone()).unwrap();
            let mut outs: Vec<String> = Vec::new();
            for (i, (sources, ups, code)) in reads.iter().enumerate() {
                let mut text = format!("op{i}\n");
                for s in sources {
                    text.push_str(&get(&format!("src/{s}.txt")));
                }
                for &u in ups {
                    text.push_str(&outs[u]);
                }
                if let Some(c) = code {
                    // tool scripts are `cat`, optionally followed by `tr`.
                    if get(&format!("tool{c}.sh")).contains("tr") {
                        text = text.to_uppercase();
                    }
                }
                outs.push(text);
            }
            outs
        };
        run(&ws, "hi", &[]);
        run(&ws, "hi", &[]);
        for round in 0..8 {
            // Edit one or two files: new bytes, or back to an older text.
            for _ in 0..=next(2) {
                let f = next(files.len() as u64) as usize;
                let text = if files[f].0.starts_with("tool") {
                    if next(2) == 0 { "cat\n" } else { "cat | tr a-z A-Z\n" }.to_owned()
                } else {
                    format!("source {} v{}\n", files[f].0, next(3))
                };
                files[f].1 = text;
                ws.write(&files[f].0, &files[f].1);
            }
            let out = run(&ws, "hi", &[]);
            let want = expected(&files);
            for (i, text) in want.iter().enumerate() {
                assert_eq!(
                    ws.read(&format!("out/{i}.txt")),
                    *text,
                    "seed {seed} round {round} op{i}\n{toml}"
                );
            }
            let full = run(&ws, "hi", &["--full-check"]);
            assert!(
                !full.outcomes().contains(":ran"),
                "seed {seed} round {round}: the full check re-ran {}\nafter {}\n{toml}",
                full.outcomes(),
                out.outcomes()
            );
        }
    }
}

/// A cut takes the resources' `version_cmd` outputs the stamp check just
/// re-ran and compared: each probe runs once per run, not twice.
#[test]
fn a_cut_runs_each_version_cmd_once() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            r#"
[resources.tool]
version_cmd = "echo probed >> probes.log; echo tool 1"

[ops.a]
cmd = "cat {in.src} > {out.o}"
in = { src = "src.txt" }
out = { o = "a.txt" }
resources = ["tool"]

[ops.b]
cmd = "cat {in.a} {in.other} > {out.o}"
in = { a = "a.txt", other = "other.txt" }
out = { o = "b.txt" }
"#,
        )
        .file("src.txt", "1\n")
        .file("other.txt", "x\n");
    let probes = || ws.read("probes.log").lines().count();
    run(&ws, "hi", &[]);
    run(&ws, "hi", &[]);
    let before = probes();
    ws.write("other.txt", "y\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "a:memoized b:ran");
    assert_eq!(probes(), before + 1, "the stamp check's run only");
    ws.write("src.txt", "2\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "a:ran b:ran");
    assert_eq!(ws.read("b.txt"), "2\ny\n");
    let full = run(&ws, "hi", &["--full-check"]);
    assert_eq!(full.outcomes(), "a:memoized b:memoized");
}

/// The one stamp file of the workspace's store.
fn stamp_file(ws: &TestWorkspace) -> std::path::PathBuf {
    let dir = ws.root().join(".trove/stamps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("a stamps directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

/// A stamp is a file beside the database, rewritten after the commit that
/// records the run's end; a crash in between leaves the previous one. Such
/// a stamp (or one a run failed to remove) still vouches only for the
/// workspace state it recorded: put back in place after later runs, it
/// answers nothing the full check would not.
#[test]
fn a_stamp_left_behind_by_a_crash_never_answers_wrongly() {
    let ws = workspace();
    run(&ws, "hi", &[]);
    settle(&ws, "hi");
    let old = std::fs::read(stamp_file(&ws)).expect("read the stamp");
    // Later runs: an edit, then another back to the original text (the
    // outputs are rewritten each time, so their stats are not the old ones).
    ws.write("src/lib.txt", "LIB\n");
    run(&ws, "hi", &[]);
    ws.write("src/lib.txt", "lib\n");
    let out = run(&ws, "hi", &[]);
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
    // As if the last stamp had never been written.
    std::fs::write(stamp_file(&ws), &old).expect("put the old stamp back");
    let out = run(&ws, "hi", &[]);
    assert!(!stamped(&out), "the workspace is not in the old stamp's state");
    assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
    assert_eq!(ws.read("build/app"), "MAIN\nlib\n");
    let full = run(&ws, "hi", &["--full-check"]);
    assert_eq!(full.outcomes(), "compile:memoized link:memoized greet:memoized");
    // A stamp of records `gc` has since removed answers nothing either.
    settle(&ws, "hi");
    let kept = std::fs::read(stamp_file(&ws)).expect("read the stamp");
    ws.run(["gc", "--keep-runs", "1"]).ok();
    std::fs::write(stamp_file(&ws), &kept).expect("put the stamp back");
    let out = run(&ws, "hi", &[]);
    assert!(!stamped(&out), "gc gave the store a new epoch");
}

/// A stamp file cut short or with a flipped byte is no stamp: the run takes
/// the full path, says nothing alarming, and writes a good one.
#[test]
fn a_damaged_stamp_file_is_no_stamp() {
    let ws = workspace();
    run(&ws, "hi", &[]);
    settle(&ws, "hi");
    let path = stamp_file(&ws);
    let good = std::fs::read(&path).expect("read the stamp");
    for damaged in [good[..good.len() / 2].to_vec(), {
        let mut flipped = good.clone();
        flipped[good.len() / 3] ^= 0x40;
        flipped
    }] {
        std::fs::write(&path, &damaged).expect("damage the stamp");
        let out = run(&ws, "hi", &[]);
        assert!(!stamped(&out));
        assert_eq!(out.outcomes(), "compile:memoized link:memoized greet:memoized");
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        let again = run(&ws, "hi", &[]);
        assert!(stamped(&again), "the full run wrote a good stamp");
    }
}

/// Runs `trove.toml` (with `args`) until the stamp answers.
#[track_caller]
fn settle_plain(ws: &TestWorkspace, args: &[&str]) {
    for _ in 0..3 {
        let mut all = vec!["run", "--json"];
        all.extend_from_slice(args);
        let out = ws.run(&all);
        out.ok();
        if stamped(&out) {
            return;
        }
    }
    panic!("the stamp never answered");
}

/// Another pipeline in the same store may run a step of the same name. For
/// a step without outputs the last trace is the record that it is done, so
/// once the other pipeline has replaced it the first one's stamp must not
/// answer: the full path runs the step again, and so must the stamped path.
#[test]
fn a_step_without_outputs_redone_by_another_pipeline_takes_the_stamp_off() {
    let ws = TestWorkspace::new()
        .file(
            "trove.toml",
            "[job]\nname = \"a\"\n[ops.announce]\ncmd = \"echo a >> announced.log\"\n",
        )
        .file(
            "other.toml",
            "[job]\nname = \"b\"\n[ops.announce]\ncmd = \"echo b >> announced.log\"\n",
        );
    settle_plain(&ws, &[]);
    let other = ws.run(["run", "--json", "-f", "other.toml"]);
    other.ok();
    assert_eq!(other.outcomes(), "announce:ran");
    let back = ws.run(["run", "--json"]);
    back.ok();
    assert!(!stamped(&back), "{}", back.stdout);
    assert_eq!(back.outcomes(), "announce:ran", "the full path runs it again");
    assert_eq!(ws.read("announced.log"), "a\nb\na\n");
}

/// Two checkouts sharing one store: a forced re-run in one of them that
/// produces different bytes replaces the stored output the other's stamp
/// was made against. The other checkout must see the output the store now
/// holds, as its full path would (restored, downstream re-versioned).
#[test]
fn an_output_replaced_through_a_shared_store_takes_the_stamp_off() {
    const PIPELINE: &str = r#"
[job]
name = "shared"

[ops.gen]
cmd = "cat seed.txt > {out.o}"
out = { o = "build/o.txt" }

[ops.use]
cmd = "cat {in.o} {in.o} > {out.u}"
in = { o = "build/o.txt" }
out = { u = "build/u.txt" }
"#;
    let first = TestWorkspace::new().file("trove.toml", PIPELINE).file("seed.txt", "one\n");
    let second = TestWorkspace::new().file("trove.toml", PIPELINE).file("seed.txt", "one\n");
    let store = first.tmp().join("shared-store");
    let store = store.to_str().expect("utf-8 path");
    settle_plain(&first, &["--store", store]);
    assert_eq!(first.read("build/u.txt"), "one\none\n");
    let hit = second.run(["run", "--json", "--store", store]);
    hit.ok();
    assert_eq!(hit.outcomes(), "gen:memoized use:memoized");
    // `gen` is not a function of what trove sees: its re-run makes other
    // bytes, which replace the record at the same version.
    std::fs::write(second.root().join("seed.txt"), "two\n").expect("write");
    let forced = second.run(["run", "--json", "--store", store, "--force", "gen"]);
    forced.ok();
    assert_eq!(second.read("build/u.txt"), "two\ntwo\n");
    let back = first.run(["run", "--json", "--store", store]);
    back.ok();
    assert!(!stamped(&back), "{}", back.stdout);
    let full = first.run(["run", "--json", "--store", store, "--full-check"]);
    full.ok();
    assert_eq!(back.outcomes(), full.outcomes());
    assert_eq!(first.read("build/o.txt"), "two\n", "the store's bytes, as the full path has them");
    assert_eq!(first.read("build/u.txt"), "two\ntwo\n");
}
