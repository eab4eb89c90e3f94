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
//! A B used for many products (a recurrent weight, once per frame) can be packed once
//! into a `gemm_packed::PackedB` and multiplied with `gemm_packed::sgemm_packed`: the
//! same driver with the packing of B skipped, so the result is bit-identical to
//! [`sgemm`]'s.
//!
//! `f64` products stay on dfdx's matmul.
//!
//! Files: this one holds the views, the entry points and the cutting into jobs;
//! `gemm/job.rs` the loops of one job, `gemm/pack.rs` the packing, `gemm/tests.rs` the
//! tests.
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

mod job;
mod pack;
#[cfg(test)]
pub(super) mod tests;

use std::ops::Range;

use rayon::prelude::*;

use super::gemm_tile::{CBase, Fetch, LINE, MR, NR};
pub use super::gemm_tile::{TileError, TileKind, TILE_VARIABLE};
use job::{run_job, Job};
use pack::pack_b;
pub(super) use pack::pack_b_into;

/// Inner-dimension slice: one `MR x KC` panel of A and one `KC x NR` panel of B (6 KB +
/// 32 KB) stay in the L1 cache while a tile runs (an AVX2 half tile reads half the panel).
pub const KC: usize = 256;
/// Row block: the packed `MC x KC` block of A (96 KB) stays in the L2 cache. A whole
/// number of `MR`-row panels, so a job's rows make `rows.div_ceil(MR)` panels (the
/// count the tiles' fetches are shared over).
pub const MC: usize = 96;
const _: () = assert!(MC.is_multiple_of(MR));
/// Column block: the packed `KC x NC` block of B (2 MB) stays in the L3 cache.
pub const NC: usize = 2048;

/// Column block of a transposed B (columns contiguous: the hidden layer's `dX = dY W^T`,
/// W read across its rows): a `KC x NC_TRANSPOSED` block (512 KB) stays in the L2 cache
/// from the tiles that fetch it to the packing that transposes it, where a 2 MB block was
/// read back from L3 (that product 6-9 ms faster of 140 in a probe; a row-major B, whose
/// packing streams its rows, lost as much with the smaller block).
const NC_TRANSPOSED: usize = 512;
const _: () = assert!(NC_TRANSPOSED.is_multiple_of(NR) && NC.is_multiple_of(NR));

/// A matrix view of `f32` values that are not changed: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The output matrix: rows of `cols` contiguous values, row `i` starting at
/// `data[i * row_stride]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

/// Why a product was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    /// The view reaches past its buffer.
    #[error(
        "a {rows} x {cols} matrix view with strides ({row_stride}, {col_stride}) needs \
         {needed} elements, its buffer has {len}"
    )]
    OutOfBounds { rows: usize, cols: usize, row_stride: usize, col_stride: usize, needed: usize, len: usize },
    /// The operands' shapes do not chain.
    #[error(
        "cannot multiply a {a_rows} x {a_cols} A by a {b_rows} x {b_cols} B into a {c_rows} x {c_cols} C"
    )]
    Shapes { a_rows: usize, a_cols: usize, b_rows: usize, b_cols: usize, c_rows: usize, c_cols: usize },
    /// The output's rows overlap (`row_stride < cols`).
    #[error("the output's rows overlap: row stride {row_stride} below its {cols} columns")]
    OverlappingRows { cols: usize, row_stride: usize },
}

fn needed(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

impl<'a> MatRef<'a> {
    /// A strided view; refused when it reaches past `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, GemmError> {
        let needed = needed(rows, cols, row_stride, col_stride);
        if needed > data.len() {
            return Err(GemmError::OutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride,
                needed,
                len: data.len(),
            });
        }
        Ok(MatRef { data, rows, cols, row_stride, col_stride })
    }

    /// A row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn transpose(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows and columns.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

impl<'a> MatMut<'a> {
    /// An output view with rows `row_stride` apart; refused when it reaches past `data`
    /// or its rows overlap.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Result<Self, GemmError> {
        let needed = needed(rows, cols, row_stride, 1);
        if needed > data.len() {
            return Err(GemmError::OutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride: 1,
                needed,
                len: data.len(),
            });
        }
        if rows > 1 && row_stride < cols {
            return Err(GemmError::OverlappingRows { cols, row_stride });
        }
        Ok(MatMut { data, rows, cols, row_stride })
    }

    /// A row-major `rows x cols` output.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols)
    }
}

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

/// Where a product's B panels come from: packed by each job as it goes ([`sgemm`]), or
/// read from a `gemm_packed::PackedB` made beforehand (`gemm_packed::sgemm_packed`).
#[derive(Clone, Copy)]
pub(super) enum PanelsB<'a> {
    Strided(MatRef<'a>),
    Packed(&'a dyn PackedPanels),
}

/// A B packed beforehand, as the driver reads it (`gemm_packed::PackedB`; a trait so that
/// this module, which that one builds on, does not name it).
pub(super) trait PackedPanels: Sync {
    /// Rows and columns of B.
    fn shape(&self) -> (usize, usize);
    /// The `NR`-column panels of `B[pc..pc+kc, jc..jc+nc]` in [`pack_b`]'s layout.
    fn block(&self, pc: usize, kc: usize, jc: usize, nc: usize) -> &[f32];
}

impl PanelsB<'_> {
    /// Columns per block of B ([`NC`], or [`NC_TRANSPOSED`] for a transposed B packed as
    /// it goes). The blocks only order the work: each value of C sums the same products
    /// in the same order whatever their width.
    fn block_cols(&self) -> usize {
        match self {
            PanelsB::Strided(b) if b.row_stride == 1 && b.col_stride != 1 => NC_TRANSPOSED,
            _ => NC,
        }
    }

    fn shape(&self) -> (usize, usize) {
        match self {
            PanelsB::Strided(b) => b.shape(),
            PanelsB::Packed(b) => b.shape(),
        }
    }

    /// The `NR`-column panels of `B[pc..pc+kc, jc..jc+nc]` in [`pack_b`]'s layout: packed
    /// into `buf` now, or the same values read in place from the `gemm_packed::PackedB`.
    fn panels<'s>(&'s self, pc: usize, kc: usize, jc: usize, nc: usize, buf: &'s mut Vec<f32>) -> &'s [f32] {
        match self {
            PanelsB::Strided(b) => {
                pack_b(*b, pc, kc, jc, nc, buf);
                buf
            }
            PanelsB::Packed(b) => b.block(pc, kc, jc, nc),
        }
    }

    /// Parts `parts` of `of` equal parts of the cache lines of `B[pc..pc+kc, jc..jc+nc]`
    /// (the block a job packs next, or its panels packed beforehand), for one tile (one
    /// part) or a pair of tiles (two) to fetch.
    pub(super) fn lines(
        &self,
        (pc, kc, jc, nc): (usize, usize, usize, usize),
        parts: Range<usize>,
        of: usize,
    ) -> Fetch<'_> {
        let b = match self {
            PanelsB::Strided(b) => b,
            PanelsB::Packed(b) => {
                // One contiguous run of panels.
                let block = b.block(pc, kc, jc, nc);
                let total = block.len().div_ceil(LINE);
                return Fetch::new(block, 0, 0, total, parts.start * total / of..parts.end * total / of);
            }
        };
        // Lines run along B's contiguous direction: rows of a row-major B, columns of a
        // transposed one.
        let (outer, inner, stride, base) = if b.col_stride == 1 {
            (kc, nc, b.row_stride, pc * b.row_stride + jc)
        } else if b.row_stride == 1 {
            (nc, kc, b.col_stride, jc * b.col_stride + pc)
        } else {
            return Fetch::NONE;
        };
        let per = inner.div_ceil(LINE);
        let total = outer * per;
        Fetch::new(b.data, base, stride, per, parts.start * total / of..parts.end * total / of)
    }
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

/// The output's rectangles, one job each: cut along the longer side into enough pieces
/// for every thread (more for very long sides, which balances a loaded machine), each a
/// multiple of the tile.
pub(super) fn output_jobs(m: usize, n: usize, k: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let work = m as f64 * n as f64 * k as f64;
    if threads == 1 || work < 64.0 * 64.0 * 64.0 {
        return vec![(0..m, 0..n)];
    }
    let (len, unit) = if m > n { (m, MC) } else { (n, NR) };
    let blocks = len.div_ceil(unit);
    // At least 512 rows or columns a piece: each job packs the whole other operand.
    let pieces = (len / 512).clamp(threads, 4 * threads).min(blocks);
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
