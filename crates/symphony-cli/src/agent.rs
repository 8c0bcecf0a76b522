//! `symphony agent ...`: agents declared in YAML, run in the terminal, their runs kept in
//! `$SYMPHONY_HOME/agents/runs.sqlite` (or `$SYMPHONY_AGENT_RUNS`) so a stopped run can be
//! resumed. `symphony serve` keeps its agents' runs in the same store.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};
use std::sync::Arc;
use symphony_agents::{
    AgentConfig, AgentSpec, Approval, ChatModel, Checkpoint, ClaimedRun, Ending, EngineChat, Event,
    Front, LoopKind, RunState, RunStore, ToolChoice,
};

use symphony_agents::memory::Memory;
use symphony_agents::tools::LocalModel;
use symphony_app::Home;

use crate::commands::{init_threads, open_model};
use crate::rag::load_embedder;
use crate::{AgentCommand, AgentRunFlags, LoadArgs};

/// The run store, shared with `symphony serve`: `$SYMPHONY_AGENT_RUNS`, or
/// `agents/runs.sqlite` in the store's home.
pub fn runs_path() -> Result<std::path::PathBuf> {
    Ok(Home::from_env()?.agent_runs())
}

fn run_store() -> Result<RunStore> {
    Ok(RunStore::open(&runs_path()?)?)
}

/// The agent's memory (`memory.sqlite` beside the run store), for agents with `memory`.
fn open_memory(spec: &AgentSpec) -> Result<Option<Arc<Memory>>> {
    let Some(config) = &spec.memory else {
        return Ok(None);
    };
    let embedder = Arc::new(load_embedder(&config.embedder)?);
    let path = Home::from_env()?.agent_memory();
    Ok(Some(Arc::new(Memory::open(&path, &spec.name, embedder)?)))
}

/// `KEY=VALUE` for `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

pub fn agent(cmd: AgentCommand) -> Result<()> {
    if let AgentCommand::Run { flags, .. }
    | AgentCommand::Resume { flags, .. }
    | AgentCommand::Approve { flags, .. } = &cmd
    {
        // First: the encoder of an agent's memory or examples starts the pool too.
        init_threads(&flags.threads)?;
    }
    match cmd {
        AgentCommand::Run {
            file,
            task,
            vars,
            flags,
        } => {
            let spec = AgentSpec::load(&file)?;
            let memory = open_memory(&spec)?;
            // Examples are chosen by meaning: without memory, that needs an encoder of its own.
            let embedder = match (&memory, spec.examples.len() > spec.few_shot) {
                (None, true) => Some(load_embedder(&symphony_agents::memory::default_embedder())?),
                _ => None,
            };
            let vars = vars.into_iter().collect();
            let (_, state) = spec.start(&task, &vars, memory.as_deref(), embedder.as_ref())?;
            let store = run_store()?;
            let id = store.create(&spec, &state, None)?;
            drive(store, &id, spec, state, memory, &flags)
        }
        AgentCommand::Resume { run, flags } => {
            let store = run_store()?;
            let stored = store.load(&run)?;
            if let Some(ending) = stored.state.ending {
                anyhow::bail!("run {run} has already ended ({ending:?}); nothing to resume");
            }
            if stored.state.awaiting_approval.is_some() {
                anyhow::bail!(
                    "run {run} waits for a call to be approved: `symphony agent approve {run}` \
                     (or `--deny`)"
                );
            }
            let memory = open_memory(&stored.spec)?;
            drive(store, &run, stored.spec, stored.state, memory, &flags)
        }
        AgentCommand::Approve { run, deny, flags } => {
            let mut store = run_store()?;
            let mut stored = store.load(&run)?;
            let call = stored
                .state
                .decide(!deny)
                .with_context(|| format!("run {run}"))?;
            // The decision is stored before anything runs: if this process dies, resuming
            // the run carries it out without asking again.
            store.checkpoint(&run).save(&stored.state)?;
            let verb = if deny { "denied" } else { "approved" };
            eprintln!("{verb} {} {}", call.name, call.arguments);
            let memory = open_memory(&stored.spec)?;
            drive(store, &run, stored.spec, stored.state, memory, &flags)
        }
        AgentCommand::Ls { json } => {
            let runs = run_store()?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                for r in runs {
                    println!(
                        "{}  {:<10} {:>2} steps  {:<12} {}",
                        r.id, r.status, r.steps, r.agent, r.task
                    );
                }
            }
            Ok(())
        }
        AgentCommand::Bench(args) => bench(&args),
        AgentCommand::Show { run, json } => {
            let stored = run_store()?.load(&run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored.state)?);
                return Ok(());
            }
            println!(
                "run {} of agent {} ({} steps)",
                stored.id, stored.spec.name, stored.state.step
            );
            for m in &stored.state.messages {
                let role = m.role.as_str();
                for c in &m.tool_calls {
                    println!("{role}: call {} {}", c.name, c.arguments);
                }
                if !m.content.is_empty() {
                    println!("{role}: {}", m.content.trim_end());
                }
            }
            Ok(())
        }
    }
}

/// Drives run `id` from `state` in this terminal: claimed (not while another process, a
/// server or another `resume`, drives it), checkpointed into the store, its events printed
/// as they come and its answer last.
fn drive(
    store: RunStore,
    id: &str,
    spec: AgentSpec,
    state: RunState,
    memory: Option<Arc<Memory>>,
    flags: &AgentRunFlags,
) -> Result<()> {
    let run = ClaimedRun::claim(store, id, spec, state, memory)?;
    let (json, yes) = (flags.json, flags.yes);
    let open_collection = |name: &str| -> Result<_, String> {
        let collection = symphony_rag::Collection::open(
            &Home::from_env().map_err(|e| e.to_string())?.collections(),
            name,
        )
        .map_err(|e| e.to_string())?;
        let embedder = load_embedder(&collection.config.embedder).map_err(|e| format!("{e:#}"))?;
        Ok((collection, embedder))
    };
    let spec = run.spec().clone();
    let model = Arc::new(open_model(&spec.model, None, &LoadArgs::default())?);
    // The agent's model also answers its MCP servers' sampling requests.
    let sampler = Arc::new(LocalModel::new(Arc::clone(&model), spec.model.clone()));
    let tools = run.tools(Some(&open_collection), Some(sampler))?;
    let mut chat = EngineChat::new(&model)?;
    let mut approve = |name: &str, arguments: &serde_json::Value| -> Approval {
        if yes {
            return Approval::Allow;
        }
        if !std::io::stdin().is_terminal() {
            // No one to ask here: the run waits, checkpointed, for `agent approve`.
            return Approval::Pause;
        }
        eprint!("allow {name} {arguments}? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        matches!(line.trim(), "y" | "Y" | "yes").into()
    };
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(
            stdout,
            "{}",
            serde_json::json!({"type": "run", "id": id, "agent": spec.name})
        )?;
        stdout.flush()?;
    } else {
        eprintln!("run {id} (resume it with `symphony agent resume {id}` if it stops)");
    }
    let mut show = |e: &Event| {
        if json {
            let _ = writeln!(stdout, "{}", serde_json::to_string(e).unwrap_or_default());
            // Line by line, so that a reader sees each step as it happens.
            let _ = stdout.flush();
            return;
        }
        print_event(e, spec.loop_kind);
    };
    // Steps of a plan that can run at the same time get sessions of their own.
    let open = || -> Result<Box<dyn ChatModel + Send + '_>, symphony_agents::Error> {
        Ok(Box::new(EngineChat::new(&model)?))
    };
    let finished = run
        .drive(
            &tools,
            Front {
                chat: &mut chat,
                more: Some(&open),
                approve: &mut approve,
                on_event: &mut show,
            },
        )
        .with_context(|| format!("running agent '{}'", spec.name))?;
    if let Some(e) = finished.memory_error {
        return Err(e.into());
    }
    let outcome = finished.outcome;
    if json {
        let summary = serde_json::json!({
            "type": "summary",
            "id": id,
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
    if outcome.ending == Ending::AwaitingApproval {
        eprintln!(
            "run {id} is paused: approve the call with `symphony agent approve {id}`, or \
             refuse it with `symphony agent approve {id} --deny`"
        );
        return Ok(());
    }
    if outcome.ending != Ending::Answered {
        anyhow::bail!("the agent stopped without an answer ({:?})", outcome.ending);
    }
    Ok(())
}

/// One event as the terminal shows it (without `--json`).
fn print_event(e: &Event, loop_kind: LoopKind) {
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
        Event::Summary {
            step,
            messages,
            tokens_before,
            tokens_after,
            text,
        } => eprintln!(
            "[{step}] summarised {messages} earlier messages ({tokens_before} -> \
             {tokens_after} prompt tokens): {}",
            text.replace('\n', "\n    ")
        ),
        Event::Plan { step, steps } => {
            eprintln!("[{step}] plan:");
            for s in steps {
                let after = if s.after.is_empty() {
                    String::new()
                } else {
                    format!(" (after {:?})", s.after)
                };
                eprintln!("    {}. {}{after}", s.id, s.task);
            }
        }
        Event::StepDone {
            step,
            id,
            result,
            ok,
            ..
        } => {
            let tag = if *ok { "done" } else { "FAILED" };
            eprintln!(
                "[{step}] step {id} {tag}: {}",
                result.trim_end().replace('\n', "\n    ")
            );
        }
        Event::ApprovalNeeded {
            step,
            name,
            arguments,
            ..
        } => eprintln!("[{step}] waiting for approval: {name} {arguments}"),
        Event::Critique {
            step,
            round,
            pass,
            feedback,
        } => {
            let verdict = if *pass { "passes" } else { "fails" };
            eprintln!("[{step}] critique {round}: {verdict}. {feedback}");
        }
        // Drafts before the final answer are shown; the final one is printed last.
        Event::Answer { step, text } if loop_kind == LoopKind::Reflect => {
            eprintln!(
                "[{step}] draft: {}",
                text.trim_end().replace('\n', "\n    ")
            );
        }
        Event::Answer { .. } => {}
    }
}

/// `symphony agent bench`: the task suite with one loop and model.
fn bench(args: &crate::AgentBenchArgs) -> Result<()> {
    use symphony_agents::suite::{run_task, Suite};
    let json = args.json;
    let loop_kind = &args.loop_kind;
    let kind: LoopKind = serde_json::from_value(serde_json::json!(loop_kind))
        .with_context(|| format!("--loop {loop_kind}: react, plan or reflect"))?;
    let tool_choice: ToolChoice = serde_json::from_value(serde_json::json!(args.tool_choice))
        .with_context(|| format!("--tool-choice {}: auto or required", args.tool_choice))?;
    let config = AgentConfig {
        max_steps: args.max_steps,
        tool_choice,
        ..AgentConfig::default()
    };
    let mut suite = Suite::load(&args.suite)?;
    if !args.tasks.is_empty() {
        suite.tasks.retain(|t| args.tasks.contains(&t.id));
    }
    init_threads(&args.threads)?;
    let model_name = &args.model;
    let model = open_model(model_name, None, &LoadArgs::default())?;
    let open = || -> Result<Box<dyn ChatModel + Send + '_>, symphony_agents::Error> {
        Ok(Box::new(EngineChat::new(&model)?))
    };
    let mut results = Vec::new();
    for task in &suite.tasks {
        let mut chat = EngineChat::new(&model)?;
        let r = run_task(task, kind, &mut chat, Some(&open), &config);
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            let verdict = if r.passed { "pass" } else { "FAIL" };
            let answer: String = r.answer.split_whitespace().collect::<Vec<_>>().join(" ");
            let answer: String = answer.chars().take(80).collect();
            eprintln!(
                "{verdict} {:<12} {:<10} {:>2} steps {:>2} calls {:>5} tokens {:>6.1}s  {}",
                r.id,
                r.kind,
                r.steps,
                r.tool_calls,
                r.prompt_tokens + r.completion_tokens,
                r.seconds,
                r.error.as_deref().unwrap_or(&answer)
            );
        }
        results.push(r);
    }
    let mut rows = Vec::new();
    let mut kinds: Vec<&str> = results.iter().map(|r| r.kind.as_str()).collect();
    kinds.dedup();
    kinds.push("all");
    for k in kinds {
        let of: Vec<_> = results
            .iter()
            .filter(|r| k == "all" || r.kind == k)
            .collect();
        if of.is_empty() {
            continue;
        }
        let n = of.len() as f64;
        let mean = |f: &dyn Fn(&&symphony_agents::suite::TaskResult) -> f64| {
            of.iter().map(f).sum::<f64>() / n
        };
        rows.push(serde_json::json!({
            "kind": k,
            "tasks": of.len(),
            "passed": of.iter().filter(|r| r.passed).count(),
            "success_rate": mean(&|r| f64::from(u8::from(r.passed))),
            "mean_steps": mean(&|r| r.steps as f64),
            "mean_tool_calls": mean(&|r| r.tool_calls as f64),
            "mean_prompt_tokens": mean(&|r| r.prompt_tokens as f64),
            "mean_completion_tokens": mean(&|r| r.completion_tokens as f64),
            "mean_seconds": mean(&|r| r.seconds),
        }));
    }
    let summary = serde_json::json!({
        "type": "summary",
        "model": model_name,
        "loop": kind,
        "max_steps": args.max_steps,
        "tool_choice": tool_choice,
        "rows": rows,
    });
    if json {
        println!("{summary}");
    } else {
        println!(
            "| kind | passed | steps | tool calls | prompt tokens | completion tokens | s/task |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {}/{} ({:.0}%) | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} |",
                r["kind"].as_str().unwrap_or_default(),
                r["passed"],
                r["tasks"],
                r["success_rate"].as_f64().unwrap_or(0.0) * 100.0,
                r["mean_steps"].as_f64().unwrap_or(0.0),
                r["mean_tool_calls"].as_f64().unwrap_or(0.0),
                r["mean_prompt_tokens"].as_f64().unwrap_or(0.0),
                r["mean_completion_tokens"].as_f64().unwrap_or(0.0),
                r["mean_seconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}
