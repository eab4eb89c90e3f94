//! `x W` for a batch of rows and a weight, with its backward (`gx += g W^T`,
//! `gW += x^T g`) on loupe's own [`super::gemm::sgemm`]: the hidden layer's products
//! (`80 x 278528 x 1024` at paper size). Each product runs where it measured faster
//! (`loupe bench --gemm`, docs/performance.md): the weight's gradient on sgemm (2.9x
//! dfdx's matmul), the input's gradient on sgemm (level), the forward on dfdx's matmul
//! (sgemm 0.86x there), so an untaped (evaluation) call is dfdx's matmul alone.
//!
//! Runs on `Cpu` with `f32` when the fused kernels and sgemm are both on ([`super::set_gemm`],
//! `LOUPE_GEMM=0` turns it off); otherwise, and for `f64`, it is dfdx's `try_matmul`.
//! The weight and the input are read in place ([`super::view::params`]): a copy of the
//! paper-size weight would be 1.07 GB per call.

use dfdx::prelude::*;

use super::gemm::{sgemm, MatMut, MatRef};
use super::view::{expect_view, grad_mut, params, restore_grad, take_grad};

/// `x W`: rows `x` (`(B, I)`, taped) times the weight `w` (`I x O`, its gradient on `x`'s
/// tape).
pub(crate) fn try_weight_product<
    B: Dim,
    const I: usize,
    const O: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    x: Tensor<(B, Const<I>), E, D, T>,
    w: &Tensor<Rank2<I, O>, E, D>,
) -> Result<Tensor<(B, Const<O>), E, D, T>, D::Err> {
    if !T::OWNS_TAPE || !super::gemm_for::<E, D>() {
        return x.try_matmul(w.retaped::<T>());
    }
    let (x, tape) = x.split_tape();
    if params::<f32, _, _, _>(&x).is_none() || params::<f32, _, _, _>(w).is_none() {
        return x.put_tape(tape).try_matmul(w.retaped::<T>());
    }
    sgemm_product(x, tape, w)
}

fn sgemm_product<B: Dim, const I: usize, const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, Const<I>), E, D>,
    mut tape: T,
    w: &Tensor<Rank2<I, O>, E, D>,
) -> Result<Tensor<(B, Const<O>), E, D, T>, D::Err> {
    let rows = x.shape().0.size();
    let out = x.clone().try_matmul(w.clone())?;
    if T::OWNS_TAPE {
        let (x_keep, w_keep, out_keep) = (x.clone(), w.clone(), out.clone());
        tape.add_backward_op(move |grads| {
            let g = take_grad::<f32, _, _, _>(grads, &out_keep)?;
            let (xv, wv) = (expect_view(params(&x_keep)), expect_view(params(&w_keep)));
            let gv = view(&g, rows, O);
            // gx += g W^T (rows x O x I), gW += x^T g (I x rows x O).
            product(gv, view(wv, I, O).transpose(), grad_mut(grads, &x_keep)?, true);
            product(view(xv, rows, I).transpose(), gv, grad_mut(grads, &w_keep)?, true);
            restore_grad(grads, &out_keep, g)
        });
    }
    Ok(out.put_tape(tape))
}

/// The row-major `rows x cols` view of a tensor's values (whose length its type fixed).
fn view(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::row_major(data, rows, cols).expect("a tensor holds rows x cols values")
}

/// `c (+)= a b`, `c` row-major.
fn product(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) {
    let (m, n) = (a.shape().0, b.shape().1);
    let c = MatMut::row_major(c, m, n).expect("a tensor holds rows x cols values");
    sgemm(a, b, c, accumulate).expect("the tensors' types fix the shapes of the product");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With sgemm on, both gradients are exactly what `sgemm` computes on the same values
    /// (so the dispatch took this path) and the output is dfdx's; with it off (dfdx
    /// throughout) the same within f32 rounding.
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
        let y = x.clone().matmul(w.clone()).as_vec();
        let ones = vec![1f32; 7 * 21];
        let mut gx = vec![0f32; 7 * 300];
        product(view(&ones, 7, 21), view(&wv, 300, 21).transpose(), &mut gx, true);
        let mut gw = vec![0f32; 300 * 21];
        product(view(&xv, 7, 300).transpose(), view(&ones, 7, 21), &mut gw, true);

        let on = run(true);
        assert_eq!((&on.0, &on.1, &on.2), (&y, &gx, &gw));
        let off = run(false);
        for (a, b) in [(&on.0, &off.0), (&on.1, &off.1), (&on.2, &off.2)] {
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}
