//! `symphony agent ...`: agents declared in YAML, run in the terminal.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};
use symphony_agents::{react, AgentSpec, Ending, EngineChat, Event};

use crate::commands::{init_threads, open_model};
use crate::{AgentCommand, LoadArgs};

pub fn agent(cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Run {
            file,
            task,
            json,
            yes,
            threads,
        } => {
            let spec = AgentSpec::load(&file)?;
            let tools = spec.registry()?;
            init_threads(&threads)?;
            let model = open_model(&spec.model, None, &LoadArgs::default())?;
            let mut chat = EngineChat::new(&model)?;
            let mut approve = |name: &str, arguments: &serde_json::Value| -> bool {
                if yes {
                    return true;
                }
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "denied {name} {arguments}: it needs approval (run with --yes to allow)"
                    );
                    return false;
                }
                eprint!("allow {name} {arguments}? [y/N] ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                matches!(line.trim(), "y" | "Y" | "yes")
            };
            let mut stdout = std::io::stdout().lock();
            let mut show = |e: &Event| {
                if json {
                    let _ = writeln!(stdout, "{}", serde_json::to_string(e).unwrap_or_default());
                    return;
                }
                // The answer goes to stdout last; the steps before it to stderr.
                match e {
                    Event::Thought { step, text } => eprintln!("[{step}] thought: {text}"),
                    Event::ToolCall {
                        step,
                        name,
                        arguments,
                        ..
                    } => eprintln!("[{step}] call {name} {arguments}"),
                    Event::ToolResult {
                        step,
                        output,
                        error,
                        ..
                    } => {
                        let tag = if *error { "error" } else { "result" };
                        eprintln!(
                            "[{step}] {tag}: {}",
                            output.trim_end().replace('\n', "\n    ")
                        );
                    }
                    Event::Notice { step, text } => eprintln!("[{step}] note: {text}"),
                    Event::Answer { .. } => {}
                }
            };
            let outcome = react(
                &mut chat,
                &tools,
                &spec.config(),
                &task,
                &mut approve,
                &mut show,
            )
            .with_context(|| format!("running agent '{}'", spec.name))?;
            if json {
                let summary = serde_json::json!({
                    "type": "summary",
                    "agent": spec.name,
                    "ending": outcome.ending,
                    "steps": outcome.steps,
                    "tool_calls": outcome.tool_calls,
                    "prompt_tokens": outcome.prompt_tokens,
                    "completion_tokens": outcome.completion_tokens,
                });
                println!("{summary}");
            } else {
                println!("{}", outcome.answer);
            }
            if outcome.ending != Ending::Answered {
                anyhow::bail!("the agent stopped without an answer ({:?})", outcome.ending);
            }
            Ok(())
        }
    }
}
