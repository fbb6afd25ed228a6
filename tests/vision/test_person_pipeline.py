"""The real CenterNet backend on real photos, the backend registry, and ObjectEvidence.

CenterNet is no longer the default (nanodet is, tests/vision/test_nanodet.py); these tests pin
the CenterNet backend itself, chosen explicitly, with the hand-guided look off (its own tests
are in tests/vision/test_hand_look.py).

The model is read from the mirror folder (../shared/models, or PROCTOR_MODEL_MIRROR), the
photos from ../shared/testdata. Scores quoted in xfail reasons were measured with
bench/detection_quality.py (docs/detection-quality.md).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, load_vision_config
from person_pipeline import (
    CenterNetDetector,
    Detection,
    DetectorError,
    Detections,
    ObjectEvidence,
    create_detector,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("PROCTOR_MODEL_MIRROR", REPO_ROOT.parent / "shared" / "models"))
CENTERNET = MIRROR / "centernet_mbv3_coco.onnx"
BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)


@pytest.fixture(scope="module")
def config():
    return load_vision_config(env={}, DETECTOR_BACKEND="centernet", DETECTOR_HAND_LOOK=False)


@pytest.fixture(scope="module")
def detector(config):
    if not CENTERNET.is_file():
        pytest.fail(f"CenterNet model not found at {CENTERNET} (set PROCTOR_MODEL_MIRROR)")
    det = create_detector(config, models_dir=MIRROR)
    assert isinstance(det, CenterNetDetector)
    return det


def darker(img):
    lut = np.array([min(255, round(255 * 0.6 * (i / 255) ** 2.2)) for i in range(256)], dtype=np.uint8)
    return cv2.LUT(img, lut)


def half(img):
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# ------------------------------------------------------------------ persons

@pytest.mark.parametrize("name, want", [
    ("e_2_three_business.jpg", 3),
    ("e_5_zidane_two_men.jpg", 2),
    ("a_1_webcam_woman_T1.jpg", 1),
    ("a_3_face_closeup_sergey.png", 1),   # raw output has a second box on him (0.55): a duplicate
    ("a_6_grace_hopper.jpg", 1),
    ("f_1_coco133_loft_desk_chair.jpg", 0),
    ("f_5_living_room_empty.jpg", 0),
])
def test_person_count_after_duplicates_suppressed(detector, load_image, name, want):
    dets = detector.detect(load_image(name))
    assert dets.person_count == want, [(round(d.score, 2), d.box) for d in dets.persons]


def test_several_people_found_with_separate_boxes(detector, load_image):
    img = load_image("e_2_three_business.jpg")
    persons = sorted(detector.detect(img).persons, key=lambda d: d.box[0])
    assert len(persons) >= 2
    xs = [centre(p.box)[0] for p in persons]
    assert all(b - a > img.shape[1] * 0.1 for a, b in zip(xs, xs[1:]))   # side by side, not stacked copies


def test_person_behind_the_student_is_kept(detector, load_image):
    # d_3: a small person in the background, mostly inside the woman's box: not a duplicate.
    dets = detector.detect(load_image("d_3_woman_holding_xo_laptop.jpg"))
    assert dets.person_count == 2


@pytest.mark.parametrize("name, want", [("e_5_zidane_two_men.jpg", 2), ("e_2_three_business.jpg", 3)])
def test_person_count_on_half_size_frames(detector, load_image, name, want):
    assert detector.detect(half(load_image(name))).person_count == want


# ------------------------------------------------------------------ prohibited objects

def _banned(dets, class_id):
    return [d for d in dets.banned(BANNED) if d.class_id == class_id]


def test_phones_in_b3_are_found_where_they_are(detector, load_image):
    img = load_image("b_3_coco536_women_on_phones.jpg")
    phones = _banned(detector.detect(img), COCO_CELL_PHONE)
    assert phones, "no phone found"
    # Both phones are held at the ear of the two women on the left: around (120, 117) and (213, 121).
    centres = sorted(centre(p.box) for p in phones)
    assert any(abs(x - 120) < 20 and abs(y - 117) < 20 for x, y in centres), centres
    assert all(p.label == "cell phone" and p.score >= detector.config.PHONE_CONFIDENCE for p in phones)


def test_second_look_is_what_finds_the_b3_phones(config, load_image):
    # Whole frame only: best phone score 0.23 (< 0.25); the zoomed crops around the persons see 0.31.
    img = load_image("b_3_coco536_women_on_phones.jpg")
    single = create_detector(config.with_overrides(DETECTOR_SECOND_LOOK=False), models_dir=MIRROR)
    assert _banned(single.detect(img), COCO_CELL_PHONE) == []
    zoomed = create_detector(config, models_dir=MIRROR)
    assert _banned(zoomed.detect(img), COCO_CELL_PHONE)


def test_phone_found_on_mirrored_frame_with_mirrored_box(detector, load_image):
    img = cv2.flip(load_image("b_3_coco536_women_on_phones.jpg"), 1)
    phones = _banned(detector.detect(img), COCO_CELL_PHONE)
    w = img.shape[1]
    assert any(abs(centre(p.box)[0] - (w - 120)) < 20 and abs(centre(p.box)[1] - 117) < 20 for p in phones), \
        [p.box for p in phones]


def test_phone_found_on_darkened_frame(detector, load_image):
    # Darkened to mean luma 18: 0.22 unaided; the detector's gamma brightening brings it to 0.29.
    img = darker(load_image("b_3_coco536_women_on_phones.jpg"))
    assert img.mean() < 25
    assert _banned(detector.detect(img), COCO_CELL_PHONE)


def test_per_call_config_applies_an_exams_thresholds(detector, config, load_image):
    # An exam that lowers the phone bar and raises the laptop bar, and bans teddy bears too;
    # the same detector instance serves it, and the defaults come back afterwards.
    exam = config.with_overrides(PHONE_CONFIDENCE=0.05, LAPTOP_CONFIDENCE=0.5, EXTRA_BANNED_CLASSES="77")
    img = load_image("d_3_woman_holding_xo_laptop.jpg")
    strict = detector.detect(img, config=exam)
    assert _banned(strict, COCO_LAPTOP) == []                      # 0.36 < 0.5
    assert _banned(strict, COCO_CELL_PHONE)                          # d_3 has a 0.09 "phone": now counts
    assert detector.detect(img).banned(BANNED) and _banned(detector.detect(img), COCO_CELL_PHONE) == []
    assert detector.config is config and detector.info()["class_map"] == {
        0: "person", 63: "laptop", 67: "cell phone", 73: "book"}


def test_book_in_c1(detector, load_image):
    books = _banned(detector.detect(load_image("c_1_coco446_woman_bookshelf.jpg")), COCO_BOOK)
    assert books and books[0].label == "book"


def test_book_in_c1_half_size(detector, load_image):
    assert _banned(detector.detect(half(load_image("c_1_coco446_woman_bookshelf.jpg"))), COCO_BOOK)


@pytest.mark.parametrize("variant", ["original", "darker", "mirrored", "half"])
def test_laptop_in_d3(detector, load_image, variant):
    img = load_image("d_3_woman_holding_xo_laptop.jpg")
    img = {"original": img, "darker": darker(img), "mirrored": cv2.flip(img, 1), "half": half(img)}[variant]
    laptops = _banned(detector.detect(img), COCO_LAPTOP)
    assert laptops
    # She holds it in front of her, in the lower half of the frame.
    assert centre(laptops[0].box)[1] > img.shape[0] * 0.5


@pytest.mark.parametrize("name", [
    "a_1_webcam_woman_T1.jpg", "a_3_face_closeup_sergey.png", "a_6_grace_hopper.jpg", "a_7_astronaut.png",
    "f_1_coco133_loft_desk_chair.jpg", "f_5_living_room_empty.jpg", "e_2_three_business.jpg",
])
@pytest.mark.parametrize("variant", ["original", "darker", "mirrored", "half"])
def test_clean_frames_have_no_banned_objects(detector, load_image, name, variant):
    img = load_image(name)
    img = {"original": img, "darker": darker(img), "mirrored": cv2.flip(img, 1), "half": half(img)}[variant]
    assert detector.detect(img).banned(detector.config.banned_class_ids) == ()


@pytest.mark.parametrize("name", ["a_1_webcam_woman_T1.jpg", "f_1_coco133_loft_desk_chair.jpg", "f_5_living_room_empty.jpg"])
@pytest.mark.parametrize("gain", [0.02, 0.05, 0.1])
def test_brightening_nearly_black_noisy_frames_invents_no_objects(detector, load_image, name, gain):
    # A covered or unlit camera: mean luma 2-15 plus sensor noise; the gamma brightening must
    # not turn the noise into phones or books.
    rng = np.random.default_rng(1)
    img = load_image(name).astype(np.float32) * gain + rng.normal(0, 2, load_image(name).shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    assert img.mean() < 16
    assert detector.detect(img).banned(detector.config.banned_class_ids) == ()


@pytest.mark.xfail(strict=True, reason="measured: the phone filling b_1 scores 0.07-0.09 as 'cell phone' "
                                       "(original, darker, mirrored, half size); the liveness check must catch it")
def test_phone_held_to_webcam_b1(detector, load_image):
    assert _banned(detector.detect(load_image("b_1_phone_held_to_webcam.jpg")), COCO_CELL_PHONE)


def test_book_in_c1_darkened(detector, load_image):
    # Darkened c_1 (mean luma 9): 0.33 after brightening, above the held-out-chosen book bar (0.30).
    assert _banned(detector.detect(darker(load_image("c_1_coco446_woman_bookshelf.jpg"))), COCO_BOOK)


@pytest.mark.xfail(strict=True, reason="measured: at 224x168 the b_3 phones score 0.19 even in the zoomed crops")
def test_phone_in_b3_half_size(detector, load_image):
    assert _banned(detector.detect(half(load_image("b_3_coco536_women_on_phones.jpg"))), COCO_CELL_PHONE)


# ------------------------------------------------------------------ input and info

def test_detect_accepts_grey_and_bgra_and_rejects_bad_frames(detector, load_image):
    img = load_image("e_5_zidane_two_men.jpg")
    assert detector.detect(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).frame_size == (1280, 720)
    assert detector.detect(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)).person_count == 2
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(img.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        detector.detect(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="too small"):
        detector.detect(np.zeros((1, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="numpy array"):
        detector.detect(b"jpeg bytes")


def test_info_contract(detector):
    info = detector.info()
    assert info["loaded"] is True and info["backend"] == "centernet" and info["device"] == "cpu"
    assert info["input_size"] == [512, 512]
    assert Path(info["model_path"]).name == "centernet_mbv3_coco.onnx"
    assert info["class_map"] == {0: "person", 63: "laptop", 67: "cell phone", 73: "book"}


def test_input_frame_is_not_modified(detector, load_image):
    img = darker(load_image("b_3_coco536_women_on_phones.jpg"))
    before = img.copy()
    detector.detect(img)
    assert np.array_equal(img, before)


# ------------------------------------------------------------------ registry

def test_auto_picks_centernet_here(config):
    # Both centernet and nanodet files are in the mirror; centernet measured better (auto order).
    assert (MIRROR / "nanodet.onnx").is_file()
    det = create_detector(config.with_overrides(DETECTOR_BACKEND="auto"), models_dir=MIRROR)
    assert det is not None and det.info()["backend"] == "centernet"


def test_auto_with_no_model_gives_none(config, tmp_path):
    assert create_detector(config.with_overrides(DETECTOR_BACKEND="auto"), models_dir=tmp_path) is None


def test_backend_none_gives_none(config):
    assert create_detector(config.with_overrides(DETECTOR_BACKEND="none"), models_dir=MIRROR) is None


def test_unknown_backend_is_a_clear_error(config):
    # config_vision already refuses unknown names; the registry guards its own lookup too.
    bogus = type(config)(values={**config.values, "DETECTOR_BACKEND": "tensorflow_magic"})
    with pytest.raises(DetectorError, match="unknown detector backend 'tensorflow_magic'.*centernet"):
        create_detector(bogus, models_dir=MIRROR)


@pytest.mark.parametrize("backend, file", [
    ("yolo_onnx", "yolov8n.onnx"),
    ("centernet", "centernet_mbv3_coco.onnx"),
    ("opencv_darknet", "yolov4-tiny.weights"),
    ("ultralytics", "yolov8n.pt"),
])
def test_explicit_backend_with_missing_file_is_a_clear_error(config, tmp_path, backend, file):
    with pytest.raises(DetectorError, match=rf"'{backend}' needs .*{file}.*missing.*download_yolo_models"):
        create_detector(config.with_overrides(DETECTOR_BACKEND=backend), models_dir=tmp_path)


def test_ultralytics_without_the_package_is_a_clear_error(config, tmp_path):
    try:  # the package is deliberately not installed here
        import ultralytics  # noqa: F401
        pytest.skip("ultralytics is installed here")
    except ImportError:
        pass
    (tmp_path / "yolov8n.pt").write_bytes(b"weights would be here")
    with pytest.raises(DetectorError, match=r"optional package 'ultralytics' \(pip install ultralytics"):
        create_detector(config.with_overrides(DETECTOR_BACKEND="ultralytics"), models_dir=tmp_path)


def test_auto_skips_ultralytics_without_package_and_takes_centernet(config, tmp_path):
    (tmp_path / "yolov8n.pt").write_bytes(b"weights would be here")
    os.symlink(CENTERNET, tmp_path / "centernet_mbv3_coco.onnx")
    det = create_detector(config.with_overrides(DETECTOR_BACKEND="auto"), models_dir=tmp_path)
    assert det.info()["backend"] == "centernet"


def test_explicit_model_path_setting(config, tmp_path):
    copy = tmp_path / "my_centernet.onnx"
    shutil.copyfile(CENTERNET, copy)
    det = create_detector(config.with_overrides(DETECTOR_BACKEND="centernet", DETECTOR_MODEL_PATH=str(copy)),
                          models_dir=tmp_path / "empty")
    assert det.info()["model_path"] == str(copy)


@pytest.mark.parametrize("backend, file, message", [
    ("centernet", "nowhere/centernet_mbv3_coco.onnx", r"model file .*nowhere/centernet_mbv3_coco.onnx is missing"),
    ("auto", "nowhere/yolov8n.onnx", r"'yolo_onnx': model file .*is missing"),
    ("auto", "weights.bin", r"cannot tell the detector backend of .*weights.bin; set DETECTOR_BACKEND"),
])
def test_explicit_model_path_errors(config, tmp_path, backend, file, message):
    cfg = config.with_overrides(DETECTOR_BACKEND=backend, DETECTOR_MODEL_PATH=str(tmp_path / file))
    with pytest.raises(DetectorError, match=message):
        create_detector(cfg, models_dir=MIRROR)


def test_centernet_backend_refuses_a_yolo_shaped_model(config, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 640, 640])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "centernet_mbv3_coco.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DetectorError, match=r"expected a CenterNet input \[1, H, W, 3\]"):
        create_detector(config.with_overrides(DETECTOR_BACKEND="centernet"), models_dir=tmp_path)


# ------------------------------------------------------------------ evidence over detector runs

def test_evidence_needs_k_of_n_runs_on_real_detections(detector, load_image):
    phone_frame = detector.detect(load_image("b_3_coco536_women_on_phones.jpg"))
    clean_frame = detector.detect(load_image("a_1_webcam_woman_T1.jpg"))
    assert phone_frame.banned(BANNED) and not clean_frame.banned(BANNED)
    ev = ObjectEvidence(min_hits=2, window=4, banned_class_ids=BANNED)

    out = ev.update(phone_frame)                     # 1 of 1: not yet
    assert out.banned(BANNED) == () and out.person_count == phone_frame.person_count
    out = ev.update(clean_frame)                     # 1 of 2
    assert out.banned(BANNED) == ()
    out = ev.update(phone_frame)                     # 2 of 3: confirmed
    assert {d.class_id for d in out.banned(BANNED)} == {COCO_CELL_PHONE}
    assert ev.confirmed == {COCO_CELL_PHONE}
    out = ev.update(clean_frame)                     # missed once, still 2 of 4: carried
    assert [d.box for d in out.banned(BANNED)] == [d.box for d in phone_frame.banned(BANNED)]
    assert out.person_count == clean_frame.person_count   # persons always from the current run
    out = ev.update(clean_frame)                     # 1 of 4: ended
    assert out.banned(BANNED) == () and ev.confirmed == frozenset()


def test_evidence_from_config_and_bad_settings(config):
    ev = ObjectEvidence.from_config(config)
    assert (ev.min_hits, ev.window) == (config.OBJECT_EVIDENCE_MIN_HITS, config.OBJECT_EVIDENCE_WINDOW_RUNS)
    with pytest.raises(ValueError, match="cannot exceed"):
        ObjectEvidence.from_config(config.with_overrides(OBJECT_EVIDENCE_MIN_HITS=6, OBJECT_EVIDENCE_WINDOW_RUNS=5))


def test_evidence_ignores_persons_and_reset_forgets():
    person = Detection(0, "person", 0.9, (0.0, 0.0, 10.0, 10.0))
    book = Detection(COCO_BOOK, "book", 0.5, (1.0, 1.0, 3.0, 3.0))
    frame = Detections((person, book), "centernet", (20, 20))
    ev = ObjectEvidence(min_hits=1, window=1, banned_class_ids=BANNED)
    assert ev.update(frame).items == (person, book)
    ev.reset()
    assert ev.hits(COCO_BOOK) == 0 and ev.confirmed == frozenset()


# ------------------------------------------------------------------ opencv_darknet with an architecture-only model

DARKNET_CFG = """[net]
width=416
height=416
channels=3

[convolutional]
batch_normalize=0
filters=255
size=1
stride=32
pad=0
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=80
num=6
"""


def _write_darknet_model(folder: Path, class_id: int) -> None:
    """A one-layer YOLO head (no trained weights exist here): zero kernels, biases that make
    every cell report ``class_id`` with objectness and class score sigmoid(3) each."""
    import struct

    bias = np.zeros(255, dtype=np.float32)
    for anchor in range(3):
        bias[anchor * 85 + 4] = 3.0
        bias[anchor * 85 + 5 + class_id] = 3.0
    (folder / "yolov4-tiny.cfg").write_text(DARKNET_CFG)
    with open(folder / "yolov4-tiny.weights", "wb") as fh:
        fh.write(struct.pack("<iiiq", 0, 2, 5, 0))        # darknet header: version 0.2.5, images seen
        fh.write(bias.tobytes())
        fh.write(np.zeros(255 * 3, dtype=np.float32).tobytes())


def test_opencv_darknet_backend_maps_boxes_to_frame_and_applies_nms(config, tmp_path, load_image):
    _write_darknet_model(tmp_path, COCO_CELL_PHONE)
    cfg = config.with_overrides(DETECTOR_BACKEND="opencv_darknet", DETECTOR_SECOND_LOOK=False)
    det = create_detector(cfg, models_dir=tmp_path)
    assert det.info()["backend"] == "opencv_darknet" and det.info()["input_size"] == [416, 416]
    img = load_image("e_5_zidane_two_men.jpg")                 # 1280x720, not the 416 square
    dets = det.detect(img)
    assert dets.items and {d.class_id for d in dets.items} == {COCO_CELL_PHONE}
    assert all(abs(d.score - (1 / (1 + np.exp(-3))) ** 2) < 0.01 for d in dets.items)
    sx, sy = 1280 / 416, 720 / 416
    anchors = [(10 * sx, 14 * sy), (23 * sx, 27 * sy), (37 * sx, 58 * sy)]
    for d in dets.items:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720
        # Each box is an anchor scaled from the 416 input back to the frame (clipped at the edges).
        if 0 < x1 and x2 < 1280 and 0 < y1 and y2 < 720:
            assert any(abs((x2 - x1) - aw) < 4 and abs((y2 - y1) - ah) < 4 for aw, ah in anchors), d.box
    centres = np.array([centre(d.box) for d in dets.items])
    assert centres[:, 0].max() > 1100 and centres[:, 1].max() > 600    # the whole frame is covered
    boxes = np.array([d.box for d in dets.items])
    from person_pipeline import box_iou
    for i in range(len(boxes)):
        assert (box_iou(boxes[i], np.delete(boxes, i, axis=0)) <= cfg.NMS_IOU + 1e-9).all()


def test_auto_picks_centernet_before_darknet(config, tmp_path):
    _write_darknet_model(tmp_path, COCO_BOOK)
    os.symlink(CENTERNET, tmp_path / "centernet_mbv3_coco.onnx")
    auto = config.with_overrides(DETECTOR_BACKEND="auto")
    assert create_detector(auto, models_dir=tmp_path).info()["backend"] == "centernet"
    (tmp_path / "centernet_mbv3_coco.onnx").unlink()
    assert create_detector(auto, models_dir=tmp_path).info()["backend"] == "opencv_darknet"
    os.symlink(MIRROR / "nanodet.onnx", tmp_path / "nanodet.onnx")
    assert create_detector(auto, models_dir=tmp_path).info()["backend"] == "nanodet"
