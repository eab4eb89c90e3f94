"""Reference values of the competition metrics (docs/reference.md section 7), computed the way
the official YouTube-8M evaluation code defines them, on random predictions without ties.
Writes metrics.json (see common.py for the layout)."""
import numpy as np

from common import rng, write


def flatten_top_k(predictions, labels, k):
    """Each video's top-k (score, is_positive) pairs, pooled over videos."""
    scores, positives = [], []
    for p, y in zip(predictions, labels):
        top = np.argsort(-p, kind="stable")[:k]
        scores.extend(p[top])
        positives.extend(y[top])
    return np.array(scores), np.array(positives)


def ap(scores, positives, num_positives):
    """Official ap_at_n: sorted by score, precision at each positive, over all positives."""
    if num_positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = 0
    total = 0.0
    for i, j in enumerate(order):
        if positives[j]:
            hits += 1
            total += hits / (i + 1)
    return total / num_positives


def gap(predictions, labels, k):
    scores, positives = flatten_top_k(predictions, labels, k)
    return ap(scores, positives, labels.sum())


def hit_at_one(predictions, labels):
    top = predictions.argmax(axis=1)
    return labels[np.arange(len(labels)), top].mean()


def perr(predictions, labels):
    total = 0.0
    for p, y in zip(predictions, labels):
        n = int(y.sum())
        # argpartition(p, -0)[-0:] is every class: a video without labels scores 0.
        top = np.argpartition(p, -n)[-n:] if n > 0 else np.arange(len(p))
        precision = sum(y[i] for i in top if p[i] > 0) / top.size
        total += precision
    return total / len(labels)


def mean_ap(predictions, labels, k):
    """Per-class AP over the pooled top-k pairs, denominators the class's positives;
    classes without positives are skipped."""
    classes = predictions.shape[1]
    per_class = [([], []) for _ in range(classes)]
    for p, y in zip(predictions, labels):
        for c in np.argsort(-p, kind="stable")[:k]:
            per_class[c][0].append(p[c])
            per_class[c][1].append(y[c])
    aps = []
    for c in range(classes):
        n = labels[:, c].sum()
        if n == 0:
            continue
        aps.append(ap(np.array(per_class[c][0]), np.array(per_class[c][1]), n))
    return float(np.mean(aps))


def case(name, seed, videos, classes, k, max_labels):
    r = rng(seed)
    predictions = r.uniform(0.0, 1.0, size=(videos, classes)).astype(np.float32).astype(np.float64)
    labels = np.zeros((videos, classes))
    for v in range(videos):
        n = r.integers(0, max_labels + 1)
        labels[v, r.choice(classes, size=n, replace=False)] = 1.0
        # Make predictions informative so the metrics are far from chance.
        predictions[v] += 0.5 * labels[v] * r.uniform(0, 1, size=classes)
    predictions = np.clip(predictions, 0, 1).astype(np.float32).astype(np.float64)
    return {
        "name": name,
        "dims": {"videos": videos, "classes": classes, "k": k},
        "tensors": {
            "predictions": predictions,
            "labels": labels,
            "gap": gap(predictions, labels, k),
            "hit_at_1": hit_at_one(predictions, labels),
            "perr": perr(predictions, labels),
            "map": mean_ap(predictions, labels, k),
        },
    }


if __name__ == "__main__":
    write("metrics", [
        case("small_k", 1, 40, 30, 5, 8),
        case("competition_k", 2, 60, 50, 20, 25),
    ])
