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
