//! The crew's agents as running things.

use std::collections::BTreeMap;

use symphony_agents::{BuiltinTools, ChatModel, EngineChat, ToolEnv, ToolRegistry};
use symphony_models::Model;

use super::spec::{CrewSpec, Process};
use super::state::CONDUCTOR;
use crate::a2a::RemoteAgent;
use crate::delegation::TrackRecord;

/// Makes a member's chat: `(model, max_tokens)` to a session of its own on that model.
pub type ChatFactory<'f, 'm> =
    dyn FnMut(&str, usize) -> Result<Box<dyn ChatModel + 'm>, symphony_agents::Error> + 'f;

/// How long a remote A2A member may take over one turn.
const REMOTE_TURN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The crew's agents as running things: a chat model each (several may share one
/// underlying model) and their tools.
pub struct Members<'m> {
    pub(super) chats: BTreeMap<String, Box<dyn ChatModel + 'm>>,
    pub(super) tools: BTreeMap<String, ToolRegistry>,
    /// How each agent has done at each kind of contracted task: the coordinator weighs
    /// bids by it, and it is updated after every contract.
    pub record: TrackRecord,
}

impl<'m> Members<'m> {
    pub fn new() -> Self {
        Self {
            chats: BTreeMap::new(),
            tools: BTreeMap::new(),
            record: TrackRecord::default(),
        }
    }

    /// Adds agent `name` (the manager too, for hierarchical crews).
    pub fn add(&mut self, name: &str, chat: Box<dyn ChatModel + 'm>, tools: ToolRegistry) {
        self.chats.insert(name.to_string(), chat);
        self.tools.insert(name.to_string(), tools);
    }
}

impl<'m> Members<'m> {
    /// The members `spec` declares: a chat each from `chat(model, max_tokens)` (a session
    /// of its own on the named model, answers capped at `max_tokens`), with its built-in
    /// tools; remote A2A agents through their endpoints; and the built-in manager when a
    /// hierarchical crew names none.
    pub fn for_spec(
        spec: &CrewSpec,
        chat: &mut ChatFactory<'_, 'm>,
        max_tokens: usize,
    ) -> Result<Self, CrewError> {
        let mut members = Members::new();
        let env = ToolEnv {
            open_collection: None,
            memory: None,
            sampler: None,
        };
        let failed = |agent: &str| {
            let agent = agent.to_string();
            move |error| CrewError::Agent { agent, error }
        };
        for (name, agent) in &spec.agents {
            if let Some(url) = &agent.a2a {
                let remote = RemoteAgent::connect(url, REMOTE_TURN_TIMEOUT).map_err(|e| {
                    CrewError::Agent {
                        agent: name.clone(),
                        error: symphony_agents::Error::Model(e.to_string()),
                    }
                })?;
                members.add(name, Box::new(remote), ToolRegistry::new());
                continue;
            }
            let model = agent.model.as_deref().unwrap_or(&spec.model);
            let chat = chat(model, max_tokens).map_err(failed(name))?;
            let mut tools = ToolRegistry::new();
            let builtin = BuiltinTools {
                names: &agent.tools,
                workspace: spec.workspace.as_deref(),
                http_allow: &[],
                collection: None,
            };
            for tool in builtin.build(&env).map_err(failed(name))? {
                tools.register_shared(tool).map_err(failed(name))?;
            }
            members.add(name, chat, tools);
        }
        if spec.process == Process::Hierarchical && spec.manager.is_none() {
            // The built-in manager only names an agent.
            let chat = chat(&spec.model, 64).map_err(failed(CONDUCTOR))?;
            members.add(CONDUCTOR, chat, ToolRegistry::new());
        }
        Ok(members)
    }

    /// [`Members::for_spec`] on models opened in this process (`model(name)`).
    pub fn on_models(
        spec: &CrewSpec,
        model: &dyn Fn(&str) -> &'m Model,
        max_tokens: usize,
    ) -> Result<Self, CrewError> {
        Self::for_spec(
            spec,
            &mut |name, max_tokens| {
                let chat = EngineChat::new(model(name))?.with_max_tokens(max_tokens);
                Ok(Box::new(chat) as Box<dyn ChatModel + 'm>)
            },
            max_tokens,
        )
    }

    pub(super) fn chat(&mut self, name: &str) -> Option<&mut Box<dyn ChatModel + 'm>> {
        self.chats.get_mut(name)
    }
}

impl Default for Members<'_> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrewError {
    #[error("no model for agent `{0}`")]
    NoMember(String),
    #[error("saving the run: {0}")]
    Save(String),
    #[error("agent `{agent}`: {error}")]
    Agent {
        agent: String,
        error: symphony_agents::Error,
    },
}
