"""Offline augmentation of thesis 002 (§2.5(b)): one augmented copy of a whole video per method,
the same transform on every frame (the cascades' features are extracted once from these copies).

Frames are RGB uint8 (H, W, 3). The thesis's code ran on OpenCV's BGR images; every method here
treats the three channels alike, so the channel order changes nothing (the faithful noise draws
each channel independently with the same amount, so only which realisation lands on which
channel differs, not its distribution).

Two modes:

``faithful``: what the thesis's code does.
  - flip ``cv2.flip(img, 1)``; gaussian_blur ``cv2.GaussianBlur(img, (3, 3), 0)``;
  - brightness/contrast ``cv2.convertScaleAbs`` = saturate(|alpha * x + beta|) with
    (1, 50), (1, 20), (2, 0), (1.7, 50): so ``brightness_lower`` brightens by 20 and
    ``contrast_lower`` raises contrast *and* brightness; ``contrast_higher`` doubles every value
    (a stretch about black, so it brightens too);
  - rotate_left / rotate_right ``imutils.rotate(img, +8 / -8)``: rotation about (w // 2, h // 2),
    counter-clockwise positive, scale 1, same size, black border;
  - salt_and_pepper: the thesis's function, per channel ceil(0.01 * H * W * 0.5) salt (255) then
    as many pepper (0) pixels at coordinates ``randint(0, dim - 1)``, so the last row and column
    are never hit and the noise is coloured (channels independent); ``out[coords]`` is read as
    ``out[tuple(coords)]`` (the list form fails on current NumPy). The code calls it once per
    frame, so the noise is redrawn on every frame: the one method not constant over a video.

``corrected``: what the names say.
  - brightness_higher / brightness_lower: +50 / -50, saturating;
  - contrast_higher / contrast_lower: the deviation from mid-grey 128 scaled by 2.0 / 0.5,
    saturating (rounded to nearest, ties to even, as OpenCV rounds);
  - flip, blur and rotations as ``faithful``;
  - salt_and_pepper: grey-level impulse noise, ceil(1 %) of the pixel positions (drawn over the
    whole image, last row and column included, without repeats; half white, half black) set in
    all channels together, the positions drawn once per video and used on every frame.
"""
import math

import cv2
import numpy as np

METHODS = ("flip", "gaussian_blur", "brightness_higher", "brightness_lower", "contrast_higher",
           "contrast_lower", "rotate_left", "rotate_right", "salt_and_pepper")
MODES = ("faithful", "corrected")
ANGLE = 8.0    # degrees of rotate_left (counter-clockwise) and rotate_right
NOISE = 0.01   # fraction of pixels hit by salt_and_pepper (per channel in faithful mode)


def _about_grey(factor):
    """(alpha, beta) of saturate(alpha * x + beta) scaling the deviation from 128 by ``factor``."""
    return factor, 128.0 * (1.0 - factor)


# (alpha, beta) of the intensity methods: the thesis's convertScaleAbs arguments (with |.|), and
# the saturating linear maps the names promise.
LINEAR = {
    "faithful": {"brightness_higher": (1, 50), "brightness_lower": (1, 20),
                 "contrast_higher": (2, 0), "contrast_lower": (1.7, 50)},
    "corrected": {"brightness_higher": (1, 50), "brightness_lower": (1, -50),
                  "contrast_higher": _about_grey(2.0), "contrast_lower": _about_grey(0.5)},
}


def check(method, mode="faithful"):
    """Raise ValueError for an unknown method or mode, so callers reject bad options up front."""
    if method not in METHODS:
        raise ValueError(f"unknown augmentation method {method!r}; known: {', '.join(METHODS)}")
    if mode not in MODES:
        raise ValueError(f"unknown augmentation mode {mode!r}; known: {', '.join(MODES)}")


def _faithful_noise(frame, rng):
    """The thesis's salt_and_pepper(frame, 0.01), one call (one frame)."""
    out = frame.copy()
    height, width = frame.shape[:2]
    count = math.ceil(NOISE * (height * width) * 0.5)  # the thesis's order of operations
    for channel in range(frame.shape[2]):
        for value in (255, 0):  # salt, then pepper (which may overwrite salt)
            coords = (rng.integers(0, height - 1, count), rng.integers(0, width - 1, count))
            out[..., channel][coords] = value
    return out


def _impulse_noise(rng, height, width):
    """A frame -> frame function setting one fixed draw of grey-level impulse noise."""
    count = math.ceil(NOISE * height * width)
    rows, cols = np.unravel_index(rng.choice(height * width, count, replace=False), (height, width))
    values = np.where(np.arange(count) < (count + 1) // 2, 255, 0).astype(np.uint8)

    def noisy(frame):
        out = frame.copy()
        out[rows, cols] = values[:, None]
        return out

    return noisy


def _transform(method, mode, rng, height, width):
    """The frame -> frame function of one method, drawn once for a whole video."""
    if method == "flip":
        return lambda frame: cv2.flip(frame, 1)
    if method == "gaussian_blur":
        return lambda frame: cv2.GaussianBlur(frame, (3, 3), 0)
    if method in LINEAR[mode]:
        alpha, beta = LINEAR[mode][method]
        if mode == "faithful":
            return lambda frame: cv2.convertScaleAbs(frame, alpha=alpha, beta=beta)
        return lambda frame: (
            np.clip(np.rint(alpha * frame.astype(np.float32) + beta), 0, 255).astype(np.uint8))
    if method in ("rotate_left", "rotate_right"):
        angle = ANGLE if method == "rotate_left" else -ANGLE
        rotation = cv2.getRotationMatrix2D((width // 2, height // 2), angle, 1.0)
        return lambda frame: cv2.warpAffine(frame, rotation, (width, height))
    if mode == "faithful":
        return lambda frame: _faithful_noise(frame, rng)
    return _impulse_noise(rng, height, width)


def augment_video(frames, method: str, mode: str = "faithful", seed: int = 0) -> list[np.ndarray]:
    """One augmented copy of a video: ``frames`` (a list of, or a (T, H, W, 3) array of, RGB
    uint8 frames) -> list of uint8 frames; deterministic for a given seed."""
    check(method, mode)
    if len(frames) == 0:
        return []
    video = np.asarray(frames)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be RGB uint8 frames (T, H, W, 3), got {video.dtype} {video.shape}")
    transform = _transform(method, mode, np.random.default_rng(seed), *video.shape[1:3])
    return [transform(frame) for frame in video]
