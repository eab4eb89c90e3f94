pub use loupe_core::*;
