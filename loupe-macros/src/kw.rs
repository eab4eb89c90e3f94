//! Every keyword of the `#[video_model]` grammar but the pooling kinds and their
//! arguments, which the table in `pooling.rs` holds.

// Top-level keys.
syn::custom_keyword!(frames);
syn::custom_keyword!(fusion);
syn::custom_keyword!(streams);
syn::custom_keyword!(hidden);
syn::custom_keyword!(after_pooling);
syn::custom_keyword!(classifier);
syn::custom_keyword!(after_classifier);
syn::custom_keyword!(classes);
syn::custom_keyword!(input);
syn::custom_keyword!(frame_mask);
syn::custom_keyword!(dropout);

// Input kinds (`frames` is also a key).
syn::custom_keyword!(video_level);
syn::custom_keyword!(raw_frames);

// Stream keys.
syn::custom_keyword!(features);
syn::custom_keyword!(pooling);

// Fusion.
syn::custom_keyword!(early);
syn::custom_keyword!(late);

// Pooling kinds and their arguments: see `pooling.rs` (the table).

// Hidden layer.
syn::custom_keyword!(fc);
syn::custom_keyword!(size);
syn::custom_keyword!(batch_norm);
syn::custom_keyword!(relu6);

// Gates.
syn::custom_keyword!(none);
syn::custom_keyword!(context_gating);
syn::custom_keyword!(biased_context_gating);
syn::custom_keyword!(glu);
syn::custom_keyword!(reduction);

// Classifiers.
syn::custom_keyword!(moe);
syn::custom_keyword!(experts);
syn::custom_keyword!(logistic);
syn::custom_keyword!(l2);
