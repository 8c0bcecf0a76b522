//! Who may call what: API keys (stored only as SHA-256 hashes), JWTs signed with the
//! server's HS256 secret, and JWTs from an OpenID Connect provider verified against its
//! published keys; each carries a role, checked on every route.
//!
//! Roles nest: `reader` lists and shows models; `user` also runs inference; `admin` also
//! manages models and keys.

mod jwks;
mod jwt;
mod keys;

use serde::{Deserialize, Serialize};

pub use jwt::{sign_jwt, JwtConfig, JwtVerifier};
pub use keys::{hash_key, KeyFile, KeyFileError, StoredKey};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
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

/// Why a caller is not let in (a 401 at the HTTP boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <API key or JWT>`")]
    Missing,
    #[error("this server accepts no JWTs")]
    NoJwts,
    /// The provider's key set could not be fetched: the token may be good, so this is not
    /// the caller's fault (a 503 at the HTTP boundary).
    #[error("the identity provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid API key")]
    InvalidKey,
}

/// How the server authenticates.
pub enum Auth {
    /// `--no-auth`: every caller is an anonymous admin.
    Disabled,
    Enabled {
        keys: Option<KeyFile>,
        /// Accepts JWTs: with the server's secret, an identity provider's keys, or both.
        jwt: Option<JwtVerifier>,
    },
}

impl Auth {
    /// The principal behind an `Authorization: Bearer` value: a JWT (three dot-separated
    /// parts) or an API key.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let (keys, jwt) = match self {
            Auth::Disabled => return Ok(Principal::anonymous()),
            Auth::Enabled { keys, jwt } => (keys, jwt),
        };
        let token = bearer.ok_or(AuthError::Missing)?;
        if token.matches('.').count() == 2 {
            return jwt.as_ref().ok_or(AuthError::NoJwts)?.verify(token).await;
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
