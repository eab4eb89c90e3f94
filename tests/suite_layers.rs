//! The layers against the numpy and TensorFlow references, the fused kernels, the
//! generated models' representations and the 2018 NeXtVLAD model.
//!
//! One test binary for these files (build time, issue 22: each binary links the zoo and
//! dfdx once). Each file is a module: `cargo test --test suite_layers frames_as_data::`
//! runs one file's tests. The modules are `pub`, as each file's items were at its own
//! binary's root (a `#[video_model]` builder a file only names as a type counts as used).
// Each file keeps its own `mod common;` (unchanged while other work edits the files),
// so the helpers are compiled once per file that uses them.
#![allow(clippy::duplicate_mod)]

#[path = "frames_as_data.rs"]
pub mod frames_as_data;
#[path = "fused_kernels.rs"]
pub mod fused_kernels;
#[path = "layers_head.rs"]
pub mod layers_head;
#[path = "layers_norms.rs"]
pub mod layers_norms;
#[path = "layers_pooling.rs"]
pub mod layers_pooling;
#[path = "layers_recurrent.rs"]
pub mod layers_recurrent;
#[path = "nextvlad_2018.rs"]
pub mod nextvlad_2018;
#[path = "representations.rs"]
pub mod representations;
#[path = "tf_import.rs"]
pub mod tf_import;
