//! One place that makes the directories tests write into.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fresh, empty directory `<system temp>/loupe-<file>-<name>-<pid>`, removed when the
/// value and its clones are dropped unless the test is failing (a failing test leaves it
/// for a look).
/// Whatever an earlier run left there is removed first. `<file>` is the calling test
/// file's name and `name` keeps that file's tests apart: one test binary runs several
/// files' tests on parallel threads. The process id keeps concurrent runs of the suite
/// apart.
///
/// Keep the value for as long as the directory is used: `scratch_dir(..).join(..)` would
/// remove the directory at the end of the statement.
#[must_use = "the directory is removed when this value is dropped"]
#[derive(Debug, Clone)]
pub struct ScratchDir(Arc<Removed>);

/// The directory, removed when the last [`ScratchDir`] holding it is dropped.
#[derive(Debug)]
struct Removed(PathBuf);

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0 .0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        self
    }
}

impl Drop for Removed {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh [`ScratchDir`] for the calling test file's `name`.
#[track_caller]
pub fn scratch_dir(name: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("loupe-{}-{name}-{}", caller_file(), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    ScratchDir(Arc::new(Removed(dir)))
}

/// The name (without `.rs`) of the test file that called the `#[track_caller]` chain.
#[track_caller]
fn caller_file() -> String {
    let file = std::panic::Location::caller().file();
    Path::new(file).file_stem().map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
}
