//! Tokenization of the bundled SmolLM2 against llama.cpp (golden file written by
//! scripts/reference/make_golden.py): byte-exact ids, and decode gives the text back.

mod common;

use symphony_models::tokenizer::EncodeOptions;

#[test]
fn tokenizer_matches_llama_cpp_byte_exact() {
    let model = common::smollm2();
    let cases = common::golden("tokenizer.json");
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
        assert_eq!(
            model.tokenizer.decode(&ids, true),
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
