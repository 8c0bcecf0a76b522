//! Within a crew: a task done by one agent and checked ([`attempt`]), and a task put out
//! to contract among candidates ([`award`]): the coordinator calls for proposals, each
//! candidate bids (a structured turn: how sure it is, how many tokens it expects to
//! write), the bid that scores best against the candidate's track record wins, and a
//! winner that fails is replaced by a new round among the others. Every outcome goes into
//! the track record, so later runs send the work to whoever delivers.

use serde_json::json;
use symphony_agents::tools::RunPython;
use symphony_types::ChatMessage;

use super::act::{emit, message, perform, spent};
use super::members::Members;
use super::spec::{Budget, Check, CrewTask};
use super::state::{CrewRun, CONDUCTOR};
use crate::acl::{AgentId, Message, Performative};
use crate::delegation::{score, Bid};

/// A bid's cost is its estimated tokens in units of this many: a small model's guess at
/// its answer's length should tip close bids, not outweigh a track record.
const TOKENS_PER_COST: f64 = 10_000.0;

/// Tries an agent gets at a task whose result fails its check.
pub const MAX_TRIES: usize = 3;

/// The temperature a retry samples at: decoded greedily again, a model told what failed
/// often wrote the same program token for token.
const RETRY_TEMPERATURE: f32 = 0.7;

/// `agent` does `task` for `asker` (whose request has been sent), answering with an
/// `inform` or a `failure`; a result that fails the task's check is `disconfirm`ed with
/// what went wrong and asked for again, up to [`MAX_TRIES`] times in all.
#[allow(clippy::too_many_arguments)]
pub(super) fn attempt(
    run: &mut CrewRun,
    members: &mut Members<'_>,
    asker: &str,
    agent: &str,
    task: &CrewTask,
    prompt: &str,
    budget: &Budget,
    on_message: &mut dyn FnMut(&Message),
) -> Result<String, String> {
    let decoding = members
        .chat(agent)
        .and_then(|chat| chat.sampling_mut().map(|s| s.clone()));
    let result = attempt_tries(run, members, asker, agent, task, prompt, budget, on_message);
    // Retries sampled; the agent's next task decodes as it did before.
    if let (Some(decoding), Some(chat)) = (decoding, members.chat(agent)) {
        if let Some(sampling) = chat.sampling_mut() {
            *sampling = decoding;
        }
    }
    result
}

/// [`attempt`]'s tries.
#[allow(clippy::too_many_arguments)]
fn attempt_tries(
    run: &mut CrewRun,
    members: &mut Members<'_>,
    asker: &str,
    agent: &str,
    task: &CrewTask,
    prompt: &str,
    budget: &Budget,
    on_message: &mut dyn FnMut(&Message),
) -> Result<String, String> {
    let mut prompt = prompt.to_string();
    for tries in 1.. {
        let output = match perform(run, members, agent, task, &prompt, budget) {
            Ok(output) => output,
            Err(error) => {
                let mut failure = message(run, Performative::Failure, agent, asker, &error);
                failure.in_reply_to = Some(task.id.clone());
                emit(run, failure, on_message);
                return Err(error);
            }
        };
        let mut inform = message(run, Performative::Inform, agent, asker, &output);
        inform.in_reply_to = Some(task.id.clone());
        emit(run, inform, on_message);
        let Some(check) = task.check else {
            return Ok(output);
        };
        let (verdict, code) = match check {
            Check::Python => check_python(&output),
        };
        let act = if verdict.is_ok() {
            Performative::Confirm
        } else {
            Performative::Disconfirm
        };
        let report = match &verdict {
            Ok(report) => format!("the program ran and its checks passed:\n{report}"),
            Err(report) => format!("the program failed:\n{report}"),
        };
        let mut answer = message(run, act, asker, agent, &report);
        answer.in_reply_to = Some(task.id.clone());
        emit(run, answer, on_message);
        if verdict.is_ok() {
            // The result is the program that passed, as it ran.
            return Ok(format!("```python\n{}\n```", code.trim_end()));
        }
        if tries >= MAX_TRIES {
            return Err(format!(
                "its result failed the check {tries} times: {report}"
            ));
        }
        if let Some(spent) = spent(budget, &run.usage) {
            return Err(format!(
                "its result failed the check and the budget is spent ({spent})"
            ));
        }
        prompt = retry_prompt(&prompt, &code, &report);
        if let Some(sampling) = members.chat(agent).and_then(|chat| chat.sampling_mut()) {
            sampling.temperature = sampling.temperature.max(RETRY_TEMPERATURE);
            // Seeded by the try: a resumed run draws the same retry again.
            sampling.seed = tries as u64;
        }
        let again = message(run, Performative::Request, asker, agent, &prompt).reply_with(format!(
            "{}#try{}",
            task.id,
            tries + 1
        ));
        emit(run, again, on_message);
    }
    unreachable!("the loop returns")
}

/// The request again, with the program that failed and why. The results of earlier tasks
/// are left out: a small model fixing its program does better with less to read.
fn retry_prompt(prompt: &str, code: &str, report: &str) -> String {
    let request = prompt
        .split_once("\n\nResults of the tasks before yours:")
        .map_or(prompt, |(head, _)| head);
    let request = request
        .split_once("\n\nYour program was:\n")
        .map_or(request, |(head, _)| head);
    format!(
        "{request}\n\nYour program was:\n```python\n{}\n```\nWhen run, {report}\nFix it and \
         answer with the whole corrected program only, ending with asserts that test it.",
        code.trim_end()
    )
}

/// Runs the program in `output` in the sandbox: `Ok` with what it printed when it exits
/// 0, `Err` with why not. Also gives the program it ran.
pub fn check_python(output: &str) -> (Result<String, String>, String) {
    let code = python_program(output).to_string();
    if code.trim().is_empty() {
        return (Err("the answer holds no program".into()), code);
    }
    // A program that checks nothing passes trivially: the tests are part of the task.
    if !code.contains("assert") {
        return (
            Err(
                "the program has no tests: end it with asserts that check what the request asks"
                    .into(),
            ),
            code,
        );
    }
    let verdict = match RunPython::default().execute(&code) {
        Ok(run) if run.passed() => Ok(run.report()),
        Ok(run) => Err(run.report()),
        Err(e) => Err(e.to_string()),
    };
    (verdict, code)
}

/// The last fenced code block (```python, ```py or bare ```), or all of `text` when it
/// has none.
pub fn python_program(text: &str) -> &str {
    let mut last = None;
    let mut rest = text;
    let mut offset = 0;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(newline) = after.find('\n') else {
            break;
        };
        let language = after[..newline].trim();
        let body = &after[newline + 1..];
        let Some(close) = body.find("```") else {
            // An unclosed block (a truncated answer): take it to the end.
            if matches!(language, "" | "python" | "py" | "python3") {
                last = Some(body);
            }
            break;
        };
        if matches!(language, "" | "python" | "py" | "python3") {
            last = Some(&body[..close]);
        }
        let consumed = open + 3 + newline + 1 + close + 3;
        offset += consumed;
        rest = &text[offset..];
    }
    last.unwrap_or(text)
}

/// Puts `task` out to contract among its candidates; the winner's result, and who it was.
pub(super) fn award(
    run: &mut CrewRun,
    members: &mut Members<'_>,
    task: &CrewTask,
    prompt: &str,
    budget: &Budget,
    on_message: &mut dyn FnMut(&Message),
) -> Result<(String, String), String> {
    let coordinator = run
        .spec
        .coordinator
        .clone()
        .unwrap_or_else(|| CONDUCTOR.to_string());
    let kind = task.kind.clone().unwrap_or_else(|| task.id.clone());
    let mut left = task.candidates.clone();
    let mut failures = Vec::new();
    for round in 1.. {
        if left.is_empty() {
            break;
        }
        if let Some(spent) = spent(budget, &run.usage) {
            failures.push(format!("the budget is spent ({spent})"));
            break;
        }
        let tag = format!("{}#{round}", task.id);
        let mut cfp = contract_message(run, Performative::CallForProposal, &coordinator, prompt)
            .reply_with(&tag);
        for candidate in &left {
            cfp = cfp.to(candidate.as_str());
        }
        emit(run, cfp, on_message);
        let mut bids = Vec::new();
        for candidate in left.clone() {
            let reply = match bid(run, members, &candidate, prompt) {
                Some(bid) => {
                    let content = json!({
                        "confidence": bid.confidence,
                        "estimated_tokens": (bid.cost * TOKENS_PER_COST).round(),
                    });
                    bids.push((candidate.clone(), bid));
                    contract_message(run, Performative::Propose, &candidate, &content.to_string())
                }
                None => contract_message(run, Performative::Refuse, &candidate, "no bid"),
            };
            emit(
                run,
                reply.to(coordinator.as_str()).in_reply_to(&tag),
                on_message,
            );
        }
        let scored: Vec<(String, f64)> = bids
            .iter()
            .map(|(agent, bid)| {
                let s = score(&members.record, &kind, &AgentId::new(agent.as_str()), bid);
                (agent.clone(), s)
            })
            .collect();
        let Some((winner, _)) = scored.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            failures.push(format!("round {round}: no bids"));
            break;
        };
        for (agent, s) in &scored {
            let (act, content) = if *agent == winner {
                (
                    Performative::AcceptProposal,
                    format!("awarded (score {s:.3})"),
                )
            } else {
                (
                    Performative::RejectProposal,
                    format!("not awarded (score {s:.3})"),
                )
            };
            let answer = contract_message(run, act, &coordinator, &content)
                .to(agent.as_str())
                .in_reply_to(&tag);
            emit(run, answer, on_message);
        }
        let outcome = attempt(
            run,
            members,
            &coordinator,
            &winner,
            task,
            prompt,
            budget,
            on_message,
        );
        members
            .record
            .record(&AgentId::new(winner.as_str()), &kind, outcome.is_ok());
        match outcome {
            Ok(output) => return Ok((winner, output)),
            Err(error) => {
                failures.push(format!("{winner}: {error}"));
                left.retain(|c| *c != winner);
            }
        }
    }
    Err(format!("no candidate delivered: {}", failures.join("; ")))
}

fn contract_message(run: &CrewRun, act: Performative, from: &str, content: &str) -> Message {
    Message::new(act, from)
        .content(content)
        .protocol("fipa-contract-net")
        .conversation(&run.id)
}

/// A candidate's bid: a structured turn in its own role, or `None` when it cannot give one.
fn bid(run: &mut CrewRun, members: &mut Members<'_>, agent: &str, prompt: &str) -> Option<Bid> {
    let profile = &run.spec.agents[agent];
    let system = format!(
        "You are the crew's {}. Your goal: {}",
        profile.role, profile.goal
    );
    let messages = [
        ChatMessage::system(system),
        ChatMessage::user(format!(
            "A task is up for contract:\n\n{prompt}\n\nBid for it: how likely you are to do it \
             well (confidence, 0 to 1), and how many tokens your answer will take."
        )),
    ];
    let schema = json!({
        "type": "object",
        "properties": {
            "confidence": {"type": "number"},
            "estimated_tokens": {"type": "integer"}
        },
        "required": ["confidence", "estimated_tokens"],
        "additionalProperties": false
    });
    let turn = members.chat(agent)?.structured(&messages, &schema).ok()?;
    run.usage.steps += 1;
    run.usage.prompt_tokens += turn.prompt_tokens;
    run.usage.completion_tokens += turn.completion_tokens;
    let value: serde_json::Value = serde_json::from_str(&turn.content).ok()?;
    let confidence = value.get("confidence")?.as_f64()?.clamp(0.0, 1.0);
    let tokens = value.get("estimated_tokens")?.as_f64()?.max(1.0);
    Some(Bid {
        cost: tokens / TOKENS_PER_COST,
        confidence,
        load: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_last_python_block() {
        let text = "Plan:\n```text\nnot code\n```\nFirst:\n```python\nx = 1\n```\nFinal:\n```python\nx = 2\nassert x == 2\n```\nDone.";
        assert_eq!(python_program(text), "x = 2\nassert x == 2\n");
        assert_eq!(python_program("print(1)"), "print(1)");
        assert_eq!(python_program("```py\nprint(1)\n"), "print(1)\n");
        assert_eq!(python_program("```\nprint(2)\n```"), "print(2)\n");
    }

    #[test]
    fn a_retry_asks_again_with_the_failure_and_without_the_earlier_results() {
        let first =
            "Write it. Request: an adder\n\nResults of the tasks before yours:\n\n### plan\nlong";
        let second = retry_prompt(first, "x = 1", "the program failed:\nboom");
        assert!(second.starts_with(
            "Write it. Request: an adder\n\nYour program was:\n```python\nx = 1\n```"
        ));
        assert!(second.contains("boom") && !second.contains("### plan"));
        // A third try replaces the second's program and failure.
        let third = retry_prompt(&second, "x = 2", "the program failed:\nbang");
        assert!(third.contains("x = 2") && third.contains("bang"));
        assert!(!third.contains("x = 1") && !third.contains("boom"));
    }

    #[test]
    fn a_check_runs_the_program_and_wants_tests() {
        let (verdict, _) = check_python("```python\nassert sum([1, 2]) == 3\nprint('fine')\n```");
        assert!(verdict.unwrap().contains("fine"));
        let (verdict, _) = check_python("```python\nassert sum([1, 2]) == 4\n```");
        assert!(verdict.unwrap_err().contains("AssertionError"));
        let (verdict, _) = check_python("```python\nprint('hello')\n```");
        assert!(verdict.unwrap_err().contains("no tests"));
    }
}
