//! `symphony run` and `symphony chat`: text from a model, streamed to the terminal.

use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use symphony_engine::{
    chat_prompt, raw_prompt, FinishReason, GenerationParams, Grammar, GrammarCompiler,
    SamplingParams, Session,
};
use symphony_types::ChatMessage;

use super::context::{init_threads, install_interrupt_flag, open_model};
use crate::{ChatArgs, RunArgs, SamplingArgs};

fn generation_params(args: &SamplingArgs) -> GenerationParams {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    GenerationParams {
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repeat_penalty,
            seed,
            ..SamplingParams::default()
        },
        ignore_eos: false,
        constraint: None,
    }
}

/// The grammar `symphony run` was asked to follow, read from its file.
fn run_grammar(args: &RunArgs) -> Result<Option<Grammar>> {
    if let Some(path) = &args.json_schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let schema = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        return Ok(Some(Grammar::JsonSchema(schema)));
    }
    if let Some(path) = &args.grammar {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Some(Grammar::Lark(text)));
    }
    Ok(args.regex.clone().map(Grammar::Regex))
}

pub fn run(args: RunArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(
        &args.model,
        args.sampling.chat_template.as_deref(),
        &args.load,
    )?;
    // A base model (no chat template, and none given) continues the prompt as text.
    let raw = args.raw || model.chat_template.is_none();
    if raw && !args.raw {
        eprintln!(
            "note: {} has no chat template (a base model); continuing the prompt as plain text",
            args.model
        );
    }
    let prompt = if raw {
        raw_prompt(&model, &args.prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.as_str()));
        }
        messages.push(ChatMessage::user(args.prompt.as_str()));
        chat_prompt(&model, &messages)
            .context("use --raw to continue plain text, or --chat-template FILE")?
    };
    let mut params = generation_params(&args.sampling);
    if let Some(grammar) = run_grammar(&args)? {
        let compiler = GrammarCompiler::new(&model.tokenizer)?;
        params.constraint = Some(compiler.compile(&grammar)?);
    }
    let cancel = install_interrupt_flag()?;
    let mut session = Session::new(&model);
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let generation = session.generate(&prompt, &params, Some(&cancel), |piece| {
        if write_error.is_none() {
            if let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                write_error = Some(e);
                cancel.store(true, Ordering::SeqCst);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writeln!(stdout)?;
    if args.verbose {
        eprintln!(
            "prompt: {} tokens, {:.1} t/s | generated: {} tokens, {:.1} t/s | finish: {:?}",
            generation.prompt_tokens,
            generation.prompt_tokens_per_second(),
            generation.tokens.len(),
            generation.tokens_per_second(),
            generation.finish_reason
        );
    }
    Ok(())
}

pub fn chat(args: ChatArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(
        &args.model,
        args.sampling.chat_template.as_deref(),
        &args.load,
    )?;
    if model.chat_template.is_none() {
        bail!(
            "{}: use --chat-template FILE",
            symphony_models::Error::NoChatTemplate
        );
    }
    let params = generation_params(&args.sampling);
    let interrupted = install_interrupt_flag()?;
    let mut session = Session::new(&model);
    let mut history: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::system(s.as_str()))
        .collect();
    let system_len = history.len();
    eprintln!(
        "Chatting with {} ({}). /reset starts over, /exit quits, Ctrl-C stops a reply.",
        args.model,
        model
            .info
            .name
            .as_deref()
            .unwrap_or(&model.info.architecture)
    );
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        print!(">>> ");
        stdout.flush()?;
        let mut line = String::new();
        interrupted.store(false, Ordering::SeqCst);
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/reset" | "/clear" => {
                history.truncate(system_len);
                session.reset();
                println!("(conversation cleared)");
                continue;
            }
            "/help" | "/?" => {
                println!("/reset  start a new conversation\n/exit   quit\nCtrl-C  stop the current reply");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(input));
        let prompt = chat_prompt(&model, &history)?;
        interrupted.store(false, Ordering::SeqCst);
        let result = session.generate(&prompt, &params, Some(&interrupted), |piece| {
            print!("{piece}");
            let _ = stdout.flush();
        });
        println!();
        match result {
            Ok(generation) => {
                if generation.finish_reason == FinishReason::Cancelled {
                    println!("(stopped)");
                }
                if generation.finish_reason == FinishReason::ContextFull {
                    println!("(the context is full: /reset to start over)");
                }
                history.push(ChatMessage::assistant(generation.text));
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                eprintln!("(use /reset if the conversation no longer fits the context)");
            }
        }
    }
    Ok(())
}
