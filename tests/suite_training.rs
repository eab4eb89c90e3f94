//! Training in-process: the trainer, its pieces, the recurrent models, checkpoints and
//! ensembles.
//!
//! One test binary for these files (build time, issue 22: each binary links the zoo and
//! dfdx once). Each file is a module: `cargo test --test suite_training checkpoint::`
//! runs one file's tests. The modules are `pub`, as each file's items were at its own
//! binary's root (a `#[video_model]` builder a file only names as a type counts as used).
// Each file keeps its own `mod common;` (unchanged while other work edits the files),
// so the helpers are compiled once per file that uses them.
#![allow(clippy::duplicate_mod)]

#[path = "checkpoint.rs"]
pub mod checkpoint;
#[path = "ensemble.rs"]
pub mod ensemble;
#[path = "jobs_by_name.rs"]
pub mod jobs_by_name;
#[path = "train_recurrent.rs"]
pub mod train_recurrent;
#[path = "trainer.rs"]
pub mod trainer;
#[path = "training_pieces.rs"]
pub mod training_pieces;
