"""Reference values for batch norm and L2 normalisation (see common.py)."""
from common import rng, l2_normalize, batch_norm_train, batch_norm_eval, write

from common import batch_norm_decay as decay


def batch_norm_cases():
    cases = []
    for name, shape in [("batch_norm_rank2", (5, 4)), ("batch_norm_rank3", (2, 3, 4))]:
        r = rng(len(shape))
        c = shape[-1]
        x = r.normal(size=shape) * 2.0 + 0.5
        scale = r.normal(size=c)
        shift = r.normal(size=c)
        running_mean = r.normal(size=c)
        running_var = r.uniform(0.5, 2.0, size=c)
        y, mean, var = batch_norm_train(x, scale, shift)
        cases.append({
            "name": name,
            "dims": {"channels": c},
            "tensors": {
                "input": x, "scale": scale, "shift": shift,
                "running_mean": running_mean, "running_var": running_var,
                "output": y,
                "output_eval": batch_norm_eval(x, scale, shift, running_mean, running_var),
                # A layer that has seen 20 updates: decay (1 + 20) / (10 + 20) = 0.7.
                "updates": [20.0],
                "running_mean_after": decay(20) * running_mean + (1 - decay(20)) * mean,
                "running_var_after": decay(20) * running_var + (1 - decay(20)) * var,
            },
        })
    return cases


def l2_cases():
    r = rng(7)
    x = r.normal(size=(3, 2, 5))
    x[1, 0, :] = 0.0  # an all-zero row: the 1e-12 floor keeps it finite (zero)
    x[2, 1, :] = 1e-8  # a tiny row: below the floor, scaled by 1e6 not normalised
    return [{"name": "l2_normalize", "dims": {}, "tensors": {"input": x, "output": l2_normalize(x)}}]


if __name__ == "__main__":
    write("norms", batch_norm_cases() + l2_cases())
