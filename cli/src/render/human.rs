//! Human-readable text: reasons in plain words, plans, explanations, run
//! summaries and reports. Functions returning `String` are pure (tested
//! without a process); the others write to stderr.

use std::fmt::Write as _;

use trove_engine::{
    FileChange, Plan, RerunReason, ResourceCause, RunReport, StepOutcome, StepPlan,
};

use crate::pipeline::PipelineError;

/// Prints an error (a pipeline diagnostic as rendered, anything else as
/// `error: ...` with its causes).
pub fn error(e: &anyhow::Error) {
    if let Some(p) = e.downcast_ref::<PipelineError>() {
        super::err(&format!("{p}\n"));
        return;
    }
    super::err(&format!("error: {}\n", chain(e)));
}

/// An error and its causes on one line, `: `-separated, skipping a cause
/// whose text the previous message already ends with.
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Prints a one-line note.
pub fn note(message: &str) {
    super::err(&format!("{message}\n"));
}

/// Prints a warning.
pub fn warning(message: &str) {
    super::err(&format!("warning: {message}\n"));
}

/// Says that trove waits for another process's lock.
pub fn waiting(holder: &impl std::fmt::Display) {
    note(&format!("waiting for the store lock held by {holder} (give --no-wait to fail instead)"));
}

/// A duration in nanoseconds, short: `12ms`, `1.42s`, `2m05s`.
pub fn duration(ns: u64) -> String {
    let ms = ns / 1_000_000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Values in reasons longer than this many characters are cut (a reason is
/// one line of `plan`; the whole value is in `--json`).
const VALUE_CHARS: usize = 80;

/// `text` on one line (control characters escaped), cut to
/// [`VALUE_CHARS`] characters with how much was left out.
fn clip(text: String) -> String {
    let text =
        if text.chars().any(char::is_control) { text.escape_debug().to_string() } else { text };
    match text.char_indices().nth(VALUE_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

fn json_or_absent(v: &Option<String>) -> String {
    v.clone().map_or_else(|| "(absent)".to_owned(), clip)
}

/// An environment value: bare when it is a plain word, quoted (with
/// escapes) when it is empty or holds spaces or control characters, so
/// every value reads on one line and an empty one is seen; cut when long.
fn text_or_unset(v: &Option<String>) -> String {
    match v {
        None => "(unset)".to_owned(),
        Some(v) if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            clip(v.clone())
        }
        Some(v) => clip(format!("{v:?}")),
    }
}

/// A stable machine name of a reason (for `--json`).
pub fn reason_kind(reason: &RerunReason) -> &'static str {
    match reason {
        RerunReason::NoPreviousTrace => "no_previous_run",
        RerunReason::MemoDisabled => "memo_disabled",
        RerunReason::Forced => "forced",
        RerunReason::Unversioned => "unversioned",
        RerunReason::OutputMissing { .. } => "output_missing",
        RerunReason::OutputCorrupt { .. } => "output_corrupt",
        RerunReason::SchemeChanged { .. } => "scheme_changed",
        RerunReason::CodeVersionChanged { .. } => "code_version_changed",
        RerunReason::CodeFileChanged { .. } => "code_file_changed",
        RerunReason::SourceTextChanged => "command_changed",
        RerunReason::ConfigChanged { .. } => "config_changed",
        RerunReason::ResourceChanged { .. } => "resource_changed",
        RerunReason::ResourceAdded { .. } => "resource_added",
        RerunReason::ResourceRemoved { .. } => "resource_removed",
        RerunReason::EnvChanged { .. } => "env_changed",
        RerunReason::InputChanged { .. } => "input_changed",
        RerunReason::InputRewired { .. } => "input_rewired",
        RerunReason::InputAdded { .. } => "input_added",
        RerunReason::InputRemoved { .. } => "input_removed",
        RerunReason::OutputsChanged { .. } => "outputs_changed",
        _ => "version_changed",
    }
}

/// A reason in plain words: `config.min 10 → 12`.
pub fn reason(reason: &RerunReason) -> String {
    match reason {
        RerunReason::NoPreviousTrace => "no previous run".to_owned(),
        RerunReason::MemoDisabled => "memoization is off for this run (--no-memo)".to_owned(),
        RerunReason::Forced => "forced (--force)".to_owned(),
        RerunReason::Unversioned => "no code version: runs every time".to_owned(),
        RerunReason::OutputMissing { output } => format!("output {output} is not stored"),
        RerunReason::OutputCorrupt { output, detail } => {
            format!("stored output {output} is corrupt ({detail})")
        }
        RerunReason::SchemeChanged { old, new } => {
            format!("trove's version scheme changed ({old} → {new})")
        }
        RerunReason::CodeVersionChanged { old, new } => format!(
            "code: version {} → {}",
            old.as_deref().map_or("(none)".to_owned(), |v| format!("\"{v}\"")),
            new.as_deref().map_or("(none)".to_owned(), |v| format!("\"{v}\""))
        ),
        RerunReason::CodeFileChanged { path, change } => match change {
            FileChange::Modified => format!("code: {path} changed"),
            FileChange::Added => format!("code: {path} added"),
            FileChange::Removed => format!("code: {path} removed"),
        },
        RerunReason::SourceTextChanged => "code: command changed".to_owned(),
        RerunReason::ConfigChanged { key, old, new } => {
            let key = if key.is_empty() { "config".to_owned() } else { format!("config.{key}") };
            format!("{key} {} → {}", json_or_absent(old), json_or_absent(new))
        }
        RerunReason::ResourceChanged { resource, cause } => match cause {
            ResourceCause::Code { old, new } => {
                let (old, new) = strip_common_words(
                    old.as_deref().unwrap_or("(none)"),
                    new.as_deref().unwrap_or("(none)"),
                );
                format!(
                    "resource {resource}: version changed ({} → {})",
                    clip(old.to_owned()),
                    clip(new.to_owned())
                )
            }
            ResourceCause::Config { key, old, new } => format!(
                "resource {resource}: config.{key} {} → {}",
                json_or_absent(old),
                json_or_absent(new)
            ),
            ResourceCause::Dependency { dependency } => {
                format!("resource {resource}: it depends on resource {dependency}, which changed")
            }
            _ => format!("resource {resource}: version changed"),
        },
        RerunReason::ResourceAdded { resource } => format!("resource {resource} is now required"),
        RerunReason::ResourceRemoved { resource } => {
            format!("resource {resource} is no longer required")
        }
        // Same value on both sides: the variable was declared or dropped.
        RerunReason::EnvChanged { name, old, new } if old == new => {
            format!("declared environment changed: {name} is {}", text_or_unset(new))
        }
        RerunReason::EnvChanged { name, old, new } => {
            format!("env {name}: {} → {}", text_or_unset(old), text_or_unset(new))
        }
        RerunReason::InputChanged { input, from, path } => {
            match (path, from.strip_prefix("source ")) {
                (Some(path), Some(_)) => format!("input {input} ({path}) changed"),
                (None, Some(src)) => format!("input {input} ({src}) changed"),
                // A wired input contributes its upstream output (the whole
                // directory, for a path inside one; in lineage mode, its
                // version, not its bytes): name what changed.
                (Some(path), None) => format!("input {input} ({path}): upstream {from} changed"),
                (None, None) => format!("input {input}: upstream {from} changed"),
            }
        }
        RerunReason::InputRewired { input, old, new } => {
            format!("input {input} now reads {new} (was {old})")
        }
        RerunReason::InputAdded { input } => format!("input {input} added"),
        RerunReason::InputRemoved { input } => format!("input {input} removed"),
        RerunReason::OutputsChanged { old, new } => {
            let list = |l: &[String]| if l.is_empty() { "(none)".to_owned() } else { l.join(", ") };
            format!("outputs changed: {} → {}", list(old), list(new))
        }
        _ => "its version changed".to_owned(),
    }
}

/// Drops the leading words two version strings share: `Python 3.11.7` and
/// `Python 3.12.1` become `3.11.7` and `3.12.1`.
fn strip_common_words<'a>(old: &'a str, new: &'a str) -> (&'a str, &'a str) {
    let (mut a, mut b) = (old.trim(), new.trim());
    while let (Some((wa, ra)), Some((wb, rb))) = (a.split_once(' '), b.split_once(' ')) {
        if wa != wb || ra.trim().is_empty() || rb.trim().is_empty() {
            break;
        }
        (a, b) = (ra.trim_start(), rb.trim_start());
    }
    (a, b)
}

/// Reasons joined for one line.
pub fn reasons(list: &[RerunReason]) -> String {
    if list.is_empty() {
        return "its version changed".to_owned();
    }
    list.iter().map(reason).collect::<Vec<_>>().join("; ")
}

/// The plan, step by step. `after`: for steps that run, the upstream
/// steps that run (or wait) before them; `failed`: steps that never
/// succeeded but did run, and failed, last time.
pub fn plan(
    plan: &Plan,
    after: &std::collections::HashMap<String, Vec<String>>,
    failed: &std::collections::HashSet<String>,
) -> String {
    let width = plan.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    let mut out = String::new();
    let names = |on: &[String]| on.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
    for s in &plan.steps {
        let line = match &s.plan {
            StepPlan::Hit { .. } => "memoized".to_owned(),
            StepPlan::Run(r) => {
                let why = if failed.contains(s.step.as_str()) {
                    "no successful run yet (the last one failed)".to_owned()
                } else {
                    reasons(r)
                };
                match after.get(s.step.as_str()) {
                    Some(first) => format!("run: {why} (after {})", names(first)),
                    None => format!("run: {why}"),
                }
            }
            StepPlan::Waiting { on } => {
                format!("waits on {}: runs only if its inputs come out different", names(on))
            }
        };
        let _ = writeln!(out, "  {:width$}  {line}", s.step);
    }
    let (hit, run, waiting) = plan.counts();
    let _ = writeln!(
        out,
        "{}: {run} to run, {hit} memoized, {waiting} waiting on upstream results",
        count(plan.steps.len(), "step")
    );
    out
}

/// The full explanation of one step.
pub fn why(plan: &Plan, step: &str, last_run: Option<&str>) -> String {
    let mut out = String::new();
    let Some(planned) = plan.step(step) else {
        return format!("step `{step}` is not in the plan\n");
    };
    match &planned.plan {
        StepPlan::Hit { outputs } => {
            let _ = writeln!(out, "`{step}` is memoized: nothing it depends on changed.");
            if let Some(run) = last_run {
                let _ = writeln!(out, "  last ran in run {run}");
            }
            for (name, version, data) in outputs {
                let _ = writeln!(
                    out,
                    "  output {name}: version {} data {}",
                    version.short(12),
                    data.short(12)
                );
            }
        }
        StepPlan::Run(r) => {
            let _ = writeln!(out, "`{step}` will run because:");
            for reason_ in r {
                let _ = writeln!(out, "  - {}", reason(reason_));
            }
            if let Some(run) = last_run {
                let _ = writeln!(out, "  (compared with its trace from run {run})");
            }
        }
        StepPlan::Waiting { on } => {
            let _ = writeln!(
                out,
                "`{step}` waits on {}: it runs only if their new outputs differ (early cutoff).",
                on.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            );
            let _ = writeln!(out, "upstream chain:");
        }
    }
    if let StepPlan::Waiting { .. } = &planned.plan {
        for cause in plan.causes(step) {
            match &cause.plan {
                StepPlan::Run(r) => {
                    let _ = writeln!(out, "  `{}` runs because:", cause.step);
                    for reason_ in r {
                        let _ = writeln!(out, "    - {}", reason(reason_));
                    }
                }
                StepPlan::Waiting { on } => {
                    let _ = writeln!(
                        out,
                        "  `{}` waits on {}",
                        cause.step,
                        on.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                    );
                }
                StepPlan::Hit { .. } => {}
            }
        }
    }
    out
}

/// The one-line summary of a run.
pub fn summary(report: &RunReport) -> String {
    let c = &report.counts;
    let mut out = format!(
        "{} in {}: {} ran, {} memoized, {} cut off, {} failed",
        count(report.steps.len(), "step"),
        duration(report.duration_ns),
        c.ran,
        c.hit,
        c.cut_off,
        c.failed
    );
    if c.skipped > 0 {
        let _ = write!(out, ", {} skipped", c.skipped);
    }
    if c.not_run > 0 {
        let _ = write!(out, ", {} not run", c.not_run);
    }
    let _ =
        write!(out, ", {} output{} restored", c.restored, if c.restored == 1 { "" } else { "s" });
    out
}

/// What each failed step said, for the end of a run.
pub fn failures(report: &RunReport) -> String {
    let mut out = String::new();
    for s in &report.steps {
        if let StepOutcome::Failed { message, .. } = &s.outcome {
            let mut lines = message.lines();
            let _ =
                writeln!(out, "error: step `{}` failed: {}", s.step, lines.next().unwrap_or(""));
            for line in lines {
                let _ = writeln!(out, "  | {line}");
            }
            let _ = writeln!(out, "  (full output: trove log --step {})", s.step);
        }
    }
    out
}

/// One step outcome in words (for `trove show`).
pub fn outcome(outcome: &StepOutcome) -> String {
    match outcome {
        StepOutcome::Hit { restored } if restored.is_empty() => "memoized".to_owned(),
        StepOutcome::Hit { restored } => format!("memoized (restored {})", restored.join(", ")),
        StepOutcome::CutOff { restored } if restored.is_empty() => "cut off".to_owned(),
        StepOutcome::CutOff { restored } => format!("cut off (restored {})", restored.join(", ")),
        // No reasons: recovered from the commits of a run that died.
        StepOutcome::Ran { reasons: r, duration_ns } if r.is_empty() => {
            format!("ran in {}", duration(*duration_ns))
        }
        StepOutcome::Ran { reasons: r, duration_ns } => {
            format!("ran in {}: {}", duration(*duration_ns), reasons(r))
        }
        StepOutcome::Failed { message, .. } => {
            format!("failed: {}", message.lines().next().unwrap_or(""))
        }
        StepOutcome::Skipped { failed_upstream } => {
            format!("skipped: upstream `{failed_upstream}` failed")
        }
        _ => "not run".to_owned(),
    }
}

/// A run state in one word.
pub fn run_state(state: trove_store::RunState) -> &'static str {
    match state {
        trove_store::RunState::Running => "running",
        trove_store::RunState::Succeeded => "succeeded",
        trove_store::RunState::Failed => "failed",
        trove_store::RunState::Cancelled => "cancelled",
        _ => "interrupted",
    }
}

/// Past runs, newest first.
pub fn runs(list: &[trove_store::RunRecord]) -> String {
    if list.is_empty() {
        return "no runs yet: start one with `trove run`\n".to_owned();
    }
    let mut out = String::new();
    for r in list {
        let c = &r.counts;
        let mut line = format!(
            "{}  {}  {:<11}  {} ran, {} memoized, {} cut off, {} failed  {}",
            r.run_id,
            trove_store::format_utc(r.started_at_ms),
            run_state(r.status),
            c.ran,
            c.hit,
            c.cut_off,
            c.failed,
            duration(r.duration_ns)
        );
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !tags.is_empty() {
            let _ = write!(line, "  [{}]", tags.join(" "));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// One run step by step.
pub fn show(detail: &trove_store::RunDetail) -> String {
    let r = &detail.record;
    let mut out = format!(
        "run {} of job {}: {} ({})\nstarted {}\ncommand: {}\n",
        r.run_id,
        r.job,
        run_state(r.status),
        duration(r.duration_ns),
        trove_store::format_utc(r.started_at_ms),
        r.command
    );
    if !r.tags.is_empty() {
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "tags: {}", tags.join(" "));
    }
    let width = detail.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    for s in &detail.steps {
        let _ = writeln!(out, "  {:width$}  {}", s.step, outcome(&s.outcome));
    }
    if detail.steps.is_empty() {
        let _ = writeln!(out, "  (no step finished: the run did not complete)");
    } else if r.status == trove_store::RunState::Interrupted {
        let _ = writeln!(out, "  (the run was interrupted: these steps finished before it died)");
    }
    out
}

/// A step's last captured output.
pub fn step_log(log: &trove_store::StepLogRecord) -> String {
    let mut out = format!("step {} in run {}", log.step, log.run_id);
    match (&log.failure, log.exit_code) {
        (None, _) => out.push_str(": succeeded\n"),
        (Some(f), _) => {
            let _ = writeln!(out, ": failed: {}", f.lines().next().unwrap_or(""));
        }
    }
    let section = |out: &mut String, name: &str, bytes: &[u8]| {
        let _ = writeln!(out, "--- {name} ---");
        let text = String::from_utf8_lossy(bytes);
        out.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    };
    section(&mut out, "stdout", &log.stdout);
    section(&mut out, "stderr", &log.stderr);
    out
}

/// Bytes, short: `512 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `n` and a noun, singular or plural: `1 blob`, `2 blobs`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// What gc removed.
pub fn gc(r: &trove_store::GcReport) -> String {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    format!(
        "{verb} {}, {}, {}, {} ({}); kept {} ({})\n",
        count(r.runs_removed, "run"),
        count(r.traces_removed, "trace"),
        count(r.outputs_removed, "stored output"),
        count(r.blobs_removed, "blob"),
        bytes(r.bytes_freed),
        count(r.blobs_kept, "blob"),
        bytes(r.bytes_kept)
    )
}

/// What verify found.
pub fn verify(r: &trove_store::VerifyReport) -> String {
    let mut out = format!(
        "checked {} ({}), {}, {}; {}\n",
        count(r.blobs_checked, "blob"),
        bytes(r.bytes_checked),
        count(r.records_checked, "record"),
        count(r.traces_checked, "trace"),
        count(r.orphan_blobs, "orphan blob")
    );
    for p in &r.problems {
        let _ = writeln!(out, "problem: {}: {}", p.what, p.detail);
    }
    for q in &r.quarantined {
        let _ = writeln!(out, "quarantined {q}");
    }
    if r.is_clean() {
        out.push_str("the store is sound\n");
    } else {
        let _ = writeln!(
            out,
            "{}: the affected steps will run again on the next `trove run`",
            count(r.problems.len(), "problem")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reason_: RerunReason, expect: &str) {
        assert_eq!(reason(&reason_), expect);
    }

    #[test]
    fn reasons_read_as_plain_words() {
        check(RerunReason::NoPreviousTrace, "no previous run");
        check(
            RerunReason::ConfigChanged {
                key: "min".into(),
                old: Some("10".into()),
                new: Some("12".into()),
            },
            "config.min 10 → 12",
        );
        check(
            RerunReason::ResourceChanged {
                resource: "python".into(),
                cause: ResourceCause::Code {
                    old: Some("3.11.7".into()),
                    new: Some("3.12.1".into()),
                },
            },
            "resource python: version changed (3.11.7 → 3.12.1)",
        );
        check(
            RerunReason::ResourceChanged {
                resource: "python".into(),
                cause: ResourceCause::Code {
                    old: Some("Python 3.11.7".into()),
                    new: Some("Python 3.12.1".into()),
                },
            },
            "resource python: version changed (3.11.7 → 3.12.1)",
        );
        check(
            RerunReason::InputChanged {
                input: "raw".into(),
                from: "source data/raw.csv".into(),
                path: Some("data/raw.csv".into()),
            },
            "input raw (data/raw.csv) changed",
        );
        check(
            RerunReason::InputChanged {
                input: "f".into(),
                from: "a.d".into(),
                path: Some("d/f".into()),
            },
            "input f (d/f): upstream a.d changed",
        );
        check(
            RerunReason::CodeFileChanged { path: "clean.py".into(), change: FileChange::Modified },
            "code: clean.py changed",
        );
        check(
            RerunReason::EnvChanged { name: "LANG".into(), old: None, new: Some("C".into()) },
            "env LANG: (unset) → C",
        );
        check(
            RerunReason::EnvChanged {
                name: "V".into(),
                old: Some(String::new()),
                new: Some("a b\nc".into()),
            },
            r#"env V: "" → "a b\nc""#,
        );
        check(
            RerunReason::EnvChanged { name: "V".into(), old: None, new: Some("x".repeat(1000)) },
            &format!("env V: (unset) → {}… (1000 bytes)", "x".repeat(80)),
        );
        check(
            RerunReason::EnvChanged { name: "V".into(), old: None, new: None },
            "declared environment changed: V is (unset)",
        );
        check(
            RerunReason::ConfigChanged {
                key: "title".into(),
                old: None,
                new: Some("\"x\"".into()),
            },
            "config.title (absent) → \"x\"",
        );
    }

    #[test]
    fn durations_and_sizes_are_short() {
        assert_eq!(duration(12_000_000), "12ms");
        assert_eq!(duration(1_420_000_000), "1.42s");
        assert_eq!(duration(125_000_000_000), "2m05s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
