//! What constrained decoding costs per token: the time to compute a JSON Schema's token mask
//! and to advance the matcher, over a realistic reply, for one model's vocabulary. Compare
//! with the model's decode time per token (`symphony bench`).
//!
//!   cargo run --release -p symphony-engine --example mask_cost -- MODEL.gguf

use std::time::{Duration, Instant};

use symphony_engine::{Grammar, GrammarCompiler};
use symphony_models::tokenizer::EncodeOptions;
use symphony_models::Model;

const SCHEMA: &str = r#"{"type": "object", "properties": {
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "product": {"type": "string"}, "quantity": {"type": "integer"},
        "unit_price": {"type": "number"}}, "required": ["product", "quantity", "unit_price"]}},
    "paid": {"type": "boolean"}}, "required": ["items", "paid"]}"#;

const REPLY: &str = r#"{"items":[{"product":"Organic whole milk, 1 litre","quantity":2,"unit_price":1.29},{"product":"Sourdough bread","quantity":1,"unit_price":3.5},{"product":"Free-range eggs (dozen)","quantity":1,"unit_price":4.25}],"paid":true}"#;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: mask_cost MODEL.gguf");
    let model = Model::load(std::path::Path::new(&path)).expect("the model loads");
    let start = Instant::now();
    let compiler = GrammarCompiler::new(&model.tokenizer).expect("the vocabulary indexes");
    println!("vocabulary index: {:?} (once per model)", start.elapsed());
    let schema = serde_json::from_str(SCHEMA).expect("valid JSON");
    let start = Instant::now();
    let mut constraint = compiler
        .compile(&Grammar::JsonSchema(schema))
        .expect("compiles");
    println!("schema compile: {:?} (once per request)", start.elapsed());

    let plain = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    let tokens = model.tokenizer.encode(REPLY, plain);
    let mut logits = vec![0.0f32; model.tokenizer.n_vocab()];
    let (mut mask, mut accept) = (Duration::ZERO, Duration::ZERO);
    for (i, &token) in tokens.iter().enumerate() {
        logits.fill(0.0);
        let start = Instant::now();
        constraint.mask(&mut logits, false).expect("a mask");
        mask += start.elapsed();
        assert_eq!(
            logits[token as usize], 0.0,
            "token {i} of the reply is allowed"
        );
        let bytes = model.tokenizer.token_bytes(token, false);
        let start = Instant::now();
        constraint
            .accept(token, &tokens[..=i], &bytes)
            .expect("accepted");
        accept += start.elapsed();
    }
    let n = tokens.len() as u32;
    println!(
        "{} tokens, vocabulary {}: mask {:?} per token, advance {:?} per token",
        n,
        model.tokenizer.n_vocab(),
        mask / n,
        accept / n
    );
}
