//! The version graph as salsa queries.
//!
//! Inputs are set at this boundary and nowhere else: op and resource
//! definitions (code version, config digest, environment digest, wiring) at
//! `Durability::HIGH`, source data versions and the data versions learnt from
//! executed or memoized steps at `Durability::LOW`. Tracked functions are pure
//! and return `Copy + Eq` values, so salsa's backdating gives early cutoff
//! inside the version graph: a re-run that reproduces an output's bytes sets
//! the same data version, and nothing below re-executes.
//!
//! The database is `Send` but not `Sync` (see `facts.md`): only the thread
//! that owns the [`VersionGraph`] queries it; workers never hold a handle, so
//! setters never block.

use std::sync::{Arc, Mutex};

use salsa::{Durability, Setter};

use crate::name::Name;
use crate::version::encode::{
    InputContribution, OpVersionEncoder, compute_output_version, compute_resource_version,
};
use crate::version::{CodeVersion, DataVersion, Digest, ResourceVersion};

/// The salsa database of versions.
#[salsa::db]
#[derive(Clone, Default)]
pub struct VersionDb {
    storage: salsa::Storage<Self>,
    log: Arc<Mutex<Option<Vec<String>>>>,
}

#[salsa::db]
impl salsa::Database for VersionDb {}

impl VersionDb {
    /// A database that records the name of every tracked function it
    /// executes, for incrementality tests (see [`VersionDb::take_log`]).
    pub fn with_execution_log() -> VersionDb {
        let log: Arc<Mutex<Option<Vec<String>>>> = Arc::new(Mutex::new(Some(Vec::new())));
        let sink = Arc::clone(&log);
        let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
            if let salsa::EventKind::WillExecute { database_key } = event.kind
                && let Ok(mut guard) = sink.lock()
                && let Some(entries) = guard.as_mut()
            {
                entries.push(format!("{database_key:?}"));
            }
        })));
        VersionDb { storage, log }
    }

    /// Takes the executions recorded since the last call (empty unless made
    /// with [`VersionDb::with_execution_log`]).
    pub fn take_log(&self) -> Vec<String> {
        self.log.lock().ok().and_then(|mut g| g.as_mut().map(std::mem::take)).unwrap_or_default()
    }
}

/// A resource in the version graph.
#[salsa::input(debug)]
pub struct ResourceNode {
    /// The resource's name.
    #[returns(ref)]
    pub name: String,
    /// Its code version (`None`: unversioned).
    #[returns(copy)]
    pub code: Option<CodeVersion>,
    /// Its canonical config digest.
    #[returns(copy)]
    pub config: Digest,
    /// The resources it depends on, sorted by name.
    #[returns(ref)]
    pub depends_on: Vec<ResourceNode>,
}

/// A source whose data version the caller supplies.
#[salsa::input(debug)]
pub struct SourceNode {
    /// Its data version (`None` until supplied).
    #[returns(copy)]
    pub data: Option<DataVersion>,
}

/// The data version of one op output, learnt from the store or from a run.
#[salsa::input(debug)]
pub struct OutputSlot {
    /// `None` while the output's bytes are not known.
    #[returns(copy)]
    pub data: Option<DataVersion>,
}

/// Where an op input is wired, in the version graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InputNodeEdge {
    /// A source.
    Source(SourceNode),
    /// An output from outside the job, supplied like a source.
    Outside(SourceNode),
    /// An upstream output.
    Output {
        /// The upstream op.
        op: OpNode,
        /// The upstream output's name.
        output: Name,
        /// Its data version slot.
        slot: OutputSlot,
    },
}

/// One input of an op node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InputNode {
    /// The input's name.
    pub name: Name,
    /// The workspace path it is read at.
    pub path: Option<Name>,
    /// Its wiring.
    pub edge: InputNodeEdge,
}

/// Everything an op version is computed from, except the versions of what
/// it reads. One salsa field, not one per component: the version query
/// reads it once (each field read is a recorded dependency), and an edit to
/// any component re-executes the same one query either way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpDef {
    /// The op's code version (`None`: unversioned).
    pub code: Option<CodeVersion>,
    /// Its canonical config digest.
    pub config: Digest,
    /// The digest of its declared environment's values (`None`: it
    /// declares none).
    pub env: Option<Digest>,
    /// The digest of its output names and paths.
    pub outputs: Digest,
    /// Lineage mode: inputs contribute upstream output versions.
    pub lineage: bool,
    /// Required resources, sorted by name.
    pub resources: Vec<ResourceNode>,
    /// Inputs, sorted by name.
    pub inputs: Vec<InputNode>,
}

/// An op in the version graph.
#[salsa::input(debug)]
pub struct OpNode {
    /// The op's definition.
    #[returns(ref)]
    pub def: OpDef,
}

/// The state of an op's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpVersion {
    /// Known.
    Versioned(Digest),
    /// The op (or a resource it requires, or in lineage mode an upstream) is
    /// unversioned: it always runs.
    Unversioned,
    /// Early cutoff: an upstream output's data version is not known yet.
    Waiting,
}

/// The version of a resource: its code version, config and the versions of
/// the resources it depends on. `None` if it or a dependency is unversioned.
#[salsa::tracked(returns(copy))]
pub fn resource_version(
    db: &dyn salsa::Database,
    resource: ResourceNode,
) -> Option<ResourceVersion> {
    let code = resource.code(db)?;
    let deps = resource.depends_on(db);
    let mut versions = Vec::with_capacity(deps.len());
    for dep in deps {
        versions.push((dep.name(db).as_str(), resource_version(db, *dep)?));
    }
    Some(compute_resource_version(code, resource.config(db), &versions))
}

/// The version of an op: code version, config, environment, output list,
/// required resource versions and each input's contribution (see
/// [`crate::version`]). Output versions derive from it with
/// [`output_version`].
#[salsa::tracked(returns(copy))]
pub fn op_version(db: &dyn salsa::Database, op: OpNode) -> OpVersion {
    let def = op.def(db);
    let Some(code) = def.code else {
        return OpVersion::Unversioned;
    };
    let mut encoder = OpVersionEncoder::new(code, def.config, def.env, def.outputs);
    encoder.resources(def.resources.len());
    for resource in &def.resources {
        match resource_version(db, *resource) {
            Some(version) => encoder.resource(resource.name(db), version),
            None => return OpVersion::Unversioned,
        }
    }
    let lineage = def.lineage;
    encoder.inputs(def.inputs.len());
    let mut waiting = false;
    for input in &def.inputs {
        let contribution = match &input.edge {
            InputNodeEdge::Source(source) | InputNodeEdge::Outside(source) => {
                match source.data(db) {
                    // An output from outside the job contributes exactly
                    // what a wired input does under early cutoff.
                    Some(data) if matches!(input.edge, InputNodeEdge::Outside(_)) => {
                        InputContribution::Data(data)
                    }
                    Some(data) => InputContribution::Source(data),
                    None => {
                        waiting = true;
                        continue;
                    }
                }
            }
            InputNodeEdge::Output { op: upstream, output, slot } => {
                if lineage {
                    match op_version(db, *upstream) {
                        OpVersion::Versioned(v) => {
                            InputContribution::Lineage(compute_output_version(v, output))
                        }
                        OpVersion::Unversioned => return OpVersion::Unversioned,
                        OpVersion::Waiting => {
                            waiting = true;
                            continue;
                        }
                    }
                } else {
                    match slot.data(db) {
                        Some(data) => InputContribution::Data(data),
                        None => {
                            waiting = true;
                            continue;
                        }
                    }
                }
            }
        };
        encoder.input(&input.name, input.path.as_deref(), contribution);
    }
    if waiting { OpVersion::Waiting } else { OpVersion::Versioned(encoder.finish()) }
}

pub use crate::version::encode::compute_output_version as output_version;

/// Owns the database and the handles of every node of one job.
pub struct VersionGraph {
    pub(crate) db: VersionDb,
    pub(crate) ops: Vec<OpNode>,
    /// Every step's output slots in one list: step `s`'s start at
    /// `first_slot[s]` (one allocation per engine, not one per step).
    pub(crate) slots: Vec<OutputSlot>,
    /// What the slots hold, mirrored so unchanged values are never set
    /// (a set always starts a new revision); indexed like `slots`.
    pub(crate) slot_data: Vec<Option<DataVersion>>,
    /// Where each step's slots start, and the total at the end.
    pub(crate) first_slot: Vec<usize>,
    pub(crate) sources: Vec<SourceNode>,
    pub(crate) source_data: Vec<Option<DataVersion>>,
    pub(crate) resources: Vec<ResourceNode>,
    /// Lineage mode: no op version reads a data version, so learnt data
    /// versions are only mirrored, never written to the database (a write
    /// starts a new revision).
    pub(crate) lineage: bool,
}

impl VersionGraph {
    /// Sets an output slot's data version if it differs.
    pub(crate) fn set_slot(&mut self, step: usize, output: usize, data: Option<DataVersion>) {
        let at = self.first_slot[step] + output;
        if self.slot_data[at] != data {
            self.slot_data[at] = data;
            if self.lineage {
                return;
            }
            self.slots[at].set_data(&mut self.db).with_durability(Durability::LOW).to(data);
        }
    }

    /// Changes an op's definition (an edit: `Durability::HIGH`, like the
    /// definition's creation).
    pub(crate) fn edit_op(&mut self, step: usize, edit: impl FnOnce(&mut OpDef)) {
        let mut def = self.ops[step].def(&self.db).clone();
        edit(&mut def);
        self.ops[step].set_def(&mut self.db).to(def);
    }

    /// Sets a source's data version if it differs.
    pub(crate) fn set_source(&mut self, source: usize, data: DataVersion) {
        if self.source_data[source] != Some(data) {
            self.source_data[source] = Some(data);
            self.sources[source]
                .set_data(&mut self.db)
                .with_durability(Durability::LOW)
                .to(Some(data));
        }
    }

    /// The data versions learnt for a step's outputs, in declaration order.
    pub(crate) fn slot_data(&self, step: usize) -> &[Option<DataVersion>] {
        &self.slot_data[self.first_slot[step]..self.first_slot[step + 1]]
    }

    /// The version of a step.
    pub(crate) fn op_version(&self, step: usize) -> OpVersion {
        op_version(&self.db, self.ops[step])
    }

    /// The version of a resource.
    pub(crate) fn resource_version(&self, resource: usize) -> Option<ResourceVersion> {
        resource_version(&self.db, self.resources[resource])
    }
}
