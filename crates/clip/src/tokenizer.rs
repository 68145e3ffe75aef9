//! The CLIP byte-level BPE tokenizer, matching open_clip's `tokenize()`.
//!
//! [`ClipTokenizer`] reproduces `open_clip.tokenize(text, context_length)` (open_clip 3.x,
//! `SimpleTokenizer` with the default `clean="lower"`): for each text it returns
//! `[START_OF_TEXT, ids..., END_OF_TEXT, 0, 0, ...]`; a text whose ids do not fit is cut to
//! `context_length` ids and its last id is set to [`END_OF_TEXT`].
//!
//! # Vocabulary
//!
//! The vocabulary is built from `bpe_simple_vocab_16e6.txt.gz` (embedded in the crate; MIT,
//! shipped with OpenAI CLIP and open_clip) exactly as CLIP does: the 256 byte-to-unicode
//! characters in CLIP's order (printable bytes `!..=~`, `¡..=¬`, `®..=ÿ` first, then the other
//! bytes mapped to U+0100 upwards), the same 256 characters followed by `</w>`, one token per merge
//! (lines 1 to 48894 of the file, after the header line), then `<|startoftext|>` (49406) and
//! `<|endoftext|>` (49407): 49408 ids. Merging is done by the `tokenizers` crate's BPE model
//! (`end_of_word_suffix = "</w>"`, with its word cache).
//!
//! # Text pipeline
//!
//! 1. A re-implementation of the deterministic, character-level parts of `ftfy.fix_text`
//!    (ftfy 6.x defaults), per line segment and repeated until nothing changes: HTML-entity
//!    decoding in ftfy's conservative "auto" mode (only `&name;` / `&#...;` forms, plus ftfy's
//!    upper-cased Latin names such as `&EACUTE;`, and only on lines before the first line that
//!    contains `<`), C1 control characters read as Windows-1252, Latin ligatures split
//!    (`ﬁ` → `fi`), full-width and half-width forms replaced (`Ａ` → `A`, U+3000 → space), curly
//!    quotes straightened (`’` → `'`), line breaks unified, ANSI terminal escapes and control
//!    characters (U+0000-U+0008, U+000B, U+000E-U+001F, U+007F, U+206A-U+206F, U+FEFF,
//!    U+FFF9-U+FFFC) removed, Unicode NFC.
//! 2. Python's `html.unescape`, twice (named entities with and without `;`, numeric references
//!    with HTML5's replacement rules).
//! 3. Whitespace (Python's `str.isspace`) stripped and runs collapsed to one space; lower-cased.
//! 4. Split into words with CLIP's pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (case-insensitive), so every
//!    digit is its own word; each word is UTF-8 encoded, its bytes mapped to CLIP's
//!    byte-to-unicode characters and merged by BPE.
//!
//! Special tokens are never produced from text: a text that spells `<|endoftext|>`,
//! `<|startoftext|>`, `<end_of_text>` or `<start_of_text>` is tokenized as plain characters.
//!
//! # Known differences from open_clip (Python)
//!
//! - **ftfy's mojibake repair is not done** (`fix_encoding`, `restore_byte_a0`,
//!   `replace_lossy_sequences`, `decode_inconsistent_utf8`): text such as `"cafÃ©"` is tokenized as
//!   written, where open_clip first turns it into `"café"`. C1 control characters (U+0080-U+009F),
//!   which ftfy sees as a sign of mojibake, are always read as Windows-1252 here; ftfy's encoding
//!   detection may decide otherwise for some texts.
//! - **Spelled special tokens.** open_clip 3.x puts its own special-token names
//!   (`<start_of_text>`, `<end_of_text>`) into the word pattern, so a text containing
//!   `<end_of_text>` gets id 49407 in the middle of the text. Here (following the project's
//!   fixture protocol) such text is plain characters. `<|endoftext|>` / `<|startoftext|>` are plain
//!   characters in both.
//! - **Unicode versions.** Python 3.11 lower-cases with Unicode 14.0 tables, Rust's standard
//!   library with newer ones: 55 code points assigned since (for example U+A7CB, U+10D50-U+10D65,
//!   U+16EA0-U+16EB8) are lower-cased here and left alone there. The other way round, Python's
//!   `regex` module (2026.11.19) already knows Unicode 17.0 while the `regex` crate does not: about 17,500
//!   code points new in Unicode 17 (for example U+0558, U+10940-U+10959, U+18E00-U+19191,
//!   U+3D000-U+3FC3F) are letters or digits there and symbols here. Every other code point was
//!   checked between two letters against open_clip 3.3.0 and gives the same ids.
//! - **Pattern quirks reproduced.** Python's `regex` module with `IGNORECASE` matches U+0345
//!   (COMBINING GREEK YPOGEGRAMMENI) with none of the alternatives, so it is dropped; the ASCII
//!   separators U+001C-U+001F are whitespace for `str.split` but not for `\s` (ftfy removes them
//!   anyway). `'ſ` (long s) counts as the contraction `'s`. These are reproduced.
//! - Lone surrogates cannot occur in a Rust `&str` (ftfy would replace them with U+FFFD).
//!
//! Apart from these, random texts built from entities, quotes, ligatures, full-width forms,
//! control and C1 characters, ANSI escapes, combining marks, line breaks and contractions
//! (120,000 of them) give the same ids as open_clip 3.3.0 with ftfy 6.3.1; the only
//! differences seen (about 0.8 % of those texts) disappear when ftfy's `fix_encoding` is
//! switched off, i.e. they are mojibake repairs.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;
use tokenizers::Model;
use tokenizers::models::bpe::{BPE, Vocab};
use unicode_normalization::UnicodeNormalization;

/// Id of the start-of-text token (`<|startoftext|>`), the first id of every tokenized text.
pub const START_OF_TEXT: u32 = 49406;
/// Id of the end-of-text token (`<|endoftext|>`), the largest id; it follows the text's ids.
pub const END_OF_TEXT: u32 = 49407;
/// CLIP's context length: the number of ids per tokenized text.
pub const CONTEXT_LENGTH: usize = 77;
/// Number of ids in the CLIP vocabulary (256 bytes, 256 bytes + `</w>`, 48894 merges, 2 specials).
pub const VOCAB_SIZE: usize = 49408;
/// Number of merges CLIP reads from the vocabulary file (lines 1 to 48894 after the header).
pub const NUM_MERGES: usize = 48894;
/// Name of the start-of-text token in the vocabulary.
pub const START_OF_TEXT_TOKEN: &str = "<|startoftext|>";
/// Name of the end-of-text token in the vocabulary.
pub const END_OF_TEXT_TOKEN: &str = "<|endoftext|>";

/// The end-of-word marker appended to the last symbol of every word.
const END_OF_WORD: &str = "</w>";
/// The vocabulary shipped with CLIP: a header line, then one merge per line.
static EMBEDDED_VOCAB: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");
/// Name used for the embedded vocabulary in error messages.
const EMBEDDED_NAME: &str = "embedded bpe_simple_vocab_16e6.txt.gz";
/// Words shorter than this many bytes are kept in the BPE model's cache.
const BPE_CACHE_CAPACITY: usize = 65_536;

/// Errors from loading the vocabulary or tokenizing text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The vocabulary file could not be read.
    #[error("cannot read CLIP BPE vocabulary file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The vocabulary file was read but is not a CLIP BPE merges file.
    #[error("invalid CLIP BPE vocabulary ({origin}): {reason}")]
    InvalidVocab {
        /// The file path, or a name for the embedded vocabulary.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `tokenizers` BPE model could not be built from the vocabulary.
    #[error("cannot build the BPE model from the CLIP vocabulary ({origin}): {message}")]
    Model {
        /// The file path, or a name for the embedded vocabulary.
        origin: String,
        /// The error reported by the `tokenizers` crate.
        message: String,
    },
    /// The BPE model failed on a word (not expected with a valid vocabulary).
    #[error("BPE failed on word {word:?}: {message}")]
    Bpe {
        /// The word (in CLIP's byte-to-unicode characters) that failed.
        word: String,
        /// The error reported by the `tokenizers` crate.
        message: String,
    },
    /// A context length of zero was requested (open_clip rejects it too).
    #[error("context length must be at least 1")]
    ZeroContextLength,
}

/// CLIP's byte-level BPE tokenizer (open_clip `SimpleTokenizer` semantics).
///
/// Cheap to share between threads (`Send + Sync`); the BPE word cache is internal.
#[derive(Clone)]
pub struct ClipTokenizer {
    /// The BPE model: vocabulary, merges and word cache.
    bpe: BPE,
    /// Byte value -> CLIP's printable stand-in character.
    byte_encoder: [char; 256],
    /// Inverse of `byte_encoder`.
    byte_decoder: HashMap<char, u8>,
    /// Id -> token string (all `VOCAB_SIZE` ids).
    id_to_token: Vec<String>,
    /// CLIP's word pattern (without special-token alternatives).
    pattern: Regex,
}

impl fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClipTokenizer").field("vocab_size", &self.id_to_token.len()).finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Builds the tokenizer from the vocabulary embedded in the crate
    /// (`bpe_simple_vocab_16e6.txt.gz`).
    pub fn new() -> Result<Self, TokenizerError> {
        let text = decode_vocab_bytes(EMBEDDED_VOCAB, EMBEDDED_NAME)?;
        Self::from_merges_text(&text, EMBEDDED_NAME)
    }

    /// Builds the tokenizer from a CLIP merges file: gzip-compressed (like
    /// `bpe_simple_vocab_16e6.txt.gz`) or plain text. The file must have a header line followed
    /// by at least 48894 merges of two space-separated symbols; lines after those are ignored,
    /// as in CLIP.
    pub fn from_vocab_file(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })?;
        let origin = path.display().to_string();
        let text = decode_vocab_bytes(&bytes, &origin)?;
        Self::from_merges_text(&text, &origin)
    }

    /// Builds the tokenizer from the decompressed text of a merges file.
    fn from_merges_text(text: &str, origin: &str) -> Result<Self, TokenizerError> {
        let invalid = |reason: String| TokenizerError::InvalidVocab { origin: origin.to_string(), reason };
        // Python: `split('\n')[1:48895]`, then `tuple(line.split())`.
        let lines: Vec<&str> = text.split('\n').skip(1).take(NUM_MERGES).collect();
        if lines.len() < NUM_MERGES {
            return Err(invalid(format!(
                "expected a header line and at least {NUM_MERGES} merge lines, found {} merge lines",
                lines.len()
            )));
        }
        let mut merges: Vec<(String, String)> = Vec::with_capacity(NUM_MERGES);
        for (index, line) in lines.iter().enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() != 2 {
                return Err(invalid(format!(
                    "line {}: expected two space-separated symbols, found {}: {:?}",
                    index + 2,
                    parts.len(),
                    truncate_for_message(line)
                )));
            }
            merges.push((parts[0].to_string(), parts[1].to_string()));
        }

        let byte_encoder = bytes_to_unicode();
        let mut id_to_token: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        for &byte in CLIP_BYTE_ORDER.iter() {
            id_to_token.push(byte_encoder[usize::from(byte)].to_string());
        }
        for &byte in CLIP_BYTE_ORDER.iter() {
            id_to_token.push(format!("{}{END_OF_WORD}", byte_encoder[usize::from(byte)]));
        }
        for (a, b) in &merges {
            id_to_token.push(format!("{a}{b}"));
        }
        id_to_token.push(START_OF_TEXT_TOKEN.to_string());
        id_to_token.push(END_OF_TEXT_TOKEN.to_string());
        debug_assert_eq!(id_to_token.len(), VOCAB_SIZE);

        // As Python's `dict(zip(vocab, range(len(vocab))))`: a repeated string keeps its last id.
        let mut vocab: Vocab = Vocab::default();
        for (id, token) in id_to_token.iter().enumerate() {
            vocab.insert(token.clone(), id as u32);
        }
        for (index, (a, b)) in merges.iter().enumerate() {
            for part in [a, b] {
                if !vocab.contains_key(part.as_str()) {
                    return Err(invalid(format!(
                        "line {}: merge symbol {:?} is neither a byte symbol nor the result of a merge",
                        index + 2,
                        truncate_for_message(part)
                    )));
                }
            }
        }

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix(END_OF_WORD.to_string())
            .cache_capacity(BPE_CACHE_CAPACITY)
            .build()
            .map_err(|e| TokenizerError::Model { origin: origin.to_string(), message: e.to_string() })?;

        let byte_decoder = byte_encoder.iter().enumerate().map(|(byte, &c)| (c, byte as u8)).collect();

        Ok(Self { bpe, byte_encoder, byte_decoder, id_to_token, pattern: word_pattern() })
    }

    /// Number of ids in the vocabulary (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.id_to_token.len()
    }

    /// The id of a vocabulary entry given in CLIP's byte-to-unicode spelling (for example
    /// `"hand</w>"` or `"<|endoftext|>"`), or `None` when it is not in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.bpe.token_to_id(token)
    }

    /// The vocabulary entry of an id (CLIP's byte-to-unicode spelling), or `None` when out of range.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(id as usize).map(String::as_str)
    }

    /// BPE ids of `text` after CLIP's cleaning, without start/end tokens or padding
    /// (open_clip's `SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_limited(text, usize::MAX)
    }

    /// Like [`encode`](Self::encode), but stops once `limit` ids have been produced
    /// (the result may hold a few more: those of the last word).
    fn encode_limited(&self, text: &str, limit: usize) -> Result<Vec<u32>, TokenizerError> {
        let cleaned = clean_text(text);
        let mut ids = Vec::new();
        let mut word = String::new();
        for m in self.pattern.find_iter(&cleaned) {
            if ids.len() >= limit {
                break;
            }
            word.clear();
            for &byte in m.as_str().as_bytes() {
                word.push(self.byte_encoder[usize::from(byte)]);
            }
            let tokens = self.bpe.tokenize(&word).map_err(|e| TokenizerError::Bpe {
                word: truncate_for_message(&word).to_string(),
                message: e.to_string(),
            })?;
            ids.extend(tokens.iter().map(|t| t.id));
        }
        Ok(ids)
    }

    /// Tokenizes one text as open_clip's `tokenize(text, context_length)` does: start token,
    /// BPE ids, end token, zeros up to `context_length`. A text that does not fit is cut to
    /// `context_length` ids with the last id set to [`END_OF_TEXT`].
    ///
    /// The result always has exactly `context_length` ids. Errors if `context_length` is 0.
    pub fn tokenize(&self, text: &str, context_length: usize) -> Result<Vec<u32>, TokenizerError> {
        if context_length == 0 {
            return Err(TokenizerError::ZeroContextLength);
        }
        // Only the first `context_length - 1` BPE ids can survive truncation.
        let ids = self.encode_limited(text, context_length)?;
        let mut out = Vec::with_capacity(context_length.max(ids.len() + 2));
        out.push(START_OF_TEXT);
        out.extend_from_slice(&ids);
        out.push(END_OF_TEXT);
        if out.len() > context_length {
            out.truncate(context_length);
            out[context_length - 1] = END_OF_TEXT;
        }
        out.resize(context_length, 0);
        Ok(out)
    }

    /// Tokenizes several texts (see [`tokenize`](Self::tokenize)); one row of
    /// `context_length` ids per text.
    pub fn tokenize_batch(&self, texts: &[&str], context_length: usize) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.iter().map(|text| self.tokenize(text, context_length)).collect()
    }

    /// Turns ids back into text as open_clip's `decode` does: `</w>` becomes a space, bytes
    /// that are not valid UTF-8 become U+FFFD. Special tokens are written by name
    /// (`<|startoftext|>`), padding id 0 decodes as `!`, so strip those first if unwanted.
    /// Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = self.id_to_token.get(id as usize) else {
                continue;
            };
            for c in token.chars() {
                match self.byte_decoder.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).replace(END_OF_WORD, " ")
    }
}

/// Shortens a string for an error message.
fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((index, _)) => &s[..index],
        None => s,
    }
}

/// Decompresses (when gzip) and UTF-8-decodes a vocabulary file.
fn decode_vocab_bytes(bytes: &[u8], origin: &str) -> Result<String, TokenizerError> {
    let invalid = |reason: String| TokenizerError::InvalidVocab { origin: origin.to_string(), reason };
    let raw: Vec<u8> = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| invalid(format!("gzip decompression failed: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw)
        .map_err(|e| invalid(format!("not valid UTF-8 (first bad byte at offset {})", e.utf8_error().valid_up_to())))
}

/// The bytes in the order CLIP lists them in `bytes_to_unicode()` (and so in the vocabulary):
/// `!..=~`, `¡..=¬`, `®..=ÿ`, then the remaining bytes in increasing order.
const CLIP_BYTE_ORDER: [u8; 256] = clip_byte_order();

/// Whether CLIP keeps this byte as its own (printable Latin-1) character.
const fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Builds [`CLIP_BYTE_ORDER`].
const fn clip_byte_order() -> [u8; 256] {
    let mut order = [0u8; 256];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if is_printable_byte(b as u8) {
            order[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    b = 0;
    while b < 256 {
        if !is_printable_byte(b as u8) {
            order[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    order
}

/// CLIP's `bytes_to_unicode()`: printable bytes stand for themselves, the others (in
/// increasing order) for U+0100, U+0101, ...
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let byte = byte as u8;
        *slot = if is_printable_byte(byte) {
            char::from(byte)
        } else {
            n += 1;
            // 0x100 + n - 1 is at most 0x1FF: always a valid scalar value.
            char::from_u32(0x100 + n - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
    }
    table
}

/// CLIP's word pattern without the special-token alternatives, written out so that it behaves
/// like Python's `regex` module with `IGNORECASE`: the contractions match any case (and `'ſ`),
/// U+0345 matches nothing, U+001C-U+001F are symbols (they never reach the pattern, as the ftfy
/// step removes them).
fn word_pattern() -> Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"'[sSſ]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+")
                .unwrap_or_else(|e| unreachable!("the CLIP word pattern is valid: {e}"))
        })
        .clone()
}

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C-U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// open_clip's `clean="lower"` text cleaning: `ftfy.fix_text` (the parts listed in the module
/// docs), `html.unescape` twice, whitespace collapsed to single spaces and trimmed, lower case.
pub fn clean_text(text: &str) -> String {
    let fixed = ftfy_fix_text(text);
    let unescaped = py_html_unescape(&py_html_unescape(&fixed));
    let mut collapsed = String::with_capacity(unescaped.len());
    for part in unescaped.split(py_isspace).filter(|s| !s.is_empty()) {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(part);
    }
    collapsed.to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Python's html.unescape
// ---------------------------------------------------------------------------------------------

/// HTML5 entity names that are also recognised without a trailing `;` (Python's
/// `html.entities.html5` keys without `;`), sorted by bytes.
const LEGACY_ENTITY_NAMES: [&str; 106] = [
    "AElig", "AMP", "Aacute", "Acirc", "Agrave", "Aring", "Atilde", "Auml", "COPY", "Ccedil", "ETH", "Eacute", "Ecirc",
    "Egrave", "Euml", "GT", "Iacute", "Icirc", "Igrave", "Iuml", "LT", "Ntilde", "Oacute", "Ocirc", "Ograve", "Oslash",
    "Otilde", "Ouml", "QUOT", "REG", "THORN", "Uacute", "Ucirc", "Ugrave", "Uuml", "Yacute", "aacute", "acirc",
    "acute", "aelig", "agrave", "amp", "aring", "atilde", "auml", "brvbar", "ccedil", "cedil", "cent", "copy",
    "curren", "deg", "divide", "eacute", "ecirc", "egrave", "eth", "euml", "frac12", "frac14", "frac34", "gt",
    "iacute", "icirc", "iexcl", "igrave", "iquest", "iuml", "laquo", "lt", "macr", "micro", "middot", "nbsp", "not",
    "ntilde", "oacute", "ocirc", "ograve", "ordf", "ordm", "oslash", "otilde", "ouml", "para", "plusmn", "pound",
    "quot", "raquo", "reg", "sect", "shy", "sup1", "sup2", "sup3", "szlig", "thorn", "times", "uacute", "ucirc",
    "ugrave", "uml", "uuml", "yacute", "yen", "yuml",
];

/// The HTML5 entities whose value is more than one code point, sorted by name (bytes).
/// `html_escape::NAMED_ENTITIES` keeps only the first code point of these.
const MULTI_CODE_POINT_ENTITIES: [(&str, &str); 93] = [
    ("NotEqualTilde", "\u{2242}\u{338}"),
    ("NotGreaterFullEqual", "\u{2267}\u{338}"),
    ("NotGreaterGreater", "\u{226b}\u{338}"),
    ("NotGreaterSlantEqual", "\u{2a7e}\u{338}"),
    ("NotHumpDownHump", "\u{224e}\u{338}"),
    ("NotHumpEqual", "\u{224f}\u{338}"),
    ("NotLeftTriangleBar", "\u{29cf}\u{338}"),
    ("NotLessLess", "\u{226a}\u{338}"),
    ("NotLessSlantEqual", "\u{2a7d}\u{338}"),
    ("NotNestedGreaterGreater", "\u{2aa2}\u{338}"),
    ("NotNestedLessLess", "\u{2aa1}\u{338}"),
    ("NotPrecedesEqual", "\u{2aaf}\u{338}"),
    ("NotRightTriangleBar", "\u{29d0}\u{338}"),
    ("NotSquareSubset", "\u{228f}\u{338}"),
    ("NotSquareSuperset", "\u{2290}\u{338}"),
    ("NotSubset", "\u{2282}\u{20d2}"),
    ("NotSucceedsEqual", "\u{2ab0}\u{338}"),
    ("NotSucceedsTilde", "\u{227f}\u{338}"),
    ("NotSuperset", "\u{2283}\u{20d2}"),
    ("ThickSpace", "\u{205f}\u{200a}"),
    ("acE", "\u{223e}\u{333}"),
    ("bne", "\u{3d}\u{20e5}"),
    ("bnequiv", "\u{2261}\u{20e5}"),
    ("caps", "\u{2229}\u{fe00}"),
    ("cups", "\u{222a}\u{fe00}"),
    ("fjlig", "\u{66}\u{6a}"),
    ("gesl", "\u{22db}\u{fe00}"),
    ("gvertneqq", "\u{2269}\u{fe00}"),
    ("gvnE", "\u{2269}\u{fe00}"),
    ("lates", "\u{2aad}\u{fe00}"),
    ("lesg", "\u{22da}\u{fe00}"),
    ("lvertneqq", "\u{2268}\u{fe00}"),
    ("lvnE", "\u{2268}\u{fe00}"),
    ("nGg", "\u{22d9}\u{338}"),
    ("nGt", "\u{226b}\u{20d2}"),
    ("nGtv", "\u{226b}\u{338}"),
    ("nLl", "\u{22d8}\u{338}"),
    ("nLt", "\u{226a}\u{20d2}"),
    ("nLtv", "\u{226a}\u{338}"),
    ("nang", "\u{2220}\u{20d2}"),
    ("napE", "\u{2a70}\u{338}"),
    ("napid", "\u{224b}\u{338}"),
    ("nbump", "\u{224e}\u{338}"),
    ("nbumpe", "\u{224f}\u{338}"),
    ("ncongdot", "\u{2a6d}\u{338}"),
    ("nedot", "\u{2250}\u{338}"),
    ("nesim", "\u{2242}\u{338}"),
    ("ngE", "\u{2267}\u{338}"),
    ("ngeqq", "\u{2267}\u{338}"),
    ("ngeqslant", "\u{2a7e}\u{338}"),
    ("nges", "\u{2a7e}\u{338}"),
    ("nlE", "\u{2266}\u{338}"),
    ("nleqq", "\u{2266}\u{338}"),
    ("nleqslant", "\u{2a7d}\u{338}"),
    ("nles", "\u{2a7d}\u{338}"),
    ("notinE", "\u{22f9}\u{338}"),
    ("notindot", "\u{22f5}\u{338}"),
    ("nparsl", "\u{2afd}\u{20e5}"),
    ("npart", "\u{2202}\u{338}"),
    ("npre", "\u{2aaf}\u{338}"),
    ("npreceq", "\u{2aaf}\u{338}"),
    ("nrarrc", "\u{2933}\u{338}"),
    ("nrarrw", "\u{219d}\u{338}"),
    ("nsce", "\u{2ab0}\u{338}"),
    ("nsubE", "\u{2ac5}\u{338}"),
    ("nsubset", "\u{2282}\u{20d2}"),
    ("nsubseteqq", "\u{2ac5}\u{338}"),
    ("nsucceq", "\u{2ab0}\u{338}"),
    ("nsupE", "\u{2ac6}\u{338}"),
    ("nsupset", "\u{2283}\u{20d2}"),
    ("nsupseteqq", "\u{2ac6}\u{338}"),
    ("nvap", "\u{224d}\u{20d2}"),
    ("nvge", "\u{2265}\u{20d2}"),
    ("nvgt", "\u{3e}\u{20d2}"),
    ("nvle", "\u{2264}\u{20d2}"),
    ("nvlt", "\u{3c}\u{20d2}"),
    ("nvltrie", "\u{22b4}\u{20d2}"),
    ("nvrtrie", "\u{22b5}\u{20d2}"),
    ("nvsim", "\u{223c}\u{20d2}"),
    ("race", "\u{223d}\u{331}"),
    ("smtes", "\u{2aac}\u{fe00}"),
    ("sqcaps", "\u{2293}\u{fe00}"),
    ("sqcups", "\u{2294}\u{fe00}"),
    ("varsubsetneq", "\u{228a}\u{fe00}"),
    ("varsubsetneqq", "\u{2acb}\u{fe00}"),
    ("varsupsetneq", "\u{228b}\u{fe00}"),
    ("varsupsetneqq", "\u{2acc}\u{fe00}"),
    ("vnsub", "\u{2282}\u{20d2}"),
    ("vnsup", "\u{2283}\u{20d2}"),
    ("vsubnE", "\u{2acb}\u{fe00}"),
    ("vsubne", "\u{228a}\u{fe00}"),
    ("vsupnE", "\u{2acc}\u{fe00}"),
    ("vsupne", "\u{228b}\u{fe00}"),
];

/// The value of an HTML5 named entity given without `&` and without `;`.
fn named_entity(name: &str) -> Option<&'static str> {
    if let Ok(index) = MULTI_CODE_POINT_ENTITIES.binary_search_by(|(entry, _)| (*entry).cmp(name)) {
        return Some(MULTI_CODE_POINT_ENTITIES[index].1);
    }
    let table = &html_escape::NAMED_ENTITIES;
    table.binary_search_by(|(entry, _)| (*entry).cmp(name.as_bytes())).ok().map(|index| table[index].1)
}

/// Python's `html.entities.html5[key]`: `key` is a name with `;`, or a legacy name without.
fn html5_lookup(key: &str) -> Option<&'static str> {
    match key.strip_suffix(';') {
        Some(name) => named_entity(name),
        None if LEGACY_ENTITY_NAMES.binary_search(&key).is_ok() => named_entity(key),
        None => None,
    }
}

/// Windows-1252 reading of the C1 range U+0080-U+009F (undefined bytes stay themselves, as in
/// Python's `html._invalid_charrefs` and ftfy's `sloppy-windows-1252`).
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}', '\u{2030}',
    '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}',
    '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}',
    '\u{17e}', '\u{178}',
];

/// Python's `html` replacement of a numeric character reference with value `num`.
fn numeric_charref(num: u64, out: &mut String) {
    match num {
        0x00 => out.push('\u{fffd}'),
        0x0d => out.push('\r'),
        0x80..=0x9f => out.push(WINDOWS_1252_C1[(num - 0x80) as usize]),
        0xD800..=0xDFFF => out.push('\u{fffd}'),
        n if n > 0x10FFFF => out.push('\u{fffd}'),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef => {}
        n if (n & 0xFFFF) >= 0xFFFE => {}
        n => out.push(char::from_u32(n as u32).unwrap_or('\u{fffd}')),
    }
}

/// Parses digits (already checked by the pattern) saturating at `u64::MAX`.
fn parse_saturating(digits: &str, radix: u32) -> u64 {
    digits.chars().fold(0u64, |acc, c| {
        let d = u64::from(c.to_digit(radix).unwrap_or(0));
        acc.saturating_mul(u64::from(radix)).saturating_add(d)
    })
}

/// Python's `html.unescape` (Python 3.11 semantics).
fn py_html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    static CHARREF: OnceLock<Regex> = OnceLock::new();
    let charref = CHARREF.get_or_init(|| {
        Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0c <&#;]{1,32};?)")
            .unwrap_or_else(|e| unreachable!("the charref pattern is valid: {e}"))
    });
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in charref.captures_iter(text) {
        let (Some(whole), Some(s)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        out.push_str(&text[last..whole.start()]);
        last = whole.end();
        let s = s.as_str();
        if let Some(num) = s.strip_prefix('#') {
            let value = match num.strip_prefix(['x', 'X']) {
                Some(hex) => parse_saturating(hex.trim_end_matches(';'), 16),
                None => parse_saturating(num.trim_end_matches(';'), 10),
            };
            numeric_charref(value, &mut out);
            continue;
        }
        if let Some(value) = html5_lookup(s) {
            out.push_str(value);
            continue;
        }
        // The longest prefix (at least 2 characters, shorter than `s`) that is an entity.
        let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        let mut replaced = false;
        for x in (2..boundaries.len()).rev() {
            let (prefix, rest) = s.split_at(boundaries[x]);
            if let Some(value) = html5_lookup(prefix) {
                out.push_str(value);
                out.push_str(rest);
                replaced = true;
                break;
            }
        }
        if !replaced {
            out.push('&');
            out.push_str(s);
        }
    }
    out.push_str(&text[last..]);
    out
}

// ---------------------------------------------------------------------------------------------
// The character-level parts of ftfy.fix_text (ftfy 6.x defaults)
// ---------------------------------------------------------------------------------------------

/// ftfy's `max_decode_length`: longest segment (in characters) fixed at once.
const FTFY_MAX_SEGMENT: usize = 1_000_000;
/// Bound on ftfy's "repeat until nothing changes" loop (it settles in two or three rounds).
const FTFY_MAX_ROUNDS: usize = 64;

/// ftfy's `fix_text`, without mojibake repair: per segment (a line, or 10^6 characters),
/// with HTML unescaping switched off from the first segment containing `<` on.
fn ftfy_fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut start = 0;
    let mut count = 0;
    for (index, c) in text.char_indices() {
        count += 1;
        if c == '\n' || count == FTFY_MAX_SEGMENT {
            let end = index + c.len_utf8();
            let segment = &text[start..end];
            unescape &= !segment.contains('<');
            out.push_str(&ftfy_fix_segment(segment, unescape));
            start = end;
            count = 0;
        }
    }
    if start < text.len() {
        let segment = &text[start..];
        unescape &= !segment.contains('<');
        out.push_str(&ftfy_fix_segment(segment, unescape));
    }
    out
}

/// ftfy's `fix_and_explain` loop over one segment.
fn ftfy_fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    for _ in 0..FTFY_MAX_ROUNDS {
        let mut fixed = if unescape { ftfy_unescape_html(&text) } else { text.clone() };
        fixed = ftfy_fix_chars(&fixed);
        fixed = ftfy_fix_line_breaks(&fixed);
        fixed = ftfy_remove_terminal_escapes(&fixed);
        fixed = fixed.chars().filter(|&c| !is_ftfy_control(c)).collect();
        fixed = fixed.nfc().collect();
        if fixed == text {
            break;
        }
        text = fixed;
    }
    text
}

/// ftfy's `unescape_html`: only `&name;` and `&#...;` forms of up to 24 alphanumerics; names
/// from HTML5 plus ftfy's upper-cased variants of lower-case names; numeric references through
/// `html.unescape` when it consumes the whole reference.
fn ftfy_unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    static ENTITY: OnceLock<Regex> = OnceLock::new();
    let entity = ENTITY.get_or_init(|| {
        Regex::new(r"&#?[0-9A-Za-z]{1,24};").unwrap_or_else(|e| unreachable!("the entity pattern is valid: {e}"))
    });
    entity
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let m = caps.get(0).map_or("", |m| m.as_str());
            if let Some(value) = ftfy_entities().get(m) {
                value.clone()
            } else if m.starts_with("&#") {
                let unescaped = py_html_unescape(m);
                if unescaped.contains(';') { m.to_string() } else { unescaped }
            } else {
                m.to_string()
            }
        })
        .into_owned()
}

/// ftfy's `HTML_ENTITIES`: `&name;` for every HTML5 name, plus `&NAME;` (value upper-cased) for
/// lower-case names whose upper-case spelling `html.unescape` leaves alone.
fn ftfy_entities() -> &'static HashMap<String, String> {
    static MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        for &(name, _) in html_escape::NAMED_ENTITIES.iter() {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let Some(value) = named_entity(name) else {
                continue;
            };
            map.insert(format!("&{name};"), value.to_string());
            if !name.chars().any(|c| c.is_uppercase()) {
                let upper = format!("&{};", name.to_uppercase());
                if py_html_unescape(&upper) == upper {
                    map.insert(upper, value.to_uppercase());
                }
            }
        }
        map
    })
}

/// ftfy's one-character fixes, in its order: C1 controls as Windows-1252, Latin ligatures,
/// character width, curly quotes.
fn ftfy_fix_chars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // fix_c1_controls
        let c = match c {
            '\u{80}'..='\u{9f}' => WINDOWS_1252_C1[c as usize - 0x80],
            c => c,
        };
        // fix_latin_ligatures
        let expanded: &str = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => "",
        };
        if !expanded.is_empty() {
            // The expansions contain no full-width forms, but ʼ is a quote to uncurl.
            out.extend(expanded.chars().map(uncurl_quote));
            continue;
        }
        // fix_character_width
        if c == '\u{3000}' {
            out.push(' ');
            continue;
        }
        if ('\u{ff01}'..='\u{ffef}').contains(&c) {
            let wide: String = std::iter::once(c).nfkc().collect();
            let mut chars = wide.chars();
            if let (Some(single), None) = (chars.next(), chars.next()) {
                out.push(uncurl_quote(single));
            } else {
                out.extend(wide.chars().map(uncurl_quote));
            }
            continue;
        }
        // uncurl_quotes
        out.push(uncurl_quote(c));
    }
    out
}

/// ftfy's `uncurl_quotes` for one character.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        c => c,
    }
}

/// ftfy's `fix_line_breaks`.
fn ftfy_fix_line_breaks(text: &str) -> String {
    if !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `remove_terminal_escapes` (ANSI `ESC [ digits-or-; letter`).
fn ftfy_remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    static ANSI: OnceLock<Regex> = OnceLock::new();
    let ansi = ANSI.get_or_init(|| {
        Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").unwrap_or_else(|e| unreachable!("the ANSI pattern is valid: {e}"))
    });
    ansi.replace_all(text, "").into_owned()
}

/// ftfy's `remove_control_chars` set.
fn is_ftfy_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> &'static ClipTokenizer {
        static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
        TOK.get_or_init(|| ClipTokenizer::new().expect("embedded vocabulary loads"))
    }

    fn padded(ids: &[u32]) -> Vec<u32> {
        let mut v = ids.to_vec();
        v.resize(CONTEXT_LENGTH, 0);
        v
    }

    #[test]
    fn shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<ClipTokenizer>();
    }

    #[test]
    fn vocab_layout() {
        let t = tok();
        assert_eq!(t.vocab_size(), VOCAB_SIZE);
        assert_eq!(t.token_to_id(START_OF_TEXT_TOKEN), Some(START_OF_TEXT));
        assert_eq!(t.token_to_id(END_OF_TEXT_TOKEN), Some(END_OF_TEXT));
        assert_eq!(t.token_to_id("!"), Some(0));
        assert_eq!(t.token_to_id("!</w>"), Some(256));
        assert_eq!(t.token_to_id("hand</w>"), Some(2463));
        assert_eq!(t.token_to_id("sks</w>"), Some(48136));
        assert_eq!(t.id_to_token(END_OF_TEXT), Some(END_OF_TEXT_TOKEN));
        assert_eq!(t.id_to_token(VOCAB_SIZE as u32), None);
        // Byte 0x20 (space) is U+0120 'Ġ', the 189th byte in CLIP's order.
        assert_eq!(t.token_to_id("Ġ"), Some(188 + 32));
    }

    #[test]
    fn prompt() {
        let ids = tok().tokenize("A photo of a sks hand", CONTEXT_LENGTH).unwrap();
        assert_eq!(ids, padded(&[49406, 320, 1125, 539, 320, 48136, 2463, 49407]));
    }

    #[test]
    fn empty_and_whitespace() {
        for text in ["", "   ", "\t\n\r \u{3000}\u{a0}"] {
            assert_eq!(
                tok().tokenize(text, CONTEXT_LENGTH).unwrap(),
                padded(&[START_OF_TEXT, END_OF_TEXT]),
                "{text:?}"
            );
            assert!(tok().encode(text).unwrap().is_empty());
        }
    }

    #[test]
    fn truncation() {
        let text = "hand ".repeat(200);
        let ids = tok().tokenize(&text, CONTEXT_LENGTH).unwrap();
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!(ids[0], START_OF_TEXT);
        assert!(ids[1..76].iter().all(|&id| id == 2463));
        assert_eq!(ids[76], END_OF_TEXT);
        // Exactly 75 words fit without truncation.
        let ids = tok().tokenize(&"hand ".repeat(75), CONTEXT_LENGTH).unwrap();
        assert_eq!(ids[76], END_OF_TEXT);
        assert_eq!(ids[75], 2463);
        let ids = tok().tokenize(&"hand ".repeat(74), CONTEXT_LENGTH).unwrap();
        assert_eq!(&ids[74..], &[2463, END_OF_TEXT, 0]);
        // Other context lengths.
        assert_eq!(tok().tokenize("hand hand", 1).unwrap(), vec![END_OF_TEXT]);
        assert_eq!(tok().tokenize("hand hand", 3).unwrap(), vec![START_OF_TEXT, 2463, END_OF_TEXT]);
        assert!(matches!(tok().tokenize("hand", 0), Err(TokenizerError::ZeroContextLength)));
    }

    #[test]
    fn batch() {
        let rows = tok().tokenize_batch(&["a hand", "", "A photo of a sks hand"], CONTEXT_LENGTH).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.len() == CONTEXT_LENGTH));
        assert_eq!(rows[2], tok().tokenize("A photo of a sks hand", 77).unwrap());
    }

    #[test]
    fn spelled_specials_are_plain_text() {
        for text in ["<|endoftext|>", "<|startoftext|>", "<end_of_text>", "<start_of_text>"] {
            let ids = tok().encode(text).unwrap();
            assert!(ids.len() > 1, "{text:?}");
            assert!(ids.iter().all(|&id| id < START_OF_TEXT), "{text:?}: {ids:?}");
        }
        // Reference ids from open_clip 3.3.0 for the pipe spelling.
        assert_eq!(tok().encode("<|endoftext|>").unwrap(), vec![27, 347, 40786, 4160, 91, 285]);
    }

    #[test]
    fn digits_are_single_words() {
        let ids = tok().encode("2024").unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids, tok().encode("2 0 2 4").unwrap());
    }

    #[test]
    fn html_unescape_matches_python() {
        let cases = [
            ("&amp;", "&"),
            ("&amp", "&"),
            ("&ampx", "&x"),
            ("&notit;", "¬it;"),
            ("&notin;", "∉"),
            ("&#39;", "'"),
            ("&#x263a;", "☺"),
            ("&#X263A", "☺"),
            ("&#0;", "\u{fffd}"),
            ("&#128;", "€"),
            ("&#x110000;", "\u{fffd}"),
            ("&#99999999999999999999999;", "\u{fffd}"),
            ("&#xd800;", "\u{fffd}"),
            ("&#1;", ""),
            ("&#xfffe;", ""),
            ("&bogus;", "&bogus;"),
            ("&", "&"),
            ("&;", "&;"),
            ("a & b", "a & b"),
            ("&eacuteé", "éé"),
            ("&fjlig;", "fj"),
            ("&NotEqualTilde;", "\u{2242}\u{338}"),
        ];
        for (input, expected) in cases {
            assert_eq!(py_html_unescape(input), expected, "{input:?}");
        }
    }

    #[test]
    fn ftfy_steps() {
        assert_eq!(clean_text("don\u{2019}t"), "don't");
        assert_eq!(clean_text("\u{fb01}ne"), "fine");
        assert_eq!(clean_text("ＨＡＮＤ　ｈａｎｄ"), "hand hand");
        assert_eq!(clean_text("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(clean_text("a\u{feff}b\u{0}c"), "abc");
        assert_eq!(clean_text("e\u{301}"), "é");
        // ftfy unescapes repeatedly, unless the line contains '<'.
        assert_eq!(clean_text("&amp;amp;amp;amp;"), "&");
        assert_eq!(clean_text("< &amp;amp;amp;amp;"), "< &amp;amp;");
        assert_eq!(clean_text("&amp;amp;amp;amp;\n<"), "& <");
        assert_eq!(clean_text("P&EACUTE;REZ"), "pérez");
        // Reference ids from open_clip 3.3.0 (ftfy 6.3.1).
        assert_eq!(
            tok().encode("don\u{2019}t \u{fb01}ne ＨＡＮＤ \u{201c}hand\u{201d}").unwrap(),
            vec![847, 713, 3797, 2463, 257, 2463, 257]
        );
    }

    #[test]
    fn decode_roundtrip() {
        let t = tok();
        let ids = t.encode("a photo of a sks hand, 42!").unwrap();
        assert_eq!(t.decode(&ids), "a photo of a sks hand , 4 2 ! ");
        assert_eq!(t.decode(&[START_OF_TEXT]), START_OF_TEXT_TOKEN);
        assert_eq!(t.decode(&[u32::MAX]), "");
    }

    #[test]
    fn bad_vocab_files() {
        let dir = std::env::temp_dir().join(format!("clip-tok-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.txt.gz");
        let err = ClipTokenizer::from_vocab_file(&missing).unwrap_err();
        assert!(matches!(err, TokenizerError::Io { .. }));
        assert!(err.to_string().contains("missing.txt.gz"), "{err}");

        let short = dir.join("short.txt");
        std::fs::write(&short, "#version: 0.2\ni n\nt h\n").unwrap();
        let err = ClipTokenizer::from_vocab_file(&short).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidVocab { .. }));
        assert!(err.to_string().contains("short.txt"), "{err}");

        let gz = dir.join("broken.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 0, 1, 2, 3]).unwrap();
        let err = ClipTokenizer::from_vocab_file(&gz).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");

        let binary = dir.join("binary.txt");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = ClipTokenizer::from_vocab_file(&binary).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");

        // The real vocabulary, uncompressed, loads from a file too.
        let plain = dir.join("plain.txt");
        std::fs::write(&plain, decode_vocab_bytes(EMBEDDED_VOCAB, "x").unwrap()).unwrap();
        let t = ClipTokenizer::from_vocab_file(&plain).unwrap();
        assert_eq!(t.tokenize("a sks hand", 77).unwrap(), tok().tokenize("a sks hand", 77).unwrap());

        // A merge whose symbol was never produced.
        let text = decode_vocab_bytes(EMBEDDED_VOCAB, "x").unwrap();
        let bad = text.replacen("\ni n\n", "\nin zzzzzz\n", 1);
        let badf = dir.join("bad-merge.txt");
        std::fs::write(&badf, bad).unwrap();
        let err = ClipTokenizer::from_vocab_file(&badf).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A small deterministic generator (xorshift) for property-style tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn char(&mut self) -> char {
            let pools: [(u32, u32); 8] = [
                (0x20, 0x7e),
                (0x0, 0x20),
                (0x80, 0x2ff),
                (0x300, 0x36f),
                (0x370, 0x52f),
                (0x2000, 0x206f),
                (0x3000, 0xffff),
                (0x10000, 0x10ffff),
            ];
            let (lo, hi) = pools[(self.next() % pools.len() as u64) as usize];
            let cp = lo + (self.next() % u64::from(hi - lo + 1)) as u32;
            char::from_u32(cp).unwrap_or('&')
        }
    }

    #[test]
    fn random_strings_never_panic() {
        let t = tok();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let pieces = ["&amp;", "&#x263a;", "&lt", "<", "'s", "'LL", "\n", "  ", "&#", "&#x"];
        for _ in 0..2000 {
            let len = (rng.next() % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                if rng.next().is_multiple_of(5) {
                    s.push_str(pieces[(rng.next() % pieces.len() as u64) as usize]);
                } else {
                    s.push(rng.char());
                }
            }
            let ids = t.tokenize(&s, CONTEXT_LENGTH).unwrap();
            assert_eq!(ids.len(), CONTEXT_LENGTH);
            assert_eq!(ids[0], START_OF_TEXT);
            let end = ids.iter().position(|&id| id == END_OF_TEXT).unwrap();
            assert!(ids[1..end].iter().all(|&id| id < START_OF_TEXT));
            assert!(ids[end + 1..].iter().all(|&id| id == 0));
            // Truncated encoding agrees with the full one.
            let full = t.encode(&s).unwrap();
            assert_eq!(&ids[1..end], &full[..end - 1]);
            // Cleaned text has no leading, trailing or repeated spaces.
            let cleaned = clean_text(&s);
            assert_eq!(cleaned.trim_matches(' '), cleaned);
            assert!(!cleaned.contains("  "));
        }
    }

    #[test]
    fn huge_input() {
        let t = tok();
        let text = "x".repeat(2_000_000) + &" a".repeat(100_000);
        let ids = t.tokenize(&text, CONTEXT_LENGTH).unwrap();
        assert_eq!(ids[0], START_OF_TEXT);
        assert_eq!(ids[76], END_OF_TEXT);
    }
}
