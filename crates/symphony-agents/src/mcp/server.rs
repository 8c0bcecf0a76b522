//! The MCP server: a tool registry and a set of resources offered to any MCP client.
//!
//! `symphony mcp serve` fills the registry with the built-in tools, a search tool per RAG
//! collection and `ask_model` for a local model, and the resources with the collections
//! ([`CollectionResources`]); this module only speaks the protocol. A call runs through
//! [`ToolRegistry::call`] (its own thread, its time limit), on a blocking thread so the
//! connection keeps answering meanwhile. A failed call is a result flagged `isError`, which
//! the client's model reads and can correct; only an unknown tool is a protocol error.

use std::path::PathBuf;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool as McpToolInfo,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};
use symphony_types::ToolSpec;
use tokio_util::sync::CancellationToken;

use super::McpError;
use crate::registry::ToolRegistry;
use crate::tool::ToolError;

/// One resource as a list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceEntry {
    pub uri: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: String,
}

/// Resources a server offers: listed, then read by URI.
pub trait ResourceSource: Send + Sync {
    fn list(&self) -> Result<Vec<ResourceEntry>, String>;

    /// The resource's text and MIME type; `None` for a URI it does not know.
    fn read(&self, uri: &str) -> Result<Option<(String, String)>, String>;
}

/// What the server offers: tools, and resources if any.
#[derive(Clone)]
pub struct McpServer {
    tools: Arc<ToolRegistry>,
    resources: Option<Arc<dyn ResourceSource>>,
    instructions: Option<String>,
}

impl McpServer {
    pub fn new(tools: ToolRegistry) -> Self {
        Self {
            tools: Arc::new(tools),
            resources: None,
            instructions: None,
        }
    }

    pub fn with_resources(mut self, resources: Arc<dyn ResourceSource>) -> Self {
        self.resources = Some(resources);
        self
    }

    /// What the client's model is told about this server.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Serves one client on this process's stdin and stdout until it closes them. Must
    /// run inside a tokio runtime; logs go to stderr, never stdout.
    pub async fn serve_stdio(self) -> Result<(), McpError> {
        let service = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| McpError::Serve(e.to_string()))?;
        service
            .waiting()
            .await
            .map_err(|e| McpError::Serve(e.to_string()))?;
        Ok(())
    }

    /// Streamable HTTP as a tower service, to mount at `/mcp` of an HTTP server. Sessions
    /// are kept in memory; a request whose `Host` is not one of `allowed_hosts` is refused
    /// (DNS rebinding: a web page must not reach a server on loopback through its name).
    /// Cancelling `stop` ends the sessions and their open event streams, which a graceful
    /// shutdown would otherwise wait for.
    pub fn http_service(
        self,
        allowed_hosts: Vec<String>,
        stop: CancellationToken,
    ) -> StreamableHttpService<McpServer, LocalSessionManager> {
        StreamableHttpService::new(
            move || Ok(self.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default()
                .with_allowed_hosts(allowed_hosts)
                .with_cancellation_token(stop),
        )
    }

    fn tool_infos(&self) -> Vec<McpToolInfo> {
        self.tools.specs().into_iter().map(tool_info).collect()
    }
}

/// A tool's spec as MCP lists it (every tool has a description there: clients require one).
fn tool_info(spec: ToolSpec) -> McpToolInfo {
    let schema: JsonObject = match spec.parameters {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    let description = spec.description.unwrap_or_else(|| spec.name.clone());
    McpToolInfo::new(spec.name, description, Arc::new(schema))
}

/// Runs blocking work (a tool call, reading a collection) off the connection's thread.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ErrorData> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = match self.resources {
            Some(_) => ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
            None => ServerCapabilities::builder().enable_tools().build(),
        };
        let config = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("symphony", env!("CARGO_PKG_VERSION")));
        match &self.instructions {
            Some(text) => config.with_instructions(text.clone()),
            None => config,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tool_infos()))
    }

    fn get_tool(&self, name: &str) -> Option<McpToolInfo> {
        self.tools.get(name).map(|tool| tool_info(tool.spec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.into_owned();
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let tools = Arc::clone(&self.tools);
        let result = match off_thread(move || tools.call(&name, arguments)).await? {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            // A name the server does not have is the client's mistake, not the tool's.
            Err(e @ ToolError::Unknown { .. }) => {
                return Err(ErrorData::invalid_params(e.to_string(), None))
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let Some(source) = self.resources.clone() else {
            return Ok(ListResourcesResult::default());
        };
        let entries = off_thread(move || source.list())
            .await?
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ListResourcesResult::with_all_items(
            entries
                .into_iter()
                .map(|entry| {
                    let resource =
                        Resource::new(entry.uri, entry.name).with_mime_type(entry.mime_type);
                    match entry.description {
                        Some(d) => resource.with_description(d),
                        None => resource,
                    }
                })
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let not_found = || ErrorData::resource_not_found(format!("no resource {uri}"), None);
        let Some(source) = self.resources.clone() else {
            return Err(not_found());
        };
        let wanted = uri.clone();
        let found = off_thread(move || source.read(&wanted))
            .await?
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let Some((text, mime_type)) = found else {
            return Err(not_found());
        };
        let contents = ResourceContents::TextResourceContents {
            uri: uri.clone(),
            mime_type: Some(mime_type),
            text,
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// The URI scheme of Symphony's resources.
const COLLECTION_PREFIX: &str = "symphony://collections/";

/// RAG collections as resources: one per collection (`symphony://collections/NAME`), read as
/// JSON with its settings and its documents. Collections are read at each request, so
/// documents ingested while the server runs show.
pub struct CollectionResources {
    root: PathBuf,
    /// The collections offered, by name.
    names: Vec<String>,
}

impl CollectionResources {
    pub fn new(root: impl Into<PathBuf>, names: Vec<String>) -> Self {
        Self {
            root: root.into(),
            names,
        }
    }
}

impl ResourceSource for CollectionResources {
    fn list(&self) -> Result<Vec<ResourceEntry>, String> {
        let mut entries = Vec::new();
        for name in &self.names {
            let collection =
                symphony_rag::Collection::open(&self.root, name).map_err(|e| e.to_string())?;
            let summary = collection.summary().map_err(|e| e.to_string())?;
            entries.push(ResourceEntry {
                uri: format!("{COLLECTION_PREFIX}{name}"),
                name: name.clone(),
                description: Some(format!(
                    "RAG collection: {} documents in {} chunks, embedded by {}",
                    summary.documents, summary.chunks, summary.config.embedder
                )),
                mime_type: "application/json".into(),
            });
        }
        Ok(entries)
    }

    fn read(&self, uri: &str) -> Result<Option<(String, String)>, String> {
        let Some(name) = uri.strip_prefix(COLLECTION_PREFIX) else {
            return Ok(None);
        };
        if !self.names.iter().any(|n| n == name) {
            return Ok(None);
        }
        let collection =
            symphony_rag::Collection::open(&self.root, name).map_err(|e| e.to_string())?;
        let body = json!({
            "collection": collection.summary().map_err(|e| e.to_string())?,
            "documents": collection.documents().map_err(|e| e.to_string())?,
        });
        Ok(Some((body.to_string(), "application/json".into())))
    }
}
