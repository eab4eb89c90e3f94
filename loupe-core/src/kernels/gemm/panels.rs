//! Where a job's panels of B come from: a strided B packed block by block, or a B packed
//! beforehand; and the cache lines of the block a job packs next, for its tiles to fetch.

use std::ops::Range;

use super::blocking::{NC, NC_TRANSPOSED};
use super::pack::pack_b;
use super::view::MatRef;
use crate::kernels::gemm_tile::{Fetch, LINE};

/// Where a product's B panels come from: packed by each job as it goes ([`sgemm`]), or
/// read from a `gemm_packed::PackedB` made beforehand (`gemm_packed::sgemm_packed`).
#[derive(Clone, Copy)]
pub(in crate::kernels) enum PanelsB<'a> {
    Strided(MatRef<'a>),
    Packed(&'a dyn PackedPanels),
}

/// A B packed beforehand, as the driver reads it (`gemm_packed::PackedB`; a trait so that
/// this module, which that one builds on, does not name it).
pub(in crate::kernels) trait PackedPanels: Sync {
    /// Rows and columns of B.
    fn shape(&self) -> (usize, usize);
    /// The `NR`-column panels of `B[pc..pc+kc, jc..jc+nc]` in [`pack_b`]'s layout.
    fn block(&self, pc: usize, kc: usize, jc: usize, nc: usize) -> &[f32];
}

impl PanelsB<'_> {
    /// Columns per block of B ([`NC`], or [`NC_TRANSPOSED`] for a transposed B packed as
    /// it goes). The blocks only order the work: each value of C sums the same products
    /// in the same order whatever their width.
    pub(super) fn block_cols(&self) -> usize {
        match self {
            PanelsB::Strided(b) if b.row_stride == 1 && b.col_stride != 1 => NC_TRANSPOSED,
            _ => NC,
        }
    }

    pub(super) fn shape(&self) -> (usize, usize) {
        match self {
            PanelsB::Strided(b) => b.shape(),
            PanelsB::Packed(b) => b.shape(),
        }
    }

    /// The `NR`-column panels of `B[pc..pc+kc, jc..jc+nc]` in [`pack_b`]'s layout: packed
    /// into `buf` now, or the same values read in place from the `gemm_packed::PackedB`.
    pub(super) fn panels<'s>(
        &'s self,
        pc: usize,
        kc: usize,
        jc: usize,
        nc: usize,
        buf: &'s mut Vec<f32>,
    ) -> &'s [f32] {
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
    pub(in crate::kernels) fn lines(
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
