//! The planner's side of plan-and-execute: the plan's JSON Schema and the one structured
//! turn that writes a plan, a plan made usable whatever the model wrote (ids renumbered,
//! no cycles), and a plan run's progress read back from its conversation (the plan and each
//! step's result are assistant messages named `plan` and `step N`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use symphony_types::ChatMessage;

use crate::error::Error;
use crate::registry::ToolRegistry;
use crate::run::{AgentConfig, Event, Harness, PlanStep, RunState};

/// A plan has at most this many steps.
pub const MAX_PLAN_STEPS: usize = 6;

const PLAN: &str = "plan";

/// One worked example in the planner's prompt: small models copy the shape of a plan far
/// better than they follow a description of it.
const PLAN_EXAMPLE: &str = "For example, for the task \"Which quarter sold more, q1.txt or \
q2.txt, and by how much?\" a good plan is: {\"steps\": [{\"id\": 1, \"task\": \"Read q1.txt \
and report its sales\", \"after\": []}, {\"id\": 2, \"task\": \"Read q2.txt and report its \
sales\", \"after\": []}, {\"id\": 3, \"task\": \"Subtract the smaller sales figure from the \
larger\", \"after\": [1, 2]}]}";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Plan {
    steps: Vec<PlanStep>,
}

fn plan_schema() -> Value {
    let id = json!({"type": "integer", "minimum": 1, "maximum": MAX_PLAN_STEPS});
    json!({
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_PLAN_STEPS,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": id,
                        "task": {"type": "string", "maxLength": 300},
                        "after": {"type": "array", "items": id, "maxItems": MAX_PLAN_STEPS - 1},
                    },
                    "required": ["id", "task", "after"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["steps"],
        "additionalProperties": false,
        // Spaced as models write JSON; small models lose the thread in compact JSON.
        "x-guidance": {"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "},
    })
}

/// Makes a plan usable whatever the model wrote: ids unique and numbered 1.., dependencies
/// only on steps listed earlier (so there is no cycle), empty tasks dropped.
pub(super) fn normalise(plan: Plan) -> Vec<PlanStep> {
    let mut renumbered: BTreeMap<u32, u32> = BTreeMap::new();
    let mut steps: Vec<PlanStep> = Vec::new();
    for step in plan.steps {
        if step.task.trim().is_empty() {
            continue;
        }
        let id = steps.len() as u32 + 1;
        let mut after: Vec<u32> = step
            .after
            .iter()
            .filter_map(|a| renumbered.get(a).copied())
            .collect();
        after.sort_unstable();
        after.dedup();
        renumbered.entry(step.id).or_insert(id);
        steps.push(PlanStep {
            id,
            task: step.task.trim().to_string(),
            after,
        });
    }
    steps
}

pub(super) fn step_name(id: u32) -> String {
    format!("step {id}")
}

/// The step id a message name gives, and whether the step failed (`step 2 failed`).
fn parse_step_name(name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix("step ")?;
    match rest.strip_suffix(" failed") {
        Some(id) => Some((id.parse().ok()?, true)),
        None => Some((rest.parse().ok()?, false)),
    }
}

/// What a plan run has done since its last plan: the plan, and each finished step's result
/// (`Err` for a failed step).
pub(super) struct Progress {
    pub(super) plan: Vec<PlanStep>,
    pub(super) results: BTreeMap<u32, Result<String, String>>,
    pub(super) plans_made: usize,
}

pub(super) fn progress(state: &RunState) -> Option<Progress> {
    let plans_made = state
        .messages
        .iter()
        .filter(|m| m.name.as_deref() == Some(PLAN))
        .count();
    let at = state
        .messages
        .iter()
        .rposition(|m| m.name.as_deref() == Some(PLAN))?;
    let plan: Plan = serde_json::from_str(&state.messages[at].content).ok()?;
    let mut results = BTreeMap::new();
    for m in &state.messages[at + 1..] {
        let Some((id, failed)) = m.name.as_deref().and_then(parse_step_name) else {
            continue;
        };
        let result = if failed {
            Err(m.content.clone())
        } else {
            Ok(m.content.clone())
        };
        results.insert(id, result);
    }
    Some(Progress {
        plan: plan.steps,
        results,
        plans_made,
    })
}

/// Everything finished so far, in every plan of the run, for prompts.
pub(super) fn done_so_far(state: &RunState) -> Vec<String> {
    let mut tasks: BTreeMap<u32, String> = BTreeMap::new();
    let mut done = Vec::new();
    for m in &state.messages {
        match m.name.as_deref() {
            Some(PLAN) => {
                if let Ok(plan) = serde_json::from_str::<Plan>(&m.content) {
                    tasks = plan.steps.into_iter().map(|s| (s.id, s.task)).collect();
                }
            }
            Some(name) => {
                let Some((id, failed)) = parse_step_name(name) else {
                    continue;
                };
                let task = tasks.get(&id).map_or("?", String::as_str);
                let outcome = if failed { "FAILED: " } else { "" };
                done.push(format!("- {task} → {outcome}{}", m.content.trim()));
            }
            _ => {}
        }
    }
    done
}

fn tool_list(tools: &ToolRegistry) -> String {
    tools
        .specs()
        .iter()
        .map(|s| {
            format!(
                "- {}: {}",
                s.name,
                s.description.as_deref().unwrap_or("(no description)")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks for a plan (again, after a failed step, told what is done) and records it in the
/// run's conversation. `config` is the run's own (its instructions as the run started).
pub(super) fn make_plan(
    h: &mut Harness<'_, '_>,
    config: &AgentConfig,
    state: &mut RunState,
) -> Result<(), Error> {
    let done = done_so_far(state);
    let done = if done.is_empty() {
        String::new()
    } else {
        format!(
            "Done so far (plan only what is still missing; a failed step needs another way):\n{}\n\n",
            done.join("\n")
        )
    };
    let request = format!(
        "Task: {}\n\nTools the steps can use:\n{}\n\n{done}Break the task into the fewest \
         steps that do it (at most {MAX_PLAN_STEPS}). Each step is one instruction for an \
         assistant with these tools. `after` lists the ids of the steps whose results a step \
         needs; steps that do not need each other's results leave it empty, so they can run \
         at the same time. Do not repeat a step.\n\n{PLAN_EXAMPLE}\n\nReply in JSON.",
        state.task,
        tool_list(h.tools),
    );
    let context = vec![
        ChatMessage::system(format!(
            "{}\nYou plan before acting: you write plans, not answers.",
            config.instructions
        )),
        ChatMessage::user(request),
    ];
    let turn = h.model.structured(&context, &plan_schema())?;
    state.count_turn(&turn);
    let steps = match serde_json::from_str::<Plan>(&turn.content) {
        Ok(plan) => normalise(plan),
        Err(_) => Vec::new(),
    };
    // A plan cut off or empty: the task itself is the one step.
    let steps = if steps.is_empty() {
        vec![PlanStep {
            id: 1,
            task: state.task.clone(),
            after: Vec::new(),
        }]
    } else {
        steps
    };
    let mut message = ChatMessage::assistant(
        serde_json::to_string(&Plan {
            steps: steps.clone(),
        })
        .expect("a plan serialises"),
    );
    message.name = Some(PLAN.to_string());
    state.messages.push(message);
    h.checkpoint.save(state)?;
    (h.on_event)(&Event::Plan {
        step: state.step,
        steps,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: u32, task: &str, after: &[u32]) -> Value {
        json!({"id": id, "task": task, "after": after})
    }

    #[test]
    fn any_plan_is_made_acyclic_with_unique_ids() {
        let plan: Plan = serde_json::from_value(json!({"steps": [
            step(3, "a", &[2]),
            step(3, "b", &[3, 3]),
            step(5, " ", &[]),
            step(1, "c", &[3, 4, 1]),
        ]}))
        .unwrap();
        let steps = normalise(plan);
        let shape: Vec<(u32, &str, Vec<u32>)> = steps
            .iter()
            .map(|s| (s.id, s.task.as_str(), s.after.clone()))
            .collect();
        // 2 is not listed before 'a': dropped. 3 means the first step called 3. The empty
        // task is dropped; 'c' refers to itself (1 was not listed before it): dropped.
        assert_eq!(
            shape,
            [(1, "a", vec![]), (2, "b", vec![1]), (3, "c", vec![1])]
        );
    }
}
