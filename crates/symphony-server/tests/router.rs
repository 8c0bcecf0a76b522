//! The router in process, over a temporary home and no model: authentication and roles on
//! every route of the route table, the status and shape of each refusal in both APIs
//! (400, 401, 403, 404, 413, 415, 429), and the probes. The behaviour that needs a model
//! is tested end to end, against `symphony serve`, in the CLI's tests.

mod common;

use axum::http::{header, Method, StatusCode};
use common::{concrete, Harness, MAX_BODY_BYTES};
use serde_json::{json, Value};
use symphony_server::routes;
use symphony_server::Role;

const ROLES: [Role; 3] = [Role::Reader, Role::User, Role::Admin];

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// An error in OpenAI's shape, with the `type` expected; returns its message.
fn openai_error(reply: &common::Reply, kind: &str) -> String {
    let body = reply.json();
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    error["message"].as_str().expect("a message").to_string()
}

/// An error in Ollama's shape: `{"error": "..."}`.
fn ollama_error(reply: &common::Reply) -> String {
    let body = reply.json();
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not Ollama's error shape: {body}"))
        .to_string()
}

/// Every route: no credentials is 401, a role below the route's is 403, the route's own role
/// gets past the check (whatever the handler then makes of an empty request).
#[tokio::test]
async fn every_route_checks_credentials_and_role() {
    let h = Harness::new();
    symphony_server::preload(h.state.clone()).await;
    for route in routes::table() {
        let path = concrete(route.path);
        let what = format!("{} {path}", route.method);
        let body = Some(("application/json", &b"{}"[..]));
        let Some(needed) = route.access else {
            let reply = h.send(route.method.clone(), &path, None, body).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{what} is open: {}",
                reply.text()
            );
            continue;
        };
        let anonymous = h.send(route.method.clone(), &path, None, body).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            anonymous.headers[header::WWW_AUTHENTICATE],
            "Bearer",
            "{what}"
        );
        let wrong = h
            .send(route.method.clone(), &path, Some("sk-sym-wrong"), body)
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{what}");
        for role in ROLES {
            let reply = h
                .send(route.method.clone(), &path, Some(h.key(role)), body)
                .await;
            if role < needed {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what} as {role:?}");
                let message = if route.path.starts_with("/api/") {
                    ollama_error(&reply)
                } else {
                    openai_error(&reply, "permission_error")
                };
                assert!(message.contains(needed.as_str()), "{what}: {message}");
            } else {
                assert!(
                    !matches!(
                        reply.status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ),
                    "{what} as {role:?}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
        }
    }
}

/// The roles the table gives, against the role check itself: the same answer for each route.
#[test]
fn the_role_check_answers_from_the_table() {
    for route in routes::table() {
        assert_eq!(
            routes::required_role(&route.method, route.path),
            route.access,
            "{} {}",
            route.method,
            route.path
        );
    }
}

/// 401 in each API's shape, with what to send.
#[tokio::test]
async fn missing_credentials_are_401_in_each_shape() {
    let h = Harness::new();
    let openai = h
        .json(Method::POST, "/v1/chat/completions", None, &chat("x"))
        .await;
    assert_eq!(openai.status, StatusCode::UNAUTHORIZED);
    assert!(openai_error(&openai, "authentication_error").contains("Authorization: Bearer"));
    assert_eq!(openai.json()["error"]["code"], "invalid_api_key");
    let ollama = h.json(Method::POST, "/api/chat", None, &chat("x")).await;
    assert_eq!(ollama.status, StatusCode::UNAUTHORIZED);
    assert!(ollama_error(&ollama).contains("missing credentials"));
}

#[tokio::test]
async fn malformed_json_is_400_in_each_shape() {
    let h = Harness::new();
    let broken = Some(("application/json", &b"{\"model\": "[..]));
    let openai = h
        .send(Method::POST, "/v1/chat/completions", Some(&h.user), broken)
        .await;
    assert_eq!(openai.status, StatusCode::BAD_REQUEST);
    assert!(openai_error(&openai, "invalid_request_error").starts_with("invalid JSON body"));
    let ollama = h
        .send(Method::POST, "/api/chat", Some(&h.user), broken)
        .await;
    assert_eq!(ollama.status, StatusCode::BAD_REQUEST);
    assert!(ollama_error(&ollama).starts_with("invalid JSON body"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let h = Harness::new();
    let big = chat(&"x".repeat(MAX_BODY_BYTES * 2));
    let reply = h
        .json(Method::POST, "/v1/chat/completions", Some(&h.user), &big)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(openai_error(&reply, "invalid_request_error").contains("--max-body-bytes"));
    assert_eq!(reply.json()["error"]["code"], "request_too_large");
    let ollama = h.json(Method::POST, "/api/chat", Some(&h.user), &big).await;
    assert_eq!(ollama.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The OpenAI routes need a JSON content type; Ollama's parse any body as JSON, as Ollama does.
#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415_on_the_openai_routes() {
    let h = Harness::new();
    let body = serde_json::to_vec(&chat("x")).unwrap();
    for content_type in ["", "text/plain"] {
        let reply = h
            .send(
                Method::POST,
                "/v1/chat/completions",
                Some(&h.user),
                Some((content_type, &body)),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert!(openai_error(&reply, "invalid_request_error").contains("application/json"));
    }
    let ollama = h
        .send(
            Method::POST,
            "/api/chat",
            Some(&h.user),
            Some(("text/plain", &body)),
        )
        .await;
    assert_ne!(ollama.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn unknown_models_and_routes_are_404() {
    let h = Harness::new();
    let openai = h
        .json(
            Method::POST,
            "/v1/chat/completions",
            Some(&h.user),
            &chat("nope"),
        )
        .await;
    assert_eq!(openai.status, StatusCode::NOT_FOUND);
    assert!(openai_error(&openai, "not_found_error").contains("'nope'"));
    assert_eq!(openai.json()["error"]["code"], "model_not_found");
    assert_eq!(openai.json()["error"]["param"], "model");
    let shown = h
        .send(Method::GET, "/v1/models/nope", Some(&h.reader), None)
        .await;
    assert_eq!(shown.status, StatusCode::NOT_FOUND);
    assert_eq!(shown.json()["error"]["code"], "model_not_found");
    let ollama = h
        .json(Method::POST, "/api/chat", Some(&h.user), &chat("nope"))
        .await;
    assert_eq!(ollama.status, StatusCode::NOT_FOUND);
    assert!(ollama_error(&ollama).contains("'nope'"));
    let route = h
        .send(Method::GET, "/v1/nothing/here", Some(&h.reader), None)
        .await;
    assert_eq!(route.status, StatusCode::NOT_FOUND);
    assert!(openai_error(&route, "not_found_error").contains("no route for GET /v1/nothing/here"));
    // A collection that does not exist, and a key that does not.
    let collection = h
        .send(Method::GET, "/v1/collections/none", Some(&h.reader), None)
        .await;
    assert_eq!(collection.status, StatusCode::NOT_FOUND);
    assert!(openai_error(&collection, "not_found_error").contains("no collection 'none'"));
    let key = h
        .send(
            Method::DELETE,
            "/v1/admin/keys/nobody",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(key.status, StatusCode::NOT_FOUND);
}

/// A key allowed one request a minute: the second is 429 with the wait, in each shape.
#[tokio::test]
async fn a_key_over_its_rate_is_429_with_retry_after() {
    let h = Harness::new();
    let first = h
        .json(
            Method::POST,
            "/v1/chat/completions",
            Some(&h.limited),
            &chat("nope"),
        )
        .await;
    assert_eq!(first.status, StatusCode::NOT_FOUND, "{}", first.text());
    let second = h
        .json(
            Method::POST,
            "/v1/chat/completions",
            Some(&h.limited),
            &chat("nope"),
        )
        .await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers.contains_key(header::RETRY_AFTER));
    openai_error(&second, "rate_limit_error");
    assert_eq!(second.json()["error"]["code"], "rate_limit_exceeded");
    let ollama = h
        .json(Method::POST, "/api/chat", Some(&h.limited), &chat("nope"))
        .await;
    assert_eq!(ollama.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(ollama.headers.contains_key(header::RETRY_AFTER));
    ollama_error(&ollama);
    // Reads are not counted against the rate.
    let reader = h
        .send(Method::GET, "/v1/models", Some(&h.limited), None)
        .await;
    assert_eq!(reader.status, StatusCode::OK);
}

/// The probes need no credentials; `/ready` is 503 (worth a retry) until the preload ends.
#[tokio::test]
async fn health_and_ready() {
    let h = Harness::new();
    let health = h.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));
    let loading = h.send(Method::GET, "/ready", None, None).await;
    assert_eq!(loading.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(loading.headers[header::RETRY_AFTER], "1");
    assert!(openai_error(&loading, "overloaded_error").contains("loading"));
    symphony_server::preload(h.state.clone()).await;
    let ready = h.send(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"status": "ready"}));
}

/// Prometheus' text format, counting requests by route pattern and status; every reply
/// carries its request id.
#[tokio::test]
async fn metrics_count_requests_by_route() {
    let h = Harness::new();
    h.send(Method::GET, "/health", None, None).await;
    h.send(Method::GET, "/v1/models/x", Some(&h.reader), None)
        .await;
    let reply = h.send(Method::GET, "/metrics", Some(&h.reader), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = reply.text();
    assert!(
        text.contains("# TYPE symphony_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("symphony_requests_total{route=\"/health\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("symphony_requests_total{route=\"/v1/models/{*model}\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(reply.headers["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req-"));
}

/// Keys made over HTTP work at once, and a name taken is 409.
#[tokio::test]
async fn admin_keys_round_trip() {
    let h = Harness::new();
    let made = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&h.admin),
            &json!({"name": "carol", "role": "reader"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    let key = made.json()["key"].as_str().unwrap().to_string();
    let listed = h.send(Method::GET, "/v1/models", Some(&key), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let again = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            Some(&h.admin),
            &json!({"name": "carol", "role": "reader"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let revoked = h
        .send(Method::DELETE, "/v1/admin/keys/carol", Some(&h.admin), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let refused = h.send(Method::GET, "/v1/models", Some(&key), None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}
