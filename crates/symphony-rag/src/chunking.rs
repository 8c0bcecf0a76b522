//! Cutting a document into chunks, each a byte range of the document's text.
//!
//! Sizes are in the embedder's tokens (a chunk past the encoder's limit would be cut there
//! and its tail never embedded). WordPiece tokenizes word by word, so the tokens of a range
//! cut at whitespace are the sum of its words' tokens: sizes here are exact, not estimates.
//!
//! - `fixed`: windows of whole words of at most N tokens, each starting `overlap` tokens
//!   before the previous one ended.
//! - `recursive`: split at paragraphs, then lines, then sentences, then words, only as far
//!   as needed for each piece to fit; then merge neighbours back up to N tokens.
//! - `markdown`: one chunk per heading section (recursive inside sections that are too
//!   long), each labelled with its heading path, "Guide > Install > Linux".
//! - `semantic`: sentences are embedded (each with its neighbours for context) and the text
//!   is cut where consecutive sentences differ most: distances above the given percentile.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a collection cuts its documents (chosen at `rag create`, stored with the collection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase")]
pub enum Chunking {
    Fixed {
        tokens: usize,
        overlap: usize,
    },
    Recursive {
        tokens: usize,
        overlap: usize,
    },
    Markdown {
        tokens: usize,
    },
    Semantic {
        tokens: usize,
        breakpoint_percentile: f32,
    },
}

impl Chunking {
    /// A strategy by name with the given size, overlap where it applies.
    pub fn new(name: &str, tokens: usize, overlap: usize) -> Result<Self> {
        if tokens < 8 {
            return Err(Error::Chunking(format!(
                "chunks of {tokens} tokens are too small (at least 8)"
            )));
        }
        if overlap >= tokens {
            return Err(Error::Chunking(format!(
                "the overlap ({overlap}) must be smaller than the chunk ({tokens} tokens)"
            )));
        }
        Ok(match name {
            "fixed" => Chunking::Fixed { tokens, overlap },
            "recursive" => Chunking::Recursive { tokens, overlap },
            "markdown" => Chunking::Markdown { tokens },
            "semantic" => Chunking::Semantic {
                tokens,
                breakpoint_percentile: 90.0,
            },
            other => {
                return Err(Error::Chunking(format!(
                    "unknown strategy '{other}' (fixed, recursive, markdown or semantic)"
                )))
            }
        })
    }

    pub fn max_tokens(&self) -> usize {
        match *self {
            Chunking::Fixed { tokens, .. }
            | Chunking::Recursive { tokens, .. }
            | Chunking::Markdown { tokens }
            | Chunking::Semantic { tokens, .. } => tokens,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Chunking::Fixed { .. } => "fixed",
            Chunking::Recursive { .. } => "recursive",
            Chunking::Markdown { .. } => "markdown",
            Chunking::Semantic { .. } => "semantic",
        }
    }
}

/// One chunk: bytes `start..end` of the text, and the heading path it sits under.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub heading: Option<String>,
}

/// What chunking needs from the embedder.
pub trait TokenCounter {
    fn count_tokens(&self, text: &str) -> usize;
    /// Vectors for the semantic strategy.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

pub fn chunk(text: &str, strategy: &Chunking, counter: &dyn TokenCounter) -> Result<Vec<Span>> {
    let whole = 0..text.len();
    let spans = match *strategy {
        Chunking::Fixed { tokens, overlap } => fixed(text, whole, tokens, overlap, counter),
        Chunking::Recursive { tokens, overlap } => recursive(text, whole, tokens, overlap, counter),
        Chunking::Markdown { tokens } => return Ok(markdown(text, tokens, counter)),
        Chunking::Semantic {
            tokens,
            breakpoint_percentile,
        } => semantic(text, tokens, breakpoint_percentile, counter)?,
    };
    Ok(spans
        .into_iter()
        .map(|r| Span {
            start: r.start,
            end: r.end,
            heading: None,
        })
        .collect())
}

type Range = std::ops::Range<usize>;

/// Byte ranges of the whitespace-separated words of `text[range]`.
fn words(text: &str, range: Range) -> Vec<Range> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text[range.clone()].char_indices() {
        let at = range.start + i;
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(s..at);
                start = None;
            }
            (false, None) => start = Some(at),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..range.end);
    }
    out
}

fn fixed(text: &str, range: Range, max: usize, overlap: usize, c: &dyn TokenCounter) -> Vec<Range> {
    let words = words(text, range);
    let counts: Vec<usize> = words
        .iter()
        .map(|w| c.count_tokens(&text[w.clone()]).max(1))
        .collect();
    let mut out = Vec::new();
    let mut first = 0;
    while first < words.len() {
        let mut last = first;
        let mut total = counts[first];
        while last + 1 < words.len() && total + counts[last + 1] <= max {
            last += 1;
            total += counts[last];
        }
        out.push(words[first].start..words[last].end);
        if last + 1 >= words.len() {
            break;
        }
        // Step back from the end until `overlap` tokens are repeated, always moving on.
        let mut next = last + 1;
        let mut repeated = 0;
        while next > first + 1 && repeated + counts[next - 1] <= overlap {
            next -= 1;
            repeated += counts[next];
        }
        first = next;
    }
    out
}

const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "];

/// Splits `range` at the first separator that occurs in it (each piece keeps its separator
/// at its end), recursing into pieces still too long, then merges neighbours up to `max`.
fn recursive(
    text: &str,
    range: Range,
    max: usize,
    overlap: usize,
    c: &dyn TokenCounter,
) -> Vec<Range> {
    let mut pieces = Vec::new();
    split_to_fit(text, range, max, 0, c, &mut pieces);
    merge(text, &pieces, max, overlap, c)
}

fn split_to_fit(
    text: &str,
    range: Range,
    max: usize,
    level: usize,
    c: &dyn TokenCounter,
    out: &mut Vec<(Range, usize)>,
) {
    let tokens = c.count_tokens(&text[range.clone()]);
    if tokens == 0 {
        return;
    }
    if tokens <= max {
        out.push((range, tokens));
        return;
    }
    let Some((sep_level, sep)) = SEPARATORS
        .iter()
        .enumerate()
        .skip(level)
        .find(|(_, s)| text[range.clone()].contains(**s))
    else {
        // One enormous "word": cut it into windows of whole characters.
        for piece in fixed(text, range, max, 0, c) {
            let t = c.count_tokens(&text[piece.clone()]);
            out.push((piece, t));
        }
        return;
    };
    let mut start = range.start;
    for (i, _) in text[range.clone()].match_indices(sep) {
        let end = range.start + i + sep.len();
        split_to_fit(text, start..end, max, sep_level + 1, c, out);
        start = end;
    }
    if start < range.end {
        split_to_fit(text, start..range.end, max, sep_level + 1, c, out);
    }
}

/// Joins consecutive pieces while they fit in `max` tokens; each new chunk starts with up
/// to `overlap` tokens of the previous one's last pieces.
fn merge(
    text: &str,
    pieces: &[(Range, usize)],
    max: usize,
    overlap: usize,
    c: &dyn TokenCounter,
) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut total = pieces[i].1;
        while j + 1 < pieces.len() && total + pieces[j + 1].1 <= max {
            j += 1;
            total += pieces[j].1;
        }
        let range = trim(text, pieces[i].0.start..pieces[j].0.end);
        if !range.is_empty() && c.count_tokens(&text[range.clone()]) > 0 {
            out.push(range);
        }
        if j + 1 >= pieces.len() {
            break;
        }
        let mut next = j + 1;
        let mut repeated = 0;
        while next > i + 1 && repeated + pieces[next - 1].1 <= overlap {
            next -= 1;
            repeated += pieces[next].1;
        }
        i = next;
    }
    out
}

/// `range` without leading and trailing whitespace.
fn trim(text: &str, range: Range) -> Range {
    let s = &text[range.clone()];
    let start = range.start + (s.len() - s.trim_start().len());
    let end = range.end - (s.len() - s.trim_end().len());
    start..end.max(start)
}

fn markdown(text: &str, max: usize, c: &dyn TokenCounter) -> Vec<Span> {
    // Heading lines outside fenced code blocks: (byte offset, level, title).
    let mut headings = Vec::new();
    let mut in_fence = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence {
            let level = trimmed.bytes().take_while(|&b| b == b'#').count();
            let rest = &trimmed[level..];
            if (1..=6).contains(&level) && (rest.starts_with(' ') || rest.trim().is_empty()) {
                headings.push((
                    offset,
                    level,
                    rest.trim().trim_end_matches('#').trim().to_string(),
                ));
            }
        }
        offset += line.len();
    }
    let mut bounds: Vec<usize> = headings.iter().map(|h| h.0).collect();
    if bounds.first() != Some(&0) {
        bounds.insert(0, 0);
    }
    bounds.push(text.len());
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        if let Some((_, level, title)) = headings.iter().find(|h| h.0 == start) {
            path.retain(|(l, _)| l < level);
            path.push((*level, title.clone()));
        }
        let heading = (!path.is_empty()).then(|| {
            path.iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" > ")
        });
        for range in recursive(text, start..end, max, 0, c) {
            out.push(Span {
                start: range.start,
                end: range.end,
                heading: heading.clone(),
            });
        }
    }
    out
}

/// Byte ranges of sentences: cut after `.`, `?`, `!` followed by whitespace, and at line
/// breaks.
fn sentences(text: &str) -> Vec<Range> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let end_here = match b {
            b'\n' => true,
            b'.' | b'?' | b'!' => bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace()),
            _ => false,
        };
        if end_here {
            let r = trim(text, start..i + 1);
            if !r.is_empty() {
                out.push(r);
            }
            start = i + 1;
        }
    }
    let r = trim(text, start..text.len());
    if !r.is_empty() {
        out.push(r);
    }
    out
}

fn semantic(text: &str, max: usize, percentile: f32, c: &dyn TokenCounter) -> Result<Vec<Range>> {
    let sents = sentences(text);
    if sents.len() <= 1 {
        return Ok(recursive(text, 0..text.len(), max, 0, c));
    }
    // Each sentence with its neighbours, so a short one is judged in context.
    let windows: Vec<&str> = (0..sents.len())
        .map(|i| {
            let a = sents[i.saturating_sub(1)].start;
            let b = sents[(i + 1).min(sents.len() - 1)].end;
            &text[a..b]
        })
        .collect();
    let vectors = c.embed(&windows)?;
    let distances: Vec<f32> = vectors
        .windows(2)
        .map(|w| 1.0 - w[0].iter().zip(&w[1]).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    let mut sorted = distances.clone();
    sorted.sort_by(f32::total_cmp);
    let rank =
        ((percentile.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f32).round() as usize;
    let threshold = sorted[rank];
    let mut out = Vec::new();
    let mut group_start = sents[0].start;
    for (i, &d) in distances.iter().enumerate() {
        if d > threshold {
            out.extend(recursive(text, group_start..sents[i].end, max, 0, c));
            group_start = sents[i + 1].start;
        }
    }
    out.extend(recursive(
        text,
        group_start..sents[sents.len() - 1].end,
        max,
        0,
        c,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per whitespace-separated word, and per punctuation mark in it.
    struct Words;

    impl TokenCounter for Words {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace()
                .map(|w| 1 + w.chars().filter(|c| c.is_ascii_punctuation()).count())
                .sum()
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            // Two topics: how often a text speaks of the cat, and of markets.
            Ok(texts
                .iter()
                .map(|t| {
                    let cat = t.matches("cat").count() as f32;
                    let market = ["Stocks", "Bonds", "Markets"]
                        .iter()
                        .map(|w| t.matches(w).count())
                        .sum::<usize>() as f32;
                    let norm = (cat * cat + market * market).sqrt().max(1e-6);
                    vec![cat / norm, market / norm]
                })
                .collect())
        }
    }

    fn texts<'a>(text: &'a str, spans: &[Span]) -> Vec<&'a str> {
        spans.iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn fixed_windows_fit_and_overlap() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let spans = chunk(
            text,
            &Chunking::Fixed {
                tokens: 5,
                overlap: 2,
            },
            &Words,
        )
        .unwrap();
        let t = texts(text, &spans);
        assert_eq!(t[0], "one two three four five");
        assert_eq!(t[1], "four five six seven eight");
        assert!(t.iter().all(|c| Words.count_tokens(c) <= 5));
        assert!(t.last().unwrap().ends_with("twelve"));
    }

    #[test]
    fn recursive_prefers_paragraphs_then_sentences() {
        let text = "First para one. Still first.\n\nSecond para is here.\n\nThird one, which is a good deal longer than the rest of them. It has two sentences.";
        let spans = chunk(
            text,
            &Chunking::Recursive {
                tokens: 12,
                overlap: 0,
            },
            &Words,
        )
        .unwrap();
        let t = texts(text, &spans);
        assert!(t.iter().all(|c| Words.count_tokens(c) <= 12), "{t:?}");
        // Paragraphs that fit together are merged; no chunk cuts one that fits.
        assert!(
            t.iter().any(|c| c.ends_with("Second para is here.")),
            "{t:?}"
        );
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(
            t.iter().any(|c| c.ends_with("It has two sentences.")),
            "{t:?}"
        );
        // Every word of the text is in some chunk.
        for w in text.split_whitespace() {
            assert!(t.iter().any(|c| c.contains(w)), "{w} lost: {t:?}");
        }
    }

    #[test]
    fn markdown_sections_carry_their_heading_path() {
        let text = "Intro text.\n# Guide\nWelcome.\n## Install\nRun it.\n```\n# not a heading\n```\n## Use\nCall it.\n# Other\nBye.\n";
        let spans = chunk(text, &Chunking::Markdown { tokens: 50 }, &Words).unwrap();
        let labelled: Vec<(Option<&str>, &str)> = spans
            .iter()
            .map(|s| (s.heading.as_deref(), &text[s.start..s.end]))
            .collect();
        assert_eq!(labelled[0], (None, "Intro text."));
        assert_eq!(labelled[1].0, Some("Guide"));
        assert_eq!(labelled[2].0, Some("Guide > Install"));
        assert!(labelled[2].1.contains("# not a heading"));
        assert_eq!(labelled[3].0, Some("Guide > Use"));
        assert_eq!(labelled[4], (Some("Other"), "# Other\nBye."));
    }

    #[test]
    fn semantic_cuts_where_the_topic_changes() {
        let text =
            "The cat sleeps. The cat purrs. The cat eats. Stocks fell. Bonds rose. Markets closed.";
        let spans = chunk(
            text,
            &Chunking::Semantic {
                tokens: 100,
                breakpoint_percentile: 50.0,
            },
            &Words,
        )
        .unwrap();
        let t = texts(text, &spans);
        assert!(t.iter().any(|c| c.starts_with("Stocks fell")), "{t:?}");
        assert!(t[0].starts_with("The cat sleeps"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Chunking::new("fixed", 4, 0).is_err());
        assert!(Chunking::new("fixed", 100, 100).is_err());
        assert!(Chunking::new("sliding", 100, 10).is_err());
    }
}
