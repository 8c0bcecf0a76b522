//! Driving a run: the loop its agent names, run from its state.

use crate::error::Error;
use crate::model::ChatModel;
use crate::plan::plan_loop;
use crate::react::react_loop;
use crate::reflect::reflect_loop;
use crate::registry::ToolRegistry;
use crate::run::{
    AgentConfig, Approver, ChatFactory, Checkpoint, Event, Harness, RunOutcome, RunState,
};
use crate::spec::LoopKind;

/// Runs (or resumes) `state` with the loop `kind`.
#[allow(clippy::too_many_arguments)]
/// `more` opens further sessions of the model, for the steps of a plan that can run at the
/// same time (other loops do not use it).
pub fn run_loop(
    kind: LoopKind,
    model: &mut dyn ChatModel,
    more: Option<&ChatFactory<'_>>,
    tools: &ToolRegistry,
    config: &AgentConfig,
    state: &mut RunState,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<RunOutcome, Error> {
    let harness = &mut Harness {
        model,
        more,
        tools,
        config,
        approve,
        on_event,
        checkpoint,
    };
    match kind {
        LoopKind::React => react_loop(harness, state),
        LoopKind::Reflect => reflect_loop(harness, state),
        LoopKind::Plan => plan_loop(harness, state),
    }
}
