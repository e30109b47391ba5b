//! Replacing a file so that readers (the broker reloading it, a crash at any moment) see the
//! old contents or the new ones, never a mix or a truncated file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AuthError;

/// Writes `contents` to a new file next to `path` (same directory, hence same filesystem, so
/// the rename is atomic), created with mode 0600 on unix since it holds password hashes,
/// fsyncs it, renames it over `path`, then fsyncs the directory so the rename itself survives
/// a crash. The temporary file is removed if anything fails before the rename.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthError::Io {
            action,
            path,
            source,
        }
    };
    let name = path.file_name().ok_or_else(|| {
        io_err("write", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(dir, &name.to_string_lossy())
        .map_err(io_err("create a temporary file in", dir))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &tmp))
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(io_err("rename a temporary file to", path))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir).map_err(io_err("sync the directory", dir))
}

/// A new file `.NAME.PID.N.tmp` in `dir`. `create_new` never follows or reuses an existing
/// file: one left by a crashed run is skipped, not overwritten.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; its rename is durable enough for this.
        let _ = dir;
        Ok(())
    }
}
