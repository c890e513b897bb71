"""5-point similarity alignment on the real astronaut photo rotated by known angles."""
import cv2
import numpy as np
import pytest
import skimage.data

from data_prep.face import FaceDetector, align, alignment_matrix, template


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut_landmarks(detector):
    image = skimage.data.astronaut()
    face = detector.detect([image])[0]
    assert face is not None and face.confidence > 0.99
    return image, face.landmarks


def test_template_scales_with_size_and_margin():
    np.testing.assert_allclose(template(224), 2 * template(112))
    wide = template(112, margin=0.25)
    centre = np.array([56.0, 56.0])
    # a margin shrinks the template towards the centre of the crop by 1 / (1 + 2 * margin)
    np.testing.assert_allclose(wide - centre, (template(112) - centre) / 1.5, atol=1e-9)


@pytest.mark.parametrize("angle", [-30, -20, -10, 0, 10, 20, 30])
def test_eyes_are_level_and_on_the_template_after_alignment(detector, astronaut_landmarks, angle):
    image, upright = astronaut_landmarks
    h, w = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotated = cv2.warpAffine(image, rotation, (w, h))
    face = detector.detect([rotated])[0]
    assert face is not None
    # ground truth: the upright landmarks carried through the known rotation
    truth = (rotation @ np.c_[upright, np.ones(5)].T).T
    matrix = alignment_matrix(face.landmarks, 112)
    eyes = (matrix @ np.c_[truth[:2], np.ones(2)].T).T
    assert np.abs(eyes - template(112)[:2]).max() < 2.0, eyes
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0


def test_align_returns_the_requested_crop(astronaut_landmarks):
    image, landmarks = astronaut_landmarks
    for size in (72, 96, 112, 160, 224):
        crop = align(image, landmarks, size, margin=0.1)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        assert crop.std() > 10  # a face, not an empty border


def test_batched_detection_matches_single_calls(detector, astronaut_landmarks):
    image, _ = astronaut_landmarks
    small = cv2.resize(image, (160, 160))
    blank = np.full_like(small, 90)
    batch = detector.detect([small, blank, small])
    single = [detector.detect([f])[0] for f in (small, blank, small)]
    assert batch[1] is None and single[1] is None
    for b, s in ((batch[0], single[0]), (batch[2], single[2])):
        np.testing.assert_allclose(b.landmarks, s.landmarks, atol=0.5)
