//! Byte-level BPE (GPT-2 style): bytes are mapped to printable characters, then the merges
//! are applied lowest rank first, leftmost first on ties, as llama.cpp and Hugging Face do.

use std::collections::HashMap;

use super::TokenId;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Bpe {
    /// (left, right) → (rank, merged token).
    merges: HashMap<(TokenId, TokenId), (u32, TokenId)>,
    /// Token id of each single byte's character, if the vocabulary has it.
    byte_token: [Option<TokenId>; 256],
    char_to_byte: HashMap<char, u8>,
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
/// themselves, the others to code points from U+0100 on.
fn bytes_to_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).expect("code points 256..324 are valid");
            next += 1;
            c
        };
    }
    table
}

impl Bpe {
    pub fn new(tokens: &[String], merges: &[&str]) -> Result<Self> {
        let token_to_id: HashMap<String, TokenId> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as TokenId))
            .collect();
        let table = bytes_to_chars();
        let mut byte_token = [None; 256];
        let mut char_to_byte = HashMap::with_capacity(256);
        for (b, c) in table.iter().enumerate() {
            byte_token[b] = token_to_id.get(c.to_string().as_str()).copied();
            char_to_byte.insert(*c, b as u8);
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = merge.split_once(' ').ok_or_else(|| {
                Error::Tokenizer(format!(
                    "merge #{rank} '{merge}' is not two tokens separated by a space"
                ))
            })?;
            let (Some(&l), Some(&r), Some(&m)) = (
                token_to_id.get(left),
                token_to_id.get(right),
                token_to_id.get(&format!("{left}{right}")),
            ) else {
                // A merge whose parts or result are not in the vocabulary can never apply.
                continue;
            };
            merge_map.entry((l, r)).or_insert((rank as u32, m));
        }
        Ok(Self {
            merges: merge_map,
            byte_token,
            char_to_byte,
        })
    }

    /// Encodes one pre-tokenized piece, appending ids to `out`.
    pub fn encode_piece(&self, piece: &str, out: &mut Vec<TokenId>) {
        // Start from one symbol per byte. No shortcut for pieces that are whole tokens: a
        // token need not be reachable through the merges, and the reference never takes it.
        let mut symbols: Vec<TokenId> = Vec::with_capacity(piece.len());
        for b in piece.bytes() {
            match self.byte_token[b as usize] {
                Some(id) => symbols.push(id),
                // A vocabulary without this byte cannot encode it: skip, as llama.cpp does.
                None => continue,
            }
        }
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.merges
                        .get(&(pair[0], pair[1]))
                        .map(|&(rank, merged)| (rank, i, merged))
                })
                .min_by_key(|&(rank, i, _)| (rank, i));
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        out.extend_from_slice(&symbols);
    }

    /// The bytes behind a normal token's text.
    pub fn decode_token_text(&self, text: &str) -> Vec<u8> {
        text.chars()
            .flat_map(|c| match self.char_to_byte.get(&c) {
                Some(&b) => vec![b],
                // Not a byte-mapped character (a hand-added token): keep its UTF-8.
                None => c.to_string().into_bytes(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let t = bytes_to_chars();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn merges_apply_by_rank() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "b c" ranks before "a b": "abc" → a + bc → no merge "a bc" → stays [a, bc].
        let bpe = Bpe::new(&tokens, &["b c", "a b"]).unwrap();
        let mut out = Vec::new();
        bpe.encode_piece("abcab", &mut out);
        assert_eq!(out, vec![0, 4, 3]);
        // "abc" is in the vocabulary but unreachable through the merges: BPE must not jump to it.
        out.clear();
        bpe.encode_piece("abc", &mut out);
        assert_eq!(out, vec![0, 4]);
        assert_eq!(bpe.decode_token_text("Ġa"), b" a");
    }
}
