use crate::acl::AgentId;
use crate::protocol::ProtocolError;

/// What can go wrong on the bus, with the directory, or in a conversation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("an agent named `{0}` is already on this bus")]
    NameTaken(AgentId),
    /// Nobody on the bus by these names: the others got the message.
    #[error("no agent named {}", names(.0))]
    Undeliverable(Vec<AgentId>),
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the mailbox is closed")]
    Closed,
    /// The other side answered, but not with what was asked for.
    #[error("`{performative}` from {sender}: {content}")]
    Refused {
        performative: crate::acl::Performative,
        sender: AgentId,
        content: String,
    },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

fn names(agents: &[AgentId]) -> String {
    let quoted: Vec<String> = agents.iter().map(|a| format!("`{a}`")).collect();
    quoted.join(", ")
}
