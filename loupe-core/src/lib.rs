//! Layers of loupe.

pub mod data;
