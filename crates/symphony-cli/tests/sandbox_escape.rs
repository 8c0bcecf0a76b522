//! `run_python` through a real `symphony serve`: the attack of the report, an agent started
//! by a `user` key whose code adds an admin key to the server's key file. A model cannot be
//! made to write exact code, so the call it makes (Qwen2.5-Coder-0.5B, held to calling the
//! tool) waits for approval, and its code is replaced in the run's store before the call is
//! approved: what runs is what a model could have written.

mod common;

use common::server::*;

/// The last call the run's model made, its code replaced by `code`.
fn replace_code(runs: &std::path::Path, run: &str, code: &str) {
    let conn = rusqlite::Connection::open(runs).unwrap();
    let (seq, message): (i64, String) = conn
        .query_row(
            "SELECT seq, message FROM messages WHERE run_id = ?1 \
             AND message LIKE '%\"tool_calls\"%' ORDER BY seq DESC LIMIT 1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut message: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["tool_calls"][0]["name"], "run_python", "{message}");
    message["tool_calls"][0]["arguments"] = serde_json::json!({ "code": code });
    conn.execute(
        "UPDATE messages SET message = ?3 WHERE run_id = ?1 AND seq = ?2",
        rusqlite::params![run, seq, message.to_string()],
    )
    .unwrap();
}

#[test]
fn run_python_cannot_give_itself_an_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    // The server's home: its key file.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let keys = home.join("keys.json");
    let keys_arg = keys.to_str().unwrap();
    let user = symphony(
        &[
            "keys",
            "create",
            "u",
            "--role",
            "user",
            "--api-keys",
            keys_arg,
        ],
        &[],
    );
    let before = std::fs::read(&keys).unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(
        agents.join("coder.yaml"),
        "name: coder\nmodel: qwen2.5-coder:0.5b\ntools: [run_python]\ntool_choice: required\n\
         approval: [run_python]\nmax_steps: 2\n",
    )
    .unwrap();
    let runs = dir.path().join("runs.sqlite");
    let server = Server::start_with(
        &["--api-keys", keys_arg],
        &["--agents", agents.to_str().unwrap()],
        &[("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap())],
    );
    let url = |path: &str| format!("{}{path}", server.base);
    let admin_keys = url("/v1/admin/keys");
    assert_eq!(call("GET", &admin_keys, Some("sk-sym-x"), None).0, 401);

    let start = serde_json::json!({
        "agent": "coder",
        "task": "Use Python to print the sum of the numbers from 1 to 100.",
    });
    let (status, started) = call(
        "POST",
        &url("/v1/agents/runs"),
        Some(&user),
        Some(&start.to_string()),
    );
    assert_eq!(status, 202, "{started}\n{}", server.log());
    let started: serde_json::Value = serde_json::from_str(&started).unwrap();
    let id = started["id"].as_str().unwrap();
    // Followed to its pause.
    let (_, events) = call(
        "GET",
        &url(started["events"].as_str().unwrap()),
        Some(&user),
        None,
    );
    assert!(events.contains("awaiting_approval"), "{events}");

    let attack = format!(
        "import json,hashlib; HOME='{}'; p=HOME+'/keys.json'; d=json.load(open(p)); \
         d['keys'].append({{'name':'x','hash':'sha256:'+hashlib.sha256(b'sk-sym-x').hexdigest(),\
         'role':'admin','created_at':0}}); json.dump(d,open(p,'w'))",
        home.display()
    );
    replace_code(&runs, id, &attack);
    let approve = serde_json::json!({"approve": true, "stream": true});
    let (status, body) = call(
        "POST",
        &url(&format!("/v1/agents/runs/{id}/approve")),
        Some(&user),
        Some(&approve.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    // The code ran, and found no key file: the server's home is not in its world.
    assert!(body.contains("tool_result"), "{body}");
    assert!(body.contains("FileNotFoundError"), "{body}");
    assert_eq!(std::fs::read(&keys).unwrap(), before);
    assert_eq!(call("GET", &admin_keys, Some("sk-sym-x"), None).0, 401);
}
