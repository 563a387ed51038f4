//! Canonical, domain-separated, length-prefixed encodings behind every version.
//!
//! Each kind of version hashes with its own blake3 key (the domain): the key
//! is derived once per process with `blake3::derive_key` from a per-kind
//! context string and the scheme version, and every encoding of that kind is
//! a `blake3::keyed_hash` under it. A config digest can therefore never
//! collide with an op version even if their field bytes were equal, and two
//! scheme versions never share a version.
//!
//! Within a domain an encoding is a fixed sequence of fields, so no field
//! needs a tag: a digest is its 32 raw bytes, a string or byte string is its
//! length (unsigned LEB128 of a `u64`) then its bytes, a list is its count
//! then its items, an optional value is one byte (0 absent, 1 present) then
//! the value. Every field is self-delimiting, so no two different field
//! lists encode to the same bytes. Short fields matter: the op version is
//! computed for every step of every run, and each 64 bytes of encoding is one
//! blake3 compression (scheme 2's `len(tag) tag len(value) value` fields with
//! `u64` lengths took 9 compressions for a two-input op, this takes 3).

use std::sync::OnceLock;

use serde_json::Value;
use smallvec::SmallVec;

use super::{CodeVersion, DataVersion, Digest, OutputVersion, ResourceVersion};

/// The version of the encoding scheme. Bump it when any encoding in this
/// module changes; old traces then simply stop matching (they are misses).
///
/// Scheme 3: keyed hashing under per-domain derived keys, untagged fields,
/// LEB128 lengths, an op version without an environment digest when the op
/// declares no environment.
pub const SCHEME_VERSION: u32 = 3;

static DOMAIN_CONFIG: Domain = Domain::new("trove 2026-11 config v1");
static DOMAIN_CODE: Domain = Domain::new("trove 2026-11 code version v1");
static DOMAIN_RESOURCE: Domain = Domain::new("trove 2026-11 resource version v1");
static DOMAIN_OP: Domain = Domain::new("trove 2026-11 op version v1");
static DOMAIN_OUTPUT: Domain = Domain::new("trove 2026-11 output version v1");
static DOMAIN_ENV: Domain = Domain::new("trove 2026-11 environment v1");
static DOMAIN_OUTPUTS: Domain = Domain::new("trove 2026-11 output list v1");
static DOMAIN_UNVERSIONED: Domain = Domain::new("trove 2026-11 unversioned run v1");

/// A blake3 key-derivation context and the key derived from it and the
/// scheme version, computed once per process (a derivation is two blake3
/// compressions).
pub(crate) struct Domain {
    context: &'static str,
    key: OnceLock<[u8; 32]>,
}

impl Domain {
    const fn new(context: &'static str) -> Domain {
        Domain { context, key: OnceLock::new() }
    }

    fn key(&self) -> &[u8; 32] {
        self.key.get_or_init(|| {
            blake3::derive_key(self.context, &u64::from(SCHEME_VERSION).to_le_bytes())
        })
    }
}

/// Bytes gathered on the stack before hashing: every encoding of a typical
/// op fits, and then one `keyed_hash` call hashes it without a streaming
/// hasher. Longer encodings spill into a streaming hasher (same digest).
const INLINE: usize = 256;

/// Copies up to 16 bytes with fixed-size (possibly overlapping) moves: names
/// and flags are a few bytes, and a `memcpy` call for each (which a plain
/// loop is turned into) cost ~5% of a cold run of trivial ops.
#[inline(always)]
fn copy_small(out: &mut [u8], bytes: &[u8]) {
    let n = bytes.len();
    if n >= 8 {
        let (head, tail) = (word::<8>(&bytes[..8]), word::<8>(&bytes[n - 8..]));
        out[..8].copy_from_slice(&head);
        out[n - 8..].copy_from_slice(&tail);
    } else if n >= 4 {
        let (head, tail) = (word::<4>(&bytes[..4]), word::<4>(&bytes[n - 4..]));
        out[..4].copy_from_slice(&head);
        out[n - 4..].copy_from_slice(&tail);
    } else {
        // 0 to 3 bytes: first, middle and last (they coincide when short).
        if n > 0 {
            out[0] = bytes[0];
            out[n / 2] = bytes[n / 2];
            out[n - 1] = bytes[n - 1];
        }
    }
}

#[inline(always)]
fn word<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut word = [0u8; N];
    word.copy_from_slice(&bytes[..N]);
    word
}

/// Writes self-delimiting fields and hashes them under a domain's key.
pub(crate) struct Encoder {
    key: &'static [u8; 32],
    buf: [u8; INLINE],
    len: usize,
    spilled: Option<Box<blake3::Hasher>>,
}

impl Encoder {
    pub(crate) fn new(domain: &'static Domain) -> Encoder {
        Encoder { key: domain.key(), buf: [0; INLINE], len: 0, spilled: None }
    }

    // Inlined so that fixed-size fields (digests, flags) copy with a couple
    // of moves instead of a call to `memcpy`.
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > INLINE {
            self.spill(bytes);
            return;
        }
        let out = &mut self.buf[self.len..self.len + bytes.len()];
        if bytes.len() <= 16 {
            copy_small(out, bytes);
        } else {
            out.copy_from_slice(bytes);
        }
        self.len += bytes.len();
    }

    /// The buffer is full: hash it (and `bytes`, if they would not fit
    /// either) into the streaming hasher.
    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        let hasher =
            self.spilled.get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(self.key)));
        hasher.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() > INLINE {
            hasher.update(bytes);
        } else {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }

    /// One byte: a flag or a small kind number.
    #[inline]
    pub(crate) fn byte(&mut self, value: u8) {
        self.write(&[value]);
    }

    /// A length or count: unsigned LEB128 of a `u64` (never `usize` bytes,
    /// so the encoding does not depend on the platform).
    #[inline]
    pub(crate) fn count(&mut self, n: usize) {
        let mut n = n as u64;
        let mut out = [0u8; 10];
        let mut i = 0;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out[i] = low;
                i += 1;
                break;
            }
            out[i] = low | 0x80;
            i += 1;
        }
        self.write(&out[..i]);
    }

    #[inline]
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.count(value.len());
        self.write(value);
    }

    #[inline]
    pub(crate) fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    #[inline]
    pub(crate) fn digest(&mut self, value: &Digest) {
        self.write(&value.0);
    }

    pub(crate) fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.byte(0),
            Some(text) => {
                self.byte(1);
                self.str(text);
            }
        }
    }

    pub(crate) fn opt_digest(&mut self, value: Option<&Digest>) {
        match value {
            None => self.byte(0),
            Some(digest) => {
                self.byte(1);
                self.digest(digest);
            }
        }
    }

    pub(crate) fn finish(self) -> Digest {
        let hash = match self.spilled {
            None => blake3::keyed_hash(self.key, &self.buf[..self.len]),
            Some(mut hasher) => {
                hasher.update(&self.buf[..self.len]);
                hasher.finalize()
            }
        };
        Digest(*hash.as_bytes())
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
            // Most configs have a few keys: sorted on the stack, each with
            // its value (no second lookup).
            let mut entries: SmallVec<[(&String, &Value); 8]> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                len(out, key.len());
                out.extend_from_slice(key.as_bytes());
                canonical_config(item, out);
            }
        }
    }
}

/// The digest of a config value's canonical encoding.
pub fn config_digest(value: &Value) -> Digest {
    // One allocation for the usual small config, not a growing one.
    let mut buf = Vec::with_capacity(128);
    canonical_config(value, &mut buf);
    let mut encoder = Encoder::new(&DOMAIN_CONFIG);
    encoder.bytes(&buf);
    encoder.finish()
}

/// Code version strategies, so two strategies never give the same version.
const STRATEGY_EXPLICIT: u8 = 1;
const STRATEGY_SOURCE: u8 = 2;

/// A code version from an explicit version string.
pub fn compute_explicit_code_version(kind: &str, version: &str) -> CodeVersion {
    let mut encoder = Encoder::new(&DOMAIN_CODE);
    encoder.byte(STRATEGY_EXPLICIT);
    encoder.str(kind);
    encoder.str(version);
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
    encoder.byte(STRATEGY_SOURCE);
    encoder.str(kind);
    encoder.str(text);
    let mut sorted: Vec<&(String, DataVersion)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    encoder.count(sorted.len());
    for (path, data) in sorted {
        encoder.str(path);
        encoder.digest(&data.0);
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
    encoder.digest(&code.0);
    encoder.digest(&config);
    encoder.count(depends_on.len());
    for (name, version) in depends_on {
        encoder.str(name);
        encoder.digest(&version.0);
    }
    ResourceVersion(encoder.finish())
}

/// The digest of a declared environment: `(name, value)` sorted by name;
/// `None` is an unset variable, which differs from an empty one. An op that
/// declares no environment has no environment digest (`None`), and its op
/// version says so with one byte.
pub fn compute_env_digest(env: &[(&str, Option<&str>)]) -> Option<Digest> {
    if env.is_empty() {
        return None;
    }
    let mut encoder = Encoder::new(&DOMAIN_ENV);
    encoder.count(env.len());
    for (name, value) in env {
        encoder.str(name);
        encoder.opt_str(*value);
    }
    Some(encoder.finish())
}

/// The digest of a step's identity and output list: the step's name, then
/// `(name, path)` sorted by name. The step name keeps two steps that
/// declare the same explicit code version, config and inputs from sharing
/// (and overwriting) each other's outputs; it is stable across checkouts,
/// so it costs a shared cache nothing.
pub fn compute_outputs_digest(step: &str, outputs: &[(&str, Option<&str>)]) -> Digest {
    let mut encoder = Encoder::new(&DOMAIN_OUTPUTS);
    encoder.str(step);
    encoder.count(outputs.len());
    for (name, path) in outputs {
        encoder.str(name);
        encoder.opt_str(*path);
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
    fn kind(&self) -> u8 {
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
    pub(crate) fn new(
        code: CodeVersion,
        config: Digest,
        env: Option<Digest>,
        outputs: Digest,
    ) -> Self {
        let mut encoder = Encoder::new(&DOMAIN_OP);
        encoder.digest(&code.0);
        encoder.digest(&config);
        encoder.opt_digest(env.as_ref());
        encoder.digest(&outputs);
        OpVersionEncoder { encoder }
    }

    pub(crate) fn resources(&mut self, n: usize) {
        self.encoder.count(n);
    }

    pub(crate) fn resource(&mut self, name: &str, version: ResourceVersion) {
        self.encoder.str(name);
        self.encoder.digest(&version.0);
    }

    pub(crate) fn inputs(&mut self, n: usize) {
        self.encoder.count(n);
    }

    pub(crate) fn input(&mut self, name: &str, path: Option<&str>, value: InputContribution) {
        self.encoder.str(name);
        self.encoder.opt_str(path);
        self.encoder.byte(value.kind());
        self.encoder.digest(&value.digest());
    }

    pub(crate) fn finish(self) -> Digest {
        self.encoder.finish()
    }
}

/// The version of an op from its components: code version, config digest,
/// environment digest ([`compute_env_digest`], `None` when the op declares
/// no environment), output list digest ([`compute_outputs_digest`]),
/// required resources `(name, version)` sorted by name, and inputs
/// `(name, path, contribution)` sorted by name. This is what
/// [`crate::db::op_version`] computes inside the version graph.
pub fn compute_op_version(
    code: CodeVersion,
    config: Digest,
    env: Option<Digest>,
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
    encoder.digest(&op_version);
    encoder.str(output);
    OutputVersion(encoder.finish())
}

/// The op version of an unversioned step in one run: unique per run and
/// step, so it never matches a stored output.
pub fn compute_unversioned_op_version(run_id: &str, step: &str) -> Digest {
    let mut encoder = Encoder::new(&DOMAIN_UNVERSIONED);
    encoder.str(run_id);
    encoder.str(step);
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::{DOMAIN_OP, Encoder, INLINE};

    /// An encoding longer than the inline buffer streams through a hasher
    /// and must give the same digest as hashing it in one piece.
    #[test]
    fn spilled_encodings_hash_like_inline_ones() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 3 * INLINE + 7] {
            let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let mut spilled = Encoder::new(&DOMAIN_OP);
            for chunk in text.as_bytes().chunks(100) {
                spilled.write(chunk);
            }
            spilled.write(&[7; INLINE + 3]);
            let mut whole = text.as_bytes().to_vec();
            whole.extend_from_slice(&[7; INLINE + 3]);
            let expected = blake3::keyed_hash(DOMAIN_OP.key(), &whole);
            assert_eq!(spilled.finish().0, *expected.as_bytes(), "length {len}");
        }
    }

    /// The layout the module docs describe, byte by byte, for one encoding.
    #[test]
    fn explicit_code_version_is_a_keyed_hash_of_the_documented_fields() {
        let key = blake3::derive_key("trove 2026-11 code version v1", &3u64.to_le_bytes());
        // strategy 1 (explicit), "op", "v1.2", each string length-prefixed.
        let fields = [&[1u8][..], &[2], b"op", &[4], b"v1.2"].concat();
        assert_eq!(
            super::compute_explicit_code_version("op", "v1.2").0.0,
            *blake3::keyed_hash(&key, &fields).as_bytes()
        );
    }

    #[test]
    fn declaring_an_environment_changes_the_op_version() {
        use super::{CodeVersion, Digest, compute_env_digest, compute_op_version};
        let code = CodeVersion(Digest([1; 32]));
        let (config, outputs) = (Digest([2; 32]), Digest([3; 32]));
        let none = compute_op_version(code, config, None, outputs, &[], &[]);
        let unset = compute_env_digest(&[("A", None)]);
        assert!(unset.is_some());
        assert_ne!(none, compute_op_version(code, config, unset, outputs, &[], &[]));
        assert_eq!(compute_env_digest(&[]), None);
    }

    #[test]
    fn small_copies_copy_every_byte() {
        for n in 0..=16 {
            let bytes: Vec<u8> = (1..=n as u8).collect();
            let mut out = [0u8; 16];
            super::copy_small(&mut out[..n], &bytes);
            assert_eq!(&out[..n], &bytes[..], "{n}");
            assert!(out[n..].iter().all(|&b| b == 0), "{n}");
        }
    }

    #[test]
    fn counts_are_leb128() {
        for (n, bytes) in [
            (0usize, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut encoder = Encoder::new(&DOMAIN_OP);
            encoder.count(n);
            assert_eq!(&encoder.buf[..encoder.len], &bytes[..], "{n}");
        }
    }
}
