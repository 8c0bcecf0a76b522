//! Approvals: what a front end decides about a call that needs a person's consent.

use serde_json::Value;

/// A decision on a call that needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Allow,
    Deny,
    /// No one can decide now: the run is checkpointed and pauses; a decision recorded later
    /// with [`RunState::decide`](super::RunState::decide) lets it resume.
    Pause,
}

impl From<bool> for Approval {
    fn from(allow: bool) -> Self {
        if allow {
            Approval::Allow
        } else {
            Approval::Deny
        }
    }
}

/// Asked before a tool marked as needing approval runs.
pub type Approver<'a> = dyn FnMut(&str, &Value) -> Approval + 'a;
