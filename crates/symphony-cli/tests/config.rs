//! `symphony.toml`: the settings file under `SYMPHONY_*` variables under the flags, for
//! `serve` and for any other command; `symphony config show` with sources and secrets
//! masked; unknown keys and bad values refused with the key and the file named.

mod common;

use std::path::Path;

use common::server::*;
use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_file_then_variables_then_flags_set_what_serve_runs_with() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 would fail to bind: the flag given (--port 0) must win over the file.
    // max_body_bytes comes from the file; max_waiting from the file, then the variable.
    let file = write(
        dir.path(),
        "symphony.toml",
        "[serve]\nport = 1\nmax_body_bytes = \"1K\"\nmax_waiting = 3\nno_auth = true\n\
         redis = \"redis://app:hunter2@127.0.0.1:1/0\"\n\n[run]\nmax_tokens = 3\n",
    );
    let env = [("SYMPHONY_MAX_WAITING", "7")];
    let shown: Value = serde_json::from_str(&symphony(
        &["config", "show", "serve", "--json", "--config", &file],
        &env,
    ))
    .unwrap();
    let setting = |key: &str| &shown["settings"][key];
    assert_eq!(setting("port")["value"], 1);
    assert_eq!(setting("port")["source"]["kind"], "file");
    assert_eq!(setting("port")["source"]["path"], file.as_str());
    assert_eq!(setting("max_waiting")["value"], 7);
    assert_eq!(
        setting("max_waiting")["source"]["name"],
        "SYMPHONY_MAX_WAITING"
    );
    assert_eq!(setting("host")["value"], "127.0.0.1");
    assert_eq!(setting("host")["source"]["kind"], "default");
    // The password never shows.
    assert_eq!(setting("redis")["value"], "redis://app:****@127.0.0.1:1/0");
    let text = symphony(&["config", "show", "--config", &file], &env);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("max_waiting = 7  # SYMPHONY_MAX_WAITING"),
        "{text}"
    );

    // Another command's table: `symphony run` reads [run].
    let shown: Value = serde_json::from_str(&symphony(
        &["config", "show", "run", "--json", "--config", &file],
        &[],
    ))
    .unwrap();
    assert_eq!(shown["settings"]["max_tokens"]["value"], 3);
    assert_eq!(
        shown["settings"]["temperature"]["source"]["kind"],
        "default"
    );

    // The server runs with a file like it: no key needed (no_auth from the file), and a body
    // over the file's 1K limit refused, on the port the flag chose (not the file's).
    let served = write(
        dir.path(),
        "served.toml",
        "[serve]\nport = 1\nmax_body_bytes = \"1K\"\nno_auth = true\n",
    );
    let server = Server::spawn(&["--config", &served], &[]);
    server.wait_ready();
    let big = format!(
        "{{\"model\":\"smollm2\",\"prompt\":\"{}\"}}",
        "a".repeat(2000)
    );
    let (status, _) = call(
        "POST",
        &format!("{}/v1/completions", server.base),
        None,
        Some(&big),
    );
    assert_eq!(status, 413, "{}", server.log());
    let (status, _) = call("GET", &format!("{}/v1/models", server.base), None, None);
    assert_eq!(status, 200);
}

#[test]
fn a_commands_table_sets_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "run.toml",
        "[run]\nmax_tokens = 3\ntemperature = 0\n",
    );
    let out = symphony_output(
        &["--config", &file, "run", "smollm2", "Tell me a story", "-v"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("generated: 3 tokens"), "{stderr}");
    // A flag given beats the file.
    let out = symphony_output(
        &[
            "--config",
            &file,
            "run",
            "smollm2",
            "Tell me a story",
            "-v",
            "-n",
            "2",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("generated: 2 tokens"), "{stderr}");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_where_it_was_set() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], env: &[(&str, &str)]| -> String {
        let out = symphony_output(args, env);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let typo = write(dir.path(), "typo.toml", "[serve]\nprot = 9000\n");
    let stderr = refused(&["--config", &typo, "serve"], &[]);
    assert!(stderr.contains(&typo), "{stderr}");
    assert!(stderr.contains("unknown key `serve.prot`"), "{stderr}");
    assert!(stderr.contains("port"), "{stderr}");

    let section = write(dir.path(), "section.toml", "[srve]\nport = 9000\n");
    let stderr = refused(&["--config", &section, "models", "list"], &[]);
    assert!(
        stderr.contains("unknown key `srve`") && stderr.contains(&section),
        "{stderr}"
    );

    let zero = write(dir.path(), "zero.toml", "[serve]\nmax_running = 0\n");
    let stderr = refused(&["--config", &zero, "serve"], &[]);
    assert!(
        stderr.contains(&zero) && stderr.contains("max_running"),
        "{stderr}"
    );
    assert!(stderr.contains("must be at least 1"), "{stderr}");

    let stderr = refused(&["serve"], &[("SYMPHONY_KEEP_ALIVE", "forever")]);
    assert!(stderr.contains("SYMPHONY_KEEP_ALIVE"), "{stderr}");
    assert!(stderr.contains("not a duration"), "{stderr}");

    let missing = dir.path().join("missing.toml");
    let stderr = refused(&["--config", missing.to_str().unwrap(), "serve"], &[]);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn the_homes_settings_file_is_read_when_none_is_named() {
    let home = tempfile::tempdir().unwrap();
    write(
        home.path(),
        "symphony.toml",
        "[serve]\nmax_memory = \"2G\"\n",
    );
    let home_env = [("SYMPHONY_HOME", home.path().to_str().unwrap())];
    let shown: Value =
        serde_json::from_str(&symphony(&["config", "show", "--json"], &home_env)).unwrap();
    assert_eq!(shown["settings"]["max_memory"]["value"], "2G");
    assert_eq!(shown["settings"]["max_memory"]["source"]["kind"], "file");
}
