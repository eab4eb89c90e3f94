//! loupe's own single-precision matrix product, `C = A B` or `C += A B`, sized for the
//! model's shapes (issue 22): the hidden layer's `80 x 278528 x 1024` (few rows, a very
//! long inner dimension), its two backward products, and the recurrences' per-frame
//! `80 x 1024 x 4096`.
//!
//! The structure is the classic one of BLIS / GotoBLAS: the inner dimension is cut into
//! slices of [`KC`], the columns into blocks of [`NC`] and the rows into blocks of [`MC`];
//! each `KC x NC` block of B and `MC x KC` block of A is packed into a contiguous buffer
//! of `NR`-column (resp. `MR`-row) panels, and a register tile
//! (`gemm_tile`: AVX-512, or AVX2 + FMA, when the CPU has them) multiplies one panel of each.
//! The AVX-512 tile takes two panels of A at a time where a slice is deep enough
//! (`gemm_tile::tile_pair`, a 12 x 32 tile sharing the loads of B).
//! A and B are read through strides, so a transposed operand costs no copy beyond the
//! packing every operand gets anyway.
//!
//! Parallelism (rayon, the current pool): the output is cut into as many rectangles as
//! it takes to keep every thread busy, each packing its own panels. When the output is too
//! small for that and the inner dimension long (the hidden layer's forward: an `80 x 1024`
//! output over 278,528 inputs), the inner dimension is split instead (**split-K**): each
//! thread multiplies its slice of it into its own partial `C`, and the partials are
//! summed at the end. A batch of small products ([`sgemm_batch`], NetVLAD's per-video
//! products) runs side by side instead, each product on one thread.
//!
//! While a job multiplies one block of B, its tiles fetch the next block's cache lines
//! (`gemm_tile::Fetch`), a few each between their multiply-adds, so that packing that
//! block reads the caches: the hidden layer's forward product (B 1.1 GB, each value used
//! by only 80 rows of A) spent a fifth of its time waiting on memory in the packing. A B
//! packed beforehand has its next block of panels fetched the same way (the recurrences'
//! per-frame products: forward 2-11% faster).
//!
//! A row-major B too large for the caches (at least `CARRY_FROM` values: the hidden layer's
//! W in its forward product) is packed a block ahead by the tiles themselves
//! (`gemm_tile::Carry`): each copies a share of the next block's rows between its
//! multiply-adds, so that packing overlaps multiplying (that product 8-16% faster).
//!
//! When A has at most [`MC`] rows and B is transposed (the hidden layer's `dX = dY W^T` at
//! batch 80), B is packed one `NR`-column panel at a time, just before the tiles that use
//! it, and the tiles fetch the next panel (`run_panels`): the product 7% faster.
//!
//! When B is small (at most 1 MB) and a job's C large (at least 2 MB: NetVLAD's assignment
//! product), the job packs all of B first and runs each block of rows through every slice
//! of the inner dimension (`run_rows`), its block of C staying in L2 between slices
//! instead of the whole C going through memory once per slice.
//!
//! A B used for many products (a recurrent weight, once per frame) can be packed once
//! into a `gemm_packed::PackedB` and multiplied with `gemm_packed::sgemm_packed`: the
//! same driver with the packing of B skipped, so the result is bit-identical to
//! [`sgemm`]'s.
//!
//! `f64` products stay on dfdx's matmul.
//!
//! Files, each using only those before it: `gemm/view.rs` the matrix views,
//! `gemm/blocking.rs` the block sizes, `gemm/pack.rs` the packing, `gemm/panels.rs` where
//! a job's panels of B come from, `gemm/job.rs` the loops of one job; this one the entry
//! points and the cutting into jobs.
//!
//! # Example
//! ```
//! use loupe_core::kernels::gemm::{sgemm, MatMut, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3, row-major
//! let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 x 2
//! let mut c = [0.0f32; 4];
//! sgemm(
//!     MatRef::row_major(&a, 2, 3)?,
//!     MatRef::row_major(&b, 3, 2)?,
//!     MatMut::row_major(&mut c, 2, 2)?,
//!     false,
//! )?;
//! assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
//! // A^T (3 x 2) times the 2 x 2 C, read through strides, no copy:
//! let mut d = [0.0f32; 6];
//! sgemm(
//!     MatRef::row_major(&a, 2, 3)?.transpose(),
//!     MatRef::row_major(&c, 2, 2)?,
//!     MatMut::row_major(&mut d, 3, 2)?,
//!     false,
//! )?;
//! assert_eq!(d, [44.0, 49.0, 58.0, 65.0, 72.0, 81.0]);
//! # Ok::<(), loupe_core::kernels::gemm::GemmError>(())
//! ```

mod blocking;
mod job;
mod pack;
mod panels;
#[cfg(test)]
pub(super) mod tests;
mod view;

use std::ops::Range;

use rayon::prelude::*;

use super::gemm_tile::{CBase, NR};
pub use super::gemm_tile::{TileError, TileKind, TILE_VARIABLE};
pub use blocking::{KC, MC, NC};
use job::{run_job, Job};
pub(super) use pack::pack_b_into;
pub(super) use panels::{PackedPanels, PanelsB};
pub use view::{GemmError, MatMut, MatRef};

/// `C = A B` (or `C += A B` with `accumulate`) on the fastest register tile of this CPU,
/// on the threads of the current rayon pool.
///
/// # Shapes
/// `A: (m, k)`, `B: (k, n)`, `C: (m, n)`.
pub fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) -> Result<(), GemmError> {
    sgemm_on(TileKind::detect(), a, b, c, accumulate)
}

/// A batch of independent products `C_v (+)= A_v B_v`, `v < count`, where `operands(v)`
/// gives `(A_v, B_v)` and `C_v` is the `v`-th `c.len() / count` values of `c`, row-major
/// (NetVLAD's per-video products: `80 x (300 x 1024 x 256)` at paper size).
///
/// With at least as many products as threads they run side by side, each on one thread
/// as a single job; cutting each across the threads instead packed its B once per thread
/// and, for 300 rows in blocks of 96, left shares of 192 and 108 rows (`X_v dV_v` ran at
/// 36% of the peak). Fewer products run one after another, each on every thread. Either
/// way each product's values are [`sgemm`]'s (unless [`sgemm`] would split its inner
/// dimension: a `k` of at least `16 (m + n)` and `8 KC` per thread).
pub fn sgemm_batch<'a>(
    c: &mut [f32],
    count: usize,
    operands: impl Fn(usize) -> (MatRef<'a>, MatRef<'a>) + Sync,
    accumulate: bool,
) -> Result<(), GemmError> {
    if count == 0 {
        return Ok(());
    }
    let len = c.len() / count;
    let one = |v: usize, c_v: &mut [f32], alone: bool| {
        let (a, b) = operands(v);
        let c_v = MatMut::new(c_v, a.rows, b.cols, b.cols)?;
        if alone {
            sgemm_alone(a, b, c_v, accumulate)
        } else {
            sgemm(a, b, c_v, accumulate)
        }
    };
    if len == 0 {
        // Empty outputs (or too short a buffer, which the first non-empty product refuses).
        (0..count).try_for_each(|v| one(v, &mut [], false))
    } else if count >= rayon::current_num_threads() {
        c.par_chunks_mut(len).take(count).enumerate().try_for_each(|(v, c_v)| one(v, c_v, true))
    } else {
        c.chunks_mut(len).take(count).enumerate().try_for_each(|(v, c_v)| one(v, c_v, false))
    }
}

/// [`sgemm`] on the calling thread alone. The result is bit-identical to [`sgemm`]'s unless
/// [`sgemm`] splits the inner dimension (a `k` of at least `16 (m + n)` and `8 KC` per
/// thread).
fn sgemm_alone(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) -> Result<(), GemmError> {
    drive(TileKind::detect(), a, PanelsB::Strided(b), c, accumulate, 1)
}

/// [`sgemm`] on a given register tile (the tests run both).
pub(crate) fn sgemm_on(
    kind: TileKind,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: MatMut<'_>,
    accumulate: bool,
) -> Result<(), GemmError> {
    drive(kind, a, PanelsB::Strided(b), c, accumulate, rayon::current_num_threads())
}

/// The driver of [`sgemm`] and `gemm_packed::sgemm_packed`: shape checks, then the output
/// cut into jobs or the inner dimension split for `threads` threads of the current pool
/// (the same cuts whatever B's source; one thread: one job, on the calling thread).
pub(super) fn drive(
    kind: TileKind,
    a: MatRef<'_>,
    b: PanelsB<'_>,
    c: MatMut<'_>,
    accumulate: bool,
    threads: usize,
) -> Result<(), GemmError> {
    let (b_rows, b_cols) = b.shape();
    let (m, k, n) = (a.rows, a.cols, b_cols);
    if b_rows != k || c.rows != m || c.cols != n {
        return Err(GemmError::Shapes {
            a_rows: a.rows,
            a_cols: a.cols,
            b_rows,
            b_cols,
            c_rows: c.rows,
            c_cols: c.cols,
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for row in c.data.chunks_mut(c.row_stride.max(1)).take(m) {
                row[..n].fill(0.0);
            }
        }
        return Ok(());
    }
    let threads = threads.max(1);
    let slices = k_slices(m, n, k, threads);
    if slices > 1 {
        return split_k(kind, a, b, c, accumulate, slices);
    }
    let jobs = output_jobs(m, n, k, threads);
    let base = CBase::new(c.data, c.row_stride);
    let run = |(rows, cols): &(Range<usize>, Range<usize>)| {
        let job = Job { kind, a, rows: rows.clone(), cols: cols.clone(), ks: 0..k, overwrite: !accumulate };
        run_job(job, b, &base)
    };
    if jobs.len() == 1 {
        run(&jobs[0]);
    } else {
        jobs.par_iter().for_each(run);
    }
    Ok(())
}

/// How many slices of the inner dimension to split into: one per thread when the inner
/// dimension dominates (`k >= 16 (m + n)`, each slice many `KC` deep). Cutting the output
/// instead would have every thread pack all of A (the hidden layer's forward: 89 MB each),
/// where split-K packs each value of A and B once.
pub(super) fn k_slices(m: usize, n: usize, k: usize, threads: usize) -> usize {
    if threads == 1 || k < 16 * (m + n) || k < 8 * KC * threads {
        1
    } else {
        threads
    }
}

/// Values of the operand every job packs whole (A when the columns are cut, B when the
/// rows are) from which the output is cut into one job per thread and no more: 4 MB, more
/// than an L2 cache holds, so each extra job packs it again from memory. At 2048^3 (16 MB
/// of A packed by every job) four jobs on two threads ran at 248-269 GFLOP/s, two at
/// 285-287 (Intel Xeon, probe, min of 20, two rounds).
const REPACK_FROM: usize = 1 << 20;

/// The output's rectangles, one job each: cut along the longer side into enough pieces
/// for every thread (up to four per thread for very long sides, which balances a loaded
/// machine, unless each piece would pack an operand of at least [`REPACK_FROM`] values),
/// each a multiple of the tile.
pub(super) fn output_jobs(m: usize, n: usize, k: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let work = m as f64 * n as f64 * k as f64;
    if threads == 1 || work < 64.0 * 64.0 * 64.0 {
        return vec![(0..m, 0..n)];
    }
    let (len, unit, packed) = if m > n { (m, MC, k * n) } else { (n, NR, m * k) };
    let blocks = len.div_ceil(unit);
    // At least 512 rows or columns a piece: each job packs the whole other operand.
    let most = if packed >= REPACK_FROM { threads } else { 4 * threads };
    let pieces = (len / 512).clamp(threads, most).min(blocks);
    let cuts: Vec<Range<usize>> = (0..pieces)
        .map(|p| (p * blocks / pieces * unit).min(len)..((p + 1) * blocks / pieces * unit).min(len))
        .collect();
    cuts.into_iter().filter(|r| !r.is_empty()).map(|r| if m > n { (r, 0..n) } else { (0..m, r) }).collect()
}

/// Split-K: slice `s` of the inner dimension goes into C itself (`s = 0`) or into a
/// partial output of its own, which is then added to C.
fn split_k(
    kind: TileKind,
    a: MatRef<'_>,
    b: PanelsB<'_>,
    c: MatMut<'_>,
    accumulate: bool,
    slices: usize,
) -> Result<(), GemmError> {
    let (m, k, n) = (a.rows, a.cols, c.cols);
    let blocks = k.div_ceil(KC);
    let bounds: Vec<Range<usize>> = (0..slices)
        .map(|s| (s * blocks / slices * KC).min(k)..((s + 1) * blocks / slices * KC).min(k))
        .collect();
    let mut partials: Vec<Vec<f32>> = (1..slices).map(|_| vec![0.0; m * n]).collect();
    {
        let base = CBase::new(c.data, c.row_stride);
        rayon::join(
            || {
                let job =
                    Job { kind, a, rows: 0..m, cols: 0..n, ks: bounds[0].clone(), overwrite: !accumulate };
                run_job(job, b, &base)
            },
            || {
                partials.par_iter_mut().zip(&bounds[1..]).for_each(|(partial, ks)| {
                    let own = CBase::new(partial, n);
                    run_job(Job { kind, a, rows: 0..m, cols: 0..n, ks: ks.clone(), overwrite: true }, b, &own)
                })
            },
        );
    }
    c.data.par_chunks_mut(c.row_stride).take(m).enumerate().for_each(|(i, row)| {
        for partial in &partials {
            for (o, &v) in row[..n].iter_mut().zip(&partial[i * n..(i + 1) * n]) {
                *o += v;
            }
        }
    });
    Ok(())
}
