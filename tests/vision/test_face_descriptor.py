"""FaceRes, the second face descriptor (face_descriptor.py), on real photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from config_vision import load_vision_config
from face_descriptor import (
    DESCRIPTOR_SIZE,
    DescriptorModelError,
    FaceResDescriptor,
    cosine_distance,
    faceres_input,
    faceres_path,
)
from face_pipeline import FaceAnalyzer


@pytest.fixture(scope="module")
def cfg():
    return load_vision_config(env={})


@pytest.fixture(scope="module")
def descriptor(cfg):
    return FaceResDescriptor(faceres_path(cfg))


@pytest.fixture(scope="module")
def face_of(cfg, load_image):
    """name -> (RGB image, face box found by the project's face stage in photo mode)."""
    faces = FaceAnalyzer(cfg, static_image_mode=True)

    def _face(name, transform=None):
        img = load_image(name)
        if transform is not None:
            img = transform(img)
        box = faces.analyze(img).box
        assert box is not None, name
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), box

    yield _face
    faces.close()


def test_model_file_is_found_and_runs_on_one_thread(cfg, descriptor):
    assert faceres_path(cfg).name == "faceres.onnx" and faceres_path(cfg).is_file()
    assert descriptor._session.get_session_options().intra_op_num_threads == 1


def test_input_is_the_documented_crop(face_of):
    rgb, box = face_of("identity/obama.jpg")
    x = faceres_input(rgb, box)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.std() > 20  # RGB 0..255, a real picture
    # the square crop is 1.4x the box: the face box's centre is the crop's centre
    x1, y1, x2, y2 = box
    cy, cx = int((y1 + y2) / 2), int((x1 + x2) / 2)
    centre = rgb[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).mean(0)
    assert np.abs(x[110:115, 110:115].reshape(-1, 3).mean(0) - centre).max() < 25


def test_crop_beyond_the_picture_is_black(face_of):
    rgb, box = face_of("identity/obama.jpg")
    x1, y1, x2, y2 = box
    cut = rgb[y1:, x1:].copy()  # the face now touches the top-left corner: the 1.4x crop leaves the picture
    x = faceres_input(cut, (0, 0, x2 - x1, y2 - y1))
    assert x[:10, :10].max() == 0 and x[150:, 150:].max() > 0


def test_same_person_closer_than_different_people(descriptor, face_of):
    a = descriptor.describe(*face_of("identity/obama.jpg"))
    b = descriptor.describe(*face_of("identity/obama2.jpg"))
    c = descriptor.describe(*face_of("identity/biden.jpg"))
    assert a.shape == (DESCRIPTOR_SIZE,) and a.dtype == np.float32 and np.all(a >= 0)
    # PROVENANCE.md measured 0.391 and 0.499 with Human's own crop: the port matches it
    assert cosine_distance(a, b) == pytest.approx(0.391, abs=0.01)
    assert cosine_distance(c, b) == pytest.approx(0.499, abs=0.01)
    mirrored = descriptor.describe(*face_of("identity/obama.jpg", lambda im: cv2.flip(im, 1)))
    assert cosine_distance(a, mirrored) < 0.15 < cosine_distance(a, b)


def test_cosine_distance_edges():
    v = np.array([1.0, 2.0, 0.0])
    assert cosine_distance(v, v) == pytest.approx(0.0)
    assert cosine_distance(v, np.array([0.0, 0.0, 3.0])) == pytest.approx(1.0)
    assert cosine_distance(v, np.zeros(3)) == 1.0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DescriptorModelError, match="not found.*dlib alone"):
        FaceResDescriptor(tmp_path / "faceres.onnx")


def test_another_model_is_refused(cfg, tmp_path):
    bad = tmp_path / "faceres.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(DescriptorModelError, match="could not load"):
        FaceResDescriptor(bad)
    nanodet = faceres_path(cfg).with_name("nanodet.onnx")
    if not nanodet.is_file():
        pytest.skip("models/nanodet.onnx not installed")
    with pytest.raises(DescriptorModelError, match="not the FaceRes model"):
        FaceResDescriptor(nanodet)
