"""The NanoDet backend (detector_backends.NanoDetDetector) on real photos, and its failures.

Decoding follows ../shared/models/PROVENANCE.md (BGR mean/std, stretched to 416, 3 strides,
distribution-bin expectation, per-class NMS); the scores it quotes for the dev photos were
measured with an independent decode, so matching them checks this one.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, COCO_PERSON, load_vision_config
from person_pipeline import DetectorError, NanoDetDetector, box_iou, create_detector

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("PROCTOR_MODEL_MIRROR", REPO_ROOT.parent / "shared" / "models"))
BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)
LOW = dict(NANODET_PHONE_CONFIDENCE=0.05, NANODET_BOOK_CONFIDENCE=0.05, NANODET_LAPTOP_CONFIDENCE=0.05,
           NANODET_PERSON_CONFIDENCE=0.05)


def _config(**overrides):
    base = dict(DETECTOR_BACKEND="nanodet", DETECTOR_HAND_LOOK=False)
    base.update(overrides)
    return load_vision_config(env={}, **base)


@pytest.fixture(scope="module")
def nanodet():
    if not (MIRROR / "nanodet.onnx").is_file():
        pytest.fail(f"NanoDet model not found in {MIRROR} (set PROCTOR_MODEL_MIRROR)")
    det = create_detector(_config(), models_dir=MIRROR)
    assert isinstance(det, NanoDetDetector)
    return det


@pytest.fixture(scope="module")
def nanodet_low():
    return create_detector(_config(DETECTOR_SECOND_LOOK=False, **LOW), models_dir=MIRROR)


def _best(dets, cid):
    return max((d.score for d in dets.items if d.class_id == cid), default=0.0)


@pytest.mark.parametrize("name, person, phone, book, laptop", [
    # PROVENANCE.md, "best score per class" (its own decode, TF.js-checked model)
    ("a_1_webcam_woman_T1.jpg", 0.79, 0.18, 0.09, 0.07),
    ("d_3_woman_holding_xo_laptop.jpg", 0.88, 0.31, 0.20, 0.52),
    ("c_1_coco446_woman_bookshelf.jpg", 0.61, 0.13, 0.30, 0.15),
])
def test_scores_match_the_documented_decode(nanodet_low, load_image, name, person, phone, book, laptop):
    dets = nanodet_low.detect(load_image(name))
    got = [_best(dets, c) for c in (COCO_PERSON, COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)]
    assert np.allclose(got, [person, phone, book, laptop], atol=0.03), got


def test_person_found_on_a1_covering_the_woman(nanodet, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")                       # 480x640, one woman
    dets = nanodet.detect(img)
    assert dets.person_count == 1 and dets.backend == "nanodet"
    x1, y1, x2, y2 = dets.persons[0].box
    assert x2 - x1 > 0.6 * img.shape[1] and y2 - y1 > 0.6 * img.shape[0]
    assert x1 < img.shape[1] / 2 < x2 and y1 < img.shape[0] / 2 < y2
    assert not dets.banned(BANNED)


def test_laptop_found_on_d3_where_centernet_puts_it(nanodet, load_image):
    img = load_image("d_3_woman_holding_xo_laptop.jpg")
    laptops = [d for d in nanodet.detect(img).items if d.class_id == COCO_LAPTOP]
    assert laptops and laptops[0].score >= 0.45
    # An independent model's box for the same laptop: the decode puts the box in the right place.
    centernet = create_detector(load_vision_config(env={}, DETECTOR_BACKEND="centernet", DETECTOR_HAND_LOOK=False),
                                models_dir=MIRROR)
    other = [d for d in centernet.detect(img).items if d.class_id == COCO_LAPTOP]
    assert other and box_iou(np.array(laptops[0].box), np.array([other[0].box]))[0] > 0.5


def test_boxes_follow_a_mirrored_frame(nanodet, load_image):
    img = load_image("d_3_woman_holding_xo_laptop.jpg")
    w = img.shape[1]
    a = [d for d in nanodet.detect(img).items if d.class_id == COCO_LAPTOP][0].box
    b = [d for d in nanodet.detect(cv2.flip(img, 1)).items if d.class_id == COCO_LAPTOP][0].box
    assert abs((w - b[2]) - a[0]) < 0.03 * w and abs((w - b[0]) - a[2]) < 0.03 * w


def test_three_people_in_e2_get_three_separate_boxes(nanodet, load_image):
    persons = nanodet.detect(load_image("e_2_three_business.jpg")).persons
    assert len(persons) == 3
    boxes = np.array([p.box for p in persons])
    for i in range(3):
        assert (box_iou(boxes[i], np.delete(boxes, i, axis=0)) < 0.5).all()


@pytest.mark.parametrize("name", ["f_5_living_room_empty.jpg", "f_1_coco133_loft_desk_chair.jpg"])
@pytest.mark.parametrize("variant", ["original", "mirrored", "half", "jpeg40"])
def test_empty_rooms_have_nothing_prohibited_and_nobody(nanodet, load_image, name, variant):
    img = load_image(name)
    img = {"original": lambda x: x, "mirrored": lambda x: cv2.flip(x, 1),
           "half": lambda x: cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
           "jpeg40": lambda x: cv2.imdecode(cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], 1)}[variant](img)
    dets = nanodet.detect(img)
    assert not dets.banned(BANNED) and dets.person_count == 0, dets.items


def test_nanodet_uses_its_own_thresholds(nanodet, load_image):
    img = load_image("d_3_woman_holding_xo_laptop.jpg")               # laptop 0.52
    cfg = _config()
    assert nanodet.detect(img, config=cfg.with_overrides(LAPTOP_CONFIDENCE=0.9)).banned([COCO_LAPTOP])
    assert not nanodet.detect(img, config=cfg.with_overrides(NANODET_LAPTOP_CONFIDENCE=0.6)).banned([COCO_LAPTOP])


# ------------------------------------------------------------------ bad model files fail loudly

def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "nanodet.onnx").write_bytes(b"\x00not an onnx model")
    with pytest.raises(DetectorError, match="could not load ONNX model"):
        create_detector(_config(), models_dir=tmp_path)


def _identity_model(path: Path, in_shape, out_shape):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_centernet_shaped_model_is_refused(tmp_path):
    _identity_model(tmp_path / "nanodet.onnx", [1, 512, 512, 3], [1, 512, 512, 3])
    with pytest.raises(DetectorError, match=r"expected a NanoDet input \[1, 3, H, W\]"):
        create_detector(_config(), models_dir=tmp_path)


def test_model_without_the_stride_outputs_is_refused(tmp_path):
    _identity_model(tmp_path / "nanodet.onnx", [1, 3, 416, 416], [1, 3, 416, 416])
    with pytest.raises(DetectorError, match=r"not a NanoDet COCO-80 model.*\[1, 2704, 80\]"):
        create_detector(_config(), models_dir=tmp_path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DetectorError, match=r"'nanodet' needs .*nanodet.onnx.*missing"):
        create_detector(_config(), models_dir=tmp_path)


def test_backend_is_told_from_the_file_name(tmp_path):
    os.symlink(MIRROR / "nanodet.onnx", tmp_path / "my_nanodet_m.onnx")
    det = create_detector(_config(DETECTOR_BACKEND="auto", DETECTOR_MODEL_PATH=str(tmp_path / "my_nanodet_m.onnx")))
    assert det.info()["backend"] == "nanodet" and det.info()["input_size"] == [416, 416]
