"""`flask analyze` and `flask verify-face` on real photos and on small videos made from them.

The app is built with a database URL nothing listens on: the commands must not touch the database.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.photos import cover

REPO_ROOT = Path(__file__).resolve().parents[2]

DEAD_DATABASE = "mysql+pymysql://nobody@127.0.0.1:9/no_such_database"  # port 9 (discard): nothing answers


def models_dir() -> Path:
    for d in (REPO_ROOT / "models", REPO_ROOT.parent / "shared" / "models"):
        if (d / "centernet_mbv3_coco.onnx").is_file() or any(d.glob("*.onnx")):
            return d
    pytest.fail("no detector model in models/ or ../shared/models (scripts/setup.sh installs one)")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from proctor import create_app

    instance = tmp_path_factory.mktemp("instance")
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": DEAD_DATABASE, "INSTANCE_PATH": instance,
                       "SECRET_KEY": "cli-test", "PROCTOR_DATA_DIR": str(instance / "data")})


def run_cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(map(str, args)))
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, lines




def contain(image, size):
    """Scale to fit inside ``size`` (w, h), on a grey background (the whole picture stays visible)."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    scaled = cv2.resize(image, (round(iw * s), round(ih * s)), interpolation=cv2.INTER_AREA)
    out = np.full((h, w, 3), 90, np.uint8)
    y, x = (h - scaled.shape[0]) // 2, (w - scaled.shape[1]) // 2
    out[y:y + scaled.shape[0], x:x + scaled.shape[1]] = scaled
    return out


def write_video(path: Path, segments, fps=10, size=(480, 640), fit=cover):
    """segments: [(image, seconds)]; each frame gets webcam-like noise and a small shift (not frozen)."""
    import cv2

    rng = np.random.default_rng(5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for image, seconds in segments:
        base = fit(image, size)
        for _ in range(int(round(seconds * fps))):
            dx, dy = rng.integers(-3, 4, 2)
            frame = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), size, borderMode=cv2.BORDER_REPLICATE)
            frame = np.clip(frame.astype(np.float32) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
            writer.write(frame)
    writer.release()
    return path


def test_images_face_counts_objects_and_overlays(app, testdata_dir, tmp_path):
    photos = ["a_1_webcam_woman_T1.jpg", "a_3_face_closeup_sergey.png", "e_5_zidane_two_men.jpg",
              "e_2_three_business.jpg", "f_1_coco133_loft_desk_chair.jpg", "b_3_coco536_women_on_phones.jpg",
              "c_1_coco446_woman_bookshelf.jpg", "d_3_woman_holding_xo_laptop.jpg"]
    overlay = tmp_path / "hud"
    result, lines = run_cli(app, "analyze", *(testdata_dir / p for p in photos), "--overlay", overlay,
                            "--models-dir", models_dir())
    assert result.exit_code == 0, result.output
    by = {Path(line["file"]).name: line for line in lines}
    assert set(by) == set(photos)
    expected_faces = {"a_1_webcam_woman_T1.jpg": 1, "a_3_face_closeup_sergey.png": 1, "e_5_zidane_two_men.jpg": 2,
                      "e_2_three_business.jpg": 3, "f_1_coco133_loft_desk_chair.jpg": 0}
    for name, count in expected_faces.items():
        assert by[name]["face_count"] == count, by[name]
        assert by[name]["face_detected"] is (count > 0)
    for key in ("yaw_deg", "pitch_deg", "ear", "iris_offset", "persons", "objects"):
        assert key in by["a_1_webcam_woman_T1.jpg"]
    assert isinstance(by["a_1_webcam_woman_T1.jpg"]["yaw_deg"], float)
    assert by["f_1_coco133_loft_desk_chair.jpg"]["yaw_deg"] is None
    assert by["f_1_coco133_loft_desk_chair.jpg"]["persons"] == 0
    labels = {name: {o["label"] for o in by[name]["objects"]} for name in by}
    assert "cell phone" in labels["b_3_coco536_women_on_phones.jpg"]
    assert "book" in labels["c_1_coco446_woman_bookshelf.jpg"]
    assert "laptop" in labels["d_3_woman_holding_xo_laptop.jpg"]
    phone = next(o for o in by["b_3_coco536_women_on_phones.jpg"]["objects"] if o["label"] == "cell phone")
    assert 0 < phone["score"] <= 1 and len(phone["box"]) == 4
    # the hand look's phone at the ear (b_3: two women hold phones to their ears), on no one else
    assert by["b_3_coco536_women_on_phones.jpg"]["phone_at_ear"] is True
    assert by["a_1_webcam_woman_T1.jpg"]["phone_at_ear"] is False
    # one overlay per photo, a real JPEG of the photo's size
    import cv2

    for name, line in by.items():
        written = cv2.imread(line["overlay"])
        original = cv2.imread(str(testdata_dir / name))
        assert written is not None and written.shape == original.shape
    assert len(list(overlay.glob("*.jpg"))) == len(photos)


def test_video_reports_frames_and_a_no_face_event(app, load_image, tmp_path):
    video = write_video(tmp_path / "clip.avi", [(load_image("a_1_webcam_woman_T1.jpg"), 3.0),
                                                (load_image("f_5_living_room_empty.jpg"), 4.0),
                                                (load_image("a_1_webcam_woman_T1.jpg"), 2.0)])
    result, lines = run_cli(app, "analyze", video, "--fps", 5, "--overlay", tmp_path / "hud", "--no-detector")
    assert result.exit_code == 0, result.output
    frames = [line for line in lines if line.get("kind") == "video"]
    events = [line for line in lines if "event" in line]
    summary = [line for line in lines if line.get("kind") == "summary"]
    assert len(frames) == 45 and [f["t"] for f in frames[:3]] == [0.0, 0.2, 0.4]
    assert all(f["face_count"] == 1 for f in frames if f["t"] < 3.0)
    room = [f["face_count"] for f in frames if 3.0 <= f["t"] < 7.0]
    # the real face counter may flicker on a frame or two of furniture; the rule's hysteresis absorbs that
    assert room.count(0) >= 0.9 * len(room), room
    assert all(f["persons"] is None and f["objects"] == [] for f in frames)  # --no-detector
    no_face = [e for e in events if e["event"] == "NO_FACE"]
    assert [e["state"] for e in no_face] == ["started", "ended"], events
    assert no_face[0]["t"] == pytest.approx(6.0) and no_face[0]["since"] == pytest.approx(3.0)
    assert no_face[0]["warning_issued"] is True
    assert (no_face[0]["incident"], no_face[0]["incident_opened"], no_face[0]["warning_count"]) == (1, True, 1)
    assert "incident" not in no_face[1]  # an end is not a warning
    assert no_face[1]["cleared_at"] == pytest.approx(7.0)
    assert [e for e in events if e["event"] == "CAMERA_OFF"] == []  # noisy real frames are not "frozen"
    assert summary and summary[0]["frames_analysed"] == 45 and summary[0]["warnings"] >= 1
    assert "NO_FACE" in summary[0]["suspicion_explanation"]
    assert len(list((tmp_path / "hud").glob("clip_t*_hud.jpg"))) == 45


def test_unreadable_files_are_reported_and_the_rest_still_analysed(app, testdata_dir, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    photo = testdata_dir / "a_3_face_closeup_sergey.png"
    result, lines = run_cli(app, "analyze", text, tmp_path / "missing.png", photo, junk, tmp_path, "--no-detector")
    assert result.exit_code == 1
    by = {line["file"]: line for line in lines}
    assert by[str(text)]["error"] == "not a readable image"
    assert by[str(tmp_path / "missing.png")]["error"] == "no such file"
    assert "error" in by[str(junk)] and "error" in by[str(tmp_path)]
    assert by[str(photo)]["face_count"] == 1
    assert "4 of 5 file(s) could not be analysed" in result.stderr


def test_bad_options_are_refused(app, testdata_dir):
    photo = testdata_dir / "a_3_face_closeup_sergey.png"
    result, _ = run_cli(app, "analyze", photo, "--set", "TIME_NO_FACE_S=-4")
    assert result.exit_code == 2 and "TIME_NO_FACE_S" in result.stderr
    result, _ = run_cli(app, "analyze", photo, "--set", "nonsense")
    assert result.exit_code == 2 and "NAME=VALUE" in result.stderr
    result, _ = run_cli(app, "analyze", photo, "--fps", 0)
    assert result.exit_code == 2
    result, _ = run_cli(app, "analyze", photo, "--set", "DETECTOR_BACKEND=yolo_onnx", "--models-dir", testdata_dir)
    assert result.exit_code == 1 and "yolo_onnx" in result.stderr


def test_verify_face(app, testdata_dir, tmp_path):
    ident = testdata_dir / "identity"
    blank = tmp_path / "blank.png"
    blank.write_bytes(b"")
    result, lines = run_cli(app, "verify-face", ident / "obama.jpg", ident / "obama2.jpg", ident / "biden.jpg",
                            testdata_dir / "f_5_living_room_empty.jpg", blank)
    assert result.exit_code == 1
    by = {Path(line["probe"]).name: line for line in lines}
    assert by["obama2.jpg"]["face_found"] is True and by["obama2.jpg"]["match"] is True
    assert by["biden.jpg"]["match"] is False and by["biden.jpg"]["distance"] > by["obama2.jpg"]["distance"]
    assert by["f_5_living_room_empty.jpg"] == {**by["f_5_living_room_empty.jpg"], "face_found": False, "match": None}
    assert by["obama2.jpg"]["presentation_attack"]["spoof"] is False
    assert by["f_5_living_room_empty.jpg"]["presentation_attack"] is None
    assert "error" in by["blank.png"]
    # an enrolment photo with no face is refused with the reason
    result, _ = run_cli(app, "verify-face", testdata_dir / "f_5_living_room_empty.jpg", ident / "obama.jpg")
    assert result.exit_code == 1 and "no face" in result.stderr


def test_verify_face_refuses_a_face_on_a_phone_screen(app, testdata_dir):
    """b_1 is a phone showing a face held to the webcam: enrolled from that very picture, identity alone
    matches it, but a picture of a face never matches (presentation_attack.py)."""
    b_1 = testdata_dir / "b_1_phone_held_to_webcam.jpg"
    result, lines = run_cli(app, "verify-face", b_1, b_1)
    assert result.exit_code == 0, result.output
    line = lines[0]
    assert line["distance"] < line["threshold"] and line["presentation_attack"]["spoof"] is True
    assert line["match"] is False and line["presentation_attack"]["reason"]
    result, lines = run_cli(app, "verify-face", b_1, b_1, "--set", "PA_CHECK_ENABLED=false")
    assert lines[0]["match"] is True and lines[0]["presentation_attack"] is None


def test_verify_face_with_a_saved_embedding(app, testdata_dir, tmp_path):
    import cv2
    from config_vision import load_vision_config
    from face_identity import FaceIdentity, embedding_to_bytes

    identity = FaceIdentity(load_vision_config(env={}))
    enrolment = identity.enrol(cv2.imread(str(testdata_dir / "identity" / "obama.jpg")))
    assert enrolment.ok, enrolment.error
    raw, npy = tmp_path / "obama.emb", tmp_path / "obama.npy"
    raw.write_bytes(embedding_to_bytes(enrolment.embedding))
    np.save(npy, enrolment.embedding)
    for enrolled in (raw, npy):
        result, lines = run_cli(app, "verify-face", enrolled, testdata_dir / "identity" / "obama2.jpg")
        assert result.exit_code == 0, result.output
        assert lines[0]["match"] is True
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(5))
    result, _ = run_cli(app, "verify-face", bad, testdata_dir / "identity" / "obama2.jpg")
    assert result.exit_code == 2 and "128" in result.stderr


def test_video_identity_mismatch_with_student_embedding(app, testdata_dir, tmp_path):
    import cv2

    obama = cv2.imread(str(testdata_dir / "identity" / "obama.jpg"))
    biden = cv2.imread(str(testdata_dir / "identity" / "biden.jpg"))
    video = write_video(tmp_path / "swap.avi", [(obama, 2.0), (biden, 5.0)], size=(640, 480), fit=contain)
    result, lines = run_cli(app, "analyze", video, "--fps", 1, "--no-detector",
                            "--student-embedding", testdata_dir / "identity" / "obama2.jpg")
    assert result.exit_code == 0, result.output
    frames = [line for line in lines if line.get("kind") == "video"]
    assert all(f["identity_match"] is True for f in frames if f["t"] < 2.0)
    assert all(f["identity_match"] is False for f in frames if f["t"] >= 2.0)
    mismatch = [e for e in lines if e.get("event") == "IDENTITY_MISMATCH"]
    # Checked on every sampled frame (1 fps): the second agreeing check (t=3, IDENTITY_MISMATCH_MIN_CHECKS)
    # starts TIME_IDENTITY_MISMATCH_S (3 s).
    assert [e["state"] for e in mismatch] == ["started"] and mismatch[0]["t"] == pytest.approx(6.0)
