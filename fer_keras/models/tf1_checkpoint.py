"""Load TF1 / TF-Slim checkpoints into Keras 3 models by variable name.

Thesis 001's "Aff-Wild pretrained" rows start from the AffWildNet networks that researchers hold
as TF1 checkpoints (``model.ckpt-N``), and thesis 004 fine-tunes from TF-Slim's ImageNet
``vgg_16`` and ``inception_v2`` checkpoints. Keras cannot read them: their variables carry TF1
scope names (``vgg_16/conv1/conv1_1/weights``) and some hold a layer in another form (slim's fc6
is a 7x7 convolution, TF1's ``GRUCell`` packs its gates otherwise than Keras' GRU).

A *name map* says which checkpoint variable starts which Keras weight. It is data: an ordered
list of rules ``(keras pattern, checkpoint template[, conversion])``. A Keras weight is named
``<layer name>/<variable name>`` with the layer name in its original spelling (``__`` -> ``/``,
:mod:`fer_keras.models.keras2_h5`), e.g. ``block1_conv1/kernel``, ``rnn1/recurrent_kernel``,
``Mixed_3b/Branch_1/Conv2d_0b_3x3/BatchNorm/beta``; layers inside nested models and wrappers
count by their own names. The first rule whose pattern fully matches (``re.fullmatch``) wins; its
template, expanded with the match (``\\1``, ``\\g<name>``), names the checkpoint variable, or a
tuple of templates several of them, and the conversion (a key of :data:`CONVERSIONS`) turns them
into the Keras weight. :data:`NAME_MAPS` holds the maps of the theses' checkpoints; any list of
rules (from a JSON config, say) works the same way.
"""
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from fer_keras.models.keras2_h5 import _weighted_layers, to_original_name

log = logging.getLogger(__name__)


def dense_from_conv(arrays, keras_shape):
    """A convolution kernel (kh, kw, cin, cout) as a Dense kernel (kh*kw*cin, cout).

    TF-Slim's vgg_16 writes fc6/fc7/fc8 as convolutions (fc6: 7x7x512x4096, VALID on pool5's 7x7
    map at 224; fc7, fc8: 1x1). Row ``(i*kw + j)*cin + c`` of the plain C-order reshape is the
    weight of map element (i, j, c), which is where Keras' ``Flatten`` puts that element of a
    channels_last map: ``Dense(Flatten(x))`` equals the squeezed VALID convolution exactly when
    the map is kh x kw (pool5 at 224 for fc6). A Keras kernel of rank 4 (a model keeping slim's
    convolutions) takes the kernel as it is.
    """
    (kernel,) = arrays
    if len(keras_shape) == 2 and kernel.ndim == 4:
        return kernel.reshape(-1, kernel.shape[-1])
    return kernel


def _gru_gates(gates, candidate):
    """TF1 ``GRUCell`` (``gates`` [.., 2*units] r then u; ``candidate`` [.., units]) -> Keras' z, r, h."""
    units = candidate.shape[-1]
    reset, update = gates[..., :units], gates[..., units:]
    return np.concatenate([update, reset, candidate], axis=-1)


def gru_kernel(arrays, keras_shape):
    """Keras GRU ``kernel`` (input, 3*units) from TF1 ``gates/kernel`` and ``candidate/kernel``.

    TF1's ``GRUCell`` multiplies ``concat([inputs, state])`` by ``gates/kernel``
    (input+units, 2*units; columns: reset gate r, then update gate u) and
    ``concat([inputs, r * state])`` by ``candidate/kernel`` (input+units, units), then
    ``h = u * state + (1 - u) * tanh(candidate)``. Keras' GRU with ``reset_after=False`` is the same
    cell with its update gate called z and its columns ordered z, r, h; the input rows of both
    kernels form ``kernel``, the state rows ``recurrent_kernel``.
    """
    gates, candidate = arrays
    inputs = gates.shape[0] - candidate.shape[-1]
    return _gru_gates(gates[:inputs], candidate[:inputs])


def gru_recurrent_kernel(arrays, keras_shape):
    """Keras GRU ``recurrent_kernel`` (units, 3*units): the state rows (see :func:`gru_kernel`)."""
    gates, candidate = arrays
    inputs = gates.shape[0] - candidate.shape[-1]
    return _gru_gates(gates[inputs:], candidate[inputs:])


def gru_bias(arrays, keras_shape):
    """Keras GRU ``bias`` (3*units,) from TF1 ``gates/bias`` (r, u) and ``candidate/bias``.

    Only ``reset_after=False`` has this one-row bias; Keras' default (``reset_after=True``, two
    rows) is another cell, and its shape check fails.
    """
    return _gru_gates(*arrays)


CONVERSIONS = {"dense_from_conv": dense_from_conv, "gru_kernel": gru_kernel,
               "gru_recurrent_kernel": gru_recurrent_kernel, "gru_bias": gru_bias}


def _vgg16_convs(template):
    """One rule per VGG16 convolution, ``block<b>_conv<i>`` (keras.applications) or VGGFace's
    ``conv<b>_<i>``, ``template`` formatted with b, i and n (1 to 13, the convolution's rank)."""
    rules, n = [], 0
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, convs + 1):
            n += 1
            name = template.format(b=block, i=i, n=n)
            rules.append((rf"(?:block{block}_conv{i}|conv{block}_{i})/kernel", f"{name}/weights"))
            rules.append((rf"(?:block{block}_conv{i}|conv{block}_{i})/bias", f"{name}/biases"))
    return rules


VGG_16 = [
    *_vgg16_convs("vgg_16/conv{b}/conv{b}_{i}"),
    # thesis 004's head names fc6/fc7 (registry vgg16_au); keras.applications' top calls them fc1/fc2
    (r"(?:fc6|fc1)/kernel", "vgg_16/fc6/weights", "dense_from_conv"),
    (r"(?:fc6|fc1)/bias", "vgg_16/fc6/biases"),
    (r"(?:fc7|fc2)/kernel", "vgg_16/fc7/weights", "dense_from_conv"),
    (r"(?:fc7|fc2)/bias", "vgg_16/fc7/biases"),
    (r"predictions/kernel", "vgg_16/fc8/weights", "dense_from_conv"),
    (r"predictions/bias", "vgg_16/fc8/biases"),
]
"""TF-Slim ``vgg_16`` (ImageNet, 1000 classes) onto keras.applications VGG16 names. Slim's
checkpoint expects RGB minus its channel means (preprocessing ``slim_vgg``), not Keras' BGR."""

_SLIM_SCOPE = r"((?:Conv2d_|Mixed_|Logits/)[^/]+(?:/[^/]+)*"   # slim's layer scopes under InceptionV2/

INCEPTION_V2 = [
    (_SLIM_SCOPE + r")/depthwise_kernel", r"InceptionV2/\1/depthwise_weights"),
    (_SLIM_SCOPE + r")/pointwise_kernel", r"InceptionV2/\1/pointwise_weights"),
    (_SLIM_SCOPE + r")/kernel", r"InceptionV2/\1/weights"),
    (_SLIM_SCOPE + r")/bias", r"InceptionV2/\1/biases"),
    (_SLIM_SCOPE + r"/BatchNorm)/(gamma|beta|moving_mean|moving_variance)", r"InceptionV2/\1/\2"),
]
"""TF-Slim ``inception_v2`` onto :func:`fer_keras.models.inception.bn_inception`, whose layers are
slim's scopes below ``InceptionV2/`` (``Conv2d_*``, ``Mixed_*``, ``Logits/*``: a task head such as
``au`` is unmapped, not looked for in the checkpoint). Slim's batch norm there has no gamma (``scale=False``); a
Keras model that has one gets ones (reported as ``gamma_ones``). The checkpoint's
``InceptionV2/Logits`` (1001 classes) has no layer in the backbone and shows as unused."""


def _affwild_gru(cell, keras_layer):
    scope = f"rnn_1/rnn/multi_rnn_cell/cell_{cell}/gru_cell"
    return [(rf"{keras_layer}/kernel", (f"{scope}/gates/kernel", f"{scope}/candidate/kernel"), "gru_kernel"),
            (rf"{keras_layer}/recurrent_kernel", (f"{scope}/gates/kernel", f"{scope}/candidate/kernel"),
             "gru_recurrent_kernel"),
            (rf"{keras_layer}/bias", (f"{scope}/gates/bias", f"{scope}/candidate/bias"), "gru_bias")]


_AFFWILD_FC6 = [(r"(?:frame_fc1|fc6)/kernel", "linear_1/weights"), (r"(?:frame_fc1|fc6)/bias", "linear_1/biases")]

AFFWILD_VGGFACE = [
    *_vgg16_convs("conv_{n}"),
    *_AFFWILD_FC6,
    (r"(?:frame_fc2|fc7)/kernel", "linear2_1/weights"),
    (r"(?:frame_fc2|fc7)/bias", "linear2_1/biases"),
]
"""The Aff-Wild ``vggface`` CNNs (``vggface_4096x4096x2.py``, ``vggface_4096x2000x2.py`` of
dkollias/Aff-Wild-models; thesis 001 §6.6.2's "Aff-Wild pretrained VGG16"): ``conv_1`` ...
``conv_13`` (3x3, SAME; 2x2 SAME poolings: backbone option ``pool_padding: same``), then
``linear_1`` (4096) and ``linear2_1`` (4096 or 2000) on the NHWC-flattened pool5, which is Keras'
``Flatten`` order. Their 2-output ``linear3_1`` is left unused: the thesis puts a GRU after fc.
Written from the public code, not checked against a real checkpoint."""

AFFWILDNET_VGGFACE_GRU = [
    *_vgg16_convs("conv_{n}"),
    *_AFFWILD_FC6,
    *_affwild_gru(0, "rnn1"),
    *_affwild_gru(1, "rnn2"),
    (r"va/kernel", "rnn_1/weights_rnn"),
    (r"va/bias", "rnn_1/biases_rnn"),
]
"""AffWildNet VGG-Face-GRU (``affwildnet/vggface_gru.py``; extract-001 §10) onto the registry's
``vgg16_gru_va`` names (``frame_fc1``, ``rnn1``, ``rnn2``, ``va``; build it with
``reset_after=False``, TF1's GRU): ``conv_1`` ... ``conv_13``, ``linear_1`` (4096, ReLU), the
2-layer ``MultiRNNCell`` of ``GRUCell(128)`` under ``rnn_1/rnn/multi_rnn_cell/cell_<k>/gru_cell``
and the linear 128 -> 2 output ``rnn_1/weights_rnn``. The names follow TF1's own naming of that
code (checked by building it in the tests), not a real AffWildNet file: unverified against one,
and a user whose file differs passes their own rules."""

NAME_MAPS = {"vgg_16": VGG_16, "inception_v2": INCEPTION_V2, "affwild_vggface": AFFWILD_VGGFACE,
             "affwildnet_vggface_gru": AFFWILDNET_VGGFACE_GRU}

# the name map a registry backbone's TF-Slim ImageNet checkpoint needs (thesis 004), used when an
# experiment's weights_from is a TF1 checkpoint and it names no weights_map
BACKBONE_MAPS = {"vgg16": "vgg_16", "bn_inception": "inception_v2"}
# The pixels each map's checkpoints were trained on (fer_keras.data.preprocessing modes): slim's
# vgg_preprocessing means, slim's inception [-1, 1], Aff-Wild's (x - 128) / 128. A run that loads
# one and leaves data.pipeline.normalize unset gets its mode (config.weights_preprocessing).
MAP_PREPROCESSING = {"vgg_16": "slim_vgg", "inception_v2": "tf", "affwild_vggface": "affwild",
                     "affwildnet_vggface_gru": "affwild"}


def default_map(weights_from, backbone) -> str | None:
    """The name map a TF1 checkpoint named without one takes: its model's backbone's (vgg16 ->
    vgg_16, bn_inception -> inception_v2); None when ``weights_from`` is no TF1 checkpoint or the
    backbone has no default (the caller asks for ``weights_map``)."""
    if weights_from is None or not is_checkpoint(weights_from):
        return None
    return BACKBONE_MAPS.get(backbone)

# Optimizer and bookkeeping state a training run saves beside the weights (TF1 optimizers' slots,
# Adam's power accumulators, the step counter, slim's moving-average shadows).
OPTIMIZER_STATE = re.compile(
    r"(?:.*/)?(?:global_step|beta[12]_power)"
    r"|.+/(?:Adam|Momentum|RMSProp|Adagrad|Adadelta|Ftrl|ExponentialMovingAverage)(?:_\d+)?")


def resolve(path) -> str:
    """The checkpoint prefix of ``path``: a prefix (``model.ckpt-1000``, or one of its
    ``.index``/``.meta``/``.data-*`` files) or a directory with a ``checkpoint`` file."""
    path = str(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            # the ``checkpoint`` file often holds the absolute path of the machine that trained
            state = tf.train.get_checkpoint_state(path)
            moved = state and os.path.join(path, os.path.basename(state.model_checkpoint_path))
            if not moved or not tf.io.gfile.glob(moved + ".index"):
                raise ValueError(f"{path}: directory without a 'checkpoint' file naming a TF1 checkpoint in it")
            latest = moved
        return latest
    return re.sub(r"\.(?:index|meta|data-\d+-of-\d+)$", "", path)


def is_checkpoint(path) -> bool:
    """Whether ``path`` names a TF1 checkpoint: a prefix with its ``.index`` file (or one of its
    files), a directory with a ``checkpoint`` file, or an existing ``*.ckpt`` / ``*.ckpt-N`` file
    (the V1 single-file format of TF-Slim's published ``vgg_16.ckpt``, ``inception_v2.ckpt``)."""
    path = str(path)
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "checkpoint"))
    prefix = re.sub(r"\.(?:index|meta|data-\d+-of-\d+)$", "", path)
    single_file = os.path.isfile(path) and re.search(r"\.ckpt(?:-\d+)?$", path) is not None
    return os.path.isfile(prefix + ".index") or single_file


def read_checkpoint(path):
    """(prefix, reader) of the TF1 checkpoint at ``path``; a clear one-line error otherwise."""
    prefix = resolve(path)
    try:
        return prefix, tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a TF1 checkpoint ({reason})") from None


def load_checkpoint(model, path, name_map, *, skip_mismatch=False) -> dict:
    """Set ``model``'s weights from the TF1 checkpoint ``path`` through ``name_map``.

    ``name_map`` is a key of :data:`NAME_MAPS` or a list of rules (module docstring). Every
    mapped weight's converted shape is checked before any is set: a mismatch raises
    ``ValueError`` naming both variables and shapes, or with ``skip_mismatch`` is skipped with a
    warning. A BatchNorm ``gamma`` the checkpoint lacks is set to ones (slim's ``scale=False``).
    Returns the report :func:`write_report` saves: ``checkpoint`` (the prefix read), ``loaded``
    {keras weight: checkpoint name(s)}, ``gamma_ones``, ``skipped_mismatch`` {keras weight:
    reason}, ``missing_in_checkpoint`` {keras weight: expected name}, ``unmapped`` (weights no
    rule matched), ``unused_in_checkpoint`` (names no rule asked for, optimizer state left out) and
    ``optimizer_state`` (how many variables that was).
    """
    rules = _rules(name_map)
    prefix, reader = read_checkpoint(path)
    stored = reader.get_variable_to_shape_map()
    report = {"checkpoint": prefix, "loaded": {}, "gamma_ones": [], "skipped_mismatch": {},
              "missing_in_checkpoint": {}, "unmapped": [], "unused_in_checkpoint": [], "optimizer_state": 0}
    assignments, used, matched_any = [], set(), False
    for name, variable in _named_weights(model):
        rule = next(((r, m) for r in rules if (m := re.fullmatch(r[0], name))), None)
        if rule is None:
            report["unmapped"].append(name)
            continue
        matched_any = True
        (_, template, *convert), match = rule
        sources = tuple(match.expand(t) for t in ((template,) if isinstance(template, str) else template))
        absent = [s for s in sources if s not in stored]
        if absent:
            if variable.name == "gamma":
                assignments.append((name, variable, np.ones(variable.shape)))
                report["gamma_ones"].append(name)
            else:
                report["missing_in_checkpoint"][name] = absent[0]
            continue
        used.update(sources)
        arrays = [reader.get_tensor(s) for s in sources]
        value = CONVERSIONS[convert[0]](arrays, tuple(variable.shape)) if convert else arrays[0]
        if tuple(value.shape) != tuple(variable.shape):
            held = ", ".join(f"{s} {tuple(stored[s])}" for s in sources)
            message = (f"{prefix}: checkpoint {held} gives shape {tuple(value.shape)}"
                       f"{f' after {convert[0]}' if convert else ''}, Keras weight {name!r} is {tuple(variable.shape)}")
            if not skip_mismatch:
                raise ValueError(message)  # before any weight was set: the model is unchanged
            log.warning("skipping: %s", message)
            report["skipped_mismatch"][name] = message
            continue
        assignments.append((name, variable, value))
        report["loaded"][name] = sources[0] if len(sources) == 1 else list(sources)
    if not matched_any:
        raise ValueError(f"name map matches no weight of model {model.name!r} "
                         f"(its weights are named like {_example(report['unmapped'])})")
    if not report["loaded"] and not report["skipped_mismatch"]:
        missing = report["missing_in_checkpoint"]
        raise ValueError(f"{prefix}: holds none of the variables the name map asks for "
                         f"(e.g. {_example(list(missing.values()))}; it holds e.g. {_example(sorted(stored))})")
    for _, variable, value in assignments:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    for name in sorted(set(stored) - used):
        if OPTIMIZER_STATE.fullmatch(name):
            report["optimizer_state"] += 1
        else:
            report["unused_in_checkpoint"].append(name)
    return report


def write_report(report, path):
    """Write ``report`` as JSON (beside a run, so a user sees what loaded); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _rules(name_map):
    if isinstance(name_map, str):
        try:
            return NAME_MAPS[name_map]
        except KeyError:
            raise ValueError(f"unknown name map {name_map!r}; known: {', '.join(sorted(NAME_MAPS))}") from None
    rules = list(name_map)
    for rule in rules:
        if not 2 <= len(rule) <= 3 or (len(rule) == 3 and rule[2] not in CONVERSIONS):
            raise ValueError(f"name map rule {tuple(rule)!r}: want (keras pattern, checkpoint template(s)"
                             f"[, conversion]) with a conversion among {', '.join(CONVERSIONS)}")
    return rules


def _named_weights(model):
    """(``<layer>/<variable>`` in the original spelling, variable) for every weight of ``model``."""
    for layer in _weighted_layers(model):
        for variable in layer.weights:
            yield f"{to_original_name(layer.name)}/{variable.name}", variable


def _example(names):
    return ", ".join(repr(n) for n in names[:3]) or "nothing"
