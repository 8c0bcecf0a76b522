//! Checkpoints: a run saved after every change, so that one stopped at any point resumes
//! where it stopped.

use super::state::RunState;
use crate::error::Error;

/// Saves a run as it goes: called after every change. A conversation only grows, so a store
/// appends the messages past those it holds (deltas) and rewrites only the small state.
pub trait Checkpoint {
    fn save(&mut self, state: &RunState) -> Result<(), Error>;
}

/// No saving: the run lives in memory only.
pub struct InMemory;

impl Checkpoint for InMemory {
    fn save(&mut self, _: &RunState) -> Result<(), Error> {
        Ok(())
    }
}
