//! JWTs from an OpenID Connect provider: a real one on loopback (`oidc_provider.py`: keys made
//! by `cryptography`, tokens signed by PyJWT), found by discovery, its key set fetched and
//! cached, fetched again when it rotates keys; issuer, audience, expiry and algorithm checked
//! by the server's router in process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::Harness;
use serde_json::{json, Value};
use symphony_server::{JwtConfig, JwtVerifier};

/// The provider process, killed when dropped.
struct Provider {
    child: Child,
    base: String,
}

impl Provider {
    fn start() -> Self {
        let python = std::env::var_os("SYMPHONY_TEST_PYTHON").expect(
            "SYMPHONY_TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes a \
             virtual environment with PyJWT and cryptography",
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_provider.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the provider starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("the provider says its port");
        let port = line
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("the provider said {line:?}"))
            .trim();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn post(&self, path: &str, body: &Value) -> String {
        ureq::post(&format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("the provider answers")
            .body_mut()
            .read_to_string()
            .expect("a body")
    }

    /// A token signed by the provider's key `kid`.
    fn sign(&self, kid: &str, claims: Value) -> String {
        self.post("/sign", &json!({"kid": kid, "claims": claims}))
    }

    /// Claims as the provider issues them, `exp` an hour away.
    fn claims(&self, sub: &str, role: &str) -> Value {
        let now = now();
        json!({"sub": sub, "role": role, "iss": self.base, "aud": "symphony",
               "iat": now, "exp": now + 3600})
    }

    fn fetches(&self) -> u64 {
        let body = ureq::get(&format!("{}/fetches", self.base))
            .call()
            .expect("the provider answers")
            .body_mut()
            .read_to_string()
            .expect("a body");
        serde_json::from_str::<Value>(&body).unwrap()["fetches"]
            .as_u64()
            .unwrap()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server trusting `provider` by its issuer URL alone (discovery finds the keys).
fn trusting(provider: &Provider, config: JwtConfig) -> Harness {
    let verifier = JwtVerifier::new(JwtConfig {
        issuer: Some(provider.base.clone()),
        audience: Some("symphony".into()),
        ..config
    })
    .expect("a verifier");
    Harness::with_jwt(Some(verifier))
}

/// The status and error message of `GET path` with `token`.
async fn get(h: &Harness, path: &str, token: &str) -> (StatusCode, String) {
    let reply = h.send(Method::GET, path, Some(token), None).await;
    let message = if reply.status.is_success() {
        String::new()
    } else {
        reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (reply.status, message)
}

#[tokio::test]
async fn provider_tokens_carry_roles_and_are_checked_for_issuer_audience_expiry_and_algorithm() {
    let provider = Provider::start();
    let h = trusting(&provider, JwtConfig::default());

    // RS256 and ES256, each with its role: a reader lists models but may not manage keys.
    let reader = provider.sign("rsa-1", provider.claims("ana", "reader"));
    assert_eq!(get(&h, "/v1/models", &reader).await.0, StatusCode::OK);
    let (status, message) = get(&h, "/v1/admin/keys", &reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert!(message.contains("'ana'"), "{message}");
    let admin = provider.sign("ec-1", provider.claims("bo", "admin"));
    assert_eq!(get(&h, "/v1/admin/keys", &admin).await.0, StatusCode::OK);

    // Each claim the server checks, broken one at a time.
    let refused = |claims: Value| provider.sign("rsa-1", claims);
    let mut other_audience = provider.claims("ana", "user");
    other_audience["aud"] = json!("someone-else");
    let mut other_issuer = provider.claims("ana", "user");
    other_issuer["iss"] = json!("https://elsewhere.example");
    let mut expired = provider.claims("ana", "user");
    expired["exp"] = json!(now() - 5);
    let mut no_exp = provider.claims("ana", "user");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_role = provider.claims("ana", "user");
    no_role.as_object_mut().unwrap().remove("role");
    for (claims, expected) in [
        (other_audience, "audience"),
        (other_issuer, "issuer"),
        (expired, "expired"),
        (no_exp, "exp"),
        (no_role, "role"),
    ] {
        let (status, message) = get(&h, "/v1/models", &refused(claims)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // The RSA public key used as an HMAC secret (algorithm confusion) does not get in, and
    // neither does a signature moved onto other claims.
    let confused = provider.post(
        "/confuse",
        &json!({"claims": provider.claims("eve", "admin")}),
    );
    let (status, message) = get(&h, "/v1/models", &confused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
    let parts: Vec<&str> = reader.split('.').collect();
    let admin_parts: Vec<&str> = admin.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], admin_parts[1], parts[2]);
    let (status, message) = get(&h, "/v1/models", &spliced).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("signature"), "{message}");

    // All of that took one fetch of the key set: it is cached.
    assert_eq!(provider.fetches(), 1);

    // A key the provider has not published: refused. The set was fetched a moment ago, so
    // the unknown key sends no new fetch (a flood of made-up key ids must not become a flood
    // of fetches; the next test sees a rotation fetched).
    let unpublished = provider.sign("rsa-2", provider.claims("mallory", "user"));
    for _ in 0..5 {
        let (status, message) = get(&h, "/v1/models", &unpublished).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
        assert!(message.contains("rsa-2"), "{message}");
    }
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_a_provider_down_keeps_the_last_keys() {
    let provider = Provider::start();
    let h = trusting(
        &provider,
        JwtConfig {
            jwks_min_refresh: Duration::ZERO,
            role_claim: "roles".into(),
            ..JwtConfig::default()
        },
    );
    // The role from a list, as providers list roles and groups.
    let mut claims = provider.claims("cy", "ignored");
    claims["roles"] = json!(["offline_access", "user"]);
    let old_key = provider.sign("rsa-1", claims.clone());
    let new_key = provider.sign("rsa-2", claims);
    assert_eq!(get(&h, "/v1/models", &old_key).await.0, StatusCode::OK);
    assert_eq!(
        get(&h, "/v1/models", &new_key).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The provider rotates: the token naming the new key sends the server to fetch the set.
    provider.post("/rotate", &json!({}));
    let before = provider.fetches();
    assert_eq!(get(&h, "/v1/models", &new_key).await.0, StatusCode::OK);
    assert_eq!(provider.fetches(), before + 1);

    // The provider goes down: the keys already fetched still verify.
    let base = provider.base.clone();
    drop(provider);
    assert_eq!(get(&h, "/v1/models", &old_key).await.0, StatusCode::OK);

    // A server that never reached it answers 503 (try again), not 401 (your token is bad).
    let fresh = Harness::with_jwt(Some(
        JwtVerifier::new(JwtConfig {
            jwks_url: Some(format!("{base}/jwks.json")),
            ..JwtConfig::default()
        })
        .unwrap(),
    ));
    let reply = fresh
        .send(Method::GET, "/v1/models", Some(&old_key), None)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(reply.headers.contains_key("retry-after"));
}
