//! The retriever as an agent's tool, end to end on real models: Qwen2.5-Coder-0.5B, given
//! the search tool and made to call it (the engine's tool-call grammar), searches a real
//! collection embedded by all-MiniLM-L6-v2, reads the passages back as the tool's answer and
//! answers from them. Both models come from the store (scripts/test.sh fetches them).

use std::path::PathBuf;

use symphony_engine::tools::{parse_tool_calls, tool_call_grammar};
use symphony_engine::{
    chat_prompt_with_tools, GenerationParams, GrammarCompiler, SamplingParams, Session,
};
use symphony_models::embedding::Embedder;
use symphony_models::Model;
use symphony_rag::chunking::Chunking;
use symphony_rag::tool::{run_search, search_tool, SEARCH_TOOL};
use symphony_rag::{Collection, CollectionConfig};
use symphony_types::{ChatMessage, Role, ToolCall};

fn stored(name: &str) -> PathBuf {
    let store = symphony_store::Store::from_env().expect("a data directory");
    match store.get(name) {
        Ok(manifest) => store.blob_path(&manifest),
        Err(e) => {
            panic!("{e}\nrun `symphony models fetch {name}` (the README's test command does)")
        }
    }
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        stop: Vec::new(),
        ignore_eos: false,
        constraint: None,
    }
}

#[test]
fn a_model_searches_a_collection_through_the_tool_and_answers_from_it() {
    let embedder = Embedder::load(stored("all-minilm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("saturn.md"),
        "# Saturn\n\nSaturn is the sixth planet from the Sun and has 146 known moons.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("tea.txt"),
        "Green tea is steeped at about 80 degrees Celsius.",
    )
    .unwrap();
    let config = CollectionConfig::new(
        Chunking::new("recursive", 64, 8).unwrap(),
        "all-minilm",
        &embedder,
    );
    let mut collection = Collection::create(&dir.path().join("c"), "kb", config).unwrap();
    collection.ingest(&[docs], &embedder, &mut |_| {}).unwrap();

    let model = Model::load(stored("qwen2.5-coder:0.5b")).unwrap();
    let tools = [search_tool("kb")];
    let mut messages = vec![
        ChatMessage::system(
            "You answer questions about the user's documents. Search them first, then answer \
             in one sentence from the passages found.",
        ),
        ChatMessage::user("How many moons does Saturn have?"),
    ];
    // The call: constrained to the tool's schema from the first token (tool_choice: required).
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let mut params = greedy(80);
    params.constraint = Some(compiler.compile(&tool_call_grammar(&tools, false)).unwrap());
    let prompt = chat_prompt_with_tools(&model, &messages, &tools).unwrap();
    let mut session = Session::new(&model);
    let reply = session.generate(&prompt, &params, None, |_| {}).unwrap();
    let parsed = parse_tool_calls(&reply.text);
    assert_eq!(parsed.calls.len(), 1, "{}", reply.text);
    let (name, arguments) = &parsed.calls[0];
    assert_eq!(name, SEARCH_TOOL);

    let (observation, hits) = run_search(&collection, &embedder, arguments).unwrap();
    assert!(hits[0].chunk.path.ends_with("saturn.md"), "{observation}");
    assert!(
        observation.starts_with("[1] ") && observation.contains("146"),
        "{observation}"
    );
    // Arguments outside the schema come back as a message for the model, not a panic.
    let bad = run_search(&collection, &embedder, &serde_json::json!({"q": 1})).unwrap_err();
    assert!(bad.to_string().contains("query"), "{bad}");

    // The answer, with the passages as the tool's turn.
    let mut call_turn = ChatMessage::new(Role::Assistant, "");
    call_turn.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: name.clone(),
        arguments: arguments.clone(),
    }];
    let mut tool_turn = ChatMessage::new(Role::Tool, observation);
    tool_turn.tool_call_id = Some("call_1".into());
    tool_turn.name = Some(SEARCH_TOOL.into());
    messages.extend([call_turn, tool_turn]);
    // Answering now (tool_choice: none): the tools are no longer offered.
    let prompt = chat_prompt_with_tools(&model, &messages, &[]).unwrap();
    let answer = session
        .generate(&prompt, &greedy(60), None, |_| {})
        .unwrap();
    assert!(answer.text.contains("146"), "{}", answer.text);
}
