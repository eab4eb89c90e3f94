//! `loupe bench MODEL`: times a zoo model's forward, forward + backward and training
//! step (see `loupe_core::bench`) and prints a table, one JSON object with `--json`, or
//! one markdown table row under its header with `--markdown` (`benches/zoo_table.sh`).
//! Under `mpirun -np N` it times the data-parallel training step of N ranks
//! (`loupe_core::bench::bench_model_across`); rank 0 prints.

use clap::Args;
use loupe::bench::{BenchConfig, BenchReport};
use loupe::distributed::Collective;
use loupe::jobs;

use super::error::CliError;
use super::job::{known, DeviceChoice};
use super::output::Output;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Zoo model by its CLI name (e.g. gated-netvlad, small-gated-netvlad).
    #[arg(required_unless_present = "gemm")]
    model: Option<String>,
    /// Instead of a model: dfdx's matmul against loupe's own sgemm on the model's
    /// products at `--batch` (`--iterations` alternating rounds each, medians), with the
    /// cores' peak rate.
    #[arg(long, conflicts_with_all = ["model", "composed", "json", "markdown"])]
    gemm: bool,
    /// Videos per batch.
    #[arg(long, default_value_t = 80, value_parser = at_least_one())]
    batch: usize,
    /// Untimed steps before timing each phase.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed steps per phase (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    iterations: usize,
    /// Threads for everything: the rayon pool that runs the fused kernels and that gemm
    /// (dfdx's matmul) takes its thread count from. Default: all cores.
    #[arg(long, value_parser = at_least_one())]
    threads: Option<usize>,
    /// Size n of the n x n x n matmul that measures the machine's rate.
    #[arg(long, default_value_t = 2048)]
    matmul_size: usize,
    /// Seed of the weights and of the random batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run the composed dfdx ops instead of loupe's fused CPU kernels (for comparison).
    #[arg(long)]
    composed: bool,
    /// Print one JSON object instead of the table.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print the markdown table header and one row (as `benches/zoo_table.sh` collects).
    #[arg(long)]
    markdown: bool,
    /// `cpu`, `cuda` or `cuda:N` (GPU N; needs a loupe built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

pub fn run(args: BenchArgs, out: &mut Output, collective: &dyn Collective) -> Result<(), CliError> {
    // The global pool, so that everything runs on this thread: MPI is initialised for
    // calls from the main thread only, and a CUDA context is bound to the thread that
    // makes it. The fused kernels and gemm take their threads from this pool.
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    pool.build_global().map_err(|e| CliError::context("starting the thread pool", e))?;
    let config = BenchConfig {
        batch: args.batch,
        warmup: args.warmup,
        iterations: args.iterations,
        matmul_size: args.matmul_size,
        seed: args.seed,
    };
    let Some(model) = args.model.clone() else {
        return gemm_report(&args, out);
    };
    loupe::kernels::set_fused(!args.composed);
    let report = known(&model, jobs::bench(&model, args.device.build(args.seed)?, &config, collective))?;
    let mut report = report.map_err(|e| CliError::context(format!("benchmarking `{model}`"), e))?;
    // Rows are named as the user names the model (the zoo name, not the Rust type).
    report.model = model;
    if args.markdown {
        out.line(format!("{}{}", BenchReport::markdown_header(), report.markdown_row()))
    } else if args.json {
        let json = serde_json::to_string(&report).map_err(|e| CliError::context("writing JSON", e))?;
        out.line(json)
    } else {
        out.line(report.table().trim_end())
    }
}

/// `loupe bench --gemm`: each product's row as soon as it is measured (the large ones take
/// seconds), then the table with the cores' peak rate.
fn gemm_report(args: &BenchArgs, out: &mut Output) -> Result<(), CliError> {
    use loupe::bench::gemm::{compare, model_shapes, table};
    // Measured first, on idle cores, as `loupe bench MODEL` does: measured after seconds of
    // products it once read half the rate (116.9 against 217-229 GFLOP/s in the same
    // session's model runs).
    let (peak, _) = loupe::bench::peak::peak_gflops(std::time::Duration::from_millis(300));
    let dev = loupe::dfdx::prelude::Cpu::seed_from_u64(args.seed);
    let mut rows = Vec::new();
    for shape in model_shapes(args.batch, args.matmul_size) {
        rows.push(compare(&dev, &shape, args.iterations));
        out.line(table(&rows[rows.len() - 1..], None).lines().last().unwrap_or_default())?;
    }
    out.line(table(&rows, Some(peak)).trim_end())
}
