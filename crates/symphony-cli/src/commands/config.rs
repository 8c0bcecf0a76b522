//! `symphony config show`: a command's settings in effect, as a `symphony.toml` table, each
//! line saying where its value came from. Secrets are masked.

use anyhow::{bail, Result};
use figment::value::Value;

use crate::settings::{self, Setting, Source};
use crate::ConfigCommand;

/// `config`: the settings file named by `--config`, if any.
pub fn config(
    cmd: ConfigCommand,
    cli: &clap::Command,
    config: Option<std::path::PathBuf>,
) -> Result<()> {
    let ConfigCommand::Show { mut command, json } = cmd;
    if command.is_empty() {
        command.push("serve".into());
    }
    let Some(target) = settings::find_command(cli, &command) else {
        bail!("`symphony {}` is not a command", command.join(" "));
    };
    let file = settings::config_file(config.as_deref())?;
    let shown: Vec<Setting> = settings::layered(cli, target, &command, file.as_deref())?
        .into_iter()
        .map(|s| Setting {
            value: mask(&s.key, &s.value),
            ..s
        })
        .collect();
    if json {
        let settings: serde_json::Map<String, serde_json::Value> = shown
            .iter()
            .map(|s| {
                let source = match &s.source {
                    Source::Default => serde_json::json!({"kind": "default"}),
                    Source::File(path) => serde_json::json!({"kind": "file", "path": path}),
                    Source::Env(name) => serde_json::json!({"kind": "env", "name": name}),
                };
                let value = serde_json::to_value(&s.value).unwrap_or_default();
                (
                    s.key.clone(),
                    serde_json::json!({"value": value, "source": source}),
                )
            })
            .collect();
        let out = serde_json::json!({
            "command": command.join(" "),
            "file": file,
            "settings": settings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match &file {
        Some(path) => println!("# settings file: {}", path.display()),
        None => println!("# no settings file"),
    }
    println!("[{}]", command.join("."));
    for arg in settings::setting_args(target) {
        if !shown.iter().any(|s| s.key == arg.get_id().as_str()) {
            println!("# {} is not set", arg.get_id());
        }
    }
    for s in &shown {
        let source = match &s.source {
            Source::Default => "default".to_string(),
            Source::File(_) => "settings file".to_string(),
            Source::Env(name) => name.clone(),
        };
        println!("{} = {}  # {source}", s.key, toml_value(&s.value));
    }
    Ok(())
}

/// Values that would let someone in: whole for secrets and tokens, the password in a URL.
fn mask(key: &str, value: &Value) -> Value {
    let secret = ["secret", "password", "token"]
        .iter()
        .any(|w| key.contains(w))
        && !key.ends_with("_file");
    match value {
        Value::String(tag, _) if secret => Value::String(*tag, "****".into()),
        Value::String(tag, s) => Value::String(*tag, mask_url_password(s)),
        Value::Array(tag, items) => {
            Value::Array(*tag, items.iter().map(|v| mask(key, v)).collect())
        }
        other => other.clone(),
    }
}

/// `redis://user:pass@host` → `redis://user:****@host`.
fn mask_url_password(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****{}", &rest[at..]),
        None => s.to_string(),
    }
}

fn toml_value(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Array(_, items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => serde_json::to_value(other)
            .map(|v| v.to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url_password("rediss://app:s3cret@redis.internal:6380/0"),
            "rediss://app:****@redis.internal:6380/0"
        );
        assert_eq!(
            mask_url_password("redis://:s3cret@localhost"),
            "redis://:****@localhost"
        );
        assert_eq!(
            mask_url_password("redis://localhost:6379"),
            "redis://localhost:6379"
        );
        assert_eq!(mask_url_password("http://h/a@b"), "http://h/a@b");
    }
}
