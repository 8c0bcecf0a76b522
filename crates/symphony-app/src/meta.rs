//! What the store records about a model file or checkpoint: learned by loading it, so that
//! nothing Symphony cannot run is ever stored.

use std::path::Path;

use symphony_models::embedding::{is_embedding_checkpoint, Embedder};
use symphony_models::{safetensors, Model};
use symphony_store::ModelMeta;

use crate::error::{Error, Result};

/// Loads the model at `path` and describes it; an error if it does not load.
pub fn model_meta(path: &Path) -> Result<ModelMeta> {
    let unloadable = |cause| Error::Unloadable {
        path: path.to_path_buf(),
        cause: Box::new(cause),
    };
    if is_embedding_checkpoint(path) {
        let embedder = Embedder::load(path).map_err(unloadable)?;
        return Ok(ModelMeta {
            format: "safetensors".into(),
            architecture: "bert".into(),
            quantization: "F32".into(),
            parameters: embedder.encoder.n_parameters(),
            context_length: embedder.max_seq_length,
            has_chat_template: false,
            embedding: true,
        });
    }
    let model = Model::load(path).map_err(unloadable)?;
    Ok(ModelMeta {
        format: if safetensors::is_checkpoint(path) {
            "safetensors"
        } else {
            "gguf"
        }
        .into(),
        architecture: model.info.architecture.clone(),
        quantization: model.info.quantization.clone(),
        parameters: model.info.n_parameters,
        context_length: model.info.context_length,
        has_chat_template: model.chat_template.is_some(),
        embedding: false,
    })
}
