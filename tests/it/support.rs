//! Shared helpers of the integration tests: [`TestWorkspace`], a temporary
//! workspace that runs the real `trove` binary (cargo's `project()`,
//! ripgrep's `Dir`), and the redactions CLI snapshots need.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `trove` binary under test.
pub(crate) fn trove_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trove"))
}

/// A temporary workspace directory.
pub(crate) struct TestWorkspace {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

/// What one `trove` invocation did.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The exit code (-1: killed by a signal).
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Outcome {
    /// What a finished process left.
    pub(crate) fn of(out: std::process::Output) -> Outcome {
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, printing the output if it differs.
    #[track_caller]
    pub(crate) fn code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts success.
    #[track_caller]
    pub(crate) fn ok(&self) -> &Outcome {
        self.code(0)
    }

    /// Standard output as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// `step:outcome` for each step of a `run --json` report, in order.
    #[track_caller]
    pub(crate) fn outcomes(&self) -> String {
        let json = self.json();
        json["steps"]
            .as_array()
            .expect("a steps array")
            .iter()
            .map(|s| format!("{}:{}", s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for TestWorkspace {
    fn default() -> Self {
        TestWorkspace::new()
    }
}

impl TestWorkspace {
    /// An empty workspace.
    pub(crate) fn new() -> TestWorkspace {
        let tmp = tempfile::Builder::new().prefix("trove-it-").tempdir().expect("a temp dir");
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(&root).expect("the workspace dir");
        TestWorkspace { tmp, root }
    }

    /// Adds a file (builder style).
    pub(crate) fn file(self, rel: &str, contents: &str) -> TestWorkspace {
        self.write(rel, contents);
        self
    }

    /// Writes a file, creating its directories.
    pub(crate) fn write(&self, rel: &str, contents: &str) {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&path, contents).expect("write file");
    }

    /// Reads a file.
    #[track_caller]
    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel))
            .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// Replaces text in a file.
    #[track_caller]
    pub(crate) fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Whether a path exists.
    pub(crate) fn exists(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }

    /// The workspace root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The temporary directory around the workspace (for moving it).
    pub(crate) fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// Moves the workspace to a sibling directory named `name`.
    pub(crate) fn move_to(&mut self, name: &str) {
        let to = self.tmp.path().join(name);
        std::fs::rename(&self.root, &to).expect("move the workspace");
        self.root = to;
    }

    /// A `trove` command in the workspace, stdin closed, output piped.
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = trove_cli::command::program(&trove_bin(), &self.root);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("TROVE_STEP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `trove` with `args` and waits for it.
    pub(crate) fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Outcome::of(self.command(args).output().expect("run trove"))
    }

    /// Waits (bounded) until a file exists.
    #[track_caller]
    pub(crate) fn wait_for(&self, rel: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.exists(rel) {
            assert!(Instant::now() < deadline, "{rel} never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Insta settings that apply [`redact`]'s rules as filters.
pub(crate) fn insta_settings(root: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(&escape(&root.display().to_string()), "[ROOT]");
    settings.add_filter(r"\b[0-9a-f]{20}\b", "[RUN_ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "[TIME]");
    settings.add_filter(r"\b\d+m\d\ds\b|\b\d+(\.\d+)?m?s\b", "[ELAPSED]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings
}

fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses `k=v` pairs of a tag map in a JSON run record.
pub(crate) fn tags(json: &serde_json::Value) -> BTreeMap<String, String> {
    json["tags"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect())
        .unwrap_or_default()
}
