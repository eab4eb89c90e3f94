//! Which frames of a video are fed to pooling (docs/reference.md section 1.3).
//!
//! Every mode picks only valid frames (indices below the video's frame count): no
//! padding is ever pooled.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the `T` frames of each video in a batch are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum FrameSampling {
    /// Uniformly with replacement from the dataset's seeded random stream (training,
    /// as in the paper). Depends on the order videos arrive in.
    Random,
    /// Uniformly with replacement from a generator seeded by `seed` and a hash of the
    /// video id: the same frames for the same video whatever the batch composition or
    /// order (deterministic evaluation).
    PerVideo {
        /// Mixed with the id hash.
        seed: u64,
    },
    /// The first `T` frames in temporal order; a video with fewer frames is filled by
    /// cycling its frames from the start (recurrent models; the batch's `num_frames`
    /// tells the true length).
    InOrder,
    /// The first `T` frames in temporal order; a video with fewer frames repeats its last
    /// frame: what TensorFlow's YouTube-8M code (`SampleRandomSequence`, with
    /// `--sample_random_frames=False`) feeds a model whose `T` is at least the video's
    /// length, so imported models reproduce its outputs (`--frame-sampling in-order`).
    InOrderRepeatLast,
}

/// How many of the `count` rows `sampling` fills for a video of `num_frames` frames a
/// sequence model should read (the rest only fill the batch): `min(num_frames, count)`
/// in order (the rows after that repeat the video from its start), every row when
/// sampling with replacement (each row is one of the video's frames), none for a video
/// without frames (its rows are zeros).
pub fn valid_rows(sampling: FrameSampling, num_frames: usize, count: usize) -> usize {
    match sampling {
        FrameSampling::InOrder | FrameSampling::InOrderRepeatLast => num_frames.min(count),
        FrameSampling::Random | FrameSampling::PerVideo { .. } if num_frames > 0 => count,
        FrameSampling::Random | FrameSampling::PerVideo { .. } => 0,
    }
}

/// The order a sequence model (the recurrent poolings: LSTM, GRU; and models declared
/// with `frame_mask = true`, which mask each video's frames past its length) reads each
/// video's frames in (docs/reference.md section 2). Other models always sample uniformly
/// with replacement, whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrameOrder {
    /// The first `T` frames in temporal order, run to each video's true length (the
    /// paper; the released GRU).
    #[default]
    Temporal,
    /// `T` frames drawn uniformly with replacement, in random order (the released LSTM).
    Random,
}

impl FrameOrder {
    /// The training sampling for a model that reads frames in order (`sequence`) or not.
    pub fn training_sampling(self, sequence: bool) -> FrameSampling {
        match (sequence, self) {
            (true, FrameOrder::Temporal) => FrameSampling::InOrder,
            _ => FrameSampling::Random,
        }
    }

    /// The deterministic evaluation sampling for a model that reads frames in order
    /// (`sequence`) or not: in order, or seeded per video.
    pub fn evaluation_sampling(self, sequence: bool) -> FrameSampling {
        match (sequence, self) {
            (true, FrameOrder::Temporal) => FrameSampling::InOrder,
            _ => FrameSampling::PerVideo { seed: 0 },
        }
    }
}

impl std::str::FromStr for FrameOrder {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "temporal" => Ok(FrameOrder::Temporal),
            "random" => Ok(FrameOrder::Random),
            other => Err(format!("frame order is `temporal` or `random`, not `{other}`")),
        }
    }
}

/// Appends `count` frame indices drawn uniformly with replacement from
/// `0..num_frames` to `out`. Nothing is appended when `num_frames == 0`.
pub fn sample_uniform<R: Rng + ?Sized>(num_frames: usize, count: usize, rng: &mut R, out: &mut Vec<usize>) {
    if num_frames == 0 {
        return;
    }
    out.extend((0..count).map(|_| rng.gen_range(0..num_frames)));
}

/// Appends `count` indices sampled as [`sample_uniform`] from a generator that depends
/// only on `seed` and `video_id`.
pub fn sample_per_video(video_id: &str, seed: u64, num_frames: usize, count: usize, out: &mut Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed ^ id_hash(video_id));
    sample_uniform(num_frames, count, &mut rng, out);
}

/// Appends `0, 1, ..., num_frames - 1, 0, 1, ...` (`count` indices) to `out`.
pub fn sample_in_order(num_frames: usize, count: usize, out: &mut Vec<usize>) {
    if num_frames == 0 {
        return;
    }
    out.extend((0..count).map(|i| i % num_frames));
}

/// Appends `0, 1, ..., num_frames - 1, num_frames - 1, ...` (`count` indices) to `out`:
/// `min(i, num_frames - 1)`, TensorFlow's consecutive sampling from frame 0.
pub fn sample_in_order_repeat_last(num_frames: usize, count: usize, out: &mut Vec<usize>) {
    if num_frames == 0 {
        return;
    }
    out.extend((0..count).map(|i| i.min(num_frames - 1)));
}

/// Appends the `count` frame indices `sampling` picks for a video.
pub fn sample_frames<R: Rng + ?Sized>(
    sampling: FrameSampling,
    video_id: &str,
    num_frames: usize,
    count: usize,
    rng: &mut R,
    out: &mut Vec<usize>,
) {
    match sampling {
        FrameSampling::Random => sample_uniform(num_frames, count, rng, out),
        FrameSampling::PerVideo { seed } => sample_per_video(video_id, seed, num_frames, count, out),
        FrameSampling::InOrder => sample_in_order(num_frames, count, out),
        FrameSampling::InOrderRepeatLast => sample_in_order_repeat_last(num_frames, count, out),
    }
}

/// FNV-1a 64 of the id bytes: stable across platforms, Rust versions and runs (unlike
/// `std`'s `DefaultHasher`, whose algorithm is unspecified).
pub fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_sampling_covers_all_frames_evenly() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = Vec::new();
        let (frames, draws) = (10, 100_000);
        sample_uniform(frames, draws, &mut rng, &mut out);
        let mut counts = [0usize; 10];
        for &i in &out {
            counts[i] += 1;
        }
        // Expected 10,000 each, sd ~95: 6 sd is a test that fails for real bias only.
        for c in counts {
            assert!((9_430..=10_570).contains(&c), "counts {counts:?}");
        }
    }

    #[test]
    fn sampling_is_with_replacement() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut out = Vec::new();
        sample_uniform(3, 300, &mut rng, &mut out);
        assert_eq!(out.len(), 300);
        assert!(out.iter().all(|&i| i < 3));
    }

    #[test]
    fn seeded_sampling_repeats() {
        let draw = |seed| {
            let mut out = Vec::new();
            sample_uniform(50, 20, &mut StdRng::seed_from_u64(seed), &mut out);
            out
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn per_video_sampling_depends_on_id_and_seed_only() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        sample_per_video("abc", 5, 40, 30, &mut a);
        sample_per_video("abc", 5, 40, 30, &mut b);
        assert_eq!(a, b);
        let mut c = Vec::new();
        sample_per_video("abd", 5, 40, 30, &mut c);
        assert_ne!(a, c);
        // Whatever random state the caller's generator is in does not matter.
        let mut d = Vec::new();
        sample_frames(
            FrameSampling::PerVideo { seed: 5 },
            "abc",
            40,
            30,
            &mut StdRng::seed_from_u64(99),
            &mut d,
        );
        assert_eq!(a, d);
    }

    #[test]
    fn in_order_cycles_valid_frames() {
        let mut out = Vec::new();
        sample_in_order(3, 7, &mut out);
        assert_eq!(out, vec![0, 1, 2, 0, 1, 2, 0]);
        out.clear();
        sample_in_order(10, 4, &mut out);
        assert_eq!(out, vec![0, 1, 2, 3]);
    }

    /// WILLOW's `SampleRandomSequence` from start frame 0 (`--sample_random_frames=False`,
    /// a video no longer than the sample): `index = min(i, num_frames - 1)`.
    #[test]
    fn in_order_repeat_last_holds_the_last_frame_as_tensorflow_does() {
        let mut out = Vec::new();
        sample_in_order_repeat_last(3, 6, &mut out);
        assert_eq!(out, vec![0, 1, 2, 2, 2, 2]);
        out.clear();
        sample_in_order_repeat_last(10, 4, &mut out);
        assert_eq!(out, vec![0, 1, 2, 3]);
        sample_in_order_repeat_last(0, 4, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(valid_rows(FrameSampling::InOrderRepeatLast, 3, 6), 3);
        assert_eq!(valid_rows(FrameSampling::InOrderRepeatLast, 0, 6), 0);
    }

    #[test]
    fn valid_rows_per_sampling() {
        assert_eq!(valid_rows(FrameSampling::InOrder, 3, 10), 3);
        assert_eq!(valid_rows(FrameSampling::InOrder, 30, 10), 10);
        assert_eq!(valid_rows(FrameSampling::Random, 3, 10), 10);
        assert_eq!(valid_rows(FrameSampling::PerVideo { seed: 1 }, 3, 10), 10);
        for sampling in [FrameSampling::InOrder, FrameSampling::Random, FrameSampling::PerVideo { seed: 1 }] {
            assert_eq!(valid_rows(sampling, 0, 10), 0);
        }
    }

    #[test]
    fn frame_order_picks_the_sampling() {
        assert_eq!(FrameOrder::default(), FrameOrder::Temporal);
        assert_eq!(FrameOrder::Temporal.training_sampling(true), FrameSampling::InOrder);
        assert_eq!(FrameOrder::Random.training_sampling(true), FrameSampling::Random);
        assert_eq!(FrameOrder::Temporal.evaluation_sampling(true), FrameSampling::InOrder);
        assert_eq!(FrameOrder::Random.evaluation_sampling(true), FrameSampling::PerVideo { seed: 0 });
        for order in [FrameOrder::Temporal, FrameOrder::Random] {
            assert_eq!(order.training_sampling(false), FrameSampling::Random);
            assert_eq!(order.evaluation_sampling(false), FrameSampling::PerVideo { seed: 0 });
        }
        assert_eq!("random".parse::<FrameOrder>(), Ok(FrameOrder::Random));
        assert_eq!("temporal".parse::<FrameOrder>(), Ok(FrameOrder::Temporal));
        assert!("shuffled".parse::<FrameOrder>().is_err());
    }

    #[test]
    fn never_a_padded_frame() {
        let mut rng = StdRng::seed_from_u64(0);
        for frames in 1..40 {
            for sampling in
                [FrameSampling::Random, FrameSampling::PerVideo { seed: 2 }, FrameSampling::InOrder]
            {
                let mut out = Vec::new();
                sample_frames(sampling, "v", frames, 64, &mut rng, &mut out);
                assert_eq!(out.len(), 64);
                assert!(out.iter().all(|&i| i < frames), "{sampling:?} {frames}");
            }
        }
        let mut out = Vec::new();
        sample_frames(FrameSampling::Random, "v", 0, 5, &mut rng, &mut out);
        assert!(out.is_empty());
    }
}
