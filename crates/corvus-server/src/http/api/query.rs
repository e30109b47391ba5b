//! Query strings and path arguments of the admin API: percent-decoding (RFC 3986; a `+`
//! stays a `+`, so topic filters may be written as they are), and paging.

use std::collections::HashMap;

use hyper::StatusCode;

/// Items a page holds unless `limit` says otherwise, and the most it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("bad percent-encoding in {0:?}")]
    BadEscape(String),
    #[error("{0:?} is not UTF-8 once decoded")]
    NotUtf8(String),
    #[error("query parameter {name:?} is given twice")]
    Repeated { name: String },
}

/// Decodes `%XX` escapes.
pub fn percent_decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| QueryError::BadEscape(text.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8(text.to_owned()))
}

/// A parsed query string.
#[derive(Debug, Default)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut params = HashMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name)?;
            if params.contains_key(&name) {
                return Err(QueryError::Repeated { name });
            }
            params.insert(name, percent_decode(value)?);
        }
        Ok(Query { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A numeric parameter within `range`, or `default` when absent.
    pub fn number(
        &self,
        name: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, (StatusCode, String)> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        text.parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{name} must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// A `true`/`false` parameter, if given.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, (StatusCode, String)> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err((
                StatusCode::BAD_REQUEST,
                format!("{name} must be true or false"),
            )),
        }
    }

    /// `offset` and `limit`.
    pub fn paging(&self) -> Result<(usize, usize), (StatusCode, String)> {
        Ok((
            self.number("offset", 0, 0..=usize::MAX)?,
            self.number("limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?,
        ))
    }

    /// Whether `haystack` contains the `search` parameter, ignoring case (true without one).
    pub fn searched(&self, haystacks: &[&str]) -> bool {
        match self.get("search") {
            None | Some("") => true,
            Some(needle) => {
                let needle = needle.to_lowercase();
                haystacks.iter().any(|h| h.to_lowercase().contains(&needle))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_plus_stays() {
        assert_eq!(percent_decode("a%2Fb+c%20d").unwrap(), "a/b+c d");
        assert_eq!(percent_decode("%E2%82%AC").unwrap(), "€");
        assert!(matches!(
            percent_decode("%4"),
            Err(QueryError::BadEscape(_))
        ));
        assert!(matches!(
            percent_decode("%zz"),
            Err(QueryError::BadEscape(_))
        ));
        assert!(matches!(percent_decode("%FF"), Err(QueryError::NotUtf8(_))));
    }

    #[test]
    fn parameters_and_paging() {
        let query = Query::parse("filter=a/%2B/%23&limit=5&connected=true&flag").unwrap();
        assert_eq!(query.get("filter"), Some("a/+/#"));
        assert_eq!(query.get("flag"), Some(""));
        assert_eq!(query.paging().unwrap(), (0, 5));
        assert_eq!(query.boolean("connected").unwrap(), Some(true));
        assert_eq!(Query::parse("").unwrap().paging().unwrap(), (0, 100));
        for bad in ["limit=0", "limit=1001", "limit=x", "offset=-1"] {
            let (status, _) = Query::parse(bad).unwrap().paging().unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(
            Query::parse("a=1&a=2").unwrap_err(),
            QueryError::Repeated { name: "a".into() }
        );
    }

    #[test]
    fn search_ignores_case() {
        let query = Query::parse("search=SeNs").unwrap();
        assert!(query.searched(&["x", "sensor-1"]));
        assert!(!query.searched(&["x", "y"]));
        assert!(Query::parse("").unwrap().searched(&["anything"]));
    }
}
