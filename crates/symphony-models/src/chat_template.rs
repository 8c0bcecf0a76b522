//! Chat templates: the model's own Jinja template (`tokenizer.chat_template`), rendered with
//! minijinja in the same environment Hugging Face uses (`trim_blocks`, `lstrip_blocks`, Python
//! string methods, `raise_exception`).
//!
//! A template is code that comes with a model file (or `--chat-template`), run on every
//! chat request, so its cost is bounded: a render may take [`TEMPLATE_FUEL`] steps and
//! write [`output_limit`] bytes; past either it stops with an error instead of spinning
//! or growing without end.

use minijinja::syntax::SyntaxConfig;
use minijinja::{context, Environment, ErrorKind};
use symphony_types::{ChatMessage, ToolSpec};

use crate::error::{Error, Result};

const TEMPLATE_NAME: &str = "chat";

/// minijinja instructions one render may execute. The Hugging Face templates in use take a
/// few hundred per message, so this covers conversations of thousands of turns, while a
/// template looping 10^8 times stops after a fraction of a second.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Bytes a render may write beyond what the conversation brings: room for every template's
/// markup; the conversation itself may appear a few times over (some templates repeat the
/// system prompt or the tools).
const OUTPUT_ALLOWANCE: usize = 4 << 20;

/// The most a render of `input_bytes` of messages and tools may write.
pub fn output_limit(input_bytes: usize) -> usize {
    OUTPUT_ALLOWANCE.saturating_add(input_bytes.saturating_mul(4))
}

#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    supports_tools: bool,
}

impl ChatTemplate {
    /// Compiles a template; syntax errors are reported here, not at the first chat.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, fix_known_quirks(source))
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            // Templates that render tools read a `tools` variable; the others ignore it.
            supports_tools: source.contains("tools"),
        })
    }

    /// Whether the template renders tool definitions and tool turns itself.
    pub fn supports_tools(&self) -> bool {
        self.supports_tools
    }

    /// Renders a conversation. With `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, &[], add_generation_prompt)
    }

    /// Renders a conversation with the functions the model may call, in the shapes Hugging
    /// Face templates expect: `tools` as `{"type": "function", "function": {...}}` and an
    /// assistant's calls as `tool_calls[].function` with the arguments as an object.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        let input_bytes = messages
            .iter()
            .map(|m| {
                m.content.len()
                    + m.tool_calls
                        .iter()
                        .map(|c| c.arguments.to_string().len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + tools
                .iter()
                .map(|t| {
                    t.parameters.to_string().len() + t.description.as_ref().map_or(0, String::len)
                })
                .sum::<usize>();
        let messages: Vec<_> = messages.iter().map(message_value).collect();
        let tools: Vec<_> = tools
            .iter()
            .map(|t| {
                let function = serde_json::json!({
                    "name": t.name,
                    "description": t.description.clone().unwrap_or_default(),
                    "parameters": t.parameters,
                });
                minijinja::Value::from(minijinja::value::Serde(
                    serde_json::json!({"type": "function", "function": function}),
                ))
            })
            .collect();
        let tools = (!tools.is_empty()).then_some(tools);
        let limit = output_limit(input_bytes);
        let mut out = BoundedOutput {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        };
        let rendered = template.render_captured_to(
            context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.clone(),
                eos_token => self.eos_token.clone(),
            },
            &mut out,
        );
        match rendered {
            Ok(_) => String::from_utf8(out.bytes)
                .map_err(|_| Error::ChatTemplate("the rendered prompt is not UTF-8".into())),
            Err(_) if out.overflowed => Err(Error::ChatTemplate(format!(
                "the rendered prompt passed {limit} bytes; the template writes more than \
                 the conversation can need"
            ))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::ChatTemplate(format!(
                "rendering took more than {TEMPLATE_FUEL} steps; the template does more work \
                 than the conversation can need"
            ))),
            Err(e) => Err(Error::ChatTemplate(describe(&e))),
        }
    }
}

/// The render's output, refused past `limit` bytes (minijinja stops at the first failed
/// write).
struct BoundedOutput {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn message_value(m: &ChatMessage) -> minijinja::Value {
    let mut v = serde_json::json!({"role": m.role.as_str(), "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = id.clone().into();
    }
    if let Some(name) = &m.name {
        v["name"] = name.clone().into();
    }
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// minijinja's error with its cause chain, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Some Qwen2.5 GGUF files (Qwen2.5-Coder-1.5B-Instruct's among them) describe the tool-call
/// format with doubled braces, `{{"name": <function-name>, ...}}`, a `str.format` escape left
/// inside a Jinja string, where it renders as is; the model then copies the doubled braces
/// and its call is not recognised. Rendered with single braces, as the calls themselves are
/// written (`<tool_call>\n{"name": ...}`).
fn fix_known_quirks(source: &str) -> String {
    source.replace(
        r#"{{\"name\": <function-name>, \"arguments\": <args-json-object>}}"#,
        r#"{\"name\": <function-name>, \"arguments\": <args-json-object>}"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let out = t
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
                true,
            )
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn doubled_braces_in_a_tool_call_example_render_single() {
        let source = r#"{{- "<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>" }}"#;
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("hi")], false).unwrap(),
            "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}{{ messages[0].content.strip() }}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("  hi  ")], false).unwrap(),
            "hi"
        );
        let err = t
            .render(&[ChatMessage::assistant("x")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("first message must be from the user"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("chat template:"), "{err}");
    }

    #[test]
    fn a_template_that_loops_for_ever_runs_out_of_fuel() {
        // 10^8 iterations: minijinja's `range` stops at 10^5 items, so two nested loops.
        let t = ChatTemplate::new(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{{ messages[0].content }}",
            "",
            "",
        )
        .unwrap();
        let err = t
            .render(&[ChatMessage::user("hi")], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 5000000 steps"), "{err}");
        // A real conversation of hundreds of turns stays well inside the budget.
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let long: Vec<_> = (0..2000)
            .map(|i| ChatMessage::user(format!("turn {i}")))
            .collect();
        assert!(t.render(&long, true).is_ok());
    }

    #[test]
    fn a_template_that_writes_gigabytes_is_stopped_at_the_bound() {
        // 10 × 100 MB (minijinja's largest repeated string): 1 GB if nothing stopped it.
        let t = ChatTemplate::new(
            "{% for i in range(10) %}{{ 'x' * 100000000 }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let err = t
            .render(&[ChatMessage::user("hi")], true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("passed {} bytes", output_limit(2))),
            "{err}"
        );
        // Many small writes are counted too.
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{{ messages[0].content * 1000 }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let err = t
            .render(&[ChatMessage::user("ab")], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bytes"), "{err}");
        // A long but honest conversation is rendered in full.
        let big = "y".repeat(8 << 20);
        let out = ChatTemplate::new(CHATML, "", "")
            .unwrap()
            .render(&[ChatMessage::user(big.clone())], true)
            .unwrap();
        assert!(out.contains(&big));
    }
}
