//! `symphony crew ...`: crews declared in YAML, run in the terminal. The conversation is
//! printed as it happens (or, with `--json`, one object at the end); runs are saved in
//! `$SYMPHONY_HOME/crews/runs/` after every task and resume from there.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use symphony_agents::{BuiltinTools, EngineChat, ToolEnv, ToolRegistry};
use symphony_app::Home;
use symphony_models::Model;
use symphony_teams::crew::run::CONDUCTOR;
use symphony_teams::crew::{run_crew, CrewRun, CrewSpec, Members, Process, RunFiles, Status};
use symphony_teams::Message;

use crate::args::{CrewCommand, CrewFlags};
use crate::commands::{init_threads, open_model};

pub fn crew(cmd: CrewCommand) -> Result<()> {
    let files = RunFiles::new(Home::from_env()?.crew_runs());
    match cmd {
        CrewCommand::Run { file, goal, flags } => {
            // A file, or the name of a crew that comes with Symphony.
            let text = match symphony_teams::crew::builtin(&file.to_string_lossy()) {
                Some(yaml) if !file.exists() => yaml.to_string(),
                _ => std::fs::read_to_string(&file).with_context(|| {
                    let names: Vec<&str> = symphony_teams::crew::BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    format!(
                        "reading {} (the built-in crews: {})",
                        file.display(),
                        names.join(", ")
                    )
                })?,
            };
            let spec = CrewSpec::from_yaml(&text).with_context(|| format!("{}", file.display()))?;
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let id = format!("crew-{millis}-{}", std::process::id());
            let run = CrewRun::new(id, spec, goal);
            drive(run, &files, &flags)
        }
        CrewCommand::Resume { id, flags } => {
            let run = files.load(&id).map_err(anyhow::Error::msg)?;
            if run.status == Status::Completed {
                bail!("crew run {id} has already finished");
            }
            drive(run, &files, &flags)
        }
    }
}

fn drive(mut run: CrewRun, files: &RunFiles, flags: &CrewFlags) -> Result<()> {
    init_threads(&flags.threads)?;
    eprintln!(
        "crew run {} (resume with `symphony crew resume {}`)",
        run.id, run.id
    );
    let spec = run.spec.clone();
    // Each distinct model once; agents on the same model get sessions of their own.
    let mut names: Vec<&str> = vec![spec.model.as_str()];
    names.extend(spec.agents.values().filter_map(|a| a.model.as_deref()));
    names.sort_unstable();
    names.dedup();
    let mut models: BTreeMap<&str, Model> = BTreeMap::new();
    for name in names {
        models.insert(name, open_model(name, None, &flags.load)?);
    }
    let mut members = Members::new();
    let env = ToolEnv {
        open_collection: None,
        memory: None,
        sampler: None,
    };
    for (name, agent) in &spec.agents {
        let model = &models[agent.model.as_deref().unwrap_or(&spec.model)];
        let chat = EngineChat::new(model)?.with_max_tokens(flags.max_tokens);
        let mut tools = ToolRegistry::new();
        let builtin = BuiltinTools {
            names: &agent.tools,
            workspace: spec.workspace.as_deref(),
            http_allow: &[],
            collection: None,
        };
        for tool in builtin
            .build(&env)
            .with_context(|| format!("agent `{name}`"))?
        {
            tools.register_shared(tool)?;
        }
        members.add(name, Box::new(chat), tools);
    }
    if spec.process == Process::Hierarchical && spec.manager.is_none() {
        let chat = EngineChat::new(&models[spec.model.as_str()])?.with_max_tokens(64);
        members.add(CONDUCTOR, Box::new(chat), ToolRegistry::new());
    }

    let json = flags.json;
    let mut out = std::io::stdout().lock();
    let mut on_message = |m: &Message| {
        if !json {
            let _ = print_message(&mut out, m);
        }
    };
    let mut save = |r: &CrewRun| files.save(r);
    run_crew(&mut run, &mut members, &mut save, &mut on_message)?;

    if json {
        let report = serde_json::json!({
            "run_id": run.id,
            "status": run.status,
            "result": run.result,
            "messages": run.messages,
            "usage": run.usage,
        });
        println!("{report}");
    } else {
        println!("\n{}", run.result.as_deref().unwrap_or("(no result)"));
    }
    let usage = &run.usage;
    eprintln!(
        "{} steps, {} prompt + {} completion tokens",
        usage.steps, usage.prompt_tokens, usage.completion_tokens
    );
    match &run.status {
        Status::Completed => Ok(()),
        Status::OutOfBudget { spent } => {
            bail!("the crew's budget ran out ({spent}) before its last task")
        }
        Status::Failed { task, error } => bail!("task `{task}` failed: {error}"),
        Status::Running => bail!("the run stopped before its end"),
    }
}

/// One message as the live conversation shows it.
fn print_message(out: &mut impl Write, m: &Message) -> std::io::Result<()> {
    let receivers: Vec<&str> = m.receivers.iter().map(|r| r.as_str()).collect();
    let tag = m
        .reply_with
        .as_deref()
        .or(m.in_reply_to.as_deref())
        .unwrap_or("");
    writeln!(
        out,
        "── {} {} → {} [{tag}]",
        m.performative,
        m.sender,
        receivers.join(", ")
    )?;
    for line in m.content.lines() {
        writeln!(out, "   {line}")?;
    }
    out.flush()
}
