//! Durable inboxes, for messages that must survive a restart (a task handed over, a result
//! that must not be lost): over NATS a JetStream stream on the server's disk and one durable
//! consumer per agent, so a message sent while its agent is down waits for it, and one
//! received but not acknowledged comes again. In process the same API keeps what is sent
//! before an agent joins, or while it is away, until it joins again; a process that ends
//! takes them with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{nats, Bus, Delivery, Transport};
use crate::acl::{AgentId, Message};
use crate::error::Error;

/// In process: each durable inbox, joined or waiting for its agent.
#[derive(Default)]
pub(crate) struct InProcessStore {
    slots: Arc<Mutex<HashMap<AgentId, Slot>>>,
}

enum Slot {
    Waiting(Vec<Message>),
    Joined(mpsc::UnboundedSender<Message>),
}

impl InProcessStore {
    fn send(&self, message: &Message) {
        let mut slots = self.slots.lock().expect("no panics while held");
        for receiver in &message.receivers {
            let slot = slots
                .entry(receiver.clone())
                .or_insert_with(|| Slot::Waiting(Vec::new()));
            if let Slot::Joined(tx) = slot {
                if tx.send(message.clone()).is_ok() {
                    continue;
                }
                *slot = Slot::Waiting(Vec::new());
            }
            if let Slot::Waiting(queue) = slot {
                queue.push(message.clone());
            }
        }
    }

    fn join(&self, me: &AgentId) -> Result<InProcessInbox, Error> {
        let mut slots = self.slots.lock().expect("no panics while held");
        let (tx, rx) = mpsc::unbounded_channel();
        match slots.remove(me) {
            Some(Slot::Joined(old)) if !old.is_closed() => {
                slots.insert(me.clone(), Slot::Joined(old));
                return Err(Error::NameTaken(me.clone()));
            }
            Some(Slot::Waiting(queue)) => {
                for message in queue {
                    let _ = tx.send(message);
                }
            }
            _ => {}
        }
        slots.insert(me.clone(), Slot::Joined(tx));
        Ok(InProcessInbox {
            me: me.clone(),
            rx,
            slots: Arc::clone(&self.slots),
        })
    }
}

struct InProcessInbox {
    me: AgentId,
    rx: mpsc::UnboundedReceiver<Message>,
    slots: Arc<Mutex<HashMap<AgentId, Slot>>>,
}

impl Drop for InProcessInbox {
    /// What the agent had not taken yet waits for its return.
    fn drop(&mut self) {
        self.rx.close();
        let mut left = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            left.push(message);
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(self.me.clone(), Slot::Waiting(left));
        }
    }
}

enum Inbox {
    InProcess(InProcessInbox),
    Nats(Box<nats::DurableInbox>),
}

/// An agent's durable inbox ([`Bus::join_durable`]).
pub struct DurableMailbox {
    me: AgentId,
    bus: Bus,
    inbox: Inbox,
}

/// A message from a durable inbox. Over NATS it comes again (after the inbox's
/// `ack_wait`) unless [`Received::ack`] says it has been dealt with.
pub struct Received {
    pub message: Message,
    stored: Option<async_nats::jetstream::Message>,
}

impl Received {
    pub async fn ack(self) -> Result<(), Error> {
        match self.stored {
            Some(stored) => nats::ack(stored).await,
            None => Ok(()),
        }
    }
}

impl DurableMailbox {
    pub fn id(&self) -> &AgentId {
        &self.me
    }

    /// The next message. A malformed one is answered `not-understood`, acknowledged (it
    /// would never read better) and skipped.
    pub async fn recv(&mut self) -> Option<Result<Received, Error>> {
        loop {
            let (delivery, stored): (Delivery, _) = match &mut self.inbox {
                Inbox::InProcess(inbox) => (Ok(inbox.rx.recv().await?), None),
                Inbox::Nats(inbox) => match inbox.recv().await? {
                    Ok((delivery, stored)) => (delivery, Some(stored)),
                    Err(e) => return Some(Err(e)),
                },
            };
            match delivery {
                Ok(message) => return Some(Ok(Received { message, stored })),
                Err(malformed) => {
                    if let Some(answer) = malformed.not_understood(&self.me) {
                        let _ = self.bus.send(&answer).await;
                    }
                    if let Some(stored) = stored {
                        let _ = nats::ack(stored).await;
                    }
                }
            }
        }
    }

    /// [`DurableMailbox::recv`] waiting at most `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Received, Error> {
        match tokio::time::timeout(within, self.recv()).await {
            Ok(Some(received)) => received,
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(within)),
        }
    }
}

impl Bus {
    /// Opens `name`'s durable inbox. Over NATS a message it receives and does not
    /// acknowledge is delivered again `ack_wait` later; in process `ack_wait` is unused.
    pub async fn join_durable(
        &self,
        name: impl Into<AgentId>,
        ack_wait: Duration,
    ) -> Result<DurableMailbox, Error> {
        let me = name.into();
        let inbox = match &*self.transport {
            Transport::InProcess(bus) => Inbox::InProcess(bus.durable.join(&me)?),
            Transport::Nats(bus) => Inbox::Nats(Box::new(bus.join_durable(&me, ack_wait).await?)),
        };
        Ok(DurableMailbox {
            me,
            bus: self.clone(),
            inbox,
        })
    }

    /// Sends `message` to its receivers' durable inboxes: over NATS, returns once the
    /// server has stored it.
    pub async fn send_durable(&self, message: &Message) -> Result<(), Error> {
        message.check().map_err(Error::Invalid)?;
        match &*self.transport {
            Transport::InProcess(bus) => {
                bus.durable.send(message);
                Ok(())
            }
            Transport::Nats(bus) => bus.send_durable(message).await,
        }
    }
}
