//! The fused kernels themselves: plain loops over row-major slices, parallel over rows
//! with rayon. Each forward has a backward that accumulates (`+=`) into the gradient
//! buffers, as dfdx's own ops do.

use rayon::prelude::*;

use super::activation::{activate, Activation};

/// The floating-point types the kernels run on (`f32`, `f64`).
pub(crate) trait Real:
    num_traits::Float + num_traits::FromPrimitive + std::iter::Sum + dfdx::dtypes::Unit
{
    /// The values as `f32`s when that is what they are (their products can then run on
    /// [`super::gemm::sgemm`]), `None` for `f64`.
    fn as_f32(values: &[Self]) -> Option<&[f32]>;
    /// [`Real::as_f32`] for values to write.
    fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]>;
}
impl Real for f32 {
    fn as_f32(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }
    fn as_f32_mut(values: &mut [f32]) -> Option<&mut [f32]> {
        Some(values)
    }
}
impl Real for f64 {
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
    }
}

fn real<F: Real>(v: f64) -> F {
    F::from_f64(v).expect("constant fits the float type")
}

/// Rows per rayon task: enough work per task (>= ~32k elements) to amortise scheduling.
pub(crate) fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_work = (32 * 1024 / row_len.max(1)).max(1);
    let by_threads = rows.div_ceil(threads * 4).max(1);
    by_work.max(by_threads.min(by_work * 64)).min(rows.max(1))
}

/// `sum a[i] b[i]` over 16 independent partial sums. A single running sum is a chain of
/// dependent adds (4 cycles each) that the compiler may not reorder for floats; 16 lanes
/// vectorise and run at memory speed instead.
pub(crate) fn dot_product<F: Real>(a: &[F], b: &[F]) -> F {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [F::zero(); LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] = acc[i] + ca[i] * cb[i];
        }
    }
    let tail = n - n % LANES;
    let rest = a[tail..].iter().zip(&b[tail..]).fold(F::zero(), |s, (&x, &y)| s + x * y);
    acc.iter().fold(rest, |s, &v| s + v)
}

fn add_into<F: Real>(acc: &mut [F], v: &[F]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a = *a + *b;
    }
}

/// Per-channel sums of `f(row, channel value)` over the rows of `x` (`rows x c`).
fn column_sums<F: Real>(x: &[F], c: usize, f: impl Fn(usize, &[F], &mut [F]) + Sync) -> Vec<F> {
    let rows = x.len() / c;
    let chunk = rows_per_task(rows, c);
    x.par_chunks(chunk * c)
        .enumerate()
        .map(|(i, block)| {
            let mut acc = vec![F::zero(); c];
            for (r, row) in block.chunks_exact(c).enumerate() {
                f(i * chunk + r, row, &mut acc);
            }
            acc
        })
        .reduce(
            || vec![F::zero(); c],
            |mut a, b| {
                add_into(&mut a, &b);
                a
            },
        )
}

/// Statistics a batch norm forward keeps for its backward.
#[derive(Debug, Clone)]
pub(crate) struct BatchNormStats<F> {
    pub mean: Vec<F>,
    /// Biased variance.
    pub var: Vec<F>,
    pub inv_std: Vec<F>,
}

/// Training-mode batch norm over the rows of `x` (`rows x c`, channel last), optionally
/// followed by a softmax over each row's `c` values: `y = softmax(gamma (x - mean) /
/// sqrt(var + eps) + beta)`. Writes `y`, returns the batch statistics.
pub(crate) fn batch_norm_forward<F: Real>(
    x: &[F],
    c: usize,
    gamma: &[F],
    beta: &[F],
    eps: f64,
    softmax: bool,
    y: &mut [F],
) -> BatchNormStats<F> {
    let rows = x.len() / c;
    let n = F::from_usize(rows).expect("row count fits the float type");
    let mean: Vec<F> =
        column_sums(x, c, |_, row, acc| add_into(acc, row)).into_iter().map(|s| s / n).collect();
    let var: Vec<F> = column_sums(x, c, |_, row, acc| {
        for ((a, &v), &m) in acc.iter_mut().zip(row).zip(&mean) {
            *a = *a + (v - m) * (v - m);
        }
    })
    .into_iter()
    .map(|s| s / n)
    .collect();
    let (inv_std, scale, offset) = batch_norm_affine(&mean, &var, gamma, beta, eps);
    normalize_rows(x, c, &scale, &offset, softmax, y);
    BatchNormStats { mean, var, inv_std }
}

/// A training batch norm from its batch statistics as one multiply-add per value,
/// `y = x * scale + offset`: returns `inv_std = 1 / sqrt(var + eps)`, `scale = gamma
/// inv_std` and `offset = beta - mean * scale`, per channel.
pub(crate) fn batch_norm_affine<F: Real>(
    mean: &[F],
    var: &[F],
    gamma: &[F],
    beta: &[F],
    eps: f64,
) -> (Vec<F>, Vec<F>, Vec<F>) {
    let inv_std: Vec<F> = var.iter().map(|&v| F::one() / (v + real(eps)).sqrt()).collect();
    let scale: Vec<F> = gamma.iter().zip(&inv_std).map(|(&g, &s)| g * s).collect();
    let offset: Vec<F> = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
    (inv_std, scale, offset)
}

/// `y = x * scale + offset` per channel, then optionally a softmax per row.
pub(crate) fn normalize_rows<F: Real>(
    x: &[F],
    c: usize,
    scale: &[F],
    offset: &[F],
    softmax: bool,
    y: &mut [F],
) {
    let chunk = rows_per_task(x.len() / c, c) * c;
    y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(yb, xb)| {
        for (yr, xr) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
            for (((o, &v), &s), &b) in yr.iter_mut().zip(xr).zip(scale).zip(offset) {
                *o = v * s + b;
            }
            if softmax {
                let max = yr.iter().fold(F::neg_infinity(), |m, &v| m.max(v));
                yr.iter_mut().for_each(|o| *o = *o - max);
                match F::as_f32_mut(yr) {
                    Some(v) => activate(Activation::Exp, v),
                    None => yr.iter_mut().for_each(|o| *o = o.exp()),
                }
                let sum = yr.iter().fold(F::zero(), |s, &v| s + v);
                let inv = F::one() / sum;
                for o in yr.iter_mut() {
                    *o = *o * inv;
                }
            }
        }
    });
}

/// Backward of [`batch_norm_forward`]: `gy` is the output's gradient (overwritten with the
/// gradient before the softmax), `y` the output (same length as `x`; read only with
/// `softmax`). Accumulates into `gx`, `ggamma`, `gbeta`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward<F: Real>(
    x: &[F],
    y: &[F],
    gy: &mut [F],
    c: usize,
    gamma: &[F],
    stats: &BatchNormStats<F>,
    softmax: bool,
    gx: &mut [F],
    ggamma: &mut [F],
    gbeta: &mut [F],
) {
    let rows = x.len() / c;
    let n = F::from_usize(rows).expect("row count fits the float type");
    let chunk = rows_per_task(rows, c) * c;
    let (mean, inv_std) = (&stats.mean[..c], &stats.inv_std[..c]);
    // Gradient w.r.t. the batch norm's output z (before the softmax), written over `gy`,
    // and the two per-channel sums the batch norm backward needs: sum dz and sum dz xhat.
    let (sum_gz, sum_gz_xhat) = gy
        .par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .zip(x.par_chunks(chunk))
        .map(|((gzb, yb), xb)| {
            let mut s1 = vec![F::zero(); c];
            let mut s2 = vec![F::zero(); c];
            for ((gzr, yr), xr) in gzb.chunks_exact_mut(c).zip(yb.chunks_exact(c)).zip(xb.chunks_exact(c)) {
                if softmax {
                    let dot = dot_product(yr, gzr);
                    for (o, &a) in gzr.iter_mut().zip(yr) {
                        *o = a * (*o - dot);
                    }
                }
                for ((((s1, s2), &g), &v), (&m, &is)) in
                    s1.iter_mut().zip(s2.iter_mut()).zip(gzr.iter()).zip(xr).zip(mean.iter().zip(inv_std))
                {
                    *s1 = *s1 + g;
                    *s2 = *s2 + g * ((v - m) * is);
                }
            }
            (s1, s2)
        })
        .reduce(
            || (vec![F::zero(); c], vec![F::zero(); c]),
            |(mut a1, mut a2), (b1, b2)| {
                add_into(&mut a1, &b1);
                add_into(&mut a2, &b2);
                (a1, a2)
            },
        );
    add_into(ggamma, &sum_gz_xhat);
    add_into(gbeta, &sum_gz);
    // gx += coef (n gz - sum gz - xhat sum(gz xhat)) with coef = gamma inv_std / n, as
    // gx += a gz + b x + d per channel.
    let mut a = vec![F::zero(); c];
    let mut b = vec![F::zero(); c];
    let mut d = vec![F::zero(); c];
    for k in 0..c {
        let coef = gamma[k] * inv_std[k] / n;
        a[k] = coef * n;
        b[k] = -coef * sum_gz_xhat[k] * inv_std[k];
        d[k] = -coef * sum_gz[k] + coef * sum_gz_xhat[k] * inv_std[k] * mean[k];
    }
    let gz: &[F] = gy;
    gx.par_chunks_mut(chunk).zip(gz.par_chunks(chunk)).zip(x.par_chunks(chunk)).for_each(
        |((gxb, gzb), xb)| {
            for ((gxr, gzr), xr) in gxb.chunks_exact_mut(c).zip(gzb.chunks_exact(c)).zip(xb.chunks_exact(c)) {
                for ((((o, &g), &v), &a), (&b, &d)) in
                    gxr.iter_mut().zip(gzr).zip(xr).zip(&a).zip(b.iter().zip(&d))
                {
                    *o = *o + a * g + b * v + d;
                }
            }
        },
    );
}

/// `y[r,c] = x[r,c] scale[c] + shift[c]` over the rows of `x` (`rows x c`).
pub(crate) fn affine_rows_forward<F: Real>(x: &[F], c: usize, scale: &[F], shift: &[F], y: &mut [F]) {
    let chunk = rows_per_task(x.len() / c, c) * c;
    y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(yb, xb)| {
        for (yr, xr) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
            for (((o, &v), &s), &b) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
                *o = v * s + b;
            }
        }
    });
}

/// Backward of [`affine_rows_forward`] for its parameters only (`x` is data):
/// `gscale[c] += sum_r gy[r,c] x[r,c]`, `gshift[c] += sum_r gy[r,c]`.
pub(crate) fn affine_rows_backward<F: Real>(x: &[F], gy: &[F], c: usize, gscale: &mut [F], gshift: &mut [F]) {
    let rows = x.len() / c;
    let chunk = rows_per_task(rows, c) * c;
    let (s_scale, s_shift) = x
        .par_chunks(chunk)
        .zip(gy.par_chunks(chunk))
        .map(|(xb, gb)| {
            let (mut a, mut b) = (vec![F::zero(); c], vec![F::zero(); c]);
            for (xr, gr) in xb.chunks_exact(c).zip(gb.chunks_exact(c)) {
                for (((a, b), &x), &g) in a.iter_mut().zip(b.iter_mut()).zip(xr).zip(gr) {
                    *a = *a + g * x;
                    *b = *b + g;
                }
            }
            (a, b)
        })
        .reduce(
            || (vec![F::zero(); c], vec![F::zero(); c]),
            |(mut a1, mut b1), (a2, b2)| {
                add_into(&mut a1, &a2);
                add_into(&mut b1, &b2);
                (a1, b1)
            },
        );
    add_into(gscale, &s_scale);
    add_into(gshift, &s_shift);
}

/// `y[b,f,k] = p[b,f,k] scale[f]` for `(B, F, K)` buffers (`f` features of `k` values).
pub(crate) fn scale_features_forward<F: Real>(p: &[F], f: usize, k: usize, scale: &[F], y: &mut [F]) {
    let per = rows_per_task(p.len() / k, k);
    y.par_chunks_mut(per * k).zip(p.par_chunks(per * k)).enumerate().for_each(|(i, (yb, pb))| {
        for (r, (yr, pr)) in yb.chunks_exact_mut(k).zip(pb.chunks_exact(k)).enumerate() {
            let s = scale[(i * per + r) % f];
            for (o, &v) in yr.iter_mut().zip(pr) {
                *o = v * s;
            }
        }
    });
}

/// Backward of [`scale_features_forward`]: writes `gp = gy scale[f]` (overwriting) and
/// accumulates `gscale[f] += sum_{b,k} gy[b,f,k] p[b,f,k]`.
pub(crate) fn scale_features_backward<F: Real>(
    p: &[F],
    gy: &[F],
    f: usize,
    k: usize,
    scale: &[F],
    gp: &mut [F],
    gscale: &mut [F],
) {
    let per = rows_per_task(p.len() / k, k);
    let sums = gp
        .par_chunks_mut(per * k)
        .zip(p.par_chunks(per * k))
        .zip(gy.par_chunks(per * k))
        .enumerate()
        .map(|(i, ((gpb, pb), gyb))| {
            let mut acc = vec![F::zero(); f];
            for (r, ((gpr, pr), gyr)) in
                gpb.chunks_exact_mut(k).zip(pb.chunks_exact(k)).zip(gyb.chunks_exact(k)).enumerate()
            {
                let feature = (i * per + r) % f;
                acc[feature] = acc[feature] + dot_product(gyr, pr);
                let s = scale[feature];
                for (o, &g) in gpr.iter_mut().zip(gyr) {
                    *o = g * s;
                }
            }
            acc
        })
        .reduce(
            || vec![F::zero(); f],
            |mut a, b| {
                add_into(&mut a, &b);
                a
            },
        );
    add_into(gscale, &sums);
}

/// `y[r,c] += bias[c]` over the rows of `y` (`rows x c`).
pub(crate) fn add_row_bias<F: Real>(y: &mut [F], bias: &[F]) {
    let c = bias.len();
    let chunk = rows_per_task(y.len() / c, c) * c;
    y.par_chunks_mut(chunk).for_each(|yb| {
        for yr in yb.chunks_exact_mut(c) {
            for (o, &b) in yr.iter_mut().zip(bias) {
                *o = *o + b;
            }
        }
    });
}

/// L2 normalisation of each row of `x` (`rows x c`) with the squared-norm floor: writes
/// `y`, returns each row's `sqrt(max(sum x^2, floor))`.
pub(crate) fn l2_rows_forward<F: Real>(x: &[F], c: usize, floor: f64, y: &mut [F]) -> Vec<F> {
    let rows = x.len() / c;
    let mut norms = vec![F::zero(); rows];
    let per = rows_per_task(rows, c);
    y.par_chunks_mut(per * c).zip(x.par_chunks(per * c)).zip(norms.par_chunks_mut(per)).for_each(
        |((yb, xb), nb)| {
            for ((yr, xr), n) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)).zip(nb.iter_mut()) {
                let sq = dot_product(xr, xr);
                *n = sq.max(real(floor)).sqrt();
                let inv = F::one() / *n;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = v * inv;
                }
            }
        },
    );
    norms
}

/// `1 / sqrt(max(sum x^2, floor))` of one row, as [`l2_rows_forward`] computes it.
fn inverse_norm<F: Real>(row: &[F], floor: F) -> F {
    F::one() / dot_product(row, row).max(floor).sqrt()
}

/// `y = x * inv * scale + offset` for channels `[start, start + y.len())` of one row.
fn affine_row<F: Real>(row: &[F], inv: F, start: usize, scale: &[F], offset: &[F], y: &mut [F]) {
    for (((o, &v), &s), &b) in y.iter_mut().zip(&row[start..]).zip(scale).zip(offset) {
        *o = v * inv * s + b;
    }
}

/// The evaluation input stage in one pass: each row of `x` (`rows x c`) L2-normalised
/// with the squared-norm floor over all its `c` channels, then channels `[start, start +
/// len)` (`len = scale.len()`) mapped by `v * scale + offset` (a batch norm with its
/// running averages folded in) into `y` (`rows x len`). The same operations in the same
/// order as [`l2_rows_forward`] then [`normalize_rows`], so the same bits, without the
/// two full-width temporaries between them.
pub(crate) fn l2_affine_rows<F: Real>(
    x: &[F],
    c: usize,
    floor: f64,
    start: usize,
    scale: &[F],
    offset: &[F],
    y: &mut [F],
) {
    let len = scale.len();
    assert_eq!(x.len() / c * len, y.len(), "rows x {len} outputs");
    let per = rows_per_task(x.len() / c, c);
    y.par_chunks_mut(per * len).zip(x.par_chunks(per * c)).for_each(|(yb, xb)| {
        for (yr, xr) in yb.chunks_exact_mut(len).zip(xb.chunks_exact(c)) {
            affine_row(xr, inverse_norm(xr, real(floor)), start, scale, offset, yr);
        }
    });
}

/// [`l2_affine_rows`] with each row's inverse norm given (`inv`, one per row of `x`).
pub(crate) fn affine_rows<F: Real>(
    x: &[F],
    c: usize,
    inv: &[F],
    start: usize,
    scale: &[F],
    offset: &[F],
    y: &mut [F],
) {
    let len = scale.len();
    assert_eq!(
        (x.len() / c * len, inv.len()),
        (y.len(), x.len() / c),
        "rows x {len} outputs, a norm per row"
    );
    let per = rows_per_task(inv.len(), c);
    y.par_chunks_mut(per * len).zip(x.par_chunks(per * c)).zip(inv.par_chunks(per)).for_each(
        |((yb, xb), ib)| {
            for ((yr, xr), &i) in yb.chunks_exact_mut(len).zip(xb.chunks_exact(c)).zip(ib) {
                affine_row(xr, i, start, scale, offset, yr);
            }
        },
    );
}

/// The training input stage's statistics without its output: each row's inverse L2 norm
/// (`inv`, with the squared-norm floor) and the batch mean and biased variance of the
/// L2-normalised rows, `x * inv`, per channel. The same operations in the same order as
/// [`l2_rows_forward`] then [`batch_norm_forward`]'s statistics, so the same bits, with
/// the normalised rows never written: the standardised values are formed where they are
/// used ([`affine_rows`]).
pub(crate) fn l2_standardize_stats<F: Real>(x: &[F], c: usize, floor: f64) -> (Vec<F>, Vec<F>, Vec<F>) {
    let rows = x.len() / c;
    let mut inv = vec![F::zero(); rows];
    let per = rows_per_task(rows, c);
    inv.par_chunks_mut(per).zip(x.par_chunks(per * c)).for_each(|(ib, xb)| {
        for (i, xr) in ib.iter_mut().zip(xb.chunks_exact(c)) {
            *i = inverse_norm(xr, real(floor));
        }
    });
    let n = F::from_usize(rows).expect("row count fits the float type");
    let mean: Vec<F> = column_sums(x, c, |r, row, acc| {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = *a + v * inv[r];
        }
    })
    .into_iter()
    .map(|s| s / n)
    .collect();
    let var: Vec<F> = column_sums(x, c, |r, row, acc| {
        for ((a, &v), &m) in acc.iter_mut().zip(row).zip(&mean) {
            let y = v * inv[r];
            *a = *a + (y - m) * (y - m);
        }
    })
    .into_iter()
    .map(|s| s / n)
    .collect();
    (inv, mean, var)
}

/// Backward of [`l2_rows_forward`]: `gx += (gy - y (gy . y) [if above the floor]) / n`.
pub(crate) fn l2_rows_backward<F: Real>(y: &[F], gy: &[F], norms: &[F], c: usize, floor: f64, gx: &mut [F]) {
    let rows = y.len() / c;
    let per = rows_per_task(rows, c);
    let floor_norm: F = real::<F>(floor).sqrt();
    gx.par_chunks_mut(per * c)
        .zip(y.par_chunks(per * c))
        .zip(gy.par_chunks(per * c))
        .zip(norms.par_chunks(per))
        .for_each(|(((gxb, yb), gyb), nb)| {
            for (((gxr, yr), gyr), &n) in
                gxb.chunks_exact_mut(c).zip(yb.chunks_exact(c)).zip(gyb.chunks_exact(c)).zip(nb)
            {
                let dot = if n > floor_norm { dot_product(yr, gyr) } else { F::zero() };
                let inv = F::one() / n;
                for ((o, &a), &g) in gxr.iter_mut().zip(yr).zip(gyr) {
                    *o = *o + (g - a * dot) * inv;
                }
            }
        });
}

/// What the VLAD normalisation forward keeps for its backward.
#[derive(Debug, Clone)]
pub(crate) struct VladStats<F> {
    /// Per item and cluster: `sum_t a[t,k]` (empty without centres).
    pub mass: Vec<F>,
    /// Per item and cluster: the intra norm.
    pub intra: Vec<F>,
    /// Per item: the global norm.
    pub global: Vec<F>,
}

/// NetVLAD's tail for `b` items: `v[d,k] = w[d,k] - mass[k] c[d,k]` (without `centers`:
/// `v = w`), intra-normalisation over `d` for each `k`, global L2 over the whole `f x k`
/// descriptor. `w`, `y` are `b x f x k`; `a` is `b x s x k` (only read with centres).
#[allow(clippy::too_many_arguments)]
pub(crate) fn vlad_forward<F: Real>(
    w: &[F],
    a: Option<&[F]>,
    centers: Option<&[F]>,
    f: usize,
    k: usize,
    floor: f64,
    y: &mut [F],
) -> VladStats<F> {
    let items = w.len() / (f * k);
    let s = a.map(|a| a.len() / (items * k)).unwrap_or(0);
    let floor_f: F = real(floor);
    let results: Vec<(Vec<F>, Vec<F>, F)> = y
        .par_chunks_mut(f * k)
        .zip(w.par_chunks(f * k))
        .enumerate()
        .map(|(b, (yb, wb))| {
            let mut mass = vec![F::zero(); k];
            if let (Some(a), Some(c)) = (a, centers) {
                for row in a[b * s * k..(b + 1) * s * k].chunks_exact(k) {
                    add_into(&mut mass, row);
                }
                for ((yr, wr), cr) in yb.chunks_exact_mut(k).zip(wb.chunks_exact(k)).zip(c.chunks_exact(k)) {
                    for j in 0..k {
                        yr[j] = wr[j] - mass[j] * cr[j];
                    }
                }
            } else {
                yb.copy_from_slice(wb);
            }
            let mut sq = vec![F::zero(); k];
            for yr in yb.chunks_exact(k) {
                for j in 0..k {
                    sq[j] = sq[j] + yr[j] * yr[j];
                }
            }
            let intra: Vec<F> = sq.iter().map(|&q| q.max(floor_f).sqrt()).collect();
            let inv: Vec<F> = intra.iter().map(|&n| F::one() / n).collect();
            // The intra-normalised descriptor's squared norm, without another pass.
            let total: F = sq.iter().zip(&inv).map(|(&q, &i)| q * i * i).sum();
            let global = total.max(floor_f).sqrt();
            let g_inv = F::one() / global;
            let scale: Vec<F> = inv.iter().map(|&i| i * g_inv).collect();
            for yr in yb.chunks_exact_mut(k) {
                for j in 0..k {
                    yr[j] = yr[j] * scale[j];
                }
            }
            (if centers.is_some() { mass } else { Vec::new() }, intra, global)
        })
        .collect();
    let mut stats = VladStats { mass: Vec::new(), intra: Vec::with_capacity(items * k), global: Vec::new() };
    for (m, n, g) in results {
        stats.mass.extend(m);
        stats.intra.extend(n);
        stats.global.push(g);
    }
    stats
}

/// Backward of [`vlad_forward`]. Accumulates into `gw` (`b x f x k`), and with centres
/// into `ga` (`b x s x k`) and `gc` (`f x k`). `gv` (as long as `y`, any values) is
/// scratch, overwritten: the caller lends a buffer from the device's cache, as a fresh
/// allocation of the video stream's 84 MB at paper size page-faulted on every step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vlad_backward<F: Real>(
    y: &[F],
    gy: &[F],
    centers: Option<&[F]>,
    stats: &VladStats<F>,
    f: usize,
    k: usize,
    floor: f64,
    gw: &mut [F],
    ga: Option<&mut [F]>,
    gc: Option<&mut [F]>,
    gv: &mut [F],
) {
    assert_eq!(gv.len(), y.len(), "vlad_backward: scratch as long as the output");
    let items = y.len() / (f * k);
    let floor_norm: F = real::<F>(floor).sqrt();
    // gv: the gradient w.r.t. the residual descriptor v (before both normalisations).
    gv.par_chunks_mut(f * k).zip(y.par_chunks(f * k)).zip(gy.par_chunks(f * k)).enumerate().for_each(
        |(b, ((gvb, yb), gyb))| {
            let global = stats.global[b];
            let intra = &stats.intra[b * k..(b + 1) * k];
            // Global L2: u = y * global; gu = (gy - y (gy . y)) / global.
            let dot = if global > floor_norm { dot_product(yb, gyb) } else { F::zero() };
            let g_inv = F::one() / global;
            // Intra L2 per cluster: gv = (gu - u_k (gu_k . u_k)) / intra_k, u = y * global.
            let mut t = vec![F::zero(); k];
            for ((gvr, yr), gyr) in gvb.chunks_exact_mut(k).zip(yb.chunks_exact(k)).zip(gyb.chunks_exact(k)) {
                for j in 0..k {
                    let gu = (gyr[j] - yr[j] * dot) * g_inv;
                    gvr[j] = gu;
                    t[j] = t[j] + gu * yr[j] * global;
                }
            }
            for j in 0..k {
                if intra[j] <= floor_norm {
                    t[j] = F::zero();
                }
            }
            let inv: Vec<F> = intra.iter().map(|&n| F::one() / n).collect();
            for (gvr, yr) in gvb.chunks_exact_mut(k).zip(yb.chunks_exact(k)) {
                for j in 0..k {
                    gvr[j] = (gvr[j] - yr[j] * global * t[j]) * inv[j];
                }
            }
        },
    );
    gw.par_chunks_mut(f * k).zip(gv.par_chunks(f * k)).for_each(|(o, g)| add_into(o, g));
    let (Some(c), Some(ga), Some(gc)) = (centers, ga, gc) else {
        return;
    };
    let s = ga.len() / (items * k);
    // d mass[b,k] = -sum_d c[d,k] gv[b,d,k], spread over the frames: a[b,t,k] feeds mass.
    ga.par_chunks_mut(s * k).zip(gv.par_chunks(f * k)).for_each(|(gab, gvb)| {
        let mut gmass = vec![F::zero(); k];
        for (gvr, cr) in gvb.chunks_exact(k).zip(c.chunks_exact(k)) {
            for j in 0..k {
                gmass[j] = gmass[j] - cr[j] * gvr[j];
            }
        }
        for row in gab.chunks_exact_mut(k) {
            add_into(row, &gmass);
        }
    });
    // d c[d,k] = -sum_b mass[b,k] gv[b,d,k].
    let per = rows_per_task(f, k * items);
    gc.par_chunks_mut(per * k).enumerate().for_each(|(i, gcb)| {
        for b in 0..items {
            let mass = &stats.mass[b * k..(b + 1) * k];
            let base = b * f * k + i * per * k;
            for (r, gcr) in gcb.chunks_exact_mut(k).enumerate() {
                let gvr = &gv[base + r * k..base + (r + 1) * k];
                for j in 0..k {
                    gcr[j] = gcr[j] - mass[j] * gvr[j];
                }
            }
        }
    });
}

/// Adam step on one variable (TensorFlow's form), with a gradient scale (clipping):
/// `m = b1 m + (1-b1) g s`, `v = b2 v + (1-b2) (g s)^2`, `p -= step m / (sqrt(v) + eps)`.
/// Each gradient element is set to zero once read, so `g` leaves the pass zeroed, ready to
/// accumulate the next backward pass without a separate zeroing pass.
///
/// `moments_zero` says that `m` and `v` are all zero (the first update): they are then
/// written without being read, with the same arithmetic (`b1 * 0 + ...`, so the results
/// are bit-identical). Freshly allocated zero moments are untouched pages; reading them
/// first would fault each page twice (the shared zero page on the read, a copy on the
/// write).
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_update<F: Real>(
    p: &mut [F],
    m: &mut [F],
    v: &mut [F],
    g: &mut [F],
    moments_zero: bool,
    grad_scale: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    step_size: f64,
) {
    let (s, b1, b2, eps, lr) =
        (real::<F>(grad_scale), real::<F>(beta1), real::<F>(beta2), real::<F>(epsilon), real::<F>(step_size));
    let (c1, c2) = (F::one() - b1, F::one() - b2);
    const CHUNK: usize = 64 * 1024;
    p.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(g.par_chunks_mut(CHUNK))
        .for_each(|(((p, m), v), g)| {
            let elements = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
            if moments_zero {
                for (((p, m), v), g) in elements {
                    let g = std::mem::replace(g, F::zero()) * s;
                    let (m_new, v_new) = (b1 * F::zero() + c1 * g, b2 * F::zero() + c2 * g * g);
                    *m = m_new;
                    *v = v_new;
                    *p = *p - lr * (m_new / (v_new.sqrt() + eps));
                }
            } else {
                for (((p, m), v), g) in elements {
                    let g = std::mem::replace(g, F::zero()) * s;
                    *m = b1 * *m + c1 * g;
                    *v = b2 * *v + c2 * g * g;
                    *p = *p - lr * (*m / (v.sqrt() + eps));
                }
            }
        });
}

/// `sum g^2`, in parallel, accumulated in f64.
pub(crate) fn squared_norm<F: Real>(g: &[F]) -> f64 {
    g.par_chunks(64 * 1024).map(|c| dot_product(c, c).to_f64().unwrap_or(f64::NAN)).sum()
}

/// `acc += s * x`, in parallel.
pub(crate) fn scaled_add<F: Real>(acc: &mut [F], s: F, x: &[F]) {
    const CHUNK: usize = 64 * 1024;
    acc.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(a, x)| {
        for (a, &x) in a.iter_mut().zip(x) {
            *a = *a + s * x;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_product_matches_the_plain_sum_for_every_remainder() {
        for n in 0..50 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| 1.5 - (i % 7) as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot_product(&a, &b) - plain).abs() <= 1e-12 * (1.0 + plain.abs()), "n = {n}");
        }
        assert_eq!(dot_product(&[1.0f32, 2.0, 3.0], &[4.0, 5.0]), 14.0, "stops at the shorter slice");
    }

    #[test]
    fn squared_norm_sums_every_chunk() {
        let g: Vec<f32> = (0..200_003).map(|i| ((i % 11) as f32 - 5.0) * 0.01).collect();
        let plain: f64 = g.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((squared_norm(&g) - plain).abs() <= 1e-5 * plain);
    }
}
