//! The `inproc` kind: the same workload driven through the library
//! ([`trove_engine::Engine`] over a store), ops as closures, so what is
//! measured is the engine and the store, not process spawning.
//!
//! Each timed run does what a fresh `trove run` process does after parsing:
//! open the store, learn the sources' data versions (stat, re-hash only what
//! changed), build the job and load it into a new engine, run it. Its
//! *floor* is a plain loop over the same graph that hashes the same version
//! inputs with blake3 and looks each output up in the same store: the least
//! any memoizing engine must do for a no-op.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use trove_engine::{
    DataVersion, Engine, InputFrom, IoManager, Job, MemoryIoManager, MemoryTraceStore, Op,
    OpFailure, OutputContext, OutputVersion, RunOptions, TraceStore,
};

use crate::process::RunSample;
use crate::workspace::Workspace;

/// An open store as the engine sees it during one run.
pub trait Session {
    /// The IO manager.
    fn io(&self) -> &dyn IoManager;
    /// The trace store.
    fn traces(&self) -> &dyn TraceStore;
    /// A source file's data version through the store's stat cache, if the
    /// store has one (`None`: the bench's own stat cache answers).
    fn source_version(&self, root: &Path, rel: &str) -> Option<Result<DataVersion, String>>;
}

/// Where inproc outputs and traces live.
pub trait Backend {
    /// A short description for reports.
    fn describe(&self) -> String;
    /// Removes everything stored.
    fn wipe(&mut self) -> Result<(), String>;
    /// Opens the store (as a fresh process would), calls `f`, closes it
    /// (flushing). Returns the time spent opening and closing.
    fn session(
        &mut self,
        root: &Path,
        f: &mut dyn FnMut(&dyn Session) -> Result<(), String>,
    ) -> Result<Duration, String>;
}

/// In-memory outputs and traces: the engine alone, no disk.
#[derive(Default)]
pub struct MemoryBackend {
    io: MemoryIoManager,
    traces: MemoryTraceStore,
}

impl Session for MemoryBackend {
    fn io(&self) -> &dyn IoManager {
        &self.io
    }
    fn traces(&self) -> &dyn TraceStore {
        &self.traces
    }
    fn source_version(&self, _: &Path, _: &str) -> Option<Result<DataVersion, String>> {
        None
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory (MemoryIoManager + MemoryTraceStore)".to_owned()
    }
    fn wipe(&mut self) -> Result<(), String> {
        *self = MemoryBackend::default();
        Ok(())
    }
    fn session(
        &mut self,
        _root: &Path,
        f: &mut dyn FnMut(&dyn Session) -> Result<(), String>,
    ) -> Result<Duration, String> {
        f(self)?;
        Ok(Duration::ZERO)
    }
}

/// trove's on-disk store (`.trove/` in the workspace: redb traces, blobs,
/// the stat cache), opened and closed around every run like a `trove run`
/// process does.
pub struct StoreBackend {
    dir: PathBuf,
}

impl StoreBackend {
    /// A store kept in `dir`.
    pub fn new(dir: PathBuf) -> StoreBackend {
        StoreBackend { dir }
    }
}

struct StoreSession<'a> {
    store: &'a trove_store::Store,
    io: trove_store::FsIoManager<'a>,
}

impl Session for StoreSession<'_> {
    fn io(&self) -> &dyn IoManager {
        &self.io
    }
    fn traces(&self) -> &dyn TraceStore {
        self.store
    }
    fn source_version(&self, root: &Path, rel: &str) -> Option<Result<DataVersion, String>> {
        Some(self.store.hash_path(root, rel).map_err(|e| e.to_string()))
    }
}

impl Backend for StoreBackend {
    fn describe(&self) -> String {
        "trove-store (redb traces, blobs, stat cache)".to_owned()
    }
    fn wipe(&mut self) -> Result<(), String> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("removing {}: {e}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
    fn session(
        &mut self,
        root: &Path,
        f: &mut dyn FnMut(&dyn Session) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let store =
            trove_store::Store::open(&self.dir, &trove_store::OpenOptions::default(), &mut |_| {})
                .map_err(|e| format!("opening the store {}: {e}", self.dir.display()))?;
        let opened = started.elapsed();
        let result = {
            let session = StoreSession { store: &store, io: store.io_manager(root) };
            f(&session)
        };
        let started = Instant::now();
        let flushed = store.flush_all().map_err(|e| format!("flushing the store: {e}"));
        drop(store);
        let closed = started.elapsed();
        result?;
        flushed?;
        Ok(opened + closed)
    }
}

type Contents = Arc<RwLock<Vec<Arc<Vec<u8>>>>>;

/// A workload driven in-process.
pub struct Inproc {
    /// The workspace (sources on disk; edits land there).
    pub ws: Workspace,
    backend: Option<Box<dyn Backend>>,
    /// Source bytes as last read, shared with the ops.
    contents: Contents,
    /// Per source: `(mtime, size, data version)` as last seen.
    stat: Vec<Option<(SystemTime, u64, DataVersion)>>,
    ran: Arc<AtomicUsize>,
    jobs: usize,
    /// The engine of the last run (the floor looks up its output versions).
    last: Option<Engine>,
}

/// Strips trailing spaces from every line (what `sed -e 's/ *$//'` does).
pub fn normalise(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (line, false),
        };
        let end = body.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
        out.extend_from_slice(&body[..end]);
        if nl {
            out.push(b'\n');
        }
    }
    out
}

impl Inproc {
    /// Drives `ws` with a backend and `jobs` worker threads.
    pub fn new(ws: Workspace, backend: Box<dyn Backend>, jobs: usize) -> Inproc {
        let n = ws.workload.len();
        Inproc {
            ws,
            backend: Some(backend),
            contents: Arc::new(RwLock::new((0..n).map(|_| Arc::new(Vec::new())).collect())),
            stat: vec![None; n],
            ran: Arc::new(AtomicUsize::new(0)),
            jobs,
            last: None,
        }
    }

    /// The backend's description.
    pub fn describe(&self) -> String {
        self.backend.as_ref().map_or_else(String::new, |b| b.describe())
    }

    /// Forgets everything stored and every source seen.
    pub fn wipe(&mut self) -> Result<(), String> {
        self.ws.wipe().map_err(|e| format!("wiping {}: {e}", self.ws.root.display()))?;
        self.stat = vec![None; self.ws.workload.len()];
        self.last = None;
        self.backend.as_mut().ok_or("the store is in use")?.wipe()
    }

    /// The sources' data versions: through the store's stat cache when it
    /// has one, else stat each and re-read and re-hash those whose mtime or
    /// size changed. Bytes of changed sources are handed to the ops.
    fn source_versions(&mut self, session: &dyn Session) -> Result<Vec<DataVersion>, String> {
        let mut versions = Vec::with_capacity(self.stat.len());
        let mut changed = Vec::new();
        for (i, step) in self.ws.workload.steps.iter().enumerate() {
            let path = self.ws.root.join(&step.source);
            let data = match session.source_version(&self.ws.root, &step.source) {
                Some(data) => {
                    let data = data?;
                    if self.stat[i].is_none_or(|(_, _, d)| d != data) {
                        let bytes =
                            fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                        self.stat[i] = Some((SystemTime::UNIX_EPOCH, 0, data));
                        changed.push((i, bytes));
                    }
                    data
                }
                None => {
                    let meta =
                        fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    let mtime = meta.modified().map_err(|e| format!("{}: {e}", path.display()))?;
                    match self.stat[i] {
                        Some((m, len, data)) if m == mtime && len == meta.len() => data,
                        _ => {
                            let bytes =
                                fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                            let data = DataVersion::of_bytes(&bytes);
                            self.stat[i] = Some((mtime, meta.len(), data));
                            changed.push((i, bytes));
                            data
                        }
                    }
                }
            };
            versions.push(data);
        }
        if !changed.is_empty() {
            let mut contents = self.contents.write().map_err(|_| "contents poisoned".to_owned())?;
            for (i, bytes) in changed {
                contents[i] = Arc::new(bytes);
            }
        }
        Ok(versions)
    }

    fn build_job(&self) -> Result<Job, String> {
        let workload = &self.ws.workload;
        let mut job = Job::builder("bench");
        for (i, step) in workload.steps.iter().enumerate() {
            let mut op = Op::new(&step.name)
                .input_at("src", InputFrom::source(&step.source), &step.source)
                .output("o")
                .config(serde_json::json!({ "tag": self.ws.tags[i] }))
                .code_version("1");
            let names: Vec<String> = (0..step.inputs.len()).map(|j| format!("i{j}")).collect();
            for (j, &u) in step.inputs.iter().enumerate() {
                op = op.input(&names[j], InputFrom::output(&workload.steps[u].name, "o"));
            }
            let contents = Arc::clone(&self.contents);
            let ran = Arc::clone(&self.ran);
            op = op.compute(move |ctx| {
                let source = contents
                    .read()
                    .map_err(|_| OpFailure::new("contents poisoned"))?
                    .get(i)
                    .cloned()
                    .unwrap_or_default();
                let mut hasher = blake3::Hasher::new();
                hasher.update(&normalise(&source));
                for name in &names {
                    hasher.update(ctx.input_bytes(name)?);
                }
                ran.fetch_add(1, Ordering::Relaxed);
                ctx.set_output_bytes("o", hasher.finalize().as_bytes()[..8].to_vec())
            });
            job = job.op(op);
        }
        job.build().map_err(|e| format!("building the bench job: {e}"))
    }

    /// One timed run, with its phases.
    pub fn run_once(&mut self) -> Result<RunSample, String> {
        self.ran.store(0, Ordering::Relaxed);
        self.last = None;
        let root = self.ws.root.clone();
        let mut backend = self.backend.take().ok_or("the store is in use")?;
        let mut out = None;
        let started = Instant::now();
        let open_close = backend.session(&root, &mut |session| {
            out = Some(self.run_in(session)?);
            Ok(())
        });
        let wall = started.elapsed();
        self.backend = Some(backend);
        let open_close = open_close?;
        let (report, mut phases, engine) = out.ok_or("the store session did not run")?;
        if report.counts.failed > 0 {
            let failed = report
                .steps
                .iter()
                .find(|s| matches!(s.outcome, trove_engine::StepOutcome::Failed { .. }));
            return Err(format!("a step failed: {failed:?}"));
        }
        self.last = Some(engine);
        phases.insert(0, ("open + flush + close store".to_owned(), open_close.as_secs_f64()));
        Ok(RunSample {
            wall,
            ran: report.counts.ran,
            logged: self.ran.load(Ordering::Relaxed),
            phases,
        })
    }

    #[allow(clippy::type_complexity)]
    fn run_in(
        &mut self,
        session: &dyn Session,
    ) -> Result<(trove_engine::RunReport, Vec<(String, f64)>, Engine), String> {
        let t1 = Instant::now();
        let sources = self.source_versions(session)?;
        let t2 = Instant::now();
        let job = self.build_job()?;
        let mut engine = Engine::new(job);
        for (i, step) in self.ws.workload.steps.iter().enumerate() {
            engine.set_source(&step.source, sources[i]).map_err(|e| e.to_string())?;
        }
        let t3 = Instant::now();
        let opts = RunOptions { jobs: self.jobs, ..RunOptions::default() };
        let report = engine
            .run(session.io(), session.traces(), &opts, &mut |_| {})
            .map_err(|e| format!("engine run: {e}"))?;
        let t4 = Instant::now();
        let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
        let phases = vec![
            ("stat sources".to_owned(), secs(t1, t2)),
            ("job + engine inputs".to_owned(), secs(t2, t3)),
            ("versions + lookups + run".to_owned(), secs(t3, t4)),
        ];
        Ok((report, phases, engine))
    }

    /// The floor of a no-op: a plain loop in topological order that hashes
    /// each step's version inputs (code version, canonical config, source
    /// path and data version, each input's position and upstream data
    /// version) with blake3 and looks its output up in the same store,
    /// through the same IO manager. Returns `(hash + lookup, hash only,
    /// lookup only)`. Needs a run just before, so the outputs are stored at
    /// the versions looked up. Store open and source stat are left out, as
    /// they are from the run's `job + engine inputs` and `versions +
    /// lookups + run` phases it is compared with.
    pub fn floor(&mut self) -> Result<(Duration, Duration, Duration), String> {
        let engine = self.last.as_ref().ok_or("the floor needs a run first")?;
        let workload = &self.ws.workload;
        let n = workload.len();
        let mut versions: Vec<OutputVersion> = Vec::with_capacity(n);
        for step in &workload.steps {
            let v = engine
                .output_versions(&step.name)
                .map_err(|e| e.to_string())?
                .and_then(|v| v.first().copied())
                .ok_or_else(|| format!("step {} has no known version", step.name))?;
            versions.push(v);
        }
        let zero = DataVersion(trove_engine::Digest([0; 32]));
        let sources: Vec<DataVersion> =
            self.stat.iter().map(|s| s.map_or(zero, |(_, _, d)| d)).collect();
        let configs: Vec<Vec<u8>> = self
            .ws
            .tags
            .iter()
            .map(|t| serde_json::to_vec(&serde_json::json!({ "tag": t })).unwrap_or_default())
            .collect();
        let hash = |i: usize, data: &[DataVersion]| {
            let mut h = blake3::Hasher::new();
            h.update(b"1");
            h.update(&configs[i]);
            h.update(workload.steps[i].source.as_bytes());
            h.update(&sources[i].0.0);
            for (j, &u) in workload.steps[i].inputs.iter().enumerate() {
                h.update(&(j as u64).to_le_bytes());
                h.update(&data[u].0.0);
            }
            h.finalize()
        };
        let mut result = None;
        let root = self.ws.root.clone();
        let backend = self.backend.as_mut().ok_or("the store is in use")?;
        backend.session(&root, &mut |session| {
            let io = session.io();
            let lookup = |i: usize| -> Result<DataVersion, String> {
                let ctx = OutputContext {
                    step: &workload.steps[i].name,
                    output: "o",
                    version: versions[i],
                    path: None,
                    run_id: "floor",
                };
                io.has_output(&ctx).map_err(|e| e.to_string())?.map(|s| s.data_version).ok_or_else(
                    || format!("floor: output of {} is not stored", workload.steps[i].name),
                )
            };
            let mut data = vec![zero; n];
            let started = Instant::now();
            for i in 0..n {
                black_box(hash(i, &data));
                data[i] = lookup(i)?;
            }
            let both = started.elapsed();
            let started = Instant::now();
            for i in 0..n {
                black_box(hash(i, &data));
            }
            let hash_only = started.elapsed();
            let started = Instant::now();
            for i in 0..n {
                black_box(lookup(i)?);
            }
            let lookup_only = started.elapsed();
            result = Some((both, hash_only, lookup_only));
            Ok(())
        })?;
        result.ok_or_else(|| "the store session did not run".to_owned())
    }

    /// Where the workspace is.
    pub fn root(&self) -> PathBuf {
        self.ws.root.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_strips_trailing_spaces_like_sed() {
        assert_eq!(normalise(b"a  \nb\n c \nd  "), b"a\nb\n c\nd");
        assert_eq!(normalise(b""), b"");
    }
}
