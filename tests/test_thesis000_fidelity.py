"""Thesis 000 fidelity: the three classifying approaches of §5.8 against NumPy, the "fc" trainable
scope (fc6, fc7 and the head), and layers initialised from another run directory."""
import numpy as np
import pytest

from fer_keras import config, training
from fer_keras.models import entry
from fer_keras.models.layers import MaskedTemporalPool

VALUES = np.array([[[1.0, -2.0], [3.0, 0.0], [9.0, 9.0], [9.0, 9.0]],
                   [[4.0, 1.0], [0.0, 5.0], [2.0, -1.0], [6.0, 2.0]]], np.float32)
MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)


@pytest.mark.parametrize("mode", ["mean", "median"])
def test_exact_sequence_and_model_output_reductions(mode):
    reduce = np.mean if mode == "mean" else np.median
    exact = MaskedTemporalPool(mode)([VALUES, MASK]).numpy()
    padded = MaskedTemporalPool(mode, padded=True)([VALUES, MASK]).numpy()
    # approach (2): the real frames only; approach (3): all L steps, padding = the last real frame repeated
    np.testing.assert_allclose(exact[0], reduce(VALUES[0, :2], axis=0))
    repeated = np.concatenate([VALUES[0, :2], np.repeat(VALUES[0, 1:2], 2, axis=0)])
    np.testing.assert_allclose(padded[0], reduce(repeated, axis=0))
    np.testing.assert_allclose(padded[1], exact[1])  # no padding: the two agree
    np.testing.assert_allclose(exact[1], reduce(VALUES[1], axis=0))


def _options(name, **extra):
    spec = entry(name)
    return spec.options(**{**spec.small, "weights": None, **extra}) if "weights" in spec.options() \
        else spec.options(**{**spec.small, **extra})


def test_classify_frame_gives_one_prediction_per_frame_trained_on_the_video_label(prepared_afew):
    root, _ = prepared_afew
    exp = config.from_dict({
        "data": {"root": root, "pipeline": {"seq_len": 3, "image_size": 32, "batch_size": 2}},
        "model": {"name": "vggface_frames", "options": {"input_size": 32, "seq_len": 3, "classify": "frame"}}})
    model = training.build_model(exp)
    assert tuple(model.output["category"].shape) == (None, 3, 7)
    assert training.framewise_category(exp)
    x, y, weights = next(iter(training.training_data(exp, 0, 1, 1)))
    labels, mask = y["category"].numpy(), x["mask"].numpy()
    # every frame carries its video's one-hot label, and only the real frames count in the loss
    np.testing.assert_array_equal(labels, np.repeat(labels[:, :1], 3, axis=1))
    np.testing.assert_array_equal(weights["category"].numpy(), mask)
    with pytest.raises(ValueError, match="classify"):
        entry("vggface_gru").builder(**_options("vggface_gru", temporal="last", classify="output"))


def _trainable_paths(model):
    return sorted({v.path.split("/")[-2] if "frame_cnn" in v.path else v.path.split("/")[0]
                   for v in model.trainable_weights})


def test_fc_scope_trains_exactly_fc6_fc7_and_the_head():
    model = entry("vggface_frames").builder(**_options("vggface_frames", feature="fc7", trainable="fc"))
    trainable = {v.path for v in model.trainable_weights}
    assert trainable and all(p.split("/")[-2].startswith(("fc6", "fc7", "category")) for p in trainable), trainable
    assert {p.split("/")[-2] for p in trainable} >= {"fc6", "fc7", "category_frame_logits"}
    frozen = [v.path for v in model.non_trainable_weights]
    assert any("conv5" in p for p in frozen) and any("conv1" in p for p in frozen)
    with pytest.raises(ValueError, match="fc"):
        config.from_dict({"training": {"stages": [{"epochs": 1, "trainable": "fcs"}]}})


def test_init_sets_exactly_the_named_layers(tmp_path):
    import keras

    audio = entry("audio_gru").builder(**_options("audio_gru", seq_len=3))
    run = tmp_path / "audio_run"
    (run / "checkpoints").mkdir(parents=True)
    audio.save(run / "checkpoints" / "best.keras")
    fusion = entry("early_fusion_2").builder(**_options("early_fusion_2", audio_units=64, audio_layers=4))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in fusion.layers}
    report = training.initialise_layers(fusion, [{"source": str(run), "layers": {"audio_gru": "rnn"}}])
    loaded = {r["layer"] for r in report}
    assert loaded == {"audio_gru1", "audio_gru2", "audio_gru3", "audio_gru4", "audio_gru_attention"}
    for layer in fusion.layers:
        now = layer.get_weights()
        if layer.name in loaded:
            source = audio.get_layer("rnn" + layer.name[len("audio_gru"):]).get_weights()
            assert all(np.array_equal(a, b) for a, b in zip(now, source))
        else:
            assert all(np.array_equal(a, b) for a, b in zip(now, before[layer.name])), layer.name
    with pytest.raises(ValueError, match="no layer with weights of this model starts with 'visual'"):
        training.initialise_layers(fusion, [{"source": str(run), "layers": {"visual": "rnn"}}])
    small = entry("early_fusion_2").builder(**_options("early_fusion_2", audio_units=8, audio_layers=4))
    with pytest.raises(ValueError, match="has weights"):
        training.initialise_layers(small, [{"source": str(run), "layers": {"audio_gru": "rnn"}}])
    with pytest.raises(config.ConfigError, match="init"):
        config.from_dict({"init": [{"source": "runs/x"}]})
    keras.backend.clear_session()
