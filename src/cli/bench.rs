//! `loupe bench MODEL`: times a zoo model's forward, forward + backward and training
//! step (see `loupe_core::bench`) and prints a table, one JSON object with `--json`, or
//! one markdown table row under its header with `--markdown` (`benches/zoo_table.sh`).

use clap::Args;
use loupe::bench::{bench_model, BenchConfig, BenchReport};
use loupe::dfdx::prelude::{BuildOnDevice, Cpu};
use loupe::train::TrainError;

use super::{CliError, Output};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Zoo model by its CLI name (e.g. gated-netvlad, small-gated-netvlad).
    model: String,
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
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// The zoo's names, as the cause of an unknown-model error.
#[derive(Debug)]
struct KnownModels;

impl std::fmt::Display for KnownModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "known models: {}", loupe::zoo::NAMES.join(", "))
    }
}

impl std::error::Error for KnownModels {}

macro_rules! bench_by_name {
    ($($name:literal => $model:path),* $(,)?) => {
        /// Benchmarks the zoo model called `name`; `None` for an unknown name.
        fn bench_named(name: &str, config: &BenchConfig) -> Option<Result<BenchReport, TrainError>> {
            match name {
                $($name => Some(bench_model::<<$model as BuildOnDevice<Cpu, f32>>::Built>(config)),)*
                _ => None,
            }
        }
    };
}
loupe::for_each_model!(bench_by_name);

pub fn run(args: BenchArgs, out: &mut Output) -> Result<(), CliError> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().map_err(|e| CliError::context("starting the thread pool", e))?;
    let config = BenchConfig {
        batch: args.batch,
        warmup: args.warmup,
        iterations: args.iterations,
        matmul_size: args.matmul_size,
        seed: args.seed,
    };
    let composed = args.composed;
    let report = pool.install(|| {
        loupe::kernels::set_fused(!composed);
        bench_named(&args.model, &config)
    });
    let report = match report {
        None => {
            return Err(CliError::context(format!("unknown model `{}`", args.model), KnownModels))
        }
        Some(r) => r.map_err(|e| CliError::context(format!("benchmarking `{}`", args.model), e))?,
    };
    if args.markdown {
        out.line(format!("{}{}", BenchReport::markdown_header(), report.markdown_row()))
    } else if args.json {
        let json = serde_json::to_string(&report).map_err(|e| CliError::context("writing JSON", e))?;
        out.line(json)
    } else {
        out.line(report.table().trim_end())
    }
}
