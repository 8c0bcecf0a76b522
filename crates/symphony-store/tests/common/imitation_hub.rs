//! An imitation of the Hugging Face Hub's download endpoints, served over real HTTP on a
//! local port. Tests cannot reach the real hub from here; this stands in for it at the network
//! boundary, speaking the same routes and headers `huggingface_hub` relies on:
//! - `GET /api/models/{org}/{repo}/tree/main?recursive=true`: the file listing, with `lfs`
//!   entries (sha256, size) for weights and git blob ids for small files;
//! - `GET /{org}/{repo}/resolve/main/{file}`: small files directly, LFS files by a 302 to a
//!   separate "CDN" route, both honouring `Range: bytes=N-` with 206 replies.
//!
//! It can cut one transfer short (headers promise the whole file, the connection closes
//! early), and it records every request so that tests can see the ranges asked for.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha1::Digest as _;

/// One file of an imitated repository.
#[derive(Clone)]
pub struct HubFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Stored with LFS (listed with a sha256, served through the CDN redirect).
    pub lfs: bool,
    /// A sha256 to list instead of the real one (a corrupt upload).
    pub listed_sha256: Option<String>,
}

impl HubFile {
    pub fn new(path: &str, bytes: Vec<u8>, lfs: bool) -> Self {
        Self {
            path: path.into(),
            bytes,
            lfs,
            listed_sha256: None,
        }
    }
}

/// A request the imitation hub received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// The start of `Range: bytes=N-`, if the request had one.
    pub range_start: Option<u64>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

struct State {
    repos: HashMap<String, Vec<HubFile>>,
    /// Entries per listing page, when the listing is paged (`Link: <…>; rel="next"`).
    page_size: Option<usize>,
    /// `(file path, bytes)`: the next transfer of that file stops after that many bytes.
    cut: Option<(String, usize)>,
    seen: Vec<Seen>,
}

pub struct ImitationHub {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl ImitationHub {
    pub fn start(repos: Vec<(&str, Vec<HubFile>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            repos: repos
                .into_iter()
                .map(|(name, files)| (name.to_string(), files))
                .collect(),
            cut: None,
            seen: Vec::new(),
            page_size: None,
        }));
        let shared = state.clone();
        let base = endpoint.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let base = base.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &base);
                });
            }
        });
        Self { endpoint, state }
    }

    /// The next transfer of `path` stops after `bytes` bytes.
    pub fn cut_next_transfer(&self, path: &str, bytes: usize) {
        self.state.lock().unwrap().cut = Some((path.to_string(), bytes));
    }

    /// Pages listings `size` entries at a time, the next page named in a `Link` header.
    pub fn page_listings(&self, size: usize) {
        self.state.lock().unwrap().page_size = Some(size);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn git_oid(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn serve(stream: TcpStream, state: &Mutex<State>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range_start = None;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse().ok();
        }
        if lower.starts_with("authorization:") {
            authorization = Some(line["authorization:".len()..].trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let cursor: usize = target
        .split_once("cursor=")
        .and_then(|(_, c)| c.split('&').next()?.parse().ok())
        .unwrap_or(0);
    state.lock().unwrap().seen.push(Seen {
        path: path.clone(),
        range_start,
        authorization,
    });
    let mut out = stream;

    if let Some(repo) = path
        .strip_prefix("/api/models/")
        .and_then(|p| p.strip_suffix("/tree/main"))
    {
        let state = state.lock().unwrap();
        let Some(files) = state.repos.get(repo) else {
            return reply(
                &mut out,
                "404 Not Found",
                &[],
                b"{\"error\":\"Repository not found\"}",
            );
        };
        let listing: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut entry = serde_json::json!({
                    "type": "file",
                    "path": f.path,
                    "size": f.bytes.len(),
                    "oid": git_oid(&f.bytes),
                });
                if f.lfs {
                    entry["lfs"] = serde_json::json!({
                        "oid": f.listed_sha256.clone().unwrap_or_else(|| sha256_hex(&f.bytes)),
                        "size": f.bytes.len(),
                        "pointerSize": 134,
                    });
                }
                entry
            })
            .collect();
        let (page, link) = match state.page_size {
            Some(size) => {
                let end = (cursor + size).min(listing.len());
                // A relative link, as some mirrors give; the hub gives absolute ones.
                let link = (end < listing.len()).then(|| {
                    format!(
                        "</api/models/{repo}/tree/main?recursive=true&cursor={end}>; rel=\"next\""
                    )
                });
                (listing[cursor.min(end)..end].to_vec(), link)
            }
            None => (listing, None),
        };
        let body = serde_json::to_vec(&page).unwrap();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(link) = &link {
            headers.push(("Link", link));
        }
        return reply(&mut out, "200 OK", &headers, &body);
    }

    // `/{org}/{repo}/resolve/main/{file}` or the CDN route `/cdn/{org}/{repo}/{file}`.
    let (cdn, rest) = match path.strip_prefix("/cdn/") {
        Some(rest) => (true, rest.to_string()),
        None => (false, path.trim_start_matches('/').to_string()),
    };
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    let (repo, file) = if cdn {
        match parts.as_slice() {
            [org, name, file] => (format!("{org}/{name}"), file.to_string()),
            _ => return reply(&mut out, "404 Not Found", &[], b"not found"),
        }
    } else {
        match parts.as_slice() {
            [org, name, tail] => match tail.strip_prefix("resolve/main/") {
                Some(file) => (format!("{org}/{name}"), file.to_string()),
                None => return reply(&mut out, "404 Not Found", &[], b"not found"),
            },
            _ => return reply(&mut out, "404 Not Found", &[], b"not found"),
        }
    };
    let (file_entry, cut) = {
        let mut state = state.lock().unwrap();
        let entry = state
            .repos
            .get(&repo)
            .and_then(|files| files.iter().find(|f| f.path == file).cloned());
        let cut = match (&state.cut, &entry) {
            (Some((p, n)), Some(e)) if *p == e.path && (cdn || !e.lfs) => {
                let n = *n;
                state.cut = None;
                Some(n)
            }
            _ => None,
        };
        (entry, cut)
    };
    let Some(f) = file_entry else {
        return reply(&mut out, "404 Not Found", &[], b"Entry not found");
    };
    if f.lfs && !cdn {
        let location = format!("{base}/cdn/{repo}/{file}");
        return reply(
            &mut out,
            "302 Found",
            &[
                ("Location", &location),
                ("X-Linked-Etag", &sha256_hex(&f.bytes)),
            ],
            b"",
        );
    }
    let start = range_start.unwrap_or(0) as usize;
    if start > f.bytes.len() {
        return reply(&mut out, "416 Range Not Satisfiable", &[], b"");
    }
    let body = &f.bytes[start..];
    let status = if range_start.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let content_range = format!(
        "bytes {start}-{}/{}",
        f.bytes.len().max(1) - 1,
        f.bytes.len()
    );
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if range_start.is_some() {
        headers.push(("Content-Range", &content_range));
    }
    match cut {
        // Promise the whole body, send part of it, and hang up.
        Some(n) => {
            write_head(&mut out, status, &headers, body.len())?;
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()
        }
        None => reply(&mut out, status, &headers, body),
    }
}

fn write_head(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    len: usize,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn reply(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    write_head(out, status, headers, body.len())?;
    out.write_all(body)?;
    out.flush()
}
