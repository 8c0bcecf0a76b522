//! A Model Context Protocol client: the tools of any MCP server, in an agent's registry.
//!
//! Both transports the protocol defines:
//! - **stdio**: the server is a child process; JSON-RPC messages go one per line through its
//!   stdin and stdout (its stderr is its log, kept for error messages);
//! - **streamable HTTP**: every message is POSTed to one endpoint; the reply is either JSON or
//!   a server-sent-event stream that carries it, and the `Mcp-Session-Id` header the server
//!   gives at initialisation ties later requests to the session.
//!
//! [`McpClient::connect`] runs the handshake (`initialize`, then `notifications/initialized`),
//! [`McpClient::list_tools`] pages through `tools/list`, and each tool becomes an
//! [`McpTool`]: a [`Tool`] whose calls are `tools/call` requests. A result the server flags
//! with `isError` reaches the model as an error observation, like any failed call.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use symphony_types::ToolSpec;

use crate::tool::{Tool, ToolError};

/// The protocol revision this client speaks (servers may answer with an older one they
/// support; the client accepts any).
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// Requests that get no answer in this time fail (a tool call's own limit is the registry's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a request to a server may be allowed: a day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// How many of a child server's last stderr lines an error quotes.
const STDERR_LINES: usize = 20;

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
}

/// One connected server. Requests are serialised (one at a time); its tools share it.
pub struct McpClient {
    name: String,
    timeout: Duration,
    connection: Mutex<Connection>,
    server_info: Value,
    protocol_version: String,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("name", &self.name)
            .field("server_info", &self.server_info)
            .finish()
    }
}

struct Connection {
    next_id: u64,
    transport: Transport,
}

enum Transport {
    Stdio(StdioTransport),
    Http(HttpTransport),
}

impl McpClient {
    /// Starts (stdio) or reaches (HTTP) the server and completes the handshake.
    pub fn connect(config: &McpServerConfig) -> Result<Self, McpError> {
        config.validate().map_err(|message| McpError::Protocol {
            server: config.name.clone(),
            message,
        })?;
        let transport = match (&config.command, &config.url) {
            (Some(command), _) => Transport::Stdio(StdioTransport::spawn(config, command)?),
            (None, Some(url)) => Transport::Http(HttpTransport::new(config, url)),
            (None, None) => unreachable!("validated"),
        };
        let mut client = Self {
            name: config.name.clone(),
            timeout: config.timeout(),
            connection: Mutex::new(Connection {
                next_id: 1,
                transport,
            }),
            server_info: Value::Null,
            protocol_version: String::new(),
        };
        let init = client.request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "symphony", "version": env!("CARGO_PKG_VERSION")},
            }),
        )?;
        client.protocol_version = init["protocolVersion"]
            .as_str()
            .unwrap_or(PROTOCOL_VERSION)
            .to_string();
        client.server_info = init["serverInfo"].clone();
        {
            let mut conn = client.lock();
            if let Transport::Http(http) = &mut conn.transport {
                http.protocol_version = Some(client.protocol_version.clone());
            }
        }
        client.notify("notifications/initialized")?;
        Ok(client)
    }

    /// The server's name and version, as it gave them.
    pub fn server_info(&self) -> &Value {
        &self.server_info
    }

    /// The protocol revision agreed on.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic in another call leaves the connection usable: requests are matched by id.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every tool the server offers, following `nextCursor` pages.
    pub fn list_tools(&self) -> Result<Vec<ToolSpec>, McpError> {
        let mut specs = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request("tools/list", params)?;
            let tools = page["tools"].as_array().ok_or_else(|| McpError::Protocol {
                server: self.name.clone(),
                message: "tools/list gave no `tools` array".into(),
            })?;
            for t in tools {
                let Some(name) = t["name"].as_str() else {
                    continue;
                };
                let mut parameters = t
                    .get("inputSchema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                if let Some(obj) = parameters.as_object_mut() {
                    // The draft marker is for validators; the model does not need it.
                    obj.remove("$schema");
                }
                specs.push(ToolSpec {
                    name: name.to_string(),
                    description: t["description"].as_str().map(str::to_string),
                    parameters,
                });
            }
            cursor = page["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                return Ok(specs);
            }
        }
        Err(McpError::Protocol {
            server: self.name.clone(),
            message: "tools/list gave more than 100 pages".into(),
        })
    }

    /// Calls one tool; the text of its content, or the text of its error.
    pub fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolOutput, McpError> {
        let arguments = if arguments.is_null() {
            json!({})
        } else {
            arguments
        };
        let result = self.request("tools/call", json!({"name": name, "arguments": arguments}))?;
        Ok(ToolOutput {
            text: content_text(&result),
            is_error: result["isError"].as_bool().unwrap_or(false),
        })
    }

    /// Sends one request and waits for its response.
    pub fn request(&self, method: &str, params: Value) -> Result<Value, McpError> {
        let mut conn = self.lock();
        let id = conn.next_id;
        conn.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let deadline = Instant::now() + self.timeout;
        let server = self.name.as_str();
        let response = match &mut conn.transport {
            Transport::Stdio(stdio) => stdio.request(server, &message, id, deadline)?,
            Transport::Http(http) => http.request(server, &message, id)?,
        };
        let response = response.ok_or_else(|| McpError::TimedOut {
            server: server.to_string(),
            method: method.to_string(),
            limit: self.timeout,
        })?;
        if let Some(error) = response.get("error") {
            return Err(McpError::Rpc {
                server: server.to_string(),
                method: method.to_string(),
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(response.get("result").cloned().unwrap_or(Value::Null))
    }

    fn notify(&self, method: &str) -> Result<(), McpError> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        let mut conn = self.lock();
        match &mut conn.transport {
            Transport::Stdio(stdio) => stdio.send(&self.name, &message),
            Transport::Http(http) => http.notify(&self.name, &message),
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

/// What to do with one message from the server while waiting for response `id`.
enum Incoming {
    /// The response awaited.
    Response(Value),
    /// A request from the server, which must be answered.
    Request(Value),
    /// A notification, or a late response to a request that timed out: skipped.
    Other,
}

fn classify(message: Value, id: u64) -> Incoming {
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    if is_response {
        if message["id"].as_u64() == Some(id) {
            return Incoming::Response(message);
        }
        return Incoming::Other;
    }
    if message.get("method").is_some() && message.get("id").is_some() {
        return Incoming::Request(message);
    }
    Incoming::Other
}

/// This client's answer to a server's request: `ping` is answered; nothing else is
/// offered (no sampling, roots or elicitation capability is declared).
fn answer(request: &Value) -> Value {
    let id = request["id"].clone();
    match request["method"].as_str() {
        Some("ping") => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        method => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32601, "message": format!("{} is not supported by this client", method.unwrap_or("?"))},
        }),
    }
}

struct StdioTransport {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl StdioTransport {
    fn spawn(config: &McpServerConfig, command: &[String]) -> Result<Self, McpError> {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .envs(&config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &config.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|source| McpError::Spawn {
            server: config.name.clone(),
            program: command[0].clone(),
            source,
        })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mcp-{}-out", config.name))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| McpError::Spawn {
                server: config.name.clone(),
                program: command[0].clone(),
                source,
            })?;
        // The server's log: drained so that a chatty server never blocks on a full pipe,
        // the last lines kept to explain a failure.
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = Arc::clone(&tail);
        let _ = thread::Builder::new()
            .name(format!("mcp-{}-err", config.name))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut tail = keep.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        Ok(Self {
            child,
            stdin,
            lines,
            stderr: tail,
        })
    }

    fn closed(&mut self, server: &str) -> McpError {
        // Give the log thread a moment to read the server's last words.
        thread::sleep(Duration::from_millis(50));
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let stderr = if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its last output: {}",
                tail.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        };
        McpError::Closed {
            server: server.to_string(),
            stderr,
        }
    }

    fn send(&mut self, server: &str, message: &Value) -> Result<(), McpError> {
        let mut line = message.to_string();
        line.push('\n');
        if self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Err(self.closed(server));
        }
        Ok(())
    }

    /// Sends a request and reads until its response; `None` past the deadline.
    fn request(
        &mut self,
        server: &str,
        message: &Value,
        id: u64,
        deadline: Instant,
    ) -> Result<Option<Value>, McpError> {
        self.send(server, message)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.closed(server)),
            };
            // Servers may print other lines; only JSON-RPC messages count.
            let Ok(incoming) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match classify(incoming, id) {
                Incoming::Response(r) => return Ok(Some(r)),
                Incoming::Request(r) => self.send(server, &answer(&r))?,
                Incoming::Other => {}
            }
        }
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    headers: BTreeMap<String, String>,
    session: Option<String>,
    protocol_version: Option<String>,
}

impl HttpTransport {
    fn new(config: &McpServerConfig, url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout()))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            agent,
            url: url.to_string(),
            headers: config.headers.clone(),
            session: None,
            protocol_version: None,
        }
    }

    fn post(
        &self,
        server: &str,
        message: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>, McpError> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(session) = &self.session {
            req = req.header("Mcp-Session-Id", session);
        }
        if let Some(version) = &self.protocol_version {
            req = req.header("MCP-Protocol-Version", version);
        }
        let resp = req
            .send(message.to_string().as_bytes())
            .map_err(|e| McpError::Protocol {
                server: server.to_string(),
                message: format!("cannot reach {}: {e}", self.url),
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let mut resp = resp;
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let hint = if status == 404 && self.session.is_some() {
                " (the session has expired)"
            } else {
                ""
            };
            return Err(McpError::Protocol {
                server: server.to_string(),
                message: format!("HTTP {status}{hint}: {}", body.trim()),
            });
        }
        Ok(resp)
    }

    fn notify(&mut self, server: &str, message: &Value) -> Result<(), McpError> {
        self.post(server, message).map(|_| ())
    }

    fn request(
        &mut self,
        server: &str,
        message: &Value,
        id: u64,
    ) -> Result<Option<Value>, McpError> {
        let resp = self.post(server, message)?;
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(session.to_string());
        }
        let event_stream = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let protocol = |message: String| McpError::Protocol {
            server: server.to_string(),
            message,
        };
        let mut reader = BufReader::new(resp.into_body().into_reader());
        if !event_stream {
            let mut body = String::new();
            std::io::Read::read_to_string(&mut reader, &mut body)
                .map_err(|e| protocol(format!("reading the response: {e}")))?;
            let value: Value = serde_json::from_str(&body)
                .map_err(|e| protocol(format!("the response is not JSON ({e}): {body:.200}")))?;
            // A JSON reply may batch several messages.
            let messages = match value {
                Value::Array(items) => items,
                one => vec![one],
            };
            for m in messages {
                if let Incoming::Response(r) = classify(m, id) {
                    return Ok(Some(r));
                }
            }
            return Err(protocol("the response did not answer the request".into()));
        }
        // Server-sent events: `data:` lines up to a blank line make one message.
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| protocol(format!("reading the event stream: {e}")))?;
            let text = line.trim_end_matches(['\r', '\n']);
            if n == 0 || text.is_empty() {
                if !data.is_empty() {
                    if let Ok(m) = serde_json::from_str::<Value>(&data) {
                        match classify(m, id) {
                            Incoming::Response(r) => return Ok(Some(r)),
                            Incoming::Request(r) => {
                                self.post(server, &answer(&r))?;
                            }
                            Incoming::Other => {}
                        }
                    }
                    data.clear();
                }
                if n == 0 {
                    return Err(protocol(
                        "the event stream ended without answering the request".into(),
                    ));
                }
            } else if let Some(rest) = text.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
    }
}

impl Drop for HttpTransport {
    fn drop(&mut self) {
        // Ends the session on the server, as the protocol asks of a client that is done.
        if let Some(session) = &self.session {
            let _ = self
                .agent
                .delete(&self.url)
                .header("Mcp-Session-Id", session)
                .call();
        }
    }
}
