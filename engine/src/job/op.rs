//! Ops: the definitions users write, and the context an op runs in.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use smallvec::SmallVec;

use crate::io_manager::OutputValue;
use crate::name::Name;
use crate::plan::RerunReason;
use crate::version::DataVersion;

/// Where an input's data comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InputFrom {
    /// A source (a file, a table) whose data version the caller supplies.
    Source(String),
    /// A named output of another step of the job.
    Output {
        /// The upstream step.
        step: String,
        /// Its output name.
        output: String,
    },
    /// The output of a step outside this job, named like a source (by its
    /// path) and with its data version supplied like a source's. It
    /// contributes to the version as a wired input does under early cutoff
    /// (the upstream output's data version), so a job cut out of a larger
    /// one — the steps downstream of an edit, with their upstream outputs
    /// read from outside — versions its steps exactly as the whole job
    /// would. Early cutoff only: under lineage an input contributes its
    /// upstream's version, which only the whole job knows.
    Outside {
        /// The name its data version is supplied under (like a source's).
        name: String,
        /// The step outside the job that writes it.
        step: String,
        /// That step's output name.
        output: String,
    },
}

impl InputFrom {
    /// An input read from a source named `name`.
    pub fn source(name: impl Into<String>) -> InputFrom {
        InputFrom::Source(name.into())
    }

    /// An input wired to `step`'s output `output`.
    pub fn output(step: impl Into<String>, output: impl Into<String>) -> InputFrom {
        InputFrom::Output { step: step.into(), output: output.into() }
    }

    /// An input read from output `output` of `step`, a step outside this
    /// job, its data version supplied under `name` (see
    /// [`InputFrom::Outside`]).
    pub fn outside(
        name: impl Into<String>,
        step: impl Into<String>,
        output: impl Into<String>,
    ) -> InputFrom {
        InputFrom::Outside { name: name.into(), step: step.into(), output: output.into() }
    }
}

/// A named input of an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// The input's name, unique within the op.
    pub name: Name,
    /// Where its data comes from.
    pub from: InputFrom,
    /// The workspace-relative path the op reads it at, if it is a file. Part
    /// of the version: pointing an input at another file re-runs the op.
    pub path: Option<Name>,
}

/// A named output of an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The output's name, unique within the op.
    pub name: Name,
    /// The workspace-relative path of a file or directory output. Part of the
    /// version: renaming an output re-runs the op.
    pub path: Option<String>,
}

/// Source text and the script files it names, for the source-hash strategy.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SourceText {
    /// The text itself: a Rust function's tokens, a command template.
    pub text: String,
    /// `(workspace-relative path, data version)` of files that are part of
    /// the code, supplied by the caller.
    pub files: Vec<(String, DataVersion)>,
}

/// What an op or resource says about its code; a
/// [`VersionStrategy`](crate::VersionStrategy) turns it into a code version.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CodeSpec {
    /// An explicit code version string.
    pub explicit: Option<Name>,
    /// Source text for the source-hash strategy.
    pub source: Option<SourceText>,
}

/// Why an op's computation failed. A failure is not an engine error: it is a
/// step outcome; independent steps go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFailure {
    /// What went wrong, in one line.
    pub message: String,
    /// The exit code of a failed command, if any.
    pub exit_code: Option<i32>,
}

impl OpFailure {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> OpFailure {
        OpFailure { message: message.into(), exit_code: None }
    }
}

impl fmt::Display for OpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The computation of an op.
pub type OpFn = Arc<dyn Fn(&mut OpContext<'_>) -> Result<(), OpFailure> + Send + Sync>;

/// A Rust op function together with its source text, made by
/// [`source_fn!`](crate::source_fn): editing the body changes the op's code
/// version under the source-hash strategy.
#[derive(Clone)]
pub struct SourceFn {
    /// The tokens of the function, as written.
    pub source: &'static str,
    /// The function.
    pub compute: OpFn,
}

impl SourceFn {
    /// Pairs a function with its source text.
    pub fn new(
        source: &'static str,
        compute: impl Fn(&mut OpContext<'_>) -> Result<(), OpFailure> + Send + Sync + 'static,
    ) -> SourceFn {
        SourceFn { source, compute: Arc::new(compute) }
    }
}

/// Captures a closure's source text at compile time:
/// `Op::new("clean").source_fn(trove_engine::source_fn!(|ctx| { ... }))`.
#[macro_export]
macro_rules! source_fn {
    ($($body:tt)*) => {
        $crate::SourceFn::new(stringify!($($body)*), $($body)*)
    };
}

/// An op definition: named inputs and outputs, config, resources, declared
/// environment, code. Built with [`Op::new`] and its chained methods.
#[derive(Clone)]
pub struct Op {
    pub(crate) name: Name,
    pub(crate) inputs: Vec<InputSpec>,
    pub(crate) outputs: Vec<OutputSpec>,
    pub(crate) config: Value,
    pub(crate) resources: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) code: CodeSpec,
    pub(crate) compute: Option<OpFn>,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("config", &self.config)
            .field("resources", &self.resources)
            .field("env", &self.env)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Op {
    /// A new op named `name`, with no inputs, outputs or config.
    pub fn new(name: impl Into<String>) -> Op {
        Op {
            name: Name::from(name.into()),
            inputs: Vec::new(),
            outputs: Vec::new(),
            config: Value::Null,
            resources: Vec::new(),
            env: Vec::new(),
            code: CodeSpec::default(),
            compute: None,
        }
    }

    /// Adds a named input.
    pub fn input(mut self, name: impl Into<String>, from: InputFrom) -> Op {
        self.inputs.push(InputSpec { name: Name::from(name.into()), from, path: None });
        self
    }

    /// Adds a named input read at a workspace-relative path.
    pub fn input_at(
        mut self,
        name: impl Into<String>,
        from: InputFrom,
        path: impl Into<String>,
    ) -> Op {
        self.inputs.push(InputSpec {
            name: Name::from(name.into()),
            from,
            path: Some(Name::from(path.into())),
        });
        self
    }

    /// Adds a named in-memory output.
    pub fn output(mut self, name: impl Into<String>) -> Op {
        self.outputs.push(OutputSpec { name: Name::from(name.into()), path: None });
        self
    }

    /// Adds a named output written at a workspace-relative path.
    pub fn output_at(mut self, name: impl Into<String>, path: impl Into<String>) -> Op {
        self.outputs.push(OutputSpec { name: Name::from(name.into()), path: Some(path.into()) });
        self
    }

    /// Sets the config value (hashed canonically: sorted keys, typed).
    pub fn config(mut self, config: Value) -> Op {
        self.config = config;
        self
    }

    /// Requires a resource by name.
    pub fn resource(mut self, name: impl Into<String>) -> Op {
        self.resources.push(name.into());
        self
    }

    /// Declares an environment variable as part of the version; its value is
    /// supplied by the caller.
    pub fn env(mut self, name: impl Into<String>) -> Op {
        self.env.push(name.into());
        self
    }

    /// Sets an explicit code version string.
    pub fn code_version(mut self, version: impl Into<String>) -> Op {
        self.code.explicit = Some(Name::from(version.into()));
        self
    }

    /// Sets the source text for the source-hash strategy.
    pub fn source_text(mut self, text: impl Into<String>) -> Op {
        self.code.source.get_or_insert_with(SourceText::default).text = text.into();
        self
    }

    /// Names a file that is part of the code, with its data version.
    pub fn code_file(mut self, path: impl Into<String>, data: DataVersion) -> Op {
        self.code.source.get_or_insert_with(SourceText::default).files.push((path.into(), data));
        self
    }

    /// Sets the computation.
    pub fn compute(
        mut self,
        compute: impl Fn(&mut OpContext<'_>) -> Result<(), OpFailure> + Send + Sync + 'static,
    ) -> Op {
        self.compute = Some(Arc::new(compute));
        self
    }

    /// Sets the computation from a shared function.
    pub fn compute_shared(mut self, compute: OpFn) -> Op {
        self.compute = Some(compute);
        self
    }

    /// Sets the computation and its source text (see [`source_fn!`](crate::source_fn)).
    pub fn source_fn(mut self, source_fn: SourceFn) -> Op {
        self.code.source.get_or_insert_with(SourceText::default).text = source_fn.source.to_owned();
        self.compute = Some(source_fn.compute);
        self
    }

    /// The op's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The op's name, shared (a copy is a reference count).
    pub fn shared_name(&self) -> &Name {
        &self.name
    }
    /// The op's inputs, in declaration order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }
    /// The op's outputs, in declaration order.
    pub fn outputs(&self) -> &[OutputSpec] {
        &self.outputs
    }
    /// The op's config value.
    pub fn config_value(&self) -> &Value {
        &self.config
    }
    /// The names of the resources it requires.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }
    /// The declared environment variable names.
    pub fn env_names(&self) -> &[String] {
        &self.env
    }
    /// What the op says about its code.
    pub fn code(&self) -> &CodeSpec {
        &self.code
    }
}

/// What an op sees while it runs: its loaded inputs, config, resources and
/// declared environment; it sets its outputs here.
pub struct OpContext<'a> {
    pub(crate) step: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) op: &'a Op,
    /// Loaded inputs, sorted by name (a handful per op: a sorted list is
    /// cheaper to build and search than a map).
    pub(crate) inputs: SmallVec<[(&'a str, OutputValue); 2]>,
    /// Outputs set so far, by position in the op's declared outputs.
    pub(crate) outputs: SmallVec<[Option<OutputValue>; 1]>,
    pub(crate) resources: BTreeMap<&'a str, &'a Value>,
    pub(crate) env: BTreeMap<&'a str, Option<&'a str>>,
    pub(crate) reasons: &'a [RerunReason],
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl<'a> OpContext<'a> {
    /// The step being run.
    pub fn step(&self) -> &str {
        self.step
    }
    /// The id of the run.
    pub fn run_id(&self) -> &str {
        self.run_id
    }
    /// The op's definition.
    pub fn op(&self) -> &Op {
        self.op
    }
    /// Why the step runs: what differs from its last trace (the reasons a
    /// plan shows). An op can keep work between runs when only its inputs'
    /// data changed, and start from a clean slate otherwise.
    pub fn reasons(&self) -> &[RerunReason] {
        self.reasons
    }
    /// The op's config value.
    pub fn config(&self) -> &Value {
        &self.op.config
    }
    /// The config of a required resource.
    pub fn resource_config(&self, name: &str) -> Option<&Value> {
        self.resources.get(name).copied()
    }
    /// The value of a declared environment variable (`None` if unset or
    /// undeclared).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).copied().flatten()
    }

    /// A loaded input.
    pub fn input(&self, name: &str) -> Result<&OutputValue, OpFailure> {
        match self.inputs.binary_search_by(|(input, _)| (*input).cmp(name)) {
            Ok(i) => Ok(&self.inputs[i].1),
            Err(_) => Err(OpFailure::new(format!("op `{}` has no input `{name}`", self.step))),
        }
    }

    /// An input's bytes (in-memory outputs only).
    pub fn input_bytes(&self, name: &str) -> Result<&[u8], OpFailure> {
        match self.input(name)? {
            OutputValue::Bytes(bytes) => Ok(bytes),
            OutputValue::File(path) => Err(OpFailure::new(format!(
                "input `{name}` is the file {path}, not an in-memory value"
            ))),
        }
    }

    /// An input decoded as a serde value (JSON codec, see
    /// [`OutputValue::from_serde`]).
    pub fn input_value<T: DeserializeOwned>(&self, name: &str) -> Result<T, OpFailure> {
        let bytes = self.input_bytes(name)?;
        serde_json::from_slice(bytes)
            .map_err(|e| OpFailure::new(format!("input `{name}` does not decode: {e}")))
    }

    /// The workspace-relative path of a file input.
    pub fn input_path(&self, name: &str) -> Option<&str> {
        self.op.inputs.iter().find(|i| i.name == name).and_then(|i| i.path.as_deref())
    }

    /// The workspace-relative path of a file output.
    pub fn output_path(&self, name: &str) -> Option<&str> {
        self.op.outputs.iter().find(|o| o.name == name).and_then(|o| o.path.as_deref())
    }

    /// Sets an output.
    pub fn set_output(&mut self, name: &str, value: OutputValue) -> Result<(), OpFailure> {
        let Some(out) = self.op.outputs.iter().position(|o| o.name == name) else {
            return Err(OpFailure::new(format!(
                "op `{}` set undeclared output `{name}`",
                self.step
            )));
        };
        if self.outputs.len() < self.op.outputs.len() {
            self.outputs.resize(self.op.outputs.len(), None);
        }
        self.outputs[out] = Some(value);
        Ok(())
    }

    /// Sets an output to bytes.
    pub fn set_output_bytes(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), OpFailure> {
        self.set_output(name, OutputValue::Bytes(bytes))
    }

    /// Sets an output to a serde value (JSON codec).
    pub fn set_output_value<T: Serialize>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), OpFailure> {
        let value = OutputValue::from_serde(value)
            .map_err(|e| OpFailure::new(format!("output `{name}` does not encode: {e}")))?;
        self.set_output(name, value)
    }

    /// Appends to the step's captured standard output (kept in the store).
    pub fn log_stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }

    /// Appends to the step's captured standard error (kept in the store).
    pub fn log_stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}
