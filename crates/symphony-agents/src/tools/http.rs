//! Web pages for the model: `http_fetch` GETs a URL and returns its text. Off unless the
//! agent names the places it may reach: every URL, and every redirect on the way, must match
//! the allowlist, so a page cannot send the agent somewhere it was not given.

use std::io::Read;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use symphony_rag::extract::html_to_text;

use crate::tool::{ToolError, TypedTool};

/// One entry of an allowlist.
///
/// - `example.com`: that host, any port, http or https;
/// - `*.example.com`: its subdomains (not `example.com` itself);
/// - `127.0.0.1:8080`: that host on that port only;
/// - `https://example.com/docs/`: URLs that begin with this (scheme, host, port and path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    scheme: Option<String>,
    host: String,
    /// `host` is a suffix: `*.host`.
    subdomains: bool,
    port: Option<u16>,
    path_prefix: String,
    /// `path_prefix` as [`normal_path`] gives it.
    normal_prefix: Vec<u8>,
}

impl AllowRule {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("http_allow entry '{entry}': {why}");
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, rest)) => {
                let s = s.to_ascii_lowercase();
                if s != "http" && s != "https" {
                    return Err(bad("only http:// and https:// URLs can be fetched"));
                }
                (Some(s), rest)
            }
            None => (None, entry),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if scheme.is_none() && !path.is_empty() {
            return Err(bad("a path needs the scheme too, as in https://host/path"));
        }
        let (host, subdomains) = match authority.strip_prefix("*.") {
            Some(h) => (h, true),
            None => (authority, false),
        };
        let (host, port) = split_port(host).map_err(|e| bad(&e))?;
        if host.is_empty() || host.contains(['*', '@', ' ']) {
            return Err(bad("expected a host such as example.com or *.example.com"));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            subdomains,
            port,
            normal_prefix: normal_path(path).map_err(|e| bad(&e))?,
            path_prefix: path.to_string(),
        })
    }

    fn allows(&self, url: &Target) -> bool {
        let host_ok = if self.subdomains {
            url.host
                .strip_suffix(&self.host)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1)
        } else {
            url.host == self.host
        };
        host_ok
            && self.scheme.as_ref().is_none_or(|s| *s == url.scheme)
            && self.port.is_none_or(|p| p == url.port)
            && url.path.starts_with(&self.normal_prefix)
    }
}

/// `host[:port]` (an IPv6 host in brackets).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let colon = if authority.starts_with('[') {
        authority.find(']').and_then(|end| {
            let after = &authority[end + 1..];
            after.starts_with(':').then_some(end + 1)
        })
    } else {
        authority.rfind(':')
    };
    match colon {
        Some(i) => {
            let port = authority[i + 1..]
                .parse()
                .map_err(|_| format!("'{}' is not a port", &authority[i + 1..]))?;
            Ok((&authority[..i], Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// A URL path as a server reads it: percent-decoded, with `.` segments dropped
/// (RFC 3986 §5.2.4). A `..` segment is refused rather than resolved: servers differ in
/// how they resolve it (encoded, after a `;`, with backslashes), so no prefix would hold
/// past one.
fn normal_path(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("ASCII hex digits");
                decoded.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').collect();
    let mut path = Vec::with_capacity(decoded.len());
    for (n, segment) in segments.iter().enumerate() {
        let dots = |part: &[u8]| part.split(|&b| b == b';').next() == Some(b"..");
        if segment.split(|&b| b == b'\\').any(dots) {
            return Err(
                "a path with a '..' segment is not fetched; give the page's own path".into(),
            );
        }
        if n > 0 {
            path.push(b'/');
        }
        // A `.` segment stands for the directory it is in: dropped, leaving its slash.
        if *segment != b"." {
            path.extend_from_slice(segment);
        } else if n + 1 < segments.len() {
            path.pop();
        }
    }
    Ok(path)
}

/// A URL taken apart, as far as the allowlist looks at it.
struct Target {
    scheme: String,
    host: String,
    port: u16,
    /// Decoded and normalised ([`normal_path`]).
    path: Vec<u8>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        match url.split_once("://") {
            Some((scheme, _))
                if !scheme.eq_ignore_ascii_case("http")
                    && !scheme.eq_ignore_ascii_case("https") =>
            {
                return Err(format!("'{url}': only http and https URLs can be fetched"));
            }
            None => return Err(format!("'{url}' has no scheme; use http:// or https://")),
            _ => {}
        }
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("'{url}' has no scheme; use http:// or https://"))?;
        let port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("'{url}': only http and https URLs can be fetched")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("'{url}' has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("'{url}': URLs with credentials are not fetched"));
        }
        Ok(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(port),
            path: normal_path(uri.path()).map_err(|e| format!("'{url}': {e}"))?,
            scheme,
        })
    }
}

/// Fetches web pages from the places an allowlist names.
#[derive(Debug, Clone)]
pub struct HttpFetch {
    allow: Vec<AllowRule>,
    agent: ureq::Agent,
    /// Bytes read from a response at most.
    pub max_bytes: usize,
    /// Characters of text the model is given at most.
    pub max_chars: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFetchArgs {
    /// The address of the page, e.g. "https://example.com/page".
    pub url: String,
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

impl HttpFetch {
    /// A fetcher limited to `allow`. An empty list is refused: the tool is off by default.
    pub fn new(allow: &[String], timeout: Duration) -> Result<Self, String> {
        if allow.is_empty() {
            return Err(
                "http_fetch needs `http_allow`: the hosts or URL prefixes it may \
                        reach (it reaches nothing by default)"
                    .into(),
            );
        }
        let allow = allow
            .iter()
            .map(|e| AllowRule::parse(e))
            .collect::<Result<_, _>>()?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // Redirects are followed here, each one checked against the allowlist.
            .max_redirects(0)
            .user_agent(concat!("symphony/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Self {
            allow,
            agent,
            max_bytes: 2 << 20,
            max_chars: 8000,
        })
    }

    fn check(&self, url: &str) -> Result<(), ToolError> {
        let target = Target::parse(url).map_err(ToolError::Failed)?;
        if self.allow.iter().any(|rule| rule.allows(&target)) {
            Ok(())
        } else {
            Err(ToolError::Failed(format!(
                "{url} is not on this agent's allowlist; it may fetch only: {}",
                self.allowed()
            )))
        }
    }

    fn allowed(&self) -> String {
        let show = |r: &AllowRule| {
            let mut s = r
                .scheme
                .as_ref()
                .map(|s| format!("{s}://"))
                .unwrap_or_default();
            if r.subdomains {
                s.push_str("*.");
            }
            s.push_str(&r.host);
            if let Some(p) = r.port {
                s.push_str(&format!(":{p}"));
            }
            s + &r.path_prefix
        };
        self.allow.iter().map(show).collect::<Vec<_>>().join(", ")
    }

    /// The page at `url` as text, with redirects followed within the allowlist.
    pub fn fetch(&self, url: &str) -> Result<String, ToolError> {
        let mut url = url.trim().to_string();
        for _ in 0..=MAX_REDIRECTS {
            self.check(&url)?;
            let mut resp = self
                .agent
                .get(&url)
                .header(
                    "Accept",
                    "text/html, text/plain, application/json, */*;q=0.5",
                )
                .call()
                .map_err(|e| ToolError::Failed(format!("cannot fetch {url}: {e}")))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        ToolError::Failed(format!("{url} redirects ({status}) without a Location"))
                    })?;
                url = resolve(&url, location);
                continue;
            }
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let mut bytes = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(self.max_bytes as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| ToolError::Failed(format!("reading {url}: {e}")))?;
            if !status.is_success() {
                let body = String::from_utf8_lossy(&bytes);
                let body: String = body.trim().chars().take(300).collect();
                return Err(ToolError::Failed(format!(
                    "{url} answered HTTP {status}: {body}"
                )));
            }
            let text = if content_type.starts_with("text/html")
                || content_type.starts_with("application/xhtml")
            {
                html_to_text(&String::from_utf8_lossy(&bytes)).text
            } else if is_text(&content_type, &bytes) {
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                return Err(ToolError::Failed(format!(
                    "{url} is not text ({content_type}, {} bytes)",
                    bytes.len()
                )));
            };
            return Ok(self.clip(text.trim()));
        }
        Err(ToolError::Failed(format!(
            "more than {MAX_REDIRECTS} redirects from the URL asked for"
        )))
    }

    fn clip(&self, text: &str) -> String {
        let total = text.chars().count();
        if total <= self.max_chars {
            return text.to_string();
        }
        let mut out: String = text.chars().take(self.max_chars).collect();
        out.push_str(&format!(
            "\n[... {} more characters not shown]",
            total - self.max_chars
        ));
        out
    }
}

fn is_text(content_type: &str, bytes: &[u8]) -> bool {
    let textual = [
        "text/",
        "application/json",
        "application/xml",
        "+json",
        "+xml",
    ];
    if textual.iter().any(|t| content_type.contains(t)) {
        return true;
    }
    // No type given: text if it decodes and has no NUL bytes.
    content_type.is_empty() && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// `location` made absolute against `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let Some((scheme, rest)) = base.split_once("://") else {
        return location.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return origin + location;
    }
    // Relative to the base's directory.
    let path = &rest[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{origin}{dir}{location}")
}

impl TypedTool for HttpFetch {
    type Args = HttpFetchArgs;

    fn name(&self) -> String {
        "http_fetch".into()
    }

    fn description(&self) -> String {
        format!(
            "Fetches a web page and returns its text. Only these places can be reached: {}.",
            self.allowed()
        )
    }

    fn run(&self, args: HttpFetchArgs) -> Result<String, ToolError> {
        self.fetch(&args.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entry: &str, url: &str) -> bool {
        AllowRule::parse(entry)
            .unwrap()
            .allows(&Target::parse(url).unwrap())
    }

    #[test]
    fn allowlist_entries_match_what_they_say() {
        assert!(allows("example.com", "https://example.com/a"));
        assert!(allows("example.com", "http://EXAMPLE.com:8080/"));
        assert!(!allows("example.com", "https://example.com.evil.net/"));
        assert!(!allows("example.com", "https://www.example.com/"));
        assert!(allows("*.example.com", "https://docs.example.com/x"));
        assert!(!allows("*.example.com", "https://example.com/x"));
        assert!(!allows("*.example.com", "https://badexample.com/x"));
        assert!(allows("127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(!allows("127.0.0.1:8080", "http://127.0.0.1:8081/x"));
        assert!(allows(
            "https://example.com/docs/",
            "https://example.com/docs/a"
        ));
        assert!(!allows(
            "https://example.com/docs/",
            "https://example.com/admin"
        ));
        assert!(!allows(
            "https://example.com/docs/",
            "http://example.com/docs/a"
        ));
        assert!(allows("[::1]:9000", "http://[::1]:9000/"));
    }

    #[test]
    fn bad_entries_and_urls_are_named() {
        for (entry, expected) in [
            ("ftp://example.com", "only http"),
            ("example.com/docs", "needs the scheme"),
            ("example.com:http", "not a port"),
            ("", "expected a host"),
        ] {
            let e = AllowRule::parse(entry).unwrap_err();
            assert!(e.contains(expected), "{entry}: {e}");
        }
        assert!(HttpFetch::new(&[], Duration::from_secs(1))
            .unwrap_err()
            .contains("reaches nothing by default"));
        let fetch = HttpFetch::new(&["example.com".into()], Duration::from_secs(1)).unwrap();
        for (url, expected) in [
            ("file:///etc/passwd", "only http and https"),
            ("https://user:pw@example.com/", "credentials"),
            (
                "https://other.org/",
                "not on this agent's allowlist; it may fetch only: example.com",
            ),
            ("example.com/page", "no scheme"),
        ] {
            let e = fetch.fetch(url).unwrap_err().to_string();
            assert!(e.contains(expected), "{url}: {e}");
        }
    }

    #[test]
    fn redirect_locations_are_made_absolute() {
        assert_eq!(resolve("http://h:1/a/b?q", "c"), "http://h:1/a/c");
        assert_eq!(resolve("http://h:1/a/b", "/c"), "http://h:1/c");
        assert_eq!(resolve("http://h:1/a/b", "//o/c"), "http://o/c");
        assert_eq!(resolve("http://h", "c"), "http://h/c");
        assert_eq!(resolve("http://h/a", "https://x/y"), "https://x/y");
    }
}
