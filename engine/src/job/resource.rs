//! Resources: named dependencies of ops (a tool, an interpreter, a
//! connection) with their own config and code version. A resource may depend
//! on other resources; its version covers theirs.

use serde_json::Value;

use super::op::{CodeSpec, SourceText};
use crate::name::Name;

/// A resource definition. Built with [`Resource::new`] and chained methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub(crate) name: String,
    pub(crate) config: Value,
    pub(crate) code: CodeSpec,
    pub(crate) depends_on: Vec<String>,
}

impl Resource {
    /// A new resource named `name`.
    pub fn new(name: impl Into<String>) -> Resource {
        Resource {
            name: name.into(),
            config: Value::Null,
            code: CodeSpec::default(),
            depends_on: Vec::new(),
        }
    }

    /// Sets the config value.
    pub fn config(mut self, config: Value) -> Resource {
        self.config = config;
        self
    }

    /// Sets an explicit code version string (for example the output of
    /// `python3 --version`).
    pub fn code_version(mut self, version: impl Into<String>) -> Resource {
        self.code.explicit = Some(Name::from(version.into()));
        self
    }

    /// Sets source text for the source-hash strategy.
    pub fn source_text(mut self, text: impl Into<String>) -> Resource {
        self.code.source.get_or_insert_with(SourceText::default).text = text.into();
        self
    }

    /// Depends on another resource.
    pub fn depends_on(mut self, name: impl Into<String>) -> Resource {
        self.depends_on.push(name.into());
        self
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The resource's config value.
    pub fn config_value(&self) -> &Value {
        &self.config
    }
    /// What the resource says about its code.
    pub fn code(&self) -> &CodeSpec {
        &self.code
    }
    /// The resources it depends on.
    pub fn dependencies(&self) -> &[String] {
        &self.depends_on
    }
}
