"""Pixel preprocessing per backbone: each mode against Keras' own preprocess_input or a NumPy
computation of its published constants; the pipeline applies it to sequences and single images;
an experiment that loads weights gets its backbone's mode, and another choice is said once."""
import logging
from dataclasses import replace

import numpy as np
import pytest
from keras.applications import imagenet_utils

from fer_keras import config as cfg
from fer_keras import evaluation, training
from fer_keras.data.pipeline import PipelineConfig, sequences
from fer_keras.data.preprocessing import MODES, preprocess
from fer_keras.models.backbones import BACKBONES

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
KERAS_MODES = ("caffe", "tf", "torch")
BY_HAND = {  # the published constants, applied in NumPy
    "vggface1": lambda x: x[..., ::-1] - np.array([93.5940, 104.7624, 129.1863]),
    "vggface2": lambda x: x[..., ::-1] - np.array([91.4953, 103.8827, 131.0912]),
    "slim_vgg": lambda x: x - np.array([123.68, 116.78, 103.94]),
    "unit": lambda x: x / 255.0,
    "symmetric": lambda x: x / 127.5 - 1.0,
    "none": lambda x: x,
    "affwild": lambda x: (x - 128.0) / 128.0,
}
# constants from the training split's pixels: checked in test_pixel_stats.py
STATISTICS = ("mean_subtraction", "whitening", "channel_mean_subtraction", "channel_whitening")


def test_every_mode_is_checked_here():
    assert set(MODES) == set(KERAS_MODES) | set(BY_HAND) | set(STATISTICS)


@pytest.mark.parametrize("mode", KERAS_MODES)
def test_keras_modes_equal_imagenet_utils(mode):
    expected = imagenet_utils.preprocess_input(IMAGES.astype("float32"), data_format="channels_last", mode=mode)
    np.testing.assert_allclose(preprocess(IMAGES, mode).numpy(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", sorted(BY_HAND))
def test_other_modes_equal_their_constants(mode):
    np.testing.assert_allclose(preprocess(IMAGES, mode).numpy(), BY_HAND[mode](IMAGES.astype("float64")),
                               rtol=1e-6, atol=1e-5)


def test_an_unknown_mode_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="normalize must be one of .*vggface1.*got 'vggface'"):
        PipelineConfig(normalize="vggface")


def test_each_backbone_names_the_mode_of_its_weights():
    assert all(b.preprocessing in MODES for b in BACKBONES.values())
    assert {name: BACKBONES[name].preprocessing for name in (
        "vggface_vgg16", "vggface_resnet50", "vgg16", "resnet50", "densenet121", "se_resnet50", "bn_inception",
        "xception")} == {"vggface_vgg16": "vggface1", "vggface_resnet50": "vggface2", "vgg16": "caffe",
                         "resnet50": "caffe", "densenet121": "torch", "se_resnet50": "torch",
                         "bn_inception": "tf", "xception": "tf"}


@pytest.mark.parametrize("inputs, seq_len", [(("frames",), 6), (("image",), 1)])
def test_the_pipeline_preprocesses_sequences_and_single_images(prepared_afew, inputs, seq_len):
    """The batches in ``vggface1`` are the raw batches with the VGGFace constants applied by
    hand, padded steps (zeros) left at 0."""
    out, manifest = prepared_afew
    base = PipelineConfig(seq_len=seq_len, inputs=inputs, padding="zeros", batch_size=4, normalize="none")
    key = inputs[0]
    raw = [x for x, _ in sequences(manifest, out, "val", base)]
    done = [x for x, _ in sequences(manifest, out, "val", replace(base, normalize="vggface1"))]
    assert len(raw) == len(done) > 0
    for a, b in zip(raw, done):
        expected = BY_HAND["vggface1"](a[key].numpy().astype("float64"))
        if key == "frames":
            expected = expected * a["mask"].numpy()[:, :, None, None, None]
        np.testing.assert_allclose(b[key].numpy(), expected, rtol=1e-6, atol=1e-4)


def _experiment(normalize=None, weights="/weights/vggface.h5", model="vggface_bgru", root="/nowhere"):
    pipeline = {} if normalize is None else {"normalize": normalize}
    return cfg.from_dict({"name": "pre", "data": {"root": root, "pipeline": pipeline},
                          "model": {"name": model, "options": {"weights": weights}}})


def test_weights_without_a_choice_get_their_backbones_mode():
    assert _experiment().data.pipeline.normalize == "vggface1"
    assert _experiment(model="vgg16_finetune").data.pipeline.normalize == "caffe"
    assert _experiment(weights=None).data.pipeline.normalize == "unit"  # no pretrained pixels to match
    assert cfg.preprocessing_note(_experiment()) is None
    assert cfg.preprocessing_note(_experiment("symmetric", weights=None)) is None


def test_another_choice_is_said_in_the_run_log_and_report(tmp_path, caplog):
    exp = _experiment("symmetric", root=str(tmp_path / "missing"))
    note = cfg.preprocessing_note(exp)
    assert "'symmetric'" in note and "'vggface1'" in note and "vggface_vgg16" in note
    with caplog.at_level(logging.WARNING, logger="fer_keras.training"), pytest.raises(FileNotFoundError):
        training.train(exp, tmp_path / "run")  # logs the note, then stops at the missing data
    assert [r.getMessage() for r in caplog.records].count(f"pre: {note}") == 1
    metrics = {"split": "test", "checkpoint": "best", "aggregate": "mean", "n_videos": 1, "n_labelled": 1,
               "n_sequences": 1, "accuracy": 1.0, "macro_f1": 1.0}
    evaluation.write_report(tmp_path / "report.md", exp, metrics)
    assert (tmp_path / "report.md").read_text().count(note) == 1
