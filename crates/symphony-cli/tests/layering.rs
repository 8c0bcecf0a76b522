//! The workspace's structure, checked: which crate may depend on which, and no file inside a
//! crate importing one that imports it back.
//!
//! docs/ARCHITECTURE.md draws the crate graph; these tests keep the drawing true. A new
//! dependency between Symphony crates has to be added to `ALLOWED` on purpose, so a crate
//! low in the stack (types, models, engine) cannot quietly start reaching up into a front end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each crate and the Symphony crates its `[dependencies]` may name. Dev-dependencies may
/// also name `symphony-store` (tests fetch the packaged models through it).
const ALLOWED: &[(&str, &[&str])] = &[
    ("symphony-types", &[]),
    ("symphony-store", &[]),
    ("symphony-models", &["symphony-types"]),
    ("symphony-engine", &["symphony-types", "symphony-models"]),
    (
        "symphony-rag",
        &["symphony-types", "symphony-models", "symphony-engine"],
    ),
    (
        "symphony-agents",
        &[
            "symphony-types",
            "symphony-models",
            "symphony-engine",
            "symphony-rag",
        ],
    ),
    // Teams talk over a bus of their own and drive agents, never the reverse.
    (
        "symphony-teams",
        &[
            "symphony-types",
            "symphony-models",
            "symphony-engine",
            "symphony-agents",
        ],
    ),
    (
        "symphony-app",
        &[
            "symphony-types",
            "symphony-store",
            "symphony-models",
            "symphony-engine",
            "symphony-rag",
            "symphony-agents",
        ],
    ),
    (
        "symphony-server",
        &[
            "symphony-types",
            "symphony-store",
            "symphony-models",
            "symphony-engine",
            "symphony-rag",
            "symphony-agents",
            "symphony-app",
            "symphony-teams",
        ],
    ),
    (
        "symphony-cli",
        &[
            "symphony-types",
            "symphony-store",
            "symphony-models",
            "symphony-engine",
            "symphony-rag",
            "symphony-agents",
            "symphony-app",
            "symphony-server",
            "symphony-teams",
        ],
    ),
];

/// Third-party crates that must stay out of a crate: candle stops at the engine, and the
/// shared types carry no IO or HTTP.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "symphony-types",
        &["candle-core", "axum", "tokio", "ureq", "rusqlite"],
    ),
    ("symphony-store", &["candle-core", "axum"]),
    ("symphony-rag", &["candle-core", "axum"]),
    ("symphony-agents", &["candle-core", "axum"]),
    (
        "symphony-app",
        &["candle-core", "axum", "clap", "indicatif", "anyhow"],
    ),
    ("symphony-teams", &["candle-core", "axum"]),
    ("symphony-server", &["candle-core"]),
    ("symphony-cli", &["candle-core"]),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The workspace's crates: directory name and path.
fn workspace_crates() -> Vec<(String, PathBuf)> {
    let mut crates: Vec<_> = std::fs::read_dir(crates_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect();
    crates.sort();
    crates
}

/// Dependency names per manifest section (`dependencies`, `dev-dependencies`, ...). Enough
/// of TOML for our manifests: `name = ...`, `name.workspace = true`, `[dependencies.name]`.
fn manifest_dependencies(manifest: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            match header.split_once('.') {
                Some((table, name)) if table.ends_with("dependencies") => {
                    sections
                        .entry(table.to_string())
                        .or_default()
                        .insert(name.to_string());
                    section = String::new();
                }
                _ => section = header.to_string(),
            }
            continue;
        }
        if !section.ends_with("dependencies") || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap()
            .trim_matches('"');
        sections
            .entry(section.clone())
            .or_default()
            .insert(name.to_string());
    }
    sections
}

#[test]
fn crates_depend_only_downhill() {
    let crates = workspace_crates();
    assert!(crates.len() >= 8, "found only {crates:?}");
    let mut wrong = Vec::new();
    for (name, path) in &crates {
        let Some((_, allowed)) = ALLOWED.iter().find(|(crate_name, _)| crate_name == name) else {
            wrong.push(format!(
                "{name} is not in ALLOWED: say where it sits in the stack"
            ));
            continue;
        };
        let forbidden = FORBIDDEN.iter().find(|(crate_name, _)| crate_name == name);
        for (section, deps) in manifest_dependencies(&path.join("Cargo.toml")) {
            for dep in deps {
                let test_only = section == "dev-dependencies" && dep == "symphony-store";
                if dep.starts_with("symphony-") && !allowed.contains(&dep.as_str()) && !test_only {
                    wrong.push(format!("{name} [{section}] names {dep}"));
                }
                if section == "dependencies"
                    && forbidden.is_some_and(|(_, banned)| banned.contains(&dep.as_str()))
                {
                    wrong.push(format!(
                        "{name} [{section}] names {dep}, which must stay out of it"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layering:\n{}",
        wrong.join("\n")
    );
}

/// A source file's module path inside its crate: `src/tools/http.rs` is `tools::http`,
/// `src/tools/mod.rs` is `tools`, `src/lib.rs` and `src/main.rs` are the root (empty).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The paths a `use`/expression starting at `text` names: `a::b::c`, or each member of a
/// `{a, b::{c, d}}` group (only its leading segments matter for module resolution).
fn referenced_paths(text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut out = Vec::new();
            let mut depth = 0;
            let mut start = 0;
            let inner = &group[..end];
            for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        for mut sub in referenced_paths(inner[start..i].trim()) {
                            let mut full = path.clone();
                            full.append(&mut sub);
                            out.push(full);
                        }
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return out;
        }
        let len = ident(rest);
        if len == 0 {
            break;
        }
        path.push(rest[..len].to_string());
        match rest[len..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    vec![path]
}

/// Import cycles between the files of one crate: groups of files where each reaches the
/// others through `crate::`/`super::` paths. A file naming its own ancestor or descendant
/// module is structure (`mod` and re-exports), not a cycle, and is left out.
fn file_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|file| (module_path(src, file), file.clone()))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests reach everywhere on purpose; they are not part of the file's imports.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for line in code
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
        {
            for (at, prefix) in line
                .match_indices("crate::")
                .chain(line.match_indices("super::"))
            {
                if prefix == "crate::" && line[..at].ends_with('$') {
                    continue; // `$crate::` in a macro
                }
                let mut base = if prefix == "crate::" {
                    Vec::new()
                } else {
                    let mut parent = module.clone();
                    // `super::` from `a/b.rs` (module a::b) is module a; mod.rs files are
                    // their directory's module, so the same rule holds for them.
                    parent.pop();
                    parent
                };
                let mut rest = &line[at + prefix.len()..];
                while let Some(next) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = next;
                }
                for path in referenced_paths(rest) {
                    let mut full = base.clone();
                    full.extend(path);
                    // The longest prefix that is a file of this crate.
                    let target = (0..=full.len())
                        .rev()
                        .map(|n| full[..n].to_vec())
                        .find(|candidate| modules.contains_key(candidate));
                    let Some(target) = target else { continue };
                    let related = target.starts_with(module) || module.starts_with(&target);
                    if !related {
                        edges.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    // Strongly connected components (Tarjan) of more than one file are the cycles.
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, (usize, usize)>,
        stack: Vec<Vec<String>>,
        on_stack: BTreeSet<Vec<String>>,
        components: Vec<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, node: &Vec<String>) {
            let order = self.index.len();
            self.index.insert(node.clone(), (order, order));
            self.stack.push(node.clone());
            self.on_stack.insert(node.clone());
            for next in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.index[next].1.min(self.index[node].1);
                    self.index.get_mut(node).unwrap().1 = low;
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].0.min(self.index[node].1);
                    self.index.get_mut(node).unwrap().1 = low;
                }
            }
            let (order, low) = self.index[node];
            if order == low {
                let mut component = Vec::new();
                loop {
                    let member = self.stack.pop().unwrap();
                    self.on_stack.remove(&member);
                    let done = &member == node;
                    component.push(member.join("::"));
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for module in modules.keys() {
        if !tarjan.index.contains_key(module) {
            tarjan.visit(module);
        }
    }
    tarjan.components
}

#[test]
fn no_import_cycles_between_files() {
    let mut cycles = Vec::new();
    for (name, path) in workspace_crates() {
        for component in file_cycles(&path.join("src")) {
            cycles.push(format!("{name}: {}", component.join(" <-> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn cycle_finder_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use crate::{c, a::Other};\n").unwrap();
    std::fs::write(src.join("c.rs"), "pub fn f() {}\n").unwrap();
    std::fs::create_dir(src.join("d")).unwrap();
    std::fs::write(src.join("d/mod.rs"), "mod e;\npub use e::E;\n").unwrap();
    std::fs::write(src.join("d/e.rs"), "use super::super::c;\nuse super::E2;\n").unwrap();
    assert_eq!(
        file_cycles(src),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
}
