"""The dataset registry: every dataset the toolkit prepares, by name, as the model registry lists
every model (fer_keras/models/registry.py).

A dataset is one package under ``data_prep/datasets/<name>/``: ``__init__.py`` with its
``DATASET = Dataset(...)`` entry, ``layout.py`` with ``prepare(src, out, opts, progress)``,
``synthetic.py`` with ``synth(out, spec)`` (writes a synthetic set in the real layout and returns
a one-line summary), and a README. The ``fer-keras prepare NAME`` / ``synth NAME`` commands, the
Makefile's ``prepare-%`` / ``synth-%`` rules and ``reproduce``'s smoke data all go through here,
so adding a dataset takes one folder and one line below.

Importing the registry loads no TensorFlow: the Options and Spec classes are light, and a
dataset's ``layout`` / ``synthetic`` module is imported only when it runs.
"""
from __future__ import annotations

import importlib

from data_prep.dataset import Dataset, Synthetic
from data_prep.synthetic_render import ClipsSpec


def _load(names) -> dict[str, Dataset]:
    found = {}
    for name in names:
        entry = importlib.import_module(f"data_prep.datasets.{name}").DATASET
        if entry.name != name:
            raise ValueError(f"data_prep/datasets/{name}: its DATASET is named {entry.name!r}")
        found[name] = entry
    return found


# Every dataset, listed explicitly (as the model registry is): a new one is one folder and one name here.
DATASETS: dict[str, Dataset] = _load(("afew", "bu4dfe", "emotionet", "fer2013", "va"))

# What `fer-keras synth` writes: each dataset's synthetic set, and real-world-like clips for the
# video decoding tests (not a dataset: no layout to prepare).
SYNTHETIC: dict[str, Synthetic] = {
    **{name: entry.synthetic for name, entry in DATASETS.items()},
    "clips": Synthetic(
        "data_prep.synthetic_render", ClipsSpec,
        "real-world-like clips: variable frame rate, late/early audio, rotation, 720x576, 1280x720",
        "Write the clips the real-world preparation tests use (H.264/AAC MP4s and an Xvid AVI; a "
        "variable-frame-rate phone clip, audio 2 s late and 1 s early, a rotated phone clip, an "
        "anamorphic 720x576 clip, 1280x720 with 5.1 audio) and their ground truth."),
}


def dataset(name: str) -> Dataset:
    """The registry entry of ``name``, with a clear error for an unknown one."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
