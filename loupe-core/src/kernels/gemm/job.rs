//! The loops of one job of [`super::sgemm`]: blocks of B (packed as they go, carried by the
//! tiles of the block before, or read from a `gemm_packed::PackedB`); for a transposed B
//! with few rows of A, panels of B packed one at a time just before their tiles; for a
//! small B and a C too large for L2, all of B packed first and each block of rows run
//! through every slice.

use std::cell::RefCell;
use std::ops::Range;

use super::blocking::{KC, MC};
use super::pack::{pack_a, pack_a_slices, pack_b, pack_b_into};
use super::panels::PanelsB;
use super::view::MatRef;
use crate::kernels::gemm_tile::{tile, tile_pair, CBase, Carry, Fetch, TileKind, MR, NR};

/// Values of a row-major B from which each block of it is packed by the tiles of the block
/// before (`gemm_tile::Carry`): 32 MB, more than the caches hold, so that packing a block
/// after its tiles would wait on memory. The hidden layer's forward (B 1.1 GB) took
/// 125-133 -> 110-118 ms (probe, min of 5, three rounds) so; a B that stays in the caches
/// lost as much (`loupe bench --gemm`: the NetVLAD per-video `X dV`, B 1 MB, 31 -> 34 ms;
/// the recurrences' `h W` on sgemm, B 16 MB, 2.3 -> 3.5 ms).
///
/// The tests lower it to 32K values, so that their larger row-major B (a few hundred rows
/// by a few panels) are carried and the smaller ones fetched.
const CARRY_FROM: usize = if cfg!(test) { 32 << 10 } else { 8 << 20 };

/// Column block of a transposed B packed panel by panel (`run_panels`): the columns of C
/// one packed block of A (at most [`MC`] rows, one slice of the inner dimension) is used
/// for before the next slice. Probe of the hidden layer's `dX` (two threads, min of 5):
/// 512 columns 117-118 ms, 1,024 115-116, 2,048 115-119, 256 122-124.
const NC_PANELS: usize = 1024;
const _: () = assert!(NC_PANELS.is_multiple_of(NR));

/// Values of a job's B (all its rows, the job's columns) up to which a job whose rows make
/// several blocks of A and whose inner dimension makes several slices may pack all of B
/// first and run each block of rows through every slice ([`run_rows`]): 1 MB, NetVLAD's
/// assignment weight (`1024 x 256`).
const WHOLE_B: usize = if cfg!(test) { 24 << 10 } else { 1 << 18 };

/// Values of a job's C from which it takes [`run_rows`] (with a B of at most [`WHOLE_B`]):
/// 2 MB, an Intel Xeon's L2, past which the block loop reads C back from memory for every
/// slice. A C that stays in L2 gains nothing from the row loop and loses B's block from L2:
/// NetVLAD's per-video `X dV` (C 300 KB, one product per thread) ran 208-233 -> 202-208
/// GFLOP/s under it (`loupe bench --gemm`, two rounds).
///
/// The tests lower both bounds (24K and 2K values), so that the block loop keeps its own
/// small cases (rows past [`MC`] over a few slices) and the row loop gets the ones made
/// for it.
const ROWS_C_FROM: usize = if cfg!(test) { 2 << 10 } else { 1 << 19 };

thread_local! {
    /// Each thread's packing buffers (A block, B block), kept between products: the
    /// recurrences call a product per frame, and fresh multi-megabyte buffers would
    /// page-fault every time.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// One job: `C[rows, cols] (+)= A[rows, ks] B[ks, cols]` on the `kind` tile, overwriting C
/// on the first slice of `ks` when `overwrite`.
pub(super) struct Job<'a> {
    pub(super) kind: TileKind,
    pub(super) a: MatRef<'a>,
    pub(super) rows: Range<usize>,
    pub(super) cols: Range<usize>,
    pub(super) ks: Range<usize>,
    pub(super) overwrite: bool,
}

/// Runs a [`Job`] with B from `b` into `c`, on the calling thread.
pub(super) fn run_job(job: Job<'_>, b: PanelsB<'_>, c: &CBase<'_>) {
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
        if takes_row_loop(&job) {
            run_rows(job, b, c, abuf, bbuf)
        } else {
            run_blocks(job, b, c, abuf, bbuf, bnext)
        }
    })
}

/// Whether a job runs its rows block by block through every slice ([`run_rows`]): rows
/// for several blocks of A, an inner dimension of several slices, a B (all of its rows,
/// the job's columns) of at most [`WHOLE_B`] values and a C of at least [`ROWS_C_FROM`].
pub(super) fn takes_row_loop(job: &Job<'_>) -> bool {
    let (rows, cols) = (job.rows.len(), job.cols.len());
    rows > MC && job.ks.len() > KC && job.ks.len() * cols <= WHOLE_B && rows * cols >= ROWS_C_FROM
}

/// [`run_job`]'s block loop: blocks of B (packed as they go, carried by the tiles of the
/// block before, or read from a `gemm_packed::PackedB`), each against every block of A.
pub(super) fn run_blocks(
    job: Job<'_>,
    b: PanelsB<'_>,
    c: &CBase<'_>,
    abuf: &mut Vec<f32>,
    bbuf: &mut Vec<f32>,
    bnext: &mut Vec<f32>,
) {
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
                    let (w, next_w) = widths(jr, nc);
                    let lines = |parts: Range<usize>| match next {
                        Some(next) => b.lines(next, parts, tiles),
                        None => Fetch::NONE,
                    };
                    let on = Column { kind, kc, first, carry_runs: runs };
                    on.run(abuf, bp, c, (ic, mc), (jc + jr, w, next_w), share, lines, &mut carry);
                    share += mc.div_ceil(MR);
                }
            }
            carry.finish();
            ready = carrying;
            if carrying {
                std::mem::swap(bbuf, bnext);
            }
        }
    }
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

/// The width of the `NR`-column panel of B at column `jr` of an `nc`-wide block, and the
/// next panel's, if the block has one ([`Column::run`] fetches its rows of C ahead).
fn widths(jr: usize, nc: usize) -> (usize, Option<usize>) {
    let w = NR.min(nc - jr);
    (w, (jr + w < nc).then(|| NR.min(nc - jr - w)))
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
                let (w, next_w) = widths(jr, nc);
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
                let lines = |parts: Range<usize>| match next {
                    Some(next) => source.lines(next, parts, panels_a),
                    None => Fetch::NONE,
                };
                let on = Column { kind, kc, first, carry_runs: 0 };
                on.run(
                    abuf,
                    &bbuf[..NR * kc],
                    c,
                    (rows.start, mc),
                    (jc + jr, w, next_w),
                    0,
                    lines,
                    &mut Carry::none(),
                );
            }
        }
    }
}

/// [`run_job`] for a job with a small B and a large C (NetVLAD's assignment product, `24000
/// x 1024 x 256` at paper size, cut into jobs of 3,000 rows: C 3 MB each): every slice of
/// B is packed once, up front, and each block of rows runs through all slices before the
/// next, so that its block of C (96 KB) stays in L2 from one slice to the next, where the
/// block loop sends the whole C through memory once per slice (four for the assignment:
/// about 100 MB of C's traffic per thread against 49 MB of A). Each block of rows is packed
/// through every slice at once (`pack::pack_a_slices`: each row of A read front to back,
/// where packing slice by slice read it in 1 KB pieces). Intel Xeon, two threads, probe
/// alternating builds (four rounds each): 243-248 -> 252-265 GFLOP/s for the row loop,
/// 247-259 -> 270-274 for its packing. Every output sums the same products in the same
/// order as the block loop.
pub(super) fn run_rows(
    job: Job<'_>,
    b: PanelsB<'_>,
    c: &CBase<'_>,
    abuf: &mut Vec<f32>,
    bbuf: &mut Vec<f32>,
) {
    let Job { kind, a, rows, cols, ks, overwrite } = job;
    let (jc, nc) = (cols.start, cols.len());
    let width = nc.div_ceil(NR) * NR;
    let slices: Vec<(usize, usize)> = ks.clone().step_by(KC).map(|pc| (pc, KC.min(ks.end - pc))).collect();
    // Every slice's block, one after the other (each `width * KC` values, the last maybe
    // fewer).
    let blocks: Vec<&[f32]> = match b {
        PanelsB::Strided(bm) => {
            bbuf.resize(width * ks.len(), 0.0);
            for (block, &(pc, kc)) in bbuf.chunks_mut(width * KC).zip(&slices) {
                pack_b_into(bm, pc, kc, jc, nc, block);
            }
            bbuf.chunks(width * KC).collect()
        }
        PanelsB::Packed(packed) => slices.iter().map(|&(pc, kc)| packed.block(pc, kc, jc, nc)).collect(),
    };
    for ic in rows.clone().step_by(MC) {
        let mc = MC.min(rows.end - ic);
        // The block of rows through every slice at once: each row read front to back.
        pack_a_slices(a, ic, mc, ks.clone(), abuf);
        let ablocks = abuf.chunks(mc.div_ceil(MR) * MR * KC);
        for (slice, ((&(_, kc), bpanels), ablock)) in slices.iter().zip(&blocks).zip(ablocks).enumerate() {
            let on = Column { kind, kc, first: overwrite && slice == 0, carry_runs: 0 };
            for (bp, jr) in bpanels.chunks_exact(NR * kc).zip((0..nc).step_by(NR)) {
                let (w, next_w) = widths(jr, nc);
                on.run(ablock, bp, c, (ic, mc), (jc + jr, w, next_w), 0, |_| Fetch::NONE, &mut Carry::none());
            }
        }
    }
}

/// Steps of the inner dimension from which a column runs its tiles in pairs: the hidden
/// layer's `dW` (80 steps, each tile then reads and writes its rows of a 1.1 GB C) took
/// 212 -> 236 ms in pairs on an Intel Xeon, whose C traffic comes in bursts twice as large.
const PAIR_FROM: usize = 128;

/// One column of tiles: a packed panel of B against every `MR`-row panel of a packed
/// block of A, two panels at a time while two remain ([`tile_pair`]), else one.
#[derive(Clone, Copy)]
struct Column {
    kind: TileKind,
    kc: usize,
    /// Whether the tiles overwrite C (the first slice of an overwriting job).
    first: bool,
    /// Runs of the carry each tile may copy.
    carry_runs: usize,
}

impl Column {
    /// Runs the column: `ap` holds the block of A (`mc` rows, C's rows from `row`), `bp`
    /// the panel of B (`w` columns, C's columns from `col`; the next column is `next_w`
    /// wide, if any). Tile `t` of the column fetches `lines(share + t..share + t + 1)` (a
    /// pair both its tiles' shares), and before each tile or pair runs, the rows of C of
    /// the next one are fetched (after the last, the next column's first).
    #[allow(clippy::too_many_arguments)]
    fn run<'f>(
        self,
        ap: &[f32],
        bp: &[f32],
        c: &CBase<'_>,
        (row, mc): (usize, usize),
        (col, w, next_w): (usize, usize, Option<usize>),
        share: usize,
        lines: impl Fn(Range<usize>) -> Fetch<'f>,
        carry: &mut Carry<'_>,
    ) {
        let Column { kind, kc, first, carry_runs } = self;
        let panels = mc.div_ceil(MR);
        // Panels of A the tile (1) or pair (2) starting at panel `q` takes.
        let unit = |q: usize| if kc >= PAIR_FROM && q + 1 < panels { 2 } else { 1 };
        let at = |ir: usize, col: usize, w: usize| c.tile(row + ir, col, MR.min(mc - ir), w);
        // Fetches C's rows of the tile or pair starting at panel `q`.
        let ahead = |q: usize, col: usize, w: usize| {
            for r in (q * MR..mc).step_by(MR).take(unit(q)) {
                at(r, col, w).prefetch(first);
            }
        };
        let mut q = 0;
        while q < panels {
            let n = unit(q);
            let ir = q * MR;
            if q + n < panels {
                ahead(q + n, col, w);
            } else if let Some(next_w) = next_w {
                ahead(0, col + w, next_w);
            }
            let mut fetch = lines(share + q..share + q + n);
            carry.allow(n * carry_runs);
            let a0 = &ap[ir * kc..][..MR * kc];
            if n == 2 {
                let a1 = &ap[(ir + MR) * kc..][..MR * kc];
                let tiles = [at(ir, col, w), at(ir + MR, col, w)];
                tile_pair(kind, kc, [a0, a1], bp, tiles, first, &mut fetch, carry);
            } else {
                tile(kind, kc, a0, bp, at(ir, col, w), first, &mut fetch, carry);
            }
            q += n;
        }
    }
}
