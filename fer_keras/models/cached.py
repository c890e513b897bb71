"""The two forms of a frozen-CNN sequence model (thesis 003): with its CNN inside (input
``frames``) and on cached features (input ``features``, ``cached: true``).

Only the layers after the CNN train, and they carry the same names in both forms, so a model
trained on cached features becomes the end-to-end model by copying those layers' weights, and
the CNN that wrote the features is the frames model's ``frame_cnn``. Analysis that needs
pixels (activation maximisation, saliency) works on the frames form.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

CNN_LAYER = "frame_cnn"  # the MaskedTimeDistributed wrapper of sequence.frame_features


def frame_cnn(model):
    """The per-frame image model inside a frames-input sequence model, or None."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(CNN_LAYER).layer if CNN_LAYER in names else None


def copy_by_name(source, target, skip=(CNN_LAYER,)) -> list[str]:
    """Give every layer of ``target`` with weights the weights of ``source``'s layer of the same
    name; returns the names copied. Shapes must agree (Keras says which layer when they do not)."""
    theirs = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        if layer.name in skip or not layer.weights or layer.name not in theirs:
            continue
        layer.set_weights(theirs[layer.name].get_weights())
        copied.append(layer.name)
    return copied


def build(exp, cached: bool):
    """The experiment's model in one form: ``cached`` True (features input) or False (frames)."""
    from fer_keras.models import entry

    spec = entry(exp.model.name)
    options = spec.options(**exp.model.options)
    if "cached" not in options:
        if cached:
            raise ValueError(f"model {exp.model.name!r} has no cached form")
        return spec.builder(**options)
    return spec.builder(**{**options, "cached": cached})


def frames_model(run_dir):
    """The frames-input model equal to a run trained on cached features: its trained layers on the
    CNN its experiment names (with that CNN's weights file, as the features were written). A run
    trained on frames is returned as it is. Raises ValueError when no such model can be made."""
    from fer_keras import config as cfg
    from fer_keras.rundir import RunDir, load_checkpoint

    run = RunDir(run_dir)
    if not run.best.is_file():
        raise ValueError(f"{run.best}: missing; the run has no trained model")
    trained = load_checkpoint(run.best)
    if "features" not in trained.input:
        if frame_cnn(trained) is None:
            raise ValueError(f"{run.root}: the model takes {', '.join(trained.input)}, not frames")
        return trained
    exp = cfg.load(run.config)
    if not exp.model.options.get("cached"):
        raise ValueError(f"{run.root}: its model reads features that no CNN of its experiment computes "
                         "(model.options.cached is not set)")
    model = build(exp, cached=False)
    if not exp.model.options.get("weights"):
        logger.warning("%s: its experiment names no CNN weights file: the CNN is random, not the one that "
                       "computed the run's features", run.root)
    copy_by_name(trained, model)
    return model
