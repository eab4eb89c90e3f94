//! What training reports besides the terminal: curves as PNG, TensorBoard event files.

mod plot;
mod png;
mod tensorboard;

pub use plot::training_curves_png;
pub use png::encode_png;
pub use tensorboard::{Event, EventWriter, Summary, SummaryValue};
