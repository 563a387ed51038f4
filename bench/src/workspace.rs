//! A workload laid out on disk: sources, the pipeline file and, for peers,
//! their build files; edits applied to it between timed runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::emit::{self, Peer, RAN_LOG};
use crate::scenario::Edit;
use crate::workload::{WIDE_FAN_DIR, Workload};

/// Which tool owns a workspace (each tool builds in its own copy, so tools
/// never see each other's outputs or logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tool {
    /// trove (the `trove` binary, or the library for `inproc`).
    Trove,
    /// A peer build tool.
    Peer(Peer),
}

impl Tool {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Trove => "trove",
            Tool::Peer(p) => p.name(),
        }
    }
}

/// A workload on disk.
#[derive(Debug)]
pub struct Workspace {
    /// The workspace root.
    pub root: PathBuf,
    /// The workload.
    pub workload: Workload,
    /// The tool that builds here.
    pub tool: Tool,
    /// Each step's config tag (initially 1).
    pub tags: Vec<u64>,
    /// Whether a build file is written (not for `inproc`, which builds the
    /// job in memory).
    pub build_file: bool,
}

/// The directory trove keeps its store in, next to `trove.toml`.
pub const STORE_DIR: &str = ".trove";

impl Workspace {
    /// Writes the workload's sources, its build file for `tool`, and the
    /// output directories into `root` (created if missing).
    pub fn create(
        root: &Path,
        workload: &Workload,
        tool: Tool,
        build_file: bool,
    ) -> io::Result<Workspace> {
        fs::create_dir_all(root.join("src"))?;
        let ws = Workspace {
            root: root.to_path_buf(),
            workload: workload.clone(),
            tool,
            tags: vec![1; workload.len()],
            build_file,
        };
        for i in 0..workload.len() {
            ws.write_source(i, &workload.source_content(i))?;
        }
        // A kept workspace (`--dir`) starts cold too: no store, no outputs.
        ws.wipe()?;
        ws.write_build_file()?;
        Ok(ws)
    }

    fn make_output_dirs(&self) -> io::Result<()> {
        fs::create_dir_all(self.root.join("out"))?;
        fs::create_dir_all(self.root.join(WIDE_FAN_DIR))
    }

    fn write_source(&self, step: usize, content: &str) -> io::Result<()> {
        fs::write(self.root.join(&self.workload.steps[step].source), content)
    }

    /// Writes the build file of this workspace's tool.
    pub fn write_build_file(&self) -> io::Result<()> {
        if !self.build_file {
            return Ok(());
        }
        match self.tool {
            Tool::Trove => {
                self.write_file("trove.toml", &emit::trove_toml(&self.workload, &self.tags))
            }
            Tool::Peer(p) => self.write_peer_file(p),
        }
    }

    /// Writes a peer's build file here too (`--emit`).
    pub fn write_peer_file(&self, peer: Peer) -> io::Result<()> {
        self.write_file(peer.file_name(), &peer.render(&self.workload, &self.tags))
    }

    fn write_file(&self, name: &str, text: &str) -> io::Result<()> {
        fs::write(self.root.join(name), text)
    }

    /// Applies an edit.
    pub fn apply(&mut self, edit: &Edit) -> io::Result<()> {
        match edit {
            Edit::Nothing => Ok(()),
            Edit::Wipe => self.wipe(),
            Edit::Touch { step, seconds } => {
                let path = self.root.join(&self.workload.steps[*step].source);
                let file = fs::OpenOptions::new().write(true).open(path)?;
                file.set_modified(SystemTime::now() + Duration::from_secs(*seconds))
            }
            Edit::Source { step, content } => self.write_source(*step, content),
            Edit::Config { step, tag } => {
                self.tags[*step] = *tag;
                self.write_build_file()
            }
        }
    }

    /// Undoes a scenario's edits: original sources and tags. The next run
    /// of the tool brings the build back up to date.
    pub fn restore(&mut self, edit: &Edit) -> io::Result<()> {
        match edit {
            Edit::Nothing | Edit::Wipe => Ok(()),
            Edit::Touch { step, .. } | Edit::Source { step, .. } => {
                self.write_source(*step, &self.workload.source_content(*step))
            }
            Edit::Config { step, .. } => {
                self.tags[*step] = 1;
                self.write_build_file()
            }
        }
    }

    /// Removes the tool's store or log and every output.
    pub fn wipe(&self) -> io::Result<()> {
        let state: &[&str] = match self.tool {
            Tool::Trove => &[STORE_DIR],
            Tool::Peer(Peer::Ninja) => &[".ninja_log", ".ninja_deps"],
            Tool::Peer(Peer::Make) => &[],
        };
        for name in state {
            remove(&self.root.join(name))?;
        }
        remove(&self.root.join("out"))?;
        remove(&self.root.join(RAN_LOG))?;
        self.make_output_dirs()
    }

    /// The steps that appended to `ran.log` since the last call, which
    /// empties it.
    pub fn take_ran_log(&self) -> io::Result<Vec<String>> {
        let path = self.root.join(RAN_LOG);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        Ok(text.lines().map(|l| l.split(':').next().unwrap_or(l).to_owned()).collect())
    }
}

fn remove(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
