//! `#[video_model]`: composition, equivalence with hand-written models, hygiene, the
//! zoo's sizes and `loupe bench`'s FLOP count (the compile-fail cases are `macro_ui`).
//!
//! One test binary for these files (build time, issue 22: each binary links the zoo and
//! dfdx once). Each file is a module: `cargo test --test suite_macros bench_flops::` runs
//! one file's tests. The modules are `pub`, as each file's items were at its own binary's
//! root (a `#[video_model]` builder a file only names as a type counts as used).
// Each file keeps its own `mod common;` (unchanged while other work edits the files),
// so the helpers are compiled once per file that uses them.
#![allow(clippy::duplicate_mod)]

#[path = "bench_flops.rs"]
pub mod bench_flops;
#[path = "macro_compose.rs"]
pub mod macro_compose;
#[path = "macro_equivalence.rs"]
pub mod macro_equivalence;
#[path = "macro_hygiene.rs"]
pub mod macro_hygiene;
#[path = "macro_zoo.rs"]
pub mod macro_zoo;
