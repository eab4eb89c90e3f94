//! Every fused CPU kernel (`loupe::kernels`) against the composed dfdx ops it replaces:
//! outputs, running statistics and every gradient (input and parameters), plus finite
//! differences through the fused path. The composed path is selected per thread with
//! `kernels::set_fused(false)`. The recurrent layers' host recurrences (LSTM, GRU) are
//! compared the same way with their composed per-frame dfdx ops.

use dfdx::prelude::*;
use loupe::gradcheck::{check_gradients, named_params, param_grads, Tolerance};
use loupe::kernels::{set_fused, set_gemm};
use loupe::nn::{
    builder, l2_normalize, try_concat_features, valid_frame_mask, BatchNorm, ClassifierPenalty, FrameInput,
    GruPooling, Hidden, HiddenBn, Logistic, LstmPooling, MixtureOfExperts, NetRvladPooling, NetVladPooling,
    SoftAssignment, StandardizedFrames, Stream,
};
use loupe::train::{Adam, AdamConfig, GradientClipping};

type Tape64 = OwnedTape<f64, Cpu>;

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: fused {x} vs composed {y}");
    }
}

/// Runs one training-mode forward + backward of `sum(out * r)` and returns the output,
/// the input gradient, and every parameter (values after the step, i.e. running stats)
/// with its gradient.
fn run<M, S: Shape, O: Shape>(
    fused: bool,
    mut model: M,
    x: &Tensor<S, f64, Cpu>,
) -> (Vec<f64>, Vec<f64>, Vec<(String, Vec<f64>, Vec<f64>)>)
where
    M: TensorCollection<f64, Cpu>
        + ModuleMut<Tensor<S, f64, Cpu, Tape64>, Output = Tensor<O, f64, Cpu, Tape64>>,
{
    set_fused(fused);
    let out = model.forward_mut(x.clone().traced(Gradients::leaky()));
    let dev = x.device().clone();
    let r: Tensor<O, f64, Cpu> = {
        let n = out.shape().num_elements();
        let mut t = dev.zeros_like(out.shape());
        t.copy_from(&(0..n).map(|i| ((i * 7919) % 13) as f64 / 6.0 - 1.0).collect::<Vec<_>>());
        t
    };
    let values = out.retaped::<NoneTape>().as_vec();
    let grads = (out * r).sum::<Rank0, _>().backward();
    set_fused(true);
    let gx = grads.get(x).as_vec();
    let gradients = param_grads(&model, &grads);
    let params =
        named_params(&model).into_iter().zip(gradients).map(|(p, g)| (p.name, p.values, g)).collect();
    (values, gx, params)
}

fn compare<M, S: Shape, O: Shape>(model: M, x: Tensor<S, f64, Cpu>, tol: f64)
where
    M: Clone
        + TensorCollection<f64, Cpu>
        + ModuleMut<Tensor<S, f64, Cpu, Tape64>, Output = Tensor<O, f64, Cpu, Tape64>>,
{
    let (y1, gx1, p1) = run(true, model.clone(), &x);
    let (y0, gx0, p0) = run(false, model, &x);
    assert_close(&y1, &y0, tol, "output");
    assert_close(&gx1, &gx0, tol, "input gradient");
    assert_eq!(p1.len(), p0.len());
    for ((name, v1, g1), (_, v0, g0)) in p1.iter().zip(&p0) {
        assert_close(v1, v0, tol, name);
        assert_close(g1, g0, tol, &format!("d/d {name}"));
    }
}

fn frames<const F: usize>(dev: &Cpu, b: usize, s: usize) -> Tensor<(usize, usize, Const<F>), f64, Cpu> {
    dev.sample_normal_like(&(b, s, Const))
}

#[test]
fn net_vlad_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(1);
    let mut vlad = dev.build_module::<builder::NetVladPooling<6, 4, 24>, f64>();
    // Non-trivial batch-norm parameters, so their gradients are exercised fully.
    vlad.assignment.bn.scale = dev.sample_uniform_like(&vlad.assignment.bn.scale) + 0.5;
    vlad.assignment.bn.shift = dev.sample_normal_like(&vlad.assignment.bn.shift);
    compare::<NetVladPooling<6, 4, 24, f64, Cpu>, _, _>(vlad, frames::<6>(&dev, 3, 7), 1e-10);
}

#[test]
fn net_rvlad_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(2);
    let rvlad = dev.build_module::<builder::NetRvladPooling<5, 3, 15>, f64>();
    compare::<NetRvladPooling<5, 3, 15, f64, Cpu>, _, _>(rvlad, frames::<5>(&dev, 2, 9), 1e-10);
}

#[test]
fn soft_assignment_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(3);
    let a = dev.build_module::<builder::SoftAssignment<5, 4>, f64>();
    compare::<SoftAssignment<5, 4, f64, Cpu>, _, _>(a, frames::<5>(&dev, 3, 4), 1e-10);
}

#[test]
fn batch_norm_fused_matches_composed_on_rows_and_frames() {
    let dev = loupe::device::cpu_seeded(4);
    let mut bn = dev.build_module::<builder::BatchNorm<5>, f64>();
    bn.scale = dev.sample_uniform_like(&bn.scale) + 0.5;
    bn.shift = dev.sample_normal_like(&bn.shift);
    let rows: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(7, Const));
    compare::<BatchNorm<5, f64, Cpu>, _, _>(bn.clone(), rows, 1e-10);
    compare::<BatchNorm<5, f64, Cpu>, _, _>(bn, frames::<5>(&dev, 2, 3), 1e-10);
}

#[test]
fn frame_input_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(5);
    let input = dev.build_module::<builder::FrameInput<6>, f64>();
    let mut x = frames::<6>(&dev, 2, 4).as_vec();
    x[..6].iter_mut().for_each(|v| *v = 0.0); // an all-zero frame hits the L2 floor
    let x = dev.tensor_from_vec(x, (2usize, 4usize, Const::<6>));
    compare::<FrameInput<6, f64, Cpu>, _, _>(input, x, 1e-10);
}

/// A 7-channel input stage with every batch-norm tensor drawn (seed `seed`) and frames
/// `(3, 5, 7)` whose frame `zero` is all zeros (on the L2 floor).
fn input_stage_and_frames(
    seed: u64,
    zero: usize,
) -> (FrameInput<7, f64, Cpu>, Tensor<(usize, usize, Const<7>), f64, Cpu>) {
    let dev = loupe::device::cpu_seeded(seed);
    let mut input = dev.build_module::<builder::FrameInput<7>, f64>();
    input.bn.scale = dev.sample_uniform_like(&input.bn.scale) + 0.5;
    input.bn.shift = dev.sample_normal_like(&input.bn.shift);
    input.bn.running_mean = dev.sample_normal_like(&input.bn.running_mean);
    input.bn.running_var = dev.sample_uniform_like(&input.bn.running_var) + 0.25;
    let mut x = frames::<7>(&dev, 3, 5).as_vec();
    x[zero * 7..(zero + 1) * 7].iter_mut().for_each(|v| *v = 0.0);
    (input, dev.tensor_from_vec(x, (3usize, 5usize, Const::<7>)))
}

/// The evaluation input stage straight into one stream (`Stream::try_eval`, one pass
/// over the frames) and into all channels (`FrameInput`'s `Module` forward): the bits of
/// the fused L2 normalisation, the fused batch norm and the channels' copy one after the
/// other, for every position of the channels, in `f64` and `f32`, with an all-zero frame
/// on the L2 floor; and the composed dfdx ops' values to rounding.
#[test]
fn input_stage_eval_gives_the_bits_of_its_layers_one_after_the_other() {
    let (input, x) = input_stage_and_frames(7, 1);
    let layers = |x: &Tensor<(usize, usize, Const<7>), f64, Cpu>| input.bn.forward(l2_normalize(x.clone()));
    fn check<const START: usize, const LEN: usize, E: Dtype>(
        input: &FrameInput<7, E, Cpu>,
        x: &Tensor<(usize, usize, Const<7>), E, Cpu>,
        full: &Tensor<(usize, usize, Const<7>), E, Cpu>,
    ) where
        Cpu: Device<E>,
    {
        let stream =
            Stream::<START, LEN>.try_eval(input, &input.try_eval_frames(x.clone()).unwrap()).unwrap();
        let expected: Vec<E> = full.as_vec().chunks(7).flat_map(|f| f[START..START + LEN].to_vec()).collect();
        assert_eq!(stream.as_vec(), expected, "channels {START}..{}", START + LEN);
    }
    let full = layers(&x);
    assert_eq!(input.forward(x.clone()).as_vec(), full.as_vec(), "all channels");
    check::<0, 4, f64>(&input, &x, &full);
    check::<4, 3, f64>(&input, &x, &full);
    check::<2, 1, f64>(&input, &x, &full);
    check::<0, 7, f64>(&input, &x, &full);
    let (input32, x32) = (input.clone().to_dtype::<f32>(), x.clone().to_dtype::<f32>());
    let full32 = input32.bn.forward(l2_normalize(x32.clone()));
    assert_eq!(input32.forward(x32.clone()).as_vec(), full32.as_vec(), "all channels, f32");
    check::<1, 5, f32>(&input32, &x32, &full32);
    check::<6, 1, f32>(&input32, &x32, &full32);
    // Frames in another layout than row-major: the layers one after the other.
    let permuted = x.clone().permute::<_, Axes3<1, 0, 2>>();
    let ready = input.try_eval_frames(permuted.clone()).unwrap();
    let expected_permuted = Stream::<4, 3>.forward(input.forward(permuted)).as_vec();
    assert_eq!(
        Stream::<4, 3>.try_eval(&input, &ready).unwrap().as_vec(),
        expected_permuted,
        "permuted frames"
    );
    set_fused(false);
    let composed = layers(&x).as_vec();
    let ready = input.try_eval_frames(x.clone()).unwrap();
    let composed_stream = Stream::<4, 3>.try_eval(&input, &ready).unwrap().as_vec();
    set_fused(true);
    assert_close(&full.as_vec(), &composed, 1e-12, "input stage");
    let expected: Vec<f64> = composed.chunks(7).flat_map(|f| f[4..7].to_vec()).collect();
    assert_close(&composed_stream, &expected, 1e-12, "composed stream");
}

/// The training input stage kept apart from the frames (`try_standardize_train`) and
/// applied per stream (`Stream::try_normalized`) or to all channels
/// (`FrameInput::try_normalized`): the bits of the fused L2 normalisation and the fused
/// training batch norm (unit scale, zero shift) one after the other, the same running
/// averages and update count, in `f64` and `f32`, with an all-zero frame on the L2 floor;
/// and the composed dfdx ops' values to rounding.
#[test]
fn standardized_streams_give_the_bits_of_the_layers_one_after_the_other() {
    let (input, x) = input_stage_and_frames(8, 2);
    // The layers one after the other: L2, then a batch norm with a unit affine.
    fn layers<E: Dtype>(
        input: &FrameInput<7, E, Cpu>,
        x: &Tensor<(usize, usize, Const<7>), E, Cpu>,
    ) -> (Vec<E>, BatchNorm<7, E, Cpu>)
    where
        Cpu: Device<E>,
    {
        let mut unit = input.bn.clone();
        unit.scale = x.device().ones_like(&unit.scale);
        unit.shift = x.device().zeros_like(&unit.shift);
        let full = unit.forward_mut(l2_normalize(x.clone())).as_vec();
        (full, unit)
    }
    fn stream<const START: usize, const LEN: usize, E: Dtype>(
        input: &FrameInput<7, E, Cpu>,
        standardized: &StandardizedFrames<usize, usize, 7, E, Cpu>,
    ) -> Vec<E>
    where
        Cpu: Device<E>,
    {
        Stream::<START, LEN>.try_normalized(input, standardized, NoneTape).unwrap().standardized.as_vec()
    }
    fn channels<E: Dtype>(full: &[E], start: usize, len: usize) -> Vec<E> {
        full.chunks(7).flat_map(|f| f[start..start + len].to_vec()).collect()
    }
    let (full, unit) = layers(&input, &x);
    let mut kept = input.clone();
    let standardized = kept.try_standardize_train(x.clone()).unwrap();
    for (moved, expected) in
        [(&kept.bn.running_mean, &unit.running_mean), (&kept.bn.running_var, &unit.running_var)]
    {
        assert_eq!(moved.as_vec(), expected.as_vec(), "running averages");
    }
    assert_eq!(kept.bn.updates.as_vec(), unit.updates.as_vec(), "update count");
    assert_eq!(
        kept.try_normalized(&standardized, NoneTape).unwrap().standardized.as_vec(),
        full,
        "all channels"
    );
    assert_eq!(stream::<0, 4, f64>(&kept, &standardized), channels(&full, 0, 4));
    assert_eq!(stream::<4, 3, f64>(&kept, &standardized), channels(&full, 4, 3));
    assert_eq!(stream::<2, 1, f64>(&kept, &standardized), channels(&full, 2, 1));
    let (input32, x32) = (input.clone().to_dtype::<f32>(), x.clone().to_dtype::<f32>());
    let (full32, _) = layers(&input32, &x32);
    let mut kept32 = input32.clone();
    let standardized32 = kept32.try_standardize_train(x32).unwrap();
    assert_eq!(stream::<1, 5, f32>(&kept32, &standardized32), channels(&full32, 1, 5));
    set_fused(false);
    let mut composed = input.clone();
    let composed_frames = composed.try_standardize_train(x.clone()).unwrap();
    let composed_stream = stream::<4, 3, f64>(&composed, &composed_frames);
    set_fused(true);
    assert_close(&composed_stream, &channels(&full, 4, 3), 1e-12, "composed stream");
    assert_close(
        &composed.bn.running_var.as_vec(),
        &unit.running_var.as_vec(),
        1e-12,
        "composed running var",
    );
}

#[test]
fn l2_normalize_fused_matches_composed_with_zero_rows() {
    let dev = loupe::device::cpu_seeded(6);
    let x: Tensor<(usize, Const<4>), f64, Cpu> =
        dev.tensor_from_vec(vec![3.0, 4.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 2.0, 0.5, 0.25], (3, Const));
    let r: Tensor<(usize, Const<4>), f64, Cpu> =
        dev.tensor_from_vec(vec![0.3, -1.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0, -0.5, 0.2, 0.1, 0.7], (3, Const));
    let mut results = Vec::new();
    for fused in [true, false] {
        set_fused(fused);
        let y = l2_normalize(x.leaky_trace());
        let values = y.retaped::<NoneTape>().as_vec();
        let g = (y * r.clone()).sum::<Rank0, _>().backward().get(&x).as_vec();
        results.push((values, g));
    }
    set_fused(true);
    assert_close(&results[0].0, &results[1].0, 1e-12, "l2 output");
    assert_close(&results[0].1, &results[1].1, 1e-12, "l2 gradient");
}

#[test]
fn fused_net_vlad_passes_finite_differences() {
    let dev = loupe::device::cpu_seeded(7);
    let mut vlad = dev.build_module::<builder::NetVladPooling<4, 3, 12>, f64>();
    vlad.assignment.bn.scale = dev.sample_uniform_like(&vlad.assignment.bn.scale) + 0.5;
    let x: Tensor<(usize, Const<5>, Const<4>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    set_fused(true);
    let report = check_gradients(&mut vlad, x, Tolerance::default(), 11).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(report.checked.len() >= 5, "{:?}", report.checked);
}

#[test]
fn fused_net_rvlad_passes_finite_differences() {
    let dev = loupe::device::cpu_seeded(8);
    let mut rvlad = dev.build_module::<builder::NetRvladPooling<4, 3, 12>, f64>();
    let x: Tensor<(usize, Const<5>, Const<4>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    set_fused(true);
    check_gradients(&mut rvlad, x, Tolerance::default(), 12).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn fused_frame_input_passes_finite_differences() {
    let dev = loupe::device::cpu_seeded(9);
    let mut input = dev.build_module::<builder::FrameInput<5>, f64>();
    let x: Tensor<(usize, Const<3>, Const<5>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    set_fused(true);
    check_gradients(&mut input, x, Tolerance::default(), 13).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn fused_adam_matches_composed_for_every_clipping() {
    for clipping in
        [GradientClipping::PerVariable(0.5), GradientClipping::GlobalNorm(0.7), GradientClipping::None]
    {
        let dev = loupe::device::cpu_seeded(10);
        let model0 = dev.build_module::<(Linear<5, 4>, Linear<4, 3>), f64>();
        let x: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(6, Const));
        let mut results = Vec::new();
        for (fused, in_place) in [(true, true), (true, false), (false, false)] {
            set_fused(fused);
            let mut model = model0.clone();
            let mut adam = Adam::new(AdamConfig { clipping, ..AdamConfig::default() });
            for step in 0..3 {
                let y = model.forward(x.clone().trace(model.alloc_grads()));
                let mut grads = (y.square().sum::<Rank0, _>() * (1.0 + step as f64)).backward();
                if in_place {
                    adam.update_in_place(&mut model, &mut grads, 0.01).unwrap();
                } else {
                    adam.update(&mut model, &grads, 0.01).unwrap();
                }
            }
            let (m, v) = adam.moments.as_ref().unwrap();
            let all: Vec<Vec<f64>> = [&model, m, v]
                .into_iter()
                .flat_map(|t| named_params(t).into_iter().map(|p| p.values))
                .collect();
            results.push(all);
        }
        set_fused(true);
        for other in &results[1..] {
            for (a, b) in results[0].iter().zip(other) {
                assert_close(a, b, 1e-12, &format!("{clipping:?}"));
            }
        }
    }
}

type TwoLayers = <(Linear<5, 4>, Linear<4, 3>) as BuildOnDevice<Cpu, f64>>::Built;

#[test]
fn fused_adam_leaves_the_gradients_it_reads_zero() {
    type Model = TwoLayers;
    let grads_of = |m: &Model, g: &Gradients<f64, Cpu>| {
        [
            g.get(&m.0.weight).as_vec(),
            g.get(&m.0.bias).as_vec(),
            g.get(&m.1.weight).as_vec(),
            g.get(&m.1.bias).as_vec(),
        ]
    };
    for clipping in
        [GradientClipping::PerVariable(0.5), GradientClipping::GlobalNorm(0.7), GradientClipping::None]
    {
        let dev = loupe::device::cpu_seeded(11);
        let model0: Model = dev.build_module::<(Linear<5, 4>, Linear<4, 3>), f64>();
        let x: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(6, Const));
        for fused in [true, false] {
            set_fused(fused);
            let mut model = model0.clone();
            let mut adam = Adam::new(AdamConfig { clipping, ..AdamConfig::default() });
            for _ in 0..2 {
                let mut grads =
                    model.forward(x.clone().trace(model.alloc_grads())).square().sum::<Rank0, _>().backward();
                let before = grads_of(&model, &grads);
                assert!(before.iter().flatten().any(|&g| g != 0.0));
                // `update` reads shared gradients and never changes them.
                let mut shared_model = model.clone();
                let mut shared_adam = adam.clone();
                shared_adam.update(&mut shared_model, &grads, 0.01).unwrap();
                assert_eq!(grads_of(&model, &grads), before, "{clipping:?}: update changed the gradients");

                let update = adam.update_and_zero_grads(&mut model, &mut grads, 0.01).unwrap();
                assert_eq!(update.gradients_zeroed, fused, "{clipping:?}");
                let after = grads_of(&model, &grads);
                if fused {
                    assert!(
                        after.iter().flatten().all(|&g| g == 0.0 && g.is_sign_positive()),
                        "{clipping:?}: {after:?}"
                    );
                } else {
                    assert_eq!(after, before, "{clipping:?}: the composed path changed the gradients");
                }
                // Same update whether the gradients were shared or consumed.
                for (a, b) in named_params(&model).iter().zip(named_params(&shared_model)) {
                    assert_eq!(a.values, b.values, "{clipping:?} {}", a.name);
                }
            }
        }
        set_fused(true);
    }
}

/// The first fused update writes the new (zero) moments without reading them: the same
/// bits as an update from moments that are explicitly zero.
#[test]
fn fused_adam_first_update_matches_an_update_from_zero_moments() {
    let dev = loupe::device::cpu_seeded(12);
    let model0: TwoLayers = dev.build_module::<(Linear<5, 4>, Linear<4, 3>), f64>();
    let x: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(6, Const));
    set_fused(true);
    let run = |preset: bool| {
        let mut model = model0.clone();
        let mut adam = Adam::new(AdamConfig::default());
        if preset {
            let mut zero = model0.clone();
            zero.0.weight.fill_with_zeros();
            zero.0.bias.fill_with_zeros();
            zero.1.weight.fill_with_zeros();
            zero.1.bias.fill_with_zeros();
            adam.moments = Some((zero.clone(), zero));
        }
        for _ in 0..2 {
            let mut grads =
                model.forward(x.clone().trace(model.alloc_grads())).square().sum::<Rank0, _>().backward();
            adam.update_in_place(&mut model, &mut grads, 0.01).unwrap();
        }
        let (m, v) = adam.moments.as_ref().unwrap();
        [&model, m, v]
            .into_iter()
            .flat_map(|t| {
                named_params(t).into_iter().map(|p| p.values.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn soft_assignment_eval_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(14);
    let mut a = dev.build_module::<builder::SoftAssignment<5, 4>, f64>();
    a.bn.scale = dev.sample_uniform_like(&a.bn.scale) + 0.5;
    a.bn.running_mean = dev.sample_normal_like(&a.bn.running_mean);
    a.bn.running_var = dev.sample_uniform_like(&a.bn.running_var) + 0.1;
    let x = frames::<5>(&dev, 3, 4);
    let fused = a.forward(x.clone()).as_vec();
    set_fused(false);
    let composed = a.forward(x).as_vec();
    set_fused(true);
    assert_close(&fused, &composed, 1e-12, "evaluation assignment");
}

/// The classifier's loss with its L2 term (`sum(p) + 0.3 penalty`, as the trainer adds
/// it) on the fused or composed path: the penalty's value and every parameter gradient.
fn penalised_loss<M>(fused: bool, model: &M, h: &Tensor<(usize, Const<5>), f64, Cpu>) -> (f64, Vec<Vec<f64>>)
where
    M: TensorCollection<f64, Cpu>
        + ClassifierPenalty<f64, Cpu>
        + Module<
            Tensor<(usize, Const<5>), f64, Cpu, Tape64>,
            Output = Tensor<(usize, Const<4>), f64, Cpu, Tape64>,
        >,
{
    set_fused(fused);
    let p = model.forward(h.clone().traced(model.alloc_grads()));
    let penalty = model.try_l2_penalty::<Tape64>().unwrap();
    let value = penalty.retaped::<NoneTape>().as_vec()[0];
    let grads = (p.sum::<Rank0, _>() + penalty * 0.3).backward();
    set_fused(true);
    (value, param_grads(model, &grads))
}

/// Central differences of the penalty alone, entry by entry, against its fused gradient.
fn penalty_finite_differences<S: Shape, M: ClassifierPenalty<f64, Cpu>>(
    model: &mut M,
    weight: fn(&mut M) -> &mut Tensor<S, f64, Cpu>,
) {
    set_fused(true);
    let analytic = {
        let penalty = model.try_l2_penalty::<Tape64>().unwrap();
        let w = weight(model).clone();
        penalty.backward().get(&w).as_vec()
    };
    let h = 1e-5;
    let base = weight(model).as_vec();
    for i in (0..base.len()).step_by(7) {
        let mut at = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            weight(model).copy_from(&v);
            model.try_l2_penalty::<NoneTape>().unwrap().as_vec()[0]
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() <= 1e-7 * (1.0 + numeric.abs()),
            "entry {i}: {numeric} vs {}",
            analytic[i]
        );
    }
    weight(model).copy_from(&base);
}

#[test]
fn classifier_penalty_fused_matches_composed_and_finite_differences() {
    let dev = loupe::device::cpu_seeded(15);
    let h: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(3, Const));

    let mut moe = dev.build_module::<builder::MixtureOfExperts<5, 4, 2>, f64>();
    moe.expert_bias = dev.sample_normal_like(&moe.expert_bias);
    let (v1, g1) = penalised_loss(true, &moe, &h);
    let (v0, g0) = penalised_loss(false, &moe, &h);
    assert_close(&[v1], &[v0], 1e-12, "MoE penalty");
    assert!(v1 > 0.0);
    for (i, (a, b)) in g1.iter().zip(&g0).enumerate() {
        assert_close(a, b, 1e-12, &format!("MoE loss gradient, tensor {i}"));
    }
    penalty_finite_differences::<_, MixtureOfExperts<5, 4, 2, f64, Cpu>>(&mut moe, |m| &mut m.gate_weight);
    penalty_finite_differences::<_, MixtureOfExperts<5, 4, 2, f64, Cpu>>(&mut moe, |m| {
        &mut m.dummy_gate_weight
    });
    penalty_finite_differences::<_, MixtureOfExperts<5, 4, 2, f64, Cpu>>(&mut moe, |m| &mut m.expert_weight);

    let mut logistic = dev.build_module::<builder::Logistic<5, 4>, f64>();
    let (v1, g1) = penalised_loss(true, &logistic, &h);
    let (v0, g0) = penalised_loss(false, &logistic, &h);
    assert_close(&[v1], &[v0], 1e-12, "logistic penalty");
    for (a, b) in g1.iter().zip(&g0) {
        assert_close(a, b, 1e-12, "logistic loss gradient");
    }
    penalty_finite_differences::<_, Logistic<5, 4, f64, Cpu>>(&mut logistic, |m| &mut m.weight);
}

// ---------------------------------------------------------------------------------------
// Recurrent layers: host recurrence (one op, own backward) vs composed per-frame dfdx ops.

/// A recurrent layer fed `(tanh(x), mask)`: the tanh makes the layer's input a non-leaf.
#[derive(Debug, Clone)]
struct Masked<M> {
    layer: M,
    mask: Option<Tensor<(usize, usize), f64, Cpu>>,
}

impl<M: TensorCollection<f64, Cpu>> TensorCollection<f64, Cpu> for Masked<M> {
    type To<E2: Dtype, D2: Device<E2>> = M::To<E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("", |s| &s.layer, |s| &mut s.layer), |m| m)
    }
}

type Frames<const F: usize, T> = Tensor<(usize, usize, Const<F>), f64, Cpu, T>;

impl<M, const F: usize, T: Tape<f64, Cpu>, O: Shape> ModuleMut<Frames<F, T>> for Masked<M>
where
    M: Module<Frames<F, T>, Output = Tensor<O, f64, Cpu, T>, Error = <Cpu as HasErr>::Err>
        + Module<
            (Frames<F, T>, Tensor<(usize, usize), f64, Cpu>),
            Output = Tensor<O, f64, Cpu, T>,
            Error = <Cpu as HasErr>::Err,
        >,
{
    type Output = Tensor<O, f64, Cpu, T>;
    type Error = <Cpu as HasErr>::Err;
    fn try_forward_mut(&mut self, x: Frames<F, T>) -> Result<Self::Output, Self::Error> {
        let x = x.try_tanh()?;
        match &self.mask {
            Some(mask) => self.layer.try_forward((x, mask.clone())),
            None => self.layer.try_forward(x),
        }
    }
}

/// Host vs composed on 3 videos of 6 frames, all valid and with 6, 2 and 0 valid frames,
/// then finite differences through the composed path.
fn recurrent_host_matches_composed<M, O: Shape>(layer: M, dev: &Cpu)
where
    M: Clone + TensorCollection<f64, Cpu>,
    Masked<M>: TensorCollection<f64, Cpu>
        + ModuleMut<Frames<5, Tape64>, Output = Tensor<O, f64, Cpu, Tape64>>
        + ModuleMut<Frames<5, NoneTape>, Output = Tensor<O, f64, Cpu>>,
{
    let x: Tensor<(usize, usize, Const<5>), f64, Cpu> = frames::<5>(dev, 3, 6);
    let mask = valid_frame_mask(dev, &[6, 2, 0], (3, 6));
    for mask in [None, Some(mask)] {
        let fed = Masked { layer: layer.clone(), mask };
        compare(fed.clone(), x.clone(), 1e-12);
        // Without a tape (evaluation) both paths agree too.
        let eval = |fused: bool| {
            set_fused(fused);
            let y = fed.clone().forward_mut(x.clone()).as_vec();
            set_fused(true);
            y
        };
        assert_close(&eval(true), &eval(false), 1e-12, "evaluation output");
        set_fused(false);
        let report = check_gradients(&mut fed.clone(), x.clone(), Tolerance::default(), 5);
        set_fused(true);
        report.unwrap_or_else(|e| panic!("composed path, finite differences: {e:#?}"));
    }
}

#[test]
fn lstm_host_matches_composed() {
    let dev = loupe::device::cpu_seeded(15);
    let lstm: LstmPooling<5, 4, 16, f64, Cpu> = dev.build_module::<builder::LstmPooling<5, 4, 16>, f64>();
    recurrent_host_matches_composed(lstm, &dev);
}

#[test]
fn gru_host_matches_composed() {
    let dev = loupe::device::cpu_seeded(16);
    let mut gru: GruPooling<5, 4, 8, f64, Cpu> = dev.build_module::<builder::GruPooling<5, 4, 8>, f64>();
    // Biases away from their initial constants, so every bias gradient is exercised.
    for layer in [&mut gru.layer1.gate_bias, &mut gru.layer2.gate_bias] {
        *layer = dev.sample_normal_like(layer);
    }
    recurrent_host_matches_composed(gru, &dev);
}

fn assert_close_f32(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: sgemm {x} vs dfdx {y}");
    }
}

/// One f32 training forward + backward of `sum(out * r)` through `forward`, with loupe's
/// sgemm on or off; returns the output, the input's gradient and the gradients of `of`.
fn run_f32<const I: usize, const O: usize>(
    gemm: bool,
    x: &Tensor<(usize, Const<I>), f32, Cpu>,
    forward: impl FnOnce(
        Tensor<(usize, Const<I>), f32, Cpu, OwnedTape<f32, Cpu>>,
    ) -> Tensor<(usize, Const<O>), f32, Cpu, OwnedTape<f32, Cpu>>,
    of: &[&dyn Fn(&Gradients<f32, Cpu>) -> Vec<f32>],
) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    set_gemm(gemm);
    let out = forward(x.clone().traced(Gradients::leaky()));
    let r: Tensor<(usize, Const<O>), f32, Cpu> = {
        let mut t = x.device().zeros_like(out.shape());
        let n = out.shape().num_elements();
        t.copy_from(&(0..n).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect::<Vec<_>>());
        t
    };
    let values = out.retaped::<NoneTape>().as_vec();
    let grads = (out * r).sum::<Rank0, _>().backward();
    set_gemm(true);
    (values, grads.get(x).as_vec(), of.iter().map(|f| f(&grads)).collect())
}

#[test]
fn hidden_layers_on_sgemm_match_dfdx_matmul() {
    // 13 rows, 600 inputs (past one KC slice of 256), 40 outputs (not a multiple of the
    // 16-column tile): the product and both gradients, sgemm against dfdx's matmul.
    const I: usize = 600;
    const O: usize = 40;
    let dev = loupe::device::cpu_seeded(7);
    let x: Tensor<(usize, Const<I>), f32, Cpu> = dev.sample_normal_like(&(13, Const));
    let plain: Hidden<I, O, 4, true, f32, Cpu> = dev.build_module::<builder::Hidden<I, O, 4, true>, f32>();
    let (w, b) = (plain.weight.clone(), plain.bias.clone());
    let of: [&dyn Fn(&Gradients<f32, Cpu>) -> Vec<f32>; 2] =
        [&|g: &Gradients<f32, Cpu>| g.get(&w).as_vec(), &|g: &Gradients<f32, Cpu>| g.get(&b).as_vec()];
    let on = run_f32(true, &x, |x| plain.forward(x), &of);
    let off = run_f32(false, &x, |x| plain.forward(x), &of);
    assert_close_f32(&on.0, &off.0, 1e-5, "Hidden output");
    assert_close_f32(&on.1, &off.1, 1e-5, "Hidden input gradient");
    assert_close_f32(&on.2[0], &off.2[0], 1e-5, "Hidden weight gradient");
    assert_close_f32(&on.2[1], &off.2[1], 1e-5, "Hidden bias gradient");
    assert!(on.2[0].iter().any(|&g| g != 0.0), "the weight gradient is formed");

    let bn: HiddenBn<I, O, 4, false, f32, Cpu> = dev.build_module::<builder::HiddenBn<I, O, 4, false>, f32>();
    let (w, scale) = (bn.weight.clone(), bn.bn.scale.clone());
    let of: [&dyn Fn(&Gradients<f32, Cpu>) -> Vec<f32>; 2] =
        [&|g: &Gradients<f32, Cpu>| g.get(&w).as_vec(), &|g: &Gradients<f32, Cpu>| g.get(&scale).as_vec()];
    let (mut on_bn, mut off_bn) = (bn.clone(), bn.clone());
    let on = run_f32(true, &x, |x| on_bn.forward_mut(x), &of);
    let off = run_f32(false, &x, |x| off_bn.forward_mut(x), &of);
    assert_close_f32(&on.0, &off.0, 1e-4, "HiddenBn output");
    assert_close_f32(&on.1, &off.1, 1e-4, "HiddenBn input gradient");
    assert_close_f32(&on.2[0], &off.2[0], 1e-4, "HiddenBn weight gradient");
    assert_close_f32(&on.2[1], &off.2[1], 1e-4, "HiddenBn scale gradient");
    assert_close_f32(&on_bn.bn.running_mean.as_vec(), &off_bn.bn.running_mean.as_vec(), 1e-5, "running mean");
    // Evaluation (`Module`, no tape).
    set_gemm(true);
    let eval_on = on_bn.forward(x.clone()).as_vec();
    set_gemm(false);
    let eval_off = on_bn.forward(x.clone()).as_vec();
    set_gemm(true);
    assert_close_f32(&eval_on, &eval_off, 1e-4, "HiddenBn evaluation output");
}

/// One f32 training forward + backward of `sum(out * r)` for a recurrent pooling, with
/// loupe's sgemm on or off: the output (every frame's `h U` on sgemm with `U` packed once),
/// the frames' gradient (which every step's state gradient, `d U^T` likewise, flows into)
/// and the parameters' gradients that `weights` reads (the recurrent weights' from one
/// product over all steps, accumulated in place).
fn recurrent_f32<M, const N: usize>(
    gemm: bool,
    layer: &M,
    x: &Tensor<(usize, usize, Const<5>), f32, Cpu>,
    weights: impl Fn(&Gradients<f32, Cpu>, &M) -> Vec<f32>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>)
where
    M: Module<
        Tensor<(usize, usize, Const<5>), f32, Cpu, OwnedTape<f32, Cpu>>,
        Output = Tensor<(usize, Const<N>), f32, Cpu, OwnedTape<f32, Cpu>>,
    >,
{
    set_gemm(gemm);
    let y = layer.forward(x.clone().traced(Gradients::leaky()));
    let mut r = x.device().zeros_like(y.shape());
    let n = y.shape().num_elements();
    r.copy_from(&(0..n).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect::<Vec<_>>());
    let out = y.retaped::<NoneTape>().as_vec();
    let grads = (y * r).sum::<Rank0, _>().backward();
    set_gemm(true);
    (out, grads.get(x).as_vec(), weights(&grads, layer))
}

#[test]
fn recurrent_state_gradient_on_sgemm_matches_dfdx_matmul() {
    let dev = loupe::device::cpu_seeded(17);
    let x: Tensor<(usize, usize, Const<5>), f32, Cpu> = dev.sample_normal_like(&(3, 6, Const));
    let lstm: LstmPooling<5, 4, 16, f32, Cpu> = dev.build_module::<builder::LstmPooling<5, 4, 16>, f32>();
    let lstm_weights = |g: &Gradients<f32, Cpu>, m: &LstmPooling<5, 4, 16, f32, Cpu>| {
        let (a, b) = (&m.layer1, &m.layer2);
        [g.get(&a.recurrent_weights).as_vec(), g.get(&a.bias).as_vec(), g.get(&b.recurrent_weights).as_vec()]
            .concat()
    };
    let (on, off) =
        (recurrent_f32(true, &lstm, &x, lstm_weights), recurrent_f32(false, &lstm, &x, lstm_weights));
    assert_close_f32(&on.0, &off.0, 1e-5, "LSTM output");
    assert_close_f32(&on.1, &off.1, 1e-5, "LSTM frames' gradient");
    assert_close_f32(&on.2, &off.2, 1e-5, "LSTM recurrent weights' and bias's gradients");
    assert!(on.1.iter().any(|&g| g != 0.0) && on.2.iter().all(|&g| g != 0.0));
    let gru: GruPooling<5, 4, 8, f32, Cpu> = dev.build_module::<builder::GruPooling<5, 4, 8>, f32>();
    let gru_weights = |g: &Gradients<f32, Cpu>, m: &GruPooling<5, 4, 8, f32, Cpu>| {
        let (a, b) = (&m.layer1, &m.layer2);
        [
            g.get(&a.gate_recurrent_weights).as_vec(),
            g.get(&a.candidate_recurrent_weights).as_vec(),
            g.get(&b.candidate_recurrent_weights).as_vec(),
            g.get(&b.candidate_bias).as_vec(),
        ]
        .concat()
    };
    let (on, off) = (recurrent_f32(true, &gru, &x, gru_weights), recurrent_f32(false, &gru, &x, gru_weights));
    assert_close_f32(&on.0, &off.0, 1e-5, "GRU output");
    assert_close_f32(&on.1, &off.1, 1e-5, "GRU frames' gradient");
    assert_close_f32(&on.2, &off.2, 1e-5, "GRU recurrent weights' and bias's gradients");
    assert!(on.2.iter().all(|&g| g != 0.0));
}

/// A stream of untaped frames (evaluation, frames as data) is copied out by the fused op;
/// it must equal dfdx's slice, which the composed path and any taped input use, for
/// frames and for video-level rows, at every position of the channels.
#[test]
fn stream_of_untaped_input_matches_the_slice() {
    let dev = loupe::device::cpu_seeded(31);
    let x = frames::<7>(&dev, 3, 5);
    let rows: Tensor<(usize, Const<7>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    fn both<Y: Shape>(f: impl Fn() -> Tensor<Y, f64, Cpu>) -> (Vec<f64>, Vec<f64>) {
        set_fused(false);
        let composed = f().as_vec();
        set_fused(true);
        (f().as_vec(), composed)
    }
    let (fused, composed) = both(|| Stream::<0, 4>.forward(x.clone()));
    assert_eq!((fused.len(), &fused), (3 * 5 * 4, &composed));
    let (fused, composed) = both(|| Stream::<4, 3>.forward(x.clone()));
    assert_eq!((fused.len(), &fused), (3 * 5 * 3, &composed));
    let (fused, composed) = both(|| Stream::<2, 1>.forward(rows.clone()));
    assert_eq!((fused.len(), &fused), (4, &composed));
    // The channels themselves, against the values read directly.
    let all = x.as_vec();
    let expected: Vec<f64> = all.chunks(7).flat_map(|frame| frame[4..7].to_vec()).collect();
    assert_eq!(Stream::<4, 3>.forward(x.clone()).as_vec(), expected);
    let f32s = x.to_dtype::<f32>();
    let expected32: Vec<f32> = f32s.as_vec().chunks(7).flat_map(|frame| frame[1..6].to_vec()).collect();
    assert_eq!(Stream::<1, 5>.forward(f32s).as_vec(), expected32);
}

/// A stream of taped frames, with the frames used again outside the stream: the fused
/// copy's backward adds its channels' gradient to the frames' (dfdx 0.13's `slice`
/// backward would assign it, dropping the other use's), against the gradient written out.
#[test]
fn stream_of_taped_input_adds_its_gradient() {
    let dev = loupe::device::cpu_seeded(33);
    let x = frames::<7>(&dev, 3, 5);
    let weights: Tensor<(usize, usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(3, 5, Const));
    let traced = x.clone().traced(Gradients::leaky());
    let stream = Stream::<4, 3>.forward(traced.retaped());
    assert_eq!(stream.retaped::<NoneTape>().as_vec(), Stream::<4, 3>.forward(x.clone()).as_vec());
    let loss = (stream * weights.clone()).sum::<Rank0, _>() + traced.sum::<Rank0, _>();
    let grads = loss.backward();
    let w = weights.as_vec();
    let expected: Vec<f64> =
        (0..3 * 5 * 7).map(|i| 1.0 + if i % 7 >= 4 { w[i / 7 * 3 + i % 7 - 4] } else { 0.0 }).collect();
    assert_eq!(grads.get(&x).as_vec(), expected);
}

/// The late fusion's concatenation of two pooled representations: the fused copy and
/// its backward against dfdx's `concat_along`, taped (both inputs' gradients) and
/// untaped, and the values against the inputs read directly.
#[test]
fn concat_features_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(32);
    let a: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    let b: Tensor<(usize, Const<2>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    let weights: Tensor<(usize, Const<7>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    let run = |fused: bool| {
        set_fused(fused);
        let (ta, tb) = (a.clone().traced(Gradients::leaky()), b.clone().traced(Gradients::leaky()));
        let c = try_concat_features::<5, 2, 7, _, _, _, _>(ta, tb).unwrap();
        let values = c.retaped::<NoneTape>().as_vec();
        let grads = (c * weights.clone()).sum::<Rank0, _>().backward();
        let untaped = try_concat_features::<5, 2, 7, _, _, _, _>(a.clone(), b.clone()).unwrap().as_vec();
        set_fused(true);
        (values, untaped, grads.get(&a).as_vec(), grads.get(&b).as_vec())
    };
    let (fused, composed) = (run(true), run(false));
    assert_eq!(fused, composed);
    let expected: Vec<f64> =
        a.as_vec().chunks(5).zip(b.as_vec().chunks(2)).flat_map(|(x, y)| [x, y].concat()).collect();
    assert_eq!(fused.0, expected);
    assert_eq!(fused.1, expected);
    // Each input's gradient is its columns of the output's (the weights).
    let w = weights.as_vec();
    assert_eq!(fused.2, w.chunks(7).flat_map(|r| r[..5].to_vec()).collect::<Vec<_>>());
    assert_eq!(fused.3, w.chunks(7).flat_map(|r| r[5..].to_vec()).collect::<Vec<_>>());
}

/// Evaluation-mode batch norm and the frames' evaluation preprocessing (L2, then the
/// batch norm with its running averages), untaped: the fused in-place kernels against
/// the composed dfdx ops, on rows and on frames, `f64` and `f32`, with an all-zero
/// frame at the L2 floor.
#[test]
fn evaluation_batch_norm_and_frame_input_fused_match_composed() {
    let dev = loupe::device::cpu_seeded(33);
    let mut bn = dev.build_module::<builder::BatchNorm<5>, f64>();
    bn.scale = dev.sample_uniform_like(&bn.scale) + 0.5;
    bn.shift = dev.sample_normal_like(&bn.shift);
    bn.running_mean = dev.sample_normal_like(&bn.running_mean);
    bn.running_var = dev.sample_uniform_like(&bn.running_var) + 0.1;
    let rows: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(7, Const));
    let x = frames::<5>(&dev, 2, 3);
    fn both<Y: Shape, E: Dtype>(f: impl Fn() -> Tensor<Y, E, Cpu>) -> (Vec<E>, Vec<E>) {
        set_fused(false);
        let composed = f().as_vec();
        set_fused(true);
        (f().as_vec(), composed)
    }
    let (fused, composed) = both(|| bn.forward(rows.clone()));
    assert_close(&fused, &composed, 1e-12, "batch norm of rows");
    let (fused, composed) = both(|| bn.forward(x.clone()));
    assert_close(&fused, &composed, 1e-12, "batch norm of frames");
    // The values: (x - mean) / sqrt(var + 1e-3) * scale + shift, the running averages'.
    let (m, v, g, b) =
        (bn.running_mean.as_vec(), bn.running_var.as_vec(), bn.scale.as_vec(), bn.shift.as_vec());
    let expected: Vec<f64> = rows
        .as_vec()
        .iter()
        .enumerate()
        .map(|(i, &y)| (y - m[i % 5]) / (v[i % 5] + 1e-3).sqrt() * g[i % 5] + b[i % 5])
        .collect();
    assert_close(&bn.forward(rows.clone()).as_vec(), &expected, 1e-12, "batch norm against the formula");

    let mut input = dev.build_module::<builder::FrameInput<5>, f64>();
    input.bn = bn.clone();
    let mut values = x.as_vec();
    values[..5].iter_mut().for_each(|v| *v = 0.0);
    let x = dev.tensor_from_vec(values, (2usize, 3usize, Const::<5>));
    let (fused, composed) = both(|| input.forward(x.clone()));
    assert_close(&fused, &composed, 1e-12, "evaluation frame input");
    let input32 = input.to_dtype::<f32>();
    let x32 = x.to_dtype::<f32>();
    let (fused, composed) = both(|| input32.forward(x32.clone()));
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    assert_close(&widen(fused), &widen(composed), 1e-5, "evaluation frame input, f32");
}

/// NetVLAD and NetRVLAD in evaluation (untaped: the tail writes its output in place),
/// fused against composed, after a training step has moved the running averages.
#[test]
fn vlad_evaluation_fused_matches_composed() {
    let dev = loupe::device::cpu_seeded(34);
    let x = frames::<6>(&dev, 3, 5);
    let mut vlad = dev.build_module::<builder::NetVladPooling<6, 4, 24>, f64>();
    let mut rvlad = dev.build_module::<builder::NetRvladPooling<6, 4, 24>, f64>();
    let _ = vlad.forward_mut(x.clone().traced(vlad.alloc_grads()));
    let _ = rvlad.forward_mut(x.clone().traced(rvlad.alloc_grads()));
    for (name, run) in [
        ("NetVLAD", &(|| vlad.forward(x.clone()).as_vec()) as &dyn Fn() -> Vec<f64>),
        ("NetRVLAD", &|| rvlad.forward(x.clone()).as_vec()),
    ] {
        let fused = run();
        set_fused(false);
        let composed = run();
        set_fused(true);
        assert_eq!(fused.len(), 3 * 24, "{name}");
        assert_close(&fused, &composed, 1e-12, name);
    }
}
