"""Sequence models: per-frame CNN (or per-frame vectors) -> RNN stack -> task heads.

One builder covers every CNN+RNN of the theses: thesis 000's VGGFace/ResNet +GRU/BGRU
(+attention) with per-frame logits and a masked "Reduce Mean", its audio LLD GRU, thesis 001's
CNN + 2xGRU(128) per-frame valence/arousal, thesis 002's cascades on cached features, and
thesis 003's frozen CNN + LSTM(128) with category, VA or combined heads. Every model takes a
0/1 ``mask`` input; padded steps never change a prediction.

``cached=True`` builds a frozen-CNN model without its CNN: input ``features`` (B, T, F) holds the
per-frame outputs of that CNN, computed once by ``fer-keras features`` (thesis 003 freezes its
ImageNet CNNs, so every epoch would recompute the same numbers). Every layer after the CNN keeps
its name, so weights move between the two forms by name (models.cached).
"""
import keras
from keras import layers

from fer_keras.models.backbones import build_backbone, default_size, set_trainable_blocks
from fer_keras.models.layers import AsMask, MaskedTemporalPool, MaskedTimeDistributed, standardized

RNNS = {"gru": layers.GRU, "lstm": layers.LSTM}
TASKS = ("category", "va", "au")
TEMPORAL = ("frame", "mean", "median", "last")
# Thesis 000 §5.8, what a per-frame model classifies: each frame (its prediction paired with the video
# label in the loss), the exact sequence (the real frames reduced) or the model output (all steps
# reduced, the padded repeats of the last frame included).
CLASSIFY = ("frame", "sequence", "output")


def frame_features(frames, mask, *, backbone, input_size=None, weights=None, global_pool=False,
                   feature=None, backbone_dropout=0.5, skip_mismatch=False, trainable="all", init=None,
                   backbone_options=None, frozen_batchnorm="inference"):
    """Apply one backbone to every real frame: (B, T, H, W, 3) and mask (B, T) -> (B, T, F), zeros
    at padded steps, which never reach the backbone (nor its BatchNorm statistics in training).

    ``trainable``: "all", "fc" (only the backbone's fully connected taps, e.g. VGGFace fc6 and
    fc7) or the number of last backbone blocks left trainable (0 = frozen, as thesis 003 freezes
    its ImageNet CNNs); ``frozen_batchnorm`` how its frozen BatchNorm layers normalise
    (:func:`~fer_keras.models.backbones.set_trainable_blocks`).
    """
    cnn = build_backbone(backbone, input_size=input_size, weights=weights, global_pool=global_pool,
                         feature=feature, dropout=backbone_dropout, skip_mismatch=skip_mismatch,
                         init=init, options=backbone_options)
    set_trainable_blocks(cnn, backbone, trainable, frozen_batchnorm)
    return MaskedTimeDistributed(cnn, name="frame_cnn")([frames, mask])


def dense_stack(x, units, *, names=(), dropout=0.0, activation="relu", batchnorm=False, prefix="fc"):
    """Hidden fully connected layers, each followed by optional batch norm and dropout.

    Layers are called ``<prefix>1``, ``<prefix>2``... unless ``names`` names each of them.
    ``dropout`` is one rate for every layer or one per layer (thesis 002's head search draws one
    for each dense layer).
    """
    if names and len(names) != len(units):
        raise ValueError(f"names {tuple(names)} must name each of the hidden layers {tuple(units)}")
    rates = tuple(dropout) if isinstance(dropout, (list, tuple)) else (dropout,) * len(units)
    if len(rates) != len(units):
        raise ValueError(f"dropout {tuple(dropout)} must give one rate per hidden layer {tuple(units)}")
    for i, (width, rate) in enumerate(zip(units, rates), start=1):
        layer_name = names[i - 1] if names else f"{prefix}{i}"
        x = layers.Dense(width, activation=activation, name=layer_name)(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"{layer_name}_bn")(x)
        if rate:
            x = layers.Dropout(rate, name=f"{layer_name}_dropout")(x)
    return x


def rnn_stack(x, mask, *, rnn="gru", units=128, depth=2, bidirectional=False, dropout=0.0,
              recurrent_dropout=0.0, attention=False, return_sequences=True, reset_after=True, prefix="rnn"):
    """``depth`` stacked GRU/LSTM layers under ``mask``, optionally bidirectional.

    ``attention`` adds thesis 000's gate g = a * z with a = sigmoid(W z + b) computed per
    time step from the RNN states z (the thesis leaves its exact place open; after the
    stack, "per feature map of the RNN", is the reading taken here). ``reset_after`` (GRU only):
    Keras' default applies the reset gate after the recurrent matmul (cuDNN's form); False is
    TF1's ``GRUCell`` (theses 000 and 001 ran TF1).
    """
    cell = RNNS[rnn]
    extra = {"reset_after": reset_after} if rnn == "gru" else {}
    for i in range(1, depth + 1):
        last = i == depth
        layer = cell(units, return_sequences=return_sequences or not last, dropout=dropout,
                     recurrent_dropout=recurrent_dropout, name=f"{prefix}{i}", **extra)
        if bidirectional:
            layer = layers.Bidirectional(layer, name=f"{prefix}{i}_bi")
        x = layer(x, mask=mask)
    if attention:
        gate = layers.Dense(x.shape[-1], activation="sigmoid", name=f"{prefix}_attention")(x)
        x = layers.Multiply(name=f"{prefix}_gated")([gate, x])
    return x


def task_heads(x, mask, *, tasks=("category",), classes=7, num_aus=11, temporal="frame",
               head_units=(), head_dropout=0.0, padded=False, head_activation="relu", va_activation="linear"):
    """One output per task, named after it: ``category`` (softmax over ``classes``), ``va``
    (linear valence, arousal) and ``au`` (sigmoid per action unit).

    ``temporal``: "frame" keeps (B, T, .) outputs; "mean"/"median" pool the per-frame logits
    over valid frames before the activation (thesis 000; ``padded``: over every step, the
    padded ones repeating the last valid one); "last" expects (B, F) inputs.
    """
    sizes = {"category": classes, "va": 2, "au": num_aus}
    activations = {"category": "softmax", "va": va_activation, "au": "sigmoid"}
    outputs = {}
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        h = dense_stack(x, head_units, dropout=head_dropout, activation=head_activation, prefix=f"{task}_fc")
        if temporal in ("mean", "median"):
            logits = layers.Dense(sizes[task], name=f"{task}_frame_logits")(h)
            pooled = MaskedTemporalPool(temporal, padded=padded, name=f"{task}_reduce_{temporal}")([logits, mask])
            outputs[task] = layers.Activation(activations[task], name=task)(pooled)
        else:
            outputs[task] = layers.Dense(sizes[task], activation=activations[task], name=task)(h)
    return outputs


def sequence_model(*, backbone=None, input_size=None, weights=None, global_pool=False, feature=None,
                   backbone_dropout=0.5, skip_mismatch=False, trainable="all", init=None,
                   backbone_options=None, frozen_batchnorm="inference", input_dim=None,
                   input_name="features", seq_len=None, fc=(), fc_dropout=0.0, rnn="gru", units=128,
                   rnn_layers=2, bidirectional=False, rnn_dropout=0.0, recurrent_dropout=0.0,
                   attention=False, dropout=0.0, tasks=("category",), classes=7, num_aus=11,
                   temporal="mean", classify="sequence", head_units=(), head_dropout=0.0,
                   head_activation="relu", va_activation="linear", reset_after=True, standardize=False,
                   cached=False, name="sequence_model"):
    """Build a CNN+RNN (``backbone`` set; input ``frames``) or RNN-on-vectors model (``input_dim``
    set; input ``input_name``), both with a ``mask`` input of shape (B, T).

    ``rnn=None`` skips the recurrence (thesis 000's per-frame CNN classification); ``fc`` adds
    per-frame dense layers before the RNN (thesis 001's VGG16-GRU fc 4096, AlexNet-GRU's two).
    ``standardize`` z-scores the vector input with training-split statistics (layers.Standardize).
    ``head_activation`` is the hidden head layers' activation (thesis 003 does not state it),
    ``va_activation`` the valence/arousal output's (linear; "tanh" bounds it to the labels' [-1, 1]),
    ``reset_after`` the GRU form (rnn_stack). ``classify`` (with ``temporal`` mean or median, thesis 000 §5.8): "sequence" reduces the
    per-frame logits over the real frames, "output" over every step (padded repeats of the last
    frame included), "frame" keeps one prediction per frame, each trained on the video's label
    (evaluation then averages them over the real frames).
    """
    if temporal not in TEMPORAL:
        raise ValueError(f"temporal must be one of {TEMPORAL}, got {temporal!r}")
    if classify not in CLASSIFY:
        raise ValueError(f"classify must be one of {CLASSIFY}, got {classify!r}")
    if classify != "sequence" and temporal not in ("mean", "median"):
        raise ValueError(f"classify={classify!r} chooses how per-frame logits are reduced: it needs temporal "
                         f"'mean' or 'median', got {temporal!r}")
    if (backbone is None) == (input_dim is None):
        raise ValueError("give exactly one of backbone (frames input) or input_dim (vector input)")
    if temporal == "last" and rnn is None:
        raise ValueError("temporal='last' needs an RNN")
    mask_in = keras.Input((seq_len,), name="mask")
    mask = AsMask(name="as_mask")(mask_in)
    if cached:
        if backbone is None:
            raise ValueError("cached takes a backbone's features: it needs backbone")
        if trainable != 0:
            raise ValueError(f"cached features come from a frozen CNN: trainable must be 0, got {trainable!r}")
        cnn = build_backbone(backbone, input_size=input_size or default_size(backbone), global_pool=global_pool,
                             feature=feature, dropout=backbone_dropout, options=backbone_options)
        data_in = keras.Input((seq_len, int(cnn.output.shape[-1])), name="features")
        x = data_in
    elif backbone is not None:
        size = input_size or default_size(backbone)
        data_in = keras.Input((seq_len, size, size, 3), name="frames")
        x = frame_features(data_in, mask, backbone=backbone, input_size=size, weights=weights,
                           global_pool=global_pool, feature=feature, backbone_dropout=backbone_dropout,
                           skip_mismatch=skip_mismatch, trainable=trainable, init=init,
                           backbone_options=backbone_options, frozen_batchnorm=frozen_batchnorm)
    else:
        data_in = keras.Input((seq_len, input_dim), name=input_name)
        x = standardized(data_in, standardize, input_name)
    x = dense_stack(x, fc, dropout=fc_dropout, prefix="frame_fc")
    if rnn is not None:
        x = rnn_stack(x, mask, rnn=rnn, units=units, depth=rnn_layers, bidirectional=bidirectional,
                      dropout=rnn_dropout, recurrent_dropout=recurrent_dropout, attention=attention,
                      return_sequences=temporal != "last", reset_after=reset_after)
    if dropout:
        x = layers.Dropout(dropout, name="rnn_dropout")(x)
    outputs = task_heads(x, mask, tasks=tasks, classes=classes, num_aus=num_aus,
                         temporal="frame" if classify == "frame" else temporal, head_units=head_units,
                         head_dropout=head_dropout, padded=classify == "output",
                         head_activation=head_activation, va_activation=va_activation)
    return keras.Model({data_in.name: data_in, "mask": mask_in}, outputs, name=name)

