"""Shared fixtures: one synthetic AFEW dataset and its preparation per test session (per worker)."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import data_prep  # noqa: E402,F401  must come before tensorflow (see data_prep/__init__.py)
import pytest  # noqa: E402

from data_prep.datasets.afew.synthetic import SyntheticSpec, write_afew  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_afew(tmp_path_factory):
    """(root, ground truth) of the default synthetic AFEW dataset (with the broken clips)."""
    root = tmp_path_factory.mktemp("afew_src")
    return str(root), write_afew(str(root), SyntheticSpec())


@pytest.fixture(scope="session")
def prepared_afew(synthetic_afew, tmp_path_factory):
    """(out dir, manifest) of the synthetic dataset prepared with the default options."""
    from data_prep.datasets.afew.layout import prepare

    out = str(tmp_path_factory.mktemp("afew_prepared"))
    manifest = prepare(synthetic_afew[0], out, progress=False)
    return out, manifest


@pytest.fixture(scope="session")
def afew_subset(synthetic_afew, prepared_afew, tmp_path_factory):
    """(root, entries): ten videos of the synthetic AFEW source linked in its layout (the three
    broken clips and normal ones of every split; a third of the preparation work of the whole
    source), and prepared_afew's manifest entries of those videos as a preparation of `root`
    writes them (their source path under `root`)."""
    src, truth = synthetic_afew
    root = tmp_path_factory.mktemp("afew_subset")
    normal = {split: [v for v in truth["videos"] if v["split"] == split and v["kind"] == "normal"]
              for split in ("train", "val", "test")}
    picked = [v for v in truth["videos"] if v["kind"] != "normal"]
    picked += normal["train"][:3] + normal["val"][:2] + normal["test"][:2]
    entries = {}
    for video in picked:
        link = root / video["path"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.join(src, video["path"]))
        key = f"{video['split']}/{video['id']}"
        entries[key] = {**prepared_afew[1]["videos"][key], "path": str(link)}
    return str(root), entries


def shard_ids(out, manifest) -> dict:
    """{split: [[video id, ...] per shard in manifest order]}, by our own decoding of the shards."""
    import tensorflow as tf

    return {split: [[tf.train.SequenceExample.FromString(raw.numpy()).context.feature["video_id"].bytes_list.value[0]
                     .decode() for raw in tf.data.TFRecordDataset(os.path.join(out, rel))] for rel in info["shards"]]
            for split, info in manifest["splits"].items()}


def written_in_order(out, manifest, shard_size) -> bool:
    """Whether every split's shards hold its prepared videos in the seeded write order (a
    blake2b rank of the manifest key), `shard_size` to a shard and only the last one short."""
    import hashlib

    rank = lambda key: hashlib.blake2b(f"write-order/{key}".encode(), digest_size=8).digest()  # noqa: E731
    for split, shards in shard_ids(out, manifest).items():
        ok = sorted((k for k, v in manifest["videos"].items() if v["split"] == split and v["status"] == "ok"), key=rank)
        ids = [manifest["videos"][k]["id"] for k in ok]
        if shards != [ids[i:i + shard_size] for i in range(0, len(ids), shard_size)]:
            return False
    return True


def read_failures(out):
    path = os.path.join(out, "failures.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def write_shards(root, manifest: dict, records: dict) -> dict:
    """A prepared dataset written by hand: each split's serialised records as its one shard
    (``<split>/<split>-00000.tfrecord``), listed in ``manifest``, which is then saved; empty splits
    are left out."""
    import tensorflow as tf

    for split, raws in records.items():
        if not raws:
            continue
        rel = f"{split}/{split}-00000.tfrecord"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(root, rel)) as writer:
            for raw in raws:
                writer.write(raw)
        manifest["splits"][split] = {"shards": [rel], "count": len(raws)}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def write_feature_folds(root, videos: int) -> None:
    """fold-1/fold-2-features-6.h5: ``videos`` sequences of 10 steps x 6 features, 3 classes,
    the class added to every feature (learnable in a few epochs), seeded."""
    from pathlib import Path

    import numpy as np

    from fer_keras.data.features import write_features

    rng = np.random.default_rng(0)
    for fold in (1, 2):
        labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, videos)]
        masks = (np.arange(10)[None] < rng.integers(3, 11, (videos, 1))).astype(np.float32)
        features = rng.normal(size=(videos, 10, 6)).astype(np.float32) + labels.argmax(1)[:, None, None]
        write_features(Path(root) / f"fold-{fold}-features-6.h5", features, masks, labels,
                       [f"v{fold}-{i}" for i in range(videos)], ["a", "b", "c"])



@pytest.fixture(scope="session")
def prepared_va_categories(tmp_path_factory):
    """(out dir, manifest) of a small synthetic valence/arousal set with per-frame categories, as
    thesis 003 uses it: train, val and test drawn by video, only frames with a category kept."""
    from data_prep import options
    from data_prep.registry import SYNTHETIC, dataset

    root = tmp_path_factory.mktemp("va_categories")
    spec = SYNTHETIC["va"].spec
    SYNTHETIC["va"].synth(str(root / "src"), options.build(spec, dict(
        layout="timed", categories=True, videos=8, min_frames=20, max_frames=30, long_frames=0, broken=False)))
    entry = dataset("va")
    opts = options.build(entry.options, dict(
        layout="timed", face_size=32, crop_size=40, min_face_size=0.2, segment_frames=8, val_fraction=0.25,
        test_fraction=0.25, require_category=True))
    manifest = entry.prepare(str(root / "src"), str(root / "prepared"), opts, progress=False)
    return str(root / "prepared"), manifest
