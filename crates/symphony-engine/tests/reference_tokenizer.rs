//! Tokenization of the packaged models against llama.cpp (golden files written by
//! scripts/reference/make_golden.py): byte-exact ids, and decode gives the text back.
//! Byte-level BPE (SmolLM2, Qwen2.5) and SentencePiece (Gemma 3).

mod common;

use common::TestModel;
use symphony_models::tokenizer::EncodeOptions;

#[test]
fn smollm2_tokenizer_matches_llama_cpp_byte_exact() {
    tokenizer_matches_llama_cpp_byte_exact(&common::SMOLLM2);
}

#[test]
fn qwen2_5_tokenizer_matches_llama_cpp_byte_exact() {
    tokenizer_matches_llama_cpp_byte_exact(&common::QWEN2_5_CODER_0_5B);
}

#[test]
fn gemma3_tokenizer_matches_llama_cpp_byte_exact() {
    tokenizer_matches_llama_cpp_byte_exact(&common::GEMMA3_270M);
}

fn tokenizer_matches_llama_cpp_byte_exact(test_model: &TestModel) {
    let model = test_model.model();
    let cases = test_model.golden("tokenizer.json");
    let cases = cases.as_array().unwrap();
    assert!(
        cases.len() >= 200,
        "the golden file must hold at least 200 strings"
    );
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        for (options, key) in [
            (EncodeOptions::TEMPLATE, "ids_special"),
            (EncodeOptions::PLAIN, "ids_plain"),
        ] {
            let expected = common::ids(&case[key]);
            let ours = model.tokenizer.encode(text, options);
            if ours != expected {
                failures.push(format!(
                    "{key} {text:?}\n  llama.cpp: {expected:?}\n  ours:      {ours:?}"
                ));
            }
        }
        // Decoding gives back exactly the bytes that went in.
        let ids = model.tokenizer.encode(text, EncodeOptions::TEMPLATE);
        // (Less the BOS the model's metadata asks encode to add.)
        let ids = match ids.split_first() {
            Some((&first, rest))
                if model.tokenizer.add_bos && Some(first) == model.tokenizer.bos =>
            {
                rest
            }
            _ => &ids[..],
        };
        assert_eq!(
            model.tokenizer.decode(ids, true),
            text,
            "round trip of {text:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} encodings differ:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}
