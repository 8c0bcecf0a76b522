//! `symphony mcp serve`: tools, collections and a model for any MCP client, over stdio or
//! streamable HTTP. The tools are built as an agent file's are; the protocol is
//! `symphony_agents::mcp::server`'s.

use std::sync::Arc;

use anyhow::{Context, Result};
use symphony_agents::mcp::{CollectionResources, McpServer};
use symphony_agents::tools::{AskModel, LocalModel, SearchDocuments};
use symphony_agents::{BuiltinTools, ToolEnv, ToolRegistry};
use symphony_rag::Collection;
use tokio_util::sync::CancellationToken;

use super::context::{init_threads, open_model};
use super::telemetry;
use crate::rag::{collections_root, load_embedder};
use crate::{LoadArgs, LogFormat, McpCommand, McpServeArgs};

pub fn mcp(cmd: McpCommand) -> Result<()> {
    match cmd {
        McpCommand::Serve(args) => serve(args),
    }
}

fn serve(args: McpServeArgs) -> Result<()> {
    init_threads(&args.threads)?;
    // On stdio, stdout is the protocol's: every log line goes to stderr.
    let telemetry = telemetry::init(LogFormat::Pretty, None)?;
    let server = server(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = match &args.http {
        None => runtime
            .block_on(server.serve_stdio())
            .context("serving MCP on stdio"),
        Some(addr) => runtime.block_on(serve_http(server, addr, &args.allowed_hosts)),
    };
    telemetry.shutdown();
    served
}

/// What `args` ask to offer: the built-in tools, a search tool and a resource per
/// collection, `ask_model`.
fn server(args: &McpServeArgs) -> Result<McpServer> {
    let mut registry = ToolRegistry::new();
    let builtins = BuiltinTools {
        names: &args.tools,
        workspace: args.workspace.as_deref(),
        http_allow: &args.http_allow,
        collection: None,
    };
    for tool in builtins.build(&ToolEnv::default())? {
        registry.register_shared(tool)?;
    }
    let root = collections_root()?;
    let names: Vec<String> = if args.no_collections {
        Vec::new()
    } else if args.collection.is_empty() {
        Collection::list(&root)?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        args.collection.clone()
    };
    for name in &names {
        // Opened to check it and find its embedder, then closed: each call opens it again,
        // so documents can be ingested while it is served.
        let embedder = {
            let collection =
                Collection::open(&root, name).with_context(|| format!("collection '{name}'"))?;
            load_embedder(&collection.config.embedder)?
        };
        let search = SearchDocuments::reopening(&root, name, embedder);
        registry.register(search.named(format!("search_{name}")))?;
    }
    if let Some(model) = &args.model {
        let loaded = Arc::new(open_model(model, None, &LoadArgs::default())?);
        registry.register(AskModel(LocalModel::new(loaded, model.clone())))?;
    }
    let tools: Vec<&str> = registry.names().collect();
    tracing::info!(tools = ?tools, collections = ?names, "MCP server ready");
    let mut server = McpServer::new(registry).with_instructions(
        "Symphony, on this machine: search the user's document collections with the \
         search_* tools (each collection is also a resource listing its documents), and use \
         the other tools as their descriptions say.",
    );
    if !names.is_empty() {
        server = server.with_resources(Arc::new(CollectionResources::new(root, names)));
    }
    Ok(server)
}

/// Streamable HTTP at `addr`/mcp until Ctrl-C. The address it listens on is printed on
/// stderr (port 0 picks a free one).
async fn serve_http(server: McpServer, addr: &str, extra_hosts: &[String]) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        eprintln!(
            "warning: MCP over HTTP has no authentication: anyone who can reach {local} can use its tools"
        );
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    hosts.extend(extra_hosts.iter().cloned());
    let stop = CancellationToken::new();
    let app = axum::Router::new().nest_service("/mcp", server.http_service(hosts, stop.clone()));
    eprintln!("MCP (streamable HTTP) at http://{local}/mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Open event streams end with their sessions; requests in flight finish.
            stop.cancel();
        })
        .await
        .context("serving MCP over HTTP")
}
