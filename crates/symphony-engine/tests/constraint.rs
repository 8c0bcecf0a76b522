//! Constrained decoding on the real SmolLM2: sampled at temperature 1.0, every output matches
//! its JSON Schema, regex or Lark grammar; a triggered constraint leaves free text alone and
//! takes over once a tool call starts; bad grammars are refused when compiled.

mod common;

use symphony_engine::sampling::SamplingParams;
use symphony_engine::tools::tool_call_grammar;
use symphony_engine::{
    chat_prompt, Constraint, Error, FinishReason, GenerationParams, Grammar, GrammarCompiler,
    Session,
};
use symphony_models::tokenizer::EncodeOptions;
use symphony_models::Model;
use symphony_types::{ChatMessage, ToolSpec};

fn smollm2() -> Model {
    Model::load(common::SMOLLM2.path()).expect("SmolLM2 loads")
}

fn sampled(seed: u64, constraint: Constraint) -> GenerationParams {
    GenerationParams {
        max_tokens: 200,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplingParams::default()
        },
        stop: Vec::new(),
        ignore_eos: false,
        constraint: Some(constraint),
    }
}

fn generate(model: &Model, question: &str, params: &GenerationParams) -> (String, FinishReason) {
    let prompt = chat_prompt(model, &[ChatMessage::user(question)]).unwrap();
    let g = Session::new(model)
        .generate(&prompt, params, None, |_| {})
        .unwrap();
    (g.text, g.finish_reason)
}

#[test]
fn sampled_json_follows_the_schema() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "colour": {"enum": ["red", "green", "blue"]},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}
        },
        "required": ["name", "age", "colour", "tags"],
        "additionalProperties": false
    });
    let grammar = Grammar::JsonSchema(schema);
    for seed in 0..6 {
        let params = sampled(seed, compiler.compile(&grammar).unwrap());
        let (text, finish) = generate(&model, "Describe a person as JSON.", &params);
        assert_eq!(finish, FinishReason::EndOfGeneration, "seed {seed}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 4, "{text}");
        assert!(
            obj["name"].as_str().unwrap().chars().count() <= 20,
            "{text}"
        );
        let age = obj["age"].as_i64().unwrap();
        assert!((0..=120).contains(&age), "{text}");
        assert!(["red", "green", "blue"].contains(&obj["colour"].as_str().unwrap()));
        let tags = obj["tags"].as_array().unwrap();
        assert!(
            tags.len() <= 3 && tags.iter().all(|t| t.is_boolean()),
            "{text}"
        );
    }
}

#[test]
fn regex_and_lark_outputs_match() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let phone = Grammar::Regex(r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}".into());
    let lark = Grammar::Lark(
        r#"start: sum
sum: term | term OP term | term OP term OP term
term: NUMBER | "(" sum ")"
OP: "+" | "-"
NUMBER: /[0-9]{1,3}/
"#
        .into(),
    );
    for seed in 0..4 {
        let (text, _) = generate(
            &model,
            "Give me a phone number.",
            &sampled(seed, compiler.compile(&phone).unwrap()),
        );
        let b = text.as_bytes();
        assert_eq!(b.len(), 14, "{text}");
        assert!(
            b[0] == b'(' && b[4] == b')' && b[5] == b' ' && b[9] == b'-',
            "{text}"
        );
        let digits = [1, 2, 3, 6, 7, 8, 10, 11, 12, 13];
        assert!(digits.iter().all(|&i| b[i].is_ascii_digit()), "{text}");

        let (text, finish) = generate(
            &model,
            "Write an arithmetic expression.",
            &sampled(seed, compiler.compile(&lark).unwrap()),
        );
        assert_ne!(finish, FinishReason::Length, "{text}");
        assert!(balanced_sum(&text), "not in the grammar: {text:?}");
    }
}

/// An independent recogniser for the Lark grammar above.
fn balanced_sum(text: &str) -> bool {
    fn sum(s: &[u8], i: &mut usize) -> bool {
        if !term(s, i) {
            return false;
        }
        while *i < s.len() && (s[*i] == b'+' || s[*i] == b'-') {
            *i += 1;
            if !term(s, i) {
                return false;
            }
        }
        true
    }
    fn term(s: &[u8], i: &mut usize) -> bool {
        if *i < s.len() && s[*i] == b'(' {
            *i += 1;
            if !sum(s, i) || *i >= s.len() || s[*i] != b')' {
                return false;
            }
            *i += 1;
            return true;
        }
        let start = *i;
        while *i < s.len() && s[*i].is_ascii_digit() {
            *i += 1;
        }
        (1..=3).contains(&(*i - start))
    }
    let s = text.as_bytes();
    let mut i = 0;
    sum(s, &mut i) && i == s.len()
}

#[test]
fn a_triggered_constraint_waits_for_its_trigger() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let tools = [ToolSpec {
        name: "f".into(),
        description: None,
        parameters: serde_json::json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}),
    }];
    let grammar = tool_call_grammar(&tools, false);
    let tok = &model.tokenizer;
    let feed = |text: &str| -> (Constraint, bool, bool) {
        let mut c = compiler
            .compile(&grammar)
            .unwrap()
            .triggered_by(["<tool_call>"]);
        let tokens = tok.encode(
            text,
            EncodeOptions {
                add_special: false,
                parse_special: false,
            },
        );
        let mut done = false;
        for i in 0..tokens.len() {
            done = c
                .accept(tokens[i], &tokens[..=i], &tok.token_bytes(tokens[i], false))
                .unwrap();
        }
        let active = c.is_active();
        (c, active, done)
    };
    // Free text: the constraint turns itself off and never masks.
    let (mut c, active, _) = feed("The weather is fine.");
    assert!(!active);
    let mut logits = vec![0.0f32; tok.n_vocab()];
    c.mask(&mut logits, false).unwrap();
    assert!(logits.iter().all(|l| *l == 0.0));

    // A call under way: the mask only allows what continues the schema.
    let (mut c, active, done) = feed("\n<tool_call>\n{\"name\": ");
    assert!(active && !done);
    let mut logits = vec![0.0f32; tok.n_vocab()];
    c.mask(&mut logits, false).unwrap();
    let allowed: Vec<String> = (0..tok.n_vocab() as u32)
        .filter(|&id| logits[id as usize] == 0.0)
        .map(|id| String::from_utf8_lossy(&tok.token_bytes(id, false)).into_owned())
        .collect();
    assert!(!allowed.is_empty());
    assert!(
        allowed.iter().all(|t| "\"f\"".starts_with(t.as_str())),
        "{allowed:?}"
    );

    // A whole call completes the grammar.
    let (_, active, done) =
        feed("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 3}}\n</tool_call>");
    assert!(active && done);
    // An argument of the wrong type is not allowed.
    let (mut c, active, _) = feed("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": ");
    assert!(active);
    let quote = tok.token_id("\"").unwrap();
    let mut logits = vec![0.0f32; tok.n_vocab()];
    c.mask(&mut logits, false).unwrap();
    assert_eq!(logits[quote as usize], f32::NEG_INFINITY);
}

#[test]
fn bad_grammars_are_refused_with_the_reason() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let cases = [
        (
            Grammar::JsonSchema(serde_json::json!({"type": "array", "uniqueItems": true})),
            "uniqueItems",
        ),
        (
            Grammar::JsonSchema(serde_json::json!({"type": "strin"})),
            "strin",
        ),
        (Grammar::Regex("(unclosed".into()), ""),
        (Grammar::Lark("start: missing_rule".into()), "missing_rule"),
    ];
    for (grammar, mention) in cases {
        match compiler.compile(&grammar) {
            Err(Error::InvalidGrammar(msg)) => {
                assert!(!msg.is_empty());
                assert!(msg.contains(mention), "{msg}");
            }
            Err(other) => panic!("{grammar:?}: {other}"),
            Ok(_) => panic!("{grammar:?} compiled"),
        }
    }
}

/// A string whose format cannot end yet (an e-mail before its `@`) is still closed within
/// the token budget: sampled at temperature 1.0, SmolLM2 writes local parts that run on;
/// with a tight `max_tokens` the last steps must finish the address and the object.
#[test]
fn an_unfinished_format_is_closed_within_the_budget() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let grammar = Grammar::JsonSchema(serde_json::json!({
        "type": "object",
        "properties": {
            "seat": {"type": "string", "pattern": "^[0-9]{1,2}[A-F]$"},
            "date": {"type": "string", "format": "date"},
            "email": {"type": "string", "format": "email"}
        },
        "required": ["seat", "date", "email"],
        "additionalProperties": false
    }));
    for seed in 0..12 {
        let mut params = sampled(seed, compiler.compile(&grammar).unwrap());
        params.max_tokens = 48;
        let (text, finish) = generate(&model, "Give a flight booking.", &params);
        assert_eq!(finish, FinishReason::EndOfGeneration, "seed {seed}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
        let email = v["email"].as_str().unwrap();
        let (local, domain) = email.split_once('@').unwrap_or_else(|| panic!("{text}"));
        assert!(!local.is_empty() && !domain.is_empty(), "{text}");
        let date = v["date"].as_str().unwrap().as_bytes();
        assert!(
            date.len() == 10 && date[4] == b'-' && date[7] == b'-',
            "{text}"
        );
    }
}

/// A long chain of rules, within the byte limit, compiles instead of overflowing the
/// stack (which aborted the process); past the limit a grammar is refused before any work.
#[test]
fn grammar_size_is_bounded_and_long_rule_chains_compile() {
    let model = smollm2();
    let compiler = GrammarCompiler::new(&model.tokenizer).unwrap();
    let chain = |n: usize| {
        let rules: String = (0..n)
            .map(|i| format!("r{i}: \"w{i:07}\" | r{}\n", i + 1))
            .collect();
        format!("start: r0\n{rules}r{n}: \"end\"\n")
    };
    let lark = chain(9000);
    assert!(lark.len() < symphony_engine::MAX_GRAMMAR_BYTES);
    compiler.compile(&Grammar::Lark(lark)).unwrap();
    let big = chain(120_000);
    let err = compiler
        .compile(&Grammar::Lark(big))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 262144"), "{err}");
    let properties: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| (format!("p{i:07}"), serde_json::json!({"type": "string"})))
        .collect();
    let schema = serde_json::json!({"type": "object", "properties": properties});
    let err = compiler
        .compile(&Grammar::JsonSchema(schema))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 262144"), "{err}");
}
