//! The tools one agent may use, and running their calls.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use symphony_types::ToolSpec;

use crate::tool::{Tool, ToolError};
use crate::Error;

/// A call that has not finished by then gives [`ToolError::TimedOut`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An agent's tools by name, with the time limit their calls run under.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    timeout: Duration,
}

impl Default for ToolRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self {
            tools: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time limit of every call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a tool. Names must be unique and of the characters OpenAI's API allows for
    /// function names, which every chat template can render.
    pub fn register(&mut self, tool: impl Tool) -> Result<(), Error> {
        self.register_shared(Arc::new(tool))
    }

    pub fn register_shared(&mut self, tool: Arc<dyn Tool>) -> Result<(), Error> {
        let name = tool.spec().name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::InvalidName(name));
        }
        if self.tools.contains_key(&name) {
            return Err(Error::Duplicate(name));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// The tools as the model is told of them, in name order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Runs one call under the time limit. The call runs on a thread of its own; one that
    /// times out is left to finish in the background (a tool that can be stopped, such as
    /// the sandbox, enforces its own, shorter limit), and its result is dropped.
    pub fn call(&self, name: &str, arguments: Value) -> Result<String, ToolError> {
        let tool = self
            .tools
            .get(name)
            .cloned()
            .ok_or_else(|| ToolError::Unknown {
                name: name.to_string(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })?;
        let span = tracing::info_span!(
            "tool_call",
            tool = name,
            otel.status_code = tracing::field::Empty
        );
        let (tx, rx) = mpsc::channel();
        let inside = span.clone();
        thread::Builder::new()
            .name(format!("tool-{name}"))
            .spawn(move || {
                let _ = tx.send(inside.in_scope(|| tool.call(arguments)));
            })
            .map_err(|e| ToolError::Failed(format!("cannot start {name}: {e}")))?;
        let result = self.wait(name, &rx);
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    fn wait(
        &self,
        name: &str,
        rx: &mpsc::Receiver<Result<String, ToolError>>,
    ) -> Result<String, ToolError> {
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ToolError::TimedOut {
                tool: name.to_string(),
                limit: self.timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(ToolError::Failed(format!("{name} crashed")))
            }
        }
    }

    /// Runs a call and gives what the model reads next: the result, or the error prefixed
    /// with `Error:` so the model can tell them apart and correct its call.
    pub fn observe(&self, name: &str, arguments: Value) -> String {
        match self.call(name, arguments) {
            Ok(text) => text,
            Err(e) => format!("Error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypedTool;
    use schemars::JsonSchema;
    use serde::Deserialize;
    use serde_json::json;

    /// Sleeps for the milliseconds it is given.
    struct Sleep;

    #[derive(Deserialize, JsonSchema)]
    struct SleepArgs {
        /// How long, in milliseconds.
        millis: u64,
    }

    impl TypedTool for Sleep {
        type Args = SleepArgs;
        fn name(&self) -> String {
            "sleep".into()
        }
        fn description(&self) -> String {
            "Waits.".into()
        }
        fn run(&self, args: SleepArgs) -> Result<String, ToolError> {
            thread::sleep(Duration::from_millis(args.millis));
            Ok(format!("slept {} ms", args.millis))
        }
    }

    #[test]
    fn typed_arguments_get_a_derived_schema_and_are_checked() {
        let mut registry = ToolRegistry::new();
        registry.register(Sleep).unwrap();
        let spec = &registry.specs()[0];
        assert_eq!(spec.name, "sleep");
        assert_eq!(spec.parameters["type"], "object");
        assert_eq!(spec.parameters["required"], json!(["millis"]));
        assert_eq!(spec.parameters["properties"]["millis"]["type"], "integer");
        assert_eq!(
            spec.parameters["properties"]["millis"]["description"],
            "How long, in milliseconds."
        );
        assert!(spec.parameters.get("$schema").is_none());

        assert_eq!(
            registry.call("sleep", json!({"millis": 1})).unwrap(),
            "slept 1 ms"
        );
        let bad = registry.observe("sleep", json!({"millis": "soon"}));
        assert!(
            bad.starts_with("Error: invalid arguments for sleep:"),
            "{bad}"
        );
        let unknown = registry.observe("nap", json!({}));
        assert_eq!(
            unknown,
            "Error: there is no tool named \"nap\"; the tools are: sleep"
        );
    }

    #[test]
    fn a_slow_call_times_out() {
        let mut registry = ToolRegistry::new().with_timeout(Duration::from_millis(50));
        registry.register(Sleep).unwrap();
        match registry.call("sleep", json!({"millis": 2000})) {
            Err(ToolError::TimedOut { tool, .. }) => assert_eq!(tool, "sleep"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut registry = ToolRegistry::new();
        registry.register(Sleep).unwrap();
        assert!(matches!(registry.register(Sleep), Err(Error::Duplicate(_))));
        struct Spaced;
        impl Tool for Spaced {
            fn spec(&self) -> ToolSpec {
                ToolSpec {
                    name: "two words".into(),
                    description: None,
                    parameters: json!({"type": "object"}),
                }
            }
            fn call(&self, _: Value) -> Result<String, ToolError> {
                Ok(String::new())
            }
        }
        assert!(matches!(
            registry.register(Spaced),
            Err(Error::InvalidName(_))
        ));
    }
}
