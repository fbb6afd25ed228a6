"""HUD drawing on real photos: new image returned, input untouched, works with None and tiny frames."""
from __future__ import annotations

import numpy as np
import pytest

from face_pipeline import FaceObservation
from person_pipeline import Detection, Detections
from vision_ui import (AMBER, RED, AlertAnnotator, DetectionBoxAnnotator, FaceAnnotator, Hud, StatusPanelAnnotator,
                       draw_hud)

FACE = FaceObservation(True, 1, yaw_deg=20.0, pitch_deg=-10.0, roll_deg=3.0, ear_left=0.28, ear_right=0.3,
                       iris_offset=0.1, box=(150, 120, 330, 330), confidence=0.9, face_boxes=((150, 120, 330, 330),),
                       landmarks=tuple((150 + 180 * (i % 10) / 10, 120 + 210 * (i // 10) / 10) for i in range(100)))
DETS = Detections((Detection(0, "person", 0.82, (40.0, 60.0, 460.0, 640.0)),
                   Detection(67, "cell phone", 0.41, (300.0, 420.0, 380.0, 560.0))), "test", (480, 640))


@pytest.fixture
def photo(load_image):
    return load_image("a_1_webcam_woman_T1.jpg")  # 480 x 640 portrait webcam capture


def changed(a, b, box=None):
    if box is not None:
        x1, y1, x2, y2 = box
        a, b = a[y1:y2, x1:x2], b[y1:y2, x1:x2]
    return int(np.count_nonzero(np.any(a != b, axis=-1)))


def test_draw_hud_returns_a_new_image_and_leaves_input_untouched(photo):
    before = photo.copy()
    out = draw_hud(photo, FACE, DETS, {"warnings": 2, "warning_limit": 3, "suspicion": 37.2, "label": "Student 7"},
                   ["PROHIBITED_OBJECT: cell phone"])
    assert out is not photo and not np.shares_memory(out, photo)
    assert np.array_equal(photo, before)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert changed(out, photo) > 1000


def test_each_annotator_draws_where_it_should(photo):
    hud = Hud(FACE, DETS, {"warnings": 1}, ["NO_FACE"])
    # the phone's box edge is drawn red
    boxes = DetectionBoxAnnotator().annotate(photo.copy(), hud)
    edge = boxes[480:540, 300]  # left edge of the phone box, below its label
    assert np.all(edge == RED)
    # the face annotator only draws around the face
    face = FaceAnnotator().annotate(photo.copy(), hud)
    assert changed(face, photo, (140, 110, 341, 341)) > 200
    assert changed(face, photo) == changed(face, photo, (140, 110, 341, 341))
    # status panel in the top-left corner only
    panel = StatusPanelAnnotator().annotate(photo.copy(), hud)
    assert changed(panel, photo, (0, 0, 200, 60)) > 500
    assert changed(panel, photo, (0, 300, 480, 640)) == 0
    # alerts: red border and a red label at the bottom
    alerts = AlertAnnotator().annotate(photo.copy(), hud)
    assert np.all(alerts[0, :] == RED) and changed(alerts, photo, (0, 600, 200, 640)) > 300


def test_status_lines_say_what_is_known():
    lines = [t for t, _ in StatusPanelAnnotator().lines(Hud(FACE, DETS, {"warnings": 2, "warning_limit": 3,
                                                                         "suspicion": 41.6}, ()))]
    text = "\n".join(lines)
    for part in ("FACE: yes (1)", "YAW +20", "PITCH -10", "EAR 0.29", "GAZE +0.10", "PERSONS 1",
                 "cell phone 0.41", "WARNINGS 2/3", "SUSPICION 42/100"):
        assert part in text, (part, text)
    unknown = [t for t, _ in StatusPanelAnnotator().lines(Hud(None, None, {}, ()))]
    assert unknown == ["FACE: not analysed", "OBJECTS: not analysed"]


def test_raw_marker(photo):
    raw = draw_hud(photo, None, None, {"raw": True}, [])
    plain = draw_hud(photo, None, None, {}, [])
    assert np.all(raw[:, 0] == AMBER)  # amber border
    assert changed(raw, plain, (380, 0, 480, 60)) > 100  # "RAW" top right


def test_none_observations_and_odd_inputs(load_image):
    photo = load_image("f_5_living_room_empty.jpg")
    out = draw_hud(photo, None, None, None, None)
    assert out.shape == photo.shape
    no_face = draw_hud(photo, FaceObservation(False, 0), Detections((), "test", (224, 224)), {}, [])
    assert no_face.shape == photo.shape
    gray = draw_hud(photo[:, :, 1].copy(), FACE, DETS, {}, ["x"])
    assert gray.shape == photo.shape
    bgra = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    assert draw_hud(bgra, None, None, {}, []).shape == photo.shape


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 9), (59, 80), (64, 48)])
def test_tiny_frames_do_not_fail(photo, size):
    import cv2

    h, w = size
    small = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    before = small.copy()
    out = draw_hud(small, FACE, DETS, {"raw": True, "warnings": 3, "suspicion": 90}, ["MULTIPLE_FACES", "NO_FACE"])
    assert out.shape == (h, w, 3) and np.array_equal(small, before)


@pytest.mark.parametrize("bad", [np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 2), np.uint8), "not an image"])
def test_bad_frames_are_refused_clearly(bad):
    with pytest.raises(ValueError, match="draw_hud needs"):
        draw_hud(bad, None, None, {}, [])


def test_detection_boxes_scale_to_the_hud_frame(photo):
    import cv2

    half = cv2.resize(photo, (240, 320))
    out = DetectionBoxAnnotator().annotate(half.copy(), Hud(None, DETS, {}, ()))
    assert np.all(out[240:280, 150] == RED)  # the phone box's left edge, at half scale


# ---------------------------------------------------------------- hands and the phone at the ear

def test_hands_are_thin_boxes_and_phone_at_ear_is_an_alert(photo):
    from hand_pipeline import Hand
    from vision_ui import PHONE_AT_EAR_ALERT, HandAnnotator

    hand = Hand(box=(60.0, 150.0, 120.0, 230.0), score=0.95)
    dets = Detections(DETS.items, "test", (480, 640), hands=(hand,), phone_at_ear=True)
    hud = Hud(None, dets, {}, ())
    drawn = HandAnnotator().annotate(photo.copy(), hud)
    assert np.all(drawn[160:220, 60] == AMBER) and np.all(drawn[150, 70:110] == AMBER)  # the edges, 1 px
    assert changed(drawn, photo, (62, 152, 119, 229)) == 0                              # inside untouched
    assert changed(drawn, photo) == changed(drawn, photo, (59, 149, 122, 232))           # nothing elsewhere
    # "PHONE AT EAR" joins the alerts (red border, a red line at the bottom) even with no rule alert yet
    alerts = AlertAnnotator().annotate(photo.copy(), hud)
    assert np.all(alerts[0, :] == RED) and changed(alerts, photo, (0, 600, 200, 640)) > 300
    plain = AlertAnnotator().annotate(photo.copy(), Hud(None, DETS, {}, ()))
    assert np.array_equal(plain, photo)                                                  # no signal, no alert
    once = AlertAnnotator().annotate(photo.copy(), Hud(None, dets, {}, (PHONE_AT_EAR_ALERT,)))
    assert np.array_equal(once, alerts)                                                  # not written twice
    text = "\n".join(t for t, _ in StatusPanelAnnotator().lines(hud))
    assert "cell phone 0.41, phone at ear" in text, text


def test_real_detector_output_on_women_on_phones(load_image):
    """b_3 through CenterNet with the hand-guided look: the HUD boxes every hand it found and says PHONE AT EAR."""
    import os
    from pathlib import Path

    from config_vision import load_vision_config
    from person_pipeline import create_detector

    mirror = Path(os.environ.get("PROCTOR_MODEL_MIRROR", Path(__file__).resolve().parents[3] / "shared" / "models"))
    det = create_detector(load_vision_config(env={}, DETECTOR_BACKEND="centernet"), models_dir=mirror)
    image = load_image("b_3_coco536_women_on_phones.jpg")
    try:
        dets = det.detect(image)
    finally:
        det.close()
    assert dets.phone_at_ear and dets.hands
    out = draw_hud(image, None, dets, {}, [])
    for hand in dets.hands:
        x1, y1, x2, y2 = (int(round(v)) for v in hand.box)
        assert changed(out, image, (x1, y1, x2 + 1, y2 + 1)) > 0, hand.box
    without = draw_hud(image, None, Detections(dets.items, dets.backend, dets.frame_size), {}, [])
    h = image.shape[0]
    assert np.all(out[0, :] == RED) and not np.all(without[0, :] == RED)
    assert changed(out, without, (0, h - 30, 150, h)) > 200  # the alert line at the bottom


# ---------------------------------------------------------------- evidence pictures and text that fits

PHONE_DETAILS = {"objects": [{"label": "cell phone", "class_id": 67, "score": 0.71, "box": [300, 420, 380, 560]},
                             {"label": "phone at ear", "class_id": 67}],
                 "phone_at_ear": True, "since": 1764776410.3, "duration_s": 1.5}


def test_wrap_text_fits_the_width_and_says_when_it_stops():
    import cv2

    from vision_ui import FONT, wrap_text

    text = "Prohibited object seen for 1.5 s: cell phone (0.71), phone at ear. " + "x" * 80
    for width in (60, 150, 308, 1268):
        lines = wrap_text(text, width, 0.3)
        assert all(cv2.getTextSize(line, FONT, 0.3, 1)[0][0] <= width for line in lines), (width, lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost, only broken
    short = wrap_text(text, 150, 0.3, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("...") and cv2.getTextSize(short[-1], FONT, 0.3, 1)[0][0] <= 150
    assert wrap_text("", 100, 0.3) == [] and wrap_text("a b", 100, 0.3, max_lines=0) == []


def test_rule_reasons_name_what_was_seen():
    from config_vision import RULES
    from vision_ui import evidence_caption, rule_reason

    assert rule_reason("PROHIBITED_OBJECT", PHONE_DETAILS) == \
        "Prohibited object seen for 1.5 s: cell phone (0.71), phone at ear."
    assert rule_reason("MULTIPLE_FACES", {"face_count": 1, "persons": 2, "duration_s": 1.5}) == \
        "More than one person for 1.5 s: 1 faces, 2 persons."
    assert "yaw +42 deg" in rule_reason("DISTRACTION", {"cause": "head_turned", "yaw_deg": 41.8, "pitch_deg": -3})
    assert "frozen frames" in rule_reason("CAMERA_OFF", {"cause": "frozen"})
    assert rule_reason("TAB_SWITCH", {"hidden_ms": 1200}) == "Tab switch."
    for rule in RULES:  # every rule says something, whatever its details hold (or not)
        assert rule_reason(rule, {}) and rule_reason(rule, {"objects": "junk", "duration_s": "x"})
    title, reason = evidence_caption("PROHIBITED_OBJECT", PHONE_DETAILS, 1764776411.2, 1764776411.8)
    assert title == "PROHIBITED_OBJECT 2025-12-03 15:40:11.2 UTC"
    assert reason.endswith("Fired 0.6 s after this frame.")


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 720)])
def test_the_evidence_caption_says_everything_within_the_frame(photo, size):
    """The rule, the time and the whole reason, wrapped to the width; boxes drawn; no warning counter."""
    import cv2

    from vision_ui import FONT, _scale, draw_evidence, evidence_caption, wrap_text

    w, h = size
    frame = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    out = draw_evidence(frame, FACE, DETS, "PROHIBITED_OBJECT", PHONE_DETAILS, 1764776411.2, 1764776411.8, "Ada")
    scale = _scale(out)
    title, reason = evidence_caption("PROHIBITED_OBJECT", PHONE_DETAILS, 1764776411.2, 1764776411.8)
    lines = wrap_text(title, w - 12, scale, 2) + wrap_text(reason, w - 12, scale)
    assert " ".join(lines[1:]) == reason and not any(line.endswith("...") for line in lines)  # nothing cut off
    assert all(cv2.getTextSize(line, FONT, scale, 1)[0][0] <= w - 12 for line in lines)
    # The caption band is as tall as its lines: darkened from its top row down, the photo above it.
    line_h = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] * 1.8) + 3
    top = h - line_h * len(lines) - 6
    band, above = (slice(top + 1, top + 3), slice(20, w // 4)), (slice(top - 3, top - 1), slice(20, w // 4))
    assert out[band].astype(int).mean() < 0.5 * frame[band].astype(int).mean()
    assert changed(out[above], frame[above]) <= 0.1 * out[above].shape[0] * out[above].shape[1]  # a box's edge at most
    # The phone's box (scaled from the detector's 480 x 640 frame) is drawn, in red, over the caption if need be.
    sx, sy = w / 480, h / 640
    x1, y1, y2 = int(round(300 * sx)), int(round(420 * sy)), int(round(560 * sy))
    assert np.all(out[y1 + 5:y2 - 5, x1] == RED)


def test_long_alerts_wrap_instead_of_being_cut(photo):
    """The live view's alert line: the whole message on two lines, where it used to stop at 60 characters."""
    import cv2

    from vision_ui import FONT, _scale

    alert = "PROHIBITED_OBJECT: A prohibited object (phone, book or laptop) is visible. Put it away."
    out = AlertAnnotator().annotate(photo.copy(), Hud(None, None, {}, (alert,)))
    h = photo.shape[0]
    line_h = int(cv2.getTextSize("Ag", FONT, _scale(photo), 1)[0][1] * 1.9) + 2
    second_last = out[h - 6 - line_h - 4, 5:60]  # inside the label of the line above the last one
    assert np.count_nonzero(np.all(second_last == RED, axis=-1)) > 15  # red label between the black letters
