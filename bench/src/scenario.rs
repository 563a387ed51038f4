//! Scenarios: what is changed before a timed run, and how many steps may run.
//!
//! Every scenario is repeated: iteration `k` makes an edit that differs from
//! iteration `k - 1` (a new line, one more trailing space, a later mtime, a
//! new config value), so each timed run sees a fresh change against the
//! build the previous iteration left.

use std::fmt;
use std::str::FromStr;

use crate::workload::Workload;

/// A rebuild scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Empty store and no outputs: everything runs.
    Cold,
    /// Nothing changed: nothing runs.
    Noop,
    /// The middle step's source gets a later mtime, same bytes: nothing runs.
    Touch,
    /// The leaf step's source changes: only the leaf runs.
    EditLeaf,
    /// The root step's source changes: everything runs.
    EditRoot,
    /// The middle step's config changes (it is not part of its output): only
    /// that step runs; early cutoff stops the rest.
    Config,
    /// The root step's source gains trailing spaces, which the step strips:
    /// only the root runs; early cutoff stops the rest.
    Cutoff,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Cold,
        Scenario::Noop,
        Scenario::Touch,
        Scenario::EditLeaf,
        Scenario::EditRoot,
        Scenario::Config,
        Scenario::Cutoff,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold",
            Scenario::Noop => "noop",
            Scenario::Touch => "touch",
            Scenario::EditLeaf => "edit-leaf",
            Scenario::EditRoot => "edit-root",
            Scenario::Config => "config",
            Scenario::Cutoff => "cutoff",
        }
    }

    /// How many steps trove must run (the answer key).
    pub fn expected_runs(self, workload: &Workload) -> usize {
        match self {
            Scenario::Cold => workload.len(),
            Scenario::Noop | Scenario::Touch => 0,
            Scenario::EditLeaf => workload.closure(workload.leaf()),
            Scenario::EditRoot => workload.closure(workload.root()),
            Scenario::Config | Scenario::Cutoff => 1,
        }
    }

    /// The edit this scenario makes before iteration `k`.
    pub fn edit(self, workload: &Workload, k: usize) -> Edit {
        match self {
            Scenario::Cold => Edit::Wipe,
            Scenario::Noop => Edit::Nothing,
            Scenario::Touch => Edit::Touch { step: workload.middle(), seconds: k as u64 + 1 },
            Scenario::EditLeaf => Edit::Source {
                step: workload.leaf(),
                content: format!("{}edit {k}\n", workload.source_content(workload.leaf())),
            },
            Scenario::EditRoot => Edit::Source {
                step: workload.root(),
                content: format!("{}edit {k}\n", workload.source_content(workload.root())),
            },
            Scenario::Config => Edit::Config { step: workload.middle(), tag: k as u64 + 2 },
            Scenario::Cutoff => {
                let line = workload.source_content(workload.root());
                let spaces = " ".repeat(k + 1);
                Edit::Source {
                    step: workload.root(),
                    content: format!("{}{spaces}\n", line.trim_end()),
                }
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            format!(
                "unknown scenario `{s}` (expected cold, noop, touch, edit-leaf, edit-root, config or cutoff)"
            )
        })
    }
}

/// One change made before a timed run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Edit {
    /// Remove the store and every output.
    Wipe,
    /// Change nothing.
    #[default]
    Nothing,
    /// Set a step's source mtime `seconds` past now; same bytes.
    Touch {
        /// The step whose source is touched.
        step: usize,
        /// How far past now.
        seconds: u64,
    },
    /// Replace a step's source content.
    Source {
        /// The step whose source changes.
        step: usize,
        /// The new content.
        content: String,
    },
    /// Set a step's config tag.
    Config {
        /// The step.
        step: usize,
        /// The new tag (initially 1).
        tag: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Shape;

    #[test]
    fn answer_key_follows_the_graph() {
        let w = Workload::generate(Shape::Chain, 10).unwrap();
        let expect: Vec<usize> = Scenario::ALL.iter().map(|s| s.expected_runs(&w)).collect();
        assert_eq!(expect, [10, 0, 0, 1, 10, 1, 1]);
    }

    #[test]
    fn repeated_edits_differ_and_cutoff_edits_normalise_to_the_original() {
        let w = Workload::generate(Shape::Diamond, 10).unwrap();
        for scenario in [Scenario::EditLeaf, Scenario::EditRoot, Scenario::Cutoff] {
            assert_ne!(scenario.edit(&w, 0), scenario.edit(&w, 1), "{scenario}");
        }
        let Edit::Source { content, .. } = Scenario::Cutoff.edit(&w, 2) else { panic!() };
        let normalised: String = content.lines().map(|l| format!("{}\n", l.trim_end())).collect();
        assert_eq!(normalised, w.source_content(0));
        assert_ne!(content, w.source_content(0));
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
    }
}
