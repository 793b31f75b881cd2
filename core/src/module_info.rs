//! [`ModuleInfo`]: what a module says about itself when it registers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Capability, ModuleName};

/// A module's self-description: its name, what it can do and the shapes it reads and writes.
///
/// ```
/// use colloquy_core::ModuleInfo;
/// let info = ModuleInfo::new("validator".parse()?)
///     .with_description("checks records against a schema")
///     .with_capability("schema.validate".parse()?);
/// assert!(info.has_capability(&"schema.validate".parse()?));
/// # Ok::<(), colloquy_core::CoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Unique name within a hub.
    pub name: ModuleName,
    /// One line on what it does.
    pub description: String,
    /// What it can do, for discovery and broadcast.
    pub capabilities: Vec<Capability>,
    /// The module's own version string.
    pub version: String,
    /// JSON schema of the content it accepts (`{}` accepts anything).
    pub input_schema: Value,
    /// JSON schema of the content it replies with (`{}` promises nothing).
    pub output_schema: Value,
}

impl ModuleInfo {
    /// A module with no description, no capabilities, version "0.0.0" and open schemas.
    pub fn new(name: ModuleName) -> Self {
        Self {
            name,
            description: String::new(),
            capabilities: Vec::new(),
            version: "0.0.0".into(),
            input_schema: Value::Object(Default::default()),
            output_schema: Value::Object(Default::default()),
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a capability (once).
    pub fn with_capability(mut self, capability: Capability) -> Self {
        if !self.capabilities.contains(&capability) {
            self.capabilities.push(capability);
        }
        self
    }

    /// Sets the version string.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the input schema.
    pub fn with_input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the output schema.
    pub fn with_output_schema(mut self, schema: Value) -> Self {
        self.output_schema = schema;
        self
    }

    /// True if the module declared `capability`.
    pub fn has_capability(&self, capability: &Capability) -> bool {
        self.capabilities.contains(capability)
    }

    /// A caller participant: someone who speaks in conversations from outside the hub (an
    /// A2A or MCP client, through a network front) and cannot be addressed as a module. It
    /// is registered so that it can be a participant, and marked with the capability
    /// [`CALLER_CAPABILITY`](Self::CALLER_CAPABILITY) so that listings of modules can leave
    /// it out.
    ///
    /// ```
    /// use colloquy_core::ModuleInfo;
    /// let caller = ModuleInfo::caller("a2a-client".parse()?, "A2A callers of this hub");
    /// assert!(caller.is_caller());
    /// assert_eq!(caller.capabilities, vec![ModuleInfo::CALLER_CAPABILITY.parse::<colloquy_core::Capability>()?]);
    /// assert!(!ModuleInfo::new("echo".parse()?).is_caller());
    /// # Ok::<(), colloquy_core::CoreError>(())
    /// ```
    pub fn caller(name: ModuleName, description: impl Into<String>) -> Self {
        let mut info = Self::new(name).with_description(description);
        info.capabilities.push(Capability::caller());
        info
    }

    /// The capability that marks a caller participant (see [`caller`](Self::caller)).
    pub const CALLER_CAPABILITY: &'static str = "colloquy.caller";

    /// True for a caller participant rather than a module that answers turns.
    pub fn is_caller(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.as_str() == Self::CALLER_CAPABILITY)
    }
}
