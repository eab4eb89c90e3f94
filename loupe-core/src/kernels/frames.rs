//! Ops whose big operand is a batch of frames that needs no gradient: a model's input.
//!
//! A training step never reads the gradient of its input frames, yet dfdx's matmul
//! computes both operands' gradients. For the clustering poolings those are the two
//! largest products of the backward pass (`(B*S, K) x (K, F)` for the assignment and
//! `(S, K) x (K, F)` per video for the aggregation; about 11% of the paper model's
//! matmul work). These ops record a backward that computes only the gradients of their
//! taped operands. The frames are passed untaped, by reference.
//!
//! On `Cpu` (`f32`, `f64`) the ops record their own backward; elsewhere (or with the
//! fused kernels switched off) they fall back to dfdx ops, which compute the frames'
//! gradient too and drop it: same results, less speed.

use dfdx::prelude::*;

use super::gemm::sgemm_batch;
use super::gemm_ops::{product, try_rows_product, view};
use super::math::{self, Real};
use super::view::{
    contiguous, expect_view, grad_mut, params, params_mut, read, restore_grad, take_grad, tensor_from, zeroed,
};
use super::{cpu_float, gemm_for, CpuFloat};

/// `x W (+ bias)`: frames `x` (`(B, S, F)`, data) times weights `w` (`F x K`, taped),
/// plus an optional constant row `bias` (`K`, no gradient). Backward: `gw += x^T g`.
#[allow(clippy::type_complexity)]
pub(crate) fn try_frames_matmul<
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: &Tensor<(B, S, Const<F>), E, D>,
    w: Tensor<Rank2<F, K>, E, D, T>,
    bias: Option<&Tensor<Rank1<K>, E, D>>,
) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => frames_matmul::<f32, _, _, F, K, _, _, _>(x, w, bias),
        Some(CpuFloat::F64) => frames_matmul::<f64, _, _, F, K, _, _, _>(x, w, bias),
        None => {
            let (w, tape) = w.split_tape();
            let y = x.clone().put_tape(tape).try_matmul(w)?;
            match bias {
                Some(b) => {
                    let shape = *y.shape();
                    y.try_add(b.clone().try_broadcast_like(&shape)?)
                }
                None => Ok(y),
            }
        }
    }
}

#[allow(clippy::type_complexity)]
fn frames_matmul<
    R: Real,
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: &Tensor<(B, S, Const<F>), E, D>,
    w: Tensor<Rank2<F, K>, E, D, T>,
    bias: Option<&Tensor<Rank1<K>, E, D>>,
) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
    let (w, mut tape) = w.split_tape();
    let (b, s, _) = *x.shape();
    let mut out = match try_rows_product(x, &w, (b, s, Const::<K>))? {
        Some(out) => out,
        None => x.clone().try_matmul(w.clone())?,
    };
    if let Some(b) = bias {
        match (read::<R, _, _, _>(b)?, contiguous::<R, _, _, _>(&out)) {
            (Some(bias), true) => math::add_row_bias(expect_view(params_mut::<R, _, _, _>(&mut out)), &bias),
            _ => {
                let shape = *out.shape();
                out = out.try_add(b.clone().try_broadcast_like(&shape)?)?;
            }
        }
    }
    if T::OWNS_TAPE {
        let (x_keep, out_keep) = (x.clone(), out.clone());
        tape.add_backward_op(move |grads| {
            // The output's gradient is read where it lies (taken out and put back).
            let g = take_grad::<R, _, _, _>(grads, &out_keep)?;
            let (b, s, _) = *x_keep.shape();
            let rows = b.size() * s.size();
            if let (true, Some(xv), Some(gv)) =
                (gemm_for::<E, D>(), params::<f32, _, _, _>(&x_keep), R::as_f32(&g))
            {
                product(view(xv, rows, F).transpose(), view(gv, rows, K), grad_mut(grads, &w)?, true);
            } else {
                let xt =
                    x_keep.clone().try_reshape_like(&(rows, Const::<F>))?.try_permute::<_, Axes2<1, 0>>()?;
                let gw = xt.try_matmul(tensor_from(x_keep.device(), (rows, Const::<K>), &g)?)?;
                match read::<R, _, _, _>(&gw)? {
                    Some(values) => math::scaled_add(grad_mut::<R, _, _, _>(grads, &w)?, R::one(), &values),
                    None => unreachable!("a matmul's output is a contiguous Cpu tensor"),
                }
            }
            restore_grad(grads, &out_keep, g)
        });
    }
    Ok(out.put_tape(tape))
}

/// `out[b,f,k] = scale[f] sum_t x[b,t,f] a[b,t,k]`: the assignment-weighted sum of frames
/// `x` (`(B, S, F)`, data) with the per-feature `scale` (taped), for assignments `a`
/// (`(B, S, K)`, taped). Backward: `ga`, `gscale`; never `gx`.
#[allow(clippy::type_complexity)]
pub(crate) fn try_frames_weighted_sum<
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, Const<F>, Const<K>), E, D, T>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => frames_weighted_sum::<f32, _, _, F, K, _, _, _>(a, x, scale),
        Some(CpuFloat::F64) => frames_weighted_sum::<f64, _, _, F, K, _, _, _>(a, x, scale),
        None => composed_weighted_sum(a, x, scale),
    }
}

#[allow(clippy::type_complexity)]
fn composed_weighted_sum<
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, Const<F>, Const<K>), E, D, T>, D::Err> {
    let (a, tape) = a.split_tape();
    let p = x.clone().put_tape(tape).try_permute::<(B, Const<F>, S), Axes3<0, 2, 1>>()?.try_matmul(a)?;
    let shape = *p.shape();
    p.try_mul(scale.try_broadcast_like::<_, Axes2<0, 2>>(&shape)?)
}

#[allow(clippy::type_complexity)]
fn frames_weighted_sum<
    R: Real,
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, Const<F>, Const<K>), E, D, T>, D::Err> {
    let (a, a_tape) = a.split_tape();
    let (scale, scale_tape) = scale.split_tape();
    let applies =
        contiguous::<R, _, _, _>(&a) && contiguous::<R, _, _, _>(x) && contiguous::<R, _, _, _>(&scale);
    if !applies {
        return composed_weighted_sum(a.put_tape(a_tape), x, scale.put_tape(scale_tape));
    }
    let mut tape = a_tape.merge(scale_tape);
    // p = x^T a per video (its values kept for the scale's gradient), out = scale[f] p.
    let (batch, frames, _) = *x.shape();
    let (p_shape, dev) = ((batch, Const::<F>, Const::<K>), x.device().clone());
    let sgemm = match (gemm_for::<E, D>(), params::<f32, _, _, _>(x), params::<f32, _, _, _>(&a)) {
        (true, Some(xv), Some(av)) => Some((xv, av)),
        _ => None,
    };
    let pv = match sgemm {
        Some((xv, av)) => {
            let mut pv = zeroed::<R, E, _>(&dev, batch.size() * F * K)?;
            let out = expect_view(R::as_f32_mut(&mut pv));
            per_video((xv, av, out), frames.size(), (F, K), true, false);
            pv
        }
        None => {
            let p = x.clone().try_permute::<(B, Const<F>, S), Axes3<0, 2, 1>>()?.try_matmul(a.clone())?;
            expect_view(read::<R, _, _, _>(&p)?)
        }
    };
    let scale_values = expect_view(read::<R, _, _, _>(&scale)?);
    let mut out = dev.try_zeros_like(&p_shape)?;
    math::scale_features_forward(&pv, F, K, &scale_values, expect_view(params_mut::<R, _, _, _>(&mut out)));
    if T::OWNS_TAPE {
        let (x_keep, out_keep) = (x.clone(), out.clone());
        tape.add_backward_op(move |grads| {
            let gy = take_grad::<R, _, _, _>(grads, &out_keep)?;
            // gp = gy scale[f] (into a fresh tensor), gscale += sum gy p.
            let mut gps = zeroed::<R, E, _>(&dev, pv.len())?;
            let mut gscale = take_grad::<R, _, _, _>(grads, &scale)?;
            math::scale_features_backward(&pv, &gy, F, K, &scale_values, &mut gps, &mut gscale);
            restore_grad(grads, &scale, gscale)?;
            restore_grad(grads, &out_keep, gy)?;
            // ga += x gp per video: (S, F) x (F, K).
            if let (true, Some(xv), Some(gpv)) =
                (gemm_for::<E, D>(), params::<f32, _, _, _>(&x_keep), R::as_f32(&gps))
            {
                let ga = grad_mut::<f32, _, _, _>(grads, &a)?;
                per_video((xv, gpv, ga), frames.size(), (F, K), false, true);
                return Ok(());
            }
            let gp = tensor_from(&dev, p_shape, &gps)?;
            drop(gps);
            let ga = x_keep.clone().try_matmul(gp)?;
            let ga = expect_view(read::<R, _, _, _>(&ga)?);
            math::scaled_add(grad_mut::<R, _, _, _>(grads, &a)?, R::one(), &ga);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// `x_v^T a_v` for each video `v` (frames `x`: `(B, S, F)`, assignments `a`: `(B, S, K)`)
/// on sgemm, untaped; `None` unless sgemm is on for `(E, D)` and both are contiguous `Cpu`
/// tensors.
#[allow(clippy::type_complexity)]
pub(crate) fn try_video_weighted_sums<
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    E: Dtype,
    D: Device<E>,
>(
    a: &Tensor<(B, S, Const<K>), E, D>,
    x: &Tensor<(B, S, Const<F>), E, D>,
) -> Result<Option<Tensor<(B, Const<F>, Const<K>), E, D>>, D::Err> {
    let (true, Some(xv), Some(av)) =
        (gemm_for::<E, D>(), params::<f32, _, _, _>(x), params::<f32, _, _, _>(a))
    else {
        return Ok(None);
    };
    let (batch, frames, _) = *x.shape();
    // Written in place, as `try_rows_product` does.
    let mut out = x.device().try_zeros_like(&(batch, Const::<F>, Const::<K>))?;
    let sums = expect_view(params_mut::<f32, _, _, _>(&mut out));
    per_video((xv, av, sums), frames.size(), (F, K), true, false);
    Ok(Some(out))
}

/// `z_v (+)= x_v y_v` (or `x_v^T y_v` with `x_transposed`) for each video `v` of a batch
/// ([`sgemm_batch`]: side by side, one thread each): `x_v` its `frames x F` frames, `y_v`
/// the `y` rows of the video (`frames` rows of `K`, or `F` of `K`: whatever `y` holds per
/// video) and `z_v` its share of `z`, each row-major.
fn per_video(
    (x, y, z): (&[f32], &[f32], &mut [f32]),
    frames: usize,
    (features, clusters): (usize, usize),
    x_transposed: bool,
    accumulate: bool,
) {
    let videos = x.len() / (frames * features).max(1);
    let y_len = y.len() / videos.max(1);
    let operands = |v: usize| {
        let xv = view(&x[v * frames * features..][..frames * features], frames, features);
        let yv = view(&y[v * y_len..][..y_len], y_len / clusters, clusters);
        (if x_transposed { xv.transpose() } else { xv }, yv)
    };
    sgemm_batch(z, videos, operands, accumulate).expect("the tensors' types fix the shapes of the products");
}

/// `y = x scale + shift` per channel for frames `x` (`(B, S, F)`, data) and taped `scale`,
/// `shift` (`F`): the input batch norm's affine applied to standardised frames. Backward:
/// `gscale`, `gshift`; never `gx`.
#[allow(clippy::type_complexity)]
pub(crate) fn try_frames_affine<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
    shift: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, S, Const<F>), E, D, T>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => frames_affine::<f32, _, _, F, _, _, _>(x, scale, shift),
        Some(CpuFloat::F64) => frames_affine::<f64, _, _, F, _, _, _>(x, scale, shift),
        None => composed_affine(x, scale, shift),
    }
}

#[allow(clippy::type_complexity)]
fn composed_affine<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
    shift: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, S, Const<F>), E, D, T>, D::Err> {
    let shape = *x.shape();
    scale
        .try_broadcast_like::<_, Axes2<0, 1>>(&shape)?
        .try_mul(x.clone())?
        .try_add(shift.try_broadcast_like::<_, Axes2<0, 1>>(&shape)?)
}

#[allow(clippy::type_complexity)]
fn frames_affine<R: Real, B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: &Tensor<(B, S, Const<F>), E, D>,
    scale: Tensor<Rank1<F>, E, D, T>,
    shift: Tensor<Rank1<F>, E, D, T>,
) -> Result<Tensor<(B, S, Const<F>), E, D, T>, D::Err> {
    let (scale, scale_tape) = scale.split_tape();
    let (shift, shift_tape) = shift.split_tape();
    let applies =
        contiguous::<R, _, _, _>(x) && contiguous::<R, _, _, _>(&scale) && contiguous::<R, _, _, _>(&shift);
    if !applies {
        return composed_affine(x, scale.put_tape(scale_tape), shift.put_tape(shift_tape));
    }
    let mut tape = scale_tape.merge(shift_tape);
    // The frames are read in place and the output written in place into its tensor.
    let mut out = x.device().try_zeros_like(x.shape())?;
    math::affine_rows_forward(
        expect_view(params::<R, _, _, _>(x)),
        F,
        &expect_view(read::<R, _, _, _>(&scale)?),
        &expect_view(read::<R, _, _, _>(&shift)?),
        expect_view(params_mut::<R, _, _, _>(&mut out)),
    );
    if T::OWNS_TAPE {
        // The backward reads the frames in place again (the caller holds them for the
        // whole step; a copy held from the forward would double them).
        let (x_keep, out_keep) = (x.clone(), out.clone());
        tape.add_backward_op(move |grads| {
            let gy = take_grad::<R, _, _, _>(grads, &out_keep)?;
            let mut gscale = take_grad::<R, _, _, _>(grads, &scale)?;
            let mut gshift = take_grad::<R, _, _, _>(grads, &shift)?;
            let xs = expect_view(params::<R, _, _, _>(&x_keep));
            math::affine_rows_backward(xs, &gy, F, &mut gscale, &mut gshift);
            restore_grad(grads, &scale, gscale)?;
            restore_grad(grads, &shift, gshift)?;
            restore_grad(grads, &out_keep, gy)
        });
    }
    Ok(out.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The evaluation path's per-video sums on sgemm give dfdx's batched product, with the
    /// videos side by side (one thread each) and one after another (fewer videos than
    /// threads), and the two ways give the same bits.
    #[test]
    fn the_video_sums_match_dfdx() {
        let dev = Cpu::seed_from_u64(6);
        let x: Tensor<(usize, usize, Const<40>), f32, Cpu> = dev.sample_normal_like(&(3, 7, Const));
        let a: Tensor<(usize, usize, Const<5>), f32, Cpu> = dev.sample_normal_like(&(3, 7, Const));
        let dfdx = x.clone().permute::<(usize, Const<40>, usize), Axes3<0, 2, 1>>().matmul(a.clone());
        let sums: Vec<Vec<f32>> = [2, 4]
            .into_iter()
            .map(|threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let sums = pool.install(|| try_video_weighted_sums(&a, &x).unwrap().expect("sgemm is on"));
                super::super::gemm_ops::tests::close(&sums.as_vec(), &dfdx.as_vec());
                sums.as_vec()
            })
            .collect();
        assert_eq!(sums[0], sums[1]);
    }
}
