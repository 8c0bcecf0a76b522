//! Every route the server answers and the role it needs, in one table: the same rows build
//! the router and answer [`required_role`], so a route cannot be added without deciding who
//! may call it, and the router and the role check cannot drift apart.

use std::sync::LazyLock;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::auth::Role;
use crate::{
    admin, agents, collections, embeddings, ollama, openai, probes, tokenize, ws, SharedState,
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

/// One method on one path, with who may call it and what answers it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<SharedState>,
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
    }
}

/// The table. A new route is one row here.
pub fn table() -> Vec<Route> {
    vec![
        route(GET, "/health", OPEN, probes::health),
        route(GET, "/ready", OPEN, probes::ready),
        route(GET, "/metrics", READER, probes::metrics_text),
        // OpenAI.
        route(GET, "/v1/models", READER, openai::list_models),
        route(GET, "/v1/models/{*model}", READER, openai::get_model),
        route(POST, "/v1/chat/completions", USER, openai::chat_completions),
        route(POST, "/v1/completions", USER, openai::completions),
        route(POST, "/v1/embeddings", USER, embeddings::openai),
        route(GET, "/v1/chat/ws", USER, ws::chat),
        // Ollama.
        route(POST, "/api/embed", USER, embeddings::ollama_embed),
        route(POST, "/api/embeddings", USER, embeddings::ollama_embeddings),
        route(POST, "/api/generate", USER, ollama::generate),
        route(POST, "/api/chat", USER, ollama::chat),
        route(GET, "/api/tags", READER, ollama::tags),
        route(POST, "/api/show", READER, ollama::show),
        route(GET, "/api/ps", READER, ollama::ps),
        route(GET, "/api/version", READER, ollama::version),
        route(DELETE, "/api/delete", ADMIN, ollama::delete),
        // The tokenizer (vLLM's routes).
        route(POST, "/tokenize", READER, tokenize::tokenize),
        route(POST, "/detokenize", READER, tokenize::detokenize),
        route(GET, "/tokenizer_info", READER, tokenize::tokenizer_info),
        // Collections: readers list, users search and ask, admins change.
        route(GET, "/v1/collections", READER, collections::list),
        route(POST, "/v1/collections", ADMIN, collections::create),
        route(GET, "/v1/collections/{name}", READER, collections::show),
        route(DELETE, "/v1/collections/{name}", ADMIN, collections::remove),
        route(
            POST,
            "/v1/collections/{name}/documents",
            ADMIN,
            collections::add_documents,
        ),
        route(
            DELETE,
            "/v1/collections/{name}/documents",
            ADMIN,
            collections::remove_document,
        ),
        route(
            POST,
            "/v1/collections/{name}/query",
            USER,
            collections::query,
        ),
        route(POST, "/v1/collections/{name}/ask", USER, collections::ask),
        // Agents: readers watch runs; users start, approve and resume them (a run uses its
        // model and the tools its operator declared).
        route(GET, "/v1/agents", READER, agents::list_agents),
        route(GET, "/v1/agents/runs", READER, agents::list_runs),
        route(POST, "/v1/agents/runs", USER, agents::start_run),
        route(GET, "/v1/agents/runs/{id}", READER, agents::get_run),
        route(
            GET,
            "/v1/agents/runs/{id}/events",
            READER,
            agents::run_events,
        ),
        route(
            POST,
            "/v1/agents/runs/{id}/approve",
            USER,
            agents::approve_run,
        ),
        route(
            POST,
            "/v1/agents/runs/{id}/resume",
            USER,
            agents::resume_run,
        ),
        // Keys.
        route(GET, "/v1/admin/keys", ADMIN, admin::list_keys),
        route(POST, "/v1/admin/keys", ADMIN, admin::create_key),
        route(DELETE, "/v1/admin/keys/{name}", ADMIN, admin::revoke_key),
    ]
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
