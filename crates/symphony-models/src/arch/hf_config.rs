//! A Hugging Face `config.json` as the architecture files read it: look-ups of its values,
//! and the `{arch}.*` GGUF keys written from them. The keys every decoder shares are written
//! by the checkpoint reader (`safetensors/`); each architecture's `hf_config` adds its own.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::gguf::MetadataValue;

/// `config.json` being turned into GGUF metadata for the architecture `arch`.
#[derive(Debug)]
pub struct HfConfig<'a> {
    json: &'a Value,
    arch: &'static str,
    keys: BTreeMap<String, MetadataValue>,
}

impl<'a> HfConfig<'a> {
    pub fn new(json: &'a Value, arch: &'static str) -> Self {
        Self {
            json,
            arch,
            keys: BTreeMap::new(),
        }
    }

    /// The whole `config.json`, for values the look-ups below do not cover.
    pub fn json(&self) -> &'a Value {
        self.json
    }

    pub fn uint(&self, key: &str) -> Option<u64> {
        self.json.get(key).and_then(Value::as_u64)
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        self.json.get(key).and_then(Value::as_f64)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.json.get(key).and_then(Value::as_bool)
    }

    /// A key the architecture cannot do without.
    pub fn need(&self, key: &str) -> Result<u64, String> {
        self.uint(key)
            .ok_or_else(|| format!("'{key}' is missing or not a non-negative integer"))
    }

    /// The rotary settings of layers of `layer_type`: transformers 5 writes
    /// `rope_parameters`, per layer type where they differ (Gemma 3), else one set for all.
    pub fn rope_params(&self, layer_type: &str) -> Option<&'a Value> {
        let params = self.json.get("rope_parameters")?;
        match params.get(layer_type) {
            Some(of_type) => Some(of_type),
            None => Some(params),
        }
    }

    /// Writes `{arch}.{key}`.
    pub fn put(&mut self, key: &str, value: MetadataValue) {
        self.keys.insert(format!("{}.{key}", self.arch), value);
    }

    /// The value already written to `{arch}.{key}`, e.g. the head size the shared keys chose.
    pub fn written_u64(&self, key: &str) -> Option<u64> {
        self.keys
            .get(&format!("{}.{key}", self.arch))
            .and_then(MetadataValue::as_u64)
    }

    pub fn into_metadata(self) -> BTreeMap<String, MetadataValue> {
        self.keys
    }
}
