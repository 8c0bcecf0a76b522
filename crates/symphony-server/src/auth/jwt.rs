//! JWT bearer tokens, verified by `jsonwebtoken`: HS256 tokens signed with the server's own
//! secret (`symphony keys token` makes them), and RS/PS/ES/EdDSA tokens from an OpenID
//! Connect provider, verified against the keys it publishes (JWKS).
//!
//! The algorithm a token may use follows from where its key comes from, never from the token
//! alone: HS256 only with the server's secret, asymmetric algorithms only with a published
//! public key of that type, so neither `none` nor a public key used as an HMAC secret gets in.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::jwks::Jwks;
use super::{AuthError, Limits, Principal, Role};
use crate::util::unix_now;

/// What the server accepts as a JWT (`symphony serve --jwt-*`).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The HS256 secret (`SYMPHONY_JWT_SECRET` or `--jwt-secret-file`).
    pub secret: Option<Vec<u8>>,
    /// Where the identity provider publishes its keys (`--jwt-jwks-url`). Without it but with
    /// an `issuer`, found by OpenID Connect discovery at
    /// `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// The `iss` the provider's tokens must carry (`--jwt-issuer`).
    pub issuer: Option<String>,
    /// A value the provider's tokens' `aud` must hold (`--jwt-audience`). Issuer and audience
    /// are the provider's: HS256 tokens are the server's own and carry neither.
    pub audience: Option<String>,
    /// Refuse tokens without `exp`, which would never expire (`--jwt-require-exp`).
    pub require_exp: bool,
    /// Clock skew allowed on `exp` and `nbf` (`--jwt-leeway`). None by default: tokens
    /// Symphony signs are read on the clock that signed them; a provider's clock may differ.
    pub leeway: Duration,
    /// The claim holding the role (`--jwt-role-claim`): a string, or a list whose highest
    /// role counts (as providers put groups or roles in a list).
    pub role_claim: String,
    /// Keys are fetched again after this long, so that rotations are seen.
    pub jwks_max_age: Duration,
    /// A token naming a key the cached set lacks fetches the set again, at most this often
    /// (a stream of made-up key ids must not turn into a stream of fetches).
    pub jwks_min_refresh: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            require_exp: true,
            leeway: Duration::ZERO,
            role_claim: "role".into(),
            jwks_max_age: Duration::from_secs(600),
            jwks_min_refresh: Duration::from_secs(10),
        }
    }
}

/// Why a configuration accepts no tokens at all.
#[derive(Debug, thiserror::Error)]
#[error("JWTs need a secret (--jwt-secret-file), a key set (--jwt-jwks-url) or an issuer to discover one (--jwt-issuer)")]
pub struct NothingToVerifyWith;

/// Verifies bearer JWTs and turns their claims into a [`Principal`].
pub struct JwtVerifier {
    // Boxed: a verifier sits in `Auth` beside a variant with nothing in it.
    config: Box<JwtConfig>,
    jwks: Option<Box<Jwks>>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<Self, NothingToVerifyWith> {
        let jwks = match (&config.jwks_url, &config.issuer) {
            (Some(url), _) => Some(Box::new(Jwks::at(
                url.clone(),
                config.jwks_max_age,
                config.jwks_min_refresh,
            ))),
            (None, Some(issuer)) => Some(Box::new(Jwks::discovered(
                issuer.clone(),
                config.jwks_max_age,
                config.jwks_min_refresh,
            ))),
            _ => None,
        };
        if config.secret.is_none() && jwks.is_none() {
            return Err(NothingToVerifyWith);
        }
        Ok(Self {
            config: Box::new(config),
            jwks,
        })
    }

    /// Fetches the provider's keys now, so that a wrong URL shows at startup rather than at
    /// the first request. A provider that is down is not fatal: keys are fetched again when
    /// a token needs them.
    pub async fn prefetch(&self) -> Result<(), AuthError> {
        match &self.jwks {
            Some(jwks) => jwks.refresh().await,
            None => Ok(()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = |message: String| AuthError::InvalidToken(message);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(unknown_algorithm(token).unwrap_or_else(|| describe(&e))))?;
        let key = match header.alg {
            Algorithm::HS256 => match &self.config.secret {
                Some(secret) => {
                    DecodingKey::from_secret(secret).map_err(|e| invalid(describe(&e)))?
                }
                None => {
                    return Err(invalid(
                        "HS256 tokens are not accepted: this server has no JWT secret".into(),
                    ))
                }
            },
            Algorithm::HS384 | Algorithm::HS512 => {
                return Err(invalid(format!(
                    "{:?} tokens are not accepted (HS256 with the server's secret is)",
                    header.alg
                )))
            }
            alg => match &self.jwks {
                Some(jwks) => jwks.key(header.kid.as_deref(), alg).await?,
                None => {
                    return Err(invalid(format!(
                        "{alg:?} tokens need an identity provider's keys: this server has no \
                         --jwt-jwks-url or --jwt-issuer"
                    )))
                }
            },
        };
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation(header.alg))
                .map_err(|e| invalid(describe(&e)))?;
        self.principal(data.claims).map_err(invalid)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        let required: &[&str] = if self.config.require_exp {
            &["exp"]
        } else {
            &[]
        };
        v.set_required_spec_claims(required);
        if alg == Algorithm::HS256 {
            v.validate_aud = false;
            return v;
        }
        match &self.config.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
        }
        v
    }

    /// The principal a verified token names.
    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, String> {
        // RFC 7519 §4.1.4: a token is good only *before* its `exp`; the library also takes
        // the second of `exp` itself.
        let leeway = self.config.leeway.as_secs();
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            if unix_now() >= exp.saturating_add(leeway) {
                return Err(describe(&ErrorKind::ExpiredSignature.into()));
            }
        }
        let name = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or("the JWT has no `sub`: rate limits are counted per subject")?
            .to_string();
        let claim = &self.config.role_claim;
        let role = role_in(claims.get(claim)).ok_or_else(|| {
            format!("the JWT's `{claim}` claim names no role (reader, user or admin)")
        })?;
        let limits: Limits = serde_json::from_value(Value::Object(claims))
            .map_err(|e| format!("the JWT's limits (rpm, tpm, token_quota) are not counts: {e}"))?;
        Ok(Principal { name, role, limits })
    }
}

/// The role a claim holds: a role's name, or a list whose highest role counts (other entries,
/// such as a provider's own groups, are ignored).
fn role_in(claim: Option<&Value>) -> Option<Role> {
    match claim? {
        Value::String(s) => s.parse().ok(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str()?.parse::<Role>().ok())
            .max(),
        _ => None,
    }
}

/// The refusal for a header whose `alg` the library does not know (`none` above all), which
/// it reports only as a header it cannot read.
fn unknown_algorithm(token: &str) -> Option<String> {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next()?)
        .ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    let alg = header.get("alg")?.as_str()?;
    if alg.parse::<Algorithm>().is_ok() {
        return None;
    }
    Some(format!(
        "the JWT's algorithm '{alg}' is not accepted (HS256 with the server's secret, or RS, \
         PS, ES and EdDSA with an identity provider's keys)"
    ))
}

/// A refusal's reason in words a caller can act on.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidToken => "a JWT has three dot-separated base64url parts".into(),
        ErrorKind::InvalidSignature => "the JWT signature does not match".into(),
        ErrorKind::ExpiredSignature => "the JWT has expired".into(),
        ErrorKind::ImmatureSignature => "the JWT is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidIssuer => {
            "the JWT's issuer (`iss`) is not the one this server trusts".into()
        }
        ErrorKind::InvalidAudience => "the JWT's audience (`aud`) does not name this server".into(),
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            "the JWT has no `exp`: this server accepts only tokens that expire \
             (`symphony keys token` sets one; see --jwt-require-exp)"
                .into()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the JWT has no `{claim}`"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the JWT's algorithm is not accepted (HS256 with the server's secret, or RS, PS, \
             ES and EdDSA with an identity provider's keys; never `none`)"
                .into()
        }
        ErrorKind::InvalidKeyFormat => "the JWT's algorithm does not fit its key".into(),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "the JWT's header or claims are not base64url JSON".into()
        }
        other => format!("the JWT is not valid ({other:?})"),
    }
}

/// Signs claims as an HS256 JWT (for `symphony keys token` and the tests).
pub fn sign_jwt(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).expect("a JWT secret is not empty"),
    )
    .expect("HS256 signs any JSON claims")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn verifier(secret: &[u8], require_exp: bool) -> JwtVerifier {
        JwtVerifier::new(JwtConfig {
            secret: Some(secret.to_vec()),
            require_exp,
            ..JwtConfig::default()
        })
        .unwrap()
    }

    async fn refusal(v: &JwtVerifier, token: &str) -> String {
        match v.verify(token).await {
            Err(AuthError::InvalidToken(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn hs256_round_trip_and_rejections() {
        let secret = b"s3cret";
        let v = verifier(secret, true);
        let later = unix_now() + 3600;
        let claims = json!({"sub": "ci", "role": "user", "exp": later, "rpm": 5});
        let token = sign_jwt(&claims, secret);
        let p = v.verify(&token).await.unwrap();
        assert_eq!(p.name, "ci");
        assert_eq!(p.role, Role::User);
        assert_eq!(p.limits.rpm, Some(5));

        let expired = sign_jwt(
            &json!({"sub": "ci", "role": "user", "exp": unix_now()}),
            secret,
        );
        assert!(refusal(&v, &expired).await.contains("expired"));
        assert!(refusal(&verifier(b"other", true), &token)
            .await
            .contains("signature"));
        // alg "none" with no signature is refused.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none"}"#),
            b64.encode(claims.to_string())
        );
        assert!(refusal(&v, &none).await.contains("algorithm"));
        // A forged payload under the old signature is refused.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(json!({"sub": "ci", "role": "admin", "exp": later}).to_string()),
            parts[2]
        );
        assert!(refusal(&v, &forged).await.contains("signature"));
        // A token without `exp` would never expire: refused unless the server allows it.
        let forever = sign_jwt(&json!({"sub": "ci", "role": "user"}), secret);
        assert!(refusal(&v, &forever).await.contains("exp"));
        assert!(verifier(secret, false).verify(&forever).await.is_ok());
        // No role, no entry; a list of roles grants the highest.
        let roleless = sign_jwt(&json!({"sub": "ci", "exp": later}), secret);
        assert!(refusal(&v, &roleless).await.contains("role"));
        let listed = sign_jwt(
            &json!({"sub": "ci", "exp": later, "role": ["offline_access", "reader", "admin"]}),
            secret,
        );
        assert_eq!(v.verify(&listed).await.unwrap().role, Role::Admin);
    }

    #[tokio::test]
    async fn leeway_allows_clock_skew_and_no_more() {
        let secret = b"s3cret";
        let v = JwtVerifier::new(JwtConfig {
            secret: Some(secret.to_vec()),
            leeway: Duration::from_secs(30),
            ..JwtConfig::default()
        })
        .unwrap();
        let now = unix_now();
        let token = |exp: u64, nbf: u64| {
            sign_jwt(
                &json!({"sub": "ci", "role": "user", "exp": exp, "nbf": nbf}),
                secret,
            )
        };
        // Ten seconds past `exp`, or ten before `nbf`, is within thirty of leeway; a minute is not.
        assert!(v.verify(&token(now - 10, now - 100)).await.is_ok());
        assert!(v.verify(&token(now + 100, now + 10)).await.is_ok());
        assert!(refusal(&v, &token(now - 60, now - 100))
            .await
            .contains("expired"));
        assert!(refusal(&v, &token(now + 100, now + 60))
            .await
            .contains("not valid yet"));
    }

    #[test]
    fn a_verifier_needs_something_to_verify_with() {
        assert!(JwtVerifier::new(JwtConfig::default()).is_err());
    }
}
