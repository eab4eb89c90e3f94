//! Layers of loupe.
