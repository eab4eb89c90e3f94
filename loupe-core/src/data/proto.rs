//! The `tf.train` protobuf messages YouTube-8M files hold, written by hand with
//! `prost` derives. Field numbers follow TensorFlow's `example.proto` and
//! `feature.proto`. Maps are `BTreeMap`s so that encoding is deterministic (the same
//! message always gives the same bytes), which the synthetic generator relies on.
//! Repeated floats and int64s are written packed, as TensorFlow does; the decoder
//! accepts both packed and unpacked encodings.

use std::collections::BTreeMap;

/// prost's trait for encoding and decoding these messages, re-exported so callers need
/// not depend on prost themselves.
pub use prost::Message;

/// `tf.train.BytesList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

/// `tf.train.FloatList` (packed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FloatList {
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

/// `tf.train.Int64List` (packed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64List {
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

/// `tf.train.Feature`: one of three list types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Feature {
    #[prost(oneof = "feature::Kind", tags = "1, 2, 3")]
    pub kind: Option<feature::Kind>,
}

/// The oneof of [`Feature`].
pub mod feature {
    /// `tf.train.Feature.kind`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        BytesList(super::BytesList),
        #[prost(message, tag = "2")]
        FloatList(super::FloatList),
        #[prost(message, tag = "3")]
        Int64List(super::Int64List),
    }

    impl Kind {
        /// The protobuf name of the list type, for error messages.
        pub fn type_name(&self) -> &'static str {
            match self {
                Kind::BytesList(_) => "bytes_list",
                Kind::FloatList(_) => "float_list",
                Kind::Int64List(_) => "int64_list",
            }
        }
    }
}

/// `tf.train.Features`: named features.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature: BTreeMap<String, Feature>,
}

/// `tf.train.FeatureList`: one feature per time step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureList {
    #[prost(message, repeated, tag = "1")]
    pub feature: Vec<Feature>,
}

/// `tf.train.FeatureLists`: named feature lists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureLists {
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature_list: BTreeMap<String, FeatureList>,
}

/// `tf.train.Example`: the video-level records.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Example {
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

/// `tf.train.SequenceExample`: the frame-level records.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SequenceExample {
    #[prost(message, optional, tag = "1")]
    pub context: Option<Features>,
    #[prost(message, optional, tag = "2")]
    pub feature_lists: Option<FeatureLists>,
}

impl Feature {
    /// A feature holding one bytes list.
    pub fn bytes(values: Vec<Vec<u8>>) -> Self {
        Feature { kind: Some(feature::Kind::BytesList(BytesList { value: values })) }
    }

    /// A feature holding one float list.
    pub fn floats(values: Vec<f32>) -> Self {
        Feature { kind: Some(feature::Kind::FloatList(FloatList { value: values })) }
    }

    /// A feature holding one int64 list.
    pub fn int64s(values: Vec<i64>) -> Self {
        Feature { kind: Some(feature::Kind::Int64List(Int64List { value: values })) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_floats_decode_like_packed() {
        // FloatList with two unpacked entries: tag (1 << 3 | 5) = 0x0d, then 4 bytes each.
        let mut unpacked = vec![0x0d];
        unpacked.extend_from_slice(&1.5f32.to_le_bytes());
        unpacked.push(0x0d);
        unpacked.extend_from_slice(&(-2.0f32).to_le_bytes());
        let list = FloatList::decode(unpacked.as_slice()).unwrap();
        assert_eq!(list.value, vec![1.5, -2.0]);
        // And we write packed: tag (1 << 3 | 2) = 0x0a, length 8.
        let packed = list.encode_to_vec();
        assert_eq!(packed[..2], [0x0a, 8]);
    }

    #[test]
    fn example_field_numbers_match_tensorflow() {
        let mut features = Features::default();
        features.feature.insert("labels".into(), Feature::int64s(vec![3]));
        let bytes = Example { features: Some(features) }.encode_to_vec();
        // Example.features = field 1 (length-delimited), Features.feature = field 1,
        // map entry key = 1, value = 2, Feature.int64_list = field 3.
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(bytes[2], 0x0a);
        assert!(bytes.windows(2).any(|w| w == [0x1a, 0x03]));
    }
}
