//! Every route the server answers and the role it needs, in one table: the same rows build
//! the router and answer [`required_role`], so a route cannot be added without deciding who
//! may call it, and the router and the role check cannot drift apart.

use std::sync::LazyLock;

use axum::handler::Handler;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;
use crate::openapi::{schema_of, Doc, Reply, SchemaOf};
use crate::{
    a2a, admin, agents, collections, crews, embeddings, ollama, openai, openapi, probes, tokenize,
    ws, SharedState,
};

/// Who may call a route: `None` for the probes anyone may call.
pub type Access = Option<Role>;

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;

const OPEN: Access = None;
/// Reads only: listings, model details, the tokenizer (the model itself does not run).
const READER: Access = Some(Role::Reader);
/// Runs a model: inference, searches and answers over collections, agent runs.
const USER: Access = Some(Role::User);
/// Changes what the server holds: models, collections, keys.
const ADMIN: Access = Some(Role::Admin);

/// One method on one path, with who may call it, what answers it, and what
/// `/openapi.json` says of it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<SharedState>,
    pub doc: Doc,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, SharedState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Route {
        method,
        path,
        access,
        handler: on(filter, handler),
        doc: Doc::default(),
    }
}

impl Route {
    fn summary(mut self, summary: &'static str) -> Self {
        self.doc.summary = summary;
        self
    }

    fn body<B: ToSchema>(mut self) -> Self {
        self.doc.body = Some(schema_of::<B>);
        self.doc.body_required = true;
        self
    }

    fn optional_body<B: ToSchema>(mut self) -> Self {
        self.doc.body = Some(schema_of::<B>);
        self
    }

    fn query<Q: IntoParams>(mut self) -> Self {
        self.doc.query = Some(|| Q::into_params(|| Some(ParameterIn::Query)));
        self
    }

    fn reply<R: ToSchema>(mut self) -> Self {
        self.doc.reply = Reply::Json(schema_of::<R>);
        self
    }

    fn object(mut self, what: &'static str) -> Self {
        self.doc.reply = Reply::Object(what);
        self
    }

    fn media(mut self, media: &'static str, what: &'static str) -> Self {
        self.doc.reply = Reply::Media(media, what);
        self
    }

    fn status(mut self, status: u16) -> Self {
        self.doc.status = status;
        self
    }

    fn streams(mut self, media: &'static str, item: SchemaOf) -> Self {
        self.doc.stream = Some((media, item));
        self
    }
}

/// The table. A new route is one row here.
pub fn table() -> Vec<Route> {
    use crate::{ollama as o, openai as oa};
    const SSE: &str = "text/event-stream";
    const NDJSON: &str = "application/x-ndjson";
    vec![
        route(GET, "/health", OPEN, probes::health)
            .summary("Liveness: 200 while the server sweeps idle models, 503 once it stops")
            .object("`{\"status\": \"ok\"}`"),
        route(GET, "/ready", OPEN, probes::ready)
            .summary("Readiness: 200 once the preloaded models answer, 503 before")
            .object("`{\"status\": \"ready\"}`"),
        route(GET, "/metrics", READER, probes::metrics_text)
            .summary("Prometheus metrics")
            .media("text/plain", "The Prometheus text format"),
        route(GET, "/openapi.json", OPEN, openapi_json)
            .summary("This document")
            .object("An OpenAPI 3.1 document"),
        // OpenAI.
        route(GET, "/v1/models", READER, openai::list_models)
            .summary("The models in the store")
            .reply::<oa::ModelList>(),
        route(GET, "/v1/models/{*model}", READER, openai::get_model)
            .summary("One model")
            .reply::<oa::ModelObject>(),
        route(POST, "/v1/chat/completions", USER, openai::chat_completions)
            .summary("A chat completion (OpenAI); streamed as server-sent events with `stream`")
            .body::<oa::ChatRequest>()
            .reply::<oa::ChatCompletion>()
            .streams(SSE, oa::chat_chunk_schema),
        route(POST, "/v1/completions", USER, openai::completions)
            .summary("A text completion (OpenAI); streamed as server-sent events with `stream`")
            .body::<oa::CompletionRequest>()
            .reply::<oa::TextCompletion>()
            .streams(SSE, oa::text_chunk_schema),
        route(POST, "/v1/embeddings", USER, embeddings::openai)
            .summary("Embeddings (OpenAI)")
            .body::<embeddings::OpenAiRequest>()
            .reply::<embeddings::OpenAiReply>(),
        route(GET, "/v1/chat/ws", USER, ws::chat)
            .summary("Chat over a WebSocket: each message a chat request, answered with chunks")
            .status(101),
        // Ollama.
        route(POST, "/api/embed", USER, embeddings::ollama_embed)
            .summary("Embeddings (Ollama)")
            .body::<embeddings::EmbedRequest>()
            .reply::<embeddings::OllamaReply>(),
        route(POST, "/api/embeddings", USER, embeddings::ollama_embeddings)
            .summary("One embedding (Ollama's older endpoint)")
            .body::<embeddings::LegacyRequest>()
            .reply::<embeddings::LegacyReply>(),
        route(POST, "/api/generate", USER, ollama::generate)
            .summary("A completion (Ollama); streamed as JSON lines unless `stream` is false")
            .body::<o::GenerateRequest>()
            .reply::<o::ReplyLine>()
            .streams(NDJSON, schema_of::<o::ReplyLine>),
        route(POST, "/api/chat", USER, ollama::chat)
            .summary("A chat reply (Ollama); streamed as JSON lines unless `stream` is false")
            .body::<o::ChatRequest>()
            .reply::<o::ReplyLine>()
            .streams(NDJSON, schema_of::<o::ReplyLine>),
        route(GET, "/api/tags", READER, ollama::tags)
            .summary("The models in the store (Ollama)")
            .reply::<o::Tags>(),
        route(POST, "/api/show", READER, ollama::show)
            .summary("One model's details (Ollama)")
            .body::<o::ShowRequest>()
            .reply::<o::Show>(),
        route(GET, "/api/ps", READER, ollama::ps)
            .summary("The loaded models (Ollama)")
            .reply::<o::Ps>(),
        route(GET, "/api/version", READER, ollama::version)
            .summary("The server's version")
            .reply::<o::Version>(),
        route(DELETE, "/api/delete", ADMIN, ollama::delete)
            .summary("Removes a model from the store")
            .body::<o::DeleteRequest>(),
        // The tokenizer (vLLM's routes).
        route(POST, "/tokenize", READER, tokenize::tokenize)
            .summary("Text or a chat to token ids (vLLM)")
            .body::<tokenize::TokenizeRequest>()
            .reply::<tokenize::TokenizeReply>(),
        route(POST, "/detokenize", READER, tokenize::detokenize)
            .summary("Token ids to text (vLLM)")
            .body::<tokenize::DetokenizeRequest>()
            .reply::<tokenize::DetokenizeReply>(),
        route(GET, "/tokenizer_info", READER, tokenize::tokenizer_info)
            .summary("A model's tokenizer: vocabulary size, special tokens, chat template")
            .query::<tokenize::InfoQuery>()
            .reply::<tokenize::TokenizerInfo>(),
        // Collections: readers list, users search and ask, admins change.
        route(GET, "/v1/collections", READER, collections::list)
            .summary("The document collections")
            .object("`{\"object\": \"list\", \"data\": [collection summaries]}`"),
        route(POST, "/v1/collections", ADMIN, collections::create)
            .summary("Creates a collection")
            .body::<collections::CreateRequest>()
            .status(201)
            .object("The new collection's summary"),
        route(GET, "/v1/collections/{name}", READER, collections::show)
            .summary("One collection's summary")
            .object("Its configuration, documents and chunks"),
        route(DELETE, "/v1/collections/{name}", ADMIN, collections::remove)
            .summary("Deletes a collection")
            .object("`{\"deleted\": true}`"),
        route(
            POST,
            "/v1/collections/{name}/documents",
            ADMIN,
            collections::add_documents,
        )
        .summary("Adds or updates documents (text, Markdown, HTML, PDF as base64)")
        .body::<collections::AddRequest>()
        .object("Each document's status, and the collection's summary"),
        route(
            DELETE,
            "/v1/collections/{name}/documents",
            ADMIN,
            collections::remove_document,
        )
        .summary("Removes a document")
        .query::<collections::RemoveDocument>()
        .object("The collection's summary"),
        route(
            POST,
            "/v1/collections/{name}/query",
            USER,
            collections::query,
        )
        .summary("The chunks that best answer a query (vector, BM25 or hybrid)")
        .body::<collections::QueryRequest>()
        .object("`{\"object\": \"list\", \"data\": [hits]}`"),
        route(POST, "/v1/collections/{name}/ask", USER, collections::ask)
            .summary("An answer from the collection's documents, with citations")
            .body::<collections::AskRequest>()
            .object("The answer, its citations and the chunks it drew on"),
        // Agents: readers watch runs; users start, approve and resume them (a run uses its
        // model and the tools its operator declared).
        route(GET, "/v1/agents", READER, agents::list_agents)
            .summary("The agents this server runs")
            .object("`{\"data\": [agents]}`"),
        route(GET, "/v1/agents/runs", READER, agents::list_runs)
            .summary("The caller's agent runs")
            .object("`{\"data\": [runs]}`"),
        route(POST, "/v1/agents/runs", USER, agents::start_run)
            .summary("Starts an agent run; its events follow at /v1/agents/runs/{id}/events")
            .body::<agents::StartRequest>()
            .status(202)
            .object("The run's id and status"),
        route(GET, "/v1/agents/runs/{id}", READER, agents::get_run)
            .summary("One run: status, steps, result")
            .object("The run"),
        route(
            GET,
            "/v1/agents/runs/{id}/events",
            READER,
            agents::run_events,
        )
        .summary("A run's events as they happen")
        .media(SSE, "Server-sent events, one JSON object each"),
        route(
            POST,
            "/v1/agents/runs/{id}/approve",
            USER,
            agents::approve_run,
        )
        .summary("Approves or refuses the tool call a run waits on")
        .body::<agents::ApproveRequest>()
        .status(202)
        .object("The run's id and status"),
        route(
            POST,
            "/v1/agents/runs/{id}/resume",
            USER,
            agents::resume_run,
        )
        .summary("Resumes a run that stopped")
        .optional_body::<agents::ResumeRequest>()
        .status(202)
        .object("The run's id and status"),
        // Crews: the built-in ones and the operator's crew files; their messages stream.
        route(GET, "/v1/crews", READER, crews::list_crews)
            .summary("The crews this server runs")
            .object("`{\"data\": [crews]}`"),
        route(POST, "/v1/crews/runs", USER, crews::start_run)
            .summary("Starts a crew run; its messages follow at /v1/crews/runs/{id}/events")
            .body::<crews::StartRequest>()
            .status(202)
            .object("The run's id and status"),
        route(GET, "/v1/crews/runs/{id}", READER, crews::get_run)
            .summary("One crew run: messages, results, usage, status")
            .object("The run"),
        route(GET, "/v1/crews/runs/{id}/events", READER, crews::run_events)
            .summary("A crew run's messages as they are sent, then its summary")
            .media(SSE, "Server-sent events, one JSON object each"),
        // The same agents as Agent2Agent endpoints (protocol 1.0, JSON-RPC).
        route(
            GET,
            "/a2a/{agent}/.well-known/agent-card.json",
            READER,
            a2a::card,
        )
        .summary("An agent's A2A card: its skills and its JSON-RPC endpoint")
        .object("The agent card"),
        route(POST, "/a2a/{agent}", USER, a2a::rpc)
            .summary("A2A JSON-RPC: SendMessage, SendStreamingMessage, GetTask, CancelTask")
            .object("A JSON-RPC answer (HTTP 200, errors included); SendStreamingMessage answers with server-sent events"),
        // Keys.
        route(GET, "/v1/admin/keys", ADMIN, admin::list_keys)
            .summary("The API keys (names, roles, limits; never the keys)")
            .object("`{\"keys\": [...]}`"),
        route(POST, "/v1/admin/keys", ADMIN, admin::create_key)
            .summary("Creates an API key; the reply is the only time the key is shown")
            .body::<admin::NewKey>()
            .object("The key and its settings"),
        route(DELETE, "/v1/admin/keys/{name}", ADMIN, admin::revoke_key)
            .summary("Revokes an API key")
            .object("`{\"revoked\": name}`"),
    ]
}

/// `/openapi.json`: the document of this table, made once.
async fn openapi_json() -> Response {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let table = table();
        let document =
            openapi::document(table.iter().map(|r| (&r.method, r.path, r.access, &r.doc)));
        serde_json::to_string(&document).expect("the OpenAPI document serializes")
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The router over the table's routes (no fallback or layers: see `crate::router`).
pub fn router() -> Router<SharedState> {
    table()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
}

/// The table without its handlers, for the role check on each request.
static ACCESS: LazyLock<Vec<(Method, &'static str, Access)>> = LazyLock::new(|| {
    table()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
});

/// The role a request needs, by its method and the route pattern it matched (its path when
/// it matched none): `None` for the probes anyone may call.
///
/// A method its path does not serve (answered 405) needs the most any of the path's routes
/// needs; a path no route has (answered 404) needs reader to GET and admin for anything
/// else. So nothing unknown is open by accident, and the caller learns nothing about a
/// route before showing the credentials it needs.
pub fn required_role(method: &Method, route: &str) -> Option<Role> {
    let mut rows = ACCESS
        .iter()
        .filter(|(_, path, _)| *path == route)
        .peekable();
    if rows.peek().is_none() {
        return Some(if method == Method::GET {
            Role::Reader
        } else {
            Role::Admin
        });
    }
    let mut strictest = OPEN;
    for (m, _, access) in rows {
        if m == method {
            return *access;
        }
        strictest = strictest.max(*access);
    }
    strictest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_right_roles() {
        use axum::http::Method;
        assert_eq!(required_role(&Method::GET, "/health"), None);
        assert_eq!(
            required_role(&Method::GET, "/v1/models"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/show"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role(&Method::POST, "/v1/chat/completions"),
            Some(Role::User)
        );
        assert_eq!(
            required_role(&Method::POST, "/v1/admin/keys"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/api/delete"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::POST, "/something/new"),
            Some(Role::Admin)
        );
        // Collections: readers list, users search and ask, admins change.
        for (method, route, role) in [
            (Method::GET, "/v1/collections", Role::Reader),
            (Method::GET, "/v1/collections/{name}", Role::Reader),
            (Method::POST, "/v1/collections/{name}/query", Role::User),
            (Method::POST, "/v1/collections/{name}/ask", Role::User),
            (Method::POST, "/v1/collections", Role::Admin),
            // Agents: readers watch runs, users start, approve and resume them.
            (Method::GET, "/v1/agents", Role::Reader),
            (Method::GET, "/v1/agents/runs/{id}/events", Role::Reader),
            (Method::POST, "/v1/agents/runs", Role::User),
            (Method::POST, "/v1/agents/runs/{id}/approve", Role::User),
            (Method::POST, "/v1/agents/runs/{id}/resume", Role::User),
            (
                Method::POST,
                "/v1/collections/{name}/documents",
                Role::Admin,
            ),
            (
                Method::DELETE,
                "/v1/collections/{name}/documents",
                Role::Admin,
            ),
            (Method::DELETE, "/v1/collections/{name}", Role::Admin),
        ] {
            assert_eq!(
                required_role(&method, route),
                Some(role),
                "{method} {route}"
            );
        }
    }
}
