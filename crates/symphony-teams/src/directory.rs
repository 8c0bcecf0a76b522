//! The directory facilitator (FIPA SC00023K): the yellow pages of a platform, itself an
//! agent (named [`DIRECTORY`]) that answers `request`s to register, deregister and search.
//! A registration holds for a lease; an agent renews it ([`keep_registered`]) for as long
//! as it lives, so one that dies drops out of searches when its lease runs out.
//!
//! Content is JSON ([`Action`]), the ontology `fipa-agent-management`.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::acl::{AgentId, Message, Performative};
use crate::bus::{Bus, Mailbox};
use crate::error::Error;

/// The directory facilitator's name on every bus.
pub const DIRECTORY: &str = "df";
pub const ONTOLOGY: &str = "fipa-agent-management";

/// One service an agent offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescription {
    pub name: String,
    /// What kind of service (`summarise`, `code-review`): what searches look for.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ServiceDescription {
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
        }
    }
}

/// An agent's entry in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDescription {
    pub name: AgentId,
    pub services: Vec<ServiceDescription>,
    /// The interaction protocols it takes part in.
    #[serde(default)]
    pub protocols: Vec<String>,
}

/// What a search asks for; an empty query finds every agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl Query {
    pub fn service_type(kind: impl Into<String>) -> Self {
        Self {
            service_type: Some(kind.into()),
            ..Self::default()
        }
    }

    fn matches(&self, agent: &AgentDescription) -> bool {
        let service = agent.services.iter().any(|s| {
            self.service_type.as_ref().is_none_or(|t| *t == s.kind)
                && self.service_name.as_ref().is_none_or(|n| *n == s.name)
        });
        let wants_service = self.service_type.is_some() || self.service_name.is_some();
        (service || !wants_service)
            && self
                .protocol
                .as_ref()
                .is_none_or(|p| agent.protocols.contains(p))
    }
}

/// The directory's actions, as request content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Adds or replaces the sender's entry for `lease_ms`.
    Register {
        description: AgentDescription,
        lease_ms: u64,
    },
    /// Extends the sender's lease (sent as `inform`: no answer).
    Renew {
        lease_ms: u64,
    },
    Deregister,
    Search {
        query: Query,
    },
}

/// The entries and their leases.
#[derive(Default)]
pub struct Directory {
    entries: HashMap<AgentId, (AgentDescription, Instant)>,
}

/// The longest lease granted: an agent that wants longer renews.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

impl Directory {
    /// Carries out `action` for `sender` at `now`: the answer's content on success, the
    /// reason for refusing otherwise.
    pub fn act(
        &mut self,
        sender: &AgentId,
        action: Action,
        now: Instant,
    ) -> Result<String, String> {
        self.entries.retain(|_, (_, until)| *until > now);
        let lease = |ms: u64| now + Duration::from_millis(ms).min(MAX_LEASE);
        match action {
            Action::Register {
                description,
                lease_ms,
            } => {
                if description.name != *sender {
                    return Err(format!(
                        "{sender} cannot register {}: agents register themselves",
                        description.name
                    ));
                }
                if lease_ms == 0 {
                    return Err("a lease must be longer than 0 ms".into());
                }
                self.entries
                    .insert(sender.clone(), (description, lease(lease_ms)));
                Ok("{\"registered\": true}".into())
            }
            Action::Renew { lease_ms } => match self.entries.get_mut(sender) {
                Some((_, until)) => {
                    *until = lease(lease_ms);
                    Ok("{\"renewed\": true}".into())
                }
                None => Err(format!("{sender} is not registered")),
            },
            Action::Deregister => match self.entries.remove(sender) {
                Some(_) => Ok("{\"deregistered\": true}".into()),
                None => Err(format!("{sender} is not registered")),
            },
            Action::Search { query } => {
                let mut found: Vec<&AgentDescription> = self
                    .entries
                    .values()
                    .map(|(description, _)| description)
                    .filter(|d| query.matches(d))
                    .collect();
                found.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(serde_json::to_string(&found).expect("plain data"))
            }
        }
    }

    /// Answers one message: `request`s get `inform` or `refuse`, a renewal (`inform`) gets
    /// nothing, other acts `not-understood`.
    pub fn answer(&mut self, me: &AgentId, message: &Message, now: Instant) -> Option<Message> {
        let action = serde_json::from_str::<Action>(&message.content);
        let (performative, content) = match (message.performative, action) {
            (Performative::Inform, Ok(action @ Action::Renew { .. })) => {
                let _ = self.act(&message.sender, action, now);
                return None;
            }
            (Performative::Request, Ok(action)) => match self.act(&message.sender, action, now) {
                Ok(result) => (Performative::Inform, result),
                Err(reason) => (Performative::Refuse, reason),
            },
            (Performative::Request, Err(e)) => (
                Performative::NotUnderstood,
                format!("not a directory action: {e}"),
            ),
            (act, _) => (
                Performative::NotUnderstood,
                format!("the directory answers `request`, not `{act}`"),
            ),
        };
        let mut reply = message.reply(me.clone(), performative);
        reply.content = content;
        Some(reply)
    }
}

/// Runs the directory facilitator on `bus` until the bus goes away.
pub async fn spawn(bus: &Bus) -> Result<JoinHandle<()>, Error> {
    let mut mailbox = bus.join(DIRECTORY).await?;
    Ok(tokio::spawn(async move {
        let mut directory = Directory::default();
        let me = mailbox.id().clone();
        while let Some(message) = mailbox.recv().await {
            if let Some(reply) = directory.answer(&me, &message, Instant::now()) {
                if let Err(e) = mailbox.send(&reply).await {
                    tracing::debug!(to = ?reply.receivers, "directory reply not delivered: {e}");
                }
            }
        }
    }))
}

fn request(action: &Action) -> Message {
    let mut message = Message::new(Performative::Request, "")
        .to(DIRECTORY)
        .content(serde_json::to_string(action).expect("plain data"))
        .protocol("fipa-request")
        .language("json")
        .ontology(ONTOLOGY);
    message.conversation_id = Some(format!("df-{}", crate::bus::next_tag()));
    message
}

/// How long the directory has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Registers `mailbox`'s agent with these services for `lease`.
pub async fn register(
    mailbox: &mut Mailbox,
    services: Vec<ServiceDescription>,
    protocols: Vec<String>,
    lease: Duration,
) -> Result<(), Error> {
    let action = Action::Register {
        description: AgentDescription {
            name: mailbox.id().clone(),
            services,
            protocols,
        },
        lease_ms: lease.as_millis() as u64,
    };
    mailbox.ask_inform(request(&action), ANSWER_WITHIN).await?;
    Ok(())
}

pub async fn deregister(mailbox: &mut Mailbox) -> Result<(), Error> {
    mailbox
        .ask_inform(request(&Action::Deregister), ANSWER_WITHIN)
        .await?;
    Ok(())
}

/// The live agents that match `query`, by name.
pub async fn search(mailbox: &mut Mailbox, query: Query) -> Result<Vec<AgentDescription>, Error> {
    let reply = mailbox
        .ask_inform(request(&Action::Search { query }), ANSWER_WITHIN)
        .await?;
    serde_json::from_str(&reply.content)
        .map_err(|e| Error::Invalid(format!("the directory's answer: {e}")))
}

/// Renews `agent`'s lease every third of `lease` until the task is aborted or the process
/// ends; then the entry lapses by itself.
pub fn keep_registered(bus: Bus, agent: AgentId, lease: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let renew = Action::Renew {
            lease_ms: lease.as_millis() as u64,
        };
        let mut message = request(&renew);
        message.performative = Performative::Inform;
        message.sender = agent;
        loop {
            tokio::time::sleep(lease / 3).await;
            if bus.send(&message).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, kinds: &[&str]) -> AgentDescription {
        AgentDescription {
            name: name.into(),
            services: kinds
                .iter()
                .map(|k| ServiceDescription::new(*k, *k))
                .collect(),
            protocols: vec!["fipa-contract-net".into()],
        }
    }

    #[test]
    fn leases_lapse_unless_renewed() {
        let mut df = Directory::default();
        let t0 = Instant::now();
        let register = |d: AgentDescription| Action::Register {
            description: d,
            lease_ms: 1000,
        };
        df.act(&"a".into(), register(agent("a", &["sum"])), t0)
            .unwrap();
        df.act(&"b".into(), register(agent("b", &["sum", "code"])), t0)
            .unwrap();
        let search = |df: &mut Directory, kind: &str, at| {
            let found = df
                .act(
                    &"x".into(),
                    Action::Search {
                        query: Query::service_type(kind),
                    },
                    at,
                )
                .unwrap();
            let found: Vec<AgentDescription> = serde_json::from_str(&found).unwrap();
            found.into_iter().map(|d| d.name.0).collect::<Vec<_>>()
        };
        assert_eq!(search(&mut df, "sum", t0), ["a", "b"]);
        assert_eq!(search(&mut df, "code", t0), ["b"]);
        let later = t0 + Duration::from_millis(800);
        df.act(&"b".into(), Action::Renew { lease_ms: 1000 }, later)
            .unwrap();
        let after_a = t0 + Duration::from_millis(1200);
        assert_eq!(search(&mut df, "sum", after_a), ["b"]);
        assert!(df
            .act(&"a".into(), Action::Renew { lease_ms: 1000 }, after_a)
            .is_err());
        df.act(&"b".into(), Action::Deregister, after_a).unwrap();
        assert!(search(&mut df, "sum", after_a).is_empty());
    }

    #[test]
    fn agents_register_only_themselves_and_odd_requests_are_answered() {
        let mut df = Directory::default();
        let now = Instant::now();
        let hijack = Action::Register {
            description: agent("victim", &["x"]),
            lease_ms: 1000,
        };
        assert!(df.act(&"mallory".into(), hijack, now).is_err());

        let me = AgentId::from(DIRECTORY);
        let garbage = Message::new(Performative::Request, "a")
            .to(DIRECTORY)
            .content("{");
        let reply = df.answer(&me, &garbage, now).unwrap();
        assert_eq!(reply.performative, Performative::NotUnderstood);
        let wrong_act = Message::new(Performative::Propose, "a").to(DIRECTORY);
        let reply = df.answer(&me, &wrong_act, now).unwrap();
        assert_eq!(reply.performative, Performative::NotUnderstood);
        let unknown = Message::new(Performative::Request, "a")
            .to(DIRECTORY)
            .content(r#"{"deregister": null}"#);
        assert_eq!(
            df.answer(&me, &unknown, now).unwrap().performative,
            Performative::Refuse
        );
    }
}
