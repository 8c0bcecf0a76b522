//! Tool calls in the model's own format. Qwen2.5 (and the Hermes format it follows) writes a
//! call as `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`; models whose
//! templates know no tools are taught the same format in their system prompt. This module
//! builds the grammar a call must follow and reads calls back out of the text.

use serde_json::{json, Map, Value};
use symphony_types::ToolSpec;

use crate::constraint::Grammar;

pub const TOOL_CALL_OPEN: &str = "<tool_call>";
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// The grammar of the calls a reply may make: each `{"name", "arguments"}` object is held to
/// its function's parameter schema. `parallel` allows several calls in a row.
pub fn tool_call_grammar(tools: &[ToolSpec], parallel: bool) -> Grammar {
    let mut defs = Map::new();
    let variants: Vec<Value> = tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let params = hoist_definitions(&tool.parameters, &format!("tool{i}_"), &mut defs);
            json!({
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    let mut schema = json!({
        "anyOf": variants,
        // Spaced like the JSON in the models' own tool-call examples.
        "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "},
    });
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    let repeat = if parallel { "+" } else { "" };
    Grammar::Lark(format!(
        "start: (WS? call){repeat}\n\
         call: \"{TOOL_CALL_OPEN}\" WS? %json {schema} WS? \"{TOOL_CALL_CLOSE}\"\n\
         WS: /[ \\t\\r\\n]+/\n"
    ))
}

/// Moves a parameter schema's `$defs`/`definitions` into `defs` under `prefix`-ed names and
/// rewrites its local `$ref`s to match, so several tools' schemas can share one document.
fn hoist_definitions(schema: &Value, prefix: &str, defs: &mut Map<String, Value>) -> Value {
    fn rewrite(v: &Value, prefix: &str) -> Value {
        match v {
            Value::Object(obj) => Value::Object(
                obj.iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v.as_str()) {
                            ("$ref", Some(r)) => {
                                let target = r
                                    .strip_prefix("#/$defs/")
                                    .or_else(|| r.strip_prefix("#/definitions/"));
                                match target {
                                    Some(name) => Value::String(format!("#/$defs/{prefix}{name}")),
                                    None => v.clone(),
                                }
                            }
                            _ => rewrite(v, prefix),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| rewrite(v, prefix)).collect()),
            other => other.clone(),
        }
    }
    let mut schema = rewrite(schema, prefix);
    if let Some(obj) = schema.as_object_mut() {
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(local)) = obj.remove(key) {
                for (name, def) in local {
                    defs.insert(format!("{prefix}{name}"), def);
                }
            }
        }
    }
    schema
}

/// A reply split into its text and the calls it made.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReply {
    /// Text outside the calls, trimmed.
    pub content: String,
    /// Each call's function name and arguments.
    pub calls: Vec<(String, Value)>,
}

/// Reads the `<tool_call>` blocks out of a reply. Blocks that do not hold a
/// `{"name", "arguments"}` object stay in the text (an unconstrained model can write them).
pub fn parse_tool_calls(text: &str) -> ParsedReply {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(TOOL_CALL_OPEN) {
        let body_start = start + TOOL_CALL_OPEN.len();
        let (body, after) = match rest[body_start..].find(TOOL_CALL_CLOSE) {
            Some(end) => (
                &rest[body_start..body_start + end],
                &rest[body_start + end + TOOL_CALL_CLOSE.len()..],
            ),
            None => (&rest[body_start..], ""),
        };
        match parse_call(body) {
            Some(call) => {
                content.push_str(&rest[..start]);
                calls.push(call);
            }
            None => content.push_str(&rest[..rest.len() - after.len()]),
        }
        rest = after;
    }
    content.push_str(rest);
    ParsedReply {
        content: content.trim().to_string(),
        calls,
    }
}

fn parse_call(body: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let arguments = match v.get("arguments") {
        // Some models write the arguments as a JSON string, as OpenAI's API carries them.
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(args @ Value::Object(_)) => args.clone(),
        None => json!({}),
        Some(_) => return None,
    };
    Some((name, arguments))
}

/// The system-prompt text that teaches a model without tool support in its template how to
/// call `tools`, in the same format the grammar enforces.
pub fn tool_instructions(tools: &[ToolSpec]) -> String {
    let mut out = String::from(
        "You may call functions to help with the user's request. The functions are:\n",
    );
    for tool in tools {
        let spec = json!({
            "name": tool.name,
            "description": tool.description.clone().unwrap_or_default(),
            "parameters": tool.parameters,
        });
        out.push_str(&spec.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "To call a function, reply with only\n{TOOL_CALL_OPEN}\n{{\"name\": \"<function name>\", \
         \"arguments\": {{<arguments as JSON>}}}}\n{TOOL_CALL_CLOSE}\nOtherwise answer normally. \
         A function's result comes back inside <tool_response></tool_response>."
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_read_out_of_the_text() {
        let reply = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"now\", \"arguments\": \"{}\"}</tool_call>";
        let parsed = parse_tool_calls(reply);
        assert_eq!(parsed.content, "Let me check.");
        assert_eq!(
            parsed.calls,
            vec![
                ("get_weather".to_string(), json!({"city": "Paris"})),
                ("now".to_string(), json!({})),
            ]
        );
        let broken = "<tool_call>{not json}</tool_call> done";
        assert_eq!(parse_tool_calls(broken).content, broken);
        assert!(parse_tool_calls(broken).calls.is_empty());
    }

    #[test]
    fn definitions_are_hoisted_under_each_tools_prefix() {
        let params = json!({
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/Point"}, "q": {"$ref": "#/definitions/Q"}},
            "$defs": {"Point": {"type": "object"}},
            "definitions": {"Q": {"type": "string"}},
        });
        let mut defs = Map::new();
        let out = hoist_definitions(&params, "tool3_", &mut defs);
        assert_eq!(out["properties"]["p"]["$ref"], "#/$defs/tool3_Point");
        assert_eq!(out["properties"]["q"]["$ref"], "#/$defs/tool3_Q");
        assert!(out.get("$defs").is_none() && out.get("definitions").is_none());
        assert_eq!(defs.len(), 2);
    }
}
