"""`make bench-cascade` at tiny sizes: bench_cascade.json has every figure, and the cascade on cached
features and the one recomputing them have the same frozen network (the same features as the cached
file, checked here on every frame with NumPy) and the same trainable head. No timing is asserted."""
import json

import h5py
import numpy as np
import pytest

from fer_keras import training
from fer_keras.bench import cascade as bench_cascade
from fer_keras.data import loader
from fer_keras.feature_extraction import load_extractor


@pytest.mark.slow
def test_bench_cascade_figures_and_same_network(tmp_path):
    out = tmp_path / "bench"
    assert bench_cascade.main(["--out", str(out), "--input-size", "32", "--videos", "2", "--frames", "6",
                               "--repeats", "1", "--recompute-steps", "0", "--jobs", "1", "-q"]) == 0
    with open(out / "bench_cascade.json") as f:
        r = json.load(f)

    figures = {"cached epoch s": r["cached_epoch"]["seconds"], "recompute epoch s": r["recompute_epoch"]["seconds"],
               "ratio": r["ratio"], "reader videos/s": r["reader"]["videos_per_s"],
               "step videos/s": r["step"]["videos_per_s"], "reader vs step": r["reader_vs_step"],
               "feature writing s": r["feature_writing"]["seconds"],
               "writing frames/s": r["feature_writing"]["frames_per_s"]}
    for name, value in figures.items():
        assert isinstance(value, float) and value > 0, name
    assert r["break_even_epochs"] is None or r["break_even_epochs"] > 0  # None: recomputing was not slower
    assert isinstance(r["ratio_target_met"], bool) and isinstance(r["reader_target_met"], bool)
    assert r["recompute_epoch"]["extrapolated"] is False  # --recompute-steps 0: the whole epoch timed
    assert r["settings"]["feature_dim"] == 512  # 1x1x512 at 32 px
    assert r["feature_writing"]["measured_in_this_run"] and r["cpu"]
    assert r["same_trainable_parameters"] and r["frozen_parts_agree"]["same"]

    # independently: both frozen parts on every real frame of every video, against the cached file
    s = r["settings"]
    extractor = load_extractor(r["data"]["extractor_config"], "features")
    cached_exp = bench_cascade.cached_experiment(r["data"]["feature_file"], s["frames"], s["feature_dim"], s["batch"])
    recompute_exp = bench_cascade.recompute_experiment(r["data"]["root"], s["frames"], s["input_size"],
                                                       s["weights"], s["recompute_batch"])
    cached_model, recompute_model = training.build_model(cached_exp), training.build_model(recompute_exp)
    frozen = bench_cascade.frozen_part(recompute_model)
    with h5py.File(r["data"]["feature_file"], "r") as f:
        rows = dict(zip(f["names"].asstr()[()], f["features"][()]))
    assert len(rows) == 2
    seen = set()
    for x, _, meta in loader.split(recompute_exp.data, "train", with_meta=True).as_numpy_iterator():
        for frames, mask, name in zip(x["frames"], x["mask"], meta["video_id"]):
            name, real = name.decode(), mask > 0
            assert real.sum() == s["frames"]
            stored = rows[name]
            assert stored.shape == (s["frames"], 512) and np.abs(stored).max() > 0
            ours = extractor.model(frames[real], training=False).numpy()
            theirs = frozen(frames[real], training=False).numpy()
            tol = 1e-5 * np.abs(stored).max()
            np.testing.assert_allclose(ours, stored[real], rtol=1e-5, atol=tol)
            np.testing.assert_allclose(theirs, stored[real], rtol=1e-5, atol=tol)
            seen.add(name)
    assert seen == set(rows)

    count = lambda ws: sum(int(np.prod(w.shape)) for w in ws)  # noqa: E731
    assert count(cached_model.trainable_weights) == count(recompute_model.trainable_weights) \
        == r["parameters"]["cached"]["trainable"] == r["parameters"]["recompute"]["trainable"]
    assert count(cached_model.non_trainable_weights) == 0
    assert count(recompute_model.non_trainable_weights) == count(extractor.model.weights) > 0
