"""Writes tests/fixtures/tf-checkpoints/nextvlad-2018/: a TensorFlow checkpoint with the
variables of Lin et al.'s released NeXtVLAD code (linrongc/youtube-8m, `nextvlad.py`
`NeXtVLADModel` with `video_level_models.LogisticModel`, built by its `train.py` inside the
`tower` variable scope) at the sizes of loupe's zoo entry `small-nextvlad-2018`, and the
predictions of the published forward pass in evaluation mode.

This is loupe's own code, written from the release's formulas; it does not import the
release. The graph is TF1 (`tf.compat.v1`, graph mode); the variables are created with
`tf.compat.v1.get_variable` under the scopes the release's slim calls open, so their names
and shapes are the release's:

    tower/video_VLAD/fully_connected/{weights,biases}     expansion  [F, lF], [lF]
    tower/video_VLAD/fully_connected_1/{weights,biases}   attention  [lF, G], [G]
    tower/video_VLAD/cluster_weights                      [lF, G K]
    tower/video_VLAD/cluster_bn/{beta,gamma,moving_mean,moving_variance}   [G K]
    tower/video_VLAD/cluster_weights2                     [1, lF / G, K]
    tower/video_VLAD/vlad_bn/...                          [K lF / G]
    tower/audio_VLAD/...                                  the same, K / 2 and G / 2
    tower/hidden1_weights [D, H], tower/hidden1_bn/...    [H]
    tower/gating_weights_1 [H, H / r], tower/gating_bn/... [H / r], tower/gating_weights_2 [H / r, H]
    tower/fully_connected/{weights,biases}                logistic  [H, C], [C]

(slim's `fully_connected` without a scope argument opens a variable scope with default
name `fully_connected`, uniquified per enclosing scope: the two inside each NeXtVLAD
become `fully_connected` and `fully_connected_1`, the classifier at the tower level
`fully_connected`. The script opens the same default-named scopes.)

Evaluation mode: batch norms use their moving averages (slim: epsilon 1e-3,
`tf.nn.batch_normalization`), dropout is the identity, the frames past each video's length
are masked out of the group attention (`tf.sequence_mask`). The input is the frames as
they are (the release feeds no L2 normalisation and no input batch norm; its rgb PCA
un-whitening happens before the model, in `train.py`/`eval.py`, and is not part of it).

The variables start from seeded random values (weights: slim's variance scaling, a
truncated normal of std sqrt(1.3 * 2 / fan_in); biases, batch-norm scales, shifts and
moving averages: random too, so that every mapping is exercised), then 3 steps of
`tf.compat.v1.train.AdamOptimizer` on the evaluation graph's cross entropy give the Adam
slots and `global_step` a real checkpoint has. The checkpoint is saved with
`tf.compat.v1.train.Saver`, then the predictions of the saved values are computed.

Run: `python3 tests/reference/make_nextvlad_checkpoint.py OUT_DIR` (tensorflow-cpu 2.x,
numpy). It also recomputes the predictions in float64 numpy from the checkpoint's values
and checks they agree with TensorFlow's.
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1

# small-nextvlad-2018 (src/zoo.rs): rgb 16 + audio 8 features, 10 frames, rgb K 4 G 4,
# audio K 2 G 2 (the release's cluster_size // 2, groups // 2), expansion 2, hidden 32,
# gating reduction 8, logistic over 10 classes.
RGB, AUDIO, FRAMES = 16, 8, 10
CLUSTERS, GROUPS, EXPANSION = 4, 4, 2
HIDDEN, REDUCTION, CLASSES = 32, 8, 10
LENGTHS = [10, 7, 3, 1]
SEED = 2018
STEPS = 3
EPSILON = 1e-3  # slim.batch_norm's default

rng = np.random.default_rng(SEED)


def variance_scaling(shape, fan_in):
    """slim.variance_scaling_initializer() (factor 2, FAN_IN, truncated normal)."""
    std = np.sqrt(1.3 * 2.0 / fan_in)
    values = rng.normal(0.0, std, size=shape)
    while True:  # redraw beyond two standard deviations, as a truncated normal does
        out = np.abs(values) > 2 * std
        if not out.any():
            return values.astype(np.float32)
        values[out] = rng.normal(0.0, std, size=int(out.sum()))


def variable(name, shape, value, trainable=True):
    return tf1.get_variable(name, shape=shape, dtype=tf.float32, trainable=trainable,
                            initializer=tf1.constant_initializer(value))


def fully_connected(x, outputs, activation=None):
    """slim.fully_connected(x, outputs) without a scope: weights [in, out] and biases."""
    inputs = x.shape[-1]
    with tf1.variable_scope(None, default_name="fully_connected"):
        w = variable("weights", [inputs, outputs], variance_scaling([inputs, outputs], inputs))
        b = variable("biases", [outputs], rng.normal(0.0, 0.1, size=[outputs]))
    y = tf.tensordot(x, w, axes=1) + b
    return activation(y) if activation is not None else y


def batch_norm(x, scope, activation=None):
    """slim.batch_norm(x, center=True, scale=True, is_training=False, scope=scope)."""
    n = x.shape[-1]
    with tf1.variable_scope(scope):
        beta = variable("beta", [n], rng.normal(0.0, 0.2, size=[n]))
        gamma = variable("gamma", [n], rng.uniform(0.5, 1.5, size=[n]))
        mean = variable("moving_mean", [n], rng.normal(0.0, 0.3, size=[n]), trainable=False)
        var = variable("moving_variance", [n], rng.uniform(0.5, 2.0, size=[n]), trainable=False)
    y = tf.nn.batch_normalization(x, mean, var, beta, gamma, EPSILON)
    return activation(y) if activation is not None else y


def nextvlad(x, mask, features, clusters, groups):
    """NeXtVLAD.forward of the release (is_training=False)."""
    expanded_size = EXPANSION * features
    group_size = expanded_size // groups
    expanded = fully_connected(x, expanded_size)  # [B, M, lF]
    attention = fully_connected(expanded, groups, activation=tf.sigmoid)  # [B, M, G]
    attention = attention * tf.expand_dims(mask, -1)
    attention = tf.reshape(attention, [-1, FRAMES * groups, 1])
    cluster_weights = variable("cluster_weights", [expanded_size, groups * clusters],
                               variance_scaling([expanded_size, groups * clusters], expanded_size))
    activation = tf.matmul(tf.reshape(expanded, [-1, expanded_size]), cluster_weights)
    activation = batch_norm(activation, "cluster_bn")
    activation = tf.reshape(activation, [-1, FRAMES * groups, clusters])
    activation = tf.nn.softmax(activation, axis=-1) * attention
    a_sum = tf.reduce_sum(activation, -2, keepdims=True)  # [B, 1, K]
    centres = variable("cluster_weights2", [1, group_size, clusters],
                       variance_scaling([1, group_size, clusters], group_size))
    a = a_sum * centres  # [B, lF/G, K]
    activation = tf.transpose(activation, perm=[0, 2, 1])  # [B, K, M G]
    grouped = tf.reshape(expanded, [-1, FRAMES * groups, group_size])
    vlad = tf.transpose(tf.matmul(activation, grouped), perm=[0, 2, 1]) - a  # [B, lF/G, K]
    vlad = tf.nn.l2_normalize(vlad, 1)
    vlad = tf.reshape(vlad, [-1, clusters * group_size])  # index d * K + k
    return batch_norm(vlad, "vlad_bn")


def model(frames, lengths):
    """NeXtVLADModel.create_model + LogisticModel (is_training=False), in `tower`."""
    with tf1.variable_scope("tower"):
        mask = tf.sequence_mask(lengths, FRAMES, dtype=tf.float32)
        with tf1.variable_scope("video_VLAD"):
            video = nextvlad(frames[:, :, :RGB], mask, RGB, CLUSTERS, GROUPS)
        with tf1.variable_scope("audio_VLAD"):
            audio = nextvlad(frames[:, :, RGB:], mask, AUDIO, CLUSTERS // 2, GROUPS // 2)
        pooled = tf.concat([video, audio], 1)  # dropout: the identity in evaluation
        width = int(pooled.shape[1])
        hidden1 = variable("hidden1_weights", [width, HIDDEN], variance_scaling([width, HIDDEN], width))
        hidden = batch_norm(tf.matmul(pooled, hidden1), "hidden1_bn")
        squeeze = HIDDEN // REDUCTION
        w1 = variable("gating_weights_1", [HIDDEN, squeeze], variance_scaling([HIDDEN, squeeze], HIDDEN))
        gates = batch_norm(tf.matmul(hidden, w1), "gating_bn", activation=tf.nn.relu)
        w2 = variable("gating_weights_2", [squeeze, HIDDEN], variance_scaling([squeeze, HIDDEN], squeeze))
        gated = hidden * tf.sigmoid(tf.matmul(gates, w2))
        logits = fully_connected(gated, CLASSES)
        return {"pooled": pooled, "hidden": hidden, "gated": gated, "logits": logits,
                "predictions": tf.sigmoid(logits)}


def inputs():
    """Dequantised frames (`byte * 4/255 + 4/512 - 2`, the reader's), lengths, labels.
    The frames past each length are NOT zero (the reader pads with zeros): noise there
    shows that the mask leaves them out."""
    values = rng.integers(0, 256, size=[len(LENGTHS), FRAMES, RGB + AUDIO])
    frames = (values * (4.0 / 255.0) + 4.0 / 512.0 - 2.0).astype(np.float32)
    labels = (rng.uniform(size=[len(LENGTHS), CLASSES]) < 0.3).astype(np.float32)
    return frames, np.array(LENGTHS, np.int32), labels


def numpy_forward(v, frames, lengths):
    """The same forward in float64 numpy from the checkpoint's values `v`."""
    def bn(x, s):
        return (x - v[s + "/moving_mean"]) / np.sqrt(v[s + "/moving_variance"] + EPSILON) \
            * v[s + "/gamma"] + v[s + "/beta"]

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    mask = (np.arange(FRAMES)[None, :] < lengths[:, None]).astype(np.float64)
    out = []
    for scope, x, k, g in [("video_VLAD", frames[:, :, :RGB], CLUSTERS, GROUPS),
                           ("audio_VLAD", frames[:, :, RGB:], CLUSTERS // 2, GROUPS // 2)]:
        p = "tower/" + scope + "/"
        xe = x @ v[p + "fully_connected/weights"] + v[p + "fully_connected/biases"]
        att = sigmoid(xe @ v[p + "fully_connected_1/weights"] + v[p + "fully_connected_1/biases"]) * mask[..., None]
        b, m, fe = xe.shape
        d = fe // g
        logits = bn(xe.reshape(-1, fe) @ v[p + "cluster_weights"], p + "cluster_bn").reshape(b, m * g, k)
        act = np.exp(logits - logits.max(-1, keepdims=True))
        act = act / act.sum(-1, keepdims=True) * att.reshape(b, m * g, 1)
        vlad = np.einsum("brk,brd->bdk", act, xe.reshape(b, m * g, d)) \
            - act.sum(1)[:, None, :] * v[p + "cluster_weights2"]
        vlad = vlad / np.sqrt(np.maximum((vlad ** 2).sum(1, keepdims=True), 1e-12))
        out.append(bn(vlad.reshape(b, d * k), p + "vlad_bn"))
    pooled = np.concatenate(out, 1)
    hidden = bn(pooled @ v["tower/hidden1_weights"], "tower/hidden1_bn")
    gates = np.maximum(bn(hidden @ v["tower/gating_weights_1"], "tower/gating_bn"), 0.0)
    gated = hidden * sigmoid(gates @ v["tower/gating_weights_2"])
    return sigmoid(gated @ v["tower/fully_connected/weights"] + v["tower/fully_connected/biases"])


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    frames, lengths, labels = inputs()
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(SEED)
        x = tf1.placeholder(tf.float32, [None, FRAMES, RGB + AUDIO], name="frames")
        n = tf1.placeholder(tf.int32, [None], name="num_frames")
        y = tf1.placeholder(tf.float32, [None, CLASSES], name="labels")
        outputs = model(x, n)
        global_step = tf1.Variable(0, trainable=False, name="global_step")
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=outputs["logits"]))
        train = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=global_step)
        saver = tf1.train.Saver(tf1.global_variables())
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            feed = {x: frames, n: lengths, y: labels}
            for _ in range(STEPS):
                sess.run(train, feed)
            prefix = saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=STEPS,
                                write_meta_graph=False)
            expected = sess.run(outputs, feed)
            # The frames past each length do not matter: zero them, as the reader would.
            padded = frames * (np.arange(FRAMES)[None, :, None] < lengths[:, None, None])
            zero_padded = sess.run(outputs["predictions"], {x: padded, n: lengths})
            assert np.abs(zero_padded - expected["predictions"]).max() < 1e-6
    # Read the checkpoint back: the variable list, and the forward in float64 numpy.
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    values = {name: reader.get_tensor(name).astype(np.float64) for name in shapes}
    reference = numpy_forward(values, frames.astype(np.float64), lengths)
    error = np.abs(reference - expected["predictions"]).max() / np.abs(reference).max()
    assert error < 1e-5, error
    print(f"numpy float64 vs TensorFlow predictions: max relative difference {error:.2e}")

    def kind(name):
        if name == "global_step":
            return "global_step"
        if name.endswith("_power"):
            return "adam_power"
        if name.endswith("/Adam") or name.endswith("/Adam_1"):
            return "adam_slot"
        if "moving_" in name:
            return "moving_average"
        return "trainable"

    listed = [{"name": k, "shape": list(shapes[k]), "dtype": dtypes[k].name, "kind": kind(k)}
              for k in sorted(shapes)]
    with open(os.path.join(out_dir, "variables.json"), "w") as f:
        json.dump({"checkpoint": os.path.basename(prefix), "global_step": STEPS, "count": len(listed),
                   "variables": listed}, f, indent=1)
        f.write("\n")
    np.savez(os.path.join(out_dir, "inputs.npz"), video_matrix=frames, num_frames=lengths,
             labels=labels.astype(np.uint8))
    np.savez(os.path.join(out_dir, "expected.npz"),
             **{k: v.astype(np.float32) for k, v in expected.items() if k != "logits"})
    with open(os.path.join(out_dir, "generator.json"), "w") as f:
        json.dump({"script": "tests/reference/make_nextvlad_checkpoint.py", "seed": SEED, "adam_steps": STEPS,
                   "tensorflow": tf.__version__, "numpy": np.__version__,
                   "sizes": {"rgb": RGB, "audio": AUDIO, "frames": FRAMES, "clusters": CLUSTERS,
                             "groups": GROUPS, "expansion": EXPANSION, "hidden": HIDDEN,
                             "gating_reduction": REDUCTION, "classes": CLASSES, "lengths": LENGTHS}},
                  f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tf-checkpoints/nextvlad-2018")
