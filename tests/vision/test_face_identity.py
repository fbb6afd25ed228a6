"""Face identity on real photos: embeddings, enrolment quality checks, verification."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from config_vision import load_vision_config
from face_identity import (
    EMBEDDING_SIZE,
    Enrolment,
    FaceIdentity,
    Verification,
    embedding_from_bytes,
    embedding_to_bytes,
)


@pytest.fixture(scope="module")
def cfg():
    return load_vision_config(env={})


@pytest.fixture(scope="module")
def identity(cfg):
    ident = FaceIdentity(cfg)
    yield ident
    ident.close()


@pytest.fixture(scope="module")
def obama(identity, load_image) -> np.ndarray:
    enrolment = identity.enrol(load_image("identity/obama.jpg"))
    assert enrolment.ok, enrolment.error
    return enrolment.embedding


def darken(img, factor):
    return np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def test_enrol_good_photo(identity, load_image):
    result = identity.enrol(load_image("identity/obama.jpg"))
    assert isinstance(result, Enrolment) and result.ok and result.error is None
    assert result.embedding.shape == (EMBEDDING_SIZE,) and result.embedding.dtype == np.float64
    assert np.all(np.isfinite(result.embedding))
    q = result.quality
    assert q["face_count"] == 1 and q["face_px"] > 200
    assert 60 < q["brightness"] < 225 and q["sharpness"] > 100


def test_same_person_matches(cfg, identity, obama, load_image):
    v = identity.verify(obama, load_image("identity/obama2.jpg"))
    assert isinstance(v, Verification)
    assert v.face_found and v.match is True
    assert v.distance <= cfg.IDENTITY_DISTANCE_THRESHOLD


def test_different_person_does_not_match(cfg, identity, obama, load_image):
    v = identity.verify(obama, load_image("identity/biden.jpg"))
    assert v.face_found and v.match is False
    assert v.distance > cfg.IDENTITY_DISTANCE_THRESHOLD


@pytest.mark.parametrize("transform", [
    lambda im: cv2.flip(im, 1),
    lambda im: darken(im, 0.45),
    lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR),
    lambda im: cv2.resize(im, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA),
], ids=["flip", "darken45", "jpeg30", "downscale40"])
def test_same_person_still_matches_after_real_transforms(identity, obama, load_image, transform):
    v = identity.verify(obama, transform(load_image("identity/obama2.jpg")))
    assert v.face_found and v.match is True, v.distance


@pytest.mark.parametrize("name", ["a_6_grace_hopper.jpg", "a_7_astronaut.png", "a_1_webcam_woman_T1.jpg"])
def test_other_people_do_not_match(identity, obama, load_image, name):
    v = identity.verify(obama, load_image(name))
    assert v.face_found and v.match is False, v.distance


def test_verify_without_a_face(identity, obama, load_image):
    v = identity.verify(obama, load_image("f_5_living_room_empty.jpg"))
    assert v == Verification(face_found=False, distance=None, match=None)


def test_enrol_refuses_no_face(identity, load_image):
    result = identity.enrol(load_image("f_5_living_room_empty.jpg"))
    assert not result.ok and result.embedding is None
    assert result.error == "no face found"


def test_enrol_refuses_several_faces(identity, load_image):
    result = identity.enrol(load_image("e_2_three_business.jpg"))
    assert not result.ok and result.embedding is None
    assert result.error == "3 faces found: exactly one person must be in the picture"


def test_enrol_refuses_too_dark(identity, load_image):
    result = identity.enrol(darken(load_image("identity/obama.jpg"), 0.25))
    assert not result.ok and result.error.startswith("too dark"), result.error
    assert result.quality["face_count"] == 1  # the face is still found (the frame is normalised to find it)


def test_enrol_refuses_too_blurry(identity, load_image):
    result = identity.enrol(cv2.GaussianBlur(load_image("identity/obama.jpg"), (0, 0), 6))
    assert not result.ok and result.error.startswith("too blurry"), result.error


def test_enrol_refuses_too_small(cfg, identity, load_image):
    img = load_image("a_6_grace_hopper.jpg")
    small = cv2.resize(img, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    result = identity.enrol(small)
    assert not result.ok and result.error.startswith("face too small"), result.error
    assert result.quality["face_px"] < cfg.ENROL_MIN_FACE_PX


def test_enrol_refuses_overexposed(identity, load_image):
    img = load_image("identity/obama.jpg").astype(np.float32)
    bright = np.clip(img * 1.6 + 110, 0, 255).astype(np.uint8)
    result = identity.enrol(bright)
    assert not result.ok and result.error.startswith("too bright"), result.error


def test_embed_with_box_and_without(identity, load_image):
    img = load_image("identity/obama2.jpg")
    whole = identity.embed(img)
    box = tuple(identity.enrol(img).quality["box"])
    boxed = identity.embed(img, box=box)
    assert whole is not None and boxed is not None
    assert np.linalg.norm(whole - boxed) < 1e-9
    assert identity.embed(load_image("f_1_coco133_loft_desk_chair.jpg")) is None
    with pytest.raises(ValueError, match="box"):
        identity.embed(img, box=(10, 10, 12, 12))
    with pytest.raises(ValueError, match="box"):
        identity.embed(img, box="left")


def test_embedding_bytes_round_trip(obama):
    raw = embedding_to_bytes(obama)
    assert isinstance(raw, bytes) and len(raw) == 1024
    assert raw == np.asarray(obama, dtype="<f8").tobytes()
    back = embedding_from_bytes(raw)
    assert back.dtype == np.float64 and np.array_equal(back, obama)
    assert np.array_equal(embedding_from_bytes(memoryview(raw)), obama)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 1023, b"\x00" * 2048, "not bytes"])
def test_embedding_from_bad_bytes(bad):
    with pytest.raises(ValueError):
        embedding_from_bytes(bad)


def test_bad_embeddings_are_refused(identity, obama, load_image):
    frame = load_image("identity/obama2.jpg")
    with pytest.raises(ValueError, match="shape"):
        identity.verify(np.zeros(64), frame)
    nan = obama.copy()
    nan[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        identity.verify(nan, frame)
    with pytest.raises(ValueError, match="non-finite"):
        embedding_to_bytes(nan)


def test_bad_frames_are_refused(identity, obama):
    with pytest.raises(ValueError, match="frame"):
        identity.enrol(np.zeros((10, 10), dtype=np.float64))
    with pytest.raises(ValueError, match="frame"):
        identity.verify(obama, None)


def test_verify_with_the_trackers_box_gives_the_same_answer_without_searching(cfg, identity, obama, load_image,
                                                                               monkeypatch):
    """The live pipeline hands verify() the main face its tracker found in the same frame: the same
    distance as when verify() searches the frame itself, and no face search is run."""
    from face_pipeline import FaceAnalyzer

    frame = load_image("identity/obama2.jpg")
    tracker = FaceAnalyzer(cfg, static_image_mode=False)
    try:
        box = tracker.analyze(frame).box
    finally:
        tracker.close()
    searched = identity.verify(obama, frame)
    calls = []
    monkeypatch.setattr(identity._faces, "analyze", lambda *a: calls.append(a) or pytest.fail("searched again"))
    given = identity.verify(obama, frame, box=box)
    assert calls == [] and given.face_found and given.match
    assert given.distance == pytest.approx(searched.distance, abs=0.02)
