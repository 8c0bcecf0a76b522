//! The text of a document file, by its extension: plain text and Markdown as they are,
//! HTML without its markup, PDF through its text operators (pure Rust, page by page).
//!
//! HTML is read by a small tolerant scanner rather than a full parser: chunks need the
//! visible text in reading order, with block elements as line breaks, not a DOM.

use std::path::Path;

use crate::error::{Error, Result};

/// A document's format, from its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" | "rst" | "log" | "csv" | "json" | "rs" | "py" | "toml" | "yaml"
            | "yml" => Format::Text,
            "md" | "markdown" | "mdx" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "pdf" => Format::Pdf,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

/// A document's text and, where the format has one, its title.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub text: String,
    pub title: Option<String>,
}

/// Extracts the text of the file's `bytes`.
pub fn extract(path: &Path, format: Format, bytes: &[u8]) -> Result<Extracted> {
    match format {
        Format::Text | Format::Markdown => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let title = match format {
                Format::Markdown => text
                    .lines()
                    .find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_string())),
                _ => None,
            };
            Ok(Extracted { text, title })
        }
        Format::Html => Ok(html_to_text(&String::from_utf8_lossy(bytes))),
        Format::Pdf => pdf_to_text(path, bytes),
    }
}

/// The text of a PDF, page by page, pages separated by a form feed (as `pdftotext` does) so
/// that no chunk reads across a page break unnoticed.
///
/// The extractor panics on some malformed files instead of failing; a panic is caught and
/// reported as this file's error so that one bad PDF cannot end an ingest.
pub fn pdf_to_text(path: &Path, bytes: &[u8]) -> Result<Extracted> {
    let failed = |message: String| Error::Extract {
        path: path.to_path_buf(),
        message: format!("not a readable PDF: {message}"),
    };
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the extractor gave up".into());
            failed(message)
        })?
        .map_err(|e| failed(e.to_string()))?;
    let pages: Vec<String> = pages.iter().map(|p| tidy_pdf_page(p)).collect();
    let text = pages.join("\n\x0c\n");
    if text
        .trim_matches(|c: char| c.is_whitespace() || c == '\x0c')
        .is_empty()
    {
        return Err(Error::Extract {
            path: path.to_path_buf(),
            message: "the PDF has no text layer (a scan needs OCR first)".into(),
        });
    }
    let title = pages
        .first()
        .and_then(|p| p.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(|l| l.chars().take(200).collect());
    Ok(Extracted { text, title })
}

/// Trailing spaces cut and runs of blank lines folded to one: PDF layout leaves many.
fn tidy_pdf_page(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut blank = 0;
    for line in page.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Elements whose content is never shown.
const HIDDEN: &[&str] = &["script", "style", "noscript", "template", "svg"];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "pre",
    "blockquote",
    "hr",
    "dd",
    "dt",
    "dl",
    "figure",
    "figcaption",
    "form",
    "title",
    "body",
    "html",
    "td",
    "th",
];

pub fn html_to_text(html: &str) -> Extracted {
    let mut out = String::with_capacity(html.len() / 2);
    let mut title = None;
    let mut rest = html;
    let mut pre_depth = 0usize;
    while let Some(lt) = rest.find('<') {
        push_text(&mut out, &rest[..lt], pre_depth > 0);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            push_text(&mut out, rest, pre_depth > 0);
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name == "title" && !closing {
            // The title is metadata, not body text.
            let end = find_ci(rest, "</title").unwrap_or(rest.len());
            let t = decode_entities(rest[..end].trim());
            if !t.is_empty() && title.is_none() {
                title = Some(t);
            }
            rest = rest[end..].find('>').map_or("", |g| &rest[end + g + 1..]);
            continue;
        }
        if !closing && HIDDEN.contains(&name.as_str()) {
            // Skip to the matching end tag (these elements do not nest in practice).
            let end_tag = format!("</{name}");
            rest = match find_ci(rest, &end_tag) {
                Some(e) => rest[e..].find('>').map_or("", |g| &rest[e + g + 1..]),
                None => "",
            };
            continue;
        }
        if name == "pre" {
            pre_depth = if closing {
                pre_depth.saturating_sub(1)
            } else {
                pre_depth + 1
            };
        }
        if BLOCKS.contains(&name.as_str()) {
            if matches!(name.as_str(), "td" | "th") && closing {
                out.push('\t');
            } else if !out.ends_with('\n') && !out.is_empty() {
                out.push('\n');
            }
            if matches!(name.as_str(), "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6") && closing {
                out.push('\n');
            }
        }
    }
    push_text(&mut out, rest, pre_depth > 0);
    // Blank-line runs down to one blank line.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank == 1 && !text.is_empty() {
                text.push('\n');
            }
        } else {
            blank = 0;
            text.push_str(line);
            text.push('\n');
        }
    }
    Extracted {
        text: text.trim().to_string(),
        title,
    }
}

/// Appends text between tags, whitespace collapsed (kept as is inside `<pre>`).
fn push_text(out: &mut String, raw: &str, preformatted: bool) {
    if raw.is_empty() {
        return;
    }
    let decoded = decode_entities(raw);
    if preformatted {
        out.push_str(&decoded);
        return;
    }
    // A tag between two pieces of text separates them only where the text has whitespace:
    // `<b>5813</b>.` reads "5813.", `Sym<i>phony</i>` reads "Symphony".
    let joined_to_before = !decoded.starts_with(char::is_whitespace);
    for (i, word) in decoded.split_whitespace().enumerate() {
        let separate = i > 0 || !joined_to_before;
        if separate && !out.is_empty() && !out.ends_with(['\n', ' ', '\t']) {
            out.push(' ');
        }
        out.push_str(word);
    }
    if decoded.ends_with(char::is_whitespace) && !out.ends_with(['\n', ' ']) && !out.is_empty() {
        out.push(' ');
    }
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let lower = haystack.to_ascii_lowercase();
    lower.find(&needle.to_ascii_lowercase())
}

/// Numeric character references and the named entities common in prose.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|&e| e <= 12);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = if let Some(num) = name.strip_prefix('#') {
                let n = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse().ok(),
                };
                n.and_then(char::from_u32)
            } else {
                Some(match name {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    "nbsp" => ' ',
                    "mdash" => '—',
                    "ndash" => '–',
                    "hellip" => '…',
                    "lsquo" => '‘',
                    "rsquo" => '’',
                    "ldquo" => '“',
                    "rdquo" => '”',
                    "copy" => '©',
                    "reg" => '®',
                    "deg" => '°',
                    "eacute" => 'é',
                    "egrave" => 'è',
                    "uuml" => 'ü',
                    "ouml" => 'ö',
                    "auml" => 'ä',
                    _ => return None,
                })
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_visible_text_in_reading_order() {
        let html = r#"<!DOCTYPE html><html><head><title>Moons &amp; Rings</title>
            <style>p { color: red }</style><script>var x = "<p>no</p>";</script></head>
            <body><h1>Saturn</h1><p>Saturn has <b>146</b>&nbsp;known <i>moon</i>s.<br>Titan is the largest.</p>
            <!-- a comment --><ul><li>Rings: ice</li><li>Day: 10.7&nbsp;h</li></ul>
            <pre>  keep   spacing</pre><p>caf&#233; &#x263A; &unknown; AT&T</p></body></html>"#;
        let e = html_to_text(html);
        assert_eq!(e.title.as_deref(), Some("Moons & Rings"));
        let t = e.text;
        assert!(t.starts_with("Saturn\n"), "{t}");
        assert!(
            t.contains("Saturn has 146 known moons.\nTitan is the largest."),
            "{t}"
        );
        assert!(t.contains("Rings: ice\nDay: 10.7 h"), "{t}");
        assert!(t.contains("  keep   spacing"), "{t}");
        assert!(t.contains("café ☺ &unknown; AT&T"), "{t}");
        assert!(
            !t.contains("color") && !t.contains("var x") && !t.contains("comment"),
            "{t}"
        );
    }

    /// tests/fixtures/docs/probes.pdf, written by fpdf2 (scripts/reference/make_pdf_fixture.py).
    const PROBES_PDF: &[u8] = include_bytes!("../../../tests/fixtures/docs/probes.pdf");

    /// Whitespace folded, for comparisons that should not depend on how lines were broken.
    fn folded(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn pdf_text_is_read_page_by_page() {
        let e = extract(Path::new("probes.pdf"), Format::Pdf, PROBES_PDF).unwrap();
        assert_eq!(e.title.as_deref(), Some("Deep Space Probes"));
        let pages: Vec<String> = e.text.split('\x0c').map(folded).collect();
        assert_eq!(pages.len(), 2, "{:?}", e.text);
        for sentence in [
            "Voyager 1 was launched in September 1977 and crossed the heliopause in 2012.",
            "Its twin, Voyager 2, is the only spacecraft to have visited Uranus and Neptune.",
        ] {
            assert!(
                pages[0].contains(sentence),
                "{sentence:?} in {:?}",
                pages[0]
            );
        }
        assert!(pages[1].starts_with("Fuel and power"), "{:?}", pages[1]);
        assert!(
            pages[1].contains("radioisotope thermoelectric generators fed by plutonium-238."),
            "{:?}",
            pages[1]
        );
    }

    #[test]
    fn broken_pdfs_are_errors_not_panics() {
        for bytes in [
            &b"%PDF-1.4 this is not really a pdf"[..],
            &PROBES_PDF[..PROBES_PDF.len() / 2],
            b"",
        ] {
            let e = extract(Path::new("bad.pdf"), Format::Pdf, bytes);
            match e {
                Err(Error::Extract { message, .. }) => {
                    assert!(message.contains("PDF"), "{message}")
                }
                other => panic!("expected an extraction error, got {other:?}"),
            }
        }
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of(Path::new("a/b.MD")), Some(Format::Markdown));
        assert_eq!(Format::of(Path::new("x.htm")), Some(Format::Html));
        assert_eq!(Format::of(Path::new("x.pdf")), Some(Format::Pdf));
        assert_eq!(Format::of(Path::new("x.png")), None);
        let md = extract(
            Path::new("n.md"),
            Format::Markdown,
            b"intro\n# Title here\ntext",
        )
        .unwrap();
        assert_eq!(md.title.as_deref(), Some("Title here"));
    }
}
