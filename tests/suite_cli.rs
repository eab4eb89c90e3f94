//! The `loupe` command line, run as a child process (`CARGO_BIN_EXE_loupe`).
//!
//! One test binary for these files (build time, issue 22: each binary links the zoo and
//! dfdx once). Each file is a module: `cargo test --test suite_cli cli_device::` runs one
//! file's tests. The modules are `pub`, as each file's items were at its own binary's
//! root (a `#[video_model]` builder a file only names as a type counts as used).
// Each file keeps its own `mod common;` (unchanged while other work edits the files),
// so the helpers are compiled once per file that uses them.
#![allow(clippy::duplicate_mod)]

#[path = "cli_device.rs"]
pub mod cli_device;
#[path = "cli_embed.rs"]
pub mod cli_embed;
#[path = "cli_ensemble.rs"]
pub mod cli_ensemble;
#[path = "cli_import.rs"]
pub mod cli_import;
#[path = "cli_score.rs"]
pub mod cli_score;
#[path = "cli_segments.rs"]
pub mod cli_segments;
#[path = "cli_train.rs"]
pub mod cli_train;
