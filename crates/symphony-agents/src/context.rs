//! The conversation a model sees, kept within a budget of its own tokens.
//!
//! Before each turn the prompt is measured exactly, with the model's tokenizer and chat
//! template ([`ChatModel::count_tokens`]). When it would pass the budget, the oldest turns
//! of the round (never the system prompt or the task) are replaced by notes the model
//! writes of them, read back as its own turn, keeping every fact they found; the most recent turns stay word for word.
//! The summary is part of the run's state, so a resumed run sees the same conversation, and
//! the whole transcript stays in the run store: only the model's view is compressed.

use symphony_types::{ChatMessage, Role, ToolSpec};

use crate::error::Error;
use crate::model::{CallMode, ChatModel};
use crate::run::{Event, RunState};
// The summary lives in the run's state; it is named here too, where it is written.
pub use crate::run::Summary;

/// Tokens kept free for the reply when the budget comes from the model's context length.
pub const REPLY_RESERVE: usize = 512;

const SUMMARY_INSTRUCTIONS: &str = "You take notes for an agent working on a task. From \
    the steps below, write down what the agent did and every fact it found that bears on the \
    task (numbers, names, values), exactly as given; leave out text that says nothing. One \
    note per line, each starting with \"- \".";

/// The prompt for the next turn, `extra` (messages not yet in the state) at its end, within
/// `budget` tokens: older turns are summarised first when it would not fit.
pub(crate) fn fit(
    model: &mut dyn ChatModel,
    state: &mut RunState,
    extra: &[ChatMessage],
    tools: &[ToolSpec],
    budget: Option<usize>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Vec<ChatMessage>, Error> {
    let view = |state: &RunState| {
        let mut context = state.context();
        context.extend(extra.iter().cloned());
        context
    };
    let context = view(state);
    let Some(budget) = budget else {
        return Ok(context);
    };
    let Some(tokens) = model.count_tokens(&context, tools)? else {
        return Ok(context);
    };
    if tokens <= budget {
        return Ok(context);
    }
    let head = state.head_end();
    let from = state.current_summary().map_or(head, |s| s.upto);
    // Keep the most recent turns that fit in three quarters of the budget (the summary and
    // the turns to come need the rest); a turn starts at an assistant message, so a call is
    // never parted from its result.
    let mut upto = state.messages.len();
    for i in (from..state.messages.len()).rev() {
        if state.messages[i].role != Role::Assistant {
            continue;
        }
        let mut trial = state.clone();
        trial.summary = Some(Summary {
            round_start: state.round_start,
            upto: i,
            text: String::new(),
        });
        match model.count_tokens(&view(&trial), tools)? {
            Some(n) if n <= budget * 3 / 4 => upto = i,
            _ => break,
        }
    }
    if upto <= from {
        return Err(Error::Context(format!(
            "the prompt takes {tokens} tokens, more than the budget of {budget}, and the \
             turns that could be summarised do not make room (raise `context_tokens`)"
        )));
    }
    let mut text = summarise(model, state, from, upto, budget)?;
    let summarised = upto - from;
    // A summary that runs long (small models repeat themselves) is cut to fit.
    let (context, after) = loop {
        state.summary = Some(Summary {
            round_start: state.round_start,
            upto,
            text: text.clone(),
        });
        let context = view(state);
        let after = model.count_tokens(&context, tools)?.unwrap_or(0);
        if after <= budget || text.len() < 100 {
            break (context, after);
        }
        let mut cut = text.len() * 3 / 4;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [...]");
    };
    on_event(&Event::Summary {
        step: state.step + 1,
        messages: summarised,
        tokens_before: tokens,
        tokens_after: after,
        text,
    });
    if after > budget {
        return Err(Error::Context(format!(
            "even with the earlier steps summarised the prompt takes {after} tokens, more \
             than the budget of {budget} (raise `context_tokens`)"
        )));
    }
    Ok(context)
}

/// The model's summary of `state.messages[from..upto]` (and of the summary before them).
fn summarise(
    model: &mut dyn ChatModel,
    state: &mut RunState,
    from: usize,
    upto: usize,
    budget: usize,
) -> Result<String, Error> {
    let earlier = state.current_summary().map(|s| s.text.clone());
    let task = state
        .messages
        .get(state.head_end().saturating_sub(1))
        .map_or(state.task.clone(), |m| m.content.clone());
    let steps = render(&state.messages[from..upto]);
    // The steps as written, cut (from the middle of long results) until the request fits.
    let mut limit = steps.len();
    loop {
        let mut request = format!("The task: {task}\n\n");
        if let Some(earlier) = &earlier {
            request.push_str(&format!("Summary of the steps before these: {earlier}\n\n"));
        }
        request.push_str(&format!(
            "The steps:\n{}\n\nWrite the notes.",
            clip(&steps, limit)
        ));
        let messages = [
            ChatMessage::system(SUMMARY_INSTRUCTIONS),
            ChatMessage::user(request),
        ];
        let fits = match model.count_tokens(&messages, &[])? {
            Some(n) => n + REPLY_RESERVE <= budget.max(2 * REPLY_RESERVE),
            None => true,
        };
        if fits || limit < 200 {
            let turn = model.turn(&messages, &[], CallMode::Answer)?;
            state.prompt_tokens += turn.prompt_tokens;
            state.completion_tokens += turn.completion_tokens;
            // Each line once: small models fall into repeating themselves.
            let mut seen = std::collections::HashSet::new();
            let lines: Vec<&str> = turn
                .content
                .lines()
                .filter(|l| l.trim().is_empty() || seen.insert(l.trim()))
                .collect();
            return Ok(lines.join("\n").trim().to_string());
        }
        limit = limit * 3 / 4;
    }
}

/// Turns as plain text: calls with their arguments, results under them.
fn render(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        match m.role {
            Role::Assistant => {
                if !m.content.trim().is_empty() {
                    out.push_str(&format!("Agent: {}\n", m.content.trim()));
                }
                for c in &m.tool_calls {
                    out.push_str(&format!("Agent called {} {}\n", c.name, c.arguments));
                }
            }
            Role::Tool => {
                let name = m.name.as_deref().unwrap_or("the tool");
                out.push_str(&format!("Result of {name}: {}\n", m.content.trim()));
            }
            _ => out.push_str(&format!("{}: {}\n", m.role.as_str(), m.content.trim())),
        }
    }
    out
}

/// `text` cut to about `limit` bytes, keeping its beginning and end.
fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let keep = limit / 2;
    let mut head_end = keep;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - keep;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[... {} characters left out ...]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use symphony_types::ToolCall;

    use super::*;
    use crate::model::ModelTurn;
    use crate::run::AgentConfig;

    /// Counts words as tokens; answers a summary request with the facts it was given.
    #[derive(Default)]
    struct Notes {
        requests: Vec<String>,
    }

    fn words(messages: &[ChatMessage]) -> usize {
        messages
            .iter()
            .map(|m| {
                m.content.split_whitespace().count()
                    + m.tool_calls
                        .iter()
                        .map(|c| 1 + c.arguments.to_string().split_whitespace().count())
                        .sum::<usize>()
            })
            .sum()
    }

    impl ChatModel for Notes {
        fn turn(
            &mut self,
            messages: &[ChatMessage],
            _: &[ToolSpec],
            mode: CallMode,
        ) -> Result<ModelTurn, crate::Error> {
            assert_eq!(mode, CallMode::Answer);
            assert_eq!(messages[0].content, SUMMARY_INSTRUCTIONS);
            let request = messages[1].content.clone();
            let found: Vec<&str> = request
                .lines()
                .filter_map(|l| l.strip_prefix("Result of calculator: "))
                .filter_map(|r| r.split_whitespace().next())
                .collect();
            self.requests.push(request.clone());
            Ok(ModelTurn {
                content: format!("The calculator gave {}.", found.join(" and ")),
                prompt_tokens: words(messages),
                completion_tokens: 5,
                ..ModelTurn::default()
            })
        }

        fn structured(&mut self, _: &[ChatMessage], _: &Value) -> Result<ModelTurn, crate::Error> {
            unreachable!()
        }

        fn count_tokens(
            &self,
            messages: &[ChatMessage],
            _: &[ToolSpec],
        ) -> Result<Option<usize>, crate::Error> {
            Ok(Some(words(messages)))
        }
    }

    /// A turn calling the calculator, and its result padded to `words` words.
    fn add_turn(state: &mut RunState, n: usize, result: &str, words: usize) {
        let mut call = ChatMessage::assistant("");
        call.tool_calls = vec![ToolCall {
            id: format!("call_{n}"),
            name: "calculator".into(),
            arguments: json!({"expression": format!("{n}+{n}")}),
        }];
        let padding = " pad".repeat(words.saturating_sub(1));
        let mut out = ChatMessage::new(Role::Tool, format!("{result}{padding}"));
        out.tool_call_id = Some(format!("call_{n}"));
        out.name = Some("calculator".into());
        state.messages.extend([call, out]);
        state.step += 1;
    }

    #[test]
    fn older_turns_are_summarised_to_fit_the_budget_and_the_recent_ones_kept() {
        let config = AgentConfig {
            instructions: "Be exact.".into(),
            ..AgentConfig::default()
        };
        let mut state = RunState::new(&config, "Add up what the calculator gives.");
        for (n, result) in [(1, "41"), (2, "17"), (3, "99")] {
            add_turn(&mut state, n, result, 20);
        }
        let mut model = Notes::default();
        let mut events = Vec::new();
        let full = words(&state.context());
        assert!(full > 60, "{full}");
        // Under budget: nothing changes.
        let context = fit(&mut model, &mut state, &[], &[], Some(full), &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
        assert_eq!(context, state.messages);
        assert!(state.summary.is_none() && model.requests.is_empty());

        let context = fit(&mut model, &mut state, &[], &[], Some(60), &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
        assert!(words(&context) <= 60, "{context:?}");
        // The system prompt, the task, the notes, then the last turn word for word.
        assert_eq!(context[0], state.messages[0]);
        assert_eq!(context[1], state.messages[1]);
        assert_eq!(context[2].role, Role::Assistant);
        assert!(
            context[2]
                .content
                .ends_with("The calculator gave 41 and 17."),
            "{}",
            context[2].content
        );
        assert_eq!(context[3..], state.messages[6..]);
        let summary = state.summary.clone().unwrap();
        assert_eq!((summary.round_start, summary.upto), (0, 6));
        assert!(model.requests[0].contains("The task: Add up what the calculator gives."));
        assert!(model.requests[0].contains("Agent called calculator {\"expression\":\"1+1\"}"));
        assert!(matches!(
            events.as_slice(),
            [Event::Summary { messages: 4, tokens_before, tokens_after, .. }]
                if *tokens_before == full && *tokens_after == words(&context)
        ));
        // The state holds the summary: a resumed run sees the same prompt.
        let stored: RunState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(stored.context(), context);

        // Later, the summary is summarised along with the turns after it.
        add_turn(&mut state, 4, "5", 20);
        add_turn(&mut state, 5, "6", 20);
        let context = fit(&mut model, &mut state, &[], &[], Some(60), &mut |_| {}).unwrap();
        assert!(model.requests[1]
            .contains("Summary of the steps before these: The calculator gave 41 and 17."));
        assert!(model.requests[1].contains("Result of calculator: 99"));
        assert_eq!(state.summary.as_ref().unwrap().upto, 10);
        assert_eq!(context[3..], state.messages[10..]);
    }

    #[test]
    fn a_prompt_that_cannot_fit_is_an_error_that_says_so() {
        let mut state = RunState::new(&AgentConfig::default(), "Add up what the calculator gives.");
        add_turn(&mut state, 1, "41", 200);
        let e = fit(
            &mut Notes::default(),
            &mut state,
            &[],
            &[],
            Some(30),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than the budget of 30"), "{e}");
    }
}
