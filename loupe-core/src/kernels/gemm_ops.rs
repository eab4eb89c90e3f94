//! `x W` for a batch of rows (or of sequences) and a weight, with its backward
//! (`gx += g W^T`, `gW += x^T g`), on loupe's own [`super::gemm::sgemm`]: every weight
//! product of the layers (the hidden layer's `80 x 278528 x 1024` at paper size, Context
//! Gating, the mixture of experts, the affine layers, the recurrences' input
//! projections), in training and in evaluation. Each runs faster there than on dfdx's
//! matmul (`loupe bench --gemm`, docs/performance.md).
//!
//! Runs on `Cpu` with `f32` when the fused kernels and sgemm are both on ([`super::set_gemm`],
//! `LOUPE_GEMM=0` turns it off); otherwise, and for `f64`, it is dfdx's `try_matmul`.
//! The weight and the input are read in place ([`super::view::params`]): a copy of the
//! paper-size weight would be 1.07 GB per call.

use dfdx::prelude::*;

use super::gemm::{sgemm, MatMut, MatRef};
use super::view::{expect_view, grad_buffer, grad_mut, params, params_mut};

/// `x W`: rows `x` (`(B, I)`, taped) times the weight `w` (`I x O`, its gradient on `x`'s
/// tape; `O` may be a run-time size, as for a reshaped `I x V x M` weight).
pub(crate) fn try_weight_product<B: Dim, const I: usize, O: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, Const<I>), E, D, T>,
    w: &Tensor<(Const<I>, O), E, D>,
) -> Result<Tensor<(B, O), E, D, T>, D::Err> {
    let (x, tape) = x.split_tape();
    if !runs_on_sgemm(&x, w) {
        return x.put_tape(tape).try_matmul(w.retaped::<T>());
    }
    let shape = (x.shape().0, w.shape().1);
    sgemm_product(x, tape, w, shape, true)
}

/// [`try_weight_product`] for sequences: every frame of `x` (`(B, S, I)`, taped) times
/// `w`, as one `(B S) x I` by `I x O` product (the recurrences' input projections).
#[allow(clippy::type_complexity)]
pub(crate) fn try_sequence_weight_product<
    B: Dim,
    S: Dim,
    const I: usize,
    O: Dim,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(B, S, Const<I>), E, D, T>,
    w: &Tensor<(Const<I>, O), E, D>,
) -> Result<Tensor<(B, S, O), E, D, T>, D::Err> {
    let (x, tape) = x.split_tape();
    sequence_product(x, tape, w, true)
}

/// [`try_sequence_weight_product`] of frames that need no gradient: `x` is data (no
/// tape) and `tape` carries the product's backward, which forms only `gW += x^T g`. The
/// frames' gradient `g W^T`, a product as large as the forward, is never formed (the
/// recurrences' first layer in training, `nn::Recurrent::try_pool_data`). Off sgemm, dfdx's
/// matmul forms it and it is dropped.
#[allow(clippy::type_complexity)]
pub(crate) fn try_sequence_data_product<
    B: Dim,
    S: Dim,
    const I: usize,
    O: Dim,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(B, S, Const<I>), E, D>,
    tape: T,
    w: &Tensor<(Const<I>, O), E, D>,
) -> Result<Tensor<(B, S, O), E, D, T>, D::Err> {
    sequence_product(x, tape, w, false)
}

/// Both sequence products: on sgemm when it runs (the backward forms `x`'s gradient when
/// `input_gradient`), otherwise dfdx's matmul.
#[allow(clippy::type_complexity)]
fn sequence_product<B: Dim, S: Dim, const I: usize, O: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, S, Const<I>), E, D>,
    tape: T,
    w: &Tensor<(Const<I>, O), E, D>,
    input_gradient: bool,
) -> Result<Tensor<(B, S, O), E, D, T>, D::Err> {
    if !runs_on_sgemm(&x, w) {
        return x.put_tape(tape).try_matmul(w.retaped::<T>());
    }
    let (b, s, _) = *x.shape();
    sgemm_product(x, tape, w, (b, s, w.shape().1), input_gradient)
}

/// The product on sgemm, whatever the rows' shape `X` (its last axis `I`) and the
/// output's `Y` (the same rows, `O` columns); the backward forms `x`'s gradient when
/// `input_gradient`.
fn sgemm_product<X: Shape, Y: Shape, const I: usize, O: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<X, E, D>,
    mut tape: T,
    w: &Tensor<(Const<I>, O), E, D>,
    shape: Y,
    input_gradient: bool,
) -> Result<Tensor<Y, E, D, T>, D::Err> {
    let (rows, o) = (x.shape().num_elements() / I, w.shape().1.size());
    let out = expect_view(try_rows_product(&x, w, shape)?);
    if T::OWNS_TAPE {
        // Of the output only its gradient's identity (`ghost`): holding the tensor would
        // keep its buffer shared, and the recurrences, which write their activations over
        // their input projections, would then copy the whole projection first.
        let (x_keep, w_keep, out_id) = (x.clone(), w.clone(), out.ghost());
        tape.add_backward_op(move |grads| {
            let g = std::mem::take(grad_buffer::<f32, E, D>(grads.get_or_alloc_mut(&out_id)?));
            let (xv, wv) = (expect_view(params(&x_keep)), expect_view(params(&w_keep)));
            let gv = view(&g, rows, o);
            // gx += g W^T (rows x O x I), gW += x^T g (I x rows x O).
            if input_gradient {
                product(gv, view(wv, I, o).transpose(), grad_mut(grads, &x_keep)?, true);
            }
            product(view(xv, rows, I).transpose(), gv, grad_mut(grads, &w_keep)?, true);
            *grad_buffer::<f32, E, D>(grads.get_or_alloc_mut(&out_id)?) = g;
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// `x W` for `x` of any shape whose last axis is `I` (its other axes the rows), into a new
/// tensor of `shape`, on sgemm; `None` (nothing done) unless sgemm is on for `(E, D)` and
/// both are contiguous `Cpu` tensors.
pub(crate) fn try_rows_product<S: Shape, Y: Shape, const I: usize, O: Dim, E: Dtype, D: Device<E>>(
    x: &Tensor<S, E, D>,
    w: &Tensor<(Const<I>, O), E, D>,
    shape: Y,
) -> Result<Option<Tensor<Y, E, D>>, D::Err> {
    if !runs_on_sgemm(x, w) {
        return Ok(None);
    }
    let (xv, wv) = (expect_view(params::<f32, _, _, _>(x)), expect_view(params::<f32, _, _, _>(w)));
    let (rows, o) = (xv.len() / I, w.shape().1.size());
    assert_eq!(shape.num_elements(), rows * o, "the product's shape");
    // Written in place: a buffer plus a copy would hold the output twice (the
    // recurrences' input projections are 200-350 MB at paper size).
    let mut out = x.device().try_zeros_like(&shape)?;
    product(view(xv, rows, I), view(wv, I, o), expect_view(params_mut::<f32, _, _, _>(&mut out)), false);
    Ok(Some(out))
}

/// Adds `a^T b` for rows `a` (`(R, M)`) and `b` (`(R, N)`) to the gradient of `target`
/// (`M N` values) in place, on sgemm: the recurrent weights' gradients, one product over
/// every step. Returns `false` (nothing done) unless sgemm runs for `(E, D)` and `a`, `b`
/// are contiguous `Cpu` tensors.
pub(crate) fn try_add_transposed_product<S: Shape, M: Dim, N: Dim, E: Dtype, D: Device<E>>(
    grads: &mut Gradients<E, D>,
    target: &Tensor<S, E, D>,
    a: &Tensor<(usize, M), E, D>,
    b: &Tensor<(usize, N), E, D>,
) -> Result<bool, D::Err> {
    if !runs_on_sgemm(a, b) {
        return Ok(false);
    }
    let ([rows, m], n) = (a.shape().concrete(), b.shape().1.size());
    assert_eq!(b.shape().0, rows, "one row of b per row of a");
    assert_eq!(target.shape().num_elements(), m * n, "the gradient holds a^T b");
    let (av, bv) = (expect_view(params::<f32, _, _, _>(a)), expect_view(params::<f32, _, _, _>(b)));
    product(view(av, rows, m).transpose(), view(bv, rows, n), grad_mut(grads, target)?, true);
    Ok(true)
}

/// Whether `x W` runs on sgemm: sgemm is on for `(E, D)` and both are contiguous `Cpu`
/// tensors of `f32`, read in place.
fn runs_on_sgemm<S: Shape, W: Shape, E: Dtype, D: Device<E>>(
    x: &Tensor<S, E, D>,
    w: &Tensor<W, E, D>,
) -> bool {
    super::gemm_for::<E, D>() && params::<f32, _, _, _>(x).is_some() && params::<f32, _, _, _>(w).is_some()
}

/// The row-major `rows x cols` view of a tensor's values (whose length its type fixed).
pub(crate) fn view(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::row_major(data, rows, cols).expect("a tensor holds rows x cols values")
}

/// `c (+)= a b`, `c` row-major.
pub(crate) fn product(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) {
    let (m, n) = (a.shape().0, b.shape().1);
    let c = MatMut::row_major(c, m, n).expect("a tensor holds rows x cols values");
    sgemm(a, b, c, accumulate).expect("the tensors' types fix the shapes of the product");
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// With sgemm on, the output (taped or not) and both gradients are exactly what
    /// `sgemm` computes on the same values (so the dispatch took this path); with it off
    /// (dfdx throughout) the same within f32 rounding.
    #[test]
    fn the_op_runs_sgemm_forward_and_backward() {
        let dev = Cpu::seed_from_u64(3);
        let x: Tensor<(usize, Const<300>), f32, Cpu> = dev.sample_normal_like(&(7, Const));
        let w: Tensor<Rank2<300, 21>, f32, Cpu> = dev.sample_normal_like(&(Const, Const));
        let run = |gemm: bool| {
            crate::kernels::set_gemm(gemm);
            let y = try_weight_product(x.clone().traced(Gradients::leaky()), &w).unwrap();
            let out = y.retaped::<NoneTape>().as_vec();
            let grads = y.sum::<Rank0, _>().backward();
            crate::kernels::set_gemm(true);
            (out, grads.get(&x).as_vec(), grads.get(&w).as_vec())
        };
        let (xv, wv) = (x.as_vec(), w.as_vec());
        let mut y = vec![0f32; 7 * 21];
        product(view(&xv, 7, 300), view(&wv, 300, 21), &mut y, false);
        crate::kernels::set_gemm(true);
        assert_eq!(try_weight_product(x.clone(), &w).unwrap().as_vec(), y, "the untaped (evaluation) call");
        let ones = vec![1f32; 7 * 21];
        let mut gx = vec![0f32; 7 * 300];
        product(view(&ones, 7, 21), view(&wv, 300, 21).transpose(), &mut gx, true);
        let mut gw = vec![0f32; 300 * 21];
        product(view(&xv, 7, 300).transpose(), view(&ones, 7, 21), &mut gw, true);

        let on = run(true);
        assert_eq!((&on.0, &on.1, &on.2), (&y, &gx, &gw));
        let off = run(false);
        for (a, b) in [(&on.0, &off.0), (&on.1, &off.1), (&on.2, &off.2)] {
            close(a, b);
        }
    }

    /// Frames as data: the same output and weight gradient as the taped product, exactly
    /// sgemm's values, and no gradient for the frames.
    #[test]
    fn the_data_product_forms_only_the_weight_gradient() {
        let dev = Cpu::seed_from_u64(6);
        let x: Tensor<(usize, usize, Const<40>), f32, Cpu> = dev.sample_normal_like(&(3, 7, Const));
        let w: Tensor<(Const<40>, usize), f32, Cpu> = dev.sample_normal_like(&(Const, 9));
        let mut grads = Gradients::leaky();
        *grad_mut(&mut grads, &w).unwrap() = vec![0.5f32; 40 * 9];
        let scalar: Tensor<Rank0, f32, Cpu> = dev.zeros();
        let (_, tape) = scalar.traced(grads).split_tape();
        let y = try_sequence_data_product(x.clone(), tape, &w).unwrap();
        let taped = try_sequence_weight_product(x.clone().traced(Gradients::leaky()), &w).unwrap();
        assert_eq!(y.retaped::<NoneTape>().as_vec(), taped.retaped::<NoneTape>().as_vec());
        let grads = y.sum::<Rank0, _>().backward();
        let mut want = vec![0.5f32; 40 * 9];
        product(view(&x.as_vec(), 21, 40).transpose(), view(&vec![1.0; 21 * 9], 21, 9), &mut want, true);
        assert_eq!(grads.get(&w).as_vec(), want, "added to what the gradient held");
        let taped = taped.sum::<Rank0, _>().backward();
        assert!(taped.get(&x).as_vec().iter().any(|&g| g != 0.0));
        let x_grad = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&x)));
        assert!(x_grad.is_err(), "the frames' gradient was formed");
    }

    /// The recurrent weights' gradient: `a^T b` added to what the gradient held, exactly
    /// sgemm's values; with sgemm off nothing is done (the caller falls back to dfdx).
    #[test]
    fn the_transposed_product_accumulates_into_the_gradient() {
        let dev = Cpu::seed_from_u64(4);
        let a: Tensor<(usize, Const<6>), f32, Cpu> = dev.sample_normal_like(&(11, Const));
        let b: Tensor<(usize, usize), f32, Cpu> = dev.sample_normal_like(&(11, 5));
        let target: Tensor<Rank3<6, 1, 5>, f32, Cpu> = dev.zeros();
        let mut grads = Gradients::leaky();
        let before: Vec<f32> = (0..30).map(|i| i as f32 / 7.0).collect();
        *grad_mut(&mut grads, &target).unwrap() = before.clone();
        assert!(try_add_transposed_product(&mut grads, &target, &a, &b).unwrap());
        let mut want = before.clone();
        product(view(&a.as_vec(), 11, 6).transpose(), view(&b.as_vec(), 11, 5), &mut want, true);
        assert_eq!(grads.get(&target).as_vec(), want);
        assert_ne!(want, before);
        crate::kernels::set_gemm(false);
        let ran = try_add_transposed_product(&mut grads, &target, &a, &b).unwrap();
        crate::kernels::set_gemm(true);
        assert!(!ran);
        assert_eq!(grads.get(&target).as_vec(), want, "nothing added with sgemm off");
    }

    pub(in crate::kernels) fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    /// The sequence product (a run-time output width) gives dfdx's values and gradients.
    #[test]
    fn the_sequence_product_matches_dfdx() {
        let dev = Cpu::seed_from_u64(5);
        let x: Tensor<(usize, usize, Const<40>), f32, Cpu> = dev.sample_normal_like(&(3, 7, Const));
        let w: Tensor<(Const<40>, usize), f32, Cpu> = dev.sample_normal_like(&(Const, 9));
        let run = |gemm: bool| {
            crate::kernels::set_gemm(gemm);
            let y = try_sequence_weight_product(x.clone().traced(Gradients::leaky()), &w).unwrap();
            let out = y.retaped::<NoneTape>().as_vec();
            let grads = y.sum::<Rank0, _>().backward();
            crate::kernels::set_gemm(true);
            (out, grads.get(&x).as_vec(), grads.get(&w).as_vec())
        };
        let (on, off) = (run(true), run(false));
        let mut want = vec![0f32; 21 * 9];
        product(view(&x.as_vec(), 21, 40), view(&w.as_vec(), 40, 9), &mut want, false);
        assert_eq!(on.0, want, "the sgemm path ran");
        for (a, b) in [(&on.0, &off.0), (&on.1, &off.1), (&on.2, &off.2)] {
            close(a, b);
        }
    }
}
