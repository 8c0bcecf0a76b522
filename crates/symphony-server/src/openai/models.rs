//! `GET /v1/models` and `GET /v1/models/{model}`: the store's models as OpenAI lists them.

use axum::extract::{Path, State};
use axum::Json;

use super::types::{ModelList, ModelObject};
use crate::error::ApiError;
use crate::SharedState;

pub async fn list_models(State(state): State<SharedState>) -> Result<Json<ModelList>, ApiError> {
    let models = state
        .registry
        .store()
        .list()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(ModelList {
        object: "list",
        data: models
            .iter()
            .map(|m| ModelObject::new(&m.name, m.imported_at))
            .collect(),
    }))
}

pub async fn get_model(
    State(state): State<SharedState>,
    Path(model): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let m = state.registry.manifest(&model)?;
    Ok(Json(ModelObject::new(&m.name, m.imported_at)))
}
