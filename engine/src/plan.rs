//! Plans: what a run would do, step by step, and why.
//!
//! Each step is a [`StepPlan::Hit`] (all outputs stored at their versions),
//! [`StepPlan::Run`] with the [`RerunReason`]s that say exactly what differs
//! from the step's last trace (cargo's `DirtyReason`), or
//! [`StepPlan::Waiting`] on upstream steps that must run first (with early
//! cutoff, a step's version is known only once its inputs' bytes are).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::name::Name;
use crate::trace::{Trace, VersionComponents};
use crate::version::{DataVersion, OutputVersion};

/// What changed a resource's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceCause {
    /// Its code version (for example the interpreter's version string).
    Code {
        /// The old explicit version string.
        old: Option<String>,
        /// The new one.
        new: Option<String>,
    },
    /// A key of its config.
    Config {
        /// The dotted key.
        key: String,
        /// The old value as JSON text.
        old: Option<String>,
        /// The new value as JSON text.
        new: Option<String>,
    },
    /// A resource it depends on (directly or not) changed.
    Dependency {
        /// The dependency whose own code or config changed.
        dependency: String,
    },
    /// Something else (for example a strategy that decides differently).
    Other,
}

/// How a file of an op's code changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileChange {
    /// Its content changed.
    Modified,
    /// It is newly named.
    Added,
    /// It is no longer named.
    Removed,
}

/// Why a step must run. Each variant names what differs from the last trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RerunReason {
    /// The step never ran (or its trace is unreadable).
    NoPreviousTrace,
    /// Memoization is disabled for this run.
    MemoDisabled,
    /// The caller forced the step.
    Forced,
    /// The op has no code version: it always runs.
    Unversioned,
    /// The version is unchanged but an output is not stored.
    OutputMissing {
        /// The output.
        output: String,
    },
    /// A stored output failed verification; it is never served.
    OutputCorrupt {
        /// The output.
        output: String,
        /// What was found.
        detail: String,
    },
    /// The version scheme changed (trove was upgraded).
    SchemeChanged {
        /// The old scheme.
        old: u32,
        /// The new scheme.
        new: u32,
    },
    /// The explicit code version changed.
    CodeVersionChanged {
        /// The old string.
        old: Option<String>,
        /// The new string.
        new: Option<String>,
    },
    /// A file of the op's code changed.
    CodeFileChanged {
        /// The file.
        path: String,
        /// How.
        change: FileChange,
    },
    /// The op's source text (function body, command template) changed.
    SourceTextChanged,
    /// A config key changed.
    ConfigChanged {
        /// The dotted key (empty for a non-object config).
        key: String,
        /// The old value as JSON text (`None`: absent).
        old: Option<String>,
        /// The new value as JSON text (`None`: absent).
        new: Option<String>,
    },
    /// A required resource's version changed.
    ResourceChanged {
        /// The resource the step requires.
        resource: String,
        /// What changed it.
        cause: ResourceCause,
    },
    /// The step requires a resource it did not require before.
    ResourceAdded {
        /// The resource.
        resource: String,
    },
    /// The step no longer requires a resource.
    ResourceRemoved {
        /// The resource.
        resource: String,
    },
    /// A declared environment variable changed.
    EnvChanged {
        /// The variable.
        name: String,
        /// The old value (`None`: unset or undeclared).
        old: Option<String>,
        /// The new value.
        new: Option<String>,
    },
    /// An input's data (or, in lineage mode, its upstream version) changed.
    InputChanged {
        /// The input.
        input: String,
        /// Where it reads (`source NAME` or `STEP.OUTPUT`).
        from: String,
        /// Its path, if a file.
        path: Option<String>,
    },
    /// An input now reads somewhere else.
    InputRewired {
        /// The input.
        input: String,
        /// Old origin and path.
        old: String,
        /// New origin and path.
        new: String,
    },
    /// A new input.
    InputAdded {
        /// The input.
        input: String,
    },
    /// A removed input.
    InputRemoved {
        /// The input.
        input: String,
    },
    /// The output names or paths changed.
    OutputsChanged {
        /// Old `name=path` list.
        old: Vec<String>,
        /// New list.
        new: Vec<String>,
    },
    /// The version changed for a reason none of the components show.
    VersionChanged,
}

/// What the plan says about one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepPlan {
    /// All outputs are stored at their versions: the step is skipped.
    Hit {
        /// The outputs' versions and data versions.
        outputs: Vec<(Name, OutputVersion, DataVersion)>,
    },
    /// The step must run, for these reasons.
    Run(Vec<RerunReason>),
    /// Early cutoff: the step's version is known only after these upstream
    /// steps run. It runs only if their new outputs differ.
    Waiting {
        /// Direct upstream steps that must run or are waiting themselves.
        on: Vec<String>,
    },
}

/// One planned step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    /// The step.
    pub step: Name,
    /// Its plan.
    pub plan: StepPlan,
}

/// A plan: the selected steps in topological order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// The plan of one step.
    pub fn step(&self, name: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.step == name)
    }

    /// How many steps are hits, must run, and wait.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for s in &self.steps {
            match s.plan {
                StepPlan::Hit { .. } => counts.0 += 1,
                StepPlan::Run(_) => counts.1 += 1,
                StepPlan::Waiting { .. } => counts.2 += 1,
            }
        }
        counts
    }

    /// For a waiting step: the steps that must run and cause it to wait,
    /// following `Waiting` links upstream, nearest first.
    pub fn causes(&self, name: &str) -> Vec<&PlannedStep> {
        let by_name: BTreeMap<&str, &PlannedStep> =
            self.steps.iter().map(|s| (s.step.as_str(), s)).collect();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue = std::collections::VecDeque::new();
        if let Some(StepPlan::Waiting { on }) = by_name.get(name).map(|s| &s.plan) {
            queue.extend(on.iter().map(String::as_str));
        }
        while let Some(up) = queue.pop_front() {
            if !seen.insert(up) {
                continue;
            }
            if let Some(planned) = by_name.get(up) {
                out.push(*planned);
                if let StepPlan::Waiting { on } = &planned.plan {
                    queue.extend(on.iter().map(String::as_str));
                }
            }
        }
        out
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn diff_values(
    prefix: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                diff_values(&path, a.get(key), b.get(key), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push((prefix.to_owned(), a.map(Value::to_string), b.map(Value::to_string))),
    }
}

/// The changed keys between two canonical JSON config texts.
pub fn config_changes(old: &str, new: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    if old != new {
        diff_values("", Some(&parse(old)), Some(&parse(new)), &mut out);
    }
    out
}

/// What differs between a step's last trace and its components now.
pub fn compute_reasons(previous: Option<&Trace>, now: &VersionComponents) -> Vec<RerunReason> {
    let Some(previous) = previous else {
        return vec![RerunReason::NoPreviousTrace];
    };
    let old = &previous.components;
    let mut reasons = Vec::new();
    if old.scheme != now.scheme {
        reasons.push(RerunReason::SchemeChanged { old: old.scheme, new: now.scheme });
    }
    // Code.
    if old.code != now.code {
        if old.code.explicit != now.code.explicit {
            reasons.push(RerunReason::CodeVersionChanged {
                old: old.code.explicit.as_ref().map(Name::to_string),
                new: now.code.explicit.as_ref().map(Name::to_string),
            });
        }
        if now.code.explicit.is_none() {
            let old_files: BTreeMap<&String, &DataVersion> =
                old.code.files.iter().map(|(p, d)| (p, d)).collect();
            let new_files: BTreeMap<&String, &DataVersion> =
                now.code.files.iter().map(|(p, d)| (p, d)).collect();
            for (path, data) in &new_files {
                match old_files.get(path) {
                    None => reasons.push(RerunReason::CodeFileChanged {
                        path: (*path).clone(),
                        change: FileChange::Added,
                    }),
                    Some(old_data) if old_data != data => {
                        reasons.push(RerunReason::CodeFileChanged {
                            path: (*path).clone(),
                            change: FileChange::Modified,
                        })
                    }
                    Some(_) => {}
                }
            }
            for path in old_files.keys() {
                if !new_files.contains_key(path) {
                    reasons.push(RerunReason::CodeFileChanged {
                        path: (*path).clone(),
                        change: FileChange::Removed,
                    });
                }
            }
            if old.code.text != now.code.text {
                reasons.push(RerunReason::SourceTextChanged);
            }
        }
    }
    // Config.
    for (key, a, b) in config_changes(&old.config, &now.config) {
        reasons.push(RerunReason::ConfigChanged { key, old: a, new: b });
    }
    // Resources.
    let old_res: BTreeMap<&str, &crate::trace::ResourceComponent> =
        old.resources.iter().map(|r| (r.name.as_str(), r)).collect();
    let new_res: BTreeMap<&str, &crate::trace::ResourceComponent> =
        now.resources.iter().map(|r| (r.name.as_str(), r)).collect();
    let own_change = |name: &str| -> Option<ResourceCause> {
        let (a, b) = (old_res.get(name)?, new_res.get(name)?);
        if a.explicit != b.explicit {
            return Some(ResourceCause::Code {
                old: a.explicit.as_ref().map(Name::to_string),
                new: b.explicit.as_ref().map(Name::to_string),
            });
        }
        if let Some((key, x, y)) = config_changes(&a.config, &b.config).into_iter().next() {
            return Some(ResourceCause::Config { key, old: x, new: y });
        }
        None
    };
    for r in now.resources.iter().filter(|r| r.direct) {
        match old_res.get(r.name.as_str()) {
            Some(o) if o.direct => {
                if o.version != r.version {
                    let cause = own_change(&r.name).or_else(|| {
                        // Search the dependency closure for the resource
                        // whose own code or config changed.
                        let mut stack: Vec<&str> =
                            r.depends_on.iter().map(String::as_str).collect();
                        let mut seen = BTreeSet::new();
                        while let Some(dep) = stack.pop() {
                            if !seen.insert(dep) {
                                continue;
                            }
                            if own_change(dep).is_some() || !old_res.contains_key(dep) {
                                return Some(ResourceCause::Dependency {
                                    dependency: dep.to_owned(),
                                });
                            }
                            if let Some(d) = new_res.get(dep) {
                                stack.extend(d.depends_on.iter().map(String::as_str));
                            }
                        }
                        None
                    });
                    reasons.push(RerunReason::ResourceChanged {
                        resource: r.name.clone(),
                        cause: cause.unwrap_or(ResourceCause::Other),
                    });
                }
            }
            _ => reasons.push(RerunReason::ResourceAdded { resource: r.name.clone() }),
        }
    }
    for r in old.resources.iter().filter(|r| r.direct) {
        if !new_res.get(r.name.as_str()).is_some_and(|n| n.direct) {
            reasons.push(RerunReason::ResourceRemoved { resource: r.name.clone() });
        }
    }
    // Environment.
    let old_env: BTreeMap<&String, &Option<String>> = old.env.iter().map(|(k, v)| (k, v)).collect();
    let new_env: BTreeMap<&String, &Option<String>> = now.env.iter().map(|(k, v)| (k, v)).collect();
    let names: BTreeSet<&String> = old_env.keys().chain(new_env.keys()).copied().collect();
    for name in names {
        let a = old_env.get(name).and_then(|v| (*v).clone());
        let b = new_env.get(name).and_then(|v| (*v).clone());
        if a != b || old_env.contains_key(name) != new_env.contains_key(name) {
            reasons.push(RerunReason::EnvChanged { name: name.clone(), old: a, new: b });
        }
    }
    // Inputs.
    let old_in: BTreeMap<&str, &crate::trace::InputComponent> =
        old.inputs.iter().map(|i| (i.name.as_str(), i)).collect();
    for input in &now.inputs {
        match old_in.get(input.name.as_str()) {
            None => reasons.push(RerunReason::InputAdded { input: input.name.to_string() }),
            Some(o) if o.from != input.from || o.path != input.path => {
                let show = |i: &crate::trace::InputComponent| match &i.path {
                    Some(p) => format!("{} ({p})", i.from),
                    None => i.from.to_string(),
                };
                reasons.push(RerunReason::InputRewired {
                    input: input.name.to_string(),
                    old: show(o),
                    new: show(input),
                });
            }
            Some(o) if o.version != input.version => reasons.push(RerunReason::InputChanged {
                input: input.name.to_string(),
                from: input.from.to_string(),
                path: input.path.as_ref().map(Name::to_string),
            }),
            Some(_) => {}
        }
    }
    let new_in: BTreeSet<&str> = now.inputs.iter().map(|i| i.name.as_str()).collect();
    for input in &old.inputs {
        if !new_in.contains(input.name.as_str()) {
            reasons.push(RerunReason::InputRemoved { input: input.name.to_string() });
        }
    }
    // Outputs.
    if old.outputs != now.outputs {
        let show = |list: &[(Name, Option<String>)]| {
            list.iter()
                .map(|(n, p)| match p {
                    Some(p) => format!("{n}={p}"),
                    None => n.to_string(),
                })
                .collect::<Vec<_>>()
        };
        reasons
            .push(RerunReason::OutputsChanged { old: show(&old.outputs), new: show(&now.outputs) });
    }
    reasons
}
