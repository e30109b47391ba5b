//! The password file: one `user:hash` per line, the hash an argon2id PHC string, optionally
//! followed by a space and the user's SCRAM-SHA-256 verifiers (RFC 5803 form, see
//! [`crate::scram`]) for clients that authenticate with AUTH instead of a password; blank
//! lines and lines starting with `#` are comments. This module reads it, answers "is this the
//! password of this user", and edits it in place for `corvus passwd`, keeping comments and the
//! order of lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::PasswordHash;

use crate::atomic_write::write_atomically;
use crate::hash::{self, HashParams, Outcome};
use crate::scram::{self, ScramCredentials};
use crate::{validate_user_name, AuthError, LineError};

/// A parsed password file. Cloning is cheap enough for a reload-and-swap; nothing in it is
/// shared with the file on disk after [`PasswordFile::load`].
#[derive(Clone, Default)]
pub struct PasswordFile {
    /// Every line of the file, in order, so that saving keeps comments where they were.
    lines: Vec<Line>,
    /// User name to its index in `lines`.
    index: HashMap<String, usize>,
    /// The parameters of the dummy hash when the file has no entry to copy them from.
    params: HashParams,
    /// What unknown users are verified against: built on first use, and again after an edit
    /// (the entry it copies may have changed). None only if it could not be built, see
    /// [`PasswordFile::verify`].
    dummy: OnceLock<Option<PasswordHash>>,
    /// What SCRAM exchanges for unknown users go on with: built on first use, and again
    /// after an edit, as `dummy` is.
    scram_mock: OnceLock<ScramMock>,
}

/// The made-up SCRAM parameters of users without verifiers.
#[derive(Clone)]
struct ScramMock {
    /// The key of their salts: a digest of the first entry, a secret to outsiders that
    /// stays the same while that entry does.
    key: [u8; 32],
    /// The first SCRAM entry's iteration count, so the made-up one blends in.
    iterations: u32,
}

#[derive(Clone)]
enum Line {
    /// A comment or a blank line, kept verbatim.
    Other(String),
    Entry {
        user: String,
        /// The PHC string as written, so saving writes back exactly what was read.
        text: String,
        /// Boxed: a parsed hash holds fixed-size buffers, far bigger than a comment line.
        hash: Box<PasswordHash>,
        /// For SCRAM-SHA-256 (AUTH), when the line has them.
        scram: Option<Box<ScramCredentials>>,
    },
}

impl std::fmt::Debug for PasswordFile {
    // Users only: hashes have no business in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// An empty file (nothing verifies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the parameters of the dummy hash used while the file has no entry (argon2's
    /// defaults unless set). With entries, the dummy copies the dearest entry's parameters.
    pub fn with_params(mut self, params: HashParams) -> Self {
        self.params = params;
        self.edited();
        self
    }

    /// Reads and parses the file at `path`. Errors name the file, and the line for content
    /// errors.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e
                .as_bytes()
                .get(..e.utf8_error().valid_up_to())
                .unwrap_or(&[]);
            AuthError::Parse {
                path: path.to_path_buf(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
                problem: LineError::NotUtf8,
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses the contents of a password file; `path` only names it in error messages. Line
    /// ends may be LF or CRLF. Hashes are checked here (argon2id, v=19, valid parameters), so
    /// a bad line is found when the file is loaded, not when a client connects.
    pub fn parse(text: &str, path: &Path) -> Result<Self, AuthError> {
        let mut file = PasswordFile::new();
        for (i, line) in text.lines().enumerate() {
            let error = |problem| AuthError::Parse {
                path: PathBuf::from(path),
                line: i + 1,
                problem,
            };
            if line.trim().is_empty() || line.starts_with('#') {
                file.lines.push(Line::Other(line.to_string()));
                continue;
            }
            let (user, text) = line.split_once(':').ok_or(error(LineError::MissingColon))?;
            if let Err(AuthError::InvalidUser { user, reason }) = validate_user_name(user) {
                return Err(error(LineError::InvalidUser { user, reason }));
            }
            // A PHC string has no spaces; stray ones around it are not worth refusing a file.
            let text = text.trim();
            let (hash, scram) = parse_verifiers(text).map_err(|reason| {
                error(LineError::InvalidHash {
                    user: user.to_string(),
                    reason,
                })
            })?;
            if let Some(&first) = file.index.get(user) {
                return Err(error(LineError::DuplicateUser {
                    user: user.to_string(),
                    first_line: first + 1,
                }));
            }
            file.index.insert(user.to_string(), file.lines.len());
            file.lines.push(Line::Entry {
                user: user.to_string(),
                text: text.to_string(),
                hash: Box::new(hash),
                scram,
            });
        }
        Ok(file)
    }

    /// True if `password` is `user`'s. Always runs exactly one argon2 verification, whatever
    /// the answer, so that the time taken does not tell whether the user exists:
    /// - a known user: against their hash;
    /// - an unknown user: against a dummy hash with the parameters of the file's dearest entry
    ///   (built once, lazily, without an argon2 run), and the answer is no;
    /// - an empty password (the broker passes `b""` when CONNECT has none): verified like any
    ///   other, then refused.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.hash_of(user) {
            Some(hash) => (hash, true),
            None => match self.dummy() {
                Some(dummy) => (dummy, false),
                None => {
                    // Cannot happen with a parsed file (the dummy copies a valid hash), but if
                    // it did, an unknown user must still cost one hashing.
                    let _ = hash::hash_password_with(b"no such user", &self.params);
                    return false;
                }
            },
        };
        let outcome = hash::verify(password, hash);
        known && !password.is_empty() && outcome == Outcome::Match
    }

    /// What a SCRAM-SHA-256 exchange for `user` goes on with: the user's verifiers, or made-up
    /// ones that are the same on every attempt (see [`ScramMock`]), found as fast as real
    /// ones, so the broker's first answer does not tell whether the user exists or has SCRAM
    /// credentials.
    pub fn scram_lookup(&self, user: &str) -> scram::Lookup {
        let entry = self.line_of(user);
        if let Some(Line::Entry {
            scram: Some(credentials),
            ..
        }) = entry
        {
            return scram::Lookup::Known((**credentials).clone());
        }
        let mock = self.scram_mock.get_or_init(|| ScramMock {
            key: scram::mock_key(self.entries().next().map_or("", |(_, text, _)| text)),
            iterations: self
                .entries()
                .find_map(|(_, _, scram)| scram.map(|c| c.iterations))
                .unwrap_or(scram::MIN_ITERATIONS),
        });
        scram::Lookup::Unknown {
            salt: scram::mock_salt(&mock.key, user),
            iterations: mock.iterations,
        }
    }

    /// Every entry: its user, its text as written, and its SCRAM verifiers.
    fn entries(&self) -> impl Iterator<Item = (&str, &str, Option<&ScramCredentials>)> {
        self.lines.iter().filter_map(|line| match line {
            Line::Entry {
                user, text, scram, ..
            } => Some((user.as_str(), text.as_str(), scram.as_deref())),
            Line::Other(_) => None,
        })
    }

    /// After an edit, what is derived from the entries is built again.
    fn edited(&mut self) {
        self.dummy = OnceLock::new();
        self.scram_mock = OnceLock::new();
    }

    /// True if some user can authenticate with SCRAM-SHA-256.
    pub fn has_scram(&self) -> bool {
        self.entries().any(|(_, _, scram)| scram.is_some())
    }

    /// The file's line for `user`, if it has one.
    fn line_of(&self, user: &str) -> Option<&Line> {
        self.index.get(user).and_then(|&i| self.lines.get(i))
    }

    fn hash_of(&self, user: &str) -> Option<&PasswordHash> {
        match self.line_of(user) {
            Some(Line::Entry { hash, .. }) => Some(&**hash),
            _ => None,
        }
    }

    fn dummy(&self) -> Option<&PasswordHash> {
        self.dummy
            .get_or_init(|| {
                // The dearest entry: with mixed parameters, copying a cheaper one would let
                // an unknown user answer faster than some known ones.
                let model = self
                    .lines
                    .iter()
                    .filter_map(|line| match line {
                        Line::Entry { hash, .. } => Some(&**hash),
                        Line::Other(_) => None,
                    })
                    .max_by_key(|hash| hash::cost(hash));
                hash::dummy_like(model, &self.params).ok()
            })
            .as_ref()
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(user, ..)| user)
    }

    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sets `user`'s hash (a PHC string from [`crate::hash_password`]): in place if the user
    /// is there, else as a new last line. Refuses a user name the format cannot hold and a
    /// hash that [`PasswordFile::parse`] would refuse.
    pub fn add_or_replace(&mut self, user: &str, hash: &str) -> Result<(), AuthError> {
        validate_user_name(user)?;
        let (parsed, scram) = parse_verifiers(hash).map_err(AuthError::InvalidHash)?;
        let entry = Line::Entry {
            user: user.to_string(),
            text: hash.to_string(),
            hash: Box::new(parsed),
            scram,
        };
        match self.index.get(user).and_then(|&i| self.lines.get_mut(i)) {
            Some(line) => *line = entry,
            None => {
                self.index.insert(user.to_string(), self.lines.len());
                self.lines.push(entry);
            }
        }
        self.edited();
        Ok(())
    }

    /// Removes `user`'s line; false if there was none.
    pub fn delete(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        if i < self.lines.len() {
            self.lines.remove(i);
        }
        for at in self.index.values_mut() {
            if *at > i {
                *at -= 1;
            }
        }
        self.edited();
        true
    }

    /// The file's text: every line as read (entries as `user:hash`), each ending in `\n`.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Other(other) => text.push_str(other),
                Line::Entry {
                    user, text: hash, ..
                } => {
                    text.push_str(user);
                    text.push(':');
                    text.push_str(hash);
                }
            }
            text.push('\n');
        }
        text
    }

    /// Writes the file to `path` atomically: a temporary file in the same directory, mode
    /// 0600 on unix, fsynced, then renamed over the old one (whose mode is not kept: the new
    /// file is always 0600). A reader sees the old file or the new one, never a partial one.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        write_atomically(path, self.to_text().as_bytes())
    }
}

/// The argon2id hash of a line, and its SCRAM verifiers if the line has them.
fn parse_verifiers(text: &str) -> Result<(PasswordHash, Option<Box<ScramCredentials>>), String> {
    let mut fields = text.split_whitespace();
    let hash = hash::parse_argon2id(fields.next().unwrap_or_default())?;
    let scram = fields
        .next()
        .map(|scram| ScramCredentials::parse(scram).map(Box::new))
        .transpose()?;
    if fields.next().is_some() {
        return Err("expected the argon2id hash and at most the SCRAM verifiers after it".into());
    }
    Ok((hash, scram))
}

#[cfg(test)]
mod tests {

    /// Found in review: with mixed parameters, an unknown user must cost what the dearest
    /// entry costs, wherever it is in the file (a cheap first entry made unknown users fast).
    #[test]
    fn the_dummy_copies_the_dearest_entry() {
        let cheap = hash_password_with(b"a", &small_params()).unwrap();
        let dear_params = HashParams::new(256, 2, 1).unwrap();
        let dear = hash_password_with(b"b", &dear_params).unwrap();
        let file = parse(&format!("cheap:{cheap}\ndear:{dear}\n")).unwrap();
        let dummy = file.dummy().unwrap();
        let dear_hash = file.hash_of("dear").unwrap();
        assert_eq!(dummy.params, dear_hash.params);
        assert!(hash::cost(dummy) > hash::cost(file.hash_of("cheap").unwrap()));
    }

    use super::*;
    use crate::hash::{hash_password_with, runs, small_params};

    fn hash(password: &str) -> String {
        hash_password_with(password.as_bytes(), &small_params()).unwrap()
    }

    fn parse(text: &str) -> Result<PasswordFile, AuthError> {
        PasswordFile::parse(text, Path::new("/etc/corvus/passwd"))
    }

    /// The (line, problem) of a parse error, or a panic.
    fn parse_error(text: &str) -> (usize, LineError) {
        match parse(text) {
            Err(AuthError::Parse { line, problem, .. }) => (line, problem),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = format!(
            "# Corvus users\n\n   \nalice:{}\n#bob:{}\n\t\ncarol:{}\n",
            hash("a"),
            hash("b"),
            hash("c")
        );
        let file = parse(&text).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "carol"]);
        assert_eq!(file.len(), 2);
        assert!(!file.contains("bob") && !file.contains("#bob"));
        assert_eq!(file.to_text(), text, "read and written back unchanged");
    }

    #[test]
    fn user_names_are_kept_literally() {
        let users = crate::user::LITERAL_NAMES;
        let text: String = users.iter().map(|u| format!("{u}:{}\n", hash(u))).collect();
        let file = parse(&text).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), users);
        for user in users {
            assert!(file.verify(user, user.as_bytes()), "{user:?}");
        }
        assert!(!file.verify("a b", b"a+b"), "no wildcard or trimming");
        assert!(!file.verify("lead", b" lead"));
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let text = format!("# users\r\nalice:{}\r\n", hash("pw"));
        let file = parse(&text).unwrap();
        assert!(file.verify("alice", b"pw"));
    }

    #[test]
    fn a_line_without_colon_is_an_error_with_its_line_number() {
        let text = format!("# users\nalice:{}\nbob\n", hash("a"));
        assert_eq!(parse_error(&text), (3, LineError::MissingColon));
        let message = parse(&text).unwrap_err().to_string();
        assert_eq!(
            message,
            "/etc/corvus/passwd:3: expected `user:hash`, found no `:`"
        );
    }

    #[test]
    fn an_empty_user_is_an_error() {
        let (line, problem) = parse_error(&format!(":{}\n", hash("a")));
        assert_eq!(line, 1);
        assert!(
            matches!(problem, LineError::InvalidUser { .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn an_invalid_hash_is_an_error_with_its_line_number() {
        for bad in [
            "secret",
            "",
            "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        ] {
            let text = format!("\nalice:{}\nbob:{bad}\n", hash("a"));
            let (line, problem) = parse_error(&text);
            assert_eq!(line, 3, "{bad:?}");
            assert!(
                matches!(&problem, LineError::InvalidHash { user, .. } if user == "bob"),
                "{problem:?}"
            );
            let message = parse(&text).unwrap_err().to_string();
            assert!(
                message.starts_with("/etc/corvus/passwd:3: invalid password hash for user \"bob\""),
                "{message}"
            );
        }
    }

    #[test]
    fn a_duplicate_user_is_an_error() {
        let text = format!("alice:{}\n# again\nalice:{}\n", hash("a"), hash("b"));
        assert_eq!(
            parse_error(&text),
            (
                3,
                LineError::DuplicateUser {
                    user: "alice".into(),
                    first_line: 1
                }
            )
        );
    }

    #[test]
    fn non_utf8_is_an_error_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut bytes = format!("alice:{}\n", hash("a")).into_bytes();
        bytes.extend_from_slice(b"b\xffb:x\n");
        std::fs::write(&path, bytes).unwrap();
        let err = PasswordFile::load(&path).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Parse {
                    line: 2,
                    problem: LineError::NotUtf8,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        let err = PasswordFile::load(&path).unwrap_err();
        assert!(
            matches!(&err, AuthError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot read {}: ", path.display())),
            "{message}"
        );
    }

    #[test]
    fn verify_right_wrong_unknown_and_empty_passwords() {
        let file = parse(&format!(
            "alice:{}\nbob:{}\n",
            hash("wonderland"),
            hash("builder")
        ))
        .unwrap();
        assert!(file.verify("alice", b"wonderland"));
        assert!(file.verify("bob", b"builder"));
        assert!(!file.verify("alice", b"builder"));
        assert!(!file.verify("alice", b"Wonderland"));
        assert!(!file.verify("alice", b"wonderland\n"));
        assert!(!file.verify("carol", b"wonderland"));
        assert!(!file.verify("Alice", b"wonderland"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("", b""));
        assert!(!PasswordFile::new()
            .with_params(small_params())
            .verify("alice", b"x"));
    }

    #[test]
    fn an_empty_stored_password_is_still_refused() {
        // Hashes of empty passwords cannot come from hash_password, but a file can hold one.
        let argon2 = argon2::Argon2::from(argon2::Params::new(64, 1, 1, None).unwrap());
        let empty = argon2::PasswordHasher::hash_password_with_salt(&argon2, b"", b"saltsaltsalt")
            .unwrap()
            .to_string();
        let file = parse(&format!("alice:{empty}\n")).unwrap();
        runs::take();
        assert!(!file.verify("alice", b""));
        assert_eq!(runs::take().len(), 1, "refused after a verification");
    }

    #[test]
    fn every_answer_costs_exactly_one_argon2_run() {
        let file = parse(&format!("# x\nalice:{}\nbob:{}\n", hash("a"), hash("b"))).unwrap();
        let alice = file.hash_of("alice").unwrap().clone();
        runs::take();

        assert!(file.verify("alice", b"a"));
        assert_eq!(runs::take(), std::slice::from_ref(&alice), "right password");
        assert!(!file.verify("alice", b"wrong"));
        assert_eq!(runs::take(), std::slice::from_ref(&alice), "wrong password");
        assert!(!file.verify("alice", b""));
        assert_eq!(runs::take(), std::slice::from_ref(&alice), "empty password");

        for (user, password) in [("mallory", &b"a"[..]), ("mallory", b""), ("ALICE", b"a")] {
            assert!(!file.verify(user, password));
            let runs = runs::take();
            assert_eq!(runs.len(), 1, "{user:?} {password:?}: one argon2 run");
            let dummy = &runs[0];
            assert_ne!(dummy, &alice, "against the dummy, not a real user's hash");
            assert_eq!(dummy.algorithm, alice.algorithm);
            assert_eq!(dummy.version, alice.version);
            assert_eq!(dummy.params, alice.params, "with the entries' parameters");
            assert_eq!(dummy.hash.map(|o| o.len()), alice.hash.map(|o| o.len()));
        }
    }

    #[test]
    fn an_empty_file_verifies_unknown_users_with_its_params() {
        let file = PasswordFile::new().with_params(small_params());
        assert!(!file.verify("alice", b"pw"));
        let runs = runs::take();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].params.to_string(), "m=64,t=1,p=1");
    }

    #[test]
    fn add_replace_and_delete_keep_comments_and_order() {
        let (a, b, c) = (hash("a"), hash("b"), hash("c"));
        let mut file = parse(&format!("# head\nalice:{a}\n\n# bob's\nbob:{b}\n# tail\n")).unwrap();

        file.add_or_replace("carol/+#", &c).unwrap();
        let b2 = hash("b2");
        file.add_or_replace("bob", &b2).unwrap();
        assert_eq!(
            file.to_text(),
            format!("# head\nalice:{a}\n\n# bob's\nbob:{b2}\n# tail\ncarol/+#:{c}\n")
        );
        assert!(file.verify("bob", b"b2") && !file.verify("bob", b"b"));
        assert!(file.verify("carol/+#", b"c"));

        assert!(file.delete("alice"));
        assert!(!file.delete("alice"));
        assert!(!file.delete("nobody"));
        assert_eq!(
            file.to_text(),
            format!("# head\n\n# bob's\nbob:{b2}\n# tail\ncarol/+#:{c}\n")
        );
        // The index still points at the right lines after the removal shifted them.
        assert!(!file.verify("alice", b"a"));
        assert!(file.verify("bob", b"b2"));
        assert!(file.verify("carol/+#", b"c"));
        file.add_or_replace("carol/+#", &a).unwrap();
        assert!(file.verify("carol/+#", b"a"));

        let reread = parse(&file.to_text()).unwrap();
        assert_eq!(reread.to_text(), file.to_text());
        assert_eq!(reread.users().collect::<Vec<_>>(), ["bob", "carol/+#"]);
    }

    #[test]
    fn add_or_replace_refuses_what_the_format_cannot_hold() {
        let mut file = PasswordFile::new();
        for user in ["", "a:b", "a\nb", "#root"] {
            assert!(
                matches!(
                    file.add_or_replace(user, &hash("x")),
                    Err(AuthError::InvalidUser { .. })
                ),
                "{user:?}"
            );
        }
        for bad in ["", "secret", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ"] {
            assert!(
                matches!(
                    file.add_or_replace("alice", bad),
                    Err(AuthError::InvalidHash(_))
                ),
                "{bad:?}"
            );
        }
        assert!(file.is_empty());
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_creates_the_file_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::new();
        file.add_or_replace("alice", &hash("a")).unwrap();
        file.save(&path).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let loaded = PasswordFile::load(&path).unwrap();
        assert_eq!(loaded.to_text(), file.to_text());
        assert!(loaded.verify("alice", b"a"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"], "no temporary file left behind");
    }

    #[test]
    fn save_replaces_the_old_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let old = format!("# old\nalice:{}\n", hash("a"));
        std::fs::write(&path, &old).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // A reader that opened the old file keeps reading the old contents: the new file is
        // a new inode renamed over the name, not the old one rewritten in place.
        let mut reader = std::fs::File::open(&path).unwrap();

        let mut file = PasswordFile::load(&path).unwrap();
        file.add_or_replace("bob", &hash("b")).unwrap();
        file.save(&path).unwrap();

        let mut seen = String::new();
        std::io::Read::read_to_string(&mut reader, &mut seen).unwrap();
        assert_eq!(seen, old);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), file.to_text());
        #[cfg(unix)]
        assert_eq!(
            mode(&path),
            0o600,
            "the new file is 0600 whatever the old mode"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn save_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("passwd");
        let err = PasswordFile::new().save(&path).unwrap_err();
        assert!(matches!(err, AuthError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }

    #[test]
    fn debug_shows_users_not_hashes() {
        let file = parse(&format!("alice:{}\n", hash("a"))).unwrap();
        let debug = format!("{file:?}");
        assert!(
            debug.contains("alice") && !debug.contains("argon2"),
            "{debug}"
        );
    }

    #[test]
    fn a_line_may_carry_scram_verifiers_after_the_hash() {
        let scram = ScramCredentials::generate(b"pw", 4096).unwrap();
        let text = format!(
            "alice:{} {}\nbob:{}\n",
            hash("pw"),
            scram.to_text(),
            hash("x")
        );
        let file = parse(&text).unwrap();
        assert!(
            file.verify("alice", b"pw"),
            "the argon2id hash still verifies"
        );
        assert!(file.has_scram());
        assert!(matches!(file.scram_lookup("alice"), scram::Lookup::Known(c) if c == scram));
        assert_eq!(file.to_text(), text, "saved as read");
        // Unknown users and users without SCRAM verifiers get the same made-up salt each time,
        // a different one per user, and the iteration count the real entries have.
        let made_up = |user| match file.scram_lookup(user) {
            scram::Lookup::Unknown { salt, iterations } => (salt, iterations),
            scram::Lookup::Known(_) => panic!("{user} has no verifiers"),
        };
        assert_eq!(made_up("bob"), made_up("bob"));
        assert_eq!(made_up("nobody").1, 4096);
        assert_eq!(made_up("nobody").0.len(), 16);
        assert_ne!(made_up("nobody").0, made_up("bob").0);

        let (line, problem) = parse_error(&format!(
            "alice:{} SCRAM-SHA-256$1:AA==$AA==:AA==\n",
            hash("pw")
        ));
        assert_eq!(line, 1);
        assert!(
            matches!(problem, LineError::InvalidHash { .. }),
            "{problem:?}"
        );
        let (_, problem) =
            parse_error(&format!("alice:{} {} extra\n", hash("pw"), scram.to_text()));
        assert!(
            matches!(problem, LineError::InvalidHash { .. }),
            "{problem:?}"
        );
        assert!(!PasswordFile::new().has_scram());
    }
}
