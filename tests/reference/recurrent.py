"""Reference values for the recurrent pooling layers and NeXtVLAD (see common.py).

Written from the cell equations (TensorFlow's BasicLSTMCell and GRUCell, docs/reference.md
section 2; NeXtVLAD from Lin et al. 2018 and its released code), one frame at a time
with `dynamic_rnn`'s `sequence_length` semantics (a video's state stops at its last
valid frame), not from loupe's Rust (which fuses the recurrence into one op and uses
0/1 masks).

Parameter layouts follow loupe's checkpoint names: gate weights are `(in, gates, H)`,
i.e. TensorFlow's kernel column `g * H + h`.
"""
import numpy as np

from common import batch_norm_decay, rng, sigmoid, softmax, batch_norm_train, batch_norm_eval, write

FORGET_BIAS = 1.0
# The layers under test are fresh (no updates yet): the first update's decay.
DECAY = batch_norm_decay(0)


def lstm_layer(x, lengths, p, prefix):
    """x (B, S, I) -> h_t for every t (B, S, H) and the final (c, h) at each length."""
    W = p[prefix + "input_weights"]
    U = p[prefix + "recurrent_weights"]
    b = p[prefix + "bias"]
    B, S, _ = x.shape
    H = U.shape[0]
    hs = np.zeros((B, S, H))
    finals = []
    for v in range(B):
        c = np.zeros(H)
        h = np.zeros(H)
        for t in range(S):
            if t < lengths[v]:
                z = np.einsum("i,igh->gh", x[v, t], W) + np.einsum("k,kgh->gh", h, U) + b
                i, j, f, o = z[0], z[1], z[2], z[3]
                c = c * sigmoid(f + FORGET_BIAS) + sigmoid(i) * np.tanh(j)
                h = np.tanh(c) * sigmoid(o)
            hs[v, t] = h
        finals.append((c, h))
    return hs, finals


def lstm(x, lengths, p):
    h1, f1 = lstm_layer(x, lengths, p, "layer1.")
    _, f2 = lstm_layer(h1, lengths, p, "layer2.")
    return np.stack([np.concatenate([f1[v][0], f1[v][1], f2[v][0], f2[v][1]]) for v in range(x.shape[0])])


def gru_layer(x, lengths, p, prefix):
    Wg, Ug, bg = p[prefix + "gate_input_weights"], p[prefix + "gate_recurrent_weights"], p[prefix + "gate_bias"]
    Wc, Uc, bc = p[prefix + "candidate_input_weights"], p[prefix + "candidate_recurrent_weights"], p[prefix + "candidate_bias"]
    B, S, _ = x.shape
    H = Uc.shape[0]
    hs = np.zeros((B, S, H))
    finals = []
    for v in range(B):
        h = np.zeros(H)
        for t in range(S):
            if t < lengths[v]:
                g = sigmoid(np.einsum("i,igh->gh", x[v, t], Wg) + np.einsum("k,kgh->gh", h, Ug) + bg)
                r, u = g[0], g[1]
                c = np.tanh(x[v, t] @ Wc + (r * h) @ Uc + bc)
                h = u * h + (1.0 - u) * c
            hs[v, t] = h
        finals.append(h)
    return hs, finals


def gru(x, lengths, p):
    h1, f1 = gru_layer(x, lengths, p, "layer1.")
    _, f2 = gru_layer(h1, lengths, p, "layer2.")
    return np.stack([np.concatenate([f1[v], f2[v]]) for v in range(x.shape[0])])


def lstm_params(r, F, H):
    p = {}
    for name, I in (("layer1.", F), ("layer2.", H)):
        p[name + "input_weights"] = r.normal(0.0, 0.6, size=(I, 4, H))
        p[name + "recurrent_weights"] = r.normal(0.0, 0.6, size=(H, 4, H))
        p[name + "bias"] = r.normal(0.0, 0.3, size=(4, H))
    return p


def gru_params(r, F, H):
    p = {}
    for name, I in (("layer1.", F), ("layer2.", H)):
        p[name + "gate_input_weights"] = r.normal(0.0, 0.6, size=(I, 2, H))
        p[name + "gate_recurrent_weights"] = r.normal(0.0, 0.6, size=(H, 2, H))
        p[name + "gate_bias"] = r.normal(1.0, 0.3, size=(2, H))
        p[name + "candidate_input_weights"] = r.normal(0.0, 0.6, size=(I, H))
        p[name + "candidate_recurrent_weights"] = r.normal(0.0, 0.6, size=(H, H))
        p[name + "candidate_bias"] = r.normal(0.0, 0.3, size=H)
    return p


def recurrent_case(name, seed, layer, B=2, S=5, F=4, H=3, lengths=(5, 3)):
    r = rng(seed)
    x = r.normal(0.0, 1.0, size=(B, S, F))
    p = (lstm_params if layer == "lstm" else gru_params)(r, F, H)
    pool = lstm if layer == "lstm" else gru
    tensors = dict(p)
    tensors["input"] = x
    tensors["lengths"] = np.array(lengths, dtype=np.float64)
    tensors["output"] = pool(x, lengths, p)
    tensors["output_all_frames"] = pool(x, [S] * B, p)
    return {"name": name, "dims": {"batch": B, "frames": S, "features": F, "hidden": H}, "tensors": tensors}


def l2_intra(v):
    """L2 over axis 1 (d) of (B, d, K), floor 1e-12 on the squared norm."""
    return v / np.sqrt(np.maximum((v * v).sum(axis=1, keepdims=True), 1e-12))


def next_vlad(x, lengths, p, train, G, K):
    """NeXtVLAD (Lin et al. 2018, released code), explicit sums over (t, g)."""
    B, S, F = x.shape
    FE = p["expansion_weights"].shape[1]
    gs = FE // G
    valid = np.array([[1.0 if t < lengths[v] else 0.0 for t in range(S)] for v in range(B)])
    xe = x @ p["expansion_weights"] + p["expansion_bias"]
    att = sigmoid(xe @ p["attention_weights"] + p["attention_bias"]) * valid[:, :, None]
    logits = xe @ p["assignment_weights"]
    stats = {}
    if train:
        y, mean, var = batch_norm_train(logits, p["assignment_bn.scale"], p["assignment_bn.shift"])
        stats["assignment_bn.running_mean_after"] = DECAY * p["assignment_bn.running_mean"] + (1 - DECAY) * mean
        stats["assignment_bn.running_var_after"] = DECAY * p["assignment_bn.running_var"] + (1 - DECAY) * var
    else:
        y = batch_norm_eval(logits, p["assignment_bn.scale"], p["assignment_bn.shift"],
                            p["assignment_bn.running_mean"], p["assignment_bn.running_var"])
    a = softmax(y.reshape(B, S, G, K), axis=-1)
    c = p["centers"].reshape(gs, K)
    v = np.zeros((B, gs, K))
    for b in range(B):
        for d in range(gs):
            for k in range(K):
                v[b, d, k] = sum(att[b, t, g] * a[b, t, g, k] * (xe[b, t, g * gs + d] - c[d, k])
                                 for t in range(S) for g in range(G))
    flat = l2_intra(v).reshape(B, gs * K)
    if train:
        out, mean, var = batch_norm_train(flat, p["vlad_bn.scale"], p["vlad_bn.shift"])
        stats["vlad_bn.running_mean_after"] = DECAY * p["vlad_bn.running_mean"] + (1 - DECAY) * mean
        stats["vlad_bn.running_var_after"] = DECAY * p["vlad_bn.running_var"] + (1 - DECAY) * var
    else:
        out = batch_norm_eval(flat, p["vlad_bn.scale"], p["vlad_bn.shift"],
                              p["vlad_bn.running_mean"], p["vlad_bn.running_var"])
    return out, stats


def bn(r, prefix, n):
    return {
        prefix + "scale": r.normal(1.0, 0.5, size=n),
        prefix + "shift": r.normal(0.0, 0.5, size=n),
        prefix + "running_mean": r.normal(0.0, 0.5, size=n),
        prefix + "running_var": r.uniform(0.5, 2.0, size=n),
    }


def next_vlad_case(seed, B=2, S=5, F=4, FE=8, G=2, K=3, lengths=(5, 3)):
    r = rng(seed)
    x = r.normal(0.0, 1.0, size=(B, S, F))
    gs = FE // G
    p = {
        "expansion_weights": r.normal(0.0, 0.6, size=(F, FE)),
        "expansion_bias": r.normal(0.0, 0.3, size=FE),
        "attention_weights": r.normal(0.0, 0.6, size=(FE, G)),
        "attention_bias": r.normal(0.0, 0.3, size=G),
        "assignment_weights": r.normal(0.0, 0.6, size=(FE, G * K)),
        "centers": r.normal(0.0, 0.6, size=gs * K),
    }
    p.update(bn(r, "assignment_bn.", G * K))
    p.update(bn(r, "vlad_bn.", gs * K))
    tensors = dict(p)
    tensors["input"] = x
    tensors["lengths"] = np.array(lengths, dtype=np.float64)
    for suffix, lens in (("", lengths), ("_all_frames", [S] * B)):
        out, stats = next_vlad(x, lens, p, True, G, K)
        tensors["output" + suffix] = out
        for name, value in stats.items():
            tensors[name + suffix] = value
        tensors["output_eval" + suffix], _ = next_vlad(x, lens, p, False, G, K)
    return {"name": "next_vlad", "dims": {"batch": B, "frames": S, "features": F, "expanded": FE,
                                          "groups": G, "clusters": K}, "tensors": tensors}


if __name__ == "__main__":
    write("recurrent", [
        recurrent_case("lstm", 11, "lstm"),
        recurrent_case("gru", 12, "gru"),
        next_vlad_case(13),
    ])
