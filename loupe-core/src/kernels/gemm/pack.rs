//! Packing: a block of A into `MR`-row panels and a block of B into `NR`-column panels,
//! the layouts the register tiles (`gemm_tile`) read.

use std::ops::Range;

use super::blocking::KC;
use super::view::MatRef;
use crate::kernels::gemm_tile::{transpose_rows, transpose_square, TileKind, MR, NR};

/// Rows of a row-major B packed together, panel by panel: eight rows read side by side
/// (eight streams through memory) and written as 1 KB runs of each panel, where packing
/// row by row scattered every row over all the panels.
const PACK_ROWS: usize = 8;

/// Packs `A[ic..ic+mc, pc..pc+kc]` as `MR`-row panels: panel `q`, step `p`, row `i` at
/// `q * MR * kc + p * MR + i`; rows past `mc` are zero.
pub(super) fn pack_a(a: MatRef<'_>, ic: usize, mc: usize, pc: usize, kc: usize, buf: &mut Vec<f32>) {
    let panels = mc.div_ceil(MR);
    // Every value is written below, so the buffer is only resized, never cleared: zeroing
    // it first wrote each block twice (the hidden layer's `dX` packs its 80 x 256 block of
    // `dY` once per block of W's rows). The rows past `mc` are written with zero: their
    // products are never stored, but a stale value there could be a slow denormal.
    buf.resize(panels * MR * kc, 0.0);
    for (q, dst) in buf.chunks_exact_mut(MR * kc).enumerate() {
        let r0 = ic + q * MR;
        pack_a_panel(a, r0, MR.min(ic + mc - r0), pc, kc, dst);
    }
}

/// Packs `A[ic..ic+mc, ks]` as one [`pack_a`] block per slice of [`KC`] steps, slice `s`
/// at `s * panels * MR * KC` (so `buf.chunks(panels * MR * KC)` are the blocks), panel by
/// panel through every slice: each row of a row-major A is read front to back over the
/// whole of `ks` in one go. The assignment product's A (`24000 x 1024`) packed so in 8 ms
/// on one thread, against 14 ms slice by slice (rows outer) and 20 ms block by block
/// (slices outer), 3.5 ms from the caches (a probe).
pub(super) fn pack_a_slices(a: MatRef<'_>, ic: usize, mc: usize, ks: Range<usize>, buf: &mut Vec<f32>) {
    let panels = mc.div_ceil(MR);
    buf.resize(panels * MR * ks.len(), 0.0);
    for q in 0..panels {
        let r0 = ic + q * MR;
        for (block, pc) in buf.chunks_mut(panels * MR * KC).zip(ks.clone().step_by(KC)) {
            let kc = KC.min(ks.end - pc);
            pack_a_panel(a, r0, MR.min(ic + mc - r0), pc, kc, &mut block[q * MR * kc..][..MR * kc]);
        }
    }
}

/// Packs `A[r0..r0+h, pc..pc+kc]` (`h <= MR`) into one panel: step `p`, row `i` at
/// `dst[p * MR + i]`, the rows past `h` zero.
fn pack_a_panel(a: MatRef<'_>, r0: usize, h: usize, pc: usize, kc: usize, dst: &mut [f32]) {
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

/// Packs `B[pc..pc+kc, jc..jc+nc]` as `NR`-column panels: panel `q`, step `p`, column `j`
/// at `q * NR * kc + p * NR + j`; columns past `nc` are zero.
pub(super) fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, buf: &mut Vec<f32>) {
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
pub(in crate::kernels) fn pack_b_into(
    b: MatRef<'_>,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    dst: &mut [f32],
) {
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
