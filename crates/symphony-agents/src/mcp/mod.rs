//! The Model Context Protocol, through its official Rust SDK (`rmcp`).
//!
//! - [`client`]: the tools of any MCP server in an agent's registry, over stdio (the server
//!   is a child process) or streamable HTTP; a server that asks for sampling is answered by
//!   the agent's own model when one is given ([`Sampler`]).
//! - [`server`]: Symphony's tools, RAG collections and models offered to any MCP client
//!   (`symphony mcp serve`), over stdio or streamable HTTP.
//!
//! The SDK is async and runs on tokio, while agents call tools from plain threads: one small
//! runtime of this module's own carries every connection ([`run`]), so a synchronous call
//! waits on a channel and works from any thread, inside another runtime or not.

pub mod client;
pub mod server;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use symphony_types::ChatMessage;

pub use client::{McpClient, McpTool, ToolOutput};
pub use server::{CollectionResources, McpServer, ResourceSource};

/// The protocol revision this side asks for: the newest that keeps the `initialize`
/// handshake and sampling (a server may answer with an older one it supports).
pub const PROTOCOL_VERSION: rmcp::model::ProtocolVersion =
    rmcp::model::ProtocolVersion::V_2025_11_25;

/// Requests that get no answer in this time fail (a tool call's own limit is the registry's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a request to a server may be allowed: a day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// One MCP server an agent uses: either `command` (stdio) or `url` (streamable HTTP).
///
/// ```yaml
/// mcp_servers:
///   - name: files
///     command: [npx, "@modelcontextprotocol/server-filesystem", "."]
///     tools: [read_text_file, list_directory]   # optional: only these
///   - name: remote
///     url: http://127.0.0.1:3001/mcp
///     headers: {Authorization: Bearer ...}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Names the server in errors.
    pub name: String,
    /// stdio: the program and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// stdio: variables added to the server's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// stdio: the server's working directory; an agent file sets its own directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: headers sent with every request (authorisation, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Only these of the server's tools are given to the model (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Seconds a request may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl McpServerConfig {
    /// A server run as a child process.
    pub fn stdio(name: &str, command: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            tools: None,
            timeout_secs: None,
        }
    }

    /// A server reached over streamable HTTP.
    pub fn http(name: &str, url: &str) -> Self {
        Self {
            command: None,
            url: Some(url.to_string()),
            ..Self::stdio(name, &[])
        }
    }

    /// Checks that exactly one transport is given.
    pub fn validate(&self) -> Result<(), String> {
        // Deadlines are `now + timeout`: a timeout past any clock would overflow.
        if self
            .timeout_secs
            .is_some_and(|t| t == 0 || t > MAX_TIMEOUT_SECS)
        {
            return Err(format!(
                "MCP server '{}': `timeout_secs` must be between 1 and {MAX_TIMEOUT_SECS}",
                self.name
            ));
        }
        match (&self.command, &self.url) {
            (Some(c), None) if !c.is_empty() => Ok(()),
            (Some(_), None) => Err(format!("MCP server '{}': `command` is empty", self.name)),
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
            (None, Some(u)) => Err(format!(
                "MCP server '{}': `url` must be http:// or https://, not {u:?}",
                self.name
            )),
            _ => Err(format!(
                "MCP server '{}' needs either `command` (stdio) or `url` (HTTP), not both",
                self.name
            )),
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout_secs
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
    }
}

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP server '{server}': cannot start {program:?}: {source}")]
    Spawn {
        server: String,
        program: String,
        source: std::io::Error,
    },
    /// The server process ended or closed its output.
    #[error("MCP server '{server}' exited{stderr}")]
    Closed { server: String, stderr: String },
    #[error("MCP server '{server}' did not answer {method} within {limit:?}")]
    TimedOut {
        server: String,
        method: String,
        limit: Duration,
    },
    /// The server answered with a JSON-RPC error.
    #[error("MCP server '{server}': {method} failed: {message} (code {code})")]
    Rpc {
        server: String,
        method: String,
        code: i64,
        message: String,
    },
    #[error("MCP server '{server}': {message}")]
    Protocol { server: String, message: String },
    /// Serving MCP (`symphony mcp serve`) failed.
    #[error("MCP server: {0}")]
    Serve(String),
}

/// A model that answers a server's `sampling/createMessage`: the conversation (a system
/// prompt first, when the server gives one) and the most tokens the reply may have.
pub trait Sampler: Send + Sync {
    /// The reply's text, or why there is none.
    fn sample(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<String, String>;

    /// The model's name, as the reply reports it.
    fn model_name(&self) -> String;
}

/// The runtime every MCP connection runs on: one worker is plenty for a handful of
/// servers, whose calls are mostly waiting.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    // reqwest (streamable HTTP) is built with rustls and no crypto provider of its own:
    // ring, as ureq and the rest of Symphony use. Another part may have installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mcp")
        .enable_all()
        .build()
        .expect("a one-thread tokio runtime can be built")
});

/// Runs `future` on the MCP runtime and waits for it on this thread.
///
/// Waiting on a channel (not `Runtime::block_on`) is what lets the agents of the server,
/// which run inside its runtime's blocking threads, call MCP tools too.
pub fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    RUNTIME.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("an MCP task ended without its result (it panicked)")
}
