//! Downloads from the Hugging Face Hub: `hf:ORG/REPO[:FILE]`.
//!
//! Speaks the hub's public HTTP interface, as `huggingface_hub` does:
//! - `GET {endpoint}/api/models/{repo}/tree/{revision}?recursive=true` lists the files, with
//!   each LFS file's sha256 (and each small file's git blob id);
//! - `GET {endpoint}/{repo}/resolve/{revision}/{file}` downloads one, following redirects,
//!   with `Range: bytes=N-` to resume a partial download.
//!
//! The environment settings are the ones `huggingface_hub` users already have: `HF_ENDPOINT`
//! (a mirror, or a local server in tests), `HF_TOKEN` (gated and private repos) and
//! `HF_HUB_OFFLINE=1`. A download goes to `FILE.part`, survives an interrupted transfer or a
//! killed process (the next attempt resumes where it stopped), and only becomes `FILE` once
//! its hash matches the hub's.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::packages::Verified;
use crate::{hex, io_err, Error, Result};

/// The hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A listing longer than this many pages is refused rather than followed forever.
const MAX_LISTING_PAGES: usize = 1000;

/// The `rel="next"` target of a `Link` header value, if it has one.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// Attempts per file before a transfer error is reported (each attempt resumes).
const ATTEMPTS: usize = 4;

/// A parsed `hf:ORG/REPO[:FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    pub repo: String,
    pub file: Option<String>,
    pub revision: String,
}

impl HubRef {
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &'static str| Error::InvalidName {
            name: spec.to_string(),
            reason,
        };
        let rest = spec
            .strip_prefix("hf:")
            .or_else(|| spec.strip_prefix("hf.co/"))
            .ok_or_else(|| bad("expected hf:ORG/REPO[:FILE]"))?;
        let (repo, file) = match rest.split_once(':') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (rest, None),
        };
        let (repo, revision) = match repo.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (repo, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let part_ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if parts.len() != 2 || !parts.iter().all(|p| part_ok(p)) {
            return Err(bad(
                "a repository is ORG/REPO, in letters, digits, '.', '_' and '-'",
            ));
        }
        if file
            .as_deref()
            .is_some_and(|f| f.is_empty() || f.split('/').any(|p| p.is_empty() || p == ".."))
        {
            return Err(bad("the file must be a path inside the repository"));
        }
        Ok(Self {
            repo: repo.to_string(),
            file,
            revision: revision.to_string(),
        })
    }

    /// `hf:ORG/REPO[:FILE]` again, for manifests.
    pub fn display(&self) -> String {
        let rev = if self.revision == "main" {
            String::new()
        } else {
            format!("@{}", self.revision)
        };
        match &self.file {
            Some(f) => format!("hf:{}{rev}:{f}", self.repo),
            None => format!("hf:{}{rev}", self.repo),
        }
    }
}

/// One file of a repository, as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
    /// The content's sha256, for files stored with LFS (weights).
    pub sha256: Option<String>,
    /// The git blob id (sha1 of `blob {len}\0` + content), for small files kept in git.
    pub git_oid: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    oid: String,
    size: u64,
}

/// What to download for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One GGUF file.
    Gguf(RepoFile),
    /// A Hugging Face checkpoint: config, tokenizer and safetensors files.
    Safetensors(Vec<RepoFile>),
}

/// Picks the files of a model from a repository listing: the named file; else the repo's
/// GGUF file (Q4_K_M when there are several quantizations, as Ollama picks); else its
/// safetensors checkpoint.
pub fn select(files: &[RepoFile], wanted: Option<&str>, repo: &str) -> Result<Selection> {
    let no = |message: String| Error::Fetch {
        what: format!("hf:{repo}"),
        message,
    };
    if let Some(name) = wanted {
        let file = files.iter().find(|f| f.path == name).ok_or_else(|| {
            no(format!(
                "the repository has no file '{name}' (it has: {})",
                names(files)
            ))
        })?;
        if !name.ends_with(".gguf") {
            return Err(no(format!("'{name}' is not a .gguf file")));
        }
        return Ok(Selection::Gguf(file.clone()));
    }
    let ggufs: Vec<&RepoFile> = files.iter().filter(|f| f.path.ends_with(".gguf")).collect();
    match ggufs.as_slice() {
        [one] => return Ok(Selection::Gguf((*one).clone())),
        [] => {}
        many => {
            if let Some(f) = many
                .iter()
                .find(|f| f.path.to_ascii_lowercase().contains("q4_k_m"))
            {
                return Ok(Selection::Gguf((*f).clone()));
            }
            return Err(no(format!(
                "the repository has several GGUF files; name one as hf:{repo}:FILE ({})",
                many.iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let wanted_file = |p: &str| {
        !p.contains('/')
            && (p.ends_with(".safetensors")
                || matches!(
                    p,
                    "config.json"
                        | "tokenizer.json"
                        | "tokenizer_config.json"
                        | "generation_config.json"
                        | "model.safetensors.index.json"
                        | "chat_template.jinja"
                ))
    };
    let picked: Vec<RepoFile> = files
        .iter()
        .filter(|f| wanted_file(&f.path))
        .cloned()
        .collect();
    let has = |p: &str| picked.iter().any(|f| f.path == p);
    if !has("config.json") || !picked.iter().any(|f| f.path.ends_with(".safetensors")) {
        return Err(no(format!(
            "found neither a .gguf file nor a safetensors checkpoint (config.json + .safetensors); files: {}",
            names(files)
        )));
    }
    Ok(Selection::Safetensors(picked))
}

fn names(files: &[RepoFile]) -> String {
    let mut s: Vec<&str> = files.iter().map(|f| f.path.as_str()).take(20).collect();
    if files.len() > 20 {
        s.push("...");
    }
    s.join(", ")
}

/// A client for the hub, configured from the environment.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    agent: ureq::Agent,
}

impl HubClient {
    /// `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE`, as `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        Self::new(
            var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            var("HF_TOKEN"),
            offline,
        )
    }

    pub fn new(endpoint: String, token: Option<String>, offline: bool) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_body(None)
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            offline,
            agent,
        }
    }

    /// The same client with network access forbidden (`--offline`).
    pub fn offline(self) -> Self {
        Self {
            offline: true,
            ..self
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    fn offline_error(&self, what: &str) -> Error {
        Error::Fetch {
            what: what.to_string(),
            message: "offline mode (HF_HUB_OFFLINE or --offline) forbids network access, and the model is not in the store".into(),
        }
    }

    fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut req = self.agent.get(url).header(
            "User-Agent",
            concat!("symphony/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        req
    }

    /// Every file of `repo` at `revision`.
    pub fn list_files(&self, r: &HubRef) -> Result<Vec<RepoFile>> {
        let what = r.display();
        if self.offline {
            return Err(self.offline_error(&what));
        }
        let url = format!(
            "{}/api/models/{}/tree/{}?recursive=true",
            self.endpoint, r.repo, r.revision
        );
        let fail = |message: String| Error::Fetch {
            what: what.clone(),
            message,
        };
        // The hub pages long listings: each page names the next in a `Link: <url>;
        // rel="next"` header, as `huggingface_hub` follows it.
        let mut entries: Vec<TreeEntry> = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_LISTING_PAGES {
                return Err(fail(format!(
                    "the file listing has more than {MAX_LISTING_PAGES} pages"
                )));
            }
            let mut resp = self
                .get(&url)
                .call()
                .map_err(|e| fail(format!("cannot reach {}: {e}", self.endpoint)))?;
            check_status(resp.status().as_u16(), &r.repo).map_err(fail)?;
            next = resp
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .map(|link| self.absolute(&link));
            let body = resp
                .body_mut()
                .read_to_vec()
                .map_err(|e| fail(format!("reading the file listing: {e}")))?;
            let page: Vec<TreeEntry> = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("unexpected file listing from {url}: {e}")))?;
            entries.extend(page);
        }
        // Files are written under the download folder by these paths: one that climbs out of
        // it or is absolute (a hostile or broken endpoint) would write anywhere.
        if let Some(e) = entries.iter().find(|e| !inside_repository(&e.path)) {
            return Err(fail(format!(
                "the file listing names '{}', which is not a path inside the repository",
                e.path
            )));
        }
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == "file")
            .map(|e| RepoFile {
                size: e.lfs.as_ref().map_or(e.size, |l| l.size),
                sha256: e.lfs.map(|l| l.oid),
                git_oid: e.oid,
                path: e.path,
            })
            .collect())
    }

    /// A link as the hub gives it (absolute, or a path on the endpoint) made absolute.
    fn absolute(&self, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_string()
        } else {
            format!("{}/{}", self.endpoint, link.trim_start_matches('/'))
        }
    }

    /// Downloads `file` into `dir` (resuming `FILE.part` if an earlier attempt left one) and
    /// verifies it; returns the final path with its sha256. `on_progress(done, total)`
    /// follows the bytes.
    pub fn download(
        &self,
        r: &HubRef,
        file: &RepoFile,
        dir: &Path,
        mut on_progress: impl FnMut(u64, u64),
    ) -> Result<Verified> {
        let what = format!("{} ({})", r.display(), file.path);
        if !inside_repository(&file.path) {
            return Err(Error::Fetch {
                what,
                message: "not a path inside the repository".into(),
            });
        }
        let target = dir.join(&file.path);
        if self.offline {
            return Err(self.offline_error(&what));
        }
        let parent = target.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let part = PathBuf::from(format!("{}.part", target.display()));
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint, r.repo, r.revision, file.path
        );
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            match self.transfer(&url, &part, file.size, &mut on_progress) {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(Transfer::Fatal(message)) => {
                    return Err(Error::Fetch { what, message });
                }
                Err(Transfer::Retry(message)) => last_error = Some(message),
            }
        }
        if let Some(message) = last_error {
            return Err(Error::Fetch {
                what,
                message: format!(
                    "{message} (after {ATTEMPTS} attempts; run the command again to resume from {})",
                    part.display()
                ),
            });
        }
        let sha256 = match verify(&part, file) {
            Ok(sha256) => sha256,
            Err(message) => {
                let _ = fs::remove_file(&part);
                return Err(Error::Fetch { what, message });
            }
        };
        fs::rename(&part, &target).map_err(io_err(&target))?;
        Ok(Verified {
            path: target,
            sha256,
        })
    }

    /// One attempt: asks for the bytes after what `part` holds and appends them.
    fn transfer(
        &self,
        url: &str,
        part: &Path,
        size: u64,
        on_progress: &mut impl FnMut(u64, u64),
    ) -> std::result::Result<(), Transfer> {
        let io = |e: std::io::Error| Transfer::Fatal(format!("{}: {e}", part.display()));
        let mut out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .map_err(io)?;
        let mut have = out.metadata().map_err(io)?.len();
        if have > size {
            out.set_len(0).map_err(io)?;
            have = 0;
        }
        if have == size {
            on_progress(size, size);
            return Ok(());
        }
        let mut req = self.get(url);
        if have > 0 {
            req = req.header("Range", &format!("bytes={have}-"));
        }
        let mut resp = req
            .call()
            .map_err(|e| Transfer::Retry(format!("cannot reach the hub: {e}")))?;
        let status = resp.status().as_u16();
        match status {
            206 => {}
            200 => {
                // The server ignored the range: start over.
                out.set_len(0).map_err(io)?;
                out.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                have = 0;
            }
            416 => {
                // Nothing past what we have: the file on our side is whole or wrong; verify.
                return Ok(());
            }
            s => {
                return Err(match check_status(s, url) {
                    Err(m) if s >= 500 => Transfer::Retry(m),
                    Err(m) => Transfer::Fatal(m),
                    Ok(()) => Transfer::Fatal(format!("unexpected HTTP status {s}")),
                })
            }
        }
        let mut body = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = out.sync_all();
                    return Err(Transfer::Retry(format!(
                        "transfer interrupted after {have} of {size} bytes: {e}"
                    )));
                }
            };
            out.write_all(&buf[..n]).map_err(io)?;
            have += n as u64;
            on_progress(have, size);
        }
        out.sync_all().map_err(io)?;
        if have < size {
            return Err(Transfer::Retry(format!(
                "transfer ended after {have} of {size} bytes"
            )));
        }
        Ok(())
    }
}

enum Transfer {
    /// Worth another attempt (network trouble, server errors).
    Retry(String),
    Fatal(String),
}

fn check_status(status: u16, what: &str) -> std::result::Result<(), String> {
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(format!(
            "HTTP {status}: {what} needs access (gated or private repository): set HF_TOKEN"
        )),
        404 => Err(format!("HTTP 404: {what} was not found on the hub")),
        s => Err(format!("HTTP {s} from the hub for {what}")),
    }
}

/// The downloaded file against the hub's listing: size, then sha256 (LFS files) or the git
/// blob id (small files). Returns the file's sha256.
/// Whether a listed path names a file inside the repository: relative, and made of plain
/// names only (no `..`, `.` or root).
fn inside_repository(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn verify(path: &Path, file: &RepoFile) -> std::result::Result<String, String> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len != file.size {
        return Err(format!(
            "downloaded {len} bytes, the hub lists {}: partial file removed",
            file.size
        ));
    }
    // The git blob id is only worth computing when the listing has no sha256 to check:
    // weights are LFS files, and a second hash over gigabytes would double the work.
    let want_git_oid = file.sha256.is_none() && file.git_oid.is_some();
    let mut sha256 = Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    sha1.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if want_git_oid {
            sha1.update(&buf[..n]);
        }
    }
    let sha256 = hex(&sha256.finalize());
    let (expected, got, kind) = match (&file.sha256, &file.git_oid) {
        (Some(want), _) => (want.clone(), sha256.clone(), "sha256"),
        (None, Some(oid)) => (oid.clone(), hex(&sha1.finalize()), "git blob id"),
        (None, None) => return Ok(sha256),
    };
    if !expected.eq_ignore_ascii_case(&got) {
        return Err(format!(
            "{kind} mismatch: the hub lists {expected}, the download has {got}: corrupt transfer, file removed"
        ));
    }
    Ok(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> RepoFile {
        RepoFile {
            path: path.into(),
            size: 1,
            sha256: None,
            git_oid: None,
        }
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"<https://h/api/models/o/r/tree/main?cursor=abc>; rel="next""#).as_deref(),
            Some("https://h/api/models/o/r/tree/main?cursor=abc")
        );
        assert_eq!(
            next_link(r#"<https://h/p1>; rel="prev", </p3>; rel="next""#).as_deref(),
            Some("/p3")
        );
        assert_eq!(next_link(r#"<https://h/p1>; rel="prev""#), None);
    }

    #[test]
    fn parses_references() {
        let r =
            HubRef::parse("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf")
                .unwrap();
        assert_eq!(r.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(r.file.as_deref(), Some("qwen2.5-0.5b-instruct-q4_k_m.gguf"));
        assert_eq!(r.revision, "main");
        let r = HubRef::parse("hf:org/repo@v2").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.file.as_deref()),
            ("org/repo", "v2", None)
        );
        assert_eq!(r.display(), "hf:org/repo@v2");
        for bad in [
            "org/repo",
            "hf:repo",
            "hf:a/b/c",
            "hf:../x",
            "hf:org/repo:",
            "hf:o/r:../x",
        ] {
            assert!(HubRef::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn selects_like_ollama() {
        let gguf = [
            file("README.md"),
            file("m-Q8_0.gguf"),
            file("m-Q4_K_M.gguf"),
        ];
        assert_eq!(
            select(&gguf, None, "o/r").unwrap(),
            Selection::Gguf(file("m-Q4_K_M.gguf"))
        );
        assert_eq!(
            select(&gguf, Some("m-Q8_0.gguf"), "o/r").unwrap(),
            Selection::Gguf(file("m-Q8_0.gguf"))
        );
        let err = select(&gguf, Some("nope.gguf"), "o/r")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no file 'nope.gguf'") && err.contains("m-Q8_0.gguf"),
            "{err}"
        );
        let two = [file("a-Q8_0.gguf"), file("a-F16.gguf")];
        assert!(select(&two, None, "o/r")
            .unwrap_err()
            .to_string()
            .contains("several GGUF"));
        let st = [
            file("config.json"),
            file("model.safetensors"),
            file("tokenizer.json"),
            file("README.md"),
            file("onnx/model.onnx"),
        ];
        match select(&st, None, "o/r").unwrap() {
            Selection::Safetensors(files) => {
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                assert_eq!(
                    paths,
                    ["config.json", "model.safetensors", "tokenizer.json"]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(select(&[file("README.md")], None, "o/r").is_err());
    }
}
