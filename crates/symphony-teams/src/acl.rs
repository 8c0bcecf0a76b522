//! FIPA-ACL messages (FIPA SC00061G, SC00037J): the communicative acts, the message
//! parameters, and how a reply is formed from the message it answers.
//!
//! On the wire a message is JSON with the parameters' FIPA names in snake case
//! (`conversation_id`, `reply_with`, ...) and the act's FIPA name (`cfp`, `query-ref`, ...);
//! [`Message::decode`] checks every field and says what a malformed message lacks, keeping
//! what it could read of its sender and conversation so the answer (`not-understood`) can
//! reach them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The 22 communicative acts of the FIPA Communicative Act Library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Performative {
    AcceptProposal,
    Agree,
    Cancel,
    /// `cfp`: call for proposals.
    CallForProposal,
    Confirm,
    Disconfirm,
    Failure,
    Inform,
    InformIf,
    InformRef,
    NotUnderstood,
    Propagate,
    Propose,
    Proxy,
    QueryIf,
    QueryRef,
    Refuse,
    RejectProposal,
    Request,
    RequestWhen,
    RequestWhenever,
    Subscribe,
}

impl Performative {
    /// Every act, in the library's (alphabetical) order.
    pub const ALL: [Performative; 22] = [
        Self::AcceptProposal,
        Self::Agree,
        Self::Cancel,
        Self::CallForProposal,
        Self::Confirm,
        Self::Disconfirm,
        Self::Failure,
        Self::Inform,
        Self::InformIf,
        Self::InformRef,
        Self::NotUnderstood,
        Self::Propagate,
        Self::Propose,
        Self::Proxy,
        Self::QueryIf,
        Self::QueryRef,
        Self::Refuse,
        Self::RejectProposal,
        Self::Request,
        Self::RequestWhen,
        Self::RequestWhenever,
        Self::Subscribe,
    ];

    /// The act's FIPA name, as written in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AcceptProposal => "accept-proposal",
            Self::Agree => "agree",
            Self::Cancel => "cancel",
            Self::CallForProposal => "cfp",
            Self::Confirm => "confirm",
            Self::Disconfirm => "disconfirm",
            Self::Failure => "failure",
            Self::Inform => "inform",
            Self::InformIf => "inform-if",
            Self::InformRef => "inform-ref",
            Self::NotUnderstood => "not-understood",
            Self::Propagate => "propagate",
            Self::Propose => "propose",
            Self::Proxy => "proxy",
            Self::QueryIf => "query-if",
            Self::QueryRef => "query-ref",
            Self::Refuse => "refuse",
            Self::RejectProposal => "reject-proposal",
            Self::Request => "request",
            Self::RequestWhen => "request-when",
            Self::RequestWhenever => "request-whenever",
            Self::Subscribe => "subscribe",
        }
    }
}

impl fmt::Display for Performative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An act name that is none of the 22.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown communicative act `{0}`")]
pub struct UnknownAct(pub String);

impl FromStr for Performative {
    type Err = UnknownAct;

    /// FIPA names are case-insensitive.
    fn from_str(s: &str) -> Result<Self, UnknownAct> {
        Self::ALL
            .into_iter()
            .find(|act| act.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAct(s.to_string()))
    }
}

impl Serialize for Performative {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Performative {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// An agent's name, unique on its platform (FIPA's `agent-identifier :name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AgentId {
    fn from(name: &str) -> Self {
        Self(name.to_string())
    }
}

impl From<String> for AgentId {
    fn from(name: String) -> Self {
        Self(name)
    }
}

/// A point in time as milliseconds since the Unix epoch: `reply-by` deadlines, which cross
/// processes and machines, so no `Instant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// `within` from now.
    pub fn after(within: Duration) -> Self {
        Self::from(SystemTime::now() + within)
    }

    /// How long until this time, zero once it has passed.
    pub fn remaining(self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(Self::now().0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A FIPA-ACL message. `content` is the act's content expression, here text (often JSON,
/// which `language` then says); the other parameters are FIPA's, with their names in snake
/// case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub performative: Performative,
    pub sender: AgentId,
    pub receivers: Vec<AgentId>,
    /// Where replies go instead of the sender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<AgentId>,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ontology: Option<String>,
    /// The interaction protocol this message belongs to (`fipa-request`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The tag a reply must carry as its `in_reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The latest time a reply is wanted by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_by: Option<Timestamp>,
}

/// Why a message could not be read, with what could be read of it so that the
/// `not-understood` answer reaches its sender in its conversation.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Malformed {
    pub reason: String,
    pub sender: Option<AgentId>,
    pub conversation_id: Option<String>,
    pub reply_with: Option<String>,
    pub protocol: Option<String>,
}

impl Malformed {
    /// The `not-understood` answer from `me`, when the sender is known. Its content says
    /// what was not understood and why, as FIPA asks (`(action) (reason)` in SL; text here).
    pub fn not_understood(&self, me: &AgentId) -> Option<Message> {
        let sender = self.sender.clone()?;
        let mut answer = Message::new(Performative::NotUnderstood, me.clone())
            .to(sender)
            .content(&self.reason);
        answer.conversation_id = self.conversation_id.clone();
        answer.in_reply_to = self.reply_with.clone();
        answer.protocol = self.protocol.clone();
        Some(answer)
    }
}

impl Message {
    pub fn new(performative: Performative, sender: impl Into<AgentId>) -> Self {
        Self {
            performative,
            sender: sender.into(),
            receivers: Vec::new(),
            reply_to: Vec::new(),
            content: String::new(),
            language: None,
            encoding: None,
            ontology: None,
            protocol: None,
            conversation_id: None,
            reply_with: None,
            in_reply_to: None,
            reply_by: None,
        }
    }

    /// Adds a receiver.
    pub fn to(mut self, receiver: impl Into<AgentId>) -> Self {
        self.receivers.push(receiver.into());
        self
    }

    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = content.into();
        self
    }

    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    pub fn conversation(mut self, id: impl Into<String>) -> Self {
        self.conversation_id = Some(id.into());
        self
    }

    pub fn reply_with(mut self, tag: impl Into<String>) -> Self {
        self.reply_with = Some(tag.into());
        self
    }

    pub fn in_reply_to(mut self, tag: impl Into<String>) -> Self {
        self.in_reply_to = Some(tag.into());
        self
    }

    pub fn reply_by(mut self, deadline: Timestamp) -> Self {
        self.reply_by = Some(deadline);
        self
    }

    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    pub fn ontology(mut self, ontology: impl Into<String>) -> Self {
        self.ontology = Some(ontology.into());
        self
    }

    /// The reply `me` sends to this message, as FIPA forms it: to the `reply_to` agents
    /// when there are any, else to the sender; in the same conversation, protocol, language,
    /// encoding and ontology; `in_reply_to` the message's `reply_with`.
    pub fn reply(&self, me: impl Into<AgentId>, performative: Performative) -> Message {
        let receivers = if self.reply_to.is_empty() {
            vec![self.sender.clone()]
        } else {
            self.reply_to.clone()
        };
        Message {
            performative,
            sender: me.into(),
            receivers,
            reply_to: Vec::new(),
            content: String::new(),
            language: self.language.clone(),
            encoding: self.encoding.clone(),
            ontology: self.ontology.clone(),
            protocol: self.protocol.clone(),
            conversation_id: self.conversation_id.clone(),
            reply_with: None,
            in_reply_to: self.reply_with.clone(),
            reply_by: None,
        }
    }

    /// Whether the deadline for replying to this message has passed.
    pub fn expired(&self) -> bool {
        self.reply_by.is_some_and(|by| Timestamp::now() > by)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a message is plain data")
    }

    /// Reads a message from its JSON form, checking that it names an act, a sender and at
    /// least one receiver.
    pub fn decode(bytes: &[u8]) -> Result<Message, Malformed> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Malformed {
            reason: format!("the message is not JSON: {e}"),
            sender: None,
            conversation_id: None,
            reply_with: None,
            protocol: None,
        })?;
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let salvage = |reason: String| Malformed {
            reason,
            sender: text("sender").map(AgentId),
            conversation_id: text("conversation_id"),
            reply_with: text("reply_with"),
            protocol: text("protocol"),
        };
        if let Some(act) = value.get("performative").and_then(|v| v.as_str()) {
            if let Err(unknown) = act.parse::<Performative>() {
                return Err(salvage(unknown.to_string()));
            }
        }
        let message: Message = serde_json::from_value(value.clone())
            .map_err(|e| salvage(format!("malformed message: {e}")))?;
        message.check().map_err(salvage)?;
        Ok(message)
    }

    /// What a message must have to be delivered: a sender and a receiver, none of them
    /// unnamed.
    pub fn check(&self) -> Result<(), String> {
        if self.sender.0.is_empty() {
            return Err("the message has no sender".into());
        }
        if self.receivers.is_empty() {
            return Err("the message has no receiver".into());
        }
        if self.receivers.iter().any(|r| r.0.is_empty()) {
            return Err("a receiver has no name".into());
        }
        Ok(())
    }
}

impl fmt::Display for Message {
    /// The FIPA string form (`(inform :sender (agent-identifier :name a) ...)`), for logs
    /// and transcripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let agent = |a: &AgentId| format!("(agent-identifier :name {})", a.0);
        let set = |agents: &[AgentId]| {
            let names: Vec<String> = agents.iter().map(agent).collect();
            format!("(set {})", names.join(" "))
        };
        write!(f, "({}", self.performative)?;
        write!(f, "\n  :sender {}", agent(&self.sender))?;
        write!(f, "\n  :receiver {}", set(&self.receivers))?;
        if !self.reply_to.is_empty() {
            write!(f, "\n  :reply-to {}", set(&self.reply_to))?;
        }
        write!(f, "\n  :content {}", quote(&self.content))?;
        let optional = [
            ("language", &self.language),
            ("encoding", &self.encoding),
            ("ontology", &self.ontology),
            ("protocol", &self.protocol),
            ("conversation-id", &self.conversation_id),
            ("reply-with", &self.reply_with),
            ("in-reply-to", &self.in_reply_to),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                write!(f, "\n  :{name} {}", quote(value))?;
            }
        }
        if let Some(by) = self.reply_by {
            write!(f, "\n  :reply-by {}", by.0)?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_act_round_trips_through_its_fipa_name() {
        assert_eq!(Performative::ALL.len(), 22);
        for act in Performative::ALL {
            assert_eq!(act.as_str().parse::<Performative>(), Ok(act));
            assert_eq!(act.as_str().to_uppercase().parse::<Performative>(), Ok(act));
            let json = serde_json::to_string(&act).unwrap();
            assert_eq!(serde_json::from_str::<Performative>(&json).unwrap(), act);
        }
        assert_eq!("cfp".parse(), Ok(Performative::CallForProposal));
        assert!("call-for-proposal".parse::<Performative>().is_err());
    }

    #[test]
    fn a_reply_follows_the_fipa_rules() {
        let request = Message::new(Performative::Request, "alice")
            .to("bob")
            .content("(action bob (sing))")
            .protocol("fipa-request")
            .conversation("c-1")
            .reply_with("r-7")
            .language("fipa-sl")
            .ontology("music")
            .reply_by(Timestamp(42));
        let agree = request.reply("bob", Performative::Agree);
        assert_eq!(agree.receivers, vec![AgentId::from("alice")]);
        assert_eq!(agree.sender, AgentId::from("bob"));
        assert_eq!(agree.in_reply_to.as_deref(), Some("r-7"));
        assert_eq!(agree.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(agree.protocol.as_deref(), Some("fipa-request"));
        assert_eq!(agree.language.as_deref(), Some("fipa-sl"));
        assert_eq!(agree.ontology.as_deref(), Some("music"));
        assert_eq!((agree.reply_with, agree.reply_by), (None, None));

        let mut forwarded = request.clone();
        forwarded.reply_to = vec!["carol".into(), "dave".into()];
        let inform = forwarded.reply("bob", Performative::Inform);
        assert_eq!(
            inform.receivers,
            vec![AgentId::from("carol"), "dave".into()]
        );
    }

    #[test]
    fn messages_round_trip_and_bad_ones_say_why() {
        let message = Message::new(Performative::QueryRef, "a")
            .to("b")
            .to("c")
            .content("{\"x\": 1}")
            .conversation("k")
            .reply_by(Timestamp(1_800_000_000_000));
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);

        let unknown = br#"{"performative":"shout","sender":"a","receivers":["b"],
                           "conversation_id":"k","reply_with":"m1"}"#;
        let err = Message::decode(unknown).unwrap_err();
        assert!(
            err.reason.contains("unknown communicative act `shout`"),
            "{err}"
        );
        let answer = err.not_understood(&"b".into()).unwrap();
        assert_eq!(answer.performative, Performative::NotUnderstood);
        assert_eq!(answer.receivers, vec![AgentId::from("a")]);
        assert_eq!(answer.conversation_id.as_deref(), Some("k"));
        assert_eq!(answer.in_reply_to.as_deref(), Some("m1"));

        let no_receiver = br#"{"performative":"inform","sender":"a","receivers":[]}"#;
        let err = Message::decode(no_receiver).unwrap_err();
        assert!(err.reason.contains("no receiver"), "{err}");
        assert!(err.not_understood(&"b".into()).is_some());

        let not_json = Message::decode(b"(inform :sender a").unwrap_err();
        assert!(not_json.reason.contains("not JSON"));
        assert_eq!(not_json.not_understood(&"b".into()), None);

        let wrong_type = br#"{"performative":"inform","sender":"a","receivers":"b"}"#;
        assert!(Message::decode(wrong_type).is_err());
    }

    #[test]
    fn the_string_form_names_every_parameter_given() {
        let message = Message::new(Performative::CallForProposal, "m")
            .to("x")
            .content("say \"hi\"")
            .protocol("fipa-contract-net");
        let text = message.to_string();
        assert!(text.starts_with("(cfp\n  :sender (agent-identifier :name m)"));
        assert!(text.contains(":receiver (set (agent-identifier :name x))"));
        assert!(text.contains(":content \"say \\\"hi\\\"\""));
        assert!(text.contains(":protocol \"fipa-contract-net\""));
        assert!(!text.contains(":reply-by"));
    }
}
