//! `symphony.toml`: one file for everything the flags set, one table per command (`[serve]`,
//! `[run]`, `[rag.query]`, ...) whose keys are the command's flags in snake case. The
//! settings are layered, lowest first: the flags' defaults, the file, the environment
//! (`SYMPHONY_<KEY>`, and the variables a flag names itself, such as
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), then the flags given. The file and the environment are
//! read with `figment`; what they set becomes flags placed before the ones given, so every
//! value goes through the same parser and check as when it is typed (and the last one wins).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;

/// The `SYMPHONY_*` variables Symphony reads that are not `SYMPHONY_<FLAG>`: a flag whose key
/// matched one (a `collections` flag and `SYMPHONY_COLLECTIONS`, the collections' directory)
/// would take that variable's value as its own. A test keeps every flag clear of them.
pub const OTHER_VARIABLES: [&str; 5] = [
    "SYMPHONY_HOME",
    "SYMPHONY_CONFIG",
    "SYMPHONY_COLLECTIONS",
    "SYMPHONY_AGENT_RUNS",
    "SYMPHONY_PYTHON",
];

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
}

/// One command's setting, as the layers leave it.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    pub value: Value,
    pub source: Source,
}

/// The settings file: `--config`/`SYMPHONY_CONFIG` (which must exist), else
/// `$SYMPHONY_HOME/symphony.toml` when there is one.
pub fn config_file(given: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("the settings file {} does not exist", path.display());
        }
        return Ok(Some(path.to_path_buf()));
    }
    let default = symphony_app::Home::from_env()?.config_file();
    Ok(default.is_file().then_some(default))
}

/// `args` (the process's arguments) with the settings of the command they run, from the file
/// and the environment, inserted as flags after the command's name, before the flags given.
/// Arguments clap would refuse are returned as they are, for clap to explain.
pub fn with_settings(cli: &Command, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Ok(matches) = cli.clone().try_get_matches_from(&args) else {
        return Ok(args);
    };
    let file = config_file(matches.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
    let path = command_path(&matches);
    if path.is_empty() {
        return Ok(args);
    }
    let command = find_command(cli, &path).expect("the matched command exists");
    let settings = layered(cli, command, &path, file.as_deref())?;
    let mut flags = Vec::new();
    for setting in &settings {
        if setting.source != Source::Default {
            let arg = setting_arg(command, &setting.key).expect("a known key");
            let these = to_flags(arg, &setting.value)
                .map_err(|e| anyhow!("{}: {e}", describe(&path, &setting.key, &setting.source)))?;
            check_value(command, &these)
                .map_err(|e| anyhow!("{}: {e}", describe(&path, &setting.key, &setting.source)))?;
            flags.extend(these);
        }
    }
    // The command's name goes first, then the settings, then what was typed after it.
    let mut out = vec![args[0].clone()];
    out.extend(path.iter().map(OsString::from));
    out.extend(flags);
    let mut names = path.iter().peekable();
    for arg in &args[1..] {
        if names
            .peek()
            .is_some_and(|n| arg.to_str() == Some(n.as_str()))
        {
            names.next();
            continue;
        }
        out.push(arg.clone());
    }
    Ok(out)
}

/// `command` with every subcommand letting a later flag override an earlier one (the
/// settings' flags come first).
pub fn override_self(command: Command) -> Command {
    let subcommands: Vec<Command> = command.get_subcommands().cloned().collect();
    subcommands
        .into_iter()
        .fold(command.args_override_self(true), |command, sub| {
            let name = sub.get_name().to_string();
            command.mut_subcommand(name, override_self)
        })
}

/// The settings of the command at `path`: each flag's value from the highest layer that
/// sets it (flags given on the command line aside), or its default. Checks the whole file:
/// a key no command has is an error that names it and the file.
pub fn layered(
    cli: &Command,
    command: &Command,
    path: &[String],
    file: Option<&Path>,
) -> Result<Vec<Setting>> {
    let section = path.join(".");
    let mut figment = match file {
        Some(file) => {
            let from_file = Figment::from(Toml::file(file));
            let data: Dict = from_file
                .extract()
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            check_keys(cli, &data, &mut Vec::new(), file)?;
            from_file
        }
        None => Figment::new(),
    };
    let keys: Vec<String> = setting_args(command)
        .map(|a| a.get_id().to_string())
        .collect();
    // SYMPHONY_<KEY> for each of the command's flags.
    let (known, to_key) = (keys.clone(), section.clone());
    figment = figment.merge(
        Env::prefixed("SYMPHONY_")
            .filter(move |k| {
                // Never one of the variables with a meaning of their own, should a flag's
                // key ever match one (a test keeps them apart).
                let variable = format!("SYMPHONY_{}", k.as_str().to_uppercase());
                known.iter().any(|key| k == key.as_str())
                    && !OTHER_VARIABLES.contains(&variable.as_str())
            })
            .map(move |k| format!("{to_key}.{k}").into()),
    );
    // The variables a flag names itself (e.g. OTEL_EXPORTER_OTLP_ENDPOINT), same layer.
    let named: Vec<(String, String)> = setting_args(command)
        .filter_map(|a| {
            Some((
                a.get_env()?.to_str()?.to_lowercase(),
                a.get_id().to_string(),
            ))
        })
        .collect();
    let to_key = section.clone();
    figment = figment.merge(Env::raw().filter_map(move |k| {
        let (_, id) = named.iter().find(|(env, _)| k == env.as_str())?;
        Some(format!("{to_key}.{id}").into())
    }));
    let mut settings = Vec::new();
    for arg in setting_args(command) {
        let key = arg.get_id().to_string();
        let dotted = format!("{section}.{key}");
        let (value, source) = match figment.find_value(&dotted) {
            Ok(value) => match figment
                .find_metadata(&dotted)
                .and_then(|m| m.source.clone())
            {
                Some(figment::Source::File(path)) => (value, Source::File(path)),
                _ => (value, Source::Env(env_name(arg))),
            },
            Err(_) => match default_value(arg) {
                Some(value) => (value, Source::Default),
                None => continue,
            },
        };
        settings.push(Setting { key, value, source });
    }
    Ok(settings)
}

/// Runs a setting's flags through the command's own parser, so that a bad value is reported
/// with where it was set (the command's other arguments, missing here, are not checked).
fn check_value(command: &Command, flags: &[OsString]) -> Result<(), String> {
    use clap::error::ErrorKind;
    match command
        .clone()
        .no_binary_name(true)
        .try_get_matches_from(flags)
    {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_string())
        }
        _ => Ok(()),
    }
}

/// The subcommand names a parse went through (`["rag", "query"]`).
fn command_path(matches: &ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        path.push(name.to_string());
        current = sub;
    }
    path
}

pub fn find_command<'a>(cli: &'a Command, path: &[String]) -> Option<&'a Command> {
    path.iter()
        .try_fold(cli, |command, name| command.find_subcommand(name))
}

/// The flags a file may set: named (`--key`), not global, not help or version.
pub fn setting_args(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|a| {
        a.get_long().is_some()
            && !a.is_global_set()
            && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

fn setting_arg<'a>(command: &'a Command, key: &str) -> Option<&'a Arg> {
    setting_args(command).find(|a| a.get_id() == key)
}

/// Every table of the file names a command and every key one of its flags.
fn check_keys(command: &Command, table: &Dict, path: &mut Vec<String>, file: &Path) -> Result<()> {
    for (key, value) in table {
        path.push(key.clone());
        if let (Some(sub), Value::Dict(_, inner)) = (command.find_subcommand(key), value) {
            check_keys(sub, inner, path, file)?;
        } else if setting_arg(command, key).is_none() {
            let known: Vec<String> = setting_args(command)
                .map(|a| a.get_id().to_string())
                .collect();
            let what = if path.len() == 1 {
                "no command or setting is called so".to_string()
            } else {
                format!(
                    "`symphony {}` has no such setting (it has: {})",
                    path[..path.len() - 1].join(" "),
                    known.join(", ")
                )
            };
            bail!(
                "{}: unknown key `{}`: {what}",
                file.display(),
                path.join(".")
            );
        }
        path.pop();
    }
    Ok(())
}

fn default_value(arg: &Arg) -> Option<Value> {
    let defaults = arg.get_default_values();
    match arg.get_action() {
        ArgAction::SetTrue => Some(Value::from(false)),
        ArgAction::Append => Some(Value::from(
            defaults
                .iter()
                .map(|v| Value::from(v.to_string_lossy().into_owned()))
                .collect::<Vec<_>>(),
        )),
        _ => defaults.first().map(|v| scalar(&v.to_string_lossy())),
    }
}

/// A default's text as the value a file would hold: a number or a bool when it reads as one.
fn scalar(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        Value::from(n)
    } else if let Ok(b) = text.parse::<bool>() {
        Value::from(b)
    } else {
        Value::from(text.to_string())
    }
}

/// The variable that set `arg`: the flag's own when it is set, else SYMPHONY_<KEY>.
fn env_name(arg: &Arg) -> String {
    arg.get_env()
        .and_then(|e| e.to_str())
        .filter(|e| std::env::var_os(e).is_some())
        .map_or_else(
            || format!("SYMPHONY_{}", arg.get_id().as_str().to_uppercase()),
            str::to_string,
        )
}

fn describe(path: &[String], key: &str, source: &Source) -> String {
    match source {
        Source::File(file) => format!("{}: [{}] {key}", file.display(), path.join(".")),
        Source::Env(name) => name.clone(),
        Source::Default => format!("the default of {key}"),
    }
}

/// The flags that say what `value` says of `arg`.
fn to_flags(arg: &Arg, value: &Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().expect("settings are named flags");
    let text = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(_, s) => Ok(s.clone()),
            Value::Char(_, c) => Ok(c.to_string()),
            Value::Bool(_, b) => Ok(b.to_string()),
            Value::Num(_, n) => n
                .to_u128()
                .map(|u| u.to_string())
                .or_else(|| n.to_i128().map(|i| i.to_string()))
                .or_else(|| n.to_f64().map(|f| f.to_string()))
                .ok_or_else(|| "expected a number".to_string()),
            _ => Err("expected a string, a number or a boolean".into()),
        }
    };
    let flag = |v: String| OsString::from(format!("--{long}={v}"));
    Ok(match arg.get_action() {
        ArgAction::SetTrue => match value {
            Value::Bool(_, true) => vec![OsString::from(format!("--{long}"))],
            Value::Bool(_, false) => Vec::new(),
            Value::String(_, s) if s == "true" || s == "1" => {
                vec![OsString::from(format!("--{long}"))]
            }
            Value::String(_, s) if s == "false" || s == "0" || s.is_empty() => Vec::new(),
            _ => return Err("expected true or false".into()),
        },
        ArgAction::Append => match value {
            Value::Array(_, items) => items
                .iter()
                .map(|v| text(v).map(flag))
                .collect::<Result<_, _>>()?,
            // From the environment: a comma-separated list.
            Value::String(_, s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| flag(s.to_string()))
                .collect(),
            other => vec![flag(text(other)?)],
        },
        _ => vec![flag(text(value)?)],
    })
}
