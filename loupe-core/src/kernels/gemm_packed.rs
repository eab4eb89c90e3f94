//! A B operand packed once for many products ([`PackedB`], [`sgemm_packed`]): the
//! recurrent layers multiply by the same weight `U` (or `U^T`) once per frame, and
//! [`super::gemm::sgemm`] would pack all of it again every time (16 MB at `1024 x 4096`,
//! which at a batch of 16 rows costs more than the multiplications).
//!
//! The packed values are exactly those `sgemm`'s jobs pack (`NR`-column panels of each
//! `KC`-deep slice, columns past the matrix's edge zero), and [`sgemm_packed`] runs
//! `sgemm`'s own driver (the same jobs, the same split-K) reading its panels from the
//! [`PackedB`] instead of packing them: the result is bit-identical to `sgemm`'s on the
//! same operands.

use rayon::prelude::*;

use super::gemm::{drive, pack_b_into, GemmError, MatMut, MatRef, PackedPanels, PanelsB, KC};
use super::gemm_tile::{TileKind, NR};

/// A whole `k x n` B, packed once for [`sgemm_packed`].
///
/// Layout: for each `KC`-deep slice of the rows (slice `s` covers rows `s KC ..`, `kc`
/// of them, the last one possibly shorter), the `ceil(n / NR)` panels of `NR` columns
/// across the whole width, panel `q` holding column `q NR + j` of row `s KC + p` at
/// `p NR + j` of its `NR kc` values; columns past `n` are zero. So the panels of any
/// `NC`-wide column block that `sgemm`'s driver visits (whatever column, a multiple of
/// `NR`, its job starts at) are one contiguous run, value for value what it would have
/// packed for that block. `4 k ceil(n / NR) NR` bytes.
#[derive(Debug, Clone)]
pub struct PackedB {
    rows: usize,
    cols: usize,
    /// `ceil(cols / NR)`: panels per slice.
    panels: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `b` (any strides: a transposed view packs `B^T` without a copy of it), on
    /// the threads of the current rayon pool.
    pub fn new(b: MatRef<'_>) -> PackedB {
        let (rows, cols) = b.shape();
        let panels = cols.div_ceil(NR);
        let mut data = vec![0.0; rows * panels * NR];
        // One chunk per KC slice, the last one `rows % KC` deep if that is not zero.
        let slice_len = (KC * panels * NR).max(1);
        data.par_chunks_mut(slice_len).enumerate().for_each(|(s, dst)| {
            let pc = s * KC;
            pack_b_into(b, pc, KC.min(rows - pc), 0, cols, dst);
        });
        PackedB { rows, cols, panels, data }
    }

    /// Rows and columns of the B it holds.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

impl PackedPanels for PackedB {
    fn shape(&self) -> (usize, usize) {
        PackedB::shape(self)
    }

    /// The panels of `B[pc..pc+kc, jc..jc+nc]`, as `sgemm`'s jobs pack them: `pc` starts
    /// a slice and `jc` a panel.
    fn block(&self, pc: usize, kc: usize, jc: usize, nc: usize) -> &[f32] {
        assert!(pc.is_multiple_of(KC) && kc == KC.min(self.rows - pc), "rows {pc}+{kc} are not one slice");
        assert!(
            jc.is_multiple_of(NR) && jc + nc <= self.cols,
            "columns {jc}+{nc} do not start a panel of {}",
            self.cols
        );
        let start = pc * self.panels * NR + jc * kc;
        &self.data[start..start + nc.div_ceil(NR) * NR * kc]
    }
}

/// `C = A B` (or `C += A B` with `accumulate`) with B packed beforehand: bit-identical to
/// [`super::gemm::sgemm`] on the same operands, without packing B.
///
/// # Shapes
/// `A: (m, k)`, `B: (k, n)`, `C: (m, n)`; other shapes are refused
/// ([`GemmError::Shapes`]).
///
/// # Example
/// ```
/// use loupe_core::kernels::gemm::{sgemm, MatMut, MatRef};
/// use loupe_core::kernels::gemm_packed::{sgemm_packed, PackedB};
/// let u = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3, row-major
/// // U and U^T, each packed once (the transpose read through strides).
/// let forward = PackedB::new(MatRef::row_major(&u, 2, 3)?);
/// let backward = PackedB::new(MatRef::row_major(&u, 2, 3)?.transpose());
/// assert_eq!((forward.shape(), backward.shape()), ((2, 3), (3, 2)));
/// let mut z = [0.0f32; 3];
/// for h in [[1.0, 0.0], [0.5, -1.0]] {
///     sgemm_packed(MatRef::row_major(&h, 1, 2)?, &forward, MatMut::row_major(&mut z, 1, 3)?, false)?;
///     // The same values as sgemm, which packs U on every call.
///     let mut again = [0.0f32; 3];
///     sgemm(MatRef::row_major(&h, 1, 2)?, MatRef::row_major(&u, 2, 3)?, MatMut::row_major(&mut again, 1, 3)?, false)?;
///     assert_eq!(z, again);
/// }
/// assert_eq!(z, [-3.5, -4.0, -4.5]);
/// let mut dh = [0.0f32; 2];
/// sgemm_packed(MatRef::row_major(&z, 1, 3)?, &backward, MatMut::row_major(&mut dh, 1, 2)?, false)?;
/// assert_eq!(dh, [-25.0, -61.0]);
/// // A wrong shape is refused.
/// let err = sgemm_packed(MatRef::row_major(&z, 1, 3)?, &forward, MatMut::row_major(&mut dh, 1, 2)?, false);
/// assert!(err.is_err());
/// # Ok::<(), loupe_core::kernels::gemm::GemmError>(())
/// ```
pub fn sgemm_packed(a: MatRef<'_>, b: &PackedB, c: MatMut<'_>, accumulate: bool) -> Result<(), GemmError> {
    drive(TileKind::detect(), a, PanelsB::Packed(b), c, accumulate, rayon::current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::tests::random;
    use crate::kernels::gemm::{k_slices, output_jobs, sgemm_on, MC, NC};
    use crate::kernels::gemm_tile::LINE;

    #[test]
    fn the_tiles_fetch_every_line_of_the_next_packed_block_once() {
        let (k, n) = (40, 100);
        let data = random(k * n, 7);
        let packed = PackedB::new(MatRef::row_major(&data, k, n).unwrap());
        // The block is one run of panels, cut into 7 tiles' shares.
        let got: Vec<usize> = (0..7)
            .flat_map(|p| PanelsB::Packed(&packed).lines((0, k, 0, n), p..p + 1, 7).indices())
            .collect();
        let len = n.div_ceil(NR) * NR * k;
        assert_eq!(got, (0..len).step_by(LINE).collect::<Vec<_>>());
    }

    /// `sgemm_packed`'s driver and `sgemm` on the same operands (B row-major or a
    /// transposed view, C with a padded row stride over random values), overwriting and
    /// accumulating: every bit the same, and the padding untouched. `sgemm` packs a
    /// transposed B panel by panel when A has at most `MC` rows (`gemm::run_panels`), so
    /// those cases also hold that loop to the block loop's bits.
    fn check(kind: TileKind, (m, k, n): (usize, usize, usize), b_t: bool, seed: u64) {
        let a_data = random(m * k, seed);
        let b_data = random(k * n, seed + 1);
        let a = MatRef::row_major(&a_data, m, k).unwrap();
        let b = if b_t {
            MatRef::row_major(&b_data, n, k).unwrap().transpose()
        } else {
            MatRef::row_major(&b_data, k, n).unwrap()
        };
        let packed = PackedB::new(b);
        assert_eq!(packed.shape(), (k, n));
        let ldc = n + 3;
        let old = random(m * ldc, seed + 2);
        for accumulate in [false, true] {
            let mut want = old.clone();
            sgemm_on(kind, a, b, MatMut::new(&mut want, m, n, ldc).unwrap(), accumulate).unwrap();
            let mut got = old.clone();
            drive(
                kind,
                a,
                PanelsB::Packed(&packed),
                MatMut::new(&mut got, m, n, ldc).unwrap(),
                accumulate,
                rayon::current_num_threads(),
            )
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&got) == bits(&want),
                "{kind:?} {m}x{k}x{n} b_t={b_t} acc={accumulate}: packed differs from sgemm"
            );
            for i in 0..m {
                let pad = i * ldc + n..(i + 1) * ldc;
                assert_eq!(got[pad.clone()], old[pad]);
            }
        }
    }

    #[test]
    fn packed_b_is_bit_identical_to_sgemm_on_edge_shapes_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let shapes = [
                (1, 1, 1),
                (6, 1, 16),
                (7, 3, 17),
                (5, 300, 15),
                (13, 257, 33),
                (MC + 7, KC + 1, NR * 3 + 5),
                (3, 2 * KC + 3, NC + NR + 1),
                (2, KC, NC),
                // A row-major B's next block copied by the tiles of the one before
                // (`gemm_tile::Carry`): four slices of whole panels over two row blocks,
                // the last slice partial.
                (MC + 7, 3 * KC + 5, 2 * NR),
                // B read whole by the row loop (`gemm::job::run_rows`): two slices, a
                // partial panel.
                (MC + 9, 2 * KC + 7, 29),
            ];
            for kind in TileKind::available() {
                for (s, &shape) in shapes.iter().enumerate() {
                    for b_t in [false, true] {
                        check(kind, shape, b_t, 10 * s as u64 + 1);
                    }
                }
            }
        });
    }

    #[test]
    fn packed_b_is_bit_identical_to_sgemm_on_the_parallel_and_split_k_paths() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            // Columns cut into jobs (one starting mid-way through a packed NC block, one
            // ending at a partial panel), rows cut, and split-K.
            assert!(output_jobs(16, NC + 57, 300, 3).len() > 1);
            assert!(output_jobs(400, 20, 40, 3).len() > 1);
            assert_eq!(k_slices(9, 20, 8 * KC * 3 + 5, 3), 3);
            for kind in TileKind::available() {
                for b_t in [false, true] {
                    check(kind, (16, 300, NC + 57), b_t, 3);
                    check(kind, (70, 50, 300), b_t, 4);
                    check(kind, (2 * MC + 5, 40, NC + 9), b_t, 5);
                    check(kind, (400, 40, 20), b_t, 6);
                    check(kind, (9, 8 * KC * 3 + 5, 20), b_t, 7);
                }
            }
        });
    }

    #[test]
    fn shapes_that_do_not_chain_are_refused_and_an_empty_b_zeroes_or_keeps_c() {
        let b = random(3 * 2, 1);
        let packed = PackedB::new(MatRef::row_major(&b, 3, 2).unwrap());
        let a = random(2 * 4, 2);
        let mut c = vec![0f32; 4];
        let err = sgemm_packed(
            MatRef::row_major(&a, 2, 4).unwrap(),
            &packed,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            GemmError::Shapes { a_rows: 2, a_cols: 4, b_rows: 3, b_cols: 2, c_rows: 2, c_cols: 2 }
        );
        let mut c3 = vec![0f32; 6];
        let err = sgemm_packed(
            MatRef::row_major(&a[..6], 2, 3).unwrap(),
            &packed,
            MatMut::row_major(&mut c3, 2, 3).unwrap(),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, GemmError::Shapes { c_cols: 3, b_cols: 2, .. }), "{err}");

        let empty = PackedB::new(MatRef::row_major(&[], 0, 3).unwrap());
        assert_eq!(empty.shape(), (0, 3));
        let a = MatRef::row_major(&[], 2, 0).unwrap();
        let mut c = vec![5.0f32; 6];
        sgemm_packed(a, &empty, MatMut::row_major(&mut c, 2, 3).unwrap(), true).unwrap();
        assert_eq!(c, vec![5.0; 6]);
        sgemm_packed(a, &empty, MatMut::row_major(&mut c, 2, 3).unwrap(), false).unwrap();
        assert_eq!(c, vec![0.0; 6]);
    }
}
