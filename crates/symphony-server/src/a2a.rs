//! The server's agents as Agent2Agent endpoints (protocol 1.0, JSON-RPC binding), one per
//! agent file: `GET /a2a/{agent}/.well-known/agent-card.json` is its card and
//! `POST /a2a/{agent}` takes `SendMessage`, `SendStreamingMessage`, `GetTask` and
//! `CancelTask`. A task is an agent run: the same run `/v1/agents/runs` starts, stored in
//! the same place, so `symphony agent ls` lists the runs remote agents asked for.
//!
//! JSON-RPC answers always come with HTTP 200, errors included, as the protocol's binding
//! says; a stream ends (the connection closes) with the task's last status.

use std::convert::Infallible;

use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use symphony_agents::{Ending, RunState};
use symphony_teams::a2a::{
    codes, A2aMessage, AgentCard, AgentInterface, Artifact, ArtifactUpdate, Capabilities, Part,
    Role, Skill, StatusUpdate, StreamResponse, Task, TaskState, TaskStatus, VERSION,
};

use crate::agents;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ollama::rfc3339;
use crate::SharedState;

/// `GET /a2a/{agent}/.well-known/agent-card.json`.
pub async fn card(
    State(state): State<SharedState>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let spec = agents::find_served(&state, &agent).await?;
    let url = format!("{}/a2a/{}", base_url(&headers), spec.name);
    let description = spec
        .instructions
        .as_deref()
        .and_then(|i| i.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("A Symphony agent")
        .to_string();
    let card = AgentCard {
        name: spec.name.clone(),
        description: description.clone(),
        supported_interfaces: vec![AgentInterface {
            url,
            protocol_binding: "JSONRPC".into(),
            protocol_version: VERSION.into(),
        }],
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: Capabilities { streaming: true },
        default_input_modes: vec!["text/plain".into()],
        default_output_modes: vec!["text/plain".into()],
        skills: vec![Skill {
            id: spec.name.clone(),
            name: spec.name.clone(),
            description,
            tags: spec.tools.clone(),
        }],
    };
    Ok(Json(card).into_response())
}

/// The URL clients reached this server by, from the request's `Host` (and, behind a
/// proxy, `X-Forwarded-Proto`).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Response {
    Json(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message.into()},
    }))
    .into_response()
}

fn rpc_result(id: &Value, result: impl serde::Serialize) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// `POST /a2a/{agent}`: one JSON-RPC request.
pub async fn rpc(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return rpc_error(&Value::Null, codes::PARSE_ERROR, e.to_string()),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return rpc_error(&id, codes::INVALID_REQUEST, "a request names its `method`");
    };
    // 1.x, or no header at all (a lenient reading of clients that predate it).
    let version = headers
        .get("a2a-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(VERSION);
    if version.split('.').next() != Some("1") {
        return rpc_error(
            &id,
            codes::VERSION_NOT_SUPPORTED,
            format!("A2A version '{version}' is not supported: this server speaks {VERSION}"),
        );
    }
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let answer = match method {
        "SendMessage" => send(&state, &principal, &agent, &id, &params, false).await,
        "SendStreamingMessage" => send(&state, &principal, &agent, &id, &params, true).await,
        "GetTask" => get(&state, &principal, &params)
            .await
            .map(|t| rpc_result(&id, t)),
        "CancelTask" => cancel(&state, &principal, &params).await,
        other => Err((codes::METHOD_NOT_FOUND, format!("no method `{other}`"))),
    };
    match answer {
        Ok(response) => response,
        Err((code, message)) => rpc_error(&id, code, message),
    }
}

type RpcResult<T> = Result<T, (i64, String)>;

fn api_error(e: ApiError) -> (i64, String) {
    let code = match e.status.as_u16() {
        404 => codes::TASK_NOT_FOUND,
        400 | 413 | 422 => codes::INVALID_PARAMS,
        _ => codes::INTERNAL,
    };
    (code, e.message)
}

/// The request's text, and the context it belongs to.
fn read_message(params: &Value) -> RpcResult<(String, Option<String>)> {
    let message: A2aMessage = params
        .get("message")
        .cloned()
        .ok_or((
            codes::INVALID_PARAMS,
            "`params.message` is missing".to_string(),
        ))
        .and_then(|m| {
            serde_json::from_value(m)
                .map_err(|e| (codes::INVALID_PARAMS, format!("`params.message`: {e}")))
        })?;
    if message.role != Role::User {
        return Err((
            codes::INVALID_PARAMS,
            "the message's role must be ROLE_USER".into(),
        ));
    }
    if message.task_id.is_some() {
        return Err((
            codes::UNSUPPORTED_OPERATION,
            "each message starts a task of its own: a task takes no further messages".into(),
        ));
    }
    let text = message.text();
    if text.trim().is_empty() {
        return Err((codes::INVALID_PARAMS, "the message has no text".into()));
    }
    Ok((text, message.context_id))
}

/// `SendMessage` (waits for the task's end unless `returnImmediately`) and
/// `SendStreamingMessage` (its events as they come).
async fn send(
    state: &SharedState,
    principal: &Principal,
    agent: &str,
    id: &Value,
    params: &Value,
    stream: bool,
) -> RpcResult<Response> {
    let (text, context) = read_message(params)?;
    let (run, live) = agents::start(state, principal, agent, &text, Default::default())
        .await
        .map_err(api_error)?;
    let context = context.unwrap_or_else(|| run.clone());
    let immediately = params
        .pointer("/configuration/returnImmediately")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream {
        if immediately {
            let task = working(&run, &context, TaskState::Submitted);
            return Ok(rpc_result(id, StreamResponse::Task(task)));
        }
        // Waits for the run to stop, then reads how it ended.
        let mut events = std::pin::pin!(agents::follow(live));
        while events.next().await.is_some() {}
        let task = load_task(state, principal, &run, &context)
            .await
            .map_err(api_error)?;
        return Ok(rpc_result(id, StreamResponse::Task(task)));
    }
    let (app, who) = (state.clone(), principal.clone());
    let first = StreamResponse::Task(working(&run, &context, TaskState::Submitted));
    let (task_id, context_id) = (run.clone(), context.clone());
    // Each event of the run is a working status carrying the event as data; the run's end
    // is its artifact (the answer) and its last status, and then the stream closes.
    let progress = agents::follow(live).map(move |event| {
        let data: Value = serde_json::from_str(&event).unwrap_or(Value::String(event));
        StreamResponse::StatusUpdate(StatusUpdate {
            task_id: task_id.clone(),
            context_id: context_id.clone(),
            status: TaskStatus {
                state: TaskState::Working,
                message: Some(agent_message(
                    &task_id,
                    &context_id,
                    Part {
                        data: Some(data),
                        ..Part::default()
                    },
                )),
                timestamp: Some(now()),
            },
        })
    });
    let end = futures_util::stream::once(async move {
        let task = match load_task(&app, &who, &run, &context).await {
            Ok(task) => task,
            Err(e) => {
                let mut task = working(&run, &context, TaskState::Failed);
                task.status.message = Some(agent_message(&run, &context, Part::text(e.message)));
                task
            }
        };
        let mut last = Vec::new();
        for artifact in task.artifacts {
            last.push(StreamResponse::ArtifactUpdate(ArtifactUpdate {
                task_id: task.id.clone(),
                context_id: task.context_id.clone(),
                artifact,
            }));
        }
        last.push(StreamResponse::StatusUpdate(StatusUpdate {
            task_id: task.id,
            context_id: task.context_id,
            status: task.status,
        }));
        futures_util::stream::iter(last)
    })
    .flatten();
    let id = id.clone();
    let events = futures_util::stream::once(async move { first })
        .chain(progress)
        .chain(end)
        .map(move |event| {
            let framed = json!({"jsonrpc": "2.0", "id": id, "result": event});
            Ok::<_, Infallible>(SseEvent::default().data(framed.to_string()))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

fn agent_message(task: &str, context: &str, part: Part) -> A2aMessage {
    A2aMessage {
        message_id: format!("{task}-{}", now()),
        context_id: Some(context.to_string()),
        task_id: Some(task.to_string()),
        role: Role::Agent,
        parts: vec![part],
    }
}

fn working(run: &str, context: &str, state: TaskState) -> Task {
    Task {
        id: run.to_string(),
        context_id: context.to_string(),
        status: TaskStatus {
            state,
            message: None,
            timestamp: Some(now()),
        },
        artifacts: Vec::new(),
        history: Vec::new(),
    }
}

/// The stored run `id` as a task.
async fn load_task(
    state: &SharedState,
    principal: &Principal,
    id: &str,
    context: &str,
) -> Result<Task, ApiError> {
    let stored = agents::load_run(state, principal, id).await?;
    let live = state.agents.live(id).is_some();
    Ok(task_of(id, context, &stored.state, live))
}

/// How a run reads as a task: answered is completed (the answer its artifact), a step limit
/// failed, waiting for a person's approval input-required, running working, and a run
/// stopped half-way (the server went down) failed until someone resumes it.
fn task_of(id: &str, context: &str, run: &RunState, live: bool) -> Task {
    let mut task = working(id, context, TaskState::Working);
    let (state, note) = match (run.ending, &run.awaiting_approval) {
        (Some(Ending::Answered), _) => (TaskState::Completed, None),
        (Some(Ending::StepLimit), _) => (
            TaskState::Failed,
            Some("the agent reached its step limit without an answer".to_string()),
        ),
        (Some(Ending::AwaitingApproval), _) | (None, Some(_)) => (
            TaskState::InputRequired,
            Some(format!(
                "a tool call waits for approval: POST /v1/agents/runs/{id}/approve"
            )),
        ),
        (None, None) if live => (TaskState::Working, None),
        (None, None) => (
            TaskState::Failed,
            Some(format!(
                "the run stopped before its end: POST /v1/agents/runs/{id}/resume"
            )),
        ),
    };
    task.status.state = state;
    if state == TaskState::Completed {
        let answer = run.outcome().answer;
        task.status.message = Some(agent_message(id, context, Part::text(answer.clone())));
        task.artifacts.push(Artifact {
            artifact_id: format!("{id}-answer"),
            name: Some("answer".into()),
            parts: vec![Part::text(answer)],
        });
    } else if let Some(note) = note {
        task.status.message = Some(agent_message(id, context, Part::text(note)));
    }
    task.history.push(A2aMessage {
        message_id: format!("{id}-task"),
        context_id: Some(context.to_string()),
        task_id: Some(id.to_string()),
        role: Role::User,
        parts: vec![Part::text(run.task.clone())],
    });
    task
}

fn task_id(params: &Value) -> RpcResult<String> {
    params
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or((
            codes::INVALID_PARAMS,
            "`params.id` names the task".to_string(),
        ))
}

async fn get(state: &SharedState, principal: &Principal, params: &Value) -> RpcResult<Task> {
    let id = task_id(params)?;
    load_task(state, principal, &id, &id).await.map_err(|e| {
        if e.status.as_u16() == 404 {
            (codes::TASK_NOT_FOUND, "Task not found".to_string())
        } else {
            api_error(e)
        }
    })
}

/// Runs go on until they answer or pause for approval: none can be cancelled half-way.
async fn cancel(state: &SharedState, principal: &Principal, params: &Value) -> RpcResult<Response> {
    let task = get(state, principal, params).await?;
    Err((
        codes::TASK_NOT_CANCELABLE,
        format!(
            "Task cannot be canceled: agent runs are not stopped half-way (it is {:?})",
            task.status.state
        ),
    ))
}
