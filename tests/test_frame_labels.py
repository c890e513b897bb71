"""Per-frame valence/arousal and AU labels: schema, chunking with the frames, masks for the losses."""
import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from data_prep.store import PreparedStore
from fer_keras.data.pipeline import PipelineConfig, sequences
from fer_keras.data.schema import VideoRecord, dataset_from_manifest, parse, serialize
from fer_keras.losses import AU_UNKNOWN, CCCLoss, MaskedSigmoidCrossEntropy

CLASSES = ["Angry", "Happy", "Sad"]
LLD, FUNC, SIZE, AUS = 3, 2, 16, 4
LENGTHS = {"clip-a": 5, "clip-b": 8, "clip-c": 11}


def _record(video_id, n, label, va=True, au=True):
    """A video whose frame k carries k in its LLD row and in its labels, so alignment is checkable."""
    rng = np.random.default_rng(n)
    pos = np.arange(n, dtype=np.float32)
    frames = [cv2.imencode(".jpg", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))[1].tobytes()
              for _ in range(n)]
    lld = np.stack([pos, -pos, np.full(n, label)], 1)
    units = (pos[:, None] + np.arange(AUS)) % 2
    units[::3, 1] = AU_UNKNOWN
    return VideoRecord(video_id=video_id, label=label, fps=25.0, face_size=SIZE, frames=frames,
                       frame_index=np.arange(n) * 2, audio_lld=lld, audio_functionals=np.zeros(FUNC),
                       source_frames=2 * n, dataset="synthetic",
                       valence_arousal=np.stack([pos / 10, -pos / 10], 1) if va else None,
                       action_units=units.astype(np.float32) if au else None)


def _prepare(out, labels, records):
    header = {"dataset": "synthetic", "classes": CLASSES, "options": {"face_size": SIZE},
              "audio": {"lld_dim": LLD, "functionals_dim": FUNC}}
    if labels is not None:
        header["labels"] = labels
    store = PreparedStore(out, header, shard_size=2)
    for rec in records:
        store.add({"key": rec.video_id, "id": rec.video_id, "split": "train", "status": "ok",
                   "frames_kept": len(rec.frames)}, serialize(rec))
    return store.close()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("frame_labels"))
    records = [_record(v, n, i) for i, (v, n) in enumerate(LENGTHS.items())]
    return out, _prepare(out, {"va": True, "au_dim": AUS}, records)


def _cfg(**kw):
    return PipelineConfig(**{"seq_len": 4, "inputs": ("lld",), "batch_size": 3,
                             "targets": ("category", "va", "au"), **kw})


def test_schema_round_trip_and_old_parsers():
    rec = _record("clip-x", 6, 1)
    blob = serialize(rec)
    ds = tf.data.Dataset.from_tensors(blob)
    (got,) = ds.map(lambda b: parse(b, LLD, FUNC, SIZE, va=True, au_dim=AUS)).as_numpy_iterator()
    np.testing.assert_array_equal(got["va"], rec.valence_arousal)
    np.testing.assert_array_equal(got["au"], rec.action_units)
    (old,) = ds.map(lambda b: parse(b, LLD, FUNC, SIZE)).as_numpy_iterator()   # labels ignored
    assert "va" not in old and "au" not in old and old["frames"].shape == (6, SIZE, SIZE, 3)


def test_label_rows_must_match_the_frames():
    rec = _record("clip-short-va", 6, 0)
    rec.valence_arousal = rec.valence_arousal[:4]
    with pytest.raises(ValueError, match="clip-short-va: per-frame va labels have shape"):
        serialize(rec)
    rec = _record("clip-one-va", 6, 0)
    rec.valence_arousal = rec.valence_arousal[:, :1]
    with pytest.raises(ValueError, match=r"clip-one-va: .*expected \(frames, 2\)"):
        serialize(rec)


def test_records_without_the_labels_the_manifest_lists_fail_with_their_id(tmp_path):
    out = str(tmp_path)
    manifest = _prepare(out, {"va": True, "au_dim": AUS}, [_record("clip-no-va", 4, 0, va=False)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="clip-no-va"):
        list(dataset_from_manifest(manifest, out, "train"))


def test_per_frame_targets_follow_the_frames_in_every_sequence(labelled):
    out, manifest = labelled
    assert manifest["labels"] == {"va": True, "au_dim": AUS}
    per_video = {}
    ds = sequences(manifest, out, "train", _cfg(padding="zeros"), with_meta=True)
    for x, y, meta in ds.as_numpy_iterator():
        assert y["va"].shape[1:] == (4, 2) and y["au"].shape[1:] == (4, AUS)
        for i, vid in enumerate(meta["video_id"]):
            per_video.setdefault(vid.decode(), []).append(
                (meta["sequence"][i], x["mask"][i], x["lld"][i], y["va"][i], y["au"][i], y["category"][i]))
    assert {k: len(v) for k, v in per_video.items()} == {k: -(-n // 4) for k, n in LENGTHS.items()}
    for vid, chunks in per_video.items():
        rec = _record(vid, LENGTHS[vid], 0)
        for sequence, mask, lld, va, au, category in chunks:
            real = mask > 0
            pos = lld[real, 0].astype(int)
            np.testing.assert_array_equal(pos, np.arange(sequence * 4, sequence * 4 + real.sum()))
            np.testing.assert_allclose(va[real], rec.valence_arousal[pos])
            np.testing.assert_array_equal(au[real], rec.action_units[pos])
            assert not va[~real].any() and (au[~real] == AU_UNKNOWN).all()
            assert category.sum() == 1
        assert sum(c[1].sum() for c in chunks) == LENGTHS[vid]


def test_repeat_padding_repeats_va_and_never_au(labelled):
    out, manifest = labelled
    ds = sequences(manifest, out, "train", _cfg(padding="repeat"), with_meta=True)
    for x, y, _ in ds.as_numpy_iterator():
        for mask, va, au in zip(x["mask"], y["va"], y["au"]):
            valid = int(mask.sum())
            np.testing.assert_array_equal(va[valid:], np.repeat(va[valid - 1:valid], 4 - valid, 0))
            assert (au[valid:] == AU_UNKNOWN).all()


def test_sample_weights_carry_the_frame_mask(labelled):
    out, manifest = labelled
    for x, y, weight in sequences(manifest, out, "train", _cfg()).as_numpy_iterator():
        assert set(weight) == set(y) == {"category", "va", "au"}
        np.testing.assert_array_equal(weight["va"], x["mask"])
        np.testing.assert_array_equal(weight["au"], x["mask"])
        np.testing.assert_array_equal(weight["category"], np.ones(len(x["mask"])))
    x, y, weight = next(iter(sequences(manifest, out, "train", _cfg(targets=("va",)))))
    assert set(y) == set(weight) == {"va"}
    only_category = next(iter(sequences(manifest, out, "train", _cfg(targets=("category",)))))
    assert len(only_category) == 2 and set(only_category[1]) == {"category"}


def test_fit_hands_the_mask_to_each_per_frame_loss(labelled):
    out, manifest = labelled
    keras.utils.set_random_seed(0)  # the masked/unmasked gap below depends on the initial weights
    lld = keras.Input((4, LLD), name="lld")
    mask = keras.Input((4,), name="mask")
    h = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([lld, keras.layers.Reshape((4, 1))(mask)]))
    outputs = {"category": keras.layers.Dense(3, activation="softmax", name="category")(
                   keras.layers.GlobalAveragePooling1D()(h)),
               "va": keras.layers.Dense(2, name="va")(h),
               "au": keras.layers.Dense(AUS, activation="sigmoid", name="au")(h)}
    model = keras.Model({"lld": lld, "mask": mask}, outputs)
    model.compile("sgd", loss={"category": "categorical_crossentropy", "va": CCCLoss(),
                               "au": MaskedSigmoidCrossEntropy()})
    ds = sequences(manifest, out, "train", _cfg(batch_size=16))   # every sequence in one batch
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # steps=1: Keras 3.15 adds a zero to each per-output loss mean when a dataset of unknown
    # cardinality runs out (the total loss is right); one batch here, so one step
    got = model.evaluate(ds, verbose=0, return_dict=True, steps=1)
    (x, y, weight), = ds.as_numpy_iterator()
    pred = {k: v.numpy() for k, v in model(x).items()}
    # what evaluate reports is the loss on the real frames only
    expected_va = float(CCCLoss()(y["va"], pred["va"], sample_weight=weight["va"]))
    unmasked_va = float(CCCLoss()(y["va"], pred["va"]))
    assert got["va_loss"] == pytest.approx(expected_va, rel=1e-4)
    assert abs(expected_va - unmasked_va) > 1e-3
    expected_au = float(MaskedSigmoidCrossEntropy()(y["au"], pred["au"], sample_weight=weight["au"]))
    assert got["au_loss"] == pytest.approx(expected_au, rel=1e-4)


def test_targets_the_manifest_lacks_are_refused(tmp_path, labelled):
    out = str(tmp_path)
    old = _prepare(out, None, [_record("clip-old", 4, 0, va=False, au=False)])
    assert "labels" not in old
    with pytest.raises(ValueError, match=rf"{os.path.join(out, 'manifest.json')}: targets va, au need"):
        sequences(old, out, "train", _cfg())
    out_va, manifest_va = labelled
    va_only = {**manifest_va, "labels": {"va": True}}
    with pytest.raises(ValueError, match="targets au need per-frame labels"):
        sequences(va_only, out_va, "train", _cfg())
    (x, y), *_ = sequences(old, out, "train", _cfg(targets=("category",)))   # old manifests still load
    assert set(y) == {"category"}
    with pytest.raises(ValueError, match="targets must name some of category, va, au"):
        PipelineConfig(targets=("valence",))
