"""KerasTuner search spaces, one per model family, as each thesis searched (or, where the
thesis is silent, a documented sensible space).

A space maps a ``keras_tuner.HyperParameters`` to builder options, except the keys
``learning_rate``, ``optimizer`` and ``lr_decay`` (Keras 2's optimiser ``decay``, an inverse-time
schedule), which go to compilation, and ``batch_size`` and ``seq_len``, which set the trial's
``data.pipeline`` (``seq_len`` is a builder option too). Thesis 000 tuned by hand, one factor at a
time on VGG-Face: its spaces are the values it tried (§4.2-4.6).
"""
COMPILE_KEYS = ("learning_rate", "optimizer", "lr_decay")
PIPELINE_KEYS = ("batch_size", "seq_len")
BUILDER_PIPELINE_KEYS = ("seq_len",)  # pipeline keys the model builders take as well


def split(drawn: dict, fixed=None):
    """A space's draw as ``(builder options, compile arguments, data.pipeline values)``; ``fixed``
    builder options win over the draw, in the pipeline too (a fixed ``seq_len``)."""
    fixed = fixed or {}
    compile_args = {k: v for k, v in drawn.items() if k in COMPILE_KEYS}
    pipeline = {k: fixed.get(k, v) for k, v in drawn.items() if k in PIPELINE_KEYS}
    options = {k: v for k, v in drawn.items()
               if k not in COMPILE_KEYS and (k not in PIPELINE_KEYS or k in BUILDER_PIPELINE_KEYS)}
    return {**options, **fixed}, compile_args, pipeline


def thesis000_visual(hp):
    """§6.2-6.3: LR 1e-4 / 1e-5, mean or median aggregation, GRU vs BGRU, attention."""
    return dict(learning_rate=hp.Choice("learning_rate", [1e-4, 1e-5]),
                temporal=hp.Choice("temporal", ["mean", "median"]),
                bidirectional=hp.Boolean("bidirectional"),
                attention=hp.Boolean("attention"))


def thesis000_audio_ffn(hp):
    """§6.4: widths 128-2048 or 256->64, optional batch norm, LR 1e-4 / 1e-5, dropout 0.5."""
    widths = {"128": (128,), "256": (256,), "512": (512,), "1024": (1024,), "2048": (2048,),
              "256-64": (256, 64)}
    return dict(learning_rate=hp.Choice("learning_rate", [1e-4, 1e-5]),
                hidden=widths[hp.Choice("hidden", list(widths), default="1024")],
                batchnorm=hp.Boolean("batchnorm"))


def thesis000_audio_gru(hp):
    """§6.4 video-clip GRU: 32/64/128 units, 2 or 4 layers, attention, LR 1e-3 / 1e-5."""
    return dict(learning_rate=hp.Choice("learning_rate", [1e-3, 1e-5]),
                units=hp.Choice("units", [32, 64, 128], default=64),
                rnn_layers=hp.Choice("rnn_layers", [2, 4], default=4),
                attention=hp.Boolean("attention", default=True))


def thesis000_fusion(hp):
    """§6.5: the four options, LR 1e-4 / 1e-5."""
    return dict(learning_rate=hp.Choice("learning_rate", [1e-4, 1e-5]),
                option=hp.Choice("option", [1, 2, 3, 4], default=2))


def thesis001(hp):
    """§4.2 and §6.3: Adam LR 1e-4 / 1e-5 / 1e-6 and the grid of n sequences per batch {2, 4, 6} x
    sequence length l {60, 80, 100}; the thesis ran a grid, so its search files set
    ``tuning.algorithm: grid`` (27 trials). Defaults: its choice, LR 1e-5, n = 4, l = 80."""
    return dict(learning_rate=hp.Choice("learning_rate", [1e-4, 1e-5, 1e-6], default=1e-5),
                batch_size=hp.Choice("batch_size", [2, 4, 6], default=4),
                seq_len=hp.Choice("seq_len", [60, 80, 100], default=80))


def thesis002_finetune(hp):
    """§3.2 phase 1 (KerasTuner, Bayesian, 20 trials): 1-2 dense layers of 256/512/1024 units,
    each followed by its own dropout 0.2-0.9, frozen base, SGD. The first dense layer keeps the name
    "dense", the tap thesis 002's 1,024-feature cascades read."""
    depth = hp.Int("dense_layers", 1, 2)
    hidden = tuple(hp.Choice(f"units_{i}", [256, 512, 1024]) for i in range(depth))
    dropout = tuple(hp.Float(f"dropout_{i}", 0.2, 0.9, step=0.1) for i in range(depth))
    return dict(optimizer="sgd", hidden=hidden, hidden_names=("dense", "dense_1")[:depth],
                dropout=dropout, trainable=0)


def thesis002_cascade(hp):
    """§3.3.2 / §4.5: LSTM width, dropout 0-0.9, naive (input) vs recurrent dropout."""
    rate = hp.Float("dropout", 0.0, 0.9, step=0.1)
    recurrent = hp.Choice("dropout_type", ["naive", "recurrent"]) == "recurrent"
    return dict(units=hp.Choice("units", [64, 128, 256], default=128),
                rnn_dropout=0.0 if recurrent else rate, recurrent_dropout=rate if recurrent else 0.0)


def thesis002_cnn1d(hp):
    """§4.5 (its filters are not stated): filter widths, kernel size, dense width, dropout."""
    width = hp.Choice("filters", [32, 64, 128], default=64)
    return dict(filters=(width, width, 2 * width, 2 * width), kernel=hp.Choice("kernel", [3, 5]),
                dense=hp.Choice("dense", [64, 128, 256], default=128),
                dropout=hp.Float("dropout", 0.0, 0.8, step=0.1, default=0.5))


def thesis002_c3d(hp):
    """§3.4 Fig. 3.21 and the overfitting list: 1-3 conv layers of 16/32 filters, kernel 3-9,
    batch norm, LeakyReLU, He initialisation, dropout."""
    depth = hp.Int("conv_layers", 1, 3, default=3)
    return dict(filters=tuple(hp.Choice(f"filters_{i}", [16, 32]) for i in range(depth)),
                kernel=hp.Choice("kernel", [3, 5, 7, 9]), batchnorm=hp.Boolean("batchnorm"),
                activation=hp.Choice("activation", ["relu", "leaky_relu"]),
                initializer=hp.Choice("initializer", ["glorot_uniform", "he_uniform", "he_normal"]),
                dropout=hp.Float("dropout", 0.0, 0.8, step=0.1))


def thesis002_convlstm(hp):
    """§3.5 (details not stated): filters, kernel, dropout."""
    width = hp.Choice("filters", [8, 16], default=8)
    return dict(filters=(width, width), kernel=hp.Choice("kernel", [3, 5]),
                dropout=hp.Float("dropout", 0.0, 0.5, step=0.1))


def thesis003(hp):
    """§4.5 table: one dropout rate 0.5-0.8 for every dropout of the model (after the LSTM and after
    each hidden FC layer), LR 0.1-1e-6 and its decay (range not stated: 1e-6 to 1e-3, the best
    were 1e-4 and 1e-5), batch size 1-4, sequence length 60 or 80, 0/1/2 hidden FC of 64 or 128
    units. Defaults: the thesis's best (dropout 0.5, LR 1e-5, decay 1e-4, batch 2, length 60)."""
    depth = hp.Int("head_layers", 0, 2)
    width = hp.Choice("head_units", [64, 128])
    rate = hp.Float("dropout", 0.5, 0.8, step=0.1, default=0.5)
    return dict(learning_rate=hp.Float("learning_rate", 1e-6, 1e-1, sampling="log", default=1e-5),
                lr_decay=hp.Choice("lr_decay", [1e-6, 1e-5, 1e-4, 1e-3], default=1e-4),
                batch_size=hp.Int("batch_size", 1, 4, default=2),
                seq_len=hp.Choice("seq_len", [60, 80], default=60),
                dropout=rate, head_dropout=rate, head_units=(width,) * depth)


def thesis004(hp):
    """Thesis 004 chose by training-loss curves only: RMSprop LR on a log scale, and its one
    ambiguity (§4.2.1: "final three convolutional layers") as a choice: head only, or the last
    backbone block too."""
    return dict(optimizer="rmsprop",
                learning_rate=hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-2),
                trainable=hp.Choice("trainable_blocks", [0, 1], default=0))
