//! What a loop runs with besides the run's state: one bundle, so that every loop (and each
//! step of a plan) takes the same two arguments instead of seven to nine.

use super::approval::Approver;
use super::checkpoint::Checkpoint;
use super::config::AgentConfig;
use super::events::Event;
use crate::error::Error;
use crate::model::ChatModel;
use crate::registry::ToolRegistry;

/// Opens another session on the same model, for steps that run at the same time.
pub type ChatFactory<'m> = dyn Fn() -> Result<Box<dyn ChatModel + Send + 'm>, Error> + Sync + 'm;

/// The model, the tools and the policies a loop works with, and where what it does goes.
/// The front end (CLI or server) fills it with its own approval policy and event sink.
/// `'m` is the model's own lifetime, which the sessions the factory opens borrow.
pub struct Harness<'r, 'm> {
    /// The session that takes the run's turns.
    pub model: &'r mut dyn ChatModel,
    /// Further sessions on the same model, for the steps of a plan that can run at the same
    /// time (the other loops do not use it; without it, steps run one after another).
    pub more: Option<&'r ChatFactory<'m>>,
    pub tools: &'r ToolRegistry,
    pub config: &'r AgentConfig,
    /// Asked before a tool that needs approval runs.
    pub approve: &'r mut Approver<'r>,
    /// Told of each event, after the state it follows from is saved.
    pub on_event: &'r mut dyn FnMut(&Event),
    /// Where the run is saved after every change.
    pub checkpoint: &'r mut dyn Checkpoint,
}
