"""Activation maximisation (thesis 003 §5.6, Fig 5.15) and saliency maps, with TensorFlow's own
GradientTape.

The thesis ran keras-vis on the 7 category units of its last layer. keras-vis swaps the softmax
for a linear activation first, because a softmax unit can grow by shrinking the others; here the
pre-softmax logits are computed beside the model instead (the category Dense layer's input times
its own kernel plus bias, or the input of a separate softmax Activation), so the model and its
weights are never touched. Gradient ascent runs in the model's input space (the pipeline's
``normalize`` mode: [-1, 1] for thesis 003's ``symmetric``), each step along the gradient
divided by its RMS, with an L2 pull towards mid-grey and the image clipped to the pixels [0, 255]
map to. The thesis does not say how a 60-frame sequence model was maximised (extract §7.3 [I]),
so both readings are modes: ``static`` optimises one image shown on every step, ``clip`` the
whole clip. A per-frame output (B, T, C) is maximised as the mean of its logit over the steps.

Saliency (Simonyan et al.; thesis 003 §2.4 names it, never applies it): |d logit_c / d input| of
a clip for its predicted class c, the maximum over the colour channels, per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("static", "clip")


def logits_function(model, output="category"):
    """``inputs -> logits`` of output ``output`` before its softmax: from the output Dense layer's
    input and its own kernel and bias, or the input of an Activation layer of that name (a pooled
    output). Shares the model's layers and weights and changes neither."""
    import keras

    layer = model.get_layer(output)
    before = keras.Model(model.input, layer.input)
    if isinstance(layer, keras.layers.Dense):
        def logits(inputs):
            z = keras.ops.matmul(before(inputs, training=False), layer.kernel)
            return z + layer.bias if layer.use_bias else z
        return logits
    if isinstance(layer, keras.layers.Activation):
        return lambda inputs: before(inputs, training=False)
    raise ValueError(f"output {output!r} is a {type(layer).__name__}: its logits are the input of a Dense or "
                     "Activation layer of that name")


def pixel_range(normalize="unit", pixel_stats=None):
    """(low, high), each (3,) float32: where RGB 0 and 255 land in the model's input space."""
    from fer_keras.data.preprocessing import preprocess

    low, high = (np.asarray(preprocess(np.full((1, 3), v, np.float32), normalize, pixel_stats))[0]
                 for v in (0.0, 255.0))
    return low, high


def to_pixels(x, normalize="unit", pixel_stats=None) -> np.ndarray:
    """Model-space images (..., 3) back to uint8 RGB: preprocessing's ``normalize`` mode undone."""
    from fer_keras.data.preprocessing import constants

    m = constants(normalize, pixel_stats)
    x = (np.asarray(x, np.float64) * np.asarray(m.std) + np.asarray(m.mean)) / m.scale
    if m.bgr:
        x = x[..., ::-1]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass
class Maximised:
    """What :func:`maximise` found: ``images`` uint8 (K, H, W, 3) (static) or (K, T, H, W, 3)
    (clip), one per unit, and each unit's logit on the starting and on the final input."""

    mode: str
    units: list
    images: np.ndarray
    before: np.ndarray
    after: np.ndarray


def _frames_shape(model, seq_len):
    shape = tuple(model.input["frames"].shape) if isinstance(model.input, dict) and "frames" in model.input else None
    if shape is None or None in shape[2:]:
        raise ValueError("activation maximisation needs a model with a 'frames' input (B, T, H, W, 3) of known size")
    steps = shape[1] or seq_len
    if not steps:
        raise ValueError("the model's frames input has no fixed length: give seq_len")
    return int(steps), shape[2:]


def maximise(model, *, mode="static", units=None, steps=100, step_size=0.02, l2=0.01, seed=0,
             normalize="unit", pixel_stats=None, seq_len=None, output="category") -> Maximised:
    """Gradient ascent on the input of ``model`` (inputs ``frames`` and ``mask``) for each unit of
    output ``output`` in ``units`` (default all), all units in one batch: ``steps`` steps of
    ``step_size`` x the pixel range along the RMS-normalised gradient of logit - ``l2`` x the mean
    squared distance from mid-grey, clipped to the pixel range (module docstring)."""
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    logits = logits_function(model, output)
    n_units = int(model.get_layer(output).output.shape[-1])
    units = list(range(n_units)) if units is None else [int(u) for u in units]
    if any(not 0 <= u < n_units for u in units):
        raise ValueError(f"units must be in 0..{n_units - 1}, got {units}")
    length, image = _frames_shape(model, seq_len)
    low, high = pixel_range(normalize, pixel_stats)
    mid, span = tf.constant((low + high) / 2), tf.constant(high - low)
    shape = (len(units), *image) if mode == "static" else (len(units), length, *image)
    rng = np.random.default_rng(seed)
    start = np.clip((low + high) / 2 + 0.1 * (high - low) * rng.standard_normal(shape), low, high)
    pick = tf.stack([tf.range(len(units)), tf.constant(units, tf.int32)], axis=1)
    mask = tf.ones((len(units), length))

    def activation(x):
        frames = tf.repeat(x[:, None], length, axis=1) if mode == "static" else x
        z = logits({"frames": frames, "mask": mask})
        if len(z.shape) == 3:  # per frame: the mean over the steps
            z = tf.reduce_mean(z, axis=1)
        return tf.gather_nd(z, pick)

    @tf.function
    def ascend(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            penalty = tf.reduce_mean(tf.reshape((x - mid) ** 2, (len(units), -1)), axis=1)
            objective = tf.reduce_sum(activation(x) - l2 * penalty)
        grad = tape.gradient(objective, x)
        rms = tf.sqrt(tf.reduce_mean(tf.reshape(grad ** 2, (len(units), -1)), axis=1)) + 1e-12
        grad = grad / tf.reshape(rms, (-1,) + (1,) * (len(shape) - 1))
        return tf.clip_by_value(x + step_size * span * grad, low, high)

    x = tf.constant(start, tf.float32)
    before = activation(x).numpy()
    for _ in range(steps):
        x = ascend(x)
    return Maximised(mode, units, to_pixels(x.numpy(), normalize, pixel_stats), before, activation(x).numpy())


def saliency(model, frames, mask, output="category"):
    """``(maps (B, T, H, W), predicted (B,))``: each clip's predicted class (the argmax of its
    softmax, averaged over the real frames for a per-frame output) and |d logit / d frames| of
    that class, the maximum over channels; padded steps are 0."""
    import tensorflow as tf

    logits = logits_function(model, output)
    frames = tf.constant(np.asarray(frames, np.float32))
    mask = tf.constant(np.asarray(mask, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(frames)
        z = logits({"frames": frames, "mask": mask})
        if len(z.shape) == 3:
            weights = mask[..., None] / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)[:, None, None]
            probs = tf.reduce_sum(tf.nn.softmax(z) * weights, axis=1)
            z = tf.reduce_sum(z * weights, axis=1)
        else:
            probs = tf.nn.softmax(z)
        predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
        chosen = tf.reduce_sum(tf.gather(z, predicted, batch_dims=1))
    grad = tape.gradient(chosen, frames)
    maps = tf.reduce_max(tf.abs(grad), axis=-1) * mask[:, :, None, None]
    return maps.numpy(), predicted.numpy()


def _grid(rows, columns, size=1.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size * columns, size * rows + 0.4))
    FigureCanvasAgg(fig)
    axes = [[fig.add_subplot(rows, columns, r * columns + c + 1) for c in range(columns)] for r in range(rows)]
    for ax in (a for row in axes for a in row):
        ax.axis("off")
    return fig, axes


def _shown(n, max_frames):
    """Indices of at most ``max_frames`` of ``n`` frames, evenly spaced, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))


def plot_maximised(result: Maximised, classes, path, max_frames=8) -> None:
    """The maximising inputs as a PNG: static, a row of one image per unit; clip, a row per unit
    of at most ``max_frames`` of its frames. Each titled with its logit before -> after."""
    names = [classes[u] if u < len(classes) else str(u) for u in result.units]
    if result.mode == "static":
        fig, axes = _grid(1, len(names))
        cells = [(axes[0][i], img, f"{name}\n{b:.2f} -> {a:.2f}")
                 for i, (name, img, b, a) in enumerate(zip(names, result.images, result.before, result.after))]
    else:
        frames = _shown(result.images.shape[1], max_frames)
        fig, axes = _grid(len(names), len(frames))
        cells = [(axes[r][c], result.images[r, t], f"{name} {b:.2f} -> {a:.2f}" if c == 0 else f"t={t}")
                 for r, (name, b, a) in enumerate(zip(names, result.before, result.after))
                 for c, t in enumerate(frames)]
    for ax, img, title in cells:
        ax.imshow(img)
        ax.set_title(title, fontsize=7)
    fig.suptitle(f"activation maximisation ({result.mode}); logit before -> after", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)


def plot_saliency(faces, maps, mask, path, titles=(), max_frames=6) -> None:
    """Saliency over the faces (uint8 (B, T, H, W, 3)): a row per clip, at most ``max_frames`` of
    its real frames, each map scaled to its clip's maximum and drawn half transparent."""
    mask = np.asarray(mask) > 0
    picks = [np.flatnonzero(m)[_shown(int(m.sum()), max_frames)] for m in mask]
    fig, axes = _grid(len(faces), max(1, max(len(p) for p in picks)))
    for r, frames in enumerate(picks):
        top = max(float(maps[r].max()), 1e-12)
        for c, t in enumerate(frames):
            ax = axes[r][c]
            ax.imshow(faces[r, t])
            ax.imshow(maps[r, t] / top, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(titles[r] if c == 0 and r < len(titles) else f"t={t}", fontsize=7)
    fig.suptitle("saliency |d logit / d pixel| of the predicted class", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)
