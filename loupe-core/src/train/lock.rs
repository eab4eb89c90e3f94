//! One writer per training directory.
//!
//! A training run holds an exclusive OS lock (`flock` on Unix, `LockFileEx` on Windows)
//! on `<train-dir>/lock` for its whole life. A second `loupe train` on the same directory
//! fails at once, naming the holder's process id, instead of interleaving its
//! checkpoints with the first one's. The OS releases the lock when the holder exits in
//! any way (including `kill -9`), so a stale lock file never blocks a later run. Readers
//! (`loupe eval`, `loupe predict`) take no lock: they only read complete checkpoints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside a training directory.
pub const LOCK_FILE: &str = "lock";

/// Why a training directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir} is in use by another training process (pid {holder}): wait for it to finish, stop it, or give another --train-dir")]
    Held { dir: PathBuf, holder: String },
    #[error("{path}: cannot lock the training directory")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The exclusive lock on a training directory, held until dropped.
#[derive(Debug)]
pub struct TrainDirLock {
    _file: File,
    path: PathBuf,
}

impl TrainDirLock {
    /// Locks `dir` (created if needed) for this process, or says who holds it.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("loupe-lock-doc-{}", std::process::id()));
    /// let lock = loupe_core::train::TrainDirLock::acquire(&dir).unwrap();
    /// let err = loupe_core::train::TrainDirLock::acquire(&dir).unwrap_err();
    /// assert!(err.to_string().contains(&format!("pid {}", std::process::id())));
    /// drop(lock);
    /// loupe_core::train::TrainDirLock::acquire(&dir).unwrap();
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn acquire(dir: &Path) -> Result<TrainDirLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        // Not truncated on open: the holder's pid stays readable until we hold the lock.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
                return Err(LockError::Held { dir: dir.to_path_buf(), holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(TrainDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
