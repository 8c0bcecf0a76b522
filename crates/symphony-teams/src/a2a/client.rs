//! A remote A2A agent as a crew member: each turn is a `SendMessage` to it, within one
//! context for the whole crew run, and the reply (a message, or a task's artifacts once it
//! ends) is the turn's content.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use symphony_agents::{CallMode, ChatModel, ModelTurn};
use symphony_types::{ChatMessage, Role as ChatRole, ToolSpec};

use super::{A2aMessage, AgentCard, Part, Role, StreamResponse, Task, CARD_PATH, VERSION};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{url} answered with what is not A2A: {error}")]
    Protocol { url: String, error: String },
    #[error("the agent answered with error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("the task ended {0}")]
    Task(String),
    #[error("the agent card at {0} offers no JSON-RPC interface")]
    NoInterface(String),
}

/// A remote agent, known by its card.
pub struct RemoteAgent {
    pub card: AgentCard,
    endpoint: String,
    http: ureq::Agent,
    /// One conversation for all turns of this member.
    context_id: String,
    /// How long a turn may take, polling included.
    timeout: Duration,
}

impl RemoteAgent {
    /// Reads the agent's card: `url` is its base URL (the card is under
    /// `/.well-known/agent-card.json`) or the card's own URL.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, RemoteError> {
        let card_url = if url.ends_with(".json") {
            url.to_string()
        } else {
            format!("{}/{CARD_PATH}", url.trim_end_matches('/'))
        };
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        let body = read(
            &card_url,
            http.get(&card_url).header("A2A-Version", VERSION).call(),
        )?;
        let card: AgentCard = serde_json::from_str(&body).map_err(|e| RemoteError::Protocol {
            url: card_url.clone(),
            error: e.to_string(),
        })?;
        let endpoint = card
            .json_rpc_url()
            .ok_or_else(|| RemoteError::NoInterface(card_url.clone()))?
            .to_string();
        Ok(Self {
            card,
            endpoint,
            http,
            context_id: fresh_id("ctx"),
            timeout,
        })
    }

    /// Sends `text` and waits for the answer.
    pub fn ask(&self, text: &str) -> Result<String, RemoteError> {
        let message = A2aMessage {
            message_id: fresh_id("msg"),
            context_id: Some(self.context_id.clone()),
            task_id: None,
            role: Role::User,
            parts: vec![Part::text(text)],
        };
        let result = self.call("SendMessage", json!({"message": message}))?;
        let reply: StreamResponse = serde_json::from_value(result).map_err(|e| self.protocol(e))?;
        let started = Instant::now();
        let mut task = match reply {
            StreamResponse::Message(m) => return Ok(m.text()),
            StreamResponse::Task(task) => task,
            other => {
                return Err(self.protocol(format!("SendMessage answered {other:?}")));
            }
        };
        // A task still running is polled until it ends.
        while !task.status.state.is_terminal() {
            if started.elapsed() > self.timeout {
                return Err(RemoteError::Task(format!(
                    "unfinished after {:?} ({:?})",
                    self.timeout, task.status.state
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
            let result = self.call("GetTask", json!({"id": task.id}))?;
            task = serde_json::from_value::<Task>(result).map_err(|e| self.protocol(e))?;
        }
        match task.status.state {
            super::TaskState::Completed => Ok(task.text()),
            state => Err(RemoteError::Task(format!("{state:?}: {}", task.text()))),
        }
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, RemoteError> {
        let id = fresh_id("rpc");
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let body = read(
            &self.endpoint,
            self.http
                .post(&self.endpoint)
                .header("A2A-Version", VERSION)
                .content_type("application/json")
                .send(request.to_string()),
        )?;
        let mut answer: Value = serde_json::from_str(&body).map_err(|e| self.protocol(e))?;
        if let Some(error) = answer.get("error") {
            return Err(RemoteError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        match answer.get_mut("result").map(Value::take) {
            Some(result) if !result.is_null() => Ok(result),
            _ => Err(self.protocol("an answer with neither result nor error")),
        }
    }

    fn protocol(&self, error: impl ToString) -> RemoteError {
        RemoteError::Protocol {
            url: self.endpoint.clone(),
            error: error.to_string(),
        }
    }
}

fn read(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, RemoteError> {
    let http = |error: String| RemoteError::Http {
        url: url.to_string(),
        error,
    };
    response
        .map_err(|e| http(e.to_string()))?
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .map_err(|e| http(e.to_string()))
}

/// An id unique in this process and unlikely to meet another's.
fn fresh_id(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{kind}-{nanos:x}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A turn as one message to the remote agent: the instructions (system messages) first,
/// then the latest request. The remote agent keeps the conversation (one context).
fn as_text(messages: &[ChatMessage]) -> String {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == ChatRole::System)
        .map(|m| m.content.as_str())
        .collect();
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == ChatRole::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    if system.is_empty() {
        last.to_string()
    } else {
        format!("{}\n\n{last}", system.join("\n"))
    }
}

impl ChatModel for RemoteAgent {
    /// Remote agents use their own tools, not the crew's; what they spend is theirs too
    /// (the turn reports no tokens).
    fn turn(
        &mut self,
        messages: &[ChatMessage],
        _tools: &[ToolSpec],
        _mode: CallMode,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        let content = self
            .ask(&as_text(messages))
            .map_err(|e| symphony_agents::Error::Model(format!("{}: {e}", self.card.name)))?;
        Ok(ModelTurn {
            content,
            calls: Vec::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
        })
    }

    /// Asks for JSON that fits `schema`; a remote agent cannot be held to it, so the caller
    /// reads the answer as it reads any model's and copes when it does not fit.
    fn structured(
        &mut self,
        messages: &[ChatMessage],
        schema: &Value,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        let mut messages = messages.to_vec();
        messages.push(ChatMessage::system(format!(
            "Answer with one JSON object only, that fits this JSON Schema: {schema}"
        )));
        let turn = self.turn(&messages, &[], CallMode::Answer)?;
        Ok(ModelTurn {
            content: json_in(&turn.content).to_string(),
            ..turn
        })
    }
}

/// The JSON object in `text` (from its first `{` to its last `}`), or all of it.
fn json_in(text: &str) -> &str {
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    }
}
