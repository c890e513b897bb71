"""Thesis 001 §6.1's data-dependent pixel preprocessings: the training split's pixel statistics
against NumPy on the frames written (validation and test frames excluded, a fold's held-out
subjects excluded), computed once into a file beside the prepared data and reused, never left
half-written, and applied by the pipeline of an experiment as exactly (x - mean) / std."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fer_keras import config as cfg
from fer_keras import evaluation, training
from fer_keras.data import loader, pixel_stats
from fer_keras.data.integrity import describe
from fer_keras.data.schema import VideoRecord, serialize

FACE = 8
# split -> track id -> (subject, [frame indices of each segment record], frames_total)
TRACKS = {
    "train": {"t1": ("A", [[0, 1, 2, 3, 4, 5, 6]], 9),
              "t2_left": ("B", [[0, 1, 2, 3, 4], [8, 9, 10, 11, 12]], 14),
              "t3": ("C", [[2, 3, 4]], 5)},
    "val": {"v1_left": ("D", [[1, 2, 3], [6, 7]], 10), "v1_right": ("D", [[0, 1, 2, 3, 4, 5]], 10)},
    "test": {"s1": ("E", [[0, 1, 2, 3]], 4)},
    "stills": {f"img{i}": ("F", [[0]], 1) for i in range(3)},
}
PIXELS = {"train": (0, 200), "val": (150, 256), "test": (100, 256), "stills": (0, 256)}  # other splits, other pixels


def write_va_dataset(root, seed=0):
    """A prepared valence/arousal dataset (PNG faces of 8 px, schema 3 records: a track may be
    several segment records) written directly; returns (manifest, truth): truth[split][track] =
    (frames (n, 8, 8, 3) uint8, frame indices (n,), va (n, 2)) in source order."""
    rng = np.random.default_rng(seed)
    manifest = {"schema_version": 3, "dataset": "va", "classes": [],
                "options": {"face_size": FACE, "image_format": "png"},
                "audio": {"lld_dim": 0, "functionals_dim": 0}, "labels": {"va": True}, "subjects": True,
                "splits": {}, "videos": {}, "files": {}}
    truth = {}
    for split, tracks in TRACKS.items():
        rel = f"{split}/{split}-00000.tfrecord"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        records = 0
        with tf.io.TFRecordWriter(os.path.join(root, rel)) as writer:
            for track, (subject, segments, total) in tracks.items():
                parts = []
                for segment, index in enumerate(segments):
                    frames = rng.integers(*PIXELS[split], (len(index), FACE, FACE, 3)).astype(np.uint8)
                    va = rng.uniform(-1, 1, (len(index), 2)).astype(np.float32)
                    writer.write(serialize(VideoRecord(
                        video_id=track, label=-1, fps=25.0, face_size=FACE,
                        frames=[tf.io.encode_png(f).numpy() for f in frames], frame_index=np.array(index),
                        audio_lld=np.zeros((len(index), 0), np.float32), has_audio=False, source_frames=total,
                        dataset="va", valence_arousal=va, segment=segment)))
                    parts.append((frames, np.array(index), va))
                    records += 1
                truth.setdefault(split, {})[track] = tuple(np.concatenate(p) for p in zip(*parts))
                kept = sum(len(i) for i in segments)
                manifest["videos"][f"{split}/{track}"] = {
                    "id": track, "video": track.split("_")[0], "split": split, "subject": subject, "label": -1,
                    "status": "ok", "frames_total": total, "frames_kept": kept, "segments": len(segments),
                    "shard": rel}
        manifest["splits"][split] = {"shards": [rel], "videos": len(tracks)}
        manifest["files"][rel] = describe(os.path.join(root, rel), records)
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(root, "splits.json"), "w") as f:
        json.dump({"folds": [["A"], ["B", "C"]], "test": ["E"]}, f)
    return manifest, truth


@pytest.fixture(scope="module")
def va_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("va_prepared")
    return str(root), *write_va_dataset(str(root))


def data_section(root, **pipeline):
    """An experiment's data section on the tiny set (frames in, per-frame va out)."""
    return cfg.DataConfig(root=root, pipeline=cfg.PipelineConfig(
        seq_len=4, inputs=("frames",), targets=("va",), batch_size=2, **pipeline))


def expected(frames):
    """NumPy's statistics of uint8 frames (..., 3): over all values, and per channel."""
    x = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(np.float64)
    return x.mean(), x.std(), x.mean(axis=0), x.std(axis=0)


def test_statistics_are_numpys_over_the_training_frames_only(va_data):
    root, _, truth = va_data
    stats, path = pixel_stats.ensure(data_section(root))
    mean, std, channel_mean, channel_std = expected([f for f, _, _ in truth["train"].values()])
    assert stats["mean"] == pytest.approx(mean, abs=1e-9) and stats["std"] == pytest.approx(std, abs=1e-9)
    np.testing.assert_allclose(stats["channel_mean"], channel_mean, atol=1e-9)
    np.testing.assert_allclose(stats["channel_std"], channel_std, atol=1e-9)
    assert (stats["frames"], stats["records"], stats["pixels"]) == (20, 3, 20 * FACE * FACE)
    everything = expected([f for split in truth.values() for f, _, _ in split.values()])[0]
    assert abs(everything - mean) > 10  # the other splits' frames would have moved it
    assert Path(path).parent == Path(root) / "pixel_stats" and json.loads(Path(path).read_text()) == stats


def test_a_folds_training_part_has_its_own_file(va_data):
    root, _, truth = va_data
    plain = pixel_stats.ensure(data_section(root))[1]
    stats, path = pixel_stats.ensure(cfg.DataConfig(root=root, fold=0, pipeline=data_section(root).pipeline))
    assert path != plain
    mean, std, *_ = expected([truth["train"][t][0] for t in ("t2_left", "t3")])  # fold 0 holds out subject A
    assert stats["mean"] == pytest.approx(mean, abs=1e-9) and stats["std"] == pytest.approx(std, abs=1e-9)


def test_the_file_is_reused_not_computed_again(va_data, monkeypatch):
    root, _, _ = va_data
    first, path = pixel_stats.ensure(data_section(root))

    def fail(*args):
        raise AssertionError("computed again")

    monkeypatch.setattr(pixel_stats, "compute", fail)
    assert pixel_stats.ensure(data_section(root)) == (first, path)


def test_a_killed_write_leaves_no_file_and_a_rerun_writes_it(tmp_path, monkeypatch, caplog):
    root = str(tmp_path)
    write_va_dataset(root)
    data = data_section(root)
    real = os.replace

    def killed(*args):
        raise KeyboardInterrupt  # the process stops between writing and renaming

    monkeypatch.setattr(pixel_stats.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        pixel_stats.ensure(data)
    folder = tmp_path / "pixel_stats"
    assert list(folder.iterdir()) == []
    monkeypatch.setattr(pixel_stats.os, "replace", real)
    # a SIGKILL leaves its temporary file behind: never read; a damaged file is computed again
    (folder / ".partial-leftover.json.x").write_text('{"mean": 1')
    stats, path = pixel_stats.ensure(data)
    path = Path(path)
    path.write_text('{"mean": 3.0, "st')
    assert pixel_stats.ensure(data)[0] == stats
    assert "unreadable" in caplog.text and json.loads(path.read_text()) == stats


def batches(data, split):
    return list(loader.split(data, split, with_meta=True).as_numpy_iterator())


@pytest.mark.parametrize("mode", ["whitening", "mean_subtraction", "channel_whitening", "channel_mean_subtraction"])
def test_an_experiment_gets_exactly_x_minus_mean_over_std(va_data, mode):
    root, _, truth = va_data
    exp = cfg.Experiment(name="w", data=data_section(root, normalize=mode), model=cfg.ModelConfig("alexnet_gru_va"))
    mean, std, channel_mean, channel_std = expected([f for f, _, _ in truth["train"].values()])
    if mode.startswith("channel"):
        mean, std = channel_mean, channel_std
    if not mode.endswith("whitening"):
        std = 1.0
    raw = batches(data_section(root, normalize="none"), "val")
    done = batches(evaluation.evaluation_data(exp), "val")  # what evaluation and training read
    assert len(raw) == len(done) > 0
    for (x, _, _), (y, _, _) in zip(raw, done):
        np.testing.assert_allclose(y["frames"], (x["frames"].astype(np.float64) - mean) / std, rtol=1e-6, atol=1e-5)
    train, _, _ = training.datasets(exp)  # shuffled training batches, with the same constants undone
    pixels = next(iter(train))[0]["frames"].numpy() * std + mean
    np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)
    assert pixels.min() > -0.5 and pixels.max() < PIXELS["train"][1]


def test_training_records_the_statistics_in_its_config(va_data, monkeypatch, tmp_path):
    root, _, _ = va_data
    exp = cfg.Experiment(name="w", data=data_section(root, normalize="whitening"),
                         model=cfg.ModelConfig("alexnet_gru_va"))
    seen = []

    def stop(exp, run_dir):
        seen.append(exp)
        raise InterruptedError

    monkeypatch.setattr(training, "prepare_run_dir", stop)
    with pytest.raises(InterruptedError):
        training.train(exp, tmp_path / "run")
    stats, path = pixel_stats.ensure(exp.data)
    assert seen[0].data.pipeline.pixel_stats == {**{k: stats[k] for k in ("mean", "std", "channel_mean",
                                                                          "channel_std")},
                                                 "file": str(Path(path).relative_to(root))}
    again = cfg.from_dict(cfg.to_dict(seen[0]))  # config.yaml's round trip keeps the numbers
    assert again.data.pipeline.pixel_stats == seen[0].data.pipeline.pixel_stats


def test_a_statistics_mode_without_statistics_is_refused(va_data):
    root, manifest, _ = va_data
    from fer_keras.data.pipeline import sequences

    with pytest.raises(ValueError, match="normalize 'whitening' needs the training split's pixel statistics"):
        sequences(manifest, root, "val", data_section(root, normalize="whitening").pipeline)
    with pytest.raises(ValueError, match="standard deviation"):
        cfg.PipelineConfig(normalize="whitening", pixel_stats={"mean": 1.0, "std": 0.0})
