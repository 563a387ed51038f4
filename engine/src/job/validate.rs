//! Validation: turns ops and resources into a [`JobInner`] whose indices can
//! be trusted, or names the culprit of the first problem found.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use super::{
    InputEdge, InputFrom, JobError, JobInner, Op, Resource, StepIdx, StepIndex, VersionMode,
};
use crate::name::Name;
use crate::version::VersionStrategy;

fn check_name(kind: &'static str, name: &str) -> Result<(), JobError> {
    if name.is_empty() || name.contains(['/', '\n', '\0']) {
        return Err(JobError::InvalidName { kind, name: name.to_owned() });
    }
    Ok(())
}

/// Finds a cycle in a graph given successor lists, as node indices with the
/// first repeated at the end; `None` if the graph is acyclic. Shared with the
/// pipeline parser, which points at the file lines of the cycle's steps.
pub fn find_cycle(succ: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Iterative DFS with colours; 0 = white, 1 = on stack, 2 = done.
    let n = succ.len();
    let mut colour = vec![0u8; n];
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < succ[node].len() {
                let child = succ[node][*next];
                *next += 1;
                match colour[child] {
                    0 => {
                        colour[child] = 1;
                        stack.push((child, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|&(s, _)| s == child).unwrap_or(0);
                        let mut path: Vec<usize> = stack[pos..].iter().map(|&(s, _)| s).collect();
                        path.push(child);
                        return Some(path);
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

fn cycle_names(names: &[&str], succ: &[Vec<usize>]) -> Vec<String> {
    find_cycle(succ).unwrap_or_default().into_iter().map(|i| names[i].to_owned()).collect()
}

/// Kahn's algorithm, always taking the ready node declared first, so a job
/// declared upstream-first keeps its declaration order. `preds[i]` are the
/// nodes `i` depends on. Returns the order, or `None` if there is a cycle.
fn topo_order(preds: &[Vec<usize>], succ: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = preds.len();
    let mut pending: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut queue: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| pending[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(node)) = queue.pop() {
        order.push(node);
        for &s in &succ[node] {
            pending[s] -= 1;
            if pending[s] == 0 {
                queue.push(Reverse(s));
            }
        }
    }
    (order.len() == n).then_some(order)
}

fn dedup_sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Where an input reads, as traces and reasons name it: `source NAME` or
/// `STEP.OUTPUT` (for a step outside the job too, as the whole job names
/// it).
/// The first name that repeats an earlier one, in declaration order (most
/// ops have a handful of inputs and outputs: no set is built for them).
fn first_repeated<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let mut sorted: Vec<&str> = names.clone().collect();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        return None;
    }
    let mut seen = BTreeSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

/// The origins of a step's inputs, in [`JobInner::edges`] order (made when
/// first asked for: a run that only hits never needs them).
pub(super) fn input_origins(job: &JobInner, idx: usize) -> Box<[Name]> {
    let op = &job.steps[idx];
    job.edges[idx]
        .iter()
        .map(|&(i, edge)| input_origin(&job.steps, &job.sources, op, i, edge))
        .collect()
}

fn input_origin(steps: &[Op], sources: &[String], op: &Op, input: usize, edge: InputEdge) -> Name {
    if let InputFrom::Outside { step, output, .. } = &op.inputs[input].from {
        return Name::concat(&[step, ".", output]);
    }
    match edge {
        InputEdge::Source(s) => Name::concat(&["source ", &sources[s]]),
        InputEdge::Output(up, out) => {
            Name::concat(&[&steps[up].name, ".", &steps[up].outputs[out].name])
        }
    }
}

pub(super) fn build(
    name: String,
    ops: Vec<Op>,
    resources: Vec<Resource>,
    mode: VersionMode,
    strategy: Arc<dyn VersionStrategy>,
) -> Result<JobInner, JobError> {
    // Resources: names, duplicates, dependencies, order.
    let mut res_decl: HashMap<String, usize> = HashMap::with_capacity(resources.len());
    for (i, res) in resources.iter().enumerate() {
        check_name("resource", &res.name)?;
        if res_decl.insert(res.name.clone(), i).is_some() {
            return Err(JobError::DuplicateResource { resource: res.name.clone() });
        }
    }
    let mut res_preds: Vec<Vec<usize>> = Vec::with_capacity(resources.len());
    for res in &resources {
        let mut preds = Vec::new();
        for dep in &res.depends_on {
            let &d = res_decl.get(dep.as_str()).ok_or_else(|| JobError::UnknownDependency {
                resource: res.name.clone(),
                dependency: dep.clone(),
            })?;
            preds.push(d);
        }
        res_preds.push(dedup_sorted(preds));
    }
    let mut res_succ: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    for (i, preds) in res_preds.iter().enumerate() {
        for &p in preds {
            res_succ[p].push(i);
        }
    }
    let res_order = match topo_order(&res_preds, &res_succ) {
        Some(order) => order,
        None => {
            let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
            // Cycle path along dependency edges: resource -> what it depends on.
            return Err(JobError::ResourceCycle { path: cycle_names(&names, &res_preds) });
        }
    };
    let mut resources_sorted: Vec<Option<Resource>> = resources.into_iter().map(Some).collect();
    let resources: Vec<Resource> =
        res_order.iter().filter_map(|&old| resources_sorted[old].take()).collect();
    let resource_index: HashMap<String, usize> =
        resources.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
    let resource_deps: Vec<Vec<usize>> = resources
        .iter()
        .map(|r| {
            let mut deps: Vec<usize> =
                r.depends_on.iter().filter_map(|d| resource_index.get(d).copied()).collect();
            deps.sort_by(|&a, &b| resources[a].name.cmp(&resources[b].name));
            deps.dedup();
            deps
        })
        .collect();

    // Ops: names, duplicates, per-op checks.
    let mut op_decl: HashMap<&str, usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        check_name("op", &op.name)?;
        if op_decl.insert(op.name.as_str(), i).is_some() {
            return Err(JobError::DuplicateOp { op: op.name.to_string() });
        }
    }
    // Source names as read (sorted and deduplicated once, below: cheaper
    // than a set of strings grown one insertion at a time).
    let mut sources: Vec<&str> = Vec::new();
    let mut outside: Vec<&str> = Vec::new();
    let mut preds: Vec<Vec<usize>> = Vec::with_capacity(ops.len());
    for op in &ops {
        for input in &op.inputs {
            check_name("input", &input.name)?;
        }
        if let Some(input) = first_repeated(op.inputs.iter().map(|i| i.name.as_str())) {
            return Err(JobError::DuplicateInput {
                step: op.name.to_string(),
                input: input.to_owned(),
            });
        }
        for output in &op.outputs {
            check_name("output", &output.name)?;
        }
        if let Some(output) = first_repeated(op.outputs.iter().map(|o| o.name.as_str())) {
            return Err(JobError::DuplicateOutput {
                step: op.name.to_string(),
                output: output.to_owned(),
            });
        }
        for res in &op.resources {
            if !res_decl.contains_key(res.as_str()) {
                return Err(JobError::UnknownResource {
                    step: op.name.to_string(),
                    resource: res.clone(),
                });
            }
        }
        let mut op_preds = Vec::new();
        for input in &op.inputs {
            match &input.from {
                InputFrom::Source(source) => sources.push(source.as_str()),
                InputFrom::Outside { name, .. } => {
                    if mode == VersionMode::Lineage {
                        return Err(JobError::OutsideInLineage {
                            step: op.name.to_string(),
                            name: name.clone(),
                        });
                    }
                    outside.push(name.as_str());
                }
                InputFrom::Output { step, output } => {
                    let &up = op_decl.get(step.as_str()).ok_or_else(|| JobError::UnknownStep {
                        step: op.name.to_string(),
                        input: input.name.to_string(),
                        upstream: step.clone(),
                    })?;
                    if !ops[up].outputs.iter().any(|o| &o.name == output) {
                        return Err(JobError::UnknownOutput {
                            step: op.name.to_string(),
                            input: input.name.to_string(),
                            upstream: step.clone(),
                            output: output.clone(),
                        });
                    }
                    op_preds.push(up);
                }
            }
        }
        preds.push(dedup_sorted(op_preds));
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for (i, p) in preds.iter().enumerate() {
        for &u in p {
            succ[u].push(i);
        }
    }
    let order = match topo_order(&preds, &succ) {
        Some(order) => order,
        None => {
            let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
            // Report along data flow: producer -> consumer.
            return Err(JobError::Cycle { path: cycle_names(&names, &succ) });
        }
    };

    sources.sort_unstable();
    sources.dedup();
    outside.sort_unstable();
    outside.dedup();
    if let Some(name) = outside.iter().find(|o| sources.binary_search(o).is_ok()) {
        return Err(JobError::SourceAndOutside { name: (*name).to_owned() });
    }
    // Both kinds in one sorted list, each marked.
    let mut all: Vec<(&str, bool)> = sources.iter().map(|s| (*s, false)).collect();
    all.extend(outside.iter().map(|s| (*s, true)));
    all.sort_unstable();
    let outside: Vec<bool> = all.iter().map(|(_, o)| *o).collect();
    let sources: Vec<String> = all.iter().map(|(s, _)| (*s).to_owned()).collect();
    drop(op_decl);
    let source_index: HashMap<String, usize> =
        sources.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();

    let mut slots: Vec<Option<Op>> = ops.into_iter().map(Some).collect();
    let steps: Vec<Op> = order.iter().filter_map(|&old| slots[old].take()).collect();
    let step_index = StepIndex::new(steps.iter().map(|op| op.name()));

    let mut edges = Vec::with_capacity(steps.len());
    let mut upstream = Vec::with_capacity(steps.len());
    let mut downstream: Vec<Vec<StepIdx>> = vec![Vec::new(); steps.len()];
    let mut step_resources = Vec::with_capacity(steps.len());
    for (idx, op) in steps.iter().enumerate() {
        let mut op_edges: Vec<(usize, InputEdge)> = Vec::with_capacity(op.inputs.len());
        let mut ups = Vec::new();
        for (input_idx, input) in op.inputs.iter().enumerate() {
            let edge = match &input.from {
                InputFrom::Source(source) | InputFrom::Outside { name: source, .. } => {
                    InputEdge::Source(source_index[source.as_str()])
                }
                InputFrom::Output { step, output } => {
                    let up = step_index.get(step).ok_or_else(|| JobError::UnknownStep {
                        step: op.name.to_string(),
                        input: input.name.to_string(),
                        upstream: step.clone(),
                    })?;
                    let out = steps[up].outputs.iter().position(|o| &o.name == output).unwrap_or(0);
                    ups.push(up);
                    InputEdge::Output(up, out)
                }
            };
            op_edges.push((input_idx, edge));
        }
        op_edges.sort_by(|a, b| op.inputs[a.0].name.cmp(&op.inputs[b.0].name));
        let ups = dedup_sorted(ups);
        for &u in &ups {
            downstream[u].push(idx);
        }
        edges.push(op_edges);
        upstream.push(ups);
        let mut res: Vec<usize> = op.resources.iter().map(|r| resource_index[r.as_str()]).collect();
        res.sort_by(|&a, &b| resources[a].name.cmp(&resources[b].name));
        res.dedup();
        step_resources.push(res);
    }

    let origins = (0..steps.len()).map(|_| std::sync::OnceLock::new()).collect();
    Ok(JobInner {
        name,
        mode,
        steps,
        edges,
        origins,
        downstream,
        upstream,
        step_index,
        resources,
        resource_index,
        resource_deps,
        step_resources,
        sources,
        outside,
        source_index,
        strategy,
    })
}
