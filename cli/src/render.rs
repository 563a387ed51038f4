//! Everything trove prints: [`human`] text on stderr, [`json`] documents on
//! stdout (`--json`, with a `"schema": 1` field), and the [`progress`] of a
//! run. Writes to stdout return errors instead of panicking, so a closed
//! pipe (`trove log | head`) ends trove quietly.

pub mod human;
pub mod json;
pub mod progress;

use std::io::Write as _;

/// Writes text to stdout.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes a JSON document (and a newline) to stdout.
pub fn out_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    out(&text)
}

/// Writes text to stderr, ignoring failures (there is nowhere left to say so).
pub fn err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}
