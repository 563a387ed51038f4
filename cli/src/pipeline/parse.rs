//! `trove.toml` text → [`Pipeline`]: a pure function (no IO), so every rule
//! of the pipeline file is unit-tested without a process.
//!
//! It checks what can be checked from the text alone and reports each
//! problem as a [`Diagnostic`] with the byte span of the offending snippet:
//! unknown keys (with a did-you-mean), wrong types, unknown template names,
//! absolute paths and paths outside the workspace, two ops writing one path,
//! unknown resources and cycles. Edges come from paths: an input path that is
//! another op's output path, or lies inside an output directory, wires the
//! two ops; any other input path is a source.

use std::collections::BTreeMap;

use serde_json::Value;
use toml_edit::{Item, Key, TableLike};
use trove_engine::job::{find_cycle, is_valid_name};

use super::{
    Diagnostic, InputDef, OpDef, OutputDef, Pipeline, ResourceDef, Span, VersionSource, Wire,
};

const TOP_KEYS: &[&str] = &["job", "resources", "ops"];
const JOB_KEYS: &[&str] = &["name", "early_cutoff"];
const RESOURCE_KEYS: &[&str] = &["version_cmd", "version", "config", "depends_on"];
const OP_KEYS: &[&str] = &["cmd", "in", "out", "config", "code", "version", "resources", "env"];

/// Parses and validates a pipeline file's text.
pub fn parse(text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.message().trim_end().to_owned();
            return Err(vec![Diagnostic::new(
                format!("invalid TOML: {message}"),
                e.span().unwrap_or(0..0),
            )]);
        }
    };
    let mut p = Parser { text, diags: Vec::new() };
    let pipeline = p.pipeline(doc.as_table());
    if p.diags.is_empty() { Ok(pipeline) } else { Err(p.diags) }
}

struct Parser<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
}

/// The closest of `candidates` to `name`, if close enough to suggest.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn key_span(key: &Key) -> Span {
    key.span().unwrap_or(0..0)
}

fn item_span(item: &Item) -> Span {
    match item {
        Item::Table(t) => t.span().unwrap_or(0..0),
        other => other.span().unwrap_or(0..0),
    }
}

/// Normalises a workspace-relative path: `.` and empty components go, `..`
/// pops. Errors say why the path is not acceptable.
pub(crate) fn normalise_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    // Paths are printed one per line (reasons, plans, logs) and reach
    // commands quoted: a line break or NUL in one has no use.
    if path.contains(['\n', '\r', '\0']) {
        return Err(format!("path {path:?} holds a line break or NUL byte"));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err(format!(
            "absolute path `{path}`: paths are relative to the workspace (the directory of trove.toml)"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("path `{path}` is outside the workspace"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("path `{path}` names the workspace itself"));
    }
    if parts[0] == ".trove" {
        return Err(format!("path `{path}` is inside trove's store"));
    }
    Ok(parts.join("/"))
}

/// TOML → JSON for configs (datetimes become strings).
fn to_json(value: &toml_edit::Value) -> Value {
    use toml_edit::Value as V;
    match value {
        V::String(s) => Value::String(s.value().clone()),
        V::Integer(i) => Value::from(*i.value()),
        V::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(Value::Null, Value::Number),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(d) => Value::String(d.value().to_string()),
        V::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        V::InlineTable(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
        }
    }
}

fn item_to_json(item: &Item) -> Value {
    match item {
        Item::Value(v) => to_json(v),
        Item::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.to_owned(), item_to_json(v))).collect())
        }
        Item::ArrayOfTables(a) => Value::Array(
            a.iter()
                .map(|t| {
                    Value::Object(t.iter().map(|(k, v)| (k.to_owned(), item_to_json(v))).collect())
                })
                .collect(),
        ),
        Item::None => Value::Null,
    }
}

impl Parser<'_> {
    fn error(&mut self, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.diags.push(Diagnostic::new(message, span));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn table<'d>(&mut self, item: &'d Item, what: &str) -> Option<&'d dyn TableLike> {
        match item.as_table_like() {
            Some(t) => Some(t),
            None => {
                self.error(
                    format!("{what} must be a table, found {}", item.type_name()),
                    item_span(item),
                );
                None
            }
        }
    }

    /// Entries of a table with their key spans, reporting unknown keys.
    fn entries<'d>(
        &mut self,
        table: &'d dyn TableLike,
        known: &[&str],
        what: &str,
    ) -> Vec<(&'d str, Span, &'d Item)> {
        let mut out = Vec::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else { continue };
            let span = key_span(key);
            if !known.is_empty() && !known.contains(&name) {
                let suggestion = did_you_mean(name, known.iter().copied());
                let d = self.error(format!("unknown key `{name}` in {what}"), span);
                match suggestion {
                    Some(s) => d.label = format!("did you mean `{s}`?"),
                    None => d.label = format!("expected one of {}", known.join(", ")),
                }
                continue;
            }
            out.push((key.get(), span, item));
        }
        out
    }

    fn string(&mut self, item: &Item, what: &str) -> Option<String> {
        match item.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.error(
                    format!("{what} must be a string, found {}", item.type_name()),
                    item_span(item),
                );
                None
            }
        }
    }

    fn strings(&mut self, item: &Item, what: &str) -> Vec<(String, Span)> {
        let Some(array) = item.as_array() else {
            self.error(
                format!("{what} must be an array of strings, found {}", item.type_name()),
                item_span(item),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in array.iter() {
            let span = v.span().unwrap_or(0..0);
            match v.as_str() {
                Some(s) => out.push((s.to_owned(), span)),
                None => {
                    self.error(format!("{what} must hold strings, found {}", v.type_name()), span);
                }
            }
        }
        out
    }

    fn config(&mut self, item: &Item, what: &str) -> Value {
        match item.as_table_like() {
            Some(_) => item_to_json(item),
            None => {
                self.error(
                    format!("{what} must be a table, found {}", item.type_name()),
                    item_span(item),
                );
                Value::Null
            }
        }
    }

    /// Named paths: `in = { raw = "data/raw.csv" }`.
    fn paths(&mut self, item: &Item, what: &str) -> Vec<(String, String, Span)> {
        let Some(table) = self.table(item, what) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, name_span, value) in self.entries(table, &[], what) {
            let span = item_span(value);
            if !is_valid_name(name) {
                self.invalid_name(&format!("{what} name"), name, name_span);
                continue;
            }
            let Some(path) = self.string(value, &format!("{what} `{name}`")) else { continue };
            match normalise_path(&path) {
                Ok(path) => out.push((name.to_owned(), path, span)),
                Err(message) => {
                    self.error(message, span);
                }
            }
        }
        out
    }

    fn pipeline(&mut self, root: &toml_edit::Table) -> Pipeline {
        let mut name = String::from("job");
        let mut early_cutoff = true;
        let mut resources = Vec::new();
        let mut ops = Vec::new();
        for (key, _, item) in self.entries(root, TOP_KEYS, "the pipeline file") {
            match key {
                "job" => {
                    let Some(t) = self.table(item, "[job]") else { continue };
                    for (k, _, v) in self.entries(t, JOB_KEYS, "[job]") {
                        match k {
                            "name" => {
                                if let Some(s) = self.string(v, "job.name") {
                                    name = s;
                                }
                            }
                            _ => match v.as_bool() {
                                Some(b) => early_cutoff = b,
                                None => {
                                    self.error(
                                        format!(
                                            "job.early_cutoff must be true or false, found {}",
                                            v.type_name()
                                        ),
                                        item_span(v),
                                    );
                                }
                            },
                        }
                    }
                }
                "resources" => {
                    let Some(t) = self.table(item, "[resources]") else { continue };
                    for (rname, span, v) in self.entries(t, &[], "[resources]") {
                        if let Some(r) = self.resource(rname, span, v) {
                            resources.push(r);
                        }
                    }
                }
                _ => {
                    let Some(t) = self.table(item, "[ops]") else { continue };
                    for (oname, span, v) in self.entries(t, &[], "[ops]") {
                        if let Some(op) = self.op(oname, span, v) {
                            ops.push(op);
                        }
                    }
                }
            }
        }
        if ops.is_empty() && self.diags.is_empty() {
            self.error("the pipeline has no ops: add an `[ops.NAME]` table with a `cmd`", 0..0);
        }
        let mut pipeline = Pipeline { name, early_cutoff, resources, ops };
        self.check_resources(&pipeline);
        self.wire(&mut pipeline);
        if self.diags.is_empty() {
            self.check_cycles(&pipeline);
        }
        if self.diags.is_empty() {
            self.render_commands(&mut pipeline);
        }
        pipeline
    }

    /// A name the engine would refuse, pointed at in the file.
    fn invalid_name(&mut self, what: &str, name: &str, span: Span) {
        self.error(format!("{what} `{}` is invalid", name.escape_debug()), span).label =
            "names are non-empty and contain no `/`, newline or NUL".into();
    }

    fn resource(&mut self, name: &str, span: Span, item: &Item) -> Option<ResourceDef> {
        if !is_valid_name(name) {
            self.invalid_name("resource name", name, span);
            return None;
        }
        let what = format!("resource `{name}`");
        let table = self.table(item, &what)?;
        let mut def = ResourceDef {
            name: name.to_owned(),
            span,
            version: VersionSource::None,
            config: Value::Null,
            depends_on: Vec::new(),
        };
        for (key, kspan, v) in self.entries(table, RESOURCE_KEYS, &what) {
            match key {
                "version_cmd" | "version" => {
                    if !matches!(def.version, VersionSource::None) {
                        self.error(
                            format!("{what} sets both `version` and `version_cmd`; keep one"),
                            kspan,
                        );
                        continue;
                    }
                    let Some(s) = self.string(v, &format!("{what} {key}")) else { continue };
                    def.version = if key == "version" {
                        VersionSource::Fixed(s)
                    } else {
                        VersionSource::Command(s, item_span(v))
                    };
                }
                "config" => def.config = self.config(v, &format!("{what} config")),
                _ => def.depends_on = self.strings(v, &format!("{what} depends_on")),
            }
        }
        Some(def)
    }

    fn op(&mut self, name: &str, span: Span, item: &Item) -> Option<OpDef> {
        if !is_valid_name(name) {
            self.invalid_name("op name", name, span);
            return None;
        }
        let what = format!("op `{name}`");
        let table = self.table(item, &what)?;
        let mut def = OpDef {
            name: name.to_owned(),
            span: span.clone(),
            template: String::new(),
            template_span: span,
            command: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            config: Value::Null,
            code: Vec::new(),
            version: None,
            resources: Vec::new(),
            env: Vec::new(),
        };
        let mut has_cmd = false;
        for (key, _, v) in self.entries(table, OP_KEYS, &what) {
            match key {
                "cmd" => {
                    // Present, even if of the wrong type: that error is the one.
                    has_cmd = true;
                    if let Some(s) = self.string(v, &format!("{what} cmd")) {
                        def.template = s;
                        def.template_span = item_span(v);
                    }
                }
                "in" => {
                    def.inputs = self
                        .paths(v, &format!("{what} input"))
                        .into_iter()
                        .map(|(name, path, span)| InputDef { name, path, span, from: Wire::Source })
                        .collect();
                }
                "out" => {
                    def.outputs = self
                        .paths(v, &format!("{what} output"))
                        .into_iter()
                        .map(|(name, path, span)| OutputDef { name, path, span })
                        .collect();
                }
                "config" => def.config = self.config(v, &format!("{what} config")),
                "code" => {
                    for (path, span) in self.strings(v, &format!("{what} code")) {
                        match normalise_path(&path) {
                            Ok(path) => def.code.push((path, span)),
                            Err(message) => {
                                self.error(message, span);
                            }
                        }
                    }
                }
                "version" => def.version = self.string(v, &format!("{what} version")),
                "resources" => def.resources = self.strings(v, &format!("{what} resources")),
                _ => def.env = self.strings(v, &format!("{what} env")),
            }
        }
        if !has_cmd {
            self.error(format!("{what} has no `cmd`"), def.span.clone()).label =
                "add `cmd = \"...\"` to this op".into();
        }
        Some(def)
    }

    fn check_resources(&mut self, p: &Pipeline) {
        let names: Vec<&str> = p.resources.iter().map(|r| r.name.as_str()).collect();
        let unknown = |this: &mut Self, name: &str, span: Span, message: String| {
            let suggestion = did_you_mean(name, names.iter().copied());
            let d = this.error(message, span);
            d.label = match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None if names.is_empty() => "no resources are declared".into(),
                None => format!("declared resources: {}", names.join(", ")),
            };
        };
        for op in &p.ops {
            for (r, span) in &op.resources {
                if !names.contains(&r.as_str()) {
                    unknown(
                        self,
                        r,
                        span.clone(),
                        format!("op `{}` requires unknown resource `{r}`", op.name),
                    );
                }
            }
        }
        for res in &p.resources {
            for (d, span) in &res.depends_on {
                if !names.contains(&d.as_str()) {
                    unknown(
                        self,
                        d,
                        span.clone(),
                        format!("resource `{}` depends on unknown resource `{d}`", res.name),
                    );
                }
            }
        }
        // Resource cycles.
        let index: BTreeMap<&str, usize> =
            p.resources.iter().enumerate().map(|(i, r)| (r.name.as_str(), i)).collect();
        let succ: Vec<Vec<usize>> = p
            .resources
            .iter()
            .map(|r| {
                r.depends_on.iter().filter_map(|(d, _)| index.get(d.as_str()).copied()).collect()
            })
            .collect();
        if let Some(cycle) = find_cycle(&succ) {
            let path: Vec<&str> = cycle.iter().map(|&i| p.resources[i].name.as_str()).collect();
            let first = &p.resources[cycle[0]];
            self.error(
                format!("resources form a cycle: {}", path.join(" -> ")),
                first.span.clone(),
            );
        }
    }

    /// Wires inputs to the outputs that write their paths; checks outputs.
    fn wire(&mut self, p: &mut Pipeline) {
        // Every output path, by path.
        let mut writers: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (o, op) in p.ops.iter().enumerate() {
            for (k, out) in op.outputs.iter().enumerate() {
                if let Some(&(o2, k2)) = writers.get(&out.path) {
                    let first = &p.ops[o2];
                    let line = line_col(self.text, first.outputs[k2].span.start).0;
                    let d = self.error(
                        format!(
                            "duplicate output `{}`: written by op `{}` and op `{}`",
                            out.path, first.name, op.name
                        ),
                        out.span.clone(),
                    );
                    d.label = format!(
                        "also declared as output `{}` of op `{}` on line {line}",
                        first.outputs[k2].name, first.name
                    );
                    continue;
                }
                writers.insert(out.path.clone(), (o, k));
            }
        }
        // Outputs nested inside other outputs.
        for (path, &(o, k)) in &writers {
            if let Some((outer, &(o2, _))) = enclosing(&writers, path) {
                let op = &p.ops[o];
                let d = self.error(
                    format!(
                        "output `{path}` of op `{}` lies inside output `{outer}` of op `{}`",
                        op.name, p.ops[o2].name
                    ),
                    op.outputs[k].span.clone(),
                );
                d.label = "outputs may not overlap".into();
            }
        }
        for o in 0..p.ops.len() {
            for i in 0..p.ops[o].inputs.len() {
                let path = p.ops[o].inputs[i].path.clone();
                let found = writers
                    .get(&path)
                    .map(|w| (path.clone(), *w))
                    .or_else(|| enclosing(&writers, &path).map(|(d, w)| (d.to_owned(), *w)));
                if let Some((_, (w, k))) = found {
                    let op = &p.ops[w];
                    p.ops[o].inputs[i].from =
                        Wire::Output { op: op.name.clone(), output: op.outputs[k].name.clone() };
                } else if let Some((inner, &(w, k))) = enclosed(&writers, &path) {
                    // A source directory is hashed before anything runs: an
                    // output written into it would be read stale.
                    let (reader, writer) = (&p.ops[o], &p.ops[w]);
                    let d = self.error(
                        format!(
                            "input `{}` ({path}) of op `{}` is a source directory that holds \
                             `{inner}`, output `{}` of op `{}`",
                            reader.inputs[i].name, reader.name, writer.outputs[k].name, writer.name
                        ),
                        reader.inputs[i].span.clone(),
                    );
                    d.label = format!(
                        "a source may not hold an output: read `{inner}` as an input of its own, \
                         or write it outside `{path}`"
                    );
                }
            }
        }
        // Code files are sources, hashed before anything runs: one that an
        // op writes would be read stale, and its reader not wired.
        for op in &p.ops {
            for (path, span) in &op.code {
                let clash = match writers.get(path) {
                    Some(&w) => Some((format!("code file `{path}` of op `{}` is", op.name), w)),
                    None => match enclosing(&writers, path) {
                        Some((outer, &w)) => Some((
                            format!(
                                "code file `{path}` of op `{}` lies inside `{outer}`, which is",
                                op.name
                            ),
                            w,
                        )),
                        None => enclosed(&writers, path).map(|(inner, &w)| {
                            (
                                format!(
                                    "code directory `{path}` of op `{}` holds `{inner}`, which is",
                                    op.name
                                ),
                                w,
                            )
                        }),
                    },
                };
                if let Some((what, (w, k))) = clash {
                    let writer = &p.ops[w];
                    let d = self.error(
                        format!(
                            "{what} output `{}` of op `{}`",
                            writer.outputs[k].name, writer.name
                        ),
                        span.clone(),
                    );
                    d.label = "code files must be sources: read a generated file through `in`, \
                               which wires the two ops"
                        .into();
                }
            }
        }
    }

    fn check_cycles(&mut self, p: &Pipeline) {
        let index: BTreeMap<&str, usize> =
            p.ops.iter().enumerate().map(|(i, o)| (o.name.as_str(), i)).collect();
        // Edges from a reader to the op it reads: the reader depends on it.
        let succ: Vec<Vec<usize>> = p
            .ops
            .iter()
            .map(|op| {
                op.inputs
                    .iter()
                    .filter_map(|i| match &i.from {
                        Wire::Output { op, .. } => index.get(op.as_str()).copied(),
                        Wire::Source => None,
                    })
                    .collect()
            })
            .collect();
        let Some(cycle) = find_cycle(&succ) else { return };
        // cycle = [a, b, ..., a]: a reads b, b reads ..., back to a.
        let mut steps = Vec::new();
        for pair in cycle.windows(2) {
            let (reader, written) = (&p.ops[pair[0]], &p.ops[pair[1]]);
            if let Some(input) = reader
                .inputs
                .iter()
                .find(|i| matches!(&i.from, Wire::Output { op, .. } if *op == written.name))
            {
                steps.push(format!(
                    "`{}` reads {} (written by `{}`)",
                    reader.name, input.path, written.name
                ));
            }
        }
        let first = &p.ops[cycle[0]];
        let next = &p.ops[cycle[1]];
        let span = first
            .inputs
            .iter()
            .find(|i| matches!(&i.from, Wire::Output { op, .. } if *op == next.name))
            .map_or(first.span.clone(), |i| i.span.clone());
        let names: Vec<&str> = cycle.iter().map(|&i| p.ops[i].name.as_str()).collect();
        let d = self.error(format!("ops form a cycle: {}", names.join(" -> ")), span);
        d.notes = steps;
    }

    fn render_commands(&mut self, p: &mut Pipeline) {
        let resources: BTreeMap<&str, &Value> =
            p.resources.iter().map(|r| (r.name.as_str(), &r.config)).collect();
        let mut rendered = Vec::with_capacity(p.ops.len());
        for op in &p.ops {
            match render_template(op, &resources) {
                Ok(cmd) => rendered.push(cmd),
                Err((message, needle, label)) => {
                    let span = self.find_in(&op.template_span, &needle);
                    let d = self.error(message, span);
                    d.label = label;
                    rendered.push(String::new());
                }
            }
        }
        for (op, cmd) in p.ops.iter_mut().zip(rendered) {
            op.command = cmd;
        }
    }

    /// The span of `needle` inside the source text of `span`, or `span`.
    fn find_in(&self, span: &Span, needle: &str) -> Span {
        self.text
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map_or(span.clone(), |at| span.start + at..span.start + at + needle.len())
    }
}

/// The output directory that encloses `path`, if any.
fn enclosing<'a, T>(writers: &'a BTreeMap<String, T>, path: &str) -> Option<(&'a str, &'a T)> {
    let mut cut = path.len();
    while let Some(slash) = path[..cut].rfind('/') {
        if let Some((k, v)) = writers.get_key_value(&path[..slash]) {
            return Some((k.as_str(), v));
        }
        cut = slash;
    }
    None
}

/// Outputs that would overwrite the pipeline file itself (`file`, its path
/// in the workspace): a failed or stale step would destroy it.
pub(crate) fn check_pipeline_file(p: &Pipeline, file: &str) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for op in &p.ops {
        for out in op.outputs.iter().filter(|o| o.path == file) {
            let mut d = Diagnostic::new(
                format!("output `{}` of op `{}` is the pipeline file `{file}`", out.name, op.name),
                out.span.clone(),
            );
            d.label = "an op may not write the pipeline file: choose another path".into();
            diags.push(d);
        }
    }
    diags
}

/// A store at `store` (workspace-relative) in an output (every re-run of
/// the op would delete it), holding an output, or in a source or code
/// directory (every run would change what it hashes).
pub(crate) fn check_placement(p: &Pipeline, store: &str) -> Vec<Diagnostic> {
    let within = |path: &str, dir: &str| path == dir || path.starts_with(&format!("{dir}/"));
    let mut diags = Vec::new();
    let mut error = |message: String, span: &Span, label: &str| {
        let mut d = Diagnostic::new(message, span.clone());
        d.label = label.to_owned();
        diags.push(d);
    };
    for op in &p.ops {
        for out in &op.outputs {
            if within(store, &out.path) {
                error(
                    format!("output `{}` of op `{}` holds the store `{store}`", out.name, op.name),
                    &out.span,
                    "a re-run of the op would delete the store: write the output elsewhere, \
                     or keep the store outside it (--store)",
                );
            } else if within(&out.path, store) {
                error(
                    format!(
                        "output `{}` of op `{}` lies inside the store `{store}`",
                        out.name, op.name
                    ),
                    &out.span,
                    "choose a path outside the store",
                );
            }
        }
        let sources = op.inputs.iter().filter(|i| matches!(i.from, Wire::Source));
        let sources =
            sources.map(|i| (format!("input `{}` ({})", i.name, i.path), &i.path, &i.span));
        let code = op.code.iter().map(|(path, span)| (format!("code path `{path}`"), path, span));
        for (what, path, span) in sources.chain(code) {
            if within(store, path) {
                error(
                    format!("{what} of op `{}` holds the store `{store}`", op.name),
                    span,
                    "every run would change what it hashes: keep the store outside it (--store)",
                );
            } else if within(path, store) {
                error(
                    format!("{what} of op `{}` lies inside the store `{store}`", op.name),
                    span,
                    "trove changes what is in its store: choose a path outside it",
                );
            }
        }
    }
    diags
}

/// The first output that lies inside directory `path`, if any.
fn enclosed<'a, T>(writers: &'a BTreeMap<String, T>, path: &str) -> Option<(&'a str, &'a T)> {
    let prefix = format!("{path}/");
    writers
        .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
        .next()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.as_str(), v))
}

/// Quotes a word for `sh`, leaving plain words bare.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain { s.to_owned() } else { format!("'{}'", s.replace('\'', "'\\''")) }
}

fn value_word(value: &Value) -> String {
    match value {
        Value::String(s) => shell_quote(s),
        Value::Null => shell_quote(""),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        other => shell_quote(&other.to_string()),
    }
}

fn lookup<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
}

type TemplateError = (String, String, String);

/// Substitutes `{in.NAME}`, `{out.NAME}`, `{config.KEY}` and
/// `{resource.NAME.KEY}`, shell-quoted. Other braces (awk programs, shell
/// brace expansion) are left alone.
pub(crate) fn render_template(
    op: &OpDef,
    resources: &BTreeMap<&str, &Value>,
) -> Result<String, TemplateError> {
    let t = &op.template;
    let mut out = String::with_capacity(t.len());
    let mut rest = t.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap_or(after.len());
        let name = &after[..end];
        let closed = after[end..].starts_with('}');
        let Some((ns, key)) = name.split_once('.').filter(|_| closed) else {
            out.push('{');
            rest = after;
            continue;
        };
        let placeholder = format!("{{{name}}}");
        let word = match ns {
            "in" => {
                op.inputs.iter().find(|i| i.name == key).map(|i| shell_quote(&i.path)).ok_or_else(
                    || {
                        unknown(
                            op,
                            &placeholder,
                            "input",
                            key,
                            op.inputs.iter().map(|i| i.name.as_str()),
                        )
                    },
                )?
            }
            "out" => {
                op.outputs.iter().find(|o| o.name == key).map(|o| shell_quote(&o.path)).ok_or_else(
                    || {
                        unknown(
                            op,
                            &placeholder,
                            "output",
                            key,
                            op.outputs.iter().map(|o| o.name.as_str()),
                        )
                    },
                )?
            }
            "config" => lookup(&op.config, key).map(value_word).ok_or_else(|| {
                let keys = config_keys(&op.config);
                unknown(op, &placeholder, "config key", key, keys.iter().map(String::as_str))
            })?,
            "resource" => {
                let (res, rkey) = key.split_once('.').unwrap_or((key, ""));
                if !op.resources.iter().any(|(r, _)| r == res) {
                    return Err((
                        format!(
                            "unknown template name `{placeholder}` in op `{}`: it does not require resource `{res}`",
                            op.name
                        ),
                        placeholder,
                        format!("add \"{res}\" to the op's `resources`"),
                    ));
                }
                let config = resources.get(res).copied().unwrap_or(&Value::Null);
                lookup(config, rkey).map(value_word).ok_or_else(|| {
                    let keys = config_keys(config);
                    unknown(
                        op,
                        &placeholder,
                        &format!("config key of resource `{res}`"),
                        rkey,
                        keys.iter().map(String::as_str),
                    )
                })?
            }
            _ => {
                out.push('{');
                rest = after;
                continue;
            }
        };
        out.push_str(&word);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn config_keys(config: &Value) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Value::Object(map) = v {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.push(key.clone());
                walk(&key, v, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

fn unknown<'a>(
    op: &OpDef,
    placeholder: &str,
    kind: &str,
    key: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) -> TemplateError {
    let names: Vec<&str> = known.clone().collect();
    let label = match did_you_mean(key, known) {
        Some(s) => format!("did you mean `{s}`?"),
        None if names.is_empty() => format!("op `{}` declares no {kind}s", op.name),
        None => format!("known: {}", names.join(", ")),
    };
    (
        format!("unknown template name `{placeholder}` in op `{}`: no {kind} `{key}`", op.name),
        placeholder.to_owned(),
        label,
    )
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col =
        before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count())
            + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
