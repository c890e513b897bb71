"""Thesis 002 augmentation: the nine offline methods (faithful and corrected) against independent
NumPy/OpenCV computations, and the online ImageDataGenerator-style draw, one per sequence."""
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
import tensorflow as tf
from skimage import data

from data_prep.augment import METHODS, MODES, augment_video, check
from fer_keras.data.augment import PRESETS, Affine, apply, augment_sequence, draw, matrix, resolve
from fer_keras.data.pipeline import PipelineConfig, sequences
from test_frame_labels import _prepare, _record

IMAGE = cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
SMALL = cv2.resize(IMAGE, (48, 48), interpolation=cv2.INTER_AREA)
H, W = IMAGE.shape[:2]


def static_video(image=IMAGE, frames=3):
    return np.repeat(image[None], frames, axis=0)


def one(method, mode, image=IMAGE, seed=0):
    return augment_video([image], method, mode, seed)[0]


def saturate(values):
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# -- offline (data_prep.augment) ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_shape_and_is_the_same_on_every_frame(method, mode):
    out = augment_video(static_video(SMALL), method, mode, seed=4)
    assert len(out) == 3 and all(f.shape == SMALL.shape and f.dtype == np.uint8 for f in out)
    assert not np.array_equal(out[0], SMALL)
    assert np.array_equal(augment_video(list(static_video(SMALL)), method, mode, seed=4), out)
    if (method, mode) != ("salt_and_pepper", "faithful"):  # the thesis's noise is redrawn per frame
        assert all(np.array_equal(f, out[0]) for f in out)


@pytest.mark.parametrize("mode", MODES)
def test_flip_blur_and_rotations(mode):
    assert np.array_equal(one("flip", mode), IMAGE[:, ::-1])
    blurred = one("gaussian_blur", mode)
    assert np.array_equal(blurred, cv2.GaussianBlur(IMAGE, (3, 3), 0))
    # OpenCV's 3x3 kernel for sigma 0 is [1, 2, 1] / 4 per axis, border reflect-101
    padded = np.pad(IMAGE.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    ref = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    assert np.abs(blurred - ref).max() <= 1
    for method, angle in (("rotate_left", 8), ("rotate_right", -8)):
        rotation = cv2.getRotationMatrix2D((W // 2, H // 2), angle, 1.0)
        assert np.array_equal(one(method, mode), cv2.warpAffine(IMAGE, rotation, (W, H)))
    dot = np.zeros_like(IMAGE)
    dot[H // 2, W // 2 + 40] = 255  # right of the centre: counter-clockwise moves it up
    for method, up in (("rotate_left", True), ("rotate_right", False)):
        row = np.argwhere(one(method, mode, dot)[..., 0] > 0)[:, 0].mean()
        assert (row < H // 2 - 3) if up else (row > H // 2 + 3)


def test_faithful_intensity_is_what_the_thesis_code_computes():
    x = IMAGE.astype(np.float64)
    assert np.array_equal(one("brightness_higher", "faithful"), saturate(x + 50))
    lower = one("brightness_lower", "faithful")
    assert np.array_equal(lower, saturate(x + 20)) and lower.mean() > IMAGE.mean()
    assert np.array_equal(one("contrast_higher", "faithful"), saturate(2 * x))
    lower = one("contrast_lower", "faithful")
    assert np.array_equal(lower, saturate(np.abs(1.7 * x + 50)))
    assert lower.mean() > IMAGE.mean() and lower.std() > IMAGE.std()


def test_corrected_intensity_does_what_the_names_say():
    x = IMAGE.astype(np.float64)
    assert np.array_equal(one("brightness_higher", "corrected"), saturate(x + 50))
    lower = one("brightness_lower", "corrected")
    assert np.array_equal(lower, saturate(x - 50)) and lower.mean() < IMAGE.mean()
    higher, lower = one("contrast_higher", "corrected"), one("contrast_lower", "corrected")
    assert np.array_equal(higher, saturate((x - 128) * 2 + 128))
    assert np.array_equal(lower, saturate((x - 128) * 0.5 + 128))
    assert higher.std() > IMAGE.std() > lower.std()


def test_faithful_salt_and_pepper_is_per_channel_redrawn_and_misses_the_last_row_and_column():
    image = np.clip(IMAGE, 1, 254)  # every salt or pepper pixel is then a change
    first, second = augment_video(static_video(image, 2), "salt_and_pepper", "faithful", seed=1)
    changed = [f != image for f in (first, second)]
    assert not np.array_equal(changed[0], changed[1])
    per_channel = changed[0].reshape(-1, 3).sum(0) / (H * W)
    assert np.all((per_channel > 0.009) & (per_channel <= 0.01))  # ceil(0.5%) each, few collisions
    assert not changed[0][-1].any() and not changed[0][:, -1].any()
    assert set(np.unique(first[changed[0]])) == {0, 255}
    assert not np.array_equal(changed[0][..., 0], changed[0][..., 1])  # coloured noise


def test_corrected_salt_and_pepper_is_grey_fixed_per_video_and_covers_the_whole_image():
    image = np.clip(IMAGE, 1, 254)
    count = math.ceil(0.01 * H * W)
    edges = 0
    for seed in range(5):
        out = augment_video(static_video(image, 3), "salt_and_pepper", "corrected", seed=seed)
        noisy = (out[0] != image).any(-1)
        assert all(np.array_equal((f != image).any(-1), noisy) for f in out)
        assert noisy.sum() == count
        values = out[0][noisy]
        assert np.all(values == values[:, :1]) and set(np.unique(values)) == {0, 255}
        assert (values[:, 0] == 255).sum() == (count + 1) // 2
        edges += noisy[-1].sum() + noisy[:, -1].sum()
    assert edges > 0


def test_bad_names_and_frames_are_rejected():
    with pytest.raises(ValueError, match="known: flip, gaussian_blur"):
        check("blur", "faithful")
    with pytest.raises(ValueError, match="known: faithful, corrected"):
        check("flip", "fixed")
    with pytest.raises(ValueError, match="unknown augmentation method 'sharpen'"):
        augment_video([IMAGE], "sharpen")
    with pytest.raises(ValueError, match="RGB uint8"):
        augment_video([IMAGE.astype(np.float32)], "flip")
    assert augment_video([], "flip") == []


# -- online (fer_keras.data.augment) -----------------------------------------------------------

def seed(i):
    return tf.constant([i, 11], tf.int64)


def test_one_draw_per_sequence_and_seeds_differ():
    frames = tf.constant(static_video(SMALL, 5), tf.float32)
    outs = []
    for name in PRESETS:
        for i in range(4):
            out = augment_sequence(frames, PRESETS[name], seed(i)).numpy()
            assert out.shape == (5, 48, 48, 3) and out.dtype == np.float32
            assert np.array_equal(out, np.repeat(out[:1], 5, axis=0))
            outs.append(out[0])
    assert all(not np.array_equal(a, b) for k, a in enumerate(outs) for b in outs[k + 1:])
    a, b = (draw(PRESETS["thesis002"], seed(i), 48, 48) for i in (0, 1))
    assert not np.allclose(a["transform"], b["transform"])
    again = draw(PRESETS["thesis002"], seed(0), 48, 48)
    assert all(np.array_equal(a[k], again[k]) for k in ("transform", "flip", "brightness"))


def test_rotation_matches_opencv():
    image = IMAGE.astype(np.float32)
    out = apply(image[None], {"transform": matrix(H, W, theta=7.0)}, "constant").numpy()[0]
    ref = cv2.warpAffine(image, cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), 7.0, 1.0), (W, H))
    diff = np.abs(out - ref)[16:-16, 16:-16]  # OpenCV interpolates in 1/32 pixel steps
    assert diff.mean() < 0.5 and diff.max() < 8


def test_composition_matches_image_data_generator():
    legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
    image = SMALL.astype(np.float32)
    params = dict(theta=-9.0, tx=4.0, ty=-5.0, shear=8.0, zx=0.93, zy=1.08)
    out = apply(image[None], {"transform": matrix(48, 48, **params)}, "nearest").numpy()[0]
    ref = legacy.apply_affine_transform(image, row_axis=0, col_axis=1, channel_axis=2,
                                        fill_mode="nearest", order=1, **params)
    np.testing.assert_allclose(out, ref, atol=0.01)


def test_flip_and_brightness():
    frames = tf.constant(static_video(SMALL, 2), tf.float32)
    flips = set()
    for i in range(8):
        params = draw(Affine(horizontal_flip=True, brightness=(0.5, 0.8)), seed(i), 48, 48)
        assert set(params) == {"flip", "brightness"} and 0.5 <= params["brightness"] <= 0.8
        out = apply(frames, params).numpy()
        source = SMALL[:, ::-1] if params["flip"] else SMALL
        expected = np.repeat(source[None] * params["brightness"].numpy(), 2, axis=0)
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        flips.add(bool(params["flip"]))
    assert flips == {True, False}
    bright = apply(frames, {"brightness": tf.constant(1.5)}).numpy()
    np.testing.assert_allclose(bright, np.clip(frames.numpy() * 1.5, 0, 255))


def test_fill_nearest_leaves_no_black_border():
    frames = tf.constant(np.clip(static_video(SMALL, 2), 60, 255), tf.float32)
    wide = Affine(rotation=30, zoom=0.3, width_shift=0.2, height_shift=0.2)
    for i in range(4):
        assert augment_sequence(frames, wide, seed(i)).numpy().min() >= 60
    assert augment_sequence(frames, replace(wide, fill_mode="constant"), seed(0)).numpy().min() == 0


def test_affine_options_are_validated():
    assert resolve("thesis002") == PRESETS["thesis002"] and resolve("thesis002") is not PRESETS["thesis002"]
    assert resolve({"rotation": 5, "brightness": [0.5, 1.0]}) == Affine(rotation=5, brightness=(0.5, 1.0))
    assert resolve(None) is None
    assert PipelineConfig(affine="thesis002_simple").affine == PRESETS["thesis002_simple"]
    with pytest.raises(ValueError, match="presets: thesis002, thesis002_simple"):
        PipelineConfig(affine="thesis003")
    with pytest.raises(ValueError, match="unknown affine key.*rotation_range"):
        resolve({"rotation_range": 10})
    for bad in (dict(rotation=-1), dict(zoom=1.0), dict(width_shift="0.1"), dict(shear=True),
                dict(brightness=(1.5, 0.4)), dict(brightness=(-0.1, 1)), dict(brightness=0.5),
                dict(fill_mode="mirror"), dict(horizontal_flip=1)):
        with pytest.raises(ValueError, match=f"affine {next(iter(bad))}"):
            Affine(**bad)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("augment_prepared"))
    records = [_record(f"clip-{i}", n, i % 3, va=False, au=False) for i, n in enumerate((5, 9, 12))]
    return out, _prepare(out, None, records)


def batches(ds):
    return [(x["frames"].numpy(), x["mask"].numpy(), y["category"].numpy()) for x, y in ds]


def test_pipeline_with_the_thesis_preset(tiny):
    """Deterministic for a seed, the same with the cache, a real change, and resizing still works."""
    out, manifest = tiny
    cfg = PipelineConfig(seq_len=4, batch_size=2, seed=3, affine="thesis002")
    a = batches(sequences(manifest, out, "train", cfg, training=True))
    b = batches(sequences(manifest, out, "train", cfg, training=True))
    cached = batches(sequences(manifest, out, "train", replace(cfg, cache=True), training=True))
    plain = batches(sequences(manifest, out, "train", replace(cfg, affine=None), training=True))
    assert sum(len(m) for _, m, _ in a) == 2 + 3 + 3
    for (fa, _, ya), (fb, _, yb), (fc, _, _), (fp, _, _) in zip(a, b, cached, plain):
        assert fa.shape[1:] == (4, 16, 16, 3) and fa.dtype == np.float32
        assert 0 <= fa.min() and fa.max() <= 1
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(fa, fc)
        np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(fa, fp)
    resized = replace(cfg, image_size=24, padding="zeros")
    for frames, mask, _ in batches(sequences(manifest, out, "train", resized, training=True)):
        assert frames.shape[1:] == (4, 24, 24, 3) and np.all(frames[mask == 0] == 0)
