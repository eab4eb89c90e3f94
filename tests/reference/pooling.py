"""Reference values for the pooling layers (see common.py): docs/reference.md section 2.

Written straight from the formulas with explicit loops over (b, d, k) and sums over t,
not from loupe's Rust (which uses matmuls and expanded squares). Flattening is d-major
(index d*K + k), the reference's order, which loupe documents and uses.
"""
import numpy as np

from common import batch_norm_decay, rng, l2_normalize, batch_norm_train, batch_norm_eval, softmax, write

# The layers under test are fresh (no updates yet): the first update's decay.
DECAY = batch_norm_decay(0)
SIGMA_EPS = 1e-6


def bn_params(r, k, prefix):
    return {
        prefix + "bn.scale": r.normal(1.0, 0.5, size=k),
        prefix + "bn.shift": r.normal(0.0, 0.5, size=k),
        prefix + "bn.running_mean": r.normal(0.0, 0.5, size=k),
        prefix + "bn.running_var": r.uniform(0.5, 2.0, size=k),
    }


def assign(x, p, prefix, train):
    """a = softmax_over_K(BN(X W)); BN over all B*S rows. Returns a (B,S,K) and stats."""
    logits = np.einsum("bsd,dk->bsk", x, p[prefix + "weights"])
    scale, shift = p[prefix + "bn.scale"], p[prefix + "bn.shift"]
    if train:
        y, mean, var = batch_norm_train(logits, scale, shift)
    else:
        y = batch_norm_eval(logits, scale, shift, p[prefix + "bn.running_mean"], p[prefix + "bn.running_var"])
        mean = var = None
    return softmax(y, axis=-1), mean, var


def flatten_d_major(v):
    """(B, D, K) -> (B, D*K), index d*K + k."""
    return v.reshape(v.shape[0], -1)


def net_vlad(a, x, c):
    B, S, D = x.shape
    K = a.shape[2]
    v = np.zeros((B, D, K))
    for b in range(B):
        for d in range(D):
            for k in range(K):
                v[b, d, k] = sum(a[b, t, k] * (x[b, t, d] - c[d, k]) for t in range(S))
    return l2_normalize(flatten_d_major(l2_normalize(v, axis=1)))


def net_rvlad(a, x):
    B, S, D = x.shape
    K = a.shape[2]
    v = np.zeros((B, D, K))
    for b in range(B):
        for d in range(D):
            for k in range(K):
                v[b, d, k] = sum(a[b, t, k] * x[b, t, d] for t in range(S))
    return l2_normalize(flatten_d_major(l2_normalize(v, axis=1)))


def net_fv(a, x, c, s):
    B, S, D = x.shape
    K = a.shape[2]
    sigma = s * s + SIGMA_EPS
    fv1 = np.zeros((B, D, K))
    fv2 = np.zeros((B, D, K))
    for b in range(B):
        for d in range(D):
            for k in range(K):
                fv1[b, d, k] = sum(a[b, t, k] * (x[b, t, d] - c[d, k]) / sigma[d, k] for t in range(S))
                fv2[b, d, k] = sum(a[b, t, k] * ((x[b, t, d] - c[d, k]) ** 2 / sigma[d, k] ** 2)
                                   for t in range(S)) - sum(a[b, t, k] for t in range(S))
    fv1 = l2_normalize(flatten_d_major(l2_normalize(fv1, axis=1)))
    fv2 = l2_normalize(flatten_d_major(fv2))
    return np.concatenate([fv1, fv2], axis=1)


def soft_bow(a):
    return l2_normalize(a.sum(axis=1))


def clustering_case(name, seed, layer, B, S, D, K, x_scale=1.0, params_of=None):
    """`params_of`: reuse the parameters of another case (same layer, other input)."""
    r = rng(seed)
    x = r.normal(0.3, x_scale, size=(B, S, D))
    p = {"assignment.weights": r.normal(0.0, 1.0 / np.sqrt(D), size=(D, K))}
    p.update(bn_params(r, K, "assignment."))
    if layer in ("net_vlad", "net_fv"):
        p["centers"] = r.normal(0.0, 1.0 / np.sqrt(D), size=(D, K))
    if layer == "net_fv":
        # Not the N(1, 1/sqrt(D)) init: at D=4 that draws weights near 0, whose sigma^-2
        # makes one fv2 element swamp the rest and the check meaningless.
        p["covariance_weights"] = r.uniform(0.5, 1.5, size=(D, K)) * r.choice([-1.0, 1.0], size=(D, K))
    if params_of is not None:
        p = {k: v for k, v in params_of["tensors"].items() if k in p}

    def pool(a):
        if layer == "net_vlad":
            return net_vlad(a, x, p["centers"])
        if layer == "net_rvlad":
            return net_rvlad(a, x)
        if layer == "net_fv":
            return net_fv(a, x, p["centers"], p["covariance_weights"])
        return soft_bow(a)

    a_train, mean, var = assign(x, p, "assignment.", True)
    a_eval, _, _ = assign(x, p, "assignment.", False)
    tensors = dict(p)
    tensors.update({
        "input": x,
        "output": pool(a_train),
        "output_eval": pool(a_eval),
        "assignment.bn.running_mean_after": DECAY * p["assignment.bn.running_mean"] + (1 - DECAY) * mean,
        "assignment.bn.running_var_after": DECAY * p["assignment.bn.running_var"] + (1 - DECAY) * var,
    })
    return {"name": name, "dims": {"batch": B, "frames": S, "features": D, "clusters": K}, "tensors": tensors}


def soft_assignment_case():
    B, S, D, K = 2, 5, 4, 3
    r = rng(10)
    x = r.normal(size=(B, S, D))
    p = {"weights": r.normal(0.0, 1.0 / np.sqrt(D), size=(D, K))}
    p.update(bn_params(r, K, ""))
    a_train, mean, var = assign(x, p, "", True)
    a_eval, _, _ = assign(x, p, "", False)
    tensors = dict(p)
    tensors.update({
        "input": x, "output": a_train, "output_eval": a_eval,
        "bn.running_mean_after": DECAY * p["bn.running_mean"] + (1 - DECAY) * mean,
        "bn.running_var_after": DECAY * p["bn.running_var"] + (1 - DECAY) * var,
    })
    return {"name": "soft_assignment", "dims": {"batch": B, "frames": S, "features": D, "clusters": K},
            "tensors": tensors}


def biased_soft_assignment_case():
    B, S, D, K = 2, 5, 4, 3
    r = rng(11)
    x = r.normal(size=(B, S, D))
    w = r.normal(0.0, 1.0 / np.sqrt(D), size=(D, K))
    bias = r.normal(0.0, 1.0 / np.sqrt(D), size=K)
    out = softmax(np.einsum("bsd,dk->bsk", x, w) + bias, axis=-1)
    return {"name": "biased_soft_assignment", "dims": {"batch": B, "frames": S, "features": D, "clusters": K},
            "tensors": {"input": x, "weights": w, "bias": bias, "output": out}}


def temporal_cases():
    B, S, D = 2, 5, 4
    r = rng(20)
    x = r.normal(size=(B, S, D))
    avg = np.zeros((B, D))
    mx = np.full((B, D), -np.inf)
    for b in range(B):
        for t in range(S):
            avg[b] += x[b, t] / S
            mx[b] = np.maximum(mx[b], x[b, t])
    dims = {"batch": B, "frames": S, "features": D}
    return [
        {"name": "average_pooling", "dims": dims, "tensors": {"input": x, "output": avg}},
        {"name": "max_pooling", "dims": dims, "tensors": {"input": x, "output": mx}},
    ]


if __name__ == "__main__":
    B, S, D, K = 2, 5, 4, 3
    cases = [soft_assignment_case(), biased_soft_assignment_case()]
    vlad_case = clustering_case("net_vlad", 1, "net_vlad", B, S, D, K)
    cases += [
        vlad_case,
        # The same layer on another batch with another (runtime) frame count.
        clustering_case("net_vlad_7_frames", 2, "net_vlad", 3, 7, D, K, params_of=vlad_case),
        clustering_case("net_rvlad", 3, "net_rvlad", B, S, D, K),
        # x_scale 0.5 keeps (x - c)^2 / sigma^2 moderate.
        clustering_case("net_fv", 4, "net_fv", B, S, D, K, x_scale=0.5),
        clustering_case("soft_bow", 5, "soft_bow", B, S, D, K),
    ]
    cases += temporal_cases()
    write("pooling", cases)
