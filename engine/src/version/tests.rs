//! Tests of the version encodings (pins live in `tests/it/pins.rs`).

use serde_json::json;

use super::encode::{
    compute_env_digest, compute_explicit_code_version, compute_output_version,
    compute_resource_version, compute_source_code_version,
};
use super::*;

#[test]
fn config_is_typed() {
    let digests = [json!(1), json!(1.0), json!("1"), json!(true), json!(null), json!([1])];
    for (i, a) in digests.iter().enumerate() {
        for b in &digests[i + 1..] {
            assert_ne!(config_digest(a), config_digest(b), "{a} vs {b}");
        }
    }
}

#[test]
fn config_key_order_does_not_matter() {
    let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 3}}"#).unwrap();
    let b: serde_json::Value = serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).unwrap();
    assert_eq!(config_digest(&a), config_digest(&b));
}

#[test]
fn config_fields_are_length_prefixed() {
    assert_ne!(config_digest(&json!(["ab", "c"])), config_digest(&json!(["a", "bc"])));
    assert_ne!(config_digest(&json!({"ab": "c"})), config_digest(&json!({"a": "bc"})));
    assert_eq!(config_digest(&json!(0.0)), config_digest(&json!(-0.0)));
}

#[test]
fn code_versions_are_domain_separated() {
    let explicit = compute_explicit_code_version("op", "x");
    let source = compute_source_code_version("op", "x", &[]);
    assert_ne!(explicit, source);
    assert_ne!(explicit, compute_explicit_code_version("resource", "x"));
    let file = DataVersion::of_bytes(b"print(1)");
    let with_file = compute_source_code_version("op", "x", &[("run.py".into(), file)]);
    assert_ne!(with_file, source);
    let other = DataVersion::of_bytes(b"print(2)");
    assert_ne!(with_file, compute_source_code_version("op", "x", &[("run.py".into(), other)]));
}

#[test]
fn unset_env_differs_from_empty() {
    assert_ne!(compute_env_digest(&[("A", None)]), compute_env_digest(&[("A", Some(""))]));
    assert_ne!(compute_env_digest(&[("A", Some("1"))]), compute_env_digest(&[("B", Some("1"))]));
}

#[test]
fn resource_dependency_names_count() {
    let code = compute_explicit_code_version("resource", "1");
    let config = config_digest(&serde_json::Value::Null);
    let dep = ResourceVersion(Digest::of_bytes(b"dep"));
    assert_ne!(
        compute_resource_version(code, config, &[("a", dep)]),
        compute_resource_version(code, config, &[("b", dep)])
    );
    assert_ne!(
        compute_resource_version(code, config, &[("a", dep)]),
        compute_resource_version(code, config, &[])
    );
}

#[test]
fn output_names_count() {
    let op = Digest::of_bytes(b"op");
    assert_ne!(compute_output_version(op, "a"), compute_output_version(op, "b"));
}

#[test]
fn digests_round_trip_through_hex() {
    let d = Digest::of_bytes(b"x");
    assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
    assert_eq!(d.short(8).len(), 8);
    assert_eq!(Digest::from_hex("zz"), None);
}
