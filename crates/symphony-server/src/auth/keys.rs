//! API keys: made by `symphony keys`, stored only as SHA-256 hashes in a JSON file that a
//! running server rereads when it changes, compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Limits, Role};
use crate::util::{hex, unix_now};

/// One API key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub name: String,
    /// `sha256:` and the hex digest of the key.
    pub hash: String,
    pub role: Role,
    #[serde(flatten)]
    pub limits: Limits,
    pub created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFileBody {
    keys: Vec<StoredKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid key file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("a key named '{0}' exists already")]
    Exists(String),
    #[error("no key named '{0}'")]
    Missing(String),
    #[error("key names are 1-64 letters, digits, '-', '_' or '.'; got '{0}'")]
    BadName(String),
}

type FileStamp = (SystemTime, u64, u64);

/// The API keys file (JSON), reread when it changes on disk so that keys made or revoked by
/// `symphony keys` apply to a running server.
pub struct KeyFile {
    path: PathBuf,
    /// The file's identity when last read, and its keys.
    cache: RwLock<(Option<FileStamp>, Vec<StoredKey>)>,
}

impl KeyFile {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, KeyFileError> {
        let file = Self {
            path: path.into(),
            cache: RwLock::new((None, Vec::new())),
        };
        file.refresh()?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn modified(&self) -> Option<FileStamp> {
        let m = std::fs::metadata(&self.path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        // Updates replace the file (a new inode), so a change within the clock's granularity
        // is still seen.
        Some((m.modified().ok()?, m.len(), inode))
    }

    fn read(path: &Path) -> Result<Vec<StoredKey>, KeyFileError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<KeyFileBody>(&bytes)
                .map(|b| b.keys)
                .map_err(|source| KeyFileError::Parse {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(KeyFileError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Rereads the file if it changed.
    fn refresh(&self) -> Result<(), KeyFileError> {
        let modified = self.modified();
        if self.cache.read().unwrap_or_else(PoisonError::into_inner).0 == modified
            && modified.is_some()
        {
            return Ok(());
        }
        let keys = Self::read(&self.path)?;
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = (modified, keys);
        Ok(())
    }

    pub fn list(&self) -> Vec<StoredKey> {
        // A file broken while the server runs keeps the last good keys.
        let _ = self.refresh();
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    pub(super) fn find(&self, key: &str) -> Option<StoredKey> {
        let hash = hash_key(key);
        // A file broken while the server runs keeps the last good keys.
        let _ = self.refresh();
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .iter()
            .find(|k| bool::from(k.hash.as_bytes().ct_eq(hash.as_bytes())))
            .cloned()
    }

    /// Makes a key, stores its hash, and returns the key (shown once, never stored).
    pub fn create(&self, name: &str, role: Role, limits: Limits) -> Result<String, KeyFileError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(KeyFileError::BadName(name.into()));
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| KeyFileError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let key = format!("sk-sym-{}", hex(&bytes));
        self.update(|keys| {
            if keys.iter().any(|k| k.name == name) {
                return Err(KeyFileError::Exists(name.into()));
            }
            keys.push(StoredKey {
                name: name.into(),
                hash: hash_key(&key),
                role,
                limits,
                created_at: unix_now(),
            });
            Ok(())
        })?;
        Ok(key)
    }

    pub fn revoke(&self, name: &str) -> Result<(), KeyFileError> {
        self.update(|keys| {
            let before = keys.len();
            keys.retain(|k| k.name != name);
            if keys.len() == before {
                return Err(KeyFileError::Missing(name.into()));
            }
            Ok(())
        })
    }

    /// Read-modify-write under the write lock, replacing the file atomically (a crash leaves
    /// the old file or the new one, never half of one).
    fn update(
        &self,
        change: impl FnOnce(&mut Vec<StoredKey>) -> Result<(), KeyFileError>,
    ) -> Result<(), KeyFileError> {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        let mut keys = Self::read(&self.path)?;
        change(&mut keys)?;
        let io = |source| KeyFileError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body =
            serde_json::to_vec_pretty(&KeyFileBody { keys: keys.clone() }).expect("keys serialise");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        *cache = (self.modified(), keys);
        Ok(())
    }
}

pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;

    #[tokio::test]
    async fn key_file_stores_hashes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let file = KeyFile::open(&path).unwrap();
        let key = file
            .create(
                "alice",
                Role::User,
                Limits {
                    rpm: Some(3),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert!(key.starts_with("sk-sym-"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&key), "the key itself must not be stored");
        assert!(text.contains(&hash_key(&key)));
        assert!(matches!(
            file.create("alice", Role::User, Limits::default()),
            Err(KeyFileError::Exists(_))
        ));
        let reopened = KeyFile::open(&path).unwrap();
        let auth = Auth::Enabled {
            keys: Some(reopened),
            jwt: None,
        };
        let p = auth.authenticate(Some(&key)).await.unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, p.limits.rpm),
            ("alice", Role::User, Some(3))
        );
        assert!(auth.authenticate(Some("sk-sym-wrong")).await.is_err());
        assert!(auth.authenticate(None).await.is_err());
        file.revoke("alice").unwrap();
        assert!(
            auth.authenticate(Some(&key)).await.is_err(),
            "revocation is seen by readers"
        );
    }
}
