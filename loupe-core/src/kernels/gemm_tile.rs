//! The register tile of [`super::gemm`]: `C[MR x NR] (+)= A_panel * B_panel` over `kc`
//! steps, where the packed panels hold, for each step `p`, the tile's `MR` values of A's
//! column `p` and `NR` values of B's row `p` next to each other.
//!
//! On x86-64 with AVX2 and FMA (detected at run time, once) the tile is 6 x 16: twelve
//! 256-bit accumulators, two loads of B and one broadcast of A per row and step, which
//! leaves one of the sixteen vector registers spare. Elsewhere (or when told to) the same
//! arithmetic runs in portable Rust on a `[[f32; NR]; MR]` array the compiler vectorises
//! for the build's target. Both paths sum each product in the same order (p ascending),
//! the AVX2 path with fused multiply-adds.
#![allow(unsafe_code)]

/// Rows of the register tile.
pub(crate) const MR: usize = 6;
/// Columns of the register tile (two 8-lane vectors).
pub(crate) const NR: usize = 16;

/// Which tile code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// 256-bit fused multiply-adds (x86-64 AVX2 + FMA).
    Avx2Fma,
    /// Portable multiply then add.
    Portable,
}

impl TileKind {
    /// The fastest kind this CPU runs.
    pub fn detect() -> TileKind {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return TileKind::Avx2Fma;
        }
        TileKind::Portable
    }
}

/// The output of one product as its jobs write it: the base of the caller's `&mut [f32]`
/// (borrowed for `'a`, so nothing else reads or writes it meanwhile) and its row stride.
pub(crate) struct CBase<'a> {
    ptr: *mut f32,
    len: usize,
    row_stride: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `CBase` is shared between the jobs of one product, and each job writes only the
// tiles of its own rectangle of C (`gemm::output_jobs` cuts disjoint rectangles; split-K
// gives every slice but the first its own output), so no two threads touch one element.
unsafe impl Send for CBase<'_> {}
unsafe impl Sync for CBase<'_> {}

impl<'a> CBase<'a> {
    pub(crate) fn new(data: &'a mut [f32], row_stride: usize) -> Self {
        CBase { ptr: data.as_mut_ptr(), len: data.len(), row_stride, _borrow: std::marker::PhantomData }
    }

    /// The tile of `rows x cols` at `(row, col)`; panics if it reaches past the buffer.
    pub(crate) fn tile(&self, row: usize, col: usize, rows: usize, cols: usize) -> CTile {
        assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols));
        assert!((row + rows - 1) * self.row_stride + col + cols <= self.len, "tile outside C");
        CTile {
            ptr: self.ptr.wrapping_add(row * self.row_stride + col),
            row_stride: self.row_stride,
            rows,
            cols,
        }
    }
}

/// Where one tile of C lives: rows `rows <= MR`, columns `cols <= NR` starting at `ptr`,
/// row `i` at `ptr + i * row_stride`, inside a [`CBase`] (checked by [`CBase::tile`]).
///
/// Each job of a product writes only tiles of its own rectangle, and within a job the
/// tiles are disjoint and written one after the other, so writing through it never races
/// nor aliases another live reference.
#[derive(Clone, Copy)]
pub(crate) struct CTile {
    ptr: *mut f32,
    row_stride: usize,
    rows: usize,
    cols: usize,
}

/// `C (+)= A_panel * B_panel` over `kc` steps: `a` holds `kc * MR` packed values, `b`
/// `kc * NR` (the padding of a partial tile is zero). With `overwrite`, C's old values
/// are neither read nor kept.
pub(crate) fn tile(kind: TileKind, kc: usize, a: &[f32], b: &[f32], c: CTile, overwrite: bool) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR && c.rows <= MR && c.cols <= NR);
    match kind {
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx2Fma => {
            // SAFETY: `Avx2Fma` is only produced by `detect` after the CPU reported both
            // features (or by a caller that checked them the same way), so calling the
            // `#[target_feature]` function is sound; its loads stay inside `a` and `b`
            // (checked above) and its stores inside the tile (see `CTile`).
            unsafe { tile_avx2(kc, a.as_ptr(), b.as_ptr(), c, overwrite) }
        }
        _ => tile_portable(kc, a, b, c, overwrite),
    }
}

/// Adds (or writes) the accumulated tile into C.
fn store(acc: &[[f32; NR]; MR], c: CTile, overwrite: bool) {
    for (i, row) in acc.iter().enumerate().take(c.rows) {
        // SAFETY: row `i < c.rows` of the tile starts at `ptr + i * row_stride` and has
        // `c.cols` elements, inside the caller's exclusive rectangle of C (see `CTile`).
        let out = unsafe { std::slice::from_raw_parts_mut(c.ptr.add(i * c.row_stride), c.cols) };
        if overwrite {
            out.copy_from_slice(&row[..c.cols]);
        } else {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    }
}

fn tile_portable(kc: usize, a: &[f32], b: &[f32], c: CTile, overwrite: bool) {
    let mut acc = [[0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (x, &bj) in row.iter_mut().zip(bp) {
                *x += ai * bj;
            }
        }
    }
    store(&acc, c, overwrite);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(kc: usize, a: *const f32, b: *const f32, c: CTile, overwrite: bool) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY (whole loop): step p reads a[p*MR .. p*MR + MR] and b[p*NR .. p*NR + NR],
        // within the `kc * MR` and `kc * NR` values the caller checked.
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))) };
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = unsafe { _mm256_broadcast_ss(&*a.add(i)) };
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
        a = unsafe { a.add(MR) };
        b = unsafe { b.add(NR) };
    }
    if c.rows == MR && c.cols == NR {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: a full tile: row i's 16 values lie in the caller's rectangle.
            unsafe {
                let out = c.ptr.add(i * c.row_stride);
                let (mut v0, mut v1) = (row[0], row[1]);
                if !overwrite {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(out));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(out.add(8)));
                }
                _mm256_storeu_ps(out, v0);
                _mm256_storeu_ps(out.add(8), v1);
            }
        }
    } else {
        let mut spill = [[0f32; NR]; MR];
        for (s, row) in spill.iter_mut().zip(&acc) {
            // SAFETY: `s` is 16 f32s, written whole by two unaligned stores.
            unsafe {
                _mm256_storeu_ps(s.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(s.as_mut_ptr().add(8), row[1]);
            }
        }
        store(&spill, c, overwrite);
    }
}
