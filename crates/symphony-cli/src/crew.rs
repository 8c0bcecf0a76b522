//! `symphony crew ...`: crews declared in YAML, run in the terminal. The conversation is
//! printed as it happens (or, with `--json`, one object at the end); runs are saved in
//! `$SYMPHONY_HOME/crews/runs/` after every task and resume from there.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use symphony_app::Home;
use symphony_models::Model;
use symphony_teams::crew::{run_crew, CrewRun, CrewSpec, Members, RunFiles, Status};
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
            let run = CrewRun::new(CrewRun::fresh_id(), spec, goal);
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
    let mut models: BTreeMap<&str, Model> = BTreeMap::new();
    for name in spec.models() {
        models.insert(name, open_model(name, None, &flags.load)?);
    }
    let mut members = Members::on_models(&spec, &|name| &models[name], flags.max_tokens)?;
    // The coordinator's awards learn from every earlier run's contracts.
    members.record = files.load_record().map_err(anyhow::Error::msg)?;

    let json = flags.json;
    let mut out = std::io::stdout().lock();
    let mut on_message = |m: &Message| {
        if !json {
            let _ = print_message(&mut out, m);
        }
    };
    let mut save = |r: &CrewRun| files.save(r);
    let ran = run_crew(&mut run, &mut members, &mut save, &mut on_message);
    files
        .save_record(&members.record)
        .map_err(anyhow::Error::msg)?;
    ran?;

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
