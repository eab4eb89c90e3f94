//! Training on frames as data: a generated model's `VideoModel::try_forward_train` never
//! forms the gradient of its input frames (the input batch norm's affine is moved onto
//! the poolings' small tensors, `loupe::nn::PoolFrames`). It must compute what the
//! model's usual training forward (`ModuleMut`, the frames on the tape) computes: the
//! output, every batch norm's running averages and every parameter's gradient. Checked
//! in f64 for every pooling kind, on the fused kernels (the rewritten path) and on the
//! composed dfdx ops (the default `PoolFrames` path), with non-trivial input batch-norm
//! parameters.

use dfdx::prelude::*;
use loupe::gradcheck::{named_params, param_grads};
use loupe::kernels::set_fused;
use loupe::model::VideoModel;
use loupe::video_model;
use loupe::zoo::{
    SmallAverage, SmallGatedNetFv, SmallGatedNetVlad, SmallGru, SmallLstm, SmallNeXtVlad, SmallNetVladEarly,
    SmallSoftBow,
};

/// NetRVLAD has no small zoo row: one here, both streams.
#[video_model(
    frames = 7,
    streams = [rgb(features = 6, pooling = netrvlad(clusters = 3)), audio(features = 4, pooling = netrvlad(clusters = 2))],
    hidden = 8,
    after_pooling = context_gating,
    classifier = logistic,
    classes = 5,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SmallNetRvlad;

/// A recurrent pooling of the frames as they are (no L2 normalisation).
#[video_model(
    frames = 6,
    input = raw_frames,
    fusion = early(pooling = gru(size = 3)),
    streams = [rgb(features = 4), audio(features = 2)],
    classifier = logistic,
    classes = 5,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SmallRawGru;

type Tape64 = OwnedTape<f64, Cpu>;

/// Output values, then every tensor's (name, value after the pass, gradient).
type Run = (Vec<f64>, Vec<(String, Vec<f64>, Vec<f64>)>);

fn run<M>(model: M, x: &Tensor<(usize, M::Frames, M::Features), f64, Cpu>, as_data: bool) -> Run
where
    M: VideoModel<f64, Cpu>
        + ModuleMut<
            Tensor<(usize, M::Frames, M::Features), f64, Cpu, Tape64>,
            Output = Tensor<(usize, M::Classes), f64, Cpu, Tape64>,
        >,
{
    run_with(model, x, |model, traced| {
        if as_data {
            model.try_forward_train(traced).unwrap()
        } else {
            model.forward_mut(traced)
        }
    })
}

/// One training forward by `forward` and the backward of a fixed weighting of its output.
fn run_with<M: VideoModel<f64, Cpu>>(
    mut model: M,
    x: &Tensor<(usize, M::Frames, M::Features), f64, Cpu>,
    forward: impl Fn(
        &mut M,
        Tensor<(usize, M::Frames, M::Features), f64, Cpu, Tape64>,
    ) -> Tensor<(usize, M::Classes), f64, Cpu, Tape64>,
) -> Run {
    let traced = x.clone().traced(model.alloc_grads());
    let out = forward(&mut model, traced);
    let n = out.shape().num_elements();
    let mut r: Tensor<(usize, M::Classes), f64, Cpu> = x.device().zeros_like(out.shape());
    r.copy_from(&(0..n).map(|i| ((i * 7919) % 13) as f64 / 6.0 - 1.0).collect::<Vec<_>>());
    let values = out.retaped::<NoneTape>().as_vec();
    let grads = (out * r).sum::<Rank0, _>().backward();
    let gradients = param_grads(&model, &grads);
    let params =
        named_params(&model).into_iter().zip(gradients).map(|(p, g)| (p.name, p.values, g)).collect();
    (values, params)
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-10 * (1.0 + y.abs()), "{what}[{i}]: frames as data {x} vs usual {y}");
    }
}

fn compare<M>(model: M, x: Tensor<(usize, M::Frames, M::Features), f64, Cpu>)
where
    M: Clone
        + VideoModel<f64, Cpu>
        + ModuleMut<
            Tensor<(usize, M::Frames, M::Features), f64, Cpu, Tape64>,
            Output = Tensor<(usize, M::Classes), f64, Cpu, Tape64>,
        >,
{
    for fused in [true, false] {
        set_fused(fused);
        let (y_data, p_data) = run(model.clone(), &x, true);
        let (y_usual, p_usual) = run(model.clone(), &x, false);
        set_fused(true);
        let path = if fused { "fused" } else { "composed" };
        assert_close(&y_data, &y_usual, &format!("{path}: output"));
        assert_eq!(p_data.len(), p_usual.len());
        let mut trained = 0;
        for ((name, v_data, g_data), (_, v_usual, g_usual)) in p_data.iter().zip(&p_usual) {
            assert_close(v_data, v_usual, &format!("{path}: {name}"));
            assert_close(g_data, g_usual, &format!("{path}: d/d {name}"));
            trained += usize::from(g_usual.iter().any(|&g| g != 0.0));
        }
        // The comparison means something only if gradients reached the parameters.
        assert!(trained >= 3, "{path}: only {trained} tensors have a gradient");
    }
}

/// A built model with non-trivial input batch-norm parameters, and a batch of frames.
macro_rules! case {
    ($model:ty, $seed:expr, $batch:expr) => {{
        let dev = loupe::device::cpu_seeded($seed);
        let mut model = dev.build_module::<$model, f64>();
        model.input.bn.scale = dev.sample_uniform_like(&model.input.bn.scale) + 0.5;
        model.input.bn.shift = dev.sample_normal_like(&model.input.bn.shift);
        let x = dev.sample_normal_like(&($batch, Default::default(), Default::default()));
        compare(model, x);
    }};
}

#[test]
fn netvlad_late_fusion_matches_the_usual_training_forward() {
    case!(SmallGatedNetVlad, 1, 3);
}

#[test]
fn netrvlad_matches_the_usual_training_forward() {
    case!(SmallNetRvlad, 2, 4);
}

#[test]
fn soft_bow_matches_the_usual_training_forward() {
    case!(SmallSoftBow, 3, 3);
}

#[test]
fn netvlad_early_fusion_matches_the_usual_training_forward() {
    case!(SmallNetVladEarly, 4, 3);
}

#[test]
fn default_poolings_match_the_usual_training_forward() {
    case!(SmallGatedNetFv, 5, 3);
    case!(SmallAverage, 6, 3);
    case!(SmallNeXtVlad, 7, 3);
}

/// Recurrent poolings read the L2-normalised frames without an input batch norm: as data,
/// the first layer never forms the frames' gradient (`Recurrent::try_pool_data`).
#[test]
fn recurrent_poolings_match_the_usual_training_forward() {
    let dev = loupe::device::cpu_seeded(8);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    compare(dev.build_module::<SmallLstm, f64>(), x);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    compare(dev.build_module::<SmallGru, f64>(), x);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    compare(dev.build_module::<SmallRawGru, f64>(), x);
}

/// With each video's count of valid frames (the run loop's default for the recurrent
/// models), the training forward on the fused kernels (frames as data) against the
/// composed dfdx ops (frames on the tape, their gradient formed): output and every
/// parameter's gradient.
#[test]
fn recurrent_poolings_with_lengths_match_the_composed_training_forward() {
    fn both<M: VideoModel<f64, Cpu> + Clone>(
        model: M,
        x: &Tensor<(usize, M::Frames, M::Features), f64, Cpu>,
    ) {
        let lengths = [M::FRAMES, 2, 1];
        let run = |fused: bool| {
            set_fused(fused);
            let result = run_with(model.clone(), x, |model, traced| {
                model.try_forward_train_lengths(traced, &lengths).unwrap()
            });
            set_fused(true);
            result
        };
        let ((y_fused, p_fused), (y_composed, p_composed)) = (run(true), run(false));
        assert_close(&y_fused, &y_composed, "output");
        assert_eq!(p_fused.len(), p_composed.len());
        for ((name, _, g_fused), (_, _, g_composed)) in p_fused.iter().zip(&p_composed) {
            assert!(g_composed.iter().any(|&g| g != 0.0), "d/d {name} is zero");
            assert_close(g_fused, g_composed, &format!("d/d {name}"));
        }
    }
    let dev = loupe::device::cpu_seeded(10);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    both(dev.build_module::<SmallLstm, f64>(), &x);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    both(dev.build_module::<SmallGru, f64>(), &x);
    let x = dev.sample_normal_like(&(3, Default::default(), Default::default()));
    both(dev.build_module::<SmallRawGru, f64>(), &x);
}
