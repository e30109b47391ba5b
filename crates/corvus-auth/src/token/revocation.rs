//! The revocation list: a text file of revoked block ids.
//!
//! Format: one revocation id (hex, as `corvus token inspect` shows it) per line; blank lines
//! and `#` comments (whole lines, or after an id) are ignored. Any other line is an error
//! naming its line number: a list the broker cannot read fully must not be half applied.

use std::collections::HashSet;
use std::path::Path;

use super::TokenError;
use crate::atomic_write::write_atomically;

/// A set of revoked block ids (hex, compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    ids: HashSet<String>,
}

impl RevocationList {
    /// An empty list: nothing revoked.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Parses the text of a revocation list.
    pub fn parse(text: &str) -> Result<RevocationList, TokenError> {
        let mut ids = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            if let Some(id) = parse_line(line).map_err(|problem| TokenError::RevocationLine {
                path: None,
                line: index + 1,
                problem,
            })? {
                ids.insert(id);
            }
        }
        Ok(RevocationList { ids })
    }

    /// Reads and parses a revocation list file.
    pub fn load(path: &Path) -> Result<RevocationList, TokenError> {
        let text = std::fs::read_to_string(path).map_err(TokenError::io("read", path))?;
        RevocationList::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Whether `id` (hex) is revoked.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(&id.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds `ids` to the list file at `path` (created if missing), each on its own line
    /// followed by `# comment`, keeping the existing lines as they are, and rewrites it
    /// atomically. Ids already in the file are skipped. Refuses to touch a file that does not
    /// parse. Returns the ids actually added.
    pub fn append_to_file(
        path: &Path,
        ids: &[String],
        comment: &str,
    ) -> Result<Vec<String>, TokenError> {
        let mut text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(TokenError::io("read", path)(e)),
        };
        let mut list = RevocationList::parse(&text).map_err(|e| e.in_file(path))?;
        let comment = comment.replace(['\n', '\r'], " ");
        let mut added = Vec::new();
        for id in ids {
            let id = parse_line(id)
                .ok()
                .flatten()
                .ok_or_else(|| TokenError::Malformed(format!("{id:?} is not a revocation id")))?;
            if !list.ids.insert(id.clone()) {
                continue;
            }
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&id);
            if !comment.is_empty() {
                text.push_str("  # ");
                text.push_str(&comment);
            }
            text.push('\n');
            added.push(id);
        }
        if !added.is_empty() {
            write_atomically(path, text.as_bytes())?;
        }
        Ok(added)
    }
}

/// The id on a line (lowercase), `None` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<String>, String> {
    let id = line.split_once('#').map_or(line, |(id, _)| id).trim();
    if id.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = id.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "{id:?} is not a revocation id: {bad:?} is not a hex digit"
        ));
    }
    if !id.len().is_multiple_of(2) {
        return Err(format!(
            "{id:?} is not a revocation id: an odd number of hex digits"
        ));
    }
    Ok(Some(id.to_ascii_lowercase()))
}
