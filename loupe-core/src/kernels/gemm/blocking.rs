//! The block sizes of [`super::sgemm`]: how the inner dimension, the rows and the columns
//! are cut so that the packed panels stay in the caches while the tiles use them.

use crate::kernels::gemm_tile::{MR, NR};

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
pub(super) const NC_TRANSPOSED: usize = 512;
const _: () = assert!(NC_TRANSPOSED.is_multiple_of(NR) && NC.is_multiple_of(NR));
