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
    assert_eq!(SCHEME_VERSION, 3);
}

#[test]
fn explicit_code_version_is_pinned() {
    assert_eq!(
        compute_explicit_code_version("op", "v1.2").to_hex(),
        "c9ab522f91a78f47a957cacc3ee2674760beece8733420e90e616b6dc11bdf33"
    );
}

#[test]
fn source_hash_code_version_is_pinned() {
    let files = [("scripts/train.py".to_owned(), DataVersion::of_bytes(b"print('hi')\n"))];
    assert_eq!(
        compute_source_code_version("op", "python scripts/train.py {lr}", &files).to_hex(),
        "9aa32d5fabfb2d1fc739f8f0d4a151a9b30bf9cb681b30e9eb813b6834031839"
    );
}

#[test]
fn config_digest_is_pinned() {
    let config =
        json!({"lr": 0.1, "layers": [64, 32], "name": "mlp", "debug": false, "seed": null});
    assert_eq!(
        config_digest(&config).to_hex(),
        "49e5408a0c564cfed84a2772d1a10b1308f122e7f50873bf1f770b076cebd24a"
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
        "20fcb27627e1494234e41f3032993fadea647e25cde5a2db2273e7fab4f82dd8"
    );
    // `python` depends on `libc`: its version covers libc's.
    assert_eq!(
        engine.resource_version("python").unwrap().unwrap().to_hex(),
        "e9cc87fc22dc24fff9df0d89fd49d64d79d94591cfe056a6a8c311f147a73ddf"
    );

    let io = MemoryIoManager::new();
    let traces = MemoryTraceStore::new();
    let report = engine.run(&io, &traces, &RunOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.ran(), ["load", "fit"]);

    let load = traces.latest_trace("load").unwrap().unwrap();
    assert_eq!(
        load.op_version.to_hex(),
        "f704e7dd13195f0feab86dc14c8b7b5b916e2137dff496c8b7680b653a32ae83"
    );
    assert_eq!(
        load.outputs[0].version.to_hex(),
        "71001d864260a1601b03b8c46e5ab73b693d17930a82ae4a60bc5ca090e2ae41"
    );
    assert_eq!(engine.op_version("load").unwrap(), trove::OpVersion::Versioned(load.op_version));

    // `fit` reads `load`'s data version (early cutoff).
    let fit = traces.latest_trace("fit").unwrap().unwrap();
    assert_eq!(
        fit.op_version.to_hex(),
        "87853ed8e9e41721d0c6c79620fb43129cc275dd92bdd5e12f5f41894d5f8b94"
    );
    let outputs = engine.output_versions("fit").unwrap().unwrap();
    assert_eq!(
        outputs[0].to_hex(),
        "cedc5513b196fb94a1f02e397127fa08760d75ee0b742fe8e1551ca7fb2ec177"
    );
    assert_eq!(
        outputs[1].to_hex(),
        "581a54501ac72291d76e165e4255bbfe9ba9402b69ef4aeb7d286612d2992fd9"
    );
}
