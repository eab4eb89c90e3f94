"""Shared helpers of the reference scripts: seeded float64 inputs and a JSON writer.

Each script `<family>.py` in this folder computes the paper's layers in float64 numpy,
straight from the formulas of docs/reference.md, and writes `<family>.json`, which the Rust
tests `tests/layers_<family>.rs` compare against. Run: `python3 tests/reference/<family>.py`
(numpy only). The JSON files are committed, so the tests need no Python.

JSON layout: {"cases": [{"name", "dims": {...}, "tensors": {name: {"shape", "values"}}}]}
with parameters under their checkpoint names and inputs/outputs under `input`, `output`,
`output_eval`, ... Values are row-major.
"""
import json
import os

import numpy as np


def rng(seed):
    return np.random.default_rng(seed)


def l2_normalize(x, axis=-1):
    """x * rsqrt(max(sum x^2, 1e-12)) along `axis` (docs/reference.md section 1)."""
    return x / np.sqrt(np.maximum((x * x).sum(axis=axis, keepdims=True), 1e-12))


def batch_norm_train(x, scale, shift, eps=1e-3):
    """Batch statistics over all rows (every axis but the last), biased variance."""
    rows = tuple(range(x.ndim - 1))
    mean = x.mean(axis=rows)
    var = ((x - mean) ** 2).mean(axis=rows)
    return scale * (x - mean) / np.sqrt(var + eps) + shift, mean, var


def batch_norm_eval(x, scale, shift, running_mean, running_var, eps=1e-3):
    return scale * (x - running_mean) / np.sqrt(running_var + eps) + shift


def batch_norm_decay(updates):
    """The running averages' decay at update number `updates` (0-based):
    min(0.999, (1 + t) / (10 + t)), TensorFlow's ExponentialMovingAverage with num_updates."""
    return min(0.999, (1.0 + updates) / (10.0 + updates))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def tensor(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "values": [float(v) for v in a.reshape(-1)]}


def write(family, cases):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), family + ".json")
    out = {
        "generator": "tests/reference/%s.py" % family,
        "cases": [
            {"name": c["name"], "dims": c.get("dims", {}),
             "tensors": {k: tensor(v) for k, v in c["tensors"].items()}}
            for c in cases
        ],
    }
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, len(cases), "cases")
