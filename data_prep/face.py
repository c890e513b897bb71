"""Face detection (MTCNN, batched) and 5-point similarity alignment to a canonical template."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

# Canonical 5-point template (left eye, right eye, nose tip, left and right mouth corner, in image
# coordinates) of the widely used 112x112 face-recognition crop. Scaled to any size and margin.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


def template(size: int = 112, margin: float = 0.0) -> np.ndarray:
    """Template landmarks for a `size` crop; `margin` widens the crop by that fraction on each side."""
    unit = TEMPLATE_112 / 112.0
    return (unit + margin) / (1.0 + 2.0 * margin) * size


@dataclass
class Face:
    """The most confident face of one frame: box (x1, y1, x2, y2), confidence, 5 landmarks (x, y)."""

    box: np.ndarray
    confidence: float
    landmarks: np.ndarray


# mtcnn's own smallest face: its image pyramid starts where such a face fills P-Net's 12 px cell.
MTCNN_MIN_FACE = 20
# Below this short side mtcnn's pyramid has no level (and larger min_face_size values make mtcnn 1.0
# build levels smaller than P-Net accepts), so it is never called on a smaller detection copy.
MIN_DETECT_SIDE = 24


def check_min_face_size(value: float) -> float:
    """`min_face_size` is a fraction of the frame's shorter side (0 < v < 1) or pixels (v >= 20)."""
    if not (0 < value < 1 or value >= MTCNN_MIN_FACE):
        raise ValueError(f"min_face_size must be a fraction of the frame's shorter side (0 < v < 1) or at "
                         f"least {MTCNN_MIN_FACE} px (MTCNN finds no smaller face), got {value}")
    return float(value)


def smallest_face(min_face_size: float, width: int, height: int) -> float:
    """The smallest face to find in a width x height frame, in its pixels (never under MTCNN's 20)."""
    px = min_face_size * min(width, height) if min_face_size < 1 else min_face_size
    return max(float(MTCNN_MIN_FACE), px)


def detection_size(min_face_size: float, width: int, height: int) -> tuple[int, int]:
    """Size of the copy MTCNN runs on: scaled so the smallest face to find becomes MTCNN's 20 px.

    MTCNN's cost grows with the pixels of its pyramid; looking for 20 px faces in a 1280x720 frame
    whose faces are 100 px or more spends most of it on levels that cannot hold such faces.
    """
    scale = MTCNN_MIN_FACE / smallest_face(min_face_size, width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# Default smallest face: 1/8 of the frame's shorter side (72 px at AFEW's 720x576, 90 px at 1280x720,
# 270 px in 4K); small frames fall back to MTCNN's 20 px.
DEFAULT_MIN_FACE = 0.125


# Inputs of MTCNN's networks by stage id: P-Net is fully convolutional (any pyramid level), R-Net
# takes 24x24 and O-Net 48x48 patches.
_NETWORK_INPUTS = {1: (None, None, None, 3), 2: (None, 24, 24, 3), 3: (None, 48, 48, 3)}


def _compile_networks(mtcnn) -> None:
    """Wrap each mtcnn network in a tf.function with a fixed input signature: mtcnn calls its Keras
    models eagerly, layer by layer, and that Python overhead is a large part of a batch at
    detection-copy sizes. The signature gives one trace per network, whatever the pyramid level,
    batch or candidate count (shape-driven retracing cost seconds on each new video size)."""
    import tensorflow as tf

    for stage in mtcnn.stages:
        spec = tf.TensorSpec(_NETWORK_INPUTS[stage.id], tf.float32)
        stage._model = tf.function(stage.model, input_signature=[spec])


class FaceDetector:
    """MTCNN on batches of frames: the most confident face per frame, or every face.

    Detection runs on a downscaled copy (see `detection_size`); boxes and landmarks are mapped back
    to the full-resolution frame, where alignment crops the face. One batched call amortises
    MTCNN's per-call TensorFlow overhead over many frames.
    """

    def __init__(self, min_confidence: float = 0.9, min_face_size: float = DEFAULT_MIN_FACE, device: str = "CPU:0"):
        from mtcnn import MTCNN  # imported lazily: it pulls in TensorFlow

        self._mtcnn = MTCNN(device=device)
        _compile_networks(self._mtcnn)
        self.min_confidence = min_confidence
        self.min_face_size = check_min_face_size(min_face_size)

    def detect(self, frames: list[np.ndarray]) -> list[Face | None]:
        """Return one Face (or None) per frame, in full-resolution coordinates; frames share one size."""
        return [found[0] if found else None for found in self.detect_all(frames, best_only=True)]

    def detect_all(self, frames: list[np.ndarray], best_only: bool = False) -> list[list[Face]]:
        """Every face (>= min_confidence) of each frame, most confident first, in full-resolution
        coordinates: a video with two annotated people needs both (data_prep/datasets/va/persons.py)."""
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        small_w, small_h = detection_size(self.min_face_size, width, height)
        if min(small_w, small_h) < MIN_DETECT_SIDE:
            return [[] for _ in frames]
        full_frames, scaled = frames, (small_w, small_h) != (width, height)
        if scaled:
            frames = [_shrink(f, small_w, small_h) for f in frames]
        rows = self._mtcnn.detect_faces(  # float32 in: mtcnn would normalise uint8 to float64
            [f.astype(np.float32) for f in frames], box_format="xyxy", output_type="numpy", min_face_size=MTCNN_MIN_FACE
        )
        found = faces_by_frame(rows, len(frames), self.min_confidence, (width / small_w, height / small_h))
        if best_only:
            found = [f[:1] for f in found]
        if scaled:
            self._refine_landmarks(full_frames, found)
        return found

    def _refine_landmarks(self, frames: list[np.ndarray], faces: list[list[Face]]) -> None:
        """Rerun O-Net on each found face at full resolution, so the landmarks that drive the
        alignment come from full-resolution pixels, not from the detection copy.

        The 48x48 O-Net input is sampled from the full frame exactly as mtcnn samples it
        (tf.image.crop_and_resize's bilinear grid over the squared box), with cv2.remap on the
        face region only, so no full-resolution tensor is ever built.
        """
        found = [(i, face) for i, frame_faces in enumerate(faces) for face in frame_faces]
        if not found:
            return
        patches, squares = [], []
        for i, face in found:
            square = _square(face.box)
            patches.append(_onet_patch(frames[i], square))
            squares.append(square)
        onet = self._mtcnn.get_stage(stage_id=3).model
        _, landmarks, _ = onet(np.stack(patches))
        landmarks = np.asarray(landmarks)
        for k, (_, face) in enumerate(found):
            x1, y1, x2, y2 = squares[k]
            w, h = x2 - x1 + 1, y2 - y1 + 1  # mtcnn's adjust_landmarks convention
            xs = w * landmarks[k, :5] + x1 - 1
            ys = h * landmarks[k, 5:] + y1 - 1
            face.landmarks = np.stack([xs, ys], 1)


def faces_by_frame(rows, n: int, min_confidence: float, scale=(1.0, 1.0)) -> list[list[Face]]:
    """The faces (>= min_confidence) of each of `n` frames from mtcnn's numpy rows (image, x1, y1,
    x2, y2, confidence, 5 x, 5 y), most confident first (equal ones in mtcnn's order),
    coordinates multiplied by `scale` (x, y)."""
    scale = np.asarray(scale, np.float64)
    found: list[list[Face]] = [[] for _ in range(n)]
    for row in np.asarray(rows).reshape(-1, 16):
        i, conf = int(row[0]), float(row[5])
        if conf >= min_confidence:
            landmarks = np.stack([row[6:11], row[11:16]], 1) * scale
            found[i].append(Face(box=row[1:5] * np.tile(scale, 2), confidence=conf, landmarks=landmarks))
    for faces in found:
        faces.sort(key=lambda f: -f.confidence)  # stable: equal confidences keep mtcnn's order
    return found


def best_faces(rows, n: int, min_confidence: float, scale=(1.0, 1.0)) -> list[Face | None]:
    """The most confident face of each frame (see :func:`faces_by_frame`), or None."""
    return [faces[0] if faces else None for faces in faces_by_frame(rows, n, min_confidence, scale)]


def _shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average `frame` down to width x height: halvings first (OpenCV's fast integer-factor
    path, 2.4x faster at 720x576 -> 200x160 than one non-integer INTER_AREA), then the rest."""
    while frame.shape[1] >= 2 * width and frame.shape[0] >= 2 * height:
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _square(box: np.ndarray) -> np.ndarray:
    """The square box around `box` with the same centre (what O-Net is given in mtcnn)."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _onet_patch(frame: np.ndarray, box: np.ndarray, size: int = 48) -> np.ndarray:
    """mtcnn's normalised O-Net input for `box`: crop_and_resize's sample grid, zero (grey) outside."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box
    # crop_and_resize maps normalised y in [y1/H, y2/H] onto pixel rows y * (H - 1)
    ys = (y1 / height + np.arange(size) * (y2 - y1) / height / (size - 1)) * (height - 1)
    xs = (x1 / width + np.arange(size) * (x2 - x1) / width / (size - 1)) * (width - 1)
    x0, y0 = max(0, int(np.floor(xs[0])) - 1), max(0, int(np.floor(ys[0])) - 1)
    xe, ye = min(width, int(np.ceil(xs[-1])) + 2), min(height, int(np.ceil(ys[-1])) + 2)
    if xe <= x0 or ye <= y0:
        return np.zeros((size, size, 3), np.float32)
    region = (frame[y0:ye, x0:xe].astype(np.float32) - 127.5) / 128.0
    map_x, map_y = np.meshgrid((xs - x0).astype(np.float32), (ys - y0).astype(np.float32))
    return cv2.remap(region, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# Integer weights of the five points in the least-squares fit. Eyes dominate because they are the
# most reliable MTCNN points and do not move with expression; mouth corners do (a smile widens
# them), and an unweighted fit lets the expression change the crop's scale and angle.
LANDMARK_WEIGHTS = (4, 4, 2, 1, 1)


def alignment_matrix(landmarks: np.ndarray, size: int = 112, margin: float = 0.0,
                     weights: tuple[int, ...] = LANDMARK_WEIGHTS) -> np.ndarray:
    """2x3 similarity transform taking `landmarks` onto the template.

    Weighted least squares (Umeyama) is the plain fit on points repeated `weights` times.
    """
    rep = np.repeat(np.arange(5), weights)
    src = np.asarray(landmarks, np.float64)[rep]
    tform = SimilarityTransform.from_estimate(src, template(size, margin)[rep])
    if not tform:
        raise ValueError(f"degenerate landmarks, no similarity transform: {landmarks.tolist()}")
    return tform.params[:2]


def align(frame: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = 0.0,
          weights: tuple[int, ...] = LANDMARK_WEIGHTS) -> np.ndarray:
    """Warp `frame` so its landmarks sit on the template; returns a (size, size, 3) crop."""
    matrix = alignment_matrix(landmarks, size, margin, weights)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)



def _region(frame: np.ndarray, centre, side: float, angle: float = 0.0) -> np.ndarray:
    """The square of `side` px around `centre`, turned by `angle` degrees, at the frame's own scale
    (black outside the frame): resizing it after with INTER_AREA keeps a large face unaliased."""
    side_px = max(1, int(round(side)))
    matrix = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), angle, 1.0)
    matrix[:, 2] += (side_px / 2 - centre[0], side_px / 2 - centre[1])
    return cv2.warpAffine(frame, matrix, (side_px, side_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    shrink = image.shape[0] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _centre_side(box) -> tuple[tuple[float, float], float]:
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return ((x1 + x2) / 2, (y1 + y2) / 2), max(x2 - x1, y2 - y1, 1.0)


def roll_crop(frame: np.ndarray, landmarks: np.ndarray, box, crop: int = 112, size: int = 96) -> np.ndarray:
    """Thesis 001's crop (extract-001 §2 steps 7-9): the detector's box as a square around its
    centre, turned in-plane so the line between the eyes is level (the face's mid-line upright),
    cut at `crop` px, then resized to `size`. The scale follows the box, as MTCNN's box crop did,
    not the landmarks as :func:`align` does."""
    (lx, ly), (rx, ry) = np.asarray(landmarks, np.float64)[:2]
    centre, side = _centre_side(box)
    face = _resize(_region(frame, centre, side, float(np.degrees(np.arctan2(ry - ly, rx - lx)))), crop)
    return _resize(face, size)


def box_crop(frame: np.ndarray, box, size: int) -> np.ndarray:
    """The detector's box (x1, y1, x2, y2) squared around its centre and resized to `size`, not
    aligned (thesis 003's plain detector crops; AffectNet's given boxes)."""
    centre, side = _centre_side(box)
    return _resize(_region(frame, centre, side), size)
