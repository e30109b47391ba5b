//! The file layer the log is written against.
//!
//! [`FileSystem`] and [`StorageFile`] are the few operations the log needs, so that tests can
//! swap the real disk ([`OsFileSystem`]) for a fault-injecting in-memory one
//! ([`fault::FaultFs`], behind `cfg(test)` or the `testing` feature).
//!
//! All reads and writes are positional: the log always knows the offset it writes at, so a
//! failed write can be cut off with [`StorageFile::truncate`] and written again.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (not the full path). `None` if it is not valid UTF-8.
    pub name: Option<String>,
    /// The full path of the entry.
    pub path: PathBuf,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// A file opened for reading and writing.
pub trait StorageFile: Debug + Send + Sync {
    /// The current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` if the file is too short.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. On error, any prefix of `buf` may have been written.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Writes all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.len()?;
        self.write_at(end, buf)
    }
    /// Makes the file's contents and length durable (`fsync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Sets the file's length to `len`.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The directory operations the log needs.
pub trait FileSystem: Debug + Send + Sync {
    /// Creates a directory and its parents (mode 0700 on unix for the ones it creates).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a new file (mode 0600 on unix); fails if it already exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Lists a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes the directory's entries (files created, removed, renamed) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// The real file system, through `std::fs`.
///
/// Files are created with mode 0600 and directories with 0700 on unix (the process umask can
/// only narrow these).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFileSystem;

#[derive(Debug)]
struct OsFile {
    file: std::fs::File,
}

impl StorageFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    #[cfg(unix)]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }

    #[cfg(unix)]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    #[cfg(not(unix))]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

impl FileSystem for OsFileSystem {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Box::new(OsFile {
            file: options.open(path)?,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name().to_str().map(str::to_owned),
                path: entry.path(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(out)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        // Directories cannot be opened for fsync on this platform; entries are made durable by
        // the file system's own metadata journaling.
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

/// A fault-injecting, in-memory [`FileSystem`] for tests.
#[cfg(any(test, feature = "testing"))]
pub mod fault {
    use super::{DirEntry, FileSystem, StorageFile};
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, MutexGuard};

    /// The faults to inject. Counters count down as faults fire.
    #[derive(Debug, Clone, Default)]
    pub struct Faults {
        /// The next this-many file syncs fail with an I/O error. A failed sync behaves like
        /// Linux after a writeback error: the dirty data is *not* persisted and is no longer
        /// considered dirty, so a later successful sync does not persist it either unless it
        /// is written again.
        pub fail_syncs: u32,
        /// The next write stores only this many bytes of its buffer and then fails.
        pub short_write: Option<usize>,
        /// Bytes that may still be written (counting file growth only); a write that needs
        /// more stores what fits and fails with "no space left on device" (ENOSPC).
        pub space_left: Option<u64>,
        /// The next this-many truncations fail with an I/O error.
        pub fail_truncates: u32,
    }

    /// What a crash keeps of data that was written but not synced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CrashMode {
        /// Every file reverts to its last synced state.
        LoseUnsynced,
        /// Each file keeps up to this many bytes of unsynced data appended past its synced
        /// length (a write torn at that offset); everything else reverts.
        KeepUnsyncedPrefix(u64),
    }

    #[derive(Debug, Default, Clone)]
    struct MemFile {
        data: Vec<u8>,
        dirty: Vec<bool>,
        durable: Vec<u8>,
        /// Whether the directory entry is durable (the parent was synced after creation).
        entry_durable: bool,
    }

    #[derive(Debug, Default)]
    struct State {
        files: BTreeMap<PathBuf, MemFile>,
        dirs: BTreeMap<PathBuf, ()>,
        faults: Faults,
        syncs: u64,
        writes: u64,
    }

    /// The in-memory file system. Clones share the same state.
    #[derive(Debug, Clone, Default)]
    pub struct FaultFs {
        state: Arc<Mutex<State>>,
    }

    fn injected(what: &str) -> io::Error {
        io::Error::other(format!("injected fault: {what}"))
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found", path.display()),
        )
    }

    impl FaultFs {
        /// An empty file system.
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Replaces the faults to inject.
        pub fn set_faults(&self, faults: Faults) {
            self.lock().faults = faults;
        }

        /// The faults still armed.
        pub fn faults(&self) -> Faults {
            self.lock().faults.clone()
        }

        /// How many file syncs succeeded so far.
        pub fn sync_count(&self) -> u64 {
            self.lock().syncs
        }

        /// How many write calls were made so far.
        pub fn write_count(&self) -> u64 {
            self.lock().writes
        }

        /// Simulates a power loss: unsynced data and directory entries are lost (see
        /// [`CrashMode`]). Open handles must not be used afterwards.
        pub fn crash(&self, mode: CrashMode) {
            let mut st = self.lock();
            st.files.retain(|_, f| f.entry_durable);
            for f in st.files.values_mut() {
                let mut data = f.durable.clone();
                if let CrashMode::KeepUnsyncedPrefix(keep) = mode {
                    let start = data.len();
                    // Keep a prefix of the contiguous dirty extension past the synced length,
                    // but only if the synced part itself was not rewritten.
                    if f.data.len() > start && f.data[..start] == data[..] {
                        let mut end = start;
                        while end < f.data.len() && f.dirty[end] && (end - start) < keep as usize {
                            end += 1;
                        }
                        data.extend_from_slice(&f.data[start..end]);
                    }
                }
                // What survived the crash is what is on the disk.
                f.dirty = vec![false; data.len()];
                f.durable = data.clone();
                f.data = data;
            }
            st.faults = Faults::default();
        }

        /// The current (not necessarily durable) contents of a file.
        pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
            self.lock().files.get(path).map(|f| f.data.clone())
        }

        /// Replaces a file's contents, durably (to plant damage or foreign data).
        pub fn put(&self, path: &Path, data: &[u8]) {
            let mut st = self.lock();
            let f = st.files.entry(path.to_path_buf()).or_default();
            f.data = data.to_vec();
            f.durable = data.to_vec();
            f.dirty = vec![false; data.len()];
            f.entry_durable = true;
        }

        /// All file paths.
        pub fn paths(&self) -> Vec<PathBuf> {
            self.lock().files.keys().cloned().collect()
        }
    }

    #[derive(Debug)]
    struct FaultFile {
        fs: FaultFs,
        path: PathBuf,
    }

    impl FaultFile {
        fn with<R>(&self, f: impl FnOnce(&mut State, &PathBuf) -> io::Result<R>) -> io::Result<R> {
            let mut st = self.fs.lock();
            if !st.files.contains_key(&self.path) {
                return Err(not_found(&self.path));
            }
            f(&mut st, &self.path)
        }
    }

    impl StorageFile for FaultFile {
        fn len(&self) -> io::Result<u64> {
            self.with(|st, p| Ok(st.files[p].data.len() as u64))
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.with(|st, p| {
                let data = &st.files[p].data;
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                match start.checked_add(buf.len()) {
                    Some(end) if end <= data.len() => {
                        buf.copy_from_slice(&data[start..end]);
                        Ok(())
                    }
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past end",
                    )),
                }
            })
        }

        fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
            self.with(|st, p| {
                st.writes += 1;
                let offset = offset as usize;
                let old_len = st.files[p].data.len();
                let mut n = buf.len();
                let mut error = None;
                if let Some(k) = st.faults.short_write.take() {
                    if k < n {
                        n = k;
                        error = Some(injected("short write"));
                    }
                }
                if let Some(space) = st.faults.space_left {
                    let growth = (offset + n).saturating_sub(old_len) as u64;
                    if growth > space {
                        n -= (growth - space) as usize;
                        error = Some(injected("no space left on device (ENOSPC)"));
                    }
                    let growth = (offset + n).saturating_sub(old_len) as u64;
                    st.faults.space_left = Some(space - growth);
                }
                let f = st.files.get_mut(p).expect("checked");
                if offset + n > f.data.len() {
                    f.data.resize(offset + n, 0);
                    f.dirty.resize(offset + n, true);
                }
                f.data[offset..offset + n].copy_from_slice(&buf[..n]);
                f.dirty[offset..offset + n]
                    .iter_mut()
                    .for_each(|d| *d = true);
                error.map_or(Ok(()), Err)
            })
        }

        fn sync(&mut self) -> io::Result<()> {
            self.with(|st, p| {
                let fail = st.faults.fail_syncs > 0;
                if fail {
                    st.faults.fail_syncs -= 1;
                } else {
                    st.syncs += 1;
                }
                let f = st.files.get_mut(p).expect("checked");
                if fail {
                    // Writeback error: the dirty pages are dropped from the dirty set.
                    f.dirty.iter_mut().for_each(|d| *d = false);
                    return Err(injected("fsync failed (EIO)"));
                }
                f.durable.resize(f.data.len(), 0);
                for (i, d) in f.dirty.iter_mut().enumerate() {
                    if *d {
                        f.durable[i] = f.data[i];
                        *d = false;
                    }
                }
                Ok(())
            })
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.with(|st, p| {
                if st.faults.fail_truncates > 0 {
                    st.faults.fail_truncates -= 1;
                    return Err(injected("truncate failed (EIO)"));
                }
                let f = st.files.get_mut(p).expect("checked");
                let len = len as usize;
                f.data.resize(len, 0);
                f.dirty.resize(len, true);
                Ok(())
            })
        }
    }

    impl FileSystem for FaultFs {
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            let mut st = self.lock();
            let mut p = Some(path);
            while let Some(dir) = p {
                if dir.as_os_str().is_empty() {
                    break;
                }
                st.dirs.insert(dir.to_path_buf(), ());
                p = dir.parent();
            }
            Ok(())
        }

        fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
            let mut st = self.lock();
            if st.files.contains_key(path) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            st.files.insert(path.to_path_buf(), MemFile::default());
            Ok(Box::new(FaultFile {
                fs: self.clone(),
                path: path.to_path_buf(),
            }))
        }

        fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
            if !self.lock().files.contains_key(path) {
                return Err(not_found(path));
            }
            Ok(Box::new(FaultFile {
                fs: self.clone(),
                path: path.to_path_buf(),
            }))
        }

        fn remove(&self, path: &Path) -> io::Result<()> {
            self.lock()
                .files
                .remove(path)
                .map(|_| ())
                .ok_or_else(|| not_found(path))
        }

        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            let mut st = self.lock();
            let mut f = st.files.remove(from).ok_or_else(|| not_found(from))?;
            f.entry_durable = true;
            st.files.insert(to.to_path_buf(), f);
            Ok(())
        }

        fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
            let st = self.lock();
            let mut out = Vec::new();
            for path in st.files.keys() {
                if path.parent() == Some(dir) {
                    out.push(entry(path, false));
                }
            }
            for path in st.dirs.keys() {
                if path.parent() == Some(dir) {
                    out.push(entry(path, true));
                }
            }
            Ok(out)
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            let mut st = self.lock();
            for (path, f) in st.files.iter_mut() {
                if path.parent() == Some(dir) {
                    f.entry_durable = true;
                }
            }
            Ok(())
        }

        fn exists(&self, path: &Path) -> io::Result<bool> {
            let st = self.lock();
            Ok(st.files.contains_key(path) || st.dirs.contains_key(path))
        }
    }

    fn entry(path: &Path, is_dir: bool) -> DirEntry {
        DirEntry {
            name: path.file_name().and_then(|n| n.to_str()).map(str::to_owned),
            path: path.to_path_buf(),
            is_dir,
        }
    }
}
