//! One place that makes the directories tests write into.

use std::path::{Path, PathBuf};

/// A fresh, empty directory `<system temp>/loupe-<file>-<name>-<pid>`: whatever an earlier
/// run left there is removed first. `<file>` is the calling test file's name and `name`
/// keeps that file's tests apart: one test binary runs several files' tests on parallel
/// threads. The process id keeps concurrent runs of the suite apart. Tests remove it when
/// they pass; a failing test leaves it for a look.
#[track_caller]
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loupe-{}-{name}-{}", caller_file(), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The name (without `.rs`) of the test file that called the `#[track_caller]` chain.
#[track_caller]
fn caller_file() -> String {
    let file = std::panic::Location::caller().file();
    Path::new(file).file_stem().map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
}
