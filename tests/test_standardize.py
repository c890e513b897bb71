"""Audio feature standardisation: training-split statistics, set before the first epoch, saved
with the model (thesis 000 leaves the scaling of its openSMILE features open)."""
import keras
import numpy as np

from fer_keras import config, models, training
from fer_keras.data.schema import dataset_from_manifest
from fer_keras.models.layers import Standardize


def _experiment(root, model, inputs, **options):
    return config.from_dict({
        "name": "standardize", "data": {"root": root, "pipeline": {"inputs": inputs, "seq_len": 8,
                                                                     "batch_size": 3, "padding": "zeros"}},
        "model": {"name": model, "options": options},
        "training": {"epochs": 1},
    })


def _reference(manifest, root):
    """LLD rows of every kept frame and one functionals row per video, read straight from the shards."""
    lld, functionals = [], []
    for rec in dataset_from_manifest(manifest, root, "train", decode=False).as_numpy_iterator():
        if rec["num_frames"] > 0:
            lld.append(rec["audio_lld"])
            functionals.append(rec["audio_functionals"])
    return np.concatenate(lld).astype(np.float64), np.stack(functionals).astype(np.float64)


def _std(rows):
    std = rows.std(0)
    return np.where(std > 1e-8, std, 1.0)


def test_statistics_are_over_real_frames_and_one_row_per_video(prepared_afew):
    root, manifest = prepared_afew
    exp = _experiment(root, "audio_gru", ["lld", "functionals"])
    stats = training.feature_statistics(exp, ["lld", "functionals"])
    lld, functionals = _reference(manifest, root)
    assert lld.shape[1] == manifest["audio"]["lld_dim"] and len(functionals) > 1
    for name, rows in (("lld", lld), ("functionals", functionals)):
        mean, std = stats[name]
        np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std, _std(rows), rtol=1e-4, atol=1e-6)


def test_layer_is_the_identity_until_set_and_round_trips(prepared_afew, tmp_path):
    root, manifest = prepared_afew
    dim = manifest["audio"]["functionals_dim"]
    model = models.build("audio_ffn", input_dim=dim, classes=len(manifest["classes"]))
    layer = model.get_layer("standardize_functionals")
    x = np.random.default_rng(0).normal(50, 9, (4, dim)).astype("float32")
    np.testing.assert_array_equal(layer(x), x)
    training.standardize(model, _experiment(root, "audio_ffn", ["functionals"]))
    _, functionals = _reference(manifest, root)
    z = np.asarray(layer(functionals.astype("float32")))
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0)[functionals.std(0) > 1e-8], 1, atol=1e-3)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again.get_layer("standardize_functionals"), Standardize)
    np.testing.assert_allclose(again.predict({"functionals": x}, verbose=0)["category"],
                               model.predict({"functionals": x}, verbose=0)["category"], rtol=1e-6)


def test_training_sets_the_statistics_and_keeps_them(prepared_afew, tmp_path):
    root, manifest = prepared_afew
    exp = _experiment(root, "audio_gru", ["lld"], seq_len=8, units=8, rnn_layers=1)
    training.train(exp, tmp_path / "run", evaluate=False)
    lld, _ = _reference(manifest, root)
    for name in ("best.keras", "last.keras"):
        layer = keras.models.load_model(tmp_path / "run" / "checkpoints" / name).get_layer("standardize_lld")
        np.testing.assert_allclose(layer.mean.numpy(), lld.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.std.numpy(), _std(lld), rtol=1e-4, atol=1e-5)
    off = _experiment(root, "audio_gru", ["lld"], seq_len=8, units=8, rnn_layers=1, standardize=False)
    assert not any(isinstance(layer, Standardize) for layer in training.build_model(off).layers)


def test_standardize_computes_in_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build("audio_ffn", input_dim=4)
        assert model.get_layer("standardize_functionals").compute_dtype == "float32"
        assert model.get_layer("head_fc1").compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
