//! Versions: what they are made of and how they are encoded.
//!
//! A version is a blake3 digest of a canonical encoding. Versions are part of
//! trove's public contract: two checkouts on two machines must compute the same
//! versions, so a shared cache works, and a version must change whenever
//! anything that can change an output changes.
//!
//! | component                          | output version | resource version | trace only |
//! | ---------------------------------- | -------------- | ---------------- | ---------- |
//! | scheme version ([`SCHEME_VERSION`])| yes            | yes              |            |
//! | code version (strategy)            | yes (op)       | yes (resource)   |            |
//! | canonical config digest            | yes (op)       | yes (resource)   | config text|
//! | resource versions (by name)        | yes            | yes (depends_on) |            |
//! | declared environment (name, value) | yes            |                  |            |
//! | each input: name, path, version    | yes            |                  |            |
//! | step name, output names and paths  | yes            |                  |            |
//! | output name                        | yes            |                  |            |
//! | duration, run id, time             |                |                  | yes        |
//!
//! An input's version is the upstream output's *data version* (blake3 of its
//! bytes) in early-cutoff mode, or the upstream *output version* in lineage
//! mode.
//!
//! # Considerations for inclusion
//!
//! - No modification times: a touched file with the same bytes has the same
//!   data version.
//! - No absolute paths: only workspace-relative paths given by the caller.
//! - No map order: every map is encoded sorted by key.
//! - No host names, user names, clocks or process ids.
//! - Every kind of version is domain-separated (keyed blake3 under a key
//!   derived from a per-kind context and the scheme version) and every
//!   variable-length field is length-prefixed, so no two different component
//!   lists encode to the same bytes; input *names* are part of the encoding,
//!   so swapping two inputs' versions changes the result. See
//!   [`encode`] for the layout.
//!
//! Changing the encoding requires bumping [`SCHEME_VERSION`]; the versions
//! pinned in hex in `tests/it/pins.rs` catch accidental changes.

#![warn(clippy::disallowed_types)]

pub mod encode;
pub mod strategy;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use encode::{SCHEME_VERSION, config_digest};
pub use strategy::{DefaultStrategy, ExplicitVersions, SourceHash, VersionStrategy};

/// A raw blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes` (plain blake3, no domain).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Digest> {
        blake3::Hash::from_hex(text).ok().map(|h| Digest(*h.as_bytes()))
    }

    /// The first `n` hex characters, for display.
    pub fn short(&self, n: usize) -> String {
        let mut hex = self.to_hex();
        hex.truncate(n.min(64));
        hex
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short(12))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! version_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub Digest);

        impl $name {
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// Parses 64 hex characters.
            pub fn from_hex(text: &str) -> Option<Self> {
                Digest::from_hex(text).map(Self)
            }

            /// The first `n` hex characters, for display.
            pub fn short(&self, n: usize) -> String {
                self.0.short(n)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

version_newtype!(
    /// The code version of an op or resource, decided by a [`VersionStrategy`].
    CodeVersion
);
version_newtype!(
    /// The version of a resource: code version, config and the versions of
    /// the resources it depends on.
    ResourceVersion
);
version_newtype!(
    /// The version of one op output: everything that can change its bytes.
    OutputVersion
);
version_newtype!(
    /// blake3 of an output's (or source's) stored bytes; for a directory, of
    /// its manifest.
    DataVersion
);

impl DataVersion {
    /// The data version of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> DataVersion {
        DataVersion(Digest::of_bytes(bytes))
    }
}

#[cfg(test)]
mod tests;
