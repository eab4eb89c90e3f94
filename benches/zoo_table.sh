#!/usr/bin/env bash
# The per-model table of docs/performance.md: `loupe bench` for every zoo model (or the
# models named after `--`), one markdown row each, under a header that records the
# conditions (date, load average before and after, cores, the bench arguments).
#
#   benches/zoo_table.sh [BENCH ARGS...] [-- MODEL...]
#   benches/zoo_table.sh --batch 80 --threads 2            # the documented table
#   benches/zoo_table.sh --batch 4 --iterations 1 --warmup 0 -- gated-netvlad netfv
#
# BENCH ARGS go to every `loupe bench` (e.g. --batch, --threads, --iterations, --warmup,
# --composed). LOUPE names the binary (default: target/release/loupe, built if missing).
# A model whose bench fails gets a row saying so; the script goes on with the next.
set -euo pipefail

cd "$(dirname "$0")/.."
loupe="${LOUPE:-target/release/loupe}"
if [[ ! -x "$loupe" ]]; then
    cargo build --release --bin loupe >&2
fi

bench_args=()
models=()
while [[ $# -gt 0 ]]; do
    if [[ "$1" == "--" ]]; then
        shift
        models=("$@")
        break
    fi
    bench_args+=("$1")
    shift
done
if [[ ${#models[@]} -eq 0 ]]; then
    # `loupe models` prints a header line, then one model per line, its name first.
    mapfile -t models < <("$loupe" models | tail -n +2 | awk '{print $1}')
fi

echo "Conditions: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg),"
echo "\`loupe bench MODEL ${bench_args[*]:-} --markdown\` (times: median ms per step; CPU: user + system, all threads)."
echo
header_done=false
for model in "${models[@]}"; do
    if out=$("$loupe" bench "$model" "${bench_args[@]}" --markdown 2>&1); then
        if ! $header_done; then
            echo "$out" | head -n 2
            header_done=true
        fi
        echo "$out" | tail -n 1
    else
        echo "| $model | bench failed: $(echo "$out" | tail -n 1 | tr '|' '/') |"
    fi
done
echo
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
