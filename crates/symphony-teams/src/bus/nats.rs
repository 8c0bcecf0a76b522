//! The NATS transport. Each agent's inbox is the subject `symphony.acl.<name>` (the name
//! escaped to one subject token); a message goes to each receiver's subject with its ACL
//! parameters in `ACL-*` headers and its content as the payload, so a NATS tool sees who
//! says what to whom without parsing the body.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::Delivery;
use crate::acl::{AgentId, Malformed, Message};
use crate::error::Error;

const PREFIX: &str = "symphony.acl";
/// Durable inboxes: subjects of one JetStream stream, on disk at the server.
const DURABLE_PREFIX: &str = "symphony.durable";
const STREAM: &str = "SYMPHONY_ACL";

pub(crate) struct Nats {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The durable inboxes' stream, made on first use.
    stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
}

/// The inbox subject of `agent`: bytes outside `[A-Za-z0-9_-]` become `~XX`, so a name with
/// dots, spaces or wildcards stays one token.
pub(crate) fn subject(agent: &AgentId) -> String {
    format!("{PREFIX}.{}", token(agent))
}

fn token(agent: &AgentId) -> String {
    let mut token = String::with_capacity(agent.0.len());
    for byte in agent.0.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("~{byte:02X}"));
        }
    }
    token
}

/// Header names of the ACL parameters; the content is the payload.
const TEXT_FIELDS: [(&str, &str); 10] = [
    ("performative", "ACL-Performative"),
    ("sender", "ACL-Sender"),
    ("language", "ACL-Language"),
    ("encoding", "ACL-Encoding"),
    ("ontology", "ACL-Ontology"),
    ("protocol", "ACL-Protocol"),
    ("conversation_id", "ACL-Conversation-Id"),
    ("reply_with", "ACL-Reply-With"),
    ("in_reply_to", "ACL-In-Reply-To"),
    ("reply_by", "ACL-Reply-By"),
];
/// Agent sets, as JSON arrays of names.
const SET_FIELDS: [(&str, &str); 2] =
    [("receivers", "ACL-Receivers"), ("reply_to", "ACL-Reply-To")];

fn headers(message: &Message) -> Result<HeaderMap, Error> {
    let Value::Object(fields) = serde_json::to_value(message).expect("plain data") else {
        unreachable!("a message is a JSON object")
    };
    let mut headers = HeaderMap::new();
    for (field, header) in TEXT_FIELDS {
        let value = match fields.get(field) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        if value.contains(['\r', '\n']) {
            return Err(Error::Invalid(format!("`{field}` has a line break")));
        }
        headers.insert(header, value.as_str());
    }
    for (field, header) in SET_FIELDS {
        if let Some(set) = fields.get(field) {
            headers.insert(header, set.to_string().as_str());
        }
    }
    Ok(headers)
}

/// A message from its headers and payload, through [`Message::decode`] so that the same
/// checks apply and a malformed one keeps what could be read.
fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Delivery {
    let mut fields = Map::new();
    if let Some(headers) = headers {
        for (field, header) in TEXT_FIELDS {
            if let Some(value) = headers.get(header) {
                let text = value.as_str();
                let value = match (field, text.parse::<u64>()) {
                    ("reply_by", Ok(ms)) => json!(ms),
                    _ => json!(text),
                };
                fields.insert(field.to_string(), value);
            }
        }
        for (field, header) in SET_FIELDS {
            if let Some(value) = headers.get(header) {
                let set = serde_json::from_str(value.as_str()).unwrap_or(json!(value.as_str()));
                fields.insert(field.to_string(), set);
            }
        }
    }
    match std::str::from_utf8(payload) {
        Ok(content) => {
            fields.insert("content".into(), json!(content));
            Message::decode(&serde_json::to_vec(&fields).expect("plain data"))
        }
        Err(_) => {
            let mut malformed = Message::decode(&serde_json::to_vec(&fields).expect("plain data"))
                .err()
                .unwrap_or_else(|| Malformed {
                    reason: String::new(),
                    sender: None,
                    conversation_id: None,
                    reply_with: None,
                    protocol: None,
                });
            malformed.reason = "the content is not UTF-8".into();
            if malformed.sender.is_none() {
                malformed.sender = fields
                    .get("sender")
                    .and_then(|s| s.as_str())
                    .map(AgentId::from);
            }
            Err(malformed)
        }
    }
}

impl Nats {
    pub(crate) async fn connect(url: &str) -> Result<Nats, Error> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| Error::Nats(format!("cannot connect to {url}: {e}")))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Nats {
            client,
            jetstream,
            stream: tokio::sync::OnceCell::new(),
        })
    }

    async fn stream(&self) -> Result<&jetstream::stream::Stream, Error> {
        self.stream
            .get_or_try_init(|| async {
                let config = jetstream::stream::Config {
                    name: STREAM.into(),
                    subjects: vec![format!("{DURABLE_PREFIX}.>")],
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                };
                self.jetstream
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| Error::Nats(format!("the durable inboxes' stream: {e}")))
            })
            .await
    }

    /// Sends through JetStream: returns once the server has stored the message for each
    /// receiver.
    pub(crate) async fn send_durable(&self, message: &Message) -> Result<(), Error> {
        self.stream().await?;
        let headers = headers(message)?;
        let payload = Bytes::from(message.content.clone());
        for receiver in &message.receivers {
            let subject = format!("{DURABLE_PREFIX}.{}", token(receiver));
            let stored = self
                .jetstream
                .publish_with_headers(subject, headers.clone(), payload.clone())
                .await
                .map_err(|e| Error::Nats(e.to_string()))?;
            stored.await.map_err(|e| Error::Nats(e.to_string()))?;
        }
        Ok(())
    }

    /// `me`'s durable inbox: a durable JetStream consumer named after it, so what it has
    /// not acknowledged comes again after `ack_wait`, to this process or the next.
    pub(crate) async fn join_durable(
        &self,
        me: &AgentId,
        ack_wait: Duration,
    ) -> Result<DurableInbox, Error> {
        let stream = self.stream().await?;
        let name = token(me);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: format!("{DURABLE_PREFIX}.{name}"),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| Error::Nats(format!("{me}'s durable inbox: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        Ok(DurableInbox { messages })
    }

    pub(crate) async fn join(&self, me: &AgentId) -> Result<Inbox, Error> {
        let subscriber = self.subscribe(subject(me)).await?;
        Ok(Inbox {
            subscriber,
            only_first_copy: false,
        })
    }

    pub(crate) async fn watch(&self) -> Result<Inbox, Error> {
        let subscriber = self.subscribe(format!("{PREFIX}.>")).await?;
        Ok(Inbox {
            subscriber,
            only_first_copy: true,
        })
    }

    async fn subscribe(&self, subject: String) -> Result<async_nats::Subscriber, Error> {
        let subscriber = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        // The server has the subscription once a round trip has passed; before that a
        // message sent right after joining could find nobody listening.
        self.flush().await?;
        Ok(subscriber)
    }

    pub(crate) async fn send(&self, message: &Message) -> Result<(), Error> {
        let headers = headers(message)?;
        let payload = Bytes::from(message.content.clone());
        for receiver in &message.receivers {
            self.client
                .publish_with_headers(subject(receiver), headers.clone(), payload.clone())
                .await
                .map_err(|e| Error::Nats(e.to_string()))?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&self) -> Result<(), Error> {
        self.client
            .flush()
            .await
            .map_err(|e| Error::Nats(e.to_string()))
    }
}

pub(crate) struct Inbox {
    subscriber: async_nats::Subscriber,
    /// A watcher sees a message once, on its first receiver's subject, however many
    /// receivers it has.
    only_first_copy: bool,
}

impl Inbox {
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        loop {
            let raw = self.subscriber.next().await?;
            let delivery = decode(raw.headers.as_ref(), &raw.payload);
            if self.only_first_copy {
                if let Ok(message) = &delivery {
                    if message.receivers.first().map(subject).as_deref()
                        != Some(raw.subject.as_str())
                    {
                        continue;
                    }
                }
            }
            return Some(delivery);
        }
    }
}

pub(crate) struct DurableInbox {
    messages: pull::Stream,
}

/// A stored message and the handle that acknowledges it.
pub(crate) type Stored = (Delivery, jetstream::Message);

impl DurableInbox {
    pub(crate) async fn recv(&mut self) -> Option<Result<Stored, Error>> {
        let raw = match self.messages.next().await? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(Error::Nats(e.to_string()))),
        };
        let delivery = decode(raw.headers.as_ref(), &raw.payload);
        Some(Ok((delivery, raw)))
    }
}

/// Acknowledges and waits for the server to confirm: an acknowledgement lost to a crash
/// right after would bring the message back.
pub(crate) async fn ack(stored: jetstream::Message) -> Result<(), Error> {
    stored
        .double_ack()
        .await
        .map_err(|e| Error::Nats(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Performative, Timestamp};

    #[test]
    fn names_become_one_subject_token() {
        assert_eq!(subject(&"planner".into()), "symphony.acl.planner");
        assert_eq!(subject(&"a.b *>".into()), "symphony.acl.a~2Eb~20~2A~3E");
        assert_eq!(subject(&"é".into()), "symphony.acl.~C3~A9");
    }

    #[test]
    fn headers_and_payload_carry_the_whole_message() {
        let mut message = Message::new(Performative::Propose, "bidder")
            .to("manager")
            .to("auditor")
            .content("{\"cost\": 3}\nsecond line")
            .protocol("fipa-contract-net")
            .conversation("task-9")
            .reply_with("p1")
            .reply_by(Timestamp(1_900_000_000_000))
            .language("json");
        message.in_reply_to = Some("cfp-1".into());
        message.reply_to = vec!["ledger".into()];
        let headers = headers(&message).unwrap();
        assert_eq!(headers.get("ACL-Performative").unwrap().as_str(), "propose");
        assert_eq!(
            headers.get("ACL-Receivers").unwrap().as_str(),
            r#"["manager","auditor"]"#
        );
        let back = decode(Some(&headers), message.content.as_bytes()).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn bad_headers_are_malformed_with_the_sender_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("ACL-Performative", "yell");
        headers.insert("ACL-Sender", "x");
        headers.insert("ACL-Receivers", r#"["y"]"#);
        let err = decode(Some(&headers), b"hi").unwrap_err();
        assert!(err.reason.contains("yell"));
        assert_eq!(err.sender, Some("x".into()));
        headers.insert("ACL-Performative", "inform");
        let err = decode(Some(&headers), &[0xff, 0xfe]).unwrap_err();
        assert!(err.reason.contains("UTF-8"));
        assert_eq!(err.sender, Some("x".into()));
        assert!(decode(None, b"hello").is_err());
        let line_break = Message::new(Performative::Inform, "a")
            .to("b")
            .conversation("x\ny");
        assert!(super::headers(&line_break).is_err());
    }
}
