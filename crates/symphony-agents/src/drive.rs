//! Driving a stored run, the one way the CLI and the server both do it: the run is claimed
//! (so no other process drives it at the same time), its tools are built from its agent
//! file, the loop its agent names runs from its stored state, checkpointed into the run
//! store, the claim is given up, and an answered run is kept in the agent's memory as an
//! episode. A front end brings only its own parts (see [`Front`]): the model's sessions,
//! its approval policy and where the events go.

use std::sync::Arc;

use crate::error::Error;
use crate::mcp::Sampler;
use crate::memory::{episode, Kind, Memory};
use crate::plan::plan_loop;
use crate::react::react_loop;
use crate::reflect::reflect_loop;
use crate::registry::ToolRegistry;
use crate::run::{Approver, ChatFactory, Ending, Event, Harness, RunOutcome, RunState};
use crate::runs::{Claim, RunStore};
use crate::spec::{AgentSpec, LoopKind, OpenCollection, ToolEnv};

/// Runs (or resumes) `state` with the loop `kind`.
pub fn run_loop(
    kind: LoopKind,
    harness: &mut Harness<'_, '_>,
    state: &mut RunState,
) -> Result<RunOutcome, Error> {
    match kind {
        LoopKind::React => react_loop(harness, state),
        LoopKind::Reflect => reflect_loop(harness, state),
        LoopKind::Plan => plan_loop(harness, state),
    }
}

/// What a front end brings to a run: the model's sessions, whom it asks about a call that
/// needs approval, and where each event goes.
pub struct Front<'f, 'm> {
    /// The session that takes the run's turns.
    pub chat: &'f mut dyn crate::model::ChatModel,
    /// Further sessions, for the steps of a plan that can run at the same time.
    pub more: Option<&'f ChatFactory<'m>>,
    pub approve: &'f mut Approver<'f>,
    pub on_event: &'f mut dyn FnMut(&Event),
}

/// A run this process holds (see [`RunStore::claim`]), ready to be driven. Dropping it
/// gives the run up.
pub struct ClaimedRun {
    store: RunStore,
    claim: Claim,
    id: String,
    spec: AgentSpec,
    state: RunState,
    memory: Option<Arc<Memory>>,
}

/// A run driven to its end, or to a pause for an approval.
#[derive(Debug)]
pub struct Finished {
    pub outcome: RunOutcome,
    /// Keeping the answered run in the agent's memory failed. The run itself is finished
    /// and stored; each front end decides what this failure means to its caller.
    pub memory_error: Option<Error>,
}

impl ClaimedRun {
    /// Claims run `id` of `store` for this process, to drive it from `state` as `spec`
    /// declares, its episodes kept in `memory`. Refused while another process or thread
    /// drives it ([`Error::Busy`]) and for an id not stored ([`Error::RunNotFound`]).
    pub fn claim(
        mut store: RunStore,
        id: &str,
        spec: AgentSpec,
        state: RunState,
        memory: Option<Arc<Memory>>,
    ) -> Result<Self, Error> {
        let claim = store.claim(id)?;
        Ok(Self {
            store,
            claim,
            id: id.to_string(),
            spec,
            state,
            memory,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// The run's tools as its agent file declares them, its memory's tools among them;
    /// `open_collection` opens the collections `search_documents` reads, `sampler` answers
    /// its MCP servers' sampling requests.
    pub fn tools(
        &self,
        open_collection: Option<&OpenCollection<'_>>,
        sampler: Option<Arc<dyn Sampler>>,
    ) -> Result<ToolRegistry, Error> {
        self.spec.registry(ToolEnv {
            open_collection,
            memory: self.memory.clone(),
            sampler,
        })
    }

    /// Runs the agent's loop from the stored state with `tools`, checkpointing every step
    /// into the run store, then gives the run up and keeps an answered run as an episode.
    /// A failure to give the run up outweighs the loop's own result, as the run would stay
    /// held.
    pub fn drive(self, tools: &ToolRegistry, front: Front<'_, '_>) -> Result<Finished, Error> {
        let Self {
            mut store,
            claim,
            id,
            spec,
            mut state,
            memory,
        } = self;
        let config = spec.config();
        let outcome = run_loop(
            spec.loop_kind,
            &mut Harness {
                model: front.chat,
                more: front.more,
                tools,
                config: &config,
                approve: front.approve,
                on_event: front.on_event,
                checkpoint: &mut store.checkpoint(&id),
            },
            &mut state,
        );
        claim.release()?;
        let outcome = outcome?;
        let memory_error = match (&memory, outcome.ending) {
            (Some(memory), Ending::Answered) => memory
                .remember(Kind::Episode, &episode(&state.task, &outcome.answer))
                .err(),
            _ => None,
        };
        Ok(Finished {
            outcome,
            memory_error,
        })
    }
}
