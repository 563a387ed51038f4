//! Tests of job validation: every error names its culprit.

use expect_test::{Expect, expect};

use super::{InputFrom, Job, JobBuilder, Op, Resource};

/// Builds the job and compares the outcome: the error's message, or the
/// steps and resources in topological order.
fn check(builder: JobBuilder, expect: Expect) {
    let actual = match builder.build() {
        Ok(job) => {
            let steps: Vec<&str> = job.steps().iter().map(|s| s.name()).collect();
            let resources: Vec<&str> = job.resources().iter().map(|r| r.name()).collect();
            format!("ok: steps {steps:?} resources {resources:?}")
        }
        Err(e) => format!("error: {e}"),
    };
    expect.assert_eq(&actual);
}

fn op(name: &str) -> Op {
    Op::new(name).output("out").code_version("1")
}

fn reads(name: &str, upstream: &str) -> Op {
    op(name).input("in", InputFrom::output(upstream, "out"))
}

#[test]
fn a_valid_job_is_ordered_upstream_first() {
    check(
        Job::builder("j")
            .op(reads("c", "b"))
            .op(reads("b", "a"))
            .op(op("a"))
            .resource(Resource::new("py").depends_on("libc"))
            .resource(Resource::new("libc")),
        expect![[r#"ok: steps ["a", "b", "c"] resources ["libc", "py"]"#]],
    );
}

#[test]
fn unknown_step_is_named() {
    check(
        Job::builder("j").op(reads("b", "nope")),
        expect!["error: step `b` input `in` reads unknown step `nope`"],
    );
}

#[test]
fn unknown_output_is_named() {
    check(
        Job::builder("j").op(op("a")).op(op("b").input("x", InputFrom::output("a", "clean.csv"))),
        expect!["error: step `b` input `x` reads unknown output `clean.csv` of step `a`"],
    );
}

#[test]
fn unknown_resource_is_named() {
    check(
        Job::builder("j").op(op("a").resource("gpu")),
        expect!["error: step `a` requires unknown resource `gpu`"],
    );
}

#[test]
fn unknown_resource_dependency_is_named() {
    check(
        Job::builder("j").resource(Resource::new("py").depends_on("libc")),
        expect!["error: resource `py` depends on unknown resource `libc`"],
    );
}

#[test]
fn duplicates_are_named() {
    check(Job::builder("j").op(op("a")).op(op("a")), expect!["error: duplicate op `a`"]);
    check(
        Job::builder("j").resource(Resource::new("r")).resource(Resource::new("r")),
        expect!["error: duplicate resource `r`"],
    );
    check(
        Job::builder("j")
            .op(op("a"))
            .op(op("b").input("x", InputFrom::source("s")).input("x", InputFrom::source("t"))),
        expect!["error: step `b` declares input `x` twice"],
    );
    check(
        Job::builder("j").op(op("a").output("out")),
        expect!["error: step `a` declares output `out` twice"],
    );
}

#[test]
fn invalid_names_are_named() {
    check(
        Job::builder("j").op(op("a/b")),
        expect![
            "error: op name `a/b` is invalid: names are non-empty and contain no `/`, `\\n` or NUL"
        ],
    );
    check(
        Job::builder("j").op(Op::new("a").output("")),
        expect![
            "error: output name `` is invalid: names are non-empty and contain no `/`, `\\n` or NUL"
        ],
    );
}

#[test]
fn a_cycle_prints_its_path() {
    check(
        Job::builder("j")
            .op(op("root"))
            .op(reads("a", "c"))
            .op(reads("b", "a"))
            .op(reads("c", "b")),
        expect!["error: steps form a cycle: a -> b -> c -> a"],
    );
}

#[test]
fn a_step_reading_itself_is_a_cycle() {
    check(Job::builder("j").op(reads("a", "a")), expect!["error: steps form a cycle: a -> a"]);
}

#[test]
fn a_resource_cycle_prints_its_path() {
    check(
        Job::builder("j")
            .resource(Resource::new("x").depends_on("y"))
            .resource(Resource::new("y").depends_on("z"))
            .resource(Resource::new("z").depends_on("x")),
        expect!["error: resources form a cycle: x -> y -> z -> x"],
    );
}

#[test]
fn sources_are_collected_sorted() {
    let job = Job::builder("j")
        .op(op("a").input("x", InputFrom::source("zeta")).input("y", InputFrom::source("alpha")))
        .op(op("b").input("x", InputFrom::source("alpha")))
        .build()
        .unwrap();
    assert_eq!(job.sources(), ["alpha", "zeta"]);
}

#[test]
fn step_index_finds_every_name_and_only_those() {
    use super::StepIndex;
    let names = ["op1", "op10", "op100", "a", "é", "op"];
    let index = StepIndex::new(names.iter().copied());
    for (idx, name) in names.iter().enumerate() {
        assert_eq!(index.get(name), Some(idx), "{name}");
    }
    for unknown in ["op2", "", "op1000", "A", "e"] {
        assert_eq!(index.get(unknown), None, "{unknown}");
    }
}

#[test]
fn step_index_resolves_names_that_share_a_hash() {
    use crate::name::FxHasher;

    use super::StepIndex;
    // Simulate a collision: `b`'s hash already points at `a`.
    let mut index = StepIndex::new(["a", "b"].into_iter());
    index.by_hash.insert(FxHasher::hash_str("b"), 0);
    index.collided.insert("b".to_owned(), 1);
    assert_eq!(index.get("a"), Some(0));
    assert_eq!(index.get("b"), Some(1));
    assert_eq!(index.get("c"), None);
}

#[test]
fn lists_from_pairs_keep_the_pairs_order_per_list() {
    use super::Lists;
    let lists = Lists::from_pairs(4, &[(2, 'a'), (0, 'b'), (2, 'c'), (3, 'd'), (0, 'e')]);
    let all: Vec<&[char]> = (0..4).map(|i| lists.get(i)).collect();
    assert_eq!(all, [&['b', 'e'][..], &[], &['a', 'c'], &['d']]);
}

#[test]
fn step_index_push_reports_a_repeated_name() {
    use super::StepIndex;
    let mut index = StepIndex::default();
    assert_eq!(index.push("a"), Ok(0));
    assert_eq!(index.push("b"), Ok(1));
    assert_eq!(index.push("a"), Err(0));
    assert_eq!(index.push("c"), Ok(2));
    assert_eq!(index.get("c"), Some(2));
}

mod wiring {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::{InputEdge, InputFrom, Job, Op};

    /// A random DAG: op `i` reads from some ops `< i` (by their outputs
    /// `a` or `b`) and from some of a few sources, under shuffled input
    /// names.
    /// Per op: the `(upstream, reads output b)` it reads, the sources it
    /// reads; and the order the ops are declared in.
    type Dag = (Vec<Vec<(usize, bool)>>, Vec<Vec<usize>>, Vec<usize>);

    fn dag() -> impl Strategy<Value = Dag> {
        (1usize..24).prop_flat_map(|n| {
            let reads = (0..n)
                .map(|i| {
                    if i == 0 {
                        Just(Vec::new()).boxed()
                    } else {
                        prop::collection::vec((0..i, any::<bool>()), 0..4).boxed()
                    }
                })
                .collect::<Vec<_>>();
            let sources = prop::collection::vec(prop::collection::vec(0usize..5, 0..3), n);
            let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
            (reads, sources, order)
        })
    }

    proptest! {
        /// However the ops are declared, every step reads what it declared:
        /// its edges name the right upstream output or source, and its
        /// upstream and downstream lists are exactly the steps it reads and
        /// the steps that read it; steps come upstream first.
        #[test]
        fn every_declaration_order_wires_the_same_graph((reads, srcs, order) in dag()) {
            let n = reads.len();
            let op = |i: usize| {
                let mut op = Op::new(format!("op{i}")).output("a").output("b").code_version("1");
                for (k, &(up, b)) in reads[i].iter().enumerate() {
                    let out = if b { "b" } else { "a" };
                    op = op.input(format!("z{}", 9 - k), InputFrom::output(format!("op{up}"), out));
                }
                for (k, s) in srcs[i].iter().enumerate() {
                    op = op.input(format!("s{k}"), InputFrom::source(format!("src{s}")));
                }
                op
            };
            let mut builder = Job::builder("j");
            for &i in &order {
                builder = builder.op(op(i));
            }
            let job = builder.build().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(job.len(), n);
            let idx_of = |i: usize| job.step_index(&format!("op{i}")).unwrap();
            let want_sources: BTreeSet<String> =
                srcs.iter().flatten().map(|s| format!("src{s}")).collect();
            prop_assert_eq!(job.sources().to_vec(), want_sources.into_iter().collect::<Vec<_>>());
            for i in 0..n {
                let idx = idx_of(i);
                let step = job.step(idx);
                prop_assert_eq!(step.name(), format!("op{i}"));
                let mut names: Vec<&str> = Vec::new();
                for &(input, edge) in job.input_edges(idx) {
                    let spec = &step.inputs()[input];
                    names.push(&spec.name);
                    match (edge, &spec.from) {
                        (InputEdge::Output(up, out), InputFrom::Output { step: s, output }) => {
                            prop_assert!(up < idx, "upstream first");
                            prop_assert_eq!(job.step(up).name(), s.as_str());
                            prop_assert_eq!(job.step(up).outputs()[out].name.as_str(), output.as_str());
                        }
                        (InputEdge::Source(s), InputFrom::Source(name)) => {
                            prop_assert_eq!(&job.sources()[s], name);
                        }
                        other => prop_assert!(false, "mismatched edge {:?}", other),
                    }
                }
                prop_assert_eq!(names.len(), step.inputs().len());
                prop_assert!(names.windows(2).all(|w| w[0] < w[1]), "edges sorted by input name");
                let ups: BTreeSet<usize> = reads[i].iter().map(|&(u, _)| idx_of(u)).collect();
                prop_assert_eq!(job.upstream(idx).to_vec(), ups.into_iter().collect::<Vec<_>>());
                let downs: BTreeSet<usize> = (0..n)
                    .filter(|&d| reads[d].iter().any(|&(u, _)| u == i))
                    .map(idx_of)
                    .collect();
                prop_assert_eq!(job.downstream(idx).to_vec(), downs.into_iter().collect::<Vec<_>>());
            }
        }
    }
}

/// The first name repeating an earlier one, in declaration order: the
/// pairwise scan of short lists and the sort of long ones agree with the
/// definition.
#[test]
fn first_repeated_finds_the_first_name_seen_before() {
    use super::validate::first_repeated;
    let naive = |names: &[&str]| -> Option<String> {
        (0..names.len()).find(|&i| names[..i].contains(&names[i])).map(|i| names[i].to_owned())
    };
    let pool = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    // Every list of up to 12 names drawn from a small pool, deterministic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 13) as usize;
        let names: Vec<&str> =
            (0..len).map(|k| pool[((state >> (4 + k * 4)) % 12) as usize]).collect();
        assert_eq!(
            first_repeated(names.iter().copied()).map(str::to_owned),
            naive(&names),
            "{names:?}"
        );
    }
}
