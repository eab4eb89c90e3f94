//! Reading and writing data: TFRecords and their errors, datasets, segments, metrics,
//! submissions and TensorBoard events.
//!
//! One test binary for these files (build time, issue 22: each binary links the zoo and
//! dfdx once). Each file is a module: `cargo test --test suite_data data_bad_input::`
//! runs one file's tests. The modules are `pub`, as each file's items were at its own
//! binary's root (a `#[video_model]` builder a file only names as a type counts as used).
// Each file keeps its own `mod common;` (unchanged while other work edits the files),
// so the helpers are compiled once per file that uses them.
#![allow(clippy::duplicate_mod)]

#[path = "data_bad_input.rs"]
pub mod data_bad_input;
#[path = "data_cli.rs"]
pub mod data_cli;
#[path = "data_dataset.rs"]
pub mod data_dataset;
#[path = "data_roundtrip.rs"]
pub mod data_roundtrip;
#[path = "data_segments.rs"]
pub mod data_segments;
#[path = "data_synthetic.rs"]
pub mod data_synthetic;
#[path = "data_tf_fixtures.rs"]
pub mod data_tf_fixtures;
#[path = "every_test_file_runs.rs"]
pub mod every_test_file_runs;
#[path = "metrics.rs"]
pub mod metrics;
#[path = "submission.rs"]
pub mod submission;
#[path = "tensorboard.rs"]
pub mod tensorboard;
