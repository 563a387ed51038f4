//! Validation: turns ops and resources into a [`JobInner`] whose indices can
//! be trusted, or names the culprit of the first problem found.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use super::{
    InputEdge, InputFrom, JobError, JobInner, Lists, Op, Resource, StepIdx, StepIndex, VersionMode,
};
use crate::name::Name;
use crate::version::VersionStrategy;

/// Whether `name` may name an op, a resource, an input or an output:
/// non-empty, without `/`, a newline or NUL. Shared with the pipeline
/// parser, which points at the offending name in the file.
pub fn is_valid_name(name: &str) -> bool {
    // Bytes, not chars: the three are ASCII, and a byte scan is several
    // times cheaper than a char-set search (validation runs per name).
    !name.is_empty() && !name.bytes().any(|b| matches!(b, b'/' | b'\n' | 0))
}

fn check_name(kind: &'static str, name: &str) -> Result<(), JobError> {
    if !is_valid_name(name) {
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

/// Where an input reads, in declaration indices, before the sources are
/// sorted and the steps put in topological order.
#[derive(Clone, Copy, Debug)]
enum Wire {
    /// The input's position among source references.
    Source(usize),
    /// A step (declaration index) and one of its outputs.
    Output(usize, usize),
}

impl Wire {
    fn upstream(&self) -> Option<usize> {
        match *self {
            Wire::Output(up, _) => Some(up),
            Wire::Source(_) => None,
        }
    }
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
pub(super) fn first_repeated<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    // A handful: compare each name with the ones before it.
    if names.size_hint().1.is_some_and(|n| n <= 8) {
        for (i, name) in names.clone().enumerate() {
            if names.clone().take(i).any(|earlier| earlier == name) {
                return Some(name);
            }
        }
        return None;
    }
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
    job.edges
        .get(idx)
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

    // Ops: names, duplicates, per-op checks, and each input's wiring in
    // declaration order (sources by their position in `refs` until the
    // source list is sorted).
    let n = ops.len();
    let mut op_decl = StepIndex::default();
    for op in &ops {
        check_name("op", &op.name)?;
        if op_decl.push(&op.name).is_err() {
            return Err(JobError::DuplicateOp { op: op.name.to_string() });
        }
    }
    let inputs_total: usize = ops.iter().map(|op| op.inputs.len()).sum();
    let mut wires: Lists<Wire> = Lists::with_capacity(n, inputs_total);
    let mut refs: Vec<(&str, bool, usize)> = Vec::new();
    // Whether every op reads only ops declared before it: then the
    // declaration order is the topological order and nothing moves.
    let mut in_order = true;
    for (i, op) in ops.iter().enumerate() {
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
        for input in &op.inputs {
            let wire = match &input.from {
                InputFrom::Source(source) => {
                    refs.push((source.as_str(), false, refs.len()));
                    Wire::Source(refs.len() - 1)
                }
                InputFrom::Outside { name, .. } => {
                    if mode == VersionMode::Lineage {
                        return Err(JobError::OutsideInLineage {
                            step: op.name.to_string(),
                            name: name.clone(),
                        });
                    }
                    refs.push((name.as_str(), true, refs.len()));
                    Wire::Source(refs.len() - 1)
                }
                InputFrom::Output { step, output } => {
                    let up = op_decl.get(step).ok_or_else(|| JobError::UnknownStep {
                        step: op.name.to_string(),
                        input: input.name.to_string(),
                        upstream: step.clone(),
                    })?;
                    let out = ops[up].outputs.iter().position(|o| &o.name == output).ok_or_else(
                        || JobError::UnknownOutput {
                            step: op.name.to_string(),
                            input: input.name.to_string(),
                            upstream: step.clone(),
                            output: output.clone(),
                        },
                    )?;
                    in_order &= up < i;
                    Wire::Output(up, out)
                }
            };
            wires.push(wire);
        }
        wires.close();
    }
    // The topological order, as declaration indices (`None`: declaration
    // order already is one).
    let order = if in_order {
        None
    } else {
        let preds: Vec<Vec<usize>> = (0..n)
            .map(|i| dedup_sorted(wires.get(i).iter().filter_map(Wire::upstream).collect()))
            .collect();
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, p) in preds.iter().enumerate() {
            for &u in p {
                succ[u].push(i);
            }
        }
        match topo_order(&preds, &succ) {
            Some(order) => Some(order),
            None => {
                let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
                // Report along data flow: producer -> consumer.
                return Err(JobError::Cycle { path: cycle_names(&names, &succ) });
            }
        }
    };

    // Sources: sorted, each once, marked when read from outside the job; a
    // name may not be both.
    refs.sort_unstable();
    let mut source_of_ref = vec![0usize; refs.len()];
    let mut sources: Vec<String> = Vec::new();
    let mut outside: Vec<bool> = Vec::new();
    for &(name, is_outside, r) in &refs {
        match sources.last() {
            Some(last) if last == name => {
                if outside.last() != Some(&is_outside) {
                    return Err(JobError::SourceAndOutside { name: name.to_owned() });
                }
            }
            _ => {
                sources.push(name.to_owned());
                outside.push(is_outside);
            }
        }
        source_of_ref[r] = sources.len() - 1;
    }
    drop(refs);
    let source_index = StepIndex::new(sources.iter().map(String::as_str));

    let (steps, step_index, old_of_new, new_of_old) = match order {
        None => (ops, op_decl, None, None),
        Some(order) => {
            let mut new_of_old = vec![0; n];
            for (new, &old) in order.iter().enumerate() {
                new_of_old[old] = new;
            }
            let mut slots: Vec<Option<Op>> = ops.into_iter().map(Some).collect();
            let steps: Vec<Op> = order.iter().filter_map(|&old| slots[old].take()).collect();
            let step_index = StepIndex::new(steps.iter().map(|op| op.name()));
            (steps, step_index, Some(order), Some(new_of_old))
        }
    };

    let mut edges = Lists::with_capacity(n, inputs_total);
    let mut upstream = Lists::with_capacity(n, inputs_total);
    let mut down_pairs: Vec<(usize, StepIdx)> = Vec::with_capacity(inputs_total);
    let mut step_resources = Lists::with_capacity(n, 0);
    for (idx, op) in steps.iter().enumerate() {
        let old = old_of_new.as_ref().map_or(idx, |o| o[idx]);
        for (input_idx, wire) in wires.get(old).iter().enumerate() {
            let edge = match *wire {
                Wire::Source(r) => InputEdge::Source(source_of_ref[r]),
                Wire::Output(up, out) => {
                    InputEdge::Output(new_of_old.as_ref().map_or(up, |m| m[up]), out)
                }
            };
            edges.push((input_idx, edge));
        }
        let op_edges = edges.open_mut();
        op_edges.sort_by(|a, b| op.inputs[a.0].name.cmp(&op.inputs[b.0].name));
        let ups = dedup_sorted(
            op_edges
                .iter()
                .filter_map(|&(_, e)| match e {
                    InputEdge::Output(up, _) => Some(up),
                    InputEdge::Source(_) => None,
                })
                .collect(),
        );
        edges.close();
        for &u in &ups {
            down_pairs.push((u, idx));
            upstream.push(u);
        }
        upstream.close();
        let mut res: Vec<usize> = op.resources.iter().map(|r| resource_index[r.as_str()]).collect();
        res.sort_by(|&a, &b| resources[a].name.cmp(&resources[b].name));
        res.dedup();
        for r in res {
            step_resources.push(r);
        }
        step_resources.close();
    }
    let downstream = Lists::from_pairs(steps.len(), &down_pairs);

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
