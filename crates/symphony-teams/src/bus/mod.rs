//! One message bus, two transports: async channels inside this process ([`Bus::in_process`])
//! and NATS ([`Bus::nats`]), where each agent's inbox is a subject and the ACL parameters
//! travel in headers. Agents see the same [`Mailbox`] either way.

mod durable;
mod in_process;
mod nats;

pub use durable::{DurableMailbox, Received};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::acl::{AgentId, Message, Performative};
use crate::error::Error;

/// A message bus. Cheap to clone: clones share the transport.
#[derive(Clone)]
pub struct Bus {
    transport: Arc<Transport>,
}

enum Transport {
    InProcess(in_process::InProcess),
    Nats(Box<nats::Nats>),
}

impl Bus {
    /// A bus inside this process: each inbox an unbounded channel.
    pub fn in_process() -> Bus {
        Bus {
            transport: Arc::new(Transport::InProcess(in_process::InProcess::default())),
        }
    }

    /// A bus over the NATS server at `url` (`nats://127.0.0.1:4222`).
    pub async fn nats(url: &str) -> Result<Bus, Error> {
        Ok(Bus {
            transport: Arc::new(Transport::Nats(Box::new(nats::Nats::connect(url).await?))),
        })
    }

    /// Which transport this is: `inproc` or `nats`.
    pub fn transport_name(&self) -> &'static str {
        match &*self.transport {
            Transport::InProcess(_) => "inproc",
            Transport::Nats(_) => "nats",
        }
    }

    /// Opens `name`'s inbox. In process a name is taken once; over NATS the directory
    /// facilitator is where names are claimed.
    pub async fn join(&self, name: impl Into<AgentId>) -> Result<Mailbox, Error> {
        let me = name.into();
        if me.0.is_empty() {
            return Err(Error::Invalid("an agent needs a name".into()));
        }
        let inbox = match &*self.transport {
            Transport::InProcess(bus) => Inbox::InProcess(bus.join(&me)?),
            Transport::Nats(bus) => Inbox::Nats(bus.join(&me).await?),
        };
        Ok(Mailbox {
            me,
            bus: self.clone(),
            inbox,
            set_aside: VecDeque::new(),
        })
    }

    /// Delivers `message` to each of its receivers. In process, receivers not on the bus
    /// are named in [`Error::Undeliverable`] (the others still get it); NATS does not know
    /// who listens.
    pub async fn send(&self, message: &Message) -> Result<(), Error> {
        message.check().map_err(Error::Invalid)?;
        match &*self.transport {
            Transport::InProcess(bus) => bus.send(message),
            Transport::Nats(bus) => bus.send(message).await,
        }
    }

    /// Every message sent on the bus from now on, as it is sent: for transcripts and live
    /// views. Over NATS this is a wildcard subscription on every inbox.
    pub async fn watch(&self) -> Result<Watch, Error> {
        match &*self.transport {
            Transport::InProcess(bus) => Ok(Watch(Watching::InProcess(bus.watch()))),
            Transport::Nats(bus) => Ok(Watch(Watching::Nats(bus.watch().await?))),
        }
    }

    /// Makes sure every message sent so far has left this process (NATS buffers writes).
    pub async fn flush(&self) -> Result<(), Error> {
        match &*self.transport {
            Transport::InProcess(_) => Ok(()),
            Transport::Nats(bus) => bus.flush().await,
        }
    }
}

enum Inbox {
    InProcess(in_process::Inbox),
    Nats(nats::Inbox),
}

/// What an inbox yields: a message, or bytes that are not one (over NATS), with what
/// could be read of them.
pub(crate) type Delivery = Result<Message, crate::acl::Malformed>;

/// An agent's inbox on a bus, and its way to send.
pub struct Mailbox {
    me: AgentId,
    bus: Bus,
    inbox: Inbox,
    /// Messages that arrived while [`Mailbox::ask`] waited for a reply, in order.
    set_aside: VecDeque<Message>,
}

/// Unique `reply-with` tags within this process.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// A number no other call in this process gets: for `reply-with` tags and conversation ids.
pub(crate) fn next_tag() -> u64 {
    NEXT_TAG.fetch_add(1, Ordering::Relaxed)
}

impl Mailbox {
    pub fn id(&self) -> &AgentId {
        &self.me
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub async fn send(&self, message: &Message) -> Result<(), Error> {
        self.bus.send(message).await
    }

    /// The next message for this agent; `None` once the bus is gone. A malformed message
    /// or one with an unknown act is answered with `not-understood` here and never
    /// returned.
    pub async fn recv(&mut self) -> Option<Message> {
        if let Some(message) = self.set_aside.pop_front() {
            return Some(message);
        }
        self.next_delivery().await
    }

    /// [`Mailbox::recv`] waiting at most `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Message, Error> {
        match tokio::time::timeout(within, self.recv()).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(within)),
        }
    }

    async fn next_delivery(&mut self) -> Option<Message> {
        loop {
            let delivery = match &mut self.inbox {
                Inbox::InProcess(inbox) => inbox.recv().await?,
                Inbox::Nats(inbox) => inbox.recv().await?,
            };
            match delivery {
                Ok(message) => return Some(message),
                Err(malformed) => {
                    tracing::debug!(agent = %self.me, reason = %malformed, "not understood");
                    if let Some(answer) = malformed.not_understood(&self.me) {
                        // The sender may be gone; nothing more can be done for it.
                        let _ = self.bus.send(&answer).await;
                    }
                }
            }
        }
    }

    /// Sends `message` with a fresh `reply-with` tag (and this agent as sender) and waits
    /// up to `within` for the message that answers it; other messages that arrive
    /// meanwhile are kept for [`Mailbox::recv`], in order.
    pub async fn ask(&mut self, mut message: Message, within: Duration) -> Result<Message, Error> {
        // The process id keeps a restarted agent from taking a stale answer for a new one.
        let tag = format!("{}-{}-{}", self.me, std::process::id(), next_tag());
        message.sender = self.me.clone();
        message.reply_with = Some(tag.clone());
        self.bus.send(&message).await?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.next_delivery()).await;
            match next {
                Ok(Some(reply)) if reply.in_reply_to.as_deref() == Some(tag.as_str()) => {
                    return Ok(reply)
                }
                Ok(Some(other)) => self.set_aside.push_back(other),
                Ok(None) => return Err(Error::Closed),
                Err(_) => return Err(Error::Timeout(within)),
            }
        }
    }

    /// [`Mailbox::ask`] for a request whose only acceptable answer is `inform`: any other
    /// act (refuse, failure, not-understood) becomes [`Error::Refused`].
    pub async fn ask_inform(
        &mut self,
        message: Message,
        within: Duration,
    ) -> Result<Message, Error> {
        let reply = self.ask(message, within).await?;
        if reply.performative == Performative::Inform {
            Ok(reply)
        } else {
            Err(Error::Refused {
                performative: reply.performative,
                sender: reply.sender,
                content: reply.content,
            })
        }
    }
}

/// Every message on a bus, as sent ([`Bus::watch`]).
pub struct Watch(Watching);

enum Watching {
    InProcess(broadcast::Receiver<Message>),
    Nats(nats::Inbox),
}

impl Watch {
    /// The next message; `None` when the bus is gone. A watcher that falls more than
    /// [`in_process::WATCH_CAPACITY`] messages behind skips the ones it missed.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match &mut self.0 {
                Watching::InProcess(rx) => match rx.recv().await {
                    Ok(message) => return Some(message),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                Watching::Nats(inbox) => match inbox.recv().await? {
                    Ok(message) => return Some(message),
                    Err(_) => continue,
                },
            }
        }
    }
}

/// The sending half of an in-process inbox.
type Sender = mpsc::UnboundedSender<Delivery>;
