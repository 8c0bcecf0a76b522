//! Agent2Agent (A2A, protocol 1.0, JSON-RPC binding): the wire types both sides use, and
//! [`RemoteAgent`], a remote A2A agent as a crew member. The server side (Symphony's agents
//! as A2A endpoints) is in `symphony-server`.
//!
//! The shapes follow the protocol's JSON form: camelCase fields, enum values such as
//! `ROLE_USER` and `TASK_STATE_COMPLETED`, parts that carry exactly one of `text`, `data`,
//! `url` or `raw`, and a card whose `supportedInterfaces` name the JSON-RPC endpoint.

mod client;

pub use client::{RemoteAgent, RemoteError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version Symphony speaks, sent as the `A2A-Version` header.
pub const VERSION: &str = "1.0";
/// Where a server publishes its card, under the agent's base URL.
pub const CARD_PATH: &str = ".well-known/agent-card.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub supported_interfaces: Vec<AgentInterface>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub default_input_modes: Vec<String>,
    #[serde(default)]
    pub default_output_modes: Vec<String>,
    #[serde(default)]
    pub skills: Vec<Skill>,
}

impl AgentCard {
    /// The JSON-RPC endpoint the card offers.
    pub fn json_rpc_url(&self) -> Option<&str> {
        self.supported_interfaces
            .iter()
            .find(|i| i.protocol_binding == "JSONRPC")
            .map(|i| i.url.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    pub url: String,
    pub protocol_binding: String,
    #[serde(default)]
    pub protocol_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub streaming: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skill {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "ROLE_USER")]
    User,
    #[serde(rename = "ROLE_AGENT")]
    Agent,
}

/// One piece of a message or artifact: text, structured data, a URL or raw bytes (base64).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct A2aMessage {
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub role: Role,
    pub parts: Vec<Part>,
}

impl A2aMessage {
    /// The text of its text parts, joined by new lines; data parts as JSON.
    pub fn text(&self) -> String {
        parts_text(&self.parts)
    }
}

fn parts_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            p.text
                .clone()
                .or_else(|| p.data.as_ref().map(|d| d.to_string()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
    #[serde(rename = "TASK_STATE_AUTH_REQUIRED")]
    AuthRequired,
    #[serde(other, rename = "TASK_STATE_UNSPECIFIED")]
    Unspecified,
}

impl TaskState {
    /// No more work will happen on the task.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Rejected
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<A2aMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub context_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<A2aMessage>,
}

impl Task {
    /// What the task answered: its artifacts' text, else its status message's.
    pub fn text(&self) -> String {
        if self.artifacts.is_empty() {
            self.status
                .message
                .as_ref()
                .map(A2aMessage::text)
                .unwrap_or_default()
        } else {
            self.artifacts
                .iter()
                .map(|a| parts_text(&a.parts))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    pub task_id: String,
    pub context_id: String,
    pub status: TaskStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactUpdate {
    pub task_id: String,
    pub context_id: String,
    pub artifact: Artifact,
}

/// What `SendMessage` answers (a task or a message) and each event of
/// `SendStreamingMessage`: an object with exactly one of these keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamResponse {
    Task(Task),
    Message(A2aMessage),
    StatusUpdate(StatusUpdate),
    ArtifactUpdate(ArtifactUpdate),
}

/// JSON-RPC error codes the protocol names.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const TASK_NOT_FOUND: i64 = -32001;
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    pub const UNSUPPORTED_OPERATION: i64 = -32004;
    pub const VERSION_NOT_SUPPORTED: i64 = -32009;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_wire_forms_match_the_protocol() {
        // As the official Python SDK sends and answers them.
        let task: Task = serde_json::from_value(json!({
            "id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2026-12-07T21:55:59Z",
                "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "echo: hi"}]}},
            "artifacts": [{"artifactId": "a1", "name": "echo", "parts": [{"text": "echo: hi"}]}],
            "history": [{"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]
        }))
        .unwrap();
        assert!(task.status.state.is_terminal());
        assert_eq!(task.text(), "echo: hi");
        let event: StreamResponse = serde_json::from_value(json!({
            "statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_WORKING"}}
        }))
        .unwrap();
        assert!(
            matches!(event, StreamResponse::StatusUpdate(u) if u.status.state == TaskState::Working)
        );
        let message = A2aMessage {
            message_id: "m".into(),
            context_id: None,
            task_id: None,
            role: Role::User,
            parts: vec![Part::text("hello")],
        };
        assert_eq!(
            serde_json::to_value(StreamResponse::Message(message)).unwrap(),
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hello"}]}})
        );
        // A state from a later version of the protocol does not break the task.
        let state: TaskState = serde_json::from_value(json!("TASK_STATE_PAUSED")).unwrap();
        assert_eq!(state, TaskState::Unspecified);
    }
}
