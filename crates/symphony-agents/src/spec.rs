//! Agents declared in YAML:
//!
//! ```yaml
//! name: bookkeeper
//! model: qwen2.5-coder:0.5b
//! instructions: You keep the accounts. Use the calculator for every sum.
//! tools: [calculator, read_file, list_files]
//! workspace: books          # the file tools' directory, relative to this file
//! loop: react               # react | plan | reflect
//! rubric: Every figure comes from the calculator.   # reflect: the critic's yardstick
//! max_revisions: 2          # reflect: revisions after the first draft
//! max_steps: 8
//! tool_choice: required     # auto (default) | required: call a tool before answering
//! time_budget_secs: 120     # optional
//! context_tokens: 4096      # the prompt's budget: older turns are summarised beyond it
//! approval: [write_file]    # tools that wait for a person's yes
//! http_allow: [docs.rs]     # http_fetch: hosts or URL prefixes it may reach (none by default)
//! collection: handbook      # search_documents: the RAG collection it searches
//! memory:                   # long-term facts (remember/recall) and past runs
//!   facts: true
//!   episodes: 2
//! vars: {company: Acme}     # {{company}} in the instructions (runs may give their own)
//! examples:                 # few-shot: the `few_shot` nearest the task are shown
//!   - {task: "What is 2 + 2?", answer: "4"}
//! few_shot: 2
//! mcp_servers:              # tools of MCP servers join the built-in ones
//!   - name: docs
//!     command: [npx, "@modelcontextprotocol/server-filesystem", "docs"]
//!     tools: [read_text_file, list_directory]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use symphony_types::ToolSpec;

use crate::mcp::{McpServerConfig, Sampler};
use crate::memory::{fill_template, Example, Memory, MemoryConfig, Preamble, Recall, Remember};
use crate::run::{AgentConfig, RunState, ToolChoice, DEFAULT_INSTRUCTIONS};
use symphony_models::embedding::Embedder;
use symphony_rag::Collection;

use crate::tools::{Calculator, HttpFetch, RunPython, SearchDocuments, Workspace};
use crate::{Error, McpClient, Tool, ToolError, ToolRegistry};

/// The built-in tools an agent file can name.
pub const BUILTIN_TOOLS: [&str; 7] = [
    "calculator",
    "read_file",
    "list_files",
    "write_file",
    "run_python",
    "http_fetch",
    "search_documents",
];

/// How long one `http_fetch` may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest `time_budget_secs`: a week.
const MAX_TIME_BUDGET_SECS: u64 = 7 * 24 * 3600;

/// Opens a RAG collection by name, with the embedder it was built with.
pub type OpenCollection<'a> = dyn Fn(&str) -> Result<(Collection, Embedder), String> + 'a;

/// What building an agent's tools takes from the program that runs it.
#[derive(Default, Clone)]
pub struct ToolEnv<'a> {
    /// For `search_documents`; without it, an agent that names the tool is refused.
    pub open_collection: Option<&'a OpenCollection<'a>>,
    /// The agent's memory, for `remember` and `recall` (agents with `memory`).
    pub memory: Option<Arc<Memory>>,
    /// The model that answers an MCP server's sampling requests; without it, servers are
    /// told this client does not sample.
    pub sampler: Option<Arc<dyn Sampler>>,
}

/// How an agent reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopKind {
    /// Think, call tools, read results, answer.
    #[default]
    React,
    /// Plan steps with dependencies, run them, re-plan on failure.
    Plan,
    /// Draft, critique, revise.
    Reflect,
}

/// One agent file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    /// A store name or a model file.
    pub model: String,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default, rename = "loop")]
    pub loop_kind: LoopKind,
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    /// `required`: the model calls a tool before it may answer.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    #[serde(default)]
    pub time_budget_secs: Option<u64>,
    /// The file tools' directory; relative paths are taken from the agent file's directory.
    #[serde(default)]
    pub workspace: Option<PathBuf>,
    /// Tools whose every call waits for approval (built-in or from an MCP server).
    #[serde(default)]
    pub approval: Vec<String>,
    /// Reflection: what a good answer must meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    /// Reflection: revisions after the first draft, at most.
    #[serde(default = "default_max_revisions")]
    pub max_revisions: usize,
    /// MCP servers whose tools the agent may use; a stdio server runs in the agent file's
    /// directory unless it names a `cwd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerConfig>,
    /// `http_fetch`: the hosts (`example.com`, `*.example.com`, `host:port`) or URL prefixes
    /// (`https://example.com/docs/`) it may reach. Empty: the tool cannot be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_allow: Vec<String>,
    /// The prompt's budget in tokens: older turns are summarised beyond it (default: the
    /// model's context length less room for the reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<usize>,
    /// `search_documents`: the RAG collection it searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Long-term and episodic memory; none without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryConfig>,
    /// Values for `{{name}}` in the instructions (a run's own values come first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Worked examples; the `few_shot` nearest the task in meaning are shown with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    #[serde(default = "default_few_shot")]
    pub few_shot: usize,
}

fn default_few_shot() -> usize {
    2
}

fn default_max_steps() -> usize {
    8
}

fn default_max_revisions() -> usize {
    2
}

impl AgentSpec {
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let spec: Self =
            serde_yaml_ng::from_str(text).map_err(|e| Error::InvalidAgent(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads an agent file; a relative `workspace` is resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidAgent(format!("{}: {e}", path.display())))?;
        let mut spec = Self::from_yaml(&text)
            .map_err(|e| Error::InvalidAgent(format!("{}: {e}", path.display())))?;
        // Resolved now, so a run resumed from another directory finds the same places.
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        if let Some(ws) = &spec.workspace {
            if ws.is_relative() {
                spec.workspace = Some(base.join(ws));
            }
        }
        for server in &mut spec.mcp_servers {
            if server.command.is_some() {
                server.cwd = Some(match &server.cwd {
                    Some(dir) => base.join(dir),
                    None => base.clone(),
                });
            }
        }
        Ok(spec)
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |m: String| Err(Error::InvalidAgent(m));
        if self.name.trim().is_empty() {
            return invalid("`name` is empty".into());
        }
        if self.max_steps == 0 {
            return invalid("`max_steps` must be at least 1".into());
        }
        // A run's deadline is its start plus the budget: bounded so that it cannot overflow.
        if self
            .time_budget_secs
            .is_some_and(|t| t == 0 || t > MAX_TIME_BUDGET_SECS)
        {
            return invalid(format!(
                "`time_budget_secs` must be between 1 and {MAX_TIME_BUDGET_SECS}"
            ));
        }
        self.builtins().check()?;
        let mut servers: Vec<&str> = Vec::new();
        for server in &self.mcp_servers {
            server.validate().map_err(Error::InvalidAgent)?;
            if servers.contains(&server.name.as_str()) {
                return invalid(format!("two MCP servers are named '{}'", server.name));
            }
            servers.push(&server.name);
        }
        for tool in &self.approval {
            // An MCP server's tools are known once it runs: checked in `registry`.
            if !self.tools.contains(tool) && self.mcp_servers.is_empty() {
                return invalid(format!(
                    "`approval` names '{tool}', which is not in `tools`"
                ));
            }
        }
        Ok(())
    }

    /// The built-in tools the file names, with the fields that set them up.
    fn builtins(&self) -> BuiltinTools<'_> {
        BuiltinTools {
            names: &self.tools,
            workspace: self.workspace.as_deref(),
            http_allow: &self.http_allow,
            collection: self.collection.as_deref(),
        }
    }

    /// The loop's settings, the instructions' `{{name}}`s filled from the file's `vars`
    /// (those it has no value for stay as written; [`AgentSpec::start`] refuses them).
    pub fn config(&self) -> AgentConfig {
        let instructions = self.instructions.as_deref().unwrap_or(DEFAULT_INSTRUCTIONS);
        AgentConfig {
            instructions: fill_template(instructions, &self.vars)
                .unwrap_or_else(|_| instructions.to_string()),
            max_steps: self.max_steps,
            time_budget: self.time_budget_secs.map(Duration::from_secs),
            rubric: self.rubric.clone(),
            max_revisions: self.max_revisions,
            context_tokens: self.context_tokens,
            tool_choice: self.tool_choice,
        }
    }

    /// A new run of `task`: its system prompt is the instructions (`vars` over the file's
    /// own filled in), then the remembered facts and past runs nearest the task, then the
    /// examples nearest it. `embedder` chooses examples when there is no memory.
    pub fn start(
        &self,
        task: &str,
        vars: &BTreeMap<String, String>,
        memory: Option<&Memory>,
        embedder: Option<&Embedder>,
    ) -> Result<(AgentConfig, RunState), Error> {
        let mut all = self.vars.clone();
        all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut config = self.config();
        let instructions = self.instructions.as_deref().unwrap_or(DEFAULT_INSTRUCTIONS);
        config.instructions = fill_template(instructions, &all)?;
        let preamble = Preamble {
            instructions: &config.instructions,
            vars: &all,
            examples: &self.examples,
            few_shot: self.few_shot,
            memory: memory.zip(self.memory.as_ref()),
            embedder,
        };
        let system = preamble.system_prompt(task)?;
        let mut state = RunState::new(&config, task);
        state.messages[0].content = system;
        Ok((config, state))
    }

    /// The agent's tools, built (MCP servers started or reached, the collection opened);
    /// those under `approval` are marked so.
    pub fn registry(&self, env: ToolEnv<'_>) -> Result<ToolRegistry, Error> {
        let mut registry = ToolRegistry::new();
        for (name, tool) in self.tools.iter().zip(self.builtins().build(&env)?) {
            let tool = if self.approval.contains(name) {
                Arc::new(Approved(tool))
            } else {
                tool
            };
            registry.register_shared(tool)?;
        }
        if self.memory.as_ref().is_some_and(|m| m.facts) {
            let memory = env.memory.clone().ok_or_else(|| {
                Error::InvalidAgent("`memory` cannot be used here: no memory store is open".into())
            })?;
            registry.register(Remember(memory.clone()))?;
            registry.register(Recall(memory))?;
        }
        for server in &self.mcp_servers {
            let client = Arc::new(McpClient::connect_with(server, env.sampler.clone())?);
            for tool in client.tools(server.tools.as_deref())? {
                let name = tool.spec().name;
                let tool: Arc<dyn Tool> = if self.approval.contains(&name) {
                    Arc::new(Approved(Arc::new(tool)))
                } else {
                    Arc::new(tool)
                };
                registry.register_shared(tool).map_err(|e| match e {
                    Error::Duplicate(name) => Error::InvalidAgent(format!(
                        "MCP server '{}' has a tool named '{name}', as another tool does; \
                         list the ones to use under its `tools`",
                        server.name
                    )),
                    e => e,
                })?;
            }
        }
        for tool in &self.approval {
            if registry.get(tool).is_none() {
                return Err(Error::InvalidAgent(format!(
                    "`approval` names '{tool}', which is not one of the agent's tools"
                )));
            }
        }
        Ok(registry)
    }
}

/// Built-in tools by name, set up as an agent file's fields say: the tools an agent file
/// lists, and those `symphony mcp serve` offers.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinTools<'a> {
    /// Names from [`BUILTIN_TOOLS`].
    pub names: &'a [String],
    /// The file tools' directory.
    pub workspace: Option<&'a Path>,
    /// `http_fetch`'s allowlist.
    pub http_allow: &'a [String],
    /// `search_documents`' collection.
    pub collection: Option<&'a str>,
}

impl BuiltinTools<'_> {
    /// What can be told before building: every name is a built-in tool, and each has the
    /// settings it needs (a workspace, a collection, a valid allowlist).
    pub fn check(&self) -> Result<(), Error> {
        let invalid = |m: String| Err(Error::InvalidAgent(m));
        for tool in self.names {
            if !BUILTIN_TOOLS.contains(&tool.as_str()) {
                return invalid(format!(
                    "unknown tool '{tool}'; the built-in tools are: {}",
                    BUILTIN_TOOLS.join(", ")
                ));
            }
        }
        let uses = |tool: &str| self.names.iter().any(|t| t == tool);
        if uses("http_fetch") {
            HttpFetch::new(self.http_allow, HTTP_TIMEOUT).map_err(Error::InvalidAgent)?;
        }
        if uses("search_documents") && self.collection.is_none() {
            return invalid("search_documents needs a `collection` to search".into());
        }
        let files = ["read_file", "list_files", "write_file"];
        if self.workspace.is_none() && self.names.iter().any(|t| files.contains(&t.as_str())) {
            return invalid("the file tools need a `workspace` directory".into());
        }
        Ok(())
    }

    /// The tools, in the order of `names`.
    pub fn build(&self, env: &ToolEnv<'_>) -> Result<Vec<Arc<dyn Tool>>, Error> {
        self.check()?;
        let invalid = |m: String| Error::InvalidAgent(m);
        let workspace = match self.workspace {
            Some(dir) => Some(
                Workspace::new(dir)
                    .map_err(|e| invalid(format!("workspace {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        let mut tools = Vec::new();
        for name in self.names {
            let tool: Arc<dyn Tool> = match (name.as_str(), &workspace) {
                ("calculator", _) => Arc::new(Calculator),
                ("run_python", _) => Arc::new(RunPython::default()),
                ("http_fetch", _) => {
                    Arc::new(HttpFetch::new(self.http_allow, HTTP_TIMEOUT).map_err(invalid)?)
                }
                ("search_documents", _) => {
                    let name = self.collection.unwrap_or_default();
                    let open = env.open_collection.ok_or_else(|| {
                        invalid(
                            "search_documents cannot be used here: no collections are open \
                             to this program"
                                .into(),
                        )
                    })?;
                    let (collection, embedder) =
                        open(name).map_err(|e| invalid(format!("collection '{name}': {e}")))?;
                    Arc::new(SearchDocuments::new(collection, embedder))
                }
                ("read_file", Some(ws)) => Arc::new(ws.tools().0),
                ("list_files", Some(ws)) => Arc::new(ws.tools().1),
                ("write_file", Some(ws)) => Arc::new(ws.tools().2),
                _ => unreachable!("checked: {name}"),
            };
            tools.push(tool);
        }
        Ok(tools)
    }
}

/// A tool whose calls wait for approval, whatever the tool itself says.
struct Approved(Arc<dyn Tool>);

impl Tool for Approved {
    fn spec(&self) -> ToolSpec {
        self.0.spec()
    }

    fn call(&self, arguments: Value) -> Result<String, ToolError> {
        self.0.call(arguments)
    }

    fn needs_approval(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_file_gives_its_tools_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.yaml");
        std::fs::write(
            &file,
            "name: clerk\nmodel: qwen2.5-coder:0.5b\ninstructions: Be brief.\n\
             tools: [calculator, read_file, write_file]\nworkspace: files\nloop: react\n\
             max_steps: 5\ntime_budget_secs: 60\napproval: [write_file]\n",
        )
        .unwrap();
        let spec = AgentSpec::load(&file).unwrap();
        assert_eq!(
            spec.workspace.as_deref(),
            Some(dir.path().join("files").as_path())
        );
        let config = spec.config();
        assert_eq!(
            (config.instructions.as_str(), config.max_steps),
            ("Be brief.", 5)
        );
        assert_eq!(config.time_budget, Some(Duration::from_secs(60)));
        let tools = spec.registry(ToolEnv::default()).unwrap();
        assert_eq!(
            tools.names().collect::<Vec<_>>(),
            ["calculator", "read_file", "write_file"]
        );
        assert!(tools.get("write_file").unwrap().needs_approval());
        assert!(!tools.get("read_file").unwrap().needs_approval());
        assert!(dir.path().join("files").is_dir());
    }

    #[test]
    fn mistakes_in_an_agent_file_are_named() {
        let cases = [
            (
                "name: a\nmodel: m\ntools: [browser]\n",
                "unknown tool 'browser'",
            ),
            (
                "name: a\nmodel: m\ntools: [read_file]\n",
                "need a `workspace`",
            ),
            (
                "name: a\nmodel: m\napproval: [calculator]\n",
                "not in `tools`",
            ),
            ("name: a\nmodel: m\nsteps: 3\n", "unknown field `steps`"),
            ("name: a\n", "missing field `model`"),
            (
                "name: a\nmodel: m\nmcp_servers:\n  - name: x\n",
                "needs either `command` (stdio) or `url` (HTTP)",
            ),
            (
                "name: a\nmodel: m\nmcp_servers:\n  - {name: x, url: ftp://h}\n",
                "must be http:// or https://",
            ),
            (
                "name: a\nmodel: m\nmcp_servers:\n  - {name: x, url: http://h}\n  - {name: x, command: [y]}\n",
                "two MCP servers are named 'x'",
            ),
            ("name: a\nmodel: m\nmax_steps: 0\n", "at least 1"),
            (
                "name: a\nmodel: m\nmcp_servers:\n  - {name: x, url: http://h, timeout_secs: 18446744073709551615}\n",
                "`timeout_secs` must be between 1 and 86400",
            ),
            (
                "name: a\nmodel: m\ntime_budget_secs: 18446744073709551615\n",
                "`time_budget_secs` must be between 1",
            ),
            (
                "name: a\nmodel: m\ntools: [http_fetch]\n",
                "http_fetch needs `http_allow`",
            ),
            (
                "name: a\nmodel: m\ntools: [http_fetch]\nhttp_allow: [\"ftp://x\"]\n",
                "only http:// and https://",
            ),
            (
                "name: a\nmodel: m\ntools: [search_documents]\n",
                "needs a `collection`",
            ),
        ];
        for (yaml, expected) in cases {
            let e = AgentSpec::from_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml:?}: {e}");
        }
    }
}
