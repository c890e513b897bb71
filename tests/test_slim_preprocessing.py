"""TF-Slim's vgg / inception preprocessing geometry as a pipeline option (thesis 004, extract-004
§2.6): ``PipelineConfig.slim_preprocessing`` and ``fer_keras.data.augment``'s slim functions.

Evaluation geometry and one training draw are checked against OpenCV / NumPy written here; the
draws' ranges against slim's defaults; seeding through the real tf.data pipeline on a small
hand-written dataset of stills and one short video.
"""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from fer_keras import config
from fer_keras.data import augment as A
from fer_keras.data.pipeline import Augment, PipelineConfig, sequences
from fer_keras.data.schema import VideoRecord, serialize

from conftest import write_shards

RNG = np.random.default_rng(0)
S, OUT = 40, 24      # stored face side, model input side


def _image(h=S, w=S, t=1):
    return RNG.integers(0, 256, (t, h, w, 3)).astype(np.uint8)


def _resize(img, h, w):
    """OpenCV's bilinear resize on float pixels (half-pixel centres, as tf.image.resize)."""
    return cv2.resize(img.astype(np.float32), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)


def _seed(i):
    return tf.constant([7, i], tf.int64)


# --- evaluation geometry ---------------------------------------------------------------------

@pytest.mark.parametrize("h, w, out", [(S, S, OUT), (37, 37, 20), (30, 50, 24)])
def test_vgg_eval_is_shorter_side_resize_then_central_crop(h, w, out):
    x = _image(h, w)
    side = round(out * 256 / 224)                      # slim's 256 for a 224 output
    scale = side / min(h, w)
    nh, nw = int(np.rint(h * scale)), int(np.rint(w * scale))
    resized = _resize(x[0], nh, nw)
    top, left = (nh - out) // 2, (nw - out) // 2
    expected = resized[top:top + out, left:left + out]
    got = A.slim_eval(x, "vgg", out).numpy()[0]
    assert got.shape == (out, out, 3)
    np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.mark.parametrize("h, w, out", [(S, S, OUT), (37, 37, 20), (30, 50, 24)])
def test_inception_eval_is_central_fraction_then_resize(h, w, out):
    x = _image(h, w)
    sh, sw = int((h - h * 0.875) / 2), int((w - w * 0.875) / 2)    # tf.image.central_crop's start
    crop = x[0, sh:h - sh, sw:w - sw]
    expected = _resize(crop, out, out)
    np.testing.assert_allclose(A.slim_eval(x, "inception", out).numpy()[0], expected, atol=2e-3)


# --- training draws -------------------------------------------------------------------------

def test_draws_stay_in_slims_ranges_and_flip_half_the_time():
    n = 300
    vgg = [A.slim_draw("vgg", _seed(i), S, S, OUT) for i in range(n)]
    inc = [A.slim_draw("inception", _seed(i), S, S, OUT) for i in range(n)]
    lo, hi = round(OUT * 256 / 224), round(OUT * 512 / 224)          # 27, 55
    sides = np.array([int(d["side"]) for d in vgg])
    assert sides.min() >= lo and sides.max() <= hi and sides.min() <= lo + 3 and sides.max() >= hi - 3
    for d in vgg:
        assert 0 <= int(d["top"]) <= int(d["side"]) - OUT and 0 <= int(d["left"]) <= int(d["side"]) - OUT
    begin = np.array([d["begin"].numpy() for d in inc])
    extent = np.array([d["extent"].numpy() for d in inc])
    assert (begin >= 0).all() and (begin + extent <= S).all() and (extent >= 1).all()
    area = extent.prod(1) / S ** 2
    assert area.min() >= 0.05 - 0.01 and area.max() <= 1.0 and area.min() < 0.3 and area.max() > 0.7
    ratio = extent[:, 1] / extent[:, 0]                               # width / height, integer-rounded
    assert ratio.min() >= 0.75 * (1 - 2 / 12) and ratio.max() <= 1.33 * (1 + 2 / 12)
    brightness = np.array([float(d["brightness"]) for d in inc])
    saturation = np.array([float(d["saturation"]) for d in inc])
    assert np.abs(brightness).max() <= 32 / 255 and brightness.min() < 0 < brightness.max()
    assert saturation.min() >= 0.5 and saturation.max() <= 1.5
    for draws in (vgg, inc):
        flips = np.mean([bool(d["flip"]) for d in draws])
        assert 0.4 < flips < 0.6


def _saturated(rgb, factor):
    """HSV saturation x ``factor`` (clipped to 1), hue and value kept: each channel c becomes
    max - (max - c) * S' / S."""
    top, low = rgb.max(-1, keepdims=True), rgb.min(-1, keepdims=True)
    s = np.where(top > 0, (top - low) / np.maximum(top, 1e-12), 0)
    s_new = np.minimum(s * factor, 1.0)
    ratio = np.where(s > 0, s_new / np.maximum(s, 1e-12), 1.0)
    return top - (top - rgb) * ratio


def test_one_training_draw_equals_numpy_for_both_modes():
    x = _image(t=2)
    d = A.slim_draw("vgg", _seed(3), S, S, OUT)
    side, top, left, flip = (int(d["side"]), int(d["top"]), int(d["left"]), bool(d["flip"]))
    for t in range(2):
        expected = _resize(x[t], side, side)[top:top + OUT, left:left + OUT]
        expected = expected[:, ::-1] if flip else expected
        np.testing.assert_allclose(A.slim_apply(x, "vgg", d, OUT).numpy()[t], expected, atol=2e-3)

    d = A.slim_draw("inception", _seed(5), S, S, OUT)
    (y0, x0), (h, w) = d["begin"].numpy(), d["extent"].numpy()
    got = A.slim_apply(x, "inception", d, OUT).numpy()
    assert got.min() >= 0 and got.max() <= 255                       # colour distortion clips
    for t in range(2):
        expected = _resize(x[t, y0:y0 + h, x0:x0 + w], OUT, OUT)
        expected = expected[:, ::-1] if bool(d["flip"]) else expected
        expected = _saturated(expected / 255 + float(d["brightness"]), float(d["saturation"]))
        np.testing.assert_allclose(got[t], np.clip(expected, 0, 1) * 255, atol=2e-2)


def test_colour_distortion_keeps_values_in_range_on_extreme_images():
    for value in (0, 255):
        x = np.full((1, S, S, 3), value, np.uint8)
        x[0, :5, :5] = (255 - value, 0, 128)
        for i in range(20):
            y = A.slim_sequence(x, "inception", OUT, seed=_seed(i), training=True).numpy()
            assert y.min() >= 0 and y.max() <= 255


@pytest.mark.parametrize("kind", A.SLIM)
@pytest.mark.parametrize("h, w", [(17, 17), (S, S), (64, 64), (30, 50)])
def test_output_is_the_model_size_for_any_input_size(kind, h, w):
    x = _image(h, w, t=3)
    for training in (False, True):
        y = A.slim_sequence(x, kind, OUT, seed=_seed(1), training=training)
        assert tuple(y.shape) == (3, OUT, OUT, 3) and y.dtype == tf.float32
    assert A.slim_sequence(x, kind, None).shape == (3, min(h, w), min(h, w), 3)   # no size: the shorter side


# --- the option in the pipeline and the experiment file -------------------------------------

def write_stills(root, n=4, size=S, video_frames=0):
    """A prepared dataset by hand: ``n`` single-frame records (EmotioNet-like stills) in split
    ``train``, plus with ``video_frames`` one video of that many identical frames in ``video``."""
    records, truth = {"train": [], "video": []}, {}
    items = [("train", f"img{i}", _image(size, size)) for i in range(n)]
    if video_frames:
        items.append(("video", "clip", np.repeat(_image(size, size), video_frames, axis=0)))
    for split, vid, frames in items:
        truth[vid] = frames
        records[split].append(serialize(VideoRecord(
            video_id=vid, label=0, fps=25.0, face_size=size,
            frames=[cv2.imencode(".png", f[:, :, ::-1])[1].tobytes() for f in frames],
            frame_index=np.arange(len(frames)), audio_lld=np.zeros((len(frames), 0), np.float32),
            has_audio=False, dataset="bu4dfe")))
    manifest = {"schema_version": 2, "dataset": "bu4dfe", "classes": ["a", "b"],
                "options": {"face_size": size, "image_format": "png"},
                "audio": {"lld_dim": 0, "functionals_dim": 0}, "splits": {}, "videos": {}}
    return write_shards(root, manifest, records), truth


def _by_video(ds):
    out = {}
    for x, _, meta in ds:
        for vid, frames in zip(meta["video_id"].numpy(), x["image" if "image" in x else "frames"].numpy()):
            out[vid.decode()] = frames
    return out


@pytest.mark.parametrize("kind", A.SLIM)
def test_pipeline_draws_are_seeded_per_epoch_and_resume_the_same(tmp_path, kind):
    manifest, truth = write_stills(str(tmp_path))
    cfg = PipelineConfig(seq_len=1, inputs=("image",), image_size=OUT, normalize="none", batch_size=2,
                         slim_preprocessing=kind, seed=3)

    def run(epoch, epochs=1, **kw):
        return sequences(manifest, str(tmp_path), "train", cfg, training=True, with_meta=True,
                         epoch=epoch, epochs=epochs, **kw)

    first = _by_video(run(1))                                                  # a run resumed at epoch 1
    assert all(v.shape == (OUT, OUT, 3) for v in first.values()) and len(first) == 4
    both = list(run(0, 2))                                                     # the uninterrupted run
    epochs = [{vid.decode(): f for b in both[i:i + 2]
               for vid, f in zip(b[2]["video_id"].numpy(), b[0]["image"].numpy())} for i in (0, 2)]
    for vid in first:
        np.testing.assert_array_equal(epochs[1][vid], first[vid])             # same seed and epoch, same draw
    assert any(not np.allclose(first[v], epochs[0][v]) for v in first)       # another epoch draws anew

    evaluation = _by_video(sequences(manifest, str(tmp_path), "train", cfg, with_meta=True))
    for vid, frames in truth.items():
        np.testing.assert_allclose(evaluation[vid], A.slim_eval(frames, kind, OUT).numpy()[0], atol=1e-3)
    if kind == "vgg":
        cached = _by_video(sequences(manifest, str(tmp_path), "train", PipelineConfig(
            **{**cfg.__dict__, "cache": True}), training=True, with_meta=True, epoch=1))
        for vid in first:
            np.testing.assert_allclose(cached[vid], first[vid], atol=1e-3)   # the cache keeps the draw


def test_one_draw_per_sequence_on_video(tmp_path):
    manifest, _ = write_stills(str(tmp_path), n=0, video_frames=3)
    cfg = PipelineConfig(seq_len=4, image_size=OUT, normalize="none", batch_size=1,
                         slim_preprocessing="inception")
    for epoch in range(3):
        (x, _, meta), = list(sequences(manifest, str(tmp_path), "video", cfg, training=True, with_meta=True,
                                       epoch=epoch))
        frames = x["frames"].numpy()[0]
        assert frames.shape == (4, OUT, OUT, 3)
        for t in range(1, 4):                      # the same crop, flip and colour on every frame
            np.testing.assert_array_equal(frames[t], frames[0])


def test_bad_values_and_clashes_are_refused_by_name():
    with pytest.raises(ValueError, match=r"slim_preprocessing must be null or one of vgg, inception, got 'resnet'"):
        PipelineConfig(slim_preprocessing="resnet")
    with pytest.raises(ValueError, match=r"its own crop and flip when training: unset augment.crop, augment.flip"):
        PipelineConfig(slim_preprocessing="vgg", augment=Augment(flip=True, crop=0.1, brightness=0.1))
    with pytest.raises(ValueError, match=r"colour distortion .*unset augment.brightness, affine"):
        PipelineConfig(slim_preprocessing="inception", augment={"brightness": 0.1}, affine="thesis002")
    assert PipelineConfig(slim_preprocessing="vgg", augment={"brightness": 0.1}).augment.brightness == 0.1


def test_option_round_trips_through_an_experiment_file(tmp_path):
    raw = {"name": "au", "data": {"pipeline": {"seq_len": 1, "inputs": ["image"], "image_size": 224,
                                               "slim_preprocessing": "inception"}}}
    exp = config.from_dict(raw, "au.yaml")
    assert exp.data.pipeline.slim_preprocessing == "inception"
    config.save(exp, tmp_path / "config.yaml")
    back = config.load(tmp_path / "config.yaml")
    assert back.data.pipeline.slim_preprocessing == "inception" and config.to_dict(back) == config.to_dict(exp)
    bad = {"name": "au", "data": {"pipeline": {"slim_preprocessing": "vgg16"}}}
    with pytest.raises(config.ConfigError,
                       match=r"^au.yaml: data.pipeline: slim_preprocessing must be null or one of vgg, inception, "
                             r"got 'vgg16'$"):
        config.from_dict(bad, "au.yaml")
    clash = {"name": "au", "data": {"pipeline": {"slim_preprocessing": "vgg", "augment": {"flip": True}}}}
    with pytest.raises(config.ConfigError, match=r"data.pipeline: slim_preprocessing 'vgg' .*augment.flip"):
        config.from_dict(clash, "au.yaml")
