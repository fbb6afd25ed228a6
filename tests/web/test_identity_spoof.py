"""Identity confirmation refuses a face on a phone screen (presentation_attack.py behind
/api/exam/<id>/identity-frame), with the real routes, the real face stage and real photos, on both
databases. b_1 (a phone showing a face, held to the webcam) is registered as the student's own face,
so identity alone would confirm it (distance about 0): only the presentation check refuses it.
A real face still confirms."""
from __future__ import annotations

import logging

import pytest

from tests.vision.conftest import TESTDATA
from tests.web.test_exam_flow import make_exam
from tests.web.test_face_registration import _set_liveness, photo, post_frame, upload  # noqa: F401 - photo: a fixture

pytestmark = pytest.mark.timeout(600)
SPOOF = "b_1_phone_held_to_webcam.jpg"


def _register_and_send(app, client, registered: str, live, frames: int = 3):
    exam_id = make_exam(app)
    _set_liveness(app, exam_id, False)
    assert upload(client, (TESTDATA / registered).read_bytes()).status_code == 302
    bodies = [post_frame(client, exam_id, live, i * 250, restart=(i == 0)).get_json() for i in range(frames)]
    return exam_id, bodies


def test_a_face_on_a_phone_is_refused_and_never_matches(app, student_client, photo, caplog):
    from proctor.student.exam_api import SPOOF_REFUSAL

    caplog.set_level(logging.WARNING, logger="proctor.student.exam_api")
    exam_id, bodies = _register_and_send(app, student_client, SPOOF, photo(SPOOF))
    for b in bodies:
        assert b["faces"] == 1 and b["spoof"] is True and b["match"] is False, b
        assert b["distance"] < 0.2 and b["matched_frames"] == 0  # the same picture: identity alone would match
    assert bodies[-1]["confirmed"] is False and "next" not in bodies[-1]
    assert bodies[-1]["refused"] == SPOOF_REFUSAL == "the camera must see your own face, not a photo or a screen"
    assert bodies[-1]["refused_kind"] == "spoof"
    assert [b["refused"] for b in bodies[:-1]] == [None] * (len(bodies) - 1)  # refused at the mismatch count (3)
    # Recorded as the failed confirmations are: a warning naming the student, the exam and why.
    refusals = [r.getMessage() for r in caplog.records if "identity confirmation refused" in r.getMessage()]
    assert len(refusals) == 1 and f"exam {exam_id}" in refusals[0] and "screen or a photo" in refusals[0]
    # Refused: a further frame changes nothing, and the exam stays closed.
    again = post_frame(student_client, exam_id, photo(SPOOF), 1000).get_json()
    assert again["refused"] == SPOOF_REFUSAL and again["confirmed"] is False
    assert student_client.get(f"/student/exams/{exam_id}/ready").status_code == 302


def test_a_real_face_confirms_and_is_not_a_spoof(app, student_client, photo):
    exam_id, bodies = _register_and_send(app, student_client, "identity/obama.jpg", photo("identity/obama2.jpg"))
    assert all(b["spoof"] is False and b["match"] is True for b in bodies), bodies
    assert bodies[-1]["confirmed"] is True and bodies[-1]["refused"] is None and bodies[-1]["refused_kind"] is None
    assert bodies[-1]["next"].endswith(f"/exams/{exam_id}/ready")


def test_the_switch_off_leaves_identity_alone_to_decide(app, student_client, photo):
    """PA_CHECK_ENABLED off: the same b_1 frames confirm (so it is the presentation check that refuses above)."""
    app.config["PROCTOR_VISION_OVERRIDES"] = {"PA_CHECK_ENABLED": False}
    _, bodies = _register_and_send(app, student_client, SPOOF, photo(SPOOF))
    assert all(b["spoof"] is None and b["match"] is True for b in bodies), bodies
    assert bodies[-1]["confirmed"] is True
