"""Split files (DESIGN.md "Subjects and folds"): thesis 002's Fig. 3.6 protocol, the seeded
subject-independent k-fold, fold_keys, the loader reading a fold of a tiny prepared dataset,
pipeline truncation, and `fer-keras folds`.

Every dataset here is written by hand (VideoRecord + serialize, a few 8x8 PNG frames per video),
so nothing runs a real preparation.
"""
import json
import math
import os
from collections import Counter

import cv2
import numpy as np
import pytest
import tensorflow as tf

from fer_keras.classes import BU4DFE
from fer_keras.data import loader, splits
from fer_keras.data.manifest import read as read_manifest
from fer_keras.data.pipeline import PipelineConfig, sequences, sequences_per_video
from fer_keras.data.schema import VideoRecord, dataset_from_manifest, serialize

# --------------------------------------------------------------------------------------------
# 1. Thesis 002, Fig. 3.6, written out by hand from the figure.
# --------------------------------------------------------------------------------------------
FIG_TEST = ["F001", "F002", "F003", "F004", "F005", "F006", "F007", "F008", "F009", "F010",
            "M001", "M002", "M003", "M004", "M005", "M006", "M007", "M008", "M009", "M010"]
FIG_FOLDS = [
    ["F011", "F012", "F013", "F014", "F015", "F017", "F018", "F019", "F020", "F021", "F022",
     "F023", "F024", "F025", "F026", "F027"],
    ["F028", "F029", "F030", "F031", "F032", "F033", "F034", "F035", "F036", "F037", "F038",
     "F039", "F040", "F041", "F042", "F043"],
    ["F044", "F045", "F046", "F047", "F048", "F049", "F050", "F051", "F052", "F053", "F054",
     "F055", "F056", "F057", "F058", "M011"],
    ["M012", "M013", "M014", "M015", "M016", "M017", "M018", "M019", "M020", "M021", "M022",
     "M023", "M024", "M025", "M026", "M027"],
    ["M028", "M029", "M030", "M031", "M032", "M033", "M034", "M035", "M036", "M037", "M038",
     "M039", "M040", "M041", "M042", "M043"],
]
# "Training data: 80 subjects, F011-F015, F017-F058, M011-M043"
FIG_TRAIN = (["F011", "F012", "F013", "F014", "F015"]
             + [f"F{i:03d}" for i in (17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
                                      34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50,
                                      51, 52, 53, 54, 55, 56, 57, 58)]
             + [f"M{i:03d}" for i in (11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                      28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43)])


def test_thesis002_is_fig_3_6():
    s = splits.thesis002()
    assert s["protocol"] == "thesis002"
    assert s["test"] == FIG_TEST
    assert len(s["folds"]) == 5
    for i, (got, want) in enumerate(zip(s["folds"], FIG_FOLDS)):
        assert got == want, f"fold {i}"
        assert len(got) == 16
    assert "F016" not in s["test"] and all("F016" not in f for f in s["folds"])
    everywhere = s["test"] + [x for f in s["folds"] for x in f]
    assert len(everywhere) == len(set(everywhere)) == 100  # nothing in two places
    assert len(FIG_TRAIN) == 80
    assert sorted(x for f in s["folds"] for x in f) == sorted(FIG_TRAIN)
    assert s["unassigned"] == []
    splits.check(s)


def test_thesis002_unlisted_subjects_are_unassigned(tmp_path):
    prepared = FIG_TEST[:3] + FIG_TRAIN[::7] + ["X001", "F016", "M044"]
    s = splits.thesis002(prepared)
    assert s["unassigned"] == ["F016", "M044", "X001"]
    assert s["folds"] == FIG_FOLDS and s["test"] == FIG_TEST  # listed ones keep their place
    path = tmp_path / "splits.json"
    splits.write(path, s)
    assert splits.read(path) == s


# --------------------------------------------------------------------------------------------
# 2. kfold, check, read, write
# --------------------------------------------------------------------------------------------
SUBJECTS = [f"S{i:02d}" for i in range(23)]
MISSING = {"S03": 2, "S07": 5, "S15": 0, "S20": 3}   # subject -> the class it lacks
TEST_SUBJECTS = ["S00", "S01"]


def made_up(missing=MISSING):
    return [(s, c) for s in SUBJECTS for c in range(6) if missing.get(s) != c]


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_kfold_groups_by_subject(k):
    videos = made_up()
    train = set(SUBJECTS) - set(TEST_SUBJECTS)
    for seed in (0, 1, 7):
        s = splits.kfold(videos, k=k, seed=seed, test=TEST_SUBJECTS)
        assert len(s["folds"]) == k and s["k"] == k and s["seed"] == seed
        assert s["test"] == TEST_SUBJECTS
        flat = [x for f in s["folds"] for x in f]
        assert len(flat) == len(set(flat)), f"a subject in two folds (k={k}, seed={seed})"
        assert set(flat) == train  # every training subject once, no test subject
        assert all(f for f in s["folds"])
        sizes = [len(f) for f in s["folds"]]
        assert max(sizes) - min(sizes) <= 1
        splits.check(s)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_kfold_is_stratified(k):
    # every subject has all 6 classes: every fold has every class, in the same proportion
    full = made_up(missing={})
    for seed in (0, 3):
        for fold in splits.kfold(full, k=k, seed=seed)["folds"]:
            counts = Counter(c for s, c in full if s in set(fold))
            assert set(counts) == set(range(6))
            assert len(set(counts.values())) == 1
    # a few subjects lack a class: each fold's class proportions stay close to the overall ones
    videos = [(s, c) for s, c in made_up() if s not in TEST_SUBJECTS]
    overall = Counter(c for _, c in videos)
    for seed in (0, 3):
        for fold in splits.kfold(videos, k=k, seed=seed)["folds"]:
            in_fold = [c for s, c in videos if s in set(fold)]
            counts = Counter(in_fold)
            assert set(counts) == set(range(6))
            for c in range(6):
                assert abs(counts[c] / len(in_fold) - overall[c] / len(videos)) < 0.05


def test_kfold_seeded():
    videos = made_up()
    a = splits.kfold(videos, k=4, seed=11, test=TEST_SUBJECTS)
    b = splits.kfold(list(reversed(videos)), k=4, seed=11, test=TEST_SUBJECTS)
    assert a["folds"] == splits.kfold(videos, k=4, seed=11, test=TEST_SUBJECTS)["folds"]
    assert sorted(map(sorted, a["folds"])) == sorted(map(sorted, b["folds"]))
    others = [splits.kfold(videos, k=4, seed=seed, test=TEST_SUBJECTS)["folds"] for seed in (12, 13, 14)]
    assert any(sorted(map(sorted, o)) != sorted(map(sorted, a["folds"])) for o in others)


def test_kfold_bad_k():
    videos = [(s, c) for s in ("A", "B", "C") for c in range(6)]
    splits.kfold(videos, k=3)
    with pytest.raises(ValueError, match="k=4"):
        splits.kfold(videos, k=4)
    with pytest.raises(ValueError):  # 3 subjects, 1 of them test: 2 left for 3 folds
        splits.kfold(videos, k=3, test=["A"])
    with pytest.raises(ValueError):
        splits.kfold(videos, k=1)


def test_check_refuses_overlaps(tmp_path):
    with pytest.raises(ValueError, match="F011.*fold 1.*fold 0"):
        splits.check({"test": [], "folds": [["F011", "F012"], ["F013", "F011"]]})
    with pytest.raises(ValueError, match="F001.*fold 0.*test"):
        splits.check({"test": ["F001"], "folds": [["F011", "F001"]]})
    ok = {"test": ["F001"], "folds": [["F011"], ["F012"]]}
    assert splits.check(ok) is ok
    # write refuses it too, and leaves nothing behind
    path = tmp_path / "splits.json"
    with pytest.raises(ValueError, match=str(path)):
        splits.write(path, {"test": ["F001"], "folds": [["F001"]]})
    assert list(tmp_path.iterdir()) == []
    # so does read, naming the file
    path.write_text(json.dumps({"test": [], "folds": [["A", "B"], ["B"]]}))
    with pytest.raises(ValueError, match=f"{path}.*subject B"):
        splits.read(path)


def test_read_errors(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        splits.read(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"folds": [["F011"],')
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        splits.read(bad)
    bad.write_text('{"test": ["F001"]}')
    with pytest.raises(ValueError, match=f"{bad}.*'folds'"):
        splits.read(bad)


@pytest.mark.parametrize("content", ['[["F011"], ["F012"]]', '{"folds": [1, 2]}', '{"folds": ["F12", "M34"]}'])
def test_read_refuses_malformed_split_file(tmp_path, content):
    path = tmp_path / "splits.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{path}.*'folds'"):
        splits.read(path)


# --------------------------------------------------------------------------------------------
# 3. fold_keys on an in-memory manifest
# --------------------------------------------------------------------------------------------
def _entry(key, subject, split, status="ok", augmentation=None, frames=5):
    e = {"key": key, "id": key.split("/")[-1], "subject": subject, "split": split, "status": status,
         "label": 0, "frames_kept": frames if status == "ok" else 0}
    if augmentation:
        e["augmentation"] = augmentation
    return e


def _manifest():
    entries = []
    for s in ("A", "B", "C", "D"):
        for e in ("angry", "happy"):
            vid = f"{s}_{e}"
            entries.append(_entry(f"train/{vid}", s, "train"))
            for m in ("flip", "salt"):
                entries.append(_entry(f"train_aug/{vid}~{m}", s, "train_aug", augmentation=m))
    entries += [
        _entry("test/T_angry", "T", "test"),
        _entry("train/A_fear", "A", "train", status="failed"),
        _entry("train/C_fear", "C", "train", status="failed"),
        _entry("train_aug/C_sad~flip", "C", "train_aug", status="failed", augmentation="flip"),
        _entry("train/N_angry", None, "train"),  # no subject: cannot be placed
    ]
    return {"videos": {e["key"]: e for e in entries}}


FOLDS = {"test": ["T"], "folds": [["A", "B"], ["C"]], "unassigned": ["D"]}


def test_fold_keys_train_and_val():
    m = _manifest()
    train = splits.fold_keys(m, FOLDS, 1, "train")
    assert sorted(train) == ["train/A_angry", "train/A_happy", "train/B_angry", "train/B_happy",
                             "train/D_angry", "train/D_happy"]
    val = splits.fold_keys(m, FOLDS, 1, "val")
    assert sorted(val) == ["train/C_angry", "train/C_happy"]
    train0 = splits.fold_keys(m, FOLDS, 0, "train")
    assert sorted(train0) == ["train/C_angry", "train/C_happy", "train/D_angry", "train/D_happy"]
    assert sorted(splits.fold_keys(m, FOLDS, 0, "val")) == ["train/A_angry", "train/A_happy",
                                                            "train/B_angry", "train/B_happy"]


def test_fold_keys_augmentations():
    m = _manifest()
    flip = splits.fold_keys(m, FOLDS, 1, "train", augmentations=["flip"])
    assert sorted(k for k in flip if k.startswith("train_aug/")) == [
        "train_aug/A_angry~flip", "train_aug/A_happy~flip", "train_aug/B_angry~flip",
        "train_aug/B_happy~flip", "train_aug/D_angry~flip", "train_aug/D_happy~flip"]
    every = splits.fold_keys(m, FOLDS, 1, "train", augmentations="all")
    both = splits.fold_keys(m, FOLDS, 1, "train", augmentations=["flip", "salt"])
    assert sorted(every) == sorted(both)
    assert len([k for k in every if k.startswith("train_aug/")]) == 12
    for keys in (flip, every):
        for k in keys:
            v = m["videos"][k]
            assert v["subject"] not in FOLDS["folds"][1] and v["status"] == "ok"
    # validation never gets an augmented copy, whatever is asked for
    for aug in ((), ["flip"], "all"):
        val = splits.fold_keys(m, FOLDS, 1, "val", augmentations=aug)
        assert sorted(val) == ["train/C_angry", "train/C_happy"]
    # failed entries never appear
    for fold in (0, 1):
        for part in ("train", "val"):
            keys = splits.fold_keys(m, FOLDS, fold, part, augmentations="all")
            assert not {"train/A_fear", "train/C_fear", "train_aug/C_sad~flip", "test/T_angry",
                        "train/N_angry"} & set(keys)
            assert len(keys) == len(set(keys))


def test_fold_keys_bad_arguments():
    m = _manifest()
    with pytest.raises(ValueError, match="fold 2 does not exist.*0-1"):
        splits.fold_keys(m, FOLDS, 2, "train")
    with pytest.raises(ValueError, match="fold -1"):
        splits.fold_keys(m, FOLDS, -1, "train")
    with pytest.raises(ValueError, match="part"):
        splits.fold_keys(m, FOLDS, 0, "test")


# --------------------------------------------------------------------------------------------
# Tiny prepared datasets, written by hand
# --------------------------------------------------------------------------------------------
def _png(value):
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _record(video_id, label, frames):
    """A record whose frame i has every pixel = 10 * (i + 1), so content tells the index."""
    return serialize(VideoRecord(
        video_id=video_id, label=label, fps=25.0, face_size=8, frames=[_png(10 * (i + 1)) for i in range(frames)],
        frame_index=np.arange(frames), audio_lld=np.zeros((frames, 0), np.float32), has_audio=False,
        dataset="bu4dfe"))


def write_dataset(root, entries, shards_per_split=None):
    """Shards + manifest.json for `entries` (manifest entries; the failed ones get no record)."""
    shards_per_split = shards_per_split or {}
    by_split = {}
    for e in entries:
        by_split.setdefault(e["split"], []).append(e)
    manifest = {"schema_version": 2, "dataset": "bu4dfe", "classes": list(BU4DFE),
                "options": {"face_size": 8, "image_format": "png"},
                "audio": {"lld_dim": 0, "functionals_dim": 0}, "subjects": True, "splits": {}, "videos": {}}
    for split, group in by_split.items():
        ok = [e for e in group if e["status"] == "ok"]
        n = shards_per_split.get(split, 1)
        rels = []
        for i in range(n):
            rel = f"{split}/{split}-{i:05d}.tfrecord"
            os.makedirs(os.path.join(root, split), exist_ok=True)
            with tf.io.TFRecordWriter(os.path.join(root, rel)) as w:
                for e in ok[i::n]:  # interleaved: every shard mixes subjects
                    w.write(_record(e["id"], e["label"], e["frames_kept"]))
                    e["shard"] = rel
            rels.append(rel)
        manifest["splits"][split] = {"shards": rels, "count": len(ok)}
    manifest["videos"] = {e["key"]: e for e in entries}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


TINY_TEST = ["F001", "M001"]
TINY_TRAIN = ["F011", "F028", "F030", "F044", "M012", "M028", "X001"]  # X001: not in Fig. 3.6
FOLD1 = {"F028", "F030"}
METHODS = ("flip", "salt")
FAILED = {"F028_fear_tex", "M012_happy_tex"}  # ids no ok video has


def _tiny_entries():
    entries = []
    for i, subject in enumerate(TINY_TEST + TINY_TRAIN):
        split = "test" if subject in TINY_TEST else "train"
        for j in range(3):
            label = (i + 2 * j) % 6
            vid = f"{subject}_{BU4DFE[label]}_tex"
            frames = 2 + (i + j) % 5
            base = {"key": f"{split}/{vid}", "id": vid, "subject": subject, "split": split, "label": label,
                    "emotion": BU4DFE[label], "status": "ok", "frames_kept": frames}
            entries.append(base)
            if split == "train":
                for m in METHODS:
                    entries.append({**base, "key": f"train_aug/{vid}~{m}", "id": f"{vid}~{m}",
                                    "split": "train_aug", "augmentation": m, "of": base["key"]})
    for vid in FAILED:  # failed: no record, no frames
        subject = vid[:4]
        entries.append({"key": f"train/{vid}", "id": vid, "subject": subject, "split": "train",
                        "label": BU4DFE.index(vid.split("_")[1]), "status": "failed", "reason": "no_face",
                        "frames_kept": 0})
    entries.append({"key": "train_aug/F011_happy_tex~flip", "id": "F011_happy_tex~flip", "subject": "F011",
                    "split": "train_aug", "augmentation": "flip", "label": 2, "status": "failed",
                    "reason": "error", "frames_kept": 0})
    return entries


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(root, manifest) of a tiny BU-4DFE-like prepared dataset with splits.json (thesis002)."""
    root = str(tmp_path_factory.mktemp("tiny_bu4dfe"))
    manifest = write_dataset(root, _tiny_entries(), {"train": 2})
    subjects = sorted({e["subject"] for e in manifest["videos"].values()})
    splits.write(os.path.join(root, splits.SPLITS_FILE), splits.thesis002(subjects))
    return root, manifest


def _pipeline(**kw):
    return PipelineConfig(**{"seq_len": 4, "batch_size": 2, "padding": "zeros", "truncate": "end",
                             "inputs": ("frames",), "targets": ("category",), **kw})


def _data(root, **kw):
    from fer_keras.config import DataConfig
    return DataConfig(root=root, pipeline=kw.pop("pipeline", _pipeline()), **kw)


def _read(ds):
    """(video ids in order, labels by id, number of batches) of a with_meta dataset."""
    ids, labels, batches = [], {}, 0
    for x, y, meta in ds:
        batches += 1
        assert x["frames"].shape[1:] == (4, 8, 8, 3)
        for vid, onehot, label in zip(meta["video_id"].numpy(), y["category"].numpy(), meta["label"].numpy()):
            vid = vid.decode()
            ids.append(vid)
            assert int(np.argmax(onehot)) == int(label)
            labels[vid] = int(label)
    return ids, labels, batches


def _expected(manifest, part, methods=()):
    """The ids of a part of fold 1, from the manifest and the hand-written fold (FOLD1)."""
    out = set()
    for v in manifest["videos"].values():
        if v["status"] != "ok" or v["subject"] in TINY_TEST:
            continue
        if part == "val":
            if v["subject"] in FOLD1 and v["split"] == "train":
                out.add(v["id"])
        elif v["subject"] not in FOLD1 and (v["split"] == "train" or v.get("augmentation") in methods):
            out.add(v["id"])
    return out


def test_splits_json_of_the_tiny_dataset(tiny):
    root, _ = tiny
    s = splits.read(os.path.join(root, splits.SPLITS_FILE))
    assert set(s["folds"][1]) >= FOLD1 and s["unassigned"] == ["X001"]


@pytest.mark.parametrize("augmentations,methods", [(["flip"], ("flip",)), ("all", METHODS), ([], ())])
def test_loader_reads_a_fold(tiny, augmentations, methods):
    root, manifest = tiny
    data = _data(root, fold=1, augmentations=augmentations)
    ids, labels, batches = _read(loader.split(data, "train", training=True, with_meta=True))
    want = _expected(manifest, "train", methods)
    assert len(ids) == len(set(ids)), "a video twice (truncate='end' gives one sequence per video)"
    assert set(ids) == want
    assert not any(i.split("~")[0] in FAILED for i in ids)
    assert not any(i[:4] in FOLD1 | set(TINY_TEST) for i in ids)
    by_id = {v["id"]: v["label"] for v in manifest["videos"].values()}
    assert all(labels[i] == by_id[i] for i in ids)
    assert loader.steps(data, "train") == batches == math.ceil(len(want) / 2)

    val_ids, _, val_batches = _read(loader.split(data, "val", with_meta=True))
    assert len(val_ids) == len(set(val_ids))
    assert set(val_ids) == _expected(manifest, "val") == {"F028_happy_tex", "F028_surprise_tex", "F028_disgust_tex",
                                                         "F030_sad_tex", "F030_angry_tex", "F030_fear_tex"}
    assert not any("~" in i for i in val_ids)
    assert loader.steps(data, "val") == val_batches == 3
    assert {v["id"] for v in loader.selection(data, "val")} == set(val_ids)


def test_loader_fold_errors(tiny):
    from fer_keras.config import DataConfig
    root, _ = tiny
    for fold in (5, 17):
        with pytest.raises(ValueError, match=f"fold {fold} does not exist"):
            loader.split(_data(root, fold=fold), "train")
        with pytest.raises(ValueError, match=f"fold {fold} does not exist"):
            loader.steps(_data(root, fold=fold), "val")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        loader.selection(_data(root, fold=0, folds="nope.json"), "train")
    with pytest.raises(ValueError, match="without a fold"):  # no fold: no validation part
        loader.selection(_data(root, augmentations=["flip"]), "val")
    # augmentations without a fold: every training video plus its copies
    sel = loader.selection(_data(root, augmentations=["salt"]), "train")
    assert {v["id"] for v in sel} == {v["id"] for v in read_manifest(root)["videos"].values()
                                      if v["status"] == "ok" and (v["split"] == "train" or v.get("augmentation") == "salt")}
    for fold in (-1, True, "1", 1.0):
        with pytest.raises(ValueError, match="fold"):
            DataConfig(root=root, fold=fold)
    for aug in ("flip", None, {"flip": 1}, 3):
        with pytest.raises(ValueError, match="augmentations"):
            DataConfig(root=root, augmentations=aug)
    with pytest.raises(ValueError, match="tfrecord"):
        DataConfig(root=root, format="hdf5", fold=0)
    DataConfig(root=root, fold=0, augmentations=("flip",))
    DataConfig(root=root, fold=None, augmentations="all")


# --------------------------------------------------------------------------------------------
# 5. truncate
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("truncate"))
    entries = [{"key": f"train/{vid}", "id": vid, "subject": None, "split": "train", "label": label,
                "status": "ok", "frames_kept": n} for vid, label, n in (("v10", 1, 10), ("v3", 4, 3))]
    return root, write_dataset(root, entries)


def _sequences(root, manifest, truncate, ids):
    cfg = _pipeline(truncate=truncate, batch_size=8, normalize="none")
    got = {}
    for x, _, meta in sequences(manifest, root, "train", cfg, with_meta=True, ids=ids):
        for frames, mask, vid, seq in zip(x["frames"].numpy(), x["mask"].numpy(), meta["video_id"].numpy(),
                                          meta["sequence"].numpy()):
            # every pixel of a frame is one value: the frame index is value / 10 - 1
            assert all(np.all(f == f.flat[0]) for f in frames)
            got[(vid.decode(), int(seq))] = (mask.tolist(), [int(f.flat[0]) for f in frames])
    return got


def test_truncate(short_and_long):
    root, manifest = short_and_long
    got = _sequences(root, manifest, None, ["v10"])
    assert sorted(got) == [("v10", 0), ("v10", 1), ("v10", 2)]
    assert [sum(got[("v10", i)][0]) for i in range(3)] == [4, 4, 2]
    assert got[("v10", 0)][1] == [10, 20, 30, 40]
    assert got[("v10", 1)][1] == [50, 60, 70, 80]
    assert got[("v10", 2)] == ([1, 1, 0, 0], [90, 100, 0, 0])  # padding "zeros"

    got = _sequences(root, manifest, "end", ["v10"])
    assert got == {("v10", 0): ([1, 1, 1, 1], [10, 20, 30, 40])}  # frames 0-3: the end is lost
    got = _sequences(root, manifest, "start", ["v10"])
    assert got == {("v10", 0): ([1, 1, 1, 1], [70, 80, 90, 100])}  # frames 6-9: the start is lost

    for truncate in ("end", "start"):
        got = _sequences(root, manifest, truncate, ["v3"])
        assert got == {("v3", 0): ([1, 1, 1, 0], [10, 20, 30, 0])}

    both = _sequences(root, manifest, "end", None)
    assert sorted(both) == [("v10", 0), ("v3", 0)]
    assert _sequences(root, manifest, None, []) == {}
    assert sum(1 for _ in dataset_from_manifest(manifest, root, "train", decode=False, ids=["v3"])) == 1


def test_sequences_per_video_and_bad_truncate():
    for truncate, ten, three in ((None, 3, 1), ("end", 1, 1), ("start", 1, 1)):
        cfg = _pipeline(truncate=truncate)
        assert sequences_per_video(10, cfg) == ten
        assert sequences_per_video(3, cfg) == three
        assert sequences_per_video(4, cfg) == 1
        assert sequences_per_video(0, cfg) == 0
    assert sequences_per_video(9, _pipeline(truncate=None)) == 3
    for bad in ("both", "END", True, 4, ""):
        with pytest.raises(ValueError, match="truncate"):
            _pipeline(truncate=bad)


def test_steps_match_batches_without_truncation(short_and_long):
    root, _ = short_and_long
    data = _data(root, pipeline=_pipeline(truncate=None, batch_size=3))
    batches = sum(1 for _ in loader.split(data, "train"))
    assert loader.steps(data, "train") == batches == math.ceil((3 + 1) / 3)


# --------------------------------------------------------------------------------------------
# 6. fer-keras folds
# --------------------------------------------------------------------------------------------
def test_cli_folds(tiny, capsys):
    from fer_keras.cli import main

    root, _ = tiny
    assert main(["folds", root, "--k", "2", "--seed", "0"]) == 0
    path = os.path.join(root, "splits-k2-seed0.json")
    assert path in capsys.readouterr().out
    s = splits.read(path)
    assert s["protocol"] == "kfold" and s["k"] == 2 and s["seed"] == 0
    assert s["test"] == TINY_TEST
    flat = [x for f in s["folds"] for x in f]
    assert len(s["folds"]) == 2 and all(s["folds"])
    assert len(flat) == len(set(flat)) and sorted(flat) == sorted(TINY_TRAIN)
    # the same again to another file: the same folds; a bad k: one line on stderr, exit 2
    out = os.path.join(root, "again.json")
    assert main(["folds", root, "--k", "2", "--seed", "0", "--out", out]) == 0
    assert splits.read(out)["folds"] == s["folds"]
    capsys.readouterr()
    assert main(["folds", root, "--k", "20"]) == 2
    assert "k=20" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(root, "splits-k20-seed0.json"))
    # a loader can use the written file
    data = _data(root, folds="splits-k2-seed0.json", fold=0)
    val = {v["subject"] for v in loader.selection(data, "val")}
    assert val == set(s["folds"][0])
