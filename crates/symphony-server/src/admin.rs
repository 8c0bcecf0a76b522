//! Admin routes: API keys made, listed and revoked over HTTP (the same key file
//! `symphony keys` edits).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Auth, KeyFile, Limits, Role};
use crate::error::{ApiError, JsonBody};
use crate::SharedState;

fn key_file(state: &SharedState) -> Result<&KeyFile, ApiError> {
    match &state.auth {
        Auth::Enabled { keys: Some(k), .. } => Ok(k),
        _ => Err(ApiError::bad_request(
            "this server has no API key file (start it with --api-keys FILE)",
        )),
    }
}

pub async fn list_keys(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let keys = key_file(&state)?.list();
    Ok(Json(json!({
        "keys": keys.iter().map(|k| json!({
            "name": k.name, "role": k.role, "rpm": k.limits.rpm, "tpm": k.limits.tpm,
            "token_quota": k.limits.token_quota, "created_at": k.created_at,
        })).collect::<Vec<_>>(),
    })))
}

/// A key to make. Unknown fields are refused: a misspelt limit (`quota` for `token_quota`,
/// say) would otherwise make a key without that limit, silently.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    role: Role,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
    /// `quota` too, as `symphony keys create --quota` calls it.
    #[serde(default, alias = "quota")]
    token_quota: Option<u64>,
}

/// Makes a key; the reply is the only time the key itself is shown.
pub async fn create_key(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<NewKey>,
) -> Result<Json<Value>, ApiError> {
    let key = key_file(&state)?.create(
        &req.name,
        req.role,
        Limits {
            rpm: req.rpm,
            tpm: req.tpm,
            token_quota: req.token_quota,
        },
    )?;
    Ok(Json(
        json!({"name": req.name, "role": req.role, "key": key}),
    ))
}

pub async fn revoke_key(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    key_file(&state)?.revoke(&name)?;
    Ok(Json(json!({"name": name, "revoked": true})))
}
