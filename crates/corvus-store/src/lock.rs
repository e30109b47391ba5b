//! The data directory's lock: one broker per directory. Two processes writing the same store
//! would corrupt it, so the second one is refused at start with a message that says why.
//!
//! The lock is an advisory exclusive lock on `DIR/LOCK`, held for the life of [`DirLock`]. The
//! operating system drops it when the process dies, kill -9 included, so a crash never leaves
//! a stale lock behind. The file records the holder's pid, for people; the lock is the truth.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Op, StoreError};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds a data directory for this process until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed (0700) and takes its lock, or says which directory is in use.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        create_private_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let io = |op| {
            let path = path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io(Op::Create))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    dir: dir.to_owned(),
                    lock: path,
                })
            }
            Err(TryLockError::Error(source)) => return Err(io(Op::Lock)(source)),
        }
        file.set_len(0).map_err(io(Op::Truncate))?;
        writeln!(file, "{}", std::process::id()).map_err(io(Op::Write))?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::Io {
        op: Op::CreateDir,
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DirLock::acquire(&data).expect("first lock");
        match DirLock::acquire(&data) {
            Err(StoreError::InUse { dir: d, lock }) => {
                assert_eq!(d, data);
                assert_eq!(lock, data.join(LOCK_FILE));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(&data).expect("free again after drop");
    }

    #[test]
    fn the_lock_file_names_the_holder_and_the_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let lock = DirLock::acquire(&data).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(lock.path()), 0o600);
        }
    }
}
