//! `symphony serve` and `symphony keys`: the HTTP server, configured from the command line,
//! and the credentials it accepts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use symphony_app::Home;

use super::context::{app_models, init_threads};
use super::progress::Terminal;
use super::telemetry;
use crate::{KeysCommand, ServeArgs};

pub fn serve(args: ServeArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let telemetry = {
        // The gRPC exporter's connection runs on this runtime.
        let _runtime = runtime.enter();
        let otlp = args.otlp_endpoint.clone().map(|endpoint| telemetry::Otlp {
            endpoint,
            protocol: args.otlp_protocol,
        });
        telemetry::init(args.log_format, otlp)?
    };
    let models = app_models()?;
    let home = models.home().clone();
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (args.host.as_str(), args.port)
                .to_socket_addrs()?
                .next()
                .context("the host resolves to no address")
        })
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let auth = if args.no_auth {
        eprintln!(
            "warning: serving without authentication (--no-auth): anyone who can reach {addr} can use it"
        );
        symphony_server::Auth::Disabled
    } else {
        let path = key_file_path(&home, args.api_keys.as_deref());
        let keys = symphony_server::KeyFile::open(&path)?;
        let jwt = symphony_server::JwtVerifier::new(symphony_server::JwtConfig {
            secret: jwt_secret(args.jwt_secret_file.as_deref())?,
            jwks_url: args.jwt_jwks_url.clone(),
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            require_exp: args.jwt_require_exp,
            leeway: args.jwt_leeway,
            role_claim: args.jwt_role_claim.clone(),
            ..symphony_server::JwtConfig::default()
        })
        .ok();
        if keys.list().is_empty() && jwt.is_none() {
            bail!(
                "no credentials are configured: make a key with `symphony keys create NAME --role admin`, \
                 give a JWT secret (SYMPHONY_JWT_SECRET or --jwt-secret-file) or an identity provider \
                 (--jwt-jwks-url or --jwt-issuer), or pass --no-auth for local use"
            );
        }
        symphony_server::Auth::Enabled {
            keys: Some(keys),
            jwt,
        }
    };
    for name in &args.preload {
        models
            .stored_or_fetched(name, &mut Terminal::default())
            .with_context(|| format!("--preload {name}"))?;
    }
    if args.redis_connections == 0 {
        bail!("--redis-connections must be at least 1");
    }
    let redis = args
        .redis
        .as_deref()
        .map(|url| symphony_server::redis::Redis::with_connections(url, args.redis_connections))
        .transpose()?
        .map(Arc::new);
    let config = symphony_server::ServerConfig {
        response_cache: symphony_server::CacheConfig {
            entries: args.response_cache_entries,
            ttl: args.response_cache_ttl,
        },
        max_waiting: args.max_waiting,
        registry: symphony_server::RegistryConfig {
            max_memory: args.max_memory,
            first_use: models.first_use(),
            keep_alive: args.keep_alive,
            kv_cache_tokens: args.kv_cache_tokens,
            scheduler: symphony_engine::SchedulerConfig {
                kv_blocks: 0, // sized per model from kv_cache_tokens
                max_batch_tokens: args.max_batch_tokens,
                short_prompt_tokens: args.short_prompt_tokens,
                max_running: args.max_running,
                prefix_cache: !args.no_prefix_cache,
            },
        },
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: args.request_timeout,
        preload: args.preload,
        collections: home.collections(),
        agents: args.agents.unwrap_or_else(|| home.agents()),
        agent_runs: home.agent_runs(),
        crews: home.crews(),
    };
    let served = runtime.block_on(async move {
        if let Some(redis) = &redis {
            redis
                .ping()
                .await
                .context("--redis: the server does not answer")?;
        }
        if let symphony_server::Auth::Enabled { jwt: Some(jwt), .. } = &auth {
            // A wrong URL shows now; a provider that is down is tried again per request.
            if let Err(e) = jwt.prefetch().await {
                eprintln!("warning: {e}");
            }
        }
        let state = symphony_server::AppState::new(home.store(), config, auth, redis);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!(
            "symphony serve: listening on http://{}",
            listener.local_addr()?
        );
        symphony_server::serve_on(state, listener)
            .await
            .context("serving")
    });
    // The runtime's threads still run: a gRPC exporter can send its last batch.
    telemetry.shutdown();
    served
}

fn key_file_path(home: &Home, given: Option<&Path>) -> std::path::PathBuf {
    given.map_or_else(|| home.keys(), Path::to_path_buf)
}

/// The JWT secret from a file, else from SYMPHONY_JWT_SECRET; `None` when neither is set.
fn jwt_secret(file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    let secret = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .as_bytes()
                .to_vec(),
        ),
        None => std::env::var("SYMPHONY_JWT_SECRET")
            .ok()
            .map(|s| s.into_bytes()),
    };
    match secret {
        Some(s) if s.len() < 16 => bail!("the JWT secret must be at least 16 bytes"),
        other => Ok(other),
    }
}

pub fn keys(cmd: KeysCommand) -> Result<()> {
    let home = Home::from_env()?;
    match cmd {
        KeysCommand::Create {
            name,
            role,
            rpm,
            tpm,
            quota,
            file,
        } => {
            let path = key_file_path(&home, file.api_keys.as_deref());
            let keys = symphony_server::KeyFile::open(&path)?;
            let limits = symphony_server::Limits {
                rpm,
                tpm,
                token_quota: quota,
            };
            let key = keys.create(&name, role, limits)?;
            eprintln!(
                "created key '{name}' ({}) in {}; it is shown only now:",
                role.as_str(),
                path.display()
            );
            println!("{key}");
        }
        KeysCommand::List { json, file } => {
            let path = key_file_path(&home, file.api_keys.as_deref());
            let keys = symphony_server::KeyFile::open(&path)?.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys in {}", path.display());
            } else {
                println!(
                    "{:<24} {:<8} {:>8} {:>10} {:>12}",
                    "NAME", "ROLE", "RPM", "TPM", "QUOTA"
                );
                let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                for k in keys {
                    println!(
                        "{:<24} {:<8} {:>8} {:>10} {:>12}",
                        k.name,
                        k.role.as_str(),
                        show(k.limits.rpm),
                        show(k.limits.tpm),
                        show(k.limits.token_quota)
                    );
                }
            }
        }
        KeysCommand::Revoke { name, file } => {
            let path = key_file_path(&home, file.api_keys.as_deref());
            symphony_server::KeyFile::open(&path)?.revoke(&name)?;
            eprintln!("revoked '{name}'");
        }
        KeysCommand::Token {
            sub,
            role,
            ttl,
            rpm,
            tpm,
            jwt_secret_file,
        } => {
            let secret = jwt_secret(jwt_secret_file.as_deref())?
                .context("no JWT secret: set SYMPHONY_JWT_SECRET or pass --jwt-secret-file")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut claims = serde_json::json!({
                "sub": sub, "role": role.as_str(), "iat": now, "exp": now + ttl.as_secs(),
            });
            if let Some(rpm) = rpm {
                claims["rpm"] = rpm.into();
            }
            if let Some(tpm) = tpm {
                claims["tpm"] = tpm.into();
            }
            println!("{}", symphony_server::auth::sign_jwt(&claims, &secret));
        }
    }
    Ok(())
}
