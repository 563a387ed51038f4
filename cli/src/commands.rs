//! One file per subcommand: each turns its args into library options, calls
//! the library, and hands the result to [`crate::render`]. [`Ctx`] holds what
//! every command needs: the global flags, the working directory, and how to
//! find the pipeline file and open the store.

pub mod bench;
pub mod gc;
pub mod graph;
pub mod init;
pub mod log;
pub mod plan;
pub mod run;
pub mod show;
pub mod verify;
pub mod why;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::{Cli, Command, GlobalArgs};
use crate::pipeline::Workspace;

/// What every command needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The global flags.
    pub global: GlobalArgs,
    /// The directory trove acts in (the current directory, or `-C DIR`).
    pub dir: PathBuf,
    /// The original command line, recorded with runs.
    pub command_line: String,
}

impl Ctx {
    /// The context of a command line.
    pub fn new(global: GlobalArgs) -> anyhow::Result<Ctx> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let dir = match &global.dir {
            Some(d) => cwd.join(d),
            None => cwd,
        };
        if !dir.is_dir() {
            anyhow::bail!("-C {}: no such directory", dir.display());
        }
        // Recorded with runs: `trove ...`, whatever path started it.
        let command_line = std::iter::once("trove".to_owned())
            .chain(std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Ctx { global, dir, command_line })
    }

    /// Finds and reads the pipeline file.
    pub fn workspace(&self) -> anyhow::Result<Workspace> {
        let ws =
            Workspace::locate(&self.dir, self.global.dir.as_deref(), self.global.file.as_deref())?;
        let store = self.store_dir(&ws);
        Ok(ws.with_store(&store))
    }

    /// The store directory of a workspace.
    pub fn store_dir(&self, ws: &Workspace) -> PathBuf {
        match &self.global.store {
            Some(s) => self.dir.join(s),
            None => ws.root.join(".trove"),
        }
    }

    /// Opens the store (waiting for another trove's lock unless
    /// `--no-wait`).
    pub fn open_store(&self, dir: &Path, read_only: bool) -> anyhow::Result<trove_store::Store> {
        if !read_only {
            return self.open_locked(dir, self.lock_store(dir)?);
        }
        let opts = self.open_options(true);
        let store = trove_store::Store::open(dir, &opts, &mut |holder| {
            crate::render::human::waiting(holder);
        })
        .with_context(|| format!("opening the store {}", dir.display()))?;
        Ok(store)
    }

    fn open_options(&self, read_only: bool) -> trove_store::OpenOptions {
        trove_store::OpenOptions {
            read_only,
            wait: !self.global.no_wait,
            command: self.command_line.clone(),
        }
    }

    /// Takes the store's writer lock (waiting for another trove's unless
    /// `--no-wait`), leaving the database to [`Ctx::open_locked`].
    pub fn lock_store(&self, dir: &Path) -> anyhow::Result<trove_store::LockedStore> {
        trove_store::Store::lock(dir, &self.open_options(false), &mut |holder| {
            crate::render::human::waiting(holder);
        })
        .with_context(|| format!("opening the store {}", dir.display()))
    }

    /// Opens the database of a locked store, saying so if a damaged one had
    /// to be set aside.
    pub fn open_locked(
        &self,
        dir: &Path,
        locked: trove_store::LockedStore,
    ) -> anyhow::Result<trove_store::Store> {
        let store =
            locked.open().with_context(|| format!("opening the store {}", dir.display()))?;
        if let Some((aside, detail)) = store.recovered_from() {
            crate::render::human::warning(&format!(
                "the trace database in {} was damaged ({detail}); it was moved to {} and a fresh one started: steps run again",
                dir.display(),
                aside.display()
            ));
        }
        Ok(store)
    }
}

/// Opens an existing store read-only; `None` if nothing has run yet.
pub fn open_existing(ctx: &Ctx, dir: &Path) -> anyhow::Result<Option<trove_store::Store>> {
    match ctx.open_store(dir, true) {
        Ok(store) => Ok(Some(store)),
        Err(e) if matches!(e.downcast_ref(), Some(trove_store::StoreError::NotFound { .. })) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Runs a parsed command line.
pub fn exec(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(cli.global)?;
    match cli.command {
        Command::Run(args) => run::exec(args, &ctx),
        Command::Plan(args) => plan::exec(args, &ctx),
        Command::Why(args) => why::exec(args, &ctx),
        Command::Log(args) => log::exec(args, &ctx),
        Command::Show(args) => show::exec(args, &ctx),
        Command::Gc(args) => gc::exec(args, &ctx),
        Command::Verify(args) => verify::exec(args, &ctx),
        Command::Graph(args) => graph::exec(args, &ctx),
        Command::Init(args) => init::exec(args, &ctx),
        Command::Bench(args) => bench::exec(args, &ctx),
    }
}

/// A workspace loaded for planning or running: the pipeline, the open store
/// and the engine with every source and declared variable supplied.
pub struct Loaded {
    /// The workspace.
    pub ws: Workspace,
    /// The parsed pipeline.
    pub pipeline: crate::pipeline::Pipeline,
    /// The open store.
    pub store: trove_store::Store,
    /// The engine.
    pub engine: trove_engine::Engine,
    /// What an up-to-date stamp of a run of this job covers.
    pub stamp: crate::uptodate::StampMaterial,
}

/// Loads the workspace. A read-only load (plan, why) does not wait for a
/// running build; it opens the store for writing only if there is none yet.
pub fn load(ctx: &Ctx, read_only: bool) -> anyhow::Result<Loaded> {
    let ws = ctx.workspace()?;
    let dir = ctx.store_dir(&ws);
    if !crate::uptodate::store_exists(&dir) {
        // No store yet: a pipeline error is reported before one is made.
        let pipeline = ws.parse()?;
        let store = ctx.open_store(&dir, false)?;
        return load_with(ws, pipeline, store);
    }
    let store = ctx.open_store(&dir, read_only)?;
    let pipeline = ws.parse_cached(&store)?;
    load_with(ws, pipeline, store)
}

/// Builds the job of a parsed pipeline against an open store.
pub fn load_with(
    ws: Workspace,
    pipeline: crate::pipeline::Pipeline,
    store: trove_store::Store,
) -> anyhow::Result<Loaded> {
    load_cut(ws, pipeline, store, None)
}

/// [`load_with`], of only the ops `cut` marks (see
/// [`crate::pipeline::build_cut`]).
pub fn load_cut(
    ws: Workspace,
    pipeline: crate::pipeline::Pipeline,
    store: trove_store::Store,
    cut: Option<&crate::pipeline::Cut<'_>>,
) -> anyhow::Result<Loaded> {
    let built = crate::pipeline::build_cut(&ws, &pipeline, cut, &|rel| {
        store.hash_path(&ws.root, rel).map_err(anyhow::Error::from)
    })?;
    let crate::pipeline::Built { job, sources, env, probes, files } = built;
    let mut engine = trove_engine::Engine::new(job);
    for (source, data) in sources {
        engine.set_source(&source, data)?;
    }
    for (name, value) in &env {
        engine.set_env(name, value.clone());
    }
    let stamp = crate::uptodate::StampMaterial { env, probes, files: Some(files) };
    Ok(Loaded { ws, pipeline, store, engine, stamp })
}

/// How `trove run` goes on after looking at the stamp.
pub enum Load {
    /// Nothing changed: every step is a hit.
    UpToDate {
        /// The store, to record the run in.
        store: Box<trove_store::Store>,
        /// The job's name.
        job: String,
        /// Its steps, in report order.
        steps: Vec<String>,
    },
    /// Run the loaded job: the whole pipeline, or (`stamped` set) only the
    /// steps a change of source or code files reaches.
    Run {
        /// The workspace, store and engine.
        loaded: Box<Loaded>,
        /// The stamped run a cut completes ([`crate::uptodate::complete_cut`]).
        stamped: Option<Box<crate::uptodate::StampInputs>>,
    },
}

/// Opens the store in `dir` and loads what a `trove run` needs, asking the
/// stamp first when `shortcut` (a plain run without `--full-check`): an
/// answer of "up to date", a cut of the steps an edit of source or code
/// files reaches (decoded alone from the parse cache), or the whole
/// pipeline.
pub fn load_for_run(ctx: &Ctx, ws: Workspace, dir: &Path, shortcut: bool) -> anyhow::Result<Load> {
    use crate::uptodate::Answer;
    let locked = ctx.lock_store(dir)?;
    let (store, answer) = if shortcut {
        crate::uptodate::check(&ws, locked, |locked| ctx.open_locked(dir, locked))?
    } else {
        (ctx.open_locked(dir, locked)?, Answer::Full)
    };
    let cut = match answer {
        Answer::UpToDate(job, steps) => {
            return Ok(Load::UpToDate { store: Box::new(store), job, steps });
        }
        Answer::Changed(inputs, changed) => {
            ws.reached_cached(&store, &changed).map(|reached| (inputs, reached))
        }
        Answer::Full => None,
    };
    let Some((inputs, reached)) = cut else {
        let pipeline = ws.parse_cached(&store)?;
        let loaded = Box::new(load_with(ws, pipeline, store)?);
        return Ok(Load::Run { loaded, stamped: None });
    };
    let cut = crate::pipeline::Cut { probes: &inputs.probes };
    let mut loaded = Box::new(load_cut(ws, reached.pipeline, store, Some(&cut))?);
    // The cut reads and writes what the whole pipeline did: the next stamp
    // covers the checked stamp's files.
    loaded.stamp.files = None;
    Ok(Load::Run { loaded, stamped: Some(inputs) })
}

/// Checks that named steps exist, with a did-you-mean.
pub fn check_steps<'a>(
    pipeline: &crate::pipeline::Pipeline,
    steps: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<()> {
    for step in steps {
        if pipeline.op(step).is_none() {
            let names = pipeline.ops.iter().map(|o| o.name.as_str());
            match crate::pipeline::parse::did_you_mean(step, names) {
                Some(s) => anyhow::bail!("unknown step `{step}`: did you mean `{s}`?"),
                None => anyhow::bail!(
                    "unknown step `{step}`: the steps are {}",
                    pipeline.ops.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
    Ok(())
}
