//! The products against a naive one in f64 on every register tile (small, edge, parallel
//! and split-K shapes), the batch and single-thread paths against [`super::sgemm`]'s bits,
//! the tiles' fetches of the next block, and the refusals.

use super::blocking::NC_TRANSPOSED;
use super::*;
use crate::kernels::gemm_tile::{LINE, MR};

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

/// A `(m, k)` and B `(k, n)` over the given values, each row-major or the transpose of a
/// row-major matrix (columns contiguous).
fn operands<'d>(
    a_data: &'d [f32],
    b_data: &'d [f32],
    (m, k, n): (usize, usize, usize),
    a_t: bool,
    b_t: bool,
) -> (MatRef<'d>, MatRef<'d>) {
    let a = if a_t {
        MatRef::row_major(a_data, k, m).unwrap().transpose()
    } else {
        MatRef::row_major(a_data, m, k).unwrap()
    };
    let b = if b_t {
        MatRef::row_major(b_data, n, k).unwrap().transpose()
    } else {
        MatRef::row_major(b_data, k, n).unwrap()
    };
    (a, b)
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
    let (a, b) = operands(&a_data, &b_data, (m, k, n), a_t, b_t);
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
        // The row loop (`job::run_rows`): B whole, two slices, a partial panel; rows for
        // two blocks in each job when two or three threads cut them.
        (4 * MC + 9, 2 * KC + 7, 29),
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

/// Long sides are cut into up to four jobs per thread, unless each job would pack an
/// operand too large for the caches again: then one job per thread.
#[test]
fn jobs_per_thread_depend_on_the_operand_each_job_packs() {
    // 2048^3: every job packs all of A (4M values).
    assert_eq!(output_jobs(2048, 2048, 2048, 2).len(), 2);
    // The same output over a short inner dimension: A is 128K values, four jobs of 512.
    assert_eq!(output_jobs(2048, 2048, 64, 2).len(), 4);
    // The NetVLAD assignment product's rows: each job packs B (256K values), eight jobs.
    assert_eq!(output_jobs(24000, 256, 1024, 2).len(), 8);
    // Rows cut, B of 2M values: one job per thread.
    assert_eq!(output_jobs(24000, 2048, 1024, 2).len(), 2);
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
            let (a, b) = operands(&a_data, &b_data, (m, k, n), a_t, b_t);
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

/// The row loop (all of B packed first, each block of rows through every slice) gives the
/// bits of the block loop, for a whole product and for a job inside a larger C, whose
/// other values it leaves alone.
#[test]
fn the_row_loop_gives_the_bits_of_the_block_loop() {
    let cases = [
        ((2 * MC + 5, KC + 40, 40), false, false, (0, 0)),
        ((MC + 9, 2 * KC + 7, 29), true, true, (0, 0)),
        ((3 * MC, KC + 1, 3 * NR + 3), false, true, (MR, NR)),
    ];
    for kind in TileKind::available() {
        for (s, &((m, k, n), a_t, b_t, (row, col))) in cases.iter().enumerate() {
            let (a_data, b_data) = (random(m * k, 70 + s as u64), random(k * n, 80 + s as u64));
            let (a, b) = operands(&a_data, &b_data, (m, k, n), a_t, b_t);
            let job = |overwrite| job::Job { kind, a, rows: row..m, cols: col..n, ks: 0..k, overwrite };
            assert!(job::takes_row_loop(&job(true)), "{m}x{k}x{n} takes the row loop");
            for overwrite in [true, false] {
                let old = random(m * n, 90 + s as u64);
                let (mut by_rows, mut by_blocks) = (old.clone(), old.clone());
                let bufs = || (Vec::new(), Vec::new(), Vec::new());
                let (mut a1, mut b1, _) = bufs();
                job::run_rows(
                    job(overwrite),
                    PanelsB::Strided(b),
                    &CBase::new(&mut by_rows, n),
                    &mut a1,
                    &mut b1,
                );
                let (mut a2, mut b2, mut n2) = bufs();
                let base = CBase::new(&mut by_blocks, n);
                job::run_blocks(job(overwrite), PanelsB::Strided(b), &base, &mut a2, &mut b2, &mut n2);
                assert_eq!(by_rows, by_blocks, "{kind:?} {m}x{k}x{n} overwrite={overwrite}");
                // Outside the job's rectangle, C is untouched.
                for (i, (got, was)) in by_rows.chunks(n).zip(old.chunks(n)).enumerate() {
                    let kept = if i < row { 0..n } else { 0..col };
                    assert_eq!(got[kept.clone()], was[kept], "row {i}");
                }
                assert_ne!(by_rows, old, "the job wrote its rectangle");
            }
        }
    }
}

/// Packing a block of rows through every slice at once gives each slice's block where
/// `pack::pack_a` puts it on its own (a partial panel, a slice range starting off the
/// start of A, a partial last slice; A row-major and transposed).
#[test]
fn a_block_packed_through_every_slice_holds_each_slice_s_block() {
    let (m, k) = (3 * MR + 4, 2 * KC + 19);
    let data = random(m * k, 100);
    let (ic, mc, ks) = (MR, 2 * MR + 1, 3..k);
    for a_t in [false, true] {
        let (a, _) = operands(&data, &data, (m, k, 1), a_t, false);
        let mut all = Vec::new();
        pack::pack_a_slices(a, ic, mc, ks.clone(), &mut all);
        let blocks: Vec<&[f32]> = all.chunks(mc.div_ceil(MR) * MR * KC).collect();
        assert_eq!(blocks.len(), ks.len().div_ceil(KC));
        for (block, pc) in blocks.into_iter().zip(ks.clone().step_by(KC)) {
            let mut one = Vec::new();
            pack::pack_a(a, ic, mc, pc, KC.min(ks.end - pc), &mut one);
            assert_eq!(block, &one[..], "a_t={a_t}, slice from {pc}");
        }
    }
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
            (0..parts).flat_map(|p| PanelsB::Strided(b).lines(block, p..p + 1, parts).indices()).collect();
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
