//! The [`Tool`] interface and typed tools.

use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use symphony_types::ToolSpec;

/// Why a call did not give a result. The agent loop shows the message to the model as the
/// call's observation, so each one says what went wrong in terms the model can act on.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema.
    #[error("invalid arguments for {tool}: {reason}")]
    InvalidArguments { tool: String, reason: String },
    /// No tool of that name is registered.
    #[error("there is no tool named {name:?}; the tools are: {known}")]
    Unknown { name: String, known: String },
    /// The call ran past its time limit.
    #[error("{tool} did not finish within {limit:?}")]
    TimedOut { tool: String, limit: Duration },
    /// The tool ran and failed (a missing file, a division by zero, ...).
    #[error("{0}")]
    Failed(String),
}

/// Something an agent can do. Implementations must be cheap to share between threads: the
/// registry runs each call on a thread of its own to enforce the time limit.
pub trait Tool: Send + Sync + 'static {
    /// Name, description and arguments' JSON Schema, as the model sees them.
    fn spec(&self) -> ToolSpec;

    /// Runs one call with the model's arguments; the text returned is the observation.
    fn call(&self, arguments: Value) -> Result<String, ToolError>;

    /// Whether a person must approve each call before it runs.
    fn needs_approval(&self) -> bool {
        false
    }
}

/// A tool whose arguments are a Rust type: the JSON Schema the model is given is derived
/// from the type, and [`TypedTool::run`] receives the arguments already parsed into it, so a
/// call that does not fit never reaches the tool.
pub trait TypedTool: Send + Sync + 'static {
    /// The arguments; doc comments on its fields become the schema's descriptions.
    type Args: DeserializeOwned + JsonSchema;

    /// The name the model calls the tool by.
    fn name(&self) -> String;

    /// What the tool does, for the model.
    fn description(&self) -> String;

    fn run(&self, args: Self::Args) -> Result<String, ToolError>;

    /// Whether a person must approve each call before it runs.
    fn needs_approval(&self) -> bool {
        false
    }
}

impl<T: TypedTool> Tool for T {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name(),
            description: Some(self.description()),
            parameters: parameters_schema::<T::Args>(),
        }
    }

    fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let args = serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments {
            tool: self.name(),
            reason: e.to_string(),
        })?;
        self.run(args)
    }

    fn needs_approval(&self) -> bool {
        TypedTool::needs_approval(self)
    }
}

/// The JSON Schema of `T` as tool parameters: draft 2020-12 (definitions under `$defs`),
/// without the `$schema` and `title` keys, which the model does not need.
pub fn parameters_schema<T: JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(T).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    schema
}
