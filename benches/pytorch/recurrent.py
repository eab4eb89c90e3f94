"""The recurrent baselines of `loupe bench lstm` / `loupe bench gru` in PyTorch (CPU), for
docs/performance.md.

Not part of loupe or its CI. Run (any recent torch; the CPU wheel is enough):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benches/pytorch/recurrent.py --model lstm --threads 2 --batch 80
    /tmp/torchenv/bin/python benches/pytorch/recurrent.py --model gru --threads 2 --batch 80
    /tmp/torchenv/bin/python benches/pytorch/recurrent.py --model gru --recurrent-only

To compare the AVX2 code paths of both on a CPU with AVX-512 (`LOUPE_TILE=avx2 loupe bench`),
limit PyTorch's kernels the same way: `ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
ONEDNN_MAX_CPU_ISA=AVX2` (`torch.backends.cpu.get_cpu_capability()` then says AVX2).

The zoo's models (src/zoo.rs, docs/reference.md): per-frame L2-normalised 1152-d
early-concat frames (no input batch norm) read in temporal order by two stacked layers,
each video up to its own length (here every video has all its frames), the final states
concatenated (LSTM: [c1, h1, c2, h2] of 1024 each over 150 frames; GRU: [h1, h2] of 1200
each over 300 frames) and fed to a mixture of 2 experts over 3862 classes; BCE loss + MoE
L2; Adam with per-variable clipping to norm 1. `--recurrent-only` times `nn.LSTM` /
`nn.GRU` forward + backward alone (the issue's comparison). Times are medians after a
warm-up; prints ms/step, videos/s and peak RSS (VmHWM).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {"lstm": (150, 1024), "gru": (300, 1200)}


class Recurrent(nn.Module):
    """Two stacked layers; returns the concatenated final states."""

    def __init__(self, kind, d, h):
        super().__init__()
        cell = nn.LSTM if kind == "lstm" else nn.GRU
        self.kind = kind
        self.layers = nn.ModuleList([cell(d, h, batch_first=True), cell(h, h, batch_first=True)])

    def forward(self, x):
        states = []
        for layer in self.layers:
            x, last = layer(x)
            if self.kind == "lstm":
                h, c = last
                states += [c[0], h[0]]
            else:
                states.append(last[0])
        return torch.cat(states, dim=-1)


class MoE(nn.Module):
    def __init__(self, i, v, m):
        super().__init__()
        self.v, self.m = v, m
        self.gate = nn.Linear(i, v * (m + 1), bias=False)
        self.expert = nn.Linear(i, v * m)

    def forward(self, x):
        b = x.shape[0]
        gates = F.softmax(self.gate(x).reshape(b, self.v, self.m + 1), dim=-1)[..., : self.m]
        experts = torch.sigmoid(self.expert(x).reshape(b, self.v, self.m))
        return (gates * experts).sum(-1)

    def l2(self):
        return (self.gate.weight**2).sum() + (self.expert.weight**2).sum()


class Model(nn.Module):
    def __init__(self, kind, d=1152, classes=3862):
        super().__init__()
        _, h = SIZES[kind]
        self.pool = Recurrent(kind, d, h)
        width = 4 * h if kind == "lstm" else 2 * h
        self.moe = MoE(width, classes, 2)
        self.moe_l2 = 1e-8 if kind == "lstm" else 1e-6

    def forward(self, x):
        x = x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))
        return self.moe(self.pool(x))


def peak_rss_gib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def median_ms(f, warmup, iterations):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(SIZES), default="lstm")
    p.add_argument("--batch", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--recurrent-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    frames, h = SIZES[a.model]
    x = torch.randn(a.batch, frames, 1152)
    report = {"model": a.model, "batch": a.batch, "threads": a.threads, "frames": frames, "torch": torch.__version__}
    if a.recurrent_only:
        rnn = Recurrent(a.model, 1152, h)

        def fwd_bwd():
            rnn.zero_grad(set_to_none=True)
            rnn(x).sum().backward()

        report["recurrent_forward_backward_ms"] = median_ms(fwd_bwd, a.warmup, a.iterations)
    else:
        model = Model(a.model)
        y = (torch.rand(a.batch, 3862) < 0.002).float()
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)

        def forward():
            model.eval()
            with torch.no_grad():
                model(x)

        def loss():
            model.train()
            p = model(x).clamp(1e-7, 1 - 1e-7)
            return F.binary_cross_entropy(p, y, reduction="none").sum(-1).mean() + model.moe_l2 * model.moe.l2()

        def forward_backward():
            opt.zero_grad(set_to_none=True)
            loss().backward()

        def step():
            forward_backward()
            for q in model.parameters():
                torch.nn.utils.clip_grad_norm_([q], 1.0)
            opt.step()

        for name, f in [("forward", forward), ("forward_backward", forward_backward), ("train_step", step)]:
            ms, best = median_ms(f, a.warmup, a.iterations)
            report[name] = {"ms": ms, "min_ms": best, "videos_per_s": a.batch / ms * 1e3}
    report["peak_rss_gib"] = peak_rss_gib()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
