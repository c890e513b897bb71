"""Load Keras 2 ``.h5`` weight files by layer name into Keras 3 models.

The VGGFace files users hold (``rcmalli_vggface_tf_*.h5``) were written by Keras 2 and name
layers like ``fc6/relu`` or ``conv1/7x7_s2/bn``. Keras 3 refuses ``/`` in layer names, so the
project's builders spell those names with ``__`` and this module maps them back.

Keras 3's own ``load_weights(path, by_name=True)`` still reads legacy ``.h5`` files, but it only
matches identical names among the top-level layers and silently skips the rest, so every
``.../bn`` layer of the ResNet50/SENet50 files would keep its random initialisation unnoticed.
:func:`load_by_name` maps the names, looks inside nested models and reports what it did.
"""
import logging

import h5py
import keras
import numpy as np

SLASH = "__"
log = logging.getLogger(__name__)


def to_keras_name(original: str) -> str:
    """Keras 3 spelling of a Keras 2 layer name (``conv1/7x7_s2`` -> ``conv1__7x7_s2``)."""
    return original.replace("/", SLASH)


def to_original_name(keras_name: str) -> str:
    """Inverse of :func:`to_keras_name`."""
    return keras_name.replace(SLASH, "/")


def load_by_name(model, path, *, skip_mismatch=False, layers=None, aliases=None) -> dict:
    """Set the weights of ``model``'s layers from the same-named layers of a Keras 2 ``.h5`` file.

    File names are matched through :func:`to_keras_name` (files already written with ``__``
    match too), in nested models and wrapped layers as well. ``layers`` restricts the loading to
    those model layer names; ``aliases`` maps a model layer name to a file name tried when the
    file lacks its own (keras.applications' ``fc1`` for TF-Slim's ``fc6``). A layer whose weight count or
    shapes differ raises ``ValueError`` before any weight is set, or with ``skip_mismatch`` is
    skipped with a warning.
    Returns ``{"loaded", "skipped_mismatch", "missing_in_file"}`` (model layer names; the last
    lists model layers with weights that the file lacks) and ``"unused_in_file"`` (file layer
    names with weights that the model lacks).
    """
    stored = _read(str(path))
    aliases = aliases or {}
    by_name = {}
    for layer in _weighted_layers(model):
        if layers is None or layer.name in layers:
            by_name.setdefault(layer.name, []).append(layer)
    report = {"loaded": [], "skipped_mismatch": [], "missing_in_file": [], "unused_in_file": []}
    matched, used = [], set()
    for name, same_named in by_name.items():
        key = name if name in stored else aliases.get(name)
        if key not in stored:
            report["missing_in_file"].append(name)
            continue
        used.add(key)
        original, values = stored[key]
        got = [tuple(v.shape) for v in values]
        expected = [[tuple(w.shape) for w in layer.weights] for layer in same_named]
        wrong = [shapes for shapes in expected if shapes != got]
        if wrong:
            message = (f"{path}: layer {original!r} holds weights of shapes {got}, "
                       f"model layer {name!r} expects {wrong[0]}")
            if not skip_mismatch:
                raise ValueError(message)  # before any layer was set: the model is unchanged
            log.warning("skipping: %s", message)
            report["skipped_mismatch"].append(name)
        else:
            matched.append((name, same_named, values))
    for name, same_named, values in matched:
        for layer in same_named:
            layer.set_weights(values)
        report["loaded"].append(name)
    report["unused_in_file"] = [original for name, (original, _) in stored.items() if name not in used]
    return report


def _read(path):
    """{keras name: (file name, [arrays])} of the file's layers that hold weights."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: cannot read as an HDF5 weights file ({e})") from None
    with f:
        group = f["model_weights"] if "model_weights" in f and not _has(f, "layer_names") else f
        if not _has(group, "layer_names"):
            raise ValueError(f"{path}: HDF5 file without a 'layer_names' attribute; "
                             "not a Keras 2 weights or model file")
        stored = {}
        for name in _attr(group, "layer_names"):
            layer = group[name]
            values = [np.asarray(layer[w]) for w in _attr(layer, "weight_names")]
            if values:
                stored[to_keras_name(name)] = (name, values)
        return stored


def _has(group, name):
    return name in group.attrs or f"{name}0" in group.attrs


def _attr(group, name):
    """A list-of-strings attribute as text; Keras 2 split big ones into ``name0``, ``name1``..."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for c in chunks for v in np.ravel(c)]


def _weighted_layers(layer):
    """The leaf layers with weights inside ``layer``: nested models and wrappers are opened."""
    if isinstance(layer, keras.Model):
        for sub in layer.layers:
            yield from _weighted_layers(sub)
    elif isinstance(layer, keras.layers.Wrapper):
        yield from _weighted_layers(layer.layer)
    elif layer.weights:
        yield layer
