//! The built-in tools that reach outside the process: `http_fetch` against a real HTTP
//! server on a local port, `search_documents` over a real collection embedded with
//! all-MiniLM-L6-v2.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use symphony_agents::tools::HttpFetch;
use symphony_agents::{AgentSpec, Tool, ToolEnv, ToolError};
use symphony_models::embedding::Embedder;
use symphony_rag::chunking::Chunking;
use symphony_rag::{Collection, CollectionConfig};

/// A small web server: each path answers one fixed response. Returns its port.
fn serve_pages() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // The rest of the head, up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let big = "word ".repeat(5000);
            let (status, headers, body): (&str, String, Vec<u8>) = match path {
                "/docs/page" => (
                    "200 OK",
                    "Content-Type: text/html; charset=utf-8\r\n".into(),
                    b"<html><head><title>Garage</title><script>var x = 1;</script></head>\
                      <body><h1>Garage</h1><p>The parking access code is <b>5813</b>.</p></body></html>"
                        .to_vec(),
                ),
                "/docs/notes.txt" => ("200 OK", "Content-Type: text/plain\r\n".into(), b"plain notes".to_vec()),
                "/docs/moved" => ("302 Found", "Location: page\r\n".into(), vec![]),
                "/docs/away" => (
                    "301 Moved Permanently",
                    "Location: http://203.0.113.9/steal\r\n".into(),
                    vec![],
                ),
                "/docs/outside" => ("302 Found", "Location: /private\r\n".into(), vec![]),
                "/docs/loop" => ("302 Found", "Location: /docs/loop\r\n".into(), vec![]),
                "/docs/big" => ("200 OK", "Content-Type: text/plain\r\n".into(), big.into_bytes()),
                "/docs/image" => (
                    "200 OK",
                    "Content-Type: image/png\r\n".into(),
                    vec![0x89, b'P', b'N', b'G', 0, 0, 0],
                ),
                _ => ("404 Not Found", "Content-Type: text/plain\r\n".into(), b"no such page".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

fn failure(result: Result<String, ToolError>) -> String {
    result.expect_err("the call fails").to_string()
}

#[test]
fn http_fetch_reads_allowed_pages_and_refuses_the_rest() {
    let port = serve_pages();
    let base = format!("http://127.0.0.1:{port}");
    let fetch = HttpFetch::new(&[format!("{base}/docs/")], Duration::from_secs(10)).unwrap();
    let call = |path: &str| fetch.call(json!({"url": format!("{base}{path}")}));

    // HTML comes back as its text: no tags, no script.
    let page = call("/docs/page").unwrap();
    assert!(page.contains("The parking access code is 5813."), "{page}");
    assert!(!page.contains('<') && !page.contains("var x"), "{page}");
    assert_eq!(call("/docs/notes.txt").unwrap(), "plain notes");
    // A redirect within the allowlist is followed; one out of it is not.
    assert!(call("/docs/moved").unwrap().contains("5813"));
    let e = failure(call("/docs/away"));
    assert!(
        e.contains("http://203.0.113.9/steal is not on this agent's allowlist"),
        "{e}"
    );
    let e = failure(call("/docs/outside"));
    assert!(
        e.contains("/private is not on this agent's allowlist"),
        "{e}"
    );
    assert!(failure(call("/docs/loop")).contains("more than 5 redirects"));
    // Outside the prefix, or on another port: refused before anything is sent.
    assert!(failure(call("/private")).contains("not on this agent's allowlist"));
    let e = failure(fetch.call(json!({"url": format!("http://127.0.0.1:{}/docs/page", port + 1)})));
    assert!(e.contains("not on this agent's allowlist"), "{e}");
    // Errors the model can act on.
    let e = failure(call("/docs/nothing"));
    assert!(
        e.contains("answered HTTP 404 Not Found: no such page"),
        "{e}"
    );
    assert!(failure(call("/docs/image")).contains("is not text (image/png"));
    let big = call("/docs/big").unwrap();
    assert!(
        big.ends_with("more characters not shown]"),
        "{}",
        &big[big.len() - 80..]
    );
    assert!(big.len() < 8100);
    let e = failure(fetch.call(json!({"url": 42})));
    assert!(e.starts_with("invalid arguments for http_fetch"), "{e}");
}

/// A web server that answers every request with a private page, as a server would that
/// resolves `..` itself; counts the requests it gets. Returns its port and the count.
fn serve_private_page() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "the private page";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, requests)
}

#[test]
fn http_fetch_refuses_dot_segments_out_of_an_allowed_prefix() {
    let (port, requests) = serve_private_page();
    let base = format!("http://127.0.0.1:{port}");
    let fetch = HttpFetch::new(&[format!("{base}/docs/")], Duration::from_secs(10)).unwrap();
    for path in [
        "/docs/../private/x",
        "/docs/%2e%2e/private/x",
        "/docs/%2E%2e/private/x",
        "/docs/.%2e/private/x",
        "/docs%2f..%2fprivate/x",
        "/docs/..;/private/x",
    ] {
        let e = failure(fetch.call(json!({"url": format!("{base}{path}")})));
        assert!(e.contains("'..'"), "{path}: {e}");
    }
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    // What stays inside the prefix once decoded is still fetched.
    assert_eq!(
        fetch
            .call(json!({"url": format!("{base}/docs/./a%20b")}))
            .unwrap(),
        "the private page"
    );
    // A prefix is matched against the decoded path.
    let e = failure(fetch.call(json!({"url": format!("{base}/%64ocs2/x")})));
    assert!(e.contains("not on this agent's allowlist"), "{e}");
    assert_eq!(
        fetch
            .call(json!({"url": format!("{base}/%64ocs/x")}))
            .unwrap(),
        "the private page"
    );
}

#[test]
fn an_agent_file_turns_http_fetch_on_with_its_allowlist() {
    let spec = AgentSpec::from_yaml(
        "name: reader\nmodel: m\ntools: [http_fetch]\nhttp_allow: [\"127.0.0.1:9\", \"*.example.com\"]\n",
    )
    .unwrap();
    let tools = spec.registry(ToolEnv::default()).unwrap();
    let description = tools.get("http_fetch").unwrap().spec().description.unwrap();
    assert!(
        description.ends_with("reached: 127.0.0.1:9, *.example.com."),
        "{description}"
    );
}

fn handbook(root: &Path, embedder: &Embedder) -> Collection {
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("garage.md"),
        "# Garage\n\nThe parking garage is under building C. The access code for the garage \
         gate is 5813; it changes every quarter.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("kitchen.md"),
        "# Kitchen\n\nThe coffee machine on floor two is descaled every Friday. Milk is in the \
         left fridge.\n",
    )
    .unwrap();
    let config = CollectionConfig::new(
        Chunking::new("recursive", 64, 8).unwrap(),
        "all-minilm",
        embedder,
    );
    let mut collection = Collection::create(&root.join("collections"), "handbook", config).unwrap();
    collection
        .ingest(std::slice::from_ref(&docs), embedder, &mut |_| {})
        .unwrap();
    collection
}

#[test]
fn search_documents_answers_from_a_collection() {
    let dir = tempfile::tempdir().unwrap();
    let embedder = Embedder::load(common::stored_path("all-minilm")).unwrap();
    handbook(dir.path(), &embedder);
    let root = dir.path().join("collections");
    let open = |name: &str| -> Result<(Collection, Embedder), String> {
        let collection = Collection::open(&root, name).map_err(|e| e.to_string())?;
        let embedder = Embedder::load(common::stored_path(&collection.config.embedder))
            .map_err(|e| e.to_string())?;
        Ok((collection, embedder))
    };
    let spec = AgentSpec::from_yaml(
        "name: clerk\nmodel: m\ntools: [search_documents]\ncollection: handbook\n",
    )
    .unwrap();
    let tools = spec
        .registry(ToolEnv {
            open_collection: Some(&open),
            ..ToolEnv::default()
        })
        .unwrap();
    let search = tools.get("search_documents").unwrap();
    assert!(search
        .spec()
        .description
        .unwrap()
        .contains("collection 'handbook'"));
    let out = search
        .call(json!({"query": "garage gate access code", "top_k": 1}))
        .unwrap();
    assert!(out.starts_with("[1] "), "{out}");
    assert!(out.contains("garage.md") && out.contains("5813"), "{out}");
    assert!(!out.contains("[2]"), "{out}");
    let e = failure(search.call(json!({"query": "  "})));
    assert!(e.contains("the query is empty"), "{e}");
    let e = failure(search.call(json!({"question": "garage"})));
    assert!(
        e.starts_with("invalid arguments for search_documents"),
        "{e}"
    );

    // A collection that is not there is named when the agent's tools are built.
    let spec = AgentSpec::from_yaml(
        "name: clerk\nmodel: m\ntools: [search_documents]\ncollection: nowhere\n",
    )
    .unwrap();
    let e = spec
        .registry(ToolEnv {
            open_collection: Some(&open),
            ..ToolEnv::default()
        })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("collection 'nowhere'"), "{e}");
    let e = spec.registry(ToolEnv::default()).err().unwrap().to_string();
    assert!(e.contains("no collections are open"), "{e}");
}

fn minilm() -> std::sync::Arc<Embedder> {
    std::sync::Arc::new(Embedder::load(common::stored_path("all-minilm")).unwrap())
}

/// Long-term memory: facts kept, found again by meaning, through the agent's own tools.
#[test]
fn memory_keeps_facts_and_finds_them_by_meaning() {
    use symphony_agents::memory::{Kind, Memory};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    let memory = std::sync::Arc::new(Memory::open(&path, "clerk", minilm()).unwrap());
    for fact in [
        "The office wifi password is tulip-4721.",
        "The chief executive is called Ada Moreno.",
        "Bicycles are parked in the basement of building C.",
    ] {
        memory.remember(Kind::Fact, fact).unwrap();
    }
    memory
        .remember(Kind::Fact, "The office wifi password is tulip-4721.")
        .unwrap();
    assert_eq!(memory.count(Kind::Fact).unwrap(), 3);
    assert_eq!(memory.count(Kind::Episode).unwrap(), 0);
    let found = memory
        .recall(Kind::Fact, "how do I get on the wireless network", 2, 0.0)
        .unwrap();
    assert_eq!(
        found[0].text, "The office wifi password is tulip-4721.",
        "{found:?}"
    );
    assert!(found[0].score > found[1].score);
    let found = memory
        .recall(Kind::Fact, "who runs the company?", 1, 0.0)
        .unwrap();
    assert_eq!(found[0].text, "The chief executive is called Ada Moreno.");
    // Another agent's memories are its own.
    let other = Memory::open(&path, "other", minilm()).unwrap();
    assert!(other.recall(Kind::Fact, "wifi", 3, 0.0).unwrap().is_empty());

    // The same memory through the tools an agent with `memory` gets.
    let spec = AgentSpec::from_yaml("name: clerk\nmodel: m\nmemory: {episodes: 0}\n").unwrap();
    let tools = spec
        .registry(ToolEnv {
            memory: Some(memory.clone()),
            ..ToolEnv::default()
        })
        .unwrap();
    assert_eq!(tools.names().collect::<Vec<_>>(), ["recall", "remember"]);
    let remember = tools.get("remember").unwrap();
    assert_eq!(
        remember
            .call(json!({"fact": "The printer on floor 2 is called Gutenberg."}))
            .unwrap(),
        "Remembered."
    );
    let out = tools
        .get("recall")
        .unwrap()
        .call(json!({"query": "name of the printer"}))
        .unwrap();
    assert!(
        out.starts_with("- The printer on floor 2 is called Gutenberg."),
        "{out}"
    );
    let e = spec.registry(ToolEnv::default()).err().unwrap().to_string();
    assert!(e.contains("no memory store is open"), "{e}");
}

/// A run's first prompt: the instructions with their variables, the remembered facts and
/// past runs nearest the task, and the examples nearest it.
#[test]
fn a_run_starts_from_its_instructions_memories_and_nearest_examples() {
    use std::collections::BTreeMap;
    use symphony_agents::memory::{episode, Kind, Memory};
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::open(&dir.path().join("memory.sqlite"), "clerk", minilm()).unwrap();
    memory
        .remember(Kind::Fact, "Invoices are due 30 days after they are sent.")
        .unwrap();
    memory
        .remember(Kind::Fact, "The cat is called Miso.")
        .unwrap();
    memory
        .remember(
            Kind::Episode,
            &episode("When is invoice 17 due? It was sent on 1 May.", "31 May."),
        )
        .unwrap();
    let spec = AgentSpec::from_yaml(
        "name: clerk\nmodel: m\ninstructions: You keep the books of {{company}} for {{owner}}.\n\
         vars: {company: Acme, owner: nobody}\nmemory: {episodes: 1}\nfew_shot: 1\n\
         examples:\n\
         \x20 - {task: What is 15% of 80?, answer: '12'}\n\
         \x20 - {task: When is an invoice sent on 3 March due?, answer: 2 April.}\n\
         \x20 - {task: Spell the word necessary., answer: n-e-c-e-s-s-a-r-y}\n",
    )
    .unwrap();
    let vars: BTreeMap<String, String> = [("owner".to_string(), "Rita".to_string())].into();
    let task = "An invoice went out on 10 June. When must it be paid?";
    let (config, state) = spec.start(task, &vars, Some(&memory), None).unwrap();
    assert_eq!(config.instructions, "You keep the books of Acme for Rita.");
    let system = &state.messages[0].content;
    assert!(
        system.starts_with("You keep the books of Acme for Rita."),
        "{system}"
    );
    assert!(
        system.contains("- Invoices are due 30 days after they are sent."),
        "{system}"
    );
    assert!(!system.contains("Miso"), "{system}");
    assert!(system.contains("Task: When is invoice 17 due?"), "{system}");
    assert!(
        system.contains("Task: When is an invoice sent on 3 March due?\nAnswer: 2 April."),
        "{system}"
    );
    assert!(
        !system.contains("15% of 80") && !system.contains("necessary"),
        "{system}"
    );
    assert_eq!(state.messages[1].content, task);

    let spec = AgentSpec::from_yaml("name: a\nmodel: m\ninstructions: Hi {{user}}.\n").unwrap();
    let e = spec
        .start("x", &BTreeMap::new(), None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("{{user}} with no value"), "{e}");
}
