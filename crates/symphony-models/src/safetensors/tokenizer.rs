//! `tokenizer.json` (with `tokenizer_config.json` and `config.json`) to the `tokenizer.*`
//! GGUF keys: the vocabulary, its merges or scores, special tokens and the chat template.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::json::read_json;
use crate::error::{Error, Result};
use crate::gguf::MetadataValue;
use crate::tokenizer::{SpacePrefix, SPACE_PREFIX_KEY};

/// How a `tokenizer.json` BPE vocabulary spells text, and so which of our tokenizer models
/// reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VocabStyle {
    /// Bytes mapped to printable characters, regex pre-tokenizer (GPT-2, Llama 3, Qwen2).
    ByteLevel,
    /// SentencePiece converted to BPE: spaces as `▁`, unknown characters as `<0xNN>` byte
    /// tokens (Llama 2, Mistral, Phi-3, Gemma).
    SentencePiece(SpacePrefix),
}

fn vocab_style(json: &Value) -> std::result::Result<VocabStyle, String> {
    let model = &json["model"];
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(String::from);
    if kind(model).as_deref() != Some("BPE") {
        return Err(format!(
            "only BPE tokenizers are supported yet (this one is {})",
            kind(model).unwrap_or_else(|| "untyped".into())
        ));
    }
    let decoder = &json["decoder"];
    let steps = |v: &Value, list: &str| -> Vec<Value> {
        match v.get(list).and_then(Value::as_array) {
            Some(items) => items.clone(),
            None if v.is_null() => Vec::new(),
            None => vec![v.clone()],
        }
    };
    if kind(decoder).as_deref() == Some("ByteLevel") {
        return Ok(VocabStyle::ByteLevel);
    }
    let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
    let pre = steps(&json["pre_tokenizer"], "pretokenizers");
    let normalizers = steps(&json["normalizer"], "normalizers");
    let metaspace = pre.iter().find(|p| kind(p).as_deref() == Some("Metaspace"));
    let replaces_spaces = normalizers.iter().any(|n| {
        kind(n).as_deref() == Some("Replace")
            && n["pattern"]["String"].as_str() == Some(" ")
            && n["content"].as_str() == Some(SPM_SPACE)
    });
    let prepends = normalizers
        .iter()
        .any(|n| kind(n).as_deref() == Some("Prepend") && n["prepend"].as_str() == Some(SPM_SPACE));
    if !(byte_fallback || metaspace.is_some() || replaces_spaces) {
        return Err("this BPE tokenizer is neither byte-level nor SentencePiece-style".into());
    }
    let prefix = match metaspace {
        Some(m) => match m.get("prepend_scheme").and_then(Value::as_str) {
            Some("first") => SpacePrefix::InputStart,
            Some("never") => SpacePrefix::Never,
            Some(_) => SpacePrefix::EveryRun,
            None if m.get("add_prefix_space").and_then(Value::as_bool) == Some(false) => {
                SpacePrefix::Never
            }
            None => SpacePrefix::EveryRun,
        },
        // The older form: `Prepend("▁")` and `Replace(" ", "▁")` normalizers, applied to every
        // run of text between added tokens.
        None if prepends => SpacePrefix::EveryRun,
        None => SpacePrefix::Never,
    };
    Ok(VocabStyle::SentencePiece(prefix))
}

const SPM_SPACE: &str = "\u{2581}";

/// The `tokenizer.*` keys from `tokenizer.json`, `tokenizer_config.json` and `config.json`.
/// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and SentencePiece-style BPE (Llama 2,
/// Mistral, Phi-3, Gemma) vocabularies are supported. The pieces run in a fixed order, so
/// the first problem found is the one reported.
pub(super) fn tokenizer_metadata(
    dir: &Path,
    config: &Value,
    n_vocab: usize,
    m: &mut BTreeMap<String, MetadataValue>,
) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let invalid = |message: String| Error::InvalidMetadata {
        path: path.clone(),
        message,
    };
    let style = vocab_style(&json).map_err(invalid)?;
    let vocab = Vocabulary::read(&json, style, n_vocab).map_err(invalid)?;
    let merges = merges(&json["model"]).map_err(invalid)?;
    match style {
        VocabStyle::ByteLevel => byte_level_keys(&json, &merges, m).map_err(invalid)?,
        VocabStyle::SentencePiece(prefix) => sentence_piece_keys(&vocab, &merges, prefix, m),
    }
    let Vocabulary {
        token_texts,
        kinds,
        vocab,
        special_text,
        ..
    } = vocab;
    m.insert(
        "tokenizer.ggml.tokens".into(),
        MetadataValue::Array(token_texts.into_iter().map(MetadataValue::String).collect()),
    );
    m.insert(
        "tokenizer.ggml.token_type".into(),
        MetadataValue::Array(kinds.into_iter().map(MetadataValue::I32).collect()),
    );
    special_token_keys(dir, config, &json, vocab, &special_text, m)
}

/// A `tokenizer.json` vocabulary laid out by id: every token's text and ggml token type
/// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
struct Vocabulary<'a> {
    token_texts: Vec<String>,
    kinds: Vec<i32>,
    /// `model.vocab`, text to id.
    vocab: &'a serde_json::Map<String, Value>,
    /// The added tokens, text to id.
    special_text: BTreeMap<String, u64>,
    unk: Option<&'a str>,
}

impl<'a> Vocabulary<'a> {
    fn read(
        json: &'a Value,
        style: VocabStyle,
        n_vocab: usize,
    ) -> std::result::Result<Self, String> {
        let model = &json["model"];
        let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
        let mut kinds = vec![1i32; n_vocab]; // normal
        let mut place = |text: &str, id: u64, kind: i32| -> std::result::Result<(), String> {
            let slot = tokens
                .get_mut(id as usize)
                .ok_or_else(|| format!("token '{text}' has id {id}, past vocab_size {n_vocab}"))?;
            *slot = Some(text.to_string());
            kinds[id as usize] = kind;
            Ok(())
        };
        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| "'model.vocab' is missing".to_string())?;
        let unk = model.get("unk_token").and_then(Value::as_str);
        for (text, id) in vocab {
            let kind = match style {
                _ if Some(text.as_str()) == unk => 2,
                VocabStyle::SentencePiece(_) if is_byte_token(text) => 6,
                _ => 1,
            };
            place(text, id.as_u64().unwrap_or(u64::MAX), kind)?;
        }
        let mut special_text = BTreeMap::new();
        for added in json
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(text), Some(id)) = (
                added.get("content").and_then(Value::as_str),
                added.get("id").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let special = added
                .get("special")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let kind = match () {
                _ if Some(text) == unk => 2,
                _ if special => 3,
                _ => 4,
            };
            place(text, id, kind)?;
            special_text.insert(text.to_string(), id);
        }
        // Ids the tokenizer leaves unused up to the embedding size become padding, as in
        // llama.cpp's converter.
        let token_texts: Vec<String> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.unwrap_or_else(|| {
                    kinds[i] = 5;
                    format!("[PAD{i}]")
                })
            })
            .collect();
        Ok(Self {
            token_texts,
            kinds,
            vocab,
            special_text,
            unk,
        })
    }
}

/// `model.merges`, in either spelling: `"a b"` or `["a", "b"]`.
fn merges(model: &Value) -> std::result::Result<Vec<(String, String)>, String> {
    model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| "'model.merges' is missing".to_string())?
        .iter()
        .map(|merge| match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| "a merge is neither \"a b\" nor [\"a\", \"b\"]".to_string())
}

fn str_value(s: &str) -> MetadataValue {
    MetadataValue::String(s.to_string())
}

/// A byte-level vocabulary's keys: the `gpt2` model, its pre-tokenizer and its merges.
fn byte_level_keys(
    json: &Value,
    merges: &[(String, String)],
    m: &mut BTreeMap<String, MetadataValue>,
) -> std::result::Result<(), String> {
    let pre = pre_tokenizer_name(json.get("pre_tokenizer"))?;
    m.insert("tokenizer.ggml.model".into(), str_value("gpt2"));
    m.insert("tokenizer.ggml.pre".into(), str_value(pre));
    m.insert(
        "tokenizer.ggml.merges".into(),
        MetadataValue::Array(
            merges
                .iter()
                .map(|(a, b)| MetadataValue::String(format!("{a} {b}")))
                .collect(),
        ),
    );
    Ok(())
}

/// A SentencePiece-style vocabulary's keys: the `llama` model with scores from the merge
/// ranks, the unknown token and the space-prefix rule.
fn sentence_piece_keys(
    vocab: &Vocabulary,
    merges: &[(String, String)],
    prefix: SpacePrefix,
    m: &mut BTreeMap<String, MetadataValue>,
) {
    let token_texts = &vocab.token_texts;
    // SentencePiece merges the pair whose result scores highest; BPE applies the
    // lowest-ranked merge first. A token scores minus the rank of the first merge
    // that makes it (converted vocabularies list every split of a piece together,
    // in the piece's order), so both pick the same pair.
    let mut scores = vec![-1e9f32; token_texts.len()];
    let ids: std::collections::HashMap<&str, usize> = token_texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    for (rank, (a, b)) in merges.iter().enumerate().rev() {
        if let Some(&id) = ids.get(format!("{a}{b}").as_str()) {
            scores[id] = -(rank as f32);
        }
    }
    m.insert("tokenizer.ggml.model".into(), str_value("llama"));
    m.insert(
        "tokenizer.ggml.scores".into(),
        MetadataValue::Array(scores.into_iter().map(MetadataValue::F32).collect()),
    );
    if let Some(id) = vocab.unk.and_then(|u| ids.get(u)) {
        m.insert(
            "tokenizer.ggml.unknown_token_id".into(),
            MetadataValue::U32(*id as u32),
        );
    }
    m.insert(
        "tokenizer.ggml.add_space_prefix".into(),
        MetadataValue::Bool(prefix != SpacePrefix::Never),
    );
    if prefix == SpacePrefix::InputStart {
        m.insert(SPACE_PREFIX_KEY.into(), str_value("input_start"));
    }
}

/// BOS, EOS, whether BOS is added, and the chat template, from `tokenizer_config.json`
/// where it says, else `config.json` and the post-processor.
fn special_token_keys(
    dir: &Path,
    config: &Value,
    json: &Value,
    vocab: &serde_json::Map<String, Value>,
    special_text: &BTreeMap<String, u64>,
    m: &mut BTreeMap<String, MetadataValue>,
) -> Result<()> {
    let tokenizer_config = dir.join("tokenizer_config.json");
    let tc = if tokenizer_config.is_file() {
        read_json(&tokenizer_config)?
    } else {
        Value::Null
    };
    // A special token named by text in tokenizer_config.json, else by id in config.json.
    let token_id = |key: &str| -> Option<u64> {
        let text = match tc.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(v) => v.get("content").and_then(Value::as_str),
            None => None,
        };
        match text {
            Some(t) => special_text
                .get(t)
                .copied()
                .or_else(|| vocab.get(t)?.as_u64()),
            None if tc.get(key).is_some_and(Value::is_null) => None,
            None => config.get(format!("{key}_id")).and_then(|v| match v {
                Value::Array(a) => a.first()?.as_u64(),
                v => v.as_u64(),
            }),
        }
    };
    let bos = token_id("bos_token");
    if let Some(id) = bos {
        m.insert(
            "tokenizer.ggml.bos_token_id".into(),
            MetadataValue::U32(id as u32),
        );
    }
    if let Some(id) = token_id("eos_token") {
        m.insert(
            "tokenizer.ggml.eos_token_id".into(),
            MetadataValue::U32(id as u32),
        );
    }
    // BOS as tokenizer_config.json says, else as the post-processor's template adds it.
    let template_adds_bos = json["post_processor"]["single"]
        .as_array()
        .and_then(|steps| steps.first())
        .and_then(|first| first["SpecialToken"]["id"].as_str())
        .is_some_and(|text| bos.is_some() && special_text.get(text).copied() == bos);
    m.insert(
        "tokenizer.ggml.add_bos_token".into(),
        MetadataValue::Bool(
            tc.get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(template_adds_bos),
        ),
    );
    let template = match tc.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    if let Some(template) = template {
        m.insert(
            "tokenizer.chat_template".into(),
            MetadataValue::String(template),
        );
    }
    Ok(())
}

/// `<0x0A>`: SentencePiece's byte-fallback tokens.
fn is_byte_token(text: &str) -> bool {
    text.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && u8::from_str_radix(&text[3..5], 16).is_ok()
}

/// llama.cpp's pre-tokenizer name for a `tokenizer.json` pre-tokenizer, recognised by its
/// structure (llama.cpp recognises a vocabulary by hashing its output instead).
fn pre_tokenizer_name(pre: Option<&Value>) -> std::result::Result<&'static str, String> {
    let Some(pre) = pre else {
        return Err("the tokenizer has no pre-tokenizer".into());
    };
    let steps: Vec<&Value> = match pre.get("type").and_then(Value::as_str) {
        Some("Sequence") => pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![pre],
    };
    fn kind(v: &Value) -> &str {
        v.get("type").and_then(Value::as_str).unwrap_or("?")
    }
    fn split_regex(v: &Value) -> Option<&str> {
        (kind(v) == "Split")
            .then(|| v.get("pattern")?.get("Regex")?.as_str())
            .flatten()
    }
    let byte_level_regex = |v: &Value| {
        kind(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true)
    };
    match steps.as_slice() {
        [b] if byte_level_regex(b) => Ok("gpt2"),
        [d, b] if kind(d) == "Digits" && byte_level_regex(b) => Ok("smollm"),
        [s, b] if kind(b) == "ByteLevel" => match split_regex(s) {
            Some(r) if r.contains(r"\p{N}{1,3}") => Ok("llama3"),
            Some(r) if r.contains(r"\p{N}|") && r.contains(r"[^\r\n\p{L}\p{N}]?\p{L}+") => {
                Ok("qwen2")
            }
            _ => Err(format!(
                "pre-tokenizer regex {:?} is not one Symphony knows",
                split_regex(s)
            )),
        },
        _ => Err(format!(
            "pre-tokenizer {} is not one Symphony knows",
            steps
                .iter()
                .map(|s| kind(s))
                .collect::<Vec<_>>()
                .join(" + ")
        )),
    }
}
