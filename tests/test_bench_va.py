"""`make bench-va` at a tiny size: bench_va.json has both epoch times, their ratio, the one-off cost
of writing the features and the break-even; the feature file holds every training frame; the two
forms have the same trainable layers and give the same predictions. No timing is asserted."""
import json

import h5py
import pytest

from fer_keras.bench import va as bench_va


def test_bench_va_report_has_both_epochs_and_the_ratio(tmp_path):
    out = tmp_path / "bench"
    assert bench_va.main(["--out", str(out), "--videos", "4", "--frames", "20", "--input-size", "32",
                          "--seq-len", "8", "--cached-epochs", "2", "--jobs", "1", "-q"]) == 0
    with open(out / "bench_va.json") as f:
        r = json.load(f)

    c, fr, w = r["cached_epoch"], r["frames_epoch"], r["feature_writing"]
    figures = {"cached epoch s": c["seconds"], "frames epoch s": fr["seconds"], "ratio": r["ratio"],
               "cached first epoch s": c["first_epoch_s"], "frames warm-up s": fr["warmup_steps_s"],
               "feature writing s": w["seconds"], "writing frames/s": w["frames_per_s"]}
    for name, value in figures.items():
        assert isinstance(value, float) and value > 0, name
    assert r["ratio"] == pytest.approx(fr["seconds"] / c["seconds"])
    assert len(c["rounds"]) == 2 and len(fr["rounds"]) == 1  # --cached-epochs 2, --epochs 1
    assert r["break_even_epochs"] is None or r["break_even_epochs"] > 0  # None: the frames epoch was not slower
    assert isinstance(r["ratio_target_met"], bool) and r["target_ratio"] == 10.0
    assert w["measured_in_this_run"] and r["cpu"] and w["command"].startswith("fer-keras features ")

    s = r["settings"]
    assert (s["model"], s["seq_len"], s["input_size"], s["feature_dim"]) == ("vgg19_lstm_combined", 8, 32, 512)
    train_frames = r["data"]["splits"]["train"]["frames"]
    assert c["frames"] == fr["frames"] == train_frames > 0 and c["sequences"] == fr["sequences"] > 0
    with h5py.File(w["files"]["train"]["path"], "r") as f:
        assert f["features"].shape[1:] == (8, 512)
        assert int(f["masks"][()].sum()) == train_frames
        assert len(f["features"]) == c["sequences"]  # rows of T = 8, one sequence each

    assert r["same_trainable_parameters"] and r["parameters"]["cached"]["frozen"] == 0
    assert r["parameters"]["frames"]["frozen"] > 0  # the VGG19 conv part, frozen
    agree = r["forms_agree"]
    assert agree["same"] and not agree["missing_in_features"] and agree["sequences"] > 0
    assert {"rnn1", "category", "va"} <= set(agree["copied_layers"])


@pytest.mark.parametrize("flag", ["--epochs", "--cached-epochs", "--videos", "--seq-len"])
def test_sizes_below_one_are_refused(tmp_path, flag):
    with pytest.raises(SystemExit, match=flag):
        bench_va.main(["--out", str(tmp_path), flag, "0"])
