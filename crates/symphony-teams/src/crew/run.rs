//! Running a crew: each task, in dependency order, is a FIPA `request` to its agent and an
//! `inform` (or `failure`) back, every message reported as it is sent. The run's state is
//! saved after every task, so a run killed at any point resumes from the last finished one.

use serde_json::json;
use symphony_types::ChatMessage;

use super::act::{emit, message, spent};
use super::contract::{attempt, award};
use super::members::{CrewError, Members};
use super::spec::{Budget, CrewSpec, CrewTask, Process};
use super::state::{CrewRun, Status, TaskResult, CONDUCTOR};
use crate::acl::{Message, Performative};

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
        let prompt = task_prompt(run, task);
        let outcome = if task.candidates.is_empty() {
            let (asker, agent) = assign(run, &spec, members, task, &budget, on_message)?;
            let request =
                message(run, Performative::Request, &asker, &agent, &prompt).reply_with(&task.id);
            emit(run, request, on_message);
            attempt(
                run, members, &asker, &agent, task, &prompt, &budget, on_message,
            )
            .map(|output| (agent, output))
        } else {
            award(run, members, task, &prompt, &budget, on_message)
        };
        match outcome {
            Ok((agent, output)) => {
                run.result = Some(output.clone());
                run.results
                    .insert(task.id.clone(), TaskResult::Done { agent, output });
                save(run).map_err(CrewError::Save)?;
            }
            Err(error) => {
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
