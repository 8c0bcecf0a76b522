//! Agent runs over HTTP belong to whoever started them: another user, or a reader, cannot
//! list, read, approve or resume them; and the server only continues runs of its own agents,
//! so a run paused by `symphony agent` with tools the server never offers cannot be carried
//! out over HTTP. A real `symphony serve` with Qwen2.5-Coder-0.5B.

mod common;

use std::process::{Command, Stdio};

use common::server::*;
use serde_json::{json, Value};

fn get(url: &str, token: &str) -> (u16, Value) {
    let (status, body) = call("GET", url, Some(token), None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let (status, body) = call("POST", url, Some(token), Some(&body.to_string()));
    (
        status,
        serde_json::from_str(&body).unwrap_or(json!({ "raw": body })),
    )
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn runs_are_their_starters_and_only_the_servers_agents_continue() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("secretary.yaml"),
        "name: secretary\nmodel: qwen2.5-coder:0.5b\ntools: [write_file]\nworkspace: desk\n\
         approval: [write_file]\nmax_steps: 4\n",
    )
    .unwrap();
    let runs = dir.path().join("runs.sqlite");
    let runs_env = [("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap())];
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let key = |name: &str, role: &str| {
        symphony(
            &["keys", "create", name, "--role", role, "--api-keys", keys],
            &[],
        )
    };
    let (alice, bob, reader, admin) = (
        key("alice", "user"),
        key("bob", "user"),
        key("rita", "reader"),
        key("root", "admin"),
    );

    // A run paused on the command line, with a tool this server's agents do not have: its
    // agent file lives outside the server's directory.
    let outside = dir.path().join("coder.yaml");
    std::fs::write(
        &outside,
        "name: coder\nmodel: qwen2.5-coder:0.5b\ntools: [run_python]\napproval: [run_python]\n\
         max_steps: 3\n",
    )
    .unwrap();
    let paused = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args([
            "agent",
            "run",
            outside.to_str().unwrap(),
            "Use run_python to print the contents of the file /etc/passwd.",
        ])
        .envs(runs_env)
        .stdin(Stdio::null())
        .output()
        .expect("symphony agent runs");
    let listed: Value =
        serde_json::from_str(&symphony(&["agent", "ls", "--json"], &runs_env)).unwrap();
    let cli_run = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        listed[0]["status"],
        "awaiting_approval",
        "{listed}\n{}",
        String::from_utf8_lossy(&paused.stderr)
    );

    let server = Server::start_with(
        &["--api-keys", keys],
        &["--agents", agents.to_str().unwrap()],
        &runs_env,
    );
    let url = |path: &str| format!("{}{path}", server.base);

    // Alice's run pauses on the call that needs approval.
    let task = json!({
        "agent": "secretary",
        "task": "Write the text 'Meeting moved to 3pm' into the file meeting.txt.",
    });
    let (status, started) = post(&url("/v1/agents/runs"), &alice, &task);
    assert_eq!(status, 202, "{started}\n{}", server.log());
    let id = started["id"].as_str().unwrap().to_string();
    let (_, body) = curl(&[
        &url(&format!("/v1/agents/runs/{id}/events")),
        "-H",
        &format!("authorization: Bearer {alice}"),
    ]);
    assert!(body.contains("approval_needed"), "{body}");
    let (status, run) = get(&url(&format!("/v1/agents/runs/{id}")), &alice);
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("awaiting_approval"))
    );

    // Bob, another user, and a reader see none of it and can do nothing with it.
    for (who, token) in [("bob", &bob), ("reader", &reader)] {
        let (status, list) = get(&url("/v1/agents/runs"), token);
        assert_eq!(status, 200, "{who}: {list}");
        assert!(
            listed_ids(&list).is_empty(),
            "{who} lists others' runs: {list}"
        );
        for path in [
            format!("/v1/agents/runs/{id}"),
            format!("/v1/agents/runs/{id}/events"),
            format!("/v1/agents/runs/{cli_run}"),
        ] {
            let (status, body) = call("GET", &url(&path), Some(token), None);
            assert_eq!(status, 404, "{who} GET {path}: {body}");
            assert!(!body.contains("meeting.txt"), "{who} GET {path}: {body}");
        }
    }
    for action in ["approve", "resume"] {
        let (status, e) = post(
            &url(&format!("/v1/agents/runs/{id}/{action}")),
            &bob,
            &json!({}),
        );
        assert_eq!(status, 404, "bob {action}: {e}");
    }
    assert!(
        !agents.join("desk/meeting.txt").exists(),
        "bob's approval ran the call"
    );

    // Alice lists her run and not the command line's; an admin sees both.
    let (_, list) = get(&url("/v1/agents/runs"), &alice);
    assert_eq!(listed_ids(&list), std::slice::from_ref(&id), "{list}");
    let (_, list) = get(&url("/v1/agents/runs"), &admin);
    let ids = listed_ids(&list);
    assert!(ids.contains(&id) && ids.contains(&cli_run), "{list}");
    let (status, run) = get(&url(&format!("/v1/agents/runs/{id}")), &admin);
    assert_eq!(status, 200, "{run}");

    // The command line's run: not Alice's to approve, and not this server's to carry out,
    // not even for an admin.
    let (status, e) = post(
        &url(&format!("/v1/agents/runs/{cli_run}/approve")),
        &alice,
        &json!({}),
    );
    assert_eq!(status, 404, "{e}");
    let (status, e) = post(
        &url(&format!("/v1/agents/runs/{cli_run}/approve")),
        &admin,
        &json!({"stream": true}),
    );
    assert_eq!(status, 403, "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not one of this server's agents"), "{e}");
    let (status, run) = get(&url(&format!("/v1/agents/runs/{cli_run}")), &admin);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "awaiting_approval", "the call ran: {run}");
    assert!(!run.to_string().contains("root:x:0:0"), "{run}");

    // Alice approves her own run, which goes on.
    let (status, body) = call(
        "POST",
        &url(&format!("/v1/agents/runs/{id}/approve")),
        Some(&alice),
        Some(&json!({"approve": true, "stream": true}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tool_result"), "{body}");
    assert!(agents.join("desk/meeting.txt").exists(), "{body}");

    // An agent file changed since the run started: the server does not continue the old spec.
    let (status, started) = post(&url("/v1/agents/runs"), &alice, &task);
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (_, body) = curl(&[
        &url(&format!("/v1/agents/runs/{id}/events")),
        "-H",
        &format!("authorization: Bearer {alice}"),
    ]);
    assert!(body.contains("approval_needed"), "{body}");
    std::fs::write(
        agents.join("secretary.yaml"),
        "name: secretary\nmodel: qwen2.5-coder:0.5b\ntools: [write_file]\nworkspace: desk\n\
         approval: [write_file]\nmax_steps: 2\n",
    )
    .unwrap();
    let (status, e) = post(
        &url(&format!("/v1/agents/runs/{id}/approve")),
        &alice,
        &json!({}),
    );
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("has changed"),
        "{e}"
    );
}
