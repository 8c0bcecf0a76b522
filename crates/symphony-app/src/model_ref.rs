//! What a model reference names. The command line accepts a store name (`smollm2`,
//! `qwen2.5-coder:0.5b`), a `.gguf` file or checkpoint directory on disk, or
//! `hf:ORG/REPO[:FILE]` (what was pulled from there); store names are derived from free text
//! here too.

use std::fmt;
use std::path::{Path, PathBuf};

use symphony_models::safetensors;
use symphony_store::hub::HubRef;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A model file or checkpoint directory on this machine.
    Path(PathBuf),
    /// A Hugging Face Hub repository (and file): the model pulled from there.
    Hub(HubRef),
    /// A name in the store, `name` or `name:tag`.
    Stored(String),
}

impl ModelRef {
    /// The command line's rules: an existing file or checkpoint directory is a path (it wins
    /// over a store name spelled the same); `hf:` starts a hub reference; anything else is
    /// a store name (checked when it is looked up).
    pub fn parse(spec: &str) -> Result<Self> {
        let as_path = Path::new(spec);
        if as_path.is_file() || safetensors::is_checkpoint(as_path) {
            return Ok(Self::Path(as_path.to_path_buf()));
        }
        Self::parse_name(spec)
    }

    /// For a reference that comes from elsewhere (an HTTP request): never a path on this
    /// machine, so a client cannot open, or learn about, the server's files.
    pub fn parse_name(spec: &str) -> Result<Self> {
        if spec.starts_with("hf:") {
            return Ok(Self::Hub(HubRef::parse(spec)?));
        }
        Ok(Self::Stored(spec.to_string()))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Hub(h) => f.write_str(&h.display()),
            Self::Stored(name) => f.write_str(name),
        }
    }
}

/// A store name from free text (a file stem, a repository name): lowercased, other
/// characters as '-'. `SmolLM2-135M-Instruct.Q4_1` → `smollm2-135m-instruct.q4_1`.
pub fn name_from_stem(stem: &str) -> String {
    let name: String = stem
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_start_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hub_references_and_paths() {
        assert_eq!(
            ModelRef::parse("smollm2:latest").unwrap(),
            ModelRef::Stored("smollm2:latest".into())
        );
        assert!(matches!(
            ModelRef::parse("hf:org/repo:file.gguf").unwrap(),
            ModelRef::Hub(HubRef { ref repo, .. }) if repo == "org/repo"
        ));
        assert!(ModelRef::parse("hf:not a repo").is_err());
        let file = tempfile::NamedTempFile::new().unwrap();
        let spec = file.path().to_str().unwrap();
        assert_eq!(
            ModelRef::parse(spec).unwrap(),
            ModelRef::Path(file.path().to_path_buf())
        );
        // From a request, a path is only a name (which the store will not have).
        assert_eq!(
            ModelRef::parse_name(spec).unwrap(),
            ModelRef::Stored(spec.into())
        );
    }

    #[test]
    fn store_names_from_free_text() {
        assert_eq!(
            name_from_stem("SmolLM2-135M-Instruct.Q4_1"),
            "smollm2-135m-instruct.q4_1"
        );
        assert_eq!(name_from_stem(".Hidden File"), "hidden-file");
    }
}
