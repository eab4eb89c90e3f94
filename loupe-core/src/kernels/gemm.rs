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

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::gemm_tile::{tile, transpose_rows, transpose_square, CBase, Carry, Fetch, LINE, MR, NR};
pub use super::gemm_tile::{TileError, TileKind, TILE_VARIABLE};

/// Inner-dimension slice: one `MR x KC` panel of A and one `KC x NR` panel of B (6 KB +
/// 32 KB) stay in the L1 cache while a tile runs (an AVX2 half tile reads half the panel).
pub const KC: usize = 256;
/// Row block: the packed `MC x KC` block of A (96 KB) stays in the L2 cache. A whole
/// number of `MR`-row panels, so a job's rows make `rows.div_ceil(MR)` panels (the
/// count the tiles' fetches are shared over).
pub const MC: usize = 96;
const _: () = assert!(MC.is_multiple_of(MR));
/// Rows of a row-major B packed together, panel by panel: eight rows read side by side
/// (eight streams through memory) and written as 1 KB runs of each panel, where packing
/// row by row scattered every row over all the panels.
const PACK_ROWS: usize = 8;
/// Column block: the packed `KC x NC` block of B (2 MB) stays in the L3 cache.
pub const NC: usize = 2048;

/// Column block of a transposed B (columns contiguous: the hidden layer's `dX = dY W^T`,
/// W read across its rows): a `KC x NC_TRANSPOSED` block (512 KB) stays in the L2 cache
/// from the tiles that fetch it to the packing that transposes it, where a 2 MB block was
/// read back from L3 (that product 6-9 ms faster of 140 in a probe; a row-major B, whose
/// packing streams its rows, lost as much with the smaller block).
const NC_TRANSPOSED: usize = 512;
/// Values of a row-major B from which each block of it is packed by the tiles of the block
/// before (`gemm_tile::Carry`): 32 MB, more than the caches hold, so that packing a block
/// after its tiles would wait on memory. The hidden layer's forward (B 1.1 GB) took
/// 125-133 -> 110-118 ms (probe, min of 5, three rounds) so; a B that stays in the caches
/// lost as much (`loupe bench --gemm`: the NetVLAD per-video `X dV`, B 1 MB, 31 -> 34 ms;
/// the recurrences' `h W` on sgemm, B 16 MB, 2.3 -> 3.5 ms).
const CARRY_FROM: usize = 8 << 20;

/// Column block of a transposed B packed panel by panel (`run_panels`): the columns of C
/// one packed block of A (at most [`MC`] rows, one slice of the inner dimension) is used
/// for before the next slice. Probe of the hidden layer's `dX` (two threads, min of 5):
/// 512 columns 117-118 ms, 1,024 115-116, 2,048 115-119, 256 122-124.
const NC_PANELS: usize = 1024;
const _: () =
    assert!(NC_TRANSPOSED.is_multiple_of(NR) && NC.is_multiple_of(NR) && NC_PANELS.is_multiple_of(NR));

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

    /// Part `part` of `parts` of the cache lines of `B[pc..pc+kc, jc..jc+nc]` (the block
    /// a job packs next, or its panels packed beforehand), for one tile to fetch.
    pub(super) fn lines(
        &self,
        (pc, kc, jc, nc): (usize, usize, usize, usize),
        part: usize,
        parts: usize,
    ) -> Fetch<'_> {
        let b = match self {
            PanelsB::Strided(b) => b,
            PanelsB::Packed(b) => {
                // One contiguous run of panels.
                let block = b.block(pc, kc, jc, nc);
                let total = block.len().div_ceil(LINE);
                return Fetch::new(block, 0, 0, total, part * total / parts..(part + 1) * total / parts);
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
        Fetch::new(b.data, base, stride, per, part * total / parts..(part + 1) * total / parts)
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

thread_local! {
    /// Each thread's packing buffers (A block, B block), kept between products: the
    /// recurrences call a product per frame, and fresh multi-megabyte buffers would
    /// page-fault every time.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// One job: `C[rows, cols] (+)= A[rows, ks] B[ks, cols]` on the `kind` tile, overwriting C
/// on the first slice of `ks` when `overwrite`.
struct Job<'a> {
    kind: TileKind,
    a: MatRef<'a>,
    rows: Range<usize>,
    cols: Range<usize>,
    ks: Range<usize>,
    overwrite: bool,
}

/// Runs a [`Job`] with B from `b` into `c`, on the calling thread.
fn run_job(job: Job<'_>, b: PanelsB<'_>, c: &CBase<'_>) {
    PACKED.with(|cell| {
        // A job never calls back into rayon, so the thread cannot start another job while
        // it holds its buffers; the fallback only guards against a future change.
        let mut fresh = (Vec::new(), Vec::new(), Vec::new());
        let mut held = cell.try_borrow_mut();
        let (abuf, bbuf, bnext) = match held.as_deref_mut() {
            Ok(bufs) => bufs,
            Err(_) => &mut fresh,
        };
        if let PanelsB::Strided(b) = b {
            if job.rows.len() <= MC && b.row_stride == 1 && b.col_stride != 1 {
                return run_panels(job, b, c, abuf, bbuf);
            }
        }
        let Job { kind, a, rows, cols, ks, overwrite } = job;
        let block = b.block_cols();
        // Whether `bbuf` already holds the block about to run (carried during the last).
        let mut ready = false;
        for jc in cols.clone().step_by(block) {
            let nc = block.min(cols.end - jc);
            for (slice, pc) in ks.clone().step_by(KC).enumerate() {
                let kc = KC.min(ks.end - pc);
                // The block of B this job packs next.
                let next = following((pc, kc, jc, nc), &ks, &cols, block);
                let tiles = nc.div_ceil(NR) * rows.len().div_ceil(MR);
                let mut share = 0;
                let bpanels = if ready { &bbuf[..] } else { b.panels(pc, kc, jc, nc, bbuf) };
                // A large row-major B's next block, in whole panels, is copied into
                // `bnext` by the tiles of this one (`Carry`, which fetches its own runs
                // ahead), so that its packing overlaps their multiply-adds. Otherwise the
                // tiles fetch the next block for the packing that follows them.
                let mut carry = match (b, next) {
                    (PanelsB::Strided(bm), Some((pn, kn, jn, nn)))
                        if bm.col_stride == 1 && nn.is_multiple_of(NR) && bm.rows * bm.cols >= CARRY_FROM =>
                    {
                        bnext.resize(nn * kn, 0.0);
                        Carry::new(
                            bm.data,
                            pn * bm.row_stride + jn,
                            bm.row_stride,
                            kn,
                            nn / NR,
                            &mut bnext[..nn * kn],
                        )
                    }
                    _ => Carry::none(),
                };
                let carrying = carry.pending() > 0;
                let next = if carrying { None } else { next };
                let runs = carry.pending().div_ceil(tiles);
                let first = overwrite && slice == 0;
                for ic in rows.clone().step_by(MC) {
                    let mc = MC.min(rows.end - ic);
                    pack_a(a, ic, mc, pc, kc, abuf);
                    for (bp, jr) in bpanels.chunks_exact(NR * kc).zip((0..nc).step_by(NR)) {
                        for (ap, ir) in abuf.chunks_exact(MR * kc).zip((0..mc).step_by(MR)) {
                            let mut fetch = match next {
                                Some(next) => b.lines(next, share, tiles),
                                None => Fetch::NONE,
                            };
                            share += 1;
                            let t = c.tile(ic + ir, jc + jr, MR.min(mc - ir), NR.min(nc - jr));
                            if ir + MR < mc {
                                c.tile(ic + ir + MR, jc + jr, MR.min(mc - ir - MR), NR.min(nc - jr))
                                    .prefetch(first);
                            } else if jr + NR < nc {
                                c.tile(ic, jc + jr + NR, MR.min(mc), NR.min(nc - jr - NR)).prefetch(first);
                            }
                            carry.allow(runs);
                            tile(kind, kc, ap, bp, t, first, &mut fetch, &mut carry);
                        }
                    }
                }
                carry.finish();
                ready = carrying;
                if carrying {
                    std::mem::swap(bbuf, bnext);
                }
            }
        }
    });
}

/// The block of B that [`run_job`] packs after block `(pc, kc, jc, nc)`: the next slice of
/// the inner dimension, else the first slice of the next column block.
fn following(
    (pc, kc, jc, nc): (usize, usize, usize, usize),
    ks: &Range<usize>,
    cols: &Range<usize>,
    block: usize,
) -> Option<(usize, usize, usize, usize)> {
    if pc + kc < ks.end {
        Some((pc + kc, KC.min(ks.end - pc - kc), jc, nc))
    } else if jc + nc < cols.end {
        Some((ks.start, KC.min(ks.len()), jc + nc, block.min(cols.end - jc - nc)))
    } else {
        None
    }
}

/// [`run_job`] for a job whose rows make one block of A (at most [`MC`]: the hidden
/// layer's `dX = dY W^T` at batch 80) and a transposed B packed as it goes (columns
/// contiguous: each panel is `NR` runs of `kc` values). Each `NR`-column panel of B is
/// packed just before its tiles, the only ones that use it: the panel (32 KB) is
/// transposed into the L1 cache instead of a whole block into L2, and the tiles fetch the
/// next panel's lines instead of the next block's. Every output sums the same products in
/// the same order as the block loop of [`run_job`].
///
/// A row-major B stays on the block loop: a panel of it is `kc` runs of `NR` values, one
/// per row of B (4 KB apart at the hidden layer's 1,024 columns), which the L1 cache holds
/// badly; packed panel by panel the hidden layer's forward product took 25% longer, and
/// in blocks of 256 columns its time did not change.
fn run_panels(job: Job<'_>, b: MatRef<'_>, c: &CBase<'_>, abuf: &mut Vec<f32>, bbuf: &mut Vec<f32>) {
    let Job { kind, a, rows, cols, ks, overwrite } = job;
    let source = PanelsB::Strided(b);
    let (mc, panels_a) = (rows.len(), rows.len().div_ceil(MR));
    for jc in cols.clone().step_by(NC_PANELS) {
        let nc = NC_PANELS.min(cols.end - jc);
        for (slice, pc) in ks.clone().step_by(KC).enumerate() {
            let kc = KC.min(ks.end - pc);
            let first = overwrite && slice == 0;
            pack_a(a, rows.start, mc, pc, kc, abuf);
            for jr in (0..nc).step_by(NR) {
                let w = NR.min(nc - jr);
                pack_b(b, pc, kc, jc + jr, w, bbuf);
                // The panel packed next: the next one of this block and slice, else the
                // first of the next slice, else of the next block.
                let next = if jr + w < nc {
                    Some((pc, kc, jc + jr + w, NR.min(nc - jr - w)))
                } else if pc + kc < ks.end {
                    Some((pc + kc, KC.min(ks.end - pc - kc), jc, NR.min(nc)))
                } else if jc + nc < cols.end {
                    Some((ks.start, KC.min(ks.len()), jc + nc, NR.min(cols.end - jc - nc)))
                } else {
                    None
                };
                for (share, (ap, ir)) in abuf.chunks_exact(MR * kc).zip((0..mc).step_by(MR)).enumerate() {
                    let mut fetch = match next {
                        Some(next) => source.lines(next, share, panels_a),
                        None => Fetch::NONE,
                    };
                    let t = c.tile(rows.start + ir, jc + jr, MR.min(mc - ir), w);
                    if ir + MR < mc {
                        c.tile(rows.start + ir + MR, jc + jr, MR.min(mc - ir - MR), w).prefetch(first);
                    } else if jr + w < nc {
                        c.tile(rows.start, jc + jr + w, MR.min(mc), NR.min(nc - jr - w)).prefetch(first);
                    }
                    tile(kind, kc, ap, &bbuf[..NR * kc], t, first, &mut fetch, &mut Carry::none());
                }
            }
        }
    }
}

/// Packs `A[ic..ic+mc, pc..pc+kc]` as `MR`-row panels: panel `q`, step `p`, row `i` at
/// `q * MR * kc + p * MR + i`; rows past `mc` are zero.
fn pack_a(a: MatRef<'_>, ic: usize, mc: usize, pc: usize, kc: usize, buf: &mut Vec<f32>) {
    let panels = mc.div_ceil(MR);
    // Every value is written below, so the buffer is only resized, never cleared: zeroing
    // it first wrote each block twice (the hidden layer's `dX` packs its 80 x 256 block of
    // `dY` once per block of W's rows). The rows past `mc` are written with zero: their
    // products are never stored, but a stale value there could be a slow denormal.
    buf.resize(panels * MR * kc, 0.0);
    for (q, dst) in buf.chunks_exact_mut(MR * kc).enumerate() {
        let r0 = ic + q * MR;
        let h = MR.min(ic + mc - r0);
        if h < MR {
            for d in dst.chunks_exact_mut(MR) {
                d[h..].fill(0.0);
            }
        }
        if a.row_stride == 1 {
            // Columns contiguous (a transposed row-major matrix): copy runs of `h` (a
            // whole panel's as one fixed-size copy, not a call to `memmove` each).
            for (p, d) in dst.chunks_exact_mut(MR).enumerate() {
                let at = (pc + p) * a.col_stride + r0;
                match <&[f32; MR]>::try_from(&a.data[at..at + h]) {
                    Ok(run) => d.copy_from_slice(run),
                    Err(_) => d[..h].copy_from_slice(&a.data[at..at + h]),
                }
            }
        } else {
            // Rows contiguous (a row-major A): a whole panel eight steps at a time, with
            // SIMD transposes; the rest value by value.
            let mut done = 0;
            if a.col_stride == 1 && h == MR {
                let kind = TileKind::detect();
                let at = r0 * a.row_stride + pc;
                for (p, d) in (0..kc - kc % 8).step_by(8).zip(dst.chunks_exact_mut(8 * MR)) {
                    transpose_rows(kind, &a.data[at + p..], a.row_stride, d);
                }
                done = kc - kc % 8;
            }
            for i in 0..h {
                let at = (r0 + i) * a.row_stride + pc * a.col_stride;
                if a.col_stride == 1 {
                    for (d, &v) in dst.chunks_exact_mut(MR).zip(&a.data[at..at + kc]).skip(done) {
                        d[i] = v;
                    }
                } else {
                    for (p, d) in dst.chunks_exact_mut(MR).enumerate() {
                        d[i] = a.data[at + p * a.col_stride];
                    }
                }
            }
        }
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` as `NR`-column panels: panel `q`, step `p`, column `j`
/// at `q * NR * kc + p * NR + j`; columns past `nc` are zero.
fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, buf: &mut Vec<f32>) {
    // Every value is written by `pack_b_into`, so the buffer is only grown, never cleared.
    buf.resize(nc.div_ceil(NR) * NR * kc, 0.0);
    pack_b_into(b, pc, kc, jc, nc, buf);
}

/// [`pack_b`] into `dst`, exactly `nc.div_ceil(NR) * NR * kc` values, every one written
/// (the padding columns with zero).
///
/// B is read in its own contiguous direction: a row-major B row by row (each row of the
/// block front to back, its `NR`-runs dealt to the panels), a transposed one (columns
/// contiguous) in `NR x NR` squares, each transposed with SIMD shuffles
/// (`gemm_tile::transpose_square`) straight into its panel. Reading a row-major
/// B panel by panel instead walked 256 rows 4 KB apart for each 64 bytes and took a third
/// of the hidden layer's forward product.
pub(super) fn pack_b_into(b: MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
    assert_eq!(dst.len(), nc.div_ceil(NR) * NR * kc, "one block of B panels");
    let panel_len = NR * kc;
    if b.col_stride == 1 {
        for p0 in (0..kc).step_by(PACK_ROWS) {
            let rows = p0..(p0 + PACK_ROWS).min(kc);
            for (q, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
                let j0 = jc + q * NR;
                let w = NR.min(jc + nc - j0);
                for p in rows.clone() {
                    let at = (pc + p) * b.row_stride + j0;
                    let d = &mut panel[p * NR..][..NR];
                    match <&[f32; NR]>::try_from(&b.data[at..at + w]) {
                        Ok(full) => d.copy_from_slice(full),
                        Err(_) => {
                            d[..w].copy_from_slice(&b.data[at..at + w]);
                            d[w..].fill(0.0);
                        }
                    }
                }
            }
        }
    } else if b.row_stride == 1 {
        let kind = TileKind::detect();
        for (q, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
            let c0 = jc + q * NR;
            let w = NR.min(jc + nc - c0);
            for (p0, square) in (0..kc).step_by(NR).zip(panel.chunks_mut(NR * NR)) {
                let h = NR.min(kc - p0);
                let at = c0 * b.col_stride + pc + p0;
                if w == NR && h == NR {
                    transpose_square(kind, &b.data[at..], b.col_stride, square);
                    continue;
                }
                for (p, d) in square.chunks_exact_mut(NR).enumerate() {
                    for (j, v) in d.iter_mut().enumerate() {
                        *v = if j < w { b.data[at + j * b.col_stride + p] } else { 0.0 };
                    }
                }
            }
        }
    } else {
        for (q, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
            let c0 = jc + q * NR;
            let w = NR.min(jc + nc - c0);
            for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
                let at = (pc + p) * b.row_stride + c0 * b.col_stride;
                for (j, v) in d.iter_mut().enumerate() {
                    *v = if j < w { b.data[at + j * b.col_stride] } else { 0.0 };
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix in [-1, 1).
    pub(in crate::kernels) fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn at(m: &MatRef<'_>, i: usize, j: usize) -> f64 {
        m.data[i * m.row_stride + j * m.col_stride] as f64
    }

    /// The product in f64, three nested loops.
    fn naive(a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f64> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(a, i, p) * at(b, p, j)).sum();
            }
        }
        c
    }

    /// Runs one case on `kind`: A and B row-major or transposed, C with a padded row
    /// stride, overwrite and accumulate, against the naive product.
    fn check(kind: TileKind, (m, k, n): (usize, usize, usize), a_t: bool, b_t: bool, seed: u64) {
        let a_data = random(m * k, seed);
        let b_data = random(k * n, seed + 1);
        let a = if a_t {
            MatRef::row_major(&a_data, k, m).unwrap().transpose()
        } else {
            MatRef::row_major(&a_data, m, k).unwrap()
        };
        let b = if b_t {
            MatRef::row_major(&b_data, n, k).unwrap().transpose()
        } else {
            MatRef::row_major(&b_data, k, n).unwrap()
        };
        let want = naive(&a, &b);
        let ldc = n + 3;
        let old = random(m * ldc, seed + 2);
        for accumulate in [false, true] {
            let mut c = old.clone();
            sgemm_on(kind, a, b, MatMut::new(&mut c, m, n, ldc).unwrap(), accumulate).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let base = if accumulate { old[i * ldc + j] as f64 } else { 0.0 };
                    let (got, expect) = (c[i * ldc + j] as f64, base + want[i * n + j]);
                    // f32 sums of k terms of size <= 1: error grows like sqrt(k) eps.
                    let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
                    assert!(
                        (got - expect).abs() <= tol,
                        "{kind:?} {m}x{k}x{n} a_t={a_t} b_t={b_t} acc={accumulate} ({i},{j}): {got} vs {expect}"
                    );
                }
                // The padding between rows is never touched.
                let pad = i * ldc + n..(i + 1) * ldc;
                assert_eq!(c[pad.clone()], old[pad]);
            }
        }
    }

    #[test]
    fn small_and_edge_shapes_match_the_naive_product_on_both_tiles() {
        let shapes = [
            (1, 1, 1),
            (1, 7, 1),
            (6, 1, 16),
            (7, 3, 17),
            (5, 300, 15),
            (13, 257, 33),
            (MC + 7, KC + 1, NR * 3 + 5),
            (2, 19, 100),
        ];
        for kind in TileKind::available() {
            for (s, &shape) in shapes.iter().enumerate() {
                for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                    check(kind, shape, a_t, b_t, 10 * s as u64 + 1);
                }
            }
        }
    }

    #[test]
    fn parallel_and_split_k_paths_match_the_naive_product() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            // Cut along the columns, along the rows (past NC), and split-K.
            assert_eq!(k_slices(9, 20, 8 * KC * 3 + 5, 3), 3);
            assert!(output_jobs(70, 300, 50, 3).len() > 1);
            for kind in TileKind::available() {
                check(kind, (70, 50, 300), false, true, 3);
                check(kind, (2 * MC + 5, 40, NC + 9), false, false, 4);
                // A transposed B over two blocks of its narrower width, the second partial.
                check(kind, (MC + 5, KC + 3, NC_TRANSPOSED + NR + 9), false, true, 7);
                check(kind, (400, 30, 20), true, false, 5);
                check(kind, (9, 8 * KC * 3 + 5, 20), true, true, 6);
            }
        });
    }

    /// A product on one thread gives the bits of the same product cut into jobs across
    /// the pool (the cuts never change the order of any output's sum).
    #[test]
    fn a_product_alone_gives_the_bits_of_the_product_cut_across_threads() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for (s, &((m, k, n), a_t, b_t)) in [
                ((70, 50, 300), false, true),
                ((2 * MC + 5, 40, NC + 9), false, false),
                ((400, 40, 20), true, false),
            ]
            .iter()
            .enumerate()
            {
                assert!(output_jobs(m, n, k, 3).len() > 1, "{m}x{k}x{n} is cut");
                let (a_data, b_data) = (random(m * k, 30 + s as u64), random(k * n, 40 + s as u64));
                let (a, b) =
                    (MatRef::row_major(&a_data, m, k).unwrap(), MatRef::row_major(&b_data, k, n).unwrap());
                let a = if a_t { MatRef::row_major(&a_data, k, m).unwrap().transpose() } else { a };
                let b = if b_t { MatRef::row_major(&b_data, n, k).unwrap().transpose() } else { b };
                let old = random(m * n, 50 + s as u64);
                let (mut cut, mut alone) = (old.clone(), old);
                sgemm(a, b, MatMut::row_major(&mut cut, m, n).unwrap(), true).unwrap();
                sgemm_alone(a, b, MatMut::row_major(&mut alone, m, n).unwrap(), true).unwrap();
                assert_eq!(cut, alone, "{m}x{k}x{n}");
            }
        });
    }

    /// A batch gives each product [`sgemm`]'s bits, side by side (at least as many
    /// products as threads) and one after another (fewer).
    #[test]
    fn a_batch_gives_each_product_the_bits_of_sgemm() {
        let (m, k, n) = (70, 50, 300);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for count in [2, 4] {
                let (a_data, b_data) = (random(count * m * k, 60), random(count * k * n, 61));
                let operands = |v: usize| {
                    let a = MatRef::row_major(&a_data[v * m * k..][..m * k], m, k).unwrap();
                    (a, MatRef::row_major(&b_data[v * k * n..][..k * n], n, k).unwrap().transpose())
                };
                let old = random(count * m * n, 62);
                let mut batch = old.clone();
                sgemm_batch(&mut batch, count, operands, true).unwrap();
                for (v, (got, mut want)) in
                    batch.chunks(m * n).zip(old.chunks(m * n).map(<[f32]>::to_vec)).enumerate()
                {
                    let (a, b) = operands(v);
                    sgemm(a, b, MatMut::row_major(&mut want, m, n).unwrap(), true).unwrap();
                    assert_eq!(got, &want[..], "count {count}, product {v}");
                }
            }
            // Too short an output is refused, not sliced into empty products.
            let (a_data, b_data) = (random(m * k, 63), random(k * n, 64));
            let operands =
                |_| (MatRef::row_major(&a_data, m, k).unwrap(), MatRef::row_major(&b_data, k, n).unwrap());
            let err = sgemm_batch(&mut [0.0; 3], 4, operands, false).unwrap_err();
            assert!(matches!(err, GemmError::OutOfBounds { len: 0, .. }), "{err}");
        });
    }

    #[test]
    fn the_tiles_of_a_block_fetch_every_line_of_the_next_block_once() {
        let (k, n) = (40, 100);
        let data = random(k * n, 7);
        // B[8..28, 16..86], cut into 7 tiles' shares.
        let (block, parts) = ((8, 20, 16, 70), 7);
        for transposed in [false, true] {
            let b = if transposed {
                MatRef::row_major(&data, n, k).unwrap().transpose()
            } else {
                MatRef::row_major(&data, k, n).unwrap()
            };
            let mut got: Vec<usize> =
                (0..parts).flat_map(|p| PanelsB::Strided(b).lines(block, p, parts).indices()).collect();
            got.sort_unstable();
            // A line starts every LINE values along B's contiguous direction.
            let mut want: Vec<usize> = if transposed {
                (16..86).flat_map(|c| (8..28).step_by(LINE).map(move |r| c * k + r)).collect()
            } else {
                (8..28).flat_map(|r| (16..86).step_by(LINE).map(move |c| r * n + c)).collect()
            };
            want.sort_unstable();
            assert_eq!(got, want, "transposed: {transposed}");
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps_c_and_bad_shapes_are_refused() {
        let mut c = vec![5.0f32; 6];
        let a = MatRef::row_major(&[], 2, 0).unwrap();
        let b = MatRef::row_major(&[], 0, 3).unwrap();
        sgemm(a, b, MatMut::row_major(&mut c, 2, 3).unwrap(), true).unwrap();
        assert_eq!(c, vec![5.0; 6]);
        sgemm(a, b, MatMut::row_major(&mut c, 2, 3).unwrap(), false).unwrap();
        assert_eq!(c, vec![0.0; 6]);
        let x = [0f32; 6];
        assert!(matches!(MatRef::row_major(&x, 2, 4), Err(GemmError::OutOfBounds { needed: 8, len: 6, .. })));
        assert!(matches!(MatMut::new(&mut c, 2, 3, 2), Err(GemmError::OverlappingRows { .. })));
        let a = MatRef::row_major(&x, 2, 3).unwrap();
        let err = sgemm(a, a, MatMut::row_major(&mut c, 2, 3).unwrap(), false).unwrap_err();
        assert!(matches!(err, GemmError::Shapes { a_cols: 3, b_rows: 2, .. }), "{err}");
    }
}
