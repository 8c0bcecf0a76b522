//! An identity provider's published keys (a JWKS document), fetched over HTTP and cached:
//! fetched again when the cache grows old, and when a token names a key the cache lacks (the
//! provider rotated its keys), but not more often than a floor allows.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::AuthError;

/// Where the key set comes from.
enum Source {
    /// `--jwt-jwks-url`.
    Url(String),
    /// OpenID Connect discovery: the issuer's configuration names its `jwks_uri`.
    Issuer(String),
}

struct Fetched {
    keys: JwkSet,
    at: Instant,
}

pub(super) struct Jwks {
    source: Source,
    agent: ureq::Agent,
    cache: RwLock<Option<Fetched>>,
    /// When a fetch was last tried; held while one runs, so concurrent requests wait for
    /// that fetch instead of starting their own.
    last_try: Mutex<Option<Instant>>,
    max_age: Duration,
    min_refresh: Duration,
}

impl Jwks {
    /// The key set at `url`, fetched again after `max_age`, and on an unknown key id at most
    /// every `min_refresh`.
    pub(super) fn at(url: String, max_age: Duration, min_refresh: Duration) -> Self {
        Self::new(Source::Url(url), max_age, min_refresh)
    }

    /// The key set an OpenID Connect issuer names in its discovery document.
    pub(super) fn discovered(issuer: String, max_age: Duration, min_refresh: Duration) -> Self {
        Self::new(Source::Issuer(issuer), max_age, min_refresh)
    }

    fn new(source: Source, max_age: Duration, min_refresh: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Self {
            source,
            agent,
            cache: RwLock::new(None),
            last_try: Mutex::new(None),
            max_age,
            min_refresh,
        }
    }

    /// The public key that verifies a token signed with `alg` by the key `kid`.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, AuthError> {
        if let Some(f) = &*self.cache.read().await {
            if f.at.elapsed() < self.max_age {
                // A kid the set lacks may be a key the provider has just rotated in.
                if let Pick::Found(key) = pick(&f.keys, kid, alg) {
                    return key;
                }
            }
        }
        if let Err(e) = self.refresh_at_most_every(self.min_refresh).await {
            // A provider that is down does not lock out tokens its last keys verify.
            if self.cache.read().await.is_none() {
                return Err(e);
            }
        }
        match &*self.cache.read().await {
            Some(f) => match pick(&f.keys, kid, alg) {
                Pick::Found(key) => key,
                Pick::Missing(why) => Err(AuthError::InvalidToken(why)),
            },
            None => Err(AuthError::KeysUnavailable(
                "no key set has been fetched yet".into(),
            )),
        }
    }

    /// Fetches the key set now.
    pub(super) async fn refresh(&self) -> Result<(), AuthError> {
        self.refresh_at_most_every(Duration::ZERO).await
    }

    async fn refresh_at_most_every(&self, floor: Duration) -> Result<(), AuthError> {
        let mut last_try = self.last_try.lock().await;
        if last_try.is_some_and(|t| t.elapsed() < floor) {
            // Fetched (or tried) a moment ago, perhaps by the request we waited behind: a
            // cached set, even an old one, beats hammering the provider.
            return match &*self.cache.read().await {
                Some(_) => Ok(()),
                None => Err(AuthError::KeysUnavailable(
                    "the last fetch failed; retrying shortly".into(),
                )),
            };
        }
        *last_try = Some(Instant::now());
        let fetched = self.fetch().await;
        match fetched {
            Ok(keys) => {
                *self.cache.write().await = Some(Fetched {
                    keys,
                    at: Instant::now(),
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(event = "jwks_fetch_failed", error = %e);
                Err(AuthError::KeysUnavailable(e))
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let agent = self.agent.clone();
        let source = match &self.source {
            Source::Url(u) => Source::Url(u.clone()),
            Source::Issuer(i) => Source::Issuer(i.clone()),
        };
        tokio::task::spawn_blocking(move || {
            let url = match source {
                Source::Url(url) => url,
                Source::Issuer(issuer) => discover(&agent, &issuer)?,
            };
            get_json::<JwkSet>(&agent, &url)
        })
        .await
        .map_err(|e| format!("the key fetch stopped: {e}"))?
    }
}

/// The `jwks_uri` of an OpenID Connect issuer.
fn discover(agent: &ureq::Agent, issuer: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Configuration {
        issuer: String,
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let config: Configuration = get_json(agent, &url)?;
    // OpenID Connect Discovery §4.3: the document must be the issuer's own.
    if config.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "{url} describes the issuer '{}', not '{issuer}'",
            config.issuer
        ));
    }
    Ok(config.jwks_uri)
}

fn get_json<T: serde::de::DeserializeOwned>(agent: &ureq::Agent, url: &str) -> Result<T, String> {
    let body = agent
        .get(url)
        .call()
        .map_err(|e| format!("fetching {url}: {e}"))?
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("{url} is not the JSON expected: {e}"))
}

enum Pick {
    Found(Result<DecodingKey, AuthError>),
    Missing(String),
}

/// The key in `set` for a token signed with `alg` by `kid` (without a `kid`, the set's one key
/// of the right type, if there is exactly one).
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Pick {
    let fits = |jwk: &&jsonwebtoken::jwk::Jwk| {
        let family_fits = matches!(
            (&jwk.algorithm, alg),
            (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (
                AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
        );
        // A key that names its algorithm is used with that one only (RFC 7517 §4.4).
        let alg_fits = jwk
            .common
            .key_algorithm
            .is_none_or(|k| format!("{k:?}") == format!("{alg:?}"));
        family_fits && alg_fits
    };
    let candidates: Vec<_> = match kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().filter(fits).collect(),
    };
    match candidates.as_slice() {
        [jwk] if fits(jwk) => Pick::Found(DecodingKey::from_jwk(jwk).map_err(|e| {
            AuthError::InvalidToken(format!("the provider's key cannot be used: {e}"))
        })),
        [_] => Pick::Missing(format!(
            "the provider's key {} is not a key for {alg:?}",
            kid.unwrap_or("")
        )),
        [] => Pick::Missing(match kid {
            Some(kid) => format!("the identity provider publishes no key '{kid}'"),
            None => format!("the identity provider publishes no {alg:?} key"),
        }),
        _ => Pick::Missing(format!(
            "the JWT names no key (`kid`) and the identity provider publishes {} {alg:?} keys",
            candidates.len()
        )),
    }
}
