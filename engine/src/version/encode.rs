//! Canonical, domain-separated, length-prefixed encodings behind every version.
//!
//! Each kind of version hashes with its own blake3 key-derivation context
//! (the domain), so a config digest can never collide with an op version even
//! if their field bytes were equal. Every field is written as
//! `len(tag) tag len(value) value` with little-endian `u64` lengths, and
//! maps are written sorted by key with their entry count first.

use std::sync::OnceLock;

use serde_json::Value;

use super::{CodeVersion, DataVersion, Digest, OutputVersion, ResourceVersion};

/// The version of the encoding scheme. Bump it when any encoding in this
/// module changes; old traces then simply stop matching (they are misses).
pub const SCHEME_VERSION: u32 = 2;

static DOMAIN_CONFIG: Domain = Domain::new("trove 2026-11 config v1");
static DOMAIN_CODE: Domain = Domain::new("trove 2026-11 code version v1");
static DOMAIN_RESOURCE: Domain = Domain::new("trove 2026-11 resource version v1");
static DOMAIN_OP: Domain = Domain::new("trove 2026-11 op version v1");
static DOMAIN_OUTPUT: Domain = Domain::new("trove 2026-11 output version v1");
static DOMAIN_ENV: Domain = Domain::new("trove 2026-11 environment v1");
static DOMAIN_OUTPUTS: Domain = Domain::new("trove 2026-11 output list v1");
static DOMAIN_UNVERSIONED: Domain = Domain::new("trove 2026-11 unversioned run v1");

/// A blake3 key-derivation context, with the hasher state after the context
/// and the scheme field computed once per process (deriving the context key
/// is a full blake3 compression; a clone of the state is a copy).
pub(crate) struct Domain {
    context: &'static str,
    base: OnceLock<blake3::Hasher>,
}

impl Domain {
    const fn new(context: &'static str) -> Domain {
        Domain { context, base: OnceLock::new() }
    }

    fn hasher(&self) -> blake3::Hasher {
        self.base
            .get_or_init(|| {
                let mut encoder = Encoder {
                    hasher: blake3::Hasher::new_derive_key(self.context),
                    buf: [0; BUF],
                    len: 0,
                };
                encoder.u64("scheme", u64::from(SCHEME_VERSION));
                encoder.flush();
                encoder.hasher
            })
            .clone()
    }
}

/// Bytes gathered before they are handed to blake3 in one call: fields are
/// small, and many tiny `update` calls cost more than the hashing.
const BUF: usize = 256;

/// A blake3 hasher that writes tagged, length-prefixed fields.
pub(crate) struct Encoder {
    hasher: blake3::Hasher,
    buf: [u8; BUF],
    len: usize,
}

impl Encoder {
    pub(crate) fn new(domain: &'static Domain) -> Encoder {
        Encoder { hasher: domain.hasher(), buf: [0; BUF], len: 0 }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > BUF {
            self.flush();
            if bytes.len() > BUF {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn len(&mut self, n: usize) {
        // u64 regardless of platform: encodings must not depend on usize width.
        self.write(&(n as u64).to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, tag: &str, value: &[u8]) {
        self.len(tag.len());
        self.write(tag.as_bytes());
        self.len(value.len());
        self.write(value);
    }

    pub(crate) fn str(&mut self, tag: &str, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    pub(crate) fn u64(&mut self, tag: &str, value: u64) {
        self.bytes(tag, &value.to_le_bytes());
    }

    pub(crate) fn digest(&mut self, tag: &str, value: &Digest) {
        self.bytes(tag, &value.0);
    }

    pub(crate) fn opt_str(&mut self, tag: &str, value: Option<&str>) {
        match value {
            None => self.bytes(tag, &[0]),
            Some(text) => {
                self.len(tag.len());
                self.write(tag.as_bytes());
                self.len(text.len() + 1);
                self.write(&[1]);
                self.write(text.as_bytes());
            }
        }
    }

    pub(crate) fn count(&mut self, tag: &str, n: usize) {
        self.u64(tag, n as u64);
    }

    pub(crate) fn finish(mut self) -> Digest {
        self.flush();
        Digest(*self.hasher.finalize().as_bytes())
    }
}

/// The canonical encoding of a config value: typed (so `1`, `1.0` and `"1"`
/// differ), objects sorted by key, everything length-prefixed.
pub fn canonical_config(value: &Value, out: &mut Vec<u8>) {
    fn len(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => {
            out.push(1);
            out.push(u8::from(*b));
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            } else if let Some(u) = n.as_u64() {
                out.push(3);
                out.extend_from_slice(&u.to_le_bytes());
            } else {
                out.push(4);
                let f = n.as_f64().unwrap_or(f64::NAN);
                // -0.0 and 0.0 are different floats but the same config value.
                let f = if f == 0.0 { 0.0 } else { f };
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(5);
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(6);
            len(out, items.len());
            for item in items {
                canonical_config(item, out);
            }
        }
        Value::Object(map) => {
            out.push(7);
            len(out, map.len());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                len(out, key.len());
                out.extend_from_slice(key.as_bytes());
                if let Some(item) = map.get(key) {
                    canonical_config(item, out);
                }
            }
        }
    }
}

/// The digest of a config value's canonical encoding.
pub fn config_digest(value: &Value) -> Digest {
    let mut buf = Vec::new();
    canonical_config(value, &mut buf);
    let mut encoder = Encoder::new(&DOMAIN_CONFIG);
    encoder.bytes("config", &buf);
    encoder.finish()
}

/// A code version from an explicit version string.
pub fn compute_explicit_code_version(kind: &str, version: &str) -> CodeVersion {
    let mut encoder = Encoder::new(&DOMAIN_CODE);
    encoder.str("strategy", "explicit");
    encoder.str("kind", kind);
    encoder.str("version", version);
    CodeVersion(encoder.finish())
}

/// A code version from source text and the data versions of the files it
/// names (sorted by path).
pub fn compute_source_code_version(
    kind: &str,
    text: &str,
    files: &[(String, DataVersion)],
) -> CodeVersion {
    let mut encoder = Encoder::new(&DOMAIN_CODE);
    encoder.str("strategy", "source");
    encoder.str("kind", kind);
    encoder.str("text", text);
    let mut sorted: Vec<&(String, DataVersion)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    encoder.count("files", sorted.len());
    for (path, data) in sorted {
        encoder.str("file", path);
        encoder.digest("data", &data.0);
    }
    CodeVersion(encoder.finish())
}

/// The version of a resource from its code version, config digest and the
/// versions of the resources it depends on, given as `(name, version)`
/// sorted by name.
pub fn compute_resource_version(
    code: CodeVersion,
    config: Digest,
    depends_on: &[(&str, ResourceVersion)],
) -> ResourceVersion {
    let mut encoder = Encoder::new(&DOMAIN_RESOURCE);
    encoder.digest("code", &code.0);
    encoder.digest("config", &config);
    encoder.count("depends_on", depends_on.len());
    for (name, version) in depends_on {
        encoder.str("name", name);
        encoder.digest("version", &version.0);
    }
    ResourceVersion(encoder.finish())
}

/// The digest of a declared environment: `(name, value)` sorted by name;
/// `None` is an unset variable, which differs from an empty one.
pub fn compute_env_digest(env: &[(&str, Option<&str>)]) -> Digest {
    let mut encoder = Encoder::new(&DOMAIN_ENV);
    encoder.count("env", env.len());
    for (name, value) in env {
        encoder.str("name", name);
        encoder.opt_str("value", *value);
    }
    encoder.finish()
}

/// The digest of a step's identity and output list: the step's name, then
/// `(name, path)` sorted by name. The step name keeps two steps that
/// declare the same explicit code version, config and inputs from sharing
/// (and overwriting) each other's outputs; it is stable across checkouts,
/// so it costs a shared cache nothing.
pub fn compute_outputs_digest(step: &str, outputs: &[(&str, Option<&str>)]) -> Digest {
    let mut encoder = Encoder::new(&DOMAIN_OUTPUTS);
    encoder.str("step", step);
    encoder.count("outputs", outputs.len());
    for (name, path) in outputs {
        encoder.str("name", name);
        encoder.opt_str("path", *path);
    }
    encoder.finish()
}

/// How an input contributes to an op version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputContribution {
    /// The data version of a source.
    Source(DataVersion),
    /// Early cutoff: the data version of an upstream output.
    Data(DataVersion),
    /// Lineage mode: the version of an upstream output.
    Lineage(OutputVersion),
}

impl InputContribution {
    fn kind(&self) -> u64 {
        match self {
            InputContribution::Source(_) => 1,
            InputContribution::Data(_) => 2,
            InputContribution::Lineage(_) => 3,
        }
    }

    /// The digest this input contributes.
    pub fn digest(&self) -> Digest {
        match self {
            InputContribution::Source(d) | InputContribution::Data(d) => d.0,
            InputContribution::Lineage(v) => v.0,
        }
    }
}

/// Streams the fields of an op version. Inputs must be pushed sorted by name,
/// resources sorted by name.
pub(crate) struct OpVersionEncoder {
    encoder: Encoder,
}

impl OpVersionEncoder {
    pub(crate) fn new(code: CodeVersion, config: Digest, env: Digest, outputs: Digest) -> Self {
        let mut encoder = Encoder::new(&DOMAIN_OP);
        encoder.digest("code", &code.0);
        encoder.digest("config", &config);
        encoder.digest("env", &env);
        encoder.digest("outputs", &outputs);
        OpVersionEncoder { encoder }
    }

    pub(crate) fn resources(&mut self, n: usize) {
        self.encoder.count("resources", n);
    }

    pub(crate) fn resource(&mut self, name: &str, version: ResourceVersion) {
        self.encoder.str("resource", name);
        self.encoder.digest("version", &version.0);
    }

    pub(crate) fn inputs(&mut self, n: usize) {
        self.encoder.count("inputs", n);
    }

    pub(crate) fn input(&mut self, name: &str, path: Option<&str>, value: InputContribution) {
        self.encoder.str("input", name);
        self.encoder.opt_str("path", path);
        self.encoder.u64("kind", value.kind());
        self.encoder.digest("version", &value.digest());
    }

    pub(crate) fn finish(self) -> Digest {
        self.encoder.finish()
    }
}

/// The version of an op from its components: code version, config digest,
/// environment digest ([`compute_env_digest`]), output list digest
/// ([`compute_outputs_digest`]), required resources `(name, version)` sorted
/// by name, and inputs `(name, path, contribution)` sorted by name. This is
/// what [`crate::db::op_version`] computes inside the version graph.
pub fn compute_op_version(
    code: CodeVersion,
    config: Digest,
    env: Digest,
    outputs: Digest,
    resources: &[(&str, ResourceVersion)],
    inputs: &[(&str, Option<&str>, InputContribution)],
) -> Digest {
    let mut encoder = OpVersionEncoder::new(code, config, env, outputs);
    encoder.resources(resources.len());
    for (name, version) in resources {
        encoder.resource(name, *version);
    }
    encoder.inputs(inputs.len());
    for (name, path, contribution) in inputs {
        encoder.input(name, *path, *contribution);
    }
    encoder.finish()
}

/// The version of one named output of an op whose version is `op_version`.
pub fn compute_output_version(op_version: Digest, output: &str) -> OutputVersion {
    let mut encoder = Encoder::new(&DOMAIN_OUTPUT);
    encoder.digest("op", &op_version);
    encoder.str("output", output);
    OutputVersion(encoder.finish())
}

/// The op version of an unversioned step in one run: unique per run and
/// step, so it never matches a stored output.
pub fn compute_unversioned_op_version(run_id: &str, step: &str) -> Digest {
    let mut encoder = Encoder::new(&DOMAIN_UNVERSIONED);
    encoder.str("run", run_id);
    encoder.str("step", step);
    encoder.finish()
}
