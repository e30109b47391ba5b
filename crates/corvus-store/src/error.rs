//! Errors: every failure names the file and the operation that failed.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Creating a directory.
    CreateDir,
    /// Creating a file.
    Create,
    /// Opening a file.
    Open,
    /// Reading a file.
    Read,
    /// Writing a file.
    Write,
    /// Syncing (fsync) a file.
    Sync,
    /// Truncating a file.
    Truncate,
    /// Removing a file.
    Remove,
    /// Renaming a file.
    Rename,
    /// Listing a directory.
    List,
    /// Syncing a directory.
    SyncDir,
    /// Locking a file.
    Lock,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::CreateDir => "create directory",
            Op::Create => "create",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Sync => "sync",
            Op::Truncate => "truncate",
            Op::Remove => "remove",
            Op::Rename => "rename",
            Op::List => "list directory",
            Op::SyncDir => "sync directory",
            Op::Lock => "lock",
        })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The directory holds a file that is not a Corvus queue segment.
    #[error(
        "{}: not a Corvus queue segment ({reason}); refusing to start rather than misread or \
         delete data written by another program: move it out of the directory",
        path.display()
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A segment was written in a format version this build does not read.
    #[error(
        "{}: segment format version {found} is not supported (this build reads version \
         {supported}); it was written by a different Corvus version",
        path.display()
    )]
    UnsupportedVersion {
        /// The segment.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A payload larger than the configured maximum.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The maximum.
        max: u32,
    },
    /// A record read back did not match what recovery indexed (the file changed underneath).
    #[error("{}: corrupt record at offset {offset}: {what}", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// An earlier failure could not be rolled back; the log refuses writes until reopened.
    #[error("the log refuses writes after an unrecoverable failure ({reason}); reopen it")]
    Poisoned {
        /// The failure.
        reason: String,
    },
    /// The options are inconsistent.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
    /// The store's thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(String),
    /// The keyed state file is a database of another program (a redb file without Corvus
    /// metadata, or with metadata that is not Corvus').
    #[error(
        "{}: not a Corvus state database ({reason}); refusing to start rather than misread or \
         overwrite data written by another program: move it out of the directory",
        path.display()
    )]
    ForeignState {
        /// The database file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The keyed state file was written in a format version this build does not read.
    #[error(
        "{}: state format version {found} is not supported (this build reads version \
         {supported}); it was written by a different Corvus version",
        path.display()
    )]
    UnsupportedStateVersion {
        /// The database file.
        path: PathBuf,
        /// The version in its metadata.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The keyed state file is damaged (reported by the offline tools; the broker moves such a
    /// file to quarantine instead).
    #[error("{}: damaged state database: {reason}", path.display())]
    DamagedState {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A database operation on the keyed state failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Database {
        /// The operation.
        op: DbOp,
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The queue journal refused a write (a record that cannot be encoded, or that refers to
    /// a message body the journal does not hold). Nothing of the call was appended.
    #[error("journal write refused: {reason}")]
    JournalRefused {
        /// What is wrong.
        reason: String,
    },
    /// The journal holds a message body it cannot read back from its log.
    #[error("message body {id} (journal record {seq}) cannot be read back: {reason}")]
    BodyUnreadable {
        /// The message id.
        id: u64,
        /// The sequence number of the record that should hold it.
        seq: crate::segment::Seq,
        /// What went wrong.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another process (its lock file {} is held); stop that broker or choose another --data-dir", dir.display(), lock.display())]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
}

/// The database operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// Opening the database.
    Open,
    /// Reading (a read transaction).
    Read,
    /// Writing (a write transaction, before its commit).
    Write,
    /// Committing a write transaction.
    Commit,
}

impl fmt::Display for DbOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbOp::Open => "open state database",
            DbOp::Read => "read state database",
            DbOp::Write => "write state database",
            DbOp::Commit => "commit to state database",
        })
    }
}

impl StoreError {
    pub(crate) fn db(op: DbOp, path: &std::path::Path, source: impl Into<redb::Error>) -> Self {
        StoreError::Database {
            op,
            path: path.to_path_buf(),
            source: Box::new(source.into()),
        }
    }

    pub(crate) fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for attaching the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: Op, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: Op, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(op, path, e))
    }
}
