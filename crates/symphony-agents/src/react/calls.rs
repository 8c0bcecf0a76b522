//! Running the calls of a turn: each through the registry (time limits, errors turned into
//! observations), a repeated call answered from the conversation instead of run again, and
//! a call that needs approval asked about (or the run paused) before it runs.

use symphony_types::{ChatMessage, Role, ToolCall};

use crate::error::Error;
use crate::run::{Approval, Event, Harness, RunState};

/// Runs the calls of the last turn, one checkpoint per result.
pub(super) fn run_calls(
    h: &mut Harness<'_, '_>,
    state: &mut RunState,
    calls: Vec<ToolCall>,
) -> Result<(), Error> {
    let step = state.step;
    for call in calls {
        let earlier = state.earlier_results(&call);
        // The first result is the call's real one; later ones are this guard's replies.
        let (output, error) = if let Some(first) = earlier.first() {
            // The same call again is not run: its answer is in the conversation already. A
            // call that failed once gets one chance to be corrected; otherwise the model
            // must answer now.
            let correctable = first.starts_with("Error:") && earlier.len() == 1;
            state.must_answer |= !correctable;
            (h.on_event)(&Event::Notice {
                step,
                text: format!("repeated call to {}: not run again", call.name),
            });
            let output = if correctable {
                format!(
                    "This exact call already failed: {first}\nDo not repeat it: call the tool \
                     with other arguments (leave out the optional ones you do not need), or \
                     answer the user."
                )
            } else {
                format!(
                    "This exact call was already made; its result was: {first}\n\
                     Use that result to answer the user now."
                )
            };
            (output, correctable)
        } else if h.tools.get(&call.name).is_some_and(|t| t.needs_approval())
            && !approved(h, state, &call)?
        {
            if state.awaiting_approval.is_some() {
                return Ok(());
            }
            ("Error: a person denied this call.".to_string(), true)
        } else {
            state.tool_calls += 1;
            match h.tools.call(&call.name, call.arguments.clone()) {
                Ok(text) => (text, false),
                Err(e) => (format!("Error: {e}"), true),
            }
        };
        let mut result = ChatMessage::new(Role::Tool, output.clone());
        result.tool_call_id = Some(call.id.clone());
        result.name = Some(call.name.clone());
        state.messages.push(result);
        // Saved before it is reported: whatever a reader has seen survives a crash.
        h.checkpoint.save(state)?;
        (h.on_event)(&Event::ToolResult {
            step,
            id: call.id,
            name: call.name,
            output,
            error,
        });
    }
    Ok(())
}

/// Whether a call that needs approval may run: a decision recorded earlier stands;
/// otherwise the approver is asked, and its decision recorded before the call runs. On
/// [`Approval::Pause`] the run is marked as waiting and `false` returned.
fn approved(h: &mut Harness<'_, '_>, state: &mut RunState, call: &ToolCall) -> Result<bool, Error> {
    if let Some(&decided) = state.approvals.get(&call.id) {
        return Ok(decided);
    }
    let allow = match (h.approve)(&call.name, &call.arguments) {
        Approval::Allow => true,
        Approval::Deny => false,
        Approval::Pause => {
            state.awaiting_approval = Some(call.id.clone());
            h.checkpoint.save(state)?;
            (h.on_event)(&Event::ApprovalNeeded {
                step: state.step,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            return Ok(false);
        }
    };
    state.approvals.insert(call.id.clone(), allow);
    h.checkpoint.save(state)?;
    Ok(allow)
}
