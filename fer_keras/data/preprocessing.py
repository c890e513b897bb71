"""Pixel preprocessing: what a backbone's pretrained weights were trained on, as one function.

A model fine-tuned from weights sees the pixels those weights learned from, or it starts from
features that are off and trains silently worse. Every image path (sequences, single images,
cached-feature extraction) goes through :func:`preprocess`; each registry backbone names its
mode (``fer_keras.models.backbones``), and an experiment that loads weights without choosing
one gets it (``fer_keras.config.pixel_preprocessing``).

Each mode maps RGB values in [0, 255]: optionally reversed to BGR, then ``x * scale - mean``,
then divided by ``std``. Thesis 001 §6.1's mean subtraction and whitening take ``mean`` and
``std`` from the pixels of the training split instead (``statistics``): those constants belong to
the prepared data, so ``fer_keras.data.pixel_stats`` computes them once beside it and the
pipeline hands them to :func:`preprocess`.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Mode:
    source: str                   # whose weights expect it, and where the constants come from
    bgr: bool = False             # reverse the channels first (Caffe-trained weights)
    scale: float = 1.0
    mean: tuple = (0.0, 0.0, 0.0)  # per channel, in the (possibly reversed) channel order
    std: tuple = (1.0, 1.0, 1.0)
    # mean (and, with ``whiten``, std) from the training split's pixels instead: "pixels" one value
    # over all pixels and channels (thesis 001 §6.1), "channels" one per RGB channel
    statistics: str | None = None
    whiten: bool = False


MODES = {
    "unit": Mode("[0, 1]: x / 255 (weights trained from scratch here)", scale=1 / 255),
    "symmetric": Mode("[-1, 1]: x / 127.5 - 1 (thesis 000's stated scaling; the same as tf)",
                      scale=1 / 127.5, mean=(1.0, 1.0, 1.0)),
    "none": Mode("raw 0-255 RGB"),
    "vggface1": Mode("keras-vggface utils.preprocess_input version=1 (VGGFace VGG16): BGR minus "
                     "93.5940, 104.7624, 129.1863", bgr=True, mean=(93.5940, 104.7624, 129.1863)),
    "vggface2": Mode("keras-vggface utils.preprocess_input version=2 (VGGFace2 ResNet50, SENet50): BGR "
                     "minus 91.4953, 103.8827, 131.0912", bgr=True, mean=(91.4953, 103.8827, 131.0912)),
    "caffe": Mode("Keras imagenet_utils mode 'caffe' (keras.applications VGG16, VGG19, ResNet50): BGR "
                  "minus 103.939, 116.779, 123.68", bgr=True, mean=(103.939, 116.779, 123.68)),
    "slim_vgg": Mode("TF-Slim vgg_preprocessing (vgg_16 / vgg_19 checkpoints): RGB minus 123.68, "
                     "116.78, 103.94", mean=(123.68, 116.78, 103.94)),
    "tf": Mode("Keras imagenet_utils mode 'tf', TF-Slim inception_preprocessing (Xception, NASNet, "
               "Inception V2): x / 127.5 - 1", scale=1 / 127.5, mean=(1.0, 1.0, 1.0)),
    "torch": Mode("Keras imagenet_utils mode 'torch', torchvision / pretrainedmodels ImageNet weights "
                  "(DenseNet, SE-ResNet): x / 255 minus 0.485, 0.456, 0.406, divided by 0.229, 0.224, "
                  "0.225", scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "affwild": Mode("thesis 001 §6.1 'Normalisation' and the Aff-Wild eval_script (AffWildNet weights): "
                    "(x - 128) / 128", mean=(128.0,) * 3, std=(128.0,) * 3),
    "mean_subtraction": Mode("thesis 001 §6.1: minus the mean of all pixel values of the training split",
                             statistics="pixels"),
    "whitening": Mode("thesis 001 §6.1: minus the mean, divided by the standard deviation, of all pixel "
                      "values of the training split", statistics="pixels", whiten=True),
    "channel_mean_subtraction": Mode("mean_subtraction with one mean per RGB channel of the training split",
                                     statistics="channels"),
    "channel_whitening": Mode("whitening with one mean and standard deviation per RGB channel of the "
                              "training split", statistics="channels", whiten=True),
}


def check(mode: str) -> str:
    """``mode`` if it is known, else a ValueError listing the known ones."""
    if mode not in MODES:
        raise ValueError(f"normalize must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def needs_statistics(mode: str | None) -> bool:
    """Whether ``mode`` takes its constants from the training split's pixels."""
    return mode is not None and MODES[check(mode)].statistics is not None


def constants(mode: str, stats: dict | None = None) -> Mode:
    """``mode`` with its constants; a statistics mode takes them from ``stats`` (the
    ``fer_keras.data.pixel_stats`` file's ``mean``/``std`` and ``channel_mean``/``channel_std``, in
    [0, 255] RGB units), refused with the reason when they are missing or unusable."""
    m = MODES[check(mode)]
    if m.statistics is None:
        return m
    keys = ("mean", "std") if m.statistics == "pixels" else ("channel_mean", "channel_std")
    if not isinstance(stats, dict) or any(k not in stats for k in keys):
        raise ValueError(f"normalize {mode!r} needs the training split's pixel statistics {', '.join(keys)} "
                         "(data.pipeline.pixel_stats, filled by fer_keras.data.pixel_stats.attach when a run "
                         f"starts), got {stats!r}")
    mean, std = (tuple(float(v) for v in (stats[k] if m.statistics == "channels" else [stats[k]] * 3))
                 for k in keys)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"normalize {mode!r}: {', '.join(keys)} must have 3 values (R, G, B), got {stats!r}")
    if m.whiten and not all(s > 0 for s in std):
        raise ValueError(f"normalize {mode!r}: the training pixels have standard deviation {std}; "
                         "whitening divides by it")
    return Mode(m.source, mean=mean, std=std if m.whiten else (1.0, 1.0, 1.0))


def preprocess(x, mode: str, stats: dict | None = None):
    """``x`` (..., 3) RGB in [0, 255], any dtype, as float32 in ``mode``'s range (``stats``: the
    training split's pixel statistics, for the modes that need them)."""
    m = constants(mode, stats)
    x = tf.cast(x, tf.float32)
    if m.bgr:
        x = x[..., ::-1]
    if m.scale != 1.0:
        x = x * m.scale
    if any(m.mean):
        x = x - tf.constant(m.mean, tf.float32)
    if any(s != 1.0 for s in m.std):
        x = x / tf.constant(m.std, tf.float32)
    return x
