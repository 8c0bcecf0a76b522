//! What Ollama's endpoints share on the way in: bodies read as JSON whatever their content
//! type, `options` with Ollama's defaults, and `keep_alive`.

use std::time::Duration;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use symphony_engine::sampling::SamplingParams;
use symphony_engine::GenerationParams;

use crate::error::{ApiError, OllamaError};
use crate::generation::Loaded;
use crate::util::{parse_duration, random_seed, seconds, MAX_DURATION};

/// Ollama clients (and `curl -d`) often send JSON without a JSON content type: parse the
/// body as JSON whatever its type, as Ollama does.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, OllamaError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")).ollama())
}

/// Ollama's `options`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::Options)]
pub struct Options {
    temperature: Option<f32>,
    top_k: Option<i64>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    seed: Option<i64>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i64>,
}

impl Options {
    /// Generation settings with Ollama's defaults for what is not given.
    pub(super) fn params(
        self,
        model: &Loaded,
        prompt_len: usize,
    ) -> Result<GenerationParams, ApiError> {
        let room = model.model().context_length().saturating_sub(prompt_len);
        let max_tokens = match self.num_predict {
            Some(n) if n >= 0 => (n as usize).min(room),
            // -1: until the model stops; -2: fill the context. Both end at the context.
            _ => room,
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(0.8),
            top_k: self.top_k.map_or(40, |k| k.max(0) as usize),
            top_p: self.top_p.unwrap_or(0.9),
            min_p: self.min_p.unwrap_or(0.0),
            repetition_penalty: self.repeat_penalty.unwrap_or(1.1),
            repeat_last_n: self.repeat_last_n.map_or(64, |n| match n {
                -1 => model.model().context_length(),
                n => n.max(0) as usize,
            }),
            seed: self
                .seed
                .filter(|&s| s >= 0)
                .map_or_else(random_seed, |s| s as u64),
        };
        sampling.validate().map_err(ApiError::bad_request)?;
        Ok(GenerationParams {
            max_tokens,
            sampling,
            stop: self.stop.unwrap_or_default(),
            ignore_eos: false,
            constraint: None,
        })
    }
}

/// Ollama's `keep_alive`: seconds as a number, or a duration string ("5m", "1h30m", "-1").
/// A negative value means "forever", mapped to the longest duration Symphony keeps; a
/// positive one beyond that, infinity or NaN is the client's error (400), never a clock
/// overflow later.
pub(crate) fn keep_alive(v: &Option<Value>) -> Result<Option<Duration>, ApiError> {
    let bad =
        |why: String| ApiError::invalid_param("keep_alive", format!("invalid keep_alive: {why}"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().ok_or_else(|| bad(n.to_string()))?;
            if secs < 0.0 {
                return Ok(Some(MAX_DURATION));
            }
            seconds(secs)
                .map(Some)
                .map_err(|_| bad(format!("{n} seconds; at most 100 years")))
        }
        Some(Value::String(s)) if s.trim().starts_with('-') => Ok(Some(MAX_DURATION)),
        Some(Value::String(s)) => parse_duration(s).map(Some).map_err(|e| bad(e.to_string())),
        Some(other) => Err(bad(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_accepts_ollama_spellings() {
        let k = |v: Value| keep_alive(&Some(v)).unwrap();
        assert_eq!(k(json!("5m")), Some(Duration::from_secs(300)));
        assert_eq!(k(json!("1h30m")), Some(Duration::from_secs(5400)));
        assert_eq!(k(json!("250ms")), Some(Duration::from_millis(250)));
        assert_eq!(k(json!(0)), Some(Duration::ZERO));
        assert_eq!(k(json!("10")), Some(Duration::from_secs(10)));
        assert!(k(json!(-1)).unwrap() > Duration::from_secs(1 << 30));
        assert!(keep_alive(&Some(json!("5 parsecs"))).is_err());
        for hostile in [
            json!(1.8e19),
            json!(1e300),
            json!("1e300"),
            json!("inf"),
            json!("NaN"),
        ] {
            let e = keep_alive(&Some(hostile.clone())).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{hostile}");
            assert!(e.message.contains("keep_alive"), "{}", e.message);
        }
    }
}
