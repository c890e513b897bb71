"""The shard pipeline: sequences, padding and masks, determinism, sequence-consistent augmentation."""
import math
from dataclasses import replace

import numpy as np
import tensorflow as tf

from fer_keras.data.pipeline import Augment, PipelineConfig, _augment, sequences


def collect(ds):
    return [tuple({k: v.numpy() for k, v in part.items()} for part in batch) for batch in ds]


def test_sequences_cover_every_frame_once_with_masks(prepared_afew):
    out, manifest = prepared_afew
    cfg = PipelineConfig(seq_len=8, inputs=("frames", "lld", "functionals"), batch_size=3)
    batches = collect(sequences(manifest, out, "val", cfg, with_meta=True))
    kept = {k: v for k, v in manifest["videos"].items() if v["status"] == "ok" and k.startswith("val")}
    per_video = {}
    for x, y, meta in batches:
        assert x["frames"].shape[1:] == (8, 112, 112, 3) and x["frames"].max() <= 1.0
        assert x["lld"].shape[1:] == (8, manifest["audio"]["lld_dim"])
        for i, vid in enumerate(meta["video_id"]):
            per_video.setdefault(vid.decode(), []).append((meta["sequence"][i], x["mask"][i], x["frames"][i], y["category"][i]))
    assert len(per_video) == len(kept)
    for entry in kept.values():
        chunks = sorted(per_video[entry["id"]], key=lambda c: c[0])
        n = entry["frames_kept"]
        assert len(chunks) == math.ceil(n / 8)
        masks = np.concatenate([c[1] for c in chunks])
        assert masks.sum() == n and masks[:n].all()
        last = chunks[-1]
        valid = int(last[1].sum())
        if valid < 8:   # repeat padding: padded steps equal the last real frame
            np.testing.assert_array_equal(last[2][valid:], np.repeat(last[2][valid - 1:valid], 8 - valid, 0))
        assert last[3].sum() == 1


def test_zero_padding_and_determinism(prepared_afew):
    out, manifest = prepared_afew
    cfg = PipelineConfig(seq_len=16, padding="zeros", batch_size=4, seed=3, augment=Augment(flip=True, brightness=0.1))
    a = collect(sequences(manifest, out, "train", cfg, training=True))
    b = collect(sequences(manifest, out, "train", cfg, training=True))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa["frames"], xb["frames"])
        np.testing.assert_array_equal(ya["category"], yb["category"])
    for x, _ in a:
        padded = x["mask"] == 0
        assert np.all(x["frames"][padded] == 0)
    # padded frames are 0 after the normalisation too (symmetric maps pixel 0 to -1)
    symmetric = collect(sequences(manifest, out, "val", replace(cfg, normalize="symmetric")))
    assert any(x["mask"].min() == 0 for x, _ in symmetric)
    for x, _ in symmetric:
        assert np.all(x["frames"][x["mask"] == 0] == 0) and x["frames"][x["mask"] > 0].min() < 0


def test_augmentation_is_the_same_on_every_frame():
    frame = tf.random.stateless_uniform((1, 24, 24, 3), (1, 2), 0, 255)
    frames = tf.repeat(frame, 5, axis=0)
    aug = Augment(flip=True, brightness=0.2, contrast=0.2, crop=0.3)
    for seed in range(4):
        out = _augment(frames, aug, tf.constant([seed, 7], tf.int64)).numpy()
        assert np.allclose(out, out[:1])
        assert out.shape == (5, 24, 24, 3)


def test_cache_gives_the_same_batches_every_epoch(prepared_afew):
    """``cache: true`` keeps decoded frames; augmentation and shuffling still change per epoch,
    exactly as without the cache (resized float frames and zero padding included)."""
    out, manifest = prepared_afew
    for cfg in (PipelineConfig(seq_len=8, batch_size=3, seed=5, augment=Augment(flip=True)),
                PipelineConfig(seq_len=8, batch_size=3, seed=5, padding="zeros", image_size=40,
                               augment=Augment(flip=True, crop=0.2, brightness=0.1))):
        plain = collect(sequences(manifest, out, "val", cfg, training=True, epochs=2))
        cached = collect(sequences(manifest, out, "val", replace(cfg, cache=True), training=True, epochs=2))
        assert len(plain) == len(cached) and len(plain) % 2 == 0
        for (xp, yp), (xc, yc) in zip(plain, cached):
            np.testing.assert_array_equal(xp["frames"], xc["frames"])
            np.testing.assert_array_equal(xp["mask"], xc["mask"])
            np.testing.assert_array_equal(yp["category"], yc["category"])
        half = len(cached) // 2  # the second epoch is a new draw, not a replay of the first
        assert not all(np.array_equal(a[0]["frames"], b[0]["frames"]) for a, b in zip(cached[:half], cached[half:]))


def test_chained_training_windows_run_across_videos_as_thesis_001s_reader(prepared_afew):
    """``chain``: the split's frames in one list (record order), cut into full windows that run on
    from one video into the next, the remainder dropped, then shuffled; evaluation keeps each video
    to itself; loader.steps counts the chained windows."""
    import argparse

    from fer_keras.data import loader
    from fer_keras.data.schema import dataset_from_manifest

    out, manifest = prepared_afew
    cfg = PipelineConfig(seq_len=4, batch_size=2, chain=True, shuffle_buffer=64)
    listed = []  # our own reading: (video id, frame index) of every frame, in record order
    for r in dataset_from_manifest(manifest, out, "train", decode=False):
        listed += [(r["video_id"].numpy().decode(), int(i)) for i in r["frame_index"].numpy()]
    expected = sorted((listed[k][0], tuple(i for _, i in listed[k:k + 4])) for k in range(0, len(listed) - 3, 4)
                      if k + 4 <= len(listed))
    got = []
    for x, _, meta in sequences(manifest, out, "train", cfg, training=True, with_meta=True):
        assert x["mask"].numpy().all()
        got += [(v.decode(), tuple(f)) for v, f in zip(meta["video_id"].numpy(), meta["frame_index"].numpy())]
    assert sorted(got) == expected and len(got) == len(listed) // 4
    assert any(list(f) != sorted(f) for _, f in got)  # some window crosses into the next video
    data = argparse.Namespace(format="tfrecord", root=out, folds=None, fold=None, augmentations=(),
                              train_split="train", pipeline=cfg)
    assert loader.steps(data, "train") == math.ceil(len(listed) // 4 / 2)
    evaluated = sequences(manifest, out, "train", cfg, with_meta=True)  # not training: per video
    assert any(not m.numpy().all() for x, _, _ in evaluated for m in x["mask"])
