"""The same work as `loupe bench` in PyTorch (CPU), for docs/performance.md.

Not part of loupe or its CI. Run (any recent torch; the CPU wheel is enough):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benches/pytorch/gated_netvlad.py --threads 2 --batch 80
    /tmp/torchenv/bin/python benches/pytorch/gated_netvlad.py --netvlad-only --batch 32 --clusters 64

To compare the AVX2 code paths of both on a CPU with AVX-512 (`LOUPE_TILE=avx2 loupe bench`),
limit PyTorch's kernels the same way: `ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
ONEDNN_MAX_CPU_ISA=AVX2` (`torch.backends.cpu.get_cpu_capability()` then says AVX2).

Gated NetVLAD as released (docs/reference.md sections 1-5): input BN over L2-normalised
1152-d frames, video NetVLAD (K=256) and audio NetVLAD (K=128) each with soft
assignment BN + softmax, residuals, intra and global L2; hidden FC 278528 -> 1024; CG
(BN); MoE with 2 experts over 3862 classes; probability CG (BN); BCE loss + MoE L2;
Adam with per-variable clipping to norm 1. Times forward (eval), forward+backward and a
full step as medians after warm-up, prints ms/step, videos/s and peak RSS (VmHWM).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def l2(x, dim=-1):
    return x * torch.rsqrt(torch.clamp((x * x).sum(dim, keepdim=True), min=1e-12))


class NetVLAD(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, k) / d**0.5)
        self.bn = nn.BatchNorm1d(k, eps=1e-3, momentum=0.001)
        self.c = nn.Parameter(torch.randn(d, k) / d**0.5)

    def forward(self, x):  # (B, T, D)
        b, t, d = x.shape
        a = x.reshape(b * t, d) @ self.w
        a = F.softmax(self.bn(a), dim=-1).reshape(b, t, -1)
        vlad = torch.bmm(x.transpose(1, 2), a) - a.sum(1, keepdim=True) * self.c  # (B, D, K)
        vlad = l2(vlad, dim=1)
        return l2(vlad.reshape(b, -1))


class CG(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, n) / n**0.5)
        self.bn = nn.BatchNorm1d(n, eps=1e-3, momentum=0.001)

    def forward(self, x):
        return torch.sigmoid(self.bn(x @ self.w)) * x


class MoE(nn.Module):
    def __init__(self, i, v, m):
        super().__init__()
        self.v, self.m = v, m
        self.gate = nn.Linear(i, v * (m + 1), bias=False)
        self.expert = nn.Linear(i, v * m)

    def forward(self, h):
        b = h.shape[0]
        g = F.softmax(self.gate(h).reshape(b, self.v, self.m + 1), dim=-1)[..., : self.m]
        e = torch.sigmoid(self.expert(h)).reshape(b, self.v, self.m)
        return (g * e).sum(-1)


class GatedNetVLAD(nn.Module):
    def __init__(self, kv=256, ka=128, hidden=1024, classes=3862):
        super().__init__()
        self.input_bn = nn.BatchNorm1d(1152, eps=1e-3, momentum=0.001)
        self.video = NetVLAD(1024, kv)
        self.audio = NetVLAD(128, ka)
        self.hidden = nn.Linear(1024 * kv + 128 * ka, hidden)
        self.cg = CG(hidden)
        self.moe = MoE(hidden, classes, 2)
        self.pg = CG(classes)

    def forward(self, frames):  # (B, T, 1152)
        b, t, f = frames.shape
        x = self.input_bn(l2(frames).reshape(b * t, f)).reshape(b, t, f)
        pooled = torch.cat([self.video(x[..., :1024]), self.audio(x[..., 1024:])], dim=1)
        return self.pg(self.moe(self.cg(self.hidden(pooled))))


def bce(p, y, eps=1e-5):
    return -(y * torch.log(p + eps) + (1 - y) * torch.log(1 - p + eps)).sum(1).mean()


def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def timed(fn, warmup, iters):
    """Median and fastest wall ms, and mean CPU ms (all threads), per call."""
    for _ in range(warmup):
        fn()
    samples = []
    cpu = time.process_time()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu) / iters * 1e3
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[0] * 1e3, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=80)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--netvlad-only", action="store_true", help="one NetVLAD layer, forward+backward of the sum")
    ap.add_argument("--clusters", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"threads": args.threads, "batch": args.batch, "frames": args.frames, "torch": torch.__version__}
    if args.netvlad_only:
        layer = NetVLAD(1024, args.clusters)
        x = torch.randn(args.batch, args.frames, 1024)

        def fb():
            layer.zero_grad(set_to_none=False)
            layer(x).sum().backward()

        result["netvlad_fwd_bwd_ms"] = timed(fb, args.warmup, args.iterations)
    else:
        model = GatedNetVLAD()
        x = torch.rand(args.batch, args.frames, 1152) * 2 - 1
        y = torch.zeros(args.batch, 3862)
        y[torch.arange(args.batch), torch.randint(0, 3862, (args.batch,))] = 1
        opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
        moe = model.moe

        def loss_fn():
            penalty = 0.5 * (moe.gate.weight.square().sum() + moe.expert.weight.square().sum())
            return bce(model(x), y) + 1e-6 * penalty

        def forward():
            model.eval()
            with torch.no_grad():
                model(x)
            model.train()

        def fb():
            opt.zero_grad(set_to_none=False)
            loss_fn().backward()

        def step():
            fb()
            for p in model.parameters():  # per-variable clipping to norm 1 (the reference's)
                torch.nn.utils.clip_grad_norm_([p], 1.0)
            opt.step()

        for name, fn in [("forward", forward), ("forward_backward", fb), ("train_step", step)]:
            ms, mn, cpu = timed(fn, args.warmup, args.iterations)
            result[name] = {"ms": ms, "min_ms": mn, "cpu_ms": cpu, "videos_per_s": args.batch / (ms / 1e3)}
        n = 4096
        a, b = torch.rand(n, n), torch.rand(n, n)
        a @ b
        best = timed(lambda: a @ b, 0, 3)[1]
        result["sgemm_gflops"] = 2 * n**3 / (best / 1e3) / 1e9
    result["peak_memory_bytes"] = peak_rss()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
