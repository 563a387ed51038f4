//! Tidy checks: house rules that `cargo test` enforces (rust-analyzer's
//! `tidy.rs`). Every Rust file says why it exists in a `//!` doc, and the
//! arrows between crates point one way.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "fuzz" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["src", "engine", "store", "cli", "bench", "tests", "benches", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} Rust files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` module doc: {missing:#?}");
}

#[test]
fn no_mod_rs_files() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["src", "engine", "store", "cli", "bench", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mod_rs: Vec<_> = files.iter().filter(|p| p.ends_with("mod.rs")).collect();
    assert!(mod_rs.is_empty(), "use `foo.rs` + `foo/`, not `mod.rs`: {mod_rs:?}");
}

fn dependencies(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(manifest)).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            deps.push(name.trim().split('.').next().unwrap_or("").to_owned());
        }
    }
    deps
}

#[test]
fn engine_does_no_io_of_its_own() {
    let deps = dependencies("engine/Cargo.toml");
    for banned in ["redb", "clap", "indicatif", "trove-store", "trove-cli", "anyhow", "tempfile"] {
        assert!(!deps.iter().any(|d| d == banned), "engine must not depend on {banned}: {deps:?}");
    }
}

#[test]
fn store_does_not_know_the_cli() {
    let deps = dependencies("store/Cargo.toml");
    for banned in ["clap", "indicatif", "trove-cli", "anyhow"] {
        assert!(!deps.iter().any(|d| d == banned), "store must not depend on {banned}: {deps:?}");
    }
}

#[test]
fn engine_sources_touch_no_filesystem_environment_or_database() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("engine/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in ["std::fs", "std::env::var", "redb::", "std::process::Command", "SystemTime"]
        {
            assert!(
                !text.contains(banned),
                "{} uses `{banned}`: the engine does no IO of its own",
                file.display()
            );
        }
    }
}
