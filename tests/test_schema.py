"""The SequenceExample schema: what is written is what every pipeline parses back."""
import cv2
import numpy as np
import tensorflow as tf

from fer_keras.data.schema import VideoRecord, dataset_from_manifest, parse, serialize


def _record(rng, n=5, size=32, lld_dim=7, func_dim=4, fmt=".png"):
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    # cv2 writes BGR arrays; the preparation converts RGB to BGR first, and so does this test
    encoded = [cv2.imencode(fmt, np.ascontiguousarray(f[..., ::-1]))[1].tobytes() for f in frames]
    rec = VideoRecord(video_id="004514600", label=3, fps=25.0, face_size=size, frames=encoded,
                      frame_index=np.array([0, 2, 3, 7, 9][:n]), audio_lld=rng.normal(size=(n, lld_dim)),
                      audio_functionals=rng.normal(size=func_dim), has_audio=True, source_frames=10,
                      dataset="afew")
    return rec, frames


def _parse_all(blobs, **kw):
    ds = tf.data.Dataset.from_tensor_slices(blobs).map(lambda x: parse(x, **kw))
    return list(ds.as_numpy_iterator())


def test_round_trip_png_is_exact():
    rng = np.random.default_rng(0)
    rec, frames = _record(rng)
    (got,) = _parse_all([serialize(rec)], lld_dim=7, functionals_dim=4, face_size=32)
    np.testing.assert_array_equal(got["frames"], frames)
    np.testing.assert_array_equal(got["frame_index"], rec.frame_index)
    np.testing.assert_allclose(got["audio_lld"], rec.audio_lld.astype(np.float32))
    np.testing.assert_allclose(got["audio_functionals"], rec.audio_functionals.astype(np.float32))
    assert got["label"] == 3 and got["video_id"] == b"004514600" and got["num_frames"] == 5
    assert got["source_frames"] == 10 and got["has_audio"] == 1 and got["fps"] == 25.0


def test_round_trip_jpeg_keeps_the_encoded_bytes():
    rng = np.random.default_rng(1)
    rec, _ = _record(rng, fmt=".jpg")
    (got,) = _parse_all([serialize(rec)], lld_dim=7, functionals_dim=4, face_size=32, decode=False)
    assert list(got["frames"]) == rec.frames


def test_mismatched_lengths_are_refused():
    rng = np.random.default_rng(2)
    rec, _ = _record(rng)
    rec.audio_lld = rec.audio_lld[:3]
    try:
        serialize(rec)
    except ValueError as err:
        assert "004514600" in str(err)
    else:
        raise AssertionError("serialize accepted 5 frames with 3 LLD rows")


def test_prepared_shards_parse_with_manifest_dimensions(prepared_afew):
    out, manifest = prepared_afew
    rows = list(dataset_from_manifest(manifest, out, "val").as_numpy_iterator())
    assert len(rows) == manifest["splits"]["val"]["videos"]
    for row in rows:
        n = row["num_frames"]
        assert row["frames"].shape == (n, 112, 112, 3)
        assert row["audio_lld"].shape == (n, manifest["audio"]["lld_dim"])
        assert row["audio_functionals"].shape == (manifest["audio"]["functionals_dim"],)


def test_presentation_times_and_audio_mask_round_trip():
    rng = np.random.default_rng(3)
    rec, _ = _record(rng)
    rec.frame_time = np.array([0.0, 0.0667, 0.1, 0.2333, 0.3])  # a variable frame rate
    rec.audio_mask = np.array([0, 0, 1, 1, 1])  # audio starts late
    (got,) = _parse_all([serialize(rec)], lld_dim=7, functionals_dim=4, face_size=32, decode=False)
    np.testing.assert_allclose(got["frame_time"], rec.frame_time, atol=1e-6)
    np.testing.assert_array_equal(got["audio_mask"], rec.audio_mask)


def test_schema_1_records_still_parse():
    """A record written before schema 2 (no frame_time, no audio_mask) gets index / fps and has_audio."""
    rng = np.random.default_rng(4)
    rec, frames = _record(rng)
    example = tf.train.SequenceExample.FromString(serialize(rec))
    for name in ("frame_time", "audio_mask"):
        del example.feature_lists.feature_list[name]
    (got,) = _parse_all([example.SerializeToString()], lld_dim=7, functionals_dim=4, face_size=32)
    np.testing.assert_allclose(got["frame_time"], rec.frame_index / 25.0, atol=1e-6)
    np.testing.assert_array_equal(got["audio_mask"], [1] * 5)
    np.testing.assert_array_equal(got["frames"], frames)
