//! Tool calls in the model's own format. Qwen2.5 (and the Hermes format it follows) writes a
//! call as `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`; models whose
//! templates know no tools are taught the same format in their system prompt. This module
//! builds the grammar a call must follow and reads calls back out of the text.

use serde_json::{json, Map, Value};
use symphony_types::{ChatMessage, Role, ToolSpec};

use crate::constraint::Grammar;

pub const TOOL_CALL_OPEN: &str = "<tool_call>";
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";
/// How a reply that calls a tool starts (whitespace aside): the tag, or, as small models
/// often write it instead, the call's JSON object alone or in a fenced code block.
pub const TOOL_CALL_TRIGGERS: [&str; 3] = [TOOL_CALL_OPEN, "{\"name\"", "```json{\"name\""];
/// A regex for any reply that does not open with a tool call: not a tag, not a bare object,
/// and not a fenced one (small models asked not to call write the call in a code block
/// instead). With tools in the prompt, it makes the model answer (`tool_choice: none`).
pub const NO_TOOL_CALL: &str = r"\s*[^\s<{`][\s\S]*";

/// The grammar of the calls a reply may make: each `{"name", "arguments"}` object is held to
/// its function's parameter schema. `parallel` allows several calls in a row.
pub fn tool_call_grammar(tools: &[ToolSpec], parallel: bool) -> Grammar {
    Grammar::Lark(format!(
        "start: calls\n{}",
        tool_call_rules(tools, parallel)
    ))
}

/// [`tool_call_grammar`] that also takes one call written as its bare JSON object or in a
/// ```` ```json ```` block, laid out freely, for `tool_choice: auto`, where the constraint
/// starts at any of [`TOOL_CALL_TRIGGERS`].
pub fn tool_call_grammar_auto(tools: &[ToolSpec], parallel: bool) -> Grammar {
    let free = call_schema(tools, json!({"whitespace_flexible": true}));
    Grammar::Lark(format!(
        "start: calls | WS? loose_call | WS? \"```json\" WS? loose_call WS? \"```\"\n\
         loose_call: %json {free}\n{}",
        tool_call_rules(tools, parallel)
    ))
}

/// A reply that either calls tools or answers with JSON valid against `answer_schema`
/// (`tools` together with `response_format`).
pub fn tool_call_or_json_grammar(
    tools: &[ToolSpec],
    parallel: bool,
    answer_schema: &Value,
) -> Grammar {
    let answer = crate::constraint::compact(answer_schema);
    Grammar::Lark(format!(
        "start: calls | answer\nanswer: %json {answer}\n{}",
        tool_call_rules(tools, parallel)
    ))
}

/// The Lark rules `calls` (one call, or several with `parallel`), `call`, `call_object`
/// and `WS`.
fn tool_call_rules(tools: &[ToolSpec], parallel: bool) -> String {
    // Spaced like the JSON in the models' own tool-call examples.
    let schema = call_schema(
        tools,
        json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
    );
    let repeat = if parallel { "+" } else { "" };
    format!(
        "calls: (WS? call){repeat}\n\
         call: \"{TOOL_CALL_OPEN}\" WS? call_object WS? \"{TOOL_CALL_CLOSE}\"\n\
         call_object: %json {schema}\n\
         WS: /[ \\t\\r\\n]+/\n"
    )
}

/// The schema of one call to any of `tools`, with llguidance's layout options.
fn call_schema(tools: &[ToolSpec], layout: Value) -> Value {
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
    let mut schema = json!({"anyOf": variants, "x-guidance": layout});
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    schema
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
    let mut splitter = ToolCallSplitter::default();
    let mut pieces = splitter.push(text);
    pieces.extend(splitter.finish());
    let mut content = String::new();
    let mut calls = Vec::new();
    for piece in pieces {
        match piece {
            ReplyPiece::Text(t) => content.push_str(&t),
            ReplyPiece::Call { name, arguments } => calls.push((name, arguments)),
        }
    }
    ParsedReply {
        content: content.trim().to_string(),
        calls,
    }
}

/// Part of a streamed reply: text to show, or a whole tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyPiece {
    Text(String),
    Call { name: String, arguments: Value },
}

/// Splits streamed text into text and tool calls. Text that could be the start of a call is
/// held back until it is clear; a call is released once it is closed. Whitespace-only text
/// is held until more text follows, so the gaps around calls are never shown as content.
/// A reply that opens with `{` or a code fence may be a bare call object: it is held to the
/// end and read as a call if it is one.
#[derive(Debug, Default)]
pub struct ToolCallSplitter {
    buf: String,
    in_call: bool,
    /// Whitespace waiting for text to follow it.
    space: String,
    /// `None` until the reply's first visible character; then whether it was `{`.
    bare: Option<bool>,
}

impl ToolCallSplitter {
    pub fn push(&mut self, text: &str) -> Vec<ReplyPiece> {
        self.buf.push_str(text);
        if self.bare.is_none() {
            match self.buf.trim_start().chars().next() {
                None => return Vec::new(),
                Some(c) => self.bare = Some(c == '{' || c == '`'),
            }
        }
        if self.bare == Some(true) {
            return Vec::new();
        }
        let mut out = Vec::new();
        loop {
            if self.in_call {
                let Some(end) = self.buf.find(TOOL_CALL_CLOSE) else {
                    break;
                };
                let body = self.buf[..end].to_string();
                self.buf.drain(..end + TOOL_CALL_CLOSE.len());
                self.in_call = false;
                match parse_call(&body) {
                    Some((name, arguments)) => {
                        self.space.clear();
                        out.push(ReplyPiece::Call { name, arguments });
                    }
                    None => self.text(format!("{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"), &mut out),
                }
            } else if let Some(start) = self.buf.find(TOOL_CALL_OPEN) {
                let before = self.buf[..start].to_string();
                self.buf.drain(..start + TOOL_CALL_OPEN.len());
                self.in_call = true;
                self.text(before, &mut out);
            } else {
                // Hold back a tail that may be the start of `<tool_call>`.
                let keep = (1..TOOL_CALL_OPEN.len())
                    .rev()
                    .find(|&n| self.buf.ends_with(&TOOL_CALL_OPEN[..n]))
                    .unwrap_or(0);
                let ready = self.buf[..self.buf.len() - keep].to_string();
                self.buf.drain(..self.buf.len() - keep);
                self.text(ready, &mut out);
                break;
            }
        }
        out
    }

    /// The end of the reply: an unclosed call is read if it is whole JSON, else shown as text.
    pub fn finish(&mut self) -> Vec<ReplyPiece> {
        if self.bare == Some(true) {
            if let Some((name, arguments)) = parse_call(strip_fence(&self.buf)) {
                self.buf.clear();
                return vec![ReplyPiece::Call { name, arguments }];
            }
            // Not a call after all: read it as any other reply.
            self.bare = Some(false);
            let mut out = self.push("");
            out.extend(self.finish());
            return out;
        }
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        if self.in_call {
            self.in_call = false;
            match parse_call(&rest) {
                Some((name, arguments)) => out.push(ReplyPiece::Call { name, arguments }),
                None => self.text(format!("{TOOL_CALL_OPEN}{rest}"), &mut out),
            }
        } else {
            self.text(rest, &mut out);
        }
        out
    }

    fn text(&mut self, text: String, out: &mut Vec<ReplyPiece>) {
        // Trailing whitespace waits: it is shown only if more text follows.
        let body = text.trim_end();
        if body.is_empty() {
            self.space.push_str(&text);
            return;
        }
        let trailing = text[body.len()..].to_string();
        let shown = std::mem::take(&mut self.space) + body;
        self.space = trailing;
        match out.last_mut() {
            Some(ReplyPiece::Text(prev)) => prev.push_str(&shown),
            _ => out.push(ReplyPiece::Text(shown)),
        }
    }
}

/// The inside of a ```` ```json ```` block, or the text itself.
fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .unwrap_or(t)
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

/// A conversation with tools rewritten as plain turns, for templates that know no tools: the
/// tools join the system message, calls become `<tool_call>` text in the assistant's turn,
/// and results come back as user turns in `<tool_response>` blocks.
pub fn tools_as_text(messages: &[ChatMessage], tools: &[ToolSpec]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let instructions = tool_instructions(tools);
        match messages.first() {
            Some(first) if first.role == Role::System => {
                out.push(ChatMessage::system(format!(
                    "{}\n\n{instructions}",
                    first.content
                )));
            }
            _ => out.push(ChatMessage::system(instructions)),
        }
    }
    let skip =
        usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == Role::System));
    for m in &messages[skip..] {
        match m.role {
            Role::Tool => {
                let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
                match out.last_mut() {
                    // Consecutive results share one user turn, as Qwen's template does.
                    Some(prev)
                        if prev.role == Role::User
                            && prev.content.ends_with("</tool_response>") =>
                    {
                        prev.content.push('\n');
                        prev.content.push_str(&block);
                    }
                    _ => out.push(ChatMessage::user(block)),
                }
            }
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut text = m.content.clone();
                for call in &m.tool_calls {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    let body = json!({"name": call.name, "arguments": call.arguments});
                    text.push_str(&format!("{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"));
                }
                out.push(ChatMessage::assistant(text));
            }
            _ => out.push(ChatMessage::new(m.role, m.content.clone())),
        }
    }
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
        let bare = "\n{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}";
        assert_eq!(
            parse_tool_calls(bare).calls,
            vec![("f".to_string(), json!({"x": [1, 2]}))]
        );
        assert_eq!(parse_tool_calls("{\"a\": 1}").content, "{\"a\": 1}");
        let fenced = "```json\n{\n  \"name\": \"f\",\n  \"arguments\": {}\n}\n```";
        assert_eq!(
            parse_tool_calls(fenced).calls,
            vec![("f".to_string(), json!({}))]
        );
        let code = "```python\nprint(1)\n```";
        assert_eq!(parse_tool_calls(code).content, code);
        let broken = "<tool_call>{not json}</tool_call> done";
        assert_eq!(parse_tool_calls(broken).content, broken);
        assert!(parse_tool_calls(broken).calls.is_empty());
    }

    #[test]
    fn streamed_pieces_hold_back_what_may_be_a_call() {
        let reply = "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call>\n";
        // Every split of the reply into two chunks gives the same pieces.
        for cut in (0..=reply.len()).filter(|&i| reply.is_char_boundary(i)) {
            let mut s = ToolCallSplitter::default();
            let mut pieces = s.push(&reply[..cut]);
            pieces.extend(s.push(&reply[cut..]));
            pieces.extend(s.finish());
            // Streaming may cut text anywhere; join neighbouring text pieces to compare.
            let mut joined: Vec<ReplyPiece> = Vec::new();
            for p in pieces {
                match (joined.last_mut(), p) {
                    (Some(ReplyPiece::Text(a)), ReplyPiece::Text(b)) => a.push_str(&b),
                    (_, p) => joined.push(p),
                }
            }
            assert_eq!(
                joined,
                vec![
                    ReplyPiece::Text("Sure.".into()),
                    ReplyPiece::Call {
                        name: "f".into(),
                        arguments: json!({"x": 1})
                    },
                    ReplyPiece::Call {
                        name: "g".into(),
                        arguments: json!({})
                    },
                ],
                "cut at {cut}"
            );
        }
        // Text that only looks like the start of a call is released.
        let mut s = ToolCallSplitter::default();
        assert_eq!(s.push("a <tool"), vec![ReplyPiece::Text("a".into())]);
        assert_eq!(
            s.push("box>\n\n"),
            vec![ReplyPiece::Text(" <toolbox>".into())]
        );
        assert_eq!(s.push("b"), vec![ReplyPiece::Text("\n\nb".into())]);
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
