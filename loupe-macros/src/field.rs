//! The names of the built type's own fields (its checkpoint keys), defined once.
//!
//! Streams under late fusion add one field each, named after the stream; they may not
//! take one of these names.

use proc_macro2::Span;
use syn::Ident;

/// A field of the built type other than the streams' poolings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    /// Per-frame L2 normalisation and input batch norm (`FrameInput`), or L2
    /// normalisation only (recurrent pooling, video-level input).
    Input,
    /// The pooling of the concatenated frames under early fusion.
    Pooling,
    /// Dropout on the pooled representation (`dropout`), training only.
    Dropout,
    Hidden,
    /// The gate after pooling (`after_pooling`).
    Gating,
    Classifier,
    /// Probability gating after the classifier (`after_classifier`).
    OutputGating,
}

impl Field {
    /// Every field name, reserved for the model's own layers.
    pub const ALL: [Field; 7] = [
        Field::Input,
        Field::Pooling,
        Field::Dropout,
        Field::Hidden,
        Field::Gating,
        Field::Classifier,
        Field::OutputGating,
    ];

    /// The layers after pooling, in the order the forward pass applies them.
    pub const HEAD: [Field; 5] =
        [Field::Dropout, Field::Hidden, Field::Gating, Field::Classifier, Field::OutputGating];

    /// The field's name, which is also its checkpoint key.
    pub fn name(self) -> &'static str {
        match self {
            Field::Input => "input",
            Field::Pooling => "pooling",
            Field::Dropout => "dropout",
            Field::Hidden => "hidden",
            Field::Gating => "gating",
            Field::Classifier => "classifier",
            Field::OutputGating => "output_gating",
        }
    }

    /// The field's identifier in generated code (call-site hygiene, as the user's own).
    pub fn ident(self) -> Ident {
        Ident::new(self.name(), Span::call_site())
    }

    /// Whether `name` (a stream's name, without `r#`) is one of the reserved names.
    pub fn is_reserved(name: &str) -> bool {
        Field::ALL.iter().any(|f| f.name() == name)
    }
}
