//! [`Name`]: the shared, immutable string behind step, input and output
//! names.
//!
//! A run repeats every step's name in its events, its trace, its report and
//! the trace store's index, and every output's name in the trace and the
//! events. As `String`s each of those was a fresh allocation and copy per
//! step; a `Name` is made once when the job is built, and every copy after
//! that is a copy of 24 bytes (names of up to 23 bytes, most of them, live
//! inline: making one allocates nothing) or a reference count (longer
//! ones), through `smol_str`. It reads like a `&str` (it derefs to one and
//! compares with `str`, `&str` and `String`) and serializes as a plain
//! string, so stored records and JSON are unchanged.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// A shared, immutable name. Cloning it does not copy a long text.
#[derive(Clone)]
pub struct Name(SmolStr);

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    /// As the text hashes, so maps keyed by names answer `&str` lookups.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name made of `parts` back to back, built in place (inline when
    /// short: no allocation, and no formatting machinery).
    pub fn concat(parts: &[&str]) -> Name {
        let mut builder = smol_str::SmolStrBuilder::new();
        for part in parts {
            builder.push_str(part);
        }
        Name(builder.finish())
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    /// Like `str`: honours width, fill and alignment (`{name:<8}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name(SmolStr::new(text))
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name(SmolStr::from(text))
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name(SmolStr::new(text))
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0.as_str().to_owned()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == *other.0.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0.as_str()
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        String::deserialize(deserializer).map(Name::from)
    }
}

/// FxHash (rustc's hasher), for maps keyed by names: several times cheaper
/// than std's SipHash on short names. Names come from the caller's own job,
/// so hash flooding is not a concern here; a collision costs time, never
/// correctness.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    /// The FxHash of a name's text.
    pub(crate) fn hash_str(text: &str) -> u64 {
        let mut hasher = FxHasher::default();
        hasher.write(text.as_bytes());
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Name;

    #[test]
    fn a_name_reads_compares_and_serializes_like_its_text() {
        let name = Name::from("fit");
        assert_eq!(name, "fit");
        assert_eq!(&name, &"fit");
        assert_eq!(name, String::from("fit"));
        assert_eq!("fit", name);
        assert_eq!(name.len(), 3);
        assert_eq!(format!("{name} {name:?} [{name:<5}]"), "fit \"fit\" [fit  ]");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"fit\"");
        let back: Name = serde_json::from_str("\"fit\"").unwrap();
        assert_eq!(back, name);
        let map: std::collections::HashMap<Name, u8> = [(name.clone(), 1)].into();
        assert_eq!(map.get("fit"), Some(&1));
        let long = "a step name well past twenty-three bytes";
        assert_eq!(Name::from(long), long);
        assert_eq!(Name::concat(&["fit", ".", "model"]), "fit.model");
        assert_eq!(Name::concat(&[long, ".", long]), format!("{long}.{long}"));
        let (a, b, l) = (Name::from("a"), Name::from("b"), Name::from(long));
        assert!(a < b && l > a && l.cmp(&b) == std::cmp::Ordering::Less);
    }
}
