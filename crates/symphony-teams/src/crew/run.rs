//! Running a crew: each task, in dependency order, is a FIPA `request` to its agent and an
//! `inform` (or `failure`) back, every message reported as it is sent. The run's state is
//! saved after every task, so a run killed at any point resumes from the last finished one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use symphony_agents::{react, AgentConfig, Approval, CallMode, ChatModel, ToolRegistry};
use symphony_types::ChatMessage;

use super::spec::{Budget, CrewSpec, CrewTask, Process, MAX_STEPS_PER_TASK};
use crate::acl::{Message, Performative};

/// Who asks for the tasks of a sequential crew (and of a hierarchical one without a
/// manager agent).
pub const CONDUCTOR: &str = "conductor";

/// A crew run as saved: enough to resume it and to show everything it said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrewRun {
    pub id: String,
    pub goal: String,
    /// The crew as it was when the run started: a resumed run finishes what it began.
    pub spec: CrewSpec,
    /// Finished tasks by id.
    pub results: BTreeMap<String, TaskResult>,
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub status: Status,
    /// The last finished task's output.
    pub result: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskResult {
    Done {
        agent: String,
        output: String,
    },
    /// Its condition did not hold.
    Skipped {
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Model turns.
    pub steps: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    fn tokens(&self) -> usize {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    Running,
    Completed,
    /// Stopped by its budget with tasks left.
    OutOfBudget {
        spent: String,
    },
    Failed {
        task: String,
        error: String,
    },
}

impl CrewRun {
    pub fn new(id: impl Into<String>, spec: CrewSpec, goal: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            goal: goal.into(),
            spec,
            results: BTreeMap::new(),
            messages: Vec::new(),
            usage: Usage::default(),
            status: Status::Running,
            result: None,
        }
    }
}

/// The crew's agents as running things: a chat model each (several may share one
/// underlying model) and their tools.
pub struct Members<'m> {
    chats: BTreeMap<String, Box<dyn ChatModel + 'm>>,
    tools: BTreeMap<String, ToolRegistry>,
}

impl<'m> Members<'m> {
    pub fn new() -> Self {
        Self {
            chats: BTreeMap::new(),
            tools: BTreeMap::new(),
        }
    }

    /// Adds agent `name` (the manager too, for hierarchical crews).
    pub fn add(&mut self, name: &str, chat: Box<dyn ChatModel + 'm>, tools: ToolRegistry) {
        self.chats.insert(name.to_string(), chat);
        self.tools.insert(name.to_string(), tools);
    }
}

impl Default for Members<'_> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrewError {
    #[error("no model for agent `{0}`")]
    NoMember(String),
    #[error("saving the run: {0}")]
    Save(String),
}

/// Runs (or resumes) `run` to its end: every task done or skipped, the budget spent, or a
/// task failed. `save` is called after each task; `on_message` for each message as sent.
pub fn run_crew(
    run: &mut CrewRun,
    members: &mut Members<'_>,
    save: &mut dyn FnMut(&CrewRun) -> Result<(), String>,
    on_message: &mut dyn FnMut(&Message),
) -> Result<(), CrewError> {
    let spec = run.spec.clone();
    let budget = spec.budget.capped();
    run.status = Status::Running;
    let order = spec.order().expect("checked when the crew was read");
    for task in order {
        if run.results.contains_key(&task.id) {
            continue;
        }
        if let Some(spent) = spent(&budget, &run.usage) {
            run.status = Status::OutOfBudget { spent };
            save(run).map_err(CrewError::Save)?;
            return Ok(());
        }
        if let Some(when) = &task.when {
            let input = match run.results.get(&when.task) {
                Some(TaskResult::Done { output, .. }) => output.as_str(),
                _ => "",
            };
            if !when.holds(input) {
                let reason = format!(
                    "`{}` {} `{}`",
                    when.task,
                    if when.not { "contains" } else { "lacks" },
                    when.contains
                );
                run.results
                    .insert(task.id.clone(), TaskResult::Skipped { reason });
                save(run).map_err(CrewError::Save)?;
                continue;
            }
        }
        let (asker, agent) = assign(run, &spec, members, task, &budget, on_message)?;
        let prompt = task_prompt(run, task);
        let request =
            message(run, Performative::Request, &asker, &agent, &prompt).reply_with(&task.id);
        emit(run, request, on_message);
        match perform(run, members, &agent, task, &prompt, &budget) {
            Ok(output) => {
                let mut inform = message(run, Performative::Inform, &agent, &asker, &output);
                inform.in_reply_to = Some(task.id.clone());
                emit(run, inform, on_message);
                run.result = Some(output.clone());
                run.results
                    .insert(task.id.clone(), TaskResult::Done { agent, output });
                save(run).map_err(CrewError::Save)?;
            }
            Err(error) => {
                let mut failure = message(run, Performative::Failure, &agent, &asker, &error);
                failure.in_reply_to = Some(task.id.clone());
                emit(run, failure, on_message);
                run.status = Status::Failed {
                    task: task.id.clone(),
                    error,
                };
                save(run).map_err(CrewError::Save)?;
                return Ok(());
            }
        }
    }
    run.status = Status::Completed;
    save(run).map_err(CrewError::Save)?;
    Ok(())
}

/// What of the budget is spent, if any of it is.
fn spent(budget: &Budget, usage: &Usage) -> Option<String> {
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

fn message(run: &CrewRun, act: Performative, from: &str, to: &str, content: &str) -> Message {
    Message::new(act, from)
        .to(to)
        .content(content)
        .protocol("fipa-request")
        .conversation(&run.id)
}

fn emit(run: &mut CrewRun, message: Message, on_message: &mut dyn FnMut(&Message)) {
    on_message(&message);
    run.messages.push(message);
}

/// Who asks for `task` and who does it. A hierarchical crew's manager chooses the agent
/// (a structured turn naming one of them), for tasks that name none or always when the
/// crew says so by leaving `agent` out.
fn assign(
    run: &mut CrewRun,
    spec: &CrewSpec,
    members: &mut Members<'_>,
    task: &CrewTask,
    budget: &Budget,
    on_message: &mut dyn FnMut(&Message),
) -> Result<(String, String), CrewError> {
    if spec.process == Process::Sequential || task.agent.is_some() {
        let agent = task
            .agent
            .clone()
            .expect("checked: sequential tasks name an agent");
        let asker = spec
            .manager
            .clone()
            .unwrap_or_else(|| CONDUCTOR.to_string());
        return Ok((asker, agent));
    }
    let manager = spec
        .manager
        .clone()
        .unwrap_or_else(|| CONDUCTOR.to_string());
    let names: Vec<&String> = spec.agents.keys().filter(|n| **n != manager).collect();
    let roster: String = names
        .iter()
        .map(|n| {
            format!(
                "- {n}: {} ({})\n",
                spec.agents[*n].role, spec.agents[*n].goal
            )
        })
        .collect();
    let schema = json!({
        "type": "object",
        "properties": {"agent": {"enum": names}},
        "required": ["agent"],
        "additionalProperties": false
    });
    let messages = [
        ChatMessage::system(
            "You are the manager of a crew. Choose the one agent best suited to the task.",
        ),
        ChatMessage::user(format!(
            "Crew goal: {}\nTask: {}\n\nAgents:\n{roster}",
            run.goal,
            task.description.replace("{goal}", &run.goal)
        )),
    ];
    let chat = members
        .chats
        .get_mut(&manager)
        .ok_or_else(|| CrewError::NoMember(manager.clone()))?;
    let chosen =
        match (budget.max_steps > run.usage.steps).then(|| chat.structured(&messages, &schema)) {
            Some(Ok(turn)) => {
                run.usage.steps += 1;
                run.usage.prompt_tokens += turn.prompt_tokens;
                run.usage.completion_tokens += turn.completion_tokens;
                serde_json::from_str::<serde_json::Value>(&turn.content)
                    .ok()
                    .and_then(|v| v.get("agent").and_then(|a| a.as_str()).map(str::to_string))
            }
            _ => None,
        };
    // A manager that cannot choose leaves the task to the first agent on the roster.
    let agent = chosen.unwrap_or_else(|| names[0].clone());
    let mut note = message(
        run,
        Performative::Inform,
        &manager,
        CONDUCTOR,
        &format!("{} takes `{}`", agent, task.id),
    );
    note.in_reply_to = Some(task.id.clone());
    emit(run, note, on_message);
    Ok((manager, agent))
}

/// The task as its agent reads it: the instruction, what is expected, and the results of
/// the tasks it depends on.
fn task_prompt(run: &CrewRun, task: &CrewTask) -> String {
    let mut prompt = task.description.replace("{goal}", &run.goal);
    if let Some(expected) = &task.expected_output {
        prompt.push_str(&format!("\n\nExpected output: {expected}"));
    }
    let inputs: Vec<String> = task
        .depends_on
        .iter()
        .filter_map(|dep| match run.results.get(dep) {
            Some(TaskResult::Done { agent, output }) => {
                Some(format!("### {dep} (by {agent})\n{output}"))
            }
            _ => None,
        })
        .collect();
    if !inputs.is_empty() {
        prompt.push_str("\n\nResults of the tasks before yours:\n\n");
        prompt.push_str(&inputs.join("\n\n"));
    }
    prompt
}

/// `agent` does the task: one answer, or a ReAct loop when it has tools.
fn perform(
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
        max_steps: MAX_STEPS_PER_TASK
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
