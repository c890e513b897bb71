"""Online, sequence-consistent augmentation with Keras ImageDataGenerator's settings (thesis 002
§2.5(a) FER2013 fine-tuning and §2.5(c) C3D / ConvLSTM, where the thesis drew one random
transform per video and applied it to every frame).

One stateless draw per sequence (``draw``) gives the parameters; ``apply`` puts them on all T
frames. As ImageDataGenerator's ``apply_affine_transform`` does, rotation, shift, shear and zoom
are composed into one matrix (rotation @ shift @ shear @ zoom, output pixel -> input pixel, about
the exact image centre) so each frame is interpolated once (bilinear); then the horizontal flip;
then brightness multiplies the image by its factor (ImageDataGenerator uses PIL's
``ImageEnhance.Brightness``, a multiplication) and clips to [0, 255], without PIL's rounding to
uint8. Shifts are fractions of the side, shear and rotation are in degrees, each zoom axis is
drawn in [1 - zoom, 1 + zoom] independently. Width shift and zoom x act along the columns, as the
names say; Keras 3's legacy generator applies ``height_shift_range * rows`` along x after its x/y
swap, which is the same draw for square images with equal shift ranges (the thesis's).

TF-Slim's preprocessing geometry (thesis 004, extract-004 §2.6: ``train_image_classifier.py``'s
implicit ``vgg_preprocessing`` / ``inception_preprocessing``) is here too, as ``slim_draw`` +
``slim_apply`` (training) and ``slim_eval``; the value scaling that follows it in slim is the
pipeline's ``normalize`` (``slim_vgg``, ``tf``). See :func:`slim_apply` for what each does.
"""
import math
from dataclasses import dataclass, fields, replace

import tensorflow as tf

FILL_MODES = ("nearest", "constant", "reflect", "wrap")  # constant fills with 0
# exclusive upper bound of each range field
LIMITS = {"rotation": 180.0, "zoom": 1.0, "width_shift": 1.0, "height_shift": 1.0, "shear": 90.0}


@dataclass
class Affine:
    """ImageDataGenerator-style ranges, drawn once per sequence."""
    rotation: float = 0.0        # degrees either way
    zoom: float = 0.0            # zoom factor of each axis in [1 - zoom, 1 + zoom]
    width_shift: float = 0.0     # fraction of the width either way
    height_shift: float = 0.0    # fraction of the height either way
    shear: float = 0.0           # degrees either way
    horizontal_flip: bool = False
    brightness: tuple | None = None  # factor range (lo, hi)
    fill_mode: str = "nearest"

    def __post_init__(self):
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < limit:
                raise ValueError(f"affine {name} must be a number in [0, {limit:g}), got {value!r}")
        if not isinstance(self.horizontal_flip, bool):
            raise ValueError(f"affine horizontal_flip must be true or false, got {self.horizontal_flip!r}")
        if self.brightness is not None:
            pair = tuple(self.brightness) if isinstance(self.brightness, (list, tuple)) else ()
            if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair)
                    or not 0 <= pair[0] <= pair[1]):
                raise ValueError(f"affine brightness must be a [lo, hi] pair with 0 <= lo <= hi, "
                                 f"got {self.brightness!r}")
            self.brightness = tuple(float(v) for v in pair)
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"affine fill_mode must be one of {', '.join(FILL_MODES)}, "
                             f"got {self.fill_mode!r}")

    @property
    def geometric(self) -> bool:
        return any(getattr(self, name) for name in LIMITS)


PRESETS = {
    "thesis002": Affine(10, 0.1, 0.1, 0.1, 0.15, True, (0.4, 1.5)),
    "thesis002_simple": Affine(width_shift=0.1, height_shift=0.1, horizontal_flip=True,
                               brightness=(0.4, 1.5)),
}


def resolve(value) -> Affine | None:
    """The Affine a config value names: None, an Affine, a preset name or a mapping of fields."""
    if value is None or isinstance(value, Affine):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"unknown affine preset {value!r}; presets: {', '.join(PRESETS)}")
        return replace(PRESETS[value])  # a copy: presets stay as defined
    if isinstance(value, dict):
        known = [f.name for f in fields(Affine)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown affine key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return Affine(**value)
    raise ValueError(f"affine must be a preset name ({', '.join(PRESETS)}), a mapping or null, "
                     f"got {value!r}")


def matrix(height, width, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0):
    """The (8,) float32 projective transform (TF's: output pixel -> input pixel, x = column) of
    rotation ``theta`` @ shift (tx, ty) @ shear @ zoom (zx, zy) about the image centre, in degrees
    and pixels, ImageDataGenerator's composition."""
    theta, tx, ty, shear, zx, zy = (tf.cast(v, tf.float32) for v in (theta, tx, ty, shear, zx, zy))
    cx, cy = (tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2
    theta, shear = theta * (math.pi / 180), shear * (math.pi / 180)
    one, zero = tf.ones([]), tf.zeros([])

    def m3(*entries):
        return tf.reshape(tf.stack(entries), (3, 3))

    steps = [
        m3(one, zero, cx, zero, one, cy, zero, zero, one),
        m3(tf.cos(theta), -tf.sin(theta), zero, tf.sin(theta), tf.cos(theta), zero, zero, zero, one),
        m3(one, zero, tx, zero, one, ty, zero, zero, one),
        m3(one, -tf.sin(shear), zero, zero, tf.cos(shear), zero, zero, zero, one),
        m3(zx, zero, zero, zero, zy, zero, zero, zero, one),
        m3(one, zero, -cx, zero, one, -cy, zero, zero, one),
    ]
    total = steps[0]
    for step in steps[1:]:
        total = total @ step
    return tf.reshape(total, [9])[:8]


def draw(affine: Affine, seed, height, width) -> dict:
    """One sequence's parameters from a shape-[2] integer ``seed``: ``transform`` (8,) when the
    affine has a geometric range, ``flip`` (bool) with horizontal_flip, ``brightness`` (factor)
    with a brightness range."""
    u = tf.random.stateless_uniform([8], seed)
    sym = 2.0 * u - 1.0  # in [-1, 1)
    params = {}
    if affine.geometric:
        params["transform"] = matrix(
            height, width,
            theta=affine.rotation * sym[0],
            tx=affine.width_shift * tf.cast(width, tf.float32) * sym[1],
            ty=affine.height_shift * tf.cast(height, tf.float32) * sym[2],
            shear=affine.shear * sym[3],
            zx=1.0 + affine.zoom * sym[4],
            zy=1.0 + affine.zoom * sym[5],
        )
    if affine.horizontal_flip:
        params["flip"] = u[6] < 0.5
    if affine.brightness is not None:
        lo, hi = affine.brightness
        params["brightness"] = lo + (hi - lo) * u[7]
    return params


def apply(frames, params: dict, fill_mode: str = "nearest"):
    """Apply one draw to all frames (T, H, W, C) in [0, 255] -> float32 of the same shape."""
    frames = tf.cast(frames, tf.float32)
    if "transform" in params:
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=frames, transforms=params["transform"][None], output_shape=tf.shape(frames)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode.upper())
        frames = tf.ensure_shape(out, frames.shape)
    if "flip" in params:
        frames = tf.cond(params["flip"], lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    if "brightness" in params:
        frames = tf.clip_by_value(frames * params["brightness"], 0.0, 255.0)
    return frames


def augment_sequence(frames, affine: Affine, seed):
    """One random draw of ``affine`` applied to every frame of a sequence (T, H, W, C)."""
    shape = tf.shape(frames)
    return apply(frames, draw(affine, seed, shape[1], shape[2]), affine.fill_mode)


# --- TF-Slim vgg_preprocessing / inception_preprocessing geometry -----------------------------

SLIM = ("vgg", "inception")
# vgg_preprocessing's sides for its 224 output, as ratios of the output size: training resizes the
# shorter side to an integer drawn in [256, 512], evaluation to 256
SLIM_VGG_TRAIN_SIDES = (256 / 224, 512 / 224)
SLIM_VGG_EVAL_SIDE = 256 / 224
# inception_preprocessing: distorted_bounding_box_crop's defaults (the whole image as the box) and
# preprocess_for_eval's central_fraction
SLIM_INCEPTION_BOX = {"min_object_covered": 0.1, "aspect_ratio_range": (0.75, 1.33),
                      "area_range": (0.05, 1.0), "max_attempts": 100}
SLIM_INCEPTION_CENTRAL = 0.875
# distort_color in slim's fast_mode (preprocess_image's default, which train_image_classifier keeps):
# ordering 0 only, brightness then saturation, then a clip to [0, 1]
SLIM_BRIGHTNESS = 32 / 255
SLIM_SATURATION = (0.5, 1.5)


def check_slim(value, key="slim_preprocessing"):
    """``value`` if it is None or one of :data:`SLIM`, else a ValueError naming ``key``."""
    if value is not None and value not in SLIM:
        raise ValueError(f"{key} must be null or one of {', '.join(SLIM)}, got {value!r}")
    return value


def _slim_size(frames, size):
    """The output side: ``size``, or without one the frames' shorter side (a tensor)."""
    if size:
        return tf.constant(int(size), tf.int32)
    return tf.reduce_min(tf.shape(frames)[1:3])


def _scaled(size, ratio):
    return tf.cast(tf.math.round(tf.cast(size, tf.float32) * ratio), tf.int32)


def slim_draw(kind, seed, height, width, size):
    """One sequence's draw of slim's training preprocessing ``kind`` from a shape-[2] ``seed``, for
    frames ``height`` x ``width`` and output side ``size`` (int or scalar tensor).

    ``vgg``: ``side`` (the shorter side after resizing, an integer in [round(size * 256 / 224),
    round(size * 512 / 224)]), ``top``/``left`` (the size x size crop's offsets in the resized
    frame, each in [0, resized - size]) and ``flip``. ``inception``: ``begin`` ([top, left]) and
    ``extent`` ([height, width]) of ``tf.image.stateless_sample_distorted_bounding_box`` with
    slim's defaults (:data:`SLIM_INCEPTION_BOX`, the whole frame as the box), ``flip``,
    ``brightness`` (a delta in [0, 1] units, within +-32/255) and ``saturation`` (a factor in
    [0.5, 1.5])."""
    check_slim(kind)
    seeds = [tf.random.experimental.stateless_fold_in(seed, k) for k in range(5)]
    params = {"flip": tf.random.stateless_uniform([], seeds[0]) < 0.5}
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    if kind == "vgg":
        lo, hi = (_scaled(size, r) for r in SLIM_VGG_TRAIN_SIDES)
        side = tf.random.stateless_uniform([], seeds[1], lo, hi + 1, dtype=tf.int32)
        new_h, new_w = _shorter_side(height, width, side)
        params.update(side=side,
                      top=tf.random.stateless_uniform([], seeds[2], 0, new_h - size + 1, dtype=tf.int32),
                      left=tf.random.stateless_uniform([], seeds[3], 0, new_w - size + 1, dtype=tf.int32))
    else:
        box = SLIM_INCEPTION_BOX
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([height, width, 3]), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seeds[1],
            min_object_covered=box["min_object_covered"], aspect_ratio_range=box["aspect_ratio_range"],
            area_range=box["area_range"], max_attempts=box["max_attempts"], use_image_if_no_bounding_boxes=True)
        params.update(begin=begin[:2], extent=extent[:2],
                      brightness=tf.random.stateless_uniform([], seeds[2], -SLIM_BRIGHTNESS, SLIM_BRIGHTNESS),
                      saturation=tf.random.stateless_uniform([], seeds[3], *SLIM_SATURATION))
    return params


def _shorter_side(height, width, side):
    """vgg_preprocessing's aspect-preserving size: the shorter side becomes ``side``, the other
    ``rint(other * scale)``."""
    scale = tf.cast(side, tf.float32) / tf.cast(tf.minimum(height, width), tf.float32)
    return (tf.cast(tf.math.rint(tf.cast(height, tf.float32) * scale), tf.int32),
            tf.cast(tf.math.rint(tf.cast(width, tf.float32) * scale), tf.int32))


def _resize(frames, height, width):
    return tf.image.resize(frames, tf.stack([height, width]), method="bilinear")


def _fixed(frames, size):
    return tf.ensure_shape(frames, [None, size, size, frames.shape[-1]]) if size else frames


def slim_apply(frames, kind, params, size=None):
    """Slim's training preprocessing ``kind`` with one draw (:func:`slim_draw`) on every frame
    (T, H, W, 3) in [0, 255] -> float32 (T, size, size, 3) in [0, 255]; ``size`` None keeps the
    frames' shorter side.

    ``vgg`` (vgg_preprocessing.preprocess_for_train): the shorter side resized to ``side``
    keeping the aspect, a size x size crop at (top, left), the flip. ``inception``
    (inception_preprocessing.preprocess_for_train, fast mode): the sampled box cropped and
    resized to size x size, the flip, then distort_color's brightness delta, saturation factor
    and clip to [0, 1] (on values / 255). Resizing is bilinear with half-pixel centres
    (``tf.image.resize``, OpenCV's INTER_LINEAR); TF1's ``resize_bilinear`` that slim called
    sampled without them, a shift below one source pixel.
    """
    frames = tf.cast(frames, tf.float32)
    shape = tf.shape(frames)
    out = _slim_size(frames, size)
    if kind == "vgg":
        new_h, new_w = _shorter_side(shape[1], shape[2], params["side"])
        frames = _resize(frames, new_h, new_w)
        frames = frames[:, params["top"]:params["top"] + out, params["left"]:params["left"] + out]
    else:
        (top, left), (h, w) = tf.unstack(params["begin"]), tf.unstack(params["extent"])
        frames = _resize(frames[:, top:top + h, left:left + w], out, out)
    frames = tf.cond(params["flip"], lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    if kind == "inception":
        unit = frames / 255.0 + params["brightness"]
        unit = tf.image.adjust_saturation(unit, params["saturation"])
        frames = tf.clip_by_value(unit, 0.0, 1.0) * 255.0
    return _fixed(frames, size)


def slim_eval(frames, kind, size=None):
    """Slim's evaluation preprocessing ``kind`` on frames (T, H, W, 3) -> float32 (T, size, size, 3).

    ``vgg`` (preprocess_for_eval): the shorter side resized to round(size * 256 / 224) keeping
    the aspect, then the central size x size crop (offsets ``(resized - size) // 2``).
    ``inception``: ``tf.image.central_crop`` of fraction 0.875 (the crop starts at
    ``int((side - side * 0.875) / 2)`` and keeps ``side - 2 * start``), resized to size x size.
    """
    check_slim(kind)
    frames = tf.cast(frames, tf.float32)
    shape = tf.shape(frames)
    out = _slim_size(frames, size)
    if kind == "vgg":
        new_h, new_w = _shorter_side(shape[1], shape[2], _scaled(out, SLIM_VGG_EVAL_SIDE))
        frames = _resize(frames, new_h, new_w)
        top, left = (new_h - out) // 2, (new_w - out) // 2
        frames = frames[:, top:top + out, left:left + out]
    else:
        sides = tf.cast(shape[1:3], tf.float32)
        start = tf.cast((sides - sides * SLIM_INCEPTION_CENTRAL) / 2, tf.int32)
        extent = shape[1:3] - 2 * start
        frames = _resize(frames[:, start[0]:start[0] + extent[0], start[1]:start[1] + extent[1]], out, out)
    return _fixed(frames, size)


def slim_sequence(frames, kind, size=None, *, seed=None, training=False):
    """Slim's preprocessing ``kind`` on a sequence (T, H, W, 3): one training draw from ``seed``
    for all frames when ``training``, else the evaluation geometry."""
    if not training:
        return slim_eval(frames, kind, size)
    shape = tf.shape(frames)
    return slim_apply(frames, kind, slim_draw(kind, seed, shape[1], shape[2], _slim_size(frames, size)), size)
