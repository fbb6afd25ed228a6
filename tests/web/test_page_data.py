"""The pages get the rule registry rendered from config_vision (proctor/page_data.py): the JSON data
block parses, and its thresholds are the server's own vision settings, overrides included."""
from __future__ import annotations

import json
import re

import pytest

import config_vision
from tests.conftest import _test_config, login, make_user
from tests.web.test_exam_flow import _started, make_exam

BLOCK_RE = re.compile(r'<script type="application/json" id="proctor-rules">(.*?)</script>', re.S)


def rendered_facts(html: str) -> dict:
    blocks = BLOCK_RE.findall(html)
    assert len(blocks) == 1, "expected exactly one #proctor-rules block"
    return json.loads(blocks[0])


def camera_thresholds(facts: dict) -> dict:
    return facts["rules"]["CAMERA_OFF"]["thresholds"]


def test_monitor_page_renders_the_registry_and_the_server_settings(app, admin_client):
    html = admin_client.get("/admin/monitor").get_data(as_text=True)
    facts = rendered_facts(html)
    server = config_vision.load_vision_config()
    assert camera_thresholds(facts) == {"black_frame_mean": server.BLACK_FRAME_MEAN, "hold_s": server.TIME_CAMERA_OFF_S}
    assert facts["order"] == list(config_vision.RULES)
    for r in config_vision.RULE_REGISTRY:
        got = facts["rules"][r.name]
        assert (got["message"], got["title"], got["severity"]) == (r.message, r.title, r.severity)
    from proctor.live.events import ADMIN_EVENTS
    from proctor.sockets import ADMIN_EVENTS as EMITTED

    assert facts["admin_events"] == list(ADMIN_EVENTS)
    assert set(ADMIN_EVENTS) == set(EMITTED)  # what the socket layer pushes is what the page listens to
    # common.js first, then the admin module that reads the block, then the page's own module
    scripts = re.findall(r'<script src="/static/js/([^"]+)"', html)
    assert scripts.index("common.js") < scripts.index("admin/live.js") < scripts.index("admin/monitor.js")


def test_exam_page_thresholds_follow_the_app_and_the_exam_overrides(database_url, tmp_path):
    from proctor import create_app
    from proctor.extensions import db
    from proctor.live import get_runtime
    from proctor.models import Exam

    config = _test_config(database_url, tmp_path / "instance")
    config["PROCTOR_VISION_OVERRIDES"] = {"BLACK_FRAME_MEAN": 20, "TIME_CAMERA_OFF_S": 7, "VOICE_MARGIN_DB": 22}
    config["PROCTOR_LIVE_ENABLED"] = False
    app = create_app(config)
    try:
        with app.app_context():
            from tests.conftest import _empty_all_tables

            _empty_all_tables(db)
        make_user(app, "student@example.edu")
        client = app.test_client()
        assert login(client, "student@example.edu").status_code == 302
        exam_id = make_exam(app)
        session_id = _started(app, exam_id=exam_id)
        page = client.get(f"/student/sessions/{session_id}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        facts = rendered_facts(html)
        assert camera_thresholds(facts) == {"black_frame_mean": 20.0, "hold_s": 7.0}
        assert facts["rules"]["VOICE_DETECTED"]["thresholds"]["margin_db"] == 22.0
        for r in config_vision.RULE_REGISTRY:
            assert facts["rules"][r.name]["message"] == r.message
        scripts = re.findall(r'<script src="/static/js/([^"]+)"', html)
        assert scripts.index("common.js") < scripts.index("student/proctor.js")

        # the exam's own threshold overrides (as the live runtime applies them) reach its page
        with app.app_context():
            db.session.get(Exam, exam_id).thresholds = json.dumps({"TIME_CAMERA_OFF_S": 11})
            db.session.commit()
        facts = rendered_facts(client.get(f"/student/sessions/{session_id}").get_data(as_text=True))
        assert camera_thresholds(facts) == {"black_frame_mean": 20.0, "hold_s": 11.0}
    finally:
        get_runtime(app).stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_data_block_is_html_safe(app, monkeypatch):
    """A message with markup cannot close the script element or inject HTML."""
    import dataclasses

    from proctor.page_data import rules_script

    original = config_vision.rule("TAB_SWITCH")
    evil = dataclasses.replace(original, message="</script><img src=x onerror=alert(1)> & 'quotes'")
    monkeypatch.setattr(config_vision, "RULE_REGISTRY",
                        tuple(evil if r is original else r for r in config_vision.RULE_REGISTRY))
    with app.test_request_context():
        html = str(rules_script())
    assert html.count("</script>") == 1 and "<img" not in html
    assert rendered_facts(html)["rules"]["TAB_SWITCH"]["message"] == evil.message


@pytest.mark.parametrize("bad", ['{"TIME_CAMERA_OFF_S": 0.01}', "not json", '["a list"]'])
def test_bad_exam_thresholds_fall_back_to_the_server_settings(app, bad, caplog):
    from proctor.page_data import page_facts

    with app.test_request_context():
        facts = page_facts(overrides=bad)
    assert camera_thresholds(facts)["hold_s"] == config_vision.load_vision_config().TIME_CAMERA_OFF_S
    assert "bad exam vision thresholds" in caplog.text
