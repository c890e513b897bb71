"""`fer-keras features` (fer_keras/feature_extraction.py): a frozen image CNN's per-frame features of
a prepared BU-4DFE dataset, one HDF5 file per fold of its split file plus the test set, written
batch by batch, resumable, read back by the cascades' loader.

The dataset is written by hand (random 16 px PNG frames whose pixels the tests keep), so the
features can be checked against the CNN run on those frames directly; the FER2013 run directory
holds a tiny classifier with the thesis's layer names (``features`` Flatten, ``dense``).
"""
import json
import os
import subprocess
import sys
import time

import cv2
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras import config as cfg
from fer_keras import feature_extraction as fe
from fer_keras.classes import BU4DFE
from fer_keras.cli import main
from fer_keras.data import splits
from fer_keras.data.features import PARTIAL, FeatureWriter, check_folder, feature_sequences, read_info, write_features
from fer_keras.data.pipeline import PipelineConfig
from fer_keras.data.schema import VideoRecord, serialize

from conftest import write_shards

SIZE, T = 16, 8            # face crops = the CNN's input (no resize); frames per stored video
FOLD_OF = {"F011": 0, "F028": 1, "F044": 2, "M012": 3, "M028": 4}   # one subject per thesis fold
TEST = ("F001", "M001")


def write_dataset(root, subjects, frames_of, methods=("flip",), size=SIZE):
    """Shards, manifest.json and splits.json (thesis 002's protocol) of a BU-4DFE-like dataset:
    per subject two videos of ``frames_of(i)`` random frames, training videos with one copy per
    method in train_aug. Returns {video id: (label, frames uint8)}."""
    rng = np.random.default_rng(0)
    truth, entries, records = {}, [], {}
    for i, subject in enumerate(subjects):
        split = "test" if subject in TEST else "train"
        for j in range(2):
            label = (i + j) % len(BU4DFE)
            vid = f"{subject}_{BU4DFE[label]}_tex"
            frames = rng.integers(0, 256, (frames_of(2 * i + j), size, size, 3), np.uint8)
            base = {"key": f"{split}/{vid}", "id": vid, "subject": subject, "split": split, "label": label,
                    "status": "ok", "frames_kept": len(frames)}
            versions = [(base, frames)]
            if split == "train":
                versions += [({**base, "key": f"train_aug/{vid}~{m}", "id": f"{vid}~{m}", "split": "train_aug",
                               "augmentation": m, "of": base["key"]}, frames[:, :, ::-1]) for m in methods]
            for entry, pixels in versions:
                truth[entry["id"]] = (label, pixels)
                entries.append(entry)
                records.setdefault(entry["split"], []).append(serialize(VideoRecord(
                    video_id=entry["id"], label=label, fps=25.0, face_size=size,
                    frames=[cv2.imencode(".png", f[:, :, ::-1])[1].tobytes() for f in pixels],
                    frame_index=np.arange(len(pixels)), audio_lld=np.zeros((len(pixels), 0), np.float32),
                    has_audio=False, dataset="bu4dfe")))
    manifest = {"schema_version": 2, "dataset": "bu4dfe", "classes": list(BU4DFE),
                "options": {"face_size": size, "image_format": "png"},
                "audio": {"lld_dim": 0, "functionals_dim": 0}, "subjects": True, "splits": {}, "videos": {}}
    for e in entries:
        e["shard"] = f"{e['split']}/{e['split']}-00000.tfrecord"
    manifest["videos"] = {e["key"]: e for e in entries}
    write_shards(root, manifest, records)
    splits.write(os.path.join(root, splits.SPLITS_FILE), splits.thesis002(subjects))
    return truth


def tiny_classifier(size=SIZE, filters=4):
    """A FER2013-style image classifier with thesis 002's tap names, small enough for tests."""
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv1_1")(image)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten(name="features")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.5, name="dense_dropout")(x)
    out = keras.layers.Dense(7, activation="softmax", name="category")(x)
    return keras.Model({"image": image}, {"category": out})


def write_run_dir(root, model):
    """A run directory as training leaves it: config.yaml and checkpoints/best.keras."""
    os.makedirs(os.path.join(root, "checkpoints"))
    exp = cfg.from_dict({"name": "fer2013", "model": {"name": "vggface_finetune", "options": {"input_size": 32}},
                         "data": {"pipeline": {"normalize": "unit", "seq_len": 1}}})
    cfg.save(exp, os.path.join(root, "config.yaml"))
    model.save(os.path.join(root, "checkpoints", "best.keras"))
    return str(root)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bu4dfe_prepared"))
    return root, write_dataset(root, list(TEST) + list(FOLD_OF), lambda k: 3 + (5 * k) % 10)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return write_run_dir(tmp_path_factory.mktemp("fer2013_run") / "run", tiny_classifier())


def contents(path):
    """Every dataset and attribute of an HDF5 file, for comparing two files."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, dict(f.attrs)


def assert_same_file(a, b):
    (data_a, attrs_a), (data_b, attrs_b) = contents(a), contents(b)
    assert data_a.keys() == data_b.keys() and attrs_a.keys() == attrs_b.keys()
    for k in data_a:
        np.testing.assert_array_equal(data_a[k], data_b[k], err_msg=f"{a}: {k}")
    for k in attrs_a:
        np.testing.assert_array_equal(attrs_a[k], attrs_b[k])


@pytest.mark.parametrize("dtype, augmentations", [("float32", ()), ("float16", ("flip",))])
def test_features_are_the_cnn_on_the_frames(dataset, run_dir, tmp_path, dtype, augmentations):
    """Every stored row is the tap sub-model on that video's first T frames (exact input, computed
    here from the frames written), zero on padded frames; files per fold and the test set."""
    root, truth = dataset
    out = tmp_path / "features"
    extractor = fe.load_extractor(run_dir)
    done = fe.extract(extractor, root, out, dtype=dtype, augmentations=augmentations, batch=3, seq_len=T,
                      progress=False)
    names = sorted(os.path.basename(d["path"]) for d in done)
    assert names == [f"fold-{k}-features-256.h5" for k in range(5)] + ["test-features-256.h5"]
    assert sorted(os.listdir(out)) == ["features.json"] + names   # no .partial left
    model = keras.models.load_model(os.path.join(run_dir, "checkpoints", "best.keras"))
    tap = keras.Model(model.inputs[0], model.get_layer("features").output)
    subject_of = {f"fold-{k}": s for s, k in FOLD_OF.items()}
    for name in names:
        path = out / name
        stem = name.split("-features")[0]
        with h5py.File(path, "r") as f:
            assert f["features"].dtype == dtype and f["features"].chunks == (1, T, 256)
            assert f["features"].maxshape == (None, T, 256)
            got = {n: (f["features"][i], f["masks"][i], f["labels"][i]) for i, n in enumerate(f["names"].asstr())}
            assert [str(c) for c in f.attrs["classes"]] == list(BU4DFE)
        assert set(got) == {v for v in truth if (v[:4] in TEST if stem == "test" else v[:4] == subject_of[stem])
                            and ("~" not in v or v.split("~")[1] in augmentations)}
        for vid, (features, mask, label) in got.items():
            index, frames = truth[vid]
            n = min(len(frames), T)   # the end of a longer video is cut
            reference = tap(frames[:n].astype(np.float32) * np.float32(1 / 255.0)).numpy()
            tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2 ** -10, atol=1e-6)
            np.testing.assert_allclose(features[:n].astype(np.float32), reference, **tolerance)
            assert not features[n:].any()
            np.testing.assert_array_equal(mask, np.arange(T) < n)
            np.testing.assert_array_equal(label, np.eye(len(BU4DFE))[index])
    index = json.loads((out / "features.json").read_text())
    assert {k: v["records"] for k, v in index.items()} == {n: read_info(out / n).videos for n in names}
    assert main(["verify", str(out)]) == 0
    # the loader reads them back as float32, whatever the stored precision
    x, y, meta = next(iter(feature_sequences(out / names[1], PipelineConfig(seq_len=T, batch_size=64),
                                             with_meta=True)))
    assert x["features"].dtype == tf.float32
    with h5py.File(out / names[1], "r") as f:
        np.testing.assert_array_equal(x["features"].numpy(), f["features"][()].astype(np.float32))


def test_config_source_and_dense_tap(dataset, tmp_path):
    """An experiment YAML naming a registry image model (vggface_finetune at 32 px) and the
    thesis's 1,024-unit "dense" tap; the frames are resized to the model's input."""
    root, truth = dataset
    yaml_path = tmp_path / "fer2013.yaml"
    cfg.save(cfg.from_dict({"model": {"name": "vggface_finetune", "options": {"input_size": 32}}}), yaml_path)
    extractor = fe.load_extractor(yaml_path, "dense")
    assert (extractor.image_size, extractor.dim) == (32, 1024)
    done = fe.extract(extractor, root, tmp_path / "out", batch=4, seq_len=T, progress=False)
    path = next(d["path"] for d in done if os.path.basename(d["path"]).startswith("test-"))
    assert path.endswith("test-features-1024.h5")
    with h5py.File(path, "r") as f:
        vid, features = f["names"].asstr()[0], f["features"][0]
    frames = truth[vid][1][:T].astype(np.float32)
    resized = tf.image.resize(frames, (32, 32)) * (1 / 255.0)   # as the pipeline resizes, then scales
    np.testing.assert_allclose(features[:len(frames)], extractor.model(resized).numpy(), rtol=1e-4, atol=1e-5)


def test_killed_extraction_continues_to_the_same_files(dataset, run_dir, tmp_path, monkeypatch):
    """A run stopped after 3 batches, one of whose unfinished files also has rows past its count
    (a kill between a batch's rows and its count), reruns to the files an uninterrupted run
    writes; the rerun writes only videos the first run had not written, each once."""
    root, _ = dataset
    extractor = fe.load_extractor(run_dir)
    whole = tmp_path / "whole"
    fe.extract(extractor, root, whole, batch=1, seq_len=T, progress=False)
    append, calls = FeatureWriter.append, []

    def killed_after_three(writer, features, masks, labels, names, frames=None):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(list(names))
        append(writer, features, masks, labels, names, frames)

    out = tmp_path / "killed"
    monkeypatch.setattr(FeatureWriter, "append", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        fe.extract(extractor, root, out, batch=1, seq_len=T, progress=False)
    monkeypatch.setattr(FeatureWriter, "append", append)
    partials = sorted(out / n for n in os.listdir(out))
    assert [p.name for p in partials] == sorted(n + PARTIAL for n in os.listdir(whole) if n.endswith(".h5"))
    counts = {}
    for p in partials:
        with h5py.File(p, "r") as f:
            counts[p] = int(f.attrs["videos_written"])
    partial = max(counts, key=counts.get)
    assert sum(counts.values()) == 3 and 0 < counts[partial] < read_info(whole / partial.name[:-len(PARTIAL)]).videos
    with h5py.File(partial, "r+") as f:   # half a batch more: rows the count does not cover
        for name in ("features", "masks", "labels", "names"):
            f[name].resize(f[name].shape[0] + 1, axis=0)
        f["features"][-1] = 7.0
    with pytest.raises(ValueError, match=rf"{partial.name}: unfinished \({counts[partial]} videos"):
        read_info(partial)
    problems, _ = check_folder(out)
    assert [p.path for p in problems] == [str(p) for p in partials]   # verify names them, never takes them as done

    def recorded(writer, features, masks, labels, names, frames=None):
        calls.append(list(names))
        append(writer, features, masks, labels, names, frames)

    monkeypatch.setattr(FeatureWriter, "append", recorded)
    fe.extract(extractor, root, out, batch=1, seq_len=T, progress=False)
    written = [n for batch in calls for n in batch]
    assert len(written) == len(set(written)) == sum(read_info(whole / n).videos for n in os.listdir(whole)
                                                    if n.endswith(".h5"))
    assert sorted(os.listdir(out)) == sorted(os.listdir(whole))
    for name in os.listdir(whole):
        if name.endswith(".h5"):
            assert_same_file(out / name, whole / name)
    def records(folder):
        return {k: v["records"] for k, v in json.loads((folder / "features.json").read_text()).items()}

    assert records(out) == records(whole)
    # a rerun skips every finished file; other settings are refused, naming what differs
    before = {n: os.path.getmtime(out / n) for n in os.listdir(out)}
    assert not any(d["written"] for d in fe.extract(extractor, root, out, batch=1, seq_len=T, progress=False))
    assert {n: os.path.getmtime(out / n) for n in os.listdir(out)} == before
    with pytest.raises(ValueError, match=r"fold-0-features-256\.h5: written with other settings \(dtype\)"):
        fe.extract(extractor, root, out, dtype="float16", batch=1, seq_len=T, progress=False)
    assert main(["verify", str(out)]) == 0
    damaged = out / "fold-0-features-256.h5"   # truncated after it was recorded: written again
    damaged.write_bytes(damaged.read_bytes()[:-100])
    fe.extract(extractor, root, out, batch=1, seq_len=T, progress=False)
    assert_same_file(damaged, whole / damaged.name)
    unfinished = FeatureWriter(out / "fold-9-features-256.h5", T, 256, BU4DFE)
    unfinished.close()
    assert main(["verify", str(out)]) == 1


def test_writer_holds_one_batch(dataset, run_dir, tmp_path, monkeypatch):
    """Each batch goes to the file as it comes: no call carries more than --batch videos, and the
    file already holds every earlier batch when the next one arrives."""
    root, _ = dataset
    append, seen = FeatureWriter.append, []

    def watched(writer, features, masks, labels, names, frames=None):
        seen.append((writer.path, len(names), features.nbytes, writer.file["features"].shape[0]))
        append(writer, features, masks, labels, names, frames)

    monkeypatch.setattr(FeatureWriter, "append", watched)
    fe.extract(fe.load_extractor(run_dir), root, tmp_path / "out", batch=2, seq_len=T, progress=False)
    assert len(seen) > 6 and all(n <= 2 and nbytes <= 2 * T * 256 * 4 for _, n, nbytes, _ in seen)
    for path in {p for p, *_ in seen}:
        batches = [(n, rows) for p, n, _, rows in seen if p == path]
        assert [rows for _, rows in batches] == list(np.cumsum([0] + [n for n, _ in batches[:-1]]))


@pytest.mark.slow  # the engine on HDF5 features stays fast in test_training
def test_cascade_trains_on_the_files(dataset, run_dir, tmp_path):
    """`fer-keras features` then `fer-keras train` of cascade_lstm on two fold files (format hdf5)."""
    root, _ = dataset
    out = tmp_path / "features"
    assert main(["features", run_dir, "--data", root, "--out", str(out), "--seq-len", str(T), "--dtype",
                 "float16", "--augmentations", "flip", "-q"]) == 0
    exp = tmp_path / "cascade.yaml"
    cfg.save(cfg.from_dict({
        "name": "cascade", "data": {"root": str(out), "format": "hdf5", "train_split": "fold-1-features-256",
                                    "val_split": "fold-2-features-256",
                                    "pipeline": {"seq_len": T, "batch_size": 2, "shuffle_buffer": 4}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 256, "seq_len": T, "units": 4}},
        "training": {"epochs": 1, "verbose": 0}}), exp)
    assert main(["train", str(exp), "--run-dir", str(tmp_path / "run"), "--no-evaluate"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "best.keras").is_file()


@pytest.mark.parametrize("args, message", [
    (["{run}", "--tap", "dense_dropout"], "no feature tap 'dense_dropout'; its taps: features, dense, category"),
    (["{run}", "--tap", "pool1"], "no feature tap 'pool1'"),
    (["{missing}"], "{missing}: no such run directory or experiment file"),
    (["{empty}"], "{empty}/config.yaml: missing; is {empty} a run directory"),
    (["{run}", "--data", "{nosplits}"], "{nosplits}/splits.json: missing; --data must be a prepared dataset"),
    (["{run}", "--augmentations", "salt"], "{data}: no offline copies made by salt; it has flip"),
])
def test_bad_input_is_one_line(dataset, run_dir, tmp_path, capsys, args, message):
    where = {"run": run_dir, "data": dataset[0], "missing": str(tmp_path / "missing"),
             "empty": str(tmp_path / "empty"), "nosplits": str(tmp_path / "nosplits")}
    os.makedirs(where["empty"])
    os.makedirs(where["nosplits"])
    (tmp_path / "nosplits" / "manifest.json").write_text("{}")
    args = [a.format(**where) for a in args]
    data = [] if "--data" in args else ["--data", where["data"]]
    assert main(["features", *args, *data, "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message.format(**where) in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_writer_refuses_what_it_cannot_store(tmp_path):
    """float16 overflow, and an unfinished file of other settings, are refused, never mixed in."""
    path = tmp_path / "fold-0-features-3.h5"
    with pytest.raises(ValueError, match=r"fold-0-features-3\.h5: features exceed float16's range; write float32"):
        write_features(path, np.full((1, 2, 3), 1e5), np.ones((1, 2)), np.eye(6)[:1], ["v"], BU4DFE, dtype="float16")
    assert os.listdir(tmp_path) == []
    FeatureWriter(path, 2, 3, BU4DFE, attrs={"extraction": "a"}).close()
    with pytest.raises(ValueError, match=r"\.partial: an unfinished file written with other extraction; delete it"):
        FeatureWriter(path, 2, 3, BU4DFE, attrs={"extraction": "b"})
    with pytest.raises(ValueError, match=r"\.partial: an unfinished file written with other features"):
        FeatureWriter(path, 2, 3, BU4DFE, "float16", attrs={"extraction": "a"})


@pytest.mark.slow
def test_reader_outpaces_a_cascade_step(tmp_path):
    """Figures only (no timing assertion): feature_sequences' rate against cascade_lstm's train
    step on the same batches, at the thesis's width with short videos."""
    n, dim, batch = 96, 25088, 16
    rng = np.random.default_rng(0)
    path = tmp_path / f"fold-0-features-{dim}.h5"
    write_features(path, rng.normal(size=(n, T, dim)).astype(np.float16), np.ones((n, T)),
                   np.eye(6)[np.arange(n) % 6], [f"v{i}" for i in range(n)], BU4DFE, dtype="float16")
    read, step = _rates(path, PipelineConfig(seq_len=T, batch_size=batch, shuffle_buffer=8), dim, steps=3)
    print(f"\nfeature_sequences {read:.0f} videos/s vs cascade_lstm train step {step:.0f} videos/s "
          f"({T} x {dim} float16, batch {batch})")
    assert read > 0 and step > 0


def _rates(path, pipeline, dim, steps):
    """(videos/s that feature_sequences reads over a training epoch after its first batch,
    videos/s that cascade_lstm trains on over ``steps`` batches after one warm-up step)."""
    ds = feature_sequences(path, pipeline, training=True)
    batches = iter(ds)
    next(batches)   # the pipeline's start-up is not its rate
    start, videos = time.perf_counter(), 0
    for x, _ in batches:
        videos += int(x["features"].shape[0])
    read = videos / (time.perf_counter() - start)
    from fer_keras import models
    model = models.build("cascade_lstm", input_dim=dim, seq_len=pipeline.seq_len, classes=6)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    batches = list(ds.take(steps + 1))
    model.train_on_batch(*batches[0])
    start = time.perf_counter()
    for x, y in batches[1:]:
        model.train_on_batch(x, y)
    return read, steps * pipeline.batch_size / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Slow: a real SIGKILL, bounded memory at width 25,088, the reader at the thesis's width
# --------------------------------------------------------------------------------------------
KILLED = """
import os, signal, sys
import h5py
from fer_keras import feature_extraction as fe
from fer_keras.data.features import FeatureWriter
append = FeatureWriter.append
def append_then_die(writer, *batch):
    append(writer, *batch)
    if writer.count == 3:  # the next batch's rows half written, its count not: then SIGKILL
        for name in ("features", "masks", "labels", "names"):
            writer.file[name].resize(writer.count + 1, axis=0)
        writer.file["features"][-1] = 7.0
        writer.file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
FeatureWriter.append = append_then_die
fe.extract(fe.load_extractor(sys.argv[1]), sys.argv[2], sys.argv[3], batch=1, seq_len=int(sys.argv[4]),
           progress=False)
"""


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_equals_an_uninterrupted_run(dataset, run_dir, tmp_path):
    root, _ = dataset
    out, whole = tmp_path / "killed", tmp_path / "whole"
    child = subprocess.run([sys.executable, "-c", KILLED, run_dir, root, str(out), str(T)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.returncode == -9, child.stdout.decode()[-2000:]
    assert any(n.endswith(PARTIAL) for n in os.listdir(out))
    assert main(["features", run_dir, "--data", root, "--out", str(out), "--seq-len", str(T), "--batch", "1",
                 "-q"]) == 0
    fe.extract(fe.load_extractor(run_dir), root, whole, batch=1, seq_len=T, progress=False)
    assert sorted(os.listdir(out)) == sorted(os.listdir(whole))
    for name in os.listdir(whole):
        if name.endswith(".h5"):
            assert_same_file(out / name, whole / name)


PEAK = """
import json, sys
from fer_keras import feature_extraction as fe
def status(key):  # bytes
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024
extractor = fe.load_extractor(sys.argv[1])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Linux: the peak (VmHWM) starts again from the resident memory now
before = status("VmRSS:")
fe.extract(extractor, sys.argv[2], sys.argv[3], batch=4, seq_len=int(sys.argv[4]), progress=False)
print(json.dumps([before, status("VmHWM:")]))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Width 25,088 (a 28 px map of 32 filters after pooling): extracting 6x the videos (files
    6x as large) raises the peak resident memory during extraction by far less than the files grow."""
    steps, size = 25, 56
    keras.utils.set_random_seed(0)
    run = write_run_dir(tmp_path / "run", tiny_classifier(size, filters=32))
    peaks, sizes = [], []
    for per_subject in (1, 6):
        root = tmp_path / f"data{per_subject}"
        subjects = [f"M{100 + i:03d}" for i in range(12 * per_subject)] + ["M028"]   # M028: fold 4
        write_dataset(str(root), subjects, lambda k: steps, methods=(), size=size)
        out = tmp_path / f"out{per_subject}"
        child = subprocess.run([sys.executable, "-c", PEAK, run, str(root), str(out), str(steps)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        before, after = json.loads(child.stdout.decode().splitlines()[-1])
        peaks.append(after - before)
        sizes.append(sum(os.path.getsize(out / n) for n in os.listdir(out)))
    print(f"\nfiles {sizes[0] / 1e6:.0f} MB and {sizes[1] / 1e6:.0f} MB: peak resident memory +{peaks[0] / 1e6:.0f} MB "
          f"and +{peaks[1] / 1e6:.0f} MB over the loaded model")
    assert sizes[1] > 3 * sizes[0]
    assert peaks[1] - peaks[0] < 0.25 * (sizes[1] - sizes[0])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_reader_rate_at_the_thesis_width(tmp_path, dtype):
    """The figures of the README: feature_sequences over 128 videos x 100 frames x 25,088 features
    against cascade_lstm's train step at batch 32 (thesis 002: batch 32, T = 100)."""
    n, steps, dim = 128, 100, 25088
    rng = np.random.default_rng(0)
    path = tmp_path / f"fold-0-features-{dim}.h5"
    writer = FeatureWriter(path, steps, dim, BU4DFE, dtype)
    block = np.abs(rng.normal(size=(8, steps, dim))).astype(np.float32)
    for first in range(0, n, 8):
        writer.append(block, np.ones((8, steps)), np.eye(6)[(first + np.arange(8)) % 6],
                      [f"v{first + i}" for i in range(8)])
    writer.finish()
    read, step = _rates(path, PipelineConfig(seq_len=steps, batch_size=32, shuffle_buffer=32), dim, steps=2)
    cpu = os.cpu_count()
    print(f"\n{dtype} {n} x {steps} x {dim} ({os.path.getsize(path) / 1e9:.2f} GB): feature_sequences "
          f"{read:.0f} videos/s; cascade_lstm train step {step:.1f} videos/s ({cpu} CPUs)")
    assert read > 0 and step > 0


@pytest.mark.slow
def test_synthetic_bu4dfe_end_to_end(tmp_path):
    """`fer-keras synth bu4dfe` -> `prepare bu4dfe --augment` -> `features` from an experiment YAML
    (vggface_finetune at 32 px, its 160 px crops resized) -> a cascade trained on two fold files."""
    src, data, out = tmp_path / "src", tmp_path / "prepared", tmp_path / "features"
    assert main(["synth", "bu4dfe", str(src), "--subjects", "F001,F011,F028", "--min-frames", "40",
                 "--max-frames", "44", "--long-video", "240", "--no-broken"]) == 0
    assert main(["prepare", "bu4dfe", str(src), str(data), "--augment", "corrected", "--augment-methods", "flip",
                 "-q"]) == 0
    yaml_path = tmp_path / "fer2013.yaml"
    cfg.save(cfg.from_dict({"model": {"name": "vggface_finetune", "options": {"input_size": 32}}}), yaml_path)
    assert main(["features", str(yaml_path), "--data", str(data), "--out", str(out), "--augmentations", "all",
                 "--batch", "2", "-q"]) == 0
    assert sorted(os.listdir(out)) == ["features.json", "fold-0-features-512.h5", "fold-1-features-512.h5",
                                       "test-features-512.h5"]   # folds 2-4 have no subject here
    info = read_info(out / "fold-0-features-512.h5")
    assert (info.videos, info.steps, info.dim) == (12, 100, 512)   # F011's 6 videos and their flips
    with h5py.File(out / "test-features-512.h5", "r") as f:
        assert f["masks"][()].sum(axis=1).max() == 100   # the long video, cut to T = 100
    exp = tmp_path / "cascade.yaml"
    cfg.save(cfg.from_dict({
        "name": "cascade", "data": {"root": str(out), "format": "hdf5", "train_split": "fold-0-features-512",
                                    "val_split": "fold-1-features-512",
                                    "pipeline": {"seq_len": 100, "batch_size": 4, "shuffle_buffer": 8}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 512, "units": 8}},
        "training": {"epochs": 1, "verbose": 0}}), exp)
    assert main(["train", str(exp), "--run-dir", str(tmp_path / "run"), "--no-evaluate"]) == 0
