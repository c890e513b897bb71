"""The order a training epoch reads: well mixed over class-sorted shards, a new draw per epoch,
and the same draw for epoch k whether a run starts there (a resume) or reaches it."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fer_keras.classes import AFEW
from fer_keras.data.pipeline import PipelineConfig, sequences
from fer_keras.data.schema import VideoRecord, serialize

# AFEW 7.0's training split: 773 videos (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise)
AFEW_TRAIN = (133, 74, 81, 150, 144, 117, 74)


def class_sorted_dataset(root, counts=AFEW_TRAIN, shard_size=32, seed=0):
    """A manifest + shards laid out as a class-ordered preparation writes them: 41 to 80 kept
    frames per video (two sequences of 40), 32 videos per shard, in class order."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    frames = rng.integers(41, 81, len(labels))
    os.makedirs(os.path.join(root, "train"))
    shards, videos = [], {}
    for start in range(0, len(labels), shard_size):
        rel = f"train/train-{len(shards):05d}.tfrecord"
        with tf.io.TFRecordWriter(os.path.join(root, rel)) as writer:
            for i in range(start, min(start + shard_size, len(labels))):
                n = int(frames[i])
                writer.write(serialize(VideoRecord(
                    video_id=f"v{i:04d}", label=int(labels[i]), fps=25.0, face_size=8, frames=[b"x"] * n,
                    frame_index=np.arange(n), audio_lld=np.zeros((n, 0), np.float32), has_audio=False)))
                videos[f"train/v{i:04d}"] = {"id": f"v{i:04d}", "split": "train", "label": int(labels[i]),
                                             "status": "ok", "frames_kept": n, "shard": rel}
        shards.append(rel)
    manifest = {"schema_version": 2, "dataset": "afew", "classes": list(AFEW), "options": {"face_size": 8},
                "audio": {"lld_dim": 0, "functionals_dim": 0},
                "splits": {"train": {"shards": shards, "videos": len(labels)}}, "videos": videos}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


@pytest.fixture(scope="module")
def sorted_afew(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("class_sorted"))
    return root, class_sorted_dataset(root)


CFG = PipelineConfig(seq_len=40, inputs=(), batch_size=32, seed=0)


def epochs_read(root, manifest, cfg=CFG, epoch=0, epochs=2):
    """Per epoch, the (video id, sequence, label) of every sequence in the order read."""
    per_epoch, batches = [], -(-sum(2 for _ in manifest["videos"]) // cfg.batch_size)
    rows = []
    for _, _, meta in sequences(manifest, root, "train", cfg, training=True, with_meta=True,
                                epoch=epoch, epochs=epochs).as_numpy_iterator():
        rows.append(list(zip(meta["video_id"], meta["sequence"], meta["label"])))
    for e in range(epochs):
        per_epoch.append([r for batch in rows[e * batches:(e + 1) * batches] for r in batch])
    return per_epoch


def test_every_quarter_epoch_has_the_class_mix_of_the_split(sorted_afew):
    root, manifest = sorted_afew
    for order in epochs_read(root, manifest):
        labels = np.array([label for _, _, label in order])
        assert len(labels) == 2 * sum(AFEW_TRAIN)  # every sequence, once
        overall = np.bincount(labels, minlength=7) / len(labels)
        for quarter in np.array_split(labels, 4):
            share = np.bincount(quarter, minlength=7) / len(quarter)
            # a uniform shuffle: about 386 sequences a quarter, a class share within 3 standard errors
            assert np.all(np.abs(share - overall) < 3 * np.sqrt(overall * (1 - overall) / len(quarter))), share


def test_epochs_are_new_draws_and_a_resumed_epoch_is_the_same_draw(sorted_afew):
    root, manifest = sorted_afew
    first, second = epochs_read(root, manifest)
    assert first != second and sorted(first) == sorted(second)
    assert epochs_read(root, manifest) == [first, second]  # deterministic for a seed
    assert epochs_read(root, manifest, epoch=1, epochs=1) == [second]  # a run resumed at epoch 1
    other = epochs_read(root, manifest, PipelineConfig(seq_len=40, inputs=(), batch_size=32, seed=1), epochs=1)
    assert other != [first]
