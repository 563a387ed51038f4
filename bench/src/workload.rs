//! Synthetic workloads: the shapes of the benchmark graph and what each step
//! reads and writes.
//!
//! Every step `sNNN` reads its own source file `src/sNNN.txt` and the outputs
//! of its upstream steps, and writes one small output: a checksum of its
//! normalised inputs (trailing spaces stripped). The checksum keeps outputs
//! a few bytes long however deep the graph is, while any real content change
//! still reaches every step downstream; the normalisation is what the
//! `cutoff` scenario relies on. Sources give every shape a root step (step 0,
//! upstream of everything), a leaf step (the last one, upstream of nothing)
//! and a middle step.

use std::fmt;
use std::str::FromStr;

/// The shape of the step graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// Each step reads the previous one.
    Chain,
    /// Step 0 fanned out to N-2 steps, then one sink reading all of them.
    Wide,
    /// Layers of width ≈ sqrt(N), each step reading 2 outputs of the layer above.
    Layered,
    /// Stacked diamonds: a step, two steps reading it, one step reading both.
    Diamond,
}

impl Shape {
    /// Every shape, in report order.
    pub const ALL: [Shape; 4] = [Shape::Chain, Shape::Wide, Shape::Layered, Shape::Diamond];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Wide => "wide",
            Shape::Layered => "layered",
            Shape::Diamond => "diamond",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::ALL.into_iter().find(|shape| shape.name() == s).ok_or_else(|| {
            format!("unknown shape `{s}` (expected chain, wide, layered or diamond)")
        })
    }
}

/// How a step does its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A tiny real command per step (`sh -c`, `sed | cksum`), run by the
    /// `trove` binary (and by ninja and make for comparison).
    Process,
    /// The same work done in-process by a library op, to isolate engine
    /// overhead from process spawning.
    Inproc,
}

impl Kind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Inproc => "inproc",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "process" => Ok(Kind::Process),
            "inproc" => Ok(Kind::Inproc),
            _ => Err(format!("unknown step kind `{s}` (expected process or inproc)")),
        }
    }
}

/// The smallest workload: every shape needs a root, a middle and a leaf.
pub const MIN_STEPS: usize = 4;
/// The largest workload the benchmark generates.
pub const MAX_STEPS: usize = 1_000_000;

/// One step of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its name (`s` and a zero-padded index).
    pub name: String,
    /// Its own source file, workspace-relative.
    pub source: String,
    /// The steps whose outputs it reads, by index (always lower than its own).
    pub inputs: Vec<usize>,
    /// Its output file, workspace-relative.
    pub output: String,
    /// A directory whose every file is an input (the wide sink reads its
    /// fan-in through a glob, so its command line stays short at any N).
    pub input_glob: Option<String>,
}

/// A generated workload: steps in topological order.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its shape.
    pub shape: Shape,
    /// Its steps, in topological order.
    pub steps: Vec<Step>,
    /// Per step, the steps that read it.
    pub downstream: Vec<Vec<usize>>,
}

/// The directory the wide shape's fan-out writes into.
pub const WIDE_FAN_DIR: &str = "out/w";

impl Workload {
    /// Generates a workload of `n` steps.
    pub fn generate(shape: Shape, n: usize) -> Result<Workload, String> {
        if !(MIN_STEPS..=MAX_STEPS).contains(&n) {
            return Err(format!("N must be between {MIN_STEPS} and {MAX_STEPS}, not {n}"));
        }
        let width = n.to_string().len().max(2);
        let name = |i: usize| format!("s{i:0width$}");
        let inputs: Vec<Vec<usize>> = match shape {
            Shape::Chain => (0..n).map(|i| if i == 0 { vec![] } else { vec![i - 1] }).collect(),
            Shape::Wide => (0..n)
                .map(|i| match i {
                    0 => vec![],
                    i if i == n - 1 => (1..n - 1).collect(),
                    _ => vec![0],
                })
                .collect(),
            Shape::Layered => layered(n),
            Shape::Diamond => diamond(n),
        };
        let mut downstream = vec![Vec::new(); n];
        for (i, ins) in inputs.iter().enumerate() {
            for &u in ins {
                downstream[u].push(i);
            }
        }
        let steps = inputs
            .into_iter()
            .enumerate()
            .map(|(i, inputs)| {
                let name = name(i);
                let fan = shape == Shape::Wide && i != 0 && i != n - 1;
                let output = if fan {
                    format!("{WIDE_FAN_DIR}/{name}.txt")
                } else {
                    format!("out/{name}.txt")
                };
                let input_glob =
                    (shape == Shape::Wide && i == n - 1).then(|| WIDE_FAN_DIR.to_owned());
                Step { source: format!("src/{name}.txt"), name, inputs, output, input_glob }
            })
            .collect();
        Ok(Workload { shape, steps, downstream })
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps (never, for a generated workload).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The root step: upstream of every other step.
    pub fn root(&self) -> usize {
        0
    }

    /// The leaf step: upstream of nothing.
    pub fn leaf(&self) -> usize {
        self.len() - 1
    }

    /// A step in the middle of the topological order.
    pub fn middle(&self) -> usize {
        self.len() / 2
    }

    /// The step and everything downstream of it.
    pub fn closure(&self, step: usize) -> usize {
        let mut seen = vec![false; self.len()];
        let mut stack = vec![step];
        let mut count = 0;
        while let Some(s) = stack.pop() {
            if !std::mem::replace(&mut seen[s], true) {
                count += 1;
                stack.extend_from_slice(&self.downstream[s]);
            }
        }
        count
    }

    /// The initial content of a step's source.
    pub fn source_content(&self, step: usize) -> String {
        format!("source of {}\n", self.steps[step].name)
    }

    /// The number of edges (inputs wired to upstream outputs).
    pub fn edges(&self) -> usize {
        self.steps.iter().map(|s| s.inputs.len()).sum()
    }
}

/// Step 0, then layers of width ≈ sqrt(N); the first layer reads step 0, each
/// later step reads two neighbours of the layer above.
fn layered(n: usize) -> Vec<Vec<usize>> {
    let width = ((n as f64).sqrt().round() as usize).max(2);
    let mut inputs = vec![vec![]];
    let mut above: Vec<usize> = vec![0];
    while inputs.len() < n {
        let start = inputs.len();
        let len = width.min(n - start);
        for j in 0..len {
            let a = above[j % above.len()];
            let b = above[(j + 1) % above.len()];
            let mut ins = vec![a];
            if b != a {
                ins.push(b);
            }
            inputs.push(ins);
        }
        above = (start..start + len).collect();
    }
    inputs
}

/// Step 0, then diamonds (left, right, join) stacked on the previous join; a
/// remainder of one or two steps chains below the last join.
fn diamond(n: usize) -> Vec<Vec<usize>> {
    let mut inputs = vec![vec![]];
    let mut top = 0;
    while inputs.len() < n {
        let i = inputs.len();
        if n - i >= 3 {
            inputs.push(vec![top]);
            inputs.push(vec![top]);
            inputs.push(vec![i, i + 1]);
            top = i + 2;
        } else {
            inputs.push(vec![top]);
            top = i;
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_dag(w: &Workload, n: usize) {
        assert_eq!(w.len(), n);
        for (i, s) in w.steps.iter().enumerate() {
            assert!(s.inputs.iter().all(|&u| u < i), "{} reads a later step", s.name);
            assert_eq!(i == 0, s.inputs.is_empty(), "{} inputs {:?}", s.name, s.inputs);
        }
        assert_eq!(w.closure(w.root()), n, "root is upstream of everything");
        assert!(w.downstream[w.leaf()].is_empty(), "leaf is read by nothing");
    }

    #[test]
    fn every_shape_is_a_dag_rooted_at_step_0() {
        for shape in Shape::ALL {
            for n in [4, 5, 6, 10, 11, 37, 200, 1000] {
                check_dag(&Workload::generate(shape, n).unwrap(), n);
            }
        }
    }

    #[test]
    fn shapes_have_their_documented_wiring() {
        let chain = Workload::generate(Shape::Chain, 10).unwrap();
        assert_eq!(chain.steps[5].inputs, [4]);
        assert_eq!(chain.closure(chain.middle()), 5);
        let wide = Workload::generate(Shape::Wide, 10).unwrap();
        assert_eq!(wide.steps[9].inputs, (1..9).collect::<Vec<_>>());
        assert_eq!(wide.steps[3].inputs, [0]);
        assert_eq!(wide.steps[9].input_glob.as_deref(), Some(WIDE_FAN_DIR));
        assert!(wide.steps[3].output.starts_with(WIDE_FAN_DIR));
        let layered = Workload::generate(Shape::Layered, 101).unwrap();
        assert!(layered.steps[20..].iter().all(|s| s.inputs.len() == 2));
        let diamond = Workload::generate(Shape::Diamond, 10).unwrap();
        assert_eq!(diamond.steps[3].inputs, [1, 2]);
        assert_eq!(diamond.steps[9].inputs, [7, 8]);
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(Workload::generate(Shape::Chain, 3).is_err());
        assert!(Workload::generate(Shape::Chain, MAX_STEPS + 1).is_err());
        assert!("ring".parse::<Shape>().is_err());
        assert_eq!("layered".parse::<Shape>(), Ok(Shape::Layered));
    }
}
