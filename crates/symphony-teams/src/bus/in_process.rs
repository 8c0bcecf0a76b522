//! The in-process transport: a map from agent name to the sending half of its inbox.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{broadcast, mpsc};

use super::{Delivery, Sender};
use crate::acl::{AgentId, Message};
use crate::error::Error;

/// How many messages a watcher may fall behind before it skips some.
pub(crate) const WATCH_CAPACITY: usize = 4096;

pub(crate) struct InProcess {
    inboxes: Arc<RwLock<HashMap<AgentId, Sender>>>,
    watchers: broadcast::Sender<Message>,
    pub(crate) durable: super::durable::InProcessStore,
}

impl Default for InProcess {
    fn default() -> Self {
        Self {
            inboxes: Arc::default(),
            watchers: broadcast::channel(WATCH_CAPACITY).0,
            durable: Default::default(),
        }
    }
}

impl InProcess {
    pub(crate) fn join(&self, me: &AgentId) -> Result<Inbox, Error> {
        let mut inboxes = self.inboxes.write().expect("no panics while held");
        // A name whose inbox was dropped is free again.
        if inboxes.get(me).is_some_and(|tx| !tx.is_closed()) {
            return Err(Error::NameTaken(me.clone()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        inboxes.insert(me.clone(), tx);
        Ok(Inbox {
            me: me.clone(),
            rx,
            inboxes: Arc::clone(&self.inboxes),
        })
    }

    pub(crate) fn send(&self, message: &Message) -> Result<(), Error> {
        let mut missing = Vec::new();
        {
            let inboxes = self.inboxes.read().expect("no panics while held");
            for receiver in &message.receivers {
                let delivered = inboxes
                    .get(receiver)
                    .is_some_and(|tx| tx.send(Ok(message.clone())).is_ok());
                if !delivered {
                    missing.push(receiver.clone());
                }
            }
        }
        if self.watchers.receiver_count() > 0 {
            let _ = self.watchers.send(message.clone());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Undeliverable(missing))
        }
    }

    pub(crate) fn watch(&self) -> broadcast::Receiver<Message> {
        self.watchers.subscribe()
    }
}

pub(crate) struct Inbox {
    me: AgentId,
    rx: mpsc::UnboundedReceiver<Delivery>,
    inboxes: Arc<RwLock<HashMap<AgentId, Sender>>>,
}

impl Inbox {
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl Drop for Inbox {
    /// Leaving the bus frees the name, unless someone has taken it since.
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(mut inboxes) = self.inboxes.write() {
            if inboxes.get(&self.me).is_some_and(|tx| tx.is_closed()) {
                inboxes.remove(&self.me);
            }
        }
    }
}
