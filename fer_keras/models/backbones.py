"""Per-frame CNN backbones: one function builds any of them by name.

Every backbone takes ``weights=None | path`` (never a download), an input size, a
``global_pool`` switch (pooled vector vs flattened map, thesis 000 §6.1) and a named feature
tap (``feature``: any layer name, e.g. VGGFace's ``fc6``). ``BACKBONES[name].blocks`` lists the
layer-name prefixes of its blocks so heads can unfreeze the last k (thesis 002, Table 3.4).
"""
import inspect
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import keras
from keras import layers

from fer_keras.models import alexnet, inception, resnet, vggface
from fer_keras.models.keras2_h5 import load_by_name, to_keras_name


@dataclass(frozen=True)
class Backbone:
    trunk: Callable            # (symbolic input) -> last convolutional map
    blocks: tuple              # layer-name prefixes (str or tuple of str), first to last
    default_size: int
    min_size: int
    source: str                # thesis and weights it came with
    preprocessing: str         # the fer_keras.data.preprocessing mode its weights were trained on
    native: bool = True        # False: keras.applications, which loads its own weight files
    taps: dict = field(default_factory=dict)   # extra feature taps built on top of the map


def _application(cls, x, weights=None):
    """keras.applications trunk; ``weights`` is a local file in Keras' notop layout."""
    return cls(include_top=False, weights=weights, input_tensor=x).output


def _vgg_application(cls, x, weights=None, pool_padding="valid"):
    """keras.applications VGG16/VGG19 trunk. ``pool_padding="same"`` pads its five 2x2 poolings as
    TF-Slim and AffWildNet's VGG do, which rounds odd maps up: thesis 001's "4x4x512" comes from a
    112 input (112 -> 56 -> 28 -> 14 -> 7 -> 4); at 96 both give 3x3x512. The layers, their names
    and their weights are the application's."""
    if pool_padding not in ("valid", "same"):
        raise ValueError(f"pool_padding must be 'valid' or 'same', got {pool_padding!r}")
    if pool_padding == "valid":
        return _application(cls, x, weights)
    chain = cls(include_top=False, weights=weights, input_shape=tuple(x.shape[1:]))
    for layer in chain.layers[1:]:  # a plain chain: reuse each layer, re-pad the poolings
        if isinstance(layer, layers.MaxPooling2D):
            layer = layers.MaxPooling2D(layer.pool_size, layer.strides, padding="same", name=layer.name)
        x = layer(x)
    return x


BACKBONES = {
    "vggface_vgg16": Backbone(vggface.vgg16, vggface.BLOCKS, 224, 32,
                              "VGGFace (keras-vggface names); theses 000, 002", "vggface1",
                              taps={"fc6": partial(vggface.vgg16_top, upto="fc6"),
                                    "fc7": partial(vggface.vgg16_top, upto="fc7")}),
    "vggface_resnet50": Backbone(resnet.resnet50, resnet.BLOCKS, 224, 32,
                                 "VGGFace2 ResNet50 (keras-vggface names)", "vggface2"),
    "vggface_senet50": Backbone(partial(resnet.resnet50, se=True, bn_epsilon=1e-4),
                                resnet.BLOCKS, 224, 32, "VGGFace2 SENet50 (keras-vggface names)", "vggface2"),
    "se_resnet50": Backbone(partial(resnet.resnet50, se=True, bn_epsilon=1e-4), resnet.BLOCKS,
                            112, 32, "SE-ResNet-50, ImageNet; thesis 000", "torch"),
    "se_resnext50": Backbone(partial(resnet.resnet50, se=True, cardinality=32, group_width=4,
                                     stride_in_3x3=True), resnet.BLOCKS, 112, 32,
                             "SE-ResNeXt-50 (32x4d), ImageNet; thesis 000", "torch"),
    "alexnet": Backbone(alexnet.alexnet, alexnet.BLOCKS, 96, 96, "AlexNet at 96x96; thesis 001", "unit"),
    "bn_inception": Backbone(inception.bn_inception, inception.BLOCKS, 224, 64,
                             "BN-Inception (Inception V2); thesis 004", "tf"),
    "vgg16": Backbone(partial(_vgg_application, keras.applications.VGG16),
                      tuple(f"block{i}_" for i in range(1, 6)), 224, 32,
                      "VGG16, ImageNet; theses 001, 002, 003, 004", "caffe", native=False),
    "vgg19": Backbone(partial(_vgg_application, keras.applications.VGG19),
                      tuple(f"block{i}_" for i in range(1, 6)), 224, 32,
                      "VGG19, ImageNet; thesis 003", "caffe", native=False),
    "resnet50": Backbone(partial(_application, keras.applications.ResNet50),
                         ("conv1_", "conv2_", "conv3_", "conv4_", "conv5_"), 224, 32,
                         "ResNet-50 v1, ImageNet; theses 000, 001, 002", "caffe", native=False),
    "densenet121": Backbone(partial(_application, keras.applications.DenseNet121),
                            ("conv1_", ("conv2_", "pool2_"), ("conv3_", "pool3_"),
                             ("conv4_", "pool4_"), ("conv5_", "bn")), 224, 32,
                            "DenseNet-121, ImageNet; thesis 000", "torch", native=False),
    "xception": Backbone(partial(_application, keras.applications.Xception),
                         tuple(f"block{i}_" for i in range(1, 15)), 299, 71,
                         "Xception, ImageNet; thesis 003", "tf", native=False),
    "nasnet_mobile": Backbone(partial(_application, keras.applications.NASNetMobile), (),
                              224, 32, "NASNet-A Mobile, ImageNet; thesis 000 (variant not stated)", "tf",
                              native=False),
}


def build_backbone(name, *, input_size=None, weights=None, global_pool=False, feature=None,
                   dropout=0.5, skip_mismatch=False, init=None, options=None):
    """Build backbone ``name`` as a Keras model from an image to its feature tap.

    Without ``feature`` the output is the last map, average-pooled (``global_pool``) or
    flattened. ``feature`` may name a tap (VGGFace ``fc6``/``fc7``) or any layer.
    ``weights`` is a local file: Keras 2 ``.h5`` files load by layer name (VGGFace), Keras 3
    ``.weights.h5`` files by structure; ``skip_mismatch`` skips layers whose shapes differ
    (e.g. fc6 at an input size other than 224). ``init`` re-initialises every kernel of a
    randomly initialised backbone (e.g. "he_normal": Keras' Glorot default halves a ReLU
    signal at every layer, so a 13-conv VGG trained from scratch stays at chance). ``options``
    are keyword options of the trunk builders (AlexNet ``lrn``, ``groups``; BN-Inception
    ``separable_stem``; VGG16/VGG19 ``pool_padding``), refused for one that does not take them.
    """
    spec = _spec(name)
    options = dict(options or {})
    if options:
        known = set(inspect.signature(spec.trunk).parameters) - {"x", "weights"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"backbone {name!r}: unknown backbone option(s) {', '.join(unknown)}; "
                             f"it takes {', '.join(sorted(known)) or 'none'}")
    size = input_size or spec.default_size
    if size < spec.min_size:
        raise ValueError(f"backbone {name!r} needs an input of at least {spec.min_size}px, got {size}")
    if weights is not None and init is not None:
        raise ValueError(f"backbone {name!r}: give weights or init, not both")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: weights file for backbone {name!r} does not exist")
    inputs = keras.Input((size, size, 3), name="image")
    trunk = spec.trunk(inputs, **options) if spec.native else spec.trunk(inputs, weights=weights, **options)
    if feature in spec.taps:
        out = spec.taps[feature](trunk, dropout=dropout)
    elif feature is None:
        pool = layers.GlobalAveragePooling2D if global_pool else layers.Flatten
        out = pool(name="features")(trunk)
    else:
        out = _layer(keras.Model(inputs, trunk), feature, name).output
    model = keras.Model(inputs, out, name=name)
    if init is not None:
        initializer = keras.initializers.get(init)
        for layer in model.layers:
            if getattr(layer, "kernel", None) is not None:
                layer.kernel.assign(initializer(layer.kernel.shape))
    if weights is not None and spec.native:
        load_weights(model, weights, skip_mismatch=skip_mismatch)
    return model


def load_weights(model, path, *, skip_mismatch=False):
    """Keras 3 ``.weights.h5`` by structure, anything else ``.h5`` by (Keras 2) layer name."""
    if str(path).endswith(".weights.h5"):
        model.load_weights(path, skip_mismatch=skip_mismatch)
    else:
        load_by_name(model, path, skip_mismatch=skip_mismatch)


FROZEN_BATCHNORM = ("inference", "batch")


def set_trainable_blocks(model, backbone, last, frozen_batchnorm="inference"):
    """Train only the last ``last`` blocks of ``backbone`` (a model built by :func:`build_backbone`).

    ``last="all"`` trains everything, 0 freezes the backbone. Layers outside every block (a
    tap such as VGGFace fc6/fc7 on top of the trunk) train whenever any block does; ``last="fc"``
    trains the fully connected (Dense) ones among those alone, every convolution block and any
    other layer frozen (thesis 000's first stage: "only the fully connected layers").
    ``frozen_batchnorm``: a frozen BatchNormalization runs in "inference" mode (Keras: its moving
    statistics, never updated) or, "batch", normalises with the batch's statistics and updates its
    moving ones while its scale and offset stay fixed (TF-Slim fine-tuning with ``is_training``
    on and the layer left out of the trained variables; thesis 004 does not say which it ran).
    """
    if frozen_batchnorm not in FROZEN_BATCHNORM:
        raise ValueError(f"frozen_batchnorm must be one of {FROZEN_BATCHNORM}, got {frozen_batchnorm!r}")
    _set_trainable(model, backbone, last)
    if frozen_batchnorm == "batch":
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization) and not layer.trainable:
                layer.trainable = True
                for variable in layer.trainable_weights:
                    variable.trainable = False


def _set_trainable(model, backbone, last):
    spec = _spec(backbone)
    if last == "all":
        model.trainable = True
        return
    if last == "fc":
        every = tuple(_flat(spec.blocks))
        if not every:
            raise ValueError(f"backbone {backbone!r} has no block list to tell its fully connected layers apart")
        model.trainable = True
        for layer in model.layers:
            layer.trainable = isinstance(layer, keras.layers.Dense) and not layer.name.startswith(every)
        return
    if last and not spec.blocks:
        raise ValueError(f"backbone {backbone!r} has no block list; unfreeze 'all' or 0 blocks")
    if not 0 <= last <= len(spec.blocks):
        raise ValueError(f"backbone {backbone!r} has {len(spec.blocks)} blocks, asked to unfreeze {last}")
    every = tuple(_flat(spec.blocks))
    chosen = tuple(_flat(spec.blocks[len(spec.blocks) - last:]))
    model.trainable = True
    for layer in model.layers:
        in_block = layer.name.startswith(every)
        layer.trainable = layer.name.startswith(chosen) if in_block else last > 0


def default_size(name):
    """The input size a backbone was designed for (thesis input sizes are model options)."""
    return _spec(name).default_size


def _flat(blocks):
    for block in blocks:
        yield from (block,) if isinstance(block, str) else block


def _layer(model, feature, name):
    for candidate in (feature, to_keras_name(feature)):
        try:
            return model.get_layer(candidate)
        except ValueError:
            continue
    raise ValueError(f"backbone {name!r} has no layer or tap named {feature!r}")


def _spec(name):
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}") from None
