//! Embedding trove in a Rust program: two ops, a persistent store, and a
//! second run that is memoized. The README shows this file.
//!
//! Run it with `cargo run --example embed`.

use trove::store::{OpenOptions, Store};
use trove::{Engine, InputFrom, Job, Op, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let job = Job::builder("demo")
        .op(Op::new("hello")
            .output("text")
            .config(serde_json::json!({ "name": "trove" }))
            .code_version("1")
            .compute(|ctx| {
                let name = ctx.config()["name"].as_str().unwrap_or("world").to_owned();
                ctx.set_output_bytes("text", format!("hello, {name}").into_bytes())
            }))
        .op(Op::new("shout")
            .input("text", InputFrom::output("hello", "text"))
            .output("loud")
            .code_version("1")
            .compute(|ctx| {
                let loud = ctx.input_bytes("text")?.to_ascii_uppercase();
                ctx.set_output_bytes("loud", loud)
            }))
        .build()?;

    let workspace = std::env::temp_dir().join("trove-embed-example");
    let store = Store::open(&workspace.join(".trove"), &OpenOptions::default(), &mut |_| {})?;
    let io = store.io_manager(&workspace);
    let mut engine = Engine::new(job);
    for attempt in 1..=2 {
        let opts = RunOptions { run_id: Store::new_run_id(), ..RunOptions::default() };
        let report = engine.run(&io, &store, &opts, &mut |_| {})?;
        println!("run {attempt}: ran {:?}, {} memoized", report.ran(), report.counts.hit);
    }
    Ok(())
}
