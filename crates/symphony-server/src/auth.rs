//! Who may call what: API keys (stored only as SHA-256 hashes) and HS256 JWT bearer tokens,
//! each carrying a role, checked on every route.
//!
//! Roles nest: `reader` lists and shows models; `user` also runs inference; `admin` also
//! manages models and keys.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::util::{hex, unix_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    User,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}' (reader, user or admin)")),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// Per-key limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + generated) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens in all, ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_quota: Option<u64>,
}

/// The caller of a request, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name or the token's `sub`; rate limits and quotas are counted per name.
    pub name: String,
    pub role: Role,
    pub limits: Limits,
}

impl Principal {
    /// The caller when the server runs with `--no-auth`.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
            limits: Limits::default(),
        }
    }
}

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

/// Why a caller is not let in (a 401 at the HTTP boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <API key or JWT>`")]
    Missing,
    #[error("this server accepts no JWTs")]
    NoJwts,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid API key")]
    InvalidKey,
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

    fn find(&self, key: &str) -> Option<StoredKey> {
        let hash = hash_key(key);
        // A file broken while the server runs keeps the last good keys.
        let _ = self.refresh();
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .iter()
            .find(|k| constant_time_eq(k.hash.as_bytes(), hash.as_bytes()))
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The claims Symphony reads from a JWT.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: Option<u64>,
    nbf: Option<u64>,
    #[serde(flatten)]
    limits: Limits,
}

/// Verifies an HS256 JWT and returns its principal. Only HS256 is accepted (never `none`);
/// `exp` and `nbf` are checked when present, and with `require_exp` a token without `exp`
/// (one that would never expire) is refused.
pub fn verify_jwt(
    token: &str,
    secret: &[u8],
    now: u64,
    require_exp: bool,
) -> Result<Principal, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a JWT has three dot-separated parts".into());
    };
    let header: serde_json::Value = b64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .ok_or("the JWT header is not base64url JSON")?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err("only HS256 tokens are accepted".into());
    }
    let signature = b64
        .decode(signature)
        .map_err(|_| "the JWT signature is not base64url")?;
    let expected = hmac_sha256(
        secret,
        format!("{}.{payload}", token.split('.').next().unwrap_or("")).as_bytes(),
    );
    if !constant_time_eq(&signature, &expected) {
        return Err("the JWT signature does not match".into());
    }
    let claims: Claims = b64
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice::<Claims>(&p).ok())
        .ok_or("the JWT claims need `sub` and a `role` of reader, user or admin")?;
    if require_exp && claims.exp.is_none() {
        return Err(
            "the JWT has no `exp`: this server accepts only tokens that expire \
                    (`symphony keys token` sets one; see --jwt-require-exp)"
                .into(),
        );
    }
    if claims.exp.is_some_and(|exp| now >= exp) {
        return Err("the JWT has expired".into());
    }
    if claims.nbf.is_some_and(|nbf| now < nbf) {
        return Err("the JWT is not valid yet".into());
    }
    Ok(Principal {
        name: claims.sub,
        role: claims.role,
        limits: claims.limits,
    })
}

/// Signs claims as an HS256 JWT (for `symphony keys token` and the tests).
pub fn sign_jwt(claims: &serde_json::Value, secret: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let signature = b64.encode(hmac_sha256(
        secret,
        format!("{header}.{payload}").as_bytes(),
    ));
    format!("{header}.{payload}.{signature}")
}

/// How the server authenticates.
pub enum Auth {
    /// `--no-auth`: every caller is an anonymous admin.
    Disabled,
    Enabled {
        keys: Option<KeyFile>,
        jwt_secret: Option<Vec<u8>>,
        /// Refuse JWTs without `exp` (`--jwt-require-exp`, on by default).
        jwt_require_exp: bool,
    },
}

impl Auth {
    /// The principal behind an `Authorization: Bearer` value.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let (keys, secret, require_exp) = match self {
            Auth::Disabled => return Ok(Principal::anonymous()),
            Auth::Enabled {
                keys,
                jwt_secret,
                jwt_require_exp,
            } => (keys, jwt_secret, *jwt_require_exp),
        };
        let token = bearer.ok_or(AuthError::Missing)?;
        if token.matches('.').count() == 2 {
            let secret = secret.as_deref().ok_or(AuthError::NoJwts)?;
            return verify_jwt(token, secret, unix_now(), require_exp)
                .map_err(AuthError::InvalidToken);
        }
        let key = keys
            .as_ref()
            .and_then(|k| k.find(token))
            .ok_or(AuthError::InvalidKey)?;
        Ok(Principal {
            name: key.name,
            role: key.role,
            limits: key.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn jwt_round_trip_and_rejections() {
        let secret = b"s3cret";
        let claims = json!({"sub": "ci", "role": "user", "exp": 2000, "rpm": 5});
        let token = sign_jwt(&claims, secret);
        let p = verify_jwt(&token, secret, 1000, true).unwrap();
        assert_eq!(p.name, "ci");
        assert_eq!(p.role, Role::User);
        assert_eq!(p.limits.rpm, Some(5));
        assert!(verify_jwt(&token, secret, 2000, true)
            .unwrap_err()
            .contains("expired"));
        assert!(verify_jwt(&token, b"other", 1000, true)
            .unwrap_err()
            .contains("signature"));
        // alg "none" with no signature is refused.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none"}"#),
            b64.encode(claims.to_string())
        );
        assert!(verify_jwt(&none, secret, 1000, true)
            .unwrap_err()
            .contains("HS256"));
        // A forged payload under the old signature is refused.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(json!({"sub": "ci", "role": "admin"}).to_string()),
            parts[2]
        );
        assert!(verify_jwt(&forged, secret, 1000, true).is_err());
        // A token without `exp` would never expire: refused unless the server allows it.
        let forever = sign_jwt(&json!({"sub": "ci", "role": "user"}), secret);
        assert!(verify_jwt(&forever, secret, 1000, true)
            .unwrap_err()
            .contains("exp"));
        assert!(verify_jwt(&forever, secret, 1000, false).is_ok());
    }

    #[test]
    fn key_file_stores_hashes_and_survives_reopen() {
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
            jwt_secret: None,
            jwt_require_exp: true,
        };
        let p = auth.authenticate(Some(&key)).unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, p.limits.rpm),
            ("alice", Role::User, Some(3))
        );
        assert!(auth.authenticate(Some("sk-sym-wrong")).is_err());
        assert!(auth.authenticate(None).is_err());
        file.revoke("alice").unwrap();
        assert!(
            auth.authenticate(Some(&key)).is_err(),
            "revocation is seen by readers"
        );
    }
}
