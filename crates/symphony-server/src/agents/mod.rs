//! Agents over HTTP: the agent files of one directory (`symphony serve --agents DIR`, by
//! default `$SYMPHONY_HOME/agents`), with their runs in the same store as `symphony agent`,
//! so a run started over HTTP is listed, shown, resumed or approved from the command line
//! too, and the other way round.
//!
//! - `GET /v1/agents`: the agents the directory declares
//! - `POST /v1/agents/runs` `{"agent", "task", "stream"?}`: starts a run; 202 with its id, or
//!   with `"stream": true` its events as server-sent events
//! - `GET /v1/agents/runs`, `GET /v1/agents/runs/{id}`: runs, and one run whole
//! - `GET /v1/agents/runs/{id}/events`: a run's events as server-sent events (a run in
//!   progress from its first event on; one that is not, its state)
//! - `POST /v1/agents/runs/{id}/approve` `{"approve"?, "stream"?}`: decides the call a run
//!   waits on and continues it
//! - `POST /v1/agents/runs/{id}/resume` `{"stream"?}`: continues a run that was stopped
//!
//! Only the directory's agents run: a request names one and cannot bring tools of its own,
//! so a client never starts a process or reaches a file the server's operator did not name.
//! A call that needs approval always pauses the run (there is no one to ask on the server).
//! A run goes on when its client goes away; every step is checkpointed, so a run the server
//! stopped in the middle of is continued with `resume`. The model's turns go through the
//! model's scheduler, batched with the server's other requests.

mod driver;
pub(crate) use driver::scheduler_chat;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use symphony_agents::mcp::Sampler;
use symphony_agents::memory::Memory;
use symphony_agents::{
    AgentSpec, Checkpoint, ClaimedRun, RunState, RunStore, StoredRun, ToolRegistry,
};
use symphony_app::Models;
use symphony_models::embedding::Embedder;
use symphony_rag::Collection;
use tokio::sync::watch;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, JsonBody};
use crate::openai::from_value;
use crate::util::{blocking, lock};
use crate::SharedState;
use driver::Driver;

/// Longest task accepted, in bytes.
const MAX_TASK_BYTES: usize = 32 * 1024;

/// The agents a server runs, and the runs it is driving now.
pub struct Agents {
    /// Where the agent files are.
    pub dir: PathBuf,
    /// The run store (`runs.sqlite`).
    pub runs: PathBuf,
    /// Runs in progress (agent runs and crew runs), by id.
    pub(crate) live: Mutex<HashMap<String, Arc<LiveRun>>>,
}

impl Agents {
    pub fn new(dir: PathBuf, runs: PathBuf) -> Self {
        Self {
            dir,
            runs,
            live: Mutex::default(),
        }
    }

    pub(crate) fn live(&self, id: &str) -> Option<Arc<LiveRun>> {
        lock(&self.live).get(id).cloned()
    }
}

/// A run this server is driving: its events so far, and how many there are (watched by
/// the streams that follow it).
pub(crate) struct LiveRun {
    events: Mutex<Vec<String>>,
    /// (events so far, whether the run has stopped).
    progress: watch::Sender<(usize, bool)>,
}

impl LiveRun {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::default(),
            progress: watch::Sender::new((0, false)),
        })
    }

    pub(crate) fn push(&self, event: Value) {
        let mut events = lock(&self.events);
        events.push(event.to_string());
        self.progress.send_replace((events.len(), false));
    }

    pub(crate) fn finish(&self) {
        let n = lock(&self.events).len();
        self.progress.send_replace((n, true));
    }
}

/// The agents' errors as HTTP answers, by kind: a missing run is 404, a run driven
/// elsewhere or waiting for no decision 409, an invalid agent 400, the rest 500.
impl From<symphony_agents::Error> for ApiError {
    fn from(e: symphony_agents::Error) -> Self {
        use symphony_agents::Error as E;
        match e {
            E::RunNotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no run '{id}' (see `symphony agent ls`)"),
            ),
            E::Busy(m) => conflict(m),
            e @ (E::NotAwaitingApproval | E::CallNotPending(_)) => conflict(e.to_string()),
            e @ E::InvalidAgent(_) => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

fn open_store(state: &SharedState) -> Result<RunStore, ApiError> {
    Ok(RunStore::open(&state.agents.runs)?)
}

/// Whether `principal` may see and act on a run of `owner`'s: its own, or any for an admin.
/// A run started on the command line has no owner and is an admin's alone.
pub(crate) fn may_access(principal: &Principal, owner: Option<&str>) -> bool {
    principal.role == Role::Admin || owner == Some(principal.name.as_str())
}

/// Run `id`, if `principal` may access it. Another's run is answered as missing, so that a
/// caller cannot learn which ids exist.
pub(crate) async fn load_run(
    state: &SharedState,
    principal: &Principal,
    id: &str,
) -> Result<StoredRun, ApiError> {
    let (app, key) = (state.clone(), id.to_string());
    let stored = blocking(move || Ok(open_store(&app)?.load(&key)?)).await?;
    if !may_access(principal, stored.owner.as_deref()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run '{id}' of yours (see GET /v1/agents/runs)"),
        ));
    }
    Ok(stored)
}

/// Refuses to continue a run whose agent is not this server's: its stored spec must be the
/// one its agent file in the server's directory declares now. Otherwise a run paused
/// elsewhere (by `symphony agent` with tools the server's operator never offered) would be
/// carried out here.
async fn check_agent_is_served(state: &SharedState, run: &StoredRun) -> Result<(), ApiError> {
    let (dir, name) = (state.agents.dir.clone(), run.spec.name.clone());
    let served = blocking(move || find_agent(&dir, &name)).await;
    let id = &run.id;
    match served {
        Ok(spec) if spec == run.spec => Ok(()),
        Ok(_) => Err(conflict(format!(
            "run {id}: agent '{}' in this server's agents directory has changed since the run \
             started; continue it with `symphony agent resume {id}`",
            run.spec.name
        ))),
        Err(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "run {id}: agent '{}' is not one of this server's agents (see GET /v1/agents); \
                 continue it with `symphony agent resume {id}`",
                run.spec.name
            ),
        )),
    }
}

/// The agent files of `dir`, each loaded (or the reason it does not load).
fn agent_files(dir: &Path) -> Vec<(PathBuf, Result<AgentSpec, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let spec = AgentSpec::load(&p).map_err(|e| e.to_string());
            (p, spec)
        })
        .collect()
}

fn find_agent(dir: &Path, name: &str) -> Result<AgentSpec, ApiError> {
    let files = agent_files(dir);
    for (_, spec) in &files {
        if let Ok(spec) = spec {
            if spec.name == name {
                return Ok(spec.clone());
            }
        }
    }
    // A file named after the agent that does not load: say why, not "no such agent".
    for (path, spec) in files {
        if let Err(e) = spec {
            if path.file_stem().is_some_and(|s| s == name) {
                return Err(ApiError::internal(e));
            }
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no agent '{name}' in {} (see GET /v1/agents)",
            dir.display()
        ),
    ))
}

pub async fn list_agents(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let dir = state.agents.dir.clone();
    let agents = blocking(move || {
        Ok(agent_files(&dir)
            .into_iter()
            .map(|(path, spec)| {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                match spec {
                    Ok(s) => json!({
                        "name": s.name,
                        "file": file,
                        "model": s.model,
                        "loop": s.loop_kind,
                        "tools": s.tools,
                        "mcp_servers": s.mcp_servers.iter().map(|m| &m.name).collect::<Vec<_>>(),
                        "approval": s.approval,
                        "max_steps": s.max_steps,
                    }),
                    Err(e) => json!({"file": file, "error": e}),
                }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({"object": "list", "data": agents})).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    agent: String,
    task: String,
    /// Values for `{{name}}` in the agent's instructions.
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    stream: bool,
}

pub async fn start_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: StartRequest = from_value(&body)?;
    let (id, live) = start(&state, &principal, &req.agent, &req.task, req.vars).await?;
    respond(&id, live, req.stream, json!({"status": "running"}))
}

/// Starts a run of the directory's agent `agent` on `task` for `principal`: its id, and the
/// live run to follow. Every front end that starts runs (this API, A2A) comes through here.
pub(crate) async fn start(
    state: &SharedState,
    principal: &Principal,
    agent: &str,
    task: &str,
    vars: std::collections::BTreeMap<String, String>,
) -> Result<(String, Arc<LiveRun>), ApiError> {
    if task.trim().is_empty() {
        return Err(ApiError::invalid_param("task", "`task` is empty"));
    }
    if task.len() > MAX_TASK_BYTES {
        return Err(ApiError::invalid_param(
            "task",
            format!("`task` is longer than {MAX_TASK_BYTES} bytes"),
        ));
    }
    let spec = find_served(state, agent).await?;
    let (memory, run_state) = {
        let (app, spec, task) = (state.clone(), spec.clone(), task.to_string());
        blocking(move || {
            let memory = open_memory(&app, &spec)?;
            // Examples are chosen by meaning: without memory, that needs an encoder.
            let embedder = match (&memory, spec.examples.len() > spec.few_shot) {
                (None, true) => Some(load_embedder(
                    app.registry.models(),
                    &symphony_agents::memory::default_embedder(),
                )?),
                _ => None,
            };
            let (_, run_state) = spec.start(&task, &vars, memory.as_deref(), embedder.as_ref())?;
            Ok((memory, run_state))
        })
        .await?
    };
    let id = {
        let (state, spec, run_state) = (state.clone(), spec.clone(), run_state.clone());
        let owner = principal.name.clone();
        blocking(move || Ok(open_store(&state)?.create(&spec, &run_state, Some(&owner))?)).await?
    };
    let live = launch(state, principal, &id, spec, run_state, memory).await?;
    Ok((id, live))
}

/// The directory's agent `name`, as its file declares it now.
pub(crate) async fn find_served(state: &SharedState, name: &str) -> Result<AgentSpec, ApiError> {
    let (dir, name) = (state.agents.dir.clone(), name.to_string());
    blocking(move || find_agent(&dir, &name)).await
}

/// An agent file's encoder, resolved as the CLI resolves it (the operator wrote the file),
/// under this server's first-use policy.
fn load_embedder(models: &Models, name: &str) -> Result<Embedder, ApiError> {
    models
        .open_embedder(name, &mut symphony_app::Quiet)
        .map_err(|e| ApiError::internal(format!("the encoder '{name}': {e}")))
}

/// The agent's memory (`memory.sqlite` beside the run store), for agents with `memory`.
fn open_memory(state: &SharedState, spec: &AgentSpec) -> Result<Option<Arc<Memory>>, ApiError> {
    let Some(config) = &spec.memory else {
        return Ok(None);
    };
    let embedder = Arc::new(load_embedder(state.registry.models(), &config.embedder)?);
    let path = state.agents.runs.with_file_name("memory.sqlite");
    Ok(Some(Arc::new(Memory::open(&path, &spec.name, embedder)?)))
}

/// Starts (or continues) driving run `id` on a thread of its own, once its model is loaded,
/// the run claimed and its tools built; any of these failing is the request's error.
async fn launch(
    state: &SharedState,
    principal: &Principal,
    id: &str,
    spec: AgentSpec,
    run_state: RunState,
    memory: Option<Arc<Memory>>,
) -> Result<Arc<LiveRun>, ApiError> {
    let model =
        state.registry.get(&spec.model, None).await.map_err(|e| {
            ApiError::new(e.status, format!("agent '{}': {}", spec.name, e.message))
        })?;
    let driver = Driver {
        app: state.clone(),
        principal: principal.clone(),
        model,
        handle: tokio::runtime::Handle::current(),
    };
    let live = LiveRun::new();
    {
        let mut runs = lock(&state.agents.live);
        if runs.contains_key(id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("run {id} is running already"),
            ));
        }
        runs.insert(id.to_string(), live.clone());
    }
    // Claimed first: not while another process (`symphony agent resume`, another server)
    // drives it. A run whose tools do not build is given up again as it drops.
    let prepared = {
        let (app, key) = (state.clone(), id.to_string());
        let collections = state.config.collections.clone();
        // The run's MCP servers that ask for sampling get its model, through the scheduler.
        let sampler: Arc<dyn Sampler> = Arc::new(driver.clone());
        blocking(move || {
            let run = ClaimedRun::claim(open_store(&app)?, &key, spec, run_state, memory)?;
            let tools = build_tools(&run, &collections, app.registry.models(), sampler)?;
            Ok((run, tools))
        })
        .await
    };
    let (run, tools) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            lock(&state.agents.live).remove(id);
            return Err(e);
        }
    };
    live.push(json!({"type": "run", "id": id, "agent": run.spec().name}));
    let follow = live.clone();
    // The run outlives the request that started it; its span stays in that request's trace.
    let span = tracing::info_span!("agent_run", run_id = %id, agent = %run.spec().name);
    std::thread::Builder::new()
        .name(format!("agent {id}"))
        .spawn(move || span.in_scope(|| driver.drive(run, tools, &follow)))
        .map_err(|e| ApiError::internal(format!("cannot start the run: {e}")))?;
    Ok(live)
}

/// The run's tools, its collections opened from `collections` with encoders from `models`.
fn build_tools(
    run: &ClaimedRun,
    collections: &Path,
    models: &Models,
    sampler: Arc<dyn Sampler>,
) -> Result<ToolRegistry, ApiError> {
    let open_collection = |name: &str| -> Result<(Collection, Embedder), String> {
        let collection = Collection::open(collections, name).map_err(|e| e.to_string())?;
        let embedder = load_embedder(models, &collection.config.embedder).map_err(|e| e.message)?;
        Ok((collection, embedder))
    };
    run.tools(Some(&open_collection), Some(sampler))
        .map_err(|e| ApiError::internal(format!("agent '{}': {e}", run.spec().name)))
}

/// 202 with the run's id and where to follow it, or its events as they come.
fn respond(id: &str, live: Arc<LiveRun>, stream: bool, extra: Value) -> Result<Response, ApiError> {
    if stream {
        return Ok(sse(follow(live)));
    }
    let mut body = json!({
        "id": id,
        "object": "agent.run",
        "events": format!("/v1/agents/runs/{id}/events"),
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

pub(crate) fn sse(events: impl futures_util::Stream<Item = String> + Send + 'static) -> Response {
    use futures_util::StreamExt;
    let events = events.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A live run's events from the first, then each as it comes, until the run stops.
pub(crate) fn follow(
    live: Arc<LiveRun>,
) -> impl futures_util::Stream<Item = String> + Send + 'static {
    let progress = live.progress.subscribe();
    futures_util::stream::unfold(
        (live, progress, 0usize),
        |(live, mut progress, next)| async move {
            loop {
                let (count, stopped) = *progress.borrow_and_update();
                if next < count {
                    let event = lock(&live.events)[next].clone();
                    return Some((event, (live, progress, next + 1)));
                }
                if stopped || progress.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}

pub async fn list_runs(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let app = state.clone();
    let runs = blocking(move || Ok(open_store(&app)?.list()?)).await?;
    let data: Vec<Value> = runs
        .into_iter()
        .filter(|r| may_access(&principal, r.owner.as_deref()))
        .map(|r| {
            let live = state.agents.live(&r.id).is_some();
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["live"] = json!(live);
            v
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// A run as the API shows it.
fn run_view(id: &str, spec: &AgentSpec, run: &RunState, live: bool) -> Value {
    let outcome = run.outcome();
    let status = match (run.ending, &run.awaiting_approval) {
        (Some(ending), _) => serde_json::to_value(ending).unwrap_or_default(),
        (None, Some(_)) => json!("awaiting_approval"),
        (None, None) if live => json!("running"),
        // Stopped mid-way (the server or process that drove it stopped): resumable.
        (None, None) => json!("stopped"),
    };
    json!({
        "id": id,
        "object": "agent.run",
        "agent": spec.name,
        "task": run.task,
        "status": status,
        "live": live,
        "answer": (run.ending.is_some()).then_some(outcome.answer),
        "awaiting_approval": run.awaiting_call().map(|c| json!({
            "id": c.id, "name": c.name, "arguments": c.arguments,
        })),
        "steps": run.step,
        "tool_calls": run.tool_calls,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "messages": run.messages,
    })
}

pub async fn get_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let stored = load_run(&state, &principal, &id).await?;
    let live = state.agents.live(&id).is_some();
    Ok(Json(run_view(&id, &stored.spec, &stored.state, live)).into_response())
}

pub async fn run_events(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let stored = load_run(&state, &principal, &id).await?;
    if let Some(live) = state.agents.live(&id) {
        return Ok(sse(follow(live)));
    }
    let mut view = run_view(&id, &stored.spec, &stored.state, false);
    view["type"] = json!("state");
    Ok(sse(futures_util::stream::iter([view.to_string()])))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveRequest {
    #[serde(default = "yes")]
    approve: bool,
    #[serde(default)]
    stream: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeRequest {
    #[serde(default)]
    stream: bool,
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

pub async fn approve_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: ApproveRequest = from_value(&body)?;
    let run = load_run(&state, &principal, &id).await?;
    if state.agents.live(&id).is_some() {
        return Err(conflict(format!(
            "run {id} is running; it waits for no approval"
        )));
    }
    check_agent_is_served(&state, &run).await?;
    let (app, key, approve) = (state.clone(), id.clone(), req.approve);
    let (stored, call) = blocking(move || {
        let mut store = open_store(&app)?;
        let mut stored = store.load(&key)?;
        let call = stored
            .state
            .decide(approve)
            .map_err(|e| conflict(format!("run {key}: {e}")))?;
        // Stored before anything runs: a run stopped now carries the decision out when
        // resumed, without asking again.
        store.checkpoint(&key).save(&stored.state)?;
        Ok((stored, call))
    })
    .await?;
    let decision = if req.approve { "approved" } else { "denied" };
    let memory = {
        let (app, spec) = (state.clone(), stored.spec.clone());
        blocking(move || open_memory(&app, &spec)).await?
    };
    let live = launch(&state, &principal, &id, stored.spec, stored.state, memory).await?;
    respond(
        &id,
        live,
        req.stream,
        json!({
            "status": "running",
            "decision": decision,
            "call": {"id": call.id, "name": call.name, "arguments": call.arguments},
        }),
    )
}

pub async fn resume_run(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional here.
    let req: ResumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeRequest::default()
    } else {
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        from_value(&body)?
    };
    let stored = load_run(&state, &principal, &id).await?;
    if state.agents.live(&id).is_some() {
        return Err(conflict(format!("run {id} is running already")));
    }
    if let Some(ending) = stored.state.ending {
        let ending = serde_json::to_value(ending).unwrap_or_default();
        return Err(conflict(format!(
            "run {id} has ended ({ending}); nothing to resume"
        )));
    }
    if stored.state.awaiting_approval.is_some() {
        return Err(conflict(format!(
            "run {id} waits for a call to be approved: POST /v1/agents/runs/{id}/approve"
        )));
    }
    check_agent_is_served(&state, &stored).await?;
    let memory = {
        let (app, spec) = (state.clone(), stored.spec.clone());
        blocking(move || open_memory(&app, &spec)).await?
    };
    let live = launch(&state, &principal, &id, stored.spec, stored.state, memory).await?;
    respond(&id, live, req.stream, json!({"status": "running"}))
}
