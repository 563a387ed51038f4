//! The parse cache's format: a pipeline that can be decoded whole, or in
//! part.
//!
//! A plain run after a parse decodes the whole pipeline (every op). A run
//! after an edit of a few sources needs only the ops the edit reaches: at 10k
//! ops, decoding all of them to build one cost more than the rest of such a
//! run. So each op is stored as bytes of its own, next to a [`CutIndex`] —
//! which ops read each file, which ops read each op — from which the reached
//! ops are found and only they are decoded. Op bytes and paths are borrowed
//! from the cached buffer, not copied.

use serde::{Deserialize, Serialize};

use super::{OpDef, Pipeline, ResourceDef, Wire};

/// The cached form of a [`Pipeline`].
#[derive(Debug, Serialize, Deserialize)]
struct CachedPipeline<'a> {
    name: String,
    early_cutoff: bool,
    resources: Vec<ResourceDef>,
    /// Each op, postcard-encoded, in file order.
    #[serde(borrow)]
    ops: Vec<&'a [u8]>,
    #[serde(borrow)]
    index: CutIndex<'a>,
}

/// What finding the ops an edit reaches takes, in flat arrays (compressed
/// rows: the readers of file `i` are `file_readers[file_start[i]..
/// file_start[i + 1]]`).
#[derive(Debug, Serialize, Deserialize)]
struct CutIndex<'a> {
    /// Every file the pipeline reads or writes, sorted: sources, code files
    /// (of ops versioned by their text) and outputs.
    #[serde(borrow)]
    files: Vec<&'a str>,
    /// Per file: whether an op writes it.
    output: Vec<bool>,
    file_start: Vec<u32>,
    /// Ops reading each file as a source or a code file.
    file_readers: Vec<u32>,
    op_start: Vec<u32>,
    /// Ops reading an output of each op.
    op_readers: Vec<u32>,
}

/// Encodes `pipeline` for the cache.
pub(super) fn encode(pipeline: &Pipeline) -> Option<Vec<u8>> {
    let ops: Vec<Vec<u8>> =
        pipeline.ops.iter().map(postcard::to_allocvec).collect::<Result<_, _>>().ok()?;
    let files = pipeline.files();
    let position = |path: &str| files.binary_search_by(|f| f.as_str().cmp(path)).ok();
    let mut readers: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
    let mut output = vec![false; files.len()];
    let index_of: std::collections::HashMap<&str, u32> =
        pipeline.ops.iter().enumerate().map(|(i, o)| (o.name.as_str(), i as u32)).collect();
    let mut op_readers: Vec<Vec<u32>> = vec![Vec::new(); pipeline.ops.len()];
    for (i, op) in pipeline.ops.iter().enumerate() {
        let i = i as u32;
        for input in &op.inputs {
            match &input.from {
                Wire::Source => readers[position(&input.path)?].push(i),
                Wire::Output { op: up, .. } => {
                    op_readers[*index_of.get(up.as_str())? as usize].push(i)
                }
            }
        }
        if op.version.is_none() {
            for (path, _) in &op.code {
                readers[position(path)?].push(i);
            }
        }
        for out in &op.outputs {
            output[position(&out.path)?] = true;
        }
    }
    let (file_start, file_readers) = compress(readers);
    let (op_start, op_readers) = compress(op_readers);
    let cached = CachedPipeline {
        name: pipeline.name.clone(),
        early_cutoff: pipeline.early_cutoff,
        resources: pipeline.resources.clone(),
        ops: ops.iter().map(Vec::as_slice).collect(),
        index: CutIndex {
            files: files.iter().map(String::as_str).collect(),
            output,
            file_start,
            file_readers,
            op_start,
            op_readers,
        },
    };
    postcard::to_allocvec(&cached).ok()
}

fn compress(rows: Vec<Vec<u32>>) -> (Vec<u32>, Vec<u32>) {
    let mut start = Vec::with_capacity(rows.len() + 1);
    let mut flat = Vec::new();
    start.push(0);
    for mut row in rows {
        row.sort_unstable();
        row.dedup();
        flat.extend(row);
        start.push(flat.len() as u32);
    }
    (start, flat)
}

/// The whole pipeline (`None`: the bytes are not a cached pipeline).
pub(super) fn decode(bytes: &[u8]) -> Option<Pipeline> {
    let cached: CachedPipeline<'_> = postcard::from_bytes(bytes).ok()?;
    let ops = cached.ops.iter().map(|op| postcard::from_bytes(op).ok()).collect::<Option<_>>()?;
    Some(Pipeline {
        name: cached.name,
        early_cutoff: cached.early_cutoff,
        resources: cached.resources,
        ops,
    })
}

/// The part of a pipeline an edit of `changed` (workspace-relative files,
/// each one of the pipeline's) reaches.
#[derive(Debug)]
pub struct Reached {
    /// The pipeline of the reached ops only (in file order), its resources
    /// and mode; an input wired to an op left out reads from outside.
    pub pipeline: Pipeline,
}

/// The ops an edit of `changed` reaches — those reading a changed file as a
/// source or a code file, and everything downstream of them — decoded
/// alone. `None` when that is not a question of ops alone (a changed file is
/// an output, or not one of the pipeline's; the job is in lineage mode) or
/// the bytes are not a cached pipeline.
pub(super) fn reached(bytes: &[u8], changed: &[String]) -> Option<Reached> {
    let cached: CachedPipeline<'_> = postcard::from_bytes(bytes).ok()?;
    if !cached.early_cutoff {
        return None;
    }
    let index = &cached.index;
    let mut reached = vec![false; cached.ops.len()];
    let mut stack = Vec::new();
    for path in changed {
        let f = index.files.binary_search(&path.as_str()).ok()?;
        if index.output[f] {
            return None;
        }
        let (from, to) = (index.file_start[f] as usize, index.file_start[f + 1] as usize);
        stack.extend_from_slice(index.file_readers.get(from..to)?);
    }
    while let Some(op) = stack.pop() {
        let op = op as usize;
        if std::mem::replace(reached.get_mut(op)?, true) {
            continue;
        }
        let (from, to) = (index.op_start[op] as usize, index.op_start[op + 1] as usize);
        stack.extend_from_slice(index.op_readers.get(from..to)?);
    }
    let ops: Vec<OpDef> = cached
        .ops
        .iter()
        .zip(&reached)
        .filter(|(_, r)| **r)
        .map(|(op, _)| postcard::from_bytes(op).ok())
        .collect::<Option<_>>()?;
    Some(Reached {
        pipeline: Pipeline {
            name: cached.name,
            early_cutoff: cached.early_cutoff,
            resources: cached.resources,
            ops,
        },
    })
}
