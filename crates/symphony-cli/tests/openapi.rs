//! `/openapi.json` as an API client's tooling reads it: valid OpenAPI 3.1
//! (`openapi-spec-validator`), every route the router serves and no other, and schemas true
//! to the server: real requests and their replies (JSON, server-sent events, JSON lines, the
//! errors of both APIs) validated against them (tests/clients/openapi_check.py).

mod common;

use common::server::*;

#[test]
fn the_api_document_is_valid_complete_and_true_to_the_server() {
    let server = Server::start(&[]);
    let routes: Vec<(String, &str)> = symphony_server::routes::table()
        .iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openapi_check.py");
    let routes = serde_json::to_string(&routes).unwrap();
    let out = run_python(
        &server,
        &[script.to_str().unwrap(), &server.base, &routes],
        &[],
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["paths"].as_u64(), Some(41), "{summary}");
    assert!(
        summary["values_checked"].as_u64().unwrap() > 20,
        "{summary}"
    );
}
