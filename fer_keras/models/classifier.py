"""Image and vector classifiers: backbone (or a feature vector) -> dense head -> task output.

Covers thesis 002's spatial-extractor fine-tuning (a new head on a frozen base, then the
last k blocks unfrozen; its Table 3.4 trainable counts pin the heads), thesis 004's AU
(sigmoid multi-label) and valence/arousal (linear) heads on VGG16 and BN-Inception, and
thesis 000's whole-video audio FFN on openSMILE functionals.
"""
from pathlib import Path

import keras
from keras import layers

from fer_keras.models.backbones import build_backbone, set_trainable_blocks
from fer_keras.models.keras2_h5 import load_by_name
from fer_keras.models.layers import standardized
from fer_keras.models.sequence import dense_stack, task_heads


def image_classifier(*, backbone, input_size=None, weights=None, global_pool=False, feature=None,
                     backbone_dropout=0.5, skip_mismatch=False, trainable=0, feature_dropout=0.0, hidden=(1024,),
                     hidden_names=(), dropout=0.5, batchnorm=False, tasks=("category",), classes=7,
                     num_aus=11, weight_decay=0.0, backbone_options=None, frozen_batchnorm="inference",
                     top_weights=None, name="image_classifier"):
    """Backbone [-> dropout] -> ``hidden`` dense layers (ReLU, dropout) -> one output per task.

    ``trainable`` is the number of last backbone blocks to train ("all", or 0 for a frozen
    base: thesis 002's phase 1). ``hidden_names`` renames hidden layers (thesis 002 calls its
    first one "dense", the tap its cascades read). ``weight_decay`` is L2 on every kernel, not
    the biases, as TF-Slim's ``l2_regularizer`` in its arg_scope adds it to the loss (thesis 004:
    4e-5): ``weight_decay * sum(w ** 2) / 2`` per kernel (``tf.nn.l2_loss``); only trainable
    kernels count, the only ones a gradient reaches. ``top_weights`` is a Keras 2 ``.h5`` file whose
    same-named layers start the ``hidden`` ones, the ImageNet VGG16/VGG19 file with its top
    (Keras' ``fc1``, ``fc2``) starting thesis 004's fc6 and fc7 as a TF-Slim fine-tune would; the
    convolutions still come from ``weights``. ``frozen_batchnorm``: see
    :func:`~fer_keras.models.backbones.set_trainable_blocks`.
    """
    cnn = build_backbone(backbone, input_size=input_size, weights=weights, global_pool=global_pool,
                         feature=feature, dropout=backbone_dropout, skip_mismatch=skip_mismatch,
                         options=backbone_options)
    set_trainable_blocks(cnn, backbone, trainable, frozen_batchnorm)
    image, x = cnn.inputs[0], cnn.outputs[0]
    if feature_dropout:
        x = layers.Dropout(feature_dropout, name="feature_dropout")(x)
    x = dense_stack(x, hidden, names=hidden_names, dropout=dropout, batchnorm=batchnorm,
                    prefix="head_fc")
    outputs = task_heads(x, None, tasks=tasks, classes=classes, num_aus=num_aus, temporal="last")
    model = keras.Model({"image": image}, outputs, name=name)
    if top_weights is not None:
        load_hidden(model, top_weights, hidden_names or [f"head_fc{i}" for i in range(1, len(hidden) + 1)])
    if weight_decay:
        decay_kernels(model, weight_decay)
    return model


# keras.applications' names for the fully connected layers TF-Slim's VGG calls fc6 and fc7
IMAGENET_TOP = {"fc6": "fc1", "fc7": "fc2"}


def load_hidden(model, path, names):
    """Set the hidden layers ``names`` from a Keras 2 ``.h5`` file's same-named layers (``fc6``/``fc7``
    also from its ``fc1``/``fc2``); every one must load, with the file's shapes."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: top_weights file does not exist")
    if not names:
        raise ValueError(f"{path}: top_weights given but the model has no hidden layers to load")
    report = load_by_name(model, path, layers=names, aliases=IMAGENET_TOP)
    missing = [n for n in names if n not in report["loaded"]]
    if missing:
        raise ValueError(f"{path}: holds no layer for the hidden layer(s) {', '.join(missing)} "
                         f"(looked for the same names and {IMAGENET_TOP})")


KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def decay_kernels(model, weight_decay):
    """TF-Slim's weight decay: an L2 term ``weight_decay * sum(w ** 2) / 2`` on every kernel of
    ``model`` (biases, BatchNorm and other variables left out), through the variables'
    regularisers, which Keras adds to the training loss."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    regulariser = keras.regularizers.L2(weight_decay / 2)
    for variable in model.weights:
        if variable.path.rsplit("/", 1)[-1] in KERNELS:
            variable.regularizer = regulariser


def vector_classifier(*, input_dim, input_name="functionals", hidden=(1024,), dropout=0.5,
                      batchnorm=False, tasks=("category",), classes=7, standardize=False,
                      name="vector_classifier"):
    """Thesis 000's whole-video audio FFN: functionals -> Dense(1024) -> dropout 0.5 -> softmax 7
    (``standardize``: z-scored with training-split statistics first)."""
    inputs = keras.Input((input_dim,), name=input_name)
    x = standardized(inputs, standardize, input_name)
    x = dense_stack(x, hidden, dropout=dropout, batchnorm=batchnorm, prefix="head_fc")
    outputs = task_heads(x, None, tasks=tasks, classes=classes, temporal="last")
    return keras.Model({input_name: inputs}, outputs, name=name)

