//! What every task's turn does: an agent's answer (or ReAct loop), the messages that
//! carry it, and the budget it spends.

use symphony_agents::{react, AgentConfig, Approval, CallMode};
use symphony_types::ChatMessage;

use super::members::Members;
use super::spec::{Budget, CrewTask, MAX_STEPS_PER_TASK};
use super::state::{CrewRun, Usage};
use crate::acl::{Message, Performative};

/// What of the budget is spent, if any of it is.
pub(super) fn spent(budget: &Budget, usage: &Usage) -> Option<String> {
    if usage.steps >= budget.max_steps {
        Some(format!("{} of {} steps", usage.steps, budget.max_steps))
    } else if usage.tokens() >= budget.max_tokens {
        Some(format!(
            "{} of {} tokens",
            usage.tokens(),
            budget.max_tokens
        ))
    } else {
        None
    }
}

pub(super) fn message(
    run: &CrewRun,
    act: Performative,
    from: &str,
    to: &str,
    content: &str,
) -> Message {
    Message::new(act, from)
        .to(to)
        .content(content)
        .protocol("fipa-request")
        .conversation(&run.id)
}

pub(super) fn emit(run: &mut CrewRun, message: Message, on_message: &mut dyn FnMut(&Message)) {
    on_message(&message);
    run.messages.push(message);
}

/// `agent` does the task: one answer, or a ReAct loop when it has tools.
pub(super) fn perform(
    run: &mut CrewRun,
    members: &mut Members<'_>,
    agent: &str,
    task: &CrewTask,
    prompt: &str,
    budget: &Budget,
) -> Result<String, String> {
    let profile = &run.spec.agents[agent];
    let mut system = format!(
        "You are the crew's {}. Your goal: {}",
        profile.role, profile.goal
    );
    if let Some(backstory) = &profile.backstory {
        system.push_str(&format!("\n{backstory}"));
    }
    let chat = members
        .chats
        .get_mut(agent)
        .ok_or_else(|| format!("no model for agent `{agent}`"))?;
    let tools = &members.tools[agent];
    if tools.specs().is_empty() {
        let messages = [ChatMessage::system(system), ChatMessage::user(prompt)];
        let turn = chat
            .turn(&messages, &[], CallMode::Answer)
            .map_err(|e| e.to_string())?;
        run.usage.steps += 1;
        run.usage.prompt_tokens += turn.prompt_tokens;
        run.usage.completion_tokens += turn.completion_tokens;
        return Ok(turn.content.trim().to_string());
    }
    let config = AgentConfig {
        instructions: system,
        tool_choice: profile.tool_choice,
        max_steps: profile
            .max_steps
            .unwrap_or(MAX_STEPS_PER_TASK)
            .min(MAX_STEPS_PER_TASK)
            .min(budget.max_steps.saturating_sub(run.usage.steps))
            .max(1),
        ..AgentConfig::default()
    };
    let outcome = react(
        chat.as_mut(),
        tools,
        &config,
        prompt,
        &mut |_, _| Approval::Allow,
        &mut |_| {},
    )
    .map_err(|e| format!("{}: {e}", task.id))?;
    run.usage.steps += outcome.steps;
    run.usage.prompt_tokens += outcome.prompt_tokens;
    run.usage.completion_tokens += outcome.completion_tokens;
    Ok(outcome.answer.trim().to_string())
}
