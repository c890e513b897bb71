"""Image and vector classifiers: backbone (or a feature vector) -> dense head -> task output.

Covers thesis 002's spatial-extractor fine-tuning (a new head on a frozen base, then the
last k blocks unfrozen; its Table 3.4 trainable counts pin the heads), thesis 004's AU
(sigmoid multi-label) and valence/arousal (linear) heads on VGG16 and BN-Inception, and
thesis 000's whole-video audio FFN on openSMILE functionals.
"""
import keras
from keras import layers

from fer_keras.models.backbones import build_backbone, set_trainable_blocks
from fer_keras.models.layers import standardized
from fer_keras.models.sequence import dense_stack, task_heads


def image_classifier(*, backbone, input_size=None, weights=None, global_pool=False, feature=None,
                     backbone_dropout=0.5, skip_mismatch=False, trainable=0, feature_dropout=0.0, hidden=(1024,),
                     hidden_names=(), dropout=0.5, batchnorm=False, tasks=("category",), classes=7,
                     num_aus=11, name="image_classifier"):
    """Backbone [-> dropout] -> ``hidden`` dense layers (ReLU, dropout) -> one output per task.

    ``trainable`` is the number of last backbone blocks to train ("all", or 0 for a frozen
    base: thesis 002's phase 1). ``hidden_names`` renames hidden layers (thesis 002 calls its
    first one "dense", the tap its cascades read).
    """
    cnn = build_backbone(backbone, input_size=input_size, weights=weights, global_pool=global_pool,
                         feature=feature, dropout=backbone_dropout, skip_mismatch=skip_mismatch)
    set_trainable_blocks(cnn, backbone, trainable)
    image, x = cnn.inputs[0], cnn.outputs[0]
    if feature_dropout:
        x = layers.Dropout(feature_dropout, name="feature_dropout")(x)
    x = dense_stack(x, hidden, names=hidden_names, dropout=dropout, batchnorm=batchnorm,
                    prefix="head_fc")
    outputs = task_heads(x, None, tasks=tasks, classes=classes, num_aus=num_aus, temporal="last")
    return keras.Model({"image": image}, outputs, name=name)


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

