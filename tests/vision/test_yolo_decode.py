"""The real yolo_onnx backend on tiny ONNX graphs whose output is a known tensor.

No YOLO weights are reachable here (see ../shared/models/PROVENANCE.md), so each test builds an
ONNX graph (in tmp_path) with the Ultralytics export's interface: input ``images`` [1,3,H,W],
output [1, 4+nc, N] (cx, cy, w, h in input pixels, then class scores). The output ignores the
image, so the decode path (letterbox mapping, thresholds, per-class NMS, person duplicates)
is checked against hand-computed boxes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, load_vision_config  # noqa: E402
from person_pipeline import COCO_NAMES, DetectorError, YoloOnnxDetector, create_detector  # noqa: E402

FRAME_W, FRAME_H = 1280, 720          # letterboxed into 640x640: scale 0.5, pad_y 140
SCALE, PAD_X, PAD_Y = 0.5, 0.0, 140.0


def _to_input(box, scale=SCALE, pad_x=PAD_X, pad_y=PAD_Y):
    """Frame-pixel x1,y1,x2,y2 -> YOLO cx,cy,w,h in letterboxed input pixels."""
    x1, y1, x2, y2 = box
    ix1, iy1, ix2, iy2 = x1 * scale + pad_x, y1 * scale + pad_y, x2 * scale + pad_x, y2 * scale + pad_y
    return [(ix1 + ix2) / 2, (iy1 + iy2) / 2, ix2 - ix1, iy2 - iy1]


def _prediction_tensor(rows, nc=80, transpose=False, **lb):
    """rows: (frame box, class id, score) -> [1, 4+nc, N] float32 (or [1, N, 4+nc])."""
    pred = np.zeros((4 + nc, len(rows)), dtype=np.float32)
    for j, (box, cid, score) in enumerate(rows):
        pred[:4, j] = _to_input(box, **lb)
        pred[4 + cid, j] = score
    out = pred[None]
    return np.ascontiguousarray(out.transpose(0, 2, 1)) if transpose else out


def _write_model(path: Path, output: np.ndarray, input_hw=(640, 640), names: dict | None = None) -> Path:
    const = numpy_helper.from_array(output, name="pred")
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    # Identity of a fixed initializer: the output ignores the image, as documented above.
    node = helper.make_node("Identity", ["pred"], ["output0"])
    graph = helper.make_graph([node], "fixed_yolo", [inp], [out], initializer=[const])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:  # as Ultralytics' export writes it
        helper.set_model_props(model, {"names": str(names), "imgsz": str(list(input_hw))})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _config(**overrides):
    # The second look re-runs crops; with a fixed output it would only repeat the same boxes.
    base = dict(DETECTOR_SECOND_LOOK=False, DETECTOR_BACKEND="yolo_onnx")
    base.update(overrides)
    return load_vision_config(env={}, **base)


@pytest.fixture()
def frame():
    # Any real-looking BGR frame of the right size: the fixed graph does not read it.
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)


PERSON_A = (100.0, 100.0, 400.0, 700.0)
PERSON_A_SHIFTED = (110.0, 110.0, 410.0, 700.0)     # IoU with A > 0.5: same class, NMS removes it
PERSON_B = (800.0, 60.0, 1200.0, 700.0)
PHONE = (500.0, 300.0, 560.0, 400.0)
PHONE_DUP = (504.0, 304.0, 560.0, 400.0)
LAPTOP_ON_A = (120.0, 400.0, 380.0, 650.0)         # overlaps person A: other class, kept


def _rows():
    return [
        (PERSON_A, 0, 0.90),
        (PERSON_A_SHIFTED, 0, 0.60),
        (PERSON_B, 0, 0.80),
        ((600.0, 100.0, 700.0, 300.0), 0, 0.20),    # below PERSON_CONFIDENCE 0.35
        (PHONE, COCO_CELL_PHONE, 0.30),
        (PHONE_DUP, COCO_CELL_PHONE, 0.28),
        (LAPTOP_ON_A, COCO_LAPTOP, 0.50),
        ((900.0, 500.0, 1000.0, 600.0), COCO_BOOK, 0.20),  # below BOOK_CONFIDENCE 0.25
        ((10.0, 10.0, 200.0, 90.0), 56, 0.95),     # chair: not a class this detector reports
    ]


def _by_class(dets):
    out = {}
    for d in dets.items:
        out.setdefault(d.class_id, []).append(d)
    return out


def test_boxes_map_back_through_letterbox_with_thresholds_and_per_class_nms(tmp_path, frame):
    path = _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()))
    det = create_detector(_config(), models_dir=tmp_path)
    assert isinstance(det, YoloOnnxDetector)
    dets = det.detect(frame)
    assert dets.backend == "yolo_onnx" and dets.frame_size == (FRAME_W, FRAME_H)
    by = _by_class(dets)
    assert sorted(by) == [0, COCO_LAPTOP, COCO_CELL_PHONE]           # no book (threshold), no chair
    assert dets.person_count == 2
    persons = sorted(dets.persons, key=lambda d: d.box[0])
    np.testing.assert_allclose(persons[0].box, PERSON_A, atol=0.01)
    np.testing.assert_allclose(persons[1].box, PERSON_B, atol=0.01)
    assert [round(p.score, 2) for p in persons] == [0.90, 0.80]
    (phone,) = by[COCO_CELL_PHONE]                                     # duplicate phone merged
    np.testing.assert_allclose(phone.box, PHONE, atol=0.01)
    assert phone.label == "cell phone" and phone.score == pytest.approx(0.30, abs=1e-6)
    (laptop,) = by[COCO_LAPTOP]
    np.testing.assert_allclose(laptop.box, LAPTOP_ON_A, atol=0.01)
    assert [d.label for d in dets.banned(det.config.banned_class_ids)] == ["laptop", "cell phone"]
    assert str(path) == det.info()["model_path"]


def test_per_class_thresholds_come_from_config(tmp_path, frame):
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()))
    strict = create_detector(_config(PHONE_CONFIDENCE=0.35, BOOK_CONFIDENCE=0.15, PERSON_CONFIDENCE=0.85),
                             models_dir=tmp_path)
    by = _by_class(strict.detect(frame))
    assert COCO_CELL_PHONE not in by                                     # 0.30 < 0.35
    assert [round(d.score, 2) for d in by[COCO_BOOK]] == [0.20]           # 0.20 >= 0.15
    assert [round(d.score, 2) for d in by[0]] == [0.90]                   # only person A >= 0.85


def test_nms_iou_setting_controls_merging(tmp_path, frame):
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()))
    # With NMS_IOU 0.95 the shifted copy of A survives NMS; it is then caught as a duplicate
    # person (mostly inside A and of similar size), so the person count stays 2.
    loose = create_detector(_config(NMS_IOU=0.95), models_dir=tmp_path)
    dets = loose.detect(frame)
    assert len(_by_class(dets)[COCO_CELL_PHONE]) == 2
    assert dets.person_count == 2


def test_person_inside_person_small_one_kept_similar_one_dropped(tmp_path, frame):
    big = (100.0, 50.0, 700.0, 700.0)
    inner_dup = (150.0, 80.0, 650.0, 690.0)        # inside, 79% of the area: a duplicate
    behind = (500.0, 100.0, 640.0, 330.0)           # inside, small: a person further back
    rows = [(big, 0, 0.9), (inner_dup, 0, 0.5), (behind, 0, 0.6)]
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(rows))
    dets = create_detector(_config(NMS_IOU=0.9), models_dir=tmp_path).detect(frame)
    boxes = sorted(tuple(round(v) for v in d.box) for d in dets.persons)
    assert boxes == [(100, 50, 700, 700), (500, 100, 640, 330)]


def test_transposed_output_and_input_size_read_from_model(tmp_path):
    # A 320x320 export, output [1, N, 84]; a 640x480 frame -> scale 0.5, pad_y 40.
    rows = [((40.0, 20.0, 240.0, 460.0), 0, 0.7), ((300.0, 200.0, 340.0, 260.0), COCO_CELL_PHONE, 0.6)]
    out = _prediction_tensor(rows, transpose=True, scale=0.5, pad_x=0.0, pad_y=40.0)
    _write_model(tmp_path / "yolov8n.onnx", out, input_hw=(320, 320))
    det = create_detector(_config(), models_dir=tmp_path)
    assert det.info()["input_size"] == [320, 320]
    dets = det.detect(np.full((480, 640, 3), 90, dtype=np.uint8))
    by = _by_class(dets)
    np.testing.assert_allclose(by[0][0].box, rows[0][0], atol=0.01)
    np.testing.assert_allclose(by[COCO_CELL_PHONE][0].box, rows[1][0], atol=0.01)


def test_boxes_are_clipped_to_the_frame(tmp_path, frame):
    rows = [((-50.0, -20.0, 300.0, 800.0), 0, 0.9)]  # spills into the letterbox padding
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(rows))
    (p,) = create_detector(_config(), models_dir=tmp_path).detect(frame).persons
    assert p.box == (0.0, 0.0, 300.0, 720.0)


def test_no_detections_gives_empty_result(tmp_path, frame):
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor([((10.0, 10.0, 50.0, 50.0), 0, 0.01)]))
    dets = create_detector(_config(), models_dir=tmp_path).detect(frame)
    assert dets.items == () and dets.person_count == 0


def test_model_with_other_class_count_is_rejected_at_load(tmp_path):
    out = _prediction_tensor([((10.0, 10.0, 50.0, 50.0), 0, 0.9)], nc=3)   # [1, 7, 1]
    _write_model(tmp_path / "yolov8n.onnx", out)
    with pytest.raises(DetectorError, match=r"3 classes.*COCO-80"):
        create_detector(_config(), models_dir=tmp_path)


def test_info_contract(tmp_path):
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()))
    info = create_detector(_config(EXTRA_BANNED_CLASSES="77"), models_dir=tmp_path).info()
    assert info["loaded"] is True and info["backend"] == "yolo_onnx" and info["device"] == "cpu"
    assert info["input_size"] == [640, 640]
    assert info["class_map"] == {0: "person", 63: "laptop", 67: "cell phone", 73: "book", 77: "teddy bear"}
    assert COCO_NAMES[77] == "teddy bear" and len(COCO_NAMES) == 80


def test_auto_prefers_yolo_onnx_over_centernet(tmp_path):
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()))
    (tmp_path / "centernet_mbv3_coco.onnx").write_bytes(b"not loaded: yolo_onnx comes first")
    det = create_detector(_config(DETECTOR_BACKEND="auto"), models_dir=tmp_path)
    assert det.info()["backend"] == "yolo_onnx"


def test_corrupt_model_file_gives_clear_error(tmp_path):
    (tmp_path / "yolov8n.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(DetectorError, match="could not load ONNX model"):
        create_detector(_config(), models_dir=tmp_path)


def test_class_names_metadata_is_checked(tmp_path, frame):
    coco = dict(enumerate(COCO_NAMES))
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()), names=coco)
    assert create_detector(_config(), models_dir=tmp_path).detect(frame).person_count == 2
    other = {**coco, 67: "screwdriver"}      # 80 classes, but not COCO's in the slots the rules use
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(_rows()), names=other)
    with pytest.raises(DetectorError, match=r"class 67 is 'screwdriver'.*'cell phone'"):
        create_detector(_config(), models_dir=tmp_path)


def test_many_candidates_are_bounded(tmp_path, frame):
    # 2000 overlapping person candidates (a noisy frame): still one person, quickly.
    rows = [((100.0 + i % 50, 100.0, 400.0 + i % 50, 700.0), 0, 0.5 + (i % 97) / 1000) for i in range(2000)]
    _write_model(tmp_path / "yolov8n.onnx", _prediction_tensor(rows))
    dets = create_detector(_config(), models_dir=tmp_path).detect(frame)
    assert dets.person_count == 1 and dets.persons[0].score == pytest.approx(0.596, abs=1e-6)
