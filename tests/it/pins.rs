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
    assert_eq!(SCHEME_VERSION, 2);
}

#[test]
fn explicit_code_version_is_pinned() {
    assert_eq!(
        compute_explicit_code_version("op", "v1.2").to_hex(),
        "836d672ca0ab6dd6bb7267c7bc68b256992b1202ea6c5c6209862ba7a10cc633"
    );
}

#[test]
fn source_hash_code_version_is_pinned() {
    let files = [("scripts/train.py".to_owned(), DataVersion::of_bytes(b"print('hi')\n"))];
    assert_eq!(
        compute_source_code_version("op", "python scripts/train.py {lr}", &files).to_hex(),
        "33dafb5aae5790bc41844a515e266abf7158177948b3e1f3125df8ea8a1d7c4f"
    );
}

#[test]
fn config_digest_is_pinned() {
    let config =
        json!({"lr": 0.1, "layers": [64, 32], "name": "mlp", "debug": false, "seed": null});
    assert_eq!(
        config_digest(&config).to_hex(),
        "4aafb6f7a6bdee8bea8a2b14a2d5d55ca060900e77108821a3641e48223e1ca2"
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
        "0e5cd540af3ffd4221f77a67a039a9db53a0e848229064880304632b2c6dacd6"
    );
    // `python` depends on `libc`: its version covers libc's.
    assert_eq!(
        engine.resource_version("python").unwrap().unwrap().to_hex(),
        "8f1323adae01e92a7f272bc68c065567861dd63a6617e7fbb874ab468c52e83c"
    );

    let io = MemoryIoManager::new();
    let traces = MemoryTraceStore::new();
    let report = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.ran(), ["load", "fit"]);

    let load = traces.latest_trace("load").unwrap().unwrap();
    assert_eq!(
        load.op_version.to_hex(),
        "56504256e8b69d23ac9e04ac27a8b338f1165286c76768e85c499a95bbef52b1"
    );
    assert_eq!(
        load.outputs[0].version.to_hex(),
        "ff9494482bc3a543861b28b02840353a289f601a21b4d405619cc1e71d168fb5"
    );
    assert_eq!(engine.op_version("load").unwrap(), trove::OpVersion::Versioned(load.op_version));

    // `fit` reads `load`'s data version (early cutoff).
    let fit = traces.latest_trace("fit").unwrap().unwrap();
    assert_eq!(
        fit.op_version.to_hex(),
        "d264ef8b2c431fcceffda479dd362aed3d77ed432ff53869f801c736fac55bff"
    );
    let outputs = engine.output_versions("fit").unwrap().unwrap();
    assert_eq!(
        outputs[0].to_hex(),
        "90be6cdc75dea6030caa46cce95f5948488714271d1474dae517c7d912a3716e"
    );
    assert_eq!(
        outputs[1].to_hex(),
        "79ba555155bca855dba4c443f88547605a9c807d8fad99de48c5219361409b5e"
    );
}
