//! The one door through which trove runs user commands: `sh -c` in the
//! workspace root, standard input closed, output captured. `clippy.toml`
//! forbids `std::process::Command::new` everywhere else.
//!
//! It also reads declared environment variables ([`env_var`]), so the
//! process environment enters versions in one place.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use trove_engine::{OpContext, OpFailure, RerunReason};

/// What a finished shell command left behind.
#[derive(Debug)]
pub struct ShellOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// Runs `script` with `sh -c` in `root`, with extra environment variables.
#[allow(clippy::disallowed_methods)] // this is the one door
pub fn sh(root: &Path, script: &str, env: &[(&str, &str)]) -> std::io::Result<ShellOutput> {
    let mut command = std::process::Command::new(shell());
    command.arg("-c").arg(script).current_dir(root).stdin(Stdio::null());
    if !env.is_empty() {
        // The environment with `env` set, from a copy of this process's
        // taken once: with any variable set, the standard library reads the
        // whole environment again at every spawn (a fifth of the cost of
        // starting a command here).
        command.env_clear().envs(inherited_env().iter().map(|(k, v)| (k, v)));
        command.envs(env.iter().copied());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let pid = child.id();
    running(|pids| pids.push(pid));
    let output = read_tails(&mut child).and_then(|(stdout, stderr)| {
        child.wait().map(|status| ShellOutput { status, stdout, stderr })
    });
    running(|pids| pids.retain(|&p| p != pid));
    output
}

/// How much of a command's standard output, and of its standard error, is
/// kept (in memory, then in the step's log): the last 1 MiB of each. A
/// command may print gigabytes; the tail is what explains a failure.
pub const LOG_KEPT: usize = 1 << 20;

/// Reads a child's standard output and error to their ends, keeping the
/// last [`LOG_KEPT`] bytes of each (one thread, `poll`), with a first line
/// saying how much was left out.
fn read_tails(child: &mut std::process::Child) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::io::Read as _;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut tails = [Tail::default(), Tail::default()];
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    while open[0] || open[1] {
        let mut ready = [false, false];
        {
            let mut fds = Vec::with_capacity(2);
            if open[0] {
                fds.push(PollFd::new(&out, PollFlags::IN));
            }
            if open[1] {
                fds.push(PollFd::new(&err, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut i = 0;
            for (which, is_open) in open.iter().enumerate() {
                if *is_open {
                    ready[which] = !fds[i].revents().is_empty();
                    i += 1;
                }
            }
        }
        for which in 0..2 {
            if !ready[which] {
                continue;
            }
            let read = if which == 0 { out.read(&mut buf) } else { err.read(&mut buf) };
            match read {
                Ok(0) => open[which] = false,
                Ok(n) => tails[which].push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    let [stdout, stderr] = tails;
    Ok((stdout.finish(), stderr.finish()))
}

/// The last [`LOG_KEPT`] bytes of a stream, and how long it was.
#[derive(Default)]
struct Tail {
    kept: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.kept.extend_from_slice(bytes);
        // Trimmed in halves, so a chatty command costs a copy per MiB.
        if self.kept.len() >= 2 * LOG_KEPT {
            self.kept.drain(..self.kept.len() - LOG_KEPT);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.kept.len() > LOG_KEPT {
            self.kept.drain(..self.kept.len() - LOG_KEPT);
        }
        let dropped = self.total - self.kept.len() as u64;
        if dropped == 0 {
            return self.kept;
        }
        let mut out =
            format!("[trove: the first {dropped} of {} bytes were not kept]\n", self.total)
                .into_bytes();
        out.extend_from_slice(&self.kept);
        out
    }
}

/// The process ids of the commands running now (each `sh` this process
/// started and has not reaped yet).
fn running<T>(f: impl FnOnce(&mut Vec<u32>) -> T) -> T {
    static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
    let mut pids = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut pids)
}

/// Kills every running command and everything it started, for a trove that
/// stops at once (a second Ctrl-C): a command left running would go on
/// writing into the workspace after trove is gone. Commands share trove's
/// process group (so a terminal's Ctrl-C reaches them as it reaches make's),
/// which therefore cannot be signalled as a whole: on Linux each command's
/// descendants are found through `/proc`, twice, to catch one forked
/// between the look and the kill.
pub fn kill_running_commands() {
    let roots = running(|pids| pids.clone());
    if roots.is_empty() {
        return;
    }
    for _ in 0..2 {
        for pid in descendants_and_self(&roots) {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// `roots` and every process below them, from `/proc/PID/stat` (only
/// `roots` where there is no `/proc`).
fn descendants_and_self(roots: &[u32]) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parens.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found: Vec<u32> = roots.to_vec();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        next += 1;
    }
    found
}

/// The flag that cancels this process's run: raised by trove's signal
/// handler, and by a command that died of SIGINT, SIGHUP or SIGTERM. A terminal
/// signals its whole foreground process group, trove and the running
/// commands alike, and a command may die, and its step be booked as failed,
/// before trove's handler has run: the command's death is the same news.
pub fn interruption() -> Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    Arc::clone(FLAG.get_or_init(|| Arc::new(std::sync::atomic::AtomicBool::new(false))))
}

/// Whether a command died of a terminal's interrupt or hangup, or of the
/// termination `timeout` and CI runners send to trove's whole process
/// group (`sh` itself dies of a signal only when someone signals it: a
/// command it runs that dies of one makes it exit with a code).
fn interrupted_by_terminal(status: &ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // SIGHUP, SIGINT and SIGTERM.
        matches!(status.signal(), Some(1 | 2 | 15))
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

/// This process's environment, read once (trove never changes its own).
fn inherited_env() -> &'static [(std::ffi::OsString, std::ffi::OsString)] {
    static ENV: std::sync::OnceLock<Vec<(std::ffi::OsString, std::ffi::OsString)>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| std::env::vars_os().collect())
}

/// The shell: `/bin/sh` where it exists (as ninja and make use it), so a
/// spawn does not try every `PATH` entry first (8 failed `execve`s per step
/// here, on the critical path of every command); `sh` from `PATH` otherwise.
fn shell() -> &'static str {
    static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| if Path::new("/bin/sh").is_file() { "/bin/sh" } else { "sh" })
}

/// A command for another program, with its working directory forced to
/// `cwd` (the integration tests drive the `trove` binary with it).
#[allow(clippy::disallowed_methods)] // this is the one door
pub fn program(path: &Path, cwd: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(path);
    command.current_dir(cwd);
    command
}

/// The value of a declared environment variable (`None`: unset).
pub fn env_var(name: &str) -> Option<String> {
    let value = std::env::var_os(name)?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(exact_text(value.as_bytes()))
    }
    #[cfg(not(unix))]
    {
        Some(value.to_string_lossy().into_owned())
    }
}

/// Bytes as text, losing nothing: UTF-8 as it is; anything else as its
/// lossy text followed by the bytes in hex, so that two values that differ
/// never read the same (they are parts of versions).
pub fn exact_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{} (bytes {hex})", String::from_utf8_lossy(bytes))
        }
    }
}

/// How a command ended, in words: `failed with exit code 3`, `was killed
/// by signal 9`.
pub fn describe_status(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("failed with exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    "ended with an unknown status".to_owned()
}

/// The last `n` lines of some output, lossily decoded, for a message on a
/// terminal: control characters other than tabs are shown escaped (`\u{1b}`),
/// so a command's colours or cursor moves cannot garble trove's report.
pub fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let shown = lines[lines.len().saturating_sub(n)..].join("\n");
    if !shown.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return shown;
    }
    shown
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Runs a resource's `version_cmd`: its trimmed standard output (or, if that
/// is empty, standard error: some tools print versions there) is the version.
pub fn version_of(root: &Path, cmd: &str) -> Result<String, String> {
    let out = sh(root, cmd, &[]).map_err(|e| format!("cannot run `sh -c {cmd}`: {e}"))?;
    if !out.status.success() {
        let stderr = tail(&out.stderr, 5);
        let mut message = format!("`{cmd}` {}", describe_status(&out.status));
        if !stderr.is_empty() {
            message.push('\n');
            message.push_str(&stderr);
        }
        return Err(message);
    }
    let mut version = exact_text(out.stdout.trim_ascii());
    if version.is_empty() {
        version = exact_text(out.stderr.trim_ascii());
    }
    Ok(version)
}

/// A command op: the command with its placeholders substituted, and the
/// outputs it must write.
#[derive(Clone, Debug)]
pub struct CommandStep {
    /// The workspace root (the command's working directory).
    pub root: Arc<PathBuf>,
    /// The command, ready for `sh -c`.
    pub command: String,
    /// Declared output paths, workspace-relative.
    pub outputs: Vec<String>,
}

impl CommandStep {
    /// Runs the command for a step: clears stale outputs, creates their
    /// parent directories, runs, keeps stdout and stderr in the step's log,
    /// and checks that every declared output was written.
    pub fn run(&self, ctx: &mut OpContext<'_>) -> Result<(), OpFailure> {
        // Emptying a stale output in place keeps its shape: right when only
        // the inputs' data changed (the same command rewrites the same
        // file), wrong when the command or its config changed and may now
        // make a directory there. Otherwise the command starts from what a
        // clean build has: nothing.
        let in_place = ctx.reasons().iter().all(|r| matches!(r, RerunReason::InputChanged { .. }));
        let mut cleared = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            let path = self.root.join(out);
            let state = clear_output(&path, in_place)
                .map_err(|e| OpFailure::new(format!("cannot remove stale output {out}: {e}")))?;
            // An output emptied in place has its directory already.
            if matches!(state, Cleared::Absent) {
                self.make_parent(ctx, out)?;
            }
            cleared.push(state);
        }
        let step = ctx.step().to_owned();
        let run_id = ctx.run_id().to_owned();
        let out =
            sh(&self.root, &self.command, &[("TROVE_STEP", &step), ("TROVE_RUN_ID", &run_id)])
                .map_err(|e| OpFailure::new(format!("cannot run sh: {e}")))?;
        ctx.log_stdout(&out.stdout);
        ctx.log_stderr(&out.stderr);
        // Outputs the command left as they were emptied: not written.
        let mut unwritten = Vec::new();
        for (out, cleared) in self.outputs.iter().zip(&cleared) {
            match std::fs::symlink_metadata(self.root.join(out)) {
                Ok(meta) if cleared.is_untouched(&meta) => unwritten.push((out, true)),
                Ok(_) => {}
                Err(_) => unwritten.push((out, false)),
            }
        }
        // A failed step leaves no empty placeholder where its output was
        // (a 0-byte file dated 1970 is nobody's output).
        let remove_placeholders = || {
            for (out, placeholder) in &unwritten {
                if *placeholder {
                    let _ = std::fs::remove_file(self.root.join(out));
                }
            }
        };
        if !out.status.success() {
            if interrupted_by_terminal(&out.status) {
                interruption().store(true, std::sync::atomic::Ordering::SeqCst);
            }
            remove_placeholders();
            let mut message = format!("command {}", describe_status(&out.status));
            let stderr = tail(&out.stderr, 10);
            if !stderr.is_empty() {
                message.push('\n');
                message.push_str(&stderr);
            }
            return Err(OpFailure { message, exit_code: out.status.code() });
        }
        if let Some((out, _)) = unwritten.first() {
            remove_placeholders();
            return Err(OpFailure::new(format!("declared output {out} was not written")));
        }
        Ok(())
    }
}

/// What a step's command finds at an output path: nothing, or the stale
/// file emptied in place with its modification time set to [`UNTOUCHED`].
///
/// Why not always remove it: creating a file costs several times what
/// rewriting one does (a new inode and directory entry; 4x here on ext4),
/// and a re-run rewrites every output; ninja and make rewrite in place too.
/// Emptying it keeps what removal gave: the command never sees stale bytes,
/// and one that exits 0 without writing its output still fails.
#[derive(Debug)]
enum Cleared {
    Absent,
    /// Emptied in place: this inode.
    Emptied(u64),
}

/// The modification time an emptied output carries until the command
/// writes it (any write, even of nothing through `> out`, sets the clock's
/// time).
const UNTOUCHED: std::time::Duration = std::time::Duration::from_secs(2);

impl Cleared {
    /// Whether the file at the path is still the emptied one, unwritten.
    fn is_untouched(&self, meta: &std::fs::Metadata) -> bool {
        match self {
            Cleared::Absent => false,
            Cleared::Emptied(ino) => {
                #[cfg(unix)]
                let same = {
                    use std::os::unix::fs::MetadataExt;
                    meta.ino() == *ino
                };
                // Off unix nothing is emptied in place (see `clear_output`).
                #[cfg(not(unix))]
                let same = false;
                let untouched_time = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|t| t <= UNTOUCHED);
                same && meta.is_file() && meta.len() == 0 && untouched_time
            }
        }
    }
}

impl CommandStep {
    /// Creates the directories an output goes in. A file in the way that
    /// was one of this op's outputs before its outputs changed (an output
    /// moved under its old path: `out` → `out/x.txt`) is removed, as a
    /// clean build never has it; any other is named in the failure.
    fn make_parent(&self, ctx: &OpContext<'_>, out: &str) -> Result<(), OpFailure> {
        let Some(parent) = self.root.join(out).parent().map(Path::to_path_buf) else {
            return Ok(());
        };
        let Err(e) = std::fs::create_dir_all(&parent) else { return Ok(()) };
        // The first directory on the output's way that is not one.
        let mut prefix = PathBuf::new();
        let blocker =
            Path::new(out).parent().into_iter().flat_map(Path::components).find_map(|c| {
                prefix.push(c);
                std::fs::symlink_metadata(self.root.join(&prefix))
                    .is_ok_and(|m| !m.is_dir())
                    .then(|| prefix.clone())
            });
        let Some(blocker) = blocker else {
            return Err(OpFailure::new(format!(
                "cannot create the directory of output {out}: {e}"
            )));
        };
        let rel = blocker.to_string_lossy();
        let was_ours = ctx.reasons().iter().any(|r| match r {
            RerunReason::OutputsChanged { old, .. } => {
                old.iter().any(|o| o.ends_with(&format!("={rel}")))
            }
            _ => false,
        });
        if was_ours && std::fs::remove_file(self.root.join(&blocker)).is_ok() {
            return std::fs::create_dir_all(&parent).map_err(|e| {
                OpFailure::new(format!("cannot create the directory of output {out}: {e}"))
            });
        }
        Err(OpFailure::new(format!(
            "cannot create the directory of output {out}: {rel} is a file, not a directory"
        )))
    }
}

/// Clears a stale output before its command runs: with `in_place`, a
/// regular, not executable file with one link is emptied in place; anything
/// else (a directory, a symlink, an executable, a hard-linked or read-only
/// file, or any file without `in_place`) is removed.
fn clear_output(path: &Path, in_place: bool) -> std::io::Result<Cleared> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(Cleared::Absent);
    };
    if meta.is_dir() {
        // A read-only tree (copied from a read-only cache, `chmod -R a-w`)
        // is opened up, then removed.
        if let Err(e) = std::fs::remove_dir_all(path) {
            if !trove_store::make_dirs_writable(path).unwrap_or(false) {
                return Err(e);
            }
            std::fs::remove_dir_all(path)?;
        }
        return Ok(Cleared::Absent);
    }
    #[cfg(unix)]
    if in_place && meta.is_file() {
        use std::os::unix::fs::MetadataExt;
        // An executable file is removed: emptied in place it would keep its
        // mode, and a command that writes it without `chmod` would make an
        // executable where a clean build makes none.
        if meta.nlink() == 1
            && meta.mode() & 0o111 == 0
            && let Ok(file) = std::fs::OpenOptions::new().write(true).truncate(true).open(path)
            && file.set_modified(std::time::UNIX_EPOCH + UNTOUCHED).is_ok()
        {
            return Ok(Cleared::Emptied(meta.ino()));
        }
    }
    std::fs::remove_file(path)?;
    Ok(Cleared::Absent)
}

#[cfg(test)]
mod tests {
    use super::{LOG_KEPT, Tail, exact_text};

    #[test]
    fn a_tail_keeps_the_last_bytes_and_says_how_many_it_left_out() {
        let mut small = Tail::default();
        small.push(b"hello ");
        small.push(b"world");
        assert_eq!(small.finish(), b"hello world");
        let mut big = Tail::default();
        for i in 0..5 * LOG_KEPT / 1000 {
            big.push(format!("{i:0999}\n").as_bytes());
        }
        let total = 5 * LOG_KEPT / 1000 * 1000;
        let kept = big.finish();
        let text = String::from_utf8(kept).unwrap();
        let (head, tail) = text.split_once('\n').unwrap();
        assert_eq!(
            head,
            format!("[trove: the first {} of {total} bytes were not kept]", total - LOG_KEPT)
        );
        assert_eq!(tail.len(), LOG_KEPT);
        assert!(tail.ends_with(&format!("{:0999}\n", 5 * LOG_KEPT / 1000 - 1)));
    }

    #[test]
    fn a_tail_shows_control_characters_escaped() {
        use super::tail;
        assert_eq!(tail(b"one\ntwo\tx\nthree\n", 2), "two\tx\nthree");
        assert_eq!(tail(b"\x1b[31mred\x1b[0m\r\n", 1), "\\u{1b}[31mred\\u{1b}[0m");
    }

    #[test]
    fn exact_text_keeps_utf8_and_tells_other_bytes_apart() {
        assert_eq!(exact_text("héllo".as_bytes()), "héllo");
        assert_ne!(exact_text(b"\xff\xfe"), exact_text(b"\xff\xfd"));
        assert_eq!(exact_text(b"a\xff"), "a\u{fffd} (bytes 61ff)");
    }
}
