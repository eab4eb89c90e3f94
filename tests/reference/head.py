"""Reference values for the input, hidden, gating and classifier layers (see common.py).

Straight from docs/reference.md sections 1, 3 and 4, in float64 numpy. The Mixture of Experts
is computed from the reference's flat matrices `Wg` (I x V(M+1), gate (v, m) at column
v(M+1)+m) and `We` (I x VM, column vM+m); the case also stores them rearranged under
loupe's checkpoint names (gate_weight I x V x M, dummy_gate_weight I x V,
expert_weight I x V x M), so the Rust test proves the two layouts agree.
"""
import numpy as np

from common import (batch_norm_decay, rng, l2_normalize, batch_norm_train, batch_norm_eval, sigmoid,
                    softmax, write)

# The layers under test are fresh (no updates yet): the first update's decay.
DECAY = batch_norm_decay(0)


def bn_params(r, c, prefix="bn."):
    """Non-trivial batch-norm parameters and running statistics."""
    return {
        prefix + "scale": r.normal(size=c) * 0.5 + 1.0,
        prefix + "shift": r.normal(size=c) * 0.5,
        prefix + "running_mean": r.normal(size=c) * 0.3,
        prefix + "running_var": r.uniform(0.5, 2.0, size=c),
    }


def bn_both(x, p, prefix="bn."):
    """Training output, evaluation output and running statistics after one training step."""
    train, mean, var = batch_norm_train(x, p[prefix + "scale"], p[prefix + "shift"])
    evaluation = batch_norm_eval(x, p[prefix + "scale"], p[prefix + "shift"],
                                 p[prefix + "running_mean"], p[prefix + "running_var"])
    after = {
        prefix + "running_mean_after": DECAY * p[prefix + "running_mean"] + (1 - DECAY) * mean,
        prefix + "running_var_after": DECAY * p[prefix + "running_var"] + (1 - DECAY) * var,
    }
    return train, evaluation, after


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def frame_input_case():
    # Section 1: per-frame L2 over the concatenated streams, then BN over all B*S rows.
    r = rng(101)
    b, s, f = 2, 3, 6
    x = r.normal(size=(b, s, f)) * 3.0 + 0.2
    p = bn_params(r, f)
    train, evaluation, after = bn_both(l2_normalize(x), p)
    return {"name": "frame_input", "dims": {"batch": b, "frames": s, "features": f},
            "tensors": {"input": x, **p, "output": train, "output_eval": evaluation, **after}}


def hidden_cases():
    # Section 4: h = x W + b (released), or BN(x W); optional ReLU6.
    cases = []
    for name, relu, scale in [("hidden", False, 1.0), ("hidden_relu6", True, 6.0)]:
        r = rng(102 if not relu else 103)
        b, i, o = 5, 6, 4
        x = r.normal(size=(b, i)) * scale  # scaled so that ReLU6 clips at both ends
        w = r.normal(size=(i, o))
        bias = r.normal(size=o) * 0.5
        h = x @ w + bias
        if relu:
            h = relu6(h)
            assert (h == 0.0).any() and (h == 6.0).any() and ((h > 0) & (h < 6)).any()
        cases.append({"name": name, "dims": {"batch": b, "in": i, "out": o},
                      "tensors": {"input": x, "weight": w, "bias": bias, "output": h}})
    r = rng(104)
    b, i, o = 5, 6, 4
    x = r.normal(size=(b, i)) * 3.0
    w = r.normal(size=(i, o))
    p = bn_params(r, o)
    p["bn.scale"] = p["bn.scale"] * 3.0  # wide enough for ReLU6 to clip at 6 too
    train, evaluation, after = bn_both(x @ w, p)
    cases.append({"name": "hidden_bn_relu6", "dims": {"batch": b, "in": i, "out": o},
                  "tensors": {"input": x, "weight": w, **p, "output": relu6(train),
                              "output_eval": relu6(evaluation), **after}})
    return cases


def gating_cases():
    cases = []
    # Section 3: Y = sigmoid(BN(X W)) * X.
    r = rng(105)
    b, n = 6, 5
    x = r.normal(size=(b, n))
    w = r.normal(size=(n, n)) / np.sqrt(n)
    p = bn_params(r, n)
    train, evaluation, after = bn_both(x @ w, p)
    cases.append({"name": "context_gating", "dims": {"batch": b, "n": n},
                  "tensors": {"input": x, "weight": w, **p, "output": sigmoid(train) * x,
                              "output_eval": sigmoid(evaluation) * x, **after}})
    # Without BN: sigmoid(X W + b) * X.
    r = rng(106)
    x = r.normal(size=(b, n))
    w = r.normal(size=(n, n))
    bias = r.normal(size=n)
    cases.append({"name": "biased_context_gating", "dims": {"batch": b, "n": n},
                  "tensors": {"input": x, "weight": w, "bias": bias,
                              "output": sigmoid(x @ w + bias) * x}})
    # GLU: (X W1 + b1) * sigmoid(X W2 + b2).
    r = rng(107)
    x = r.normal(size=(b, n))
    w1, w2 = r.normal(size=(n, n)), r.normal(size=(n, n))
    b1, b2 = r.normal(size=n), r.normal(size=n)
    cases.append({"name": "glu", "dims": {"batch": b, "n": n},
                  "tensors": {"input": x, "weight": w1, "bias": b1, "gate_weight": w2,
                              "gate_bias": b2, "output": (x @ w1 + b1) * sigmoid(x @ w2 + b2)}})
    # Probability gating: p * sigmoid(BN(p Wp)), on probabilities.
    r = rng(108)
    b, v = 6, 7
    prob = r.uniform(0.0, 1.0, size=(b, v))
    w = r.normal(size=(v, v)) / np.sqrt(v)
    p = bn_params(r, v)
    train, evaluation, after = bn_both(prob @ w, p)
    cases.append({"name": "probability_gating", "dims": {"batch": b, "classes": v},
                  "tensors": {"input": prob, "weight": w, **p, "output": sigmoid(train) * prob,
                              "output_eval": sigmoid(evaluation) * prob, **after}})
    return cases


def se_context_gating_case():
    # Lin et al. 2018, section 3.3 and figure 4, as their released code computes it:
    # Y = X * sigmoid(relu(BN(X W1)) W2), W1: N x N/r, W2: N/r x N, no biases.
    r = rng(112)
    b, n, red = 6, 8, 4
    x = r.normal(size=(b, n))
    w1 = r.normal(size=(n, n // red)) / np.sqrt(n)
    w2 = r.normal(size=(n // red, n)) * 1.5
    p = bn_params(r, n // red)
    train, evaluation, after = bn_both(x @ w1, p)
    return {"name": "se_context_gating", "dims": {"batch": b, "n": n, "reduction": red},
            "tensors": {"input": x, "squeeze_weight": w1, **p, "excite_weight": w2,
                        "output": x * sigmoid(np.maximum(train, 0.0) @ w2),
                        "output_eval": x * sigmoid(np.maximum(evaluation, 0.0) @ w2), **after}}


def dropout_case():
    # Lin et al. 2018, section 4.2: dropout 0.5 after pooling. Evaluation: the identity.
    r = rng(113)
    b, n = 4, 6
    x = r.normal(size=(b, n))
    return {"name": "dropout", "dims": {"batch": b, "n": n, "rate": 0.5},
            "tensors": {"input": x, "output_eval": x.copy()}}


def moe_case(name, seed, b, i, v, m):
    # Section 3, as the reference computes it from its flat matrices.
    r = rng(seed)
    h = r.normal(size=(b, i))
    wg = r.normal(size=(i, v * (m + 1)))
    we = r.normal(size=(i, v * m))
    be = r.normal(size=(v, m)) * 0.5
    gates = softmax((h @ wg).reshape(b * v, m + 1), axis=1)          # row b*V + v, slot m
    experts = sigmoid((h @ we).reshape(b * v, m) + np.tile(be, (b, 1)))
    p = (gates[:, :m] * experts).sum(axis=1).reshape(b, v)
    penalty = ((wg ** 2).sum() + (we ** 2).sum()) / 2
    # loupe's layout: the M real gate slots, the dummy slot, the experts per (v, m).
    wg3 = wg.reshape(i, v, m + 1)
    return {"name": name, "dims": {"batch": b, "in": i, "classes": v, "experts": m},
            "tensors": {"input": h, "reference_gate_matrix": wg, "reference_expert_matrix": we,
                        "gate_weight": wg3[:, :, :m], "dummy_gate_weight": wg3[:, :, m],
                        "expert_weight": we.reshape(i, v, m), "expert_bias": be,
                        "output": p, "penalty": np.array(penalty)}}


def logistic_case():
    r = rng(111)
    b, i, v = 5, 6, 4
    x = r.normal(size=(b, i))
    w = r.normal(size=(i, v))
    bias = r.normal(size=v)
    return {"name": "logistic", "dims": {"batch": b, "in": i, "classes": v},
            "tensors": {"input": x, "weight": w, "bias": bias, "output": sigmoid(x @ w + bias),
                        "penalty": np.array((w ** 2).sum() / 2)}}


if __name__ == "__main__":
    write("head", [frame_input_case()] + hidden_cases() + gating_cases()
          + [moe_case("moe", 109, 5, 6, 4, 2), moe_case("moe_three_experts", 110, 4, 3, 2, 3),
             logistic_case(), se_context_gating_case(), dropout_case()])
