//! `--device`: every command that runs a model takes it, and a device this build or this
//! machine cannot provide is a clear error with exit code 1, never a panic.

mod common;

use std::process::{Command, Output};

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe")).args(args).output().unwrap()
}

/// What the error must say when CUDA is asked for here.
fn expected_cuda_error() -> &'static [&'static str] {
    if cfg!(feature = "cuda") {
        // A CUDA build on a machine without a GPU (CI) or with one GPU (asking for 7).
        &["CUDA driver could not be initialised", "GPU 7 requested but this machine has"]
    } else {
        &["built without CUDA"]
    }
}

#[test]
fn unavailable_cuda_device_is_a_clear_error() {
    let dir = common::scratch_dir("cli-device");
    let d = dir.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["bench", "small-average", "--batch", "2", "--device", "cuda:7"],
        vec![
            "train",
            "--model",
            "small-average",
            "--train-data-pattern",
            "missing/*.tfrecord",
            "--device",
            "cuda:7",
        ],
        vec!["quickstart", "--dir", d, "--epochs", "1", "--quiet", "--device", "cuda:7"],
    ];
    for args in commands {
        let out = loupe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // `train` may fail on the missing data first; then the device is not reached.
        if args[0] == "train" && stderr.contains("missing/*.tfrecord") {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("--device cuda:7"), "{args:?} names the flag: {stderr}");
        assert!(expected_cuda_error().iter().any(|e| stderr.contains(e)), "{args:?}: {stderr}");
    }
}

#[test]
fn malformed_device_is_a_usage_error() {
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1"] {
        let out = loupe(&["bench", "small-average", "--device", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("expected `cpu`, `cuda` or `cuda:N`"), "{bad}: {stderr}");
    }
}

#[test]
fn loupe_tile_picks_the_register_tile_and_an_unknown_one_is_a_clear_error() {
    let bench = ["bench", "small-average", "--batch", "2", "--warmup", "0", "--iterations", "1", "--json"];
    let run = |tile: &str| {
        Command::new(env!("CARGO_BIN_EXE_loupe")).args(bench).env("LOUPE_TILE", tile).output().unwrap()
    };
    let out = run("portable");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"register_tile\":\"portable\""), "{stdout}");
    for bad in ["avx3", ""] {
        let out = run(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad:?}: {stderr}");
        assert!(stderr.contains(&format!("LOUPE_TILE={bad:?}")) && stderr.contains("portable"), "{stderr}");
    }
}
