//! Crews over HTTP: the built-in crews and the crew files of `$SYMPHONY_HOME/crews`, run
//! with their members' turns through the models' schedulers, their runs saved where
//! `symphony crew` keeps them (so `symphony crew resume` continues one the server stopped).
//!
//! - `GET /v1/crews`: the crews this server runs
//! - `POST /v1/crews/runs` `{"crew", "goal", "stream"?, "max_tokens"?}`: starts a run; 202
//!   with its id, or with `"stream": true` its messages as server-sent events as they are
//!   sent, then a summary
//! - `GET /v1/crews/runs/{id}`: a run whole (its messages, results, usage, status)
//! - `GET /v1/crews/runs/{id}/events`: a run's messages as server-sent events
//!
//! A request names a crew and cannot bring one: a crew file names tools and remote agents,
//! and only the server's operator chooses those.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use symphony_agents::ChatModel;
use symphony_teams::crew::{self, run_crew, CrewRun, Members, RunFiles};

use crate::agents::{follow, may_access, scheduler_chat, sse, LiveRun};
use crate::auth::Principal;
use crate::error::{ApiError, JsonBody};
use crate::openai::from_value;
use crate::util::{blocking, lock};
use crate::SharedState;

/// Longest goal accepted, in bytes.
const MAX_GOAL_BYTES: usize = 32 * 1024;
/// A member's answer, in tokens, unless the request says otherwise (and never more).
const MAX_ANSWER_TOKENS: usize = 1024;

fn runs(state: &SharedState) -> RunFiles {
    RunFiles::new(state.config.crews.join("runs"))
}

pub async fn list_crews(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let dir = state.config.crews.clone();
    let crews = blocking(move || {
        let mut names: Vec<String> = crew::BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "yaml") {
                    if let Some(stem) = path.file_stem() {
                        names.push(stem.to_string_lossy().into_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| match crew::find(&dir, &name) {
                Ok(spec) => json!({
                    "name": name,
                    "process": spec.process,
                    "model": spec.model,
                    "agents": spec.agents.iter().map(|(n, a)| json!({"name": n, "role": a.role})).collect::<Vec<_>>(),
                    "tasks": spec.tasks.iter().map(|t| &t.id).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"name": name, "error": e}),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({"object": "list", "data": crews})).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    /// A built-in crew or a crew file of the server's.
    crew: String,
    goal: String,
    #[serde(default)]
    stream: bool,
    /// Each member's answer, in tokens (at most 1024).
    #[serde(default)]
    max_tokens: Option<usize>,
}

pub async fn start_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: StartRequest = from_value(&body)?;
    if req.goal.trim().is_empty() {
        return Err(ApiError::invalid_param("goal", "`goal` is empty"));
    }
    if req.goal.len() > MAX_GOAL_BYTES {
        return Err(ApiError::invalid_param(
            "goal",
            format!("`goal` is longer than {MAX_GOAL_BYTES} bytes"),
        ));
    }
    let max_tokens = req.max_tokens.unwrap_or(512).clamp(1, MAX_ANSWER_TOKENS);
    let (dir, name) = (state.config.crews.clone(), req.crew.clone());
    let spec = blocking(move || {
        crew::find(&dir, &name).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))
    })
    .await?;
    // Every model the crew uses, loaded before the run starts (a missing one is this
    // request's error, not a failed run).
    let mut models = BTreeMap::new();
    for name in spec.models() {
        let loaded =
            state.registry.get(name, None).await.map_err(|e| {
                ApiError::new(e.status, format!("crew '{}': {}", req.crew, e.message))
            })?;
        models.insert(name.to_string(), loaded);
    }
    let id = CrewRun::fresh_id();
    let mut run = CrewRun::new(id.clone(), spec.clone(), req.goal);
    run.owner = Some(principal.name.clone());
    let files = runs(&state);
    files.save(&run).map_err(ApiError::internal)?;

    let live = LiveRun::new();
    lock(&state.agents.live).insert(id.clone(), live.clone());
    let (app, handle, follow_live) = (
        state.clone(),
        tokio::runtime::Handle::current(),
        live.clone(),
    );
    let span = tracing::info_span!("crew_run", run_id = %id, crew = %req.crew);
    let thread = std::thread::Builder::new()
        .name(format!("crew {id}"))
        .spawn(move || {
            span.in_scope(|| {
                let mut chat = |model: &str, max: usize| {
                    let loaded = models[model].clone();
                    let chat = scheduler_chat(
                        app.clone(),
                        principal.clone(),
                        loaded,
                        handle.clone(),
                        max,
                    )?;
                    Ok(chat as Box<dyn ChatModel>)
                };
                let outcome = Members::for_spec(&spec, &mut chat, max_tokens)
                    .map_err(|e| e.to_string())
                    .and_then(|mut members| {
                        members.record = files.load_record().unwrap_or_default();
                        let ran =
                            run_crew(&mut run, &mut members, &mut |r| files.save(r), &mut |m| {
                                follow_live.push(json!({"type": "message", "message": m}))
                            });
                        let _ = files.save_record(&members.record);
                        ran.map_err(|e| e.to_string())
                    });
                let mut summary = json!({
                    "type": "summary",
                    "id": run.id,
                    "status": run.status,
                    "result": run.result,
                    "usage": run.usage,
                });
                if let Err(e) = outcome {
                    tracing::error!(event = "crew_run_failed", run = %run.id, error = %e);
                    summary["error"] = json!(e);
                }
                follow_live.push(summary);
                lock(&app.agents.live).remove(&run.id);
                follow_live.finish();
            })
        });
    if let Err(e) = thread {
        lock(&state.agents.live).remove(&id);
        return Err(ApiError::internal(format!("cannot start the crew: {e}")));
    }
    if req.stream {
        return Ok(sse(follow(live)));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": id,
            "object": "crew.run",
            "status": "running",
            "events": format!("/v1/crews/runs/{id}/events"),
        })),
    )
        .into_response())
}

/// Run `id` as saved, if `principal` may see it (another's is answered as missing).
async fn load(state: &SharedState, principal: &Principal, id: &str) -> Result<CrewRun, ApiError> {
    let (files, key) = (runs(state), id.to_string());
    let run = blocking(move || {
        files
            .load(&key)
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))
    })
    .await?;
    if !may_access(principal, run.owner.as_deref()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no crew run '{id}' of yours"),
        ));
    }
    Ok(run)
}

fn view(run: &CrewRun, live: bool) -> Value {
    let mut view = serde_json::to_value(run).unwrap_or_default();
    view["object"] = json!("crew.run");
    view["live"] = json!(live);
    view
}

pub async fn get_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let run = load(&state, &principal, &id).await?;
    let live = state.agents.live(&id).is_some();
    Ok(Json(view(&run, live)).into_response())
}

pub async fn run_events(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let run = load(&state, &principal, &id).await?;
    if let Some(live) = state.agents.live(&id) {
        return Ok(sse(follow(live)));
    }
    let mut state_event = view(&run, false);
    state_event["type"] = json!("state");
    Ok(sse(futures_util::stream::iter([state_event.to_string()])))
}
