//! The tool-choice policy: what `tool_choice` (none / auto / required / a named function),
//! the offered tools and a reply format mean for decoding — the grammar that holds the
//! reply, whether it holds from the first token or only once a call starts, and whether
//! calls are read back out of the text. The server's APIs and the agents' turns both decide
//! it here, so a turn and a request with the same choice are constrained the same way.

use serde_json::json;
use symphony_types::ToolSpec;

use crate::constraint::{Constraint, Grammar};
use crate::tools::{
    tool_call_grammar, tool_call_grammar_auto, tool_call_or_json_grammar, NO_TOOL_CALL,
    TOOL_CALL_TRIGGERS,
};

/// Whether, and which, tools a reply may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The reply answers in words (or in the requested format); it cannot start a call.
    None,
    /// The model chooses between calling tools and answering.
    Auto,
    /// The reply calls at least one tool.
    Required,
    /// The reply calls this one function.
    Named(String),
}

/// Why a choice cannot be honoured with the tools and format given. The messages are the
/// ones clients see in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolChoiceError {
    #[error("tool_choice needs tools")]
    NeedsTools,
    #[error("tool_choice names '{0}', which is not in tools")]
    UnknownTool(String),
    /// A regex or Lark grammar cannot be combined with a call grammar.
    #[error("a regex or grammar applies to the reply only with tool_choice none")]
    FormatNeedsNone,
}

/// What a choice means for decoding.
#[derive(Debug, Clone, Default)]
pub struct ToolGrammar {
    /// The grammar the reply is held to, if any.
    pub grammar: Option<Grammar>,
    /// The grammar holds only once the reply starts a call (see [`TOOL_CALL_TRIGGERS`]),
    /// so the model may answer in free text instead.
    pub triggered: bool,
    /// Tool calls are read out of the reply.
    pub parse_calls: bool,
}

impl ToolGrammar {
    /// The compiled grammar as it applies to the reply: armed by the call triggers when the
    /// model may also answer freely.
    pub fn arm(&self, compiled: Constraint) -> Constraint {
        if self.triggered {
            compiled.triggered_by(TOOL_CALL_TRIGGERS)
        } else {
            compiled
        }
    }
}

/// Decides the grammar for `choice` over `tools`, with `format` the grammar the answer
/// itself must follow when it is not a call. `parallel` lets one reply make several calls.
///
/// With `ToolChoice::None` the tools may still be in the prompt (a conversation keeps the
/// same prompt, and so its cached prefix, from turn to turn): the reply is then held to
/// `format`, or to a reply that does not open with a call.
pub fn tool_grammar(
    tools: &[ToolSpec],
    choice: &ToolChoice,
    format: Option<Grammar>,
    parallel: bool,
) -> Result<ToolGrammar, ToolChoiceError> {
    if tools.is_empty() && *choice != ToolChoice::None {
        return Err(ToolChoiceError::NeedsTools);
    }
    Ok(match choice {
        ToolChoice::None if !tools.is_empty() => ToolGrammar {
            grammar: Some(format.unwrap_or_else(|| Grammar::Regex(NO_TOOL_CALL.into()))),
            ..ToolGrammar::default()
        },
        ToolChoice::None => ToolGrammar {
            grammar: format,
            ..ToolGrammar::default()
        },
        ToolChoice::Auto => {
            let grammar = match &format {
                None => tool_call_grammar_auto(tools, parallel),
                Some(Grammar::JsonSchema(answer)) => {
                    tool_call_or_json_grammar(tools, parallel, answer)
                }
                Some(Grammar::JsonObject) => {
                    tool_call_or_json_grammar(tools, parallel, &json!({"type": "object"}))
                }
                Some(Grammar::Regex(_) | Grammar::Lark(_)) => {
                    return Err(ToolChoiceError::FormatNeedsNone)
                }
            };
            ToolGrammar {
                triggered: format.is_none(),
                grammar: Some(grammar),
                parse_calls: true,
            }
        }
        ToolChoice::Required => ToolGrammar {
            grammar: Some(tool_call_grammar(tools, parallel)),
            triggered: false,
            parse_calls: true,
        },
        ToolChoice::Named(name) => {
            let Some(tool) = tools.iter().find(|t| &t.name == name) else {
                return Err(ToolChoiceError::UnknownTool(name.clone()));
            };
            ToolGrammar {
                grammar: Some(tool_call_grammar(std::slice::from_ref(tool), false)),
                triggered: false,
                parse_calls: true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> ToolSpec {
        serde_json::from_value(json!({"name": name, "parameters": {"type": "object"}})).unwrap()
    }

    #[test]
    fn choices_without_tools_are_refused_except_none() {
        for choice in [
            ToolChoice::Auto,
            ToolChoice::Required,
            ToolChoice::Named("f".into()),
        ] {
            assert_eq!(
                tool_grammar(&[], &choice, None, true).unwrap_err(),
                ToolChoiceError::NeedsTools
            );
        }
        let g = tool_grammar(&[], &ToolChoice::None, None, true).unwrap();
        assert!(g.grammar.is_none() && !g.parse_calls);
    }

    #[test]
    fn none_with_tools_forbids_a_call() {
        let g = tool_grammar(&[tool("f")], &ToolChoice::None, None, true).unwrap();
        assert!(matches!(g.grammar, Some(Grammar::Regex(r)) if r == NO_TOOL_CALL));
        assert!(!g.triggered && !g.parse_calls);
    }

    #[test]
    fn auto_is_triggered_only_without_a_format() {
        let tools = [tool("f")];
        let free = tool_grammar(&tools, &ToolChoice::Auto, None, true).unwrap();
        assert!(free.triggered && free.parse_calls);
        let json = tool_grammar(&tools, &ToolChoice::Auto, Some(Grammar::JsonObject), true);
        assert!(!json.unwrap().triggered);
        let regex = tool_grammar(
            &tools,
            &ToolChoice::Auto,
            Some(Grammar::Regex("a".into())),
            true,
        );
        assert_eq!(regex.unwrap_err(), ToolChoiceError::FormatNeedsNone);
    }

    #[test]
    fn a_named_choice_must_be_offered() {
        let tools = [tool("f")];
        let e = tool_grammar(&tools, &ToolChoice::Named("g".into()), None, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tool_choice names 'g', which is not in tools"
        );
        let g = tool_grammar(&tools, &ToolChoice::Named("f".into()), None, true).unwrap();
        assert!(g.parse_calls && !g.triggered);
    }
}
