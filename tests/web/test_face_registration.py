"""Face registration and identity confirmation through the real routes, with real photos
(../shared/testdata) and the real face stage (face_identity + face_pipeline), on both databases.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tests.conftest import csrf_token
from tests.vision.conftest import TESTDATA
from tests.web.test_exam_flow import make_exam

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def photo():
    import cv2

    if not TESTDATA.is_dir():
        pytest.fail(f"test photos not found at {TESTDATA} (set PROCTOR_TESTDATA)")

    def _load(name: str):
        img = cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    return _load


def jpeg(img, quality: int = 92) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def upload(client, data: bytes, mime: str = "image/jpeg", name: str = "me.jpg", exam_id=None):
    token = csrf_token(client, "/student/face")
    url = "/student/face" + (f"?exam={exam_id}" if exam_id else "")
    return client.post(url, data={"csrf_token": token, "photo": (io.BytesIO(data), name, mime)},
                       content_type="multipart/form-data")


def profile_of(app, email="student@example.edu"):
    from proctor.accounts import find_by_email
    from proctor.extensions import db
    from proctor.models import Profile

    with app.app_context():
        sid = find_by_email(email).id
        return db.session.scalar(select(Profile).where(Profile.student_id == sid))


def test_clear_single_face_is_registered(app, student_client, photo):
    resp = upload(student_client, (TESTDATA / "a_1_webcam_woman_T1.jpg").read_bytes())
    assert resp.status_code == 302, resp.get_data(as_text=True)[-800:]
    prof = profile_of(app)
    from face_identity import TEMPLATE_BYTES, TEMPLATE_SIZE, embedding_from_bytes, has_faceres

    assert prof is not None and len(prof.embedding) == TEMPLATE_BYTES  # dlib's vector and FaceRes's
    emb = embedding_from_bytes(prof.embedding)
    assert emb.shape == (TEMPLATE_SIZE,) and has_faceres(emb) and np.isfinite(emb).all() and np.linalg.norm(emb[:128]) > 0
    stored = Path(app.config["PROCTOR_DATA_DIR"]) / prof.image_path
    assert stored.is_file() and stored.read_bytes()[:2] == b"\xff\xd8"
    quality = json.loads(prof.quality)
    assert quality["face_count"] == 1 and quality["face_px"] > 100
    page = student_client.get("/student/face").get_data(as_text=True)
    assert "You registered a face" in page


@pytest.mark.parametrize("case, expected", [
    ("f_5_living_room_empty.jpg", "no face found"),
    ("e_2_three_business.jpg", "faces found: exactly one person must be in the picture"),
    ("e_5_zidane_two_men.jpg", "faces found: exactly one person must be in the picture"),
    ("dark", "too dark"),
    ("blurred", "too blurry"),
])
def test_unusable_photos_are_refused_with_the_precise_reason(app, student_client, photo, case, expected):
    import cv2

    if case == "dark":  # the same clear photo in a dim room
        data = jpeg((photo("a_1_webcam_woman_T1.jpg").astype(np.float32) * 0.15).astype(np.uint8))
    elif case == "blurred":  # out of focus
        data = jpeg(cv2.GaussianBlur(photo("a_1_webcam_woman_T1.jpg"), (0, 0), 6))
    else:
        data = (TESTDATA / case).read_bytes()
    resp = upload(student_client, data)
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "This photo cannot be used" in page and expected in page, page[-1500:]
    assert profile_of(app) is None


def test_bad_uploads_are_clear_errors(app, student_client, photo):
    assert "Choose a photo" in student_client.post(
        "/student/face", data={"csrf_token": csrf_token(student_client, "/student/face")},
        content_type="multipart/form-data").get_data(as_text=True)
    r = upload(student_client, b"%PDF-1.4 not an image", mime="application/pdf", name="cv.pdf")
    assert r.status_code == 415 and "JPEG, PNG or WebP" in r.get_data(as_text=True)
    r = upload(student_client, b"\xff\xd8\xff\xe0 truncated garbage")
    assert r.status_code == 400 and "not a readable JPEG" in r.get_data(as_text=True)
    tiny = jpeg(photo("a_1_webcam_woman_T1.jpg")[:40, :40])
    r = upload(student_client, tiny)
    assert r.status_code == 400 and "too small" in r.get_data(as_text=True)
    big = b"\xff\xd8" + bytes(6 * 1024 * 1024)
    r = upload(student_client, big)
    assert r.status_code == 413
    assert profile_of(app) is None


def test_registration_is_locked_during_an_exam(app, student_client, photo):
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    exam_id = make_exam(app)
    from proctor import exam_service as svc
    from proctor.accounts import find_by_email

    with app.app_context():
        svc.start_session(find_by_email("student@example.edu").id, exam_id)
    before = profile_of(app).embedding
    r = upload(student_client, (TESTDATA / "identity/biden.jpg").read_bytes())
    assert r.status_code == 409 and "while an exam is in progress" in r.get_data(as_text=True)
    assert profile_of(app).embedding == before


# --- identity confirmation ---------------------------------------------------------------------

def data_url(img) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(img, 85)).decode()


def post_frame(client, exam_id, img, ts, restart=False):
    token = csrf_token(client, f"/student/exams/{exam_id}/confirm")
    return client.post(f"/api/exam/{exam_id}/identity-frame", headers={"X-CSRFToken": token},
                       content_type="application/json",
                       data=json.dumps({"image": data_url(img), "ts": ts, "restart": restart}))


def _set_liveness(app, exam_id, required: bool):
    from proctor.extensions import db
    from proctor.models import Exam

    with app.app_context():
        db.session.get(Exam, exam_id).require_liveness = required
        db.session.commit()


def test_confirmation_same_person_other_photo_passes_without_liveness(app, student_client, photo):
    exam_id = make_exam(app)
    _set_liveness(app, exam_id, False)
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    live = photo("identity/obama2.jpg")
    bodies = [post_frame(student_client, exam_id, live, i * 250, restart=(i == 0)).get_json() for i in range(3)]
    assert all(b["face_found"] and b["match"] for b in bodies), bodies
    assert bodies[-1]["confirmed"] is True and bodies[-1]["next"].endswith(f"/exams/{exam_id}/ready")
    assert bodies[-1]["liveness"] == {"required": False, "passed": True, "reason": "not required for this exam"}
    # A new registration voids the confirmation: the live face must be checked against the new one.
    token = csrf_token(student_client, "/student/")
    student_client.post("/api/exam/system-check", headers={"X-CSRFToken": token}, content_type="application/json",
                        data=json.dumps({"camera": True, "microphone": True, "browser": True, "upload": True}))
    student_client.post("/student/rules", data={"csrf_token": token, "accept": "yes"})
    assert student_client.get(f"/student/exams/{exam_id}/ready").status_code == 200
    assert upload(student_client, (TESTDATA / "identity/obama2.jpg").read_bytes()).status_code == 302
    r = student_client.get(f"/student/exams/{exam_id}/ready")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/exams/{exam_id}/confirm")


def test_confirmation_by_a_different_person_is_refused(app, student_client, photo):
    exam_id = make_exam(app)
    _set_liveness(app, exam_id, False)
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    other = photo("identity/biden.jpg")
    bodies = [post_frame(student_client, exam_id, other, i * 250, restart=(i == 0)).get_json() for i in range(4)]
    assert all(b["face_found"] and b["match"] is False for b in bodies)
    assert bodies[-1]["confirmed"] is False
    assert bodies[-1]["refused"] == "the face on camera does not match your registered face"
    assert student_client.get(f"/student/exams/{exam_id}/ready").status_code == 302  # not ready: sent back


def test_confirmation_frame_with_two_people_counts_for_nothing(app, student_client, photo):
    exam_id = make_exam(app)
    _set_liveness(app, exam_id, False)
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    crowd = photo("e_5_zidane_two_men.jpg")
    bodies = [post_frame(student_client, exam_id, crowd, i * 250, restart=(i == 0)).get_json() for i in range(3)]
    assert all(b["faces"] >= 2 and b["match"] is None and b["matched_frames"] == 0 for b in bodies), bodies
    assert bodies[-1]["confirmed"] is False and bodies[-1]["refused"] is None


def test_liveness_refuses_a_still_photo_and_passes_a_turning_head(app, student_client, photo):
    import cv2

    exam_id = make_exam(app)  # liveness required (the default)
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    still = photo("identity/obama2.jpg")
    last = None
    for i in range(12):  # a held-up photo: 12 s of the same picture
        last = post_frame(student_client, exam_id, still, i * 1000, restart=(i == 0)).get_json()
    assert last["match"] is True and last["matched_frames"] >= 3
    assert last["confirmed"] is False and last["liveness"]["passed"] is False
    assert "no blink or head turn" in last["liveness"]["reason"]
    # The same person's head turned one way, then the other (the photo and its mirror image):
    # the face stage measures the yaw swing, and liveness passes.
    frames = [still, cv2.flip(still, 1), still]
    bodies = [post_frame(student_client, exam_id, f, i * 500, restart=(i == 0)).get_json() for i, f in enumerate(frames)]
    assert bodies[-1]["liveness"]["passed"] is True and "head turn" in bodies[-1]["liveness"]["reason"]
    assert bodies[-1]["confirmed"] is True


def test_identity_frame_bad_input(app, student_client, photo):
    exam_id = make_exam(app)
    token = csrf_token(student_client, "/student/")

    def send(body):
        return student_client.post(f"/api/exam/{exam_id}/identity-frame", headers={"X-CSRFToken": token},
                                   content_type="application/json", data=json.dumps(body))

    img = photo("identity/obama2.jpg")
    assert send({"image": data_url(img), "ts": 0}).status_code == 409  # nothing registered yet
    assert upload(student_client, (TESTDATA / "identity/obama.jpg").read_bytes()).status_code == 302
    for body in [{"image": "http://example.com/x.jpg", "ts": 0}, {"image": "data:image/jpeg;base64,@@@", "ts": 0},
                 {"image": data_url(img), "ts": -5}, {"image": data_url(img), "ts": "now"},
                 {"image": data_url(img), "ts": 0, "restart": "yes"},
                 {"image": "data:image/jpeg;base64," + base64.b64encode(b"garbage").decode(), "ts": 0}]:
        r = send(body)
        assert r.status_code == 400 and r.get_json()["error"], body
    assert student_client.post(f"/api/exam/999/identity-frame", headers={"X-CSRFToken": token},
                               content_type="application/json",
                               data=json.dumps({"image": data_url(img), "ts": 0})).status_code == 404
