//! Bounds on what one request or one model file can cost, and models reloaded when their
//! name changes hands, all through a real `symphony serve` on the real models.

mod common;

use std::path::Path;

use common::server::*;
use serde_json::{json, Value};
use symphony_models::gguf::writer::{to_bytes, TensorToWrite};
use symphony_models::gguf::{GgufFile, MetadataValue};

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

fn import(home: &Path, file: &Path, name: &str) {
    symphony(
        &["models", "import", file.to_str().unwrap(), "--name", name],
        &[("SYMPHONY_HOME", home.to_str().unwrap())],
    );
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

/// SmolLM2's file with another chat template.
fn with_template(dir: &Path, template: &str) -> std::path::PathBuf {
    let source = GgufFile::open(common::smollm2()).unwrap();
    let metadata: Vec<(&str, MetadataValue)> = source
        .metadata
        .iter()
        .map(|(k, v)| match k.as_str() {
            "tokenizer.chat_template" => (k.as_str(), MetadataValue::String(template.into())),
            _ => (k.as_str(), v.clone()),
        })
        .collect();
    let tensors: Vec<_> = source
        .tensors
        .iter()
        .map(|t| TensorToWrite {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: source.tensor_data(t).to_vec(),
        })
        .collect();
    let path = dir.join("hostile.gguf");
    std::fs::write(&path, to_bytes(&metadata, &tensors)).unwrap();
    path
}

/// A model file's chat template is code run on every request: one that loops 10^8 times or
/// writes a gigabyte is stopped at its bound with a 400 saying so, and the server goes on
/// answering other requests.
#[test]
fn a_hostile_chat_template_is_stopped_with_a_400() {
    let home = tempfile::tempdir().unwrap();
    let env = [("SYMPHONY_HOME", home.path().to_str().unwrap())];
    import(home.path(), &common::smollm2(), "smollm2");
    let loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{{ messages[0].content }}";
    import(home.path(), &with_template(home.path(), loops), "loops");
    let writes = "{% for i in range(10) %}{{ 'x' * 100000000 }}{% endfor %}";
    import(home.path(), &with_template(home.path(), writes), "writes");
    let server = Server::start_with(&["--no-auth"], &["--kv-cache-tokens", "2048"], &env);

    let hostile = std::thread::scope(|s| {
        let requests: Vec<_> = ["loops", "writes", "loops", "writes"]
            .into_iter()
            .map(|model| {
                let server = &server;
                s.spawn(move || (model, chat(server, model, json!({}))))
            })
            .collect();
        // Meanwhile an honest request is answered.
        let (status, honest) = chat(&server, "smollm2", json!({"temperature": 0}));
        assert_eq!(status, 200, "{honest}");
        assert!(!content(&honest).is_empty());
        requests
            .into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (model, (status, reply)) in hostile {
        assert_eq!(status, 400, "{model}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        let bound = if model == "loops" { "steps" } else { "bytes" };
        assert!(message.contains(bound), "{model}: {message}");
    }
    // Ollama's API says the same.
    let (status, reply) = post(
        &server,
        "/api/chat",
        &json!({"model": "loops", "stream": false,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("steps"),
        "{reply}"
    );
}
