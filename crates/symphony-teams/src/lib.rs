//! Teams of agents that talk in FIPA-ACL.
//!
//! - [`acl`]: the message ([`Message`]): the 22 communicative acts, the standard fields, and
//!   replies built as the FIPA specification says.
//! - [`bus`]: one API ([`Bus`]) over two transports: async channels in this process, and NATS
//!   (one subject per agent inbox, the ACL fields in headers). A malformed message or an
//!   unknown act is answered with `not-understood` and never reaches the agent.
//! - [`directory`]: the directory facilitator, an agent like the others: register,
//!   deregister and search by service, with leases that lapse when an agent stops renewing.
//! - [`protocol`]: the interaction protocols (request, query, propose, subscribe,
//!   contract-net, iterated contract-net) as state machines that reject illegal moves and
//!   enforce `reply-by` deadlines.
//! - [`delegation`]: contract-net delegation with re-bids on failure and a conductor that
//!   learns whom to award from outcomes.
//! - [`reasoning`]: several answers made one: self-consistency, debate, weighted votes
//!   and synthesis.
//! - [`crew`]: crews in YAML (roles, goals, tasks with dependencies and conditions,
//!   sequential or managed), with budgets that always apply and runs that resume.
//! - [`a2a`]: the Agent2Agent protocol's wire types, and remote A2A agents as crew members.
//! - [`versus`]: a team against one agent on generated word problems, at equal budget.
//! - [`humaneval`]: the same methods on HumanEval's functions, judged by their hidden tests.
//! - [`bench`]: message latency and throughput between many agents.

pub mod a2a;
pub mod acl;
pub mod bench;
pub mod bus;
pub mod crew;
pub mod delegation;
pub mod directory;
mod error;
pub mod humaneval;
pub mod protocol;
pub mod reasoning;
pub mod versus;

pub use acl::{AgentId, Message, Performative};
pub use bus::{Bus, DurableMailbox, Mailbox};
pub use error::Error;
