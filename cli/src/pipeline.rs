//! The pipeline file (`trove.toml`) and how it becomes a [`Job`] of command
//! ops.
//!
//! [`parse()`] is pure: text in, [`Pipeline`] or [`Diagnostic`]s out. The rest
//! of this module is the thin IO layer around it: finding the file, running
//! resources' `version_cmd`, hashing the code files and sources (through the
//! store's stat cache) and turning each op into an engine [`Op`] whose
//! computation runs its command through [`crate::command`].

mod cache;
pub mod parse;

pub use cache::Reached;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trove_engine::{DataVersion, InputFrom, Job, Op, Resource, VersionMode};

pub use parse::parse;

/// A byte range in the pipeline file.
pub type Span = std::ops::Range<usize>;

/// One problem found in a pipeline file, with the span it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one line.
    pub message: String,
    /// The offending snippet.
    pub span: Span,
    /// A short label under the snippet (a did-you-mean, a hint).
    pub label: String,
    /// Further lines.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic without a label.
    pub fn new(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic { message: message.into(), span, label: String::new(), notes: Vec::new() }
    }

    /// Renders it like rustc: message, `--> file:line:col`, the line, a
    /// caret under the snippet.
    pub fn render(&self, file: &str, text: &str) -> String {
        let (line, col) = parse::line_col(text, self.span.start);
        let mut out = format!("error: {}\n", self.message);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        out.push_str(&format!("{pad}--> {file}:{line}:{col}\n"));
        let source_line = text.lines().nth(line - 1).unwrap_or("");
        if !source_line.is_empty() || !self.label.is_empty() {
            let start = col - 1;
            let line_chars = source_line.chars().count();
            let span_chars = text
                .get(self.span.clone())
                .map_or(1, |s| s.lines().next().unwrap_or("").chars().count())
                .clamp(1, line_chars.saturating_sub(start).max(1));
            out.push_str(&format!("{pad} |\n{line} | {source_line}\n"));
            let label =
                if self.label.is_empty() { String::new() } else { format!(" {}", self.label) };
            out.push_str(&format!(
                "{pad} | {}{}{label}\n",
                " ".repeat(start),
                "^".repeat(span_chars)
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("{pad} = note: {note}\n"));
        }
        out
    }
}

/// Rendered diagnostics of a pipeline file: an input error (exit code 2).
#[derive(Debug)]
pub struct PipelineError(pub String);

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for PipelineError {}

/// Where an input reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A source file or directory, versioned by its content.
    Source,
    /// An output of another op.
    Output {
        /// The op.
        op: String,
        /// Its output name.
        output: String,
    },
}

/// A named input of an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDef {
    /// The input name.
    pub name: String,
    /// Its normalised workspace-relative path.
    pub path: String,
    /// Where the path is written in the file.
    pub span: Span,
    /// What writes it.
    pub from: Wire,
}

/// A named output of an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDef {
    /// The output name.
    pub name: String,
    /// Its normalised workspace-relative path.
    pub path: String,
    /// Where the path is written in the file.
    pub span: Span,
}

/// How a resource's code version is decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionSource {
    /// Nothing said: the version covers the config only.
    None,
    /// `version = "..."`.
    Fixed(String),
    /// `version_cmd = "..."`: its standard output, and the span of the command.
    Command(String, Span),
}

/// A `[resources.NAME]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceDef {
    /// The name.
    pub name: String,
    /// The span of its name.
    pub span: Span,
    /// Its code version.
    pub version: VersionSource,
    /// Its config.
    #[serde(with = "json_text")]
    pub config: Value,
    /// Resources it depends on, with spans.
    pub depends_on: Vec<(String, Span)>,
}

/// An `[ops.NAME]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpDef {
    /// The name.
    pub name: String,
    /// The span of its name.
    pub span: Span,
    /// The command template as written.
    pub template: String,
    /// Where the template is written.
    pub template_span: Span,
    /// The command with every placeholder substituted.
    pub command: String,
    /// Named inputs.
    pub inputs: Vec<InputDef>,
    /// Named outputs.
    pub outputs: Vec<OutputDef>,
    /// Config.
    #[serde(with = "json_text")]
    pub config: Value,
    /// Files whose content is part of the code version, with spans.
    pub code: Vec<(String, Span)>,
    /// Explicit code version.
    pub version: Option<String>,
    /// Required resources, with spans.
    pub resources: Vec<(String, Span)>,
    /// Declared environment variables, with spans.
    pub env: Vec<(String, Span)>,
}

/// A parsed, validated pipeline file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The job name.
    pub name: String,
    /// Early cutoff (default) or lineage mode.
    pub early_cutoff: bool,
    /// Resources in file order.
    pub resources: Vec<ResourceDef>,
    /// Ops in file order.
    pub ops: Vec<OpDef>,
}

impl Pipeline {
    /// The op named `name`.
    pub fn op(&self, name: &str) -> Option<&OpDef> {
        self.ops.iter().find(|o| o.name == name)
    }
}

/// A JSON value stored as its text, for the compact binary codec of the
/// parse cache (which cannot carry a self-describing value).
mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub(super) fn serialize<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
        value.to_string().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// The pipeline file and the workspace around it.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The workspace root: the directory of the pipeline file (absolute).
    pub root: PathBuf,
    /// The pipeline file (absolute).
    pub file: PathBuf,
    /// How to show the file in messages.
    pub display: String,
    /// Its text.
    pub text: String,
    /// [`crate::uptodate::key`] of it, computed once.
    pub key: std::sync::OnceLock<trove_engine::Digest>,
    /// The store directory, workspace-relative, when it lies inside the
    /// workspace (`.trove` unless `--store` says otherwise).
    pub store: Option<String>,
}

impl Workspace {
    /// Finds the pipeline file: `file` (relative to `dir`) or
    /// `dir/trove.toml`; `shown_dir` is how to show `dir` in messages.
    pub fn locate(
        dir: &Path,
        shown_dir: Option<&Path>,
        file: Option<&Path>,
    ) -> anyhow::Result<Workspace> {
        let shown = |p: &Path| match shown_dir {
            Some(d) => d.join(p).display().to_string(),
            None => p.display().to_string(),
        };
        let (path, display) = match file {
            Some(f) => (dir.join(f), shown(f)),
            None => {
                let path = dir.join("trove.toml");
                if !path.is_file() {
                    anyhow::bail!(
                        "no trove.toml in {}: give a pipeline file with -f, or create an example with `trove init`",
                        shown_dir.map_or_else(
                            || "the current directory".to_owned(),
                            |d| d.display().to_string()
                        )
                    );
                }
                (path, shown(Path::new("trove.toml")))
            }
        };
        let path =
            std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {display}"))?;
        // Line ends are `\n` whatever the editor wrote: a `\r` left at the
        // end of each line of a multi-line command would reach the shell
        // (TOML lets a parser normalise them; Python's does).
        let text = if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text };
        let root = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        Ok(Workspace {
            root,
            file: path,
            display,
            text,
            key: std::sync::OnceLock::new(),
            store: Some(".trove".to_owned()),
        })
    }

    /// Takes note of where the store is: a store inside the workspace may not
    /// lie in an output, a source or a code directory.
    pub fn with_store(mut self, store_dir: &Path) -> Workspace {
        let absolute = std::path::absolute(store_dir).unwrap_or_else(|_| store_dir.to_path_buf());
        let mut clean = PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::CurDir => {}
                other => clean.push(other),
            }
        }
        self.store = clean
            .strip_prefix(&self.root)
            .ok()
            .map(|rel| rel.to_string_lossy().replace('\\', "/"))
            .filter(|rel| !rel.is_empty());
        self
    }

    /// Parses the file through the store's parse cache: a file whose text
    /// (and trove version) was parsed before is decoded, not parsed again
    /// (parsing is the largest cost of a run with little to do). Only
    /// successful parses are cached; a read-only store is only read.
    pub fn parse_cached(&self, store: &trove_store::Store) -> anyhow::Result<Pipeline> {
        if let Ok(Some(bytes)) = store.cached(&self.cache_slot(), &crate::uptodate::key(self))
            && let Some(pipeline) = cache::decode(&bytes)
        {
            return Ok(pipeline);
        }
        let pipeline = self.parse()?;
        if !store.is_read_only() {
            self.cache(store, &pipeline);
        }
        Ok(pipeline)
    }

    /// The ops an edit of `changed` reaches, decoded alone from the parse
    /// cache (see [`Reached`]); `None` if the cache does not hold this text's
    /// pipeline or the edit is not one of sources and code files only.
    pub fn reached_cached(
        &self,
        store: &trove_store::Store,
        changed: &[String],
    ) -> Option<Reached> {
        let bytes = match store.cached(&self.cache_slot(), &crate::uptodate::key(self)) {
            Ok(Some(bytes)) => bytes,
            // Not cached yet (the runs since the text changed were answered
            // by the stamp): parse and cache it now.
            _ => self.cache(store, &self.parse().ok()?)?,
        };
        cache::reached(&bytes, changed)
    }

    /// Where the parse cache keeps this pipeline file's entry.
    fn cache_slot(&self) -> String {
        format!("pipeline:{}", self.file.display())
    }

    /// Encodes `pipeline` for the parse cache and keeps it there, under the
    /// key of this text; the bytes. A cache that cannot be written only
    /// costs the next run a parse.
    fn cache(&self, store: &trove_store::Store, pipeline: &Pipeline) -> Option<Vec<u8>> {
        let bytes = cache::encode(pipeline)?;
        if !store.is_read_only() {
            let _ = store.put_cached(&self.cache_slot(), &crate::uptodate::key(self), &bytes);
        }
        Some(bytes)
    }

    /// Parses the file; diagnostics become a [`PipelineError`].
    pub fn parse(&self) -> anyhow::Result<Pipeline> {
        let file = self.file.file_name().map(|f| f.to_string_lossy().into_owned());
        parse(&self.text)
            .and_then(|pipeline| {
                let mut diags =
                    file.map(|f| parse::check_pipeline_file(&pipeline, &f)).unwrap_or_default();
                // A pipeline file that is a link: its target, if in the
                // workspace, may not be written either.
                if self.file.is_symlink()
                    && let (Ok(target), Ok(root)) =
                        (std::fs::canonicalize(&self.file), std::fs::canonicalize(&self.root))
                    && let Ok(rel) = target.strip_prefix(&root)
                {
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    diags.extend(parse::check_pipeline_file(&pipeline, &rel));
                }
                if let Some(store) = &self.store {
                    diags.extend(parse::check_placement(&pipeline, store));
                }
                if diags.is_empty() { Ok(pipeline) } else { Err(diags) }
            })
            .map_err(|diags| {
                let mut out = String::new();
                for d in &diags {
                    out.push_str(&d.render(&self.display, &self.text));
                }
                if diags.len() > 1 {
                    out.push_str(&format!("error: {} problems in {}\n", diags.len(), self.display));
                }
                anyhow::Error::new(PipelineError(out))
            })
    }

    /// One diagnostic as a [`PipelineError`].
    pub fn error(&self, diagnostic: Diagnostic) -> anyhow::Error {
        anyhow::Error::new(PipelineError(diagnostic.render(&self.display, &self.text)))
    }
}

/// Source paths that reach an output through a linked directory
/// (`alias -> build`, input `alias/a.txt`, output `build/a.txt`): edges
/// come from paths, so such a source would be hashed before its writer
/// runs and read stale. Directories are looked at once each, and only a
/// path under a linked one is resolved.
struct LinkedDirs<'a> {
    root: &'a Path,
    real_root: Option<PathBuf>,
    outputs: BTreeMap<&'a str, ()>,
    linked: std::collections::HashMap<String, bool>,
}

impl<'a> LinkedDirs<'a> {
    fn new(root: &'a Path, pipeline: &'a Pipeline) -> LinkedDirs<'a> {
        let outputs =
            pipeline.ops.iter().flat_map(|o| &o.outputs).map(|o| (o.path.as_str(), ())).collect();
        LinkedDirs { root, real_root: None, outputs, linked: std::collections::HashMap::new() }
    }

    /// The output path (or the path inside an output directory) `path`
    /// really is, when a directory on its way is a link and it is one.
    fn output_behind(&mut self, path: &str) -> Option<String> {
        let (parent, name) = path.rsplit_once('/')?;
        let prefixes =
            parent.match_indices('/').map(|(i, _)| &parent[..i]).chain(std::iter::once(parent));
        let mut any = false;
        for prefix in prefixes {
            any |= *self.linked.entry(prefix.to_owned()).or_insert_with(|| {
                std::fs::symlink_metadata(self.root.join(prefix)).is_ok_and(|m| m.is_symlink())
            });
        }
        if !any {
            return None;
        }
        if self.real_root.is_none() {
            self.real_root = std::fs::canonicalize(self.root).ok();
        }
        let real_parent = std::fs::canonicalize(self.root.join(parent)).ok()?;
        let rel = real_parent.strip_prefix(self.real_root.as_ref()?).ok()?;
        let real = if rel.as_os_str().is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", rel.to_string_lossy())
        };
        let written = self.outputs.contains_key(real.as_str())
            || real.match_indices('/').any(|(i, _)| self.outputs.contains_key(&real[..i]));
        written.then_some(real)
    }
}

/// A job built from a pipeline, with what the engine must be told before
/// planning.
pub struct Built {
    /// The job.
    pub job: Job,
    /// Each source's name (its path) and data version.
    pub sources: BTreeMap<String, DataVersion>,
    /// Each declared environment variable and its value.
    pub env: Vec<(String, Option<String>)>,
    /// Each resource `version_cmd` and what it printed.
    pub probes: Vec<(String, String)>,
    /// Every file the job reads or writes, workspace-relative: sources, code
    /// files, outputs (what an up-to-date stamp vouches for).
    pub files: Vec<String>,
}

/// What a cut build ([`build_cut`]) takes from the stamped run it
/// completes.
#[derive(Debug)]
pub struct Cut<'a> {
    /// `version_cmd`s and what they printed, as the stamp check re-ran and
    /// compared them moments ago: not run a second time.
    pub probes: &'a [(String, String)],
}

/// Builds the job: runs `version_cmd`s, hashes code files and sources with
/// `hash` (workspace-relative path → data version), and makes each op run its
/// command.
pub fn build(
    ws: &Workspace,
    pipeline: &Pipeline,
    hash: &dyn Fn(&str) -> anyhow::Result<DataVersion>,
) -> anyhow::Result<Built> {
    build_cut(ws, pipeline, None, hash)
}

/// [`build`], of a pipeline cut out of a larger one ([`Reached`]): an input
/// wired to an op not in `pipeline` reads that op's output from outside the
/// job ([`trove_engine::InputFrom::Outside`]), its data version hashed like
/// a source's. The cut must be closed downstream (every reader of a cut op
/// is cut too), and the pipeline in early-cutoff mode; its ops then get the
/// versions the whole job gives them. `files` lists the cut's files only.
pub fn build_cut(
    ws: &Workspace,
    pipeline: &Pipeline,
    cut: Option<&Cut<'_>>,
    hash: &dyn Fn(&str) -> anyhow::Result<DataVersion>,
) -> anyhow::Result<Built> {
    let known = cut.map_or(&[][..], |c| c.probes);
    let in_pipeline: std::collections::HashSet<&str> = match cut {
        Some(_) => pipeline.ops.iter().map(|o| o.name.as_str()).collect(),
        None => std::collections::HashSet::new(),
    };
    let root = Arc::new(ws.root.clone());
    let mut probes = Vec::new();
    let mut builder = Job::builder(pipeline.name.clone()).mode(if pipeline.early_cutoff {
        VersionMode::EarlyCutoff
    } else {
        VersionMode::Lineage
    });
    for res in &pipeline.resources {
        let mut r = Resource::new(res.name.clone()).config(res.config.clone());
        r = match &res.version {
            VersionSource::None => r.source_text(""),
            VersionSource::Fixed(v) => r.code_version(v.clone()),
            VersionSource::Command(cmd, span) => {
                let version = match known.iter().find(|(c, _)| c == cmd) {
                    Some((_, printed)) => printed.clone(),
                    None => crate::command::version_of(&ws.root, cmd).map_err(|e| {
                        let mut d = Diagnostic::new(
                            format!("version_cmd of resource `{}` failed", res.name),
                            span.clone(),
                        );
                        d.notes = e.lines().map(str::to_owned).collect();
                        ws.error(d)
                    })?,
                };
                probes.push((cmd.clone(), version.clone()));
                r.code_version(version)
            }
        };
        for (dep, _) in &res.depends_on {
            r = r.depends_on(dep.clone());
        }
        builder = builder.resource(r);
    }
    // Keyed by path, so each source is hashed once and a pipeline of 100k
    // steps stays linear.
    let mut sources: BTreeMap<String, DataVersion> = BTreeMap::new();
    let mut links = LinkedDirs::new(&ws.root, pipeline);
    let mut env_names: Vec<String> = Vec::new();
    for def in &pipeline.ops {
        let mut op = Op::new(def.name.clone()).config(def.config.clone());
        match &def.version {
            Some(v) => op = op.code_version(v.clone()),
            None => {
                op = op.source_text(def.template.clone());
                for (path, span) in &def.code {
                    let data = hash(path).map_err(|e| {
                        let mut d = Diagnostic::new(
                            format!("code file {path} of op `{}` cannot be read", def.name),
                            span.clone(),
                        );
                        d.label = format!("{e:#}");
                        ws.error(d)
                    })?;
                    op = op.code_file(path.clone(), data);
                }
            }
        }
        for input in &def.inputs {
            let from = match &input.from {
                Wire::Source => {
                    if !sources.contains_key(&input.path) {
                        if let Some(real) = links.output_behind(&input.path) {
                            let mut d = Diagnostic::new(
                                format!(
                                    "input `{}` of op `{}` reads {}, which is {real}, written by an op, through a symbolic link",
                                    input.name, def.name, input.path
                                ),
                                input.span.clone(),
                            );
                            d.label = format!("name it `{real}` so the op runs after its writer");
                            return Err(ws.error(d));
                        }
                        let data = hash(&input.path).map_err(|e| {
                            let mut d = Diagnostic::new(
                                format!(
                                    "missing input: `{}` of op `{}` reads {}, which no op writes and which cannot be read",
                                    input.name, def.name, input.path
                                ),
                                input.span.clone(),
                            );
                            d.label = format!("{e:#}");
                            ws.error(d)
                        })?;
                        sources.insert(input.path.clone(), data);
                    }
                    InputFrom::source(input.path.clone())
                }
                Wire::Output { op: up, output }
                    if cut.is_some() && !in_pipeline.contains(up.as_str()) =>
                {
                    if !sources.contains_key(&input.path) {
                        sources.insert(input.path.clone(), hash(&input.path)?);
                    }
                    InputFrom::outside(input.path.clone(), up.clone(), output.clone())
                }
                Wire::Output { op, output } => InputFrom::output(op.clone(), output.clone()),
            };
            op = op.input_at(input.name.clone(), from, input.path.clone());
        }
        for out in &def.outputs {
            op = op.output_at(out.name.clone(), out.path.clone());
        }
        for (r, _) in &def.resources {
            op = op.resource(r.clone());
        }
        for (e, _) in &def.env {
            op = op.env(e.clone());
            if !env_names.contains(e) {
                env_names.push(e.clone());
            }
        }
        let step = crate::command::CommandStep {
            root: Arc::clone(&root),
            command: def.command.clone(),
            outputs: def.outputs.iter().map(|o| o.path.clone()).collect(),
        };
        op = op.compute(move |ctx| step.run(ctx));
        builder = builder.op(op);
    }
    let job = builder.build().with_context(|| format!("building the job of {}", ws.display))?;
    let env = env_names.into_iter().map(|n| (n.clone(), crate::command::env_var(&n))).collect();
    let files = pipeline.files();
    Ok(Built { job, sources, env, probes, files })
}

impl Pipeline {
    /// Every file the pipeline reads or writes, workspace-relative and
    /// sorted: sources, code files (of ops versioned by their text) and
    /// outputs.
    pub fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = Vec::new();
        for op in &self.ops {
            files.extend(
                op.inputs.iter().filter(|i| i.from == Wire::Source).map(|i| i.path.clone()),
            );
            if op.version.is_none() {
                files.extend(op.code.iter().map(|(path, _)| path.clone()));
            }
            files.extend(op.outputs.iter().map(|o| o.path.clone()));
        }
        files.sort_unstable();
        files.dedup();
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
[job]
name = "cached"
early_cutoff = false

[resources.db]
version_cmd = "echo 1"
config = { url = "x", pool = 4, ratio = 0.5, on = true, none = [], nested = { a = [1, "1"] } }

[resources.cache]
version = "v2"
depends_on = ["db"]

[ops.a]
cmd = "cp {in.src} {out.o} # {config.n}"
in = { src = "data/in.txt" }
out = { o = "build/a.txt" }
config = { n = 1, s = "1", list = [1, 2.5, "x"], big = 9223372036854775807, f = 0.1, neg = -3 }
code = ["tool.sh"]
resources = ["db", "cache"]
env = ["HOME"]

[ops.b]
cmd = "cat {in.a} > {out.o}"
in = { a = "build/a.txt" }
out = { o = "build/b.txt" }
version = "7"
"#;

    #[test]
    fn the_parse_cache_codec_gives_back_exactly_the_parsed_pipeline() {
        let parsed = parse(PIPELINE).expect("parses");
        let bytes = cache::encode(&parsed).expect("encodes");
        let back: Pipeline = cache::decode(&bytes).expect("decodes");
        assert_eq!(back, parsed);
        // Typed config survives: 1 and "1" stay different.
        let a = back.op("a").expect("op a");
        assert_eq!(a.config["n"], serde_json::json!(1));
        assert_eq!(a.config["s"], serde_json::json!("1"));
        assert_eq!(a.config["big"], serde_json::json!(i64::MAX));
        assert_eq!(a.config["f"], serde_json::json!(0.1));
    }

    #[test]
    fn the_cache_decodes_the_ops_an_edit_reaches_and_nothing_else() {
        let mut parsed = parse(PIPELINE).expect("parses");
        parsed.early_cutoff = true;
        let bytes = cache::encode(&parsed).expect("encodes");
        let names = |r: &Reached| r.pipeline.ops.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
        // A source of `a`: `a` and its reader `b`.
        let reached = cache::reached(&bytes, &["data/in.txt".into()]).expect("a cut");
        assert_eq!(names(&reached), ["a", "b"]);
        // A code file of `a`, the same; nothing of `b`'s own.
        assert_eq!(names(&cache::reached(&bytes, &["tool.sh".into()]).expect("a cut")), ["a", "b"]);
        // An output, a file the pipeline does not have, or lineage mode: no cut.
        assert!(cache::reached(&bytes, &["build/a.txt".into()]).is_none());
        assert!(cache::reached(&bytes, &["elsewhere.txt".into()]).is_none());
        parsed.early_cutoff = false;
        let lineage = cache::encode(&parsed).expect("encodes");
        assert!(cache::reached(&lineage, &["data/in.txt".into()]).is_none());
    }
}
