//! Data-parallel runs under MPI: `mpirun -np 2 loupe ...` against one process.
//!
//! Needs the `mpi` feature and `mpirun` on the PATH (`.ci/run` installs OpenMPI):
//! `cargo test --features mpi --test distributed`. Every launch is bounded in time, so a
//! hanging rank fails the test instead of blocking CI.
//!
//! The trajectory tests use `small-video-moe` (video-level MoE: no batch statistics, no
//! frame sampling) with `--shuffle-buffer 1` (file order), so that the union of the two
//! ranks' batches is known: rank 0 reads `train0000`, rank 1 `train0001`, four videos a
//! step each. The one-process runs read `combined.tfrecord`, which holds the same videos
//! as eight-video batches of four from each shard, so one process with batch 8 sees
//! exactly the union of the ranks' batches at every step.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dfdx::prelude::Cpu;
use loupe::data::{RecordReader, RecordWriter};
use loupe::gradcheck::named_params;
use loupe::infer::Predictor;
use loupe::zoo::{SmallVideoMoe, ZooModel};

const LIMIT: Duration = Duration::from_secs(240);
const MODEL: &str = "small-video-moe";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    seconds: f64,
}

/// Runs `program args`, killed after `LIMIT`; output goes through files so a chatty
/// child cannot block on a full pipe.
fn run(program: &str, args: &[String], scratch: &Path) -> Run {
    let (out, err) = (scratch.join("stdout.txt"), scratch.join("stderr.txt"));
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (the distributed tests need OpenMPI's mpirun on the PATH)")
        });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {args:?} still running after {LIMIT:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        ok: status.success(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `loupe args` as one process.
fn single(args: &[String], scratch: &Path) -> Run {
    run(env!("CARGO_BIN_EXE_loupe"), args, scratch)
}

/// `loupe` as two MPI ranks; rank `r` gets `args` followed by `per_rank[r]`.
fn two_ranks(args: &[String], per_rank: [&[&str]; 2], scratch: &Path) -> Run {
    let mut mpirun = strings(&["--allow-run-as-root", "--oversubscribe"]);
    for (rank, extra) in per_rank.iter().enumerate() {
        if rank > 0 {
            mpirun.push(":".into());
        }
        mpirun.extend(strings(&["-np", "1", env!("CARGO_BIN_EXE_loupe")]));
        mpirun.extend(args.iter().cloned());
        mpirun.extend(strings(extra));
    }
    run("mpirun", &mpirun, scratch)
}

fn ok(run: Run) -> serde_json::Value {
    assert!(run.ok, "failed: {}", run.stderr);
    serde_json::from_str(run.stdout.lines().last().unwrap_or_default()).unwrap_or(serde_json::Value::Null)
}

struct Data {
    dir: common::ScratchDir,
    shards: Vec<PathBuf>,
    combined: PathBuf,
    validate: String,
}

/// Synthetic video-level data: two training shards of 32 videos, their batch-wise
/// interleaving (see the module docs), and three validation shards.
fn data(name: &str) -> Data {
    let dir = common::scratch_dir(&format!("distributed-{name}"));
    let out = dir.join("data");
    ok(single(
        &strings(&[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "5",
            "--classes",
            "10",
            "--train-videos",
            "64",
            "--validate-videos",
            "45",
            "--shards",
            "2",
            "--validate-shards",
            "3",
            "--min-frames",
            "2",
            "--max-frames",
            "4",
            "--rgb-size",
            "16",
            "--audio-size",
            "8",
            "--json",
        ]),
        &dir,
    ));
    let shards: Vec<PathBuf> = (0..2).map(|i| out.join(format!("video/train{i:04}.tfrecord"))).collect();
    let read = |path: &Path| {
        let mut reader = RecordReader::open(path).unwrap();
        let mut records = Vec::new();
        while let Some(r) = reader.read_record().unwrap() {
            records.push(r.to_vec());
        }
        records
    };
    let (a, b) = (read(&shards[0]), read(&shards[1]));
    assert_eq!((a.len(), b.len()), (32, 32));
    let combined = dir.join("combined.tfrecord");
    let mut writer = RecordWriter::create(&combined).unwrap();
    for (x, y) in a.chunks(4).zip(b.chunks(4)) {
        x.iter().chain(y).for_each(|r| writer.write_record(r).unwrap());
    }
    writer.finish().unwrap();
    let validate = out.join("video/validate*.tfrecord").to_str().unwrap().to_string();
    Data { dir, shards, combined, validate }
}

/// `loupe train` arguments: `files`, `batch` videos per rank, until step `steps`.
fn train_args(files: &[&Path], dir: &Path, batch: usize, steps: usize) -> Vec<String> {
    let mut args = strings(&["train", "--model", MODEL, "--train-data-pattern"]);
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
    args.extend(strings(&[
        "--train-dir",
        dir.to_str().unwrap(),
        "--batch-size",
        &batch.to_string(),
        "--max-steps",
        &steps.to_string(),
        "--shuffle-buffer",
        "1",
        "--base-learning-rate",
        "0.05",
        "--learning-rate-decay",
        "0.5",
        "--learning-rate-decay-examples",
        "16",
        "--quiet",
        "--json",
    ]));
    args
}

/// Every tensor of the latest checkpoint in `dir`.
fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    type Model = <SmallVideoMoe as ZooModel<f32, Cpu>>::Model;
    let (predictor, _) = Predictor::<Model, Cpu>::load(Cpu::default(), &dir.join("checkpoints")).unwrap();
    named_params(&predictor.model).into_iter().map(|p| (p.name, p.values)).collect()
}

/// Asserts equal weights to 1e-5 relative (absolute below 1e-2 in magnitude).
fn assert_same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let mut changed = false;
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        for (i, (x, y)) in x.iter().zip(y).enumerate() {
            let tol = 1e-5 * x.abs().max(y.abs()).max(1e-2);
            assert!((x - y).abs() <= tol, "{name}[{i}]: {x} in {} vs {y} in {}", a.display(), b.display());
        }
        changed |= x.iter().any(|v| *v != 0.0);
    }
    assert!(changed, "all weights zero");
}

#[test]
fn two_ranks_follow_one_process_with_twice_the_batch() {
    let d = data("trajectory");
    let shards: Vec<&Path> = d.shards.iter().map(PathBuf::as_path).collect();
    let one = d.dir.join("one");
    let s = ok(single(&train_args(&[&d.combined], &one, 8, 5), &d.dir));
    // Different device seeds per rank: rank 0's weights must be broadcast at the start.
    let two = d.dir.join("two");
    let t = ok(two_ranks(
        &train_args(&shards, &two, 4, 5),
        [&["--init-seed", "0"], &["--init-seed", "7"]],
        &d.dir,
    ));
    assert_eq!((s["steps"].as_u64(), t["steps"].as_u64()), (Some(5), Some(5)));
    // The schedule counts both ranks' videos.
    assert_eq!((s["examples_seen"].as_u64(), t["examples_seen"].as_u64()), (Some(40), Some(40)));
    let (ls, lt) = (s["final_loss"].as_f64().unwrap(), t["final_loss"].as_f64().unwrap());
    assert!((ls - lt).abs() <= 1e-5 * ls.abs(), "loss {ls} vs {lt}");
    assert_same_weights(&one, &two);
    // Only rank 0 wrote: one event file.
    assert_eq!(std::fs::read_dir(two.join("events")).unwrap().count(), 1);

    // Resuming a 1-process run on 2 ranks, and a 2-rank run on 1 process, continues the
    // same trajectory: the ranks skip the videos already seen and rank 0's checkpoint
    // (weights, Adam moments, counters) reaches every rank.
    let one_then_two = d.dir.join("one-then-two");
    ok(single(&train_args(&[&d.combined], &one_then_two, 8, 3), &d.dir));
    let mut resume = train_args(&shards, &one_then_two, 4, 5);
    resume.push("--resume".into());
    let r = ok(two_ranks(&resume, [&[], &["--init-seed", "9"]], &d.dir));
    assert_eq!(r["examples_seen"].as_u64(), Some(40));
    assert_same_weights(&one, &one_then_two);

    let two_then_one = d.dir.join("two-then-one");
    ok(two_ranks(&train_args(&shards, &two_then_one, 4, 3), [&[], &[]], &d.dir));
    let mut resume = train_args(&[&d.combined], &two_then_one, 8, 5);
    resume.push("--resume".into());
    ok(single(&resume, &d.dir));
    assert_same_weights(&one, &two_then_one);
}

#[test]
fn eval_predict_and_embed_on_two_ranks_equal_one_process() {
    let d = data("eval");
    let shards: Vec<&Path> = d.shards.iter().map(PathBuf::as_path).collect();
    let trained = d.dir.join("trained");
    ok(single(&train_args(&shards, &trained, 8, 6), &d.dir));
    let checkpoint = trained.join("checkpoints");
    let eval = strings(&[
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--eval-data-pattern",
        &d.validate,
        "--batch-size",
        "7",
        "--json",
    ]);
    let (one, two) = (ok(single(&eval, &d.dir)), ok(two_ranks(&eval, [&[], &[]], &d.dir)));
    assert_eq!(two["videos"].as_u64(), Some(45));
    for metric in ["gap", "hit_at_1", "perr", "map"] {
        let (a, b) = (one[metric].as_f64().unwrap(), two[metric].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6, "{metric}: {a} on one process, {b} on two ranks");
    }
    assert!(one["gap"].as_f64().unwrap() > 0.0);

    let csv = |name: &str| d.dir.join(name);
    let predict = |out: &Path| {
        strings(&[
            "predict",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--input-data-pattern",
            &d.validate,
            "--top-k",
            "5",
            "--output-file",
            out.to_str().unwrap(),
        ])
    };
    assert!(single(&predict(&csv("one.csv")), &d.dir).ok);
    let two = two_ranks(&predict(&csv("two.csv")), [&[], &[]], &d.dir);
    assert!(two.ok, "{}", two.stderr);
    let (a, b) =
        (std::fs::read_to_string(csv("one.csv")).unwrap(), std::fs::read_to_string(csv("two.csv")).unwrap());
    assert_eq!(a.lines().count(), 46);
    assert_eq!(a, b, "the two-rank CSV differs");

    // embed: files dealt to the ranks, rank 0 writes every vector in file order.
    let embed = |out: &Path| {
        strings(&[
            "embed",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--input-data-pattern",
            &d.validate,
            "--layer",
            "pooled",
            "--batch-size",
            "7",
            "--output",
            out.to_str().unwrap(),
        ])
    };
    assert!(single(&embed(&csv("one.npy")), &d.dir).ok);
    let two = two_ranks(&embed(&csv("two.npy")), [&[], &[]], &d.dir);
    assert!(two.ok, "{}", two.stderr);
    let (ids_one, ids_two) = (
        std::fs::read_to_string(csv("one.ids.txt")).unwrap(),
        std::fs::read_to_string(csv("two.ids.txt")).unwrap(),
    );
    assert_eq!(ids_one.lines().count(), 45);
    assert_eq!(ids_one, ids_two, "the two-rank ids differ");
    let (one, two) = (std::fs::read(csv("one.npy")).unwrap(), std::fs::read(csv("two.npy")).unwrap());
    assert_eq!(one.len(), two.len());
    let values = |b: &[u8]| -> Vec<f32> {
        let start = 10 + u16::from_le_bytes([b[8], b[9]]) as usize;
        b[start..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    for (i, (x, y)) in values(&one).iter().zip(values(&two)).enumerate() {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "value {i}: {x} on one process, {y} on two ranks");
    }
}

#[test]
fn bench_times_the_two_rank_step_and_its_all_reduce() {
    let dir = common::scratch_dir("distributed-bench");
    let args = strings(&[
        "bench",
        MODEL,
        "--batch",
        "4",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--iterations",
        "3",
        "--matmul-size",
        "64",
        "--json",
    ]);
    let run = two_ranks(&args, [&[], &[]], &dir);
    assert!(run.ok, "failed: {}", run.stderr);
    // Rank 0 alone prints: one report.
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ranks"].as_u64(), Some(2));
    assert_eq!(report["batch"].as_u64(), Some(4));
    let phases = report["phases"].as_array().unwrap();
    let phase = |name: &str| phases.iter().find(|p| p["phase"] == name).unwrap();
    let step = phase("train_step");
    let all_reduce = step["all_reduce_ms"].as_f64().unwrap();
    let step_ms = step["ms"].as_f64().unwrap();
    // Each timed all-reduce lies inside its timed step, so their medians are ordered too.
    assert!(all_reduce > 0.0 && all_reduce < step_ms, "{step}");
    // Global videos/s: both ranks' 4 videos per step.
    let videos = step["videos_per_s"].as_f64().unwrap();
    assert!((videos - 8.0 / (step_ms / 1e3)).abs() <= 1e-9 * videos, "{step}");
    // The phases without communication have no all-reduce time.
    assert!(phase("forward").get("all_reduce_ms").is_none(), "{phases:?}");
    let memory = report["peak_memory_bytes_per_rank"].as_array().unwrap();
    assert_eq!(memory.len(), 2);
    assert!(memory.iter().all(|m| m.as_u64().unwrap() > 0), "{memory:?}");

    // One process: the report as before (no ranks, no all-reduce).
    let one: serde_json::Value = ok(single(&args, &dir));
    assert!(one.get("ranks").is_none() && one.get("peak_memory_bytes_per_rank").is_none(), "{one}");
    assert!(one["phases"].as_array().unwrap().iter().all(|p| p.get("all_reduce_ms").is_none()), "{one}");
}

#[test]
fn fp16_gradients_stay_within_the_rounding_bound_of_f32() {
    // The same 2-rank run with the gradients sent as halves and as f32. Each step, a
    // gradient is rounded to half twice (each rank's weighted part, then the sum), each
    // time by at most 2^-11 relative (11 significant bits). Adam's direction m/sqrt(v)
    // moves by at most 2 x that relative error of the gradients (numerator and
    // denominator) times sum_i w_i |g_i| / sqrt(sum_i u_i g_i^2) <= sqrt(sum_i w_i^2 / u_i),
    // which is 1.011 after 5 steps (w, u: the bias-corrected weights of beta1 0.9 and
    // beta2 0.999); per-variable clipping rescales by a norm off by the same 2 x 2^-11.
    // So a weight differs by at most (2 + 2) x 2 x 2^-11 x 1.011 x sum of the learning
    // rates (0.05, 0.05, 0.025, 0.025, 0.0125 with these flags), about 6.4e-4, to first
    // order, when the ranks' gradients do not cancel; the test allows 1e-3.
    let d = data("fp16");
    let shards: Vec<&Path> = d.shards.iter().map(PathBuf::as_path).collect();
    let (full, half) = (d.dir.join("f32"), d.dir.join("fp16"));
    ok(two_ranks(&train_args(&shards, &full, 4, 5), [&[], &[]], &d.dir));
    let mut args = train_args(&shards, &half, 4, 5);
    args.push("--allreduce-fp16".into());
    ok(two_ranks(&args, [&[], &[]], &d.dir));
    let (wa, wb) = (weights(&full), weights(&half));
    let mut largest = 0.0f32;
    let mut differ = false;
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        for (i, (x, y)) in x.iter().zip(y).enumerate() {
            assert!((x - y).abs() <= 1e-3, "{name}[{i}]: {x} with f32 gradients, {y} with fp16");
            largest = largest.max((x - y).abs());
            differ |= x != y;
        }
    }
    // The flag reached the reduction: the weights are not bit for bit those of f32.
    assert!(differ, "--allreduce-fp16 changed nothing");
    eprintln!("largest weight difference with fp16 gradients: {largest:e}");
}

#[test]
fn a_corrupt_file_on_one_rank_ends_the_job_naming_the_file() {
    let d = data("corrupt");
    // Damage rank 1's shard past its first records: its reader fails mid-training while
    // rank 0 waits in the gradient all-reduce.
    let mut bytes = std::fs::read(&d.shards[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 16].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&d.shards[1], bytes).unwrap();
    let shards: Vec<&Path> = d.shards.iter().map(PathBuf::as_path).collect();
    let run = two_ranks(&train_args(&shards, &d.dir.join("corrupt"), 4, 8), [&[], &[]], &d.dir);
    assert!(!run.ok, "a corrupt shard trained without error");
    assert!(run.stderr.contains("train0001.tfrecord"), "the error does not name the file: {}", run.stderr);
    assert!(run.stderr.contains("rank 1 of 2"), "{}", run.stderr);
    assert!(run.seconds < 60.0, "the job took {} s to end", run.seconds);
    // With --skip-corrupt the job goes on, and its summary counts what rank 1 skipped:
    // the same as one process reading rank 1's file alone (rank 0's file is intact).
    let skipping = |files: &[&Path], name: &str| {
        let mut args = train_args(files, &d.dir.join(name), 4, 8);
        args.push("--skip-corrupt".into());
        args
    };
    let alone = ok(single(&skipping(&shards[1..], "alone"), &d.dir));
    let two = ok(two_ranks(&skipping(&shards, "skipping"), [&[], &[]], &d.dir));
    let (a, t) = (&alone["skipped"]["training"], &two["skipped"]["training"]);
    let skipped = |v: &serde_json::Value| {
        v["skipped_records"].as_u64().unwrap() + v["abandoned_files"].as_u64().unwrap()
    };
    assert!(skipped(a) > 0, "the damage went unnoticed: {alone}");
    assert_eq!(
        (t["skipped_records"].as_u64(), t["abandoned_files"].as_u64(), &t["reasons"]),
        (a["skipped_records"].as_u64(), a["abandoned_files"].as_u64(), &a["reasons"]),
        "two ranks: {two}"
    );
    // eval and predict with --skip-corrupt: rank 0 reports the skips of both ranks, the
    // same as one process reading the damaged file alone.
    let checkpoint = d.dir.join("alone/checkpoints");
    let inference = |command: &str, flag: &str, files: &[&Path]| {
        let mut args = strings(&[command, "--checkpoint", checkpoint.to_str().unwrap(), flag]);
        args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
        args.push("--skip-corrupt".into());
        args
    };
    let eval = |files: &[&Path], two: bool| {
        let mut args = inference("eval", "--eval-data-pattern", files);
        args.push("--json".into());
        ok(if two { two_ranks(&args, [&[], &[]], &d.dir) } else { single(&args, &d.dir) })
    };
    let (alone, two) = (eval(&shards[1..], false), eval(&shards, true));
    let (a, t) = (&alone["skipped"], &two["skipped"]);
    assert!(skipped(a) > 0, "the damage went unnoticed: {alone}");
    assert_eq!(
        (t["skipped_records"].as_u64(), t["abandoned_files"].as_u64(), &t["reasons"]),
        (a["skipped_records"].as_u64(), a["abandoned_files"].as_u64(), &a["reasons"]),
        "eval on two ranks: {two}"
    );
    // predict prints its skip summary on stderr: one line, rank 0's, with both ranks' counts.
    let summary = |run: Run| {
        assert!(run.ok, "failed: {}", run.stderr);
        let lines: Vec<String> =
            run.stderr.lines().filter(|l| l.starts_with("input data:")).map(str::to_string).collect();
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        lines[0].clone()
    };
    let predict = |files: &[&Path]| inference("predict", "--input-data-pattern", files);
    let alone = summary(single(&predict(&shards[1..]), &d.dir));
    let two = summary(two_ranks(&predict(&shards), [&[], &[]], &d.dir));
    assert_eq!(two, alone);
    // Fewer files than ranks is a clear error too.
    let run = two_ranks(&train_args(&shards[..1], &d.dir.join("few"), 4, 2), [&[], &[]], &d.dir);
    assert!(!run.ok && run.stderr.contains("1 training files for 2 ranks"), "{}", run.stderr);
}

#[test]
fn shuffled_two_rank_runs_repeat_and_resume_exactly() {
    // With shuffling, each rank's data order depends only on the seed (and its files),
    // so a run repeats bit for bit, and resuming on the same number of ranks continues it.
    let d = data("shuffled");
    let shards: Vec<&Path> = d.shards.iter().map(PathBuf::as_path).collect();
    let args = |dir: &Path, steps: usize| {
        let mut a = train_args(&shards, dir, 4, steps);
        let at = a.iter().position(|x| x == "--shuffle-buffer").unwrap();
        a[at + 1] = "8".into();
        a.extend(strings(&["--seed", "3"]));
        a
    };
    let (straight, again, resumed) = (d.dir.join("straight"), d.dir.join("again"), d.dir.join("resumed"));
    ok(two_ranks(&args(&straight, 6), [&[], &[]], &d.dir));
    ok(two_ranks(&args(&again, 6), [&[], &[]], &d.dir));
    ok(two_ranks(&args(&resumed, 3), [&[], &[]], &d.dir));
    let mut resume = args(&resumed, 6);
    resume.push("--resume".into());
    ok(two_ranks(&resume, [&[], &[]], &d.dir));
    let file = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000006.safetensors")).unwrap();
    assert!(file(&straight) == file(&again), "two runs with the same seed differ");
    assert!(file(&straight) == file(&resumed), "the resumed run differs");
}

#[test]
fn a_model_with_batch_norm_trains_as_well_on_two_ranks() {
    // Batch norm normalises each rank's batch alone, so the runs differ, but the GAP
    // reached is in the same band.
    let dir = common::scratch_dir("distributed-bn");
    let out = dir.join("data");
    ok(single(
        &strings(&[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "3",
            "--classes",
            "10",
            "--train-videos",
            "600",
            "--validate-videos",
            "200",
            "--shards",
            "4",
            "--min-frames",
            "10",
            "--max-frames",
            "20",
            "--rgb-size",
            "16",
            "--audio-size",
            "8",
            "--no-video-level",
        ]),
        &dir,
    ));
    let train = |batch: usize, name: &str| {
        strings(&[
            "train",
            "--model",
            "small-soft-bow",
            "--train-data-pattern",
            out.join("frame/train*").to_str().unwrap(),
            "--eval-data-pattern",
            out.join("frame/validate*").to_str().unwrap(),
            "--train-dir",
            dir.join(name).to_str().unwrap(),
            "--batch-size",
            &batch.to_string(),
            "--num-epochs",
            "3",
            "--base-learning-rate",
            "0.01",
            "--quiet",
            "--json",
        ])
    };
    let one = ok(single(&train(32, "one"), &dir));
    let two = ok(two_ranks(&train(16, "two"), [&[], &[]], &dir));
    let (a, b) = (one["metrics"]["gap"].as_f64().unwrap(), two["metrics"]["gap"].as_f64().unwrap());
    assert_eq!(two["metrics"]["videos"].as_u64(), Some(200));
    // Measured here: 0.835 on one process, 0.794 on two ranks.
    assert!(a > 0.7 && b > 0.7 && (a - b).abs() < 0.1, "GAP {a} on one process, {b} on two ranks");
    // Gradients sent as halves (--allreduce-fp16) train to the same band.
    let mut compressed = train(16, "two-fp16");
    compressed.push("--allreduce-fp16".into());
    let c = ok(two_ranks(&compressed, [&[], &[]], &dir))["metrics"]["gap"].as_f64().unwrap();
    assert!(c > 0.7 && (a - c).abs() < 0.1, "GAP {a} on one process, {c} on two ranks with fp16 gradients");
}
