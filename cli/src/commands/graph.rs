//! `trove graph`: the job graph as Graphviz dot or a Mermaid flowchart. Needs
//! only the pipeline file, not the store.

use std::process::ExitCode;

use crate::args::{GraphArgs, GraphFormat};
use crate::commands::Ctx;
use crate::pipeline::{Pipeline, Wire};

/// Runs `trove graph`.
pub fn exec(args: GraphArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let ws = ctx.workspace()?;
    let pipeline = ws.parse()?;
    let text = match args.format {
        GraphFormat::Dot => dot(&pipeline),
        GraphFormat::Mermaid => mermaid(&pipeline),
    };
    crate::render::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The pipeline's sources, in the order ops first read them.
fn sources(p: &Pipeline) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&str> = Vec::new();
    for op in &p.ops {
        for i in &op.inputs {
            if i.from == Wire::Source && seen.insert(i.path.as_str()) {
                out.push(&i.path);
            }
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz dot: ops are boxes, sources are notes, edges carry the path.
pub fn dot(p: &Pipeline) -> String {
    let mut out = format!("digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n", quote(&p.name));
    for src in sources(p) {
        out.push_str(&format!(
            "  {} [label={}, shape=note];\n",
            quote(&format!("source:{src}")),
            quote(src)
        ));
    }
    for op in &p.ops {
        out.push_str(&format!("  {};\n", quote(&op.name)));
    }
    for op in &p.ops {
        for i in &op.inputs {
            let from = match &i.from {
                Wire::Source => format!("source:{}", i.path),
                Wire::Output { op, .. } => op.clone(),
            };
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                quote(&from),
                quote(&op.name),
                quote(&i.path)
            ));
        }
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart: ops are boxes, sources are cylinders.
pub fn mermaid(p: &Pipeline) -> String {
    let label = |s: &str| s.replace('"', "#quot;");
    let srcs = sources(p);
    let src_index: std::collections::HashMap<&str, usize> =
        srcs.iter().enumerate().map(|(k, s)| (*s, k)).collect();
    let op_index: std::collections::HashMap<&str, usize> =
        p.ops.iter().enumerate().map(|(k, o)| (o.name.as_str(), k)).collect();
    let mut out = String::from("flowchart LR\n");
    for (k, src) in srcs.iter().enumerate() {
        out.push_str(&format!("  s{k}[(\"{}\")]\n", label(src)));
    }
    for (k, op) in p.ops.iter().enumerate() {
        out.push_str(&format!("  o{k}[\"{}\"]\n", label(&op.name)));
    }
    for (k, op) in p.ops.iter().enumerate() {
        for i in &op.inputs {
            let from = match &i.from {
                Wire::Source => src_index.get(i.path.as_str()).map(|s| format!("s{s}")),
                Wire::Output { op, .. } => op_index.get(op.as_str()).map(|o| format!("o{o}")),
            };
            if let Some(from) = from {
                out.push_str(&format!("  {from} -->|\"{}\"| o{k}\n", label(&i.path)));
            }
        }
    }
    out
}
