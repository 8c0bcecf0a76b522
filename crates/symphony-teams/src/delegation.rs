//! Delegation by contract-net: a conductor calls for proposals, agents bid (estimated cost,
//! confidence, current load), the best bid wins, and a contractor that fails or misses its
//! deadline is cancelled and replaced by a new round of bids among the others. Each round
//! is its own conversation (`<task>#<round>`), so a late result from a replaced contractor
//! belongs to a finished conversation and is not taken: the task completes once.
//!
//! The conductor learns: it keeps a track record per agent and task kind and scores each bid
//! by an upper confidence bound on that agent's success rate (UCB1, a bandit over outcomes),
//! so work shifts toward the agents that deliver while the others still get tried.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::acl::{AgentId, Message, Performative, Timestamp};
use crate::bus::Mailbox;
use crate::error::Error;
use crate::protocol::{Conversation, Protocol, Stage};

/// A piece of work to delegate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// What kind of work (`arithmetic`, `code`): track records are kept per kind.
    pub kind: String,
    pub content: String,
    /// How long the contractor has, from its award, to deliver.
    #[serde(with = "millis")]
    pub deadline: Duration,
}

/// A contractor's bid: what it expects the task to cost (tokens, seconds: any unit the
/// team agrees on), how sure it is to succeed (0-1), and how many tasks it has running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    pub cost: f64,
    pub confidence: f64,
    pub load: u32,
}

/// Successes and failures of each agent at each kind of task.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrackRecord {
    outcomes: BTreeMap<String, BTreeMap<AgentId, (u32, u32)>>,
}

impl TrackRecord {
    pub fn record(&mut self, agent: &AgentId, kind: &str, success: bool) {
        let entry = self
            .outcomes
            .entry(kind.to_string())
            .or_default()
            .entry(agent.clone())
            .or_default();
        if success {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// `(successes, failures)`.
    pub fn of(&self, agent: &AgentId, kind: &str) -> (u32, u32) {
        self.outcomes
            .get(kind)
            .and_then(|agents| agents.get(agent))
            .copied()
            .unwrap_or_default()
    }

    /// UCB1 on the success rate: the Laplace-smoothed mean plus `sqrt(2 ln N / n)`, where
    /// `N` counts every outcome of this kind and `n` this agent's. An agent never tried
    /// gets the largest bonus, so each is tried before the record decides.
    pub fn upper_bound(&self, agent: &AgentId, kind: &str) -> f64 {
        let (s, f) = self.of(agent, kind);
        let n = f64::from(s + f);
        let total: u32 = self
            .outcomes
            .get(kind)
            .map(|agents| agents.values().map(|(s, f)| s + f).sum())
            .unwrap_or(0);
        let mean = (f64::from(s) + 1.0) / (n + 2.0);
        let bonus = (2.0 * (f64::from(total) + 1.0).ln() / (n + 1.0)).sqrt();
        mean + bonus
    }
}

/// The conductor's settings.
#[derive(Clone, Debug)]
pub struct ConductorConfig {
    /// How long bidders have to answer a call.
    pub bid_window: Duration,
    /// Rounds of bidding before the task is given up.
    pub max_rounds: usize,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        Self {
            bid_window: Duration::from_secs(2),
            max_rounds: 3,
        }
    }
}

/// How a delegated task ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delegation {
    pub task: String,
    /// The contractor that delivered, and what.
    pub completed: Option<(AgentId, String)>,
    /// Each round: who won it and how it ended (`completed`, `failed: ...`, `timed out`),
    /// or `no bids`.
    pub rounds: Vec<(Option<AgentId>, String)>,
}

/// A bid's score: the agent's chance of success (its track record's upper bound, times
/// the confidence it claims) for what it costs, discounted by the work it already has.
pub(crate) fn score(record: &TrackRecord, kind: &str, agent: &AgentId, bid: &Bid) -> f64 {
    let chance = record.upper_bound(agent, kind) * bid.confidence.clamp(0.0, 1.0);
    chance / (1.0 + bid.cost.max(0.0)) / (1.0 + f64::from(bid.load))
}

/// Calls for proposals, awards, and re-awards on failure; learns from every outcome.
pub struct Conductor {
    mailbox: Mailbox,
    pub record: TrackRecord,
    pub config: ConductorConfig,
}

impl Conductor {
    pub fn new(mailbox: Mailbox, config: ConductorConfig) -> Self {
        Self {
            mailbox,
            record: TrackRecord::default(),
            config,
        }
    }

    /// Delegates `task` to one of `candidates`, re-bidding among those not yet tried when a
    /// contractor fails or misses its deadline.
    pub async fn delegate(
        &mut self,
        task: &Task,
        candidates: &[AgentId],
    ) -> Result<Delegation, Error> {
        let mut outcome = Delegation {
            task: task.id.clone(),
            completed: None,
            rounds: Vec::new(),
        };
        let mut excluded: Vec<AgentId> = Vec::new();
        for round in 1..=self.config.max_rounds {
            let bidders: Vec<AgentId> = candidates
                .iter()
                .filter(|c| !excluded.contains(c))
                .cloned()
                .collect();
            if bidders.is_empty() {
                break;
            }
            let conversation_id = format!("{}#{round}", task.id);
            let (winner, mut conversation) =
                self.call_for_bids(task, &bidders, &conversation_id).await?;
            let Some(winner) = winner else {
                outcome.rounds.push((None, "no bids".into()));
                break;
            };
            let result = self.await_result(task, &winner, &mut conversation).await?;
            match result {
                Ok(result) => {
                    self.record.record(&winner, &task.kind, true);
                    outcome
                        .rounds
                        .push((Some(winner.clone()), "completed".into()));
                    outcome.completed = Some((winner, result));
                    return Ok(outcome);
                }
                Err(reason) => {
                    self.record.record(&winner, &task.kind, false);
                    outcome.rounds.push((Some(winner.clone()), reason));
                    excluded.push(winner);
                }
            }
        }
        Ok(outcome)
    }

    /// One round's call: returns the winning bidder (accepted; the others rejected) and the
    /// conversation so far.
    async fn call_for_bids(
        &mut self,
        task: &Task,
        bidders: &[AgentId],
        conversation_id: &str,
    ) -> Result<(Option<AgentId>, Conversation), Error> {
        let me = self.mailbox.id().clone();
        let mut cfp = Message::new(Performative::CallForProposal, me.clone())
            .content(serde_json::to_string(task).expect("plain data"))
            .language("json")
            .protocol(Protocol::ContractNet.name())
            .conversation(conversation_id)
            .reply_by(Timestamp::after(self.config.bid_window));
        cfp.receivers = bidders.to_vec();
        let mut conversation = Conversation::open(&cfp)?;
        // Bidders that have left the bus cannot answer; the deadline ends their part.
        match self.mailbox.send(&cfp).await {
            Ok(()) | Err(Error::Undeliverable(_)) => {}
            Err(e) => return Err(e),
        }
        let mut bids: HashMap<AgentId, Bid> = HashMap::new();
        let window = tokio::time::Instant::now() + self.config.bid_window;
        while !conversation.at(Stage::Asked).is_empty() {
            let Ok(next) = tokio::time::timeout_at(window, self.mailbox.recv()).await else {
                break;
            };
            let message = next.ok_or(Error::Closed)?;
            if message.conversation_id.as_deref() != Some(conversation_id) {
                tracing::debug!(from = %message.sender, "ignored: not this round's");
                continue;
            }
            if let Err(e) = conversation.observe(&message) {
                tracing::debug!("ignored: {e}");
                continue;
            }
            if message.performative == Performative::Propose {
                match serde_json::from_str::<Bid>(&message.content) {
                    Ok(bid) => {
                        bids.insert(message.sender.clone(), bid);
                    }
                    Err(e) => {
                        // A bid that cannot be read is rejected like a losing one.
                        tracing::debug!(from = %message.sender, "unreadable bid: {e}");
                        let mut reject = message.reply(me.clone(), Performative::RejectProposal);
                        reject.content = format!("unreadable bid: {e}");
                        conversation.observe(&reject)?;
                        let _ = self.mailbox.send(&reject).await;
                    }
                }
            }
        }
        conversation.expire(Timestamp::now());
        let winner = bids
            .iter()
            .map(|(agent, bid)| (score(&self.record, &task.kind, agent, bid), agent))
            .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
            .map(|(_, agent)| agent.clone());
        for agent in conversation.at(Stage::Proposed) {
            let award = Some(&agent) == winner.as_ref();
            let act = if award {
                Performative::AcceptProposal
            } else {
                Performative::RejectProposal
            };
            let mut answer = Message::new(act, me.clone())
                .to(agent.clone())
                .protocol(Protocol::ContractNet.name())
                .conversation(conversation_id)
                .language("json");
            if award {
                answer.content = serde_json::to_string(task).expect("plain data");
                answer.reply_by = Some(Timestamp::after(task.deadline));
            }
            conversation.observe(&answer)?;
            let _ = self.mailbox.send(&answer).await;
        }
        Ok((winner, conversation))
    }

    /// Waits for the winner's result until the task's deadline; on a miss, cancels it.
    async fn await_result(
        &mut self,
        task: &Task,
        winner: &AgentId,
        conversation: &mut Conversation,
    ) -> Result<Result<String, String>, Error> {
        let deadline = tokio::time::Instant::now() + task.deadline;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.mailbox.recv()).await else {
                let cancel = Message::new(Performative::Cancel, self.mailbox.id().clone())
                    .to(winner.clone())
                    .protocol(Protocol::ContractNet.name())
                    .conversation(conversation.id());
                conversation.observe(&cancel)?;
                let _ = self.mailbox.send(&cancel).await;
                return Ok(Err("timed out".into()));
            };
            let message = next.ok_or(Error::Closed)?;
            let ours = message.conversation_id.as_deref() == Some(conversation.id());
            if !ours || message.sender != *winner {
                tracing::debug!(from = %message.sender, "ignored: not the awaited result");
                continue;
            }
            if let Err(e) = conversation.observe(&message) {
                return Ok(Err(format!("broke the protocol: {e}")));
            }
            return Ok(match message.performative {
                Performative::Inform => Ok(message.content),
                Performative::Failure => Err(format!("failed: {}", message.content)),
                other => Err(format!("answered `{other}`")),
            });
        }
    }
}

/// What a contractor does with an awarded task: its result, or why it failed.
pub type WorkResult = Result<String, String>;

/// Runs a contractor on `mailbox`: it answers each call for proposals with
/// `bid(task, load)` (`None`: refuse), works on each award as its own task (`work`), and
/// reports `inform` or `failure`. A `cancel` stops the work and is confirmed. Returns the
/// loop's handle; aborting it is the contractor leaving (or dying).
pub fn serve_contracts<B, W, F>(mut mailbox: Mailbox, bid: B, work: W) -> JoinHandle<()>
where
    B: Fn(&Task, u32) -> Option<Bid> + Send + 'static,
    W: Fn(Task) -> F + Send + Sync + 'static,
    F: Future<Output = WorkResult> + Send + 'static,
{
    tokio::spawn(async move {
        let me = mailbox.id().clone();
        let load = Arc::new(AtomicU32::new(0));
        let work = Arc::new(work);
        let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
        while let Some(message) = mailbox.recv().await {
            running.retain(|_, job| !job.is_finished());
            let conversation = message.conversation_id.clone().unwrap_or_default();
            match message.performative {
                Performative::CallForProposal => {
                    let reply = match serde_json::from_str::<Task>(&message.content) {
                        Ok(task) => match bid(&task, load.load(Ordering::Relaxed)) {
                            Some(b) => message
                                .reply(me.clone(), Performative::Propose)
                                .content(serde_json::to_string(&b).expect("plain data")),
                            None => message.reply(me.clone(), Performative::Refuse),
                        },
                        Err(e) => message
                            .reply(me.clone(), Performative::NotUnderstood)
                            .content(format!("not a task: {e}")),
                    };
                    let _ = mailbox.send(&reply).await;
                }
                Performative::AcceptProposal => {
                    let Ok(task) = serde_json::from_str::<Task>(&message.content) else {
                        let reply = message.reply(me.clone(), Performative::Failure);
                        let _ = mailbox
                            .send(&reply.content("the award names no task"))
                            .await;
                        continue;
                    };
                    let (bus, me, work, load) = (
                        mailbox.bus().clone(),
                        me.clone(),
                        Arc::clone(&work),
                        Arc::clone(&load),
                    );
                    load.fetch_add(1, Ordering::Relaxed);
                    running.insert(
                        conversation,
                        tokio::spawn(async move {
                            let result = work(task).await;
                            load.fetch_sub(1, Ordering::Relaxed);
                            let reply = match result {
                                Ok(result) => {
                                    message.reply(me, Performative::Inform).content(result)
                                }
                                Err(reason) => {
                                    message.reply(me, Performative::Failure).content(reason)
                                }
                            };
                            let _ = bus.send(&reply).await;
                        }),
                    );
                }
                Performative::Cancel => {
                    if let Some(job) = running.remove(&conversation) {
                        job.abort();
                        load.fetch_sub(1, Ordering::Relaxed);
                    }
                    let _ = mailbox
                        .send(&message.reply(me.clone(), Performative::Inform))
                        .await;
                }
                Performative::RejectProposal | Performative::NotUnderstood => {}
                other => {
                    let reply = message
                        .reply(me.clone(), Performative::NotUnderstood)
                        .content(format!(
                            "a contractor answers cfp, accept-proposal and cancel, not `{other}`"
                        ));
                    let _ = mailbox.send(&reply).await;
                }
            }
        }
    })
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_tries_every_agent_then_favours_the_one_that_delivers() {
        let mut record = TrackRecord::default();
        let (good, bad, new) = (
            AgentId::from("good"),
            AgentId::from("bad"),
            AgentId::from("new"),
        );
        for _ in 0..20 {
            record.record(&good, "sum", true);
            record.record(&bad, "sum", false);
        }
        record.record(&bad, "sum", true);
        let bound = |a: &AgentId| record.upper_bound(a, "sum");
        assert!(bound(&good) > bound(&bad));
        assert!(bound(&new) > bound(&good), "an untried agent gets tried");
        // Kinds are kept apart.
        assert_eq!(record.of(&good, "code"), (0, 0));
        let bid = Bid {
            cost: 1.0,
            confidence: 0.9,
            load: 0,
        };
        let busy = Bid {
            load: 3,
            ..bid.clone()
        };
        assert!(score(&record, "sum", &good, &bid) > score(&record, "sum", &good, &busy));
    }
}
