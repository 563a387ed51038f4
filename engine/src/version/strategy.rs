//! Version strategies decide the *code version* of ops and resources.
//!
//! The engine never looks at code itself: a strategy turns what an op or a
//! resource says about its code (an explicit version string, its source text
//! and the data versions of the script files it names) into a
//! [`CodeVersion`]. Returning `None` makes the op *unversioned*: it runs on
//! every run, and early cutoff still protects its downstream.

use super::CodeVersion;
use super::encode::{compute_explicit_code_version, compute_source_code_version};
use crate::job::{CodeSpec, Op, Resource};

/// Decides code versions. Implement it to plug in a strategy of your own
/// (for example one that asks a version control system).
pub trait VersionStrategy: Send + Sync {
    /// The code version of an op, or `None` for an unversioned op.
    fn op_code_version(&self, op: &Op) -> Option<CodeVersion>;
    /// The code version of a resource, or `None` for an unversioned resource
    /// (which makes every op requiring it unversioned).
    fn resource_code_version(&self, resource: &Resource) -> Option<CodeVersion>;
}

fn explicit(kind: &str, code: &CodeSpec) -> Option<CodeVersion> {
    code.explicit.as_deref().map(|v| compute_explicit_code_version(kind, v))
}

fn source(kind: &str, code: &CodeSpec) -> Option<CodeVersion> {
    code.source.as_ref().map(|s| compute_source_code_version(kind, &s.text, &s.files))
}

/// Explicit code version strings only; anything without one is unversioned.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExplicitVersions;

impl VersionStrategy for ExplicitVersions {
    fn op_code_version(&self, op: &Op) -> Option<CodeVersion> {
        explicit("op", op.code())
    }
    fn resource_code_version(&self, resource: &Resource) -> Option<CodeVersion> {
        explicit("resource", resource.code())
    }
}

/// Source hash only: the hash of the source text (a Rust op's function body
/// captured by [`crate::source_fn!`], a command template) and the contents of
/// the script files it names. Explicit strings are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct SourceHash;

impl VersionStrategy for SourceHash {
    fn op_code_version(&self, op: &Op) -> Option<CodeVersion> {
        source("op", op.code())
    }
    fn resource_code_version(&self, resource: &Resource) -> Option<CodeVersion> {
        source("resource", resource.code())
    }
}

/// The default: an explicit version string when given (it replaces the
/// source hash), otherwise the source hash, otherwise unversioned.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultStrategy;

impl VersionStrategy for DefaultStrategy {
    fn op_code_version(&self, op: &Op) -> Option<CodeVersion> {
        explicit("op", op.code()).or_else(|| source("op", op.code()))
    }
    fn resource_code_version(&self, resource: &Resource) -> Option<CodeVersion> {
        explicit("resource", resource.code()).or_else(|| source("resource", resource.code()))
    }
}
