//! The progress of a run: an indicatif bar (steps done / total, hits,
//! running step names, elapsed) when stderr is a terminal, plain lines
//! otherwise (steps that ran, failed or had outputs restored; memoized steps
//! only in the summary), nothing but warnings under `--json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trove_engine::RunEvent;

use super::human;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live bar (stderr is a terminal).
    Bar,
    /// One line per step event.
    Lines,
    /// Warnings only.
    Quiet,
}

impl Mode {
    /// The mode for this process: quiet under `--json`, a bar on a terminal.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Follows the events of one run.
pub struct Progress {
    mode: Mode,
    paths: BTreeMap<(String, String), String>,
    bar: Option<ProgressBar>,
    running: BTreeSet<String>,
    hits: usize,
    done: u64,
}

impl Progress {
    /// Starts showing progress.
    pub fn new(mode: Mode) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:25} {pos}/{len} steps {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { mode, paths: BTreeMap::new(), bar, running: BTreeSet::new(), hits: 0, done: 0 }
    }

    /// Names restored outputs by path: `(step, output) → path`.
    pub fn with_paths(mut self, paths: BTreeMap<(String, String), String>) -> Progress {
        self.paths = paths;
        self
    }

    fn shown(&self, step: &str, outputs: &[String]) -> String {
        outputs
            .iter()
            .map(|o| self.paths.get(&(step.to_owned(), o.clone())).unwrap_or(o).clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => human::note(text),
        }
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            let running: Vec<&str> = self.running.iter().map(String::as_str).collect();
            let mut msg = format!("· {} memoized", self.hits);
            if !running.is_empty() {
                msg.push_str(&format!(" · running {}", running.join(", ")));
            }
            bar.set_message(msg);
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &RunEvent) {
        let verbose = self.mode != Mode::Quiet;
        match event {
            RunEvent::Planned { total, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total as u64);
                }
            }
            RunEvent::Hit { step, restored } | RunEvent::CutOff { step, restored } => {
                self.hits += 1;
                self.done += 1;
                let what =
                    if matches!(event, RunEvent::Hit { .. }) { "memoized" } else { "cut off " };
                // Memoized steps that needed nothing are counted, not
                // listed: a no-op run of 10k steps prints one line, not 10k.
                // A cut-off step is listed: it explains why a step below an
                // edit did not run.
                let cut_off = matches!(event, RunEvent::CutOff { .. });
                if verbose && (!restored.is_empty() || (cut_off && self.mode == Mode::Lines)) {
                    let mut text = format!("{what} {step}");
                    if !restored.is_empty() {
                        text.push_str(&format!(" (restored {})", self.shown(step, restored)));
                    }
                    self.line(&text);
                }
            }
            RunEvent::Started { step, reasons } => {
                self.running.insert(step.to_string());
                if verbose {
                    self.line(&format!("run      {step}: {}", human::reasons(reasons)));
                }
            }
            RunEvent::Finished { step, duration, .. } => {
                self.running.remove(step.as_str());
                self.done += 1;
                if self.mode == Mode::Lines {
                    self.line(&format!(
                        "done     {step} in {}",
                        human::duration(duration.as_nanos() as u64)
                    ));
                }
            }
            RunEvent::Failed { step, message } => {
                self.running.remove(step.as_str());
                self.done += 1;
                if verbose {
                    self.line(&format!(
                        "FAILED   {step}: {}",
                        message.lines().next().unwrap_or("")
                    ));
                }
            }
            RunEvent::Skipped { step, failed_upstream } => {
                self.done += 1;
                if verbose {
                    self.line(&format!("skipped  {step}: upstream `{failed_upstream}` failed"));
                }
            }
            RunEvent::Warning { step, message } => {
                let text = format!("warning: step `{step}`: {message}");
                match &self.bar {
                    Some(bar) => bar.println(text),
                    None => human::note(&text),
                }
            }
        }
        self.refresh();
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
