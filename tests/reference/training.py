"""Reference values of the training pieces: the cross-entropy loss on probabilities and
three steps of TensorFlow-style Adam with each gradient-clipping mode on a linear layer
y = x W^T + b whose objective is sum(y * R). Writes training.json."""
import numpy as np

from common import rng, write

EPS = 1e-5


def loss_case():
    r = rng(11)
    p = r.uniform(0.01, 0.99, size=(4, 6))
    y = (r.uniform(size=(4, 6)) < 0.3).astype(np.float64)
    loss = -(y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS)).sum(axis=1).mean()
    grad = -(y / (p + EPS) - (1 - y) / (1 - p + EPS)) / p.shape[0]
    return {"name": "cross_entropy", "tensors": {"probabilities": p, "labels": y, "loss": loss, "gradient": grad}}


def adam_case(name, clipping, clip_norm):
    r = rng(12)
    w = r.normal(size=(2, 3))
    b = r.normal(size=2)
    x = r.normal(size=(4, 3))
    rr = r.normal(size=(4, 2))
    lrs = [0.1, 0.05, 0.02]
    b1, b2, eps = 0.9, 0.999, 1e-8
    state = {"weight": [w.copy(), np.zeros_like(w), np.zeros_like(w)],
             "bias": [b.copy(), np.zeros_like(b), np.zeros_like(b)]}
    for t, lr in enumerate(lrs, start=1):
        # The objective is linear, so its gradients do not depend on the parameters.
        grads = {"weight": rr.T @ x * (1.0 + t), "bias": rr.sum(axis=0) * (1.0 + t)}
        if clipping == "per_variable":
            grads = {k: g * clip_norm / max(np.linalg.norm(g), clip_norm) for k, g in grads.items()}
        elif clipping == "global":
            norm = np.sqrt(sum((g * g).sum() for g in grads.values()))
            grads = {k: g * clip_norm / max(norm, clip_norm) for k, g in grads.items()}
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for k, g in grads.items():
            p, m, v = state[k]
            m[:] = b1 * m + (1 - b1) * g
            v[:] = b2 * v + (1 - b2) * g * g
            p[:] = p - lr_t * m / (np.sqrt(v) + eps)
    return {"name": name, "dims": {"steps": len(lrs)}, "tensors": {
        "weight": w, "bias": b, "input": x, "projection": rr, "learning_rates": np.array(lrs),
        "weight_after": state["weight"][0], "bias_after": state["bias"][0],
        "first_moment_weight": state["weight"][1], "second_moment_weight": state["weight"][2]}}


if __name__ == "__main__":
    write("training", [
        loss_case(),
        adam_case("adam_per_variable", "per_variable", 1.0),
        adam_case("adam_global", "global", 2.0),
        adam_case("adam_unclipped", "none", 0.0),
    ])
