//! Argon2id: hashing a new password, checking that a stored hash is one we accept, verifying a
//! password against it, and the dummy hash that unknown users are verified against.
//!
//! Verification takes its parameters from the stored PHC string, so a file may mix hashes
//! made with different parameters; hashing uses [`HashParams`] (argon2's defaults unless told).

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::password_hash::{self, try_generate_salt};
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    ARGON2ID_IDENT,
};

use crate::AuthError;

/// The only argon2 version we write or accept (0x13, `v=19` in a PHC string).
const VERSION: u32 = 0x13;

/// The salt of the dummy hash. It is not secret and need not be random: nothing verified
/// against the dummy is ever accepted, it only has to cost what a real verification costs.
const DUMMY_SALT: &[u8; 16] = b"corvus-no-user!!";

/// Argon2id cost parameters used when hashing. The default is argon2's (19 MiB of memory,
/// 2 iterations, 1 lane: OWASP's recommendation), which `corvus passwd` always uses; smaller
/// ones exist for tests, where hashing with the defaults in a debug build is slow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashParams(Params);

impl HashParams {
    /// `memory_kib` KiB of memory, `iterations` passes, `parallelism` lanes; refused if argon2
    /// does not accept them (e.g. less than 8 KiB per lane).
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, AuthError> {
        Params::new(memory_kib, iterations, parallelism, None)
            .map(HashParams)
            .map_err(|e| AuthError::InvalidParams(e.to_string()))
    }

    pub fn memory_kib(&self) -> u32 {
        self.0.m_cost()
    }

    pub fn iterations(&self) -> u32 {
        self.0.t_cost()
    }

    pub fn parallelism(&self) -> u32 {
        self.0.p_cost()
    }
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams(Params::DEFAULT)
    }
}

fn argon2id(params: &HashParams) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.0.clone())
}

/// Hashes `password` with argon2id, argon2's default parameters and a fresh 16-byte salt from
/// the OS random generator, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
/// An empty password is refused: [`crate::PasswordFile::verify`] never accepts one.
pub fn hash_password(password: &[u8]) -> Result<String, AuthError> {
    hash_password_with(password, &HashParams::default())
}

/// [`hash_password`] with chosen parameters.
pub fn hash_password_with(password: &[u8], params: &HashParams) -> Result<String, AuthError> {
    if password.is_empty() {
        return Err(AuthError::Hashing(
            "the password is empty, and empty passwords are always refused".into(),
        ));
    }
    let salt = try_generate_salt()
        .map_err(|e| AuthError::Hashing(format!("the OS random generator failed: {e}")))?;
    argon2id(params)
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Parses a stored hash and checks it is one we verify: argon2id, version 19, valid
/// parameters, a salt and an output. Anything else (argon2i, bcrypt, a truncated string) is
/// refused when the file is read, not discovered at a client's CONNECT.
pub(crate) fn parse_argon2id(text: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(text).map_err(|e| format!("not a PHC string ({e})"))?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(format!(
            "algorithm `{}`, expected `argon2id`",
            hash.algorithm
        ));
    }
    match hash.version {
        Some(VERSION) => {}
        Some(v) => return Err(format!("argon2 version {v}, expected 19")),
        None => return Err("no version, expected `v=19`".into()),
    }
    Params::try_from(&hash).map_err(|e| format!("bad parameters ({e})"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("no salt or no hash output".into());
    }
    Ok(hash)
}

/// What one verification came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Argon2 ran and the outputs are equal.
    Match,
    /// Argon2 ran and the outputs differ.
    Mismatch,
    /// Argon2 refused to run (parameters it rejects): counts as a failure.
    Failed,
}

/// Verifies `password` against `hash` with the parameters in `hash`. The output comparison is
/// constant-time (argon2's `Output` compares with `ctutils`), so no `subtle` is needed here.
pub(crate) fn verify(password: &[u8], hash: &PasswordHash) -> Outcome {
    let outcome = match Argon2::default().verify_password(password, hash) {
        Ok(()) => Outcome::Match,
        Err(password_hash::Error::PasswordInvalid) => Outcome::Mismatch,
        Err(_) => Outcome::Failed,
    };
    #[cfg(test)]
    if outcome != Outcome::Failed {
        runs::record(hash);
    }
    outcome
}

/// What verifying against `hash` costs, as argon2 memory blocks times passes: the dummy
/// hash copies the dearest entry, so an unknown user never takes less time than a known one.
pub(crate) fn cost(hash: &PasswordHash) -> u64 {
    Params::try_from(hash).map_or(0, |p| u64::from(p.m_cost()) * u64::from(p.t_cost()))
}

/// A hash nobody's password matches, costing what verifying against `model` costs: the same
/// algorithm, version, parameters and output length, with a fixed salt and an all-zero output.
/// Building it costs nothing (no argon2 run), so the first unknown user does not pay twice.
/// Without a model (an empty file), `params` are used.
pub(crate) fn dummy_like(
    model: Option<&PasswordHash>,
    params: &HashParams,
) -> Result<PasswordHash, String> {
    let salt = Salt::new(DUMMY_SALT).map_err(|e| e.to_string())?;
    let zeros = [0u8; Output::MAX_LENGTH];
    match model {
        Some(model) => {
            let len = model
                .hash
                .as_ref()
                .map_or(Params::DEFAULT_OUTPUT_LEN, Output::len);
            let output = zeros.get(..len).ok_or("output too long")?;
            Ok(PasswordHash {
                salt: Some(salt),
                hash: Some(Output::new(output).map_err(|e| e.to_string())?),
                ..model.clone()
            })
        }
        None => Ok(PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(VERSION),
            params: ParamsString::try_from(&params.0).map_err(|e| e.to_string())?,
            salt: Some(salt),
            hash: Some(
                Output::new(&zeros[..Params::DEFAULT_OUTPUT_LEN]).map_err(|e| e.to_string())?,
            ),
        }),
    }
}

/// Small parameters for tests, which check behaviour, not cost: argon2's defaults take about
/// half a second per hash in an unoptimized build.
#[cfg(test)]
pub(crate) fn small_params() -> HashParams {
    HashParams(Params::new(64, 1, 1, None).expect("valid test parameters"))
}

/// Test-only record of the argon2 computations this thread ran to completion, and with which
/// hash: how the tests see that an unknown user really costs a verification, without timing.
#[cfg(test)]
pub(crate) mod runs {
    use std::cell::RefCell;

    use argon2::PasswordHash;

    thread_local! {
        static RUNS: RefCell<Vec<PasswordHash>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(hash: &PasswordHash) {
        RUNS.with(|r| r.borrow_mut().push(hash.clone()));
    }

    /// The hashes verified against since the last call, oldest first.
    pub(crate) fn take() -> Vec<PasswordHash> {
        RUNS.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hash::small_params as small;

    #[test]
    fn hashes_are_argon2id_phc_strings_with_random_salts() {
        let a = hash_password_with(b"secret", &small()).unwrap();
        let b = hash_password_with(b"secret", &small()).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        let parsed = parse_argon2id(&a).unwrap();
        assert_eq!(verify(b"secret", &parsed), Outcome::Match);
        assert_eq!(verify(b"Secret", &parsed), Outcome::Mismatch);
    }

    #[test]
    fn default_params_are_argon2s() {
        let p = HashParams::default();
        assert_eq!(
            (p.memory_kib(), p.iterations(), p.parallelism()),
            (19456, 2, 1)
        );
        assert!(HashParams::new(1, 1, 1).is_err());
    }

    #[test]
    fn empty_passwords_are_not_hashed() {
        assert!(matches!(
            hash_password_with(b"", &small()),
            Err(AuthError::Hashing(_))
        ));
    }

    #[test]
    fn only_argon2id_v19_with_salt_and_output_is_accepted() {
        let good = hash_password_with(b"pw", &small()).unwrap();
        assert!(parse_argon2id(&good).is_ok());
        let bad = [
            "",
            "plaintext",
            "$2b$12$abcdefghijklmnopqrstuu5Q3g5ePl0sWZ7Z8v8Vtyq0cXKn2TeS",
            &good.replace("argon2id", "argon2i"),
            &good.replace("v=19", "v=16"),
            &good.replace("$v=19", ""),
            &good.replace("m=64", "m=1"),
            &good.replace(",t=1", ",t=1,x=3"),
            // Salt but no output.
            &good[..good.rfind('$').unwrap()],
        ];
        for text in bad {
            assert!(parse_argon2id(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn the_dummy_mirrors_its_model_and_matches_nothing() {
        let model = parse_argon2id(&hash_password_with(b"pw", &small()).unwrap()).unwrap();
        let dummy = dummy_like(Some(&model), &HashParams::default()).unwrap();
        assert_eq!(dummy.algorithm, model.algorithm);
        assert_eq!(dummy.version, model.version);
        assert_eq!(dummy.params, model.params);
        assert_eq!(
            dummy.hash.as_ref().map(Output::len),
            model.hash.as_ref().map(Output::len)
        );
        assert_eq!(verify(b"pw", &dummy), Outcome::Mismatch);
        assert!(parse_argon2id(&dummy.to_string()).is_ok());

        let empty = dummy_like(None, &small()).unwrap();
        assert_eq!(empty.params.to_string(), "m=64,t=1,p=1");
        assert!(parse_argon2id(&empty.to_string()).is_ok());
    }
}
