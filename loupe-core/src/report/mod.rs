//! What training reports besides the terminal: curves as PNG.

mod plot;
mod png;

pub use plot::training_curves_png;
pub use png::encode_png;
