//! Traces as an OpenTelemetry collector receives them: `symphony serve --otlp-endpoint`
//! exporting to a receiver built on the OpenTelemetry project's own protobuf messages
//! (tests/otlp_receiver.py, `opentelemetry-proto` from the test environment), over
//! OTLP/HTTP and over OTLP/gRPC. A slow request must show where its time went: the request,
//! its queue wait, each prompt chunk and decode step, grammar masks, retrieval and tool calls.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::*;
use serde_json::{json, Value};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The receiver, killed on drop, and the spans it has printed.
struct Receiver {
    child: Child,
    endpoint: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(protocol: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(protocol)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().expect("the receiver prints its port").unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{}", port.trim()),
            spans,
        }
    }

    /// Waits until `done` holds for the spans received so far; returns them.
    fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        // A liveness bound, not a speed target: an agent run on a loaded 2-core machine
        // took 25 s to reach its tool call, and 30 s once was not enough.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never reached the collector; it has {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// The spans whose parent is `parent`.
fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["parent_span_id"] == parent["span_id"] && s["trace_id"] == parent["trace_id"])
        .collect()
}

fn names(spans: &[&Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in spans {
        *counts
            .entry(s["name"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// A chat request inside the caller's trace, its reply held to a JSON Schema: the request
/// span joins the caller's, and under it the generation's queue wait, prompt chunk, decode
/// steps and grammar masks, each with the engine's figures.
fn a_constrained_chat_is_traced_through_the_engine(protocol: &str) {
    let receiver = Receiver::start(protocol);
    let server = Server::start(&[
        "--otlp-endpoint",
        &receiver.endpoint,
        "--otlp-protocol",
        protocol_flag(protocol),
    ]);
    let body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Give a number."}],
        "max_tokens": 6,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
            "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}},
    });
    let (status, reply) = curl(&[
        &format!("{}/v1/chat/completions", server.base),
        "-H",
        "content-type: application/json",
        "-H",
        &format!("traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        "-d",
        &body.to_string(),
    ]);
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let generated = reply["usage"]["completion_tokens"].as_u64().unwrap();

    let spans = receiver.wait_for("the request's spans", |spans| {
        spans
            .iter()
            .any(|s| s["trace_id"] == CALLER_TRACE && s["name"] == "POST /v1/chat/completions")
            && spans
                .iter()
                .any(|s| s["trace_id"] == CALLER_TRACE && s["name"] == "generate")
    });
    let request = named(&spans, "POST /v1/chat/completions")
        .into_iter()
        .find(|s| s["trace_id"] == CALLER_TRACE)
        .unwrap();
    assert_eq!(request["service"], "symphony");
    assert_eq!(request["parent_span_id"], CALLER_SPAN);
    assert_eq!(request["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(request["attributes"]["http.response.status_code"], 200);
    assert_eq!(request["attributes"]["http.route"], "/v1/chat/completions");

    let generate = children(&spans, request)
        .into_iter()
        .find(|s| s["name"] == "generate")
        .unwrap_or_else(|| panic!("no generate span under the request: {spans:#?}"));
    assert_eq!(
        generate["attributes"]["completion_tokens"].as_u64(),
        Some(generated)
    );
    assert!(generate["attributes"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(generate["start"].as_u64() >= request["start"].as_u64());
    assert!(generate["end"].as_u64() <= request["end"].as_u64());

    let steps = children(&spans, generate);
    let counts = names(&steps);
    assert_eq!(counts.get("queue_wait"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("prefill_chunk"), Some(&1), "{counts:?}");
    // The prompt chunk samples the first token, each decode step one more.
    assert_eq!(
        counts.get("decode_step").copied().unwrap_or(0) as u64,
        generated - 1,
        "{counts:?}"
    );
    let prefill = steps.iter().find(|s| s["name"] == "prefill_chunk").unwrap();
    assert_eq!(
        prefill["attributes"]["tokens"],
        generate["attributes"]["prompt_tokens"]
    );
    // Sampling under the grammar happens inside the step it belongs to.
    let masks = named(&spans, "constraint_mask");
    assert!(!masks.is_empty(), "no grammar masks: {spans:#?}");
    let in_trace: Vec<&&Value> = masks
        .iter()
        .filter(|m| m["trace_id"] == CALLER_TRACE)
        .collect();
    assert!(
        in_trace
            .iter()
            .all(|m| steps.iter().any(|s| s["span_id"] == m["parent_span_id"])),
        "{masks:#?}"
    );
}

fn protocol_flag(protocol: &str) -> &'static str {
    match protocol {
        "http" => "http/protobuf",
        _ => "grpc",
    }
}

#[test]
fn a_constrained_chat_is_traced_through_the_engine_over_otlp_http() {
    a_constrained_chat_is_traced_through_the_engine("http");
}

#[test]
fn a_constrained_chat_is_traced_through_the_engine_over_otlp_grpc() {
    a_constrained_chat_is_traced_through_the_engine("grpc");
}

/// A collection query shows its retrieval; an agent run, started by a request and going on
/// after it, shows its model turns and its tool call, all in the request's trace.
#[test]
fn retrieval_and_tool_calls_are_traced() {
    let receiver = Receiver::start("http");
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("secretary.yaml"),
        "name: secretary\nmodel: qwen2.5-coder:0.5b\ntools: [write_file]\nworkspace: desk\n\
         max_steps: 3\n",
    )
    .unwrap();
    let collections = dir.path().join("collections");
    let runs = dir.path().join("runs.sqlite");
    let server = Server::start_with(
        &["--no-auth"],
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--agents",
            agents.to_str().unwrap(),
        ],
        &[
            ("SYMPHONY_COLLECTIONS", collections.to_str().unwrap()),
            ("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap()),
        ],
    );
    let post = |path: &str, body: Value| {
        let (status, text) = call(
            "POST",
            &format!("{}{path}", server.base),
            None,
            Some(&body.to_string()),
        );
        assert!((200..300).contains(&status), "{path}: {status} {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    post("/v1/collections", json!({"name": "kb"}));
    post(
        "/v1/collections/kb/documents",
        json!({"documents": [{"path": "saturn.md", "text": "Saturn has 146 known moons."}]}),
    );
    post(
        "/v1/collections/kb/query",
        json!({"query": "How many moons does Saturn have?", "top_k": 2}),
    );
    let spans = receiver.wait_for("the query's retrieval", |spans| {
        !named(spans, "retrieve").is_empty()
    });
    let retrieve = named(&spans, "retrieve")[0];
    assert_eq!(retrieve["attributes"]["collection"], "kb");
    assert_eq!(retrieve["attributes"]["hits"], 1);
    let query = spans
        .iter()
        .find(|s| s["span_id"] == retrieve["parent_span_id"])
        .unwrap_or_else(|| panic!("retrieval has no parent: {spans:#?}"));
    assert_eq!(query["name"], "POST /v1/collections/{name}/query");

    let started = post(
        "/v1/agents/runs",
        json!({
            "agent": "secretary",
            "task": "Write the text 'Meeting moved to 3pm' into the file meeting.txt.",
        }),
    );
    let id = started["id"].as_str().unwrap().to_string();
    let spans = receiver.wait_for("the run's tool call", |spans| {
        !named(spans, "tool_call").is_empty() && !named(spans, "agent_run").is_empty()
    });
    let tool = named(&spans, "tool_call")[0];
    assert_eq!(tool["attributes"]["tool"], "write_file");
    let run = named(&spans, "agent_run")[0];
    assert_eq!(run["attributes"]["run_id"], id.as_str());
    assert_eq!(tool["parent_span_id"], run["span_id"]);
    assert_eq!(tool["trace_id"], run["trace_id"]);
    let start = spans
        .iter()
        .find(|s| s["span_id"] == run["parent_span_id"])
        .unwrap();
    assert_eq!(start["name"], "POST /v1/agents/runs");
    // The model's turns are the run's children too.
    assert!(
        children(&spans, run)
            .iter()
            .any(|s| s["name"] == "generate"),
        "{spans:#?}"
    );
}
