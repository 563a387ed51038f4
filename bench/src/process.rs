//! Running the tools under measurement as processes: the `trove` binary
//! (`trove run --json`), ninja and make, each timed from spawn to exit.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::emit::Peer;
use crate::workspace::{Tool, Workspace};

/// One timed run of a tool.
#[derive(Clone, Debug)]
pub struct RunSample {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Steps the tool says it ran (trove's report), or that appended to
    /// `ran.log` (peers).
    pub ran: usize,
    /// Steps that appended to `ran.log`.
    pub logged: usize,
    /// Named phase timings the tool reported, in seconds.
    pub phases: Vec<(String, f64)>,
}

// The benchmark spawns the tools it measures; it runs no user command, so
// the command-op runner (which quotes pipeline arguments) does not apply.
#[allow(clippy::disallowed_methods)]
fn command(program: &Path) -> Command {
    Command::new(program)
}

/// Whether a peer is installed (it answers `--version`).
pub fn peer_installed(peer: Peer) -> bool {
    command(Path::new(peer.name()))
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn timed(mut cmd: Command) -> Result<(Duration, Output), String> {
    let started = Instant::now();
    let output = cmd.output().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let wall = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    Ok((wall, output))
}

/// Runs the workspace's tool once and counts what ran.
pub fn run_once(ws: &Workspace, trove_exe: &Path, jobs: usize) -> Result<RunSample, String> {
    let jobs = jobs.to_string();
    let mut cmd = match ws.tool {
        Tool::Trove => {
            let mut cmd = command(trove_exe);
            cmd.args(["run", "--json", "-j", &jobs]);
            cmd
        }
        Tool::Peer(Peer::Ninja) => {
            let mut cmd = command(Path::new("ninja"));
            cmd.args(["-j", &jobs, "-f", "build.ninja"]);
            cmd
        }
        Tool::Peer(Peer::Make) => {
            let mut cmd = command(Path::new("make"));
            cmd.args(["-r", "-R", "-s", "-j", &jobs, "-f", "Makefile", "all"]);
            cmd
        }
    };
    cmd.current_dir(&ws.root).stdin(Stdio::null());
    if ws.tool != Tool::Trove {
        cmd.stdout(Stdio::null());
    }
    let (wall, output) = timed(cmd)?;
    let logged = ws
        .take_ran_log()
        .map_err(|e| format!("reading ran.log in {}: {e}", ws.root.display()))?
        .len();
    if ws.tool != Tool::Trove {
        return Ok(RunSample { wall, ran: logged, logged, phases: Vec::new() });
    }
    let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "`trove run --json` printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&output.stdout).chars().take(400).collect::<String>()
        )
    })?;
    let ran = ran_count(&report).ok_or_else(|| {
        "`trove run --json` report has no count of steps that ran (`counts.ran`)".to_owned()
    })?;
    Ok(RunSample { wall, ran, logged, phases: phases(&report) })
}

/// The number of steps that ran, from a `trove run --json` report: the
/// `counts.ran` field (`RunReport`'s shape), else the steps whose outcome is
/// `ran`.
pub fn ran_count(report: &Value) -> Option<usize> {
    for ptr in ["/counts/ran", "/summary/ran", "/counts/executed"] {
        if let Some(n) = report.pointer(ptr).and_then(Value::as_u64) {
            return usize::try_from(n).ok();
        }
    }
    let steps = report.get("steps")?.as_array()?;
    Some(
        steps
            .iter()
            .filter(|s| {
                let outcome = s.get("outcome");
                let tag = outcome
                    .and_then(|o| o.as_str().or_else(|| o.get("kind").and_then(Value::as_str)));
                tag.is_some_and(|t| t.eq_ignore_ascii_case("ran"))
                    || outcome.and_then(|o| o.get("Ran")).is_some()
            })
            .count(),
    )
}

/// Phase timings a report may carry (`timings` or `phases`: name → seconds,
/// or name → `{ "ns": .. }` / `*_ns` / `*_ms` numbers).
pub fn phases(report: &Value) -> Vec<(String, f64)> {
    let Some(map) =
        ["timings", "phases"].iter().find_map(|k| report.get(*k).and_then(Value::as_object))
    else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, v)| {
            let n = v.as_f64().or_else(|| v.get("ns").and_then(Value::as_f64))?;
            let (name, secs) = if let Some(base) = name.strip_suffix("_ns") {
                (base, n / 1e9)
            } else if let Some(base) = name.strip_suffix("_us") {
                (base, n / 1e6)
            } else if let Some(base) = name.strip_suffix("_ms") {
                (base, n / 1e3)
            } else if v.is_object() {
                (name.as_str(), n / 1e9)
            } else {
                (name.as_str(), n)
            };
            Some((name.to_owned(), secs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_a_run_report_shape() {
        let report = serde_json::json!({"schema": 1, "counts": {"ran": 3, "hit": 7}});
        assert_eq!(ran_count(&report), Some(3));
        let steps = serde_json::json!({"steps": [
            {"step": "a", "outcome": "ran"}, {"step": "b", "outcome": {"kind": "hit"}},
            {"step": "c", "outcome": {"Ran": {"reasons": []}}}]});
        assert_eq!(ran_count(&steps), Some(2));
        assert_eq!(ran_count(&serde_json::json!({})), None);
    }

    #[test]
    fn phase_timings_in_any_unit() {
        let report =
            serde_json::json!({"timings": {"parse_ns": 2_000_000, "stat_ms": 3.0, "x": 0.5}});
        let mut p = phases(&report);
        p.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(p, [("parse".into(), 0.002), ("stat".into(), 0.003), ("x".into(), 0.5)]);
    }
}
