//! Pinned versions: known inputs give known hex versions.
//!
//! Versions are a public contract (invariant 5, "deterministic and
//! relocatable"): two checkouts on two machines, or two releases of trove,
//! must compute the same versions so a shared cache keeps working. If a test
//! here fails, the canonical encoding changed: either undo the change, or bump
//! `SCHEME_VERSION` (so old traces become misses instead of lies) and paste
//! the new values. Never update these pins without bumping the scheme.

use serde_json::json;
use trove::version::config_digest;
use trove::version::encode::{compute_explicit_code_version, compute_source_code_version};
use trove::{
    DataVersion, Engine, InputFrom, Job, MemoryIoManager, MemoryTraceStore, Op, Resource,
    RunOptions, SCHEME_VERSION, TraceStore,
};

#[test]
fn scheme_version_is_pinned() {
    assert_eq!(SCHEME_VERSION, 1);
}

#[test]
fn explicit_code_version_is_pinned() {
    assert_eq!(
        compute_explicit_code_version("op", "v1.2").to_hex(),
        "f69056ca9e47fab58eff860a0d5dd8f1088742ad95847e645593da054dd7c0a8"
    );
}

#[test]
fn source_hash_code_version_is_pinned() {
    let files = [("scripts/train.py".to_owned(), DataVersion::of_bytes(b"print('hi')\n"))];
    assert_eq!(
        compute_source_code_version("op", "python scripts/train.py {lr}", &files).to_hex(),
        "a15b606481f3e82e47c1ae7be31d6081abd5c76aa014abe1bc4d0931ae04f7eb"
    );
}

#[test]
fn config_digest_is_pinned() {
    let config =
        json!({"lr": 0.1, "layers": [64, 32], "name": "mlp", "debug": false, "seed": null});
    assert_eq!(
        config_digest(&config).to_hex(),
        "aaec3e2d6ba3be67e9cdf73f6b43e2a0c9a1d13ad62b93971cea805a10bd00c3"
    );
}

/// A two-step job with a resource that depends on another, an env var, a
/// source and a config: every component of a version takes part.
fn job() -> Job {
    Job::builder("pins")
        .resource(Resource::new("libc").code_version("2.39"))
        .resource(
            Resource::new("python")
                .code_version("3.11.7")
                .config(json!({"flags": ["-O"]}))
                .depends_on("libc"),
        )
        .op(Op::new("load")
            .input_at("raw", InputFrom::source("data.csv"), "data/data.csv")
            .output("table")
            .config(json!({"sep": ","}))
            .code_version("1")
            .compute(|ctx| ctx.set_output_bytes("table", b"a,b\n1,2\n".to_vec())))
        .op(Op::new("fit")
            .input("table", InputFrom::output("load", "table"))
            .output("model")
            .output_at("report", "out/report.txt")
            .config(json!({"lr": 0.1}))
            .resource("python")
            .env("LANG")
            .code_version("2")
            .compute(|ctx| {
                ctx.set_output_bytes("model", b"m".to_vec())?;
                ctx.set_output_bytes("report", b"r".to_vec())
            }))
        .build()
        .unwrap()
}

#[test]
fn resource_op_and_output_versions_are_pinned() {
    let mut engine = Engine::new(job());
    engine.set_source("data.csv", DataVersion::of_bytes(b"a,b\n1,2\n")).unwrap();
    engine.set_env("LANG", Some("C.UTF-8".into()));
    assert_eq!(
        engine.resource_version("libc").unwrap().unwrap().to_hex(),
        "0175a921ee558f22bde4f2a25d88bb4a15746d0126a642eddcf0a405914ac743"
    );
    // `python` depends on `libc`: its version covers libc's.
    assert_eq!(
        engine.resource_version("python").unwrap().unwrap().to_hex(),
        "3641d3c334e376128c6896ab0793beb1418f24f66e7345dd2247009046ee93f5"
    );

    let io = MemoryIoManager::new();
    let traces = MemoryTraceStore::new();
    let report = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.ran(), ["load", "fit"]);

    let load = traces.latest_trace("load").unwrap().unwrap();
    assert_eq!(
        load.op_version.to_hex(),
        "b5febe51f6431f1900c9d23c1b25203d578faec416f11ce242f51fb39ce79e37"
    );
    assert_eq!(
        load.outputs[0].version.to_hex(),
        "5f66d83097ab31f7c7f67e5783919b2af5c42adf7e71ed45b8e7062a8b103e91"
    );
    assert_eq!(engine.op_version("load").unwrap(), trove::OpVersion::Versioned(load.op_version));

    // `fit` reads `load`'s data version (early cutoff).
    let fit = traces.latest_trace("fit").unwrap().unwrap();
    assert_eq!(
        fit.op_version.to_hex(),
        "3c9876652ac960e8cab93f5db25f8a1494b81aada1a04c166a81c660b36be7ef"
    );
    let outputs = engine.output_versions("fit").unwrap().unwrap();
    assert_eq!(
        outputs[0].to_hex(),
        "a5d1aae464eaf7784f8f2a70c918a7e22cda1a2db648b284b628070462e757fa"
    );
    assert_eq!(
        outputs[1].to_hex(),
        "3c92cf40fe8e163dd5d4a3df62ab12f5a9075d834b7493738fb5b2a4eb9f8f7a"
    );
}
