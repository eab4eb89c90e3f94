//! The paper's models, declared with [`video_model`](crate::video_model).
