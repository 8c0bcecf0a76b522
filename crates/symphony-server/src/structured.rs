//! Structured output and tool calling, shared by both APIs: what a request's
//! `response_format`/`format`, `tools` and `tool_choice` mean for the prompt (which tools the
//! template renders), for decoding (the grammar that holds the reply) and for the reply
//! (whether tool calls are read out of the text).

use serde_json::{json, Value};
use symphony_engine::{
    tool_grammar, Constraint, Grammar, ToolChoice, ToolChoiceError, ToolGrammar,
};
use symphony_types::ToolSpec;

use crate::error::ApiError;
use crate::generation::Loaded;
use crate::util::random_seed;

/// What a request asks of its reply's shape.
#[derive(Debug, Default)]
pub struct OutputRules {
    /// Tools the chat template renders into the prompt.
    pub tools: Vec<ToolSpec>,
    /// The grammar, its trigger and whether calls are read out of the reply: the engine's
    /// tool-choice policy, shared with the agents.
    policy: ToolGrammar,
    /// The request field a compile error is blamed on.
    param: &'static str,
}

/// vLLM's request fields for regex and grammar constraints.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct Guided {
    guided_regex: Option<String>,
    guided_grammar: Option<String>,
}

impl OutputRules {
    /// Read tool calls out of the reply.
    pub fn parse_calls(&self) -> bool {
        self.policy.parse_calls
    }

    /// OpenAI's `response_format`, `tools`, `tool_choice` and `parallel_tool_calls`, and
    /// vLLM's `guided_regex` and `guided_grammar` (Lark) for what OpenAI's API cannot say.
    pub fn openai(
        response_format: Option<&Value>,
        guided: &Guided,
        tools: Option<&Value>,
        tool_choice: Option<&Value>,
        parallel_tool_calls: Option<bool>,
    ) -> Result<Self, ApiError> {
        let mut format = match response_format {
            None | Some(Value::Null) => None,
            Some(f) => openai_format(f)?,
        };
        let mut format_param = "response_format";
        for (grammar, name) in [
            (
                guided.guided_regex.clone().map(Grammar::Regex),
                "guided_regex",
            ),
            (
                guided.guided_grammar.clone().map(Grammar::Lark),
                "guided_grammar",
            ),
        ] {
            if let Some(g) = grammar {
                if format.is_some() {
                    return Err(ApiError::invalid_param(
                        name,
                        "give one of response_format, guided_regex and guided_grammar",
                    ));
                }
                format = Some(g);
                format_param = name;
            }
        }
        let tools = parse_tools(tools, "tools")?;
        let choice = match tool_choice {
            None | Some(Value::Null) => {
                if tools.is_empty() {
                    ToolChoice::None
                } else {
                    ToolChoice::Auto
                }
            }
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!(
                            "tool_choice must be none, auto, required or a function, got '{other}'"
                        ),
                    ))
                }
            },
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                    ToolChoice::Named(name.to_string())
                }
                _ => return Err(ApiError::invalid_param(
                    "tool_choice",
                    "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )),
            },
        };
        Self::build(
            format,
            format_param,
            tools,
            choice,
            parallel_tool_calls.unwrap_or(true),
        )
    }

    /// Ollama's `format` (`"json"` or a JSON Schema) and `tools`.
    pub fn ollama(format: Option<&Value>, tools: Option<&Value>) -> Result<Self, ApiError> {
        let format = match format {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if s == "json" => Some(Grammar::JsonObject),
            Some(schema @ Value::Object(_)) => Some(Grammar::JsonSchema(schema.clone())),
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "format",
                    format!("format must be \"json\" or a JSON Schema object, got {other}"),
                ))
            }
        };
        let tools = parse_tools(tools, "tools")?;
        let choice = if tools.is_empty() {
            ToolChoice::None
        } else {
            ToolChoice::Auto
        };
        Self::build(format, "format", tools, choice, true)
    }

    fn build(
        format: Option<Grammar>,
        format_param: &'static str,
        tools: Vec<ToolSpec>,
        choice: ToolChoice,
        parallel: bool,
    ) -> Result<Self, ApiError> {
        let policy = tool_grammar(&tools, &choice, format, parallel).map_err(|e| {
            let param = match e {
                ToolChoiceError::FormatNeedsNone => format_param,
                ToolChoiceError::NeedsTools | ToolChoiceError::UnknownTool(_) => "tool_choice",
            };
            ApiError::invalid_param(param, e.to_string())
        })?;
        // With tool_choice none the tools stay in the prompt (it is the same prompt as the
        // turns before, so its blocks come from the prefix cache); a grammar that fails to
        // compile is then the format's fault, otherwise the tools'.
        let param = if choice == ToolChoice::None {
            format_param
        } else {
            "tools"
        };
        Ok(Self {
            tools,
            param,
            policy,
        })
    }

    /// The request's compiled constraint, if its reply has a shape to keep. A grammar that
    /// does not compile is a 400 naming the field it came from.
    pub async fn constraint(&self, model: &Loaded) -> Result<Option<Constraint>, ApiError> {
        let Some(grammar) = &self.policy.grammar else {
            return Ok(None);
        };
        let c = model.compile(grammar.clone(), self.param).await?;
        Ok(Some(self.policy.arm(c)))
    }
}

fn openai_format(f: &Value) -> Result<Option<Grammar>, ApiError> {
    let kind = f.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Grammar::JsonObject)),
        "json_schema" => {
            let schema = f.pointer("/json_schema/schema").ok_or_else(|| {
                ApiError::invalid_param(
                    "response_format",
                    "response_format json_schema needs json_schema.schema",
                )
            })?;
            if !schema.is_object() {
                return Err(ApiError::invalid_param(
                    "response_format",
                    "json_schema.schema must be a JSON Schema object",
                ));
            }
            Ok(Some(Grammar::JsonSchema(schema.clone())))
        }
        other => Err(ApiError::invalid_param(
            "response_format",
            format!("response_format type must be text, json_object or json_schema, got '{other}'"),
        )),
    }
}

/// `[{"type": "function", "function": {"name", "description", "parameters"}}]`, the shape
/// both APIs use.
fn parse_tools(tools: Option<&Value>, param: &'static str) -> Result<Vec<ToolSpec>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::invalid_param(param, "tools must be a list")),
    };
    let mut out: Vec<ToolSpec> = Vec::with_capacity(list.len());
    for tool in list {
        if tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function")
            != "function"
        {
            return Err(ApiError::invalid_param(
                param,
                "only tools of type 'function' are supported",
            ));
        }
        let f = tool
            .get("function")
            .ok_or_else(|| ApiError::invalid_param(param, "each tool needs a 'function' object"))?;
        let spec: ToolSpec = serde_json::from_value(f.clone())
            .map_err(|e| ApiError::invalid_param(param, format!("invalid tool: {e}")))?;
        let valid_name = !spec.name.is_empty()
            && spec.name.len() <= 64
            && spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(ApiError::invalid_param(
                param,
                format!(
                    "tool names must be 1-64 letters, digits, '_' or '-', got '{}'",
                    spec.name
                ),
            ));
        }
        if !spec.parameters.is_object() {
            return Err(ApiError::invalid_param(
                param,
                format!(
                    "the parameters of '{}' must be a JSON Schema object",
                    spec.name
                ),
            ));
        }
        if out.iter().any(|t| t.name == spec.name) {
            return Err(ApiError::invalid_param(
                param,
                format!("two tools are named '{}'", spec.name),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// A fed-back call's arguments as the templates want them: an object. OpenAI clients send a
/// JSON string; a string that is not JSON is passed on as it is, and none is `{}`.
pub fn call_arguments(arguments: Value) -> Value {
    match arguments {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Value::Null => json!({}),
        other => other,
    }
}

/// A fresh id for a tool call, in OpenAI's `call_…` spelling.
pub fn call_id() -> String {
    format!("call_{:016x}{:08x}", random_seed(), random_seed() as u32)
}
