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
