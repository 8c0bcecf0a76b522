//! The MCP client: any server's tools in an agent's registry.
//!
//! Both transports the protocol defines, through `rmcp`:
//! - **stdio**: the server is a child process speaking JSON-RPC on its stdin and stdout; its
//!   stderr is its log, of which the last lines are kept to explain a failure;
//! - **streamable HTTP**: messages are POSTed to one endpoint and answered with JSON or a
//!   server-sent-event stream; the session the server gives is kept by the SDK.
//!
//! [`McpClient::connect`] runs the handshake, [`McpClient::list_tools`] pages through the
//! server's tools and each becomes an [`McpTool`]: a [`Tool`] whose calls are `tools/call`
//! requests. A result the server flags with `isError` reaches the model as an error
//! observation, like any failed call. A server that asks for sampling is answered by the
//! [`Sampler`] given at connection, and told no otherwise.

// Sampling is deprecated from protocol 2026-07-28 on (SEP-2577); this client asks for
// 2025-11-25, where it is part of the protocol, and servers in use still ask for it.
#![allow(deprecated)]

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ErrorData, Implementation, Role as McpRole, SamplingCapability,
    SamplingMessage, SamplingMessageContentBlock,
};
use rmcp::service::{ClientInitializeError, RequestContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;
use symphony_types::{ChatMessage, ToolSpec};
use tokio::io::AsyncBufReadExt;

use super::{run, McpError, McpServerConfig, Sampler, PROTOCOL_VERSION};
use crate::tool::{Tool, ToolError};

/// How many of a child server's last stderr lines an error quotes.
const STDERR_LINES: usize = 20;

/// How long a server that failed may take to finish writing why on its stderr.
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// How long closing a connection may take before the child is killed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connected server. Its tools share it; calls may overlap.
pub struct McpClient {
    name: String,
    timeout: Duration,
    peer: Peer<RoleClient>,
    service: Mutex<Option<RunningService<RoleClient, Handler>>>,
    server_info: Value,
    protocol_version: String,
    log: Option<ServerLog>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("name", &self.name)
            .field("server_info", &self.server_info)
            .finish()
    }
}

impl McpClient {
    /// Starts (stdio) or reaches (HTTP) the server and completes the handshake.
    pub fn connect(config: &McpServerConfig) -> Result<Self, McpError> {
        Self::connect_with(config, None)
    }

    /// As [`connect`](Self::connect), offering the server sampling by `sampler`.
    pub fn connect_with(
        config: &McpServerConfig,
        sampler: Option<Arc<dyn Sampler>>,
    ) -> Result<Self, McpError> {
        config.validate().map_err(|message| McpError::Protocol {
            server: config.name.clone(),
            message,
        })?;
        let config = config.clone();
        run(async move { connect(config, Handler { sampler }).await })
    }

    /// The server's name and version, as it gave them.
    pub fn server_info(&self) -> &Value {
        &self.server_info
    }

    /// The protocol revision agreed on.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// Every tool the server offers, following `nextCursor` pages.
    pub fn list_tools(&self) -> Result<Vec<ToolSpec>, McpError> {
        let peer = self.peer.clone();
        let tools = self.request("tools/list", async move { peer.list_all_tools().await })?;
        Ok(tools
            .into_iter()
            .map(|tool| {
                let mut parameters = Value::Object((*tool.input_schema).clone());
                if let Some(obj) = parameters.as_object_mut() {
                    // The draft marker is for validators; the model does not need it.
                    obj.remove("$schema");
                }
                ToolSpec {
                    name: tool.name.into_owned(),
                    description: tool.description.map(|d| d.into_owned()),
                    parameters,
                }
            })
            .collect())
    }

    /// Calls one tool; the text of its content, or the text of its error.
    pub fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolOutput, McpError> {
        let arguments = match arguments {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(McpError::Protocol {
                    server: self.name.clone(),
                    message: format!("a tool's arguments are a JSON object, not {other}"),
                })
            }
        };
        let params = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
        let peer = self.peer.clone();
        let result = self.request("tools/call", async move { peer.call_tool(params).await })?;
        let result = serde_json::to_value(&result).map_err(|e| McpError::Protocol {
            server: self.name.clone(),
            message: e.to_string(),
        })?;
        Ok(ToolOutput {
            text: content_text(&result),
            is_error: result["isError"].as_bool().unwrap_or(false),
        })
    }

    /// Runs one request under the server's time limit; a request given up on is cancelled
    /// at the server (the SDK sends `notifications/cancelled` when its future is dropped).
    fn request<T: Send + 'static>(
        &self,
        method: &str,
        request: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
    ) -> Result<T, McpError> {
        let limit = self.timeout;
        match run(async move { tokio::time::timeout(limit, request).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.service_error(method, e)),
            Err(_) => Err(McpError::TimedOut {
                server: self.name.clone(),
                method: method.to_string(),
                limit,
            }),
        }
    }

    fn service_error(&self, method: &str, error: ServiceError) -> McpError {
        let server = self.name.clone();
        match error {
            ServiceError::McpError(ErrorData { code, message, .. }) => McpError::Rpc {
                server,
                method: method.to_string(),
                code: code.0.into(),
                message: message.into_owned(),
            },
            ServiceError::Timeout { timeout } => McpError::TimedOut {
                server,
                method: method.to_string(),
                limit: timeout,
            },
            ServiceError::TransportClosed => match &self.log {
                Some(log) => McpError::Closed {
                    server,
                    stderr: run(log.clone().quote()),
                },
                None => McpError::Protocol {
                    server,
                    message: format!("{method}: the connection closed"),
                },
            },
            e => McpError::Protocol {
                server,
                message: format!("{method}: {}", error_chain(&e)),
            },
        }
    }

    /// The server's tools as registry tools: all of them, or those `only` names (an
    /// unknown name there is an error, so a typo in an agent file does not go unnoticed).
    pub fn tools(self: &Arc<Self>, only: Option<&[String]>) -> Result<Vec<McpTool>, McpError> {
        let specs = self.list_tools()?;
        if let Some(only) = only {
            for name in only {
                if !specs.iter().any(|s| &s.name == name) {
                    return Err(McpError::Protocol {
                        server: self.name.clone(),
                        message: format!(
                            "it has no tool '{name}'; its tools are: {}",
                            specs
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
        Ok(specs
            .into_iter()
            .filter(|s| only.is_none_or(|o| o.contains(&s.name)))
            .map(|spec| McpTool {
                client: Arc::clone(self),
                spec,
            })
            .collect())
    }
}

impl Drop for McpClient {
    /// Closes the session: a child server has its stdin closed and is given a few seconds
    /// to exit before it is killed; an HTTP session is ended with the server.
    fn drop(&mut self) {
        let service = self
            .service
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut service) = service {
            run(async move {
                let _ = service.close_with_timeout(CLOSE_TIMEOUT).await;
            });
        }
    }
}

/// Connects on the MCP runtime.
async fn connect(config: McpServerConfig, handler: Handler) -> Result<McpClient, McpError> {
    let server = config.name.clone();
    let limit = config.timeout();
    let timed_out = || McpError::TimedOut {
        server: server.clone(),
        method: "initialize".into(),
        limit,
    };
    let (service, log) = match (&config.command, &config.url) {
        (Some(command), _) => {
            let (transport, log) = spawn(&config, command)?;
            match tokio::time::timeout(limit, handler.serve(transport)).await {
                Ok(Ok(service)) => (service, Some(log)),
                Ok(Err(ClientInitializeError::JsonRpcError(ErrorData {
                    code, message, ..
                }))) => {
                    return Err(McpError::Rpc {
                        server,
                        method: "initialize".into(),
                        code: code.0.into(),
                        message: message.into_owned(),
                    })
                }
                // A server that exits during the handshake is explained best by what it
                // wrote on its way out.
                Ok(Err(
                    ClientInitializeError::ConnectionClosed(_)
                    | ClientInitializeError::TransportError { .. },
                )) => {
                    return Err(McpError::Closed {
                        server,
                        stderr: log.quote().await,
                    })
                }
                Ok(Err(e)) => {
                    return Err(McpError::Protocol {
                        server,
                        message: format!("initialize: {}", error_chain(&e)),
                    })
                }
                Err(_) => return Err(timed_out()),
            }
        }
        (None, Some(url)) => {
            let transport = StreamableHttpClientTransport::from_config(http_config(&config, url)?);
            match tokio::time::timeout(limit, handler.serve(transport)).await {
                Ok(Ok(service)) => (service, None),
                Ok(Err(e)) => {
                    return Err(McpError::Protocol {
                        server,
                        message: format!("cannot connect to {url}: {}", error_chain(&e)),
                    })
                }
                Err(_) => return Err(timed_out()),
            }
        }
        (None, None) => unreachable!("validated"),
    };
    let info = service.peer_info();
    let server_info = info
        .as_ref()
        .and_then(|i| serde_json::to_value(&i.server_info).ok())
        .unwrap_or(Value::Null);
    let protocol_version = info
        .as_ref()
        .and_then(|i| serde_json::to_value(&i.protocol_version).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(McpClient {
        name: config.name.clone(),
        timeout: limit,
        peer: service.peer().clone(),
        service: Mutex::new(Some(service)),
        server_info,
        protocol_version,
        log,
    })
}

fn spawn(
    config: &McpServerConfig,
    command: &[String],
) -> Result<(TokioChildProcess, ServerLog), McpError> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]).envs(&config.env);
    if let Some(dir) = &config.cwd {
        cmd.current_dir(dir);
    }
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| McpError::Spawn {
            server: config.name.clone(),
            program: command[0].clone(),
            source,
        })?;
    let log = ServerLog::default();
    if let Some(stderr) = stderr {
        // Drained so that a chatty server never blocks on a full pipe, the last lines kept.
        let keep = log.clone();
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep.push(line);
            }
        });
        *log.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
    }
    Ok((transport, log))
}

/// Streamable HTTP to `url`, with the configured headers on every request.
fn http_config(
    config: &McpServerConfig,
    url: &str,
) -> Result<StreamableHttpClientTransportConfig, McpError> {
    let mut headers = std::collections::HashMap::new();
    for (name, value) in &config.headers {
        let bad = |what: &str| McpError::Protocol {
            server: config.name.clone(),
            message: format!("header {name:?}: {what}"),
        };
        let name =
            http::HeaderName::try_from(name.as_str()).map_err(|_| bad("not a header name"))?;
        let value =
            http::HeaderValue::try_from(value.as_str()).map_err(|_| bad("not a header value"))?;
        headers.insert(name, value);
    }
    Ok(StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(headers))
}

/// The last lines a child server wrote on its stderr.
#[derive(Clone, Default)]
struct ServerLog {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl ServerLog {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines as an error quotes them, once the server has finished writing (it has
    /// exited, so its stderr ends) or after a short grace.
    async fn quote(self) -> String {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(STDERR_GRACE, reader).await;
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            format!(
                "; its last words:\n{}",
                lines.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    }
}

/// This side of the connection: it answers the server's sampling requests with a local
/// model when it has one (and declares the capability only then).
#[derive(Clone)]
struct Handler {
    sampler: Option<Arc<dyn Sampler>>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.sampler.is_some() {
            capabilities.sampling = Some(SamplingCapability::default());
        }
        ClientConfig::new(
            capabilities,
            Implementation::new("symphony", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(PROTOCOL_VERSION)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let Some(sampler) = self.sampler.clone() else {
            return Err(ErrorData::invalid_request(
                "this client offers no sampling",
                None,
            ));
        };
        let messages = sampling_messages(&params)?;
        let max_tokens = params.max_tokens as usize;
        let answer = {
            let sampler = Arc::clone(&sampler);
            tokio::task::spawn_blocking(move || sampler.sample(&messages, max_tokens))
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
                .map_err(|e| ErrorData::internal_error(e, None))?
        };
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(answer),
            sampler.model_name(),
        )
        .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN))
    }
}

/// A sampling request as chat messages: its system prompt, then its text turns.
fn sampling_messages(params: &CreateMessageRequestParams) -> Result<Vec<ChatMessage>, ErrorData> {
    let mut messages = Vec::new();
    if let Some(system) = &params.system_prompt {
        messages.push(ChatMessage::system(system.clone()));
    }
    for message in &params.messages {
        let mut text = Vec::new();
        for block in message.content.clone().into_vec() {
            match block {
                SamplingMessageContentBlock::Text(t) => text.push(t.text),
                _ => {
                    return Err(ErrorData::invalid_params(
                        "this client samples from text only",
                        None,
                    ))
                }
            }
        }
        let text = text.join("\n");
        messages.push(match message.role {
            McpRole::User => ChatMessage::user(text),
            McpRole::Assistant => ChatMessage::assistant(text),
        });
    }
    Ok(messages)
}

/// An error and its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// What a tool call gave.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    /// The server flagged the result as an error (`isError`).
    pub is_error: bool,
}

/// The text a model reads from a call result: text blocks as they are, other blocks named.
fn content_text(result: &Value) -> String {
    let mut parts = Vec::new();
    for block in result["content"].as_array().into_iter().flatten() {
        let part = match block["type"].as_str() {
            Some("text") => block["text"].as_str().unwrap_or("").to_string(),
            Some("resource") => match block["resource"]["text"].as_str() {
                Some(text) => text.to_string(),
                None => format!("[resource {}]", block["resource"]["uri"]),
            },
            Some("resource_link") => format!("[resource {}]", block["uri"]),
            Some(kind) => format!(
                "[{kind} {}]",
                block["mimeType"].as_str().unwrap_or("content")
            ),
            None => continue,
        };
        parts.push(part);
    }
    if parts.is_empty() {
        if let Some(structured) = result.get("structuredContent") {
            return structured.to_string();
        }
    }
    parts.join("\n")
}

/// One tool of an MCP server, called through its client.
#[derive(Debug)]
pub struct McpTool {
    client: Arc<McpClient>,
    spec: ToolSpec,
}

impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call(&self, arguments: Value) -> Result<String, ToolError> {
        match self.client.call_tool(&self.spec.name, arguments) {
            Ok(out) if out.is_error => Err(ToolError::Failed(out.text)),
            Ok(out) => Ok(out.text),
            Err(e) => Err(ToolError::Failed(e.to_string())),
        }
    }
}
