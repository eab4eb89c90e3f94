//! dfdx's `try_matmul` (gemm 0.15) against loupe's own [`crate::kernels::gemm::sgemm`] on
//! the model's shapes, timed alternately in one run (`loupe bench --gemm`): the square
//! `2048^3` product, the NetVLAD pooling's products, the hidden layer's forward
//! `80 x 278528 x 1024` and its two backward products, and the recurrences' per-frame
//! product and its transposed form. The per-video products run as the model runs them:
//! a batch of one product per video ([`sgemm_batch`], against dfdx's batched matmul).
//!
//! Both read the same values; dfdx reads transposed operands as permuted (strided)
//! tensors, loupe through [`MatRef::transpose`]. dfdx allocates its output from its cache
//! on every call, loupe overwrites a buffer made once.

use std::time::Instant;

use dfdx::prelude::*;

use crate::kernels::gemm::{sgemm_batch, MatRef, TileKind};

/// One product `C (m x n) = A (m x k) B (k x n)`, with either operand stored transposed, or
/// a batch of `count` such products, each with its own operands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GemmShape {
    /// What it is in the model.
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// A is stored as its `k x m` transpose (row-major).
    pub a_transposed: bool,
    /// B is stored as its `n x k` transpose (row-major).
    pub b_transposed: bool,
    /// Products per call (1: a single product).
    pub count: usize,
}

impl GemmShape {
    fn new(name: &str, (m, k, n): (usize, usize, usize), a_transposed: bool, b_transposed: bool) -> Self {
        GemmShape { name: name.to_string(), m, k, n, a_transposed, b_transposed, count: 1 }
    }

    /// The same product, `count` of them per call.
    fn batch(self, count: usize) -> Self {
        GemmShape { count, ..self }
    }

    /// `2 m k n` per product.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64 * self.count as f64
    }
}

/// The model's products at batch `batch`: `square^3`; the paper-size video NetVLAD (300
/// frames of 1,024 features, 256 clusters): the soft assignment `X W` of all the batch's
/// frames and its weight gradient `X^T dA`, the aggregation `X^T A` of each video and the
/// assignment's gradient `X dV` it sends back (a batch of `batch` products each); the
/// hidden layer (278,528 pooled inputs to 1,024 units) forward, weight gradient (`X^T dY`)
/// and input gradient (`dY W^T`); an LSTM's recurrent product with 1,024 cells (`h W`, `W`
/// 1024 x 4096) and the gradient it sends back (`d W^T`).
pub fn model_shapes(batch: usize, square: usize) -> Vec<GemmShape> {
    let (pooled, hidden, cells) = (278_528, 1024, 1024);
    let (frames, features, clusters) = (300, 1024, 256);
    vec![
        GemmShape::new("square", (square, square, square), false, false),
        GemmShape::new("netvlad assignment X W", (batch * frames, features, clusters), false, false),
        GemmShape::new("netvlad dW = X^T dA", (features, batch * frames, clusters), true, false),
        GemmShape::new("netvlad per video X^T A", (features, frames, clusters), true, false).batch(batch),
        GemmShape::new("netvlad per video X dV", (frames, features, clusters), false, false).batch(batch),
        GemmShape::new("hidden forward X W", (batch, pooled, hidden), false, false),
        GemmShape::new("hidden dW = X^T dY", (pooled, batch, hidden), true, false),
        GemmShape::new("hidden dX = dY W^T", (batch, hidden, pooled), false, true),
        GemmShape::new("recurrent h W", (batch, cells, 4 * cells), false, false),
        GemmShape::new("recurrent d W^T", (batch, 4 * cells, cells), false, true),
    ]
}

/// The medians of one shape.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GemmRow {
    pub shape: GemmShape,
    /// Median wall time of dfdx's `try_matmul`, ms.
    pub dfdx_ms: f64,
    /// Median wall time of [`crate::kernels::gemm::sgemm`], ms.
    pub loupe_ms: f64,
    /// Largest difference between the two outputs, relative to the largest output.
    pub max_relative_difference: f64,
}

impl GemmRow {
    pub fn dfdx_gflops(&self) -> f64 {
        self.shape.flops() / self.dfdx_ms / 1e6
    }
    pub fn loupe_gflops(&self) -> f64 {
        self.shape.flops() / self.loupe_ms / 1e6
    }
}

/// The row-major `dims` view of `data`, transposed when `transposed`.
fn view(data: &[f32], dims: (usize, usize), transposed: bool) -> MatRef<'_> {
    let v = MatRef::row_major(data, dims.0, dims.1).expect("sized by the caller");
    if transposed {
        v.transpose()
    } else {
        v
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Times `shape` `rounds` times each way, alternating (dfdx first), after one untimed
/// call of each, on the current rayon pool.
pub fn compare(dev: &Cpu, shape: &GemmShape, rounds: usize) -> GemmRow {
    let (m, k, n, count) = (shape.m, shape.k, shape.n, shape.count.max(1));
    let a_dims = if shape.a_transposed { (k, m) } else { (m, k) };
    let b_dims = if shape.b_transposed { (n, k) } else { (k, n) };
    let a: Tensor<(usize, usize, usize), f32, Cpu> = dev.sample_uniform_like(&(count, a_dims.0, a_dims.1));
    let b: Tensor<(usize, usize, usize), f32, Cpu> = dev.sample_uniform_like(&(count, b_dims.0, b_dims.1));
    let (a_host, b_host) = (a.as_vec(), b.as_vec());
    // The product's values when `keep` (the untimed reference), else dropped.
    let dfdx_product = |keep: bool| -> Option<Vec<f32>> {
        if count == 1 {
            // A single product on dfdx's 2-d path (the reshapes share the buffers).
            let (a, b) = (a.clone().reshape_like(&a_dims), b.clone().reshape_like(&b_dims));
            let a = if shape.a_transposed { a.permute::<_, Axes2<1, 0>>() } else { a };
            let b = if shape.b_transposed { b.permute::<_, Axes2<1, 0>>() } else { b };
            let c = a.matmul(b);
            keep.then(|| c.as_vec())
        } else {
            let a = if shape.a_transposed { a.clone().permute::<_, Axes3<0, 2, 1>>() } else { a.clone() };
            let b = if shape.b_transposed { b.clone().permute::<_, Axes3<0, 2, 1>>() } else { b.clone() };
            let c = a.matmul(b);
            keep.then(|| c.as_vec())
        }
    };
    let mut c = vec![0f32; count * m * n];
    let loupe_product = |c: &mut [f32]| {
        let (a_len, b_len) = (m * k, k * n);
        let operands = |v: usize| {
            (
                view(&a_host[v * a_len..][..a_len], a_dims, shape.a_transposed),
                view(&b_host[v * b_len..][..b_len], b_dims, shape.b_transposed),
            )
        };
        // A batch of one is `sgemm` itself.
        sgemm_batch(c, count, operands, false).expect("shapes chain");
    };
    let reference = dfdx_product(true).expect("kept");
    loupe_product(&mut c);
    let scale = reference.iter().fold(0f32, |s, v| s.max(v.abs())).max(f32::MIN_POSITIVE) as f64;
    let max_relative_difference =
        reference.iter().zip(&c).map(|(x, y)| (x - y).abs() as f64 / scale).fold(0.0, f64::max);
    drop(reference);
    let (mut dfdx_ms, mut loupe_ms) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        dfdx_product(false);
        dfdx_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        loupe_product(&mut c);
        loupe_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    GemmRow {
        shape: shape.clone(),
        dfdx_ms: median(dfdx_ms),
        loupe_ms: median(loupe_ms),
        max_relative_difference,
    }
}

/// The comparison as a table; `peak` (GFLOP/s of the cores, [`super::peak::peak_gflops`])
/// adds each rate's fraction of it.
pub fn table(rows: &[GemmRow], peak: Option<f64>) -> String {
    let pct = |g: f64| peak.map_or("-".to_string(), |p| format!("{:.0}%", 100.0 * g / p));
    let mut s = format!(
        "register tile: {:?}, {} threads\n{:<22} {:>22} {:>10} {:>10} {:>9} {:>6} {:>10} {:>6} {:>7} {:>9}\n",
        TileKind::detect(),
        rayon::current_num_threads(),
        "product",
        "m x k x n",
        "dfdx ms",
        "loupe ms",
        "dfdx GF/s",
        "%peak",
        "loupe GF/s",
        "%peak",
        "speedup",
        "max diff"
    );
    for r in rows {
        let sh = &r.shape;
        s.push_str(&format!(
            "{:<22} {:>22} {:>10.1} {:>10.1} {:>9.1} {:>6} {:>10.1} {:>6} {:>6.2}x {:>9.1e}\n",
            sh.name,
            match sh.count {
                1 => format!("{} x {} x {}", sh.m, sh.k, sh.n),
                count => format!("{count} x ({} x {} x {})", sh.m, sh.k, sh.n),
            },
            r.dfdx_ms,
            r.loupe_ms,
            r.dfdx_gflops(),
            pct(r.dfdx_gflops()),
            r.loupe_gflops(),
            pct(r.loupe_gflops()),
            r.dfdx_ms / r.loupe_ms,
            r.max_relative_difference
        ));
    }
    if let Some(p) = peak {
        s.push_str(&format!("cores' peak: {p:.1} GFLOP/s\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_products_agree_on_a_small_transposed_shape() {
        let dev = Cpu::seed_from_u64(1);
        let shape = GemmShape::new("t", (9, 40, 21), true, true);
        let row = compare(&dev, &shape, 1);
        assert!(row.max_relative_difference < 1e-5, "{row:?}");
        assert!(row.dfdx_ms > 0.0 && row.loupe_ms > 0.0);
        assert!(table(&[row], Some(100.0)).contains("9 x 40 x 21"));
        // A batch of products, each with its own operands, transposed.
        let batch = compare(&dev, &GemmShape::new("b", (7, 30, 11), true, true).batch(5), 1);
        assert!(batch.max_relative_difference < 1e-5, "{batch:?}");
        assert!(table(&[batch], None).contains("5 x (7 x 30 x 11)"));
        let hidden = model_shapes(80, 64).into_iter().find(|s| s.name == "hidden forward X W").unwrap();
        assert_eq!(hidden.flops(), 2.0 * 80.0 * 278_528.0 * 1024.0);
    }
}
