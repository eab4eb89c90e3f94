//! The register tile of [`super::gemm`]: `C[MR x NR] (+)= A_panel * B_panel` over `kc`
//! steps, where the packed panels hold, for each step `p`, the tile's `MR` values of A's
//! column `p` and `NR` values of B's row `p` next to each other.
//!
//! The tile is 6 x 32. On x86-64 with AVX-512 (detected at run time) it is twelve 512-bit
//! accumulators, two loads of B and one broadcast of A per row and step; with AVX2 and
//! FMA only, the same tile in two halves of 6 x 16, each twelve 256-bit accumulators
//! (which leaves one of the sixteen vector registers spare). Elsewhere (or when told to)
//! the same arithmetic runs in portable Rust on a `[[f32; NR]; MR]` array the compiler
//! vectorises for the build's target. Every path sums each product in the same order (p
//! ascending), the SIMD ones with fused multiply-adds, so AVX-512 and AVX2 agree to the
//! bit.
#![allow(unsafe_code)]

use std::ops::Range;

/// Rows of the register tile.
pub(crate) const MR: usize = 6;
/// Columns of the register tile (two 16-lane vectors, or two halves of two 8-lane ones).
pub(crate) const NR: usize = 32;
/// Columns of one AVX2 half tile.
#[cfg(target_arch = "x86_64")]
const HALF: usize = NR / 2;
/// `f32` values in a 64-byte cache line.
pub(crate) const LINE: usize = 16;

/// The environment variable that picks the register tile ([`TileKind::detect`]): to
/// compare the kinds on one machine, or to avoid one.
pub const TILE_VARIABLE: &str = "LOUPE_TILE";

/// [`TILE_VARIABLE`] names no tile kind this CPU runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{TILE_VARIABLE}={name:?} names no register tile this CPU runs (it runs: {available})")]
pub struct TileError {
    name: String,
    available: String,
}

/// Which tile code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// 512-bit fused multiply-adds (x86-64 AVX-512F).
    Avx512,
    /// 256-bit fused multiply-adds (x86-64 AVX2 + FMA).
    Avx2Fma,
    /// Portable multiply then add.
    Portable,
}

impl TileKind {
    /// The kind the products run (found once, then remembered): the one the environment
    /// variable [`TILE_VARIABLE`] names, or the fastest this CPU runs. A name
    /// [`TileKind::from_environment`] refuses is reported once on stderr and the fastest
    /// kind used (the `loupe` command refuses to start with it instead).
    pub fn detect() -> TileKind {
        static DETECTED: std::sync::OnceLock<TileKind> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let fastest = TileKind::available()[0];
            match TileKind::from_environment() {
                Ok(chosen) => chosen.unwrap_or(fastest),
                Err(e) => {
                    eprintln!("warning: {e}; using the fastest, {}", fastest.name());
                    fastest
                }
            }
        })
    }

    /// The kind [`TILE_VARIABLE`] names (`avx512`, `avx2` or `portable`), `None` when it
    /// is unset; an error when it names no kind or one this CPU does not run.
    pub fn from_environment() -> Result<Option<TileKind>, TileError> {
        match std::env::var(TILE_VARIABLE) {
            Err(_) => Ok(None),
            Ok(name) => TileKind::named(&name).map(Some),
        }
    }

    /// The kind called `name` (as [`TileKind::name`] spells it), if this CPU runs it.
    pub fn named(name: &str) -> Result<TileKind, TileError> {
        let available = TileKind::available();
        let names = available.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        match [TileKind::Avx512, TileKind::Avx2Fma, TileKind::Portable].into_iter().find(|k| k.name() == name)
        {
            Some(kind) if available.contains(&kind) => Ok(kind),
            _ => Err(TileError { name: name.to_string(), available: names }),
        }
    }

    /// How [`TILE_VARIABLE`] names this kind.
    pub fn name(self) -> &'static str {
        match self {
            TileKind::Avx512 => "avx512",
            TileKind::Avx2Fma => "avx2",
            TileKind::Portable => "portable",
        }
    }

    /// Every kind this CPU runs, fastest first (the tests run each).
    pub fn available() -> Vec<TileKind> {
        let mut kinds = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                kinds.push(TileKind::Avx512);
            }
            if avx2 {
                kinds.push(TileKind::Avx2Fma);
            }
        }
        kinds.push(TileKind::Portable);
        kinds
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

impl CTile {
    /// Asks the CPU to bring the tile's rows of C into its L1 cache (for writing when
    /// `overwrite`), a tile ahead of its use: an accumulating tile reads them after its
    /// last multiply-add, and a miss there stalls it (the hidden layer's `dW`, whose
    /// 1.1 GB of C is read and written once, lost a fifth of its time so). A hint: no
    /// value changes, nothing faults.
    pub(crate) fn prefetch(&self, overwrite: bool) {
        #[cfg(target_arch = "x86_64")]
        for i in 0..self.rows {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
            let row = self.ptr.wrapping_add(i * self.row_stride);
            for l in (0..self.cols).step_by(LINE).chain([self.cols - 1]) {
                let at = row.wrapping_add(l).cast::<i8>().cast_const();
                // SAFETY: a prefetch reads nothing architecturally and never faults; the
                // address is inside the tile anyway.
                unsafe {
                    if overwrite {
                        _mm_prefetch::<_MM_HINT_ET0>(at)
                    } else {
                        _mm_prefetch::<_MM_HINT_T0>(at)
                    }
                }
            }
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
/// are neither read nor kept. While it runs, the tile fetches `fetch`'s lines and copies
/// up to its quota of `carry`'s runs, each spread over its steps.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile(
    kind: TileKind,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: CTile,
    overwrite: bool,
    fetch: &mut Fetch<'_>,
    carry: &mut Carry<'_>,
) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR && c.rows <= MR && c.cols <= NR);
    match kind {
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx512 => {
            // SAFETY: `Avx512` is only produced by `available` after the CPU reported
            // AVX-512F, so calling the `#[target_feature]` function is sound; its loads
            // stay inside `a` and `b` (checked above) and its stores inside the tile (see
            // `CTile`).
            unsafe {
                if carry.quota > 0 {
                    tile_avx512::<true, 1>(kc, [a.as_ptr()], b.as_ptr(), [c], overwrite, fetch, carry)
                } else {
                    tile_avx512::<false, 1>(kc, [a.as_ptr()], b.as_ptr(), [c], overwrite, fetch, carry)
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx2Fma => {
            for half in 0..c.cols.div_ceil(HALF) {
                let cols = HALF.min(c.cols - half * HALF);
                let c = CTile { ptr: c.ptr.wrapping_add(half * HALF), cols, ..c };
                // SAFETY: as for `Avx512`, with AVX2 and FMA; the half tile's columns are
                // the tile's `half * HALF ..` (inside it), and its loads of B start
                // `half * HALF` into each step's `NR` values.
                let b = unsafe { b.as_ptr().add(half * HALF) };
                unsafe {
                    if carry.quota > 0 {
                        tile_avx2::<true>(kc, a.as_ptr(), b, c, overwrite, fetch, carry)
                    } else {
                        tile_avx2::<false>(kc, a.as_ptr(), b, c, overwrite, fetch, carry)
                    }
                }
            }
        }
        // The portable tile fetches and copies nothing: off x86-64 a fetch is a no-op, and
        // `Carry::finish` copies what no tile did.
        _ => tile_portable(kc, a, b, c, overwrite),
    }
}

/// [`tile`] on two panels of A against one panel of B, into the two tiles of C below each
/// other: `a[r]` holds `kc * MR` packed values for `c[r]`. The AVX-512 tile runs them as
/// one 12 x 32 tile, each step's loads of B shared by both halves: 24 accumulators and 14
/// loads per 24 multiply-adds, where a 6 x 32 tile has 12 and 8 per 12. On a 2-core Intel
/// Xeon (AVX-512), `loupe bench --gemm`: the 2048^3 product 3-10% faster, NetVLAD's
/// per-video products 8-9%, the hidden layer's forward 2-5%. The sums are the same, in the
/// same order. Other kinds run two tiles, the first doing the fetches and copies.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_pair(
    kind: TileKind,
    kc: usize,
    a: [&[f32]; 2],
    b: &[f32],
    c: [CTile; 2],
    overwrite: bool,
    fetch: &mut Fetch<'_>,
    carry: &mut Carry<'_>,
) {
    assert!(a.iter().all(|a| a.len() >= kc * MR) && b.len() >= kc * NR);
    assert!(c.iter().all(|c| c.rows <= MR && c.cols <= NR));
    match kind {
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx512 => {
            let a = [a[0].as_ptr(), a[1].as_ptr()];
            // SAFETY: as in `tile`, for each of the two panels and tiles.
            unsafe {
                if carry.quota > 0 {
                    tile_avx512::<true, 2>(kc, a, b.as_ptr(), c, overwrite, fetch, carry)
                } else {
                    tile_avx512::<false, 2>(kc, a, b.as_ptr(), c, overwrite, fetch, carry)
                }
            }
        }
        _ => {
            for (a, c) in a.into_iter().zip(c) {
                tile(kind, kc, a, b, c, overwrite, fetch, carry);
            }
        }
    }
}

/// Asks the CPU to bring the cache line holding `data[at]` into its outer caches (L2 and
/// beyond) ahead of use: a hint, which changes no value (nothing is asked past the end of
/// `data`, or off x86-64).
#[inline(always)]
fn prefetch(data: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < data.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T2};
        // SAFETY: a prefetch reads nothing architecturally and never faults; the address is
        // inside `data` anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T2>(data.as_ptr().add(at).cast()) }
    }
}

/// Cache lines for a tile to fetch as it runs, one every few of its steps: `left` lines,
/// walked as runs of `per` lines, line `l` of run `o` at `data[base + o * stride + l *
/// LINE]`. The driver hands each tile a share of the lines of the block of B its job
/// packs next (`gemm::run_job`), so that packing reads the caches instead of memory (or,
/// for a B packed beforehand, the next block of panels, so that the tiles read them there).
/// Spread between the tile's multiply-adds the fetches cost almost nothing; issued in
/// one burst before each tile they stalled it (the hidden layer's forward product ran at
/// 266 GFLOP/s, against 320 with prefetching inside the packing only), and packing
/// without them waits on memory (a fifth of that product's time).
#[derive(Clone, Copy)]
pub(crate) struct Fetch<'a> {
    data: &'a [f32],
    base: usize,
    stride: usize,
    per: usize,
    o: usize,
    l: usize,
    left: usize,
}

impl<'a> Fetch<'a> {
    /// Nothing to fetch.
    pub(crate) const NONE: Fetch<'static> =
        Fetch { data: &[], base: 0, stride: 0, per: 1, o: 0, l: 0, left: 0 };

    /// Lines `from..to` of runs of `per` lines, the first at `data[base..]`, each `stride`
    /// values after the one before.
    pub(crate) fn new(data: &'a [f32], base: usize, stride: usize, per: usize, lines: Range<usize>) -> Self {
        let per = per.max(1);
        Fetch { data, base, stride, per, o: lines.start / per, l: lines.start % per, left: lines.len() }
    }

    /// The index into `data` of the next line to fetch, if any is left, stepping past it.
    #[inline(always)]
    fn next_line(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let at = self.base + self.o * self.stride + self.l * LINE;
        self.left -= 1;
        self.l += 1;
        if self.l == self.per {
            self.l = 0;
            self.o += 1;
        }
        Some(at)
    }

    /// Fetches the next line, if any is left.
    #[inline(always)]
    fn one(&mut self) {
        if let Some(at) = self.next_line() {
            prefetch(self.data, at);
        }
    }

    /// The indices into `data` of the lines left to fetch, in order (without fetching).
    #[cfg(test)]
    pub(crate) fn indices(mut self) -> Vec<usize> {
        std::iter::from_fn(|| self.next_line()).collect()
    }
}

/// When a tile of `kc` steps fetches: every `kc / lines` steps, from the first, so that
/// its [`Fetch`]'s lines spread over the whole tile (a local the loop keeps in registers).
#[derive(Clone, Copy)]
struct Pace {
    gap: usize,
    until: usize,
}

impl Pace {
    fn new(kc: usize, items: usize) -> Self {
        Pace { gap: (kc / items.max(1)).max(1), until: 0 }
    }

    /// One step of the tile: does the next item (a line to fetch, a run to copy) every
    /// `gap` steps.
    #[inline(always)]
    fn tick(&mut self, item: impl FnOnce()) {
        if self.until == 0 {
            item();
            self.until = self.gap;
        }
        self.until -= 1;
    }
}

/// Rows ahead of its copy that [`Carry`] fetches a run: 1 to 8 measured the same (the
/// hidden layer's forward, a probe: 112-119 ms at each).
const CARRY_AHEAD: usize = 2;

/// Runs of a row-major B copied into the next packed block of B while the tiles of the
/// current block run, so that the next block's packing overlaps their multiply-adds
/// instead of following them (`gemm::run_job`). Run `t` is row `p = t / panels` and panel
/// `q = t % panels` of the block: the `NR` values of the block's row `p` from its column
/// `q * NR`, written where [`super::gemm`]'s packing puts them. A tile copies up to its
/// `quota` of runs, spread over its steps; whatever the tiles leave, [`Carry::finish`]
/// copies, so the packed block never depends on a tile doing its share (the portable tile
/// does none).
///
/// Each copy also asks for the same run [`CARRY_AHEAD`] rows on, so that the copies read
/// the caches: without it they waited on memory (the hidden layer's forward gained 0-5%
/// instead of 12%), and fetching the whole block after next during this one, as [`Fetch`]
/// does for a packing that follows the tiles, left it in the caches no better.
pub(crate) struct Carry<'a> {
    src: &'a [f32],
    stride: usize,
    base: usize,
    dst: &'a mut [f32],
    kc: usize,
    panels: usize,
    p: usize,
    q: usize,
    left: usize,
    quota: usize,
}

impl<'a> Carry<'a> {
    /// Nothing to copy.
    pub(crate) fn none() -> Carry<'static> {
        Carry { src: &[], stride: 0, base: 0, dst: &mut [], kc: 0, panels: 1, p: 0, q: 0, left: 0, quota: 0 }
    }

    /// The `kc` rows of `panels` whole panels of B, the first run at `src[base..]`, rows
    /// `stride` apart, into `dst` (`panels * NR * kc` values).
    pub(crate) fn new(
        src: &'a [f32],
        base: usize,
        stride: usize,
        kc: usize,
        panels: usize,
        dst: &'a mut [f32],
    ) -> Self {
        assert_eq!(dst.len(), panels * NR * kc, "one block of whole panels");
        assert!(
            kc == 0 || panels == 0 || base + (kc - 1) * stride + panels * NR <= src.len(),
            "rows inside B"
        );
        Carry { src, stride, base, dst, kc, panels: panels.max(1), p: 0, q: 0, left: kc * panels, quota: 0 }
    }

    /// Runs not copied yet.
    pub(crate) fn pending(&self) -> usize {
        self.left
    }

    /// Lets the next tile copy up to `runs` runs.
    pub(crate) fn allow(&mut self, runs: usize) {
        self.quota = runs.min(self.left);
    }

    /// Copies the next run, if the quota allows one.
    #[inline(always)]
    fn one(&mut self) {
        if self.quota == 0 {
            return;
        }
        let at = self.base + self.p * self.stride + self.q * NR;
        let to = self.q * NR * self.kc + self.p * NR;
        self.dst[to..to + NR].copy_from_slice(&self.src[at..at + NR]);
        // The same run `CARRY_AHEAD` rows on, into L2 that many rows of copies ahead.
        if self.p + CARRY_AHEAD < self.kc {
            let ahead = at + CARRY_AHEAD * self.stride;
            prefetch(self.src, ahead);
            prefetch(self.src, ahead + LINE);
        }
        self.quota -= 1;
        self.left -= 1;
        self.q += 1;
        if self.q == self.panels {
            self.q = 0;
            self.p += 1;
        }
    }

    /// Copies every run left.
    pub(crate) fn finish(&mut self) {
        self.quota = self.left;
        while self.quota > 0 {
            self.one();
        }
    }
}

/// Writes the transpose of an `NR x NR` square into one packed panel of B: row `j` of the
/// square is `src[j * stride ..][..NR]` (column `j` of a transposed B, contiguous) and
/// becomes column `j` of `dst`'s `NR` rows of `NR` values. Eight loads, shuffles and
/// eight stores per `8 x 8` quarter on AVX2, a scalar loop elsewhere.
pub(crate) fn transpose_square(kind: TileKind, src: &[f32], stride: usize, dst: &mut [f32]) {
    assert!(src.len() >= (NR - 1) * stride + NR && dst.len() >= NR * NR);
    match kind {
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx512 | TileKind::Avx2Fma => {
            for (r, c) in (0..NR).step_by(8).flat_map(|r| (0..NR).step_by(8).map(move |c| (r, c))) {
                // SAFETY: AVX2 was detected (as for the tile); the quarter reads rows
                // `r..r+8` at columns `c..c+8` of the `NR x NR` square checked above, and
                // writes rows `c..c+8`, columns `r..r+8` of `dst`'s `NR x NR`.
                unsafe {
                    transpose_8x8(src.as_ptr().add(r * stride + c), stride, dst.as_mut_ptr().add(c * NR + r))
                }
            }
        }
        _ => {
            for (j, row) in src.chunks(stride.max(1)).take(NR).enumerate() {
                for (p, &v) in row[..NR].iter().enumerate() {
                    dst[p * NR + j] = v;
                }
            }
        }
    }
}

/// Writes an `MR x 8` block of a row-major A as eight steps of a packed A panel:
/// `dst[p * MR + i] = src[i * stride + p]` for `i < MR`, `p < 8` (48 values, all written).
/// Loads, shuffles and eight stores on AVX2, a scalar loop elsewhere: packing a row-major
/// A value by value was 5% of the training step's samples (the NetVLAD assignment's frames,
/// the hidden layer's input, each video's frames in the backward).
pub(crate) fn transpose_rows(kind: TileKind, src: &[f32], stride: usize, dst: &mut [f32]) {
    assert!(src.len() >= (MR - 1) * stride + 8 && dst.len() == 8 * MR);
    match kind {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected (as for the tile); `MR` rows of 8 values `stride` apart
        // are readable at `src` and `dst` holds the 48 values written, both checked above.
        TileKind::Avx512 | TileKind::Avx2Fma => unsafe {
            transpose_6x8(src.as_ptr(), stride, dst.as_mut_ptr())
        },
        _ => {
            for (p, d) in dst.chunks_exact_mut(MR).enumerate() {
                for (i, v) in d.iter_mut().enumerate() {
                    *v = src[i * stride + p];
                }
            }
        }
    }
}

/// The 8 x 8 transpose of eight rows in registers: `out[p]` lane `j` = `r[j]` lane `p`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// `dst[p * NR + j] = src[j * stride + p]` for `p, j < 8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(src: *const f32, stride: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY (whole function): the caller guarantees 8 rows of 8 readable values `stride`
    // apart at `src` and 8 rows of 8 writable values `NR` apart at `dst`.
    unsafe {
        let out = transpose8(std::array::from_fn(|j| _mm256_loadu_ps(src.add(j * stride))));
        for (p, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(p * NR), v);
        }
    }
}

/// `dst[p * MR + i] = src[i * stride + p]` for `i < MR`, `p < 8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_6x8(src: *const f32, stride: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY (whole function): the caller guarantees `MR` rows of 8 readable values
    // `stride` apart at `src` and `8 MR` writable values at `dst`.
    unsafe {
        const _: () = assert!(MR == 6, "six rows: each store of 8 lanes overlaps the next by 2");
        // Rows 6 and 7 repeat row 5; their lanes land in the two slots each store but the
        // last leaves for the next step's store to overwrite.
        let out = transpose8(std::array::from_fn(|j| _mm256_loadu_ps(src.add(j.min(MR - 1) * stride))));
        for (p, &v) in out.iter().enumerate().take(7) {
            _mm256_storeu_ps(dst.add(p * MR), v);
        }
        let last = dst.add(7 * MR);
        _mm_storeu_ps(last, _mm256_castps256_ps128(out[7]));
        _mm_storel_epi64(last.add(4).cast(), _mm_castps_si128(_mm256_extractf128_ps::<1>(out[7])));
    }
}

/// Adds (or writes) the accumulated tile (or half tile) into C.
fn store<const W: usize>(acc: &[[f32; W]; MR], c: CTile, overwrite: bool) {
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

/// One 6 x 16 half of the tile: `b` points at the half's first column of step 0, each
/// step's `HALF` values `NR` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const CARRY: bool>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: CTile,
    overwrite: bool,
    fetch: &mut Fetch<'_>,
    carry: &mut Carry<'_>,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    let mut pace = Pace::new(kc, fetch.left);
    let mut copies = Pace::new(kc, carry.quota);
    for _ in 0..kc {
        pace.tick(|| fetch.one());
        if CARRY {
            copies.tick(|| carry.one());
        }
        // SAFETY (whole loop): step p reads a[p*MR .. p*MR + MR] and the half's 16 of
        // b[p*NR .. p*NR + NR], within the `kc * MR` and `kc * NR` values the caller checked.
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))) };
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = unsafe { _mm256_broadcast_ss(&*a.add(i)) };
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
        a = unsafe { a.add(MR) };
        b = unsafe { b.add(NR) };
    }
    if c.rows == MR && c.cols == HALF {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: a full half tile: row i's 16 values lie in the caller's rectangle.
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
        let mut spill = [[0f32; HALF]; MR];
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

/// The AVX-512 tile on `P` panels of A (1, or 2: a 12 x 32 tile whose two 6-row halves
/// share each step's loads of B), `P * MR * 2` accumulators in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const CARRY: bool, const P: usize>(
    kc: usize,
    a: [*const f32; P],
    b: *const f32,
    c: [CTile; P],
    overwrite: bool,
    fetch: &mut Fetch<'_>,
    carry: &mut Carry<'_>,
) {
    use std::arch::x86_64::*;
    // One flat array whatever `P` (rows `r * MR ..` for panel `r`; with `P = 1` the second
    // half is never used): LLVM keeps it in registers, where an array of `P` panels was
    // written back to the stack after every multiply-add.
    let mut acc = [[_mm512_setzero_ps(); 2]; 2 * MR];
    let (mut a, mut b) = (a, b);
    let mut pace = Pace::new(kc, fetch.left);
    let mut copies = Pace::new(kc, carry.quota);
    for _ in 0..kc {
        pace.tick(|| fetch.one());
        if CARRY {
            copies.tick(|| carry.one());
        }
        // SAFETY (whole loop): step p reads a[r][p*MR .. p*MR + MR] and b[p*NR .. p*NR + NR],
        // within the `kc * MR` and `kc * NR` values the caller checked.
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16))) };
        for r in 0..P {
            for i in 0..MR {
                let ai = _mm512_set1_ps(unsafe { *a[r].add(i) });
                acc[r * MR + i][0] = _mm512_fmadd_ps(ai, b0, acc[r * MR + i][0]);
                acc[r * MR + i][1] = _mm512_fmadd_ps(ai, b1, acc[r * MR + i][1]);
            }
        }
        for ar in &mut a {
            *ar = unsafe { ar.add(MR) };
        }
        b = unsafe { b.add(NR) };
    }
    // Stored from a copy: the loop below indexes it by panel at run time, which kept `acc`
    // itself out of registers.
    let done = acc;
    for (panel, c) in done.chunks_exact(MR).zip(c) {
        if c.rows == MR && c.cols == NR {
            for (i, row) in panel.iter().enumerate() {
                // SAFETY: a full tile: row i's 32 values lie in the caller's rectangle.
                unsafe {
                    let out = c.ptr.add(i * c.row_stride);
                    let (mut v0, mut v1) = (row[0], row[1]);
                    if !overwrite {
                        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(out));
                        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(out.add(16)));
                    }
                    _mm512_storeu_ps(out, v0);
                    _mm512_storeu_ps(out.add(16), v1);
                }
            }
        } else {
            let mut spill = [[0f32; NR]; MR];
            for (s, row) in spill.iter_mut().zip(panel) {
                // SAFETY: `s` is 32 f32s, written whole by two unaligned stores.
                unsafe {
                    _mm512_storeu_ps(s.as_mut_ptr(), row[0]);
                    _mm512_storeu_ps(s.as_mut_ptr().add(16), row[1]);
                }
            }
            store(&spill, c, overwrite);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_kind_is_named_and_others_are_refused() {
        for kind in TileKind::available() {
            assert_eq!(TileKind::named(kind.name()), Ok(kind));
        }
        assert_eq!(TileKind::named("portable"), Ok(TileKind::Portable));
        let e = TileKind::named("avx3").unwrap_err().to_string();
        assert!(e.contains("LOUPE_TILE=\"avx3\"") && e.contains("portable"), "{e}");
        if !TileKind::available().contains(&TileKind::Avx512) {
            assert!(TileKind::named("avx512").is_err());
        }
    }

    #[test]
    fn transpose_square_writes_each_row_as_a_column_on_every_kind() {
        let stride = NR + 5;
        let src: Vec<f32> = (0..(NR - 1) * stride + NR).map(|v| v as f32).collect();
        for kind in TileKind::available() {
            let mut dst = vec![-1.0; NR * NR];
            transpose_square(kind, &src, stride, &mut dst);
            for p in 0..NR {
                for j in 0..NR {
                    assert_eq!(dst[p * NR + j], src[j * stride + p], "{kind:?} ({p}, {j})");
                }
            }
        }
    }

    #[test]
    fn transpose_rows_writes_eight_steps_of_a_panel_on_every_kind() {
        let stride = 8 + 3;
        let src: Vec<f32> = (0..(MR - 1) * stride + 8).map(|v| v as f32).collect();
        for kind in TileKind::available() {
            // Every value written, nothing past the 48.
            let mut dst = vec![-1.0; 8 * MR + 4];
            transpose_rows(kind, &src, stride, &mut dst[..8 * MR]);
            for p in 0..8 {
                for i in 0..MR {
                    assert_eq!(dst[p * MR + i], src[i * stride + p], "{kind:?} ({p}, {i})");
                }
            }
            assert_eq!(dst[8 * MR..], [-1.0; 4], "{kind:?}");
        }
    }
}
