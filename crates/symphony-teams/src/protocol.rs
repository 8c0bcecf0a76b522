//! The FIPA interaction protocols as state machines: request (SC00026H), query (SC00027H),
//! propose (SC00036H), subscribe (SC00035H), contract-net (SC00029H) and iterated
//! contract-net (SC00030H).
//!
//! A [`Conversation`] follows one conversation from the initiator's side: one state per
//! participant (a contract-net's call goes to many, each answering for itself). Every
//! message is checked against the protocol before it counts; an illegal one is rejected
//! with the state it met. As the specifications say, `not-understood` is legal from
//! either side at any point (it ends that participant's part) and the initiator may
//! `cancel` at any point after opening (the participant then answers `inform` or
//! `failure`). A `reply-by` on the initiator's message is a deadline for the participant's
//! answer: a later answer is rejected as [`ProtocolError::Late`], and [`Conversation::expire`]
//! ends the parts whose deadline passed unanswered.

use std::collections::BTreeMap;
use std::fmt;

use crate::acl::{AgentId, Message, Performative, Timestamp};

/// The interaction protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Request,
    Query,
    Propose,
    Subscribe,
    ContractNet,
    IteratedContractNet,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Self::Request,
        Self::Query,
        Self::Propose,
        Self::Subscribe,
        Self::ContractNet,
        Self::IteratedContractNet,
    ];

    /// The name a message's `protocol` parameter carries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "fipa-request",
            Self::Query => "fipa-query",
            Self::Propose => "fipa-propose",
            Self::Subscribe => "fipa-subscribe",
            Self::ContractNet => "fipa-contract-net",
            Self::IteratedContractNet => "fipa-iterated-contract-net",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one participant's part of a conversation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The initiator has asked (request, query, propose, subscribe, cfp); an answer is due.
    Asked,
    /// The participant agreed to a request, query or subscription; the result is due.
    Agreed,
    /// A contract-net participant has bid; the initiator accepts, rejects or (iterated)
    /// calls again.
    Proposed,
    /// Its proposal was accepted; the result is due.
    Awarded,
    /// The initiator cancelled; the participant confirms (`inform`) or says it failed.
    Cancelling,
    Done(Outcome),
}

/// How a participant's part ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Refused,
    Failed,
    /// Its proposal was rejected (contract-net), or the proposal it received (propose).
    Rejected,
    Cancelled,
    NotUnderstood,
    /// Its answer did not come by the `reply-by` deadline.
    TimedOut,
}

/// Which side sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Participant,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("`{0}` does not open a conversation in any FIPA protocol Symphony follows")]
    NoOpening(Performative),
    #[error("unknown interaction protocol `{0}`")]
    UnknownProtocol(String),
    #[error("`{act}` does not open {protocol}")]
    BadOpening {
        protocol: Protocol,
        act: Performative,
    },
    #[error("a conversation needs a conversation-id")]
    NoConversationId,
    #[error("message for conversation {got:?}, this is {expected}")]
    WrongConversation {
        expected: String,
        got: Option<String>,
    },
    #[error("{agent} takes no part in this conversation")]
    Stranger { agent: AgentId },
    #[error(
        "{protocol}: `{act}` from the {side:?} is not allowed when {participant} is at {stage:?}"
    )]
    Illegal {
        protocol: Protocol,
        participant: AgentId,
        stage: Stage,
        side: Side,
        act: Performative,
    },
    #[error("{participant} answered `{act}` after the deadline ({by} ms since the epoch)")]
    Late {
        participant: AgentId,
        act: Performative,
        by: u64,
    },
}

#[derive(Clone, Debug)]
struct Part {
    stage: Stage,
    /// When the participant's answer is due.
    reply_by: Option<Timestamp>,
}

/// One conversation, followed from its opening message.
#[derive(Clone, Debug)]
pub struct Conversation {
    protocol: Protocol,
    id: String,
    initiator: AgentId,
    parts: BTreeMap<AgentId, Part>,
}

/// The state a participant's part moves to when `side` sends `act` at `stage`, or `None`
/// when the protocol does not allow it there.
fn next(protocol: Protocol, stage: Stage, side: Side, act: Performative) -> Option<Stage> {
    use Outcome::*;
    use Performative as P;
    use Protocol::*;
    use Side::*;
    use Stage::*;
    if let Done(_) = stage {
        return None;
    }
    match (side, act) {
        (_, P::NotUnderstood) => return Some(Done(NotUnderstood)),
        (Initiator, P::Cancel) => return Some(Cancelling),
        _ => {}
    }
    if stage == Cancelling {
        return match (side, act) {
            (Participant, P::Inform) => Some(Done(Cancelled)),
            (Participant, P::Failure) => Some(Done(Failed)),
            _ => None,
        };
    }
    match (protocol, stage, side, act) {
        // Request and query: `agree` is optional, the result may come straight away.
        (Request | Query | Subscribe, Asked, Participant, P::Agree) => Some(Agreed),
        (Request | Query | Subscribe, Asked, Participant, P::Refuse) => Some(Done(Refused)),
        (Request, Asked | Agreed, Participant, P::Inform) => Some(Done(Completed)),
        (Query, Asked | Agreed, Participant, P::Inform | P::InformIf | P::InformRef) => {
            Some(Done(Completed))
        }
        (Request | Query | Subscribe, Asked | Agreed, Participant, P::Failure) => {
            Some(Done(Failed))
        }
        // Subscribe: notifications keep coming until the initiator cancels.
        (Subscribe, Asked | Agreed, Participant, P::Inform | P::InformRef) => Some(Agreed),
        // Propose: the participant accepts or rejects the initiator's proposal.
        (Propose, Asked, Participant, P::AcceptProposal) => Some(Done(Completed)),
        (Propose, Asked, Participant, P::RejectProposal) => Some(Done(Rejected)),
        // Contract-net.
        (ContractNet | IteratedContractNet, Asked, Participant, P::Propose) => Some(Proposed),
        (ContractNet | IteratedContractNet, Asked, Participant, P::Refuse) => Some(Done(Refused)),
        (ContractNet | IteratedContractNet, Proposed, Initiator, P::AcceptProposal) => {
            Some(Awarded)
        }
        (ContractNet | IteratedContractNet, Proposed, Initiator, P::RejectProposal) => {
            Some(Done(Rejected))
        }
        (IteratedContractNet, Proposed, Initiator, P::CallForProposal) => Some(Asked),
        (ContractNet | IteratedContractNet, Awarded, Participant, P::Inform) => {
            Some(Done(Completed))
        }
        (ContractNet | IteratedContractNet, Awarded, Participant, P::Failure) => Some(Done(Failed)),
        _ => None,
    }
}

/// The act that opens each protocol.
fn opens(protocol: Protocol, act: Performative) -> bool {
    use Performative as P;
    match protocol {
        Protocol::Request => act == P::Request,
        Protocol::Query => matches!(act, P::QueryIf | P::QueryRef),
        Protocol::Propose => act == P::Propose,
        Protocol::Subscribe => act == P::Subscribe,
        Protocol::ContractNet | Protocol::IteratedContractNet => act == P::CallForProposal,
    }
}

impl Conversation {
    /// Follows the conversation `opening` starts, at `opening.protocol` (or the protocol
    /// its act opens, when it names none).
    pub fn open(opening: &Message) -> Result<Conversation, ProtocolError> {
        let protocol = match &opening.protocol {
            Some(name) => Protocol::from_name(name)
                .ok_or_else(|| ProtocolError::UnknownProtocol(name.clone()))?,
            None => Protocol::ALL
                .into_iter()
                .find(|p| opens(*p, opening.performative))
                .ok_or(ProtocolError::NoOpening(opening.performative))?,
        };
        if !opens(protocol, opening.performative) {
            return Err(ProtocolError::BadOpening {
                protocol,
                act: opening.performative,
            });
        }
        let id = opening
            .conversation_id
            .clone()
            .ok_or(ProtocolError::NoConversationId)?;
        let parts = opening
            .receivers
            .iter()
            .map(|r| {
                let part = Part {
                    stage: Stage::Asked,
                    reply_by: opening.reply_by,
                };
                (r.clone(), part)
            })
            .collect();
        Ok(Conversation {
            protocol,
            id,
            initiator: opening.sender.clone(),
            parts,
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Checks `message` against the protocol and, when legal, moves the parts it concerns
    /// (a participant's own; each receiver's, for the initiator's). Deadlines are judged
    /// by the clock now.
    pub fn observe(&mut self, message: &Message) -> Result<(), ProtocolError> {
        self.observe_at(message, Timestamp::now())
    }

    /// [`Conversation::observe`] at time `now`.
    pub fn observe_at(&mut self, message: &Message, now: Timestamp) -> Result<(), ProtocolError> {
        if message.conversation_id.as_deref() != Some(self.id.as_str()) {
            return Err(ProtocolError::WrongConversation {
                expected: self.id.clone(),
                got: message.conversation_id.clone(),
            });
        }
        let act = message.performative;
        if message.sender == self.initiator {
            // Check every receiver first, so a message illegal for one moves none.
            let mut moves = Vec::with_capacity(message.receivers.len());
            for receiver in &message.receivers {
                let part = self
                    .parts
                    .get(receiver)
                    .ok_or_else(|| ProtocolError::Stranger {
                        agent: receiver.clone(),
                    })?;
                let stage = next(self.protocol, part.stage, Side::Initiator, act)
                    .ok_or_else(|| self.illegal(receiver, part.stage, Side::Initiator, act))?;
                moves.push((receiver.clone(), stage));
            }
            for (receiver, stage) in moves {
                let part = self.parts.get_mut(&receiver).expect("checked above");
                part.stage = stage;
                // A new ask (a call in a new round, a cancel) sets a new deadline.
                part.reply_by = message.reply_by;
            }
            return Ok(());
        }
        let sender = &message.sender;
        let part = self
            .parts
            .get(sender)
            .ok_or_else(|| ProtocolError::Stranger {
                agent: sender.clone(),
            })?;
        let stage = next(self.protocol, part.stage, Side::Participant, act)
            .ok_or_else(|| self.illegal(sender, part.stage, Side::Participant, act))?;
        let part = self.parts.get_mut(sender).expect("looked up above");
        if let Some(by) = part.reply_by.filter(|by| now > *by) {
            part.stage = Stage::Done(Outcome::TimedOut);
            return Err(ProtocolError::Late {
                participant: sender.clone(),
                act,
                by: by.0,
            });
        }
        part.stage = stage;
        part.reply_by = None;
        Ok(())
    }

    fn illegal(
        &self,
        participant: &AgentId,
        stage: Stage,
        side: Side,
        act: Performative,
    ) -> ProtocolError {
        ProtocolError::Illegal {
            protocol: self.protocol,
            participant: participant.clone(),
            stage,
            side,
            act,
        }
    }

    /// Ends, as timed out, every part whose answer was due before `now`; returns them.
    pub fn expire(&mut self, now: Timestamp) -> Vec<AgentId> {
        let mut expired = Vec::new();
        for (agent, part) in &mut self.parts {
            let waiting = !matches!(part.stage, Stage::Done(_));
            if waiting && part.reply_by.is_some_and(|by| now > by) {
                part.stage = Stage::Done(Outcome::TimedOut);
                expired.push(agent.clone());
            }
        }
        expired
    }

    pub fn stage(&self, participant: &AgentId) -> Option<Stage> {
        self.parts.get(participant).map(|p| p.stage)
    }

    /// The participants at `stage`.
    pub fn at(&self, stage: Stage) -> Vec<AgentId> {
        self.parts
            .iter()
            .filter(|(_, part)| part.stage == stage)
            .map(|(agent, _)| agent.clone())
            .collect()
    }

    /// Whether every part has ended.
    pub fn finished(&self) -> bool {
        self.parts
            .values()
            .all(|p| matches!(p.stage, Stage::Done(_)))
    }
}

#[cfg(test)]
mod tests;
