//! [`Engine`]: a job loaded into the version graph, ready to plan and run.
//!
//! The engine is the boundary where the caller's world (source data
//! versions, environment values, edits) becomes salsa inputs. A short-lived
//! process builds one per run; a long-lived one (an embedding tool, a future
//! `trove watch`) keeps it and applies edits, so replanning costs what the
//! edit touches.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use salsa::{Durability, Setter};
use serde_json::Value;
use smallvec::SmallVec;

use crate::db::{
    InputNode, InputNodeEdge, OpDef, OpNode, OpVersion, OutputSlot, ResourceNode, SourceNode,
    VersionDb, VersionGraph,
};
use crate::error::PlanError;
use crate::io_manager::DigestHasher;
use crate::job::{InputEdge, InputFrom, Job, StepIdx, VersionMode};
use crate::name::Name;
use crate::trace::{CodeComponent, InputComponent, ResourceComponent, VersionComponents};
use crate::version::encode::{
    compute_env_digest, compute_output_version, compute_outputs_digest,
    compute_unversioned_op_version,
};
use crate::version::{
    CodeVersion, DataVersion, Digest, OutputVersion, ResourceVersion, SCHEME_VERSION, config_digest,
};

/// Per step, the op version whose output versions were last asked for, and
/// those output versions: one flat list for all steps' outputs (step
/// `idx`'s start at `first[idx]`), so caching them allocates nothing per
/// step.
#[derive(Default)]
struct KnownOutputs {
    ops: Vec<Option<Digest>>,
    first: Vec<usize>,
    outputs: Vec<OutputVersion>,
}

/// A job loaded into the version graph.
pub struct Engine {
    pub(crate) job: Job,
    pub(crate) graph: VersionGraph,
    pub(crate) code_versions: Vec<Option<CodeVersion>>,
    /// Per step: its config digest (mirrors the version graph's input).
    config_digests: Vec<Digest>,
    /// Canonical config texts by config digest: made once per distinct
    /// config, shared by every trace whose step has it.
    config_texts: Mutex<HashMap<Digest, Name, BuildHasherDefault<DigestHasher>>>,
    /// Per step: the op version whose output versions were last asked for,
    /// and those output versions.
    output_versions_cache: Mutex<KnownOutputs>,
    pub(crate) env_values: BTreeMap<String, Option<String>>,
}

/// Writes `value` as compact JSON with every object's keys in sorted order,
/// whatever map type serde_json was built with (its `preserve_order` feature
/// keeps insertion order, and any crate in the build can turn it on).
fn write_sorted(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's default map iterates sorted already: no copy then.
            if map.keys().is_sorted() {
                write_entries(map.iter(), out)?;
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_entries(entries.into_iter(), out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

fn write_entries<'v>(
    entries: impl Iterator<Item = (&'v String, &'v Value)>,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        write_sorted(item, out)?;
    }
    Ok(())
}

/// Canonical JSON text of a config: keys sorted at every level.
pub(crate) fn canonical_json(value: &Value) -> String {
    // Most configs are a few keys: one allocation instead of a growing one.
    let mut out = Vec::with_capacity(64);
    match write_sorted(value, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

impl Engine {
    /// Loads a job with a fresh version database.
    pub fn new(job: Job) -> Engine {
        Engine::with_db(job, VersionDb::default())
    }

    /// Loads a job into the given database (for example one made with
    /// [`VersionDb::with_execution_log`]).
    pub fn with_db(job: Job, db: VersionDb) -> Engine {
        let strategy = Arc::clone(&job.inner.strategy);
        let mut resources: Vec<ResourceNode> = Vec::with_capacity(job.resources().len());
        for (idx, res) in job.resources().iter().enumerate() {
            let deps: Vec<ResourceNode> =
                job.resource_dependencies(idx).iter().map(|&d| resources[d]).collect();
            let node = ResourceNode::builder(
                res.name().to_owned(),
                strategy.resource_code_version(res),
                config_digest(res.config_value()),
                deps,
            )
            .durability(Durability::HIGH)
            .new(&db);
            resources.push(node);
        }
        let sources: Vec<SourceNode> = job
            .sources()
            .iter()
            .map(|_| SourceNode::builder(None).durability(Durability::LOW).new(&db))
            .collect();
        let lineage = job.mode() == VersionMode::Lineage;
        let env_values = BTreeMap::new();
        let mut ops: Vec<OpNode> = Vec::with_capacity(job.len());
        let first_slot = job.output_offsets();
        let mut slots: Vec<OutputSlot> = Vec::with_capacity(first_slot[job.len()]);
        let mut code_versions = Vec::with_capacity(job.len());
        let mut config_digests = Vec::with_capacity(job.len());
        for (idx, op) in job.steps().iter().enumerate() {
            slots.extend(
                op.outputs()
                    .iter()
                    .map(|_| OutputSlot::builder(None).durability(Durability::LOW).new(&db)),
            );
            let inputs: Vec<InputNode> = job
                .input_edges(idx)
                .iter()
                .map(|&(input_idx, edge)| {
                    let spec = &op.inputs()[input_idx];
                    let edge = match edge {
                        InputEdge::Source(s) if job.is_outside(s) => {
                            InputNodeEdge::Outside(sources[s])
                        }
                        InputEdge::Source(s) => InputNodeEdge::Source(sources[s]),
                        InputEdge::Output(up, out) => InputNodeEdge::Output {
                            op: ops[up],
                            output: job.step(up).outputs()[out].name.clone(),
                            slot: slots[first_slot[up] + out],
                        },
                    };
                    InputNode { name: spec.name.clone(), path: spec.path.clone(), edge }
                })
                .collect();
            let code = strategy.op_code_version(op);
            code_versions.push(code);
            let config = config_digest(op.config_value());
            config_digests.push(config);
            let def = OpDef {
                code,
                config,
                env: env_digest(op.env_names(), &env_values),
                outputs: outputs_digest(&job, idx),
                lineage,
                resources: job.step_resources(idx).iter().map(|&r| resources[r]).collect(),
                inputs,
            };
            let node = OpNode::builder(def).durability(Durability::HIGH).new(&db);
            ops.push(node);
        }
        let slot_data = vec![None; slots.len()];
        let source_data = vec![None; sources.len()];
        Engine {
            job,
            graph: VersionGraph {
                db,
                ops,
                slots,
                slot_data,
                first_slot,
                sources,
                source_data,
                resources,
                lineage,
            },
            code_versions,
            config_digests,
            config_texts: Mutex::new(HashMap::default()),
            output_versions_cache: Mutex::new(KnownOutputs::default()),
            env_values,
        }
    }

    /// The loaded job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The version database (tests inspect its execution log).
    pub fn db(&self) -> &VersionDb {
        &self.graph.db
    }

    /// Supplies a source's data version. Every source must be supplied
    /// before planning.
    pub fn set_source(&mut self, name: &str, data: DataVersion) -> Result<(), PlanError> {
        let idx = self
            .job
            .inner
            .source_index
            .get(name)
            .ok_or_else(|| PlanError::UnknownSource { source_name: name.to_owned() })?;
        self.graph.set_source(idx, data);
        Ok(())
    }

    /// Supplies the value of an environment variable (`None`: unset). Only
    /// ops that declare it see it, and only their versions change.
    pub fn set_env(&mut self, name: &str, value: Option<String>) {
        if self.env_values.get(name) == Some(&value) {
            return;
        }
        self.env_values.insert(name.to_owned(), value);
        for idx in 0..self.job.len() {
            let op = self.job.step(idx);
            if op.env_names().iter().any(|n| n == name) {
                let digest = env_digest(op.env_names(), &self.env_values);
                self.graph.edit_op(idx, |def| def.env = digest);
            }
        }
    }

    /// Replaces a step's config; only versions that depend on it change.
    pub fn set_config(&mut self, step: &str, config: Value) -> Result<(), PlanError> {
        let idx = self.step_idx(step)?;
        let digest = config_digest(&config);
        Arc::make_mut(&mut self.job.inner).steps[idx].config = config;
        self.config_digests[idx] = digest;
        self.graph.edit_op(idx, |def| def.config = digest);
        Ok(())
    }

    /// Replaces a step's explicit code version string and re-asks the
    /// strategy for its code version.
    pub fn set_code_version(
        &mut self,
        step: &str,
        version: Option<String>,
    ) -> Result<(), PlanError> {
        let idx = self.step_idx(step)?;
        let inner = Arc::make_mut(&mut self.job.inner);
        inner.steps[idx].code.explicit = version.map(Name::from);
        let code = inner.strategy.op_code_version(&inner.steps[idx]);
        self.code_versions[idx] = code;
        self.graph.edit_op(idx, |def| def.code = code);
        Ok(())
    }

    /// Replaces a resource's config.
    pub fn set_resource_config(&mut self, resource: &str, config: Value) -> Result<(), PlanError> {
        let idx = self
            .job
            .resource_index(resource)
            .ok_or_else(|| PlanError::UnknownResource { resource: resource.to_owned() })?;
        let digest = config_digest(&config);
        Arc::make_mut(&mut self.job.inner).resources[idx].config = config;
        self.graph.resources[idx].set_config(&mut self.graph.db).to(digest);
        Ok(())
    }

    /// Replaces a resource's explicit code version string.
    pub fn set_resource_code_version(
        &mut self,
        resource: &str,
        version: Option<String>,
    ) -> Result<(), PlanError> {
        let idx = self
            .job
            .resource_index(resource)
            .ok_or_else(|| PlanError::UnknownResource { resource: resource.to_owned() })?;
        let inner = Arc::make_mut(&mut self.job.inner);
        inner.resources[idx].code.explicit = version.map(Name::from);
        let code = inner.strategy.resource_code_version(&inner.resources[idx]);
        self.graph.resources[idx].set_code(&mut self.graph.db).to(code);
        Ok(())
    }

    pub(crate) fn step_idx(&self, step: &str) -> Result<StepIdx, PlanError> {
        self.job.step_index(step).ok_or_else(|| PlanError::UnknownStep { step: step.to_owned() })
    }

    /// The version of every output of a step that is known now (all inputs'
    /// versions known), in declaration order; `None` while waiting or for an
    /// unversioned step.
    pub fn output_versions(&self, step: &str) -> Result<Option<Vec<OutputVersion>>, PlanError> {
        let idx = self.step_idx(step)?;
        Ok(match self.graph.op_version(idx) {
            OpVersion::Versioned(v) => {
                let mut versions =
                    vec![OutputVersion(Digest([0; 32])); self.job.step(idx).outputs().len()];
                self.cached_output_versions(idx, v, &mut versions);
                Some(versions)
            }
            _ => None,
        })
    }

    /// The version of a step's op as it stands now: known, unversioned, or
    /// (early cutoff) waiting on an upstream output's data version.
    pub fn op_version(&self, step: &str) -> Result<OpVersion, PlanError> {
        let idx = self.step_idx(step)?;
        Ok(self.graph.op_version(idx))
    }

    /// The version of a resource (`None`: it or a dependency is unversioned).
    pub fn resource_version(&self, resource: &str) -> Result<Option<ResourceVersion>, PlanError> {
        let idx = self
            .job
            .resource_index(resource)
            .ok_or_else(|| PlanError::UnknownResource { resource: resource.to_owned() })?;
        Ok(self.graph.resource_version(idx))
    }

    /// The data versions of a step's outputs learnt so far (from the store on
    /// a hit, or from a run), in declaration order; `None` where unknown.
    pub fn output_data(&self, step: &str) -> Result<Vec<Option<DataVersion>>, PlanError> {
        let idx = self.step_idx(step)?;
        Ok(self.graph.slot_data(idx).to_vec())
    }

    /// The output versions of a step at op version `v`, recomputed only
    /// when the op version changed since they were last asked for.
    /// Writes them into `into` (one slot per declared output).
    pub(crate) fn cached_output_versions(
        &self,
        idx: StepIdx,
        v: Digest,
        into: &mut [OutputVersion],
    ) {
        let mut cache = self.output_versions_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.ops.len() != self.job.len() {
            let first = self.job.output_offsets();
            let n = first[self.job.len()];
            *cache = KnownOutputs {
                ops: vec![None; self.job.len()],
                first,
                outputs: vec![OutputVersion(Digest([0; 32])); n],
            };
        }
        let KnownOutputs { ops, first, outputs } = &mut *cache;
        let cached = &mut outputs[first[idx]..first[idx + 1]];
        if ops[idx] != Some(v) {
            self.output_versions_of(idx, v, cached);
            ops[idx] = Some(v);
        }
        into.copy_from_slice(cached);
    }

    /// The output versions of a step at op version `op_version`, written
    /// into `into` (one slot per declared output).
    pub(crate) fn output_versions_of(
        &self,
        idx: StepIdx,
        op_version: Digest,
        into: &mut [OutputVersion],
    ) {
        for (slot, o) in into.iter_mut().zip(self.job.step(idx).outputs()) {
            *slot = compute_output_version(op_version, &o.name);
        }
    }

    pub(crate) fn unversioned_op_version(&self, idx: StepIdx, run_id: &str) -> Digest {
        compute_unversioned_op_version(run_id, self.job.step(idx).name())
    }

    pub(crate) fn check_sources(&self) -> Result<(), PlanError> {
        for (idx, data) in self.graph.source_data.iter().enumerate() {
            if data.is_none() {
                let source = &self.job.sources()[idx];
                let step = self
                    .job
                    .steps()
                    .iter()
                    .find(|op| {
                        op.inputs()
                            .iter()
                            .any(|i| matches!(&i.from, InputFrom::Source(s) | InputFrom::Outside { name: s, .. } if s == source))
                    })
                    .map(|op| op.name().to_owned())
                    .unwrap_or_default();
                return Err(PlanError::MissingSource { source_name: source.clone(), step });
            }
        }
        Ok(())
    }

    /// What went into a step's version, for traces and explanations. Input
    /// versions are those known now (unknown ones are left out).
    ///
    /// Built afresh each time (a cold run needs each step's once, so a cache
    /// would only add a copy); names are shared with the job, so this
    /// allocates the lists, the config text and the explicit code version.
    /// A step's config as canonical JSON text, made once per distinct config
    /// (the digest covers the canonical encoding, so equal digests mean equal
    /// texts).
    fn config_text(&self, idx: StepIdx) -> Name {
        let digest = self.config_digests[idx];
        let mut texts = self.config_texts.lock().unwrap_or_else(|e| e.into_inner());
        texts
            .entry(digest)
            .or_insert_with(|| Name::from(canonical_json(self.job.step(idx).config_value())))
            .clone()
    }

    /// The digest an input contributes now, if known: a source's or an
    /// upstream output's data version, or in lineage mode the upstream
    /// output's version.
    fn input_version(&self, edge: InputEdge) -> Option<Digest> {
        match edge {
            InputEdge::Source(s) => self.graph.source_data[s].map(|d| d.0),
            InputEdge::Output(up, out) => {
                if self.graph.lineage {
                    match self.graph.op_version(up) {
                        OpVersion::Versioned(v) => {
                            let out_name = &self.job.step(up).outputs()[out].name;
                            Some(compute_output_version(v, out_name).0)
                        }
                        _ => None,
                    }
                } else {
                    self.graph.slot_data(up)[out].map(|d| d.0)
                }
            }
        }
    }

    pub(crate) fn components(&self, idx: StepIdx) -> VersionComponents {
        let job = &self.job;
        let op = job.step(idx);
        let code = CodeComponent {
            version: self.code_versions[idx],
            explicit: op.code().explicit.clone(),
            text: op.code().source.as_ref().map(|s| Digest::of_bytes(s.text.as_bytes())),
            files: op.code().source.as_ref().map(|s| s.files.clone()).unwrap_or_default(),
        };
        // The closure of required resources.
        let mut closure: BTreeMap<usize, bool> = BTreeMap::new();
        let mut stack: Vec<(usize, bool)> =
            job.step_resources(idx).iter().map(|&r| (r, true)).collect();
        while let Some((r, direct)) = stack.pop() {
            let entry = closure.entry(r).or_insert(direct);
            *entry |= direct;
            for &d in job.resource_dependencies(r) {
                if !closure.contains_key(&d) {
                    stack.push((d, false));
                }
            }
        }
        let mut resources: Vec<ResourceComponent> = closure
            .into_iter()
            .map(|(r, direct)| {
                let res = &job.resources()[r];
                ResourceComponent {
                    name: res.name().to_owned(),
                    direct,
                    version: self.graph.resource_version(r),
                    explicit: res.code().explicit.clone(),
                    config: canonical_json(res.config_value()),
                    depends_on: job
                        .resource_dependencies(r)
                        .iter()
                        .map(|&d| job.resources()[d].name().to_owned())
                        .collect(),
                }
            })
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut env: Vec<(String, Option<String>)> = op
            .env_names()
            .iter()
            .map(|n| (n.clone(), self.env_values.get(n).cloned().flatten()))
            .collect();
        env.sort();
        env.dedup();
        let edges = job.input_edges(idx);
        let mut inputs = Vec::with_capacity(edges.len());
        for (&(input_idx, edge), origin) in edges.iter().zip(job.input_origins(idx)) {
            let Some(version) = self.input_version(edge) else { continue };
            let spec = &op.inputs()[input_idx];
            inputs.push(InputComponent {
                name: spec.name.clone(),
                from: origin.clone(),
                path: spec.path.clone(),
                version,
            });
        }
        let mut outputs: Vec<(Name, Option<String>)> =
            op.outputs().iter().map(|o| (o.name.clone(), o.path.clone())).collect();
        outputs.sort();
        VersionComponents {
            scheme: SCHEME_VERSION,
            code,
            config: self.config_text(idx),
            resources,
            env,
            inputs,
            outputs,
        }
    }
}

fn env_digest(names: &[String], values: &BTreeMap<String, Option<String>>) -> Option<Digest> {
    let mut env: Vec<(&str, Option<&str>)> =
        names.iter().map(|n| (n.as_str(), values.get(n).and_then(|v| v.as_deref()))).collect();
    env.sort();
    env.dedup();
    compute_env_digest(&env)
}

fn outputs_digest(job: &Job, idx: StepIdx) -> Digest {
    let mut outputs: SmallVec<[(&str, Option<&str>); 2]> =
        job.step(idx).outputs().iter().map(|o| (o.name.as_str(), o.path.as_deref())).collect();
    outputs.sort_unstable();
    compute_outputs_digest(job.step(idx).name(), &outputs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::canonical_json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_keeps_types() {
        let value: serde_json::Value = serde_json::from_str(
            r#"{"b": [1, 1.0, "1", {"z": null, "a": true}], "a": {"y": -0.5, "x": "q\"uote"}}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"x":"q\"uote","y":-0.5},"b":[1,1.0,"1",{"a":true,"z":null}]}"#
        );
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!({})), "{}");
        assert_eq!(canonical_json(&json!([])), "[]");
    }
}
