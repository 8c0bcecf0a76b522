//! Bounds on what one request or one model file can cost, and models reloaded when their
//! name changes hands, all through a real `symphony serve` on the real models.

mod common;

use common::server::*;
use serde_json::{json, Value};

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = call(
        "POST",
        &format!("{}{path}", server.base),
        None,
        Some(&body.to_string()),
    );
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} {text:?}: {e}"));
    (status, v)
}

fn chat(server: &Server, model: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 16,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    post(server, "/v1/chat/completions", &body)
}

fn content(reply: &Value) -> String {
    reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {reply}"))
        .to_string()
}

/// A temperature so small that logit / T overflows f32 is greedy, not garbage, on both
/// APIs and whatever the seed.
#[test]
fn a_vanishing_temperature_gives_the_greedy_reply() {
    let server = Server::start(&[]);
    let (status, greedy) = chat(&server, "smollm2", json!({"temperature": 0}));
    assert_eq!(status, 200, "{greedy}");
    let greedy = content(&greedy);
    for seed in [1, 2, 3] {
        let (status, tiny) = chat(
            &server,
            "smollm2",
            json!({"temperature": 1e-40, "seed": seed}),
        );
        assert_eq!(status, 200, "{tiny}");
        assert_eq!(content(&tiny), greedy, "seed {seed}");
    }

    let generate = |temperature: f64, seed: u64| {
        let (status, v) = post(
            &server,
            "/api/generate",
            &json!({
                "model": "smollm2",
                "prompt": "Name three colours.",
                "stream": false,
                "options": {"temperature": temperature, "seed": seed, "num_predict": 16},
            }),
        );
        assert_eq!(status, 200, "{v}");
        v["response"].as_str().unwrap().to_string()
    };
    let greedy = generate(0.0, 0);
    for seed in [1, 2, 3] {
        assert_eq!(generate(1e-40, seed), greedy, "seed {seed}");
    }
}
