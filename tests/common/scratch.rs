//! One place that makes the directories tests write into.

use std::path::PathBuf;

/// A fresh, empty directory `<system temp>/loupe-<name>-<pid>`: whatever an earlier run
/// left there is removed first. `name` keeps the tests of one binary apart (they run on
/// parallel threads), the process id keeps concurrent runs of the suite apart. Tests
/// remove it when they pass; a failing test leaves it for a look.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loupe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}
