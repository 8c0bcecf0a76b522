//! Bounds on what one request or one model file can cost, and models reloaded when their
//! name changes hands, all through a real `symphony serve` on the real models.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::*;
use serde_json::{json, Value};
use symphony_models::gguf::writer::{to_bytes, TensorToWrite};
use symphony_models::gguf::{GgufFile, MetadataValue};

/// A JSON POST, given up after two minutes: a request the server cannot bound fails the
/// test instead of hanging it.
fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = curl(&[
        "-X",
        "POST",
        &format!("{}{path}", server.base),
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
        "--max-time",
        "120",
    ]);
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} {text:?}: {e}"));
    (status, v)
}

/// A POST whose body is too big for a command-line argument.
fn post_file(server: &Server, path: &str, body: &Value, dir: &Path) -> (u16, Value) {
    let file = dir.join("body.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let (status, text) = curl(&[
        "-X",
        "POST",
        &format!("{}{path}", server.base),
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", file.display()),
    ]);
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

fn ps(server: &Server) -> Vec<Value> {
    let (status, text) = call("GET", &format!("{}/api/ps", server.base), None, None);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["models"].as_array().unwrap().clone()
}

fn sha256_of(home: &Path, name: &str) -> String {
    let list: Value = serde_json::from_str(&symphony(
        &["models", "list", "--json"],
        &[("SYMPHONY_HOME", home.to_str().unwrap())],
    ))
    .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {list}"))["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

fn import(home: &Path, file: &Path, name: &str) {
    symphony(
        &["models", "import", file.to_str().unwrap(), "--name", name],
        &[("SYMPHONY_HOME", home.to_str().unwrap())],
    );
}

/// `models cp` gives a file a second name: both names are served by one loaded model (one
/// copy of the weights, one KV cache), each reply under the name it was asked for. A name
/// re-imported with another file while the server runs is answered by the new file on the
/// next request, and weights no name uses any more are unloaded.
#[test]
fn aliases_share_one_loaded_model_and_a_reimported_name_is_reloaded() {
    let home = tempfile::tempdir().unwrap();
    let env = [("SYMPHONY_HOME", home.path().to_str().unwrap())];
    import(home.path(), &common::smollm2(), "smollm2");
    symphony(&["models", "cp", "smollm2", "other:tag"], &env);
    let server = Server::start_with(&["--no-auth"], &["--kv-cache-tokens", "2048"], &env);
    let greedy = json!({"temperature": 0});

    let (status, first) = chat(&server, "smollm2", greedy.clone());
    assert_eq!(status, 200, "{first}");
    let (status, alias) = chat(&server, "other:tag", greedy.clone());
    assert_eq!(status, 200, "{alias}");
    assert_eq!(
        alias["model"], "other:tag",
        "a reply names the model asked for"
    );
    assert_eq!(content(&alias), content(&first), "the same weights");
    let loaded = ps(&server);
    assert_eq!(
        loaded.len(),
        1,
        "aliases share one loaded model: {loaded:?}"
    );
    let smollm2_sha = sha256_of(home.path(), "smollm2");
    assert_eq!(loaded[0]["digest"], smollm2_sha.as_str());

    // Another model's file under the alias: the alias now means Qwen, smollm2 stays SmolLM2.
    let qwen = common::stored("qwen2.5-coder:0.5b");
    import(home.path(), &qwen, "other:tag");
    let qwen_sha = sha256_of(home.path(), "other:tag");
    assert_ne!(qwen_sha, smollm2_sha);
    let (status, reloaded) = chat(&server, "other:tag", greedy.clone());
    assert_eq!(status, 200, "{reloaded}");
    assert_ne!(
        content(&reloaded),
        content(&first),
        "the re-imported name is answered by the new weights"
    );
    let digests: Vec<_> = ps(&server).iter().map(|m| m["digest"].clone()).collect();
    assert!(digests.contains(&json!(qwen_sha)), "{digests:?}");
    assert!(digests.contains(&json!(smollm2_sha)), "{digests:?}");
    let (status, again) = chat(&server, "smollm2", greedy.clone());
    assert_eq!(status, 200, "{again}");
    assert_eq!(content(&again), content(&first));

    // Qwen under smollm2's name too: no name uses SmolLM2's file now, so once idle it goes.
    import(home.path(), &qwen, "smollm2");
    let (status, now) = chat(&server, "smollm2", greedy);
    assert_eq!(status, 200, "{now}");
    assert_eq!(content(&now), content(&reloaded));
    // Unloaded once idle: the reply is sent just before the request lets go of the model.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let digests: Vec<_> = ps(&server).iter().map(|m| m["digest"].clone()).collect();
        if digests == vec![json!(qwen_sha)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned weights stay loaded: {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// A 3 MB grammar is refused up front with a 400 naming the limit, whichever way it comes,
/// and a normal request at the same time is served.
#[test]
fn a_three_megabyte_grammar_is_refused_at_once() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let rules: String = (0..115_000)
        .map(|i| format!("r{i}: \"w{i:07}\" | r{}\n", i + 1))
        .collect();
    let lark = format!("start: r0\n{rules}r115000: \"end\"\n");
    assert!(lark.len() > 3_000_000);
    let properties: serde_json::Map<String, Value> = (0..110_000)
        .map(|i| (format!("p{i:07}"), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": properties});
    assert!(schema.to_string().len() > 3_000_000);
    let bodies = [
        json!({"guided_grammar": lark}),
        json!({"response_format": {"type": "json_schema",
                                   "json_schema": {"name": "big", "schema": schema}}}),
    ];
    for extra in bodies {
        let mut body = json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (refused, honest) = std::thread::scope(|s| {
            let big = s.spawn(|| post_file(&server, "/v1/chat/completions", &body, dir.path()));
            let honest = chat(&server, "smollm2", json!({"temperature": 0}));
            (big.join().unwrap(), honest)
        });
        assert_eq!(honest.0, 200, "{}", honest.1);
        let (status, reply) = refused;
        assert_eq!(status, 400, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("at most 262144"), "{message}");
    }
}
