"""Thesis 004's experiment files train what the thesis trained, with slim's optimiser and schedule:
the layers each network fine-tunes (counted), the learning rate at every step (by hand), and the
settings of the README's table."""
import math
from pathlib import Path

import numpy as np
import pytest

from fer_keras import config, training

FOLDER = Path(__file__).resolve().parents[1] / "experiments" / "thesis004"
FILES = sorted(p for p in FOLDER.glob("*.yaml") if p.name != "reproduce.yaml")
# §4.2.1: VGG 16 trains slim's fc6, fc7 and fc8 (the new head); Inception V2 its logits layer alone
TRAINED = {"vgg16": {"fc6", "fc7"}, "bn_inception": set()}


def _small(exp):
    """The file's registry model at a small input (and VGG's fc6/fc7 narrowed), its trained layers unchanged."""
    from fer_keras.models import entry

    small = {"input_size": 32, "hidden": [16, 16]} if exp.model.name.startswith("vgg16") else {"input_size": 64}
    spec = entry(exp.model.name)
    return spec.builder(**spec.options(**{**exp.model.options, **small}))


@pytest.mark.parametrize("path", [FOLDER / "vgg16_au_11.yaml", FOLDER / "bn_inception_va.yaml"], ids=lambda p: p.stem)
def test_trained_layers_are_the_thesis_scopes(path):
    exp = config.load(path)
    model = _small(exp)
    backbone = exp.model.name.rsplit("_", 1)[0]
    head = exp.data.pipeline.targets[0]
    weighted = [layer for layer in _layers(model) if layer.weights]
    trained = {layer.name for layer in weighted if layer.trainable_weights}
    assert trained == TRAINED[backbone] | {head}
    frozen = [layer for layer in weighted if not layer.trainable_weights]
    # every other weighted layer is frozen: VGG's 13 convolutions; Inception's convolutions and batch norms
    assert len(frozen) == len(weighted) - len(trained) and len(frozen) >= (13 if backbone == "vgg16" else 60)
    batchnorms = [layer for layer in frozen if "BatchNorm" in type(layer).__name__ or "batch_norm" in layer.name]
    assert all(not layer.trainable for layer in batchnorms)


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def test_rmsprop_and_staircase_learning_rate_at_every_step():
    """vgg16_au_60 on the thesis's 15,000 images in batches of 32: slim's RMSprop and LR 0.01 x 0.94
    every 2 epochs, by hand at each step of its 5,000 (11 epochs of 469 steps)."""
    exp = config.load(FOLDER / "vgg16_au_60.yaml")
    steps_per_epoch = math.ceil(15000 / 32)
    opt = training.optimizer(exp.training, steps_per_epoch)
    assert (opt.rho, opt.momentum, opt.epsilon, opt.centered) == (0.9, 0.9, 1.0, False)
    assert exp.training.epochs == 11 and exp.data.pipeline.batch_size == 32
    steps = np.arange(0, exp.training.epochs * steps_per_epoch)
    period = round(2 * steps_per_epoch)  # 938: slim's int(2 * 15000 / 32) is 937
    expected = 0.01 * 0.94 ** (steps // period)
    ours = []
    for step in steps[::7]:  # the optimiser's own rate at its step count
        opt.iterations.assign(step)
        ours.append(float(opt.learning_rate))
    np.testing.assert_allclose(ours, expected[::7], rtol=1e-6)
    assert np.isclose(float(training.schedule(exp.training, 0.01, steps_per_epoch)(5000)), 0.01 * 0.94 ** 5)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_files_keep_the_readme_settings(path):
    """Each file's batch, LR and epochs are those of the README's row (steps x batch / N epochs)."""
    exp = config.load(path)
    row = next(line for line in (FOLDER / "README.md").read_text().splitlines() if line.startswith(f"| `{path.name}`"))
    batch, lr, steps = [cell.strip() for cell in row.split("|")[4:7]]
    assert exp.data.pipeline.batch_size == int(batch) and exp.training.optimizer.learning_rate == float(lr)
    n = {"emotionet_60": 15000, "emotionet_11": 10282, "emotionet_va": 800}[Path(exp.data.root).name]
    count, epochs = steps.replace(",", "").replace(")", "").split(" (")
    assert exp.training.epochs == int(epochs) == round(int(count) * int(batch) / n)
    assert exp.data.val_split is None and exp.evaluation.split == "test" and exp.evaluation.checkpoint == "last"
    assert exp.weights_map == {"vgg16": "vgg_16", "bn_inception": "inception_v2"}[exp.model.name.rsplit("_", 1)[0]]
    from fer_keras.models import entry

    assert entry(exp.model.name).options(**exp.model.options)["weight_decay"] == 4e-5  # L2 on kernels (§4.2.1)
