"""`make bench-pipeline` on tiny settings: the one-file-per-frame baseline gives exactly the shard
pipeline's batches, and results.json has its keys. No timing is asserted."""
import json
import os

import numpy as np
import pytest

from fer_keras.bench import pipeline as benchmark
from fer_keras.data.pipeline import Augment, PipelineConfig, sequences


@pytest.fixture(scope="module")
def exported(prepared_afew, tmp_path_factory):
    out, manifest = prepared_afew
    videos = benchmark.export_frames(manifest, out, "val", str(tmp_path_factory.mktemp("frames")))
    return out, manifest, videos


def test_export_writes_the_shard_bytes(exported):
    out, manifest, videos = exported
    kept = {v["id"]: v["frames_kept"] for v in manifest["videos"].values()
            if v["split"] == "val" and v["status"] == "ok"}
    assert {v["video_id"]: len(v["paths"]) for v in videos} == kept
    video = videos[0]
    assert video["paths"][0].endswith(os.path.join(video["video_id"], "00000.jpg"))
    with open(video["paths"][-1], "rb") as f:
        assert f.read(2) == b"\xff\xd8"  # JPEG as stored, not re-encoded


@pytest.mark.parametrize("padding,image_size", [("repeat", None), ("zeros", 48)])
def test_file_baseline_gives_the_shard_sequences(exported, padding, image_size):
    out, manifest, videos = exported
    cfg = PipelineConfig(seq_len=8, batch_size=3, padding=padding, image_size=image_size,
                         augment=Augment(flip=True), seed=2)
    shards = list(sequences(manifest, out, "val", cfg, with_meta=True).as_numpy_iterator())
    files = list(benchmark.straightforward_sequences(benchmark.file_chunks(videos, 8), manifest, cfg,
                                                     files=True, with_meta=True).as_numpy_iterator())
    assert len(shards) == len(files) > 1
    for (xs, ys, ms), (xf, yf, mf) in zip(shards, files):
        np.testing.assert_array_equal(xs["frames"], xf["frames"])  # same bytes decoded: identical
        np.testing.assert_array_equal(xs["mask"], xf["mask"])
        np.testing.assert_array_equal(ys["category"], yf["category"])
        for key in ("video_id", "label", "sequence"):
            np.testing.assert_array_equal(ms[key], mf[key])
    assert any(x["mask"].min() == 0 for x, _, _ in shards)  # padding was compared too
    # shuffled and augmented the same way when training, from files and with the naive map on shards
    chunks = {"files": benchmark.file_chunks(benchmark.in_reading_order(videos, manifest, out, "val", cfg, True), 8),
              "shards": benchmark.shard_chunks(manifest, out, "val", cfg, training=True)}
    for source, ds in chunks.items():
        naive = benchmark.straightforward_sequences(ds, manifest, cfg, files=source == "files", training=True)
        assert benchmark.same_batches(sequences(manifest, out, "val", cfg, training=True), naive), source


def test_results_json(prepared_afew, tmp_path):
    out, _ = prepared_afew
    assert benchmark.main(["--out", str(tmp_path), "--prepared", out, "--seq-len", "8", "--image-size", "32",
                           "--seconds", "0.2", "--rounds", "1", "--xla", "skip", "-q"]) == 0
    with open(tmp_path / "results.json") as f:
        report = json.load(f)
    assert {"dataset", "pipeline_config", "pipeline", "speedup", "speedup_uncached", "speedup_storage_only",
            "cpu_speedup", "cached_first_epoch_sequences_per_s", "same_output", "target_speedup", "cpu_count",
            "seconds"} <= set(report)
    assert report["same_output"] is True
    assert set(report["pipeline"]) == set(benchmark.PIPELINES)
    for row in report["pipeline"].values():
        assert {"sequences_per_s", "frames_per_s", "batches_per_s", "real_frames_per_s",
                "cpu_ms_per_sequence", "warmup_s"} <= set(row)
        assert row["sequences_per_s"] > 0
    folders = os.listdir(tmp_path / "frames" / "train")
    assert len(folders) == report["dataset"]["videos"]
    assert os.path.isfile(tmp_path / "frames" / "train" / folders[0] / "00000.jpg")


def test_training_speed_keys(prepared_afew):
    out, manifest = prepared_afew
    # a one-filter-bank C3D on 4 frames of 8 px: no recurrence for XLA to compile (half the time of a ConvLSTM)
    report = benchmark.training_speed(manifest, out, model="c3d",
                                      model_options={"classes": 7, "filters": (2,), "dense": (8,)}, image_size=8,
                                      seq_len=4, batch_size=2, steps=1, warmup_steps=1, rounds=1,
                                      pipeline_seconds=0.2, progress=False)
    assert report["pipeline_batches_per_s"] > 0
    assert isinstance(report["pipeline_is_bottleneck"], bool)
    for key in ("no_xla", "xla"):
        assert {"pipeline_steps_per_s", "constant_steps_per_s", "warmup_s"} <= set(report[key])
        assert report[key]["pipeline_steps_per_s"] > 0 and report[key]["constant_steps_per_s"] > 0
